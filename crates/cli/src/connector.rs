//! `s3-importer connector …`: the connector lifecycle — create (with the IAM policies to paste), verify,
//! preview, watch, edit, re-authenticate, pause, resume, sync, retry, delete.

use std::io::{BufRead, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::Utc;
use s3_importer_aws::verify::{Check, Doctor, Report};
use s3_importer_core::policy::{self, PermissionScope};
use s3_importer_core::sync::ports::{FileQueue, StateStore};
use s3_importer_core::sync::{
    Connector, ConnectorStatus, DestinationConfig, FileMessage, FileStatus, Source,
};
use serde_json::{json, Value};

use crate::aws_args::AwsArgs;
use crate::exit::{exit, Status};
use crate::{preview, remote, status, table};

/// `connector` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ConnectorCommand {
    /// Create a connector and print the IAM permission and trust policies of the role to create.
    #[command(
        after_help = "Example:\n  s3-importer connector create --name orders --account-id 123456789012 \\\n    \
--bucket acme-exports --region eu-west-1 --folder orders/ --template orders\n\n\
Prints the permission policy, the trust policy (with the connector's External ID) and the role name to create \
in the bucket's account; then run `connector reauth NAME --role-arn ARN` (or pass --role-arn now) and \
`connector verify NAME`."
    )]
    Create(CreateArgs),
    /// Print a connector's IAM permission policy, trust policy and role name again.
    #[command(
        after_help = "Example:\n  s3-importer connector policy orders --kms-key-arn \
arn:aws:kms:eu-west-1:123456789012:key/1234abcd"
    )]
    Policy {
        /// Connector name.
        name: String,
        /// The KMS key the files are encrypted with (adds kms:Decrypt).
        #[arg(long)]
        kms_key_arn: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The connection doctor: check access step by step and name the cause of a failure.
    #[command(after_help = "Example:\n  s3-importer connector verify orders\n\n\
Exit status 5 when a check fails.")]
    Verify {
        /// Connector name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The files a sync would consider now and what would happen to each, and the first rows of one file.
    #[command(after_help = "Example:\n  s3-importer connector preview orders --rows 5")]
    Preview(preview::PreviewArgs),
    /// List connectors.
    #[command(after_help = "Example:\n  s3-importer connector list --json")]
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A connector's status, source, template, last sync and totals.
    #[command(after_help = "Example:\n  s3-importer connector show orders")]
    Show {
        /// Connector name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The per-file timeline of a connector.
    #[command(
        after_help = "Example:\n  s3-importer connector files orders --status failed --since 24h"
    )]
    Files(status::FilesArgs),
    /// A connector's sync-run history, newest first.
    #[command(after_help = "Example:\n  s3-importer connector syncs orders --limit 10")]
    Syncs {
        /// Connector name.
        name: String,
        /// How many runs.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rename a connector or change its template.
    #[command(
        after_help = "Example:\n  s3-importer connector update orders --name orders-eu --template orders-v2"
    )]
    Update {
        /// Connector name.
        name: String,
        /// The new name.
        #[arg(long = "name", id = "new_name", value_name = "NEW_NAME")]
        new_name: Option<String>,
        /// The new template id (its latest version is used unless --template-version is given).
        #[arg(long)]
        template: Option<String>,
        /// Pin a template version.
        #[arg(long)]
        template_version: Option<u32>,
        /// Correct the source bucket's region (what `create --region` recorded), e.g. after `verify` found
        /// the bucket in another one. The bucket itself cannot change: its ledger belongs to it.
        #[arg(long)]
        bucket_region: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-authenticate: change the role or rotate the External ID, verify, and activate only if it passes.
    #[command(
        after_help = "Example:\n  s3-importer connector reauth orders --role-arn \
arn:aws:iam::123456789012:role/s3-importer-orders\n\n\
Exit status 5 when verification fails (the connector is then marked broken with the reason)."
    )]
    Reauth {
        /// Connector name.
        name: String,
        /// The role to assume in the bucket's account.
        #[arg(long, conflicts_with = "no_role")]
        role_arn: Option<String>,
        /// Stop assuming a role: the deployment's own credentials read the bucket.
        #[arg(long)]
        no_role: bool,
        /// Generate a new External ID (paste the new trust policy it prints).
        #[arg(long)]
        rotate_external_id: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop syncing a connector (its state is kept).
    #[command(after_help = "Example:\n  s3-importer connector pause orders")]
    Pause {
        /// Connector name.
        name: String,
    },
    /// Verify a paused or broken connector and make it active again if verification passes: the next
    /// scheduled sync (or `connector sync NAME`) imports what arrived meanwhile.
    #[command(
        after_help = "Example:\n  s3-importer connector resume orders\n\nExit status 5 when verification fails."
    )]
    Resume {
        /// Connector name.
        name: String,
        /// Resume without verifying.
        #[arg(long)]
        no_verify: bool,
    },
    /// Delete a connector and all its state (ledger, sync history). The source bucket is never touched.
    #[command(after_help = "Example:\n  s3-importer connector delete orders --yes")]
    Delete {
        /// Connector name.
        name: String,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Run a sync of one connector now instead of waiting for the schedule.
    #[command(after_help = "Example:\n  s3-importer connector sync orders")]
    Sync {
        /// Connector name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-queue failed files (all of them, or the given keys) through the ledger.
    #[command(
        after_help = "Example:\n  s3-importer connector retry orders incoming/orders-2024-05-04.csv"
    )]
    Retry {
        /// Connector name.
        name: String,
        /// Keys of the failed files to retry (default: every failed file).
        files: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

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
    /// `dynamodb` (the deployment's records table, default), `dynamodb:TABLE`, or `s3` / `s3:BUCKET/PREFIX`.
    #[arg(long, default_value = "dynamodb")]
    destination: String,
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

/// Finds a connector by name (or id); exit status 3 when there is none.
pub async fn find(state: &dyn StateStore, name: &str) -> Result<Connector> {
    if let Some(c) = state.find_connector_by_name(name).await? {
        return Ok(c);
    }
    match state.get_connector(name).await? {
        Some(c) => Ok(c),
        None => Err(exit(
            Status::NotFound,
            format!("no connector named {name:?}: `s3-importer connector list` shows them"),
        )),
    }
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
            Ok(DestinationConfig::S3Jsonl { bucket, prefix })
        }
        other => Err(exit(
            Status::Usage,
            format!("unknown destination {other:?}: use dynamodb, dynamodb:TABLE, s3 or s3:BUCKET/PREFIX"),
        )),
    }
}

/// A new External ID: 128 bits from the operating system's CSPRNG (UUID v4 draws from `getrandom`), hex.
fn new_external_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// What `create` and `policy` print: the documents and the role to create.
pub struct Policies {
    /// The role name to create in the bucket's account.
    pub role_name: String,
    /// Its ARN.
    pub role_arn: String,
    /// The permission policy.
    pub permission: Value,
    /// The trust policy.
    pub trust: Value,
    /// The trust policy's principals, and whether they are the deployment's roles (else the account root).
    pub principals: Vec<String>,
    /// True when the principals are the deployment's lister and worker roles.
    pub exact_principals: bool,
}

async fn principals(aws: &AwsArgs, sdk: &aws_config::SdkConfig) -> Result<(Vec<String>, bool)> {
    if let Some(given) = given_principals(
        aws.lister_role_arn.as_deref(),
        aws.worker_role_arn.as_deref(),
    )? {
        return Ok((given, true));
    }
    // Without the deployment's roles, trust the deployment's account (narrow it with --stack).
    let identity = aws_sdk_sts::Client::new(sdk)
        .get_caller_identity()
        .send()
        .await
        .context("cannot tell the deployment's account (sts:GetCallerIdentity); pass --stack or --lister-role-arn and --worker-role-arn")?;
    let account = identity
        .account()
        .context("sts:GetCallerIdentity returned no account")?;
    let region = sdk
        .region()
        .map(|r| r.as_ref().to_owned())
        .unwrap_or_default();
    Ok((
        vec![format!(
            "arn:{}:iam::{account}:root",
            policy::partition(&region)
        )],
        false,
    ))
}

/// The deployment's roles as given: both, or neither (then `None`); one alone would yield a trust policy the
/// other function cannot use.
fn given_principals(lister: Option<&str>, worker: Option<&str>) -> Result<Option<Vec<String>>> {
    match (lister, worker) {
        (None, None) => Ok(None),
        (Some(lister), Some(worker)) => {
            for arn in [lister, worker] {
                policy::validate_role_arn(arn)?;
            }
            Ok(Some(vec![lister.to_owned(), worker.to_owned()]))
        }
        _ => Err(exit(
            Status::Usage,
            "pass both --lister-role-arn and --worker-role-arn (or --stack): the trust policy must name both \
             of the deployment's roles",
        )),
    }
}

/// The policies of `connector`.
pub async fn policies(
    aws: &AwsArgs,
    sdk: &aws_config::SdkConfig,
    connector: &Connector,
    kms_key_arn: Option<&str>,
) -> Result<Policies> {
    let source = &connector.source;
    let (role_name, role_arn) = match &source.role_arn {
        Some(arn) => (policy::validate_role_arn(arn)?.to_owned(), arn.clone()),
        None => {
            let name = policy::role_name(aws.role_name_prefix(), &connector.name)?;
            let arn = policy::role_arn(&source.region, &source.account_id, &name);
            (name, arn)
        }
    };
    if let Some(key) = kms_key_arn {
        policy::validate_kms_key_arn(key)?;
    }
    let permission = policy::permission_policy(&PermissionScope {
        bucket: &source.bucket,
        region: &source.region,
        folder: source.prefix.as_deref(),
        kms_key_arn,
    });
    let (principals, exact_principals) = principals(aws, sdk).await?;
    let external_id = source.external_id.clone().unwrap_or_default();
    let trust = policy::trust_policy(&principals, &external_id);
    for document in [&permission, &trust] {
        policy::check_policy_document(document)
            .map_err(|e| anyhow::anyhow!("internal error: generated an invalid policy: {e}"))?;
    }
    Ok(Policies {
        role_name,
        role_arn,
        permission,
        trust,
        principals,
        exact_principals,
    })
}

fn policies_json(connector: &Connector, p: &Policies) -> Value {
    json!({
        "connector": connector.name,
        "role_name": p.role_name,
        "role_arn": p.role_arn,
        "external_id": connector.source.external_id,
        "permission_policy": p.permission,
        "trust_policy": p.trust,
    })
}

fn print_policies(connector: &Connector, p: &Policies, prefix: &str) -> Result<()> {
    let account = &connector.source.account_id;
    outln!(
        "In account {account}, create the IAM role {} with:",
        p.role_name
    );
    outln!();
    outln!("Permission policy (what the role may read):");
    outln!("{}", serde_json::to_string_pretty(&p.permission)?);
    outln!();
    outln!("Trust policy (who may assume the role, with the External ID):");
    outln!("{}", serde_json::to_string_pretty(&p.trust)?);
    outln!();
    if !p.exact_principals {
        outln!(
            "note: the trust policy names the deployment's account ({}); pass --stack NAME (or --lister-role-arn \
             and --worker-role-arn) to name only its lister and worker roles",
            p.principals.join(", ")
        );
    }
    if !p.role_name.starts_with(prefix) {
        outln!(
            "note: the role name does not start with {prefix:?}; the deployment may only assume roles whose \
             names do"
        );
    }
    Ok(())
}

/// Runs a `connector` subcommand.
pub async fn run(
    aws: &AwsArgs,
    sdk: &aws_config::SdkConfig,
    command: ConnectorCommand,
) -> Result<ExitCode> {
    let state = crate::state(sdk, &aws.state_table()?);
    let state = state.as_ref();
    match command {
        ConnectorCommand::Create(args) => create(aws, sdk, state, args).await,
        ConnectorCommand::Policy {
            name,
            kms_key_arn,
            json,
        } => {
            let connector = find(state, &name).await?;
            let p = policies(aws, sdk, &connector, kms_key_arn.as_deref()).await?;
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&policies_json(&connector, &p))?
                );
            } else {
                print_policies(&connector, &p, aws.role_name_prefix())?;
                if let Some(id) = &connector.source.external_id {
                    outln!("External ID: {id}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ConnectorCommand::Verify { name, json } => {
            let connector = find(state, &name).await?;
            let checked = check_connection(aws, sdk, state, &connector).await?;
            print_report(&connector, &checked.report, json)?;
            Ok(checked.exit_code())
        }
        ConnectorCommand::Preview(args) => preview::preview(aws, sdk, state, args).await,
        ConnectorCommand::List { json } => status::list(state, json).await,
        ConnectorCommand::Show { name, json } => status::show(state, &name, json).await,
        ConnectorCommand::Files(args) => status::files(state, args).await,
        ConnectorCommand::Syncs { name, limit, json } => {
            status::syncs(state, &name, limit, json).await
        }
        ConnectorCommand::Update {
            name,
            new_name,
            template,
            template_version,
            bucket_region,
            json,
        } => {
            let mut connector = find(state, &name).await?;
            if new_name.is_none()
                && template.is_none()
                && template_version.is_none()
                && bucket_region.is_none()
            {
                return Err(exit(
                    Status::Usage,
                    "nothing to change: pass --name, --template, --template-version or --bucket-region",
                ));
            }
            if let Some(region) = bucket_region {
                policy::validate_region(&region)?;
                connector.source.region = region;
            }
            if let Some(new_name) = new_name {
                policy::validate_connector_name(&new_name)?;
                connector.name = new_name;
            }
            if let Some(template) = template {
                connector.template_id = template;
                connector.template_version = None;
            }
            if template_version.is_some() {
                connector.template_version = template_version;
            }
            let stored =
                require_template(state, &connector.template_id, connector.template_version).await?;
            connector.updated_at = Utc::now();
            state.update_connector(&connector).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&connector)?);
            } else {
                outln!(
                    "updated connector {} ({}): bucket s3://{} in {}, template {} (version {})",
                    connector.name,
                    connector.id,
                    connector.source.bucket,
                    connector.source.region,
                    connector.template_id,
                    connector
                        .template_version
                        .map(|v| v.to_string())
                        .unwrap_or_else(|| format!("latest, now {}", stored.version))
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ConnectorCommand::Reauth {
            name,
            role_arn,
            no_role,
            rotate_external_id,
            json,
        } => {
            let mut connector = find(state, &name).await?;
            if let Some(arn) = &role_arn {
                policy::validate_source_role_arn(arn, aws.role_name_prefix())?;
                connector.source.role_arn = Some(arn.clone());
            }
            if no_role {
                connector.source.role_arn = None;
            }
            if rotate_external_id || connector.source.external_id.is_none() {
                connector.source.external_id = Some(new_external_id());
            }
            connector.updated_at = Utc::now();
            if aws.lister_function.is_some() {
                // The lister function checks the connector as stored: store the new role/ID first.
                state.update_connector(&connector).await?;
            }
            let checked = check_connection(aws, sdk, state, &connector).await?;
            connector.status = checked.status_after(&connector.status);
            connector.updated_at = Utc::now();
            state.update_connector(&connector).await?;
            print_report(&connector, &checked.report, json)?;
            if rotate_external_id && !json {
                outln!();
                outln!("The External ID changed: replace the role's trust policy with:");
                let p = policies(aws, sdk, &connector, None).await?;
                outln!("{}", serde_json::to_string_pretty(&p.trust)?);
            }
            if !json {
                outln!(
                    "connector {} is {}",
                    connector.name,
                    connector.status.as_str()
                );
            }
            Ok(checked.exit_code())
        }
        ConnectorCommand::Pause { name } => {
            let mut connector = find(state, &name).await?;
            connector.status = ConnectorStatus::Paused;
            connector.updated_at = Utc::now();
            state.update_connector(&connector).await?;
            outln!(
                "paused connector {}: no syncs until `s3-importer connector resume {}` (files already queued are still imported)",
                connector.name, connector.name
            );
            Ok(ExitCode::SUCCESS)
        }
        ConnectorCommand::Resume { name, no_verify } => {
            let mut connector = find(state, &name).await?;
            let mut code = ExitCode::SUCCESS;
            if no_verify {
                connector.status = ConnectorStatus::Active;
            } else {
                let checked = check_connection(aws, sdk, state, &connector).await?;
                print_report(&connector, &checked.report, false)?;
                connector.status = checked.status_after(&connector.status);
                code = checked.exit_code();
            }
            connector.updated_at = Utc::now();
            state.update_connector(&connector).await?;
            outln!(
                "connector {} is {}",
                connector.name,
                connector.status.as_str()
            );
            Ok(code)
        }
        ConnectorCommand::Delete { name, yes } => {
            let connector = find(state, &name).await?;
            if !yes && !confirm(&connector.name)? {
                return Err(exit(
                    Status::Usage,
                    format!("not deleted: confirm by typing the name, or pass --yes (`connector delete {} --yes`)", connector.name),
                ));
            }
            let removed = state.delete_connector(&connector.id).await?;
            outln!(
                "deleted connector {} ({}): {removed} state item(s) removed; s3://{} was not touched, and \
                 imported rows stay in the destination",
                connector.name, connector.id, connector.source.bucket
            );
            Ok(ExitCode::SUCCESS)
        }
        ConnectorCommand::Sync { name, json } => sync_now(aws, sdk, state, &name, json).await,
        ConnectorCommand::Retry { name, files, json } => {
            retry(aws, sdk, state, &name, files, json).await
        }
    }
}

async fn require_template(
    state: &dyn StateStore,
    id: &str,
    version: Option<u32>,
) -> Result<s3_importer_core::sync::ports::StoredTemplate> {
    match state.get_template(id, version).await? {
        Some(t) => Ok(t),
        None => Err(exit(
            Status::NotFound,
            match version {
                Some(v) => format!("no version {v} of template {id:?}: `s3-importer template list` shows the stored ones"),
                None => format!("no template {id:?}: store it first with `s3-importer template add FILE`"),
            },
        )),
    }
}

async fn create(
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
        aws.records_table.as_deref(),
        aws.output_bucket.as_deref(),
    )?;
    if state.find_connector_by_name(&args.name).await?.is_some() {
        return Err(exit(
            Status::Conflict,
            format!("a connector named {:?} already exists: choose another name (`s3-importer connector list`)", args.name),
        ));
    }
    require_template(state, &args.template, args.template_version).await?;
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
        },
        template_id: args.template,
        template_version: args.template_version,
        destination,
        created_at: now,
        updated_at: now,
        watermark: None,
        last_sync: None,
    };
    let p = policies(aws, sdk, &connector, args.kms_key_arn.as_deref()).await?;
    state.create_connector(&connector).await?;
    if args.json {
        let mut out = policies_json(&connector, &p);
        out["id"] = json!(connector.id);
        out["connector"] = serde_json::to_value(&connector)?;
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!("created connector {} ({id})", connector.name);
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
    outln!("  s3-importer connector verify {}", connector.name);
    outln!("  s3-importer connector preview {}", connector.name);
    Ok(ExitCode::SUCCESS)
}

fn confirm(name: &str) -> Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Ok(false);
    }
    out!("Delete connector {name} and all its state? Type its name to confirm: ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    stdin.lock().read_line(&mut line)?;
    Ok(line.trim() == name)
}

/// The template's explicit format, if the connector's template sets one.
pub async fn template_format(
    state: &dyn StateStore,
    connector: &Connector,
) -> Option<s3_importer_core::Format> {
    state
        .get_template(&connector.template_id, connector.template_version)
        .await
        .ok()
        .flatten()
        .and_then(|t| t.template.format)
}

fn status_after(report: &Report) -> ConnectorStatus {
    match report.first_failure() {
        None => ConnectorStatus::Active,
        Some(failure) => ConnectorStatus::Broken {
            reason: format!(
                "{}: {}{}",
                failure.check,
                failure.detail,
                failure
                    .fix
                    .as_deref()
                    .map(|f| format!(" — {f}"))
                    .unwrap_or_default()
            ),
        },
    }
}

/// What `assume_role` says when the operator's own AssumeRole was refused and the operator is not a principal
/// the trust policy admits: the refusal says nothing about the connector.
pub const ASSUME_NOT_CHECKED: &str =
    "not checked: run with --stack so the check runs as the deployment's role";

/// A connection check, and whether it can decide the connector's status.
#[derive(Debug)]
struct Checked {
    report: Report,
    /// False when the check could not run as a principal of the trust policy (see [`ASSUME_NOT_CHECKED`]).
    conclusive: bool,
}

impl Checked {
    /// The connector's status after this check: `previous` when it was not conclusive.
    fn status_after(&self, previous: &ConnectorStatus) -> ConnectorStatus {
        if self.conclusive {
            status_after(&self.report)
        } else {
            previous.clone()
        }
    }

    fn exit_code(&self) -> ExitCode {
        if self.conclusive && self.report.ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(Status::CheckFailed as u8)
        }
    }
}

/// Checks `connector`'s connection: through the deployment's lister function when it is known (the check then
/// runs as the deployment's role), else in this process.
async fn check_connection(
    aws: &AwsArgs,
    sdk: &aws_config::SdkConfig,
    state: &dyn StateStore,
    connector: &Connector,
) -> Result<Checked> {
    if let Some(function) = &aws.lister_function {
        let client = aws_sdk_lambda::Client::new(sdk);
        let response =
            remote::invoke(&client, function, &remote::request("verify", &connector.id)).await?;
        let report = response.report.with_context(|| {
            format!("the lister function {function} returned no report: deploy this version of s3-importer")
        })?;
        return Ok(Checked {
            report,
            conclusive: true,
        });
    }
    let report = Doctor::new(sdk)
        .verify(&connector.source, template_format(state, connector).await)
        .await;
    let operator_is_principal = if assume_refused(&report) {
        operator_is_principal(aws, sdk).await
    } else {
        true
    };
    Ok(judge_local(report, operator_is_principal))
}

fn assume_refused(report: &Report) -> bool {
    report
        .first_failure()
        .is_some_and(|f| f.check == "assume_role" && f.cause.as_deref() == Some("trust_policy"))
}

/// A check run with the operator's credentials: a refused AssumeRole is inconclusive unless the operator is a
/// principal the trust policy admits.
fn judge_local(mut report: Report, operator_is_principal: bool) -> Checked {
    if !assume_refused(&report) || operator_is_principal {
        return Checked {
            report,
            conclusive: true,
        };
    }
    if let Some(check) = report.checks.iter_mut().find(|c| c.check == "assume_role") {
        *check = Check::skipped("assume_role", ASSUME_NOT_CHECKED);
    }
    Checked {
        report,
        conclusive: false,
    }
}

/// True when the caller is the deployment's lister or worker role (the trust policies' principals).
async fn operator_is_principal(aws: &AwsArgs, sdk: &aws_config::SdkConfig) -> bool {
    let Ok(identity) = aws_sdk_sts::Client::new(sdk)
        .get_caller_identity()
        .send()
        .await
    else {
        return false;
    };
    let caller = identity.arn().unwrap_or_default();
    [&aws.lister_role_arn, &aws.worker_role_arn]
        .into_iter()
        .flatten()
        .any(|role| caller_is_role(caller, role))
}

/// True when `caller` (a `GetCallerIdentity` ARN) is `role_arn` or a session of it.
fn caller_is_role(caller: &str, role_arn: &str) -> bool {
    if caller == role_arn {
        return true;
    }
    let account = |arn: &str| arn.split(':').nth(4).map(str::to_owned);
    let role_name = role_arn.rsplit('/').next().unwrap_or_default();
    let session_role = caller
        .split(':')
        .nth(5)
        .and_then(|r| r.strip_prefix("assumed-role/"))
        .and_then(|r| r.split('/').next());
    account(caller).is_some()
        && account(caller) == account(role_arn)
        && session_role == Some(role_name)
}

fn print_report(connector: &Connector, report: &Report, json: bool) -> Result<()> {
    if json {
        let out = json!({
            "connector": connector.name,
            "ok": report.ok(),
            "status": connector.status,
            "checks": report.checks,
            "sample_key": report.sample_key,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = report
        .checks
        .iter()
        .map(|c| {
            vec![
                c.check.clone(),
                c.status.as_str().to_owned(),
                c.detail.clone(),
            ]
        })
        .collect();
    table::print(&["CHECK", "RESULT", "DETAIL"], &rows);
    for c in report.checks.iter().filter(|c| c.fix.is_some()) {
        outln!();
        outln!(
            "{} ({}): {}",
            c.check,
            c.cause.as_deref().unwrap_or("problem"),
            c.fix.as_deref().unwrap_or_default()
        );
    }
    if report.ok() {
        outln!();
        outln!("connector {} can read its source", connector.name);
    }
    Ok(())
}

async fn sync_now(
    aws: &AwsArgs,
    sdk: &aws_config::SdkConfig,
    state: &dyn StateStore,
    name: &str,
    json: bool,
) -> Result<ExitCode> {
    let connector = find(state, name).await?;
    let response = match &aws.lister_function {
        // The deployment's function syncs as its own role (the source role's trust policy admits it).
        Some(function) => {
            let client = aws_sdk_lambda::Client::new(sdk);
            remote::invoke(&client, function, &remote::request("sync", &connector.id))
                .await
                .context("the sync failed")?
        }
        None => {
            let config = aws.config()?;
            let lister = s3_importer_lister::Lister::from_config(
                &config,
                sdk,
                Arc::new(s3_importer_core::sync::SystemClock),
            );
            let request_id = uuid::Uuid::new_v4().to_string();
            s3_importer_lister::handle(&lister, remote::request("sync", &connector.id), &request_id)
                .await
                .context("the sync failed")?
        }
    };
    let Some(result) = response.connectors.into_iter().next() else {
        return Err(exit(Status::Failed, "the lister returned no result"));
    };
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "connector": connector.name, "outcome": result.outcome, "run": result.run,
            }))?
        );
    }
    match (result.outcome.as_str(), result.run) {
        ("ran", Some(run)) => {
            // A failed sync is reported on stderr only: no "synced" line that reads like a success.
            if let Some(e) = run.error {
                return Err(exit(
                    Status::Failed,
                    format!("the sync failed: {e} (`s3-importer connector verify {}` diagnoses access problems)", connector.name),
                ));
            }
            if !json {
                outln!(
                    "synced {}: {} listed, {} new, {} enqueued, {} skipped, {} already known ({} ms)",
                    connector.name,
                    run.listed,
                    run.new,
                    run.enqueued,
                    run.skipped.values().sum::<u64>(),
                    run.already_known,
                    run.duration_ms
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ("busy", _) => Err(exit(
            Status::Conflict,
            format!(
                "another sync of {} is running; try again when it ends",
                connector.name
            ),
        )),
        _ => Err(exit(
            Status::Usage,
            format!(
                "connector {} is {}: `s3-importer connector resume {}` first",
                connector.name,
                connector.status.as_str(),
                connector.name
            ),
        )),
    }
}

async fn retry(
    aws: &AwsArgs,
    sdk: &aws_config::SdkConfig,
    state: &dyn StateStore,
    name: &str,
    keys: Vec<String>,
    json: bool,
) -> Result<ExitCode> {
    let connector = find(state, name).await?;
    let failed = state
        .list_files(&connector.id, Some(FileStatus::Failed))
        .await?;
    let chosen: Vec<_> = if keys.is_empty() {
        failed
    } else {
        let mut chosen = Vec::new();
        for key in &keys {
            let matching: Vec<_> = failed
                .iter()
                .filter(|f| &f.version.key == key)
                .cloned()
                .collect();
            if matching.is_empty() {
                return Err(exit(
                    Status::NotFound,
                    format!(
                        "no failed file {key:?} in connector {}: `s3-importer connector files {} --status failed` lists them",
                        connector.name, connector.name
                    ),
                ));
            }
            chosen.extend(matching);
        }
        chosen
    };
    let config = aws.config()?;
    let queue =
        s3_importer_aws::SqsQueue::new(s3_importer_aws::config::sqs_client(sdk), config.queue_url);
    let now = Utc::now();
    let mut requeued = Vec::new();
    for mut entry in chosen {
        let file_id = entry.version.file_id();
        // failed → claimed is conditional: only one caller wins, and only a failed entry moves.
        if !state.retry_file(&connector.id, &file_id, now).await? {
            continue;
        }
        entry.status = FileStatus::Claimed;
        let accepted = queue.send(&[FileMessage::for_entry(&entry)]).await?;
        if accepted.first() == Some(&true) {
            state.mark_queued(&connector.id, &file_id, now).await?;
        }
        // Not accepted: the entry stays `claimed` and the next lister pass sends it.
        requeued.push(entry.version.key);
    }
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(
                &json!({"connector": connector.name, "requeued": requeued})
            )?
        );
    } else if requeued.is_empty() {
        outln!("no failed files to retry in connector {}", connector.name);
    } else {
        for key in &requeued {
            outln!("re-queued {key}");
        }
        outln!(
            "{} file(s) re-queued; `s3-importer connector files {}` shows their progress",
            requeued.len(),
            connector.name
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> Report {
        Report {
            checks: vec![
                Check::fail(
                    "assume_role",
                    "trust_policy",
                    "cannot assume arn:aws:iam::111122223333:role/s3-importer-orders: AccessDenied",
                    "check the trust policy",
                ),
                Check::skipped("bucket", "the role cannot be assumed"),
            ],
            sample_key: None,
        }
    }

    #[test]
    fn a_refused_assume_as_the_operator_is_not_checked_and_keeps_the_status() {
        let checked = judge_local(refused(), false);
        assert!(!checked.conclusive);
        assert_eq!(checked.report.checks[0].detail, ASSUME_NOT_CHECKED);
        assert!(checked.report.first_failure().is_none());
        for previous in [ConnectorStatus::Active, ConnectorStatus::Paused] {
            assert_eq!(checked.status_after(&previous), previous);
        }
        assert_eq!(
            checked.exit_code(),
            ExitCode::from(Status::CheckFailed as u8)
        );
    }

    #[test]
    fn a_refused_assume_as_the_deployments_role_marks_the_connector_broken() {
        let checked = judge_local(refused(), true);
        assert!(checked.conclusive);
        assert!(matches!(
            checked.status_after(&ConnectorStatus::Active),
            ConnectorStatus::Broken { .. }
        ));
    }

    #[test]
    fn one_deployment_role_alone_is_refused() {
        let l = "arn:aws:iam::123456789012:role/l";
        let w = "arn:aws:iam::123456789012:role/w";
        assert!(given_principals(Some(l), None).is_err());
        assert!(given_principals(None, Some(w)).is_err());
        assert_eq!(given_principals(None, None).unwrap(), None);
        assert_eq!(
            given_principals(Some(l), Some(w)).unwrap(),
            Some(vec![l.to_owned(), w.to_owned()])
        );
    }

    #[test]
    fn the_callers_role_is_recognised_from_its_session_arn() {
        let role = "arn:aws:iam::123456789012:role/prod-ListerRole-ABC";
        assert!(caller_is_role(
            "arn:aws:sts::123456789012:assumed-role/prod-ListerRole-ABC/prod-lister",
            role
        ));
        assert!(caller_is_role(role, role));
        assert!(!caller_is_role(
            "arn:aws:iam::123456789012:user/alice",
            role
        ));
        assert!(!caller_is_role(
            "arn:aws:sts::999999999999:assumed-role/prod-ListerRole-ABC/x",
            role
        ));
    }
}
