//! A NAT exit carrying a third of the traffic should cost no more per event
//! than a quiet address: the feature update for events through one hot
//! address (tens of thousands of customers, devices and documents behind it,
//! its distinct sets and rings full) beside the same events each through an
//! address of its own, in one run.

mod support;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use haechi_features::{Event, FeatureConfig, FeatureStore};
use support::{bench_observe, session_event};

/// Sessions of six steps by 50,000 customers; `hot`: every one through the
/// same carrier exit, else each customer through an address of its own.
fn events(n: usize, hot: bool) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let who = (i / 6) % 50_000;
            let ip = if hot { "223.38.14.9".parse().unwrap() } else { format!("121.{}.{}.{}", who / 40_000, (who / 200) % 200, 1 + who % 200).parse().unwrap() };
            session_event(i, 20, who, who, ip)
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
        bench_observe(&mut g, name, &store, &mut evs, span);
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
