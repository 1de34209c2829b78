//! Long files in pieces (`docs/architecture.md`, "Pieces") on the emulator: a file imported in many pieces — each
//! invocation left almost no time, so every piece writes one batch, checkpoints and hands over to a new message — gives
//! exactly the rows and the error report of a one-pass import, for every format; and a piece killed at each point of
//! the hand-over (before the checkpoint, after it, after the continuation was sent) still ends with every row exactly
//! once. And the visibility heartbeat keeps a slow import's message from a second worker.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use anyhow::{ensure, Context, Result};
use aws_lambda_events::event::sqs::SqsBatchResponse;
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Duration;
use s3_importer_aws::consumer::Received;
use s3_importer_aws::destination::error_report_key;
use s3_importer_core::sync::contract::fixtures::{
    self, check_interrupted_before_any_record, check_progressed_and_handed_over,
    check_superseded_while_read, delimited, gzip, json_array, jsonl, piece_time, ranged_reads,
    rows, Fault, FaultyDestination, FaultyQueue, Kill, PieceFault,
};
use s3_importer_core::sync::{Clock, FileStatus, LedgerEntry};
use s3_importer_tests::denials::{get_objects_answered_from, nth_get_object_answered};
use s3_importer_tests::deployment::{Deployment, Options};
use s3_importer_tests::recording::Recorder;
use s3_importer_worker::Worker;

/// S3's smallest multipart part (but the last).
const SMALLEST_PART: usize = 5 << 20;

/// A worker whose every piece writes one batch of `batch_rows` and stops ([`fixtures::piecewise`]).
fn piecewise(d: &Deployment, batch_rows: usize) -> Worker {
    let mut worker = d.worker.clone();
    worker.settings = fixtures::piecewise(&worker.settings, batch_rows);
    worker
}

/// The files of the format comparison: name → body. Row ids are distinct across files.
fn files() -> Result<Vec<(&'static str, Vec<u8>)>> {
    Ok(vec![
        ("a.csv", delimited(&rows("csv", 300), ',')),
        ("b.tsv", delimited(&rows("tsv", 300), '\t')),
        ("c.jsonl", jsonl(&rows("jsonl", 300))),
        ("d.json", json_array(&rows("json", 300))),
        ("e.csv.gz", gzip(&delimited(&rows("gz", 300), ','))?),
    ])
}

/// Records without the attributes that differ between two imports (import time).
fn comparable(
    records: BTreeMap<String, std::collections::HashMap<String, AttributeValue>>,
) -> BTreeMap<String, BTreeMap<String, String>> {
    records
        .into_values()
        .map(|item| {
            let id = match item.get("id") {
                Some(AttributeValue::S(s)) => s.clone(),
                other => format!("{other:?}"),
            };
            let fields = item
                .into_iter()
                .filter(|(k, _)| {
                    // Lineage that differs between two deployments: the connector, the time of the import and
                    // of the source object's upload.
                    !matches!(
                        k.as_str(),
                        "pk" | "connector_id" | "_imported_at" | "_source_last_modified"
                    )
                })
                .map(|(k, v)| (k, format!("{v:?}")))
                .collect();
            (id, fields)
        })
        .collect()
}

/// Each file's error report lines, by name.
async fn reports(d: &Deployment, names: &[&str]) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for name in names {
        let entry = d.file(name).await?;
        let location = entry
            .error_report
            .clone()
            .with_context(|| format!("{name} has no error report: {entry:#?}"))?;
        let expected = format!(
            "s3://{}/{}",
            d.provisioned.names.output_bucket,
            error_report_key(&d.connector.id, &Deployment::key(name), &entry.version.etag)
        );
        ensure!(location == expected, "{location} != {expected}");
        out.insert(
            (*name).to_owned(),
            String::from_utf8(d.read_output(&location).await?)?,
        );
    }
    Ok(out)
}

#[tokio::test]
async fn every_format_in_many_pieces_gives_exactly_the_one_pass_result() -> Result<()> {
    let files = files()?;
    let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
    let (one, many) = tokio::try_join!(Deployment::new(), Deployment::new())?;
    for d in [&one, &many] {
        for (name, body) in &files {
            d.put(name, body).await?;
        }
        ensure!(d.sync().await?.enqueued == files.len() as u64);
    }
    let single = one.drain().await?;
    ensure!(single.delivered == files.len() as u64, "{single:?}");

    // 300 rows in batches of 50: every file takes at least 6 pieces.
    let drained = many
        .drain_in_pieces(&piecewise(&many, 50), piece_time())
        .await?;
    ensure!(drained.retried.is_empty(), "{drained:?}");
    let pieces = drained.delivered / files.len() as u64;
    ensure!(
        drained.delivered >= 5 * files.len() as u64,
        "{} messages for {} files",
        drained.delivered,
        files.len()
    );
    println!(
        "{} messages, about {pieces} pieces per file",
        drained.delivered
    );

    let (expected, got) = (
        comparable(one.records().await?),
        comparable(many.records().await?),
    );
    ensure!(
        expected.len() == 5 * (300 - 300 / 7),
        "{} rows",
        expected.len()
    );
    if let Some((id, row)) = got.iter().find(|(id, row)| expected.get(*id) != Some(*row)) {
        anyhow::bail!(
            "records differ from the one-pass import: {id}: {row:?} vs {:?}",
            expected.get(id)
        );
    }
    ensure!(
        got.len() == expected.len(),
        "{} vs {} rows",
        got.len(),
        expected.len()
    );
    ensure!(
        reports(&many, &names).await? == reports(&one, &names).await?,
        "error reports differ"
    );
    for name in &names {
        let (a, b) = (one.file(name).await?, many.file(name).await?);
        ensure!(
            (
                b.status,
                b.rows_imported,
                b.rows_rejected,
                b.checkpoint.is_none()
            ) == (FileStatus::Imported, a.rows_imported, a.rows_rejected, true),
            "{name}: {b:#?} vs one pass {a:#?}"
        );
    }
    ensure!(many.queue_depth().await? == (0, 0));
    Ok(())
}

/// A ranged read sends one GetObject per range: the first range is the request that checks the object (found,
/// unchanged) and tells its encoding, and its response is read, not dropped.
#[tokio::test]
async fn ranged_read_sends_one_get_object_per_range() -> Result<()> {
    let d = Deployment::new().await?;
    let csv = delimited(&rows("ranges", 2000), ',');
    let gz = gzip(&csv)?;
    d.put("r.csv", &csv).await?;
    d.put("r.csv.gz", &gz).await?;
    ensure!(d.sync().await?.enqueued == 2);
    let recorder = Recorder::new();
    let clock: Arc<dyn Clock> = d.clock.clone();
    let mut worker = Worker::from_config(&d.config, &recorder.sdk_config(&d.sdk), clock);
    worker.settings.read_ahead = ranged_reads(1000);
    let drained = d.drain_with(&worker).await?;
    ensure!(
        drained.acked == 2 && drained.retried.is_empty(),
        "{drained:?}"
    );
    for (name, body) in [("r.csv", &csv), ("r.csv.gz", &gz)] {
        let entry = d.file(name).await?;
        ensure!(
            (entry.status, entry.rows_imported, entry.rows_rejected)
                == (FileStatus::Imported, 2000 - 2000 / 7, 2000 / 7),
            "{name}: {entry:#?}"
        );
        let key = Deployment::key(name);
        let gets = recorder
            .calls()
            .iter()
            .filter(|c| {
                c.name() == "s3:GetObject"
                    && c.s3_bucket_and_key() == (d.source_bucket.clone(), Some(key.clone()))
            })
            .count();
        ensure!(
            gets == body.len().div_ceil(1000),
            "{name}: {gets} GetObject requests for {} bytes in ranges of 1000",
            body.len()
        );
    }
    Ok(())
}

/// Two deployments writing S3 JSONL under `rows`, with `name` holding `body`, synced; the first (the reference)
/// imported in one pass. Returns them and the etags of `name` in each.
async fn one_pass_and_another(
    name: &str,
    body: &[u8],
) -> Result<(Deployment, Deployment, Vec<String>)> {
    let (one, d) = tokio::try_join!(Deployment::new(), Deployment::new())?;
    let mut etags = Vec::new();
    for d in [&one, &d] {
        d.use_s3_jsonl("rows").await?;
        etags.push(d.put(name, body).await?);
        ensure!(d.sync().await?.enqueued == 1);
    }
    one.drain().await?;
    Ok((one, d, etags))
}

/// Imports a CSV file into S3 JSONL in pieces, kills the third piece at `kill`, lets the messages come back,
/// and compares the output object and error report with a one-pass import.
async fn killed_piece_still_imports_every_row_once(kill: Kill) -> Result<()> {
    let (one, d, etags) = one_pass_and_another("k.csv", &delimited(&rows("k", 400), ',')).await?;
    let good = piecewise(&d, 40);

    // Two pieces go well.
    for _ in 0..2 {
        let messages = d.receive().await?;
        ensure!(messages.len() == 1);
        let response = d
            .deliver_with_deadline(&good, &messages, piece_time())
            .await?;
        ensure!(d.settle(&messages, &response).await?.is_empty());
    }
    // The third is killed.
    let messages = d.receive().await?;
    ensure!(messages.len() == 1);
    let mut bad = good.clone();
    if kill == Kill::BeforeCheckpoint {
        bad.deps.destination = Arc::new(FaultyDestination::new(
            d.real_destination(),
            Fault::HoldAfter(15),
        ));
    }
    if let Some(fault) = kill.queue_fault() {
        bad.deps.queue = Arc::new(FaultyQueue::new(d.real_queue(), fault));
    }
    let run = d.deliver_with_deadline(&bad, &messages, piece_time());
    match kill {
        Kill::AckLost => {
            let response = run.await?;
            ensure!(response.batch_item_failures.is_empty());
        }
        _ => {
            let killed = tokio::time::timeout(StdDuration::from_secs(3), run).await;
            ensure!(
                killed.is_err(),
                "the piece should still be running when killed"
            );
        }
    }
    let entry = d.file("k.csv").await?;
    ensure!(entry.status == kill.status_after(), "{entry:#?}");

    // The message comes back after its visibility timeout; a dead worker's lease runs out with its
    // invocation (deadline + 1 minute).
    d.expire_visibility(&messages).await?;
    d.clock.advance(Duration::minutes(2));
    let drained = d.drain_in_pieces(&good, piece_time()).await?;
    ensure!(drained.retried.is_empty(), "{drained:?}");

    same_as_one_pass(&one, &d, "k.csv", &etags).await
}

/// `name` was imported by `d` exactly as by the one-pass import `one` (S3 JSONL output under `rows`, `etags`
/// of `one` and `d`): same counts, same output object, same error report, no message left.
async fn same_as_one_pass(
    one: &Deployment,
    d: &Deployment,
    name: &str,
    etags: &[String],
) -> Result<()> {
    let entry = d.file(name).await?;
    let reference = one.file(name).await?;
    ensure!(
        (entry.status, entry.rows_imported, entry.rows_rejected)
            == (
                FileStatus::Imported,
                reference.rows_imported,
                reference.rows_rejected
            ),
        "{entry:#?}"
    );
    let output = d
        .read_output(&d.output_location("rows", name, &etags[1]))
        .await?;
    let expected = one
        .read_output(&one.output_location("rows", name, &etags[0]))
        .await?;
    ensure!(
        String::from_utf8(output)? == String::from_utf8(expected)?,
        "the output differs from a one-pass import"
    );
    ensure!(
        reports(d, &[name]).await? == reports(one, &[name]).await?,
        "error reports differ"
    );
    ensure!(d.queue_depth().await? == (0, 0), "messages left over");
    Ok(())
}

/// Imports a CSV file into S3 JSONL in pieces; a later piece (the third; in the destination's case the first
/// after a part of output was staged) meets `fault` and has all the time it wants. Returns the two deployments
/// (one-pass and piecewise), the etags, the ledger entry before that piece, its messages and the batch
/// response.
async fn third_piece_meets(
    fault: PieceFault,
) -> Result<(
    Deployment,
    Deployment,
    Vec<String>,
    LedgerEntry,
    Vec<Received>,
    SqsBatchResponse,
)> {
    // In the destination's case the earlier pieces stage at least one part (5 MiB) of output, so an open
    // multipart upload is what the failing piece must leave alone.
    let n = match fault {
        PieceFault::DestinationFails => 400_000,
        _ => 3000,
    };
    let (one, d, etags) = one_pass_and_another("f.csv", &delimited(&rows("f", n), ',')).await?;
    let good = match fault {
        // Pieces of a second reading large ranges into the smallest parts S3 takes, so that a part is staged
        // after a few pieces on any machine, and well before the end of the file.
        PieceFault::DestinationFails => {
            let mut worker = d.worker_with(d.real_destination_in_parts(SMALLEST_PART));
            worker.settings = fixtures::piecewise(&worker.settings, 40);
            worker.settings.read_ahead = ranged_reads(256 * 1024);
            worker
        }
        _ => piecewise(&d, 40),
    };
    let parts_staged = |entry: &LedgerEntry| {
        entry
            .checkpoint
            .as_ref()
            .and_then(|c| c.rows_state.as_ref())
            .and_then(|state| state["parts"].as_array())
            .map_or(0, Vec::len)
    };
    let mut pieces = 0;
    loop {
        let messages = d.receive().await?;
        ensure!(messages.len() == 1);
        // Pieces of one batch; in the destination's case, pieces of about a second.
        let left = match fault {
            PieceFault::DestinationFails => piece_time() + Duration::seconds(1),
            _ => piece_time(),
        };
        let response = d.deliver_with_deadline(&good, &messages, left).await?;
        ensure!(d.settle(&messages, &response).await?.is_empty());
        pieces += 1;
        let entry = d.file("f.csv").await?;
        let enough = match fault {
            PieceFault::DestinationFails => parts_staged(&entry) > 0,
            _ => pieces == 2,
        };
        ensure!(
            entry.status == FileStatus::Queued && pieces < 50,
            "{entry:#?}"
        );
        if enough {
            break;
        }
    }
    let before = d.file("f.csv").await?;
    let bad = match fault.failing_reads() {
        // The output's reads are not affected.
        Some((from, chunk_bytes)) => {
            let clock: Arc<dyn Clock> = d.clock.clone();
            let mut worker = Worker::from_config(
                &d.config,
                &get_objects_answered_from(&d.sdk, &d.source_bucket, from, 503, "SlowDown"),
                clock,
            );
            worker.settings.batch_rows = 40;
            worker.settings.read_ahead = ranged_reads(chunk_bytes);
            worker
        }
        None => {
            let mut worker = d.worker.clone();
            worker.settings.batch_rows = 40;
            worker.deps.destination = Arc::new(FaultyDestination::new(
                d.real_destination_in_parts(SMALLEST_PART),
                Fault::TransientAfter(100),
            ));
            worker
        }
    };
    let messages = d.receive().await?;
    ensure!(messages.len() == 1);
    let response = d
        .deliver_with_deadline(&bad, &messages, Duration::minutes(10))
        .await?;
    d.settle(&messages, &response).await?;
    Ok((one, d, etags, before, messages, response))
}

/// A source that keeps failing in the middle of a later piece (the read's retries spent) interrupts the piece:
/// it checkpoints after its last complete record and the file continues in a new message, keeping the output
/// staged by the earlier pieces. The result is exactly the one-pass import.
#[tokio::test]
async fn source_failing_mid_piece_checkpoints_the_last_complete_record_and_continues() -> Result<()>
{
    let (one, d, etags, before, _, response) =
        third_piece_meets(PieceFault::SourceFailsMidPiece).await?;
    ensure!(response.batch_item_failures.is_empty(), "{response:?}");
    check_progressed_and_handed_over(&before, &d.file("f.csv").await?)
        .map_err(anyhow::Error::msg)?;
    ensure!(
        d.queue_depth().await? == (1, 0),
        "the continuation is queued"
    );
    let drained = d.drain_in_pieces(&piecewise(&d, 40), piece_time()).await?;
    ensure!(drained.retried.is_empty(), "{drained:?}");
    same_as_one_pass(&one, &d, "f.csv", &etags).await
}

/// A source failing before the piece has one whole record: nothing to checkpoint, so the message is retried
/// (SQS's receive count bounds the attempts) and the file goes back to `queued` with its checkpoint as it was;
/// the redelivered message finishes the file exactly as a one-pass import.
#[tokio::test]
async fn source_failing_before_a_whole_record_retries_the_message_from_the_same_checkpoint(
) -> Result<()> {
    let (one, d, etags, before, messages, response) =
        third_piece_meets(PieceFault::SourceFailsBeforeARecord).await?;
    ensure!(
        response.batch_item_failures.len() == 1,
        "the message is retried: {response:?}"
    );
    check_interrupted_before_any_record(&before, &d.file("f.csv").await?)
        .map_err(anyhow::Error::msg)?;
    ensure!(
        d.queue_depth().await? == (0, 1),
        "only the invisible message"
    );
    d.expire_visibility(&messages).await?;
    let drained = d.drain_in_pieces(&piecewise(&d, 40), piece_time()).await?;
    ensure!(drained.retried.is_empty(), "{drained:?}");
    same_as_one_pass(&one, &d, "f.csv", &etags).await
}

/// A destination failing transiently in a later piece: the message is retried and the piece redone from its
/// checkpoint; the output staged by the earlier pieces is not aborted, so the file still completes exactly
/// as a one-pass import.
#[tokio::test]
async fn destination_failing_in_a_later_piece_keeps_the_staged_output() -> Result<()> {
    let (one, d, etags, before, messages, response) =
        third_piece_meets(PieceFault::DestinationFails).await?;
    ensure!(response.batch_item_failures.len() == 1, "{response:?}");
    let after = d.file("f.csv").await?;
    ensure!(
        after.status == FileStatus::Queued && after.checkpoint == before.checkpoint,
        "{after:#?}"
    );
    d.expire_visibility(&messages).await?;
    // The rest in one piece: what matters is the part staged before the fault, not more pieces.
    let drained = d.drain_in_pieces(&d.worker, Duration::minutes(10)).await?;
    ensure!(drained.retried.is_empty(), "{drained:?}");
    same_as_one_pass(&one, &d, "f.csv", &etags).await
}

s3_importer_core::piece_kill_tests!(killed_piece_still_imports_every_row_once -> Result<()>);

/// An object overwritten in the middle of a ranged read (a later range answered 412) ends `superseded`, not
/// `failed`, and the message is acked.
#[tokio::test]
async fn object_overwritten_during_a_ranged_read_is_superseded() -> Result<()> {
    let d = Deployment::new().await?;
    d.put("o.csv", &delimited(&rows("over", 3000), ',')).await?;
    ensure!(d.sync().await?.enqueued == 1);
    let clock: Arc<dyn Clock> = d.clock.clone();
    let mut worker = Worker::from_config(
        &d.config,
        &nth_get_object_answered(&d.sdk, 5, 412, "PreconditionFailed"),
        clock,
    );
    worker.settings.read_ahead = ranged_reads(1000);
    let drained = d.drain_with(&worker).await?;
    ensure!(
        drained.acked == 1 && drained.retried.is_empty(),
        "{drained:?}"
    );
    check_superseded_while_read(&d.file("o.csv").await?).map_err(anyhow::Error::msg)
}

#[tokio::test]
async fn heartbeat_keeps_a_slow_import_invisible_and_stops_when_the_file_is_done() -> Result<()> {
    // A queue whose messages come back after 2 s, and an import that takes about 6 s.
    let d = Deployment::with(Options {
        visibility_timeout: 2,
        ..Options::default()
    })
    .await?;
    d.put("slow.csv", &delimited(&rows("s", 120), ',')).await?;
    ensure!(d.sync().await?.enqueued == 1);
    let mut worker = d.worker_with(Arc::new(FaultyDestination::new(
        d.real_destination(),
        Fault::Slow(StdDuration::from_millis(1500)),
    )));
    worker.settings.batch_rows = 30;
    worker.settings.heartbeat_interval = StdDuration::from_secs(1);

    let messages = d.receive().await?;
    ensure!(messages.len() == 1);
    let import = d.deliver(&worker, &messages);
    let watch = async {
        // Well past the queue's visibility timeout, several times.
        let mut seen = 0;
        for _ in 0..5 {
            tokio::time::sleep(StdDuration::from_millis(1000)).await;
            seen += d.consumer.receive(10, 0).await?.len();
        }
        anyhow::Ok(seen)
    };
    let (response, seen) = tokio::join!(import, watch);
    let response = response?;
    ensure!(
        seen? == 0,
        "the message was delivered again during the import"
    );
    ensure!(response.batch_item_failures.is_empty());
    ensure!(d.file("slow.csv").await?.status == FileStatus::Imported);

    // The heartbeat stopped with the file: the message (not deleted here) comes back within
    // three intervals.
    tokio::time::sleep(StdDuration::from_secs(4)).await;
    let again = d.receive().await?;
    ensure!(
        again.len() == 1,
        "the heartbeat kept the message invisible after the file was done"
    );
    d.settle(&again, &d.deliver(&d.worker, &again).await?)
        .await?;
    Ok(())
}
