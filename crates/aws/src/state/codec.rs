//! Items and keys of the state table ↔ the model: the key of each aggregate, struct fields as attributes
//! through their JSON form, and instants as exact epoch millis (see the table layout in the parent module).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, SecondsFormat, Utc};
use s3_importer_core::sync::model::{Connector, LedgerEntry};
use s3_importer_core::sync::ports::{StateError, StoredTemplate};
use s3_importer_core::template::Template;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::{other, DynamoStateStore, Item, PK, SK, TTL_ATTRIBUTE};

/// Attributes that are part of the layout, not of the stored value.
pub(super) const INTERNAL: [&str; 3] = [PK, SK, TTL_ATTRIBUTE];
/// Ledger attributes stored as epoch millis.
pub(super) const FILE_MILLIS: [&str; 1] = ["lease_until"];
/// Connector attributes stored as epoch millis.
pub(super) const CONNECTOR_MILLIS: [&str; 1] = ["watermark"];

pub(super) const META: &str = "META";
pub(super) const FILE_PREFIX: &str = "FILE#";
pub(super) const SYNC_PREFIX: &str = "SYNC#";
pub(super) const CONNECTORS_PK: &str = "CONNECTORS";
pub(super) const TEMPLATES_PK: &str = "TEMPLATES";
pub(super) const VERSION_PREFIX: &str = "V#";

// ---------------------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------------------

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn key(pk: String, sk: impl Into<String>) -> Item {
    HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])
}

pub(super) fn connector_pk(id: &str) -> String {
    format!("CONNECTOR#{id}")
}

/// Partitions a connector owns besides its own, deleted with it: the Stripe destination's customer mappings
/// (`s3_importer_stripe::DynamoCustomerIds` writes them; `stripe_e2e` checks the two agree).
pub(super) fn owned_partitions(id: &str) -> [String; 1] {
    [format!("STRIPE_CUSTOMER#{id}")]
}

pub(super) fn meta_key(id: &str) -> Item {
    key(connector_pk(id), META)
}

pub(super) fn file_key(connector_id: &str, file_id: &str) -> Item {
    key(
        connector_pk(connector_id),
        format!("{FILE_PREFIX}{file_id}"),
    )
}

pub(super) fn name_key(name: &str) -> Item {
    key(format!("CONNECTOR_NAME#{name}"), "NAME")
}

pub(super) fn index_key(id: &str) -> Item {
    key(CONNECTORS_PK.to_owned(), id)
}

pub(super) fn template_pk(id: &str) -> String {
    format!("TEMPLATE#{id}")
}

pub(super) fn template_key(id: &str, version: u32) -> Item {
    // Zero-padded so the sort key orders versions numerically (u32::MAX has 10 digits).
    key(template_pk(id), format!("{VERSION_PREFIX}{version:010}"))
}

pub(super) fn lease_key(name: &str) -> Item {
    key(format!("LEASE#{name}"), "LEASE")
}

/// Sorts chronologically: a fixed-width RFC 3339 with nanoseconds, then a random suffix so two runs that
/// start in the same nanosecond do not overwrite each other.
pub(super) fn sync_sk(started_at: DateTime<Utc>) -> String {
    format!(
        "{SYNC_PREFIX}{}#{}",
        started_at.to_rfc3339_opts(SecondsFormat::Nanos, true),
        uuid::Uuid::new_v4().simple()
    )
}

// ---------------------------------------------------------------------------------------------------------
// Attribute mapping
// ---------------------------------------------------------------------------------------------------------

/// An instant as epoch milliseconds, exact: `1735689600000`, or `1735689600000.000123` below a millisecond.
pub fn millis_n(at: DateTime<Utc>) -> String {
    let nanos =
        i128::from(at.timestamp()) * 1_000_000_000 + i128::from(at.timestamp_subsec_nanos());
    let sign = if nanos < 0 { "-" } else { "" };
    let abs = nanos.unsigned_abs();
    let (ms, sub) = (abs / 1_000_000, abs % 1_000_000);
    if sub == 0 {
        format!("{sign}{ms}")
    } else {
        let frac = format!("{sub:06}");
        format!("{sign}{ms}.{}", frac.trim_end_matches('0'))
    }
}

/// The inverse of [`millis_n`].
pub fn parse_millis(number: &str) -> Option<DateTime<Utc>> {
    let (negative, digits) = match number.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, number),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ms: i128 = int.parse().ok()?;
    let sub: i128 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<6}").parse().ok()?
    };
    let mut nanos = ms * 1_000_000 + sub;
    if negative {
        nanos = -nanos;
    }
    let secs = i64::try_from(nanos.div_euclid(1_000_000_000)).ok()?;
    let sub_nanos = u32::try_from(nanos.rem_euclid(1_000_000_000)).ok()?;
    DateTime::from_timestamp(secs, sub_nanos)
}

fn json_to_av(value: Value) -> AttributeValue {
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(b),
        Value::Number(num) => AttributeValue::N(num.to_string()),
        Value::String(text) => AttributeValue::S(text),
        Value::Array(values) => AttributeValue::L(values.into_iter().map(json_to_av).collect()),
        Value::Object(map) => {
            AttributeValue::M(map.into_iter().map(|(k, v)| (k, json_to_av(v))).collect())
        }
    }
}

fn av_to_json(value: &AttributeValue) -> Result<Value, String> {
    Ok(match value {
        AttributeValue::S(text) => Value::String(text.clone()),
        AttributeValue::N(num) => number_to_json(num)?,
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::L(values) => {
            Value::Array(values.iter().map(av_to_json).collect::<Result<_, _>>()?)
        }
        AttributeValue::M(map) => Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), av_to_json(v)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => return Err(format!("unexpected attribute type {other:?}")),
    })
}

fn number_to_json(num: &str) -> Result<Value, String> {
    if let Ok(u) = num.parse::<u64>() {
        return Ok(u.into());
    }
    if let Ok(i) = num.parse::<i64>() {
        return Ok(i.into());
    }
    num.parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map(Value::Number)
        .ok_or_else(|| format!("number {num} is out of range"))
}

/// A struct's JSON fields as attributes; `millis` names top-level instants stored as epoch millis.
pub(super) fn to_item<T: Serialize>(value: &T, millis: &[&str]) -> Result<Item, String> {
    let Value::Object(fields) = serde_json::to_value(value).map_err(|e| e.to_string())? else {
        return Err("value is not a JSON object".to_owned());
    };
    let mut item = Item::with_capacity(fields.len() + 2);
    for (name, field) in fields {
        if field.is_null() {
            continue;
        }
        let av = if millis.contains(&name.as_str()) {
            let at: DateTime<Utc> =
                serde_json::from_value(field).map_err(|e| format!("{name}: {e}"))?;
            AttributeValue::N(millis_n(at))
        } else {
            json_to_av(field)
        };
        item.insert(name, av);
    }
    Ok(item)
}

/// The inverse of [`to_item`]; layout attributes (`pk`, `sk`, `expires_at`) are ignored.
pub(super) fn from_item<T: DeserializeOwned>(item: &Item, millis: &[&str]) -> Result<T, String> {
    let mut fields = serde_json::Map::with_capacity(item.len());
    for (name, av) in item {
        if INTERNAL.contains(&name.as_str()) {
            continue;
        }
        let value = match av {
            AttributeValue::N(num) if millis.contains(&name.as_str()) => {
                let at = parse_millis(num)
                    .ok_or_else(|| format!("{name}: {num} is not an epoch-millis instant"))?;
                Value::String(at.to_rfc3339_opts(SecondsFormat::AutoSi, true))
            }
            other => av_to_json(other).map_err(|e| format!("{name}: {e}"))?,
        };
        fields.insert(name.clone(), value);
    }
    serde_json::from_value(Value::Object(fields)).map_err(|e| e.to_string())
}

pub(super) fn json_av<T: Serialize>(value: &T) -> Result<AttributeValue, String> {
    serde_json::to_value(value)
        .map(json_to_av)
        .map_err(|e| e.to_string())
}

pub(super) fn time_s(at: DateTime<Utc>) -> Result<AttributeValue, String> {
    json_av(&at)
}

pub(super) fn attr_str<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

// ---------------------------------------------------------------------------------------------------------
// Decoding the aggregates
// ---------------------------------------------------------------------------------------------------------

impl DynamoStateStore {
    pub(super) fn parse_connector(&self, item: &Item) -> Result<Connector, StateError> {
        from_item(item, &CONNECTOR_MILLIS).map_err(|e| {
            other(
                self.ctx(format!(
                    "decode connector {}",
                    attr_str(item, PK).unwrap_or("?")
                )),
                e,
            )
        })
    }

    pub(super) fn parse_entry(&self, item: &Item) -> Result<LedgerEntry, StateError> {
        from_item(item, &FILE_MILLIS).map_err(|e| {
            other(
                self.ctx(format!(
                    "decode ledger entry {} of {}",
                    attr_str(item, SK).unwrap_or("?"),
                    attr_str(item, PK).unwrap_or("?")
                )),
                e,
            )
        })
    }

    pub(super) fn parse_template(&self, item: &Item) -> Result<StoredTemplate, StateError> {
        let context = || {
            self.ctx(format!(
                "decode template {}",
                attr_str(item, PK).unwrap_or("?")
            ))
        };
        let id = attr_str(item, "id")
            .ok_or_else(|| other(context(), "no id"))?
            .to_owned();
        let version = item
            .get("version")
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| other(context(), "no version"))?;
        let source = attr_str(item, "source").unwrap_or_default().to_owned();
        let template: Template =
            serde_json::from_str(attr_str(item, "template").unwrap_or_default())
                .map_err(|e| other(context(), e))?;
        let created_at = attr_str(item, "created_at")
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
            .ok_or_else(|| other(context(), "no created_at"))?;
        Ok(StoredTemplate {
            id,
            version,
            source,
            template,
            created_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::fixtures::entry;
    use chrono::TimeZone;
    use s3_importer_core::sync::model::FileStatus;

    #[test]
    fn millis_round_trip_exactly() {
        for (secs, nanos) in [
            (0, 0),
            (1_735_689_600, 0),
            (1_735_689_600, 5_000_000),
            (1_735_689_600, 123_456_789),
            (-1, 999_500_000),
        ] {
            let at = Utc.timestamp_opt(secs, nanos).single().unwrap_or_default();
            let text = millis_n(at);
            assert_eq!(parse_millis(&text), Some(at), "{secs}s {nanos}ns as {text}");
        }
        assert_eq!(
            millis_n(Utc.timestamp_opt(1, 5_000_000).single().unwrap_or_default()),
            "1005"
        );
        assert_eq!(
            millis_n(Utc.timestamp_opt(1, 5_500_000).single().unwrap_or_default()),
            "1005.5"
        );
        assert_eq!(parse_millis("12.1234567"), None);
    }

    #[test]
    fn ledger_entries_round_trip_through_attributes() -> Result<(), String> {
        let mut e = entry();
        e.status = FileStatus::Processing;
        e.lease_until = Some(e.discovered_at + chrono::Duration::minutes(5));
        e.lease_owner = Some("w".into());
        let item = to_item(&e, &FILE_MILLIS)?;
        assert!(
            matches!(item.get("lease_until"), Some(AttributeValue::N(_))),
            "{item:?}"
        );
        assert_eq!(item.get("status"), Some(&s("processing")));
        let back: LedgerEntry = from_item(&item, &FILE_MILLIS)?;
        assert_eq!(back, e);
        Ok(())
    }
}
