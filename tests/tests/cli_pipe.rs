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
