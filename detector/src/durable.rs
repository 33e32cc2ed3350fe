//! State that survives: the data dir.
//!
//! ```text
//! DATA_DIR/
//!   LOCK          one process per data dir
//!   log/          every accepted event, appended before the caller's answer
//!   snapshots/    everything the pipeline remembers, and the log offset it covers
//!   alerts/       every alert, in feed order (its offset + 1 is the alert's `seq`)
//!   blocks.json   the block list (unless blocks.state_file says otherwise)
//!   spool/        records waiting for Fluvio topics (with [sinks.fluvio])
//!   audit.jsonl   analyst and admin actions (unless server.audit_log says otherwise)
//! ```
//!
//! The log, alerts, snapshots, spool and block list name customers, devices
//! and addresses: each is sealed with a subkey of the data key ring
//! (`[records] key_file` or `key_env`, kept outside the data dir; the public
//! demo key when neither is set), one subkey per purpose ([`purpose`]). A
//! ring that lacks a key the data dir was sealed with stops the start,
//! naming the file and the key: the service never starts on empty state
//! because the key was wrong.
//!
//! Start: the newest valid snapshot is loaded, the log is replayed from the
//! offset it covers, then the service serves, so that state is the same as if
//! the process had never stopped. A snapshot that is corrupt or was written by
//! an incompatible build is refused with a message and the previous one is
//! tried, then a replay of the whole log; the service never starts on
//! silently empty state.
//!
//! A snapshot is copied while the ingest gate is held for writing (no event is
//! between its log append and its decision), so the copy matches one log
//! offset exactly; encoding and writing the file happen after the gate is
//! released, while ingestion goes on.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use haechi_alerting::FolderState;
use haechi_storage::{Fsync, IngestLog, KeyRing, LogConfig, Sealer, SnapshotStore};
use serde::{Deserialize, Serialize};

use crate::driver::{self, log_record, FeedSink, LogSource, Mode};
use crate::error::DetectorError;
use crate::pipeline::{Pipeline, PipelineState};
use crate::service::feed::AlertFeed;

/// `[storage]`: where durable state lives and how hard it is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// The data dir. `haechi serve` uses `./haechi-data` when neither this
    /// nor `--data-dir` is given (and `--memory-only` is not).
    pub data_dir: Option<PathBuf>,
    /// When the ingest log reaches the disk: `always` (before every answer),
    /// `interval` (every `fsync_interval`; the default) or `never` (the OS
    /// decides). Every mode survives `kill -9`; they differ on power loss.
    pub fsync: Fsync,
    /// With `fsync = "interval"`, the most a power loss can cost.
    #[serde(with = "humantime_serde")]
    pub fsync_interval: Duration,
    /// Log segment size; whole segments are deleted once snapshots cover them.
    pub segment_bytes: u64,
    /// A snapshot at least this often...
    #[serde(with = "humantime_serde")]
    pub snapshot_interval: Duration,
    /// ...and after this many accepted events, whichever comes first.
    pub snapshot_every_events: u64,
    /// Snapshots kept: the newest, and older ones to fall back on.
    pub keep_snapshots: usize,
    /// Delete log segments that the oldest kept snapshot covers. Off: the
    /// log is kept whole (an archive for replays and new replicas).
    pub prune_log: bool,
    /// Set by `haechi bench restart --unsealed` only, never by a file: the
    /// data dir is written unencrypted, to measure what sealing costs.
    #[serde(skip)]
    pub unsealed: bool,
}

impl Default for StorageConfig {
    fn default() -> Self {
        let log = LogConfig::default();
        StorageConfig {
            data_dir: None,
            fsync: log.fsync,
            fsync_interval: log.fsync_interval,
            segment_bytes: log.segment_bytes,
            snapshot_interval: Duration::from_secs(300),
            snapshot_every_events: 1_000_000,
            keep_snapshots: 3,
            prune_log: true,
            unsealed: false,
        }
    }
}

impl StorageConfig {
    /// # Errors
    /// A message naming the setting.
    pub fn validate(&self) -> Result<(), crate::DetectorError> {
        self.log_config().validate().map_err(|e| setting!("storage: {e}"))?;
        if self.keep_snapshots < 2 {
            return Err(setting!("storage.keep_snapshots must be at least 2, so that a corrupt newest snapshot has one to fall back on"));
        }
        if self.snapshot_interval < Duration::from_secs(1) || self.snapshot_every_events == 0 {
            return Err(setting!("storage.snapshot_interval must be at least 1s and storage.snapshot_every_events positive"));
        }
        Ok(())
    }

    fn log_config(&self) -> LogConfig {
        LogConfig { fsync: self.fsync, fsync_interval: self.fsync_interval, segment_bytes: self.segment_bytes }
    }
}

/// What each sealed file of the data dir is sealed for: a subkey each, so
/// bytes of one never open as another.
pub mod purpose {
    pub const INGEST_LOG: &str = "ingest-log";
    pub const ALERT_LOG: &str = "alert-log";
    pub const SNAPSHOT: &str = "snapshot";
    pub const SPOOL: &str = "spool";
    pub const BLOCKS: &str = "blocks";
}

/// Alerts the alert log keeps behind its head whatever the snapshots say:
/// the feed's ring is refilled from them at start.
const ALERTS_SHOWN: u64 = 100_000;

/// The snapshot layout this build writes and reads. Bump it whenever a type
/// inside [`Snapshot`] changes shape: an older file is then refused with a
/// message (and the log replayed) instead of being misread.
pub const SNAPSHOT_FORMAT: u32 = 35;

#[derive(Serialize, Deserialize)]
struct Snapshot {
    pipeline: PipelineState,
    folder: FolderState,
    /// The alert log's next offset when the copy was taken: alerts after it
    /// were raised by events the snapshot does not cover.
    alert_log_next: u64,
    /// Source-topic positions decided when the copy was taken.
    topic_offsets: crate::fluvio::TopicOffsets,
}

/// What writing one snapshot took.
#[derive(Debug, Clone)]
pub struct SnapshotReport {
    pub path: PathBuf,
    pub bytes: u64,
    pub entities: usize,
    pub covers_offset: u64,
    /// Time ingestion waited while the state was copied.
    pub paused: Duration,
    /// Time to encode and write it, ingestion running.
    pub written: Duration,
    /// Log segments deleted because kept snapshots cover them.
    pub segments_pruned: usize,
}

/// What starting on a data dir found and did.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// The snapshot state came from, and the log offset it covers.
    pub snapshot: Option<(PathBuf, u64)>,
    /// Snapshots refused, each with the reason.
    pub refused: Vec<String>,
    /// Events replayed from the log after the snapshot.
    pub replayed: u64,
    /// Log records that no longer parse (counted, skipped).
    pub unreadable: u64,
    /// Bytes of a torn last record dropped from the log (a crash mid-append;
    /// that event was never acknowledged).
    pub torn_tail_bytes: u64,
    pub elapsed: Duration,
    /// Topic positions to resume at (from the snapshot).
    pub topic_offsets: crate::fluvio::TopicOffsets,
}

/// An open data dir.
pub struct DataDir {
    dir: PathBuf,
    /// Held for the life of the process: a second service on the same data
    /// dir would interleave two logs.
    _lock: File,
    log: IngestLog,
    alerts: Arc<IngestLog>,
    snapshots: SnapshotStore,
    /// Read: one event's append and decision. Write: a snapshot's copy.
    gate: RwLock<()>,
    accepted_since_snapshot: AtomicU64,
    /// The alert log's position at each snapshot this process wrote, oldest
    /// first: alerts before the oldest kept one's are needed by no recovery.
    alert_marks: std::sync::Mutex<std::collections::VecDeque<u64>>,
    config: StorageConfig,
    torn_tail_bytes: u64,
    keys: Option<KeyRing>,
    /// Run after a snapshot's copy and before its file is written: the access records of every
    /// event the snapshot covers are written and synced first, or a crash after the snapshot
    /// would leave them unrecorded (recovery replays only what comes after it).
    before_snapshot_write: std::sync::OnceLock<SnapshotHook>,
}

/// See [`DataDir::before_snapshot_write`].
pub type SnapshotHook = Box<dyn Fn() -> Result<(), DetectorError> + Send + Sync>;

impl DataDir {
    /// Set what must be durable before a snapshot file is written (once).
    pub fn before_snapshot_write(&self, hook: SnapshotHook) {
        let _ = self.before_snapshot_write.set(hook);
    }

    /// Open (or create) a data dir and lock it; its files are sealed with
    /// subkeys of `keys` (`None` only to measure what sealing costs: see
    /// [`StorageConfig::unsealed`]).
    ///
    /// # Errors
    /// When the directory cannot be created, another process holds it, its
    /// log is corrupt beyond a torn last record, or its logs were sealed
    /// with a key `keys` lacks (the message names the file and the key).
    pub fn open(dir: &Path, config: StorageConfig, keys: Option<&KeyRing>) -> Result<DataDir, DetectorError> {
        let sealer = |purpose| keys.map(|k| k.sealer(purpose));
        config.validate().map_err(|e| DetectorError::Config { path: "storage".into(), message: e.to_string() })?;
        let fresh = !dir.join("LOCK").exists();
        // Owner only: the log and snapshots hold customer ids, addresses and devices.
        {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| input(dir, format!("cannot create the data dir: {e}")))?;
        }
        let lock_path = dir.join("LOCK");
        let lock = File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(|e| input(&lock_path, e.to_string()))?;
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => input(dir, "another haechi process is using this data dir (its LOCK file is held)".into()),
            std::fs::TryLockError::Error(e) => input(&lock_path, format!("cannot lock the data dir: {e}")),
        })?;
        if fresh {
            // A relative default lands wherever the service was started: say where.
            let shown = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
            tracing::warn!(dir = %shown.display(), "new, empty data dir: no earlier state is loaded (if the service ran before, check --data-dir)");
        }
        let (log, report) = IngestLog::open_sealed(&dir.join("log"), config.log_config(), sealer(purpose::INGEST_LOG))?;
        if report.torn_tail_bytes > 0 {
            tracing::warn!(bytes = report.torn_tail_bytes, "the ingest log ended in a torn record (a crash mid-append): dropped; that event was never acknowledged");
        }
        let alert_config = LogConfig { segment_bytes: config.segment_bytes.min(16 << 20), ..config.log_config() };
        let (alerts, _) = IngestLog::open_sealed(&dir.join("alerts"), alert_config, sealer(purpose::ALERT_LOG))?;
        let snapshots = SnapshotStore::open_sealed(&dir.join("snapshots"), config.keep_snapshots, sealer(purpose::SNAPSHOT))?;
        Ok(DataDir {
            dir: dir.to_path_buf(),
            _lock: lock,
            log,
            alerts: Arc::new(alerts),
            snapshots,
            gate: RwLock::new(()),
            accepted_since_snapshot: AtomicU64::new(0),
            alert_marks: std::sync::Mutex::new(std::collections::VecDeque::new()),
            config,
            torn_tail_bytes: report.torn_tail_bytes,
            keys: keys.cloned(),
            before_snapshot_write: std::sync::OnceLock::new(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A sealer for one of the data dir's files (see [`purpose`]); `None`
    /// when the data dir is not sealed.
    pub fn sealer(&self, purpose: &str) -> Option<Sealer> {
        self.keys.as_ref().map(|k| k.sealer(purpose))
    }

    /// The alert log, for the alert feed.
    pub fn alert_log(&self) -> &Arc<IngestLog> {
        &self.alerts
    }

    /// The ingest log.
    pub fn log(&self) -> &IngestLog {
        &self.log
    }

    /// Would an append wait more than a write to the page cache: every
    /// append waits for the disk (`fsync = "always"`), or a snapshot is
    /// copying the state right now? Then callers append off the async
    /// runtime's threads; otherwise the hop to another thread costs more
    /// than the append (see BENCHMARKS.md, "Ingest").
    pub fn appends_may_wait(&self) -> bool {
        self.config.fsync == Fsync::Always || self.gate.try_read().is_err()
    }

    /// Hold while appending events and deciding them: a snapshot waits until
    /// every event appended so far is decided.
    pub fn ingest_gate(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Append accepted events (raw, as validated) before they are decided,
    /// stamped with the wall clock `wall_ms` they are decided against.
    ///
    /// # Errors
    /// When the log cannot be written: the events must then be refused.
    pub fn append(&self, wall_ms: i64, events: &[&[u8]]) -> Result<u64, DetectorError> {
        let records: Vec<Vec<u8>> = events.iter().map(|raw| log_record(wall_ms, raw)).collect();
        let refs: Vec<&[u8]> = records.iter().map(Vec::as_slice).collect();
        let first = self.log.append(&refs)?;
        self.accepted_since_snapshot.fetch_add(events.len() as u64, Ordering::Relaxed);
        Ok(first)
    }

    /// Count events accepted from a source that is its own log (a topic):
    /// they make a snapshot due like logged ones.
    pub fn note_accepted(&self, n: u64) {
        self.accepted_since_snapshot.fetch_add(n, Ordering::Relaxed);
    }

    /// Is a snapshot due, `since` the last one?
    pub fn snapshot_due(&self, since: Instant) -> bool {
        let pending = self.accepted_since_snapshot.load(Ordering::Relaxed);
        pending >= self.config.snapshot_every_events || (pending > 0 && since.elapsed() >= self.config.snapshot_interval)
    }

    /// Does the data dir hold any state yet (a snapshot or a logged event)?
    pub fn has_state(&self) -> bool {
        self.log.next_offset() > 0 || self.snapshots.list().is_ok_and(|l| !l.is_empty())
    }

    /// Copy the state under the gate, then encode and write it atomically;
    /// then delete log segments the oldest kept snapshot covers.
    ///
    /// # Errors
    /// When the snapshot cannot be encoded or written (the previous ones stay).
    pub fn write_snapshot(&self, pipeline: &Pipeline, feed: &AlertFeed, offsets: &std::sync::Mutex<crate::fluvio::TopicOffsets>) -> Result<SnapshotReport, DetectorError> {
        let started = Instant::now();
        let (snapshot, covers_offset) = {
            let _quiet = self.gate.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            self.accepted_since_snapshot.store(0, Ordering::Relaxed);
            let topic_offsets = offsets.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
            let snapshot = Snapshot { pipeline: pipeline.export_state(), folder: feed.export_folder(), alert_log_next: self.alerts.next_offset(), topic_offsets };
            (snapshot, self.log.next_offset())
        };
        let paused = started.elapsed();
        let entities = snapshot.pipeline.store.entity_count();
        let alert_mark = snapshot.alert_log_next;
        let payload = postcard::to_stdvec(&snapshot).map_err(|e| snapshot_error(format!("encoding: {e}")))?;
        drop(snapshot);
        if let Some(hook) = self.before_snapshot_write.get() {
            hook()?;
        }
        // The logs first: a snapshot on disk must never cover records that a
        // power loss could still take from the log after it.
        self.log.sync()?;
        self.alerts.sync()?;
        let (path, bytes) = self.snapshots.write(SNAPSHOT_FORMAT, covers_offset, &payload)?;
        let mut segments_pruned = 0;
        if self.config.prune_log {
            // Keep what the oldest kept snapshot needs: if the newest turns
            // out corrupt, the one before it replays from its own offset.
            let oldest = self.snapshots.oldest_covered()?.unwrap_or(0);
            segments_pruned = self.log.remove_before(oldest)?;
            // The alert log likewise, once this process has written as many
            // snapshots as are kept (before that it does not know the oldest
            // one's mark), and never into the alerts the feed shows.
            let mut marks = self.alert_marks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            marks.push_back(alert_mark);
            while marks.len() > self.config.keep_snapshots {
                marks.pop_front();
            }
            if marks.len() == self.config.keep_snapshots {
                let shown = self.alerts.next_offset().saturating_sub(ALERTS_SHOWN);
                segments_pruned += self.alerts.remove_before(marks[0].min(shown))?;
            }
        }
        Ok(SnapshotReport { path, bytes, entities, covers_offset, paused, written: started.elapsed() - paused, segments_pruned })
    }

    /// Bring a fresh pipeline and feed to where the data dir left off: the
    /// newest valid snapshot, then the log after it. `on_replayed` sees
    /// each replayed event's outcome (for metrics).
    ///
    /// # Errors
    /// When no snapshot is valid and the log no longer starts at offset 0
    /// (state before it would be silently missing), or the log cannot be read.
    pub fn recover(&self, pipeline: &Pipeline, feed: &AlertFeed, also: &mut dyn driver::Sink) -> Result<RecoveryReport, DetectorError> {
        let started = Instant::now();
        let mut report = RecoveryReport { torn_tail_bytes: self.torn_tail_bytes, ..RecoveryReport::default() };
        // The state of a pipeline that has seen nothing: what a refused
        // snapshot's partial restore is undone to.
        let empty = pipeline.export_state();
        let (mut loaded, refused) = self.snapshots.load_newest(SNAPSHOT_FORMAT)?;
        // Sealed with a key the ring lacks: the file is likely sound and the
        // ring wrong. Stop before anything is moved aside or rebuilt without it.
        if let Some((r, key)) = refused.iter().find_map(|r| Some((r, r.unknown_key.as_ref()?))) {
            return Err(snapshot_error(format!(
                "{} is sealed with data key {key:?}, which the key ring (keys {}) does not hold: start with the key ring this data dir was written with ([records] key_file or key_env)",
                r.path.display(),
                self.keys.iter().flat_map(KeyRing::ids).map(|id| format!("{id:?}")).collect::<Vec<_>>().join(", ")
            )));
        }
        let mut skipped: Vec<PathBuf> = refused.iter().map(|r| r.path.clone()).collect();
        report.refused.extend(refused.iter().map(ToString::to_string));
        let mut from = 0;
        // A file that passes its checksum can still not fit this store (another
        // key, other windows) or this log: refused too, then the next older one.
        while let Some(snap) = loaded.take() {
            match self.apply(&snap, pipeline, feed) {
                Ok(offsets) => {
                    report.topic_offsets = offsets;
                    from = snap.covers_offset;
                    report.snapshot = Some((snap.path, snap.covers_offset));
                }
                Err(e) => {
                    pipeline.restore_state(empty.clone())?;
                    feed.restore_folder(&FolderState::default())?;
                    report.refused.push(format!("{}: {e}", snap.path.display()));
                    skipped.push(snap.path);
                    loaded = self.older_than(&skipped)?;
                }
            }
        }
        for r in &report.refused {
            tracing::error!("snapshot refused: {r}");
        }
        // Out of the way, kept for a look: a refused file must not hold one
        // of the `keep_snapshots` places that valid ones need.
        for path in &skipped {
            let mut aside = path.clone().into_os_string();
            aside.push(".refused");
            if let Err(e) = std::fs::rename(path, &aside) {
                tracing::warn!(path = %path.display(), error = %e, "could not move a refused snapshot aside");
            }
        }
        if report.snapshot.is_none() {
            if self.log.first_offset() > 0 {
                return Err(snapshot_error(format!(
                    "no usable snapshot in {}, and the ingest log starts at offset {} (older segments were pruned): starting would silently lose the state before it. \
                     Restore a snapshot from backup, or move the data dir aside to start empty{}",
                    self.dir.join("snapshots").display(),
                    self.log.first_offset(),
                    if report.refused.is_empty() { String::new() } else { format!(" (refused: {})", report.refused.join("; ")) }
                )));
            }
            feed.expect_replayed_from(0)?;
            if self.log.next_offset() > 0 {
                tracing::warn!("no usable snapshot: rebuilding state from the whole ingest log");
            }
        }
        pipeline.set_recovering(true);
        let replay = self.replay_from(pipeline, feed, &mut *also, from, &mut report);
        pipeline.set_recovering(false);
        feed.done_replaying();
        replay?;
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// Take over one snapshot, or say why it does not fit. On an error the
    /// caller undoes whatever was restored.
    fn apply(&self, snap: &haechi_storage::LoadedSnapshot, pipeline: &Pipeline, feed: &AlertFeed) -> Result<crate::fluvio::TopicOffsets, DetectorError> {
        let s = decode(&snap.payload)?;
        // A snapshot made durable before its log (a power loss between the
        // two) would cover records the log no longer has.
        if snap.covers_offset > self.log.next_offset() || s.alert_log_next > self.alerts.next_offset() {
            return Err(snapshot_error(format!(
                "it covers the ingest log up to {} and the alert log up to {}, but they end at {} and {}",
                snap.covers_offset,
                s.alert_log_next,
                self.log.next_offset(),
                self.alerts.next_offset()
            )));
        }
        pipeline.restore_state(s.pipeline)?;
        feed.restore_folder(&s.folder)?;
        feed.expect_replayed_from(s.alert_log_next)?;
        Ok(s.topic_offsets)
    }

    /// The newest valid snapshot that is not one of `skipped` (refused on
    /// the way by its checks: already reported by the first load).
    fn older_than(&self, skipped: &[PathBuf]) -> Result<Option<haechi_storage::LoadedSnapshot>, DetectorError> {
        Ok(self.snapshots.load_newest_excluding(SNAPSHOT_FORMAT, skipped)?.0)
    }

    fn replay_from(&self, pipeline: &Pipeline, feed: &AlertFeed, also: &mut dyn driver::Sink, from: u64, report: &mut RecoveryReport) -> Result<(), DetectorError> {
        let mut source = LogSource::new(self.log.read_from(from)?);
        let summary = driver::run(pipeline, &mut source, &mut (FeedSink(feed), also), Mode::Decide)?;
        report.replayed = summary.lines;
        // Events logged and then refused as repeats were refused the same way
        // the first time; anything else no longer parses or passes.
        report.unreadable = summary.rejected.iter().filter(|(reason, _)| **reason != "duplicate").map(|(_, n)| n).sum();
        Ok(())
    }
}

fn decode(payload: &[u8]) -> Result<Snapshot, DetectorError> {
    postcard::from_bytes(payload).map_err(|e| snapshot_error(format!("does not decode as this build's snapshot: {e}")))
}

fn snapshot_error(message: String) -> DetectorError {
    DetectorError::Snapshot(message)
}

fn input(path: &Path, message: String) -> DetectorError {
    DetectorError::Input { path: path.display().to_string(), message }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    fn pipeline(seed: u64) -> Pipeline {
        let mut config = Config::default();
        config.model.enabled = false;
        config.features.hash_seed = seed;
        config.features.hash_key_env = String::new();
        Pipeline::new(config).unwrap()
    }

    fn open(dir: &Path) -> Result<DataDir, DetectorError> {
        DataDir::open(dir, StorageConfig::default(), Some(&KeyRing::demo()))
    }

    fn ring(lines: &[&str]) -> KeyRing {
        KeyRing::parse(&lines.join("\n"), "test").unwrap()
    }

    #[test]
    fn a_snapshot_sealed_with_a_key_the_ring_lacks_stops_recovery_and_is_left_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (KeyRing::generate_line("a"), KeyRing::generate_line("b"));
        let path = {
            let d = DataDir::open(dir.path(), StorageConfig::default(), Some(&ring(&[&a, &b]))).unwrap();
            d.write_snapshot(&pipeline(1), &feed(), &Default::default()).unwrap().path
        };
        let d = DataDir::open(dir.path(), StorageConfig::default(), Some(&ring(&[&a]))).unwrap();
        let Err(e) = d.recover(&pipeline(1), &feed(), &mut crate::driver::Discard) else { panic!("recovered without the snapshot's key") };
        let e = e.to_string();
        assert!(e.contains(path.file_name().unwrap().to_str().unwrap()) && e.contains("\"b\""), "{e}");
        assert!(path.exists(), "not moved aside: the right ring still needs it");
        drop(d);
        let d = DataDir::open(dir.path(), StorageConfig::default(), Some(&ring(&[&a, &b]))).unwrap();
        assert_eq!(d.recover(&pipeline(1), &feed(), &mut crate::driver::Discard).unwrap().snapshot.map(|s| s.0), Some(path));
    }

    #[test]
    fn logs_sealed_with_another_key_stop_the_open_naming_the_segment_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (d, p) = (DataDir::open(dir.path(), StorageConfig::default(), Some(&ring(&[&KeyRing::generate_line("k1")]))).unwrap(), pipeline(1));
            ingest(&d, &p, 20);
        }
        let Err(e) = DataDir::open(dir.path(), StorageConfig::default(), Some(&ring(&[&KeyRing::generate_line("k2")]))) else { panic!("opened with another key") };
        let e = e.to_string();
        assert!(e.contains("log-00000000000000000000.seg") && e.contains("\"k1\""), "{e}");
    }

    fn feed() -> AlertFeed {
        AlertFeed::new(100, 600_000, 300_000)
    }

    /// Append and decide, as the service does.
    fn ingest(d: &DataDir, p: &Pipeline, n: usize) {
        let mut scratch = p.scratch();
        for i in 0..n {
            let line = format!(r#"{{"event_id":"e{i}","ts":"2026-11-02T10:{:02}:{:02}+09:00","step":"login","result":"success","customer_id":"c{}"}}"#, i / 60, i % 60, i % 7);
            let event = p.parse(line.as_bytes()).unwrap();
            let _gate = d.ingest_gate();
            d.append(crate::enforce::now_ms(), &[line.as_bytes()]).unwrap();
            p.process(&event, &mut scratch).unwrap();
        }
    }

    #[test]
    fn a_second_process_on_the_same_data_dir_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let first = open(dir.path()).unwrap();
        let Err(e) = open(dir.path()) else { panic!("a second open must be refused") };
        assert!(e.to_string().contains("another haechi process"), "{e}");
        drop(first);
        open(dir.path()).expect("free again once the first is gone");
    }

    #[test]
    fn a_snapshot_made_under_another_key_is_refused_and_the_log_rebuilds_state() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (d, p, f) = (open(dir.path()).unwrap(), pipeline(1), feed());
            ingest(&d, &p, 300);
            d.write_snapshot(&p, &f, &Default::default()).unwrap();
        }
        let (d, p, f) = (open(dir.path()).unwrap(), pipeline(2), feed());
        let report = d.recover(&p, &f, &mut crate::driver::Discard).unwrap();
        assert!(report.snapshot.is_none());
        assert_eq!(report.refused.len(), 1, "{:?}", report.refused);
        assert!(report.refused[0].contains("another entity-hash key"), "{:?}", report.refused);
        assert_eq!(report.replayed, 300, "the whole log");
        assert_eq!(p.store().entity_count(haechi_features::EntityKind::Customer), 7);
    }

    #[test]
    fn recovery_from_a_snapshot_replays_only_the_log_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let original = pipeline(1);
        {
            let (d, f) = (open(dir.path()).unwrap(), feed());
            ingest(&d, &original, 200);
            let r = d.write_snapshot(&original, &f, &Default::default()).unwrap();
            assert_eq!(r.covers_offset, 200);
            let mut scratch = original.scratch();
            // Forty more after the snapshot: the log tail.
            for i in 200..240 {
                let line = format!(r#"{{"event_id":"e{i}","ts":"2026-11-02T11:{:02}:00+09:00","step":"otp","result":"failure","customer_id":"c{}"}}"#, i - 200, i % 7);
                let event = original.parse(line.as_bytes()).unwrap();
                d.append(crate::enforce::now_ms(), &[line.as_bytes()]).unwrap();
                original.process(&event, &mut scratch).unwrap();
            }
        }
        let (d, p, f) = (open(dir.path()).unwrap(), pipeline(1), feed());
        let report = d.recover(&p, &f, &mut crate::driver::Discard).unwrap();
        assert_eq!(report.snapshot.as_ref().map(|s| s.1), Some(200));
        assert_eq!(report.replayed, 40);
        for c in 0..7 {
            let key = format!("c{c}");
            assert_eq!(
                p.store().entity_features(haechi_features::EntityKind::Customer, &key),
                original.store().entity_features(haechi_features::EntityKind::Customer, &key),
                "{key}"
            );
        }
    }
}
