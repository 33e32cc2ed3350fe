//! # haechi-training — the isolation forest, trained offline
//!
//! This crate owns the isolation forest (Liu, Ting and Zhou, ICDM 2008) in
//! linfa's conventions: [`IsolationForestParams`] checked into
//! [`IsolationForestValidParams`] (`ParamGuard`), `linfa::traits::Fit` on a
//! `DatasetBase`, and anomaly scores through linfa's `Predict`. Trees are
//! flattened for cache-friendly, allocation-free scoring of one row; training
//! uses every core, one seeded random stream per tree, so the same seed gives
//! the same model on any machine.
//!
//! Data moves one way: CSV ([`read_csv`]) or feature vectors → `Fit` →
//! [`IsolationForest`] → [`ModelFile`] (features, summary, threshold,
//! fingerprint) → scoring.
//!
//! ```
//! use linfa::prelude::*;
//! use haechi_training::IsolationForestParams;
//! let x = ndarray::Array2::from_shape_fn((200, 2), |(i, j)| ((i * 7 + j * 3) % 17) as f64);
//! let model = IsolationForestParams::new().seed(1).fit(&Dataset::from(x)).unwrap();
//! assert!(model.score_row(&[100.0, -100.0]) > model.score_row(&[8.0, 8.0]));
//! ```

/// A [`TrainingError::ModelText`] with a formatted message.
macro_rules! model_text {
    ($($t:tt)*) => { $crate::TrainingError::ModelText(format!($($t)*)) };
}

mod algorithm;
mod csv_data;
mod errors;
mod hyperparams;
mod model_file;

pub use algorithm::{anomaly_score, average_path_length, Forest, IsolationForest, Node};
pub use csv_data::{read_csv, LabelColumn, Table};
pub use errors::TrainingError;
pub use hyperparams::{IsolationForestParams, IsolationForestValidParams, Threshold};
pub use model_file::{ColumnSummary, ModelFile, ModelKey, TrainingSummary};

/// Area under the ROC curve of `scores` against 0/1 `labels` (ties averaged).
pub fn roc_auc(scores: &[f64], labels: &[f64]) -> f64 {
    let mut pairs: Vec<(f64, bool)> = scores.iter().copied().zip(labels.iter().map(|l| *l > 0.5)).collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let positives = pairs.iter().filter(|p| p.1).count() as f64;
    let negatives = pairs.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return f64::NAN;
    }
    // Mann–Whitney U with average ranks for ties.
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j + 1 < pairs.len() && pairs[j + 1].0 == pairs[i].0 {
            j += 1;
        }
        let avg_rank = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += avg_rank * pairs[i..=j].iter().filter(|p| p.1).count() as f64;
        i = j + 1;
    }
    (rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives)
}

/// Summaries of the columns of a training matrix.
pub fn summarize(x: &ndarray::Array2<f64>, names: &[String], source: &str) -> TrainingSummary {
    let columns = names
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let col = x.column(c);
            ColumnSummary {
                name: name.clone(),
                mean: col.mean().unwrap_or(0.0),
                min: col.fold(f64::INFINITY, |a, &b| a.min(b)),
                max: col.fold(f64::NEG_INFINITY, |a, &b| a.max(b)),
            }
        })
        .collect();
    TrainingSummary { rows: x.nrows(), columns, source: source.to_owned() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use linfa::prelude::*;

    #[test]
    fn auc_on_hand_checkable_cases() {
        assert_eq!(roc_auc(&[0.1, 0.2, 0.9, 0.8], &[0.0, 0.0, 1.0, 1.0]), 1.0);
        assert_eq!(roc_auc(&[0.9, 0.8, 0.1, 0.2], &[0.0, 0.0, 1.0, 1.0]), 0.0);
        assert_eq!(roc_auc(&[0.5, 0.5, 0.5, 0.5], &[0.0, 1.0, 0.0, 1.0]), 0.5);
    }

    /// Real data: ODDS mammography (training/data/odds, in the repository), the paper's AUC 0.86.
    #[test]
    fn mammography_auc_is_near_the_papers() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/odds/mammography.csv");
        let table = read_csv(&path, &LabelColumn::Last).unwrap_or_else(|e| panic!("reading {} ({e})", path.display()));
        let mut aucs = Vec::new();
        for seed in 0..3 {
            let model = IsolationForestParams::new().seed(seed).fit(&Dataset::from(table.features.clone())).unwrap();
            let scores: ndarray::Array1<f64> = model.predict(&table.features);
            aucs.push(roc_auc(scores.as_slice().unwrap(), table.labels.as_ref().unwrap().as_slice().unwrap()));
        }
        let mean = aucs.iter().sum::<f64>() / aucs.len() as f64;
        assert!((0.83..=0.89).contains(&mean), "mean AUC {mean:.4} over seeds: {aucs:?}");
    }

    #[test]
    fn model_files_round_trip_and_refuse_tampering_and_mismatch() {
        let x = ndarray::Array2::from_shape_fn((300, 3), |(i, j)| ((i * 31 + j * 7) % 23) as f64);
        let model = IsolationForestParams::new().n_trees(10).seed(3).fit(&Dataset::from(x.clone())).unwrap();
        let names: Vec<String> = ["ip.events_10m", "ip.gap_cv", "event.hour"].map(String::from).to_vec();
        let file = ModelFile::new(model, names.clone(), summarize(&x, &names, "test")).unwrap();
        let text = serde_json::to_string(&file).unwrap();
        assert_eq!(ModelFile::parse(&text).unwrap(), file);
        let tampered = text.replacen("\"threshold\":", "\"threshold\":0.9999,\"x\":", 1);
        assert!(ModelFile::parse(&tampered).is_err());
        let mut changed = file.clone();
        changed.forest.nodes[1].2 += 1.0;
        assert!(ModelFile::parse(&serde_json::to_string(&changed).unwrap()).unwrap_err().to_string().contains("fingerprint"));
        assert!(ModelFile::parse("{}").unwrap_err().to_string().contains("not a model file"));
        let pipeline: Vec<String> = ["event.hour", "ip.gap_cv", "ip.events_10m", "other"].map(String::from).to_vec();
        assert_eq!(file.resolve(&pipeline).unwrap(), vec![2, 1, 0]);
        let e = file.resolve(&pipeline[..2]).unwrap_err().to_string();
        assert!(e.contains("ip.events_10m") && e.contains("1 of the model's 3"), "{e}");
    }
}
