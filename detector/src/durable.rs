//! State that survives: the data dir.
//!
//! ```text
//! DATA_DIR/
//!   LOCK          one process per data dir
//!   log/          every accepted event, appended before the caller's answer
//!   snapshots/    everything the pipeline remembers, and the log offset it covers
//!   alerts/       every alert, in feed order (its offset + 1 is the alert's `seq`)
//!   blocks.json   the block list (unless blocks.state_file says otherwise)
//!   audit.jsonl   analyst and admin actions (unless server.audit_log says otherwise)
//! ```
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
use haechi_storage::{Fsync, IngestLog, LogConfig, SnapshotStore};
use serde::{Deserialize, Serialize};

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
        }
    }
}

impl StorageConfig {
    /// # Errors
    /// A message naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        self.log_config().validate().map_err(|e| format!("storage: {e}"))?;
        if self.keep_snapshots < 2 {
            return Err("storage.keep_snapshots must be at least 2, so that a corrupt newest snapshot has one to fall back on".into());
        }
        if self.snapshot_interval < Duration::from_secs(1) || self.snapshot_every_events == 0 {
            return Err("storage.snapshot_interval must be at least 1s and storage.snapshot_every_events positive".into());
        }
        Ok(())
    }

    fn log_config(&self) -> LogConfig {
        LogConfig { fsync: self.fsync, fsync_interval: self.fsync_interval, segment_bytes: self.segment_bytes }
    }
}

/// The snapshot layout this build writes and reads. Bump it whenever a type
/// inside [`Snapshot`] changes shape: an older file is then refused with a
/// message (and the log replayed) instead of being misread.
pub const SNAPSHOT_FORMAT: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Snapshot {
    pipeline: PipelineState,
    folder: FolderState,
    /// The alert log's next offset when the copy was taken: alerts after it
    /// were raised by events the snapshot does not cover.
    alert_log_next: u64,
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
    config: StorageConfig,
    torn_tail_bytes: u64,
}

impl DataDir {
    /// Open (or create) a data dir and lock it.
    ///
    /// # Errors
    /// When the directory cannot be created, another process holds it, or
    /// its log is corrupt beyond a torn last record.
    pub fn open(dir: &Path, config: StorageConfig) -> Result<DataDir, DetectorError> {
        config.validate().map_err(|message| DetectorError::Config { path: "storage".into(), message })?;
        std::fs::create_dir_all(dir).map_err(|e| input(dir, format!("cannot create the data dir: {e}")))?;
        let lock_path = dir.join("LOCK");
        let lock = File::options().create(true).truncate(false).write(true).open(&lock_path).map_err(|e| input(&lock_path, e.to_string()))?;
        lock.try_lock().map_err(|_| input(dir, "another haechi process is using this data dir (its LOCK file is held)".into()))?;
        let (log, report) = IngestLog::open(&dir.join("log"), config.log_config())?;
        if report.torn_tail_bytes > 0 {
            tracing::warn!(bytes = report.torn_tail_bytes, "the ingest log ended in a torn record (a crash mid-append): dropped; that event was never acknowledged");
        }
        let alert_config = LogConfig { segment_bytes: config.segment_bytes.min(16 << 20), ..config.log_config() };
        let (alerts, _) = IngestLog::open(&dir.join("alerts"), alert_config)?;
        let snapshots = SnapshotStore::open(&dir.join("snapshots"), config.keep_snapshots)?;
        Ok(DataDir {
            dir: dir.to_path_buf(),
            _lock: lock,
            log,
            alerts: Arc::new(alerts),
            snapshots,
            gate: RwLock::new(()),
            accepted_since_snapshot: AtomicU64::new(0),
            config,
            torn_tail_bytes: report.torn_tail_bytes,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The alert log, for the alert feed.
    pub fn alert_log(&self) -> &Arc<IngestLog> {
        &self.alerts
    }

    /// Does every append wait for the disk (`fsync = "always"`)? Then
    /// callers append off the async runtime's threads.
    pub fn appends_wait_for_disk(&self) -> bool {
        self.config.fsync == Fsync::Always
    }

    /// The ingest log.
    pub fn log(&self) -> &IngestLog {
        &self.log
    }

    /// Hold while appending events and deciding them: a snapshot waits until
    /// every event appended so far is decided.
    pub fn ingest_gate(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Append accepted events (raw, as validated) before they are decided.
    ///
    /// # Errors
    /// When the log cannot be written: the events must then be refused.
    pub fn append(&self, records: &[&[u8]]) -> Result<u64, DetectorError> {
        let first = self.log.append(records)?;
        self.accepted_since_snapshot.fetch_add(records.len() as u64, Ordering::Relaxed);
        Ok(first)
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
    pub fn write_snapshot(&self, pipeline: &Pipeline, feed: &AlertFeed) -> Result<SnapshotReport, DetectorError> {
        let started = Instant::now();
        let (snapshot, covers_offset) = {
            let _quiet = self.gate.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            self.accepted_since_snapshot.store(0, Ordering::Relaxed);
            let snapshot = Snapshot { pipeline: pipeline.export_state(), folder: feed.export_folder(), alert_log_next: self.alerts.next_offset() };
            (snapshot, self.log.next_offset())
        };
        let paused = started.elapsed();
        let entities = snapshot.pipeline.store.entity_count();
        let payload = postcard::to_stdvec(&snapshot).map_err(|e| snapshot_error(format!("encoding: {e}")))?;
        drop(snapshot);
        let (path, bytes) = self.snapshots.write(SNAPSHOT_FORMAT, covers_offset, &payload)?;
        self.log.sync()?;
        self.alerts.sync()?;
        let mut segments_pruned = 0;
        if self.config.prune_log {
            // Keep what the oldest kept snapshot needs: if the newest turns
            // out corrupt, the one before it replays from its own offset.
            let oldest = self.snapshots.list()?.last().and_then(|p| covered_offset(p)).unwrap_or(0);
            segments_pruned = self.log.remove_before(oldest)?;
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
    pub fn recover(&self, pipeline: &Pipeline, feed: &AlertFeed) -> Result<RecoveryReport, DetectorError> {
        let started = Instant::now();
        let mut report = RecoveryReport { torn_tail_bytes: self.torn_tail_bytes, ..RecoveryReport::default() };
        let (mut loaded, refused) = self.snapshots.load_newest(SNAPSHOT_FORMAT)?;
        report.refused.extend(refused.iter().map(ToString::to_string));
        let mut from = 0;
        // A file that passes its checksum can still not fit this store (another
        // key, other windows): refused too, then the next older one.
        let mut skipped: Vec<PathBuf> = Vec::new();
        while let Some(snap) = loaded.take() {
            match decode(&snap.payload).and_then(|s| {
                pipeline.restore_state(s.pipeline)?;
                feed.restore_folder(&s.folder)?;
                feed.expect_replayed_from(s.alert_log_next)?;
                Ok(())
            }) {
                Ok(()) => {
                    from = snap.covers_offset;
                    report.snapshot = Some((snap.path, snap.covers_offset));
                }
                Err(e) => {
                    report.refused.push(format!("{}: {e}", snap.path.display()));
                    skipped.push(snap.path);
                    loaded = self.older_than(&skipped)?;
                }
            }
        }
        for r in &report.refused {
            tracing::error!("snapshot refused: {r}");
        }
        if report.snapshot.is_none() {
            if self.log.first_offset() > 0 {
                return Err(snapshot_error(format!(
                    "no usable snapshot in {}, and the ingest log starts at offset {} (older segments were pruned): starting would silently lose the state before it. \
                     Restore a snapshot from backup, or move the data dir aside to start empty",
                    self.dir.join("snapshots").display(),
                    self.log.first_offset()
                )));
            }
            // Whatever the folder and feed picked up from a refused file, start clean.
            feed.restore_folder(&FolderState::default())?;
            feed.expect_replayed_from(0)?;
            if self.log.next_offset() > 0 {
                tracing::warn!("no usable snapshot: rebuilding state from the whole ingest log");
            }
        }
        pipeline.set_recovering(true);
        let replay = self.replay_from(pipeline, feed, from, &mut report);
        pipeline.set_recovering(false);
        feed.done_replaying();
        replay?;
        report.elapsed = started.elapsed();
        Ok(report)
    }

    /// The newest valid snapshot that is not one of `skipped` (refused on
    /// the way by its checks: already reported by the first load).
    fn older_than(&self, skipped: &[PathBuf]) -> Result<Option<haechi_storage::LoadedSnapshot>, DetectorError> {
        Ok(self.snapshots.load_newest_excluding(SNAPSHOT_FORMAT, skipped)?.0)
    }

    fn replay_from(&self, pipeline: &Pipeline, feed: &AlertFeed, from: u64, report: &mut RecoveryReport) -> Result<(), DetectorError> {
        let mut scratch = pipeline.scratch();
        for record in self.log.read_from(from)? {
            let (_, bytes) = record?;
            let Ok(event) = pipeline.parse(&bytes) else {
                // Accepted once, refused now: a stricter configuration. Counted, not fatal.
                report.unreadable += 1;
                continue;
            };
            report.replayed += 1;
            if pipeline.process(&event, &mut scratch).is_ok() {
                feed.fold_findings(pipeline, &event, &scratch.findings);
            }
        }
        Ok(())
    }
}

fn decode(payload: &[u8]) -> Result<Snapshot, DetectorError> {
    postcard::from_bytes(payload).map_err(|e| snapshot_error(format!("does not decode as this build's snapshot: {e}")))
}

/// The log offset a snapshot file's name says it covers.
fn covered_offset(path: &Path) -> Option<u64> {
    path.file_name()?.to_str()?.strip_prefix("snapshot-")?.split('-').next()?.parse().ok()
}

fn snapshot_error(message: String) -> DetectorError {
    DetectorError::Snapshot(message)
}

fn input(path: &Path, message: String) -> DetectorError {
    DetectorError::Input { path: path.display().to_string(), message }
}
