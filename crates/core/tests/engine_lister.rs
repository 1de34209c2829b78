//! The lister on the in-memory adapters (the fast engine tier): discovery windows, the watermark and its
//! overlap, claims and the sync lease, skip rules, stale claims, refused sends and broken connectors.
//! `lister::sync_connector` and `lister::sync_all` run as the lister Lambda runs them; the emulator suites
//! keep what needs S3, SQS and DynamoDB themselves (`tests/tests/sync_e2e.rs`).

mod engine;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use engine::{csv, csv_owned, numbered, Result, World, BUCKET};
use s3_importer_core::sync::contract::fixtures::check_missing_bucket;
use s3_importer_core::sync::lister::{self, ListerDeps, SyncOutcome};
use s3_importer_core::sync::memory::MemoryObject;
use s3_importer_core::sync::ports::{
    ClaimOutcome, ConnectorStore, FileLedger, LeaseStore, StateError,
};
use s3_importer_core::sync::{
    sync_lease_name, Clock, FileMessage, FileStatus, FileVersion, LedgerEntry, ObjectMeta,
    SkipReason, SyncRun,
};

fn statuses(files: &BTreeMap<String, Vec<LedgerEntry>>) -> BTreeMap<String, Vec<FileStatus>> {
    files
        .iter()
        .map(|(name, entries)| (name.clone(), entries.iter().map(|e| e.status).collect()))
        .collect()
}

fn ran(outcome: SyncOutcome) -> Result<SyncRun> {
    match outcome {
        SyncOutcome::Ran(run) => Ok(run),
        other => Err(engine::fail(format!("did not run: {other:?}"))),
    }
}

#[tokio::test]
async fn first_sync_imports_only_files_within_the_lookback() -> Result {
    let w = World::new().await?;
    let now = w.clock.now();
    w.put_at("old.csv", &csv(&[("old-1", 1)]), now - Duration::days(100));
    let new = now - Duration::days(1);
    w.put_at("new.csv", &csv(&[("new-1", 1)]), new);
    // Outside the connector's folder: never listed.
    w.s3.put(BUCKET, "elsewhere/other.csv", csv(&[("other-1", 1)]), new);

    let run = w.sync().await?;

    assert_eq!(
        (run.listed, run.candidates, run.new, run.enqueued),
        (2, 1, 1, 1),
        "{run:#?}"
    );
    assert_eq!(
        run.watermark_after,
        Some(new),
        "the watermark is the newest LastModified"
    );
    assert_eq!(
        statuses(&w.files().await?),
        BTreeMap::from([("new.csv".to_owned(), vec![FileStatus::Queued])]),
        "a file outside the lookback leaves no ledger entry"
    );
    let drained = w.drain().await?;
    assert_eq!((drained.delivered, drained.acked), (1, 1));
    assert_eq!(w.ids()?, ["new-1"]);
    Ok(())
}

#[tokio::test]
async fn next_sync_imports_only_new_versions_and_an_unchanged_bucket_enqueues_nothing() -> Result {
    let w = World::new().await?;
    w.put("a.csv", &csv(&[("a-1", 1), ("a-2", 2)]));
    let first = w.sync().await?;
    assert_eq!((first.new, first.enqueued), (1, 1));
    assert_eq!(w.drain().await?.acked, 1);

    w.put("b.csv", &csv(&[("b-1", 1)]));
    let second = w.sync().await?;
    assert_eq!(
        (
            second.listed,
            second.new,
            second.enqueued,
            second.already_known
        ),
        (2, 1, 1, 1),
        "only b.csv is new: {second:#?}"
    );
    assert_eq!(w.drain().await?.acked, 1);

    let third = w.sync().await?;
    assert_eq!(
        (third.listed, third.new, third.enqueued, third.already_known),
        (2, 0, 0, 2),
        "nothing changed: {third:#?}"
    );
    assert_eq!(
        w.queue_depth()?,
        (0, 0),
        "an unchanged bucket enqueues nothing"
    );
    assert_eq!(w.drain().await?.delivered, 0);
    assert_eq!(w.ids()?, ["a-1", "a-2", "b-1"]);
    let files = w.files().await?;
    assert!(
        files
            .values()
            .flatten()
            .all(|e| e.status == FileStatus::Imported && e.attempts == 1),
        "{files:#?}"
    );
    Ok(())
}

#[tokio::test]
async fn late_visible_file_inside_the_overlap_is_imported_and_one_behind_it_by_the_reconciliation(
) -> Result {
    // A multipart upload's LastModified is its *start*: it becomes visible after files that started later,
    // whose LastModified already moved the watermark past it.
    let w = World::new().await?;
    w.put("first.csv", &csv(&[("first-1", 1)]));
    assert_eq!(w.sync().await?.enqueued, 1);
    assert_eq!(w.drain().await?.acked, 1);

    // Watermark 5 minutes ahead of the late file: inside the 15-minute overlap, so still a candidate.
    w.state
        .advance_watermark(&w.connector.id, w.clock.now() + Duration::minutes(5))
        .await?;
    w.put("late.csv", &csv(&[("late-1", 1)]));
    let run = w.sync().await?;
    assert_eq!(
        (run.candidates, run.new, run.enqueued, run.already_known),
        (2, 1, 1, 1),
        "{run:#?}"
    );
    assert_eq!(w.drain().await?.acked, 1);
    assert_eq!(w.file("late.csv").await?.status, FileStatus::Imported);

    // Watermark an hour ahead: a file 1 hour older than the watermark is outside the overlap, so the poll
    // does not consider it; the reconciliation listing, which holds the whole lookback against the ledger,
    // finds it and counts it as found late (its schedule: `engine_reconcile.rs`).
    w.state
        .advance_watermark(&w.connector.id, w.clock.now() + Duration::hours(1))
        .await?;
    w.put("too-late.csv", &csv(&[("too-late-1", 1)]));
    let run = w.sync().await?;
    assert_eq!(
        (run.listed, run.candidates, run.new, run.enqueued),
        (3, 0, 0, 0),
        "{run:#?}"
    );
    assert!(!w.files().await?.contains_key("too-late.csv"));
    w.clock.advance(w.lister_settings.sync.overlap);
    let connector = w.connector_now().await?;
    let run = ran(lister::reconcile_connector(&w.lister, &w.lister_settings, &connector).await)?;
    let reconciled = run.reconciled.ok_or("no reconciliation")?;
    assert_eq!(
        (reconciled.found, reconciled.found_late, run.enqueued),
        (1, 1, 1),
        "{reconciled:#?}"
    );
    assert_eq!(w.drain().await?.acked, 1);
    assert_eq!(w.ids()?, ["first-1", "late-1", "too-late-1"]);
    Ok(())
}

#[tokio::test]
async fn overwritten_key_is_imported_again_unchanged_key_is_not() -> Result {
    let w = World::new().await?;
    let a_v1 = w.put("a.csv", &csv(&[("a-1", 1)]));
    let b_v1 = w.put("b.csv", &csv(&[("b-1", 1)]));
    assert_eq!(w.sync().await?.enqueued, 2);
    assert_eq!(w.drain().await?.acked, 2);

    // a.csv gets new content (a new ETag); b.csv is rewritten with the same bytes (same ETag).
    let a_v2 = w.put("a.csv", &csv(&[("a-1", 10), ("a-2", 20)]));
    let b_again = w.put("b.csv", &csv(&[("b-1", 1)]));
    assert_ne!(a_v1, a_v2);
    assert_eq!(b_v1, b_again, "identical bytes keep the ETag");

    let run = w.sync().await?;
    assert_eq!(
        (run.new, run.enqueued, run.already_known),
        (1, 1, 1),
        "{run:#?}"
    );
    assert_eq!(w.drain().await?.acked, 1);

    assert_eq!(
        w.versions("a.csv").await?,
        BTreeSet::from([
            (a_v1.clone(), FileStatus::Imported),
            (a_v2.clone(), FileStatus::Imported)
        ])
    );
    assert_eq!(w.files().await?["b.csv"].len(), 1);

    let records = w.records()?;
    assert_eq!(w.ids()?, ["a-1", "a-2", "b-1"]);
    let a1 = &records["a-1"];
    assert_eq!(
        (a1.row.as_str(), a1.etag.as_str()),
        (r#"{"id":"a-1","qty":10}"#, a_v2.as_str()),
        "the new version's row replaced the old one"
    );
    assert_eq!(records["b-1"].etag, b_v1);
    Ok(())
}

/// Writes `n` files `f00.csv`, `f01.csv`, ... of one row each.
fn put_files(w: &World, n: usize) {
    for i in 0..n {
        w.put(&format!("f{i:02}.csv"), &csv(&[(&format!("row-{i}"), 1)]));
    }
}

/// Two lister passes over the connector at once through `deps`, as two overlapping schedule firings
/// (owners `lister-one` and `lister-two`); their outcomes.
async fn two_concurrent_passes(w: &Arc<World>, deps: &ListerDeps) -> Result<[SyncOutcome; 2]> {
    let connector = w.connector_now().await?;
    let pass = |owner: &'static str| {
        let (w, deps, connector) = (w.clone(), deps.clone(), connector.clone());
        tokio::spawn(async move {
            let mut settings = w.lister_settings.clone();
            settings.owner = owner.into();
            lister::sync_connector(&deps, &settings, &connector).await
        })
    };
    let (one, two) = (pass("lister-one"), pass("lister-two"));
    Ok([one.await?, two.await?])
}

/// Two overlapping schedule firings (two lease owners): whichever takes the connector's sync lease second
/// either finds it held (busy) or, if the first already finished, finds every version claimed. The emulator
/// suite keeps the same race through the lister handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_listers_enqueue_each_version_once() -> Result {
    let w = Arc::new(World::new().await?);
    put_files(&w, 12);
    let outcomes = two_concurrent_passes(&w, &w.lister).await?;
    let enqueued: u64 = outcomes
        .iter()
        .map(|o| match o {
            SyncOutcome::Ran(run) => run.enqueued,
            _ => 0,
        })
        .sum();
    assert_eq!(enqueued, 12, "{outcomes:#?}");
    assert!(
        outcomes.iter().all(
            |o| matches!(o, SyncOutcome::Ran(run) if run.error.is_none())
                || *o == SyncOutcome::Busy
        ),
        "{outcomes:#?}"
    );
    let messages = w.receive()?;
    let versions: BTreeSet<String> = messages
        .iter()
        .map(|m| m.message.version.file_id())
        .collect();
    assert_eq!(messages.len(), 12, "one message per file version");
    assert_eq!(versions.len(), 12);
    Ok(())
}

#[tokio::test]
async fn a_connector_whose_sync_lease_is_held_is_skipped_until_the_lease_expires() -> Result {
    let w = World::new().await?;
    w.put("a.csv", &csv(&[("a-1", 1)]));
    let lease = sync_lease_name(&w.connector.id);
    let taken = w
        .state
        .acquire_lease(
            &lease,
            "a-lister-still-running",
            w.clock.now(),
            Duration::minutes(10),
        )
        .await?;
    assert!(taken);
    let connector = w.connector_now().await?;
    let outcome = lister::sync_connector(&w.lister, &w.lister_settings, &connector).await;
    assert_eq!(outcome, SyncOutcome::Busy);
    assert!(w.files().await?.is_empty(), "a busy pass claims nothing");
    assert_eq!(w.queue_depth()?, (0, 0));

    // The other lister died: its lease runs out and the next pass runs.
    w.clock.advance(Duration::minutes(11));
    let run = w.sync().await?;
    assert_eq!((run.new, run.enqueued), (1, 1), "{run:#?}");
    Ok(())
}

/// Grants every sync lease, so two listers really run over one connector at the same time and only the
/// ledger's conditional claims keep them from sending a version twice.
struct NoSyncLease;

#[async_trait]
impl LeaseStore for NoSyncLease {
    async fn acquire_lease(
        &self,
        _name: &str,
        _owner: &str,
        _now: DateTime<Utc>,
        _ttl: Duration,
    ) -> std::result::Result<bool, StateError> {
        Ok(true)
    }
    async fn release_lease(
        &self,
        _name: &str,
        _owner: &str,
    ) -> std::result::Result<(), StateError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_sync_lease_concurrent_listers_still_claim_each_version_once() -> Result {
    let w = Arc::new(World::new().await?);
    put_files(&w, 25);
    let deps = ListerDeps {
        leases: Arc::new(NoSyncLease),
        ..w.lister.clone()
    };
    let [one, two] = two_concurrent_passes(&w, &deps).await?;
    let (a, b) = (ran(one)?, ran(two)?);
    assert_eq!(a.enqueued + b.enqueued, 25, "a={a:#?} b={b:#?}");
    assert_eq!(a.new + b.new, 25);
    assert_eq!(w.receive()?.len(), 25);
    Ok(())
}

/// More than one listing page (1000) and many sends. The emulator suite keeps the same count on S3's paging,
/// BatchGetItem's 100 and SendMessageBatch's 10.
#[tokio::test]
async fn sync_lists_every_page_and_enqueues_each_of_1005_files_once() -> Result {
    let w = World::new().await?;
    let body = csv(&[("x", 1)]);
    for i in 0..1005 {
        w.put(&format!("f{i:04}.csv"), &body);
    }
    let run = w.sync().await?;
    assert_eq!(
        (run.listed, run.candidates, run.new, run.enqueued),
        (1005, 1005, 1005, 1005),
        "{run:#?}"
    );
    assert_eq!(w.queue_depth()?, (1005, 0));
    let again = w.sync().await?;
    assert_eq!(
        (again.listed, again.already_known, again.enqueued),
        (1005, 1005, 0),
        "{again:#?}"
    );
    assert_eq!(w.queue_depth()?, (1005, 0));
    Ok(())
}

/// A permanent source failure (the bucket is gone) marks the connector broken with the reason; `sync_all` then
/// passes it by. The emulator suite keeps the same on S3's own NoSuchBucket answer and the handler's outcome.
#[tokio::test]
async fn sync_of_a_missing_bucket_records_the_error_and_marks_the_connector_broken() -> Result {
    let w = World::new().await?;
    let mut connector = w.connector_now().await?;
    connector.source.bucket = "no-such-bucket".into();
    w.state.update_connector(&connector).await?;

    let run = w.sync().await?;
    check_missing_bucket(&run, &w.connector_now().await?.status, "no-such-bucket")?;
    let all = lister::sync_all(&w.lister, &w.lister_settings).await?;
    assert!(all.is_empty(), "a broken connector is not synced: {all:?}");
    let outcome =
        lister::sync_connector(&w.lister, &w.lister_settings, &w.connector_now().await?).await;
    assert_eq!(outcome, SyncOutcome::NotActive);
    let entries = w.state.list_files(&w.connector.id, None).await?;
    assert!(entries.is_empty(), "nothing was claimed: {entries:#?}");
    Ok(())
}

#[tokio::test]
async fn oversize_archived_and_unsupported_files_are_skipped_with_the_reason() -> Result {
    let mut w = World::new().await?;
    w.lister_settings.sync.max_file_size = 100;
    let big = csv_owned(&numbered("big", 20));
    assert!(big.len() > 100);
    w.put("big.csv", &big);
    let mut cold = MemoryObject::new(csv(&[("cold-1", 1)]), w.clock.now());
    cold.storage_class = Some("GLACIER".into());
    w.put_object(&World::key("cold.csv"), cold);
    w.put("notes.txt", b"not data");
    w.put("ok.csv", &csv(&[("ok-1", 1)]));
    w.put("sub/", b""); // a folder marker: ignored, never recorded

    let run = w.sync().await?;
    assert_eq!(
        (run.listed, run.candidates, run.new, run.enqueued),
        (5, 4, 4, 1),
        "{run:#?}"
    );
    assert_eq!(
        run.skipped,
        BTreeMap::from([
            ("archived".to_owned(), 1),
            ("too_large".to_owned(), 1),
            ("unsupported_format".to_owned(), 1),
        ])
    );
    let reasons: BTreeMap<String, (FileStatus, Option<SkipReason>)> = w
        .files()
        .await?
        .into_iter()
        .flat_map(|(name, entries)| {
            entries
                .into_iter()
                .map(move |e| (name.clone(), (e.status, e.skip_reason)))
        })
        .collect();
    assert_eq!(
        reasons,
        BTreeMap::from([
            (
                "big.csv".to_owned(),
                (
                    FileStatus::Skipped,
                    Some(SkipReason::TooLarge {
                        size: big.len() as u64,
                        limit: 100
                    })
                )
            ),
            (
                "cold.csv".to_owned(),
                (
                    FileStatus::Skipped,
                    Some(SkipReason::Archived {
                        storage_class: "GLACIER".into()
                    })
                )
            ),
            (
                "notes.txt".to_owned(),
                (FileStatus::Skipped, Some(SkipReason::UnsupportedFormat))
            ),
            ("ok.csv".to_owned(), (FileStatus::Queued, None)),
        ])
    );
    let drained = w.drain().await?;
    assert_eq!((drained.delivered, drained.acked), (1, 1));
    assert_eq!(w.ids()?, ["ok-1"]);
    // Skipped stays skipped: the next sync does not reconsider them.
    assert_eq!(w.sync().await?.enqueued, 0);
    Ok(())
}

#[tokio::test]
async fn file_claimed_by_a_lister_that_died_before_sending_is_sent_by_a_later_sync() -> Result {
    let w = World::new().await?;
    let body = csv(&[("a-1", 1)]);
    let etag = w.put("a.csv", &body);
    let key = World::key("a.csv");
    let object = ObjectMeta {
        key: key.clone(),
        etag: etag.clone(),
        size: body.len() as u64,
        last_modified: w.last_modified("a.csv")?,
        storage_class: None,
        restored: false,
        version_id: None,
    };
    let version = FileVersion {
        connector_id: w.connector.id.clone(),
        bucket: BUCKET.into(),
        key,
        etag,
        version_id: None,
    };
    // The dead lister's claim: the entry exists, no message was sent.
    let claimed = LedgerEntry::discovered(version, &object, w.clock.now());
    assert_eq!(w.state.claim_file(&claimed).await?, ClaimOutcome::Claimed);

    let run = w.sync().await?;
    assert_eq!(
        (run.already_known, run.resent, run.enqueued),
        (1, 0, 0),
        "a fresh claim may belong to a lister still running: {run:#?}"
    );
    w.clock.advance(Duration::minutes(6));
    let run = w.sync().await?;
    assert_eq!((run.resent, run.enqueued), (1, 1), "{run:#?}");
    assert_eq!(w.drain().await?.acked, 1);
    assert_eq!(w.file("a.csv").await?.status, FileStatus::Imported);
    assert_eq!(w.sync().await?.enqueued, 0, "sent once");
    assert_eq!(w.ids()?, ["a-1"]);
    Ok(())
}

/// A message the queue refuses leaves its entry `claimed` and the watermark where it was (the pass is not
/// complete); a later pass, once the claim is older than `resend_claimed_after`, sends it.
#[tokio::test]
async fn a_send_refused_by_the_queue_keeps_the_watermark_and_is_resent_later() -> Result {
    let w = World::new().await?;
    w.put("a.csv", &csv(&[("a-1", 1)]));
    w.put("b.csv", &csv(&[("b-1", 1)]));
    w.queue.reject_next(1);
    let run = w.sync().await?;
    assert_eq!((run.new, run.enqueued), (2, 1), "{run:#?}");
    assert!(
        run.error.is_some(),
        "the pass says it is incomplete: {run:#?}"
    );
    assert_eq!(run.watermark_after, None, "{run:#?}");
    assert_eq!(w.connector_now().await?.watermark, None);
    let statuses: BTreeSet<FileStatus> = w
        .files()
        .await?
        .values()
        .flatten()
        .map(|e| e.status)
        .collect();
    assert_eq!(
        statuses,
        BTreeSet::from([FileStatus::Claimed, FileStatus::Queued])
    );

    w.clock.advance(Duration::minutes(6));
    let run = w.sync().await?;
    assert_eq!(
        (run.resent, run.enqueued, run.error.clone()),
        (1, 1, None),
        "{run:#?}"
    );
    assert!(run.watermark_after.is_some(), "{run:#?}");
    let drained = w.drain().await?;
    assert_eq!((drained.delivered, drained.acked), (2, 2));
    assert_eq!(w.ids()?, ["a-1", "b-1"]);
    Ok(())
}

/// The message the lister sends names the version it claimed, from piece 0.
#[tokio::test]
async fn the_message_names_the_claimed_version_and_piece_zero() -> Result {
    let w = World::new().await?;
    let etag = w.put("a.csv", &csv(&[("a-1", 1)]));
    w.sync().await?;
    let messages = w.receive()?;
    let got: Vec<(u32, u32, String, String, String)> = messages
        .iter()
        .map(|m| {
            let FileMessage {
                v, version, piece, ..
            } = &m.message;
            (
                *v,
                *piece,
                version.bucket.clone(),
                version.key.clone(),
                version.etag.clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [(
            FileMessage::VERSION,
            0,
            BUCKET.to_owned(),
            World::key("a.csv"),
            etag
        )]
    );
    Ok(())
}
