//! Any bytes as an event: never a panic, and an error never carries a raw resident number.
//! The body is `haechi_detector::fuzzing::event_parse`, shared with the corpus test
//! (`tests/tests/fuzz_corpus.rs`).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| haechi_detector::fuzzing::event_parse(data));
