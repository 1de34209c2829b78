//! The webhook destination: a connector's rows POSTed in signed, idempotent batches to an HTTPS endpoint
//! (see the README's "Webhook" for the receiver's side).
//!
//! - [`ssrf`] and [`target`]: which hosts may be reached, and the URL's checks;
//! - [`client`]: one POST on hyper's connection API, to the address checked;
//! - [`signing`]: the `S3-Importer-Signature` scheme;
//! - [`deliver`]: retries, concurrency and rate limits;
//! - [`sink`]: batches with stable boundaries and keys.

pub mod client;
pub mod deliver;
pub mod error;
pub mod signing;
pub mod sink;
pub mod ssrf;
pub mod target;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use s3_importer_core::sink::{RejectSink, RowSink, SinkError};
use s3_importer_core::sync::ports::{Destination, FileJob};
use s3_importer_core::sync::{WebhookConfig, WebhookOnReject};

pub use crate::client::{Answer, Client, Request};
pub use crate::deliver::{RetryPolicy, Throttle};
pub use crate::error::{Answered, WebhookError};
pub use crate::signing::{BadSignature, SigningSecret, IDEMPOTENCY_HEADER, SIGNATURE_HEADER};
pub use crate::target::Target;

/// Rows per request by default.
pub const DEFAULT_BATCH_ROWS: u32 = 500;
/// Body bytes per request by default.
pub const DEFAULT_BATCH_BYTES: u32 = 1024 * 1024;
/// Requests per second by default.
pub const DEFAULT_RATE: u32 = 10;
/// Requests in flight by default.
pub const DEFAULT_CONCURRENCY: u32 = 4;
/// Seconds a request may take by default.
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 10;

/// One webhook, ready to send: its client, secret, limits and policy. Shared by the files of a worker process
/// that go to it (the limits are per process).
#[derive(Debug)]
pub struct Webhook {
    client: Client,
    secret: SigningSecret,
    throttle: Throttle,
    policy: RetryPolicy,
    batch_rows: usize,
    batch_bytes: usize,
    on_reject: WebhookOnReject,
}

impl Webhook {
    /// The webhook `config` names, signing with `secret`. Refuses a bad URL or a forbidden IP literal.
    pub fn new(config: &WebhookConfig, secret: SigningSecret) -> Result<Self, WebhookError> {
        let target = Target::parse(&config.url, config.allow_private)?;
        let timeout = config
            .timeout_seconds
            .unwrap_or(DEFAULT_TIMEOUT_SECONDS)
            .max(1);
        Ok(Self {
            client: Client::new(target, Duration::from_secs(u64::from(timeout))),
            secret,
            throttle: Throttle::new(
                config.rate_per_second.unwrap_or(DEFAULT_RATE),
                config.concurrency.unwrap_or(DEFAULT_CONCURRENCY),
            ),
            policy: RetryPolicy::default(),
            batch_rows: config.batch_rows.unwrap_or(DEFAULT_BATCH_ROWS).max(1) as usize,
            batch_bytes: config.batch_bytes.unwrap_or(DEFAULT_BATCH_BYTES).max(1024) as usize,
            on_reject: config.on_reject,
        })
    }

    /// The same webhook retrying by `policy` (tests shorten it).
    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The URL, for messages (without its query).
    pub fn url(&self) -> String {
        self.client.target().display()
    }

    /// `connector verify`'s probe: one signed POST of `{"version":1,"connector":ID,"probe":true,"rows":[]}`
    /// with header `S3-Importer-Probe: 1` and idempotency key `probe-<connector>-<unix seconds>`, sent once
    /// (no retry). `Ok` with the status when the receiver answered 2xx.
    pub async fn probe(&self, connector_id: &str) -> Result<u16, ProbeError> {
        let body =
            serde_json::json!({"version": 1, "connector": connector_id, "probe": true, "rows": []});
        let body = Bytes::from(body.to_string());
        let now = deliver::unix_now();
        let name = http::header::HeaderName::from_static;
        let headers = [
            (
                name(IDEMPOTENCY_HEADER),
                format!("probe-{connector_id}-{now}"),
            ),
            (name(SIGNATURE_HEADER), self.secret.sign(now, &body)),
            (name(signing::PROBE_HEADER), "1".to_owned()),
        ];
        let answer = self
            .client
            .post(&headers, body)
            .await
            .map_err(ProbeError::Unreachable)?;
        if (200..300).contains(&answer.status) {
            Ok(answer.status)
        } else {
            Err(ProbeError::Answered(Answered {
                status: answer.status,
                excerpt: answer.excerpt,
                retry: None,
            }))
        }
    }
}

/// Why the probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Not reached (refused address, DNS, connection, TLS, timeout).
    #[error(transparent)]
    Unreachable(WebhookError),
    /// Reached, but it did not accept the signed probe.
    #[error("the receiver did not accept the signed probe: {0}")]
    Answered(Answered),
}

/// The webhook destination: rows to the webhook, error reports through `rejects` (the output bucket).
pub struct WebhookDestination {
    webhook: Arc<Webhook>,
    rejects: Arc<dyn Destination>,
}

impl WebhookDestination {
    /// Rows to `webhook`, error reports through `rejects`.
    pub fn new(webhook: Arc<Webhook>, rejects: Arc<dyn Destination>) -> Self {
        Self { webhook, rejects }
    }
}

#[async_trait]
impl Destination for WebhookDestination {
    async fn open_rows(&self, job: &FileJob) -> Result<Box<dyn RowSink>, SinkError> {
        Ok(Box::new(
            sink::WebhookSink::new(
                self.webhook.clone(),
                job.entry.version.clone(),
                job.entry.last_modified,
            )
            .replay(job.entry.replays),
        ))
    }

    async fn open_rejects(&self, job: &FileJob) -> Result<Box<dyn RejectSink>, SinkError> {
        self.rejects.open_rejects(job).await
    }
}
