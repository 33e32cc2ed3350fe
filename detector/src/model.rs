//! The isolation forest as a detector in the stream.
//!
//! The model file names the features it was trained on; at load they are
//! mapped to slots of the pipeline's feature vector, once. A model whose
//! features the pipeline does not have is refused, naming them. Scoring an
//! event reads the vector by slot and allocates nothing unless it fires.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;
use haechi_features::{Action, Detector, EntityKind, Event, Evidence, FeatureCatalog, FeatureView, Finding, Mode, Severity};
use haechi_training::{IsolationForest, ModelFile, ModelKey, TrainingError};
use serde::{Deserialize, Serialize};

/// The default model, trained by `haechi train` on generated traffic.
pub const DEFAULT_MODEL: &str = include_str!("../../training/models/default.json");

/// How the model takes part in decisions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub enabled: bool,
    /// A model file; unset: the default model shipped in the binary.
    pub path: Option<PathBuf>,
    /// What an anomaly does. An alert by default: the model flags what is
    /// unlike normal traffic, which analysts should see before anyone is refused.
    pub action: ModelAction,
    pub severity: Severity,
    /// Overrides the threshold stored in the model file.
    pub threshold: Option<f64>,
    /// Environment variable holding the model key (at least 16 bytes). With a
    /// key, `haechi train` and `haechi model fit` sign what they write, and a
    /// model file that is unsigned or does not verify is refused at load and
    /// at reload. Set but empty or missing: an error, never a silent
    /// downgrade to unsigned. The model built into the binary is part of
    /// the binary and is not checked.
    pub mac_key_env: Option<String>,
    /// File holding the model key; wins over `mac_key_env`.
    pub mac_key_file: Option<PathBuf>,
}

impl ModelConfig {
    /// The configured model key, if any. Surrounding whitespace (a trailing
    /// newline) is not part of the key.
    ///
    /// # Errors
    /// A message naming the setting when the file or variable cannot be read
    /// or the key is too short.
    pub fn mac_key(&self) -> Result<Option<ModelKey>, crate::DetectorError> {
        let text = if let Some(p) = &self.mac_key_file {
            std::fs::read(p).map_err(|e| setting!("model.mac_key_file = {}: {e}", p.display()))?
        } else if let Some(var) = &self.mac_key_env {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| setting!("model.mac_key_env = {var}: the variable is not set"))?
                .into_encoded_bytes()
        } else {
            return Ok(None);
        };
        let trimmed = text.trim_ascii();
        ModelKey::new(trimmed).map(Some).map_err(|e| setting!("{e}"))
    }
}

/// The actions a model finding may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelAction {
    Alert,
    Challenge,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig { enabled: true, path: None, action: ModelAction::Alert, severity: Severity::Medium, threshold: None, mac_key_env: None, mac_key_file: None }
    }
}

struct Loaded {
    model: IsolationForest,
    slots: Vec<usize>,
    threshold: f64,
    version: Arc<str>,
}

/// The running model, swappable like rule files.
pub struct ModelDetector {
    current: ArcSwap<Loaded>,
    config: ModelConfig,
    catalog: Arc<FeatureCatalog>,
    name: Arc<str>,
    id: Arc<str>,
    reloads: AtomicU64,
    failures: AtomicU64,
}

fn load(config: &ModelConfig, catalog: &FeatureCatalog) -> Result<Loaded, TrainingError> {
    let file = match &config.path {
        Some(p) => {
            // Read the key at every load: a rotated key file takes effect on reload.
            let key = config.mac_key().map_err(|e| TrainingError::Model { path: p.display().to_string(), message: e.to_string() })?;
            ModelFile::load_verified(p, key.as_ref())?
        }
        None => ModelFile::parse(DEFAULT_MODEL).map_err(|e| TrainingError::Model { path: "(default model)".into(), message: e.to_string() })?,
    };
    let slots = file.resolve(catalog.names())?;
    Ok(Loaded {
        threshold: config.threshold.unwrap_or(file.threshold),
        version: Arc::from(file.fingerprint.as_str()),
        model: file.model(),
        slots,
    })
}

impl ModelDetector {
    /// Load the configured model (or the default one).
    ///
    /// # Errors
    /// When the file is unusable or its features are not the pipeline's.
    pub fn new(config: ModelConfig, catalog: Arc<FeatureCatalog>) -> Result<ModelDetector, TrainingError> {
        let loaded = load(&config, &catalog)?;
        Ok(ModelDetector {
            current: ArcSwap::from_pointee(loaded),
            config,
            catalog,
            name: Arc::from("model"),
            id: Arc::from("isolation_forest"),
            reloads: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        })
    }

    /// Re-read the model file and swap it in; on error the old model keeps running.
    ///
    /// # Errors
    /// The new file's problem.
    pub fn reload(&self) -> Result<(), TrainingError> {
        match load(&self.config, &self.catalog) {
            Ok(l) => {
                self.current.store(Arc::new(l));
                self.reloads.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// The model file in use (`None`: the default model).
    pub fn path(&self) -> Option<&Path> {
        self.config.path.as_deref()
    }

    /// (successful, failed) reloads.
    pub fn reload_counts(&self) -> (u64, u64) {
        (self.reloads.load(Ordering::Relaxed), self.failures.load(Ordering::Relaxed))
    }

    /// Fingerprint of the running model.
    pub fn version(&self) -> Arc<str> {
        self.current.load().version.clone()
    }
}

impl Detector for ModelDetector {
    fn name(&self) -> &str {
        &self.name
    }

    fn detect(&self, _event: &Event, features: &FeatureView<'_>, findings: &mut Vec<Finding>) {
        thread_local! {
            /// One row per thread, reused: no allocation per event.
            static ROW: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
        }
        let m = self.current.load();
        let values = features.values();
        let slots = &m.slots;
        // The model's features gathered once: the walk reads each of them
        // dozens of times (every tree, every level), through one index, not two.
        let row = ROW.with(|row| {
            let mut row = row.take();
            row.clear();
            row.extend(slots.iter().map(|&s| values[s]));
            row
        });
        // Most rows are normal: the walk stops as soon as they cannot be anomalous.
        let Some(score) = m.model.forest().score_above_f32(&row, m.threshold) else {
            ROW.with(|r| r.set(row));
            return;
        };
        let top = m.model.forest().contributions(|f| f64::from(row[f]));
        ROW.with(|r| r.set(row));
        let evidence: Vec<Evidence> = top
            .iter()
            .take(3)
            .map(|&(f, w)| Evidence { slot: slots[f] as u16, value: values[slots[f]], weight: Some(w as f32) })
            .collect();
        // The alert is about the entity whose feature stands out most.
        let entity = evidence
            .first()
            .and_then(|e| self.catalog.name(usize::from(e.slot)).split('.').next())
            .and_then(EntityKind::parse)
            .or(Some(EntityKind::Customer));
        findings.push(Finding {
            detector: self.name.clone(),
            id: self.id.clone(),
            version: Some(m.version.clone()),
            severity: self.config.severity,
            action: match self.config.action {
                ModelAction::Alert => Action::Alert,
                ModelAction::Challenge => Action::Challenge,
            },
            mode: Mode::Enforce,
            score: score as f32,
            entity,
            evidence,
            note: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use haechi_features::{FeatureConfig, FeatureStore};
    use haechi_training::{IsolationForestParams, ModelFile};
    use linfa::traits::Fit;

    fn catalog() -> Arc<FeatureCatalog> {
        Arc::new(FeatureCatalog::new(&FeatureConfig::default().validate().unwrap()))
    }

    fn write_model(names: &[&str], path: &Path) {
        let x = ndarray::Array2::from_shape_fn((300, names.len()), |(i, j)| ((i * 13 + j * 5) % 29) as f64);
        let m = IsolationForestParams::new().n_trees(20).seed(1).fit(&linfa::Dataset::from(x.clone())).unwrap();
        let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        ModelFile::new(m, names.clone(), haechi_training::summarize(&x, &names, "test")).unwrap().save(path).unwrap();
    }

    #[test]
    fn the_default_model_loads_against_the_default_catalog() {
        let d = ModelDetector::new(ModelConfig::default(), catalog()).unwrap();
        assert_eq!(d.version().len(), 16);
    }

    #[test]
    fn a_model_with_foreign_features_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        write_model(&["ip.events_10m", "ip.colour_index"], &p);
        let e = ModelDetector::new(ModelConfig { path: Some(p), ..Default::default() }, catalog()).err().unwrap().to_string();
        assert!(e.contains("ip.colour_index") && !e.contains("ip.events_10m,"), "{e}");
    }

    #[test]
    fn an_anomalous_event_is_a_finding_with_explained_evidence_and_a_bad_reload_keeps_the_model() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.json");
        write_model(&["ip.events_10m", "device.distinct_customers_24h"], &p);
        let cat = catalog();
        let det = ModelDetector::new(ModelConfig { path: Some(p.clone()), ..Default::default() }, cat.clone()).unwrap();
        let store = FeatureStore::new(&FeatureConfig::default()).unwrap();
        let mut values = vec![0.0; cat.len()];
        let e = haechi_features::Event::parse(br#"{"event_id":"e","ts":"2026-11-02T10:00:00+09:00","step":"login","result":"success","ip":"10.0.0.1"}"#, 4096).unwrap();
        let obs = store.observe(&e, &mut values);
        values[cat.slot("device.distinct_customers_24h").unwrap()] = 500.0;
        let mut findings = Vec::new();
        det.detect(&e, &FeatureView::new(&values, &cat, &obs.keys), &mut findings);
        assert_eq!(findings.len(), 1, "an extreme value should be anomalous");
        let f = &findings[0];
        assert_eq!(cat.name(usize::from(f.evidence[0].slot)), "device.distinct_customers_24h");
        assert_eq!(f.entity, Some(EntityKind::Device));
        assert!(f.score > 0.5);
        let v1 = det.version();
        std::fs::write(&p, "{ not a model").unwrap();
        assert!(det.reload().is_err());
        assert_eq!(det.version(), v1);
        assert_eq!(det.reload_counts(), (0, 1));
    }

    #[test]
    fn with_a_key_configured_only_a_signed_model_loads_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let (p, keyfile) = (dir.path().join("m.json"), dir.path().join("model.key"));
        std::fs::write(&keyfile, "0123456789abcdef0123456789abcdef\n").unwrap();
        let cfg = ModelConfig { path: Some(p.clone()), mac_key_file: Some(keyfile.clone()), ..Default::default() };
        let key = cfg.mac_key().unwrap().unwrap();
        write_model(&["ip.events_10m", "device.distinct_customers_24h"], &p);
        let e = ModelDetector::new(cfg.clone(), catalog()).err().unwrap().to_string();
        assert!(e.contains("unsigned"), "{e}");

        let mut file = ModelFile::load(&p).unwrap();
        file.sign(&key);
        file.save(&p).unwrap();
        let det = ModelDetector::new(cfg.clone(), catalog()).unwrap();
        let v1 = det.version();

        // Altered, fingerprint recomputed by re-wrapping: the reload is refused, the model keeps running.
        // Altered: another forest with a fingerprint of its own (anyone can
        // compute one), carrying the signed model's MAC.
        write_model(&["ip.events_10m", "device.distinct_customers_24h", "event.hour"], &p);
        let mut altered = ModelFile::load(&p).unwrap();
        altered.mac = file.mac.clone();
        altered.save(&p).unwrap();
        assert!(ModelFile::load(&p).is_ok(), "fingerprint recomputed: only the MAC can tell");
        let e = det.reload().unwrap_err().to_string();
        assert!(e.contains("does not verify"), "{e}");
        assert_eq!(det.version(), v1);

        // No key configured: as before, the unsigned or re-fingerprinted file loads.
        assert!(ModelDetector::new(ModelConfig { path: Some(p.clone()), ..Default::default() }, catalog()).is_ok());
        // A key variable that is configured but not set is an error, not a downgrade.
        let e = ModelConfig { mac_key_env: Some("HAECHI_TEST_NO_SUCH_VAR_9".into()), ..Default::default() }.mac_key().unwrap_err().to_string();
        assert!(e.contains("not set"), "{e}");
    }
}
