//! Claiming file versions once in the ledger and sending the claimed ones: the one path by which a file
//! version reaches the work queue, whether a listing (`lister.rs`) or an S3 event (`events/`) found it
//! (`docs/architecture.md`, "Data flow").

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use tracing::warn;

use super::lister::ListerDeps;
use super::model::{Connector, FileMessage, FileStatus, FileVersion, LedgerEntry, ObjectMeta};
use super::ports::{ClaimOutcome, FileLedger, FileQueue, StateError};
use super::rules::Decision;

/// The ledger entry discovery records for one object, given its decision: to import (with its format) or
/// skipped (with the reason). Lister and events build entries the same way.
pub fn entry_for(
    connector: &Connector,
    object: &ObjectMeta,
    decision: Decision,
    now: DateTime<Utc>,
) -> LedgerEntry {
    let version = FileVersion {
        connector_id: connector.id.clone(),
        bucket: connector.source.bucket.clone(),
        key: object.key.clone(),
        etag: object.etag.clone(),
        version_id: object.version_id.clone(),
    };
    let mut entry = LedgerEntry::discovered(version, object, now);
    match decision {
        Decision::Import(format) => entry.format = Some(format),
        Decision::Skip(reason) => {
            entry.status = FileStatus::Skipped;
            entry.finished_at = Some(now);
            entry.skip_reason = Some(reason);
        }
        Decision::Ignore(_) => {}
    }
    entry
}

/// What claiming a set of entries did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimTally {
    /// Entries this call created (sent, or recorded as skipped).
    pub new: u64,
    /// Entries the ledger already had (another pass or event was first).
    pub already_known: u64,
    /// Entries created as skipped, by reason code.
    pub skipped: BTreeMap<String, u64>,
    /// Messages SQS accepted.
    pub enqueued: u64,
    /// Every entry was claimed (or known) and every claimed one sent.
    pub complete: bool,
}

/// Why claiming stopped before the end.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// The ledger could not be read.
    #[error(transparent)]
    State(#[from] StateError),
    /// The queue refused the whole batch.
    #[error("cannot send to the work queue: {0}")]
    Queue(String),
}

/// Claims each entry not yet in the ledger with a conditional write, then sends one message per entry this call
/// created (skipped entries are recorded, not sent) and marks each accepted one `queued`. Only the caller that
/// creates an entry sends it, so two listers, or a lister and an event, send a file version once.
pub async fn claim_and_send(
    deps: &ListerDeps,
    connector_id: &str,
    considered: Vec<LedgerEntry>,
    claim_concurrency: usize,
    now: DateTime<Utc>,
) -> Result<ClaimTally, ClaimError> {
    let mut tally = ClaimTally {
        complete: true,
        ..ClaimTally::default()
    };
    let ids: Vec<String> = considered.iter().map(|e| e.version.file_id()).collect();
    let known: HashMap<String, LedgerEntry> = if ids.is_empty() {
        HashMap::new()
    } else {
        deps.ledger.get_files(connector_id, &ids).await?
    };
    let fresh: Vec<LedgerEntry> = considered
        .into_iter()
        .filter(|e| !known.contains_key(&e.version.file_id()))
        .collect();
    tally.already_known += ids.len() as u64 - fresh.len() as u64;

    let claims = stream::iter(fresh)
        .map(|entry| async move {
            let outcome = deps.ledger.claim_file(&entry).await;
            (entry, outcome)
        })
        .buffer_unordered(claim_concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    let mut to_send = Vec::new();
    for (entry, outcome) in claims {
        match outcome {
            Ok(ClaimOutcome::Claimed) => {
                tally.new += 1;
                if let Some(reason) = &entry.skip_reason {
                    *tally.skipped.entry(reason.code().to_owned()).or_default() += 1;
                } else {
                    to_send.push(entry);
                }
            }
            Ok(ClaimOutcome::AlreadyKnown) => tally.already_known += 1,
            Err(e) => {
                warn!(connector = %connector_id, key = %entry.version.key, error = %e, "claim failed");
                tally.complete = false;
            }
        }
    }
    if !to_send.is_empty() {
        let (sent, all) = send(deps, connector_id, &to_send, now).await?;
        tally.enqueued += sent;
        tally.complete &= all;
    }
    Ok(tally)
}

/// Sends one message per entry and marks the accepted ones `queued`. Returns (accepted, all accepted).
pub(crate) async fn send(
    deps: &ListerDeps,
    connector_id: &str,
    entries: &[LedgerEntry],
    now: DateTime<Utc>,
) -> Result<(u64, bool), ClaimError> {
    send_to(&*deps.ledger, &*deps.queue, connector_id, entries, now).await
}

/// [`send`] with the ledger and queue alone (the CLI's retries and replays have no lister).
pub(crate) async fn send_to(
    ledger: &dyn FileLedger,
    queue: &dyn FileQueue,
    connector_id: &str,
    entries: &[LedgerEntry],
    now: DateTime<Utc>,
) -> Result<(u64, bool), ClaimError> {
    let messages: Vec<FileMessage> = entries.iter().map(FileMessage::for_entry).collect();
    let accepted = queue
        .send(&messages)
        .await
        .map_err(|e| ClaimError::Queue(e.to_string()))?;
    let mut sent = 0;
    let mut all = true;
    for (entry, ok) in entries.iter().zip(accepted) {
        if !ok {
            // Still `claimed`: the next run resends it once it is older than `resend_claimed_after`.
            all = false;
            continue;
        }
        sent += 1;
        // A failure here leaves the entry `claimed` although SQS has the message; a later resend would
        // deliver it twice, which the worker's ledger check turns into a no-op.
        if let Err(e) = ledger
            .mark_queued(connector_id, &entry.version.file_id(), now)
            .await
        {
            warn!(connector = %connector_id, key = %entry.version.key, error = %e, "cannot mark file queued");
        }
    }
    Ok((sent, all))
}
