//! Property tests: whatever a standard writer produces, the readers read back identically, however the input
//! is cut into chunks, and resuming at any record boundary gives the same records.

use std::io::{BufRead, Read};

use proptest::prelude::*;
use s3_importer_core::read::delimited::DelimitedReader;
use s3_importer_core::read::json_array::JsonArrayReader;
use s3_importer_core::read::jsonl::JsonLinesReader;
use s3_importer_core::read::{DelimitedOptions, ReadError, RecordBody, RecordReader, StartAt};
use s3_importer_core::{Format, Limits, Position};

/// A `BufRead` that hands out its bytes in chunks of the given sizes (cycled), from `read` and `fill_buf`.
struct Chunked {
    data: Vec<u8>,
    pos: usize,
    sizes: Vec<usize>,
    turn: usize,
}

impl Chunked {
    fn boxed(data: Vec<u8>, sizes: Vec<usize>) -> Box<dyn BufRead + Send> {
        Box::new(Self {
            data,
            pos: 0,
            sizes,
            turn: 0,
        })
    }

    fn chunk_len(&self) -> usize {
        let size = self
            .sizes
            .get(self.turn % self.sizes.len().max(1))
            .copied()
            .unwrap_or(1)
            .max(1);
        size.min(self.data.len() - self.pos)
    }
}

impl Read for Chunked {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.chunk_len().min(buf.len());
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        self.turn += 1;
        Ok(n)
    }
}

impl BufRead for Chunked {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        let n = self.chunk_len();
        Ok(&self.data[self.pos..self.pos + n])
    }

    fn consume(&mut self, amt: usize) {
        self.pos += amt;
        self.turn += 1;
    }
}

/// Strings with the characters that matter to CSV, plus arbitrary Unicode. U+FEFF is left out: at the very
/// start of a file it is a byte order mark, not data.
fn cell() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => proptest::collection::vec(
            prop_oneof![Just('"'), Just(','), Just('\r'), Just('\n'), Just('\t'), Just(' '), Just('a'), Just('é'), Just('€')],
            0..12,
        )
        .prop_map(|chars| chars.into_iter().collect::<String>()),
        1 => any::<String>().prop_map(|s| s.replace('\u{feff}', "")),
    ]
}

fn table() -> impl Strategy<Value = Vec<Vec<String>>> {
    (1usize..5).prop_flat_map(|width| {
        proptest::collection::vec(proptest::collection::vec(cell(), width), 1..12)
    })
}

fn chunk_sizes() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(1usize..20, 1..8)
}

fn write_csv(rows: &[Vec<String>], delimiter: u8, crlf: bool) -> Result<Vec<u8>, csv::Error> {
    let terminator = if crlf {
        csv::Terminator::CRLF
    } else {
        csv::Terminator::Any(b'\n')
    };
    let mut writer = csv::WriterBuilder::new()
        .delimiter(delimiter)
        .terminator(terminator)
        .from_writer(Vec::new());
    for row in rows {
        writer.write_record(row)?;
    }
    writer
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))
}

/// Records as owned values, plus every checkpoint (the position before each record, then the end).
type Read_ = (Vec<(Position, Vec<Vec<u8>>)>, Vec<Position>);

fn read_all(reader: &mut dyn RecordReader) -> Result<Read_, ReadError> {
    let mut records = Vec::new();
    let mut checkpoints = vec![reader.next_position()];
    while let Some(record) = reader.next_record()? {
        let values = match record.body {
            RecordBody::Fields(f) => f.iter().map(<[u8]>::to_vec).collect(),
            RecordBody::Json(bytes) => vec![bytes.to_vec()],
            RecordBody::Invalid(e) => vec![e.code.as_str().as_bytes().to_vec()],
        };
        records.push((record.position, values));
        checkpoints.push(reader.next_position());
    }
    Ok((records, checkpoints))
}

fn header_strings(reader: &dyn RecordReader) -> Option<Vec<String>> {
    reader.header().map(|h| {
        h.iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect()
    })
}

/// What a reader resuming at `checkpoint` is given: the bytes from there on, and where it starts.
fn resume_at(data: &[u8], checkpoint: &Position) -> Result<(Vec<u8>, StartAt), TestCaseError> {
    let byte = usize::try_from(checkpoint.byte).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let start = StartAt {
        position: *checkpoint,
        header: None,
    };
    Ok((data[byte..].to_vec(), start))
}

/// A file whose cells a writer wrote: does the reader give the cells back?
fn csv_round_trip(
    rows: Vec<Vec<String>>,
    sizes: Vec<usize>,
    tsv: bool,
    crlf: bool,
    bom: bool,
) -> Result<(), TestCaseError> {
    let delimiter = if tsv { b'\t' } else { b',' };
    let mut data = if bom {
        b"\xEF\xBB\xBF".to_vec()
    } else {
        Vec::new()
    };
    data.extend(write_csv(&rows, delimiter, crlf).map_err(|e| TestCaseError::fail(e.to_string()))?);
    let options = DelimitedOptions {
        has_header: false,
        ..DelimitedOptions::for_format(if tsv { Format::Tsv } else { Format::Csv })
    };
    let limits = Limits::default();
    let fail = |e: ReadError| TestCaseError::fail(e.to_string());
    let mut reader = DelimitedReader::new(
        Chunked::boxed(data.clone(), sizes.clone()),
        options,
        &limits,
        &StartAt::default(),
    )
    .map_err(fail)?;
    let (records, checkpoints) = read_all(&mut reader).map_err(fail)?;

    // csv writes a record of one empty field as `""`, which reads back as one empty field: identical.
    let want: Vec<Vec<Vec<u8>>> = rows
        .iter()
        .map(|r| r.iter().map(|c| c.as_bytes().to_vec()).collect())
        .collect();
    let got: Vec<Vec<Vec<u8>>> = records.iter().map(|(_, f)| f.clone()).collect();
    prop_assert_eq!(&got, &want);
    for (i, (position, _)) in records.iter().enumerate() {
        prop_assert_eq!(position.record, i as u64 + 1);
        // The line is 1 + the line breaks before the record's first byte.
        let before = &data
            [..usize::try_from(position.byte).map_err(|e| TestCaseError::fail(e.to_string()))?];
        prop_assert_eq!(
            position.line,
            1 + before.iter().filter(|&&b| b == b'\n').count() as u64
        );
    }

    // Resume at every checkpoint, with another chunking.
    let mut other_sizes = sizes;
    other_sizes.reverse();
    other_sizes.push(7);
    for (i, checkpoint) in checkpoints.iter().enumerate() {
        let (rest, start) = resume_at(&data, checkpoint)?;
        let mut resumed = DelimitedReader::new(
            Chunked::boxed(rest, other_sizes.clone()),
            options,
            &limits,
            &start,
        )
        .map_err(fail)?;
        let (again, _) = read_all(&mut resumed).map_err(fail)?;
        prop_assert_eq!(&again[..], &records[i..]);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn csv_written_by_the_csv_crate_reads_back_identically(
        rows in table(), sizes in chunk_sizes(), crlf in any::<bool>(), bom in any::<bool>(),
    ) {
        csv_round_trip(rows, sizes, false, crlf, bom)?;
    }

    #[test]
    fn tsv_written_by_the_csv_crate_reads_back_identically(rows in table(), sizes in chunk_sizes(), crlf in any::<bool>()) {
        csv_round_trip(rows, sizes, true, crlf, false)?;
    }

    #[test]
    fn csv_header_reads_back_trimmed(rows in table(), sizes in chunk_sizes()) {
        let data = write_csv(&rows, b',', false).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let reader = DelimitedReader::new(Chunked::boxed(data, sizes), DelimitedOptions::for_format(Format::Csv), &Limits::default(), &StartAt::default())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let want: Vec<String> = rows[0].iter().map(|c| c.trim().to_string()).collect();
        prop_assert_eq!(header_strings(&reader), Some(want));
    }

    #[test]
    fn jsonl_written_by_serde_json_reads_back_identically(
        values in proptest::collection::vec(json_value(), 1..10),
        sizes in chunk_sizes(),
        crlf in any::<bool>(),
        blank_lines in proptest::collection::vec(0usize..3, 10),
    ) {
        let mut data = Vec::new();
        for (i, v) in values.iter().enumerate() {
            for _ in 0..blank_lines[i] {
                data.extend_from_slice(if crlf { b"  \r\n" } else { b"\n" });
            }
            data.extend(serde_json::to_vec(v).map_err(|e| TestCaseError::fail(e.to_string()))?);
            data.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
        }
        let open = |bytes: Vec<u8>, sizes: Vec<usize>, start: &StartAt| {
            JsonLinesReader::new(Chunked::boxed(bytes, sizes), &Limits::default(), start)
                .map(|r| Box::new(r) as Box<dyn RecordReader>)
        };
        json_round_trip(&values, data, sizes, &open)?;
    }

    #[test]
    fn json_array_written_by_serde_json_reads_back_identically(
        values in proptest::collection::vec(json_value(), 0..10),
        sizes in chunk_sizes(),
        pretty in any::<bool>(),
    ) {
        let doc = serde_json::Value::Array(values.clone());
        let data = if pretty { serde_json::to_vec_pretty(&doc) } else { serde_json::to_vec(&doc) }
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let open = |bytes: Vec<u8>, sizes: Vec<usize>, start: &StartAt| {
            JsonArrayReader::new(Chunked::boxed(bytes, sizes), &Limits::default(), start)
                .map(|r| Box::new(r) as Box<dyn RecordReader>)
        };
        json_round_trip(&values, data, sizes, &open)?;
    }
}

type Opener<'a> =
    dyn Fn(Vec<u8>, Vec<usize>, &StartAt) -> Result<Box<dyn RecordReader>, ReadError> + 'a;

fn json_round_trip(
    values: &[serde_json::Value],
    data: Vec<u8>,
    sizes: Vec<usize>,
    open: &Opener<'_>,
) -> Result<(), TestCaseError> {
    let fail = |e: ReadError| TestCaseError::fail(e.to_string());
    let mut reader = open(data.clone(), sizes.clone(), &StartAt::default()).map_err(fail)?;
    let (records, checkpoints) = read_all(reader.as_mut()).map_err(fail)?;
    prop_assert_eq!(records.len(), values.len());
    for ((position, bytes), want) in records.iter().zip(values) {
        let got: serde_json::Value = serde_json::from_slice(&bytes[0])
            .map_err(|e| TestCaseError::fail(format!("{e} at {position}")))?;
        prop_assert_eq!(&got, want);
        // The recorded position is where the element's bytes are in the file.
        let start =
            usize::try_from(position.byte).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&data[start..start + bytes[0].len()], &bytes[0][..]);
    }
    for (i, checkpoint) in checkpoints.iter().enumerate() {
        let (rest, start) = resume_at(&data, checkpoint)?;
        let mut resumed = open(rest, vec![3, 1, 11], &start).map_err(fail)?;
        let (again, _) = read_all(resumed.as_mut()).map_err(fail)?;
        prop_assert_eq!(&again[..], &records[i..]);
    }
    Ok(())
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::Value::Number(n.into())),
        "[\"\\\\\\[\\]{},:\n\r\t a-zé€\u{0}-\u{1f}]{0,12}".prop_map(serde_json::Value::String),
        any::<String>().prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map("[a-z\"\\\\{}]{0,6}", inner, 0..6)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Everything a delimited reader yields, errors included, as comparable values.
type Outcome = Result<(Option<Vec<String>>, Read_), String>;

fn read_delimited(
    data: &[u8],
    sizes: Vec<usize>,
    options: DelimitedOptions,
    limits: &Limits,
) -> Outcome {
    let mut reader = DelimitedReader::new(
        Chunked::boxed(data.to_vec(), sizes),
        options,
        limits,
        &StartAt::default(),
    )
    .map_err(|e| e.to_string())?;
    let header = header_strings(&reader);
    let read = read_all(&mut reader).map_err(|e| e.to_string())?;
    Ok((header, read))
}

/// The reader parses records that lie whole in its input window itself and hands the others to `csv-core`.
/// Fed one byte at a time it never holds a whole record, so `csv-core` parses everything: that is the
/// reference. Fed everything at once (or in random chunks) it must give the same records, positions, row
/// errors and checkpoints.
fn same_as_csv_core(
    data: &[u8],
    sizes: Vec<usize>,
    options: DelimitedOptions,
    limits: &Limits,
) -> Result<(), TestCaseError> {
    let reference = read_delimited(data, vec![1], options, limits);
    let whole = read_delimited(data, vec![1 << 20], options, limits);
    prop_assert_eq!(
        &whole,
        &reference,
        "input {:?}",
        String::from_utf8_lossy(data)
    );
    let chunked = read_delimited(data, sizes, options, limits);
    prop_assert_eq!(
        &chunked,
        &reference,
        "input {:?}",
        String::from_utf8_lossy(data)
    );
    Ok(())
}

/// Bytes that matter to the parser, mixed at random: quotes in odd places, `"a"b`, bare `\r`, blank lines.
fn byte_soup() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            Just(b','),
            Just(b'"'),
            Just(b'\r'),
            Just(b'\n'),
            Just(b'\t'),
            Just(b'a'),
            Just(b'b'),
            Just(b' '),
        ],
        0..120,
    )
}

fn small_limits() -> impl Strategy<Value = Limits> {
    (
        prop_oneof![Just(usize::MAX / 4), 0usize..40],
        prop_oneof![Just(usize::MAX / 4), 1usize..6],
    )
        .prop_map(|(bytes, columns)| Limits {
            max_record_bytes: bytes.min(Limits::default().max_record_bytes),
            max_columns: columns.min(Limits::default().max_columns),
            ..Limits::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn fast_path_matches_csv_core_on_byte_soup(
        data in byte_soup(), sizes in chunk_sizes(), tsv in any::<bool>(), has_header in any::<bool>(),
        limits in small_limits(),
    ) {
        let options = DelimitedOptions {
            has_header,
            ..DelimitedOptions::for_format(if tsv { Format::Tsv } else { Format::Csv })
        };
        same_as_csv_core(&data, sizes, options, &limits)?;
    }

    #[test]
    fn fast_path_matches_csv_core_on_tables(
        rows in table(), sizes in chunk_sizes(), tsv in any::<bool>(), crlf in any::<bool>(),
        limits in small_limits(),
    ) {
        let delimiter = if tsv { b'\t' } else { b',' };
        let data = write_csv(&rows, delimiter, crlf).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let options = DelimitedOptions {
            has_header: false,
            ..DelimitedOptions::for_format(if tsv { Format::Tsv } else { Format::Csv })
        };
        same_as_csv_core(&data, sizes, options, &limits)?;
    }
}
