//! # haechi-storage — the data dir's durable files
//!
//! The data dir's durable files: the ingest log (segmented, checksummed, append-only) and snapshot
//! files (versioned, checksummed, written atomically).
//!
//! The crate knows nothing about events or the pipeline: [`IngestLog`] stores opaque byte records
//! under dense `u64` offsets, and [`SnapshotStore`] stores opaque payloads tagged with the log offset
//! they cover and the caller's format version. Damage is reported, never papered over: a torn log
//! tail is cut and reported in [`OpenReport`], damage anywhere else is a [`StorageError::Corrupt`],
//! and a snapshot that fails its checks is passed over with a [`Refused`] saying why.
//!
//! Both can seal what they write with a [`Sealer`] from the data [`KeyRing`]
//! ([`IngestLog::open_sealed`], [`SnapshotStore::open_sealed`]): then nothing of a record or a
//! snapshot is readable on disk without the key, and bytes moved to another place do not open.
//!
//! ```
//! use haechi_storage::{IngestLog, LogConfig};
//! let dir = tempfile::tempdir().unwrap();
//! let (log, report) = IngestLog::open(dir.path(), LogConfig::default()).unwrap();
//! assert_eq!(report.next_offset, 0);
//! assert_eq!(log.append(&[b"first", b"second"]).unwrap(), 0);
//! let records: Vec<_> = log.read_from(1).unwrap().map(Result::unwrap).collect();
//! assert_eq!(records, vec![(1, b"second".to_vec())]);
//! ```

mod crypto;
mod error;
mod fsutil;
mod log;
mod snapshot;

pub use crypto::{KeyRing, SealError, Sealer, DEMO_KEY_ID};
pub use error::StorageError;
pub use log::{Fsync, IngestLog, LogConfig, LogReader, OpenReport, MAX_RECORD_BYTES};
pub use snapshot::{LoadedSnapshot, Refused, SnapshotStore};
