//! Remembering event ids so that a repeated id is processed once.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use dashmap::DashMap;
use nohash_hasher::BuildNoHashHasher;
use haechi_features::{id_hash, HashKey};
use serde::{Deserialize, Serialize};

/// The dedup memory as a snapshot keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DedupState {
    seen: Vec<(u64, i64)>,
    newest_ms: i64,
    next_sweep_ms: i64,
}

/// Event ids seen within a window of event time. Memory is bounded by the
/// events of one window: ids older than that are swept.
pub struct Dedup {
    window_ms: i64,
    /// Ids are stored under a keyed hash: chosen ids can neither collide
    /// with another's (dropping it as a repeat) nor pile into one bucket.
    key: HashKey,
    seen: DashMap<u64, i64, BuildNoHashHasher<u64>>,
    next_sweep_ms: AtomicI64,
    newest_ms: AtomicI64,
    /// Sweep inside `first_time` (replay) or only when `sweep_due` is called
    /// from another thread (the service: no request waits for a sweep).
    inline_sweeps: AtomicBool,
}

impl Dedup {
    /// Remember ids for `window_ms` of event time.
    pub fn new(window_ms: i64, key: HashKey) -> Dedup {
        Dedup { window_ms, key, seen: DashMap::with_hasher(BuildNoHashHasher::default()), next_sweep_ms: AtomicI64::new(i64::MIN), newest_ms: AtomicI64::new(i64::MIN), inline_sweeps: AtomicBool::new(true) }
    }

    /// True if `event_id` is new (and remember it); false for a repeat.
    /// An id is remembered for `window_ms` of stream time after it arrived:
    /// a late event is stamped with the newest time seen, not its own, so it
    /// too is remembered for a whole window.
    pub fn first_time(&self, event_id: &str, ts_ms: i64) -> bool {
        let key = id_hash(self.key, event_id.as_bytes());
        let ts_ms = self.newest_ms.fetch_max(ts_ms, Ordering::Relaxed).max(ts_ms);
        let fresh = match self.seen.entry(key) {
            // Older than the window: forgotten, whether or not a sweep has
            // reached it yet, so that sweeping off the event path changes nothing.
            dashmap::Entry::Occupied(mut o) if self.forgotten(*o.get(), ts_ms) => {
                o.insert(ts_ms);
                true
            }
            dashmap::Entry::Occupied(_) => false,
            dashmap::Entry::Vacant(v) => {
                v.insert(ts_ms);
                true
            }
        };
        if self.inline_sweeps.load(Ordering::Relaxed) {
            self.sweep_due();
        }
        fresh
    }

    /// An id stamped at `stamped_ms` is forgotten once the newest time is a
    /// window past it: a sweep drops it, and `first_time` takes it as new.
    /// (Saturating: before the first event the newest time is `i64::MIN`.)
    fn forgotten(&self, stamped_ms: i64, newest_ms: i64) -> bool {
        stamped_ms < newest_ms.saturating_sub(self.window_ms)
    }

    /// Is `event_id` remembered? (Remembers nothing.)
    pub fn seen(&self, event_id: &str) -> bool {
        self.seen.contains_key(&id_hash(self.key, event_id.as_bytes()))
    }

    /// Stop sweeping inside `first_time`; the caller runs [`Dedup::sweep_due`].
    pub fn sweep_in_background(&self) {
        self.inline_sweeps.store(false, Ordering::Relaxed);
    }

    /// Forget ids older than the window, if a quarter window of stream time
    /// has passed since the last sweep.
    pub fn sweep_due(&self) {
        let newest = self.newest_ms.load(Ordering::Relaxed);
        let next = self.next_sweep_ms.load(Ordering::Relaxed);
        if newest >= next && self.next_sweep_ms.compare_exchange(next, newest + self.window_ms / 4, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            self.seen.retain(|_, t| !self.forgotten(*t, newest));
        }
    }

    /// Copy the ids remembered now, for a snapshot (taken while no event is processed).
    pub fn export_state(&self) -> DedupState {
        DedupState {
            seen: self.seen.iter().map(|e| (*e.key(), *e.value())).collect(),
            newest_ms: self.newest_ms.load(Ordering::Relaxed),
            next_sweep_ms: self.next_sweep_ms.load(Ordering::Relaxed),
        }
    }

    /// Remember exactly what a snapshot remembered. The ids are keyed hashes:
    /// the caller checks that the snapshot was made under this key (the
    /// feature store's fingerprint does).
    pub fn restore_state(&self, state: DedupState) {
        self.seen.clear();
        for (k, t) in state.seen {
            self.seen.insert(k, t);
        }
        self.newest_ms.store(state.newest_ms, Ordering::Relaxed);
        self.next_sweep_ms.store(state.next_sweep_ms, Ordering::Relaxed);
    }

    /// Ids remembered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.len()
    }

}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_caught_and_old_ids_forgotten() {
        let d = Dedup::new(1000, HashKey::from_seed(5));
        assert!(d.first_time("a", 0));
        assert!(!d.first_time("a", 10));
        assert!(d.first_time("b", 10));
        for i in 0..100 {
            d.first_time(&format!("x{i}"), 5000 + i);
        }
        assert!(d.len() <= 101, "old ids swept, {} left", d.len());
    }

    #[test]
    fn in_the_background_only_an_explicit_sweep_forgets() {
        let d = Dedup::new(1000, HashKey::from_seed(5));
        d.sweep_in_background();
        assert!(d.first_time("a", 0));
        for i in 0..100 {
            d.first_time(&format!("x{i}"), 5000 + i);
        }
        assert_eq!(d.len(), 101);
        d.sweep_due();
        assert_eq!(d.len(), 100, "the id from five windows ago is forgotten");
        assert!(!d.first_time("x7", 5200), "a recent id is still a repeat");
    }

    #[test]
    fn an_id_older_than_the_window_is_new_again_swept_or_not() {
        for sweep in [false, true] {
            let d = Dedup::new(1000, HashKey::from_seed(5));
            d.sweep_in_background();
            assert!(d.first_time("a", 0));
            assert!(d.first_time("b", 1500));
            if sweep {
                d.sweep_due();
            }
            assert!(d.first_time("a", 1600), "a window and more after it, the id is forgotten (swept: {sweep})");
            assert!(!d.first_time("a", 1700), "and remembered again from then on");
            assert!(!d.first_time("b", 1800), "an id within the window is still a repeat");
        }
    }

    #[test]
    fn a_sweep_before_the_first_event_is_harmless() {
        // The service's housekeeping loop can tick before any event arrives.
        let d = Dedup::new(600_000, HashKey::from_seed(5));
        d.sweep_in_background();
        d.sweep_due();
        assert!(d.first_time("a", 1_000));
        d.sweep_due();
        assert!(!d.first_time("a", 2_000));
    }
}
