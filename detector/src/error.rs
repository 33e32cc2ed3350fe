//! The one error type of the service library.

use thiserror::Error;

/// What can go wrong in the service.
#[derive(Debug, Error)]
pub enum DetectorError {
    /// An event or feature configuration problem.
    #[error(transparent)]
    Features(#[from] haechi_features::Error),
    /// The rules do not load.
    #[error("rules: {0}")]
    Rules(#[from] haechi_rules::RulesError),
    /// The model does not load.
    #[error("model: {0}")]
    Model(#[from] haechi_training::TrainingError),
    /// An alert sink failed.
    #[error(transparent)]
    Alerts(#[from] haechi_alerting::AlertError),
    /// Reading input, writing output or serving failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// An input file is missing or unreadable.
    #[error("{path}: {message}")]
    Input { path: String, message: String },
    /// The data dir's log or snapshot files failed.
    #[error("storage: {0}")]
    Storage(#[from] haechi_storage::StorageError),
    /// A streaming platform (Fluvio) failed.
    #[error("stream: {0}")]
    Stream(#[from] haechi_streams::StreamError),
    /// The access records failed.
    #[error("records: {0}")]
    Records(#[from] haechi_records::RecordsError),
    /// A snapshot cannot be used, or state cannot be recovered.
    #[error("snapshot: {0}")]
    Snapshot(String),
    /// The configuration file is unusable.
    #[error("configuration {path}: {message}")]
    Config { path: String, message: String },
    /// A setting does not hold (checked at load time), named with its problem.
    #[error("{0}")]
    Setting(String),
    /// The block list's state file cannot be used.
    #[error("{0}")]
    BlockList(String),
}
