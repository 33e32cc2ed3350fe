//! The built-in detector: a failure-streak threshold. It is small on purpose;
//! it keeps the detector path exercised end to end even with no rules loaded.

use std::sync::Arc;

use haechi_features::{Action, Detector, EntityKind, Event, FeatureCatalog, FeatureView, Finding, Mode, Severity};
use serde::{Deserialize, Serialize};

/// Thresholds of the built-in detector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuiltinConfig {
    /// Turn the detector off.
    pub enabled: bool,
    /// Consecutive failures of one customer (or account) that ask for step-up.
    pub challenge_streak: u16,
    /// Consecutive failures that block the entity.
    pub block_streak: u16,
    /// How long that block lasts, seconds.
    pub block_ttl_s: u32,
}

impl Default for BuiltinConfig {
    fn default() -> Self {
        BuiltinConfig { enabled: true, challenge_streak: 5, block_streak: 10, block_ttl_s: 900 }
    }
}

impl BuiltinConfig {
    /// # Errors
    /// A message naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        if self.challenge_streak == 0 || self.block_streak <= self.challenge_streak {
            return Err(format!(
                "builtin: need 0 < challenge_streak ({}) < block_streak ({})",
                self.challenge_streak, self.block_streak
            ));
        }
        Ok(())
    }
}

/// Flags a failure streak on the customer or the bank account.
pub struct FailureStreak {
    config: BuiltinConfig,
    /// (kind, slot of `<kind>.failure_streak`), resolved once.
    slots: Vec<(EntityKind, usize)>,
    name: Arc<str>,
    id: Arc<str>,
}

impl FailureStreak {
    /// Resolve the feature slots it reads.
    pub fn new(config: BuiltinConfig, catalog: &FeatureCatalog) -> FailureStreak {
        let slots = [EntityKind::Customer, EntityKind::Account]
            .into_iter()
            .map(|k| (k, catalog.layout(k).base + 7))
            .collect();
        FailureStreak { config, slots, name: Arc::from("builtin"), id: Arc::from("failure_streak") }
    }
}

impl Detector for FailureStreak {
    fn name(&self) -> &str {
        &self.name
    }

    fn detect(&self, _event: &Event, f: &FeatureView<'_>, findings: &mut Vec<Finding>) {
        for &(kind, slot) in &self.slots {
            let streak = f.get(slot);
            if streak < f32::from(self.config.challenge_streak) {
                continue;
            }
            let (severity, action) = if streak >= f32::from(self.config.block_streak) {
                (Severity::High, Action::Block { ttl_s: self.config.block_ttl_s })
            } else {
                (Severity::Medium, Action::Challenge)
            };
            findings.push(Finding {
                detector: self.name.clone(),
                id: self.id.clone(),
                version: None,
                severity,
                action,
                mode: Mode::Enforce,
                score: severity.score(),
                entity: Some(kind),
                evidence: vec![f.evidence(slot)],
            });
            return;
        }
    }
}
