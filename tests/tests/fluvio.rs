//! Fluvio without a cluster: the consumer, offsets in snapshots, the sink
//! spool, dead letters and block replication, run in-process against the
//! in-memory broker (the same `Broker` trait the Fluvio client implements).
//! The last test runs the same against a real cluster when
//! `HAECHI_FLUVIO_ENDPOINT` is set.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use haechi_detector::fluvio::{FluvioSinkConfig, FluvioSourceConfig};
use haechi_detector::service::{build_state, snapshot_now, spawn_stream_tasks, AppState};
use haechi_detector::Config;
use haechi_features::EntityKind;
use haechi_streams::{Broker, MemoryBroker};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const EVENTS: &str = "ekyc-events";
const TOPICS: [(&str, u32); 5] = [(EVENTS, 2), ("haechi-decisions", 2), ("haechi-alerts", 1), ("haechi-blocks", 1), ("ekyc-events-dead-letter", 1)];

fn config(dir: &Path, replica: &str, max_spool: u64) -> Config {
    let mut c = Config::default();
    c.model.enabled = false;
    c.server.watch_files = false;
    c.storage.data_dir = Some(dir.join(replica));
    c.source.fluvio = Some(FluvioSourceConfig { topic: EVENTS.into(), idle_after: Duration::from_millis(50), ..FluvioSourceConfig::default() });
    c.sinks.fluvio = Some(FluvioSinkConfig { max_spool_records: max_spool, ..FluvioSinkConfig::default() });
    c.replica.id = replica.into();
    c
}

/// `n` events of 300 customers, one every 700 ms of event time, with
/// failures (so rules fire and alerts and blocks happen), keyed by customer.
fn events(n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let start = haechi_features::parse_rfc3339_ms("2026-11-02T09:00:00+09:00").unwrap();
    (0..n)
        .map(|i| {
            // Every 500 events, eight failed codes for one customer: the
            // default pack blocks them, so the block list is part of the state.
            let guessing = i % 500 < 8;
            let c = if guessing { "guessed".to_owned() } else { format!("c{}", (i * 37) % 300) };
            let line = format!(
                r#"{{"event_id":"e{i}","ts":"{}","step":"{}","result":"{}","customer_id":"{c}","session_id":"s{}","device_id":"d{}","ip":"198.51.{}.{}","duration_ms":{}}}"#,
                haechi_features::format_rfc3339_ms(start + i as i64 * 700),
                if guessing { "otp" } else { ["login", "otp", "id_ocr", "face_match"][i % 4] },
                if guessing || i % 9 == 0 { "failure" } else { "success" },
                i / 4,
                (i * 37) % 300,
                i % 40,
                (i * 37) % 300 % 250 + 1,
                500 + (i * 97) % 6_000
            );
            (c.into_bytes(), line.into_bytes())
        })
        .collect()
}

async fn broker_with(events: &[(Vec<u8>, Vec<u8>)]) -> Arc<MemoryBroker> {
    let b = Arc::new(MemoryBroker::new());
    for (t, p) in TOPICS {
        b.create_topic(t, p);
    }
    b.produce(EVENTS, events).await.unwrap();
    b
}

fn decided(state: &AppState) -> i64 {
    state.topic_offsets.lock().unwrap().get(EVENTS).map_or(0, |o| o.values().sum())
}

/// Poll `cond` until it holds; fail (never hang) after a minute.
async fn until(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

struct Running {
    state: Arc<AppState>,
    tracker: TaskTracker,
    stop: CancellationToken,
    /// Events decided when the state was restored, read before the consumer
    /// starts: once it runs, the count moves on at its own pace.
    restored_at: i64,
}

fn start<B: Broker>(config: Config, broker: Arc<B>) -> Running {
    let state = build_state(config).expect("state");
    let restored_at = decided(&state);
    let (tracker, stop) = (TaskTracker::new(), CancellationToken::new());
    spawn_stream_tasks(&tracker, &state, broker, &stop);
    Running { state, tracker, stop, restored_at }
}

impl Running {
    /// Stop the tasks without a final snapshot: what a crash leaves is the data dir.
    async fn crash(self) {
        self.stop.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// Decisions on the topic by event id; every copy of one id must agree.
fn decisions(broker: &MemoryBroker) -> (BTreeMap<String, String>, usize) {
    let mut by_id: BTreeMap<String, String> = BTreeMap::new();
    let mut copies = 0;
    for r in broker.records("haechi-decisions") {
        copies += 1;
        let id = String::from_utf8(r.key.unwrap()).unwrap();
        let value = String::from_utf8(r.value).unwrap();
        if let Some(seen) = by_id.get(&id) {
            assert_eq!(seen, &value, "two copies of the decision for {id} differ");
        }
        by_id.insert(id, value);
    }
    (by_id, copies)
}

fn customer(state: &AppState, c: &str) -> Vec<(String, f32)> {
    state.pipeline.store().entity_features(EntityKind::Customer, c).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_killed_between_snapshots_resumes_without_counting_twice() {
    let stream = events(3_000);
    let dir = tempfile::tempdir().unwrap();

    // A clean run: one replica reads the whole topic once.
    let clean_broker = broker_with(&stream).await;
    let clean = start(config(dir.path(), "clean", 1_000_000), clean_broker.clone());
    until("the clean run to decide everything", || decided(&clean.state) == 3_000).await;
    until("its decisions to be produced", || clean.state.outbox.as_ref().unwrap().spool().depth() == 0).await;

    // The same stream produced a third at a time, so that the snapshot and
    // the crash land where the test says, however fast the consumer is:
    // a snapshot after the first third, a crash after the second.
    let broker = broker_with(&[]).await;
    broker.produce(EVENTS, &stream[..1_000]).await.unwrap();
    let first = start(config(dir.path(), "a", 1_000_000), broker.clone());
    until("the first third", || decided(&first.state) == 1_000).await;
    let snap = snapshot_now(&first.state).await.expect("a snapshot");
    broker.produce(EVENTS, &stream[1_000..2_000]).await.unwrap();
    until("the second third", || decided(&first.state) == 2_000).await;
    until("its decisions to be produced", || first.state.outbox.as_ref().unwrap().spool().depth() == 0).await;
    // What the background writer does within 200 ms of a change: the block
    // file is ahead of the snapshot when the crash comes.
    first.state.blocks().persist().unwrap();
    first.crash().await;

    broker.produce(EVENTS, &stream[2_000..]).await.unwrap();
    let second = start(config(dir.path(), "a", 1_000_000), broker.clone());
    assert_eq!(second.restored_at, 1_000, "resumed at the snapshot's offsets, not at the crash");
    assert!(snap.entities > 0);
    until("the restarted run to finish the topic", || decided(&second.state) == 3_000).await;
    until("its decisions to be produced", || second.state.outbox.as_ref().unwrap().spool().depth() == 0).await;

    // Every customer's state is the clean run's: nothing counted twice or missed.
    for c in (0..300).step_by(7).map(|i| format!("c{i}")) {
        assert_eq!(customer(&second.state, &c), customer(&clean.state, &c), "customer {c}");
    }
    // Deduped by event id, the decisions are the clean run's, one per event.
    let (resumed, copies) = decisions(&broker);
    let (reference, _) = decisions(&clean_broker);
    assert_eq!(resumed.len(), 3_000);
    assert_eq!(copies, 4_000, "the 1,000 events decided after the snapshot were decided again after the crash, and dedupe by id");
    assert_eq!(resumed, reference, "the same decisions as one uninterrupted run");
    assert!(!clean.state.blocks().list_at(i64::MIN).is_empty(), "the stream sets blocks, so the block list's restore is exercised");
    second.crash().await;
    clean.crash().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_go_to_the_dead_letter_topic_masked_and_the_consumer_goes_on() {
    let mut stream = events(200);
    stream.insert(50, (b"x".to_vec(), b"{not json".to_vec()));
    stream.insert(120, (b"y".to_vec(), br#"{"event_id":"bad","ts":"2026-11-02T09:01:00+09:00","step":"login","result":"success","customer_id":"900101-1234567"}"#.to_vec()));
    let broker = broker_with(&stream).await;
    let dir = tempfile::tempdir().unwrap();
    let run = start(config(dir.path(), "a", 1_000_000), broker.clone());
    until("every record", || decided(&run.state) == 202).await;
    until("the dead letters to be produced", || broker.records("ekyc-events-dead-letter").len() == 2).await;
    let letters: Vec<serde_json::Value> = broker.records("ekyc-events-dead-letter").iter().map(|r| serde_json::from_slice(&r.value).unwrap()).collect();
    let reasons: Vec<&str> = letters.iter().map(|l| l["reason"].as_str().unwrap()).collect();
    assert!(reasons.contains(&"malformed_json") && reasons.contains(&"resident_number"), "{reasons:?}");
    let text = serde_json::to_string(&letters).unwrap();
    assert!(!text.contains("1234567") && text.contains("900101-1******"), "the resident number is masked: {text}");
    assert_eq!(run.state.metrics.dead_letters.get(), 2);
    until("the decisions", || decisions(&broker).0.len() == 200).await;
    run.crash().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_sinks_are_down_the_consumer_pauses_and_nothing_is_lost() {
    let stream = events(600);
    let broker = broker_with(&stream).await;
    broker.set_produce_down(true);
    let dir = tempfile::tempdir().unwrap();
    let run = start(config(dir.path(), "a", 100), broker.clone());
    until("the consumer to pause on a full spool", || run.state.metrics.consumer_paused.get() > 0).await;
    let spooled = run.state.outbox.as_ref().unwrap().spool().depth();
    assert!(decided(&run.state) < 600, "paused before the end");
    assert!(spooled > 100, "the pause came from a full spool: {spooled}");
    assert!(broker.refused.load(std::sync::atomic::Ordering::SeqCst) > 0, "the drain kept trying");
    broker.set_produce_down(false);
    until("everything decided", || decided(&run.state) == 600).await;
    until("every decision delivered", || decisions(&broker).0.len() == 600).await;
    let (_, copies) = decisions(&broker);
    assert_eq!(copies, 600, "each decision exactly once: nothing lost, nothing doubled");
    run.crash().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_agree_and_an_analysts_block_reaches_the_other() {
    let stream = events(1_000);
    let broker = broker_with(&stream).await;
    let dir = tempfile::tempdir().unwrap();
    let a = start(config(dir.path(), "a", 1_000_000), broker.clone());
    let b = start(config(dir.path(), "b", 1_000_000), broker.clone());
    until("both replicas through the topic", || decided(&a.state) == 1_000 && decided(&b.state) == 1_000).await;
    until("both replicas' decisions out", || a.state.outbox.as_ref().unwrap().spool().depth() == 0 && b.state.outbox.as_ref().unwrap().spool().depth() == 0).await;
    let (by_id, copies) = decisions(&broker);
    assert_eq!((by_id.len(), copies), (1_000, 2_000), "each replica decided every event, and their copies agree");

    let key = haechi_features::lookup_hash(a.state.pipeline.store().windows().hash_key, EntityKind::Ip, "203.0.113.9").unwrap();
    let mut keys = haechi_features::EntityKeys::default();
    keys.set(EntityKind::Ip, key);
    a.state.blocks().set_manual(EntityKind::Ip, key, "203.0.113.9".into(), Duration::from_secs(3600), "proxy".into(), "analyst:kim".into());
    until("the block to reach replica b", || b.state.blocks().check(&keys, haechi_detector::enforce::now_ms()).is_some()).await;
    let there = b.state.blocks().check(&keys, haechi_detector::enforce::now_ms()).unwrap();
    assert_eq!(there.set_by, "analyst:kim");
    a.state.blocks().lift(EntityKind::Ip, key);
    until("the lift to reach replica b", || b.state.blocks().check(&keys, haechi_detector::enforce::now_ms()).is_none()).await;
    assert!(b.state.metrics.blocks_replicated.get() >= 2);
    a.crash().await;
    b.crash().await;
}

/// Against a real cluster (`HAECHI_FLUVIO_ENDPOINT=127.0.0.1:9003`): the
/// client round trip of the tests above, on fresh topics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_a_real_cluster_when_one_is_given() {
    let Ok(endpoint) = std::env::var("HAECHI_FLUVIO_ENDPOINT") else {
        eprintln!("skipped: HAECHI_FLUVIO_ENDPOINT is not set (a Fluvio cluster is built by hand; see BENCHMARKS.md, Fluvio)");
        return;
    };
    let broker = Arc::new(haechi_streams::FluvioBroker::connect(&endpoint).await.expect("connect"));
    let run_id = std::process::id();
    let topic = |t: &str| format!("{t}-{run_id}");
    for (t, p) in TOPICS {
        broker.create_topic(&topic(t), p).await.expect("create topic");
    }
    let stream = events(2_000);
    broker.produce(&topic(EVENTS), &stream).await.expect("produce");
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), "a", 1_000_000);
    c.source.fluvio = Some(FluvioSourceConfig { endpoint: endpoint.clone(), topic: topic(EVENTS), dead_letter_topic: Some(topic("ekyc-events-dead-letter")), ..c.source.fluvio.unwrap() });
    c.sinks.fluvio = Some(FluvioSinkConfig {
        decisions_topic: Some(topic("haechi-decisions")),
        alerts_topic: Some(topic("haechi-alerts")),
        blocks_topic: Some(topic("haechi-blocks")),
        ..c.sinks.fluvio.unwrap()
    });
    let run = start(c, broker.clone());
    until("the topic decided", || run.state.topic_offsets.lock().unwrap().get(&topic(EVENTS)).map_or(0, |o| o.values().sum::<i64>()) == 2_000).await;
    until("the decisions produced", || run.state.outbox.as_ref().unwrap().spool().depth() == 0).await;
    let mut ids = HashMap::new();
    for p in 0..2 {
        let end = broker.end_offset(&topic("haechi-decisions"), p).await.unwrap();
        let mut at = 0;
        // Several reads: one stops at a gap the client leaves (see streams/src/fluvio.rs).
        while at < end {
            let got = broker.fetch(&topic("haechi-decisions"), p, at, 10_000, Duration::from_secs(2)).await.unwrap();
            let Some(last) = got.last() else { break };
            at = last.offset + 1;
            for r in got {
                *ids.entry(r.key.unwrap()).or_insert(0) += 1;
            }
        }
    }
    assert_eq!(ids.len(), 2_000);
    run.crash().await;
}
