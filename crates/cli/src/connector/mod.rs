//! `s3-importer connector …`: the connector lifecycle — create (with the IAM policies to paste), verify,
//! preview, watch, edit, re-authenticate, pause, resume, sync, retry, redrive, replay, delete.
//!
//! This file holds the subcommands and their dispatch; each verb (or group of verbs) has its handler in its
//! own file: [`create`], [`events`] (`events`), [`policies`] (`policy`), [`verify`] (the connection check `verify`, `reauth` and
//! `resume` share), [`update`] (`update`, `reauth`, `pause`, `resume`), [`delete`], [`sync`], [`redo`] (`retry`, `redrive`, `replay`).
//! `preview`, `list`, `show`, `files` and `syncs` live in [`crate::preview`] and [`crate::status`].

use std::process::ExitCode;

use anyhow::Result;
use s3_importer_core::sync::ports::StateStore;
use s3_importer_core::sync::Connector;

use crate::aws_args::AwsArgs;
use crate::exit::{exit, Status};
use crate::{preview, status};

mod create;
mod delete;
mod events;
mod policies;
pub mod postgres;
mod redo;
mod schema;
pub mod stripe;
mod sync;
mod update;
mod verify;
pub mod webhook;

pub use create::{CreateArgs, OutputFormat};

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
    /// For a connector in `events` mode: the bucket notification configuration (S3 → the deployment's
    /// notification queue, filtered by the folder) and the EventBridge rule alternative, to paste.
    #[command(after_help = "Example:\n  s3-importer connector events orders --json")]
    Events {
        /// Connector name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
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
    /// Rename a connector, or change its template or destination.
    #[command(
        after_help = "Example:\n  s3-importer connector update orders --name orders-eu --template orders-v2\n  \
s3-importer connector update orders --destination postgres:sales.orders --postgres-secret prod/orders-db \
--create-table"
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
        /// A new destination, as `create --destination` takes it. Files already imported are not imported
        /// again: only files imported from now on go to the new destination.
        #[arg(long)]
        destination: Option<String>,
        /// With --destination s3…, or alone for a connector writing to S3: the objects' format from now on,
        /// `jsonl` or `parquet`.
        #[arg(long, value_enum)]
        output_format: Option<create::OutputFormat>,
        /// A PostgreSQL destination's connection and table.
        #[command(flatten)]
        postgres: postgres::PostgresArgs,
        /// A webhook destination's secret and limits.
        #[command(flatten)]
        webhook: webhook::WebhookArgs,
        /// A Stripe destination's key and limits.
        #[command(flatten)]
        stripe: stripe::StripeArgs,
        /// How new files are found from now on: `poll` or `events`.
        #[arg(long)]
        discovery: Option<s3_importer_core::sync::Discovery>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The Parquet schema of a connector's output, or with --athena the `CREATE EXTERNAL TABLE` to query it.
    #[command(after_help = "Example:\n  s3-importer connector schema orders --athena")]
    Schema {
        /// Connector name.
        name: String,
        /// Print Athena's `CREATE EXTERNAL TABLE` (partition projection included).
        #[arg(long)]
        athena: bool,
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
    #[command(
        after_help = "Examples:\n  s3-importer connector sync orders\n  s3-importer connector sync orders --reconcile"
    )]
    Sync {
        /// Connector name.
        name: String,
        /// Also hold the whole lookback window against the ledger now (the reconciliation listing), and
        /// import what the poll or the S3 events missed.
        #[arg(long)]
        reconcile: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Re-queue failed files (all of them, or the given keys) through the ledger; with --skipped, the skipped
    /// files the sync settings of now would import (a raised size limit, a restored object).
    #[command(
        after_help = "Examples:\n  s3-importer connector retry orders incoming/orders-2024-05-04.csv\n  \
S3I_MAX_FILE_BYTES=5368709120 s3-importer connector retry orders --skipped"
    )]
    Retry {
        /// Connector name.
        name: String,
        /// Keys of the files to retry (default: every failed, or with --skipped every skipped, file).
        files: Vec<String>,
        /// Retry skipped files instead of failed ones: each is decided again from its object as it is now
        /// (HeadObject) with the sync settings of the configuration (S3I_MAX_FILE_BYTES, ...) and the template.
        #[arg(long)]
        skipped: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Mark the files in the dead-letter queue failed, then re-queue this connector's files that failed there.
    #[command(after_help = "Example:\n  s3-importer connector redrive orders")]
    Redrive {
        /// Connector name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Import file versions again (imported ones too, and ones older than the lookback); the destination
    /// applies them idempotently. Without --yes, prints what it would replay and the rows at stake.
    #[command(
        after_help = "Examples:\n  s3-importer connector replay orders --since 2024-05-01 --until 2024-05-02\n  \
s3-importer connector replay orders --key incoming/orders-2024-05-04.csv --yes"
    )]
    Replay(redo::ReplayArgs),
}

/// Runs a `connector` subcommand.
pub async fn run(
    aws: &AwsArgs,
    sdk: &aws_config::SdkConfig,
    command: ConnectorCommand,
) -> Result<ExitCode> {
    let state = crate::state(sdk, &aws.state_table()?);
    let state = state.as_ref();
    let deployment = Deployment { aws, sdk, state };
    match command {
        ConnectorCommand::Create(args) => create::create(aws, sdk, state, args).await,
        ConnectorCommand::Policy {
            name,
            kms_key_arn,
            json,
        } => policies::policy(deployment, &name, kms_key_arn.as_deref(), json).await,
        ConnectorCommand::Events { name, json } => events::events(deployment, &name, json).await,
        ConnectorCommand::Verify { name, json } => verify::verify(deployment, &name, json).await,
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
            destination,
            postgres,
            webhook,
            stripe,
            output_format,
            discovery,
            json,
        } => {
            let change = update::Change {
                discovery,
                new_name,
                template,
                template_version,
                bucket_region,
                destination,
                postgres,
                webhook,
                stripe,
                output_format,
            };
            update::update(deployment, &name, change, json).await
        }
        ConnectorCommand::Reauth {
            name,
            role_arn,
            no_role,
            rotate_external_id,
            json,
        } => {
            let change = update::Reauth {
                role_arn,
                no_role,
                rotate_external_id,
            };
            update::reauth(deployment, &name, change, json).await
        }
        ConnectorCommand::Schema { name, athena } => schema::schema(state, &name, athena).await,
        ConnectorCommand::Pause { name } => update::pause(state, &name).await,
        ConnectorCommand::Resume { name, no_verify } => {
            update::resume(deployment, &name, no_verify).await
        }
        ConnectorCommand::Delete { name, yes } => delete::delete(state, &name, yes).await,
        ConnectorCommand::Sync {
            name,
            reconcile,
            json,
        } => sync::sync_now(deployment, &name, reconcile, json).await,
        ConnectorCommand::Retry {
            name,
            files,
            skipped: false,
            json,
        } => redo::retry(deployment, &name, files, json).await,
        ConnectorCommand::Retry {
            name,
            files,
            skipped: true,
            json,
        } => redo::retry_skipped(deployment, &name, files, json).await,
        ConnectorCommand::Redrive { name, json } => redo::redrive(deployment, &name, json).await,
        ConnectorCommand::Replay(args) => redo::replay(deployment, args).await,
    }
}

/// What the verbs that reach the deployment (its lister function, its queue, the operator's identity) take
/// along with the state store: the deployment options and the SDK configuration.
#[derive(Clone, Copy)]
pub(crate) struct Deployment<'a> {
    /// The deployment options.
    pub aws: &'a AwsArgs,
    /// The SDK configuration.
    pub sdk: &'a aws_config::SdkConfig,
    /// The state store.
    pub state: &'a dyn StateStore,
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

/// The stored template `id` (at `version`, else its latest); exit status 3 when there is none.
pub(crate) async fn require_template(
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
