//! Import (DESIGN §4): one queue message → one file version imported exactly once in effect.
//!
//! SQS, the scheduler and Lambda all deliver at least once. The ledger makes effects idempotent: a worker
//! must win `start_file` (a conditional write with a lease) before reading, a finished entry acks duplicates,
//! and destinations write idempotently (upserts by key; deterministic S3 keys), so a redelivery after a crash
//! rewrites the same rows instead of adding new ones.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use tracing::{info, warn};

use super::clock::Clock;
use super::model::{FileMessage, FileStatus, LedgerEntry};
use super::ports::{
    Destination, FileJob, ObjectSource, SourceError, StartOutcome, StateError, StateStore,
};
use crate::format::detect_format;
use crate::pipeline::{self, FileReport, ImportOptions};
use crate::sink::SinkError;
use crate::Limits;

/// What the worker talks to.
#[derive(Clone)]
pub struct WorkerDeps {
    /// State table.
    pub state: Arc<dyn StateStore>,
    /// Source buckets.
    pub source: Arc<dyn ObjectSource>,
    /// Destinations.
    pub destination: Arc<dyn Destination>,
    /// Clock.
    pub clock: Arc<dyn Clock>,
}

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Reader limits.
    pub limits: Limits,
    /// How long a started file is held before another worker may take it over, when the invocation has no
    /// deadline of its own (local runs).
    pub default_lease: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            default_lease: Duration::minutes(15),
        }
    }
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
    /// The ledger status the file ended in, when the worker got that far.
    pub status: Option<FileStatus>,
    /// Rows imported.
    pub rows_imported: u64,
    /// Rows rejected.
    pub rows_rejected: u64,
    /// Bytes read from the source.
    pub bytes: u64,
    /// What happened, for logs (never row values).
    pub detail: String,
}

impl MessageResult {
    fn ack(detail: impl Into<String>) -> Self {
        Self {
            disposition: Disposition::Ack,
            status: None,
            rows_imported: 0,
            rows_rejected: 0,
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

/// Processes one message body. `owner` identifies this attempt (e.g. the SQS message id and receive count);
/// `deadline` is the invocation's deadline, from which the lease is derived.
pub async fn process_message(
    deps: &WorkerDeps,
    settings: &WorkerSettings,
    body: &str,
    owner: &str,
    deadline: Option<DateTime<Utc>>,
) -> MessageResult {
    // 1. A malformed message is permanent: retrying cannot fix it.
    let message: FileMessage = match serde_json::from_str(body) {
        Ok(m) => m,
        Err(e) => {
            warn!(error = %e, "malformed message acked");
            return MessageResult::ack(format!("malformed message: {e}"));
        }
    };
    if message.v != FileMessage::VERSION {
        warn!(version = message.v, "message of an unknown version acked");
        return MessageResult::ack(format!("unknown message version {}", message.v));
    }
    let version = &message.version;
    let file_id = version.file_id();
    let connector = match deps.state.get_connector(&version.connector_id).await {
        Ok(Some(c)) => c,
        Ok(None) => return MessageResult::ack("connector no longer exists"),
        Err(e) => return state_retry("read connector", e),
    };

    // 2. Claim the ledger entry with a lease that outlives this invocation a little: a crashed worker's
    //    file becomes available again once its lease ends.
    let now = deps.clock.now();
    let lease_until = deadline
        .map(|d| d + Duration::minutes(1))
        .unwrap_or(now + settings.default_lease);
    let entry = match deps
        .state
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

    let started = Instant::now();
    let mut finished = entry.clone();
    let result = import_file(
        deps,
        settings,
        &connector,
        entry,
        &mut finished.template_version,
    )
    .await;
    finished.lease_until = None;
    finished.finished_at = Some(deps.clock.now());
    let outcome = match result {
        Ok(report) => {
            finished.rows_imported = report.rows_imported;
            finished.rows_rejected = report.rows_rejected;
            finished.error_report = report.error_report.clone();
            match &report.failure {
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
        Err(ImportError::Transient(reason)) => {
            // Back to `queued`: the redelivered message (or the DLQ) takes it from here.
            if let Err(e) = deps
                .state
                .release_file(&connector.id, &file_id, owner, &reason)
                .await
            {
                warn!(connector = %connector.id, key = %version.key, error = %e, "cannot release file");
            }
            warn!(connector = %connector.id, key = %version.key, error = %reason, "transient failure, will retry");
            return MessageResult::retry(reason);
        }
    };
    if let Err(e) = deps.state.finish_file(&finished, owner).await {
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
        status: Some(finished.status),
        rows_imported: finished.rows_imported,
        rows_rejected: finished.rows_rejected,
        bytes,
        detail: finished.error.clone().unwrap_or_else(|| "imported".into()),
    }
}

fn state_retry(what: &str, e: StateError) -> MessageResult {
    warn!(error = %e, step = what, "state store failure, will retry");
    MessageResult::retry(format!("{what}: {e}"))
}

enum ImportError {
    /// The file ends in this final status with this reason.
    Final(FileStatus, String),
    /// Try again later.
    Transient(String),
}

fn sink_error(e: SinkError) -> ImportError {
    if e.is_transient() {
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
    template_version: &mut Option<u32>,
) -> Result<FileReport, ImportError> {
    let version = &entry.version;
    let stored = match deps
        .state
        .get_template(&connector.template_id, connector.template_version)
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
    let body = match deps
        .source
        .open(&connector.source, &version.key, &version.etag, None)
        .await
    {
        Ok(body) => body,
        Err(SourceError::NotFound { .. }) => {
            return Err(ImportError::Final(
                FileStatus::Gone,
                "deleted before it was read".into(),
            ))
        }
        Err(SourceError::Changed { .. }) => {
            return Err(ImportError::Final(
                FileStatus::Superseded,
                "overwritten before it was read; the newer version is imported separately".into(),
            ))
        }
        Err(e) if e.is_transient() => return Err(ImportError::Transient(e.to_string())),
        Err(e) => return Err(ImportError::Final(FileStatus::Failed, e.to_string())),
    };
    let format = detect_format(
        &version.key,
        stored.template.format,
        body.content_encoding.as_deref(),
    )
    .or(entry.format)
    .ok_or_else(|| ImportError::Final(FileStatus::Failed, "unsupported format".into()))?;
    let mut entry = entry;
    entry.template_version = Some(stored.version);
    *template_version = Some(stored.version);
    let template = Arc::new(stored.template);
    let job = FileJob {
        connector: connector.clone(),
        entry,
        template: template.clone(),
    };
    let mut rows = deps.destination.open_rows(&job).await.map_err(sink_error)?;
    let mut rejects = deps
        .destination
        .open_rejects(&job)
        .await
        .map_err(sink_error)?;
    let options = ImportOptions {
        limits: settings.limits,
        ..ImportOptions::default()
    };
    pipeline::import(
        body.reader,
        format,
        template,
        options,
        rows.as_mut(),
        rejects.as_mut(),
    )
    .await
    .map_err(sink_error)
}
