//! What one row becomes in Stripe, kind by kind, and how it is written so that a redelivered, retried or
//! resumed file makes no second object (see the README's "Stripe" for the columns of each template).
//!
//! Every object the sink writes carries its lineage in `metadata` (`s3i_connector`, `s3i_source_key`,
//! `s3i_source_etag`, `s3i_last_modified_ms`, `s3i_record`): an object last written from a newer file
//! version (by the source's LastModified) is never overwritten by an older one, and an object already
//! holding the row's values is not written again (an overwritten file updates only the rows that changed).

use chrono::{DateTime, Utc};
use s3_importer_core::sink::SinkError;
use s3_importer_core::sync::FileVersion;
use s3_importer_core::{ErrorCode, RowError};
use serde_json::{Map, Value};

use crate::api::Reply;
use crate::error::{Refusal, StripeError};
use crate::form::{segment, text, Form};
use crate::keys::row_key;
use crate::Stripe;

mod customer;
pub use customer::customer;

/// Meter events older than this are refused by Stripe (and here, before any call).
pub const METER_EVENT_MAX_AGE_SECONDS: i64 = 35 * 24 * 3600;
/// Meter events further ahead than this are refused by Stripe (and here, before any call).
pub const METER_EVENT_MAX_AHEAD_SECONDS: i64 = 5 * 60;

/// How one row ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RowOutcome {
    /// Stripe has the row's object (created, updated or sent).
    Written,
    /// Nothing to do: the object already holds the row's values, or a newer file version wrote it.
    Unchanged,
    /// The row is refused (before any call, or by Stripe): it goes to the error report.
    Refused(RowError),
}

/// Where a row comes from.
#[derive(Debug, Clone, Copy)]
pub struct RowSource<'a> {
    /// The file version.
    pub version: &'a FileVersion,
    /// Its LastModified, epoch milliseconds.
    pub last_modified_ms: i64,
    /// The row's record number.
    pub record: u64,
}

impl RowSource<'_> {
    fn lineage(&self, form: &mut Form) {
        form.push_nested("metadata", "s3i_connector", &self.version.connector_id)
            .push_nested("metadata", "s3i_source_key", &self.version.key)
            .push_nested("metadata", "s3i_source_etag", &self.version.etag)
            .push_nested(
                "metadata",
                "s3i_last_modified_ms",
                self.last_modified_ms.to_string(),
            )
            .push_nested("metadata", "s3i_record", self.record.to_string());
    }

    /// Whether `existing` was last written from a newer file version than this row's.
    fn is_older_than(&self, existing: &Value) -> bool {
        existing
            .pointer("/metadata/s3i_last_modified_ms")
            .and_then(Value::as_str)
            .and_then(|ms| ms.parse::<i64>().ok())
            .is_some_and(|ms| ms > self.last_modified_ms)
    }

    fn key(&self, purpose: &str) -> String {
        row_key(purpose, self.version, self.record)
    }
}

/// The row's text value of `name` (absent, null and empty are none).
fn field(row: &Map<String, Value>, name: &str) -> Option<String> {
    row.get(name)
        .filter(|v| !v.is_null())
        .map(text)
        .filter(|v| !v.is_empty())
}

fn missing(column: &str, what: &str) -> RowOutcome {
    RowOutcome::Refused(RowError::column(
        column,
        ErrorCode::MissingField,
        format!("the Stripe {what} needs a value in `{column}`"),
    ))
}

/// A refusal as the row's error, on the column Stripe's `param` names (`metadata[plan]` → `plan`,
/// `payload[value]` → `payload_value`, `address[city]` → `address_city`).
pub fn refused(refusal: &Refusal) -> RowOutcome {
    let message = format!("Stripe refused the row: {refusal}");
    let column = refusal.param.as_deref().map(|p| {
        let parts: Vec<&str> = p.split('[').map(|s| s.trim_end_matches(']')).collect();
        match parts.as_slice() {
            ["metadata", inner] => (*inner).to_owned(),
            [outer, inner] => format!("{outer}_{inner}"),
            _ => p.to_owned(),
        }
    });
    RowOutcome::Refused(match column {
        Some(c) => RowError::column(c, ErrorCode::DestinationRejected, message),
        None => RowError::record(ErrorCode::DestinationRejected, message),
    })
}

/// Adds the row's other fields (not in `known`) as `metadata[k]` (a `metadata_` prefix dropped).
fn metadata(form: &mut Form, row: &Map<String, Value>, known: &[&str]) {
    for (name, value) in row {
        if known.contains(&name.as_str()) || value.is_null() {
            continue;
        }
        let key = name.strip_prefix("metadata_").unwrap_or(name);
        form.push_nested("metadata", key, text(value));
    }
}

/// The object's id in a reply.
fn id_of(object: &Value) -> Result<String, SinkError> {
    object
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| {
            SinkError::transient(
                "read Stripe's answer",
                StripeError::BadAnswer("the object has no id".into()),
            )
        })
}

/// Updates `existing` at `path` with `content` unless it is newer or already holds it.
async fn update(
    stripe: &Stripe,
    source: RowSource<'_>,
    path: &str,
    existing: &Value,
    content: Form,
) -> Result<RowOutcome, SinkError> {
    if source.is_older_than(existing) || content.matches(existing) {
        return Ok(RowOutcome::Unchanged);
    }
    let mut form = content;
    source.lineage(&mut form);
    Ok(match stripe.post(path, &form, None).await? {
        Reply::Object(_) => RowOutcome::Written,
        Reply::Missing => RowOutcome::Refused(RowError::record(
            ErrorCode::DestinationRejected,
            format!("Stripe has no object at {path} any more"),
        )),
        Reply::Refused(r) => refused(&r),
    })
}

const PRODUCT_FIELDS: [&str; 7] = [
    "id",
    "name",
    "description",
    "active",
    "url",
    "default_price_unit_amount",
    "default_price_currency",
];

/// A product, upserted by id: `POST /v1/products/{id}` when it exists (and differs), created with that id
/// otherwise (with its default price, when the row gives one). A row without `name` is named by its id.
pub async fn product(
    stripe: &Stripe,
    source: RowSource<'_>,
    row: &Map<String, Value>,
) -> Result<RowOutcome, SinkError> {
    let Some(id) = field(row, "id") else {
        return Ok(missing("id", "product"));
    };
    let mut content = Form::new();
    content.push("name", field(row, "name").unwrap_or_else(|| id.clone()));
    for name in ["description", "active", "url"] {
        if let Some(v) = field(row, name) {
            content.push(name, v);
        }
    }
    metadata(&mut content, row, &PRODUCT_FIELDS);
    let path = format!("/v1/products/{}", segment(&id));
    match stripe.get(&path).await? {
        Reply::Object(existing) => update(stripe, source, &path, &existing, content).await,
        Reply::Refused(r) => Ok(refused(&r)),
        Reply::Missing => {
            let mut form = Form::new();
            form.push("id", id.as_str());
            for (k, v) in content.pairs() {
                form.push(k.as_str(), v.as_str());
            }
            if let Some(amount) = field(row, "default_price_unit_amount") {
                form.push_nested("default_price_data", "unit_amount", amount);
                form.push_nested(
                    "default_price_data",
                    "currency",
                    field(row, "default_price_currency").unwrap_or_else(|| "usd".into()),
                );
            }
            source.lineage(&mut form);
            let key = source.key("create-product");
            Ok(
                match stripe.post("/v1/products", &form, Some(&key)).await? {
                    Reply::Object(_) => RowOutcome::Written,
                    Reply::Missing => RowOutcome::Refused(RowError::record(
                        ErrorCode::DestinationRejected,
                        "Stripe answered 404 to a product create",
                    )),
                    Reply::Refused(r) => refused(&r),
                },
            )
        }
    }
}

const PRICE_FIELDS: [&str; 7] = [
    "lookup_key",
    "product",
    "unit_amount",
    "currency",
    "recurring_interval",
    "recurring_interval_count",
    "nickname",
];

/// A price, by lookup key: the price holding the key is kept when it has the row's product, amount,
/// currency and interval (its nickname and metadata updated when they differ); otherwise a new price is
/// created and takes the key over (`transfer_lookup_key`), since amounts cannot be edited.
pub async fn price(
    stripe: &Stripe,
    source: RowSource<'_>,
    row: &Map<String, Value>,
) -> Result<RowOutcome, SinkError> {
    let Some(lookup_key) = field(row, "lookup_key") else {
        return Ok(missing("lookup_key", "price"));
    };
    for required in ["product", "unit_amount", "currency"] {
        if field(row, required).is_none() {
            return Ok(missing(required, "price"));
        }
    }
    let mut terms = Form::new();
    terms.push("product", field(row, "product").unwrap_or_default());
    terms.push("unit_amount", field(row, "unit_amount").unwrap_or_default());
    terms.push(
        "currency",
        field(row, "currency")
            .unwrap_or_default()
            .to_ascii_lowercase(),
    );
    if let Some(interval) = field(row, "recurring_interval") {
        terms.push_nested("recurring", "interval", interval);
        terms.push_nested(
            "recurring",
            "interval_count",
            field(row, "recurring_interval_count").unwrap_or_else(|| "1".into()),
        );
    }
    let mut content = Form::new();
    if let Some(nickname) = field(row, "nickname") {
        content.push("nickname", nickname);
    }
    metadata(&mut content, row, &PRICE_FIELDS);
    let query: String = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("lookup_keys[]", &lookup_key)
        .append_pair("limit", "1")
        .finish();
    let existing = match stripe.get(&format!("/v1/prices?{query}")).await? {
        Reply::Object(list) => list.pointer("/data/0").cloned(),
        Reply::Missing => None,
        Reply::Refused(r) => return Ok(refused(&r)),
    };
    if let Some(existing) = &existing {
        let same_terms = terms.matches(existing)
            && (terms.get("recurring[interval]").is_some()
                || existing.get("recurring").is_none_or(Value::is_null));
        if same_terms || source.is_older_than(existing) {
            let id = id_of(existing)?;
            let path = format!("/v1/prices/{}", segment(&id));
            return update(stripe, source, &path, existing, content).await;
        }
    }
    let mut form = terms;
    for (k, v) in content.pairs() {
        form.push(k.as_str(), v.as_str());
    }
    form.push("lookup_key", lookup_key.as_str());
    if existing.is_some() {
        form.push("transfer_lookup_key", "true");
    }
    source.lineage(&mut form);
    let key = source.key("create-price");
    Ok(match stripe.post("/v1/prices", &form, Some(&key)).await? {
        Reply::Object(_) => RowOutcome::Written,
        Reply::Missing => RowOutcome::Refused(RowError::record(
            ErrorCode::DestinationRejected,
            "Stripe answered 404 to a price create",
        )),
        Reply::Refused(r) => refused(&r),
    })
}

/// A meter event's timestamp: epoch seconds (a number or digits), or an RFC 3339 instant.
pub fn event_time(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok().or_else(|| {
            DateTime::parse_from_rfc3339(s.trim())
                .ok()
                .map(|t| t.timestamp())
        }),
        _ => None,
    }
}

/// The form of a meter event, or why the row is refused before any call: `event_name`, `timestamp` within
/// Stripe's window around `now`, `identifier` (derived from the file version and record when absent),
/// `payload[k]` from a `payload` object and from `payload_<k>` columns.
pub fn meter_event_form(
    source: RowSource<'_>,
    row: &Map<String, Value>,
    now: DateTime<Utc>,
) -> Result<(Form, String), RowError> {
    let event_name = field(row, "event_name").ok_or_else(|| {
        RowError::column(
            "event_name",
            ErrorCode::MissingField,
            "a meter event needs `event_name`",
        )
    })?;
    let timestamp = row
        .get("timestamp")
        .filter(|v| !v.is_null())
        .ok_or_else(|| {
            RowError::column(
                "timestamp",
                ErrorCode::MissingField,
                "a meter event needs `timestamp`",
            )
        })?;
    let at = event_time(timestamp).ok_or_else(|| {
        RowError::column(
            "timestamp",
            ErrorCode::InvalidTimestamp,
            "not epoch seconds nor an RFC 3339 instant",
        )
    })?;
    let now = now.timestamp();
    if at < now - METER_EVENT_MAX_AGE_SECONDS {
        return Err(RowError::column(
            "timestamp",
            ErrorCode::ConstraintViolated,
            "older than 35 days: Stripe refuses meter events outside its window",
        ));
    }
    if at > now + METER_EVENT_MAX_AHEAD_SECONDS {
        return Err(RowError::column(
            "timestamp",
            ErrorCode::ConstraintViolated,
            "more than 5 minutes in the future: Stripe refuses meter events outside its window",
        ));
    }
    let identifier = field(row, "identifier").unwrap_or_else(|| source.key("meter-event"));
    let mut form = Form::new();
    form.push("event_name", event_name)
        .push("timestamp", at.to_string())
        .push("identifier", identifier.as_str());
    if let Some(Value::Object(payload)) = row.get("payload") {
        for (k, v) in payload {
            form.push_nested("payload", k, text(v));
        }
    }
    for (name, value) in row {
        if let Some(k) = name.strip_prefix("payload_") {
            if !value.is_null() {
                form.push_nested("payload", k, text(value));
            }
        }
    }
    // The idempotency key follows the identifier, so a retried send of the same event is one event.
    let key = row_key(&format!("meter-event/{identifier}"), source.version, 0);
    Ok((form, key))
}

/// A meter event, sent once (see [`meter_event_form`]).
pub async fn meter_event(
    stripe: &Stripe,
    source: RowSource<'_>,
    row: &Map<String, Value>,
) -> Result<RowOutcome, SinkError> {
    let (form, key) = match meter_event_form(source, row, Utc::now()) {
        Ok(built) => built,
        Err(e) => return Ok(RowOutcome::Refused(e)),
    };
    Ok(
        match stripe
            .post("/v1/billing/meter_events", &form, Some(&key))
            .await?
        {
            Reply::Object(_) => RowOutcome::Written,
            // Stripe dedupes identifiers within 24 hours: the event was sent before.
            Reply::Refused(r) if r.code.as_deref().is_some_and(|c| c.contains("duplicate")) => {
                RowOutcome::Unchanged
            }
            Reply::Refused(r) => refused(&r),
            Reply::Missing => RowOutcome::Refused(RowError::record(
                ErrorCode::DestinationRejected,
                "Stripe answered 404 to a meter event",
            )),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn version() -> FileVersion {
        FileVersion {
            connector_id: "c-1".into(),
            bucket: "b".into(),
            key: "usage.csv".into(),
            etag: "\"e\"".into(),
            version_id: None,
        }
    }

    fn row(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    #[test]
    fn meter_events_nest_the_payload_and_derive_a_stable_identifier() {
        let v = version();
        let now = Utc
            .timestamp_opt(1_800_000_000, 0)
            .single()
            .unwrap_or_default();
        let source = RowSource {
            version: &v,
            last_modified_ms: 0,
            record: 3,
        };
        let r = row(serde_json::json!({
            "event_name": "api_calls", "timestamp": 1_799_999_000,
            "payload_stripe_customer_id": "cus_1", "payload_value": 5,
            "payload": {"region": "eu"}
        }));
        let built = meter_event_form(source, &r, now);
        let (form, key) = built.unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(form.get("payload[stripe_customer_id]"), Some("cus_1"));
        assert_eq!(form.get("payload[value]"), Some("5"));
        assert_eq!(form.get("payload[region]"), Some("eu"));
        assert_eq!(form.get("timestamp"), Some("1799999000"));
        let identifier = form.get("identifier").map(str::to_owned);
        assert_eq!(identifier, Some(row_key("meter-event", &v, 3)));
        let again = meter_event_form(source, &r, now)
            .map(|(f, k)| (f.get("identifier").map(str::to_owned), k));
        assert_eq!(again.ok(), Some((identifier, key)));
        let other = RowSource {
            record: 4,
            ..source
        };
        let (f4, _) = meter_event_form(other, &r, now).unwrap_or_else(|e| panic!("{e:?}"));
        assert_ne!(f4.get("identifier"), form.get("identifier"));
    }

    #[test]
    fn meter_events_outside_the_window_are_refused_on_the_timestamp() {
        let v = version();
        let now = Utc
            .timestamp_opt(1_800_000_000, 0)
            .single()
            .unwrap_or_default();
        let source = RowSource {
            version: &v,
            last_modified_ms: 0,
            record: 1,
        };
        for (ts, ok) in [
            (Value::from(1_800_000_000 - 35 * 86_400 - 1), false),
            (Value::from(1_800_000_000 - 35 * 86_400 + 60), true),
            (Value::from(1_800_000_000 + 301), false),
            (Value::from(1_800_000_000 + 299), true),
            (Value::from("2027-01-15T08:00:00Z"), true),
            (Value::from("yesterday"), false),
        ] {
            let r = row(serde_json::json!({"event_name": "e", "timestamp": ts}));
            let got = meter_event_form(source, &r, now);
            assert_eq!(got.is_ok(), ok, "{ts}");
            if let Err(e) = got {
                assert_eq!(e.column.as_deref(), Some("timestamp"));
            }
        }
    }

    #[test]
    fn refusals_point_at_the_column_stripe_names() {
        let refusal = |param: Option<&str>| Refusal {
            status: 400,
            kind: Some("invalid_request_error".into()),
            code: Some("parameter_invalid_integer".into()),
            message: "Invalid integer: abc".into(),
            param: param.map(str::to_owned),
        };
        let column = |param| match refused(&refusal(param)) {
            RowOutcome::Refused(e) => e.column,
            _ => None,
        };
        assert_eq!(column(Some("unit_amount")).as_deref(), Some("unit_amount"));
        assert_eq!(column(Some("metadata[plan]")).as_deref(), Some("plan"));
        assert_eq!(
            column(Some("payload[value]")).as_deref(),
            Some("payload_value")
        );
        assert_eq!(column(None), None);
        let RowOutcome::Refused(e) = refused(&refusal(Some("unit_amount"))) else {
            panic!("refused");
        };
        assert!(e.message.contains("Invalid integer") && e.message.contains("unit_amount"));
    }
}
