//! The webhook destination in the CLI: `--destination https://…` with its signing secret and limits, the
//! SSRF guard applied when the connector is created or changed, and the signed probe of `connector verify`.

use anyhow::Result;
use s3_importer_aws::secrets::Secrets;
use s3_importer_aws::verify::Check;
use s3_importer_core::sync::{
    Connector, DestinationConfig, WebhookConfig, WebhookOnReject, WebhookSecret,
};
use s3_importer_webhook::{Target, Webhook, WebhookError};
use s3_importer_worker::webhooks::signing_secret;

use crate::exit::{exit, Status};

/// A webhook destination's secret and limits.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct WebhookArgs {
    /// With `--destination https://…`: the Secrets Manager secret (name or ARN) whose string value signs
    /// the requests (HMAC-SHA256).
    #[arg(long, conflicts_with = "webhook_secret_env")]
    pub webhook_secret: Option<String>,
    /// With `--destination http(s)://…`: an environment variable holding the signing secret, for local use
    /// (the worker reads the same variable).
    #[arg(long)]
    pub webhook_secret_env: Option<String>,
    /// Allow a webhook on private, loopback or link-local addresses, and plain http: local development and
    /// tests only.
    #[arg(long)]
    pub webhook_allow_private: bool,
    /// Requests per second at most, per worker (default 10).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub webhook_rate: Option<u32>,
    /// Requests in flight at most, per worker (default 4).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub webhook_concurrency: Option<u32>,
    /// Rows per request at most (default 500).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub webhook_batch_rows: Option<u32>,
    /// Body bytes per request at most (default 1048576).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1024..=67_108_864))]
    pub webhook_batch_bytes: Option<u32>,
    /// Seconds a request may take (default 10).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=60))]
    pub webhook_timeout: Option<u32>,
    /// What a 4xx answer does: `report` the batch's rows in the error report (default), or `fail` the file.
    #[arg(long, value_enum)]
    pub webhook_on_reject: Option<OnReject>,
}

/// `--webhook-on-reject`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnReject {
    /// The rows go to the error report.
    Report,
    /// The file fails.
    Fail,
}

impl WebhookArgs {
    /// Whether any webhook option was given.
    pub fn any(&self) -> bool {
        self.webhook_secret.is_some()
            || self.webhook_secret_env.is_some()
            || self.webhook_allow_private
            || self.webhook_rate.is_some()
            || self.webhook_concurrency.is_some()
            || self.webhook_batch_rows.is_some()
            || self.webhook_batch_bytes.is_some()
            || self.webhook_timeout.is_some()
            || self.webhook_on_reject.is_some()
    }
}

/// The destination `url` with the secret and limits the arguments name. The URL is checked here (scheme,
/// IP literals); [`check_target`] resolves its host.
pub fn destination(url: &str, args: &WebhookArgs) -> Result<DestinationConfig> {
    Target::parse(url, args.webhook_allow_private)
        .map_err(|e| exit(Status::Usage, e.to_string()))?;
    let secret = match (&args.webhook_secret, &args.webhook_secret_env) {
        (Some(secret_id), None) => WebhookSecret::Secret {
            secret_id: secret_id.clone(),
        },
        (None, Some(var)) => WebhookSecret::Env { var: var.clone() },
        _ => {
            return Err(exit(
                Status::Usage,
                "a webhook destination needs --webhook-secret NAME_OR_ARN (or, locally, --webhook-secret-env VAR)",
            ))
        }
    };
    Ok(DestinationConfig::Webhook(WebhookConfig {
        url: url.to_owned(),
        secret,
        allow_private: args.webhook_allow_private,
        rate_per_second: args.webhook_rate,
        concurrency: args.webhook_concurrency,
        batch_rows: args.webhook_batch_rows,
        batch_bytes: args.webhook_batch_bytes,
        timeout_seconds: args.webhook_timeout,
        on_reject: match args.webhook_on_reject {
            Some(OnReject::Fail) => WebhookOnReject::Fail,
            _ => WebhookOnReject::Report,
        },
    }))
}

/// Resolves a webhook destination's host from here and refuses it when an address is one the SSRF guard
/// refuses (a name pointing at the metadata service or inside the network). A name that does not resolve
/// from here is accepted with a warning (the worker may see other DNS).
pub async fn check_target(destination: &DestinationConfig) -> Result<()> {
    let DestinationConfig::Webhook(config) = destination else {
        return Ok(());
    };
    let target = Target::parse(&config.url, config.allow_private)
        .map_err(|e| exit(Status::Usage, e.to_string()))?;
    match target.resolve().await {
        Ok(_) => Ok(()),
        Err(e @ WebhookError::Forbidden { .. }) => Err(exit(Status::Usage, e.to_string())),
        Err(e) => {
            eprintln!("warning: {e} (checked again by the worker before every request)");
            Ok(())
        }
    }
}

/// The `webhook` check of `connector verify`: the receiver reached, and answering 2xx to a signed probe.
/// `None` for other destinations.
pub async fn check_webhook(sdk: &aws_config::SdkConfig, connector: &Connector) -> Option<Check> {
    let DestinationConfig::Webhook(config) = &connector.destination else {
        return None;
    };
    let fix =
        "check the URL and that the receiver verifies signatures with the same secret (see the \
               README's Webhook section for the probe it must accept)";
    let secrets = Secrets::new(s3_importer_aws::config::secretsmanager_client(sdk));
    let secret = match signing_secret(&config.secret, &secrets).await {
        Ok(s) => s,
        Err(e) => return Some(Check::fail("webhook", "secret", e.to_string(), fix)),
    };
    let webhook = match Webhook::new(config, secret) {
        Ok(w) => w,
        Err(e) => return Some(Check::fail("webhook", "url", e.to_string(), fix)),
    };
    Some(match webhook.probe(&connector.id).await {
        Ok(status) => Check::pass(
            "webhook",
            format!("{} answered {status} to a signed probe", webhook.url()),
        ),
        Err(e) => Check::fail(
            "webhook",
            "receiver",
            format!("{}: {e}", webhook.url()),
            fix,
        ),
    })
}
