//! The block list: entities refused until a time, set by rules, rate limits
//! or analysts, lifted by analysts, kept across restarts.
//!
//! Blocks are looked up by the keyed entity hash the pipeline computed for the
//! event, so a check costs a map probe per entity and no allocation. TTLs are
//! wall-clock: a block is enforced live, whatever the events' own times.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use haechi_features::{EntityKeys, EntityKind};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// One block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub scope: EntityKind,
    pub key: String,
    /// The keyed hash the pipeline looks it up by.
    pub hash: u64,
    pub reason: String,
    /// `rule:<id>`, `rate_limit:<scope>` or `analyst:<who>`.
    pub set_by: String,
    pub set_at_ms: i64,
    pub expires_at_ms: i64,
    /// How many times this entity has been blocked automatically (repeat offenders wait longer).
    pub offense: u32,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    blocks: Vec<Block>,
    offenses: Vec<(EntityKind, u64, u32)>,
}

/// Settings of the block list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlockConfig {
    /// Where blocks are kept across restarts; unset: in memory only.
    pub state_file: Option<PathBuf>,
    /// At most this many automatic blocks per minute; past it the breaker
    /// trips and decisions still say block but no new entity is listed, so a
    /// bad rule cannot list a whole carrier NAT.
    pub max_new_per_minute: u32,
    /// Each repeat multiplies the TTL by this, up to `max_ttl`.
    pub repeat_multiplier: u32,
    #[serde(with = "humantime_serde")]
    pub max_ttl: Duration,
}

impl Default for BlockConfig {
    fn default() -> Self {
        BlockConfig { state_file: None, max_new_per_minute: 600, repeat_multiplier: 2, max_ttl: Duration::from_secs(7 * 86_400) }
    }
}

/// Why an automatic block was not set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Already blocked: nothing to do.
    AlreadyBlocked,
    /// The per-minute cap is reached.
    CircuitOpen,
}

/// The block list.
pub struct BlockList {
    config: BlockConfig,
    entries: DashMap<(EntityKind, u64), Block>,
    offenses: DashMap<(EntityKind, u64), u32>,
    minute: AtomicI64,
    set_this_minute: AtomicU64,
    dirty: Arc<Notify>,
}

pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl BlockList {
    /// Empty list, or the one in the state file.
    ///
    /// # Errors
    /// When the state file exists but cannot be read or parsed: better to stop
    /// than to start with every block silently lifted.
    pub fn open(config: BlockConfig) -> Result<BlockList, String> {
        let list = BlockList {
            entries: DashMap::new(),
            offenses: DashMap::new(),
            minute: AtomicI64::new(0),
            set_this_minute: AtomicU64::new(0),
            dirty: Arc::new(Notify::new()),
            config,
        };
        if let Some(path) = &list.config.state_file {
            match std::fs::read_to_string(path) {
                Ok(text) => {
                    let state: StateFile = serde_json::from_str(&text).map_err(|e| format!("block state {}: {e}", path.display()))?;
                    let now = now_ms();
                    for b in state.blocks.into_iter().filter(|b| b.expires_at_ms > now) {
                        list.entries.insert((b.scope, b.hash), b);
                    }
                    for (k, h, n) in state.offenses {
                        list.offenses.insert((k, h), n);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(format!("block state {}: {e}", path.display())),
            }
        }
        Ok(list)
    }

    /// The first block in force on any entity the event names.
    pub fn check(&self, keys: &EntityKeys) -> Option<Block> {
        let now = now_ms();
        for kind in EntityKind::ALL {
            let Some(h) = keys.get(kind) else { continue };
            if let Some(b) = self.entries.get(&(kind, h)) {
                if b.expires_at_ms > now {
                    return Some(b.clone());
                }
            }
        }
        None
    }

    /// Set an automatic block (rule or rate limit), subject to the breaker and
    /// lengthened for repeat offenders.
    ///
    /// # Errors
    /// [`Refused`] when nothing was set.
    pub fn set_automatic(&self, scope: EntityKind, hash: u64, key: String, base_ttl: Duration, reason: String, set_by: String) -> Result<Block, Refused> {
        let now = now_ms();
        if self.entries.get(&(scope, hash)).is_some_and(|b| b.expires_at_ms > now) {
            return Err(Refused::AlreadyBlocked);
        }
        let minute = now / 60_000;
        if self.minute.swap(minute, Ordering::Relaxed) != minute {
            self.set_this_minute.store(0, Ordering::Relaxed);
        }
        if self.set_this_minute.fetch_add(1, Ordering::Relaxed) >= u64::from(self.config.max_new_per_minute) {
            return Err(Refused::CircuitOpen);
        }
        let offense = {
            let mut o = self.offenses.entry((scope, hash)).or_insert(0);
            *o += 1;
            *o
        };
        let factor = u64::from(self.config.repeat_multiplier.max(1)).saturating_pow(offense - 1);
        let ttl = base_ttl.saturating_mul(factor.min(u64::from(u32::MAX)) as u32).min(self.config.max_ttl);
        let block = Block { scope, key, hash, reason, set_by, set_at_ms: now, expires_at_ms: now + ttl.as_millis() as i64, offense };
        self.entries.insert((scope, hash), block.clone());
        self.dirty.notify_one();
        Ok(block)
    }

    /// Set a block by hand (an analyst); no breaker, no repeat multiplier.
    pub fn set_manual(&self, scope: EntityKind, hash: u64, key: String, ttl: Duration, reason: String, set_by: String) -> Block {
        let now = now_ms();
        let offense = self.offenses.get(&(scope, hash)).map_or(0, |o| *o);
        let block = Block { scope, key, hash, reason, set_by, set_at_ms: now, expires_at_ms: now + ttl.as_millis() as i64, offense };
        self.entries.insert((scope, hash), block.clone());
        self.dirty.notify_one();
        block
    }

    /// Lift a block. True if there was one.
    pub fn lift(&self, scope: EntityKind, hash: u64) -> bool {
        let removed = self.entries.remove(&(scope, hash)).is_some();
        if removed {
            self.dirty.notify_one();
        }
        removed
    }

    /// Blocks in force, newest first.
    pub fn list(&self) -> Vec<Block> {
        let now = now_ms();
        let mut v: Vec<Block> = self.entries.iter().filter(|b| b.expires_at_ms > now).map(|b| b.clone()).collect();
        v.sort_by(|a, b| b.set_at_ms.cmp(&a.set_at_ms).then(a.key.cmp(&b.key)));
        v
    }

    /// Drop expired entries; returns blocks in force by scope.
    pub fn sweep(&self) -> Vec<(EntityKind, i64)> {
        let now = now_ms();
        let before = self.entries.len();
        self.entries.retain(|_, b| b.expires_at_ms > now);
        if self.entries.len() != before {
            self.dirty.notify_one();
        }
        EntityKind::ALL.iter().map(|&k| (k, self.entries.iter().filter(|e| e.key().0 == k).count() as i64)).collect()
    }

    /// Notified whenever the list changes, for the persister.
    pub fn changed(&self) -> Arc<Notify> {
        self.dirty.clone()
    }

    /// Write the list to the state file, atomically (temporary file, fsync, rename).
    ///
    /// # Errors
    /// When the file cannot be written; the previous file stays intact.
    pub fn persist(&self) -> std::io::Result<()> {
        let Some(path) = &self.config.state_file else { return Ok(()) };
        let state = StateFile {
            version: 1,
            blocks: self.list(),
            offenses: self.offenses.iter().map(|e| (e.key().0, e.key().1, *e.value())).collect(),
        };
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        serde_json::to_writer(&mut tmp, &state)?;
        tmp.as_file().sync_all()?;
        tmp.persist(path).map_err(|e| e.error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys_for(kind: EntityKind, key: &str) -> (u64, EntityKeys) {
        let seed = haechi_features::FeatureConfig::default().hash_seed;
        let h = haechi_features::lookup_hash(seed, kind, key).unwrap();
        let e = haechi_features::Event::parse(format!(r#"{{"event_id":"e","ts":"2026-11-02T10:00:00+09:00","step":"login","result":"success","ip":"{key}"}}"#).as_bytes(), 4096).unwrap();
        (h, EntityKeys::of(&e, seed))
    }

    #[test]
    fn block_check_lift_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = BlockConfig { state_file: Some(dir.path().join("blocks.json")), ..Default::default() };
        let list = BlockList::open(cfg.clone()).unwrap();
        let (h, keys) = keys_for(EntityKind::Ip, "10.1.1.1");
        assert!(list.check(&keys).is_none());
        list.set_automatic(EntityKind::Ip, h, "10.1.1.1".into(), Duration::from_secs(60), "test".into(), "rule:x".into()).unwrap();
        assert_eq!(list.check(&keys).unwrap().set_by, "rule:x");
        list.persist().unwrap();
        let again = BlockList::open(cfg).unwrap();
        assert_eq!(again.check(&keys).unwrap().key, "10.1.1.1");
        assert!(again.lift(EntityKind::Ip, h));
        assert!(again.check(&keys).is_none());
    }

    #[test]
    fn repeat_offenders_wait_longer_and_the_breaker_trips() {
        let list = BlockList::open(BlockConfig { max_new_per_minute: 3, ..Default::default() }).unwrap();
        let a = list.set_automatic(EntityKind::Device, 1, "d".into(), Duration::from_secs(60), "r".into(), "rule:x".into()).unwrap();
        list.lift(EntityKind::Device, 1);
        let b = list.set_automatic(EntityKind::Device, 1, "d".into(), Duration::from_secs(60), "r".into(), "rule:x".into()).unwrap();
        assert_eq!((a.offense, b.offense), (1, 2));
        assert_eq!(b.expires_at_ms - b.set_at_ms, 120_000);
        assert_eq!(list.set_automatic(EntityKind::Device, 1, "d".into(), Duration::from_secs(60), "r".into(), "x".into()), Err(Refused::AlreadyBlocked));
        list.set_automatic(EntityKind::Device, 2, "e".into(), Duration::from_secs(60), "r".into(), "x".into()).unwrap();
        assert_eq!(list.set_automatic(EntityKind::Device, 3, "f".into(), Duration::from_secs(60), "r".into(), "x".into()), Err(Refused::CircuitOpen));
    }

    #[test]
    fn an_unreadable_state_file_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("blocks.json");
        std::fs::write(&p, "{ broken").unwrap();
        assert!(BlockList::open(BlockConfig { state_file: Some(p), ..Default::default() }).err().unwrap().contains("blocks.json"));
    }
}
