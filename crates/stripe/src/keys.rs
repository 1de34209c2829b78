//! Idempotency keys and meter event identifiers: hex SHA-256 of length-prefixed fields — the purpose, the
//! connector, the file version (bucket, key, ETag without quotes, version id) and the record, hashed as the
//! webhook's batch keys are ([`version_digest`]) — so equal on every redelivery, retry and piece of the
//! same row, and different for any other row.

use s3_importer_core::sync::FileVersion;
use s3_importer_webhook::sink::version_digest;
use sha2::Digest;

/// The key of what `purpose` does for record `record` of `version` (`create-product`, `meter-event`…).
pub fn row_key(purpose: &str, version: &FileVersion, record: u64) -> String {
    let mut h = version_digest(&format!("s3-importer-stripe/v1/{purpose}"), version);
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
