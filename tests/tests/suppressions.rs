//! An analyst snoozes one rule for one address: the block that rule set is
//! lifted, the rule no longer challenges, blocks or alerts there (another
//! address still is), the suppression is listed with what it swallowed,
//! recorded, kept across a restart, and ended early on request.

use haechi_tests::{http, new_identities_config, onboarding, send_as, Server};
use serde_json::Value;

const INGEST: &str = "ingest-token";
const ANALYST: &str = "analyst-token-of-kim";
const AUDITOR: &str = "auditor-token-of-lee";

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

fn verdicts(body: &str) -> Vec<String> {
    json(body)["decisions"].as_array().unwrap().iter().map(|d| d["decision"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn a_rule_snoozed_for_one_address_lifts_its_block_and_stays_quiet_there_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = new_identities_config(dir.path(), &[("pipe", "ingest", INGEST), ("kim", "analyst", ANALYST), ("lee", "auditor", AUDITOR)]);
    let start = || Server::try_start_serving(&["--config", cfg.to_str().unwrap()], &["--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()]).unwrap_or_else(|l| panic!("{l}"));
    let s = start();
    let a = http();
    let call = |s: &Server, token: &str, method: &str, path: &str, body: Option<&str>| send_as(&a, Some(token), method, &s.url(path), body.map(str::as_bytes));
    let (nat, other) = ("203.0.113.9", "198.51.100.20");

    // The rule fires on the third new identity and blocks the address.
    let (st, body) = call(&s, INGEST, "POST", "/v1/events", Some(&onboarding("ob", nat, 0..4)));
    assert_eq!(st, 200, "{body}");
    assert_eq!(verdicts(&body), ["allow", "allow", "block", "block"], "{body}");
    let (_, blocks) = call(&s, ANALYST, "GET", "/v1/blocks", None);
    assert!(json(&blocks).as_array().unwrap().iter().any(|b| b["key"] == nat), "{blocks}");
    // Findings on the address, folded into its alerts.
    let findings_on = |s: &Server, ip: &str| -> u64 {
        let alerts = json(&call(s, ANALYST, "GET", "/v1/alerts", None).1);
        alerts.as_array().unwrap().iter().filter(|x| x["entity"] == ip).map(|x| x["count"].as_u64().unwrap()).sum()
    };
    let on_nat = findings_on(&s, nat);
    assert!(on_nat >= 2, "the rule alerted on the address");

    // Who may, and what is refused.
    let snooze = format!(r#"{{"scope":"ip","key":"{nat}","rule":"many_new_identities_on_one_address","ttl_s":604800,"reason":"carrier NAT exit"}}"#);
    assert_eq!(call(&s, AUDITOR, "POST", "/v1/suppressions", Some(&snooze)).0, 403);
    assert_eq!(call(&s, ANALYST, "POST", "/v1/suppressions", Some(&snooze.replace("many_new_identities_on_one_address", "no_such_rule"))).0, 400);
    assert_eq!(call(&s, ANALYST, "POST", "/v1/suppressions", Some(&snooze.replace("604800", "0"))).0, 400);
    assert_eq!(call(&s, ANALYST, "POST", "/v1/suppressions", Some(&snooze.replace("carrier NAT exit", "900101-1234567"))).0, 400);
    // One analyst alone may not mute every rule for long, nor anything on a staff member.
    let every_rule_month = format!(r#"{{"scope":"ip","key":"{nat}","ttl_s":2592000,"reason":"carrier NAT exit"}}"#);
    assert_eq!(call(&s, ANALYST, "POST", "/v1/suppressions", Some(&every_rule_month)).0, 403);
    assert_eq!(call(&s, ANALYST, "POST", "/v1/suppressions", Some(r#"{"scope":"staff","key":"st-1","ttl_s":3600,"reason":"me"}"#)).0, 403);

    let (st, body) = call(&s, ANALYST, "POST", "/v1/suppressions", Some(&snooze));
    assert_eq!(st, 201, "{body}");
    let set = json(&body);
    let id = set["suppression"]["id"].as_str().unwrap().to_owned();
    assert_eq!(set["suppression"]["set_by"], "analyst:kim");
    assert_eq!(set["lifted"].as_array().unwrap().iter().map(|b| b["key"].as_str().unwrap()).collect::<Vec<_>>(), [nat], "{body}");
    let (_, blocks) = call(&s, ANALYST, "GET", "/v1/blocks", None);
    assert!(!json(&blocks).as_array().unwrap().iter().any(|b| b["key"] == nat), "lifted: {blocks}");

    // Quiet on the snoozed address; the same rule still blocks another.
    let (_, body) = call(&s, INGEST, "POST", "/v1/events", Some(&onboarding("ob", nat, 4..7)));
    assert_eq!(verdicts(&body), ["allow", "allow", "allow"], "{body}");
    // Not hidden: each decision names what was suppressed, and by which suppression.
    for d in json(&body)["decisions"].as_array().unwrap() {
        assert_eq!(d["shadow"][0]["id"], "many_new_identities_on_one_address", "{d}");
        assert_eq!(d["shadow"][0]["detail"], format!("suppressed by {id}").as_str(), "{d}");
    }
    let (_, body) = call(&s, INGEST, "POST", "/v1/events", Some(&onboarding("ob", other, 100..103)));
    assert_eq!(verdicts(&body), ["allow", "allow", "block"], "{body}");
    assert_eq!(findings_on(&s, nat), on_nat, "no new finding on the snoozed address");
    assert!(findings_on(&s, other) >= 1, "the other address alerts");

    let (_, list) = call(&s, ANALYST, "GET", "/v1/suppressions", None);
    let list = json(&list);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!((list[0]["id"].as_str(), list[0]["hits"].as_u64()), (Some(id.as_str()), Some(3)), "{list}");
    let (_, metrics) = send_as(&a, None, "GET", &s.url("/metrics"), None);
    assert!(metrics.lines().any(|l| l == "haechi_suppressed_findings_total 3"), "{metrics}");
    let (_, audit) = call(&s, AUDITOR, "GET", "/v1/audit", None);
    assert!(json(&audit).as_array().unwrap().iter().any(|r| r["action"] == "suppression_set" && r["key"] == id.as_str() && r["who"]["name"] == "kim"), "{audit}");
    assert!(s.stop().success());

    // Kept across a restart, then ended early.
    let s = start();
    let (_, list) = call(&s, ANALYST, "GET", "/v1/suppressions", None);
    assert_eq!(json(&list)[0]["id"], id.as_str(), "{list}");
    let (_, body) = call(&s, INGEST, "POST", "/v1/events", Some(&onboarding("ob", nat, 7..8)));
    assert_eq!(verdicts(&body), ["allow"], "still quiet after the restart: {body}");
    assert_eq!(call(&s, ANALYST, "DELETE", &format!("/v1/suppressions/{id}"), None).0, 204);
    assert_eq!(call(&s, ANALYST, "DELETE", &format!("/v1/suppressions/{id}"), None).0, 404);
    let (_, list) = call(&s, ANALYST, "GET", "/v1/suppressions", None);
    assert_eq!(json(&list), serde_json::json!([]));
    let (_, body) = call(&s, INGEST, "POST", "/v1/events", Some(&onboarding("ob", nat, 8..9)));
    assert_eq!(verdicts(&body), ["block"], "the rule speaks again: {body}");
    assert!(s.stop().success());
}
