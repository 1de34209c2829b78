//! Listing a versioned source: ListObjectVersions pages, every version of every key under the folder (delete
//! markers left out), each with its `VersionId`.

use aws_sdk_s3::types::{ObjectVersion, OptionalObjectAttributes};
use s3_importer_core::sync::ports::{ListPage, SourceError};
use s3_importer_core::sync::{ObjectMeta, Source};

use super::{listed, listed_size, restored, source_error, to_chrono, S3Source, PAGE_SIZE};
use crate::error::AwsCallError;

/// Where a version listing starts: S3's `KeyMarker` and `VersionIdMarker`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Marker {
    key: Option<String>,
    version_id: Option<String>,
}

impl Marker {
    /// The marker a [`ListPage::next`] token or a listing position holds (`None`: from the start). A version
    /// id has no line break and a key may, so either is `<version id>\n<key>`; a bare key (no version) starts
    /// after that key's versions.
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
        let objects = listed(source, out.versions(), version_meta, |v| v.key());
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
    Some(ObjectMeta {
        key: version.key()?.to_owned(),
        etag: version.e_tag()?.to_owned(),
        size: listed_size(version.size()),
        last_modified: version.last_modified().and_then(|t| to_chrono(*t))?,
        storage_class: version.storage_class().map(|c| c.as_str().to_owned()),
        restored: restored(version.restore_status()),
        version_id: Some(version.version_id()?.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::source;
    use aws_sdk_s3::operation::list_object_versions::ListObjectVersionsOutput;
    use aws_sdk_s3::types::DeleteMarkerEntry;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use s3_importer_core::sync::ports::ObjectSource;

    fn version(key: &str, id: &str, etag: &str) -> ObjectVersion {
        ObjectVersion::builder()
            .key(key)
            .version_id(id)
            .e_tag(etag)
            .size(5)
            .last_modified(aws_smithy_types::DateTime::from_secs(1_700_000_000))
            .build()
    }

    /// The request a versioned listing sends (folder, owner, both markers, the page size), and what it makes of
    /// the answer: versions with their ids, delete markers left out, the next token holding both markers.
    #[tokio::test]
    async fn a_version_page_is_asked_for_after_both_markers_and_its_token_keeps_them(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let rule = mock!(aws_sdk_s3::Client::list_object_versions)
            .match_requests(|r| {
                r.bucket() == Some("src")
                    && r.prefix() == Some("in/")
                    && r.expected_bucket_owner() == Some("111122223333")
                    && r.key_marker() == Some("in/a.csv")
                    && r.version_id_marker() == Some("v-2")
                    && r.max_keys() == Some(1000)
            })
            .then_output(|| {
                ListObjectVersionsOutput::builder()
                    .versions(version("in/a.csv", "v-1", "\"e1\""))
                    .versions(version("in/b.csv", "v-9", "\"e9\""))
                    .delete_markers(
                        DeleteMarkerEntry::builder()
                            .key("in/c.csv")
                            .version_id("d-1")
                            .build(),
                    )
                    .is_truncated(true)
                    .next_key_marker("in/b.csv")
                    .next_version_id_marker("v-9")
                    .build()
            });
        let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&rule]);
        let versioned = Source {
            versions: true,
            ..source()
        };
        let page = S3Source::with_client(client)
            .list_page(&versioned, Some("v-2\nin/a.csv".into()))
            .await?;
        assert_eq!(rule.num_calls(), 1);
        // A reconciliation's saved position (`ObjectMeta::listing_position`) resumes after that version.
        S3Source::with_client(mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&rule]))
            .list_page_after(&versioned, "v-2\nin/a.csv")
            .await?;
        assert_eq!(rule.num_calls(), 2);
        let listed: Vec<(&str, Option<&str>)> = page
            .objects
            .iter()
            .map(|o| (o.key.as_str(), o.version_id.as_deref()))
            .collect();
        assert_eq!(
            listed,
            vec![("in/a.csv", Some("v-1")), ("in/b.csv", Some("v-9"))]
        );
        assert_eq!(
            Marker::from_token(page.next),
            Marker {
                key: Some("in/b.csv".into()),
                version_id: Some("v-9".into()),
            }
        );
        Ok(())
    }

    /// A version's read and look-up name the version as well as the ETag and the owner.
    #[tokio::test]
    async fn reads_and_look_ups_of_a_version_are_pinned_to_it(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let get = mock!(aws_sdk_s3::Client::get_object)
            .match_requests(|r| {
                r.version_id() == Some("v-1")
                    && r.if_match() == Some("\"e1\"")
                    && r.expected_bucket_owner() == Some("111122223333")
            })
            .then_output(|| {
                aws_sdk_s3::operation::get_object::GetObjectOutput::builder()
                    .body(aws_sdk_s3::primitives::ByteStream::from_static(b"id\n1\n"))
                    .build()
            });
        let head = mock!(aws_sdk_s3::Client::head_object)
            .match_requests(|r| r.version_id() == Some("v-1"))
            .then_output(|| {
                aws_sdk_s3::operation::head_object::HeadObjectOutput::builder()
                    .e_tag("\"e1\"")
                    .version_id("v-1")
                    .last_modified(aws_smithy_types::DateTime::from_secs(1_700_000_000))
                    .build()
            });
        // An object written before versioning was on: S3's `null` version, also when the header is left out.
        let null = mock!(aws_sdk_s3::Client::head_object)
            .match_requests(|r| r.version_id().is_none())
            .then_output(|| {
                aws_sdk_s3::operation::head_object::HeadObjectOutput::builder()
                    .e_tag("\"e0\"")
                    .last_modified(aws_smithy_types::DateTime::from_secs(1_600_000_000))
                    .build()
            });
        let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&get, &head, &null]);
        let s3 = S3Source::with_client(client);
        let versioned = Source {
            versions: true,
            ..source()
        };
        s3.open(&versioned, "in/a.csv", "\"e1\"", Some("v-1"), None)
            .await?;
        let meta = s3.head(&versioned, "in/a.csv", Some("v-1")).await?;
        assert_eq!(meta.and_then(|m| m.version_id).as_deref(), Some("v-1"));
        let meta = s3.head(&versioned, "in/old.csv", None).await?;
        assert_eq!(meta.and_then(|m| m.version_id).as_deref(), Some("null"));
        let plain = s3.head(&source(), "in/old.csv", None).await?;
        assert_eq!(plain.map(|m| m.version_id), Some(None));
        assert_eq!((get.num_calls(), head.num_calls()), (1, 1));
        Ok(())
    }

    /// The older versions of one key: asked for after its own version, with the key as prefix; the versions of
    /// longer keys sharing the prefix are not its own.
    #[tokio::test]
    async fn older_versions_are_the_keys_own_after_the_given_one(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let rule = mock!(aws_sdk_s3::Client::list_object_versions)
            .match_requests(|r| {
                r.prefix() == Some("in/a.csv")
                    && r.key_marker() == Some("in/a.csv")
                    && r.version_id_marker() == Some("v-3")
                    && r.expected_bucket_owner() == Some("111122223333")
            })
            .then_output(|| {
                ListObjectVersionsOutput::builder()
                    .versions(version("in/a.csv", "v-2", "\"e2\""))
                    .versions(version("in/a.csv", "v-1", "\"e1\""))
                    .versions(version("in/a.csv.gz", "v-7", "\"e7\""))
                    .build()
            });
        let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&rule]);
        let older = S3Source::with_client(client)
            .older_versions(&source(), "in/a.csv", "v-3", 999)
            .await?;
        let ids: Vec<Option<&str>> = older.iter().map(|o| o.version_id.as_deref()).collect();
        assert_eq!(ids, vec![Some("v-2"), Some("v-1")]);
        Ok(())
    }

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
            Marker {
                key: Some("in/a.csv".into()),
                version_id: None,
            }
        );
        assert_eq!(Marker::from_token(None), Marker::default());
        assert_eq!(Marker::token(None, Some("v")), None);
    }
}
