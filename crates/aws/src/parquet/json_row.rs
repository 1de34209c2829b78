//! Reads one JSON row as its keys and values without building a map: every key and every string value is
//! borrowed from the row when it has no escapes (what the validator writes), so a row costs no allocation.
//! Arrays and objects (a `json` field, an unknown column kept) are parsed into a [`Value`], as before.

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

/// Calls `on_entry` with each key and value of the JSON object `row`, in order; stops at the first error.
pub fn for_each_entry<'de, E>(
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
mod tests {
    use super::*;

    fn entries(row: &str) -> Result<Vec<(String, Scalar<'_>)>, String> {
        let mut out = Vec::new();
        for_each_entry(row.as_bytes(), |k, v| {
            out.push((k.into_owned(), v));
            Ok::<(), ()>(())
        })
        .map_err(|e| format!("{e:?}"))?;
        Ok(out)
    }

    #[test]
    fn entries_come_in_order_with_strings_borrowed_unless_escaped() -> Result<(), String> {
        let got =
            entries(r#"{"a":"x","b\"":"y\n","c":-1,"d":2,"e":1.5,"f":null,"g":true,"h":[1]}"#)?;
        assert!(matches!(&got[0].1, Scalar::Str(Cow::Borrowed("x"))));
        assert_eq!(
            got[1],
            ("b\"".into(), Scalar::Str(Cow::Owned("y\n".into())))
        );
        assert_eq!(got[2].1, Scalar::I64(-1));
        assert_eq!(got[3].1, Scalar::U64(2));
        assert_eq!(got[4].1, Scalar::F64(1.5));
        assert_eq!(got[5].1, Scalar::Null);
        assert_eq!(got[6].1, Scalar::Bool(true));
        assert_eq!(got[7].1, Scalar::Other(serde_json::json!([1])));
        Ok(())
    }

    #[test]
    fn a_row_that_is_not_one_object_is_refused() {
        for row in ["[1]", "1", "{\"a\":1} x", "{\"a\":", ""] {
            assert!(entries(row).is_err(), "{row:?}");
        }
    }

    #[test]
    fn the_first_refused_entry_stops_the_row() {
        let mut seen = 0;
        let got = for_each_entry(br#"{"a":1,"b":2,"c":3}"#, |k, _| {
            seen += 1;
            if k == "b" {
                Err("no b")
            } else {
                Ok(())
            }
        });
        assert!(matches!(got, Err(RowError::Entry("no b"))));
        assert_eq!(seen, 2);
    }
}
