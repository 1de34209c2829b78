//! The AWS-options group every AWS command shares: where to connect and which deployment to use.

use std::collections::HashMap;

use anyhow::{Context, Result};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use s3_importer_core::config::{vars, Config, ConfigError};
use s3_importer_core::sync::rules::SyncSettings;
use s3_importer_core::Limits;

use crate::exit::{exit, Status};

/// The variables naming the deployment's resources, each also an option.
const DEPLOYMENT_NAMES: [&str; 4] = [
    vars::STATE_TABLE,
    vars::QUEUE_URL,
    vars::RECORDS_TABLE,
    vars::OUTPUT_BUCKET,
];

/// What the deployment's configuration sets for a dry run (`connector preview`).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The sync window and the largest file imported.
    pub sync: SyncSettings,
    /// The reader limits (largest record, largest decompressed size).
    pub limits: Limits,
}

/// What a command says when no region is set anywhere.
pub const NO_REGION: &str =
    "no AWS region: set AWS_REGION or pass --region (or set `region` in the AWS profile)";

/// What `connector create` says when no region is set: its `--region` is the bucket's.
pub const NO_REGION_CREATE: &str =
    "no AWS region for the deployment: set AWS_REGION (or `region` in \
    the AWS profile); `connector create --region` names the bucket's region, not the deployment's";

/// A usage error saying `no_region` when `sdk` has no region: every AWS call would otherwise fail with the
/// SDK's "missing signing region" dispatch failure.
fn require_region(sdk: &SdkConfig, no_region: &str) -> Result<()> {
    if sdk.region().is_some_and(|r| !r.as_ref().trim().is_empty()) {
        return Ok(());
    }
    Err(exit(Status::Usage, no_region))
}

/// Reads the configuration from `env`; only a missing deployment name is reported as "not configured".
fn config_from(env: &HashMap<String, String>) -> Result<Config> {
    Config::from_map(env).map_err(|e| match e {
        ConfigError::Missing { .. } => anyhow::Error::new(e).context(
            "the deployment is not configured: pass --state-table, --queue-url, --records-table and \
             --output-bucket (or set S3I_STATE_TABLE, S3I_QUEUE_URL, S3I_RECORDS_TABLE, S3I_OUTPUT_BUCKET; \
             `s3-importer local setup` prints them for the local emulator)",
        ),
        // The error names the variable and its value: it is the whole story.
        ConfigError::Invalid { .. } => anyhow::Error::new(e),
    })
}

/// AWS connection and deployment options. Each falls back to its environment variable.
#[derive(Debug, Clone, clap::Args)]
pub struct AwsArgs {
    /// AWS profile to use.
    #[arg(long, global = true, env = "AWS_PROFILE", help_heading = "AWS options")]
    pub profile: Option<String>,
    /// AWS region of the deployment.
    #[arg(long, global = true, env = "AWS_REGION", help_heading = "AWS options")]
    pub region: Option<String>,
    /// Send every AWS call to this endpoint (the local emulator, e.g. http://127.0.0.1:5000).
    #[arg(
        long,
        global = true,
        env = "AWS_ENDPOINT_URL",
        help_heading = "AWS options"
    )]
    pub endpoint_url: Option<String>,
    /// The deployment's state table.
    #[arg(long, global = true, env = vars::STATE_TABLE, help_heading = "Deployment")]
    pub state_table: Option<String>,
    /// The deployment's work queue URL.
    #[arg(long, global = true, env = vars::QUEUE_URL, help_heading = "Deployment")]
    pub queue_url: Option<String>,
    /// The deployment's notification queue URL (S3 events for connectors in `events` mode).
    #[arg(long, global = true, env = vars::NOTIFICATION_QUEUE_URL, help_heading = "Deployment")]
    pub notification_queue_url: Option<String>,
    /// The work queue's dead-letter queue URL (`connector redrive` sweeps it).
    #[arg(long, global = true, env = vars::DEAD_LETTER_QUEUE_URL, help_heading = "Deployment")]
    pub dead_letter_queue_url: Option<String>,
    /// The deployment's records table (default destination).
    #[arg(long, global = true, env = vars::RECORDS_TABLE, help_heading = "Deployment")]
    pub records_table: Option<String>,
    /// The deployment's output bucket (error reports, JSONL output).
    #[arg(long, global = true, env = vars::OUTPUT_BUCKET, help_heading = "Deployment")]
    pub output_bucket: Option<String>,
    /// Read the deployment's names (tables, queue, bucket, roles) from this CloudFormation stack's outputs;
    /// options given explicitly win.
    #[arg(long, global = true, env = "S3I_STACK", help_heading = "Deployment")]
    pub stack: Option<String>,
    /// The lister's execution role ARN: a principal of the source roles' trust policies.
    #[arg(
        long,
        global = true,
        env = "S3I_LISTER_ROLE_ARN",
        help_heading = "Deployment"
    )]
    pub lister_role_arn: Option<String>,
    /// The worker's execution role ARN: a principal of the source roles' trust policies.
    #[arg(
        long,
        global = true,
        env = "S3I_WORKER_ROLE_ARN",
        help_heading = "Deployment"
    )]
    pub worker_role_arn: Option<String>,
    /// The deployment's lister function: `connector verify`, `reauth`, `resume` and `sync` invoke it, so the
    /// checks run as the deployment's role (the trust policies' principal) instead of the operator.
    #[arg(
        long,
        global = true,
        env = "S3I_LISTER_FUNCTION",
        help_heading = "Deployment"
    )]
    pub lister_function: Option<String>,
    /// The prefix of source role names the deployment may assume [default: s3-importer-].
    #[arg(
        long,
        global = true,
        env = "S3I_SOURCE_ROLE_NAME_PREFIX",
        help_heading = "Deployment"
    )]
    pub role_name_prefix: Option<String>,
}

impl AwsArgs {
    /// The SDK configuration: the standard chain (profile, environment, SSO, IMDS), with these overrides.
    /// Without a region from any of them, a usage error (exit status 2) says where to set one, before any
    /// AWS call.
    pub async fn sdk_config(&self) -> Result<SdkConfig> {
        self.sdk_config_or(NO_REGION).await
    }

    /// [`AwsArgs::sdk_config`], saying `no_region` when there is no region.
    pub async fn sdk_config_or(&self, no_region: &str) -> Result<SdkConfig> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let sdk = loader.load().await;
        require_region(&sdk, no_region)?;
        Ok(sdk)
    }

    /// Fills the deployment options not given explicitly from the outputs of `--stack`, when it is set.
    pub async fn resolve_stack(&mut self, sdk: &SdkConfig) -> Result<()> {
        let Some(stack) = self.stack.clone() else {
            return Ok(());
        };
        let client = aws_sdk_cloudformation::Client::new(sdk);
        let outputs = s3_importer_aws::stack::read_outputs(&client, &stack).await?;
        for (field, value) in [
            (&mut self.state_table, outputs.state_table),
            (&mut self.queue_url, outputs.queue_url),
            (
                &mut self.notification_queue_url,
                outputs.notification_queue_url,
            ),
            (
                &mut self.dead_letter_queue_url,
                outputs.dead_letter_queue_url,
            ),
            (&mut self.records_table, outputs.records_table),
            (&mut self.output_bucket, outputs.output_bucket),
            (&mut self.lister_role_arn, outputs.lister_role_arn),
            (&mut self.worker_role_arn, outputs.worker_role_arn),
            (&mut self.lister_function, outputs.lister_function),
            (&mut self.role_name_prefix, outputs.source_role_name_prefix),
        ] {
            if field.is_none() {
                *field = value;
            }
        }
        Ok(())
    }

    /// The notification queue's ARN, from its URL (the deployment's region when the URL does not say).
    pub fn notification_queue_arn(&self, sdk: &SdkConfig) -> Option<String> {
        let url = self.notification_queue_url.as_deref()?;
        let region = sdk
            .region()
            .map(|r| r.as_ref().to_owned())
            .unwrap_or_default();
        s3_importer_aws::verify::notifications::queue_arn_from_url(url, &region)
    }

    /// The prefix of source role names.
    pub fn role_name_prefix(&self) -> &str {
        self.role_name_prefix
            .as_deref()
            .unwrap_or(s3_importer_core::policy::DEFAULT_ROLE_NAME_PREFIX)
    }

    /// The variables the configuration is read from: the process environment, overridden by these options.
    fn env(&self) -> HashMap<String, String> {
        let mut env: HashMap<String, String> = std::env::vars().collect();
        for (name, value) in [
            (vars::STATE_TABLE, &self.state_table),
            (vars::QUEUE_URL, &self.queue_url),
            (vars::NOTIFICATION_QUEUE_URL, &self.notification_queue_url),
            (vars::DEAD_LETTER_QUEUE_URL, &self.dead_letter_queue_url),
            (vars::RECORDS_TABLE, &self.records_table),
            (vars::OUTPUT_BUCKET, &self.output_bucket),
        ] {
            if let Some(v) = value {
                env.insert(name.to_owned(), v.clone());
            }
        }
        env
    }

    /// The deployment configuration: the process environment, overridden by these options. A malformed
    /// variable is an error naming it; a missing deployment name says how to configure the deployment.
    pub fn config(&self) -> Result<Config> {
        config_from(&self.env())
    }

    /// The settings of the configuration a dry run applies (the sync window, the size and record limits),
    /// read and checked like [`AwsArgs::config`] — a malformed variable is the same error — but without the
    /// deployment's queue, records table and output bucket, which a dry run does not use.
    pub fn settings(&self) -> Result<Settings> {
        let mut env = self.env();
        for name in DEPLOYMENT_NAMES {
            let unset = env.get(name).is_none_or(|v| v.trim().is_empty());
            if unset {
                env.insert(name.to_owned(), "(unused)".to_owned());
            }
        }
        let config = config_from(&env)?;
        Ok(Settings {
            sync: config.sync,
            limits: config.limits,
        })
    }

    /// Only the state table, for commands that need nothing else.
    pub fn state_table(&self) -> Result<String> {
        self.state_table.clone().context(
            "no state table: pass --stack or --state-table, or set S3I_STATE_TABLE (`s3-importer local setup` prints it \
             for the local emulator)",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> HashMap<String, String> {
        DEPLOYMENT_NAMES
            .iter()
            .map(|name| ((*name).to_owned(), "x".to_owned()))
            .collect()
    }

    #[test]
    fn a_malformed_variable_is_not_reported_as_a_missing_deployment() {
        let mut env = deployment();
        env.insert(vars::MAX_FILE_BYTES.to_owned(), "abc".to_owned());
        let message = config_from(&env).map(|_| ()).unwrap_err().to_string();
        assert!(
            message.starts_with("environment variable S3I_MAX_FILE_BYTES=\"abc\" is invalid"),
            "{message}"
        );
    }

    #[test]
    fn a_missing_deployment_name_says_how_to_configure_it() {
        let mut env = deployment();
        env.remove(vars::QUEUE_URL);
        let error = config_from(&env).map(|_| ()).unwrap_err();
        let message = crate::exit::message_of(&error);
        assert!(
            message.starts_with("the deployment is not configured")
                && message.contains("S3I_QUEUE_URL is not set"),
            "{message}"
        );
    }
}
