//! The sync engine end to end on the emulator (`docs/architecture.md`, "Data flow"): the lister and worker *handlers* —
//! the code Lambda runs — against a provisioned deployment (state table, records table, work queue with its DLQ, output
//! bucket) and a source bucket, with an injected clock.
//!
//! Each test builds its own [`Deployment`] under unique names, so tests run in parallel on the one moto
//! server this binary starts. What moto cannot do (set LastModified, report a multipart upload's start time)
//! is simulated through the clock or the state table; each such test says how.
//!
//! The engine's own rules (discovery windows, claims, duplicates, crashes, retries, pieces) run on the in-memory
//! adapters in `crates/core/tests/engine_*.rs`; this suite keeps what needs S3, SQS and DynamoDB themselves.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use anyhow::{Context, Result};
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Duration;
use futures::stream::{self, StreamExt, TryStreamExt};
use s3_importer_aws::destination::{error_report_key, output_key};
use s3_importer_core::sink::ErrorReportEntry;
use s3_importer_core::sync::contract::fixtures::{
    check_all_imported, check_dead_lettered, check_missing_bucket, check_rejects_imported,
    check_rejects_report, csv, gzip, Fault, FaultyDestination, REJECTS_CSV,
};
use s3_importer_core::sync::ports::ConnectorStore;
use s3_importer_core::sync::{Clock, DestinationConfig, FileMessage, FileStatus};
use s3_importer_tests::denials::{missing_keys_denied, Listing};
use s3_importer_tests::deployment::{request_id, Deployment, Options};
use s3_importer_tests::s3_client;
use serde_json::json;

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

// ---------------------------------------------------------------------------------------------------------
// Discovery
// ---------------------------------------------------------------------------------------------------------

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
    let status = d.connector_now().await?.status;
    check_missing_bucket(&run, &status, &d.source_bucket).map_err(anyhow::Error::msg)?;
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

// ---------------------------------------------------------------------------------------------------------
// Import
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn file_with_bad_rows_is_imported_with_an_error_report_naming_line_and_column() -> Result<()>
{
    let d = Deployment::new().await?;
    let etag = d.put("rows.csv", REJECTS_CSV).await?;
    assert_eq!(d.sync().await?.enqueued, 1);
    assert_eq!(d.drain().await?.acked, 1);

    let entry = d.file("rows.csv").await?;
    check_rejects_imported(&entry).map_err(anyhow::Error::msg)?;
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
    check_rejects_report(&entries).map_err(anyhow::Error::msg)?;
    assert_eq!(ids(&d.records().await?), ["r-1", "r-5"]);
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
    check_all_imported(&d.files().await?).map_err(anyhow::Error::msg)?;
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
    check_dead_lettered(&entry, d.sync().await?.enqueued).map_err(anyhow::Error::msg)?;
    assert!(d.records().await?.is_empty());
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
