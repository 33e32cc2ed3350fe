//! The ingest log: opaque byte records with dense `u64` offsets, kept as segment files in one directory.
//!
//! We evaluated okaywal and rejected it: its README calls it early development, not for production use,
//! with an unstable file format, and its checkpoint model recycles segments, while our log must stay
//! readable from any retained offset to warm replicas. So this module hand-writes a small segment log
//! over `std::fs`, with a crc32c checksum on every record.
//!
//! # On disk
//! `dir/log-{first_offset:020}.seg`, each starting with a 20-byte header
//! (`HCHILOG1`, format version `u32` LE, first offset `u64` LE), then frames
//! `len: u32 LE | crc32c(offset LE ++ payload): u32 LE | payload`. The offset is implicit by position
//! but covered by the checksum, so a record moved, reordered or spliced from elsewhere fails.
//!
//! # Sealed
//! Opened with a [`Sealer`] ([`IngestLog::open_sealed`]), every payload is the record sealed with
//! the offset (LE) as associated data, and segments carry format version 2. The checksum still
//! covers what is on disk, so a torn tail is found without the key; the seal is what a forger
//! cannot recompute, so a record moved to another offset, or altered with its checksum fixed, fails
//! to open and is reported ([`StorageError::Unseal`]), never skipped. A log is sealed or not as a
//! whole: a segment of the other kind is refused when the log is opened.
//!
//! # Durability
//! Every append reaches the kernel with `write_all` before it returns, so it survives `kill -9` in
//! every [`Fsync`] mode; the mode only decides what a power loss can cost. A segment is fdatasync'ed
//! when it is sealed, in every mode (once per `segment_bytes`), so sealed segments are whole on disk
//! and [`IngestLog::open`] only needs to look for a torn tail in the newest one.
//!
//! One `IngestLog` per directory at a time: the caller (which owns the data dir) ensures that.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::crypto::{Sealer, MAX_OVERHEAD};
use crate::error::{io_err, StorageError};
use crate::fsutil::{read_full, sync_dir};

const SEGMENT_MAGIC: &[u8; 8] = b"HCHILOG1";
const SEGMENT_VERSION_PLAIN: u32 = 1;
const SEGMENT_VERSION_SEALED: u32 = 2;
const SEGMENT_HEADER_LEN: u64 = 20;
const FRAME_HEADER_LEN: u64 = 8;
/// The largest record `append` accepts (before sealing).
pub const MAX_RECORD_BYTES: usize = 16 << 20;
/// A scratch buffer grown past this by a large batch is not kept for the next one.
const KEEP_SCRATCH_BYTES: usize = 1 << 20;

/// The largest frame payload a segment of this kind can hold.
fn max_payload(sealed: bool) -> usize {
    if sealed {
        MAX_RECORD_BYTES + MAX_OVERHEAD
    } else {
        MAX_RECORD_BYTES
    }
}

/// When appended records are fdatasync'ed: what a power loss (not a process crash) can cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// Before `append` returns: nothing acknowledged is lost.
    Always,
    /// From a background thread every `fsync_interval`: at most that much is lost.
    #[default]
    Interval,
    /// Left to the OS: whatever the page cache held.
    Never,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub fsync: Fsync,
    /// With [`Fsync::Interval`], the most a power loss can cost.
    #[serde(with = "humantime_serde")]
    pub fsync_interval: Duration,
    /// A segment is sealed and a new one started when the next batch would take it past this.
    /// A single batch larger than this gets a segment of its own.
    pub segment_bytes: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { fsync: Fsync::Interval, fsync_interval: Duration::from_millis(100), segment_bytes: 64 << 20 }
    }
}

impl LogConfig {
    pub fn validate(&self) -> Result<(), StorageError> {
        if self.segment_bytes < 4096 {
            return Err(StorageError::InvalidConfig {
                reason: format!("log segment_bytes is {}, must be at least 4096", self.segment_bytes),
            });
        }
        if self.fsync_interval.is_zero() || self.fsync_interval > Duration::from_secs(60) {
            return Err(StorageError::InvalidConfig {
                reason: format!("log fsync_interval is {:?}, must be more than 0 and at most 60s", self.fsync_interval),
            });
        }
        Ok(())
    }
}

/// What [`IngestLog::open`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    pub segments: usize,
    pub next_offset: u64,
    /// Bytes cut from the end of the newest segment: a partial or checksum-failing last write.
    pub torn_tail_bytes: u64,
}

struct Segment {
    first: u64,
    path: PathBuf,
    bytes: u64,
}

struct Writer {
    /// Oldest first; each one fdatasync'ed when it was sealed.
    sealed: VecDeque<Segment>,
    active: Segment,
    /// The active segment, positioned at its end. In an `Arc` so a sync can run outside the lock.
    file: Arc<File>,
    next_offset: u64,
    /// Bytes written to `file` since its last fdatasync.
    dirty: bool,
    /// A segment was created without fsyncing the directory (`Fsync::Never`); `sync()` catches up.
    dir_dirty: bool,
    /// Set when a write or fdatasync failed and the file's state is unknown.
    failed: Option<(PathBuf, String)>,
    /// The frames of the batch being appended, kept between appends.
    scratch: Vec<u8>,
}

impl Writer {
    fn first_offset(&self) -> u64 {
        self.sealed.front().map_or(self.active.first, |s| s.first)
    }

    fn write(&mut self, buf: &[u8]) -> Result<(), StorageError> {
        match (&*self.file).write_all(buf) {
            Ok(()) => {
                self.active.bytes += buf.len() as u64;
                self.dirty = true;
                Ok(())
            }
            Err(source) => {
                // Take back whatever part of the batch reached the file, or the next append would
                // land after a half frame and turn a failed write into mid-segment corruption.
                let len = self.active.bytes;
                let undo = self.file.set_len(len).and_then(|()| (&*self.file).seek(SeekFrom::Start(len)));
                if let Err(e) = undo {
                    self.failed = Some((self.active.path.clone(), format!("a failed write could not be undone: {e}")));
                }
                Err(StorageError::Io { path: self.active.path.clone(), op: "write", source })
            }
        }
    }
}

struct Shared {
    dir: PathBuf,
    config: LogConfig,
    sealer: Option<Sealer>,
    writer: Mutex<Writer>,
    /// Every record below this is known to be on stable storage.
    synced_through: AtomicU64,
    /// Completed fdatasyncs, for tests.
    syncs: AtomicU64,
    /// Taken by each [`Fsync::Always`] append for its fdatasync, one at a time: an appender that
    /// waited here usually finds its records covered by the sync before it (group commit).
    sync_turn: Mutex<()>,
    stop: Mutex<bool>,
    wake: Condvar,
}

impl Shared {
    fn writer(&self) -> Result<MutexGuard<'_, Writer>, StorageError> {
        let w = self.writer.lock().map_err(|_| StorageError::Unusable {
            path: self.dir.clone(),
            reason: "a thread panicked while appending".into(),
        })?;
        match &w.failed {
            Some((path, reason)) => Err(StorageError::Unusable { path: path.clone(), reason: reason.clone() }),
            None => Ok(w),
        }
    }

    /// For reads of state that a panic cannot leave half-updated.
    fn writer_for_reading(&self) -> MutexGuard<'_, Writer> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A failed fdatasync may have dropped the dirty pages, and a retry can then report success
    /// for data that is gone, so the log stops accepting appends instead of retrying.
    fn fdatasync(&self, w: &mut Writer, file: &File, path: &Path) -> Result<(), StorageError> {
        file.sync_data().map_err(|source| {
            w.failed = Some((path.to_path_buf(), format!("fdatasync failed: {source}")));
            StorageError::Io { path: path.to_path_buf(), op: "fdatasync", source }
        })?;
        self.syncs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Syncs the active segment, outside the lock so appends go on while the disk flushes.
    fn sync(&self, only_if_dirty: bool) -> Result<(), StorageError> {
        let (file, path, through, dir_dirty) = {
            let mut w = self.writer()?;
            if only_if_dirty && !w.dirty {
                return Ok(());
            }
            w.dirty = false;
            (Arc::clone(&w.file), w.active.path.clone(), w.next_offset, std::mem::take(&mut w.dir_dirty))
        };
        if let Err(source) = file.sync_data() {
            self.writer_for_reading().failed = Some((path.clone(), format!("fdatasync failed: {source}")));
            return Err(StorageError::Io { path, op: "fdatasync", source });
        }
        self.syncs.fetch_add(1, Ordering::Relaxed);
        if dir_dirty {
            sync_dir(&self.dir).inspect_err(|_| self.writer_for_reading().dir_dirty = true)?;
        }
        self.synced_through.fetch_max(through, Ordering::SeqCst);
        Ok(())
    }

    /// Make every record below `end` durable. The fdatasync runs outside the writer lock, so
    /// other appends go on while the disk flushes, and every record written before it started
    /// is covered: appenders that queued behind it return without one of their own.
    fn sync_through(&self, end: u64) -> Result<(), StorageError> {
        if self.synced_through.load(Ordering::SeqCst) >= end {
            return Ok(());
        }
        let _turn = self.sync_turn.lock().unwrap_or_else(PoisonError::into_inner);
        if self.synced_through.load(Ordering::SeqCst) >= end {
            return Ok(());
        }
        // Fails, without syncing, once an earlier fdatasync has failed: records it may not
        // have covered are never reported durable.
        self.sync(false)
    }

    fn roll(&self, w: &mut Writer) -> Result<(), StorageError> {
        let (file, path) = (Arc::clone(&w.file), w.active.path.clone());
        self.fdatasync(w, &file, &path)?;
        self.synced_through.fetch_max(w.next_offset, Ordering::SeqCst);
        let (segment, file) = create_segment(&self.dir, w.next_offset, self.config.fsync, self.sealer.is_some())?;
        w.dir_dirty |= self.config.fsync == Fsync::Never;
        let sealed = std::mem::replace(&mut w.active, segment);
        w.sealed.push_back(sealed);
        w.file = Arc::new(file);
        w.dirty = true;
        Ok(())
    }
}

/// The append-only ingest log. `Send + Sync`; share it in an `Arc`.
pub struct IngestLog {
    shared: Arc<Shared>,
    syncer: Option<JoinHandle<()>>,
}

impl IngestLog {
    /// Open or create the log in `dir` (created if missing). Scans the newest segment and truncates a
    /// torn tail (a partial or checksum-failing last record — what a kill -9 or power loss leaves),
    /// reporting it. A checksum failure in the middle of the newest segment that is followed by a valid
    /// record, or a damaged header, is returned as [`StorageError::Corrupt`]; sealed segments are checked
    /// record by record when read.
    pub fn open(dir: &Path, config: LogConfig) -> Result<(IngestLog, OpenReport), StorageError> {
        Self::open_sealed(dir, config, None)
    }

    /// [`IngestLog::open`], sealing every record with `sealer` when one is given (see the module
    /// docs). The first retained record and the newest one are opened here, so a key ring that
    /// lacks the log's keys is refused now, naming the file, rather than at the first read.
    ///
    /// # Errors
    /// As [`IngestLog::open`]; and [`StorageError::Unseal`] for a segment written unsealed, or a
    /// record that does not open; [`StorageError::NoKey`] for a sealed segment without a sealer.
    pub fn open_sealed(dir: &Path, config: LogConfig, sealer: Option<Sealer>) -> Result<(IngestLog, OpenReport), StorageError> {
        config.validate()?;
        fs::create_dir_all(dir).map_err(io_err(dir, "create directory"))?;
        let mut found = list_segments(dir)?;
        let sync = config.fsync != Fsync::Never;
        let is_sealed = sealer.is_some();

        let (active, file, next_offset, torn, newest_at) = match found.pop() {
            Some((first, path)) => recover_newest(path, first, sync, is_sealed)?,
            None => {
                let (segment, file) = create_segment(dir, 0, config.fsync, is_sealed)?;
                (segment, file, 0, 0, None)
            }
        };
        let mut sealed = VecDeque::with_capacity(found.len());
        for (first, path) in found {
            let mut file = File::open(&path).map_err(io_err(&path, "open"))?;
            check_header(&path, &mut file, first, is_sealed)?;
            let bytes = file.metadata().map_err(io_err(&path, "stat"))?.len();
            sealed.push_back(Segment { first, path, bytes });
        }
        if let Some(sealer) = &sealer {
            let oldest = sealed.front().unwrap_or(&active);
            if next_offset > oldest.first {
                open_record_at(&oldest.path, SEGMENT_HEADER_LEN, oldest.first, sealer)?;
            }
            if let Some(at) = newest_at {
                open_record_at(&active.path, at, next_offset - 1, sealer)?;
            }
        }

        let report = OpenReport { segments: sealed.len() + 1, next_offset, torn_tail_bytes: torn };
        let writer = Writer {
            sealed,
            active,
            file: Arc::new(file),
            next_offset,
            dirty: false,
            dir_dirty: !sync,
            failed: None,
            scratch: Vec::new(),
        };
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            config,
            sealer,
            writer: Mutex::new(writer),
            synced_through: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            sync_turn: Mutex::new(()),
            stop: Mutex::new(false),
            wake: Condvar::new(),
        });
        let syncer = if shared.config.fsync == Fsync::Interval {
            let shared = Arc::clone(&shared);
            let handle = std::thread::Builder::new()
                .name("haechi-log-fsync".into())
                .spawn(move || sync_loop(&shared))
                .map_err(io_err(dir, "spawn the fsync thread"))?;
            Some(handle)
        } else {
            None
        };
        Ok((IngestLog { shared, syncer }, report))
    }

    /// Append records in one write; returns the offset of the first. Offsets are dense, one per record,
    /// never reused. The records have reached the kernel when this returns (they survive kill -9);
    /// with [`Fsync::Always`] they have also been fdatasync'ed, by this call or by a concurrent
    /// one's that started after they were written (concurrent appends share fdatasyncs).
    pub fn append(&self, records: &[&[u8]]) -> Result<u64, StorageError> {
        let first = self.append_deferred(records)?;
        self.wait_durable(first + records.len() as u64)?;
        Ok(first)
    }

    /// [`IngestLog::append`] without the wait for the disk: the records have reached the kernel
    /// when this returns; pass `first + records.len()` to [`IngestLog::wait_durable`] before
    /// reporting them durable. For callers that append under a lock of their own and should not
    /// hold it through an fdatasync.
    pub fn append_deferred(&self, records: &[&[u8]]) -> Result<u64, StorageError> {
        let shared = &*self.shared;
        if let Some(big) = records.iter().find(|r| r.len() > MAX_RECORD_BYTES) {
            return Err(StorageError::RecordTooLarge {
                dir: shared.dir.clone(),
                size: big.len(),
                max: MAX_RECORD_BYTES,
            });
        }
        let per_record = FRAME_HEADER_LEN as usize + shared.sealer.as_ref().map_or(0, Sealer::overhead);
        let frames_len: usize = records.iter().map(|r| r.len() + per_record).sum();
        let mut w = shared.writer()?;
        let first = w.next_offset;
        if records.is_empty() {
            return Ok(first);
        }
        let has_records = w.active.bytes > SEGMENT_HEADER_LEN;
        if has_records && w.active.bytes + frames_len as u64 > shared.config.segment_bytes {
            shared.roll(&mut w)?;
        }

        // Sealed under the lock: the associated data is the offset, known only here.
        let mut buf = std::mem::take(&mut w.scratch);
        buf.clear();
        buf.reserve(frames_len);
        for (offset, record) in (first..).zip(records) {
            let at = buf.len();
            buf.extend_from_slice(&[0; FRAME_HEADER_LEN as usize]);
            match &shared.sealer {
                Some(sealer) => sealer.seal_into(&offset.to_le_bytes(), record, &mut buf),
                None => buf.extend_from_slice(record),
            }
            let payload = &buf[at + FRAME_HEADER_LEN as usize..];
            let (len, crc) = (payload.len() as u32, checksum(offset, payload));
            buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
            buf[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        }
        let written = w.write(&buf);
        if buf.capacity() <= KEEP_SCRATCH_BYTES {
            w.scratch = buf;
        }
        written?;
        w.next_offset += records.len() as u64;
        Ok(first)
    }

    /// With [`Fsync::Always`], return once every record below `end` has been fdatasync'ed (by this
    /// call, or by a concurrent one's that started after they were written); in the other modes,
    /// at once.
    pub fn wait_durable(&self, end: u64) -> Result<(), StorageError> {
        if self.shared.config.fsync == Fsync::Always {
            self.shared.sync_through(end)?;
        }
        Ok(())
    }

    pub fn append_one(&self, record: &[u8]) -> Result<u64, StorageError> {
        self.append(&[record])
    }

    /// The offset the next record will get.
    pub fn next_offset(&self) -> u64 {
        self.shared.writer_for_reading().next_offset
    }

    /// The first offset still retained.
    pub fn first_offset(&self) -> u64 {
        self.shared.writer_for_reading().first_offset()
    }

    /// fdatasync now (at shutdown, and in tests): every record appended before the call is durable after it.
    pub fn sync(&self) -> Result<(), StorageError> {
        self.shared.sync(false)
    }

    /// Read records from `offset` (inclusive) to the end as written when this is called.
    /// `offset == next_offset()` gives an empty reader; below `first_offset()` is
    /// [`StorageError::OffsetGone`], above `next_offset()` is [`StorageError::OffsetBeyondEnd`].
    /// Reading starts at the beginning of the segment holding `offset`, so reading from the middle of a
    /// segment costs a scan of its earlier records.
    pub fn read_from(&self, offset: u64) -> Result<LogReader, StorageError> {
        let w = self.shared.writer_for_reading();
        let dir = &self.shared.dir;
        let first_offset = w.first_offset();
        if offset < first_offset {
            return Err(StorageError::OffsetGone { dir: dir.clone(), offset, first_offset });
        }
        if offset > w.next_offset {
            return Err(StorageError::OffsetBeyondEnd { dir: dir.clone(), offset, next_offset: w.next_offset });
        }
        let segments: Vec<&Segment> = w.sealed.iter().chain([&w.active]).collect();
        let ends = segments.iter().skip(1).map(|s| s.first).chain([w.next_offset]);
        let mut cursors = VecDeque::new();
        for (segment, end) in segments.iter().zip(ends) {
            if end <= offset || segment.first == end {
                continue;
            }
            // Opened under the lock: a concurrent remove_before can unlink the file but cannot take it
            // away from an open handle, so the reader sees the log as it was at this call.
            let file = File::open(&segment.path).map_err(io_err(&segment.path, "open"))?;
            cursors.push_back(Cursor {
                path: segment.path.clone(),
                file: BufReader::new(file),
                next: segment.first,
                end,
                pos: 0,
            });
        }
        Ok(LogReader { cursors, from: offset, done: false, sealer: self.shared.sealer.clone() })
    }

    /// Delete whole sealed segments all of whose records are below `offset` (never the active segment).
    /// Returns how many segment files were removed.
    pub fn remove_before(&self, offset: u64) -> Result<usize, StorageError> {
        let shared = &*self.shared;
        let mut w = shared.writer()?;
        let mut removed = 0;
        while let Some(oldest) = w.sealed.front() {
            let end = w.sealed.get(1).map_or(w.active.first, |s| s.first);
            if end > offset {
                break;
            }
            fs::remove_file(&oldest.path).map_err(io_err(&oldest.path, "remove"))?;
            w.sealed.pop_front();
            removed += 1;
            // One directory sync per removal: unlinks that reached the disk out of order after a
            // power loss would leave a hole in the middle of the log.
            if shared.config.fsync != Fsync::Never {
                sync_dir(&shared.dir)?;
            }
        }
        Ok(removed)
    }

    /// Bytes and segment files on disk (for metrics).
    pub fn disk_usage(&self) -> (u64, usize) {
        let w = self.shared.writer_for_reading();
        let bytes = w.sealed.iter().map(|s| s.bytes).sum::<u64>() + w.active.bytes;
        (bytes, w.sealed.len() + 1)
    }

    #[cfg(test)]
    pub(crate) fn synced_through(&self) -> u64 {
        self.shared.synced_through.load(Ordering::SeqCst)
    }

    #[cfg(test)]
    pub(crate) fn syncs(&self) -> u64 {
        self.shared.syncs.load(Ordering::Relaxed)
    }
}

impl Drop for IngestLog {
    fn drop(&mut self) {
        if let Some(handle) = self.syncer.take() {
            *self.shared.stop.lock().unwrap_or_else(PoisonError::into_inner) = true;
            self.shared.wake.notify_all();
            let _ = handle.join();
        }
    }
}

fn sync_loop(shared: &Shared) {
    loop {
        let stopping = {
            let stop = shared.stop.lock().unwrap_or_else(PoisonError::into_inner);
            let (stop, _) = shared
                .wake
                .wait_timeout_while(stop, shared.config.fsync_interval, |stop| !*stop)
                .unwrap_or_else(PoisonError::into_inner);
            *stop
        };
        // Also on the way out, so a clean shutdown loses nothing.
        if let Err(e) = shared.sync(true) {
            tracing::error!(error = %e, "ingest log background fdatasync failed; appends will be refused");
            return;
        }
        if stopping {
            return;
        }
    }
}

/// Reads the log from a given offset; each segment file is read through its own handle.
pub struct LogReader {
    cursors: VecDeque<Cursor>,
    from: u64,
    done: bool,
    sealer: Option<Sealer>,
}

struct Cursor {
    path: PathBuf,
    file: BufReader<File>,
    /// Offset of the next record in this segment.
    next: u64,
    /// One past the last record this reader will take from this segment.
    end: u64,
    /// Byte position of the next frame; 0 until the header has been checked.
    pos: u64,
}

impl Iterator for LogReader {
    type Item = Result<(u64, Vec<u8>), StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let item = self.advance().transpose();
        // After an error there is nothing trustworthy to continue with.
        self.done = !matches!(item, Some(Ok(_)));
        item
    }
}

impl LogReader {
    fn advance(&mut self) -> Result<Option<(u64, Vec<u8>)>, StorageError> {
        loop {
            let Some(c) = self.cursors.front_mut() else { return Ok(None) };
            if c.next == c.end {
                self.cursors.pop_front();
                continue;
            }
            let sealed = self.sealer.is_some();
            if c.pos == 0 {
                check_header(&c.path, &mut c.file, c.next, sealed)?;
                c.pos = SEGMENT_HEADER_LEN;
            }
            let mut payload = Vec::new();
            let frame = read_frame(&mut c.file, c.next, &mut payload, max_payload(sealed)).map_err(io_err(&c.path, "read"))?;
            let reason = match frame {
                Frame::Record => {
                    let (offset, at) = (c.next, c.pos);
                    c.next += 1;
                    c.pos += FRAME_HEADER_LEN + payload.len() as u64;
                    if offset < self.from {
                        continue;
                    }
                    if let Some(sealer) = &self.sealer {
                        unseal(&c.path, at, offset, sealer, &mut payload)?;
                    }
                    return Ok(Some((offset, payload)));
                }
                Frame::End | Frame::Partial => {
                    format!("segment ends inside record {}; it should hold records up to {}", c.next, c.end)
                }
                Frame::TooLong(len) => {
                    format!("record {} claims {len} bytes, over the {}-byte limit", c.next, max_payload(sealed))
                }
                Frame::BadChecksum => format!("record {} fails its checksum", c.next),
            };
            return Err(StorageError::Corrupt { path: c.path.clone(), offset: c.pos, reason });
        }
    }
}

fn checksum(offset: u64, payload: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&offset.to_le_bytes()), payload)
}

/// Open record `offset`'s sealed payload (its frame at byte `at` of `path`) in place.
fn unseal(path: &Path, at: u64, offset: u64, sealer: &Sealer, payload: &mut Vec<u8>) -> Result<(), StorageError> {
    let key = Sealer::key_id_of(payload).map(str::to_owned);
    sealer.open_in_place(&offset.to_le_bytes(), payload).map_err(|source| StorageError::Unseal {
        path: path.to_path_buf(),
        what: match key {
            Ok(key) => format!("record {offset} (byte {at}, sealed with key {key:?})"),
            Err(_) => format!("record {offset} (byte {at})"),
        },
        source,
    })
}

/// Read and open the record `offset` whose frame starts at byte `at` of `path`.
fn open_record_at(path: &Path, at: u64, offset: u64, sealer: &Sealer) -> Result<(), StorageError> {
    let mut file = File::open(path).map_err(io_err(path, "open"))?;
    file.seek(SeekFrom::Start(at)).map_err(io_err(path, "seek"))?;
    let mut payload = Vec::new();
    match read_frame(&mut file, offset, &mut payload, max_payload(true)).map_err(io_err(path, "read"))? {
        Frame::Record => unseal(path, at, offset, sealer, &mut payload),
        _ => Err(StorageError::Corrupt { path: path.to_path_buf(), offset: at, reason: format!("record {offset} does not read back") }),
    }
}

enum Frame {
    /// A whole record whose checksum matches; the payload is in the buffer.
    Record,
    /// Clean end of file at a frame boundary.
    End,
    /// The file ends inside the frame.
    Partial,
    TooLong(u32),
    BadChecksum,
}

/// Reads the frame of record `offset`. Consumes the whole frame unless it is `Partial` or `TooLong`.
fn read_frame(r: &mut impl Read, offset: u64, payload: &mut Vec<u8>, max: usize) -> std::io::Result<Frame> {
    let mut head = [0u8; FRAME_HEADER_LEN as usize];
    match read_full(r, &mut head)? {
        0 => return Ok(Frame::End),
        n if n < head.len() => return Ok(Frame::Partial),
        _ => {}
    }
    let len = u32::from_le_bytes(head[..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(head[4..].try_into().expect("4 bytes"));
    if len as usize > max {
        return Ok(Frame::TooLong(len));
    }
    payload.resize(len as usize, 0);
    if read_full(r, payload)? < payload.len() {
        return Ok(Frame::Partial);
    }
    Ok(if checksum(offset, payload) == crc { Frame::Record } else { Frame::BadChecksum })
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("log-{first:020}.seg"))
}

fn segment_header(first: u64, sealed: bool) -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..8].copy_from_slice(SEGMENT_MAGIC);
    let version = if sealed { SEGMENT_VERSION_SEALED } else { SEGMENT_VERSION_PLAIN };
    h[8..12].copy_from_slice(&version.to_le_bytes());
    h[12..].copy_from_slice(&first.to_le_bytes());
    h
}

fn check_header(path: &Path, r: &mut impl Read, first: u64, sealed: bool) -> Result<(), StorageError> {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    let n = read_full(r, &mut h).map_err(io_err(path, "read"))?;
    let corrupt = |reason: String| Err(StorageError::Corrupt { path: path.to_path_buf(), offset: 0, reason });
    if n < h.len() {
        return corrupt(format!("header is {n} bytes, expected {SEGMENT_HEADER_LEN}"));
    }
    if &h[..8] != SEGMENT_MAGIC {
        return corrupt("bad magic: not a Haechi log segment".into());
    }
    let version = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
    match (version, sealed) {
        (SEGMENT_VERSION_PLAIN, false) | (SEGMENT_VERSION_SEALED, true) => {}
        (SEGMENT_VERSION_PLAIN, true) => {
            return Err(StorageError::Unseal {
                path: path.to_path_buf(),
                what: "segment written unencrypted (format 1, an older build or a log opened without a key), in a log opened with one".into(),
                source: crate::crypto::SealError::NotSealed,
            });
        }
        (SEGMENT_VERSION_SEALED, false) => return Err(StorageError::NoKey { path: path.to_path_buf() }),
        _ => return corrupt(format!("format version {version}, this build reads {SEGMENT_VERSION_PLAIN} and {SEGMENT_VERSION_SEALED} (sealed)")),
    }
    let in_header = u64::from_le_bytes(h[12..].try_into().expect("8 bytes"));
    if in_header != first {
        return corrupt(format!("header says first offset {in_header}, the file name says {first}"));
    }
    Ok(())
}

/// Segment files in `dir`, oldest first. Other files are left alone.
fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StorageError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir, "list"))? {
        let entry = entry.map_err(io_err(dir, "list"))?;
        let name = entry.file_name();
        let first = name
            .to_str()
            .and_then(|n| n.strip_prefix("log-")?.strip_suffix(".seg"))
            .filter(|digits| digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|digits| digits.parse::<u64>().ok());
        if let Some(first) = first {
            found.push((first, entry.path()));
        }
    }
    found.sort_unstable_by_key(|(first, _)| *first);
    Ok(found)
}

fn create_segment(dir: &Path, first: u64, fsync: Fsync, sealed: bool) -> Result<(Segment, File), StorageError> {
    let path = segment_path(dir, first);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io_err(&path, "create"))?;
    file.write_all(&segment_header(first, sealed)).map_err(io_err(&path, "write"))?;
    // The header's data rides on the first fdatasync of the segment; the directory entry needs its own.
    if fsync != Fsync::Never {
        sync_dir(dir)?;
    }
    Ok((Segment { first, path, bytes: SEGMENT_HEADER_LEN }, file))
}

/// Opens the newest segment for appending, cutting a torn tail. Returns the segment, its file
/// positioned at the end, the next offset, how many bytes were cut, and where its last record starts.
fn recover_newest(path: PathBuf, first: u64, sync: bool, sealed: bool) -> Result<(Segment, File, u64, u64, Option<u64>), StorageError> {
    let mut file = OpenOptions::new().read(true).write(true).open(&path).map_err(io_err(&path, "open"))?;
    let len = file.metadata().map_err(io_err(&path, "stat"))?.len();

    let mut end = SEGMENT_HEADER_LEN;
    let mut next = first;
    let mut last_at = None;
    let torn;
    if len < SEGMENT_HEADER_LEN {
        // A crash between creating the file and its header reaching the disk.
        torn = len;
        file.set_len(0).map_err(io_err(&path, "truncate"))?;
        file.write_all(&segment_header(first, sealed)).map_err(io_err(&path, "write"))?;
    } else {
        check_header(&path, &mut file, first, sealed)?;
        let mut r = BufReader::new(&file);
        let mut payload = Vec::new();
        let max = max_payload(sealed);
        loop {
            match read_frame(&mut r, next, &mut payload, max).map_err(io_err(&path, "read"))? {
                Frame::Record => {
                    last_at = Some(end);
                    end += FRAME_HEADER_LEN + payload.len() as u64;
                    next += 1;
                }
                // A damaged length field looks exactly like a torn write, so it is cut like one.
                Frame::End | Frame::Partial | Frame::TooLong(_) => break,
                Frame::BadChecksum => {
                    // A torn write leaves garbage only at the end: an intact record after the bad one
                    // means damage in the middle, and cutting there would throw away good records.
                    if let Frame::Record = read_frame(&mut r, next + 1, &mut payload, max).map_err(io_err(&path, "read"))? {
                        return Err(StorageError::Corrupt {
                            path,
                            offset: end,
                            reason: format!("record {next} fails its checksum but record {} after it is intact", next + 1),
                        });
                    }
                    break;
                }
            }
        }
        torn = len - end;
        if torn > 0 {
            file.set_len(end).map_err(io_err(&path, "truncate"))?;
        }
    }

    if torn > 0 {
        tracing::warn!(path = %path.display(), bytes = torn, next_offset = next, "cut a torn tail from the ingest log");
    }
    if sync && (torn > 0 || len < SEGMENT_HEADER_LEN) {
        file.sync_data().map_err(io_err(&path, "fdatasync"))?;
    }
    file.seek(SeekFrom::Start(end)).map_err(io_err(&path, "seek"))?;
    Ok((Segment { first, path, bytes: end }, file, next, torn, last_at))
}

#[cfg(test)]
mod tests;
