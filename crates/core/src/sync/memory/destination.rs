//! A destination in memory with the DynamoDB records table's semantics, and error reports by file version.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::sink::{ErrorReportEntry, RejectSink, RejectedRow, RowBatch, RowSink, SinkError};
use crate::sync::ports::{Destination, FileJob};
use crate::template::Template;

/// One row held by [`MemoryDestination`], with its lineage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRow {
    /// LastModified of the source file version: the ordering guard.
    pub last_modified: DateTime<Utc>,
    /// The row's JSON object.
    pub row: String,
    /// Source key.
    pub source_key: String,
    /// Source ETag.
    pub etag: String,
    /// Record number in the source file.
    pub record: u64,
}

#[derive(Debug, Default)]
struct DestinationInner {
    /// (connector id, primary-key JSON) → row.
    rows: BTreeMap<(String, String), StoredRow>,
    /// Location → piece number → entries of that piece.
    reports: BTreeMap<String, BTreeMap<u32, Vec<ErrorReportEntry>>>,
    /// Batches still to fail (transiently).
    fail_next_batches: usize,
}

/// A destination in memory with the DynamoDB records table's semantics: one row per primary key, upserted,
/// and a row from an older file version (by source LastModified) never overwrites one from a newer file.
/// Error reports are kept per file version, and are the same whether a file was read in one piece or many.
#[derive(Debug, Default, Clone)]
pub struct MemoryDestination {
    inner: Arc<Mutex<DestinationInner>>,
}

impl MemoryDestination {
    /// Empty.
    pub fn new() -> Self {
        Self::default()
    }

    fn inner(&self) -> MutexGuard<'_, DestinationInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next `n` row batches fail with a transient error (as a throttled table would).
    pub fn fail_next_batches(&self, n: usize) {
        self.inner().fail_next_batches = n;
    }

    /// A connector's rows, ordered by primary-key JSON.
    pub fn rows(&self, connector_id: &str) -> Vec<(String, StoredRow)> {
        self.inner()
            .rows
            .iter()
            .filter(|((c, _), _)| c == connector_id)
            .map(|((_, pk), row)| (pk.clone(), row.clone()))
            .collect()
    }

    /// One row by its primary-key JSON (e.g. `["42"]`, see [`primary_key_json`]).
    pub fn row(&self, connector_id: &str, primary_key: &str) -> Option<StoredRow> {
        self.inner()
            .rows
            .get(&(connector_id.to_owned(), primary_key.to_owned()))
            .cloned()
    }

    /// An error report's entries by location.
    pub fn report(&self, location: &str) -> Option<Vec<ErrorReportEntry>> {
        self.inner()
            .reports
            .get(location)
            .map(|parts| parts.values().flatten().cloned().collect())
    }

    /// Every error report location.
    pub fn report_locations(&self) -> Vec<String> {
        self.inner().reports.keys().cloned().collect()
    }
}

/// Where [`MemoryDestination`] keeps a file version's error report: deterministic, so a retry replaces it.
pub fn memory_report_location(job: &FileJob) -> String {
    format!(
        "memory://error-reports/{}/{}.jsonl",
        job.connector.id,
        job.entry.version.file_id()
    )
}

/// The identity of a row: a JSON array of its primary-key values in template order. Without a primary key,
/// the row's position in its file version identifies it, which keeps re-imports idempotent.
pub fn primary_key_json(
    template: &Template,
    job_file_id: &str,
    record: u64,
    row: &serde_json::Map<String, serde_json::Value>,
) -> Result<String, String> {
    if template.primary_key.is_empty() {
        return Ok(serde_json::json!([job_file_id, record]).to_string());
    }
    let mut values = Vec::with_capacity(template.primary_key.len());
    for field in &template.primary_key {
        match row.get(field) {
            Some(v) if !v.is_null() => values.push(v.clone()),
            _ => {
                return Err(format!(
                    "record {record} has no value for primary key field {field:?}"
                ))
            }
        }
    }
    Ok(serde_json::Value::Array(values).to_string())
}

fn piece_of(job: &FileJob) -> u32 {
    job.entry.checkpoint.as_ref().map_or(0, |c| c.piece)
}

#[async_trait]
impl Destination for MemoryDestination {
    async fn open_rows(&self, job: &FileJob) -> Result<Box<dyn RowSink>, SinkError> {
        Ok(Box::new(MemoryRowSink {
            dest: self.clone(),
            job: job.clone(),
        }))
    }

    async fn open_rejects(&self, job: &FileJob) -> Result<Box<dyn RejectSink>, SinkError> {
        Ok(Box::new(MemoryRejectSink {
            dest: self.clone(),
            location: memory_report_location(job),
            piece: piece_of(job),
            entries: Vec::new(),
        }))
    }
}

/// Upserts rows into a [`MemoryDestination`] as they arrive (like DynamoDB: visible at once, kept on abort).
struct MemoryRowSink {
    dest: MemoryDestination,
    job: FileJob,
}

#[async_trait]
impl RowSink for MemoryRowSink {
    async fn write_batch(&mut self, batch: &RowBatch) -> Result<(), SinkError> {
        let context = || {
            format!(
                "write rows of {} to the memory destination",
                self.job.entry.version.key
            )
        };
        // Build every row first so a bad row fails the batch without writing part of it.
        let file_id = self.job.entry.version.file_id();
        let mut rows = Vec::with_capacity(batch.len());
        for (position, json) in batch.iter() {
            let object: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(json).map_err(|e| SinkError::permanent(context(), e))?;
            let pk = primary_key_json(&self.job.template, &file_id, position.record, &object)
                .map_err(|e| SinkError::permanent(context(), e))?;
            rows.push((
                pk,
                StoredRow {
                    last_modified: self.job.entry.last_modified,
                    row: String::from_utf8_lossy(json).into_owned(),
                    source_key: self.job.entry.version.key.clone(),
                    etag: self.job.entry.version.etag.clone(),
                    record: position.record,
                },
            ));
        }
        let mut inner = self.dest.inner();
        if inner.fail_next_batches > 0 {
            inner.fail_next_batches -= 1;
            return Err(SinkError::transient(context(), "injected throttling"));
        }
        for (pk, row) in rows {
            let key = (self.job.connector.id.clone(), pk);
            // The ordering guard: equal LastModified (a re-import of the same version) overwrites.
            let newer_exists = inner
                .rows
                .get(&key)
                .is_some_and(|old| old.last_modified > row.last_modified);
            if !newer_exists {
                inner.rows.insert(key, row);
            }
        }
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Buffers one piece's rejected rows and publishes them on `finish`.
struct MemoryRejectSink {
    dest: MemoryDestination,
    location: String,
    piece: u32,
    entries: Vec<ErrorReportEntry>,
}

#[async_trait]
impl RejectSink for MemoryRejectSink {
    async fn write_rejects(&mut self, rows: &[RejectedRow]) -> Result<(), SinkError> {
        self.entries
            .extend(rows.iter().flat_map(RejectedRow::entries));
        Ok(())
    }

    async fn finish(&mut self) -> Result<Option<String>, SinkError> {
        let mut inner = self.dest.inner();
        let parts = inner.reports.entry(self.location.clone()).or_default();
        // Redoing piece N (a retry, or a restart from its checkpoint) replaces it and everything after it.
        parts.retain(|&piece, _| piece < self.piece);
        parts.insert(self.piece, std::mem::take(&mut self.entries));
        let any = parts.values().any(|p| !p.is_empty());
        if !any {
            inner.reports.remove(&self.location);
        }
        Ok(any.then(|| self.location.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::model::{Checkpoint, Connector, LedgerEntry, ObjectMeta, Source};
    use chrono::TimeZone;

    fn source(bucket: &str, prefix: Option<&str>) -> Source {
        Source {
            account_id: "111111111111".into(),
            bucket: bucket.into(),
            region: "us-east-1".into(),
            prefix: prefix.map(str::to_owned),
            role_arn: None,
            external_id: None,
            versions: false,
        }
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn job(
        key: &str,
        etag: &str,
        last_modified: DateTime<Utc>,
        piece: Option<u32>,
    ) -> Result<FileJob, String> {
        let template = Template::from_toml(
            "name = \"t\"\nprimary_key = [\"id\"]\n\n[[fields]]\nname = \"id\"\ntype = \"integer\"\nrequired = true\n",
        )
        .map_err(|e| e.to_string())?;
        let version = crate::sync::model::FileVersion {
            connector_id: "c".into(),
            bucket: "b".into(),
            key: key.into(),
            etag: etag.into(),
            version_id: None,
        };
        let object = ObjectMeta::new(key, etag, 1, last_modified);
        let mut entry = LedgerEntry::discovered(version, &object, last_modified);
        entry.checkpoint = piece.map(|piece| Checkpoint {
            piece,
            ..Checkpoint::default()
        });
        let connector = Connector {
            id: "c".into(),
            name: "n".into(),
            status: crate::sync::model::ConnectorStatus::Active,
            source: source("b", None),
            template_id: "t".into(),
            template_version: None,
            destination: crate::sync::model::DestinationConfig::Dynamodb {
                table: "records".into(),
            },
            created_at: last_modified,
            updated_at: last_modified,
            watermark: None,
            last_sync: None,
            discovery: Default::default(),
            reconcile: None,
        };
        Ok(FileJob {
            connector,
            entry,
            template: Arc::new(template),
        })
    }

    fn pos(record: u64) -> crate::Position {
        crate::Position {
            record,
            line: record + 1,
            byte: record * 10,
        }
    }

    async fn write(
        dest: &MemoryDestination,
        job: &FileJob,
        rows: &[(u64, &str)],
    ) -> Result<(), SinkError> {
        let mut batch = RowBatch::default();
        for (record, json) in rows {
            batch.push_row(pos(*record), json.as_bytes());
        }
        let mut sink = dest.open_rows(job).await?;
        sink.write_batch(&batch).await?;
        sink.finish().await
    }

    // Idempotent rewrites, the ordering guard, pieces and the error report across pieces are checked by the
    // destination contract (`tests/contract_destination.rs`); what only this double has is checked here.
    #[tokio::test]
    async fn injected_failures_and_rows_without_a_key_fail_the_batch(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dest = MemoryDestination::new();
        let newer = job("new.csv", "\"n\"", t0(), None)?;
        dest.fail_next_batches(1);
        let failed = write(&dest, &newer, &[(1, r#"{"id":1}"#)]).await;
        assert!(
            failed.as_ref().is_err_and(SinkError::is_transient),
            "{failed:?}"
        );
        let missing_key = write(&dest, &newer, &[(3, r#"{"v":"no id"}"#)]).await;
        assert!(
            missing_key.as_ref().is_err_and(|e| !e.is_transient()),
            "{missing_key:?}"
        );
        assert!(dest.rows("c").is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn reports_live_at_their_memory_location_and_a_clean_retry_removes_them(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let reject = |record| RejectedRow {
            position: pos(record),
            errors: vec![crate::RowError::record(
                crate::ErrorCode::FieldCountMismatch,
                "expected 1 field",
            )],
        };
        let dest = MemoryDestination::new();
        for (piece, record) in [(None, 1), (Some(1), 5), (Some(1), 5)] {
            let j = job("big.csv", "\"b\"", t0(), piece)?;
            let mut sink = dest.open_rejects(&j).await?;
            sink.write_rejects(&[reject(record)]).await?;
            assert_eq!(sink.finish().await?, Some(memory_report_location(&j)));
        }
        let j = job("big.csv", "\"b\"", t0(), None)?;
        assert_eq!(dest.report_locations(), vec![memory_report_location(&j)]);
        // A retry from the start with no rejects leaves no report behind (the S3 error report keeps the
        // earlier object, though `finish` says there is none).
        let mut sink = dest.open_rejects(&j).await?;
        assert_eq!(sink.finish().await?, None);
        assert!(dest.report_locations().is_empty());
        Ok(())
    }
}
