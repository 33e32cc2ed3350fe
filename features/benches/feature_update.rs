//! Per-event cost of the feature update alone: parse excluded, every entity
//! of a typical onboarding event updated and its features written.

mod support;

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use haechi_features::{Event, FeatureConfig, FeatureStore};
use support::{bench_observe, session_event};

/// Sessions of six steps; 70% of customers behind 24 carrier-NAT addresses,
/// the rest on their own home line; one device per customer.
fn events(n: usize) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let ip = if (i / 6) % 10 < 7 {
                format!("223.38.{}.{}", 14 + (i / 6) % 3, 2 + (i / 6) % 8).parse().unwrap()
            } else {
                format!("121.{}.{}.{}", (i / 6) % 250, (i / 1500) % 250, 1 + (i / 6) % 200).parse().unwrap()
            };
            session_event(i, 50, (i / 6) % 20_000, (i / 6) % 15_000, ip)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
    let mut evs = events(200_000);
    let span = evs.last().unwrap().ts_ms - evs[0].ts_ms + 50;
    let mut g = c.benchmark_group("feature_store");
    g.throughput(Throughput::Elements(1));
    bench_observe(&mut g, "observe_one_event_8_entities", &store, &mut evs, span);
    g.finish();

    // The keyed entity hash alone, over the eight keys of a typical event:
    // SipHash-1-3 (what the store uses) against the seeded xxh3 it replaced.
    let keys: [&[u8]; 8] = [b"c12345", b"doc12345", &[223, 38, 14, 2], &[223, 38, 14], b"dev12345", b"acct12345", b"KR-11", b"s123456"];
    let key = haechi_features::HashKey::from_seed(7);
    let mut g = c.benchmark_group("entity_hash_8_keys");
    g.bench_function("siphash13_keyed", |b| {
        b.iter(|| {
            let mut x = 0u64;
            for (i, k) in keys.iter().enumerate() {
                x ^= haechi_features::entity_hash(key, haechi_features::EntityKind::ALL[i], black_box(k));
            }
            x
        })
    });
    g.bench_function("xxh3_seeded_before", |b| {
        b.iter(|| {
            let mut x = 0u64;
            for (i, k) in keys.iter().enumerate() {
                x ^= xxhash_rust::xxh3::xxh3_64_with_seed(black_box(k), 7 ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            }
            x
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
