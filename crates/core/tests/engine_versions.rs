//! Versioned buckets on the in-memory adapters (the fast engine tier): a connector reading versions lists
//! every version, imports each from its own version (not the key's current one), and keeps the newer
//! version's rows when two versions share LastModified's second, whichever the worker takes first. The
//! emulator suite `tests/tests/versions_e2e.rs` does the same on S3.

mod engine;

use std::collections::BTreeSet;

use engine::{csv, Received, Result, World, BUCKET};
use s3_importer_core::sync::ports::ConnectorStore;
use s3_importer_core::sync::{Clock, FileStatus};

/// A world whose bucket keeps versions and whose connector reads them (`versions` on or off).
async fn versioned_world(versions: bool) -> Result<World> {
    let w = World::new().await?;
    w.s3.enable_versioning(BUCKET);
    let mut c = w.connector_now().await?;
    c.source.versions = versions;
    w.state.update_connector(&c).await?;
    Ok(w)
}

/// The messages now visible, the one of `version_id` first.
fn first_the_one_of(w: &World, version_id: &str) -> Result<Vec<Received>> {
    let mut messages = w.receive()?;
    messages.sort_by_key(|m| m.message.version.version_id.as_deref() != Some(version_id));
    Ok(messages)
}

fn version_ids(w: &World, name: &str) -> Vec<String> {
    // The memory bucket names versions in the order they are written.
    let mut ids = Vec::new();
    if let Some(object) = w.s3.get(BUCKET, &World::key(name)) {
        ids.extend(object.version_id);
    }
    ids
}

#[tokio::test]
async fn two_versions_in_one_second_are_both_imported_and_the_newer_rows_win_in_either_order(
) -> Result {
    for newer_first in [false, true] {
        let w = versioned_world(true).await?;
        let at = w.clock.now();
        w.put_at("orders.csv", &csv(&[("a-1", 1), ("a-2", 1)]), at);
        let older = version_ids(&w, "orders.csv");
        w.put_at("orders.csv", &csv(&[("a-1", 2)]), at);
        let newer = version_ids(&w, "orders.csv");

        let run = w.sync().await?;
        assert_eq!((run.listed, run.new, run.enqueued), (2, 2, 2), "{run:#?}");
        let first = if newer_first { &newer[0] } else { &older[0] };
        let messages = first_the_one_of(&w, first)?;
        for message in &messages {
            let retried = w
                .deliver_and_settle(&w.worker, std::slice::from_ref(message), None)
                .await;
            assert!(retried.is_empty());
        }

        let entries = w.files().await?.remove("orders.csv").unwrap_or_default();
        let got: BTreeSet<(Option<String>, FileStatus)> = entries
            .iter()
            .map(|e| (e.version.version_id.clone(), e.status))
            .collect();
        let want: BTreeSet<_> = [&older[0], &newer[0]]
            .into_iter()
            .map(|id| (Some(id.clone()), FileStatus::Imported))
            .collect();
        assert_eq!(got, want, "newer first: {newer_first}");
        let records = w.records()?;
        assert!(
            records["a-1"].row.contains("\"qty\":2"),
            "newer first: {newer_first}: {records:#?}"
        );
        // A row only the older version has stays: the newer version does not delete.
        assert!(records["a-2"].row.contains("\"qty\":1"));
    }
    Ok(())
}

#[tokio::test]
async fn equal_bytes_uploaded_twice_are_two_versions_and_each_read_pins_its_own() -> Result {
    let w = versioned_world(true).await?;
    let body = csv(&[("b-1", 5)]);
    w.put("same.csv", &body);
    w.put("same.csv", &body);
    // A third version, then the key deleted: the two equal ones are still read from their versions.
    w.put("same.csv", &csv(&[("b-1", 6)]));
    assert!(w.delete("same.csv"));
    let run = w.sync().await?;
    assert_eq!((run.listed, run.new), (3, 3), "{run:#?}");
    assert_eq!(w.drain().await?.acked, 3);
    let entries = w.files().await?.remove("same.csv").unwrap_or_default();
    let statuses: Vec<FileStatus> = entries.iter().map(|e| e.status).collect();
    assert_eq!(statuses, vec![FileStatus::Imported; 3], "{entries:#?}");
    let etags: BTreeSet<&str> = entries.iter().map(|e| e.version.etag.as_str()).collect();
    assert_eq!(etags.len(), 2);
    assert!(w.records()?["b-1"].row.contains("\"qty\":6"));
    // Listed again: nothing new.
    let run = w.sync().await?;
    assert_eq!(run.new, 0, "{run:#?}");
    Ok(())
}

#[tokio::test]
async fn without_versions_a_versioned_bucket_reads_as_before() -> Result {
    let w = versioned_world(false).await?;
    w.put("orders.csv", &csv(&[("a-1", 1)]));
    let run = w.sync().await?;
    assert_eq!(run.new, 1);
    // Overwritten before the worker reads it: the listed version is superseded, the new one imported.
    w.put("orders.csv", &csv(&[("a-1", 2)]));
    assert_eq!(w.drain().await?.acked, 1);
    let run = w.sync().await?;
    assert_eq!(run.new, 1);
    assert_eq!(w.drain().await?.acked, 1);
    let statuses: BTreeSet<(Option<String>, FileStatus)> = w
        .files()
        .await?
        .remove("orders.csv")
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.version.version_id, e.status))
        .collect();
    assert_eq!(
        statuses,
        [(None, FileStatus::Imported), (None, FileStatus::Superseded)].into()
    );
    Ok(())
}

/// A reconciliation of a versioned connector stopped by its budget saves the position of the last version
/// it handled (`<version id>\n<key>`), not the key alone: S3 may split a key's versions between pages, and a
/// position by key would skip the rest of them. The next runs continue from it and find every version once.
#[tokio::test]
async fn a_versioned_reconciliation_resumes_after_the_last_version_handled() -> Result {
    use chrono::Duration;
    use s3_importer_core::sync::lister;
    use s3_importer_core::sync::Discovery;

    let mut w = versioned_world(true).await?;
    let mut c = w.connector_now().await?;
    c.discovery = Discovery::Events;
    w.state.update_connector(&c).await?;
    w.lister_settings.reconcile.max_list_calls = 1;
    let old = w.clock.now() - Duration::hours(2);
    for i in 0..1200 {
        let name = format!("f-{i:05}.csv");
        w.put_at(&name, &csv(&[(&format!("a-{i}"), 1)]), old);
        w.put_at(&name, &csv(&[(&format!("b-{i}"), 1)]), old);
    }
    w.clock.advance(Duration::hours(1));
    let mut found = 0;
    let mut positions = Vec::new();
    for _ in 0..5 {
        let outcomes = lister::sync_all(&w.lister, &w.lister_settings).await?;
        for (_, outcome) in outcomes {
            if let lister::SyncOutcome::Ran(run) = outcome {
                found += run.reconciled.map_or(0, |r| r.found);
            }
        }
        if let Some(progress) = w
            .connector_now()
            .await?
            .reconcile
            .and_then(|r| r.in_progress)
        {
            positions.push(progress.after_key);
        }
        w.clock.advance(Duration::minutes(5));
    }
    assert_eq!(found, 2400, "every version found once");
    let first = positions.first().ok_or("the first run did not stop")?;
    let (version_id, key) = first
        .split_once('\n')
        .ok_or("a position without a version")?;
    assert_eq!(key, World::key("f-00499.csv"));
    // The key's older version: the last one listed on the page (newest first).
    let older = w
        .files()
        .await?
        .remove("f-00499.csv")
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| e.version.version_id)
        .min()
        .ok_or("no versions")?;
    assert_eq!(version_id, older);
    Ok(())
}

/// An object written before versioning was turned on is S3's `null` version: listed, read and imported by
/// that id, and a newer version of its key is a second file.
#[tokio::test]
async fn an_object_from_before_versioning_is_the_null_version() -> Result {
    let w = World::new().await?;
    w.put("early.csv", &csv(&[("e-1", 1)]));
    w.s3.enable_versioning(BUCKET);
    let mut c = w.connector_now().await?;
    c.source.versions = true;
    w.state.update_connector(&c).await?;
    w.put("early.csv", &csv(&[("e-1", 2)]));
    let run = w.sync().await?;
    assert_eq!(run.new, 2, "{run:#?}");
    assert_eq!(w.drain().await?.acked, 2);
    let ids: BTreeSet<(Option<String>, FileStatus)> = w
        .files()
        .await?
        .remove("early.csv")
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.version.version_id, e.status))
        .collect();
    let newest = version_ids(&w, "early.csv");
    assert_eq!(
        ids,
        [
            (Some("null".to_owned()), FileStatus::Imported),
            (newest.first().cloned(), FileStatus::Imported)
        ]
        .into()
    );
    Ok(())
}
