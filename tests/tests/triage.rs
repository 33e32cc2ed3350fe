//! An analyst's judgement of an alert: set with the token's identity, shown with the alert,
//! recorded as an action, kept across a restart.

use haechi_tests::{http, send_as, sha256_hex, Server};
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
    let principal = |name: &str, role: &str, token: &str| format!("[[server.principals]]\nname = \"{name}\"\nrole = \"{role}\"\ntoken_sha256 = \"{}\"\n", sha256_hex(token));
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
