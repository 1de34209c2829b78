//! The webhook's row sink: rows gathered into batches by the sink's own rules (at most `batch_rows` rows
//! and `batch_bytes` of body, counted from where the piece starts), so a batch covers the same records
//! whatever batches the pipeline hands over; each batch's idempotency key is derived from the connector,
//! the file version and the first and last records it covers. Memory is one batch's body.
//!
//! Body:
//! `{"version":1,"connector":"c-…","file":{"bucket":…,"key":…,"etag":…,"version_id":…,"last_modified":…},`
//! `"rows":[{"record":1,"line":2,"data":{…}},…],"batch":{"first_record":1,"last_record":500,"rows":500}}`

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use s3_importer_core::sink::{RejectedRow, RowBatch, RowSink, SinkError};
use s3_importer_core::sync::{FileVersion, WebhookOnReject};
use s3_importer_core::{ErrorCode, Position, RowError};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::deliver::{deliver, Delivered};
use crate::Webhook;

/// A SHA-256 fed with `domain` and the fields of `version` (connector, bucket, key, ETag without quotes,
/// version id), each length-prefixed so that no two field lists feed the same bytes: the start of every key
/// derived from a file version (this sink's batch keys, the Stripe destination's row keys).
pub fn version_digest(domain: &str, version: &FileVersion) -> Sha256 {
    let mut h = Sha256::new();
    for field in [
        domain,
        &version.connector_id,
        &version.bucket,
        &version.key,
        version.etag.trim_matches('"'),
        version.version_id.as_deref().unwrap_or(""),
    ] {
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    h
}

/// The idempotency key of the batch covering records `first..=last` of `version`: hex SHA-256 of the
/// fields, so equal on every redelivery and retry of the same batch, and different for any other. A replay
/// (`connector replay`, `replays` > 0) is a new delivery the user asked for: its number is part of the key,
/// so a receiver that deduplicates by key takes the rows again (once per replay).
pub fn idempotency_key(version: &FileVersion, replays: u32, first: u64, last: u64) -> String {
    let mut h = version_digest("s3-importer-webhook/v1", version);
    if replays > 0 {
        h.update(b"replay");
        h.update(replays.to_be_bytes());
    }
    h.update(first.to_be_bytes());
    h.update(last.to_be_bytes());
    hex::encode(h.finalize())
}

/// Writes one file version's rows to a webhook.
pub struct WebhookSink {
    webhook: Arc<Webhook>,
    version: FileVersion,
    /// The file version's replay number (part of the idempotency keys).
    replays: u32,
    /// `{"version":1,…,"rows":[`, built once.
    head: Vec<u8>,
    /// The batch's rows, comma-separated.
    rows: Vec<u8>,
    positions: Vec<Position>,
    refused: Vec<RejectedRow>,
    batches: u64,
}

impl WebhookSink {
    /// A sink for `version`'s rows; the file was last modified at `last_modified` (sent, so that a
    /// receiver can keep a newer file version's rows when an older one arrives late).
    pub fn new(webhook: Arc<Webhook>, version: FileVersion, last_modified: DateTime<Utc>) -> Self {
        let file = serde_json::json!({
            "bucket": version.bucket,
            "key": version.key,
            "etag": version.etag,
            "version_id": version.version_id,
            "last_modified": last_modified.to_rfc3339_opts(SecondsFormat::Millis, true),
        });
        let mut head = format!(
            "{{\"version\":1,\"connector\":{},\"file\":{file},\"rows\":[",
            serde_json::Value::from(version.connector_id.as_str())
        )
        .into_bytes();
        head.shrink_to_fit();
        Self {
            webhook,
            version,
            replays: 0,
            head,
            rows: Vec::new(),
            positions: Vec::new(),
            refused: Vec::new(),
            batches: 0,
        }
    }

    /// The sink of a replay (`connector replay`): the batches get new idempotency keys.
    pub fn replay(mut self, replays: u32) -> Self {
        self.replays = replays;
        self
    }

    fn body_len_with(&self, row: usize) -> usize {
        // head + rows + `,{"record":…,"line":…,"data":` + row + `}` + tail (under 100 bytes).
        self.head.len() + self.rows.len() + row + 160
    }

    fn push(&mut self, position: Position, row: &[u8]) {
        if !self.positions.is_empty() {
            self.rows.push(b',');
        }
        self.rows.extend_from_slice(
            format!(
                "{{\"record\":{},\"line\":{},\"data\":",
                position.record, position.line
            )
            .as_bytes(),
        );
        self.rows.extend_from_slice(row);
        self.rows.push(b'}');
        self.positions.push(position);
    }

    async fn send(&mut self) -> Result<(), SinkError> {
        let (Some(first), Some(last)) = (self.positions.first(), self.positions.last()) else {
            return Ok(());
        };
        let (first, last) = (first.record, last.record);
        let key = idempotency_key(&self.version, self.replays, first, last);
        let mut body = Vec::with_capacity(self.head.len() + self.rows.len() + 96);
        body.extend_from_slice(&self.head);
        body.extend_from_slice(&self.rows);
        body.extend_from_slice(
            format!(
                "],\"batch\":{{\"first_record\":{first},\"last_record\":{last},\"rows\":{}}}}}",
                self.positions.len()
            )
            .as_bytes(),
        );
        self.rows.clear();
        let w = &self.webhook;
        let outcome = deliver(
            &w.client,
            &w.throttle,
            &w.secret,
            &w.policy,
            &key,
            Bytes::from(body),
        )
        .await?;
        self.batches += 1;
        match outcome {
            Delivered::Accepted => self.positions.clear(),
            Delivered::Refused(answer) => {
                warn!(connector = %self.version.connector_id, key = %self.version.key, first, last, status = answer.status, "webhook refused a batch");
                if w.on_reject == WebhookOnReject::Fail {
                    self.positions.clear();
                    return Err(SinkError::permanent(
                        format!("webhook refused the batch of records {first} to {last} (on_reject = fail)"),
                        answer,
                    ));
                }
                let message =
                    format!("the webhook refused the batch of records {first} to {last}: {answer}");
                self.refused
                    .extend(self.positions.drain(..).map(|position| RejectedRow {
                        position,
                        errors: vec![RowError::record(
                            ErrorCode::DestinationRejected,
                            message.clone(),
                        )],
                    }));
            }
        }
        Ok(())
    }
}

#[async_trait]
impl RowSink for WebhookSink {
    async fn write_batch(&mut self, batch: &RowBatch) -> Result<(), SinkError> {
        let (max_rows, max_bytes) = (self.webhook.batch_rows, self.webhook.batch_bytes);
        for (position, row) in batch.iter() {
            if !self.positions.is_empty()
                && (self.positions.len() >= max_rows || self.body_len_with(row.len()) > max_bytes)
            {
                self.send().await?;
            }
            self.push(position, row);
        }
        if self.positions.len() >= max_rows {
            self.send().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        self.send().await
    }

    fn take_refused(&mut self) -> Vec<RejectedRow> {
        std::mem::take(&mut self.refused)
    }

    async fn finish(&mut self) -> Result<(), SinkError> {
        self.send().await?;
        info!(connector = %self.version.connector_id, key = %self.version.key, batches = self.batches, "webhook file delivered");
        Ok(())
    }

    async fn suspend(&mut self) -> Result<Option<serde_json::Value>, SinkError> {
        // Every row before the checkpoint is delivered; the next piece starts a new batch.
        self.send().await?;
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(etag: &str) -> FileVersion {
        FileVersion {
            connector_id: "c-1".into(),
            bucket: "b".into(),
            key: "k.csv".into(),
            etag: etag.into(),
            version_id: None,
        }
    }

    #[test]
    fn keys_depend_on_every_field_and_nothing_else() {
        let a = idempotency_key(&version("\"e1\""), 0, 1, 500);
        assert_eq!(a, idempotency_key(&version("\"e1\""), 0, 1, 500));
        assert_eq!(
            a,
            idempotency_key(&version("e1"), 0, 1, 500),
            "quotes of the ETag do not matter"
        );
        assert_ne!(a, idempotency_key(&version("\"e2\""), 0, 1, 500));
        assert_ne!(a, idempotency_key(&version("\"e1\""), 0, 1, 499));
        assert_ne!(a, idempotency_key(&version("\"e1\""), 0, 2, 500));
        let mut other = version("\"e1\"");
        other.version_id = Some("v".into());
        assert_ne!(a, idempotency_key(&other, 0, 1, 500));
        // Field boundaries are length-prefixed: moving a character between fields changes the key.
        let mut shifted = version("\"e1\"");
        shifted.bucket = "bk".into();
        shifted.key = ".csv".into();
        assert_ne!(a, idempotency_key(&shifted, 0, 1, 500));
        assert_eq!(a.len(), 64);
        // Each replay is a delivery of its own, stable across its redeliveries.
        let replayed = idempotency_key(&version("\"e1\""), 1, 1, 500);
        assert_ne!(a, replayed);
        assert_eq!(replayed, idempotency_key(&version("\"e1\""), 1, 1, 500));
        assert_ne!(replayed, idempotency_key(&version("\"e1\""), 2, 1, 500));
    }
}
