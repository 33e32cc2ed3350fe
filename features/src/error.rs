//! The one error type of this crate.

use thiserror::Error;

/// Everything that can go wrong in the ground layer: an event that breaks the
/// contract, or a configuration that cannot be used.
///
/// Messages never carry a raw resident registration number: every text that
/// might echo input passes through [`crate::mask_resident_numbers`] first.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    /// The raw event is larger than the configured limit; it was not parsed.
    #[error("event is {len} bytes, over the {limit}-byte limit")]
    TooLarge { len: usize, limit: usize },
    /// The bytes are not UTF-8.
    #[error("event is not valid UTF-8")]
    NotUtf8,
    /// The line is blank.
    #[error("empty line")]
    Empty,
    /// The JSON does not parse, or a value has the wrong type.
    #[error("malformed JSON at column {column}: {message}")]
    Json { column: usize, message: String },
    /// A field the contract does not know.
    #[error("unknown field `{0}`")]
    UnknownField(String),
    /// A required field is absent or null.
    #[error("missing required field `{0}`")]
    MissingField(&'static str),
    /// A field is present with the right JSON type but a value the contract rejects.
    #[error("field `{field}`: {problem}")]
    InvalidValue { field: String, problem: String },
    /// A string field holds something that looks like a 주민등록번호.
    #[error("field `{field}` holds what looks like a resident registration number ({masked}); events must never carry one")]
    ResidentNumber { field: String, masked: String },
    /// The event id was already processed.
    #[error("duplicate event_id (already processed)")]
    Duplicate,
    /// The event claims a time further ahead of the clock (the server's, or a
    /// replayed stream's own) than the allowed skew: one forged timestamp
    /// must not move the clock that every window and expiry runs on.
    #[error("event time is {ahead_s} s ahead of the {clock} clock (allowed skew {skew_s} s)")]
    FutureTimestamp { ahead_s: i64, skew_s: i64, clock: &'static str },
    /// A configuration value that cannot be used.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Saved state that this store cannot take over (another key, other
    /// windows, a build that keeps other state).
    #[error("snapshot does not fit this store: {0}")]
    Snapshot(String),
}

impl Error {
    /// A short, stable label for metrics and summaries ("rejected by reason").
    pub fn reason(&self) -> &'static str {
        match self {
            Error::TooLarge { .. } => "too_large",
            Error::NotUtf8 => "not_utf8",
            Error::Empty => "empty",
            Error::Json { .. } => "malformed_json",
            Error::UnknownField(_) => "unknown_field",
            Error::MissingField(_) => "missing_field",
            Error::InvalidValue { .. } => "invalid_value",
            Error::ResidentNumber { .. } => "resident_number",
            Error::Duplicate => "duplicate",
            Error::FutureTimestamp { .. } => "future_ts",
            Error::Config(_) => "config",
            Error::Snapshot(_) => "snapshot",
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
