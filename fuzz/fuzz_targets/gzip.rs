//! The gzip decoder (with the decompressed-bytes cap) under the CSV reader, on arbitrary bytes.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use s3_importer_core::read::decode::decoder;
use s3_importer_core::{Compression, Format};

#[path = "common.rs"]
#[allow(dead_code)] // `read_all` is for the other targets.
mod common;

fuzz_target!(|data: &[u8]| {
    let limits = common::limits();
    let input = decoder(
        Box::new(Cursor::new(data.to_vec())),
        Compression::Gzip,
        &limits,
    );
    common::check(input, Format::Csv, limits.max_decompressed_bytes);
});
