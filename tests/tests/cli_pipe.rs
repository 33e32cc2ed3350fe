//! A report piped into a reader that stops early (`haechi bench worlds | head`)
//! ends the command quietly, as a closed pipe should, instead of a panic.

use std::process::{Command, Stdio};

use haechi_tests::haechi_bin;

#[test]
fn a_report_into_a_closed_pipe_ends_quietly() {
    // Twenty small worlds as JSON are over 64 KiB, more than a pipe holds:
    // the command must meet the closed end whenever it starts writing.
    let mut child = Command::new(haechi_bin())
        .args(["bench", "worlds", "--from", "2000", "--count", "20", "--customers", "300", "--json"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("haechi runs");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("haechi ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
}

/// A closed pipe must not turn a verdict into a quiet success: `haechi rules
/// test` on a pack whose test fails exits 1 whether or not anyone reads its
/// report. (The reader is closed before the pack is loaded, so the report
/// meets the closed end; were it written first, the exit is still the
/// verdict.)
#[test]
fn a_failed_verdict_into_a_closed_pipe_still_fails() {
    let dir = tempfile::tempdir().unwrap();
    let pack = dir.path().join("pack");
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
    let mut child = Command::new(haechi_bin())
        .args(["rules", "test"])
        .arg(&pack)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("haechi runs");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("haechi ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
}
