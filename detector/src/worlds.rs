//! Detection measured across many drawn worlds of traffic.
//!
//! A generator is one world: its structural choices (which events carry which
//! fields, how NAT exits are laid out, how fast honest people are) silently
//! become rule constants when a pack is tuned on it. Here each world seed
//! draws a different structure ([`WorldSpec::random`]), the whole production
//! pipeline decides its events, and the scoreboard is kept per world, so the
//! worst world is what a figure reports. Tune on one range of world seeds and
//! report on another.

use std::collections::{BTreeMap, HashMap};

use haechi_datasets::{generate, score, Attack, AttackScore, Dataset, GenConfig, Scoreboard, WorldSpec};
use serde::Serialize;

use crate::error::DetectorError;
use crate::{Config, Pipeline};

/// One world's result.
#[derive(Debug, Clone, Serialize)]
pub struct WorldResult {
    pub world_seed: u64,
    pub events: usize,
    pub board: Scoreboard,
    /// Distinct customers of benign customer events (staff events name a record's subject).
    pub honest_customers: usize,
    /// Distinct staff members with a benign event blocked by a block on the
    /// staff member, leaving out an incident's insiders.
    pub honest_staff_blocked: usize,
    /// Benign events challenged or blocked whose staff member is named on an
    /// incident's events: an insider's own unlabelled work, before or after
    /// the incident (mostly their day shift, refused by the block a night's
    /// pull set). The generator's insiders act under their own staff id; a
    /// stolen staff login would make its owner look like an insider here.
    /// Counted in the false-positive rate all the same, since the labels say benign.
    pub insider_events_flagged: usize,
    /// Incidents caught / played, per attack type and variant (`obvious`, `evasive`, ...).
    pub by_variant: BTreeMap<String, (usize, usize)>,
    /// Benign events challenged or blocked, by the decision's first reason (`detector:id`).
    pub benign_flags_by_reason: BTreeMap<String, usize>,
    /// Honest customers blocked (the scoreboard's count), by what refused the
    /// first benign event of theirs that was blocked: `blocklist:<set_by>` when
    /// a block-list entry that refuses was in force, else the first reason
    /// that is not the block list's (`detector:id`). A step-up entry in force
    /// does not lock anyone out, so a rule's block beside it is credited to the rule.
    pub honest_blocks_by_reason: BTreeMap<String, usize>,
    /// The isolation forest on its own: events it flagged, how many of them
    /// were attack events, and incidents it flagged at least once.
    pub model: ModelScore,
}

/// The model's own precision and recall at its threshold.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ModelScore {
    pub flagged: usize,
    pub flagged_attack: usize,
    pub incidents_caught: usize,
    pub incidents: usize,
    /// Incidents the model flagged that the decisions (rules, built-ins, enforcement) missed.
    pub incidents_only_model: usize,
}

impl ModelScore {
    /// Attack events among the events the model flagged.
    pub fn precision(&self) -> f64 {
        self.flagged_attack as f64 / self.flagged.max(1) as f64
    }

    /// Incidents the model flagged at least once.
    pub fn incident_recall(&self) -> f64 {
        self.incidents_caught as f64 / self.incidents.max(1) as f64
    }
}

impl WorldResult {
    /// The lowest per-type incident recall in this world.
    pub fn min_type_recall(&self) -> f64 {
        self.board.attacks.values().map(|s| s.caught as f64 / s.incidents.max(1) as f64).fold(1.0, f64::min)
    }
}

/// What many worlds add up to.
#[derive(Debug, Clone, Serialize)]
pub struct WorldsReport {
    /// How the worlds' events were reported.
    pub reporting: Reporting,
    pub worlds: Vec<WorldResult>,
    /// Per attack type: incidents caught and played, over all worlds.
    pub recall_by_attack: BTreeMap<Attack, (usize, usize)>,
    /// Per attack type: the lowest recall any single world gave.
    pub worst_recall_by_attack: BTreeMap<Attack, f64>,
    /// Per attack type: attack events decided block, and all its attack
    /// events, over all worlds. Recall counts a step-up as a catch; this is
    /// what was refused ([`haechi_datasets::AttackScore::events_blocked`]).
    pub blocked_events_by_attack: BTreeMap<Attack, (usize, usize)>,
    pub benign_events: usize,
    pub benign_flagged: usize,
    pub honest_customers: usize,
    pub honest_customers_blocked: usize,
    pub honest_staff_blocked: usize,
    /// Of `benign_flagged`, an incident's insider's own other events (see [`WorldResult::insider_events_flagged`]).
    pub insider_events_flagged: usize,
    /// Median events of an incident decided before its first catch, over all caught incidents' medians.
    pub median_events_before_catch: Option<f64>,
    /// The same median, one attack type at a time (over that type's per-world medians).
    pub median_events_before_catch_by_attack: BTreeMap<Attack, f64>,
    /// Median events decided after an incident's first telltale and before its
    /// catch ([`haechi_datasets::AttackScore::median_events_past_telltale`]), over types and worlds.
    pub median_events_past_telltale: Option<f64>,
    /// The same median, one attack type at a time.
    pub median_events_past_telltale_by_attack: BTreeMap<Attack, f64>,
    /// The world with the lowest per-type recall (ties: the highest false-positive rate).
    pub worst_world: Option<u64>,
    /// Benign events challenged or blocked, by first reason, over all worlds.
    pub benign_flags_by_reason: BTreeMap<String, usize>,
    /// Honest customers blocked, by the reason of their first block, over all worlds.
    pub honest_blocks_by_reason: BTreeMap<String, usize>,
}

/// How a pipeline reports the drawn traffic. The event contract leaves
/// fields optional that the generator always fills, and leaves arrival order
/// to the transport: another bank's pipeline (or another generator) may do
/// either differently, and a pack that leans on one habit fails there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Reporting {
    /// As the generator writes it.
    #[default]
    AsDrawn,
    /// No event carries a session id.
    NoSessionIds,
    /// Each event carries a session id of its own: a pipeline that reports
    /// a request or transaction id in the field, so no two steps share one.
    SessionPerStep,
    /// Onboarding steps name no customer; the account opening does (an
    /// applicant becomes a customer when the account is opened).
    CustomerAtAccountOpen,
    /// Record accesses carry no `records` count.
    NoRecordCounts,
    /// No event carries a device id.
    NoDeviceIds,
    /// No event carries a step duration.
    NoDurations,
    /// Code steps (one-time code, 1-won check, phone check) carry no ID
    /// document: a pipeline that names the document on the ID scans alone.
    NoDocOnCodes,
    /// Each session's events arrive late by its own delay of up to 90 s, in
    /// their order: sessions interleave out of event-time order, as when
    /// several servers report to one stream.
    ArrivalJitter,
    /// All the rewrites that drop a field the pack can do without at once:
    /// no session ids, the customer named only at the account opening, no
    /// record counts, no durations, no document on code steps (device ids
    /// stay).
    Bare,
}

impl Reporting {
    /// Rewrite a drawn world's events so. Labels keep their event ids.
    pub fn apply(self, data: &mut Dataset, world_seed: u64) {
        use haechi_features::Step;
        use rand::{Rng, SeedableRng};
        let events = &mut data.events;
        match self {
            Reporting::AsDrawn => {}
            Reporting::Bare => {
                for r in [Reporting::NoSessionIds, Reporting::CustomerAtAccountOpen, Reporting::NoRecordCounts, Reporting::NoDurations, Reporting::NoDocOnCodes] {
                    r.apply(data, world_seed);
                }
            }
            Reporting::NoSessionIds => events.iter_mut().for_each(|e| e.session_id = None),
            Reporting::SessionPerStep => events.iter_mut().for_each(|e| e.session_id = e.session_id.take().map(|s| format!("{s}/{}", e.event_id))),
            Reporting::CustomerAtAccountOpen => {
                for e in events.iter_mut().filter(|e| e.step.is_onboarding() && e.step != Step::AccountOpen && e.staff_id.is_none()) {
                    e.customer_id = None;
                }
            }
            Reporting::NoRecordCounts => events.iter_mut().for_each(|e| e.records = None),
            Reporting::NoDeviceIds => events.iter_mut().for_each(|e| e.device_id = None),
            Reporting::NoDurations => events.iter_mut().for_each(|e| e.duration_ms = None),
            Reporting::NoDocOnCodes => events.iter_mut().filter(|e| e.step.is_code()).for_each(|e| e.id_doc_hash = None),
            Reporting::ArrivalJitter => {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(world_seed ^ 0x6a17_7e12);
                let mut delay: HashMap<String, i64> = HashMap::new();
                let arrival: Vec<i64> = events
                    .iter()
                    .map(|e| {
                        let who = e.session_id.clone().unwrap_or_else(|| e.event_id.clone());
                        e.ts_ms + *delay.entry(who).or_insert_with(|| rng.gen_range(0..90_000))
                    })
                    .collect();
                let mut arriving: Vec<(i64, haechi_datasets::GeneratedEvent)> = arrival.into_iter().zip(std::mem::take(events)).collect();
                // Stable: a session's events keep their order whatever their delays add up to.
                arriving.sort_by_key(|(at, _)| *at);
                *events = arriving.into_iter().map(|(_, e)| e).collect();
            }
        }
    }
}

/// The name on the command line and in reports (clap's, which the serde
/// name matches: a test checks it).
impl std::fmt::Display for Reporting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use clap::ValueEnum;
        f.write_str(self.to_possible_value().expect("no variant is skipped").get_name())
    }
}

/// Generate world `world_seed` at the given size, reported as `reporting`
/// says, and score the pipeline's decisions on it.
///
/// # Errors
/// When the generator refuses the size or the pipeline does not build.
pub fn run_world(config: &Config, world_seed: u64, customers: usize, days: u32, reporting: Reporting) -> Result<WorldResult, DetectorError> {
    let mut data = generate_world(world_seed, customers, days)?;
    // Scored against who each event was drawn for: a reporting that leaves
    // the customer off an event does not make the customer it blocks nobody.
    let drawn_customers: HashMap<String, Option<String>> = data.events.iter().map(|e| (e.event_id.clone(), e.customer_id.clone())).collect();
    reporting.apply(&mut data, world_seed);
    decide_dataset(config, world_seed, &data, Some(&drawn_customers))
}

/// The drawn world `world_seed` (its structure and its events both from that
/// seed) at the given size: what `bench worlds` scores and `train --worlds` learns from.
///
/// # Errors
/// When the generator refuses the size.
pub fn generate_world(world_seed: u64, customers: usize, days: u32) -> Result<Dataset, DetectorError> {
    generate(&GenConfig { seed: world_seed, days, customers, world: WorldSpec::random(world_seed), ..GenConfig::default() })
        .map_err(|e| DetectorError::Input { path: format!("world {world_seed}"), message: e.to_string() })
}

/// Score the pipeline on a generated dataset; `drawn_customers` (event id →
/// customer), when given, names the customers the scoreboard counts, in
/// place of the events' own (which a reporting may have left off).
///
/// # Errors
/// When the pipeline does not build.
pub fn decide_dataset(config: &Config, world_seed: u64, data: &Dataset, drawn_customers: Option<&HashMap<String, Option<String>>>) -> Result<WorldResult, DetectorError> {
    let pipeline = Pipeline::new(config.clone())?;
    let mut scratch = pipeline.scratch();
    let mut decisions = HashMap::with_capacity(data.events.len());
    let attack_ids: std::collections::HashSet<&str> = data.labels.iter().map(|l| l.event_id.as_str()).collect();
    let mut benign_flags_by_reason: BTreeMap<String, usize> = BTreeMap::new();
    let incident_of: HashMap<&str, &str> = data.labels.iter().map(|l| (l.event_id.as_str(), l.incident.as_str())).collect();
    let mut model = ModelScore::default();
    let mut model_incidents: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut bytes = Vec::with_capacity(512);
    // Honest staff members refused because they themselves were blocked (not a customer or an
    // address their lookup named).
    let mut staff_blocked: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut insider_events_flagged = 0;
    let events: Vec<haechi_datasets::ScoredEvent> = data
        .events
        .iter()
        .map(|e| {
            let mut scored = haechi_datasets::ScoredEvent::from(e);
            if let Some(drawn) = drawn_customers.and_then(|d| d.get(&e.event_id)) {
                scored.customer_id.clone_from(drawn);
            }
            scored
        })
        .collect();
    let insiders = haechi_datasets::insiders(&events, &data.labels);
    // Each honest customer the scoreboard counts as blocked, and what blocked them first.
    let mut first_block: HashMap<&str, String> = HashMap::new();
    for (e, scored) in data.events.iter().zip(&events) {
        bytes.clear();
        serde_json::to_writer(&mut bytes, e).map_err(std::io::Error::other)?;
        let event = match pipeline.parse(&bytes) {
            Ok(ev) => ev,
            Err(err) => return Err(DetectorError::Input { path: format!("world {world_seed}, {}", e.event_id), message: err.to_string() }),
        };
        if let Ok(p) = pipeline.process(&event, &mut scratch) {
            if scratch.findings.iter().any(|f| &*f.detector == "model") {
                model.flagged += 1;
                if let Some(inc) = incident_of.get(e.event_id.as_str()) {
                    model.flagged_attack += 1;
                    model_incidents.insert(inc);
                }
            }
            if p.decision.verdict != crate::Verdict::Allow && !attack_ids.contains(e.event_id.as_str()) {
                let r = match (&p.decision.blocked_by, p.decision.reasons.first()) {
                    (Some(b), _) => format!("blocklist:{}", b.set_by),
                    (None, Some(r)) => format!("{}:{}", r.detector, r.id),
                    (None, None) => "none".to_owned(),
                };
                if p.decision.verdict == crate::Verdict::Block {
                    if let Some(customer) = scored.refused_customer() {
                        first_block.entry(customer).or_insert_with(|| lockout_reason(&p.decision));
                    }
                }
                *benign_flags_by_reason.entry(r).or_default() += 1;
                insider_events_flagged += usize::from(e.staff_id.as_deref().is_some_and(|s| insiders.contains(s)));
            }
            if p.decision.refused_for(haechi_features::EntityKind::Staff) && !attack_ids.contains(e.event_id.as_str()) {
                if let Some(staff) = e.staff_id.as_deref().filter(|s| !insiders.contains(s)) {
                    staff_blocked.insert(staff);
                }
            }
            decisions.insert(e.event_id.clone(), p.decision.verdict.as_str());
        }
    }
    let mut honest_blocks_by_reason: BTreeMap<String, usize> = BTreeMap::new();
    for reason in first_block.into_values() {
        *honest_blocks_by_reason.entry(reason).or_default() += 1;
    }
    // An honest staff member blocked is counted apart (the scoreboard counts customers).
    let honest_staff_blocked = staff_blocked.len();
    let owned: HashMap<String, String> = decisions.iter().map(|(k, v)| (k.clone(), (*v).to_owned())).collect();
    let board = score(&events, &data.labels, &owned);
    // The same customers as the scoreboard's (event ids are unique in a drawn world).
    debug_assert_eq!(honest_blocks_by_reason.values().sum::<usize>(), board.honest_customers_blocked);
    model.incidents_caught = model_incidents.len();
    let caught_by_decisions: std::collections::HashSet<&str> =
        data.labels.iter().filter(|l| decisions.get(&l.event_id).is_some_and(|d| *d != "allow")).map(|l| l.incident.as_str()).collect();
    model.incidents_only_model = model_incidents.iter().filter(|i| !caught_by_decisions.contains(**i)).count();
    model.incidents = board.incidents;
    // The same customers the scoreboard counts (the drawn ones, when given).
    let honest_customers = events
        .iter()
        .filter(|e| !attack_ids.contains(e.event_id.as_str()) && e.staff_id.is_none())
        .filter_map(|e| e.customer_id.as_deref())
        .collect::<std::collections::HashSet<_>>()
        .len();
    // Incidents by variant: caught if any of its events was challenged or blocked.
    let mut incidents: HashMap<&str, (String, bool)> = HashMap::new();
    for l in &data.labels {
        let key = format!("{}/{}", l.attack, l.variant.as_deref().unwrap_or("obvious"));
        let flagged = decisions.get(&l.event_id).is_some_and(|d| *d != "allow");
        let entry = incidents.entry(l.incident.as_str()).or_insert((key, false));
        entry.1 |= flagged;
    }
    let mut by_variant: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (key, caught) in incidents.into_values() {
        let e = by_variant.entry(key).or_default();
        e.0 += usize::from(caught);
        e.1 += 1;
    }
    Ok(WorldResult {
        world_seed,
        events: data.events.len(),
        board,
        honest_customers,
        honest_staff_blocked,
        insider_events_flagged,
        by_variant,
        benign_flags_by_reason,
        honest_blocks_by_reason,
        model,
    })
}

/// What refused a blocked event: a block-list entry that refuses, else the
/// first reason that is not the block list's.
fn lockout_reason(decision: &crate::Decision) -> String {
    if let Some(b) = decision.blocked_by.as_ref().filter(|b| b.action == crate::enforce::BlockAction::Block) {
        return format!("blocklist:{}", b.set_by);
    }
    decision.reasons.iter().find(|r| &*r.detector != "blocklist").map_or_else(|| "none".to_owned(), |r| format!("{}:{}", r.detector, r.id))
}

/// Run worlds `seeds` on up to `threads` threads, and add them up.
///
/// # Errors
/// The first world that failed.
pub fn run_worlds(config: &Config, seeds: &[u64], customers: usize, days: u32, threads: usize, reporting: Reporting) -> Result<WorldsReport, DetectorError> {
    let threads = threads.clamp(1, seeds.len().max(1));
    let chunks: Vec<Vec<u64>> = (0..threads).map(|t| seeds.iter().copied().skip(t).step_by(threads).collect()).collect();
    let mut results: Vec<WorldResult> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| s.spawn(move || chunk.iter().map(|&w| run_world(config, w, customers, days, reporting)).collect::<Result<Vec<_>, _>>()))
            .collect();
        handles.into_iter().map(|h| h.join().expect("a world thread panicked")).collect::<Result<Vec<Vec<_>>, _>>()
    })?
    .into_iter()
    .flatten()
    .collect();
    results.sort_by_key(|r| r.world_seed);
    Ok(summarize(results, reporting))
}

fn summarize(worlds: Vec<WorldResult>, reporting: Reporting) -> WorldsReport {
    let mut recall_by_attack: BTreeMap<Attack, (usize, usize)> = BTreeMap::new();
    let mut worst_recall_by_attack: BTreeMap<Attack, f64> = BTreeMap::new();
    let mut blocked_events_by_attack: BTreeMap<Attack, (usize, usize)> = BTreeMap::new();
    let (mut benign_events, mut benign_flagged, mut honest_blocked, mut honest_customers, mut staff_blocked) = (0, 0, 0, 0, 0);
    let mut insider_events_flagged = 0;
    for w in &worlds {
        for (a, s) in &w.board.attacks {
            let e = recall_by_attack.entry(*a).or_default();
            e.0 += s.caught;
            e.1 += s.incidents;
            let r = s.caught as f64 / s.incidents.max(1) as f64;
            let worst = worst_recall_by_attack.entry(*a).or_insert(1.0);
            *worst = worst.min(r);
            let b = blocked_events_by_attack.entry(*a).or_default();
            b.0 += s.events_blocked;
            b.1 += s.events;
        }
        benign_events += w.board.benign_events;
        benign_flagged += w.board.benign_flagged;
        honest_blocked += w.board.honest_customers_blocked;
        honest_customers += w.honest_customers;
        staff_blocked += w.honest_staff_blocked;
        insider_events_flagged += w.insider_events_flagged;
    }
    let add_up = |of: fn(&WorldResult) -> &BTreeMap<String, usize>| {
        let mut total: BTreeMap<String, usize> = BTreeMap::new();
        for (r, n) in worlds.iter().flat_map(of) {
            *total.entry(r.clone()).or_default() += n;
        }
        total
    };
    let benign_flags_by_reason = add_up(|w| &w.benign_flags_by_reason);
    let honest_blocks_by_reason = add_up(|w| &w.honest_blocks_by_reason);
    let (median_events_before_catch, median_events_before_catch_by_attack) = median_of_world_medians(&worlds, |s| s.median_events_before_catch);
    let (median_events_past_telltale, median_events_past_telltale_by_attack) = median_of_world_medians(&worlds, |s| s.median_events_past_telltale);
    let worst_world = worlds
        .iter()
        .min_by(|a, b| a.min_type_recall().total_cmp(&b.min_type_recall()).then(b.board.false_positive_rate.total_cmp(&a.board.false_positive_rate)))
        .map(|w| w.world_seed);
    WorldsReport {
        reporting,
        worlds,
        recall_by_attack,
        worst_recall_by_attack,
        blocked_events_by_attack,
        benign_events,
        benign_flagged,
        honest_customers,
        honest_customers_blocked: honest_blocked,
        honest_staff_blocked: staff_blocked,
        insider_events_flagged,
        median_events_before_catch,
        median_events_before_catch_by_attack,
        median_events_past_telltale,
        median_events_past_telltale_by_attack,
        worst_world,
        benign_flags_by_reason,
        honest_blocks_by_reason,
    }
}

/// The median over every world and type of one per-world median, and the
/// same one type at a time.
fn median_of_world_medians(worlds: &[WorldResult], of: impl Fn(&AttackScore) -> Option<f64>) -> (Option<f64>, BTreeMap<Attack, f64>) {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (!v.is_empty()).then(|| v[v.len() / 2])
    };
    let mut all = Vec::new();
    let mut by_attack: BTreeMap<Attack, Vec<f64>> = BTreeMap::new();
    for (attack, m) in worlds.iter().flat_map(|w| &w.board.attacks).filter_map(|(a, s)| Some((*a, of(s)?))) {
        all.push(m);
        by_attack.entry(attack).or_default().push(m);
    }
    (median(all), by_attack.into_iter().filter_map(|(a, v)| Some((a, median(v)?))).collect())
}

/// Counts by reason, the largest first (ties in the map's order).
fn largest_first(counts: &BTreeMap<String, usize>) -> impl Iterator<Item = (&String, &usize)> {
    let mut by_count: Vec<(&String, &usize)> = counts.iter().collect();
    by_count.sort_by(|a, b| b.1.cmp(a.1));
    by_count.into_iter()
}

impl WorldsReport {
    /// Benign events challenged or blocked, over benign events, all worlds.
    pub fn false_positive_rate(&self) -> f64 {
        self.benign_flagged as f64 / self.benign_events.max(1) as f64
    }

    /// The result of one world.
    pub fn world(&self, seed: u64) -> Option<&WorldResult> {
        self.worlds.iter().find(|w| w.world_seed == seed)
    }
}

impl std::fmt::Display for WorldsReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.reporting != Reporting::AsDrawn {
            writeln!(f, "events reported as: {}", self.reporting)?;
        }
        writeln!(f, "{:>10} {:>8} {:>9} {:>10} {:>8}  missed incidents", "world", "events", "min rec.", "FPR", "blocked")?;
        for w in &self.worlds {
            let missed: Vec<String> = w.by_variant.iter().filter(|(_, (c, n))| c < n).map(|(k, (c, n))| format!("{k} {c}/{n}")).collect();
            writeln!(
                f,
                "{:>10} {:>8} {:>9.3} {:>10.5} {:>8}  {}",
                w.world_seed,
                w.events,
                w.min_type_recall(),
                w.board.false_positive_rate,
                w.board.honest_customers_blocked,
                missed.join(", ")
            )?;
        }
        // "median before": the median over worlds of each world's median events before the catch;
        // "past telltale": the same, counted from the incident's first telltale.
        // "events blocked": the share of the type's attack events refused, not only stepped up.
        writeln!(f, "{:<20} {:>9} {:>8} {:>12} {:>14} {:>14} {:>15}", "attack", "caught", "recall", "worst world", "median before", "past telltale", "events blocked")?;
        for (a, (c, n)) in &self.recall_by_attack {
            let med = |by: &BTreeMap<Attack, f64>| by.get(a).map_or_else(|| "-".to_owned(), |m| format!("{m:.1}"));
            let (before, past) = (med(&self.median_events_before_catch_by_attack), med(&self.median_events_past_telltale_by_attack));
            let (blocked, events) = self.blocked_events_by_attack.get(a).copied().unwrap_or_default();
            writeln!(
                f,
                "{:<20} {:>9} {:>8.3} {:>12.3} {before:>14} {past:>14} {:>15.3}",
                a.as_str(),
                format!("{c}/{n}"),
                *c as f64 / (*n).max(1) as f64,
                self.worst_recall_by_attack[a],
                blocked as f64 / events.max(1) as f64
            )?;
        }
        let (c, n) = self.recall_by_attack.values().fold((0, 0), |acc, (c, n)| (acc.0 + c, acc.1 + n));
        writeln!(f, "incident recall: {:.3} ({c}/{n})", c as f64 / n.max(1) as f64)?;
        writeln!(f, "benign false-positive rate: {:.5} ({}/{})", self.false_positive_rate(), self.benign_flagged, self.benign_events)?;
        writeln!(
            f,
            "  of which events of an incident's insider outside its labelled events: {} ({:.5} without them)",
            self.insider_events_flagged,
            (self.benign_flagged - self.insider_events_flagged) as f64 / self.benign_events.max(1) as f64
        )?;
        writeln!(
            f,
            "honest customers blocked: {:.5} ({}/{})",
            self.honest_customers_blocked as f64 / self.honest_customers.max(1) as f64,
            self.honest_customers_blocked,
            self.honest_customers
        )?;
        for (r, n) in largest_first(&self.honest_blocks_by_reason).take(5) {
            writeln!(f, "  honest customers blocked first by {r}: {n}")?;
        }
        writeln!(f, "honest staff members blocked (insiders left out): {}", self.honest_staff_blocked)?;
        for (r, n) in largest_first(&self.benign_flags_by_reason).take(8) {
            writeln!(f, "  benign flags by {r}: {n}")?;
        }
        let m = self.worlds.iter().fold(ModelScore::default(), |a, w| ModelScore {
            flagged: a.flagged + w.model.flagged,
            flagged_attack: a.flagged_attack + w.model.flagged_attack,
            incidents_caught: a.incidents_caught + w.model.incidents_caught,
            incidents: a.incidents + w.model.incidents,
            incidents_only_model: a.incidents_only_model + w.model.incidents_only_model,
        });
        writeln!(
            f,
            "model alone at its threshold: {} events flagged, precision {:.3}, incident recall {:.3} ({}/{}), {} incidents only it flagged",
            m.flagged,
            m.precision(),
            m.incident_recall(),
            m.incidents_caught,
            m.incidents,
            m.incidents_only_model
        )?;
        if let Some(m) = self.median_events_before_catch {
            writeln!(f, "median events before the catch (median over types and worlds): {m:.1}")?;
        }
        if let Some(m) = self.median_events_past_telltale {
            writeln!(f, "median events past the first telltale, an event tied to another identity of the incident (median over types and worlds): {m:.1}")?;
        }
        if let Some(w) = self.worst_world.and_then(|s| self.world(s)) {
            write!(f, "worst world: {} (min per-type recall {:.3}, FPR {:.5})", w.world_seed, w.min_type_recall(), w.board.false_positive_rate)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haechi_datasets::Label;

    /// An insider's 1,500-record export blocks them; their ordinary lookup an
    /// hour later is refused by that block.
    fn insider_day() -> Dataset {
        let world = generate(&GenConfig { seed: 3, days: 2, customers: 40, staff: 2, ..GenConfig::default() }).expect("a small world");
        let template = world.events.iter().find(|e| e.staff_id.is_some()).expect("the world has staff events").clone();
        let day_start = template.ts_ms - template.ts_ms.rem_euclid(86_400_000);
        let access = |id: &str, hour: i64, records: u64| {
            let mut e = template.clone();
            e.event_id = id.to_owned();
            e.ts_ms = day_start + hour * 3_600_000;
            e.staff_id = Some("st-insider".to_owned());
            e.records = Some(records);
            e.session_id = Some(format!("s-{id}"));
            e
        };
        let export = Label { event_id: "export".to_owned(), attack: Attack::StaffBulk, incident: "staff_bulk-1".to_owned(), variant: None };
        // 03:00 and 04:00 in Seoul (18:00 and 19:00 UTC the day before): a
        // night's pull, blocked; by day a newcomer's thousand records would
        // only be stepped up (staff_bulk_lookup_newcomer_working_hours).
        Dataset { events: vec![access("export", -6, 1500), access("next-lookup", -5, 1)], labels: vec![export] }
    }

    #[test]
    fn each_reporting_rewrites_what_it_says_and_nothing_else() {
        let drawn = generate_world(7, 300, 2).expect("a small world");
        let ids = |d: &Dataset| {
            let mut v: Vec<String> = d.events.iter().map(|e| e.event_id.clone()).collect();
            v.sort();
            v
        };
        for &r in <Reporting as clap::ValueEnum>::value_variants() {
            assert_eq!(<Reporting as clap::ValueEnum>::from_str(&r.to_string(), false), Ok(r));
            assert_eq!(serde_json::to_string(&r).unwrap(), format!("\"{r}\""), "the report's name is the command line's");
            let mut d = drawn.clone();
            r.apply(&mut d, 7);
            assert_eq!(ids(&d), ids(&drawn), "{r}: the same events");
            assert_eq!(d.labels, drawn.labels);
            // Nothing but the field a rewrite names changes.
            let before: HashMap<&str, &haechi_datasets::GeneratedEvent> = drawn.events.iter().map(|e| (e.event_id.as_str(), e)).collect();
            for after in &d.events {
                let was = before[after.event_id.as_str()];
                assert_eq!((after.ts_ms, after.step, &after.ip, &after.account_hash, &after.staff_id), (was.ts_ms, was.step, &was.ip, &was.account_hash, &was.staff_id));
                let bare = r == Reporting::Bare;
                let doc_dropped = (bare || r == Reporting::NoDocOnCodes) && was.step.is_code();
                assert!(after.id_doc_hash == was.id_doc_hash || (doc_dropped && after.id_doc_hash.is_none()), "{r}");
                assert!(bare || r == Reporting::NoSessionIds || r == Reporting::SessionPerStep || after.session_id == was.session_id, "{r}");
                assert!(bare || r == Reporting::CustomerAtAccountOpen || after.customer_id == was.customer_id, "{r}");
                assert!(bare || r == Reporting::NoRecordCounts || after.records == was.records, "{r}");
                assert!(r == Reporting::NoDeviceIds || after.device_id == was.device_id, "{r}");
                assert!(bare || r == Reporting::NoDurations || after.duration_ms == was.duration_ms, "{r}");
            }
            let e = &d.events;
            match r {
                Reporting::AsDrawn => assert!(e.iter().zip(&drawn.events).all(|(a, b)| a.event_id == b.event_id && a.session_id == b.session_id)),
                Reporting::NoSessionIds => assert!(e.iter().all(|e| e.session_id.is_none())),
                Reporting::SessionPerStep => {
                    let ids: Vec<&str> = e.iter().filter_map(|e| e.session_id.as_deref()).collect();
                    assert_eq!(ids.len(), drawn.events.iter().filter(|e| e.session_id.is_some()).count(), "an event with a session id keeps one");
                    assert_eq!(ids.iter().collect::<std::collections::HashSet<_>>().len(), ids.len(), "no two events share one");
                }
                Reporting::CustomerAtAccountOpen => {
                    assert!(e.iter().filter(|e| e.step.is_onboarding() && e.step != haechi_features::Step::AccountOpen).all(|e| e.customer_id.is_none()));
                    assert!(e.iter().any(|e| e.step == haechi_features::Step::AccountOpen && e.customer_id.is_some()));
                }
                Reporting::NoRecordCounts => assert!(e.iter().all(|e| e.records.is_none())),
                Reporting::NoDeviceIds => assert!(e.iter().all(|e| e.device_id.is_none())),
                Reporting::NoDurations => assert!(e.iter().all(|e| e.duration_ms.is_none())),
                Reporting::NoDocOnCodes => {
                    assert!(drawn.events.iter().any(|e| e.step.is_code() && e.id_doc_hash.is_some()), "the drawn world names documents on code steps");
                    assert!(e.iter().filter(|e| e.step.is_code()).all(|e| e.id_doc_hash.is_none()));
                    assert!(e.iter().any(|e| !e.step.is_code() && e.id_doc_hash.is_some()), "the scans keep theirs");
                }
                Reporting::Bare => assert!(e.iter().all(|e| e.session_id.is_none() && e.records.is_none() && e.duration_ms.is_none() && !(e.step.is_code() && e.id_doc_hash.is_some()))),
                Reporting::ArrivalJitter => {
                    assert!(e.windows(2).any(|w| w[1].ts_ms < w[0].ts_ms), "some events arrive out of event-time order");
                    let mut last: HashMap<&str, i64> = HashMap::new();
                    for ev in e.iter().filter(|ev| ev.session_id.is_some()) {
                        let prev = last.insert(ev.session_id.as_deref().unwrap(), ev.ts_ms);
                        assert!(prev.is_none_or(|p| p <= ev.ts_ms), "a session's events keep their order");
                    }
                }
            }
        }
        let cli = clap::Command::new("bench").arg(clap::Arg::new("reporting").long("reporting").value_parser(clap::value_parser!(Reporting)));
        assert!(cli.try_get_matches_from(["bench", "--reporting", "sideways"]).unwrap_err().to_string().contains("no-session-ids"));
    }

    /// A tuning world whose pack blocks a few honest customers at 1,500 customers and 3 days.
    const SEED_WITH_HONEST_BLOCKS: u64 = 428;

    #[test]
    fn an_honest_customer_locked_out_is_counted_once_under_what_locked_them_out() {
        let world = generate(&GenConfig { seed: 3, days: 2, customers: 40, staff: 2, ..GenConfig::default() }).expect("a small world");
        let template = world.events.iter().find(|e| e.staff_id.is_none() && e.customer_id.is_some()).expect("a customer event").clone();
        // Eight wrong codes a minute apart, then the right one: the burst rule
        // blocks the customer at the sixth, and the block list refuses the rest.
        let codes = |customer: Option<&str>| -> Vec<haechi_datasets::GeneratedEvent> {
            (0..9).map(|i| {
                let mut e = template.clone();
                e.event_id = format!("code-{i}");
                e.ts_ms = template.ts_ms + i * 60_000;
                e.step = haechi_features::Step::Otp;
                e.result = if i < 8 { haechi_features::Outcome::Failure } else { haechi_features::Outcome::Success };
                e.customer_id = customer.map(str::to_owned);
                e.duration_ms = Some(20_000);
                e
            })
            .collect()
        };
        let events = codes(Some("c-forgetful"));
        let r = decide_dataset(&Config::default(), 0, &Dataset { events, labels: Vec::new() }, None).expect("decided");
        assert_eq!(r.board.honest_customers_blocked, 1, "{:?}", r.benign_flags_by_reason);

        // Reported as a pipeline that names the customer at the login only:
        // the block lands on the customer all the same, and the scoreboard
        // counts them by whom the events were drawn for. By the events as
        // reported, it would count nobody.
        let mut login = template.clone();
        login.event_id = "login".to_owned();
        login.ts_ms = template.ts_ms - 30_000;
        login.step = haechi_features::Step::Login;
        login.result = haechi_features::Outcome::Success;
        login.customer_id = Some("c-forgetful".to_owned());
        let events: Vec<_> = std::iter::once(login).chain(codes(None)).collect();
        let drawn: HashMap<String, Option<String>> = events.iter().map(|e| (e.event_id.clone(), Some("c-forgetful".to_owned()))).collect();
        let data = Dataset { events, labels: Vec::new() };
        let r = decide_dataset(&Config::default(), 0, &data, Some(&drawn)).expect("decided");
        assert_eq!(r.board.honest_customers_blocked, 1, "{:?}", r.benign_flags_by_reason);
        assert_eq!(decide_dataset(&Config::default(), 0, &data, None).expect("decided").board.honest_customers_blocked, 0);
        assert_eq!(r.honest_blocks_by_reason, BTreeMap::from([("rules:brute_force_second_factor".to_owned(), 1)]), "flags: {:?}", r.benign_flags_by_reason);
        // The codes after the block were refused by the block list: flags of
        // their own, but the same customer, first locked out by the rule.
        assert!(r.benign_flags_by_reason.get("blocklist:rules:brute_force_second_factor") >= Some(&3), "{:?}", r.benign_flags_by_reason);

        // On a drawn world with honest customers blocked, the reasons add up to the scoreboard's count.
        let r = run_world(&Config::default(), SEED_WITH_HONEST_BLOCKS, 1500, 3, Reporting::AsDrawn).expect("decided");
        assert!(r.board.honest_customers_blocked > 0, "world {SEED_WITH_HONEST_BLOCKS} blocks some honest customer");
        assert_eq!(r.honest_blocks_by_reason.values().sum::<usize>(), r.board.honest_customers_blocked);

        // Its attack events blocked add up over worlds, apart from those only stepped up.
        let report = summarize(vec![r.clone(), r.clone()], Reporting::AsDrawn);
        for (a, s) in &r.board.attacks {
            assert_eq!(report.blocked_events_by_attack[a], (2 * s.events_blocked, 2 * s.events), "{a}");
        }
        let (blocked, flagged) = r.board.attacks.values().fold((0, 0), |(b, f), s| (b + s.events_blocked, f + (s.event_recall * s.events as f64).round() as usize));
        assert!(blocked > 0 && blocked < flagged, "world {SEED_WITH_HONEST_BLOCKS}: {blocked} attack events blocked of {flagged} flagged");
    }

    #[test]
    fn an_insiders_own_refused_work_is_counted_apart_from_honest_staff() {
        let data = insider_day();
        let r = decide_dataset(&Config::default(), 0, &data, None).expect("decided");
        assert_eq!(r.board.benign_flagged, 1, "the lookup after the export is refused: {:?}", r.benign_flags_by_reason);
        assert_eq!((r.insider_events_flagged, r.honest_staff_blocked), (1, 0));

        // Unlabelled, the same staff member is an honest one refused.
        let unlabelled = Dataset { labels: Vec::new(), ..data };
        let r = decide_dataset(&Config::default(), 0, &unlabelled, None).expect("decided");
        assert_eq!((r.insider_events_flagged, r.honest_staff_blocked), (0, 1));
    }
}
