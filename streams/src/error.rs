//! The one error type of this crate.

use thiserror::Error;

/// What can go wrong between Haechi and a streaming platform.
#[derive(Debug, Error)]
pub enum StreamError {
    /// The platform cannot be reached (or refused the request); retry later.
    #[error("{what}: the streaming platform is unreachable: {message}")]
    Unreachable { what: &'static str, message: String },
    /// The platform answered, but not with what was asked for.
    #[error("{what}: {message}")]
    Platform { what: &'static str, message: String },
    /// A topic this deployment needs does not exist.
    #[error("topic `{0}` does not exist")]
    NoTopic(String),
    /// A spool record does not decode (the spool file was damaged).
    #[error("spool record {offset}: {problem}")]
    BadSpoolRecord { offset: u64, problem: &'static str },
    /// The spool's files failed.
    #[error("spool: {0}")]
    Storage(#[from] haechi_storage::StorageError),
    /// The spool's cursor file failed.
    #[error("spool cursor {path}: {source}")]
    Cursor { path: String, source: std::io::Error },
}
