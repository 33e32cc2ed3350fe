//! `haechi bench`: memory figures that need a whole store, printed as they
//! go; and the durable service's costs ([`ingest`], [`restart`]).

pub mod http;
pub mod ingest;
pub mod restart;

use std::collections::BTreeMap;
use std::io::BufRead;

use haechi_features::{EntityKind, Event, FeatureConfig, FeatureStore, Outcome, Step};

use crate::error::DetectorError;
use crate::pipeline::Pipeline;
use crate::driver::read_bounded_line;

/// Resident set size of this process, from /proc (Linux), in bytes.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Peak resident set size of this process (VmHWM), in bytes.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// CPU time this process has used, user and system, in seconds (Linux;
/// 100 ticks a second, the kernel's `USER_HZ` everywhere in practice).
pub fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which may hold spaces: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace().skip(11);
    let (user, system): (u64, u64) = (fields.next()?.parse().ok()?, fields.next()?.parse().ok()?);
    Some((user + system) as f64 / 100.0)
}

/// CPU time the whole machine has used (every state but idle and I/O wait),
/// in seconds, from /proc/stat (Linux).
pub fn machine_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line.split_whitespace().map(|t| t.parse().unwrap_or(0)).collect();
    // user nice system idle iowait irq softirq steal (guest time is inside user).
    let busy: u64 = ticks.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, t)| t).sum();
    Some(busy as f64 / 100.0)
}

/// One progress row of the spray benchmark.
#[derive(Debug, Clone, Copy)]
pub struct SprayRow {
    pub keys: u64,
    pub live_ips: usize,
    pub live_devices: usize,
    pub rss_bytes: u64,
    /// Map slots allocated, all kinds.
    pub capacity: usize,
}

/// Spray `keys` events, each from a fresh IP and a fresh device, spread over
/// `days` of event time, and report memory every `every` events. With entities
/// expiring after their longest window, the live set, and with it memory,
/// levels off once a day's worth of keys is in, however many keys follow.
///
/// # Errors
/// When the configuration does not validate.
pub fn spray(keys: u64, days: u64, every: u64, mut report: impl FnMut(SprayRow)) -> Result<(), DetectorError> {
    let store = FeatureStore::new(&FeatureConfig::default())?;
    let mut out = vec![0.0; store.catalog().len()];
    let t0: i64 = 1_793_545_200_000;
    let step_ms = (days * 86_400_000 / keys.max(1)).max(1) as i64;
    let mut event = failed_login(t0, None, None);
    let mut device = String::with_capacity(24);
    for i in 0..keys {
        // A pseudo-random walk over the whole IPv4 space: fresh /24s too.
        let x = (i as u32).wrapping_mul(2_654_435_761).rotate_left(13) ^ 0x5bd1_e995;
        event.ip = Some(std::net::Ipv4Addr::from(x).into());
        device.clear();
        use std::fmt::Write;
        let _ = write!(device, "spray-{i:x}");
        event.device_id = Some(device.as_str().into());
        event.ts_ms = t0 + i as i64 * step_ms;
        store.observe(&event, &mut out);
        if (i + 1) % every == 0 {
            report(SprayRow {
                keys: i + 1,
                live_ips: store.entity_count(EntityKind::Ip),
                live_devices: store.entity_count(EntityKind::Device),
                rss_bytes: rss_bytes().unwrap_or(0),
                capacity: EntityKind::ALL.iter().map(|&k| store.entity_capacity(k)).sum(),
            });
        }
    }
    Ok(())
}

/// Bytes per entity, by kind, after replaying a stream: (kind, live entities, bytes each).
///
/// # Errors
/// When reading the input fails.
pub fn entity_sizes(pipeline: &Pipeline, input: &mut dyn BufRead) -> Result<BTreeMap<EntityKind, (usize, f64)>, DetectorError> {
    let mut scratch = pipeline.scratch();
    let mut line = Vec::new();
    while read_bounded_line(input, &mut line, pipeline.config().pipeline.max_event_bytes)?.is_some() {
        if let Ok(e) = pipeline.parse(&line) {
            let _ = pipeline.process(&e, &mut scratch);
        }
    }
    let store = pipeline.store();
    Ok(EntityKind::ALL
        .into_iter()
        .map(|k| {
            let n = store.entity_count(k);
            (k, (n, if n == 0 { 0.0 } else { store.entity_bytes(k) as f64 / n as f64 }))
        })
        .collect())
}

/// One progress row of the real-time spray.
#[derive(Debug, Clone, Copy)]
pub struct LiveRow {
    pub elapsed_s: u64,
    pub events: u64,
    pub live_ips: usize,
    pub live_subnets: usize,
    pub live_devices: usize,
    pub live_sessions: usize,
    /// Entities evicted for the caps so far, all kinds.
    pub evicted: u64,
    pub rss_bytes: u64,
}

/// Spray the whole pipeline, as `haechi serve` runs it (background sweeps
/// on a thread of their own, wall-clock enforcement), with events whose
/// event time is the wall clock: each from a fresh IPv6 address (a fresh /64
/// too), a fresh device and a fresh session, against a thousand customers,
/// at `rate` events a second for `seconds`. Nothing ever idles out inside
/// the run, so only the entity caps bound memory. Reports every `every_s`.
///
/// # Errors
/// When the pipeline cannot be built.
pub fn spray_live(mut config: crate::Config, rate: u64, seconds: u64, every_s: u64, mut report: impl FnMut(LiveRow)) -> Result<(), DetectorError> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    config.pipeline.enforcement_clock = crate::enforce::EnforcementClock::Wall;
    let pipeline = Arc::new(Pipeline::new(config)?);
    pipeline.sweep_in_background();
    let stop = Arc::new(AtomicBool::new(false));
    let sweeper = {
        let (p, stop) = (pipeline.clone(), stop.clone());
        std::thread::spawn(move || {
            // As the service's housekeeping loop: entities every half
            // second, blocks and limiter keys every five.
            for n in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(500));
                p.sweep_due();
                if n % 10 == 0 {
                    p.enforcer().sweep(crate::enforce::now_ms());
                }
            }
        })
    };
    let mut scratch = pipeline.scratch();
    let mut event = failed_login(0, Some("Mozilla/5.0 (Linux; Android 14) KBank/5.2".into()), Some(1500));
    let started = Instant::now();
    let tick = Duration::from_millis(100);
    let per_tick = (rate / 10).max(1);
    let mut n: u64 = 0;
    let mut next_report = every_s;
    use std::fmt::Write;
    let mut text = String::with_capacity(32);
    for t in 1u64.. {
        let elapsed = started.elapsed();
        if elapsed.as_secs() >= seconds {
            break;
        }
        for _ in 0..per_tick {
            let x = u128::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835) ^ 0x2001_0db8_0000_0000_0000_0000_0000_0000;
            event.ip = Some(std::net::Ipv6Addr::from(x).into());
            text.clear();
            let _ = write!(text, "spray-{n:x}");
            event.event_id = text.as_str().into();
            event.device_id = Some(text.as_str().into());
            event.session_id = Some(text.as_str().into());
            event.customer_id = Some(format!("victim-{}", n % 1000).into());
            event.ts_ms = crate::enforce::now_ms();
            let _ = pipeline.process(&event, &mut scratch);
            n += 1;
        }
        let secs = started.elapsed().as_secs();
        if secs >= next_report {
            next_report += every_s;
            let store = pipeline.store();
            report(LiveRow {
                elapsed_s: secs,
                events: n,
                live_ips: store.entity_count(EntityKind::Ip),
                live_subnets: store.entity_count(EntityKind::Subnet),
                live_devices: store.entity_count(EntityKind::Device),
                live_sessions: store.entity_count(EntityKind::Session),
                evicted: store.stats().evicted.iter().sum(),
                rss_bytes: rss_bytes().unwrap_or(0),
            });
        }
        // Pace: tick t ends at t × 100 ms.
        if let Some(wait) = (tick * t as u32).checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sweeper.join();
    Ok(())
}

/// A failed login naming nothing yet: the sprays fill in the keys they spray.
fn failed_login(ts_ms: i64, user_agent: Option<String>, duration_ms: Option<u64>) -> Event {
    Event {
        event_id: Default::default(),
        ts_ms,
        step: Step::Login,
        result: Outcome::Failure,
        failure_reason: None,
        session_id: None,
        customer_id: None,
        id_doc_hash: None,
        ip: None,
        device_id: None,
        user_agent,
        channel: None,
        region: None,
        duration_ms,
        account_hash: None,
        staff_id: None,
        records: None,
        attrs: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_and_grows() {
        let before = cpu_seconds().expect("Linux");
        let mut x = 0u64;
        let t = std::time::Instant::now();
        while t.elapsed() < std::time::Duration::from_millis(100) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(cpu_seconds().unwrap() >= before + 0.05, "{x}");
        assert!(machine_cpu_seconds().unwrap() >= cpu_seconds().unwrap() - 1.0, "the machine has used at least what this process has");
    }

    /// A short real-time spray: every capped kind stays within its cap plus
    /// the eighth the sweeper may fall behind.
    #[test]
    fn a_short_real_time_spray_stays_within_the_caps() {
        let mut config = crate::Config::default();
        config.features.max_entities = haechi_features::EntityCaps::all(2_000);
        let mut rows = Vec::new();
        spray_live(config, 4_000, 3, 1, |r| rows.push(r)).unwrap();
        let last = rows.last().expect("a row a second");
        assert!(last.events >= 8_000, "{last:?}");
        assert!(last.evicted > 0, "{last:?}");
        for r in &rows {
            for live in [r.live_ips, r.live_subnets, r.live_devices, r.live_sessions] {
                assert!(live <= 2_000 + 250, "{r:?}");
            }
        }
    }
}

/// One round of `haechi bench records`: the same stream replayed without and with the access
/// records, back to back.
#[derive(Debug, Clone)]
pub struct RecordsRound {
    pub events: u64,
    pub plain_seconds: f64,
    /// Including the wait for the recorder to write, sync and sign everything.
    pub recorded_seconds: f64,
    pub records: u64,
}

/// What the records cost and take: the rounds, then verification and storage of the last store.
#[derive(Debug, Clone)]
pub struct RecordsBench {
    pub rounds: Vec<RecordsRound>,
    pub verified: u64,
    pub verify_seconds: f64,
    pub live_bytes: u64,
    pub archived_bytes: u64,
    pub archived_records: u64,
    pub live_records_archived: u64,
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    })
}

/// Replay `stream` `rounds` times without, then with, the access records (a fresh pipeline and
/// store each time; the recorder runs on its own thread, as in the service); then verify the
/// last store and archive it, to measure bytes per event.
pub fn records(config: &crate::Config, stream: &[u8], rounds: usize, dir: &std::path::Path) -> Result<RecordsBench, DetectorError> {
    use crate::driver::{self, DecisionWriter, Mode, NdjsonSource};
    use crate::recording::{Recording, RecordsSink};
    let ring = haechi_storage::KeyRing::parse(&haechi_storage::KeyRing::generate_line("bench"), "bench")?;
    let mut out = Vec::new();
    let mut last = None;
    for round in 0..rounds {
        let pipeline = Pipeline::new(config.clone())?;
        let (mut decisions, mut errors) = (std::io::sink(), std::io::sink());
        let t = std::time::Instant::now();
        let summary = driver::run(&pipeline, &mut NdjsonSource::new(&mut &stream[..]), &mut DecisionWriter::new(&mut decisions, &mut errors), Mode::Decide)?;
        let plain = t.elapsed().as_secs_f64();

        let pipeline = Pipeline::new(config.clone())?;
        let store_dir = dir.join(format!("round-{round}"));
        let recording = Recording::open(&store_dir, &config.records, &ring)?;
        let t = std::time::Instant::now();
        let mut sink = (DecisionWriter::new(&mut decisions, &mut errors), RecordsSink::new(&recording));
        driver::run(&pipeline, &mut NdjsonSource::new(&mut &stream[..]), &mut sink, Mode::Decide)?;
        drop(sink);
        recording.flush()?;
        let recorded = t.elapsed().as_secs_f64();
        out.push(RecordsRound { events: summary.accepted, plain_seconds: plain, recorded_seconds: recorded, records: 2 * summary.accepted });
        if let Some(previous) = last.replace((store_dir, recording)) {
            drop(previous.1);
            let _ = std::fs::remove_dir_all(previous.0);
        }
    }
    let (store_dir, recording) = last.ok_or_else(|| DetectorError::Input { path: "bench".into(), message: "no rounds".into() })?;
    drop(recording);
    let t = std::time::Instant::now();
    let report = haechi_records::verify(&store_dir.join("records"), &store_dir.join("records-checkpoints"), &ring)?;
    let verify_seconds = t.elapsed().as_secs_f64();
    if !report.intact() {
        return Err(DetectorError::Input { path: store_dir.display().to_string(), message: format!("the bench store does not verify: {}", report.problems[0]) });
    }
    let live_bytes = dir_bytes(&store_dir.join("records"));
    // Archive every closed segment (as if a month had passed) and weigh the archives.
    let records = haechi_records::Records::open(&store_dir, &config.records, &ring)?;
    records.maintain(crate::enforce::now_ms() + 31 * 86_400_000)?;
    let archive = store_dir.join("records/transaction/archive");
    let (mut archived_records, mut archived_bytes) = (0, 0);
    for e in std::fs::read_dir(&archive).into_iter().flatten().filter_map(Result::ok) {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some((a, b)) = name.strip_prefix("seg-").and_then(|n| n.strip_suffix(".hra")).and_then(|n| n.split_once('-')) {
            if let (Ok(a), Ok(b)) = (a.parse::<u64>(), b.parse::<u64>()) {
                archived_records += b - a + 1;
                archived_bytes += e.metadata().map_or(0, |m| m.len());
            }
        }
    }
    Ok(RecordsBench { rounds: out, verified: report.records(), verify_seconds, live_bytes, archived_bytes, archived_records, live_records_archived: archived_records })
}
