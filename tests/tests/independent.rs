//! The default pack on traffic of a generator that is not ours
//! (`datasets/independent/gen.py`, written from the event contract alone):
//! every line it writes is accepted, every event decided, and detection does
//! not fall back below what it was when this guard was set. The figures are
//! far from the product's goals (see BENCHMARKS.md, "A generator that was not
//! ours"); this only stops tuning on our own worlds from silently costing
//! more on another's. Seeds 31–33 are guards, never used to choose a change.
//!
//! Needs `python3` (standard library only), which `.ci/run` has. The guard
//! was set with Python 3.11; a Python whose `random` draws differently for a
//! seed would give other worlds of the same kind, which the margins are meant
//! to absorb, not to hide a regression.

use std::process::Command;

/// Pooled over the three worlds when the guard was set: 109 of 14,116 benign
/// events flagged (0.77%), 81 of 105 incidents caught. The build before the
/// sitting that set it flagged 126 (0.89%) and caught 82. Lowered when the
/// population's hours stopped reading a new install's first day as quiet:
/// 88 flagged (0.62%), 81 caught; the build before flagged 106 (0.75%).
/// With the credential-stuffing and rare-region rules of the same sitting:
/// 88 flagged, 82 caught. Lowered again when an existing customer's
/// further account after their own login stopped being asked for two
/// methods, a second application on one card and phone became an alert,
/// and a sensitive step on a new phone asked for a quiet hour: 36 flagged
/// (0.26%), 82 caught; with the rule for an insider just past the shift, 83
/// caught (0.79); with the cold-start takeover judged on a new install's
/// first night, 40 flagged (0.28%), 88 caught (0.84); with a slow proxy's
/// third fresh identity stepped up, 45 flagged (0.32%), 91 caught (0.87);
/// with a one-device address left to the device rules, 41 flagged (0.29%).
/// The recall floor was raised from 0.72 with them. With a channel's new
/// devices weighed, the bank's country as a region prior and a staff
/// member's own pace today: 41 flagged, 94 caught (0.895); the floor rose
/// to 0.86 with them. With a stranger's failure at a person's pace spared
/// by the stuffing rule: 39 flagged (0.28%), 94 caught. With device farms
/// blocked only while they move between exits: 32 flagged (0.23%), 94
/// caught; with an insider's pace in customers per ten minutes and a device
/// new to the store at a sensitive step: 32 flagged, 95 caught (0.905);
/// the flag ceiling fell to 0.34% (48 events) and the recall floor rose to
/// 0.88 (93 caught) with them. Each figure was measured after its change
/// was chosen on other seeds; none was chosen here.
const MAX_BENIGN_FLAG_RATE: f64 = 0.0034;
const MIN_INCIDENT_RECALL: f64 = 0.88;

#[test]
fn another_generators_traffic_is_accepted_and_detection_does_not_fall_back() {
    let dir = tempfile::tempdir().unwrap();
    let generator = haechi_tests::repo_root().join("datasets/independent/gen.py");
    let (mut benign, mut flagged, mut incidents, mut caught) = (0u64, 0u64, 0u64, 0u64);
    for seed in ["31", "32", "33"] {
        let events = dir.path().join(format!("ev{seed}.jsonl"));
        let labels = dir.path().join(format!("lab{seed}.jsonl"));
        let generated = Command::new("python3")
            .arg(&generator)
            .args(["--seed", seed, "--days", "2", "--customers", "1500", "--out"])
            .arg(&events)
            .arg("--labels")
            .arg(&labels)
            .output()
            .expect("python3 runs the independent generator (.ci/run has it)");
        assert!(generated.status.success(), "gen.py failed: {}", String::from_utf8_lossy(&generated.stderr));

        let (events, labels) = (events.to_str().unwrap(), labels.to_str().unwrap());
        let replayed = haechi_tests::run_haechi(&["replay", events], b"");
        assert!(replayed.status.success(), "replay failed: {}", String::from_utf8_lossy(&replayed.stderr));
        let summary = String::from_utf8_lossy(&replayed.stderr);
        let lines = std::fs::read_to_string(events).unwrap().lines().count();
        assert!(summary.contains(&format!("accepted:        {lines}")) && summary.contains("rejected:        0"), "seed {seed}: every line of another pipeline's contract is accepted:\n{summary}");

        let out = haechi_tests::run_haechi(&["eval", "--replay", events, labels, "--json"], b"");
        assert!(out.status.success(), "eval failed: {}", String::from_utf8_lossy(&out.stderr));
        let board: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the scoreboard as JSON");
        assert_eq!(board["undecided"].as_u64(), Some(0), "seed {seed}: {board}");
        let count = |k: &str| board[k].as_u64().unwrap_or_else(|| panic!("{k} in {board}"));
        benign += count("benign_events");
        flagged += count("benign_flagged");
        incidents += count("incidents");
        caught += count("incidents_caught");
        println!("seed {seed}: {} of {} benign flagged, {} of {} incidents caught", count("benign_flagged"), count("benign_events"), count("incidents_caught"), count("incidents"));
    }
    let (rate, recall) = (flagged as f64 / benign as f64, caught as f64 / incidents as f64);
    println!("pooled: benign flag rate {rate:.4}, incident recall {recall:.3}");
    assert!(benign > 10_000 && incidents > 90, "the worlds are as large as when the guard was set: {benign} benign, {incidents} incidents");
    assert!(rate <= MAX_BENIGN_FLAG_RATE, "benign flag rate {rate:.4} rose above {MAX_BENIGN_FLAG_RATE}");
    assert!(recall >= MIN_INCIDENT_RECALL, "incident recall {recall:.3} fell below {MIN_INCIDENT_RECALL}");
}
