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
    lists: std::sync::atomic::AtomicU64,
    heads: std::sync::atomic::AtomicU64,
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
        self.list_from(source, Some(start_after))
    }

    async fn head(&self, source: &Source, key: &str) -> Result<Option<ObjectMeta>, SourceError> {
        self.heads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let buckets = self.buckets();
        let bucket = check_owner(&buckets, source)?;
        Ok(bucket.objects.get(key).map(|object| ObjectMeta {
            key: key.to_owned(),
            etag: object.etag.clone(),
            size: object.bytes.len() as u64,
            last_modified: object.last_modified,
            storage_class: object.storage_class.clone(),
            restored: object.restored,
        }))
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
        };
        assert!(s3.open(&src, "k", &etag, None).await.is_ok());
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
}
