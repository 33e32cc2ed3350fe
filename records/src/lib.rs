//! # haechi-records — the access records the law asks for
//!
//! Tamper-evident, encrypted records of every accepted event, decision, alert, block change, staff
//! action, export step and read of records, kept for their retention period and then destroyed, with
//! the destruction itself recorded (전자금융거래법 §22, 개인정보 보호법 §29).
//! [`Report`] sums up a period's records beside the period before, for management and 금융감독원.

mod config;
mod error;
mod ledger;
mod record;
mod report;
mod store;
mod verify;

pub use config::{KeySource, RecordsConfig, Retention};
pub use error::RecordsError;
pub use store::{Convert, Filter, Maintenance, Recorder, Records};
pub use verify::{verify, ClassReport, Problem, VerifyReport};
pub use record::{AccessRecord, ActionRecord, Actor, AlertRecord, BlockRecord, DecisionRecord, DestructionRecord, ExportRecord, ReadRecord, Record, RecordBody, RecordClass, RecordKind};
pub use report::{chart_ids, Anomalies, BlockChanges, Comparison, DurationFigures, EntityAlerts, Headline, Period, RecordCounts, Report, RuleHits, Share, StepFigures, SuccessRate, ECHARTS_JS, ECHARTS_VERSION, TOP_ENTITIES, UNSPECIFIED_REASON};

/// RFC 3339 in UTC, for messages.
pub(crate) fn format_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{ms} ms"))
}

#[cfg(test)]
mod tests;
