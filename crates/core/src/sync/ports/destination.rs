//! The destination port: where a file's rows and error report go.

use std::sync::Arc;

use async_trait::async_trait;

use crate::sink::{RejectSink, RowSink, SinkError};
use crate::sync::model::{Connector, LedgerEntry};
use crate::template::Template;

/// Everything a destination needs to know about the file it receives rows from.
#[derive(Debug, Clone)]
pub struct FileJob {
    /// The connector.
    pub connector: Connector,
    /// The ledger entry being imported.
    pub entry: LedgerEntry,
    /// The template used.
    pub template: Arc<Template>,
}

/// Opens the sinks for one file version. New destinations (webhook, Postgres) implement this.
#[async_trait]
pub trait Destination: Send + Sync {
    /// Where the file's validated rows go. Writes must be idempotent per file version.
    async fn open_rows(&self, job: &FileJob) -> Result<Box<dyn RowSink>, SinkError>;
    /// Where the file's error report goes.
    async fn open_rejects(&self, job: &FileJob) -> Result<Box<dyn RejectSink>, SinkError>;
}
