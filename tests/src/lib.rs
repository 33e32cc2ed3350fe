//! Helpers for the end-to-end tests in `tests/tests/`: finding (or building)
//! the real `haechi` binary and running it.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

/// Path of the `haechi` binary of the same build profile as the running test.
/// `cargo test --workspace` builds it; if it is missing, build it once.
pub fn haechi_bin() -> PathBuf {
    // target/<profile>/deps/<test-exe> → target/<profile>/haechi
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(|d| d.parent()).expect("target/<profile>").to_path_buf();
    let bin = profile_dir.join(format!("haechi{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.args(["build", "-p", "haechi-detector", "--bin", "haechi"]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build");
        assert!(status.success(), "building haechi failed");
    }
    bin
}

/// Run `haechi` with `args`, feeding `stdin`.
pub fn run_haechi(args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(haechi_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting haechi");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("haechi output");
    writer.join().expect("stdin writer");
    out
}

/// The repository root (for the shipped sample data).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("repo root").to_path_buf()
}

/// Parse NDJSON output into values.
pub fn ndjson(bytes: &[u8]) -> Vec<serde_json::Value> {
    bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap_or_else(|e| panic!("bad output line {e}: {}", String::from_utf8_lossy(l))))
        .collect()
}
