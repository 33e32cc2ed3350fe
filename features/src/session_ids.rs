//! Whether the session ids a pipeline reports span more than one step.
//!
//! The contract does not say what a session id spans. A pipeline may fill it
//! with a request's or one service's id, so that no two steps share one.
//! Every session then holds a single step, and what is read per session
//! (a script's fast steps, its machine-like gaps, a login's later codes)
//! sees nothing. The store watches the ids the traffic carries: when hardly
//! any event names a session an earlier event named, it keys sessions as it
//! does for events that carry no id at all (the device's run of events,
//! [`crate::keys::IMPLIED_SESSION_IDLE_S`]), and goes back to the reported
//! ids once they repeat again.
//!
//! The verdict holds for every client, so an attacker must not be able to
//! buy it. A new id counts only at a step that needs a secret the attacker
//! would have to steal for each id: a successful login (by its customer) or
//! a staff access (by its staff member). A failed login is anyone's to send,
//! and so is a passed ID scan or a code sent to the applicant's own phone,
//! under as many made-up customer ids as one likes. Each customer or staff
//! member brings at most one new id to a verdict, so one account's many
//! logins count once. Any later successful step that names a watched id
//! counts as a repeat. And it takes [`VERDICTS_TO_DISTRUST`] verdicts in a
//! row to stop trusting the ids, one to trust them again: a mistaken flip
//! costs the detection of a stream without session ids, a mistaken trust
//! only the per-session reading of a pipeline that never had it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One session in this many is watched (by its keyed hash, so all of its
/// events or none): the lock is taken for one event in two. With
/// [`VERDICTS_TO_DISTRUST`] verdicts of [`EVENTS_PER_VERDICT`], a stream
/// whose ids are a step's each is seen so after about 400 successful logins.
const WATCH_ONE_IN: u64 = 2;
/// Watched session ids remembered, oldest forgotten first.
const REMEMBERED: usize = 2_048;
/// Watched events per verdict (new ids and repeats).
const EVENTS_PER_VERDICT: u32 = 64;
/// Below this share of watched events naming a session seen before, the ids
/// are a step's each. Honest traffic with real sessions (a login and its
/// code, or its next steps) shows far more.
const PER_STEP_BELOW: f32 = 0.1;
/// At or above this share the reported ids are trusted again. Between the
/// two, the verdict stands: a mix of the two kinds does not flip it per block.
const SPANNING_FROM: f32 = 0.2;
/// Repeats one watched id counts, ever: one account resending one id cannot
/// hold up the share of a stream whose ids are otherwise a step's each.
const REPEATS_PER_ID: u8 = 3;
/// Verdicts in a row below [`PER_STEP_BELOW`] before the ids stop keying sessions.
pub(crate) const VERDICTS_TO_DISTRUST: u8 = 3;

/// The running verdict on the session ids a stream carries.
#[derive(Debug, Default)]
pub(crate) struct SessionIdGauge {
    watch: Mutex<Watch>,
    per_step: AtomicBool,
}

#[derive(Debug, Default)]
struct Watch {
    /// Watched ids, and the repeats each has counted.
    seen: HashMap<u64, u8>,
    order: VecDeque<u64>,
    events: u32,
    repeats: u32,
    /// Clients that brought a new id to this verdict (at most one each).
    clients: Vec<u64>,
    /// Verdicts in a row below [`PER_STEP_BELOW`], up to [`VERDICTS_TO_DISTRUST`].
    low_verdicts: u8,
}

/// The gauge as a snapshot keeps it: a restart that replays the log tail
/// must key its sessions as the run before it did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SessionIdsState {
    /// Watched ids, oldest first, and the repeats each has counted.
    remembered: Vec<(u64, u8)>,
    events: u32,
    repeats: u32,
    clients: Vec<u64>,
    low_verdicts: u8,
    per_step: bool,
}

impl SessionIdsState {
    /// The remembered ids as a set, if a gauge could have written this state.
    ///
    /// # Errors
    /// [`Error::Snapshot`] when no gauge could have written this state.
    pub(crate) fn check(&self) -> Result<HashMap<u64, u8>> {
        let seen: HashMap<u64, u8> = self.remembered.iter().copied().collect();
        let clients = self.clients.iter().collect::<HashSet<_>>().len();
        let sound = self.remembered.len() <= REMEMBERED
            && seen.len() == self.remembered.len()
            && self.events < EVENTS_PER_VERDICT
            && self.repeats <= self.events
            && clients == self.clients.len()
            && self.clients.len() as u32 == self.events - self.repeats
            && self.low_verdicts <= VERDICTS_TO_DISTRUST
            && self.remembered.iter().all(|(_, n)| *n <= REPEATS_PER_ID);
        if !sound {
            return Err(Error::Snapshot(format!(
                "the session-id gauge holds {} ids ({} distinct, at most {REMEMBERED}, at most {REPEATS_PER_ID} repeats each), {} repeats in {} events (fewer than {EVENTS_PER_VERDICT}), {} clients ({clients} distinct) and {} low verdicts (at most {VERDICTS_TO_DISTRUST})",
                self.remembered.len(),
                seen.len(),
                self.repeats,
                self.events,
                self.clients.len(),
                self.low_verdicts
            )));
        }
        Ok(seen)
    }
}

impl SessionIdGauge {
    pub(crate) fn export_state(&self) -> SessionIdsState {
        let w = self.watch.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        SessionIdsState {
            remembered: w.order.iter().map(|id| (*id, w.seen.get(id).copied().unwrap_or(0))).collect(),
            events: w.events,
            repeats: w.repeats,
            clients: w.clients.clone(),
            low_verdicts: w.low_verdicts,
            per_step: self.per_step(),
        }
    }

    /// # Errors
    /// [`Error::Snapshot`] when the state could not have been written by a gauge ([`SessionIdsState::check`]); nothing changes then.
    pub(crate) fn restore_state(&self, state: &SessionIdsState) -> Result<()> {
        let seen = state.check()?;
        let mut w = self.watch.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *w = Watch {
            seen,
            order: state.remembered.iter().map(|(id, _)| *id).collect(),
            events: state.events,
            repeats: state.repeats,
            clients: state.clients.clone(),
            low_verdicts: state.low_verdicts,
        };
        self.per_step.store(state.per_step, Ordering::Relaxed);
        Ok(())
    }

    /// Are the reported session ids a step's each? Until the first verdicts, no.
    pub(crate) fn per_step(&self) -> bool {
        self.per_step.load(Ordering::Relaxed)
    }

    /// Note a successful event that carries a session id, by the id's keyed
    /// hash. `opener` is the keyed hash of who proved a secret at it (the
    /// customer of a successful login, the staff member of an access), if
    /// anyone did: only such an event brings a new id.
    pub(crate) fn note(&self, session_hash: u64, opener: Option<u64>) {
        if !session_hash.is_multiple_of(WATCH_ONE_IN) {
            return;
        }
        let mut w = self.watch.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(repeats) = w.seen.get_mut(&session_hash) {
            if *repeats == REPEATS_PER_ID {
                return;
            }
            *repeats += 1;
            w.repeats += 1;
        } else {
            let Some(client) = opener else { return };
            if w.clients.contains(&client) {
                return;
            }
            w.clients.push(client);
            if w.order.len() == REMEMBERED {
                if let Some(oldest) = w.order.pop_front() {
                    w.seen.remove(&oldest);
                }
            }
            w.seen.insert(session_hash, 0);
            w.order.push_back(session_hash);
        }
        w.events += 1;
        if w.events == EVENTS_PER_VERDICT {
            let share = w.repeats as f32 / EVENTS_PER_VERDICT as f32;
            if share < PER_STEP_BELOW {
                w.low_verdicts = (w.low_verdicts + 1).min(VERDICTS_TO_DISTRUST);
                if w.low_verdicts == VERDICTS_TO_DISTRUST {
                    self.per_step.store(true, Ordering::Relaxed);
                }
            } else {
                w.low_verdicts = 0;
                if share >= SPANNING_FROM {
                    self.per_step.store(false, Ordering::Relaxed);
                }
            }
            w.events = 0;
            w.repeats = 0;
            w.clients.clear();
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

    /// `verdicts` verdicts' worth of fresh ids, each from a client of its own.
    fn fresh(gauge: &SessionIdGauge, from: u64, verdicts: u32) {
        for s in from..from + u64::from(EVENTS_PER_VERDICT * verdicts) {
            gauge.note(watched(s), Some(s));
        }
    }

    #[test]
    fn ids_that_never_repeat_are_a_steps_each_and_repeating_ones_win_back_trust() {
        let gauge = SessionIdGauge::default();
        // Three steps a session: trusted (as before any verdict) after three verdicts.
        for s in 0..u64::from(EVENTS_PER_VERDICT) {
            for _ in 0..3 {
                gauge.note(watched(s), Some(s));
            }
        }
        assert!(!gauge.per_step());
        // Unwatched hashes change nothing, however many.
        for s in 0..10_000 {
            gauge.note(watched(s) + 1, Some(s));
        }
        assert!(!gauge.per_step());
        // A fresh id on every event: one verdict, or two, is not enough...
        fresh(&gauge, 1_000, VERDICTS_TO_DISTRUST as u32 - 1);
        assert!(!gauge.per_step());
        // ... and a verdict of real sessions between starts the count again.
        for s in 1_500..1_500 + u64::from(EVENTS_PER_VERDICT) / 2 {
            gauge.note(watched(s), Some(s));
            gauge.note(watched(s), Some(s));
        }
        fresh(&gauge, 2_000, VERDICTS_TO_DISTRUST as u32 - 1);
        assert!(!gauge.per_step());
        // The verdicts in a row: a step's each.
        fresh(&gauge, 3_000, 1);
        assert!(gauge.per_step());
        // A share between the two bars keeps the verdict: one repeat in six.
        for s in 4_000..4_000 + u64::from(EVENTS_PER_VERDICT) {
            let id = if s % 6 == 0 { s - 1 } else { s };
            gauge.note(watched(id), Some(id));
        }
        assert!(gauge.per_step());
        // Sessions of two steps again, a login and its code (which proves
        // no secret of its own, but names a watched id): trusted again at
        // the first verdict.
        for s in 5_000..5_000 + u64::from(EVENTS_PER_VERDICT) / 2 {
            gauge.note(watched(s), Some(s));
            gauge.note(watched(s), None);
        }
        assert!(!gauge.per_step());
    }

    #[test]
    fn one_client_or_steps_that_prove_no_secret_cannot_make_the_ids_untrusted() {
        let gauge = SessionIdGauge::default();
        // One account logging in again and again, a fresh id each time.
        for s in 0..100_000 {
            gauge.note(watched(s), Some(7));
        }
        // Passed ID scans, codes to the applicant's own phone: no opener.
        for s in 0..100_000 {
            gauge.note(watched(s), None);
        }
        assert!(!gauge.per_step());
        // A handful of clients take turns: each still counts once a verdict,
        // so a verdict needs as many clients as it has events.
        for s in 0..100_000 {
            gauge.note(watched(s), Some(s % u64::from(EVENTS_PER_VERDICT - 1)));
        }
        assert!(!gauge.per_step());
        // As many clients as a verdict has events do it: the cap is per verdict.
        fresh(&gauge, 200_000, VERDICTS_TO_DISTRUST as u32);
        assert!(gauge.per_step());
    }

    #[test]
    fn the_gauge_goes_on_after_a_restart_as_it_would_have() {
        let gauge = SessionIdGauge::default();
        fresh(&gauge, 0, VERDICTS_TO_DISTRUST as u32);
        // Three low verdicts (distrusted), a fourth, and ten events into the next verdict.
        fresh(&gauge, 10_000, 1);
        for s in 20_000..20_010 {
            gauge.note(watched(s), Some(s));
        }
        assert!(gauge.per_step());
        let restored = SessionIdGauge::default();
        restored.restore_state(&postcard::from_bytes(&postcard::to_stdvec(&gauge.export_state()).unwrap()).unwrap()).unwrap();
        assert_eq!(restored.export_state(), gauge.export_state());
        assert!(restored.per_step());
        // The same next events give both the same state and verdict.
        for g in [&gauge, &restored] {
            // The clients already counted in the open verdict count once.
            for s in 20_000..20_010 {
                g.note(watched(s + 1_000), Some(s));
            }
            // Each of its ten ids counts three repeats, and no more.
            for _ in 0..10 {
                for s in 20_000..20_010 {
                    g.note(watched(s), None);
                }
            }
            let open = g.export_state();
            assert_eq!((open.events, open.repeats, open.clients.len()), (40, 30, 10), "a client's second new id or an id's fourth repeat counted");
            assert!(g.per_step());
            // Twelve sessions of a login and its code end the verdict at 64 events, 42 repeats: trusted again.
            for s in 30_000..30_012 {
                g.note(watched(s), Some(s));
                g.note(watched(s), None);
            }
            assert!(!g.per_step());
        }
        assert_eq!(restored.export_state(), gauge.export_state());
        // A state no gauge writes is refused, and changes nothing.
        let before = restored.export_state();
        let good = gauge.export_state();
        let bad = [
            SessionIdsState { remembered: [good.remembered.clone(), vec![good.remembered[0]]].concat(), ..good.clone() },
            SessionIdsState { events: EVENTS_PER_VERDICT, repeats: EVENTS_PER_VERDICT, clients: vec![], ..good.clone() },
            SessionIdsState { remembered: vec![(8, REPEATS_PER_ID + 1)], ..good.clone() },
            SessionIdsState { clients: vec![1, 1], events: 2, repeats: 0, ..good.clone() },
            SessionIdsState { clients: vec![1], events: 2, repeats: 0, ..good.clone() },
            SessionIdsState { low_verdicts: VERDICTS_TO_DISTRUST + 1, per_step: true, ..good.clone() },
        ];
        for state in &bad {
            assert!(restored.restore_state(state).is_err(), "{state:?}");
            assert_eq!(restored.export_state(), before);
        }
    }

    #[test]
    fn a_long_stream_of_fresh_ids_keeps_memory_bounded() {
        let gauge = SessionIdGauge::default();
        fresh(&gauge, 0, 50_000 / EVENTS_PER_VERDICT);
        let w = gauge.watch.lock().unwrap();
        assert_eq!((w.seen.len(), w.order.len()), (REMEMBERED, REMEMBERED));
        assert!(w.clients.len() < EVENTS_PER_VERDICT as usize);
    }
}
