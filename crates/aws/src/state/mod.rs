//! The [`StateStore`](s3_importer_core::sync::ports::StateStore) on one DynamoDB table, checked by the same
//! contract suite as the in-memory store (`docs/architecture.md`, "Ports and adapters" and "The ledger").
//!
//! One file per capability: [`ConnectorStore`](s3_importer_core::sync::ports::ConnectorStore) in
//! `connectors.rs`, `TemplateStore` in `templates.rs`, `FileLedger` in `ledger.rs`, `LeaseStore` in
//! `leases.rs`, `SyncHistory` in `history.rs`; items ↔ model in `codec.rs`, expression placeholders in
//! `expr.rs`, the one helper for conditional writes in `conditional.rs`. This file holds the store, the
//! error mapping and the requests the capabilities share, and the table itself.
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
//! Every conditional write goes through one helper (`conditional.rs`), and every failed condition becomes a
//! domain outcome ([`ClaimOutcome::AlreadyKnown`], [`StartOutcome`], [`StateError::NameTaken`],
//! [`StateError::Conflict`], [`StateError::NotFound`], or nothing to do). Other failures go through the
//! crate's one classification ([`crate::error`], `docs/architecture.md`, "Errors and retries"): throttling,
//! HTTP 429 and 5xx, timeouts and transactions cancelled by conflicts or throttling become
//! [`StateError::Transient`] (after the SDK's own retries); anything else [`StateError::Other`], with what
//! was being done and in which table.
//!
//! [`ClaimOutcome::AlreadyKnown`]: s3_importer_core::sync::ports::ClaimOutcome::AlreadyKnown
//! [`StartOutcome`]: s3_importer_core::sync::ports::StartOutcome

mod codec;
mod conditional;
mod connectors;
mod expr;
mod history;
mod leases;
mod ledger;
mod templates;

use std::collections::HashMap;
use std::time::Duration as StdDuration;

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, DeleteRequest, KeySchemaElement, KeyType,
    KeysAndAttributes, Put, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
    TimeToLiveStatus, TransactWriteItem, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use chrono::Utc;
use s3_importer_core::sync::model::FileStatus;
use s3_importer_core::sync::ports::StateError;

use codec::s;
pub use codec::{millis_n, parse_millis};
use expr::Expr;

use crate::error::{AwsCallError, TransactionFailure};

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
// Errors: the crate's policy, with what was being done
// ---------------------------------------------------------------------------------------------------------

/// A failed call that is not a domain outcome: transient or not by the crate's one classification.
fn state_error(err: AwsCallError, context: String) -> StateError {
    let transient = err.is_retryable();
    classified(transient, Box::new(err), context)
}

/// [`StateError::Transient`] or [`StateError::Other`], by the policy's answer.
fn classified(transient: bool, source: BoxError, context: String) -> StateError {
    if transient {
        StateError::Transient { context, source }
    } else {
        StateError::Other { context, source }
    }
}

/// [`state_error`] of an SDK error.
fn sdk_error<E>(err: SdkError<E, HttpResponse>, context: String) -> StateError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    state_error(AwsCallError::from_sdk(err), context)
}

fn other(context: String, source: impl Into<BoxError>) -> StateError {
    StateError::Other {
        context,
        source: source.into(),
    }
}

/// Turns a failed transaction into a domain error: `on_condition(i)` names the outcome of item `i`'s
/// failed condition; conflicts between transactions and throttling are transient (the policy's
/// cancellation reasons), anything else keeps its source.
fn transaction_error(
    err: SdkError<TransactWriteItemsError, HttpResponse>,
    context: String,
    on_condition: impl Fn(&[usize]) -> Option<StateError>,
) -> StateError {
    let err = TransactionFailure::from_sdk(err);
    let failed: Vec<usize> = err
        .reasons
        .iter()
        .enumerate()
        .filter(|(_, reason)| *reason == "ConditionalCheckFailed")
        .map(|(i, _)| i)
        .collect();
    if !failed.is_empty() {
        if let Some(outcome) = on_condition(&failed) {
            return outcome;
        }
    }
    classified(err.is_retryable(), Box::new(err.call), context)
}

/// Exponential backoff with jitter between rounds of unprocessed batch items: DynamoDB returns them when a
/// partition is throttled, and an immediate retry would be throttled again.
async fn backoff(round: u32) {
    let base = 50u64.saturating_mul(1 << round.min(6)).min(2_000);
    let jitter = u64::from(Utc::now().timestamp_subsec_nanos()) % (base / 2 + 1);
    tokio::time::sleep(StdDuration::from_millis(base / 2 + jitter)).await;
}

impl DynamoStateStore {
    fn ctx(&self, what: impl std::fmt::Display) -> String {
        format!("{what} in table {}", self.table)
    }

    // -----------------------------------------------------------------------------------------------------
    // Reads, batches and transactions the capabilities share
    // -----------------------------------------------------------------------------------------------------

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

    /// Before retry round `round` of a batch call with `pending` items (`what`: "keys", "deletes") left
    /// unprocessed: gives up (`Transient`) after [`UNPROCESSED_ATTEMPTS`] rounds, else waits the backoff.
    async fn before_retry(
        &self,
        round: u32,
        pending: usize,
        what: &str,
        context: &str,
    ) -> Result<(), StateError> {
        if round >= UNPROCESSED_ATTEMPTS {
            return Err(StateError::Transient {
                context: context.to_owned(),
                source: format!("{pending} {what} still unprocessed after {round} rounds").into(),
            });
        }
        tracing::debug!(table = %self.table, round, pending, "unprocessed {what}; retrying");
        backoff(round).await;
        Ok(())
    }

    /// BatchGetItem in chunks of 100 with consistent reads, retrying UnprocessedKeys with backoff.
    async fn batch_get(&self, keys: Vec<Item>, context: &str) -> Result<Vec<Item>, StateError> {
        let mut found = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_GET_MAX) {
            let mut pending = chunk.to_vec();
            let mut round = 0;
            while !pending.is_empty() {
                if round > 0 {
                    self.before_retry(round, pending.len(), "keys", context)
                        .await?;
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
                    self.before_retry(round, pending.len(), "deletes", context)
                        .await?;
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

    /// A Put of a transaction, with an optional condition.
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
}

// ---------------------------------------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------------------------------------

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
    if let Err(e) = created {
        let err = AwsCallError::from_sdk(e);
        // Already there (another caller, or an earlier start): leave it as it is.
        if err.code() != "ResourceInUseException" {
            return Err(state_error(err, context("create")));
        }
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
        let enabled = client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(spec)
            .send()
            .await;
        if let Err(e) = enabled {
            let err = AwsCallError::from_sdk(e);
            // Two callers racing: the other one enabled it.
            if !err
                .message
                .as_deref()
                .is_some_and(|m| m.contains("already enabled"))
            {
                return Err(state_error(err, context("enable TTL on")));
            }
        }
    }
    Ok(())
}

/// What the unit tests of the capabilities share.
#[cfg(test)]
mod fixtures {
    use chrono::{TimeZone, Utc};
    use s3_importer_core::sync::model::{FileVersion, LedgerEntry, ObjectMeta};

    use super::DynamoStateStore;

    pub(super) fn entry() -> LedgerEntry {
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
        let object = ObjectMeta::new(version.key.clone(), version.etag.clone(), 10, at);
        LedgerEntry::discovered(version, &object, at)
    }

    /// Errors from the wire always carry their code (the SDK's deserializer sets it); built ones must too.
    pub(super) fn meta(code: &str) -> aws_sdk_dynamodb::error::ErrorMetadata {
        aws_sdk_dynamodb::error::ErrorMetadata::builder()
            .code(code)
            .message("from the mock")
            .build()
    }

    pub(super) fn store(client: aws_sdk_dynamodb::Client) -> DynamoStateStore {
        DynamoStateStore::new(client, "state")
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::meta;
    use super::*;
    use aws_sdk_dynamodb::types::error::TransactionCanceledException;
    use aws_sdk_dynamodb::types::CancellationReason;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    /// The error of a TransactWriteItems that DynamoDB cancelled for `reasons`, one per item.
    async fn cancelled(
        reasons: &'static [&'static str],
    ) -> Option<SdkError<TransactWriteItemsError, HttpResponse>> {
        let rule = mock!(Client::transact_write_items).then_error(move || {
            let mut e = TransactionCanceledException::builder()
                .message("Transaction cancelled")
                .meta(meta("TransactionCanceledException"));
            for reason in reasons {
                e = e.cancellation_reasons(CancellationReason::builder().code(*reason).build());
            }
            TransactWriteItemsError::TransactionCanceledException(e.build())
        });
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, &[&rule], |c| c
            .retry_config(aws_sdk_dynamodb::config::retry::RetryConfig::disabled()));
        client
            .transact_write_items()
            .set_transact_items(Some(vec![]))
            .send()
            .await
            .err()
    }

    #[tokio::test]
    async fn a_cancelled_transaction_is_an_outcome_a_retry_or_a_permanent_error_by_its_reasons() {
        let name_taken = |failed: &[usize]| {
            Some(StateError::NameTaken {
                name: format!("item {failed:?}"),
            })
        };
        let cases: [(&'static [&'static str], &str); 6] = [
            (
                &["None", "ConditionalCheckFailed", "None"],
                "name taken: item [1]",
            ),
            // A failed condition is the answer even when another item was throttled.
            (
                &["ConditionalCheckFailed", "ThrottlingError"],
                "name taken: item [0]",
            ),
            (&["None", "ThrottlingError", "None"], "transient"),
            (&["TransactionConflict", "None"], "transient"),
            (&["ProvisionedThroughputExceeded"], "transient"),
            (&["ValidationError", "None"], "other"),
        ];
        for (reasons, expected) in cases {
            let Some(err) = cancelled(reasons).await else {
                panic!("the mock answers with an error for {reasons:?}");
            };
            let got = match transaction_error(err, "write in table state".into(), name_taken) {
                StateError::NameTaken { name } => format!("name taken: {name}"),
                StateError::Transient { .. } => "transient".to_owned(),
                StateError::Other { source, .. } => {
                    assert!(
                        source.to_string().contains("ValidationError"),
                        "the reasons are in the message: {source}"
                    );
                    "other".to_owned()
                }
                other => format!("{other:?}"),
            };
            assert_eq!(got, expected, "reasons {reasons:?}");
        }
    }
}
