//! A report piped into a reader that stops early (`haechi bench worlds | head`)
//! ends the command quietly, as a closed pipe should, instead of a panic; and
//! a verdict still comes out in the exit code.

use haechi_tests::{failing_pack, run_haechi_into_closed_pipe};

#[test]
fn a_report_into_a_closed_pipe_ends_quietly() {
    // Twenty small worlds as JSON are over 64 KiB, more than a pipe holds:
    // the command must meet the closed end whenever it starts writing.
    let out = run_haechi_into_closed_pipe(&["bench", "worlds", "--from", "2000", "--count", "20", "--customers", "300", "--json"]);
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
    let pack = failing_pack(dir.path());
    let out = run_haechi_into_closed_pipe(&["rules".as_ref(), "test".as_ref(), pack.as_os_str()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
}
