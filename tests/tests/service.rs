//! `haechi serve` end to end: the real binary on a free port, every endpoint.

use std::io::BufRead;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use haechi_tests::{http, send, Server};
use serde_json::{json, Value};

fn event(id: &str, second: u32, step: &str, result: &str, extra: &str) -> String {
    format!(r#"{{"event_id":"{id}","ts":"2026-11-02T10:{:02}:{:02}+09:00","step":"{step}","result":"{result}"{extra}}}"#, second / 60, second % 60)
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Poll until `f` is true; the deadline is generous (a loaded machine), the
/// loop stops as soon as it holds.
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

#[test]
fn every_endpoint_answers_and_bad_input_gets_json_errors() {
    let s = Server::start(&[]);
    let a = http();
    let (st, body) = send(&a, "GET", &s.url("/healthz"), None);
    assert_eq!((st, body.as_str()), (200, "ok"));
    assert_eq!(send(&a, "GET", &s.url("/readyz"), None).0, 200);

    // One event.
    let (st, body) = send(&a, "POST", &s.url("/v1/check"), Some(event("c1", 1, "login", "success", r#","customer_id":"k1","ip":"10.9.8.7""#).as_bytes()));
    assert_eq!(st, 200, "{body}");
    let d = json(&body);
    assert_eq!(d["decision"], "allow");
    assert!(d["blocked_by"].is_null() && d["reasons"].is_array() && d["score"].is_number());

    // Bad single events: 400 with a JSON error naming the problem, never a raw resident number.
    for (bad, needle) in [
        (r#"{"event_id":"x","ts":"2026-11-02T10:00:00+09:00","step":"otp","result":"success","colour":"red"}"#.to_owned(), "colour"),
        ("{not json".to_owned(), "malformed JSON"),
        (event("x2", 1, "otp", "success", r#","customer_id":"900101-1234567""#), "900101-1******"),
    ] {
        let (st, body) = send(&a, "POST", &s.url("/v1/check"), Some(bad.as_bytes()));
        assert_eq!(st, 400, "{body}");
        assert!(json(&body)["error"].as_str().unwrap().contains(needle), "{body}");
        assert!(!body.contains("1234567"), "leaked: {body}");
    }
    // A repeated id is a conflict.
    assert_eq!(send(&a, "POST", &s.url("/v1/check"), Some(event("c1", 1, "login", "success", "").as_bytes())).0, 409);

    // A batch with bad lines: good lines processed, bad ones reported by line.
    let batch = [
        event("b1", 2, "login", "success", r#","customer_id":"k2""#),
        "{broken".to_owned(),
        String::new(),
        event("b2", 3, "otp", "success", r#","customer_id":"k2""#),
        event("b3", 4, "otp", "sometimes", ""),
    ]
    .join("\n");
    let (st, body) = send(&a, "POST", &s.url("/v1/events"), Some(batch.as_bytes()));
    assert_eq!(st, 200, "{body}");
    let r = json(&body);
    assert_eq!(r["accepted"], 2);
    let lines: Vec<u64> = r["rejected"].as_array().unwrap().iter().map(|x| x["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, vec![2, 5]);
    assert_eq!(r["decisions"].as_array().unwrap().len(), 2);

    // An oversized body: 413, JSON. Against a server with a small limit, so
    // that the whole request fits one socket buffer: with a multi-megabyte
    // body the server answers and closes before the client has finished
    // sending, and the client's write fails depending on timing (a flake
    // under load). Its own client, so no dead connection stays in a pool.
    let dir = tempfile::tempdir().unwrap();
    let small = dir.path().join("small.toml");
    std::fs::write(&small, "[server]\nmax_body_bytes = 1024\n").unwrap();
    let limited = Server::start(&["--config", small.to_str().unwrap()]);
    let over = vec![b'x'; 1500];
    let (st, body) = send(&http(), "POST", &limited.url("/v1/events"), Some(&over));
    assert_eq!(st, 413, "{body}");
    assert!(json(&body)["error"].as_str().unwrap().contains("over the configured limit"), "{body}");
    assert!(limited.stop().success());

    // The entity API explains what the store holds.
    let (st, body) = send(&a, "GET", &s.url("/v1/entities/customer/k2"), None);
    assert_eq!(st, 200, "{body}");
    assert_eq!(json(&body)["features"]["customer.events_24h"], 2.0);
    assert_eq!(send(&a, "GET", &s.url("/v1/entities/customer/nobody"), None).0, 404);
    assert_eq!(send(&a, "GET", &s.url("/v1/entities/planet/x"), None).0, 400);
    assert_eq!(send(&a, "GET", &s.url("/v1/entities/ip/10.9.8.0"), None).0, 404);
    assert_eq!(send(&a, "GET", &s.url("/v1/entities/subnet/10.9.8.0%2F24"), None).0, 200);

    // Unknown route and bad block requests.
    assert_eq!(send(&a, "GET", &s.url("/v2/nothing"), None).0, 404);
    let (st, body) = send(&a, "POST", &s.url("/v1/blocks"), Some(br#"{"scope":"planet","key":"x","ttl_s":60,"reason":"r"}"#));
    assert_eq!(st, 400);
    assert!(body.contains("unknown scope"));
    assert_eq!(send(&a, "POST", &s.url("/v1/blocks"), Some(br#"{"scope":"ip","key":"not-an-ip","ttl_s":60,"reason":"r"}"#)).0, 400);
    assert_eq!(send(&a, "POST", &s.url("/v1/blocks"), Some(br#"{"scope":"ip","key":"10.1.1.1","ttl":60}"#)).0, 400);
    assert_eq!(send(&a, "DELETE", &s.url("/v1/blocks/ip/10.1.1.1"), None).0, 404);

    // Metrics, named by Prometheus conventions.
    let (st, m) = send(&a, "GET", &s.url("/metrics"), None);
    assert_eq!(st, 200);
    for name in [
        "haechi_events_total{result=\"success\",step=\"login\"}",
        "haechi_events_rejected_total{reason=\"unknown_field\"}",
        "haechi_events_rejected_total{reason=\"resident_number\"}",
        "haechi_decisions_total{decision=\"allow\"}",
        "haechi_stage_seconds_bucket",
        "haechi_http_request_seconds_bucket{route=\"/v1/check\"",
        "haechi_entities{kind=\"customer\"} 2",
        "haechi_feature_history_seconds ",
        // Too few events for a verdict on the session ids: taken as reported.
        "haechi_session_ids_per_step 0",
    ] {
        assert!(m.contains(name), "metrics lack {name}");
    }
    assert!(s.stop().success());
}

#[test]
fn a_brute_force_burst_streams_alerts_blocks_and_can_be_lifted() {
    let s = Server::start(&[]);
    let a = http();
    // The live feed, read on its own thread.
    let (tx, rx) = mpsc::channel::<Value>();
    let stream_url = s.url("/v1/alerts/stream");
    std::thread::spawn(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder().timeout_global(Some(Duration::from_secs(60))).build().into();
        let res = agent.get(&stream_url).call().expect("stream");
        for line in std::io::BufReader::new(res.into_body().into_reader()).lines().map_while(Result::ok) {
            if let Some(data) = line.strip_prefix("data: ") {
                if tx.send(serde_json::from_str(data).unwrap()).is_err() {
                    break;
                }
            }
        }
    });
    // Wait until the stream is attached: a throwaway alert proves it (a new
    // staff member pulling 1500 records at once, an alert on their own scope).
    let mut n = 0;
    let mut first = None;
    eventually("the stream to attach", || {
        n += 1;
        let e = event(&format!("probe{n}"), n, "record_view", "success", &format!(r#","staff_id":"probe-{n}","records":1500,"customer_id":"p{n}""#));
        send(&a, "POST", &s.url("/v1/check"), Some(e.as_bytes()));
        first = rx.recv_timeout(Duration::from_millis(200)).ok();
        first.is_some()
    });

    let fail = |i: u32| event(&format!("bf{i}"), 100 + i, "otp", "failure", r#","customer_id":"victim","ip":"45.1.2.3","device_id":"dx""#);
    let mut last = Value::Null;
    for i in 1..=9 {
        last = json(&send(&a, "POST", &s.url("/v1/check"), Some(fail(i).as_bytes())).1);
    }
    assert_eq!(last["decision"], "block");
    assert_eq!(last["blocked_by"]["scope"], "customer");
    assert!(last["blocked_by"]["set_by"].as_str().unwrap().contains("brute_force_second_factor"));

    // The burst is one folded alert on the stream, with its evidence.
    let alert = loop {
        let a = rx.recv_timeout(Duration::from_secs(60)).expect("alert on the stream");
        if a["rule"] == "brute_force_second_factor" {
            break a;
        }
    };
    assert_eq!(alert["entity"], "victim");
    let evidence: Vec<&str> = alert["evidence"].as_array().unwrap().iter().filter_map(|e| e["feature"].as_str()).collect();
    assert!(evidence.contains(&"customer.code_failures_10m"), "{evidence:?}");
    assert!(alert["id"].as_str().unwrap().len() == 16 && alert["seq"].as_u64().is_some());
    // Folded: repeats counted, not streamed again.
    let recent = json(&send(&a, "GET", &s.url("/v1/alerts?limit=50"), None).1);
    let folded = recent.as_array().unwrap().iter().find(|x| x["rule"] == "brute_force_second_factor").unwrap();
    assert!(folded["count"].as_u64().unwrap() >= 4, "{folded}");
    let since = json(&send(&a, "GET", &s.url(&format!("/v1/alerts?since={}", alert["seq"])), None).1);
    assert!(since.as_array().unwrap().iter().all(|x| x["seq"].as_u64() > alert["seq"].as_u64()));

    // The owner, on a phone the guesses did not come from, is stepped up, not refused.
    let owner = event("own1", 150, "login", "success", r#","customer_id":"victim","ip":"10.9.9.9","device_id":"owners-phone""#);
    let stepped = json(&send(&a, "POST", &s.url("/v1/check"), Some(owner.as_bytes())).1);
    assert_eq!((&stepped["decision"], &stepped["blocked_by"]["scope"], &stepped["blocked_by"]["action"]), (&json!("challenge"), &json!("customer"), &json!("challenge")), "{stepped}");

    // Listed, then lifted by an analyst: the customer's next login goes through.
    let blocks = json(&send(&a, "GET", &s.url("/v1/blocks"), None).1);
    assert!(blocks.as_array().unwrap().iter().any(|b| b["scope"] == "customer" && b["key"] == "victim"));
    assert_eq!(send(&a, "DELETE", &s.url("/v1/blocks/customer/victim"), None).0, 204);
    let after = json(&send(&a, "POST", &s.url("/v1/check"), Some(event("ok1", 200, "login", "success", r#","customer_id":"victim""#).as_bytes())).1);
    assert_eq!(after["decision"], "allow", "{after}");

    let (_, m) = send(&a, "GET", &s.url("/metrics"), None);
    assert!(m.contains("haechi_blocks_set_total{by=\"rule\",scope=\"customer\"} 1"), "{m}");
    assert!(m.contains("haechi_customer_block_stepped_up_total 1"), "{m}");
    assert!(m.contains("haechi_alerts_total{severity=\"high\"}"));
}

#[test]
fn blocks_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("haechi.toml");
    let state = dir.path().join("blocks.json");
    std::fs::write(&cfg, format!("[blocks]\nstate_file = {:?}\n", state.to_str().unwrap())).unwrap();
    let a = http();
    let s = Server::start(&["--config", cfg.to_str().unwrap()]);
    // Who set it comes from the token's principal, never the body: a name in the body is refused.
    let (st, body) = send(&a, "POST", &s.url("/v1/blocks"), Some(br#"{"scope":"device","key":"farm-1","ttl_s":3600,"reason":"seen in a device farm","by":"kim"}"#));
    assert_eq!(st, 400, "{body}");
    assert!(json(&body)["error"].as_str().unwrap().contains("principal"), "{body}");
    let (st, body) = send(&a, "POST", &s.url("/v1/blocks"), Some(br#"{"scope":"device","key":"farm-1","ttl_s":3600,"reason":"seen in a device farm"}"#));
    assert_eq!(st, 201, "{body}");
    // No principals on loopback: the demo's anonymous caller.
    assert_eq!(json(&body)["set_by"], "analyst:anonymous");
    assert!(s.stop().success(), "graceful stop");
    assert!(state.exists());

    let s = Server::start(&["--config", cfg.to_str().unwrap()]);
    let blocks = json(&send(&a, "GET", &s.url("/v1/blocks"), None).1);
    assert_eq!(blocks[0]["key"], "farm-1");
    let d = json(&send(&a, "POST", &s.url("/v1/check"), Some(event("r1", 1, "login", "success", r#","device_id":"farm-1""#).as_bytes())).1);
    assert_eq!(d["decision"], "block");
    assert_eq!(d["blocked_by"]["reason"], "seen in a device farm");
}

#[test]
fn a_config_with_a_typo_or_a_bad_value_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    for (text, needle) in [("[server]\nlisten_addr = \"x\"\n", "listen_addr"), ("[limits]\nip_per_minute = -1\n", "ip_per_minute"), ("[model]\nthreshold = 7.0\n", "model.threshold")] {
        let cfg = dir.path().join("bad.toml");
        std::fs::write(&cfg, text).unwrap();
        let log = Server::try_start(&["--config", cfg.to_str().unwrap()]).err().expect("must not start");
        assert!(log.contains(needle), "{needle} not named in:\n{log}");
    }
}

#[test]
fn principals_guard_the_api_but_not_health_or_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("haechi.toml");
    // The file holds the hash (`printf %s TOKEN | sha256sum`), never the token.
    let hash = haechi_tests::sha256_hex("s3cret-token-for-tests");
    std::fs::write(&cfg, format!("[server]\n[[server.principals]]\nname = \"ops\"\nrole = \"admin\"\ntoken_sha256 = \"{hash}\"\n")).unwrap();
    let s = Server::start(&["--config", cfg.to_str().unwrap()]);
    let a = http();
    let (st, body) = send(&a, "GET", &s.url("/v1/blocks"), None);
    assert_eq!(st, 401);
    assert!(json(&body)["error"].is_string(), "{body}");
    assert_eq!(send(&a, "GET", &s.url("/healthz"), None).0, 200);
    assert_eq!(send(&a, "GET", &s.url("/metrics"), None).0, 200);
    let mut res = a.get(&s.url("/v1/blocks")).header("Authorization", "Bearer s3cret-token-for-tests").call().unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.body_mut().read_to_string().unwrap(), "[]");
}

#[test]
fn the_removed_api_tokens_setting_stops_the_start_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("haechi.toml");
    std::fs::write(&cfg, "[server]\napi_tokens = [\"s3cret-token-for-tests\"]\n").unwrap();
    let log = Server::try_start(&["--config", cfg.to_str().unwrap()]).err().expect("must not start");
    assert!(log.contains("[[server.principals]]") && log.contains("token_sha256") && log.contains("printf %s TOKEN | sha256sum"), "{log}");
}

/// The value of a counter or gauge line in a Prometheus exposition; 0 when
/// the series has not been created yet.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.trim().parse().unwrap_or_else(|e| panic!("{series}: bad value `{v}`: {e}")))
}

const RULE_RELOADS_OK: &str = "haechi_reloads_total{outcome=\"ok\",what=\"rules\"}";
const RULE_RELOADS_ERROR: &str = "haechi_reloads_total{outcome=\"error\",what=\"rules\"}";

fn rule_file(action: &str, field: &str) -> String {
    format!("rules:\n  - id: watch_region\n    severity: low\n    when: {field} == \"KR-50\"\n    action: {action}\n")
}

/// Replace `file` the way editors do (write beside it, then rename), so a
/// reader never sees it half written.
fn replace(file: &std::path::Path, text: &str) {
    let tmp = file.parent().unwrap().parent().unwrap().join(".edit.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, file).unwrap();
}

fn jeju(id: &str, sec: u32) -> String {
    event(id, sec, "login", "success", r#","region":"KR-50""#)
}

#[test]
fn reloading_rules_applies_a_good_edit_refuses_a_bad_one_and_keeps_state() {
    // Reloads come from POST /v1/reload only: no file watcher, no timing.
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let file = rules.join("mine.yaml");
    std::fs::write(&file, rule_file("challenge", "event.region")).unwrap();
    let cfg = dir.path().join("haechi.toml");
    std::fs::write(&cfg, "[server]\nwatch_files = false\n").unwrap();
    let s = Server::start(&["--config", cfg.to_str().unwrap(), "--rules", rules.to_str().unwrap()]);
    let a = http();
    let check = |body: &str| json(&send(&a, "POST", &s.url("/v1/check"), Some(body.as_bytes())).1);
    let reloads = || {
        let m = send(&a, "GET", &s.url("/metrics"), None).1;
        (metric(&m, RULE_RELOADS_OK), metric(&m, RULE_RELOADS_ERROR))
    };
    assert_eq!(check(&jeju("j1", 1))["decision"], "challenge");

    // State that a reload must not reset: a customer with three events.
    for i in 0..3 {
        let d = check(&event(&format!("k{i}"), 10 + i, "login", "success", r#","customer_id":"keeper","ip":"10.20.30.40""#));
        assert!(d["decision"].is_string(), "{d}");
    }
    let entity = |a: &ureq::Agent| {
        let (st, body) = send(a, "GET", &s.url("/v1/entities/customer/keeper"), None);
        assert_eq!(st, 200, "the customer must exist: {body}");
        json(&body)["features"].clone()
    };
    let before = entity(&a);
    assert_eq!(before["customer.events_24h"], 3.0, "{before}");
    assert_eq!(reloads(), (0.0, 0.0));

    // A good edit: applied.
    std::fs::write(&file, rule_file("alert", "event.region")).unwrap();
    let (st, body) = send(&a, "POST", &s.url("/v1/reload"), None);
    assert_eq!(st, 200, "{body}");
    assert!(json(&body)["rules"].as_str().unwrap().starts_with("ok"), "{body}");
    assert_eq!(reloads(), (1.0, 0.0));
    assert_eq!(entity(&a), before, "a reload must not reset state");
    assert_eq!(check(&jeju("j2", 2))["decision"], "allow");

    // A bad edit (a misspelt field): refused, naming it; the previous rule keeps running.
    std::fs::write(&file, rule_file("challenge", "event.regoin")).unwrap();
    let (st, body) = send(&a, "POST", &s.url("/v1/reload"), None);
    assert_eq!(st, 200, "{body}");
    assert!(body.contains("refused") && body.contains("event.regoin"), "{body}");
    assert_eq!(reloads(), (1.0, 1.0));
    assert_eq!(entity(&a), before, "a refused reload must not reset state");
    assert_eq!(check(&jeju("j3", 3))["decision"], "allow", "still the previous (alert) rule");
    assert!(s.stop().success());
}

#[test]
fn the_file_watcher_reloads_an_edited_rule_file() {
    // The watcher path itself (inotify, or polling where it cannot be had).
    // Waits on the reload counter, never on a fixed sleep; the deadline is
    // long because a loaded machine may take a while, the wait ends as soon
    // as the reload is counted.
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    let file = rules.join("mine.yaml");
    std::fs::write(&file, rule_file("challenge", "event.region")).unwrap();
    let s = Server::start(&["--rules", rules.to_str().unwrap()]);
    let a = http();
    // The first answer also proves the watch is in place: it is set up before
    // the server accepts requests.
    assert_eq!(json(&send(&a, "POST", &s.url("/v1/check"), Some(jeju("j1", 1).as_bytes())).1)["decision"], "challenge");
    let ok = || metric(&send(&a, "GET", &s.url("/metrics"), None).1, RULE_RELOADS_OK);
    assert_eq!(ok(), 0.0);

    replace(&file, &rule_file("alert", "event.region"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while ok() < 1.0 {
        assert!(Instant::now() < deadline, "the watcher did not reload within 60 s; server log:\n{}", s.log.lock().unwrap());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(json(&send(&a, "POST", &s.url("/v1/check"), Some(jeju("j2", 2).as_bytes())).1)["decision"], "allow");
    assert!(s.stop().success());
}

/// Start `haechi serve` with `args` and an environment; (still running after
/// a few seconds, stderr). A server that runs is stopped.
fn serve_outcome(args: &[&str], key: Option<&str>) -> (bool, String) {
    use std::io::Read;
    let mut cmd = std::process::Command::new(haechi_tests::haechi_bin());
    cmd.arg("serve").args(args).arg("--memory-only").env_remove("HAECHI_HASH_KEY").stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    if let Some(k) = key {
        cmd.env("HAECHI_HASH_KEY", k);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut seen = String::new();
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            let _ = tx.send(seen.clone());
        }
    });
    let mut log = String::new();
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            std::thread::sleep(std::time::Duration::from_millis(100));
            while let Ok(l) = rx.try_recv() {
                log = l;
            }
            return (false, log);
        }
        while let Ok(l) = rx.try_recv() {
            log = l;
        }
        if log.contains("listening on ") || std::time::Instant::now() > deadline {
            let _ = std::process::Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let _ = child.wait();
            return (true, log);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn the_demo_hash_key_is_refused_off_loopback_and_a_configured_key_is_taken() {
    // `--insecure` answers the open-API check (no principals here), so what is tested is the key.
    let (running, log) = serve_outcome(&["--listen", "0.0.0.0:0", "--insecure"], None);
    assert!(!running, "serve must refuse the demo key on 0.0.0.0:\n{log}");
    assert!(log.contains("built-in entity-hash key") && log.contains("HAECHI_HASH_KEY"), "{log}");
    let (running, log) = serve_outcome(&["--listen", "0.0.0.0:0", "--insecure"], Some("not-a-key"));
    assert!(!running && log.contains("32 hex digits") && !log.contains("not-a-key"), "a malformed key stops the start without being echoed:\n{log}");
    let (running, log) = serve_outcome(&["--listen", "0.0.0.0:0", "--insecure"], Some("00112233445566778899aabbccddeeff"));
    assert!(running && log.contains("environment variable HAECHI_HASH_KEY"), "{log}");
    let (running, log) = serve_outcome(&["--listen", "0.0.0.0:0", "--insecure", "--allow-demo-key"], None);
    assert!(running, "{log}");
    let (running, log) = serve_outcome(&["--listen", "127.0.0.1:0"], None);
    assert!(running && log.contains("demo key"), "{log}");
}

#[test]
fn a_spray_past_the_entity_cap_is_evicted_counted_and_logged_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("haechi.toml");
    std::fs::write(&cfg, "[features.max_entities]\ndevice = 64\n").unwrap();
    let s = Server::start(&["--config", cfg.to_str().unwrap()]);
    let a = http();
    let batch: String = (0..500).map(|i| event(&format!("sp{i}"), i % 600, "login", "failure", &format!(r#","device_id":"spray-{i}""#)) + "\n").collect();
    let (st, body) = send(&a, "POST", &s.url("/v1/events"), Some(batch.as_bytes()));
    assert_eq!(st, 200, "{body}");
    assert_eq!(json(&body)["accepted"], 500);
    eventually("evictions in the metrics", || {
        let m = send(&a, "GET", &s.url("/metrics"), None).1;
        metric(&m, "haechi_entities_evicted_total{kind=\"device\"}") >= 400.0 && metric(&m, "haechi_entities{kind=\"device\"}") <= 72.0
    });
    eventually("the eviction warning", || s.log.lock().unwrap().contains("entity cap reached"));
    let log = s.log.lock().unwrap().clone();
    assert_eq!(log.matches("entity cap reached").count(), 1, "{log}");
    assert!(log.contains("device"), "{log}");
}

/// The binary turns transparent huge pages off for itself (BENCHMARKS.md,
/// "Throughput, a fifth session"): with them, a fault in the growing store
/// zeroed 2 MiB, and `/v1/check`'s p99.9 was four times as long. The kernel
/// reports the setting in the process's status.
#[cfg(target_os = "linux")]
#[test]
fn the_service_runs_without_transparent_huge_pages() {
    let thp = |pid: String| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
        status.lines().find_map(|l| l.strip_prefix("THP_enabled:")).map(|v| v.trim().to_owned())
    };
    // Only where this test process has huge pages (it keeps the default)
    // would a server that did nothing show them too. A kernel before 5.0
    // reports nothing, one without THP shows 0 for everyone, and a parent
    // may have turned them off for the whole process tree.
    if thp("self".into()).as_deref() != Some("1") {
        return;
    }
    let s = Server::start(&[]);
    assert_eq!(thp(s.child.id().to_string()).as_deref(), Some("0"), "the server's THP_enabled");
    assert!(s.stop().success());
}
