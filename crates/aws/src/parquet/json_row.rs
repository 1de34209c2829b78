//! Reads one JSON row as its keys and values without building a map: every key and every string value is
//! borrowed from the row when it has no escapes (what the validator writes), so a row costs no allocation.
//! Arrays and objects (a `json` field, an unknown column kept) are parsed into a [`Value`], as before.
//!
//! The fast path ([`for_each_entry`]) reads the object's structure, plain strings, integers and literals
//! itself, and hands anything else (an escape, a fraction, an array…) to serde_json one value at a time; it
//! is tested against [`for_each_entry_serde`], the same reader through serde_json alone.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Number, Value};

/// One value of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar<'de> {
    /// `null`.
    Null,
    /// `true`, `false`.
    Bool(bool),
    /// A negative integer.
    I64(i64),
    /// A non-negative integer.
    U64(u64),
    /// Any other number.
    F64(f64),
    /// A string, borrowed unless it had escapes.
    Str(Cow<'de, str>),
    /// An array or an object.
    Other(Value),
}

impl Scalar<'_> {
    /// What kind of JSON value this is, for messages ("a string").
    pub fn kind(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Bool(_) => "a boolean",
            Scalar::I64(_) | Scalar::U64(_) | Scalar::F64(_) => "a number",
            Scalar::Str(_) => "a string",
            Scalar::Other(Value::Array(_)) => "an array",
            Scalar::Other(Value::Object(_)) => "an object",
            Scalar::Other(_) => "a value",
        }
    }

    /// The text of a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Scalar::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value as a JSON [`Value`] (the slow path: `json` columns and unknown keys).
    pub fn into_value(self) -> Value {
        match self {
            Scalar::Null => Value::Null,
            Scalar::Bool(b) => Value::Bool(b),
            Scalar::I64(n) => Value::Number(n.into()),
            Scalar::U64(n) => Value::Number(n.into()),
            Scalar::F64(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
            Scalar::Str(s) => Value::String(s.into_owned()),
            Scalar::Other(v) => v,
        }
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::I64(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::U64(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::F64(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Value::deserialize(de::value::SeqAccessDeserializer::new(seq)).map(Scalar::Other)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Value::deserialize(de::value::MapAccessDeserializer::new(map)).map(Scalar::Other)
    }
}

/// A key, borrowed unless it had escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Scalar::deserialize(deserializer)? {
            Scalar::Str(s) => Ok(Key(s)),
            other => Err(de::Error::custom(format!(
                "expected a key, found {}",
                other.kind()
            ))),
        }
    }
}

/// Why a row could not be read: not a JSON object, or `on_entry` refused an entry.
#[derive(Debug)]
pub enum RowError<E> {
    /// The row is not one JSON object.
    Json(serde_json::Error),
    /// What `on_entry` returned.
    Entry(E),
}

/// The reference reader: [`for_each_entry`] through serde_json alone (what the fast path is tested against).
pub fn for_each_entry_serde<'de, E>(
    row: &'de [u8],
    on_entry: impl FnMut(Cow<'de, str>, Scalar<'de>) -> Result<(), E>,
) -> Result<(), RowError<E>> {
    let mut refused = None;
    let mut deserializer = serde_json::Deserializer::from_slice(row);
    let read = RowSeed {
        on_entry,
        refused: &mut refused,
    }
    .deserialize(&mut deserializer)
    .and_then(|()| deserializer.end());
    match (read, refused) {
        (_, Some(e)) => Err(RowError::Entry(e)),
        (Err(e), None) => Err(RowError::Json(e)),
        (Ok(()), None) => Ok(()),
    }
}

/// Calls `on_entry` with each key and value of the JSON object `row`, in order; stops at the first error.
pub fn for_each_entry<'de, E>(
    row: &'de [u8],
    mut on_entry: impl FnMut(Cow<'de, str>, Scalar<'de>) -> Result<(), E>,
) -> Result<(), RowError<E>> {
    let mut at = skip_ws(row, 0);
    if row.get(at) != Some(&b'{') {
        return Err(RowError::Json(json_error(row)));
    }
    at = skip_ws(row, at + 1);
    if row.get(at) == Some(&b'}') {
        return end(row, at + 1);
    }
    loop {
        if row.get(at) != Some(&b'"') {
            return Err(RowError::Json(json_error(row)));
        }
        let (key, next) = match plain_string(row, at) {
            Some(found) => found,
            None => match serde_value::<Key<'de>>(row, at) {
                Some((Key(key), next)) => (key, next),
                None => return Err(RowError::Json(json_error(row))),
            },
        };
        at = skip_ws(row, next);
        if row.get(at) != Some(&b':') {
            return Err(RowError::Json(json_error(row)));
        }
        at = skip_ws(row, at + 1);
        let Some((value, next)) = fast_value(row, at).or_else(|| serde_value(row, at)) else {
            return Err(RowError::Json(json_error(row)));
        };
        on_entry(key, value).map_err(RowError::Entry)?;
        at = skip_ws(row, next);
        match row.get(at) {
            Some(b',') => at = skip_ws(row, at + 1),
            Some(b'}') => return end(row, at + 1),
            _ => return Err(RowError::Json(json_error(row))),
        }
    }
}

/// Only whitespace may follow the object.
fn end<E>(row: &[u8], at: usize) -> Result<(), RowError<E>> {
    if skip_ws(row, at) == row.len() {
        Ok(())
    } else {
        Err(RowError::Json(json_error(row)))
    }
}

fn skip_ws(row: &[u8], mut at: usize) -> usize {
    while matches!(row.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// serde_json's error for a row the fast path found malformed.
fn json_error(row: &[u8]) -> serde_json::Error {
    match for_each_entry_serde(row, |_, _| Ok::<(), ()>(())) {
        Err(RowError::Json(e)) => e,
        // serde_json reads the row: the fast path refused what it should not have (a bug).
        _ => de::Error::custom("the row could not be read"),
    }
}

/// The string starting at `row[at]` (a `"`) when it has no escape and no control character, and where it
/// ends.
fn plain_string(row: &[u8], at: usize) -> Option<(Cow<'_, str>, usize)> {
    let start = at + 1;
    let len = memchr::memchr2(b'"', b'\\', row.get(start..)?)?;
    let end = start + len;
    let bytes = &row[start..end];
    if row[end] != b'"' || bytes.iter().any(|&b| b < 0x20) {
        return None;
    }
    let text = std::str::from_utf8(bytes).ok()?;
    Some((Cow::Borrowed(text), end + 1))
}

/// A plain string, a literal or an integer in `i64`/`u64` starting at `row[at]`, and where it ends.
fn fast_value(row: &[u8], at: usize) -> Option<(Scalar<'_>, usize)> {
    let literal = |word: &[u8], value: Scalar<'static>| {
        row.get(at..at + word.len())
            .filter(|w| *w == word)
            .map(|_| (value, at + word.len()))
    };
    let (value, next) = match *row.get(at)? {
        b'"' => plain_string(row, at).map(|(s, next)| (Scalar::Str(s), next))?,
        b't' => literal(b"true", Scalar::Bool(true))?,
        b'f' => literal(b"false", Scalar::Bool(false))?,
        b'n' => literal(b"null", Scalar::Null)?,
        b'-' | b'0'..=b'9' => integer(row, at)?,
        _ => return None,
    };
    // A value ends at a delimiter; anything else (`1.5`, `truex`) is serde_json's to read or refuse.
    match row.get(next) {
        None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r' | b'"') => {
            Some((value, next))
        }
        _ => None,
    }
}

/// An integer as serde_json gives it (`U64` from zero up, `I64` below), without leading zeros.
fn integer(row: &[u8], at: usize) -> Option<(Scalar<'_>, usize)> {
    let negative = row[at] == b'-';
    let first = at + usize::from(negative);
    let digits = row[first..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 || (digits > 1 && row[first] == b'0') || digits > 19 {
        return None;
    }
    let mut n: u64 = 0;
    for &d in &row[first..first + digits] {
        n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    let value = if negative {
        // serde_json reads `-0` as a float: leave it to serde_json.
        Scalar::I64(0i64.checked_sub_unsigned(n).filter(|&v| v != 0)?)
    } else {
        Scalar::U64(n)
    };
    Some((value, first + digits))
}

/// One value read by serde_json from `row[at..]`, and where it ends.
fn serde_value<'de, T: Deserialize<'de>>(row: &'de [u8], at: usize) -> Option<(T, usize)> {
    let mut values = serde_json::Deserializer::from_slice(row.get(at..)?).into_iter::<T>();
    let value = values.next()?.ok()?;
    Some((value, at + values.byte_offset()))
}

struct RowSeed<'r, F, E> {
    on_entry: F,
    refused: &'r mut Option<E>,
}

impl<'de, F, E> DeserializeSeed<'de> for RowSeed<'_, F, E>
where
    F: FnMut(Cow<'de, str>, Scalar<'de>) -> Result<(), E>,
{
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, F, E> Visitor<'de> for RowSeed<'_, F, E>
where
    F: FnMut(Cow<'de, str>, Scalar<'de>) -> Result<(), E>,
{
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        while let Some(Key(key)) = map.next_key()? {
            let value: Scalar<'de> = map.next_value()?;
            if let Err(e) = (self.on_entry)(key, value) {
                *self.refused = Some(e);
                return Err(de::Error::custom("entry refused"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "json_row_tests.rs"]
mod tests;
