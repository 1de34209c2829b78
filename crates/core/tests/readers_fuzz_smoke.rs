//! A bounded, deterministic stand-in for `cargo fuzz` (CI has no nightly toolchain): a few thousand
//! pseudo-random and mutated inputs through every reader under tight limits. Each must end (records or a file
//! error) without panicking, with records that respect the limits, positions that only move forward, and no
//! more records than the input could hold. The validator's target body (`fuzz/fuzz_targets/validate_common.rs`)
//! runs here as it is, on mutated files of every format. The real fuzz targets are in `fuzz/` (see
//! `fuzz/README.md`).

use std::io::{BufRead, Cursor, Read};

use s3_importer_core::read::decode::decoder;
use s3_importer_core::read::{open_reader, DelimitedOptions, ReadError, RecordBody, StartAt};
use s3_importer_core::{Compression, Format, Limits};

#[path = "../../../fuzz/fuzz_targets/validate_common.rs"]
mod validate_common;

/// xorshift64*: tiny, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a>(&mut self, items: &'a [&'a [u8]]) -> &'a [u8] {
        items[self.below(items.len())]
    }
}

const SEEDS: &[&[u8]] = &[
    b"id,name\n1,\"Smith, John\"\n2,\"multi\nline\"\r\n3,\"q \"\"x\"\"\"\n",
    b"\xEF\xBB\xBFa\tb\r\n1\t2\r\n\r\n",
    b"[{\"a\":1},{\"b\":[1,2,{\"c\":\"]\\\"\"}]}, 3, \"s\", null]",
    b"  [ [[[[[]]]]], {} ]  ",
    b"{\"a\":1}\n\n{\"b\":\"x\\\"y\"}\r\nnot json\n[[[[1]]]]\n",
];

/// Interesting bytes for CSV and JSON.
const TOKENS: &[&[u8]] = &[
    b"\"",
    b",",
    b"\n",
    b"\r",
    b"\r\n",
    b"\t",
    b"[",
    b"]",
    b"{",
    b"}",
    b"\\",
    b"\\\"",
    b"\xEF\xBB\xBF",
    b"\xFF",
    b"\"\"",
    b"a",
    b" ",
    b":",
    b"0",
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(8) {
        let at = rng.below(input.len() + 1);
        match rng.below(6) {
            0 if !input.is_empty() => {
                let end = (at + rng.below(8)).min(input.len());
                input.drain(at.min(end)..end);
            }
            1 => {
                let token = rng.pick(TOKENS);
                input.splice(at..at, token.iter().copied());
            }
            2 if at < input.len() => input[at] = rng.next() as u8,
            3 => {
                // Repeat a token many times (deep nesting, long fields, many columns).
                let token = rng.pick(TOKENS);
                let times = rng.below(300);
                let repeated: Vec<u8> = token
                    .iter()
                    .copied()
                    .cycle()
                    .take(token.len() * times)
                    .collect();
                input.splice(at..at, repeated);
            }
            4 if !input.is_empty() => input.truncate(at),
            _ => {
                let byte = rng.next() as u8;
                input.insert(at, byte);
            }
        }
    }
}

/// Hands out the input in small chunks of varying size.
struct Chunked {
    data: Vec<u8>,
    pos: usize,
    rng: Rng,
}

impl Read for Chunked {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (1 + self.rng.below(17))
            .min(buf.len())
            .min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn limits() -> Limits {
    Limits {
        max_record_bytes: 64,
        max_json_depth: 8,
        max_columns: 8,
        max_decompressed_bytes: 1 << 20,
    }
}

/// Reads everything; checks the invariants. Returns whether the file was read to the end.
fn check(data: &[u8], format: Format, input: Box<dyn BufRead + Send>) -> Result<bool, String> {
    let limits = limits();
    let options = DelimitedOptions::for_format(format);
    let mut reader = match open_reader(input, format, options, &limits, &StartAt::default()) {
        Ok(reader) => reader,
        Err(_) => return Ok(false),
    };
    if let Some(header) = reader.header() {
        if header.len() > limits.max_columns {
            return Err(format!("header has {} columns", header.len()));
        }
    }
    let mut last = None;
    let mut count = 0usize;
    loop {
        let record = match reader.next_record() {
            Ok(Some(record)) => record,
            Ok(None) => break,
            Err(ReadError::Io { .. }) => return Err("an I/O error from an in-memory input".into()),
            Err(_) => return Ok(false),
        };
        count += 1;
        if count > data.len() + 1 {
            return Err(format!("{count} records from {} bytes", data.len()));
        }
        let position = record.position;
        if position.byte > data.len() as u64 || position.record != count as u64 {
            return Err(format!("bad position {position}"));
        }
        if let Some((byte, line)) = last {
            if position.byte <= byte || position.line < line {
                return Err(format!("position went backwards: {position}"));
            }
        }
        last = Some((position.byte, position.line));
        match record.body {
            RecordBody::Fields(fields) => {
                let total: usize = fields.iter().map(<[u8]>::len).sum();
                if fields.len() > limits.max_columns || total > limits.max_record_bytes {
                    return Err(format!("record over the limits at {position}"));
                }
            }
            RecordBody::Json(bytes) => {
                if bytes.len() > limits.max_record_bytes {
                    return Err(format!(
                        "JSON record of {} bytes at {position}",
                        bytes.len()
                    ));
                }
            }
            RecordBody::Invalid(_) => {}
        }
        if reader.next_position().byte > data.len() as u64 {
            return Err("next position past the end".into());
        }
    }
    Ok(true)
}

#[test]
fn readers_survive_thousands_of_mutated_inputs() {
    let started = std::time::Instant::now();
    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut completed = 0;
    let iterations = 3000;
    for i in 0..iterations {
        let mut data = if rng.below(4) == 0 {
            // Pure noise from a small alphabet.
            (0..rng.below(200))
                .flat_map(|_| rng.pick(TOKENS).to_vec())
                .collect()
        } else {
            rng.pick(SEEDS).to_vec()
        };
        mutate(&mut rng, &mut data);
        for format in [Format::Csv, Format::Tsv, Format::Json, Format::Jsonl] {
            let chunked = Chunked {
                data: data.clone(),
                pos: 0,
                rng: Rng(rng.next() | 1),
            };
            let input: Box<dyn BufRead + Send> = if i % 2 == 0 {
                Box::new(std::io::BufReader::with_capacity(1 + rng.below(9), chunked))
            } else {
                Box::new(Cursor::new(data.clone()))
            };
            match check(&data, format, input) {
                Ok(true) => completed += 1,
                Ok(false) => {}
                Err(problem) => panic!(
                    "{format} on {:?}: {problem}",
                    String::from_utf8_lossy(&data)
                ),
            }
        }
    }
    // The mutations must leave plenty of readable files, or the test checks nothing.
    assert!(
        completed > iterations,
        "only {completed} inputs were read to the end"
    );
    assert!(
        started.elapsed().as_secs() < 60,
        "took {:?}",
        started.elapsed()
    );
}

#[test]
fn gzip_decoder_survives_mutated_streams() {
    let mut rng = Rng(0xC0FF_EE00_1234_5678);
    let mut plain = Vec::new();
    for i in 0..200 {
        plain.extend(format!("{i},\"row {i}\"\n").into_bytes());
    }
    let mut gz = Vec::new();
    if let Err(e) = flate2::read::GzEncoder::new(&plain[..], flate2::Compression::default())
        .read_to_end(&mut gz)
    {
        panic!("in-memory gzip failed: {e}");
    }
    for _ in 0..500 {
        let mut data = gz.clone();
        mutate(&mut rng, &mut data);
        let input = decoder(Box::new(Cursor::new(data)), Compression::Gzip, &limits());
        let limits = limits();
        let options = DelimitedOptions::for_format(Format::Csv);
        let outcome = open_reader(input, Format::Csv, options, &limits, &StartAt::default())
            .and_then(|mut r| {
                let mut n = 0u64;
                while r.next_record()?.is_some() {
                    n += 1;
                }
                Ok(n)
            });
        match outcome {
            Ok(n) => assert!(n <= (limits.max_decompressed_bytes / 2), "{n} records"),
            Err(
                ReadError::Gzip { .. }
                | ReadError::DecompressedTooLarge { .. }
                | ReadError::Header { .. },
            ) => {}
            Err(other) => panic!("unexpected error from a mutated gzip stream: {other}"),
        }
    }
}

/// Files with the columns `c0`..`c3` the validator target's templates read, a value of every field type in
/// some row, per format (in the order of `validate_common::format_of`).
const VALIDATOR_SEEDS: [&[u8]; 4] = [
    b"c0,c1,c2,c3\n42,2024-05-01,true,a\n-0,01.02.2024,no,B\n3.14,2024-05-01T12:00:00Z,1,ccc\n\
      ,\"x,\"\"y\"\"\",{\"a\":[1]},d\xC3\xA9j\xC3\xA0\n007,2024-05-01 12:00:00.5 +0200,T,\n",
    b"c0\tc1\tc2\tc3\r\n42\t2024-05-01\ttrue\ta\r\n+7\t2024-02-30\tY\tccc\r\n1e3\t\t0\t[1, 2]\r\n",
    b"[{\"c0\":42,\"c1\":\"2024-05-01\",\"c2\":true,\"c3\":\"a\"},\
      {\"c0\":\"-0\",\"c1\":null,\"c2\":\"no\",\"C3 \":\"B\"},\
      {\"c0\":3.14,\"c1\":\"2024-05-01T12:00:00+02:00\",\"c2\":1,\"c3\":{\"x\":[1,2]}},\
      {\"c0\":\"d\\u00e9j\\u00e0\",\"extra\":1}]",
    b"{\"c0\":42,\"c1\":\"2024-05-01\",\"c2\":true,\"c3\":\"a\"}\n\
      {\"c0\":\"007\",\"c1\":\"01.02.2024\",\"c2\":\"n\",\"c3\":\"ccc\"}\n\
      {\"c0\":-1.50,\"c2\":\"TRUE\",\"c3\":\"\\ud800\"}\n[1]\n",
];

#[test]
fn validator_survives_thousands_of_mutated_inputs() {
    let mut rng = Rng(0x0DDB_A11C_AFE0_0017);
    let (mut accepted, mut rejected) = (0, 0);
    for _ in 0..3000 {
        let format = rng.below(4);
        let mut data: Vec<u8> = (0..validate_common::TEMPLATE_BYTES)
            .map(|_| rng.next() as u8)
            .collect();
        // The format the template reads, and the seed of that format.
        data[0] = (data[0] & !3) | format as u8;
        let mut file = VALIDATOR_SEEDS[format].to_vec();
        mutate(&mut rng, &mut file);
        data.extend(file);
        match validate_common::check(&data) {
            Ok(outcome) => {
                accepted += outcome.accepted;
                rejected += outcome.rejected;
            }
            Err(problem) => panic!("{problem} on {:?}", String::from_utf8_lossy(&data)),
        }
    }
    // Both answers must be common, or the test checks little.
    assert!(
        accepted > 250 && rejected > 1000,
        "{accepted} accepted, {rejected} rejected"
    );
}
