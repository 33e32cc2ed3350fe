//! Durable by default: the real binary on a data dir, killed with SIGKILL or
//! stopped gracefully, restarted on the same dir. Nothing here waits on
//! timing: the kill lands wherever the stream happens to be, and every
//! assertion holds wherever that is.

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use haechi_tests::{http, send, Server};
use serde_json::Value;

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn rfc3339(ms: i64) -> String {
    haechi_features::format_rfc3339_ms(ms)
}

/// `n` events of a few thousand customers over the last eight minutes of
/// wall time (within the service's dedup window and clock bound), in time order.
fn stream(n: usize, tag: &str) -> Vec<(String, String)> {
    let end = now_ms() - 30_000;
    let start = end - 8 * 60_000;
    let steps = ["login", "otp", "id_ocr", "face_match", "account_verify", "phone_auth"];
    (0..n)
        .map(|i| {
            let customer = format!("{tag}c{}", (i * 7919) % 2_000);
            let ts = start + (i as i64 * (end - start)) / n as i64;
            let line = format!(
                r#"{{"event_id":"{tag}e{i}","ts":"{}","step":"{}","result":"{}","customer_id":"{customer}","session_id":"{tag}s{}","device_id":"{tag}d{}","ip":"203.0.{}.{}","region":"KR-11","duration_ms":{}}}"#,
                rfc3339(ts),
                steps[i % steps.len()],
                if i % 11 == 0 { "failure" } else { "success" },
                i / 3,
                (i * 7919) % 2_000,
                (i / 7) % 200,
                i % 250 + 1,
                800 + (i * 131) % 9_000
            );
            (customer, line)
        })
        .collect()
}

fn post_batch(base: &str, lines: &[String]) -> Result<Value, String> {
    let body = lines.join("\n");
    let agent = http();
    match agent.post(&format!("{base}/v1/events")).send(body.as_bytes()) {
        Ok(mut r) if r.status() == 200 => Ok(json(&r.body_mut().read_to_string().map_err(|e| e.to_string())?)),
        Ok(r) => Err(format!("status {}", r.status())),
        Err(e) => Err(e.to_string()),
    }
}

/// A customer's counts: events, failures and distinct items per window,
/// history depth. (Ages and gaps are read against the newest event time the
/// service has seen, which an unacknowledged batch may have moved.)
fn customer_features(s: &Server, customer: &str) -> Value {
    let (code, body) = send(&http(), "GET", &s.url(&format!("/v1/entities/customer/{customer}")), None);
    assert_eq!(code, 200, "{customer}: {body}");
    let mut features = json(&body)["features"].clone();
    // Seconds since something (an id's age, its last event, a login) and
    // days of history are read at each server's own latest event time.
    features.as_object_mut().unwrap().retain(|k, _| !(k.ends_with("_s") || k.ends_with("history_days")));
    assert!(features["customer.events_24h"].as_f64().unwrap() > 0.0);
    features
}

fn alert_ids(s: &Server) -> Vec<String> {
    let (code, body) = send(&http(), "GET", &s.url("/v1/alerts?since=0&limit=10000"), None);
    assert_eq!(code, 200, "{body}");
    json(&body).as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_owned()).collect()
}

fn sigkill(s: Server) {
    let _ = std::process::Command::new("kill").args(["-KILL", &s.child.id().to_string()]).status();
    let mut s = s;
    let _ = s.child.wait();
    // The Drop's SIGTERM finds no process: harmless.
}

/// Snapshots every few thousand events and small log segments, so that a
/// crash lands between snapshots, after some, with pruned segments behind.
fn busy_storage(dir: &std::path::Path) -> String {
    let path = dir.join("haechi.toml");
    std::fs::write(&path, "[storage]\nsnapshot_every_events = 4000\nsegment_bytes = 262144\n").unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn kill_9_mid_stream_loses_no_acknowledged_event_and_doubles_none() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data").to_str().unwrap().to_owned();
    let config = busy_storage(dir.path());
    let events = stream(30_000, "k");
    let batches: Vec<Vec<(String, String)>> = events.chunks(500).map(<[_]>::to_vec).collect();
    let start = |data: &str| Server::try_start_serving(&["--config", &config], &["--listen", "127.0.0.1:0", "--data-dir", data]).unwrap_or_else(|log| panic!("start failed:\n{log}"));
    let server = start(&data);
    let base = server.base.clone();

    // A client posts batch after batch and records which were acknowledged.
    // Past the half, it waits for a go-ahead before each batch: the kill is
    // sent with that batch on its way, whatever the scheduler does.
    let half = batches.len() / 2;
    let acked = Arc::new(Mutex::new(Vec::<usize>::new()));
    let in_flight = Arc::new(AtomicUsize::new(usize::MAX));
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let (reached, at_half) = std::sync::mpsc::channel::<()>();
    let client = {
        let (acked, in_flight, batches) = (acked.clone(), in_flight.clone(), batches.clone());
        std::thread::spawn(move || {
            for (i, b) in batches.iter().enumerate() {
                if i == half {
                    let _ = reached.send(());
                }
                if i >= half && wait.recv().is_err() {
                    return;
                }
                in_flight.store(i, Ordering::SeqCst);
                let lines: Vec<String> = b.iter().map(|(_, l)| l.clone()).collect();
                match post_batch(&base, &lines) {
                    Ok(v) if v["accepted"] == 500 => acked.lock().unwrap().push(i),
                    Ok(v) => panic!("batch {i}: {} accepted, first refusal {}", v["accepted"], v["rejected"][0]),
                    Err(_) => return,
                }
            }
        })
    };
    at_half.recv_timeout(std::time::Duration::from_secs(120)).expect("the client reached half the stream");
    // Snapshots are due every 4,000 events (the service looks once a
    // second): let one land before the crash.
    let snapshot_dir = std::path::Path::new(&data).join("snapshots");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let has_snapshot = || std::fs::read_dir(&snapshot_dir).unwrap().any(|e| e.unwrap().path().extension().is_some_and(|x| x == "snap"));
    while !has_snapshot() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let snapshots = usize::from(has_snapshot());
    go.send(()).unwrap();
    sigkill(server);
    drop(go);
    client.join().expect("the client thread");
    let acked: Vec<usize> = acked.lock().unwrap().clone();
    let in_flight = in_flight.load(Ordering::SeqCst);
    assert!(acked.len() >= half && acked.len() <= half + 1, "killed mid-stream: {} of {} acknowledged", acked.len(), batches.len());
    assert!(snapshots >= 1, "the crash must land after snapshots were written");

    let restarted = start(&data);
    assert!(restarted.log.lock().unwrap().contains("state recovered from the snapshot"), "{}", restarted.log.lock().unwrap());
    // Every acknowledged event is known: sending it again is a duplicate.
    for &i in &acked {
        let lines: Vec<String> = batches[i].iter().map(|(_, l)| l.clone()).collect();
        let v = post_batch(&restarted.base, &lines).unwrap();
        assert_eq!(v["accepted"], 0, "batch {i} was acknowledged before the crash, but {} of its events are unknown after it", v["accepted"]);
        assert!(v["rejected"].as_array().unwrap().iter().all(|r| r["error"].as_str().unwrap().contains("duplicate")), "{}", v["rejected"][0]);
    }
    // The batch in flight may be partly or wholly known: after sending it
    // again, it is known exactly once (a third send is all duplicates).
    let mut flight_customers = HashSet::new();
    if in_flight < batches.len() {
        let lines: Vec<String> = batches[in_flight].iter().map(|(_, l)| l.clone()).collect();
        let first = post_batch(&restarted.base, &lines).unwrap();
        let again = post_batch(&restarted.base, &lines).unwrap();
        assert_eq!(again["accepted"], 0, "{} events of the unacknowledged batch were counted twice", again["accepted"]);
        assert!(first["accepted"].as_u64().unwrap() <= 500);
        flight_customers.extend(batches[in_flight].iter().map(|(c, _)| c.clone()));
    }
    let ids = alert_ids(&restarted);
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "an alert id appears twice in the feed across the restart");

    // A clean run of exactly the acknowledged events gives the same entity
    // counts, for customers the in-flight batch did not touch.
    let clean = Server::try_start_serving(&[], &["--listen", "127.0.0.1:0", "--memory-only"]).unwrap();
    for &i in &acked {
        let lines: Vec<String> = batches[i].iter().map(|(_, l)| l.clone()).collect();
        post_batch(&clean.base, &lines).unwrap();
    }
    let sample: BTreeSet<String> = acked.iter().flat_map(|&i| batches[i].iter().step_by(13).map(|(c, _)| c.clone())).filter(|c| !flight_customers.contains(c)).take(40).collect();
    assert!(sample.len() >= 20, "{} customers sampled", sample.len());
    for c in &sample {
        assert_eq!(customer_features(&restarted, c), customer_features(&clean, c), "customer {c} differs from a clean replay of the acknowledged events");
    }
    assert!(restarted.stop().success());
}

/// The most recent instant before `before` at ten past `hour` in Seoul, as ms.
fn last_seoul_hour(before: i64, hour: i64) -> i64 {
    let kst = before + 9 * 3_600_000;
    let day = kst.div_euclid(86_400_000) * 86_400_000;
    let mut t = day + hour * 3_600_000 + 10 * 60_000;
    if t > kst {
        t -= 86_400_000;
    }
    t - 9 * 3_600_000
}

fn event(id: &str, ts: i64, step: &str, customer: &str, device: &str, region: &str) -> String {
    format!(r#"{{"event_id":"{id}","ts":"{}","step":"{step}","result":"success","customer_id":"{customer}","device_id":"{device}","region":"{region}"}}"#, rfc3339(ts))
}

fn reasons(decision: &Value) -> Vec<String> {
    decision["reasons"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap_or_default().to_owned()).collect()
}

#[test]
fn a_thirty_day_profile_survives_a_graceful_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let takeover_at = last_seoul_hour(now_ms() - 60_000, 3);
    let takeover = event("t1", takeover_at, "login", "c1", "p2", "KR-26");

    // Three daytime sessions on the customer's own phone, on the three days before.
    let server = Server::try_start_serving(&[], &["--listen", "127.0.0.1:0", "--data-dir", &data]).unwrap();
    for d in (1..=3).rev() {
        let day_11 = last_seoul_hour(takeover_at - (d - 1) * 86_400_000, 11);
        for (j, step) in ["login", "otp"].iter().enumerate() {
            let line = event(&format!("h{d}{j}"), day_11 + j as i64 * 60_000, step, "c1", "p1", "KR-11");
            let (code, body) = send(&http(), "POST", &server.url("/v1/check"), Some(line.as_bytes()));
            assert_eq!(code, 200, "{body}");
        }
    }
    assert!(server.stop().success(), "graceful stop");

    let restarted = Server::try_start_serving(&[], &["--listen", "127.0.0.1:0", "--data-dir", &data]).unwrap();
    assert!(restarted.log.lock().unwrap().contains("state recovered from the snapshot"), "{}", restarted.log.lock().unwrap());
    let (code, body) = send(&http(), "POST", &restarted.url("/v1/check"), Some(takeover.as_bytes()));
    assert_eq!(code, 200, "{body}");
    let d = json(&body);
    assert!(reasons(&d).contains(&"takeover_odd_hour_new_device_region".to_owned()), "the old profile must make this a takeover: {d}");
    assert_ne!(d["decision"], "allow", "{d}");

    // Without the profile (memory only, nothing remembered) the same event is not judged a takeover of a known habit.
    let blank = Server::try_start_serving(&[], &["--listen", "127.0.0.1:0", "--memory-only"]).unwrap();
    let d = json(&send(&http(), "POST", &blank.url("/v1/check"), Some(takeover.as_bytes())).1);
    assert!(!reasons(&d).contains(&"takeover_odd_hour_new_device_region".to_owned()), "{d}");
}

#[test]
fn a_corrupt_snapshot_is_refused_and_the_previous_one_and_the_log_recover_state() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let events = stream(2_000, "s");
    let (first, second) = events.split_at(1_000);
    let lines = |part: &[(String, String)]| part.iter().map(|(_, l)| l.clone()).collect::<Vec<String>>();
    for part in [first, second] {
        let s = Server::try_start_serving(&[], &["--listen", "127.0.0.1:0", "--data-dir", &data]).unwrap();
        post_batch(&s.base, &lines(part)).unwrap();
        assert!(s.stop().success(), "graceful stop writes a snapshot");
    }
    let snapshots = dir.path().join("snapshots");
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&snapshots).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "snap")).collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    let newest = files.last().unwrap().clone();
    let mut bytes = std::fs::read(&newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&newest, &bytes).unwrap();

    let s = Server::try_start_serving(&[], &["--listen", "127.0.0.1:0", "--data-dir", &data]).unwrap_or_else(|log| panic!("did not recover:\n{log}"));
    let log = s.log.lock().unwrap().clone();
    let name = newest.file_name().unwrap().to_str().unwrap();
    assert!(log.contains("snapshot refused") && log.contains(name) && log.contains("checksum"), "the refusal must name the file and the reason:\n{log}");
    assert!(log.contains("state recovered from the snapshot"), "{log}");

    let clean = Server::try_start_serving(&[], &["--listen", "127.0.0.1:0", "--memory-only"]).unwrap();
    post_batch(&clean.base, &lines(first)).unwrap();
    post_batch(&clean.base, &lines(second)).unwrap();
    let customers: BTreeSet<String> = events.iter().step_by(53).map(|(c, _)| c.clone()).collect();
    for c in customers.iter().take(30) {
        assert_eq!(customer_features(&s, c), customer_features(&clean, c), "customer {c}");
    }
    // Nothing was counted twice: every event is a duplicate now.
    let v = post_batch(&s.base, &lines(second)).unwrap();
    assert_eq!(v["accepted"], 0, "{} events were unknown after the recovery", v["accepted"]);
}

/// Thirty failed OTPs for each of three customers, each from an address of
/// its own, in the last few minutes: enough for several alerts.
fn brute_force(tag: &str) -> Vec<String> {
    let start = now_ms() - 4 * 60_000;
    (0..3)
        .flat_map(|c| {
            (0..30).map(move |i| {
                format!(
                    r#"{{"event_id":"{tag}{c}-{i}","ts":"{}","step":"otp","result":"failure","failure_reason":"otp_mismatch","customer_id":"{tag}victim{c}","session_id":"{tag}s{c}","device_id":"{tag}d{c}","ip":"45.1.{c}.7"}}"#,
                    rfc3339(start + c * 60_000 + i * 1_000)
                )
            })
        })
        .collect()
}

fn alerts(s: &Server, since: u64) -> Vec<Value> {
    let (code, body) = send(&http(), "GET", &s.url(&format!("/v1/alerts?since={since}&limit=10000")), None);
    assert_eq!(code, 200, "{body}");
    json(&body).as_array().unwrap().clone()
}

#[test]
fn alerts_keep_their_ids_and_numbers_across_a_crash_and_resume_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let server = Server::try_start_serving(&[], &["--listen", "127.0.0.1:0", "--data-dir", &data]).unwrap();
    post_batch(&server.base, &brute_force("a")).unwrap();
    let before = alerts(&server, 0);
    assert!(before.len() >= 3, "the attack raised alerts: {before:?}");
    // No snapshot was due: the restart replays the whole log and raises every alert again.
    sigkill(server);

    let restarted = Server::try_start_serving(&[], &["--listen", "127.0.0.1:0", "--data-dir", &data]).unwrap();
    let after = alerts(&restarted, 0);
    let key = |a: &Value| (a["seq"].as_u64().unwrap(), a["id"].as_str().unwrap().to_owned());
    assert_eq!(after.iter().map(key).collect::<Vec<_>>(), before.iter().map(key).collect::<Vec<_>>(), "the same alerts, with the same numbers, none twice");
    let last = before.iter().map(|a| a["seq"].as_u64().unwrap()).max().unwrap();

    // New alerts number on from where the old ones stopped, and `since=` resumes.
    post_batch(&restarted.base, &brute_force("b")).unwrap();
    let new = alerts(&restarted, last);
    assert!(!new.is_empty(), "the second attack raised alerts");
    assert!(new.iter().all(|a| a["seq"].as_u64().unwrap() > last && a["event_id"].as_str().unwrap().starts_with('b')), "{new:?}");
    let all = alerts(&restarted, 0);
    let ids: HashSet<&str> = all.iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), all.len(), "no alert id twice");
}
