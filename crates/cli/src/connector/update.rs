//! The verbs that change a stored connector: `update` (name, template, bucket region), `reauth` (role, External
//! ID, then verify), `pause` and `resume` (verify, then active again).

use std::process::ExitCode;

use anyhow::Result;
use chrono::Utc;
use s3_importer_aws::verify::CheckStatus;
use s3_importer_core::policy;
use s3_importer_core::sync::ports::StateStore;
use s3_importer_core::sync::{ConnectorStatus, DestinationConfig, Discovery};

use super::create::{new_external_id, parse_destination, OutputFormat};
use super::policies::policies;
use super::postgres::{self, PostgresArgs};
use super::stripe::StripeArgs;
use super::verify::{check_connection, print_report};
use super::webhook::{self, WebhookArgs};
use super::{find, require_template, Deployment};
use crate::exit::{exit, Status};

/// What `connector update` changes (each `None` keeps the stored value).
#[derive(Debug)]
pub(super) struct Change {
    /// The new name.
    pub new_name: Option<String>,
    /// The new template id (its latest version unless `template_version` pins one).
    pub template: Option<String>,
    /// The template version to pin.
    pub template_version: Option<u32>,
    /// The source bucket's corrected region.
    pub bucket_region: Option<String>,
    /// The new destination (`create --destination`'s syntax).
    pub destination: Option<String>,
    /// A PostgreSQL destination's connection, and whether to create its table.
    pub postgres: PostgresArgs,
    /// A webhook destination's secret and limits.
    pub webhook: WebhookArgs,
    /// A Stripe destination's key and limits.
    pub stripe: StripeArgs,
    /// The new format of an S3 destination's objects (new files only).
    pub output_format: Option<OutputFormat>,
    /// The new discovery mode.
    pub discovery: Option<Discovery>,
}

/// Runs `connector update`.
pub(super) async fn update(
    deployment: Deployment<'_>,
    name: &str,
    change: Change,
    json: bool,
) -> Result<ExitCode> {
    let Deployment { aws, sdk, state } = deployment;
    let Change {
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
    } = change;
    let mut connector = find(state, name).await?;
    if new_name.is_none()
        && template.is_none()
        && template_version.is_none()
        && bucket_region.is_none()
        && destination.is_none()
        && output_format.is_none()
        && discovery.is_none()
    {
        return Err(exit(
            Status::Usage,
            "nothing to change: pass --name, --template, --template-version, --bucket-region, --destination, \
             --output-format or --discovery",
        ));
    }
    let table_may_change =
        destination.is_some() || template.is_some() || template_version.is_some();
    if let Some(spec) = &destination {
        connector.destination = parse_destination(
            spec,
            output_format.unwrap_or(OutputFormat::Jsonl),
            aws.records_table.as_deref(),
            aws.output_bucket.as_deref(),
            &postgres,
            &webhook,
            &stripe,
        )?;
        webhook::check_target(&connector.destination).await?;
    } else if stripe.any() {
        return Err(exit(
            Status::Usage,
            "--stripe-* options go with --destination stripe:OBJECT",
        ));
    } else if webhook.any() {
        return Err(exit(
            Status::Usage,
            "--webhook-* options go with --destination https://…",
        ));
    } else if postgres.postgres_secret.is_some()
        || postgres.postgres_url_env.is_some()
        || postgres.create_table
    {
        return Err(exit(
            Status::Usage,
            "--postgres-secret, --postgres-url-env and --create-table go with --destination postgres:TABLE",
        ));
    }
    if let (Some(format), None) = (output_format, &destination) {
        connector.destination = match connector.destination {
            DestinationConfig::S3Jsonl { bucket, prefix }
            | DestinationConfig::S3Parquet { bucket, prefix } => format.s3(bucket, prefix),
            _ => {
                return Err(exit(
                    Status::Usage,
                    "--output-format applies to a connector with an s3 destination",
                ))
            }
        };
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
    if let Some(discovery) = discovery {
        // From events back to polling, the next listing looks back from the watermark (or the lookback on a
        // first listing); the ledger keeps what the events already claimed from being sent twice.
        connector.discovery = discovery;
    }
    let stored =
        require_template(state, &connector.template_id, connector.template_version).await?;
    super::stripe::check_template(&connector.destination, &stored.template)?;
    connector.updated_at = Utc::now();
    state.update_connector(&connector).await?;
    // The table of a PostgreSQL destination: created or checked when the destination or template changed.
    let table = if table_may_change {
        postgres::prepare_table(sdk, &connector, &stored.template, postgres.create_table).await
    } else {
        None
    };
    let code = match &table {
        Some(check) if check.status == CheckStatus::Fail => {
            ExitCode::from(Status::CheckFailed as u8)
        }
        _ => ExitCode::SUCCESS,
    };
    if json {
        let mut out = serde_json::to_value(&connector)?;
        if let Some(check) = &table {
            out["table"] = serde_json::to_value(check)?;
        }
        outln!("{}", serde_json::to_string_pretty(&out)?);
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
        if destination.is_some() || output_format.is_some() {
            outln!(
                "destination: {} (files imported from now on)",
                crate::status::destination_text(&connector.destination)
            );
        }
        if let Some(check) = &table {
            postgres::print_check(check);
        }
    }
    Ok(code)
}

/// What `connector reauth` changes before it verifies.
#[derive(Debug)]
pub(super) struct Reauth {
    /// The role to assume from now on.
    pub role_arn: Option<String>,
    /// Stop assuming a role.
    pub no_role: bool,
    /// Generate a new External ID.
    pub rotate_external_id: bool,
}

/// Runs `connector reauth`: stores the new role or External ID, verifies, and leaves the connector active only
/// when the check passes (exit status 5 otherwise).
pub(super) async fn reauth(
    deployment: Deployment<'_>,
    name: &str,
    change: Reauth,
    json: bool,
) -> Result<ExitCode> {
    let Deployment { aws, sdk, state } = deployment;
    let Reauth {
        role_arn,
        no_role,
        rotate_external_id,
    } = change;
    let mut connector = find(state, name).await?;
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
    let checked = check_connection(deployment, &connector).await?;
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

/// Runs `connector pause`.
pub(super) async fn pause(state: &dyn StateStore, name: &str) -> Result<ExitCode> {
    let mut connector = find(state, name).await?;
    connector.status = ConnectorStatus::Paused;
    connector.updated_at = Utc::now();
    state.update_connector(&connector).await?;
    outln!(
        "paused connector {}: no syncs until `s3-importer connector resume {}` (files already queued are still imported)",
        connector.name, connector.name
    );
    Ok(ExitCode::SUCCESS)
}

/// Runs `connector resume`: verifies (unless `no_verify`) and makes the connector active when the check passes.
pub(super) async fn resume(
    deployment: Deployment<'_>,
    name: &str,
    no_verify: bool,
) -> Result<ExitCode> {
    let Deployment { state, .. } = deployment;
    let mut connector = find(state, name).await?;
    let mut code = ExitCode::SUCCESS;
    if no_verify {
        connector.status = ConnectorStatus::Active;
    } else {
        let checked = check_connection(deployment, &connector).await?;
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
