//! One chain of records (one retention class) on disk: live segments, archives, signed checkpoints.
//!
//! ```text
//! RECORDS_DIR/{class}/seg-{first_seq:020}.hrs                      live segments
//! RECORDS_DIR/{class}/seg-{first_seq:020}.hrs.tmp                  a segment's header, until renamed into place
//! RECORDS_DIR/{class}/archive/seg-{first:020}-{last:020}.hra       archived (zstd, then sealed)
//! CHECKPOINT_DIR/{class}.jsonl                                     signed chain heads and bases
//! ```
//!
//! **A live segment** is a plaintext header (magic, version, class, the key id its records are
//! sealed with, the first sequence number, the hash of the record before it), then frames
//! `len: u32 LE | sealed entry`. An entry is `seq: u64 LE | previous record's hash | record JSON`,
//! sealed with the data key (purpose `records`) and bound to the class. A record's hash is
//! SHA-256 over `seq | previous hash | JSON`: each record carries its predecessor's hash, so an
//! edit, a deletion or a reordering breaks the chain where it happened, and the seal stops anyone
//! without the key from reading or rewriting an entry.
//!
//! **Checkpoints** sign the chain head (`seq`, hash) with HMAC-SHA-256 under the data key, in a
//! file kept apart from the segments. Cutting records off the end of the chain leaves a
//! checkpoint pointing past its end: detected. When retention destroys the oldest segments, a
//! signed *base* says where the chain now begins, so the cut is told apart from a deletion.
//!
//! **An archive** holds one former live segment: its entries, zstd-compressed, then sealed whole
//! (sealed bytes do not compress), with a header giving the range and the hashes at both ends.
//! Archives stay in the chain: verification and queries read them like live segments.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use haechi_storage::{KeyRing, SealError, Sealer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{io_err, RecordsError};
use crate::record::{Record, RecordClass};

pub(crate) type Hash = [u8; 32];

const SEGMENT_MAGIC: &[u8; 8] = b"HCHIREC1";
const ARCHIVE_MAGIC: &[u8; 8] = b"HCHIARC1";
const VERSION: u32 = 1;
/// magic | version u32 | class u8 | key id length u8 | key id (32, zero padded) | first seq u64 | previous hash
const SEGMENT_HEADER_LEN: usize = 8 + 4 + 1 + 1 + 32 + 8 + 32;
/// magic | version u32 | class u8 | first seq u64 | last seq u64 | last recorded ms i64 | previous hash | last hash
const ARCHIVE_HEADER_LEN: usize = 8 + 4 + 1 + 8 + 8 + 8 + 32 + 32;
const ENTRY_HEADER_LEN: usize = 8 + 32;
/// No record comes near this; a larger length field means damage.
const MAX_FRAME: usize = 4 << 20;
pub(crate) const SEAL_PURPOSE: &str = "records";
const CHECKPOINT_PURPOSE: &str = "records-checkpoint";

fn class_byte(class: RecordClass) -> u8 {
    match class {
        RecordClass::Transaction => 1,
        RecordClass::Processing => 2,
        RecordClass::Read => 3,
    }
}

fn entry_aad(class: RecordClass) -> Vec<u8> {
    format!("haechi-records/{}", class.as_str()).into_bytes()
}

/// The chain link: what the next record must carry as its predecessor's hash.
pub(crate) fn link(seq: u64, prev: &Hash, json: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(seq.to_le_bytes());
    h.update(prev);
    h.update(json);
    h.finalize().into()
}

pub(crate) fn segment_name(first: u64) -> String {
    format!("seg-{first:020}.hrs")
}

fn archive_name(first: u64, last: u64) -> String {
    format!("seg-{first:020}-{last:020}.hra")
}

/// A segment or archive file of a class, by the sequence numbers its name gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainFile {
    pub path: PathBuf,
    pub first: u64,
    /// Archives name their last record; live segments end where the next file begins.
    pub archived_last: Option<u64>,
}

/// Every segment and archive of the class in `dir`, by first sequence number.
pub(crate) fn list_files(dir: &Path) -> Result<Vec<ChainFile>, RecordsError> {
    let mut files = Vec::new();
    for (folder, archived) in [(dir.to_path_buf(), false), (dir.join("archive"), true)] {
        let entries = match fs::read_dir(&folder) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&folder, "list")(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err(&folder, "list"))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let parsed = if archived {
                name.strip_prefix("seg-").and_then(|n| n.strip_suffix(".hra")).and_then(|n| n.split_once('-')).and_then(|(a, b)| Some((a.parse().ok()?, Some(b.parse().ok()?))))
            } else {
                name.strip_prefix("seg-").and_then(|n| n.strip_suffix(".hrs")).and_then(|n| Some((n.parse().ok()?, None)))
            };
            if let Some((first, archived_last)) = parsed {
                files.push(ChainFile { path: entry.path(), first, archived_last });
            }
        }
    }
    files.sort_by_key(|f| (f.first, f.archived_last.is_none()));
    // A crash between writing an archive and removing its live segment leaves both: the
    // archive is whole (it was synced and renamed first), so the live copy is passed over.
    let archived: Vec<u64> = files.iter().filter(|f| f.archived_last.is_some()).map(|f| f.first).collect();
    files.retain(|f| f.archived_last.is_some() || !archived.contains(&f.first));
    Ok(files)
}

/// One decoded entry of a segment or archive.
#[derive(Debug)]
pub(crate) struct Entry {
    pub seq: u64,
    pub prev: Hash,
    pub json: Vec<u8>,
}

impl Entry {
    pub fn hash(&self) -> Hash {
        link(self.seq, &self.prev, &self.json)
    }

    pub fn record(&self) -> Result<Record, serde_json::Error> {
        serde_json::from_slice(&self.json)
    }

    fn parse(plain: &[u8]) -> Option<Entry> {
        if plain.len() < ENTRY_HEADER_LEN {
            return None;
        }
        let seq = u64::from_le_bytes(plain[..8].try_into().ok()?);
        let prev: Hash = plain[8..40].try_into().ok()?;
        Some(Entry { seq, prev, json: plain[ENTRY_HEADER_LEN..].to_vec() })
    }
}

/// What a live segment's header says.
#[derive(Debug, Clone)]
pub(crate) struct SegmentHeader {
    pub key_id: String,
    pub first: u64,
    pub prev: Hash,
}

fn segment_header(class: RecordClass, key_id: &str, first: u64, prev: &Hash) -> Vec<u8> {
    let mut h = Vec::with_capacity(SEGMENT_HEADER_LEN);
    h.extend_from_slice(SEGMENT_MAGIC);
    h.extend_from_slice(&VERSION.to_le_bytes());
    h.push(class_byte(class));
    h.push(key_id.len() as u8);
    let mut id = [0u8; 32];
    id[..key_id.len()].copy_from_slice(key_id.as_bytes());
    h.extend_from_slice(&id);
    h.extend_from_slice(&first.to_le_bytes());
    h.extend_from_slice(prev);
    h
}

fn parse_segment_header(class: RecordClass, bytes: &[u8]) -> Result<SegmentHeader, String> {
    if bytes.len() < SEGMENT_HEADER_LEN {
        return Err("header cut short".into());
    }
    if &bytes[..8] != SEGMENT_MAGIC {
        return Err("not a records segment (bad magic)".into());
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(format!("format version {version}, this build reads {VERSION}"));
    }
    if bytes[12] != class_byte(class) {
        return Err(format!("header says another class than {}", class.as_str()));
    }
    let len = bytes[13] as usize;
    let key_id = std::str::from_utf8(bytes.get(14..14 + len.min(32)).unwrap_or_default()).map_err(|_| "key id is not text".to_string())?.to_owned();
    let first = u64::from_le_bytes(bytes[46..54].try_into().expect("8 bytes"));
    let prev: Hash = bytes[54..86].try_into().expect("32 bytes");
    Ok(SegmentHeader { key_id, first, prev })
}

/// What is wrong with one frame of a live segment.
#[derive(Debug)]
pub(crate) enum FrameProblem {
    /// The file ends inside a frame (a crash mid-write, or a truncation).
    Torn { at: u64 },
    /// A frame that does not open: the bytes were altered (or the key is missing).
    Sealed { at: u64, error: SealError },
    /// A frame that opens but whose entry is malformed.
    Malformed { at: u64 },
}

/// Read a live segment: its header and the entries in order, stopping at the first problem.
pub(crate) fn read_segment(path: &Path, class: RecordClass, sealer: &Sealer, limit: Option<u64>) -> Result<(SegmentHeader, Vec<Entry>, Option<FrameProblem>), RecordsError> {
    let mut bytes = fs::read(path).map_err(io_err(path, "read"))?;
    if let Some(limit) = limit {
        bytes.truncate(limit as usize);
    }
    let header = parse_segment_header(class, &bytes).map_err(|reason| RecordsError::Damaged { path: path.to_path_buf(), reason })?;
    let aad = entry_aad(class);
    let mut entries = Vec::new();
    let mut at = SEGMENT_HEADER_LEN;
    while at < bytes.len() {
        let Some(len) = bytes.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as usize) else {
            return Ok((header, entries, Some(FrameProblem::Torn { at: at as u64 })));
        };
        if len > MAX_FRAME {
            return Ok((header, entries, Some(FrameProblem::Malformed { at: at as u64 })));
        }
        let Some(sealed) = bytes.get(at + 4..at + 4 + len) else {
            return Ok((header, entries, Some(FrameProblem::Torn { at: at as u64 })));
        };
        match sealer.open(&aad, sealed) {
            Ok(plain) => match Entry::parse(&plain) {
                Some(e) => entries.push(e),
                None => return Ok((header, entries, Some(FrameProblem::Malformed { at: at as u64 }))),
            },
            Err(error) => return Ok((header, entries, Some(FrameProblem::Sealed { at: at as u64, error }))),
        }
        at += 4 + len;
    }
    Ok((header, entries, None))
}

/// What an archive's header says.
#[derive(Debug, Clone)]
pub(crate) struct ArchiveHeader {
    pub first: u64,
    pub last: u64,
    pub last_recorded_ms: i64,
    pub prev: Hash,
    pub last_hash: Hash,
}

fn archive_header(class: RecordClass, h: &ArchiveHeader) -> Vec<u8> {
    let mut b = Vec::with_capacity(ARCHIVE_HEADER_LEN);
    b.extend_from_slice(ARCHIVE_MAGIC);
    b.extend_from_slice(&VERSION.to_le_bytes());
    b.push(class_byte(class));
    b.extend_from_slice(&h.first.to_le_bytes());
    b.extend_from_slice(&h.last.to_le_bytes());
    b.extend_from_slice(&h.last_recorded_ms.to_le_bytes());
    b.extend_from_slice(&h.prev);
    b.extend_from_slice(&h.last_hash);
    b
}

/// Read an archive whole: header and entries. The header is bound into the seal, so an edit to
/// it fails like an edit to the entries.
pub(crate) fn read_archive(path: &Path, class: RecordClass, sealer: &Sealer) -> Result<(ArchiveHeader, Vec<Entry>), RecordsError> {
    let damaged = |reason: String| RecordsError::Damaged { path: path.to_path_buf(), reason };
    let bytes = fs::read(path).map_err(io_err(path, "read"))?;
    if bytes.len() < ARCHIVE_HEADER_LEN || &bytes[..8] != ARCHIVE_MAGIC {
        return Err(damaged("not a records archive (bad magic or cut short)".into()));
    }
    if u32::from_le_bytes(bytes[8..12].try_into().expect("4")) != VERSION || bytes[12] != class_byte(class) {
        return Err(damaged(format!("another format version or class than {}", class.as_str())));
    }
    let u = |r: std::ops::Range<usize>| u64::from_le_bytes(bytes[r].try_into().expect("8"));
    let header = ArchiveHeader {
        first: u(13..21),
        last: u(21..29),
        last_recorded_ms: u(29..37) as i64,
        prev: bytes[37..69].try_into().expect("32"),
        last_hash: bytes[69..101].try_into().expect("32"),
    };
    let plain = sealer.open(&bytes[..ARCHIVE_HEADER_LEN], &bytes[ARCHIVE_HEADER_LEN..]).map_err(|e| damaged(format!("the archive does not open: {e}")))?;
    let raw = zstd::decode_all(&plain[..]).map_err(|e| damaged(format!("the archive does not decompress: {e}")))?;
    let mut entries = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        let len = raw.get(at..at + 4).map(|b| u32::from_le_bytes(b.try_into().expect("4")) as usize).ok_or_else(|| damaged("entry length cut short".into()))?;
        let body = raw.get(at + 4..at + 4 + len).ok_or_else(|| damaged("entry cut short".into()))?;
        entries.push(Entry::parse(body).ok_or_else(|| damaged("malformed entry".into()))?);
        at += 4 + len;
    }
    Ok((header, entries))
}

/// One line of the checkpoint file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    /// `head`: the chain's last record then; `base`: where the chain begins after a destruction.
    #[serde(rename = "type")]
    pub kind: String,
    pub class: String,
    /// `head`: the last record's seq; `base`: the first kept record's seq.
    pub seq: u64,
    /// `head`: the last record's hash; `base`: the hash the first kept record must carry.
    pub hash: String,
    pub at_ms: i64,
    /// The previous line's signature: a line removed from the middle breaks the chain of lines.
    #[serde(default)]
    pub prev: String,
    pub key: String,
    pub mac: String,
}

impl Checkpoint {
    fn signed_text(&self) -> String {
        format!("{}|{}|{}|{}|{}|{}", self.kind, self.class, self.seq, self.hash, self.at_ms, self.prev)
    }

    pub fn new(ring: &KeyRing, kind: &str, class: RecordClass, seq: u64, hash: &Hash, at_ms: i64, prev: &str) -> Checkpoint {
        let mut c = Checkpoint { kind: kind.into(), class: class.as_str().into(), seq, hash: hex::encode(hash), at_ms, prev: prev.to_owned(), key: String::new(), mac: String::new() };
        let (key, mac) = ring.sign(CHECKPOINT_PURPOSE, c.signed_text().as_bytes());
        c.key = key;
        c.mac = hex::encode(mac);
        c
    }

    /// Is the signature good? `Err`: the key is not in the ring.
    pub fn verify(&self, ring: &KeyRing) -> Result<bool, SealError> {
        let Ok(mac) = hex::decode(&self.mac) else { return Ok(false) };
        ring.verify(&self.key, CHECKPOINT_PURPOSE, self.signed_text().as_bytes(), &mac)
    }

    pub fn hash_bytes(&self) -> Option<Hash> {
        hex::decode(&self.hash).ok()?.try_into().ok()
    }
}

/// A checkpoint file's line number and what it holds (the raw text when it is not a checkpoint).
pub(crate) type CheckpointLine = (usize, Result<Checkpoint, String>);

/// Every line of a checkpoint file, with its line number; unparseable lines as `Err(line)`.
pub(crate) fn read_checkpoints(path: &Path) -> Result<Option<Vec<CheckpointLine>>, RecordsError> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, "open")(e)),
    };
    let mut out = Vec::new();
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io_err(path, "read"))?;
        if line.trim().is_empty() {
            continue;
        }
        out.push((n + 1, serde_json::from_str(&line).map_err(|_| line)));
    }
    Ok(Some(out))
}

/// A file a read found damaged: where, and what to run.
fn damaged(f: &ChainFile, problem: &FrameProblem) -> RecordsError {
    RecordsError::Damaged { path: f.path.clone(), reason: format!("{problem:?}; run `haechi records verify`") }
}

/// A checkpoint line cut by a crash mid-write is dropped, so the next line starts on its own.
fn cut_torn_line(path: &Path) -> Result<(), RecordsError> {
    let Ok(bytes) = fs::read(path) else { return Ok(()) };
    if bytes.is_empty() || bytes.ends_with(b"\n") {
        return Ok(());
    }
    let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    tracing::warn!(path = %path.display(), bytes = bytes.len() - keep, "a torn last checkpoint line (a crash mid-write) is cut");
    let f = OpenOptions::new().write(true).open(path).map_err(io_err(path, "open"))?;
    f.set_len(keep as u64).map_err(io_err(path, "truncate"))?;
    f.sync_all().map_err(io_err(path, "fsync"))
}

fn sync_dir(dir: &Path) -> Result<(), RecordsError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir, "fsync dir"))
}

fn create_dir(dir: &Path) -> Result<(), RecordsError> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_err(dir, "create"))
}

/// Where the writer is.
struct Writer {
    file: Option<File>,
    seg_path: PathBuf,
    seg_len: u64,
    next_seq: u64,
    head: Hash,
    checkpointed: Option<u64>,
    /// The signature of the checkpoint file's last line, which the next line carries.
    last_mac: String,
    dirty: bool,
    /// Sealed frames not yet written.
    frame: Vec<u8>,
    entry: Vec<u8>,
}

/// One class's chain, open for appending.
pub(crate) struct Ledger {
    class: RecordClass,
    dir: PathBuf,
    checkpoint_path: PathBuf,
    ring: KeyRing,
    sealer: Sealer,
    segment_bytes: u64,
    node: String,
    aad: Vec<u8>,
    w: Mutex<Writer>,
    /// One checkpoint at a time: each signs the one before it, so two at once would fork the
    /// checkpoint chain (a staff action's checkpoint and the writer's periodic one).
    checkpointing: Mutex<()>,
}

/// The oldest files of a class that are past retention, ready to go.
#[derive(Debug)]
pub(crate) struct DestructionPlan {
    pub files: Vec<ChainFile>,
    pub first_seq: u64,
    pub last_seq: u64,
    pub last_hash: Hash,
}

impl Ledger {
    /// Open (creating) the chain of `class` under `records_dir`, finding where it ends. A torn
    /// final frame (a crash mid-write) is cut; any other damage refuses to open.
    pub fn open(records_dir: &Path, checkpoint_dir: &Path, class: RecordClass, ring: &KeyRing, segment_bytes: u64, node: &str) -> Result<Ledger, RecordsError> {
        let dir = records_dir.join(class.as_str());
        create_dir(&dir)?;
        create_dir(checkpoint_dir)?;
        let checkpoint_path = checkpoint_dir.join(format!("{}.jsonl", class.as_str()));
        let sealer = ring.sealer(SEAL_PURPOSE);
        let mut files = list_files(&dir)?;
        // A new chain gets its (empty) checkpoint file at once, so that from then on a missing
        // file is evidence, not a store too young to have signed a head.
        if files.is_empty() && !checkpoint_path.exists() {
            File::create(&checkpoint_path).and_then(|f| f.sync_all()).map_err(io_err(&checkpoint_path, "create"))?;
            sync_dir(checkpoint_dir)?;
        } else if !checkpoint_path.exists() {
            tracing::error!(path = %checkpoint_path.display(), "the records checkpoint file is missing while segments exist; run `haechi records verify`");
        }
        cut_torn_line(&checkpoint_path)?;
        let (mut next_seq, mut head) = (0, [0u8; 32]);
        let mut signed_head: Option<Checkpoint> = None;
        let mut last_mac = String::new();
        if let Some(checkpoints) = read_checkpoints(&checkpoint_path)? {
            let good: Vec<&Checkpoint> = checkpoints.iter().filter_map(|(_, c)| c.as_ref().ok()).filter(|c| c.class == class.as_str() && c.verify(ring) == Ok(true)).collect();
            if let Some(base) = good.iter().rev().find(|c| c.kind == "base") {
                next_seq = base.seq;
                head = base.hash_bytes().unwrap_or_default();
            }
            signed_head = good.iter().rev().find(|c| c.kind == "head").map(|c| (*c).clone());
            last_mac = good.last().map(|c| c.mac.clone()).unwrap_or_default();
        }
        // A newest segment shorter than its header was begun when the process died (a store
        // written before segments were created under a temporary name): it holds no record.
        // Not one the signed head says holds records: that is evidence, left for `verify`,
        // and the check below refuses the store.
        if let Some(f) = files.last().filter(|f| f.archived_last.is_none()) {
            let unsigned = signed_head.as_ref().is_none_or(|h| h.seq < f.first);
            if unsigned && fs::metadata(&f.path).is_ok_and(|m| m.len() < SEGMENT_HEADER_LEN as u64) {
                tracing::warn!(segment = %f.path.display(), "a segment whose header was cut short holds no record and is removed");
                fs::remove_file(&f.path).map_err(io_err(&f.path, "remove"))?;
                sync_dir(&dir)?;
                files.pop();
            }
        }
        let mut writer = Writer { file: None, seg_path: PathBuf::new(), seg_len: 0, next_seq, head, checkpointed: None, last_mac, dirty: false, frame: Vec::new(), entry: Vec::new() };
        match files.last() {
            Some(f) if f.archived_last.is_none() => {
                let (header, entries, problem) = read_segment(&f.path, class, &sealer, None)?;
                let mut end = SEGMENT_HEADER_LEN as u64;
                match problem {
                    None => {}
                    Some(FrameProblem::Torn { at }) => {
                        tracing::warn!(segment = %f.path.display(), at, "a torn final record (a crash mid-write) is cut");
                        end = at;
                    }
                    Some(FrameProblem::Sealed { at, error }) => {
                        return Err(RecordsError::Damaged { path: f.path.clone(), reason: format!("the record at byte {at} does not open: {error}; run `haechi records verify`") })
                    }
                    Some(FrameProblem::Malformed { at }) => return Err(RecordsError::Damaged { path: f.path.clone(), reason: format!("malformed record at byte {at}; run `haechi records verify`") }),
                }
                if let Some(last) = entries.last() {
                    if problem.is_none() {
                        end = fs::metadata(&f.path).map_err(io_err(&f.path, "stat"))?.len();
                    }
                    writer.next_seq = last.seq + 1;
                    writer.head = last.hash();
                } else {
                    writer.next_seq = header.first;
                    writer.head = header.prev;
                }
                let file = OpenOptions::new().write(true).open(&f.path).map_err(io_err(&f.path, "open"))?;
                file.set_len(end).map_err(io_err(&f.path, "truncate"))?;
                // A rotated key starts a new segment, so each segment names one key.
                if header.key_id == sealer.active_id() {
                    let mut file = file;
                    use std::io::Seek;
                    file.seek(std::io::SeekFrom::End(0)).map_err(io_err(&f.path, "seek"))?;
                    writer.file = Some(file);
                    writer.seg_path = f.path.clone();
                    writer.seg_len = end;
                }
            }
            Some(f) => {
                let (header, _) = read_archive(&f.path, class, &sealer)?;
                writer.next_seq = header.last + 1;
                writer.head = header.last_hash;
            }
            None => {}
        }
        // A chain that ends before what was signed was cut while the service was down: refuse,
        // rather than sign a new head over the cut and hide it.
        if let Some(h) = &signed_head {
            if h.seq >= writer.next_seq {
                return Err(RecordsError::Damaged {
                    path: dir.clone(),
                    reason: format!(
                        "the {} chain ends before record {} but a checkpoint signed at {} covers record {}: records were removed; run `haechi records verify`",
                        class.as_str(),
                        writer.next_seq,
                        crate::format_ms(h.at_ms),
                        h.seq
                    ),
                });
            }
            writer.checkpointed = Some(h.seq).filter(|&s| s + 1 == writer.next_seq);
        }
        Ok(Ledger { class, dir, checkpoint_path, ring: ring.clone(), sealer, segment_bytes, node: node.to_owned(), aad: entry_aad(class), w: Mutex::new(writer), checkpointing: Mutex::new(()) })
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, Writer> {
        self.w.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn class(&self) -> RecordClass {
        self.class
    }

    /// The segment being written and how far, so a read stops at what was whole when it began.
    fn current_end(&self) -> (PathBuf, u64) {
        let w = self.writer();
        (w.seg_path.clone(), w.seg_len)
    }

    /// A file's entries (a live segment read up to `limit`), and what stopped its read early.
    fn entries(&self, f: &ChainFile, limit: Option<u64>) -> Result<(Vec<Entry>, Option<FrameProblem>), RecordsError> {
        if f.archived_last.is_some() {
            return Ok((read_archive(&f.path, self.class, &self.sealer)?.1, None));
        }
        let (_, entries, problem) = read_segment(&f.path, self.class, &self.sealer, limit)?;
        Ok((entries, problem))
    }

    /// The ingest-log offsets recorded at or after `from`, newest files first until one
    /// begins before `from`: what a recovery replaying the log from `from` must not record again.
    pub fn log_offsets_from(&self, from: u64) -> Result<std::collections::HashSet<u64>, RecordsError> {
        let (current, len) = self.current_end();
        let mut found = std::collections::HashSet::new();
        for f in list_files(&self.dir)?.into_iter().rev() {
            let (entries, _) = self.entries(&f, (f.path == current).then_some(len))?;
            let mut older = false;
            for e in &entries {
                match e.record().ok().and_then(|r| r.log_offset) {
                    Some(o) if o >= from => {
                        found.insert(o);
                    }
                    Some(_) => older = true,
                    None => {}
                }
            }
            if older {
                break;
            }
        }
        Ok(found)
    }

    /// Give each record its sequence number and id, chain it, seal it and write it. The bytes
    /// reach the kernel before this returns; [`Ledger::sync`] makes them durable.
    pub fn append(&self, records: &mut [Record]) -> Result<(), RecordsError> {
        let mut guard = self.writer();
        let w = &mut *guard;
        for r in records.iter_mut() {
            let seq = w.next_seq;
            r.seq = seq;
            r.id = format!("{}{seq}@{}", &self.class.as_str()[..1], self.node);
            r.node.clone_from(&self.node);
            let json = serde_json::to_vec(r)?;
            w.entry.clear();
            w.entry.extend_from_slice(&seq.to_le_bytes());
            w.entry.extend_from_slice(&w.head);
            w.entry.extend_from_slice(&json);
            let start = w.frame.len();
            w.frame.extend_from_slice(&[0; 4]);
            self.sealer.seal_into(&self.aad, &w.entry, &mut w.frame);
            let len = w.frame.len() - start - 4;
            w.frame[start..start + 4].copy_from_slice(&(len as u32).to_le_bytes());
            // A segment begins at a record: when this one would overflow the current segment,
            // what came before it goes there, and it begins the next.
            let before = (w.seg_len + start as u64) > SEGMENT_HEADER_LEN as u64;
            if w.file.is_none() || (before && w.seg_len + w.frame.len() as u64 > self.segment_bytes) {
                let this = w.frame.split_off(start);
                self.write_frames(w)?;
                self.roll(w, seq)?;
                w.frame = this;
            }
            w.head = link(seq, &w.head, &json);
            w.next_seq = seq + 1;
        }
        self.write_frames(w)
    }

    /// Write the pending frames to the current segment.
    fn write_frames(&self, w: &mut Writer) -> Result<(), RecordsError> {
        if w.frame.is_empty() {
            return Ok(());
        }
        let file = w.file.as_mut().expect("a segment is open once a record is pending");
        if let Err(e) = file.write_all(&w.frame) {
            // Part of the frames may be on disk: cut back to the last whole record, so that
            // the segment stays readable and the next append follows it.
            let _ = file.set_len(w.seg_len);
            use std::io::Seek;
            let _ = file.seek(std::io::SeekFrom::Start(w.seg_len));
            w.frame.clear();
            return Err(io_err(&w.seg_path, "write")(e));
        }
        w.seg_len += w.frame.len() as u64;
        w.frame.clear();
        w.dirty = true;
        Ok(())
    }

    /// Close the current segment (synced) and start the next at record `first`, which carries
    /// the current head as its predecessor's hash.
    fn roll(&self, w: &mut Writer, first: u64) -> Result<(), RecordsError> {
        if let Some(f) = w.file.take() {
            f.sync_data().map_err(io_err(&w.seg_path, "fdatasync"))?;
        }
        let path = self.dir.join(segment_name(first));
        // A segment begun and left empty (a crash right after a roll, then a key rotation)
        // holds no record: it is replaced.
        if fs::metadata(&path).is_ok_and(|m| m.len() <= SEGMENT_HEADER_LEN as u64) {
            fs::remove_file(&path).map_err(io_err(&path, "remove"))?;
        }
        if fs::metadata(&path).is_ok() {
            return Err(io_err(&path, "create")(std::io::Error::from(std::io::ErrorKind::AlreadyExists)));
        }
        // The header is written and synced under a temporary name and then renamed into
        // place, so that a crash never leaves a segment whose header is cut short (a kill
        // between the create and the write did, and the restart refused the segment).
        let header = segment_header(self.class, self.sealer.active_id(), first, &w.head);
        let tmp = self.dir.join(format!("{}.tmp", segment_name(first)));
        {
            let mut t = OpenOptions::new().create(true).write(true).truncate(true).open(&tmp).map_err(io_err(&tmp, "create"))?;
            t.write_all(&header).map_err(io_err(&tmp, "write"))?;
            t.sync_data().map_err(io_err(&tmp, "fdatasync"))?;
        }
        fs::rename(&tmp, &path).map_err(io_err(&path, "rename"))?;
        sync_dir(&self.dir)?;
        let file = OpenOptions::new().append(true).open(&path).map_err(io_err(&path, "open"))?;
        w.file = Some(file);
        w.seg_path = path;
        w.seg_len = header.len() as u64;
        Ok(())
    }

    /// Make everything appended so far durable.
    pub fn sync(&self) -> Result<(), RecordsError> {
        let mut w = self.writer();
        if w.dirty {
            if let Some(f) = &w.file {
                f.sync_data().map_err(io_err(&w.seg_path, "fdatasync"))?;
            }
            w.dirty = false;
        }
        Ok(())
    }

    /// Sync, then sign the head into the checkpoint file (when it moved since the last one).
    pub fn checkpoint(&self, now_ms: i64) -> Result<(), RecordsError> {
        let _one_at_a_time = self.checkpointing.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // The head is read before the sync: what the sync makes durable then includes it, even
        // if another thread appends meanwhile (signing a head not yet on disk would read, after
        // a crash, as a cut tail).
        let (next, head, done) = {
            let w = self.writer();
            (w.next_seq, w.head, w.checkpointed)
        };
        self.sync()?;
        if next == 0 || done == Some(next - 1) {
            return Ok(());
        }
        let prev = self.writer().last_mac.clone();
        self.append_checkpoint(&Checkpoint::new(&self.ring, "head", self.class, next - 1, &head, now_ms, &prev))?;
        self.writer().checkpointed = Some(next - 1);
        Ok(())
    }

    fn append_checkpoint(&self, c: &Checkpoint) -> Result<(), RecordsError> {
        let mut line = serde_json::to_vec(c)?;
        line.push(b'\n');
        let path = &self.checkpoint_path;
        let mut f = OpenOptions::new().create(true).append(true).open(path).map_err(io_err(path, "open"))?;
        f.write_all(&line).map_err(io_err(path, "write"))?;
        f.sync_data().map_err(io_err(path, "fdatasync"))?;
        self.writer().last_mac.clone_from(&c.mac);
        Ok(())
    }

    /// Every record in order, archives first, up to what was written when the call began.
    pub fn scan(&self, mut visit: impl FnMut(Record) -> bool) -> Result<(), RecordsError> {
        let (current, len) = self.current_end();
        for f in list_files(&self.dir)? {
            let (entries, problem) = self.entries(&f, (f.path == current).then_some(len))?;
            if let Some(p) = problem {
                return Err(damaged(&f, &p));
            }
            for e in entries {
                let record = e.record().map_err(|err| RecordsError::Damaged { path: f.path.clone(), reason: format!("record {} is not a record: {err}", e.seq) })?;
                if !visit(record) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// The closed live segments (never the one being written), with their entries.
    fn closed_segments(&self) -> Result<Vec<(ChainFile, SegmentHeader, Vec<Entry>)>, RecordsError> {
        let current = self.writer().seg_path.clone();
        let mut out = Vec::new();
        for f in list_files(&self.dir)? {
            if f.archived_last.is_some() || f.path == current {
                continue;
            }
            let (header, entries, problem) = read_segment(&f.path, self.class, &self.sealer, None)?;
            if let Some(p) = problem {
                return Err(damaged(&f, &p));
            }
            out.push((f, header, entries));
        }
        Ok(out)
    }

    /// Compress closed segments whose newest record was recorded before `before_ms` into the
    /// archive. Returns how many were archived.
    pub fn archive(&self, before_ms: i64) -> Result<usize, RecordsError> {
        let archive_dir = self.dir.join("archive");
        let mut done = 0;
        for (f, header, entries) in self.closed_segments()? {
            let Some(last) = entries.last() else { continue };
            let last_recorded = last.record().map(|r| r.recorded_ms).unwrap_or(i64::MAX);
            if last_recorded >= before_ms {
                continue;
            }
            create_dir(&archive_dir)?;
            let mut raw = Vec::new();
            for e in &entries {
                raw.extend_from_slice(&((ENTRY_HEADER_LEN + e.json.len()) as u32).to_le_bytes());
                raw.extend_from_slice(&e.seq.to_le_bytes());
                raw.extend_from_slice(&e.prev);
                raw.extend_from_slice(&e.json);
            }
            let compressed = zstd::encode_all(&raw[..], 19).map_err(io_err(&f.path, "compress"))?;
            let ah = ArchiveHeader { first: header.first, last: last.seq, last_recorded_ms: last_recorded, prev: header.prev, last_hash: last.hash() };
            let mut bytes = archive_header(self.class, &ah);
            let sealed = self.sealer.seal(&bytes, &compressed);
            bytes.extend_from_slice(&sealed);
            let path = archive_dir.join(archive_name(ah.first, ah.last));
            let tmp = path.with_extension("tmp");
            {
                let mut file = OpenOptions::new().create(true).truncate(true).write(true).open(&tmp).map_err(io_err(&tmp, "create"))?;
                file.write_all(&bytes).map_err(io_err(&tmp, "write"))?;
                file.sync_all().map_err(io_err(&tmp, "fsync"))?;
            }
            fs::rename(&tmp, &path).map_err(io_err(&path, "rename"))?;
            sync_dir(&archive_dir)?;
            fs::remove_file(&f.path).map_err(io_err(&f.path, "remove"))?;
            sync_dir(&self.dir)?;
            done += 1;
        }
        Ok(done)
    }

    /// The oldest files whose every record was recorded before `before_ms` (never the segment
    /// being written), if any.
    pub fn plan_destruction(&self, before_ms: i64) -> Result<Option<DestructionPlan>, RecordsError> {
        let current = self.writer().seg_path.clone();
        let mut plan: Option<DestructionPlan> = None;
        for f in list_files(&self.dir)? {
            if f.path == current {
                break;
            }
            let (first, last, last_ms, last_hash) = if f.archived_last.is_some() {
                let (h, _) = read_archive(&f.path, self.class, &self.sealer)?;
                (h.first, h.last, h.last_recorded_ms, h.last_hash)
            } else {
                let (h, entries, problem) = read_segment(&f.path, self.class, &self.sealer, None)?;
                if let Some(p) = problem {
                    return Err(damaged(&f, &p));
                }
                let Some(last) = entries.last() else { break };
                let ms = last.record().map(|r| r.recorded_ms).unwrap_or(i64::MAX);
                (h.first, last.seq, ms, last.hash())
            };
            if last_ms >= before_ms {
                break;
            }
            let p = plan.get_or_insert(DestructionPlan { files: Vec::new(), first_seq: first, last_seq: last, last_hash });
            p.files.push(f);
            p.last_seq = last;
            p.last_hash = last_hash;
        }
        Ok(plan)
    }

    /// Sign the new base (where the chain now begins), then delete the planned files.
    pub fn destroy(&self, plan: &DestructionPlan, now_ms: i64) -> Result<(), RecordsError> {
        let prev = self.writer().last_mac.clone();
        self.append_checkpoint(&Checkpoint::new(&self.ring, "base", self.class, plan.last_seq + 1, &plan.last_hash, now_ms, &prev))?;
        for f in &plan.files {
            fs::remove_file(&f.path).map_err(io_err(&f.path, "remove"))?;
        }
        sync_dir(&self.dir)?;
        if self.dir.join("archive").exists() {
            sync_dir(&self.dir.join("archive"))?;
        }
        Ok(())
    }
}
