//! Detection must not silently get worse: replay generated traffic through
//! the real pipeline and compare the scoreboard with the floors recorded in
//! `tests/floors.json`. Raise the floors when detection improves; never lower
//! them without saying why in the commit.

use std::collections::HashMap;

use haechi_datasets::{generate, score, Attack, GenConfig};
use haechi_detector::{Config, Pipeline};

#[derive(serde::Deserialize)]
struct Floors {
    seed: u64,
    days: u32,
    customers: usize,
    incidents: u32,
    min_incident_recall: f64,
    max_false_positive_rate: f64,
    min_recall_by_attack: HashMap<String, f64>,
}

#[test]
fn detection_stays_above_recorded_floors() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/floors.json")).expect("floors.json");
    let floors: Floors = serde_json::from_str(&text).expect("floors.json parses");
    let data = generate(&GenConfig {
        seed: floors.seed,
        days: floors.days,
        customers: floors.customers,
        incidents: Some(floors.incidents),
        ..GenConfig::default()
    })
    .unwrap();
    let pipeline = Pipeline::new(Config::default()).unwrap();
    let mut scratch = pipeline.scratch();
    let mut decisions = HashMap::new();
    let mut bytes = Vec::new();
    for e in &data.events {
        bytes.clear();
        serde_json::to_writer(&mut bytes, e).unwrap();
        let event = pipeline.parse(&bytes).expect("generated events are valid");
        let p = pipeline.process(&event, &mut scratch).expect("no duplicates");
        decisions.insert(event.event_id.to_string(), p.decision.verdict.as_str().to_owned());
    }
    let events: Vec<haechi_datasets::ScoredEvent> = data.events.iter().map(Into::into).collect();
    let board = score(&events, &data.labels, &decisions);
    println!("{board}");
    assert!(
        board.incident_recall >= floors.min_incident_recall,
        "incident recall {:.3} fell below the floor {:.3}",
        board.incident_recall,
        floors.min_incident_recall
    );
    assert!(
        board.false_positive_rate <= floors.max_false_positive_rate,
        "false-positive rate {:.5} rose above the ceiling {:.5}",
        board.false_positive_rate,
        floors.max_false_positive_rate
    );
    for attack in Attack::ALL {
        let floor = floors.min_recall_by_attack.get(attack.as_str()).copied().unwrap_or(0.0);
        let s = &board.attacks[&attack];
        let recall = s.caught as f64 / s.incidents.max(1) as f64;
        assert!(recall >= floor, "{attack}: incident recall {recall:.3} fell below the floor {floor:.3}");
    }
}

/// `haechi generate`, `haechi replay`, then `haechi eval`, the real binary:
/// the scoreboard reads each event line's address, device, ID document and
/// account, so an ID reused by a second applicant is counted from the first
/// event that ties the applicants, not from the first applicant's
/// onboarding, which looks like anyone's. The figures are checked against
/// a brute-force count made here from the same files.
#[test]
fn eval_counts_detection_from_the_first_telltale() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (events, labels, decisions) = (path("events.jsonl"), path("labels.jsonl"), path("decisions.jsonl"));
    let generated = haechi_tests::run_haechi(
        &["generate", "--seed", "5", "--days", "2", "--customers", "400", "--scenario", "id_reuse", "--incidents", "3", "--out", &events, "--labels", &labels],
        b"",
    );
    assert!(generated.status.success(), "generate failed: {}", String::from_utf8_lossy(&generated.stderr));
    let replayed = haechi_tests::run_haechi(&["replay", &events], b"");
    assert!(replayed.status.success(), "replay failed: {}", String::from_utf8_lossy(&replayed.stderr));
    std::fs::write(&decisions, &replayed.stdout).unwrap();
    let out = haechi_tests::run_haechi(&["eval", &events, &labels, &decisions, "--json"], b"");
    assert!(out.status.success(), "eval failed: {}", String::from_utf8_lossy(&out.stderr));
    let board: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the scoreboard as JSON");
    let reuse = &board["attacks"]["id_reuse"];
    assert_eq!((reuse["incidents"].as_u64(), reuse["caught"].as_u64()), (Some(3), Some(3)), "{board}");
    // `eval --replay` decides the events itself, and must score them the same.
    let rerun = haechi_tests::run_haechi(&["eval", "--replay", &events, &labels, "--json"], b"");
    assert!(rerun.status.success(), "eval --replay failed: {}", String::from_utf8_lossy(&rerun.stderr));
    let rerun: serde_json::Value = serde_json::from_slice(&rerun.stdout).expect("the scoreboard as JSON");
    assert_eq!(rerun, board);

    // The same two figures, counted pairwise over each incident's events.
    let verdict: HashMap<String, String> =
        haechi_tests::ndjson(&replayed.stdout).iter().map(|d| (d["event_id"].as_str().unwrap().to_owned(), d["decision"].as_str().unwrap().to_owned())).collect();
    let incident_of: HashMap<String, String> = haechi_tests::ndjson(&std::fs::read(&labels).unwrap())
        .iter()
        .map(|l| (l["event_id"].as_str().unwrap().to_owned(), l["incident"].as_str().unwrap().to_owned()))
        .collect();
    let mut by_incident: std::collections::BTreeMap<String, Vec<serde_json::Value>> = Default::default();
    for e in haechi_tests::ndjson(&std::fs::read(&events).unwrap()) {
        if let Some(incident) = incident_of.get(e["event_id"].as_str().unwrap()) {
            by_incident.entry(incident.clone()).or_default().push(e);
        }
    }
    let (mut before, mut past) = (Vec::new(), Vec::new());
    // The count below tells identities apart by customer alone: that holds
    // while every event names its customer and its session.
    let named = |e: &serde_json::Value| e["customer_id"].is_string() && e["session_id"].is_string();
    assert!(by_incident.values().flatten().all(named), "an attack event without a customer or a session");
    for evs in by_incident.values() {
        let catch = evs.iter().position(|e| verdict[e["event_id"].as_str().unwrap()] != "allow").expect("every incident caught");
        let tied = |i: usize, j: usize| {
            evs[i]["customer_id"] != evs[j]["customer_id"]
                && ["ip", "device_id", "id_doc_hash", "account_hash"].iter().any(|k| evs[i][k].is_string() && evs[i][k] == evs[j][k])
        };
        let telltale = (0..evs.len()).find(|&j| (0..j).any(|i| tied(i, j))).filter(|&t| t <= catch).unwrap_or(0);
        before.push(catch as f64);
        past.push((catch - telltale) as f64);
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[1]
    };
    let (before, past) = (median(before), median(past));
    assert!(past < before, "the stream should have an incident caught after its telltale: {before} {past}");
    assert_eq!(reuse["median_events_before_catch"].as_f64(), Some(before), "{board}");
    assert_eq!(reuse["median_events_past_telltale"].as_f64(), Some(past), "{board}");

    // Attack events refused (the unit tests in datasets/src/eval.rs tell
    // them apart from those only stepped up; this stream has none).
    let attack_verdicts = || by_incident.values().flatten().map(|e| verdict[e["event_id"].as_str().unwrap()].as_str());
    let blocked = attack_verdicts().filter(|v| *v == "block").count() as u64;
    let allowed = attack_verdicts().filter(|v| *v == "allow").count();
    assert!(blocked > 0 && allowed > 0, "the stream should have attack events blocked and others let through: {blocked} {allowed}");
    assert_eq!(reuse["events_blocked"].as_u64(), Some(blocked), "{board}");
}
