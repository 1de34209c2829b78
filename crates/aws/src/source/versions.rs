//! Listing a versioned source: ListObjectVersions pages, every version of every key under the folder (delete
//! markers left out), each with its `VersionId`.

use aws_sdk_s3::types::{ObjectVersion, OptionalObjectAttributes};
use s3_importer_core::sync::ports::{ListPage, SourceError};
use s3_importer_core::sync::{ObjectMeta, Source};

use super::{source_error, to_chrono, S3Source, PAGE_SIZE};
use crate::error::AwsCallError;

/// Where a version listing starts: S3's `KeyMarker` and `VersionIdMarker`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Marker {
    key: Option<String>,
    version_id: Option<String>,
}

impl Marker {
    /// The versions of the keys after `key` (a listing checkpointed by key).
    pub(super) fn after_key(key: &str) -> Self {
        Self {
            key: Some(key.to_owned()),
            version_id: None,
        }
    }

    /// The marker a [`ListPage::next`] token holds (`None`: from the start). A version id has no line
    /// break and a key may, so the token is `<version id>\n<key>`.
    pub(super) fn from_token(token: Option<String>) -> Self {
        match token.as_deref().and_then(|t| t.split_once('\n')) {
            Some((version_id, key)) => Self {
                key: Some(key.to_owned()),
                version_id: (!version_id.is_empty()).then(|| version_id.to_owned()),
            },
            None => Self {
                key: token,
                version_id: None,
            },
        }
    }

    fn token(key: Option<&str>, version_id: Option<&str>) -> Option<String> {
        key.map(|key| format!("{}\n{key}", version_id.unwrap_or_default()))
    }
}

impl S3Source {
    /// One ListObjectVersions page under the source's prefix (up to 1000 versions and delete markers; the
    /// markers are not files and are left out, so a page can hold fewer objects than that).
    pub(super) async fn list_versions(
        &self,
        source: &Source,
        marker: Marker,
    ) -> Result<ListPage, SourceError> {
        let client = self.client(source).await?;
        let prefix = source.prefix.clone().unwrap_or_default();
        let out = client
            .list_object_versions()
            .bucket(&source.bucket)
            .prefix(&prefix)
            .set_key_marker(marker.key)
            .set_version_id_marker(marker.version_id)
            .max_keys(PAGE_SIZE)
            .expected_bucket_owner(&source.account_id)
            .optional_object_attributes(OptionalObjectAttributes::RestoreStatus)
            .send()
            .await
            .map_err(|e| {
                source_error(
                    source,
                    &prefix,
                    None,
                    "list versions",
                    AwsCallError::from_sdk(e),
                )
            })?;
        let mut objects = Vec::with_capacity(out.versions().len());
        for version in out.versions() {
            match version_meta(version) {
                Some(meta) => objects.push(meta),
                None => tracing::warn!(
                    bucket = %source.bucket,
                    key = version.key().unwrap_or_default(),
                    "listed version without key, VersionId, ETag or LastModified; ignored"
                ),
            }
        }
        let next = if out.is_truncated() == Some(true) {
            Marker::token(out.next_key_marker(), out.next_version_id_marker())
        } else {
            None
        };
        Ok(ListPage { objects, next })
    }
}

impl S3Source {
    /// Up to `max` (at most 1000) versions of `key` older than `version_id`, newest first: one
    /// ListObjectVersions with the key as prefix, starting after that version.
    pub(super) async fn versions_after(
        &self,
        source: &Source,
        key: &str,
        version_id: &str,
        max: usize,
    ) -> Result<Vec<ObjectMeta>, SourceError> {
        let client = self.client(source).await?;
        let out = client
            .list_object_versions()
            .bucket(&source.bucket)
            .prefix(key)
            .key_marker(key)
            .version_id_marker(version_id)
            .max_keys(i32::try_from(max).unwrap_or(PAGE_SIZE).min(PAGE_SIZE))
            .expected_bucket_owner(&source.account_id)
            .send()
            .await
            .map_err(|e| {
                source_error(
                    source,
                    key,
                    None,
                    "list older versions",
                    AwsCallError::from_sdk(e),
                )
            })?;
        Ok(out
            .versions()
            .iter()
            // The prefix also lists longer keys (`a.csv.gz` after `a.csv`), after the key's own versions.
            .take_while(|v| v.key() == Some(key))
            .filter_map(version_meta)
            .take(max)
            .collect())
    }
}

/// Maps a listed version; `None` when S3 left out a field we need.
fn version_meta(version: &ObjectVersion) -> Option<ObjectMeta> {
    let restored = version.restore_status().is_some_and(|r| {
        r.restore_expiry_date().is_some() && r.is_restore_in_progress() != Some(true)
    });
    Some(ObjectMeta {
        key: version.key()?.to_owned(),
        etag: version.e_tag()?.to_owned(),
        size: version
            .size()
            .and_then(|s| u64::try_from(s).ok())
            .unwrap_or(0),
        last_modified: version.last_modified().and_then(|t| to_chrono(*t))?,
        storage_class: version.storage_class().map(|c| c.as_str().to_owned()),
        restored,
        version_id: Some(version.version_id()?.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_the_key_and_the_version_marker() {
        let token = Marker::token(
            Some("in/a\nb.csv"),
            Some("3/L4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY"),
        );
        assert_eq!(
            Marker::from_token(token),
            Marker {
                key: Some("in/a\nb.csv".into()),
                version_id: Some("3/L4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY".into()),
            }
        );
        assert_eq!(
            Marker::from_token(Marker::token(Some("in/a.csv"), None)),
            Marker::after_key("in/a.csv")
        );
        assert_eq!(Marker::from_token(None), Marker::default());
        assert_eq!(Marker::token(None, Some("v")), None);
    }
}
