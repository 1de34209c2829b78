//! Row-level errors: what goes into the error report. They never carry cell values.

use serde::{Deserialize, Serialize};

/// Machine-readable reason a row was rejected. Serialized in `snake_case` in error reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The record is larger than `max_record_bytes`; it was skipped unread.
    RecordTooLarge,
    /// The record has more fields than `max_columns`.
    TooManyColumns,
    /// A CSV/TSV quoted field is still open at the end of the file: everything from its opening quote on
    /// was read as one value, so the record is rejected rather than imported wrong.
    UnterminatedQuote,
    /// A CSV/TSV quoted field has text after its closing quote (`"a"b`, `"a" ,`): RFC 4180 allows none, and
    /// where the value ends is a guess.
    TextAfterQuote,
    /// A CSV record has a different number of fields than the header.
    FieldCountMismatch,
    /// The record is not valid JSON.
    InvalidJson,
    /// The JSON record is valid JSON but not an object.
    NotAnObject,
    /// JSON nesting deeper than `max_json_depth`.
    JsonTooDeep,
    /// A field's bytes are not valid UTF-8.
    InvalidUtf8,
    /// A required field is absent from the record.
    MissingField,
    /// A required field is null (JSON `null`, or an empty CSV cell).
    NullValue,
    /// The value has the wrong JSON type for the field (e.g. an object for an integer).
    InvalidType,
    /// Not an integer, or out of the 64-bit range.
    InvalidInteger,
    /// Not an exact decimal number.
    InvalidDecimal,
    /// Not a recognised boolean.
    InvalidBoolean,
    /// Not a valid date.
    InvalidDate,
    /// Not a valid timestamp.
    InvalidTimestamp,
    /// Not one of the enum's allowed values.
    InvalidEnum,
    /// Not valid JSON text in a `json` field.
    InvalidJsonValue,
    /// A constraint (length, range, precision, scale) is not met.
    ConstraintViolated,
    /// A column or key that the template does not declare, with `unknown_columns = "reject"`.
    UnknownColumn,
    /// The same column appears twice in one JSON record after header normalisation.
    DuplicateColumn,
    /// The destination refused the row (a webhook receiver answered a 4xx); the message gives the status and
    /// an excerpt of the answer.
    DestinationRejected,
}

impl ErrorCode {
    /// The `snake_case` name used in error reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RecordTooLarge => "record_too_large",
            Self::TooManyColumns => "too_many_columns",
            Self::UnterminatedQuote => "unterminated_quote",
            Self::TextAfterQuote => "text_after_quote",
            Self::FieldCountMismatch => "field_count_mismatch",
            Self::InvalidJson => "invalid_json",
            Self::NotAnObject => "not_an_object",
            Self::JsonTooDeep => "json_too_deep",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::MissingField => "missing_field",
            Self::NullValue => "null_value",
            Self::InvalidType => "invalid_type",
            Self::InvalidInteger => "invalid_integer",
            Self::InvalidDecimal => "invalid_decimal",
            Self::InvalidBoolean => "invalid_boolean",
            Self::InvalidDate => "invalid_date",
            Self::InvalidTimestamp => "invalid_timestamp",
            Self::InvalidEnum => "invalid_enum",
            Self::InvalidJsonValue => "invalid_json_value",
            Self::ConstraintViolated => "constraint_violated",
            Self::UnknownColumn => "unknown_column",
            Self::DuplicateColumn => "duplicate_column",
            Self::DestinationRejected => "destination_rejected",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reason a row was rejected. A rejected row may have several.
///
/// `message` describes the problem without quoting the cell's value: rows may hold personal data, and error
/// messages end up in logs. The position in the file (carried next to it) lets the owner find the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowError {
    /// The template field's column name (or the key seen in the file), when the error is about one column.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable explanation, without the value.
    pub message: String,
}

impl RowError {
    /// An error about the whole record.
    pub fn record(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            column: None,
            code,
            message: message.into(),
        }
    }

    /// An error about one column.
    pub fn column(column: impl Into<String>, code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            column: Some(column.into()),
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.column {
            Some(c) => write!(f, "column {c:?}: {} ({})", self.message, self.code),
            None => write!(f, "{} ({})", self.message, self.code),
        }
    }
}
