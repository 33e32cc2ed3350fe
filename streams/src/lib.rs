//! # haechi-streams — Fluvio topics
//!
//! Everything between Haechi and a streaming platform that does not need a
//! cluster to be tested: the [`Broker`] trait (read a partition from an
//! offset, produce keyed records, a partition's end), the merge of assigned
//! partitions into one ordered stream ([`TopicReader`]), and the producer
//! [`Spool`] that keeps records on disk until the platform has them. The
//! Fluvio client ([`FluvioBroker`]) implements the trait for real clusters;
//! [`MemoryBroker`] implements it for tests. The crate knows bytes, keys and
//! offsets, never events: the detector maps records to events and decisions.

mod broker;
mod error;
mod fluvio;
mod memory;
mod reader;
mod spool;

pub use broker::{Broker, TopicRecord};
pub use error::StreamError;
pub use fluvio::FluvioBroker;
pub use memory::MemoryBroker;
pub use reader::{ReaderTuning, TopicReader};
pub use spool::{Deliver, Drained, Spool};
