//! Tests of the parent module (`delimited.rs`).

use super::*;
use crate::read::decode::test_support::synthetic;
use crate::Format;

fn reader(input: Box<dyn BufRead + Send>, limits: &Limits) -> Result<DelimitedReader, ReadError> {
    DelimitedReader::new(
        input,
        DelimitedOptions::for_format(Format::Csv),
        limits,
        &StartAt::default(),
    )
}

fn rejected(record: Option<Record<'_>>) -> Option<(Position, ErrorCode)> {
    match record {
        Some(Record {
            position,
            body: RecordBody::Invalid(e),
        }) => Some((position, e.code)),
        _ => None,
    }
}

/// Asserts that the reader's next record, the first after a one-line header, is rejected with `code`.
fn assert_first_row_rejected(r: &mut DelimitedReader, code: ErrorCode) -> Result<(), ReadError> {
    let first_row = Position {
        record: 1,
        line: 2,
        byte: 2,
    };
    assert_eq!(rejected(r.next_record()?), Some((first_row, code)));
    Ok(())
}

fn first_field(record: Option<Record<'_>>) -> Option<Vec<u8>> {
    match record {
        Some(Record {
            body: RecordBody::Fields(f),
            ..
        }) => f.get(0).map(<[u8]>::to_vec),
        _ => None,
    }
}

/// A record in a comparable form: its fields, or why it was rejected.
type Yielded = (Position, Result<Vec<Vec<u8>>, ErrorCode>);

/// Everything a reader yields.
fn read_everything(mut r: DelimitedReader) -> Vec<Yielded> {
    let mut got = Vec::new();
    loop {
        match r.next_record() {
            Ok(Some(record)) => {
                let body = match record.body {
                    RecordBody::Fields(f) => Ok(f.iter().map(<[u8]>::to_vec).collect()),
                    RecordBody::Invalid(e) => Err(e.code),
                    RecordBody::Json(_) => Err(ErrorCode::InvalidJsonValue),
                };
                got.push((record.position, body));
            }
            Ok(None) => return got,
            Err(_) => {
                got.push((r.next_position(), Err(ErrorCode::RecordTooLarge)));
                return got;
            }
        }
    }
}

/// Files of random records built from the bytes that matter (quotes, delimiters, line breaks, `""`, text
/// after a closing quote, unclosed quotes), read with the fast paths and with `csv-core` alone: the same
/// records, fields, positions and rejections.
#[test]
fn the_fast_paths_read_exactly_what_csv_core_reads() -> Result<(), ReadError> {
    let pieces: [&[u8]; 16] = [
        b"a",
        b"bc",
        b"hello world",
        b",",
        b",",
        b"\t",
        b"\"",
        b"\"\"",
        b"\"x,y\"",
        b"\n",
        b"\r\n",
        b"\r",
        b" ",
        b"\xC3\xA9",
        b"\"q\"",
        b"\\",
    ];
    let mut rng = crate::test_rng::XorShift(0x2545_F491_4F6C_DD1Du64);
    let mut next = |n: u64| rng.below(n);
    for round in 0..400 {
        let mut file = Vec::new();
        while file.len() < 2_000 + (round % 7) * 100 {
            // Mostly plain cells between delimiters, so that many records take the fast paths.
            let piece = if next(3) == 0 {
                pieces[next(pieces.len() as u64) as usize]
            } else {
                pieces[next(4) as usize]
            };
            file.extend_from_slice(piece);
            if next(12) == 0 {
                file.push(b'\n');
            }
        }
        for format in [Format::Csv, Format::Tsv] {
            let options = DelimitedOptions {
                has_header: false,
                ..DelimitedOptions::for_format(format)
            };
            let open = || {
                DelimitedReader::new(
                    Box::new(std::io::Cursor::new(file.clone())),
                    options,
                    &Limits::default(),
                    &StartAt::default(),
                )
            };
            let fast = open()?;
            let mut reference = open()?;
            reference.fast = None;
            assert_eq!(
                read_everything(fast),
                read_everything(reference),
                "{format}: {:?}",
                String::from_utf8_lossy(&file)
            );
        }
    }
    Ok(())
}

/// Records of random bytes (delimiters, line breaks, quotes, control and non-ASCII bytes), CSV and TSV:
/// wherever the reader says what a record's text holds, it says what a scan of that text finds.
#[test]
fn text_flags_found_while_splitting_match_a_scan_of_the_text() -> Result<(), ReadError> {
    let alphabet = [
        b'a', b'b', b'7', b' ', b',', b'\t', b'\\', 0x01, 0x1F, 0x7F, 0xC3, 0xA9, 0xFF, b'"',
    ];
    let mut rng = crate::test_rng::XorShift(0x9E37_79B9_7F4A_7C15u64);
    let mut next = |n: u64| rng.below(n);
    let (mut told, mut checked) = (0, 0);
    for format in [Format::Csv, Format::Tsv] {
        let mut file = b"h\n".to_vec();
        for _ in 0..3_000 {
            let len = next(160);
            for _ in 0..len {
                // Mostly plain letters, so that many records have nothing to escape.
                let b = if next(6) == 0 {
                    alphabet[next(alphabet.len() as u64) as usize]
                } else {
                    b'a' + next(26) as u8
                };
                file.push(b);
            }
            file.push(b'\n');
        }
        let options = DelimitedOptions {
            has_header: false,
            ..DelimitedOptions::for_format(format)
        };
        let mut r = DelimitedReader::new(
            Box::new(std::io::Cursor::new(file)),
            options,
            &Limits::default(),
            &StartAt::default(),
        )?;
        while let Some(record) = r.next_record()? {
            if let RecordBody::Fields(fields) = record.body {
                checked += 1;
                if let Some(flags) = fields.text_flags() {
                    told += 1;
                    // The fields' bytes only: separated fields have delimiters (tabs) between them.
                    let text: Vec<u8> = fields.iter().flatten().copied().collect();
                    assert_eq!(
                        flags,
                        crate::bytes::text_flags(&text),
                        "{text:?} at {:?}",
                        record.position
                    );
                }
            }
        }
    }
    assert!(told > 1_000 && told < checked, "told {told} of {checked}");
    Ok(())
}

#[test]
fn record_over_limit_is_skipped_without_buffering() -> Result<(), ReadError> {
    let limits = Limits {
        max_record_bytes: 1000,
        ..Limits::default()
    };
    // 50 MB inside quotes (with delimiters and line breaks in it), then a normal record.
    let input = synthetic(b"h\n\"", b',', 50_000_000, b"\n\"\nnext\n");
    let mut r = reader(input, &limits)?;
    let baseline = r.buffer_capacity();
    assert_first_row_rejected(&mut r, ErrorCode::RecordTooLarge)?;
    assert!(
        r.buffer_capacity() <= baseline + 2 * 1024,
        "{} > {baseline}",
        r.buffer_capacity()
    );
    assert_eq!(first_field(r.next_record()?), Some(b"next".to_vec()));
    assert_eq!(
        r.next_position(),
        Position {
            record: 3,
            line: 5,
            byte: 50_000_011
        }
    );
    assert!(r.next_record()?.is_none());
    Ok(())
}

#[test]
fn too_many_columns_is_skipped_without_buffering() -> Result<(), ReadError> {
    let limits = Limits {
        max_columns: 100,
        ..Limits::default()
    };
    let input = synthetic(b"h\n", b',', 5_000_000, b"\nnext\n");
    let mut r = reader(input, &limits)?;
    assert_first_row_rejected(&mut r, ErrorCode::TooManyColumns)?;
    assert!(r.ends.capacity() <= 100, "{}", r.ends.capacity());
    assert_eq!(first_field(r.next_record()?), Some(b"next".to_vec()));
    Ok(())
}

fn no_newline_is_one_row_error(len: u64) -> Result<(), ReadError> {
    let started = std::time::Instant::now();
    let mut r = reader(synthetic(b"h\n", b'a', len, b""), &Limits::default())?;
    assert_first_row_rejected(&mut r, ErrorCode::RecordTooLarge)?;
    assert!(r.next_record()?.is_none());
    assert_eq!(r.next_position().byte, 2 + len);
    assert!(
        r.buffer_capacity() < 2 * 1024 * 1024 + INPUT_BYTES,
        "{}",
        r.buffer_capacity()
    );
    eprintln!("{len} bytes in {:?}", started.elapsed());
    Ok(())
}

const INPUT_BYTES: usize = crate::read::decode::DECODED_BUFFER_BYTES;

/// 2 GB of `a` and no line break: one row error, in linear time (about 3 s in a debug build: the work is
/// in csv-core, built optimised) and bounded memory.
#[test]
fn two_gigabytes_without_newline_is_one_row_error() -> Result<(), ReadError> {
    no_newline_is_one_row_error(2_000_000_000)
}

#[test]
fn header_over_the_record_limit_is_file_error() {
    let limits = Limits {
        max_record_bytes: 10,
        ..Limits::default()
    };
    let got = reader(
        Box::new(std::io::Cursor::new(b"abcdef,ghijkl\n1,2\n".to_vec())),
        &limits,
    );
    assert!(matches!(got, Err(ReadError::Header { line: 1, .. })));
}

#[test]
fn buffers_are_reused_across_records() -> Result<(), ReadError> {
    let data = "a,b,c\n".to_string() + &"1,hello,world\n".repeat(10_000);
    let mut r = reader(
        Box::new(std::io::Cursor::new(data.into_bytes())),
        &Limits::default(),
    )?;
    r.next_record()?;
    let (buf, ends) = (r.buf.as_ptr(), r.ends.as_ptr());
    let mut n = 1;
    while r.next_record()?.is_some() {
        n += 1;
    }
    assert_eq!(n, 10_000);
    assert_eq!(
        (buf, ends),
        (r.buf.as_ptr(), r.ends.as_ptr()),
        "buffers were reallocated"
    );
    Ok(())
}
