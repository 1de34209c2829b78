//! The Stripe destination: each row of a file becomes one Stripe object — a product, a customer, a price or
//! a billing meter event — through the Stripe API (see the README's "Stripe").
//!
//! - [`form`]: request bodies (form encoding with `metadata[k]`, `payload[k]`);
//! - [`api`]: one call, with the key, the pinned version, idempotency keys, the rate limiter and retries;
//! - [`keys`]: idempotency keys and meter event identifiers derived from (connector, file version, record);
//! - [`customers`]: the external key → customer id mapping, kept in the state table;
//! - [`objects`]: what a row of each kind becomes, and how it is upserted;
//! - [`sink`]: the row sink, refusing rows Stripe refuses into the error report.
//!
//! The HTTP client, the rate limiter and the retry policy are the webhook destination's
//! (`s3_importer_webhook::{Client, Throttle, RetryPolicy}`).

pub mod api;
pub mod customers;
pub mod error;
pub mod form;
pub mod keys;
pub mod objects;
pub mod sink;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use s3_importer_core::sink::{RejectSink, RowSink, SinkError};
use s3_importer_core::sync::ports::{Destination, FileJob};
use s3_importer_core::sync::{StripeConfig, StripeObject};
use s3_importer_webhook::{Client, RetryPolicy, Target, Throttle};

pub use crate::api::{Reply, API_VERSION};
pub use crate::customers::{CustomerIds, DynamoCustomerIds, Mapping, MemoryCustomerIds};
pub use crate::error::{Refusal, StripeError};

/// Stripe's API.
pub const DEFAULT_BASE_URL: &str = "https://api.stripe.com";
/// Requests per second by default with a test key (`sk_test_`, `rk_test_`): Stripe's test-mode limit.
pub const TEST_RATE: u32 = 25;
/// Requests per second by default with a live key: Stripe's live-mode limit.
pub const LIVE_RATE: u32 = 100;
/// Requests in flight by default, per worker process.
pub const DEFAULT_CONCURRENCY: u32 = 4;
/// Seconds a request may take by default.
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 20;
/// Bytes of an answer read at most (a list of 100 objects fits).
pub const READ_LIMIT: usize = 4 << 20;

/// A secret API key: never printed (its `Debug` shows only the mode).
#[derive(Clone)]
pub struct ApiKey(String);

impl ApiKey {
    /// The key `value` (surrounding whitespace dropped).
    pub fn new(value: &str) -> Result<Self, StripeError> {
        let value = value.trim();
        if value.is_empty() || value.chars().any(|c| c.is_control() || c == ' ') {
            return Err(StripeError::Config(
                "the API key is empty or not a single token".into(),
            ));
        }
        Ok(Self(value.to_owned()))
    }

    /// Whether this is a test-mode key (`sk_test_…`, `rk_test_…`).
    pub fn is_test(&self) -> bool {
        self.0.starts_with("sk_test_") || self.0.starts_with("rk_test_")
    }

    /// The key, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mode = if self.is_test() { "test" } else { "live" };
        write!(f, "ApiKey({mode}, redacted)")
    }
}

/// The rate one worker process keeps to: the configured (or key mode's) rate divided by the workers.
pub fn process_rate(config: &StripeConfig, key: &ApiKey) -> u32 {
    let total = config
        .rate_per_second
        .unwrap_or(if key.is_test() { TEST_RATE } else { LIVE_RATE });
    (total / config.workers.unwrap_or(1).max(1)).max(1)
}

/// One Stripe account, ready to call: client, key, limits and policy. Shared by the files of a worker
/// process that go to it (the limits are per process).
#[derive(Debug)]
pub struct Stripe {
    client: Client,
    base_path: String,
    key: ApiKey,
    throttle: Throttle,
    policy: RetryPolicy,
    object: StripeObject,
    concurrency: usize,
    rate: u32,
    customers: Arc<dyn CustomerIds>,
    /// Stripe answered 401/403 to this key: whoever caches the account reads the key again.
    key_refused: AtomicBool,
}

impl Stripe {
    /// The account `config` names, called with `key`; customer mappings kept in `customers`. Refuses a bad
    /// base URL (plain http and private addresses only for a base URL on loopback, a local fake server).
    pub fn new(
        config: &StripeConfig,
        key: ApiKey,
        customers: Arc<dyn CustomerIds>,
    ) -> Result<Self, StripeError> {
        let base = config.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL);
        let local = url::Url::parse(base)
            .ok()
            .and_then(|u| {
                u.host_str()
                    .map(|h| h == "localhost" || h == "127.0.0.1" || h == "[::1]")
            })
            .unwrap_or(false);
        let target = Target::parse(base, local).map_err(|e| StripeError::Config(e.to_string()))?;
        let timeout = config
            .timeout_seconds
            .unwrap_or(DEFAULT_TIMEOUT_SECONDS)
            .max(1);
        let concurrency = config.concurrency.unwrap_or(DEFAULT_CONCURRENCY).max(1);
        let rate = process_rate(config, &key);
        Ok(Self {
            base_path: target.path_and_query.trim_end_matches('/').to_owned(),
            client: Client::new(target, Duration::from_secs(u64::from(timeout)))
                .with_read_limit(READ_LIMIT),
            key,
            throttle: Throttle::new(rate, concurrency),
            policy: RetryPolicy::default(),
            object: config.object,
            concurrency: concurrency as usize,
            rate,
            customers,
            key_refused: AtomicBool::new(false),
        })
    }

    /// The same account retrying by `policy` (tests shorten it).
    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The object kind rows become.
    pub fn object(&self) -> StripeObject {
        self.object
    }

    /// Requests per second this process keeps to.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Whether Stripe has refused this account's key (401/403): a cache of accounts drops it then, so a
    /// rotated key is read again for the next file instead of after the cache's lifetime.
    pub fn key_refused(&self) -> bool {
        self.key_refused.load(Ordering::Relaxed)
    }

    pub(crate) fn refuse_key(&self) {
        self.key_refused.store(true, Ordering::Relaxed);
    }

    /// `connector verify`'s check: one read call the kind's rows need permission for (`GET /v1/products`,
    /// `/v1/customers`, `/v1/prices` or `/v1/billing/meters`, `limit=1`). `Ok` when Stripe answered 2xx;
    /// a 401/403 is the key revoked or lacking the permission.
    pub async fn verify(&self) -> Result<(), SinkError> {
        let path = match self.object {
            StripeObject::Products => "/v1/products?limit=1",
            StripeObject::Customers => "/v1/customers?limit=1",
            StripeObject::Prices => "/v1/prices?limit=1",
            StripeObject::MeterEvents => "/v1/billing/meters?limit=1",
        };
        match self.get(path).await? {
            Reply::Object(_) => Ok(()),
            Reply::Missing => Err(SinkError::permanent(
                format!("Stripe GET {path}"),
                StripeError::Config("the API answered 404: is the base URL Stripe's?".into()),
            )),
            Reply::Refused(r) => Err(SinkError::permanent(
                format!("Stripe GET {path}"),
                StripeError::Answered(r),
            )),
        }
    }
}

/// The Stripe destination: rows to Stripe, error reports through `rejects` (the output bucket).
pub struct StripeDestination {
    stripe: Arc<Stripe>,
    rejects: Arc<dyn Destination>,
}

impl StripeDestination {
    /// Rows to `stripe`, error reports through `rejects`.
    pub fn new(stripe: Arc<Stripe>, rejects: Arc<dyn Destination>) -> Self {
        Self { stripe, rejects }
    }
}

#[async_trait]
impl Destination for StripeDestination {
    async fn open_rows(&self, job: &FileJob) -> Result<Box<dyn RowSink>, SinkError> {
        Ok(Box::new(sink::StripeSink::new(
            self.stripe.clone(),
            job.entry.version.clone(),
            job.entry.last_modified,
        )))
    }

    async fn open_rejects(&self, job: &FileJob) -> Result<Box<dyn RejectSink>, SinkError> {
        self.rejects.open_rejects(job).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3_importer_core::sync::WebhookSecret;
    use s3_importer_core::template::Template;

    /// The built-in templates, and the fields the sink reads from each (a rename on either side fails here).
    #[test]
    fn the_built_in_templates_load_and_name_the_fields_the_sink_reads() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/templates/stripe"
        );
        for (file, fields) in [
            (
                "stripe-products.toml",
                &[
                    "id",
                    "name",
                    "description",
                    "active",
                    "default_price_unit_amount",
                ][..],
            ),
            (
                "stripe-customers.toml",
                &["external_key", "email", "address_postal_code"][..],
            ),
            (
                "stripe-prices.toml",
                &[
                    "lookup_key",
                    "product",
                    "unit_amount",
                    "currency",
                    "recurring_interval",
                ][..],
            ),
            (
                "stripe-meter-events.toml",
                &[
                    "identifier",
                    "timestamp",
                    "event_name",
                    "payload_stripe_customer_id",
                    "payload_value",
                ][..],
            ),
        ] {
            let text = std::fs::read_to_string(format!("{dir}/{file}"))
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            let template = Template::from_toml(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert_eq!(format!("{}.toml", template.name), file);
            for field in fields {
                assert!(
                    template.fields.iter().any(|f| f.name == *field),
                    "{file} has no field {field}"
                );
            }
        }
    }

    fn config(rate: Option<u32>, workers: Option<u32>) -> StripeConfig {
        StripeConfig {
            object: StripeObject::Products,
            key: WebhookSecret::Env { var: "K".into() },
            base_url: None,
            rate_per_second: rate,
            workers,
            concurrency: None,
            timeout_seconds: None,
        }
    }

    #[test]
    fn the_rate_follows_the_key_mode_and_is_shared_by_the_workers() {
        let test = ApiKey::new("sk_test_abc").unwrap_or_else(|e| panic!("{e}"));
        let restricted = ApiKey::new("rk_test_abc").unwrap_or_else(|e| panic!("{e}"));
        let live = ApiKey::new("sk_live_abc").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(process_rate(&config(None, None), &test), 25);
        assert_eq!(process_rate(&config(None, None), &restricted), 25);
        assert_eq!(process_rate(&config(None, None), &live), 100);
        assert_eq!(process_rate(&config(None, Some(4)), &live), 25);
        assert_eq!(process_rate(&config(Some(10), Some(20)), &live), 1);
        assert_eq!(format!("{live:?}"), "ApiKey(live, redacted)");
        assert!(ApiKey::new(" ").is_err());
    }
}
