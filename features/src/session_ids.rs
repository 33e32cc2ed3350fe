//! Whether the session ids a pipeline reports span more than one step.
//!
//! The contract does not say what a session id spans. A pipeline may fill it
//! with a request's or one service's id, so that no two steps share one.
//! Every session then holds a single step, and what is read per session
//! (a script's fast steps, its machine-like gaps, the FSC's two methods, a
//! login's later codes) sees nothing. The store watches the ids the traffic
//! carries: when hardly any event names a session an earlier event named, it
//! keys sessions as it does for events that carry no id at all (the device's
//! run of events, [`crate::keys::IMPLIED_SESSION_IDLE_S`]), and goes back to
//! the reported ids once they repeat again.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One session in this many is watched (by its keyed hash, so all of its
/// events or none): the lock is taken for one event in eight.
const WATCH_ONE_IN: u64 = 8;
/// Watched session ids remembered, oldest forgotten first.
const REMEMBERED: usize = 2_048;
/// Watched events per verdict: about 500 events carrying a session id.
const EVENTS_PER_VERDICT: u32 = 64;
/// Below this share of watched events naming a session seen before, the ids
/// are a step's each. Honest traffic with real sessions (a login and its
/// code, an onboarding of six steps) shows a half or more: on tuning worlds
/// 401-470 the lowest share over 64 watched events was 0.57.
const PER_STEP_BELOW: f32 = 0.1;
/// At or above this share the reported ids are trusted again. Between the
/// two, the verdict stands: a mix of the two kinds does not flip it per block.
const SPANNING_FROM: f32 = 0.2;

/// The running verdict on the session ids a stream carries.
#[derive(Debug, Default)]
pub(crate) struct SessionIdGauge {
    watch: Mutex<Watch>,
    per_step: AtomicBool,
}

#[derive(Debug, Default)]
struct Watch {
    seen: HashSet<u64>,
    order: VecDeque<u64>,
    events: u32,
    repeats: u32,
}

/// The gauge as a snapshot keeps it: a restart that replays the log tail
/// must key its sessions as the run before it did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct SessionIdsState {
    /// Watched ids, oldest first.
    remembered: Vec<u64>,
    events: u32,
    repeats: u32,
    per_step: bool,
}

impl SessionIdsState {
    /// # Errors
    /// [`Error::Snapshot`] when no gauge could have written this state.
    pub(crate) fn check(&self) -> Result<()> {
        let distinct = self.remembered.iter().collect::<HashSet<_>>().len();
        if self.remembered.len() > REMEMBERED || distinct != self.remembered.len() || self.events >= EVENTS_PER_VERDICT || self.repeats > self.events {
            return Err(Error::Snapshot(format!(
                "the session-id gauge holds {} ids ({distinct} distinct, at most {REMEMBERED}) and {} repeats in {} events (fewer than {EVENTS_PER_VERDICT})",
                self.remembered.len(),
                self.repeats,
                self.events
            )));
        }
        Ok(())
    }
}

impl SessionIdGauge {
    pub(crate) fn export_state(&self) -> SessionIdsState {
        let w = self.watch.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        SessionIdsState { remembered: w.order.iter().copied().collect(), events: w.events, repeats: w.repeats, per_step: self.per_step() }
    }

    /// # Errors
    /// [`Error::Snapshot`] when the state could not have been written by a gauge ([`SessionIdsState::check`]); nothing changes then.
    pub(crate) fn restore_state(&self, state: &SessionIdsState) -> Result<()> {
        state.check()?;
        let seen: HashSet<u64> = state.remembered.iter().copied().collect();
        let mut w = self.watch.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *w = Watch { seen, order: state.remembered.iter().copied().collect(), events: state.events, repeats: state.repeats };
        self.per_step.store(state.per_step, Ordering::Relaxed);
        Ok(())
    }

    /// Are the reported session ids a step's each? Until the first verdict, no.
    pub(crate) fn per_step(&self) -> bool {
        self.per_step.load(Ordering::Relaxed)
    }

    /// Note an event that carries a session id, by the id's keyed hash.
    pub(crate) fn note(&self, session_hash: u64) {
        if session_hash % WATCH_ONE_IN != 0 {
            return;
        }
        let mut w = self.watch.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if w.seen.contains(&session_hash) {
            w.repeats += 1;
        } else {
            if w.order.len() == REMEMBERED {
                if let Some(oldest) = w.order.pop_front() {
                    w.seen.remove(&oldest);
                }
            }
            w.seen.insert(session_hash);
            w.order.push_back(session_hash);
        }
        w.events += 1;
        if w.events == EVENTS_PER_VERDICT {
            let share = w.repeats as f32 / EVENTS_PER_VERDICT as f32;
            if share < PER_STEP_BELOW {
                self.per_step.store(true, Ordering::Relaxed);
            } else if share >= SPANNING_FROM {
                self.per_step.store(false, Ordering::Relaxed);
            }
            w.events = 0;
            w.repeats = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hashes the gauge watches: multiples of [`WATCH_ONE_IN`].
    fn watched(i: u64) -> u64 {
        i * WATCH_ONE_IN
    }

    #[test]
    fn ids_that_never_repeat_are_a_steps_each_and_repeating_ones_win_back_trust() {
        let gauge = SessionIdGauge::default();
        // Three steps a session: trusted from the start, and after three verdicts.
        for s in 0..u64::from(EVENTS_PER_VERDICT) {
            for _ in 0..3 {
                gauge.note(watched(s));
            }
        }
        assert!(!gauge.per_step());
        // Unwatched hashes change nothing, however many.
        for s in 0..10_000 {
            gauge.note(watched(s) + 1);
        }
        assert!(!gauge.per_step());
        // A fresh id on every event: after one verdict's worth, a step's each.
        for s in 1_000..1_000 + u64::from(EVENTS_PER_VERDICT) {
            gauge.note(watched(s));
        }
        assert!(gauge.per_step());
        // A share between the two bars keeps the verdict: one repeat in six.
        for s in 2_000..2_000 + u64::from(EVENTS_PER_VERDICT) {
            gauge.note(watched(if s % 6 == 0 { s - 1 } else { s }));
        }
        assert!(gauge.per_step());
        // Sessions of two steps again: trusted again.
        for s in 3_000..3_000 + u64::from(EVENTS_PER_VERDICT) / 2 {
            gauge.note(watched(s));
            gauge.note(watched(s));
        }
        assert!(!gauge.per_step());
    }

    #[test]
    fn the_gauge_goes_on_after_a_restart_as_it_would_have() {
        let gauge = SessionIdGauge::default();
        for s in 0..u64::from(EVENTS_PER_VERDICT) + 10 {
            gauge.note(watched(s));
        }
        assert!(gauge.per_step());
        let restored = SessionIdGauge::default();
        restored.restore_state(&postcard::from_bytes(&postcard::to_stdvec(&gauge.export_state()).unwrap()).unwrap()).unwrap();
        assert!(restored.per_step());
        // The same next events give both the same verdict: the ten ids of
        // the open block, repeated, win back trust at its end in both.
        for g in [&gauge, &restored] {
            for s in u64::from(EVENTS_PER_VERDICT)..u64::from(EVENTS_PER_VERDICT) + 10 {
                g.note(watched(s));
            }
            for s in 0..u64::from(EVENTS_PER_VERDICT) - 20 {
                g.note(watched(s % 10));
            }
            assert!(!g.per_step());
        }
        // A state no gauge writes is refused, and changes nothing.
        let mut bad = gauge.export_state();
        bad.remembered.push(bad.remembered[0]);
        assert!(restored.restore_state(&bad).is_err());
        bad = SessionIdsState { events: EVENTS_PER_VERDICT, ..gauge.export_state() };
        assert!(restored.restore_state(&bad).is_err());
        assert!(!restored.per_step());
    }

    #[test]
    fn a_long_stream_of_fresh_ids_keeps_memory_bounded() {
        let gauge = SessionIdGauge::default();
        for s in 0..50_000 {
            gauge.note(watched(s));
        }
        let w = gauge.watch.lock().unwrap();
        assert_eq!((w.seen.len(), w.order.len()), (REMEMBERED, REMEMBERED));
    }
}
