//! Event-time windows with constant memory.
//!
//! A window of N buckets, queried at time `now`, holds the events whose bucket
//! lies in `[bucket(now) - N + 1, bucket(now)]`. Queries use
//! `now = max(event time, newest time the entity has seen)`, so a late event
//! reads what is known so far of the window that is current.
//!
//! [`Counts`] keeps up to [`SPARSE_EVENTS`] raw timestamps inline and only
//! grows rings of buckets when an entity is busier than that: the millions of
//! one-event keys an attacker sprays cost a few dozen bytes each.
//! [`DistinctSet`] keeps exact (hash, last seen) pairs for small sets and turns
//! into a timestamped linear-counting sketch past [`EXACT_DISTINCT`].

use serde::{Deserialize, Serialize};
use serde_big_array::BigArray;

use crate::config::{WindowSpec, Windows, LONG_BUCKETS, MID_BUCKETS, SHORT_BUCKETS};

/// Events an entity keeps as raw timestamps before it grows bucket rings.
pub const SPARSE_EVENTS: usize = 6;
/// Distinct items a set keeps exactly before it becomes a sketch.
pub const EXACT_DISTINCT: usize = 16;
const SKETCH_REGISTERS: usize = 64;

/// The first second of each window (short, mid, long) that ends at `now`.
#[inline]
pub fn cutoffs(w: &Windows, now: u32) -> [u32; 3] {
    [
        w.short.first_bucket(now) * w.short.width_s,
        w.mid.first_bucket(now) * w.mid.width_s,
        w.long.first_bucket(now) * w.long.width_s,
    ]
}

/// A ring of N buckets; `head` is the newest bucket index it has seen.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(serialize = "T: Serialize", deserialize = "T: Deserialize<'de> + Default + Copy"))]
pub struct Ring<T, const N: usize> {
    head: u32,
    #[serde(with = "BigArray")]
    slots: [T; N],
}

impl<T: Copy + Default + std::ops::AddAssign, const N: usize> Default for Ring<T, N> {
    fn default() -> Self {
        Ring { head: 0, slots: [T::default(); N] }
    }
}

impl<T: Copy + Default + std::ops::AddAssign, const N: usize> Ring<T, N> {
    /// Add `value` to `bucket`. A bucket older than the ring holds is dropped;
    /// the store's lateness check guarantees that never happens to an accepted event.
    #[inline]
    pub fn add(&mut self, bucket: u32, value: T) {
        let n = N as u32;
        if bucket > self.head {
            let advance = (bucket - self.head).min(n);
            for i in 1..=advance {
                self.slots[((self.head + i) % n) as usize] = T::default();
            }
            self.head = bucket;
        } else if self.head - bucket >= n {
            return;
        }
        self.slots[(bucket % n) as usize] += value;
    }

    /// Sum of the buckets in the window that ends at bucket `now` (`now >= head`).
    #[inline]
    pub fn sum(&self, now: u32, mut acc: impl FnMut(T)) {
        let n = N as u32;
        let first = (now + 1).saturating_sub(n).max((self.head + 1).saturating_sub(n));
        if first > self.head {
            return;
        }
        for b in first..=self.head {
            acc(self.slots[(b % n) as usize]);
        }
    }
}

/// Events and failures of one bucket. u16 saturates at 65,535 events per
/// bucket, far above any threshold a rule would set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub events: u16,
    pub failures: u16,
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Tally) {
        self.events = self.events.saturating_add(o.events);
        self.failures = self.failures.saturating_add(o.failures);
    }
}

/// One ring per window (short, mid, long): a windowed quantity in buckets.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound(serialize = "T: Serialize", deserialize = "T: Deserialize<'de> + Default + Copy"))]
pub struct Rings<T> {
    short: Ring<T, SHORT_BUCKETS>,
    mid: Ring<T, MID_BUCKETS>,
    long: Ring<T, LONG_BUCKETS>,
}

impl<T: Copy + Default + std::ops::AddAssign> Default for Rings<T> {
    fn default() -> Self {
        Rings { short: Ring::default(), mid: Ring::default(), long: Ring::default() }
    }
}

impl<T: Copy + Default + std::ops::AddAssign> Rings<T> {
    /// Add `value` at time `t` (seconds) to every window.
    #[inline]
    pub fn add(&mut self, w: &Windows, t: u32, value: T) {
        self.short.add(w.short.bucket(t), value);
        self.mid.add(w.mid.bucket(t), value);
        self.long.add(w.long.bucket(t), value);
    }

    /// Fold each window's buckets at `now` into an accumulator of the
    /// caller's choosing (wider than a bucket, so sums do not saturate early).
    #[inline]
    pub fn fold<A: Default>(&self, w: &Windows, now: u32, mut f: impl FnMut(&mut A, T)) -> [A; 3] {
        let mut out: [A; 3] = Default::default();
        self.short.sum(w.short.bucket(now), |v| f(&mut out[0], v));
        self.mid.sum(w.mid.bucket(now), |v| f(&mut out[1], v));
        self.long.sum(w.long.bucket(now), |v| f(&mut out[2], v));
        out
    }
}

type DenseCounts = Rings<Tally>;

/// Event and failure counts over the three windows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counts {
    sparse_ts: [u32; SPARSE_EVENTS],
    sparse_len: u8,
    sparse_failures: u8,
    dense: Option<Box<DenseCounts>>,
}

/// Counts read at one moment: `[short, mid, long]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowCounts {
    pub events: [u32; 3],
    pub failures: [u32; 3],
}

impl Counts {
    /// Record one event at `t` (seconds).
    pub fn add(&mut self, w: &Windows, t: u32, failure: bool) {
        if let Some(d) = &mut self.dense {
            d.add(w, t, Tally { events: 1, failures: u16::from(failure) });
            return;
        }
        if usize::from(self.sparse_len) == SPARSE_EVENTS {
            self.drop_expired(w, t);
        }
        if usize::from(self.sparse_len) == SPARSE_EVENTS {
            self.promote(w);
            return self.add(w, t, failure);
        }
        let i = self.sparse_len;
        self.sparse_ts[usize::from(i)] = t;
        if failure {
            self.sparse_failures |= 1 << i;
        }
        self.sparse_len += 1;
    }

    /// Forget raw timestamps that no window can see any more.
    fn drop_expired(&mut self, w: &Windows, t: u32) {
        let newest = self.sparse_ts[..usize::from(self.sparse_len)].iter().copied().max().unwrap_or(0).max(t);
        let first = w.long.first_bucket(newest);
        let (mut kept, mut fails) = (0u8, 0u8);
        for i in 0..usize::from(self.sparse_len) {
            let ts = self.sparse_ts[i];
            if w.long.bucket(ts) >= first {
                self.sparse_ts[usize::from(kept)] = ts;
                if self.sparse_failures & (1 << i) != 0 {
                    fails |= 1 << kept;
                }
                kept += 1;
            }
        }
        self.sparse_len = kept;
        self.sparse_failures = fails;
    }

    fn promote(&mut self, w: &Windows) {
        let mut d = Box::<DenseCounts>::default();
        for i in 0..usize::from(self.sparse_len) {
            d.add(w, self.sparse_ts[i], Tally { events: 1, failures: u16::from(self.sparse_failures & (1 << i) != 0) });
        }
        self.sparse_len = 0;
        self.sparse_failures = 0;
        self.dense = Some(d);
    }

    /// Counts of the windows ending at `now`.
    pub fn read(&self, w: &Windows, now: u32) -> WindowCounts {
        let mut out = WindowCounts::default();
        if let Some(d) = &self.dense {
            let acc = d.fold(w, now, |a: &mut (u32, u32), t: Tally| {
                a.0 += u32::from(t.events);
                a.1 += u32::from(t.failures);
            });
            for (i, (e, f)) in acc.into_iter().enumerate() {
                out.events[i] = e;
                out.failures[i] = f;
            }
            return out;
        }
        let cutoffs = cutoffs(w, now);
        for i in 0..usize::from(self.sparse_len) {
            let t = self.sparse_ts[i];
            let failed = u32::from(self.sparse_failures & (1 << i) != 0);
            // Events are never after `now`, so the window's start is the only bound.
            for (j, cutoff) in cutoffs.iter().enumerate() {
                let inside = u32::from(t >= *cutoff);
                out.events[j] += inside;
                out.failures[j] += inside * failed;
            }
        }
        out
    }

    /// Bytes on the heap beyond the inline struct.
    pub fn heap_bytes(&self) -> usize {
        self.dense.as_ref().map_or(0, |_| std::mem::size_of::<DenseCounts>())
    }
}

/// A windowed sum of amounts (records touched by a staff member).
pub type Amounts = Rings<u32>;

impl Amounts {
    /// `[short, mid, long]` sums at `now`, saturating.
    pub fn read(&self, w: &Windows, now: u32) -> [u32; 3] {
        self.fold(w, now, |sum: &mut u32, v| *sum = sum.saturating_add(v))
    }
}

/// Distinct items seen in each window: exact while small, a sketch past that.
///
/// Sixteen bytes inline: most entities relate to one item (an IP to the one
/// customer behind it), so the first (item, last seen) pair lives in the
/// struct and only a second item allocates.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct DistinctSet {
    /// The first item and when it was last seen; `seen == 0` means empty.
    head: (u32, u32),
    more: Option<Box<More>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum More {
    /// Further (item hash, last time seen) pairs.
    Exact(Vec<(u32, u32)>),
    /// Linear-counting registers holding the last time any item mapped to them was seen.
    /// Boxed on their own: inline, they would make every `More` (and so
    /// every set with a second item, the common case) a 264-byte allocation.
    Sketch(#[serde(with = "boxed_registers")] Box<[u32; SKETCH_REGISTERS]>),
}

/// The sketch's registers as serde sees them: the array, as before they
/// were boxed, so saved state reads the same.
mod boxed_registers {
    use super::SKETCH_REGISTERS;
    use serde::{Deserializer, Serializer};
    use serde_big_array::BigArray;

    // serde's `with` hands the field itself, a `&Box<_>`.
    #[allow(clippy::borrowed_box)]
    pub fn serialize<S: Serializer>(regs: &Box<[u32; SKETCH_REGISTERS]>, s: S) -> Result<S::Ok, S::Error> {
        BigArray::serialize(&**regs, s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Box<[u32; SKETCH_REGISTERS]>, D::Error> {
        <[u32; SKETCH_REGISTERS] as BigArray<'de, u32>>::deserialize(d).map(Box::new)
    }
}

impl DistinctSet {
    /// Record `item` seen at `t` (seconds, never 0).
    pub fn insert(&mut self, w: &Windows, item: u32, t: u32) {
        let t = t.max(1);
        if let Some(more) = self.more.as_deref_mut() {
            match more {
                More::Sketch(regs) => {
                    let r = &mut regs[register(item)];
                    *r = (*r).max(t);
                    return;
                }
                More::Exact(items) => {
                    if self.head.0 == item {
                        self.head.1 = self.head.1.max(t);
                        return;
                    }
                    if let Some(slot) = items.iter_mut().find(|(h, _)| *h == item) {
                        slot.1 = slot.1.max(t);
                        return;
                    }
                    items.push((item, t));
                    if items.len() < EXACT_DISTINCT {
                        return;
                    }
                    // Full: forget what no window can see, then give up exactness.
                    let newest = items.iter().map(|p| p.1).max().unwrap_or(t).max(self.head.1);
                    let first = w.long.first_bucket(newest);
                    items.retain(|p| w.long.bucket(p.1) >= first);
                    if items.len() < EXACT_DISTINCT {
                        return;
                    }
                    let mut regs = Box::new([0u32; SKETCH_REGISTERS]);
                    for &(h, seen) in items.iter().chain(std::iter::once(&self.head)) {
                        let r = &mut regs[register(h)];
                        *r = (*r).max(seen);
                    }
                    self.head = (0, 0);
                    *more = More::Sketch(regs);
                    return;
                }
            }
        }
        if self.head.1 == 0 || self.head.0 == item {
            self.head = (item, self.head.1.max(t));
        } else {
            self.more = Some(Box::new(More::Exact(vec![(item, t)])));
        }
    }

    /// Distinct items whose last sighting falls in `spec`'s window at `now`.
    pub fn count(&self, spec: &WindowSpec, now: u32) -> u32 {
        let cutoff = spec.first_bucket(now) * spec.width_s;
        self.count_since([cutoff])[0]
    }

    /// Distinct items last seen at or after each of `N` cutoff times (the
    /// first second of each window), in one pass.
    pub fn count_since<const N: usize>(&self, cutoffs: [u32; N]) -> [u32; N] {
        // Empty slots hold 0, below any real cutoff.
        let cut = cutoffs.map(|c| c.max(1));
        let mut out = [0u32; N];
        let mut tally = |seen: u32| {
            for j in 0..N {
                out[j] += u32::from(seen >= cut[j]);
            }
        };
        match self.more.as_deref() {
            None => tally(self.head.1),
            Some(More::Exact(items)) => {
                tally(self.head.1);
                items.iter().for_each(|p| tally(p.1));
            }
            Some(More::Sketch(regs)) => {
                // Branch-free so the compiler can vectorise the 64 compares.
                let mut occ = [0u32; N];
                for &r in regs.iter() {
                    for j in 0..N {
                        occ[j] += u32::from(r >= cut[j]);
                    }
                }
                for j in 0..N {
                    out[j] = LINEAR_COUNT[occ[j] as usize];
                }
            }
        }
        out
    }

    /// True once the set has given up exactness for a sketch.
    pub fn is_sketch(&self) -> bool {
        matches!(self.more.as_deref(), Some(More::Sketch(_)))
    }

    /// Bytes on the heap beyond the inline struct.
    pub fn heap_bytes(&self) -> usize {
        match self.more.as_deref() {
            None => 0,
            Some(More::Exact(items)) => std::mem::size_of::<More>() + items.capacity() * 8,
            Some(More::Sketch(_)) => std::mem::size_of::<More>() + std::mem::size_of::<[u32; SKETCH_REGISTERS]>(),
        }
    }
}

/// Linear counting, m ln(m / empty), by number of occupied registers; a full
/// sketch reports its ceiling, m ln m. Computed once instead of a log per read.
static LINEAR_COUNT: std::sync::LazyLock<[u32; SKETCH_REGISTERS + 1]> = std::sync::LazyLock::new(|| {
    let m = SKETCH_REGISTERS as f64;
    std::array::from_fn(|occupied| {
        let empty = (SKETCH_REGISTERS - occupied).max(1) as f64;
        (m * (m / empty).ln()).round() as u32
    })
});

#[inline]
fn register(item: u32) -> usize {
    // Fibonacci hashing: spreads even poorly mixed items over the registers.
    (item.wrapping_mul(0x9E37_79B1) >> 26) as usize % SKETCH_REGISTERS
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FeatureConfig;
    use proptest::prelude::*;

    fn windows() -> Windows {
        FeatureConfig::default().validate().unwrap()
    }

    /// Events arriving in an order the store would accept: each is at most
    /// `lateness` behind the newest seen so far.
    fn arrivals() -> impl Strategy<Value = Vec<(u32, bool)>> {
        proptest::collection::vec((0u32..4000, 0u32..300, any::<bool>(), any::<bool>()), 1..120).prop_map(|steps| {
            let mut t = 1_700_000_000u32;
            let mut newest = t;
            steps
                .into_iter()
                .map(|(forward, back, late, failure)| {
                    t += forward;
                    newest = newest.max(t);
                    let at = if late { newest - back } else { newest };
                    (at, failure)
                })
                .collect()
        })
    }

    proptest! {
        /// After every event, each window's counts equal a brute-force recount.
        #[test]
        fn counts_match_brute_force(events in arrivals()) {
            let w = windows();
            let mut counts = Counts::default();
            let mut seen: Vec<(u32, bool)> = Vec::new();
            let mut newest = 0;
            for (t, failure) in events {
                counts.add(&w, t, failure);
                seen.push((t, failure));
                newest = newest.max(t);
                // Query at the event's own time, as the store does: now = max(t, newest).
                let now = newest.max(t);
                let got = counts.read(&w, now);
                for (j, spec) in w.all().iter().enumerate() {
                    let events = seen.iter().filter(|(s, _)| spec.contains(*s, now)).count() as u32;
                    let failures = seen.iter().filter(|(s, f)| *f && spec.contains(*s, now)).count() as u32;
                    prop_assert_eq!(got.events[j], events, "events, window {}", spec.label);
                    prop_assert_eq!(got.failures[j], failures, "failures, window {}", spec.label);
                }
            }
        }

        /// Amount rings agree with a brute-force sum.
        #[test]
        fn amounts_match_brute_force(events in arrivals(), amounts in proptest::collection::vec(0u32..500, 120)) {
            let w = windows();
            let mut ring = Amounts::default();
            let mut seen = Vec::new();
            let mut newest = 0;
            for ((t, _), a) in events.into_iter().zip(amounts) {
                ring.add(&w, t, a);
                seen.push((t, a));
                newest = newest.max(t);
                let got = ring.read(&w, newest);
                for (j, spec) in w.all().iter().enumerate() {
                    let want: u32 = seen.iter().filter(|(s, _)| spec.contains(*s, newest)).map(|p| p.1).sum();
                    prop_assert_eq!(got[j], want);
                }
            }
        }

        /// Small distinct sets are exact in every window, whatever the order.
        #[test]
        fn small_distinct_sets_are_exact(events in arrivals(), items in proptest::collection::vec(0u32..12, 120)) {
            let w = windows();
            let mut set = DistinctSet::default();
            let mut seen: Vec<(u32, u32)> = Vec::new();
            let mut newest = 0;
            for ((t, _), item) in events.into_iter().zip(items) {
                let item = item.wrapping_mul(0x9E37_79B9);
                set.insert(&w, item, t);
                seen.push((item, t));
                newest = newest.max(t);
                for spec in w.all() {
                    let mut last: std::collections::HashMap<u32, u32> = Default::default();
                    for &(i, s) in &seen {
                        let e = last.entry(i).or_insert(s);
                        *e = (*e).max(s);
                    }
                    let want = last.values().filter(|&&s| spec.bucket(s) >= spec.first_bucket(newest)).count() as u32;
                    prop_assert_eq!(set.count(&spec, newest), want);
                }
            }
        }
    }

    /// Sixty distinct items, one a second from `t0`: past exactness, a sketch.
    fn sixty_items(w: &Windows, t0: u32) -> DistinctSet {
        let mut set = DistinctSet::default();
        for i in 0..60u32 {
            set.insert(w, (xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes()) >> 32) as u32, t0 + i);
        }
        assert!(set.is_sketch());
        set
    }

    #[test]
    fn large_distinct_sets_stay_bounded_and_close() {
        let w = windows();
        let t0 = 1_700_000_000;
        let set = sixty_items(&w, t0);
        let est = set.count(&w.long, t0 + 60);
        assert!((40..=90).contains(&est), "estimate {est} for 60 distinct");
        // A day later, the items have left every window.
        assert_eq!(set.count(&w.long, t0 + 2 * 86_400), 0);
    }

    #[test]
    fn a_sketch_saves_as_its_bare_registers_and_reads_back_the_same() {
        let w = windows();
        let t0 = 1_700_000_000;
        let set = sixty_items(&w, t0);
        // The shape saved state had before the registers were boxed, byte for byte.
        #[derive(Serialize)]
        struct Unboxed {
            head: (u32, u32),
            more: Option<Box<UnboxedMore>>,
        }
        // The old shape, unboxed as it was: its size is the point.
        #[allow(clippy::large_enum_variant)]
        #[derive(Serialize)]
        enum UnboxedMore {
            #[allow(dead_code)]
            Exact(Vec<(u32, u32)>),
            Sketch(#[serde(with = "BigArray")] [u32; SKETCH_REGISTERS]),
        }
        let Some(More::Sketch(regs)) = set.more.as_deref() else { unreachable!() };
        let unboxed = Unboxed { head: set.head, more: Some(Box::new(UnboxedMore::Sketch(**regs))) };
        assert_eq!(postcard::to_stdvec(&set).unwrap(), postcard::to_stdvec(&unboxed).unwrap(), "snapshot bytes");
        let json = serde_json::to_value(&set).unwrap();
        assert_eq!(json, serde_json::to_value(&unboxed).unwrap());
        let back: DistinctSet = postcard::from_bytes(&postcard::to_stdvec(&unboxed).unwrap()).unwrap();
        assert!(back.is_sketch());
        assert_eq!(back.count(&w.long, t0 + 60), set.count(&w.long, t0 + 60));
        assert_eq!(back.heap_bytes(), set.heap_bytes());
    }

    #[test]
    fn sparse_counts_promote_to_rings_without_changing_answers() {
        let w = windows();
        let mut c = Counts::default();
        for i in 0..(SPARSE_EVENTS as u32 * 3) {
            c.add(&w, 1_700_000_000 + i * 30, i % 3 == 0);
        }
        assert!(c.heap_bytes() > 0);
        let r = c.read(&w, 1_700_000_000 + 17 * 30);
        assert_eq!(r.events[2], 18);
        assert_eq!(r.failures[2], 6);
    }
}
