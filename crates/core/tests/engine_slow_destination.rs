//! A slow destination never makes a piece overrun its invocation's deadline: the worker stops before a batch
//! write that its measured pace says would end too late, and shrinks the batches of a destination whose
//! writes cost by the row. Each invocation here is timed against the deadline Lambda would enforce.

mod engine;

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use chrono::Duration;
use engine::{fail, Fault, FaultyDestination, Result, World};
use s3_importer_core::pace::Pace;
use s3_importer_core::sync::FileStatus;

/// Imports `rows` rows through `destination`, each invocation with `left` until its deadline and a checkpoint
/// margin of one second: fails if an invocation answers after its deadline or the file is not imported whole.
/// Returns how many invocations it took, and the pace the first piece carried in its checkpoint.
async fn import_timed(
    w: &World,
    destination: &FaultyDestination,
    rows: usize,
    left: StdDuration,
) -> Result<(usize, Option<Pace>)> {
    let numbered = engine::numbered("slow", rows);
    w.put("slow.csv", &engine::csv_owned(&numbered));
    assert_eq!(w.sync().await?.enqueued, 1);
    let mut worker = w.worker_with(Arc::new(destination.clone()));
    worker.settings.batch_rows = 2000;
    worker.settings.checkpoint_margin = Duration::seconds(1);
    let mut invocations = 0;
    let mut first_pace = None;
    loop {
        let messages = w.receive()?;
        if messages.is_empty() {
            break;
        }
        invocations += 1;
        if invocations > 40 {
            return Err(fail("more than 40 invocations: the file makes no progress"));
        }
        let started = Instant::now();
        let retried = w
            .deliver_and_settle(&worker, &messages, Some(Duration::from_std(left)?))
            .await;
        let took = started.elapsed();
        if took >= left {
            return Err(fail(format!(
                "invocation {invocations} answered after {took:?}, past its deadline {left:?} away: Lambda \
                 would have killed it (batches so far: {:?})",
                destination.batch_sizes()
            )));
        }
        assert!(retried.is_empty(), "retried {retried:?}");
        if invocations == 1 {
            first_pace = w.file("slow.csv").await?.checkpoint.and_then(|c| c.pace);
        }
    }
    let entry = w.file("slow.csv").await?;
    assert_eq!(
        (entry.status, entry.rows_imported),
        (FileStatus::Imported, rows as u64)
    );
    assert_eq!(w.records()?.len(), rows, "every row once");
    Ok((invocations, first_pace))
}

/// Each batch write takes 1.4 s, longer than the 1 s margin: without the measured pace a write started just
/// before the stop point ends 0.4 s after the deadline.
#[tokio::test]
async fn writes_slower_than_the_margin_finish_the_file_in_pieces_without_an_invocation_overrunning(
) -> Result {
    let w = World::new().await?;
    let slow = FaultyDestination::new(
        Arc::new(w.destination.clone()),
        Fault::Slow(StdDuration::from_millis(1400)),
    );
    let (invocations, _) = import_timed(&w, &slow, 8000, StdDuration::from_secs(4)).await?;
    assert!(invocations >= 2, "in pieces: {invocations} invocation(s)");
    // The cost is per batch: after one smaller batch shows it, the batches are back at their size for the
    // rest of the file (the last one takes what is left).
    let batches = slow.batch_sizes();
    let smaller = batches[..batches.len() - 1]
        .iter()
        .filter(|&&n| n < 2000)
        .count();
    assert!(smaller <= 1, "batches {batches:?}");
    Ok(())
}

/// Writes that cost by the row (0.6 ms a row: 1.2 s for 2,000) shrink the batches to what fits a quarter of
/// the margin, and the next pieces start with the smaller batches from the checkpoint.
#[tokio::test]
async fn writes_that_cost_by_the_row_shrink_the_batches_and_the_next_piece_keeps_them_small(
) -> Result {
    let w = World::new().await?;
    let slow = FaultyDestination::new(
        Arc::new(w.destination.clone()),
        Fault::SlowPerRow(StdDuration::from_micros(600)),
    );
    let (invocations, first_pace) =
        import_timed(&w, &slow, 6000, StdDuration::from_secs(3)).await?;
    assert!(invocations >= 2, "in pieces: {invocations} invocation(s)");
    let batches = slow.batch_sizes();
    assert_eq!(
        batches.first(),
        Some(&2000),
        "the first batch at the configured size: {batches:?}"
    );
    // 250 ms at 0.6 ms a row: about 416 rows. Batches made before the first write was measured keep their
    // size; the last batch of the file may be smaller.
    let small = batches.iter().filter(|&&n| n <= 450).count();
    assert!(small >= 3, "batches shrank: {batches:?}");
    let pace = first_pace.ok_or_else(|| fail("the first piece's checkpoint carries no pace"))?;
    assert!(
        (300..=450).contains(&pace.batch_rows) && pace.write_ms >= 1000,
        "the next piece starts with small batches and knows the slow write: {pace:?}"
    );
    Ok(())
}
