//! The [`StateStore`](s3_importer_core::sync::ports::StateStore) on one DynamoDB table (DESIGN §7), checked by the same contract suite as the in-memory
//! store.
//!
//! # Table layout
//!
//! Key schema: partition key `pk` (S), sort key `sk` (S); no secondary index; TTL attribute `expires_at`
//! (epoch seconds, N). Items:
//!
//! | `pk` | `sk` | what |
//! |---|---|---|
//! | `CONNECTOR#<id>` | `META` | the connector (its fields as attributes), `watermark` as epoch millis (N) |
//! | `CONNECTOR#<id>` | `FILE#<file_id>` | a ledger entry; `status`, `lease_until` (epoch millis, N) and `lease_owner` are top-level for conditions |
//! | `CONNECTOR#<id>` | `SYNC#<started_at, RFC 3339 ns>#<random>` | a sync run, `expires_at` = start + 30 days |
//! | `CONNECTORS` | `<id>` | listing index: `list_connectors` is a Query, never a Scan |
//! | `CONNECTOR_NAME#<name>` | `NAME` | name uniqueness (`connector_id`) |
//! | `TEMPLATE#<id>` | `V#<version, 10 digits>` | a template version (`template` is its JSON) |
//! | `TEMPLATES` | `<id>` | listing index of templates |
//! | `LEASE#<name>` | `LEASE` | a named lease: `owner`, `lease_until` (millis), `expires_at` |
//!
//! Struct fields map to attributes through their JSON form (objects → M, arrays → L, numbers → N). Instants
//! used in conditions (`lease_until`, `watermark`) are stored as epoch *milliseconds* in an N, with a decimal
//! fraction when the instant has sub-millisecond precision, so comparisons are numeric and a round trip is
//! exact; every other instant is an RFC 3339 string.
//!
//! # Outcomes
//!
//! Every conditional-check failure becomes a domain outcome ([`ClaimOutcome::AlreadyKnown`],
//! [`StartOutcome`], [`StateError::NameTaken`], [`StateError::Conflict`]); throttling, 5xx and timeouts
//! become [`StateError::Transient`] (after the SDK's own retries); anything else [`StateError::Other`], with
//! what was being done and in which table.

use std::collections::{HashMap, HashSet};
use std::time::Duration as StdDuration;

use async_trait::async_trait;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, DeleteRequest, KeySchemaElement,
    KeyType, KeysAndAttributes, Put, ReturnValue, ReturnValuesOnConditionCheckFailure,
    ScalarAttributeType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus, TransactWriteItem,
    Update, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, SecondsFormat, Utc};
use s3_importer_core::sync::model::{
    sync_lease_name, Checkpoint, Connector, FileStatus, LedgerEntry, SyncRun,
};
use s3_importer_core::sync::ports::{
    ClaimOutcome, ConnectorStore, FileLedger, LeaseStore, StartOutcome, StateError, StoredTemplate,
    SyncHistory, TemplateStore,
};
use s3_importer_core::template::Template;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// Partition key attribute.
pub const PK: &str = "pk";
/// Sort key attribute.
pub const SK: &str = "sk";
/// The TTL attribute (epoch seconds): sync runs and leases expire on their own.
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// How long sync runs are kept.
pub const SYNC_RUN_RETENTION: chrono::Duration = chrono::Duration::days(30);

/// DynamoDB's BatchGetItem limit.
const BATCH_GET_MAX: usize = 100;
/// DynamoDB's BatchWriteItem limit.
const BATCH_WRITE_MAX: usize = 25;
/// Rounds of UnprocessedKeys/UnprocessedItems retries before giving up with a transient error.
const UNPROCESSED_ATTEMPTS: u32 = 8;
/// Rounds of optimistic retries when two writers race for the next template version.
const TEMPLATE_VERSION_ATTEMPTS: u32 = 10;
/// Rounds of `start_file` when the entry changes between the failed condition and the read that explains it.
const START_ATTEMPTS: u32 = 3;
/// Attributes that are part of the layout, not of the stored value.
const INTERNAL: [&str; 3] = [PK, SK, TTL_ATTRIBUTE];
/// Ledger attributes stored as epoch millis.
const FILE_MILLIS: [&str; 1] = ["lease_until"];
/// Connector attributes stored as epoch millis.
const CONNECTOR_MILLIS: [&str; 1] = ["watermark"];

type Item = HashMap<String, AttributeValue>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The state store on one DynamoDB table (see the module docs for the layout).
#[derive(Debug, Clone)]
pub struct DynamoStateStore {
    client: Client,
    table: String,
}

impl DynamoStateStore {
    /// A store on `table` (create it with [`create_state_table`] or `template.yaml`).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }
}

// ---------------------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------------------

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn key(pk: String, sk: impl Into<String>) -> Item {
    HashMap::from([(PK.to_owned(), s(pk)), (SK.to_owned(), s(sk))])
}

fn connector_pk(id: &str) -> String {
    format!("CONNECTOR#{id}")
}

const META: &str = "META";
const FILE_PREFIX: &str = "FILE#";
const SYNC_PREFIX: &str = "SYNC#";
const CONNECTORS_PK: &str = "CONNECTORS";
const TEMPLATES_PK: &str = "TEMPLATES";
const VERSION_PREFIX: &str = "V#";

fn meta_key(id: &str) -> Item {
    key(connector_pk(id), META)
}

fn file_key(connector_id: &str, file_id: &str) -> Item {
    key(
        connector_pk(connector_id),
        format!("{FILE_PREFIX}{file_id}"),
    )
}

fn name_key(name: &str) -> Item {
    key(format!("CONNECTOR_NAME#{name}"), "NAME")
}

fn index_key(id: &str) -> Item {
    key(CONNECTORS_PK.to_owned(), id)
}

fn template_key(id: &str, version: u32) -> Item {
    // Zero-padded so the sort key orders versions numerically (u32::MAX has 10 digits).
    key(
        format!("TEMPLATE#{id}"),
        format!("{VERSION_PREFIX}{version:010}"),
    )
}

fn lease_key(name: &str) -> Item {
    key(format!("LEASE#{name}"), "LEASE")
}

/// Sorts chronologically: a fixed-width RFC 3339 with nanoseconds, then a random suffix so two runs that
/// start in the same nanosecond do not overwrite each other.
fn sync_sk(started_at: DateTime<Utc>) -> String {
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
fn to_item<T: Serialize>(value: &T, millis: &[&str]) -> Result<Item, String> {
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
fn from_item<T: DeserializeOwned>(item: &Item, millis: &[&str]) -> Result<T, String> {
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

fn json_av<T: Serialize>(value: &T) -> Result<AttributeValue, String> {
    serde_json::to_value(value)
        .map(json_to_av)
        .map_err(|e| e.to_string())
}

fn time_s(at: DateTime<Utc>) -> Result<AttributeValue, String> {
    json_av(&at)
}

fn attr_str<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

// ---------------------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------------------

/// An SDK failure with a readable message (the SDK's own Display says only "service error").
#[derive(Debug, thiserror::Error)]
#[error("{summary}")]
struct DynamoFailure {
    summary: String,
    #[source]
    source: BoxError,
}

const TRANSIENT_CODES: [&str; 8] = [
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "TransactionConflictException",
    "LimitExceededException",
];

/// Cancellation reasons of a transaction that mean "try again later".
const TRANSIENT_CANCELLATIONS: [&str; 3] = [
    "TransactionConflict",
    "ThrottlingError",
    "ProvisionedThroughputExceeded",
];

fn error_code<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> Option<&str> {
    err.as_service_error().and_then(ProvideErrorMetadata::code)
}

fn is_condition_failed<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    error_code(err) == Some("ConditionalCheckFailedException")
}

fn is_transient<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            service.raw().status().is_server_error()
                || service
                    .err()
                    .code()
                    .is_some_and(|code| TRANSIENT_CODES.contains(&code))
        }
        _ => false,
    }
}

/// Classifies an SDK error that is not a domain outcome.
fn sdk_error<E>(err: SdkError<E, HttpResponse>, context: String) -> StateError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let transient = is_transient(&err);
    let summary = match err.as_service_error() {
        Some(service) => match (service.code(), service.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_owned(),
            // An unparseable answer: the whole chain, and the HTTP status.
            _ => format!(
                "{} (HTTP {})",
                DisplayErrorContext(&err),
                err.raw_response().map_or(0, |r| r.status().as_u16())
            ),
        },
        None => DisplayErrorContext(&err).to_string(),
    };
    let source: BoxError = Box::new(DynamoFailure {
        summary,
        source: Box::new(err),
    });
    if transient {
        StateError::Transient { context, source }
    } else {
        StateError::Other { context, source }
    }
}

fn other(context: String, source: impl Into<BoxError>) -> StateError {
    StateError::Other {
        context,
        source: source.into(),
    }
}

/// The per-item reason codes of a cancelled transaction (`None` when it failed for another reason).
fn cancellation_codes(
    err: &SdkError<TransactWriteItemsError, HttpResponse>,
) -> Option<Vec<String>> {
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(e)) => Some(
            e.cancellation_reasons()
                .iter()
                .map(|r| r.code().unwrap_or("None").to_owned())
                .collect(),
        ),
        _ => None,
    }
}

/// Turns a failed transaction into a domain error: `on_condition(i)` names the outcome of item `i`'s
/// failed condition; conflicts between transactions and throttling are transient.
fn transaction_error(
    err: SdkError<TransactWriteItemsError, HttpResponse>,
    context: String,
    on_condition: impl Fn(&[usize]) -> Option<StateError>,
) -> StateError {
    if let Some(codes) = cancellation_codes(&err) {
        let failed: Vec<usize> = codes
            .iter()
            .enumerate()
            .filter(|(_, c)| *c == "ConditionalCheckFailed")
            .map(|(i, _)| i)
            .collect();
        if !failed.is_empty() {
            if let Some(outcome) = on_condition(&failed) {
                return outcome;
            }
        }
        if codes
            .iter()
            .any(|c| TRANSIENT_CANCELLATIONS.contains(&c.as_str()))
        {
            return StateError::Transient {
                context,
                source: format!("transaction cancelled: {}", codes.join(", ")).into(),
            };
        }
    }
    sdk_error(err, context)
}

/// Exponential backoff with jitter between rounds of unprocessed batch items: DynamoDB returns them when a
/// partition is throttled, and an immediate retry would be throttled again.
async fn backoff(round: u32) {
    let base = 50u64.saturating_mul(1 << round.min(6)).min(2_000);
    let jitter = u64::from(Utc::now().timestamp_subsec_nanos()) % (base / 2 + 1);
    tokio::time::sleep(StdDuration::from_millis(base / 2 + jitter)).await;
}

// ---------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------

/// Expression attribute names and values, built alongside an expression.
#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Expr {
    /// `#name` for an attribute (every attribute goes through a placeholder: `status`, `name`, `source`
    /// and many more are reserved words).
    fn name(&mut self, attribute: &str) -> String {
        let placeholder = format!(
            "#{}",
            attribute.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        );
        self.names.insert(placeholder.clone(), attribute.to_owned());
        placeholder
    }

    fn value(&mut self, placeholder: &str, value: AttributeValue) -> String {
        let placeholder = format!(":{placeholder}");
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

impl DynamoStateStore {
    fn ctx(&self, what: impl std::fmt::Display) -> String {
        format!("{what} in table {}", self.table)
    }

    async fn get_item(&self, key: Item, context: &str) -> Result<Option<Item>, StateError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(e, context.to_owned()))?;
        Ok(out.item)
    }

    /// Every item of a partition whose sort key starts with `sk_prefix`, in sort-key order (or reversed),
    /// up to `limit`, following pagination (a Query page stops at 1 MB).
    async fn query(
        &self,
        pk: String,
        sk_prefix: &str,
        status: Option<FileStatus>,
        newest_first: bool,
        limit: Option<usize>,
        context: &str,
    ) -> Result<Vec<Item>, StateError> {
        let mut expr = Expr::default();
        let pk_name = expr.name(PK);
        let pk_value = expr.value("pk", s(pk));
        // DynamoDB rejects placeholders an expression does not use, so `#sk` only with a prefix.
        let key_condition = if sk_prefix.is_empty() {
            format!("{pk_name} = {pk_value}")
        } else {
            let sk_name = expr.name(SK);
            let prefix = expr.value("prefix", s(sk_prefix));
            format!("{pk_name} = {pk_value} AND begins_with({sk_name}, {prefix})")
        };
        let filter = status.map(|st| {
            let name = expr.name("status");
            let value = expr.value("status", s(st.as_str()));
            format!("{name} = {value}")
        });
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let page_limit = limit
                .map(|l| i32::try_from(l.saturating_sub(items.len()).min(1000)).unwrap_or(1000));
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(&key_condition)
                .set_filter_expression(filter.clone())
                .set_expression_attribute_names(expr.names())
                .set_expression_attribute_values(expr.values())
                .consistent_read(true)
                .scan_index_forward(!newest_first)
                // Limit counts items read before the filter; only use it without one.
                .set_limit(if filter.is_none() { page_limit } else { None })
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| sdk_error(e, context.to_owned()))?;
            items.extend(out.items.unwrap_or_default());
            if let Some(limit) = limit {
                if items.len() >= limit {
                    items.truncate(limit);
                    break;
                }
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(items)
    }

    /// BatchGetItem in chunks of 100 with consistent reads, retrying UnprocessedKeys with backoff.
    async fn batch_get(&self, keys: Vec<Item>, context: &str) -> Result<Vec<Item>, StateError> {
        let mut found = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_GET_MAX) {
            let mut pending = chunk.to_vec();
            let mut round = 0;
            while !pending.is_empty() {
                if round > 0 {
                    if round >= UNPROCESSED_ATTEMPTS {
                        return Err(StateError::Transient {
                            context: context.to_owned(),
                            source: format!(
                                "{} keys still unprocessed after {round} rounds",
                                pending.len()
                            )
                            .into(),
                        });
                    }
                    backoff(round).await;
                }
                round += 1;
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| other(context.to_owned(), e))?;
                let out = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(|e| sdk_error(e, context.to_owned()))?;
                found.extend(
                    out.responses
                        .and_then(|mut r| r.remove(&self.table))
                        .unwrap_or_default(),
                );
                pending = out
                    .unprocessed_keys
                    .and_then(|mut u| u.remove(&self.table))
                    .map(|k| k.keys)
                    .unwrap_or_default();
            }
        }
        Ok(found)
    }

    /// BatchWriteItem deletes in chunks of 25, retrying UnprocessedItems with backoff.
    async fn batch_delete(&self, keys: Vec<Item>, context: &str) -> Result<(), StateError> {
        for chunk in keys.chunks(BATCH_WRITE_MAX) {
            let mut pending = Vec::with_capacity(chunk.len());
            for key in chunk {
                let delete = DeleteRequest::builder()
                    .set_key(Some(key.clone()))
                    .build()
                    .map_err(|e| other(context.to_owned(), e))?;
                pending.push(WriteRequest::builder().delete_request(delete).build());
            }
            let mut round = 0;
            while !pending.is_empty() {
                if round > 0 {
                    if round >= UNPROCESSED_ATTEMPTS {
                        return Err(StateError::Transient {
                            context: context.to_owned(),
                            source: format!(
                                "{} deletes still unprocessed after {round} rounds",
                                pending.len()
                            )
                            .into(),
                        });
                    }
                    backoff(round).await;
                }
                round += 1;
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, std::mem::take(&mut pending))
                    .send()
                    .await
                    .map_err(|e| sdk_error(e, context.to_owned()))?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&self.table))
                    .unwrap_or_default();
            }
        }
        Ok(())
    }

    async fn transact(
        &self,
        items: Vec<TransactWriteItem>,
    ) -> Result<(), SdkError<TransactWriteItemsError, HttpResponse>> {
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map(|_| ())
    }

    fn put(
        &self,
        item: Item,
        condition: Option<&str>,
        context: &str,
    ) -> Result<TransactWriteItem, StateError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .set_condition_expression(condition.map(str::to_owned))
            .build()
            .map_err(|e| other(context.to_owned(), e))?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    async fn get_connector_item(&self, id: &str) -> Result<Option<Item>, StateError> {
        self.get_item(meta_key(id), &self.ctx(format!("read connector {id}")))
            .await
    }

    fn parse_connector(&self, item: &Item) -> Result<Connector, StateError> {
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

    fn parse_entry(&self, item: &Item) -> Result<LedgerEntry, StateError> {
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

    fn parse_template(&self, item: &Item) -> Result<StoredTemplate, StateError> {
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

    async fn latest_template_item(
        &self,
        id: &str,
        context: &str,
    ) -> Result<Option<Item>, StateError> {
        let mut items = self
            .query(
                format!("TEMPLATE#{id}"),
                VERSION_PREFIX,
                None,
                true,
                Some(1),
                context,
            )
            .await?;
        Ok(items.pop())
    }

    /// One conditional UpdateItem on a ledger entry held by `owner`; a failed condition is a [`StateError::Conflict`].
    async fn update_held_file(
        &self,
        connector_id: &str,
        file_id: &str,
        owner: &str,
        mut expr: Expr,
        update: String,
        context: String,
    ) -> Result<(), StateError> {
        let status = expr.name("status");
        let lease_owner = expr.name("lease_owner");
        let processing = expr.value("processing", s(FileStatus::Processing.as_str()));
        let owner_value = expr.value("owner", s(owner));
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(file_key(connector_id, file_id)))
            .update_expression(update)
            .condition_expression(format!(
                "{status} = {processing} AND {lease_owner} = {owner_value}"
            ))
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => Err(StateError::Conflict {
                what: format!("lease on file {file_id} of connector {connector_id}"),
            }),
            Err(e) => Err(sdk_error(e, context)),
        }
    }
}

/// Creates the state table if it does not exist (PAY_PER_REQUEST, `pk`/`sk` strings, TTL on `expires_at`)
/// and waits until it is ACTIVE. Safe to call on every start: an existing table is left as it is.
pub async fn create_state_table(client: &Client, table: &str) -> Result<(), StateError> {
    let context = |what: &str| format!("{what} state table {table}");
    let definition = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| other(context("define"), e))
    };
    let schema = |name: &str, key_type: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(key_type)
            .build()
            .map_err(|e| other(context("define"), e))
    };
    let created = client
        .create_table()
        .table_name(table)
        .attribute_definitions(definition(PK)?)
        .attribute_definitions(definition(SK)?)
        .key_schema(schema(PK, KeyType::Hash)?)
        .key_schema(schema(SK, KeyType::Range)?)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(e) if error_code(&e) == Some("ResourceInUseException") => {}
        Err(e) => return Err(sdk_error(e, context("create"))),
    }

    // A new table is CREATING for a few seconds on AWS (at once on the emulator).
    let mut waited = StdDuration::ZERO;
    loop {
        let out = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| sdk_error(e, context("describe")))?;
        if out.table.as_ref().and_then(|t| t.table_status.as_ref()) == Some(&TableStatus::Active) {
            break;
        }
        if waited >= StdDuration::from_secs(120) {
            return Err(StateError::Transient {
                context: context("wait for"),
                source: "table not ACTIVE after 120 s".into(),
            });
        }
        tokio::time::sleep(StdDuration::from_millis(500)).await;
        waited += StdDuration::from_millis(500);
    }

    let ttl = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| sdk_error(e, context("describe TTL of")))?;
    let status = ttl
        .time_to_live_description
        .and_then(|d| d.time_to_live_status);
    if !matches!(
        status,
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
    ) {
        let spec = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(TTL_ATTRIBUTE)
            .build()
            .map_err(|e| other(context("define TTL of"), e))?;
        match client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(spec)
            .send()
            .await
        {
            Ok(_) => {}
            // Two callers racing: the other one enabled it.
            Err(e)
                if e.as_service_error()
                    .and_then(|s| s.message())
                    .is_some_and(|m| m.contains("already enabled")) => {}
            Err(e) => return Err(sdk_error(e, context("enable TTL on"))),
        }
    }
    Ok(())
}

#[async_trait]
impl ConnectorStore for DynamoStateStore {
    async fn create_connector(&self, connector: &Connector) -> Result<(), StateError> {
        let context = self.ctx(format!(
            "create connector {} ({:?})",
            connector.id, connector.name
        ));
        let mut meta =
            to_item(connector, &CONNECTOR_MILLIS).map_err(|e| other(context.clone(), e))?;
        meta.extend(meta_key(&connector.id));
        let mut name = name_key(&connector.name);
        name.insert("connector_id".into(), s(&connector.id));
        let mut index = index_key(&connector.id);
        index.insert("connector_id".into(), s(&connector.id));
        let absent = Some("attribute_not_exists(pk)");
        // One transaction: the name is reserved if and only if the connector exists.
        let items = vec![
            self.put(meta, absent, &context)?,
            self.put(name, absent, &context)?,
            self.put(index, absent, &context)?,
        ];
        self.transact(items).await.map_err(|e| {
            transaction_error(e, context.clone(), |failed| {
                Some(if failed.contains(&1) {
                    StateError::NameTaken {
                        name: connector.name.clone(),
                    }
                } else {
                    StateError::Conflict {
                        what: format!("connector {}", connector.id),
                    }
                })
            })
        })
    }

    async fn get_connector(&self, id: &str) -> Result<Option<Connector>, StateError> {
        self.get_connector_item(id)
            .await?
            .map(|item| self.parse_connector(&item))
            .transpose()
    }

    async fn find_connector_by_name(&self, name: &str) -> Result<Option<Connector>, StateError> {
        let item = self
            .get_item(
                name_key(name),
                &self.ctx(format!("find connector named {name:?}")),
            )
            .await?;
        match item.as_ref().and_then(|i| attr_str(i, "connector_id")) {
            Some(id) => self.get_connector(id).await,
            None => Ok(None),
        }
    }

    async fn list_connectors(&self) -> Result<Vec<Connector>, StateError> {
        let context = self.ctx("list connectors");
        let index = self
            .query(CONNECTORS_PK.to_owned(), "", None, false, None, &context)
            .await?;
        let keys = index
            .iter()
            .filter_map(|i| attr_str(i, SK))
            .map(meta_key)
            .collect();
        let mut connectors: Vec<Connector> = self
            .batch_get(keys, &context)
            .await?
            .iter()
            .map(|item| self.parse_connector(item))
            .collect::<Result<_, _>>()?;
        connectors.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        Ok(connectors)
    }

    async fn update_connector(&self, connector: &Connector) -> Result<(), StateError> {
        let id = &connector.id;
        let context = self.ctx(format!("update connector {id}"));
        let Some(old) = self.get_connector_item(id).await? else {
            return Err(StateError::NotFound {
                what: format!("connector {id}"),
            });
        };
        let old_name = attr_str(&old, "name").unwrap_or_default().to_owned();
        let new = to_item(connector, &CONNECTOR_MILLIS).map_err(|e| other(context.clone(), e))?;
        // The watermark and last sync belong to the lister; the id is the key.
        let untouched = ["id", "watermark", "last_sync", PK, SK];
        let mut expr = Expr::default();
        let mut sets = Vec::new();
        for (i, (attr, value)) in new
            .into_iter()
            .filter(|(a, _)| !untouched.contains(&a.as_str()))
            .enumerate()
        {
            let name = expr.name(&attr);
            let value = expr.value(&format!("v{i}"), value);
            sets.push(format!("{name} = {value}"));
        }
        // Attributes the new settings no longer have (an optional field set to None) are removed.
        let stale: Vec<String> = old
            .keys()
            .filter(|a| !untouched.contains(&a.as_str()) && !INTERNAL.contains(&a.as_str()))
            .filter(|a| !expr.names.values().any(|n| n == *a))
            .cloned()
            .collect();
        let removes: Vec<String> = stale.iter().map(|a| expr.name(a)).collect();
        let mut update = format!("SET {}", sets.join(", "));
        if !removes.is_empty() {
            update.push_str(&format!(" REMOVE {}", removes.join(", ")));
        }
        // Optimistic: the name read above must still be the stored one, or the name index would drift.
        let name_attr = expr.name("name");
        let old_name_value = expr.value("old_name", s(&old_name));
        let condition = format!("attribute_exists(pk) AND {name_attr} = {old_name_value}");
        let conflict = || StateError::Conflict {
            what: format!("connector {id}"),
        };

        if old_name == connector.name {
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(meta_key(id)))
                .update_expression(update)
                .condition_expression(condition)
                .set_expression_attribute_names(expr.names())
                .set_expression_attribute_values(expr.values())
                .send()
                .await;
            return match result {
                Ok(_) => Ok(()),
                Err(e) if is_condition_failed(&e) => Err(conflict()),
                Err(e) => Err(sdk_error(e, context)),
            };
        }

        // A rename: update the connector, free the old name and take the new one, atomically.
        let meta_update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(meta_key(id)))
            .update_expression(update)
            .condition_expression(condition)
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .build()
            .map_err(|e| other(context.clone(), e))?;
        let free_old = Delete::builder()
            .table_name(&self.table)
            .set_key(Some(name_key(&old_name)))
            .condition_expression("attribute_not_exists(pk) OR connector_id = :id")
            .expression_attribute_values(":id", s(id))
            .build()
            .map_err(|e| other(context.clone(), e))?;
        let mut new_name = name_key(&connector.name);
        new_name.insert("connector_id".into(), s(id));
        let items = vec![
            TransactWriteItem::builder().update(meta_update).build(),
            TransactWriteItem::builder().delete(free_old).build(),
            self.put(new_name, Some("attribute_not_exists(pk)"), &context)?,
        ];
        self.transact(items).await.map_err(|e| {
            transaction_error(e, context.clone(), |failed| {
                Some(if failed.contains(&2) {
                    StateError::NameTaken {
                        name: connector.name.clone(),
                    }
                } else {
                    conflict()
                })
            })
        })
    }

    async fn delete_connector(&self, id: &str) -> Result<u64, StateError> {
        let context = self.ctx(format!("delete connector {id}"));
        let meta = self.get_connector_item(id).await?;
        let items = self
            .query(connector_pk(id), "", None, false, None, &context)
            .await?;
        let count = items.len() as u64;
        // META goes last: until it is gone, a retry after a failure here still knows the name to free.
        let mut keys: Vec<Item> = items
            .iter()
            .filter(|item| attr_str(item, SK) != Some(META))
            .filter_map(|item| Some(key(attr_str(item, PK)?.to_owned(), attr_str(item, SK)?)))
            .collect();
        keys.push(index_key(id));
        keys.push(lease_key(&sync_lease_name(id)));
        self.batch_delete(keys, &context).await?;
        if let Some(name) = meta.as_ref().and_then(|m| attr_str(m, "name")) {
            let result = self
                .client
                .delete_item()
                .table_name(&self.table)
                .set_key(Some(name_key(name)))
                // Only our own reservation: after a rename race the name may belong to another connector.
                .condition_expression("connector_id = :id")
                .expression_attribute_values(":id", s(id))
                .send()
                .await;
            match result {
                Ok(_) => {}
                Err(e) if is_condition_failed(&e) => {}
                Err(e) => return Err(sdk_error(e, context)),
            }
        }
        if meta.is_some() {
            self.batch_delete(vec![meta_key(id)], &context).await?;
        }
        Ok(count)
    }

    async fn advance_watermark(&self, id: &str, to: DateTime<Utc>) -> Result<(), StateError> {
        let context = self.ctx(format!("advance the watermark of connector {id}"));
        let mut expr = Expr::default();
        let watermark = expr.name("watermark");
        let to_value = expr.value("to", n(millis_n(to)));
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(meta_key(id)))
            .update_expression(format!("SET {watermark} = {to_value}"))
            // Monotonic: two listers (or a retried one) never move it back.
            .condition_expression(format!(
                "attribute_exists(pk) AND (attribute_not_exists({watermark}) OR {watermark} < {to_value})"
            ))
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => {
                let exists = match e.as_service_error() {
                    Some(UpdateItemError::ConditionalCheckFailedException(c))
                        if c.item().is_some() =>
                    {
                        true
                    }
                    _ => self.get_connector_item(id).await?.is_some(),
                };
                if exists {
                    Ok(())
                } else {
                    Err(StateError::NotFound {
                        what: format!("connector {id}"),
                    })
                }
            }
            Err(e) => Err(sdk_error(e, context)),
        }
    }
}

#[async_trait]
impl SyncHistory for DynamoStateStore {
    async fn record_sync_run(&self, run: &SyncRun) -> Result<(), StateError> {
        let id = &run.connector_id;
        let context = self.ctx(format!("record a sync run of connector {id}"));
        let mut item = to_item(run, &[]).map_err(|e| other(context.clone(), e))?;
        item.extend(key(connector_pk(id), sync_sk(run.started_at)));
        item.insert(
            TTL_ATTRIBUTE.into(),
            n((run.started_at + SYNC_RUN_RETENTION).timestamp()),
        );
        let run_value = json_av(run).map_err(|e| other(context.clone(), e))?;
        let last_sync = Update::builder()
            .table_name(&self.table)
            .set_key(Some(meta_key(id)))
            .update_expression("SET #last_sync = :run")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#last_sync", "last_sync")
            .expression_attribute_values(":run", run_value)
            .build()
            .map_err(|e| other(context.clone(), e))?;
        let items = vec![
            self.put(item, None, &context)?,
            TransactWriteItem::builder().update(last_sync).build(),
        ];
        self.transact(items).await.map_err(|e| {
            transaction_error(e, context.clone(), |_| {
                Some(StateError::NotFound {
                    what: format!("connector {id}"),
                })
            })
        })
    }

    async fn list_sync_runs(
        &self,
        connector_id: &str,
        limit: usize,
    ) -> Result<Vec<SyncRun>, StateError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let context = self.ctx(format!("list sync runs of connector {connector_id}"));
        let items = self
            .query(
                connector_pk(connector_id),
                SYNC_PREFIX,
                None,
                true,
                Some(limit),
                &context,
            )
            .await?;
        items
            .iter()
            .map(|item| from_item(item, &[]).map_err(|e| other(context.clone(), e)))
            .collect()
    }
}

#[async_trait]
impl TemplateStore for DynamoStateStore {
    async fn put_template(
        &self,
        id: &str,
        source: &str,
        template: &Template,
        now: DateTime<Utc>,
    ) -> Result<u32, StateError> {
        let context = self.ctx(format!("store template {id:?}"));
        let template_json =
            serde_json::to_string(template).map_err(|e| other(context.clone(), e))?;
        // The listing index first (idempotent): a version is never stored without being listable.
        let mut index = key(TEMPLATES_PK.to_owned(), id);
        index.insert("id".into(), s(id));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(index))
            .send()
            .await
            .map_err(|e| sdk_error(e, context.clone()))?;
        for _ in 0..TEMPLATE_VERSION_ATTEMPTS {
            let latest = match self.latest_template_item(id, &context).await? {
                Some(item) => self.parse_template(&item)?.version,
                None => 0,
            };
            let version = latest + 1;
            let mut item = template_key(id, version);
            item.insert("id".into(), s(id));
            item.insert("version".into(), n(version));
            item.insert("source".into(), s(source));
            item.insert("template".into(), s(template_json.clone()));
            item.insert(
                "created_at".into(),
                time_s(now).map_err(|e| other(context.clone(), e))?,
            );
            let result = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await;
            match result {
                Ok(_) => return Ok(version),
                // Another writer took this version number: read the latest again.
                Err(e) if is_condition_failed(&e) => continue,
                Err(e) => return Err(sdk_error(e, context)),
            }
        }
        Err(StateError::Conflict {
            what: format!("template {id:?} (too many concurrent versions)"),
        })
    }

    async fn get_template(
        &self,
        id: &str,
        version: Option<u32>,
    ) -> Result<Option<StoredTemplate>, StateError> {
        let context = self.ctx(format!("read template {id:?}"));
        let item = match version {
            Some(v) => self.get_item(template_key(id, v), &context).await?,
            None => self.latest_template_item(id, &context).await?,
        };
        item.map(|item| self.parse_template(&item)).transpose()
    }

    async fn list_templates(&self) -> Result<Vec<StoredTemplate>, StateError> {
        let context = self.ctx("list templates");
        let index = self
            .query(TEMPLATES_PK.to_owned(), "", None, false, None, &context)
            .await?;
        let mut templates = Vec::with_capacity(index.len());
        for id in index.iter().filter_map(|i| attr_str(i, SK)) {
            if let Some(item) = self.latest_template_item(id, &context).await? {
                templates.push(self.parse_template(&item)?);
            }
        }
        Ok(templates)
    }
}

#[async_trait]
impl LeaseStore for DynamoStateStore {
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<bool, StateError> {
        let until = now + ttl;
        let mut item = lease_key(name);
        item.insert("owner".into(), s(owner));
        item.insert("lease_until".into(), n(millis_n(until)));
        // DynamoDB's TTL sweeps abandoned leases (a day after expiry: TTL deletion is not prompt).
        item.insert(
            TTL_ATTRIBUTE.into(),
            n((until + chrono::Duration::days(1)).timestamp()),
        );
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR #owner = :owner OR #until < :now")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#until", "lease_until")
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":now", n(millis_n(now)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(sdk_error(
                e,
                self.ctx(format!("acquire lease {name:?} for {owner}")),
            )),
        }
    }

    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StateError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(lease_key(name)))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Expired and taken over (or never held): nothing of ours to release.
            Err(e) if is_condition_failed(&e) => Ok(()),
            Err(e) => Err(sdk_error(
                e,
                self.ctx(format!("release lease {name:?} for {owner}")),
            )),
        }
    }
}

#[async_trait]
impl FileLedger for DynamoStateStore {
    async fn get_files(
        &self,
        connector_id: &str,
        file_ids: &[String],
    ) -> Result<HashMap<String, LedgerEntry>, StateError> {
        let context = self.ctx(format!(
            "read {} ledger entries of connector {connector_id}",
            file_ids.len()
        ));
        // BatchGetItem rejects a request that names the same key twice.
        let mut seen = HashSet::with_capacity(file_ids.len());
        let keys: Vec<Item> = file_ids
            .iter()
            .filter(|id| seen.insert(id.as_str()))
            .map(|id| file_key(connector_id, id))
            .collect();
        let mut found = HashMap::with_capacity(keys.len());
        for item in self.batch_get(keys, &context).await? {
            let Some(file_id) = attr_str(&item, SK).and_then(|sk| sk.strip_prefix(FILE_PREFIX))
            else {
                continue;
            };
            let file_id = file_id.to_owned();
            found.insert(file_id, self.parse_entry(&item)?);
        }
        Ok(found)
    }

    async fn get_file(
        &self,
        connector_id: &str,
        file_id: &str,
    ) -> Result<Option<LedgerEntry>, StateError> {
        let context = self.ctx(format!("read file {file_id} of connector {connector_id}"));
        let item = self
            .get_item(file_key(connector_id, file_id), &context)
            .await?;
        item.map(|item| self.parse_entry(&item)).transpose()
    }

    async fn list_files(
        &self,
        connector_id: &str,
        status: Option<FileStatus>,
    ) -> Result<Vec<LedgerEntry>, StateError> {
        let context = self.ctx(format!("list files of connector {connector_id}"));
        let items = self
            .query(
                connector_pk(connector_id),
                FILE_PREFIX,
                status,
                false,
                None,
                &context,
            )
            .await?;
        items.iter().map(|item| self.parse_entry(item)).collect()
    }

    async fn claim_file(&self, entry: &LedgerEntry) -> Result<ClaimOutcome, StateError> {
        let connector_id = &entry.version.connector_id;
        let file_id = entry.version.file_id();
        let context = self.ctx(format!("claim file {file_id} of connector {connector_id}"));
        let mut item = to_item(entry, &FILE_MILLIS).map_err(|e| other(context.clone(), e))?;
        item.extend(file_key(connector_id, &file_id));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            // Exactly one lister creates an entry: the ledger, not the listing, decides what is new.
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(ClaimOutcome::Claimed),
            Err(e) if is_condition_failed(&e) => Ok(ClaimOutcome::AlreadyKnown),
            Err(e) => Err(sdk_error(e, context)),
        }
    }

    async fn mark_queued(
        &self,
        connector_id: &str,
        file_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StateError> {
        let context = self.ctx(format!(
            "mark file {file_id} of connector {connector_id} queued"
        ));
        let mut expr = Expr::default();
        let status = expr.name("status");
        let queued_at = expr.name("queued_at");
        let claimed = expr.value("claimed", s(FileStatus::Claimed.as_str()));
        let queued = expr.value("queued", s(FileStatus::Queued.as_str()));
        let at = expr.value("at", time_s(at).map_err(|e| other(context.clone(), e))?);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(file_key(connector_id, file_id)))
            .update_expression(format!("SET {status} = {queued}, {queued_at} = {at}"))
            // A worker may already have started it (SQS can deliver before we get here): then leave it.
            .condition_expression(format!("{status} = {claimed}"))
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => Ok(()),
            Err(e) => Err(sdk_error(e, context)),
        }
    }

    async fn start_file(
        &self,
        connector_id: &str,
        file_id: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<StartOutcome, StateError> {
        let context = self.ctx(format!("start file {file_id} of connector {connector_id}"));
        let mut expr = Expr::default();
        let status = expr.name("status");
        let owner_name = expr.name("lease_owner");
        let until_name = expr.name("lease_until");
        let started_at = expr.name("started_at");
        let attempts = expr.name("attempts");
        let claimed = expr.value("claimed", s(FileStatus::Claimed.as_str()));
        let queued = expr.value("queued", s(FileStatus::Queued.as_str()));
        let processing = expr.value("processing", s(FileStatus::Processing.as_str()));
        let owner_value = expr.value("owner", s(owner));
        let until_value = expr.value("until", n(millis_n(lease_until)));
        let now_ms = expr.value("now_ms", n(millis_n(now)));
        let now_s = expr.value("now", time_s(now).map_err(|e| other(context.clone(), e))?);
        let zero = expr.value("zero", n(0));
        let one = expr.value("one", n(1));
        let update = format!(
            "SET {status} = {processing}, {owner_name} = {owner_value}, {until_name} = {until_value}, \
             {started_at} = {now_s}, {attempts} = if_not_exists({attempts}, {zero}) + {one}"
        );
        // A lease ends strictly after `lease_until`; a missing one (never expected) counts as expired.
        let condition = format!(
            "{status} IN ({claimed}, {queued}) OR ({status} = {processing} AND \
             (attribute_not_exists({until_name}) OR {until_name} < {now_ms}))"
        );
        for _ in 0..START_ATTEMPTS {
            let result = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(file_key(connector_id, file_id)))
                .update_expression(&update)
                .condition_expression(&condition)
                .set_expression_attribute_names(expr.names())
                .set_expression_attribute_values(expr.values())
                .return_values(ReturnValue::AllNew)
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await;
            let old = match result {
                Ok(out) => {
                    let item = out.attributes.unwrap_or_default();
                    return Ok(StartOutcome::Started(Box::new(self.parse_entry(&item)?)));
                }
                Err(e) if is_condition_failed(&e) => match e.into_service_error() {
                    UpdateItemError::ConditionalCheckFailedException(c) if c.item.is_some() => {
                        c.item
                    }
                    // No old item returned: either there is none, or the endpoint does not implement
                    // ReturnValuesOnConditionCheckFailure; a consistent read tells which.
                    _ => {
                        self.get_item(file_key(connector_id, file_id), &context)
                            .await?
                    }
                },
                Err(e) => return Err(sdk_error(e, context)),
            };
            let Some(old) = old else {
                return Ok(StartOutcome::Unknown);
            };
            let entry = self.parse_entry(&old)?;
            match (entry.status, entry.lease_until) {
                (FileStatus::Processing, Some(until)) if until >= now => {
                    return Ok(StartOutcome::Busy(until))
                }
                (status, _) if status.is_terminal() => {
                    return Ok(StartOutcome::AlreadyFinished(status))
                }
                // It changed between the write and the read (released, or its lease ran out): try again.
                _ => continue,
            }
        }
        Err(StateError::Conflict {
            what: format!("file {file_id} of connector {connector_id}"),
        })
    }

    async fn renew_file(
        &self,
        connector_id: &str,
        file_id: &str,
        owner: &str,
        lease_until: DateTime<Utc>,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), StateError> {
        let context = self.ctx(format!(
            "renew the lease on file {file_id} of connector {connector_id}"
        ));
        let mut expr = Expr::default();
        let until_name = expr.name("lease_until");
        let until_value = expr.value("until", n(millis_n(lease_until)));
        let mut update = format!("SET {until_name} = {until_value}");
        if let Some(checkpoint) = checkpoint {
            let name = expr.name("checkpoint");
            let value = expr.value(
                "checkpoint",
                json_av(checkpoint).map_err(|e| other(context.clone(), e))?,
            );
            update.push_str(&format!(", {name} = {value}"));
        }
        self.update_held_file(connector_id, file_id, owner, expr, update, context)
            .await
    }

    async fn checkpoint_file(
        &self,
        connector_id: &str,
        file_id: &str,
        owner: &str,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), StateError> {
        let context = self.ctx(format!(
            "checkpoint file {file_id} of connector {connector_id}"
        ));
        let mut expr = Expr::default();
        let status = expr.name("status");
        let until = expr.name("lease_until");
        let lease_owner = expr.name("lease_owner");
        let queued = expr.value("queued", s(FileStatus::Queued.as_str()));
        let mut set = format!("SET {status} = {queued}");
        if let Some(checkpoint) = checkpoint {
            let name = expr.name("checkpoint");
            let value = expr.value(
                "checkpoint",
                json_av(checkpoint).map_err(|e| other(context.clone(), e))?,
            );
            set.push_str(&format!(", {name} = {value}"));
        }
        let update = format!("{set} REMOVE {lease_owner}, {until}");
        self.update_held_file(connector_id, file_id, owner, expr, update, context)
            .await
    }

    async fn mark_continued(
        &self,
        connector_id: &str,
        file_id: &str,
        piece: u32,
    ) -> Result<(), StateError> {
        let context = self.ctx(format!(
            "mark the continuation of file {file_id} of connector {connector_id}"
        ));
        let mut expr = Expr::default();
        let checkpoint = expr.name("checkpoint");
        let piece_name = expr.name("piece");
        let continued = expr.name("continued");
        let piece_value = expr.value("piece", n(u64::from(piece)));
        let yes = expr.value("yes", AttributeValue::Bool(true));
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(file_key(connector_id, file_id)))
            .update_expression(format!("SET {checkpoint}.{continued} = {yes}"))
            .condition_expression(format!("{checkpoint}.{piece_name} = {piece_value}"))
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => Ok(()),
            Err(e) => Err(sdk_error(e, context)),
        }
    }

    async fn finish_file(&self, entry: &LedgerEntry, owner: &str) -> Result<(), StateError> {
        entry.check_final()?;
        let connector_id = &entry.version.connector_id;
        let file_id = entry.version.file_id();
        let context = self.ctx(format!("finish file {file_id} of connector {connector_id}"));
        let mut item = to_item(entry, &FILE_MILLIS).map_err(|e| other(context.clone(), e))?;
        item.extend(file_key(connector_id, &file_id));
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            // Only the lease holder writes the outcome: a worker whose lease expired and was taken over
            // must not overwrite the newer attempt's result.
            .condition_expression("#status = :processing AND #owner = :owner")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#owner", "lease_owner")
            .expression_attribute_values(":processing", s(FileStatus::Processing.as_str()))
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if is_condition_failed(&e) => Err(StateError::Conflict {
                what: format!("lease on file {file_id} of connector {connector_id}"),
            }),
            Err(e) => Err(sdk_error::<PutItemError>(e, context)),
        }
    }

    async fn release_file(
        &self,
        connector_id: &str,
        file_id: &str,
        owner: &str,
        error: &str,
    ) -> Result<(), StateError> {
        let context = self.ctx(format!(
            "release file {file_id} of connector {connector_id}"
        ));
        let mut expr = Expr::default();
        let status = expr.name("status");
        let error_name = expr.name("error");
        let until = expr.name("lease_until");
        let lease_owner = expr.name("lease_owner");
        let queued = expr.value("queued", s(FileStatus::Queued.as_str()));
        let error_value = expr.value("error", s(error));
        let update = format!(
            "SET {status} = {queued}, {error_name} = {error_value} REMOVE {lease_owner}, {until}"
        );
        self.update_held_file(connector_id, file_id, owner, expr, update, context)
            .await
    }

    async fn retry_file(
        &self,
        connector_id: &str,
        file_id: &str,
        _now: DateTime<Utc>,
    ) -> Result<bool, StateError> {
        let context = self.ctx(format!("retry file {file_id} of connector {connector_id}"));
        let mut expr = Expr::default();
        let status = expr.name("status");
        let failed = expr.value("failed", s(FileStatus::Failed.as_str()));
        let claimed = expr.value("claimed", s(FileStatus::Claimed.as_str()));
        let zero = expr.value("zero", n(0));
        let imported = expr.name("rows_imported");
        let rejected = expr.name("rows_rejected");
        // The same reset as `reset_for_retry` (the contract suite compares both stores against it).
        let removed: Vec<String> = [
            "queued_at",
            "finished_at",
            "lease_until",
            "lease_owner",
            "error_report",
            "error",
            "checkpoint",
        ]
        .iter()
        .map(|a| expr.name(a))
        .collect();
        let update = format!(
            "SET {status} = {claimed}, {imported} = {zero}, {rejected} = {zero} REMOVE {}",
            removed.join(", ")
        );
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(file_key(connector_id, file_id)))
            .update_expression(update)
            .condition_expression(format!("{status} = {failed}"))
            .set_expression_attribute_names(expr.names())
            .set_expression_attribute_values(expr.values())
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if is_condition_failed(&e) => Ok(false),
            Err(e) => Err(sdk_error(e, context)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
    use aws_sdk_dynamodb::types::error::{
        ConditionalCheckFailedException, ProvisionedThroughputExceededException,
    };
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use chrono::TimeZone;
    use s3_importer_core::sync::model::{FileVersion, ObjectMeta};

    fn entry() -> LedgerEntry {
        let at = Utc
            .timestamp_opt(1_735_689_600, 123_456_789)
            .single()
            .unwrap_or_default();
        let version = FileVersion {
            connector_id: "c-1".into(),
            bucket: "b".into(),
            key: "in/a.csv".into(),
            etag: "\"e1\"".into(),
            version_id: None,
        };
        let object = ObjectMeta {
            key: version.key.clone(),
            etag: version.etag.clone(),
            size: 10,
            last_modified: at,
            storage_class: None,
            restored: false,
        };
        LedgerEntry::discovered(version, &object, at)
    }

    /// Errors from the wire always carry their code (the SDK's deserializer sets it); built ones must too.
    fn meta(code: &str) -> aws_sdk_dynamodb::error::ErrorMetadata {
        aws_sdk_dynamodb::error::ErrorMetadata::builder()
            .code(code)
            .message("from the mock")
            .build()
    }

    fn store(client: Client) -> DynamoStateStore {
        DynamoStateStore::new(client, "state")
    }

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

    #[tokio::test]
    async fn claim_file_is_a_conditional_put_and_a_failed_condition_means_already_known(
    ) -> Result<(), StateError> {
        let rule = mock!(Client::put_item)
            .match_requests(|req| {
                req.table_name() == Some("state")
                    && req.condition_expression() == Some("attribute_not_exists(pk)")
                    && req
                        .item()
                        .and_then(|i| i.get("sk"))
                        .and_then(|v| v.as_s().ok())
                        .is_some_and(|sk| sk.starts_with("FILE#"))
                    && req.item().and_then(|i| i.get("pk")) == Some(&s("CONNECTOR#c-1"))
            })
            .then_error(|| {
                PutItemError::ConditionalCheckFailedException(
                    ConditionalCheckFailedException::builder()
                        .message("The conditional request failed")
                        .meta(meta("ConditionalCheckFailedException"))
                        .build(),
                )
            });
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, &[&rule]);
        assert_eq!(
            store(client).claim_file(&entry()).await?,
            ClaimOutcome::AlreadyKnown
        );
        assert_eq!(rule.num_calls(), 1);
        Ok(())
    }

    #[tokio::test]
    async fn claim_file_succeeds_when_the_put_does() -> Result<(), StateError> {
        let rule = mock!(Client::put_item).then_output(|| PutItemOutput::builder().build());
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, &[&rule]);
        assert_eq!(
            store(client).claim_file(&entry()).await?,
            ClaimOutcome::Claimed
        );
        Ok(())
    }

    #[tokio::test]
    async fn throttling_is_transient_and_names_what_was_done() {
        let rule = mock!(Client::put_item)
            .sequence()
            .error(|| {
                PutItemError::ProvisionedThroughputExceededException(
                    ProvisionedThroughputExceededException::builder()
                        .message("slow down")
                        .meta(meta("ProvisionedThroughputExceededException"))
                        .build(),
                )
            })
            .repeatedly()
            .build();
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, &[&rule], |c| c
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled()));
        let err = store(client).claim_file(&entry()).await.err();
        assert!(matches!(err, Some(StateError::Transient { .. })), "{err:?}");
        let text = err.map(|e| format!("{e}")).unwrap_or_default();
        assert!(
            text.contains("claim file")
                && text.contains("connector c-1")
                && text.contains("table state"),
            "{text}"
        );
        assert!(
            text.contains("ProvisionedThroughputExceededException: from the mock"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn start_file_explains_a_failed_condition_with_the_returned_item(
    ) -> Result<(), StateError> {
        let mut busy = entry();
        busy.status = FileStatus::Processing;
        let until = busy.discovered_at + chrono::Duration::minutes(10);
        busy.lease_until = Some(until);
        busy.lease_owner = Some("other".into());
        let mut old = to_item(&busy, &FILE_MILLIS).map_err(|e| other("test".into(), e))?;
        old.extend(file_key("c-1", &busy.version.file_id()));
        let rule = mock!(Client::update_item)
            .match_requests(|req| {
                req.return_values_on_condition_check_failure()
                    == Some(&ReturnValuesOnConditionCheckFailure::AllOld)
                    && req
                        .condition_expression()
                        .is_some_and(|c| c.contains("IN (:claimed, :queued)"))
            })
            .then_error(move || {
                UpdateItemError::ConditionalCheckFailedException(
                    ConditionalCheckFailedException::builder()
                        .set_item(Some(old.clone()))
                        .meta(meta("ConditionalCheckFailedException"))
                        .build(),
                )
            });
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, &[&rule]);
        let now = busy.discovered_at;
        let outcome = store(client)
            .start_file(
                "c-1",
                &busy.version.file_id(),
                "me",
                now,
                now + chrono::Duration::minutes(1),
            )
            .await?;
        assert_eq!(outcome, StartOutcome::Busy(until));
        Ok(())
    }
}
