//! What the feature-store benchmarks share: the onboarding-like event they
//! feed, and the measured loop that keeps event time moving.

use std::collections::BTreeMap;
use std::net::IpAddr;

use criterion::{black_box, measurement::WallTime, BenchmarkGroup};
use haechi_features::{Event, FeatureStore, Outcome, Step};

/// Event `i` of sessions of six steps, `gap_ms` apart: `customer` names the
/// customer, their ID document and account; `device` their device.
pub fn session_event(i: usize, gap_ms: i64, customer: usize, device: usize, ip: IpAddr) -> Event {
    Event {
        event_id: format!("e{i}").into(),
        ts_ms: 1_764_000_000_000 + i as i64 * gap_ms,
        step: Step::ALL[i % 7],
        result: if i.is_multiple_of(9) { Outcome::Failure } else { Outcome::Success },
        failure_reason: None,
        session_id: Some(format!("s{}", i / 6).into()),
        customer_id: Some(format!("c{customer}").into()),
        id_doc_hash: Some(format!("doc{customer}").into()),
        ip: Some(ip),
        device_id: Some(format!("dev{device}").into()),
        user_agent: Some("Mozilla/5.0 (Linux; Android 14) KBank/5.2".into()),
        channel: None,
        region: Some("KR-11".into()),
        duration_ms: Some(2000 + (i as u64 * 7919) % 9000),
        account_hash: Some(format!("acct{customer}").into()),
        staff_id: None,
        records: None,
        attrs: BTreeMap::new(),
    }
}

/// Measure `store.observe` over `evs` round and round. Each round moves every
/// event `span` ms later, so that every event updates state.
pub fn bench_observe(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, store: &FeatureStore, evs: &mut [Event], span: i64) {
    let mut out = vec![0.0f32; store.catalog().len()];
    let mut i = 0;
    g.bench_function(name, |b| {
        b.iter(|| {
            if i > 0 && i % evs.len() == 0 {
                evs.iter_mut().for_each(|e| e.ts_ms += span);
            }
            let e = &evs[i % evs.len()];
            i += 1;
            black_box(store.observe(black_box(e), &mut out));
        })
    });
}
