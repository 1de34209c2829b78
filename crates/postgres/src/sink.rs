//! [`PgRowSink`]: one file version's rows, staged by COPY and merged in one transaction (see the crate doc).

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::SinkExt;
use s3_importer_core::sink::{RowBatch, RowSink, SinkError};
use s3_importer_core::sync::ports::FileJob;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_postgres::{Client, Statement};

use crate::ddl::{quote_ident, TableRef, IMPORTER_SCHEMA};
use crate::error::PgError;
use crate::merge::{merge_sql, push_copy_field};

/// What the sink hands to the next piece: the highest record it staged (durably, by then).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkState {
    /// Highest record staged so far, `None` when none was.
    pub staged_through: Option<u64>,
}

/// One file version going into one table.
#[derive(Debug, Clone)]
pub struct FileTarget {
    /// The table.
    pub table: TableRef,
    /// Connector id.
    pub connector_id: String,
    /// The ledger's file id (hash of the key, and the ETag).
    pub file_id: String,
    /// The staging id: a hash of the table, the connector and the file id.
    pub version: String,
    /// Source key.
    pub source_key: String,
    /// Source ETag, quoted.
    pub source_etag: String,
    /// Source LastModified.
    pub last_modified: DateTime<Utc>,
    /// `s3://bucket/key`, for messages.
    pub source_uri: String,
}

impl FileTarget {
    /// The file version of `job` going into `table`.
    pub fn new(job: &FileJob, table: &TableRef) -> Self {
        let v = &job.entry.version;
        let file_id = v.file_id();
        let mut hash = Sha256::new();
        for part in [
            table.quoted().as_str(),
            job.connector.id.as_str(),
            file_id.as_str(),
        ] {
            hash.update(part.as_bytes());
            hash.update([0]);
        }
        Self {
            table: table.clone(),
            connector_id: job.connector.id.clone(),
            version: hex::encode(&hash.finalize()[..16]),
            file_id,
            source_key: v.key.clone(),
            source_etag: v.etag.clone(),
            last_modified: job.entry.last_modified,
            source_uri: format!("s3://{}/{}", v.bucket, v.key),
        }
    }
}

/// Stages a file version's rows in `s3_importer.staged_rows` and merges them into the table at `finish`.
pub struct PgRowSink {
    client: Client,
    file: FileTarget,
    merge: String,
    copy: Statement,
    /// The file version is in `imports` already: a redelivery, which writes nothing.
    already_imported: bool,
    staged_through: Option<u64>,
    staged: u64,
    buf: Vec<u8>,
}

impl std::fmt::Debug for PgRowSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgRowSink")
            .field("file", &self.file)
            .field("already_imported", &self.already_imported)
            .field("staged_through", &self.staged_through)
            .finish_non_exhaustive()
    }
}

fn staged_rows() -> String {
    format!("{}.staged_rows", quote_ident(IMPORTER_SCHEMA))
}

fn imports() -> String {
    format!("{}.imports", quote_ident(IMPORTER_SCHEMA))
}

impl PgRowSink {
    /// Opens the sink on `client`: a redelivered file version (in `imports`) writes nothing; otherwise staged
    /// rows a crashed attempt left are deleted: all of them on the first piece (`resume` `None`), those after
    /// the last checkpoint's `staged_through` on a later piece.
    pub async fn open(
        client: Client,
        file: FileTarget,
        template: &s3_importer_core::template::Template,
        resume: Option<SinkState>,
    ) -> Result<Self, SinkError> {
        let ctx = |e: PgError| sink_error(&file, None, e);
        let table = file.table.quoted();
        let already_imported = client
            .query_opt(
                &format!(
                    "SELECT 1 FROM {} WHERE target = $1 AND connector_id = $2 AND file_id = $3",
                    imports()
                ),
                &[&table, &file.connector_id, &file.file_id],
            )
            .await
            .map_err(|e| {
                ctx(PgError::query(
                    "look the file version up in the imports",
                    imports(),
                    e,
                ))
            })?
            .is_some();
        let staged_through = resume.and_then(|s| s.staged_through);
        if !already_imported {
            // Record numbers start at 1: -1 deletes every staged row of the file version.
            let after = staged_through.map_or(-1, |r| r as i64);
            let deleted = client
                .execute(
                    &format!(
                        "DELETE FROM {} WHERE version = $1 AND record > $2",
                        staged_rows()
                    ),
                    &[&file.version, &after],
                )
                .await
                .map_err(|e| {
                    ctx(PgError::query(
                        "delete rows a failed attempt staged",
                        staged_rows(),
                        e,
                    ))
                })?;
            if deleted > 0 {
                tracing::info!(table = %table, connector = %file.connector_id, key = %file.source_key, deleted, "deleted rows a failed attempt had staged");
            }
        }
        let copy = client
            .prepare(&format!(
                "COPY {} (version, record, row) FROM STDIN",
                staged_rows()
            ))
            .await
            .map_err(|e| ctx(PgError::query("prepare the COPY", staged_rows(), e)))?;
        Ok(Self {
            merge: merge_sql(template, &file.table),
            client,
            file,
            copy,
            already_imported,
            staged_through,
            staged: 0,
            buf: Vec::new(),
        })
    }

    /// Rows staged by this sink (this piece).
    pub fn staged(&self) -> u64 {
        self.staged
    }

    async fn delete_staged(&self) -> Result<u64, SinkError> {
        self.client
            .execute(
                &format!("DELETE FROM {} WHERE version = $1", staged_rows()),
                &[&self.file.version],
            )
            .await
            .map_err(|e| {
                sink_error(
                    &self.file,
                    None,
                    PgError::query("delete the staged rows", staged_rows(), e),
                )
            })
    }
}

/// A [`SinkError`] naming the file, the table and, when known, the records concerned.
fn sink_error(file: &FileTarget, records: Option<(u64, u64)>, error: PgError) -> SinkError {
    let records = records.map_or(String::new(), |(a, b)| format!(" (records {a} to {b})"));
    let context = format!("write {}{records} to table {}", file.source_uri, file.table);
    if error.is_transient() {
        SinkError::transient(context, error)
    } else {
        SinkError::permanent(context, error)
    }
}

#[async_trait]
impl RowSink for PgRowSink {
    /// Rows are staged and merged into the table in one transaction by `finish`; `abort` deletes them.
    fn stages(&self) -> bool {
        true
    }

    async fn write_batch(&mut self, batch: &RowBatch) -> Result<(), SinkError> {
        if self.already_imported || batch.is_empty() {
            return Ok(());
        }
        // One COPY per batch, committed on its own: staged rows are durable when this returns, and memory
        // holds one batch's encoding at most.
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let (mut first, mut last) = (u64::MAX, 0);
        let mut digits = itoa::Buffer::new();
        for (position, row) in batch.iter() {
            first = first.min(position.record);
            last = last.max(position.record);
            buf.extend_from_slice(self.file.version.as_bytes());
            buf.push(b'\t');
            buf.extend_from_slice(digits.format(position.record).as_bytes());
            buf.push(b'\t');
            push_copy_field(&mut buf, row);
            buf.push(b'\n');
        }
        let records = Some((first, last));
        let copy_failed = |e| {
            sink_error(
                &self.file,
                records,
                PgError::query("COPY rows into the staging table", staged_rows(), e),
            )
        };
        let sink = self.client.copy_in(&self.copy).await.map_err(copy_failed)?;
        futures::pin_mut!(sink);
        sink.send(Bytes::from(buf)).await.map_err(copy_failed)?;
        let rows = sink.as_mut().finish().await.map_err(copy_failed)?;
        self.staged += rows;
        self.staged_through = Some(self.staged_through.map_or(last, |s| s.max(last)));
        self.buf = Vec::with_capacity(batch.byte_len() + batch.len() * 48);
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), SinkError> {
        if self.already_imported {
            tracing::info!(table = %self.file.table, connector = %self.file.connector_id, key = %self.file.source_key, "file version already imported; nothing written");
            return Ok(());
        }
        let file = &self.file;
        let table = file.table.quoted();
        let fail = |step, e| sink_error(file, None, PgError::query(step, table.clone(), e));
        let tx = self
            .client
            .transaction()
            .await
            .map_err(|e| fail("begin the merge", e))?;
        // The imports row first: a concurrent finish of the same file version waits on it, then finds it.
        let recorded = tx
            .execute(
                &format!(
                    "INSERT INTO {} (target, connector_id, file_id, source_key, source_etag, source_last_modified) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                    imports()
                ),
                &[&table, &file.connector_id, &file.file_id, &file.source_key, &file.source_etag, &file.last_modified],
            )
            .await
            .map_err(|e| fail("record the file version in the imports", e))?;
        let mut merged = 0;
        if recorded == 1 {
            merged = tx
                .execute(
                    &self.merge,
                    &[
                        &file.version,
                        &file.source_key,
                        &file.source_etag,
                        &file.last_modified,
                    ],
                )
                .await
                .map_err(|e| fail("merge the staged rows into the table", e))?;
            tx.execute(
                &format!("UPDATE {} SET rows = $4 WHERE target = $1 AND connector_id = $2 AND file_id = $3", imports()),
                &[&table, &file.connector_id, &file.file_id, &(merged as i64)],
            )
            .await
            .map_err(|e| fail("count the rows in the imports", e))?;
        }
        tx.execute(
            &format!("DELETE FROM {} WHERE version = $1", staged_rows()),
            &[&file.version],
        )
        .await
        .map_err(|e| fail("delete the merged staged rows", e))?;
        tx.commit().await.map_err(|e| fail("commit the merge", e))?;
        tracing::info!(table = %table, connector = %file.connector_id, key = %file.source_key, merged, duplicate = recorded == 0, "file version merged");
        Ok(())
    }

    async fn abort(&mut self) -> Result<(), SinkError> {
        if !self.already_imported {
            let deleted = self.delete_staged().await?;
            tracing::info!(table = %self.file.table, connector = %self.file.connector_id, key = %self.file.source_key, deleted, "file aborted; staged rows deleted");
        }
        Ok(())
    }

    async fn suspend(&mut self) -> Result<Option<serde_json::Value>, SinkError> {
        let state = SinkState {
            staged_through: self.staged_through,
        };
        serde_json::to_value(state)
            .map(Some)
            .map_err(|e| sink_error(&self.file, None, PgError::Checkpoint(e.to_string())))
    }
}
