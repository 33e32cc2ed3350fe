//! Running the tests written beside the rules: `haechi rules test`.

use std::time::Duration;

use haechi_features::{format_rfc3339_ms, Event, FeatureConfig, FeatureStore, DEFAULT_MAX_EVENT_BYTES};

use crate::file::Expect;
use crate::ruleset::RuleSet;

/// Where test events start when they give no time: Monday 2026-11-02 10:00 KST.
const TEST_START_MS: i64 = 1_793_581_200_000;

/// The outcome of one test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestOutcome {
    pub rule: String,
    pub file: String,
    pub test: String,
    /// `None` on success; what went wrong otherwise.
    pub failure: Option<String>,
}

/// Run every test of every rule in `set`, each on a fresh feature store.
pub fn run_tests(set: &RuleSet, features: &FeatureConfig) -> Vec<TestOutcome> {
    let mut out = Vec::new();
    for (index, rule) in set.rules().iter().enumerate() {
        for t in &rule.tests {
            let failure = run_one(set, index, &t.events, t.expect, t.spacing.unwrap_or(Duration::from_secs(30)), features).err();
            out.push(TestOutcome { rule: rule.id.to_string(), file: rule.file.clone(), test: t.name.clone(), failure });
        }
    }
    out
}

fn run_one(set: &RuleSet, index: usize, events: &[serde_json::Value], expect: Expect, spacing: Duration, cfg: &FeatureConfig) -> Result<(), String> {
    if events.is_empty() {
        return Err("a test needs at least one event".into());
    }
    let store = FeatureStore::new(cfg).map_err(|e| e.to_string())?;
    let mut features = vec![0.0; store.catalog().len()];
    let mut fired_last = false;
    for (i, raw) in events.iter().enumerate() {
        let mut obj = raw.as_object().cloned().ok_or_else(|| format!("event {}: not an object", i + 1))?;
        obj.entry("event_id").or_insert_with(|| format!("test-{}", i + 1).into());
        obj.entry("result").or_insert_with(|| "success".into());
        obj.entry("ts").or_insert_with(|| format_rfc3339_ms(TEST_START_MS + i as i64 * spacing.as_millis() as i64).into());
        let bytes = serde_json::to_vec(&obj).map_err(|e| e.to_string())?;
        let event = Event::parse(&bytes, DEFAULT_MAX_EVENT_BYTES).map_err(|e| format!("event {}: {e}", i + 1))?;
        store.observe(&event, &mut features);
        fired_last = false;
        set.evaluate(&event, &features, |k| fired_last |= k == index);
    }
    match (expect, fired_last) {
        (Expect::Fire, true) | (Expect::NoFire, false) => Ok(()),
        (Expect::Fire, false) => Err("expected the rule to fire on the last event; it did not".into()),
        (Expect::NoFire, true) => Err("expected the rule not to fire on the last event; it fired".into()),
    }
}
