//! `on_error` on a destination whose writes are visible at once (the memory destination behaves as DynamoDB
//! upserts): `validate_first` writes nothing of a file over its threshold and every row of a passing one
//! once; the ratio fails a file as rows are read, counting the rows of the earlier pieces.

mod engine;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use chrono::Duration;
use engine::{fail, fixtures, Fault, FaultyDestination, Result, World, TEMPLATE};
use s3_importer_core::sync::FileStatus;

/// The default template with an `[on_error]` table.
fn items_with(on_error: &str) -> String {
    format!("{TEMPLATE}\n[on_error]\n{on_error}")
}

/// `n` rows `v-00001` ..., those for which `bad(i)` holds (1-based) with a negative `qty` (rejected).
fn file(n: usize, bad: impl Fn(usize) -> bool) -> Vec<u8> {
    let rows: Vec<(String, i64)> = (1..=n)
        .map(|i| (format!("v-{i:05}"), if bad(i) { -1 } else { i as i64 }))
        .collect();
    engine::csv_owned(&rows)
}

/// 20 rows, the last 6 rejected, and at most 2 rejected rows allowed: the file fails at its 17th row.
async fn import_over_threshold(on_error: &str) -> Result<World> {
    let w = World::with_template(&items_with(on_error)).await?;
    w.put("over.csv", &file(20, |i| i > 14));
    assert_eq!(w.sync().await?.enqueued, 1);
    w.drain().await?;
    Ok(w)
}

#[tokio::test]
async fn validate_first_writes_no_row_of_a_file_over_its_threshold_and_reports_its_rejected_rows(
) -> Result {
    let w = import_over_threshold("max_rejected_rows = 2\nvalidate_first = true\n").await?;
    let entry = w.file("over.csv").await?;
    assert_eq!(entry.status, FileStatus::Failed, "{entry:#?}");
    let error = entry.error.clone().unwrap_or_default();
    assert!(error.contains("3 of 17 rows rejected"), "{error}");
    assert!(error.contains("max_rejected_rows = 2"), "{error}");
    assert_eq!(w.ids()?, Vec::<String>::new(), "no row written");
    let report = w
        .report("over.csv")
        .await?
        .ok_or_else(|| fail("no error report"))?;
    let records: Vec<u64> = report.iter().map(|e| e.record).collect();
    assert_eq!(records, [15, 16, 17]);

    // Today's behaviour without the option: the rows before the failure stay in the destination.
    let w = import_over_threshold("max_rejected_rows = 2\n").await?;
    assert_eq!(w.file("over.csv").await?.status, FileStatus::Failed);
    assert_eq!(w.ids()?.len(), 14, "the good rows read before the failure");
    Ok(())
}

#[tokio::test]
async fn validate_first_writes_every_row_of_a_passing_file_once_with_one_error_report() -> Result {
    let w = World::with_template(&items_with(
        "max_rejected_rows = 10\nvalidate_first = true\n",
    ))
    .await?;
    let recording = FaultyDestination::recording(Arc::new(w.destination.clone()));
    let worker = w.worker_with(Arc::new(recording.clone()));
    w.put("pass.csv", &file(50, |i| i % 7 == 0));
    assert_eq!(w.sync().await?.enqueued, 1);
    w.drain_with(&worker, None).await?;

    let entry = w.file("pass.csv").await?;
    assert_eq!(
        (entry.status, entry.rows_imported, entry.rows_rejected),
        (FileStatus::Imported, 43, 7),
        "{entry:#?}"
    );
    let writes = recording.writes_per_record();
    assert_eq!(writes.len(), 43, "{writes:?}");
    assert!(
        writes.values().all(|&n| n == 1),
        "each row once: {writes:?}"
    );
    assert_eq!(w.ids()?.len(), 43);
    let report = w
        .report("pass.csv")
        .await?
        .ok_or_else(|| fail("no error report"))?;
    let records: Vec<u64> = report.iter().map(|e| e.record).collect();
    assert_eq!(records, [7, 14, 21, 28, 35, 42, 49]);
    Ok(())
}

/// The validation pass has no checkpoint: a file it cannot read within one invocation fails, saying so,
/// and nothing is written.
#[tokio::test]
async fn validate_first_fails_a_file_whose_validation_pass_runs_out_of_time() -> Result {
    let w = World::with_template(&items_with("validate_first = true\n")).await?;
    // Every piece of this worker stops after its first batch of 100 rows.
    let worker = engine::piecewise(&w, 100);
    w.put("long.csv", &file(1000, |_| false));
    assert_eq!(w.sync().await?.enqueued, 1);
    let drained = w.drain_with(&worker, Some(fixtures::piece_time())).await?;
    assert_eq!(drained.delivered, 1, "no continuation: {drained:?}");
    let entry = w.file("long.csv").await?;
    assert_eq!(entry.status, FileStatus::Failed, "{entry:#?}");
    let error = entry.error.unwrap_or_default();
    assert!(
        error.contains("validate_first") && error.contains("one invocation"),
        "{error}"
    );
    assert!(w.ids()?.is_empty(), "no row written");
    Ok(())
}

/// A validated file whose writing pass needs pieces: the continuations neither validate again nor write a
/// second report, and every row is written once.
#[tokio::test]
async fn validate_first_writing_pass_in_pieces_writes_every_row_once_and_keeps_the_report() -> Result
{
    let w = World::with_template(&items_with(
        "max_rejected_rows = 500\nvalidate_first = true\n",
    ))
    .await?;
    // 300 ms a batch of 100 rows, about 2.6 s of writes; each invocation stops 1 s before its deadline,
    // 2.5 s away: the writing pass takes several pieces, the validation pass (no writes) a few milliseconds.
    let slow = FaultyDestination::new(
        Arc::new(w.destination.clone()),
        Fault::Slow(StdDuration::from_millis(300)),
    );
    let mut worker = w.worker_with(Arc::new(slow.clone()));
    worker.settings.batch_rows = 100;
    worker.settings.checkpoint_margin = Duration::seconds(1);
    w.put("big.csv", &file(1000, |i| i % 7 == 0));
    assert_eq!(w.sync().await?.enqueued, 1);
    let drained = w
        .drain_with(&worker, Some(Duration::milliseconds(2500)))
        .await?;
    assert!(drained.delivered >= 2, "in pieces: {drained:?}");
    assert!(drained.retried.is_empty(), "{drained:?}");

    let entry = w.file("big.csv").await?;
    assert_eq!(
        (entry.status, entry.rows_imported, entry.rows_rejected),
        (FileStatus::Imported, 858, 142),
        "{entry:#?}"
    );
    let writes = slow.writes_per_record();
    assert_eq!(writes.len(), 858);
    assert!(
        writes.values().all(|&n| n == 1),
        "each row once: {writes:?}"
    );
    let report = w
        .report("big.csv")
        .await?
        .ok_or_else(|| fail("no error report"))?;
    assert_eq!(
        report.len(),
        142,
        "one entry per rejected row, written once"
    );
    Ok(())
}

/// The ratio is judged as rows are read over the whole file so far: a later piece counts the rows of the
/// earlier ones (carried by the checkpoint), and the file stops being read at the row that crosses it.
#[tokio::test]
async fn the_ratio_fails_a_file_early_in_a_later_piece_counting_the_earlier_ones() -> Result {
    let w = World::with_template(&items_with(
        "max_rejected_ratio = 0.2\nratio_min_rows = 100\n",
    ))
    .await?;
    let worker = engine::piecewise(&w, 100);
    // 250 good rows, then 750 bad ones: over 20% at the 313th row (63 of 313), the rows of earlier pieces
    // counted; a piece judging only its own rows would stop elsewhere.
    w.put("ratio.csv", &file(1000, |i| i > 250));
    assert_eq!(w.sync().await?.enqueued, 1);
    let drained = w.drain_with(&worker, Some(fixtures::piece_time())).await?;
    assert!(drained.delivered >= 3, "in pieces: {drained:?}");
    let entry = w.file("ratio.csv").await?;
    assert_eq!(entry.status, FileStatus::Failed, "{entry:#?}");
    assert_eq!(
        (entry.rows_imported, entry.rows_rejected),
        (250, 63),
        "stopped at the 313th of 1000 rows: {:?}",
        entry.error
    );
    let error = entry.error.unwrap_or_default();
    assert!(error.contains("63 of 313 rows rejected"), "{error}");
    Ok(())
}
