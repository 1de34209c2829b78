//! Where a connector's Parquet objects go:
//!
//! - the output of a file version: `PREFIX/connector=<connector id>/date=<LastModified, UTC, YYYY-MM-DD>/<sha256(key),
//!   32 hex>-<etag>.parquet`, so query engines prune by connector and date (Hive-style partitions);
//! - what a file imported in pieces keeps between them: `PREFIX/_staging/connector=<id>/<file id>/` (the
//!   bytes short of a part, `carry-NNNNN`, and the row groups written so far, `footer-NNNNN`). Engines skip
//!   paths starting with `_`, and the staging objects are deleted when the file is finished or aborted.
//!
//! The connector's id, not its name, names the partition: it never changes, and it is safe in a key.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

/// `<sha256(source key), first 32 hex>-<etag without quotes>`: one file version.
pub fn file_id(source_key: &str, etag: &str) -> String {
    let digest = Sha256::digest(source_key.as_bytes());
    format!("{}-{}", hex::encode(&digest[..16]), etag.trim_matches('"'))
}

/// `PREFIX/` (nothing for an empty prefix).
fn root(prefix: &str) -> String {
    let prefix = prefix.trim_matches('/');
    if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    }
}

/// `PREFIX/connector=<id>/`: where a connector's partitions start.
pub fn connector_prefix(prefix: &str, connector_id: &str) -> String {
    format!("{}connector={connector_id}/", root(prefix))
}

/// The key of a file version's Parquet object.
pub fn object_key(
    prefix: &str,
    connector_id: &str,
    last_modified: DateTime<Utc>,
    source_key: &str,
    etag: &str,
) -> String {
    format!(
        "{}date={}/{}.parquet",
        connector_prefix(prefix, connector_id),
        last_modified.format("%Y-%m-%d"),
        file_id(source_key, etag)
    )
}

/// `PREFIX/_staging/connector=<id>/<file id>/`: a file version's objects between pieces.
pub fn staging_prefix(prefix: &str, connector_id: &str, source_key: &str, etag: &str) -> String {
    format!(
        "{}_staging/connector={connector_id}/{}/",
        root(prefix),
        file_id(source_key, etag)
    )
}

/// The footer (row groups so far) piece `piece` leaves.
pub fn footer_key(staging: &str, piece: u32) -> String {
    format!("{staging}footer-{piece:05}")
}

/// The carry (bytes short of a part) piece `piece` leaves.
pub fn carry_key(staging: &str, piece: u32) -> String {
    format!("{staging}carry-{piece:05}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn outputs_are_partitioned_by_connector_and_utc_date() {
        // 23:30 at -02:00 is the next day in UTC.
        let at = chrono::FixedOffset::west_opt(2 * 3600)
            .and_then(|tz| tz.with_ymd_and_hms(2024, 3, 9, 23, 30, 0).single())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or_default();
        let key = object_key("lake/orders/", "c-1", at, "in/a b.csv", "\"abc-2\"");
        assert!(
            key.starts_with("lake/orders/connector=c-1/date=2024-03-10/")
                && key.ends_with("-abc-2.parquet"),
            "{key}"
        );
        assert_eq!(
            key,
            object_key("/lake/orders", "c-1", at, "in/a b.csv", "abc-2")
        );
        assert!(object_key("", "c-1", at, "k", "e").starts_with("connector=c-1/date="));
        let staging = staging_prefix("lake/orders", "c-1", "in/a b.csv", "\"abc-2\"");
        assert!(
            staging.starts_with("lake/orders/_staging/connector=c-1/"),
            "{staging}"
        );
        assert_eq!(footer_key(&staging, 2), format!("{staging}footer-00002"));
        assert_ne!(file_id("a", "e"), file_id("b", "e"));
    }
}
