//! Putting a dataset together: population, staff, incidents, sorting, ids.

use std::io::Write;
use std::str::FromStr;

use haechi_features::{Channel, Outcome, Step};
use rand::Rng;
use serde::{Deserialize, Serialize, Serializer};

use crate::attacks::{play_incident, Attack};
use crate::error::DatasetError;
use crate::honest;
use crate::spec::WorldSpec;
use crate::world::{World, KST_MS};

/// One generated event, in the event contract's wire form.
#[derive(Debug, Clone, Serialize)]
pub struct GeneratedEvent {
    #[serde(skip)]
    pub(crate) seq: u64,
    pub event_id: String,
    #[serde(rename = "ts", serialize_with = "kst_rfc3339")]
    pub ts_ms: i64,
    pub step: Step,
    pub result: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_doc_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub region: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub staff_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records: Option<u64>,
    #[serde(skip)]
    pub label: Option<(Attack, u32)>,
}

/// Event time as the pipeline's clock writes it: RFC 3339 in KST (+09:00).
fn kst_rfc3339<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    let local = haechi_features::format_rfc3339_ms(ms + KST_MS);
    s.serialize_str(&format!("{}+09:00", local.trim_end_matches('Z')))
}

/// One line of the labels file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    pub event_id: String,
    pub attack: Attack,
    pub incident: String,
    /// How the incident was played: `obvious`, or `evasive:<variant>`.
    /// Absent in the fixed world.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// Which attack to play, how many incidents, and how strong.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScenarioSpec {
    pub attack: Attack,
    /// Strength range: each incident draws its strength uniformly from it.
    pub strength: (f64, f64),
}

impl FromStr for ScenarioSpec {
    type Err = String;
    /// `NAME`, `NAME:S` or `NAME:LO-HI`, strengths in 0..=1.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, strength) = s.split_once(':').map_or((s, None), |(n, st)| (n, Some(st)));
        let attack: Attack = name.parse()?;
        let strength = match strength {
            None => (0.0, 1.0),
            Some(st) => {
                let parse = |x: &str| x.trim().parse::<f64>().ok().filter(|v| (0.0..=1.0).contains(v));
                let (lo, hi) = st.split_once('-').unwrap_or((st, st));
                match (parse(lo), parse(hi)) {
                    (Some(lo), Some(hi)) if lo <= hi => (lo, hi),
                    _ => return Err(format!("scenario `{s}`: strength must be S or LO-HI within 0..=1")),
                }
            }
        };
        Ok(ScenarioSpec { attack, strength })
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct GenConfig {
    pub seed: u64,
    pub days: u32,
    pub customers: usize,
    pub staff: usize,
    /// Attacks to play; empty means every attack at full strength range.
    pub scenarios: Vec<ScenarioSpec>,
    /// Incidents per scenario; `None` means two per day of data (at least three).
    pub incidents: Option<u32>,
    /// Start of the first day, ms since the epoch. Must be midnight KST.
    pub start_ms: i64,
    /// The structure of the world; [`WorldSpec::fixed`] by default.
    pub world: WorldSpec,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            seed: 1,
            days: 7,
            customers: 2000,
            staff: 12,
            scenarios: Vec::new(),
            incidents: None,
            // 2026-11-02T00:00:00+09:00, a Monday.
            start_ms: 1_793_545_200_000,
            world: WorldSpec::fixed(),
        }
    }
}

/// A generated stream and its labels.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Sorted by event time.
    pub events: Vec<GeneratedEvent>,
    /// One per attack event, in event order.
    pub labels: Vec<Label>,
}

/// Generate a dataset. Same config, same bytes.
///
/// # Errors
/// [`DatasetError::Config`] when a setting is out of range.
pub fn generate(cfg: &GenConfig) -> Result<Dataset, DatasetError> {
    if cfg.days < 2 || cfg.days > 366 {
        return Err(DatasetError::Config(format!("days = {}: must be 2 to 366", cfg.days)));
    }
    if cfg.customers == 0 || cfg.customers > 10_000_000 {
        return Err(DatasetError::Config(format!("customers = {}: must be 1 to 10,000,000", cfg.customers)));
    }
    if cfg.start_ms.rem_euclid(86_400_000) != 86_400_000 - KST_MS {
        return Err(DatasetError::Config("start must be midnight KST".into()));
    }
    cfg.world.validate()?;
    let mut w = World::new(cfg.seed, cfg.start_ms, cfg.days, cfg.world.clone());
    let with_variants = !cfg.world.is_fixed();
    let customers = honest::customers(&mut w, cfg.customers);
    let staff = honest::staff(&mut w, cfg.staff, &customers);
    let scenarios: Vec<ScenarioSpec> = if cfg.scenarios.is_empty() {
        Attack::ALL.iter().map(|&attack| ScenarioSpec { attack, strength: (0.0, 1.0) }).collect()
    } else {
        cfg.scenarios.clone()
    };
    let per = cfg.incidents.unwrap_or((cfg.days * 2).max(3));
    let mut incident = 0;
    for spec in &scenarios {
        for _ in 0..per {
            incident += 1;
            let s = if spec.strength.0 == spec.strength.1 { spec.strength.0 } else { w.rng.gen_range(spec.strength.0..=spec.strength.1) };
            play_incident(&mut w, spec.attack, s, incident, &customers, &staff);
        }
    }
    let mut events = std::mem::take(&mut w.events);
    let (start, end) = (cfg.start_ms, w.end_ms());
    events.retain(|e| e.ts_ms >= start && e.ts_ms < end);
    events.sort_by_key(|e| (e.ts_ms, e.seq));
    let mut labels = Vec::new();
    for (i, e) in events.iter_mut().enumerate() {
        e.event_id = format!("ev-{:x}-{:07}", cfg.seed, i);
        if let Some((attack, n)) = e.label {
            let variant = if with_variants { w.variants.get(&n).map(|v| (*v).to_owned()) } else { None };
            labels.push(Label { event_id: e.event_id.clone(), attack, incident: format!("{attack}-{n}"), variant });
        }
    }
    Ok(Dataset { events, labels })
}

/// Write any serializable rows as NDJSON.
///
/// # Errors
/// When the writer fails.
pub fn write_ndjson<T: Serialize>(rows: &[T], out: &mut dyn Write) -> Result<(), DatasetError> {
    let mut buf = Vec::with_capacity(512);
    for r in rows {
        buf.clear();
        serde_json::to_writer(&mut buf, r).map_err(std::io::Error::other)?;
        buf.push(b'\n');
        out.write_all(&buf)?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{FieldSpec, Presence};
    use haechi_features::{Event, DEFAULT_MAX_EVENT_BYTES};
    use std::collections::{BTreeSet, HashSet};

    fn small(seed: u64) -> GenConfig {
        GenConfig { seed, days: 4, customers: 300, incidents: Some(3), ..Default::default() }
    }

    fn bytes(d: &Dataset) -> (Vec<u8>, Vec<u8>) {
        let (mut e, mut l) = (Vec::new(), Vec::new());
        write_ndjson(&d.events, &mut e).unwrap();
        write_ndjson(&d.labels, &mut l).unwrap();
        (e, l)
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let a = bytes(&generate(&small(7)).unwrap());
        assert_eq!(a, bytes(&generate(&small(7)).unwrap()));
        assert_ne!(a.0, bytes(&generate(&small(8)).unwrap()).0);
    }

    #[test]
    fn every_event_passes_validation_and_is_sorted() {
        let d = generate(&small(3)).unwrap();
        let (text, _) = bytes(&d);
        let mut last = i64::MIN;
        let mut ids = HashSet::new();
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let e = Event::parse(line, DEFAULT_MAX_EVENT_BYTES).unwrap_or_else(|err| panic!("{err}: {}", String::from_utf8_lossy(line)));
            assert!(e.ts_ms >= last, "not sorted");
            last = e.ts_ms;
            assert!(ids.insert(e.event_id));
        }
    }

    #[test]
    fn labels_name_existing_events_and_every_scenario_is_present() {
        let d = generate(&small(5)).unwrap();
        let ids: HashSet<&str> = d.events.iter().map(|e| e.event_id.as_str()).collect();
        assert!(d.labels.iter().all(|l| ids.contains(l.event_id.as_str())));
        let present: BTreeSet<Attack> = d.labels.iter().map(|l| l.attack).collect();
        assert_eq!(present, Attack::ALL.into_iter().collect());
        let one = generate(&GenConfig { scenarios: vec!["bot:1".parse().unwrap()], ..small(5) }).unwrap();
        assert!(one.labels.iter().all(|l| l.attack == Attack::Bot));
        let incidents: BTreeSet<&str> = one.labels.iter().map(|l| l.incident.as_str()).collect();
        assert_eq!(incidents.len(), 3);
    }

    #[test]
    fn scenario_specs_parse() {
        assert_eq!("bot".parse::<ScenarioSpec>().unwrap().strength, (0.0, 1.0));
        assert_eq!("bot:0.5".parse::<ScenarioSpec>().unwrap().strength, (0.5, 0.5));
        assert_eq!("mule_account:0.2-0.8".parse::<ScenarioSpec>().unwrap().strength, (0.2, 0.8));
        assert!("bot:2".parse::<ScenarioSpec>().is_err());
        assert!("bot:0.9-0.1".parse::<ScenarioSpec>().is_err());
        assert!("teleport".parse::<ScenarioSpec>().unwrap_err().contains("known"));
    }

    /// FNV-1a 64: a hash that does not change between Rust releases.
    fn fnv(bytes: &[u8]) -> u64 {
        bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
    }

    /// The fixed world's bytes, pinned from the generator before worlds were
    /// drawn: a change here changes the shipped sample and every test on it.
    #[test]
    fn fixed_world_bytes_are_pinned() {
        let (e, l) = bytes(&generate(&small(5)).unwrap());
        let got = (fnv(&e), fnv(&l), e.len(), l.len());
        assert_eq!(got, PINNED, "fixed-world output changed: {got:#x?}");
    }

    /// Computed from the generator at 2d491a6 (seed 5, 4 days, 300 customers, 3 incidents each).
    const PINNED: (u64, u64, usize, usize) = (0x4de4_ff2e_424b_adb2, 0x87ce_a12b_62ef_d719, 1_534_116, 88_289);

    fn drawn(world_seed: u64, seed: u64) -> GenConfig {
        GenConfig { world: WorldSpec::random(world_seed), ..small(seed) }
    }

    #[test]
    fn drawn_worlds_differ_in_structure_and_validate() {
        let specs: Vec<WorldSpec> = (1..=8).map(WorldSpec::random).collect();
        assert_eq!(specs[0], WorldSpec::random(1), "a world seed draws one world");
        assert!(specs.iter().all(|s| s.validate().is_ok() && !s.is_fixed()));
        let exits: BTreeSet<u32> = specs.iter().map(|s| s.nat.exits).collect();
        assert!(exits.len() > 3, "NAT exits barely vary: {exits:?}");
        let fields: HashSet<String> = specs.iter().map(|s| format!("{:?}", s.fields)).collect();
        assert!(fields.len() > 3, "field presence barely varies");
        for s in &specs {
            assert!((4..=60).contains(&s.nat.exits));
            assert!((0.3..=0.7).contains(&s.evasive_share));
            let back: WorldSpec = serde_json::from_str(&serde_json::to_string_pretty(s).unwrap()).unwrap();
            assert_eq!(&back, s);
        }
        // Events of drawn worlds pass the contract, and the NAT is the drawn one.
        for ws in [1, 2, 3] {
            let cfg = drawn(ws, 11);
            let d = generate(&cfg).unwrap();
            let (text, _) = bytes(&d);
            for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                Event::parse(line, DEFAULT_MAX_EVENT_BYTES).unwrap_or_else(|err| panic!("world {ws}: {err}: {}", String::from_utf8_lossy(line)));
            }
            let prefixes: HashSet<&str> = cfg.world.nat.prefixes.iter().map(String::as_str).collect();
            let app_v4: Vec<&str> = d.events.iter().filter(|e| e.label.is_none() && e.channel == Some(Channel::App)).filter_map(|e| e.ip.as_deref()).filter(|ip| !ip.contains(':')).collect();
            let on_nat = app_v4.iter().filter(|ip| prefixes.contains(ip.rsplit_once('.').unwrap().0)).count();
            assert!(on_nat * 10 > app_v4.len() * 8, "world {ws}: app traffic is not on the drawn NAT");
        }
    }

    #[test]
    fn drawn_worlds_change_what_events_carry() {
        // A world where returning customers' events always carry the document
        // and never the region, against the fixed world.
        let mut spec = WorldSpec::random(4);
        spec.fields = FieldSpec { id_doc_hash: Presence::Always, account_hash: Presence::OnboardingOnly, region: Presence::Never };
        spec.nat.ipv6_share = 0.5;
        let d = generate(&GenConfig { world: spec, ..small(2) }).unwrap();
        let logins: Vec<&GeneratedEvent> = d.events.iter().filter(|e| e.step == Step::Login && e.label.is_none()).collect();
        assert!(!logins.is_empty() && logins.iter().all(|e| e.id_doc_hash.is_some() && e.region.is_none() && e.account_hash.is_none()));
        assert!(logins.iter().any(|e| e.ip.as_deref().is_some_and(|ip| ip.starts_with("2001:"))));
        let fixed = generate(&small(2)).unwrap();
        assert!(fixed.events.iter().filter(|e| e.step == Step::Login).all(|e| e.id_doc_hash.is_none() && e.region.is_some()));
        assert!(fixed.labels.iter().all(|l| l.variant.is_none()));
    }

    #[test]
    fn same_world_and_seed_same_bytes() {
        let a = bytes(&generate(&drawn(9, 7)).unwrap());
        assert_eq!(a, bytes(&generate(&drawn(9, 7)).unwrap()));
        assert_ne!(a.0, bytes(&generate(&drawn(10, 7)).unwrap()).0, "another world, other bytes");
        assert_ne!(a.0, bytes(&generate(&drawn(9, 8)).unwrap()).0, "another seed, other bytes");
    }

    #[test]
    fn drawn_worlds_play_every_attack_and_evasive_variants() {
        let mut evasive = BTreeSet::new();
        for ws in [1, 2, 3, 4] {
            let d = generate(&drawn(ws, 5)).unwrap();
            let ids: HashSet<&str> = d.events.iter().map(|e| e.event_id.as_str()).collect();
            assert!(d.labels.iter().all(|l| ids.contains(l.event_id.as_str())));
            let present: BTreeSet<Attack> = d.labels.iter().map(|l| l.attack).collect();
            assert_eq!(present, Attack::ALL.into_iter().collect(), "world {ws}");
            for l in &d.labels {
                let v = l.variant.as_deref().expect("drawn worlds name the variant");
                assert!(v == "obvious" || v.starts_with("evasive:"), "{v}");
                if v != "obvious" {
                    evasive.insert((l.attack, v.to_owned()));
                }
            }
            // The labels file still reads as before, variant or not.
            let (_, l) = bytes(&d);
            let first: Label = serde_json::from_slice(l.split(|b| *b == b'\n').next().unwrap()).unwrap();
            assert!(first.variant.is_some());
        }
        let attacks: BTreeSet<Attack> = evasive.iter().map(|(a, _)| *a).collect();
        assert!(attacks.len() >= 6, "evasive variants of only {attacks:?}");
        let old: Label = serde_json::from_str(r#"{"event_id":"e","attack":"bot","incident":"bot-1"}"#).unwrap();
        assert_eq!(old.variant, None);
    }

    #[test]
    fn evasive_variants_keep_their_signal() {
        // Every evasive incident of a few drawn worlds, by its defining signal.
        for ws in [5, 6, 7] {
            let d = generate(&GenConfig { world: WorldSpec { evasive_share: 1.0, ..WorldSpec::random(ws) }, ..small(3) }).unwrap();
            let by_id: std::collections::HashMap<&str, &GeneratedEvent> = d.events.iter().map(|e| (e.event_id.as_str(), e)).collect();
            let mut incidents: std::collections::BTreeMap<&str, Vec<&GeneratedEvent>> = Default::default();
            for l in &d.labels {
                assert!(l.variant.as_deref().unwrap().starts_with("evasive:"));
                incidents.entry(l.incident.as_str()).or_default().push(by_id[l.event_id.as_str()]);
            }
            for (name, evs) in incidents {
                let attack = evs[0].label.unwrap().0;
                let distinct = |f: &dyn Fn(&GeneratedEvent) -> Option<String>| evs.iter().filter_map(|e| f(e)).collect::<HashSet<_>>().len();
                match attack {
                    Attack::IdReuse => assert_eq!(distinct(&|e| e.id_doc_hash.clone()), 1, "{name}"),
                    Attack::MuleAccount => assert_eq!(distinct(&|e| e.account_hash.clone()), 1, "{name}"),
                    Attack::DeviceFarm => {
                        assert_eq!(distinct(&|e| e.device_id.clone()), 1, "{name}");
                        assert!(distinct(&|e| e.customer_id.clone()) >= 3, "{name}");
                    }
                    Attack::Bot => {
                        let quick = evs.iter().filter(|e| matches!(e.step, Step::FaceMatch | Step::Liveness)).all(|e| e.duration_ms.unwrap() <= 700);
                        assert!(quick, "{name}");
                        assert!(evs.iter().all(|e| !crate::world::HEADLESS_AGENTS.contains(&e.user_agent.unwrap())));
                    }
                    Attack::BruteForce => {
                        assert_eq!(distinct(&|e| e.customer_id.clone()), 1, "{name}");
                        assert!(evs.iter().filter(|e| e.result == Outcome::Failure).count() >= 8, "{name}");
                    }
                    Attack::IpMultiIdentity => {
                        let per_ip = distinct(&|e| e.customer_id.clone()) / distinct(&|e| e.ip.clone()).max(1);
                        assert!(per_ip >= 2, "{name}");
                    }
                    Attack::OddHourTakeover => {
                        let hour = (evs[0].ts_ms + KST_MS).rem_euclid(86_400_000) / 3_600_000;
                        assert!(hour >= 22 || (5..7).contains(&hour), "{name} at {hour}");
                        assert!(evs.iter().any(|e| e.step == Step::AccountOpen));
                    }
                    Attack::StaffBulk => {
                        let hour = (evs[0].ts_ms + KST_MS).rem_euclid(86_400_000) / 3_600_000;
                        assert!(!(8..19).contains(&hour), "{name} at {hour}");
                        assert!(evs.iter().all(|e| e.records.unwrap() <= 5));
                    }
                }
            }
        }
    }

    #[test]
    fn staff_overtime_is_honest_off_hours_work() {
        let local_hour = |e: &GeneratedEvent| (e.ts_ms + KST_MS).rem_euclid(86_400_000) / 3_600_000;
        let with = |share: f64, p: f64| {
            let world = WorldSpec { staff: crate::spec::StaffSpec { overtime_share: share, overtime_p: p, ..WorldSpec::random(3).staff }, ..WorldSpec::random(3) };
            generate(&GenConfig { world, ..small(4) }).unwrap()
        };
        let (none, all) = (with(0.0, 0.0), with(1.0, 1.0));
        let off_hours = |d: &Dataset| d.events.iter().filter(|e| e.staff_id.is_some() && e.label.is_none() && !(9..19).contains(&local_hour(e))).map(|e| (local_hour(e), e.staff_id.clone(), e.records)).collect::<Vec<_>>();
        assert_eq!(off_hours(&none), vec![], "without overtime, honest staff work office hours");
        assert!(off_hours(&all).len() >= 20, "every member on every weekday: {:?}", off_hours(&all));
        let late = all.events.iter().filter(|e| e.staff_id.is_some() && e.label.is_none() && local_hour(e) >= 19).count();
        let early = all.events.iter().filter(|e| e.staff_id.is_some() && e.label.is_none() && local_hour(e) < 9).count();
        assert!(late > 0 && early > 0, "late {late}, early {early}");
        assert!(all.events.iter().filter(|e| e.staff_id.is_some() && e.label.is_none()).all(|e| (6..23).contains(&local_hour(e))));
        let mut spec = WorldSpec::random(3);
        spec.staff.overtime_p = 1.5;
        assert!(spec.validate().is_err());
    }

    #[test]
    fn a_bad_world_spec_is_refused() {
        let mut spec = WorldSpec::fixed();
        spec.nat.exits = 0;
        assert!(generate(&GenConfig { world: spec, ..small(1) }).is_err());
        let mut spec = WorldSpec::fixed();
        spec.fields.region = Presence::Sometimes(1.5);
        assert!(generate(&GenConfig { world: spec, ..small(1) }).is_err());
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(generate(&GenConfig { days: 1, ..Default::default() }).is_err());
        assert!(generate(&GenConfig { customers: 0, ..Default::default() }).is_err());
    }
}
