//! The AWS-options group every AWS command shares: where to connect and which deployment to use.

use std::collections::HashMap;

use anyhow::{Context, Result};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use s3_importer_core::config::{vars, Config};

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
    pub async fn sdk_config(&self) -> SdkConfig {
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
        loader.load().await
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

    /// The prefix of source role names.
    pub fn role_name_prefix(&self) -> &str {
        self.role_name_prefix
            .as_deref()
            .unwrap_or(s3_importer_core::policy::DEFAULT_ROLE_NAME_PREFIX)
    }

    /// The deployment configuration: the process environment, overridden by these options.
    pub fn config(&self) -> Result<Config> {
        let mut env: HashMap<String, String> = std::env::vars().collect();
        for (name, value) in [
            (vars::STATE_TABLE, &self.state_table),
            (vars::QUEUE_URL, &self.queue_url),
            (vars::RECORDS_TABLE, &self.records_table),
            (vars::OUTPUT_BUCKET, &self.output_bucket),
        ] {
            if let Some(v) = value {
                env.insert(name.to_owned(), v.clone());
            }
        }
        Config::from_map(&env).context(
            "the deployment is not configured: pass --state-table, --queue-url, --records-table and \
             --output-bucket (or set S3I_STATE_TABLE, S3I_QUEUE_URL, S3I_RECORDS_TABLE, S3I_OUTPUT_BUCKET; \
             `s3-importer local setup` prints them for the local emulator)",
        )
    }

    /// Only the state table, for commands that need nothing else.
    pub fn state_table(&self) -> Result<String> {
        self.state_table.clone().context(
            "no state table: pass --stack or --state-table, or set S3I_STATE_TABLE (`s3-importer local setup` prints it \
             for the local emulator)",
        )
    }
}
