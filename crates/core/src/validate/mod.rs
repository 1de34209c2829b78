//! Typed validation: binds a [`Template`](crate::template::Template) to one file and turns each record into a
//! typed JSON object.
//!
//! The CSV path is the hot path of an import. Everything that can be decided once per file is decided in
//! [`Validator::new`] (which column feeds which field, the JSON bytes of every output key, enum spellings), so
//! validating a row allocates nothing in the steady state: cells are parsed by hand and written straight into
//! the batch ([`Validator::validate_into`]), in room the batch keeps initialised, with the write position in a
//! register (see `json_out`). Allocation happens only on the error path (messages) and, for JSON records, for
//! keys or strings that contain escapes.
//!
//! What a row costs is mostly branches the CPU cannot predict, because they follow the data: the length of a
//! cell, which enum value or boolean a row holds, whether a timestamp has an offset. Short keys and cells are
//! therefore copied as fixed-size blocks, booleans are matched without early exits, a short enum list is
//! searched with one probe of a collision-free hash, integers of up to eight digits are parsed in one word, a
//! timestamp's date and time in three, and UTC and same-day timestamps share one path.
//!
//! Error messages never contain a cell's value: rows may hold personal data, and messages end up in logs and
//! reports. They say what was expected instead.
//!
//! The module is split by concern: `compile` (a template bound to one file's header: the plan), `csv` and
//! `json` (the two record paths), `scalars` (integers, decimals, booleans), `enums`, `time` (dates and
//! timestamps), `json_string` (string literals and embedded JSON written out) and `write` (the short copies
//! a row is made of). The byte-level scans they use are in `crate::bytes`.

mod compile;
mod csv;
mod enums;
mod json;
mod json_string;
mod scalars;
mod time;
mod write;

use std::borrow::Cow;
use std::collections::HashMap;

use serde_json::value::RawValue;

use self::enums::{write_enum, EnumValue, WordIndex};
use self::scalars::{write_boolean, write_decimal, write_integer};
use self::time::{write_date, write_timestamp};
use self::write::WINDOW;
use crate::json_out::Out;
use crate::read::RecordBody;
use crate::sink::RowBatch;
use crate::template::UnknownColumns;
use crate::{ErrorCode, Position, RowError};

/// A file that cannot be validated against the template at all (decided from its header, before any row).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateMismatch {
    /// The header has no column for a required field.
    #[error("the header has no column `{column}` for the required field `{field}`")]
    MissingColumn {
        /// The template field.
        field: String,
        /// The column it reads from.
        column: String,
    },
    /// The header has columns the template does not declare, and `unknown_columns = "reject"`.
    #[error(
        "the header has {} column(s) the template does not declare (unknown_columns = \"reject\"): {}",
        .columns.len(), quote_list(.columns)
    )]
    UnknownColumns {
        /// The unknown columns, as written in the header (trimmed).
        columns: Vec<String>,
    },
    /// Two header columns are the same column once trimmed and lowercased, and the column is used.
    #[error("column `{column}` appears twice in the header (columns {first} and {second}, counting from 1)")]
    DuplicateColumn {
        /// The column, as written the second time (trimmed).
        column: String,
        /// 1-based position of the first occurrence.
        first: usize,
        /// 1-based position of the second occurrence.
        second: usize,
    },
    /// With `unknown_columns = "keep"`, an unknown column has the same name as a template field's output key.
    #[error("the kept unknown column `{column}` has the same name as a template field")]
    KeptColumnCollides {
        /// The column.
        column: String,
    },
}

fn quote_list(items: &[String]) -> String {
    items
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One field, compiled for a file.
#[derive(Debug)]
struct Plan {
    /// `,"name":` — the output key with a leading comma (skipped for the first key written).
    key: Box<[u8]>,
    /// The key padded with zeros, when it has at most [`WINDOW`] bytes: written with one fixed-size copy.
    key_block: Option<[u8; WINDOW + 1]>,
    /// `,"name":null`.
    null: Box<[u8]>,
    /// The source column, for error reports.
    column: Box<str>,
    /// CSV: index of the column in the record; `None` when the header lacks it (an optional field).
    source: Option<usize>,
    required: bool,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    String {
        min: Option<u32>,
        max: Option<u32>,
    },
    Integer {
        min: i64,
        max: i64,
    },
    Decimal {
        precision: Option<u32>,
        scale: Option<u32>,
    },
    Boolean,
    Date {
        format: Option<Box<str>>,
    },
    Timestamp {
        format: Option<Box<str>>,
    },
    Enum {
        values: Box<[EnumValue]>,
        case_insensitive: bool,
        /// The values' words by hash, when there are few enough of them.
        index: Option<WordIndex>,
    },
    Json,
}

/// How CSV records map to fields.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// Records must have exactly `width` fields (the header's).
    Header { width: usize },
    /// No header: field `i` is column `i`; extra columns are unknown columns.
    Positional,
    /// JSON records.
    Json,
}

/// Why one value is rejected.
struct Fail {
    code: ErrorCode,
    message: Cow<'static, str>,
}

impl Fail {
    fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// A template bound to one file: validates its records one by one.
#[derive(Debug)]
pub struct Validator {
    plan: Vec<Plan>,
    shape: Shape,
    unknown: UnknownColumns,
    empty_as_null: bool,
    /// CSV with a header and `unknown_columns = "keep"`: (column index, `,"name":`).
    kept_columns: Vec<(usize, Box<[u8]>)>,
    /// Header-less CSV with `keep`: `,"column_N":` keys, grown on demand.
    positional_keys: Vec<Box<[u8]>>,
    /// JSON: declared source column → field index (exact-match fast path).
    exact: HashMap<Box<str>, usize>,
    /// JSON: normalised source column → field index.
    normalized: HashMap<String, usize>,
    norm_buf: String,
    /// JSON: entry index feeding each field for the current record (`usize::MAX`: none).
    slots: Vec<usize>,
    /// JSON: entries kept under `unknown_columns = "keep"`.
    kept_entries: Vec<usize>,
    /// JSON: the reusable list of an object's entries, empty between records (see `json::recycle`).
    spare: Vec<(Cow<'static, str>, &'static RawValue)>,
    /// Room for a row besides what grows with the record (see [`Validator::room_hint`]): every key, and
    /// room for a value and a write window per field.
    fixed_room: usize,
}

const NO_ENTRY: usize = usize::MAX;

/// What writing one record's row found.
enum Wrote {
    /// The row, this many bytes long.
    Row(usize),
    /// The record is rejected; the reasons are in the error list.
    Rejected,
    /// The row did not fit the room given.
    NoRoom,
}

impl Validator {
    /// Validates one record. On success appends exactly one JSON object (no trailing newline) to `out` and
    /// returns true. On failure leaves `out` as it was, pushes every reason into `errors` (all field errors of
    /// the row, not only the first) and returns false. `RecordBody::Invalid(e)` → push e, return false.
    pub fn validate(
        &mut self,
        body: &RecordBody<'_>,
        out: &mut Vec<u8>,
        errors: &mut Vec<RowError>,
    ) -> bool {
        let start = out.len();
        let mut room = self.room_hint(body);
        loop {
            out.resize(start + room, 0);
            match self.write_record(body, out.get_mut(start..).unwrap_or_default(), errors) {
                Wrote::Row(n) => {
                    out.truncate(start + n);
                    return true;
                }
                Wrote::Rejected => {
                    out.truncate(start);
                    return false;
                }
                Wrote::NoRoom => room = room.saturating_mul(2),
            }
        }
    }

    /// Validates one record as [`Validator::validate`] does, appending an accepted row to `rows` (at
    /// `position`). The row is written straight into the batch's initialised buffer, so nothing is zeroed or
    /// resized per row.
    pub fn validate_into(
        &mut self,
        body: &RecordBody<'_>,
        rows: &mut RowBatch,
        position: Position,
        errors: &mut Vec<RowError>,
    ) -> bool {
        let mut room = self.room_hint(body);
        loop {
            match self.write_record(body, rows.room(room), errors) {
                Wrote::Row(n) => {
                    rows.commit_next(n, position);
                    return true;
                }
                Wrote::Rejected => return false,
                Wrote::NoRoom => room = room.saturating_mul(2),
            }
        }
    }

    /// Room that fits a record's row in all but unusual cases (many escapes, long decimals): a row that
    /// does not fit is written again with twice the room.
    #[inline]
    fn room_hint(&self, body: &RecordBody<'_>) -> usize {
        match body {
            RecordBody::Fields(fields) => {
                2 * fields.text().len() + self.fixed_room + 48 * fields.len()
            }
            RecordBody::Json(bytes) => 2 * bytes.len() + self.fixed_room,
            RecordBody::Invalid(_) => 0,
        }
    }

    /// Writes one record's row at the start of `buf`.
    #[inline]
    fn write_record(
        &mut self,
        body: &RecordBody<'_>,
        buf: &mut [u8],
        errors: &mut Vec<RowError>,
    ) -> Wrote {
        let before = errors.len();
        let mut out = Out::new(buf);
        match body {
            RecordBody::Invalid(e) => {
                errors.push(e.clone());
                return Wrote::Rejected;
            }
            RecordBody::Fields(fields) => self.validate_fields(fields, &mut out, errors),
            RecordBody::Json(bytes) => self.validate_json(bytes, &mut out, errors),
        }
        if out.is_full() {
            // The reasons found are found again with more room.
            errors.truncate(before);
            Wrote::NoRoom
        } else if errors.len() > before {
            Wrote::Rejected
        } else {
            Wrote::Row(out.len())
        }
    }
}

/// Writes a value of a non-string, non-json type from its (trimmed) text. Each type is its own function, kept
/// out of line: a small function saves only the registers it uses, where one function for every type paid for
/// the largest on every value.
#[inline]
fn write_typed(kind: &Kind, text: &[u8], out: &mut Out<'_>) -> Result<(), Fail> {
    match kind {
        Kind::Integer { min, max } => write_integer(out, text, *min, *max),
        Kind::Decimal { precision, scale } => write_decimal(out, text, *precision, *scale),
        Kind::Boolean => write_boolean(out, text),
        Kind::Date { format } => write_date(out, text, format.as_deref()),
        Kind::Timestamp { format } => write_timestamp(out, text, format.as_deref()),
        Kind::Enum {
            values,
            case_insensitive,
            index,
        } => write_enum(out, text, values, index.as_ref(), *case_insensitive),
        // Handled by the callers (strings keep their whitespace; JSON is parsed, not matched).
        Kind::String { .. } | Kind::Json => Ok(()),
    }
}
