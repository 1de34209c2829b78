//! Shared by the fuzz targets: read a whole input with tight limits and check the invariants.

use std::io::{BufRead, Cursor};

use s3_importer_core::read::{open_reader, DelimitedOptions, ReadError, RecordBody, StartAt};
use s3_importer_core::{Format, Limits};

/// Tight limits, so the fuzzer reaches the limit paths with small inputs.
pub fn limits() -> Limits {
    Limits {
        max_record_bytes: 64,
        max_json_depth: 8,
        max_columns: 8,
        max_decompressed_bytes: 1 << 20,
    }
}

/// Reads `data` as `format`; panics if an invariant breaks. File errors are fine.
pub fn read_all(data: &[u8], format: Format) {
    let input: Box<dyn BufRead + Send> = Box::new(Cursor::new(data.to_vec()));
    check(input, format, data.len() as u64);
}

/// Reads `input` (of at most `max_len` decoded bytes); panics if an invariant breaks.
pub fn check(input: Box<dyn BufRead + Send>, format: Format, max_len: u64) {
    let limits = limits();
    let Ok(mut reader) = open_reader(
        input,
        format,
        DelimitedOptions::for_format(format),
        &limits,
        &StartAt::default(),
    ) else {
        return;
    };
    if let Some(header) = reader.header() {
        assert!(header.len() <= limits.max_columns);
    }
    let mut last_byte = None;
    loop {
        let record = match reader.next_record() {
            Ok(Some(record)) => record,
            Ok(None) => break,
            Err(ReadError::Io { .. }) => panic!("I/O error from an in-memory input"),
            Err(_) => return,
        };
        let byte = record.position.byte;
        assert!(byte <= max_len);
        assert!(
            last_byte.is_none_or(|last| byte > last),
            "positions must move forward"
        );
        last_byte = Some(byte);
        match record.body {
            RecordBody::Fields(fields) => {
                assert!(fields.len() <= limits.max_columns);
                assert!(fields.iter().map(<[u8]>::len).sum::<usize>() <= limits.max_record_bytes);
            }
            RecordBody::Json(bytes) => assert!(bytes.len() <= limits.max_record_bytes),
            RecordBody::Invalid(_) => {}
        }
    }
}
