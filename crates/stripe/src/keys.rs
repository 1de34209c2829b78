//! Idempotency keys and meter event identifiers: hex SHA-256 of length-prefixed fields — the purpose, the
//! connector, the file version (bucket, key, ETag without quotes, version id) and the record — so equal on
//! every redelivery, retry and piece of the same row, and different for any other row.

use s3_importer_core::sync::FileVersion;
use sha2::{Digest, Sha256};

/// The key of what `purpose` does for record `record` of `version` (`create-product`, `meter-event`…).
pub fn row_key(purpose: &str, version: &FileVersion, record: u64) -> String {
    let mut h = Sha256::new();
    for field in [
        "s3-importer-stripe/v1",
        purpose,
        &version.connector_id,
        &version.bucket,
        &version.key,
        version.etag.trim_matches('"'),
        version.version_id.as_deref().unwrap_or(""),
    ] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    h.update(record.to_be_bytes());
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(etag: &str) -> FileVersion {
        FileVersion {
            connector_id: "c-1".into(),
            bucket: "b".into(),
            key: "usage.csv".into(),
            etag: etag.into(),
            version_id: None,
        }
    }

    #[test]
    fn keys_depend_on_every_field_and_nothing_else() {
        let a = row_key("meter-event", &version("\"e\""), 7);
        assert_eq!(a, row_key("meter-event", &version("e"), 7));
        assert_ne!(a, row_key("meter-event", &version("\"e\""), 8));
        assert_ne!(a, row_key("create-price", &version("\"e\""), 7));
        assert_ne!(a, row_key("meter-event", &version("\"f\""), 7));
        let mut other = version("\"e\"");
        other.connector_id = "c-2".into();
        assert_ne!(a, row_key("meter-event", &other, 7));
        assert_eq!(a.len(), 64);
    }
}
