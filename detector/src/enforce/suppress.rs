//! Suppressions: an analyst's "this entity is fine for a while", for every
//! rule or for one ("snooze `ip_many_identities` for this NAT exit for 7 days").
//!
//! A suppressed finding is dropped before the decision, so it neither
//! challenges, blocks nor raises an alert; each suppression counts what it
//! swallowed so that an analyst can see a snooze that hides too much. They
//! expire by themselves. The service records every change as a staff action
//! and rebuilds the list from the records at start, the same path that
//! restores alert judgements.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use haechi_features::{EntityKeys, EntityKind, Finding};
use serde::{Deserialize, Serialize};

/// One suppression.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    pub id: String,
    pub scope: EntityKind,
    /// The entity as the analyst typed it (an address, a device id, ...).
    pub key: String,
    /// Only this rule or model (a finding's id); every rule when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub reason: String,
    /// `analyst:<principal>`.
    pub set_by: String,
    pub set_at_ms: i64,
    pub expires_at_ms: i64,
}

impl Suppression {
    /// Does it cover a finding of `rule`?
    pub fn covers_rule(&self, rule: &str) -> bool {
        self.rule.as_deref().is_none_or(|r| r == rule)
    }

    /// Does it cover a block set by `set_by` (`rules:<id>`, `model:<id>`,
    /// `rate_limit:<scope>`, `analyst:<name>`)? Only what rules and models set:
    /// an analyst's block is lifted by an analyst, and a rate limit is not a
    /// judgement a snooze can overrule.
    pub fn covers_block(&self, set_by: &str) -> bool {
        let Some((who, id)) = set_by.split_once(':') else { return false };
        !matches!(who, "analyst" | "rate_limit" | "blast_radius") && self.covers_rule(id)
    }
}

struct Entry {
    suppression: Suppression,
    id: Arc<str>,
    hits: AtomicU64,
    /// When an analyst ended it early; `i64::MAX` while it runs. An ended
    /// suppression is kept for a while, so that the ingest log replayed after
    /// a restart is judged as it was live (see [`Suppressions::filter`]).
    ended_at_ms: AtomicI64,
}

impl Entry {
    fn in_force_at(&self, now: i64) -> bool {
        self.suppression.set_at_ms <= now && now < self.suppression.expires_at_ms.min(self.ended_at_ms.load(Ordering::Relaxed))
    }
}

/// A suppression as listed: with how many findings it has swallowed since start.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub suppression: Suppression,
    pub hits: u64,
}

/// A finding a suppression swallowed: kept in the decision (as a shadow
/// reason) so that the records show what was not acted on, and why.
#[derive(Debug, Clone)]
pub struct Swallowed {
    pub detector: Arc<str>,
    pub rule: Arc<str>,
    pub severity: haechi_features::Severity,
    pub suppression: Arc<str>,
}

/// Suppressions kept at most: an analyst's list, not a bulk allowlist.
pub const MAX_SUPPRESSIONS: usize = 10_000;

/// How long an ended or expired suppression is kept to judge replayed events:
/// longer than the ingest log is ever replayed (back to the last snapshot).
const KEEP_ENDED_MS: i64 = 7 * 86_400_000;

/// Suppressions by (scope, entity hash).
type ByEntity = HashMap<(EntityKind, u64), Vec<Arc<Entry>>>;

/// The suppressions. Reads (every event with findings) take a read lock only
/// when there is at least one, and find theirs by (scope, entity hash).
#[derive(Default)]
pub struct Suppressions {
    entries: RwLock<ByEntity>,
    count: AtomicUsize,
}

impl Suppressions {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, ByEntity> {
        self.entries.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, ByEntity> {
        self.entries.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn recount(&self, map: &ByEntity) {
        self.count.store(map.values().map(Vec::len).sum(), Ordering::Release);
    }

    /// Put `s` in force (`hash` is its key's entity hash); one with the same id is replaced.
    ///
    /// # Errors
    /// When [`MAX_SUPPRESSIONS`] are already kept.
    pub fn insert(&self, s: Suppression, hash: u64) -> Result<(), usize> {
        let mut map = self.write();
        for v in map.values_mut() {
            v.retain(|e| e.suppression.id != s.id);
        }
        map.retain(|_, v| !v.is_empty());
        let kept: usize = map.values().map(Vec::len).sum();
        if kept >= MAX_SUPPRESSIONS {
            return Err(kept);
        }
        let entry = Entry { id: Arc::from(s.id.as_str()), hits: AtomicU64::new(0), ended_at_ms: AtomicI64::new(i64::MAX), suppression: s };
        map.entry((entry.suppression.scope, hash)).or_default().push(Arc::new(entry));
        self.recount(&map);
        Ok(())
    }

    /// End one early, at `now`; what it was, if it was in force.
    pub fn end(&self, id: &str, now: i64) -> Option<Suppression> {
        let map = self.read();
        let e = map.values().flatten().find(|e| e.suppression.id == id && e.in_force_at(now))?;
        e.ended_at_ms.store(now, Ordering::Relaxed);
        Some(e.suppression.clone())
    }

    /// Those in force at `now`, newest first.
    pub fn list(&self, now: i64) -> Vec<Listed> {
        self.expire(now);
        let mut out: Vec<Listed> =
            self.read().values().flatten().filter(|e| e.in_force_at(now)).map(|e| Listed { suppression: e.suppression.clone(), hits: e.hits.load(Ordering::Relaxed) }).collect();
        out.sort_by(|a, b| b.suppression.set_at_ms.cmp(&a.suppression.set_at_ms).then_with(|| a.suppression.id.cmp(&b.suppression.id)));
        out
    }

    /// Forget those that ended or expired longer ago than any replay reaches.
    pub fn expire(&self, now: i64) {
        let gone = |e: &Entry| e.suppression.expires_at_ms.min(e.ended_at_ms.load(Ordering::Relaxed)) <= now - KEEP_ENDED_MS;
        if self.count.load(Ordering::Acquire) == 0 || !self.read().values().flatten().any(|e| gone(e)) {
            return;
        }
        let mut map = self.write();
        for v in map.values_mut() {
            v.retain(|e| !gone(e));
        }
        map.retain(|_, v| !v.is_empty());
        self.recount(&map);
    }

    /// Take out the findings a suppression in force at `now` covers (the
    /// finding's entity, as this event names it, and its rule). `now` is the
    /// wall clock the event is decided against: for an event read back from
    /// the ingest log, the one it was logged at.
    pub fn filter(&self, keys: &EntityKeys, findings: &mut Vec<Finding>, now: i64, swallowed: &mut Vec<Swallowed>) {
        if self.count.load(Ordering::Acquire) == 0 || findings.is_empty() {
            return;
        }
        let map = self.read();
        findings.retain(|f| {
            let Some(kind) = f.entity else { return true };
            let Some(hash) = keys.get(kind) else { return true };
            let Some(entries) = map.get(&(kind, hash)) else { return true };
            match entries.iter().find(|e| e.in_force_at(now) && e.suppression.covers_rule(&f.id)) {
                Some(e) => {
                    e.hits.fetch_add(1, Ordering::Relaxed);
                    swallowed.push(Swallowed { detector: f.detector.clone(), rule: f.id.clone(), severity: f.severity, suppression: e.id.clone() });
                    false
                }
                None => true,
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haechi_features::{Action, Mode, Severity};

    fn finding(rule: &str, entity: EntityKind) -> Finding {
        Finding {
            detector: Arc::from("rules"),
            id: Arc::from(rule),
            version: None,
            severity: Severity::High,
            action: Action::Block { ttl_s: 3600 },
            mode: Mode::Enforce,
            score: 1.0,
            entity: Some(entity),
            evidence: Vec::new(),
            note: None,
        }
    }

    fn suppression(id: &str, rule: Option<&str>, expires_at_ms: i64) -> Suppression {
        Suppression {
            id: id.into(),
            scope: EntityKind::Ip,
            key: "203.0.113.9".into(),
            rule: rule.map(str::to_owned),
            reason: "carrier NAT".into(),
            set_by: "analyst:kim".into(),
            set_at_ms: 0,
            expires_at_ms,
        }
    }

    #[test]
    fn a_rule_snooze_drops_that_rule_on_that_entity_only_until_it_expires() {
        let s = Suppressions::default();
        s.insert(suppression("s1", Some("ip_many_identities"), 1_000), 42).unwrap();
        let mut keys = EntityKeys::default();
        keys.set(EntityKind::Ip, 42);
        keys.set(EntityKind::Customer, 7);
        let mut f = vec![finding("ip_many_identities", EntityKind::Ip), finding("bot", EntityKind::Ip), finding("ip_many_identities", EntityKind::Customer)];
        let mut swallowed = Vec::new();
        s.filter(&keys, &mut f, 999, &mut swallowed);
        assert_eq!(swallowed.iter().map(|w| (&*w.rule, &*w.suppression)).collect::<Vec<_>>(), [("ip_many_identities", "s1")]);
        assert_eq!(f.iter().map(|f| (&*f.id, f.entity.unwrap())).collect::<Vec<_>>(), vec![("bot", EntityKind::Ip), ("ip_many_identities", EntityKind::Customer)]);
        // Another address is not covered.
        keys.set(EntityKind::Ip, 43);
        let mut other = vec![finding("ip_many_identities", EntityKind::Ip)];
        s.filter(&keys, &mut other, 999, &mut swallowed);
        assert_eq!(other.len(), 1);
        // Expired: covers nothing, and is gone from the list; nor did it cover anything before it was set.
        keys.set(EntityKind::Ip, 42);
        let mut late = vec![finding("ip_many_identities", EntityKind::Ip)];
        s.filter(&keys, &mut late, 1_000, &mut swallowed);
        let mut early = vec![finding("ip_many_identities", EntityKind::Ip)];
        s.filter(&keys, &mut early, -1, &mut swallowed);
        assert_eq!((late.len(), early.len(), swallowed.len()), (1, 1, 1));
        assert_eq!(s.list(999).len(), 1);
        assert_eq!(s.list(999)[0].hits, 1);
        assert!(s.list(1_000).is_empty());
    }

    #[test]
    fn an_entity_snooze_covers_every_rule_and_removal_ends_it() {
        let s = Suppressions::default();
        s.insert(suppression("s1", None, i64::MAX), 42).unwrap();
        let mut keys = EntityKeys::default();
        keys.set(EntityKind::Ip, 42);
        let mut f = vec![finding("a", EntityKind::Ip), finding("b", EntityKind::Ip)];
        let mut swallowed = Vec::new();
        s.filter(&keys, &mut f, 5, &mut swallowed);
        assert!(f.is_empty());
        assert_eq!(s.end("s1", 10).map(|x| x.id), Some("s1".into()));
        assert!(s.end("s1", 11).is_none(), "ended once");
        assert!(s.list(11).is_empty());
        let mut f = vec![finding("a", EntityKind::Ip)];
        s.filter(&keys, &mut f, 10, &mut swallowed);
        assert_eq!(f.len(), 1, "not after it ended");
        // An event logged while it ran, read back after a restart, is judged as it was live.
        let mut logged = vec![finding("a", EntityKind::Ip)];
        s.filter(&keys, &mut logged, 9, &mut swallowed);
        assert!(logged.is_empty());
    }

    #[test]
    fn blocks_covered_are_those_rules_and_models_set() {
        let rule = suppression("s1", Some("ip_many_identities"), 1);
        assert!(rule.covers_block("rules:ip_many_identities"));
        assert!(!rule.covers_block("rules:bot"));
        assert!(!rule.covers_block("analyst:kim"));
        let all = suppression("s2", None, 1);
        assert!(all.covers_block("model:iforest") && all.covers_block("rules:bot"));
        assert!(!all.covers_block("analyst:kim") && !all.covers_block("rate_limit:ip") && !all.covers_block("garbage"));
    }
}
