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

/// `haechi generate` then `haechi eval --replay`, the real binary: the
/// scoreboard reads each event line's address, device, ID document and
/// account, so an ID reused by a second applicant is counted from the
/// first event that shows the card again, not from the first applicant's
/// onboarding, which looks like anyone's.
#[test]
fn eval_counts_detection_from_the_first_telltale() {
    let dir = tempfile::tempdir().unwrap();
    let (events, labels) = (dir.path().join("events.jsonl"), dir.path().join("labels.jsonl"));
    let (events_arg, labels_arg) = (events.to_str().unwrap(), labels.to_str().unwrap());
    let generated = haechi_tests::run_haechi(
        &["generate", "--seed", "5", "--days", "2", "--customers", "400", "--scenario", "id_reuse", "--incidents", "3", "--out", events_arg, "--labels", labels_arg],
        b"",
    );
    assert!(generated.status.success(), "generate failed: {}", String::from_utf8_lossy(&generated.stderr));
    let out = haechi_tests::run_haechi(&["eval", "--replay", events_arg, labels_arg, "--json"], b"");
    assert!(out.status.success(), "eval failed: {}", String::from_utf8_lossy(&out.stderr));
    let board: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the scoreboard as JSON");
    let reuse = &board["attacks"]["id_reuse"];
    assert_eq!(reuse["incidents"], 3, "{board}");
    assert_eq!(reuse["caught"], 3, "{board}");
    let before = reuse["median_events_before_catch"].as_f64().expect("caught incidents have a median");
    let past = reuse["median_events_past_telltale"].as_f64().expect("caught incidents have a median");
    // Nothing ties the first applicant's onboarding to anyone: a catch comes at the
    // second applicant at the earliest, whose card is the telltale.
    assert!(before >= 6.0, "caught {before} events in, before a second applicant could show the card: {board}");
    assert!(past < before, "counted from the telltale {past}, from the start {before}: the telltale was not read");
}
