//! Files imported into the webhook destination by the real pipeline (`pipeline::import`, the worker's), with
//! the engine's default template: what the webhook tests and `make bench-webhook` share.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{TimeZone, Utc};
use s3_importer_core::pipeline::{self, FileReport, ImportOptions};
use s3_importer_core::sink::{MemoryRejects, RowSink};
use s3_importer_core::sync::contract::fixtures::{file_job, TEMPLATE};
use s3_importer_core::sync::ports::Destination;
use s3_importer_core::sync::{
    DestinationConfig, ObjectMeta, WebhookConfig, WebhookOnReject, WebhookSecret,
};
use s3_importer_core::template::Template;
use s3_importer_core::{Compression, FileFormat, Format};
use s3_importer_webhook::{RetryPolicy, SigningSecret, Webhook, WebhookDestination};

/// A webhook to `url` (private targets allowed: the receiver is on loopback) in batches of `batch_rows`, at
/// 10,000 requests/s, 4 in flight, a 1-second timeout.
pub fn config(url: &str, batch_rows: u32) -> WebhookConfig {
    WebhookConfig {
        url: url.to_owned(),
        secret: WebhookSecret::Env {
            var: "UNUSED".into(),
        },
        allow_private: true,
        rate_per_second: Some(10_000),
        concurrency: Some(4),
        batch_rows: Some(batch_rows),
        batch_bytes: None,
        timeout_seconds: Some(1),
        on_reject: WebhookOnReject::Report,
    }
}

/// The webhook of `config`, signing with `secret`, retrying quickly (20 ms base backoff).
pub fn webhook(config: &WebhookConfig, secret: &str) -> Result<Arc<Webhook>> {
    Ok(Arc::new(
        Webhook::new(config, SigningSecret::new(secret.as_bytes()))?.with_policy(RetryPolicy {
            base: Duration::from_millis(20),
            ..RetryPolicy::default()
        }),
    ))
}

/// Imports `csv` through the webhook's row sink (batches of `pipeline_rows` from the pipeline, so the
/// webhook's batches do not follow them).
pub async fn import(
    webhook: Arc<Webhook>,
    csv: Vec<u8>,
    pipeline_rows: usize,
) -> Result<(
    Result<FileReport, s3_importer_core::sink::SinkError>,
    MemoryRejects,
)> {
    let template = Template::from_toml(TEMPLATE)?;
    let source = crate::test_source();
    let object = ObjectMeta::new(
        "in/orders.csv",
        "\"etag-1\"",
        csv.len() as u64,
        Utc.timestamp_opt(1_700_000_000, 0)
            .single()
            .context("time")?,
    );
    let job = file_job(
        "c-webhook",
        source,
        DestinationConfig::Webhook(config("http://unused.invalid/", 1)),
        template.clone(),
        &object,
    );
    let destination = WebhookDestination::new(
        webhook,
        Arc::new(s3_importer_core::sync::memory::MemoryDestination::new()),
    );
    let mut sink: Box<dyn RowSink> = destination.open_rows(&job).await?;
    let mut rejects = MemoryRejects::default();
    let report = pipeline::import(
        std::io::Cursor::new(csv),
        FileFormat {
            format: Format::Csv,
            compression: Compression::None,
        },
        Arc::new(template),
        ImportOptions {
            batch_rows: pipeline_rows,
            ..ImportOptions::default()
        },
        sink.as_mut(),
        &mut rejects,
    )
    .await;
    Ok((report, rejects))
}
