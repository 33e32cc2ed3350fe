//! Alerts delivered to a webhook that is down for the first half of a burst: afterwards every
//! alert id has arrived exactly once, in feed order, with a valid signature; a file sink got
//! the same alerts.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use haechi_tests::{http, send, Server};
use hmac::{Hmac, Mac};
use serde_json::Value;

const SECRET: &str = "a-webhook-secret-of-the-siem-team";

/// What the receiver accepted (status 200): (idempotency key, signature, body), in order.
type Accepted = Arc<Mutex<Vec<(String, String, Vec<u8>)>>>;

/// A minimal HTTP/1.1 receiver: 503 while `down`, else 200; one request per connection.
fn receiver(down: Arc<AtomicBool>, accepted: Accepted, refused: Arc<Mutex<u64>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let (down, accepted, refused) = (down.clone(), accepted.clone(), refused.clone());
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut len, mut key, mut sig) = (0usize, String::new(), String::new());
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
                    let (name, value) = line.split_once(':').map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned())).unwrap_or_default();
                    match name.as_str() {
                        "content-length" => len = value.parse().unwrap_or(0),
                        "idempotency-key" => key = value,
                        "x-haechi-signature" => sig = value,
                        _ => {}
                    }
                    line.clear();
                }
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                let status = if down.load(Ordering::SeqCst) {
                    *refused.lock().unwrap() += 1;
                    "503 Service Unavailable"
                } else {
                    accepted.lock().unwrap().push((key, sig, body));
                    "200 OK"
                };
                let mut out = stream;
                let _ = write!(out, "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            });
        }
    });
    format!("http://{addr}/haechi")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Brute force on `customers` customers (each its own device and address): alerts for each.
fn burst(from: usize, customers: usize) -> String {
    let start = now_ms() - 4 * 60_000;
    let mut out = String::new();
    for c in from..from + customers {
        for i in 0..30 {
            out += &format!(
                "{{\"event_id\":\"w{c}-{i}\",\"ts\":\"{}\",\"step\":\"otp\",\"result\":\"failure\",\"failure_reason\":\"otp_mismatch\",\"customer_id\":\"wc{c}\",\"session_id\":\"ws{c}\",\"device_id\":\"wd{c}\",\"ip\":\"203.0.113.{}\"}}\n",
                haechi_features::format_rfc3339_ms(start + i * 2_000),
                c + 1
            );
        }
    }
    out
}

#[test]
fn a_webhook_down_for_half_a_burst_gets_every_alert_once_in_order_signed() {
    let (down, accepted, refused) = (Arc::new(AtomicBool::new(true)), Accepted::default(), Arc::new(Mutex::new(0u64)));
    let url = receiver(down.clone(), accepted.clone(), refused.clone());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("alerts.ndjson");
    let cfg = dir.path().join("haechi.toml");
    std::fs::write(
        &cfg,
        format!("[server]\nwatch_files = false\n[[alerts.sinks]]\nkind = \"webhook\"\nurl = \"{url}\"\nsecret_env = \"HAECHI_TEST_WEBHOOK_SECRET\"\n[[alerts.sinks]]\nkind = \"file\"\npath = {:?}\n", file.to_str().unwrap()),
    )
    .unwrap();
    // SAFETY: set before the server starts; no other test reads this variable.
    unsafe { std::env::set_var("HAECHI_TEST_WEBHOOK_SECRET", SECRET) };
    let s = Server::try_start(&["--config", cfg.to_str().unwrap()]).unwrap_or_else(|l| panic!("{l}"));
    let a = http();

    // First half while the receiver answers 503: nothing accepted, everything spooled.
    assert_eq!(send(&a, "POST", &s.url("/v1/events"), Some(burst(0, 10).as_bytes())).0, 200);
    let deadline = Instant::now() + Duration::from_secs(60);
    while *refused.lock().unwrap() < 2 {
        assert!(Instant::now() < deadline, "the sink never tried the receiver");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(accepted.lock().unwrap().is_empty());
    // The receiver comes back; the second half arrives.
    down.store(false, Ordering::SeqCst);
    assert_eq!(send(&a, "POST", &s.url("/v1/events"), Some(burst(10, 10).as_bytes())).0, 200);

    // The feed's alerts, in order, are what must arrive.
    let (_, text) = send(&a, "GET", &s.url("/v1/alerts?limit=1000"), None);
    let mut feed: Vec<(u64, String)> = serde_json::from_str::<Value>(&text).unwrap().as_array().unwrap().iter().map(|a| (a["seq"].as_u64().unwrap(), a["id"].as_str().unwrap().to_owned())).collect();
    feed.sort();
    let feed: Vec<String> = feed.into_iter().map(|(_, id)| id).collect();
    assert!(feed.len() >= 20, "every customer raised an alert: {}", feed.len());
    let deadline = Instant::now() + Duration::from_secs(90);
    while accepted.lock().unwrap().len() < feed.len() {
        assert!(Instant::now() < deadline, "only {} of {} alerts arrived", accepted.lock().unwrap().len(), feed.len());
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    let got = accepted.lock().unwrap().clone();
    let ids: Vec<String> = got.iter().map(|(k, _, _)| k.clone()).collect();
    assert_eq!(ids, feed, "every alert exactly once, in feed order");
    for (key, sig, body) in &got {
        let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(body);
        assert_eq!(*sig, format!("sha256={}", hex::encode(mac.finalize().into_bytes())), "signature of {key}");
        let alert: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(alert["id"].as_str(), Some(key.as_str()));
    }
    // The metrics say the same; nothing dropped.
    let (_, metrics) = send(&a, "GET", &s.url("/metrics"), None);
    assert!(metrics.contains(&format!("haechi_alert_sink_alerts{{sink=\"0-webhook\",state=\"delivered\"}} {}", feed.len())), "{metrics}");
    assert!(metrics.contains("haechi_alert_sink_alerts{sink=\"0-webhook\",state=\"dropped\"} 0"));
    let retried = metrics.lines().find(|l| l.starts_with("haechi_alert_sink_alerts{sink=\"0-webhook\",state=\"retried\"}")).unwrap();
    assert!(!retried.ends_with(" 0"), "{retried}");
    // The file sink: the same alerts, in the same order.
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_to_string(&file).map_or(0, |t| t.lines().count()) < feed.len() {
        assert!(Instant::now() < deadline, "the file sink fell behind");
        std::thread::sleep(Duration::from_millis(50));
    }
    let lines: Vec<String> = std::fs::read_to_string(&file).unwrap().lines().map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(lines, feed);
    assert!(s.stop().success());
}

/// A real Alertmanager (Debian's `prometheus-alertmanager`, installed by `.ci/run`), started
/// on a free port with its own storage; killed when dropped.
struct Alertmanager {
    child: std::process::Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn alertmanager() -> Alertmanager {
    let bin = "/usr/bin/prometheus-alertmanager";
    assert!(Path::new(bin).exists(), "{bin} is missing: .ci/run installs Debian's prometheus-alertmanager");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("alertmanager.yml");
    std::fs::write(&cfg, "route:\n  receiver: none\nreceivers:\n  - name: none\n").unwrap();
    let port = free_port();
    let child = std::process::Command::new(bin)
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!("--storage.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--cluster.listen-address=")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("starting Alertmanager");
    let mut am = Alertmanager { child, base: format!("http://127.0.0.1:{port}"), _dir: dir };
    let a = http();
    let deadline = Instant::now() + Duration::from_secs(60);
    // While it starts, a connection may be refused or dropped: that is "not yet", not a failure.
    let ready = |base: &str| a.get(&format!("{base}/-/ready")).call().is_ok_and(|r| r.status() == 200);
    while !ready(&am.base) {
        if let Ok(Some(status)) = am.child.try_wait() {
            panic!("Alertmanager exited before it was ready ({status}); port {port} may have been taken meanwhile");
        }
        assert!(Instant::now() < deadline, "Alertmanager did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }
    am
}

#[test]
fn alertmanager_gets_the_alerts_with_their_labels_and_resolves_them_when_the_window_closes() {
    let am = alertmanager();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("haechi.toml");
    std::fs::write(&cfg, format!("[server]\nwatch_files = false\n[alerts]\nfold_window = \"10m\"\n[[alerts.sinks]]\nkind = \"alertmanager\"\nurl = \"{}\"\nmin_severity = \"low\"\n", am.base)).unwrap();
    let s = Server::try_start(&["--config", cfg.to_str().unwrap()]).unwrap_or_else(|l| panic!("{l}"));
    let a = http();
    assert_eq!(send(&a, "POST", &s.url("/v1/events"), Some(burst(40, 3).as_bytes())).0, 200);
    let (_, text) = send(&a, "GET", &s.url("/v1/alerts?limit=1000"), None);
    let feed: Vec<Value> = serde_json::from_str::<Value>(&text).unwrap().as_array().unwrap().clone();
    assert!(feed.len() >= 3, "{text}");

    // Alertmanager holds every one, labelled by rule, severity and entity.
    let deadline = Instant::now() + Duration::from_secs(60);
    let held = loop {
        let (_, text) = send(&a, "GET", &format!("{}/api/v2/alerts?filter=service%3D%22haechi%22", am.base), None);
        let held: Vec<Value> = serde_json::from_str::<Value>(&text).unwrap_or(Value::Null).as_array().cloned().unwrap_or_default();
        if held.len() >= feed.len() {
            break held;
        }
        assert!(Instant::now() < deadline, "Alertmanager holds {} of {} alerts: {text}", held.len(), feed.len());
        std::thread::sleep(Duration::from_millis(100));
    };
    for f in &feed {
        let id = f["id"].as_str().unwrap();
        let h = held.iter().find(|h| h["labels"]["alert_id"] == id).unwrap_or_else(|| panic!("alert {id} not in Alertmanager"));
        assert_eq!(h["labels"]["alertname"], f["rule"]);
        assert_eq!(h["labels"]["severity"], f["severity"]);
        assert_eq!(h["labels"]["entity"], f["entity"]);
        assert!(h["annotations"]["summary"].as_str().is_some_and(|s| s.contains(f["rule"].as_str().unwrap())));
        assert_eq!(h["status"]["state"], "active", "the window is open: firing");
        // It resolves when its fold window closes: endsAt is the window's end.
        let starts = haechi_features::parse_rfc3339_ms(f["time"].as_str().unwrap()).unwrap();
        let ends = haechi_features::parse_rfc3339_ms(h["endsAt"].as_str().unwrap()).unwrap();
        assert_eq!(ends - starts, 600_000, "{h}");
    }
    assert!(s.stop().success());

    // An alert whose window has closed already arrives resolved: Alertmanager does not show it active.
    let cfg2 = dir.path().join("closed.toml");
    std::fs::write(&cfg2, format!("[server]\nwatch_files = false\n[alerts]\nfold_window = \"1m\"\n[[alerts.sinks]]\nkind = \"alertmanager\"\nurl = \"{}\"\n", am.base)).unwrap();
    let s = Server::try_start(&["--config", cfg2.to_str().unwrap()]).unwrap_or_else(|l| panic!("{l}"));
    assert_eq!(send(&a, "POST", &s.url("/v1/events"), Some(burst(60, 1).as_bytes())).0, 200);
    let (_, text) = send(&a, "GET", &s.url("/v1/alerts?limit=1000"), None);
    let closed: Vec<String> = serde_json::from_str::<Value>(&text).unwrap().as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect();
    assert!(!closed.is_empty());
    let deadline = Instant::now() + Duration::from_secs(60);
    let metrics_delivered = |s: &Server| {
        let (_, m) = send(&a, "GET", &s.url("/metrics"), None);
        m.lines().find(|l| l.starts_with("haechi_alert_sink_alerts{sink=\"0-alertmanager\",state=\"delivered\"}")).and_then(|l| l.rsplit(' ').next()?.parse::<usize>().ok()).unwrap_or(0)
    };
    while metrics_delivered(&s) < closed.len() {
        assert!(Instant::now() < deadline, "not delivered");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, text) = send(&a, "GET", &format!("{}/api/v2/alerts?active=true&filter=service%3D%22haechi%22", am.base), None);
    let active: Vec<Value> = serde_json::from_str::<Value>(&text).unwrap().as_array().unwrap().clone();
    for id in &closed {
        assert!(!active.iter().any(|h| h["labels"]["alert_id"] == id.as_str() && h["status"]["state"] == "active"), "alert {id} should be resolved: {text}");
    }
    assert!(s.stop().success());
}
