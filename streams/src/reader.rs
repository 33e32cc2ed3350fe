//! Reading a topic's assigned partitions as one stream, in an order two
//! replicas agree on.
//!
//! Fluvio has no consumer groups: which partitions a replica reads is
//! Haechi's own configuration. Records of several partitions are merged by
//! an order key the caller gives (the event time) and then by partition,
//! taking the smallest head among the partitions. A partition with nothing
//! to read is waited for up to `idle_after`, then passed over, so a quiet
//! partition does not stall the others. Under steady traffic every
//! partition has a head, and two replicas reading the same topic hand out
//! the same records in the same order.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::broker::{Broker, TopicRecord};
use crate::error::StreamError;

/// Read-ahead and waiting.
#[derive(Debug, Clone, Copy)]
pub struct ReaderTuning {
    /// Records fetched per partition at a time.
    pub batch: usize,
    /// How long a fetch waits for a first record.
    pub fetch_wait: Duration,
    /// How long a partition with nothing to read may hold the others back.
    pub idle_after: Duration,
}

impl Default for ReaderTuning {
    fn default() -> Self {
        ReaderTuning { batch: 500, fetch_wait: Duration::from_millis(20), idle_after: Duration::from_millis(200) }
    }
}

/// The assigned partitions of one topic, merged.
pub struct TopicReader<B: Broker> {
    broker: Arc<B>,
    topic: String,
    tuning: ReaderTuning,
    /// Per partition: the next offset to fetch.
    fetch_at: BTreeMap<u32, i64>,
    heads: BTreeMap<u32, VecDeque<TopicRecord>>,
    /// Per partition: since when it has had nothing to read.
    empty_since: BTreeMap<u32, Instant>,
    /// Per partition: when a fetch last found it empty.
    last_empty: BTreeMap<u32, Instant>,
}

impl<B: Broker> TopicReader<B> {
    /// Read `topic` from these offsets (partition → first offset to read).
    pub fn new(broker: Arc<B>, topic: &str, from: BTreeMap<u32, i64>, tuning: ReaderTuning) -> TopicReader<B> {
        let heads = from.keys().map(|p| (*p, VecDeque::new())).collect();
        TopicReader { broker, topic: topic.to_owned(), tuning, fetch_at: from, heads, empty_since: BTreeMap::new(), last_empty: BTreeMap::new() }
    }

    /// The topic read.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The partitions read.
    pub fn partitions(&self) -> impl Iterator<Item = u32> + '_ {
        self.heads.keys().copied()
    }

    /// Records fetched but not handed out yet.
    pub fn buffered(&self) -> usize {
        self.heads.values().map(VecDeque::len).sum()
    }

    async fn refill(&mut self) -> Result<(), StreamError> {
        let empty: Vec<u32> = self.heads.iter().filter(|(_, q)| q.is_empty()).map(|(p, _)| *p).collect();
        let wait = if empty.len() == self.heads.len() { self.tuning.fetch_wait } else { Duration::ZERO };
        let now = Instant::now();
        let mut found_empty = Vec::new();
        let mut arrived = false;
        for p in empty {
            // A partition found empty is asked again at most once per fetch
            // wait: one quiet partition must not cost a fetch per record.
            if wait.is_zero() && self.last_empty.get(&p).is_some_and(|t| now.duration_since(*t) < self.tuning.fetch_wait) {
                continue;
            }
            if self.fetch_into(p, wait).await? {
                arrived = true;
            } else {
                found_empty.push(p);
            }
        }
        // Records that came while an earlier partition's fetch was waiting
        // may have come to it too (one produce spans partitions): ask those
        // again, or a long-quiet partition would be passed over and the
        // order would depend on which fetch happened to be waiting.
        if arrived {
            let quiet_round = !wait.is_zero();
            for p in found_empty {
                if !self.fetch_into(p, Duration::ZERO).await? && quiet_round {
                    // Records after a quiet spell: a produce that spans partitions may not be
                    // visible on all of them at once, so the ones still empty get a fresh grace.
                    self.empty_since.insert(p, Instant::now());
                }
            }
        }
        Ok(())
    }

    /// Fetch partition `p` into its head; true when records came.
    async fn fetch_into(&mut self, p: u32, wait: Duration) -> Result<bool, StreamError> {
        let at = self.fetch_at[&p];
        let got = self.broker.fetch(&self.topic, p, at, self.tuning.batch, wait).await?;
        if let Some(last) = got.last() {
            self.fetch_at.insert(p, last.offset + 1);
            self.empty_since.remove(&p);
            self.heads.get_mut(&p).expect("assigned").extend(got);
            self.last_empty.remove(&p);
            Ok(true)
        } else {
            self.empty_since.entry(p).or_insert_with(Instant::now);
            self.last_empty.insert(p, Instant::now());
            Ok(false)
        }
    }

    /// The next record in merged order, or `None` if no partition had one
    /// within the waits (call again).
    ///
    /// # Errors
    /// When the platform fails; nothing is lost, the same call can be retried.
    pub async fn next(&mut self, order: impl Fn(&TopicRecord) -> i64) -> Result<Option<TopicRecord>, StreamError> {
        let deadline = Instant::now() + self.tuning.idle_after + self.tuning.fetch_wait;
        loop {
            self.refill().await?;
            let now = Instant::now();
            // A partition still within its grace holds the merge back.
            let waiting = self.heads.iter().any(|(p, q)| q.is_empty() && self.empty_since.get(p).is_none_or(|t| now.duration_since(*t) < self.tuning.idle_after));
            let best = self.heads.iter().filter_map(|(p, q)| q.front().map(|r| ((order(r), *p), *p))).min().map(|(_, p)| p);
            match best {
                Some(p) if !waiting => return Ok(self.heads.get_mut(&p).and_then(VecDeque::pop_front)),
                None if now >= deadline => return Ok(None),
                _ => tokio::time::sleep(Duration::from_millis(2)).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryBroker;

    fn order(r: &TopicRecord) -> i64 {
        String::from_utf8_lossy(&r.value).parse().unwrap()
    }

    #[tokio::test]
    async fn partitions_merge_by_order_key_then_partition() {
        let b = Arc::new(MemoryBroker::new());
        b.create_topic("t", 2);
        for v in [1, 4, 6] {
            b.append("t", 0, None, v.to_string().as_bytes());
        }
        for v in [2, 4, 5] {
            b.append("t", 1, None, v.to_string().as_bytes());
        }
        let mut r = TopicReader::new(b.clone(), "t", BTreeMap::from([(0, 0), (1, 0)]), ReaderTuning { idle_after: Duration::from_millis(50), ..Default::default() });
        let mut got = Vec::new();
        while let Some(rec) = r.next(order).await.unwrap() {
            got.push((order(&rec), rec.partition));
        }
        assert_eq!(got, vec![(1, 0), (2, 1), (4, 0), (4, 1), (5, 1), (6, 0)]);
    }

    #[tokio::test]
    async fn reading_resumes_at_the_given_offsets() {
        let b = Arc::new(MemoryBroker::new());
        b.create_topic("t", 2);
        for v in 0..5 {
            b.append("t", (v % 2) as u32, None, v.to_string().as_bytes());
        }
        // Partition 0 holds 0, 2, 4 (offsets 0..3); partition 1 holds 1, 3.
        let mut r = TopicReader::new(b, "t", BTreeMap::from([(0, 2), (1, 1)]), ReaderTuning { idle_after: Duration::from_millis(20), ..Default::default() });
        let mut got = Vec::new();
        while let Some(rec) = r.next(order).await.unwrap() {
            got.push(order(&rec));
        }
        assert_eq!(got, vec![3, 4]);
    }

    #[tokio::test]
    async fn a_quiet_partition_holds_the_merge_back_only_for_its_grace() {
        let b = Arc::new(MemoryBroker::new());
        b.create_topic("t", 2);
        b.append("t", 0, None, b"7");
        let mut r = TopicReader::new(b.clone(), "t", BTreeMap::from([(0, 0), (1, 0)]), ReaderTuning { idle_after: Duration::from_millis(30), ..Default::default() });
        // Partition 1 has nothing: after its grace, partition 0's record comes through.
        let rec = loop {
            if let Some(rec) = r.next(order).await.unwrap() {
                break rec;
            }
        };
        assert_eq!(order(&rec), 7);
    }

    /// A broker on which records reach both partitions while a fetch of partition 1 waits.
    struct ArrivesDuringFetch {
        inner: MemoryBroker,
        armed: std::sync::atomic::AtomicBool,
    }

    impl Broker for ArrivesDuringFetch {
        async fn fetch(&self, topic: &str, partition: u32, offset: i64, max: usize, wait: Duration) -> Result<Vec<TopicRecord>, StreamError> {
            if partition == 1 && !wait.is_zero() && self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
                self.inner.append(topic, 0, None, b"10");
                self.inner.append(topic, 1, None, b"11");
            }
            self.inner.fetch(topic, partition, offset, max, wait).await
        }
        async fn produce(&self, topic: &str, records: &[(Vec<u8>, Vec<u8>)]) -> Result<(), StreamError> {
            self.inner.produce(topic, records).await
        }
        async fn end_offset(&self, topic: &str, partition: u32) -> Result<i64, StreamError> {
            self.inner.end_offset(topic, partition).await
        }
        async fn partitions(&self, topic: &str) -> Result<u32, StreamError> {
            self.inner.partitions(topic).await
        }
    }

    #[tokio::test]
    async fn records_arriving_after_a_quiet_spell_merge_in_order_whichever_fetch_was_waiting() {
        let b = Arc::new(ArrivesDuringFetch { inner: MemoryBroker::new(), armed: false.into() });
        b.inner.create_topic("t", 2);
        let mut r = TopicReader::new(b.clone(), "t", BTreeMap::from([(0, 0), (1, 0)]), ReaderTuning { idle_after: Duration::from_millis(5), ..Default::default() });
        // Both partitions quiet past their grace.
        assert!(r.next(order).await.unwrap().is_none());
        // Partition 0's fetch comes back empty; the records come while partition 1's waits.
        b.armed.store(true, std::sync::atomic::Ordering::SeqCst);
        let first = loop {
            if let Some(rec) = r.next(order).await.unwrap() {
                break rec;
            }
        };
        assert_eq!(order(&first), 10, "partition 0's earlier record first, though it came while partition 1 was being read");
    }
}
