//! The worker on the in-memory adapters (the fast engine tier): duplicates, crashes and redelivery, leases and
//! racing workers, permanent and transient failures, dead-lettered messages, superseded and gone objects.
//! `worker::process_message` runs as the worker Lambda's handler calls it; the emulator suites keep what
//! needs S3, SQS and DynamoDB themselves (`tests/tests/sync_e2e.rs`).

mod engine;

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::Duration;
use engine::{
    csv, csv_owned, numbered, one, Fault, FaultyDestination, FaultySource, Result, SourceFault,
    World,
};
use s3_importer_core::sync::contract::fixtures::{
    check_all_imported, check_dead_lettered, check_rejects_imported, check_rejects_report,
    check_superseded_while_read, gzip, ranged_reads, REJECTS_CSV,
};
use s3_importer_core::sync::memory::MemoryObject;
use s3_importer_core::sync::ports::ConnectorStore;
use s3_importer_core::sync::worker::Disposition;
use s3_importer_core::sync::{Clock, FileStatus, FileVersion};

#[tokio::test]
async fn duplicate_delivery_imports_once() -> Result {
    let w = World::new().await?;
    let rows = numbered("dup", 5);
    w.put("dup.csv", &csv_owned(&rows));
    assert_eq!(w.sync().await?.enqueued, 1);

    // The original message, and a copy of it (SQS at-least-once: the same body delivered twice).
    let original = w.receive()?;
    assert_eq!(original.len(), 1);
    w.send_copy(&original[0]);

    // The worker imports it, but the delete is lost (the invocation timed out just after): the original
    // comes back once its visibility timeout passes.
    let retried = w.deliver(&w.worker, &original, None).await;
    assert!(retried.is_empty(), "{retried:?}");
    w.expire_visibility(&original);

    let drained = w.drain().await?;
    assert_eq!(
        (drained.delivered, drained.acked),
        (2, 2),
        "both the redelivery and the copy are acked"
    );
    assert_eq!(w.queue_depth()?, (0, 0));

    let records = w.records()?;
    assert_eq!(records.len(), 5, "each row exactly once");
    assert_eq!(
        w.ids()?,
        rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>()
    );
    let entry = w.file("dup.csv").await?;
    assert_eq!(
        (entry.status, entry.attempts, entry.rows_imported),
        (FileStatus::Imported, 1, 5),
        "imported once: {entry:#?}"
    );
    Ok(())
}

/// A finished file's message delivered again is acked from the ledger: no row is written again.
#[tokio::test]
async fn worker_acks_a_duplicate_delivery_of_a_finished_file_without_reimporting() -> Result {
    let w = World::new().await?;
    w.put("a.csv", &csv(&[("a-1", 1), ("a-2", 2)]));
    w.sync().await?;
    let message = one(w.receive()?)?;
    assert!(w
        .deliver(&w.worker, std::slice::from_ref(&message), None)
        .await
        .is_empty());
    let counting = FaultyDestination::recording(Arc::new(w.destination.clone()));
    let watched = w.worker_with(Arc::new(counting.clone()));
    let result = w.process(&watched, &message, None).await;
    assert_eq!(result.disposition, Disposition::Ack, "{result:?}");
    assert_eq!(
        counting.written(),
        Vec::<u64>::new(),
        "nothing written again"
    );
    let entry = w.file("a.csv").await?;
    assert_eq!(
        (entry.status, entry.attempts),
        (FileStatus::Imported, 1),
        "{entry:#?}"
    );
    Ok(())
}

#[tokio::test]
async fn worker_crash_mid_file_then_redelivery_imports_every_row_once() -> Result {
    let w = World::new().await?;
    let rows = numbered("crash", 50);
    w.put("crash.csv", &csv_owned(&rows));
    assert_eq!(w.sync().await?.enqueued, 1);

    // The worker writes 20 rows, then is killed (its future dropped mid-write): no ack, no ledger update.
    let hold = FaultyDestination::new(Arc::new(w.destination.clone()), Fault::HoldAfter(20));
    let crashing = w.worker_with(Arc::new(hold.clone()));
    let first = w.receive()?;
    assert_eq!(first.len(), 1);
    w.kill_when(&crashing, &first, None, hold.held()).await?;
    assert_eq!(w.records()?.len(), 20, "rows written before the crash stay");
    let entry = w.file("crash.csv").await?;
    assert_eq!((entry.status, entry.attempts), (FileStatus::Processing, 1));

    // The message comes back while the dead worker's lease is live: handed back to retry later.
    w.expire_visibility(&first);
    let second = w.receive()?;
    let retried = w.deliver_and_settle(&w.worker, &second, None).await;
    assert_eq!(retried, [second[0].id.clone()]);
    w.expire_visibility(&second);

    // Once the lease (15 minutes without a Lambda deadline) has run out, the redelivery takes over.
    w.clock.advance(Duration::minutes(16));
    let drained = w.drain().await?;
    assert_eq!((drained.delivered, drained.acked), (1, 1));

    let records = w.records()?;
    assert_eq!(records.len(), 50, "every row exactly once");
    assert_eq!(
        w.ids()?,
        rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>()
    );
    for (i, (id, qty)) in rows.iter().enumerate() {
        let row = &records[id];
        let value: serde_json::Value = serde_json::from_str(&row.row)?;
        assert_eq!(
            (value["qty"].as_i64(), row.record),
            (Some(*qty), i as u64 + 1),
            "{id}: {row:?}"
        );
    }
    let entry = w.file("crash.csv").await?;
    assert_eq!(
        (entry.status, entry.attempts, entry.rows_imported),
        (FileStatus::Imported, 2, 50),
        "{entry:#?}"
    );
    Ok(())
}

/// Two workers get the same file at once (a copy of its message): the one that started it holds the lease,
/// the other is told the file is busy and retries; when its message comes back the file is done and it acks.
#[tokio::test]
async fn two_workers_racing_for_one_file_the_second_is_busy_and_later_acks() -> Result {
    let w = World::new().await?;
    w.put("a.csv", &csv_owned(&numbered("race", 10)));
    w.sync().await?;
    let first = one(w.receive()?)?;
    w.send_copy(&first);
    let copy = one(w.receive()?)?;

    let hold = FaultyDestination::new(Arc::new(w.destination.clone()), Fault::HoldAfter(3));
    let slow = w.worker_with(Arc::new(hold.clone()));
    let (first_result, second) = tokio::join!(w.process(&slow, &first, None), async {
        hold.held().await;
        let result = w.process(&w.worker, &copy, None).await;
        let entry = w.file("a.csv").await;
        hold.release();
        (result, entry)
    });
    let (second_result, during) = second;
    let during = during?;
    assert_eq!(
        second_result.disposition,
        Disposition::Retry,
        "{second_result:?}"
    );
    assert_eq!(
        (during.status, during.attempts),
        (FileStatus::Processing, 1),
        "the second worker did not take the file: {during:#?}"
    );
    assert_eq!(
        first_result.disposition,
        Disposition::Ack,
        "{first_result:?}"
    );
    w.settle(&[first], &[]);
    w.settle(std::slice::from_ref(&copy), std::slice::from_ref(&copy.id));

    w.expire_visibility(std::slice::from_ref(&copy));
    let drained = w.drain().await?;
    assert_eq!((drained.delivered, drained.acked), (1, 1), "{drained:?}");
    let entry = w.file("a.csv").await?;
    assert_eq!(
        (entry.status, entry.attempts, entry.rows_imported),
        (FileStatus::Imported, 1, 10),
        "{entry:#?}"
    );
    assert_eq!(
        hold.writes_per_record()
            .values()
            .copied()
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([1]),
        "each row written once"
    );
    Ok(())
}

#[tokio::test]
async fn malformed_file_fails_with_positioned_reason_and_is_not_retried() -> Result {
    let w = World::new().await?;
    // A JSON array cut off in its second element.
    w.put(
        "truncated.json",
        b"[\n  {\"id\": \"t-1\", \"qty\": 1},\n  {\"id\": \"t-2\", \"qty\": ",
    );
    // A CSV without the required `qty` column.
    w.put("no-qty.csv", b"id\nn-1\n");
    assert_eq!(w.sync().await?.enqueued, 2);

    let drained = w.drain().await?;
    assert_eq!(
        (drained.delivered, drained.acked, drained.retried.len()),
        (2, 2, 0),
        "permanent failures are acked, not retried"
    );

    let truncated = w.file("truncated.json").await?;
    assert_eq!(truncated.status, FileStatus::Failed);
    let reason = truncated.error.clone().unwrap_or_default();
    assert!(
        reason.contains("line 3") && reason.contains("byte"),
        "the reason names the line and byte: {reason}"
    );
    let no_qty = w.file("no-qty.csv").await?;
    assert_eq!(no_qty.status, FileStatus::Failed);
    let reason = no_qty.error.clone().unwrap_or_default();
    assert!(
        reason.contains("`qty`"),
        "the reason names the column: {reason}"
    );
    assert_eq!(
        (truncated.attempts, no_qty.attempts),
        (1, 1),
        "tried once each"
    );

    assert_eq!(w.drain().await?.delivered, 0, "nothing comes back");
    assert_eq!(w.queue_depth()?, (0, 0));
    assert_eq!(w.dead_letter_depth(), 0);
    assert_eq!(w.sync().await?.enqueued, 0, "a failed file is not re-sent");
    Ok(())
}

/// The engine's half of the emulator's error-report test: counts, the report's positions and codes, no values.
/// (The emulator suite keeps the report's S3 location and object.)
#[tokio::test]
async fn file_with_bad_rows_is_imported_with_an_error_report_naming_line_and_column() -> Result {
    let w = World::new().await?;
    w.put("rows.csv", REJECTS_CSV);
    assert_eq!(w.sync().await?.enqueued, 1);
    assert_eq!(w.drain().await?.acked, 1);

    let entry = w.file("rows.csv").await?;
    check_rejects_imported(&entry)?;
    let location = entry.error_report.clone().ok_or("no error report")?;
    assert!(
        location.starts_with("memory://error-reports/"),
        "{location}"
    );
    let entries = w
        .report("rows.csv")
        .await?
        .ok_or("the report is not stored")?;
    check_rejects_report(&entries)?;
    assert_eq!(w.ids()?, ["r-1", "r-5"]);
    Ok(())
}

#[tokio::test]
async fn failing_destination_write_makes_the_message_come_back() -> Result {
    let w = World::new().await?;
    w.put("flaky.csv", &csv(&[("f-1", 1), ("f-2", 2), ("f-3", 3)]));
    assert_eq!(w.sync().await?.enqueued, 1);

    // The destination throttles after the first row.
    let throttled = w.worker_with(Arc::new(FaultyDestination::new(
        Arc::new(w.destination.clone()),
        Fault::TransientAfter(1),
    )));
    let messages = w.receive()?;
    let retried = w.deliver_and_settle(&throttled, &messages, None).await;
    assert_eq!(retried, [messages[0].id.clone()], "the message is retried");
    assert_eq!(w.queue_depth()?, (0, 1), "still on the queue, invisible");
    let entry = w.file("flaky.csv").await?;
    assert_eq!(
        entry.status,
        FileStatus::Queued,
        "released for the redelivery: {entry:#?}"
    );
    assert!(
        entry
            .error
            .as_deref()
            .unwrap_or_default()
            .contains("injected"),
        "{entry:#?}"
    );

    // After the visibility timeout the message comes back; the destination works again.
    w.expire_visibility(&messages);
    let drained = w.drain().await?;
    assert_eq!((drained.delivered, drained.acked), (1, 1));
    assert_eq!(w.ids()?, ["f-1", "f-2", "f-3"]);
    let entry = w.file("flaky.csv").await?;
    assert_eq!(
        (entry.status, entry.attempts, entry.rows_imported),
        (FileStatus::Imported, 2, 3)
    );
    Ok(())
}

/// A source failing transiently before the first byte (throttled past the SDK's retries) releases the file
/// for the redelivery, which imports it.
#[tokio::test]
async fn transient_source_failure_releases_the_file_for_the_redelivery() -> Result {
    let w = World::new().await?;
    w.put("a.csv", &csv(&[("a-1", 1)]));
    w.sync().await?;
    let throttled = w.worker_with_source(Arc::new(FaultySource::new(
        w.s3.clone(),
        SourceFault::TransientFrom(1),
    )));
    let messages = w.receive()?;
    let retried = w.deliver_and_settle(&throttled, &messages, None).await;
    assert_eq!(retried.len(), 1, "{retried:?}");
    let entry = w.file("a.csv").await?;
    assert!(
        entry.status == FileStatus::Queued
            && entry.lease_owner.is_none()
            && entry
                .error
                .as_deref()
                .is_some_and(|e| e.contains("SlowDown")),
        "{entry:#?}"
    );
    w.expire_visibility(&messages);
    assert_eq!(w.drain().await?.acked, 1);
    let entry = w.file("a.csv").await?;
    assert_eq!((entry.status, entry.attempts), (FileStatus::Imported, 2));
    assert_eq!(w.ids()?, ["a-1"]);
    Ok(())
}

/// The engine's side of dead-lettering: every receive is an attempt; after `max_receive_count` of them the
/// message leaves the work queue, the file stays `queued` with its last error until the lister's sweep of the
/// dead-letter queue fails it (`engine_redo.rs`), and the lister never re-sends it. (The emulator suite keeps
/// SQS's own redrive.)
#[tokio::test]
async fn message_that_keeps_failing_moves_to_the_dead_letter_queue() -> Result {
    let mut w = World::new().await?;
    w.max_receive_count = 2;
    w.put("a.csv", &csv(&[("a-1", 1)]));
    assert_eq!(w.sync().await?.enqueued, 1);
    let broken = w.worker_with(Arc::new(FaultyDestination::new(
        Arc::new(w.destination.clone()),
        Fault::TransientAfter(0),
    )));
    for attempt in 1..=2 {
        let messages = w.receive()?;
        assert_eq!(messages.len(), 1, "receive {attempt}");
        assert_eq!(messages[0].receive_count, attempt);
        assert_eq!(
            w.deliver_and_settle(&broken, &messages, None).await.len(),
            1
        );
        w.expire_visibility(&messages);
    }
    // The receive after the second moves it to the DLQ, where status and alarms see it.
    assert!(w.receive()?.is_empty());
    assert_eq!(w.queue_depth()?, (0, 0));
    assert_eq!(w.dead_letter_depth(), 1);
    let entry = w.file("a.csv").await?;
    check_dead_lettered(&entry, w.sync().await?.enqueued)?;
    assert!(w.records()?.is_empty());
    Ok(())
}

#[tokio::test]
async fn key_overwritten_before_it_is_read_is_superseded_and_the_new_version_imported() -> Result {
    let w = World::new().await?;
    let v1 = w.put("a.csv", &csv(&[("a-1", 1), ("old-only", 1)]));
    assert_eq!(w.sync().await?.enqueued, 1);
    // Overwritten while its message waits: the worker's read is pinned to the listed ETag (If-Match).
    let v2 = w.put("a.csv", &csv(&[("a-1", 2)]));
    let drained = w.drain().await?;
    assert_eq!((drained.delivered, drained.acked), (1, 1));
    assert!(
        w.records()?.is_empty(),
        "nothing of the stale version is written"
    );

    assert_eq!(
        w.sync().await?.enqueued,
        1,
        "the new version is its own entry"
    );
    assert_eq!(w.drain().await?.acked, 1);
    assert_eq!(
        w.versions("a.csv").await?,
        BTreeSet::from([
            (v1, FileStatus::Superseded),
            (v2.clone(), FileStatus::Imported)
        ])
    );
    let records = w.records()?;
    assert_eq!(w.ids()?, ["a-1"]);
    assert_eq!(records["a-1"].etag, v2);
    Ok(())
}

#[tokio::test]
async fn file_deleted_before_it_is_read_is_gone() -> Result {
    let w = World::new().await?;
    w.put("a.csv", &csv(&[("a-1", 1)]));
    assert_eq!(w.sync().await?.enqueued, 1);
    assert!(w.delete("a.csv"));
    let drained = w.drain().await?;
    assert_eq!((drained.delivered, drained.acked), (1, 1));
    assert_eq!(w.file("a.csv").await?.status, FileStatus::Gone);
    assert!(w.records()?.is_empty());
    Ok(())
}

/// An object overwritten in the middle of a ranged read (a later range no longer matches the ETag) ends
/// `superseded`, not `failed`, and the message is acked. (The emulator suite keeps the same on S3's 412.)
#[tokio::test]
async fn object_overwritten_during_a_ranged_read_is_superseded() -> Result {
    let w = World::new().await?;
    w.put("o.csv", &csv_owned(&numbered("over", 3000)));
    assert_eq!(w.sync().await?.enqueued, 1);
    let source = Arc::new(FaultySource::new(
        w.s3.clone(),
        SourceFault::OverwrittenAt(5),
    ));
    let mut worker = w.worker_with_source(source.clone());
    worker.settings.read_ahead = ranged_reads(1000);
    let drained = w.drain_with(&worker, None).await?;
    assert!(
        drained.acked == 1 && drained.retried.is_empty(),
        "{drained:?}"
    );
    assert!(source.opens() >= 5, "{} ranged reads", source.opens());
    check_superseded_while_read(&w.file("o.csv").await?)?;
    Ok(())
}

/// Messages the worker cannot use are acked without touching the ledger: not JSON, a file the ledger does not
/// know, a connector that was deleted.
#[tokio::test]
async fn worker_acks_messages_it_cannot_use() -> Result {
    let w = World::new().await?;
    w.put("a.csv", &csv(&[("a-1", 1)]));
    w.sync().await?;
    let real = one(w.receive()?)?;

    let mut foreign = real.clone();
    foreign.body = "Test message.".into();
    let mut unknown = real.clone();
    unknown.message.version = FileVersion {
        key: World::key("never-listed.csv"),
        ..real.message.version.clone()
    };
    unknown.body = serde_json::to_string(&unknown.message)?;
    for message in [&foreign, &unknown] {
        let result = w.process(&w.worker, message, None).await;
        assert_eq!(
            result.disposition,
            Disposition::Ack,
            "{}: {result:?}",
            message.body
        );
    }
    let entry = w.file("a.csv").await?;
    assert_eq!(
        (entry.status, entry.attempts),
        (FileStatus::Queued, 0),
        "{entry:#?}"
    );

    w.state.delete_connector(&w.connector.id).await?;
    let result = w.process(&w.worker, &real, None).await;
    assert_eq!(result.disposition, Disposition::Ack, "{result:?}");
    assert!(w.records()?.is_empty());
    Ok(())
}

/// Gzip is recognised by the extension and by the object's Content-Encoding. (The emulator suite keeps the
/// same over HTTP.)
#[tokio::test]
async fn gzip_files_are_imported_by_extension_and_by_content_encoding() -> Result {
    let w = World::new().await?;
    w.put("by-name.csv.gz", &gzip(&csv(&[("gz-1", 1), ("gz-2", 2)]))?);
    w.put("by-name.jsonl.gz", &gzip(b"{\"id\":\"gz-3\",\"qty\":3}\n")?);
    let mut by_header = MemoryObject::new(gzip(&csv(&[("gz-4", 4)]))?, w.clock.now());
    by_header.content_encoding = Some("gzip".into());
    w.put_object(&World::key("by-header.csv"), by_header);
    assert_eq!(w.sync().await?.enqueued, 3);
    assert_eq!(w.drain().await?.acked, 3);
    check_all_imported(&w.files().await?)?;
    assert_eq!(w.ids()?, ["gz-1", "gz-2", "gz-3", "gz-4"]);
    let location = w.file("by-name.csv.gz").await?.error_report;
    assert_eq!(location, None, "no rejects, no report");
    Ok(())
}
