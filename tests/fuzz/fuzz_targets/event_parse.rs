//! Any bytes as an event: never a panic, and an error never carries a raw resident number.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = haechi_features::Event::parse(data, 16 * 1024) {
        assert!(haechi_features::find_resident_number(&e.to_string()).is_none());
    }
});
