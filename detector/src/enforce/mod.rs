//! Enforcement: the block list, the rate limiters and the blast-radius guard,
//! applied to every decision inside the pipeline.
//!
//! They live here, not in the HTTP service, so that replay, eval and backtest
//! run the production path: a block set by event N changes the decision for
//! event N+1 in a replay exactly as in the service. The only difference is the
//! clock: the service enforces TTLs and quotas on the wall clock, a replay on
//! event time (see [`EnforcementClock`]).
//!
//! Order, as DESIGN.md has it: an analyst's block wins over everything;
//! then allowlists; then blocks in force, rate limits and the findings'
//! strongest action. Before a new block on a shared scope (ip, subnet,
//! device, account) is set, the guard counts the returning customers the
//! scope carried in the long window; above the limit the block becomes a
//! per-session challenge, with the reason given.

mod blocks;
mod limits;
mod suppress;

use std::sync::Arc;
use std::time::Duration;

use haechi_features::{entity_text, EntityKeys, EntityKind, Event, FeatureCatalog, Relation, SecondsSinceWithin, Severity, Windows, DISTINCT_COLUMNS, KIND_COUNT};
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

pub use blocks::{now_ms, Block, BlockAction, BlockConfig, BlockList, BlockedBy, ChangeListener, GuardChallenge, Refused, GUARD_SET_BY_PREFIX};
pub use limits::{LimitConfig, Limiters, OverLimit};
pub use suppress::{Listed as ListedSuppression, Suppression, Suppressions, Swallowed, MAX_SUPPRESSIONS};

use crate::decision::{BlockRequest, Decision, Reason, Verdict};

/// Which clock block TTLs and rate quotas run on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EnforcementClock {
    /// Event time: replays and backtests (deterministic, the same at any speed).
    #[default]
    Event,
    /// The wall clock: the live service.
    Wall,
}

/// An entry an event set: its scope, who asked, and the outcome.
pub type NewEntry = (EntityKind, SetBy, Result<(), Refused>);

/// What enforcement did to one decision, for metrics and the caller's answer.
#[derive(Debug, Default)]
pub struct Enforced {
    /// The entry in force that refused or challenged the event.
    pub blocked_by: Option<Block>,
    /// The scope whose rate quota the event exceeded.
    pub rate_limited: Option<EntityKind>,
    /// New entries set by this event.
    pub set: SmallVec<[NewEntry; 2]>,
    /// Block requests the guard turned into per-session challenges.
    pub guarded: u32,
    /// The event was let through (allowed) past a guard challenge on its
    /// session (its entry, or the guard's new conversion of the same
    /// rule's block) that the session had answered, or that it answers.
    pub answered: bool,
    /// A block on the customer was in force and passed over: the event came
    /// from a device the owner used before it was set.
    pub spared_owner_device: bool,
    /// A detector's block on the customer was in force and stepped this
    /// event up instead of refusing it (it came from a device none of the
    /// block's offending events came from), and nothing else refused it.
    pub stepped_up_other_device: bool,
    /// A detector's block on the customer about guessed codes was in force
    /// and let this passed identity check through, and nothing else stood
    /// in its way (see [`Block::lets_presence_check_pass`]).
    pub passed_presence_check: bool,
    /// A detector's block on the staff member for pulling records out of
    /// pattern was in force and let this routine lookup through, and
    /// nothing else stood in its way (see [`Block::lets_routine_staff_work_pass`]).
    pub passed_routine_staff_work: bool,
    /// The staff block (hash, set at) whose routine pass this was, to be
    /// counted against its budget if nothing else refuses the event.
    routine_pass: Option<(u64, i64, u32)>,
}

/// Who asked for a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetBy {
    Rule,
    RateLimit,
    Guard,
}

impl SetBy {
    /// Metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            SetBy::Rule => "rule",
            SetBy::RateLimit => "rate_limit",
            SetBy::Guard => "blast_radius",
        }
    }
}

/// How a rate limiter's blocks name who set them: this, then the scope.
const RATE_LIMIT_SET_BY_PREFIX: &str = "rate_limit:";

/// Scopes that many honest people can share: blocking one has a blast radius.
pub const SHARED_SCOPES: [EntityKind; 4] = [EntityKind::Ip, EntityKind::Subnet, EntityKind::Device, EntityKind::Account];

/// The block list, limiters and guard, with their names resolved once.
pub struct Enforcer {
    blocks: Arc<BlockList>,
    suppressions: Suppressions,
    limits: Limiters,
    clock: EnforcementClock,
    /// Per kind: the slot of `<kind>.distinct_returning_<long window>`, for shared scopes.
    carried_slot: [Option<usize>; KIND_COUNT],
    blast_radius_limit: f32,
    /// Slot of `customer.returning`.
    returning_slot: Option<usize>,
    /// What tells a staff lookup routine, when some staff blocks let routine work pass.
    routine_staff: Option<RoutineStaffWork>,
    /// Slots of `customer.device_passed_code_s` and `customer.present`, when
    /// customer blocks spare the owner's devices.
    owner_device_slots: Option<(usize, usize)>,
    owner_device_min_age_ms: i64,
    /// `customer.face_shown_s` within the middle window, and the window's
    /// label: how recently the event's device showed the customer's face,
    /// alive, to count as the owner's.
    face_shown: Option<(SecondsSinceWithin, Arc<str>)>,
    /// History the store needs before a shared scope's blast radius is
    /// known (the long window), when cold-start challenges are on.
    cold_start_needs_ms: Option<i64>,
    names: Names,
    /// Replaying the ingest log after a restart: event time, whatever `clock` says.
    recovering: std::sync::atomic::AtomicBool,
}

/// The reason a staff block's routine pass gives.
const ROUTINE_STAFF_WORK: &str = "routine_staff_work";

/// One record read, in time, at an hour the bank's staff work, in an hour in
/// which the staff member has read no more than on a typical day of their
/// own, or, for a member with no day of their own yet, of the bank's staff.
#[derive(Clone, Copy)]
struct RoutineStaffWork {
    /// `event.hour_activity`, and the bar the hour must reach.
    hour_activity: usize,
    hour_bar: f32,
    /// `staff.records_1h` (the settings refuse a medium window of another
    /// length while the pass is on) and `staff.typical_daily_records`.
    records_1h: usize,
    typical_daily_records: usize,
    /// `staff.days_active` and `staff.peers_typical_daily_records`: a member
    /// new to the store (a new hire, a new install not warmed from history)
    /// is held to the bank's typical day until a day of their own joins.
    days_active: usize,
    peers_typical_daily_records: usize,
    /// `event.late`: a late event teaches the store nothing, so its hour's
    /// count would never grow.
    late: usize,
    /// The features' windows: the local day a budget is spent on is the
    /// store's staff day.
    windows: Windows,
}

impl RoutineStaffWork {
    fn resolve(config: &BlockConfig, catalog: &FeatureCatalog, windows: &Windows) -> Option<RoutineStaffWork> {
        if config.routine_staff_work_passes_for.is_empty() {
            return None;
        }
        Some(RoutineStaffWork {
            hour_activity: catalog.slot("event.hour_activity")?,
            hour_bar: config.routine_staff_hour_activity,
            records_1h: catalog.slot("staff.records_1h")?,
            typical_daily_records: catalog.slot("staff.typical_daily_records")?,
            days_active: catalog.slot("staff.days_active")?,
            peers_typical_daily_records: catalog.slot("staff.peers_typical_daily_records")?,
            late: catalog.slot("event.late")?,
            windows: *windows,
        })
    }

    /// The event's hour is one the bank's staff work.
    fn at_working_hour(&self, features: &[f32]) -> bool {
        features[self.hour_activity] >= self.hour_bar
    }

    /// The event is routine work; then its local day, and how many records
    /// a block may let through that day (the member's typical day, or the
    /// bank's while they have none).
    fn budget(&self, event: &Event, features: &[f32]) -> Option<(u32, f32)> {
        let typical = if features[self.days_active] >= 1.0 { features[self.typical_daily_records] } else { features[self.peers_typical_daily_records] };
        // Exactly one record: an access that says it touched none would
        // count nothing against the hour.
        (event.step == haechi_features::Step::RecordView
            && event.records.unwrap_or(1) == 1
            && features[self.late] == 0.0
            && self.at_working_hour(features)
            && features[self.records_1h] <= typical)
            .then(|| (self.windows.local_day_at_ms(event.ts_ms), typical))
    }
}

struct Names {
    blocklist: Arc<str>,
    rate_limit: Arc<str>,
    blast_radius: Arc<str>,
}

impl Enforcer {
    /// Build from the block list (already opened), the limiter settings and the catalog.
    /// `windows`: the features' windows. The long one is the history a
    /// shared scope's count of returning customers needs; the bank's UTC
    /// offset, the local day a staff block's routine budget is spent on.
    pub fn new(blocks: Arc<BlockList>, limits: LimitConfig, clock: EnforcementClock, catalog: &FeatureCatalog, windows: &Windows) -> Enforcer {
        let long_window_ms = i64::from(windows.long.len_s()) * 1000;
        let mut carried_slot = [None; KIND_COUNT];
        for kind in SHARED_SCOPES {
            let layout = catalog.layout(kind);
            if let Some(r) = haechi_features::relations(kind).iter().position(|r| *r == Relation::Returning) {
                // Column 2 is the long window.
                carried_slot[kind.index()] = Some(layout.distinct + DISTINCT_COLUMNS * r + 2);
            }
        }
        let blast_radius_limit = blocks.config().blast_radius_limit as f32;
        let returning_slot = catalog.slot("customer.returning");
        let routine_staff = RoutineStaffWork::resolve(blocks.config(), catalog, windows);
        let owner_device_slots = match (blocks.config().spare_owner_devices, catalog.slot("customer.device_passed_code_s"), catalog.slot("customer.present")) {
            (true, Some(passed), Some(present)) => Some((passed, present)),
            _ => None,
        };
        let owner_device_min_age_ms = i64::try_from(blocks.config().owner_device_min_age.as_millis()).unwrap_or(i64::MAX);
        let cold_start_needs_ms = blocks.config().cold_start_challenge.then_some(long_window_ms);
        let face_shown = SecondsSinceWithin::resolve(catalog, "customer.face_shown_s", windows.mid.len_s()).map(|within| (within, Arc::from(windows.mid.label.as_str())));
        Enforcer {
            blocks,
            suppressions: Suppressions::default(),
            limits: Limiters::new(limits),
            clock,
            carried_slot,
            blast_radius_limit,
            returning_slot,
            routine_staff,
            owner_device_slots,
            owner_device_min_age_ms,
            face_shown,
            cold_start_needs_ms,
            names: Names { blocklist: Arc::from("blocklist"), rate_limit: Arc::from("rate_limit"), blast_radius: Arc::from("blast_radius") },
            recovering: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The block list.
    pub fn blocks(&self) -> &Arc<BlockList> {
        &self.blocks
    }

    /// The analysts' suppressions.
    pub fn suppressions(&self) -> &Suppressions {
        &self.suppressions
    }

    /// Take out the findings a suppression covers, before they are decided
    /// on. Suppressions run on the wall clock the event is decided against
    /// (`wall_ms`: now, or for an event read back from the ingest log the
    /// time it was logged at); a replay has none (`i64::MAX`) and uses the
    /// enforcement clock.
    pub fn suppress(&self, event: &Event, wall_ms: i64, keys: &EntityKeys, findings: &mut Vec<haechi_features::Finding>, swallowed: &mut Vec<Swallowed>) {
        let now = if wall_ms == i64::MAX { self.now(event) } else { wall_ms };
        self.suppressions.filter(keys, findings, now, swallowed);
    }

    /// The rate limiters.
    pub fn limits(&self) -> &Limiters {
        &self.limits
    }

    /// While the ingest log is replayed after a restart, enforce nothing
    /// (see [`Enforcer::apply`]).
    pub fn set_recovering(&self, on: bool) {
        self.recovering.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Replaying the ingest log now.
    pub fn recovering(&self) -> bool {
        self.recovering.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// "Now" for an event, on the configured clock.
    pub fn now(&self, event: &Event) -> i64 {
        match self.clock {
            EnforcementClock::Event => event.ts_ms,
            EnforcementClock::Wall => now_ms(),
        }
    }

    /// Returning customers a shared scope carried in the long window, read
    /// from the event's features; `None` for scopes that are not shared.
    pub fn blast_radius(&self, scope: EntityKind, features: &[f32]) -> Option<f32> {
        self.carried_slot[scope.index()].map(|s| features[s])
    }

    /// A detector's block on the customer does not apply to a device that
    /// passed a code for the customer at least the minimum age before the
    /// block was set. Both times are event times (the block keeps the time
    /// of the event that set it), so the wall clock of a live service never
    /// meets a device's history; a block without that time spares nothing.
    fn spares_owner_device(&self, b: &Block, event: &Event, features: &[f32]) -> bool {
        let Some((passed_slot, present_slot)) = self.owner_device_slots else { return false };
        let Some(set_at_event_ms) = b.set_at_event_ms else { return false };
        if b.scope != EntityKind::Customer || b.action != BlockAction::Block || b.is_manual() || b.set_by.starts_with(RATE_LIMIT_SET_BY_PREFIX) {
            return false;
        }
        let passed_s = features[passed_slot];
        if features[present_slot] != 1.0 || passed_s < 0.0 {
            return false;
        }
        let passed_at_ms = event.ts_ms.saturating_sub((f64::from(passed_s) * 1000.0) as i64);
        passed_at_ms.saturating_add(self.owner_device_min_age_ms) <= set_at_event_ms
    }

    /// Apply blocks in force, rate limits and the guard to `d`, and set the
    /// blocks it asks for. `history_ms`: how much event time the feature
    /// store stands on ([`haechi_features::FeatureStore::history_ms`]).
    pub fn apply(&self, event: &Event, keys: &EntityKeys, features: &[f32], history_ms: i64, d: &mut Decision) -> Enforced {
        if self.recovering() {
            // The log tail was enforced when it arrived, and the block list
            // on disk holds the outcome (written within 200 ms of a change).
            // Enforcing it again would count offenses twice and undo an
            // analyst's lift made since. (A block set in the last 200 ms
            // before a kill -9 is lost; the next offending event sets it again.)
            return Enforced::default();
        }
        let now = self.now(event);
        let answer = self.guard_answer(event, keys, now);
        let mut out = self.enforce(event, keys, features, history_ms, d, now, &answer);
        // Only an event let through answers: one refused or challenged for
        // anything else (an analyst's block on its address, a bot rule) does not.
        out.answered &= d.verdict == Verdict::Allow;
        out.stepped_up_other_device &= d.verdict != Verdict::Block;
        if let Some((hash, set_at_ms, day)) = out.routine_pass.take() {
            if d.verdict == Verdict::Block {
                // Refused all the same (a rule's own block, a rate limit): nothing was let through.
                out.passed_routine_staff_work = false;
                d.reasons.retain(|r| !(r.detector == self.names.blocklist && &*r.id == ROUTINE_STAFF_WORK));
            } else {
                self.blocks.note_routine_pass(hash, set_at_ms, day, 1);
            }
        }
        if let (Some(session), Some((holder, set_at, _)), Verdict::Allow) = (answer.marks, &answer.answered, d.verdict) {
            self.blocks.answer_guard_challenge(session, *holder, *set_at, event.ts_ms);
        }
        out
    }

    /// What a guard challenge on the event's session lets through. Such a
    /// challenge, set in place of a block on a scope known to carry many
    /// returning customers, asks the session to prove itself. It has once
    /// its holder (the customer and device it was set for: a session id is
    /// the client's to choose) passes a face match in it after the
    /// challenge was set: the one check that ties the person present to the
    /// document (a stolen ID passes its own scan, and a live face or a
    /// one-time code is the attacker's own). From then on the holder's
    /// identity checks that pass, dated no earlier than the answer, are not
    /// challenged again: neither by the entry nor by the guard turning the
    /// same rule's block into a challenge again (the 1-won account check
    /// among them: an honest applicant at a busy exit during an attack is
    /// asked once more, at the opening, not at every step). Its login,
    /// account opening, record access and phone change (where a proxy's
    /// session gets what it came for) still are, every time; so is a
    /// challenge set for a rate limit or for want of history.
    fn guard_answer(&self, event: &Event, keys: &EntityKeys, now: i64) -> GuardAnswer {
        let passed = event.result == haechi_features::Outcome::Success;
        if !passed || !event.step.is_identity_check() {
            return GuardAnswer::default();
        }
        let Some((session, holder)) = keys.get(EntityKind::Session).zip(guard_holder(keys)) else { return GuardAnswer::default() };
        let Some(g) = self.blocks.guard_challenge(session, holder, now) else { return GuardAnswer::default() };
        if g.blast_radius as f32 <= self.blast_radius_limit || g.instead_of.starts_with(RATE_LIMIT_SET_BY_PREFIX) {
            return GuardAnswer::default();
        }
        let marks = match g.answered_at_event_ms {
            Some(at) if event.ts_ms >= at => None,
            None if event.step == haechi_features::Step::FaceMatch && event.ts_ms > g.set_at_event_ms => Some(session),
            _ => return GuardAnswer::default(),
        };
        GuardAnswer { answered: Some((holder, g.set_at_event_ms, g.instead_of)), marks }
    }

    #[allow(clippy::too_many_arguments)]
    fn enforce(&self, event: &Event, keys: &EntityKeys, features: &[f32], history_ms: i64, d: &mut Decision, now: i64, answer: &GuardAnswer) -> Enforced {
        let mut out = Enforced::default();
        let answered = answer.answered.as_ref();
        let entry_passed_over = std::cell::Cell::new(false);
        let spared_any = std::cell::Cell::new(false);
        let device = keys.get(EntityKind::Device);
        let guess = event.is_failure() && (event.step.is_code() || event.step == haechi_features::Step::Login);
        let proves_presence = event.result == haechi_features::Outcome::Success && event.step.proves_presence();
        // The customer's face matched, and a liveness check passed, on this
        // device within the middle window: the step-up a block about
        // guessed codes asks for, already given. What the device then
        // passes (the owner's 1-won check, opening or code on a new phone)
        // is let through. What it fails is not: the pair is two events, and
        // a guesser who passes a face match on a photo of the owner and a
        // liveness check on their own face must get one guess for it at
        // most, after which the device is offending like any other.
        // Not for a late event: one whose customer the store no longer
        // holds reads zeros, which would look like a face shown just now.
        let device_showed_face = device.is_some()
            && !event.is_failure()
            && self.face_shown.as_ref().is_some_and(|(within, _)| within.holds(features));
        let passed_check_over: std::cell::RefCell<Option<String>> = std::cell::RefCell::new(None);
        // The counter work a block on a staff member's night (or bulk pull)
        // has no quarrel with.
        let routine_budget = self.routine_staff.and_then(|r| r.budget(event, features));
        // An hour the bank's staff work: where a staff block that passes
        // routine work gives way to a rule's block that passes nothing.
        let working_hours = event.step.is_staff_access() && self.routine_staff.is_some_and(|r| r.at_working_hour(features));
        let routine_passed_over: std::cell::RefCell<Option<(String, u64, i64, u32)>> = std::cell::RefCell::new(None);
        let applies = |b: &Block| {
            if answered.is_some_and(|(holder, set_at, _)| b.is_same_guard_challenge(*holder, *set_at)) {
                entry_passed_over.set(true);
                return None;
            }
            // A staff access names the customer whose record is read, not
            // who is acting: a block that stops a takeover of that customer
            // must not lock the investigator out of the record.
            if event.step.is_staff_access() && b.scope == EntityKind::Customer {
                return None;
            }
            if self.spares_owner_device(b, event, features) {
                spared_any.set(true);
                return None;
            }
            if let Some((day, _)) = routine_budget.filter(|(day, budget)| b.lets_routine_staff_work_pass(*day, *budget)) {
                *routine_passed_over.borrow_mut() = Some((b.set_by.clone(), b.hash, b.set_at_ms, day));
                return None;
            }
            // A passed ID scan, authenticity check, face match or liveness
            // check is what a step-up asks for, and none of them is what a
            // guesser of passwords and codes is after: stepping it up only
            // makes the owner, re-verifying on a new phone while their
            // account is guessed at, prove themselves twice. Their code,
            // login, 1-won check and account opening are still stepped up,
            // until the device has shown the owner's face (above).
            if (proves_presence || device_showed_face) && b.lets_presence_check_pass(device) {
                *passed_check_over.borrow_mut() = Some(b.set_by.clone());
                return None;
            }
            // A wrong code or password is the guesser's to send from any
            // device: refused. A failed photo or face guesses nothing.
            if !guess && b.steps_up_device(device) {
                return Some(BlockAction::Challenge);
            }
            Some(b.action)
        };
        let mut in_force = self.blocks.check_applying(keys, now, applies);
        // Whichever entry wins, a guess met by a customer block about
        // guessing makes its device one of the offending (the owner's
        // vouched phone aside), whether or not a rule fires on it.
        if guess && !spared_any.get() {
            if let Some(customer) = keys.get(EntityKind::Customer) {
                self.blocks.note_offending_device(EntityKind::Customer, customer, device, now);
            }
        }
        // The guard holds at enforcement too: a shared scope blocked while it
        // looked private (the first minutes of a new install, an exit at
        // dawn) is lifted once it carries more returning customers than the
        // limit, or than it did when it was blocked and this event is one of
        // them, returning before this event and passing it: a proxy's fresh
        // identities have never logged in, a carrier exit's customers have.
        // A failed event adds nobody to the count (see the feature store),
        // but the count may have grown earlier without a lift (another block
        // was the one checked then); a wrong password, anyone's to send,
        // must not be what lifts it now.
        if let Some((b, _)) = in_force.as_ref().filter(|(b, applied)| *applied == BlockAction::Block && !b.is_manual()) {
            let at_set = b.blast_radius.map_or(f32::MAX, |r| r as f32);
            let returning_now = !event.is_failure() && self.returning_slot.is_some_and(|s| features[s] >= 1.0);
            let grown = |c: &f32| *c > self.blast_radius_limit || (returning_now && *c >= at_set + 1.0);
            if let Some(carried) = self.blast_radius(b.scope, features).filter(grown) {
                // Only the entry that was checked: an analyst's block set meanwhile stays.
                self.blocks.lift_automatic(b.scope, b.hash, b.set_at_ms);
                out.guarded += 1;
                d.reasons.push(
                    Reason::new(self.names.blast_radius.clone(), Arc::from(b.scope.as_str()), Severity::Medium).with_detail(format!(
                        "lifted the block on this {} set by {}: it now carries {carried:.0} returning customers (when blocked: {}, limit {:.0})",
                        b.scope,
                        b.set_by,
                        b.blast_radius.unwrap_or(0),
                        self.blast_radius_limit
                    )),
                );
                in_force = self.blocks.check_applying(keys, now, applies);
            }
        }
        out.spared_owner_device = spared_any.get();
        // Said only when that is why nothing stood in the event's way: an ID
        // document's or an address's block, an analyst's, still decides.
        if let Some(set_by) = passed_check_over.take().filter(|_| in_force.is_none()) {
            out.passed_presence_check = true;
            let detail = match self.face_shown.as_ref().filter(|_| device_showed_face && !proves_presence) {
                Some((_, window)) => format!(
                    "the customer is blocked by {set_by} for the devices its guessed codes came from; this device matched the customer's face with liveness in the last {window}, which answers the step-up the block asks for, so it lets this {} through",
                    event.step.as_str()
                ),
                None => format!(
                    "the customer is blocked by {set_by} for the devices its guessed codes came from; a passed {} from another device gives a guesser nothing, so this block lets it through",
                    event.step.as_str()
                ),
            };
            d.reasons.push(Reason::new(self.names.blocklist.clone(), Arc::from("presence_check"), Severity::Low).with_detail(detail));
        }
        let routine_passed_over = routine_passed_over.take();
        // Passed over by the staff block, whatever else stands: what it lets
        // through counts against its budget unless the event is refused.
        if let Some((_, hash, set_at_ms, day)) = &routine_passed_over {
            out.routine_pass = Some((*hash, *set_at_ms, *day));
        }
        if let Some((set_by, ..)) = routine_passed_over.filter(|_| in_force.is_none()) {
            out.passed_routine_staff_work = true;
            d.reasons.push(Reason::new(self.names.blocklist.clone(), Arc::from(ROUTINE_STAFF_WORK), Severity::Low).with_detail(format!(
                "the staff member is blocked by {set_by} for pulling records out of pattern; one record read at an hour the bank's staff work is let through"
            )));
        }
        if entry_passed_over.get() {
            out.answered = true;
            if let Some((_, _, instead_of)) = answered {
                d.reasons.push(Reason::new(self.names.blast_radius.clone(), Arc::from(EntityKind::Session.as_str()), Severity::Low).with_detail(format!(
                    "this session's challenge (set by the guard instead of {instead_of}) was answered with a face match: the guard does not challenge {} again",
                    event.step.as_str()
                )));
            }
        }
        // The verdict whatever becomes of this event's block requests.
        let mut floor = d.without_blocks;
        if let Some((b, applied)) = in_force {
            // An analyst's block wins even over an allowlist; anything else
            // in force yields to it.
            if b.is_manual() || !d.allowlisted {
                let severity = if applied == BlockAction::Block { Severity::High } else { Severity::Medium };
                let mut reason = Reason::new(self.names.blocklist.clone(), Arc::from(b.scope.as_str()), severity);
                if applied != b.action {
                    out.stepped_up_other_device = true;
                    reason = reason.with_detail(format!(
                        "the {} is blocked by {} for the devices its offending events came from; this event comes from another, so this block asks for a step-up instead of refusing it",
                        b.scope, b.set_by
                    ));
                }
                d.reasons.insert(0, reason);
                let mut blocked_by = BlockedBy::from(&b);
                blocked_by.action = applied;
                match applied {
                    BlockAction::Block => {
                        // A rule firing again on an event the block refuses
                        // makes its device one of the offending.
                        if d.blocks.iter().any(|r| r.scope == Some(EntityKind::Customer) && !r.rate_limit) {
                            if let Some(customer) = keys.get(EntityKind::Customer) {
                                self.blocks.note_offending_device(EntityKind::Customer, customer, device, now);
                            }
                        }
                        // A rule not listed asking, in working hours, to block
                        // a member whose block passes routine work (an
                        // office-hours pull: the day is no longer routine)
                        // replaces that block, whichever entry refused this
                        // event: the new one passes nothing. At night the
                        // block refuses everything the rule would, and a
                        // night's pull big enough to trip a rule for any hour
                        // is still the night's.
                        if working_hours && keys.get(EntityKind::Staff).is_some_and(|h| self.blocks.staff_block_passes_routine(h, now)) {
                            self.escalate_staff_block(event, keys, d, now, &mut out);
                        }
                        d.verdict = Verdict::Block;
                        d.allowlisted = false;
                        d.blocks.clear();
                        d.blocked_by = Some(blocked_by);
                        out.blocked_by = Some(b);
                        return out;
                    }
                    BlockAction::Challenge => {
                        d.verdict = d.verdict.max(Verdict::Challenge);
                        floor = Verdict::Challenge;
                    }
                }
                d.blocked_by = Some(blocked_by);
                out.blocked_by = Some(b);
            }
        }
        if d.allowlisted {
            return out;
        }
        if let Some(scope) = self.limits.check(keys, now) {
            out.rate_limited = Some(scope);
            d.reasons.push(Reason::new(self.names.rate_limit.clone(), Arc::from(scope.as_str()), Severity::Medium));
            match self.limits.config.over_limit {
                OverLimit::Challenge => {
                    d.verdict = d.verdict.max(Verdict::Challenge);
                    floor = Verdict::Challenge;
                }
                OverLimit::Block => {
                    d.verdict = Verdict::Block;
                    d.blocks.push(BlockRequest { scope: Some(scope), ttl_s: self.limits.config.block_ttl_s, rate_limit: true, by: None });
                }
            }
        }
        if d.blocks.is_empty() {
            return out;
        }
        let requests = std::mem::take(&mut d.blocks);
        let mut still_blocks = false;
        let mut challenges = false;
        for req in &requests {
            let Some(scope) = req.scope else {
                still_blocks = true;
                continue;
            };
            let set_by_text = match (&req.by, req.rate_limit) {
                (_, true) => format!("{RATE_LIMIT_SET_BY_PREFIX}{scope}"),
                (Some((detector, rule)), false) => format!("{detector}:{rule}"),
                // Every finding's request names its rule; a bare request (tests) names its scope.
                (None, false) => format!("rule:{scope}"),
            };
            let carried = self.blast_radius(scope, features);
            let unknown = self.cold_start_needs_ms.filter(|need| history_ms < *need);
            if let Some(carried) = carried.filter(|c| *c > self.blast_radius_limit || unknown.is_some()) {
                // Only the same detector's block on a scope known to be
                // shared: another rule, a rate limit, or a scope the store
                // cannot size yet is not what the session answered.
                if carried > self.blast_radius_limit && answered.is_some_and(|(_, _, instead_of)| *instead_of == set_by_text) {
                    out.answered = true;
                    d.reasons.push(Reason::new(self.names.blast_radius.clone(), Arc::from(scope.as_str()), Severity::Medium).with_detail(format!(
                        "{scope} carried {carried:.0} returning customers in the long window (limit {:.0}): this session answered its challenge with a face match, and the guard does not challenge {} again",
                        self.blast_radius_limit,
                        event.step.as_str()
                    )));
                    continue;
                }
                out.guarded += 1;
                let detail = match unknown.filter(|_| carried <= self.blast_radius_limit) {
                    Some(need) => format!(
                        "{scope}: the store stands on {:.1} h of history, less than the long window ({:.0} h), so how many returning customers it carries is not known yet: challenged per session instead of blocked",
                        history_ms as f64 / 3_600_000.0,
                        need as f64 / 3_600_000.0
                    ),
                    None => format!(
                        "{scope} carried {carried:.0} returning customers in the long window (limit {:.0}): challenged per session instead of blocked",
                        self.blast_radius_limit
                    ),
                };
                challenges = true;
                d.reasons.push(Reason::new(self.names.blast_radius.clone(), Arc::from(scope.as_str()), Severity::Medium).with_detail(detail.clone()));
                // An implied session's key is nobody's to name (nor a request id's).
                if let (Some(hash), Some(session)) = (keys.get(EntityKind::Session), event.session_id.as_deref().filter(|_| !keys.session_is_implied())) {
                    let r = self.blocks.set_automatic(
                        EntityKind::Session,
                        hash,
                        session.to_owned(),
                        Duration::from_secs(u64::from(req.ttl_s)),
                        format!("event {}: {detail}", event.event_id),
                        format!("{GUARD_SET_BY_PREFIX}{set_by_text}"),
                        BlockAction::Challenge,
                        now,
                        Some(event.ts_ms.min(now)),
                        Some(carried as u32),
                        guard_holder(keys),
                    );
                    out.set.push((EntityKind::Session, SetBy::Guard, r.map(|_| ())));
                }
                continue;
            }
            still_blocks = true;
            let (Some(hash), Some(key)) = (keys.get(scope), entity_text(event, scope)) else { continue };
            if scope == EntityKind::Session && keys.session_is_implied() {
                // The reported id is a step's (see `session_ids`): the key is
                // the implied session's, and a block under the id's name could
                // be neither lifted by it nor told apart.
                continue;
            }
            let by = if req.rate_limit { SetBy::RateLimit } else { SetBy::Rule };
            let replace_passing = scope == EntityKind::Staff && !req.rate_limit && working_hours;
            let r = self.set_block(event, now, scope, hash, key, req, set_by_text, carried.map(|c| c as u32), replace_passing);
            if scope == EntityKind::Customer && !req.rate_limit {
                // Set now, or in force already: either way this event's device offends.
                self.blocks.note_offending_device(scope, hash, device, now);
            }
            out.set.push((scope, by, r.map(|_| ())));
        }
        d.blocks = requests;
        // The entry as applied: a customer block stepped up is a challenge here.
        if !still_blocks && d.verdict == Verdict::Block && d.blocked_by.as_ref().is_none_or(|b| b.action != BlockAction::Block) {
            d.verdict = if challenges { Verdict::Challenge } else { floor };
        }
        out
    }

    /// Set the staff blocks this event's rules ask for (see the caller).
    fn escalate_staff_block(&self, event: &Event, keys: &EntityKeys, d: &Decision, now: i64, out: &mut Enforced) {
        let (Some(hash), Some(key)) = (keys.get(EntityKind::Staff), entity_text(event, EntityKind::Staff)) else { return };
        for req in d.blocks.iter().filter(|r| r.scope == Some(EntityKind::Staff) && !r.rate_limit) {
            let Some((detector, rule)) = &req.by else { continue };
            let r = self.set_block(event, now, EntityKind::Staff, hash, key.clone(), req, format!("{detector}:{rule}"), None, true);
            out.set.push((EntityKind::Staff, SetBy::Rule, r.map(|_| ())));
        }
    }

    /// Set the block `req` asks for on `scope`'s entity, for `event`.
    #[allow(clippy::too_many_arguments)]
    fn set_block(&self, event: &Event, now: i64, scope: EntityKind, hash: u64, key: String, req: &BlockRequest, set_by: String, carried: Option<u32>, replace_passing: bool) -> Result<Block, Refused> {
        self.blocks.set_automatic_replacing(
            scope,
            hash,
            key,
            Duration::from_secs(u64::from(req.ttl_s)),
            format!("event {}", event.event_id),
            set_by,
            BlockAction::Block,
            now,
            Some(event.ts_ms.min(now)),
            carried,
            None,
            replace_passing,
        )
    }

    /// Drop expired blocks and idle limiter keys; returns blocks in force by scope.
    /// "Now" for expiry sweeps, on the clock blocks are enforced on: the wall
    /// clock, or the newest event time (`watermark_ms`) when enforcement runs
    /// on event time, so that a topic read behind the wall clock keeps
    /// its blocks as long as its events say.
    pub fn sweep_now(&self, watermark_ms: Option<i64>) -> Option<i64> {
        match self.clock {
            EnforcementClock::Wall => Some(now_ms()),
            EnforcementClock::Event => watermark_ms,
        }
    }

    pub fn sweep(&self, now: i64) -> Vec<(EntityKind, i64)> {
        self.limits.sweep();
        self.blocks.sweep(now)
    }
}

/// What a guard challenge on the event's session lets through (see
/// [`Enforcer::guard_answer`]).
#[derive(Debug, Default)]
struct GuardAnswer {
    /// The session answered its challenge, or this event does, and this is
    /// a passed identity check: the challenge's holder and set time, and
    /// what it stands in for (`detector:rule`).
    answered: Option<(u64, i64, String)>,
    /// This event answers it: its session, to mark once the event is let through.
    marks: Option<u64>,
}

/// The customer and device an event comes from, as one keyed hash: who may
/// answer a per-session challenge set on such an event. `None` unless it
/// names both (a device id alone is the client's to choose), and then
/// nobody can.
fn guard_holder(keys: &EntityKeys) -> Option<u64> {
    let (customer, device) = (keys.get(EntityKind::Customer)?, keys.get(EntityKind::Device)?);
    // The keyed hashes are unknown outside; mixing keeps (a, b) apart from (b, a).
    Some(customer.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29) ^ device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Config, Pipeline, Processed};

    // One argument per field of the event line, so that a test's events read as a table.
    #[allow(clippy::too_many_arguments)]
    fn line(i: usize, ts: &str, step: &str, result: &str, customer: &str, ip: &str, session: &str, doc: Option<&str>) -> Vec<u8> {
        let doc = doc.map_or(String::new(), |d| format!(r#","id_doc_hash":"{d}""#));
        format!(
            r#"{{"event_id":"e{i}","ts":"{ts}","step":"{step}","result":"{result}","customer_id":"{customer}","ip":"{ip}","session_id":"{session}","device_id":"dev-{customer}"{doc}}}"#
        )
        .into_bytes()
    }

    /// A pipeline on `rules` alone (no model), with `adjust` applied to its configuration.
    fn pipeline_from(rules: &str, adjust: impl FnOnce(&mut Config)) -> Pipeline {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.yaml");
        std::fs::write(&path, rules).unwrap();
        let mut config = Config::default();
        config.rules.path = Some(path);
        config.model.enabled = false;
        adjust(&mut config);
        let p = Pipeline::new(config).unwrap();
        std::mem::forget(dir);
        p
    }

    /// A rule pack with one blocking rule on the address, so the guard is what decides.
    fn pipeline() -> Pipeline {
        ip_rule_pipeline_with(|_| {})
    }

    /// One blocking rule on the address: three fresh identities in a day.
    const IP_RULE: &str = r#"
rules:
  - id: many_new_identities_on_one_address
    description: test
    severity: high
    when: features.event.onboarding_step == 1.0 && features.ip.distinct_new_identities_24h >= 3.0
    action: block
    scope: ip
    ttl: 1h
"#;

    fn ip_rule_pipeline_with(adjust: impl FnOnce(&mut Config)) -> Pipeline {
        pipeline_from(IP_RULE, adjust)
    }

    fn run(p: &Pipeline, lines: &[Vec<u8>]) -> Vec<Decision> {
        let mut scratch = p.scratch();
        lines.iter().map(|l| p.process(&p.parse(l).unwrap(), &mut scratch).unwrap().decision).collect()
    }

    /// Three hundred existing customers log in through `nat` (and go on to
    /// their code: a customer counts as returning once logged in); then
    /// three people onboard through it, in sessions o0-o2, and the address
    /// rule fires.
    fn nat_exit_then_three_applicants(nat: &str) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        for c in 0..300 {
            lines.push(line(c, "2026-11-02T10:00:00+09:00", "login", "success", &format!("r{c}"), nat, &format!("s{c}"), None));
            lines.push(line(10_000 + c, "2026-11-02T10:00:10+09:00", "otp", "success", &format!("r{c}"), nat, &format!("s{c}"), None));
        }
        for k in 0..3 {
            lines.push(line(1000 + k, "2026-11-02T10:05:00+09:00", "id_ocr", "success", &format!("new{k}"), nat, &format!("o{k}"), Some(&format!("doc{k}"))));
        }
        lines
    }

    #[test]
    fn a_block_on_a_customer_does_not_lock_an_investigator_out_of_their_record() {
        let p = pipeline();
        let mut s = p.scratch();
        let mut decide = |line: &str| p.process(&p.parse(line.as_bytes()).unwrap(), &mut s).unwrap();
        let own = decide(r#"{"event_id":"c1","ts":"2026-11-02T10:00:00+09:00","step":"login","result":"success","customer_id":"victim","ip":"121.1.1.1"}"#);
        let blocks = p.enforcer().blocks();
        let victim = own.keys.get(EntityKind::Customer).unwrap();
        blocks.set_manual(EntityKind::Customer, victim, "victim".into(), Duration::from_secs(3_600), "takeover".into(), "analyst:kim".into());
        let again = decide(r#"{"event_id":"c2","ts":"2026-11-02T10:05:00+09:00","step":"otp","result":"success","customer_id":"victim","ip":"121.1.1.1"}"#);
        assert_eq!(again.decision.verdict, Verdict::Block, "the customer's own step");
        let look = r#"{"event_id":"LOOK","ts":"2026-11-02T10:06:00+09:00","step":"record_view","result":"success","customer_id":"victim","staff_id":"st-lee","ip":"10.20.1.9"}"#;
        let read = decide(&look.replace("LOOK", "r1"));
        assert_eq!(read.decision.verdict, Verdict::Allow, "the investigator reading the record: {:?}", read.decision.reasons);
        // A block on the staff member still refuses them, on that record or any other.
        blocks.set_manual(EntityKind::Staff, read.keys.get(EntityKind::Staff).unwrap(), "st-lee".into(), Duration::from_secs(3_600), "bulk".into(), "analyst:kim".into());
        assert_eq!(decide(&look.replace("LOOK", "r2")).decision.verdict, Verdict::Block);
    }

    #[test]
    fn a_nat_exit_carrying_hundreds_of_returning_customers_is_challenged_per_session_never_blocked() {
        let p = pipeline();
        let nat = "223.38.14.9";
        let d = run(&p, &nat_exit_then_three_applicants(nat));
        let last = d.last().unwrap();
        assert_eq!(last.verdict, Verdict::Challenge, "{last:?}");
        let guard = last.reasons.iter().find(|r| &*r.detector == "blast_radius").expect("the guard gives its reason");
        // Past 16 members a distinct count is a sketch that tops out near 266: plenty for a limit of 8.
        assert!(guard.detail.as_deref().unwrap().contains("returning customers"), "{guard:?}");
        // The address itself was never listed; the session was, as a challenge.
        let listed = p.enforcer().blocks().list_at(0);
        assert!(listed.iter().all(|b| b.scope != EntityKind::Ip), "{listed:?}");
        assert!(listed.iter().any(|b| b.scope == EntityKind::Session && b.action == BlockAction::Challenge && b.blast_radius.unwrap() > 200));
        // The next honest customer through the exit is allowed.
        let next = run(&p, &[line(2000, "2026-11-02T10:06:00+09:00", "login", "success", "r7", nat, "s-later", None)]);
        assert_eq!(next[0].verdict, Verdict::Allow);
        // The challenged session proves itself with a face match passed
        // after the challenge. Its ID scanned again is no answer (a stolen ID
        // passes its own scan), nor a liveness check (the attacker's own live
        // face passes), nor a face match dated before the challenge (a late
        // arrival).
        let not_yet = run(
            &p,
            &[
                line(2010, "2026-11-02T10:06:10+09:00", "id_ocr", "success", "new2", nat, "o2", Some("doc2")),
                line(2013, "2026-11-02T10:06:15+09:00", "liveness", "success", "new2", nat, "o2", None),
                line(2011, "2026-11-02T10:04:50+09:00", "face_match", "success", "new2", nat, "o2", None),
                line(2015, "2026-11-02T10:05:00+09:00", "face_match", "success", "new2", nat, "o2", None),
            ],
        );
        for n in &not_yet {
            assert_eq!(n.verdict, Verdict::Challenge, "{n:?}");
        }
        // The face match it passes answers: not challenged there, though the
        // rule fires again and says so; nor at its later identity checks.
        let face = line(2001, "2026-11-02T10:06:30+09:00", "face_match", "success", "new2", nat, "o2", None);
        let answered_at = p.parse(&face).unwrap().ts_ms;
        let mut scratch = p.scratch();
        let answered: Vec<Processed> = [face, line(2012, "2026-11-02T10:06:40+09:00", "id_authenticity", "success", "new2", nat, "o2", None)]
            .iter()
            .map(|l| p.process(&p.parse(l).unwrap(), &mut scratch).unwrap())
            .collect();
        for a in &answered {
            assert_eq!(a.decision.verdict, Verdict::Allow, "{:?}", a.decision);
            assert!(a.decision.blocked_by.is_none());
            assert!(a.enforced.answered, "counted: {:?}", a.decision);
            // The rule fires again and the guard says why it does not challenge.
            assert!(
                a.decision.reasons.iter().any(|r| &*r.detector == "blast_radius" && r.detail.as_deref().is_some_and(|t| t.contains("answered its challenge"))),
                "{:?}",
                a.decision
            );
        }
        assert!(p.enforcer().blocks().list_at(0).iter().any(|b| b.key == "o2" && b.answered_at_event_ms == Some(answered_at)));
        // A code, where the address rule does not fire, passes the entry over and says so.
        let code = run(&p, &[line(2017, "2026-11-02T10:06:50+09:00", "otp", "success", "new2", nat, "o2", None)]);
        assert_eq!(code[0].verdict, Verdict::Allow, "{:?}", code[0]);
        assert!(code[0].reasons.iter().any(|r| &*r.detector == "blast_radius" && r.detail.as_deref().is_some_and(|t| t.contains("was answered"))), "{:?}", code[0]);
        // A check dated before the answer, arriving after it, answers nothing.
        let late = run(&p, &[line(2014, "2026-11-02T10:06:20+09:00", "id_authenticity", "success", "new2", nat, "o2", None)]);
        assert_eq!(late[0].verdict, Verdict::Challenge, "{:?}", late[0]);
        // The 1-won account check, a verification method that opens
        // nothing, passes too. A check it fails is still challenged; so are
        // a phone change and the account opening, where the session gets
        // what it came for, and so is a login.
        let one_won = run(&p, &[line(2016, "2026-11-02T10:07:30+09:00", "account_verify", "success", "new2", nat, "o2", None)]);
        assert_eq!(one_won[0].verdict, Verdict::Allow, "{:?}", one_won[0]);
        let rest = run(
            &p,
            &[
                line(2002, "2026-11-02T10:07:40+09:00", "liveness", "failure", "new2", nat, "o2", None),
                line(2018, "2026-11-02T10:07:50+09:00", "phone_auth", "success", "new2", nat, "o2", None),
                line(2019, "2026-11-02T10:07:55+09:00", "login", "success", "new2", nat, "o2", None),
                line(2003, "2026-11-02T10:08:00+09:00", "account_open", "success", "new2", nat, "o2", None),
            ],
        );
        for r in &rest {
            assert_eq!(r.verdict, Verdict::Challenge, "{r:?}");
        }
        assert_eq!(rest[3].blocked_by.as_ref().unwrap().scope, EntityKind::Session);
        // The session id is the client's to choose: another customer, or the
        // same customer on another device, cannot answer for the one challenged.
        let borrowed = run(&p, &[line(2005, "2026-11-02T10:08:30+09:00", "face_match", "success", "new1", nat, "o2", None)]);
        assert_eq!(borrowed[0].verdict, Verdict::Challenge, "{:?}", borrowed[0]);
        let other_device = run(&p, &[format!(
            r#"{{"event_id":"e2006","ts":"2026-11-02T10:08:40+09:00","step":"face_match","result":"success","customer_id":"new2","ip":"{nat}","session_id":"o2","device_id":"dev-elsewhere"}}"#
        )
        .into_bytes()]);
        assert_eq!(other_device[0].verdict, Verdict::Challenge, "{:?}", other_device[0]);
        // A session the guard never challenged gets no such pass: a fresh
        // applicant's passed check through the exit is challenged.
        let fresh = run(&p, &[line(2004, "2026-11-02T10:09:00+09:00", "face_match", "success", "new9", nat, "o9", None)]);
        assert_eq!(fresh[0].verdict, Verdict::Challenge, "{:?}", fresh[0]);
    }

    #[test]
    fn an_answered_guard_challenge_leaves_other_findings_in_force() {
        // Beside the address rule: a rule that challenges every liveness
        // check, another rule's block on the same address, and another
        // rule's block on the device (which the guard turns into a
        // challenge for want of history). Answering the address rule's
        // challenge must drop none of them.
        let p = pipeline_from(
            &format!(
                "{IP_RULE}{}",
                r#"
  - id: every_liveness
    description: test
    severity: medium
    when: event.step == "liveness"
    action: challenge
    scope: session
  - id: every_id_authenticity_on_the_address
    description: test
    severity: high
    when: event.step == "id_authenticity"
    action: block
    scope: ip
    ttl: 1h
  - id: every_otp_on_the_device
    description: test
    severity: high
    when: event.step == "otp"
    action: block
    scope: device
    ttl: 1h
"#
            ),
            |_| {},
        );
        let nat = "223.38.14.9";
        let mut lines = nat_exit_then_three_applicants(nat);
        lines.push(line(2000, "2026-11-02T10:06:00+09:00", "face_match", "success", "new2", nat, "o2", None));
        lines.push(line(2001, "2026-11-02T10:06:30+09:00", "liveness", "success", "new2", nat, "o2", None));
        lines.push(line(2002, "2026-11-02T10:07:00+09:00", "id_authenticity", "success", "new2", nat, "o2", None));
        lines.push(line(2003, "2026-11-02T10:07:30+09:00", "otp", "success", "new2", nat, "o2", None));
        let d = run(&p, &lines);
        let [challenged, face, liveness, authenticity, otp] = &d[d.len() - 5..] else { unreachable!() };
        assert_eq!(challenged.verdict, Verdict::Challenge, "{challenged:?}");
        assert_eq!(face.verdict, Verdict::Allow, "the face match answers: {face:?}");
        assert_eq!(liveness.verdict, Verdict::Challenge, "the other rule's challenge holds: {liveness:?}");
        assert!(liveness.blocked_by.is_none(), "not the guard's entry: {liveness:?}");
        assert_eq!(authenticity.verdict, Verdict::Challenge, "another rule's block on the address is not what was answered: {authenticity:?}");
        assert_eq!(otp.verdict, Verdict::Challenge, "{otp:?}");
        assert!(otp.reasons.iter().any(|r| r.detail.as_deref().is_some_and(|t| t.contains("history"))), "another rule's block, challenged: {otp:?}");
    }

    #[test]
    fn an_answered_session_over_the_address_quota_is_still_challenged() {
        let p = ip_rule_pipeline_with(|c| {
            c.limits.ip_per_minute = 700;
            c.limits.over_limit = OverLimit::Block;
        });
        let nat = "223.38.14.9";
        let mut lines = nat_exit_then_three_applicants(nat);
        lines.push(line(2000, "2026-11-02T10:06:00+09:00", "face_match", "success", "new2", nat, "o2", None));
        // The exit's returning customers come back in a rush, over its quota.
        for c in 0..700 {
            lines.push(line(20_000 + c, "2026-11-02T10:06:10+09:00", "login", "success", &format!("r{}", c % 300), nat, &format!("t{c}"), None));
        }
        lines.push(line(2001, "2026-11-02T10:06:10+09:00", "id_authenticity", "success", "new2", nat, "o2", None));
        let d = run(&p, &lines);
        assert_eq!(d[d.len() - 702].verdict, Verdict::Allow, "the face match answers: {:?}", d[d.len() - 702]);
        let last = d.last().unwrap();
        assert_eq!(last.verdict, Verdict::Challenge, "the quota's challenge is not what was answered: {last:?}");
        assert!(last.reasons.iter().any(|r| &*r.detector == "rate_limit"), "{last:?}");
    }

    #[test]
    fn a_face_match_challenged_for_anything_else_answers_nothing() {
        let p = pipeline_from(
            &format!(
                "{IP_RULE}{}",
                r#"
  - id: every_face_match
    description: test
    severity: medium
    when: event.step == "face_match"
    action: challenge
    scope: session
"#
            ),
            |_| {},
        );
        let nat = "223.38.14.9";
        let mut lines = nat_exit_then_three_applicants(nat);
        lines.push(line(2000, "2026-11-02T10:06:00+09:00", "face_match", "success", "new2", nat, "o2", None));
        lines.push(line(2001, "2026-11-02T10:06:30+09:00", "id_authenticity", "success", "new2", nat, "o2", None));
        let d = run(&p, &lines);
        let [face, authenticity] = &d[d.len() - 2..] else { unreachable!() };
        assert_eq!(face.verdict, Verdict::Challenge, "{face:?}");
        assert_eq!(authenticity.verdict, Verdict::Challenge, "{authenticity:?}");
        assert_eq!(authenticity.blocked_by.as_ref().map(|b| b.scope), Some(EntityKind::Session), "the guard's entry holds: {authenticity:?}");
        assert!(p.enforcer().blocks().list_at(0).iter().all(|b| b.answered_at_event_ms.is_none()));
        let mut scratch = p.scratch();
        let again = p.process(&p.parse(&line(2002, "2026-11-02T10:07:00+09:00", "face_match", "success", "new2", nat, "o2", None)).unwrap(), &mut scratch).unwrap();
        assert_eq!(again.decision.verdict, Verdict::Challenge);
        assert!(!again.enforced.answered, "not counted as let through");
    }

    #[test]
    fn only_an_event_naming_its_customer_and_device_can_hold_a_guard_challenge() {
        let p = pipeline();
        let mut scratch = p.scratch();
        let mut n = 0;
        let mut holder = |customer: Option<&str>, device: &str| {
            n += 1;
            let id = format!("e{n}");
            let customer = customer.map_or(String::new(), |c| format!(r#","customer_id":"{c}""#));
            let json = format!(r#"{{"event_id":"{id}","ts":"2026-11-02T10:00:00+09:00","step":"otp","result":"success","device_id":"{device}","session_id":"s"{customer}}}"#);
            guard_holder(&p.process(&p.parse(json.as_bytes()).unwrap(), &mut scratch).unwrap().keys)
        };
        let h = holder(Some("c"), "d").expect("customer and device: a holder");
        assert_eq!(holder(Some("c"), "d"), Some(h));
        assert_eq!(holder(None, "d"), None, "a device alone holds nothing");
        assert!(holder(Some("c2"), "d").is_some_and(|o| o != h), "another customer on the device");
        assert!(holder(Some("c"), "d2").is_some_and(|o| o != h), "the customer on another device");
    }

    /// Three fresh identities, each in its own session, scanning an ID
    /// through `ip` at `ts`: enough for the one-rule pack to ask for a block.
    fn three_fresh_identities(ts: &str, ip: &str) -> Vec<Vec<u8>> {
        (0..3).map(|k| line(k, ts, "id_ocr", "success", &format!("fresh{k}"), ip, &format!("s{k}"), Some(&format!("d{k}")))).collect()
    }

    /// A pipeline standing on a day of history (a login every four hours
    /// the day before, elsewhere), so that a shared scope's blast radius counts.
    fn warm_pipeline() -> Pipeline {
        warm_pipeline_after(&[])
    }

    /// [`warm_pipeline`], after `first` (dated before 2026-11-01T02:00).
    fn warm_pipeline_after(first: &[Vec<u8>]) -> Pipeline {
        let p = pipeline();
        run(&p, first);
        let day: Vec<Vec<u8>> = (0..7)
            .map(|k| line(900_000 + k, &format!("2026-11-{:02}T{:02}:00:00+09:00", 1 + (2 + 4 * k) / 24, (2 + 4 * k) % 24), "login", "success", "yesterday", "121.0.0.1", "s-yesterday", None))
            .collect();
        run(&p, &day);
        assert!(p.store().history_ms() >= 86_400_000);
        p
    }

    #[test]
    fn before_a_day_of_history_a_shared_scope_is_challenged_per_session_never_blocked() {
        let p = pipeline();
        let proxy = "45.9.9.9";
        let lines = three_fresh_identities("2026-11-02T03:00:00+09:00", proxy);
        let d = run(&p, &lines);
        assert_eq!(d[2].verdict, Verdict::Challenge, "{:?}", d[2]);
        let why = d[2].reasons.iter().find(|r| &*r.detector == "blast_radius").expect("the guard says why");
        assert!(why.detail.as_deref().unwrap().contains("history"), "{why:?}");
        assert!(p.enforcer().blocks().list_at(0).iter().all(|b| b.scope != EntityKind::Ip));
        // A challenge set for want of history is not one a face match
        // answers: the address may be a proxy's.
        let face = run(&p, &[line(10, "2026-11-02T03:01:00+09:00", "face_match", "success", "fresh2", proxy, "s2", None)]);
        assert_eq!(face[0].verdict, Verdict::Challenge, "{:?}", face[0]);
        assert_eq!(face[0].blocked_by.as_ref().map(|b| b.scope), Some(EntityKind::Session));
        assert!(p.enforcer().blocks().list_at(0).iter().all(|b| b.answered_at_event_ms.is_none()));
        // The same with cold-start challenges off: blocked.
        let p = ip_rule_pipeline_with(|c| c.blocks.cold_start_challenge = false);
        assert_eq!(run(&p, &lines)[2].verdict, Verdict::Block);
    }

    #[test]
    fn a_proxy_onboarding_fresh_identities_is_blocked_and_the_block_holds_for_the_next_event() {
        let p = warm_pipeline();
        let proxy = "45.9.9.9";
        let lines = three_fresh_identities("2026-11-02T03:00:00+09:00", proxy);
        let d = run(&p, &lines);
        assert_eq!(d[2].verdict, Verdict::Block);
        assert!(d[2].reasons.iter().all(|r| &*r.detector != "blast_radius"));
        let b = p.enforcer().blocks().list_at(0).into_iter().find(|b| b.scope == EntityKind::Ip).expect("the proxy is listed");
        assert_eq!((b.key.as_str(), b.blast_radius), (proxy, Some(0)));
        // Event N+1, even a harmless step of a fresh identity, meets the
        // block: replay enforces as the service does.
        let next = run(&p, &[line(10, "2026-11-02T03:01:00+09:00", "face_match", "success", "fresh9", proxy, "s9", None)]);
        assert_eq!(next[0].verdict, Verdict::Block);
        assert_eq!(next[0].blocked_by.as_ref().unwrap().key, proxy);
        // An hour of event time later the block has expired.
        let later = run(&p, &[line(11, "2026-11-02T04:01:00+09:00", "face_match", "success", "fresh9", proxy, "s10", None)]);
        assert!(later[0].blocked_by.is_none());
    }

    /// A pack whose one rule blocks a customer after three failed codes in
    /// an hour; other devices are refused as well, unless said otherwise.
    fn brute_force_pipeline(spare_owner_devices: bool) -> Pipeline {
        brute_force_pipeline_with(|c| {
            c.blocks.spare_owner_devices = spare_owner_devices;
            c.blocks.step_up_other_devices_for.clear();
        })
    }

    /// One rule: a customer is blocked after three failed codes in an hour.
    const CODES_GUESSED_RULE: &str = r#"
rules:
  - id: codes_guessed
    description: test
    severity: high
    when: event.step == "otp" && event.result == "failure" && features.customer.code_failures_1h >= 3.0
    action: block
    scope: customer
    ttl: 12h
"#;

    fn brute_force_pipeline_with(adjust: impl FnOnce(&mut Config)) -> Pipeline {
        pipeline_from(CODES_GUESSED_RULE, adjust)
    }

    #[test]
    fn a_customer_block_refuses_the_guessers_devices_and_steps_up_any_other() {
        let listed = |c: &mut Config| {
            c.blocks.step_up_other_devices_for = vec!["rules:codes_guessed".into()];
            c.blocks.presence_checks_pass_for = vec!["rules:codes_guessed".into()];
        };
        let p = brute_force_pipeline_with(listed);
        let guesses: Vec<Vec<u8>> = (0..3).map(|k| on_device(10 + k, &format!("2026-11-09T03:0{k}:00+09:00"), "otp", "failure", "stranger")).collect();
        assert_eq!(run(&p, &guesses)[2].verdict, Verdict::Block);
        let one = |i: usize, minute: u32, step: &str, result: &str, device: &str| run(&p, &[on_device(i, &format!("2026-11-09T03:{minute:02}:00+09:00"), step, result, device)]).remove(0);
        // The guesser's device is refused, even a passed step.
        let d = one(20, 10, "login", "success", "stranger");
        assert_eq!((d.verdict, d.blocked_by.as_ref().map(|b| b.action)), (Verdict::Block, Some(BlockAction::Block)), "{d:?}");
        // The owner, on a phone nobody has seen, is stepped up, and told why.
        let d = one(21, 11, "login", "success", "owners-new-phone");
        assert_eq!((d.verdict, d.blocked_by.as_ref().map(|b| (b.scope, b.action))), (Verdict::Challenge, Some((EntityKind::Customer, BlockAction::Challenge))), "{d:?}");
        assert!(d.reasons[0].detail.as_deref().is_some_and(|t| t.contains("step-up")), "{d:?}");
        // A passed ID scan, authenticity check, face match or liveness check
        // from that phone gives a guesser of codes nothing: let through, and
        // told why. Until the phone has matched the owner's face with
        // liveness, the code and account opening it leads to are stepped up
        // by the block.
        let stepped_up_by_the_block = |d: &Decision| d.blocked_by.as_ref().map(|b| (b.scope, b.action)) == Some((EntityKind::Customer, BlockAction::Challenge));
        let presence_passed = |d: &Decision, why: &str| {
            d.verdict == Verdict::Allow && d.blocked_by.is_none() && d.reasons.iter().any(|r| &*r.id == "presence_check" && r.severity == Severity::Low && r.detail.as_deref().is_some_and(|t| t.contains(why)))
        };
        for (i, step) in ["id_ocr", "id_authenticity"].into_iter().enumerate() {
            let d = one(80 + i, 11, step, "success", "owners-new-phone");
            assert!(presence_passed(&d, "gives a guesser nothing, so this block lets it through"), "{d:?}");
        }
        let open = one(84, 11, "account_open", "success", "owners-new-phone");
        assert!(open.verdict == Verdict::Challenge && stepped_up_by_the_block(&open), "{open:?}");
        let code = one(85, 11, "otp", "success", "owners-new-phone");
        assert!(code.verdict == Verdict::Challenge && stepped_up_by_the_block(&code), "a passed code is what a guesser is after: {code:?}");
        // A face match and a liveness check on another of the owner's
        // devices: let through, and from then on that device has answered
        // the step-up within the hour: its 1-won check, code and login pass.
        // A face match alone answers nothing.
        let face = one(86, 11, "face_match", "success", "owners-laptop");
        assert!(presence_passed(&face, "gives a guesser nothing"), "{face:?}");
        let open = one(87, 11, "account_open", "success", "owners-laptop");
        assert!(open.verdict == Verdict::Challenge && stepped_up_by_the_block(&open), "a face match without liveness: {open:?}");
        assert!(presence_passed(&one(88, 11, "liveness", "success", "owners-laptop"), "gives a guesser nothing"));
        for (i, step) in ["account_verify", "otp", "login"].into_iter().enumerate() {
            let d = one(89 + i, 12, step, "success", "owners-laptop");
            assert!(presence_passed(&d, "matched the customer's face with liveness in the last 1h"), "{step}: {d:?}");
        }
        // The pair is two events: a guesser can pass a face match on a photo
        // of the owner and a liveness check on their own face. Such a
        // device's wrong code is refused and makes it offending, so the pair
        // buys one guess; its next passed code is refused.
        assert!(presence_passed(&one(96, 12, "face_match", "success", "forged-pair"), "gives a guesser nothing"));
        assert!(presence_passed(&one(97, 12, "liveness", "success", "forged-pair"), "gives a guesser nothing"));
        assert_eq!(one(98, 12, "login", "failure", "forged-pair").verdict, Verdict::Block);
        let after = one(99, 12, "otp", "success", "forged-pair");
        assert!(after.verdict == Verdict::Block && after.reasons.iter().all(|r| &*r.id != "presence_check"), "{after:?}");
        // The guesser's own device is refused whatever it passes.
        assert_eq!(one(94, 12, "face_match", "success", "stranger").verdict, Verdict::Block);
        // A block that failed faces can set too (the failure streak, by
        // default) steps up a passed face match: a spoofer rotating device
        // ids must not get their one good try through.
        let p2 = brute_force_pipeline_with(|c| c.blocks.step_up_other_devices_for = vec!["rules:codes_guessed".into()]);
        run(&p2, &guesses);
        let face = run(&p2, &[on_device(87, "2026-11-09T03:11:00+09:00", "face_match", "success", "owners-new-phone")]).remove(0);
        assert!(face.verdict == Verdict::Challenge && stepped_up_by_the_block(&face), "{face:?}");
        assert!(face.reasons.iter().all(|r| &*r.id != "presence_check"), "{face:?}");
        // A failed photo guesses nothing: stepped up too. A wrong code is
        // refused from any device, and fires the rule again; a wrong
        // password fires no rule here but is a guess all the same. Either
        // way its device is one of the offending from then on.
        assert_eq!(one(22, 12, "face_match", "failure", "owners-new-phone").verdict, Verdict::Challenge);
        assert_eq!(one(23, 13, "otp", "failure", "second-stranger").verdict, Verdict::Block);
        assert_eq!(one(24, 14, "login", "success", "second-stranger").verdict, Verdict::Block);
        assert_eq!(one(25, 15, "login", "failure", "password-guesser").verdict, Verdict::Block);
        assert_eq!(one(26, 16, "login", "success", "password-guesser").verdict, Verdict::Block);
        assert_eq!(one(27, 17, "login", "success", "owners-new-phone").verdict, Verdict::Challenge);
        // An event without a device cannot be told apart: refused.
        let bare = run(&p, &[br#"{"event_id":"e28","ts":"2026-11-09T03:18:00+09:00","step":"login","result":"success","customer_id":"owner","ip":"10.28.0.1"}"#.to_vec()]).remove(0);
        assert_eq!(bare.verdict, Verdict::Block, "{bare:?}");
        // A guesser rotating device ids: past four offending devices the
        // latest four stay refused and the owner is still stepped up;
        // refusing everyone would lock out the owner alone, since every
        // guess is refused from any device anyway.
        assert_eq!(one(30, 20, "otp", "failure", "fourth").verdict, Verdict::Block);
        assert_eq!(one(31, 21, "login", "success", "owners-new-phone").verdict, Verdict::Challenge);
        assert_eq!(one(32, 22, "otp", "failure", "fifth").verdict, Verdict::Block);
        assert_eq!(one(33, 23, "login", "success", "owners-new-phone").verdict, Verdict::Challenge);
        assert_eq!(one(34, 24, "login", "success", "fifth").verdict, Verdict::Block, "the latest device is remembered");
        assert_eq!(one(35, 25, "otp", "failure", "owners-new-phone").verdict, Verdict::Block, "a wrong code from the owner's phone is a guess too");
        assert_eq!(one(36, 26, "login", "success", "fifth").verdict, Verdict::Block, "still among the latest four");
        let forgotten = one(37, 27, "login", "success", "stranger");
        assert_eq!(forgotten.verdict, Verdict::Challenge, "the oldest offending device is forgotten, and stepped up like any other: {forgotten:?}");
        // A device that offends again becomes the latest: the guesser's
        // main device is not forgotten behind four one-off ids. Remembered
        // now: password-guesser, fourth, fifth, owners-new-phone.
        assert_eq!(one(38, 28, "login", "failure", "password-guesser").verdict, Verdict::Block);
        assert_eq!(one(39, 29, "otp", "failure", "sixth").verdict, Verdict::Block);
        assert_eq!(one(40, 30, "login", "success", "password-guesser").verdict, Verdict::Block, "offended again, so kept");
        assert_eq!(one(41, 31, "login", "success", "fourth").verdict, Verdict::Challenge, "the one that offended longest ago went");
        // A wrong code without a device is refused, and changes nothing for
        // the devices: the owner's tablet is still stepped up.
        let bare_guess = run(&p, &[br#"{"event_id":"e42","ts":"2026-11-09T03:32:00+09:00","step":"otp","result":"failure","customer_id":"owner","ip":"10.42.0.1"}"#.to_vec()]).remove(0);
        assert_eq!(bare_guess.verdict, Verdict::Block, "{bare_guess:?}");
        assert_eq!(one(43, 33, "login", "success", "owners-tablet").verdict, Verdict::Challenge);
        // An hour after the owner's face was matched on the laptop, the
        // match has left the window: the laptop is stepped up again.
        let later = run(&p, &[on_device(95, "2026-11-09T04:13:00+09:00", "login", "success", "owners-laptop")]).remove(0);
        assert!(later.verdict == Verdict::Challenge && stepped_up_by_the_block(&later), "{later:?}");
        // A customer block by a rule not about guessing (not listed)
        // refuses every device, and so does every block with the list empty.
        for adjust in [(|_: &mut Config| {}) as fn(&mut Config), |c: &mut Config| c.blocks.step_up_other_devices_for.clear()] {
            let p = brute_force_pipeline_with(adjust);
            run(&p, &guesses);
            assert_eq!(run(&p, &[on_device(21, "2026-11-09T03:11:00+09:00", "login", "success", "owners-new-phone")])[0].verdict, Verdict::Block);
        }
    }

    #[test]
    fn a_stepped_up_event_whose_other_block_the_guard_turns_into_a_challenge_is_challenged() {
        // A second rule asks to block the address of a login on a guessed
        // account; before a day of history the guard makes that a session
        // challenge, and the customer block steps the owner up: a challenge.
        let rules = format!(
            "{CODES_GUESSED_RULE}{}",
            r#"  - id: login_on_a_guessed_account
    description: test
    severity: high
    when: event.step == "login" && features.customer.code_failures_1h >= 3.0
    action: block
    scope: ip
    ttl: 1h
"#
        );
        let p = pipeline_from(
            &rules,
            |c| c.blocks.step_up_other_devices_for = vec!["rules:codes_guessed".into()],
        );
        let guesses: Vec<Vec<u8>> = (0..3).map(|k| on_device(10 + k, &format!("2026-11-09T03:0{k}:00+09:00"), "otp", "failure", "stranger")).collect();
        run(&p, &guesses);
        let d = run(&p, &[on_device(21, "2026-11-09T03:11:00+09:00", "login", "success", "owners-new-phone")]).remove(0);
        assert!(d.reasons.iter().any(|r| &*r.detector == "blast_radius"), "the guard turned the address block into a challenge: {d:?}");
        assert_eq!(d.verdict, Verdict::Challenge, "{d:?}");
    }

    fn on_device(i: usize, ts: &str, step: &str, result: &str, device: &str) -> Vec<u8> {
        format!(r#"{{"event_id":"e{i}","ts":"{ts}","step":"{step}","result":"{result}","customer_id":"owner","ip":"10.{i}.0.1","session_id":"s{i}","device_id":"{device}"}}"#).into_bytes()
    }

    #[test]
    fn a_late_event_of_a_customer_the_store_no_longer_holds_shows_no_face() {
        let p = brute_force_pipeline_with(|c| {
            c.blocks.step_up_other_devices_for = vec!["rules:codes_guessed".into()];
            c.blocks.presence_checks_pass_for = vec!["rules:codes_guessed".into()];
        });
        let mut scratch = p.scratch();
        let mut process = |line: &str| p.process(&p.parse(line.as_bytes()).unwrap(), &mut scratch).unwrap();
        // Event time moves on; then events an hour late name a customer the
        // store does not hold (evicted, or expired): their features read
        // zeros, which must not pass for a face shown on the device just now.
        process(r#"{"event_id":"w","ts":"2026-11-09T04:00:00+09:00","step":"login","result":"success","customer_id":"someone","ip":"10.9.0.1","device_id":"d9"}"#);
        let late = |id: &str, device: &str| format!(r#"{{"event_id":"{id}","ts":"2026-11-09T03:00:00+09:00","step":"otp","result":"success","customer_id":"ghost","ip":"10.9.0.2","device_id":"{device}"}}"#);
        let probe = process(&late("l1", "guessers-phone"));
        assert!(probe.late);
        let ghost = probe.keys.get(EntityKind::Customer).unwrap();
        let now = p.parse(late("l1", "x").as_bytes()).unwrap().ts_ms;
        let blocks = p.enforcer().blocks();
        blocks.set_automatic(EntityKind::Customer, ghost, "ghost".into(), Duration::from_secs(3600), "test".into(), "rules:codes_guessed".into(), BlockAction::Block, now, Some(now), None, None).unwrap();
        blocks.note_offending_device(EntityKind::Customer, ghost, probe.keys.get(EntityKind::Device), now);
        let d = process(&late("l2", "fresh-phone"));
        assert_eq!(d.decision.verdict, Verdict::Challenge, "stepped up, not let through: {:?}", d.decision);
        assert!(d.decision.reasons.iter().all(|r| &*r.id != "presence_check"), "{:?}", d.decision);
    }

    #[test]
    fn a_customer_under_brute_force_is_blocked_except_on_the_owners_own_phone() {
        let p = brute_force_pipeline(true);
        // Last week the owner passed a code on their phone. A second device
        // passed its first code twenty minutes before the attack's block:
        // too recent to vouch for anything.
        run(&p, &[on_device(1, "2026-11-02T09:00:00+09:00", "login", "success", "owners-phone"), on_device(2, "2026-11-02T09:00:20+09:00", "otp", "success", "owners-phone")]);
        run(&p, &[on_device(3, "2026-11-09T02:42:00+09:00", "otp", "success", "recent-tablet")]);
        // Today someone with the password guesses codes from a device of their own.
        let guesses: Vec<Vec<u8>> = (0..3).map(|k| on_device(10 + k, &format!("2026-11-09T03:0{k}:00+09:00"), "otp", "failure", "stranger")).collect();
        let d = run(&p, &guesses);
        assert_eq!(d[2].verdict, Verdict::Block);
        assert!(p.enforcer().blocks().list_at(0).iter().any(|b| b.scope == EntityKind::Customer && b.key == "owner"));
        // The owner's own phone still gets in; the stranger's device does not.
        let owner = run(&p, &[on_device(20, "2026-11-09T08:00:00+09:00", "login", "success", "owners-phone")]);
        assert_eq!(owner[0].verdict, Verdict::Allow, "{owner:?}");
        let owner_code = run(&p, &[on_device(21, "2026-11-09T08:00:20+09:00", "otp", "success", "owners-phone")]);
        assert_eq!(owner_code[0].verdict, Verdict::Allow, "{owner_code:?}");
        let stranger = run(&p, &[on_device(22, "2026-11-09T08:01:00+09:00", "login", "success", "stranger")]);
        assert_eq!(stranger[0].verdict, Verdict::Block);
        assert_eq!(stranger[0].blocked_by.as_ref().unwrap().scope, EntityKind::Customer);
        // A device that first passes a code after the block was set (the
        // attacker finally guessing one) is not the owner's: still blocked,
        // and so is every later event from it.
        let lucky = run(&p, &[on_device(23, "2026-11-09T08:02:00+09:00", "otp", "success", "second-stranger")]);
        assert_eq!(lucky[0].verdict, Verdict::Block);
        let after = run(&p, &[on_device(24, "2026-11-09T08:03:00+09:00", "login", "success", "second-stranger")]);
        assert_eq!(after[0].verdict, Verdict::Block, "{after:?}");
        let recent = run(&p, &[on_device(25, "2026-11-09T08:04:00+09:00", "login", "success", "recent-tablet")]);
        assert_eq!(recent[0].verdict, Verdict::Block, "{recent:?}");
        // The same device again: still the owner's.
        let again = run(&p, &[on_device(26, "2026-11-09T08:05:00+09:00", "login", "success", "owners-phone")]);
        assert_eq!(again[0].verdict, Verdict::Allow, "{again:?}");
    }

    #[test]
    fn an_analysts_block_and_a_pack_that_spares_nothing_lock_every_device() {
        let events = |p: &Pipeline| {
            run(p, &[on_device(1, "2026-11-02T09:00:00+09:00", "login", "success", "owners-phone"), on_device(2, "2026-11-02T09:00:20+09:00", "otp", "success", "owners-phone")]);
            let guesses: Vec<Vec<u8>> = (0..3).map(|k| on_device(10 + k, &format!("2026-11-09T03:0{k}:00+09:00"), "otp", "failure", "stranger")).collect();
            run(p, &guesses);
            run(p, &[on_device(20, "2026-11-09T08:00:00+09:00", "login", "success", "owners-phone")])
        };
        assert_eq!(events(&brute_force_pipeline(false))[0].verdict, Verdict::Block);
        // An analyst's block on the customer, with no rule involved.
        let p = brute_force_pipeline(true);
        run(&p, &[on_device(1, "2026-11-02T09:00:00+09:00", "otp", "success", "owners-phone")]);
        let customer = haechi_features::lookup_hash(p.store().windows().hash_key, EntityKind::Customer, "owner").unwrap();
        p.enforcer().blocks().set_manual(EntityKind::Customer, customer, "owner".into(), Duration::from_secs(3600), "case 7".into(), "analyst:kim".into());
        let d = run(&p, &[on_device(3, "2026-11-09T08:00:00+09:00", "login", "success", "owners-phone")]);
        assert_eq!(d[0].verdict, Verdict::Block);
    }

    #[test]
    fn a_blocked_address_that_turns_out_to_carry_returning_customers_is_let_go() {
        // A made-up id a farm aged: one failed login, more than a day before.
        let p = warm_pipeline_after(&[line(18, "2026-11-01T01:00:00+09:00", "login", "failure", "aged", "45.8.8.8", "s18", None)]);
        let exit = "223.38.14.77";
        // At dawn, an exit looks private: three fresh identities, nobody else.
        let lines = three_fresh_identities("2026-11-02T05:00:00+09:00", exit);
        assert_eq!(run(&p, &lines)[2].verdict, Verdict::Block);
        // A fresh identity's first login there (the login its onboarding
        // earned) does not vouch for it: still blocked.
        let d = run(&p, &[line(19, "2026-11-02T05:20:00+09:00", "login", "success", "fresh0", exit, "s19", None)]);
        assert_eq!(d[0].verdict, Verdict::Block, "{d:?}");
        // Nor does an id's age: it has never logged in, and scanning an ID
        // through the exit makes it one more fresh identity there.
        let d = run(&p, &[line(22, "2026-11-02T05:21:00+09:00", "id_ocr", "success", "aged", exit, "s22", None)]);
        assert_eq!(d[0].verdict, Verdict::Block, "{d:?}");
        assert!(d[0].reasons.iter().all(|r| &*r.detector != "blast_radius"), "the block stood: {d:?}");
        // Nor a real customer's wrong password: anyone who knows their id can send one.
        run(&p, &[line(20, "2026-11-02T05:25:00+09:00", "login", "success", "regular", "121.9.9.9", "s-home", None)]);
        let d = run(&p, &[line(23, "2026-11-02T05:27:00+09:00", "login", "failure", "regular", exit, "s23", None)]);
        assert_eq!(d[0].verdict, Verdict::Block, "{d:?}");
        // Then the morning's customers, who had logged in before, come through it:
        // the first one already lifts the block.
        let d = run(&p, &[line(21, "2026-11-02T05:30:00+09:00", "login", "success", "regular", exit, "s20", None)]);
        assert_eq!(d[0].verdict, Verdict::Allow, "{d:?}");
        let lifted = d[0].reasons.iter().find(|r| &*r.detector == "blast_radius").expect("the guard says why");
        assert!(lifted.detail.as_deref().unwrap().contains("lifted the block"), "{lifted:?}");
        assert!(p.enforcer().blocks().list_at(0).iter().all(|b| b.scope != EntityKind::Ip));
    }

    #[test]
    fn first_logins_of_customers_never_seen_onboard_lift_a_block_past_the_limit() {
        let p = warm_pipeline();
        let exit = "223.38.14.78";
        let lines = three_fresh_identities("2026-11-02T05:00:00+09:00", exit);
        assert_eq!(run(&p, &lines)[2].verdict, Verdict::Block);
        // Customers who opened their accounts before the stream began log in
        // through the exit: each counts there from that first login. Five
        // (the limit) do not lift the block, none of them returning before
        // their event; the sixth is one more than the limit.
        for k in 0..5 {
            let ts = format!("2026-11-02T05:{:02}:00+09:00", 10 + k);
            let d = run(&p, &[line(40 + k, &ts, "login", "success", &format!("earlier{k}"), exit, &format!("se{k}"), None)]);
            assert_eq!(d[0].verdict, Verdict::Block, "login {k}: {d:?}");
        }
        let d = run(&p, &[line(45, "2026-11-02T05:16:00+09:00", "login", "success", "earlier5", exit, "se5", None)]);
        assert_ne!(d[0].verdict, Verdict::Block, "{d:?}");
        let lifted = d[0].reasons.iter().find(|r| &*r.detector == "blast_radius").expect("the guard says why");
        assert!(lifted.detail.as_deref().unwrap().contains("now carries 6 returning customers"), "{lifted:?}");
    }

    /// One rule, named as the default pack's off-hours pull: twenty records
    /// in an hour block the staff member for a day. A second, not named in
    /// the settings, blocks a pull of thirty in office hours.
    const STAFF_PULL_RULE: &str = r#"
rules:
  - id: staff_odd_hour_bulk
    description: test
    severity: critical
    when: features.staff.records_1h >= 20.0 && features.event.hour_activity < 1.0
    action: block
    scope: staff
    ttl: 24h
  - id: staff_daytime_pull
    description: test
    severity: critical
    when: features.staff.records_1h >= 30.0 && features.event.hour_activity >= 1.0
    action: block
    scope: staff
    ttl: 1h
"#;

    fn staff_access(i: usize, ts: &str, step: &str, records: Option<u32>) -> Vec<u8> {
        let records = records.map_or(String::new(), |r| format!(r#","records":{r}"#));
        format!(r#"{{"event_id":"s{i}","ts":"{ts}","step":"{step}","result":"success","staff_id":"st-kim","customer_id":"c{i}"{records},"ip":"10.20.1.7"}}"#).into_bytes()
    }

    fn view(i: usize, ts: &str) -> Vec<u8> {
        staff_access(i, ts, "record_view", Some(1))
    }

    /// Two ordinary days of five lookups each (the member's typical day),
    /// then a night's pull of forty at 02:00 (blocked). The bank's office
    /// hours (08-20 by default) are the staff hours' prior.
    fn typical_days_then_a_nights_pull(p: &Pipeline) {
        two_typical_days(p);
        let night = run(p, &[staff_access(1, "2026-11-03T02:00:00+09:00", "record_export", Some(40))]);
        assert_eq!(night[0].verdict, Verdict::Block);
    }

    fn two_typical_days(p: &Pipeline) {
        let days: Vec<Vec<u8>> = (0..10).map(|i| view(100 + i, &format!("2026-11-0{}T10:{}0:00+09:00", 1 + i / 5, i % 5))).collect();
        assert!(run(p, &days).iter().all(|d| d.verdict == Verdict::Allow));
    }

    fn verdicts(d: &[Decision]) -> Vec<Verdict> {
        d.iter().map(|d| d.verdict).collect()
    }

    #[test]
    fn a_staff_block_for_a_nights_pull_refuses_the_night_and_bulk_and_passes_one_record_in_office_hours() {
        let p = pipeline_from(STAFF_PULL_RULE, |_| {});
        typical_days_then_a_nights_pull(&p);
        let d = run(
            &p,
            &[
                view(2, "2026-11-03T03:30:00+09:00"),
                view(3, "2026-11-03T10:00:00+09:00"),
                // Two records: inside the hour's budget (1 + 2 <= 5), but not one record.
                staff_access(4, "2026-11-03T10:05:00+09:00", "record_export", Some(2)),
                // An access that says it touched no record would count nothing against the hour.
                staff_access(5, "2026-11-03T10:06:00+09:00", "record_view", Some(0)),
                // One that does not say touched one.
                staff_access(6, "2026-11-03T10:07:00+09:00", "record_view", None),
                view(7, "2026-11-03T21:30:00+09:00"),
            ],
        );
        assert_eq!(verdicts(&d), [Verdict::Block, Verdict::Allow, Verdict::Block, Verdict::Block, Verdict::Allow, Verdict::Block], "{d:#?}");
        let passed = d[1].reasons.iter().find(|r| &*r.id == "routine_staff_work").expect("the pass is given as a reason");
        assert!(passed.detail.as_deref().unwrap().contains("rules:staff_odd_hour_bulk"), "{passed:?}");
        assert!(d[2].reasons.iter().all(|r| &*r.id != "routine_staff_work"));
        // The block itself stands, and has counted what it let through.
        let block = p.enforcer().blocks().list_at(0).into_iter().find(|b| b.scope == EntityKind::Staff).expect("the staff block");
        assert_eq!(block.routine_records_passed, 2);
    }

    fn access_by(staff: &str, i: usize, ts: &str, step: &str, records: u32) -> Vec<u8> {
        format!(r#"{{"event_id":"n{i}","ts":"{ts}","step":"{step}","result":"success","staff_id":"{staff}","customer_id":"c{i}","records":{records},"ip":"10.20.1.8"}}"#).into_bytes()
    }

    #[test]
    fn a_member_with_no_day_of_their_own_is_held_to_the_banks_typical_day() {
        // `colleagues` members each read three records on the 1st, and come
        // back on the 2nd at 09:00, which closes their day. A member the
        // store has never seen pulls forty records that night and is blocked.
        let blocked_newcomer_at_ten = |colleagues: usize| {
            let p = pipeline_from(STAFF_PULL_RULE, |_| {});
            let mut events = Vec::new();
            for m in 0..colleagues {
                for k in 0..3 {
                    events.push(access_by(&format!("st-{m}"), 10 * m + k, &format!("2026-11-01T10:{m}{k}:00+09:00"), "record_view", 1));
                }
            }
            events.push(access_by("st-new", 100, "2026-11-02T02:00:00+09:00", "record_export", 40));
            for m in 0..colleagues {
                events.push(access_by(&format!("st-{m}"), 200 + m, &format!("2026-11-02T09:0{m}:00+09:00"), "record_view", 1));
            }
            let d = run(&p, &events);
            assert_eq!(d[3 * colleagues].verdict, Verdict::Block, "the night's pull");
            let views: Vec<Vec<u8>> = (0..4).map(|k| access_by("st-new", 300 + k, &format!("2026-11-02T10:{k}0:00+09:00"), "record_view", 1)).collect();
            let d = run(&p, &views);
            let peers = d[0].reasons.iter().any(|r| &*r.id == "routine_staff_work");
            (verdicts(&d), peers)
        };
        // Five closed days: the bank's typical day is three records, and the
        // newcomer's morning after is let through up to it.
        assert_eq!(blocked_newcomer_at_ten(5), (vec![Verdict::Allow, Verdict::Allow, Verdict::Allow, Verdict::Block], true));
        // Four are too few for the bank to have a typical day: nothing is routine.
        assert_eq!(blocked_newcomer_at_ten(4), (vec![Verdict::Block; 4], false));
    }

    #[test]
    fn a_routine_lookup_refused_by_a_rate_limit_lets_nothing_through() {
        let p = pipeline_from(STAFF_PULL_RULE, |c| {
            c.limits.ip_per_minute = 2;
            c.limits.over_limit = OverLimit::Block;
        });
        typical_days_then_a_nights_pull(&p);
        let d = run(&p, &[view(2, "2026-11-03T10:00:00+09:00"), view(3, "2026-11-03T10:00:01+09:00"), view(4, "2026-11-03T10:00:02+09:00")]);
        assert_eq!(verdicts(&d), [Verdict::Allow, Verdict::Allow, Verdict::Block], "{d:#?}");
        assert!(d[2].reasons.iter().any(|r| &*r.detector == "rate_limit"), "{:?}", d[2]);
        assert!(d[2].reasons.iter().all(|r| &*r.id != "routine_staff_work"), "refused, so nothing was let through: {:?}", d[2]);
        let block = p.enforcer().blocks().list_at(0).into_iter().find(|b| b.scope == EntityKind::Staff).expect("the staff block");
        assert_eq!(block.routine_records_passed, 2, "the refused lookup spends none of the budget");
    }

    #[test]
    fn a_late_lookup_under_a_staff_block_is_refused() {
        let p = pipeline_from(STAFF_PULL_RULE, |_| {});
        typical_days_then_a_nights_pull(&p);
        // 11:00 moves the newest time on; 10:30 is later than the allowed lateness.
        let d = run(&p, &[view(2, "2026-11-03T11:00:00+09:00"), view(3, "2026-11-03T10:30:00+09:00")]);
        assert_eq!(verdicts(&d), [Verdict::Allow, Verdict::Block], "{d:#?}");
    }

    #[test]
    fn a_blocked_staff_member_reading_more_in_an_hour_than_on_a_typical_day_is_refused() {
        let p = pipeline_from(STAFF_PULL_RULE, |_| {});
        typical_days_then_a_nights_pull(&p);
        // A refused export of two at 10:00 counts toward the hour, not the
        // block's budget; then lookups: three, four, five records in the
        // hour pass, the sixth does not, though the day's budget has two left.
        let mut lines = vec![staff_access(9, "2026-11-03T10:00:00+09:00", "record_export", Some(2))];
        lines.extend((0..5).map(|i| view(10 + i, &format!("2026-11-03T10:0{}:00+09:00", i + 1))));
        let d = run(&p, &lines);
        assert_eq!(verdicts(&d), [Verdict::Block, Verdict::Allow, Verdict::Allow, Verdict::Allow, Verdict::Block, Verdict::Block], "{d:#?}");
        let block = p.enforcer().blocks().list_at(0).into_iter().find(|b| b.scope == EntityKind::Staff).expect("the staff block");
        assert_eq!(block.routine_records_passed, 3);
    }

    #[test]
    fn a_routine_lookup_challenged_by_another_entry_still_spends_the_budget() {
        let p = pipeline_from(STAFF_PULL_RULE, |_| {});
        typical_days_then_a_nights_pull(&p);
        // A challenge on the workstation's address, from before the morning.
        let ip = haechi_features::lookup_hash(p.store().windows().hash_key, EntityKind::Ip, "10.20.1.7").unwrap();
        let now = haechi_features::parse_rfc3339_ms("2026-11-03T09:00:00+09:00").unwrap();
        p.enforcer()
            .blocks()
            .set_automatic(EntityKind::Ip, ip, "10.20.1.7".into(), Duration::from_secs(86_400), "test".into(), "rules:other".into(), BlockAction::Challenge, now, Some(now), None, None)
            .unwrap();
        let hourly: Vec<Vec<u8>> = (0..6).map(|i| view(10 + i, &format!("2026-11-03T{}:00:00+09:00", 10 + i))).collect();
        let d = run(&p, &hourly);
        assert_eq!(verdicts(&d), [[Verdict::Challenge; 5].as_slice(), &[Verdict::Block]].concat(), "{d:#?}");
    }

    #[test]
    fn an_office_hours_pull_refused_by_another_entry_still_replaces_the_passing_block() {
        let p = pipeline_from(STAFF_PULL_RULE, |_| {});
        typical_days_then_a_nights_pull(&p);
        // An analyst blocks the workstation; the pull from it is refused by that entry.
        let ip = haechi_features::lookup_hash(p.store().windows().hash_key, EntityKind::Ip, "10.20.1.7").unwrap();
        p.enforcer().blocks().set_manual(EntityKind::Ip, ip, "10.20.1.7".into(), Duration::from_secs(3 * 86_400), "case 11".into(), "analyst:kim".into());
        let d = run(&p, &[staff_access(3, "2026-11-03T12:00:00+09:00", "record_export", Some(30))]);
        assert_eq!(d[0].verdict, Verdict::Block);
        let block = p.enforcer().blocks().list_at(0).into_iter().find(|b| b.scope == EntityKind::Staff).expect("the staff block");
        assert_eq!(block.set_by, "rules:staff_daytime_pull", "{block:?}");
        assert!(!block.passes_routine_staff_work());
    }

    #[test]
    fn a_staff_block_lets_no_more_than_a_typical_day_through_on_any_day() {
        // A block of two days (a repeat offender's is longer still).
        let p = pipeline_from(&STAFF_PULL_RULE.replace("ttl: 24h", "ttl: 48h"), |_| {});
        typical_days_then_a_nights_pull(&p);
        // One lookup an hour, each hour within the habit: the block's budget is five a day.
        let hourly = |day: u8| -> Vec<Vec<u8>> { (0..7).map(|i| view(usize::from(day) * 100 + i, &format!("2026-11-0{day}T{}:00:00+09:00", 10 + i))).collect() };
        let five_of_seven = [[Verdict::Allow; 5].as_slice(), &[Verdict::Block; 2]].concat();
        let d = run(&p, &hourly(3));
        assert_eq!(verdicts(&d), five_of_seven, "{d:#?}");
        // The count is part of the entry, kept across a restart.
        let restored = pipeline_from(STAFF_PULL_RULE, |_| {});
        restored.enforcer().blocks().restore_json(&p.enforcer().blocks().export_json()).unwrap();
        let b = restored.enforcer().blocks().list_at(0).into_iter().find(|b| b.scope == EntityKind::Staff).expect("restored");
        assert_eq!(b.routine_records_passed, 5);
        assert!(!b.lets_routine_staff_work_pass(b.routine_day, 5.0) && b.lets_routine_staff_work_pass(b.routine_day, 6.0), "resolved again at load");
        // The next day starts a new budget.
        let d = run(&p, &hourly(4));
        assert_eq!(verdicts(&d), five_of_seven, "{d:#?}");
    }

    #[test]
    fn a_daytime_pull_by_a_rule_not_listed_replaces_the_passing_block() {
        let p = pipeline_from(STAFF_PULL_RULE, |_| {});
        typical_days_then_a_nights_pull(&p);
        let d = run(
            &p,
            &[
                view(2, "2026-11-03T10:00:00+09:00"),
                staff_access(3, "2026-11-03T12:00:00+09:00", "record_export", Some(30)),
                view(4, "2026-11-03T14:00:00+09:00"),
            ],
        );
        assert_eq!(verdicts(&d), [Verdict::Allow, Verdict::Block, Verdict::Block], "{d:#?}");
        let block = p.enforcer().blocks().list_at(0).into_iter().find(|b| b.scope == EntityKind::Staff).expect("the staff block");
        assert_eq!(block.set_by, "rules:staff_daytime_pull");
        // The escalation's own hour does not shorten the night's day.
        assert!(block.expires_at_ms >= block.set_at_ms + 12 * 3_600_000, "{block:?}");
    }

    #[test]
    fn an_analysts_staff_block_another_rules_and_a_pack_that_passes_nothing_refuse_routine_work() {
        let morning = |p: &Pipeline| {
            typical_days_then_a_nights_pull(p);
            run(p, &[view(2, "2026-11-03T10:00:00+09:00")])[0].verdict
        };
        assert_eq!(morning(&pipeline_from(STAFF_PULL_RULE, |_| {})), Verdict::Allow, "the pass, as the other cases are set up");
        // Settings that name no rule.
        assert_eq!(morning(&pipeline_from(STAFF_PULL_RULE, |c| c.blocks.routine_staff_work_passes_for.clear())), Verdict::Block);
        // A rule the settings do not name.
        assert_eq!(morning(&pipeline_from(&STAFF_PULL_RULE.replace("id: staff_odd_hour_bulk", "id: staff_night_pull"), |_| {})), Verdict::Block);
        // An analyst's block on a member with a typical day, and no rule's block.
        let p = pipeline_from(STAFF_PULL_RULE, |_| {});
        two_typical_days(&p);
        let staff = haechi_features::lookup_hash(p.store().windows().hash_key, EntityKind::Staff, "st-kim").unwrap();
        p.enforcer().blocks().set_manual(EntityKind::Staff, staff, "st-kim".into(), Duration::from_secs(86_400), "case 9".into(), "analyst:kim".into());
        assert_eq!(run(&p, &[view(2, "2026-11-03T10:00:00+09:00")])[0].verdict, Verdict::Block);
    }

    #[test]
    fn with_no_opinion_on_office_hours_no_hour_is_routine_until_staff_hours_are_learned() {
        // Every hour reads 1.0 before the bank's staff hours are learned,
        // and the bar stands above it.
        let night_only = STAFF_PULL_RULE.replace("hour_activity < 1.0", "hour_activity <= 1.0").replace("records_1h >= 30.0", "records_1h >= 1000.0");
        let p = pipeline_from(&night_only, |c| c.features.staff_office_hours = [0, 24]);
        typical_days_then_a_nights_pull(&p);
        let block = p.enforcer().blocks().list_at(0).into_iter().find(|b| b.scope == EntityKind::Staff).expect("the staff block");
        assert_eq!(block.set_by, "rules:staff_odd_hour_bulk", "a block that would pass routine work");
        assert_eq!(run(&p, &[view(2, "2026-11-03T10:00:00+09:00")])[0].verdict, Verdict::Block);
    }
}
