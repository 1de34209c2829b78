//! Webhook connectors in the worker: the signing secret read when a file is opened (Secrets Manager, or an
//! environment variable for local use), never stored nor logged, and each webhook kept for
//! [`SECRET_TTL`] with its per-process concurrency and rate limits, shared by the files that go to it. A
//! rotated secret is used after at most that long.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use s3_importer_aws::secrets::{SecretError, Secrets};
use s3_importer_core::sink::{RowSink, SinkError};
use s3_importer_core::sync::ports::{Destination, FileJob};
use s3_importer_core::sync::{WebhookConfig, WebhookSecret};
use s3_importer_webhook::{SigningSecret, Webhook, WebhookDestination};

/// How long a signing secret read from Secrets Manager is reused.
pub const SECRET_TTL: Duration = Duration::from_secs(300);

/// Why a webhook's signing secret could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SigningSecretError {
    /// The secret could not be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The environment variable is not set.
    #[error("environment variable {var} is not set: it must hold the webhook's signing secret")]
    MissingVar {
        /// The variable.
        var: String,
    },
    /// The value is empty.
    #[error("the signing secret in {from} is empty")]
    Empty {
        /// Where it came from.
        from: String,
    },
}

impl SigningSecretError {
    /// Whether a later attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Secret(e) if e.is_retryable())
    }
}

/// The signing secret `secret` names.
pub async fn signing_secret(
    secret: &WebhookSecret,
    secrets: &Secrets,
) -> Result<SigningSecret, SigningSecretError> {
    let value = match secret {
        WebhookSecret::Secret { secret_id } => secrets.get(secret_id).await?.expose().to_owned(),
        WebhookSecret::Env { var } => {
            std::env::var(var).map_err(|_| SigningSecretError::MissingVar { var: var.clone() })?
        }
    };
    if value.is_empty() {
        return Err(SigningSecretError::Empty {
            from: secret.to_string(),
        });
    }
    Ok(SigningSecret::new(value.as_bytes()))
}

/// The webhooks of a worker process, by configuration.
pub struct Webhooks {
    rejects: Arc<dyn Destination>,
    secrets: Secrets,
    cache: Mutex<HashMap<WebhookConfig, (Arc<Webhook>, Instant)>>,
}

impl Webhooks {
    /// Webhooks whose error reports go through `rejects`, secrets read through `secrets`.
    pub fn new(rejects: Arc<dyn Destination>, secrets: Secrets) -> Self {
        Self {
            rejects,
            secrets,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The row sink of `job`'s file, to the webhook `config` names. A bad or forbidden URL fails the file.
    pub async fn open_rows(
        &self,
        config: &WebhookConfig,
        job: &FileJob,
    ) -> Result<Box<dyn RowSink>, SinkError> {
        let webhook = self.webhook(config).await?;
        WebhookDestination::new(webhook, self.rejects.clone())
            .open_rows(job)
            .await
    }

    async fn webhook(&self, config: &WebhookConfig) -> Result<Arc<Webhook>, SinkError> {
        if let Some((webhook, at)) = self.lock().get(config) {
            if at.elapsed() < SECRET_TTL {
                return Ok(webhook.clone());
            }
        }
        let context = "open the webhook destination";
        let secret = signing_secret(&config.secret, &self.secrets)
            .await
            .map_err(|e| {
                if e.is_retryable() {
                    SinkError::transient(context, e)
                } else {
                    SinkError::permanent(context, e)
                }
            })?;
        let webhook =
            Arc::new(Webhook::new(config, secret).map_err(|e| SinkError::permanent(context, e))?);
        self.lock()
            .insert(config.clone(), (webhook.clone(), Instant::now()));
        Ok(webhook)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<WebhookConfig, (Arc<Webhook>, Instant)>> {
        // The map holds no invariant a panic could break.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
