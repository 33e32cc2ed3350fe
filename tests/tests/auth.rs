//! Roles, tokens, the audit log, TLS and safe defaults, on the real binary.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use haechi_tests::{http, https, principal, run_haechi, send, send_as, sha256_hex, Server};
use serde_json::Value;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

const INGEST: &str = "ingest-token-for-the-ekyc-pipeline";
const ANALYST: &str = "analyst-token-of-kim";
const AUDITOR: &str = "auditor-token-of-lee";
const ADMIN: &str = "admin-token-of-park";

/// A configuration with one principal per role (the auditor's hash in a
/// file), block state in `dir` (so the audit log lands beside it).
fn config(dir: &Path) -> String {
    let hash_file = dir.join("auditor.sha256");
    std::fs::write(&hash_file, format!("{}\n", sha256_hex(AUDITOR))).unwrap();
    let cfg = dir.join("haechi.toml");
    let text = format!(
        "[server]\nwatch_files = false\n{}{}{}[[server.principals]]\nname = \"lee\"\nrole = \"auditor\"\ntoken_sha256_file = {:?}\n[blocks]\nstate_file = {:?}\n",
        principal("ekyc-pipeline", "ingest", INGEST),
        principal("kim", "analyst", ANALYST),
        principal("park", "admin", ADMIN),
        hash_file.to_str().unwrap(),
        dir.join("blocks.json").to_str().unwrap(),
    );
    std::fs::write(&cfg, text).unwrap();
    cfg.to_str().unwrap().to_owned()
}

fn event(id: &str) -> String {
    format!(r#"{{"event_id":"{id}","ts":"2026-11-02T10:00:01+09:00","step":"login","result":"success","customer_id":"k1"}}"#)
}

const BLOCK: &[u8] = br#"{"scope":"device","key":"farm-1","ttl_s":3600,"reason":"seen in a device farm"}"#;

/// A JSON error of this status.
fn expect_error(got: (u16, String), status: u16, what: &str) {
    assert_eq!(got.0, status, "{what}: {}", got.1);
    assert!(json(&got.1)["error"].is_string(), "{what}: not a JSON error: {}", got.1);
}

#[test]
fn roles_decide_who_may_do_what() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&["--config", &config(dir.path())]);
    let a = http();
    let call = |token: Option<&str>, method: &str, path: &str, body: Option<&[u8]>| send_as(&a, token, method, &s.url(path), body);

    // Health, readiness and metrics stay open.
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(call(None, "GET", path, None).0, 200, "{path}");
    }
    // No token, an unknown token, a malformed header: 401.
    expect_error(call(None, "GET", "/v1/blocks", None), 401, "no token");
    expect_error(call(Some("not-a-known-token"), "GET", "/v1/blocks", None), 401, "unknown token");
    expect_error(call(None, "POST", "/v1/check", Some(event("e0").as_bytes())), 401, "no token on check");
    let (st, _) = {
        let mut res = a.get(&s.url("/v1/blocks")).header("Authorization", ANALYST).call().unwrap();
        (res.status().as_u16(), res.body_mut().read_to_string().unwrap_or_default())
    };
    assert_eq!(st, 401, "a token without `Bearer ` is not accepted");

    // Ingest: events yes, blocks no.
    assert_eq!(call(Some(INGEST), "POST", "/v1/check", Some(event("e1").as_bytes())).0, 200);
    assert_eq!(call(Some(INGEST), "POST", "/v1/events", Some(event("e2").as_bytes())).0, 200);
    expect_error(call(Some(INGEST), "POST", "/v1/blocks", Some(BLOCK)), 403, "ingest setting a block");
    expect_error(call(Some(INGEST), "GET", "/v1/alerts", None), 403, "ingest reading alerts");

    // Analyst: blocks yes (named from the token), reload and audit no.
    let (st, body) = call(Some(ANALYST), "POST", "/v1/blocks", Some(BLOCK));
    assert_eq!(st, 201, "{body}");
    assert_eq!(json(&body)["set_by"], "analyst:kim");
    expect_error(
        call(Some(ANALYST), "POST", "/v1/blocks", Some(br#"{"scope":"device","key":"farm-2","ttl_s":60,"reason":"r","by":"someone-else"}"#)),
        400,
        "a name in the body",
    );
    assert_eq!(call(Some(ANALYST), "GET", "/v1/alerts", None).0, 200);
    assert_eq!(call(Some(ANALYST), "GET", "/v1/entities/customer/k1", None).0, 200);
    expect_error(call(Some(ANALYST), "POST", "/v1/reload", None), 403, "analyst reloading");
    expect_error(call(Some(ANALYST), "GET", "/v1/audit", None), 403, "analyst reading the audit log");
    expect_error(call(Some(ANALYST), "POST", "/v1/check", Some(event("e5").as_bytes())), 403, "analyst sending an event");
    expect_error(call(Some(ANALYST), "POST", "/v1/events", Some(event("e6").as_bytes())), 403, "analyst sending events");

    // Auditor: reads everything, changes nothing.
    expect_error(call(Some(AUDITOR), "POST", "/v1/events", Some(event("e3").as_bytes())), 403, "auditor ingesting");
    expect_error(call(Some(AUDITOR), "POST", "/v1/blocks", Some(BLOCK)), 403, "auditor setting a block");
    expect_error(call(Some(AUDITOR), "DELETE", "/v1/blocks/device/farm-1", None), 403, "auditor lifting a block");
    expect_error(call(Some(AUDITOR), "POST", "/v1/reload", None), 403, "auditor reloading");
    for path in ["/v1/blocks", "/v1/alerts", "/v1/entities/customer/k1", "/v1/audit"] {
        assert_eq!(call(Some(AUDITOR), "GET", path, None).0, 200, "auditor GET {path}");
    }
    let blocks = json(&call(Some(AUDITOR), "GET", "/v1/blocks", None).1);
    assert_eq!(blocks[0]["key"], "farm-1");

    // Admin: everything, reload included.
    let (st, body) = call(Some(ADMIN), "POST", "/v1/reload", None);
    assert_eq!(st, 200, "{body}");
    assert!(json(&body)["rules"].as_str().unwrap().starts_with("ok"), "{body}");
    assert_eq!(call(Some(ADMIN), "POST", "/v1/check", Some(event("e4").as_bytes())).0, 200);
    assert_eq!(call(Some(ADMIN), "GET", "/v1/audit", None).0, 200);
    assert_eq!(call(Some(ADMIN), "DELETE", "/v1/blocks/device/farm-1", None).0, 204);
    assert!(s.stop().success());
}

#[test]
fn lifting_a_block_is_audited_with_the_analyst_from_the_token_and_before_after() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let start = || Server::try_start_serving(&["--config", &config(dir.path())], &["--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()]).unwrap_or_else(|l| panic!("{l}"));
    let s = start();
    let a = http();
    let call = |token: &str, method: &str, path: &str, body: Option<&[u8]>| send_as(&a, Some(token), method, &s.url(path), body);
    assert_eq!(call(ANALYST, "POST", "/v1/blocks", Some(BLOCK)).0, 201);
    assert_eq!(call(ANALYST, "DELETE", "/v1/blocks/device/farm-1", None).0, 204);
    assert_eq!(call(ADMIN, "POST", "/v1/reload", None).0, 200);

    // With a data dir, every action is an access record (synced before the answer), read back
    // by the auditor over the API; no separate log file.
    let (st, body) = call(AUDITOR, "GET", "/v1/audit?limit=10", None);
    assert_eq!(st, 200, "{body}");
    let lines: Vec<Value> = json(&body).as_array().unwrap().clone();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(!dir.path().join("haechi-audit.jsonl").exists() && !data.join("haechi-audit.jsonl").exists());
    let (set, lifted, reload) = (&lines[0], &lines[1], &lines[2]);

    assert_eq!(set["action"], "block_set");
    assert!(set["before"].is_null(), "{set}");
    assert_eq!(set["after"]["set_by"], "analyst:kim");

    assert_eq!(lifted["action"], "block_lifted");
    assert_eq!(lifted["who"], serde_json::json!({ "name": "kim", "role": "analyst" }));
    assert_eq!((lifted["scope"].as_str(), lifted["key"].as_str()), (Some("device"), Some("farm-1")));
    assert_eq!(lifted["before"]["key"], "farm-1");
    assert_eq!(lifted["before"]["set_by"], "analyst:kim");
    assert_eq!(lifted["before"]["reason"], "seen in a device farm");
    assert!(lifted["after"].is_null(), "lifted: nothing after: {lifted}");
    // RFC 3339 wall clock.
    let at = lifted["at"].as_str().unwrap();
    assert!(at.len() >= 20 && at.as_bytes()[10] == b'T' && (at.ends_with('Z') || at.contains('+')), "{at}");

    assert_eq!(reload["action"], "reload");
    assert_eq!(reload["who"]["name"], "park");
    assert_eq!(reload["who"]["role"], "admin");
    assert!(reload["before"]["rules"].is_string() && reload["after"]["rules"].is_string(), "{reload}");

    let (_, body) = call(AUDITOR, "GET", "/v1/audit?limit=2", None);
    let recent = json(&body);
    assert_eq!(recent.as_array().unwrap().len(), 2);
    assert_eq!(recent[0], *lifted);
    assert!(s.stop().success());

    // Kept across a restart.
    let s2 = start();
    assert_eq!(send_as(&a, Some(ANALYST), "POST", &s2.url("/v1/blocks"), Some(BLOCK)).0, 201);
    let audit = send_as(&a, Some(AUDITOR), "GET", &s2.url("/v1/audit"), None).1;
    assert_eq!(json(&audit).as_array().unwrap().len(), 4, "{audit}");
    assert!(s2.stop().success());

    // Memory only (no data key, so its own block file): one fsynced line per action beside it.
    let plain = tempfile::tempdir().unwrap();
    let s3 = Server::try_start_serving(&["--config", &config(plain.path())], &["--listen", "127.0.0.1:0", "--memory-only"]).unwrap_or_else(|l| panic!("{l}"));
    assert_eq!(send_as(&a, Some(ANALYST), "POST", &s3.url("/v1/blocks"), Some(BLOCK)).0, 201);
    assert_eq!(send_as(&a, Some(ANALYST), "DELETE", &s3.url("/v1/blocks/device/farm-1"), None).0, 204);
    let path = plain.path().join("haechi-audit.jsonl");
    let lines: Vec<Value> = std::fs::read_to_string(&path).unwrap().lines().map(json).collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[1]["action"], "block_lifted");
}

/// A test CA and a certificate for localhost / 127.0.0.1 signed by it:
/// (CA certificate DER, leaf certificate PEM, leaf key PEM).
fn test_pki() -> (Vec<u8>, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "haechi test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap().signed_by(&leaf_key, &issuer).unwrap();
    (ca_cert.der().to_vec(), leaf.pem(), leaf_key.serialize_pem())
}

#[test]
fn tls_serves_https_and_refuses_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_der, cert_pem, key_pem) = test_pki();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    let cfg = dir.path().join("haechi.toml");
    std::fs::write(&cfg, format!("[server]\nwatch_files = false\n[server.tls]\ncert = {:?}\nkey = {:?}\n", cert.to_str().unwrap(), key.to_str().unwrap())).unwrap();
    let s = Server::start(&["--config", cfg.to_str().unwrap()]);
    assert!(s.base.starts_with("https://127.0.0.1:"), "{}", s.base);

    // HTTPS with the test CA trusted: answered.
    let tls = https(&ca_der);
    assert_eq!(send(&tls, "GET", &s.url("/healthz"), None), (200, "ok".to_owned()));
    let (st, body) = send(&tls, "POST", &s.url("/v1/check"), Some(event("t1").as_bytes()));
    assert_eq!(st, 200, "{body}");
    assert_eq!(json(&body)["decision"], "allow");
    // A client that does not trust the CA gets no answer.
    assert!(http().get(&s.url("/healthz")).call().is_err(), "an untrusted certificate must fail");

    // Plain HTTP on the same port: an HTTP client fails ...
    let plain = s.base.replace("https://", "http://");
    let r = http().get(&format!("{plain}/healthz")).call();
    assert!(r.is_err(), "plain HTTP must not be served: {:?}", r.map(|r| r.status()));
    // ... and what comes back on the wire is no HTTP response (a TLS alert or a closed connection).
    let mut raw = std::net::TcpStream::connect(plain.trim_start_matches("http://")).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut got = Vec::new();
    let _ = raw.read_to_end(&mut got);
    assert!(!got.starts_with(b"HTTP/"), "served over plain HTTP: {}", String::from_utf8_lossy(&got));
    assert!(!String::from_utf8_lossy(&got).contains("ok"), "{got:?}");
    assert!(s.stop().success());
}

#[test]
fn an_open_api_off_loopback_refuses_to_start_unless_insecure() {
    // No principals on a wildcard address: refused, exit non-zero, the problem named.
    let out = run_haechi(&["serve", "--listen", "0.0.0.0:0"], b"");
    assert!(!out.status.success(), "must not start");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to listen on 0.0.0.0:0") && err.contains("[[server.principals]]") && err.contains("--insecure"), "{err}");

    // With --insecure it starts, and says so.
    let s = Server::try_start_serving(&[], &["--listen", "0.0.0.0:0", "--insecure", "--allow-demo-key"]).unwrap_or_else(|log| panic!("did not start:\n{log}"));
    assert_eq!(send(&http(), "GET", &s.url("/healthz"), None).0, 200);
    assert!(s.log.lock().unwrap().contains("--insecure"), "{}", s.log.lock().unwrap());
    assert!(s.stop().success());

    // With principals the same address needs no flag.
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let s = Server::try_start_serving(&["--config", &cfg], &["--listen", "0.0.0.0:0", "--allow-demo-key"]).unwrap_or_else(|log| panic!("did not start:\n{log}"));
    assert_eq!(send_as(&http(), Some(INGEST), "POST", &s.url("/v1/check"), Some(event("w1").as_bytes())).0, 200);
    assert!(s.stop().success());

    // Loopback with no principals: open as before, with a warning.
    let s = Server::start(&[]);
    assert_eq!(send(&http(), "GET", &s.url("/v1/blocks"), None).0, 200);
    let log = s.log.lock().unwrap().clone();
    assert!(log.contains("no [[server.principals]] configured"), "{log}");
}
