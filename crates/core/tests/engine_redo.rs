//! Replay and re-drive through the ledger (`sync::redo`): a replay re-imports exactly the chosen file
//! versions, once however many callers ask at the same time, and leaves the destination as one import did;
//! a file whose message reached the dead-letter queue ends `failed` with that reason, and a re-drive imports
//! it.

mod engine;

use std::sync::Arc;

use chrono::Duration;
use engine::{comparable, csv, Fault, FaultyDestination, Result, World};
use s3_importer_core::sync::ports::{FileLedger, ObjectSource};
use s3_importer_core::sync::redo::{
    self, dead_letter_reason, was_dead_lettered, ReplayFilter, ReplayFilterError,
};
use s3_importer_core::sync::rules::SyncSettings;
use s3_importer_core::sync::{Clock, FileStatus, LedgerEntry};

async fn ledger(w: &World) -> Result<Vec<LedgerEntry>> {
    Ok(w.state.list_files(&w.connector.id, None).await?)
}

/// Three files an hour apart, imported.
async fn three_imported(w: &World) -> Result {
    let start = w.clock.now() - Duration::hours(3);
    w.put_at("a.csv", &csv(&[("a-1", 1), ("a-2", 2)]), start);
    w.put_at("b.csv", &csv(&[("b-1", 1)]), start + Duration::hours(1));
    w.put_at("c.csv", &csv(&[("c-1", 1)]), start + Duration::hours(2));
    assert_eq!(w.sync().await?.enqueued, 3);
    w.drain().await?;
    for name in ["a.csv", "b.csv", "c.csv"] {
        assert_eq!(w.file(name).await?.status, FileStatus::Imported, "{name}");
    }
    Ok(())
}

#[tokio::test]
async fn replay_of_a_time_range_reimports_exactly_those_versions() -> Result {
    let w = World::new().await?;
    three_imported(&w).await?;
    let before = comparable(&w.records()?);
    let b_modified = w.file("b.csv").await?.last_modified;
    let filter = ReplayFilter {
        since: Some(b_modified),
        until: Some(b_modified + Duration::minutes(30)),
        ..ReplayFilter::default()
    };
    let plan = filter.plan(ledger(&w).await?);
    let keys: Vec<&str> = plan.replay.iter().map(|e| e.version.key.as_str()).collect();
    assert_eq!(keys, [World::key("b.csv")]);
    assert_eq!(plan.rows_at_stake, 1);

    let done = redo::requeue(&*w.state, &*w.queue, plan.replay, true, w.clock.now()).await?;
    assert_eq!(done.sent.len(), 1);
    let b = w.file("b.csv").await?;
    assert_eq!((b.status, b.replays), (FileStatus::Queued, 1));
    let drained = w.drain().await?;
    assert_eq!((drained.delivered, drained.acked), (1, 1));
    let b = w.file("b.csv").await?;
    assert_eq!(
        (b.status, b.attempts, b.rows_imported),
        (FileStatus::Imported, 2, 1)
    );
    for name in ["a.csv", "c.csv"] {
        assert_eq!(w.file(name).await?.attempts, 1, "{name} untouched");
    }
    assert_eq!(
        comparable(&w.records()?),
        before,
        "rows as after one import"
    );
    Ok(())
}

#[tokio::test]
async fn replay_of_a_key_list_twice_leaves_the_destination_as_after_one() -> Result {
    let w = World::new().await?;
    three_imported(&w).await?;
    let before = comparable(&w.records()?);
    let filter = ReplayFilter {
        keys: vec![World::key("a.csv"), World::key("c.csv")],
        ..ReplayFilter::default()
    };
    for round in 1..=2 {
        let plan = filter.plan(ledger(&w).await?);
        assert_eq!(plan.replay.len(), 2, "round {round}");
        assert_eq!(plan.rows_at_stake, 3);
        redo::requeue(&*w.state, &*w.queue, plan.replay, true, w.clock.now()).await?;
        assert_eq!(w.drain().await?.acked, 2);
        assert_eq!(comparable(&w.records()?), before, "round {round}");
        let a = w.file("a.csv").await?;
        assert_eq!((a.status, a.replays), (FileStatus::Imported, round));
    }
    assert_eq!(w.file("b.csv").await?.replays, 0);
    Ok(())
}

#[tokio::test]
async fn two_replays_at_once_send_each_version_once() -> Result {
    let w = World::new().await?;
    three_imported(&w).await?;
    let filter = ReplayFilter::default();
    // Both callers plan from the same ledger, then race.
    let first = filter.plan(ledger(&w).await?);
    let second = filter.plan(ledger(&w).await?);
    let now = w.clock.now();
    let (a, b) = tokio::join!(
        redo::requeue(&*w.state, &*w.queue, first.replay, true, now),
        redo::requeue(&*w.state, &*w.queue, second.replay, true, now),
    );
    let (a, b) = (a?, b?);
    assert_eq!(a.sent.len() + b.sent.len(), 3);
    assert_eq!(a.moved_first.len() + b.moved_first.len(), 3);
    assert_eq!(w.receive()?.len(), 3, "one message per file version");
    // A replay planned now sees them on their way and leaves them alone.
    let third = filter.plan(ledger(&w).await?);
    assert!(third.replay.is_empty());
    assert_eq!(third.in_flight.len(), 3);
    Ok(())
}

#[test]
fn replay_filters_take_final_statuses_and_a_real_range() {
    let now = chrono::Utc::now();
    let bad = ReplayFilter {
        statuses: vec![FileStatus::Queued],
        ..ReplayFilter::default()
    };
    assert_eq!(
        bad.check(),
        Err(ReplayFilterError::NotFinal(FileStatus::Queued))
    );
    let empty = ReplayFilter {
        since: Some(now),
        until: Some(now),
        ..ReplayFilter::default()
    };
    assert!(matches!(
        empty.check(),
        Err(ReplayFilterError::EmptyRange { .. })
    ));
    assert_eq!(ReplayFilter::default().check(), Ok(()));
}

#[tokio::test]
async fn replay_by_status_prefix_and_unknown_keys() -> Result {
    let w = World::new().await?;
    three_imported(&w).await?;
    let filter = ReplayFilter {
        prefix: Some(World::key("b")),
        statuses: vec![FileStatus::Failed],
        ..ReplayFilter::default()
    };
    assert!(
        filter.plan(ledger(&w).await?).replay.is_empty(),
        "b is not failed"
    );
    let filter = ReplayFilter {
        keys: vec![World::key("a.csv"), World::key("nope.csv")],
        ..ReplayFilter::default()
    };
    let entries = ledger(&w).await?;
    assert_eq!(filter.unknown_keys(&entries), [World::key("nope.csv")]);
    Ok(())
}

#[tokio::test]
async fn dead_lettered_file_ends_failed_with_the_reason_and_a_redrive_imports_it() -> Result {
    let mut w = World::new().await?;
    w.max_receive_count = 2;
    w.put("a.csv", &csv(&[("a-1", 1)]));
    assert_eq!(w.sync().await?.enqueued, 1);
    let broken = w.worker_with(Arc::new(FaultyDestination::new(
        Arc::new(w.destination.clone()),
        Fault::TransientAfter(0),
    )));
    for _ in 0..2 {
        let messages = w.receive()?;
        assert_eq!(
            w.deliver_and_settle(&broken, &messages, None).await.len(),
            1
        );
        w.expire_visibility(&messages);
    }
    assert!(w.receive()?.is_empty());
    assert_eq!(w.dead_letter_depth(), 1);
    assert_eq!(w.file("a.csv").await?.status, FileStatus::Queued);

    let sweep =
        redo::sweep_dead_letters(&w.dead_letters(), &*w.state, 2, 100, w.clock.now()).await?;
    assert_eq!(
        sweep.failed,
        [(w.connector.id.clone(), World::key("a.csv"))]
    );
    assert_eq!((sweep.stale, sweep.kept, sweep.unreadable), (0, 0, 0));
    assert_eq!(
        w.dead_letter_depth(),
        0,
        "the message is deleted once recorded"
    );
    let a = w.file("a.csv").await?;
    assert_eq!(a.status, FileStatus::Failed);
    assert_eq!(a.error.as_deref(), Some(dead_letter_reason(2).as_str()));
    assert_eq!(
        a.error.as_deref(),
        Some("moved to the dead-letter queue after 2 receives")
    );
    assert!(was_dead_lettered(&a));
    let again =
        redo::sweep_dead_letters(&w.dead_letters(), &*w.state, 2, 100, w.clock.now()).await?;
    assert!(again.failed.is_empty());
    assert_eq!(
        w.sync().await?.enqueued,
        0,
        "the lister does not send a failed file"
    );

    // The re-drive: the dead-lettered files go back to the queue, and the (now healthy) worker imports them.
    let entries = ledger(&w).await?;
    let dead: Vec<LedgerEntry> = entries.into_iter().filter(was_dead_lettered).collect();
    let done = redo::requeue(&*w.state, &*w.queue, dead, false, w.clock.now()).await?;
    assert_eq!(done.sent.len(), 1);
    w.drain().await?;
    let a = w.file("a.csv").await?;
    assert_eq!(
        (a.status, a.error, a.replays),
        (FileStatus::Imported, None, 0)
    );
    assert_eq!(w.ids()?, ["a-1"]);
    Ok(())
}

#[tokio::test]
async fn a_dead_letter_of_a_file_a_worker_holds_is_kept_and_one_of_a_finished_file_dropped(
) -> Result {
    let mut w = World::new().await?;
    w.max_receive_count = 1;
    w.put("a.csv", &csv(&[("a-1", 1)]));
    assert_eq!(w.sync().await?.enqueued, 1);
    // One receive, handed back without an answer (a worker killed before it started the file).
    let messages = w.receive()?;
    w.expire_visibility(&messages);
    assert!(w.receive()?.is_empty());
    assert_eq!(w.dead_letter_depth(), 1);
    // A worker holds the file on a live lease (a duplicate message it is still working on).
    let a = w.file("a.csv").await?;
    let now = w.clock.now();
    w.state
        .start_file(
            &w.connector.id,
            &a.version.file_id(),
            "w",
            now,
            now + Duration::minutes(5),
        )
        .await?;
    let sweep = redo::sweep_dead_letters(&w.dead_letters(), &*w.state, 1, 100, now).await?;
    assert_eq!((sweep.failed.len(), sweep.kept), (0, 1));
    assert_eq!(w.dead_letter_depth(), 1, "kept for a later sweep");
    // That worker finishes it: the dead letter is stale and goes.
    let mut done = w.file("a.csv").await?;
    done.status = FileStatus::Imported;
    w.state.finish_file(&done, "w").await?;
    w.expire_dead_letters();
    let sweep = redo::sweep_dead_letters(&w.dead_letters(), &*w.state, 1, 100, now).await?;
    assert_eq!((sweep.failed.len(), sweep.kept, sweep.stale), (0, 0, 1));
    assert_eq!(w.dead_letter_depth(), 0);
    assert_eq!(w.file("a.csv").await?.status, FileStatus::Imported);
    Ok(())
}

#[tokio::test]
async fn a_skipped_file_is_retried_once_the_limit_is_raised_and_only_then() -> Result {
    let mut w = World::new().await?;
    w.lister_settings.sync.max_file_size = 10;
    w.put("big.csv", &csv(&[("big-1", 1), ("big-2", 2)]));
    let run = w.sync().await?;
    assert_eq!(run.skipped.get("too_large"), Some(&1), "{run:#?}");
    let skipped = w.file("big.csv").await?;
    assert_eq!(skipped.status, FileStatus::Skipped);
    let current =
        w.s3.head(&w.connector.source, &skipped.version.key, None)
            .await?;

    // The same limit: still skipped, with the reason naming it.
    let same = redo::redecide_skipped(&skipped, current.as_ref(), &w.lister_settings.sync, None);
    assert!(
        matches!(&same, redo::SkippedRetry::StillSkipped(r) if r.code() == "too_large"),
        "{same:?}"
    );
    // A raised limit: imported, once, however many times the retry is asked for.
    let raised = SyncSettings::default();
    assert_eq!(
        redo::redecide_skipped(&skipped, current.as_ref(), &raised, None),
        redo::SkippedRetry::Import
    );
    let done = redo::requeue(
        &*w.state,
        &*w.queue,
        vec![skipped.clone()],
        false,
        w.clock.now(),
    )
    .await?;
    assert_eq!(done.sent.len(), 1);
    let again = redo::requeue(
        &*w.state,
        &*w.queue,
        vec![skipped.clone()],
        false,
        w.clock.now(),
    )
    .await?;
    assert_eq!((again.sent.len(), again.moved_first.len()), (0, 1));
    let drained = w.drain().await?;
    assert_eq!((drained.delivered, drained.acked), (1, 1));
    let big = w.file("big.csv").await?;
    assert_eq!(
        (big.status, big.rows_imported, big.skip_reason),
        (FileStatus::Imported, 2, None)
    );
    assert_eq!(w.ids()?, ["big-1", "big-2"]);

    // A key overwritten or deleted since it was skipped is not retried: its new version is the sync's.
    let other = w.put("big.csv", &csv(&[("big-3", 3)]));
    let current =
        w.s3.head(&w.connector.source, &skipped.version.key, None)
            .await?;
    assert_eq!(current.as_ref().map(|o| o.etag.clone()), Some(other));
    assert_eq!(
        redo::redecide_skipped(&skipped, current.as_ref(), &raised, None),
        redo::SkippedRetry::Changed
    );
    assert_eq!(
        redo::redecide_skipped(&skipped, None, &raised, None),
        redo::SkippedRetry::Gone
    );
    Ok(())
}
