//! Keyed rate limiters (governor), one per scope: attempts per IP, device and
//! customer beyond their quota become a challenge or a block.
//!
//! The limiters run on a clock the pipeline moves: wall time in the service,
//! event time in a replay. So a backtest rate-limits what the service would.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use governor::clock::FakeRelativeClock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use haechi_features::{EntityKeys, EntityKind};
use nohash_hasher::BuildNoHashHasher;
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

/// Keyed by the entity's hash, which is already a keyed SipHash of its
/// value (`EntityKeys`): hashing it again would only cost time, and nobody
/// without the key can aim keys at one bucket.
type KeyedLimiter = RateLimiter<u64, DashMapStateStore<u64, BuildNoHashHasher<u64>>, FakeRelativeClock, NoOpMiddleware<governor::nanos::Nanos>>;

/// The limiters.
pub struct Limiters {
    by_scope: Vec<(EntityKind, KeyedLimiter)>,
    pub config: LimitConfig,
    clock: FakeRelativeClock,
    /// The time (ms) the clock's zero stands for; `i64::MIN` before the first check.
    origin_ms: AtomicI64,
    /// How far the clock has been moved, ms after the origin.
    advanced_ms: AtomicI64,
}

impl Limiters {
    pub fn new(config: LimitConfig) -> Limiters {
        let clock = FakeRelativeClock::default();
        let mut by_scope = Vec::new();
        for (kind, per_minute) in [
            (EntityKind::Ip, config.ip_per_minute),
            (EntityKind::Device, config.device_per_minute),
            (EntityKind::Customer, config.customer_per_minute),
        ] {
            if let Some(n) = NonZeroU32::new(per_minute) {
                by_scope.push((kind, RateLimiter::dashmap_with_clock_and_hasher(Quota::per_minute(n), clock.clone(), BuildNoHashHasher::default())));
            }
        }
        Limiters { by_scope, config, clock, origin_ms: AtomicI64::new(i64::MIN), advanced_ms: AtomicI64::new(0) }
    }

    /// Move the limiters' clock forward to `now_ms`; it never goes back, so an
    /// out-of-order event is counted at the newest time seen.
    fn advance_to(&self, now_ms: i64) {
        let origin = match self.origin_ms.compare_exchange(i64::MIN, now_ms, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => now_ms,
            Err(o) => o,
        };
        let target = now_ms.saturating_sub(origin);
        // Threads racing here each add the step they won, so the clock ends at the largest target.
        let previous = self.advanced_ms.fetch_max(target, Ordering::Relaxed);
        if target > previous {
            self.clock.advance(Duration::from_millis((target - previous) as u64));
        }
    }

    /// The first scope whose quota this event, at `now_ms`, exceeds.
    pub fn check(&self, keys: &EntityKeys, now_ms: i64) -> Option<EntityKind> {
        if self.by_scope.is_empty() {
            return None;
        }
        self.advance_to(now_ms);
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
        let seed = haechi_features::FeatureConfig::default().validate().unwrap().hash_key;
        let ev = |c: &str| haechi_features::Event::parse(format!(r#"{{"event_id":"e","ts":"2026-11-02T10:00:00+09:00","step":"otp","result":"failure","customer_id":"{c}"}}"#).as_bytes(), 4096).unwrap();
        let a = EntityKeys::of(&ev("a"), seed);
        let b = EntityKeys::of(&ev("b"), seed);
        let t = 1_800_000_000_000;
        for _ in 0..3 {
            assert_eq!(l.check(&a, t), None);
        }
        assert_eq!(l.check(&a, t), Some(EntityKind::Customer));
        assert_eq!(l.check(&b, t), None, "another customer has their own quota");
        // A minute of event time later the quota is back: the clock is the caller's, not the wall's.
        assert_eq!(l.check(&a, t + 60_000), None);
    }
}
