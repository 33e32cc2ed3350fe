//! Trust boundaries on the real binary: input that must not switch detection off.

use haechi_tests::{http, send, Server};
use serde_json::Value;

fn event(id: &str, ts: &str, step: &str, result: &str, extra: &str) -> String {
    format!(r#"{{"event_id":"{id}","ts":"{ts}","step":"{step}","result":"{result}"{extra}}}"#)
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Thirty wrong OTP codes for one customer from one address, a second apart.
fn otp_burst(s: &Server, a: &ureq::Agent, customer: &str, minute: u32) -> usize {
    (0..30)
        .filter(|i| {
            let ts = format!("2026-11-02T10:{minute:02}:{i:02}+09:00");
            let extra = format!(r#","customer_id":"{customer}","ip":"45.1.2.{minute}","device_id":"dx-{customer}""#);
            let body = event(&format!("otp-{customer}-{i}"), &ts, "otp", "failure", &extra);
            let (st, text) = send(a, "POST", &s.url("/v1/check"), Some(body.as_bytes()));
            assert_eq!(st, 200, "{text}");
            json(&text)["decision"] == "block"
        })
        .count()
}

#[test]
fn a_forged_far_future_timestamp_is_refused_and_the_burst_is_still_blocked() {
    let s = Server::start(&[]);
    let a = http();
    // What the burst gets with no forgery in the stream.
    let before = otp_burst(&s, &a, "first-victim", 1);
    assert!(before >= 20, "the burst is blocked: {before} of 30");
    let (st, body) = send(&a, "POST", &s.url("/v1/check"), Some(event("future", "2099-01-01T00:00:00+09:00", "login", "success", r#","customer_id":"x""#).as_bytes()));
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("ahead of the server clock"), "{body}");
    // In a batch too: the line is named, the rest accepted.
    let batch = format!(
        "{}\n{}\n",
        event("future2", "2099-01-01T00:00:00+09:00", "login", "success", ""),
        event("fine", "2026-11-02T10:00:00+09:00", "login", "success", r#","customer_id":"y""#)
    );
    let r = json(&send(&a, "POST", &s.url("/v1/events"), Some(batch.as_bytes())).1);
    assert_eq!(r["accepted"], 1);
    assert_eq!(r["rejected"][0]["line"], 1);
    let after = otp_burst(&s, &a, "second-victim", 2);
    assert_eq!(after, before, "a forged timestamp changed how much of the burst is blocked");
    let metrics = send(&a, "GET", &s.url("/metrics"), None).1;
    let line = metrics.lines().find(|l| l.starts_with("haechi_events_rejected_total") && l.contains("future_ts")).expect("future_ts is counted");
    assert!(line.ends_with(" 2"), "{line}");
    assert!(s.stop().success());
}

#[test]
fn a_client_chosen_device_id_does_not_lift_an_analysts_block() {
    let s = Server::start(&[]);
    let a = http();
    let (st, body) = send(&a, "POST", &s.url("/v1/blocks"), Some(br#"{"scope":"customer","key":"mule-7","ttl_s":3600,"reason":"confirmed mule"}"#));
    assert_eq!(st, 201, "{body}");
    // The QA device id the old pack allowlisted, from the bank's own egress range.
    for (i, extra) in [r#","device_id":"qa-device-0001""#, r#","device_id":"qa-device-0001","ip":"192.0.2.10""#].iter().enumerate() {
        let e = event(&format!("qa{i}"), "2026-11-02T11:00:00+09:00", "login", "success", &format!(r#","customer_id":"mule-7"{extra}"#));
        let d = json(&send(&a, "POST", &s.url("/v1/check"), Some(e.as_bytes())).1);
        assert_eq!(d["decision"], "block", "{d}");
        assert_eq!(d["blocked_by"]["scope"], "customer");
    }
    assert!(s.stop().success());
}

#[test]
fn resident_numbers_in_other_shapes_are_refused_and_never_echoed() {
    let s = Server::start(&[]);
    let a = http();
    // 900101-1234567 in four shapes the old check let through.
    let shapes = [
        (r#","attrs":{"ref":9001011234567}"#, "as a JSON number"),
        (r#","failure_reason":"900101 1234567""#, "with a space"),
        (",\"failure_reason\":\"900101\u{2013}1234567\"", "with an en dash"),
        (",\"failure_reason\":\"\u{ff19}\u{ff10}\u{ff10}\u{ff11}\u{ff10}\u{ff11}-\u{ff11}\u{ff12}\u{ff13}\u{ff14}\u{ff15}\u{ff16}\u{ff17}\"", "in full-width digits"),
    ];
    for (i, (extra, what)) in shapes.iter().enumerate() {
        let body = event(&format!("rrn{i}"), "2026-11-02T10:00:00+09:00", "login", "failure", extra);
        let (st, text) = send(&a, "POST", &s.url("/v1/check"), Some(body.as_bytes()));
        assert_eq!(st, 400, "{what}: {text}");
        assert!(text.contains("900101-1******"), "{what}: shown masked: {text}");
        for raw in ["1234567", "\u{ff11}\u{ff12}\u{ff13}", "9001011234567"] {
            assert!(!text.contains(raw), "{what}: echoed {raw}: {text}");
        }
        // In a batch, the error names the line and is masked too.
        let r = send(&a, "POST", &s.url("/v1/events"), Some(format!("{body}\n").as_bytes())).1;
        assert!(!r.contains("1234567") && r.contains("900101-1******"), "{what}: {r}");
    }
    let metrics = send(&a, "GET", &s.url("/metrics"), None).1;
    assert!(metrics.lines().any(|l| l.starts_with("haechi_events_rejected_total") && l.contains("resident_number") && l.ends_with(" 8")), "counted");
    assert!(s.stop().success());
}
