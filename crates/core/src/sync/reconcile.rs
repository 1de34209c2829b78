//! The reconciliation listing: on a slower schedule than the poll, a connector's whole lookback window is held
//! against the ledger, so a file the S3 events missed (event mode) or that became visible behind the poll's
//! overlap (polling) is still imported, and counted (`FilesMissedByEvents`, `FilesFoundLate`). README,
//! "Reconciliation"; `docs/architecture.md`, "Data flow".
//!
//! A pass keeps one page in memory and claims as it goes, through the same ledger claim as every other path,
//! so nothing found twice is sent twice. A pass that reaches its budget (list calls or wall time) saves the
//! last key it finished with; the next lister run resumes after it (`StartAfter`), with the window fixed by
//! the pass's start.

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::claim::{self, ClaimError};
use super::lister::{ListerDeps, ListerSettings};
use super::model::{Connector, Discovery, ObjectMeta, Reconcile, ReconcileProgress, ReconcileRun};
use super::ports::{ListPage, SourceError, StateError};
use super::rules::{self, Decision};
use crate::format::Format;

/// When reconciliation runs and how much one lister run may spend on it per connector (README's
/// configuration table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileSettings {
    /// A polling connector's whole lookback is reconciled this often (default a day); zero turns it off.
    pub poll_every: Duration,
    /// An event-mode connector is listed this often (default an hour); zero turns it off.
    pub events_every: Duration,
    /// ListObjectsV2 calls one run spends on one connector before it checkpoints (default 1,000: a million
    /// objects).
    pub max_list_calls: u64,
    /// Wall time one run spends on one connector's reconciliation before it checkpoints (default 2 minutes;
    /// keep it under the lister's timeout and its sync lease).
    pub max_duration: std::time::Duration,
    /// The position is saved every this many pages, so a lister killed mid-pass loses little.
    pub save_every_pages: u64,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        Self {
            poll_every: Duration::hours(24),
            events_every: Duration::hours(1),
            max_list_calls: 1000,
            max_duration: std::time::Duration::from_secs(120),
            save_every_pages: 10,
        }
    }
}

impl ReconcileSettings {
    /// The interval for a connector's discovery mode; `None` when turned off.
    pub fn every(&self, discovery: Discovery) -> Option<Duration> {
        let every = match discovery {
            Discovery::Poll => self.poll_every,
            Discovery::Events => self.events_every,
        };
        (every > Duration::zero()).then_some(every)
    }
}

/// When the pass that a run at `now` should do started: a pass in progress continues with its own start; a
/// new one is due an interval after the last complete pass started (or after the connector was created).
/// `None` when nothing is due.
pub fn due(
    connector: &Connector,
    now: DateTime<Utc>,
    settings: &ReconcileSettings,
) -> Option<DateTime<Utc>> {
    let state = connector.reconcile.clone().unwrap_or_default();
    if let Some(progress) = state.in_progress {
        return Some(progress.started_at);
    }
    let every = settings.every(connector.discovery)?;
    let since = state.completed_at.unwrap_or(connector.created_at);
    (now >= since + every).then_some(now)
}

/// Why a reconciliation pass stopped early (its progress up to the last complete page is saved).
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Listing failed.
    #[error("reconciliation: {0}")]
    Source(#[from] SourceError),
    /// The ledger or the connector could not be read or written.
    #[error("reconciliation: {0}")]
    State(#[from] StateError),
    /// Claiming or sending failed.
    #[error("reconciliation: {0}")]
    Claim(#[from] ClaimError),
    /// Some files could not be claimed or sent; the next run resumes before them.
    #[error(
        "reconciliation: some files could not be claimed or sent; the next run resumes before them"
    )]
    Incomplete,
}

/// One reconciliation pass (or the part of it the budget allows) over `connector`, started at `started_at`
/// (see [`due`]). Objects modified within the overlap of the start are left to the poll and the events.
/// `run` is filled in as the pass goes, so an error still reports what was done.
pub async fn reconcile(
    deps: &ListerDeps,
    lister: &ListerSettings,
    connector: &Connector,
    template_format: Option<Format>,
    started_at: DateTime<Utc>,
    run: &mut ReconcileRun,
) -> Result<(), ReconcileError> {
    let (sync, settings) = (&lister.sync, &lister.reconcile);
    let clock_start = Instant::now();
    let state = connector.reconcile.clone().unwrap_or_default();
    let mut after_key = state
        .in_progress
        .as_ref()
        .filter(|p| p.started_at == started_at)
        .map(|p| p.after_key.clone());
    let window_start = started_at - sync.lookback;
    let newest = started_at - sync.overlap;
    let save = |after_key: Option<String>, complete: bool| {
        let reconcile = if complete {
            Reconcile {
                completed_at: Some(started_at),
                in_progress: None,
            }
        } else {
            Reconcile {
                completed_at: state.completed_at,
                in_progress: after_key.map(|after_key| ReconcileProgress {
                    started_at,
                    after_key,
                }),
            }
        };
        let connectors = deps.connectors.clone();
        let id = connector.id.clone();
        async move { connectors.save_reconcile(&id, &reconcile).await }
    };

    let mut page = first_page(deps, connector, after_key.as_deref()).await?;
    run.list_calls += 1;
    let mut pages_since_save = 0;
    loop {
        run.listed += page.objects.len() as u64;
        let last_key = page.objects.last().map(ObjectMeta::listing_position);
        let mut considered = Vec::new();
        for object in page.objects {
            if object.last_modified > newest {
                continue;
            }
            let decision = rules::decide(&object, window_start, sync, template_format);
            if matches!(decision, Decision::Ignore(_)) {
                continue;
            }
            considered.push(claim::entry_for(connector, &object, decision, started_at));
        }
        run.ledger_reads += considered.len() as u64;
        let tally = claim::claim_and_send(
            deps,
            &connector.id,
            considered,
            lister.claim_concurrency,
            deps.clock.now(),
        )
        .await;
        let tally = match tally {
            Ok(tally) => tally,
            Err(e) => {
                save(after_key, false).await?;
                return Err(e.into());
            }
        };
        run.found += tally.new;
        run.enqueued += tally.enqueued;
        match connector.discovery {
            Discovery::Events => run.missed_by_events += tally.new,
            Discovery::Poll => run.found_late += tally.new,
        }
        if !tally.complete {
            save(after_key, false).await?;
            return Err(ReconcileError::Incomplete);
        }
        if last_key.is_some() {
            after_key = last_key;
        }
        let Some(token) = page.next else {
            run.complete = true;
            save(None, true).await?;
            return Ok(());
        };
        pages_since_save += 1;
        let out_of_budget = run.list_calls >= settings.max_list_calls
            || clock_start.elapsed() >= settings.max_duration;
        if out_of_budget || pages_since_save >= settings.save_every_pages {
            save(after_key.clone(), false).await?;
            pages_since_save = 0;
        }
        if out_of_budget {
            info!(
                connector = %connector.id,
                list_calls = run.list_calls,
                after_key = after_key.as_deref().unwrap_or(""),
                "reconciliation reached its budget; the next run continues it"
            );
            return Ok(());
        }
        page = match deps.source.list_page(&connector.source, Some(token)).await {
            Ok(page) => page,
            Err(e) => {
                if let Err(save_error) = save(after_key, false).await {
                    warn!(connector = %connector.id, error = %save_error, "cannot save the reconciliation position");
                }
                return Err(e.into());
            }
        };
        run.list_calls += 1;
    }
}

/// The pass's first page: from the start, or after the key a checkpointed pass stopped at.
async fn first_page(
    deps: &ListerDeps,
    connector: &Connector,
    after_key: Option<&str>,
) -> Result<ListPage, SourceError> {
    match after_key {
        Some(key) => deps.source.list_page_after(&connector.source, key).await,
        None => deps.source.list_page(&connector.source, None).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::model::{ConnectorStatus, DestinationConfig, Source};

    fn connector(discovery: Discovery, created_at: DateTime<Utc>) -> Connector {
        Connector {
            id: "c-1".into(),
            name: "n".into(),
            status: ConnectorStatus::Active,
            source: Source {
                account_id: "111111111111".into(),
                bucket: "b".into(),
                region: "eu-west-1".into(),
                prefix: None,
                role_arn: None,
                external_id: None,
                versions: false,
            },
            template_id: "t".into(),
            template_version: None,
            destination: DestinationConfig::Dynamodb { table: "r".into() },
            created_at,
            updated_at: created_at,
            watermark: None,
            last_sync: None,
            discovery,
            reconcile: None,
        }
    }

    #[test]
    fn due_an_interval_after_the_last_complete_pass_or_the_creation_and_at_once_when_in_progress() {
        let t = DateTime::<Utc>::UNIX_EPOCH + Duration::days(1000);
        let s = ReconcileSettings::default();
        let mut c = connector(Discovery::Poll, t);
        assert_eq!(due(&c, t + Duration::hours(23), &s), None);
        let now = t + Duration::hours(24);
        assert_eq!(due(&c, now, &s), Some(now), "a day after creation");
        c.reconcile = Some(Reconcile {
            completed_at: Some(now),
            in_progress: None,
        });
        assert_eq!(due(&c, now + Duration::hours(1), &s), None);
        c.discovery = Discovery::Events;
        let later = now + Duration::hours(1);
        assert_eq!(due(&c, later, &s), Some(later), "events: hourly");
        c.reconcile = Some(Reconcile {
            completed_at: Some(later),
            in_progress: Some(ReconcileProgress {
                started_at: later - Duration::minutes(5),
                after_key: "k".into(),
            }),
        });
        assert_eq!(
            due(&c, later, &s),
            Some(later - Duration::minutes(5)),
            "a pass in progress continues with its own start"
        );
        let off = ReconcileSettings {
            events_every: Duration::zero(),
            ..s
        };
        c.reconcile = None;
        assert_eq!(due(&c, later + Duration::days(9), &off), None, "zero: off");
    }
}
