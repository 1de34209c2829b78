use super::*;
use s3_importer_core::template::Template;

#[test]
fn decimals_scale_exactly_and_refuse_what_does_not_fit() {
    let cases: &[(&str, u32, u32, Result<i128, ()>)] = &[
        ("12.34", 9, 2, Ok(1234)),
        ("-12.5", 9, 2, Ok(-1250)),
        ("+0.01", 9, 2, Ok(1)),
        ("007", 9, 2, Ok(700)),
        ("1.230", 9, 2, Ok(123)),
        (".5", 9, 2, Ok(50)),
        ("-0.00", 9, 2, Ok(0)),
        ("1234567.89", 9, 2, Ok(123_456_789)),
        ("12345678.9", 9, 2, Err(())),
        ("1.234", 9, 2, Err(())),
        ("1e3", 9, 2, Err(())),
        ("", 9, 2, Err(())),
        (".", 9, 2, Err(())),
        ("1.2.3", 9, 2, Err(())),
        // 38 digits, the most a template declares.
        (
            "-9999999999999999999999999999.9999999999",
            38,
            10,
            Ok(-99_999_999_999_999_999_999_999_999_999_999_999_999),
        ),
    ];
    for (text, precision, scale, want) in cases {
        let got = decimal_unscaled(text, *precision, *scale).map_err(|_| ());
        assert_eq!(&got, want, "{text} as decimal({precision},{scale})");
    }
}

#[test]
fn wide_decimals_are_big_endian_twos_complement() {
    assert_eq!(decimal_fixed(1, 2), vec![0, 1]);
    assert_eq!(decimal_fixed(-1, 3), vec![0xff, 0xff, 0xff]);
    assert_eq!(decimal_fixed(256, 9), vec![0, 0, 0, 0, 0, 0, 0, 1, 0]);
    assert_eq!(decimal_fixed(-256, 4), vec![0xff, 0xff, 0xff, 0]);
}

#[test]
fn timestamps_become_utc_microseconds_and_dates_days() {
    let cases: &[(&str, Result<i64, ()>)] = &[
        ("1970-01-01T00:00:00Z", Ok(0)),
        ("2024-02-29T12:34:56.789012Z", Ok(1_709_210_096_789_012)),
        (
            "2024-02-29T14:34:56.789012+02:00",
            Ok(1_709_210_096_789_012),
        ),
        (
            "2024-02-29T07:04:56.789012-05:30",
            Ok(1_709_210_096_789_012),
        ),
        ("1969-12-31T23:59:59.999999Z", Ok(-1)),
        ("2024-02-29T12:34:56.7890129Z", Ok(1_709_210_096_789_012)),
        ("2024-02-29 12:34:56", Err(())),
    ];
    for (text, want) in cases {
        assert_eq!(&timestamp_micros(text).map_err(|_| ()), want, "{text}");
    }
    assert_eq!(date_days("1970-01-01"), Ok(0));
    assert_eq!(date_days("2024-02-29"), Ok(19_782));
    assert_eq!(date_days("1969-12-31"), Ok(-1));
    assert!(date_days("2023-02-29").is_err());
}

fn lineage() -> FileLineage {
    FileLineage {
        source_key: "in/ü.csv".into(),
        source_etag: "\"e\"".into(),
        last_modified_micros: 7,
        imported_at_micros: 9,
    }
}

fn buffer() -> RowGroupBuffer {
    let template = Template::from_toml(
        "name = \"t\"\n[[fields]]\nname = \"id\"\ntype = \"string\"\nrequired = true\n\
         [[fields]]\nname = \"amount\"\ntype = \"decimal\"\nprecision = 20\nscale = 2\n\
         [[fields]]\nname = \"ok\"\ntype = \"boolean\"\n\
         [[fields]]\nname = \"doc\"\ntype = \"json\"\n",
    )
    .expect("valid template");
    RowGroupBuffer::new(
        OutputSchema::of(&template).expect("parquet schema"),
        &lineage(),
    )
}

#[test]
fn rows_fill_columns_with_nulls_unicode_lineage_and_extra_keys() -> Result<(), ValueError> {
    let mut rows = buffer();
    rows.push(
        r#"{"id":"żółw 🐢","amount":"-1.50","ok":true,"doc":{"a":[1,"x"]},"more":1}"#.as_bytes(),
        3,
    )?;
    rows.push(br#"{"id":"b","amount":null}"#, 4)?;
    assert_eq!(rows.rows(), 2);
    let cols = rows.columns();
    assert_eq!(text_values(&cols[0].values), vec!["żółw 🐢", "b"]);
    assert!(cols[0].levels.is_empty(), "a required column has no levels");
    match &cols[1].values {
        Values::Fixed { data, width } => {
            assert_eq!(*width, 9);
            assert_eq!(data, &decimal_fixed(-150, 9));
        }
        other => panic!("amount column holds {other:?}"),
    }
    assert_eq!(cols[1].levels, vec![1, 0]);
    assert_eq!(cols[2].levels, vec![1, 0]);
    assert_eq!(text_values(&cols[3].values), vec![r#"{"a":[1,"x"]}"#]);
    match (&cols[4].values, &cols[5].values) {
        (Values::SameBytes(key), Values::SameBytes(etag)) => {
            assert_eq!(key.as_utf8().ok(), Some("in/ü.csv"));
            assert_eq!(etag.as_utf8().ok(), Some("\"e\""));
        }
        other => panic!("_source_key, _source_etag hold {other:?}"),
    }
    match &cols[7].values {
        Values::I64(v) => assert_eq!(v, &vec![3, 4], "_source_row"),
        other => panic!("_source_row holds {other:?}"),
    }
    assert_eq!(text_values(&cols[9].values), vec![r#"{"more":1}"#]);
    assert_eq!(cols[9].levels, vec![1, 0]);
    assert!(rows.bytes() > 0);
    rows.clear();
    assert_eq!((rows.rows(), rows.bytes()), (0, 0));
    Ok(())
}

#[test]
fn a_refused_value_names_record_and_column_and_appends_nothing() {
    let mut rows = buffer();
    let err = rows
        .push(br#"{"id":"a","amount":"1.234"}"#, 12)
        .expect_err("too many decimals");
    assert_eq!((err.record, err.column.as_str()), (12, "amount"));
    let err = rows
        .push(br#"{"amount":"1.00"}"#, 13)
        .expect_err("required");
    assert_eq!(err.column, "id");
    let err = rows
        .push(br#"{"id":"a","ok":"yes"}"#, 14)
        .expect_err("not a boolean");
    assert!(
        err.to_string()
            .contains("record 14: ok: expected a boolean"),
        "{err}"
    );
    assert!(rows.push(b"[1]", 15).is_err());
    assert_eq!(rows.rows(), 0);
    assert!(rows.columns().iter().all(|c| c.levels.is_empty()));
    assert_eq!(rows.bytes(), 0, "a refused row leaves nothing behind");
}

/// The values of a BYTE_ARRAY column, as text.
fn text_values(values: &Values) -> Vec<&str> {
    match values {
        Values::Bytes { data, ends } => {
            let mut start = 0;
            ends.iter()
                .map(|&end| {
                    let value = std::str::from_utf8(&data[start..end]).unwrap_or("<not UTF-8>");
                    start = end;
                    value
                })
                .collect()
        }
        other => panic!("not a text column: {other:?}"),
    }
}

#[test]
fn a_key_given_twice_counts_once_the_last_value_and_rows_stay_aligned() -> Result<(), ValueError> {
    let mut rows = buffer();
    rows.push(br#"{"id":"a","ok":true,"ok":null,"id":"b"}"#, 1)?;
    // Out of template order, an escaped string, a refused row in between.
    rows.push(br#"{"ok":false,"id":"c\"d"}"#, 2)?;
    assert!(rows
        .push(br#"{"id":"x","amount":"1.00","ok":1}"#, 3)
        .is_err());
    let cols = rows.columns();
    assert_eq!(text_values(&cols[0].values), vec!["b", "c\"d"]);
    assert_eq!(cols[2].levels, vec![0, 1]);
    match &cols[2].values {
        Values::Bool(v) => assert_eq!(v, &vec![false]),
        other => panic!("ok column holds {other:?}"),
    }
    assert_eq!(
        cols[1].levels,
        vec![0, 0],
        "the refused row's amount is taken back"
    );
    assert_eq!(rows.rows(), 2);
    Ok(())
}
