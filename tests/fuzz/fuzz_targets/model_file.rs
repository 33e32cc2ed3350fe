//! Any text as a model file: refused with a message or, if accepted, safe to score.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(m) = haechi_training::ModelFile::parse(text) {
        let model = m.model();
        let row = vec![0.5; m.features.len()];
        let s = model.score_row(&row);
        assert!(s.is_finite());
    }
});
