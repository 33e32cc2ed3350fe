//! `haechi bench ingest`: what the ingest log costs a live service.
//!
//! For each durability mode (memory only, then a data dir with `fsync`
//! `never`, `interval` and `always`) the real service is built with
//! [`build_state`] and served by [`service::run`] on a multi-thread tokio
//! runtime, over a real TCP socket on 127.0.0.1. A load generator in the
//! same process (its own single-thread runtime, and a pacing thread) then
//! measures:
//!
//! - `/v1/check` latency at a fixed open-loop rate: request `n` is due at
//!   `start + n / rate` whatever happened to earlier requests, and its
//!   latency runs from that due time to the end of its response, so a
//!   request queued behind a slow one is charged the wait (no coordinated
//!   omission). Due requests go to whichever of the connections is free.
//! - `/v1/events` throughput: two connections posting batches back to back.
//!
//! Every event is new (a fresh `event_id`) and its `ts` is the wall clock.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use haechi_features::format_rfc3339_ms;
use haechi_storage::Fsync;
use hdrhistogram::Histogram;
use tokio_util::sync::CancellationToken;

use super::http::Conn;
use crate::error::DetectorError;
use crate::service::{self, build_state};
use crate::Config;

/// How hard to push.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// `/v1/check` requests per second, all connections together.
    pub rate: u64,
    /// Seconds of measured `/v1/check` load; `/v1/events` runs half as long.
    pub seconds: u64,
    /// Events per `/v1/events` request.
    pub batch: usize,
    /// Connections for `/v1/check`.
    pub connections: usize,
    /// Seconds of `/v1/check` load at the same rate before measuring.
    pub warmup: u64,
    /// The modes to run, in order (default: [`Durability::ALL`]).
    pub modes: Vec<Durability>,
    /// Rounds: every mode once per round, interleaved, so that drifting
    /// noise on a shared machine touches every mode alike.
    pub rounds: usize,
}

/// Where accepted events go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    MemoryOnly,
    Log(Fsync),
}

impl Durability {
    /// The modes one run compares, in order.
    pub const ALL: [Durability; 4] = [Durability::MemoryOnly, Durability::Log(Fsync::Never), Durability::Log(Fsync::Interval), Durability::Log(Fsync::Always)];

    pub fn name(self) -> &'static str {
        match self {
            Durability::MemoryOnly => "memory-only",
            Durability::Log(Fsync::Never) => "fsync=never",
            Durability::Log(Fsync::Interval) => "fsync=interval",
            Durability::Log(Fsync::Always) => "fsync=always",
        }
    }

    /// The mode named `name` (as [`Durability::name`] prints it, or just `memory`, `never`, `interval`, `always`).
    pub fn parse(name: &str) -> Option<Durability> {
        Durability::ALL.into_iter().find(|m| m.name() == name || m.name().strip_prefix("fsync=") == Some(name) || (name == "memory" && *m == Durability::MemoryOnly))
    }

    fn tag(self) -> char {
        match self {
            Durability::MemoryOnly => 'm',
            Durability::Log(Fsync::Never) => 'n',
            Durability::Log(Fsync::Interval) => 'i',
            Durability::Log(Fsync::Always) => 'a',
        }
    }
}

/// One of the service's own latency histograms (Prometheus buckets).
#[derive(Debug, Clone, Copy, Default)]
pub struct Served {
    pub count: u64,
    pub mean: Duration,
    /// The bucket bound under which 99% fall (`None`: above the last bound).
    pub p99_under: Option<Duration>,
    /// How many took more than 1 ms.
    pub over_1ms: u64,
}

impl Served {
    fn of(h: &prometheus::Histogram) -> Served {
        use prometheus::core::Metric;
        let m = h.metric();
        let h = m.get_histogram();
        let count = h.get_sample_count();
        let buckets = h.get_bucket();
        let under = |bound: f64| buckets.iter().find(|b| b.upper_bound() >= bound - 1e-12).map_or(count, |b| b.cumulative_count());
        Served {
            count,
            mean: Duration::from_secs_f64(if count == 0 { 0.0 } else { h.get_sample_sum() / count as f64 }),
            p99_under: buckets.iter().find(|b| b.cumulative_count() as f64 >= 0.99 * count as f64).map(|b| Duration::from_secs_f64(b.upper_bound())),
            over_1ms: count - under(1e-3),
        }
    }
}

/// One mode's figures.
#[derive(Debug, Clone)]
pub struct IngestRow {
    pub mode: Durability,
    pub round: usize,
    /// `/v1/check` requests due in the measured window.
    pub scheduled: u64,
    /// ... answered 200.
    pub ok: u64,
    /// ... answered otherwise, or failed on the socket.
    pub errors: u64,
    /// ... still unanswered when the drain deadline passed (counted in `errors` too).
    pub unfinished: u64,
    /// Answers per second over the measured window (to the last answer).
    pub check_rate: f64,
    /// Latency of the 200 answers, from the time each request was due.
    pub p50: Duration,
    pub p99: Duration,
    pub p999: Duration,
    pub max: Duration,
    /// p99 from the moment each request was written instead (the service
    /// and the socket, without the load generator's lateness; blind to
    /// queueing, so not the figure to judge by).
    pub p99_from_send: Duration,
    /// p99 of how late requests were written after their due time.
    pub p99_send_late: Duration,
    /// Events `/v1/events` accepted, and per second.
    pub events: u64,
    pub events_per_s: f64,
    /// `/v1/events` requests not answered 200.
    pub event_errors: u64,
    /// Process CPU time (server and load generator) per second of the
    /// `/v1/check` phase: 2.0 would be both cores busy.
    pub check_cpu: f64,
    /// CPU the rest of the machine used meanwhile (other processes, the
    /// kernel's own threads), in cores: above a few hundredths, the row
    /// was measured on a busy machine.
    pub other_cpu: f64,
    /// The service's own timing of `/v1/check` (from the router's first
    /// look at the request to its response; warm-up included).
    pub served: Served,
    /// The ingest log append inside each `/v1/check` (none: memory only).
    pub log_append: Served,
}

/// How long unanswered `/v1/check` requests are waited for after the last one is due.
pub const DRAIN: Duration = Duration::from_secs(5);

/// Run every mode in turn; `report` sees each row as it is done.
///
/// # Errors
/// When the service cannot be built or served, or a data dir cannot be made.
pub fn ingest(config: &Config, opts: &IngestOptions, mut report: impl FnMut(&IngestRow)) -> Result<Vec<IngestRow>, DetectorError> {
    let mut rows = Vec::new();
    let modes = if opts.modes.is_empty() { Durability::ALL.to_vec() } else { opts.modes.clone() };
    for round in 1..=opts.rounds.max(1) {
        for &mode in &modes {
            let mut row = run_mode(config, opts, mode)?;
            row.round = round;
            report(&row);
            rows.push(row);
        }
    }
    Ok(rows)
}

fn run_mode(config: &Config, opts: &IngestOptions, mode: Durability) -> Result<IngestRow, DetectorError> {
    // Declared first, dropped last: after the service and everything holding the data dir.
    let dir = tempfile::Builder::new().prefix("haechi-bench-ingest-").tempdir()?;
    let mut config = config.clone();
    config.server.listen = "127.0.0.1:0".into();
    config.server.watch_files = false;
    // Nothing of the bench outside its temporary dir.
    config.server.audit_log = None;
    config.blocks.state_file = None;
    match mode {
        Durability::MemoryOnly => config.storage.data_dir = None,
        Durability::Log(fsync) => {
            config.storage.data_dir = Some(dir.path().join("data"));
            config.storage.fsync = fsync;
        }
    }
    let server_rt = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("bench-server").build()?;
    let state = {
        let _in = server_rt.enter();
        build_state(config)?
    };
    let listener = server_rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    let shutdown = CancellationToken::new();
    let server = server_rt.spawn(service::run(listener, state.clone(), shutdown.clone()));

    let client_rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let outcome = (|| {
        let (cpu0, machine0, t0) = (super::cpu_seconds().unwrap_or(0.0), super::machine_cpu_seconds().unwrap_or(0.0), Instant::now());
        let check = client_rt.block_on(check_load(addr, opts, mode.tag()))?;
        let (own, machine) = (super::cpu_seconds().unwrap_or(0.0) - cpu0, super::machine_cpu_seconds().unwrap_or(0.0) - machine0);
        let cpu = (own / t0.elapsed().as_secs_f64(), ((machine - own) / t0.elapsed().as_secs_f64()).max(0.0));
        let served = Served::of(&state.metrics.request_seconds.with_label_values(&["/v1/check"]));
        let log_append = Served::of(&state.metrics.stage_seconds.with_label_values(&["ingest_log"]));
        let events = client_rt.block_on(events_load(addr, opts, mode.tag()))?;
        Ok::<_, std::io::Error>((check, cpu, served, log_append, events))
    })();
    drop(client_rt);
    shutdown.cancel();
    let served = server_rt.block_on(server);
    drop(state);
    drop(server_rt);
    drop(dir);
    served.map_err(std::io::Error::other)??;
    let (check, (check_cpu, other_cpu), served, log_append, (events, event_errors, events_elapsed)) = outcome?;
    let t = &check.tally;
    let q = |q: f64| Duration::from_nanos(t.from_due.value_at_quantile(q));
    Ok(IngestRow {
        mode,
        round: 1,
        scheduled: check.scheduled,
        ok: t.ok,
        errors: t.errors + check.unfinished,
        unfinished: check.unfinished,
        check_rate: (t.ok + t.errors) as f64 / check.window.as_secs_f64(),
        p50: q(0.5),
        p99: q(0.99),
        p999: q(0.999),
        max: Duration::from_nanos(t.from_due.max()),
        p99_from_send: Duration::from_nanos(t.from_send.value_at_quantile(0.99)),
        p99_send_late: Duration::from_nanos(t.send_late.value_at_quantile(0.99)),
        events,
        events_per_s: events as f64 / events_elapsed.as_secs_f64(),
        event_errors,
        check_cpu,
        other_cpu,
        served,
        log_append,
    })
}

/// The median of `values` (the lower middle one for an even count).
pub fn median<T: PartialOrd + Copy>(values: &[T]) -> Option<T> {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v.get(v.len().saturating_sub(1) / 2).copied()
}

/// One request for a connection: its number and when it is due.
struct Due {
    n: u64,
    at: Instant,
    measured: bool,
}

struct Tally {
    ok: u64,
    errors: u64,
    last_answer: Option<Instant>,
    /// Latency of the 200 answers from each request's due time.
    from_due: Histogram<u64>,
    /// ... from the moment it was written (the service and the socket only).
    from_send: Histogram<u64>,
    /// How late each request was written: the load generator's own share.
    send_late: Histogram<u64>,
}

impl Tally {
    fn new() -> Tally {
        Tally { ok: 0, errors: 0, last_answer: None, from_due: histogram(), from_send: histogram(), send_late: histogram() }
    }
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    h.saturating_record((d.as_nanos() as u64).max(1_000));
}

struct CheckOutcome {
    tally: Tally,
    scheduled: u64,
    unfinished: u64,
    /// From the first measured request's due time to the last measured answer.
    window: Duration,
}

fn histogram() -> Histogram<u64> {
    // Nanoseconds, 1 µs to 10 minutes, three significant digits.
    Histogram::new_with_bounds(1_000, 600_000_000_000, 3).expect("static bounds are valid")
}

/// The `/v1/check` body of request `n`: mixed steps and outcomes over 50,000
/// customers and 30,000 devices, as `detector/bench/check.lua`, with the
/// wall clock as its time.
pub fn check_body(out: &mut Vec<u8>, tag: char, n: u64, now_ms: i64) {
    use std::io::Write;
    const STEPS: [&str; 6] = ["login", "otp", "id_ocr", "face_match", "liveness", "account_verify"];
    out.clear();
    let _ = write!(
        out,
        r#"{{"event_id":"b{tag}{n}","ts":"{}","step":"{}","result":"{}","customer_id":"c{}","ip":"10.{}.{}.{}","device_id":"d{}","session_id":"s{}","duration_ms":{}}}"#,
        format_rfc3339_ms(now_ms),
        STEPS[(n % 6) as usize],
        if n.is_multiple_of(11) { "failure" } else { "success" },
        n % 50_000,
        n % 7,
        (n / 7) % 250,
        n % 200,
        n % 30_000,
        n / 6,
        2000 + (n * 7919) % 9000,
    );
}

async fn check_load(addr: SocketAddr, opts: &IngestOptions, tag: char) -> std::io::Result<CheckOutcome> {
    let rate = opts.rate.max(1);
    let warm = rate * opts.warmup;
    let total = warm + rate * opts.seconds;
    let mut conns = Vec::with_capacity(opts.connections);
    for _ in 0..opts.connections.max(1) {
        conns.push(Conn::connect(addr).await?);
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Due>();
    // Whichever connection is free takes the next due request.
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let tally = Arc::new(Mutex::new(Tally::new()));
    let mut tasks = tokio::task::JoinSet::new();
    for mut conn in conns {
        let (rx, tally) = (rx.clone(), tally.clone());
        tasks.spawn(async move {
            let mut body = Vec::with_capacity(512);
            loop {
                let Some(due) = rx.lock().await.recv().await else { break };
                check_body(&mut body, tag, due.n, crate::enforce::now_ms());
                let sent = Instant::now();
                let answer = conn.post("/v1/check", "application/json", &body).await.map(|(status, _)| status);
                let done = Instant::now();
                if due.measured {
                    let mut t = tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    t.last_answer = Some(done);
                    if let Ok(200) = answer {
                        t.ok += 1;
                        record(&mut t.from_due, done.saturating_duration_since(due.at));
                        record(&mut t.from_send, done.saturating_duration_since(sent));
                        record(&mut t.send_late, sent.saturating_duration_since(due.at));
                    } else {
                        t.errors += 1;
                    }
                }
                if answer.is_err() {
                    // A broken connection: open another, or give up on this one.
                    match Conn::connect(addr).await {
                        Ok(c) => conn = c,
                        Err(_) => break,
                    }
                }
            }
        });
    }
    // Pacing on a thread of its own: tokio's timers tick in milliseconds, a
    // thread's sleep is good to tens of microseconds.
    let start = Instant::now() + Duration::from_millis(20);
    let pacer = std::thread::Builder::new().name("bench-pacer".into()).spawn(move || {
        for n in 0..total {
            let at = start + Duration::from_nanos((u128::from(n) * 1_000_000_000 / u128::from(rate)) as u64);
            if let Some(wait) = at.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            if tx.send(Due { n, at, measured: n >= warm }).is_err() {
                break;
            }
        }
    })?;
    let measured_from = start + Duration::from_nanos((u128::from(warm) * 1_000_000_000 / u128::from(rate)) as u64);
    let last_due = start + Duration::from_nanos((u128::from(total) * 1_000_000_000 / u128::from(rate)) as u64);
    // Wait for the pacer without blocking this runtime, then for the answers.
    tokio::time::sleep_until(last_due.into()).await;
    while !pacer.is_finished() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = pacer.join();
    let drained = tokio::time::timeout(DRAIN, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    let t = std::mem::replace(&mut *tally.lock().unwrap_or_else(std::sync::PoisonError::into_inner), Tally::new());
    let scheduled = total - warm;
    Ok(CheckOutcome {
        scheduled,
        unfinished: scheduled - t.ok - t.errors,
        window: t.last_answer.unwrap_or(last_due).saturating_duration_since(measured_from).max(Duration::from_millis(1)),
        tally: t,
    })
}

/// One NDJSON batch of new login events, as `detector/bench/events.lua`.
pub fn events_body(out: &mut Vec<u8>, tag: char, conn: usize, first: u64, count: usize, now_ms: i64) {
    use std::io::Write;
    out.clear();
    let ts = format_rfc3339_ms(now_ms);
    for n in first..first + count as u64 {
        let _ = writeln!(
            out,
            r#"{{"event_id":"e{tag}{conn}-{n}","ts":"{ts}","step":"login","result":"success","customer_id":"c{}","ip":"10.{}.{}.{}","device_id":"d{}"}}"#,
            n % 50_000,
            n % 7,
            (n / 7) % 250,
            n % 200,
            n % 30_000,
        );
    }
}

/// The `accepted` count at the start of a `/v1/events` answer.
pub fn accepted_count(body: &[u8]) -> Option<u64> {
    let at = memchr::memmem::find(body, b"\"accepted\":")? + b"\"accepted\":".len();
    let digits = body[at..].iter().take_while(|b| b.is_ascii_digit()).count();
    std::str::from_utf8(&body[at..at + digits]).ok()?.parse().ok()
}

/// Two connections posting batches back to back for half the check time.
async fn events_load(addr: SocketAddr, opts: &IngestOptions, tag: char) -> std::io::Result<(u64, u64, Duration)> {
    let run_for = Duration::from_millis(opts.seconds * 500).max(Duration::from_secs(1));
    let started = Instant::now();
    let until = started + run_for;
    let batch = opts.batch.max(1);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..2 {
        let mut conn = Conn::connect(addr).await?;
        tasks.spawn(async move {
            let (mut accepted, mut errors, mut body, mut n) = (0u64, 0u64, Vec::with_capacity(batch * 200), 0u64);
            while Instant::now() < until {
                events_body(&mut body, tag, c, n, batch, crate::enforce::now_ms());
                n += batch as u64;
                match conn.post("/v1/events", "application/x-ndjson", &body).await {
                    Ok((200, answer)) => accepted += accepted_count(answer).unwrap_or(0),
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        conn = Conn::connect(addr).await?;
                    }
                }
            }
            Ok::<_, std::io::Error>((accepted, errors))
        });
    }
    let (mut accepted, mut errors) = (0, 0);
    while let Some(r) = tasks.join_next().await {
        let (a, e) = r.map_err(std::io::Error::other)??;
        accepted += a;
        errors += e;
    }
    Ok((accepted, errors, started.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_events_are_valid_and_distinct() {
        let pipeline = crate::Pipeline::new(Config::default()).unwrap();
        let now = crate::enforce::now_ms();
        let mut body = Vec::new();
        let mut ids = std::collections::HashSet::new();
        for n in [0, 1, 11, 49_999, 1_000_003] {
            check_body(&mut body, 'i', n, now);
            let e = pipeline.parse(&body).unwrap();
            assert_eq!(e.ts_ms, now);
            assert!(ids.insert(e.event_id.to_string()));
        }
        events_body(&mut body, 'i', 1, 7, 3, now);
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            assert!(ids.insert(pipeline.parse(line).unwrap().event_id.to_string()));
        }
        assert_eq!(ids.len(), 8);
    }

    #[test]
    fn the_accepted_count_is_read_from_an_events_answer() {
        assert_eq!(accepted_count(br#"{"accepted":1000,"rejected":[],"decisions":[]}"#), Some(1000));
        assert_eq!(accepted_count(br#"{"accepted":0,"rejected":[{"line":1}]}"#), Some(0));
        assert_eq!(accepted_count(br#"{"error":"overloaded"}"#), None);
    }

    #[test]
    fn the_median_is_the_middle_value() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4, 1, 3, 2]), Some(2));
        assert_eq!(median::<u32>(&[]), None);
    }

    #[test]
    fn served_reads_the_buckets() {
        let h = prometheus::Histogram::with_opts(prometheus::HistogramOpts::new("t", "t").buckets(vec![1e-4, 1e-3, 1e-2])).unwrap();
        for _ in 0..98 {
            h.observe(5e-5);
        }
        h.observe(5e-4);
        h.observe(5e-3);
        let s = Served::of(&h);
        assert_eq!((s.count, s.over_1ms), (100, 1));
        assert_eq!(s.p99_under, Some(Duration::from_secs_f64(1e-3)));
    }

    #[test]
    fn modes_parse_by_name() {
        for m in Durability::ALL {
            assert_eq!(Durability::parse(m.name()), Some(m));
        }
        assert_eq!(Durability::parse("interval"), Some(Durability::Log(Fsync::Interval)));
        assert_eq!(Durability::parse("memory"), Some(Durability::MemoryOnly));
        assert_eq!(Durability::parse("sometimes"), None);
    }
}
