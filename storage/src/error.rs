use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong with the data dir's files. Each variant names the file (or directory)
/// and what is wrong with it, so the message alone tells an operator where to look.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: {op}: {source}")]
    Io {
        path: PathBuf,
        /// What we were doing: "open", "write", "fdatasync", ...
        op: &'static str,
        #[source]
        source: io::Error,
    },

    /// Damage that is not a torn tail: refusing is safer than silently dropping records.
    #[error("{path}: corrupt at byte {offset}: {reason}")]
    Corrupt { path: PathBuf, offset: u64, reason: String },

    #[error("log offset {offset} is gone: the log in {dir} now starts at {first_offset}")]
    OffsetGone { dir: PathBuf, offset: u64, first_offset: u64 },

    #[error("log offset {offset} is past the end of the log in {dir}: the next record will get {next_offset}")]
    OffsetBeyondEnd { dir: PathBuf, offset: u64, next_offset: u64 },

    #[error("{dir}: a record of {size} bytes exceeds the {max}-byte limit")]
    RecordTooLarge { dir: PathBuf, size: usize, max: usize },

    /// A key ring that cannot be used; never carries a secret.
    #[error("data key ring {origin}: {reason}")]
    Key { origin: String, reason: String },

    /// Sealed bytes that did not open: which file, which part, and why.
    #[error("{path}: {what}: {source}")]
    Unseal {
        path: PathBuf,
        what: String,
        #[source]
        source: crate::crypto::SealError,
    },

    /// Sealed files opened without a key: what the caller should have given is named.
    #[error("{path}: sealed, and no data key was given to open it")]
    NoKey { path: PathBuf },

    #[error("invalid storage config: {reason}")]
    InvalidConfig { reason: String },

    /// A write or fdatasync failed in a way that leaves the file's state unknown; the log refuses
    /// further appends until it is reopened (which rescans the tail).
    #[error("{path}: log unusable until reopened: {reason}")]
    Unusable { path: PathBuf, reason: String },
}

/// `map_err(io_err(path, "open"))`: attaches the path and the operation to an io error.
pub(crate) fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> StorageError + 'a {
    move |source| StorageError::Io { path: path.to_path_buf(), op, source }
}
