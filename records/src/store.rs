//! The records store: one chain per class, appended, read (every read recorded), archived and
//! destroyed at the end of retention (the destruction recorded).

use std::path::{Path, PathBuf};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
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
        let records = Records { ledgers, config: config.clone(), records_dir, checkpoint_dir, node };
        // What a crash left unsigned (written after the last checkpoint) is signed now, so that
        // from here on a cut of it shows.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        records.checkpoint(now)?;
        Ok(records)
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
        // Synced and signed: a staff record cannot be cut off the end unseen, even for a moment.
        self.ledger(record.kind().class()).checkpoint(now_ms)?;
        Ok(record)
    }

    pub fn sync(&self) -> Result<(), RecordsError> {
        self.ledgers.iter().try_for_each(Ledger::sync)
    }

    /// Sync every chain and sign its head.
    pub fn checkpoint(&self, now_ms: i64) -> Result<(), RecordsError> {
        self.ledgers.iter().try_for_each(|l| l.checkpoint(now_ms))
    }


    /// The ingest-log offsets the transaction chain holds at or after `from` (see
    /// `Ledger::log_offsets_from`).
    pub fn recorded_log_offsets_from(&self, from: u64) -> Result<std::collections::HashSet<u64>, RecordsError> {
        self.ledger(RecordClass::Transaction).log_offsets_from(from)
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
        let filter = Filter { from_ms: Some(previous_from), to_ms: Some(to_ms), kinds: vec![RecordKind::Access, RecordKind::Decision, RecordKind::Alert, RecordKind::Block], ..Filter::default() };
        let all = self.query(&filter)?;
        let (current, previous): (Vec<&Record>, Vec<&Record>) = all.iter().partition(|r| r.event_ms >= from_ms);
        let report = crate::Report::build((from_ms, to_ms), current.iter().copied(), previous.iter().copied())?;
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

/// Turns what the caller sends into records, on the writer thread.
pub type Convert<M> = Box<dyn FnMut(M, &mut Vec<Record>) + Send>;

/// What callers have handed over and nobody has taken yet.
struct Inbox<M> {
    items: VecDeque<M>,
    /// Items ever sent: a flush writes up to the count it found, not whatever keeps coming.
    sent: u64,
    closed: bool,
}

/// The writing itself. Whoever holds it takes items from the front of the inbox and appends
/// them, so records keep the order they were sent in whichever thread writes them.
struct Work<M> {
    convert: Convert<M>,
    batch: Vec<Record>,
    /// Items ever taken from the inbox.
    taken: u64,
}

struct Shared<M> {
    inbox: Mutex<Inbox<M>>,
    /// The writer waits here (with a timeout) for items.
    wake: Condvar,
    /// Callers wait here while the inbox is full.
    space: Condvar,
    work: Mutex<Work<M>>,
    failures: std::sync::atomic::AtomicU64,
}

impl<M> Shared<M> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inbox<M>> {
        self.inbox.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn work(&self) -> std::sync::MutexGuard<'_, Work<M>> {
        self.work.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn fail(&self, e: &RecordsError) {
        self.failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::error!(error = %e, "writing access records failed");
    }

    /// Take up to `TAKE_AT_MOST` items and append their records. False when there were none.
    fn write_some(&self, records: &Records, work: &mut Work<M>, clock: fn() -> i64) -> bool {
        let taken: Vec<M> = {
            let mut inbox = self.lock();
            let n = inbox.items.len().min(TAKE_AT_MOST);
            work.taken += n as u64;
            let taken = inbox.items.drain(..n).collect();
            self.space.notify_all();
            taken
        };
        if taken.is_empty() {
            return false;
        }
        for item in taken {
            (work.convert)(item, &mut work.batch);
        }
        if !work.batch.is_empty() {
            if let Err(e) = records.append(clock(), &mut work.batch) {
                self.fail(&e);
            }
            work.batch.clear();
        }
        true
    }

    fn checkpoint(&self, records: &Records, clock: fn() -> i64) -> Result<(), RecordsError> {
        records.checkpoint(clock()).inspect_err(|e| self.fail(e))
    }

    /// Write, on this thread, everything sent before the call.
    fn write_sent(&self, records: &Records, clock: fn() -> i64) {
        let sent = self.lock().sent;
        let mut work = self.work();
        while work.taken < sent && self.write_some(records, &mut work, clock) {}
    }
}

/// Appends records from a background thread, so that recording an event costs the caller a
/// push onto a shared inbox: no system call, no wake-up per event. The writer takes the inbox
/// in chunks, turns them into records and appends each chunk in one write; it is woken when
/// `WAKE_AT` items wait, and otherwise looks every `LOOK_EVERY`. Signs checkpoints every
/// `checkpoint_every`.
///
/// The writer may run in the idle scheduling class (`background_writer`), where a busy machine
/// can hold it back for long. A flush and the drop write what is left on their own thread;
/// what they may still wait for is the one chunk the writer holds (and, for a caller that
/// appends to the same chain, its seal and write), or a full inbox.
pub struct Recorder<M: Send + 'static> {
    shared: Arc<Shared<M>>,
    records: Arc<Records>,
    clock: fn() -> i64,
    thread: Option<JoinHandle<()>>,
}

const WAKE_AT: usize = 1024;
/// What one holder of the work takes at a time (about 0.7 ms of work): the longest a flush
/// can wait behind a writer the scheduler has put aside.
const TAKE_AT_MOST: usize = 256;
/// A caller waits past this many items: a writer that falls behind slows the pipeline
/// instead of growing memory.
const INBOX_MAX: usize = 64 * 1024;
const LOOK_EVERY: Duration = Duration::from_millis(20);

impl<M: Send + 'static> Recorder<M> {
    /// Start the writer thread over `records`; `clock` gives the record time (ms since the epoch).
    pub fn start(records: Arc<Records>, clock: fn() -> i64, convert: Convert<M>) -> Recorder<M> {
        let shared = Arc::new(Shared {
            inbox: Mutex::new(Inbox { items: VecDeque::new(), sent: 0, closed: false }),
            wake: Condvar::new(),
            space: Condvar::new(),
            work: Mutex::new(Work { convert, batch: Vec::new(), taken: 0 }),
            failures: std::sync::atomic::AtomicU64::new(0),
        });
        let (sh, rec) = (shared.clone(), records.clone());
        let (ready, started) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("haechi-records".into())
            .spawn(move || {
                if rec.config.background_writer {
                    background_class();
                }
                let _ = ready.send(());
                write_loop(&rec, &sh, clock);
            })
            .expect("spawn the records writer");
        // Its scheduling class is settled before anything is sent to it.
        let _ = started.recv();
        Recorder { shared, records, clock, thread: Some(thread) }
    }

    /// Hand over one item (waits only while the inbox is full).
    pub fn send(&self, item: M) {
        let mut inbox = self.shared.lock();
        while inbox.items.len() >= INBOX_MAX && !inbox.closed {
            inbox = self.shared.space.wait(inbox).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        inbox.items.push_back(item);
        inbox.sent += 1;
        if inbox.items.len() == WAKE_AT {
            self.shared.wake.notify_one();
        }
    }

    /// Write everything sent before the call, sync it and sign the chain heads, on this thread.
    pub fn flush(&self) -> Result<(), RecordsError> {
        self.shared.write_sent(&self.records, self.clock);
        self.shared.checkpoint(&self.records, self.clock)
    }

    /// Appends that failed (each logged); the service reports them as a metric.
    pub fn failures(&self) -> u64 {
        self.shared.failures.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl<M: Send + 'static> Drop for Recorder<M> {
    fn drop(&mut self) {
        // What is left is written and signed here, not left to a writer the scheduler may hold back.
        self.shared.write_sent(&self.records, self.clock);
        let _ = self.shared.checkpoint(&self.records, self.clock);
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                self.shared.failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::error!("the records writer panicked");
                // What it left behind, and the chain heads it did not sign.
                self.shared.write_sent(&self.records, self.clock);
                let _ = self.shared.checkpoint(&self.records, self.clock);
            }
        }
    }
}

fn write_loop<M>(records: &Records, shared: &Shared<M>, clock: fn() -> i64) {
    let every = records.config.checkpoint_every;
    let mut last_checkpoint = Instant::now();
    loop {
        let closed = {
            let mut inbox = shared.lock();
            if inbox.items.is_empty() && !inbox.closed {
                inbox = shared.wake.wait_timeout(inbox, LOOK_EVERY).unwrap_or_else(std::sync::PoisonError::into_inner).0;
            }
            inbox.closed
        };
        // The work is let go between chunks, so that a flush never waits behind more than one.
        while shared.write_some(records, &mut shared.work(), clock) {}
        // Signed without holding the work: a flush need not wait for this sync.
        if closed || last_checkpoint.elapsed() >= every {
            last_checkpoint = Instant::now();
            let _ = shared.checkpoint(records, clock);
        }
        if closed && shared.lock().items.is_empty() {
            return;
        }
    }
}

/// Put the calling thread in the idle scheduling class. Nice 10 and 19 were measured first and
/// did not move the `/v1/check` p99: a niced thread still keeps its core until the scheduler's
/// wake-up granularity runs out, while an idle-class thread is preempted as soon as an ordinary
/// one wakes (BENCHMARKS.md, "Where the `/v1/check` p99 goes with a data dir").
#[cfg(target_os = "linux")]
fn background_class() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 names the calling thread, and `param` is a valid, initialised sched_param.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if rc != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "the records writer stays in the normal scheduling class");
    }
}

#[cfg(not(target_os = "linux"))]
fn background_class() {}
