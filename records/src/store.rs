//! The records store: one chain per class, appended, read (every read recorded), archived and
//! destroyed at the end of retention (the destruction recorded).

use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use haechi_storage::KeyRing;
use serde::{Deserialize, Serialize};

use crate::config::RecordsConfig;
use crate::error::RecordsError;
use crate::ledger::Ledger;
use crate::record::{Actor, DestructionRecord, ReadRecord, Record, RecordBody, RecordClass, RecordKind};

/// What to read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    /// Event time, inclusive, ms since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ms: Option<i64>,
    /// Event time, exclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_ms: Option<i64>,
    /// Only these kinds; empty: every kind.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<RecordKind>,
    /// At most this many (the oldest first); 0: no limit.
    #[serde(default)]
    pub limit: usize,
}

impl Filter {
    pub fn matches(&self, r: &Record) -> bool {
        self.customer_id.as_ref().is_none_or(|c| r.customer_id.as_ref() == Some(c))
            && self.from_ms.is_none_or(|f| r.event_ms >= f)
            && self.to_ms.is_none_or(|t| r.event_ms < t)
            && (self.kinds.is_empty() || self.kinds.contains(&r.kind()))
    }

    fn classes(&self) -> Vec<RecordClass> {
        let mut classes: Vec<RecordClass> = if self.kinds.is_empty() { RecordClass::ALL.to_vec() } else { self.kinds.iter().map(|k| k.class()).collect() };
        classes.sort();
        classes.dedup();
        classes
    }
}

/// What one maintenance pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Maintenance {
    pub archived: usize,
    /// Records destroyed, by class.
    pub destroyed: Vec<(RecordClass, u64)>,
}

/// The open records store.
pub struct Records {
    ledgers: Vec<Ledger>,
    config: RecordsConfig,
    records_dir: PathBuf,
    checkpoint_dir: PathBuf,
    node: String,
}

impl Records {
    /// Open the store in `data_dir/records` (checkpoints in `data_dir/records-checkpoints` unless
    /// configured elsewhere), sealed with `ring`.
    pub fn open(data_dir: &Path, config: &RecordsConfig, ring: &KeyRing) -> Result<Records, RecordsError> {
        let records_dir = data_dir.join("records");
        let checkpoint_dir = config.checkpoint_dir.clone().unwrap_or_else(|| data_dir.join("records-checkpoints"));
        let node = config.node_name();
        let ledgers = RecordClass::ALL.into_iter().map(|c| Ledger::open(&records_dir, &checkpoint_dir, c, ring, config.segment_bytes, &node)).collect::<Result<Vec<_>, _>>()?;
        Ok(Records { ledgers, config: config.clone(), records_dir, checkpoint_dir, node })
    }

    pub fn records_dir(&self) -> &Path {
        &self.records_dir
    }

    pub fn checkpoint_dir(&self) -> &Path {
        &self.checkpoint_dir
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    fn ledger(&self, class: RecordClass) -> &Ledger {
        self.ledgers.iter().find(|l| l.class() == class).expect("one ledger per class")
    }

    /// A record to append: `recorded_ms`, `seq`, `id` and `node` are filled in by [`Records::append`].
    pub fn new_record(event_ms: i64, customer_id: Option<String>, body: RecordBody) -> Record {
        Record { id: String::new(), seq: 0, event_ms, recorded_ms: 0, node: String::new(), customer_id, log_offset: None, body }
    }

    /// Append records recorded at `now_ms`, each to its class's chain, in the order given. The
    /// bytes reach the kernel; [`Records::sync`] or [`Records::checkpoint`] make them durable.
    pub fn append(&self, now_ms: i64, records: &mut [Record]) -> Result<(), RecordsError> {
        for r in records.iter_mut() {
            r.recorded_ms = now_ms;
        }
        let first_class = records.first().map(|r| r.kind().class());
        if records.iter().all(|r| Some(r.kind().class()) == first_class) {
            return match first_class {
                Some(c) => self.ledger(c).append(records),
                None => Ok(()),
            };
        }
        for class in RecordClass::ALL {
            let mut of_class: Vec<Record> = records.iter().filter(|r| r.kind().class() == class).cloned().collect();
            if !of_class.is_empty() {
                self.ledger(class).append(&mut of_class)?;
                let mut it = of_class.into_iter();
                for r in records.iter_mut().filter(|r| r.kind().class() == class) {
                    *r = it.next().expect("same count");
                }
            }
        }
        Ok(())
    }

    /// Append one record and make it durable before returning it (with its id): for staff
    /// actions, reads and exports, which must not be acknowledged unrecorded.
    pub fn record(&self, now_ms: i64, mut record: Record) -> Result<Record, RecordsError> {
        self.append(now_ms, std::slice::from_mut(&mut record))?;
        self.ledger(record.kind().class()).sync()?;
        Ok(record)
    }

    pub fn sync(&self) -> Result<(), RecordsError> {
        self.ledgers.iter().try_for_each(Ledger::sync)
    }

    /// Sync every chain and sign its head.
    pub fn checkpoint(&self, now_ms: i64) -> Result<(), RecordsError> {
        self.ledgers.iter().try_for_each(|l| l.checkpoint(now_ms))
    }

    /// The highest ingest-log offset the transaction chain has recorded: after a crash, the log
    /// tail before it was recorded already and is not recorded twice.
    pub fn last_log_offset(&self) -> Option<u64> {
        self.ledger(RecordClass::Transaction).last_log_offset()
    }

    /// Records matching `filter`, oldest first, without recording the read: for reports built
    /// by the service itself. Staff reads go through [`Records::read`].
    pub fn query(&self, filter: &Filter) -> Result<Vec<Record>, RecordsError> {
        let mut out = Vec::new();
        for class in filter.classes() {
            self.ledger(class).scan(|r| {
                if filter.matches(&r) {
                    out.push(r);
                }
                true
            })?;
        }
        if filter.classes().len() > 1 {
            out.sort_by_key(|r| (r.event_ms, r.recorded_ms));
        }
        if filter.limit > 0 {
            out.truncate(filter.limit);
        }
        Ok(out)
    }

    /// A staff read: the records matching `filter`, and a durable read record saying who read
    /// what and how many came back. Nothing is returned unless the read was recorded.
    pub fn read(&self, now_ms: i64, who: Actor, via: &str, filter: &Filter) -> Result<Vec<Record>, RecordsError> {
        let found = self.query(filter)?;
        let read = ReadRecord { who, via: via.to_owned(), filter: serde_json::to_value(filter)?, returned: found.len() as u64 };
        self.record(now_ms, Records::new_record(now_ms, filter.customer_id.clone(), RecordBody::Read(read)))?;
        Ok(found)
    }

    /// The report of `from_ms..to_ms` (event time) beside the period of the same length before
    /// it, as a recorded read: reports are built from personal data too.
    pub fn report(&self, now_ms: i64, who: Actor, via: &str, from_ms: i64, to_ms: i64) -> Result<crate::Report, RecordsError> {
        let previous_from = from_ms.saturating_sub(to_ms.saturating_sub(from_ms));
        let kinds = vec![RecordKind::Access, RecordKind::Decision, RecordKind::Alert, RecordKind::Block];
        let all = self.query(&Filter { from_ms: Some(previous_from), to_ms: Some(to_ms), kinds: kinds.clone(), ..Filter::default() })?;
        let (current, previous): (Vec<&Record>, Vec<&Record>) = all.iter().partition(|r| r.event_ms >= from_ms);
        let report = crate::Report::build((from_ms, to_ms), current.iter().copied(), previous.iter().copied())?;
        let filter = Filter { from_ms: Some(previous_from), to_ms: Some(to_ms), kinds, ..Filter::default() };
        let read = ReadRecord { who, via: via.to_owned(), filter: serde_json::to_value(&filter)?, returned: all.len() as u64 };
        self.record(now_ms, Records::new_record(now_ms, None, RecordBody::Read(read)))?;
        Ok(report)
    }

    /// Archive what is old enough, then destroy what is past retention, recording each
    /// destruction (before the files go) in the processing chain.
    pub fn maintain(&self, now_ms: i64) -> Result<Maintenance, RecordsError> {
        let mut done = Maintenance::default();
        let archive_before = now_ms.saturating_sub(self.config.archive_after.as_millis() as i64);
        for l in &self.ledgers {
            done.archived += l.archive(archive_before)?;
        }
        for l in &self.ledgers {
            let before = now_ms.saturating_sub(self.config.retention.of(l.class()).as_millis() as i64);
            let Some(plan) = l.plan_destruction(before)? else { continue };
            let destruction = DestructionRecord {
                class: l.class().as_str().into(),
                before_ms: before,
                first_seq: plan.first_seq,
                last_seq: plan.last_seq,
                records: plan.last_seq - plan.first_seq + 1,
                segments: plan.files.iter().filter_map(|f| f.path.file_name().map(|n| n.to_string_lossy().into_owned())).collect(),
            };
            let records = destruction.records;
            self.record(now_ms, Records::new_record(now_ms, None, RecordBody::Destruction(destruction)))?;
            l.destroy(&plan, now_ms)?;
            tracing::info!(class = l.class().as_str(), records, first = plan.first_seq, last = plan.last_seq, "records past retention destroyed");
            done.destroyed.push((l.class(), records));
        }
        Ok(done)
    }
}

enum Message {
    Records(Vec<Record>),
    Flush(SyncSender<Result<(), String>>),
}

/// Appends records from a background thread, so that recording every event costs the caller
/// a channel send; signs checkpoints every `checkpoint_every`.
pub struct Recorder {
    tx: Option<SyncSender<Message>>,
    thread: Option<JoinHandle<()>>,
    failures: Arc<std::sync::atomic::AtomicU64>,
}

impl Recorder {
    /// Start the writer thread over `records`; `clock` gives the record time (ms since the epoch).
    pub fn start(records: Arc<Records>, clock: fn() -> i64) -> Recorder {
        // Bounded: a writer that falls behind slows the pipeline instead of growing memory.
        let (tx, rx) = sync_channel(1024);
        let failures = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let f = failures.clone();
        let thread = std::thread::Builder::new().name("haechi-records".into()).spawn(move || write_loop(&records, &rx, clock, &f)).expect("spawn the records writer");
        Recorder { tx: Some(tx), thread: Some(thread), failures }
    }

    /// Queue records (blocks while the writer is 1,024 batches behind).
    pub fn send(&self, batch: Vec<Record>) {
        if !batch.is_empty() {
            if let Some(tx) = &self.tx {
                let _ = tx.send(Message::Records(batch));
            }
        }
    }

    /// Wait until everything sent so far is written, synced and checkpointed.
    pub fn flush(&self) -> Result<(), RecordsError> {
        let (reply, done) = sync_channel(1);
        if let Some(tx) = &self.tx {
            tx.send(Message::Flush(reply)).map_err(|_| RecordsError::Config("the records writer has stopped".into()))?;
            return done.recv().map_err(|_| RecordsError::Config("the records writer has stopped".into()))?.map_err(RecordsError::Config);
        }
        Ok(())
    }

    /// Appends that failed (each logged); the service reports them as a metric.
    pub fn failures(&self) -> u64 {
        self.failures.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn write_loop(records: &Records, rx: &Receiver<Message>, clock: fn() -> i64, failures: &std::sync::atomic::AtomicU64) {
    let every = records.config.checkpoint_every;
    let mut last_checkpoint = Instant::now();
    let fail = |e: RecordsError| {
        failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::error!(error = %e, "writing access records failed");
    };
    loop {
        let wait = every.saturating_sub(last_checkpoint.elapsed()).max(Duration::from_millis(1));
        match rx.recv_timeout(wait) {
            Ok(Message::Records(mut batch)) => {
                if let Err(e) = records.append(clock(), &mut batch) {
                    fail(e);
                }
            }
            Ok(Message::Flush(reply)) => {
                let r = records.checkpoint(clock());
                last_checkpoint = Instant::now();
                let _ = reply.send(r.map_err(|e| e.to_string()));
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                if let Err(e) = records.checkpoint(clock()) {
                    fail(e);
                }
                return;
            }
        }
        if last_checkpoint.elapsed() >= every {
            if let Err(e) = records.checkpoint(clock()) {
                fail(e);
            }
            last_checkpoint = Instant::now();
        }
    }
}
