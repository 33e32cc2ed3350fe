//! Putting a stream back in event-time order, and holding back a forged
//! future timestamp, for sources that are not already in decision order
//! (a file or stdin; the ingest log is read as it was decided).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use haechi_features::{Error as EventError, Event};
use smallvec::{smallvec, SmallVec};

/// Events a call lets through, in order. Nearly always exactly the one just
/// admitted, which then stays inline: no allocation per event.
pub(crate) type Admitted = SmallVec<[(u64, Event); 1]>;

/// Holds events until the newest event time has passed them by the allowed
/// lateness, and gives them back oldest first. Input is nearly always sorted
/// already, so in-order events queue in a ring without allocating; only the
/// rare out-of-order one goes into a heap, boxed.
#[derive(Default)]
pub(crate) struct ReorderBuffer {
    in_order: VecDeque<(i64, u64, Event)>,
    out_of_order: BinaryHeap<Reverse<(i64, u64, OrderedBox)>>,
}

/// A boxed event that the heap orders only by the (ts, seq) beside it.
struct OrderedBox(Box<Event>);

impl PartialEq for OrderedBox {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for OrderedBox {}
impl PartialOrd for OrderedBox {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for OrderedBox {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl ReorderBuffer {
    pub(crate) fn push(&mut self, seq: u64, event: Event) {
        let ts = event.ts_ms;
        if self.in_order.back().is_none_or(|b| b.0 <= ts) {
            self.in_order.push_back((ts, seq, event));
        } else {
            self.out_of_order.push(Reverse((ts, seq, OrderedBox(Box::new(event)))));
        }
    }

    /// The oldest event at or before `limit` (all of them with `i64::MAX`).
    pub(crate) fn pop_ready(&mut self, limit: i64) -> Option<(u64, Event)> {
        let front = self.in_order.front().map(|f| (f.0, f.1));
        let heap = self.out_of_order.peek().map(|Reverse(h)| (h.0, h.1));
        let take_heap = match (front, heap) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(f), Some(h)) => h < f,
        };
        if take_heap {
            let (ts, _) = heap.expect("peeked");
            if ts > limit {
                return None;
            }
            let Reverse((_, seq, OrderedBox(e))) = self.out_of_order.pop().expect("peeked");
            Some((seq, *e))
        } else {
            let (ts, _) = front?;
            if ts > limit {
                return None;
            }
            self.in_order.pop_front().map(|(_, seq, e)| (seq, e))
        }
    }
}

/// A replay has no wall clock to bound event time, so the stream's own clock
/// does. An event further ahead of it than the allowed skew is held back, and
/// the events after it decide what it was:
/// - another event also ahead of the clock, with nothing ordinary between: the
///   stream really moved on (a quiet night, a sparse history file), and the
///   held events go through in order;
/// - ordinary events that bring the clock within the skew of it: it was only
///   a little early, and goes through;
/// - [`OUTLIER_AFTER`] ordinary events that leave it far ahead: the stream
///   carries on at its old time, so the jump was one forged or broken
///   timestamp. It is rejected as `future_ts` rather than making every later
///   event "late";
/// - the end of the input: nothing contradicts it, and it goes through (after
///   everything else, where it can blind nothing).
pub(crate) struct FutureGuard {
    skew_ms: i64,
    /// The very first event, until the second says whether it can set the clock.
    first: Option<(u64, Event)>,
    clock: Option<i64>,
    held: Vec<(u64, Event)>,
    ordinary_since_held: u32,
}

/// Ordinary events after a held jump that make it an outlier.
const OUTLIER_AFTER: u32 = 2;

impl FutureGuard {
    pub(crate) fn new(skew_ms: i64) -> FutureGuard {
        FutureGuard { skew_ms, first: None, clock: None, held: Vec::new(), ordinary_since_held: 0 }
    }

    /// Admit an event: what may go on now (in order), and what is refused.
    #[allow(clippy::type_complexity)]
    pub(crate) fn admit(&mut self, seq: u64, event: Event) -> (Admitted, Vec<(u64, Event)>) {
        // The first event cannot set the clock alone: a forged first line
        // would make the whole stream late.
        let Some(clock) = self.clock else {
            let Some((fseq, first)) = self.first.take() else {
                self.first = Some((seq, event));
                return (Admitted::new(), Vec::new());
            };
            if event.ts_ms < first.ts_ms - self.skew_ms {
                // The first line is far ahead of the second: hold it like any jump.
                self.clock = Some(event.ts_ms);
                self.held.push((fseq, first));
                self.ordinary_since_held = 1;
                return (smallvec![(seq, event)], Vec::new());
            }
            if event.ts_ms > first.ts_ms + self.skew_ms {
                // The second is the jump: the first sets the clock, the second waits like any jump.
                self.clock = Some(first.ts_ms);
                self.held.push((seq, event));
                self.ordinary_since_held = 0;
                return (smallvec![(fseq, first)], Vec::new());
            }
            self.clock = Some(first.ts_ms.max(event.ts_ms));
            return (smallvec![(fseq, first), (seq, event)], Vec::new());
        };
        if event.ts_ms <= clock + self.skew_ms {
            let clock = clock.max(event.ts_ms);
            self.clock = Some(clock);
            let mut admitted: Admitted = smallvec![(seq, event)];
            let mut refused = Vec::new();
            if !self.held.is_empty() {
                // The clock moved: held events it has caught up with go through.
                let (near, far): (Vec<_>, Vec<_>) = std::mem::take(&mut self.held).into_iter().partition(|(_, e)| e.ts_ms <= clock + self.skew_ms);
                admitted.extend(near);
                self.held = far;
                if self.held.is_empty() {
                    self.ordinary_since_held = 0;
                } else {
                    self.ordinary_since_held += 1;
                    if self.ordinary_since_held >= OUTLIER_AFTER {
                        refused = std::mem::take(&mut self.held);
                        self.ordinary_since_held = 0;
                    }
                }
            }
            return (admitted, refused);
        }
        let moved_on = !self.held.is_empty() && self.ordinary_since_held == 0;
        self.held.push((seq, event));
        self.ordinary_since_held = 0;
        if !moved_on {
            return (Admitted::new(), Vec::new());
        }
        // Believe the earliest held time, then let through whatever fits the new clock.
        self.held.sort_by_key(|(s, e)| (e.ts_ms, *s));
        let first = self.held[0].1.ts_ms;
        self.clock = Some(first);
        let mut admitted = Admitted::new();
        let mut keep = Vec::new();
        for (s, e) in std::mem::take(&mut self.held) {
            let clock = self.clock.unwrap_or(first);
            if e.ts_ms <= clock + self.skew_ms {
                self.clock = Some(clock.max(e.ts_ms));
                admitted.push((s, e));
            } else {
                keep.push((s, e));
            }
        }
        self.held = keep;
        (admitted, Vec::new())
    }

    /// At the end of the input: held events nothing contradicted go through;
    /// the rest are refused.
    #[allow(clippy::type_complexity)]
    pub(crate) fn finish(&mut self) -> (Vec<(u64, Event)>, Vec<(u64, Event)>) {
        let mut held = std::mem::take(&mut self.held);
        held.extend(self.first.take());
        if self.ordinary_since_held == 0 {
            (held, Vec::new())
        } else {
            (Vec::new(), held)
        }
    }

    pub(crate) fn refusal(&self, ts_ms: i64) -> EventError {
        let ahead = ts_ms - self.clock.unwrap_or(ts_ms);
        EventError::FutureTimestamp { ahead_s: ahead / 1000, skew_s: self.skew_ms / 1000, clock: "stream" }
    }
}
