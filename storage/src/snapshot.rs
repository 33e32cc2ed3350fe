//! Snapshot files: one opaque payload per file, versioned by the caller, checksummed, written atomically.
//!
//! `dir/snapshot-{covers_offset:020}-{seq:06}.snap` holds a 32-byte header (`HCHISNAP`, the caller's
//! format version `u32` LE, covers_offset `u64` LE, payload length `u64` LE, crc32c of the payload
//! `u32` LE) and the payload. A file only gets that name by a rename after its data was fsynced, so a
//! crash leaves either the whole snapshot or a `.snap-*.tmp` that loading ignores.
//!
//! A store opened with a [`Sealer`] ([`SnapshotStore::open_sealed`]) writes `HCHISNPS` files whose
//! payload is sealed with the format version and covers_offset (both LE) as associated data: a
//! payload put under another header, or altered with its checksum fixed, does not open. Such a file,
//! one sealed with a key the ring lacks, or one of the other kind (sealed or not) is refused like a
//! damaged one, with the reason.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::crypto::{SealError, Sealer};
use crate::error::{io_err, StorageError};
use crate::fsutil::sync_dir;

const SNAPSHOT_MAGIC: &[u8; 8] = b"HCHISNAP";
const SEALED_MAGIC: &[u8; 8] = b"HCHISNPS";
const SNAPSHOT_HEADER_LEN: usize = 32;

pub struct SnapshotStore {
    dir: PathBuf,
    keep: usize,
    sealer: Option<Sealer>,
    /// The next file's sequence number; the lock also keeps two writes from interleaving their pruning.
    next_seq: Mutex<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedSnapshot {
    pub path: PathBuf,
    pub covers_offset: u64,
    pub payload: Vec<u8>,
}

/// A snapshot file that `load_newest` passed over, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub path: PathBuf,
    pub reason: String,
    /// The key the file was sealed with, when the key ring lacks it: the file may be sound, and
    /// the ring wrong.
    pub unknown_key: Option<String>,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.reason)
    }
}

struct Named {
    path: PathBuf,
    covers_offset: u64,
    seq: u64,
}

impl SnapshotStore {
    /// `dir` is created if missing. `keep` is how many snapshots to keep, at least 2 so a damaged
    /// newest one can fall back to the one before.
    pub fn open(dir: &Path, keep: usize) -> Result<SnapshotStore, StorageError> {
        Self::open_sealed(dir, keep, None)
    }

    /// [`SnapshotStore::open`], sealing what it writes with `sealer` when one is given, and
    /// reading only sealed files then (see the module docs).
    pub fn open_sealed(dir: &Path, keep: usize, sealer: Option<Sealer>) -> Result<SnapshotStore, StorageError> {
        if keep < 2 {
            return Err(StorageError::InvalidConfig {
                reason: format!("snapshot keep is {keep}, must be at least 2 so a damaged newest snapshot can fall back"),
            });
        }
        fs::create_dir_all(dir).map_err(io_err(dir, "create directory"))?;
        let next_seq = list_named(dir)?.iter().map(|n| n.seq + 1).max().unwrap_or(0);
        Ok(SnapshotStore { dir: dir.to_path_buf(), keep, sealer, next_seq: Mutex::new(next_seq) })
    }

    /// Writes atomically (temp file, fsync, rename, fsync the directory), then deletes snapshots beyond
    /// `keep` and leftover temp files. Returns the path written and its size in bytes.
    pub fn write(&self, format_version: u32, covers_offset: u64, payload: &[u8]) -> Result<(PathBuf, u64), StorageError> {
        let mut next_seq = self.next_seq.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = *next_seq;
        // Taken even if this write fails, so a name is never reused.
        *next_seq += 1;

        let tmp = self.dir.join(format!(".snap-{}-{seq:06}.tmp", std::process::id()));
        let path = self.dir.join(format!("snapshot-{covers_offset:020}-{seq:06}.snap"));
        let sealed;
        let (magic, payload) = match &self.sealer {
            Some(sealer) => {
                sealed = sealer.seal(&sealed_aad(format_version, covers_offset), payload);
                (SEALED_MAGIC, sealed.as_slice())
            }
            None => (SNAPSHOT_MAGIC, payload),
        };
        let mut header = [0u8; SNAPSHOT_HEADER_LEN];
        header[..8].copy_from_slice(magic);
        header[8..12].copy_from_slice(&format_version.to_le_bytes());
        header[12..20].copy_from_slice(&covers_offset.to_le_bytes());
        header[20..28].copy_from_slice(&(payload.len() as u64).to_le_bytes());
        header[28..].copy_from_slice(&crc32c::crc32c(payload).to_le_bytes());

        // A leftover of a crashed write is removed first, then the name is
        // created afresh (`create_new` follows no symlink planted there).
        let _ = fs::remove_file(&tmp);
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io_err(&tmp, "create"))
            .and_then(|mut file| {
                file.write_all(&header).map_err(io_err(&tmp, "write"))?;
                file.write_all(payload).map_err(io_err(&tmp, "write"))?;
                file.sync_all().map_err(io_err(&tmp, "fsync"))
            })
            .and_then(|()| fs::rename(&tmp, &path).map_err(io_err(&path, "rename into place")));
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        sync_dir(&self.dir)?;
        self.prune(&path);
        Ok((path, (SNAPSHOT_HEADER_LEN + payload.len()) as u64))
    }

    /// The newest snapshot valid for `format_version`, and every newer file refused on the way with
    /// the reason. `Ok((None, refused))` when there is no valid one.
    pub fn load_newest(&self, format_version: u32) -> Result<(Option<LoadedSnapshot>, Vec<Refused>), StorageError> {
        self.load_newest_excluding(format_version, &[])
    }

    /// [`SnapshotStore::load_newest`], passing over the files in `skip`: the
    /// caller found them unusable after their checks passed (state that does
    /// not fit its store), and wants the next older one.
    pub fn load_newest_excluding(&self, format_version: u32, skip: &[PathBuf]) -> Result<(Option<LoadedSnapshot>, Vec<Refused>), StorageError> {
        let mut refused = Vec::new();
        for named in list_named(&self.dir)?.into_iter().filter(|n| !skip.contains(&n.path)) {
            match check(&named, format_version, self.sealer.as_ref()) {
                Ok(payload) => {
                    let loaded = LoadedSnapshot { path: named.path, covers_offset: named.covers_offset, payload };
                    return Ok((Some(loaded), refused));
                }
                Err((reason, unknown_key)) => refused.push(Refused { path: named.path, reason, unknown_key }),
            }
        }
        Ok((None, refused))
    }

    /// The log offset the oldest snapshot file covers (by its name; `None`
    /// without any): what log pruning must keep, so that any kept snapshot
    /// can still be recovered from.
    pub fn oldest_covered(&self) -> Result<Option<u64>, StorageError> {
        Ok(list_named(&self.dir)?.last().map(|n| n.covers_offset))
    }

    /// Snapshot files, newest first.
    pub fn list(&self) -> Result<Vec<PathBuf>, StorageError> {
        Ok(list_named(&self.dir)?.into_iter().map(|n| n.path).collect())
    }

    /// The snapshot is already safe when this runs, so a failure here is logged rather than failing the write.
    fn prune(&self, just_written: &Path) {
        let result = list_named(&self.dir).and_then(|named| {
            for old in named.iter().skip(self.keep).filter(|n| n.path != just_written) {
                fs::remove_file(&old.path).map_err(io_err(&old.path, "remove"))?;
            }
            for entry in fs::read_dir(&self.dir).map_err(io_err(&self.dir, "list"))? {
                let entry = entry.map_err(io_err(&self.dir, "list"))?;
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with(".snap-") && name.ends_with(".tmp") {
                    fs::remove_file(entry.path()).map_err(io_err(&entry.path(), "remove"))?;
                }
            }
            Ok(())
        });
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not prune old snapshots");
        }
    }
}

/// The associated data a sealed payload is bound to.
fn sealed_aad(format_version: u32, covers_offset: u64) -> [u8; 12] {
    let mut aad = [0u8; 12];
    aad[..4].copy_from_slice(&format_version.to_le_bytes());
    aad[4..].copy_from_slice(&covers_offset.to_le_bytes());
    aad
}

/// The payload, or why this file is not a usable snapshot for `format_version` (and the key it
/// names when the ring lacks it).
fn check(named: &Named, format_version: u32, sealer: Option<&Sealer>) -> Result<Vec<u8>, (String, Option<String>)> {
    let mut payload = check_plain(named, format_version, sealer.is_some()).map_err(|reason| (reason, None))?;
    if let Some(sealer) = sealer {
        let aad = sealed_aad(format_version, named.covers_offset);
        if let Err(e) = sealer.open_in_place(&aad, &mut payload) {
            return Err(match e {
                SealError::UnknownKey(key) => (format!("sealed with key {key:?}, which the key ring does not hold"), Some(key)),
                e => (format!("does not open: {e}"), None),
            });
        }
    }
    Ok(payload)
}

/// The payload as stored (sealed or not), or why the file fails its checks.
fn check_plain(named: &Named, format_version: u32, sealed: bool) -> Result<Vec<u8>, String> {
    let mut bytes = fs::read(&named.path).map_err(|e| format!("unreadable: {e}"))?;
    if bytes.len() < SNAPSHOT_HEADER_LEN {
        return Err(format!("truncated: {} bytes, shorter than the {SNAPSHOT_HEADER_LEN}-byte header", bytes.len()));
    }
    match (&bytes[..8], sealed) {
        (m, false) if m == SNAPSHOT_MAGIC => {}
        (m, true) if m == SEALED_MAGIC => {}
        (m, true) if m == SNAPSHOT_MAGIC => return Err("written unencrypted (an older build, or a store opened without a key), and this store is sealed".into()),
        (m, false) if m == SEALED_MAGIC => return Err("sealed, and no data key was given to open it".into()),
        _ => return Err("bad magic: not a Haechi snapshot".into()),
    }
    let field = |range: std::ops::Range<usize>| -> u64 {
        bytes[range].iter().rev().fold(0, |acc, &b| (acc << 8) | u64::from(b))
    };
    let version = field(8..12);
    if version != u64::from(format_version) {
        return Err(format!("format version {version}, this build reads {format_version}"));
    }
    let covers = field(12..20);
    if covers != named.covers_offset {
        return Err(format!("header says it covers offset {covers}, the file name says {}", named.covers_offset));
    }
    let (expected, have) = (field(20..28), (bytes.len() - SNAPSHOT_HEADER_LEN) as u64);
    if have < expected {
        return Err(format!("truncated: header says {expected} bytes, file has {have}"));
    }
    if have > expected {
        return Err(format!("{} bytes after the {expected}-byte payload the header announces", have - expected));
    }
    let crc = field(28..32) as u32;
    if crc32c::crc32c(&bytes[SNAPSHOT_HEADER_LEN..]) != crc {
        return Err("checksum mismatch".into());
    }
    bytes.drain(..SNAPSHOT_HEADER_LEN);
    Ok(bytes)
}

/// Files named like snapshots, newest (highest covers_offset, then seq) first.
fn list_named(dir: &Path) -> Result<Vec<Named>, StorageError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir, "list"))? {
        let entry = entry.map_err(io_err(dir, "list"))?;
        let name = entry.file_name();
        let parsed = name.to_str().and_then(|n| {
            let (covers, seq) = n.strip_prefix("snapshot-")?.strip_suffix(".snap")?.split_once('-')?;
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if covers.len() != 20 || !digits(covers) || !digits(seq) {
                return None;
            }
            Some((covers.parse().ok()?, seq.parse().ok()?))
        });
        if let Some((covers_offset, seq)) = parsed {
            found.push(Named { path: entry.path(), covers_offset, seq });
        }
    }
    found.sort_unstable_by_key(|n| std::cmp::Reverse((n.covers_offset, n.seq)));
    Ok(found)
}

#[cfg(test)]
mod tests;
