//! `haechi replay` end to end: the real binary on the shipped sample stream
//! with broken lines mixed in.

use std::collections::HashSet;

use haechi_tests::{ndjson, repo_root, run_haechi};

fn sample() -> Vec<u8> {
    std::fs::read(repo_root().join("datasets/sample/events.jsonl")).expect("sample stream")
}

#[test]
fn replays_the_sample_with_broken_lines_mixed_in() {
    let good = sample();
    let good_lines: Vec<&[u8]> = good.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    let broken: Vec<Vec<u8>> = vec![
        b"{not json".to_vec(),
        br#"{"event_id":"x1","ts":"2026-11-02T10:00:00+09:00","step":"otp","result":"success","colour":"red"}"#.to_vec(),
        br#"{"event_id":"x2","ts":"yesterday","step":"otp","result":"success"}"#.to_vec(),
        br#"{"event_id":"x3","ts":"2026-11-02T10:00:00+09:00","step":"otp","result":"success","customer_id":"900101-1234567"}"#.to_vec(),
        br#"{"event_id":"x4","ts":"2026-11-02T10:00:00+09:00","step":"otp","result":"maybe"}"#.to_vec(),
        vec![0xff, 0xfe, 0x00],
        format!(r#"{{"event_id":"x5","ts":"2026-11-02T10:00:00+09:00","step":"otp","result":"success","user_agent":"{}"}}"#, "A".repeat(40_000)).into_bytes(),
        br#"{"event_id":"x6","ts":"2026-11-02T10:00:00+09:00","step":"otp","result":"success","duration_ms":"900101-1234567"}"#.to_vec(),
    ];
    // Interleave: a broken line after every 500 good ones, plus a duplicate id.
    let mut input = Vec::new();
    let mut expected_errors = Vec::new();
    let mut line_no = 0usize;
    let mut broken_iter = broken.iter();
    for (i, l) in good_lines.iter().enumerate() {
        input.extend_from_slice(l);
        input.push(b'\n');
        line_no += 1;
        if i % 500 == 499 {
            if let Some(b) = broken_iter.next() {
                input.extend_from_slice(b);
                input.push(b'\n');
                line_no += 1;
                expected_errors.push(line_no);
            }
        }
    }
    // A retry of an event already sent, shortly after the original.
    input.extend_from_slice(good_lines[good_lines.len() - 3]);
    input.push(b'\n');
    line_no += 1;
    expected_errors.push(line_no);
    assert_eq!(expected_errors.len(), broken.len() + 1, "sample too short to mix in every broken line");

    let out = run_haechi(&["replay", "-"], &input);
    assert!(out.status.success(), "replay failed: {}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);

    // One decision per valid event, every id once, each in the contract's shape.
    let decisions = ndjson(&out.stdout);
    assert_eq!(decisions.len(), good_lines.len());
    let ids: HashSet<&str> = decisions.iter().map(|d| d["event_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), good_lines.len());
    for d in &decisions {
        assert!(matches!(d["decision"].as_str(), Some("allow" | "challenge" | "block")));
        assert!(d["score"].is_number());
        assert!(d["reasons"].is_array());
    }
    assert!(decisions.iter().any(|d| d["decision"] != "allow"), "the sample's brute-force bursts should be caught");

    // Every bad line reported by number, naming the problem; no raw resident number anywhere.
    for n in &expected_errors {
        assert!(stderr.contains(&format!("line {n}: ")), "no error for line {n}:\n{stderr}");
    }
    assert!(stderr.contains("unknown field `colour`"));
    assert!(stderr.contains("over the 16384-byte limit"));
    assert!(stderr.contains("duplicate event_id"));
    assert!(stderr.contains("900101-1******"));
    assert!(!stderr.contains("1234567"), "raw resident number leaked:\n{stderr}");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("1234567"));

    // The summary.
    assert!(stderr.contains(&format!("events read:     {}", good_lines.len() + expected_errors.len())), "{stderr}");
    assert!(stderr.contains(&format!("accepted:        {}", good_lines.len())));
    assert!(stderr.contains(&format!("rejected:        {}", expected_errors.len())));
    assert!(stderr.contains("resident_number"));
    assert!(stderr.contains("events/s:"));
}

#[test]
fn replay_is_deterministic_and_writes_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let events = repo_root().join("datasets/sample/events.jsonl");
    let mut runs = Vec::new();
    for i in 0..2 {
        let d = dir.path().join(format!("d{i}.jsonl"));
        let a = dir.path().join(format!("a{i}.jsonl"));
        let out = run_haechi(
            &["replay", events.to_str().unwrap(), "--decisions", d.to_str().unwrap(), "--alerts", a.to_str().unwrap()],
            b"",
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        runs.push((std::fs::read(d).unwrap(), std::fs::read(a).unwrap()));
    }
    assert_eq!(runs[0], runs[1], "same input, same decisions and alerts");
    let alerts = ndjson(&runs[0].1);
    assert!(!alerts.is_empty());
    for a in &alerts {
        assert_eq!(a["id"].as_str().unwrap().len(), 16);
        assert!(a["count"].as_u64().unwrap() >= 1);
        assert!(!a["evidence"].as_array().unwrap().is_empty(), "alerts carry evidence");
    }
}

#[test]
fn out_of_order_input_is_decided_in_event_time_order() {
    // Reverse small blocks of the sample where the whole block lies within a
    // minute: every event then stays well within the allowed lateness (5
    // minutes), so the decisions must equal those of the sorted stream. (A
    // block spanning a quiet night gap would make its first event later than
    // the lateness, which is decided as late, by design.)
    let good = sample();
    let lines: Vec<&[u8]> = good.split(|b| *b == b'\n').filter(|l| !l.is_empty()).take(1500).collect();
    let sorted: Vec<u8> = lines.iter().flat_map(|l| l.iter().copied().chain([b'\n'])).collect();
    let ts = |l: &[u8]| haechi_features::Event::parse(l, 1 << 16).unwrap().ts_ms;
    let mut shuffled = Vec::new();
    let mut reversed_blocks = 0;
    for chunk in lines.chunks(3) {
        let within_a_minute = ts(chunk[chunk.len() - 1]) - ts(chunk[0]) < 60_000;
        reversed_blocks += usize::from(within_a_minute);
        let order: Vec<&&[u8]> = if within_a_minute { chunk.iter().rev().collect() } else { chunk.iter().collect() };
        for l in order {
            shuffled.extend_from_slice(l);
            shuffled.push(b'\n');
        }
    }
    assert!(reversed_blocks > 100, "the test must actually reorder: {reversed_blocks} blocks");
    assert_ne!(sorted, shuffled);
    let a = run_haechi(&["replay", "-"], &sorted);
    let b = run_haechi(&["replay", "-"], &shuffled);
    let key = |o: &std::process::Output| {
        let mut v: Vec<String> = ndjson(&o.stdout).iter().map(|d| d.to_string()).collect();
        v.sort();
        v
    };
    assert_eq!(key(&a), key(&b));
}

#[test]
fn a_config_with_a_typo_fails_at_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("haechi.toml");
    std::fs::write(&cfg, "[features]\nshort_windw = \"10m\"\n").unwrap();
    let out = run_haechi(&["--config", cfg.to_str().unwrap(), "replay", "-"], b"");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("short_windw"));
}

#[test]
fn a_reader_that_stops_early_ends_the_replay_quietly() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(haechi_tests::haechi_bin())
        .args(["replay", repo_root().join("datasets/sample/events.jsonl").to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut first).unwrap();
    // The reader goes away after one line, as `| head -1` would.
    let out = child.wait_with_output().unwrap();
    assert!(first.contains("\"decision\""), "{first}");
    assert!(out.status.success(), "exit {:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("Broken pipe"));
}
