//! The capability traits the lister and worker use. Each has an in-memory adapter ([`super::memory`]) and an
//! AWS adapter (`s3-importer-aws`), checked by one contract suite against both.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;

use super::model::{
    Checkpoint, Connector, FileMessage, FileStatus, LedgerEntry, ObjectMeta, Source, SyncRun,
};
use crate::sink::{RejectSink, RowSink, SinkError};
use crate::template::Template;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

// ---------------------------------------------------------------------------------------------------------
// Source objects (S3)
// ---------------------------------------------------------------------------------------------------------

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Objects on this page.
    pub objects: Vec<ObjectMeta>,
    /// Token for the next page; `None` on the last one.
    pub next: Option<String>,
}

/// A byte range `[start, end)`; `end = None` reads to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: Option<u64>,
}

/// An object's body, streamed.
pub struct ObjectBody {
    /// The bytes.
    pub reader: Box<dyn AsyncRead + Send + Unpin>,
    /// `Content-Encoding`, when set (gzip is honoured).
    pub content_encoding: Option<String>,
    /// Content length of this response.
    pub content_length: Option<u64>,
}

impl std::fmt::Debug for ObjectBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectBody")
            .field("content_encoding", &self.content_encoding)
            .field("content_length", &self.content_length)
            .finish_non_exhaustive()
    }
}

/// Why a source operation failed. Messages name `s3://bucket/key` and say what to change.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The object was deleted after it was listed.
    #[error("s3://{bucket}/{key} no longer exists")]
    NotFound {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },
    /// The object was overwritten after it was listed (its ETag no longer matches).
    #[error("s3://{bucket}/{key} changed since it was listed (ETag {etag} no longer matches)")]
    Changed {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// The ETag asked for.
        etag: String,
    },
    /// The bucket does not exist (or is not owned by the expected account).
    #[error("bucket {bucket} does not exist or is not owned by account {account_id}")]
    NoSuchBucket {
        /// Bucket.
        bucket: String,
        /// Expected owner.
        account_id: String,
    },
    /// Access was refused.
    #[error("access denied to s3://{bucket}/{key}: {message}")]
    AccessDenied {
        /// Bucket.
        bucket: String,
        /// Key or prefix.
        key: String,
        /// S3's message.
        message: String,
    },
    /// The object is archived and must be restored first.
    #[error("s3://{bucket}/{key} is archived; restore it before importing")]
    Archived {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
    },
    /// The object's KMS key cannot be used.
    #[error("cannot decrypt s3://{bucket}/{key} with its KMS key: {message}")]
    Kms {
        /// Bucket.
        bucket: String,
        /// Key.
        key: String,
        /// KMS's message.
        message: String,
    },
    /// The cross-account role cannot be assumed.
    #[error("cannot assume role {role_arn}: {message}")]
    AssumeRole {
        /// Role.
        role_arn: String,
        /// STS's message.
        message: String,
    },
    /// Throttling, 5xx, timeouts: retry later.
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

impl SourceError {
    /// True when retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient { .. })
    }
}

/// Lists and reads a connector's source objects.
#[async_trait]
pub trait ObjectSource: Send + Sync {
    /// One page (up to 1000 objects) under the source's prefix.
    async fn list_page(
        &self,
        source: &Source,
        continuation: Option<String>,
    ) -> Result<ListPage, SourceError>;

    /// Streams one object version, pinned to `etag` (`IfMatch`) and to the source's account
    /// (`ExpectedBucketOwner`).
    async fn open(
        &self,
        source: &Source,
        key: &str,
        etag: &str,
        range: Option<ByteRange>,
    ) -> Result<ObjectBody, SourceError>;
}

// ---------------------------------------------------------------------------------------------------------
// Queue (SQS)
// ---------------------------------------------------------------------------------------------------------

/// Sending to the work queue failed as a whole.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {source}")]
pub struct QueueError {
    /// What was being done.
    pub context: String,
    /// Cause.
    #[source]
    pub source: BoxError,
}

/// The work queue.
#[async_trait]
pub trait FileQueue: Send + Sync {
    /// Sends messages (batched by 10, failed entries retried). Returns, for each message in order, whether
    /// the queue accepted it.
    async fn send(&self, messages: &[FileMessage]) -> Result<Vec<bool>, QueueError>;

    /// Keeps a received message invisible for `seconds` from now (ChangeMessageVisibility), so it is not
    /// delivered again while its file is being imported.
    async fn extend_visibility(&self, receipt_handle: &str, seconds: u32)
        -> Result<(), QueueError>;
}

// ---------------------------------------------------------------------------------------------------------
// State (DynamoDB)
// ---------------------------------------------------------------------------------------------------------

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

/// Connectors, templates, leases, the per-file ledger and sync history (single-table, DESIGN §7).
#[async_trait]
pub trait StateStore: Send + Sync {
    // --- connectors ---
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

    // --- sync runs ---
    /// Records a sync run (kept for a limited time) and makes it the connector's last sync.
    async fn record_sync_run(&self, run: &SyncRun) -> Result<(), StateError>;
    /// The connector's sync runs, newest first.
    async fn list_sync_runs(
        &self,
        connector_id: &str,
        limit: usize,
    ) -> Result<Vec<SyncRun>, StateError>;

    // --- templates ---
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

    // --- leases ---
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

    // --- ledger ---
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
    /// `failed → claimed` on a user's request (`connector retry`), so the next lister pass sends it again.
    /// Returns false when the entry is not failed.
    async fn retry_file(
        &self,
        connector_id: &str,
        file_id: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, StateError>;
}

// ---------------------------------------------------------------------------------------------------------
// Destinations
// ---------------------------------------------------------------------------------------------------------

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
