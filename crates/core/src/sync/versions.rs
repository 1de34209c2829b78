//! Ordering the versions of one key that S3 dates to the same second (`docs/architecture.md`, "Versioned
//! buckets"): S3's LastModified has whole seconds, and destinations keep a row from the newer file version by
//! comparing it, so two uploads within one second would otherwise tie.

use chrono::{DateTime, Duration, Utc};

use super::model::{FileVersion, Source};
use super::ports::{ObjectSource, SourceError};

/// How many older versions are looked at: the rank within one second is kept below a second.
const MAX_SAME_SECOND: usize = 999;

/// The instant a version's rows carry as their source LastModified: its second, plus one millisecond per
/// older version of the key within that second (S3 lists versions newest first), so the later of two
/// versions written within one second is the newer one everywhere. A version without an id is its own
/// LastModified.
pub async fn ordered_last_modified(
    objects: &dyn ObjectSource,
    source: &Source,
    version: &FileVersion,
    last_modified: DateTime<Utc>,
) -> Result<DateTime<Utc>, SourceError> {
    let Some(version_id) = version.version_id.as_deref() else {
        return Ok(last_modified);
    };
    let second = last_modified.timestamp();
    let older = objects
        .older_versions(source, &version.key, version_id, MAX_SAME_SECOND)
        .await?;
    let rank = older
        .iter()
        .take_while(|o| o.last_modified.timestamp() == second)
        .count();
    let whole_second = DateTime::from_timestamp(second, 0).unwrap_or(last_modified);
    Ok(whole_second + Duration::milliseconds(rank as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::memory::MemoryObjectSource;
    use crate::sync::ObjectMeta;
    use chrono::TimeZone;

    /// A version's output paths and listing position name its version; an unversioned file's stay as they
    /// were (the ETag, the key).
    #[test]
    fn a_versions_output_tag_and_listing_position_name_it() {
        let plain = FileVersion {
            connector_id: "c".into(),
            bucket: "b".into(),
            key: "in/a.csv".into(),
            etag: "\"e1\"".into(),
            version_id: None,
        };
        let v1 = FileVersion {
            version_id: Some("3/L4kq+t".into()),
            ..plain.clone()
        };
        let v2 = FileVersion {
            version_id: Some("null".into()),
            ..plain.clone()
        };
        assert_eq!(plain.output_tag(), "e1");
        assert!(v1.output_tag().starts_with("e1-") && v1.output_tag().len() == 3 + 16);
        assert!(!v1.output_tag().contains(['/', '+']));
        assert_ne!(v1.output_tag(), v2.output_tag());
        let mut object = ObjectMeta::new("in/a.csv", "\"e1\"", 1, Utc::now());
        assert_eq!(object.listing_position(), "in/a.csv");
        object.version_id = Some("v-9".into());
        assert_eq!(object.listing_position(), "v-9\nin/a.csv");
    }

    #[tokio::test]
    async fn versions_within_one_second_are_ordered_by_the_listing(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let s3 = MemoryObjectSource::new();
        s3.enable_versioning("b");
        let t = Utc
            .with_ymd_and_hms(2026, 12, 8, 1, 0, 0)
            .single()
            .ok_or("time")?;
        // Two versions in the second before, three in this one (the last one with a later sub-second).
        for (i, at) in [
            t - Duration::milliseconds(400),
            t - Duration::milliseconds(300),
            t,
            t,
            t + Duration::milliseconds(900),
        ]
        .into_iter()
        .enumerate()
        {
            s3.put("b", "k.csv", format!("v{i}"), at);
        }
        let source = Source {
            account_id: "111111111111".into(),
            bucket: "b".into(),
            region: "us-east-1".into(),
            prefix: None,
            role_arn: None,
            external_id: None,
            versions: true,
        };
        let mut listed = s3.list_page(&source, None).await?.objects;
        listed.reverse();
        let mut got = Vec::new();
        for object in &listed {
            let version = FileVersion {
                connector_id: "c".into(),
                bucket: "b".into(),
                key: object.key.clone(),
                etag: object.etag.clone(),
                version_id: object.version_id.clone(),
            };
            got.push(ordered_last_modified(&s3, &source, &version, object.last_modified).await?);
        }
        let second_before = t - Duration::seconds(1);
        assert_eq!(
            got,
            vec![
                second_before,
                second_before + Duration::milliseconds(1),
                t,
                t + Duration::milliseconds(1),
                t + Duration::milliseconds(2),
            ]
        );
        let unversioned = FileVersion {
            connector_id: "c".into(),
            bucket: "b".into(),
            key: "k.csv".into(),
            etag: "\"e\"".into(),
            version_id: None,
        };
        let at = t + Duration::milliseconds(250);
        assert_eq!(
            ordered_last_modified(&s3, &source, &unversioned, at).await?,
            at
        );
        Ok(())
    }
}
