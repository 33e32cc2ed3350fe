//! The OpenAPI contract holds against the real binary: schemathesis (PyPI)
//! generates requests for every route from `/openapi.json`, as every role and
//! without a token, and finds no server error and no answer that breaks the
//! contract (status, content type, headers, body schema).
//!
//! schemathesis is required, not optional: `.ci/run` installs it
//! (`pip install schemathesis==4.32.5`).

use std::process::Command;

use haechi_tests::{http, send_as, sha256_hex, Server};

const ROLES: [(&str, &str); 5] = [("ingest", "tok-ingest"), ("analyst", "tok-analyst"), ("auditor", "tok-auditor"), ("admin", "tok-admin"), ("subject_portal", "tok-portal")];

/// Checks that a response can break the contract with (not the ones that
/// judge the server's input validation against the schema's looser types).
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance";

fn schemathesis() -> String {
    let found = Command::new("schemathesis").arg("--version").output();
    match found {
        Ok(o) if o.status.success() => "schemathesis".to_owned(),
        _ => panic!("schemathesis is missing: this test needs it; `.ci/run` installs it (python3 -m pip install schemathesis==4.32.5)"),
    }
}

#[test]
fn schemathesis_finds_no_server_error_and_no_answer_outside_the_contract_for_any_role() {
    let bin = schemathesis();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let principals: String =
        ROLES.iter().map(|(role, token)| format!("[[server.principals]]\nname = \"{role}-user\"\nrole = \"{role}\"\ntoken_sha256 = \"{}\"\n", sha256_hex(token))).collect();
    let cfg = dir.path().join("haechi.toml");
    std::fs::write(&cfg, format!("[server]\nwatch_files = false\n{principals}")).unwrap();
    let s = Server::try_start_serving(&["--config", cfg.to_str().unwrap()], &["--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()]).unwrap_or_else(|l| panic!("{l}"));

    // Some traffic first, so that alerts, blocks, entities and records exist to be read.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let events: String = (0..40)
        .map(|i| {
            format!(
                "{{\"event_id\":\"oa{i}\",\"ts\":\"{}\",\"step\":\"otp\",\"result\":\"failure\",\"customer_id\":\"c{}\",\"device_id\":\"d1\",\"ip\":\"198.51.100.7\"}}\n",
                haechi_features::format_rfc3339_ms(now - 120_000 + i * 1_000),
                i % 3
            )
        })
        .collect();
    let (st, body) = send_as(&http(), Some("tok-ingest"), "POST", &s.url("/v1/events"), Some(events.as_bytes()));
    assert_eq!(st, 200, "{body}");

    let spec = s.url("/openapi.json");
    let mut failures = Vec::new();
    let tokens: Vec<Option<&str>> = ROLES.iter().map(|(_, t)| Some(*t)).chain([None]).collect();
    for token in tokens {
        let mut cmd = Command::new(&bin);
        cmd.current_dir(dir.path())
            .args(["run", &spec, "--checks", CHECKS, "--max-examples", "40", "--seed", "20261125", "--generation-database", "none", "--no-color"])
            // A stream that stays open until the client leaves: its contract is the first
            // frame, tested in tests/tests/service.rs, not something a request/response fuzzer can judge.
            .args(["--exclude-path", "/v1/alerts/stream"]);
        if let Some(t) = token {
            cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        let out = cmd.output().expect("running schemathesis");
        let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
        let generated = text.lines().skip_while(|l| !l.starts_with("Test cases:")).nth(1).unwrap_or("").trim().to_owned();
        println!("token {token:?}: {generated}");
        // It ran: a run that tested nothing would pass vacuously.
        assert!(generated.contains("generated") && !generated.starts_with("0 "), "schemathesis generated nothing for {token:?}:\n{text}");
        if !out.status.success() {
            failures.push(format!("---- as {token:?} ----\n{text}"));
        }
    }
    assert!(s.stop().success());
    assert!(failures.is_empty(), "schemathesis found problems:\n{}", failures.join("\n"));
}
