//! The body of the `validator` fuzz target, shared with the stable smoke test
//! (`crates/core/tests/readers_fuzz_smoke.rs`): the input's first bytes choose a template, the rest is read as
//! a file of that template's format, and every record is validated.
//!
//! Checked for every record: it is accepted (one JSON object appended, on one line, no reason given) or
//! rejected (nothing appended, at least one reason, each with a message), at a position that moves forward;
//! an accepted row has only the template's fields (or kept columns), each value of its field's JSON type; and
//! validating the same record again gives the same answer, byte for byte. File errors and a header that does
//! not fit the template are expected outcomes.

use std::io::Cursor;

use s3_importer_core::read::{open_reader, ReadError, StartAt};
use s3_importer_core::template::{FieldType, Template, UnknownColumns};
use s3_importer_core::validate::Validator;
use s3_importer_core::{Format, Limits, RowError};
use serde_json::{Map, Value};

/// Field declarations a template is assembled from: every type, with and without its constraints.
pub const FIELD_TYPES: &[&str] = &[
    "type = \"string\"",
    "type = \"string\"\nmin_length = 1\nmax_length = 3",
    "type = \"integer\"",
    "type = \"integer\"\nmin = -5\nmax = 100",
    "type = \"decimal\"",
    "type = \"decimal\"\nprecision = 5\nscale = 2",
    "type = \"boolean\"",
    "type = \"date\"",
    "type = \"date\"\nformat = \"%d.%m.%Y\"",
    "type = \"timestamp\"",
    "type = \"timestamp\"\nformat = \"%Y-%m-%d %H:%M:%S%.f %z\"",
    "type = \"enum\"\nvalues = [\"a\", \"B\", \"ccc\", \"déjà\"]",
    "type = \"enum\"\nvalues = [\"a\", \"B\", \"ccc\", \"déjà\"]\ncase_insensitive = true",
    "type = \"json\"",
];

/// Bytes of the input that choose the template (the rest is the file).
pub const TEMPLATE_BYTES: usize = 6;

/// The format chosen by the low two bits of the first byte.
pub fn format_of(selector: u8) -> Format {
    [Format::Csv, Format::Tsv, Format::Json, Format::Jsonl][usize::from(selector & 3)]
}

/// Tight limits, so that limit paths are reached with small inputs.
pub fn limits() -> Limits {
    Limits {
        max_record_bytes: 256,
        max_json_depth: 8,
        max_columns: 8,
        max_decompressed_bytes: 1 << 20,
    }
}

/// The template the first [`TEMPLATE_BYTES`] bytes choose: the format and the file options from the first
/// two, then up to four fields `f0`.. read from columns `c0`.. (a type each from [`FIELD_TYPES`], required or
/// not). `None` when the options are a combination the template parser rejects.
pub fn template_of(head: &[u8; TEMPLATE_BYTES]) -> Option<Template> {
    let [options, shape, types @ ..] = *head;
    let unknown = ["ignore", "reject", "keep"][usize::from(options >> 2 & 3) % 3];
    let mut source = format!(
        "name = \"fuzz\"\nformat = \"{}\"\nunknown_columns = \"{unknown}\"\n[csv]\nheader = {}\nempty_as_null = {}\n",
        format_of(options).as_str(),
        options & 16 == 0,
        options & 32 == 0,
    );
    let fields = 1 + usize::from(shape & 3);
    for (i, t) in types.iter().take(fields).enumerate() {
        let spec = FIELD_TYPES[usize::from(*t) % FIELD_TYPES.len()];
        let required = shape >> (4 + i) & 1 == 1;
        source.push_str(&format!(
            "[[fields]]\nname = \"f{i}\"\ncolumn = \"c{i}\"\n{spec}\nrequired = {required}\n"
        ));
    }
    Template::from_toml(&source).ok()
}

/// What validating a whole input found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// Records accepted.
    pub accepted: u64,
    /// Records rejected.
    pub rejected: u64,
}

/// Validates every record of `data` (template bytes, then the file); `Err` names the invariant that broke.
pub fn check(data: &[u8]) -> Result<Outcome, String> {
    let mut outcome = Outcome::default();
    let Some((head, file)) = data.split_first_chunk::<TEMPLATE_BYTES>() else {
        return Ok(outcome);
    };
    let Some(template) = template_of(head) else {
        return Ok(outcome);
    };
    let format = format_of(head[0]);
    let limits = limits();
    let Ok(mut reader) = open_reader(
        Box::new(Cursor::new(file.to_vec())),
        format,
        template.delimited_options(format),
        &limits,
        &StartAt::default(),
    ) else {
        return Ok(outcome);
    };
    let Ok(mut validator) = Validator::new(&template, format, reader.header()) else {
        return Ok(outcome);
    };
    // A second validator, which sees every record twice: what one record leaves behind must not change the
    // answer for the next.
    let Ok(mut again) = Validator::new(&template, format, reader.header()) else {
        return Err("the same header bound once and not twice".into());
    };
    let mut out = Vec::new();
    let mut errors: Vec<RowError> = Vec::new();
    let mut last_byte = None;
    loop {
        let record = match reader.next_record() {
            Ok(Some(record)) => record,
            Ok(None) => break,
            Err(ReadError::Io { .. }) => return Err("an I/O error from an in-memory input".into()),
            Err(_) => break,
        };
        let position = record.position;
        if position.byte > file.len() as u64 || last_byte.is_some_and(|last| position.byte <= last)
        {
            return Err(format!("position {position} out of order"));
        }
        last_byte = Some(position.byte);
        let (start, reasons) = (out.len(), errors.len());
        let accepted = validator.validate(&record.body, &mut out, &mut errors);
        let row = &out[start..];
        let new_errors = &errors[reasons..];
        if accepted {
            outcome.accepted += 1;
            if !new_errors.is_empty() {
                return Err(format!(
                    "accepted at {position} with reasons {new_errors:?}"
                ));
            }
            check_row(&template, row).map_err(|e| format!("row at {position}: {e}"))?;
        } else {
            outcome.rejected += 1;
            if !row.is_empty() || new_errors.is_empty() {
                return Err(format!(
                    "rejected at {position} with {} bytes written and reasons {new_errors:?}",
                    row.len()
                ));
            }
            if let Some(e) = new_errors.iter().find(|e| e.message.is_empty()) {
                return Err(format!("a reason without a message at {position}: {e:?}"));
            }
        }
        let (mut out2, mut errors2) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            out2.clear();
            errors2.clear();
            let accepted2 = again.validate(&record.body, &mut out2, &mut errors2);
            if (accepted2, &out2[..], &errors2[..]) != (accepted, row, new_errors) {
                return Err(format!("validated again at {position}, a different answer"));
            }
        }
        // Keep the buffers small; what is checked is each record's part.
        if out.len() > 1 << 16 {
            out.clear();
        }
        errors.clear();
    }
    Ok(outcome)
}

/// An accepted row: one JSON object on one line, its keys the template's fields (or, kept, other columns),
/// each field's value of its type's JSON form.
fn check_row(template: &Template, row: &[u8]) -> Result<(), String> {
    if row.contains(&b'\n') {
        return Err("a line feed inside the row".into());
    }
    let object: Map<String, Value> = match serde_json::from_slice(row) {
        Ok(object) => object,
        // Known gap, kept as it is: the value of a kept JSON key is copied as written, so a lone surrogate
        // escape (`"\ud800"`, which strict readers refuse) reaches the row; declared fields reject it.
        Err(_) if template.unknown_columns == UnknownColumns::Keep && has_surrogate_escape(row) => {
            return Ok(())
        }
        Err(e) => return Err(format!("not a JSON object: {e}")),
    };
    for (key, value) in &object {
        let Some(field) = template.field(key) else {
            if template.unknown_columns == UnknownColumns::Keep {
                continue;
            }
            return Err(format!("key `{key}` is no field"));
        };
        if value.is_null() {
            if field.required {
                return Err(format!("required `{key}` is null"));
            }
            continue;
        }
        let typed = match &field.field_type {
            FieldType::String { .. } | FieldType::Decimal { .. } => value.is_string(),
            FieldType::Date { .. } | FieldType::Timestamp { .. } => value.is_string(),
            FieldType::Integer { min, max } => value
                .as_i64()
                .is_some_and(|v| min.is_none_or(|m| v >= m) && max.is_none_or(|m| v <= m)),
            FieldType::Boolean => value.is_boolean(),
            FieldType::Enum { values, .. } => value
                .as_str()
                .is_some_and(|v| values.iter().any(|x| x == v)),
            FieldType::Json => true,
        };
        if !typed {
            return Err(format!("`{key}` = {value} is not of its type"));
        }
    }
    for field in &template.fields {
        if field.required && !object.contains_key(&field.name) {
            return Err(format!("required `{}` is missing", field.name));
        }
    }
    Ok(())
}

/// Whether `row` has a `\uD800`..`\uDFFF` escape.
fn has_surrogate_escape(row: &[u8]) -> bool {
    row.windows(4).any(|w| {
        w[..2] == *b"\\u"
            && matches!(w[2], b'd' | b'D')
            && matches!(w[3], b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F')
    })
}
