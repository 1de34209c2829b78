//! The reconciliation listing on the in-memory adapters (the fast engine tier): when it is due, what it finds
//! and how it counts it (`FilesFoundLate`, `FilesMissedByEvents`), what it leaves to the poll and the events,
//! and a pass over its budget that the next runs continue after the last key, listing each page once. The
//! scheduled entry point (`lister::sync_all`) runs as the lister Lambda runs it; the emulator suite
//! `tests/tests/reconcile_e2e.rs` keeps what needs S3 itself.

mod engine;

use std::collections::BTreeSet;

use chrono::Duration;
use engine::{csv, Result, World};
use s3_importer_core::sync::lister::{self, SyncOutcome};
use s3_importer_core::sync::ports::ConnectorStore;
use s3_importer_core::sync::{
    Clock, Discovery, FileStatus, Reconcile, ReconcileProgress, ReconcileRun, SyncRun,
};

/// A scheduled lister run (every active connector, reconciliations when due); the connector's run.
async fn scheduled(w: &World) -> Result<SyncRun> {
    let outcomes = lister::sync_all(&w.lister, &w.lister_settings).await?;
    match outcomes.into_iter().next() {
        Some((_, SyncOutcome::Ran(run))) => Ok(run),
        other => Err(engine::fail(format!("did not run: {other:?}"))),
    }
}

async fn to_events(w: &World) -> Result {
    let mut c = w.connector_now().await?;
    c.discovery = Discovery::Events;
    w.state.update_connector(&c).await?;
    Ok(())
}

#[tokio::test]
async fn a_polling_connectors_file_an_hour_behind_the_watermark_is_found_by_the_daily_reconciliation(
) -> Result {
    let w = World::new().await?;
    w.put("first.csv", &csv(&[("first-1", 1)]));
    let run = scheduled(&w).await?;
    assert_eq!(
        (run.enqueued, run.reconciled.clone()),
        (1, None),
        "not due on the first day"
    );
    assert_eq!(w.drain().await?.acked, 1);

    // The watermark an hour ahead of a file that becomes visible now: outside the overlap, so the
    // five-minute poll does not consider it (a multipart upload or a replication that took over an hour).
    w.state
        .advance_watermark(&w.connector.id, w.clock.now() + Duration::hours(1))
        .await?;
    w.put("late.csv", &csv(&[("late-1", 1)]));
    let run = scheduled(&w).await?;
    assert_eq!(
        (run.candidates, run.new, run.reconciled.clone()),
        (0, 0, None),
        "{run:#?}"
    );
    assert!(!w.files().await?.contains_key("late.csv"));

    // A day after the connector was created the reconciliation is due: it holds the whole lookback
    // against the ledger and finds the late file.
    w.clock.advance(Duration::hours(24));
    let run = scheduled(&w).await?;
    let started_at = run.started_at;
    let reconciled = run.reconciled.clone().ok_or("no reconciliation")?;
    assert_eq!(
        reconciled,
        ReconcileRun {
            listed: 2,
            list_calls: 1,
            ledger_reads: 2,
            found: 1,
            enqueued: 1,
            missed_by_events: 0,
            found_late: 1,
            complete: true,
        }
    );
    assert_eq!(run.error, None);
    assert_eq!(w.drain().await?.acked, 1);
    assert_eq!(w.file("late.csv").await?.status, FileStatus::Imported);
    assert_eq!(w.ids()?, ["first-1", "late-1"]);
    assert_eq!(
        w.connector_now().await?.reconcile,
        Some(Reconcile {
            completed_at: Some(started_at),
            in_progress: None,
        })
    );

    // Not due again for a day; then due, and it finds nothing new.
    w.clock.advance(Duration::hours(23));
    assert_eq!(scheduled(&w).await?.reconciled, None);
    w.clock.advance(Duration::hours(1));
    let again = scheduled(&w)
        .await?
        .reconciled
        .ok_or("not due after a day")?;
    assert_eq!(
        (again.found, again.found_late, again.complete),
        (0, 0, true)
    );
    assert_eq!(w.drain().await?.delivered, 0, "nothing imported twice");
    Ok(())
}

#[tokio::test]
async fn an_event_mode_connectors_missed_files_are_found_hourly_and_newer_ones_left_to_the_events(
) -> Result {
    let w = World::new().await?;
    to_events(&w).await?;
    // Two files whose events never came, and one the events are still delivering (within the overlap).
    w.put_at(
        "a.csv",
        &csv(&[("a-1", 1)]),
        w.clock.now() - Duration::hours(2),
    );
    w.put_at(
        "b.csv",
        &csv(&[("b-1", 1)]),
        w.clock.now() - Duration::minutes(30),
    );
    let lists = w.s3.list_calls();
    let run = scheduled(&w).await?;
    assert_eq!(
        (run.listed, run.reconciled.clone()),
        (0, None),
        "events mode: no listing before it is due"
    );
    assert_eq!(w.s3.list_calls(), lists);

    w.clock.advance(Duration::hours(1));
    w.put_at(
        "fresh.csv",
        &csv(&[("fresh-1", 1)]),
        w.clock.now() - Duration::minutes(5),
    );
    let run = scheduled(&w).await?;
    let reconciled = run.reconciled.ok_or("no reconciliation after an hour")?;
    assert_eq!(
        (
            reconciled.listed,
            reconciled.ledger_reads,
            reconciled.found,
            reconciled.missed_by_events,
            reconciled.found_late
        ),
        (3, 2, 2, 2, 0),
        "{reconciled:#?}"
    );
    assert_eq!(w.drain().await?.acked, 2);
    assert_eq!(w.ids()?, ["a-1", "b-1"]);
    assert!(
        !w.files().await?.contains_key("fresh.csv"),
        "a file within the overlap is the events' to claim"
    );

    // An hour later the fresh file is old enough: if its event was lost too, the next pass finds it.
    w.clock.advance(Duration::hours(1));
    let reconciled = scheduled(&w).await?.reconciled.ok_or("not due")?;
    assert_eq!((reconciled.found, reconciled.missed_by_events), (1, 1));
    assert_eq!(w.drain().await?.acked, 1);
    assert_eq!(w.ids()?, ["a-1", "b-1", "fresh-1"]);
    Ok(())
}

#[tokio::test]
async fn a_pass_over_its_budget_is_continued_after_its_last_key_and_lists_each_page_once() -> Result
{
    let mut w = World::new().await?;
    to_events(&w).await?;
    w.lister_settings.reconcile.max_list_calls = 2;
    let old = w.clock.now() - Duration::hours(2);
    let names: Vec<String> = (0..5500).map(|i| format!("f-{i:05}.csv")).collect();
    for (i, name) in names.iter().enumerate() {
        w.put_at(name, &csv(&[(&format!("r-{i}"), 1)]), old);
    }
    w.clock.advance(Duration::hours(1));
    let lists = w.s3.list_calls();

    let run = scheduled(&w).await?;
    let started_at = run.started_at;
    let first = run.reconciled.ok_or("not due")?;
    assert_eq!(
        (first.list_calls, first.found, first.complete),
        (2, 2000, false)
    );
    assert_eq!(
        w.connector_now().await?.reconcile,
        Some(Reconcile {
            completed_at: None,
            in_progress: Some(ReconcileProgress {
                started_at,
                after_key: World::key(&names[1999]),
            }),
        }),
        "the position is the last key of the last page handled"
    );

    // A file added behind the position meanwhile is not this pass's (the next one finds it); five minutes
    // later the next run continues the pass with its own start.
    w.put_at("a-behind.csv", &csv(&[("behind-1", 1)]), old);
    w.clock.advance(Duration::minutes(5));
    let second = scheduled(&w).await?.reconciled.ok_or("not continued")?;
    assert_eq!(
        (second.list_calls, second.found, second.complete),
        (2, 2000, false)
    );
    w.clock.advance(Duration::minutes(5));
    let third = scheduled(&w).await?.reconciled.ok_or("not continued")?;
    assert_eq!(
        (third.list_calls, third.found, third.complete),
        (2, 1500, true)
    );
    assert_eq!(
        w.s3.list_calls() - lists,
        6,
        "5,500 objects (and one behind the position) in six pages, none listed twice"
    );
    assert_eq!(
        w.connector_now().await?.reconcile,
        Some(Reconcile {
            completed_at: Some(started_at),
            in_progress: None,
        }),
        "complete: the next is due an hour after the pass started"
    );
    let drained = w.drain().await?;
    assert_eq!((drained.delivered, drained.acked), (5500, 5500));
    assert_eq!(w.ids()?.len(), 5500);

    // The next pass finds the file added behind the position, and nothing else.
    w.clock.advance(Duration::hours(1));
    let next = scheduled(&w).await?.reconciled.ok_or("not due")?;
    assert_eq!((next.found, next.list_calls), (1, 2));
    assert_eq!(w.drain().await?.acked, 1);
    assert!(w.ids()?.contains(&"behind-1".to_owned()));
    Ok(())
}

#[tokio::test]
async fn a_page_the_queue_refuses_is_sent_by_the_next_run_and_nothing_is_lost() -> Result {
    let w = World::new().await?;
    to_events(&w).await?;
    let old = w.clock.now() - Duration::hours(2);
    for i in 0..1500 {
        w.put_at(
            &format!("f-{i:05}.csv"),
            &csv(&[(&format!("r-{i}"), 1)]),
            old,
        );
    }
    w.clock.advance(Duration::hours(1));
    // The queue refuses the first page's send: its 1,000 entries stay `claimed`, the pass stops there.
    w.queue.fail_next_sends(1);
    let run = scheduled(&w).await?;
    let first = run.reconciled.clone().ok_or("not due")?;
    assert!(
        run.error
            .as_deref()
            .is_some_and(|e| e.contains("cannot send to the work queue")),
        "{run:#?}"
    );
    assert_eq!((first.list_calls, first.complete), (1, false));
    assert_eq!(
        w.connector_now()
            .await?
            .reconcile
            .and_then(|r| r.in_progress),
        None,
        "no page was finished: the pass starts again from the beginning"
    );
    // The next run resends the stale claims, then lists from the start again and finds the second page.
    w.clock
        .advance(w.lister_settings.sync.resend_claimed_after + Duration::minutes(1));
    let run = scheduled(&w).await?;
    assert_eq!(run.resent, 1000, "{run:#?}");
    let second = run.reconciled.ok_or("not continued")?;
    assert_eq!((second.found, second.complete), (500, true));
    let drained = w.drain().await?;
    assert_eq!(drained.acked, 1500);
    let ids: BTreeSet<String> = w.ids()?.into_iter().collect();
    assert_eq!(ids.len(), 1500);
    Ok(())
}

#[tokio::test]
async fn an_explicit_reconciliation_runs_whatever_the_schedule() -> Result {
    let w = World::new().await?;
    w.put("a.csv", &csv(&[("a-1", 1)]));
    let connector = w.connector_now().await?;
    let SyncOutcome::Ran(run) =
        lister::reconcile_connector(&w.lister, &w.lister_settings, &connector).await
    else {
        return Err(engine::fail("did not run"));
    };
    // The poll claims the new file first; the reconciliation (which leaves the overlap to the poll) has
    // nothing to add.
    assert_eq!(run.new, 1);
    let reconciled = run.reconciled.ok_or("no reconciliation")?;
    assert_eq!(
        (reconciled.listed, reconciled.found, reconciled.complete),
        (1, 0, true)
    );
    assert_eq!(
        w.connector_now()
            .await?
            .reconcile
            .and_then(|r| r.completed_at),
        Some(run.started_at)
    );
    Ok(())
}
