//! Long files in pieces on the in-memory adapters (the fast engine tier): a piece stops before the
//! invocation's deadline, checkpoints and hands over to a new message; pieces give the output of one pass for
//! every format; a piece killed at each point of the hand-over, a stale duplicate, a source or destination
//! failing in a later piece all still end with every row exactly once. The emulator suite
//! (`tests/tests/large_files.rs`) keeps the same protocol over real ranged GETs, multipart output and SQS.

mod engine;

use std::sync::Arc;

use chrono::Duration;
use engine::{
    comparable, one, piece_time, piecewise, Fault, FaultyDestination, FaultyQueue, FaultySource,
    Received, Result, SourceFault, World,
};
use s3_importer_core::sync::contract::fixtures::{
    check_interrupted_before_any_record, check_progressed_and_handed_over, delimited, gzip,
    json_array, jsonl, ranged_reads, rows, Kill, PieceFault,
};
use s3_importer_core::sync::{Checkpoint, FileStatus, LedgerEntry};

/// Rows imported or rejected before `checkpoint`.
fn rows_at_checkpoint(checkpoint: &Checkpoint) -> u64 {
    checkpoint.rows_imported + checkpoint.rows_rejected
}

/// Two worlds with `name` holding `body`, synced; the first (the reference) imported in one pass.
async fn one_pass_and_another(name: &str, body: &[u8]) -> Result<(World, World)> {
    let (one, w) = (World::new().await?, World::new().await?);
    for world in [&one, &w] {
        world.put(name, body);
        assert_eq!(world.sync().await?.enqueued, 1);
    }
    let drained = one.drain().await?;
    assert_eq!((drained.delivered, drained.acked), (1, 1));
    Ok((one, w))
}

/// `name` was imported by `w` exactly as by the one-pass import `one`: same counts, same rows (record numbers
/// included), same error report, no message left.
async fn same_as_one_pass(one: &World, w: &World, name: &str) -> Result {
    let (entry, reference) = (w.file(name).await?, one.file(name).await?);
    assert_eq!(
        (
            entry.status,
            entry.rows_imported,
            entry.rows_rejected,
            entry.checkpoint.is_none()
        ),
        (
            FileStatus::Imported,
            reference.rows_imported,
            reference.rows_rejected,
            true
        ),
        "{name}: {entry:#?} vs one pass {reference:#?}"
    );
    let (got, expected) = (comparable(&w.records()?), comparable(&one.records()?));
    if let Some((id, row)) = got.iter().find(|(id, row)| expected.get(*id) != Some(*row)) {
        return Err(engine::fail(format!(
            "rows differ from the one-pass import: {id}: {row:?} vs {:?}",
            expected.get(id)
        )));
    }
    assert_eq!(got.len(), expected.len(), "rows of {name}");
    assert_eq!(
        w.report(name).await?,
        one.report(name).await?,
        "error reports of {name} differ"
    );
    assert_eq!(w.queue_depth()?, (0, 0), "messages left over");
    Ok(())
}

/// Before the invocation's deadline the worker checkpoints (byte offset, row, header) and continues in a new
/// message with a ranged read; the pieces write each row once. (The emulator's 21-second invocation, scaled
/// down to two seconds.)
#[tokio::test]
async fn long_file_is_checkpointed_before_the_deadline_and_continued_in_a_new_message() -> Result {
    let w = World::new().await?;
    let rows = engine::numbered("long", 16_000);
    w.put("long.csv", &engine::csv_owned(&rows));
    assert_eq!(w.sync().await?.enqueued, 1);
    // 8 batches of 2,000 rows at 250 ms each: 2 s of work for an invocation with 2 s left, of which the last
    // second is the checkpoint margin.
    let slow = FaultyDestination::new(
        Arc::new(w.destination.clone()),
        Fault::Slow(std::time::Duration::from_millis(250)),
    );
    let mut worker = w.worker_with(Arc::new(slow.clone()));
    worker.settings.batch_rows = 2000;
    worker.settings.checkpoint_margin = Duration::seconds(1);

    let messages = w.receive()?;
    let left = std::time::Duration::from_secs(2);
    let started = std::time::Instant::now();
    let retried = w
        .deliver_and_settle(&worker, &messages, Some(Duration::from_std(left)?))
        .await;
    let took = started.elapsed();
    assert!(
        took < left,
        "the invocation ran {took:?}, past its deadline {left:?} away: Lambda would have killed it"
    );
    assert!(retried.is_empty(), "{retried:?}");
    let entry = w.file("long.csv").await?;
    assert!(
        entry.status == FileStatus::Queued
            && entry
                .checkpoint
                .as_ref()
                .is_some_and(|c| c.piece == 1 && c.continued && c.start.byte > 0),
        "checkpointed and continued: {entry:#?}"
    );

    // The continuation(s) finish the file.
    let drained = w.drain_with(&worker, None).await?;
    assert!(drained.acked >= 1, "{drained:?}");
    let written = slow.writes_per_record();
    assert_eq!(written.len(), 16_000, "every row");
    assert!(written.values().all(|&n| n == 1), "each row once");
    let entry = w.file("long.csv").await?;
    assert_eq!(
        (entry.status, entry.rows_imported),
        (FileStatus::Imported, 16_000)
    );
    assert_eq!(w.records()?.len(), 16_000);
    Ok(())
}

/// Every format imported in many pieces (one batch each, ranged reads) gives exactly the rows and error
/// report of a one-pass import.
#[tokio::test]
async fn every_format_in_many_pieces_gives_exactly_the_one_pass_result() -> Result {
    let files = vec![
        ("a.csv", delimited(&rows("csv", 300), ',')),
        ("b.tsv", delimited(&rows("tsv", 300), '\t')),
        ("c.jsonl", jsonl(&rows("jsonl", 300))),
        ("d.json", json_array(&rows("json", 300))),
        ("e.csv.gz", gzip(&delimited(&rows("gz", 300), ','))?),
    ];
    let (one, many) = (World::new().await?, World::new().await?);
    for w in [&one, &many] {
        for (name, body) in &files {
            w.put(name, body);
        }
        assert_eq!(w.sync().await?.enqueued, files.len() as u64);
    }
    let single = one.drain().await?;
    assert_eq!(single.delivered, files.len() as u64, "{single:?}");

    // 300 rows in batches of 50: every file takes at least 6 pieces.
    let drained = many
        .drain_with(&piecewise(&many, 50), Some(piece_time()))
        .await?;
    assert!(drained.retried.is_empty(), "{drained:?}");
    assert!(
        drained.delivered >= 5 * files.len() as u64,
        "{} messages for {} files",
        drained.delivered,
        files.len()
    );
    assert_eq!(one.records()?.len(), 5 * (300 - 300 / 7));
    for (name, _) in &files {
        same_as_one_pass(&one, &many, name).await?;
    }
    Ok(())
}

/// The first two pieces of `name` through `good`: each acked, the file handed over (`queued`) after each.
async fn two_pieces_go_well(w: &World, good: &engine::Worker, name: &str) -> Result {
    for _ in 0..2 {
        let messages = w.receive()?;
        assert_eq!(messages.len(), 1);
        let retried = w
            .deliver_and_settle(good, &messages, Some(piece_time()))
            .await;
        assert!(retried.is_empty(), "{retried:?}");
        let entry = w.file(name).await?;
        assert_eq!(entry.status, FileStatus::Queued, "{entry:#?}");
    }
    Ok(())
}

/// Imports a CSV file in pieces, kills the third piece at `kill`, lets the messages come back, and compares
/// the rows and error report with a one-pass import.
async fn killed_piece_still_imports_every_row_once(kill: Kill) -> Result {
    let (one, w) = one_pass_and_another("k.csv", &delimited(&rows("k", 400), ',')).await?;
    let good = piecewise(&w, 40);
    two_pieces_go_well(&w, &good, "k.csv").await?;
    // The third is killed.
    let messages = w.receive()?;
    assert_eq!(messages.len(), 1);
    let left = Some(piece_time());
    match kill {
        Kill::BeforeCheckpoint => {
            let hold =
                FaultyDestination::new(Arc::new(w.destination.clone()), Fault::HoldAfter(15));
            let bad = w.worker_with(Arc::new(hold.clone()));
            w.kill_when(&bad, &messages, left, hold.held()).await?;
        }
        Kill::AfterCheckpoint | Kill::AfterSend => {
            let fault = kill.queue_fault().ok_or("a queue fault kills this piece")?;
            let queue = FaultyQueue::new(w.queue.clone(), fault);
            let mut bad = w.worker_with_queue(Arc::new(queue.clone()));
            bad.settings = good.settings.clone();
            w.kill_when(&bad, &messages, left, queue.hung()).await?;
        }
        Kill::AckLost => {
            let retried = w.deliver(&good, &messages, left).await;
            assert!(retried.is_empty(), "{retried:?}");
        }
    }
    let entry = w.file("k.csv").await?;
    assert_eq!(entry.status, kill.status_after(), "{kill:?}: {entry:#?}");

    // The message comes back after its visibility timeout; a dead worker's lease runs out with its
    // invocation (deadline + 1 minute).
    w.expire_visibility(&messages);
    w.clock.advance(Duration::minutes(2));
    let drained = w.drain_with(&good, Some(piece_time())).await?;
    assert!(drained.retried.is_empty(), "{kill:?}: {drained:?}");
    same_as_one_pass(&one, &w, "k.csv").await
}

s3_importer_core::piece_kill_tests!(killed_piece_still_imports_every_row_once -> Result);

/// After a crash mid-piece, the redelivered message starts from the last checkpoint, not from the top: the
/// rows of earlier pieces are not written again.
#[tokio::test]
async fn a_redelivered_message_after_a_crash_resumes_from_the_checkpoint() -> Result {
    let (one, w) = one_pass_and_another("r.csv", &delimited(&rows("r", 400), ',')).await?;
    let good = piecewise(&w, 40);
    for _ in 0..2 {
        let messages = w.receive()?;
        assert!(w
            .deliver_and_settle(&good, &messages, Some(piece_time()))
            .await
            .is_empty());
    }
    let checkpoint = w
        .file("r.csv")
        .await?
        .checkpoint
        .ok_or("no checkpoint after two pieces")?;
    let hold = FaultyDestination::new(Arc::new(w.destination.clone()), Fault::HoldAfter(15));
    let crashing = w.worker_with(Arc::new(hold.clone()));
    let messages = w.receive()?;
    w.kill_when(&crashing, &messages, Some(piece_time()), hold.held())
        .await?;

    w.expire_visibility(&messages);
    w.clock.advance(Duration::minutes(2));
    let recording = FaultyDestination::recording(Arc::new(w.destination.clone()));
    let mut redo = w.worker_with(Arc::new(recording.clone()));
    redo.settings = good.settings.clone();
    let drained = w.drain_with(&redo, Some(piece_time())).await?;
    assert!(drained.retried.is_empty(), "{drained:?}");
    let written = recording.written();
    // The checkpoint names the next record to read (record numbers are 1-based).
    assert_eq!(
        checkpoint.start.record,
        rows_at_checkpoint(&checkpoint) + 1,
        "{checkpoint:?}"
    );
    assert_eq!(
        written.iter().min().copied(),
        Some(checkpoint.start.record),
        "the redo starts at the checkpoint {checkpoint:?}"
    );
    let imported = recording.writes_per_record();
    assert!(
        imported.values().all(|&n| n == 1),
        "after the crash each row is written once: {imported:?}"
    );
    same_as_one_pass(&one, &w, "r.csv").await
}

/// A message of an earlier piece delivered again after its continuation was sent is acked without taking the
/// file: the ledger's attempt count is unchanged.
#[tokio::test]
async fn a_stale_duplicate_does_not_count_an_attempt() -> Result {
    let w = World::new().await?;
    w.put("s.csv", &delimited(&rows("stale", 300), ','));
    assert_eq!(w.sync().await?.enqueued, 1);
    let worker = piecewise(&w, 50);
    let first = w.receive()?;
    assert_eq!(first.len(), 1);
    let retried = w.deliver(&worker, &first, Some(piece_time())).await;
    assert!(retried.is_empty(), "{retried:?}");
    // The ack of piece 0 is lost: the message comes back next to piece 1's.
    let before = w.file("s.csv").await?;
    assert!(
        before
            .checkpoint
            .as_ref()
            .is_some_and(|c| c.piece == 1 && c.continued),
        "{before:#?}"
    );
    w.expire_visibility(&first);
    let (stale, rest): (Vec<Received>, Vec<Received>) =
        w.receive()?.into_iter().partition(|m| m.message.piece == 0);
    assert!(stale.len() == 1 && rest.len() == 1, "{stale:#?} {rest:#?}");
    let retried = w
        .deliver_and_settle(&worker, &stale, Some(piece_time()))
        .await;
    assert!(retried.is_empty(), "{retried:?}");
    let after = w.file("s.csv").await?;
    assert_eq!(
        (
            after.status,
            after.attempts,
            after.checkpoint.map(|c| c.piece)
        ),
        (before.status, before.attempts, Some(1)),
        "the stale message changed the entry: attempts {} -> {}",
        before.attempts,
        after.attempts
    );
    w.expire_visibility(&rest);
    let drained = w.drain_with(&worker, Some(piece_time())).await?;
    assert!(drained.retried.is_empty(), "{drained:?}");
    let done = w.file("s.csv").await?;
    assert_eq!(done.status, FileStatus::Imported, "{done:#?}");
    // One attempt per piece: the duplicate counted none.
    assert_eq!(
        u64::from(done.attempts),
        1 + drained.delivered,
        "{} attempts for {} pieces",
        done.attempts,
        1 + drained.delivered
    );
    Ok(())
}

/// Imports a CSV file in pieces; the third piece meets `fault` and has all the time it wants. Returns the two
/// worlds (one-pass and piecewise), the entry before that piece, its messages and the ids retried.
async fn third_piece_meets(
    fault: PieceFault,
) -> Result<(World, World, LedgerEntry, Vec<Received>, Vec<String>)> {
    let (one, w) = one_pass_and_another("f.csv", &delimited(&rows("f", 3000), ',')).await?;
    let good = piecewise(&w, 40);
    two_pieces_go_well(&w, &good, "f.csv").await?;
    let before = w.file("f.csv").await?;
    let bad = match fault.failing_reads() {
        Some((from, chunk_bytes)) => {
            let mut worker = w.worker_with_source(Arc::new(FaultySource::new(
                w.s3.clone(),
                SourceFault::TransientFrom(from),
            )));
            worker.settings.batch_rows = 40;
            worker.settings.read_ahead = ranged_reads(chunk_bytes);
            worker
        }
        None => {
            let mut worker = w.worker_with(Arc::new(FaultyDestination::new(
                Arc::new(w.destination.clone()),
                Fault::TransientAfter(100),
            )));
            worker.settings.batch_rows = 40;
            worker
        }
    };
    let messages = w.receive()?;
    assert_eq!(messages.len(), 1);
    let retried = w
        .deliver_and_settle(&bad, &messages, Some(Duration::minutes(10)))
        .await;
    Ok((one, w, before, messages, retried))
}

/// A source that keeps failing in the middle of a later piece (the read's retries spent) interrupts the piece:
/// it checkpoints after its last complete record and the file continues in a new message. The result is
/// exactly the one-pass import.
#[tokio::test]
async fn source_failing_mid_piece_checkpoints_the_last_complete_record_and_continues() -> Result {
    let (one, w, before, _, retried) = third_piece_meets(PieceFault::SourceFailsMidPiece).await?;
    assert!(retried.is_empty(), "{retried:?}");
    check_progressed_and_handed_over(&before, &w.file("f.csv").await?)?;
    assert_eq!(w.queue_depth()?, (1, 0), "the continuation is queued");
    let drained = w.drain_with(&piecewise(&w, 40), Some(piece_time())).await?;
    assert!(drained.retried.is_empty(), "{drained:?}");
    same_as_one_pass(&one, &w, "f.csv").await
}

/// A source failing before the piece has one whole record: nothing to checkpoint, so the message is retried
/// and the file goes back to `queued` with its checkpoint as it was; the redelivered message finishes the
/// file exactly as a one-pass import.
#[tokio::test]
async fn source_failing_before_a_whole_record_retries_the_message_from_the_same_checkpoint(
) -> Result {
    let (one, w, before, messages, retried) =
        third_piece_meets(PieceFault::SourceFailsBeforeARecord).await?;
    assert_eq!(retried.len(), 1, "the message is retried: {retried:?}");
    check_interrupted_before_any_record(&before, &w.file("f.csv").await?)?;
    assert_eq!(w.queue_depth()?, (0, 1), "only the invisible message");
    w.expire_visibility(&messages);
    let drained = w.drain_with(&piecewise(&w, 40), Some(piece_time())).await?;
    assert!(drained.retried.is_empty(), "{drained:?}");
    same_as_one_pass(&one, &w, "f.csv").await
}

/// A destination failing transiently in a later piece: the message is retried and the piece redone from its
/// checkpoint, which is left as it was; the file still completes exactly as a one-pass import. (The emulator
/// suite keeps the part that needs a staging destination: the multipart upload is not aborted.)
#[tokio::test]
async fn destination_failing_in_a_later_piece_retries_it_from_the_same_checkpoint() -> Result {
    let (one, w, before, messages, retried) =
        third_piece_meets(PieceFault::DestinationFails).await?;
    assert_eq!(retried.len(), 1, "{retried:?}");
    let after = w.file("f.csv").await?;
    assert!(
        after.status == FileStatus::Queued && after.checkpoint == before.checkpoint,
        "{after:#?}"
    );
    w.expire_visibility(&messages);
    // The rest in one piece.
    let drained = w.drain_with(&w.worker, Some(Duration::minutes(10))).await?;
    assert!(drained.retried.is_empty(), "{drained:?}");
    same_as_one_pass(&one, &w, "f.csv").await
}

/// While a file is imported the heartbeat keeps extending its message's visibility, and it stops with the
/// file. (The emulator suite keeps the same against SQS's visibility timeout.)
#[tokio::test]
async fn heartbeat_extends_the_visibility_while_a_file_is_imported_and_stops_when_it_is_done(
) -> Result {
    let w = World::new().await?;
    w.put("slow.csv", &delimited(&rows("s", 120), ','));
    w.sync().await?;
    let mut worker = w.worker_with(Arc::new(FaultyDestination::new(
        Arc::new(w.destination.clone()),
        Fault::Slow(std::time::Duration::from_millis(150)),
    )));
    worker.settings.batch_rows = 30;
    worker.settings.heartbeat_interval = std::time::Duration::from_millis(100);
    let message = one(w.receive()?)?;
    let started = std::time::Instant::now();
    let retried = w
        .deliver_and_settle(&worker, std::slice::from_ref(&message), None)
        .await;
    let took = started.elapsed();
    assert!(retried.is_empty(), "{retried:?}");
    let during = w.queue.extensions();
    assert!(
        during.len() >= 3 && during.iter().all(|(receipt, _)| *receipt == message.id),
        "about one extension per 100 ms over {took:?}: {during:?}"
    );
    assert!(
        during
            .iter()
            .all(|&(_, seconds)| seconds == worker.settings.visibility_extension()),
        "{during:?}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(350)).await;
    assert_eq!(
        w.queue.extensions().len(),
        during.len(),
        "the heartbeat kept going after the file was done"
    );
    assert_eq!(w.file("slow.csv").await?.status, FileStatus::Imported);
    Ok(())
}
