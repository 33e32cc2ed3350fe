//! Any text as a rule file: compiles or reports diagnostics, never panics.
//! The body is `haechi_detector::fuzzing::rule_file`, shared with the corpus test
//! (`tests/tests/fuzz_corpus.rs`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| haechi_detector::fuzzing::rule_file(data));
