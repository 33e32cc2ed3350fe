//! One path for every event: validate → features → detectors → decide →
//! enforce (block list, rate limits, blast-radius guard).

use std::sync::Arc;

use haechi_features::{Detector, EntityKeys, Error as EventError, Event, FeatureStore, FeatureView, Finding, StoreState, PLACE_DEVICE, PLACE_REGION};
use serde::{Deserialize, Serialize};

use haechi_rules::RuleEngine;

use crate::builtin::{FailureStreak, FscTwoMethods};
use crate::model::ModelDetector;
use crate::config::Config;
use crate::decision::{decide, Decision};
use crate::dedup::{Dedup, DedupState};
use crate::enforce::{BlockList, Enforced, Enforcer};
use crate::error::DetectorError;

/// Per-worker buffers, reused from event to event so the hot path does not allocate.
pub struct Scratch {
    features: Vec<f32>,
    /// Findings of the last processed event.
    pub findings: Vec<Finding>,
    /// While warming: until when (event time, ms) a detector's block on each
    /// staff member (by key) would have refused their accesses.
    staff_blocked_until: std::collections::HashMap<u64, i64>,
}

impl Scratch {
    /// The feature vector of the last processed event, in catalog order.
    pub fn features(&self) -> &[f32] {
        &self.features
    }
}

/// The result of processing one event.
#[derive(Debug)]
pub struct Processed {
    pub decision: Decision,
    /// The event arrived later than the allowed lateness.
    pub late: bool,
    /// The hashed keys of the entities the event names (for block lists and limiters).
    pub keys: haechi_features::EntityKeys,
    /// What the block list, the limiters and the guard did.
    pub enforced: Enforced,
    /// Findings an analyst's suppression dropped.
    pub suppressed: usize,
    /// The event as it was judged, when that is not as it came: its
    /// session's customer, or its session's device or region
    /// (see [`Pipeline::attributed`]; the decision's reasons say which).
    /// Sinks name the entities of this one.
    pub judged_as: Option<Box<Event>>,
}

/// Everything the pipeline remembers from the events it has seen: the
/// feature store and the dedup memory. (The block list keeps its own state
/// file; the alert folder belongs to the sinks.)
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PipelineState {
    pub store: StoreState,
    dedup: DedupState,
    /// With a topic source: the block list, whose topic events are decided
    /// again after a restart and must meet the blocks of that moment, not
    /// those of the crash.
    blocks: Option<String>,
}

/// The `place_from_session` reason's detail for each `took` (see
/// [`Pipeline::explain_placed`]): index `took - 1`.
fn place_details() -> [Arc<str>; 3] {
    [PLACE_DEVICE, PLACE_REGION, PLACE_DEVICE | PLACE_REGION].map(|took| {
        let names: Vec<&str> = [(PLACE_DEVICE, "device"), (PLACE_REGION, "region")].iter().filter(|(bit, _)| took & bit != 0).map(|(_, name)| *name).collect();
        Arc::from(format!("the event named no {}: it was judged as coming from its session's, named by the customer's earlier step", names.join(" or ")))
    })
}

/// An event as the pipeline judges it (see [`Pipeline::attributed`]).
struct Attributed {
    /// `None`: as it came.
    judged: Option<Event>,
    /// It named no customer and was judged as its session's.
    customer: bool,
    /// What it took from its session's place (`PLACE_*` bits; 0: nothing).
    place: u8,
}

/// The pipeline shared by replay, the HTTP service and stream consumers.
/// Sources hand it events; sinks take its decisions and findings.
pub struct Pipeline {
    config: Config,
    store: FeatureStore,
    rules: Arc<RuleEngine>,
    model: Option<Arc<ModelDetector>>,
    detectors: Vec<Arc<dyn Detector>>,
    dedup: Dedup,
    enforcer: Enforcer,
    /// The reason an event decided as its session's customer gives.
    from_session: (Arc<str>, Arc<str>),
    /// The reason an event judged with its session's place gives, and its
    /// detail for each `took` (device, region, both: index `took - 1`),
    /// made once: every such event gives one.
    place_from_session: (Arc<str>, [Arc<str>; 3]),
}

impl Pipeline {
    /// Build the pipeline: the rules (the configured files, or the default
    /// pack), then the built-in detector (if enabled).
    ///
    /// # Errors
    /// When the configuration does not validate or the rules do not load.
    pub fn new(config: Config) -> Result<Pipeline, DetectorError> {
        Self::with_sealed_blocks(config, None)
    }

    /// [`Pipeline::new`], with the block list's state file sealed by
    /// `blocks` when one is given (the service, with its data key).
    ///
    /// # Errors
    /// As [`Pipeline::new`]; also a block state file that does not open.
    pub fn with_sealed_blocks(config: Config, blocks: Option<haechi_storage::Sealer>) -> Result<Pipeline, DetectorError> {
        config.validate().map_err(|e| DetectorError::Config { path: "(in memory)".into(), message: e.to_string() })?;
        let store = FeatureStore::new(&config.features)?;
        let rules = Arc::new(RuleEngine::new(config.rules.path.clone(), store.catalog().clone())?);
        let mut detectors: Vec<Arc<dyn Detector>> = vec![rules.clone()];
        let model = if config.model.enabled {
            let m = Arc::new(ModelDetector::new(config.model.clone(), store.catalog().clone())?);
            detectors.push(m.clone());
            Some(m)
        } else {
            None
        };
        if config.builtin.enabled {
            detectors.push(Arc::new(FailureStreak::new(config.builtin.clone(), store.catalog())));
            if config.builtin.fsc_two_methods {
                detectors.push(Arc::new(FscTwoMethods::new(&config.builtin, store.catalog(), store.windows())));
            }
        }
        let dedup = Dedup::new(config.pipeline.dedup_window.as_millis() as i64, store.windows().hash_key);
        // A replay starts at the stream's own time with its own list: the
        // live service's state file is not its to read or write. The live
        // service keeps its list whatever clock it enforces on.
        let now = crate::enforce::now_ms();
        let blocks = if config.pipeline.live || config.pipeline.enforcement_clock == crate::enforce::EnforcementClock::Wall {
            BlockList::open_sealed(config.blocks.clone(), now, blocks)
        } else {
            BlockList::open(crate::enforce::BlockConfig { state_file: None, ..config.blocks.clone() })
        }
        .map_err(|e| DetectorError::Config { path: "blocks.state_file".into(), message: e.to_string() })?;
        let moved = blocks.rehash(store.windows().hash_key);
        if moved > 0 {
            tracing::warn!(moved, "block state was written under another entity-hash key: its blocks are refiled under this one");
        }
        let enforcer = Enforcer::new(Arc::new(blocks), config.limits.clone(), config.pipeline.enforcement_clock, store.catalog(), store.windows());
        Ok(Pipeline { config, store, rules, model, detectors, dedup, enforcer, from_session: (Arc::from("pipeline"), Arc::from("customer_from_session")), place_from_session: (Arc::from("place_from_session"), place_details()) })
    }

    /// Add a detector; it sees every event after the ones already added.
    pub fn add_detector(&mut self, detector: Arc<dyn Detector>) {
        self.detectors.push(detector);
    }

    /// The rule engine, for reloads and introspection.
    pub fn rules(&self) -> &Arc<RuleEngine> {
        &self.rules
    }

    /// The model detector, when enabled.
    pub fn model(&self) -> Option<&Arc<ModelDetector>> {
        self.model.as_ref()
    }

    /// The block list, limiters and blast-radius guard.
    pub fn enforcer(&self) -> &Enforcer {
        &self.enforcer
    }

    /// The feature store.
    pub fn store(&self) -> &FeatureStore {
        &self.store
    }

    /// Move the store's and the dedup's periodic sweeps off the event path;
    /// the caller then runs [`Pipeline::sweep_due`] from a thread of its own.
    pub fn sweep_in_background(&self) {
        self.store.sweep_in_background();
        self.dedup.sweep_in_background();
    }

    /// Run whatever sweeps are due (expired entities, forgotten event ids).
    pub fn sweep_due(&self) {
        self.store.sweep_due();
        self.dedup.sweep_due();
    }

    /// The configuration the pipeline runs on.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Copy everything the pipeline remembers. The caller makes sure no event
    /// is processed meanwhile, so the copy matches one position of the stream.
    pub fn export_state(&self) -> PipelineState {
        let blocks = self.config.source.fluvio.is_some().then(|| self.enforcer.blocks().export_json());
        PipelineState { store: self.store.export_state(), dedup: self.dedup.export_state(), blocks }
    }

    /// Take over a snapshot's state.
    ///
    /// # Errors
    /// When the state was built under another entity-hash key, other windows
    /// or another build's catalog (nothing is changed then).
    pub fn restore_state(&self, state: PipelineState) -> Result<(), DetectorError> {
        self.store.restore_state(state.store)?;
        self.dedup.restore_state(state.dedup);
        if let (Some(blocks), true) = (&state.blocks, self.config.source.fluvio.is_some()) {
            self.enforcer.blocks().restore_json(blocks).map_err(|e| DetectorError::Snapshot(format!("block list: {e}")))?;
        }
        Ok(())
    }

    /// While on, events are events the service already accepted before a
    /// restart, read back from its log: they are decided with the wall
    /// clock they were logged at (see [`Pipeline::process_logged`]) and
    /// nothing is enforced again (the block list on disk already holds what
    /// they did, but for the last 200 ms before a crash).
    pub fn set_recovering(&self, on: bool) {
        self.enforcer.set_recovering(on);
    }

    /// Fresh buffers for one worker.
    pub fn scratch(&self) -> Scratch {
        Scratch { features: vec![0.0; self.store.catalog().len()], findings: Vec::new(), staff_blocked_until: std::collections::HashMap::new() }
    }

    /// Validate one raw event.
    ///
    /// # Errors
    /// The contract violation, with any resident number masked.
    pub fn parse(&self, bytes: &[u8]) -> Result<Event, EventError> {
        Event::parse(bytes, self.config.pipeline.max_event_bytes)
    }

    /// Learn from one past event: features and baselines. Nothing is
    /// blocked or alerted: history warms the profiles (30-day customer
    /// habits, shared addresses) that live decisions read.
    ///
    /// A staff member's access is also judged by the detectors, and a day
    /// they would have refused is kept out of the member's habit
    /// (`refuse_staff_day`): otherwise an insider's bulk night in the history
    /// would warm into the hours they are expected to work. A detector's
    /// block on the member is remembered for its time to live, so the rest
    /// of that night is refused too, past midnight included. Nothing else of
    /// enforcement is asked (history has no block list, rate limits or
    /// analysts' suppressions, and the blast-radius guard is not applied), so
    /// warming can differ from what the service decided at the time.
    ///
    /// # Errors
    /// Live, an event further ahead of the wall clock than the allowed skew,
    /// as in [`Pipeline::process`]: a history file must not move the clock either.
    pub fn warm(&self, event: &Event, scratch: &mut Scratch) -> Result<(), EventError> {
        let cap = self.check_clock(event)?;
        let attributed = self.attributed(event, cap);
        let event = attributed.judged.as_ref().unwrap_or(event);
        let observation = self.store.observe_capped(event, &mut scratch.features, cap);
        if event.staff_id.is_none() || observation.late {
            return Ok(());
        }
        let member = observation.keys.get(haechi_features::EntityKind::Staff);
        let mut refused = member.and_then(|k| scratch.staff_blocked_until.get(&k)).is_some_and(|&until| event.ts_ms < until);
        let mut member_blocked = refused;
        if !refused {
            self.detect(event, &observation.keys, scratch);
            let decision = decide(&event.event_id, &scratch.findings);
            refused = decision.verdict == crate::Verdict::Block;
            member_blocked = decision.refused_for(haechi_features::EntityKind::Staff);
            let ttl_s = decision.blocks.iter().filter(|b| b.scope == Some(haechi_features::EntityKind::Staff)).map(|b| b.ttl_s).max();
            if let (Some(key), Some(ttl_s)) = (member, ttl_s.filter(|_| refused)) {
                scratch.staff_blocked_until.insert(key, event.ts_ms + i64::from(ttl_s) * 1000);
            }
        }
        if refused {
            self.store.refuse_staff_day(&observation.keys, event.ts_ms, member_blocked);
        }
        Ok(())
    }

    /// The event as the pipeline judges it, when that is not as it came:
    /// one that names no customer, in a session that logged in as one from
    /// the same device, is that customer's (see
    /// [`FeatureStore::session_customer`]). Otherwise a pipeline that names
    /// the customer only at the login would let codes be guessed at, and
    /// 1-won checks failed, with no customer to count them against. Off
    /// with `pipeline.customer_from_session`.
    ///
    /// Then a customer's step that names no device or region takes those
    /// of the customer's session (see [`FeatureStore::session_place`]).
    /// Otherwise a pipeline that names them only at the app's steps hides a
    /// device's account openings from the device rules, and a takeover's
    /// region from every step but its login. Off with
    /// `pipeline.place_from_session`.
    fn attributed(&self, event: &Event, cap: i64) -> Attributed {
        let customer = if self.config.pipeline.customer_from_session { self.store.session_customer(event, cap) } else { None };
        let named = customer.as_ref().map(|c| Event { customer_id: Some(c.clone()), ..event.clone() });
        let placed = if self.config.pipeline.place_from_session { self.store.session_place(named.as_ref().unwrap_or(event)) } else { None };
        let (judged, place) = match placed {
            Some((judged, took)) => (Some(judged), took),
            None => (named, 0),
        };
        Attributed { judged, customer: customer.is_some(), place }
    }

    /// Say on the decision that its event was judged as its session's
    /// customer, whatever the verdict: the analyst, and the access records
    /// filed under that customer, see a customer the event did not name.
    fn explain_attributed(&self, decision: &mut Decision) {
        let (detector, id) = &self.from_session;
        decision.reasons.push(
            crate::decision::Reason::new(detector.clone(), id.clone(), haechi_features::Severity::Low)
                .with_detail("the event named no customer: it was judged as the customer its session logged in as, from the same device".to_owned()),
        );
    }

    /// Say on the decision what its event took from its session's place,
    /// whatever the verdict: the analyst, and the access records filed with
    /// the event's device and region, see ones the event did not name.
    fn explain_placed(&self, decision: &mut Decision, took: u8) {
        let (id, details) = &self.place_from_session;
        let mut reason = crate::decision::Reason::new(self.from_session.0.clone(), id.clone(), haechi_features::Severity::Low);
        reason.detail = details.get(usize::from(took).wrapping_sub(1)).cloned();
        decision.reasons.push(reason);
    }

    /// Would the event pass the clock check of [`Pipeline::process`]? The
    /// service asks before it logs an event, so that the log holds only
    /// events the pipeline will decide.
    ///
    /// # Errors
    /// [`EventError::FutureTimestamp`], live, as in [`Pipeline::process`].
    pub fn admit(&self, event: &Event) -> Result<(), EventError> {
        self.check_clock(event)?;
        // Checked again, inserting, by `process`: this look only keeps
        // retries of known events out of the log.
        if self.dedup.seen(&event.event_id) {
            return Err(EventError::Duplicate);
        }
        Ok(())
    }

    /// Live, refuse an event further ahead of the wall clock than the allowed
    /// skew, and return the watermark cap (the wall clock); in a replay, no cap.
    fn check_clock(&self, event: &Event) -> Result<i64, EventError> {
        if self.config.pipeline.enforcement_clock != crate::enforce::EnforcementClock::Wall && !self.config.pipeline.live {
            return Ok(i64::MAX);
        }
        let now = crate::enforce::now_ms();
        let skew_ms = self.config.pipeline.max_clock_skew.as_millis() as i64;
        let ahead_ms = event.ts_ms - now;
        if ahead_ms > skew_ms {
            return Err(EventError::FutureTimestamp { ahead_s: ahead_ms / 1000, skew_s: skew_ms / 1000, clock: "server" });
        }
        Ok(now)
    }

    /// Run one event through features, detectors and the decision. Its
    /// findings are left in `scratch.findings` for the alert sinks.
    ///
    /// # Errors
    /// [`EventError::Duplicate`] if the event id was already processed;
    /// [`EventError::FutureTimestamp`] live, if `ts` is ahead of the wall
    /// clock by more than `pipeline.max_clock_skew`.
    pub fn process(&self, event: &Event, scratch: &mut Scratch) -> Result<Processed, EventError> {
        // Live, the wall clock bounds event time. (A replay has no wall clock;
        // its driver holds far-future outliers back instead, see driver/order.rs.)
        let cap = self.check_clock(event)?;
        self.process_capped(event, scratch, cap)
    }

    /// Decide an event read back from the ingest log, as it was decided when
    /// it arrived: the watermark capped at the wall clock it was logged at
    /// (its skew was checked then).
    ///
    /// # Errors
    /// [`EventError::Duplicate`], as [`Pipeline::process`].
    pub fn process_logged(&self, event: &Event, scratch: &mut Scratch, wall_ms: i64) -> Result<Processed, EventError> {
        self.process_capped(event, scratch, wall_ms)
    }

    /// Every detector's findings on the event, from the features the store
    /// just wrote into `scratch`, into `scratch.findings`.
    fn detect(&self, event: &Event, keys: &EntityKeys, scratch: &mut Scratch) {
        let view = FeatureView::new(&scratch.features, self.store.catalog(), keys);
        scratch.findings.clear();
        for d in &self.detectors {
            d.detect(event, &view, &mut scratch.findings);
        }
    }

    fn process_capped(&self, event: &Event, scratch: &mut Scratch, cap: i64) -> Result<Processed, EventError> {
        // Stamped no later than the wall clock, live: an event dated ahead
        // (within the allowed skew) must not make the memory of ids forget early.
        if !self.dedup.first_time(&event.event_id, event.ts_ms.min(cap)) {
            return Err(EventError::Duplicate);
        }
        let attributed = self.attributed(event, cap);
        let event = attributed.judged.as_ref().unwrap_or(event);
        let observation = self.store.observe_capped(event, &mut scratch.features, cap);
        self.detect(event, &observation.keys, scratch);
        // Empty, it does not allocate: the common case costs nothing.
        let mut swallowed = Vec::new();
        self.enforcer.suppress(event, cap, &observation.keys, &mut scratch.findings, &mut swallowed);
        let mut decision = decide(&event.event_id, &scratch.findings);
        // What a suppression swallowed stays on record as a shadow reason: never acted on, never hidden.
        for w in &swallowed {
            decision.shadow.push(crate::decision::Reason {
                detector: w.detector.clone(),
                id: w.rule.clone(),
                severity: w.severity,
                detail: Some(std::sync::Arc::from(format!("suppressed by {}", w.suppression))),
            });
        }
        let suppressed = swallowed.len();
        // Asked before enforcement: a block already in force on the member's
        // address refuses the event first and drops the request, and the
        // member must not escape `staff.days_since_refused` by it.
        let asked_member_block = decision.asks_block_on(haechi_features::EntityKind::Staff);
        let enforced = self.enforcer.apply(event, &observation.keys, &scratch.features, self.store.history_ms(), &mut decision);
        // Whatever refused a staff member's event (a block on the member,
        // their workstation's address or their session), the day it was
        // counted into must not teach their habit: see `refuse_staff_day`
        // (nothing happens for an event that names no staff member). One too
        // late to be counted was counted into no day.
        // Only a block on the member themself (in force, or asked by this
        // event) starts `staff.days_since_refused`.
        if decision.verdict == crate::Verdict::Block && !observation.late {
            let member_blocked = asked_member_block || decision.refused_for(haechi_features::EntityKind::Staff);
            self.store.refuse_staff_day(&observation.keys, event.ts_ms, member_blocked);
        }
        if attributed.customer {
            self.explain_attributed(&mut decision);
        }
        if attributed.place != 0 {
            self.explain_placed(&mut decision, attributed.place);
        }
        Ok(Processed { decision, late: observation.late, keys: observation.keys, enforced, suppressed, judged_as: attributed.judged.map(Box::new) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Verdict;
    use haechi_features::EntityKind;

    fn event(p: &Pipeline, id: &str, ts: &str, step: &str, customer: &str, device: &str, region: &str) -> Event {
        let json = format!(
            r#"{{"event_id":"{id}","ts":"{ts}","step":"{step}","result":"success","customer_id":"{customer}","device_id":"{device}","session_id":"s-{customer}-{device}","region":"{region}","ip":"121.1.{}.{}"}}"#,
            id.len() % 200,
            id.bytes().map(u32::from).sum::<u32>() % 250 + 1
        );
        p.parse(json.as_bytes()).unwrap()
    }

    fn pipeline() -> Pipeline {
        pipeline_with(|_| {})
    }

    /// [`pipeline`] with `tweak` applied to its configuration.
    fn pipeline_with(tweak: impl FnOnce(&mut Config)) -> Pipeline {
        let mut config = Config::default();
        config.model.enabled = false;
        tweak(&mut config);
        Pipeline::new(config).unwrap()
    }

    /// A daytime population: enough events for the hour baseline to speak.
    fn daytime_population(p: &Pipeline, s: &mut Scratch) {
        // Two days: the population's hours speak once every hour of day has
        // closed, so a night after one day alone still reads as unknown. A
        // thousand customers, each on their own phone, log in two times a
        // day: their later logins are a returning customer's, which the
        // population's regions learn from.
        for i in 0..4_000 {
            // In time order, 09:00 to 17:59: out-of-order events would be too late to learn from.
            let (day, minute) = (1 + i / 2_000, (i % 2_000) * (9 * 60) / 2_000);
            let ts = format!("2026-11-0{day}T{:02}:{:02}:00+09:00", 9 + minute / 60, minute % 60);
            let e = event(p, &format!("pop{i}"), &ts, "login", &format!("c{}", i % 1_000), &format!("d{}", i % 1_000), "KR-11");
            p.process(&e, s).unwrap();
        }
    }

    /// The value of the feature `name` in the event `s` holds the features of.
    fn feature(p: &Pipeline, s: &Scratch, name: &str) -> f32 {
        s.features()[p.store().catalog().slot(name).unwrap()]
    }

    fn reasons(d: &Processed) -> Vec<String> {
        d.decision.reasons.iter().map(|r| r.id.to_string()).collect()
    }

    #[test]
    fn an_event_dated_ahead_does_not_shorten_the_memory_of_ids() {
        let p = pipeline_with(|config| {
            config.pipeline.live = true;
            config.pipeline.dedup_window = std::time::Duration::from_secs(60);
            config.pipeline.max_clock_skew = std::time::Duration::from_secs(300);
        });
        let mut s = p.scratch();
        let at = |id: &str, ms: i64| {
            let ts = haechi_features::format_rfc3339_ms(ms);
            p.parse(format!(r#"{{"event_id":"{id}","ts":"{ts}","step":"login","result":"success","customer_id":"c1"}}"#).as_bytes()).unwrap()
        };
        let now = crate::enforce::now_ms();
        assert!(p.process(&at("a", now), &mut s).is_ok());
        // Four minutes ahead, within the skew: accepted.
        assert!(p.process(&at("b", now + 240_000), &mut s).is_ok());
        // A retry of the first, a moment later, is still a repeat.
        assert!(matches!(p.process(&at("a", now + 1_000), &mut s), Err(EventError::Duplicate)));
    }

    /// A pipeline without the model whose one rule blocks the staff member
    /// on an export of fifty records or more; and the folder of its rule file.
    fn big_export_blocks_the_staff_member() -> (Pipeline, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let rules = dir.path().join("staff.yaml");
        std::fs::write(
            &rules,
            "rules:\n  - id: big_export\n    description: fifty records at once\n    severity: high\n    when: event.step == \"record_export\" && event.records >= 50\n    action: block\n    scope: staff\n    ttl: 10m\n",
        )
        .unwrap();
        (pipeline_with(|config| config.rules.path = Some(rules)), dir)
    }

    /// Staff member st1's `n`th access, at `ts`, from their workstation.
    fn staff_access(p: &Pipeline, n: usize, ts: &str, records: u64) -> Event {
        let step = if records > 1 { "record_export" } else { "record_view" };
        let line = format!(r#"{{"event_id":"e{n}","ts":"{ts}","step":"{step}","result":"success","staff_id":"st1","customer_id":"c{n}","ip":"10.20.1.9","records":{records}}}"#);
        p.parse(line.as_bytes()).unwrap()
    }

    #[test]
    fn an_analysts_block_on_a_session_id_holds_when_the_streams_ids_are_a_steps_each() {
        let p = pipeline_with(|config| config.features.session_ids = haechi_features::SessionIds::Auto);
        let mut s = p.scratch();
        let step = |i: usize, session: &str| {
            let json = format!(
                r#"{{"event_id":"e{i}","ts":"2026-11-02T10:{:02}:{:02}+09:00","step":"login","result":"success","customer_id":"c{i}","device_id":"d{i}","session_id":"{session}"}}"#,
                i / 60 % 60,
                i % 60
            );
            p.parse(json.as_bytes()).unwrap()
        };
        // A request id on every step: the store stops keying sessions by them.
        for i in 0..3_000 {
            p.process(&step(i, &format!("req-{i}")), &mut s).unwrap();
        }
        assert!(!p.store().trusts_session_ids());
        let first = p.process(&step(3_000, "held"), &mut s).unwrap();
        assert!(first.keys.session_is_implied());
        let held = first.keys.untrusted_session().expect("the reported id's hash");
        p.enforcer().blocks().set_manual(EntityKind::Session, held, "held".into(), std::time::Duration::from_secs(3_600), "seen".into(), "analyst:kim".into());
        let next = p.process(&step(3_001, "held"), &mut s).unwrap();
        assert_eq!(next.decision.verdict, Verdict::Block, "{:?}", next.decision);
        assert_eq!(p.process(&step(3_002, "other"), &mut s).unwrap().decision.verdict, Verdict::Allow);
    }

    #[test]
    fn a_night_the_staff_member_was_blocked_for_does_not_become_their_habit() {
        // `records` at 23:00 on the first day; with `address_blocked`, an
        // analyst's block on the workstation's address is in force at that hour only.
        let run = |records: u64, address_blocked: bool| {
            let (p, _rules) = big_export_blocks_the_staff_member();
            let mut s = p.scratch();
            let mut n = 0;
            let mut access = |ts: &str, records: u64| {
                n += 1;
                p.process(&staff_access(&p, n, ts, records), &mut s).unwrap()
            };
            let first = access("2026-11-02T10:00:00+09:00", 1);
            let address = first.keys.get(EntityKind::Ip).unwrap();
            let blocks = p.enforcer().blocks();
            if address_blocked {
                blocks.set_manual(EntityKind::Ip, address, "10.20.1.9".into(), std::time::Duration::from_secs(3_600), "seen".into(), "analyst:kim".into());
            }
            let night = access("2026-11-02T23:00:00+09:00", records);
            blocks.lift(EntityKind::Ip, address);
            // A second night: an hour worked on two days is a habit.
            access("2026-11-03T10:00:00+09:00", 1);
            access("2026-11-03T23:10:00+09:00", 1);
            access("2026-11-04T10:00:00+09:00", 1);
            access("2026-11-04T23:30:00+09:00", 1);
            let f = |n: &str| feature(&p, &s, n);
            (night.decision.verdict, f("staff.hour_habit"), f("staff.typical_daily_records"))
        };
        // Forty records at 23:00 pass, and with the next night 23:00 becomes an hour this member works.
        assert_eq!(run(40, false), (Verdict::Allow, 1.0, 21.5));
        // Sixty are blocked: that day teaches nothing, so one night later 23:00 is still unusual.
        assert_eq!(run(60, false), (Verdict::Block, 0.0, 2.0));
        // Refused by a block on their workstation's address instead: the same.
        assert_eq!(run(40, true), (Verdict::Block, 0.0, 2.0));
    }

    #[test]
    fn a_staff_member_refused_one_night_is_stepped_up_off_hours_that_week() {
        // The default pack. `night` records at 03:00 on the third day (not so many
        // that the day alone is a pull by 21:00: staff_above_own_habit_off_hours); then
        // one lookup in the office, one at 21:00 that day, and one at `later`.
        let run = |night: u64, address_blocked: bool, later: &str| {
            let p = pipeline();
            let mut s = p.scratch();
            let access = |s: &mut Scratch, n: usize, ts: &str, records: u64| p.process(&staff_access(&p, n, ts, records), s).unwrap();
            let first = access(&mut s, 1, "2026-11-02T10:00:00+09:00", 5);
            access(&mut s, 2, "2026-11-03T11:00:00+09:00", 5);
            let address = first.keys.get(EntityKind::Ip).unwrap();
            let blocks = p.enforcer().blocks();
            if address_blocked {
                blocks.set_manual(EntityKind::Ip, address, "10.20.1.9".into(), std::time::Duration::from_secs(3_600), "a colleague's pull".into(), "analyst:kim".into());
            }
            let pull = access(&mut s, 3, "2026-11-04T03:00:00+09:00", night).decision.verdict;
            blocks.lift(EntityKind::Ip, address);
            let office = access(&mut s, 4, "2026-11-04T10:00:00+09:00", 1).decision.verdict;
            let evening = access(&mut s, 5, "2026-11-04T21:00:00+09:00", 1);
            let days_since = feature(&p, &s, "staff.days_since_refused");
            let later = access(&mut s, 6, later, 1);
            (pull, office, evening.decision.verdict, reasons(&evening), days_since, (later.decision.verdict, reasons(&later)))
        };
        let (pull, office, evening, why, days_since, day_six) = run(30, false, "2026-11-10T22:00:00+09:00");
        assert_eq!((pull, office), (Verdict::Block, Verdict::Allow), "thirty at 03:00 after office days is refused; the next morning's work is not");
        assert_eq!((evening, days_since), (Verdict::Challenge, 0.0));
        assert_eq!(why, ["staff_off_hours_after_refusal", "staff_odd_hour_access"], "the step-up, and the alert that was all before");
        assert_eq!(day_six.0, Verdict::Challenge, "the sixth day after is within the week");
        assert_eq!(day_six.1.first().map(String::as_str), Some("staff_off_hours_after_refusal"), "stepped up for the refusal");
        let (.., day_seven) = run(30, false, "2026-11-11T22:00:00+09:00");
        assert_eq!(day_seven.0, Verdict::Allow, "a week on, the refusal is old news");
        // Four records that night (under a quarter of the typical day and
        // three more) were not even stepped up, let alone refused: the evening lookup passes.
        let (pull, _, evening, _, days_since, _) = run(4, false, "2026-11-10T22:00:00+09:00");
        assert_eq!((pull, evening, days_since), (Verdict::Allow, Verdict::Allow, haechi_features::NEVER_REFUSED_DAYS));
        // Refused by a block on the address they share (a colleague's pull got
        // it blocked), not on them: nothing to step up the member for.
        let (pull, _, evening, _, days_since, _) = run(4, true, "2026-11-10T22:00:00+09:00");
        assert_eq!((pull, evening, days_since), (Verdict::Block, Verdict::Allow, haechi_features::NEVER_REFUSED_DAYS));
        // But a pull that asked for a block on the member counts, even when a
        // block on the address refused it first.
        let (pull, _, evening, _, days_since, _) = run(30, true, "2026-11-10T22:00:00+09:00");
        assert_eq!((pull, evening, days_since), (Verdict::Block, Verdict::Challenge, 0.0));
    }

    #[test]
    fn a_night_the_rules_would_have_blocked_does_not_warm_into_a_habit() {
        // The same history, warmed or decided live, then the same live tail:
        // what the member's habit reads at the end.
        let run = |warm: bool, records: u64| {
            let (p, _rules) = big_export_blocks_the_staff_member();
            let mut s = p.scratch();
            let history = [
                ("2026-11-02T10:00:00+09:00", 1),
                // The rule blocks the member for ten minutes: live, the next
                // access, after midnight, meets the block, and so its day is refused too.
                ("2026-11-02T23:55:00+09:00", records),
                ("2026-11-03T00:02:00+09:00", 1),
                ("2026-11-03T10:00:00+09:00", 1),
                ("2026-11-04T00:10:00+09:00", 1),
            ];
            for (n, (ts, r)) in history.into_iter().enumerate() {
                let e = staff_access(&p, n, ts, r);
                if warm {
                    p.warm(&e, &mut s).unwrap();
                } else {
                    p.process(&e, &mut s).unwrap();
                }
            }
            p.process(&staff_access(&p, 10, "2026-11-04T10:00:00+09:00", 1), &mut s).unwrap();
            p.process(&staff_access(&p, 11, "2026-11-05T00:20:00+09:00", 1), &mut s).unwrap();
            let f = |n: &str| feature(&p, &s, n);
            (f("staff.hour_habit"), f("staff.typical_daily_records"), f("staff.days_active"))
        };
        // Forty records would have passed; sixty would have been blocked, with the
        // access after midnight: the habits differ, and warming learns what live did.
        assert_ne!(run(false, 40), run(false, 60));
        assert_eq!(run(true, 40), run(false, 40));
        assert_eq!(run(true, 60), run(false, 60));
    }

    #[test]
    fn a_blocked_event_too_late_to_be_counted_refuses_no_day() {
        let (p, _rules) = big_export_blocks_the_staff_member();
        let mut s = p.scratch();
        let mut n = 0;
        let mut access = |ts: &str, step: &str, records: u64| {
            n += 1;
            let line = format!(r#"{{"event_id":"e{n}","ts":"{ts}","step":"{step}","result":"success","staff_id":"st1","customer_id":"c{n}","records":{records}}}"#);
            p.process(&p.parse(line.as_bytes()).unwrap(), &mut s).unwrap()
        };
        access("2026-11-02T10:00:00+09:00", "record_view", 1);
        access("2026-11-03T10:00:00+09:00", "record_view", 1);
        // A day behind: too late to be counted into any day, and blocked.
        let late = access("2026-11-02T11:00:00+09:00", "record_export", 60);
        assert!(late.late);
        assert_eq!(late.decision.verdict, Verdict::Block);
        access("2026-11-04T10:00:00+09:00", "record_view", 1);
        let f = |n: &str| feature(&p, &s, n);
        assert_eq!(f("staff.days_active"), 2.0, "both days teach: the late block was counted into neither");
    }

    #[test]
    fn guessed_1_won_checks_that_name_no_customer_count_against_the_customer_the_session_logged_in_as() {
        // A pipeline that names the customer at the login only: the 1-won
        // check comes from another service. Eight wrong checks over eight
        // hours, each after a login with the stolen password, from one phone.
        let guesses = |attribute: bool| {
            let p = pipeline_with(|config| config.pipeline.customer_from_session = attribute);
            let mut s = p.scratch();
            let mut last = None;
            for h in 0..8 {
                let ts = format!("2026-11-02T{:02}:10:00+09:00", 9 + h);
                let login = format!(r#"{{"event_id":"l{h}","ts":"{ts}","step":"login","result":"success","customer_id":"victim","session_id":"s{h}","device_id":"thief","ip":"121.1.2.3"}}"#);
                p.process(&p.parse(login.as_bytes()).unwrap(), &mut s).unwrap();
                let ts = format!("2026-11-02T{:02}:11:00+09:00", 9 + h);
                let check = format!(r#"{{"event_id":"v{h}","ts":"{ts}","step":"account_verify","result":"failure","session_id":"s{h}","device_id":"thief","ip":"121.1.2.3"}}"#);
                last = Some(p.process(&p.parse(check.as_bytes()).unwrap(), &mut s).unwrap());
            }
            last.unwrap()
        };
        let d = guesses(true);
        assert_eq!(d.decision.verdict, Verdict::Block, "{:?}", reasons(&d));
        assert!(reasons(&d).contains(&"brute_force_slow_failures".to_owned()), "{:?}", reasons(&d));
        assert!(reasons(&d).contains(&"customer_from_session".to_owned()), "the analyst is told whose the event was taken to be");
        assert_eq!(d.judged_as.as_deref().and_then(|e| e.customer_id.as_deref()), Some("victim"));
        // The first check, allowed, says so too: the records file it under the victim.
        let first = {
            let p = pipeline();
            let mut s = p.scratch();
            let login = r#"{"event_id":"l","ts":"2026-11-02T09:10:00+09:00","step":"login","result":"success","customer_id":"victim","session_id":"s","device_id":"thief"}"#;
            p.process(&p.parse(login.as_bytes()).unwrap(), &mut s).unwrap();
            let check = r#"{"event_id":"v","ts":"2026-11-02T09:11:00+09:00","step":"account_verify","result":"success","session_id":"s","device_id":"thief"}"#;
            p.process(&p.parse(check.as_bytes()).unwrap(), &mut s).unwrap()
        };
        assert_eq!(first.decision.verdict, Verdict::Allow, "{:?}", reasons(&first));
        assert_eq!(reasons(&first), ["customer_from_session"]);
        assert!(d.enforced.set.iter().any(|(k, _, r)| *k == EntityKind::Customer && r.is_ok()), "the customer is blocked, not nobody");
        // Off, the checks are nobody's.
        let d = guesses(false);
        assert!(!reasons(&d).contains(&"brute_force_slow_failures".to_owned()), "{:?}", reasons(&d));
        assert!(d.judged_as.is_none());
    }

    #[test]
    fn a_farms_account_openings_that_name_no_device_are_judged_on_the_device_of_their_session() {
        // A backend that reports the account opening with the customer and
        // the session only. One phone scans a fresh ID every five hours, each
        // time through another carrier exit, and opens an account for it.
        let farm = |place: bool| {
            let p = pipeline_with(|config| config.pipeline.place_from_session = place);
            let mut s = p.scratch();
            let mut last = None;
            for k in 0..3 {
                let at = |minute: u32| format!("2026-11-02T{:02}:{minute:02}:00+09:00", 8 + 5 * k);
                let scan = format!(
                    r#"{{"event_id":"o{k}","ts":"{}","step":"id_ocr","result":"success","customer_id":"c{k}","id_doc_hash":"d{k}","session_id":"s{k}","device_id":"farm-phone","ip":"223.38.{k}.10","region":"KR-11"}}"#,
                    at(0)
                );
                p.process(&p.parse(scan.as_bytes()).unwrap(), &mut s).unwrap();
                let open = format!(r#"{{"event_id":"a{k}","ts":"{}","step":"account_open","result":"success","customer_id":"c{k}","session_id":"s{k}"}}"#, at(4));
                last = Some(p.process(&p.parse(open.as_bytes()).unwrap(), &mut s).unwrap());
            }
            last.unwrap()
        };
        let d = farm(true);
        assert!(reasons(&d).contains(&"device_third_account_over_hours".to_owned()), "{:?}", reasons(&d));
        assert!(reasons(&d).contains(&"place_from_session".to_owned()), "the analyst is told the device was the session's: {:?}", reasons(&d));
        let judged = d.judged_as.as_deref().expect("judged as coming from the session's device");
        assert_eq!((judged.device_id.as_deref(), judged.region.as_deref()), (Some("farm-phone"), Some("KR-11")));
        assert_eq!(judged.ip, None, "the address is not taken");
        // Off, the openings are no device's.
        let d = farm(false);
        assert!(!reasons(&d).contains(&"device_third_account_over_hours".to_owned()), "{:?}", reasons(&d));
        assert!(d.judged_as.is_none());
    }

    #[test]
    fn the_odd_hour_rule_asks_for_an_hour_quiet_for_the_population_too() {
        let p = pipeline();
        let mut s = p.scratch();
        daytime_population(&p, &mut s);
        let fired = |d: &Processed| reasons(d).contains(&"takeover_odd_hour_new_device_region".to_owned());
        let mut run = |events: [(&str, &str, &str, &str, &str); 3]| {
            let decided: Vec<Processed> = events.iter().map(|(id, ts, step, device, region)| p.process(&event(&p, id, ts, step, &format!("cust-{}", &id[..1]), device, region), &mut s).unwrap()).collect();
            decided.into_iter().last().unwrap()
        };
        // A daytime customer at 03:00 on a new phone in Busan.
        let d = run([("a1", "2026-11-03T11:00:00+09:00", "login", "p1", "KR-11"), ("a2", "2026-11-03T11:01:00+09:00", "otp", "p1", "KR-11"), ("a3", "2026-11-04T03:00:00+09:00", "login", "p2", "KR-26")]);
        assert!(fired(&d), "{:?}", reasons(&d));
        // A night-shift customer at 03:00 as always.
        let d = run([("b1", "2026-11-04T03:10:00+09:00", "login", "p1", "KR-11"), ("b2", "2026-11-04T03:11:00+09:00", "otp", "p1", "KR-11"), ("b3", "2026-11-05T03:00:00+09:00", "login", "p2", "KR-26")]);
        assert!(!fired(&d), "{:?}", reasons(&d));
        // A home PC at night, then the phone at 10:00 (another device, the
        // carrier gateway's region): an hour the population lives in.
        let d = run([("c1", "2026-11-06T01:10:00+09:00", "login", "pc", "KR-29"), ("c2", "2026-11-06T01:11:00+09:00", "otp", "pc", "KR-29"), ("c3", "2026-11-06T10:00:00+09:00", "login", "phone", "KR-11")]);
        assert!(!fired(&d), "{:?}", reasons(&d));
    }

    #[test]
    fn a_new_device_is_weighed_against_how_often_its_channel_brings_one() {
        let p = pipeline();
        let mut s = p.scratch();
        daytime_population(&p, &mut s);
        let on = |id: &str, ts: &str, step: &str, customer: &str, device: &str, region: &str, channel: &str| {
            let json = format!(
                r#"{{"event_id":"{id}","ts":"{ts}","step":"{step}","result":"success","customer_id":"{customer}","device_id":"{device}","session_id":"s-{id}","region":"{region}","ip":"121.2.{}.1","channel":"{channel}"}}"#,
                id.len()
            );
            p.parse(json.as_bytes()).unwrap()
        };
        // Forty customers pass a code on their phone and log in on the app,
        // then come back: on the app on that phone, and through the web on a
        // browser whose fingerprint resets every session.
        for i in 0..40 {
            let (c, phone) = (format!("w{i}"), format!("phone-w{i}"));
            let visits = [("otp", phone.as_str(), "app"), ("login", &phone, "app"), ("login", &phone, "app"), ("login", "fp-a", "web"), ("login", "fp-b", "web")];
            for (k, (step, device, channel)) in visits.into_iter().enumerate() {
                let device = if channel == "web" { format!("{device}-{i}") } else { device.to_owned() };
                let ts = format!("2026-11-03T10:{i:02}:{:02}+09:00", 10 * k);
                p.process(&on(&format!("w{i}-{k}"), &ts, step, &c, &device, "KR-11", channel), &mut s).unwrap();
            }
        }
        let f = |s: &Scratch, n: &str| feature(&p, s, n);
        let fired = |d: &Processed| reasons(d).contains(&"takeover_odd_hour_new_device_region".to_owned());
        // At 03:00, from Busan, on a device new to the customer: through the
        // web, where returning customers always bring a new one, that says
        // nothing; on the app, where they never do, it does.
        let d = p.process(&on("x1", "2026-11-04T03:00:00+09:00", "login", "w0", "fp-c-0", "KR-26", "web"), &mut s).unwrap();
        assert_eq!(f(&s, "event.channel_new_device_share"), 1.0);
        assert!(f(&s, "customer.new_device") == 1.0 && f(&s, "customer.new_region") == 1.0 && f(&s, "event.hour_activity") < 0.5);
        assert!(!fired(&d), "{:?}", reasons(&d));
        let d = p.process(&on("x2", "2026-11-04T03:01:00+09:00", "login", "w1", "another-phone", "KR-26", "app"), &mut s).unwrap();
        assert_eq!(f(&s, "event.channel_new_device_share"), 0.0);
        assert!(f(&s, "customer.new_device") == 1.0 && f(&s, "customer.new_region") == 1.0 && f(&s, "event.hour_activity") < 0.5);
        assert!(fired(&d), "{:?}", reasons(&d));
    }

    #[test]
    fn a_sensitive_step_on_a_new_device_is_judged_at_the_populations_quiet_hours() {
        let p = pipeline();
        let mut s = p.scratch();
        daytime_population(&p, &mut s);
        let f = |s: &Scratch, n: &str| feature(&p, s, n);
        let fired = |d: &Processed| reasons(d).contains(&"takeover_sensitive_step_new_device".to_owned());
        // Two customers whose profiles saw only their mornings, in time order.
        for (i, customer) in ["afternoon", "night"].iter().enumerate() {
            let at = |minute: usize| format!("2026-11-03T11:{:02}:00+09:00", 2 * i + minute);
            p.process(&event(&p, &format!("{customer}1"), &at(0), "login", customer, "own-phone", "KR-11"), &mut s).unwrap();
            p.process(&event(&p, &format!("{customer}2"), &at(1), "otp", customer, "own-phone", "KR-11"), &mut s).unwrap();
        }
        let sensitive = |s: &mut Scratch, customer: &str, at: &str| {
            let d = p.process(&event(&p, &format!("{customer}3"), at, "phone_auth", customer, "new-phone", "KR-11"), s).unwrap();
            assert_eq!(f(s, "customer.hour_seen"), 0.0, "an hour the customer was never seen at");
            assert!(f(s, "customer.prior_events") >= 2.0 && f(s, "customer.new_device") == 1.0 && f(s, "event.population_hours_known") == 1.0);
            d
        };
        // At 15:00, an hour this population lives in, a phone change: no takeover.
        let d = sensitive(&mut s, "afternoon", "2026-11-04T15:00:00+09:00");
        assert!(f(&s, "event.hour_activity") >= 0.5, "{}", f(&s, "event.hour_activity"));
        assert!(!fired(&d), "{:?}", reasons(&d));
        // At 03:00, an hour it does not bank at: stepped up.
        let d = sensitive(&mut s, "night", "2026-11-05T03:00:00+09:00");
        assert!(f(&s, "event.hour_activity") < 0.5, "{}", f(&s, "event.hour_activity"));
        assert!(fired(&d), "{:?}", reasons(&d));
        // Before the population's hours are known: a profile a day deep is
        // judged on its own hours, one of hours is not.
        let run = |history_day: &str| {
            let p = pipeline();
            let mut s = p.scratch();
            p.process(&event(&p, "h1", &format!("{history_day}T09:00:00+09:00"), "login", "c1", "own-phone", "KR-11"), &mut s).unwrap();
            p.process(&event(&p, "h2", &format!("{history_day}T09:01:00+09:00"), "otp", "c1", "own-phone", "KR-11"), &mut s).unwrap();
            let d = p.process(&event(&p, "x", "2026-11-02T23:00:00+09:00", "phone_auth", "c1", "new-phone", "KR-11"), &mut s).unwrap();
            assert_eq!(feature(&p, &s, "event.population_hours_known"), 0.0);
            reasons(&d).contains(&"takeover_sensitive_step_new_device".to_owned())
        };
        assert!(run("2026-11-01"), "a profile of a day and more");
        assert!(!run("2026-11-02"), "a profile of hours");
    }

    #[test]
    fn a_device_the_store_first_saw_in_the_hour_is_judged_at_the_populations_quiet_hours() {
        let p = pipeline();
        let mut s = p.scratch();
        daytime_population(&p, &mut s);
        let f = |s: &Scratch, n: &str| feature(&p, s, n);
        let fired = |d: &Processed, rule: &str| reasons(d).contains(&rule.to_owned());
        let (new_to_all, new_to_profile) = ("takeover_sensitive_step_device_new_to_all", "takeover_sensitive_step_new_device");
        // Three customers seen one morning on their own phone, in time order:
        // two passed a code there; the third only ever logged in, so their
        // profile learnt no device.
        for (i, (customer, second)) in [("afternoon", "otp"), ("early", "otp"), ("night", "login")].iter().enumerate() {
            let at = |minute: usize| format!("2026-11-03T11:{:02}:00+09:00", 2 * i + minute);
            let phone = format!("{customer}-own-phone");
            p.process(&event(&p, &format!("{customer}1"), &at(0), "login", customer, &phone, "KR-11"), &mut s).unwrap();
            p.process(&event(&p, &format!("{customer}2"), &at(1), second, customer, &phone, "KR-11"), &mut s).unwrap();
        }
        // A login on another phone, then the 1-won code of a new account.
        let takeover = |s: &mut Scratch, customer: &str, login_at: &str, verify_at: &str| {
            let phone = format!("{customer}-new-phone");
            p.process(&event(&p, &format!("{customer}3"), login_at, "login", customer, &phone, "KR-11"), s).unwrap();
            let d = p.process(&event(&p, &format!("{customer}4"), verify_at, "account_verify", customer, &phone, "KR-11"), s).unwrap();
            assert_eq!(f(s, "customer.hour_seen"), 0.0, "an hour the customer was never seen at");
            assert_eq!(f(s, "event.population_hours_known"), 1.0);
            assert!(f(s, "customer.prior_events") >= 2.0 && f(s, "customer.distinct_devices_total") == 2.0 && f(s, "device.present") == 1.0);
            d
        };
        // At 15:00, an hour this population lives in: a customer on a new phone.
        let d = takeover(&mut s, "afternoon", "2026-11-04T15:00:00+09:00", "2026-11-04T15:01:00+09:00");
        assert!(f(&s, "event.hour_activity") >= 0.5 && f(&s, "device.age_s") < 3_600.0, "{}", f(&s, "event.hour_activity"));
        assert!(!fired(&d, new_to_all), "{:?}", reasons(&d));
        // A phone the store first saw two hours before is not new to it.
        let d = takeover(&mut s, "early", "2026-11-05T01:00:00+09:00", "2026-11-05T03:00:00+09:00");
        assert!(f(&s, "event.hour_activity") < 0.5 && f(&s, "device.age_s") >= 3_600.0);
        assert!(!fired(&d, new_to_all), "{:?}", reasons(&d));
        // At 03:00, an hour it does not bank at, on a phone first seen a
        // minute before, for the customer whose profile knows no device: the
        // profile cannot call the phone new, the store can.
        let d = takeover(&mut s, "night", "2026-11-05T03:02:00+09:00", "2026-11-05T03:03:00+09:00");
        assert!(f(&s, "event.hour_activity") < 0.5 && f(&s, "device.age_s") < 3_600.0);
        assert_eq!(f(&s, "customer.new_device"), 0.0, "a profile of no device");
        assert!(!fired(&d, new_to_profile), "{:?}", reasons(&d));
        assert!(fired(&d, new_to_all), "{:?}", reasons(&d));
        assert_ne!(d.decision.verdict, Verdict::Allow);
    }

    #[test]
    fn before_the_population_hours_are_known_the_odd_hour_rule_asks_for_a_day_of_profile() {
        // A new install's first day: no hour of day has closed yet, so none
        // can be called quiet, and every profile is hours old.
        let fired = |d: &Processed| reasons(d).contains(&"takeover_odd_hour_new_device_region".to_owned());
        let run = |history: [(&str, &str); 2], odd: &str| {
            let p = pipeline();
            let mut s = p.scratch();
            for (i, (ts, step)) in history.iter().enumerate() {
                p.process(&event(&p, &format!("h{i}"), ts, step, "c1", "p1", "KR-11"), &mut s).unwrap();
            }
            let d = p.process(&event(&p, "t", odd, "login", "c1", "p2", "KR-26"), &mut s).unwrap();
            assert_eq!(feature(&p, &s, "event.population_hours_known"), 0.0);
            d
        };
        // Seen this morning; tonight on another phone in Busan: a customer
        // changing phones as much as a takeover, on a profile of hours.
        let d = run([("2026-11-02T09:00:00+09:00", "login"), ("2026-11-02T09:01:00+09:00", "otp")], "2026-11-02T23:00:00+09:00");
        assert!(!fired(&d), "{:?}", reasons(&d));
        // A profile two days deep (a restart without warm-up): judged on it, as before.
        let d = run([("2026-10-31T09:00:00+09:00", "login"), ("2026-10-31T09:01:00+09:00", "otp")], "2026-11-02T23:00:00+09:00");
        assert!(fired(&d), "{:?}", reasons(&d));
    }

    #[test]
    fn credential_stuffing_is_seen_in_the_populations_failures_not_in_any_one_entity() {
        let stuffing = |d: &Processed| reasons(d).contains(&"bot_credential_stuffing".to_owned());
        let timed_login = |p: &Pipeline, s: &mut Scratch, id: &str, ts: String, customer: &str, device: &str, ok: bool, duration_ms: Option<u64>| {
            let result = if ok { "success" } else { "failure" };
            let duration = duration_ms.map_or(String::new(), |ms| format!(r#","duration_ms":{ms}"#));
            let json = format!(
                r#"{{"event_id":"{id}","ts":"{ts}","step":"login","result":"{result}","customer_id":"{customer}","device_id":"{device}","session_id":"s-{id}","ip":"223.38.14.9"{duration}}}"#
            );
            p.process(&p.parse(json.as_bytes()).unwrap(), s).unwrap()
        };
        let login = |p: &Pipeline, s: &mut Scratch, id: &str, ts: String, customer: &str, device: &str, ok: bool| timed_login(p, s, id, ts, customer, device, ok, None);
        // Eight hours of a bank: 60 customers log in on their phones, and
        // `typos` others of them mistype on a new phone: in every other hour,
        // or in every hour.
        let bank = |typos: usize, every_hour: bool| {
            let p = pipeline();
            let mut s = p.scratch();
            for h in 0..8 {
                for t in 0..if every_hour || h % 2 == 1 { typos } else { 0 } {
                    let d = login(&p, &mut s, &format!("typo{h}-{t}"), format!("2026-11-02T{:02}:0{t}:00+09:00", 8 + h), &format!("c{}", h * 6 + t), &format!("new-phone{h}-{t}"), false);
                    assert!(!stuffing(&d), "{:?}", reasons(&d));
                }
                // Their logins take 3 to 5 s: the population's login baseline.
                for c in 0..60 {
                    timed_login(&p, &mut s, &format!("ok{h}-{c}"), format!("2026-11-02T{:02}:{:02}:00+09:00", 8 + h, c.min(49) + 10), &format!("c{c}"), &format!("phone{c}"), true, Some(3_000 + 33 * c as u64));
                }
            }
            (p, s)
        };
        let (p, mut s) = bank(1, false);
        let f = |s: &Scratch, n: &str| feature(&p, s, n);
        // 16:10 (the last typo, at 15:00, is past the hour): a campaign, one
        // try per victim, each on a fresh device.
        let fired: Vec<bool> = (0..6).map(|v| stuffing(&login(&p, &mut s, &format!("cs{v}"), format!("2026-11-02T16:{:02}:00+09:00", 10 + 5 * v), &format!("c{}", 50 + v), &format!("fresh{v}"), false))).collect();
        assert_eq!(fired, [false, false, false, false, true, true], "five in the hour (the day's median hour holds one)");
        assert_eq!(f(&s, "event.population_stranger_failures_1h"), 6.0);
        assert_eq!(f(&s, "event.population_stranger_failures_hourly"), 1.0);
        // In the same hour: the owner's typo on their own phone is not a stranger's,
        // nor is an id that never logged in, however often it is named.
        assert!(!stuffing(&login(&p, &mut s, "own", "2026-11-02T16:40:00+09:00".into(), "c20", "phone20", false)));
        assert_eq!(f(&s, "event.stranger_login_failure"), 0.0);
        for k in 0..3 {
            assert!(!stuffing(&login(&p, &mut s, &format!("nobody{k}"), "2026-11-02T16:41:00+09:00".into(), "made-up", &format!("fresh-x{k}"), false)));
            assert_eq!(f(&s, "event.stranger_login_failure"), 0.0);
        }
        // A stranger's try on a known account, again in the campaign's hour,
        // on a device id sent once before to age it: still a stranger's, and stepped up.
        login(&p, &mut s, "age", "2026-11-02T16:41:30+09:00".into(), "made-up", "aged7", false);
        assert!(stuffing(&login(&p, &mut s, "cs7", "2026-11-02T16:42:00+09:00".into(), "c57", "aged7", false)));
        assert_eq!(f(&s, "event.population_stranger_failures_1h"), 7.0);
        // The same account tried again counts once a day (still stepped up).
        assert!(stuffing(&login(&p, &mut s, "cs7b", "2026-11-02T16:43:00+09:00".into(), "c57", "fresh7b", false)));
        assert_eq!(f(&s, "event.population_stranger_failures_1h"), 7.0);
        // A stranger's failure at a person's pace (slower than the
        // population's fastest quarter of logins) is an honest customer
        // mistyping on a new phone in the campaign's hour: not stepped up,
        // even under the median. A script's quicker one is, and so is one
        // that reports no duration.
        let slow = timed_login(&p, &mut s, "slow", "2026-11-02T16:44:00+09:00".into(), "c58", "new-phone58", false, Some(4_900));
        assert!(f(&s, "event.duration_rank") > 0.5 && f(&s, "event.stranger_login_failure") == 1.0, "{}", f(&s, "event.duration_rank"));
        assert!(!stuffing(&slow), "{:?}", reasons(&slow));
        let middling = timed_login(&p, &mut s, "middling", "2026-11-02T16:44:30+09:00".into(), "c48", "new-phone48", false, Some(3_900));
        let rank = f(&s, "event.duration_rank");
        assert!(rank > 0.25 && rank < 0.5 && f(&s, "event.stranger_login_failure") == 1.0, "{rank}");
        assert!(!stuffing(&middling), "{:?}", reasons(&middling));
        let quick = timed_login(&p, &mut s, "quick", "2026-11-02T16:45:00+09:00".into(), "c59", "fresh59", false, Some(3_100));
        assert!(f(&s, "event.duration_rank") < 0.25 && f(&s, "event.stranger_login_failure") == 1.0, "{}", f(&s, "event.duration_rank"));
        assert!(stuffing(&quick), "{:?}", reasons(&quick));
        // A bank whose median hour holds six (six typos every hour): six in
        // an hour are under three times it.
        let (p, mut s) = bank(6, true);
        let fired: Vec<bool> = (0..6).map(|v| stuffing(&login(&p, &mut s, &format!("cs{v}"), format!("2026-11-02T16:{:02}:00+09:00", 10 + 5 * v), &format!("c{}", 50 + v), &format!("fresh{v}"), false))).collect();
        assert_eq!(feature(&p, &s, "event.population_stranger_failures_hourly"), 6.0);
        assert_eq!(fired, [false; 6]);
    }

    #[test]
    fn a_cold_start_takeover_is_judged_on_population_cues() {
        let p = pipeline();
        let mut s = p.scratch();
        daytime_population(&p, &mut s);
        // A customer we have no history for, at 03:10, on a device nobody has used, changes their phone.
        p.process(&event(&p, "v1", "2026-11-03T03:10:00+09:00", "login", "victim", "fresh-device", "KR-26"), &mut s).unwrap();
        let d = p.process(&event(&p, "v2", "2026-11-03T03:11:00+09:00", "phone_auth", "victim", "fresh-device", "KR-26"), &mut s).unwrap();
        let f = |s: &Scratch, n: &str| feature(&p, s, n);
        let seen = ["event.sensitive_step", "customer.prior_events", "customer.history_days", "event.hour_activity", "device.distinct_customers_total", "device.age_s"].map(|n| (n, f(&s, n)));
        assert_eq!(d.decision.verdict, Verdict::Challenge, "{:?} {seen:?}", reasons(&d));
        assert!(reasons(&d).contains(&"takeover_cold_start".to_owned()));
        // The same at 14:00, an hour this population lives in, is nothing.
        p.process(&event(&p, "n1", "2026-11-03T14:10:00+09:00", "login", "newcomer", "other-device", "KR-26"), &mut s).unwrap();
        let d = p.process(&event(&p, "n2", "2026-11-03T14:11:00+09:00", "phone_auth", "newcomer", "other-device", "KR-26"), &mut s).unwrap();
        assert_eq!(d.decision.verdict, Verdict::Allow, "{:?}", reasons(&d));
        // The next night, an applicant at 03:20 on a new phone, whose pipeline names the customer only
        // when the account is opened: the account opening is their first event, after
        // the session proved an ID copy and a live face. Onboarding, not a takeover.
        let applicant = [
            r#"{"event_id":"a1","ts":"2026-11-04T03:20:00+09:00","step":"id_authenticity","result":"success","device_id":"applicant-phone","session_id":"sa","id_doc_hash":"doc-a"}"#,
            r#"{"event_id":"a2","ts":"2026-11-04T03:22:00+09:00","step":"liveness","result":"success","device_id":"applicant-phone","session_id":"sa"}"#,
            r#"{"event_id":"a3","ts":"2026-11-04T03:24:00+09:00","step":"account_open","result":"success","customer_id":"applicant","device_id":"applicant-phone","session_id":"sa"}"#,
        ];
        let decided: Vec<Processed> = applicant.iter().map(|e| p.process(&p.parse(e.as_bytes()).unwrap(), &mut s).unwrap()).collect();
        let opened = &decided[2];
        assert_eq!(f(&s, "customer.prior_events"), 0.0, "the account opening is the customer's first event");
        assert_eq!(f(&s, "session.methods_ok"), 2.0);
        assert!(f(&s, "event.hour_activity") < 0.25, "a quiet hour, as for the takeover above");
        assert!(!reasons(opened).contains(&"takeover_cold_start".to_owned()), "{:?}", reasons(opened));
        assert_eq!(opened.decision.verdict, Verdict::Allow, "{:?}", reasons(opened));
        // A takeover that passes a stolen ID copy before its phone check is still judged:
        // two methods let a session off only when one of them is a live face.
        let takeover = [
            r#"{"event_id":"t1","ts":"2026-11-04T03:40:00+09:00","step":"id_authenticity","result":"success","customer_id":"victim2","device_id":"thief-phone","session_id":"st"}"#,
            r#"{"event_id":"t2","ts":"2026-11-04T03:41:00+09:00","step":"phone_auth","result":"success","customer_id":"victim2","device_id":"thief-phone","session_id":"st"}"#,
        ];
        let decided: Vec<Processed> = takeover.iter().map(|e| p.process(&p.parse(e.as_bytes()).unwrap(), &mut s).unwrap()).collect();
        assert_eq!(f(&s, "session.methods_ok"), 2.0);
        assert!(reasons(&decided[1]).contains(&"takeover_cold_start".to_owned()), "{:?}", reasons(&decided[1]));
        // A customer with a history (whose profile learnt no device: their
        // codes came without one) is judged so too from a region this
        // population never uses, and not from their own.
        for id in ["a", "b"] {
            let (c, own) = (format!("known-{id}"), format!("own-phone-{id}"));
            p.process(&event(&p, &format!("{id}h"), "2026-11-04T12:00:00+09:00", "login", &c, &own, "KR-11"), &mut s).unwrap();
            p.process(&event(&p, &format!("{id}i"), "2026-11-04T12:01:00+09:00", "login", &c, &own, "KR-11"), &mut s).unwrap();
        }
        let taken = |s: &mut Scratch, id: &str, minute: u32, region: &str| {
            let (c, taker) = (format!("known-{id}"), format!("taker-{id}"));
            p.process(&event(&p, &format!("{id}l"), &format!("2026-11-05T03:{minute:02}:00+09:00"), "login", &c, &taker, region), s).unwrap();
            p.process(&event(&p, &format!("{id}p"), &format!("2026-11-05T03:{:02}:00+09:00", minute + 1), "phone_auth", &c, &taker, region), s).unwrap()
        };
        let abroad = taken(&mut s, "a", 10, "JP-13");
        assert!(f(&s, "event.region_share") < 0.005 && f(&s, "customer.prior_events") >= 2.0, "{}", f(&s, "event.region_share"));
        assert!(reasons(&abroad).contains(&"takeover_cold_start".to_owned()), "{:?}", reasons(&abroad));
        let home = taken(&mut s, "b", 20, "KR-11");
        assert!(f(&s, "event.region_share") > 0.9 && f(&s, "customer.prior_events") >= 2.0);
        assert!(!reasons(&home).contains(&"takeover_cold_start".to_owned()), "{:?}", reasons(&home));
    }

    #[test]
    fn on_a_new_installs_first_night_a_region_abroad_is_rare_by_the_banks_country() {
        // Nothing learnt yet: neither the population's hours nor its regions.
        let run = |home_country: &str, region: &str, at: &str| {
            let p = pipeline_with(|config| config.features.home_country = home_country.into());
            let mut s = p.scratch();
            p.process(&event(&p, "h1", "2026-11-02T12:00:00+09:00", "login", "victim", "own-phone", "KR-11"), &mut s).unwrap();
            p.process(&event(&p, "h2", "2026-11-02T12:01:00+09:00", "login", "victim", "own-phone", "KR-11"), &mut s).unwrap();
            p.process(&event(&p, "t1", &format!("2026-11-02T{at}:00+09:00"), "login", "victim", "taker", region), &mut s).unwrap();
            let d = p.process(&event(&p, "t2", &format!("2026-11-02T{at}:30+09:00"), "phone_auth", "victim", "taker", region), &mut s).unwrap();
            let f = |n: &str| feature(&p, &s, n);
            assert_eq!(f("event.population_hours_known"), 0.0);
            assert!(f("customer.prior_events") >= 2.0, "a customer with a history: the no-history branch does not apply");
            (reasons(&d).contains(&"takeover_cold_start".to_owned()), f("event.region_share"))
        };
        assert_eq!(run("KR", "JP-13", "23:10"), (true, 0.0), "abroad at night");
        assert_eq!(run("KR", "JP-13", "15:10"), (false, 0.0), "abroad by day: the clock's prior calls no day hour quiet");
        assert_eq!(run("KR", "KR-26", "23:10"), (false, -1.0), "at home: the region says nothing yet");
        assert_eq!(run("", "JP-13", "23:10"), (false, -1.0), "no country configured: no prior");
    }

    #[test]
    fn a_new_region_counts_toward_a_night_takeover_only_where_few_of_the_banks_customers_come_from() {
        // Two days of a bank whose customers log in from Seoul (70%) and
        // the province around it (30%), busy every hour but 02:00.
        let p = pipeline();
        let mut s = p.scratch();
        let mut n = 0;
        for day in 2..=3 {
            for hour in 0..24 {
                let per_hour = if hour == 2 { 20 } else { 100 };
                for k in 0..per_hour {
                    let ts = format!("2026-11-0{day}T{hour:02}:{:02}:00+09:00", k * 60 / per_hour);
                    let region = if n % 10 < 3 { "KR-41" } else { "KR-11" };
                    p.process(&event(&p, &format!("pop{n}"), &ts, "login", &format!("c{}", n % 500), &format!("d{}", n % 500), region), &mut s).unwrap();
                    n += 1;
                }
            }
        }
        let f = |s: &Scratch, n: &str| feature(&p, s, n);
        let fired = |d: &Processed| reasons(d).contains(&"takeover_odd_hour_new_device_region".to_owned());
        // Two customers who passed a code on their phone in Seoul just after
        // midnight, then log in at 02:10 on a device new to them: one from
        // the province around Seoul, one from Jeju, where nobody logs in from.
        let takeovers = [("KR-41", false), ("KR-49", true)];
        for i in 0..takeovers.len() {
            let (customer, phone) = (format!("v{i}"), format!("phone-v{i}"));
            p.process(&event(&p, &format!("v{i}a"), &format!("2026-11-04T00:1{i}:00+09:00"), "login", &customer, &phone, "KR-11"), &mut s).unwrap();
            p.process(&event(&p, &format!("v{i}b"), &format!("2026-11-04T00:1{i}:30+09:00"), "otp", &customer, &phone, "KR-11"), &mut s).unwrap();
        }
        for (i, (region, rare)) in takeovers.into_iter().enumerate() {
            let d = p.process(&event(&p, &format!("v{i}c"), &format!("2026-11-04T02:1{i}:00+09:00"), "login", &format!("v{i}"), &format!("taker-{i}"), region), &mut s).unwrap();
            let seen = [f(&s, "customer.new_device"), f(&s, "customer.new_region"), f(&s, "customer.hour_seen")];
            assert!(seen == [1.0, 1.0, 0.0] && f(&s, "customer.prior_events") >= 2.0, "{seen:?}");
            assert!(f(&s, "event.hour_activity") < 0.5, "{}", f(&s, "event.hour_activity"));
            let share = f(&s, "event.region_share");
            assert_eq!(share < 0.05, rare, "{region}: {share}");
            assert_eq!(fired(&d), rare, "{region}: {share} {:?}", reasons(&d));
        }
    }

    #[test]
    fn an_hour_somewhat_quiet_is_enough_from_a_rare_region_or_after_a_login_not_for_an_applicant() {
        // A bank busy every hour, but at 02:00 about a third as busy: a night
        // that is not empty (a world where many bank late) reads 0.25 to 0.5.
        let p = pipeline();
        let mut s = p.scratch();
        let mut n = 0;
        p.process(&event(&p, "first", "2026-11-01T23:59:00+09:00", "login", "c0", "d0", "KR-11"), &mut s).unwrap();
        for day in 2..=3 {
            for hour in 0..24 {
                let per_hour = if hour == 2 { 35 } else { 100 };
                for k in 0..per_hour {
                    let ts = format!("2026-11-0{day}T{hour:02}:{:02}:00+09:00", k * 60 / per_hour);
                    p.process(&event(&p, &format!("pop{n}"), &ts, "login", &format!("c{}", n % 500), &format!("d{}", n % 500), "KR-11"), &mut s).unwrap();
                    n += 1;
                }
            }
        }
        let f = |s: &Scratch, n: &str| feature(&p, s, n);
        let cold_start = |d: &Processed| reasons(d).contains(&"takeover_cold_start".to_owned());
        // c5, with two days of history, from abroad on a device nobody used.
        p.process(&event(&p, "t1", "2026-11-04T02:10:00+09:00", "login", "c5", "taker", "JP-13"), &mut s).unwrap();
        let taken = p.process(&event(&p, "t2", "2026-11-04T02:11:00+09:00", "phone_auth", "c5", "taker", "JP-13"), &mut s).unwrap();
        let hour = f(&s, "event.hour_activity");
        assert!((0.25..0.5).contains(&hour), "{hour}");
        assert!(f(&s, "event.region_share") < 0.005 && f(&s, "customer.history_days") >= 1.0);
        assert!(cold_start(&taken), "{:?}", reasons(&taken));
        // An applicant first named at the phone check, at home, on a new
        // phone: at this hour many verify their phones; only a quieter one is judged.
        let applicant = p.process(&event(&p, "n2", "2026-11-04T02:21:00+09:00", "phone_auth", "applicant", "new-phone", "KR-11"), &mut s).unwrap();
        assert!(f(&s, "customer.prior_events") < 2.0 && f(&s, "customer.returning") == 0.0);
        assert!(!cold_start(&applicant), "{:?}", reasons(&applicant));
        // An existing customer new to the store (a passed login first) is judged at it.
        p.process(&event(&p, "e1", "2026-11-04T02:30:00+09:00", "login", "existing", "other-new-phone", "KR-11"), &mut s).unwrap();
        let existing = p.process(&event(&p, "e2", "2026-11-04T02:31:00+09:00", "phone_auth", "existing", "other-new-phone", "KR-11"), &mut s).unwrap();
        assert!(f(&s, "customer.prior_events") < 2.0 && f(&s, "customer.returning") == 1.0);
        assert!(cold_start(&existing), "{:?}", reasons(&existing));
    }

    #[test]
    fn before_the_population_hours_are_known_a_logged_in_newcomer_is_judged_at_night_by_the_clock() {
        // A new install's first hours: no hour of day has closed.
        let run = |customer: &str, first: Option<&str>, sensitive_at: &str| {
            let p = pipeline();
            let mut s = p.scratch();
            for i in 0..50 {
                p.process(&event(&p, &format!("w{i}"), "2026-11-02T00:00:00+09:00", "login", &format!("w{i}"), &format!("dw{i}"), "KR-11"), &mut s).unwrap();
            }
            if let Some(at) = first {
                p.process(&event(&p, "l", at, "login", customer, "fresh-phone", "KR-11"), &mut s).unwrap();
            }
            let d = p.process(&event(&p, "x", sensitive_at, "phone_auth", customer, "fresh-phone", "KR-11"), &mut s).unwrap();
            assert_eq!(feature(&p, &s, "event.population_hours_known"), 0.0);
            reasons(&d).contains(&"takeover_cold_start".to_owned())
        };
        assert!(run("c1", Some("2026-11-02T03:10:00+09:00"), "2026-11-02T03:11:00+09:00"), "a login, then a phone change at 03:11");
        assert!(run("c1", Some("2026-11-02T23:10:00+09:00"), "2026-11-02T23:11:00+09:00"), "and at 23:11");
        assert!(!run("c1", Some("2026-11-02T14:10:00+09:00"), "2026-11-02T14:11:00+09:00"), "by day: nothing");
        assert!(!run("c1", Some("2026-11-02T07:10:00+09:00"), "2026-11-02T07:11:00+09:00"), "from 07:00: nothing");
        assert!(run("c1", Some("2026-11-02T06:58:00+09:00"), "2026-11-02T06:59:00+09:00"), "06:59 is still night");
        assert!(!run("c1", Some("2026-11-02T22:58:00+09:00"), "2026-11-02T22:59:00+09:00"), "22:59 is not yet");
        assert!(!run("applicant", None, "2026-11-02T03:11:00+09:00"), "an applicant first named at the phone check: nothing");
    }

    #[test]
    fn a_warmed_profile_sees_a_takeover_that_a_cold_one_cannot() {
        // The bank's daytime population the day before (its hours say what
        // an odd hour is), then c1's three daytime sessions over three days:
        // a login and its OTP each.
        let population: String = (0..2_500)
            .map(|i| {
                let minute = i * (9 * 60) / 2_500;
                format!(
                    "{{\"event_id\":\"pop{i}\",\"ts\":\"2026-11-01T{:02}:{:02}:00+09:00\",\"step\":\"login\",\"result\":\"success\",\"customer_id\":\"pop{i}\",\"device_id\":\"d{i}\"}}\n",
                    9 + minute / 60,
                    minute % 60
                )
            })
            .collect();
        let history: String = population
            + &(0..6)
            .map(|i| {
                format!(
                    "{{\"event_id\":\"h{i}\",\"ts\":\"2026-11-0{}T11:0{i}:00+09:00\",\"step\":\"{}\",\"result\":\"success\",\"customer_id\":\"c1\",\"device_id\":\"p1\",\"region\":\"KR-11\"}}\n",
                    2 + i / 2,
                    if i % 2 == 0 { "login" } else { "otp" }
                )
            })
            .collect::<String>();
        let takeover = |p: &Pipeline| {
            let mut s = p.scratch();
            p.process(&event(p, "t1", "2026-11-06T03:00:00+09:00", "login", "c1", "p2", "KR-26"), &mut s).unwrap()
        };
        let cold = pipeline();
        assert!(!reasons(&takeover(&cold)).contains(&"takeover_odd_hour_new_device_region".to_owned()), "no profile, no judgement");
        let warm = pipeline();
        let summary = crate::warm(&warm, &mut history.as_bytes(), &mut std::io::sink()).unwrap();
        assert_eq!(summary.accepted, 2_506);
        let d = takeover(&warm);
        assert!(reasons(&d).contains(&"takeover_odd_hour_new_device_region".to_owned()), "{:?}", reasons(&d));
        assert_eq!(d.decision.verdict, Verdict::Challenge);
    }
}
