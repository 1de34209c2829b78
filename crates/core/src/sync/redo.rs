//! Sending file versions again on a user's request, through the ledger: `connector retry` and `redrive`
//! (failed files), `connector replay` (any final file version, imported ones included), and the sweep of the
//! dead-letter queue that turns files whose messages ran out of receives into `failed` ones
//! (README, "Replay and re-drive").
//!
//! Every move is a conditional ledger write from the state the caller saw (`reopen_file`), so two callers
//! never send one file version twice, and a file already on its way is left alone.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::{info, warn};

use super::claim::{self, ClaimError};
use super::model::{FileMessage, FileStatus, LedgerEntry, ObjectMeta, SkipReason};
use super::ports::{DeadLetterQueue, FileLedger, FileQueue, QueueError, StateError};
use super::rules::{self, Decision, SyncSettings};
use crate::format::Format;

/// The start of the `error` a dead-lettered file gets; `redrive` sends the failed files whose error starts so.
pub const DEAD_LETTER_REASON: &str = "moved to the dead-letter queue";

/// The error recorded on a file whose message reached the dead-letter queue after `receives` receives.
pub fn dead_letter_reason(receives: u32) -> String {
    format!("{DEAD_LETTER_REASON} after {receives} receives")
}

/// Whether a failed entry failed because its message reached the dead-letter queue.
pub fn was_dead_lettered(entry: &LedgerEntry) -> bool {
    entry.status == FileStatus::Failed
        && entry
            .error
            .as_deref()
            .is_some_and(|e| e.starts_with(DEAD_LETTER_REASON))
}

/// What a retry of a skipped file finds when it decides again with the settings of now (`connector retry
/// --skipped`): a limit raised, a template that now names the format, an object restored from an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkippedRetry {
    /// The rules now import it: reopen and send it.
    Import,
    /// Still skipped, for this reason (the setting to change is in the reason).
    StillSkipped(SkipReason),
    /// The key is gone from the bucket.
    Gone,
    /// The key holds another version now (its own ledger entry, found by the next sync).
    Changed,
}

/// Decides a skipped entry again from its object as it is now (`current`, from HeadObject; `None` when gone)
/// with today's `settings` and the template's format. The time window does not apply: the file was in it.
pub fn redecide_skipped(
    entry: &LedgerEntry,
    current: Option<&ObjectMeta>,
    settings: &SyncSettings,
    template_format: Option<Format>,
) -> SkippedRetry {
    let Some(object) = current else {
        return SkippedRetry::Gone;
    };
    if object.etag != entry.version.etag {
        return SkippedRetry::Changed;
    }
    match rules::decide(object, DateTime::<Utc>::MIN_UTC, settings, template_format) {
        Decision::Import(_) => SkippedRetry::Import,
        Decision::Skip(reason) => SkippedRetry::StillSkipped(reason),
        // A folder marker is never an entry; treat it as what it is.
        Decision::Ignore(_) => SkippedRetry::Gone,
    }
}

/// Which file versions a replay takes (`connector replay`'s filters; all of them must match).
#[derive(Debug, Clone, Default)]
pub struct ReplayFilter {
    /// LastModified at or after.
    pub since: Option<DateTime<Utc>>,
    /// LastModified before.
    pub until: Option<DateTime<Utc>>,
    /// Keys starting with this.
    pub prefix: Option<String>,
    /// Exactly these keys (every version of each); empty: any key.
    pub keys: Vec<String>,
    /// These statuses; empty: `imported` and `failed`. Only final statuses can be replayed.
    pub statuses: Vec<FileStatus>,
}

/// What a replay would do: the entries it reopens, those it leaves because they are on their way, and the
/// rows at stake (imported by the entries it reopens).
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReplayPlan {
    /// Final entries that match: replayed.
    pub replay: Vec<LedgerEntry>,
    /// Matching entries not final (claimed, queued, processing): left alone, they are being imported.
    pub in_flight: Vec<LedgerEntry>,
    /// Rows the entries to replay imported last time.
    pub rows_at_stake: u64,
}

/// Why a replay's filter cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplayFilterError {
    /// A status that is not final: such a file is already on its way.
    #[error("status {0} cannot be replayed: only final ones can (imported, failed, skipped, superseded, gone)")]
    NotFinal(FileStatus),
    /// `until` before `since`.
    #[error("--until ({until}) is before --since ({since})")]
    EmptyRange {
        /// Since.
        since: DateTime<Utc>,
        /// Until.
        until: DateTime<Utc>,
    },
}

impl ReplayFilter {
    /// Checks the filter: final statuses only, a range that is not empty.
    pub fn check(&self) -> Result<(), ReplayFilterError> {
        if let Some(s) = self.statuses.iter().find(|s| !s.is_terminal()) {
            return Err(ReplayFilterError::NotFinal(*s));
        }
        if let (Some(since), Some(until)) = (self.since, self.until) {
            if until <= since {
                return Err(ReplayFilterError::EmptyRange { since, until });
            }
        }
        Ok(())
    }

    fn matches_file(&self, e: &LedgerEntry) -> bool {
        self.since.is_none_or(|t| e.last_modified >= t)
            && self.until.is_none_or(|t| e.last_modified < t)
            && self
                .prefix
                .as_deref()
                .is_none_or(|p| e.version.key.starts_with(p))
            && (self.keys.is_empty() || self.keys.contains(&e.version.key))
    }

    fn matches_status(&self, status: FileStatus) -> bool {
        if self.statuses.is_empty() {
            matches!(status, FileStatus::Imported | FileStatus::Failed)
        } else {
            self.statuses.contains(&status)
        }
    }

    /// The plan for `entries` (a connector's ledger), oldest LastModified first so a key's versions are
    /// sent in the order they were written.
    pub fn plan(&self, entries: impl IntoIterator<Item = LedgerEntry>) -> ReplayPlan {
        let mut plan = ReplayPlan::default();
        for e in entries {
            if !self.matches_file(&e) {
                continue;
            }
            if !e.status.is_terminal() {
                plan.in_flight.push(e);
            } else if self.matches_status(e.status) {
                plan.rows_at_stake += e.rows_imported;
                plan.replay.push(e);
            }
        }
        let order = |e: &LedgerEntry| (e.last_modified, e.version.key.clone());
        plan.replay.sort_by_key(order);
        plan.in_flight.sort_by_key(order);
        plan
    }

    /// Keys asked for by name that have no entry at all in `entries`: the CLI names them.
    pub fn unknown_keys<'a>(
        &self,
        entries: impl IntoIterator<Item = &'a LedgerEntry>,
    ) -> Vec<String> {
        let known: BTreeSet<&str> = entries
            .into_iter()
            .map(|e| e.version.key.as_str())
            .collect();
        self.keys
            .iter()
            .filter(|k| !known.contains(k.as_str()))
            .cloned()
            .collect()
    }
}

/// What [`requeue`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Requeued {
    /// Reopened and accepted by the queue (`queued`).
    pub sent: Vec<LedgerEntry>,
    /// Reopened, not accepted by the queue: `claimed`, the next lister pass sends them.
    pub left_claimed: Vec<LedgerEntry>,
    /// Moved by someone else first (another replay, a worker): not sent by this call.
    pub moved_first: Vec<LedgerEntry>,
}

/// Reopens each entry from the status it has (`replay`: counted as a replay) and sends the ones this call
/// reopened. The conditional reopen makes a second caller with the same entries a no-op.
pub async fn requeue(
    ledger: &dyn FileLedger,
    queue: &dyn FileQueue,
    entries: Vec<LedgerEntry>,
    replay: bool,
    now: DateTime<Utc>,
) -> Result<Requeued, ClaimError> {
    let mut done = Requeued::default();
    for mut entry in entries {
        let connector_id = entry.version.connector_id.clone();
        let file_id = entry.version.file_id();
        if !ledger
            .reopen_file(&connector_id, &file_id, entry.status, replay)
            .await?
        {
            done.moved_first.push(entry);
            continue;
        }
        entry.reopen(replay);
        let (sent, _) = claim::send_to(
            ledger,
            queue,
            &connector_id,
            std::slice::from_ref(&entry),
            now,
        )
        .await?;
        if sent == 1 {
            entry.status = FileStatus::Queued;
            entry.queued_at = Some(now);
            done.sent.push(entry);
        } else {
            done.left_claimed.push(entry);
        }
    }
    Ok(done)
}

/// What one sweep of the dead-letter queue did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Sweep {
    /// Files now `failed` (connector id, key).
    pub failed: Vec<(String, String)>,
    /// Messages of files already final, or with no entry (a deleted connector): deleted.
    pub stale: u64,
    /// Messages of files a worker holds a live lease on: left for a later sweep.
    pub kept: u64,
    /// Messages that are not file messages: left in the queue for a person to look at.
    pub unreadable: u64,
}

/// Why a sweep stopped.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The dead-letter queue could not be read or a message deleted.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The ledger could not be read or written.
    #[error(transparent)]
    State(#[from] StateError),
}

/// Receives up to `max_messages` messages from the dead-letter queue and marks each one's file `failed`
/// ([`dead_letter_reason`] with `max_receives`), deleting the message once the ledger says so. A message of a
/// file a worker still holds is kept (it comes back after the queue's visibility timeout); one that is not a
/// file message is kept and counted.
pub async fn sweep_dead_letters(
    dlq: &dyn DeadLetterQueue,
    ledger: &dyn FileLedger,
    max_receives: u32,
    max_messages: usize,
    now: DateTime<Utc>,
) -> Result<Sweep, SweepError> {
    let reason = dead_letter_reason(max_receives);
    let mut sweep = Sweep::default();
    let mut seen = 0;
    while seen < max_messages {
        let letters = dlq.receive((max_messages - seen).min(10)).await?;
        if letters.is_empty() {
            break;
        }
        seen += letters.len();
        for letter in letters {
            let Ok(message) = serde_json::from_str::<FileMessage>(&letter.body) else {
                warn!(
                    body_bytes = letter.body.len(),
                    "a dead-letter message is not a file message; left in the queue"
                );
                sweep.unreadable += 1;
                continue;
            };
            let connector_id = &message.version.connector_id;
            let file_id = message.version.file_id();
            if ledger
                .dead_letter_file(connector_id, &file_id, &reason, now)
                .await?
            {
                info!(connector = %connector_id, key = %message.version.key, "dead-lettered file marked failed");
                sweep
                    .failed
                    .push((connector_id.clone(), message.version.key.clone()));
            } else if ledger
                .get_file(connector_id, &file_id)
                .await?
                .is_some_and(|e| !e.status.is_terminal())
            {
                sweep.kept += 1;
                continue;
            } else {
                sweep.stale += 1;
            }
            dlq.delete(&letter.receipt_handle).await?;
        }
    }
    Ok(sweep)
}
