//! `s3-importer connector …`: create connectors and watch their files.

use anyhow::{bail, Context, Result};
use chrono::Utc;
use s3_importer_core::sync::ports::StateStore;
use s3_importer_core::sync::{Connector, ConnectorStatus, DestinationConfig, FileStatus, Source};

use crate::table;

/// `connector` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ConnectorCommand {
    /// Create a connector: a bucket folder imported with a template into a destination.
    #[command(
        after_help = "Example:\n  s3-importer connector create --name orders --account-id 123456789012 \\\n    --bucket acme-exports --region eu-west-1 --folder orders/ --template orders"
    )]
    Create(CreateArgs),
    /// List connectors.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The per-file timeline of a connector.
    Files {
        /// Connector name.
        name: String,
        /// Only files with this status (claimed, queued, processing, imported, failed, skipped, superseded, gone).
        #[arg(long)]
        status: Option<FileStatus>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Arguments of `connector create`.
#[derive(Debug, clap::Args)]
pub struct CreateArgs {
    /// A unique name.
    #[arg(long)]
    name: String,
    /// The 12-digit AWS account that owns the bucket.
    #[arg(long)]
    account_id: String,
    /// The source bucket.
    #[arg(long)]
    bucket: String,
    /// The bucket's region.
    #[arg(long)]
    region: String,
    /// Only import files under this folder (key prefix).
    #[arg(long)]
    folder: Option<String>,
    /// The stored template's id.
    #[arg(long)]
    template: String,
    /// Role to assume for cross-account access (an External ID is generated).
    #[arg(long)]
    role_arn: Option<String>,
    /// `dynamodb` (the deployment's records table, default), `dynamodb:TABLE`, or `s3` / `s3:BUCKET/PREFIX`.
    #[arg(long, default_value = "dynamodb")]
    destination: String,
}

/// Finds a connector by name (or id).
pub async fn find(state: &dyn StateStore, name: &str) -> Result<Connector> {
    if let Some(c) = state.find_connector_by_name(name).await? {
        return Ok(c);
    }
    state.get_connector(name).await?.with_context(|| {
        format!("no connector named {name:?}: `s3-importer connector list` shows them")
    })
}

fn parse_destination(
    spec: &str,
    records_table: Option<&str>,
    output_bucket: Option<&str>,
) -> Result<DestinationConfig> {
    let (kind, rest) = spec.split_once(':').unwrap_or((spec, ""));
    match kind {
        "dynamodb" => {
            let table = if rest.is_empty() {
                records_table.map(str::to_owned)
            } else {
                Some(rest.to_owned())
            };
            let table = table.context(
                "no records table: pass --records-table or --destination dynamodb:TABLE",
            )?;
            Ok(DestinationConfig::Dynamodb { table })
        }
        "s3" => {
            let (bucket, prefix) = if rest.is_empty() {
                (output_bucket.map(str::to_owned), "output".to_owned())
            } else {
                let (b, p) = rest.split_once('/').unwrap_or((rest, "output"));
                (Some(b.to_owned()), p.trim_end_matches('/').to_owned())
            };
            let bucket = bucket.context(
                "no output bucket: pass --output-bucket or --destination s3:BUCKET/PREFIX",
            )?;
            Ok(DestinationConfig::S3Jsonl { bucket, prefix })
        }
        other => bail!(
            "unknown destination {other:?}: use dynamodb, dynamodb:TABLE, s3 or s3:BUCKET/PREFIX"
        ),
    }
}

/// Runs a `connector` subcommand.
pub async fn run(
    state: &dyn StateStore,
    records_table: Option<&str>,
    output_bucket: Option<&str>,
    command: ConnectorCommand,
) -> Result<()> {
    match command {
        ConnectorCommand::Create(args) => {
            if args.account_id.len() != 12 || !args.account_id.bytes().all(|b| b.is_ascii_digit()) {
                bail!("--account-id must be the 12-digit AWS account id that owns the bucket");
            }
            state
                .get_template(&args.template, None)
                .await?
                .with_context(|| {
                    format!(
                        "no template {:?}: store it first with `s3-importer template add FILE`",
                        args.template
                    )
                })?;
            let destination = parse_destination(&args.destination, records_table, output_bucket)?;
            let now = Utc::now();
            let id = format!("c-{}", &uuid::Uuid::new_v4().simple().to_string()[..16]);
            let external_id = args
                .role_arn
                .as_ref()
                .map(|_| uuid::Uuid::new_v4().simple().to_string());
            let prefix = args
                .folder
                .map(|f| f.trim_start_matches('/').to_owned())
                .filter(|f| !f.is_empty());
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
                    external_id,
                },
                template_id: args.template,
                template_version: None,
                destination,
                created_at: now,
                updated_at: now,
                watermark: None,
                last_sync: None,
            };
            state.create_connector(&connector).await?;
            println!("created connector {} ({id})", args.name);
        }
        ConnectorCommand::List { json } => {
            let connectors = state.list_connectors().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&connectors)?);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = connectors
                .iter()
                .map(|c| {
                    let source = format!(
                        "s3://{}/{}",
                        c.source.bucket,
                        c.source.prefix.as_deref().unwrap_or("")
                    );
                    let last = c
                        .last_sync
                        .as_ref()
                        .map(|r| {
                            format!(
                                "{} ({} enqueued)",
                                r.started_at.format("%Y-%m-%d %H:%M:%S"),
                                r.enqueued
                            )
                        })
                        .unwrap_or_else(|| "never".into());
                    vec![
                        c.name.clone(),
                        c.status.as_str().to_owned(),
                        source,
                        c.template_id.clone(),
                        last,
                    ]
                })
                .collect();
            table::print(
                &["NAME", "STATUS", "SOURCE", "TEMPLATE", "LAST SYNC"],
                &rows,
            );
        }
        ConnectorCommand::Files { name, status, json } => {
            let connector = find(state, &name).await?;
            let mut files = state.list_files(&connector.id, status).await?;
            files.sort_by(|a, b| {
                a.version
                    .key
                    .cmp(&b.version.key)
                    .then(a.discovered_at.cmp(&b.discovered_at))
            });
            if json {
                println!("{}", serde_json::to_string_pretty(&files)?);
                return Ok(());
            }
            let rows: Vec<Vec<String>> = files
                .iter()
                .map(|f| {
                    let detail = f
                        .skip_reason
                        .as_ref()
                        .map(|r| r.to_string())
                        .or_else(|| f.error.clone())
                        .or_else(|| {
                            f.error_report
                                .as_ref()
                                .map(|r| format!("error report: {r}"))
                        })
                        .unwrap_or_default();
                    vec![
                        f.version.key.clone(),
                        f.status.to_string(),
                        f.size.to_string(),
                        f.rows_imported.to_string(),
                        f.rows_rejected.to_string(),
                        detail,
                    ]
                })
                .collect();
            table::print(
                &["KEY", "STATUS", "BYTES", "IMPORTED", "REJECTED", "DETAIL"],
                &rows,
            );
        }
    }
    Ok(())
}
