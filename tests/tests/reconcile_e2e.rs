//! The reconciliation listing end to end on the emulator, through the lister handler's scheduled payload:
//! a polling connector's file made visible an hour behind the watermark is found by the daily
//! reconciliation (`FilesFoundLate`), and an event-mode connector's file whose event was dropped (the bucket's
//! notification configuration removed for a while) by the hourly one (`FilesMissedByEvents`). Time passes
//! through the deployment's clock; the emulator's objects keep their real LastModified.

use anyhow::{ensure, Context, Result};
use aws_sdk_s3::types::NotificationConfiguration;
use chrono::Duration;
use s3_importer_core::metrics::{self, names};
use s3_importer_core::sync::ports::ConnectorStore;
use s3_importer_core::sync::{Clock, SyncRun};
use s3_importer_tests::deployment::{request_id, Deployment};
use s3_importer_tests::notifications::Route;
use serde_json::json;

const BODY: &[u8] = b"id,qty\n1,2\n";

/// One scheduled lister invocation (every active connector, reconciliations when due); this connector's run.
async fn scheduled(d: &Deployment) -> Result<SyncRun> {
    let response =
        s3_importer_lister::handle(&d.lister, json!({}), &request_id("schedule")).await?;
    response
        .connectors
        .into_iter()
        .find(|c| c.connector == d.connector.name)
        .and_then(|c| c.run)
        .context("the scheduled run did not sync the connector")
}

#[tokio::test]
async fn a_file_visible_an_hour_behind_the_watermark_is_found_by_the_daily_reconciliation(
) -> Result<()> {
    let d = Deployment::new().await?;
    d.put("first.csv", BODY).await?;
    let run = scheduled(&d).await?;
    ensure!(run.enqueued == 1 && run.reconciled.is_none(), "{run:#?}");
    d.drain().await?;

    // The watermark an hour ahead of a file that becomes visible now: beyond the overlap.
    d.state
        .advance_watermark(&d.connector.id, d.clock.now() + Duration::hours(1))
        .await?;
    d.put("late.csv", BODY).await?;
    let run = scheduled(&d).await?;
    ensure!(run.new == 0 && run.reconciled.is_none(), "{run:#?}");
    ensure!(!d.files().await?.contains_key("late.csv"));

    d.clock.advance(Duration::hours(25));
    let run = scheduled(&d).await?;
    let reconciled = run
        .reconciled
        .clone()
        .context("no reconciliation after a day")?;
    ensure!(
        run.error.is_none()
            && reconciled.complete
            && (
                reconciled.listed,
                reconciled.list_calls,
                reconciled.found_late
            ) == (2, 1, 1),
        "{run:#?}"
    );
    let doc = metrics::sync_run("Ns", &d.connector.name, &run, d.clock.now());
    ensure!(doc.value(names::FILES_FOUND_LATE) == Some(1.0));
    ensure!(doc.value(names::FILES_MISSED_BY_EVENTS) == Some(0.0));
    d.drain().await?;
    d.imported_once(&["first.csv", "late.csv"]).await?;
    let stored = d
        .connector_now()
        .await?
        .reconcile
        .context("no progress stored")?;
    ensure!(
        stored.completed_at == Some(run.started_at) && stored.in_progress.is_none(),
        "{stored:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_file_whose_event_was_dropped_is_found_by_the_hourly_reconciliation() -> Result<()> {
    let mut d = Deployment::new().await?;
    d.use_events(Route::Direct, None).await?;
    d.drain_notifications().await?;

    // The notification configuration removed for a while: the file lands without an event.
    s3_importer_tests::s3_client(&d.sdk)
        .put_bucket_notification_configuration()
        .bucket(&d.source_bucket)
        .notification_configuration(NotificationConfiguration::builder().build())
        .send()
        .await?;
    d.put("dropped.csv", BODY).await?;
    let report = d.drain_notifications().await?;
    ensure!(report.new == 0, "{report:?}");

    d.route_events(Route::Direct, None).await?;
    d.put("arrived.csv", BODY).await?;
    let report = d.drain_notifications().await?;
    ensure!(report.new == 1, "{report:?}");
    d.drain().await?;
    let run = scheduled(&d).await?;
    ensure!(
        run.listed == 0 && run.reconciled.is_none(),
        "not due yet: {run:#?}"
    );

    d.clock.advance(Duration::minutes(61));
    let run = scheduled(&d).await?;
    let reconciled = run
        .reconciled
        .clone()
        .context("no reconciliation after an hour")?;
    ensure!(
        run.error.is_none()
            && (
                reconciled.found,
                reconciled.missed_by_events,
                reconciled.found_late
            ) == (1, 1, 0),
        "{run:#?}"
    );
    let doc = metrics::sync_run("Ns", &d.connector.name, &run, d.clock.now());
    ensure!(doc.value(names::FILES_MISSED_BY_EVENTS) == Some(1.0));
    d.drain().await?;
    d.imported_once(&["arrived.csv", "dropped.csv"]).await?;

    // The next hour's pass finds nothing new.
    d.clock.advance(Duration::minutes(61));
    let again = scheduled(&d).await?.reconciled.context("not due")?;
    ensure!(again.found == 0 && again.complete, "{again:?}");
    Ok(())
}
