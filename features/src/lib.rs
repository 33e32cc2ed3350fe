//! # haechi-features — the ground every other Haechi crate stands on
//!
//! This crate owns:
//! - the **event contract** ([`Event`], parsed and validated from one JSON line
//!   by [`Event::parse`]; a raw resident registration number never survives it);
//! - **entity keys** ([`EntityKind`], [`EntityKeys`]): the up to eight entities
//!   one event names, hashed once;
//! - **event-time windows** and the sharded, bounded **feature store**
//!   ([`FeatureStore`]) that keeps counts, distinct counts, streaks, timing and
//!   profiles per entity and writes each event's features into a flat vector
//!   laid out by the [`FeatureCatalog`];
//! - the **detector interface** ([`Detector`], [`Finding`]) that rules, models
//!   and limiters implement.
//!
//! Data moves one way: bytes → [`Event`] → [`FeatureStore::observe`] →
//! feature vector → [`FeatureView`] → detectors → findings. One fact comes
//! back from the decision: [`FeatureStore::refuse_staff_day`] (a day a staff
//! member was blocked does not become their habit, and a block on the member
//! starts `staff.days_since_refused`).
//!
//! ```
//! use haechi_features::{Event, FeatureConfig, FeatureStore, DEFAULT_MAX_EVENT_BYTES};
//! let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
//! let line = br#"{"event_id":"e1","ts":"2026-11-25T09:00:00+09:00","step":"login","result":"success","ip":"10.0.0.1"}"#;
//! let event = Event::parse(line, DEFAULT_MAX_EVENT_BYTES).unwrap();
//! let mut features = vec![0.0; store.catalog().len()];
//! store.observe(&event, &mut features);
//! assert_eq!(features[store.catalog().slot("ip.events_10m").unwrap()], 1.0);
//! ```

mod baseline;
mod catalog;
mod config;
mod detect;
mod entity;
mod error;
mod event;
mod keys;
mod rrn;
mod session_ids;
mod store;
mod window;

pub use baseline::{BaselineReading, Baselines, BaselinesState, EventHour, Placed, MIN_BASELINE_SAMPLES, MIN_COLD_SAMPLES};
pub use catalog::{relations, FeatureCatalog, KindLayout, Relation, DISTINCT_COLUMNS, EVENT_FEATURES};
pub use entity::{METHOD_NAMES, NEVER_REFUSED_DAYS, PLACE_DEVICE, PLACE_REGION};
pub use config::{EntityCaps, FeatureConfig, HashKeySource, SessionIds, WindowLabel, WindowSpec, Windows, DEMO_HASH_SEED};
pub use detect::{Action, Detector, Evidence, FeatureView, Finding, Mode, SecondsSinceWithin, Severity};
pub use error::{Error, Result};
pub use event::{
    format_rfc3339_ms, parse_rfc3339_ms, AttrValue, Channel, Event, Outcome, RawEvent, Step, DEFAULT_MAX_EVENT_BYTES,
};
pub use keys::{entity_hash, entity_text, id_hash, lookup_hash, subnet_text, EntityKeys, EntityKind, HashKey, KIND_COUNT};
pub use rrn::{find_resident_number, find_resident_number_in_id, mask_resident_numbers};
pub use store::{is_automation_agent, FeatureStore, Observation, StoreState, StoreStats};
pub use window::{Counts, DistinctSet, WindowCounts, EXACT_DISTINCT, SPARSE_EVENTS};
