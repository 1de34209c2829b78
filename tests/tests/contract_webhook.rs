//! The destination contract (`sync::contract::destination`) against the webhook destination, kind `upserts`
//! (it does not stage: rows are sent as they are written, like DynamoDB's), delivering to the loopback
//! receiver (`s3_importer_tests::webhook_receiver`), which verifies every signature, dedupes by
//! `Idempotency-Key` and upserts by `id`, keeping the newer file version's row, as the README tells
//! receivers to. Error reports go to the in-memory destination. The first requests of each test meet a 500
//! and a closed connection, retried.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use s3_importer_core::sink::ErrorReportEntry;
use s3_importer_core::sync::contract::destination::{DestinationFixture, RowLineage, VisibleRow};
use s3_importer_core::sync::memory::MemoryDestination;
use s3_importer_core::sync::ports::Destination;
use s3_importer_core::sync::{DestinationConfig, WebhookConfig, WebhookOnReject, WebhookSecret};
use s3_importer_tests::webhook_receiver::{Fault, Receiver};
use s3_importer_webhook::{RetryPolicy, SigningSecret, Webhook, WebhookDestination};

const SECRET: &str = "contract-secret";

struct Fixture {
    receiver: Receiver,
    reports: MemoryDestination,
    config: DestinationConfig,
    destination: Arc<dyn Destination>,
}

#[async_trait]
impl DestinationFixture for Fixture {
    fn destination(&self) -> Arc<dyn Destination> {
        self.destination.clone()
    }

    fn config(&self) -> DestinationConfig {
        self.config.clone()
    }

    async fn visible_rows(&self, connector_id: &str) -> Result<Vec<VisibleRow>, String> {
        let (bad, unstable) = self
            .receiver
            .seen(|s| (s.bad_signatures, s.unstable_keys.clone()));
        if bad > 0 || !unstable.is_empty() {
            return Err(format!(
                "{bad} requests with a bad signature; keys whose rows changed: {unstable:?}"
            ));
        }
        Ok(self.receiver.seen(|s| {
            s.tables
                .get(connector_id)
                .map(|table| {
                    table
                        .values()
                        .map(|r| VisibleRow {
                            row: r.data.clone(),
                            lineage: Some(RowLineage {
                                source_key: r.key.clone(),
                                source_etag: r.etag.clone(),
                                source_last_modified_ms: r.last_modified_ms,
                                record: r.record,
                            }),
                        })
                        .collect()
                })
                .unwrap_or_default()
        }))
    }

    async fn visible_outputs(&self, _connector_id: &str) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }

    async fn open_uploads(&self, _connector_id: &str) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }

    async fn report(&self, location: &str) -> Result<Option<Vec<ErrorReportEntry>>, String> {
        Ok(self.reports.report(location))
    }
}

async fn fixture() -> Result<Arc<dyn DestinationFixture>, String> {
    let receiver = Receiver::start(SECRET).await.map_err(|e| e.to_string())?;
    receiver.inject([Some(Fault::Status(500)), None, Some(Fault::Close)]);
    let webhook = WebhookConfig {
        url: receiver.url(),
        secret: WebhookSecret::Env {
            var: "UNUSED_THE_SECRET_IS_GIVEN".into(),
        },
        allow_private: true,
        rate_per_second: Some(1000),
        concurrency: Some(4),
        batch_rows: Some(2),
        batch_bytes: None,
        timeout_seconds: Some(2),
        on_reject: WebhookOnReject::Report,
    };
    let sender = Webhook::new(&webhook, SigningSecret::new(SECRET.as_bytes()))
        .map_err(|e| e.to_string())?
        .with_policy(RetryPolicy {
            base: Duration::from_millis(10),
            ..RetryPolicy::default()
        });
    let reports = MemoryDestination::new();
    let destination = Arc::new(WebhookDestination::new(
        Arc::new(sender),
        Arc::new(reports.clone()),
    ));
    Ok(Arc::new(Fixture {
        receiver,
        reports,
        config: DestinationConfig::Webhook(webhook),
        destination,
    }))
}

s3_importer_core::destination_contract_tests!(fixture(), upserts);
