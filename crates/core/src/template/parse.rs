//! The TOML form of a template: parsing with spans, then the semantic checks, each error positioned.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::ops::Range;

use serde::Deserialize;
use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue};

use super::{
    normalize_column, CsvOptions, FieldSpec, FieldType, OnError, Template, UnknownColumns,
    MAX_DECIMAL_PRECISION,
};
use crate::Format;

/// A template that cannot be used, positioned in its TOML source.
///
/// Displays as `line 12, column 8: fields[3].type: unknown type `int`, expected one of ...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {}{message}", path_prefix(path))]
pub struct TemplateError {
    /// 1-based line in the source.
    pub line: usize,
    /// 1-based column (in characters) in the source.
    pub column: usize,
    /// Path of the offending value, e.g. `fields[3].type`; empty for a TOML syntax error outside any key.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

fn path_prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

impl TemplateError {
    fn at(
        source: &str,
        span: Range<usize>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let (line, column) = line_column(source, span.start);
        Self {
            line,
            column,
            path: path.into(),
            message: message.into(),
        }
    }
}

/// 1-based line and character column of byte offset `at`.
fn line_column(source: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(source.len());
    while !source.is_char_boundary(at) {
        at -= 1;
    }
    let before = &source[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, source[line_start..at].chars().count() + 1)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    name: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    format: Option<Spanned<String>>,
    #[serde(default)]
    primary_key: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    unknown_columns: Option<Spanned<String>>,
    #[serde(default)]
    csv: Option<RawCsv>,
    #[serde(default)]
    on_error: Option<RawOnError>,
    fields: Spanned<Vec<RawField>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCsv {
    #[serde(default)]
    delimiter: Option<Spanned<String>>,
    #[serde(default)]
    quote: Option<Spanned<String>>,
    #[serde(default)]
    header: Option<bool>,
    #[serde(default)]
    empty_as_null: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOnError {
    #[serde(default)]
    max_rejected_rows: Option<u64>,
    #[serde(default)]
    max_rejected_ratio: Option<Spanned<f64>>,
    #[serde(default)]
    ratio_min_rows: Option<u64>,
    #[serde(default)]
    validate_first: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    name: Spanned<String>,
    #[serde(default)]
    column: Option<Spanned<String>>,
    #[serde(rename = "type")]
    field_type: Spanned<String>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    min_length: Option<Spanned<u32>>,
    #[serde(default)]
    max_length: Option<Spanned<u32>>,
    #[serde(default)]
    min: Option<Spanned<i64>>,
    #[serde(default)]
    max: Option<Spanned<i64>>,
    #[serde(default)]
    precision: Option<Spanned<u32>>,
    #[serde(default)]
    scale: Option<Spanned<u32>>,
    #[serde(default)]
    format: Option<Spanned<String>>,
    #[serde(default)]
    values: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    case_insensitive: Option<Spanned<bool>>,
}

const TYPE_NAMES: &str =
    "`string`, `integer`, `decimal`, `boolean`, `date`, `timestamp`, `enum`, `json`";

pub(super) fn from_toml(source: &str) -> Result<Template, TemplateError> {
    let raw: RawTemplate = toml::from_str(source).map_err(|e| serde_error(source, &e))?;
    Checker { source }.template(raw)
}

/// Positions a TOML syntax or shape error, finding the path of the value under the error's span.
fn serde_error(source: &str, error: &toml::de::Error) -> TemplateError {
    let span = error.span().unwrap_or(0..0);
    let (table, _) = DeTable::parse_recoverable(source);
    let mut path = String::new();
    if !find_path(table.get_ref(), span.start, &mut path) {
        path.clear();
    }
    let message = error.message().trim_end().replace('\n', "; ");
    TemplateError::at(source, span, path, message)
}

/// Appends to `path` the keys leading to the innermost key or value containing byte `pos`.
fn find_path(table: &DeTable<'_>, pos: usize, path: &mut String) -> bool {
    for (key, value) in table.iter() {
        let len = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(key.get_ref());
        if key.span().contains(&pos) {
            return true;
        }
        // Tables declared with a `[header]` have a span that may not cover their body: look inside anyway.
        if find_in_value(value, pos, path) || value.span().contains(&pos) {
            return true;
        }
        path.truncate(len);
    }
    false
}

fn find_in_value(value: &Spanned<DeValue<'_>>, pos: usize, path: &mut String) -> bool {
    match value.get_ref() {
        DeValue::Table(table) => find_path(table, pos, path),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                let _ = write!(path, "[{i}]");
                if find_in_value(item, pos, path) || item.span().contains(&pos) {
                    return true;
                }
                path.truncate(len);
            }
            false
        }
        _ => false,
    }
}

struct Checker<'s> {
    source: &'s str,
}

impl Checker<'_> {
    fn err(
        &self,
        span: Range<usize>,
        path: impl Into<String>,
        message: impl Into<String>,
    ) -> TemplateError {
        TemplateError::at(self.source, span, path, message)
    }

    fn template(&self, raw: RawTemplate) -> Result<Template, TemplateError> {
        if raw.name.get_ref().trim().is_empty() {
            return Err(self.err(
                raw.name.span(),
                "name",
                "the template name must not be empty",
            ));
        }
        let format = match &raw.format {
            None => None,
            Some(f) => Some(
                f.get_ref()
                    .parse::<Format>()
                    .map_err(|m| self.err(f.span(), "format", m))?,
            ),
        };
        let unknown_columns = match &raw.unknown_columns {
            None => UnknownColumns::default(),
            Some(u) => match u.get_ref().as_str() {
                "ignore" => UnknownColumns::Ignore,
                "reject" => UnknownColumns::Reject,
                "keep" => UnknownColumns::Keep,
                other => {
                    return Err(self.err(
                        u.span(),
                        "unknown_columns",
                        format!(
                            "unknown mode `{other}`, expected one of `ignore`, `reject`, `keep`"
                        ),
                    ))
                }
            },
        };
        let csv = self.csv(raw.csv)?;
        let on_error = self.on_error(raw.on_error)?;

        let fields_span = raw.fields.span();
        let raw_fields = raw.fields.into_inner();
        if raw_fields.is_empty() {
            return Err(self.err(fields_span, "fields", "a template needs at least one field"));
        }
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut columns: HashMap<String, usize> = HashMap::new();
        let mut fields = Vec::with_capacity(raw_fields.len());
        let fields_name_spans: Vec<_> = raw_fields.iter().map(|rf| rf.name.span()).collect();
        for (i, rf) in raw_fields.into_iter().enumerate() {
            let name = rf.name.get_ref();
            if name.trim().is_empty() {
                return Err(self.err(
                    rf.name.span(),
                    format!("fields[{i}].name"),
                    "a field name must not be empty or blank",
                ));
            }
            if name.trim() != name {
                return Err(self.err(
                    rf.name.span(),
                    format!("fields[{i}].name"),
                    "a field name must not start or end with whitespace (it is the output key as written)",
                ));
            }
            if let Some(first) = names.insert(name.clone(), i) {
                return Err(self.err(
                    rf.name.span(),
                    format!("fields[{i}].name"),
                    format!("duplicate field name `{name}` (also fields[{first}])"),
                ));
            }
            let (column_span, column_path, column) = match &rf.column {
                Some(c) => (
                    c.span(),
                    format!("fields[{i}].column"),
                    c.get_ref().as_str(),
                ),
                None => (rf.name.span(), format!("fields[{i}].name"), name.as_str()),
            };
            if column.trim().is_empty() {
                return Err(self.err(
                    column_span,
                    column_path,
                    "a source column must not be empty or blank",
                ));
            }
            if let Some(first) = columns.insert(normalize_column(column), i) {
                return Err(self.err(
                    column_span,
                    column_path,
                    format!(
                        "duplicate source column `{}` (also fields[{first}]; columns match trimmed and ignoring case)",
                        column.trim()
                    ),
                ));
            }
            fields.push(self.field(i, rf)?);
        }

        // Header-less CSV/TSV keeps the columns past the template's fields as `column_N` (N counted from 1
        // over all columns): a field named like one of those would be written twice in the same row.
        let positional_keep = unknown_columns == UnknownColumns::Keep
            && !csv.header
            && !matches!(format, Some(Format::Json | Format::Jsonl));
        if positional_keep {
            let declared = fields.len();
            for (i, f) in fields.iter().enumerate() {
                let number = f
                    .name
                    .strip_prefix("column_")
                    .and_then(|n| n.parse::<usize>().ok());
                // Only the exact spelling a kept column gets (`column_3`, not `column_03`).
                if number.is_some_and(|n| n > declared && f.name == format!("column_{n}")) {
                    return Err(self.err(
                        fields_name_spans[i].clone(),
                        format!("fields[{i}].name"),
                        format!(
                            "with `[csv] header = false` and `unknown_columns = \"keep\"`, the columns after the \
                             {declared} declared are kept as `column_{}`, `column_{}`, ...: a field named `{}` \
                             would be written twice; rename it",
                            declared + 1,
                            declared + 2,
                            f.name
                        ),
                    ));
                }
            }
        }

        let mut primary_key = Vec::new();
        for (i, key) in raw.primary_key.unwrap_or_default().into_iter().enumerate() {
            let path = format!("primary_key[{i}]");
            let name = key.get_ref();
            let Some(field) = fields.iter().find(|f: &&FieldSpec| &f.name == name) else {
                return Err(self.err(
                    key.span(),
                    path,
                    format!("`{name}` is not the name of a field"),
                ));
            };
            if primary_key.contains(name) {
                return Err(self.err(key.span(), path, format!("`{name}` is listed twice")));
            }
            if !field.required {
                return Err(self.err(
                    key.span(),
                    path,
                    format!("primary key field `{name}` must be declared with `required = true`"),
                ));
            }
            if field.field_type == FieldType::Json {
                return Err(self.err(
                    key.span(),
                    path,
                    format!("primary key field `{name}` cannot be of type `json`"),
                ));
            }
            primary_key.push(name.clone());
        }

        Ok(Template {
            name: raw.name.into_inner(),
            description: raw.description,
            format,
            fields,
            primary_key,
            unknown_columns,
            on_error,
            csv,
        })
    }

    fn csv(&self, raw: Option<RawCsv>) -> Result<CsvOptions, TemplateError> {
        let mut csv = CsvOptions::default();
        let Some(raw) = raw else { return Ok(csv) };
        csv.delimiter = raw
            .delimiter
            .as_ref()
            .map(|d| self.ascii_char(d, "csv.delimiter"))
            .transpose()?;
        csv.quote = raw
            .quote
            .as_ref()
            .map(|q| self.ascii_char(q, "csv.quote"))
            .transpose()?;
        if csv.delimiter.is_some() && csv.delimiter == Some(csv.quote.unwrap_or('"')) {
            let span = raw
                .quote
                .as_ref()
                .or(raw.delimiter.as_ref())
                .map_or(0..0, Spanned::span);
            let path = if raw.quote.is_some() {
                "csv.quote"
            } else {
                "csv.delimiter"
            };
            return Err(self.err(
                span,
                path,
                "the quote character must differ from the delimiter",
            ));
        }
        csv.header = raw.header.unwrap_or(true);
        csv.empty_as_null = raw.empty_as_null.unwrap_or(true);
        Ok(csv)
    }

    fn ascii_char(&self, value: &Spanned<String>, path: &str) -> Result<char, TemplateError> {
        let mut chars = value.get_ref().chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_ascii() && c != '\n' && c != '\r' => Ok(c),
            _ => Err(self.err(
                value.span(),
                path,
                "expected a single ASCII character other than a line break",
            )),
        }
    }

    fn on_error(&self, raw: Option<RawOnError>) -> Result<OnError, TemplateError> {
        let Some(raw) = raw else {
            return Ok(OnError::default());
        };
        if let Some(ratio) = &raw.max_rejected_ratio {
            let r = *ratio.get_ref();
            if !(0.0..=1.0).contains(&r) {
                return Err(self.err(
                    ratio.span(),
                    "on_error.max_rejected_ratio",
                    "expected a fraction between 0.0 and 1.0 (0.05 means 5%)",
                ));
            }
        }
        Ok(OnError {
            max_rejected_rows: raw.max_rejected_rows,
            max_rejected_ratio: raw.max_rejected_ratio.map(Spanned::into_inner),
            ratio_min_rows: raw.ratio_min_rows,
            validate_first: raw.validate_first.unwrap_or(false),
        })
    }

    fn field(&self, i: usize, rf: RawField) -> Result<FieldSpec, TemplateError> {
        let type_name = rf.field_type.get_ref().as_str();
        let path = |key: &str| format!("fields[{i}].{key}");
        // Constraints that do not apply to the type are errors, not silently ignored: a `max_length` on an
        // integer is a mistake the author wants to hear about.
        let allowed: &[&str] = match type_name {
            "string" => &["min_length", "max_length"],
            "integer" => &["min", "max"],
            "decimal" => &["precision", "scale"],
            "date" | "timestamp" => &["format"],
            "enum" => &["values", "case_insensitive"],
            "boolean" | "json" => &[],
            other => {
                return Err(self.err(
                    rf.field_type.span(),
                    path("type"),
                    format!("unknown type `{other}`, expected one of {TYPE_NAMES}"),
                ))
            }
        };
        let present: [(&str, Option<Range<usize>>); 9] = [
            ("min_length", rf.min_length.as_ref().map(Spanned::span)),
            ("max_length", rf.max_length.as_ref().map(Spanned::span)),
            ("min", rf.min.as_ref().map(Spanned::span)),
            ("max", rf.max.as_ref().map(Spanned::span)),
            ("precision", rf.precision.as_ref().map(Spanned::span)),
            ("scale", rf.scale.as_ref().map(Spanned::span)),
            ("format", rf.format.as_ref().map(Spanned::span)),
            ("values", rf.values.as_ref().map(Spanned::span)),
            (
                "case_insensitive",
                rf.case_insensitive.as_ref().map(Spanned::span),
            ),
        ];
        for (key, span) in present {
            if let Some(span) = span {
                if !allowed.contains(&key) {
                    return Err(self.err(
                        span,
                        path(key),
                        format!("`{key}` does not apply to type `{type_name}`"),
                    ));
                }
            }
        }

        let field_type = match type_name {
            "string" => {
                if let (Some(min), Some(max)) = (&rf.min_length, &rf.max_length) {
                    if min.get_ref() > max.get_ref() {
                        return Err(self.err(
                            min.span(),
                            path("min_length"),
                            "min_length is greater than max_length",
                        ));
                    }
                }
                FieldType::String {
                    min_length: rf.min_length.map(Spanned::into_inner),
                    max_length: rf.max_length.map(Spanned::into_inner),
                }
            }
            "integer" => {
                if let (Some(min), Some(max)) = (&rf.min, &rf.max) {
                    if min.get_ref() > max.get_ref() {
                        return Err(self.err(min.span(), path("min"), "min is greater than max"));
                    }
                }
                FieldType::Integer {
                    min: rf.min.map(Spanned::into_inner),
                    max: rf.max.map(Spanned::into_inner),
                }
            }
            "decimal" => {
                if let Some(p) = &rf.precision {
                    if !(1..=MAX_DECIMAL_PRECISION).contains(p.get_ref()) {
                        return Err(self.err(
                            p.span(),
                            path("precision"),
                            format!("precision must be between 1 and {MAX_DECIMAL_PRECISION}"),
                        ));
                    }
                }
                if let Some(s) = &rf.scale {
                    let limit = rf
                        .precision
                        .as_ref()
                        .map_or(MAX_DECIMAL_PRECISION, |p| *p.get_ref());
                    if *s.get_ref() > limit {
                        return Err(self.err(
                            s.span(),
                            path("scale"),
                            format!("scale must be between 0 and the precision ({limit})"),
                        ));
                    }
                }
                FieldType::Decimal {
                    precision: rf.precision.map(Spanned::into_inner),
                    scale: rf.scale.map(Spanned::into_inner),
                }
            }
            "boolean" => FieldType::Boolean,
            "date" | "timestamp" => {
                let format = match rf.format {
                    Some(f) => {
                        check_strftime(f.get_ref(), type_name == "timestamp")
                            .map_err(|m| self.err(f.span(), path("format"), m))?;
                        Some(f.into_inner())
                    }
                    None => None,
                };
                if type_name == "date" {
                    FieldType::Date { format }
                } else {
                    FieldType::Timestamp { format }
                }
            }
            "enum" => {
                let Some(values) = rf.values else {
                    return Err(self.err(
                        rf.field_type.span(),
                        path("values"),
                        "an enum needs a `values` list",
                    ));
                };
                if values.get_ref().is_empty() {
                    return Err(self.err(
                        values.span(),
                        path("values"),
                        "an enum needs at least one value",
                    ));
                }
                let case_insensitive = rf.case_insensitive.is_some_and(|c| *c.get_ref());
                let mut seen: HashMap<String, usize> = HashMap::new();
                let mut out = Vec::with_capacity(values.get_ref().len());
                for (j, v) in values.into_inner().into_iter().enumerate() {
                    // Cells are trimmed before they are matched, and an empty cell is null.
                    // ASCII whitespace, as the validator trims (a no-break space is data).
                    let trimmed = v.get_ref().trim_matches(|c: char| c.is_ascii_whitespace());
                    if trimmed.is_empty() || trimmed != v.get_ref() {
                        return Err(self.err(
                            v.span(),
                            format!("fields[{i}].values[{j}]"),
                            "an enum value must not be empty or start or end with whitespace: values are \
                             matched after trimming, so it could never match",
                        ));
                    }
                    let key = if case_insensitive {
                        v.get_ref().to_lowercase()
                    } else {
                        v.get_ref().clone()
                    };
                    if let Some(first) = seen.insert(key, j) {
                        return Err(self.err(
                            v.span(),
                            format!("fields[{i}].values[{j}]"),
                            format!("duplicate enum value (also values[{first}])"),
                        ));
                    }
                    out.push(v.into_inner());
                }
                FieldType::Enum {
                    values: out,
                    case_insensitive,
                }
            }
            _ => FieldType::Json,
        };
        Ok(FieldSpec {
            name: rf.name.into_inner(),
            column: rf.column.map(Spanned::into_inner),
            field_type,
            required: rf.required,
            description: rf.description,
        })
    }
}

/// Rejects a chrono format string with an unknown specifier, and one no input could ever match: a date
/// written with the format must read back as that date (a timestamp: as that date and time), the way the
/// validator reads cells. `%Y` alone (no month or day) or a timestamp format without a time would otherwise
/// load and then reject every row of every file.
fn check_strftime(format: &str, timestamp: bool) -> Result<(), String> {
    use chrono::format::{Item, StrftimeItems};
    use std::fmt::Write;
    if format.is_empty() {
        return Err("the format must not be empty".into());
    }
    if StrftimeItems::new(format).any(|item| matches!(item, Item::Error)) {
        return Err("invalid chrono format string (see https://docs.rs/chrono/latest/chrono/format/strftime/)".into());
    }
    let zone_name =
        |item: &Item<'_>| matches!(item, Item::Fixed(chrono::format::Fixed::TimezoneName));
    if timestamp && StrftimeItems::new(format).any(|item| zone_name(&item)) {
        return Err(
            "`%Z` (a time zone name such as PST) cannot be read: it would be skipped and every time read as \
             UTC; use `%z` or `%:z` for an offset such as +0200 or +02:00"
                .into(),
        );
    }
    // 2024-05-17 13:45:30.123456789 +02:00: every field distinct, so nothing reads back by accident.
    let sample = chrono::NaiveDate::from_ymd_opt(2024, 5, 17)
        .and_then(|d| d.and_hms_nano_opt(13, 45, 30, 123_456_789))
        .zip(chrono::FixedOffset::east_opt(2 * 3600))
        .and_then(|(t, offset)| t.and_local_timezone(offset).single());
    let Some(sample) = sample else {
        return Ok(());
    };
    let mut text = String::new();
    if write!(text, "{}", sample.format(format)).is_err() {
        // Some items parse but cannot be written (`%#z`, the lenient offset): no sample, no check.
        return Ok(());
    }
    let reads_back = if timestamp {
        chrono::DateTime::parse_from_str(&text, format).is_ok()
            || chrono::NaiveDateTime::parse_from_str(&text, format).is_ok()
    } else {
        chrono::NaiveDate::parse_from_str(&text, format).is_ok()
    };
    if !reads_back {
        let what = if timestamp {
            "a date and a time of day"
        } else {
            "a year, a month and a day"
        };
        return Err(format!(
            "no value can match this format: it must read as {what} (2024-05-17 13:45:30 +02:00 written with it, `{text}`, does not read back)"
        ));
    }
    Ok(())
}
