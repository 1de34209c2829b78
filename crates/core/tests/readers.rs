//! The streaming record readers, case by case. Fixtures in `tests/fixtures/` are named for their edge case.

use std::error::Error;
use std::io::{BufRead, Cursor, Read, Write};
use std::path::Path;

use s3_importer_core::read::decode::decoder;
use s3_importer_core::read::delimited::DelimitedReader;
use s3_importer_core::read::json_array::JsonArrayReader;
use s3_importer_core::read::jsonl::JsonLinesReader;
use s3_importer_core::read::{
    open_reader, DelimitedOptions, ReadError, RecordBody, RecordReader, StartAt,
};
use s3_importer_core::{Compression, ErrorCode, Format, Limits, Position};

type TestResult = Result<(), Box<dyn Error>>;

/// A record, owned, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Got {
    Fields(Vec<Vec<u8>>),
    Json(Vec<u8>),
    Invalid(ErrorCode),
}

fn fixture(name: &str) -> Result<Vec<u8>, std::io::Error> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
}

fn pos(record: u64, line: u64, byte: u64) -> Position {
    Position { record, line, byte }
}

fn input(bytes: &[u8]) -> Box<dyn BufRead + Send> {
    Box::new(Cursor::new(bytes.to_vec()))
}

fn fields(cells: &[&str]) -> Got {
    Got::Fields(cells.iter().map(|c| c.as_bytes().to_vec()).collect())
}

fn json(text: &str) -> Got {
    Got::Json(text.as_bytes().to_vec())
}

fn collect(reader: &mut dyn RecordReader) -> Result<Vec<(Position, Got)>, ReadError> {
    let mut out = Vec::new();
    while let Some(record) = reader.next_record()? {
        let got = match record.body {
            RecordBody::Fields(f) => Got::Fields(f.iter().map(<[u8]>::to_vec).collect()),
            RecordBody::Json(bytes) => Got::Json(bytes.to_vec()),
            RecordBody::Invalid(e) => Got::Invalid(e.code),
        };
        out.push((record.position, got));
    }
    Ok(out)
}

fn header(reader: &dyn RecordReader) -> Option<Vec<String>> {
    reader.header().map(|h| {
        h.iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect()
    })
}

fn csv(bytes: &[u8]) -> Result<DelimitedReader, ReadError> {
    csv_with(bytes, &Limits::default())
}

fn csv_with(bytes: &[u8], limits: &Limits) -> Result<DelimitedReader, ReadError> {
    DelimitedReader::new(
        input(bytes),
        DelimitedOptions::for_format(Format::Csv),
        limits,
        &StartAt::default(),
    )
}

fn jsonl_with(bytes: &[u8], limits: &Limits) -> Result<JsonLinesReader, ReadError> {
    JsonLinesReader::new(input(bytes), limits, &StartAt::default())
}

fn array_with(bytes: &[u8], limits: &Limits) -> Result<JsonArrayReader, ReadError> {
    JsonArrayReader::new(input(bytes), limits, &StartAt::default())
}

// ---------------------------------------------------------------- CSV / TSV

#[test]
fn quoted_fields_with_commas_and_doubled_quotes() -> TestResult {
    let mut r = csv(&fixture("quoted-fields.csv")?)?;
    assert_eq!(
        header(&r),
        Some(vec!["id".into(), "name".into(), "quote".into()])
    );
    let got = collect(&mut r)?;
    assert_eq!(
        got,
        vec![
            (
                pos(1, 2, 14),
                fields(&["1", "Smith, John", "He said \"hi\""])
            ),
            (pos(2, 3, 47), fields(&["2", "a,b,c", "\""])),
            (pos(3, 4, 62), fields(&["3", "plain", ""])),
        ]
    );
    Ok(())
}

#[test]
fn quote_never_closed_is_a_row_error_not_a_value_swallowing_the_rest() -> TestResult {
    // The opening quote of record 2 is never closed: csv-core reads the rest of the file as its value. The
    // record is rejected (`unterminated_quote`, at the record where the quote opened) instead of imported.
    let mut r = csv(b"id,s\n1,a\n2,\"unclosed\n3,b\n")?;
    let got = collect(&mut r)?;
    assert_eq!(
        got,
        vec![
            (pos(1, 2, 5), fields(&["1", "a"])),
            (pos(2, 3, 9), Got::Invalid(ErrorCode::UnterminatedQuote)),
        ]
    );
    // Closed quotes at the end of the file, with or without a final line break, and `""` inside them.
    for text in [
        &b"id,s\n1,\"a\"\n"[..],
        b"id,s\n1,\"a\"",
        b"id,s\n1,\"a \"\"b\"\"\"",
        b"id,s\n1,\"a\nb\"",
        b"id,s\n1,x\"y",
    ] {
        let got = collect(&mut csv(text)?)?;
        assert_eq!(got.len(), 1, "{:?}", String::from_utf8_lossy(text));
        assert!(
            matches!(got[0].1, Got::Fields(_)),
            "{:?}: {got:?}",
            String::from_utf8_lossy(text)
        );
    }
    // An escaped quote as the last bytes leaves the field open.
    let got = collect(&mut csv(b"id,s\n1,\"a\"\"")?)?;
    assert_eq!(
        got,
        vec![(pos(1, 2, 5), Got::Invalid(ErrorCode::UnterminatedQuote))]
    );
    Ok(())
}

#[test]
fn text_after_a_closing_quote_is_a_row_error() -> TestResult {
    // csv-core (like most lenient readers) glues `"1"2` into `12`; where the value ends is a guess, so the
    // record is rejected and the file goes on.
    for (text, glued) in [
        (&b"id,s\n1,\"a\"b\n2,c\n"[..], "\"a\"b"),
        (b"id,s\n1,\"a\" \n2,c\n", "a space after the closing quote"),
        (b"id,s\n1,\"a\"\"\"b\"\n2,c\n", "\"a\"\"\"b\""),
        (b"id,s\n\"1\"0,a\n2,c\n", "in the first field"),
        (b"id,s\r\n1,\"a\"b\r\n2,c", "CRLF, no final line break"),
    ] {
        let got = collect(&mut csv(text)?)?;
        let lf = if text.contains(&b'\r') { 6 } else { 5 };
        assert_eq!(got.len(), 2, "{glued}: {got:?}");
        assert_eq!(
            got[0],
            (pos(1, 2, lf), Got::Invalid(ErrorCode::TextAfterQuote)),
            "{glued}"
        );
        assert!(matches!(got[1].1, Got::Fields(_)), "{glued}: {got:?}");
    }
    // Closing quotes followed by a delimiter, a line break or the end of the file are fine; a quote inside an
    // unquoted field is data.
    for text in [
        &b"id,s\n\"1\",\"a\"\"b\"\n"[..],
        b"id,s\n\"1\",\"a\"\r\n",
        b"id,s\n\"1\",\"a\"",
        b"id,s\n1,x\"y\"z\n",
        b"id,s\n1, \"a\"\n",
    ] {
        let got = collect(&mut csv(text)?)?;
        assert_eq!(got.len(), 1, "{:?}", String::from_utf8_lossy(text));
        assert!(
            matches!(got[0].1, Got::Fields(_)),
            "{:?}: {got:?}",
            String::from_utf8_lossy(text)
        );
    }
    // In the header it is a file error.
    let got = csv(b"\"id\"x,s\n1,a\n");
    assert!(
        matches!(&got, Err(ReadError::Header { line: 1, message }) if message.contains("after its closing quote")),
        "{:?}",
        got.err()
    );
    Ok(())
}

#[test]
fn embedded_newlines_count_lines() -> TestResult {
    let mut r = csv(&fixture("quoted-newlines.csv")?)?;
    let got = collect(&mut r)?;
    assert_eq!(
        got,
        vec![
            (
                pos(1, 2, 8),
                fields(&["1", "line one\nline two\nline three"])
            ),
            (pos(2, 5, 41), fields(&["2", "after"])),
            (pos(3, 6, 49), fields(&["3", "x\r\ny"])),
            (pos(4, 8, 58), fields(&["4", "last"])),
        ]
    );
    Ok(())
}

#[test]
fn crlf_and_lf_line_endings() -> TestResult {
    let mut r = csv(&fixture("crlf.csv")?)?;
    assert_eq!(header(&r), Some(vec!["id".into(), "name".into()]));
    assert_eq!(
        collect(&mut r)?,
        vec![
            (pos(1, 2, 9), fields(&["1", "alice"])),
            (pos(2, 3, 18), fields(&["2", "bob"])),
            (pos(3, 4, 24), fields(&["3", "carol"])),
        ]
    );
    assert_eq!(r.next_position(), pos(4, 5, 33));
    // A lone `\r` ends a record too (old Mac files); it does not count as a new line.
    let mut r = csv(b"a\r1\r2")?;
    assert_eq!(
        collect(&mut r)?,
        vec![
            (pos(1, 1, 2), fields(&["1"])),
            (pos(2, 1, 4), fields(&["2"]))
        ]
    );
    Ok(())
}

#[test]
fn bom_is_stripped_and_counted() -> TestResult {
    let mut r = csv(&fixture("bom.csv")?)?;
    assert_eq!(header(&r), Some(vec!["id".into(), "name".into()]));
    assert_eq!(
        collect(&mut r)?,
        vec![
            (pos(1, 2, 11), fields(&["1", "alice"])),
            (pos(2, 3, 19), fields(&["2", "bob"]))
        ]
    );
    Ok(())
}

#[test]
fn bom_only_and_empty_files_have_an_empty_header_and_no_rows() -> TestResult {
    for name in ["bom-only.csv", "empty.csv"] {
        let mut r = csv(&fixture(name)?)?;
        assert_eq!(header(&r), Some(vec![]), "{name}");
        assert_eq!(collect(&mut r)?, vec![], "{name}");
    }
    Ok(())
}

#[test]
fn tsv_uses_tabs() -> TestResult {
    let options = DelimitedOptions::for_format(Format::Tsv);
    let mut r = DelimitedReader::new(
        input(&fixture("tabs.tsv")?),
        options,
        &Limits::default(),
        &StartAt::default(),
    )?;
    assert_eq!(
        header(&r),
        Some(vec!["id".into(), "name".into(), "note".into()])
    );
    assert_eq!(
        collect(&mut r)?,
        vec![
            (pos(1, 2, 13), fields(&["1", "Smith, John", "quoted\ttab"])),
            (pos(2, 3, 40), fields(&["2", "bob", ""])),
        ]
    );
    Ok(())
}

#[test]
fn blank_lines_are_skipped_and_counted() -> TestResult {
    let mut r = csv(&fixture("blank-lines.csv")?)?;
    assert_eq!(
        collect(&mut r)?,
        vec![
            (pos(1, 3, 9), fields(&["1", "alice"])),
            (pos(2, 6, 19), fields(&["2", "bob"]))
        ]
    );
    Ok(())
}

#[test]
fn header_is_trimmed_but_not_lowercased() -> TestResult {
    let r = csv(&fixture("untrimmed-header.csv")?)?;
    assert_eq!(
        header(&r),
        Some(vec!["Id".into(), "Full Name".into(), "EMAIL".into()])
    );
    Ok(())
}

#[test]
fn without_header_the_first_row_is_a_record() -> TestResult {
    let options = DelimitedOptions {
        has_header: false,
        ..DelimitedOptions::for_format(Format::Csv)
    };
    let mut r = DelimitedReader::new(
        input(b"a,b\n1,2\n"),
        options,
        &Limits::default(),
        &StartAt::default(),
    )?;
    assert!(r.header().is_none());
    assert_eq!(
        collect(&mut r)?,
        vec![
            (pos(1, 1, 0), fields(&["a", "b"])),
            (pos(2, 2, 4), fields(&["1", "2"]))
        ]
    );
    Ok(())
}

#[test]
fn invalid_utf8_header_is_file_error() -> TestResult {
    match csv(&fixture("invalid-utf8-header.csv")?) {
        Err(ReadError::Header { line: 1, message }) => {
            assert!(message.contains("column 2"), "{message}")
        }
        Err(other) => panic!("expected a header error, got {other}"),
        Ok(_) => panic!("expected a header error"),
    }
    Ok(())
}

#[test]
fn header_with_too_many_columns_is_file_error() {
    let limits = Limits {
        max_columns: 3,
        ..Limits::default()
    };
    let got = csv_with(b"a,b,c,d\n1,2,3,4\n", &limits);
    assert!(
        matches!(got, Err(ReadError::Header { line: 1, .. })),
        "{:?}",
        got.err()
    );
}

#[test]
fn too_many_columns_is_row_error_and_the_file_goes_on() -> TestResult {
    let limits = Limits {
        max_columns: 3,
        ..Limits::default()
    };
    let mut r = csv_with(b"a,b,c\n1,2,3\n1,2,3,4,5,6,7\n\"x\ny\",2,3\n", &limits)?;
    assert_eq!(
        collect(&mut r)?,
        vec![
            (pos(1, 2, 6), fields(&["1", "2", "3"])),
            (pos(2, 3, 12), Got::Invalid(ErrorCode::TooManyColumns)),
            (pos(3, 4, 26), fields(&["x\ny", "2", "3"])),
        ]
    );
    Ok(())
}

#[test]
fn field_count_mismatch_and_invalid_utf8_fields_are_left_to_the_validator() -> TestResult {
    let mut r = csv(b"a,b\n1\n1,2,3\n\xff,x\n")?;
    assert_eq!(
        collect(&mut r)?
            .into_iter()
            .map(|(_, g)| g)
            .collect::<Vec<_>>(),
        vec![
            fields(&["1"]),
            fields(&["1", "2", "3"]),
            Got::Fields(vec![b"\xff".to_vec(), b"x".to_vec()])
        ]
    );
    Ok(())
}

#[test]
fn record_over_limit_is_a_row_error_at_its_position() -> TestResult {
    let limits = Limits {
        max_record_bytes: 10,
        ..Limits::default()
    };
    let long = format!(
        "a,b\n1,2\n\"{}\",x\n3,4\n0123456789\n01234567890\n",
        "y\n".repeat(50)
    );
    let mut r = csv_with(long.as_bytes(), &limits)?;
    assert_eq!(
        collect(&mut r)?,
        vec![
            (pos(1, 2, 4), fields(&["1", "2"])),
            (pos(2, 3, 8), Got::Invalid(ErrorCode::RecordTooLarge)),
            (pos(3, 54, 113), fields(&["3", "4"])),
            (pos(4, 55, 117), fields(&["0123456789"])),
            (pos(5, 56, 128), Got::Invalid(ErrorCode::RecordTooLarge)),
        ]
    );
    Ok(())
}

#[test]
fn last_record_without_newline_is_read() -> TestResult {
    let mut r = csv(b"a,b\n1,2")?;
    assert_eq!(collect(&mut r)?, vec![(pos(1, 2, 4), fields(&["1", "2"]))]);
    assert_eq!(r.next_position(), pos(2, 2, 7));
    Ok(())
}

#[test]
fn resuming_mid_file_without_the_header_is_refused() {
    let start = StartAt {
        position: pos(2, 2, 4),
        header: None,
    };
    let got = DelimitedReader::new(
        input(b"1,2\n"),
        DelimitedOptions::for_format(Format::Csv),
        &Limits::default(),
        &start,
    );
    assert!(matches!(got, Err(ReadError::Header { .. })));
}

// ---------------------------------------------------------------- resume

/// Opens a reader over some bytes, starting at a checkpoint.
type Opener = dyn Fn(&[u8], &StartAt) -> Result<Box<dyn RecordReader>, ReadError>;

/// Reads `data` in one pass, then again from every record boundary: the rest must be identical.
fn assert_resumes_everywhere(data: &[u8], open: &Opener) -> TestResult {
    let mut one_pass = open(data, &StartAt::default())?;
    let head = header(one_pass.as_ref());
    let mut boundaries = vec![one_pass.next_position()];
    let mut all = Vec::new();
    while let Some(record) = one_pass.next_record()? {
        let got = match record.body {
            RecordBody::Fields(f) => Got::Fields(f.iter().map(<[u8]>::to_vec).collect()),
            RecordBody::Json(bytes) => Got::Json(bytes.to_vec()),
            RecordBody::Invalid(e) => Got::Invalid(e.code),
        };
        all.push((record.position, got));
        boundaries.push(one_pass.next_position());
    }
    // After the end, trailing line breaks and whitespace have been read too.
    let end = one_pass.next_position();
    assert!(all.len() >= 2, "the sample should have a few records");
    for (i, boundary) in boundaries.iter().enumerate() {
        let start = StartAt {
            position: *boundary,
            header: head.clone(),
        };
        let rest = &data[usize::try_from(boundary.byte)?..];
        let mut resumed = open(rest, &start)?;
        assert_eq!(
            collect(resumed.as_mut())?,
            all[i..].to_vec(),
            "resumed at {boundary}"
        );
        assert_eq!(
            resumed.next_position(),
            end,
            "end after resuming at {boundary}"
        );
    }
    Ok(())
}

fn open_format(
    format: Format,
    limits: Limits,
) -> impl Fn(&[u8], &StartAt) -> Result<Box<dyn RecordReader>, ReadError> {
    move |data, start| {
        open_reader(
            input(data),
            format,
            DelimitedOptions::for_format(format),
            &limits,
            start,
        )
    }
}

#[test]
fn resume_from_every_record_boundary_matches_one_pass_csv() -> TestResult {
    let limits = Limits {
        max_record_bytes: 30,
        max_columns: 4,
        ..Limits::default()
    };
    let data = b"\xEF\xBB\xBFid,note\r\n1,\"multi\r\nline\"\r\n\r\n2,\"a \"\"q\"\" b\"\n3,way too long for the limit of thirty\n4,a,b,c,d,e\n\n\n5,x\r6,last";
    assert_resumes_everywhere(data, &open_format(Format::Csv, limits))?;
    for name in [
        "quoted-newlines.csv",
        "crlf.csv",
        "blank-lines.csv",
        "quoted-fields.csv",
    ] {
        assert_resumes_everywhere(
            &fixture(name)?,
            &open_format(Format::Csv, Limits::default()),
        )?;
    }
    Ok(())
}

#[test]
fn resume_from_every_record_boundary_matches_one_pass_tsv() -> TestResult {
    assert_resumes_everywhere(
        b"a\tb\n1\t\"x\ny\"\n\n2\t3\r\n4\t5\n",
        &open_format(Format::Tsv, Limits::default()),
    )
}

#[test]
fn resume_from_every_record_boundary_matches_one_pass_json_array() -> TestResult {
    let limits = Limits {
        max_record_bytes: 40,
        max_json_depth: 3,
        ..Limits::default()
    };
    let data = b"\xEF\xBB\xBF [ {\"a\": \"x]\\\"\"} ,\n\n 12 , \"str\\\"ing\",[[[[1]]]], {\"too\": \"long for forty bytes........\"},\r\n{\"b\":\n[1]} ]\n ";
    assert_resumes_everywhere(data, &open_format(Format::Json, limits))?;
    assert_resumes_everywhere(
        &fixture("array.json")?,
        &open_format(Format::Json, Limits::default()),
    )
}

#[test]
fn resume_from_every_record_boundary_matches_one_pass_jsonl() -> TestResult {
    let limits = Limits {
        max_record_bytes: 20,
        max_json_depth: 2,
        ..Limits::default()
    };
    let data = b"\xEF\xBB\xBF{\"a\":1}\r\n\n  \n{\"a\":\"longer than twenty bytes\"}\n[[[1]]]\nnot json\n{\"b\":2}";
    assert_resumes_everywhere(data, &open_format(Format::Jsonl, limits))?;
    assert_resumes_everywhere(
        &fixture("blank-lines.jsonl")?,
        &open_format(Format::Jsonl, Limits::default()),
    )
}

// ---------------------------------------------------------------- JSON array

#[test]
fn json_array_streams_elements() -> TestResult {
    let mut r = array_with(&fixture("array.json")?, &Limits::default())?;
    assert!(r.header().is_none());
    let got = collect(&mut r)?;
    assert_eq!(
        got,
        vec![
            (pos(1, 2, 4), json(r#"{"id": 1, "name": "alice"}"#)),
            (
                pos(2, 3, 34),
                json(r#"{"id": 2, "tags": ["a", "b]"], "s": "quote \" and {brace"}"#)
            ),
            (
                pos(3, 4, 96),
                json("{\"id\": 3,\n   \"nested\": {\"deep\": [1, 2, {\"x\": null}]}}")
            ),
        ]
    );
    for (_, g) in &got {
        if let Got::Json(bytes) = g {
            serde_json::from_slice::<serde_json::Value>(bytes)?;
        }
    }
    Ok(())
}

#[test]
fn json_array_scalars_are_yielded_for_the_validator() -> TestResult {
    let mut r = array_with(b"[1,\"two\" , true,null,-3.5e2,{}]", &Limits::default())?;
    let got: Vec<Got> = collect(&mut r)?.into_iter().map(|(_, g)| g).collect();
    assert_eq!(
        got,
        vec![
            json("1"),
            json("\"two\""),
            json("true"),
            json("null"),
            json("-3.5e2"),
            json("{}")
        ]
    );
    Ok(())
}

#[test]
fn json_array_empty_array_and_empty_file_have_no_records() -> TestResult {
    for data in [
        &fixture("empty-array.json")?[..],
        &fixture("whitespace-only.json")?,
        b"",
        b"\xEF\xBB\xBF",
        b" [ \n ] \n",
    ] {
        let mut r = array_with(data, &Limits::default())?;
        assert_eq!(
            collect(&mut r)?,
            vec![],
            "{:?}",
            String::from_utf8_lossy(data)
        );
    }
    Ok(())
}

#[test]
fn json_array_ten_thousand_deep_is_row_error() -> TestResult {
    let deep = format!(
        "[{}{}, {{\"ok\": true}}]",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let mut r = array_with(deep.as_bytes(), &Limits::default())?;
    assert_eq!(
        collect(&mut r)?,
        vec![
            (pos(1, 1, 1), Got::Invalid(ErrorCode::JsonTooDeep)),
            (pos(2, 1, 20_003), json("{\"ok\": true}"))
        ]
    );
    Ok(())
}

#[test]
fn json_array_depth_limit_is_inclusive() -> TestResult {
    let limits = Limits {
        max_json_depth: 2,
        ..Limits::default()
    };
    let mut r = array_with(br#"[{"a":[1]}, {"a":[{}]}, "[[[[", [[]]]"#, &limits)?;
    let got: Vec<Got> = collect(&mut r)?.into_iter().map(|(_, g)| g).collect();
    assert_eq!(
        got,
        vec![
            json(r#"{"a":[1]}"#),
            Got::Invalid(ErrorCode::JsonTooDeep),
            json("\"[[[[\""),
            json("[[]]")
        ]
    );
    Ok(())
}

#[test]
fn json_array_element_over_limit_is_row_error() -> TestResult {
    let limits = Limits {
        max_record_bytes: 10,
        ..Limits::default()
    };
    let data = format!(
        "[{{\"a\":1}}, {{\"long\": \"{}\"}}, 12345678901, {{\"b\":2}}]",
        "z".repeat(100_000)
    );
    let mut r = array_with(data.as_bytes(), &limits)?;
    let got: Vec<Got> = collect(&mut r)?.into_iter().map(|(_, g)| g).collect();
    assert_eq!(
        got,
        vec![
            json("{\"a\":1}"),
            Got::Invalid(ErrorCode::RecordTooLarge),
            Got::Invalid(ErrorCode::RecordTooLarge),
            json("{\"b\":2}")
        ]
    );
    Ok(())
}

fn json_structure_error(data: &[u8]) -> Result<(u64, u64, String), Box<dyn Error>> {
    let result = array_with(data, &Limits::default()).and_then(|mut r| collect(&mut r).map(|_| ()));
    match result {
        Err(ReadError::JsonStructure {
            line,
            byte,
            message,
        }) => Ok((line, byte, message)),
        other => Err(format!(
            "{:?}: expected a JSON structure error, got {other:?}",
            String::from_utf8_lossy(data)
        )
        .into()),
    }
}

#[test]
fn json_array_not_an_array_is_file_error() -> TestResult {
    assert_eq!(json_structure_error(&fixture("not-an-array.json")?)?.1, 0);
    assert_eq!(json_structure_error(b"\n\n  \"just a string\"")?.0, 3);
    json_structure_error(b"x")?;
    Ok(())
}

#[test]
fn json_array_truncated_is_file_error() -> TestResult {
    let (_, byte, _) = json_structure_error(&fixture("truncated.json")?)?;
    assert_eq!(byte, 18);
    for data in [
        &b"["[..],
        b"[1",
        b"[1,",
        b"[{\"a\":\"b",
        b"[\"abc\\\"",
        b"[ {} ",
    ] {
        json_structure_error(data)?;
    }
    Ok(())
}

#[test]
fn json_array_broken_separators_are_file_errors() -> TestResult {
    let cases: &[(&[u8], u64)] = &[
        (b"[1 2]", 3),     // missing comma
        (b"[{} x {}]", 4), // garbage between elements
        (b"[1,]", 3),      // trailing comma
        (b"[,1]", 1),      // leading comma
        (b"[1,,2]", 3),    // double comma
        (b"[1] [2]", 4),   // trailing content
        (b"[1]\n,", 4),    // trailing content after a line break
        (b"[}]", 1),       // closing bracket as an element
    ];
    for (data, want_byte) in cases {
        let (_, byte, message) = json_structure_error(data)?;
        assert_eq!(
            byte,
            *want_byte,
            "{:?}: {message}",
            String::from_utf8_lossy(data)
        );
    }
    Ok(())
}

// ---------------------------------------------------------------- JSON Lines

#[test]
fn jsonl_blank_lines_skipped() -> TestResult {
    let mut r = jsonl_with(&fixture("blank-lines.jsonl")?, &Limits::default())?;
    assert!(r.header().is_none());
    assert_eq!(
        collect(&mut r)?,
        vec![
            (pos(1, 1, 0), json("{\"id\":1}")),
            (pos(2, 4, 14), json("{\"id\":2}")),
            (pos(3, 6, 26), json("{\"id\":3}")),
        ]
    );
    assert_eq!(r.next_position(), pos(4, 7, 34));
    Ok(())
}

#[test]
fn jsonl_blank_lines_longer_than_the_record_limit_are_still_blank() -> TestResult {
    let limits = Limits {
        max_record_bytes: 100,
        ..Limits::default()
    };
    let spaces = " ".repeat(200);
    for (text, what) in [
        (format!("{{\"id\":1}}\n{spaces}\n{{\"id\":2}}\n"), "spaces"),
        (
            format!("{{\"id\":1}}\r\n \t{spaces}\r\n{{\"id\":2}}"),
            "tabs and CRLF",
        ),
        (
            format!(
                "{{\"id\":1}}\n{}\n{{\"id\":2}}\n{spaces}",
                " ".repeat(100_000)
            ),
            "longer than the buffer, and at the end",
        ),
    ] {
        let got = collect(&mut jsonl_with(text.as_bytes(), &limits)?)?;
        let bodies: Vec<_> = got
            .iter()
            .map(|(p, g)| (p.record, p.line, g.clone()))
            .collect();
        assert_eq!(
            bodies,
            vec![(1, 1, json("{\"id\":1}")), (2, 3, json("{\"id\":2}"))],
            "{what}"
        );
    }
    // A long line with anything else in it is a record, too large.
    let text = format!("{{\"id\":1}}\n{spaces}x\n{{\"id\":2}}\n");
    let got = collect(&mut jsonl_with(text.as_bytes(), &limits)?)?;
    assert_eq!(
        got[1],
        (pos(2, 2, 9), Got::Invalid(ErrorCode::RecordTooLarge))
    );
    Ok(())
}

#[test]
fn jsonl_bom_and_crlf_are_stripped() -> TestResult {
    let mut r = jsonl_with(&fixture("bom-crlf.jsonl")?, &Limits::default())?;
    assert_eq!(
        collect(&mut r)?,
        vec![
            (pos(1, 1, 3), json("{\"id\":1}")),
            (pos(2, 2, 13), json("{\"id\":2}"))
        ]
    );
    Ok(())
}

#[test]
fn jsonl_line_not_json_is_passed_to_validator() -> TestResult {
    let mut r = jsonl_with(&fixture("not-json-lines.jsonl")?, &Limits::default())?;
    let got: Vec<Got> = collect(&mut r)?.into_iter().map(|(_, g)| g).collect();
    assert_eq!(
        got,
        vec![
            json("{\"id\":1}"),
            json("not json at all"),
            json("{\"id\":"),
            json("{\"id\":4}")
        ]
    );
    Ok(())
}

#[test]
fn jsonl_long_line_is_row_error() -> TestResult {
    let limits = Limits {
        max_record_bytes: 8,
        ..Limits::default()
    };
    let data = format!(
        "{{\"a\":1}}\r\n{{\"a\":\"{}\"}}\n{{\"b\":2}}\n{{\"c\":333}}",
        "x".repeat(1_000_000)
    );
    let mut r = jsonl_with(data.as_bytes(), &limits)?;
    let got: Vec<Got> = collect(&mut r)?.into_iter().map(|(_, g)| g).collect();
    assert_eq!(
        got,
        vec![
            json("{\"a\":1}"),
            Got::Invalid(ErrorCode::RecordTooLarge),
            json("{\"b\":2}"),
            Got::Invalid(ErrorCode::RecordTooLarge)
        ]
    );
    Ok(())
}

#[test]
fn jsonl_deep_line_is_row_error() -> TestResult {
    let limits = Limits {
        max_json_depth: 3,
        ..Limits::default()
    };
    let data = b"[[[1]]]\n[[[[1]]]]\n{\"s\":\"[[[[[[\"}\n{\"a\":{\"b\":{\"c\":{}}}}\n";
    let mut r = jsonl_with(data, &limits)?;
    let got: Vec<Got> = collect(&mut r)?.into_iter().map(|(_, g)| g).collect();
    assert_eq!(
        got,
        vec![
            json("[[[1]]]"),
            Got::Invalid(ErrorCode::JsonTooDeep),
            json("{\"s\":\"[[[[[[\"}"),
            Got::Invalid(ErrorCode::JsonTooDeep)
        ]
    );
    Ok(())
}

// ---------------------------------------------------------------- gzip and I/O

/// Endless zeros, produced without allocating them.
struct Zeros(u64);

impl Read for Zeros {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(usize::try_from(self.0).unwrap_or(usize::MAX));
        buf[..n].fill(0);
        self.0 -= n as u64;
        Ok(n)
    }
}

fn gzip(data: &[u8]) -> Result<Vec<u8>, std::io::Error> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data)?;
    enc.finish()
}

#[test]
fn gzip_bomb_hits_decompressed_cap() -> TestResult {
    // 200 MB of zeros compress to ~200 KB.
    // It starts with `[` so that the JSON reader reads on (a huge scalar element, skipped as too large).
    let mut bomb = Vec::new();
    let zeros = Cursor::new(b"[".to_vec()).chain(Zeros(200_000_000));
    let mut enc = flate2::read::GzEncoder::new(zeros, flate2::Compression::best());
    enc.read_to_end(&mut bomb)?;
    assert!(bomb.len() < 1_000_000, "bomb is {} bytes", bomb.len());
    let limits = Limits {
        max_decompressed_bytes: 10_000_000,
        ..Limits::default()
    };
    for format in [Format::Csv, Format::Json, Format::Jsonl] {
        let decoded = decoder(
            Box::new(Cursor::new(bomb.clone())),
            Compression::Gzip,
            &limits,
        );
        let got = open_reader(
            decoded,
            format,
            DelimitedOptions::for_format(format),
            &limits,
            &StartAt::default(),
        )
        .and_then(|mut r| collect(r.as_mut()));
        assert!(
            matches!(
                got,
                Err(ReadError::DecompressedTooLarge { limit: 10_000_000 })
            ),
            "{format}: {:?}",
            got.map(|records| records.len())
        );
    }
    Ok(())
}

#[test]
fn truncated_gzip_is_file_error() -> TestResult {
    let mut data = gzip(&b"id,name\n1,alice\n2,bob\n".repeat(1000))?;
    data.truncate(data.len() / 2);
    let decoded = decoder(
        Box::new(Cursor::new(data)),
        Compression::Gzip,
        &Limits::default(),
    );
    let got = DelimitedReader::new(
        decoded,
        DelimitedOptions::for_format(Format::Csv),
        &Limits::default(),
        &StartAt::default(),
    )
    .and_then(|mut r| collect(&mut r));
    assert!(
        matches!(got, Err(ReadError::Gzip { .. })),
        "{:?}",
        got.map(|records| records.len())
    );
    Ok(())
}

#[test]
fn concatenated_gzip_members_decode_fully() -> TestResult {
    let mut data = gzip(b"{\"id\":1}\n{\"id\":")?;
    data.extend(gzip(b"2}\n{\"id\":3}\n")?);
    let decoded = decoder(
        Box::new(Cursor::new(data)),
        Compression::Gzip,
        &Limits::default(),
    );
    let mut r = JsonLinesReader::new(decoded, &Limits::default(), &StartAt::default())?;
    let got: Vec<Got> = collect(&mut r)?.into_iter().map(|(_, g)| g).collect();
    assert_eq!(
        got,
        vec![json("{\"id\":1}"), json("{\"id\":2}"), json("{\"id\":3}")]
    );
    Ok(())
}

#[test]
fn io_error_mid_file_is_positioned_file_error() -> TestResult {
    struct FailAfter(Cursor<Vec<u8>>);
    impl Read for FailAfter {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.0.read(buf)? {
                0 => Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "connection reset",
                )),
                n => Ok(n),
            }
        }
    }
    let inner = FailAfter(Cursor::new(b"a,b\n1,2\n3,".to_vec()));
    let decoded = decoder(Box::new(inner), Compression::None, &Limits::default());
    let mut r = DelimitedReader::new(
        decoded,
        DelimitedOptions::for_format(Format::Csv),
        &Limits::default(),
        &StartAt::default(),
    )?;
    assert!(matches!(r.next_record()?.map(|rec| rec.position), Some(p) if p == pos(1, 2, 4)));
    match r.next_record() {
        Err(ReadError::Io { byte: 10, source }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::ConnectionReset)
        }
        other => panic!(
            "expected an I/O error at byte 10, got {:?}",
            other.map(|o| o.map(|rec| rec.position))
        ),
    }
    // The reader stops after a file error.
    assert!(r.next_record()?.is_none());
    Ok(())
}

// ---------------------------------------------------------------- speed (run by hand)

/// Compares `DelimitedReader` with `csv::Reader::read_byte_record` on the same bytes. Run in release mode:
/// `cargo test --release -p s3-importer-core --test readers -- --ignored --nocapture csv_speed`.
#[test]
#[ignore = "benchmark: run by hand in release mode"]
fn csv_speed_matches_the_csv_crate() -> TestResult {
    let path = std::env::temp_dir().join("s3-importer-csv-speed.csv");
    if !path.exists() {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
        writeln!(out, "id,name,email,amount,created_at,note")?;
        let mut i: u64 = 0;
        while out.get_ref().metadata()?.len() < 200_000_000 {
            for _ in 0..10_000 {
                i += 1;
                writeln!(
                    out,
                    "{i},user {i},user{i}@example.com,{}.{:02},2024-01-{:02}T10:00:00Z,\"note, with \"\"quotes\"\" {i}\"",
                    i % 10_000,
                    i % 100,
                    i % 28 + 1
                )?;
            }
            out.flush()?;
        }
    }
    let data = std::fs::read(&path)?;
    // Thread CPU time, not wall time: the comparison stays fair on a busy machine.
    let cpu_secs = || {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
    };
    let mut best = (f64::MAX, f64::MAX);
    for _ in 0..7 {
        let t = cpu_secs();
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(Cursor::new(&data[..]));
        let mut record = csv::ByteRecord::new();
        let mut n1 = 0u64;
        while rdr.read_byte_record(&mut record)? {
            n1 += record.len() as u64;
        }
        let csv_secs = cpu_secs() - t;

        let decoded = decoder(
            Box::new(Cursor::new(data.clone())),
            Compression::None,
            &Limits::default(),
        );
        let t = cpu_secs();
        let options = DelimitedOptions::for_format(Format::Csv);
        let mut r =
            DelimitedReader::new(decoded, options, &Limits::default(), &StartAt::default())?;
        let mut n2 = 0u64;
        while let Some(record) = r.next_record()? {
            if let RecordBody::Fields(f) = record.body {
                n2 += f.len() as u64;
            }
        }
        let ours_secs = cpu_secs() - t;
        assert_eq!(n1, n2);
        best = (best.0.min(csv_secs), best.1.min(ours_secs));
    }
    let mb = data.len() as f64 / 1e6;
    println!(
        "csv::Reader {:.0} MB/s, DelimitedReader {:.0} MB/s (ratio {:.2})",
        mb / best.0,
        mb / best.1,
        best.0 / best.1
    );
    Ok(())
}

/// Reads one file with `DelimitedReader` (or, with `S3I_MODE=csv`, the `csv` crate) and nothing else: the
/// target for instruction counts, e.g.
/// `S3I_CSV=target/bench-data/bench-10mb.csv valgrind --tool=callgrind target/release/deps/readers-* \
///  --ignored --exact csv_read_only`.
#[test]
#[ignore = "benchmark: run by hand under callgrind"]
fn csv_read_only() -> TestResult {
    let path = std::env::var("S3I_CSV")?;
    let data = std::fs::read(path)?;
    let mut fields = 0u64;
    if std::env::var("S3I_MODE").as_deref() == Ok("csv") {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(Cursor::new(&data[..]));
        let mut record = csv::ByteRecord::new();
        while rdr.read_byte_record(&mut record)? {
            fields += record.len() as u64;
        }
    } else {
        let decoded = decoder(
            Box::new(Cursor::new(data)),
            Compression::None,
            &Limits::default(),
        );
        let options = DelimitedOptions::for_format(Format::Csv);
        let mut r =
            DelimitedReader::new(decoded, options, &Limits::default(), &StartAt::default())?;
        while let Some(record) = r.next_record()? {
            if let RecordBody::Fields(f) = record.body {
                fields += f.len() as u64;
            }
        }
    }
    println!("{fields} fields");
    Ok(())
}
