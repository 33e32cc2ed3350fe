//! An analyst's judgement of an alert: set with the token's identity, shown with the alert,
//! recorded as an action, kept across a restart.

use haechi_tests::{http, principal, send_as, Server};
use serde_json::Value;

const INGEST: &str = "ingest-token";
const ANALYST: &str = "analyst-token-of-kim";
const AUDITOR: &str = "auditor-token-of-lee";

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[test]
fn an_alert_is_judged_by_the_tokens_analyst_recorded_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = dir.path().join("haechi.toml");
    std::fs::write(&cfg, format!("[server]\nwatch_files = false\n{}{}{}", principal("pipe", "ingest", INGEST), principal("kim", "analyst", ANALYST), principal("lee", "auditor", AUDITOR))).unwrap();
    let start = || Server::try_start_serving(&["--config", cfg.to_str().unwrap()], &["--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()]).unwrap_or_else(|l| panic!("{l}"));
    let s = start();
    let a = http();
    let call = |s: &Server, token: &str, method: &str, path: &str, body: Option<&[u8]>| send_as(&a, Some(token), method, &s.url(path), body);

    let t0 = now_ms() - 4 * 60_000;
    let events: String = (0..30)
        .map(|i| format!("{{\"event_id\":\"t{i}\",\"ts\":\"{}\",\"step\":\"otp\",\"result\":\"failure\",\"customer_id\":\"tc1\",\"device_id\":\"td1\",\"ip\":\"198.51.100.7\"}}\n", haechi_features::format_rfc3339_ms(t0 + i * 2_000)))
        .collect();
    assert_eq!(call(&s, INGEST, "POST", "/v1/events", Some(events.as_bytes())).0, 200);
    let (_, text) = call(&s, ANALYST, "GET", "/v1/alerts", None);
    let id = json(&text)[0]["id"].as_str().expect("an alert").to_owned();
    let path = format!("/v1/alerts/{id}/triage");

    assert_eq!(call(&s, INGEST, "POST", &path, Some(br#"{"state":"acknowledged"}"#)).0, 403, "ingest may not judge");
    assert_eq!(call(&s, ANALYST, "POST", &path, Some(b"{}")).0, 400, "nothing to change");
    assert_eq!(call(&s, ANALYST, "POST", &path, Some(br#"{"label":"maybe"}"#)).0, 400);
    assert_eq!(call(&s, ANALYST, "POST", "/v1/alerts/0000000000000000/triage", Some(br#"{"state":"resolved"}"#)).0, 404);
    let (st, body) = call(&s, ANALYST, "POST", &path, Some(br#"{"state":"acknowledged"}"#));
    assert_eq!(st, 200, "{body}");
    let (st, body) = call(&s, ANALYST, "POST", &path, Some(br#"{"state":"resolved","label":"false_positive","note":"the customer's own retries"}"#));
    assert_eq!(st, 200, "{body}");

    let (_, text) = call(&s, ANALYST, "GET", "/v1/alerts", None);
    let alert = json(&text).as_array().unwrap().iter().find(|x| x["id"] == id.as_str()).unwrap().clone();
    assert_eq!(alert["triage"]["state"], "resolved");
    assert_eq!(alert["triage"]["label"], "false_positive");
    assert_eq!(alert["triage"]["by"], "kim");
    let (_, audit) = call(&s, AUDITOR, "GET", "/v1/audit", None);
    let judged: Vec<Value> = json(&audit).as_array().unwrap().iter().filter(|r| r["action"] == "alert_triage" && r["key"] == id.as_str()).cloned().collect();
    assert_eq!(judged.len(), 2, "{audit}");
    assert_eq!(judged[1]["before"]["state"], "acknowledged");
    assert_eq!(judged[1]["after"]["note"], "the customer's own retries");
    assert!(s.stop().success());

    // Kept across a restart: rebuilt from the records.
    let s = start();
    let (_, text) = call(&s, ANALYST, "GET", "/v1/alerts", None);
    let alert = json(&text).as_array().unwrap().iter().find(|x| x["id"] == id.as_str()).unwrap().clone();
    assert_eq!((alert["triage"]["label"].as_str(), alert["triage"]["by"].as_str()), (Some("false_positive"), Some("kim")), "{alert}");
    assert!(s.stop().success());
}

/// The floor's judgements go back into the pack and the model: `GET /v1/labels` scores a rule
/// change in `haechi rules backtest --floor-labels`, and `haechi train --floor-labels` leaves
/// the confirmed alerts' events out of what it learns as normal.
#[test]
fn labels_from_the_floor_score_a_rule_change_and_shape_training() {
    const RULE: &str = "rules:\n  - id: many_new_identities_on_one_address\n    description: several new identities onboarding through one address\n    severity: high\n    when: features.event.onboarding_step == 1.0 && features.ip.distinct_new_identities_24h >= MIN\n    action: block\n    scope: ip\n    ttl: 1h\n";
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live.yaml");
    let candidate = dir.path().join("candidate.yaml");
    std::fs::write(&live, RULE.replace("MIN", "3.0")).unwrap();
    std::fs::write(&candidate, RULE.replace("MIN", "5.0")).unwrap();
    let cfg = dir.path().join("haechi.toml");
    std::fs::write(&cfg, format!("[server]\nwatch_files = false\n[rules]\npath = \"{}\"\n[model]\nenabled = false\n{}{}", live.display(), principal("pipe", "ingest", INGEST), principal("kim", "analyst", ANALYST))).unwrap();
    let s = Server::try_start_serving(&["--config", cfg.to_str().unwrap()], &["--listen", "127.0.0.1:0"]).unwrap_or_else(|l| panic!("{l}"));
    let a = http();
    let call = |token: &str, method: &str, path: &str, body: Option<&[u8]>| send_as(&a, Some(token), method, &s.url(path), body);

    // A carrier exit with four new identities (refuted), a proxy with six (confirmed).
    let (nat, proxy) = ("203.0.113.9", "198.51.100.20");
    let t0 = now_ms() - 60_000;
    let events: String = [(nat, 0..4), (proxy, 10..16)]
        .into_iter()
        .flat_map(|(ip, ks)| ks.map(move |k| (ip, k)))
        .map(|(ip, k)| {
            format!(
                "{{\"event_id\":\"fl{k}\",\"ts\":\"{}\",\"step\":\"id_ocr\",\"result\":\"success\",\"customer_id\":\"new{k}\",\"session_id\":\"s{k}\",\"device_id\":\"d{k}\",\"id_doc_hash\":\"doc{k}\",\"ip\":\"{ip}\"}}\n",
                haechi_features::format_rfc3339_ms(t0 + k as i64 * 100)
            )
        })
        .collect();
    assert_eq!(call(INGEST, "POST", "/v1/events", Some(events.as_bytes())).0, 200);
    let alerts = json(&call(ANALYST, "GET", "/v1/alerts", None).1);
    let id_on = |ip: &str| alerts.as_array().unwrap().iter().find(|x| x["entity"] == ip).unwrap_or_else(|| panic!("no alert on {ip}: {alerts}"))["id"].as_str().unwrap().to_owned();
    assert_eq!(call(ANALYST, "POST", &format!("/v1/alerts/{}/triage", id_on(nat)), Some(br#"{"label":"false_positive","note":"carrier NAT"}"#)).0, 200);
    assert_eq!(call(ANALYST, "POST", &format!("/v1/alerts/{}/triage", id_on(proxy)), Some(br#"{"label":"true_positive"}"#)).0, 200);
    let (st, labels) = call(ANALYST, "GET", "/v1/labels", None);
    assert_eq!(st, 200, "{labels}");
    assert_eq!(json(&labels).as_array().unwrap().len(), 2, "{labels}");
    assert!(s.stop().success());
    let labels_file = dir.path().join("labels.json");
    std::fs::write(&labels_file, &labels).unwrap();
    let events_file = dir.path().join("events.jsonl");
    std::fs::write(&events_file, &events).unwrap();

    // The candidate (five identities, not three) drops the refuted alert and keeps the confirmed one.
    let out = haechi_tests::run_haechi(
        &["rules", "backtest", "--rules", candidate.to_str().unwrap(), "--baseline", live.to_str().unwrap(), events_file.to_str().unwrap(), "--floor-labels", labels_file.to_str().unwrap(), "--json"],
        b"",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!((report["rules"][0]["floor_true_positives"].as_u64(), report["rules"][0]["floor_false_positives"].as_u64()), (Some(1), Some(0)), "{report}");
    assert_eq!((report["baseline"]["false_positives_removed"].as_u64(), report["baseline"]["true_positives_lost"].as_u64()), (Some(1), Some(0)), "{report}");

    // Training leaves out the proxy's alerted events (its 3rd to 6th) and keeps the exit's (3rd and 4th).
    let model = dir.path().join("model.json");
    let out = haechi_tests::run_haechi(&["train", events_file.to_str().unwrap(), "--floor-labels", labels_file.to_str().unwrap(), "--out", model.to_str().unwrap(), "--trees", "10", "--sample", "8"], b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("floor labels: 4 events behind confirmed alerts left out, 2 behind refuted alerts kept; 0 labels"), "{stderr}");
}
