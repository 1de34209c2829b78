//! `s3-importer run`: the local runner. The notification queue drained through the event handler (when the
//! deployment has one, see `run_events.rs`), one lister pass, then the work queue drained through the worker
//! handler — the same handlers Lambda runs, against whatever endpoint the AWS options name.

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use aws_config::SdkConfig;
use s3_importer_aws::consumer::{Received, SqsConsumer};
use s3_importer_core::sync::SystemClock;
use s3_importer_lister::{Lister, ListerError};
use s3_importer_worker::Worker;
use serde_json::json;

use crate::aws_args::AwsArgs;
use crate::exit::{exit, Status};
use crate::table;

/// Arguments of `run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// One lister pass and one drain of the queue, then exit (otherwise repeat every --interval).
    #[arg(long)]
    once: bool,
    /// Sync only this connector.
    #[arg(long)]
    connector: Option<String>,
    /// Seconds between passes without --once.
    #[arg(long, default_value_t = 300)]
    interval: u64,
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct PassSummary {
    /// Messages acked by the worker.
    pub acked: u64,
    /// Messages the worker asked to retry.
    pub retried: u64,
    /// The connectors whose sync failed, each with its error.
    pub failed_syncs: Vec<(String, String)>,
}

/// Runs the local runner. With `--once`, exit status 1 when a connector's sync failed (the other connectors
/// are still synced and the queue still drained), 3 when `--connector` names no connector.
pub async fn run(aws: &AwsArgs, sdk: &SdkConfig, args: RunArgs) -> Result<ExitCode> {
    let config = aws.config()?;
    let clock = Arc::new(SystemClock);
    let lister = Lister::from_config(&config, sdk, clock.clone());
    let worker = Worker::from_config(&config, sdk, clock);
    let consumer = SqsConsumer::new(
        s3_importer_aws::config::sqs_client(sdk),
        config.queue_url.clone(),
    );
    // S3 events for connectors in `events` mode, when the deployment has a notification queue.
    let notifications = config
        .notification_queue_url
        .as_ref()
        .map(|url| SqsConsumer::new(s3_importer_aws::config::sqs_client(sdk), url.clone()));
    loop {
        if let Some(notifications) = &notifications {
            let drained = crate::run_events::drain(&lister, notifications).await?;
            if drained.acked + drained.retried > 0 {
                outln!(
                    "Notifications: {} handled ({} file version(s) enqueued), {} to retry",
                    drained.acked,
                    drained.enqueued,
                    drained.retried
                );
            }
        }
        let summary = pass(&lister, &worker, &consumer, args.connector.as_deref()).await?;
        if summary.retried > 0 {
            outln!(
                "{} message(s) left for retry: they come back after the queue's visibility timeout",
                summary.retried
            );
        }
        if args.once {
            return match failed_syncs_error(&summary.failed_syncs) {
                Some(error) => Err(error),
                None => Ok(ExitCode::SUCCESS),
            };
        }
        for (connector, error) in &summary.failed_syncs {
            tracing::warn!(%connector, %error, "sync failed");
        }
        tokio::time::sleep(Duration::from_secs(args.interval)).await;
    }
}

/// The error ending `run --once` when syncs failed: which connectors, and why.
fn failed_syncs_error(failed: &[(String, String)]) -> Option<anyhow::Error> {
    if failed.is_empty() {
        return None;
    }
    let each: Vec<String> = failed
        .iter()
        .map(|(connector, error)| format!("{connector}: {error}"))
        .collect();
    let verify = match failed {
        [(one, _)] => one.as_str(),
        _ => "NAME",
    };
    Some(exit(
        Status::Failed,
        format!(
            "the sync of {} connector(s) failed: {} (`s3-importer connector verify {}` diagnoses access problems)",
            failed.len(),
            each.join("; "),
            verify
        ),
    ))
}

/// One lister pass, then the queue drained through the worker handler.
pub async fn pass(
    lister: &Lister,
    worker: &Worker,
    consumer: &SqsConsumer,
    connector: Option<&str>,
) -> Result<PassSummary> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let response =
        s3_importer_lister::handle(lister, json!({ "connector": connector }), &request_id)
            .await
            .map_err(|e| match e {
                ListerError::UnknownConnector(_) => exit(
                    Status::NotFound,
                    format!("{e}: `s3-importer connector list` shows them"),
                ),
                other => anyhow::Error::new(other).context("lister failed"),
            })?;
    let rows: Vec<Vec<String>> = response
        .connectors
        .iter()
        .map(|c| match &c.run {
            Some(r) => vec![
                c.connector.clone(),
                r.listed.to_string(),
                r.new.to_string(),
                r.enqueued.to_string(),
                r.skipped.values().sum::<u64>().to_string(),
                r.error.clone().unwrap_or_default(),
            ],
            None => vec![
                c.connector.clone(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                c.outcome.clone(),
            ],
        })
        .collect();
    outln!("Sync:");
    table::print(
        &["CONNECTOR", "LISTED", "NEW", "ENQUEUED", "SKIPPED", "ERROR"],
        &rows,
    );

    let mut summary = PassSummary {
        failed_syncs: response
            .connectors
            .iter()
            .filter_map(|c| {
                let error = c.run.as_ref()?.error.clone()?;
                Some((c.connector.clone(), error))
            })
            .collect(),
        ..PassSummary::default()
    };
    // Messages the worker handed back stay invisible until their visibility timeout; stop when only those
    // are left (a receive that returns nothing new).
    let mut retried: HashSet<String> = HashSet::new();
    loop {
        let received = consumer
            .receive(10, 1)
            .await
            .context("cannot receive from the work queue")?;
        let fresh: Vec<Received> = received
            .into_iter()
            .filter(|m| !retried.contains(&m.message_id))
            .collect();
        if fresh.is_empty() {
            break;
        }
        let event =
            s3_importer_worker::sqs_event(&fresh, None).context("cannot build the SQS event")?;
        let request_id = uuid::Uuid::new_v4().to_string();
        let response = s3_importer_worker::handle(worker, event, None, &request_id).await;
        let failed: HashSet<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        for message in &fresh {
            if failed.contains(message.message_id.as_str()) {
                summary.retried += 1;
                retried.insert(message.message_id.clone());
            } else {
                consumer
                    .delete(&message.receipt_handle)
                    .await
                    .context("cannot delete a processed message")?;
                summary.acked += 1;
            }
        }
    }
    outln!(
        "Workers: {} file message(s) processed, {} to retry",
        summary.acked,
        summary.retried
    );
    Ok(summary)
}
