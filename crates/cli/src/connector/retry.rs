//! `connector retry`: failed files go back to the queue through the ledger (failed → claimed → queued).

use std::process::ExitCode;

use anyhow::Result;
use chrono::Utc;
use s3_importer_core::sync::ports::FileQueue;
use s3_importer_core::sync::{FileMessage, FileStatus};
use serde_json::json;

use super::{find, Deployment};
use crate::exit::{exit, Status};

/// Runs `connector retry`: every failed file of the connector, or the failed files among `keys`.
pub(super) async fn retry(
    deployment: Deployment<'_>,
    name: &str,
    keys: Vec<String>,
    json: bool,
) -> Result<ExitCode> {
    let Deployment { aws, sdk, state } = deployment;
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
