//! The PostgreSQL destination: a file version's rows go into one table (made from the template by
//! [`ddl::create`], checked against it by [`verify::verify`]), visible all at once when the file is finished,
//! never twice, and never over a newer file version's rows.
//!
//! # Write path
//!
//! 1. **Stage.** A file version has its own staging table, `s3_importer."stage_<id>"` ([`ddl::create_stage`]):
//!    `record bigint` and the template's fields with their column types, no key, no index, no constraint,
//!    where `<id>` hashes the table, the connector, the ledger's file id and the template's columns. Each
//!    batch is one binary `COPY` into it, committed on its own: [`encode::RowEncoder`] turns each validated
//!    JSON row into the column types' binary forms (decimals exactly, from their digits), so the server
//!    parses no JSON and no text, and maintains no index while loading; memory holds one batch's encoding.
//!    The table is an ordinary logged one: a staged piece survives a server crash or a failover (an
//!    `UNLOGGED` table would save the WAL, about a tenth of the staging's cost, but comes back empty after
//!    a crash or on a failover replica, and nothing would then redo the earlier pieces of the file).
//! 2. **Pieces.** `suspend` returns `{"staged_through": <record>, "staged_rows": <n>}`: the staged rows are
//!    already durable and invisible. A piece that is redone (a crash before its checkpoint) first deletes
//!    the staged rows after that record; a first piece drops what an earlier attempt staged. A later piece
//!    that finds the staging table gone while rows were staged (dropped by hand, the template changed)
//!    fails the file permanently rather than merge part of it.
//! 3. **Finish**, in ONE transaction: insert the file version into `s3_importer.imports` (`ON CONFLICT DO
//!    NOTHING`: a file version already there makes the finish a no-op, so a redelivery writes nothing), then
//!    merge the staged rows into the table, then drop the staging table, and commit. The merge first tries
//!    the fast form ([`merge::insert_sql`], in a savepoint): a plain `INSERT … SELECT` of the staged rows
//!    whose key is not in the table, without `ON CONFLICT` or a sort. It is kept when it inserted every
//!    staged row — every key of the file new and distinct, so there was nothing to order or guard.
//!    Otherwise (a key already in the table, a key twice in the file: fewer rows inserted, or a unique
//!    violation, also from a concurrent writer) it is rolled back to the savepoint and the general form runs
//!    ([`merge::merge_sql`]): `INSERT … SELECT DISTINCT ON (<key>) … ORDER BY <key>, record DESC ON CONFLICT
//!    (<primary key>) DO UPDATE … WHERE` the existing row is not newer (the ordering guard). Without a
//!    primary key, rows are appended, unique by (source key, ETag, record): the fast form is the plain
//!    append, the general one `DO NOTHING`.
//! 4. **Abort** drops the staging table: nothing was visible, nothing is.
//!
//! Errors are [`SinkError`]s with the file and table; connection loss, serialization failures, deadlocks,
//! too many connections and shutdowns are transient (see [`error::is_transient`]), the rest permanent.
//!
//! One connection per opened sink (a worker imports a few files at a time); the importer's schema is created
//! on the first open if missing (`CREATE … IF NOT EXISTS`, under an advisory lock). The error report is not
//! this crate's: [`PostgresDestination`] hands `open_rejects` to another destination (S3, in the worker).

pub mod connect;
pub mod ddl;
pub mod encode;
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
