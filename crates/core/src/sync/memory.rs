//! In-memory adapters of the ports: fast, deterministic stand-ins for S3, SQS, DynamoDB and the
//! destinations, used by the lister and worker tests and by previews.
//!
//! They are faithful rather than convenient: [`MemoryStateStore`] has the same conditional outcomes as the
//! DynamoDB adapter (both pass `sync::contract`, when the `contract-tests` feature is on),
//! [`MemoryObjectSource`] pages by 1000 and honours `IfMatch`, and [`MemoryDestination`] keeps the
//! ordering guard of the DynamoDB records table.

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::model::{
    lease_is_free, sync_lease_name, Checkpoint, Connector, FileMessage, FileStatus, LedgerEntry,
    ObjectMeta, Source, SyncRun,
};
use super::ports::{
    ByteRange, ClaimOutcome, ConnectorStore, Destination, FileJob, FileLedger, FileQueue,
    LeaseStore, ListPage, ObjectBody, ObjectSource, QueueError, SourceError, StartOutcome,
    StateError, StoredTemplate, SyncHistory, TemplateStore,
};
use crate::sink::{ErrorReportEntry, RejectSink, RejectedRow, RowBatch, RowSink, SinkError};
use crate::template::Template;

/// Locks a mutex; a poisoned lock (a panic in another test thread) is reported, not propagated as a panic.
fn lock<'a, T>(mutex: &'a Mutex<T>, what: &str) -> Result<MutexGuard<'a, T>, String> {
    mutex
        .lock()
        .map_err(|_| format!("{what}: lock poisoned by a panicking thread"))
}

// ---------------------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------------------

/// A held lease.
#[derive(Debug, Clone)]
struct Lease {
    owner: String,
    until: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct StateInner {
    /// Connectors by id (with watermark and last sync).
    connectors: BTreeMap<String, Connector>,
    /// Name → connector id: the uniqueness index.
    names: HashMap<String, String>,
    /// Connector id → file id → entry. Kept apart from `connectors`, as in DynamoDB, where a claim does not
    /// check that its connector exists.
    files: HashMap<String, BTreeMap<String, LedgerEntry>>,
    /// Connector id → runs in insertion order.
    sync_runs: HashMap<String, Vec<SyncRun>>,
    /// Template id → version → template.
    templates: BTreeMap<String, BTreeMap<u32, StoredTemplate>>,
    /// Lease name → holder.
    leases: HashMap<String, Lease>,
}

/// The [`StateStore`] in memory: the same semantics as the DynamoDB adapter, conditional outcomes included
/// (both pass the same contract suite). Every operation is atomic under one lock.
#[derive(Debug, Default)]
pub struct MemoryStateStore {
    inner: Mutex<StateInner>,
}

impl MemoryStateStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, StateInner>, StateError> {
        lock(&self.inner, "memory state store").map_err(|e| StateError::Other {
            context: "memory state store".into(),
            source: e.into(),
        })
    }
}

fn lease_conflict(connector_id: &str, file_id: &str) -> StateError {
    StateError::Conflict {
        what: format!("lease on file {file_id} of connector {connector_id}"),
    }
}

#[async_trait]
impl ConnectorStore for MemoryStateStore {
    async fn create_connector(&self, connector: &Connector) -> Result<(), StateError> {
        let mut s = self.lock()?;
        if s.names.contains_key(&connector.name) {
            return Err(StateError::NameTaken {
                name: connector.name.clone(),
            });
        }
        if s.connectors.contains_key(&connector.id) {
            return Err(StateError::Conflict {
                what: format!("connector {}", connector.id),
            });
        }
        s.names.insert(connector.name.clone(), connector.id.clone());
        s.connectors.insert(connector.id.clone(), connector.clone());
        Ok(())
    }

    async fn get_connector(&self, id: &str) -> Result<Option<Connector>, StateError> {
        Ok(self.lock()?.connectors.get(id).cloned())
    }

    async fn find_connector_by_name(&self, name: &str) -> Result<Option<Connector>, StateError> {
        let s = self.lock()?;
        Ok(s.names
            .get(name)
            .and_then(|id| s.connectors.get(id))
            .cloned())
    }

    async fn list_connectors(&self) -> Result<Vec<Connector>, StateError> {
        let mut all: Vec<Connector> = self.lock()?.connectors.values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.id.cmp(&b.id)));
        Ok(all)
    }

    async fn update_connector(&self, connector: &Connector) -> Result<(), StateError> {
        let mut s = self.lock()?;
        let Some(old_name) = s.connectors.get(&connector.id).map(|c| c.name.clone()) else {
            return Err(StateError::NotFound {
                what: format!("connector {}", connector.id),
            });
        };
        if old_name != connector.name {
            if s.names.contains_key(&connector.name) {
                return Err(StateError::NameTaken {
                    name: connector.name.clone(),
                });
            }
            s.names.remove(&old_name);
            s.names.insert(connector.name.clone(), connector.id.clone());
        }
        if let Some(stored) = s.connectors.get_mut(&connector.id) {
            // The watermark and last sync belong to the lister: a settings change must not roll them back.
            let watermark = stored.watermark.take();
            let last_sync = stored.last_sync.take();
            *stored = Connector {
                watermark,
                last_sync,
                ..connector.clone()
            };
        }
        Ok(())
    }

    async fn delete_connector(&self, id: &str) -> Result<u64, StateError> {
        let mut s = self.lock()?;
        let mut removed = 0u64;
        if let Some(connector) = s.connectors.remove(id) {
            removed += 1;
            if s.names
                .get(&connector.name)
                .is_some_and(|owner| owner == id)
            {
                s.names.remove(&connector.name);
            }
        }
        removed += s.files.remove(id).map_or(0, |files| files.len() as u64);
        removed += s.sync_runs.remove(id).map_or(0, |runs| runs.len() as u64);
        s.leases.remove(&sync_lease_name(id));
        Ok(removed)
    }

    async fn advance_watermark(&self, id: &str, to: DateTime<Utc>) -> Result<(), StateError> {
        let mut s = self.lock()?;
        let Some(connector) = s.connectors.get_mut(id) else {
            return Err(StateError::NotFound {
                what: format!("connector {id}"),
            });
        };
        if connector.watermark.is_none_or(|w| w < to) {
            connector.watermark = Some(to);
        }
        Ok(())
    }
}

#[async_trait]
impl SyncHistory for MemoryStateStore {
    async fn record_sync_run(&self, run: &SyncRun) -> Result<(), StateError> {
        let mut s = self.lock()?;
        let Some(connector) = s.connectors.get_mut(&run.connector_id) else {
            return Err(StateError::NotFound {
                what: format!("connector {}", run.connector_id),
            });
        };
        connector.last_sync = Some(run.clone());
        s.sync_runs
            .entry(run.connector_id.clone())
            .or_default()
            .push(run.clone());
        Ok(())
    }

    async fn list_sync_runs(
        &self,
        connector_id: &str,
        limit: usize,
    ) -> Result<Vec<SyncRun>, StateError> {
        let s = self.lock()?;
        let mut runs = s.sync_runs.get(connector_id).cloned().unwrap_or_default();
        // Stable sort, then reverse: newest first, and among equal start times the last recorded first.
        runs.sort_by_key(|r| r.started_at);
        runs.reverse();
        runs.truncate(limit);
        Ok(runs)
    }
}

#[async_trait]
impl TemplateStore for MemoryStateStore {
    async fn put_template(
        &self,
        id: &str,
        source: &str,
        template: &Template,
        now: DateTime<Utc>,
    ) -> Result<u32, StateError> {
        let mut s = self.lock()?;
        let versions = s.templates.entry(id.to_owned()).or_default();
        let version = versions.keys().next_back().copied().unwrap_or(0) + 1;
        versions.insert(
            version,
            StoredTemplate {
                id: id.to_owned(),
                version,
                source: source.to_owned(),
                template: template.clone(),
                created_at: now,
            },
        );
        Ok(version)
    }

    async fn get_template(
        &self,
        id: &str,
        version: Option<u32>,
    ) -> Result<Option<StoredTemplate>, StateError> {
        let s = self.lock()?;
        let Some(versions) = s.templates.get(id) else {
            return Ok(None);
        };
        Ok(match version {
            Some(v) => versions.get(&v).cloned(),
            None => versions.values().next_back().cloned(),
        })
    }

    async fn list_templates(&self) -> Result<Vec<StoredTemplate>, StateError> {
        let s = self.lock()?;
        Ok(s.templates
            .values()
            .filter_map(|versions| versions.values().next_back().cloned())
            .collect())
    }
}

#[async_trait]
impl LeaseStore for MemoryStateStore {
    async fn acquire_lease(
        &self,
        name: &str,
        owner: &str,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<bool, StateError> {
        let mut s = self.lock()?;
        let free = s
            .leases
            .get(name)
            .is_none_or(|l| l.owner == owner || lease_is_free(Some(l.until), now));
        if free {
            s.leases.insert(
                name.to_owned(),
                Lease {
                    owner: owner.to_owned(),
                    until: now + ttl,
                },
            );
        }
        Ok(free)
    }

    async fn release_lease(&self, name: &str, owner: &str) -> Result<(), StateError> {
        let mut s = self.lock()?;
        if s.leases.get(name).is_some_and(|l| l.owner == owner) {
            s.leases.remove(name);
        }
        Ok(())
    }
}

#[async_trait]
impl FileLedger for MemoryStateStore {
    async fn get_files(
        &self,
        connector_id: &str,
        file_ids: &[String],
    ) -> Result<HashMap<String, LedgerEntry>, StateError> {
        let s = self.lock()?;
        let Some(files) = s.files.get(connector_id) else {
            return Ok(HashMap::new());
        };
        Ok(file_ids
            .iter()
            .filter_map(|id| files.get(id).map(|e| (id.clone(), e.clone())))
            .collect())
    }

    async fn get_file(
        &self,
        connector_id: &str,
        file_id: &str,
    ) -> Result<Option<LedgerEntry>, StateError> {
        Ok(self
            .lock()?
            .files
            .get(connector_id)
            .and_then(|f| f.get(file_id))
            .cloned())
    }

    async fn list_files(
        &self,
        connector_id: &str,
        status: Option<FileStatus>,
    ) -> Result<Vec<LedgerEntry>, StateError> {
        let s = self.lock()?;
        Ok(s.files
            .get(connector_id)
            .map(|files| {
                files
                    .values()
                    .filter(|e| status.is_none_or(|st| e.status == st))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn claim_file(&self, entry: &LedgerEntry) -> Result<ClaimOutcome, StateError> {
        let mut s = self.lock()?;
        let files = s
            .files
            .entry(entry.version.connector_id.clone())
            .or_default();
        let id = entry.version.file_id();
        if files.contains_key(&id) {
            return Ok(ClaimOutcome::AlreadyKnown);
        }
        files.insert(id, entry.clone());
        Ok(ClaimOutcome::Claimed)
    }

    async fn mark_queued(
        &self,
        connector_id: &str,
        file_id: &str,
        at: DateTime<Utc>,
    ) -> Result<(), StateError> {
        let mut s = self.lock()?;
        if let Some(entry) = s
            .files
            .get_mut(connector_id)
            .and_then(|f| f.get_mut(file_id))
        {
            if entry.status == FileStatus::Claimed {
                entry.status = FileStatus::Queued;
                entry.queued_at = Some(at);
            }
        }
        Ok(())
    }

    async fn start_file(
        &self,
        connector_id: &str,
        file_id: &str,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<StartOutcome, StateError> {
        let mut s = self.lock()?;
        let Some(entry) = s
            .files
            .get_mut(connector_id)
            .and_then(|f| f.get_mut(file_id))
        else {
            return Ok(StartOutcome::Unknown);
        };
        let startable = match entry.status {
            FileStatus::Claimed | FileStatus::Queued => true,
            FileStatus::Processing => lease_is_free(entry.lease_until, now),
            _ => false,
        };
        if !startable {
            return Ok(match (entry.status, entry.lease_until) {
                (FileStatus::Processing, Some(until)) => StartOutcome::Busy(until),
                (status, _) => StartOutcome::AlreadyFinished(status),
            });
        }
        entry.status = FileStatus::Processing;
        entry.lease_owner = Some(owner.to_owned());
        entry.lease_until = Some(lease_until);
        entry.started_at = Some(now);
        entry.attempts += 1;
        Ok(StartOutcome::Started(Box::new(entry.clone())))
    }

    async fn renew_file(
        &self,
        connector_id: &str,
        file_id: &str,
        owner: &str,
        lease_until: DateTime<Utc>,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), StateError> {
        let mut s = self.lock()?;
        let entry = s
            .files
            .get_mut(connector_id)
            .and_then(|f| f.get_mut(file_id))
            .filter(|e| e.is_held_by(owner))
            .ok_or_else(|| lease_conflict(connector_id, file_id))?;
        entry.lease_until = Some(lease_until);
        if let Some(checkpoint) = checkpoint {
            entry.checkpoint = Some(checkpoint.clone());
        }
        Ok(())
    }

    async fn checkpoint_file(
        &self,
        connector_id: &str,
        file_id: &str,
        owner: &str,
        checkpoint: Option<&Checkpoint>,
    ) -> Result<(), StateError> {
        let mut s = self.lock()?;
        let entry = s
            .files
            .get_mut(connector_id)
            .and_then(|f| f.get_mut(file_id))
            .filter(|e| e.is_held_by(owner))
            .ok_or_else(|| lease_conflict(connector_id, file_id))?;
        entry.status = FileStatus::Queued;
        entry.lease_owner = None;
        entry.lease_until = None;
        if let Some(checkpoint) = checkpoint {
            entry.checkpoint = Some(checkpoint.clone());
        }
        Ok(())
    }

    async fn mark_continued(
        &self,
        connector_id: &str,
        file_id: &str,
        piece: u32,
    ) -> Result<(), StateError> {
        let mut s = self.lock()?;
        if let Some(checkpoint) = s
            .files
            .get_mut(connector_id)
            .and_then(|f| f.get_mut(file_id))
            .and_then(|e| e.checkpoint.as_mut())
            .filter(|c| c.piece == piece)
        {
            checkpoint.continued = true;
        }
        Ok(())
    }

    async fn finish_file(&self, entry: &LedgerEntry, owner: &str) -> Result<(), StateError> {
        entry.check_final()?;
        let connector_id = &entry.version.connector_id;
        let file_id = entry.version.file_id();
        let mut s = self.lock()?;
        let stored = s
            .files
            .get_mut(connector_id)
            .and_then(|f| f.get_mut(&file_id))
            .filter(|e| e.is_held_by(owner))
            .ok_or_else(|| lease_conflict(connector_id, &file_id))?;
        *stored = entry.clone();
        Ok(())
    }

    async fn release_file(
        &self,
        connector_id: &str,
        file_id: &str,
        owner: &str,
        error: &str,
    ) -> Result<(), StateError> {
        let mut s = self.lock()?;
        let entry = s
            .files
            .get_mut(connector_id)
            .and_then(|f| f.get_mut(file_id))
            .filter(|e| e.is_held_by(owner))
            .ok_or_else(|| lease_conflict(connector_id, file_id))?;
        entry.status = FileStatus::Queued;
        entry.error = Some(error.to_owned());
        entry.lease_owner = None;
        entry.lease_until = None;
        Ok(())
    }

    async fn retry_file(
        &self,
        connector_id: &str,
        file_id: &str,
        _now: DateTime<Utc>,
    ) -> Result<bool, StateError> {
        let mut s = self.lock()?;
        let Some(entry) = s
            .files
            .get_mut(connector_id)
            .and_then(|f| f.get_mut(file_id))
        else {
            return Ok(false);
        };
        if entry.status != FileStatus::Failed {
            return Ok(false);
        }
        entry.reset_for_retry();
        Ok(true)
    }
}

// ---------------------------------------------------------------------------------------------------------
// Source objects
// ---------------------------------------------------------------------------------------------------------

/// One object held by [`MemoryObjectSource`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryObject {
    /// The body.
    pub bytes: Vec<u8>,
    /// ETag, quoted as S3 returns it.
    pub etag: String,
    /// LastModified.
    pub last_modified: DateTime<Utc>,
    /// Storage class (`None` is STANDARD).
    pub storage_class: Option<String>,
    /// Whether an archived object has a restored copy.
    pub restored: bool,
    /// `Content-Encoding`.
    pub content_encoding: Option<String>,
}

impl MemoryObject {
    /// A STANDARD object with a content-derived ETag.
    pub fn new(bytes: impl Into<Vec<u8>>, last_modified: DateTime<Utc>) -> Self {
        let bytes = bytes.into();
        let etag = memory_etag(&bytes);
        Self {
            bytes,
            etag,
            last_modified,
            storage_class: None,
            restored: false,
            content_encoding: None,
        }
    }
}

/// A deterministic, MD5-shaped ETag for `bytes`: the first 32 hex digits of their SHA-256, quoted.
/// Like S3's single-part ETags, equal content gives equal ETags.
pub fn memory_etag(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    format!("\"{}\"", hex::encode(&digest[..16]))
}

#[derive(Debug, Default)]
struct Bucket {
    /// The owning account, checked like `ExpectedBucketOwner`; `None` accepts any.
    owner: Option<String>,
    objects: BTreeMap<String, MemoryObject>,
}

/// S3 in memory: buckets of keys, listed in key order 1000 per page (the continuation token is the last
/// key returned), read with `IfMatch` and byte ranges.
#[derive(Debug, Default)]
pub struct MemoryObjectSource {
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// S3's page size for ListObjectsV2.
pub const LIST_PAGE_SIZE: usize = 1000;

impl MemoryObjectSource {
    /// No buckets.
    pub fn new() -> Self {
        Self::default()
    }

    fn buckets(&self) -> MutexGuard<'_, HashMap<String, Bucket>> {
        // Only plain inserts and reads happen under this lock; a poisoned one still holds consistent data.
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Creates `bucket` owned by `account_id` (reads with another expected owner then fail as S3 does).
    pub fn create_bucket(&self, bucket: &str, account_id: &str) {
        self.buckets().entry(bucket.to_owned()).or_default().owner = Some(account_id.to_owned());
    }

    /// Stores an object (creating the bucket, owned by any account, if needed). Returns its ETag.
    pub fn put(
        &self,
        bucket: &str,
        key: &str,
        bytes: impl Into<Vec<u8>>,
        last_modified: DateTime<Utc>,
    ) -> String {
        self.put_object(bucket, key, MemoryObject::new(bytes, last_modified))
    }

    /// Stores an object with every attribute given. Returns its ETag.
    pub fn put_object(&self, bucket: &str, key: &str, object: MemoryObject) -> String {
        let etag = object.etag.clone();
        self.buckets()
            .entry(bucket.to_owned())
            .or_default()
            .objects
            .insert(key.to_owned(), object);
        etag
    }

    /// Deletes an object; true when it existed.
    pub fn delete(&self, bucket: &str, key: &str) -> bool {
        self.buckets()
            .get_mut(bucket)
            .is_some_and(|b| b.objects.remove(key).is_some())
    }

    /// An object's current state.
    pub fn get(&self, bucket: &str, key: &str) -> Option<MemoryObject> {
        self.buckets()
            .get(bucket)
            .and_then(|b| b.objects.get(key))
            .cloned()
    }
}

fn check_owner<'a>(
    buckets: &'a HashMap<String, Bucket>,
    source: &Source,
) -> Result<&'a Bucket, SourceError> {
    buckets
        .get(&source.bucket)
        .filter(|b| {
            b.owner
                .as_ref()
                .is_none_or(|owner| *owner == source.account_id)
        })
        .ok_or_else(|| SourceError::NoSuchBucket {
            bucket: source.bucket.clone(),
            account_id: source.account_id.clone(),
        })
}

#[async_trait]
impl ObjectSource for MemoryObjectSource {
    async fn list_page(
        &self,
        source: &Source,
        continuation: Option<String>,
    ) -> Result<ListPage, SourceError> {
        let buckets = self.buckets();
        let bucket = check_owner(&buckets, source)?;
        let prefix = source.prefix.as_deref().unwrap_or("");
        let lower = match &continuation {
            Some(after) => std::ops::Bound::Excluded(after.as_str()),
            None => std::ops::Bound::Included(prefix),
        };
        let mut objects = Vec::new();
        let mut more = false;
        for (key, object) in bucket
            .objects
            .range::<str, _>((lower, std::ops::Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
        {
            if objects.len() == LIST_PAGE_SIZE {
                more = true;
                break;
            }
            objects.push(ObjectMeta {
                key: key.clone(),
                etag: object.etag.clone(),
                size: object.bytes.len() as u64,
                last_modified: object.last_modified,
                storage_class: object.storage_class.clone(),
                restored: object.restored,
            });
        }
        let next = if more {
            objects.last().map(|o| o.key.clone())
        } else {
            None
        };
        Ok(ListPage { objects, next })
    }

    async fn open(
        &self,
        source: &Source,
        key: &str,
        etag: &str,
        range: Option<ByteRange>,
    ) -> Result<ObjectBody, SourceError> {
        let buckets = self.buckets();
        let bucket = check_owner(&buckets, source)?;
        let object = bucket
            .objects
            .get(key)
            .ok_or_else(|| SourceError::NotFound {
                bucket: source.bucket.clone(),
                key: key.to_owned(),
            })?;
        if object.etag.trim_matches('"') != etag.trim_matches('"') {
            return Err(SourceError::Changed {
                bucket: source.bucket.clone(),
                key: key.to_owned(),
                etag: etag.to_owned(),
            });
        }
        let archived = matches!(
            object.storage_class.as_deref(),
            Some("GLACIER" | "DEEP_ARCHIVE")
        );
        if archived && !object.restored {
            return Err(SourceError::Archived {
                bucket: source.bucket.clone(),
                key: key.to_owned(),
            });
        }
        let len = object.bytes.len() as u64;
        let (start, end) = match range {
            None => (0, len),
            Some(r) => {
                let end = r.end.map_or(len, |e| e.min(len));
                // S3 answers 416 InvalidRange for a range starting past the end of a non-empty object.
                if (r.start >= len && len > 0) || end < r.start {
                    return Err(SourceError::Other {
                        context: format!("read s3://{}/{key} from byte {}", source.bucket, r.start),
                        source: format!("invalid range: the object has {len} bytes").into(),
                    });
                }
                (r.start, end)
            }
        };
        let body = object.bytes[start as usize..end as usize].to_vec();
        Ok(ObjectBody {
            content_length: Some(body.len() as u64),
            reader: Box::new(Cursor::new(body)),
            content_encoding: object.content_encoding.clone(),
        })
    }
}

// ---------------------------------------------------------------------------------------------------------
// Queue
// ---------------------------------------------------------------------------------------------------------

#[derive(Debug, Default)]
struct QueueInner {
    sent: Vec<FileMessage>,
    reject_next: usize,
    fail_next_sends: usize,
    extensions: Vec<(String, u32)>,
}

/// SQS in memory: records accepted messages; can reject entries or whole calls to exercise the lister's
/// handling of partial sends.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    inner: Mutex<QueueInner>,
}

impl MemoryQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    fn inner(&self) -> MutexGuard<'_, QueueInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next `n` messages offered are refused (returned as `false`, as the SQS adapter does once its own
    /// retries of a failed batch entry are exhausted).
    pub fn reject_next(&self, n: usize) {
        self.inner().reject_next = n;
    }

    /// The next `n` calls to `send` fail as a whole (as a throttled or unreachable SQS would).
    pub fn fail_next_sends(&self, n: usize) {
        self.inner().fail_next_sends = n;
    }

    /// Every accepted message so far, without removing them.
    pub fn sent(&self) -> Vec<FileMessage> {
        self.inner().sent.clone()
    }

    /// Every visibility extension asked for so far: `(receipt handle, seconds)`.
    pub fn extensions(&self) -> Vec<(String, u32)> {
        self.inner().extensions.clone()
    }

    /// Removes and returns every accepted message (what workers would receive).
    pub fn drain(&self) -> Vec<FileMessage> {
        std::mem::take(&mut self.inner().sent)
    }
}

#[async_trait]
impl FileQueue for MemoryQueue {
    async fn send(&self, messages: &[FileMessage]) -> Result<Vec<bool>, QueueError> {
        let mut q = self.inner();
        if q.fail_next_sends > 0 {
            q.fail_next_sends -= 1;
            return Err(QueueError {
                context: format!("send {} messages to the memory queue", messages.len()),
                source: "injected failure".into(),
            });
        }
        let mut accepted = Vec::with_capacity(messages.len());
        for message in messages {
            if q.reject_next > 0 {
                q.reject_next -= 1;
                accepted.push(false);
            } else {
                q.sent.push(message.clone());
                accepted.push(true);
            }
        }
        Ok(accepted)
    }

    async fn extend_visibility(
        &self,
        receipt_handle: &str,
        seconds: u32,
    ) -> Result<(), QueueError> {
        self.inner()
            .extensions
            .push((receipt_handle.to_owned(), seconds));
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------------------
// Destination
// ---------------------------------------------------------------------------------------------------------

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
    use chrono::TimeZone;
    use tokio::io::AsyncReadExt;

    fn source(bucket: &str, prefix: Option<&str>) -> Source {
        Source {
            account_id: "111111111111".into(),
            bucket: bucket.into(),
            region: "us-east-1".into(),
            prefix: prefix.map(str::to_owned),
            role_arn: None,
            external_id: None,
        }
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn listing_pages_by_1000_within_the_prefix() -> Result<(), Box<dyn std::error::Error>> {
        let s3 = MemoryObjectSource::new();
        for i in 0..2500 {
            s3.put("b", &format!("in/{i:05}.csv"), "x", t0());
        }
        s3.put("b", "im", "x", t0());
        s3.put("b", "out/1.csv", "x", t0());
        let src = source("b", Some("in/"));
        let mut pages = Vec::new();
        let mut next = None;
        loop {
            let page = s3.list_page(&src, next).await?;
            pages.push(page.objects.len());
            next = page.next;
            if next.is_none() {
                break;
            }
        }
        assert_eq!(pages, vec![1000, 1000, 500]);
        Ok(())
    }

    #[tokio::test]
    async fn open_honours_etag_range_and_owner() -> Result<(), Box<dyn std::error::Error>> {
        let s3 = MemoryObjectSource::new();
        s3.create_bucket("b", "111111111111");
        let etag = s3.put("b", "k", "hello world", t0());
        assert_eq!(etag, memory_etag(b"hello world"));
        let src = source("b", None);
        let mut body = s3
            .open(
                &src,
                "k",
                &etag,
                Some(ByteRange {
                    start: 6,
                    end: None,
                }),
            )
            .await?;
        let mut text = String::new();
        body.reader.read_to_string(&mut text).await?;
        assert_eq!(text, "world");
        assert!(matches!(
            s3.open(&src, "k", "\"other\"", None).await,
            Err(SourceError::Changed { .. })
        ));
        assert!(matches!(
            s3.open(&src, "gone", &etag, None).await,
            Err(SourceError::NotFound { .. })
        ));
        let stranger = Source {
            account_id: "222222222222".into(),
            ..src
        };
        assert!(matches!(
            s3.open(&stranger, "k", &etag, None).await,
            Err(SourceError::NoSuchBucket { .. })
        ));
        Ok(())
    }

    #[tokio::test]
    async fn queue_rejects_the_next_entries_when_told() -> Result<(), Box<dyn std::error::Error>> {
        let q = MemoryQueue::new();
        let msg = FileMessage {
            v: 1,
            version: super::super::model::FileVersion {
                connector_id: "c".into(),
                bucket: "b".into(),
                key: "k".into(),
                etag: "\"e\"".into(),
                version_id: None,
            },
            size: 1,
            last_modified: t0(),
            piece: 0,
        };
        q.reject_next(1);
        assert_eq!(
            q.send(&[msg.clone(), msg.clone()]).await?,
            vec![false, true]
        );
        q.fail_next_sends(1);
        assert!(q.send(std::slice::from_ref(&msg)).await.is_err());
        assert_eq!(q.drain().len(), 1);
        assert!(q.sent().is_empty());
        Ok(())
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
        let version = super::super::model::FileVersion {
            connector_id: "c".into(),
            bucket: "b".into(),
            key: key.into(),
            etag: etag.into(),
            version_id: None,
        };
        let object = ObjectMeta {
            key: key.into(),
            etag: etag.into(),
            size: 1,
            last_modified,
            storage_class: None,
            restored: false,
        };
        let mut entry = LedgerEntry::discovered(version, &object, last_modified);
        entry.checkpoint = piece.map(|piece| Checkpoint {
            start: super::super::model::CheckpointStart {
                byte: 0,
                record: 0,
                line: 0,
                header: None,
            },
            piece,
            rows_imported: 0,
            rows_rejected: 0,
            rows_state: None,
            rejects_state: None,
            continued: false,
            template_version: None,
            format: None,
        });
        let connector = Connector {
            id: "c".into(),
            name: "n".into(),
            status: super::super::model::ConnectorStatus::Active,
            source: source("b", None),
            template_id: "t".into(),
            template_version: None,
            destination: super::super::model::DestinationConfig::Dynamodb {
                table: "records".into(),
            },
            created_at: last_modified,
            updated_at: last_modified,
            watermark: None,
            last_sync: None,
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

    #[tokio::test]
    async fn a_row_from_an_older_file_never_overwrites_a_newer_one(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dest = MemoryDestination::new();
        let newer = job("new.csv", "\"n\"", t0() + chrono::Duration::hours(1), None)?;
        let older = job("old.csv", "\"o\"", t0(), None)?;
        write(&dest, &newer, &[(1, r#"{"id":1,"v":"new"}"#)]).await?;
        // The older file arrives late (a retry, or a slow worker): its row for id 1 is ignored, id 2 is new.
        write(
            &dest,
            &older,
            &[(1, r#"{"id":1,"v":"old"}"#), (2, r#"{"id":2,"v":"old"}"#)],
        )
        .await?;
        assert_eq!(
            dest.row("c", "[1]").map(|r| r.row),
            Some(r#"{"id":1,"v":"new"}"#.to_owned())
        );
        assert_eq!(
            dest.row("c", "[2]").map(|r| r.source_key),
            Some("old.csv".to_owned())
        );
        // Re-importing the same version (at-least-once delivery) overwrites with identical rows.
        write(&dest, &newer, &[(1, r#"{"id":1,"v":"new"}"#)]).await?;
        assert_eq!(dest.rows("c").len(), 2);
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
        Ok(())
    }

    #[tokio::test]
    async fn an_error_report_is_the_same_in_one_piece_or_several(
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
        let records: Vec<u64> = dest
            .report(&memory_report_location(&j))
            .unwrap_or_default()
            .iter()
            .map(|e| e.record)
            .collect();
        assert_eq!(
            records,
            vec![1, 5],
            "piece 1 redone replaces its first attempt"
        );
        // A retry from the start with no rejects leaves no report behind.
        let mut sink = dest.open_rejects(&j).await?;
        assert_eq!(sink.finish().await?, None);
        assert!(dest.report_locations().is_empty());
        Ok(())
    }
}
