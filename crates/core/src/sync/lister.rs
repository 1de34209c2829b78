//! Discovery: one pass over one connector, and a pass over every active connector (`docs/architecture.md`,
//! "Data flow").
//!
//! Never miss: the whole prefix is listed every time (S3 cannot filter by LastModified), objects back to
//! `watermark - overlap` are reconsidered, and the watermark only advances after a complete run. Never
//! double: a file version is sent only after this run *created* its ledger entry with a conditional write,
//! or when a `claimed` entry was left unsent by a lister that died; a `queued` entry is never re-sent.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use futures::stream::{self, StreamExt};
use tracing::{info, warn};

use super::claim::{self, ClaimError};
use super::clock::Clock;
use super::model::{
    sync_lease_name, Connector, ConnectorStatus, Discovery, FileStatus, LedgerEntry, SyncRun,
};
use super::ports::{
    ConnectorStore, FileLedger, FileQueue, LeaseStore, ObjectSource, SourceError, StateError,
    StateStore, SyncHistory, TemplateStore,
};
use super::reconcile::{self, ReconcileSettings};
use super::rules::{self, Decision, SyncSettings};
use crate::format::Format;

/// What the lister talks to: each state capability on its own, so a test can replace one (say, the leases)
/// and keep the others.
#[derive(Clone)]
pub struct ListerDeps {
    /// Connectors: the ones to sync, their watermark, `broken` on a permanent failure.
    pub connectors: Arc<dyn ConnectorStore>,
    /// Templates: a connector's template is checked before listing.
    pub templates: Arc<dyn TemplateStore>,
    /// The file ledger: claims and `queued` marks.
    pub ledger: Arc<dyn FileLedger>,
    /// The per-connector sync lease.
    pub leases: Arc<dyn LeaseStore>,
    /// Where each pass is recorded.
    pub history: Arc<dyn SyncHistory>,
    /// Source buckets.
    pub source: Arc<dyn ObjectSource>,
    /// Work queue.
    pub queue: Arc<dyn FileQueue>,
    /// Clock.
    pub clock: Arc<dyn Clock>,
}

impl ListerDeps {
    /// Every state capability from one store (the state table).
    pub fn new<S: StateStore + 'static>(
        state: Arc<S>,
        source: Arc<dyn ObjectSource>,
        queue: Arc<dyn FileQueue>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            connectors: state.clone(),
            templates: state.clone(),
            ledger: state.clone(),
            leases: state.clone(),
            history: state,
            source,
            queue,
            clock,
        }
    }
}

/// Lister settings.
#[derive(Debug, Clone)]
pub struct ListerSettings {
    /// Discovery rules.
    pub sync: SyncSettings,
    /// Connectors synced at once.
    pub concurrency: usize,
    /// How long a connector's sync lease lasts (longer than any run; a dead lister's lease expires).
    pub lease_ttl: Duration,
    /// Ledger writes in flight per connector.
    pub claim_concurrency: usize,
    /// This run's identity, for the lease.
    pub owner: String,
    /// The reconciliation listing's schedule and budget.
    pub reconcile: ReconcileSettings,
}

impl Default for ListerSettings {
    fn default() -> Self {
        Self {
            sync: SyncSettings::default(),
            concurrency: 4,
            lease_ttl: Duration::minutes(10),
            claim_concurrency: 16,
            owner: format!("lister-{}", std::process::id()),
            reconcile: ReconcileSettings::default(),
        }
    }
}

/// The result of asking to sync one connector.
// One per connector per lister run, moved once: boxing the run would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum SyncOutcome {
    /// The pass ran (possibly with an error, recorded in the run).
    Ran(SyncRun),
    /// Another lister holds the connector's lease: nothing done.
    Busy,
    /// The connector is not active.
    NotActive,
}

/// Why a pass stopped early.
#[derive(Debug, thiserror::Error)]
enum PassError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Claim(#[from] ClaimError),
    #[error(transparent)]
    Reconcile(#[from] reconcile::ReconcileError),
    #[error("{0}")]
    Other(String),
}

/// Whether a pass also does the reconciliation listing (`reconcile.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reconciling {
    /// When the connector's reconciliation is due or in progress (the schedule).
    IfDue,
    /// Now, continuing one in progress (an explicit request).
    Now,
    /// Not in this pass.
    Never,
}

/// Syncs every active connector (listing those that poll, see [`Discovery`]) and does the reconciliation
/// listings that are due, `settings.concurrency` connectors at a time. Returns each connector's outcome.
pub async fn sync_all(
    deps: &ListerDeps,
    settings: &ListerSettings,
) -> Result<Vec<(String, SyncOutcome)>, StateError> {
    let connectors = deps.connectors.list_connectors().await?;
    let outcomes = stream::iter(
        connectors
            .into_iter()
            .filter(|c| c.status == ConnectorStatus::Active),
    )
    .map(|connector| async move {
        // A connector fed by S3 events is not listed on the schedule: its pass only sends the entries an event
        // claimed but could not send. (An explicit sync lists it.)
        let list = connector.discovery == Discovery::Poll;
        let outcome =
            sync_connector_with(deps, settings, &connector, list, Reconciling::IfDue).await;
        (connector.name.clone(), outcome)
    })
    .buffer_unordered(settings.concurrency.max(1))
    .collect::<Vec<_>>()
    .await;
    Ok(outcomes)
}

/// One discovery pass over one connector, listing its folder whatever its discovery mode.
pub async fn sync_connector(
    deps: &ListerDeps,
    settings: &ListerSettings,
    connector: &Connector,
) -> SyncOutcome {
    sync_connector_with(deps, settings, connector, true, Reconciling::Never).await
}

/// One pass over one connector with its reconciliation listing now (continuing one in progress), whatever
/// its schedule: a polling connector is also polled first.
pub async fn reconcile_connector(
    deps: &ListerDeps,
    settings: &ListerSettings,
    connector: &Connector,
) -> SyncOutcome {
    let list = connector.discovery == Discovery::Poll;
    sync_connector_with(deps, settings, connector, list, Reconciling::Now).await
}

/// One pass; without `list`, only the entries left `claimed` are sent.
async fn sync_connector_with(
    deps: &ListerDeps,
    settings: &ListerSettings,
    connector: &Connector,
    list: bool,
    reconciling: Reconciling,
) -> SyncOutcome {
    if connector.status != ConnectorStatus::Active {
        return SyncOutcome::NotActive;
    }
    let started = Instant::now();
    let now = deps.clock.now();
    let lease = sync_lease_name(&connector.id);
    match deps
        .leases
        .acquire_lease(&lease, &settings.owner, now, settings.lease_ttl)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            info!(connector = %connector.id, "sync skipped: another lister holds the lease");
            return SyncOutcome::Busy;
        }
        Err(e) => {
            let run = SyncRun {
                connector_id: connector.id.clone(),
                started_at: now,
                error: Some(format!("cannot take the sync lease: {e}")),
                ..SyncRun::default()
            };
            return SyncOutcome::Ran(run);
        }
    }
    let mut run = SyncRun {
        connector_id: connector.id.clone(),
        started_at: now,
        watermark_before: connector.watermark,
        watermark_after: connector.watermark,
        ..SyncRun::default()
    };
    let mut result = pass(deps, settings, connector, now, list, &mut run).await;
    if let Ok(template_format) = result {
        let started_at = match reconciling {
            Reconciling::IfDue => reconcile::due(connector, now, &settings.reconcile),
            Reconciling::Now => Some(
                connector
                    .reconcile
                    .as_ref()
                    .and_then(|r| r.in_progress.as_ref())
                    .map_or(now, |p| p.started_at),
            ),
            Reconciling::Never => None,
        };
        if let Some(started_at) = started_at {
            let reconciled = run.reconciled.insert(Default::default());
            result = reconcile::reconcile(
                deps,
                settings,
                connector,
                template_format,
                started_at,
                reconciled,
            )
            .await
            .map(|()| template_format)
            .map_err(PassError::from);
            run.enqueued += run.reconciled.as_ref().map_or(0, |r| r.enqueued);
        }
    }
    if let Err(e) = &result {
        run.error = Some(e.to_string());
        warn!(connector = %connector.id, error = %e, "sync failed");
        let source_error = match e {
            PassError::Source(e) | PassError::Reconcile(reconcile::ReconcileError::Source(e)) => {
                Some(e)
            }
            _ => None,
        };
        if let Some(source_error) = source_error {
            if !source_error.is_transient() {
                // Access and ownership problems do not fix themselves: show the connector as broken, with the
                // reason, until `connector reauth` or `connector resume` verifies it again.
                let mut broken = connector.clone();
                broken.status = ConnectorStatus::Broken {
                    reason: source_error.to_string(),
                };
                broken.updated_at = now;
                if let Err(e) = deps.connectors.update_connector(&broken).await {
                    warn!(connector = %connector.id, error = %e, "cannot mark connector broken");
                }
            }
        }
    }
    run.duration_ms = started.elapsed().as_millis() as u64;
    if let Err(e) = deps.history.record_sync_run(&run).await {
        warn!(connector = %connector.id, error = %e, "cannot record sync run");
    }
    if let Err(e) = deps.leases.release_lease(&lease, &settings.owner).await {
        // The lease expires on its own; the next run waits at most lease_ttl.
        warn!(connector = %connector.id, error = %e, "cannot release sync lease");
    }
    info!(
        connector = %connector.id,
        listed = run.listed,
        candidates = run.candidates,
        new = run.new,
        enqueued = run.enqueued,
        resent = run.resent,
        already_known = run.already_known,
        duration_ms = run.duration_ms,
        error = run.error.as_deref().unwrap_or(""),
        "sync finished"
    );
    if let Some(r) = &run.reconciled {
        info!(
            connector = %connector.id,
            listed = r.listed,
            list_calls = r.list_calls,
            ledger_reads = r.ledger_reads,
            found = r.found,
            missed_by_events = r.missed_by_events,
            found_late = r.found_late,
            complete = r.complete,
            "reconciliation finished"
        );
    }
    SyncOutcome::Ran(run)
}

async fn pass(
    deps: &ListerDeps,
    settings: &ListerSettings,
    connector: &Connector,
    now: DateTime<Utc>,
    list: bool,
    run: &mut SyncRun,
) -> Result<Option<Format>, PassError> {
    let template = deps
        .templates
        .get_template(&connector.template_id, connector.template_version)
        .await?
        .ok_or_else(|| {
            PassError::Other(format!("template {:?} not found", connector.template_id))
        })?;
    let template_format = template.template.format;
    let mut complete = true;

    // 1. Entries claimed by a lister that died before sending: send them now. (Entries this run claims
    //    are younger than `resend_claimed_after`, so they are not picked up twice.)
    let stale_before = now - settings.sync.resend_claimed_after;
    let stale: Vec<LedgerEntry> = deps
        .ledger
        .list_files(&connector.id, Some(FileStatus::Claimed))
        .await?
        .into_iter()
        .filter(|e| e.discovered_at <= stale_before)
        .collect();
    if !stale.is_empty() {
        let (sent, all) = claim::send(deps, &connector.id, &stale, now).await?;
        run.resent += sent;
        run.enqueued += sent;
        complete &= all;
    }

    if !list {
        return if complete {
            Ok(template_format)
        } else {
            Err(PassError::Other(
                "some claimed files could not be sent; they will be retried on the next run".into(),
            ))
        };
    }

    // 2. List everything, page by page, deciding and claiming as we go (memory stays per page).
    let window_start = rules::window_start(connector.watermark, now, &settings.sync);
    let mut newest: Option<DateTime<Utc>> = None;
    let mut continuation = None;
    loop {
        let page = deps
            .source
            .list_page(&connector.source, continuation.take())
            .await?;
        run.listed += page.objects.len() as u64;
        let mut considered = Vec::new();
        for object in page.objects {
            let decision = rules::decide(&object, window_start, &settings.sync, template_format);
            if matches!(decision, Decision::Ignore(_)) {
                continue;
            }
            newest = Some(newest.map_or(object.last_modified, |n| n.max(object.last_modified)));
            let entry = claim::entry_for(connector, &object, decision, now);
            considered.push(entry);
        }
        run.candidates += considered.len() as u64;
        let tally = claim::claim_and_send(
            deps,
            &connector.id,
            considered,
            settings.claim_concurrency,
            now,
        )
        .await?;
        run.new += tally.new;
        run.already_known += tally.already_known;
        for (reason, n) in tally.skipped {
            *run.skipped.entry(reason).or_default() += n;
        }
        run.enqueued += tally.enqueued;
        complete &= tally.complete;
        match page.next {
            Some(next) => continuation = Some(next),
            None => break,
        }
    }

    // 3. Advance the watermark only after everything considered is durably claimed and sent.
    let after = rules::next_watermark(connector.watermark, newest, complete);
    if after != connector.watermark {
        if let Some(to) = after {
            deps.connectors.advance_watermark(&connector.id, to).await?;
        }
    }
    run.watermark_after = after;
    if !complete {
        return Err(PassError::Other(
            "some files could not be claimed or sent; they will be retried on the next run".into(),
        ));
    }
    Ok(template_format)
}
