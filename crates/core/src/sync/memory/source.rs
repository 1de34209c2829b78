//! S3 in memory: buckets of objects, listed by 1000 and read with `IfMatch` and byte ranges.

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::sync::model::{ObjectMeta, Source};
use crate::sync::ports::{ByteRange, ListPage, ObjectBody, ObjectSource, SourceError};

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
    /// `VersionId`, given by [`MemoryObjectSource::put_object`] in a versioned bucket.
    pub version_id: Option<String>,
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
            version_id: None,
        }
    }

    fn meta(&self, key: &str, with_version: bool) -> ObjectMeta {
        ObjectMeta {
            key: key.to_owned(),
            etag: self.etag.clone(),
            size: self.bytes.len() as u64,
            last_modified: self.last_modified,
            storage_class: self.storage_class.clone(),
            restored: self.restored,
            // An object written before versioning was turned on is S3's `null` version.
            version_id: with_version.then(|| {
                self.version_id
                    .clone()
                    .unwrap_or_else(|| NULL_VERSION.to_owned())
            }),
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
    /// Current versions.
    objects: BTreeMap<String, MemoryObject>,
    /// With versioning on: the earlier versions of each key, oldest first.
    versioned: Option<BTreeMap<String, Vec<MemoryObject>>>,
}

impl Bucket {
    /// The version `version_id` of `key` (the current one without an id).
    fn version(&self, key: &str, version_id: Option<&str>) -> Option<&MemoryObject> {
        let current = self.objects.get(key);
        let Some(version_id) = version_id else {
            return current;
        };
        let older = self.versioned.as_ref().and_then(|v| v.get(key));
        current
            .into_iter()
            .chain(older.into_iter().flatten())
            .find(|o| o.is_version(version_id))
    }
}

/// The version id S3 gives an object written while the bucket had no versioning.
const NULL_VERSION: &str = "null";

impl MemoryObject {
    fn is_version(&self, version_id: &str) -> bool {
        self.version_id.as_deref().unwrap_or(NULL_VERSION) == version_id
    }
}

/// S3 in memory: buckets of keys, listed in key order 1000 per page (the continuation token is the last
/// key returned), read with `IfMatch` and byte ranges.
#[derive(Debug, Default)]
pub struct MemoryObjectSource {
    buckets: Mutex<HashMap<String, Bucket>>,
    lists: std::sync::atomic::AtomicU64,
    heads: std::sync::atomic::AtomicU64,
    versions: std::sync::atomic::AtomicU64,
}

/// S3's page size for ListObjectsV2.
pub const LIST_PAGE_SIZE: usize = 1000;

impl MemoryObjectSource {
    /// No buckets.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many pages were listed so far (a connector fed by events lists none).
    pub fn list_calls(&self) -> u64 {
        self.lists.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many objects were looked up with [`ObjectSource::head`] so far.
    pub fn head_calls(&self) -> u64 {
        self.heads.load(std::sync::atomic::Ordering::Relaxed)
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

    /// Turns versioning on for `bucket` (creating it, owned by any account, if needed): from then on a put
    /// keeps the key's earlier version and gives the new one a `VersionId`, and a delete keeps them all.
    pub fn enable_versioning(&self, bucket: &str) {
        self.buckets()
            .entry(bucket.to_owned())
            .or_default()
            .versioned
            .get_or_insert_with(BTreeMap::new);
    }

    /// Stores an object with every attribute given (in a versioned bucket, as a new version with its own
    /// `VersionId`). Returns its ETag.
    pub fn put_object(&self, bucket: &str, key: &str, mut object: MemoryObject) -> String {
        let etag = object.etag.clone();
        let mut buckets = self.buckets();
        let bucket = buckets.entry(bucket.to_owned()).or_default();
        if let Some(versions) = &mut bucket.versioned {
            let n = self
                .versions
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            object.version_id = Some(format!("v{n:08}"));
            if let Some(previous) = bucket.objects.remove(key) {
                versions.entry(key.to_owned()).or_default().push(previous);
            }
        }
        bucket.objects.insert(key.to_owned(), object);
        etag
    }

    /// Deletes an object (in a versioned bucket its versions stay, as behind a delete marker); true when it
    /// existed.
    pub fn delete(&self, bucket: &str, key: &str) -> bool {
        self.buckets().get_mut(bucket).is_some_and(|b| {
            let Some(previous) = b.objects.remove(key) else {
                return false;
            };
            if let Some(versions) = &mut b.versioned {
                versions.entry(key.to_owned()).or_default().push(previous);
            }
            true
        })
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

impl MemoryObjectSource {
    /// One page of keys under the prefix after `after` (from the start without it), as S3's `StartAfter`
    /// does: a key before the prefix starts at the prefix.
    fn list_from(&self, source: &Source, after: Option<&str>) -> Result<ListPage, SourceError> {
        self.lists
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let buckets = self.buckets();
        let bucket = check_owner(&buckets, source)?;
        let prefix = source.prefix.as_deref().unwrap_or("");
        let lower = match after {
            Some(after) if after >= prefix => std::ops::Bound::Excluded(after),
            _ => std::ops::Bound::Included(prefix),
        };

        let mut objects = Vec::new();
        let mut more = false;
        let current = bucket
            .objects
            .range::<str, _>((lower, std::ops::Bound::Unbounded))
            .map(|(key, _)| key);
        // A versioned listing also shows keys whose every version is behind a delete marker.
        let keys: Box<dyn Iterator<Item = &String>> = match (&bucket.versioned, source.versions) {
            (Some(older), true) => Box::new(
                current
                    .chain(
                        older
                            .range::<str, _>((lower, std::ops::Bound::Unbounded))
                            .map(|(key, _)| key),
                    )
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter(),
            ),
            _ => Box::new(current),
        };
        for key in keys.take_while(|key| key.starts_with(prefix)) {
            // Pages end between keys: all the versions of a key are on one page (S3 may split them).
            if objects.len() >= LIST_PAGE_SIZE {
                more = true;
                break;
            }
            let object = bucket.objects.get(key);
            if !source.versions {
                objects.extend(object.map(|o| o.meta(key, false)));
                continue;
            }
            let older = bucket.versioned.as_ref().and_then(|v| v.get(key));
            objects.extend(
                object
                    .into_iter()
                    .chain(older.into_iter().flatten().rev())
                    .map(|o| o.meta(key, true)),
            );
        }
        let next = if more {
            objects.last().map(|o| o.key.clone())
        } else {
            None
        };
        Ok(ListPage { objects, next })
    }
}

#[async_trait]
impl ObjectSource for MemoryObjectSource {
    async fn list_page(
        &self,
        source: &Source,
        continuation: Option<String>,
    ) -> Result<ListPage, SourceError> {
        // The continuation token is the last key listed.
        self.list_from(source, continuation.as_deref())
    }

    async fn list_page_after(
        &self,
        source: &Source,
        start_after: &str,
    ) -> Result<ListPage, SourceError> {
        // A version's position is `<version id>\n<key>`; pages here end between keys, so resuming after the
        // key is resuming after the version.
        let after = match start_after.split_once('\n') {
            Some((_, key)) if source.versions => key,
            _ => start_after,
        };
        self.list_from(source, Some(after))
    }

    async fn head(
        &self,
        source: &Source,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<ObjectMeta>, SourceError> {
        self.heads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let buckets = self.buckets();
        let bucket = check_owner(&buckets, source)?;
        Ok(bucket
            .version(key, version_id)
            .map(|object| object.meta(key, source.versions)))
    }

    async fn older_versions(
        &self,
        source: &Source,
        key: &str,
        version_id: &str,
        max: usize,
    ) -> Result<Vec<ObjectMeta>, SourceError> {
        self.lists
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let buckets = self.buckets();
        let bucket = check_owner(&buckets, source)?;
        let older = bucket.versioned.as_ref().and_then(|v| v.get(key));
        Ok(bucket
            .objects
            .get(key)
            .into_iter()
            .chain(older.into_iter().flatten().rev())
            .skip_while(|o| !o.is_version(version_id))
            .skip(1)
            .take(max)
            .map(|o| o.meta(key, true))
            .collect())
    }

    async fn open(
        &self,
        source: &Source,
        key: &str,
        etag: &str,
        version_id: Option<&str>,
        range: Option<ByteRange>,
    ) -> Result<ObjectBody, SourceError> {
        let buckets = self.buckets();
        let bucket = check_owner(&buckets, source)?;
        let object = bucket
            .version(key, version_id)
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
                // As the S3 adapter reads it: an empty range, or one starting at or past the end (S3 answers
                // 416 InvalidRange; a piece checkpointed at the end of the file asks for it), reads nothing.
                if r.start >= end {
                    (0, 0)
                } else {
                    (r.start, end)
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
            .single()
            .unwrap_or_default()
    }

    // Listing, ranges, `IfMatch` and missing objects are checked by the object source contract
    // (`tests/contract_source.rs`); what only this double has is checked here.
    #[tokio::test]
    async fn etags_derive_from_content_and_the_expected_owner_is_checked(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let s3 = MemoryObjectSource::new();
        s3.create_bucket("b", "111111111111");
        let etag = s3.put("b", "k", "hello world", t0());
        assert_eq!(etag, memory_etag(b"hello world"));
        let src = Source {
            account_id: "111111111111".into(),
            bucket: "b".into(),
            region: "us-east-1".into(),
            prefix: None,
            role_arn: None,
            external_id: None,
            versions: false,
        };
        assert!(s3.open(&src, "k", &etag, None, None).await.is_ok());
        let stranger = Source {
            account_id: "222222222222".into(),
            ..src
        };
        assert!(matches!(
            s3.open(&stranger, "k", &etag, None, None).await,
            Err(SourceError::NoSuchBucket { .. })
        ));
        Ok(())
    }
}
