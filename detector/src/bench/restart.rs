//! `haechi bench restart`: what a snapshot costs and how long a restart
//! takes to be ready, on a data dir holding about a million entities.
//!
//! The service's own paths, without HTTP: [`build_state`] on the data dir,
//! events through [`AppState::accept`] in batches (log append, then
//! decision, as the `/v1/events` handler does), [`DataDir::write_snapshot`]
//! as the snapshot task does. A restart is timed in a fresh process (see
//! [`probe`]), so that its time and peak memory are its own.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use haechi_features::{format_rfc3339_ms, EntityKind, KIND_COUNT};
use serde::{Deserialize, Serialize};

use crate::durable::SnapshotReport;
use crate::error::DetectorError;
use crate::service::{build_state, AppState};
use crate::Config;

/// Events per [`AppState::accept`] call.
pub const BATCH: usize = 1000;

/// The configuration the bench runs under: `config` on `data_dir`, with
/// the caps of the kinds each event mints raised to `entities` + 1/8 where
/// they are lower, so that nothing is evicted. Returns the kinds raised.
pub fn restart_config(config: &Config, data_dir: &Path, entities: usize) -> (Config, Vec<&'static str>) {
    let mut config = config.clone();
    config.storage.data_dir = Some(data_dir.to_path_buf());
    config.server.watch_files = false;
    config.server.audit_log = None;
    config.blocks.state_file = None;
    // The fill gives every event a session of its own, which `auto` would
    // take for request ids and key by device halfway through: the tail
    // would then meet other session entities than the fill left.
    config.features.session_ids = haechi_features::SessionIds::AsReported;
    let want = entities + entities / 8;
    let caps = &mut config.features.max_entities;
    let mut raised = Vec::new();
    for (name, cap) in [("customer", &mut caps.customer), ("ip", &mut caps.ip), ("subnet", &mut caps.subnet), ("device", &mut caps.device), ("session", &mut caps.session)] {
        if *cap < want {
            *cap = want;
            raised.push(name);
        }
    }
    (config, raised)
}

/// Live entities by kind.
pub fn entities_by_kind(state: &AppState) -> [usize; KIND_COUNT] {
    let store = state.pipeline.store();
    EntityKind::ALL.map(|k| store.entity_count(k))
}

/// Event `i` of the fill: a fresh customer, device, session and IPv4
/// address (a /24 holds 256 of them). In the tail, `i` cycles over the
/// fill's, so the same entities come back.
pub fn restart_event(out: &mut Vec<u8>, id: &str, i: u64, ts_ms: i64, step: &str) {
    use std::io::Write;
    let ip = std::net::Ipv4Addr::from(0x0A00_0000u32.wrapping_add(i as u32));
    out.clear();
    let _ = write!(
        out,
        r#"{{"event_id":"{id}","ts":"{}","step":"{step}","result":"success","customer_id":"rc{i}","device_id":"rd{i}","session_id":"rs{i}","ip":"{ip}","duration_ms":{}}}"#,
        format_rfc3339_ms(ts_ms),
        1500 + (i * 7919) % 9000,
    );
}

/// What feeding the state took.
#[derive(Debug, Clone, Copy)]
pub struct Fed {
    pub events: u64,
    /// Events the service refused (none expected).
    pub refused: u64,
    /// Time in parse and accept (generating the text is not counted).
    pub busy: Duration,
}

/// Event time for event `j` of `total_est`: spread over the hour before
/// `t0_ms + 1 h`, in order, never ahead of the wall clock.
struct Clock {
    t0_ms: i64,
    total_est: u64,
}

impl Clock {
    fn at(&self, j: u64) -> i64 {
        let ts = self.t0_ms + (u128::from(j) * 3_300_000 / u128::from(self.total_est.max(1))) as i64;
        ts.min(crate::enforce::now_ms())
    }
}

/// Feed `count` events (or, with `until_entities`, until the store holds
/// that many), event `j` (global) built by `make`.
fn feed(state: &AppState, clock: &Clock, first_j: u64, count: Option<u64>, until_entities: Option<usize>, mut make: impl FnMut(&mut Vec<u8>, u64, i64)) -> Result<Fed, DetectorError> {
    let mut scratch = state.pipeline.scratch();
    let mut lines: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(256)).collect();
    let mut fed = Fed { events: 0, refused: 0, busy: Duration::ZERO };
    let mut j = first_j;
    loop {
        let n = match count {
            Some(c) => (c - fed.events).min(BATCH as u64) as usize,
            None => BATCH,
        };
        if n == 0 || until_entities.is_some_and(|e| entities_by_kind(state).iter().sum::<usize>() >= e) {
            return Ok(fed);
        }
        for line in &mut lines[..n] {
            make(line, j, clock.at(j));
            j += 1;
        }
        let started = Instant::now();
        let mut batch = Vec::with_capacity(n);
        for line in &lines[..n] {
            match state.pipeline.parse(line) {
                Ok(e) => batch.push((line.as_slice(), e)),
                Err(_) => fed.refused += 1,
            }
        }
        state.accept(&batch, &mut scratch, |_, r| {
            if r.is_err() {
                fed.refused += 1;
            }
        })?;
        fed.busy += started.elapsed();
        fed.events += n as u64;
    }
}

/// The state as the bench left it before the restart.
#[derive(Debug, Clone)]
pub struct Before {
    pub fill: Fed,
    pub entities: [usize; KIND_COUNT],
    pub evicted: u64,
    pub snapshot: SnapshotReport,
    pub tail: Fed,
    /// Entities after the tail (what a restart must find).
    pub entities_after_tail: [usize; KIND_COUNT],
    pub log_next_offset: u64,
    pub rss_bytes: u64,
}

/// Fill a new data dir to `entities`, snapshot it, add `tail` events on the
/// same entities, and drop everything (no final snapshot, the data dir
/// unlocked): the state a stop leaves for the next start.
///
/// # Errors
/// When the data dir cannot be opened or written.
pub fn prepare(config: &Config, entities: usize, tail: u64, mut progress: impl FnMut(&str)) -> Result<Before, DetectorError> {
    let state = build_state(config.clone())?;
    let data = state.data.clone().ok_or_else(|| DetectorError::Snapshot("bench restart needs storage.data_dir".into()))?;
    if data.has_state() {
        return Err(DetectorError::Input { path: data.path().display().to_string(), message: "bench restart needs an empty data dir".into() });
    }
    // Events per fill event: customer, device, session, ip, and a /24 per 256.
    let fill_est = (entities as u64 * 256).div_ceil(4 * 256 + 1);
    let clock = Clock { t0_ms: crate::enforce::now_ms() - 3_600_000, total_est: fill_est + tail };
    let fill = feed(&state, &clock, 0, None, Some(entities), |out, j, ts| restart_event(out, &format!("rf{j}"), j, ts, "login"))?;
    let by_kind = entities_by_kind(&state);
    progress(&format!("filled: {} events, {} entities in {:.1}s", fill.events, by_kind.iter().sum::<usize>(), fill.busy.as_secs_f64()));
    let snapshot = data.write_snapshot(&state.pipeline, &state.feed, &state.topic_offsets)?;
    progress(&format!("snapshot: {} bytes", snapshot.bytes));
    const STEPS: [&str; 4] = ["otp", "id_ocr", "face_match", "liveness"];
    let fill_events = fill.events;
    let tail = feed(&state, &clock, fill_events, Some(tail), None, |out, j, ts| {
        let k = j - fill_events;
        restart_event(out, &format!("rt{k}"), k % fill_events, ts, STEPS[(k % 4) as usize]);
    })?;
    let entities_after_tail = entities_by_kind(&state);
    let before = Before {
        fill,
        entities: by_kind,
        evicted: state.pipeline.store().stats().evicted.iter().sum(),
        snapshot,
        tail,
        entities_after_tail,
        log_next_offset: data.log().next_offset(),
        rss_bytes: super::rss_bytes().unwrap_or(0),
    };
    drop(data);
    // The last holder: dropping it closes the logs (joining the fsync
    // thread) and unlocks the data dir.
    let state = Arc::try_unwrap(state).map_err(|_| DetectorError::Snapshot("the state is still shared".into()))?;
    drop(state);
    Ok(before)
}

/// One restart, measured in the process that does it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    /// `build_state` on the data dir: snapshot load and log tail replay.
    pub ready_ms: f64,
    pub replayed: u64,
    pub entities: [usize; KIND_COUNT],
    /// RSS when ready, and the process's peak.
    pub rss_bytes: u64,
    pub peak_rss_bytes: u64,
    /// A snapshot written after the measurement (`snapshot_after`): its size and times.
    pub snapshot_bytes: Option<u64>,
    pub snapshot_paused_ms: Option<f64>,
    pub snapshot_written_ms: Option<f64>,
}

/// Start on the data dir `config` names and report (run in a fresh
/// process); then, with `snapshot_after`, write a snapshot covering
/// everything, so that the next start replays nothing.
///
/// # Errors
/// When the state cannot be recovered or the snapshot written.
pub fn probe(config: &Config, snapshot_after: bool) -> Result<Probe, DetectorError> {
    let started = Instant::now();
    let state = build_state(config.clone())?;
    let ready = started.elapsed();
    let mut p = Probe {
        ready_ms: ready.as_secs_f64() * 1000.0,
        replayed: state.metrics.recovered_events.get() as u64,
        entities: entities_by_kind(&state),
        rss_bytes: super::rss_bytes().unwrap_or(0),
        peak_rss_bytes: super::peak_rss_bytes().unwrap_or(0),
        snapshot_bytes: None,
        snapshot_paused_ms: None,
        snapshot_written_ms: None,
    };
    if snapshot_after {
        if let Some(data) = &state.data {
            let r = data.write_snapshot(&state.pipeline, &state.feed, &state.topic_offsets)?;
            p.snapshot_bytes = Some(r.bytes);
            p.snapshot_paused_ms = Some(r.paused.as_secs_f64() * 1000.0);
            p.snapshot_written_ms = Some(r.written.as_secs_f64() * 1000.0);
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_restart_finds_every_entity_again() {
        let dir = tempfile::tempdir().unwrap();
        let (config, raised) = restart_config(&Config::default(), &dir.path().join("data"), 2_000);
        assert!(raised.is_empty(), "the default caps hold 2,000 entities");
        let before = prepare(&config, 2_000, 700, |_| {}).unwrap();
        assert!(before.entities.iter().sum::<usize>() >= 2_000, "{before:?}");
        assert_eq!(before.fill.refused + before.tail.refused + before.evicted, 0, "{before:?}");
        assert_eq!(before.entities, before.entities_after_tail, "the tail touches the same entities");
        // The lock is free again: a start in this process works.
        let p = probe(&config, true).unwrap();
        assert_eq!(p.replayed, 700);
        assert_eq!(p.entities, before.entities_after_tail);
        assert!(p.snapshot_bytes.is_some());
        let again = probe(&config, false).unwrap();
        assert_eq!((again.replayed, again.entities), (0, before.entities_after_tail));
    }

    #[test]
    fn caps_below_the_target_are_raised() {
        let mut config = Config::default();
        config.features.max_entities = haechi_features::EntityCaps::all(1_000);
        let (c, raised) = restart_config(&config, Path::new("x"), 8_000);
        assert_eq!(raised, ["customer", "ip", "subnet", "device", "session"]);
        assert_eq!(c.features.max_entities.ip, 9_000);
        assert_eq!(c.features.max_entities.account, 1_000);
    }
}
