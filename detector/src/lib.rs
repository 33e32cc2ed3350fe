//! # haechi-detector — the Haechi service
//!
//! This crate wires the others together. It owns the [`Pipeline`] every event
//! goes through (validate → features → detectors → [`decide`]), the service
//! [`Config`], the built-in detector, and the run modes of the `haechi`
//! binary: [`replay()`] of a file or stdin today; the HTTP service and stream
//! consumers run the same pipeline with other sources and sinks.
//!
//! ```
//! use haechi_detector::{Config, Pipeline, Verdict};
//! let pipeline = Pipeline::new(Config::default()).unwrap();
//! let mut scratch = pipeline.scratch();
//! let event = pipeline.parse(br#"{"event_id":"e1","ts":"2026-11-25T09:00:00+09:00","step":"otp","result":"success","customer_id":"c1"}"#).unwrap();
//! let processed = pipeline.process(&event, &mut scratch).unwrap();
//! assert_eq!(processed.decision.verdict, Verdict::Allow);
//! ```

/// A [`DetectorError::Setting`] with a formatted message: a setting that
/// does not hold, found at load time.
macro_rules! setting {
    ($($t:tt)*) => { $crate::DetectorError::Setting(format!($($t)*)) };
}

/// A [`DetectorError::BlockList`] with a formatted message.
macro_rules! block_state {
    ($($t:tt)*) => { $crate::DetectorError::BlockList(format!($($t)*)) };
}

pub mod alert_sinks;
pub mod backtest;
pub mod bench;
mod builtin;
mod config;
mod decision;
mod dedup;
pub mod driver;
pub mod durable;
pub mod enforce;
mod error;
pub mod evaluate;
pub mod fluvio;
pub mod fuzzing;
pub mod model;
pub mod train;
mod pipeline;
pub mod recording;
mod replay;
pub mod service;
pub mod worlds;

pub use builtin::{BuiltinConfig, FailureStreak, FscAction, FscTwoMethods};
pub use config::{AlertConfig, Config, PipelineConfig};
pub use decision::{decide, BlockRequest, Decision, Reason, Verdict};
pub use error::DetectorError;
pub use pipeline::{Pipeline, PipelineState, Processed, Scratch};
pub use driver::read_bounded_line;
pub use replay::{replay, warm, ReplayOutputs, ReplaySummary, TopAlerts};
