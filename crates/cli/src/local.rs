//! `s3-importer local …`: the deployment's resources on a local AWS emulator (moto), for the demo and for
//! trying things out. Nothing here is needed on AWS, where `template.yaml` creates the resources.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use aws_config::SdkConfig;
use s3_importer_aws::provision::{self, Names};
use s3_importer_core::policy;

use crate::aws_args::AwsArgs;

/// `local` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum LocalCommand {
    /// Create the state table, records table, queue + DLQ and output bucket; print their settings as
    /// `export` lines (use with `eval`).
    Setup {
        /// Prefix of every resource name.
        #[arg(long, default_value = "s3i-local")]
        prefix: String,
        /// Visibility timeout of the work queue, in seconds.
        #[arg(long, default_value_t = 60)]
        visibility_timeout: u32,
    },
    /// Create a bucket (for sample source data).
    CreateBucket {
        /// Bucket name.
        bucket: String,
    },
    /// Upload every file of a directory to `s3://BUCKET/PREFIX<file name>`.
    Upload {
        /// Directory.
        dir: PathBuf,
        /// Bucket.
        #[arg(long)]
        bucket: String,
        /// Key prefix (e.g. `incoming/`).
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Count the records a connector has in the records table.
    CountRecords {
        /// Connector name.
        connector: String,
    },
}

/// Runs a `local` subcommand.
pub async fn run(aws: &AwsArgs, sdk: &SdkConfig, command: LocalCommand) -> Result<()> {
    if aws.endpoint_url.is_none() {
        bail!("`local` commands talk to a local emulator: pass --endpoint-url or set AWS_ENDPOINT_URL");
    }
    match command {
        LocalCommand::Setup {
            prefix,
            visibility_timeout,
        } => {
            let names = Names::with_prefix(&prefix);
            let p = provision::provision(sdk, &names, visibility_timeout, 5).await?;
            outln!("export S3I_STATE_TABLE={}", p.names.state_table);
            outln!("export S3I_RECORDS_TABLE={}", p.names.records_table);
            outln!("export S3I_QUEUE_URL={}", p.queue_url);
            outln!(
                "export S3I_NOTIFICATION_QUEUE_URL={}",
                p.notification_queue_url
            );
            outln!("export S3I_OUTPUT_BUCKET={}", p.names.output_bucket);
            // `connector redrive` and `run` sweep it: dead-lettered files end `failed`.
            outln!(
                "export S3I_DEAD_LETTER_QUEUE_URL={}",
                p.dead_letter_queue_url
            );
            outln!("export S3I_MAX_RECEIVES=5");
        }
        LocalCommand::CreateBucket { bucket } => {
            // The rules `connector create --bucket` applies: a bucket made here can be a connector's source.
            policy::validate_bucket_name(&bucket)?;
            provision::create_bucket(sdk, &bucket).await?;
            outln!("created s3://{bucket}");
        }
        LocalCommand::Upload {
            dir,
            bucket,
            prefix,
        } => {
            let s3 = s3_importer_aws::s3_client(sdk);
            let mut entries: Vec<_> = std::fs::read_dir(&dir)
                .with_context(|| format!("cannot read {}", dir.display()))?
                .collect::<Result<Vec<_>, _>>()?;
            entries.sort_by_key(|e| e.file_name());
            for entry in entries {
                if !entry.file_type()?.is_file() {
                    continue;
                }
                let key = format!("{prefix}{}", entry.file_name().to_string_lossy());
                let body = aws_sdk_s3::primitives::ByteStream::from_path(entry.path())
                    .await
                    .with_context(|| format!("cannot read {}", entry.path().display()))?;
                s3.put_object()
                    .bucket(&bucket)
                    .key(&key)
                    .body(body)
                    .send()
                    .await
                    .with_context(|| format!("cannot upload s3://{bucket}/{key}"))?;
                outln!("uploaded s3://{bucket}/{key}");
            }
        }
        LocalCommand::CountRecords { connector } => {
            let config = aws.config()?;
            let state = crate::state(sdk, &config.state_table);
            let c = crate::connector::find(state.as_ref(), &connector).await?;
            let table = match &c.destination {
                s3_importer_core::sync::DestinationConfig::Dynamodb { table } => table.clone(),
                other => bail!("connector {connector} writes to {other:?}, not a DynamoDB table"),
            };
            let n = provision::count_records(
                &s3_importer_aws::config::dynamodb_client(sdk),
                &table,
                &c.id,
            )
            .await?;
            outln!("{n}");
        }
    }
    Ok(())
}
