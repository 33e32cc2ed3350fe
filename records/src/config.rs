//! `[records]`: where the data key comes from, which node writes, and how long each class is kept.

use std::path::{Path, PathBuf};
use std::time::Duration;

use haechi_storage::KeyRing;
use serde::{Deserialize, Serialize};

use crate::error::RecordsError;
use crate::record::RecordClass;

const DAY: u64 = 86_400;
const YEAR: u64 = 365 * DAY + DAY / 4;

/// `[records]` in the configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RecordsConfig {
    /// Write access records (with a data dir). Off: nothing is recorded.
    pub enabled: bool,
    /// The data key ring (see `haechi keys new`): a file outside the data dir...
    pub key_file: Option<PathBuf>,
    /// ...or an environment variable holding the same text.
    pub key_env: Option<String>,
    /// The processing server's name in every record; default: the host name.
    pub node: Option<String>,
    /// A live segment is closed and a new one begun past this size.
    pub segment_bytes: u64,
    /// How often the chain heads are signed into the checkpoint file.
    #[serde(with = "humantime_serde")]
    pub checkpoint_every: Duration,
    /// Closed segments whose newest record is older than this are compressed into `archive/`.
    #[serde(with = "humantime_serde")]
    pub archive_after: Duration,
    /// Where checkpoints are kept; default `DATA_DIR/records-checkpoints`, apart from the segments.
    pub checkpoint_dir: Option<PathBuf>,
    /// Run the writer thread in the idle scheduling class (Linux `SCHED_IDLE`), so that building,
    /// sealing and chaining records never delays a request: a request's thread that wakes takes
    /// the core from it at once. Under full load the writer falls behind until its bounded inbox
    /// fills and callers wait for it. Off: it competes as an ordinary thread.
    pub background_writer: bool,
    pub retention: Retention,
}

impl Default for RecordsConfig {
    fn default() -> Self {
        RecordsConfig {
            enabled: true,
            key_file: None,
            key_env: None,
            node: None,
            segment_bytes: 16 << 20,
            checkpoint_every: Duration::from_secs(10),
            archive_after: Duration::from_secs(30 * DAY),
            checkpoint_dir: None,
            background_writer: true,
            retention: Retention::default(),
        }
    }
}

/// `[records.retention]`: how long each class is kept before it is destroyed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Retention {
    /// Accesses and decisions (전자금융거래법 §22: 5 years).
    #[serde(with = "humantime_serde")]
    pub transaction: Duration,
    /// Alerts, blocks, staff actions, exports, destructions.
    #[serde(with = "humantime_serde")]
    pub processing: Duration,
    /// Reads of records.
    #[serde(with = "humantime_serde")]
    pub read: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { transaction: Duration::from_secs(5 * YEAR), processing: Duration::from_secs(2 * YEAR), read: Duration::from_secs(2 * YEAR) }
    }
}

impl Retention {
    pub fn of(&self, class: RecordClass) -> Duration {
        match class {
            RecordClass::Transaction => self.transaction,
            RecordClass::Processing => self.processing,
            RecordClass::Read => self.read,
        }
    }
}

/// Where the data key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    File,
    Env,
    /// Nothing configured: the built-in demo key, for one machine only.
    Demo,
}

impl RecordsConfig {
    /// # Errors
    /// A setting out of range, named.
    pub fn validate(&self) -> Result<(), RecordsError> {
        if self.segment_bytes < 4096 {
            return Err(RecordsError::Config(format!("records.segment_bytes is {}, must be at least 4096", self.segment_bytes)));
        }
        if self.checkpoint_every.is_zero() {
            return Err(RecordsError::Config("records.checkpoint_every must be more than 0".into()));
        }
        if self.key_file.is_some() && self.key_env.is_some() {
            return Err(RecordsError::Config("records: set key_file or key_env, not both".into()));
        }
        for class in RecordClass::ALL {
            if self.retention.of(class) < Duration::from_secs(DAY) {
                return Err(RecordsError::Config(format!("records.retention.{} must be at least a day", class.as_str())));
            }
        }
        if let Some(node) = &self.node {
            if node.is_empty() || node.len() > 64 || node.contains(char::is_whitespace) {
                return Err(RecordsError::Config("records.node is 1 to 64 characters without spaces".into()));
            }
        }
        Ok(())
    }

    /// The node name: configured, else the host name, else `haechi`.
    pub fn node_name(&self) -> String {
        self.node.clone().or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()).filter(|h| !h.is_empty())).unwrap_or_else(|| "haechi".into())
    }

    /// The data key ring, and where it came from. A key file inside `data_dir` is refused: the
    /// key must never sit beside the data it protects.
    ///
    /// # Errors
    /// An unreadable or malformed key, an unset variable, or a key file inside the data dir.
    pub fn key_ring(&self, data_dir: Option<&Path>) -> Result<(KeyRing, KeySource), RecordsError> {
        if let Some(file) = &self.key_file {
            if let (Some(dir), Ok(file_abs)) = (data_dir, std::fs::canonicalize(file)) {
                if let Ok(dir_abs) = std::fs::canonicalize(dir) {
                    if file_abs.starts_with(&dir_abs) {
                        return Err(RecordsError::Config(format!(
                            "records.key_file {} is inside the data dir {}: keep the key apart from the data it protects",
                            file.display(),
                            dir.display()
                        )));
                    }
                }
            }
            return Ok((KeyRing::from_file(file)?, KeySource::File));
        }
        if let Some(var) = &self.key_env {
            let text = std::env::var(var).map_err(|_| RecordsError::Config(format!("records.key_env: ${var} is not set")))?;
            return Ok((KeyRing::parse(&text, &format!("${var}"))?, KeySource::Env));
        }
        Ok((KeyRing::demo(), KeySource::Demo))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_a_key_inside_the_data_dir_is_refused() {
        RecordsConfig::default().validate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let inside = data.join("k");
        std::fs::write(&inside, KeyRing::generate_line("k1")).unwrap();
        let c = RecordsConfig { key_file: Some(inside), ..RecordsConfig::default() };
        assert!(c.key_ring(Some(&data)).unwrap_err().to_string().contains("inside the data dir"));
        let outside = dir.path().join("k");
        std::fs::write(&outside, KeyRing::generate_line("k1")).unwrap();
        let c = RecordsConfig { key_file: Some(outside), ..RecordsConfig::default() };
        let (ring, source) = c.key_ring(Some(&data)).unwrap();
        assert_eq!((ring.active_id(), source), ("k1", KeySource::File));
        let (ring, source) = RecordsConfig::default().key_ring(Some(&data)).unwrap();
        assert!(ring.is_demo() && source == KeySource::Demo);
        let bad = RecordsConfig { retention: Retention { read: Duration::from_secs(5), ..Retention::default() }, ..RecordsConfig::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("retention.read"));
    }
}
