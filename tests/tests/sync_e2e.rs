//! The sync engine end to end on the emulator (DESIGN §3–§4): the lister and worker *handlers* — the code
//! Lambda runs — against a provisioned deployment (state table, records table, work queue with its DLQ,
//! output bucket) and a source bucket, with an injected clock.
//!
//! Each test builds its own [`Deployment`] under unique names, so tests run in parallel on the one moto
//! server this binary starts. What moto cannot do (set LastModified, report a multipart upload's start time)
//! is simulated through the clock or the state table; each such test says how.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration as StdDuration;

use anyhow::{ensure, Context, Result};
use async_trait::async_trait;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_s3::types::StorageClass;
use chrono::{DateTime, Duration, Utc};
use flate2::write::GzEncoder;
use flate2::Compression;
use futures::stream::{self, StreamExt, TryStreamExt};
use s3_importer_aws::destination::{error_report_key, output_key};
use s3_importer_core::config::vars;
use s3_importer_core::sink::{ErrorReportEntry, RejectSink, RowBatch, RowSink, SinkError};
use s3_importer_core::sync::lister::{self, ListerDeps};
use s3_importer_core::sync::ports::{
    ClaimOutcome, ConnectorStore, Destination, FileJob, FileLedger, LeaseStore, StateError,
    TemplateStore,
};
use s3_importer_core::sync::{
    Clock, ConnectorStatus, DestinationConfig, FileMessage, FileStatus, FileVersion, LedgerEntry,
    ObjectMeta, SkipReason, SyncRun,
};
use s3_importer_core::ErrorCode;
use s3_importer_tests::denials::{missing_keys_denied, Listing};
use s3_importer_tests::deployment::{request_id, Deployment, Fault, FaultyDestination, Options};
use s3_importer_tests::{s3_client, sqs_client};
use serde_json::json;

/// A CSV file of the default template: `id,qty` and one line per row.
fn csv(rows: &[(&str, i64)]) -> Vec<u8> {
    let mut out = String::from("id,qty\n");
    for (id, qty) in rows {
        out.push_str(&format!("{id},{qty}\n"));
    }
    out.into_bytes()
}

/// `n` rows `<prefix>-001,1` ...
fn numbered(prefix: &str, n: usize) -> Vec<(String, i64)> {
    (1..=n)
        .map(|i| (format!("{prefix}-{i:03}"), i as i64))
        .collect()
}

fn csv_owned(rows: &[(String, i64)]) -> Vec<u8> {
    let borrowed: Vec<(&str, i64)> = rows.iter().map(|(id, q)| (id.as_str(), *q)).collect();
    csv(&borrowed)
}

fn text(item: &HashMap<String, AttributeValue>, name: &str) -> String {
    match item.get(name) {
        Some(AttributeValue::S(s)) => s.clone(),
        Some(AttributeValue::N(n)) => n.clone(),
        other => format!("{other:?}"),
    }
}

/// The `id`s of the records, sorted.
fn ids(records: &BTreeMap<String, HashMap<String, AttributeValue>>) -> Vec<String> {
    let mut ids: Vec<String> = records.values().map(|item| text(item, "id")).collect();
    ids.sort();
    ids
}

fn statuses(files: &BTreeMap<String, Vec<LedgerEntry>>) -> BTreeMap<String, Vec<FileStatus>> {
    files
        .iter()
        .map(|(name, entries)| (name.clone(), entries.iter().map(|e| e.status).collect()))
        .collect()
}

/// LastModified of `key` as ListObjectsV2 reports it (what the lister sees).
async fn last_modified(d: &Deployment, key: &str) -> Result<DateTime<Utc>> {
    let out = s3_client(&d.sdk)
        .list_objects_v2()
        .bucket(&d.source_bucket)
        .prefix(key)
        .send()
        .await?;
    let object = out
        .contents()
        .iter()
        .find(|o| o.key() == Some(key))
        .with_context(|| format!("{key} not listed"))?;
    let at = object.last_modified().context("no LastModified")?;
    DateTime::from_timestamp(at.secs(), at.subsec_nanos()).context("LastModified out of range")
}

// ---------------------------------------------------------------------------------------------------------
// Discovery (DESIGN §3)
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn first_sync_imports_only_files_within_the_lookback() -> Result<()> {
    let d = Deployment::with(Options {
        env: vec![(vars::LOOKBACK_DAYS, "90".into())],
        ..Options::default()
    })
    .await?;
    // moto stamps objects with the time they are written, so two files cannot be 100 days apart. Instead:
    // write `old.csv`, then `new.csv` two seconds later, and move the clock to 90 days after the instant
    // between them. `old.csv` is then 90 days and ~1 s old (outside the lookback), `new.csv` 90 days minus
    // ~1 s old (inside): the same boundary a file from 100 days ago and one from yesterday straddle.
    d.put("old.csv", &csv(&[("old-1", 1)])).await?;
    tokio::time::sleep(StdDuration::from_millis(2100)).await;
    d.put("new.csv", &csv(&[("new-1", 1)])).await?;
    // Outside the connector's folder: never listed.
    d.put_key("elsewhere/other.csv", &csv(&[("other-1", 1)]), None)
        .await?;
    let old = last_modified(&d, &Deployment::key("old.csv")).await?;
    let new = last_modified(&d, &Deployment::key("new.csv")).await?;
    ensure!(new - old >= Duration::seconds(2), "old={old} new={new}");
    let between = old + (new - old) / 2;
    d.clock.advance(between + Duration::days(90) - Utc::now());

    let run = d.sync().await?;

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
    let files = d.files().await?;
    assert_eq!(
        statuses(&files),
        BTreeMap::from([("new.csv".to_owned(), vec![FileStatus::Queued])]),
        "a file outside the lookback leaves no ledger entry"
    );
    let drained = d.drain().await?;
    assert_eq!((drained.delivered, drained.acked), (1, 1));
    assert_eq!(ids(&d.records().await?), ["new-1"]);
    Ok(())
}

#[tokio::test]
async fn next_sync_imports_only_new_versions_and_an_unchanged_bucket_enqueues_nothing() -> Result<()>
{
    let d = Deployment::new().await?;
    d.put("a.csv", &csv(&[("a-1", 1), ("a-2", 2)])).await?;
    let first = d.sync().await?;
    assert_eq!((first.new, first.enqueued), (1, 1));
    assert_eq!(d.drain().await?.acked, 1);

    d.put("b.csv", &csv(&[("b-1", 1)])).await?;
    let second = d.sync().await?;
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
    assert_eq!(d.drain().await?.acked, 1);

    let third = d.sync().await?;
    assert_eq!(
        (third.listed, third.new, third.enqueued, third.already_known),
        (2, 0, 0, 2),
        "nothing changed: {third:#?}"
    );
    assert_eq!(
        d.queue_depth().await?,
        (0, 0),
        "an unchanged bucket enqueues nothing"
    );
    assert_eq!(d.drain().await?.delivered, 0);
    assert_eq!(ids(&d.records().await?), ["a-1", "a-2", "b-1"]);
    let files = d.files().await?;
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
async fn late_visible_file_inside_the_overlap_is_imported() -> Result<()> {
    // A multipart upload's LastModified is its *start*: it becomes visible after files that started later,
    // whose LastModified already moved the watermark past it. moto stamps the completion time instead, so
    // lateness is simulated the other way round: the watermark is moved ahead of the emulator's clock (as if a
    // file stamped then had been seen) and the late file is written now, i.e. *before* the watermark.
    let d = Deployment::new().await?;
    d.put("first.csv", &csv(&[("first-1", 1)])).await?;
    assert_eq!(d.sync().await?.enqueued, 1);
    assert_eq!(d.drain().await?.acked, 1);

    // Watermark 5 minutes ahead: the late file's LastModified is 5 minutes older than the watermark, inside
    // the 15-minute overlap, so it is still a candidate.
    d.state
        .advance_watermark(&d.connector.id, Utc::now() + Duration::minutes(5))
        .await?;
    d.put("late.csv", &csv(&[("late-1", 1)])).await?;
    let run = d.sync().await?;
    assert_eq!(
        (run.candidates, run.new, run.enqueued, run.already_known),
        (2, 1, 1, 1),
        "{run:#?}"
    );
    assert_eq!(d.drain().await?.acked, 1);
    assert_eq!(d.file("late.csv").await?.status, FileStatus::Imported);

    // Watermark an hour ahead: a file 1 hour older than the watermark is outside the overlap and, by
    // design, not considered (the overlap bounds how late a file may become visible).
    d.state
        .advance_watermark(&d.connector.id, Utc::now() + Duration::hours(1))
        .await?;
    d.put("too-late.csv", &csv(&[("too-late-1", 1)])).await?;
    let run = d.sync().await?;
    assert_eq!(
        (run.listed, run.candidates, run.new, run.enqueued),
        (3, 0, 0, 0),
        "{run:#?}"
    );
    assert!(!d.files().await?.contains_key("too-late.csv"));
    assert_eq!(ids(&d.records().await?), ["first-1", "late-1"]);
    Ok(())
}

#[tokio::test]
async fn overwritten_key_is_imported_again_unchanged_key_is_not() -> Result<()> {
    let d = Deployment::new().await?;
    let a_v1 = d.put("a.csv", &csv(&[("a-1", 1)])).await?;
    let b_v1 = d.put("b.csv", &csv(&[("b-1", 1)])).await?;
    assert_eq!(d.sync().await?.enqueued, 2);
    assert_eq!(d.drain().await?.acked, 2);

    // a.csv gets new content (a new ETag); b.csv is rewritten with the same bytes (same ETag).
    let a_v2 = d.put("a.csv", &csv(&[("a-1", 10), ("a-2", 20)])).await?;
    let b_again = d.put("b.csv", &csv(&[("b-1", 1)])).await?;
    assert_ne!(a_v1, a_v2);
    assert_eq!(b_v1, b_again, "identical bytes keep the ETag");

    let run = d.sync().await?;
    assert_eq!(
        (run.new, run.enqueued, run.already_known),
        (1, 1, 1),
        "{run:#?}"
    );
    assert_eq!(d.drain().await?.acked, 1);

    let files = d.files().await?;
    let a_versions: BTreeSet<(String, FileStatus)> = files["a.csv"]
        .iter()
        .map(|e| (e.version.etag.clone(), e.status))
        .collect();
    assert_eq!(
        a_versions,
        BTreeSet::from([
            (a_v1.clone(), FileStatus::Imported),
            (a_v2.clone(), FileStatus::Imported)
        ])
    );
    assert_eq!(files["b.csv"].len(), 1);

    let records = d.records().await?;
    assert_eq!(ids(&records), ["a-1", "a-2", "b-1"]);
    let a1 = &records[&d.pk("a-1")];
    assert_eq!(
        (text(a1, "qty"), text(a1, "_source_etag")),
        ("10".to_owned(), a_v2.clone()),
        "the new version's row replaced the old one"
    );
    assert_eq!(text(&records[&d.pk("b-1")], "_source_etag"), b_v1);
    Ok(())
}

#[tokio::test]
async fn concurrent_listers_enqueue_each_version_once() -> Result<()> {
    let d = Deployment::new().await?;
    let names: Vec<String> = (0..12).map(|i| format!("f{i:02}.csv")).collect();
    for (i, name) in names.iter().enumerate() {
        d.put(name, &csv(&[(&format!("row-{i}"), 1)])).await?;
    }

    // Two overlapping schedule firings (different request ids, so different lease owners). Whichever
    // takes the connector's sync lease second either finds it held ("busy") or, if the first already
    // finished, finds every version claimed.
    let event = || json!({ "connector": d.connector.name });
    let (one, two) = tokio::join!(
        s3_importer_lister::handle(&d.lister, event(), "lister-one"),
        s3_importer_lister::handle(&d.lister, event(), "lister-two")
    );
    let results: Vec<_> = [one?, two?]
        .into_iter()
        .flat_map(|r| r.connectors)
        .collect();
    let enqueued: u64 = results
        .iter()
        .filter_map(|r| r.run.as_ref())
        .map(|r| r.enqueued)
        .sum();
    assert_eq!(enqueued, 12, "{results:#?}");
    assert!(
        results
            .iter()
            .all(|r| r.outcome == "ran" || r.outcome == "busy"),
        "{results:#?}"
    );

    let messages = d.receive().await?;
    let versions: BTreeSet<String> = messages
        .iter()
        .map(|m| serde_json::from_str::<FileMessage>(&m.body).map(|f| f.version.file_id()))
        .collect::<Result<_, _>>()?;
    assert_eq!(messages.len(), 12, "one message per file version");
    assert_eq!(versions.len(), 12);
    Ok(())
}

/// Grants every sync lease, so two listers really run over one connector at the same time and only the
/// ledger's conditional claims keep them from sending a version twice.
struct NoSyncLease;

#[tokio::test]
async fn without_the_sync_lease_concurrent_listers_still_claim_each_version_once() -> Result<()> {
    let d = Deployment::new().await?;
    for i in 0..25 {
        d.put(&format!("f{i:02}.csv"), &csv(&[(&format!("row-{i}"), 1)]))
            .await?;
    }
    // The ledger here is the in-memory store, whose conditional writes are atomic as DynamoDB's are: moto
    // checks a condition and writes without a lock, so racing claims on moto can both "win" (see
    // infra/local/README.md). Listing and sending still go to the emulator's S3 and SQS.
    let memory = Arc::new(s3_importer_core::sync::memory::MemoryStateStore::new());
    let stored = d
        .lister
        .deps
        .templates
        .get_template(&d.connector.template_id, None)
        .await?
        .ok_or_else(|| anyhow::anyhow!("template not stored"))?;
    memory
        .put_template(
            &stored.id,
            &stored.source,
            &stored.template,
            stored.created_at,
        )
        .await?;
    memory.create_connector(&d.connector).await?;
    let deps = ListerDeps {
        leases: Arc::new(NoSyncLease),
        ..ListerDeps::new(
            memory,
            d.lister.deps.source.clone(),
            d.lister.deps.queue.clone(),
            d.lister.deps.clock.clone(),
        )
    };
    let mut one = d.lister.settings.clone();
    one.owner = "lister-one".into();
    let mut two = d.lister.settings.clone();
    two.owner = "lister-two".into();
    let connector = d.connector_now().await?;

    let (a, b) = tokio::join!(
        lister::sync_connector(&deps, &one, &connector),
        lister::sync_connector(&deps, &two, &connector)
    );
    let run = |o: lister::SyncOutcome| match o {
        lister::SyncOutcome::Ran(run) => Ok(run),
        other => Err(anyhow::anyhow!("did not run: {other:?}")),
    };
    let (a, b): (SyncRun, SyncRun) = (run(a)?, run(b)?);
    assert_eq!(a.enqueued + b.enqueued, 25, "a={a:#?} b={b:#?}");
    assert_eq!(a.new + b.new, 25);
    assert_eq!(d.receive().await?.len(), 25);
    Ok(())
}

#[tokio::test]
async fn sync_lists_every_page_and_enqueues_each_of_1005_files_once() -> Result<()> {
    // More than one ListObjectsV2 page (1000), more than one BatchGetItem (100), many SendMessageBatch (10).
    let d = Deployment::new().await?;
    let body = csv(&[("x", 1)]);
    stream::iter(0..1005)
        .map(|i| {
            let (d, body) = (&d, &body);
            async move { d.put(&format!("f{i:04}.csv"), body).await }
        })
        .buffer_unordered(16)
        .try_collect::<Vec<_>>()
        .await?;

    let run = d.sync().await?;
    assert_eq!(
        (run.listed, run.candidates, run.new, run.enqueued),
        (1005, 1005, 1005, 1005),
        "{run:#?}"
    );
    assert_eq!(d.queue_depth().await?, (1005, 0));
    let again = d.sync().await?;
    assert_eq!(
        (again.listed, again.already_known, again.enqueued),
        (1005, 1005, 0),
        "{again:#?}"
    );
    assert_eq!(d.queue_depth().await?, (1005, 0));
    Ok(())
}

#[tokio::test]
async fn sync_of_a_missing_bucket_records_the_error_and_marks_the_connector_broken() -> Result<()> {
    let d = Deployment::new().await?;
    s3_client(&d.sdk)
        .delete_bucket()
        .bucket(&d.source_bucket)
        .send()
        .await?;
    let run = d.sync().await?;
    let error = run.error.clone().unwrap_or_default();
    assert!(
        error.contains(&d.source_bucket),
        "the run names the bucket: {run:#?}"
    );
    assert_eq!(
        (run.listed, run.enqueued, run.watermark_after),
        (0, 0, None)
    );
    match d.connector_now().await?.status {
        ConnectorStatus::Broken { reason } => {
            assert!(reason.contains("does not exist"), "{reason}")
        }
        other => panic!("the connector should be broken, is {other:?}"),
    }
    let again = s3_importer_lister::handle(
        &d.lister,
        json!({ "connector": d.connector.name }),
        &request_id("lister"),
    )
    .await?;
    assert_eq!(
        again.connectors[0].outcome, "not_active",
        "a broken connector is not synced"
    );
    Ok(())
}

#[tokio::test]
async fn oversize_archived_and_unsupported_files_are_skipped_with_the_reason() -> Result<()> {
    let d = Deployment::with(Options {
        env: vec![(vars::MAX_FILE_BYTES, "100".into())],
        ..Options::default()
    })
    .await?;
    let big = csv_owned(&numbered("big", 20));
    assert!(big.len() > 100);
    d.put("big.csv", &big).await?;
    d.put_key(
        &Deployment::key("cold.csv"),
        &csv(&[("cold-1", 1)]),
        Some(StorageClass::Glacier),
    )
    .await?;
    d.put("notes.txt", b"not data").await?;
    d.put("ok.csv", &csv(&[("ok-1", 1)])).await?;
    d.put("sub/", b"").await?; // a folder marker: ignored, never recorded

    let run = d.sync().await?;
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
    let reasons: BTreeMap<String, (FileStatus, Option<SkipReason>)> = d
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
    let drained = d.drain().await?;
    assert_eq!((drained.delivered, drained.acked), (1, 1));
    assert_eq!(ids(&d.records().await?), ["ok-1"]);
    // Skipped stays skipped: the next sync does not reconsider them.
    assert_eq!(d.sync().await?.enqueued, 0);
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Import (DESIGN §4)
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn duplicate_delivery_imports_once() -> Result<()> {
    let d = Deployment::new().await?;
    let rows = numbered("dup", 5);
    d.put("dup.csv", &csv_owned(&rows)).await?;
    assert_eq!(d.sync().await?.enqueued, 1);

    // The original message, and a copy of it (SQS at-least-once: the same body delivered twice).
    let original = d.receive().await?;
    assert_eq!(original.len(), 1);
    sqs_client(&d.sdk)
        .send_message()
        .queue_url(&d.provisioned.queue_url)
        .message_body(&original[0].body)
        .send()
        .await?;

    // The worker imports it, but the delete is lost (the invocation timed out just after): the original
    // comes back once its visibility timeout passes.
    let response = d.deliver(&d.worker, &original).await?;
    assert!(response.batch_item_failures.is_empty());
    d.expire_visibility(&original).await?;

    let drained = d.drain().await?;
    assert_eq!(
        (drained.delivered, drained.acked),
        (2, 2),
        "both the redelivery and the copy are acked"
    );
    assert_eq!(d.queue_depth().await?, (0, 0));

    let records = d.records().await?;
    assert_eq!(records.len(), 5, "each row exactly once");
    assert_eq!(
        ids(&records),
        rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>()
    );
    let entry = d.file("dup.csv").await?;
    assert_eq!(
        (entry.status, entry.attempts, entry.rows_imported),
        (FileStatus::Imported, 1, 5),
        "imported once: {entry:#?}"
    );
    Ok(())
}

#[tokio::test]
async fn worker_crash_mid_file_then_redelivery_imports_every_row_once() -> Result<()> {
    let d = Deployment::new().await?;
    let rows = numbered("crash", 50);
    d.put("crash.csv", &csv_owned(&rows)).await?;
    assert_eq!(d.sync().await?.enqueued, 1);

    // The worker writes 20 rows, then is killed (its future dropped mid-write): no ack, no ledger update.
    let crashing = d.worker_with(Arc::new(FaultyDestination::new(
        d.real_destination(),
        Fault::HangAfter(20),
    )));
    let first = d.receive().await?;
    assert_eq!(first.len(), 1);
    let crashed =
        tokio::time::timeout(StdDuration::from_secs(3), d.deliver(&crashing, &first)).await;
    assert!(
        crashed.is_err(),
        "the worker should still be running when killed"
    );
    assert_eq!(
        d.records().await?.len(),
        20,
        "rows written before the crash stay"
    );
    let entry = d.file("crash.csv").await?;
    assert_eq!((entry.status, entry.attempts), (FileStatus::Processing, 1));

    // The message comes back while the dead worker's lease is live: handed back to retry later.
    d.expire_visibility(&first).await?;
    let second = d.receive().await?;
    let response = d.deliver(&d.worker, &second).await?;
    assert_eq!(
        response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect::<Vec<_>>(),
        [second[0].message_id.clone()]
    );
    d.settle(&second, &response).await?;
    d.expire_visibility(&second).await?;

    // Once the lease (15 minutes without a Lambda deadline) has run out, the redelivery takes over.
    d.clock.advance(Duration::minutes(16));
    let drained = d.drain().await?;
    assert_eq!((drained.delivered, drained.acked), (1, 1));

    let records = d.records().await?;
    assert_eq!(records.len(), 50, "every row exactly once");
    assert_eq!(
        ids(&records),
        rows.iter().map(|r| r.0.clone()).collect::<Vec<_>>()
    );
    for (i, (id, qty)) in rows.iter().enumerate() {
        let item = &records[&d.pk(id)];
        assert_eq!(
            (text(item, "qty"), text(item, "_source_row")),
            (qty.to_string(), (i + 1).to_string())
        );
    }
    let entry = d.file("crash.csv").await?;
    assert_eq!(
        (entry.status, entry.attempts, entry.rows_imported),
        (FileStatus::Imported, 2, 50),
        "{entry:#?}"
    );
    Ok(())
}

#[tokio::test]
async fn malformed_file_fails_with_positioned_reason_and_is_not_retried() -> Result<()> {
    let d = Deployment::new().await?;
    // A JSON array cut off in its second element.
    d.put(
        "truncated.json",
        b"[\n  {\"id\": \"t-1\", \"qty\": 1},\n  {\"id\": \"t-2\", \"qty\": ",
    )
    .await?;
    // A CSV without the required `qty` column.
    d.put("no-qty.csv", b"id\nn-1\n").await?;
    assert_eq!(d.sync().await?.enqueued, 2);

    let drained = d.drain().await?;
    assert_eq!(
        (drained.delivered, drained.acked, drained.retried.len()),
        (2, 2, 0),
        "permanent failures are acked, not retried"
    );

    let truncated = d.file("truncated.json").await?;
    assert_eq!(truncated.status, FileStatus::Failed);
    let reason = truncated.error.clone().unwrap_or_default();
    assert!(
        reason.contains("line 3") && reason.contains("byte"),
        "the reason names the line and byte: {reason}"
    );
    let no_qty = d.file("no-qty.csv").await?;
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

    assert_eq!(d.drain().await?.delivered, 0, "nothing comes back");
    assert_eq!(d.queue_depth().await?, (0, 0));
    assert_eq!(d.dead_letter_depth().await?, (0, 0));
    assert_eq!(d.sync().await?.enqueued, 0, "a failed file is not re-sent");
    Ok(())
}

#[tokio::test]
async fn file_with_bad_rows_is_imported_with_an_error_report_naming_line_and_column() -> Result<()>
{
    let d = Deployment::new().await?;
    let etag = d
        .put(
            "rows.csv",
            b"id,qty\nr-1,1\nr-2,not-a-number\nr-3,\nr-4,-5\nr-5,5\n",
        )
        .await?;
    assert_eq!(d.sync().await?.enqueued, 1);
    assert_eq!(d.drain().await?.acked, 1);

    let entry = d.file("rows.csv").await?;
    assert_eq!(
        (entry.status, entry.rows_imported, entry.rows_rejected),
        (FileStatus::Imported, 2, 3),
        "{entry:#?}"
    );
    let location = entry.error_report.clone().context("no error report")?;
    assert_eq!(
        location,
        format!(
            "s3://{}/{}",
            d.provisioned.names.output_bucket,
            error_report_key(&d.connector.id, &Deployment::key("rows.csv"), &etag)
        )
    );
    let report = d.read_output(&location).await?;
    let entries: Vec<ErrorReportEntry> = String::from_utf8(report)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let summary: Vec<(u64, u64, Option<&str>, ErrorCode)> = entries
        .iter()
        .map(|e| (e.record, e.line, e.column.as_deref(), e.code))
        .collect();
    assert_eq!(
        summary,
        [
            (2, 3, Some("qty"), ErrorCode::InvalidInteger),
            (3, 4, Some("qty"), ErrorCode::NullValue),
            (4, 5, Some("qty"), ErrorCode::ConstraintViolated),
        ]
    );
    assert!(
        entries.iter().all(|e| !e.message.contains("not-a-number")),
        "the report never holds values: {entries:#?}"
    );
    assert_eq!(ids(&d.records().await?), ["r-1", "r-5"]);
    Ok(())
}

#[tokio::test]
async fn failing_destination_write_makes_the_message_come_back() -> Result<()> {
    let d = Deployment::new().await?;
    d.put("flaky.csv", &csv(&[("f-1", 1), ("f-2", 2), ("f-3", 3)]))
        .await?;
    assert_eq!(d.sync().await?.enqueued, 1);

    // The records table throttles after the first row.
    let throttled = d.worker_with(Arc::new(FaultyDestination::new(
        d.real_destination(),
        Fault::TransientAfter(1),
    )));
    let messages = d.receive().await?;
    let response = d.deliver(&throttled, &messages).await?;
    assert_eq!(
        response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect::<Vec<_>>(),
        [messages[0].message_id.clone()],
        "the batch response lists the message"
    );
    d.settle(&messages, &response).await?;
    assert_eq!(
        d.queue_depth().await?,
        (0, 1),
        "still on the queue, invisible"
    );
    let entry = d.file("flaky.csv").await?;
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

    // After the visibility timeout the message comes back; the table works again.
    d.expire_visibility(&messages).await?;
    let drained = d.drain().await?;
    assert_eq!((drained.delivered, drained.acked), (1, 1));
    assert_eq!(ids(&d.records().await?), ["f-1", "f-2", "f-3"]);
    let entry = d.file("flaky.csv").await?;
    assert_eq!(
        (entry.status, entry.attempts, entry.rows_imported),
        (FileStatus::Imported, 2, 3)
    );
    Ok(())
}

#[tokio::test]
async fn keys_with_spaces_plus_percent_unicode_and_1000_bytes_are_imported_and_reported(
) -> Result<()> {
    let d = Deployment::new().await?;
    let long = format!(
        "long-{}.csv",
        "x".repeat(1000 - Deployment::key("long-.csv").len())
    );
    assert_eq!(Deployment::key(&long).len(), 1000);
    let names = [
        "with space.csv".to_owned(),
        "plus+sign.csv".to_owned(),
        "percent%20literal.csv".to_owned(),
        "ünïcødé 日本 🚀.csv".to_owned(),
        long,
    ];
    for (i, name) in names.iter().enumerate() {
        // One good row and one bad one, so each file has an error report too.
        d.put(name, format!("id,qty\nk-{i},1\nbad-{i},x\n").as_bytes())
            .await?;
    }
    assert_eq!(d.sync().await?.enqueued, 5);
    let drained = d.drain().await?;
    assert_eq!((drained.delivered, drained.acked), (5, 5));

    let files = d.files().await?;
    assert_eq!(
        files.keys().cloned().collect::<BTreeSet<_>>(),
        names.iter().cloned().collect::<BTreeSet<_>>()
    );
    let records = d.records().await?;
    assert_eq!(records.len(), 5);
    for (i, name) in names.iter().enumerate() {
        let entry = d.file(name).await?;
        assert_eq!(
            (entry.status, entry.rows_imported, entry.rows_rejected),
            (FileStatus::Imported, 1, 1),
            "{name}: {entry:#?}"
        );
        let report = d
            .read_output(entry.error_report.as_deref().context("no error report")?)
            .await?;
        assert_eq!(String::from_utf8(report)?.lines().count(), 1, "{name}");
        let item = &records[&d.pk(&format!("k-{i}"))];
        assert_eq!(
            text(item, "_source_key"),
            Deployment::key(name),
            "lineage keeps the exact key"
        );
    }
    Ok(())
}

#[tokio::test]
async fn gzip_files_are_imported_by_extension_and_by_content_encoding() -> Result<()> {
    let d = Deployment::new().await?;
    let gzip = |bytes: &[u8]| -> Result<Vec<u8>> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(bytes)?;
        Ok(encoder.finish()?)
    };
    d.put("by-name.csv.gz", &gzip(&csv(&[("gz-1", 1), ("gz-2", 2)]))?)
        .await?;
    d.put("by-name.jsonl.gz", &gzip(b"{\"id\":\"gz-3\",\"qty\":3}\n")?)
        .await?;
    s3_client(&d.sdk)
        .put_object()
        .bucket(&d.source_bucket)
        .key(Deployment::key("by-header.csv"))
        .content_encoding("gzip")
        .body(gzip(&csv(&[("gz-4", 4)]))?.into())
        .send()
        .await?;
    assert_eq!(d.sync().await?.enqueued, 3);
    assert_eq!(d.drain().await?.acked, 3);
    let files = d.files().await?;
    assert!(
        files
            .values()
            .flatten()
            .all(|e| e.status == FileStatus::Imported),
        "{files:#?}"
    );
    assert_eq!(ids(&d.records().await?), ["gz-1", "gz-2", "gz-3", "gz-4"]);
    Ok(())
}

#[tokio::test]
async fn s3_jsonl_destination_gets_one_object_per_file_version() -> Result<()> {
    let d = Deployment::new().await?;
    let mut connector = d.connector_now().await?;
    connector.destination = DestinationConfig::S3Jsonl {
        bucket: d.provisioned.names.output_bucket.clone(),
        prefix: "rows".into(),
    };
    d.state.update_connector(&connector).await?;
    let etag = d.put("a.csv", &csv(&[("a-1", 1), ("a-2", 2)])).await?;
    assert_eq!(d.sync().await?.enqueued, 1);
    // Delivered twice (the first delete lost): the object is rewritten whole, not appended to.
    let messages = d.receive().await?;
    d.deliver(&d.worker, &messages).await?;
    d.expire_visibility(&messages).await?;
    assert_eq!(d.drain().await?.acked, 1);

    let location = format!(
        "s3://{}/{}",
        d.provisioned.names.output_bucket,
        output_key("rows", &d.connector.id, &Deployment::key("a.csv"), &etag)
    );
    let body = String::from_utf8(d.read_output(&location).await?)?;
    let rows: Vec<serde_json::Value> = body
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    assert_eq!(
        rows,
        [
            json!({"id": "a-1", "qty": 1}),
            json!({"id": "a-2", "qty": 2})
        ]
    );
    assert!(
        d.records().await?.is_empty(),
        "nothing in the records table"
    );
    Ok(())
}

#[tokio::test]
async fn key_overwritten_before_it_is_read_is_superseded_and_the_new_version_imported() -> Result<()>
{
    let d = Deployment::new().await?;
    let v1 = d.put("a.csv", &csv(&[("a-1", 1), ("old-only", 1)])).await?;
    assert_eq!(d.sync().await?.enqueued, 1);
    // Overwritten while its message waits: the worker's read is pinned to the listed ETag (If-Match).
    let v2 = d.put("a.csv", &csv(&[("a-1", 2)])).await?;
    let drained = d.drain().await?;
    assert_eq!((drained.delivered, drained.acked), (1, 1));
    assert!(
        d.records().await?.is_empty(),
        "nothing of the stale version is written"
    );

    assert_eq!(
        d.sync().await?.enqueued,
        1,
        "the new version is its own entry"
    );
    assert_eq!(d.drain().await?.acked, 1);
    let files = d.files().await?;
    let versions: BTreeSet<(String, FileStatus)> = files["a.csv"]
        .iter()
        .map(|e| (e.version.etag.clone(), e.status))
        .collect();
    assert_eq!(
        versions,
        BTreeSet::from([
            (v1, FileStatus::Superseded),
            (v2.clone(), FileStatus::Imported)
        ])
    );
    let records = d.records().await?;
    assert_eq!(ids(&records), ["a-1"]);
    assert_eq!(text(&records[&d.pk("a-1")], "_source_etag"), v2);
    Ok(())
}

#[tokio::test]
async fn file_deleted_before_it_is_read_is_gone() -> Result<()> {
    let d = Deployment::new().await?;
    d.put("a.csv", &csv(&[("a-1", 1)])).await?;
    assert_eq!(d.sync().await?.enqueued, 1);
    s3_client(&d.sdk)
        .delete_object()
        .bucket(&d.source_bucket)
        .key(Deployment::key("a.csv"))
        .send()
        .await?;
    let drained = d.drain().await?;
    assert_eq!((drained.delivered, drained.acked), (1, 1));
    assert_eq!(d.file("a.csv").await?.status, FileStatus::Gone);
    assert!(d.records().await?.is_empty());
    Ok(())
}

/// A worker whose role may not list the bucket (or only under a prefix condition a GetObject does not meet) gets
/// 403, not 404, for a deleted key: a ListObjectsV2 of the key tells a deleted file (`gone`) from a refused read;
/// when that listing is refused too, the file is `failed` saying why.
#[tokio::test]
async fn deleted_file_answered_access_denied_is_gone_when_the_listing_says_so() -> Result<()> {
    for listing in [Listing::Allowed, Listing::Refused] {
        let d = Deployment::new().await?;
        d.put("a.csv", &csv(&[("a-1", 1)])).await?;
        assert_eq!(d.sync().await?.enqueued, 1);
        s3_client(&d.sdk)
            .delete_object()
            .bucket(&d.source_bucket)
            .key(Deployment::key("a.csv"))
            .send()
            .await?;
        let clock: Arc<dyn Clock> = d.clock.clone();
        let worker = s3_importer_worker::Worker::from_config(
            &d.config,
            &missing_keys_denied(&d.sdk, listing),
            clock,
        );
        let drained = d.drain_with(&worker).await?;
        assert_eq!((drained.delivered, drained.acked), (1, 1), "{listing:?}");
        let entry = d.file("a.csv").await?;
        match listing {
            Listing::Allowed => assert_eq!(entry.status, FileStatus::Gone, "{entry:#?}"),
            Listing::Refused => {
                assert_eq!(entry.status, FileStatus::Failed, "{entry:#?}");
                let error = entry.error.unwrap_or_default();
                assert!(
                    error.contains("access denied")
                        && error.contains("s3:ListBucket")
                        && error.contains("still exists is unknown"),
                    "{error}"
                );
            }
        }
        assert!(d.records().await?.is_empty());
    }
    Ok(())
}

/// The same worker reads files that exist: the 403 answer is only for missing keys.
#[tokio::test]
async fn a_worker_that_cannot_list_still_imports_existing_files() -> Result<()> {
    let d = Deployment::new().await?;
    d.put("a.csv", &csv(&[("a-1", 1), ("a-2", 2)])).await?;
    assert_eq!(d.sync().await?.enqueued, 1);
    let clock: Arc<dyn Clock> = d.clock.clone();
    let worker = s3_importer_worker::Worker::from_config(
        &d.config,
        &missing_keys_denied(&d.sdk, Listing::Refused),
        clock,
    );
    let drained = d.drain_with(&worker).await?;
    assert_eq!((drained.delivered, drained.acked), (1, 1));
    assert_eq!(d.file("a.csv").await?.status, FileStatus::Imported);
    assert_eq!(d.records().await?.len(), 2);
    Ok(())
}

#[tokio::test]
async fn message_that_keeps_failing_moves_to_the_dead_letter_queue() -> Result<()> {
    let d = Deployment::with(Options {
        max_receive_count: 2,
        ..Options::default()
    })
    .await?;
    d.put("a.csv", &csv(&[("a-1", 1)])).await?;
    assert_eq!(d.sync().await?.enqueued, 1);
    let broken = d.worker_with(Arc::new(FaultyDestination::new(
        d.real_destination(),
        Fault::TransientAfter(0),
    )));
    for attempt in 1..=2 {
        let messages = d.receive().await?;
        assert_eq!(messages.len(), 1, "receive {attempt}");
        let response = d.deliver(&broken, &messages).await?;
        assert_eq!(d.settle(&messages, &response).await?.len(), 1);
        d.expire_visibility(&messages).await?;
    }
    // The receive after the second moves it to the DLQ, where status and alarms see it.
    assert!(d.receive().await?.is_empty());
    assert_eq!(d.queue_depth().await?, (0, 0));
    assert_eq!(d.dead_letter_depth().await?, (1, 0));
    let entry = d.file("a.csv").await?;
    assert_eq!((entry.status, entry.attempts), (FileStatus::Queued, 2));
    assert!(
        entry.error.is_some(),
        "the last transient error is kept: {entry:#?}"
    );
    assert_eq!(
        d.sync().await?.enqueued,
        0,
        "a queued file is never re-sent by the lister"
    );
    assert!(d.records().await?.is_empty());
    Ok(())
}

#[tokio::test]
async fn file_claimed_by_a_lister_that_died_before_sending_is_sent_by_a_later_sync() -> Result<()> {
    let d = Deployment::new().await?;
    let etag = d.put("a.csv", &csv(&[("a-1", 1)])).await?;
    let key = Deployment::key("a.csv");
    let object = ObjectMeta {
        key: key.clone(),
        etag: etag.clone(),
        size: csv(&[("a-1", 1)]).len() as u64,
        last_modified: last_modified(&d, &key).await?,
        storage_class: None,
        restored: false,
    };
    let version = FileVersion {
        connector_id: d.connector.id.clone(),
        bucket: d.source_bucket.clone(),
        key,
        etag,
        version_id: None,
    };
    // The dead lister's claim: the entry exists, no message was sent.
    let claimed = LedgerEntry::discovered(version, &object, d.clock.now());
    assert_eq!(d.state.claim_file(&claimed).await?, ClaimOutcome::Claimed);

    let run = d.sync().await?;
    assert_eq!(
        (run.already_known, run.resent, run.enqueued),
        (1, 0, 0),
        "a fresh claim may belong to a lister still running: {run:#?}"
    );
    d.clock.advance(Duration::minutes(6));
    let run = d.sync().await?;
    assert_eq!((run.resent, run.enqueued), (1, 1), "{run:#?}");
    assert_eq!(d.drain().await?.acked, 1);
    assert_eq!(d.file("a.csv").await?.status, FileStatus::Imported);
    assert_eq!(d.sync().await?.enqueued, 0, "sent once");
    assert_eq!(ids(&d.records().await?), ["a-1"]);
    Ok(())
}

/// A destination whose row writes take `delay` each and are only counted (per record number), for files
/// that take longer than an invocation.
struct SlowDestination {
    rejects: Arc<dyn Destination>,
    delay: StdDuration,
    written: Arc<Mutex<BTreeMap<u64, u32>>>,
}

struct SlowSink {
    delay: StdDuration,
    written: Arc<Mutex<BTreeMap<u64, u32>>>,
}

#[async_trait]
impl Destination for SlowDestination {
    async fn open_rows(&self, _job: &FileJob) -> Result<Box<dyn RowSink>, SinkError> {
        Ok(Box::new(SlowSink {
            delay: self.delay,
            written: self.written.clone(),
        }))
    }
    async fn open_rejects(&self, job: &FileJob) -> Result<Box<dyn RejectSink>, SinkError> {
        self.rejects.open_rejects(job).await
    }
}

#[async_trait]
impl RowSink for SlowSink {
    async fn write_batch(&mut self, batch: &RowBatch) -> Result<(), SinkError> {
        tokio::time::sleep(self.delay).await;
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        for (position, _) in batch.iter() {
            *written.entry(position.record).or_default() += 1;
        }
        Ok(())
    }
    async fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

#[tokio::test]
async fn long_file_is_checkpointed_before_the_deadline_and_continued_in_a_new_message() -> Result<()>
{
    // DESIGN §4.7: before the invocation's deadline the worker checkpoints (byte offset, row, header) and
    // continues in a new message with a ranged GET; N pieces give exactly the output of one pass.
    let d = Deployment::new().await?;
    let rows = numbered("long", 16_000);
    d.put("long.csv", &csv_owned(&rows)).await?;
    assert_eq!(d.sync().await?.enqueued, 1);
    let written = Arc::new(Mutex::new(BTreeMap::new()));
    // 8 batches of 2,000 rows at 4 s each: 32 s of work for an invocation with 21 s left.
    let slow = d.worker_with(Arc::new(SlowDestination {
        rejects: d.real_destination(),
        delay: StdDuration::from_secs(4),
        written: written.clone(),
    }));

    let messages = d.receive().await?;
    let event = s3_importer_tests::deployment::sqs_event(&messages)?;
    let left = StdDuration::from_secs(21);
    let deadline = d.clock.now() + Duration::from_std(left)?;
    let started = std::time::Instant::now();
    let response =
        s3_importer_worker::handle(&slow, event, Some(deadline), &request_id("worker")).await;
    let took = started.elapsed();
    assert!(
        took < left,
        "the invocation ran {took:?}, past its deadline {left:?} away: Lambda would have killed it"
    );
    d.settle(&messages, &response).await?;

    // The continuation(s) finish the file.
    let drained = d.drain_with(&slow).await?;
    assert!(drained.acked >= 1, "{drained:?}");
    let written = written.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(written.len(), 16_000, "every row");
    assert!(written.values().all(|&n| n == 1), "each row once");
    let entry = d.file("long.csv").await?;
    assert_eq!(
        (entry.status, entry.rows_imported),
        (FileStatus::Imported, 16_000)
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// The handlers' event contracts
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn lister_and_worker_handlers_accept_real_event_json() -> Result<()> {
    let d = Deployment::new().await?;
    d.put("a.csv", &csv(&[("a-1", 1)])).await?;

    // EventBridge Scheduler (ScheduleV2 without Input) sends `{}`; a scheduled EventBridge rule sends its
    // envelope. Either syncs every active connector.
    let scheduled_rule: serde_json::Value = serde_json::from_str(
        r#"{
            "version": "0",
            "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": "2024-05-01T16:53:06Z",
            "region": "us-east-1",
            "resources": ["arn:aws:events:us-east-1:123456789012:rule/s3-importer-schedule"],
            "detail": {}
        }"#,
    )?;
    for event in [json!({}), scheduled_rule] {
        let response = s3_importer_lister::handle(&d.lister, event, &request_id("lister")).await?;
        assert_eq!(response.connectors.len(), 1);
        assert_eq!(response.connectors[0].connector, d.connector.name);
        assert_eq!(response.connectors[0].outcome, "ran");
    }
    let messages = d.receive().await?;
    assert_eq!(messages.len(), 1, "the second firing found nothing new");

    // The SQS event exactly as Lambda delivers it, with one real message and one that is not ours.
    let event_json = json!({
        "Records": [
            {
                "messageId": messages[0].message_id,
                "receiptHandle": messages[0].receipt_handle,
                "body": messages[0].body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1545082649183",
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": "1545082649185"
                },
                "messageAttributes": {},
                "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:s3-importer-work",
                "awsRegion": "us-east-1"
            },
            {
                "messageId": "2e1424d4-f796-459a-8184-9c92662be6da",
                "receiptHandle": "AQEBzWwaftRI0KuVm4tP+/7q1rGgNqicHq...",
                "body": "Test message.",
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1545082650636",
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "ApproximateFirstReceiveTimestamp": "1545082650649"
                },
                "messageAttributes": {},
                "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:s3-importer-work",
                "awsRegion": "us-east-1"
            }
        ]
    });
    let event: SqsEvent = serde_json::from_value(event_json)?;
    let deadline = d.clock.now() + Duration::minutes(15);
    let response: SqsBatchResponse =
        s3_importer_worker::handle(&d.worker, event, Some(deadline), &request_id("worker")).await;
    assert_eq!(
        serde_json::to_value(&response)?,
        json!({ "batchItemFailures": [] }),
        "the file is imported and the foreign message acked"
    );
    assert_eq!(d.file("a.csv").await?.status, FileStatus::Imported);
    assert_eq!(ids(&d.records().await?), ["a-1"]);
    Ok(())
}

#[tokio::test]
async fn worker_hands_back_messages_it_has_no_time_to_start() -> Result<()> {
    let d = Deployment::new().await?;
    d.put("a.csv", &csv(&[("a-1", 1)])).await?;
    assert_eq!(d.sync().await?.enqueued, 1);
    let messages = d.receive().await?;
    let event = s3_importer_tests::deployment::sqs_event(&messages)?;
    let deadline = d.clock.now() + Duration::seconds(5);
    let response =
        s3_importer_worker::handle(&d.worker, event, Some(deadline), &request_id("worker")).await;
    assert_eq!(
        serde_json::to_value(&response)?,
        json!({ "batchItemFailures": [{ "itemIdentifier": messages[0].message_id }] })
    );
    assert_eq!(
        d.file("a.csv").await?.status,
        FileStatus::Queued,
        "untouched"
    );
    assert!(d.records().await?.is_empty());
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// NoSyncLease: the lease capability that grants every lease; the other capabilities stay the real store's.
// ---------------------------------------------------------------------------------------------------------

#[async_trait]
impl LeaseStore for NoSyncLease {
    async fn acquire_lease(
        &self,
        _name: &str,
        _owner: &str,
        _now: DateTime<Utc>,
        _ttl: Duration,
    ) -> Result<bool, StateError> {
        Ok(true)
    }
    async fn release_lease(&self, _name: &str, _owner: &str) -> Result<(), StateError> {
        Ok(())
    }
}
