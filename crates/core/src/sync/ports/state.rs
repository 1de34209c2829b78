//! The state ports, by what they hold: connectors, templates, the file ledger, leases and sync history
//! (one DynamoDB table in production). [`StateStore`] is their sum, for callers that manage everything.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::BoxError;
use crate::sync::model::{Checkpoint, Connector, FileStatus, LedgerEntry, Reconcile, SyncRun};
use crate::template::Template;

/// A stored template version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredTemplate {
    /// Template id (its name).
    pub id: String,
    /// Version, from 1.
    pub version: u32,
    /// The TOML the user wrote.
    pub source: String,
    /// Parsed.
    pub template: Template,
    /// Stored at.
    pub created_at: DateTime<Utc>,
}

/// Result of claiming a file version.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimOutcome {
    /// This caller created the entry.
    Claimed,
    /// An entry already exists (another lister, or an earlier run).
    AlreadyKnown,
}

/// Result of a worker asking to process a file version.
#[derive(Debug, Clone, PartialEq)]
pub enum StartOutcome {
    /// The caller holds the lease; the entry as it now stands.
    Started(Box<LedgerEntry>),
    /// The entry is final (imported, failed, ...): a duplicate delivery; ack it.
    AlreadyFinished(FileStatus),
    /// Another worker holds a live lease until then: report a batch item failure to retry later.
    Busy(DateTime<Utc>),
    /// No ledger entry (deleted connector, or a message not made by a lister).
    Unknown,
}

/// A state store failure.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A connector with that name exists.
    #[error("a connector named {name:?} already exists")]
    NameTaken {
        /// Name.
        name: String,
    },
    /// The item to change does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What.
        what: String,
    },
    /// A conditional write lost a race (someone else changed it first).
    #[error("{what} was changed concurrently")]
    Conflict {
        /// What.
        what: String,
    },
    /// Throttling, 5xx, timeouts.
    #[error("{context}: {source}")]
    Transient {
        /// What was being done.
        context: String,
        /// Cause.
        #[source]
        source: BoxError,
    },
    /// Anything else.
    #[error("{context}: {source}")]
    Other {
        /// What was being done.
        context: String,
        /// Cause.
        #[source]
        source: BoxError,
    },
}

impl StateError {
    /// True when retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }
}

/// Connectors: their settings, status, watermark and last sync (the lister, the worker and the CLI).
#[async_trait]
pub trait ConnectorStore: Send + Sync {
    /// Stores a new connector; `NameTaken` if the name is in use.
    async fn create_connector(&self, connector: &Connector) -> Result<(), StateError>;
    /// A connector by id.
    async fn get_connector(&self, id: &str) -> Result<Option<Connector>, StateError>;
    /// A connector by name.
    async fn find_connector_by_name(&self, name: &str) -> Result<Option<Connector>, StateError>;
    /// Every connector.
    async fn list_connectors(&self) -> Result<Vec<Connector>, StateError>;
    /// Replaces a connector's settings (name, status, source, template, destination); a rename keeps names
    /// unique (`NameTaken`). Does not touch the watermark or last sync.
    async fn update_connector(&self, connector: &Connector) -> Result<(), StateError>;
    /// Deletes a connector and all its state (ledger, sync runs, lease). Returns the number of items removed.
    async fn delete_connector(&self, id: &str) -> Result<u64, StateError>;
    /// Moves the watermark forward to `to` (never back; a lower value is a no-op).
    async fn advance_watermark(&self, id: &str, to: DateTime<Utc>) -> Result<(), StateError>;
    /// Stores the reconciliation listing's progress (the lister's alone, like the watermark). `NotFound`
    /// when the connector is gone.
    async fn save_reconcile(&self, id: &str, reconcile: &Reconcile) -> Result<(), StateError>;
}

/// Sync history: one record per lister pass over a connector (the lister writes it, the CLI reads it).
#[async_trait]
pub trait SyncHistory: Send + Sync {
    /// Records a sync run (kept for a limited time) and makes it the connector's last sync.
    async fn record_sync_run(&self, run: &SyncRun) -> Result<(), StateError>;
    /// The connector's sync runs, newest first.
    async fn list_sync_runs(
        &self,
        connector_id: &str,
        limit: usize,
    ) -> Result<Vec<SyncRun>, StateError>;
}

/// Versioned data templates (the worker reads the version a file was claimed with).
#[async_trait]
pub trait TemplateStore: Send + Sync {
    /// Stores a new version of a template; returns its version number.
    async fn put_template(
        &self,
        id: &str,
        source: &str,
        template: &Template,
        now: DateTime<Utc>,
    ) -> Result<u32, StateError>;
    /// A template version, or the latest when `version` is `None`.
    async fn get_template(
        &self,
        id: &str,
        version: Option<u32>,
    ) -> Result<Option<StoredTemplate>, StateError>;
    /// The latest version of every template.
    async fn list_templates(&self) -> Result<Vec<StoredTemplate>, StateError>;
}

/// Named leases with an expiry: one lister pass per connector at a time.
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Takes the named lease for `owner` until `now + ttl` if it is free or expired. Returns whether it was taken.
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<bool, StateError>;
    /// Releases the lease if `owner` holds it.
    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StateError>;
}

/// The per-file ledger: one entry per file version, moved through its states by conditional writes
/// (`docs/architecture.md`, "The ledger").
#[async_trait]
pub trait FileLedger: Send + Sync {
    /// The entries among `file_ids` that exist.
    async fn get_files(
        &self,
        connector_id: &str,
        file_ids: &[String],
    ) -> Result<HashMap<String, LedgerEntry>, StateError>;
    /// One entry.
    async fn get_file(
        &self,
        connector_id: &str,
        file_id: &str,
    ) -> Result<Option<LedgerEntry>, StateError>;
    /// Every entry of a connector, optionally only those with one status.
    async fn list_files(
        &self,
        connector_id: &str,
        status: Option<FileStatus>,
    ) -> Result<Vec<LedgerEntry>, StateError>;
    /// Creates the entry only if none exists for that file version.
    async fn claim_file(&self, entry: &LedgerEntry) -> Result<ClaimOutcome, StateError>;
    /// `claimed → queued` once the queue accepted the message. A no-op for an entry in any other state.
    async fn mark_queued(
        &self,
        connector_id: &str,
        file_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StateError>;
    /// `claimed | queued | processing-with-expired-lease → processing` for `owner` until `lease_until`;
    /// `attempts` is incremented.
    async fn start_file(
        &self,
        connector_id: &str,
        file_id: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<StartOutcome, StateError>;
    /// Extends the lease held by `owner` and stores a checkpoint (`None` leaves it as it is).
    async fn renew_file(
        &self,
        connector_id: &str,
        file_id: &str,
        owner: &str,
        lease_until: DateTime<Utc>,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), StateError>;
    /// Hands a held file back: `processing` (held by `owner`) `→ queued`, lease removed, storing `checkpoint`
    /// when given (the next piece of a long file starts there). `Conflict` when `owner` no longer holds it.
    async fn checkpoint_file(
        &self,
        connector_id: &str,
        file_id: &str,
        owner: &str,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), StateError>;
    /// Records that the message for piece `piece` was sent (`checkpoint.continued`), whatever the entry's
    /// status; a no-op when the checkpoint is for another piece or gone.
    async fn mark_continued(
        &self,
        connector_id: &str,
        file_id: &str,
        piece: u32,
    ) -> Result<(), StateError>;
    /// Writes the final outcome (`entry.status` must be final) if `owner` still holds the lease;
    /// `Conflict` otherwise.
    async fn finish_file(&self, entry: &LedgerEntry, owner: &str) -> Result<(), StateError>;
    /// `processing → queued` after a transient failure, so a redelivery can start again; records `error`.
    async fn release_file(
        &self,
        connector_id: &str,
        file_id: &str,
        owner: &str,
        error: &str,
    ) -> Result<(), StateError>;
    /// `from → claimed` on a user's request, so it is sent again: `connector retry` and `redrive` reopen
    /// `failed` entries, `connector replay` any final one with `replay` set (see [`LedgerEntry::reopen`]).
    /// Returns false when the entry is not in `from` (missing, or moved first by someone else).
    async fn reopen_file(
        &self,
        connector_id: &str,
        file_id: &str,
        from: FileStatus,
        replay: bool,
    ) -> Result<bool, StateError>;
    /// A file whose message reached the dead-letter queue: `claimed | queued | processing` without a live
    /// lease `→ failed` with `error` (see [`LedgerEntry::dead_lettered`]). Returns false when the entry is
    /// final already, a worker holds a live lease, or there is no entry.
    async fn dead_letter_file(
        &self,
        connector_id: &str,
        file_id: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StateError>;
}

/// The whole state table: every capability. Implemented for any type that has them all; callers that manage
/// everything (the CLI) take it, the lister and the worker take only the capabilities they use.
pub trait StateStore:
    ConnectorStore + SyncHistory + TemplateStore + LeaseStore + FileLedger
{
}

impl<T> StateStore for T where
    T: ConnectorStore + SyncHistory + TemplateStore + LeaseStore + FileLedger + ?Sized
{
}
