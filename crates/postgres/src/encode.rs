//! Validated JSON rows to PostgreSQL's binary `COPY` format, typed by the template: the staging table's
//! columns are `record bigint` and then the template's fields with their column types ([`crate::ddl`]), so
//! the server stores each value as sent and parses nothing but the framing.
//!
//! Rows come from the validator, so each value has its template type's JSON form: an integer is a JSON
//! number, a decimal a string of digits, a date `YYYY-MM-DD`, a timestamp RFC 3339, a boolean a literal, a
//! `json` field any JSON value. A row is read key by key ([`serde_json::value::RawValue`], no map, no copy
//! of a string without escapes); a value of another form is refused with the record and the column, never
//! the value. Decimals are encoded exactly (base-10000 digits of their text, no float); the server applies
//! the column's precision and scale as it would to text.

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate};
use s3_importer_core::template::{FieldType, Template};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// The 19 bytes that open a binary COPY stream: signature, flags, header extension length.
pub const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The field count `-1` that closes a binary COPY stream.
pub const TRAILER: &[u8] = &[0xff, 0xff];

/// Seconds from the Unix epoch to PostgreSQL's (2000-01-01), and that day counted from 0001-01-01 (day 1).
const PG_EPOCH_SECS: i64 = 946_684_800;
const PG_EPOCH_DAYS_FROM_CE: i64 = 730_120;

/// How one field is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Int8,
    Numeric,
    Bool,
    Date,
    Timestamptz,
    Jsonb,
}

/// A value the encoder refused: which record and column, and what was expected (never the value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError {
    /// Record number.
    pub record: u64,
    /// Column (field name), empty when the row itself is not a JSON object.
    pub column: String,
    /// What was expected.
    pub reason: String,
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.column.is_empty() {
            write!(f, "record {}: {}", self.record, self.reason)
        } else {
            write!(
                f,
                "record {}, column {:?}: {}",
                self.record, self.column, self.reason
            )
        }
    }
}

impl std::error::Error for ValueError {}

/// Encodes rows of one template as binary COPY tuples `(record, field…)`.
#[derive(Debug, Clone)]
pub struct RowEncoder {
    names: Vec<String>,
    kinds: Vec<Kind>,
}

impl RowEncoder {
    /// The encoder of `template`'s rows.
    pub fn new(template: &Template) -> Self {
        let kind = |t: &FieldType| match t {
            FieldType::String { .. } | FieldType::Enum { .. } => Kind::Text,
            FieldType::Integer { .. } => Kind::Int8,
            FieldType::Decimal { .. } => Kind::Numeric,
            FieldType::Boolean => Kind::Bool,
            FieldType::Date { .. } => Kind::Date,
            FieldType::Timestamp { .. } => Kind::Timestamptz,
            FieldType::Json => Kind::Jsonb,
        };
        Self {
            names: template.fields.iter().map(|f| f.name.clone()).collect(),
            kinds: template
                .fields
                .iter()
                .map(|f| kind(&f.field_type))
                .collect(),
        }
    }

    /// Appends the tuple of `row` (one JSON object) as record `record` to `out`. On error `out` may hold
    /// part of the tuple: the caller drops the buffer.
    pub fn encode(&self, record: u64, row: &[u8], out: &mut Vec<u8>) -> Result<(), ValueError> {
        let fail = |column: &str, reason: String| ValueError {
            record,
            column: column.to_owned(),
            reason,
        };
        let mut slots: Vec<Option<&RawValue>> = vec![None; self.names.len()];
        let mut de = serde_json::Deserializer::from_slice(trim_newline(row));
        de.deserialize_map(RowVisitor {
            names: &self.names,
            slots: &mut slots,
        })
        .map_err(|e| fail("", format!("not a JSON object: {e}")))?;
        let fields = i16::try_from(self.names.len() + 1)
            .map_err(|_| fail("", "more than 32766 fields".into()))?;
        out.extend_from_slice(&fields.to_be_bytes());
        out.extend_from_slice(&8i32.to_be_bytes());
        out.extend_from_slice(&(record as i64).to_be_bytes());
        for ((name, kind), slot) in self.names.iter().zip(&self.kinds).zip(&slots) {
            match slot.map(|v| v.get()) {
                None | Some("null") => out.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(raw) => push_value(*kind, raw, out).map_err(|reason| fail(name, reason))?,
            }
        }
        Ok(())
    }
}

fn trim_newline(row: &[u8]) -> &[u8] {
    row.strip_suffix(b"\n").unwrap_or(row)
}

/// Reads an object's entries into the slot of each known key (the last value of a key given twice).
struct RowVisitor<'a, 'de> {
    names: &'a [String],
    slots: &'a mut [Option<&'de RawValue>],
}

impl<'de> Visitor<'de> for RowVisitor<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut next = 0;
        while let Some(index) = map.next_key_seed(KeySeed {
            names: self.names,
            hint: next,
        })? {
            let value: &'de RawValue = map.next_value()?;
            if let Some(slot) = index.and_then(|i| self.slots.get_mut(i)) {
                *slot = Some(value);
            }
            next = index.map_or(next, |i| i + 1);
        }
        Ok(())
    }
}

/// A key as the index of its field (`None` for a key the template does not have); `hint` is the field
/// tried first (keys usually come in the template's order).
struct KeySeed<'a> {
    names: &'a [String],
    hint: usize,
}

impl KeySeed<'_> {
    fn find(&self, key: &str) -> Option<usize> {
        match self.names.get(self.hint) {
            Some(name) if name == key => Some(self.hint),
            _ => self.names.iter().position(|n| n == key),
        }
    }
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<usize>, E> {
        Ok(self.find(key))
    }
}

/// The text of a JSON string without escapes, borrowed; `None` when `raw` is not a plain string.
fn plain_string(raw: &str) -> Option<&str> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('\\')).then_some(inner)
}

/// The text of a JSON string (unescaped), or of a bare literal (a number) as written.
fn text_of(raw: &str) -> Result<std::borrow::Cow<'_, str>, String> {
    if let Some(plain) = plain_string(raw) {
        return Ok(plain.into());
    }
    if raw.starts_with('"') {
        return serde_json::from_str::<String>(raw)
            .map(Into::into)
            .map_err(|e| format!("unreadable JSON string: {e}"));
    }
    Ok(raw.into())
}

fn push_len_prefixed(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), String> {
    let len = i32::try_from(bytes.len()).map_err(|_| "a value over 2 GiB".to_owned())?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

fn push_value(kind: Kind, raw: &str, out: &mut Vec<u8>) -> Result<(), String> {
    match kind {
        Kind::Text => match raw.as_bytes().first() {
            Some(b'{' | b'[') => Err("expected a string, found an object or an array".into()),
            _ => push_len_prefixed(out, text_of(raw)?.as_bytes()),
        },
        Kind::Int8 => {
            let n: i64 = text_of(raw)?
                .parse()
                .map_err(|_| "expected an integer of 64 bits".to_owned())?;
            out.extend_from_slice(&8i32.to_be_bytes());
            out.extend_from_slice(&n.to_be_bytes());
            Ok(())
        }
        Kind::Numeric => {
            let start = out.len();
            out.extend_from_slice(&0i32.to_be_bytes());
            push_numeric(&text_of(raw)?, out)?;
            let len = (out.len() - start - 4) as i32;
            out[start..start + 4].copy_from_slice(&len.to_be_bytes());
            Ok(())
        }
        Kind::Bool => {
            let b = match raw {
                "true" => 1,
                "false" => 0,
                _ => return Err("expected true or false".into()),
            };
            out.extend_from_slice(&1i32.to_be_bytes());
            out.push(b);
            Ok(())
        }
        Kind::Date => {
            let text = text_of(raw)?;
            let day = NaiveDate::parse_from_str(&text, "%Y-%m-%d")
                .map_err(|_| "expected a date YYYY-MM-DD".to_owned())?;
            let days = i64::from(day.num_days_from_ce()) - PG_EPOCH_DAYS_FROM_CE;
            let days = i32::try_from(days).map_err(|_| "date out of range".to_owned())?;
            out.extend_from_slice(&4i32.to_be_bytes());
            out.extend_from_slice(&days.to_be_bytes());
            Ok(())
        }
        Kind::Timestamptz => {
            let micros = timestamp_micros(&text_of(raw)?)?;
            out.extend_from_slice(&8i32.to_be_bytes());
            out.extend_from_slice(&micros.to_be_bytes());
            Ok(())
        }
        Kind::Jsonb => {
            let len = i32::try_from(raw.len() + 1).map_err(|_| "a value over 2 GiB".to_owned())?;
            out.extend_from_slice(&len.to_be_bytes());
            // jsonb's binary form: a version byte, then the JSON text.
            out.push(1);
            out.extend_from_slice(raw.as_bytes());
            Ok(())
        }
    }
}

/// Microseconds since 2000-01-01 UTC of an RFC 3339 timestamp, rounded to the microsecond half away from
/// zero as the server rounds text input.
pub fn timestamp_micros(text: &str) -> Result<i64, String> {
    let at = DateTime::parse_from_rfc3339(text)
        .map_err(|_| "expected an RFC 3339 timestamp".to_owned())?;
    let nanos = i64::from(at.timestamp_subsec_nanos());
    let micros = (nanos + 500) / 1000;
    (at.timestamp() - PG_EPOCH_SECS)
        .checked_mul(1_000_000)
        .and_then(|s| s.checked_add(micros))
        .ok_or_else(|| "timestamp out of range".to_owned())
}

/// Appends the binary `numeric` of a decimal's text (`[-+]digits[.digits]`): digit count, weight (of the
/// first base-10000 digit), sign, display scale (the digits after the point), then the base-10000 digits
/// without leading or trailing zero digits.
pub fn push_numeric(text: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let bad = || "expected a decimal number".to_owned();
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (int, frac) = rest.split_once('.').unwrap_or((rest, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return Err(bad());
    }
    let int = int.trim_start_matches('0');
    let dscale = u16::try_from(frac.len()).map_err(|_| bad())?;
    // Groups of 4 digits aligned on the point: the integer part padded on the left, the fraction on the
    // right.
    let int_groups = int.len().div_ceil(4);
    let frac_groups = frac.len().div_ceil(4);
    let mut digits: Vec<i16> = Vec::with_capacity(int_groups + frac_groups);
    let lead = int_groups * 4 - int.len();
    let mut group = 0i16;
    for (i, b) in int.bytes().enumerate() {
        group = group * 10 + i16::from(b - b'0');
        if (lead + i + 1) % 4 == 0 {
            digits.push(group);
            group = 0;
        }
    }
    for i in 0..frac_groups * 4 {
        let d = frac.as_bytes().get(i).map_or(0, |b| i16::from(b - b'0'));
        group = group * 10 + d;
        if (i + 1) % 4 == 0 {
            digits.push(group);
            group = 0;
        }
    }
    let mut weight = int_groups as i32 - 1;
    let first = digits.iter().position(|&d| d != 0);
    let (sign, weight, digits): (u16, i32, &[i16]) = match first {
        None => (0, 0, &[]),
        Some(first) => {
            let last = digits.iter().rposition(|&d| d != 0).unwrap_or(first);
            weight -= first as i32;
            (
                if negative { 0x4000 } else { 0 },
                weight,
                &digits[first..=last],
            )
        }
    };
    let ndigits = i16::try_from(digits.len()).map_err(|_| bad())?;
    let weight = i16::try_from(weight).map_err(|_| bad())?;
    out.extend_from_slice(&ndigits.to_be_bytes());
    out.extend_from_slice(&weight.to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&dscale.to_be_bytes());
    for d in digits {
        out.extend_from_slice(&d.to_be_bytes());
    }
    Ok(())
}

#[cfg(test)]
#[path = "encode_tests.rs"]
mod tests;
