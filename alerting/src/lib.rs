//! # haechi-alerting — findings become alerts an analyst can read
//!
//! This crate owns the [`Alert`]: a finding on one entity, with the evidence
//! behind it, folded with its repeats inside a window so that an attack that
//! trips the same rule a thousand times reads as one alert with a count.
//! An alert's id is derived from (detector, rule or model, entity, window
//! start), so a replay or a second replica produces the same id and any sink
//! can drop duplicates. Sinks ([`AlertSink`]) take alerts out of the process.
//!
//! Data moves one way: findings → [`AlertFolder::fold`] → alerts →
//! [`AlertFolder::drain_closed`] → sinks.

mod alert;
mod error;
mod sink;

pub use alert::{alert_id, Alert, AlertEvidence, AlertFolder, Folded, FolderState};
pub use error::AlertError;
pub use sink::{AlertSink, NdjsonSink};
