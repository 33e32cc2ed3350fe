//! `haechi train`: feature vectors from an event stream, as the detector will
//! see them, for fitting the isolation forest.

use std::io::BufRead;

use haechi_features::{FeatureConfig, FeatureStore};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use haechi_training::{IsolationForestParams, ModelFile};
use linfa::traits::Fit;

use crate::error::DetectorError;
use crate::replay::read_bounded_line;

/// Replay `input` through a fresh feature store and keep a uniform sample of
/// at most `max_rows` feature vectors (reservoir sampling, seeded).
/// Returns the rows, the feature names, and the number of events seen.
///
/// # Errors
/// When the input cannot be read.
pub fn feature_rows(features: &FeatureConfig, input: &mut dyn BufRead, max_rows: usize, seed: u64, max_event_bytes: usize) -> Result<(Array2<f64>, Vec<String>, u64), DetectorError> {
    let store = FeatureStore::new(features)?;
    let width = store.catalog().len();
    let mut values = vec![0.0f32; width];
    let mut rows: Vec<Vec<f32>> = Vec::with_capacity(max_rows.min(1 << 20));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut line = Vec::new();
    let mut seen = 0u64;
    while read_bounded_line(input, &mut line, max_event_bytes)?.is_some() {
        let Ok(event) = haechi_features::Event::parse(&line, max_event_bytes) else { continue };
        store.observe(&event, &mut values);
        seen += 1;
        if rows.len() < max_rows {
            rows.push(values.clone());
        } else {
            let k = rng.gen_range(0..seen);
            if (k as usize) < max_rows {
                rows[k as usize].copy_from_slice(&values);
            }
        }
    }
    let mut x = Array2::zeros((rows.len(), width));
    for (r, row) in rows.iter().enumerate() {
        for (c, v) in row.iter().enumerate() {
            x[[r, c]] = f64::from(*v);
        }
    }
    Ok((x, store.catalog().names().to_vec(), seen))
}

/// Fit a forest on `x` (columns named `names`) and wrap it as a model file
/// recording where the rows came from. `haechi model fit` and `haechi train`
/// both end here.
///
/// # Errors
/// When the parameters or the data are refused.
pub fn fit_model(x: &Array2<f64>, names: Vec<String>, source: &str, params: IsolationForestParams) -> Result<ModelFile, DetectorError> {
    let model = params.fit(&linfa::Dataset::from(x.clone()))?;
    let summary = haechi_training::summarize(x, &names, source);
    Ok(ModelFile::new(model, names, summary)?)
}
