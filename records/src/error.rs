use std::path::PathBuf;

/// Everything the records store can report. Each variant names the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error(transparent)]
    Storage(#[from] haechi_storage::StorageError),

    #[error("{path}: {reason}")]
    Damaged { path: PathBuf, reason: String },

    #[error("invalid records config: {0}")]
    Config(String),

    #[error("record could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),

    #[error("report: {0}")]
    Report(String),

    #[error("report could not be written as CSV: {0}")]
    Csv(#[from] csv::Error),
}

pub(crate) fn io_err<'a>(path: &'a std::path::Path, op: &'static str) -> impl FnOnce(std::io::Error) -> RecordsError + 'a {
    move |source| RecordsError::Io { path: path.to_path_buf(), op, source }
}
