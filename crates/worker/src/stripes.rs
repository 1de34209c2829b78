//! Stripe connectors in the worker: the API key read when a file is opened (Secrets Manager, or an
//! environment variable for local use), never stored nor logged, and each account kept for [`KEY_TTL`]
//! with its per-process rate and concurrency limits, shared by the files that go to it. A rotated key is
//! used after at most that long, and for the next file after Stripe answered 401/403 to the cached one
//! (at open or mid-file: [`Stripe::key_refused`]).
//! Customer mappings are kept in the state table ([`s3_importer_stripe::DynamoCustomerIds`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use s3_importer_aws::secrets::{SecretError, Secrets};
use s3_importer_core::sink::{RowSink, SinkError};
use s3_importer_core::sync::ports::{Destination, FileJob};
use s3_importer_core::sync::{StripeConfig, WebhookSecret};
use s3_importer_stripe::{ApiKey, CustomerIds, Stripe, StripeDestination, StripeError};

/// How long an API key read from Secrets Manager is reused.
pub const KEY_TTL: Duration = Duration::from_secs(300);

/// Why a Stripe connector's API key could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    /// The secret could not be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The environment variable is not set.
    #[error("environment variable {var} is not set: it must hold the Stripe API key")]
    MissingVar {
        /// The variable.
        var: String,
    },
    /// The value is not a key (the message never quotes it).
    #[error("the Stripe API key in {from} is unusable: {source}")]
    Unusable {
        /// Where it came from.
        from: String,
        /// What is wrong.
        #[source]
        source: StripeError,
    },
}

impl ApiKeyError {
    /// Whether a later attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Secret(e) if e.is_retryable())
    }
}

/// The API key `source` names.
pub async fn api_key(source: &WebhookSecret, secrets: &Secrets) -> Result<ApiKey, ApiKeyError> {
    let value = match source {
        WebhookSecret::Secret { secret_id } => secrets.get(secret_id).await?.expose().to_owned(),
        WebhookSecret::Env { var } => {
            std::env::var(var).map_err(|_| ApiKeyError::MissingVar { var: var.clone() })?
        }
    };
    ApiKey::new(&value).map_err(|source_error| ApiKeyError::Unusable {
        from: source.to_string(),
        source: source_error,
    })
}

/// The Stripe accounts of a worker process, by configuration.
pub struct Stripes {
    rejects: Arc<dyn Destination>,
    secrets: Secrets,
    customers: Option<Arc<dyn CustomerIds>>,
    workers: u32,
    cache: Mutex<HashMap<StripeConfig, (Arc<Stripe>, Instant)>>,
}

impl Stripes {
    /// Accounts whose error reports go through `rejects`, keys read through `secrets`, customer mappings
    /// kept in `customers` (without one, a customers connector's files fail).
    pub fn new(
        rejects: Arc<dyn Destination>,
        secrets: Secrets,
        customers: Option<Arc<dyn CustomerIds>>,
    ) -> Self {
        Self {
            rejects,
            secrets,
            customers,
            workers: 1,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The same accounts in a deployment running up to `workers` worker processes at once: a connector that
    /// does not say how many may share its rate (`workers`) shares it among that many.
    pub fn with_workers(mut self, workers: u32) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// The row sink of `job`'s file, to the account `config` names.
    pub async fn open_rows(
        &self,
        config: &StripeConfig,
        job: &FileJob,
    ) -> Result<Box<dyn RowSink>, SinkError> {
        let stripe = self.stripe(config).await?;
        StripeDestination::new(stripe, self.rejects.clone())
            .open_rows(job)
            .await
    }

    /// Forgets the account of `config` (its key was refused: read it again for the next file).
    pub fn forget(&self, config: &StripeConfig) {
        self.lock().remove(config);
    }

    async fn stripe(&self, config: &StripeConfig) -> Result<Arc<Stripe>, SinkError> {
        if let Some((stripe, at)) = self.lock().get(config) {
            if at.elapsed() < KEY_TTL && !stripe.key_refused() {
                return Ok(stripe.clone());
            }
        }
        let context = "open the Stripe destination";
        let key = api_key(&config.key, &self.secrets).await.map_err(|e| {
            if e.is_retryable() {
                SinkError::transient(context, e)
            } else {
                SinkError::permanent(context, e)
            }
        })?;
        let customers = self.customers.clone().ok_or_else(|| {
            SinkError::permanent(
                context,
                "this worker has no state table for Stripe customer mappings",
            )
        })?;
        let shared = shared_by(config, self.workers);
        let stripe = Arc::new(
            Stripe::new(&shared, key, customers).map_err(|e| SinkError::permanent(context, e))?,
        );
        self.lock()
            .insert(config.clone(), (stripe.clone(), Instant::now()));
        Ok(stripe)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StripeConfig, (Arc<Stripe>, Instant)>> {
        // The map holds no invariant a panic could break.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `config` with the worker processes sharing its rate: its own `workers`, or the deployment's.
pub fn shared_by(config: &StripeConfig, deployment_workers: u32) -> StripeConfig {
    StripeConfig {
        workers: Some(config.workers.unwrap_or(deployment_workers).max(1)),
        ..config.clone()
    }
}

#[cfg(test)]
mod tests {
    use s3_importer_core::sync::{StripeObject, WebhookSecret};
    use s3_importer_stripe::process_rate;

    use super::*;

    #[test]
    fn the_rate_is_shared_by_the_deployments_workers_unless_the_connector_says_otherwise() {
        let config = StripeConfig {
            object: StripeObject::MeterEvents,
            key: WebhookSecret::Env { var: "K".into() },
            base_url: None,
            rate_per_second: None,
            workers: None,
            concurrency: None,
            timeout_seconds: None,
        };
        let live = ApiKey::new("sk_live_x").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(process_rate(&shared_by(&config, 10), &live), 10);
        assert_eq!(process_rate(&shared_by(&config, 1), &live), 100);
        let own = StripeConfig {
            workers: Some(2),
            ..config
        };
        assert_eq!(process_rate(&shared_by(&own, 10), &live), 50);
    }
}
