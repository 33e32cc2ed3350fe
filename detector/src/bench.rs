//! `haechi bench`: memory figures that need a whole store, printed as they go.

use std::collections::BTreeMap;
use std::io::BufRead;

use haechi_features::{EntityKind, Event, FeatureConfig, FeatureStore, Outcome, Step};

use crate::error::DetectorError;
use crate::pipeline::Pipeline;
use crate::replay::read_bounded_line;

/// Resident set size of this process, from /proc (Linux), in bytes.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
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
    let mut event = Event {
        event_id: Default::default(),
        ts_ms: t0,
        step: Step::Login,
        result: Outcome::Failure,
        failure_reason: None,
        session_id: None,
        customer_id: None,
        id_doc_hash: None,
        ip: None,
        device_id: None,
        user_agent: None,
        channel: None,
        region: None,
        duration_ms: None,
        account_hash: None,
        staff_id: None,
        records: None,
        attrs: Default::default(),
    };
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
