//! # haechi-records — the access records the law asks for
//!
//! Tamper-evident, encrypted records of every accepted event, decision, alert, block change, staff
//! action, export step and read of records, kept for their retention period and then destroyed, with
//! the destruction itself recorded (전자금융거래법 §22, 개인정보 보호법 §29).
//! [`Report`] sums up a period's records beside the period before, for management and 금융감독원.

mod config;
mod error;
mod record;
mod report;

pub use config::{KeySource, RecordsConfig, Retention};
pub use error::RecordsError;
pub use record::{AccessRecord, ActionRecord, Actor, AlertRecord, BlockRecord, DecisionRecord, DestructionRecord, ExportRecord, ReadRecord, Record, RecordBody, RecordClass, RecordKind};
pub use report::{chart_ids, Anomalies, BlockChanges, Comparison, DurationFigures, EntityAlerts, Headline, Period, RecordCounts, Report, RuleHits, Share, StepFigures, SuccessRate, ECHARTS_VERSION, TOP_ENTITIES, UNSPECIFIED_REASON};
