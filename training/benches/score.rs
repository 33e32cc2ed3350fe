//! Scoring one row with a 100-tree forest (ψ = 256): the per-event cost of
//! the model in the stream.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use haechi_training::{read_csv, IsolationForestParams, LabelColumn};
use linfa::prelude::*;

fn bench(c: &mut Criterion) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/odds/mammography.csv");
    let table = read_csv(&path, &LabelColumn::Last).expect("training/data/odds/mammography.csv");
    let model = IsolationForestParams::new().seed(0).fit(&Dataset::from(table.features.clone())).unwrap();
    let rows: Vec<Vec<f64>> = table.features.rows().into_iter().map(|r| r.to_vec()).collect();
    let mut g = c.benchmark_group("isolation_forest");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("score_one_event_100_trees", |b| {
        b.iter(|| {
            let r = &rows[i % rows.len()];
            i += 1;
            black_box(model.score_row(black_box(r)))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
