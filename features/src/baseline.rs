//! Population baselines, learned online in event time: how long each step
//! usually takes, and at which hours this population is usually active.
//! They learn from people: a late event, or one whose agent names itself
//! automation, is read against them but teaches nothing; and while a step's
//! baseline is young, it takes back what a session taught it once the
//! session shows itself scripted ([`Baselines::unlearn_step`]).
//!
//! Rules compare an event against these ("below the 1st percentile of this
//! step's durations") instead of constants that describe one world of traffic:
//! a bank whose ID-authenticity check answers in 400 ms and one whose check
//! takes 8 s get the same rule. Durations go into HDR histograms (the
//! `hdrhistogram` crate); each step keeps two epochs, the current and the one
//! before, so a baseline follows the traffic when the bank's pipeline changes
//! but never forgets everything at once. A duration far below everything
//! ranked is held out of the ranks until there are many of them, so a
//! campaign of scripts cannot become the "fastest percent" it is ranked
//! against (see `StepBaseline::held`).

use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::error::Error;

use crate::event::Step;

/// Samples a step needs before its duration ranks are percentiles. Until then
/// a rank reads 0.5 ("typical") unless the cold-start rule below ranks it
/// ([`MIN_COLD_SAMPLES`]), so no rule fires on an empty baseline.
pub const MIN_BASELINE_SAMPLES: u64 = 100;
/// Samples a step needs before a cold-start rank is given: with fewer than
/// [`MIN_BASELINE_SAMPLES`], only a duration far under the fastest one seen
/// ranks (at 0); anything else reads 0.5. A bot at 300 ms among people who
/// took 5 s or more is plain after a handful of people; a percentile is not.
/// A small bank's first night sees a handful of people at each step, and a
/// script that comes then is otherwise judged by nothing.
pub const MIN_COLD_SAMPLES: u64 = 6;
/// From this many samples a young baseline ranks what is under half the
/// fastest seen; before, only what is under a quarter of it. The fewer
/// people seen, the likelier the fastest of them is slow by chance (a step
/// whose quick mode, an auto-capture, is a minority and has not come yet).
const COLD_SAMPLES_AT_HALF: u64 = 20;

/// How far under the fastest duration seen a young baseline ranks a
/// duration: `ms * divisor < fastest`. None: too few samples to say.
fn cold_divisor(samples: u64) -> Option<u64> {
    match samples {
        n if n < MIN_COLD_SAMPLES => None,
        n if n < COLD_SAMPLES_AT_HALF => Some(4),
        _ => Some(2),
    }
}
/// A duration under this share of its step's fastest percentile is held out
/// of the step's ranks (see [`StepBaseline::held`]).
const HELD_BELOW_SHARE_OF_P1: u64 = 2;
/// Where [`RANKS`] holds the step's fastest percentile.
const P1: usize = 4;
const _: () = assert!(RANKS[P1] == 0.01);
/// Held-out durations are taken in when they reach one in `HELD_ACCEPT_EVERY`
/// of the samples seen since the hold last emptied: the step itself got
/// faster, or a group of people is this fast (a platform, an SDK).
const HELD_ACCEPT_EVERY: u64 = 6;
/// The share is read over at least this many samples. Fifty scripts in a
/// row right after the hold emptied (or after a take-in) still reach it:
/// the hold cannot tell such a burst from a real speed-up.
const HOLD_WINDOW_MIN: u64 = 300;
/// After this many samples the hold empties: what it held was a minority
/// (a campaign, an outlier), and old news.
const HOLD_WINDOW: u64 = 1_200;
/// Samples per epoch: after this many, the current epoch becomes the previous one.
const EPOCH_SAMPLES: u64 = 50_000;
/// Rebuild a step's rank table after this many new samples.
const REFRESH_EVERY: u64 = 128;
/// Ranks the table holds the durations at; a rank between two points is interpolated.
const RANKS: [f64; 17] = [0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.95, 0.99, 1.0];
/// Durations above an hour are clamped: nobody types a code for longer.
const MAX_DURATION_MS: u64 = 3_600_000;
/// Staff working hours per epoch before rotation.
const STAFF_HOUR_EPOCH_EVENTS: u64 = 20_000;
/// Events before the population's hours speak (with every hour of day seen
/// closing at least once); until then every hour reads 1.0 (average).
pub const MIN_HOUR_SAMPLES: u64 = 2_000;
/// Staff working hours (one per staff member, day and hour) before the staff
/// hour baseline speaks; the office-hours prior alone is worth this many.
pub const MIN_STAFF_HOUR_SAMPLES: u64 = 100;

struct StepBaseline {
    current: Histogram<u32>,
    previous: Histogram<u32>,
    /// Durations far below everything ranked (under half the fastest
    /// percentile), kept out of the ranks. A campaign of scripts, even one a
    /// small bank sees as 7% of a step's traffic, would otherwise become the
    /// step's fastest percent, and every later script would rank as a person
    /// among them. Honest people almost never fall this far below their own
    /// population's fastest percent, so holding these out moves no honest
    /// rank. When the held durations reach a sixth of the samples seen
    /// since the hold last emptied, the step itself has got faster (a new
    /// backend, a new SDK), or a real group of people is this fast, and they
    /// are taken in. The hold empties every [`HOLD_WINDOW`] samples.
    held: Histogram<u32>,
    /// Samples seen (held or ranked) since `held` last emptied.
    hold_window: u64,
    since_refresh: u64,
    /// Duration (ms) at each of [`RANKS`]; valid once `ready`.
    table: [f64; RANKS.len()],
    ready: bool,
}

impl StepBaseline {
    fn new() -> StepBaseline {
        let h = || Histogram::new_with_bounds(1, MAX_DURATION_MS, 2).expect("static bounds are valid");
        StepBaseline { current: h(), previous: h(), held: h(), hold_window: 0, since_refresh: 0, table: [0.0; RANKS.len()], ready: false }
    }

    /// Learn `ms`; returns where it went (a held duration merged into the
    /// ranks with the hold is ranked).
    fn record(&mut self, ms: u64) -> Placed {
        let ms = ms.clamp(1, MAX_DURATION_MS);
        if self.hold_window >= HOLD_WINDOW {
            self.held.reset();
            self.hold_window = 0;
        }
        self.hold_window += 1;
        let mut merged = false;
        if self.far_below(ms) {
            // Within the bounds the histogram was built with, recording cannot fail.
            let _ = self.held.record(ms);
            if self.held.len() * HELD_ACCEPT_EVERY < self.hold_window.max(HOLD_WINDOW_MIN) {
                return Placed::Held;
            }
            let _ = self.current.add(&self.held);
            self.held.reset();
            self.hold_window = 0;
            merged = true;
        } else {
            let _ = self.current.record(ms);
        }
        if self.current.len() >= EPOCH_SAMPLES {
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.reset();
        }
        self.since_refresh += 1;
        if merged || self.since_refresh >= REFRESH_EVERY || (!self.ready && self.samples() >= MIN_BASELINE_SAMPLES) {
            self.refresh();
        }
        Placed::Ranked
    }

    fn samples(&self) -> u64 {
        self.current.len() + self.previous.len()
    }

    /// Take back one sample of `ms` recorded while this baseline was young,
    /// from where it was `placed`: a held one from the hold (or from the
    /// ranks, if the hold was taken in since), a ranked one only from the
    /// ranks, so that a script's ranked duration never takes another
    /// session's held one in its stead. Returns whether one was taken. A
    /// ready baseline takes nothing back, even a duration it learnt young
    /// (a session can span the hundredth sample): its ranks come from a
    /// table, its hold may have emptied since, and a sample of the same
    /// bucket could then be an honest person's.
    fn unlearn(&mut self, ms: u64, placed: Placed) -> bool {
        if self.ready {
            return false;
        }
        let ms = ms.clamp(1, MAX_DURATION_MS);
        let Ok(mut one) = Histogram::<u32>::new_with_bounds(1, MAX_DURATION_MS, 2) else { return false };
        if one.record(ms).is_err() {
            return false;
        }
        let hold = match placed {
            Placed::Held => Some(&mut self.held),
            Placed::Ranked => None,
        };
        // A histogram without a sample in that bucket refuses, unchanged.
        hold.into_iter().chain([&mut self.current, &mut self.previous]).any(|h| h.count_at(ms) > 0 && h.subtract(&one).is_ok())
    }

    /// Under half the fastest percentile ranked, or (while the baseline is
    /// young, from [`COLD_SAMPLES_AT_HALF`] samples) under half the fastest
    /// duration seen.
    fn far_below(&self, ms: u64) -> bool {
        if self.ready {
            let doubled = ms.saturating_mul(HELD_BELOW_SHARE_OF_P1);
            (self.current.lowest_equivalent(doubled) as f64) < self.table[P1]
        } else {
            // Not from the first sample a young baseline ranks: what is held
            // is ranked against for good, and among a handful of people a
            // step's quick minority (an auto-filled code) may not have come yet.
            self.samples() >= COLD_SAMPLES_AT_HALF && ms.saturating_mul(HELD_BELOW_SHARE_OF_P1) < self.fastest()
        }
    }

    fn fastest(&self) -> u64 {
        let min = |h: &Histogram<u32>| if h.is_empty() { u64::MAX } else { h.min() };
        min(&self.current).min(min(&self.previous))
    }

    fn refresh(&mut self) {
        self.since_refresh = 0;
        if self.samples() < MIN_BASELINE_SAMPLES {
            return;
        }
        let mut both = self.current.clone();
        // Same bounds and precision: adding cannot fail.
        let _ = both.add(&self.previous);
        // Compare bucket floors on both sides, so a duration equal to the
        // population's ranks with it rather than below it.
        for (slot, q) in self.table.iter_mut().zip(RANKS) {
            *slot = both.lowest_equivalent(both.value_at_quantile(q)) as f64;
        }
        self.ready = true;
    }

    /// The share of this step's recent durations at or below `ms`,
    /// interpolated between the table's points.
    fn rank(&self, ms: u64) -> f32 {
        if !self.ready {
            return match cold_divisor(self.samples()) {
                Some(k) if ms.saturating_mul(k) < self.fastest() => 0.0,
                _ => 0.5,
            };
        }
        let x = self.current.lowest_equivalent(ms.clamp(1, MAX_DURATION_MS)) as f64;
        // The last table point at or below x; ties rank with the population.
        let Some(i) = self.table.iter().rposition(|&v| v <= x) else { return 0.0 };
        if i + 1 == RANKS.len() {
            return 1.0;
        }
        let (lo, hi) = (self.table[i], self.table[i + 1]);
        let f = if hi > lo { (x - lo) / (hi - lo) } else { 0.0 };
        (RANKS[i] + f * (RANKS[i + 1] - RANKS[i])) as f32
    }
}

/// Closed staff working days the bank's typical day is the median of.
/// Days close as their members come back the next morning, so the latest
/// few are the latest starters'. Enough to hold a whole morning's closings
/// at a bank with a thousand members at work (4 KB), so the median is the
/// staff's, not the late starters'.
const STAFF_DAYS_KEPT: usize = 1024;
/// Closed staff working days before the bank's typical day speaks.
pub const MIN_STAFF_DAYS: usize = 5;

/// The records of the bank's latest closed staff working days (each an
/// unrefused day of one member that read something), and their median.
/// A member new to the store (a new hire, or a new install not warmed from
/// history) has no typical day of their own; the bank's staff have one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StaffDays {
    records: std::collections::VecDeque<u32>,
    median: f32,
}

impl StaffDays {
    fn learn(&mut self, records: u32) {
        if records == 0 {
            return;
        }
        if self.records.len() == STAFF_DAYS_KEPT {
            self.records.pop_front();
        }
        self.records.push_back(records);
        self.median = median_day(&self.records);
    }

    fn typical(&self) -> f32 {
        if self.records.len() < MIN_STAFF_DAYS {
            0.0
        } else {
            self.median
        }
    }

    fn check(&self) -> Result<(), Error> {
        if self.records.len() > STAFF_DAYS_KEPT || self.records.contains(&0) || self.median != median_day(&self.records) {
            return Err(Error::Snapshot(format!("the staff days ({} kept, median {}) are not what this build keeps", self.records.len(), self.median)));
        }
        Ok(())
    }
}

/// The median of days' records (the lower of the middle two); 0 for none.
fn median_day(records: &std::collections::VecDeque<u32>) -> f32 {
    let mut days: Vec<u32> = records.iter().copied().collect();
    if days.is_empty() {
        return 0.0;
    }
    let middle = (days.len() - 1) / 2;
    *days.select_nth_unstable(middle).1 as f32
}

/// An event's clock hour: its local hour of day, and which local clock hour
/// it falls in (counted from the Unix epoch, in event time), which tells a
/// population baseline when an hour has closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventHour {
    /// Local hour of day, 0..24.
    pub local: u8,
    /// Local clock hours since the Unix epoch.
    pub index: i64,
}

impl EventHour {
    /// The hour of an event at `ts_ms` (Unix milliseconds) for a bank at `utc_offset_s`.
    pub fn at(ts_ms: i64, utc_offset_s: i32) -> EventHour {
        let index = (ts_ms + i64::from(utc_offset_s) * 1000).div_euclid(3_600_000);
        EventHour { local: index.rem_euclid(24) as u8, index }
    }
}

/// Closed clock hours a population's hours hold (with twice the events
/// they need to speak) before they fade by half: a memory of two to four
/// weeks, so that a promotion month moves them; one night's flood adds at
/// most [`POPULATION_HOUR_CAP`] times that hour's own mean.
const POPULATION_HOURS_SPAN: u32 = 28 * 24;

/// The population's events by local hour of day, over closed clock hours.
///
/// Counting events per hour of day and dividing by all events (as the staff
/// hours do with whole days) reads wrong while the hours have not been seen
/// equally often: on a new install's first day the hour still running held
/// only its first minutes, so every hour looked quiet as it began, and on
/// the second day the evening hours, seen once, looked half as busy as the
/// morning ones, seen twice. Here each local hour's events are divided by
/// how many times that hour has closed, and the hour still running counts
/// only once it closes: an hour of day speaks once every one has been seen.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PopulationHours {
    /// Events of each local hour, over its closed clock hours.
    events: [u64; 24],
    /// Closed clock hours of each local hour (an hour without an event closes too).
    closed: [u32; 24],
    /// The clock hour still running (`i64::MIN`: none yet), its local hour and its events so far.
    open_index: i64,
    open_local: u8,
    open_events: u64,
    /// The open hour is the first one seen, which began before the install
    /// (or the warm-up file) did: it closes uncounted, or its few minutes
    /// would read as a quiet hour for weeks.
    open_partial: bool,
}

impl Default for PopulationHours {
    fn default() -> Self {
        PopulationHours { events: [0; 24], closed: [0; 24], open_index: i64::MIN, open_local: 0, open_events: 0, open_partial: true }
    }
}

/// One closed hour adds at most this many times its own hour of day's mean
/// (see `PopulationHours::hour_cap`): a night's flood of junk events must
/// not make the night read busy for weeks.
const POPULATION_HOUR_CAP: f64 = 3.0;

impl PopulationHours {
    fn record(&mut self, at: EventHour) {
        if self.open_index == i64::MIN {
            (self.open_index, self.open_local, self.open_events) = (at.index, at.local, 1);
            return;
        }
        if at.index == self.open_index {
            self.open_events += 1;
            return;
        }
        if at.index < self.open_index {
            // Within the allowed lateness, for an hour already closed: left
            // out, at most minutes of honest traffic, or events backdated
            // into a closed hour would pass round its cap.
            return;
        }
        let open = usize::from(self.open_local) % 24;
        if !std::mem::replace(&mut self.open_partial, false) {
            let events = self.open_events.min(self.hour_cap(open));
            self.events[open] += events;
            self.closed[open] += 1;
        }
        // Hours with no event close too; past a day of silence (an outage) every
        // hour has been seen empty once and more would only dilute them all alike.
        let silent = (at.index - self.open_index - 1).clamp(0, 24) as usize;
        for k in 1..=silent {
            self.closed[(open + k) % 24] += 1;
        }
        (self.open_index, self.open_local, self.open_events) = (at.index, at.local, 1);
        // Fading waits for twice the events the hours need to speak, so that
        // a small bank's hours, once known, do not fall silent at a halving.
        if self.closed_total() >= u64::from(POPULATION_HOURS_SPAN) && self.events_total() >= 2 * MIN_HOUR_SAMPLES {
            for h in 0..24 {
                self.events[h] = self.events[h].div_ceil(2);
                self.closed[h] = self.closed[h].div_ceil(2);
            }
        }
    }

    /// The most one closed clock hour of local hour `h` adds: three times
    /// that hour's own mean (and a tenth of an average hour, so that an
    /// hour with no history can grow); a night's flood of junk moves a
    /// quiet hour by little more than its own size, night after night, and
    /// an honest change of rhythm still comes through within weeks. An hour
    /// of day never closed yet has no mean: the first day is taken whole,
    /// since its morning is many times its night.
    fn hour_cap(&self, h: usize) -> u64 {
        match self.average_hour() {
            Some(average) if self.closed[h] > 0 => {
                let own = self.events[h] as f64 / f64::from(self.closed[h]);
                (POPULATION_HOUR_CAP * own).max(0.1 * average).ceil() as u64
            }
            _ => u64::MAX,
        }
    }

    fn events_total(&self) -> u64 {
        self.events.iter().sum()
    }

    fn closed_total(&self) -> u64 {
        self.closed.iter().map(|c| u64::from(*c)).sum()
    }

    /// Events per closed hour, over every hour of day (`None` before any closed).
    fn average_hour(&self) -> Option<f64> {
        let closed = self.closed_total();
        (closed > 0).then(|| self.events_total() as f64 / closed as f64)
    }

    /// Every hour of day has closed at least once, over enough events to say which are quiet.
    fn known(&self) -> bool {
        self.closed.iter().all(|c| *c > 0) && self.events_total() >= MIN_HOUR_SAMPLES
    }

    /// This local hour's events per closed hour, over all hours' (1.0: an
    /// average hour; 0.1 an hour this population rarely uses). 1.0 until known.
    fn activity(&self, hour: u8) -> f32 {
        let h = usize::from(hour) % 24;
        match self.average_hour() {
            Some(average) if self.known() && average > 0.0 => (self.events[h] as f64 / f64::from(self.closed[h]) / average) as f32,
            _ => 1.0,
        }
    }

    /// A copy from a snapshot: an open hour whose local hour is its own (a
    /// broken copy would otherwise misplace every hour it closes; the sums
    /// are taken in u64 and cannot overflow).
    fn check(&self) -> Result<(), Error> {
        let consistent = self.open_index == i64::MIN || (self.open_index > i64::MIN / 2 && i64::from(self.open_local) == self.open_index.rem_euclid(24));
        if !consistent {
            return Err(Error::Snapshot(format!("population hours open at clock hour {} but local hour {}", self.open_index, self.open_local)));
        }
        Ok(())
    }
}

/// The hours the bank's staff work: each working day counts each hour it
/// worked once (see [`Baselines::learn_staff_day`]), over epochs of days.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StaffHours {
    current: [u64; 24],
    previous: [u64; 24],
    current_n: u64,
}

impl StaffHours {
    fn record(&mut self, hour: u8) {
        self.current[usize::from(hour) % 24] += 1;
        self.current_n += 1;
        if self.current_n >= STAFF_HOUR_EPOCH_EVENTS {
            self.previous = self.current;
            self.current = [0; 24];
            self.current_n = 0;
        }
    }

    /// This hour's share of working hours, times 24: 1.0 is an average hour,
    /// 0.1 an hour the staff rarely work. 1.0 until enough are known.
    fn activity(&self, hour: u8) -> f32 {
        let h = usize::from(hour) % 24;
        let total: u64 = self.current_n + self.previous.iter().sum::<u64>();
        if total < MIN_STAFF_HOUR_SAMPLES {
            return 1.0;
        }
        ((self.current[h] + self.previous[h]) as f64 * 24.0 / total as f64) as f32
    }
}

/// A population baseline of one entity feature's level (for example how many
/// fresh identities one address onboards in an hour, read at every
/// onboarding event): the value at a high quantile, so a rule can ask for
/// "far above what the busiest addresses of this population see".
struct LevelBaseline {
    current: Histogram<u32>,
    previous: Histogram<u32>,
    since_refresh: u64,
    level: f32,
}

/// Readings a level baseline needs before it speaks; until then its level
/// reads [`LEVEL_UNKNOWN`], which no real count reaches.
pub const MIN_LEVEL_SAMPLES: u64 = 200;
/// The level of a baseline that has not seen enough readings.
pub const LEVEL_UNKNOWN: f32 = 1.0e6;
/// The quantile a level baseline reports.
const LEVEL_QUANTILE: f64 = 0.99;

impl LevelBaseline {
    fn new() -> LevelBaseline {
        let h = || Histogram::new_with_bounds(1, 1_000_000, 2).expect("static bounds are valid");
        LevelBaseline { current: h(), previous: h(), since_refresh: 0, level: LEVEL_UNKNOWN }
    }

    fn observe(&mut self, value: f32, learn: bool) -> f32 {
        let level = self.level;
        if learn {
            // Counts start at 1 here: a reading of 0 is recorded as 1.
            let _ = self.current.record((value.max(1.0) as u64).min(1_000_000));
            if self.current.len() >= EPOCH_SAMPLES {
                std::mem::swap(&mut self.current, &mut self.previous);
                self.current.reset();
            }
            self.since_refresh += 1;
            if self.since_refresh >= REFRESH_EVERY {
                self.since_refresh = 0;
                if self.current.len() + self.previous.len() >= MIN_LEVEL_SAMPLES {
                    let mut both = self.current.clone();
                    let _ = both.add(&self.previous);
                    self.level = both.value_at_quantile(LEVEL_QUANTILE) as f32;
                }
            }
        }
        level
    }
}

/// Counts by unit of event time (a minute, a clock hour), in a ring of a
/// fixed number of slots, each holding the unit it counts for. Serialized
/// as its slots alone.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct CountRing(Vec<(i64, u32)>);

impl CountRing {
    /// Count one at unit `at`, in a ring of `len` slots (made on first use).
    fn add(&mut self, len: usize, at: i64) {
        if self.0.is_empty() {
            self.0 = vec![(i64::MIN, 0); len];
        }
        let slots = self.0.len() as i64;
        let slot = &mut self.0[at.rem_euclid(slots) as usize];
        if slot.0 == at {
            slot.1 += 1;
        } else if slot.0 < at {
            *slot = (at, 1);
        }
    }

    /// Take one back from unit `at`, if the ring still holds that unit.
    fn remove(&mut self, at: i64) {
        let slots = self.0.len() as i64;
        if let Some(slot) = self.0.get_mut(at.rem_euclid(slots.max(1)) as usize).filter(|s| s.0 == at) {
            slot.1 = slot.1.saturating_sub(1);
        }
    }

    /// The counts of the units in `units` that the ring holds.
    fn in_range(&self, units: std::ops::RangeInclusive<i64>) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().filter(move |(u, _)| units.contains(u)).map(|(_, n)| *n)
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

/// Counts per minute and per hour of event time, in rings of 60 and 24: the
/// last hour to the minute, and the day by clock hours.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct MinuteHourCounts {
    /// By minute % 60.
    minutes: CountRing,
    /// By hour % 24.
    hours: CountRing,
}

impl MinuteHourCounts {
    fn count(&mut self, minute: i64) {
        self.minutes.add(60, minute);
        self.hours.add(24, minute.div_euclid(60));
    }

    /// Counted in the 60 minutes up to and including `minute`.
    fn last_hour(&self, minute: i64) -> u64 {
        self.minutes.in_range(minute - 59..=minute).map(u64::from).sum()
    }

    /// The clock hours in `hours` that hold counts, with their counts.
    fn hours_in(&self, hours: std::ops::RangeInclusive<i64>) -> impl Iterator<Item = u32> + '_ {
        self.hours.in_range(hours)
    }

    /// A copy from a snapshot must have both rings whole, or neither.
    fn check(&self, what: &str) -> Result<(), Error> {
        if (self.minutes.len(), self.hours.len()) == (0, 0) || (self.minutes.len(), self.hours.len()) == (60, 24) {
            return Ok(());
        }
        Err(Error::Snapshot(format!("{what} over {} minutes and {} hours, not 60 and 24", self.minutes.len(), self.hours.len())))
    }
}

/// The earliest clock hour a population count has learnt from: how many
/// complete hours of the day before the current one (at most 23) its level
/// may span, so that a new install's first hours do not read as a quiet day.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(transparent)]
struct FirstHour(Option<i64>);

impl FirstHour {
    fn note(&mut self, hour: i64) {
        self.0 = Some(self.0.map_or(hour, |first| first.min(hour)));
    }

    /// Complete hours between the first and `hour`, at most 23.
    fn hours_before(self, hour: i64) -> i64 {
        self.0.map_or(0, |first| (hour - first).clamp(0, 23))
    }
}

/// How busy onboarding is right now against its own recent past: onboarding
/// events in the last hour of event time, over what the last day's hours
/// held on average, scaled by the hour's place in the daily rhythm. A
/// promotion or payday lifts every address's onboardings at once; one
/// address's burst inside a normal hour does not lift this.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct OnboardingRate {
    counts: MinuteHourCounts,
    /// The first hour seen: how much of the day the average may span.
    first_hour: FirstHour,
}

/// Hours of onboarding history the surge needs before it reads anything but 1.
const SURGE_MIN_HOURS: i64 = 3;
/// Onboarding events in the day's history the surge needs.
const SURGE_MIN_EVENTS: u64 = 100;
/// An hour the daily rhythm calls quiet is compared with at least this
/// share of an average hour: a surge at 4 a.m. is not measured against zero.
const SURGE_QUIET_FLOOR: f32 = 0.25;
/// The most a surge reads. Rules raise bars with it, and anyone can send
/// onboarding events from throwaway addresses: past this, a bar stops rising.
const SURGE_MAX: f32 = 3.0;

impl OnboardingRate {
    /// The surge as it stands before this event (1 without enough history),
    /// then count the event if `learn`.
    fn observe(&mut self, ts_ms: i64, hour_activity: f32, own: f32, learn: bool) -> f32 {
        let minute = ts_ms.div_euclid(60_000);
        let hour = minute.div_euclid(60);
        let last_hour = self.counts.last_hour(minute);
        // The 23 complete hours before the current one (the ring's 24th slot is the current hour).
        let (day, hours_with_onboarding) = self.counts.hours_in(hour - 23..=hour - 1).fold((0u64, 0i64), |(n, k), c| (n + u64::from(c), k + 1));
        // The average is over hours that had onboarding, not over the clock: a gap in the
        // traffic (a restart from an old snapshot, a warm-up from a file with holes) must not
        // read as a quiet day. An honest quiet night then reads a little low, never high.
        let span = self.first_hour.hours_before(hour).min(hours_with_onboarding);
        let surge = if span >= SURGE_MIN_HOURS && day >= SURGE_MIN_EVENTS {
            let average = day as f32 / span as f32;
            ((last_hour as f32 - own).max(0.0) / (average * hour_activity.max(SURGE_QUIET_FLOOR))).min(SURGE_MAX)
        } else {
            1.0
        };
        if learn {
            self.first_hour.note(hour);
            self.counts.count(minute);
        }
        surge
    }
}

/// Fresh identities the whole population onboarded, by minute and by hour
/// of event time: what one address's count of fresh identities is a share
/// of. A promotion or payday hour lifts every address's count and the
/// population's together, and the day's rhythm cancels the same way, so an
/// address onboarding far more than its usual share stands out in any world.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct NewIdentityCount {
    counts: MinuteHourCounts,
}

impl NewIdentityCount {
    /// Count one fresh identity at `ts_ms` (if `count`), then read those of
    /// the last hour and of the last 24 clock hours, this one included, as
    /// an address's own distinct counts include it.
    fn observe(&mut self, ts_ms: i64, count: bool) -> (f32, f32) {
        let minute = ts_ms.div_euclid(60_000);
        let hour = minute.div_euclid(60);
        if count {
            self.counts.count(minute);
        }
        let last_hour = self.counts.last_hour(minute);
        let last_day: u64 = self.counts.hours_in(hour - 23..=hour).map(u64::from).sum();
        (last_hour as f32, last_day.max(last_hour) as f32)
    }
}

/// Failed logins of returning customers (ones who have logged in before),
/// on devices that never carried a returning customer (or that the event
/// does not name), by minute and by hour of event time: credential
/// stuffing tries victim after victim, each on a fresh device, through
/// addresses shared with everyone (a carrier NAT's exits), so that no
/// address, device or customer sees more than a try or two; only the
/// population sees the campaign, as more of these in an hour than its own
/// hours hold. Honest ones (a customer's new phone and a mistyped PIN) are
/// steady and few. The day's level is the median hour, not the mean: a
/// campaign's own hours must not raise the bar it is measured against.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct StrangerFailures {
    counts: MinuteHourCounts,
    /// The first hour counted: how many hours the level may span.
    first_hour: FirstHour,
}

/// Hours of history before the population's hourly level of stranger
/// failures is read (until then it reads -1).
pub const STRANGER_MIN_HOURS: i64 = 6;

impl StrangerFailures {
    /// Count one at `ts_ms` (if `count`), then read those of the last hour,
    /// this one included, and the median of the complete clock hours of the
    /// day before the current one, hours without one included (-1 with less
    /// than [`STRANGER_MIN_HOURS`] of them since the first login learnt, `learn`).
    fn observe(&mut self, ts_ms: i64, count: bool, learn: bool) -> (f32, f32) {
        let minute = ts_ms.div_euclid(60_000);
        let hour = minute.div_euclid(60);
        // From the first login learnt, counted or not: a bank that has not
        // had a stranger failure yet has a level of none, not no level.
        if learn {
            self.first_hour.note(hour);
        }
        if count {
            self.counts.count(minute);
        }
        let last_hour = self.counts.last_hour(minute);
        let span = self.first_hour.hours_before(hour);
        let level = if span >= STRANGER_MIN_HOURS {
            let mut hours = [0u32; 23];
            for (slot, n) in hours.iter_mut().zip(self.counts.hours_in(hour - span..=hour - 1)) {
                *slot = n;
            }
            // Hours the ring holds no count for are zeros, already in place.
            let hours = &mut hours[..span as usize];
            let middle = hours.len() / 2;
            *hours.select_nth_unstable(middle).1 as f32
        } else {
            -1.0
        };
        (last_hour as f32, level)
    }
}

/// How often the population's events name each region: the share of them
/// that came from the event's region (the store teaches it passed events
/// of returning customers only). A takeover from abroad, or through a
/// foreign data centre, comes from a region this bank's customers almost
/// never use; a bank whose customers live abroad sees those regions often,
/// and they are not rare there. Counts halve every [`REGION_HALVE_EVERY`]
/// events so the shares follow the traffic, and at most [`REGION_CAP`]
/// regions are kept: a spray of made-up regions pushes out only the rarest,
/// and an evicted region reads as rare, which asks more of its events, not less.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct RegionShares {
    /// Region hash and its count.
    counts: Vec<(u32, u32)>,
    total: u64,
}

/// Regions a population keeps counts for.
pub const REGION_CAP: usize = 512;
/// Events with a region between halvings of the counts.
const REGION_HALVE_EVERY: u64 = 200_000;
/// Events with a region before a share is read (until then it reads -1).
pub const MIN_REGION_SAMPLES: u64 = 2_000;

impl RegionShares {
    /// The share of counted events from `region` as it stood before this
    /// event (-1 before [`MIN_REGION_SAMPLES`]), then count it if `learn`.
    fn observe(&mut self, region: u32, learn: bool) -> f32 {
        let at = self.counts.iter().position(|(r, _)| *r == region);
        let share = if self.total < MIN_REGION_SAMPLES { -1.0 } else { at.map_or(0, |i| self.counts[i].1) as f32 / self.total as f32 };
        if learn {
            match at {
                Some(i) => self.counts[i].1 += 1,
                None => {
                    if self.counts.len() == REGION_CAP {
                        let rarest = self.counts.iter().enumerate().min_by_key(|(_, (_, n))| *n).map_or(0, |(i, _)| i);
                        self.total -= u64::from(self.counts.swap_remove(rarest).1);
                    }
                    self.counts.push((region, 1));
                }
            }
            self.total += 1;
            if self.total.is_multiple_of(REGION_HALVE_EVERY) {
                for c in &mut self.counts {
                    c.1 /= 2;
                }
                self.counts.retain(|(_, n)| *n > 0);
                self.total = self.counts.iter().map(|(_, n)| u64::from(*n)).sum();
            }
        }
        share
    }

    /// A copy from a snapshot must be within the cap and add up.
    fn check(&self) -> Result<(), Error> {
        let sum: u64 = self.counts.iter().map(|(_, n)| u64::from(*n)).sum();
        if self.counts.len() > REGION_CAP || sum != self.total {
            return Err(Error::Snapshot(format!("region shares of {} regions adding up to {sum}, not {}", self.counts.len(), self.total)));
        }
        Ok(())
    }
}

/// How often each channel's returning customers log in on a device their
/// profile does not know. A world whose web sessions reset their browser
/// fingerprint shows most web logins on a "new" device, and the same
/// world's app logins almost none: a new device is evidence of a takeover
/// only on a channel where returning customers seldom bring one. Learnt
/// from passed logins of returning customers whose profile knew a device,
/// one a day per customer and channel (the profile keeps the stamp), neither late
/// nor from an agent that names itself automation. The counts halve at
/// [`CHURN_HALVE_AT`], so a channel's share follows a change of client
/// (a new app release that resets device ids) within a few thousand logins.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct DeviceChurn {
    /// Per channel (app, web, not named): logins on a device new to the profile, and all.
    counts: [(u32, u32); 3],
}

/// Logins a channel needs before its share is read (-1 until then).
pub const MIN_CHURN_LOGINS: u32 = 20;
/// Logins of a channel at which its counts halve.
const CHURN_HALVE_AT: u32 = 4_000;

impl DeviceChurn {
    /// The channel's share of logins on a new device as it stood before this
    /// event, then count the login (`new_device`: whether its device was new
    /// to a profile that knew one; `None`: not a login to count).
    fn observe(&mut self, channel: usize, new_device: Option<bool>) -> f32 {
        let (new, all) = self.counts[channel];
        let share = if all < MIN_CHURN_LOGINS { -1.0 } else { new as f32 / all as f32 };
        if let Some(is_new) = new_device {
            let c = &mut self.counts[channel];
            c.0 += u32::from(is_new);
            c.1 += 1;
            if c.1 >= CHURN_HALVE_AT {
                *c = (c.0 / 2, c.1 / 2);
            }
        }
        share
    }

    /// A copy from a snapshot must count no more new devices than logins, under the halving point.
    fn check(&self) -> Result<(), Error> {
        match self.counts.iter().find(|(new, all)| new > all || *all >= CHURN_HALVE_AT) {
            Some((new, all)) => Err(Error::Snapshot(format!("device churn of {new} new devices in {all} logins"))),
            None => Ok(()),
        }
    }
}

/// Returning customers the whole population carried, by clock hour of
/// event time: each customer sits in the hour of their last passed event as
/// a returning customer, so the last 24 hours hold distinct customers. What
/// an address's fresh identities against its returning customers is
/// compared with: in a population that is mostly applicants (a launch, a
/// promotion, a small bank growing fast), an honest exit carries mostly
/// applicants too.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ReturningCount {
    /// By hour % 24: customers whose last hour it is.
    hours: CountRing,
}

impl ReturningCount {
    /// A customer's last hour moves from `from` (0: they were in none) to `to`.
    fn moved(&mut self, from: u32, to: u32) {
        // The hour that held them may have left the ring: then there is
        // nothing to take them from. A customer the store evicted under a
        // key spray comes back with no hour and is counted again beside
        // their old one until it leaves the day: that only raises the
        // count, which makes the rules that read it stricter, not laxer.
        if from != 0 {
            self.hours.remove(i64::from(from));
        }
        self.hours.add(24, i64::from(to));
    }

    /// Customers whose last hour is one of the 24 clock hours up to and including `hour`.
    fn last_day(&self, hour: i64) -> u64 {
        self.hours.in_range(hour - 23..=hour).map(u64::from).sum()
    }

    fn check(&self) -> Result<(), Error> {
        if matches!(self.hours.len(), 0 | 24) {
            return Ok(());
        }
        Err(Error::Snapshot(format!("returning customers over {} hours, not 24", self.hours.len())))
    }
}

/// What the baselines say about one event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BaselineReading {
    /// Share of this step's recent durations at or below the event's (0.5 without a duration or a baseline).
    pub duration_rank: f32,
    /// The rank a duration longer by the asked margin would have: how far
    /// the event stands apart from the population's fastest, not only
    /// whether it is among them (see `FeatureConfig::step_rank_margin`).
    /// The same as `duration_rank` while the step's baseline is young.
    pub apart_rank: f32,
    /// Samples behind the step's baseline.
    pub samples: u64,
    /// The event's local hour's share of population activity, times 24.
    pub hour_activity: f32,
    /// The population's hours rest on enough events to say which are quiet
    /// (`hour_activity` is 1.0, an average hour, until they do).
    pub hours_known: bool,
    /// The duration was learnt by a baseline still young after it, which
    /// can take it back ([`Baselines::unlearn_step`]), and where it went.
    pub learnt_young: Option<Placed>,
}

/// Where a step baseline put a duration it learnt: among the ranked
/// durations, or held out of them as far below everyone
/// (see `StepBaseline::held`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Placed {
    Ranked,
    Held,
}

/// Population baselines over every event the store has seen.
///
/// One lock per step and one for the hours: an event takes each briefly, one
/// at a time, never two at once.
pub struct Baselines {
    /// Per step, durations as reported; then per step again, durations
    /// taken from the gap since the session's previous event (which holds
    /// the person's pauses too, so the two are never ranked together).
    steps: Vec<Mutex<StepBaseline>>,
    hours: Mutex<PopulationHours>,
    /// Staff access keeps its own hours: a bank's staff work office hours,
    /// whatever its customers do.
    staff_hours: Mutex<StaffHours>,
    /// The records of the staff's working days.
    staff_days: Mutex<StaffDays>,
    /// Fresh identities one address onboards in an hour, read at each onboarding event.
    ip_onboarding: Mutex<LevelBaseline>,
    onboarding_rate: Mutex<OnboardingRate>,
    new_identities: Mutex<NewIdentityCount>,
    returning: Mutex<ReturningCount>,
    stranger_failures: Mutex<StrangerFailures>,
    regions: Mutex<RegionShares>,
    device_churn: Mutex<DeviceChurn>,
}

impl Default for Baselines {
    fn default() -> Self {
        Baselines::new([0, 24])
    }
}

/// Pseudo working hours the office-hours prior is worth, spread over its hours.
const STAFF_PRIOR_EVENTS: u64 = MIN_STAFF_HOUR_SAMPLES;

impl Baselines {
    /// Baselines whose staff hours start from the bank's office hours
    /// (`[start, end)`, local) as a prior; `[0, 24]` is no opinion.
    pub fn new(office_hours: [u8; 2]) -> Baselines {
        let mut prior = [0u64; 24];
        let [open, close] = office_hours;
        let span = u64::from(close.saturating_sub(open)).max(1);
        for h in open..close.min(24) {
            prior[usize::from(h)] = STAFF_PRIOR_EVENTS.div_ceil(span);
        }
        Baselines {
            steps: (0..2 * Step::ALL.len()).map(|_| Mutex::new(StepBaseline::new())).collect(),
            hours: Mutex::new(PopulationHours::default()),
            // The prior sits in the previous epoch: the first rotation forgets it.
            staff_hours: Mutex::new(StaffHours { current: [0; 24], previous: prior, current_n: 0 }),
            staff_days: Mutex::new(StaffDays::default()),
            ip_onboarding: Mutex::new(LevelBaseline::new()),
            onboarding_rate: Mutex::new(OnboardingRate::default()),
            new_identities: Mutex::new(NewIdentityCount::default()),
            returning: Mutex::new(ReturningCount::default()),
            stranger_failures: Mutex::new(StrangerFailures::default()),
            regions: Mutex::new(RegionShares::default()),
            device_churn: Mutex::new(DeviceChurn::default()),
        }
    }

    /// Read where the event stands against the population as it was before
    /// it, then learn from it (unless `learn` is false: a late event, or one
    /// whose agent names itself automation; the baselines describe people).
    pub fn observe(&self, step: Step, duration_ms: Option<u64>, hour: EventHour, learn: bool) -> BaselineReading {
        self.observe_timed(step, duration_ms, false, 0.0, hour, learn)
    }

    /// [`Baselines::observe`], for a duration that was not reported but
    /// taken from the gap since the session's previous event (`gap_timed`):
    /// ranked among, and learnt into, durations taken the same way.
    /// `apart_rank` is the rank of the duration longer by `margin` (a share),
    /// once the step's baseline is ready; before, `duration_rank`.
    pub fn observe_timed(&self, step: Step, duration_ms: Option<u64>, gap_timed: bool, margin: f32, hour: EventHour, learn: bool) -> BaselineReading {
        let table = step_table(step, gap_timed);
        let (duration_rank, apart_rank, samples, learnt_young) = {
            let mut s = self.steps[table].lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let rank = duration_ms.map_or(0.5, |d| s.rank(d));
            // A young baseline ranks only what is far under the fastest seen
            // (a quarter, from twenty samples half): apart enough already, and
            // a margin on top would let a script at 45% of everyone through
            // on a new install.
            let apart = match duration_ms {
                Some(d) if margin > 0.0 && s.ready => s.rank((d as f64 * (1.0 + f64::from(margin))).round() as u64),
                _ => rank,
            };
            let n = s.samples();
            let learnt_young = match duration_ms {
                Some(d) if learn => Some(s.record(d)).filter(|_| !s.ready),
                _ => None,
            };
            (rank, apart, n, learnt_young)
        };
        let (hour_activity, hours_known) = {
            let mut h = self.hours.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let read = (h.activity(hour.local), h.known());
            if learn {
                h.record(hour);
            }
            read
        };
        BaselineReading { duration_rank, apart_rank, samples, hour_activity, hours_known, learnt_young }
    }

    /// Take back a duration of `step` (timed by the gap, as in
    /// [`Baselines::observe_timed`]) that was learnt before, `placed` as its
    /// reading said: it came from a session that turned out scripted.
    /// Returns whether it was found.
    pub fn unlearn_step(&self, step: Step, gap_timed: bool, duration_ms: u64, placed: Placed) -> bool {
        locked(&self.steps[step_table(step, gap_timed)]).unlearn(duration_ms, placed)
    }

    /// The population's 99th percentile of "fresh identities one address
    /// onboarded in the last hour", as it stood before this reading; then
    /// learn the reading (unless `learn` is false).
    pub fn ip_onboarding_level(&self, reading: f32, learn: bool) -> f32 {
        self.ip_onboarding.lock().unwrap_or_else(std::sync::PoisonError::into_inner).observe(reading, learn)
    }

    /// The population's onboarding surge at an onboarding event at `ts_ms`
    /// whose hour has `hour_activity` (see [`OnboardingRate`]), leaving out
    /// `own` events of the last hour (the event's own address), as it stood
    /// before this event; then count the event (unless `learn` is false).
    pub fn onboarding_surge(&self, ts_ms: i64, hour_activity: f32, own: f32, learn: bool) -> f32 {
        locked(&self.onboarding_rate).observe(ts_ms, hour_activity, own, learn)
    }

    /// The population's fresh identities in the last hour and the last 24
    /// clock hours at `ts_ms`, counting first the event's own identity if it
    /// is one not counted before (`fresh`; see [`NewIdentityCount`]).
    pub fn new_identities(&self, ts_ms: i64, fresh: bool) -> (f32, f32) {
        locked(&self.new_identities).observe(ts_ms, fresh)
    }

    /// The population's failed logins of known customers on devices nobody
    /// had used, in the last hour and the median hour of the day before,
    /// counting first this one if it is one (`count`; `learn`: a login the
    /// baselines learn from; see [`StrangerFailures`]).
    pub fn stranger_login_failures(&self, ts_ms: i64, count: bool, learn: bool) -> (f32, f32) {
        locked(&self.stranger_failures).observe(ts_ms, count, learn)
    }

    /// The share of the population's events that named `region` (a hash),
    /// before this one (-1 until enough have); then count it if `learn`
    /// (see [`RegionShares`]).
    pub fn region_share(&self, region: u32, learn: bool) -> f32 {
        locked(&self.regions).observe(region, learn)
    }

    /// The share of the channel's logins of returning customers that came
    /// from a device new to their profile, before this event (-1 until
    /// [`MIN_CHURN_LOGINS`]); then count this login if it is one
    /// (`new_device`; see [`DeviceChurn`]). `channel`: 0 app, 1 web, 2 not named.
    pub fn device_churn(&self, channel: usize, new_device: Option<bool>) -> f32 {
        locked(&self.device_churn).observe(channel, new_device)
    }

    /// A returning customer's last active hour (hours since the epoch of
    /// event time) moved from `from` (0: none) to `to`.
    pub(crate) fn returning_moved(&self, from: u32, to: u32) {
        locked(&self.returning).moved(from, to);
    }

    /// The population's distinct returning customers in the 24 clock hours
    /// up to and including the one of `ts_ms`.
    pub fn returning_customers(&self, ts_ms: i64) -> f32 {
        locked(&self.returning).last_day(ts_ms.div_euclid(3_600_000)) as f32
    }

    /// Where a local hour stands among the hours the bank's staff work
    /// (times 24, as [`BaselineReading::hour_activity`]).
    pub fn staff_hour_activity(&self, hour: u8) -> f32 {
        self.staff_hours.lock().unwrap_or_else(std::sync::PoisonError::into_inner).activity(hour)
    }

    /// Learn one finished working day of one staff member: each hour they
    /// worked counts once, and the records they read. Days, not accesses:
    /// an insider's thousand-record night counts as one night, and only
    /// once it is over, so the pull itself never makes its hour look usual.
    /// (A day on which the member was refused an access never comes here.)
    pub fn learn_staff_day(&self, hours_mask: u32, records: u32) {
        {
            let mut h = locked(&self.staff_hours);
            for hour in 0..24u8 {
                if hours_mask & (1 << hour) != 0 {
                    h.record(hour);
                }
            }
        }
        locked(&self.staff_days).learn(records);
    }

    /// Records the bank's staff read on a typical working day: the median
    /// of the latest closed days that read something (0 before
    /// [`MIN_STAFF_DAYS`] of them).
    pub fn staff_typical_day(&self) -> f32 {
        locked(&self.staff_days).typical()
    }

    /// Durations (ms) of one step at the given quantiles, for the entity API
    /// and reports; `None` before the baseline has enough samples.
    pub fn step_quantiles(&self, step: Step, quantiles: &[f64]) -> Option<Vec<u64>> {
        let s = self.steps[step as usize].lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if s.samples() < MIN_BASELINE_SAMPLES {
            return None;
        }
        let mut both = s.current.clone();
        let _ = both.add(&s.previous);
        Some(quantiles.iter().map(|&q| both.value_at_quantile(q)).collect())
    }
}

/// A histogram as a snapshot keeps it: its bounds and each recorded
/// bucket's value and count. Recording each value again puts it in the same
/// bucket, so the copy ranks exactly as the original.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct HistogramState {
    high: u64,
    sigfig: u8,
    counts: Vec<(u64, u32)>,
}

impl HistogramState {
    fn of(h: &Histogram<u32>) -> HistogramState {
        HistogramState { high: h.high(), sigfig: h.sigfig(), counts: h.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect() }
    }

    fn restore(&self) -> Result<Histogram<u32>, Error> {
        let bad = |what: String| Error::Snapshot(format!("baseline histogram: {what}"));
        // The only shapes this crate builds; anything else is not its snapshot.
        if !matches!((self.high, self.sigfig), (MAX_DURATION_MS | 1_000_000, 2)) {
            return Err(bad(format!("bounds 1..{} at {} significant figures", self.high, self.sigfig)));
        }
        let mut h = Histogram::new_with_bounds(1, self.high.max(2), self.sigfig).map_err(|e| bad(e.to_string()))?;
        for &(value, count) in &self.counts {
            h.record_n(value, count).map_err(|e| bad(format!("value {value}: {e}")))?;
        }
        Ok(h)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StepState {
    current: HistogramState,
    previous: HistogramState,
    held: HistogramState,
    hold_window: u64,
    since_refresh: u64,
    table: [f64; RANKS.len()],
    ready: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LevelState {
    current: HistogramState,
    previous: HistogramState,
    since_refresh: u64,
    level: f32,
}

/// Everything the population baselines have learnt, for a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaselinesState {
    steps: Vec<StepState>,
    hours: PopulationHours,
    staff_hours: StaffHours,
    staff_days: StaffDays,
    ip_onboarding: LevelState,
    onboarding_rate: OnboardingRate,
    new_identities: NewIdentityCount,
    returning: ReturningCount,
    stranger_failures: StrangerFailures,
    regions: RegionShares,
    device_churn: DeviceChurn,
}

/// The step baseline a duration is ranked in and learnt into: reported
/// durations and durations taken from session gaps are kept apart.
fn step_table(step: Step, gap_timed: bool) -> usize {
    step as usize + if gap_timed { Step::ALL.len() } else { 0 }
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Baselines {
    /// A copy of what the baselines have learnt.
    pub fn export_state(&self) -> BaselinesState {
        let steps = self
            .steps
            .iter()
            .map(|s| {
                let s = locked(s);
                StepState {
                    current: HistogramState::of(&s.current),
                    previous: HistogramState::of(&s.previous),
                    held: HistogramState::of(&s.held),
                    hold_window: s.hold_window,
                    since_refresh: s.since_refresh,
                    table: s.table,
                    ready: s.ready,
                }
            })
            .collect();
        let ip = locked(&self.ip_onboarding);
        BaselinesState {
            steps,
            hours: locked(&self.hours).clone(),
            staff_hours: locked(&self.staff_hours).clone(),
            staff_days: locked(&self.staff_days).clone(),
            ip_onboarding: LevelState { current: HistogramState::of(&ip.current), previous: HistogramState::of(&ip.previous), since_refresh: ip.since_refresh, level: ip.level },
            onboarding_rate: locked(&self.onboarding_rate).clone(),
            new_identities: locked(&self.new_identities).clone(),
            returning: locked(&self.returning).clone(),
            stranger_failures: locked(&self.stranger_failures).clone(),
            regions: locked(&self.regions).clone(),
            device_churn: locked(&self.device_churn).clone(),
        }
    }

    /// Take over what a snapshot's baselines had learnt.
    ///
    /// # Errors
    /// [`Error::Snapshot`] when the state does not fit this build (another
    /// number of steps, a histogram that cannot be rebuilt).
    pub fn restore_state(&self, state: &BaselinesState) -> Result<(), Error> {
        if state.steps.len() != self.steps.len() {
            return Err(Error::Snapshot(format!("baselines for {} steps, this build has {}", state.steps.len(), self.steps.len())));
        }
        // Everything is rebuilt before anything is replaced: a state that
        // fails half way leaves the baselines as they were.
        let steps = state
            .steps
            .iter()
            .map(|st| {
                Ok(StepBaseline {
                    current: st.current.restore()?,
                    previous: st.previous.restore()?,
                    held: st.held.restore()?,
                    hold_window: st.hold_window,
                    since_refresh: st.since_refresh,
                    table: st.table,
                    ready: st.ready,
                })
            })
            .collect::<Result<Vec<StepBaseline>, Error>>()?;
        state.onboarding_rate.counts.check("an onboarding rate")?;
        state.new_identities.counts.check("a count of fresh identities")?;
        state.stranger_failures.counts.check("a count of stranger login failures")?;
        state.regions.check()?;
        state.device_churn.check()?;
        state.hours.check()?;
        state.returning.check()?;
        state.staff_days.check()?;
        let ip = &state.ip_onboarding;
        let ip = LevelBaseline { current: ip.current.restore()?, previous: ip.previous.restore()?, since_refresh: ip.since_refresh, level: ip.level };
        for (slot, restored) in self.steps.iter().zip(steps) {
            *locked(slot) = restored;
        }
        *locked(&self.hours) = state.hours.clone();
        *locked(&self.staff_hours) = state.staff_hours.clone();
        *locked(&self.staff_days) = state.staff_days.clone();
        *locked(&self.ip_onboarding) = ip;
        *locked(&self.onboarding_rate) = state.onboarding_rate.clone();
        *locked(&self.new_identities) = state.new_identities.clone();
        *locked(&self.returning) = state.returning.clone();
        *locked(&self.stranger_failures) = state.stranger_failures.clone();
        *locked(&self.regions) = state.regions.clone();
        *locked(&self.device_churn) = state.device_churn.clone();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// A person's duration around `median`: log-normal-ish, median × e^(0.5 z), z roughly normal.
    fn person(rng: &mut impl Rng, median: f64) -> u64 {
        let z: f64 = (0..6).map(|_| rng.gen_range(-1.0..1.0)).sum::<f64>() / 1.41;
        (median * (0.5 * z).exp()) as u64
    }

    /// Teach `step` `n` people's durations around `median`.
    fn learn_people(b: &Baselines, step: Step, rng: &mut impl Rng, median: f64, n: u64) {
        for _ in 0..n {
            b.observe(step, Some(person(rng, median)), at(10), true);
        }
    }

    #[test]
    fn ranks_follow_the_population_not_a_constant() {
        // Two worlds: one whose step takes ~10 s, one whose step takes ~400 ms.
        for median in [10_000.0f64, 400.0] {
            let b = Baselines::default();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
            learn_people(&b, Step::IdAuthenticity, &mut rng, median, 5_000);
            let at = |ms: f64| b.observe(Step::IdAuthenticity, Some(ms as u64), at(10), false).duration_rank;
            let r_median = at(median);
            assert!((0.4..0.6).contains(&r_median), "median ranks {r_median}");
            assert!(at(median * 0.2) < 0.01, "a fifth of the median is rare in this world");
            assert!(at(median * 3.0) > 0.95);
            // What is fast in one world is normal in the other: 400 ms.
            let r400 = at(400.0);
            if median > 1000.0 {
                assert!(r400 < 0.001, "400 ms in a 10 s world ranks {r400}");
            } else {
                assert!(r400 > 0.3, "400 ms in a 400 ms world ranks {r400}");
            }
        }
    }

    #[test]
    fn a_young_baseline_only_ranks_what_is_far_faster_than_anyone() {
        let b = Baselines::default();
        for i in 0..MIN_COLD_SAMPLES {
            b.observe(Step::Liveness, Some(4_000 + i * 100), at(3), true);
        }
        assert_eq!(b.observe(Step::Liveness, Some(600), at(3), false).duration_rank, 0.0, "600 ms where people took 4 s or more");
        assert_eq!(b.observe(Step::Liveness, Some(1_100), at(3), false).duration_rank, 0.5, "under half, not a quarter: too few people yet");
        assert_eq!(b.observe(Step::Liveness, Some(2_500), at(3), false).duration_rank, 0.5, "quicker than anyone, but not by half: no opinion yet");
        for i in MIN_COLD_SAMPLES..COLD_SAMPLES_AT_HALF {
            b.observe(Step::Liveness, Some(4_000 + i * 100), at(3), true);
        }
        assert_eq!(b.observe(Step::Liveness, Some(1_100), at(3), false).duration_rank, 0.0, "under half, among twenty people");
        assert_eq!(b.observe(Step::Liveness, Some(2_500), at(3), false).duration_rank, 0.5);
    }

    #[test]
    fn a_young_baseline_holds_out_from_twenty_samples_not_before() {
        let b = Baselines::default();
        for i in 0..(COLD_SAMPLES_AT_HALF - 1) {
            b.observe(Step::Liveness, Some(8_000 + i * 100), at(3), true);
        }
        // Nineteen samples: 1 s ranks (under a quarter of 8 s) and is learnt.
        assert_eq!(b.observe(Step::Liveness, Some(1_000), at(3), true).duration_rank, 0.0);
        assert_eq!(b.observe(Step::Liveness, Some(900), at(3), false).duration_rank, 0.5, "1 s is the fastest now");
        // Twenty: 450 ms ranks (under half of 1 s) and is held out, so the
        // fastest stays 1 s and 480 ms still ranks.
        assert_eq!(b.observe(Step::Liveness, Some(450), at(3), true).duration_rank, 0.0);
        assert_eq!(b.observe(Step::Liveness, Some(480), at(3), false).duration_rank, 0.0);
    }

    #[test]
    fn a_first_night_script_is_ranked_after_a_handful_of_people_and_a_quick_person_still_teaches() {
        // A small bank's first night: six people through face match, 8.5-17 s each.
        let b = Baselines::default();
        for ms in [10_693, 17_365, 17_038, 11_416, 8_946, 8_541] {
            b.observe(Step::FaceMatch, Some(ms), at(1), true);
        }
        assert_eq!(b.observe(Step::FaceMatch, Some(225), at(1), false).duration_rank, 0.0, "a 225 ms face match is no person's");
        // Five people were not enough.
        let few = Baselines::default();
        for ms in [10_693, 17_365, 17_038, 11_416, 8_946] {
            few.observe(Step::FaceMatch, Some(ms), at(1), true);
        }
        assert_eq!(few.observe(Step::FaceMatch, Some(225), at(1), false).duration_rank, 0.5);
        // Before twenty samples nothing is held: a step's quick minority that
        // had not come yet (an auto-capture at 1.5 s) becomes its fastest,
        // rather than ranking fast for good.
        assert_eq!(b.observe(Step::FaceMatch, Some(1_500), at(1), true).duration_rank, 0.0);
        assert_eq!(b.observe(Step::FaceMatch, Some(1_400), at(1), false).duration_rank, 0.5, "1.5 s was learnt");
    }

    #[test]
    fn a_young_baseline_takes_a_duration_back_a_ready_one_does_not() {
        let b = Baselines::default();
        for i in 0..10 {
            b.observe(Step::FaceMatch, Some(4_000 + i * 100), at(1), true);
        }
        // A script's 300 ms, learnt, is the fastest: the next script at 280 ms no longer ranks.
        let script = b.observe(Step::FaceMatch, Some(300), at(1), true);
        assert_eq!((script.duration_rank, script.learnt_young), (0.0, Some(Placed::Ranked)));
        assert_eq!(b.observe(Step::FaceMatch, Some(280), at(1), false).duration_rank, 0.5);
        assert_eq!(b.observe(Step::FaceMatch, Some(280), at(1), false).learnt_young, None, "not learnt, nothing to take back");
        assert!(b.unlearn_step(Step::FaceMatch, false, 300, Placed::Ranked));
        assert_eq!(b.observe(Step::FaceMatch, Some(280), at(1), false).duration_rank, 0.0, "4 s is the fastest again");
        // Nothing of that duration left to take back, nor in the other timing's table.
        assert!(!b.unlearn_step(Step::FaceMatch, false, 300, Placed::Ranked));
        b.observe(Step::FaceMatch, Some(300), at(1), true);
        assert!(!b.unlearn_step(Step::FaceMatch, true, 300, Placed::Ranked), "gap-timed durations are another table");
        // From twenty samples a young baseline holds out what is under half
        // its fastest: taken back from the hold, not from an epoch's bucket.
        let young = Baselines::default();
        for i in 0..COLD_SAMPLES_AT_HALF {
            young.observe(Step::FaceMatch, Some(4_000 + i * 10), at(1), true);
        }
        assert_eq!(young.observe(Step::FaceMatch, Some(1_500), at(1), true).learnt_young, Some(Placed::Held));
        let table = |b: &Baselines| {
            let s = locked(&b.steps[step_table(Step::FaceMatch, false)]);
            (s.held.len(), s.samples())
        };
        assert_eq!(table(&young), (1, COLD_SAMPLES_AT_HALF));
        // A ranked sample in the same bucket (one learnt before the hold
        // began): each is taken back from where it was put, never the other.
        locked(&young.steps[step_table(Step::FaceMatch, false)]).current.record(1_500).unwrap();
        assert!(young.unlearn_step(Step::FaceMatch, false, 1_500, Placed::Held));
        assert_eq!(table(&young), (0, COLD_SAMPLES_AT_HALF + 1));
        locked(&young.steps[step_table(Step::FaceMatch, false)]).held.record(1_500).unwrap();
        assert!(young.unlearn_step(Step::FaceMatch, false, 1_500, Placed::Ranked));
        assert_eq!(table(&young), (1, COLD_SAMPLES_AT_HALF), "the ranked one went; the held one stayed");
        // Nothing ranked left in that bucket: a ranked duration does not take the held one in its stead.
        assert!(!young.unlearn_step(Step::FaceMatch, false, 1_500, Placed::Ranked));
        assert_eq!(table(&young), (1, COLD_SAMPLES_AT_HALF));
        // A ready baseline takes nothing back.
        let ready = Baselines::default();
        for i in 0..MIN_BASELINE_SAMPLES {
            ready.observe(Step::FaceMatch, Some(4_000 + i * 10), at(1), true);
        }
        assert_eq!(ready.observe(Step::FaceMatch, Some(3_000), at(1), true).learnt_young, None, "a ready baseline keeps what it learns");
        assert!(!ready.unlearn_step(Step::FaceMatch, false, 3_000, Placed::Ranked));
        assert_eq!(table(&ready).1, MIN_BASELINE_SAMPLES + 1);
    }

    #[test]
    fn a_level_baseline_reports_the_busiest_percent() {
        let b = Baselines::default();
        assert_eq!(b.ip_onboarding_level(3.0, false), LEVEL_UNKNOWN);
        for i in 0..1_000u32 {
            b.ip_onboarding_level((1 + i % 5) as f32, true);
        }
        let level = b.ip_onboarding_level(1.0, false);
        assert!((4.0..=5.0).contains(&level), "{level}");
    }

    #[test]
    fn the_margin_waits_for_a_ready_baseline() {
        let b = Baselines::default();
        for i in 0..COLD_SAMPLES_AT_HALF {
            b.observe(Step::Liveness, Some(4_000 + i * 100), at(3), true);
        }
        // 1,900 ms is under half of 4,000: a young baseline ranks it, margin or not.
        let young = b.observe_timed(Step::Liveness, Some(1_900), false, 0.15, at(3), false);
        assert_eq!((young.duration_rank, young.apart_rank), (0.0, 0.0));
        for i in 0..MIN_BASELINE_SAMPLES {
            b.observe(Step::Liveness, Some(4_000 + i * 100), at(3), true);
        }
        // Ready: 3,900 ms is below everyone, 4,485 ms (15% more) is not.
        let ready = b.observe_timed(Step::Liveness, Some(3_900), false, 0.15, at(3), false);
        assert_eq!(ready.duration_rank, 0.0);
        assert!(ready.apart_rank > 0.01, "{}", ready.apart_rank);
    }

    #[test]
    fn an_empty_baseline_reads_typical() {
        let b = Baselines::default();
        for _ in 0..(MIN_COLD_SAMPLES - 1) {
            b.observe(Step::Otp, Some(10_000), at(3), true);
        }
        assert_eq!(b.observe(Step::Otp, Some(1), at(3), false).duration_rank, 0.5, "no rank at all before six samples");
        for _ in 0..(MIN_BASELINE_SAMPLES - MIN_COLD_SAMPLES) {
            b.observe(Step::Otp, Some(10_000), at(3), true);
        }
        let r = b.observe(Step::Otp, Some(6_000), at(3), false);
        assert_eq!(r.duration_rank, 0.5, "no percentile before the baseline is ready");
        assert_eq!(r.samples, MIN_BASELINE_SAMPLES - 1);
        assert_eq!(r.hour_activity, 1.0, "no hour baseline yet either");
        assert_eq!(b.observe(Step::Otp, None, at(3), false).duration_rank, 0.5);
    }

    #[test]
    fn gap_timed_steps_keep_a_baseline_of_their_own() {
        let b = Baselines::default();
        for i in 0..2_000u64 {
            // Reported: about a second. Taken from gaps: about half a minute.
            b.observe(Step::Otp, Some(800 + i % 400), at(11), true);
            b.observe_timed(Step::Otp, Some(25_000 + (i % 100) * 100), true, 0.0, at(11), true);
        }
        let reported = b.observe(Step::Otp, Some(1_000), at(11), false);
        let gap = b.observe_timed(Step::Otp, Some(1_000), true, 0.0, at(11), false);
        assert!(reported.duration_rank > 0.2, "a second is ordinary among reported durations: {}", reported.duration_rank);
        assert!(gap.duration_rank < 0.01, "and the fastest of all among gaps: {}", gap.duration_rank);
        assert_eq!((reported.samples, gap.samples), (2_000, 2_000));
    }

    /// An hour for tests that read no hour of day: each local hour its own clock hour of day 0.
    fn at(local: u8) -> EventHour {
        EventHour { local, index: i64::from(local) }
    }

    /// Feed `days` days of a population from `first_day`: `per_hour(h)` events in each local hour h.
    fn live_days(b: &Baselines, first_day: i64, days: i64, per_hour: impl Fn(u8) -> u32) {
        for index in first_day * 24..(first_day + days) * 24 {
            let hour = EventHour { local: index.rem_euclid(24) as u8, index };
            for _ in 0..per_hour(hour.local) {
                b.observe(Step::Login, None, hour, true);
            }
        }
    }

    fn activity(b: &Baselines, day: i64, local: u8) -> (f32, bool) {
        let r = b.observe(Step::Login, None, EventHour { local, index: day * 24 + i64::from(local) }, false);
        (r.hour_activity, r.hours_known)
    }

    /// A daytime population: busy 9..18, a trickle at 2 am, some traffic otherwise.
    fn daytime(h: u8) -> u32 {
        match h {
            9..=17 => 200,
            2 => 2,
            _ => 20,
        }
    }

    #[test]
    fn stranger_failures_read_their_median_hour_only_after_six_hours() {
        const HOUR: i64 = 3_600_000;
        let b = Baselines::default();
        // One an hour from 08:00; reading at 13:30 spans five complete hours.
        for h in 0..6 {
            b.stranger_login_failures(h * HOUR, true, true);
        }
        assert_eq!(b.stranger_login_failures(5 * HOUR + HOUR / 2, false, false), (1.0, -1.0), "five hours are too few");
        // At 14:10, six complete hours behind: one in each, one in the last hour (13:00 is past it).
        assert_eq!(b.stranger_login_failures(6 * HOUR + HOUR / 6, true, true), (1.0, 1.0));
        // A burst within the hour counts each; the day's level is unmoved.
        for m in 1..=9 {
            let (n, level) = b.stranger_login_failures(6 * HOUR + HOUR / 6 + m * 60_000, true, true);
            assert_eq!((n, level), (1.0 + m as f32, 1.0));
        }
        // Three hours of a campaign later, its own hours do not raise the
        // bar it is read against: the median hour is still one (a mean would read 4).
        for h in 7..9 {
            for m in 0..10 {
                b.stranger_login_failures(h * HOUR + m * 60_000, true, true);
            }
        }
        let (_, level) = b.stranger_login_failures(9 * HOUR + 30 * 60_000, false, false);
        assert_eq!(level, 1.0);
        // Quiet hours count as zeros: a day of one failure in its first hour reads 0.
        let quiet = Baselines::default();
        quiet.stranger_login_failures(0, true, true);
        assert_eq!(quiet.stranger_login_failures(20 * HOUR, false, false).1, 0.0);
    }

    #[test]
    fn each_channel_learns_its_own_share_of_new_devices() {
        let b = Baselines::default();
        let (app, web) = (0, 1);
        // Web sessions that reset their fingerprint: three logins in four on
        // a "new" device. The app keeps its id: one in twenty.
        for i in 0..MIN_CHURN_LOGINS {
            assert_eq!(b.device_churn(web, Some(i % 4 != 0)), -1.0, "no share before enough logins");
            b.device_churn(app, Some(i % 20 == 0));
        }
        assert!((b.device_churn(web, None) - 0.75).abs() < 1e-6);
        assert!((b.device_churn(app, None) - 0.05).abs() < 1e-6);
        assert_eq!(b.device_churn(2, None), -1.0, "a channel never seen has no share");
        // Reading teaches nothing; a client release that resets the app's
        // device ids moves its share within the halving's reach.
        assert!((b.device_churn(app, None) - 0.05).abs() < 1e-6);
        for _ in 0..2 * CHURN_HALVE_AT {
            b.device_churn(app, Some(true));
        }
        assert!(b.device_churn(app, None) > 0.8, "{}", b.device_churn(app, None));
        // A snapshot keeps it; a forged one that counts more new devices than logins is refused.
        let state = b.export_state();
        let restored = Baselines::default();
        restored.restore_state(&state).unwrap();
        assert_eq!(restored.device_churn(web, None), b.device_churn(web, None));
        let mut forged = state.clone();
        forged.device_churn.counts[0] = (10, 5);
        assert!(matches!(restored.restore_state(&forged), Err(Error::Snapshot(m)) if m.contains("device churn")));
    }

    #[test]
    fn a_region_this_population_rarely_uses_reads_a_small_share_and_a_spray_cannot_make_it_common() {
        let b = Baselines::default();
        assert_eq!(b.region_share(1, true), -1.0, "no share before enough events");
        for i in 0..MIN_REGION_SAMPLES {
            b.region_share(if i % 100 == 0 { 7 } else { 1 + (i % 3) as u32 }, true);
        }
        let home = b.region_share(1, false);
        assert!((0.3..0.4).contains(&home), "{home}");
        let abroad = b.region_share(7, false);
        assert!(abroad > 0.0 && abroad < 0.011, "{abroad}");
        assert_eq!(b.region_share(99, false), 0.0, "never seen");
        // A spray of made-up regions fills the cap and pushes out the rarest,
        // never the regions the population lives in.
        for r in 1_000..1_000 + 2 * REGION_CAP as u32 {
            b.region_share(r, true);
        }
        assert!(b.region_share(1, false) > 0.2, "home stays common");
        assert!(b.region_share(7, false) > 0.0, "a real region seen twenty times outlives a spray of ones");
        assert!(locked(&b.regions).counts.len() <= REGION_CAP);
        locked(&b.regions).check().unwrap();
        // A real region seen once is as rare as a sprayed one: it may be the one pushed out.
        b.region_share(42, true);
        for r in 5_000..5_000 + REGION_CAP as u32 {
            b.region_share(r, true);
        }
        assert_eq!(b.region_share(42, false), 0.0, "evicted: it reads as rare, which asks more of its events");
        // Halving keeps the shares and the sum.
        let before = locked(&b.regions).total;
        for i in 0..REGION_HALVE_EVERY {
            b.region_share(1 + (i % 2) as u32, true);
        }
        locked(&b.regions).check().unwrap();
        let after = locked(&b.regions).total;
        assert!(after < before + REGION_HALVE_EVERY / 2, "halved: {before} -> {after}");
        assert!(locked(&b.regions).counts.iter().all(|(r, _)| *r < 1_000), "the spray faded out");
        let home = b.region_share(1, false);
        assert!((0.4..0.6).contains(&home), "{home}");
    }

    #[test]
    fn hour_activity_finds_the_quiet_hours_of_this_population() {
        let b = Baselines::default();
        live_days(&b, 0, 3, daytime);
        let (day, known) = activity(&b, 3, 11);
        let (night, _) = activity(&b, 3, 2);
        assert!(known);
        assert!(day > 2.0, "{day}");
        assert!(night < 0.1, "{night}");
    }

    #[test]
    fn the_population_hours_speak_only_once_every_hour_of_day_has_closed() {
        let b = Baselines::default();
        // The install's first minutes, at 23:50 the day before: that hour closes uncounted.
        b.observe(Step::Login, None, EventHour { local: 23, index: -1 }, true);
        // Busy from the first hour: thousands of events long before a day has passed.
        for index in 0..23 {
            for _ in 0..daytime((index % 24) as u8) {
                b.observe(Step::Login, None, EventHour { local: (index % 24) as u8, index }, true);
            }
        }
        // 23:00 of the first day: more than enough events, but 23:00 itself
        // has never closed, and its first minutes alone would read as quiet.
        let (reading, known) = activity(&b, 0, 23);
        assert!(!known);
        assert_eq!(reading, 1.0, "no opinion before a whole day");
        b.observe(Step::Login, None, EventHour { local: 0, index: 24 }, true);
        assert!(activity(&b, 1, 0).1, "known once 23:00 has closed");
    }

    #[test]
    fn the_first_partial_hour_a_flood_and_fading_do_not_bend_the_hours() {
        // An install that starts at 09:50: ten minutes of 09:00 must not
        // make 09:00 read as a quiet hour the next days.
        let b = Baselines::default();
        for index in 9..6 * 24 {
            let events = if index == 9 { 15 } else { 100 };
            for _ in 0..events {
                b.observe(Step::Login, None, EventHour { local: (index % 24) as u8, index }, true);
            }
        }
        let (nine, known) = activity(&b, 6, 9);
        assert!(known);
        assert!((nine - 1.0).abs() < 0.01, "{nine}: 09:00 is an hour like the others");
        // One night's flood of fifty average hours at 03:00 adds at most three
        // times what 03:00 held before; backdated into a closed hour, nothing.
        let b = Baselines::default();
        live_days(&b, 0, 3, |h| if (1..6).contains(&h) { 2 } else { 100 });
        live_days(&b, 3, 1, |h| match h {
            3 => 5_000,
            1..=5 => 2,
            _ => 100,
        });
        // At 04:00 of day 3, the same flood dated 03:59 (within the lateness).
        for _ in 0..5_000 {
            b.observe(Step::Login, None, EventHour { local: 3, index: 3 * 24 + 3 }, true);
        }
        let (night, _) = activity(&b, 4, 3);
        assert!(night < 0.1, "{night}: still a quiet hour");
        // A small bank (100 events a day) keeps its hours known across fading:
        // halving at four weeks would have left 1,400 events, too few to speak.
        let b = Baselines::default();
        live_days(&b, 0, 120, |h| u32::from((8..18).contains(&h)) * 10);
        for day in [30, 41, 45, 60, 90, 120] {
            assert!(activity(&b, day, 11).1, "known on day {day}");
        }
        assert!(activity(&b, 120, 3).0 < 0.1 && activity(&b, 120, 11).0 > 1.5);
    }

    #[test]
    fn an_hour_of_day_seen_once_is_not_read_as_half_as_busy_as_one_seen_twice() {
        // A population as busy at 22:00 as at 10:00. On the second evening,
        // 10:00 has been seen twice and 22:00 once (while it runs, its own
        // events do not count): shares of all events read 22:00 at about half
        // of 10:00, which the odd-hour rules would take for a quiet hour.
        let b = Baselines::default();
        live_days(&b, 0, 1, |_| 100);
        for index in 24..24 + 22 {
            for _ in 0..100 {
                b.observe(Step::Login, None, EventHour { local: (index % 24) as u8, index }, true);
            }
        }
        let evening = b.observe(Step::Login, None, EventHour { local: 22, index: 24 + 22 }, false).hour_activity;
        let morning = b.observe(Step::Login, None, EventHour { local: 10, index: 24 + 22 }, false).hour_activity;
        assert!((evening - 1.0).abs() < 0.01 && (morning - 1.0).abs() < 0.01, "{evening} {morning}");
    }

    #[test]
    fn a_silent_hour_closes_too_and_fading_keeps_the_shape() {
        // An outage of three hours: those hours were seen, empty.
        let b = Baselines::default();
        live_days(&b, 0, 2, |h| if (3..6).contains(&h) { 0 } else { 100 });
        let (quiet, known) = activity(&b, 2, 4);
        assert!(known);
        assert_eq!(quiet, 0.0);
        // Weeks of the same population (past the span, so it fades by half,
        // more than once): the shape stays.
        live_days(&b, 2, 70, daytime);
        let (day, _) = activity(&b, 72, 11);
        let (night, _) = activity(&b, 72, 2);
        assert!(day > 2.0 && night < 0.1, "{day} {night}");
    }

    #[test]
    fn office_hours_are_a_prior_that_real_staff_hours_outweigh() {
        let b = Baselines::new([9, 18]);
        assert!(b.staff_hour_activity(3) < 0.1, "before any access, 03:00 is odd for staff");
        assert!(b.staff_hour_activity(11) > 1.0);
        // This bank's staff really work nights: the data wins.
        for _ in 0..1_000 {
            b.learn_staff_day((1 << 2) | (1 << 3), 10);
        }
        assert!(b.staff_hour_activity(3) > 5.0);
    }

    #[test]
    fn the_banks_typical_staff_day_is_the_median_of_its_latest_closed_days() {
        let b = Baselines::default();
        // Four days are not enough to speak; a day that read nothing is not a day.
        for records in [30, 2_000, 25, 0, 40] {
            b.learn_staff_day(1 << 10, records);
        }
        assert_eq!(b.staff_typical_day(), 0.0);
        // The fifth: a batch team's export does not move the median.
        b.learn_staff_day(1 << 10, 35);
        assert_eq!(b.staff_typical_day(), 35.0);
        // Only the latest days count: a ring's worth of quiet ones push the rest out.
        for _ in 0..STAFF_DAYS_KEPT {
            b.learn_staff_day(1 << 10, 4);
        }
        assert_eq!(b.staff_typical_day(), 4.0);
        // A snapshot keeps them; one whose median disagrees with its days is refused.
        let restored = Baselines::default();
        restored.restore_state(&b.export_state()).unwrap();
        assert_eq!(restored.staff_typical_day(), 4.0);
        let mut broken = b.export_state();
        broken.staff_days.median = 9.0;
        let fresh = Baselines::default();
        assert!(fresh.restore_state(&broken).unwrap_err().to_string().contains("staff days"));
        assert_eq!(fresh.staff_typical_day(), 0.0, "a refused state changes nothing");
    }

    #[test]
    fn epochs_rotate_so_the_baseline_follows_change() {
        let b = Baselines::default();
        for _ in 0..EPOCH_SAMPLES {
            b.observe(Step::FaceMatch, Some(10_000), at(10), true);
        }
        // The pipeline changes: the step now takes 1 s. After two epochs the old world is gone.
        for _ in 0..(2 * EPOCH_SAMPLES) {
            b.observe(Step::FaceMatch, Some(1_000), at(10), true);
        }
        let r = b.observe(Step::FaceMatch, Some(1_000), at(10), false).duration_rank;
        assert!(r > 0.3, "1 s is typical now, ranks {r}");
        assert_eq!(b.step_quantiles(Step::FaceMatch, &[0.5]).unwrap()[0] / 10, 100);
    }


    #[test]
    fn a_campaign_of_scripts_does_not_become_the_population_it_is_ranked_against() {
        let b = Baselines::default();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        learn_people(&b, Step::FaceMatch, &mut rng, 5_000.0, 500);
        // A campaign: one face match in ten is a script's, at 300-700 ms.
        for i in 0..3_000u64 {
            let ms = if i % 10 == 0 { 300 + i % 400 } else { person(&mut rng, 5_000.0) };
            b.observe(Step::FaceMatch, Some(ms), at(10), true);
        }
        let script = b.observe_timed(Step::FaceMatch, Some(650), false, 0.15, at(10), false);
        // Learnt, the campaign would be the fastest tenth: 650 ms would rank about 0.1.
        assert!(script.apart_rank < 0.001, "a script ranks {} after 300 of its own", script.apart_rank);
        let median_person = b.observe(Step::FaceMatch, Some(5_000), at(10), false).duration_rank;
        assert!((0.4..0.6).contains(&median_person), "the median person ranks {median_person}");
    }

    /// A person's duration with a heavier tail than [`person`]: log-normal
    /// with sigma 0.8 (Box-Muller), or (one in `floor_share`) an auto-filled
    /// step at the pipeline's floor of about 300 ms.
    fn wide_person(rng: &mut impl Rng, median: f64, floor_share: f64) -> u64 {
        if rng.gen_bool(floor_share) {
            return 300 + rng.gen_range(0..30);
        }
        let (u1, u2): (f64, f64) = (rng.gen_range(f64::EPSILON..1.0), rng.gen_range(0.0..1.0));
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        (median * (0.8 * z).exp()).max(150.0) as u64
    }

    #[test]
    fn holding_scripts_out_leaves_the_fastest_people_where_they_were() {
        // Every duration is a person's, from a wide spread, with and without
        // a crowd at the pipeline's floor: the fastest percent and the
        // fastest five percent must rank where they are.
        for floor_share in [0.0, 0.2] {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
            let draws: Vec<u64> = (0..20_000).map(|_| wide_person(&mut rng, 3_000.0, floor_share)).collect();
            let b = Baselines::default();
            for &ms in &draws {
                b.observe(Step::Liveness, Some(ms), at(10), true);
            }
            let mut sorted = draws.clone();
            sorted.sort_unstable();
            for (q, lo, hi) in [(0.01, 0.007, 0.013), (0.05, 0.04, 0.06)] {
                let truth = sorted[(sorted.len() as f64 * q) as usize];
                let rank = b.observe(Step::Liveness, Some(truth), at(10), false).duration_rank;
                assert!((lo..hi).contains(&rank), "floor share {floor_share}: the people's own {q} quantile ({truth} ms) ranks {rank}");
            }
        }
    }

    #[test]
    fn a_step_that_really_got_faster_is_taken_in() {
        let b = Baselines::default();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        // Two whole hold windows: the change starts a window.
        learn_people(&b, Step::IdAuthenticity, &mut rng, 6_000.0, 2 * HOLD_WINDOW);
        // The bank moves the check to a backend that answers in ~400 ms, for everyone.
        let mut held_until = None;
        for i in 0..2_000 {
            b.observe(Step::IdAuthenticity, Some(person(&mut rng, 400.0)), at(10), true);
            let rank = b.observe(Step::IdAuthenticity, Some(400), at(10), false).duration_rank;
            if held_until.is_none() && rank > 0.0 {
                held_until = Some(i);
            }
        }
        // Held while under a sixth of the window's first 300 samples (about
        // 53 new ones, a few of which are slow enough to be ranked), then
        // taken in at once. Without the hold it moves at the next refresh, a
        // few samples in; never taken in, never. (A change that lands late in
        // a window is held longer: up to about 220 samples.)
        let held_until = held_until.expect("400 ms never became ordinary");
        assert!((45..=60).contains(&held_until), "taken in after {held_until}");
        let now = b.observe(Step::IdAuthenticity, Some(400), at(10), false).duration_rank;
        // Half the 2,000 new checks are at or under 400 ms, of 4,400 samples.
        assert!((0.18..0.28).contains(&now), "after 2,000 checks at ~400 ms, 400 ms ranks {now}");
    }

    #[test]
    fn a_held_minority_is_never_taken_in_and_is_forgotten() {
        let b = Baselines::default();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        learn_people(&b, Step::FaceMatch, &mut rng, 5_000.0, 2_000);
        // One script in eight, over several windows: never a sixth, never taken in.
        for i in 0..(5 * HOLD_WINDOW) {
            let ms = if i % 8 == 0 { 500 } else { person(&mut rng, 5_000.0) };
            b.observe(Step::FaceMatch, Some(ms), at(10), true);
        }
        assert!(!locked(&b.steps[Step::FaceMatch as usize]).held.is_empty());
        assert!(b.observe(Step::FaceMatch, Some(500), at(10), false).duration_rank < 0.001);
        // The campaign stops; within a window the hold is empty again.
        learn_people(&b, Step::FaceMatch, &mut rng, 5_000.0, HOLD_WINDOW);
        assert_eq!(locked(&b.steps[Step::FaceMatch as usize]).held.len(), 0, "the window closed");
    }

    #[test]
    fn held_durations_survive_a_snapshot() {
        let b = Baselines::default();
        // 400 ranked samples, so the window is past its 300 minimum and a
        // restore that lost the window's count would take in sooner.
        for i in 0..400 {
            b.observe(Step::Otp, Some(4_000 + i * 5), at(10), true);
        }
        // Held, under a sixth of the window: not yet taken in.
        for _ in 0..30 {
            b.observe(Step::Otp, Some(500), at(10), true);
        }
        let restored = Baselines::default();
        restored.restore_state(&serde_json::from_slice(&serde_json::to_vec(&b.export_state()).unwrap()).unwrap()).unwrap();
        assert_eq!(locked(&restored.steps[Step::Otp as usize]).held.len(), 30);
        // Both take in the faster step at the same sample.
        for i in 0..100 {
            let before = [&b, &restored].map(|x| x.observe(Step::Otp, Some(500), at(10), false).duration_rank);
            assert_eq!(before[0], before[1], "sample {i}");
            b.observe(Step::Otp, Some(500), at(10), true);
            restored.observe(Step::Otp, Some(500), at(10), true);
        }
        // Taken in (80 of 480 at 500 ms when the table was rebuilt): no longer the fastest.
        assert!(b.observe(Step::Otp, Some(500), at(10), false).duration_rank > 0.05);
    }

    #[test]
    fn a_snapshot_with_a_broken_ring_of_counts_is_refused_and_changes_nothing() {
        let b = Baselines::default();
        b.new_identities(1_764_000_000_000, true);
        b.onboarding_surge(1_764_000_000_000, 1.0, 0.0, true);
        for broken in [|s: &mut BaselinesState| s.new_identities.counts.minutes.0.truncate(59), |s: &mut BaselinesState| s.onboarding_rate.counts.hours.0.push((0, 1))] {
            let mut state = b.export_state();
            broken(&mut state);
            let fresh = Baselines::default();
            let e = fresh.restore_state(&state).unwrap_err().to_string();
            assert!(e.contains("not 60 and 24"), "{e}");
            assert_eq!(fresh.new_identities(1_764_000_000_000, false), (0.0, 0.0), "nothing was taken over");
        }
        // The returning customers' ring is checked the same way.
        b.returning_moved(0, 490_000);
        let mut state = b.export_state();
        state.returning.hours.0.push((0, 1));
        let fresh = Baselines::default();
        let e = fresh.restore_state(&state).unwrap_err().to_string();
        assert!(e.contains("not 24"), "{e}");
        assert_eq!(fresh.returning_customers(1_764_000_000_000), 0.0, "nothing was taken over");
        let whole = Baselines::default();
        whole.restore_state(&b.export_state()).unwrap();
        assert_eq!(whole.new_identities(1_764_000_000_000, false), (1.0, 1.0));
        assert_eq!(whole.returning_customers(1_764_000_000_000), 1.0);
    }

    #[test]
    fn the_onboarding_surge_follows_the_population_and_leaves_the_own_address_out() {
        const MIN: i64 = 60_000;
        let b = Baselines::default();
        // Twelve quiet-rhythm hours of 60 onboarding events an hour, one a minute.
        let mut t = 1_700_000_000_000 - 1_700_000_000_000 % (60 * MIN);
        let first = b.onboarding_surge(t, 1.0, 0.0, true);
        assert_eq!(first, 1.0, "no history: no opinion");
        for _ in 1..12 * 60 {
            t += MIN;
            b.onboarding_surge(t, 1.0, 0.0, true);
        }
        let steady = b.onboarding_surge(t + MIN, 1.0, 0.0, false);
        assert!((0.9..1.1).contains(&steady), "a steady hour reads about 1: {steady}");
        // The daily rhythm: the same hour is a surge at a quiet hour, less than one at the peak.
        assert!(b.onboarding_surge(t + MIN, 0.5, 0.0, false) > 1.8);
        assert!(b.onboarding_surge(t + MIN, 2.0, 0.0, false) < 0.6);
        // A promotion: five events a minute for the next hour.
        for _ in 0..60 {
            t += MIN;
            for _ in 0..5 {
                b.onboarding_surge(t, 1.0, 0.0, true);
            }
        }
        let promotion = b.onboarding_surge(t, 1.0, 0.0, false);
        assert_eq!(promotion, SURGE_MAX, "five times the usual hour, read at the cap");
        let two_fold = b.onboarding_surge(t, 1.0, 180.0, false);
        assert!((1.8..2.2).contains(&two_fold), "twice the usual hour reads about 2: {two_fold}");
        // The same hour, read by an address that brought 240 of those events itself.
        let own = b.onboarding_surge(t, 1.0, 240.0, false);
        assert!((0.8..1.3).contains(&own), "without its own events the hour is ordinary: {own}");
        // A reading that does not learn leaves the counts alone.
        assert_eq!(b.onboarding_surge(t, 1.0, 0.0, false), promotion);
    }
}
