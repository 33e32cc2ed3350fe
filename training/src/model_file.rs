//! The versioned model file: the forest plus everything needed to trust it.

use std::path::Path;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
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
    /// Unkeyed: it catches corruption, not tampering (anyone can recompute it).
    pub fingerprint: String,
    /// `hmac-sha256:<hex>`: HMAC-SHA-256 under the operator's model key over
    /// the bytes the fingerprint covers. Catches tampering: without the key
    /// no one can make a changed model verify. Absent: an unsigned model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    pub forest: Forest,
}

/// The secret a model MAC is computed under.
#[derive(Clone, PartialEq, Eq)]
pub struct ModelKey(Vec<u8>);

impl ModelKey {
    /// Fewest key bytes accepted.
    pub const MIN_LEN: usize = 16;

    /// A key from its bytes (surrounding whitespace is not trimmed here).
    ///
    /// # Errors
    /// A message when the key is shorter than [`ModelKey::MIN_LEN`] bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<ModelKey, crate::TrainingError> {
        let bytes = bytes.into();
        if bytes.len() < Self::MIN_LEN {
            return Err(crate::TrainingError::Key(format!("a model key must be at least {} bytes (e.g. `openssl rand -hex 32`), got {}", Self::MIN_LEN, bytes.len())));
        }
        Ok(ModelKey(bytes))
    }
}

impl std::fmt::Debug for ModelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ModelKey(..)")
    }
}

const MAC_PREFIX: &str = "hmac-sha256:";
/// Domain separation: this key signs models, nothing else.
const MAC_CONTEXT: &[u8] = b"haechi model mac v1\0";

/// Feed the canonical bytes of a model: the exact bits of every number, so
/// that no text formatting can hide or invent a change.
fn canonical_bytes(features: &[String], threshold: f64, forest: &Forest, h: &mut impl FnMut(&[u8])) {
    for f in features {
        h(f.as_bytes());
        h(&[0]);
    }
    h(&threshold.to_bits().to_le_bytes());
    h(&(forest.n_features as u64).to_le_bytes());
    h(&(forest.psi as u64).to_le_bytes());
    for r in &forest.roots {
        h(&r.to_le_bytes());
    }
    for Node(f, l, v) in &forest.nodes {
        h(&f.to_le_bytes());
        h(&l.to_le_bytes());
        h(&v.to_bits().to_le_bytes());
    }
    for s in &forest.sizes {
        h(&s.to_le_bytes());
    }
}

fn fingerprint(features: &[String], threshold: f64, forest: &Forest) -> String {
    let mut h = Xxh3::new();
    canonical_bytes(features, threshold, forest, &mut |b| h.update(b));
    format!("{:016x}", h.digest())
}

fn mac_of(key: &ModelKey, features: &[String], threshold: f64, forest: &Forest) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&key.0).expect("HMAC takes any key length");
    m.update(MAC_CONTEXT);
    canonical_bytes(features, threshold, forest, &mut |b| m.update(b));
    m
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
            mac: None,
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
        ModelFile::parse(&text).map_err(|e| TrainingError::Model { path: path.display().to_string(), message: e.to_string() })
    }

    /// Parse and check model text.
    ///
    /// # Errors
    /// A message naming the problem.
    pub fn parse(text: &str) -> Result<ModelFile, crate::TrainingError> {
        let mut m: ModelFile = serde_json::from_str(text).map_err(|e| model_text!("not a model file: {e}"))?;
        if m.format != FORMAT {
            return Err(model_text!("format `{}`, expected `{FORMAT}`", m.format));
        }
        if m.version != VERSION {
            return Err(model_text!("format version {}, this build reads {VERSION}", m.version));
        }
        if m.features.len() != m.forest.n_features() {
            return Err(model_text!("{} feature names for {} columns", m.features.len(), m.forest.n_features()));
        }
        m.forest.validate()?;
        if !(m.threshold > 0.0 && m.threshold <= 1.0) {
            return Err(model_text!("threshold {} outside (0, 1]", m.threshold));
        }
        let want = fingerprint(&m.features, m.threshold, &m.forest);
        if want != m.fingerprint {
            return Err(model_text!("fingerprint {} does not match its contents ({want}): the file was changed", m.fingerprint));
        }
        m.forest.prepare();
        Ok(m)
    }

    /// Sign the model with `key` (sets [`ModelFile::mac`]).
    pub fn sign(&mut self, key: &ModelKey) {
        let tag = mac_of(key, &self.features, self.threshold, &self.forest).finalize().into_bytes();
        let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
        self.mac = Some(format!("{MAC_PREFIX}{hex}"));
    }

    /// Check the MAC against `key` (in constant time).
    ///
    /// # Errors
    /// A message when the model is unsigned or its MAC does not verify: it
    /// was changed after signing, or signed under another key.
    pub fn verify(&self, key: &ModelKey) -> Result<(), crate::TrainingError> {
        let Some(mac) = &self.mac else {
            return Err(crate::TrainingError::Signature("the model is unsigned and a model key is configured: sign it (`haechi train` or `haechi model fit` with the key configured)".into()));
        };
        let tag = mac
            .strip_prefix(MAC_PREFIX)
            .filter(|h| h.len() == 64)
            .and_then(|h| (0..32).map(|i| u8::from_str_radix(&h[2 * i..2 * i + 2], 16).ok()).collect::<Option<Vec<u8>>>())
            .ok_or_else(|| crate::TrainingError::Signature(format!("mac is not `{MAC_PREFIX}` and 64 hex digits")))?;
        mac_of(key, &self.features, self.threshold, &self.forest)
            .verify_slice(&tag)
            .map_err(|_| crate::TrainingError::Signature("MAC does not verify: the model was altered after signing, or signed with another key".to_owned()))
    }

    /// Read and check a model file, and with a key, its MAC.
    ///
    /// # Errors
    /// As [`ModelFile::load`], and when a key is given and the model is
    /// unsigned or its MAC does not verify.
    pub fn load_verified(path: &Path, key: Option<&ModelKey>) -> Result<ModelFile, TrainingError> {
        let m = ModelFile::load(path)?;
        if let Some(key) = key {
            m.verify(key).map_err(|e| TrainingError::Model { path: path.display().to_string(), message: e.to_string() })?;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IsolationForestParams;
    use linfa::traits::Fit;

    fn model() -> ModelFile {
        let x = ndarray::Array2::from_shape_fn((200, 2), |(i, j)| ((i * 17 + j * 3) % 19) as f64);
        let m = IsolationForestParams::new().n_trees(5).seed(2).fit(&linfa::Dataset::from(x.clone())).unwrap();
        let names: Vec<String> = ["ip.events_10m", "event.hour"].map(String::from).to_vec();
        ModelFile::new(m, names.clone(), crate::summarize(&x, &names, "test")).unwrap()
    }

    #[test]
    fn a_signed_model_loads_and_an_altered_or_unsigned_one_is_refused_under_a_key() {
        let key = ModelKey::new(*b"0123456789abcdef0123456789abcdef").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");

        let mut signed = model();
        signed.sign(&key);
        assert!(signed.mac.as_deref().unwrap().starts_with("hmac-sha256:"));
        signed.save(&path).unwrap();
        let loaded = ModelFile::load_verified(&path, Some(&key)).unwrap();
        assert_eq!(loaded.mac, signed.mac);

        // Tampering with a recomputed fingerprint passes the fingerprint but not the MAC.
        let mut altered = signed.clone();
        altered.threshold = 0.99;
        altered.fingerprint = fingerprint(&altered.features, altered.threshold, &altered.forest);
        altered.save(&path).unwrap();
        assert!(ModelFile::load(&path).is_ok(), "the fingerprint alone cannot tell");
        let e = ModelFile::load_verified(&path, Some(&key)).unwrap_err().to_string();
        assert!(e.contains("does not verify"), "{e}");

        // Another key.
        signed.save(&path).unwrap();
        let other = ModelKey::new(*b"another-key-of-32-bytes-ok------").unwrap();
        assert!(ModelFile::load_verified(&path, Some(&other)).is_err());

        // Unsigned: refused under a key, loaded as today without one.
        model().save(&path).unwrap();
        let e = ModelFile::load_verified(&path, Some(&key)).unwrap_err().to_string();
        assert!(e.contains("unsigned"), "{e}");
        assert!(ModelFile::load_verified(&path, None).is_ok());

        // A garbled MAC is refused with its shape named.
        let mut bad = signed.clone();
        bad.mac = Some("hmac-sha256:zz".into());
        assert!(bad.verify(&key).unwrap_err().to_string().contains("64 hex digits"));
        assert!(ModelKey::new(*b"short").is_err());
        assert_eq!(format!("{key:?}"), "ModelKey(..)");
    }
}
