//! [`PgRowSink`]: one file version's rows, staged by binary COPY into the file version's own staging table
//! and merged in one transaction (see the crate doc).

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::SinkExt;
use s3_importer_core::sink::{RowBatch, RowSink, SinkError};
use s3_importer_core::sync::ports::FileJob;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::pin::Pin;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, CopyInSink, Statement};

use crate::ddl::{column_type, create_stage, quote_ident, stage_table, TableRef, IMPORTER_SCHEMA};
use crate::encode::{RowEncoder, HEADER, TRAILER};
use crate::error::PgError;
use crate::merge::{insert_sql, merge_sql};

/// What the sink hands to the next piece: the highest record it staged (durably, by then), and how many
/// rows are staged in all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SinkState {
    /// Highest record staged so far, `None` when none was.
    pub staged_through: Option<u64>,
    /// Rows staged by all pieces so far (the fast merge checks it inserted them all).
    #[serde(default)]
    pub staged_rows: u64,
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
    /// The staging id: a hash of the table, the connector, the file id and the template's columns (a
    /// template changed between pieces stages elsewhere, and the resumed piece finds its staging lost).
    pub version: String,
    /// Source key.
    pub source_key: String,
    /// Source ETag, quoted.
    pub source_etag: String,
    /// Source LastModified.
    pub last_modified: DateTime<Utc>,
    /// `s3://bucket/key`, for messages.
    pub source_uri: String,
    /// The ledger's replay number of the file version (`connector replay`): a file version recorded in
    /// `imports` with a lower one is merged again.
    pub replays: i32,
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
        for field in &job.template.fields {
            hash.update(quote_ident(&field.name).as_bytes());
            hash.update(column_type(&field.field_type).as_bytes());
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
            replays: i32::try_from(job.entry.replays).unwrap_or(i32::MAX),
        }
    }
}

/// Stages a file version's rows in its staging table and merges them into the table at `finish`.
pub struct PgRowSink {
    client: Client,
    file: FileTarget,
    /// The file version's staging table, quoted.
    stage: String,
    encoder: RowEncoder,
    /// The fast merge ([`insert_sql`]) and the general one ([`merge_sql`]).
    insert: String,
    merge: String,
    copy: Statement,
    /// The file version is in `imports` already: a redelivery, which writes nothing.
    already_imported: bool,
    staged_through: Option<u64>,
    /// Rows staged by every piece, this one included.
    staged_rows: u64,
    /// Rows staged by this piece.
    staged: u64,
    /// The COPY in progress, fed by [`RowSink::write_batch`] (see [`OpenCopy`]).
    open_copy: Option<OpenCopy>,
    /// Room for the next batch's encoding (the size of the last one).
    room: usize,
}

/// One `COPY` kept open across batches, so the server loads a batch while the next one is read and encoded:
/// closed (and its rows counted as staged) by `suspend` and `finish`, and after [`COPY_BYTES`], so that one
/// statement never stays open long.
struct OpenCopy {
    sink: Pin<Box<CopyInSink<Bytes>>>,
    first: u64,
    last: u64,
    bytes: usize,
}

/// The bytes after which a `COPY` is closed and the next batch starts another.
const COPY_BYTES: usize = 64 << 20;

impl std::fmt::Debug for PgRowSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgRowSink")
            .field("file", &self.file)
            .field("already_imported", &self.already_imported)
            .field("staged_through", &self.staged_through)
            .finish_non_exhaustive()
    }
}

fn imports() -> String {
    format!("{}.imports", quote_ident(IMPORTER_SCHEMA))
}

impl PgRowSink {
    /// Opens the sink on `client`: a redelivered file version (in `imports`) writes nothing. Otherwise the
    /// file version's staging table is made ready: created anew on the first piece (`resume` `None`; rows a
    /// crashed attempt left are dropped with it), and on a later piece checked to hold the earlier pieces'
    /// rows, then cleared of those after the last checkpoint's `staged_through`.
    pub async fn open(
        mut client: Client,
        file: FileTarget,
        template: &s3_importer_core::template::Template,
        resume: Option<SinkState>,
    ) -> Result<Self, SinkError> {
        let ctx = |e: PgError| sink_error(&file, None, e);
        let table = file.table.quoted();
        let stage = stage_table(&file.version);
        let already_imported = client
            .query_opt(
                &format!(
                    "SELECT 1 FROM {} WHERE target = $1 AND connector_id = $2 AND file_id = $3 \
                     AND replays >= $4",
                    imports()
                ),
                &[&table, &file.connector_id, &file.file_id, &file.replays],
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
        let state = resume.unwrap_or_default();
        if !already_imported {
            let step = |e| {
                ctx(PgError::query(
                    "make the staging table ready",
                    stage.clone(),
                    e,
                ))
            };
            let tx = client.transaction().await.map_err(step)?;
            // Two attempts at one file version must not create its table at once.
            tx.execute("SELECT pg_advisory_xact_lock(hashtext($1))", &[&stage])
                .await
                .map_err(step)?;
            let exists = tx
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&stage])
                .await
                .map_err(step)?
                .get::<_, bool>(0);
            if resume.is_none() && exists {
                tx.batch_execute(&format!("DROP TABLE {stage}"))
                    .await
                    .map_err(step)?;
                tracing::info!(table = %table, connector = %file.connector_id, key = %file.source_key, "dropped the rows a failed attempt had staged");
            }
            if resume.is_some()
                && !exists
                && (state.staged_through.is_some() || state.staged_rows > 0)
            {
                return Err(ctx(PgError::StagingLost(format!(
                    "the staging table {stage} of the earlier pieces ({} rows) is gone (dropped, or the \
                     template changed since the first piece); retry the file from the start",
                    state.staged_rows
                ))));
            }
            tx.batch_execute(&create_stage(template, &file.version))
                .await
                .map_err(step)?;
            if resume.is_some() {
                // Record numbers start at 1: rows staged after the checkpoint were not counted in it.
                let after = state.staged_through.map_or(0, |r| r as i64);
                let deleted = tx
                    .execute(&format!("DELETE FROM {stage} WHERE record > $1"), &[&after])
                    .await
                    .map_err(step)?;
                if deleted > 0 {
                    tracing::info!(table = %table, connector = %file.connector_id, key = %file.source_key, deleted, "deleted rows a failed attempt had staged after the checkpoint");
                }
            }
            tx.commit().await.map_err(step)?;
        }
        let columns = std::iter::once("record".to_owned())
            .chain(template.fields.iter().map(|f| quote_ident(&f.name)))
            .collect::<Vec<_>>()
            .join(", ");
        let copy = client
            .prepare(&format!(
                "COPY {stage} ({columns}) FROM STDIN (FORMAT binary)"
            ))
            .await
            .map_err(|e| ctx(PgError::query("prepare the COPY", stage.clone(), e)))?;
        Ok(Self {
            insert: insert_sql(template, &file.table, &stage),
            merge: merge_sql(template, &file.table, &stage),
            encoder: RowEncoder::new(template),
            stage,
            client,
            file,
            copy,
            already_imported,
            staged_through: state.staged_through,
            staged_rows: state.staged_rows,
            staged: 0,
            open_copy: None,
            room: 0,
        })
    }

    /// Rows staged by this sink (this piece).
    pub fn staged(&self) -> u64 {
        self.staged
    }

    /// Ends the COPY in progress, if any: its rows are then staged, durably.
    async fn close_copy(&mut self) -> Result<(), SinkError> {
        let Some(mut open) = self.open_copy.take() else {
            return Ok(());
        };
        let records = (open.first, open.last);
        open.sink
            .send(Bytes::from_static(TRAILER))
            .await
            .map_err(|e| copy_failed(&self.file, &self.stage, records, e))?;
        let rows = open
            .sink
            .as_mut()
            .finish()
            .await
            .map_err(|e| copy_failed(&self.file, &self.stage, records, e))?;
        self.staged += rows;
        self.staged_rows += rows;
        self.staged_through = Some(self.staged_through.map_or(open.last, |s| s.max(open.last)));
        Ok(())
    }

    async fn drop_stage(&self) -> Result<(), SinkError> {
        self.client
            .batch_execute(&format!("DROP TABLE IF EXISTS {}", self.stage))
            .await
            .map_err(|e| {
                sink_error(
                    &self.file,
                    None,
                    PgError::query("drop the staging table", self.stage.clone(), e),
                )
            })
    }
}

/// A failed COPY of `records`.
fn copy_failed(
    file: &FileTarget,
    stage: &str,
    records: (u64, u64),
    error: tokio_postgres::Error,
) -> SinkError {
    sink_error(
        file,
        Some(records),
        PgError::query("COPY rows into the staging table", stage, error),
    )
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
        // Memory holds one batch's encoding, and what the connection buffers of the one before.
        let mut buf = Vec::with_capacity(self.room.max(HEADER.len() + batch.byte_len()));
        if self.open_copy.is_none() {
            buf.extend_from_slice(HEADER);
        }
        let (mut first, mut last) = (u64::MAX, 0);
        for (position, row) in batch.iter() {
            first = first.min(position.record);
            last = last.max(position.record);
            self.encoder
                .encode(position.record, row, &mut buf)
                .map_err(|e| {
                    sink_error(
                        &self.file,
                        Some((position.record, position.record)),
                        e.into(),
                    )
                })?;
        }
        self.room = buf.len();
        let open = match self.open_copy.as_mut() {
            Some(open) => open,
            None => {
                let sink = self
                    .client
                    .copy_in(&self.copy)
                    .await
                    .map_err(|e| copy_failed(&self.file, &self.stage, (first, last), e))?;
                self.open_copy.insert(OpenCopy {
                    sink: Box::pin(sink),
                    first,
                    last,
                    bytes: 0,
                })
            }
        };
        open.first = open.first.min(first);
        open.last = open.last.max(last);
        open.bytes += buf.len();
        let records = (open.first, open.last);
        open.sink
            .send(Bytes::from(buf))
            .await
            .map_err(|e| copy_failed(&self.file, &self.stage, records, e))?;
        if open.bytes >= COPY_BYTES {
            self.close_copy().await?;
        }
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), SinkError> {
        if self.already_imported {
            tracing::info!(table = %self.file.table, connector = %self.file.connector_id, key = %self.file.source_key, "file version already imported; nothing written");
            return Ok(());
        }
        self.close_copy().await?;
        let file = &self.file;
        let table = file.table.quoted();
        let fail = |step, e| sink_error(file, None, PgError::query(step, table.clone(), e));
        let mut tx = self
            .client
            .transaction()
            .await
            .map_err(|e| fail("begin the merge", e))?;
        // The imports row first: a concurrent finish of the same file version waits on it, then finds it. A
        // replay moves the row's replay number up, once.
        let recorded = tx
            .execute(
                &format!(
                    "INSERT INTO {imports} AS i (target, connector_id, file_id, source_key, source_etag, \
                     source_last_modified, replays) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (target, connector_id, file_id) DO UPDATE \
                     SET replays = EXCLUDED.replays, imported_at = now() WHERE i.replays < EXCLUDED.replays",
                    imports = imports()
                ),
                &[&table, &file.connector_id, &file.file_id, &file.source_key, &file.source_etag, &file.last_modified, &file.replays],
            )
            .await
            .map_err(|e| fail("record the file version in the imports", e))?;
        let mut merged = 0;
        let mut fast = false;
        if recorded == 1 {
            let lineage: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
                [&file.source_key, &file.source_etag, &file.last_modified];
            // The fast form in a savepoint: kept when it inserted every staged row, rolled back otherwise.
            let savepoint = tx
                .savepoint("fast_merge")
                .await
                .map_err(|e| fail("begin the fast merge", e))?;
            match savepoint.execute(&self.insert, &lineage).await {
                Ok(inserted) if inserted == self.staged_rows => {
                    savepoint
                        .commit()
                        .await
                        .map_err(|e| fail("end the fast merge", e))?;
                    merged = inserted;
                    fast = true;
                }
                Ok(_) => savepoint
                    .rollback()
                    .await
                    .map_err(|e| fail("roll the fast merge back", e))?,
                Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => savepoint
                    .rollback()
                    .await
                    .map_err(|e| fail("roll the fast merge back", e))?,
                Err(e) => return Err(fail("merge the staged rows into the table", e)),
            }
            if !fast {
                merged = tx
                    .execute(&self.merge, &lineage)
                    .await
                    .map_err(|e| fail("merge the staged rows into the table", e))?;
            }
            tx.execute(
                &format!("UPDATE {} SET rows = $4 WHERE target = $1 AND connector_id = $2 AND file_id = $3", imports()),
                &[&table, &file.connector_id, &file.file_id, &(merged as i64)],
            )
            .await
            .map_err(|e| fail("count the rows in the imports", e))?;
        }
        tx.batch_execute(&format!("DROP TABLE IF EXISTS {}", self.stage))
            .await
            .map_err(|e| fail("drop the merged staging table", e))?;
        tx.commit().await.map_err(|e| fail("commit the merge", e))?;
        tracing::info!(table = %table, connector = %file.connector_id, key = %file.source_key, merged, fast, duplicate = recorded == 0, "file version merged");
        Ok(())
    }

    async fn abort(&mut self) -> Result<(), SinkError> {
        if !self.already_imported {
            // Dropping an open COPY sends CopyFail: its rows are not staged.
            self.open_copy = None;
            self.drop_stage().await?;
            tracing::info!(table = %self.file.table, connector = %self.file.connector_id, key = %self.file.source_key, staged = self.staged_rows, "file aborted; staging table dropped");
        }
        Ok(())
    }

    async fn suspend(&mut self) -> Result<Option<serde_json::Value>, SinkError> {
        self.close_copy().await?;
        let state = SinkState {
            staged_through: self.staged_through,
            staged_rows: self.staged_rows,
        };
        serde_json::to_value(state)
            .map(Some)
            .map_err(|e| sink_error(&self.file, None, PgError::Checkpoint(e.to_string())))
    }
}
