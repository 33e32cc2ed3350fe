//! A broker in memory: topics, partitions, keyed partitioning and outages,
//! for tests of everything around the wire without a cluster.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

use crate::broker::{Broker, TopicRecord};
use crate::error::StreamError;

type Partition = Vec<(Option<Vec<u8>>, Vec<u8>)>;

/// An in-memory streaming platform.
#[derive(Default)]
pub struct MemoryBroker {
    topics: Mutex<HashMap<String, Vec<Partition>>>,
    appended: Notify,
    down: AtomicBool,
    produce_down: AtomicBool,
    /// Produce calls refused while down (for tests that watch retries).
    pub refused: AtomicU64,
}

impl MemoryBroker {
    pub fn new() -> MemoryBroker {
        MemoryBroker::default()
    }

    /// Create `topic` with `partitions` partitions (no-op if it exists).
    pub fn create_topic(&self, topic: &str, partitions: u32) {
        let mut t = self.topics.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        t.entry(topic.to_owned()).or_insert_with(|| (0..partitions.max(1)).map(|_| Vec::new()).collect());
    }

    /// Take the platform down (every call fails as unreachable) or bring it back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        self.appended.notify_waiters();
    }

    /// Refuse produce calls only (reads go on): a sink's cluster away while the source's is not.
    pub fn set_produce_down(&self, down: bool) {
        self.produce_down.store(down, Ordering::SeqCst);
    }

    /// Append to one partition directly, as a producer that chose it would.
    pub fn append(&self, topic: &str, partition: u32, key: Option<&[u8]>, value: &[u8]) -> i64 {
        let mut t = self.topics.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let parts = t.get_mut(topic).expect("append to a created topic");
        let p = &mut parts[partition as usize];
        p.push((key.map(<[u8]>::to_vec), value.to_vec()));
        let offset = p.len() as i64 - 1;
        drop(t);
        self.appended.notify_waiters();
        offset
    }

    /// Every record of `topic`, partition by partition.
    pub fn records(&self, topic: &str) -> Vec<TopicRecord> {
        let t = self.topics.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        t.get(topic)
            .map(|parts| {
                parts
                    .iter()
                    .enumerate()
                    .flat_map(|(p, recs)| recs.iter().enumerate().map(move |(o, (k, v))| TopicRecord { partition: p as u32, offset: o as i64, key: k.clone(), value: v.clone() }))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn check_up(&self, what: &'static str) -> Result<(), StreamError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StreamError::Unreachable { what, message: "the in-memory broker is down".into() });
        }
        Ok(())
    }

    fn read(&self, topic: &str, partition: u32, offset: i64, max: usize) -> Result<Vec<TopicRecord>, StreamError> {
        let t = self.topics.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let parts = t.get(topic).ok_or_else(|| StreamError::NoTopic(topic.to_owned()))?;
        let p = parts.get(partition as usize).ok_or(StreamError::Platform { what: "fetch", message: format!("{topic} has no partition {partition}") })?;
        let start = usize::try_from(offset.max(0)).unwrap_or(usize::MAX).min(p.len());
        Ok(p[start..].iter().take(max).enumerate().map(|(i, (k, v))| TopicRecord { partition, offset: (start + i) as i64, key: k.clone(), value: v.clone() }).collect())
    }
}

impl Broker for MemoryBroker {
    async fn fetch(&self, topic: &str, partition: u32, offset: i64, max: usize, wait: Duration) -> Result<Vec<TopicRecord>, StreamError> {
        self.check_up("fetch")?;
        // Registered before the look, so an append between the two still wakes us.
        let appended = self.appended.notified();
        let got = self.read(topic, partition, offset, max)?;
        if !got.is_empty() || wait.is_zero() {
            return Ok(got);
        }
        let _ = tokio::time::timeout(wait, appended).await;
        self.check_up("fetch")?;
        self.read(topic, partition, offset, max)
    }

    async fn produce(&self, topic: &str, records: &[(Vec<u8>, Vec<u8>)]) -> Result<(), StreamError> {
        if let Err(e) = self.check_up("produce") {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(e);
        }
        if self.produce_down.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(StreamError::Unreachable { what: "produce", message: "the in-memory broker refuses produce calls".into() });
        }
        let mut t = self.topics.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let parts = t.get_mut(topic).ok_or_else(|| StreamError::NoTopic(topic.to_owned()))?;
        let n = parts.len() as u64;
        for (key, value) in records {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            key.hash(&mut h);
            parts[(h.finish() % n) as usize].push((Some(key.clone()), value.clone()));
        }
        drop(t);
        self.appended.notify_waiters();
        Ok(())
    }

    async fn end_offset(&self, topic: &str, partition: u32) -> Result<i64, StreamError> {
        self.check_up("end offset")?;
        let t = self.topics.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let parts = t.get(topic).ok_or_else(|| StreamError::NoTopic(topic.to_owned()))?;
        Ok(parts.get(partition as usize).map_or(0, |p| p.len() as i64))
    }

    async fn partitions(&self, topic: &str) -> Result<u32, StreamError> {
        self.check_up("partitions")?;
        let t = self.topics.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        t.get(topic).map(|p| p.len() as u32).ok_or_else(|| StreamError::NoTopic(topic.to_owned()))
    }
}
