//! `connector create`: a new connector, and the IAM policies of the role to create for it.

use std::process::ExitCode;

use anyhow::Result;
use chrono::Utc;
use s3_importer_aws::verify::CheckStatus;
use s3_importer_core::policy;
use s3_importer_core::sync::ports::StateStore;
use s3_importer_core::sync::{Connector, ConnectorStatus, DestinationConfig, Discovery, Source};
use serde_json::json;

use super::policies::{policies, policies_json, print_policies};
use super::postgres::{self, PostgresArgs};
use super::require_template;
use super::stripe::{self, StripeArgs};
use super::webhook::{self, WebhookArgs};
use crate::aws_args::AwsArgs;
use crate::exit::{exit, Status};

/// Arguments of `connector create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// A unique name (letters, digits, `.`, `_`, `-`); it also names the source role.
    #[arg(long)]
    name: String,
    /// The 12-digit AWS account that owns the bucket.
    #[arg(long)]
    account_id: String,
    /// The source bucket.
    #[arg(long)]
    bucket: String,
    /// The bucket's region. (Here `--region` is the bucket's; the deployment's region comes from
    /// AWS_REGION or the profile.)
    #[arg(long)]
    region: String,
    /// Only import files under this folder (key prefix).
    #[arg(long)]
    folder: Option<String>,
    /// The stored template's id (`s3-importer template list`).
    #[arg(long)]
    template: String,
    /// Pin a template version (default: the latest at import time).
    #[arg(long)]
    template_version: Option<u32>,
    /// The role to assume in the bucket's account (default: none, the deployment's own credentials).
    #[arg(long)]
    role_arn: Option<String>,
    /// The KMS key the files are encrypted with (adds kms:Decrypt to the printed policy).
    #[arg(long)]
    kms_key_arn: Option<String>,
    /// `dynamodb` (the deployment's records table, default), `dynamodb:TABLE`, `s3` / `s3:BUCKET/PREFIX`,
    /// `postgres:[SCHEMA.]TABLE` (with --postgres-secret or --postgres-url-env), or a webhook `https://…`
    /// (with --webhook-secret or --webhook-secret-env), or `stripe:OBJECT` (products, customers, prices,
    /// meter_events; with --stripe-secret or --stripe-key-env).
    #[arg(long, default_value = "dynamodb")]
    destination: String,
    /// A PostgreSQL destination's connection and table.
    #[command(flatten)]
    postgres: PostgresArgs,
    /// A webhook destination's secret and limits.
    #[command(flatten)]
    webhook: WebhookArgs,
    /// A Stripe destination's key and limits.
    #[command(flatten)]
    stripe: StripeArgs,
    /// The format of an `s3` destination's objects: JSON Lines, or Parquet typed from the template.
    #[arg(long, value_enum, default_value_t = OutputFormat::Jsonl)]
    output_format: OutputFormat,
    /// How new files are found: `poll` (the scheduled listing, default) or `events` (S3 event notifications
    /// through the deployment's notification queue; `connector events NAME` prints the setup).
    #[arg(long, default_value = "poll")]
    discovery: Discovery,
    /// The bucket keeps versions (S3 Versioning), and every version is a file to import: listed with
    /// ListObjectVersions, each read by its VersionId, so two uploads of one key in quick succession are
    /// both imported (the newer one's rows winning). Set at creation.
    #[arg(long)]
    versions: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

impl CreateArgs {
    /// The bucket's region (`--region` of `connector create`).
    pub fn bucket_region(&self) -> &str {
        &self.region
    }
}

/// The format of an S3 destination's objects (`--output-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// JSON Lines, the rows as validated.
    Jsonl,
    /// Parquet, typed from the template.
    Parquet,
}

impl OutputFormat {
    /// An S3 destination of this format.
    pub fn s3(self, bucket: String, prefix: String) -> DestinationConfig {
        match self {
            Self::Jsonl => DestinationConfig::S3Jsonl { bucket, prefix },
            Self::Parquet => DestinationConfig::S3Parquet { bucket, prefix },
        }
    }
}

/// The destination `--destination` names; `postgres` takes its connection from `pg`.
pub(super) fn parse_destination(
    spec: &str,
    format: OutputFormat,
    records_table: Option<&str>,
    output_bucket: Option<&str>,
    pg: &PostgresArgs,
    wh: &WebhookArgs,
    st: &StripeArgs,
) -> Result<DestinationConfig> {
    let (kind, rest) = spec.split_once(':').unwrap_or((spec, ""));
    if kind != "stripe" && st.any() {
        return Err(exit(
            Status::Usage,
            "--stripe-* options go with --destination stripe:OBJECT",
        ));
    }
    if !matches!(kind, "https" | "http") && wh.any() {
        return Err(exit(
            Status::Usage,
            "--webhook-* options go with --destination https://…",
        ));
    }
    if kind != "postgres"
        && (pg.postgres_secret.is_some() || pg.postgres_url_env.is_some() || pg.create_table)
    {
        return Err(exit(
            Status::Usage,
            "--postgres-secret, --postgres-url-env and --create-table go with --destination postgres:TABLE",
        ));
    }
    if kind != "s3" && format != OutputFormat::Jsonl {
        return Err(exit(
            Status::Usage,
            "--output-format applies to an s3 destination: pass --destination s3:BUCKET/PREFIX",
        ));
    }
    match kind {
        "postgres" => postgres::destination(rest, pg),
        "https" | "http" => webhook::destination(spec, wh),
        "stripe" => stripe::destination(rest, st),
        "dynamodb" => {
            let table = if rest.is_empty() {
                records_table.map(str::to_owned)
            } else {
                Some(rest.to_owned())
            };
            let table = table.ok_or_else(|| {
                exit(
                    Status::Usage,
                    "no records table: pass --stack, --records-table or --destination dynamodb:TABLE",
                )
            })?;
            Ok(DestinationConfig::Dynamodb { table })
        }
        "s3" => {
            let (bucket, prefix) = if rest.is_empty() {
                (output_bucket.map(str::to_owned), "output".to_owned())
            } else {
                let (b, p) = rest.split_once('/').unwrap_or((rest, "output"));
                (Some(b.to_owned()), p.trim_end_matches('/').to_owned())
            };
            let bucket = bucket.ok_or_else(|| {
                exit(
                    Status::Usage,
                    "no output bucket: pass --stack, --output-bucket or --destination s3:BUCKET/PREFIX",
                )
            })?;
            policy::validate_bucket_name(&bucket)?;
            Ok(format.s3(bucket, prefix))
        }
        other => Err(exit(
            Status::Usage,
            format!("unknown destination {other:?}: use dynamodb, dynamodb:TABLE, s3, s3:BUCKET/PREFIX, postgres:[SCHEMA.]TABLE or https://…"),
        )),
    }
}

/// A new External ID: 128 bits from the operating system's CSPRNG (UUID v4 draws from `getrandom`), hex.
pub(super) fn new_external_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Runs `connector create`.
pub(super) async fn create(
    aws: &AwsArgs,
    sdk: &aws_config::SdkConfig,
    state: &dyn StateStore,
    args: CreateArgs,
) -> Result<ExitCode> {
    policy::validate_connector_name(&args.name)?;
    policy::validate_account_id(&args.account_id)?;
    policy::validate_bucket_name(&args.bucket)?;
    policy::validate_region(&args.region)?;
    let prefix = policy::normalize_folder(args.folder.as_deref())?;
    if let Some(arn) = &args.role_arn {
        policy::validate_source_role_arn(arn, aws.role_name_prefix())?;
    } else {
        policy::role_name(aws.role_name_prefix(), &args.name)?;
    }
    if let Some(key) = &args.kms_key_arn {
        policy::validate_kms_key_arn(key)?;
    }
    let destination = parse_destination(
        &args.destination,
        args.output_format,
        aws.records_table.as_deref(),
        aws.output_bucket.as_deref(),
        &args.postgres,
        &args.webhook,
        &args.stripe,
    )?;
    webhook::check_target(&destination).await?;
    if state.find_connector_by_name(&args.name).await?.is_some() {
        return Err(exit(
            Status::Conflict,
            format!("a connector named {:?} already exists: choose another name (`s3-importer connector list`)", args.name),
        ));
    }
    let stored = require_template(state, &args.template, args.template_version).await?;
    stripe::check_template(&destination, &stored.template)?;
    let now = Utc::now();
    let id = format!("c-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
    let connector = Connector {
        id: id.clone(),
        name: args.name.clone(),
        status: ConnectorStatus::Active,
        source: Source {
            account_id: args.account_id,
            bucket: args.bucket,
            region: args.region,
            prefix,
            role_arn: args.role_arn,
            external_id: Some(new_external_id()),
            versions: args.versions,
        },
        template_id: args.template,
        template_version: args.template_version,
        destination,
        created_at: now,
        updated_at: now,
        watermark: None,
        last_sync: None,
        discovery: args.discovery,
        reconcile: None,
    };
    let p = policies(aws, sdk, &connector, args.kms_key_arn.as_deref()).await?;
    state.create_connector(&connector).await?;
    let table = postgres::prepare_table(
        sdk,
        &connector,
        &stored.template,
        args.postgres.create_table,
    )
    .await;
    let code = match &table {
        Some(check) if check.status == CheckStatus::Fail => {
            ExitCode::from(Status::CheckFailed as u8)
        }
        _ => ExitCode::SUCCESS,
    };
    if args.json {
        let mut out = policies_json(&connector, &p);
        out["id"] = json!(connector.id);
        out["connector"] = serde_json::to_value(&connector)?;
        if let Some(check) = &table {
            out["table"] = serde_json::to_value(check)?;
        }
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(code);
    }
    outln!("created connector {} ({id})", connector.name);
    if let Some(check) = &table {
        postgres::print_check(check);
    }
    outln!();
    print_policies(&connector, &p, aws.role_name_prefix())?;
    outln!(
        "External ID: {}",
        connector.source.external_id.as_deref().unwrap_or_default()
    );
    outln!();
    outln!("Next:");
    if connector.source.role_arn.is_none() {
        outln!(
            "  s3-importer connector reauth {} --role-arn {}   # once the role exists (same-account buckets \
             readable by the deployment need no role)",
            connector.name, p.role_arn
        );
    }
    if connector.discovery == Discovery::Events {
        outln!(
            "  s3-importer connector events {}   # the bucket notification to add",
            connector.name
        );
    }
    outln!("  s3-importer connector verify {}", connector.name);
    outln!("  s3-importer connector preview {}", connector.name);
    Ok(code)
}
