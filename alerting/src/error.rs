//! The one error type of this crate.

use thiserror::Error;

/// What can go wrong getting alerts out.
#[derive(Debug, Error)]
pub enum AlertError {
    /// The sink's writer failed.
    #[error("alert sink I/O: {0}")]
    Io(#[from] std::io::Error),
    /// An alert could not be encoded.
    #[error("alert encoding: {0}")]
    Json(#[from] serde_json::Error),
}
