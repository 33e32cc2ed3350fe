//! Evaluation of the whole default pack on one event, with real feature
//! vectors: the shipped sample stream is run through a feature store first,
//! and the benchmark cycles over the (event, features) pairs it produced.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use haechi_features::{Event, FeatureConfig, FeatureStore, DEFAULT_MAX_EVENT_BYTES};
use haechi_rules::RuleSet;

fn bench(c: &mut Criterion) {
    let sample = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../datasets/sample/events.jsonl")).expect("sample stream");
    let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
    let set = RuleSet::default_pack(store.catalog()).unwrap();
    let mut cases: Vec<(Event, Vec<f32>)> = Vec::new();
    for line in sample.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let e = Event::parse(line, DEFAULT_MAX_EVENT_BYTES).unwrap();
        let mut f = vec![0.0; store.catalog().len()];
        store.observe(&e, &mut f);
        cases.push((e, f));
    }
    let mut g = c.benchmark_group("rules");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function(format!("default_pack_{}_rules_per_event", set.rules().len()), |b| {
        b.iter(|| {
            let (e, f) = &cases[i % cases.len()];
            i += 1;
            let mut fired = 0u32;
            set.evaluate(black_box(e), black_box(f), |_| fired += 1);
            black_box(fired)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
