//! Handling one batch of notification-queue messages: parse, route, look up, decide, claim.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::{debug, info, warn};

use super::envelope::{parse_body, EventKind, Notice, ObjectEvent};
use crate::format::Format;
use crate::sync::claim::{self, ClaimError};
use crate::sync::lister::ListerDeps;
use crate::sync::model::{Connector, ConnectorStatus, Discovery, ObjectMeta};
use crate::sync::ports::{SourceError, StateError};
use crate::sync::rules::{self, Decision, SyncSettings};

/// Settings of the event consumer.
#[derive(Debug, Clone, Default)]
pub struct EventSettings {
    /// The skip rules (size limit); the listing window does not apply to events.
    pub sync: SyncSettings,
}

/// One message of the notification queue.
#[derive(Debug, Clone, Copy)]
pub struct InboundMessage<'a> {
    /// SQS message id (returned in `BatchOutcome::retry` to hand the message back).
    pub id: &'a str,
    /// The body, as the envelope wrote it.
    pub body: &'a str,
}

/// What one batch did, counted (logged, and emitted as metrics by the host).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EventReport {
    /// Messages received.
    pub messages: u64,
    /// Messages that are no notification we can read: acknowledged, never retried.
    pub malformed: u64,
    /// `s3:TestEvent` notifications: acknowledged.
    pub test_events: u64,
    /// Other well-formed notifications (other event types, SNS confirmations): acknowledged.
    pub ignored: u64,
    /// Object-created events, by envelope (`s3`, `sns`, `eventbridge`).
    pub created: BTreeMap<String, u64>,
    /// Object-removed events: recorded, not acted on.
    pub removed: u64,
    /// Created events for a bucket no connector in events mode reads.
    pub unrouted: u64,
    /// Created events in such a bucket but outside every such connector's folder.
    pub outside_folder: u64,
    /// The object was deleted, or replaced by a newer version (whose own event follows), before it was looked up.
    pub stale: u64,
    /// Ledger entries created (sent, or recorded as skipped).
    pub new: u64,
    /// File versions the ledger already had (a duplicate event, or a listing was first).
    pub already_known: u64,
    /// Entries created as skipped, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Messages sent to the work queue.
    pub enqueued: u64,
    /// Messages handed back to the queue after a transient failure.
    pub retried: u64,
}

impl EventReport {
    /// Adds `other`'s counts to these (a host summing its batches).
    pub fn absorb(&mut self, other: &EventReport) {
        self.messages += other.messages;
        self.malformed += other.malformed;
        self.test_events += other.test_events;
        self.ignored += other.ignored;
        for (k, v) in &other.created {
            *self.created.entry(k.clone()).or_default() += v;
        }
        self.removed += other.removed;
        self.unrouted += other.unrouted;
        self.outside_folder += other.outside_folder;
        self.stale += other.stale;
        self.new += other.new;
        self.already_known += other.already_known;
        for (k, v) in &other.skipped {
            *self.skipped.entry(k.clone()).or_default() += v;
        }
        self.enqueued += other.enqueued;
        self.retried += other.retried;
    }
}

/// The result of one batch: the counts, and the ids of the messages to hand back (SQS partial batch response).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Counts.
    pub report: EventReport,
    /// Message ids to retry.
    pub retry: Vec<String>,
}

/// Why one event could not be taken now (its message is handed back).
#[derive(Debug, thiserror::Error)]
enum EventError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Claim(#[from] ClaimError),
    #[error("some file versions could not be claimed or sent")]
    Incomplete,
}

/// Handles one batch. Memory is the batch's: connectors and their template formats are read once per batch,
/// nothing is kept across batches. A malformed message is acknowledged and counted; a transient failure
/// hands its message back (its ledger claim makes the retry harmless).
pub async fn handle_batch(
    deps: &ListerDeps,
    settings: &EventSettings,
    messages: &[InboundMessage<'_>],
) -> BatchOutcome {
    let mut outcome = BatchOutcome::default();
    outcome.report.messages = messages.len() as u64;
    let connectors: Vec<Connector> = match deps.connectors.list_connectors().await {
        Ok(all) => all
            .into_iter()
            .filter(|c| c.status == ConnectorStatus::Active && c.discovery == Discovery::Events)
            .collect(),
        Err(e) => {
            warn!(error = %e, messages = messages.len(), "cannot read connectors; batch handed back");
            outcome.report.retried = messages.len() as u64;
            outcome.retry = messages.iter().map(|m| m.id.to_owned()).collect();
            return outcome;
        }
    };
    // The messages of a batch are taken at once: each is one object (the ledger's conditional claim orders
    // duplicates), and the batch is at most 10.
    let pending: Vec<_> = messages
        .iter()
        .map(|message| handle_message(deps, settings, &connectors, *message))
        .collect();
    let results = futures::future::join_all(pending).await;
    for (id, report, retry) in results {
        outcome.report.absorb(&report);
        if retry {
            outcome.report.retried += 1;
            outcome.retry.push(id);
        }
    }
    info!(
        messages = outcome.report.messages,
        malformed = outcome.report.malformed,
        test_events = outcome.report.test_events,
        removed = outcome.report.removed,
        unrouted = outcome.report.unrouted,
        outside_folder = outcome.report.outside_folder,
        stale = outcome.report.stale,
        new = outcome.report.new,
        already_known = outcome.report.already_known,
        enqueued = outcome.report.enqueued,
        retried = outcome.report.retried,
        "event batch finished"
    );
    outcome
}

/// One message: its notifications routed and taken. Returns its id, its counts and whether to retry it.
async fn handle_message(
    deps: &ListerDeps,
    settings: &EventSettings,
    connectors: &[Connector],
    message: InboundMessage<'_>,
) -> (String, EventReport, bool) {
    let mut report = EventReport::default();
    let mut formats: HashMap<String, Option<Format>> = HashMap::new();
    let notices = match parse_body(message.body) {
        Ok(notices) => notices,
        Err(e) => {
            warn!(message_id = message.id, error = %e, "malformed notification acknowledged");
            report.malformed += 1;
            return (message.id.to_owned(), report, false);
        }
    };
    let mut retry = false;
    for notice in notices {
        let event = match notice {
            Notice::Test { bucket } => {
                info!(message_id = message.id, bucket = %bucket, "s3:TestEvent acknowledged");
                report.test_events += 1;
                continue;
            }
            Notice::Ignored { what } => {
                debug!(message_id = message.id, what = %what, "notification ignored");
                report.ignored += 1;
                continue;
            }
            Notice::Object(event) => event,
        };
        if event.kind == EventKind::Removed {
            info!(bucket = %event.bucket, key = %event.key, event = %event.name, "object removed (recorded, not acted on)");
            report.removed += 1;
            continue;
        }
        *report
            .created
            .entry(event.envelope.as_str().to_owned())
            .or_default() += 1;
        let in_bucket: Vec<&Connector> = connectors
            .iter()
            .filter(|c| c.source.bucket == event.bucket)
            .collect();
        if in_bucket.is_empty() {
            debug!(bucket = %event.bucket, key = %event.key, "no connector in events mode reads this bucket");
            report.unrouted += 1;
            continue;
        }
        let targets: Vec<&Connector> = in_bucket
            .into_iter()
            .filter(|c| in_folder(c, &event))
            .collect();
        if targets.is_empty() {
            debug!(bucket = %event.bucket, key = %event.key, "event outside every connector's folder");
            report.outside_folder += 1;
            continue;
        }
        for connector in targets {
            if let Err(e) = take(deps, settings, connector, &event, &mut formats, &mut report).await
            {
                warn!(
                    connector = %connector.id, bucket = %event.bucket, key = %event.key,
                    message_id = message.id, error = %e, "event handed back"
                );
                retry = true;
            }
        }
    }
    (message.id.to_owned(), report, retry)
}

/// The folder scoping of a listing: the key starts with the connector's prefix.
fn in_folder(connector: &Connector, event: &ObjectEvent) -> bool {
    let prefix = connector.source.prefix.as_deref().unwrap_or("");
    event.key.starts_with(prefix)
        || event
            .fallback_key
            .as_deref()
            .is_some_and(|k| k.starts_with(prefix))
}

/// One created event for one connector: look the object up (storage class, LastModified, current ETag), apply
/// the skip rules, claim it once.
async fn take(
    deps: &ListerDeps,
    settings: &EventSettings,
    connector: &Connector,
    event: &ObjectEvent,
    formats: &mut HashMap<String, Option<Format>>,
    report: &mut EventReport,
) -> Result<(), EventError> {
    let Some(object) = look_up(deps, connector, event).await? else {
        report.stale += 1;
        return Ok(());
    };
    let format = match formats.get(&connector.id) {
        Some(format) => *format,
        None => {
            let format = deps
                .templates
                .get_template(&connector.template_id, connector.template_version)
                .await?
                .and_then(|t| t.template.format);
            formats.insert(connector.id.clone(), format);
            format
        }
    };
    let decision = rules::decide(&object, DateTime::<Utc>::MIN_UTC, &settings.sync, format);
    if matches!(decision, Decision::Ignore(_)) {
        // A folder marker.
        report.ignored += 1;
        return Ok(());
    }
    let now = deps.clock.now();
    let entry = claim::entry_for(connector, &object, decision, now);
    let tally = claim::claim_and_send(deps, &connector.id, vec![entry], 1, now).await?;
    info!(
        connector = %connector.id, key = %object.key, etag = %object.etag,
        new = tally.new, already_known = tally.already_known, enqueued = tally.enqueued,
        "event claimed"
    );
    report.new += tally.new;
    report.already_known += tally.already_known;
    for (reason, n) in tally.skipped {
        *report.skipped.entry(reason).or_default() += n;
    }
    report.enqueued += tally.enqueued;
    if tally.complete {
        Ok(())
    } else {
        Err(EventError::Incomplete)
    }
}

/// The object the event names, as it is now; `None` when it is gone, or was replaced by another version than the
/// event's (that version has its own event). A connector reading a versioned bucket looks up the event's own
/// version, which stays readable after newer ones are written.
async fn look_up(
    deps: &ListerDeps,
    connector: &Connector,
    event: &ObjectEvent,
) -> Result<Option<ObjectMeta>, SourceError> {
    let version_id = event
        .version_id
        .as_deref()
        .filter(|_| connector.source.versions);
    let source = &connector.source;
    let mut found = deps.source.head(source, &event.key, version_id).await?;
    if found.is_none() {
        if let Some(key) = &event.fallback_key {
            found = deps.source.head(source, key, version_id).await?;
        }
    }
    Ok(found.filter(|object| {
        event
            .etag
            .as_deref()
            .is_none_or(|etag| etag.trim_matches('"') == object.etag.trim_matches('"'))
    }))
}
