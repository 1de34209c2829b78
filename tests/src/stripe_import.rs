//! Files imported into the Stripe destination by the real pipeline (`pipeline::import`, the worker's), with
//! the built-in templates of `examples/templates/stripe/`: what the Stripe tests share.

use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::{TimeZone, Utc};
use s3_importer_core::pipeline::{self, FileReport, ImportOptions};
use s3_importer_core::sink::{MemoryRejects, RowSink, SinkError};
use s3_importer_core::sync::contract::fixtures::file_job;
use s3_importer_core::sync::ports::Destination;
use s3_importer_core::sync::{
    DestinationConfig, ObjectMeta, StripeConfig, StripeObject, WebhookSecret,
};
use s3_importer_core::template::Template;
use s3_importer_core::{Compression, FileFormat, Format};
use s3_importer_stripe::{ApiKey, CustomerIds, Stripe, StripeDestination};
use s3_importer_webhook::RetryPolicy;

/// The config of a connector writing `object` to the API at `base_url`.
pub fn config(object: StripeObject, base_url: &str, rate: Option<u32>) -> StripeConfig {
    StripeConfig {
        object,
        key: WebhookSecret::Env {
            var: "UNUSED_THE_KEY_IS_GIVEN".into(),
        },
        base_url: Some(base_url.to_owned()),
        rate_per_second: rate,
        workers: None,
        concurrency: Some(4),
        timeout_seconds: Some(5),
    }
}

/// The account, with `key`, retrying quickly (10 ms base backoff).
pub fn stripe(
    config: &StripeConfig,
    key: &str,
    customers: Arc<dyn CustomerIds>,
) -> Result<Arc<Stripe>> {
    let stripe = Stripe::new(config, ApiKey::new(key)?, customers)?.with_policy(RetryPolicy {
        base: std::time::Duration::from_millis(10),
        ..RetryPolicy::default()
    });
    Ok(Arc::new(stripe))
}

/// The built-in template `name` (`stripe-products`…).
pub fn template(name: &str) -> Result<Template> {
    let path = crate::repo_root().join(format!("examples/templates/stripe/{name}.toml"));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    Ok(Template::from_toml(&text)?)
}

/// One file version to import: its key, ETag and LastModified (epoch seconds).
#[derive(Debug, Clone, Copy)]
pub struct Version<'a> {
    /// The connector.
    pub connector: &'a str,
    /// The object key.
    pub key: &'a str,
    /// The ETag.
    pub etag: &'a str,
    /// LastModified, epoch seconds.
    pub modified: i64,
}

/// Imports `csv` as `version` with the built-in template `template_name` into `stripe`: the report (or
/// the sink's failure) and the rejected rows.
pub async fn import(
    stripe: Arc<Stripe>,
    template_name: &str,
    version: Version<'_>,
    csv: &str,
) -> Result<(Result<FileReport, SinkError>, MemoryRejects)> {
    let template = template(template_name)?;
    let source = crate::test_source();
    let object = ObjectMeta::new(
        version.key,
        version.etag,
        csv.len() as u64,
        Utc.timestamp_opt(version.modified, 0)
            .single()
            .context("time")?,
    );
    let config = DestinationConfig::Stripe(StripeConfig {
        object: stripe.object(),
        key: WebhookSecret::Env { var: "K".into() },
        base_url: None,
        rate_per_second: None,
        workers: None,
        concurrency: None,
        timeout_seconds: None,
    });
    let job = file_job(version.connector, source, config, template.clone(), &object);
    let destination = StripeDestination::new(
        stripe,
        Arc::new(s3_importer_core::sync::memory::MemoryDestination::new()),
    );
    let mut sink: Box<dyn RowSink> = destination.open_rows(&job).await?;
    let mut rejects = MemoryRejects::default();
    let report = pipeline::import(
        std::io::Cursor::new(csv.as_bytes().to_vec()),
        FileFormat {
            format: Format::Csv,
            compression: Compression::None,
        },
        Arc::new(template),
        ImportOptions {
            batch_rows: 7,
            ..ImportOptions::default()
        },
        sink.as_mut(),
        &mut rejects,
    )
    .await;
    Ok((report, rejects))
}
