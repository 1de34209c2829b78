//! Versioned buckets end to end on the emulator: a connector reading versions lists them with
//! ListObjectVersions, reads each by its VersionId, and keeps the newer version's rows whichever the worker
//! takes first; in `events` mode, each notification's own version is claimed. moto's notifications carry no
//! `versionId` (AWS's do): the test sends the notification AWS sends, next to moto's own.

use std::collections::BTreeSet;

use anyhow::{ensure, Context, Result};
use s3_importer_core::sync::ports::ConnectorStore;
use s3_importer_core::sync::{Discovery, FileMessage, FileStatus};
use s3_importer_tests::deployment::Deployment;
use s3_importer_tests::notifications::Route;

/// A deployment whose source bucket keeps versions and whose connector reads them.
async fn versioned(discovery: Discovery) -> Result<Deployment> {
    let mut d = Deployment::new().await?;
    d.enable_versioning().await?;
    d.connector.source.versions = true;
    d.connector.discovery = discovery;
    d.state.update_connector(&d.connector).await?;
    Ok(d)
}

/// The `(version id, status)` of every ledger entry of `name`.
async fn versions_of(d: &Deployment, name: &str) -> Result<BTreeSet<(Option<String>, FileStatus)>> {
    Ok(d.files()
        .await?
        .remove(name)
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.version.version_id, e.status))
        .collect())
}

/// The stored `qty` of the row whose id is `id`.
async fn qty(d: &Deployment, id: &str) -> Result<String> {
    let records = d.records().await?;
    let row = records.get(&d.pk(id)).context("no such row")?;
    Ok(format!("{:?}", row.get("qty").context("no qty")?))
}

#[tokio::test]
async fn two_versions_written_back_to_back_are_both_imported_and_the_newer_rows_win() -> Result<()>
{
    let d = versioned(Discovery::Poll).await?;
    let key = Deployment::key("orders.csv");
    let (_, older) = d.put_version(&key, b"id,qty\n1,1\n2,1\n").await?;
    let (_, newer) = d.put_version(&key, b"id,qty\n1,2\n").await?;

    let run = d.sync().await?;
    ensure!((run.listed, run.new, run.enqueued) == (2, 2, 2), "{run:#?}");
    // The worker takes the newer version first: the older one's rows must not overwrite it.
    let mut messages = d.receive().await?;
    ensure!(messages.len() == 2, "{messages:?}");
    messages.sort_by_key(|m| {
        serde_json::from_str::<FileMessage>(&m.body)
            .ok()
            .and_then(|f| f.version.version_id)
            != Some(newer.clone())
    });
    for message in &messages {
        let response = d.deliver(&d.worker, std::slice::from_ref(message)).await?;
        ensure!(d
            .settle(std::slice::from_ref(message), &response)
            .await?
            .is_empty());
    }
    let want: BTreeSet<_> = [older, newer]
        .into_iter()
        .map(|id| (Some(id), FileStatus::Imported))
        .collect();
    ensure!(versions_of(&d, "orders.csv").await? == want);
    ensure!(qty(&d, "1").await?.contains('2'), "{}", qty(&d, "1").await?);
    ensure!(qty(&d, "2").await?.contains('1'));

    // Listed again, nothing is new.
    let run = d.sync().await?;
    ensure!(run.new == 0, "{run:#?}");
    Ok(())
}

#[tokio::test]
async fn an_events_connector_claims_the_version_each_notification_names() -> Result<()> {
    let d = versioned(Discovery::Events).await?;
    d.route_events(Route::Direct, None).await?;
    let key = Deployment::key("stock.csv");
    let first = b"id,qty\n7,1\n";
    let (first_etag, first_id) = d.put_version(&key, first).await?;
    let (_, second_id) = d.put_version(&key, b"id,qty\n7,2\n").await?;

    // moto's two notifications name no version: each looks the key up and finds the second version.
    let report = d.drain_notifications().await?;
    ensure!(
        (report.new, report.stale) == (1, 1),
        "moto's notifications: {report:?}"
    );
    // AWS's notification of the first version names it: that version is claimed, once.
    for _ in 0..2 {
        d.notify_version(&key, first.len() as u64, &first_etag, &first_id)
            .await?;
    }
    let report = d.drain_notifications().await?;
    ensure!(
        (report.new, report.already_known, report.stale) == (1, 1, 0),
        "versioned notifications: {report:?}"
    );
    let drained = d.drain().await?;
    ensure!(
        drained.acked == 2 && drained.retried.is_empty(),
        "{drained:?}"
    );
    let want: BTreeSet<_> = [first_id, second_id]
        .into_iter()
        .map(|id| (Some(id), FileStatus::Imported))
        .collect();
    ensure!(versions_of(&d, "stock.csv").await? == want);
    ensure!(qty(&d, "7").await?.contains('2'), "{}", qty(&d, "7").await?);
    Ok(())
}
