//! Any text as a rule file: compiles or reports diagnostics, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static CATALOG: OnceLock<haechi_features::FeatureCatalog> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let catalog = CATALOG.get_or_init(|| haechi_features::FeatureCatalog::new(&haechi_features::FeatureConfig::default().validate().unwrap()));
    if let Ok(set) = haechi_rules::RuleSet::from_text("fuzz.yaml", text, catalog) {
        // A rule set that compiled must also evaluate without panicking.
        let f = vec![0.0; catalog.len()];
        let e = haechi_features::Event::parse(br#"{"event_id":"e","ts":"2026-11-02T10:00:00+09:00","step":"otp","result":"failure","ip":"10.0.0.1"}"#, 4096).unwrap();
        set.evaluate(&e, &f, |_| {});
    }
});
