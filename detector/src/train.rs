//! `haechi train`: feature vectors from an event stream, as the detector will
//! see them, for fitting the isolation forest.

use std::io::BufRead;

use haechi_features::{entity_text, EntityKind, FeatureConfig, FeatureStore};
use ndarray::Array2;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use haechi_training::{IsolationForestParams, ModelFile};
use linfa::traits::Fit;

use crate::error::DetectorError;
use crate::driver::read_bounded_line;

/// Features that describe an event relative to its own traffic: ranks
/// against the population, profile novelty, how shared a scope is, history
/// depth, staff habits. A model fitted on these carries over between worlds
/// of traffic; one fitted on raw counts and durations learns one world.
pub const NORMALIZED_FEATURES: &[&str] = &[
    "event.duration_rank",
    "event.hour_activity",
    "event.failure",
    "event.sensitive_step",
    "event.onboarding_step",
    "customer.hour_seen",
    "customer.new_device",
    "customer.new_region",
    "customer.returning",
    "customer.failures_24h",
    "session.fast_steps",
    "session.quick_steps",
    "session.gap_cv",
    "session.methods_ok",
    "device.fast_steps",
    "device.distinct_new_identities_total",
    "device.distinct_returning_total",
    "ip.distinct_new_identities_1h",
    "ip.distinct_returning_1h",
    "ip.distinct_new_identities_24h",
    "ip.distinct_returning_24h",
    "id_doc.distinct_customers_total",
    "account.distinct_new_identities_total",
    "staff.hour_seen",
    "staff.records_1h",
    "staff.typical_daily_records",
];

/// Keeps a uniform sample of at most `max_rows` rows (reservoir sampling, seeded).
struct Reservoir {
    rows: Vec<Vec<f32>>,
    max_rows: usize,
    rng: ChaCha8Rng,
    seen: u64,
}

impl Reservoir {
    fn new(max_rows: usize, seed: u64) -> Reservoir {
        Reservoir { rows: Vec::with_capacity(max_rows.min(1 << 20)), max_rows, rng: ChaCha8Rng::seed_from_u64(seed), seen: 0 }
    }

    fn offer(&mut self, values: &[f32], columns: &[usize]) {
        self.seen += 1;
        if self.rows.len() < self.max_rows {
            self.rows.push(columns.iter().map(|&c| values[c]).collect());
        } else {
            let k = self.rng.gen_range(0..self.seen);
            if (k as usize) < self.max_rows {
                for (dst, &c) in self.rows[k as usize].iter_mut().zip(columns) {
                    *dst = values[c];
                }
            }
        }
    }

    fn into_matrix(self) -> (Array2<f64>, u64) {
        let width = self.rows.first().map_or(0, Vec::len);
        let mut x = Array2::zeros((self.rows.len(), width));
        for (r, row) in self.rows.iter().enumerate() {
            for (c, v) in row.iter().enumerate() {
                x[[r, c]] = f64::from(*v);
            }
        }
        (x, self.seen)
    }
}

/// The catalog slots of `only` (every feature when `None`), with their names.
///
/// # Errors
/// A name the catalog does not have.
fn columns(store: &FeatureStore, only: Option<&[&str]>) -> Result<(Vec<usize>, Vec<String>), DetectorError> {
    let catalog = store.catalog();
    match only {
        None => Ok(((0..catalog.len()).collect(), catalog.names().to_vec())),
        Some(names) => {
            let slots = names
                .iter()
                .map(|n| catalog.slot(n).ok_or_else(|| DetectorError::Input { path: "features".into(), message: format!("no feature named `{n}`") }))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((slots, names.iter().map(|n| (*n).to_owned()).collect()))
        }
    }
}

/// Replay `input` through a fresh feature store and keep a uniform sample of
/// at most `max_rows` feature vectors (every feature, or only `only`).
/// Returns the rows, the feature names, and the number of events seen.
///
/// # Errors
/// When the input cannot be read or a feature name is unknown.
pub fn feature_rows(
    features: &FeatureConfig,
    input: &mut dyn BufRead,
    max_rows: usize,
    seed: u64,
    max_event_bytes: usize,
    only: Option<&[&str]>,
) -> Result<(Array2<f64>, Vec<String>, u64), DetectorError> {
    let (x, names, seen, _) = feature_rows_judged(features, input, max_rows, seed, max_event_bytes, only, &FloorTruth::default())?;
    Ok((x, names, seen))
}

/// One judged alert's entity and time span.
#[derive(Debug, Clone)]
struct Span {
    kind: EntityKind,
    entity: String,
    from_ms: i64,
    to_ms: i64,
}

/// What the analysts' labels say of past events: those behind an alert they
/// confirmed are attacks, not the normal a forest should learn; those behind
/// one they refuted are honest, and kept in the sample whatever the draw.
#[derive(Debug, Clone, Default)]
pub struct FloorTruth {
    attacks: Vec<Span>,
    honest: Vec<Span>,
}

/// How the floor's labels changed the training rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FloorEffect {
    /// Events behind confirmed alerts, left out.
    pub attacks_left_out: u64,
    /// Events behind refuted alerts, kept beside the sample.
    pub honest_kept: u64,
    /// Labels that name no entity or time (the alert was no longer in the feed): unused.
    pub unusable: usize,
}

impl FloorTruth {
    /// From `GET /v1/labels`.
    pub fn from_labels(labels: &[crate::backtest::FloorLabel]) -> (FloorTruth, usize) {
        let mut truth = FloorTruth::default();
        let mut unusable = 0;
        for l in labels {
            let span = (|| {
                Some(Span {
                    kind: l.entity_kind?,
                    entity: l.entity.clone()?,
                    from_ms: haechi_features::parse_rfc3339_ms(l.time.as_deref()?)?,
                    to_ms: haechi_features::parse_rfc3339_ms(l.last_time.as_deref().or(l.time.as_deref())?)?,
                })
            })();
            match (span, l.label) {
                (Some(s), crate::service::triage::TriageLabel::TruePositive) => truth.attacks.push(s),
                (Some(s), crate::service::triage::TriageLabel::FalsePositive) => truth.honest.push(s),
                (None, _) => unusable += 1,
            }
        }
        (truth, unusable)
    }

    fn covers(spans: &[Span], event: &haechi_features::Event) -> bool {
        spans.iter().any(|s| event.ts_ms >= s.from_ms && event.ts_ms <= s.to_ms && entity_text(event, s.kind).as_deref() == Some(s.entity.as_str()))
    }
}

/// [`feature_rows`], with the analysts' judgements applied (see [`FloorTruth`]).
/// Every event still feeds the store (the features of later events depend on
/// it); only which rows are learned from changes.
///
/// # Errors
/// As [`feature_rows`].
pub fn feature_rows_judged(
    features: &FeatureConfig,
    input: &mut dyn BufRead,
    max_rows: usize,
    seed: u64,
    max_event_bytes: usize,
    only: Option<&[&str]>,
    truth: &FloorTruth,
) -> Result<(Array2<f64>, Vec<String>, u64, FloorEffect), DetectorError> {
    let store = FeatureStore::new(features)?;
    let (cols, names) = columns(&store, only)?;
    let mut values = vec![0.0f32; store.catalog().len()];
    let mut sample = Reservoir::new(max_rows, seed);
    // Refuted alerts' rows, beside the draw: at most a tenth of the sample.
    let mut honest = Reservoir::new((max_rows / 10).max(1), seed ^ 0x5eed);
    let mut effect = FloorEffect::default();
    let judged = !truth.attacks.is_empty() || !truth.honest.is_empty();
    let mut line = Vec::new();
    while read_bounded_line(input, &mut line, max_event_bytes)?.is_some() {
        let Ok(event) = haechi_features::Event::parse(&line, max_event_bytes) else { continue };
        store.observe(&event, &mut values);
        if judged && FloorTruth::covers(&truth.attacks, &event) {
            effect.attacks_left_out += 1;
            continue;
        }
        if judged && FloorTruth::covers(&truth.honest, &event) {
            effect.honest_kept += 1;
            honest.offer(&values, &cols);
            continue;
        }
        sample.offer(&values, &cols);
    }
    let seen = sample.seen + honest.seen + effect.attacks_left_out;
    sample.rows.append(&mut honest.rows);
    let (x, _) = sample.into_matrix();
    Ok((x, names, seen, effect))
}

/// Feature vectors from drawn worlds (`WorldSpec::random` of each seed, each
/// world in a fresh store, as a new install would see it), sampled together.
///
/// # Errors
/// When a world cannot be generated or a feature name is unknown.
pub fn world_feature_rows(
    features: &FeatureConfig,
    world_seeds: &[u64],
    customers: usize,
    days: u32,
    max_rows: usize,
    seed: u64,
    only: Option<&[&str]>,
) -> Result<(Array2<f64>, Vec<String>, u64), DetectorError> {
    let mut sample = Reservoir::new(max_rows, seed);
    let mut names = Vec::new();
    let mut bytes = Vec::with_capacity(512);
    for &w in world_seeds {
        let data = crate::worlds::generate_world(w, customers, days)?;
        let store = FeatureStore::new(features)?;
        let (cols, n) = columns(&store, only)?;
        names = n;
        let mut values = vec![0.0f32; store.catalog().len()];
        for e in &data.events {
            bytes.clear();
            serde_json::to_writer(&mut bytes, e).map_err(std::io::Error::other)?;
            let Ok(event) = haechi_features::Event::parse(&bytes, 1 << 16) else { continue };
            store.observe(&event, &mut values);
            sample.offer(&values, &cols);
        }
    }
    let (x, seen) = sample.into_matrix();
    Ok((x, names, seen))
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
