//! A NAT exit carrying a third of the traffic should cost no more per event
//! than a quiet address: the feature update for events through one hot
//! address (tens of thousands of customers, devices and documents behind it,
//! its distinct sets and rings full) beside the same events each through an
//! address of its own, in one run.

use std::collections::BTreeMap;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use haechi_features::{Event, FeatureConfig, FeatureStore, Outcome, Step};

/// Sessions of six steps by 50,000 customers; `hot`: every one through the
/// same carrier exit, else each customer through an address of its own.
fn events(n: usize, hot: bool) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let who = (i / 6) % 50_000;
            Event {
                event_id: format!("e{i}").into(),
                ts_ms: 1_764_000_000_000 + i as i64 * 20,
                step: Step::ALL[i % 7],
                result: if i % 9 == 0 { Outcome::Failure } else { Outcome::Success },
                failure_reason: None,
                session_id: Some(format!("s{}", i / 6).into()),
                customer_id: Some(format!("c{who}").into()),
                id_doc_hash: Some(format!("doc{who}").into()),
                ip: Some(if hot { "223.38.14.9".parse().unwrap() } else { format!("121.{}.{}.{}", who / 40_000, (who / 200) % 200, 1 + who % 200).parse().unwrap() }),
                device_id: Some(format!("dev{who}").into()),
                user_agent: Some("Mozilla/5.0 (Linux; Android 14) KBank/5.2".into()),
                channel: None,
                region: Some("KR-11".into()),
                duration_ms: Some(2000 + (i as u64 * 7919) % 9000),
                account_hash: Some(format!("acct{who}").into()),
                staff_id: None,
                records: None,
                attrs: BTreeMap::new(),
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("hot_entity");
    g.throughput(Throughput::Elements(1));
    for (name, hot) in [("quiet_addresses", false), ("one_nat_exit_for_all", true)] {
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut evs = events(300_000, hot);
        let span = evs.last().unwrap().ts_ms - evs[0].ts_ms + 20;
        let mut out = vec![0.0f32; store.catalog().len()];
        // Warm: the hot address's sets and rings are full before measuring.
        for e in &evs {
            store.observe(e, &mut out);
        }
        evs.iter_mut().for_each(|e| e.ts_ms += span);
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
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
