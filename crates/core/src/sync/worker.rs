// Over 900 lines as one concern (one message → one file version imported); the next split is the piece
// hand-over (checkpoint, continue, ack) into its own module (noted in the stop-25 closing note).
//! Import (`docs/architecture.md`, "Data flow" and "Pieces"): one queue message → one file version imported
//! exactly once in effect.
//!
//! SQS, the scheduler and Lambda all deliver at least once. The ledger makes effects idempotent: a worker
//! must win `start_file` (a conditional write with a lease) before reading, a finished entry acks duplicates,
//! and destinations write idempotently (upserts by key; deterministic S3 keys), so a redelivery after a crash
//! rewrites the same rows instead of adding new ones.
//!
//! # Long files: pieces
//! A file that cannot be imported before the invocation's deadline is imported in pieces. A safety margin
//! before the deadline the import stops at a record boundary after the last batch written; the sinks are
//! suspended (their staged output stays invisible); the ledger entry is handed back as `queued` with a
//! checkpoint (offset of the next record, record and line numbers, the CSV header, counters, the sinks'
//! states) by a write conditional on this attempt's lease; a message for the next piece is sent; then the
//! current message is acked. Each message names its piece; the ledger's checkpoint names the next one:
//! - a message for the checkpoint's piece continues the file (a ranged read from the offset; gzip is decoded
//!   from the top and skipped to the offset);
//! - a redelivered message of the piece before, when the checkpoint says its continuation was never sent
//!   (a crash between the checkpoint and the send), sends it;
//! - any other message is a duplicate and is acked without work.
//!
//! A crash before the checkpoint redoes the piece from the previous checkpoint (idempotent writes: upserts,
//! the same S3 part numbers), so every row ends up written exactly once in effect.
//!
//! A piece that fails transiently without crashing keeps what earlier pieces staged:
//! - the source failing mid-piece (a ranged read's attempts spent, a single stream reset) stops the piece
//!   after its last complete record, which is checkpointed like a deadline stop, and the file continues in a
//!   new message; if not one record was read, there is nothing to checkpoint, and the message is retried
//!   (SQS's receive count bounds the attempts, then the DLQ);
//! - the destination failing transiently retries the message; the piece is redone from its checkpoint, whose
//!   sink states still name the staged output (it is not aborted).
//!
//! While a piece runs, a heartbeat keeps its message invisible (ChangeMessageVisibility) and stops with it.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use tracing::{info, warn};

use super::clock::Clock;
use super::model::{Checkpoint, CheckpointStart, FileMessage, FileStatus, LedgerEntry};
use super::ports::{
    ByteRange, ConnectorStore, Destination, FileJob, FileLedger, FileQueue, ObjectSource,
    SourceError, StartOutcome, StateError, TemplateStore,
};
use super::read_ahead::{self, ReadAhead};
use super::validate_first::{self, DiscardRejects, Validation};
use super::versions;
use crate::format::detect_format;
use crate::pace::Pace;
use crate::pipeline::{self, Counts, FileEnd, FileFailure, FileReport, ImportOptions, Stopped};
use crate::read::{ReadError, StartAt};
use crate::sink::{RejectSink, SinkError};
use crate::{Compression, Limits};

/// What the worker talks to.
#[derive(Clone)]
pub struct WorkerDeps {
    /// Connectors: the file's connector, read once per message.
    pub connectors: Arc<dyn ConnectorStore>,
    /// Templates: the version the file was claimed with.
    pub templates: Arc<dyn TemplateStore>,
    /// The file ledger: the lease, checkpoints and the outcome.
    pub ledger: Arc<dyn FileLedger>,
    /// Source buckets.
    pub source: Arc<dyn ObjectSource>,
    /// Destinations.
    pub destination: Arc<dyn Destination>,
    /// The work queue: continuations of long files, and the visibility heartbeat.
    pub queue: Arc<dyn FileQueue>,
    /// Clock.
    pub clock: Arc<dyn Clock>,
}

impl WorkerDeps {
    /// The state capabilities from one store (the state table).
    pub fn new<S>(
        state: Arc<S>,
        source: Arc<dyn ObjectSource>,
        destination: Arc<dyn Destination>,
        queue: Arc<dyn FileQueue>,
        clock: Arc<dyn Clock>,
    ) -> Self
    where
        S: ConnectorStore + TemplateStore + FileLedger + 'static,
    {
        Self {
            connectors: state.clone(),
            templates: state.clone(),
            ledger: state,
            source,
            destination,
            queue,
            clock,
        }
    }
}

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Reader limits.
    pub limits: Limits,
    /// How long a started file is held before another worker may take it over, when the invocation has no
    /// deadline of its own (local runs).
    pub default_lease: Duration,
    /// How long before the invocation's deadline a piece stops, checkpoints and hands over to a new message.
    /// It covers suspending the sinks, the checkpoint and the send; a batch write is not started when the
    /// destination's measured pace says it would end inside the margin, and batches shrink until one write
    /// takes at most a quarter of it (see [`crate::pace`]).
    pub checkpoint_margin: Duration,
    /// How often the message's visibility is extended while its file is imported.
    pub heartbeat_interval: std::time::Duration,
    /// Rows per batch written to the destination.
    pub batch_rows: usize,
    /// How large uncompressed objects are read (ranged GETs ahead of the parser).
    pub read_ahead: ReadAhead,
}

impl WorkerSettings {
    /// How long one batch write may take before batches shrink: a quarter of the checkpoint margin.
    pub fn write_budget(&self) -> std::time::Duration {
        (self.checkpoint_margin / 4).to_std().unwrap_or_default()
    }

    /// How long before the deadline a piece stops: the checkpoint margin, or twice what suspending the sinks
    /// took at the end of the piece before, when that is more (a slow destination's staged output).
    pub fn handover_reserve(&self, pace: Option<&Pace>) -> Duration {
        let suspend = pace.map_or(0, |p| p.suspend_ms.saturating_mul(2));
        self.checkpoint_margin.max(Duration::milliseconds(
            i64::try_from(suspend).unwrap_or(i64::MAX),
        ))
    }

    /// Each heartbeat makes the message invisible for this long from now: three intervals, so two missed
    /// beats are survived.
    pub fn visibility_extension(&self) -> u32 {
        u32::try_from(self.heartbeat_interval.as_secs().saturating_mul(3))
            .unwrap_or(u32::MAX)
            .max(1)
    }
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            default_lease: Duration::minutes(15),
            checkpoint_margin: Duration::seconds(60),
            heartbeat_interval: std::time::Duration::from_secs(60),
            batch_rows: ImportOptions::default().batch_rows,
            read_ahead: ReadAhead::default(),
        }
    }
}

/// How a message was delivered.
#[derive(Debug, Clone, Copy, Default)]
pub struct Delivery<'a> {
    /// Identifies this attempt (e.g. the request id, SQS message id and receive count): the ledger's lease
    /// names who may write the file's outcome.
    pub owner: &'a str,
    /// The invocation's deadline, from which the lease and the checkpoint time are derived.
    pub deadline: Option<DateTime<Utc>>,
    /// The SQS receipt handle, for the visibility heartbeat (none when the message is not from SQS).
    pub receipt_handle: Option<&'a str>,
}

/// What to do with the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Delete it: the file is done (imported, failed permanently, skipped) or the message is useless.
    Ack,
    /// Leave it: SQS delivers it again after the visibility timeout (and to the DLQ after maxReceiveCount).
    Retry,
}

/// The result of one message, for the handler's log and metrics.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageResult {
    /// Ack or retry.
    pub disposition: Disposition,
    /// The message, when the body was a file message (of any version): the file version it names and its
    /// LastModified, so the handler's metrics need not parse the body again.
    pub message: Option<FileMessage>,
    /// The ledger status the file ended in, when the worker got that far.
    pub status: Option<FileStatus>,
    /// Rows imported and rejected (totals of the file).
    pub counts: Counts,
    /// Bytes read from the source.
    pub bytes: u64,
    /// What happened, for logs (never row values).
    pub detail: String,
}

impl MessageResult {
    fn ack(detail: impl Into<String>) -> Self {
        Self {
            disposition: Disposition::Ack,
            message: None,
            status: None,
            counts: Counts::default(),
            bytes: 0,
            detail: detail.into(),
        }
    }

    fn retry(detail: impl Into<String>) -> Self {
        Self {
            disposition: Disposition::Retry,
            ..Self::ack(detail)
        }
    }
}

/// Processes one message body (see the module docs).
pub async fn process_message(
    deps: &WorkerDeps,
    settings: &WorkerSettings,
    body: &str,
    delivery: Delivery<'_>,
) -> MessageResult {
    // 1. A malformed message is permanent: retrying cannot fix it.
    let message: FileMessage = match serde_json::from_str(body) {
        Ok(m) => m,
        Err(e) => {
            warn!(error = %e, "malformed message acked");
            return MessageResult::ack(format!("malformed message: {e}"));
        }
    };
    let mut result = process_file_message(deps, settings, &message, delivery).await;
    result.message = Some(message);
    result
}

/// Processes one file message (see the module docs).
async fn process_file_message(
    deps: &WorkerDeps,
    settings: &WorkerSettings,
    message: &FileMessage,
    delivery: Delivery<'_>,
) -> MessageResult {
    let Delivery {
        owner, deadline, ..
    } = delivery;
    if message.v != FileMessage::VERSION {
        warn!(version = message.v, "message of an unknown version acked");
        return MessageResult::ack(format!("unknown message version {}", message.v));
    }
    let version = &message.version;
    let file_id = version.file_id();
    let connector = match deps.connectors.get_connector(&version.connector_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return MessageResult::ack("connector no longer exists"),
        Err(e) => return state_retry("read connector", e),
    };

    // A stale duplicate — a message of an earlier piece whose continuation was sent — is recognised from the
    // ledger without taking the file, which would count an attempt that is none. (Pieces only move forward, so
    // acking it on this read is safe; anything else is decided under the lease below.)
    if let Ok(Some(current)) = deps.ledger.get_file(&connector.id, &file_id).await {
        if let Some(checkpoint) = &current.checkpoint {
            if message.piece < checkpoint.piece && checkpoint.continued {
                info!(connector = %connector.id, key = %version.key, piece = message.piece, next_piece = checkpoint.piece, "duplicate message of an earlier piece acked");
                return MessageResult::ack("duplicate message of an earlier piece");
            }
        }
    }

    // 2. Claim the ledger entry with a lease that outlives this invocation a little: a crashed worker's
    //    file becomes available again once its lease ends.
    let now = deps.clock.now();
    let lease_until = deadline
        .map(|d| d + Duration::minutes(1))
        .unwrap_or(now + settings.default_lease);
    let entry = match deps
        .ledger
        .start_file(&connector.id, &file_id, owner, now, lease_until)
        .await
    {
        Ok(StartOutcome::Started(entry)) => *entry,
        Ok(StartOutcome::AlreadyFinished(status)) => {
            info!(connector = %connector.id, key = %version.key, status = %status, "duplicate delivery acked");
            return MessageResult {
                status: Some(status),
                ..MessageResult::ack("already finished")
            };
        }
        Ok(StartOutcome::Busy(until)) => {
            return MessageResult::retry(format!("another worker holds the file until {until}"));
        }
        Ok(StartOutcome::Unknown) => {
            warn!(connector = %connector.id, key = %version.key, "message for a file not in the ledger acked");
            return MessageResult::ack("file not in the ledger");
        }
        Err(e) => return state_retry("start file", e),
    };

    // 3. Which piece: the checkpoint names the next one; other messages are duplicates (module docs).
    let next_piece = entry.checkpoint.as_ref().map_or(0, |c| c.piece);
    if message.piece != next_piece {
        return stale_message(deps, message, &entry, owner).await;
    }

    let started = Instant::now();
    let reserve =
        settings.handover_reserve(entry.checkpoint.as_ref().and_then(|c| c.pace.as_ref()));
    let stop_at = deadline.map(|d| {
        let left = (d - deps.clock.now() - reserve)
            .to_std()
            .unwrap_or_default();
        started + left
    });
    let heartbeat = Heartbeat::start(deps, settings, &delivery, &entry);
    let mut finished = entry.clone();
    let result = import_file(deps, settings, &connector, entry, stop_at, &mut finished).await;
    heartbeat.stop();
    if let Ok(report) = &result {
        if let FileEnd::Stopped(stopped) = &report.end {
            let carried_rows = finished
                .checkpoint
                .as_ref()
                .map_or(0, |c| c.counts().rows_read);
            match &stopped.interrupted {
                // Interrupted before a single record: nothing to checkpoint. The file goes back to `queued`
                // with its checkpoint, and SQS redelivers this message (its receive count bounds the
                // attempts; the DLQ takes over after). The suspended sinks' states are not needed: the
                // checkpoint still names the output staged so far.
                Some(error) if report.counts.rows_read == carried_rows => {
                    let reason = format!("interrupted before any record: {error}");
                    return release_for_retry(deps, &finished, owner, reason).await;
                }
                Some(error) => {
                    warn!(connector = %connector.id, key = %version.key, piece = message.piece, next_byte = stopped.at.position.byte, error = %error, "read interrupted; the file continues from its last complete record");
                }
                None => {}
            }
            return continue_later(deps, message, &finished, report, stopped, owner).await;
        }
    }
    finished.checkpoint = None;
    finished.lease_until = None;
    finished.finished_at = Some(deps.clock.now());
    let outcome = match result {
        Ok(report) => {
            finished.set_counts(report.counts);
            finished.error_report = report.error_report.clone();
            match report.failure() {
                None => {
                    finished.status = FileStatus::Imported;
                    finished.error = None;
                }
                Some(failure) => {
                    finished.status = FileStatus::Failed;
                    finished.error = Some(failure.to_string());
                }
            }
            Ok(report)
        }
        Err(ImportError::Final(status, reason)) => {
            finished.status = status;
            finished.error = Some(reason.clone());
            Err(reason)
        }
        Err(ImportError::ConnectorBroken(reason)) => {
            mark_broken(deps, &connector, &reason).await;
            finished.status = FileStatus::Failed;
            finished.error = Some(reason.clone());
            Err(reason)
        }
        Err(ImportError::Transient(reason)) => {
            return release_for_retry(deps, &finished, owner, reason).await;
        }
    };
    if let Err(e) = deps.ledger.finish_file(&finished, owner).await {
        return match e {
            // Our lease ended and another worker took over; its result stands (our writes were idempotent).
            StateError::Conflict { .. } => MessageResult::ack("lease lost to another worker"),
            e => state_retry("finish file", e),
        };
    }
    let bytes = outcome.as_ref().map(|r| r.input_bytes).unwrap_or(0);
    info!(
        connector = %connector.id,
        key = %version.key,
        etag = %version.etag,
        status = %finished.status,
        rows_imported = finished.rows_imported,
        rows_rejected = finished.rows_rejected,
        bytes,
        duration_ms = started.elapsed().as_millis() as u64,
        "file finished"
    );
    MessageResult {
        disposition: Disposition::Ack,
        message: None,
        status: Some(finished.status),
        counts: finished.counts(),
        bytes,
        detail: finished.error.clone().unwrap_or_else(|| "imported".into()),
    }
}

/// A transient failure: the file goes back to `queued` (keeping its checkpoint) and the message is retried; the
/// redelivered message (or the DLQ) takes it from here.
async fn release_for_retry(
    deps: &WorkerDeps,
    entry: &LedgerEntry,
    owner: &str,
    reason: String,
) -> MessageResult {
    let version = &entry.version;
    if let Err(e) = deps
        .ledger
        .release_file(&version.connector_id, &version.file_id(), owner, &reason)
        .await
    {
        warn!(connector = %version.connector_id, key = %version.key, error = %e, "cannot release file");
    }
    warn!(connector = %version.connector_id, key = %version.key, error = %reason, "transient failure, will retry");
    MessageResult::retry(reason)
}

/// A message for another piece than the checkpoint's next one (module docs): hand the entry back; send the
/// continuation if a crash left it unsent; ack.
async fn stale_message(
    deps: &WorkerDeps,
    message: &FileMessage,
    entry: &LedgerEntry,
    owner: &str,
) -> MessageResult {
    let version = &message.version;
    let file_id = version.file_id();
    if let Err(e) = deps
        .ledger
        .checkpoint_file(&version.connector_id, &file_id, owner, None)
        .await
    {
        return match e {
            StateError::Conflict { .. } => MessageResult::ack("lease lost to another worker"),
            e => state_retry("hand back file", e),
        };
    }
    match &entry.checkpoint {
        Some(checkpoint) if message.piece + 1 == checkpoint.piece && !checkpoint.continued => {
            info!(connector = %version.connector_id, key = %version.key, piece = checkpoint.piece, "continuation was not sent; sending it");
            if let Err(reason) = send_continuation(deps, message, checkpoint.piece).await {
                return MessageResult::retry(reason);
            }
            MessageResult {
                status: Some(FileStatus::Queued),
                ..MessageResult::ack(format!("continuation to piece {} sent", checkpoint.piece))
            }
        }
        _ => {
            info!(connector = %version.connector_id, key = %version.key, piece = message.piece, next_piece = entry.checkpoint.as_ref().map_or(0, |c| c.piece), "duplicate message of an earlier piece acked");
            MessageResult::ack("duplicate message of an earlier piece")
        }
    }
}

/// Sends the message for `piece` and records that it was sent.
async fn send_continuation(
    deps: &WorkerDeps,
    message: &FileMessage,
    piece: u32,
) -> Result<(), String> {
    let version = &message.version;
    let next = FileMessage {
        piece,
        ..message.clone()
    };
    match deps.queue.send(std::slice::from_ref(&next)).await {
        Ok(accepted) if accepted.first() == Some(&true) => {}
        Ok(_) => return Err(format!("the queue refused the message for piece {piece}")),
        Err(e) => return Err(format!("send the message for piece {piece}: {e}")),
    }
    // Without this mark, a redelivery of the previous message sends a duplicate continuation, which is
    // recognised and acked later: harmless.
    if let Err(e) = deps
        .ledger
        .mark_continued(&version.connector_id, &version.file_id(), piece)
        .await
    {
        warn!(connector = %version.connector_id, key = %version.key, error = %e, "cannot record the continuation");
    }
    Ok(())
}

/// The piece stopped before the end of the file: checkpoint, send the next piece's message, ack.
async fn continue_later(
    deps: &WorkerDeps,
    message: &FileMessage,
    entry: &LedgerEntry,
    report: &FileReport,
    stopped: &Stopped,
    owner: &str,
) -> MessageResult {
    let version = &message.version;
    let piece = message.piece + 1;
    let at = &stopped.at;
    let checkpoint = Checkpoint {
        start: CheckpointStart::from(at),
        piece,
        rows_imported: report.counts.rows_imported,
        rows_rejected: report.counts.rows_rejected,
        rows_state: stopped.rows_state.clone(),
        rejects_state: stopped.rejects_state.clone(),
        continued: false,
        template_version: entry.template_version,
        format: entry.format,
        pace: Some(stopped.pace),
        validated: entry.checkpoint.as_ref().and_then(|c| c.validated.clone()),
    };
    if let Err(e) = deps
        .ledger
        .checkpoint_file(
            &version.connector_id,
            &version.file_id(),
            owner,
            Some(&checkpoint),
        )
        .await
    {
        return match e {
            // Another attempt took the file over; it redoes this piece.
            StateError::Conflict { .. } => MessageResult::ack("lease lost to another worker"),
            e => state_retry("checkpoint file", e),
        };
    }
    if let Err(reason) = send_continuation(deps, message, piece).await {
        // The redelivered message finds the checkpoint's continuation unsent and sends it.
        warn!(connector = %version.connector_id, key = %version.key, error = %reason, "continuation not sent, will retry");
        return MessageResult::retry(reason);
    }
    info!(
        connector = %version.connector_id,
        key = %version.key,
        piece = message.piece,
        next_byte = at.position.byte,
        next_record = at.position.record,
        rows_imported = report.counts.rows_imported,
        rows_rejected = report.counts.rows_rejected,
        bytes = report.input_bytes,
        "piece done, file continues in a new message"
    );
    MessageResult {
        disposition: Disposition::Ack,
        message: None,
        status: Some(FileStatus::Queued),
        counts: report.counts,
        bytes: report.input_bytes,
        detail: format!("continues in piece {piece}"),
    }
}

/// Keeps the message invisible while its file is imported; stops when dropped or stopped.
struct Heartbeat(Option<tokio::task::JoinHandle<()>>);

impl Heartbeat {
    fn start(
        deps: &WorkerDeps,
        settings: &WorkerSettings,
        delivery: &Delivery<'_>,
        entry: &LedgerEntry,
    ) -> Self {
        let Some(receipt_handle) = delivery.receipt_handle.map(str::to_owned) else {
            return Self(None);
        };
        let queue = deps.queue.clone();
        let state = deps.ledger.clone();
        let clock = deps.clock.clone();
        let interval = settings
            .heartbeat_interval
            .max(std::time::Duration::from_millis(100));
        let extension = settings.visibility_extension();
        // Without an invocation deadline (local runs) the lease is renewed too.
        let renew = delivery.deadline.is_none().then(|| {
            (
                entry.version.connector_id.clone(),
                entry.version.file_id(),
                delivery.owner.to_owned(),
                settings.default_lease,
            )
        });
        Self(Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            loop {
                ticks.tick().await;
                if let Err(e) = queue.extend_visibility(&receipt_handle, extension).await {
                    warn!(error = %e, "cannot extend the message's visibility");
                }
                if let Some((connector_id, file_id, owner, lease)) = &renew {
                    let until = clock.now() + *lease;
                    if let Err(e) = state
                        .renew_file(connector_id, file_id, owner, until, None)
                        .await
                    {
                        warn!(error = %e, "cannot renew the lease");
                    }
                }
            }
        })))
    }

    fn stop(mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// The destination said it is gone for good (a webhook's 410): the connector shows as broken, with the reason,
/// until `connector resume` verifies it again; the lister stops queueing its files.
async fn mark_broken(deps: &WorkerDeps, connector: &super::model::Connector, reason: &str) {
    let mut broken = connector.clone();
    broken.status = super::model::ConnectorStatus::Broken {
        reason: format!("destination: {reason}"),
    };
    broken.updated_at = deps.clock.now();
    match deps.connectors.update_connector(&broken).await {
        Ok(()) => {
            warn!(connector = %connector.id, reason, "connector marked broken by its destination")
        }
        Err(e) => warn!(connector = %connector.id, error = %e, "cannot mark connector broken"),
    }
}

fn state_retry(what: &str, e: StateError) -> MessageResult {
    warn!(error = %e, step = what, "state store failure, will retry");
    MessageResult::retry(format!("{what}: {e}"))
}

enum ImportError {
    /// The file ends in this final status with this reason.
    Final(FileStatus, String),
    /// The destination is gone for good: the file fails with this reason and the connector is marked broken.
    ConnectorBroken(String),
    /// Try again later.
    Transient(String),
}

fn sink_error(e: SinkError) -> ImportError {
    if e.breaks_connector() {
        ImportError::ConnectorBroken(e.to_string())
    } else if e.is_transient() {
        ImportError::Transient(e.to_string())
    } else {
        ImportError::Final(FileStatus::Failed, e.to_string())
    }
}

async fn import_file(
    deps: &WorkerDeps,
    settings: &WorkerSettings,
    connector: &super::model::Connector,
    entry: LedgerEntry,
    stop_at: Option<Instant>,
    out: &mut LedgerEntry,
) -> Result<FileReport, ImportError> {
    let version = &entry.version;
    let checkpoint = entry.checkpoint.clone();
    // Every piece uses the template version the first one used.
    let wanted_template = checkpoint
        .as_ref()
        .and_then(|c| c.template_version)
        .or(connector.template_version);
    let stored = match deps
        .templates
        .get_template(&connector.template_id, wanted_template)
        .await
    {
        Ok(Some(t)) => t,
        Ok(None) => {
            return Err(ImportError::Final(
                FileStatus::Failed,
                format!("template {:?} not found", connector.template_id),
            ))
        }
        Err(e) if e.is_transient() => return Err(ImportError::Transient(e.to_string())),
        Err(e) => return Err(ImportError::Final(FileStatus::Failed, e.to_string())),
    };
    // A continuation reads from its checkpoint's offset, except a compressed file, read from the top.
    let start = checkpoint
        .as_ref()
        .map(|c| StartAt::from(&c.start))
        .unwrap_or_default();
    let known_format = checkpoint.as_ref().and_then(|c| c.format);
    let read_from =
        if !start.is_start() && known_format.is_some_and(|f| f.compression == Compression::None) {
            start.position.byte
        } else {
            0
        };
    let (reader, content_encoding) =
        open_reader(deps, settings, connector, &entry, read_from).await?;
    let format = known_format
        .or_else(|| {
            detect_format(
                &version.key,
                stored.template.format,
                content_encoding.as_deref(),
            )
        })
        .or(entry.format)
        .ok_or_else(|| ImportError::Final(FileStatus::Failed, "unsupported format".into()))?;
    if !start.is_start() && known_format.is_none() {
        return Err(ImportError::Final(
            FileStatus::Failed,
            "the checkpoint does not say the file's format; retry the file".into(),
        ));
    }
    let mut entry = entry;
    entry.format = Some(format);
    entry.template_version = Some(stored.version);
    // Rows carry the version's place among the key's versions of the same second (a versioned source).
    entry.last_modified = versions::ordered_last_modified(
        deps.source.as_ref(),
        &connector.source,
        &entry.version,
        entry.last_modified,
    )
    .await
    .map_err(source_failure)?;
    out.template_version = Some(stored.version);
    out.format = Some(format);
    let template = Arc::new(stored.template);
    let job = FileJob {
        connector: connector.clone(),
        entry,
        template: template.clone(),
    };
    let mut rows = deps.destination.open_rows(&job).await.map_err(sink_error)?;
    let mut validated = checkpoint.as_ref().and_then(|c| c.validated.clone());
    // A continuation of a validated file writes no report: the validation pass wrote the file's.
    let mut rejects: Box<dyn RejectSink> = if validated.is_some() {
        Box::new(DiscardRejects)
    } else {
        deps.destination
            .open_rejects(&job)
            .await
            .map_err(sink_error)?
    };
    let carried = checkpoint
        .as_ref()
        .map_or_else(Counts::default, Checkpoint::counts);
    let options = ImportOptions {
        limits: settings.limits,
        batch_rows: settings.batch_rows.max(1),
        start,
        deadline: stop_at,
        write_budget: stop_at.map(|_| settings.write_budget()),
        pace: checkpoint.as_ref().and_then(|c| c.pace),
        carried,
        interruptible: Some(interrupted_read),
        ..ImportOptions::default()
    };
    let mut reader = reader;
    // All-or-nothing where the destination cannot stage (`validate_first`): validate the whole file first.
    if template.on_error.validate_first && !rows.stages() && checkpoint.is_none() {
        let validation = validate_first::validation_pass(
            reader,
            format,
            template.clone(),
            options.clone(),
            rejects.as_mut(),
        )
        .await
        .map_err(sink_error)?;
        match validation {
            Validation::Passed(v) => {
                info!(connector = %connector.id, key = %job.entry.version.key, error_report = ?v.error_report, "validation pass passed; writing the rows");
                validated = Some(v);
            }
            Validation::Failed(report) => {
                // Nothing was written; the sink is aborted for the sake of any setup it did.
                rows.abort().await.map_err(sink_error)?;
                return source_checked(report);
            }
            Validation::OutOfTime { byte } => {
                return Err(ImportError::Final(
                    FileStatus::Failed,
                    format!(
                        "on_error.validate_first: the validation pass ran out of time after {byte} bytes of the file; \
                         it must read the whole file within one invocation (import this file without \
                         validate_first, or split it)"
                    ),
                ))
            }
            Validation::Interrupted(error) => {
                return Err(ImportError::Transient(format!(
                    "validation pass interrupted, retried from the top: {error}"
                )))
            }
        }
        rejects = Box::new(DiscardRejects);
        reader = open_reader(deps, settings, connector, &job.entry, 0)
            .await?
            .0;
    }
    if validated.is_some() {
        // The writing pass's pieces carry the validation's outcome (see `continue_later`).
        out.checkpoint
            .get_or_insert_with(Checkpoint::default)
            .validated = validated.clone();
    }
    let mut report = pipeline::import(
        reader,
        format,
        template,
        options,
        rows.as_mut(),
        rejects.as_mut(),
    )
    .await
    .map_err(sink_error)?;
    if let Some(v) = validated {
        report.error_report = v.error_report;
    }
    source_checked(report)
}

/// Opens the object from decoded byte `read_from` (0, or an uncompressed file's checkpoint): a large object as
/// ranged GETs ahead of the parser, the first of them being the request that tells the encoding and finds a
/// missing or changed object; other objects as one stream. Returns the reader and the `Content-Encoding`.
async fn open_reader(
    deps: &WorkerDeps,
    settings: &WorkerSettings,
    connector: &super::model::Connector,
    entry: &LedgerEntry,
    read_from: u64,
) -> Result<(Box<dyn tokio::io::AsyncRead + Send + Unpin>, Option<String>), ImportError> {
    let version = &entry.version;
    let size = entry.size;
    let ranged = settings.read_ahead.applies(read_from, size);
    let range = if ranged {
        Some(settings.read_ahead.first_range(read_from, size))
    } else {
        (read_from > 0).then_some(ByteRange {
            start: read_from,
            end: None,
        })
    };
    let body = match deps
        .source
        .open(
            &connector.source,
            &version.key,
            &version.etag,
            version.version_id.as_deref(),
            range,
        )
        .await
    {
        Ok(body) => body,
        Err(e) => return Err(source_failure(e)),
    };
    let content_encoding = body.content_encoding.clone();
    let reader = if ranged {
        settings.read_ahead.reader(
            deps.source.clone(),
            connector.source.clone(),
            version.key.clone(),
            version.etag.clone(),
            version.version_id.clone(),
            read_from,
            size,
            Some(body),
        )
    } else {
        read_ahead::single_stream(body.reader, &connector.source, &version.key, read_from)
    };
    Ok((reader, content_encoding))
}

/// The report of a file, unless the source failing mid-file is what ended it: that is not the file's fault.
/// An object deleted or overwritten meanwhile ends as `gone` or `superseded`; a flaky network (after the
/// read's own retries) interrupts the piece, which stops at its last complete record (`interrupted_read`).
fn source_checked(report: FileReport) -> Result<FileReport, ImportError> {
    match report.failure().and_then(|f| match f {
        FileFailure::Read(e) => read_source_error(e),
        _ => None,
    }) {
        Some(error @ (SourceError::NotFound { .. } | SourceError::Changed { .. })) => {
            let (status, reason) = source_final(error, "while it was read");
            Err(ImportError::Final(status, reason))
        }
        _ => Ok(report),
    }
}

/// The source error behind a read error, when reading the source is what failed.
fn read_source_error(error: &ReadError) -> Option<&SourceError> {
    match error {
        ReadError::Io { source, .. } | ReadError::Gzip { source, .. } => {
            read_ahead::source_error(source)
        }
        _ => None,
    }
}

/// Whether a read error interrupts the piece rather than failing the file ([`ImportOptions::interruptible`]):
/// the source failed transiently, after the read's own retries. The piece then checkpoints its last complete
/// record and the file carries on in a new message, so the output staged by earlier pieces is kept.
fn interrupted_read(error: &ReadError) -> bool {
    read_source_error(error).is_some_and(SourceError::is_transient)
}

/// The final status and reason of a file whose object is gone or changed (`when`: "before it was read", ...).
fn source_final(error: &SourceError, when: &str) -> (FileStatus, String) {
    match error {
        SourceError::NotFound { .. } => (FileStatus::Gone, format!("deleted {when}")),
        _ => (
            FileStatus::Superseded,
            format!("overwritten {when}; the newer version is imported separately"),
        ),
    }
}

/// How a failure to open the object ends the attempt.
fn source_failure(error: SourceError) -> ImportError {
    match &error {
        SourceError::NotFound { .. } | SourceError::Changed { .. } => {
            let (status, reason) = source_final(&error, "before it was read");
            ImportError::Final(status, reason)
        }
        e if e.is_transient() => ImportError::Transient(e.to_string()),
        e => ImportError::Final(FileStatus::Failed, e.to_string()),
    }
}
