//! Any text as a model file: refused with a message or, if accepted, safe to score.
//! The body is `haechi_detector::fuzzing::model_file`, shared with the corpus test
//! (`tests/tests/fuzz_corpus.rs`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| haechi_detector::fuzzing::model_file(data));
