//! `haechi rules test`: the pack it tests is the one the command line names.

use haechi_tests::{failing_pack, run_haechi};

#[test]
fn rules_test_runs_the_pack_named_by_path_by_the_rules_flag_or_by_the_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let pack = failing_pack(dir.path());
    let config = dir.path().join("haechi.toml");
    std::fs::write(&config, format!("[rules]\npath = {:?}\n", pack.to_str().unwrap())).unwrap();
    let (pack, config) = (pack.to_str().unwrap(), config.to_str().unwrap());
    for args in [vec!["rules", "test", pack], vec!["--rules", pack, "rules", "test"], vec!["--config", config, "rules", "test"]] {
        let out = run_haechi(&args, b"");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stdout}");
        assert!(stdout.contains("FAIL  many_failures :: a failure does not fire") && stdout.contains("0 passed, 1 failed"), "{args:?}: {stdout}");
    }
    // Without either, the shipped pack, whose tests pass.
    let out = run_haechi(&["rules", "test"], b"");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains(" 0 failed") && !stdout.contains("many_failures"), "{stdout}");
}

/// `haechi rules backtest` with labels counts the attack events a set blocks,
/// beside its baseline's: a set that turns every block into a step-up keeps
/// its recall and shows the difference only there. The count is checked
/// against the verdicts `haechi replay` gives the same stream.
#[test]
fn rules_backtest_counts_attack_events_blocked_beside_the_baseline() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (events, labels) = (path("events.jsonl"), path("labels.jsonl"));
    let generated = run_haechi(
        &["generate", "--seed", "5", "--days", "2", "--customers", "400", "--scenario", "id_reuse", "--incidents", "3", "--out", &events, "--labels", &labels],
        b"",
    );
    assert!(generated.status.success(), "generate failed: {}", String::from_utf8_lossy(&generated.stderr));
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules/default/ekyc.yaml");
    let pack = std::fs::read_to_string(shipped).unwrap();
    assert!(pack.contains("    action: block\n"));
    let stepping_up = path("stepping_up.yaml");
    // Each rule's block becomes a challenge, and its ttl (a block's only) goes.
    let mut turned = false;
    let lines: Vec<&str> = pack
        .lines()
        .filter_map(|l| {
            if l.starts_with("  - id: ") {
                turned = false;
            }
            match l {
                "    action: block" => {
                    turned = true;
                    Some("    action: challenge")
                }
                _ if turned && l.starts_with("    ttl: ") => None,
                _ => Some(l),
            }
        })
        .collect();
    std::fs::write(&stepping_up, lines.join("\n")).unwrap();

    let replayed = run_haechi(&["replay", &events], b"");
    assert!(replayed.status.success(), "replay failed: {}", String::from_utf8_lossy(&replayed.stderr));
    let attack: std::collections::HashSet<String> =
        haechi_tests::ndjson(&std::fs::read(&labels).unwrap()).iter().map(|l| l["event_id"].as_str().unwrap().to_owned()).collect();
    let blocked = haechi_tests::ndjson(&replayed.stdout).iter().filter(|d| attack.contains(d["event_id"].as_str().unwrap()) && d["decision"] == "block").count() as u64;
    assert!(blocked > 0, "the shipped pack blocks some of the stream's attack events");

    let out = run_haechi(&["rules", "backtest", "--rules", &stepping_up, "--baseline", shipped, &events, &labels, "--json"], b"");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the report as JSON");
    let (now_blocked, attack_events) = (report["summary"]["attack_events_blocked"][0].as_u64().unwrap(), report["summary"]["attack_events_blocked"][1].as_u64());
    assert_eq!(attack_events, Some(attack.len() as u64), "{report}");
    assert_eq!(report["baseline"]["attack_events_blocked"].as_u64(), Some(blocked), "{report}");
    assert!(now_blocked < blocked, "turning the rules' blocks into step-ups blocks fewer attack events: {now_blocked} of {blocked}");

    let same_recall = run_haechi(&["rules", "backtest", "--rules", shipped, &events, &labels, "--json"], b"");
    let shipped_report: serde_json::Value = serde_json::from_slice(&same_recall.stdout).expect("the report as JSON");
    assert_eq!(report["summary"]["incident_recall"], shipped_report["summary"]["incident_recall"], "a step-up is still a catch");
    let text = run_haechi(&["rules", "backtest", "--rules", &stepping_up, "--baseline", shipped, &events, &labels], b"");
    assert!(String::from_utf8_lossy(&text.stdout).contains(&format!("attack events blocked {blocked} → {now_blocked}")), "{}", String::from_utf8_lossy(&text.stdout));
}
