//! Any text as a configuration file: accepted or refused with a message, never a panic.
//! The body is `haechi_detector::fuzzing::config_toml`, shared with the corpus test
//! (`tests/tests/fuzz_corpus.rs`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| haechi_detector::fuzzing::config_toml(data));
