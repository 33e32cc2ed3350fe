//! Encryption at rest, end to end: the real binary on a data dir whose key
//! file lives in another directory. Nothing in the data dir may name a
//! customer, a device or an address; the right key (rotated or not) brings
//! the state back, a wrong one stops the start naming the key.

use std::path::{Path, PathBuf};

use haechi_tests::{http, run_haechi, send, Server};
use serde_json::Value;

const CUSTOMER: &str = "seal-7Q3-customer";
const DEVICE: &str = "seal-9Z1-device";
const IP: &str = "198.18.77.201";

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// A key ring line from `haechi keys new`.
fn new_key(id: &str) -> String {
    let out = run_haechi(&["keys", "new", "--id", id], b"");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(line.starts_with(&format!("{id} ")) && line.len() == id.len() + 65, "{line}");
    line
}

/// A configuration in `dir` (not the data dir) whose key file holds `lines`,
/// with a Fluvio sink that is never reachable, so its spool fills.
fn keyed_config(dir: &Path, lines: &[&str]) -> String {
    let key = dir.join("data.key");
    std::fs::write(&key, lines.join("\n") + "\n").unwrap();
    let config = dir.join("haechi.toml");
    std::fs::write(&config, format!("[records]\nkey_file = {:?}\n[sinks.fluvio]\nendpoint = \"127.0.0.1:9\"\n", key.to_str().unwrap())).unwrap();
    config.to_str().unwrap().to_owned()
}

fn start(config: &str, data: &Path) -> Result<Server, String> {
    Server::try_start_serving(&["--config", config], &["--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()])
}

/// Thirty failed OTPs of one customer, from one device and address, in the
/// last few minutes: a brute force that raises an alert and blocks the customer.
fn brute_force() -> Vec<String> {
    let start = now_ms() - 4 * 60_000;
    (0..30)
        .map(|i| {
            format!(
                r#"{{"event_id":"seal-{i}","ts":"{}","step":"otp","result":"failure","failure_reason":"otp_mismatch","customer_id":"{CUSTOMER}","session_id":"seal-s","device_id":"{DEVICE}","ip":"{IP}"}}"#,
                haechi_features::format_rfc3339_ms(start + i * 2_000)
            )
        })
        .collect()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Bytes in the files of `dir` whose names end with `suffix`.
fn bytes_of(dir: &Path, suffix: &str) -> u64 {
    files_under(dir).iter().filter(|p| p.to_str().unwrap().ends_with(suffix)).map(|p| std::fs::metadata(p).unwrap().len()).sum()
}

fn customer_events(s: &Server) -> f64 {
    let (code, body) = send(&http(), "GET", &s.url(&format!("/v1/entities/customer/{CUSTOMER}")), None);
    assert_eq!(code, 200, "{body}");
    json(&body)["features"]["customer.events_24h"].as_f64().unwrap()
}

fn customer_blocked(s: &Server) -> bool {
    let blocks = json(&send(&http(), "GET", &s.url("/v1/blocks"), None).1);
    blocks.as_array().unwrap().iter().any(|b| b["scope"] == "customer" && b["key"] == CUSTOMER)
}

#[test]
fn nothing_in_the_data_dir_names_a_customer_device_or_address_and_only_the_right_key_reads_it_back() {
    let (data_parent, keys) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let data = data_parent.path().join("data");
    let first = new_key("t1");
    let config = keyed_config(keys.path(), &[&first]);

    let s = start(&config, &data).unwrap_or_else(|log| panic!("did not start:\n{log}"));
    let events = brute_force();
    let body = events.join("\n");
    let (code, answer) = send(&http(), "POST", &s.url("/v1/events"), Some(body.as_bytes()));
    assert_eq!(code, 200, "{answer}");
    assert_eq!(json(&answer)["accepted"], 30, "{answer}");
    let alerts = json(&send(&http(), "GET", &s.url("/v1/alerts?since=0"), None).1);
    assert!(alerts.as_array().unwrap().iter().any(|a| a["entity"] == CUSTOMER), "the attack raised an alert: {alerts}");
    assert!(customer_blocked(&s), "the attack blocked the customer");
    let log = s.log.lock().unwrap().clone();
    assert!(log.contains("data key ring") && !log.contains("demo data key"), "{log}");
    // A graceful stop writes the block file and a final snapshot.
    assert!(s.stop().success());

    // Everything that holds the events is there, with at least their bytes...
    let at_least = |what: &str, dir: &str, suffix: &str, bytes: u64| {
        let have = bytes_of(&data.join(dir), suffix);
        assert!(have >= bytes, "{what}: {have} bytes in {dir}/*{suffix}, expected at least {bytes}");
    };
    at_least("the ingest log", "log", ".seg", body.len() as u64);
    at_least("the snapshot", "snapshots", ".snap", 200);
    at_least("the alert log", "alerts", ".seg", 200);
    // A decision per event, at least, each a sealed record of more than 100 bytes.
    at_least("the Fluvio spool", "spool", ".seg", 30 * 100);
    assert!(std::fs::metadata(data.join("blocks.json")).unwrap().len() > 100, "the block file");
    // ...and not one byte of it names the customer, the device or the address.
    let files = files_under(&data);
    assert!(files.len() >= 6, "{files:?}");
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        for needle in [CUSTOMER, DEVICE, IP] {
            assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()), "{} holds {needle:?} in the clear", file.display());
        }
    }

    // Another key: the start stops, naming the file and the key the data dir needs.
    let other_keys = tempfile::tempdir().unwrap();
    let wrong = start(&keyed_config(other_keys.path(), &[&new_key("t2")]), &data).err().expect("a wrong key must stop the start");
    assert!(wrong.contains("\"t1\"") && wrong.contains("log-00000000000000000000.seg"), "the refusal must name the key and the file:\n{wrong}");

    // The right ring, rotated to a new key: the state is back, and new data is sealed with the new key.
    let config = keyed_config(keys.path(), &[&first, &new_key("t3")]);
    let s = start(&config, &data).unwrap_or_else(|log| panic!("did not restart:\n{log}"));
    assert!(s.log.lock().unwrap().contains("state recovered from the snapshot"), "{}", s.log.lock().unwrap());
    assert_eq!(customer_events(&s), 30.0);
    assert!(customer_blocked(&s), "the sealed block file was read back");
    let (code, answer) = send(&http(), "POST", &s.url("/v1/events"), Some(body.as_bytes()));
    assert_eq!((code, json(&answer)["accepted"].as_u64()), (200, Some(0)), "every event is known after the restart: {answer}");
    assert!(s.stop().success());
    let mut snapshots: Vec<PathBuf> = files_under(&data.join("snapshots")).into_iter().filter(|p| p.extension().is_some_and(|x| x == "snap")).collect();
    snapshots.sort();
    let newest = std::fs::read(snapshots.last().unwrap()).unwrap();
    // Header (32 bytes), then the seal: tag, id length, id.
    assert_eq!(&newest[32..36], b"\xA5\x02t3", "the final snapshot is sealed with the new active key");
}

#[test]
fn the_demo_data_key_serves_on_loopback_with_a_warning_and_is_refused_elsewhere() {
    let s = Server::start(&[]);
    assert!(s.log.lock().unwrap().contains("demo data key"), "{}", s.log.lock().unwrap());
    drop(s);

    // A secret hash key, so that the data key alone is at issue.
    let dir = tempfile::tempdir().unwrap();
    let hash_key = dir.path().join("hash.key");
    std::fs::write(&hash_key, "00112233445566778899aabbccddeeff").unwrap();
    let config = dir.path().join("haechi.toml");
    std::fs::write(&config, format!("[features]\nhash_key_file = {:?}\n", hash_key.to_str().unwrap())).unwrap();
    let data = dir.path().join("data");
    let out = run_haechi(&["--config", config.to_str().unwrap(), "serve", "--listen", "0.0.0.0:0", "--insecure", "--data-dir", data.to_str().unwrap()], b"");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("built-in data key") && stderr.contains("haechi keys new"), "{stderr}");
    assert!(!data.exists(), "refused before the data dir is touched");
    // Nothing to encrypt: --memory-only needs no key.
    let s = Server::try_start_serving(&["--config", config.to_str().unwrap()], &["--listen", "0.0.0.0:0", "--insecure", "--memory-only"]).unwrap_or_else(|log| panic!("did not start:\n{log}"));
    assert!(!s.log.lock().unwrap().contains("data key"), "{}", s.log.lock().unwrap());
}
