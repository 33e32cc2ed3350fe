//! The producer spool: every record for a topic is appended to a log in
//! the data dir first, then a drain sends it on in order, retrying with
//! backoff while the platform is away. Nothing is lost while Fluvio is down
//! or this process restarts; a record may be sent twice around a crash
//! (the cursor is saved after the send), so every record carries a key a
//! consumer can dedupe by (an event id, an alert id, a block's scope and key).
//!
//! Records name customers, devices and addresses, so a spool opened with a
//! [`Sealer`] ([`Spool::open_sealed`]) seals each one; the cursor file holds
//! only an offset and stays plain.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::BackoffBuilder;
use haechi_storage::{Fsync, IngestLog, LogConfig, Sealer};
use tokio::sync::Notify;

use crate::broker::Broker;
use crate::error::StreamError;

/// A spool of records waiting for their topics.
pub struct Spool {
    log: IngestLog,
    /// Offset in `log` of the first record not yet acknowledged by the platform.
    cursor: AtomicU64,
    cursor_path: PathBuf,
    pushed: Notify,
}

/// What one drain did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    pub sent: usize,
    pub left: u64,
}

fn encode(topic: &str, key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(6 + topic.len() + key.len() + value.len());
    r.extend_from_slice(&(topic.len() as u16).to_le_bytes());
    r.extend_from_slice(topic.as_bytes());
    r.extend_from_slice(&(key.len() as u32).to_le_bytes());
    r.extend_from_slice(key);
    r.extend_from_slice(value);
    r
}

fn decode(offset: u64, r: &[u8]) -> Result<(&str, &[u8], &[u8]), StreamError> {
    let bad = |problem| StreamError::BadSpoolRecord { offset, problem };
    let tlen = usize::from(u16::from_le_bytes(r.get(..2).ok_or(bad("truncated topic length"))?.try_into().expect("two bytes")));
    let topic = std::str::from_utf8(r.get(2..2 + tlen).ok_or(bad("truncated topic"))?).map_err(|_| bad("topic is not UTF-8"))?;
    let k = 2 + tlen;
    let klen = u32::from_le_bytes(r.get(k..k + 4).ok_or(bad("truncated key length"))?.try_into().expect("four bytes")) as usize;
    let key = r.get(k + 4..k + 4 + klen).ok_or(bad("truncated key"))?;
    Ok((topic, key, &r[k + 4 + klen..]))
}

impl Spool {
    /// Open (or create) the spool in `dir`. Its writes reach the kernel
    /// before `push` returns (a `kill -9` loses nothing) but are not
    /// fsynced: a power loss can drop the newest records. Decisions for a
    /// topic source are produced again when the topic is read again after
    /// a restart; analysts' block changes and decisions for HTTP events are not.
    ///
    /// # Errors
    /// When the directory or its cursor cannot be read.
    pub fn open(dir: &Path) -> Result<Spool, StreamError> {
        Self::open_sealed(dir, None)
    }

    /// [`Spool::open`], sealing every record with `sealer` when one is given.
    ///
    /// # Errors
    /// As [`Spool::open`], and when the spool's records do not open with `sealer`.
    pub fn open_sealed(dir: &Path, sealer: Option<Sealer>) -> Result<Spool, StreamError> {
        let config = LogConfig { fsync: Fsync::Never, segment_bytes: 16 << 20, ..LogConfig::default() };
        let (log, _) = IngestLog::open_sealed(dir, config, sealer)?;
        let cursor_path = dir.join("cursor");
        let cursor = match std::fs::read_to_string(&cursor_path) {
            Ok(text) => text.trim().parse::<u64>().unwrap_or(0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(source) => return Err(StreamError::Cursor { path: cursor_path.display().to_string(), source }),
        };
        let cursor = cursor.clamp(log.first_offset(), log.next_offset());
        Ok(Spool { log, cursor: AtomicU64::new(cursor), cursor_path, pushed: Notify::new() })
    }

    /// Queue one record for `topic`.
    ///
    /// # Errors
    /// When the spool cannot be written.
    pub fn push(&self, topic: &str, key: &[u8], value: &[u8]) -> Result<(), StreamError> {
        self.log.append_one(&encode(topic, key, value))?;
        self.pushed.notify_one();
        Ok(())
    }

    /// Records waiting.
    pub fn depth(&self) -> u64 {
        self.log.next_offset().saturating_sub(self.cursor.load(Ordering::Acquire))
    }

    /// Send up to `max` waiting records, in order; a run of records for one
    /// topic goes in one produce call. Stops at the first failure (nothing
    /// after it is sent, so order holds).
    ///
    /// # Errors
    /// The platform's failure; the records stay spooled.
    pub async fn drain<B: Deliver>(&self, broker: &B, max: usize) -> Result<Drained, StreamError> {
        let start = self.cursor.load(Ordering::Acquire);
        let mut records: Vec<(u64, Vec<u8>)> = Vec::new();
        for r in self.log.read_from(start)?.take(max) {
            records.push(r?);
        }
        let mut sent = 0usize;
        let mut i = 0;
        while i < records.len() {
            let (topic, _, _) = decode(records[i].0, &records[i].1)?;
            let topic = topic.to_owned();
            let mut run: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
            while i < records.len() {
                let (t, k, v) = decode(records[i].0, &records[i].1)?;
                if t != topic {
                    break;
                }
                run.push((k.to_vec(), v.to_vec()));
                i += 1;
            }
            // A receiver that takes records one request at a time gets chunks, and the cursor
            // moves after each: a failure part-way never sends what it took again.
            for chunk in run.chunks(broker.max_batch().max(1)) {
                broker.deliver(&topic, chunk).await?;
                sent += chunk.len();
                self.advance(start + sent as u64)?;
            }
        }
        Ok(Drained { sent, left: self.depth() })
    }

    fn advance(&self, to: u64) -> Result<(), StreamError> {
        self.cursor.store(to, Ordering::Release);
        let tmp = self.cursor_path.with_extension("tmp");
        let io = |source| StreamError::Cursor { path: self.cursor_path.display().to_string(), source };
        std::fs::write(&tmp, to.to_string()).map_err(io)?;
        std::fs::rename(&tmp, &self.cursor_path).map_err(io)?;
        // Whole segments behind the cursor are sent: drop them.
        self.log.remove_before(to)?;
        Ok(())
    }

    /// Drain until `stop` resolves: as records arrive, and with exponential
    /// backoff (100 ms to 30 s, with jitter) while the platform fails.
    /// `on_error` sees each failure (for metrics and logs).
    pub async fn run<B: Deliver>(&self, broker: &B, stop: impl std::future::Future<Output = ()>, mut on_error: impl FnMut(&StreamError)) {
        tokio::pin!(stop);
        let backoff = backon::ExponentialBuilder::default().with_min_delay(Duration::from_millis(100)).with_max_delay(Duration::from_secs(30)).with_jitter().without_max_times();
        let mut delays = backoff.build();
        loop {
            let pushed = self.pushed.notified();
            match self.drain(broker, 1000).await {
                Ok(d) if d.left > 0 => {
                    delays = backoff.build();
                    continue;
                }
                Ok(_) => {
                    delays = backoff.build();
                    tokio::select! {
                        () = &mut stop => return,
                        () = pushed => {}
                        // A push that raced the look above is caught within a second.
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
                Err(e) => {
                    on_error(&e);
                    let wait = delays.next().unwrap_or(Duration::from_secs(30));
                    tokio::select! {
                        () = &mut stop => return,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }
}

/// Where a spool drains to: a streaming platform's topics, or any receiver that takes records
/// in order and says when it has them (an alert webhook, a file).
pub trait Deliver: Send + Sync {
    /// Deliver `records` (key, value) for `topic`, in order; `Ok` only once all are accepted.
    fn deliver(&self, topic: &str, records: &[(Vec<u8>, Vec<u8>)]) -> impl std::future::Future<Output = Result<(), StreamError>> + Send;

    /// The most records one `deliver` may take: a receiver that acknowledges records one by one
    /// says 1, so that a failure after some of them does not deliver those again.
    fn max_batch(&self) -> usize {
        usize::MAX
    }
}

impl<B: Broker> Deliver for B {
    fn deliver(&self, topic: &str, records: &[(Vec<u8>, Vec<u8>)]) -> impl std::future::Future<Output = Result<(), StreamError>> + Send {
        self.produce(topic, records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryBroker;

    #[test]
    fn records_round_trip_through_their_encoding() {
        let r = encode("alerts", b"id-1", b"{\"x\":1}");
        assert_eq!(decode(0, &r).unwrap(), ("alerts", &b"id-1"[..], &b"{\"x\":1}"[..]));
        assert!(decode(3, &r[..5]).is_err());
    }

    /// Takes one record per call and fails every third call, remembering what it took.
    struct Flaky {
        calls: std::sync::atomic::AtomicUsize,
        taken: std::sync::Mutex<Vec<Vec<u8>>>,
    }

    impl Deliver for Flaky {
        async fn deliver(&self, _topic: &str, records: &[(Vec<u8>, Vec<u8>)]) -> Result<(), StreamError> {
            assert_eq!(records.len(), 1, "max_batch is respected");
            if self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 3 == 2 {
                return Err(StreamError::Unreachable { what: "test", message: "flaky".into() });
            }
            self.taken.lock().unwrap().push(records[0].0.clone());
            Ok(())
        }

        fn max_batch(&self) -> usize {
            1
        }
    }

    #[tokio::test]
    async fn a_receiver_that_fails_part_way_gets_each_record_once() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        for i in 0..10 {
            spool.push("alert", format!("k{i}").as_bytes(), b"v").unwrap();
        }
        let flaky = Flaky { calls: 0.into(), taken: Default::default() };
        while spool.depth() > 0 {
            let _ = spool.drain(&flaky, 100).await;
        }
        let taken: Vec<String> = flaky.taken.lock().unwrap().iter().map(|k| String::from_utf8(k.clone()).unwrap()).collect();
        assert_eq!(taken, (0..10).map(|i| format!("k{i}")).collect::<Vec<_>>(), "in order, none twice");
    }

    #[tokio::test]
    async fn records_wait_while_the_platform_is_down_and_go_out_in_order_once_it_is_back() {
        let dir = tempfile::tempdir().unwrap();
        let broker = MemoryBroker::new();
        broker.create_topic("decisions", 1);
        broker.create_topic("alerts", 1);
        let spool = Spool::open(dir.path()).unwrap();
        broker.set_down(true);
        for i in 0..10 {
            let topic = if i % 3 == 0 { "alerts" } else { "decisions" };
            spool.push(topic, format!("k{i}").as_bytes(), format!("v{i}").as_bytes()).unwrap();
        }
        assert!(spool.drain(&broker, 100).await.is_err());
        assert_eq!(spool.depth(), 10, "nothing is lost while it is down");
        // A restart in between keeps the spool.
        drop(spool);
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.depth(), 10);
        broker.set_down(false);
        let d = spool.drain(&broker, 100).await.unwrap();
        assert_eq!(d, Drained { sent: 10, left: 0 });
        let values = |t: &str| broker.records(t).into_iter().map(|r| String::from_utf8(r.value).unwrap()).collect::<Vec<_>>();
        assert_eq!(values("alerts"), ["v0", "v3", "v6", "v9"]);
        assert_eq!(values("decisions"), ["v1", "v2", "v4", "v5", "v7", "v8"]);
        // Sent records are not sent again after a restart.
        drop(spool);
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.depth(), 0);
    }

    #[tokio::test]
    async fn a_sealed_spool_keeps_nothing_readable_and_sends_the_records_as_pushed() {
        let dir = tempfile::tempdir().unwrap();
        let keys = haechi_storage::KeyRing::parse(&haechi_storage::KeyRing::generate_line("k1"), "test").unwrap();
        let broker = MemoryBroker::new();
        broker.create_topic("decisions", 1);
        let spool = Spool::open_sealed(dir.path(), Some(keys.sealer("spool"))).unwrap();
        broker.set_down(true);
        spool.push("decisions", b"e-1", br#"{"customer_id":"c-secret-42"}"#).unwrap();
        assert!(spool.drain(&broker, 10).await.is_err());
        drop(spool);
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            assert!(!bytes.windows(9).any(|w| w == b"c-secret-"), "a spool file shows the record");
        }
        let other = haechi_storage::KeyRing::parse(&haechi_storage::KeyRing::generate_line("k2"), "test").unwrap();
        let err = Spool::open_sealed(dir.path(), Some(other.sealer("spool"))).err().expect("another key must not open the spool");
        assert!(err.to_string().contains("\"k1\""), "{err}");

        let spool = Spool::open_sealed(dir.path(), Some(keys.sealer("spool"))).unwrap();
        broker.set_down(false);
        assert_eq!(spool.drain(&broker, 10).await.unwrap(), Drained { sent: 1, left: 0 });
        let sent = broker.records("decisions");
        assert_eq!((sent[0].key.as_deref(), sent[0].value.as_slice()), (Some(&b"e-1"[..]), &br#"{"customer_id":"c-secret-42"}"#[..]));
    }
}
