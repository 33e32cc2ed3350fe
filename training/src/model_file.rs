//! The versioned model file: the forest plus everything needed to trust it.

use std::path::Path;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3;

use crate::algorithm::{Forest, IsolationForest, Node};
use crate::errors::TrainingError;
use crate::hyperparams::{IsolationForestValidParams, Threshold};

const FORMAT: &str = "haechi-isolation-forest";
const VERSION: u32 = 1;

/// Summary of one training column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnSummary {
    pub name: String,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
}

/// What the model was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    pub rows: usize,
    pub columns: Vec<ColumnSummary>,
    /// Where the rows came from (a CSV path, an event stream).
    pub source: String,
}

/// A fitted model as stored on disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    pub format: String,
    pub version: u32,
    /// Feature names, in the column order the trees index.
    pub features: Vec<String>,
    pub params: IsolationForestValidParams,
    pub training: TrainingSummary,
    /// Scores above this are anomalies.
    pub threshold: f64,
    /// How the threshold was chosen.
    pub threshold_method: Threshold,
    /// Hash of features, threshold and trees: a changed byte is a refused model.
    pub fingerprint: String,
    pub forest: Forest,
}

/// Over the exact bits of every number, so that no text formatting can hide
/// or invent a change.
fn fingerprint(features: &[String], threshold: f64, forest: &Forest) -> String {
    let mut h = Xxh3::new();
    for f in features {
        h.update(f.as_bytes());
        h.update(&[0]);
    }
    h.update(&threshold.to_bits().to_le_bytes());
    h.update(&(forest.n_features as u64).to_le_bytes());
    h.update(&(forest.psi as u64).to_le_bytes());
    for r in &forest.roots {
        h.update(&r.to_le_bytes());
    }
    for Node(f, l, v) in &forest.nodes {
        h.update(&f.to_le_bytes());
        h.update(&l.to_le_bytes());
        h.update(&v.to_bits().to_le_bytes());
    }
    for s in &forest.sizes {
        h.update(&s.to_le_bytes());
    }
    format!("{:016x}", h.digest())
}

impl ModelFile {
    /// Wrap a fitted model with its feature names and training summary.
    ///
    /// # Errors
    /// When the names do not match the model's columns.
    pub fn new(model: IsolationForest, features: Vec<String>, training: TrainingSummary) -> Result<ModelFile, TrainingError> {
        if features.len() != model.forest.n_features() {
            return Err(TrainingError::Data(format!("{} feature names for {} columns", features.len(), model.forest.n_features())));
        }
        Ok(ModelFile {
            format: FORMAT.into(),
            version: VERSION,
            fingerprint: fingerprint(&features, model.threshold, &model.forest),
            features,
            threshold_method: model.params.threshold(),
            params: model.params,
            training,
            threshold: model.threshold,
            forest: model.forest,
        })
    }

    /// Read and check a model file.
    ///
    /// # Errors
    /// [`TrainingError::Model`] naming the problem: unreadable, not a model,
    /// another format version, a fingerprint that does not match, a broken tree.
    pub fn load(path: &Path) -> Result<ModelFile, TrainingError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainingError::Model { path: path.display().to_string(), message: e.to_string() })?;
        ModelFile::parse(&text).map_err(|message| TrainingError::Model { path: path.display().to_string(), message })
    }

    /// Parse and check model text.
    ///
    /// # Errors
    /// A message naming the problem.
    pub fn parse(text: &str) -> Result<ModelFile, String> {
        let mut m: ModelFile = serde_json::from_str(text).map_err(|e| format!("not a model file: {e}"))?;
        if m.format != FORMAT {
            return Err(format!("format `{}`, expected `{FORMAT}`", m.format));
        }
        if m.version != VERSION {
            return Err(format!("format version {}, this build reads {VERSION}", m.version));
        }
        if m.features.len() != m.forest.n_features() {
            return Err(format!("{} feature names for {} columns", m.features.len(), m.forest.n_features()));
        }
        m.forest.validate()?;
        if !(m.threshold > 0.0 && m.threshold <= 1.0) {
            return Err(format!("threshold {} outside (0, 1]", m.threshold));
        }
        let want = fingerprint(&m.features, m.threshold, &m.forest);
        if want != m.fingerprint {
            return Err(format!("fingerprint {} does not match its contents ({want}): the file was changed", m.fingerprint));
        }
        m.forest.prepare();
        Ok(m)
    }

    /// Write the model as JSON.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), TrainingError> {
        let text = serde_json::to_string(self).map_err(|e| TrainingError::Data(e.to_string()))?;
        std::fs::write(path, text)?;
        Ok(())
    }

    /// The fitted model.
    pub fn model(&self) -> IsolationForest {
        IsolationForest { forest: self.forest.clone(), params: self.params.clone(), threshold: self.threshold }
    }

    /// Map the model's features onto the pipeline's, by name: slot of each
    /// model column in the pipeline's feature vector.
    ///
    /// # Errors
    /// [`TrainingError::FeatureMismatch`] naming every model feature the
    /// pipeline does not have.
    pub fn resolve(&self, pipeline: &[String]) -> Result<Vec<usize>, TrainingError> {
        let index: std::collections::HashMap<&str, usize> = pipeline.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
        let missing: Vec<&str> = self.features.iter().filter(|f| !index.contains_key(f.as_str())).map(String::as_str).collect();
        if !missing.is_empty() {
            let shown: Vec<&str> = missing.iter().take(10).copied().collect();
            return Err(TrainingError::FeatureMismatch(format!(
                "{} of the model's {} features are not in the pipeline: {}{}",
                missing.len(),
                self.features.len(),
                shown.join(", "),
                if missing.len() > 10 { ", …" } else { "" }
            )));
        }
        Ok(self.features.iter().map(|f| index[f.as_str()]).collect())
    }
}
