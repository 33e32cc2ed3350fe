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
    let expected = sample().split(|b| *b == b'\n').filter(|l| !l.is_empty()).count();
    assert!(expected > 1000, "the sample stream is too short to mean anything: {expected} events");
    let mut runs = Vec::new();
    for i in 0..2 {
        let d = dir.path().join(format!("d{i}.jsonl"));
        let a = dir.path().join(format!("a{i}.jsonl"));
        let out = run_haechi(
            &["replay", events.to_str().unwrap(), "--decisions", d.to_str().unwrap(), "--alerts", a.to_str().unwrap()],
            b"",
        );
        assert_eq!(out.status.code(), Some(0), "run {i} failed: {}", String::from_utf8_lossy(&out.stderr));
        let decisions = std::fs::read(&d).unwrap_or_else(|e| panic!("run {i} wrote no decisions file: {e}"));
        let alerts = std::fs::read(&a).unwrap_or_else(|e| panic!("run {i} wrote no alerts file: {e}"));
        // One decision per event of the sample, each a decision.
        let parsed = ndjson(&decisions);
        assert_eq!(parsed.len(), expected, "run {i}: one decision per event");
        assert!(parsed.iter().all(|d| d["event_id"].is_string() && d["decision"].is_string()), "run {i}: not decisions");
        runs.push((decisions, alerts));
    }
    assert!(!runs[0].0.is_empty() && !runs[0].1.is_empty());
    assert!(runs[0] == runs[1], "same input, same decisions and alerts");
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
    // Reverse small blocks of the sample, but only blocks that span no more
    // than the allowed lateness (a block across a quiet night would make its
    // first event late, and a late event is rightly decided as it comes): so
    // every event stays within the allowed lateness, and the decisions must
    // equal those of the sorted stream.
    let good = sample();
    let lines: Vec<&[u8]> = good.split(|b| *b == b'\n').filter(|l| !l.is_empty()).take(1500).collect();
    let sorted: Vec<u8> = lines.iter().flat_map(|l| l.iter().copied().chain([b'\n'])).collect();
    let lateness_ms = haechi_detector::Config::default().features.allowed_lateness.as_millis() as i64;
    let ts = |l: &[u8]| haechi_features::Event::parse(l, 1 << 16).expect("sample event").ts_ms;
    let mut shuffled = Vec::new();
    let mut reversed = 0;
    for chunk in lines.chunks(3) {
        let within = ts(chunk[chunk.len() - 1]) - ts(chunk[0]) <= lateness_ms;
        let order: Vec<&&[u8]> = if within { chunk.iter().rev().collect() } else { chunk.iter().collect() };
        reversed += usize::from(within && chunk.len() > 1);
        for l in order {
            shuffled.extend_from_slice(l);
            shuffled.push(b'\n');
        }
    }
    assert!(reversed > 400, "too few blocks reversed to test anything: {reversed}");
    let a = run_haechi(&["replay", "-"], &sorted);
    let b = run_haechi(&["replay", "-"], &shuffled);
    assert!(a.status.success() && b.status.success());
    let late = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).contains("late (beyond allowed lateness): 0");
    assert!(late(&a) && late(&b), "no event may be late:\n{}", String::from_utf8_lossy(&b.stderr));
    assert_eq!(ndjson(&a.stdout).len(), lines.len());
    let key = |o: &std::process::Output| {
        let mut v: Vec<String> = ndjson(&o.stdout).iter().map(|d| d.to_string()).collect();
        v.sort();
        v
    };
    assert!(key(&a) == key(&b), "reordering within the allowed lateness changed decisions");
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

/// The demo speaks to a person: after the summary, the strongest alert of each rule, with why
/// it fired in words and the values behind it.
#[test]
fn the_demo_ends_with_the_top_alerts_in_words() {
    let out = run_haechi(&["replay", repo_root().join("datasets/sample/events.jsonl").to_str().unwrap()], b"");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let top = stderr.split("top alerts").nth(1).unwrap_or_else(|| panic!("no top alerts after the summary:\n{stderr}"));
    let headlines: Vec<&str> = top.lines().filter(|l| l.contains(" — ") && l.contains(" → ")).collect();
    assert_eq!(headlines.len(), 5, "{top}");
    assert_eq!(top.matches("why: ").count(), 5, "{top}");
    // One per rule, strongest first.
    let rules: std::collections::HashSet<&str> = headlines.iter().map(|l| l.split_whitespace().nth(1).unwrap()).collect();
    assert_eq!(rules.len(), 5, "{top}");
    assert!(headlines[0].trim_start().starts_with("CRITICAL"), "{top}");
}

/// Parsing on a second thread changes nothing: the same decisions, byte for byte, and the same
/// refusals in the same places, as one thread gives on a generated stream with bad lines in it.
#[test]
fn a_replay_parsed_on_a_second_thread_decides_byte_for_byte_as_one_thread() {
    let dir = tempfile::tempdir().unwrap();
    let (events, labels) = (dir.path().join("ev.jsonl"), dir.path().join("lab.jsonl"));
    let out = run_haechi(
        &["generate", "--world", "random", "--world-seed", "2003", "--seed", "5", "--days", "2", "--customers", "3000", "--out", events.to_str().unwrap(), "--labels", labels.to_str().unwrap()],
        b"",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Bad lines among the good ones, so that refusals cross batch boundaries too.
    let text = std::fs::read_to_string(&events).unwrap();
    let mut mixed = String::with_capacity(text.len() + 10_000);
    for (i, line) in text.lines().enumerate() {
        mixed.push_str(line);
        mixed.push('\n');
        if i % 997 == 0 {
            mixed.push_str("{\"event_id\":\"broken\n\n");
        }
    }
    std::fs::write(&events, mixed).unwrap();
    let single = dir.path().join("single.toml");
    std::fs::write(&single, "[pipeline]\nparse_thread = false\n").unwrap();
    let two = run_haechi(&["replay", events.to_str().unwrap()], b"");
    let one = run_haechi(&["--config", single.to_str().unwrap(), "replay", events.to_str().unwrap()], b"");
    assert!(two.status.success() && one.status.success());
    assert!(two.stdout.len() > 1_000_000, "a stream worth the test: {} bytes of decisions", two.stdout.len());
    assert!(two.stdout == one.stdout, "decisions differ between one and two threads");
    let refusals = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).lines().filter(|l| l.starts_with("line ")).map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(refusals(&two), refusals(&one));
    assert!(refusals(&two).len() >= 10, "{:?}", refusals(&two));
}

#[test]
fn a_guessed_1_won_check_that_names_no_customer_is_alerted_and_blocked_as_the_session_s_customer() {
    // A pipeline that names the customer at the login only: eight wrong
    // 1-won checks over eight hours, each after a login with the stolen
    // password, from one phone. The alert and the block name the customer.
    let dir = tempfile::tempdir().unwrap();
    let mut input = String::new();
    for h in 0..8 {
        let session = format!("s{h}");
        input.push_str(&format!(
            r#"{{"event_id":"l{h}","ts":"2026-11-02T{:02}:10:00+09:00","step":"login","result":"success","customer_id":"victim","session_id":"{session}","device_id":"thief","ip":"121.1.2.3"}}"#,
            9 + h
        ));
        input.push('\n');
        input.push_str(&format!(
            r#"{{"event_id":"v{h}","ts":"2026-11-02T{:02}:11:00+09:00","step":"account_verify","result":"failure","session_id":"{session}","device_id":"thief","ip":"121.1.2.3"}}"#,
            9 + h
        ));
        input.push('\n');
    }
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, &input).unwrap();
    let alerts = dir.path().join("alerts.jsonl");
    let out = run_haechi(&["replay", events.to_str().unwrap(), "--alerts", alerts.to_str().unwrap()], b"");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let decisions = ndjson(&out.stdout);
    let last = decisions.iter().find(|d| d["event_id"] == "v7").expect("the last check is decided");
    assert_eq!(last["decision"], "block", "{last}");
    let reasons: Vec<&str> = last["reasons"].as_array().unwrap().iter().filter_map(|r| r["id"].as_str()).collect();
    assert!(reasons.contains(&"customer_from_session"), "the analyst is told whose the event was taken to be: {reasons:?}");
    let alerts = ndjson(&std::fs::read(&alerts).unwrap());
    let brute = alerts.iter().find(|a| a["rule"] == "brute_force_slow_failures").unwrap_or_else(|| panic!("no brute-force alert: {alerts:?}"));
    assert_eq!(brute["entity_kind"], "customer");
    assert_eq!(brute["entity"], "victim", "the alert names the customer the checks were judged as");
}
