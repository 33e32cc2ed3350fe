//! The state of one entity and how one event updates and reads it.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::baseline::Placed;
use crate::catalog::{relations, KindLayout, Relation, DISTINCT_COLUMNS, MAX_RELATIONS};
use crate::config::Windows;
use crate::event::{Event, Step};
use crate::keys::{EntityKind, IMPLIED_SESSION_SPAN_S, KIND_COUNT};
use crate::window::{cutoffs, Amounts, Counts, DistinctSet};

/// Devices a customer profile remembers; the oldest is forgotten past this.
pub(crate) const PROFILE_DEVICES: usize = 16;
/// Regions a customer profile remembers.
const PROFILE_REGIONS: usize = 8;
/// Failed codes a customer profile remembers (the long window's); counts
/// saturate past this, far above any rule's bar.
pub(crate) const CODE_FAILURES_KEPT: usize = 32;
/// Failed codes in the short window that make a passed code look like a
/// guess that worked: such a code does not vouch for its device.
const GUESSING_AFTER_FAILED_CODES: usize = 3;
/// Inter-arrival averages are exact for the first this-many gaps, then
/// exponentially weighted, so that an old habit fades.
const GAP_EXACT: u32 = 16;

/// What one event says about the entity being updated.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Observed {
    pub secs: u32,
    pub ms: i64,
    pub failure: bool,
    /// False for events later than the allowed lateness: read, don't write.
    pub apply: bool,
    /// 32-bit fragments of the other entities' keys, for distinct counts.
    pub related: [Option<u32>; KIND_COUNT],
    pub hour: u8,
    pub region: Option<u16>,
    pub device: Option<u32>,
    pub duration_ms: Option<u32>,
    pub records: u32,
    /// Records the bank's staff read on a typical working day (staff
    /// accesses only; 0 until enough days are known).
    pub staff_typical_day: f32,
    /// The customer's key fragment if they are a returning customer.
    pub returning: Option<u32>,
    /// The same, or a customer's first successful login if the store never
    /// saw them onboard: what an address counts as returning (see
    /// [`Observe::vouches`]). A device or an account is vouched for by
    /// `returning` only: a password alone opens a stolen account on a fresh
    /// phone as well.
    pub returning_at_address: Option<u32>,
    /// The customer's key fragment if they are a fresh identity onboarding.
    pub new_identity: Option<u32>,
    /// The verification method this event proves, if it succeeded (a bit of [`METHOD_NAMES`]).
    pub method: Option<u8>,
    /// The step's duration ranks among the fastest of its population
    /// (`FeatureConfig::fast_step_rank`), and apart from it
    /// (`step_rank_margin`) ...
    pub fast: bool,
    /// ... or so at `quick_step_rank`.
    pub quick: bool,
    /// The event is a successful login.
    pub login_ok: bool,
    /// The event is a one-time code: OTP, the 1-won transfer's code, a phone
    /// check. A pass says who is there (the code went to the owner's phone,
    /// or to an account the bank checked is in their name), so it teaches
    /// the customer's devices, hours and regions; so does a face match with
    /// a passed liveness check (`face_check`).
    pub code_step: bool,
    /// The step is a face match (0) or a liveness check (1).
    pub face_check: Option<usize>,
    /// The step, as a bit (`1 << Step as u16`): a session counts each step's speed once.
    pub step_bit: u16,
    /// The event is an onboarding step.
    pub onboarding: bool,
    /// The session is implied (the device's run of events), not a reported id's.
    pub session_implied: bool,
    /// The duration this event taught its step's population baseline while
    /// the baseline was young, if any: what the session keeps in case it
    /// turns out scripted (only a young baseline takes a duration back,
    /// `Baselines::unlearn_step`).
    pub learnt: Option<Learnt>,
}

impl Observed {
    /// Where the event happened, for checks that two of a customer's steps
    /// were taken together: its device's key fragment, or else its subnet's
    /// (0: neither named). Two places of 0 are not one place: an event that
    /// leaves out its device and address must not pair with any other that
    /// does, or leaving them out would be the way to borrow a customer's
    /// methods or pair a photo with someone else's live face. (For methods
    /// and logins a customer's placeless step may take the one place their
    /// passed events came from just before: `Profile::place_of`.)
    pub(crate) fn place(&self) -> u32 {
        self.device.or(self.related[EntityKind::Subnet.index()]).unwrap_or(0)
    }
}

/// A duration one event taught a step's population baseline: what to take
/// back if its session turns out scripted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Learnt {
    pub step: Step,
    /// Taken from the gap since the session's previous event, not reported.
    pub gap_timed: bool,
    /// Where the baseline put it: taken back from there, never from the other.
    pub placed: Placed,
    pub ms: u32,
}

impl Learnt {
    fn table(&self) -> (Step, bool) {
        (self.step, self.gap_timed)
    }
}

/// The verification methods of the FSC's non-face-to-face rule, as bits of
/// `session.methods_ok`'s mask: a copy of the ID with an authenticity check,
/// the 1-won account check, OTP or a security card (or phone), face match with
/// liveness, and anything else the pipeline reports as a method.
pub const METHOD_NAMES: [&str; 5] = ["id_copy_authenticity", "account_1won", "otp_or_card", "face_liveness", "other"];

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct RunningStats {
    n: u32,
    mean: f32,
    var: f32,
}

impl RunningStats {
    fn push(&mut self, x: f32) {
        self.n = self.n.saturating_add(1);
        let alpha = 1.0 / self.n.min(GAP_EXACT) as f32;
        let d = x - self.mean;
        self.mean += alpha * d;
        self.var = (1.0 - alpha) * (self.var + alpha * d * d);
    }

    /// Coefficient of variation; 1.0 (a Poisson process, i.e. human-like)
    /// until there are two gaps to compare.
    fn cv(&self) -> f32 {
        if self.n < 2 || self.mean <= 0.0 {
            1.0
        } else {
            self.var.max(0.0).sqrt() / self.mean
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Profile {
    /// Bit h set: the customer has been seen at local hour h.
    hours: u32,
    /// A successful login has been seen: an existing customer, whatever the stream says.
    logged_in: bool,
    regions: SmallVec<[u16; 2]>,
    /// Devices, and when each first passed a one-time code for this
    /// customer (event seconds; 0: not yet). A block on the customer can
    /// spare the devices that passed a code well before it was set: a
    /// password alone, or a photo, never vouches for a device.
    devices: SmallVec<[(u32, u32); 2]>,
    /// Times of failed codes, in arrival order (the cap drops the first).
    /// Brute force against a second factor fails codes; an honest customer's
    /// failures are mostly photos, faces and liveness, which a count of
    /// every failure mixed in.
    code_failures: Vec<u32>,
    /// When each verification method of [`METHOD_NAMES`] last succeeded for
    /// the customer (event seconds; 0: never), and where ([`Observed::place`]).
    /// The FSC's two-method check reads the session's methods; a
    /// pipeline that sends no session id is judged on what the customer
    /// proved on the same device in the last hour instead.
    methods_at: [(u32, u32); METHOD_NAMES.len()],
    /// Counted as one of the population's fresh identities: at the first
    /// onboarding step met while the customer was not returning (an address
    /// counts them at every such step, in each of its windows).
    counted_fresh: bool,
    /// The local clock hour (`EventHour::index`) of the stranger's failed login
    /// the population last counted for this customer (0: none); one a day.
    stranger_failure_hour: u32,
    /// The clock hour (`EventHour::index`) at which the customer's current
    /// day of teaching the channels' device churn began (0: none), and the
    /// channels (bit c: channel c) they taught within it: one login a day
    /// per channel, so that one account logging in over and over on
    /// made-up device ids moves a share by one login a day, not by thousands.
    #[serde(default)]
    churn_day: (u32, u8),
    /// When a face match (0) and a liveness check (1) last passed for the
    /// customer (event seconds; 0: never), and where ([`Observed::place`]).
    /// A face match alone passes on a held-up photo of the owner, a liveness
    /// check alone on the attacker's own face: only the pair, in one place
    /// within the middle window, says the owner is there.
    #[serde(default)]
    face_checks: [(u32, u32); 2],
    /// The clock hour (of event time, since the epoch; 0: never) at which
    /// the population's count of returning customers holds this customer:
    /// the hour of their last passed event as a returning customer. Each
    /// customer sits in one hour of that count, so its last 24 hours are
    /// distinct customers, as an address's `distinct_returning_24h` is.
    #[serde(default)]
    returning_hour: u32,
    /// When and where ([`Observed::place`]) the customer's latest passed
    /// event that named a place happened. A pipeline may report backend
    /// steps (an ID check, the account opening) with no device and no
    /// address: such a step is taken where the customer's passed events
    /// came from within the short window before it (see [`Profile::place_of`]).
    #[serde(default)]
    last_place: (u32, u32),
    /// When a passed event of the customer last came from another place
    /// than `last_place` (0: never).
    #[serde(default)]
    other_place_at: u32,
    /// When and where the customer last passed a login on a device that
    /// had passed a code for them, or while the profile knew no device (0: never).
    #[serde(default)]
    login_at: (u32, u32),
    /// Where the customer's passed events in their latest reported session
    /// came from, as reported (see [`SessionPlace`]); dropped once past the
    /// hour, so that only the customers of the last hour pay for one.
    #[serde(default)]
    session_place: Option<Box<SessionPlace>>,
}

/// The device and region a customer's passed events in one reported
/// session named. A pipeline may name them only at some steps (the app's),
/// and leave them out at others (the backend's ID check and face match, the
/// account opening; a code step's region): such a step of the same customer
/// and session is judged as coming from them (see
/// `FeatureStore::session_place`). Otherwise a device that opens accounts
/// for one identity after another shows none of them at the openings, and
/// a takeover from abroad shows its region at the login only.
///
/// Not the address: the address rules count identities, and every
/// identity of a session is counted at its steps that name one. Taking the
/// address only counted the same sessions again: on an independent
/// generator's worlds (seeds 11-16, 34-39) no incident more, and 26 honest
/// events more flagged on addresses the rules already flagged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SessionPlace {
    /// Keyed hash of the reported session id.
    pub(crate) session: u64,
    /// Event seconds of the session's first passed event that named any of
    /// them: a step takes them within the hour after it. Not moved by later
    /// steps: those the pipeline filled in name them too, and would keep a
    /// device on a session id for as long as its steps kept coming.
    pub(crate) at_s: u32,
    pub(crate) device_id: Option<compact_str::CompactString>,
    pub(crate) region: Option<compact_str::CompactString>,
    /// Which of them ([`PLACE_DEVICE`], [`PLACE_REGION`]) two passed events
    /// of the session named differently (two people on one session id, a
    /// region told by an address that changed): where a step that names
    /// none came from is not known, and it is left as it came.
    pub(crate) contested: u8,
}

/// Bits of what a step took from its session's place (`FeatureStore::session_place`).
pub const PLACE_DEVICE: u8 = 1;
pub const PLACE_REGION: u8 = 2;

impl SessionPlace {
    /// Take in what a passed event of the session named.
    fn note(&mut self, secs: u32, event: &Event) {
        fn keep<T: PartialEq + Clone>(held: &mut Option<T>, named: Option<&T>, bit: u8, contested: &mut u8) {
            match (held.as_ref(), named) {
                (Some(h), Some(n)) if h != n => *contested |= bit,
                (None, Some(n)) => *held = Some(n.clone()),
                _ => {}
            }
        }
        keep(&mut self.device_id, event.device_id.as_ref(), PLACE_DEVICE, &mut self.contested);
        keep(&mut self.region, event.region.as_ref(), PLACE_REGION, &mut self.contested);
        // A step dated before the session's first (within the lateness) moves the start back.
        self.at_s = self.at_s.min(secs);
    }
}

impl Profile {
    /// The latest passed face match and liveness check as a pair: both
    /// passed in one place (see [`Observed::place`]) within the middle
    /// window of each other. Their place, and the older and newer time.
    fn face_pair(&self, w: &Windows) -> Option<(u32, u32, u32)> {
        let [face, live] = self.face_checks;
        (face.0 != 0 && live.0 != 0 && face.1 != 0 && face.1 == live.1 && face.0.abs_diff(live.0) <= w.mid.len_s()).then(|| (face.1, face.0.min(live.0), face.0.max(live.0)))
    }

    /// Where a customer's event counts for methods and logins: its own
    /// place, or for a step that names neither a device nor an address, the
    /// one place the customer's passed events came from within the short
    /// window before it (0: none). Only the verification methods and the
    /// login take it: a face match and a liveness check pair only where each
    /// named its place.
    ///
    /// Anyone who knows a customer's id can send an event for it from their
    /// own device. A failed one moves nothing, and when passed events came
    /// from two places within the window (the owner's app and someone else's
    /// device), or the latest is dated after the step, the step is placed
    /// nowhere: it counts for nobody, as before it had a place at all.
    fn place_of(&self, w: &Windows, o: &Observed) -> u32 {
        match o.place() {
            0 => {
                let (at, place) = self.last_place;
                let short = w.short.len_s();
                let recent = at != 0 && at <= o.secs && o.secs - at <= short;
                let contested = self.other_place_at != 0 && u64::from(self.other_place_at) + u64::from(short) >= u64::from(o.secs);
                if recent && !contested {
                    place
                } else {
                    0
                }
            }
            place => place,
        }
    }

    /// A passed event named a place: it becomes the latest, or, dated
    /// before the latest, marks another place seen.
    fn passed_at_place(&mut self, secs: u32, here: u32) {
        let secs = secs.max(1);
        let (at, place) = self.last_place;
        if here == place {
            self.last_place.0 = at.max(secs);
        } else if secs >= at {
            if at != 0 {
                self.other_place_at = self.other_place_at.max(at);
            }
            self.last_place = (secs, here);
        } else {
            self.other_place_at = self.other_place_at.max(secs);
        }
    }

    fn knows_device(&self, device: u32) -> bool {
        self.devices.iter().any(|(d, _)| *d == device)
    }

    /// When the device first passed a code for this customer.
    fn code_passed_at(&self, device: u32) -> Option<u32> {
        self.devices.iter().find(|(d, at)| *d == device && *at != 0).map(|(_, at)| *at)
    }

    /// How far a failed code at `secs` falls behind the customer's earlier
    /// failed codes in the long window: its gap to the newest of them, over
    /// the longest pause between them. 0 with fewer than two.
    ///
    /// Guessing keeps a pace; an owner who mistypes the morning after a
    /// night of guesses comes many pauses late. The longest pause, not the
    /// mean gap: a guesser who waits ever longer between tries to look late
    /// must make each wait a multiple of the last, so a day holds only a
    /// few such waits.
    fn code_failure_pace(&self, w: &Windows, secs: u32) -> f32 {
        let first_kept = cutoffs(w, secs)[2];
        // The list holds at most CODE_FAILURES_KEPT, in arrival order.
        let mut earlier = [0u32; CODE_FAILURES_KEPT];
        let mut n = 0;
        // A snapshot is trusted to hold no more than the cap, but not at the price of a panic.
        for t in self.code_failures.iter().copied().filter(|t| *t >= first_kept && *t <= secs).take(CODE_FAILURES_KEPT) {
            earlier[n] = t;
            n += 1;
        }
        if n < 2 {
            return 0.0;
        }
        let earlier = &mut earlier[..n];
        earlier.sort_unstable();
        // Failures within one second of each other pause for a second.
        let longest_pause_s = earlier.windows(2).map(|p| p[1] - p[0]).max().unwrap_or(0).max(1);
        (secs - earlier[n - 1]) as f32 / longest_pause_s as f32
    }

    fn add_code_failure(&mut self, w: &Windows, secs: u32) {
        let first = cutoffs(w, secs)[2];
        self.code_failures.retain(|t| *t >= first);
        if self.code_failures.len() == CODE_FAILURES_KEPT {
            self.code_failures.remove(0);
        }
        self.code_failures.push(secs);
    }
}

/// What a session has shown so far.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SessionState {
    /// Bits of [`METHOD_NAMES`] that succeeded in this session; in an
    /// implied session, only those whose step named no customer (see
    /// `SessionRare::owner`).
    methods: u8,
    /// Steps (`Observed::step_bit`) this session has timed, and those it has
    /// counted as fast and as quick: each step counts once, at its first fast
    /// (or quick) try, so a retry adds nothing and a slow first try hides nothing.
    timed: u16,
    fast: u16,
    quick: u16,
    /// [`SCRIPTED`] and [`ID_SCANNED`].
    flags: SessionFlags,
    /// What only some sessions hold, boxed, so that every other session
    /// (and every entity, the session state being inline) pays one pointer.
    rare: Option<Box<SessionRare>>,
}

impl SessionState {
    /// The methods that count for an event of `customer` (key fragment):
    /// in an implied session, the anonymous ones and, if the event names
    /// the customer who proved them, the named ones. An event that names no
    /// customer cannot show that they are its own.
    fn methods_for(&self, implied: bool, customer: Option<u32>) -> u8 {
        match (&self.rare, implied) {
            (Some(r), true) if r.owned_by(customer) => self.methods | r.owned,
            _ => self.methods,
        }
    }

    /// Note a method proved in the session by `customer` (key fragment).
    fn prove(&mut self, method: u8, implied: bool, customer: Option<u32>) {
        match (implied, customer) {
            (true, Some(customer)) => {
                let r = self.rare.get_or_insert_with(Box::default);
                if r.owner != Some(customer) {
                    r.owner = Some(customer);
                    r.owned = 0;
                }
                r.owned |= 1 << method;
            }
            _ => self.methods |= 1 << method,
        }
    }
}

/// Fast at two steps: what the session teaches from now on goes back.
const SCRIPTED: u8 = 1;
/// An ID was scanned (or its authenticity checked) in the session, before
/// or after any login: someone onboards in it, whose document is their own.
const ID_SCANNED: u8 = 2;

/// A session's marks, as an enum rather than a `u8`: the values it cannot
/// take are where [`Extra`] keeps its tag, as they were in the `bool` this
/// replaced. A plain byte would cost every entity 8 bytes (see
/// `an_entity_fits_its_budget`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[repr(u8)]
enum SessionFlags {
    #[default]
    None = 0,
    Scripted = 1,
    IdScanned = 2,
    Both = 3,
}

impl SessionFlags {
    fn has(self, flag: u8) -> bool {
        self as u8 & flag != 0
    }

    fn with(self, flag: u8) -> SessionFlags {
        match self as u8 | flag {
            0 => SessionFlags::None,
            1 => SessionFlags::Scripted,
            2 => SessionFlags::IdScanned,
            _ => SessionFlags::Both,
        }
    }
}

/// What only some sessions hold.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct SessionRare {
    /// The durations the session taught young step baselines, fast or not,
    /// until a second fast step shows it scripted and takes them all back
    /// (see [`Observe::unlearn`]; at most [`MAX_TAUGHT_PER_STEP`] a step,
    /// see [`keep_taught`]). Only a new install's first sessions (young
    /// baselines) fill it.
    taught: Vec<Learnt>,
    /// The customer the session last logged in as, and from which device
    /// (see [`Entity::logged_in_as`]).
    login: Option<SessionLogin>,
    /// In an implied session, the customer (key fragment) whose steps last
    /// proved a method, and the methods they proved since another customer's
    /// did. An implied session is a device's run of events, and on a shared
    /// device (a PC방 seat, a family tablet) or under a borrowed device id
    /// that run holds several people: a method proved by one customer is
    /// not another's. Methods whose step named no customer (a pipeline that
    /// names the customer at the opening only) stay in the session's own
    /// mask, anyone's, as they were before.
    owner: Option<u32>,
    owned: u8,
}

impl SessionRare {
    /// Nothing but durations to give back: a scripted session drops the box.
    fn only_taught(&self) -> bool {
        self.login.is_none() && self.owner.is_none()
    }

    fn owned_by(&self, customer: Option<u32>) -> bool {
        customer.is_some() && self.owner == customer
    }
}

/// A customer a session logged in as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SessionLogin {
    pub(crate) customer: compact_str::CompactString,
    /// Keyed hash of the login's device, if it named one.
    pub(crate) device: Option<u64>,
    /// Keyed hash of the ID document the login named, if it named one.
    pub(crate) doc: Option<u64>,
    /// Keyed hash of the login's subnet (/24, /64), if it came from an address.
    pub(crate) subnet: Option<u64>,
    /// Event time of the login, ms.
    pub(crate) at_ms: i64,
}

/// Durations one session may teach each young step baseline (reported and
/// gap-timed durations are two). A person retries a step once or twice; a
/// script that retried one a hundred times would otherwise make a young
/// baseline ready by itself, its own pace the fastest percents, and a ready
/// baseline takes nothing back.
const MAX_TAUGHT_PER_STEP: usize = 3;

/// Keep `l`, a duration the session just taught, among those it would give
/// back. Past [`MAX_TAUGHT_PER_STEP`] for its step the session keeps the
/// fastest, and the one it does not keep is returned, to be taken back at
/// once: a young baseline ranks against its fastest, so what a session
/// teaches must never be a duration it cannot give back.
fn keep_taught(taught: &mut Vec<Learnt>, l: Learnt) -> Option<Learnt> {
    let slowest = taught.iter().enumerate().filter(|(_, x)| x.table() == l.table()).max_by_key(|(_, x)| x.ms);
    let kept = taught.iter().filter(|x| x.table() == l.table()).count();
    match slowest {
        _ if kept < MAX_TAUGHT_PER_STEP => {
            taught.push(l);
            None
        }
        Some((i, x)) if l.ms < x.ms => Some(std::mem::replace(&mut taught[i], l)),
        _ => Some(l),
    }
}

/// State only some kinds keep, boxed separately so that a customer does not
/// pay for a staff member's record rings.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Extra {
    None,
    Profile(Box<Profile>),
    Records(Box<StaffProfile>),
    Session(SessionState),
}

/// `staff.days_since_refused` of a staff member never refused an access (as
/// far as the store remembers): more days than any rule counts.
pub const NEVER_REFUSED_DAYS: f32 = 1.0e6;

/// A staff member's record counts and habits: the hours they work and how
/// many records a working day of theirs usually touches, so that a
/// batch-export team's normal day is not an insider's bulk pull.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct StaffProfile {
    records: Amounts,
    /// Bit h set: worked at local hour h on an earlier day that has joined
    /// the habit. A day joins once it is over (at 06:00 the next morning),
    /// so that a night's pull does not make its own hour "seen" after the
    /// first record.
    hours: u32,
    /// Worked at hour h on two earlier days or more: a habit. One night is
    /// not, so that a pull that got through once (or an evening's overtime)
    /// does not make the next one usual to the off-hours rules.
    habit_hours: u32,
    hours_today: u32,
    /// Day (event time, local days) being counted, and its records so far.
    day: u32,
    today: u32,
    /// Accesses today: a member's pace is read in accesses, not records,
    /// since one export of hundreds of records is a routine batch.
    #[serde(default)]
    accesses_today: u32,
    /// Days with activity before `day`, and their records, exponentially weighted.
    days_active: u16,
    typical_daily: f32,
    /// The last day on which the pipeline refused this member an access (a
    /// block on them), plus one (0: never). Such a day teaches the habit
    /// nothing, neither its hours nor its records: an insider blocked one
    /// night must not find that night usual the next.
    refused_day: u32,
    /// The last day on which a block on this member themself (not on an
    /// address, device or session they shared) refused them, plus one (0:
    /// never): `staff.days_since_refused`. A colleague's pull that gets the
    /// branch's NAT address blocked refuses everyone behind it, and must not
    /// step them all up for a week.
    stopped_day: u32,
    /// The day closed last, waiting until [`CLOSED_DAY_GRACE_S`] into the
    /// next before it joins the habit: a pull that runs past midnight and is
    /// refused after it began the day before, and that day must not teach.
    pending: Option<ClosedDay>,
    /// Local time of the latest access (seconds since the epoch).
    last_local: u32,
    /// Local time at which the current session of work began: the first
    /// access after a pause of more than [`SAME_SESSION_GAP_S`].
    session_began: u32,
}

/// A staff member's working day that joined their habit: the local hours
/// worked (bit h: hour h; 0: no day) and the records read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StaffDay {
    pub hours: u32,
    pub records: u32,
}

/// A working day that is over: its hours and records.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct ClosedDay {
    day: u32,
    hours: u32,
    records: u32,
    /// Local time of its last access.
    last_local: u32,
}

/// How long into the next day a closed day waits before it teaches the
/// habit: until 06:00 local. A night's pull runs past midnight; a day shift
/// starts after six.
const CLOSED_DAY_GRACE_S: u32 = 6 * 3_600;

/// A pause longer than this ends a session of work. A refusal in the small
/// hours strikes the day before only if its session began then: one
/// session that ran past midnight. A day's work that ended in the afternoon stays.
const SAME_SESSION_GAP_S: u32 = 3 * 3_600;

impl StaffProfile {
    /// Add one access; returns each working day it taught the habit (for
    /// the bank's staff hours and typical day). Two at most: the day that
    /// waited out its grace, and the one this access closed, if its grace
    /// is over too (a member back after a day off).
    fn add(&mut self, w: &Windows, secs: u32, hour: u8, records: u32) -> [StaffDay; 2] {
        self.records.add(w, secs, records);
        let day = w.local_day(secs);
        let local = w.local_secs(secs);
        let grace_over = |p: &ClosedDay| u64::from(local) >= (u64::from(p.day) + 1) * 86_400 + u64::from(CLOSED_DAY_GRACE_S);
        // A session of work that began on the waiting day and goes on (a
        // night's pull past 06:00) keeps it waiting: its refusal may come yet.
        let continues = local <= self.last_local.saturating_add(SAME_SESSION_GAP_S);
        let session_began = self.session_began;
        let ready = move |p: &ClosedDay| grace_over(p) && !(continues && session_began <= p.last_local);
        let mut learned = [StaffDay::default(); 2];
        if self.pending.as_ref().is_some_and(ready) {
            learned[0] = self.learn_pending();
        }
        if day > self.day {
            // A day that closes displaces the one still waiting (a session
            // that ran on for more than a day): that one teaches now.
            if self.pending.is_some() {
                learned[0] = self.learn_pending();
            }
            if self.refused_day != self.day + 1 && (self.today > 0 || self.hours_today != 0) {
                self.pending = Some(ClosedDay { day: self.day, hours: self.hours_today, records: self.today, last_local: self.last_local });
            }
            self.hours_today = 0;
            self.day = day;
            self.today = 0;
            self.accesses_today = 0;
            // The member's first access of the day is after 06:00: the day before teaches now.
            if self.pending.as_ref().is_some_and(ready) {
                learned[1] = self.learn_pending();
            }
        }
        // A late access from yesterday still counts today: days only move forward.
        self.today = self.today.saturating_add(records);
        self.accesses_today = self.accesses_today.saturating_add(1);
        self.hours_today |= 1 << hour;
        if local > self.last_local.saturating_add(SAME_SESSION_GAP_S) {
            self.session_began = local;
        }
        self.last_local = self.last_local.max(local);
        learned
    }

    /// The closed day joins the habit; its hours and records (none: there was none).
    fn learn_pending(&mut self) -> StaffDay {
        let Some(d) = self.pending.take() else { return StaffDay::default() };
        self.habit_hours |= self.hours & d.hours;
        self.hours |= d.hours;
        if d.records > 0 {
            self.days_active = self.days_active.saturating_add(1);
            let x = d.records as f32;
            // The first days set the habit; later days move it by a fifth.
            let alpha = if self.days_active <= 3 { 1.0 / f32::from(self.days_active) } else { 0.2 };
            self.typical_daily += alpha * (x - self.typical_daily);
        }
        StaffDay { hours: d.hours, records: d.records }
    }

    /// The pipeline refused an access at `secs`: the day it was counted
    /// into will not join the habit (a late access from an earlier day was
    /// counted into the day open now: days only move forward). Nor will the
    /// day before, while it waits out its grace, if the refused access
    /// belongs to a session of work that began then: the night's pull.
    /// `member_blocked`: the block was on the member themself.
    fn refuse(&mut self, w: &Windows, secs: u32, member_blocked: bool) {
        if w.local_day(secs) <= self.day {
            self.refused_day = self.day + 1;
            if member_blocked {
                self.stopped_day = self.day + 1;
            }
            let in_session = w.local_secs(secs) >= self.session_began;
            if in_session && self.pending.is_some_and(|d| self.session_began <= d.last_local) {
                self.pending = None;
            }
        }
    }
}

/// What one observation tells the store beyond the feature vector.
#[derive(Debug, Clone, Default)]
pub(crate) struct Observe {
    /// The entity (a customer) was returning before this event.
    pub returning_before: bool,
    /// This passed event of a customer counts them among the returning
    /// customers its address carries: they were returning before it, or it
    /// is the first successful login of a customer the store never saw
    /// onboard (one who opened their account before the stream began).
    pub vouches: bool,
    /// This event makes the customer one of the population's fresh
    /// identities, once per profile the store keeps.
    pub first_fresh: bool,
    /// This event moves the customer, in the population's count of
    /// returning customers, from the hour that held them (0: none) to this
    /// event's hour: an event that vouches ([`Observe::vouches`]), in a
    /// later hour than their last.
    pub returning_moved: Option<(u32, u32)>,
    /// Each staff working day this event taught the habit (hours 0: none).
    pub closed_staff_days: [StaffDay; 2],
    /// Durations a young step baseline must take back: this event made its
    /// session's second fast step, and a session fast at two steps is what
    /// the pack calls a script; then everything the session taught young
    /// baselines goes back (a slower retry, a step before the baseline
    /// ranked anything). Or the session was scripted before, and this
    /// event's own duration goes back at once; or it is past what a session
    /// may teach a young step ([`MAX_TAUGHT_PER_STEP`]), and the slowest it
    /// taught that step goes back at once. A young baseline ranks
    /// against the fastest duration it has seen, so a first-night campaign
    /// that taught it would become that fastest, and every script after it
    /// would rank as a person. A lone fast step (an auto-filled code) stays
    /// learnt: honest quick minorities must be. A ready baseline holds
    /// scripts out by itself (`StepBaseline::held`), and taking back its
    /// fastest honest people as well made the next ones rank fast.
    pub unlearn: Vec<Learnt>,
}

/// Everything Haechi remembers about one entity.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Entity {
    first_seen: u32,
    /// Newest event time seen, ms; the head of every window and the clock of expiry.
    last_ms: i64,
    total: u32,
    streak: u16,
    /// Steps counted `fast` and `quick` (see [`Observed`]; kinds with durations).
    fast_steps: u8,
    quick_steps: u8,
    step_min_ms: u32,
    counts: Counts,
    gaps: RunningStats,
    steps: RunningStats,
    distinct: [DistinctSet; MAX_RELATIONS],
    extra: Extra,
}

impl Entity {
    pub(crate) fn new(kind: EntityKind, secs: u32) -> Entity {
        let extra = match kind {
            EntityKind::Customer => Extra::Profile(Box::default()),
            EntityKind::Staff => Extra::Records(Box::default()),
            EntityKind::Session => Extra::Session(SessionState::default()),
            _ => Extra::None,
        };
        Entity {
            first_seen: secs,
            last_ms: i64::MIN,
            total: 0,
            streak: 0,
            fast_steps: 0,
            quick_steps: 0,
            step_min_ms: u32::MAX,
            counts: Counts::default(),
            gaps: RunningStats::default(),
            steps: RunningStats::default(),
            distinct: Default::default(),
            extra,
        }
    }

    /// Apply one event (unless it is too late) and write this entity's
    /// features, as they stand after the event, into `out`.
    /// Returns what the store needs beyond the features: whether the entity
    /// (a customer) was returning before this event, and the hours of a
    /// staff member's working day that this event closed, if any.
    pub(crate) fn observe(&mut self, kind: EntityKind, l: &KindLayout, w: &Windows, o: &Observed, out: &mut [f32]) -> Observe {
        let prior_events = self.total;
        // Asked of the customer as they were before this event: a fresh id's
        // first successful login must not make it "returning" on the spot,
        // or one login would vouch for the address it came through.
        let returning_before = self.is_returning();
        let mut unlearn = Vec::new();
        let history_s = if prior_events > 0 { o.secs.saturating_sub(self.first_seen) } else { 0 };
        let gap_s = if prior_events > 0 && o.ms >= self.last_ms { (o.ms - self.last_ms) as f32 / 1000.0 } else { 0.0 };
        // Profile questions are asked about the customer as they were before this event.
        let mut profile_flags = [0.0f32; 3];
        let mut device_passed_code_s = -1.0f32;
        let mut code_failure_pace = 0.0f32;
        if let Extra::Profile(p) = &self.extra {
            let h = u32::from(o.hour);
            let near = (1 << h) | (1 << ((h + 1) % 24)) | (1 << ((h + 23) % 24));
            profile_flags[0] = f32::from(p.hours & near != 0);
            let known = prior_events > 0;
            profile_flags[1] = f32::from(known && !p.devices.is_empty() && o.device.is_some_and(|d| !p.knows_device(d)));
            // An event older than the device's first passed code was not
            // on a vouched device: a backdated event must not borrow a
            // vouch that came later.
            if let Some(at) = o.device.and_then(|d| p.code_passed_at(d)).filter(|at| *at <= o.secs) {
                device_passed_code_s = (o.secs - at) as f32;
            }
            profile_flags[2] = f32::from(known && !p.regions.is_empty() && o.region.is_some_and(|r| !p.regions.contains(&r)));
            if o.code_step && o.failure {
                code_failure_pace = p.code_failure_pace(w, o.secs);
            }
        }

        // A customer the store saw onboard vouches only from their second
        // passed event after a login: a farm's fresh identity must not vouch
        // for its address with the login its onboarding just earned. One
        // who logs in having never onboarded in the stream opened their
        // account before it began; their first login is what a carrier exit,
        // an office or a café carries all day.
        let vouches = !o.failure
            && match &self.extra {
                Extra::Profile(p) => returning_before || (o.apply && o.login_ok && !p.counted_fresh),
                _ => false,
            };
        let first_fresh = match &mut self.extra {
            Extra::Profile(p) if o.apply && o.onboarding && !returning_before && !p.counted_fresh => {
                p.counted_fresh = true;
                true
            }
            _ => false,
        };
        // What an address counts as returning (an event that vouches, above)
        // moves the customer to this hour in the population's count. An
        // event of an earlier hour than their last (out of order within the
        // allowed lateness) leaves them where they are.
        let returning_moved = match &mut self.extra {
            Extra::Profile(p) if o.apply && vouches => {
                let hour = u32::try_from(o.ms.div_euclid(3_600_000)).unwrap_or(0);
                (hour > p.returning_hour).then(|| (std::mem::replace(&mut p.returning_hour, hour), hour))
            }
            _ => None,
        };
        let closed_days = if o.apply { self.apply(kind, w, o, &mut unlearn) } else { [StaffDay::default(); 2] };
        // Was the staff member seen at this very hour before? Office hours
        // are a tight habit: the hour after closing is already unusual. Read
        // after `apply`, so that an access is judged with every day that has
        // joined the habit by then (the day before joins at 06:00), and
        // never with today.
        let (staff_hour_seen, staff_hour_habit) = match &self.extra {
            Extra::Records(a) => (f32::from(a.hours & (1 << o.hour) != 0), f32::from(a.habit_hours & (1 << o.hour) != 0)),
            _ => (0.0, 0.0),
        };

        let now = o.secs.max(self.last_seen());
        let c = self.counts.read(w, now);
        let b = l.base;
        out[b] = 1.0;
        for j in 0..3 {
            out[b + 1 + j] = c.events[j] as f32;
            out[b + 4 + j] = c.failures[j] as f32;
        }
        out[b + 7] = f32::from(self.streak);
        out[b + 8] = now.saturating_sub(self.first_seen) as f32;
        out[b + 9] = gap_s;
        let [c0, c1, c2] = cutoffs(w, now);
        for r in 0..relations(kind).len() {
            // `total`: anything the entity still remembers (cutoff 1: every real sighting).
            let counts = self.distinct[r].count_since([c0, c1, c2, 1]);
            for j in 0..DISTINCT_COLUMNS {
                out[l.distinct + DISTINCT_COLUMNS * r + j] = counts[j] as f32;
            }
        }
        if let Some(t) = l.timing {
            out[t] = self.gaps.mean;
            out[t + 1] = self.gaps.cv();
            out[t + 2] = self.gaps.n as f32;
        }
        if let Some(d) = l.durations {
            out[d] = self.steps.mean;
            out[d + 1] = if self.steps.n == 0 { 0.0 } else { self.step_min_ms as f32 };
            out[d + 2] = self.steps.n as f32;
            out[d + 3] = f32::from(self.fast_steps);
            out[d + 4] = f32::from(self.quick_steps);
            // The steps fast and quick are counted against: kinds of step, not attempts.
            out[d + 5] = match &self.extra {
                Extra::Session(s) => s.timed.count_ones() as f32,
                _ => self.steps.n as f32,
            };
        }
        match (&self.extra, l.profile, l.records) {
            (Extra::Profile(p), Some(s), _) => {
                out[s] = prior_events as f32;
                out[s + 1] = profile_flags[0];
                out[s + 2] = p.hours.count_ones() as f32;
                out[s + 3] = profile_flags[1];
                out[s + 4] = profile_flags[2];
                out[s + 5] = p.devices.len() as f32;
                out[s + 6] = history_s as f32 / 86_400.0;
                out[s + 7] = f32::from(returning_before);
                out[s + 8] = device_passed_code_s;
                for (j, cut) in [c0, c1, c2].into_iter().enumerate() {
                    out[s + 9 + j] = p.code_failures.iter().filter(|t| **t >= cut).count() as f32;
                }
                out[s + 12] = code_failure_pace;
                // Only the pair, in one place, says the owner is there (see
                // `face_checks`); a backdated event cannot borrow a later one.
                // A device only: a subnet may be a carrier exit that the
                // guesser shares with the owner.
                let device_place = o.device.map_or(0, |_| o.place());
                out[s + 13] = match p.face_pair(w) {
                    Some((place, older, newer)) if device_place != 0 && place == device_place && newer <= o.secs => (o.secs - older) as f32,
                    _ => -1.0,
                };
                // Methods proved in this place (device, else subnet, else
                // the customer's place just before: see `place_of`) within
                // the middle window and not after this event: a backdated
                // event cannot borrow a later success, nor one device another's.
                let place = p.place_of(w, o);
                out[s + 14] = match p.login_at {
                    (at, on) if at != 0 && on != 0 && on == place && at <= o.secs => (o.secs - at) as f32,
                    _ => -1.0,
                };
                let recent = p.methods_at.iter().enumerate().filter(|(_, (at, on))| *at != 0 && *at >= c1 && *at <= o.secs && *on != 0 && *on == place);
                let mask = recent.fold(0u8, |mask, (m, _)| mask | 1 << m);
                if let Some(m) = l.methods {
                    out[m] = mask.count_ones() as f32;
                    out[m + 1] = f32::from(mask);
                }
            }
            (Extra::Session(st), _, _) => {
                if let Some(s) = l.session {
                    let methods = st.methods_for(o.session_implied, o.related[EntityKind::Customer.index()]);
                    out[s] = methods.count_ones() as f32;
                    out[s + 1] = f32::from(methods);
                }
            }
            (Extra::Records(a), _, Some(s)) => {
                let r = a.records.read(w, now);
                for j in 0..3 {
                    out[s + j] = r[j] as f32;
                }
                out[s + 3] = staff_hour_seen;
                out[s + 4] = a.typical_daily;
                out[s + 5] = f32::from(a.days_active);
                out[s + 6] = a.today as f32;
                out[s + 7] = staff_hour_habit;
                out[s + 8] = match a.stopped_day {
                    0 => NEVER_REFUSED_DAYS,
                    d => w.local_day(now).saturating_sub(d - 1) as f32,
                };
                out[s + 9] = o.staff_typical_day;
                out[s + 10] = a.hours_today.count_ones() as f32;
                out[s + 11] = a.accesses_today as f32;
            }
            _ => {}
        }
        Observe { returning_before, vouches, first_fresh, returning_moved, closed_staff_days: closed_days, unlearn }
    }

    /// Durations the baselines must take back go to `unlearn` (see [`Observe::unlearn`]).
    fn apply(&mut self, kind: EntityKind, w: &Windows, o: &Observed, unlearn: &mut Vec<Learnt>) -> [StaffDay; 2] {
        self.total = self.total.saturating_add(1);
        self.counts.add(w, o.secs, o.failure);
        // Failures a middle window of quiet apart are not a streak: a
        // guesser gone since last night does not make the owner's first
        // typo today the twelfth failure in a row.
        let quiet = o.ms.saturating_sub(self.last_ms) > i64::from(w.mid.len_s()) * 1000;
        self.streak = match (o.failure, quiet) {
            (false, _) => 0,
            (true, true) => 1,
            (true, false) => self.streak.saturating_add(1),
        };
        if self.total > 1 && o.ms >= self.last_ms {
            self.gaps.push((o.ms - self.last_ms) as f32);
        }
        self.last_ms = self.last_ms.max(o.ms);
        self.first_seen = self.first_seen.min(o.secs);
        if let Some(d) = o.duration_ms {
            // A retried step is the same person at the same speed: an app that auto-fills a
            // code fills the second code as fast as the first. Counting it again made honest
            // retries look like a session of fast steps.
            let (fast, quick) = match &mut self.extra {
                Extra::Session(s) => {
                    s.timed |= o.step_bit;
                    let fast = o.fast && s.fast & o.step_bit == 0;
                    let quick = o.quick && s.quick & o.step_bit == 0;
                    s.fast |= if o.fast { o.step_bit } else { 0 };
                    if let Some(l) = o.learnt {
                        if s.flags.has(SCRIPTED) {
                            unlearn.push(l);
                        } else {
                            unlearn.extend(keep_taught(&mut s.rare.get_or_insert_with(Box::default).taught, l));
                        }
                    }
                    // A retry of the one fast step is still one.
                    if !s.flags.has(SCRIPTED) && s.fast.count_ones() >= 2 {
                        s.flags = s.flags.with(SCRIPTED);
                        unlearn.extend(s.rare.as_mut().map(|r| std::mem::take(&mut r.taught)).unwrap_or_default());
                        // A scripted session teaches no more: the box stays only for a login or a customer's methods.
                        if s.rare.as_ref().is_some_and(|r| r.only_taught()) {
                            s.rare = None;
                        }
                    }
                    s.quick |= if o.quick { o.step_bit } else { 0 };
                    (fast, quick)
                }
                _ => (o.fast, o.quick),
            };
            self.fast_steps = self.fast_steps.saturating_add(u8::from(fast));
            self.quick_steps = self.quick_steps.saturating_add(u8::from(quick));
            self.steps.push(d as f32);
            self.step_min_ms = self.step_min_ms.min(d);
        }
        for (r, rel) in relations(kind).iter().enumerate() {
            let item = match rel {
                Relation::Kind(k) => o.related[k.index()],
                Relation::Returning if matches!(kind, EntityKind::Ip | EntityKind::Subnet) => o.returning_at_address,
                Relation::Returning => o.returning,
                Relation::NewIdentity => o.new_identity,
            };
            if let Some(item) = item {
                self.distinct[r].insert(w, item, o.secs);
            }
        }
        let stamp = self.last_seen().max(1);
        // Taken before this event moves the customer's latest place.
        let method_place = match &mut self.extra {
            Extra::Profile(p) => {
                let place = p.place_of(w, o);
                if o.place() != 0 && !o.failure {
                    p.passed_at_place(o.secs, o.place());
                }
                place
            }
            _ => 0,
        };
        match &mut self.extra {
            Extra::Session(st) => {
                if let Some(m) = o.method {
                    st.prove(m, o.session_implied, o.related[EntityKind::Customer.index()]);
                }
            }
            Extra::Profile(p) if o.code_step && o.failure => p.add_code_failure(w, o.secs),
            Extra::Profile(p) if o.login_ok => {
                p.logged_in = true;
                // A password alone opens a stolen account as well, and a
                // device id is the client's to report: only a login on a
                // device that passed a code for the customer (or before the
                // profile knew any device: a new install judges on population
                // cues) says the owner is here. Before it knew one, only
                // while every passed event of the customer came from this
                // place: a login from a second place is as likely a stranger's
                // on an account whose owner never passed a code (and one
                // within minutes of the owner's is someone else on it too).
                let first_place = p.devices.is_empty() && p.other_place_at == 0;
                let owners_device = o.device.map_or(first_place, |d| first_place || p.code_passed_at(d).is_some_and(|at| at <= o.secs));
                if owners_device && o.secs >= p.login_at.0 {
                    p.login_at = (o.secs.max(1), method_place);
                }
            }
            Extra::Profile(p) if !o.failure => {
                if let Some(m) = o.method {
                    let last = &mut p.methods_at[usize::from(m)];
                    if o.secs >= last.0 {
                        *last = (o.secs.max(1), method_place);
                    }
                }
                // Only a pass the owner alone can give teaches the profile.
                // An attacker with a stolen password fails the second factor;
                // but their own live face passes a liveness check, a photo of
                // the owner a face match, and a stolen card an ID scan: were
                // those to teach, the attacker's device, hour and region
                // would be "known" by the session's next step, and the
                // takeover rules would stop asking. A code passed in the
                // middle of a burst of failed ones may be the guess that
                // worked: it teaches nothing either.
                let guessing = o.code_step && {
                    let short_start = cutoffs(w, stamp)[0];
                    p.code_failures.iter().filter(|t| **t >= short_start).count() >= GUESSING_AFTER_FAILED_CODES
                };
                if let Some(i) = o.face_check {
                    // A backdated pass cannot replace a later one.
                    if o.secs >= p.face_checks[i].0 {
                        p.face_checks[i] = (o.secs.max(1), o.place());
                    }
                }
                let face_and_liveness = o.face_check.is_some() && p.face_pair(w).is_some();
                let says_who = (o.code_step && !guessing) || face_and_liveness;
                if !says_who {
                    return [StaffDay::default(); 2];
                }
                p.hours |= 1 << o.hour;
                if let Some(d) = o.device {
                    if !p.knows_device(d) {
                        if p.devices.len() == PROFILE_DEVICES {
                            // Unvouched devices go first: a stream of new
                            // devices must not push the owner's phone out.
                            let oldest = p.devices.iter().position(|(_, at)| *at == 0).unwrap_or(0);
                            p.devices.remove(oldest);
                        }
                        p.devices.push((d, 0));
                    }
                    // A guessed code returned above, before teaching.
                    if o.code_step {
                        // Stamped with the newest time seen, not the event's
                        // own: a backdated event cannot make a device older.
                        if let Some(slot) = p.devices.iter_mut().find(|(x, at)| *x == d && *at == 0) {
                            slot.1 = stamp;
                        }
                    }
                }
                if let Some(r) = o.region {
                    if !p.regions.contains(&r) {
                        if p.regions.len() == PROFILE_REGIONS {
                            p.regions.remove(0);
                        }
                        p.regions.push(r);
                    }
                }
            }
            Extra::Records(a) => return a.add(w, o.secs, o.hour, o.records),
            Extra::Profile(_) | Extra::None => {}
        }
        [StaffDay::default(); 2]
    }

    /// A returning customer: has logged in successfully (in the state the
    /// entity is in when asked). Age alone does not make one: any event
    /// creates a customer id, so a farm could age made-up ids a day and have
    /// them vouch for its addresses as a carrier exit's customers would.
    fn is_returning(&self) -> bool {
        matches!(&self.extra, Extra::Profile(p) if p.logged_in)
    }

    /// A staff member's access at `secs` was refused: the day it was counted
    /// into will not join their habit. `member_blocked`: by a block on the
    /// member themself, which `staff.days_since_refused` counts from.
    pub(crate) fn refuse_staff_day(&mut self, w: &Windows, secs: u32, member_blocked: bool) {
        if let Extra::Records(a) = &mut self.extra {
            a.refuse(w, secs, member_blocked);
        }
    }

    /// First event time seen, seconds.
    pub(crate) fn first_seen(&self) -> u32 {
        self.first_seen
    }

    /// Newest event time seen, ms (`None` before any event was applied).
    pub(crate) fn last_ms(&self) -> Option<i64> {
        (self.last_ms != i64::MIN).then_some(self.last_ms)
    }

    /// Newest event time seen, seconds (0 before any event was applied).
    pub(crate) fn last_seen(&self) -> u32 {
        if self.last_ms == i64::MIN {
            0
        } else {
            self.last_ms.div_euclid(1000).clamp(0, i64::from(u32::MAX)) as u32
        }
    }

    /// Remember that this session (a session entity) logged in as `login`,
    /// unless it holds a later login.
    pub(crate) fn set_login(&mut self, login: SessionLogin) {
        if let Extra::Session(s) = &mut self.extra {
            let held = &mut s.rare.get_or_insert_with(Box::default).login;
            // A login that arrives after a later one (within the lateness) is not the latest.
            if held.as_ref().is_none_or(|h| h.at_ms <= login.at_ms) {
                *held = Some(login);
            }
        }
    }

    /// An account was opened in this implied session (a session entity),
    /// for `customer` (key fragment), if it named one: the methods it
    /// counted were that applicant's, and the next one on the device (a
    /// PC방 seat, a family tablet) proves their own. Another customer's
    /// methods, which it did not count, stay theirs.
    pub(crate) fn spend_methods(&mut self, customer: Option<u32>) {
        if let Extra::Session(s) = &mut self.extra {
            s.methods = 0;
            if let Some(r) = s.rare.as_mut().filter(|r| r.owned_by(customer)) {
                r.owner = None;
                r.owned = 0;
            }
        }
    }

    /// Whether a stranger's failed login in local clock hour `hour` (`EventHour::index`: hours since
    /// the epoch) is the customer's first in 24 hours, noting it: the
    /// population counts customers tried, not tries, so that a handful of
    /// accounts failed over and over, hour after hour, can neither raise
    /// the bar a campaign is measured against by more than their number
    /// once a day, nor make a campaign.
    pub(crate) fn first_stranger_failure_in(&mut self, hour: u32) -> bool {
        match &mut self.extra {
            Extra::Profile(p) if p.stranger_failure_hour == 0 || p.stranger_failure_hour.saturating_add(24) <= hour => {
                p.stranger_failure_hour = hour;
                true
            }
            _ => false,
        }
    }

    /// Whether a login at clock hour `hour` on `channel` (0 to 2) may teach
    /// that channel's device churn (see `Profile::churn_day`): the
    /// customer's first on the channel in their day. Marks it taught.
    pub(crate) fn first_churn_login_in(&mut self, hour: u32, channel: u8) -> bool {
        let Extra::Profile(p) = &mut self.extra else { return false };
        let (began, taught) = &mut p.churn_day;
        if *began == 0 || began.saturating_add(24) <= hour {
            (*began, *taught) = (hour.max(1), 0);
        }
        let bit = 1u8 << channel;
        let first = *taught & bit == 0;
        *taught |= bit;
        first
    }

    /// A customer's event (a customer entity) at event second `secs`: drop a
    /// session place past its hour ([`IMPLIED_SESSION_SPAN_S`], a session's
    /// longest span), and for a passed event in the reported session keyed
    /// `session`, note the device and region it named, if any. A new
    /// session starts over.
    pub(crate) fn tend_session_place(&mut self, session: Option<u64>, secs: u32, passed: bool, event: &Event) {
        let Extra::Profile(p) = &mut self.extra else { return };
        if p.session_place.as_ref().is_some_and(|held| secs.saturating_sub(held.at_s) > IMPLIED_SESSION_SPAN_S) {
            p.session_place = None;
        }
        let Some(session) = session.filter(|_| passed && (event.device_id.is_some() || event.region.is_some())) else { return };
        match &mut p.session_place {
            Some(held) if held.session == session => held.note(secs, event),
            // A session that arrives late, behind a newer one, is not the latest.
            Some(held) if held.at_s > secs => {}
            slot => {
                let mut place = SessionPlace { session, at_s: secs, device_id: None, region: None, contested: 0 };
                place.note(secs, event);
                *slot = Some(Box::new(place));
            }
        }
    }

    /// Free the session place if its session first named it before event second `before`.
    pub(crate) fn drop_session_place_older_than(&mut self, before: u32) {
        if let Extra::Profile(p) = &mut self.extra {
            if p.session_place.as_ref().is_some_and(|held| held.at_s < before) {
                p.session_place = None;
            }
        }
    }

    /// Where this customer's passed events in the reported session keyed
    /// `session` came from, if the session first named them within the
    /// hour ([`IMPLIED_SESSION_SPAN_S`]) before `secs` (what two of them
    /// named differently is in `contested`). Not for a step dated before
    /// that: it would be placed or not by the order its events arrived in.
    pub(crate) fn session_place(&self, session: u64, secs: u32) -> Option<&SessionPlace> {
        let Extra::Profile(p) = &self.extra else { return None };
        p.session_place.as_deref().filter(|held| held.session == session && held.at_s <= secs && secs - held.at_s <= IMPLIED_SESSION_SPAN_S)
    }

    /// An ID scan in this session (a session entity).
    pub(crate) fn note_id_scan(&mut self) {
        if let Extra::Session(s) = &mut self.extra {
            s.flags = s.flags.with(ID_SCANNED);
        }
    }

    /// The customer this session (a session entity) last logged in as, and
    /// whether an ID was scanned in it.
    pub(crate) fn logged_in_as(&self) -> Option<(&SessionLogin, bool)> {
        match &self.extra {
            Extra::Session(s) => s.rare.as_ref()?.login.as_ref().map(|l| (l, s.flags.has(ID_SCANNED))),
            _ => None,
        }
    }

    /// Bytes this entity costs: the inline struct plus what it owns on the heap.
    pub(crate) fn bytes(&self) -> usize {
        let extra = match &self.extra {
            Extra::None => 0,
            Extra::Session(s) => s.rare.as_ref().map_or(0, |r| {
                std::mem::size_of::<SessionRare>()
                    + r.taught.capacity() * std::mem::size_of::<Learnt>()
                    + r.login.as_ref().map_or(0, |l| if l.customer.is_heap_allocated() { l.customer.capacity() } else { 0 })
            }),
            Extra::Records(_) => std::mem::size_of::<StaffProfile>(),
            Extra::Profile(p) => {
                std::mem::size_of::<Profile>()
                    + if p.devices.spilled() { p.devices.capacity() * 8 } else { 0 }
                    + p.code_failures.capacity() * 4
                    + if p.regions.spilled() { p.regions.capacity() * 2 } else { 0 }
                    + p.session_place.as_ref().map_or(0, |place| {
                        let heap = |text: &Option<compact_str::CompactString>| text.as_ref().map_or(0, |t| if t.is_heap_allocated() { t.capacity() } else { 0 });
                        std::mem::size_of::<SessionPlace>() + heap(&place.device_id) + heap(&place.region)
                    })
            }
        };
        std::mem::size_of::<Entity>()
            + self.counts.heap_bytes()
            + self.distinct.iter().map(DistinctSet::heap_bytes).sum::<usize>()
            + extra
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hours of the days an access taught (the records are the bank's typical day's business).
    fn hours(days: [StaffDay; 2]) -> [u32; 2] {
        days.map(|d| d.hours)
    }

    /// The default windows, and the event seconds of local `hour` on local day `day`.
    fn windows_and_clock() -> (Windows, impl Fn(u32, u32) -> u32) {
        let w = crate::config::FeatureConfig::default().validate().unwrap();
        let offset = i64::from(w.utc_offset_s);
        (w, move |day: u32, hour: u32| (i64::from(day * 86_400 + hour * 3_600) - offset) as u32)
    }

    #[test]
    fn a_refused_day_teaches_nothing_when_it_closes() {
        let (w, at) = windows_and_clock();
        let mut p = StaffProfile::default();
        p.add(&w, at(20_000, 10), 10, 5);
        p.add(&w, at(20_000, 23), 23, 50);
        p.refuse(&w, at(20_000, 23), true);
        assert_eq!(hours(p.add(&w, at(20_001, 10), 10, 5)), [0, 0], "no hours for the bank's staff baseline either");
        assert_eq!((p.hours, p.habit_hours, p.days_active, p.typical_daily), (0, 0, 0, 0.0));
        // A late access from the day before is counted into the day open
        // now; refused, it is that day that teaches nothing.
        p.add(&w, at(20_000, 23) + 1_800, 23, 3);
        p.refuse(&w, at(20_000, 23) + 1_800, true);
        assert_eq!(hours(p.add(&w, at(20_002, 10), 10, 1)), [0, 0]);
        assert_eq!((p.hours, p.days_active), (0, 0));
        // Any refusal falls on the day open now, where its access was counted.
        p.refuse(&w, at(20_001, 10), true);
        assert_eq!(hours(p.add(&w, at(20_003, 10), 10, 1)), [0, 0], "day 20_002 was open");
        assert_eq!(hours(p.add(&w, at(20_004, 10), 10, 1)), [0, 1 << 10], "the first access after 06:00 closes a day that teaches at once");
        assert_eq!((p.hours, p.habit_hours, p.days_active, p.typical_daily), (1 << 10, 0, 1, 1.0), "seen, but one day is not yet a habit");
        assert_eq!(hours(p.add(&w, at(20_005, 10), 10, 1)), [0, 1 << 10]);
        assert_eq!((p.habit_hours, p.days_active), (1 << 10, 2), "an hour worked on two days is");
    }

    #[test]
    fn a_night_worker_back_after_a_day_off_is_judged_with_both_nights() {
        let (w, at) = windows_and_clock();
        let mut p = StaffProfile::default();
        p.add(&w, at(20_000, 3), 3, 5);
        assert_eq!(hours(p.add(&w, at(20_001, 3), 3, 5)), [0, 0], "last night waits for 06:00");
        // Back two days later: both nights teach, the older one first.
        assert_eq!(hours(p.add(&w, at(20_003, 3), 3, 5)), [1 << 3, 1 << 3]);
        assert_eq!((p.habit_hours, p.days_active), (1 << 3, 2));
    }

    #[test]
    fn a_pull_refused_after_midnight_keeps_the_night_it_began_in_out_of_the_habit() {
        let (w, at) = windows_and_clock();
        let night = |p: &mut StaffProfile| {
            p.add(&w, at(20_000, 10), 10, 5);
            // The pull begins at 22:00 and is let through, a record every
            // twenty minutes, past midnight.
            for k in 0..17 {
                let t = at(20_000, 22) + k * 1_200;
                assert_eq!(hours(p.add(&w, t, ((22 + k / 3) % 24) as u8, 5)), [0, 0], "the night waits for 06:00");
            }
        };
        // First refused at 03:20, more than three hours after the night's
        // last access before midnight: the session began that night.
        let mut refused = StaffProfile::default();
        night(&mut refused);
        refused.refuse(&w, at(20_000, 22) + 16 * 1_200, true);
        assert_eq!(hours(refused.add(&w, at(20_001, 10), 10, 5)), [0, 0]);
        assert_eq!(hours(refused.add(&w, at(20_002, 10), 10, 5)), [0, 0], "the day of the refusal teaches nothing either");
        assert_eq!((refused.hours, refused.days_active), (0, 0));
        // First refused at 06:20, still the same session: the night still waits, then is struck.
        let mut past_six = StaffProfile::default();
        night(&mut past_six);
        for k in 17..26 {
            assert_eq!(hours(past_six.add(&w, at(20_000, 22) + k * 1_200, ((22 + k / 3) % 24) as u8, 5)), [0, 0], "the session goes on");
        }
        past_six.refuse(&w, at(20_000, 22) + 25 * 1_200, true);
        assert_eq!(hours(past_six.add(&w, at(20_001, 10), 10, 5)), [0, 0], "after a pause: the night was struck");
        assert_eq!((past_six.hours, past_six.days_active), (0, 0));
        // A pull that starts at 00:44, long after a day's work that ended at
        // 16:00, is refused alone: that day's work still teaches.
        let mut after_a_day = StaffProfile::default();
        after_a_day.add(&w, at(20_000, 10), 10, 5);
        after_a_day.add(&w, at(20_000, 16), 16, 5);
        after_a_day.add(&w, at(20_001, 0) + 2_640, 0, 60);
        after_a_day.refuse(&w, at(20_001, 0) + 2_640, true);
        // A late access from that afternoon, refused, is not part of the night's session either.
        after_a_day.refuse(&w, at(20_000, 15), true);
        assert_eq!(hours(after_a_day.add(&w, at(20_001, 10), 10, 1)), [1 << 10 | 1 << 16, 0]);
        assert_eq!(hours(after_a_day.add(&w, at(20_002, 10), 10, 1)), [0, 0], "the night's day is refused");
        assert_eq!((after_a_day.hours, after_a_day.days_active, after_a_day.typical_daily), (1 << 10 | 1 << 16, 1, 10.0));
        // Not refused, the night joins at the first access after 06:00 once
        // its session has ended (at 06:00 it is still going on).
        let mut let_through = StaffProfile::default();
        night(&mut let_through);
        let taught = 1 << 10 | 1 << 22 | 1 << 23;
        assert_eq!(hours(let_through.add(&w, at(20_001, 6), 6, 0)), [0, 0]);
        assert_eq!(hours(let_through.add(&w, at(20_001, 10), 10, 1)), [taught, 0]);
        assert_eq!((let_through.hours, let_through.days_active, let_through.typical_daily), (taught, 1, 35.0));
    }

    #[test]
    fn an_entity_fits_its_budget() {
        // The design budget is under 200 bytes for a typical entity. The two
        // sharedness sets (returning customers, new identities) that the
        // blast-radius guard reads cost 32 of these.
        let size = std::mem::size_of::<Entity>();
        assert!(size <= 184, "Entity is {size} bytes");
    }
}
