//! Event-driven discovery end to end on the emulator: a connector in `events` mode, its bucket's S3 events
//! delivered by the emulator to the notification queue (directly, through SNS wrapped and raw, through
//! EventBridge), drained through the Lambda's notification handler, then the work queue through the worker.
//! Each file version is imported exactly once, without a single ListObjectsV2.

use std::sync::Arc;

use anyhow::{ensure, Result};
use s3_importer_core::sync::Clock;
use s3_importer_lister::Lister;
use s3_importer_tests::deployment::Deployment;
use s3_importer_tests::notifications::Route;
use s3_importer_tests::recording::{Call, Recorder};

const BODY: &[u8] = b"id,qty\n1,2\n2,3\n";

/// Keys S3 form-encodes in its notifications, each a different way.
const AWKWARD: &[&str] = &[
    "plain.csv",
    "with space.csv",
    "a+b.csv",
    "100%.csv",
    "café 日本.csv",
];

/// The deployment's lister, its requests recorded.
fn recorded(d: &mut Deployment) -> Recorder {
    let recorder = Recorder::new();
    let clock: Arc<dyn Clock> = d.clock.clone();
    d.lister = Lister::from_config(&d.config, &recorder.sdk_config(&d.sdk), clock);
    recorder
}

fn no_listing(calls: &[Call]) -> Result<()> {
    let names: Vec<String> = calls.iter().map(Call::name).collect();
    ensure!(
        !names.iter().any(|n| n.contains("ListObjects")),
        "events mode listed the bucket: {names:?}"
    );
    ensure!(
        names.iter().any(|n| n.contains("HeadObject")),
        "no HeadObject recorded: {names:?}"
    );
    Ok(())
}

#[tokio::test]
async fn s3_to_sqs_imports_encoded_keys_once_without_listing() -> Result<()> {
    let mut d = Deployment::new().await?;
    let recorder = recorded(&mut d);
    // No prefix filter on the notification: the importer's own folder scoping must drop `outside/`.
    d.use_events(Route::Direct, None).await?;
    let test_events = d.drain_notifications().await?;
    for name in AWKWARD {
        d.put(name, BODY).await?;
    }
    d.put_key("outside/other.csv", BODY, None).await?;
    let report = d.drain_notifications().await?;
    ensure!(report.malformed == 0, "{report:?}");
    ensure!(report.created.get("s3") == Some(&6), "{report:?}");
    ensure!(report.outside_folder == 1, "{report:?}");
    ensure!(report.new == 5 && report.enqueued == 5, "{report:?}");
    let drained = d.drain().await?;
    ensure!(drained.retried.is_empty(), "{drained:?}");
    d.imported_once(AWKWARD).await?;
    ensure!(d.records().await?.len() == 2, "rows upserted by id");

    // Duplicates: the same file versions written again (same bytes, same ETag) and a removal.
    for name in &AWKWARD[..2] {
        d.put(name, BODY).await?;
    }
    s3_importer_tests::s3_client(&d.sdk)
        .delete_object()
        .bucket(&d.source_bucket)
        .key(Deployment::key("a+b.csv"))
        .send()
        .await?;
    let again = d.drain_notifications().await?;
    ensure!(again.new == 0 && again.already_known == 2, "{again:?}");
    ensure!(again.removed == 1, "{again:?}");
    let drained = d.drain().await?;
    ensure!(drained.delivered == 0, "{drained:?}");
    d.imported_once(AWKWARD).await?;

    // The emulator sends s3:TestEvent when the configuration is saved; acknowledged, nothing else.
    ensure!(
        test_events.test_events == 1 && test_events.new == 0,
        "{test_events:?}"
    );
    no_listing(&recorder.calls())
}

#[tokio::test]
async fn sns_wrapped_sns_raw_and_eventbridge_each_import_once() -> Result<()> {
    for (route, envelope) in [
        (Route::Sns, "sns"),
        (Route::SnsRaw, "s3"),
        (Route::EventBridge, "eventbridge"),
    ] {
        let mut d = Deployment::new().await?;
        let recorder = recorded(&mut d);
        d.use_events(route, None).await?;
        d.drain_notifications().await?;
        let names = ["one.csv", "two words é.csv", "x+y.csv"];
        for name in names {
            d.put(name, BODY).await?;
        }
        // The same version again: one more event, no second import.
        d.put(names[0], BODY).await?;
        let report = d.drain_notifications().await?;
        ensure!(
            report.created.get(envelope) == Some(&4),
            "{route:?}: {report:?}"
        );
        ensure!(
            report.new == 3 && report.already_known == 1 && report.malformed == 0,
            "{route:?}: {report:?}"
        );
        let drained = d.drain().await?;
        ensure!(drained.retried.is_empty(), "{route:?}: {drained:?}");
        d.imported_once(&names).await?;
        no_listing(&recorder.calls())?;
    }
    Ok(())
}

#[tokio::test]
async fn malformed_messages_are_acknowledged_and_counted() -> Result<()> {
    let mut d = Deployment::new().await?;
    d.use_events(Route::Direct, Some("incoming/")).await?;
    d.drain_notifications().await?;
    let sqs = s3_importer_tests::sqs_client(&d.sdk);
    for body in [
        "not json",
        "{\"Records\": [{\"eventName\": \"ObjectCreated:Put\"}]}",
    ] {
        sqs.send_message()
            .queue_url(&d.provisioned.notification_queue_url)
            .message_body(body)
            .send()
            .await?;
    }
    let report = d.drain_notifications().await?;
    ensure!(report.malformed == 2 && report.messages == 2, "{report:?}");
    ensure!(d.files().await?.is_empty());
    Ok(())
}
