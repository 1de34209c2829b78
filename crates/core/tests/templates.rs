//! Template parsing: the TOML form, its positioned errors, and the JSON round trip used for storage.

use s3_importer_core::read::DelimitedOptions;
use s3_importer_core::template::{
    CsvOptions, FieldType, OnError, Template, TemplateError, UnknownColumns,
};
use s3_importer_core::Format;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const ORDERS: &str = include_str!("../../../examples/templates/orders.toml");

fn example(name: &str) -> Result<String, std::io::Error> {
    std::fs::read_to_string(format!(
        "{}/../../examples/templates/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
}

fn parse_err(source: &str) -> TemplateError {
    match Template::from_toml(source) {
        Ok(t) => panic!("expected an error, parsed {t:?} from:\n{source}"),
        Err(e) => e,
    }
}

#[test]
fn orders_example_parses_with_every_type() -> TestResult {
    let t = Template::from_toml(ORDERS)?;
    assert_eq!(t.name, "orders");
    assert_eq!(t.format, Some(Format::Csv));
    assert_eq!(t.primary_key, vec!["order_id"]);
    assert_eq!(t.unknown_columns, UnknownColumns::Ignore);
    assert_eq!(
        t.on_error,
        OnError {
            max_rejected_rows: Some(1000),
            max_rejected_ratio: Some(0.05),
            ..OnError::default()
        }
    );
    let names: Vec<&str> = t.output_field_names().collect();
    assert_eq!(
        names,
        [
            "order_id",
            "customer",
            "amount",
            "currency",
            "paid",
            "created_at",
            "quantity",
            "notes",
            "ship_date",
            "attributes"
        ]
    );
    let types: Vec<&str> = t.fields.iter().map(|f| f.field_type.name()).collect();
    assert_eq!(
        types,
        [
            "string",
            "string",
            "decimal",
            "enum",
            "boolean",
            "timestamp",
            "integer",
            "string",
            "date",
            "json"
        ]
    );
    assert_eq!(t.fields[0].source_column(), "Order ID");
    assert!(t.fields[0].required && !t.fields[7].required);
    assert_eq!(
        t.fields[2].field_type,
        FieldType::Decimal {
            precision: Some(12),
            scale: Some(2)
        }
    );
    Ok(())
}

#[test]
fn every_example_template_parses() -> TestResult {
    for name in ["orders.toml", "events.toml", "customers.toml"] {
        let source = example(name)?;
        Template::from_toml(&source).map_err(|e| format!("{name}: {e}"))?;
    }
    Ok(())
}

#[test]
fn minimal_template_gets_the_documented_defaults() -> TestResult {
    let t = Template::from_toml("name = \"m\"\n[[fields]]\nname = \"a\"\ntype = \"string\"\n")?;
    assert_eq!(t.format, None);
    assert!(t.primary_key.is_empty());
    assert_eq!(t.unknown_columns, UnknownColumns::Ignore);
    assert_eq!(t.on_error, OnError::default());
    assert!(!t.on_error.exceeded_rows(u64::MAX));
    assert!(!t.on_error.exceeded_ratio(100, 100));
    assert!(!t.on_error.validate_first);
    assert_eq!(t.on_error.ratio_min_rows(), 1000);
    assert_eq!(
        t.csv,
        CsvOptions {
            delimiter: None,
            quote: None,
            header: true,
            empty_as_null: true
        }
    );
    assert!(!t.fields[0].required);
    assert_eq!(
        t.fields[0].field_type,
        FieldType::String {
            min_length: None,
            max_length: None
        }
    );
    Ok(())
}

#[test]
fn toml_to_template_to_json_to_template_is_lossless() -> TestResult {
    for name in ["orders.toml", "events.toml", "customers.toml"] {
        let t = Template::from_toml(&example(name)?)?;
        let json = serde_json::to_string(&t)?;
        let back: Template = serde_json::from_str(&json)?;
        assert_eq!(back, t, "{name} via {json}");
    }
    Ok(())
}

#[test]
fn json_form_mirrors_the_toml_keys() -> TestResult {
    let t = Template::from_toml(ORDERS)?;
    let v = serde_json::to_value(&t)?;
    assert_eq!(v["fields"][0]["type"], "string");
    assert_eq!(v["fields"][0]["column"], "Order ID");
    assert_eq!(v["fields"][0]["max_length"], 64);
    assert_eq!(v["fields"][3]["values"][0], "EUR");
    assert_eq!(v["fields"][3]["case_insensitive"], true);
    assert_eq!(v["unknown_columns"], "ignore");
    assert_eq!(v["format"], "csv");
    Ok(())
}

#[test]
fn delimited_options_apply_the_csv_overrides() -> TestResult {
    let t = Template::from_toml(&example("customers.toml")?)?;
    assert_eq!(
        t.delimited_options(Format::Csv),
        DelimitedOptions {
            delimiter: b';',
            quote: b'"',
            has_header: true
        }
    );
    let t = Template::from_toml(
        "name = \"t\"\n[csv]\nquote = \"'\"\nheader = false\n[[fields]]\nname = \"a\"\ntype = \"json\"\n",
    )?;
    assert_eq!(
        t.delimited_options(Format::Tsv),
        DelimitedOptions {
            delimiter: b'\t',
            quote: b'\'',
            has_header: false
        }
    );
    assert_eq!(
        t.delimited_options(Format::Csv),
        DelimitedOptions {
            delimiter: b',',
            quote: b'\'',
            has_header: false
        }
    );
    Ok(())
}

#[test]
fn on_error_thresholds_are_strictly_greater_than() {
    let e = OnError {
        max_rejected_rows: Some(2),
        max_rejected_ratio: Some(0.5),
        ..OnError::default()
    };
    let rows = [(0, false), (2, false), (3, true)];
    for (rejected, want) in rows {
        assert_eq!(e.exceeded_rows(rejected), want, "rejected={rejected}");
    }
    let ratios = [(0, 0, false), (5, 10, false), (6, 10, true), (1, 1, true)];
    for (rejected, read, want) in ratios {
        assert_eq!(
            e.exceeded_ratio(rejected, read),
            want,
            "rejected={rejected} read={read}"
        );
    }
    assert!(OnError {
        max_rejected_rows: Some(0),
        ..OnError::default()
    }
    .exceeded_rows(1));
}

/// The ratio judged as rows are read: only once `ratio_min_rows` rows were read, then by the same strict rule
/// as at the end of the file.
#[test]
fn the_ratio_is_judged_early_only_after_the_minimum_rows() {
    let e = OnError {
        max_rejected_ratio: Some(0.1),
        ratio_min_rows: Some(100),
        ..OnError::default()
    };
    // (rejected, read, exceeded early)
    let cases = [
        (99, 99, false), // all bad, but fewer than 100 rows read: left to the end of the file
        (11, 100, true), // 11% of the first 100
        (10, 100, false), // exactly 10% is not more than 10%
        (11, 1000, false), // 1.1%
        (101, 1000, true),
    ];
    for (rejected, read, want) in cases {
        assert_eq!(
            e.exceeded_ratio_early(rejected, read),
            want,
            "rejected={rejected} read={read}"
        );
    }
    let default_rows = OnError {
        max_rejected_ratio: Some(0.1),
        ..OnError::default()
    };
    assert!(!default_rows.exceeded_ratio_early(999, 999));
    assert!(default_rows.exceeded_ratio_early(1000, 1000));
    assert!(
        !OnError::default().exceeded_ratio_early(1000, 1000),
        "no ratio, no limit"
    );
    assert!(
        default_rows
            .ratio_limit(false)
            .contains("once 1000 were read"),
        "{}",
        default_rows.ratio_limit(false)
    );
}

#[test]
fn validate_first_and_ratio_min_rows_parse_and_round_trip() -> TestResult {
    let source = format!(
        "{HEAD}[on_error]\nmax_rejected_ratio = 0.2\nratio_min_rows = 50\nvalidate_first = true\n\
         [[fields]]\nname = \"a\"\ntype = \"string\"\n"
    );
    let t = Template::from_toml(&source)?;
    assert_eq!(
        t.on_error,
        OnError {
            max_rejected_rows: None,
            max_rejected_ratio: Some(0.2),
            ratio_min_rows: Some(50),
            validate_first: true,
        }
    );
    let json = serde_json::to_value(&t)?;
    assert_eq!(json["on_error"]["validate_first"], true);
    assert_eq!(json["on_error"]["ratio_min_rows"], 50);
    assert_eq!(serde_json::from_value::<Template>(json)?, t);
    // Off by default, and then not stored: templates stored before the option read back the same.
    let plain = Template::from_toml(&format!(
        "{HEAD}[on_error]\nvalidate_first = false\n[[fields]]\nname = \"a\"\ntype = \"string\"\n"
    ))?;
    assert!(!plain.on_error.validate_first);
    assert!(serde_json::to_value(&plain)?["on_error"]
        .get("validate_first")
        .is_none());
    Ok(())
}

const HEAD: &str = "name = \"t\"\n";

/// Each case: TOML source, expected (line, column, path), and a piece of the message.
#[test]
fn template_errors_name_line_column_and_path() {
    let field = |body: &str| {
        format!("{HEAD}[[fields]]\nname = \"a\"\ntype = \"string\"\n\n[[fields]]\n{body}")
    };
    let cases: Vec<(String, (usize, usize, &str), &str)> = vec![
        (
            field("name = \"b\"\ntype = \"int\"\n"),
            (8, 8, "fields[1].type"),
            "unknown type `int`, expected one of `string`, `integer`",
        ),
        (field("name = \"b\"\ntype = \"string\"\nmax_lenght = 3\n"), (9, 1, "fields[1].max_lenght"), "unknown field"),
        (field("name = \"a\"\ntype = \"integer\"\n"), (7, 8, "fields[1].name"), "duplicate field name `a`"),
        (field("name = \" \"\ntype = \"integer\"\n"), (7, 8, "fields[1].name"), "empty or blank"),
        (field("name = \"b \"\ntype = \"integer\"\n"), (7, 8, "fields[1].name"), "start or end with whitespace"),
        (
            field("name = \"b\"\ntype = \"enum\"\nvalues = [\"x\", \"a \"]\n"),
            (9, 16, "fields[1].values[1]"),
            "matched after trimming",
        ),
        (
            field("name = \"b\"\ntype = \"enum\"\nvalues = [\"\"]\n"),
            (9, 11, "fields[1].values[0]"),
            "must not be empty",
        ),
        (
            format!(
                "{HEAD}unknown_columns = \"keep\"\n[csv]\nheader = false\n[[fields]]\nname = \"id\"\ntype = \"string\"\n\n\
                 [[fields]]\nname = \"column_3\"\ntype = \"string\"\n"
            ),
            (10, 8, "fields[1].name"),
            "would be written twice",
        ),
        (
            field("name = \"b\"\ncolumn = \" A \"\ntype = \"integer\"\n"),
            (8, 10, "fields[1].column"),
            "duplicate source column `A`",
        ),
        (field("name = \"b\"\ntype = \"enum\"\nvalues = []\n"), (9, 10, "fields[1].values"), "at least one value"),
        (field("name = \"b\"\ntype = \"enum\"\n"), (8, 8, "fields[1].values"), "needs a `values` list"),
        (
            field("name = \"b\"\ntype = \"enum\"\nvalues = [\"x\", \"X\"]\ncase_insensitive = true\n"),
            (9, 16, "fields[1].values[1]"),
            "duplicate enum value",
        ),
        (field("name = \"b\"\ntype = \"integer\"\nmin = 5\nmax = 1\n"), (9, 7, "fields[1].min"), "min is greater than max"),
        (
            field("name = \"b\"\ntype = \"string\"\nmin_length = 5\nmax_length = 1\n"),
            (9, 14, "fields[1].min_length"),
            "greater than max_length",
        ),
        (field("name = \"b\"\ntype = \"decimal\"\nprecision = 39\n"), (9, 13, "fields[1].precision"), "between 1 and 38"),
        (
            field("name = \"b\"\ntype = \"decimal\"\nprecision = 5\nscale = 6\n"),
            (10, 9, "fields[1].scale"),
            "precision (5)",
        ),
        (
            field("name = \"b\"\ntype = \"integer\"\nmax_length = 3\n"),
            (9, 14, "fields[1].max_length"),
            "does not apply to type `integer`",
        ),
        (field("name = \"b\"\ntype = \"date\"\nformat = \"%Q\"\n"), (9, 10, "fields[1].format"), "invalid chrono format"),
        (field("name = \"b\"\ntype = \"date\"\nformat = \"%Y\"\n"), (9, 10, "fields[1].format"), "no value can match this format"),
        (field("name = \"b\"\ntype = \"date\"\nformat = \"%d/%m\"\n"), (9, 10, "fields[1].format"), "a year, a month and a day"),
        (
            field("name = \"b\"\ntype = \"timestamp\"\nformat = \"%Y-%m-%d %H:%M:%S %Z\"\n"),
            (9, 10, "fields[1].format"),
            "`%Z`",
        ),
        (
            field("name = \"b\"\ntype = \"timestamp\"\nformat = \"%Y-%m-%d\"\n"),
            (9, 10, "fields[1].format"),
            "a date and a time of day",
        ),

        (field("name = \"b\"\ntype = \"string\"\nmax_length = \"9\"\n"), (9, 14, "fields[1].max_length"), "invalid type"),
        (field("name = \"b\"\n"), (6, 1, "fields[1]"), "missing field `type`"),
        (
            format!("{HEAD}primary_key = [\"a\", \"zz\"]\n[[fields]]\nname = \"a\"\ntype = \"string\"\nrequired = true\n"),
            (2, 21, "primary_key[1]"),
            "`zz` is not the name of a field",
        ),
        (
            format!("{HEAD}primary_key = [\"a\"]\n[[fields]]\nname = \"a\"\ntype = \"string\"\n"),
            (2, 16, "primary_key[0]"),
            "must be declared with `required = true`",
        ),
        (
            format!("{HEAD}unknown_columns = \"drop\"\n[[fields]]\nname = \"a\"\ntype = \"string\"\n"),
            (2, 19, "unknown_columns"),
            "unknown mode `drop`",
        ),
        (
            format!("{HEAD}format = \"xml\"\n[[fields]]\nname = \"a\"\ntype = \"string\"\n"),
            (2, 10, "format"),
            "unknown format",
        ),
        (
            format!("{HEAD}[csv]\ndelimiter = \";;\"\n[[fields]]\nname = \"a\"\ntype = \"string\"\n"),
            (3, 13, "csv.delimiter"),
            "single ASCII character",
        ),
        (
            format!("{HEAD}[on_error]\nmax_rejected_ratio = 5.0\n[[fields]]\nname = \"a\"\ntype = \"string\"\n"),
            (3, 22, "on_error.max_rejected_ratio"),
            "between 0.0 and 1.0",
        ),
        (
            format!("{HEAD}[on_error]\nvalidate_first = \"yes\"\n[[fields]]\nname = \"a\"\ntype = \"string\"\n"),
            (3, 18, "on_error.validate_first"),
            "invalid type: string \"yes\", expected a boolean",
        ),
        (
            format!("{HEAD}[on_error]\nratio_min_rows = -1\n[[fields]]\nname = \"a\"\ntype = \"string\"\n"),
            (3, 18, "on_error.ratio_min_rows"),
            "invalid value",
        ),
        (format!("{HEAD}colour = 1\n[[fields]]\nname = \"a\"\ntype = \"string\"\n"), (2, 1, "colour"), "unknown field"),
        (format!("{HEAD}fields = []\n"), (2, 10, "fields"), "at least one field"),
        (format!("{HEAD}[[fields]]\nname = \"a\"\ntype = \n"), (4, 8, ""), "string"),
    ];
    for (source, (line, column, path), message) in cases {
        let e = parse_err(&source);
        assert_eq!(
            (e.line, e.column, e.path.as_str()),
            (line, column, path),
            "error {e} for\n{source}"
        );
        assert!(
            e.message.contains(message),
            "message {:?} lacks {message:?} for\n{source}",
            e.message
        );
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!("line {line}, column {column}: ")),
            "display {shown:?}"
        );
    }
}

#[test]
fn error_display_reads_line_column_path_message() {
    let e = parse_err(&format!("{HEAD}[[fields]]\nname = \"a\"\ntype = \"int\"\n"));
    assert_eq!(
        e.to_string(),
        "line 4, column 8: fields[0].type: unknown type `int`, expected one of `string`, `integer`, `decimal`, \
         `boolean`, `date`, `timestamp`, `enum`, `json`"
    );
}

#[test]
fn column_counts_characters_not_bytes() {
    let e = parse_err("name = \"ü\"\n[[fields]]\nname = \"é\"\ntype = \"é\"\n");
    assert_eq!((e.line, e.column), (4, 8), "{e}");
}

#[test]
fn column_n_names_clash_only_with_header_less_csv_keeping_columns() {
    let body = "[[fields]]\nname = \"id\"\ntype = \"string\"\n[[fields]]\nname = \"column_3\"\ntype = \"string\"\n";
    for head in [
        "unknown_columns = \"keep\"\n",
        "unknown_columns = \"ignore\"\n[csv]\nheader = false\n",
        "format = \"jsonl\"\nunknown_columns = \"keep\"\n[csv]\nheader = false\n",
    ] {
        let source = format!("{HEAD}{head}{body}");
        assert!(Template::from_toml(&source).is_ok(), "{source}");
    }
    // Only the exact spelling of a kept column clashes.
    let source = format!(
        "{HEAD}unknown_columns = \"keep\"\n[csv]\nheader = false\n[[fields]]\nname = \"id\"\ntype = \"string\"\n\
         [[fields]]\nname = \"column_03\"\ntype = \"string\"\n"
    );
    assert!(Template::from_toml(&source).is_ok());
    // A no-break space is data to the validator (it trims ASCII whitespace), so an enum value may end with one.
    let source = format!(
        "{HEAD}[[fields]]\nname = \"a\"\ntype = \"enum\"\nvalues = [\"Yes\u{a0}\", \"No\"]\n"
    );
    assert!(Template::from_toml(&source).is_ok());
    // `column_2` is a declared position's own name: no kept column is called that.
    let source = format!(
        "{HEAD}unknown_columns = \"keep\"\n[csv]\nheader = false\n[[fields]]\nname = \"id\"\ntype = \"string\"\n\
         [[fields]]\nname = \"column_2\"\ntype = \"string\"\n"
    );
    assert!(Template::from_toml(&source).is_ok());
}

#[test]
fn usual_date_and_timestamp_formats_load() {
    let dates = [
        "%d/%m/%Y",
        "%m/%d/%y",
        "%Y%m%d",
        "%d %b %Y",
        "%A, %B %e, %Y",
        "%Y-%j",
        "%F",
    ];
    let timestamps = [
        "%Y-%m-%dT%H:%M:%S%#z",
        "%d/%m/%Y %H:%M:%S %z",
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%m/%d/%Y %I:%M %p",
        "%Y%m%d%H%M%S",
        "%s",
        "%+",
        "%d.%m.%Y %H:%M",
    ];
    let cases = dates
        .iter()
        .map(|f| ("date", f))
        .chain(timestamps.iter().map(|f| ("timestamp", f)));
    for (kind, format) in cases {
        let source =
            format!("{HEAD}[[fields]]\nname = \"a\"\ntype = \"{kind}\"\nformat = \"{format}\"\n");
        if let Err(e) = Template::from_toml(&source) {
            panic!("{kind} format `{format}`: {e}");
        }
    }
}
