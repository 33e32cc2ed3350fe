//! The detector interface: what every rule set, model and limiter implements.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::catalog::FeatureCatalog;
use crate::event::Event;
use crate::keys::{EntityKeys, EntityKind};

/// How serious a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// The score a finding of this severity carries when its detector has no
    /// score of its own.
    pub fn score(self) -> f32 {
        match self {
            Severity::Low => 0.25,
            Severity::Medium => 0.5,
            Severity::High => 0.75,
            Severity::Critical => 1.0,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a finding asks the decision to do. Ordered: later is stronger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// An allowlist match: the event is allowed whatever else fired.
    Allow,
    /// Tell the analysts; let the event through.
    Alert,
    /// Ask for step-up authentication.
    Challenge,
    /// Refuse, and block the finding's entity for `ttl_s` seconds.
    Block { ttl_s: u32 },
}

impl Action {
    /// Strength for "strongest action wins": alert 1, challenge 2, block 3.
    /// An allowlist match is not in this order: it overrides all of them.
    pub fn strength(self) -> u8 {
        match self {
            Action::Allow => 0,
            Action::Alert => 1,
            Action::Challenge => 2,
            Action::Block { .. } => 3,
        }
    }
}

/// Whether a finding is enforced or only recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Enforce,
    /// Recorded with what it would have done; changes no decision.
    Shadow,
}

/// One feature value behind a finding.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Evidence {
    /// The feature's slot in the catalog.
    pub slot: u16,
    /// Its value when the finding fired.
    pub value: f32,
    /// How much it contributed, where the detector can say (the model does).
    pub weight: Option<f32>,
}

/// What a detector reports about one event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// The detector that produced it (`builtin`, `rules`, `model`, ...).
    pub detector: Arc<str>,
    /// The rule id or model name.
    pub id: Arc<str>,
    /// Version of the rule file or model (content hash), if any.
    pub version: Option<Arc<str>>,
    pub severity: Severity,
    pub action: Action,
    pub mode: Mode,
    /// 0..1; the model's anomaly score, or the severity's score.
    pub score: f32,
    /// The entity the finding is about, which a block applies to.
    pub entity: Option<EntityKind>,
    /// The feature values that made it fire.
    pub evidence: Vec<Evidence>,
    /// Words for the analyst that feature values cannot carry (the
    /// verification methods a session showed). Built at load time, shared.
    pub note: Option<Arc<str>>,
}

/// A seconds-since feature (`customer.face_shown_s`, `customer.owner_login_here_s`)
/// read as "within the window": resolved once at load time, with
/// `event.late`. A late event of an entity the store no longer holds reads
/// zeros, which would look like "this very second"; a late event never
/// counts.
#[derive(Debug, Clone, Copy)]
pub struct SecondsSinceWithin {
    slot: usize,
    late: usize,
    window_s: f32,
}

impl SecondsSinceWithin {
    /// `None` when the catalog has no such feature.
    pub fn resolve(catalog: &FeatureCatalog, name: &str, window_s: u32) -> Option<SecondsSinceWithin> {
        Some(SecondsSinceWithin { slot: catalog.slot(name)?, late: catalog.slot("event.late")?, window_s: window_s as f32 })
    }

    /// The feature is in [0, window) and the event is not late.
    pub fn holds(&self, values: &[f32]) -> bool {
        values[self.late] == 0.0 && (0.0..self.window_s).contains(&values[self.slot])
    }
}

/// A read view of one event's features: every entity the event names, as
/// they stand after the event.
#[derive(Debug, Clone, Copy)]
pub struct FeatureView<'a> {
    values: &'a [f32],
    catalog: &'a FeatureCatalog,
    keys: &'a EntityKeys,
}

impl<'a> FeatureView<'a> {
    /// Wrap a feature vector that follows `catalog`.
    pub fn new(values: &'a [f32], catalog: &'a FeatureCatalog, keys: &'a EntityKeys) -> FeatureView<'a> {
        debug_assert_eq!(values.len(), catalog.len());
        FeatureView { values, catalog, keys }
    }

    /// The value at a slot resolved from the catalog at load time.
    #[inline]
    pub fn get(&self, slot: usize) -> f32 {
        self.values[slot]
    }

    /// All values in slot order.
    pub fn values(&self) -> &'a [f32] {
        self.values
    }

    /// The catalog the values follow.
    pub fn catalog(&self) -> &'a FeatureCatalog {
        self.catalog
    }

    /// The hashed keys of the entities the event names.
    pub fn keys(&self) -> &'a EntityKeys {
        self.keys
    }

    /// Evidence for a slot, with its current value.
    pub fn evidence(&self, slot: usize) -> Evidence {
        Evidence { slot: slot as u16, value: self.values[slot], weight: None }
    }
}

/// Anything that looks at an event and its features and may report findings.
///
/// Detectors keep no counters of their own: state lives in the feature store,
/// so adding or editing a detector costs no memory and resets nothing.
pub trait Detector: Send + Sync {
    /// A short name, used as the finding's `detector`.
    fn name(&self) -> &str;

    /// Look at one event; push any findings onto `findings`.
    fn detect(&self, event: &Event, features: &FeatureView<'_>, findings: &mut Vec<Finding>);
}
