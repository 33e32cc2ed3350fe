//! Suppressions: an analyst's "this entity is fine for a while", for every
//! rule or for one ("snooze `ip_many_identities` for this NAT exit for 7 days").
//!
//! A suppressed finding is dropped before the decision, so it neither
//! challenges, blocks nor raises an alert; each suppression counts what it
//! swallowed so that an analyst can see a snooze that hides too much. They
//! expire by themselves. The service records every change as a staff action
//! and rebuilds the list from the records at start, the same path that
//! restores alert judgements.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
    hash: u64,
    hits: AtomicU64,
}

/// A suppression as listed: with how many findings it has swallowed since start.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub suppression: Suppression,
    pub hits: u64,
}

/// The suppressions in force. Reads (every event) take a read lock only when
/// there is at least one.
#[derive(Default)]
pub struct Suppressions {
    entries: RwLock<Vec<Arc<Entry>>>,
    count: AtomicUsize,
}

impl Suppressions {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Vec<Arc<Entry>>> {
        self.entries.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<Entry>>> {
        self.entries.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Put `s` in force (`hash` is its key's entity hash); one with the same id is replaced.
    pub fn insert(&self, s: Suppression, hash: u64) {
        let mut v = self.write();
        v.retain(|e| e.suppression.id != s.id);
        v.push(Arc::new(Entry { suppression: s, hash, hits: AtomicU64::new(0) }));
        self.count.store(v.len(), Ordering::Release);
    }

    /// Take one out early; what it was, if it was there.
    pub fn remove(&self, id: &str) -> Option<Suppression> {
        let mut v = self.write();
        let at = v.iter().position(|e| e.suppression.id == id)?;
        let e = v.remove(at);
        self.count.store(v.len(), Ordering::Release);
        Some(e.suppression.clone())
    }

    /// Those in force at `now`, newest first; the expired are dropped.
    pub fn list(&self, now: i64) -> Vec<Listed> {
        self.expire(now);
        let mut out: Vec<Listed> = self.read().iter().map(|e| Listed { suppression: e.suppression.clone(), hits: e.hits.load(Ordering::Relaxed) }).collect();
        out.sort_by(|a, b| b.suppression.set_at_ms.cmp(&a.suppression.set_at_ms).then_with(|| a.suppression.id.cmp(&b.suppression.id)));
        out
    }

    /// Drop the expired.
    pub fn expire(&self, now: i64) {
        if self.count.load(Ordering::Acquire) == 0 || !self.read().iter().any(|e| e.suppression.expires_at_ms <= now) {
            return;
        }
        let mut v = self.write();
        v.retain(|e| e.suppression.expires_at_ms > now);
        self.count.store(v.len(), Ordering::Release);
    }

    /// Drop the findings a suppression in force covers (the finding's entity,
    /// as this event names it, and its rule); returns how many were dropped.
    pub fn filter(&self, keys: &EntityKeys, findings: &mut Vec<Finding>, now: i64) -> usize {
        if self.count.load(Ordering::Acquire) == 0 || findings.is_empty() {
            return 0;
        }
        let entries = self.read();
        let before = findings.len();
        findings.retain(|f| {
            let Some(kind) = f.entity else { return true };
            let Some(hash) = keys.get(kind) else { return true };
            let hit = entries.iter().find(|e| e.suppression.scope == kind && e.hash == hash && e.suppression.expires_at_ms > now && e.suppression.covers_rule(&f.id));
            if let Some(e) = hit {
                e.hits.fetch_add(1, Ordering::Relaxed);
            }
            hit.is_none()
        });
        before - findings.len()
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
        s.insert(suppression("s1", Some("ip_many_identities"), 1_000), 42);
        let mut keys = EntityKeys::default();
        keys.set(EntityKind::Ip, 42);
        keys.set(EntityKind::Customer, 7);
        let mut f = vec![finding("ip_many_identities", EntityKind::Ip), finding("bot", EntityKind::Ip), finding("ip_many_identities", EntityKind::Customer)];
        assert_eq!(s.filter(&keys, &mut f, 999), 1);
        assert_eq!(f.iter().map(|f| (&*f.id, f.entity.unwrap())).collect::<Vec<_>>(), vec![("bot", EntityKind::Ip), ("ip_many_identities", EntityKind::Customer)]);
        // Another address is not covered.
        keys.set(EntityKind::Ip, 43);
        let mut other = vec![finding("ip_many_identities", EntityKind::Ip)];
        assert_eq!(s.filter(&keys, &mut other, 999), 0);
        // Expired: covers nothing, and is gone from the list.
        keys.set(EntityKind::Ip, 42);
        let mut late = vec![finding("ip_many_identities", EntityKind::Ip)];
        assert_eq!(s.filter(&keys, &mut late, 1_000), 0);
        assert_eq!(s.list(999).len(), 1);
        assert_eq!(s.list(999)[0].hits, 1);
        assert!(s.list(1_000).is_empty());
    }

    #[test]
    fn an_entity_snooze_covers_every_rule_and_removal_ends_it() {
        let s = Suppressions::default();
        s.insert(suppression("s1", None, i64::MAX), 42);
        let mut keys = EntityKeys::default();
        keys.set(EntityKind::Ip, 42);
        let mut f = vec![finding("a", EntityKind::Ip), finding("b", EntityKind::Ip)];
        assert_eq!(s.filter(&keys, &mut f, 0), 2);
        assert_eq!(s.remove("s1").map(|x| x.id), Some("s1".into()));
        assert!(s.remove("s1").is_none());
        let mut f = vec![finding("a", EntityKind::Ip)];
        assert_eq!(s.filter(&keys, &mut f, 0), 0);
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
