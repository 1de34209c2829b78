//! [`S3Source`]: the [`ObjectSource`] port on Amazon S3 — listing and streaming a connector's objects from
//! the source bucket's own region, through the connector's role when it has one.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_s3::config::{
    IdentityCache, Region, ResponseChecksumValidation, SharedCredentialsProvider,
};
use aws_sdk_s3::types::{ChecksumMode, OptionalObjectAttributes};
use chrono::{DateTime, Utc};
use s3_importer_core::sync::ports::{ByteRange, ListPage, ObjectBody, ObjectSource, SourceError};
use s3_importer_core::sync::{ObjectMeta, Source};

use crate::config::s3_config_builder;
use crate::error::{classify_s3, AwsCallError, S3Failure};
use crate::sts::{session_name, RoleCredentialsCache, RoleKey};

mod versions;

/// Objects per ListObjectsV2 page (S3's maximum).
const PAGE_SIZE: i32 = 1000;

/// Which client serves a source: its region, and its role when it has one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    region: String,
    role: Option<RoleKey>,
}

#[derive(Debug)]
enum Clients {
    /// Per region and role, built on demand from the base configuration.
    PerSource {
        // Boxed: an SdkConfig is large next to a client handle.
        base: Box<SdkConfig>,
        roles: Arc<RoleCredentialsCache>,
        cache: RwLock<HashMap<ClientKey, aws_sdk_s3::Client>>,
    },
    /// One client for every source (tests, and single-account setups without roles).
    Fixed(aws_sdk_s3::Client),
}

/// Reads connector sources from S3.
///
/// Every call sends `ExpectedBucketOwner = source.account_id`, and reads are pinned to the listed ETag with
/// `If-Match`, so an object overwritten between listing and reading is reported as
/// [`SourceError::Changed`] instead of importing the wrong version. A read asks for the object's stored
/// checksum only where the body can be checked against it (a whole object uploaded in one request).
#[derive(Debug)]
pub struct S3Source {
    clients: Clients,
}

impl S3Source {
    /// A source reader using `sdk_config` for its own credentials and STS, with an S3 client per source
    /// region (and per role, for sources with a `role_arn`).
    pub fn new(sdk_config: &SdkConfig) -> Self {
        Self::with_sts(sdk_config, crate::config::sts_client(sdk_config))
    }

    /// Like [`S3Source::new`] with a given STS client.
    pub fn with_sts(sdk_config: &SdkConfig, sts: aws_sdk_sts::Client) -> Self {
        Self {
            clients: Clients::PerSource {
                base: Box::new(sdk_config.clone()),
                roles: Arc::new(RoleCredentialsCache::new(sts)),
                cache: RwLock::new(HashMap::new()),
            },
        }
    }

    /// A source reader that uses `client` for every source: no per-region clients and no role assumption.
    pub fn with_client(client: aws_sdk_s3::Client) -> Self {
        Self {
            clients: Clients::Fixed(client),
        }
    }

    /// The client for `source`, assuming its role first (so an STS failure is reported as
    /// [`SourceError::AssumeRole`] rather than as a failed S3 request).
    async fn client(&self, source: &Source) -> Result<aws_sdk_s3::Client, SourceError> {
        let (base, roles, cache) = match &self.clients {
            Clients::Fixed(client) => return Ok(client.clone()),
            Clients::PerSource { base, roles, cache } => (base, roles, cache),
        };
        let role = source.role_arn.as_ref().map(|role_arn| RoleKey {
            role_arn: role_arn.clone(),
            external_id: source.external_id.clone(),
        });
        let session = session_name(&source.bucket);
        if let Some(role) = &role {
            // Cheap when cached; the client's provider reads the same cache on each request.
            roles.credentials(role, &session).await?;
        }
        let key = ClientKey {
            region: source.region.clone(),
            role,
        };
        if let Some(client) = cache.read().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(client.clone());
        }
        let mut builder = s3_config_builder(base).region(Region::new(source.region.clone()));
        if let Some(role) = &key.role {
            builder = builder
                .credentials_provider(SharedCredentialsProvider::new(
                    roles.provider(role.clone(), session),
                ))
                // The role cache already refreshes five minutes before expiry; a second cache would only
                // hold credentials longer.
                .identity_cache(IdentityCache::no_cache());
        }
        let client = aws_sdk_s3::Client::from_conf(builder.build());
        cache
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, client.clone());
        Ok(client)
    }
}

impl S3Source {
    /// One ListObjectsV2 page under the source's prefix, from a continuation token or after a key.
    async fn list(
        &self,
        source: &Source,
        continuation: Option<String>,
        start_after: Option<String>,
    ) -> Result<ListPage, SourceError> {
        let client = self.client(source).await?;
        let prefix = source.prefix.clone().unwrap_or_default();
        let out = client
            .list_objects_v2()
            .bucket(&source.bucket)
            .prefix(&prefix)
            .set_continuation_token(continuation)
            .set_start_after(start_after)
            .max_keys(PAGE_SIZE)
            .expected_bucket_owner(&source.account_id)
            // Without it S3 does not say whether an archived object has a restored copy.
            .optional_object_attributes(OptionalObjectAttributes::RestoreStatus)
            .send()
            .await
            .map_err(|e| source_error(source, &prefix, None, "list", AwsCallError::from_sdk(e)))?;

        let objects = listed(source, out.contents(), object_meta, |o| o.key());
        let next = if out.is_truncated() == Some(true) {
            out.next_continuation_token().map(str::to_owned)
        } else {
            None
        };
        Ok(ListPage { objects, next })
    }
}

#[async_trait]
impl ObjectSource for S3Source {
    async fn list_page(
        &self,
        source: &Source,
        continuation: Option<String>,
    ) -> Result<ListPage, SourceError> {
        if source.versions {
            return self
                .list_versions(source, versions::Marker::from_token(continuation))
                .await;
        }
        self.list(source, continuation, None).await
    }

    async fn list_page_after(
        &self,
        source: &Source,
        start_after: &str,
    ) -> Result<ListPage, SourceError> {
        if source.versions {
            return self
                .list_versions(
                    source,
                    versions::Marker::from_token(Some(start_after.to_owned())),
                )
                .await;
        }
        self.list(source, None, Some(start_after.to_owned())).await
    }

    async fn head(
        &self,
        source: &Source,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<ObjectMeta>, SourceError> {
        let client = self.client(source).await?;
        let result = client
            .head_object()
            .bucket(&source.bucket)
            .key(key)
            .set_version_id(version_id.map(str::to_owned))
            .expected_bucket_owner(&source.account_id)
            .send()
            .await;
        match result {
            Ok(out) => Ok(head_meta(key, &out).map(|mut meta| {
                if source.versions {
                    // An object written while the bucket had no versioning is S3's `null` version, as
                    // ListObjectVersions names it; HeadObject may leave the header out for it.
                    meta.version_id = Some(out.version_id().unwrap_or("null").to_owned());
                }
                meta
            })),
            Err(e) => match source_error(source, key, None, "head", AwsCallError::from_sdk(e)) {
                SourceError::NotFound { .. } => Ok(None),
                other => Err(other),
            },
        }
    }

    async fn older_versions(
        &self,
        source: &Source,
        key: &str,
        version_id: &str,
        max: usize,
    ) -> Result<Vec<ObjectMeta>, SourceError> {
        self.versions_after(source, key, version_id, max).await
    }

    async fn open(
        &self,
        source: &Source,
        key: &str,
        etag: &str,
        version_id: Option<&str>,
        range: Option<ByteRange>,
    ) -> Result<ObjectBody, SourceError> {
        let client = self.client(source).await?;
        let header = match range {
            Some(range) => match range_header(range) {
                Some(header) => Some(header),
                // An empty range: nothing to read (HTTP cannot ask for zero bytes).
                None => return Ok(empty_body()),
            },
            None => None,
        };
        let result = client
            .get_object()
            .bucket(&source.bucket)
            .key(key)
            .if_match(etag)
            .set_version_id(version_id.map(str::to_owned))
            .expected_bucket_owner(&source.account_id)
            .set_checksum_mode(checksum_mode(etag, range))
            .set_range(header)
            .customize()
            // By default (`WhenSupported`) the SDK asks for the stored checksum on every GetObject, whatever
            // can be checked: `checksum_mode` decides here instead.
            .config_override(
                aws_sdk_s3::config::Builder::new()
                    .response_checksum_validation(ResponseChecksumValidation::WhenRequired),
            )
            .send()
            .await;
        let out = match result {
            Ok(out) => out,
            Err(e) => {
                let err = AwsCallError::from_sdk(e);
                // A checkpointed piece can start exactly at the end of the object: nothing left to read.
                if range.is_some()
                    && classify_s3(err.kind, err.code.as_deref(), err.status)
                        == S3Failure::InvalidRange
                {
                    tracing::debug!(bucket = %source.bucket, key, "range starts at the end of the object");
                    return Ok(empty_body());
                }
                // A version behind a delete marker is not in ListObjectsV2: the probe cannot tell a refused
                // version read from a deleted one, so a refused one stays refused.
                if classify_s3(err.kind, err.code.as_deref(), err.status) == S3Failure::AccessDenied
                    && version_id.is_none()
                {
                    return Err(denied_read(&client, source, key, etag, err).await);
                }
                return Err(source_error(source, key, Some(etag), "read", err));
            }
        };
        Ok(ObjectBody {
            content_encoding: out.content_encoding().map(str::to_owned),
            content_length: out.content_length().and_then(|n| u64::try_from(n).ok()),
            reader: Box::new(out.body.into_async_read()),
        })
    }
}

/// A GetObject answered 403. Without `s3:ListBucket` S3 answers 403 AccessDenied, not 404, for a key that does
/// not exist, so a deleted object would look like a permission problem: one ListObjectsV2 (prefix = the key,
/// one key) tells them apart. Absent: [`SourceError::NotFound`]. Present: access denied. The probe refused too:
/// access denied, saying the object's existence is unknown.
async fn denied_read(
    client: &aws_sdk_s3::Client,
    source: &Source,
    key: &str,
    etag: &str,
    err: AwsCallError,
) -> SourceError {
    let probe = client
        .list_objects_v2()
        .bucket(&source.bucket)
        .prefix(key)
        .max_keys(1)
        .expected_bucket_owner(&source.account_id)
        .send()
        .await;
    match probe {
        Ok(out) if !out.contents().iter().any(|o| o.key() == Some(key)) => {
            tracing::debug!(bucket = %source.bucket, key, "access denied to a key the listing does not show: gone");
            SourceError::NotFound {
                bucket: source.bucket.clone(),
                key: key.to_owned(),
            }
        }
        Ok(_) => source_error(source, key, Some(etag), "read", err),
        Err(e) => {
            let probe = AwsCallError::from_sdk(e);
            match source_error(source, key, Some(etag), "read", err) {
                SourceError::AccessDenied {
                    bucket,
                    key,
                    message,
                } => SourceError::AccessDenied {
                    message: format!(
                        "{message}; whether the object still exists is unknown: s3:ListBucket on the bucket was \
                         refused too ({})",
                        probe.message_or_summary()
                    ),
                    bucket,
                    key,
                },
                other => other,
            }
        }
    }
}

/// Whether a read asks S3 for the object's stored checksum (`x-amz-checksum-mode: ENABLED`), which the SDK then
/// checks the body against as it streams (a mismatch fails the read). Only where the answer can be checked:
///
/// - a ranged read asks for none: S3 keeps the checksum of the whole object (or of its parts) and sends none for
///   an arbitrary range; a range that is exactly one part gets that part's checksum, marked `-N` like a
///   composite one, which the SDK skips with a warning;
/// - a whole read of an object uploaded in parts (its ETag ends in `-N`, N parts) asks for none: its checksum
///   is often composite, a checksum of the parts' checksums (`…-N`), which no reader can check against the
///   bytes — the SDK would skip the check and log a warning for each such file. Whether it has a full-object
///   checksum instead (CRC64NVME, or a FULL_OBJECT CRC32) cannot be told from the ETag, and asking S3 first
///   would cost a request per file;
/// - a whole read of an object uploaded in one request asks for it: its checksum, when it has one, is the whole
///   object's.
///
/// The read is pinned to the ETag (`If-Match`) and carried over TLS either way.
fn checksum_mode(etag: &str, range: Option<ByteRange>) -> Option<ChecksumMode> {
    (range.is_none() && !uploaded_in_parts(etag)).then_some(ChecksumMode::Enabled)
}

/// True for the ETag of an object uploaded in parts: S3 writes it as `"<hex>-<number of parts>"`.
fn uploaded_in_parts(etag: &str) -> bool {
    etag.trim_matches('"')
        .rsplit_once('-')
        .is_some_and(|(_, parts)| !parts.is_empty() && parts.bytes().all(|b| b.is_ascii_digit()))
}

fn empty_body() -> ObjectBody {
    ObjectBody {
        reader: Box::new(tokio::io::empty()),
        content_encoding: None,
        content_length: Some(0),
    }
}

/// The HTTP `Range` header for `[start, end)`: `bytes=start-(end-1)` (HTTP ranges are inclusive), or
/// `bytes=start-` to the end. `None` for an empty range.
pub fn range_header(range: ByteRange) -> Option<String> {
    match range.end {
        None => Some(format!("bytes={}-", range.start)),
        Some(end) if end > range.start => Some(format!("bytes={}-{}", range.start, end - 1)),
        Some(_) => None,
    }
}

/// A listing page's entries mapped by `meta`; an entry S3 sent without a field we need is logged and left out.
fn listed<T>(
    source: &Source,
    entries: &[T],
    meta: impl Fn(&T) -> Option<ObjectMeta>,
    key: impl Fn(&T) -> Option<&str>,
) -> Vec<ObjectMeta> {
    let mut objects = Vec::with_capacity(entries.len());
    for entry in entries {
        match meta(entry) {
            Some(object) => objects.push(object),
            None => tracing::warn!(
                bucket = %source.bucket,
                key = key(entry).unwrap_or_default(),
                "listed entry without key, ETag, LastModified (or VersionId) ignored"
            ),
        }
    }
    objects
}

/// A listed archived object has a readable restored copy: its restore finished and has not expired.
fn restored(status: Option<&aws_sdk_s3::types::RestoreStatus>) -> bool {
    status.is_some_and(|r| {
        r.restore_expiry_date().is_some() && r.is_restore_in_progress() != Some(true)
    })
}

/// A listed size (S3 says `i64`); 0 when missing.
fn listed_size(size: Option<i64>) -> u64 {
    size.and_then(|s| u64::try_from(s).ok()).unwrap_or(0)
}

/// Maps a listed object; `None` when S3 left out a field we need.
fn object_meta(object: &aws_sdk_s3::types::Object) -> Option<ObjectMeta> {
    Some(ObjectMeta {
        key: object.key()?.to_owned(),
        etag: object.e_tag()?.to_owned(),
        size: listed_size(object.size()),
        last_modified: object.last_modified().and_then(|t| to_chrono(*t))?,
        storage_class: object.storage_class().map(|c| c.as_str().to_owned()),
        restored: restored(object.restore_status()),
        version_id: None,
    })
}

/// Maps a HeadObject answer as a listing would show the object; `None` when S3 left out the ETag or
/// LastModified. `Restore: ongoing-request="false", …` means a restored copy is readable.
fn head_meta(
    key: &str,
    out: &aws_sdk_s3::operation::head_object::HeadObjectOutput,
) -> Option<ObjectMeta> {
    Some(ObjectMeta {
        key: key.to_owned(),
        etag: out.e_tag()?.to_owned(),
        size: out
            .content_length()
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(0),
        last_modified: out.last_modified().and_then(|t| to_chrono(*t))?,
        storage_class: out.storage_class().map(|c| c.as_str().to_owned()),
        restored: out
            .restore()
            .is_some_and(|r| r.contains("ongoing-request=\"false\"")),
        version_id: None,
    })
}

/// An SDK timestamp as chrono UTC.
pub(crate) fn to_chrono(t: aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// Maps an S3 failure on `s3://bucket/key` (a key, or the prefix for listings) to the port's error.
fn source_error(
    source: &Source,
    key: &str,
    etag: Option<&str>,
    action: &str,
    err: AwsCallError,
) -> SourceError {
    let bucket = source.bucket.clone();
    let context = format!("{action} s3://{bucket}/{key}");
    match classify_s3(err.kind, err.code.as_deref(), err.status) {
        S3Failure::NotFound => SourceError::NotFound { bucket, key: key.to_owned() },
        S3Failure::Changed => {
            SourceError::Changed { bucket, key: key.to_owned(), etag: etag.unwrap_or_default().to_owned() }
        }
        S3Failure::NoSuchBucket => SourceError::NoSuchBucket { bucket, account_id: source.account_id.clone() },
        S3Failure::AccessDenied => SourceError::AccessDenied {
            message: format!(
                "{} (S3 also answers AccessDenied when the bucket is not owned by account {}; check the \
                 bucket policy{} and the account id)",
                err.message_or_summary(),
                source.account_id,
                if source.role_arn.is_some() { ", the role's permission policy" } else { "" },
            ),
            bucket,
            key: key.to_owned(),
        },
        S3Failure::Archived => SourceError::Archived { bucket, key: key.to_owned() },
        S3Failure::Kms => SourceError::Kms {
            message: format!(
                "{}; grant kms:Decrypt on the object's key to the {} (key policy and IAM policy)",
                err.message_or_summary(),
                if source.role_arn.is_some() { "connector's role" } else { "importer's role" }
            ),
            bucket,
            key: key.to_owned(),
        },
        S3Failure::WrongRegion => {
            let actual = err.bucket_region.clone();
            SourceError::Other {
                context,
                source: Box::new(WrongRegion {
                    bucket,
                    configured: source.region.clone(),
                    actual,
                    detail: err.to_string(),
                }),
            }
        }
        S3Failure::Transient => SourceError::Transient { context, source: Box::new(err) },
        S3Failure::InvalidRange | S3Failure::Other => SourceError::Other { context, source: Box::new(err) },
    }
}

/// The bucket is not in the connector's region.
#[derive(Debug, thiserror::Error)]
#[error(
    "bucket {bucket} is not in region {configured}{}: set the connector's source region to the bucket's region \
     ({detail})",
    actual.as_deref().map(|r| format!(" but in {r}")).unwrap_or_default()
)]
pub struct WrongRegion {
    /// Bucket.
    pub bucket: String,
    /// The connector's region.
    pub configured: String,
    /// The bucket's region, when S3 said.
    pub actual: Option<String>,
    /// S3's answer.
    pub detail: String,
}

#[cfg(test)]
mod tests;
