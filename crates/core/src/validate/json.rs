//! The JSON path: one JSON record parsed into its entries (borrowed from the record), matched to the fields
//! by key, and each value checked and written into the row.

use std::borrow::Cow;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::compile::field_name;
use super::json_string::{
    check_length, write_compact_json, write_json_string, write_json_text, write_string,
};
use super::write::{null_value, push_fail, put_plan_key, put_sep};
use super::{write_typed, Fail, Kind, Plan, Validator, NO_ENTRY};
use crate::json_out::Out;
use crate::template::{normalize_column, UnknownColumns};
use crate::{ErrorCode, RowError};

impl Validator {
    // Its own function, as the CSV path is: inlined into one, each would make the other's code worse.
    #[inline(never)]
    pub(super) fn validate_json(
        &mut self,
        bytes: &[u8],
        out: &mut Out<'_>,
        errors: &mut Vec<RowError>,
    ) {
        let mut entries = recycle(std::mem::take(&mut self.spare));
        match parse_object(bytes, &mut entries) {
            Ok(()) => self.write_json_record(&entries, out, errors),
            Err(e) => errors.push(e),
        }
        self.spare = recycle(entries);
    }

    fn write_json_record(
        &mut self,
        entries: &[(Cow<'_, str>, &RawValue)],
        out: &mut Out<'_>,
        errors: &mut Vec<RowError>,
    ) {
        self.slots.fill(NO_ENTRY);
        self.kept_entries.clear();
        let mut guess = 0;
        for (idx, (key, _)) in entries.iter().enumerate() {
            let field = self.lookup(key, guess);
            match field {
                Some(f) => {
                    guess = f + 1;
                    if self.slots[f] != NO_ENTRY {
                        errors.push(RowError::column(
                            key.trim(),
                            ErrorCode::DuplicateColumn,
                            format!(
                                "the object has two keys for the column `{}` (keys match trimmed and ignoring case)",
                                self.plan[f].column
                            ),
                        ));
                    } else {
                        self.slots[f] = idx;
                    }
                }
                None => match self.unknown {
                    UnknownColumns::Ignore => {}
                    UnknownColumns::Reject => errors.push(RowError::column(
                        key.trim(),
                        ErrorCode::UnknownColumn,
                        "the template does not declare this key (unknown_columns = \"reject\")",
                    )),
                    UnknownColumns::Keep => self.kept_entries.push(idx),
                },
            }
        }
        out.push(b'{');
        let mut sep = false;
        for (p, &slot) in self.plan.iter().zip(&self.slots) {
            if slot == NO_ENTRY {
                if p.required {
                    errors.push(RowError::column(
                        &*p.column,
                        ErrorCode::MissingField,
                        "the required key is missing",
                    ));
                }
                continue;
            }
            write_json_value(p, entries[slot].1.get(), out, &mut sep, errors);
        }
        for (n, &idx) in self.kept_entries.iter().enumerate() {
            let key = entries[idx].0.trim();
            let collides = self
                .plan
                .iter()
                .any(|p| field_name(&p.key) == key.as_bytes())
                || self.kept_entries[..n]
                    .iter()
                    .any(|&other| normalize_column(&entries[other].0) == normalize_column(key));
            if collides {
                errors.push(RowError::column(
                    key,
                    ErrorCode::DuplicateColumn,
                    "the kept key has the name of a template field or of another kept key",
                ));
                continue;
            }
            put_sep(out, &mut sep);
            write_json_string(out, key.as_bytes()).ok();
            out.push(b':');
            write_compact_json(out, entries[idx].1.get().as_bytes());
        }
        out.push(b'}');
    }

    /// The field fed by JSON key `key`: the field after the previous match first (objects usually list keys
    /// in template order), then an exact match, then the trimmed, lowercased match.
    fn lookup(&mut self, key: &str, guess: usize) -> Option<usize> {
        if let Some(p) = self.plan.get(guess) {
            if &*p.column == key {
                return Some(guess);
            }
        }
        if let Some(&f) = self.exact.get(key) {
            return Some(f);
        }
        self.norm_buf.clear();
        let trimmed = key.trim();
        if trimmed.is_ascii() {
            self.norm_buf
                .extend(trimmed.chars().map(|c| c.to_ascii_lowercase()));
        } else {
            self.norm_buf
                .extend(trimmed.chars().flat_map(char::to_lowercase));
        }
        self.normalized.get(self.norm_buf.as_str()).copied()
    }
}

fn json_kind(first: u8) -> &'static str {
    match first {
        b'{' => "an object",
        b'[' => "an array",
        b'"' => "a string",
        b't' | b'f' => "a boolean",
        b'n' => "null",
        _ => "a number",
    }
}

fn write_json_value(
    p: &Plan,
    raw: &str,
    out: &mut Out<'_>,
    sep: &mut bool,
    errors: &mut Vec<RowError>,
) {
    let bytes = raw.as_bytes();
    let first = bytes.first().copied().unwrap_or(b'n');
    if first == b'n' {
        return null_value(p, "the required field is null", out, sep, errors);
    }
    let result = match &p.kind {
        Kind::Json => write_json_text(out, p, sep, bytes),
        Kind::String { min, max } => match first {
            b'"' => {
                put_plan_key(out, p, sep);
                write_raw_json_string(out, raw, *min, *max)
            }
            b'-' | b'0'..=b'9' => {
                // A number for a string field keeps its exact text (ids exported as numbers).
                put_plan_key(out, p, sep);
                write_string(out, bytes, *min, *max)
            }
            other => Err(Fail::new(
                ErrorCode::InvalidType,
                format!(
                    "expected a JSON string or number, found {}",
                    json_kind(other)
                ),
            )),
        },
        kind => match first {
            b'{' | b'[' => Err(Fail::new(
                ErrorCode::InvalidType,
                format!(
                    "expected a JSON string, number or boolean, found {}",
                    json_kind(first)
                ),
            )),
            b'"' => match decode_json_string(raw) {
                Some(text) => {
                    put_plan_key(out, p, sep);
                    write_typed(kind, text.as_bytes().trim_ascii(), out)
                }
                None => Err(Fail::new(
                    ErrorCode::InvalidUtf8,
                    "the string has an invalid escape",
                )),
            },
            _ => {
                put_plan_key(out, p, sep);
                write_typed(kind, bytes, out)
            }
        },
    };
    if let Err(fail) = result {
        push_fail(errors, p, fail);
    }
}

/// The contents of a JSON string literal (borrowed when it has no escape).
fn decode_json_string(raw: &str) -> Option<Cow<'_, str>> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(raw).ok().map(Cow::Owned)
}

/// Copies a JSON string literal (already valid JSON) after checking its escapes and length.
fn write_raw_json_string(
    out: &mut Out<'_>,
    raw: &str,
    min: Option<u32>,
    max: Option<u32>,
) -> Result<(), Fail> {
    let Some(text) = decode_json_string(raw) else {
        return Err(Fail::new(
            ErrorCode::InvalidUtf8,
            "the string has an invalid escape (a lone surrogate)",
        ));
    };
    check_length(&text, min, max)?;
    out.extend_from_slice(raw.as_bytes());
    Ok(())
}

type Entry<'a> = (Cow<'a, str>, &'a RawValue);

/// Empties a list of entries and hands back its allocation with another lifetime. `filter_map` over an empty
/// `vec::IntoIter` collects in place, so the buffer is reused rather than reallocated per record.
#[allow(clippy::unnecessary_filter_map)] // `filter_map` is what changes the lifetime without an element to map.
fn recycle<'a, 'b>(mut entries: Vec<Entry<'a>>) -> Vec<Entry<'b>> {
    entries.clear();
    entries.into_iter().filter_map(|_| None).collect()
}

/// Parses one JSON record into its (key, raw value) entries, borrowing from `bytes`.
fn parse_object<'a>(bytes: &'a [u8], entries: &mut Vec<Entry<'a>>) -> Result<(), RowError> {
    let first = bytes
        .iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\n' | b'\r' | b'\t'));
    if first != Some(b'{') {
        // Tell "valid JSON but not an object" from "not JSON", without ever quoting the value.
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Ok(_) => RowError::record(ErrorCode::NotAnObject, "expected a JSON object"),
                Err(e) => RowError::record(ErrorCode::InvalidJson, format!("invalid JSON: {e}")),
            },
        );
    }
    let invalid = |e: serde_json::Error| {
        RowError::record(ErrorCode::InvalidJson, format!("invalid JSON: {e}"))
    };
    // One SIMD check of the whole record, then parsing from `str`: serde_json then skips its own UTF-8 check
    // of every key and value, which cost more than the rest of the parse. Invalid UTF-8 is parsed from bytes
    // so that the error names where it is.
    match simdutf8::basic::from_utf8(bytes) {
        Ok(text) => {
            let mut de = serde_json::Deserializer::from_str(text);
            de.deserialize_map(ObjectVisitor { entries, key: None })
                .and_then(|()| de.end())
                .map_err(invalid)
        }
        Err(_) => {
            // Parsed from bytes, keeping the key being read: serde_json stops at the first invalid byte inside
            // a string ("invalid unicode code point"), and that key names the column, as for a CSV cell.
            let mut key = None;
            let mut de = serde_json::Deserializer::from_slice(bytes);
            let parsed = de
                .deserialize_map(ObjectVisitor {
                    entries,
                    key: Some(&mut key),
                })
                .and_then(|()| de.end());
            match parsed {
                Ok(()) => Ok(()),
                Err(e) if is_invalid_utf8(&e) => {
                    let at = simdutf8::compat::from_utf8(bytes)
                        .err()
                        .map_or(0, |u| u.valid_up_to());
                    let message = format!("the text is not valid UTF-8 (byte {at} of the record)");
                    Err(match key {
                        Some(key) => RowError::column(key, ErrorCode::InvalidUtf8, message),
                        None => RowError::record(ErrorCode::InvalidUtf8, message),
                    })
                }
                Err(e) => Err(invalid(e)),
            }
        }
    }
}

/// Whether serde_json failed on bytes that are not UTF-8 inside a string (its `InvalidUnicodeCodePoint`,
/// which it has no public variant for).
fn is_invalid_utf8(e: &serde_json::Error) -> bool {
    e.classify() == serde_json::error::Category::Syntax
        && e.to_string().starts_with("invalid unicode code point")
}

struct ObjectVisitor<'v, 'a> {
    entries: &'v mut Vec<Entry<'a>>,
    /// When given: the (trimmed) key whose value is being read, `None` while a key is being read.
    key: Option<&'v mut Option<String>>,
}

impl<'de> Visitor<'de> for ObjectVisitor<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        loop {
            if let Some(current) = self.key.as_deref_mut() {
                *current = None;
            }
            let Some(Key(key)) = map.next_key::<Key<'de>>()? else {
                return Ok(());
            };
            if let Some(current) = self.key.as_deref_mut() {
                *current = Some(key.trim().to_owned());
            }
            let value: &'de RawValue = map.next_value()?;
            self.entries.push((key, value));
        }
    }
}

/// An object key, borrowed unless it has escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recycled_entries_keep_their_allocation() {
        let mut v: Vec<Entry<'static>> = Vec::with_capacity(32);
        let cap = v.capacity();
        let raw: &'static RawValue = serde_json::from_str("1").expect("valid JSON");
        v.push((Cow::Borrowed("k"), raw));
        let short: Vec<Entry<'_>> = recycle(v);
        assert!(short.is_empty() && short.capacity() >= cap);
    }
}
