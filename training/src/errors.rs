//! The one error type of this crate.

use thiserror::Error;

/// What can go wrong fitting, loading or feeding an isolation forest.
#[derive(Debug, Error)]
pub enum TrainingError {
    /// A hyperparameter is out of range.
    #[error("invalid parameter: {0}")]
    Params(String),
    /// The training data cannot be used.
    #[error("invalid training data: {0}")]
    Data(String),
    /// A CSV problem, located.
    #[error("{file}: line {line}, column {column}: {message}")]
    Csv { file: String, line: u64, column: usize, message: String },
    /// A model file that cannot be used.
    #[error("model {path}: {message}")]
    Model { path: String, message: String },
    /// Model text (a file's contents) that is not a usable model.
    #[error("{0}")]
    ModelText(String),
    /// A model key that is too short to sign with.
    #[error("model key: {0}")]
    Key(String),
    /// A model that is unsigned or whose MAC does not verify.
    #[error("{0}")]
    Signature(String),
    /// The model's features are not the pipeline's.
    #[error("model features do not match the pipeline: {0}")]
    FeatureMismatch(String),
    #[error(transparent)]
    Linfa(#[from] linfa::Error),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}
