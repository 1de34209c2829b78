//! The validator on arbitrary bytes: a template chosen by the first bytes, every record of the rest validated.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "validate_common.rs"]
#[allow(dead_code)] // `Outcome`'s counts are for the smoke test.
mod validate_common;

fuzz_target!(|data: &[u8]| {
    if let Err(problem) = validate_common::check(data) {
        panic!("{problem}");
    }
});
