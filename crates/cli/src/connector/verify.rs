//! `connector verify`: the connection check, run through the deployment's lister function or in this process,
//! and its report. `reauth` and `resume` run the same check before they change a connector's status.

use std::process::ExitCode;

use anyhow::{Context, Result};
use s3_importer_aws::verify::{Check, Doctor, Report};
use s3_importer_core::sync::{Connector, ConnectorStatus, DestinationConfig, Discovery};
use serde_json::json;

use super::{find, postgres, require_template, stripe, template_format, webhook, Deployment};
use crate::aws_args::AwsArgs;
use crate::exit::Status;
use crate::{remote, table};

/// Runs `connector verify`: exit status 5 when a check fails or the check was not conclusive. A PostgreSQL
/// connector's table is checked too (a `table` check with the `ALTER TABLE`s that fix it).
pub(super) async fn verify(deployment: Deployment<'_>, name: &str, json: bool) -> Result<ExitCode> {
    let Deployment { state, sdk, .. } = deployment;
    let connector = find(state, name).await?;
    let mut checked = check_connection(deployment, &connector).await?;
    if matches!(connector.destination, DestinationConfig::Postgres { .. }) {
        // The destination's table, checked from here (see `postgres`): not part of the connector's status.
        let stored =
            require_template(state, &connector.template_id, connector.template_version).await?;
        if let Some(check) = postgres::check_table(sdk, &connector, &stored.template).await {
            checked.report.checks.push(check);
        }
    }
    if let Some(check) = webhook::check_webhook(sdk, &connector).await {
        // The receiver, probed from here with a signed request: not part of the connector's status.
        checked.report.checks.push(check);
    }
    if let Some(check) = stripe::check_stripe(sdk, &connector).await {
        // The key, checked from here with a read call: not part of the connector's status.
        checked.report.checks.push(check);
    }
    print_report(&connector, &checked.report, json)?;
    Ok(checked.exit_code())
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
pub(super) struct Checked {
    pub(super) report: Report,
    /// False when the check could not run as a principal of the trust policy (see [`ASSUME_NOT_CHECKED`]).
    conclusive: bool,
}

impl Checked {
    /// The connector's status after this check: `previous` when it was not conclusive.
    pub(super) fn status_after(&self, previous: &ConnectorStatus) -> ConnectorStatus {
        if self.conclusive {
            status_after(&self.report)
        } else {
            previous.clone()
        }
    }

    pub(super) fn exit_code(&self) -> ExitCode {
        if self.conclusive && self.report.ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(Status::CheckFailed as u8)
        }
    }
}

/// Checks `connector`'s connection: through the deployment's lister function when it is known (the check then
/// runs as the deployment's role), else in this process.
pub(super) async fn check_connection(
    deployment: Deployment<'_>,
    connector: &Connector,
) -> Result<Checked> {
    let Deployment { aws, sdk, state } = deployment;
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
    let doctor = Doctor::new(sdk);
    let mut report = doctor
        .verify(&connector.source, template_format(state, connector).await)
        .await;
    if connector.discovery == Discovery::Events {
        let queue_arn = aws.notification_queue_arn(sdk);
        report.checks.push(
            doctor
                .verify_notifications(&connector.source, queue_arn.as_deref())
                .await,
        );
    }
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

pub(super) fn print_report(connector: &Connector, report: &Report, json: bool) -> Result<()> {
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
