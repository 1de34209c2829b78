//! Data templates: what a connector's files are expected to contain.
//!
//! A template is written in TOML (see `docs/templates.md` for the reference), checked once by
//! [`Template::from_toml`], and stored as JSON (it derives `Serialize`/`Deserialize` with the same field names as
//! the TOML form). The [`crate::validate::Validator`] binds a template to one file and turns records into typed
//! JSON rows.

mod parse;

use serde::{Deserialize, Serialize};

use crate::read::DelimitedOptions;
use crate::Format;

pub use parse::TemplateError;

/// The expected shape of the files of one connector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// Name of the template (shown in messages and the CLI).
    pub name: String,
    /// Free text for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The record format. `None`: chosen per file from its extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// The fields of a row, in output order.
    pub fields: Vec<FieldSpec>,
    /// Names of the fields (not columns) that identify a row. May be empty.
    #[serde(default)]
    pub primary_key: Vec<String>,
    /// What happens to columns (or JSON keys) the template does not declare.
    #[serde(default)]
    pub unknown_columns: UnknownColumns,
    /// When a file fails because of rejected rows.
    #[serde(default)]
    pub on_error: OnError,
    /// Options for CSV/TSV files.
    #[serde(default)]
    pub csv: CsvOptions,
}

impl Template {
    /// Parses and checks a template written in TOML.
    ///
    /// Every error names the line and column in `source` and the path of the offending value, e.g.
    /// `line 12, column 8: fields[3].type: unknown type `int`, expected one of ...`.
    pub fn from_toml(source: &str) -> Result<Template, TemplateError> {
        parse::from_toml(source)
    }

    /// The delimited-format options for a file of `format`: [`DelimitedOptions::for_format`] with the
    /// template's `[csv]` overrides (delimiter, quote, header) applied.
    pub fn delimited_options(&self, format: Format) -> DelimitedOptions {
        let mut options = DelimitedOptions::for_format(format);
        // `from_toml` guarantees ASCII; a template deserialized from elsewhere with a non-ASCII character
        // keeps the format's default rather than truncating the character to a wrong byte.
        if let Some(d) = self.csv.delimiter.and_then(ascii_byte) {
            options.delimiter = d;
        }
        if let Some(q) = self.csv.quote.and_then(ascii_byte) {
            options.quote = q;
        }
        options.has_header = self.csv.header;
        options
    }

    /// The keys of the output rows, in order (the field names).
    pub fn output_field_names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|f| f.name.as_str())
    }

    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&FieldSpec> {
        self.fields.iter().find(|f| f.name == name)
    }
}

fn ascii_byte(c: char) -> Option<u8> {
    u8::try_from(c).ok().filter(u8::is_ascii)
}

/// One field of a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldSpec {
    /// Output key of the field.
    pub name: String,
    /// Source column (CSV header) or key (JSON) when it differs from `name`. Matched trimmed and
    /// case-insensitively.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// The type and its constraints.
    #[serde(flatten)]
    pub field_type: FieldType,
    /// A required field rejects rows where it is missing or null.
    #[serde(default)]
    pub required: bool,
    /// Free text for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

impl FieldSpec {
    /// The column or key this field is read from: `column`, else `name`.
    pub fn source_column(&self) -> &str {
        self.column.as_deref().unwrap_or(&self.name)
    }
}

/// The type of a field, with its constraints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FieldType {
    /// UTF-8 text, output as a JSON string.
    String {
        /// Fewest characters (Unicode scalar values).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min_length: Option<u32>,
        /// Most characters (Unicode scalar values).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_length: Option<u32>,
    },
    /// A 64-bit signed integer, output as a JSON number.
    Integer {
        /// Smallest allowed value.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        min: Option<i64>,
        /// Largest allowed value.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max: Option<i64>,
    },
    /// An exact decimal number, output as a JSON string of its digits (never a float).
    Decimal {
        /// Most significant digits (1 to [`MAX_DECIMAL_PRECISION`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        precision: Option<u32>,
        /// Digits after the decimal point; the output always has exactly this many.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scale: Option<u32>,
    },
    /// `true` or `false`.
    Boolean,
    /// A calendar date, output as `YYYY-MM-DD`.
    Date {
        /// A chrono `strftime` format for the input; default ISO `YYYY-MM-DD`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        format: Option<String>,
    },
    /// An instant, output as RFC 3339 in UTC with a `Z`.
    Timestamp {
        /// A chrono `strftime` format for the input; default RFC 3339 or `YYYY-MM-DD HH:MM:SS[.fff]`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        format: Option<String>,
    },
    /// One of a fixed list of strings, output with the declared spelling.
    Enum {
        /// Allowed values (at least one).
        values: Vec<String>,
        /// Match ignoring case (Unicode lowercase).
        #[serde(default)]
        case_insensitive: bool,
    },
    /// Any JSON value, embedded in the row.
    Json,
}

/// The largest decimal precision a template may declare: 38 digits, what DynamoDB numbers hold.
pub const MAX_DECIMAL_PRECISION: u32 = 38;

impl FieldType {
    /// The type's name as written in templates.
    pub fn name(&self) -> &'static str {
        match self {
            Self::String { .. } => "string",
            Self::Integer { .. } => "integer",
            Self::Decimal { .. } => "decimal",
            Self::Boolean => "boolean",
            Self::Date { .. } => "date",
            Self::Timestamp { .. } => "timestamp",
            Self::Enum { .. } => "enum",
            Self::Json => "json",
        }
    }
}

/// What happens to columns (CSV) or keys (JSON) that the template does not declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownColumns {
    /// Dropped silently.
    #[default]
    Ignore,
    /// CSV: the file fails when its header has one. JSON: a row with one is rejected.
    Reject,
    /// Passed through under their original (trimmed) name: as a string from CSV, verbatim from JSON.
    Keep,
}

impl UnknownColumns {
    /// The name used in templates.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ignore => "ignore",
            Self::Reject => "reject",
            Self::Keep => "keep",
        }
    }
}

/// When rejected rows fail the whole file. By default rows are rejected and the import continues.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnError {
    /// The file fails as soon as more than this many rows are rejected (`0`: at the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rejected_rows: Option<u64>,
    /// The file fails when more than this fraction (0.0 to 1.0) of its rows were rejected: at its end, or
    /// earlier once [`OnError::ratio_min_rows`] rows were read (see [`OnError::exceeded_ratio_early`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rejected_ratio: Option<f64>,
    /// Rows read before the ratio is checked as rows are read; `None`: [`DEFAULT_RATIO_MIN_ROWS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ratio_min_rows: Option<u64>,
    /// Validate the whole file before writing any row, so a file that fails its thresholds writes nothing,
    /// even to a destination whose writes are visible at once (DynamoDB). Costs one more read of the file.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub validate_first: bool,
}

/// Rows read before `max_rejected_ratio` is checked as rows are read, unless the template says otherwise.
pub const DEFAULT_RATIO_MIN_ROWS: u64 = 1_000;

impl OnError {
    /// True when `rejected` rows are more than `max_rejected_rows` allows. Checked after every rejected row.
    pub fn exceeded_rows(&self, rejected: u64) -> bool {
        self.max_rejected_rows.is_some_and(|max| rejected > max)
    }

    /// True when `rejected` of `read` rows is a larger fraction than `max_rejected_ratio`: the exact rule,
    /// applied to the whole file at its end. A file with no rows never exceeds it.
    pub fn exceeded_ratio(&self, rejected: u64, read: u64) -> bool {
        match self.max_rejected_ratio {
            Some(max) if read > 0 => rejected as f64 / read as f64 > max,
            _ => false,
        }
    }

    /// The ratio rule applied while the file is read (after each rejected row, counting the earlier pieces):
    /// [`OnError::exceeded_ratio`] over the rows read so far, once at least [`OnError::ratio_min_rows`] were
    /// read. Earlier rows are too few to judge by; a file with fewer rows is judged at its end only. This can
    /// fail a file whose bad rows come first and that would pass at its end: the price of not writing (or
    /// reading) the rest of a file that is mostly bad.
    pub fn exceeded_ratio_early(&self, rejected: u64, read: u64) -> bool {
        read >= self.ratio_min_rows() && self.exceeded_ratio(rejected, read)
    }

    /// Rows read before the ratio is checked as rows are read.
    pub fn ratio_min_rows(&self) -> u64 {
        self.ratio_min_rows.unwrap_or(DEFAULT_RATIO_MIN_ROWS)
    }

    /// What to name when the ratio fails a file: the limit, and whether it was judged early.
    pub fn ratio_limit(&self, at_end: bool) -> String {
        let ratio = self.max_rejected_ratio.unwrap_or_default();
        if at_end {
            format!("max_rejected_ratio = {ratio}")
        } else {
            format!(
                "max_rejected_ratio = {ratio}, checked as rows are read once {} were read",
                self.ratio_min_rows()
            )
        }
    }
}

/// Options for CSV and TSV files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CsvOptions {
    /// Field delimiter (ASCII). Default: `,` for CSV, tab for TSV.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<char>,
    /// Quote character (ASCII). Default `"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quote: Option<char>,
    /// Whether the first record is a header row. Without one, fields map to columns by position.
    pub header: bool,
    /// Whether an empty cell of a `string` field is null (the default) or the empty string. An empty cell of
    /// any other type is always null.
    pub empty_as_null: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            delimiter: None,
            quote: None,
            header: true,
            empty_as_null: true,
        }
    }
}

/// Trims and lowercases a column name or key the way header matching compares them.
pub fn normalize_column(name: &str) -> String {
    let trimmed = name.trim();
    if trimmed.is_ascii() {
        trimmed.to_ascii_lowercase()
    } else {
        trimmed.to_lowercase()
    }
}
