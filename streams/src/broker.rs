//! What Haechi needs of a streaming platform, as a trait small enough to
//! implement in memory: read a partition from an offset, append keyed
//! records, tell where a partition ends.

use std::future::Future;
use std::time::Duration;

use crate::error::StreamError;

/// One record of a topic partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRecord {
    pub partition: u32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
}

/// A streaming platform. Fluvio implements it ([`crate::FluvioBroker`]),
/// and so does [`crate::MemoryBroker`] for tests that run without a cluster.
pub trait Broker: Send + Sync + 'static {
    /// Records of `topic`'s `partition` from `offset` on, at most `max`.
    /// Waits up to `wait` for the first one, then returns what is there
    /// (possibly nothing).
    fn fetch(&self, topic: &str, partition: u32, offset: i64, max: usize, wait: Duration) -> impl Future<Output = Result<Vec<TopicRecord>, StreamError>> + Send;

    /// Append `(key, value)` records, in order; returns once the platform
    /// has acknowledged all of them. The platform chooses each record's
    /// partition from its key.
    fn produce(&self, topic: &str, records: &[(Vec<u8>, Vec<u8>)]) -> impl Future<Output = Result<(), StreamError>> + Send;

    /// The offset the next record of `partition` will get (its high watermark).
    fn end_offset(&self, topic: &str, partition: u32) -> impl Future<Output = Result<i64, StreamError>> + Send;

    /// How many partitions `topic` has.
    fn partitions(&self, topic: &str) -> impl Future<Output = Result<u32, StreamError>> + Send;
}
