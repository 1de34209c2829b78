//! [`AwsDestination`]: the [`Destination`] port on DynamoDB (records table) and S3 (normalized JSONL), plus the
//! S3 error report.
//!
//! Writes are idempotent per file version, because the pipe delivers at least once:
//! - DynamoDB: one item per primary key, written with a conditional PutItem that lets a row from an older
//!   file version never overwrite one from a newer version (the ordering guard, see [`DynamoRowSink`]).
//! - S3 JSONL, Parquet ([`crate::parquet`]) and error reports: a deterministic key per (connector, source key,
//!   ETag), written as one object that is visible only when complete, so a retry replaces it whole.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use futures::stream::{self, StreamExt};
use s3_importer_core::sink::{RejectSink, RejectedRow, RowBatch, RowSink, SinkError};
use s3_importer_core::sync::ports::{Destination, FileJob};
use s3_importer_core::sync::DestinationConfig;
use s3_importer_core::template::Template;
use sha2::{Digest, Sha256};

use crate::error::AwsCallError;
use crate::parquet::ParquetSink;
use crate::records::{check_template, row_to_item, Lineage, RecordItem, PK, SOURCE_LAST_MODIFIED};
use crate::s3_writer::{S3ObjectWriter, WriterState, PART_SIZE};

/// Concurrent PutItem calls per batch by default.
pub const DEFAULT_CONCURRENCY: usize = s3_importer_core::config::DEFAULT_DYNAMODB_WRITE_CONCURRENCY;
/// Attempts per throttled PutItem (on top of the SDK's own retries).
const PUT_ATTEMPTS: u32 = 4;
/// First retry delay after throttling; doubled each time.
const PUT_BACKOFF: Duration = Duration::from_millis(200);
/// Longest `source-key` metadata value: S3 allows 2 KB of user metadata in total.
const MAX_METADATA_KEY: usize = 1536;

/// Opens DynamoDB and S3 sinks for the connectors' destinations, and S3 error reports in `output_bucket`.
#[derive(Debug, Clone)]
pub struct AwsDestination {
    s3: aws_sdk_s3::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    output_bucket: String,
    concurrency: usize,
    part_size: usize,
    row_group_bytes: usize,
}

impl AwsDestination {
    /// Destinations through these clients; error reports go to `s3://output_bucket/errors/...`.
    pub fn new(
        s3: aws_sdk_s3::Client,
        dynamodb: aws_sdk_dynamodb::Client,
        output_bucket: impl Into<String>,
    ) -> Self {
        Self {
            s3,
            dynamodb,
            output_bucket: output_bucket.into(),
            concurrency: DEFAULT_CONCURRENCY,
            part_size: PART_SIZE,
            row_group_bytes: crate::parquet::DEFAULT_ROW_GROUP_BYTES,
        }
    }

    /// Uncompressed bytes of values per Parquet row group (default
    /// [`crate::parquet::DEFAULT_ROW_GROUP_BYTES`]): what a Parquet output holds in memory.
    pub fn with_row_group_bytes(mut self, bytes: usize) -> Self {
        self.row_group_bytes = bytes.max(1);
        self
    }

    /// Concurrent PutItem calls per batch (default [`DEFAULT_CONCURRENCY`]).
    pub fn with_concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// Multipart part size for S3 outputs (default [`PART_SIZE`]; S3 requires at least 5 MiB).
    pub fn with_part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes;
        self
    }

    fn writer(&self, bucket: &str, key: String, job: &FileJob) -> S3ObjectWriter {
        let mut writer = S3ObjectWriter::new(self.s3.clone(), bucket, key)
            .part_size(self.part_size)
            .metadata("connector-id", job.connector.id.clone())
            .metadata("source-bucket", job.entry.version.bucket.clone())
            .metadata(
                "source-etag",
                job.entry.version.etag.trim_matches('"').to_owned(),
            );
        match metadata_key(&job.entry.version.key) {
            Some(encoded) => writer = writer.metadata("source-key", encoded),
            None => tracing::debug!(
                connector = %job.connector.id,
                "source key too long for object metadata; the output key's hash identifies it"
            ),
        }
        writer
    }
}

/// `<sha256(key), first 32 hex>/<etag without quotes>`: the per-file-version part of output keys.
pub fn file_version_path(source_key: &str, etag: &str) -> String {
    let digest = Sha256::digest(source_key.as_bytes());
    format!("{}/{}", hex::encode(&digest[..16]), etag.trim_matches('"'))
}

/// The key of a file version's normalized JSONL: `<prefix>/<connector_id>/<sha256(key) 32 hex>/<etag>.jsonl`.
pub fn output_key(prefix: &str, connector_id: &str, source_key: &str, etag: &str) -> String {
    let prefix = prefix.trim_matches('/');
    let path = file_version_path(source_key, etag);
    if prefix.is_empty() {
        format!("{connector_id}/{path}.jsonl")
    } else {
        format!("{prefix}/{connector_id}/{path}.jsonl")
    }
}

/// The key of a file version's error report: `errors/<connector_id>/<sha256(key) 32 hex>/<etag>.jsonl`.
pub fn error_report_key(connector_id: &str, source_key: &str, etag: &str) -> String {
    output_key("errors", connector_id, source_key, etag)
}

/// The source key for object metadata: percent-encoded (RFC 3986 unreserved characters and `/` kept) because
/// metadata travels as HTTP headers; `None` when too long for S3's 2 KB metadata limit.
pub fn metadata_key(key: &str) -> Option<String> {
    let mut out = String::with_capacity(key.len());
    for &b in key.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    (out.len() <= MAX_METADATA_KEY).then_some(out)
}

#[async_trait]
impl Destination for AwsDestination {
    async fn open_rows(&self, job: &FileJob) -> Result<Box<dyn RowSink>, SinkError> {
        match &job.connector.destination {
            DestinationConfig::Dynamodb { table } => {
                check_template(&job.template)
                    .map_err(|e| SinkError::permanent(format!("write to table {table}"), e))?;
                Ok(Box::new(DynamoRowSink::new(
                    self.dynamodb.clone(),
                    table.clone(),
                    job,
                    self.concurrency,
                )))
            }
            DestinationConfig::S3Jsonl { bucket, prefix } => {
                let key = output_key(
                    prefix,
                    &job.connector.id,
                    &job.entry.version.key,
                    &job.entry.version.output_tag(),
                );
                let checkpoint = job.entry.checkpoint.as_ref();
                let writer = self
                    .resume(
                        self.writer(bucket, key.clone(), job),
                        checkpoint.and_then(|c| c.rows_state.clone()),
                    )
                    .await?;
                Ok(Box::new(S3JsonlSink {
                    writer,
                    carry_key: carry_key(&key, checkpoint.map_or(0, |c| c.piece)),
                }))
            }
            DestinationConfig::Postgres { table, .. } => Err(SinkError::permanent(
                format!("write to PostgreSQL table {table}"),
                "this worker has no PostgreSQL destination (the worker Lambda routes PostgreSQL connectors)",
            )),
            DestinationConfig::Webhook(config) => Err(SinkError::permanent(
                format!("write to webhook {}", config.url),
                "this worker has no webhook destination (the worker Lambda routes webhook connectors)",
            )),
            DestinationConfig::Stripe(config) => Err(SinkError::permanent(
                format!("write Stripe {}", config.object.name()),
                "this worker has no Stripe destination (the worker Lambda routes Stripe connectors)",
            )),
            DestinationConfig::S3Parquet { bucket, prefix } => {
                let version = &job.entry.version;
                let key = crate::parquet::layout::object_key(
                    prefix,
                    &job.connector.id,
                    job.entry.last_modified,
                    &version.key,
                    &version.output_tag(),
                );
                let writer = self
                    .writer(bucket, key, job)
                    .content_type("application/vnd.apache.parquet");
                let sink = ParquetSink::open(
                    self.s3.clone(),
                    writer,
                    bucket,
                    prefix,
                    job,
                    self.row_group_bytes,
                )
                .await?;
                Ok(Box::new(sink))
            }
        }
    }

    async fn open_rejects(&self, job: &FileJob) -> Result<Box<dyn RejectSink>, SinkError> {
        let key = error_report_key(
            &job.connector.id,
            &job.entry.version.key,
            &job.entry.version.output_tag(),
        );
        let checkpoint = job.entry.checkpoint.as_ref();
        let state: Option<RejectsState> = checkpoint
            .and_then(|c| c.rejects_state.clone())
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| SinkError::permanent(format!("read the checkpoint of {key}"), e))?;
        let (entries, writer_state) = state.map_or((0, None), |s| (s.entries, Some(s.writer)));
        let writer = self
            .resume(
                self.writer(&self.output_bucket, key.clone(), job),
                writer_state
                    .map(serde_json::to_value)
                    .transpose()
                    .map_err(|e| SinkError::permanent(format!("checkpoint {key}"), e))?,
            )
            .await?;
        Ok(Box::new(S3RejectSink {
            writer,
            entries,
            line: Vec::new(),
            carry_key: carry_key(&key, checkpoint.map_or(0, |c| c.piece)),
        }))
    }
}

impl AwsDestination {
    async fn resume(
        &self,
        writer: S3ObjectWriter,
        state: Option<serde_json::Value>,
    ) -> Result<S3ObjectWriter, SinkError> {
        let Some(state) = state else {
            return Ok(writer);
        };
        let state: WriterState = serde_json::from_value(state).map_err(|e| {
            SinkError::permanent(format!("read the checkpoint of {}", writer.uri()), e)
        })?;
        writer.resume(state).await
    }
}

/// The key of the object holding the bytes piece `piece` wrote but did not send as a part yet.
pub fn carry_key(key: &str, piece: u32) -> String {
    format!("{key}.carry-{piece:05}")
}

/// The error report's part of a checkpoint.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct RejectsState {
    entries: u64,
    writer: WriterState,
}

/// Normalized JSON Lines to one S3 object per file version.
#[derive(Debug)]
pub struct S3JsonlSink {
    writer: S3ObjectWriter,
    carry_key: String,
}

#[async_trait]
impl RowSink for S3JsonlSink {
    fn needs_positions(&self) -> bool {
        false
    }

    /// The object is completed by `finish` (a multipart upload): nothing is visible before.
    fn stages(&self) -> bool {
        true
    }

    async fn write_batch(&mut self, batch: &RowBatch) -> Result<(), SinkError> {
        self.writer.write(batch.as_jsonl()).await
    }

    async fn finish(&mut self) -> Result<(), SinkError> {
        self.writer.finish().await
    }

    async fn abort(&mut self) -> Result<(), SinkError> {
        self.writer.abort().await
    }

    async fn suspend(&mut self) -> Result<Option<serde_json::Value>, SinkError> {
        let state = self.writer.suspend(&self.carry_key).await?;
        serde_json::to_value(state)
            .map(Some)
            .map_err(|e| SinkError::permanent(format!("checkpoint {}", self.writer.uri()), e))
    }
}

/// The error report (JSONL of [`s3_importer_core::sink::ErrorReportEntry`]) as one S3 object; nothing is
/// written when no row was rejected.
#[derive(Debug)]
pub struct S3RejectSink {
    writer: S3ObjectWriter,
    entries: u64,
    line: Vec<u8>,
    carry_key: String,
}

#[async_trait]
impl RejectSink for S3RejectSink {
    async fn write_rejects(&mut self, rows: &[RejectedRow]) -> Result<(), SinkError> {
        self.line.clear();
        for row in rows {
            for entry in row.entries() {
                serde_json::to_writer(&mut self.line, &entry).map_err(|e| {
                    SinkError::permanent(format!("serialize error report {}", self.writer.uri()), e)
                })?;
                self.line.push(b'\n');
                self.entries += 1;
            }
        }
        if self.line.is_empty() {
            return Ok(());
        }
        self.writer.write(&self.line).await
    }

    async fn finish(&mut self) -> Result<Option<String>, SinkError> {
        if self.entries == 0 {
            return Ok(None);
        }
        self.writer.finish().await?;
        Ok(Some(self.writer.uri()))
    }

    async fn suspend(&mut self) -> Result<Option<serde_json::Value>, SinkError> {
        let writer = self.writer.suspend(&self.carry_key).await?;
        serde_json::to_value(RejectsState {
            entries: self.entries,
            writer,
        })
        .map(Some)
        .map_err(|e| SinkError::permanent(format!("checkpoint {}", self.writer.uri()), e))
    }
}

/// What one conditional put did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PutOutcome {
    Written,
    /// A row from a newer file version already holds the key.
    Superseded,
}

/// Upserts rows into the records table, one item per primary key (see [`crate::records`]).
///
/// Ordering guard: each PutItem is conditional on `attribute_not_exists(pk) OR _source_last_modified <= :this`,
/// so a row from an older file version (imported late, or retried) never overwrites a newer one; equal times
/// (the same file, or two versions within one second) let the later write win. BatchWriteItem cannot carry
/// conditions, hence one PutItem per row with bounded concurrency; rows sharing a key within a batch are
/// reduced to the last one first, so concurrent puts never race on one key.
#[derive(Debug)]
pub struct DynamoRowSink {
    client: aws_sdk_dynamodb::Client,
    table: String,
    template: Arc<Template>,
    lineage: Lineage,
    source_uri: String,
    concurrency: usize,
    written: u64,
    superseded: u64,
}

impl DynamoRowSink {
    /// A sink for `job`'s rows into `table`.
    pub fn new(
        client: aws_sdk_dynamodb::Client,
        table: String,
        job: &FileJob,
        concurrency: usize,
    ) -> Self {
        let version = &job.entry.version;
        Self {
            client,
            table,
            template: Arc::clone(&job.template),
            lineage: Lineage {
                connector_id: job.connector.id.clone(),
                source_key: version.key.clone(),
                source_etag: version.etag.clone(),
                source_last_modified_ms: job.entry.last_modified.timestamp_millis(),
                imported_at: chrono::Utc::now()
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            },
            source_uri: format!("s3://{}/{}", version.bucket, version.key),
            concurrency: concurrency.max(1),
            written: 0,
            superseded: 0,
        }
    }

    /// Rows written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Rows not written because a newer file version holds their key.
    pub fn superseded(&self) -> u64 {
        self.superseded
    }
}

/// Keeps the last row of each key, in file order otherwise.
fn dedupe(items: Vec<RecordItem>) -> Vec<RecordItem> {
    let mut last: HashMap<&str, usize> = HashMap::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        last.insert(item.pk.as_str(), i);
    }
    let keep: Vec<bool> = items
        .iter()
        .enumerate()
        .map(|(i, item)| last.get(item.pk.as_str()) == Some(&i))
        .collect();
    items
        .into_iter()
        .zip(keep)
        .filter_map(|(item, keep)| keep.then_some(item))
        .collect()
}

async fn put_record(
    client: aws_sdk_dynamodb::Client,
    table: String,
    source_uri: String,
    slm: String,
    record: RecordItem,
) -> Result<PutOutcome, SinkError> {
    let context = || {
        format!(
            "write record {} (line {}) of {source_uri} to table {table}",
            record.position.record, record.position.line
        )
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = client
            .put_item()
            .table_name(&table)
            .set_item(Some(record.item.clone()))
            .condition_expression("attribute_not_exists(#pk) OR #slm <= :slm")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#slm", SOURCE_LAST_MODIFIED)
            .expression_attribute_values(":slm", AttributeValue::N(slm.clone()))
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(PutOutcome::Written),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                return Ok(PutOutcome::Superseded)
            }
            Err(e) => AwsCallError::from_sdk(e),
        };
        if !err.is_retryable() {
            return Err(SinkError::permanent(context(), err));
        }
        if attempt >= PUT_ATTEMPTS {
            return Err(SinkError::transient(context(), err));
        }
        tracing::debug!(table = %table, attempt, error = %err, "PutItem throttled; retrying");
        tokio::time::sleep(PUT_BACKOFF * 2u32.pow(attempt - 1)).await;
    }
}

#[async_trait]
impl RowSink for DynamoRowSink {
    async fn write_batch(&mut self, batch: &RowBatch) -> Result<(), SinkError> {
        let mut items = Vec::with_capacity(batch.len());
        for (position, row) in batch.iter() {
            let item = row_to_item(&self.template, &self.lineage, position, row).map_err(|e| {
                SinkError::permanent(
                    format!("write {} to table {}", self.source_uri, self.table),
                    e,
                )
            })?;
            items.push(item);
        }
        let items = dedupe(items);
        let slm = self.lineage.source_last_modified_ms.to_string();
        let mut puts = stream::iter(items)
            .map(|record| {
                put_record(
                    self.client.clone(),
                    self.table.clone(),
                    self.source_uri.clone(),
                    slm.clone(),
                    record,
                )
            })
            .buffer_unordered(self.concurrency);
        let (mut written, mut superseded) = (0u64, 0u64);
        while let Some(outcome) = puts.next().await {
            match outcome? {
                PutOutcome::Written => written += 1,
                PutOutcome::Superseded => superseded += 1,
            }
        }
        self.written += written;
        self.superseded += superseded;
        tracing::debug!(table = %self.table, connector = %self.lineage.connector_id, written, superseded, "records batch written");
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), SinkError> {
        tracing::info!(
            table = %self.table,
            connector = %self.lineage.connector_id,
            key = %self.lineage.source_key,
            written = self.written,
            superseded_rows = self.superseded,
            "records written"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
    use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use chrono::{TimeZone, Utc};
    use s3_importer_core::sync::contract::fixtures;
    use s3_importer_core::sync::{
        Connector, ConnectorStatus, FileVersion, LedgerEntry, ObjectMeta, Source,
    };

    use crate::test_support::{client_without_retries, error_meta};

    /// A job whose rows go to the records table `records`.
    fn records_job() -> FileJob {
        let when = Utc
            .timestamp_opt(1_700_000_000, 0)
            .single()
            .unwrap_or_default();
        let template = Template::from_toml(
            "name = \"t\"\nprimary_key = [\"id\"]\n[[fields]]\nname = \"id\"\ntype = \"string\"\nrequired = true\n[[fields]]\nname = \"n\"\ntype = \"integer\"\n",
        )
        .expect("valid template");
        let version = FileVersion {
            connector_id: "c-1".into(),
            bucket: "src".into(),
            key: "in/a b.csv".into(),
            etag: "\"e1\"".into(),
            version_id: None,
        };
        let object = ObjectMeta {
            key: version.key.clone(),
            etag: version.etag.clone(),
            size: 10,
            last_modified: when,
            storage_class: None,
            restored: false,
            version_id: None,
        };
        FileJob {
            connector: Connector {
                id: "c-1".into(),
                name: "n".into(),
                status: ConnectorStatus::Active,
                source: Source {
                    account_id: "111122223333".into(),
                    bucket: "src".into(),
                    region: "us-east-1".into(),
                    prefix: None,
                    role_arn: None,
                    external_id: None,
                    versions: false,
                },
                template_id: "t".into(),
                template_version: None,
                destination: DestinationConfig::Dynamodb {
                    table: "records".into(),
                },
                created_at: when,
                updated_at: when,
                watermark: None,
                last_sync: None,
                discovery: Default::default(),
                reconcile: None,
            },
            entry: LedgerEntry::discovered(version, &object, when),
            template: Arc::new(template),
        }
    }

    /// The records sink of [`records_job`], writing through `dynamodb`.
    fn records_sink(dynamodb: aws_sdk_dynamodb::Client) -> DynamoRowSink {
        DynamoRowSink::new(dynamodb, "records".into(), &records_job(), 4)
    }

    fn s3_stub() -> aws_sdk_s3::Client {
        mock_client!(
            aws_sdk_s3,
            RuleMode::MatchAny,
            &[] as &[&aws_smithy_mocks::Rule]
        )
    }

    #[test]
    fn output_keys_are_deterministic_per_file_version() {
        let a = output_key("out/", "c-1", "in/a.csv", "\"abc\"");
        assert!(
            a.starts_with("out/c-1/") && a.ends_with("/abc.jsonl"),
            "{a}"
        );
        assert_eq!(a, output_key("out", "c-1", "in/a.csv", "abc"));
        assert_eq!(a.split('/').nth(2).map(str::len), Some(32));
        assert!(output_key("", "c-1", "k", "e").starts_with("c-1/"));
        assert!(error_report_key("c-1", "k", "e").starts_with("errors/c-1/"));
    }

    #[test]
    fn metadata_keys_are_ascii_and_bounded() {
        assert_eq!(
            metadata_key("in/a b+é.csv").as_deref(),
            Some("in/a%20b%2B%C3%A9.csv")
        );
        assert_eq!(metadata_key(&"é".repeat(300)), None);
    }

    #[tokio::test]
    async fn puts_carry_the_ordering_guard_and_dedupe_keys(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| {
                r.table_name() == Some("records")
                    && r.condition_expression() == Some("attribute_not_exists(#pk) OR #slm <= :slm")
                    && r.expression_attribute_names()
                        .and_then(|n| n.get("#slm"))
                        .map(String::as_str)
                        == Some("_source_last_modified")
                    && r.expression_attribute_values().and_then(|v| v.get(":slm"))
                        == Some(&AttributeValue::N("1700000000000".into()))
                    && r.item().and_then(|i| i.get("pk")).is_some()
            })
            .then_output(|| PutItemOutput::builder().build());
        let dynamodb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&put]);
        let destination = AwsDestination::new(s3_stub(), dynamodb, "out");
        let mut sink = destination.open_rows(&records_job()).await?;
        sink.write_batch(&fixtures::batch_of(&[
            r#"{"id":"a","n":1}"#,
            r#"{"id":"b","n":2}"#,
            r#"{"id":"a","n":3}"#,
        ]))
        .await?;
        sink.finish().await?;
        assert_eq!(
            put.num_calls(),
            2,
            "duplicate key within the batch is written once"
        );
        Ok(())
    }

    #[tokio::test]
    async fn the_later_row_of_a_key_wins_within_a_batch() -> Result<(), Box<dyn std::error::Error>>
    {
        let put = mock!(aws_sdk_dynamodb::Client::put_item)
            .match_requests(|r| {
                r.item().and_then(|i| i.get("n")) == Some(&AttributeValue::N("3".into()))
            })
            .then_output(|| PutItemOutput::builder().build());
        let dynamodb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&put]);
        let destination = AwsDestination::new(s3_stub(), dynamodb, "out");
        let mut sink = destination.open_rows(&records_job()).await?;
        sink.write_batch(&fixtures::batch_of(&[
            r#"{"id":"a","n":1}"#,
            r#"{"id":"a","n":3}"#,
        ]))
        .await?;
        assert_eq!(put.num_calls(), 1);
        Ok(())
    }

    #[tokio::test]
    async fn a_failed_ordering_guard_is_not_an_error() -> Result<(), Box<dyn std::error::Error>> {
        let put = mock!(aws_sdk_dynamodb::Client::put_item).then_error(|| {
            PutItemError::ConditionalCheckFailedException(
                ConditionalCheckFailedException::builder()
                    .message("newer row")
                    .build(),
            )
        });
        let dynamodb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&put]);
        let mut sink = records_sink(dynamodb);
        sink.write_batch(&fixtures::batch_of(&[r#"{"id":"a","n":1}"#]))
            .await?;
        assert_eq!((sink.written(), sink.superseded()), (0, 1));
        Ok(())
    }

    #[tokio::test]
    async fn a_missing_table_is_permanent_and_names_the_row_and_table() {
        let put = mock!(aws_sdk_dynamodb::Client::put_item).then_error(|| {
            PutItemError::ResourceNotFoundException(
                aws_sdk_dynamodb::types::error::ResourceNotFoundException::builder()
                    .message("no table")
                    .build(),
            )
        });
        let dynamodb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&put]);
        let mut sink = records_sink(dynamodb);
        let err = sink
            .write_batch(&fixtures::batch_of(&[r#"{"id":"a","n":1}"#]))
            .await
            .expect_err("table missing");
        assert!(!err.is_transient());
        assert!(
            err.to_string()
                .contains("record 1 (line 2) of s3://src/in/a b.csv to table records"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn throttling_is_retried_then_transient() {
        let put = mock!(aws_sdk_dynamodb::Client::put_item).then_error(|| {
            PutItemError::ProvisionedThroughputExceededException(
                aws_sdk_dynamodb::types::error::ProvisionedThroughputExceededException::builder()
                    .message("slow")
                    .meta(error_meta("ProvisionedThroughputExceededException", "slow"))
                    .build(),
            )
        });
        let dynamodb = client_without_retries!(aws_sdk_dynamodb, RuleMode::MatchAny, [&put]);
        let mut sink = records_sink(dynamodb);
        let err = sink
            .write_batch(&fixtures::batch_of(&[r#"{"id":"a","n":1}"#]))
            .await
            .expect_err("throttled");
        assert!(err.is_transient(), "{err}");
        assert_eq!(put.num_calls(), PUT_ATTEMPTS as usize);
    }
}
