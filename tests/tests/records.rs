//! The access records through the real binary: every event recorded, reads recorded, a data
//! subject's own masked view, four-eyes exports, actions as records, and `haechi records verify`.

use std::path::Path;

use haechi_tests::{http, principal, run_haechi, send_as, Server};
use serde_json::Value;

const INGEST: &str = "ingest-token";
const AUDITOR: &str = "auditor-token-of-lee";
const ADMIN: &str = "admin-token-of-park";
const ADMIN2: &str = "admin-token-of-choi";
const ANALYST: &str = "analyst-token-of-kim";
const PORTAL: &str = "portal-token-of-the-app";

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn config(dir: &Path) -> String {
    let text = format!(
        "[server]\nwatch_files = false\n{}{}{}{}{}{}",
        principal("pipeline", "ingest", INGEST),
        principal("lee", "auditor", AUDITOR),
        principal("park", "admin", ADMIN),
        principal("choi", "admin", ADMIN2),
        principal("kim", "analyst", ANALYST),
        principal("bank-app", "subject_portal", PORTAL),
    );
    let cfg = dir.join("haechi.toml");
    std::fs::write(&cfg, text).unwrap();
    cfg.to_str().unwrap().to_owned()
}

/// Events of two customers, and a staff member viewing the first one's record.
fn events() -> String {
    let mut lines = Vec::new();
    for (i, (c, step, result)) in [("alice-7", "login", "success"), ("alice-7", "otp", "failure"), ("bob-3", "login", "success"), ("alice-7", "face_match", "success")].iter().enumerate() {
        lines.push(format!(
            r#"{{"event_id":"e{i}","ts":"2026-11-02T10:00:0{i}+09:00","step":"{step}","result":"{result}","customer_id":"{c}","ip":"203.0.113.{i}","device_id":"dev-{c}","channel":"app","duration_ms":700,"user_agent":"Mozilla/5.0 (Linux; Android 13; SM-S918N) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0 Mobile Safari/537.36"{}}}"#,
            if *result == "failure" { r#","failure_reason":"otp_mismatch""# } else { "" }
        ));
    }
    lines.push(r#"{"event_id":"s1","ts":"2026-11-02T10:00:09+09:00","step":"record_view","result":"success","customer_id":"alice-7","staff_id":"staff-042","records":1,"ip":"10.1.2.3"}"#.into());
    lines.join("\n") + "\n"
}

#[test]
fn reads_are_recorded_subjects_see_their_own_and_exports_need_a_second_admin() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(dir.path());
    let s = Server::try_start_serving(&["--config", &cfg], &["--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()]).unwrap_or_else(|l| panic!("{l}"));
    let a = http();
    let call = |token: &str, method: &str, path: &str, body: Option<&[u8]>| send_as(&a, Some(token), method, &s.url(path), body);

    let (status, text) = call(INGEST, "POST", "/v1/events", Some(events().as_bytes()));
    assert_eq!(status, 200, "{text}");

    // An auditor reads alice's records: access and decision records, each with the fields the law asks for.
    let (status, text) = call(AUDITOR, "GET", "/v1/records?customer_id=alice-7", None);
    assert_eq!(status, 200, "{text}");
    let got = json(&text);
    let got = got.as_array().unwrap();
    let access: Vec<&Value> = got.iter().filter(|r| r["kind"] == "access").collect();
    assert_eq!(access.len(), 4, "three steps and one staff view: {text}");
    assert_eq!(got.iter().filter(|r| r["kind"] == "decision").count(), 4);
    let otp = access.iter().find(|r| r["step"] == "otp").unwrap();
    assert_eq!(otp["method"], "phone");
    assert_eq!(otp["failure_reason"], "otp_mismatch");
    assert_eq!(otp["os"], "Android 13");
    assert!(otp["browser"].as_str().unwrap().starts_with("Chrome"));
    assert!(otp["node"].as_str().is_some_and(|n| !n.is_empty()) && otp["id"].as_str().is_some() && otp["recorded_ms"].as_i64().is_some());
    assert!(!text.contains("bob-3"), "only alice's records");

    // ...and that read is itself a record: who, what filter, how many.
    let (_, text) = call(AUDITOR, "GET", "/v1/records?kind=read", None);
    let reads = json(&text);
    let first = &reads.as_array().unwrap()[0];
    assert_eq!((first["who"]["name"].as_str(), first["via"].as_str(), first["filter"]["customer_id"].as_str(), first["returned"].as_u64()), (Some("lee"), Some("GET /v1/records"), Some("alice-7"), Some(8)));

    // Roles: an analyst may not read records; the portal may not read anyone's but through subject access.
    assert_eq!(call(ANALYST, "GET", "/v1/records", None).0, 403);
    assert_eq!(call(PORTAL, "GET", "/v1/records", None).0, 403);

    // The data subject, through the bank's app: own access records only, masked.
    let (status, text) = call(PORTAL, "GET", "/v1/subjects/alice-7/records", None);
    assert_eq!(status, 200, "{text}");
    let mine = json(&text);
    let rows = mine["records"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{text}");
    assert!(rows.iter().any(|r| r["by"] == "bank staff" && r["step"] == "record_view"), "{text}");
    for hidden in ["staff-042", "bob-3", "10.1.2.3", "score", "decision", "rule"] {
        assert!(!text.contains(hidden), "{hidden} shows in the subject's view: {text}");
    }
    let (_, text) = call(AUDITOR, "GET", "/v1/records?kind=read&customer_id=alice-7", None);
    assert!(json(&text).as_array().unwrap().iter().any(|r| r["via"] == "subject access" && r["who"]["name"] == "bank-app"), "the subject access was recorded: {text}");

    // Exports: requested, not yet served, refused to its own requester, approved by a second admin.
    let (status, text) = call(ADMIN, "POST", "/v1/exports", Some(br#"{"customer_id":"alice-7","format":"csv"}"#));
    assert_eq!(status, 201, "{text}");
    let id = json(&text)["id"].as_str().unwrap().to_owned();
    assert_eq!(call(ADMIN, "GET", &format!("/v1/exports/{id}"), None).0, 202, "pending");
    let (status, text) = call(ADMIN, "POST", &format!("/v1/exports/{id}/approve"), None);
    assert_eq!(status, 403, "self-approval: {text}");
    assert_eq!(call(AUDITOR, "POST", &format!("/v1/exports/{id}/approve"), None).0, 403, "an auditor does not approve");
    let (status, text) = call(ADMIN2, "POST", &format!("/v1/exports/{id}/approve"), None);
    assert_eq!(status, 200, "{text}");
    assert_eq!(json(&text)["decided_by"], "choi");
    assert_eq!(call(ADMIN2, "GET", &format!("/v1/exports/{id}"), None).0, 403, "only the requester fetches it");
    let (status, csv) = call(ADMIN, "GET", &format!("/v1/exports/{id}"), None);
    assert_eq!(status, 200, "{csv}");
    assert!(csv.starts_with("id,seq,kind,event_time") && csv.contains("alice-7") && !csv.contains("bob-3"), "{csv}");
    // Each step is a record.
    let (_, text) = call(AUDITOR, "GET", "/v1/records?kind=export", None);
    let steps: Vec<String> = json(&text).as_array().unwrap().iter().map(|r| format!("{}:{}", r["step"].as_str().unwrap(), r["who"]["name"].as_str().unwrap())).collect();
    assert_eq!(steps, ["requested:park", "self_approval_refused:park", "approved:choi", "downloaded:park"]);

    // An analyst's block is an action record, and a block record.
    let (status, _) = call(ANALYST, "POST", "/v1/blocks", Some(br#"{"scope":"device","key":"farm-9","ttl_s":600,"reason":"device farm"}"#));
    assert_eq!(status, 201);
    let (_, text) = call(AUDITOR, "GET", "/v1/audit", None);
    assert!(json(&text).as_array().unwrap().iter().any(|r| r["action"] == "block_set" && r["who"]["name"] == "kim"), "{text}");
    let (_, text) = call(AUDITOR, "GET", "/v1/records?kind=block", None);
    assert!(json(&text).as_array().unwrap().iter().any(|r| r["change"] == "set" && r["entity"] == "farm-9" && r["by"] == "analyst:kim"), "{text}");
    // The management report of the day: the failed OTP and the step times, a recorded read.
    let (status, text) = call(AUDITOR, "GET", "/v1/reports/summary?from=2026-11-02T00:00:00%2B09:00&to=2026-11-03T00:00:00%2B09:00", None);
    assert_eq!(status, 200, "{text}");
    let report = json(&text);
    let otp = report["steps"].as_array().unwrap().iter().find(|s| s["name"] == "otp").unwrap();
    assert_eq!((otp["attempts"].as_u64(), otp["successes"].as_u64()), (Some(1), Some(0)), "{otp}");
    assert_eq!(report["failure_reasons"][0]["name"], "otp_mismatch");
    assert_eq!(report["records"]["access"], 5);
    assert_eq!(call(ANALYST, "GET", "/v1/reports/summary?from=2026-11-02T00:00:00Z&to=2026-11-03T00:00:00Z", None).0, 403);
    let (_, text) = call(AUDITOR, "GET", "/v1/records?kind=read", None);
    assert!(json(&text).as_array().unwrap().iter().any(|r| r["via"] == "GET /v1/reports/summary"), "{text}");
    assert!(s.stop().success());

    // The same report offline, as one HTML page with its charts' data.
    let html = dir.path().join("report.html");
    let out = run_haechi(&["report", "--data-dir", data.to_str().unwrap(), "--from", "2026-11-02T00:00:00+09:00", "--to", "2026-11-03T00:00:00+09:00", "--format", "html", "--out", html.to_str().unwrap()], b"");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("report-data") && page.contains("otp_mismatch") && page.contains("echarts"), "a page with its data and chart library");

    // Offline: the chain verifies, and a byte changed in a segment is named.
    let out = run_haechi(&["records", "verify", "--data-dir", data.to_str().unwrap()], b"");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("intact"), "{text}");
    let seg = std::fs::read_dir(data.join("records/transaction")).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|e| e == "hrs")).unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let n = bytes.len();
    bytes[n - 10] ^= 0x40;
    std::fs::write(&seg, bytes).unwrap();
    let out = run_haechi(&["records", "verify", "--data-dir", data.to_str().unwrap()], b"");
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("transaction record") && text.contains("altered"), "{text}");
    // Into a reader that stopped (`| head`), the verdict still fails.
    let out = haechi_tests::run_haechi_into_closed_pipe(&["records", "verify", "--data-dir", data.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Killed mid-stream (no shutdown, no flush): after the restart every accepted event has
/// exactly one access record: what the writer had not written is recorded by the recovery,
/// what it had is not recorded again.
#[test]
fn a_crash_neither_loses_nor_doubles_access_records() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(dir.path());
    let start = || Server::try_start_serving(&["--config", &cfg], &["--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()]).unwrap_or_else(|l| panic!("{l}"));
    let a = http();
    let batch = |from: usize, n: usize| -> String {
        (from..from + n)
            .map(|i| format!(r#"{{"event_id":"k{i}","ts":"2026-11-02T10:{:02}:{:02}+09:00","step":"login","result":"success","customer_id":"c{}"}}"#, i / 60 % 60, i % 60, i % 50) + "\n")
            .collect()
    };
    let mut s = start();
    for round in 0..4 {
        let (status, text) = send_as(&a, Some(INGEST), "POST", &s.url("/v1/events"), Some(batch(round * 500, 500).as_bytes()));
        assert_eq!(status, 200, "{text}");
        if round == 1 {
            // Half of them surely written before the kill: the recovery must not record them twice.
            assert_eq!(send_as(&a, Some(AUDITOR), "GET", &s.url("/v1/records?kind=read&limit=1"), None).0, 200);
        }
    }
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    std::mem::forget(s);

    let s = start();
    let (status, text) = send_as(&a, Some(AUDITOR), "GET", &s.url("/v1/records?kind=access&limit=100000"), None);
    assert_eq!(status, 200);
    let records = json(&text);
    let mut ids: Vec<String> = records.as_array().unwrap().iter().map(|r| r["event_id"].as_str().unwrap().to_owned()).collect();
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!((ids.len(), total), (2_000, 2_000), "every event once, none twice");
    assert!(s.stop().success());
    let out = run_haechi(&["records", "verify", "--data-dir", data.to_str().unwrap()], b"");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}
