//! The PostgreSQL destination: a file version's rows go into one table (made from the template by
//! [`ddl::create`], checked against it by [`verify::verify`]), visible all at once when the file is finished,
//! never twice, and never over a newer file version's rows.
//!
//! # Write path
//!
//! 1. **Stage.** Each batch is one `COPY … FROM STDIN` (text format) into `s3_importer.staged_rows`, committed
//!    on its own: one row per record, `(version, record, row jsonb)`, where `version` hashes the table, the
//!    connector and the ledger's file id. The rows are the validated JSON objects as they come (no parsing
//!    here, memory bounded by one batch); the server parses each value into its column type at the merge,
//!    so decimals stay exact (binary COPY would need a decimal encoder of our own) and one staging table
//!    serves every table and template version. The cost is one `jsonb` parse per row on the server.
//! 2. **Pieces.** `suspend` returns `{"staged_through": <record>}`: the staged rows are already durable and
//!    invisible. A piece that is redone (a crash before its checkpoint) first deletes the staged rows after
//!    that record; a first piece deletes every staged row of the file version.
//! 3. **Finish**, in ONE transaction: insert the file version into `s3_importer.imports` (`ON CONFLICT DO
//!    NOTHING`: a file version already there makes the finish a no-op, so a redelivery writes nothing), then
//!    `INSERT INTO <table> SELECT … FROM staged_rows … ON CONFLICT (<primary key>) DO UPDATE … WHERE`
//!    the existing row is not newer (see [`merge::merge_sql`]), then delete the staged rows, and commit.
//!    Without a primary key, rows are appended, unique by (source key, ETag, record): `DO NOTHING`.
//! 4. **Abort** deletes the staged rows: nothing was visible, nothing is.
//!
//! Errors are [`SinkError`]s with the file and table; connection loss, serialization failures, deadlocks,
//! too many connections and shutdowns are transient (see [`error::is_transient`]), the rest permanent.
//!
//! One connection per opened sink (a worker imports a few files at a time); the importer's schema is created
//! on the first open if missing (`CREATE … IF NOT EXISTS`, under an advisory lock). The error report is not
//! this crate's: [`PostgresDestination`] hands `open_rejects` to another destination (S3, in the worker).

pub mod connect;
pub mod ddl;
pub mod error;
pub mod merge;
pub mod settings;
pub mod sink;
pub mod verify;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use s3_importer_core::sink::{RejectSink, RowSink, SinkError};
use s3_importer_core::sync::ports::{Destination, FileJob};
use s3_importer_core::template::UnknownColumns;

pub use connect::connect;
pub use ddl::TableRef;
pub use error::PgError;
pub use settings::{ConnectionSettings, Password, SslMode};
pub use sink::{FileTarget, PgRowSink, SinkState};
pub use verify::{verify, Mismatch, Problem, Report};

/// Rows into one PostgreSQL table; error reports through another destination.
pub struct PostgresDestination {
    settings: ConnectionSettings,
    table: TableRef,
    rejects: Arc<dyn Destination>,
    schema_ready: AtomicBool,
}

impl std::fmt::Debug for PostgresDestination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresDestination")
            .field("settings", &self.settings)
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl PostgresDestination {
    /// Rows of every file into `table` on the server `settings` name; `open_rejects` goes to `rejects`.
    pub fn new(
        settings: ConnectionSettings,
        table: TableRef,
        rejects: Arc<dyn Destination>,
    ) -> Self {
        Self {
            settings,
            table,
            rejects,
            schema_ready: AtomicBool::new(false),
        }
    }

    /// The table written.
    pub fn table(&self) -> &TableRef {
        &self.table
    }
}

#[async_trait]
impl Destination for PostgresDestination {
    async fn open_rows(&self, job: &FileJob) -> Result<Box<dyn RowSink>, SinkError> {
        let file = FileTarget::new(job, &self.table);
        let context = format!("write {} to table {}", file.source_uri, self.table);
        let permanent = |e: PgError| SinkError::permanent(context.clone(), e);
        ddl::check_template(&job.template).map_err(permanent)?;
        if job.template.unknown_columns == UnknownColumns::Keep {
            return Err(permanent(PgError::Template {
                template: job.template.name.clone(),
                reason: "unknown_columns = \"keep\" passes columns a table does not have; use \"ignore\" or \
                         \"reject\" with a PostgreSQL destination"
                    .into(),
            }));
        }
        let resume = match &job.entry.checkpoint {
            None => None,
            Some(checkpoint) => {
                let state = checkpoint.rows_state.clone().ok_or_else(|| {
                    permanent(PgError::Checkpoint(
                        "the checkpoint holds no state of the PostgreSQL sink; retry the file from the start".into(),
                    ))
                })?;
                Some(
                    serde_json::from_value::<SinkState>(state)
                        .map_err(|e| permanent(PgError::Checkpoint(e.to_string())))?,
                )
            }
        };
        let classify = |e: PgError| {
            if e.is_transient() {
                SinkError::transient(context.clone(), e)
            } else {
                SinkError::permanent(context.clone(), e)
            }
        };
        let mut client = connect(&self.settings).await.map_err(classify)?;
        if !self.schema_ready.load(Ordering::Acquire) {
            ddl::ensure_importer_schema(&mut client)
                .await
                .map_err(classify)?;
            self.schema_ready.store(true, Ordering::Release);
        }
        Ok(Box::new(
            PgRowSink::open(client, file, &job.template, resume).await?,
        ))
    }

    async fn open_rejects(&self, job: &FileJob) -> Result<Box<dyn RejectSink>, SinkError> {
        self.rejects.open_rejects(job).await
    }
}
