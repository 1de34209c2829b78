//! Typed validation of CSV and JSON records against a template.

use proptest::prelude::*;
use s3_importer_core::read::{Fields, RecordBody};
use s3_importer_core::template::{Template, UnknownColumns};
use s3_importer_core::validate::{TemplateMismatch, Validator};
use s3_importer_core::{ErrorCode, Format, RowError};
use serde_json::{json, Value};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A template from `[[fields]]` TOML, with extra top-level lines in `head`.
fn template(head: &str, fields: &str) -> Template {
    let source = format!("name = \"test\"\n{head}\n{fields}");
    match Template::from_toml(&source) {
        Ok(t) => t,
        Err(e) => panic!("bad test template: {e}\n{source}"),
    }
}

/// A template with one field `v` of `spec` (the lines after `name`).
fn one_field(spec: &str) -> Template {
    template("", &format!("[[fields]]\nname = \"v\"\n{spec}\n"))
}

/// Owned cells, turned into a borrowed [`Fields`] on demand.
struct Row {
    data: Vec<u8>,
    ends: Vec<usize>,
}

impl Row {
    fn new(cells: &[&[u8]]) -> Self {
        let mut data = Vec::new();
        let mut ends = Vec::new();
        for c in cells {
            data.extend_from_slice(c);
            ends.push(data.len());
        }
        Self { data, ends }
    }

    fn of(cells: &[&str]) -> Self {
        Self::new(&cells.iter().map(|c| c.as_bytes()).collect::<Vec<_>>())
    }

    fn fields(&self) -> Fields<'_> {
        Fields::new(&self.data, &self.ends)
    }

    /// The same fields in a buffer that goes on past them, as a reader's does (the validator may copy short
    /// fields as fixed-size blocks from such a buffer): the bytes after the fields must never reach the
    /// output.
    fn in_larger_buffer(&self, buffer: &mut Vec<u8>) {
        buffer.clear();
        buffer.extend_from_slice(&self.data);
        buffer.extend_from_slice(&[b'#'; 80]);
    }

    /// The same fields as a reader hands out a record without quotes: in the record's own bytes, `delimiter`
    /// between each two, the buffer going on past them (see [`Fields::separated`]).
    fn separated_in(&self, delimiter: u8, buffer: &mut Vec<u8>, ends: &mut Vec<usize>) {
        buffer.clear();
        ends.clear();
        for (i, field) in self.iter().enumerate() {
            if i > 0 {
                buffer.push(delimiter);
            }
            buffer.extend_from_slice(field);
            ends.push(buffer.len());
        }
        buffer.extend_from_slice(&[b'#'; 80]);
    }

    fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.ends.iter().scan(0, |start, &end| {
            Some(&self.data[std::mem::replace(start, end)..end])
        })
    }
}

type Outcome = Result<Value, Vec<RowError>>;

fn run(v: &mut Validator, body: &RecordBody<'_>) -> Outcome {
    let mut out = b"prefix".to_vec();
    let mut errors = Vec::new();
    let ok = v.validate(body, &mut out, &mut errors);
    if !ok {
        assert_eq!(
            out, b"prefix",
            "a rejected row must leave the buffer as it was"
        );
        assert!(!errors.is_empty(), "a rejected row must say why");
        return Err(errors);
    }
    assert!(
        errors.is_empty(),
        "an accepted row has no errors: {errors:?}"
    );
    let text = std::str::from_utf8(&out[6..]).expect("output is UTF-8");
    assert!(!text.contains('\n'), "output {text:?} must be one line");
    Ok(serde_json::from_str(text).unwrap_or_else(|e| panic!("output {text:?} is not JSON: {e}")))
}

fn csv(t: &Template, header: &[&str], cells: &[&str]) -> Outcome {
    let h = Row::of(header);
    let mut v = Validator::new(t, Format::Csv, Some(h.fields())).expect("header binds");
    let r = Row::of(cells);
    let exact = run(&mut v, &RecordBody::Fields(r.fields()));
    let mut buffer = Vec::new();
    r.in_larger_buffer(&mut buffer);
    let padded = run(&mut v, &RecordBody::Fields(Fields::new(&buffer, &r.ends)));
    assert_eq!(
        format!("{exact:?}"),
        format!("{padded:?}"),
        "the same cells in a larger buffer"
    );
    let mut ends = Vec::new();
    r.separated_in(b',', &mut buffer, &mut ends);
    let separated = run(
        &mut v,
        &RecordBody::Fields(Fields::separated(&buffer, &ends)),
    );
    assert_eq!(
        format!("{exact:?}"),
        format!("{separated:?}"),
        "the same cells with delimiters between them"
    );
    exact
}

fn json_rec(t: &Template, record: &str) -> Outcome {
    let mut v = Validator::new(t, Format::Jsonl, None).expect("binds");
    run(&mut v, &RecordBody::Json(record.as_bytes()))
}

fn codes(outcome: &Outcome) -> Vec<ErrorCode> {
    match outcome {
        Ok(_) => vec![],
        Err(errors) => errors.iter().map(|e| e.code).collect(),
    }
}

enum Want {
    Ok(Value),
    Err(ErrorCode),
}
use Want::{Err as Bad, Ok as Good};

/// Runs a type's table through a CSV cell and through a JSON string holding the same text.
fn check_type(spec: &str, cases: &[(&str, Want)]) {
    let t = one_field(spec);
    for (input, want) in cases {
        let from_csv = csv(&t, &["v"], &[input]);
        let from_json = json_rec(&t, &json!({ "v": input }).to_string());
        for (source, got) in [("csv", &from_csv), ("json string", &from_json)] {
            match want {
                Good(v) => assert_eq!(
                    got.as_ref().ok(),
                    Some(&json!({ "v": v })),
                    "{spec}: {source} input {input:?}"
                ),
                Bad(code) => assert_eq!(
                    codes(got),
                    vec![*code],
                    "{spec}: {source} input {input:?}: {got:?}"
                ),
            }
        }
    }
}

#[test]
fn string_accepts_any_text_and_checks_length_in_characters() {
    check_type(
        "type = \"string\"\nmin_length = 2\nmax_length = 4",
        &[
            ("ab", Good(json!("ab"))),
            (" ab ", Good(json!(" ab "))),
            ("ünï", Good(json!("ünï"))),
            ("🎉🎉🎉🎉", Good(json!("🎉🎉🎉🎉"))),
            ("a\"b", Good(json!("a\"b"))),
            ("a\nb", Good(json!("a\nb"))),
            ("a", Bad(ErrorCode::ConstraintViolated)),
            ("abcde", Bad(ErrorCode::ConstraintViolated)),
            ("ééééé", Bad(ErrorCode::ConstraintViolated)),
        ],
    );
}

/// Rows much longer than their record (every byte escaped as `\u00XX`, many kept columns) do not fit the
/// room the validator first gives a row: they are written again with more, whole, into a `Vec` and into a
/// batch alike, and the rows around them are untouched.
#[test]
fn rows_longer_than_the_first_room_are_written_whole() -> TestResult {
    use s3_importer_core::sink::RowBatch;
    use s3_importer_core::Position;
    let t = template(
        "unknown_columns = \"keep\"",
        "[[fields]]\nname = \"s\"\ntype = \"string\"\n",
    );
    let names: Vec<String> = std::iter::once("s".to_owned())
        .chain((0..40).map(|i| format!("a_rather_long_kept_column_name_{i}")))
        .collect();
    let header = Row::of(&names.iter().map(String::as_str).collect::<Vec<_>>());
    let mut v = Validator::new(&t, Format::Csv, Some(header.fields()))?;
    let controls = "\u{1}".repeat(3_000);
    let long: Vec<&str> = std::iter::once(controls.as_str())
        .chain((0..40).map(|_| "x"))
        .collect();
    let short: Vec<&str> = std::iter::once("plain")
        .chain((0..40).map(|_| ""))
        .collect();
    let (long, short) = (Row::of(&long), Row::of(&short));
    let mut batch = RowBatch::default();
    let mut errors = Vec::new();
    for (i, row) in [&short, &long, &short].into_iter().enumerate() {
        let position = Position {
            record: i as u64 + 1,
            line: i as u64 + 2,
            byte: 0,
        };
        assert!(v.validate_into(
            &RecordBody::Fields(row.fields()),
            &mut batch,
            position,
            &mut errors
        ));
    }
    let rows: Vec<Value> = batch
        .iter()
        .map(|(_, text)| serde_json::from_slice(text))
        .collect::<Result<_, _>>()?;
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1]["s"], json!(controls));
    assert_eq!(rows[1]["a_rather_long_kept_column_name_39"], json!("x"));
    assert_eq!(rows[0], rows[2]);
    assert_eq!(rows[0]["s"], json!("plain"));
    let mut out = Vec::new();
    assert!(v.validate(&RecordBody::Fields(long.fields()), &mut out, &mut errors));
    assert_eq!(serde_json::from_slice::<Value>(&out)?, rows[1]);
    assert!(errors.is_empty());
    Ok(())
}

#[test]
fn integer_accept_reject_table() {
    check_type(
        "type = \"integer\"",
        &[
            ("0", Good(json!(0))),
            ("42", Good(json!(42))),
            (" 42 ", Good(json!(42))),
            ("+7", Good(json!(7))),
            ("-0", Good(json!(0))),
            ("007", Good(json!(7))),
            ("9223372036854775807", Good(json!(i64::MAX))),
            ("-9223372036854775808", Good(json!(i64::MIN))),
            ("9223372036854775808", Bad(ErrorCode::InvalidInteger)),
            ("1.0", Bad(ErrorCode::InvalidInteger)),
            ("1e3", Bad(ErrorCode::InvalidInteger)),
            ("1,000", Bad(ErrorCode::InvalidInteger)),
            ("12abc", Bad(ErrorCode::InvalidInteger)),
            ("- 1", Bad(ErrorCode::InvalidInteger)),
            ("0x10", Bad(ErrorCode::InvalidInteger)),
        ],
    );
    check_type(
        "type = \"integer\"\nmin = 1\nmax = 10",
        &[
            ("1", Good(json!(1))),
            ("10", Good(json!(10))),
            ("0", Bad(ErrorCode::ConstraintViolated)),
            ("11", Bad(ErrorCode::ConstraintViolated)),
        ],
    );
}

#[test]
fn decimal_accept_reject_table() {
    check_type(
        "type = \"decimal\"",
        &[
            ("0.1", Good(json!("0.1"))),
            ("-12.50", Good(json!("-12.50"))),
            ("+3", Good(json!("3"))),
            ("007.250", Good(json!("7.250"))),
            (".5", Good(json!("0.5"))),
            ("5.", Good(json!("5"))),
            ("-0.00", Good(json!("0.00"))),
            (" 1.5 ", Good(json!("1.5"))),
            (
                "12345678901234567890.123456789",
                Good(json!("12345678901234567890.123456789")),
            ),
            ("1e3", Bad(ErrorCode::InvalidDecimal)),
            ("1.2.3", Bad(ErrorCode::InvalidDecimal)),
            (".", Bad(ErrorCode::InvalidDecimal)),
            ("-", Bad(ErrorCode::InvalidDecimal)),
            ("1,5", Bad(ErrorCode::InvalidDecimal)),
            ("NaN", Bad(ErrorCode::InvalidDecimal)),
            ("inf", Bad(ErrorCode::InvalidDecimal)),
        ],
    );
    check_type(
        "type = \"decimal\"\nprecision = 5\nscale = 2",
        &[
            ("123.45", Good(json!("123.45"))),
            ("123.4", Good(json!("123.40"))),
            ("7", Good(json!("7.00"))),
            ("1.500", Good(json!("1.50"))),
            ("0001.5", Good(json!("1.50"))),
            ("1234.5", Bad(ErrorCode::ConstraintViolated)),
            ("1.234", Bad(ErrorCode::ConstraintViolated)),
        ],
    );
    check_type(
        "type = \"decimal\"\nprecision = 3",
        &[
            ("1.23", Good(json!("1.23"))),
            ("12.34", Bad(ErrorCode::ConstraintViolated)),
        ],
    );
}

#[test]
fn boolean_accept_reject_table() {
    let mut cases = Vec::new();
    for t in [
        "true", "TRUE", "True", "t", "T", "yes", "YES", "y", "Y", "1", " true ",
    ] {
        cases.push((t, Good(json!(true))));
    }
    for f in ["false", "FALSE", "f", "no", "No", "n", "0"] {
        cases.push((f, Good(json!(false))));
    }
    for bad in ["2", "tru", "truee", "on", "off", "-1", "yess"] {
        cases.push((bad, Bad(ErrorCode::InvalidBoolean)));
    }
    check_type("type = \"boolean\"", &cases);
}

#[test]
fn date_accept_reject_table() {
    check_type(
        "type = \"date\"",
        &[
            ("2024-05-01", Good(json!("2024-05-01"))),
            ("2024-02-29", Good(json!("2024-02-29"))),
            ("2000-02-29", Good(json!("2000-02-29"))),
            ("2023-02-29", Bad(ErrorCode::InvalidDate)),
            ("1900-02-29", Bad(ErrorCode::InvalidDate)),
            ("2024-02-30", Bad(ErrorCode::InvalidDate)),
            ("2024-04-31", Bad(ErrorCode::InvalidDate)),
            ("2024-13-01", Bad(ErrorCode::InvalidDate)),
            ("2024-00-10", Bad(ErrorCode::InvalidDate)),
            ("2024-5-1", Bad(ErrorCode::InvalidDate)),
            ("01/05/2024", Bad(ErrorCode::InvalidDate)),
            ("2024-05-01T00:00:00Z", Bad(ErrorCode::InvalidDate)),
        ],
    );
    check_type(
        "type = \"date\"\nformat = \"%d.%m.%Y\"",
        &[
            ("01.05.2024", Good(json!("2024-05-01"))),
            ("30.02.2024", Bad(ErrorCode::InvalidDate)),
            ("2024-05-01", Bad(ErrorCode::InvalidDate)),
            // chrono's `%Y` takes any number of digits: a two-digit year is not the year 24.
            ("05.01.24", Bad(ErrorCode::InvalidDate)),
            ("05.01.0024", Good(json!("0024-01-05"))),
            ("05.01.924", Bad(ErrorCode::InvalidDate)),
        ],
    );
}

#[test]
fn timestamp_normalises_to_utc_with_z() {
    check_type(
        "type = \"timestamp\"",
        &[
            ("2024-05-01T12:00:00Z", Good(json!("2024-05-01T12:00:00Z"))),
            (
                "2024-05-01T12:00:00.250Z",
                Good(json!("2024-05-01T12:00:00.250Z")),
            ),
            ("2024-05-01 12:00:00", Good(json!("2024-05-01T12:00:00Z"))),
            ("2024-05-01T12:00:00", Good(json!("2024-05-01T12:00:00Z"))),
            (
                "2024-05-01 12:00:00.123456789",
                Good(json!("2024-05-01T12:00:00.123456789Z")),
            ),
            ("2024-05-01t12:00:00z", Good(json!("2024-05-01T12:00:00Z"))),
            (
                "2024-05-01T14:00:00+02:00",
                Good(json!("2024-05-01T12:00:00Z")),
            ),
            (
                "2024-05-01T14:00:00.5+0200",
                Good(json!("2024-05-01T12:00:00.5Z")),
            ),
            (
                "2024-05-01T01:30:00+05:30",
                Good(json!("2024-04-30T20:00:00Z")),
            ),
            (
                "2024-02-28T23:00:00-01:00",
                Good(json!("2024-02-29T00:00:00Z")),
            ),
            (
                "2023-12-31T22:00:00-03:00",
                Good(json!("2024-01-01T01:00:00Z")),
            ),
            (
                "2024-05-01T12:00:00+00:00",
                Good(json!("2024-05-01T12:00:00Z")),
            ),
            ("2024-05-01T24:00:00Z", Bad(ErrorCode::InvalidTimestamp)),
            ("2024-05-01T12:60:00Z", Bad(ErrorCode::InvalidTimestamp)),
            ("2024-05-01T12:00:60Z", Bad(ErrorCode::InvalidTimestamp)),
            ("2024-02-30T12:00:00Z", Bad(ErrorCode::InvalidTimestamp)),
            ("2024-05-01T12:00Z", Bad(ErrorCode::InvalidTimestamp)),
            ("2024-05-01T12:00:00.Z", Bad(ErrorCode::InvalidTimestamp)),
            (
                "2024-05-01T12:00:00.1234567890Z",
                Bad(ErrorCode::InvalidTimestamp),
            ),
            (
                "2024-05-01T12:00:00+25:00",
                Bad(ErrorCode::InvalidTimestamp),
            ),
            ("2024-05-01T12:00:00 UTC", Bad(ErrorCode::InvalidTimestamp)),
            ("2024-05-01", Bad(ErrorCode::InvalidTimestamp)),
            ("1714564800", Bad(ErrorCode::InvalidTimestamp)),
            (
                "0000-01-01T00:00:00+01:00",
                Bad(ErrorCode::InvalidTimestamp),
            ),
        ],
    );
    check_type(
        "type = \"timestamp\"\nformat = \"%d/%m/%Y %H:%M:%S%.f %z\"",
        &[
            (
                "01/05/2024 14:00:00.25 +0200",
                Good(json!("2024-05-01T12:00:00.25Z")),
            ),
            ("2024-05-01T12:00:00Z", Bad(ErrorCode::InvalidTimestamp)),
        ],
    );
    check_type(
        "type = \"timestamp\"\nformat = \"%d/%m/%Y %H:%M\"",
        &[("01/05/2024 14:05", Good(json!("2024-05-01T14:05:00Z")))],
    );
    // With a format as without one: no leap second, at most nine fraction digits, four-digit years.
    check_type(
        "type = \"timestamp\"\nformat = \"%Y-%m-%d %H:%M:%S%.f\"",
        &[
            ("2016-12-31 23:59:60", Bad(ErrorCode::InvalidTimestamp)),
            ("2016-12-31 23:59:60.5", Bad(ErrorCode::InvalidTimestamp)),
            (
                "2024-05-01 12:00:00.1234567891",
                Bad(ErrorCode::InvalidTimestamp),
            ),
            (
                "2024-05-01 12:00:00.123456789",
                Good(json!("2024-05-01T12:00:00.123456789Z")),
            ),
            ("24-01-01 00:00:00", Bad(ErrorCode::InvalidTimestamp)),
            ("0024-01-01 00:00:00", Good(json!("0024-01-01T00:00:00Z"))),
        ],
    );
    // The year as written counts, not the UTC one.
    check_type(
        "type = \"timestamp\"\nformat = \"%Y-%m-%d %H:%M %z\"",
        &[(
            "1000-01-01 00:30 +0100",
            Good(json!("0999-12-31T23:30:00Z")),
        )],
    );
}

#[test]
fn enum_outputs_the_declared_spelling() {
    check_type(
        "type = \"enum\"\nvalues = [\"EUR\", \"USD\", \"Straße\"]",
        &[
            ("EUR", Good(json!("EUR"))),
            (" USD ", Good(json!("USD"))),
            ("eur", Bad(ErrorCode::InvalidEnum)),
            ("GBP", Bad(ErrorCode::InvalidEnum)),
        ],
    );
    check_type(
        "type = \"enum\"\nvalues = [\"EUR\", \"USD\", \"Ärger\"]\ncase_insensitive = true",
        &[
            ("eur", Good(json!("EUR"))),
            ("Usd", Good(json!("USD"))),
            ("ärGER", Good(json!("Ärger"))),
            ("GBP", Bad(ErrorCode::InvalidEnum)),
        ],
    );
}

#[test]
fn enum_matches_every_value_of_short_and_long_lists() {
    // Up to 16 values are found by hash, more are searched: both find every value, and no value.
    for count in [1, 2, 8, 16, 17, 40] {
        let values: Vec<String> = (0..count).map(|i| format!("V{i}")).collect();
        let list = values
            .iter()
            .map(|v| format!("\"{v}\""))
            .collect::<Vec<_>>()
            .join(", ");
        for case_insensitive in [false, true] {
            let spec = format!(
                "type = \"enum\"\nvalues = [{list}]\ncase_insensitive = {case_insensitive}"
            );
            let last = values[count - 1].clone();
            let lower = last.to_lowercase();
            let mut cases: Vec<_> = values
                .iter()
                .map(|v| (v.as_str(), Good(json!(v))))
                .collect();
            cases.push(("V999", Bad(ErrorCode::InvalidEnum)));
            cases.push(("V", Bad(ErrorCode::InvalidEnum)));
            if case_insensitive {
                cases.push((lower.as_str(), Good(json!(last))));
            }
            check_type(&spec, &cases);
        }
    }
}

#[test]
fn json_cell_nested_deeper_than_the_record_limit_is_rejected() {
    // A CSV cell of a `json` field meets the same depth limit as a JSON record.
    let t = one_field("type = \"json\"");
    let max = s3_importer_core::Limits::DEFAULT_MAX_JSON_DEPTH;
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let at_limit = csv(&t, &["v"], &[&nested(max)]);
    assert!(at_limit.is_ok(), "{max} levels: {at_limit:?}");
    for depth in [max + 1, 100_000] {
        let got = csv(&t, &["v"], &[&nested(depth)]);
        assert_eq!(codes(&got), vec![ErrorCode::JsonTooDeep], "{depth} levels");
    }
    // Brackets inside strings do not count.
    let text = format!("{{\"s\": \"{}\"}}", "[".repeat(max + 10));
    assert!(csv(&t, &["v"], &[&text]).is_ok());
}

#[test]
fn json_record_with_a_lone_surrogate_in_a_json_field_is_rejected() {
    let t = one_field("type = \"json\"");
    let mut v = Validator::new(&t, Format::Jsonl, None).expect("binds");
    let got = run(&mut v, &RecordBody::Json(b"{\"v\": \"\\ud800\"}"));
    assert_eq!(codes(&got), vec![ErrorCode::InvalidUtf8]);
    let got = run(
        &mut v,
        &RecordBody::Json(b"{\"v\": {\"k\": \"\\ud83d\\ude00\"}}"),
    );
    assert_eq!(got.ok(), Some(json!({"v": {"k": "😀"}})));
}

#[test]
fn json_field_embeds_any_json_value_compactly() {
    let t = one_field("type = \"json\"");
    let cases: &[(&str, Want)] = &[
        ("{\"a\": [1, 2]}", Good(json!({"a": [1, 2]}))),
        ("[1,\n 2]", Good(json!([1, 2]))),
        ("\"text\"", Good(json!("text"))),
        ("12.50", Good(json!(12.5))),
        ("true", Good(json!(true))),
        ("{\"a\": ", Bad(ErrorCode::InvalidJsonValue)),
        ("not json", Bad(ErrorCode::InvalidJsonValue)),
        ("1 2", Bad(ErrorCode::InvalidJsonValue)),
        // A surrogate pair is a character; a lone surrogate is not (a `string` field rejects it too).
        ("{\"e\": \"\\ud83d\\ude00\"}", Good(json!({"e": "😀"}))),
        ("{\"x\": \"\\ud800\"}", Bad(ErrorCode::InvalidUtf8)),
        ("[\"ok\", \"\\udc00 low\"]", Bad(ErrorCode::InvalidUtf8)),
        ("\"\\udc00\\ud800\"", Bad(ErrorCode::InvalidUtf8)),
        // An escaped backslash before `ud800` is not an escape; numbers beyond a float stay as written.
        ("\"\\\\ud800\"", Good(json!("\\ud800"))),
        (
            "{\"n\": \"caf\\u00e9\", \"big\": 1}",
            Good(json!({"n": "café", "big": 1})),
        ),
    ];
    for (input, want) in cases {
        let got = csv(&t, &["v"], &[input]);
        match want {
            Good(v) => assert_eq!(got.ok(), Some(json!({ "v": v })), "input {input:?}"),
            Bad(code) => assert_eq!(codes(&got), vec![*code], "input {input:?}"),
        }
    }
    // JSON input: the value is embedded as is (without insignificant whitespace), numbers keep their text.
    let mut v = Validator::new(&t, Format::Json, None).expect("binds");
    let mut out = Vec::new();
    assert!(v.validate(
        &RecordBody::Json(b"{\"v\": {\"n\": 1.50,\n \"s\": \"a b\"}}"),
        &mut out,
        &mut Vec::new()
    ));
    assert_eq!(out, b"{\"v\":{\"n\":1.50,\"s\":\"a b\"}}");
}

#[test]
fn json_numbers_and_booleans_feed_typed_fields_exactly() -> TestResult {
    let t = template(
        "",
        "[[fields]]\nname = \"i\"\ntype = \"integer\"\n[[fields]]\nname = \"d\"\ntype = \"decimal\"\n\
         [[fields]]\nname = \"b\"\ntype = \"boolean\"\n[[fields]]\nname = \"s\"\ntype = \"string\"\n",
    );
    let got = json_rec(
        &t,
        r#"{"i": -12, "d": 12345678901234567890.123456789, "b": false, "s": 12.50}"#,
    );
    assert_eq!(
        got.ok(),
        Some(json!({"i": -12, "d": "12345678901234567890.123456789", "b": false, "s": "12.50"}))
    );
    let got = json_rec(&t, r#"{"d": 0.1}"#);
    assert_eq!(got.ok(), Some(json!({"d": "0.1"})));
    let cases = [
        (r#"{"i": 1.0}"#, ErrorCode::InvalidInteger),
        (r#"{"i": 1e3}"#, ErrorCode::InvalidInteger),
        (r#"{"i": 99999999999999999999}"#, ErrorCode::InvalidInteger),
        (r#"{"i": true}"#, ErrorCode::InvalidInteger),
        (r#"{"i": [1]}"#, ErrorCode::InvalidType),
        (r#"{"d": 1.5e2}"#, ErrorCode::InvalidDecimal),
        (r#"{"d": {}}"#, ErrorCode::InvalidType),
        (r#"{"b": 2}"#, ErrorCode::InvalidBoolean),
        (r#"{"s": true}"#, ErrorCode::InvalidType),
        (r#"{"s": {"a": 1}}"#, ErrorCode::InvalidType),
        (r#"{"s": "\ud800"}"#, ErrorCode::InvalidUtf8),
    ];
    for (record, code) in cases {
        assert_eq!(codes(&json_rec(&t, record)), vec![code], "record {record}");
    }
    Ok(())
}

/// Empty, null and missing for a required and an optional field of every type, in CSV and JSON.
#[test]
fn empty_null_and_missing_are_distinct() {
    use ErrorCode::{MissingField, NullValue};
    let types = [
        ("string", "\"x\""),
        ("integer", "1"),
        ("decimal", "1.5"),
        ("boolean", "true"),
        ("date", "\"2024-05-01\""),
        ("timestamp", "\"2024-05-01T00:00:00Z\""),
        ("enum\"\nvalues = [\"x\"]\n#\"", "\"x\""),
        ("json", "{}"),
    ];
    for (ty, _) in types {
        let req = template("", &format!("[[fields]]\nname = \"k\"\ntype = \"string\"\n[[fields]]\nname = \"v\"\ntype = \"{ty}\"\nrequired = true\n"));
        let opt = template("", &format!("[[fields]]\nname = \"k\"\ntype = \"string\"\n[[fields]]\nname = \"v\"\ntype = \"{ty}\"\n"));
        // CSV: an empty cell is null; a column absent from the header is missing.
        assert_eq!(
            codes(&csv(&req, &["k", "v"], &["a", ""])),
            vec![NullValue],
            "{ty} csv empty required"
        );
        assert_eq!(
            csv(&opt, &["k", "v"], &["a", ""]).ok(),
            Some(json!({"k": "a", "v": null})),
            "{ty} csv empty optional"
        );
        assert_eq!(
            csv(&opt, &["k"], &["a"]).ok(),
            Some(json!({"k": "a"})),
            "{ty} csv missing optional"
        );
        let h = Row::of(&["k"]);
        assert!(
            matches!(
                Validator::new(&req, Format::Csv, Some(h.fields())),
                Err(TemplateMismatch::MissingColumn { .. })
            ),
            "{ty} csv missing required column fails the file"
        );
        // JSON: null, missing and "" are three cases.
        assert_eq!(
            codes(&json_rec(&req, r#"{"k": "a", "v": null}"#)),
            vec![NullValue],
            "{ty} json null required"
        );
        assert_eq!(
            codes(&json_rec(&req, r#"{"k": "a"}"#)),
            vec![MissingField],
            "{ty} json missing required"
        );
        assert_eq!(
            json_rec(&opt, r#"{"k": "a", "v": null}"#).ok(),
            Some(json!({"k": "a", "v": null})),
            "{ty} json null optional"
        );
        assert_eq!(
            json_rec(&opt, r#"{"k": "a"}"#).ok(),
            Some(json!({"k": "a"})),
            "{ty} json missing optional"
        );
        let empty = json_rec(&opt, r#"{"k": "a", "v": ""}"#);
        match ty {
            "string" | "json" => assert_eq!(
                empty.ok(),
                Some(json!({"k": "a", "v": ""})),
                "{ty} json empty string"
            ),
            _ => {
                let c = codes(&empty);
                assert!(
                    c.len() == 1 && c[0] != NullValue && c[0] != MissingField,
                    "{ty} json \"\" is a type error: {c:?}"
                );
            }
        }
    }
}

#[test]
fn whitespace_only_cell_is_null_except_for_strings() {
    let t = template("", "[[fields]]\nname = \"s\"\ntype = \"string\"\n[[fields]]\nname = \"i\"\ntype = \"integer\"\n");
    assert_eq!(
        csv(&t, &["s", "i"], &["  ", "  "]).ok(),
        Some(json!({"s": "  ", "i": null}))
    );
}

#[test]
fn empty_as_null_false_makes_empty_string_cells_empty_strings() {
    let t = template(
        "[csv]\nempty_as_null = false",
        "[[fields]]\nname = \"s\"\ntype = \"string\"\nrequired = true\n[[fields]]\nname = \"i\"\ntype = \"integer\"\n",
    );
    assert_eq!(
        csv(&t, &["s", "i"], &["", ""]).ok(),
        Some(json!({"s": "", "i": null}))
    );
}

#[test]
fn header_matching_trims_and_ignores_case() -> TestResult {
    let t = template(
        "",
        "[[fields]]\nname = \"order_id\"\ncolumn = \"Order ID\"\ntype = \"string\"\nrequired = true\n\
         [[fields]]\nname = \"städt\"\ntype = \"string\"\nrequired = true\n",
    );
    let got = csv(&t, &["  STÄDT ", "\u{feff}order id\t"], &["x", "7"]);
    assert_eq!(got.ok(), Some(json!({"order_id": "7", "städt": "x"})));
    // JSON keys: same rules, exact matches first.
    let got = json_rec(&t, r#"{" ORDER id ": "7", "STÄDT": "x"}"#);
    assert_eq!(got.ok(), Some(json!({"order_id": "7", "städt": "x"})));
    Ok(())
}

#[test]
fn output_follows_template_field_order() -> TestResult {
    let t = template("", "[[fields]]\nname = \"b\"\ntype = \"string\"\n[[fields]]\nname = \"a\"\ntype = \"integer\"\n");
    let h = Row::of(&["a", "b"]);
    let mut v = Validator::new(&t, Format::Csv, Some(h.fields()))?;
    let mut out = Vec::new();
    let row = Row::of(&["1", "x"]);
    assert!(v.validate(&RecordBody::Fields(row.fields()), &mut out, &mut Vec::new()));
    assert_eq!(out, br#"{"b":"x","a":1}"#);
    Ok(())
}

#[test]
fn duplicate_header_column_fails_the_file_only_when_used() {
    let t = one_field("type = \"string\"");
    let h = Row::of(&["V", " v"]);
    let e = Validator::new(&t, Format::Csv, Some(h.fields())).err();
    assert_eq!(
        e,
        Some(TemplateMismatch::DuplicateColumn {
            column: "v".into(),
            first: 1,
            second: 2
        })
    );
    let h = Row::of(&["v", "other", "OTHER", "", ""]);
    assert!(
        Validator::new(&t, Format::Csv, Some(h.fields())).is_ok(),
        "unused duplicates are ignored"
    );
}

#[test]
fn duplicate_json_keys_reject_the_row() {
    let t = one_field("type = \"string\"");
    let got = json_rec(&t, r#"{"v": "a", " V ": "b"}"#);
    assert_eq!(codes(&got), vec![ErrorCode::DuplicateColumn]);
}

#[test]
fn unknown_columns_modes_for_csv() {
    let head = |mode: &str| format!("unknown_columns = \"{mode}\"");
    let fields = "[[fields]]\nname = \"v\"\ntype = \"integer\"\n";
    let header = ["v", " Extra ", ""];
    let cells = ["1", "x\"y", ""];
    let ignore = template(&head("ignore"), fields);
    assert_eq!(csv(&ignore, &header, &cells).ok(), Some(json!({"v": 1})));
    let keep = template(&head("keep"), fields);
    assert_eq!(keep.unknown_columns, UnknownColumns::Keep);
    assert_eq!(
        csv(&keep, &header, &cells).ok(),
        Some(json!({"v": 1, "Extra": "x\"y"}))
    );
    let reject = template(&head("reject"), fields);
    let h = Row::of(&header);
    let e = Validator::new(&reject, Format::Csv, Some(h.fields())).err();
    assert_eq!(
        e,
        Some(TemplateMismatch::UnknownColumns {
            columns: vec!["Extra".into()]
        })
    );
    let h = Row::of(&["v", "V2", "v2"]);
    let e = Validator::new(&keep, Format::Csv, Some(h.fields())).err();
    assert!(
        matches!(e, Some(TemplateMismatch::DuplicateColumn { .. })),
        "{e:?}"
    );
    let collide = template(
        &head("keep"),
        "[[fields]]\nname = \"v\"\ncolumn = \"src\"\ntype = \"integer\"\n",
    );
    let h = Row::of(&["src", "v"]);
    let e = Validator::new(&collide, Format::Csv, Some(h.fields())).err();
    assert_eq!(
        e,
        Some(TemplateMismatch::KeptColumnCollides { column: "v".into() })
    );
}

#[test]
fn unknown_columns_modes_for_json() {
    let fields = "[[fields]]\nname = \"v\"\ntype = \"integer\"\n";
    let record = r#"{"v": 1, " extra ": {"deep": [1, 2]}}"#;
    let ignore = template("unknown_columns = \"ignore\"", fields);
    assert_eq!(json_rec(&ignore, record).ok(), Some(json!({"v": 1})));
    let keep = template("unknown_columns = \"keep\"", fields);
    assert_eq!(
        json_rec(&keep, record).ok(),
        Some(json!({"v": 1, "extra": {"deep": [1, 2]}}))
    );
    let reject = template("unknown_columns = \"reject\"", fields);
    let got = json_rec(&reject, record);
    assert_eq!(codes(&got), vec![ErrorCode::UnknownColumn]);
    assert_eq!(
        got.err().and_then(|e| e[0].column.clone()),
        Some("extra".into())
    );
}

#[test]
fn field_count_mismatch_rejects_the_row() {
    let t = template("", "[[fields]]\nname = \"a\"\ntype = \"string\"\n[[fields]]\nname = \"b\"\ntype = \"string\"\n");
    assert_eq!(
        codes(&csv(&t, &["a", "b"], &["1"])),
        vec![ErrorCode::FieldCountMismatch]
    );
    assert_eq!(
        codes(&csv(&t, &["a", "b"], &["1", "2", "3"])),
        vec![ErrorCode::FieldCountMismatch]
    );
}

#[test]
fn headerless_csv_maps_fields_by_position() {
    let t = template(
        "unknown_columns = \"keep\"\n[csv]\nheader = false",
        "[[fields]]\nname = \"a\"\ntype = \"integer\"\n[[fields]]\nname = \"b\"\ntype = \"string\"\n",
    );
    let mut v = Validator::new(&t, Format::Csv, None).expect("binds");
    let row = Row::of(&["1", "x", "extra"]);
    assert_eq!(
        run(&mut v, &RecordBody::Fields(row.fields())).ok(),
        Some(json!({"a": 1, "b": "x", "column_3": "extra"}))
    );
    let short = Row::of(&["1"]);
    assert_eq!(
        codes(&run(&mut v, &RecordBody::Fields(short.fields()))),
        vec![ErrorCode::FieldCountMismatch]
    );
}

#[test]
fn every_field_error_of_a_row_is_reported() {
    let t = Template::from_toml(include_str!("../../../examples/templates/orders.toml"))
        .expect("example parses");
    let header = [
        "Order ID",
        "Customer",
        "Amount",
        "Currency",
        "Paid",
        "Created At",
        "Quantity",
        "Notes",
        "Ship Date",
        "Attributes",
    ];
    let got = csv(
        &t,
        &header,
        &[
            "",
            "Ann",
            "12.345",
            "XXX",
            "maybe",
            "yesterday",
            "0",
            "",
            "2024-02-30",
            "{",
        ],
    );
    let c = codes(&got);
    use ErrorCode::*;
    assert_eq!(
        c,
        vec![
            NullValue,
            ConstraintViolated,
            InvalidEnum,
            InvalidBoolean,
            InvalidTimestamp,
            ConstraintViolated,
            InvalidDate,
            InvalidJsonValue
        ]
    );
    let columns: Vec<Option<String>> = got
        .err()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e.column)
        .collect();
    assert_eq!(columns[0].as_deref(), Some("Order ID"));
    assert_eq!(columns[7].as_deref(), Some("Attributes"));
}

#[test]
fn valid_orders_row_is_typed_json() {
    let t = Template::from_toml(include_str!("../../../examples/templates/orders.toml"))
        .expect("example parses");
    let header = [
        "Order ID",
        "Customer",
        "Amount",
        "Currency",
        "Paid",
        "Created At",
        "Quantity",
        "Notes",
        "Ship Date",
        "Attributes",
    ];
    let got = csv(
        &t,
        &header,
        &[
            "A-1",
            "Doe, \"Jane\"",
            "1234.5",
            "eur",
            "yes",
            "2024-05-01 12:00:00.250",
            " 3 ",
            "",
            "",
            "{\"gift\": true}",
        ],
    );
    assert_eq!(
        got.ok(),
        Some(json!({
            "order_id": "A-1", "customer": "Doe, \"Jane\"", "amount": "1234.50", "currency": "EUR", "paid": true,
            "created_at": "2024-05-01T12:00:00.250Z", "quantity": 3, "notes": null, "ship_date": null,
            "attributes": {"gift": true}
        }))
    );
}

#[test]
fn invalid_utf8_in_a_string_cell_names_the_column() {
    let t = template(
        "",
        "[[fields]]\nname = \"name\"\ncolumn = \"Full Name\"\ntype = \"string\"\n",
    );
    let h = Row::of(&["Full Name"]);
    let mut v = Validator::new(&t, Format::Csv, Some(h.fields())).expect("binds");
    let row = Row::new(&[b"Jos\xe9 Garc\xeda"]);
    let errors = run(&mut v, &RecordBody::Fields(row.fields()))
        .err()
        .unwrap_or_default();
    assert_eq!(errors.len(), 1);
    assert_eq!(
        (errors[0].column.as_deref(), errors[0].code),
        (Some("Full Name"), ErrorCode::InvalidUtf8)
    );
}

#[test]
fn json_records_that_are_not_objects_or_not_json() {
    let t = one_field("type = \"string\"");
    let cases = [
        ("[1, 2]", ErrorCode::NotAnObject),
        ("\"secret value\"", ErrorCode::NotAnObject),
        ("42", ErrorCode::NotAnObject),
        ("null", ErrorCode::NotAnObject),
        ("{\"v\": ", ErrorCode::InvalidJson),
        ("{\"v\": \"a\"} trailing", ErrorCode::InvalidJson),
        ("{v: 1}", ErrorCode::InvalidJson),
        ("\"unterminated", ErrorCode::InvalidJson),
    ];
    for (record, code) in cases {
        let got = json_rec(&t, record);
        assert_eq!(codes(&got), vec![code], "record {record:?}");
        for e in got.err().unwrap_or_default() {
            assert!(
                !e.message.contains("secret"),
                "message {:?} quotes the record",
                e.message
            );
        }
    }
}

#[test]
fn reader_row_errors_pass_through() {
    let t = one_field("type = \"string\"");
    let mut v = Validator::new(&t, Format::Csv, None).expect("binds");
    let e = RowError::record(ErrorCode::RecordTooLarge, "too large");
    assert_eq!(
        run(&mut v, &RecordBody::Invalid(e.clone())).err(),
        Some(vec![e])
    );
}

#[test]
fn validator_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<Validator>();
}

#[test]
fn one_validator_handles_many_json_records_with_reused_buffers() {
    let t = template("", "[[fields]]\nname = \"id\"\ntype = \"integer\"\nrequired = true\n[[fields]]\nname = \"s\"\ntype = \"string\"\n");
    let mut v = Validator::new(&t, Format::Jsonl, None).expect("binds");
    for i in 0..100 {
        let record = format!(r#"{{"s": "row \"{i}\"", "id": {i}}}"#);
        assert_eq!(
            run(&mut v, &RecordBody::Json(record.as_bytes())).ok(),
            Some(json!({"id": i, "s": format!("row \"{i}\"")}))
        );
        if i % 7 == 0 {
            assert!(run(&mut v, &RecordBody::Json(b"{\"s\": 1}")).is_err());
        }
    }
}

/// Three string fields, `a` `b` `c`, the second with a length limit.
fn three_strings() -> Template {
    template(
        "",
        "[[fields]]\nname = \"a\"\ntype = \"string\"\n\
         [[fields]]\nname = \"b\"\ntype = \"string\"\nmax_length = 3\n\
         [[fields]]\nname = \"c\"\ntype = \"string\"\n",
    )
}

fn three_cells(cells: &[&[u8]; 3]) -> Outcome {
    let t = three_strings();
    let h = Row::of(&["a", "b", "c"]);
    let mut v = Validator::new(&t, Format::Csv, Some(h.fields())).expect("header binds");
    run(&mut v, &RecordBody::Fields(Row::new(cells).fields()))
}

/// Whole records are checked for UTF-8 at once: a character cut in two by a field boundary is valid across the
/// record's text, and still invalid in both fields.
#[test]
fn a_character_split_across_two_fields_is_invalid_utf8_in_both() {
    let got = three_cells(&[b"caf\xC3", b"\xA9", b"ok"]);
    assert_eq!(codes(&got), vec![ErrorCode::InvalidUtf8; 2], "{got:?}");
    let got = three_cells(&[b"x", b"\xE2\x82", b"\xAC"]);
    assert_eq!(codes(&got), vec![ErrorCode::InvalidUtf8; 2], "{got:?}");
}

/// Separated fields (a record left in the reader's buffer) with a delimiter above ASCII: the record's bytes can
/// be valid UTF-8 as a whole while the delimiter's byte completes a character the field before it started.
/// That field is invalid on its own, as is a field that starts with the rest of a character the delimiter
/// started; the fields are read as the reader split them, never as the whole text.
#[test]
fn a_delimiter_byte_that_completes_a_character_leaves_the_field_before_it_invalid() {
    let t = three_strings();
    let h = Row::of(&["a", "b", "c"]);
    let mut v = Validator::new(&t, Format::Csv, Some(h.fields())).expect("header binds");
    // The cells as a reader hands out a record without quotes, `delimiter` between them; whether the
    // record's text is valid UTF-8 as a whole; the outcome.
    let mut separated = |cells: &[&[u8]], delimiter: u8| {
        let (mut buffer, mut ends) = (Vec::new(), Vec::new());
        Row::new(cells).separated_in(delimiter, &mut buffer, &mut ends);
        let whole = std::str::from_utf8(&buffer[..ends[ends.len() - 1]]).is_ok();
        let got = run(
            &mut v,
            &RecordBody::Fields(Fields::separated(&buffer, &ends)),
        );
        (whole, got)
    };
    // `\xC2` + the delimiter `\xA7` is `§`: the text reads `x§ok§fine`.
    let (whole, got) = separated(&[b"x\xC2", b"ok\xC2", b"fine"], 0xA7);
    assert!(whole);
    assert_eq!(codes(&got), vec![ErrorCode::InvalidUtf8; 2], "{got:?}");
    // `\xC3` + `\xA9` is `é`: with that delimiter the text reads `xéoké`, and the last two fields start with
    // the second half of a character.
    let (whole, got) = separated(&[b"x", b"\xA9ok", b"\xA9"], 0xC3);
    assert!(whole);
    assert_eq!(codes(&got), vec![ErrorCode::InvalidUtf8; 2], "{got:?}");
    // Between fields that are whole characters, a tab delimiter is nothing to the fields either.
    let (_, got) = separated(&["é".as_bytes(), b"ok", "fin€".as_bytes()], b'\t');
    assert_eq!(got.ok(), Some(json!({"a": "é", "b": "ok", "c": "fin€"})));
}

#[test]
fn length_limits_count_characters_in_plain_and_escaped_records() {
    // `b` is 3 characters (4 bytes); the record has nothing to escape, then a quote elsewhere.
    assert_eq!(
        three_cells(&["Zoë".as_bytes(), "é€a".as_bytes(), b"x"]).ok(),
        Some(json!({"a": "Zoë", "b": "é€a", "c": "x"}))
    );
    assert_eq!(
        three_cells(&["say \"hi\"".as_bytes(), "é€a".as_bytes(), b"x"]).ok(),
        Some(json!({"a": "say \"hi\"", "b": "é€a", "c": "x"}))
    );
    assert_eq!(
        codes(&three_cells(&[b"a", "é€ab".as_bytes(), b"c"])),
        vec![ErrorCode::ConstraintViolated]
    );
}

/// JSON records are checked for UTF-8 once, then parsed as text; invalid UTF-8 is an `invalid_utf8` row error
/// naming the key whose value (or the key itself) holds it and the byte, as for a CSV cell, and never quotes
/// the bytes.
#[test]
fn json_record_with_invalid_utf8_is_invalid_utf8_naming_the_key() {
    let t = one_field("type = \"string\"");
    let mut v = Validator::new(&t, Format::Jsonl, None).expect("binds");
    let got = run(
        &mut v,
        &RecordBody::Json(b"{\"a\": 1, \" v \": \"ab\xffc\"}"),
    );
    let errors = got.err().unwrap_or_default();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].code, ErrorCode::InvalidUtf8);
    assert_eq!(errors[0].column.as_deref(), Some("v"));
    assert!(errors[0].message.contains("byte 19"), "{}", errors[0]);
    assert!(!errors[0].message.contains("ab"), "{}", errors[0]);
    // In a key: no column to name.
    let got = run(&mut v, &RecordBody::Json(b"{\"v\": \"x\", \"k\xff\": 1}"));
    let errors = got.err().unwrap_or_default();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].code, ErrorCode::InvalidUtf8);
    assert_eq!(errors[0].column, None);
    // Invalid UTF-8 after a syntax error is the syntax error.
    let got = run(&mut v, &RecordBody::Json(b"{\"v\": nope, \"w\": \"\xff\"}"));
    assert_eq!(codes(&got), vec![ErrorCode::InvalidJson]);
    assert_eq!(
        run(
            &mut v,
            &RecordBody::Json("{\"v\": \"Zoë \\u00e9\"}".as_bytes())
        )
        .ok(),
        Some(json!({"v": "Zoë é"}))
    );
}

proptest! {
    /// Rows may hold personal data: an error message never repeats the rejected value.
    #[test]
    fn integer_errors_never_contain_the_value(value in "[0-9a-zA-Z+. @-]{4,30}") {
        let t = one_field("type = \"integer\"\nmin = 5\nmax = 50");
        for got in [csv(&t, &["v"], &[&value]), json_rec(&t, &json!({ "v": value }).to_string())] {
            if let Err(errors) = got {
                for e in errors {
                    let shown = e.to_string();
                    // A value that is literally part of the fixed explanation text is not a leak.
                    let fixed = "expected an integer between -9223372036854775808 and 9223372036854775807 5 50";
                    prop_assume!(!fixed.contains(value.trim()));
                    prop_assert!(!shown.contains(value.trim()), "{shown:?} contains {value:?}");
                }
            }
        }
    }

    /// Whatever the other fields of the record hold (quotes, control bytes, backslashes, non-ASCII, broken
    /// UTF-8), each string field is output exactly as serde_json encodes it, or rejected as invalid UTF-8
    /// exactly when it is not UTF-8 on its own.
    #[test]
    fn string_fields_are_encoded_alike_in_any_record(
        cells in proptest::array::uniform3(proptest::collection::vec(
            proptest::sample::select(vec![
                b'a', b'z', b' ', b'"', b'\\', b'\n', 0x01, 0x1F, 0x7F, 0xC3, 0xA9, 0xE2, 0x82, 0xAC, 0xF0, 0x9F,
            ]),
            1..12,
        ))
    ) {
        let got = three_cells(&[&cells[0], &cells[1], &cells[2]]);
        let texts: Vec<Option<&str>> = cells.iter().map(|c| std::str::from_utf8(c).ok()).collect();
        let mut want_codes = Vec::new();
        for (i, text) in texts.iter().enumerate() {
            match text {
                None => want_codes.push(ErrorCode::InvalidUtf8),
                Some(t) if i == 1 && t.chars().count() > 3 => want_codes.push(ErrorCode::ConstraintViolated),
                Some(_) => {}
            }
        }
        if want_codes.is_empty() {
            let want = json!({"a": texts[0], "b": texts[1], "c": texts[2]});
            prop_assert_eq!(got.ok(), Some(want));
        } else {
            prop_assert_eq!(codes(&got), want_codes);
        }
    }

    #[test]
    fn any_string_cell_round_trips_through_the_json_output(value in any::<String>()) {
        let t = one_field("type = \"string\"\nrequired = true");
        let got = csv(&t, &["v"], &[&value]);
        if value.is_empty() {
            prop_assert_eq!(codes(&got), vec![ErrorCode::NullValue]);
        } else {
            prop_assert_eq!(got.ok(), Some(json!({ "v": value })));
        }
    }

    #[test]
    fn any_i64_round_trips(n in any::<i64>()) {
        let t = one_field("type = \"integer\"");
        prop_assert_eq!(csv(&t, &["v"], &[&n.to_string()]).ok(), Some(json!({ "v": n })));
    }

    #[test]
    fn decimals_keep_their_digits(int in "[1-9][0-9]{0,30}", frac in "[0-9]{1,20}", neg in any::<bool>()) {
        let t = one_field("type = \"decimal\"");
        let text = format!("{}{int}.{frac}", if neg { "-" } else { "" });
        prop_assert_eq!(csv(&t, &["v"], &[&text]).ok(), Some(json!({ "v": text })));
    }
}

/// About 100 MB of typical order rows: ids, names with quoted commas, integers, decimals, booleans,
/// timestamps, empty optionals.
fn typical_csv(rows: usize) -> Vec<u8> {
    use std::io::Write;
    let mut out =
        b"Order ID,Customer,Amount,Currency,Paid,Created At,Quantity,Notes,Ship Date,Attributes\n"
            .to_vec();
    let names = [
        "\"Doe, Jane\"",
        "John Smith",
        "\"O'Brien, Máire\"",
        "Zoë Müller",
        "ACME Corp.",
    ];
    for i in 0..rows {
        let _ = writeln!(
            out,
            "ORD-{:08},{},{}.{:02},{},{},2024-05-{:02}T{:02}:{:02}:{:02}.{:03}Z,{},{},{},",
            i,
            names[i % names.len()],
            i % 100_000,
            i % 100,
            ["EUR", "USD", "GBP"][i % 3],
            if i % 2 == 0 { "true" } else { "false" },
            1 + i % 28,
            i % 24,
            i % 60,
            (i * 7) % 60,
            i % 1000,
            1 + i % 50,
            if i % 5 == 0 { "gift wrap please" } else { "" },
            if i % 3 == 0 { "2024-06-01" } else { "" },
        );
    }
    out
}

/// Best (least) wall time of `runs` runs of `f`: the machine is shared, the best run is the least disturbed.
fn best_of(
    runs: usize,
    mut f: impl FnMut() -> Result<(), Box<dyn std::error::Error>>,
) -> Result<f64, Box<dyn std::error::Error>> {
    let mut best = f64::MAX;
    for _ in 0..runs {
        let start = std::time::Instant::now();
        f()?;
        best = best.min(start.elapsed().as_secs_f64());
    }
    Ok(best)
}

/// Measures validation alone, and csv parsing with and without validation (best of 5 runs each). Run with
/// `cargo test --release -p s3-importer-core --test validate -- --ignored --nocapture validation_throughput`.
#[test]
#[ignore = "a measurement: run in release mode"]
fn validation_throughput() -> TestResult {
    let data = typical_csv(1_000_000);
    let mb = data.len() as f64 / 1e6;
    let t = Template::from_toml(include_str!("../../../examples/templates/orders.toml"))?;

    // Parse once into one flat buffer so the validation loop measures only validation.
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(&data[..]);
    let header: Vec<Vec<u8>> = reader.byte_headers()?.iter().map(<[u8]>::to_vec).collect();
    let mut record = csv::ByteRecord::new();
    let (mut flat, mut ends, mut rows) = (Vec::new(), Vec::new(), Vec::new());
    while reader.read_byte_record(&mut record)? {
        let (d0, e0) = (flat.len(), ends.len());
        for f in record.iter() {
            flat.extend_from_slice(f);
            ends.push(flat.len() - d0);
        }
        rows.push((d0, flat.len(), e0, ends.len()));
    }
    let header_row = Row::new(&header.iter().map(Vec::as_slice).collect::<Vec<_>>());
    let mut v = Validator::new(&t, Format::Csv, Some(header_row.fields()))?;
    let mut out = Vec::with_capacity(1 << 20);
    let mut errors = Vec::new();
    let mut produced = 0usize;
    let validate_secs = best_of(5, || {
        produced = 0;
        for &(d0, d1, e0, e1) in &rows {
            let fields = Fields::new(&flat[d0..d1], &ends[e0..e1]);
            if !v.validate(&RecordBody::Fields(fields), &mut out, &mut errors) {
                return Err(format!("rejected: {errors:?}").into());
            }
            if out.len() > (1 << 20) - 4096 {
                produced += out.len();
                out.clear();
            }
        }
        Ok(())
    })?;

    // Raw csv-crate parse speed, then parse + validate.
    let parse_secs = best_of(5, || {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(&data[..]);
        let mut n = 0usize;
        while reader.read_byte_record(&mut record)? {
            n += record.len();
        }
        assert_eq!(n, rows.len() * 10);
        Ok(())
    })?;
    let mut row_ends = Vec::new();
    let both_secs = best_of(5, || {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(&data[..]);
        while reader.read_byte_record(&mut record)? {
            row_ends.clear();
            let mut end = 0;
            for f in record.iter() {
                end += f.len();
                row_ends.push(end);
            }
            let fields = Fields::new(record.as_slice(), &row_ends);
            v.validate(&RecordBody::Fields(fields), &mut out, &mut errors);
            if out.len() > (1 << 20) - 4096 {
                out.clear();
            }
        }
        Ok(())
    })?;
    println!(
        "{mb:.0} MB, {} rows: validate {:.0} MB/s ({:.0} ns/row, {:.1} output bytes per input byte); \
         csv parse {:.0} MB/s; parse+validate {:.0} MB/s ({:.2}x parse)",
        rows.len(),
        mb / validate_secs,
        validate_secs * 1e9 / rows.len() as f64,
        produced as f64 / 1e6 / mb,
        mb / parse_secs,
        mb / both_secs,
        parse_secs / both_secs,
    );
    Ok(())
}

#[test]
fn only_numbers_in_exponent_notation_are_told_about_exponents() {
    let t = one_field("type = \"decimal\"");
    for (input, exponent) in [
        ("1e3", true),
        ("-1.5E-2", true),
        (".5e+7", true),
        ("2.e1", true),
        ("yes", false),
        ("none", false),
        ("e", false),
        ("E5", false),
        ("-e", false),
        ("1e", false),
        ("1e3x", false),
    ] {
        let got = csv(&t, &["v"], &[input]);
        let errors = got.err().unwrap_or_default();
        assert_eq!(errors.len(), 1, "{input}");
        assert_eq!(errors[0].code, ErrorCode::InvalidDecimal, "{input}");
        assert_eq!(
            errors[0].message.contains("exponent"),
            exponent,
            "{input}: {}",
            errors[0]
        );
    }
}

#[test]
fn a_cell_that_is_not_utf8_is_invalid_utf8_whatever_its_type() {
    let t = template(
        "",
        "[[fields]]\nname = \"n\"\ntype = \"integer\"\n[[fields]]\nname = \"d\"\ntype = \"date\"\n\
         [[fields]]\nname = \"j\"\ntype = \"json\"\n[[fields]]\nname = \"b\"\ntype = \"boolean\"\n",
    );
    let h = Row::of(&["n", "d", "j", "b"]);
    let mut v = Validator::new(&t, Format::Csv, Some(h.fields())).expect("header binds");
    let cells: [&[u8]; 4] = [b"\xc3", b"2024-05-\xff1", b"{\"x\": \"\xff\"}", b"tru\xe9"];
    let got = run(&mut v, &RecordBody::Fields(Row::new(&cells).fields()));
    let errors = got.err().unwrap_or_default();
    let seen: Vec<_> = errors
        .iter()
        .map(|e| (e.column.as_deref(), e.code))
        .collect();
    assert_eq!(
        seen,
        vec![
            (Some("n"), ErrorCode::InvalidUtf8),
            (Some("d"), ErrorCode::InvalidUtf8),
            (Some("j"), ErrorCode::InvalidUtf8),
            (Some("b"), ErrorCode::InvalidUtf8),
        ]
    );
    // Valid UTF-8 that is not of the type keeps the type's code.
    let cells: [&[u8]; 4] = [b"\xc3\xa9", b"2024-05-01", b"{}", b"true"];
    let got = run(&mut v, &RecordBody::Fields(Row::new(&cells).fields()));
    assert_eq!(codes(&got), vec![ErrorCode::InvalidInteger]);
}
