//! `haechi rules test`: the pack it tests is the one the command line names.

use haechi_tests::run_haechi;

/// A pack of one rule whose one test expects the wrong answer.
fn failing_pack(dir: &std::path::Path) -> std::path::PathBuf {
    let pack = dir.join("pack");
    std::fs::create_dir(&pack).unwrap();
    std::fs::write(
        pack.join("mine.yaml"),
        r#"rules:
  - id: many_failures
    description: a test that expects the wrong answer
    severity: low
    when: event.result == "failure"
    action: alert
    tests:
      - name: a failure does not fire (wrong on purpose)
        events:
          - {step: otp, result: failure, customer_id: c1}
        expect: no_fire
"#,
    )
    .unwrap();
    pack
}

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
