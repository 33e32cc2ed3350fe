//! The one error type of this crate.

use thiserror::Error;

/// What can go wrong generating or scoring a dataset.
#[derive(Debug, Error)]
pub enum DatasetError {
    /// A generator setting is out of range.
    #[error("invalid generator setting: {0}")]
    Config(String),
    /// Reading or writing failed.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A labels or decisions line does not parse.
    #[error("{file} line {line}: {message}")]
    Parse { file: String, line: usize, message: String },
}
