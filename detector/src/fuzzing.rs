//! Entry points of the fuzz targets in `tests/fuzz`: each target calls one of
//! these, and the `tests` crate feeds the checked-in seed corpora
//! (`tests/fuzz/seeds/<target>/`) through the same functions as ordinary
//! tests, so the corpora run in CI without cargo-fuzz or nightly.
//!
//! Each function panics only when an invariant the target checks is broken;
//! refusing bad input with an error is the expected outcome.

use std::sync::OnceLock;

/// Any bytes as an event: never a panic, and an error never carries a raw
/// resident number.
pub fn event_parse(data: &[u8]) {
    if let Err(e) = haechi_features::Event::parse(data, 16 * 1024) {
        let message = e.to_string();
        assert!(haechi_features::find_resident_number(&message).is_none(), "a raw resident number in an error: {message}");
    }
}

/// Any text as a rule file: compiles or reports diagnostics, never panics; a
/// rule set that compiled also evaluates without panicking.
pub fn rule_file(data: &[u8]) {
    static CATALOG: OnceLock<haechi_features::FeatureCatalog> = OnceLock::new();
    let Ok(text) = std::str::from_utf8(data) else { return };
    let catalog = CATALOG.get_or_init(|| haechi_features::FeatureCatalog::new(&haechi_features::FeatureConfig::default().validate().unwrap()));
    if let Ok(set) = haechi_rules::RuleSet::from_text("fuzz.yaml", text, catalog) {
        let f = vec![0.0; catalog.len()];
        let e = haechi_features::Event::parse(br#"{"event_id":"e","ts":"2026-11-02T10:00:00+09:00","step":"otp","result":"failure","ip":"10.0.0.1"}"#, 4096).unwrap();
        set.evaluate(&e, &f, |_| {});
    }
}

/// Any text as a configuration file: accepted or refused with a message,
/// never a panic.
pub fn config_toml(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::Config::parse(text);
    }
}

/// Any text as a model file: refused with a message or, if accepted, safe to
/// score (a finite score).
pub fn model_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(m) = haechi_training::ModelFile::parse(text) {
        let model = m.model();
        let row = vec![0.5; m.features.len()];
        let s = model.score_row(&row);
        assert!(s.is_finite(), "non-finite score {s}");
        // The stream scores f32 rows: the same answer, to the last bit.
        let narrow = vec![0.5f32; m.features.len()];
        assert_eq!(model.forest().score_above_f32(&narrow, 0.0), model.forest().score_above(|f| row[f], 0.0));
    }
}
