//! The CSV path, the hot path of an import: one delimited record's cells checked and written into the row.

use super::compile::{field_name, json_key};
use super::json_string::{
    check_length_of, write_json_string, write_json_text, write_plain_cell, write_string,
};
use super::write::{null_value, push_fail, put_key, put_plan_key};
use super::{write_typed, Fail, Kind, Plan, Shape, Validator};
use serde_json::value::RawValue;

use crate::bytes;
use crate::json_out::Out;
use crate::read::Fields;
use crate::template::UnknownColumns;
use crate::{ErrorCode, RowError};

impl Validator {
    pub(super) fn validate_fields(
        &mut self,
        fields: &Fields<'_>,
        out: &mut Out<'_>,
        errors: &mut Vec<RowError>,
    ) {
        let n = fields.len();
        let declared = self.plan.len();
        match self.shape {
            Shape::Header { width } if n != width => {
                errors.push(RowError::record(
                    ErrorCode::FieldCountMismatch,
                    format!("the record has {n} fields, the header has {width}"),
                ));
                return;
            }
            Shape::Positional if n < declared => {
                errors.push(RowError::record(
                    ErrorCode::FieldCountMismatch,
                    format!("the record has {n} fields, the template declares {declared}"),
                ));
                return;
            }
            Shape::Positional if n > declared && self.unknown == UnknownColumns::Reject => {
                errors.push(RowError::record(
                    ErrorCode::UnknownColumn,
                    format!(
                        "the record has {n} fields, the template declares {declared} (unknown_columns = \"reject\")"
                    ),
                ));
                return;
            }
            _ => {}
        }
        out.push(b'{');
        let mut sep = false;
        let empty_as_null = self.empty_as_null;
        let text = plain_text(fields);
        for p in &self.plan {
            let Some((cell, tail)) = p.source.and_then(|i| fields.get_with_tail(i)) else {
                // Absent from the header: optional (a required one fails the file at bind time). Omitted.
                continue;
            };
            write_csv_cell(p, cell, tail, text, empty_as_null, out, &mut sep, errors);
        }
        if !self.kept_columns.is_empty() {
            for (i, key) in &self.kept_columns {
                let cell = fields.get(*i).unwrap_or_default();
                write_kept_cell(key, cell, empty_as_null, out, &mut sep, errors);
            }
        } else if matches!(self.shape, Shape::Positional) && self.unknown == UnknownColumns::Keep {
            for i in declared..n {
                while self.positional_keys.len() <= i - declared {
                    let number = declared + self.positional_keys.len() + 1;
                    self.positional_keys
                        .push(json_key(&format!("column_{number}")));
                }
                let cell = fields.get(i).unwrap_or_default();
                write_kept_cell(
                    &self.positional_keys[i - declared],
                    cell,
                    empty_as_null,
                    out,
                    &mut sep,
                    errors,
                );
            }
        }
        out.push(b'}');
    }
}

/// What one scan of a whole delimited record found (see [`plain_text`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PlainText {
    /// Some field may need escaping or may not be valid UTF-8: each string field is checked on its own.
    Unknown,
    /// Every field is valid UTF-8 with nothing to escape; `ascii` when every byte is ASCII.
    Plain { ascii: bool },
}

/// Scans a delimited record's text once for what JSON strings must escape and for non-ASCII bytes, so that
/// string fields of a plain record (most of them) are copied as is.
#[inline]
fn plain_text(fields: &Fields<'_>) -> PlainText {
    let text = fields.text();
    let flags = fields
        .text_flags()
        .unwrap_or_else(|| bytes::text_flags(text));
    if flags.escape {
        return PlainText::Unknown;
    }
    if !flags.non_ascii {
        return PlainText::Plain { ascii: true };
    }
    // Valid as a whole, and no field starts or ends in the middle of a character: then every field is valid
    // on its own.
    let valid = simdutf8::basic::from_utf8(text).is_ok() && fields.on_char_boundaries();
    if valid {
        PlainText::Plain { ascii: false }
    } else {
        PlainText::Unknown
    }
}

#[inline]
#[allow(clippy::too_many_arguments)]
fn write_csv_cell(
    p: &Plan,
    cell: &[u8],
    tail: &[u8],
    text: PlainText,
    empty_as_null: bool,
    out: &mut Out<'_>,
    sep: &mut bool,
    errors: &mut Vec<RowError>,
) {
    const EMPTY: &str = "the required field is empty (an empty cell is null)";
    let result = match &p.kind {
        Kind::String { min, max } => {
            if cell.is_empty() && empty_as_null {
                return null_value(p, EMPTY, out, sep, errors);
            }
            put_plan_key(out, p, sep);
            match text {
                PlainText::Plain { ascii } => {
                    write_plain_cell(out, cell, tail);
                    check_length_of(cell, ascii, *min, *max)
                }
                PlainText::Unknown => write_string(out, cell, *min, *max),
            }
        }
        Kind::Json => {
            let text = cell.trim_ascii();
            if text.is_empty() {
                return null_value(p, EMPTY, out, sep, errors);
            }
            // The same nesting limit as a JSON record: deeper text would be written out for every reader of
            // the output to choke on.
            let max_depth = crate::Limits::DEFAULT_MAX_JSON_DEPTH;
            if crate::read::jsonl::exceeds_depth(text, max_depth) {
                push_fail(
                    errors,
                    p,
                    Fail::new(
                        ErrorCode::JsonTooDeep,
                        format!("JSON text nested deeper than {max_depth} levels"),
                    ),
                );
                return;
            }
            match serde_json::from_slice::<&RawValue>(text) {
                Ok(raw) if raw.get() == "null" => {
                    return null_value(p, "the required field is JSON null", out, sep, errors);
                }
                Ok(raw) => write_json_text(out, p, sep, raw.get().as_bytes()),
                Err(e) => Err(Fail::new(
                    ErrorCode::InvalidJsonValue,
                    format!("expected JSON text: {e}"),
                )),
            }
        }
        kind => {
            let text = cell.trim_ascii();
            if text.is_empty() {
                return null_value(p, EMPTY, out, sep, errors);
            }
            put_plan_key(out, p, sep);
            write_typed(kind, text, out)
        }
    };
    if let Err(fail) = result {
        push_fail(errors, p, utf8_first(fail, cell));
    }
}

/// A cell that is not UTF-8 is reported as such (`invalid_utf8`, as a JSON record's would be), not as
/// whatever its type made of the bytes (`invalid_integer`). Only on the error path.
#[cold]
fn utf8_first(fail: Fail, cell: &[u8]) -> Fail {
    if fail.code != ErrorCode::InvalidUtf8 && std::str::from_utf8(cell).is_err() {
        Fail::new(ErrorCode::InvalidUtf8, "the text is not valid UTF-8")
    } else {
        fail
    }
}

fn write_kept_cell(
    key: &[u8],
    cell: &[u8],
    empty_as_null: bool,
    out: &mut Out<'_>,
    sep: &mut bool,
    errors: &mut Vec<RowError>,
) {
    put_key(out, key, sep);
    if cell.is_empty() && empty_as_null {
        out.extend_from_slice(b"null");
    } else if write_json_string(out, cell).is_err() {
        let name = String::from_utf8_lossy(field_name(key)).into_owned();
        errors.push(RowError::column(
            name,
            ErrorCode::InvalidUtf8,
            "the text is not valid UTF-8",
        ));
    }
}
