//! `connector retry`, `redrive` and `replay`: file versions sent again through the ledger
//! (`s3_importer_core::sync::redo`), each move a conditional write, so repeating a command — or two operators
//! running it at once — sends a file version once.

use std::process::ExitCode;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use s3_importer_aws::consumer::SqsConsumer;
use s3_importer_core::sync::ports::ObjectSource;
use s3_importer_core::sync::redo::{self, ReplayFilter, ReplayPlan, Requeued, SkippedRetry, Sweep};
use s3_importer_core::sync::{Connector, FileStatus, LedgerEntry, SkipReason};
use serde_json::json;

use super::{find, Deployment};
use crate::exit::{exit, Status};

/// Lines of file versions a dry run prints before "… and N more" (`--json` lists them all).
const LISTED: usize = 50;

/// `connector replay`'s options.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Connector name.
    name: String,
    /// Only file versions last modified at or after this: an RFC 3339 time, a date, or an age (30m, 12h, 7d).
    #[arg(long, value_parser = crate::status::parse_since)]
    since: Option<DateTime<Utc>>,
    /// Only file versions last modified before this (same forms as --since).
    #[arg(long, value_parser = crate::status::parse_since)]
    until: Option<DateTime<Utc>>,
    /// Only keys starting with this.
    #[arg(long)]
    prefix: Option<String>,
    /// Only these keys (every version the ledger has of each); repeatable.
    #[arg(long = "key", value_name = "KEY")]
    keys: Vec<String>,
    /// Only file versions with this status (imported, failed, skipped, superseded, gone); repeatable.
    /// Default: imported and failed.
    #[arg(long = "status", value_name = "STATUS")]
    statuses: Vec<FileStatus>,
    /// Replay them; without it, print what would be replayed and the rows at stake.
    #[arg(long)]
    yes: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `connector retry`: every failed file of the connector, or the failed files among `keys`.
pub(super) async fn retry(
    deployment: Deployment<'_>,
    name: &str,
    keys: Vec<String>,
    json: bool,
) -> Result<ExitCode> {
    let (connector, chosen) = with_status(deployment, name, FileStatus::Failed, &keys).await?;
    let done = requeue(deployment, chosen, false).await?;
    report(
        &connector.name,
        "re-queued",
        "failed files to retry",
        &done,
        None,
        json,
    )
}

/// Runs `connector retry --skipped`: every skipped file of the connector (or those among `keys`) decided again
/// from its object as it is now with the configuration's sync settings; the ones now imported are re-queued,
/// the rest are listed with the reason they stay skipped.
pub(super) async fn retry_skipped(
    deployment: Deployment<'_>,
    name: &str,
    keys: Vec<String>,
    json: bool,
) -> Result<ExitCode> {
    let state = deployment.state;
    let (connector, chosen) = with_status(deployment, name, FileStatus::Skipped, &keys).await?;
    let settings = deployment.aws.settings()?.sync;
    let template_format = state
        .get_template(&connector.template_id, connector.template_version)
        .await?
        .and_then(|t| t.template.format);
    let source = s3_importer_aws::S3Source::new(deployment.sdk);
    let mut retry = Vec::new();
    let mut kept: Vec<(String, String)> = Vec::new();
    for entry in chosen {
        let current = source
            .head(
                &connector.source,
                &entry.version.key,
                entry.version.version_id.as_deref(),
            )
            .await
            .with_context(|| {
                format!(
                    "cannot look up s3://{}/{} (`s3-importer connector verify {}` says why)",
                    connector.source.bucket, entry.version.key, connector.name
                )
            })?;
        let why = match redo::redecide_skipped(&entry, current.as_ref(), &settings, template_format)
        {
            SkippedRetry::Import => {
                retry.push(entry);
                continue;
            }
            SkippedRetry::StillSkipped(reason @ SkipReason::TooLarge { .. }) => format!(
                "still skipped: {reason} (S3I_MAX_FILE_BYTES here; set it as the deployment's MaxFileBytes)"
            ),
            SkippedRetry::StillSkipped(reason) => format!("still skipped: {reason}"),
            SkippedRetry::Gone => "gone from the bucket".to_owned(),
            SkippedRetry::Changed => {
                "overwritten since: its new version is the next sync's".to_owned()
            }
        };
        kept.push((entry.version.key, why));
    }
    let done = requeue(deployment, retry, false).await?;
    if json {
        let keys = |list: &[LedgerEntry]| -> Vec<String> {
            list.iter().map(|e| e.version.key.clone()).collect()
        };
        let kept: Vec<_> = kept
            .iter()
            .map(|(key, why)| json!({"key": key, "reason": why}))
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "connector": connector.name,
                "requeued": keys(&done.sent),
                "left_claimed": keys(&done.left_claimed),
                "moved_first": keys(&done.moved_first),
                "not_retried": kept,
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    for (key, why) in &kept {
        outln!("not retried {key}: {why}");
    }
    report(
        &connector.name,
        "re-queued",
        "skipped files the settings of now would import",
        &done,
        None,
        false,
    )
}

/// The connector `name` and its entries in `status` whose key is one of `keys` (all of them without keys); a key
/// with no such entry is a not-found error naming the status.
async fn with_status(
    deployment: Deployment<'_>,
    name: &str,
    status: FileStatus,
    keys: &[String],
) -> Result<(Connector, Vec<LedgerEntry>)> {
    let connector = find(deployment.state, name).await?;
    let entries = deployment
        .state
        .list_files(&connector.id, Some(status))
        .await?;
    if keys.is_empty() {
        return Ok((connector, entries));
    }
    let status = status.as_str();
    let mut chosen = Vec::new();
    for key in keys {
        let matching: Vec<_> = entries
            .iter()
            .filter(|f| &f.version.key == key)
            .cloned()
            .collect();
        if matching.is_empty() {
            return Err(exit(
                Status::NotFound,
                format!(
                    "no {status} file {key:?} in connector {0}: `s3-importer connector files {0} --status {status}` lists them",
                    connector.name
                ),
            ));
        }
        chosen.extend(matching);
    }
    Ok((connector, chosen))
}

/// Runs `connector redrive`: sweeps the dead-letter queue (its files become `failed`), then sends the
/// connector's files that failed that way again.
pub(super) async fn redrive(
    deployment: Deployment<'_>,
    name: &str,
    json: bool,
) -> Result<ExitCode> {
    let state = deployment.state;
    let connector = find(state, name).await?;
    let config = deployment.aws.config()?;
    let sweep = match &config.dead_letter_queue_url {
        Some(url) => {
            let dlq = SqsConsumer::new(s3_importer_aws::config::sqs_client(deployment.sdk), url);
            Some(
                redo::sweep_dead_letters(&dlq, state, config.max_receives, usize::MAX, Utc::now())
                    .await?,
            )
        }
        None => None,
    };
    let dead: Vec<LedgerEntry> = state
        .list_files(&connector.id, Some(FileStatus::Failed))
        .await?
        .into_iter()
        .filter(redo::was_dead_lettered)
        .collect();
    let done = requeue(deployment, dead, false).await?;
    report(
        &connector.name,
        "re-driven",
        "dead-lettered files to re-drive",
        &done,
        sweep.as_ref(),
        json,
    )
}

/// Runs `connector replay`: plans from the ledger, prints the plan without `--yes`, sends it with.
pub(super) async fn replay(deployment: Deployment<'_>, args: ReplayArgs) -> Result<ExitCode> {
    let state = deployment.state;
    let connector = find(state, &args.name).await?;
    let filter = ReplayFilter {
        since: args.since,
        until: args.until,
        prefix: args.prefix,
        keys: args.keys,
        statuses: args.statuses,
    };
    filter
        .check()
        .map_err(|e| exit(Status::Usage, e.to_string()))?;
    let entries = state.list_files(&connector.id, None).await?;
    let unknown = filter.unknown_keys(&entries);
    if !unknown.is_empty() {
        let names: Vec<String> = unknown.iter().map(|k| format!("{k:?}")).collect();
        return Err(exit(
            Status::NotFound,
            format!(
                "connector {} has no file {}: `s3-importer connector files {}` lists them",
                connector.name,
                names.join(", "),
                connector.name
            ),
        ));
    }
    let plan = filter.plan(entries);
    if !args.yes {
        print_plan(&connector.name, &plan, args.json)?;
        return Ok(ExitCode::SUCCESS);
    }
    let in_flight = plan.in_flight.len();
    let done = requeue(deployment, plan.replay, true).await?;
    report(
        &connector.name,
        "replayed",
        "file versions to replay",
        &done,
        None,
        args.json,
    )?;
    if in_flight > 0 && !args.json {
        outln!("{in_flight} matching file version(s) are being imported now and were left alone");
    }
    Ok(ExitCode::SUCCESS)
}

async fn requeue(
    deployment: Deployment<'_>,
    entries: Vec<LedgerEntry>,
    replay: bool,
) -> Result<Requeued> {
    let config = deployment.aws.config()?;
    let queue = s3_importer_aws::SqsQueue::new(
        s3_importer_aws::config::sqs_client(deployment.sdk),
        config.queue_url,
    );
    Ok(redo::requeue(deployment.state, &queue, entries, replay, Utc::now()).await?)
}

fn print_plan(connector: &str, plan: &ReplayPlan, json: bool) -> Result<()> {
    if json {
        let files: Vec<_> = plan.replay.iter().map(file_json).collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "connector": connector,
                "dry_run": true,
                "replay": files,
                "rows_at_stake": plan.rows_at_stake,
                "in_flight": plan.in_flight.len(),
            }))?
        );
        return Ok(());
    }
    if plan.replay.is_empty() {
        outln!("no file version of connector {connector} matches");
    } else {
        outln!(
            "would replay {} file version(s) of connector {connector}; they imported {} row(s) last time:",
            plan.replay.len(),
            plan.rows_at_stake
        );
        for e in plan.replay.iter().take(LISTED) {
            outln!(
                "  {:<9} {}  {}  ({} rows)",
                e.status.as_str(),
                e.last_modified.format("%Y-%m-%d %H:%M:%S"),
                e.version.key,
                e.rows_imported
            );
        }
        if plan.replay.len() > LISTED {
            outln!(
                "  … and {} more (--json lists them all)",
                plan.replay.len() - LISTED
            );
        }
    }
    if !plan.in_flight.is_empty() {
        outln!(
            "{} matching file version(s) are being imported now: a replay leaves them alone",
            plan.in_flight.len()
        );
    }
    if !plan.replay.is_empty() {
        outln!("nothing was sent: add --yes to replay them");
    }
    Ok(())
}

fn file_json(e: &LedgerEntry) -> serde_json::Value {
    json!({
        "key": e.version.key,
        "etag": e.version.etag,
        "version_id": e.version.version_id,
        "status": e.status.as_str(),
        "last_modified": e.last_modified,
        "rows_imported": e.rows_imported,
        "replays": e.replays,
    })
}

fn report(
    connector: &str,
    verb: &str,
    nothing: &str,
    done: &Requeued,
    sweep: Option<&Sweep>,
    json: bool,
) -> Result<ExitCode> {
    if json {
        let keys = |list: &[LedgerEntry]| -> Vec<String> {
            list.iter().map(|e| e.version.key.clone()).collect()
        };
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "connector": connector,
                "requeued": keys(&done.sent),
                "left_claimed": keys(&done.left_claimed),
                "moved_first": keys(&done.moved_first),
                "dead_letters": sweep,
            }))?
        );
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(sweep) = sweep {
        outln!(
            "dead-letter queue: {} file(s) marked failed, {} stale message(s) removed, {} kept (a worker holds the file), {} unreadable",
            sweep.failed.len(),
            sweep.stale,
            sweep.kept,
            sweep.unreadable
        );
    }
    let total = done.sent.len() + done.left_claimed.len();
    if total == 0 && done.moved_first.is_empty() {
        outln!("no {nothing} in connector {connector}");
        return Ok(ExitCode::SUCCESS);
    }
    for e in &done.sent {
        outln!("{verb} {}", e.version.key);
    }
    for e in &done.left_claimed {
        outln!(
            "{verb} {} (the queue refused it for now: the next lister run sends it)",
            e.version.key
        );
    }
    for e in &done.moved_first {
        outln!(
            "left {}: it moved on first (another command or a worker is on it)",
            e.version.key
        );
    }
    if total > 0 {
        outln!(
            "{total} file(s) {verb}; `s3-importer connector files {connector}` shows their progress"
        );
    }
    Ok(ExitCode::SUCCESS)
}
