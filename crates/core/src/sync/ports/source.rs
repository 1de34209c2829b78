//! The source port: listing and reading a connector's objects (S3 in production).

use async_trait::async_trait;
use tokio::io::AsyncRead;

use super::BoxError;
use crate::sync::model::{ObjectMeta, Source};

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
    /// One page (up to 1000 objects) under the source's prefix. For a source with
    /// [`versions`](Source::versions), every version of every key (not delete markers), each with its
    /// `version_id`: S3's ListObjectVersions, newest version of a key first.
    async fn list_page(
        &self,
        source: &Source,
        continuation: Option<String>,
    ) -> Result<ListPage, SourceError>;

    /// The first page of keys after `start_after` under the source's prefix (S3's `StartAfter`): where a
    /// listing checkpointed by key resumes. For a source with [`versions`](Source::versions), `start_after`
    /// is an [`ObjectMeta::listing_position`] (the versions after that version: `KeyMarker` and
    /// `VersionIdMarker`). Its `next` continues with [`list_page`](Self::list_page).
    async fn list_page_after(
        &self,
        source: &Source,
        start_after: &str,
    ) -> Result<ListPage, SourceError>;

    /// Streams one object version, pinned to `etag` (`IfMatch`), to `version_id` when given (a version of a
    /// versioned source, readable after newer ones were written) and to the source's account
    /// (`ExpectedBucketOwner`).
    async fn open(
        &self,
        source: &Source,
        key: &str,
        etag: &str,
        version_id: Option<&str>,
        range: Option<ByteRange>,
    ) -> Result<ObjectBody, SourceError>;

    /// One object's metadata as a listing would show it (HeadObject, pinned to the source's account), or
    /// `None` when there is no such key (or version). S3 events carry no storage class or LastModified; this
    /// does. With `version_id`, that version; for a source with [`versions`](Source::versions), the answer
    /// carries its `version_id`.
    async fn head(
        &self,
        source: &Source,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<ObjectMeta>, SourceError>;

    /// Up to `max` versions of `key` older than `version_id`, newest first (S3's ListObjectVersions after
    /// that version). S3's LastModified has whole seconds: this is what orders two versions written within
    /// one second (`docs/architecture.md`, "Versioned buckets").
    async fn older_versions(
        &self,
        source: &Source,
        key: &str,
        version_id: &str,
        max: usize,
    ) -> Result<Vec<ObjectMeta>, SourceError>;
}
