//! `connector sync`: one sync of a connector now, through the deployment's lister function or in this process.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use serde_json::json;

use super::{find, Deployment};
use crate::exit::{exit, Status};
use crate::remote;

/// Runs `connector sync`.
pub(super) async fn sync_now(
    deployment: Deployment<'_>,
    name: &str,
    reconcile: bool,
    json: bool,
) -> Result<ExitCode> {
    let Deployment { aws, sdk, state } = deployment;
    let connector = find(state, name).await?;
    let action = if reconcile { "reconcile" } else { "sync" };
    let response = match &aws.lister_function {
        // The deployment's function syncs as its own role (the source role's trust policy admits it).
        Some(function) => {
            let client = aws_sdk_lambda::Client::new(sdk);
            remote::invoke(&client, function, &remote::request(action, &connector.id))
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
            s3_importer_lister::handle(&lister, remote::request(action, &connector.id), &request_id)
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
                if let Some(r) = &run.reconciled {
                    outln!(
                        "reconciled {}: {} listed in {} calls, {} found ({} missed by events, {} found late){}",
                        connector.name,
                        r.listed,
                        r.list_calls,
                        r.found,
                        r.missed_by_events,
                        r.found_late,
                        if r.complete { "" } else { "; the next scheduled run continues it" }
                    );
                }
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
