//! The Stripe destination in the CLI: `--destination stripe:OBJECT` (products, customers, prices,
//! meter_events) with where the API key is read and the client's limits, and the read call of
//! `connector verify` that checks the key and its permission for the object.

use anyhow::Result;
use s3_importer_aws::secrets::Secrets;
use s3_importer_aws::verify::Check;
use s3_importer_core::sync::{
    Connector, DestinationConfig, StripeConfig, StripeObject, WebhookSecret,
};
use s3_importer_core::template::Template;
use s3_importer_stripe::{MemoryCustomerIds, Stripe};
use s3_importer_worker::stripes::api_key;

use crate::exit::{exit, Status};

/// A Stripe destination's key and limits.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct StripeArgs {
    /// With `--destination stripe:OBJECT`: the Secrets Manager secret (name or ARN) whose string value is
    /// the API key (a restricted key `rk_…` is recommended: see the README's "Stripe" for its permissions).
    #[arg(long, conflicts_with = "stripe_key_env")]
    pub stripe_secret: Option<String>,
    /// With `--destination stripe:OBJECT`: an environment variable holding the API key, for local use (the
    /// worker reads the same variable).
    #[arg(long)]
    pub stripe_key_env: Option<String>,
    /// The API's base URL (default `https://api.stripe.com`); `http://127.0.0.1:PORT` for a local fake server.
    #[arg(long)]
    pub stripe_base_url: Option<String>,
    /// Requests per second at most for the connector (default 25 with a test key, 100 with a live key).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub stripe_rate: Option<u32>,
    /// Worker processes that may import the connector's files at once: each keeps to rate / workers
    /// (default: the deployment's worker concurrency, `S3I_WORKER_CONCURRENCY`).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000))]
    pub stripe_workers: Option<u32>,
    /// Requests in flight at most, per worker (default 4).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub stripe_concurrency: Option<u32>,
    /// Seconds a request may take (default 20).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=80))]
    pub stripe_timeout: Option<u32>,
}

impl StripeArgs {
    /// Whether any Stripe option was given.
    pub fn any(&self) -> bool {
        self.stripe_secret.is_some()
            || self.stripe_key_env.is_some()
            || self.stripe_base_url.is_some()
            || self.stripe_rate.is_some()
            || self.stripe_workers.is_some()
            || self.stripe_concurrency.is_some()
            || self.stripe_timeout.is_some()
    }
}

/// The destination `stripe:OBJECT` with the key source and limits the arguments name.
pub fn destination(object: &str, args: &StripeArgs) -> Result<DestinationConfig> {
    let names = StripeObject::ALL.map(StripeObject::name).join(", ");
    let object = StripeObject::parse(object).ok_or_else(|| {
        exit(
            Status::Usage,
            format!("--destination stripe:OBJECT takes one of {names}, e.g. stripe:products"),
        )
    })?;
    let key = match (&args.stripe_secret, &args.stripe_key_env) {
        (Some(secret_id), None) => WebhookSecret::Secret {
            secret_id: secret_id.clone(),
        },
        (None, Some(var)) => WebhookSecret::Env { var: var.clone() },
        _ => {
            return Err(exit(
                Status::Usage,
                "a Stripe destination needs --stripe-secret NAME_OR_ARN (or, locally, --stripe-key-env VAR)",
            ))
        }
    };
    if let Some(url) = &args.stripe_base_url {
        if url::Url::parse(url).is_err() {
            return Err(exit(
                Status::Usage,
                format!("--stripe-base-url {url:?} is not a URL"),
            ));
        }
    }
    Ok(DestinationConfig::Stripe(StripeConfig {
        object,
        key,
        base_url: args.stripe_base_url.clone(),
        rate_per_second: args.stripe_rate,
        workers: args.stripe_workers,
        concurrency: args.stripe_concurrency,
        timeout_seconds: args.stripe_timeout,
    }))
}

/// Refuses a Stripe destination whose template lacks a field every row of its object needs (each row would
/// only be refused): names the missing fields and the built-in template to start from.
pub fn check_template(destination: &DestinationConfig, template: &Template) -> Result<()> {
    let DestinationConfig::Stripe(config) = destination else {
        return Ok(());
    };
    let missing: Vec<&str> = config
        .object
        .required_fields()
        .iter()
        .copied()
        .filter(|name| !template.fields.iter().any(|f| f.name == *name))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(exit(
        Status::Usage,
        format!(
            "template {} has no field {}, which every stripe:{} row needs: start from \
             examples/templates/stripe/{}.toml",
            template.name,
            missing.join(", "),
            config.object.name(),
            config.object.template_name()
        ),
    ))
}

/// The `stripe` check of `connector verify`: the key read and accepted by one read call the object needs
/// (`GET /v1/products?limit=1`…). `None` for other destinations.
pub async fn check_stripe(sdk: &aws_config::SdkConfig, connector: &Connector) -> Option<Check> {
    let DestinationConfig::Stripe(config) = &connector.destination else {
        return None;
    };
    let fix = "give the key read and write permission on the object (the README's \"Stripe\" lists them), \
               or store a new key in the secret";
    let secrets = Secrets::new(s3_importer_aws::config::secretsmanager_client(sdk));
    let key = match api_key(&config.key, &secrets).await {
        Ok(k) => k,
        Err(e) => return Some(Check::fail("stripe", "key", e.to_string(), fix)),
    };
    // The read call needs no customer mapping.
    let stripe = match Stripe::new(config, key, std::sync::Arc::new(MemoryCustomerIds::new())) {
        Ok(s) => s,
        Err(e) => return Some(Check::fail("stripe", "config", e.to_string(), fix)),
    };
    Some(match stripe.verify().await {
        Ok(()) => Check::pass(
            "stripe",
            format!(
                "the key reads {} ({} requests/s per worker)",
                config.object.name(),
                stripe.rate()
            ),
        ),
        Err(e) => Check::fail("stripe", "key", format!("{e}: {}", e.source), fix),
    })
}
