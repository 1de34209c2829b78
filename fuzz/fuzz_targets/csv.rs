//! `DelimitedReader` on arbitrary bytes, as CSV and as TSV.
#![no_main]

use libfuzzer_sys::fuzz_target;
use s3_importer_core::Format;

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    common::read_all(data, Format::Csv);
    common::read_all(data, Format::Tsv);
});
