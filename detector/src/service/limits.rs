//! Keyed rate limiters (governor), one per scope: attempts per IP, device and
//! customer beyond their quota become a challenge or a block.

use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use haechi_features::{EntityKeys, EntityKind};
use serde::{Deserialize, Serialize};

/// What happens past a quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverLimit {
    Challenge,
    Block,
}

/// Quotas, per minute; 0 switches a limiter off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitConfig {
    pub ip_per_minute: u32,
    pub device_per_minute: u32,
    pub customer_per_minute: u32,
    pub over_limit: OverLimit,
    /// TTL of a block set by a limiter, seconds.
    pub block_ttl_s: u32,
}

impl Default for LimitConfig {
    fn default() -> Self {
        // A carrier NAT address carries hundreds of people: its quota is generous.
        LimitConfig { ip_per_minute: 1200, device_per_minute: 120, customer_per_minute: 60, over_limit: OverLimit::Challenge, block_ttl_s: 600 }
    }
}

/// The limiters.
pub struct Limiters {
    by_scope: Vec<(EntityKind, DefaultKeyedRateLimiter<u64>)>,
    pub config: LimitConfig,
}

impl Limiters {
    pub fn new(config: LimitConfig) -> Limiters {
        let mut by_scope = Vec::new();
        for (kind, per_minute) in [
            (EntityKind::Ip, config.ip_per_minute),
            (EntityKind::Device, config.device_per_minute),
            (EntityKind::Customer, config.customer_per_minute),
        ] {
            if let Some(n) = NonZeroU32::new(per_minute) {
                by_scope.push((kind, RateLimiter::keyed(Quota::per_minute(n))));
            }
        }
        Limiters { by_scope, config }
    }

    /// The first scope whose quota this event exceeds.
    pub fn check(&self, keys: &EntityKeys) -> Option<EntityKind> {
        let mut over = None;
        for (kind, limiter) in &self.by_scope {
            if let Some(h) = keys.get(*kind) {
                // Every limiter counts the attempt, even once one has refused.
                if limiter.check_key(&h).is_err() && over.is_none() {
                    over = Some(*kind);
                }
            }
        }
        over
    }

    /// Forget keys whose buckets are full again: memory stays bounded under a spray.
    pub fn sweep(&self) {
        for (_, l) in &self.by_scope {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excess_attempts_are_caught_per_key() {
        let l = Limiters::new(LimitConfig { customer_per_minute: 3, ..Default::default() });
        let seed = haechi_features::FeatureConfig::default().hash_seed;
        let ev = |c: &str| haechi_features::Event::parse(format!(r#"{{"event_id":"e","ts":"2026-11-02T10:00:00+09:00","step":"otp","result":"failure","customer_id":"{c}"}}"#).as_bytes(), 4096).unwrap();
        let a = EntityKeys::of(&ev("a"), seed);
        let b = EntityKeys::of(&ev("b"), seed);
        for _ in 0..3 {
            assert_eq!(l.check(&a), None);
        }
        assert_eq!(l.check(&a), Some(EntityKind::Customer));
        assert_eq!(l.check(&b), None, "another customer has their own quota");
    }
}
