//! `connector list | show | files | syncs`: what connectors are doing, for people (tables) and scripts (`--json`).

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::Result;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use s3_importer_core::sync::ports::StateStore;
use s3_importer_core::sync::{
    Connector, ConnectorStatus, DestinationConfig, Discovery, FileStatus, LedgerEntry, SyncRun,
};
use serde_json::json;

use crate::connector::find;
use crate::exit::{exit, Status};
use crate::table;

/// Arguments of `connector files`.
#[derive(Debug, clap::Args)]
pub struct FilesArgs {
    /// Connector name.
    name: String,
    /// Only files with this status (claimed, queued, processing, imported, failed, skipped, superseded, gone).
    #[arg(long)]
    status: Option<FileStatus>,
    /// Only files discovered since then: an RFC 3339 time (2024-05-01T12:00:00Z), a date (2024-05-01), or an
    /// age (30m, 12h, 7d).
    #[arg(long, value_parser = parse_since)]
    since: Option<DateTime<Utc>>,
    /// Show the timeline columns too: attempts, discovered, queued, started, finished.
    #[arg(long)]
    timeline: bool,
    /// Print JSON (every field, timeline included).
    #[arg(long)]
    json: bool,
}

/// Parses `--since`: RFC 3339, a date (midnight UTC), or an age before now (`30m`, `12h`, `7d`).
pub fn parse_since(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        if let Some(t) = d.and_hms_opt(0, 0, 0) {
            return Ok(t.and_utc());
        }
    }
    let (number, unit) = s.split_at(s.len().saturating_sub(1));
    let n: i64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a time: use 2024-05-01T12:00:00Z, 2024-05-01, or an age like 30m, 12h, 7d"))?;
    let age = match unit {
        "s" => Duration::try_seconds(n),
        "m" => Duration::try_minutes(n),
        "h" => Duration::try_hours(n),
        "d" => Duration::try_days(n),
        _ => None,
    }
    .ok_or_else(|| format!("{s:?}: the age's unit must be s, m, h or d"))?;
    Ok(Utc::now() - age)
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

fn source_uri(c: &Connector) -> String {
    format!(
        "s3://{}/{}",
        c.source.bucket,
        c.source.prefix.as_deref().unwrap_or("")
    )
}

fn status_text(status: &ConnectorStatus) -> String {
    match status {
        ConnectorStatus::Broken { reason } => format!("broken: {reason}"),
        other => other.as_str().to_owned(),
    }
}

/// A destination as `connector show` prints it.
pub fn destination_text(d: &DestinationConfig) -> String {
    match d {
        DestinationConfig::Dynamodb { table } => format!("dynamodb:{table}"),
        DestinationConfig::S3Jsonl { bucket, prefix } => format!("s3://{bucket}/{prefix}"),
        DestinationConfig::Postgres { table, connection } => {
            format!("postgres:{table} ({connection})")
        }
        DestinationConfig::S3Parquet { bucket, prefix } => {
            format!("s3://{bucket}/{prefix} (parquet)")
        }
        DestinationConfig::Webhook(w) => {
            // The query is left out: it may hold a token.
            let url = w.url.split('?').next().unwrap_or_default();
            let private = if w.allow_private {
                ", private targets allowed"
            } else {
                ""
            };
            format!("webhook {url} (signed with {}{private})", w.secret)
        }
        DestinationConfig::Stripe(c) => {
            let base = c.base_url.as_deref().unwrap_or("https://api.stripe.com");
            format!("stripe {} at {base} (key from {})", c.object.name(), c.key)
        }
    }
}

fn run_summary(r: &SyncRun) -> String {
    let mut s = format!(
        "{} ({} found, {} enqueued, {} skipped, {} ms)",
        time(Some(r.started_at)),
        r.candidates,
        r.enqueued,
        r.skipped.values().sum::<u64>(),
        r.duration_ms
    );
    if let Some(e) = &r.error {
        s.push_str(&format!(" error: {e}"));
    }
    s
}

/// `connector list`.
pub async fn list(state: &dyn StateStore, json: bool) -> Result<ExitCode> {
    let connectors = state.list_connectors().await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&connectors)?);
        return Ok(ExitCode::SUCCESS);
    }
    if connectors.is_empty() {
        outln!("no connectors: `s3-importer connector create --help` shows how to make one");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = connectors
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.status.as_str().to_owned(),
                source_uri(c),
                match c.template_version {
                    Some(v) => format!("{} v{v}", c.template_id),
                    None => c.template_id.clone(),
                },
                c.last_sync
                    .as_ref()
                    .map(run_summary)
                    .unwrap_or_else(|| "never".into()),
            ]
        })
        .collect();
    table::print(
        &["NAME", "STATUS", "SOURCE", "TEMPLATE", "LAST SYNC"],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

/// Per-status counts and row totals of a connector's ledger.
#[derive(Debug, Default, serde::Serialize)]
struct Totals {
    files: u64,
    by_status: BTreeMap<String, u64>,
    rows_imported: u64,
    rows_rejected: u64,
}

fn totals(files: &[LedgerEntry]) -> Totals {
    let mut t = Totals::default();
    for f in files {
        t.files += 1;
        *t.by_status.entry(f.status.to_string()).or_default() += 1;
        t.rows_imported += f.rows_imported;
        t.rows_rejected += f.rows_rejected;
    }
    t
}

/// `connector show`.
pub async fn show(state: &dyn StateStore, name: &str, json: bool) -> Result<ExitCode> {
    let c = find(state, name).await?;
    let template = state
        .get_template(&c.template_id, c.template_version)
        .await?;
    let files = state.list_files(&c.id, None).await?;
    let totals = totals(&files);
    if json {
        let out = json!({
            "connector": c,
            "template": template.as_ref().map(|t| json!({"id": t.id, "version": t.version})),
            "totals": totals,
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    let template_text = match (&template, c.template_version) {
        (Some(t), Some(_)) => format!("{} version {} (pinned)", t.id, t.version),
        (Some(t), None) => format!("{} version {} (latest)", t.id, t.version),
        (None, _) => format!(
            "{} (missing: store it with `s3-importer template add`)",
            c.template_id
        ),
    };
    let mut lines: Vec<(&str, String)> = vec![
        ("name", c.name.clone()),
        ("id", c.id.clone()),
        ("status", status_text(&c.status)),
        ("source", source_uri(&c)),
        ("account", c.source.account_id.clone()),
        ("region", c.source.region.clone()),
        (
            "role",
            c.source
                .role_arn
                .clone()
                .unwrap_or_else(|| "none (the deployment's own credentials)".into()),
        ),
        (
            "external id",
            c.source.external_id.clone().unwrap_or_default(),
        ),
        ("template", template_text),
        ("destination", destination_text(&c.destination)),
        (
            "discovery",
            match c.discovery {
                Discovery::Poll => "poll (the scheduled listing)".into(),
                Discovery::Events => {
                    "events (S3 notifications; `connector events` prints the setup)".into()
                }
            },
        ),
        (
            "versions",
            if c.source.versions {
                "every version of a key (a versioned bucket: ListObjectVersions, reads by VersionId)".into()
            } else {
                "the current object of each key".into()
            },
        ),
        ("created", time(Some(c.created_at))),
        ("updated", time(Some(c.updated_at))),
        (
            "watermark",
            c.watermark
                .map(|w| time(Some(w)))
                .unwrap_or_else(|| "none (first sync pending)".into()),
        ),
        (
            "last sync",
            c.last_sync
                .as_ref()
                .map(run_summary)
                .unwrap_or_else(|| "never".into()),
        ),
    ];
    let by_status = totals
        .by_status
        .iter()
        .map(|(s, n)| format!("{n} {s}"))
        .collect::<Vec<_>>()
        .join(", ");
    lines.push((
        "files",
        if totals.files == 0 {
            "none yet".into()
        } else {
            format!("{} ({by_status})", totals.files)
        },
    ));
    lines.push((
        "rows",
        format!(
            "{} imported, {} rejected",
            totals.rows_imported, totals.rows_rejected
        ),
    ));
    for (k, v) in lines {
        outln!("{:<12} {v}", format!("{k}:"));
    }
    Ok(ExitCode::SUCCESS)
}

/// `connector files`.
pub async fn files(state: &dyn StateStore, args: FilesArgs) -> Result<ExitCode> {
    let connector = find(state, &args.name).await?;
    let mut files = state.list_files(&connector.id, args.status).await?;
    if let Some(since) = args.since {
        files.retain(|f| f.discovered_at >= since);
    }
    files.sort_by(|a, b| {
        a.version
            .key
            .cmp(&b.version.key)
            .then(a.discovered_at.cmp(&b.discovered_at))
    });
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&files)?);
        return Ok(ExitCode::SUCCESS);
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
            let mut row = vec![
                f.version.key.clone(),
                f.status.to_string(),
                f.size.to_string(),
                f.rows_imported.to_string(),
                f.rows_rejected.to_string(),
            ];
            if args.timeline {
                row.extend([
                    f.attempts.to_string(),
                    time(Some(f.discovered_at)),
                    time(f.queued_at),
                    time(f.started_at),
                    time(f.finished_at),
                ]);
            }
            row.push(detail);
            row
        })
        .collect();
    let mut header = vec!["KEY", "STATUS", "BYTES", "IMPORTED", "REJECTED"];
    if args.timeline {
        header.extend(["ATTEMPTS", "DISCOVERED", "QUEUED", "STARTED", "FINISHED"]);
    }
    header.push("DETAIL");
    table::print(&header, &rows);
    Ok(ExitCode::SUCCESS)
}

/// `connector syncs`.
pub async fn syncs(
    state: &dyn StateStore,
    name: &str,
    limit: usize,
    json: bool,
) -> Result<ExitCode> {
    if limit == 0 {
        return Err(exit(Status::Usage, "--limit must be at least 1"));
    }
    let connector = find(state, name).await?;
    let runs = state.list_sync_runs(&connector.id, limit).await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&runs)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = runs
        .iter()
        .map(|r| {
            vec![
                time(Some(r.started_at)),
                r.duration_ms.to_string(),
                r.listed.to_string(),
                r.candidates.to_string(),
                r.new.to_string(),
                r.enqueued.to_string(),
                r.skipped.values().sum::<u64>().to_string(),
                r.already_known.to_string(),
                r.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table::print(
        &[
            "STARTED", "MS", "LISTED", "FOUND", "NEW", "ENQUEUED", "SKIPPED", "KNOWN", "ERROR",
        ],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_times_dates_and_ages() {
        assert_eq!(
            parse_since("2024-05-01T12:00:00Z").unwrap(),
            DateTime::parse_from_rfc3339("2024-05-01T12:00:00Z").unwrap()
        );
        assert_eq!(
            parse_since("2024-05-01").unwrap(),
            DateTime::parse_from_rfc3339("2024-05-01T00:00:00Z").unwrap()
        );
        let age = Utc::now() - parse_since("2h").unwrap();
        assert!((age - Duration::hours(2)).num_seconds().abs() < 5);
        assert!(parse_since("2w").is_err());
        assert!(parse_since("yesterday").is_err());
    }
}
