//! The audit log: every analyst or admin action (a block set or lifted, a
//! reload), who did it, when, and the state before and after.
//!
//! With a data dir, every action is an access record (`haechi-records`:
//! hash-chained, sealed, synced before the action is acknowledged) and
//! `GET /v1/audit` is a recorded read of them. Without one: append-only JSON
//! lines, fsynced after each append, or memory only.

use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use std::sync::Arc;

use haechi_records::ActionRecord;

use super::auth::Principal;
use crate::recording::Recording;

/// Entries kept in memory for `GET /v1/audit`.
const RECENT: usize = 10_000;

/// Who did it: the same shape the access records keep.
pub use haechi_records::Actor;

impl From<&Principal> for Actor {
    fn from(p: &Principal) -> Self {
        Actor { name: p.name.clone(), role: p.role.as_str().to_owned() }
    }
}

/// One audited action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Wall clock, RFC 3339.
    pub at: String,
    pub who: Actor,
    /// `block_set`, `block_lifted`, `reload`.
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub before: serde_json::Value,
    pub after: serde_json::Value,
}

impl AuditRecord {
    /// A record stamped now.
    pub fn now(who: Actor, action: &str, scope: Option<&str>, key: Option<&str>, before: serde_json::Value, after: serde_json::Value) -> AuditRecord {
        AuditRecord {
            at: haechi_features::format_rfc3339_ms(crate::enforce::now_ms()),
            who,
            action: action.to_owned(),
            scope: scope.map(str::to_owned),
            key: key.map(str::to_owned),
            before,
            after,
        }
    }
}

struct Inner {
    file: Option<std::fs::File>,
    recent: VecDeque<AuditRecord>,
}

/// The append-only audit log.
pub struct AuditLog {
    path: Option<PathBuf>,
    inner: Mutex<Inner>,
    /// With a data dir, actions are access records (hash-chained, sealed) instead of lines.
    recording: Option<Arc<Recording>>,
}

impl AuditLog {
    /// Open (creating) the log at `path`, or keep it in memory when `None`.
    /// The most recent entries already in the file are loaded for
    /// [`AuditLog::recent`].
    ///
    /// # Errors
    /// When the file cannot be opened for appending.
    pub fn open(path: Option<&Path>) -> std::io::Result<AuditLog> {
        let mut recent = VecDeque::new();
        let file = match path {
            None => None,
            Some(p) => {
                if let Ok(f) = std::fs::File::open(p) {
                    for line in std::io::BufReader::new(f).lines() {
                        let line = line?;
                        // A torn last line (a crash mid-write) is skipped, not fatal.
                        if let Ok(r) = serde_json::from_str::<AuditRecord>(&line) {
                            if recent.len() == RECENT {
                                recent.pop_front();
                            }
                            recent.push_back(r);
                        }
                    }
                }
                Some(std::fs::OpenOptions::new().create(true).append(true).open(p)?)
            }
        };
        Ok(AuditLog { path: path.map(Path::to_path_buf), inner: Mutex::new(Inner { file, recent }), recording: None })
    }

    /// Actions written as access records: the records store replaces the log file.
    pub fn on_records(recording: Arc<Recording>) -> AuditLog {
        AuditLog { path: None, inner: Mutex::new(Inner { file: None, recent: VecDeque::new() }), recording: Some(recording) }
    }

    /// The records store actions go to, if any.
    pub fn recording(&self) -> Option<&Arc<Recording>> {
        self.recording.as_ref()
    }

    /// Where the log is written; `None`: memory only.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Append one record and fsync it. Blocking: call off the async runtime.
    ///
    /// # Errors
    /// When the line cannot be written or synced; the record is kept in
    /// memory all the same.
    pub fn append(&self, record: AuditRecord) -> std::io::Result<()> {
        if let Some(r) = &self.recording {
            let action = ActionRecord {
                who: record.who.clone(),
                action: record.action.clone(),
                scope: record.scope.clone(),
                key: record.key.clone(),
                before: record.before.clone(),
                after: record.after.clone(),
            };
            return r.action(action).map(drop).map_err(std::io::Error::other);
        }
        let mut line = serde_json::to_vec(&record).map_err(std::io::Error::other)?;
        line.push(b'\n');
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if inner.recent.len() == RECENT {
            inner.recent.pop_front();
        }
        inner.recent.push_back(record);
        if let Some(f) = inner.file.as_mut() {
            f.write_all(&line)?;
            f.sync_data()?;
        }
        Ok(())
    }

    /// The last `limit` records, oldest first.
    pub fn recent(&self, limit: usize) -> Vec<AuditRecord> {
        let inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let skip = inner.recent.len().saturating_sub(limit);
        inner.recent.iter().skip(skip).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(n: u32) -> AuditRecord {
        AuditRecord::now(Actor { name: "kim".into(), role: "analyst".into() }, "block_lifted", Some("ip"), Some("10.0.0.1"), serde_json::json!({ "n": n }), serde_json::Value::Null)
    }

    #[test]
    fn appends_lines_and_reads_them_back_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(Some(&path)).unwrap();
        log.append(rec(1)).unwrap();
        log.append(rec(2)).unwrap();
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        let log = AuditLog::open(Some(&path)).unwrap();
        log.append(rec(3)).unwrap();
        let recent = log.recent(2);
        assert_eq!(recent.iter().map(|r| r.before["n"].as_u64().unwrap()).collect::<Vec<_>>(), vec![2, 3]);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 3, "appended, not rewritten");
    }

    #[test]
    fn memory_only_without_a_path() {
        let log = AuditLog::open(None).unwrap();
        log.append(rec(1)).unwrap();
        assert_eq!(log.recent(10).len(), 1);
        assert!(log.path().is_none());
    }
}
