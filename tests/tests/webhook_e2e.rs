//! The webhook destination end to end on the emulator: a file uploaded, the lister, the worker (its real
//! routing, the signing secret read from Secrets Manager on the emulator), and a receiver on loopback
//! (`s3_importer_tests::webhook_receiver`) that verifies every signature and counts deliveries per
//! idempotency key, with faults injected. Each test has its own deployment and receiver.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use anyhow::{ensure, Result};
use chrono::Duration;
use s3_importer_core::sync::contract::fixtures::{delimited, rows, Fault, FaultyDestination};
use s3_importer_core::sync::ports::ConnectorStore;
use s3_importer_core::sync::{ConnectorStatus, DestinationConfig, FileStatus};
use s3_importer_tests::deployment::Deployment;
use s3_importer_tests::webhook_receiver::{self, Receiver};

const SECRET: &str = "whsec-e2e";

/// Records of `rows(…, n)` the template accepts (every 7th is rejected).
fn accepted(n: u64) -> Vec<u64> {
    (1..=n).filter(|r| r % 7 != 0).collect()
}

/// Every row of the receiver applied exactly once, every signature verified, every key stable: the
/// records applied.
fn applied_once(receiver: &Receiver) -> Result<Vec<u64>> {
    receiver.seen(|s| {
        ensure!(s.bad_signatures == 0, "{} bad signatures", s.bad_signatures);
        ensure!(
            s.unstable_keys.is_empty(),
            "keys with other rows: {:?}",
            s.unstable_keys
        );
        ensure!(s.rows.values().all(|n| *n == 1), "a row applied twice");
        ensure!(
            s.batches.len() == s.deliveries.len(),
            "distinct keys = batches"
        );
        Ok(s.rows.keys().map(|(_, _, r)| *r).collect())
    })
}

#[tokio::test]
async fn a_file_is_delivered_once_per_batch_despite_faults_and_a_duplicate_delivery_sends_nothing(
) -> Result<()> {
    let d = Deployment::new().await?;
    let receiver = Receiver::start(SECRET).await?;
    d.use_webhook(&receiver.url(), SECRET, 25).await?;
    receiver.inject([
        Some(webhook_receiver::Fault::Status(500)),
        None,
        Some(webhook_receiver::Fault::Slow(StdDuration::from_millis(
            1500,
        ))),
        Some(webhook_receiver::Fault::Close),
        None,
        Some(webhook_receiver::Fault::TooMany(1)),
        Some(webhook_receiver::Fault::Status(503)),
    ]);
    let file = rows("w", 200);
    d.put("w.csv", &delimited(&file, ',')).await?;
    ensure!(d.sync().await?.enqueued == 1);
    let messages = d.receive().await?;
    ensure!(messages.len() == 1);
    let response = d.deliver(&d.worker, &messages).await?;
    ensure!(response.batch_item_failures.is_empty(), "{response:?}");
    let entry = d.file("w.csv").await?;
    ensure!(
        entry.status == FileStatus::Imported
            && entry.rows_imported == 172
            && entry.rows_rejected == 28,
        "{entry:#?}"
    );
    ensure!(receiver.pending_faults() == 0, "every fault was met");
    ensure!(applied_once(&receiver)? == accepted(200));
    let (keys, redelivered) = receiver.seen(|s| {
        (
            s.deliveries.len(),
            s.deliveries.values().filter(|n| **n > 1).count(),
        )
    });
    ensure!(keys == 7, "172 rows in batches of 25: 7 keys, got {keys}");
    ensure!(redelivered == 1, "the slow answer's batch was sent twice");

    // The same message again (SQS delivers at least once): the ledger acks it, nothing is sent.
    let requests = receiver.seen(|s| s.requests);
    let response = d.deliver(&d.worker, &messages).await?;
    ensure!(response.batch_item_failures.is_empty(), "{response:?}");
    d.settle(&messages, &response).await?;
    ensure!(
        receiver.seen(|s| s.requests) == requests,
        "nothing sent again"
    );
    Ok(())
}

#[tokio::test]
async fn a_worker_killed_mid_file_and_redelivered_sends_each_batch_under_the_same_key() -> Result<()>
{
    let d = Deployment::new().await?;
    let receiver = Receiver::start(SECRET).await?;
    d.use_webhook(&receiver.url(), SECRET, 40).await?;
    let file = rows("k", 400);
    d.put("k.csv", &delimited(&file, ',')).await?;
    ensure!(d.sync().await?.enqueued == 1);
    let messages = d.receive().await?;
    ensure!(messages.len() == 1);

    // The worker hands 150 rows to the webhook sink (three full batches of 40 sent), then hangs and is killed.
    let mut bad = d.worker_with(Arc::new(FaultyDestination::new(
        d.real_destination(),
        Fault::HoldAfter(150),
    )));
    bad.settings.batch_rows = 50;
    let run = d.deliver_with_deadline(&bad, &messages, Duration::minutes(5));
    ensure!(
        tokio::time::timeout(StdDuration::from_secs(10), run)
            .await
            .is_err(),
        "the worker should still be running when killed"
    );
    let before = receiver.seen(|s| s.batches.len());
    ensure!(before == 3, "{before} batches before the kill");

    // Redelivered after the visibility timeout and the dead worker's lease: pipeline batches of another size.
    d.expire_visibility(&messages).await?;
    d.clock.advance(Duration::minutes(7));
    let drained = d.drain().await?;
    ensure!(drained.retried.is_empty(), "{drained:?}");
    ensure!(d.file("k.csv").await?.status == FileStatus::Imported);
    ensure!(applied_once(&receiver)? == accepted(400));
    receiver.seen(|s| {
        // 343 rows in batches of 40: 9 keys; the three sent before the kill were sent again, deduped.
        ensure!(s.deliveries.len() == 9, "{} keys", s.deliveries.len());
        ensure!(s.deliveries.values().filter(|n| **n == 2).count() == 3);
        Ok(())
    })
}

#[tokio::test]
async fn a_receiver_with_another_secret_rejects_every_row_clearly() -> Result<()> {
    let d = Deployment::new().await?;
    let receiver = Receiver::start("not-the-same-secret").await?;
    d.use_webhook(&receiver.url(), SECRET, 50).await?;
    d.put("s.csv", &delimited(&rows("s", 70), ',')).await?;
    ensure!(d.sync().await?.enqueued == 1);
    d.drain().await?;
    let entry = d.file("s.csv").await?;
    ensure!(
        entry.rows_imported == 0 && entry.rows_rejected == 70,
        "{entry:#?}"
    );
    let location = entry.error_report.clone().unwrap_or_default();
    let report = String::from_utf8(d.read_output(&location).await?)?;
    let refused = report
        .lines()
        .filter(|l| l.contains("destination_rejected"))
        .count();
    ensure!(refused == 60, "{refused} rows refused in {report}");
    ensure!(report.contains("401") && report.contains("signature mismatch"));
    ensure!(receiver.seen(|s| s.bad_signatures) == 2 && receiver.seen(|s| s.batches.is_empty()));
    Ok(())
}

#[tokio::test]
async fn a_gone_receiver_fails_the_file_and_marks_the_connector_broken() -> Result<()> {
    let d = Deployment::new().await?;
    let receiver = Receiver::start(SECRET).await?;
    d.use_webhook(&receiver.url(), SECRET, 50).await?;
    receiver.always(Some(webhook_receiver::Fault::Status(410)));
    d.put("g.csv", &delimited(&rows("g", 20), ',')).await?;
    ensure!(d.sync().await?.enqueued == 1);
    d.drain().await?;
    let entry = d.file("g.csv").await?;
    ensure!(entry.status == FileStatus::Failed, "{entry:#?}");
    ensure!(
        entry.error.as_deref().unwrap_or_default().contains("410"),
        "{entry:#?}"
    );
    let connector = d.connector_now().await?;
    let ConnectorStatus::Broken { reason } = &connector.status else {
        anyhow::bail!("connector not broken: {:?}", connector.status);
    };
    ensure!(reason.contains("410"), "{reason}");
    Ok(())
}

#[tokio::test]
async fn a_metadata_service_url_is_refused_at_write_time() -> Result<()> {
    let d = Deployment::new().await?;
    d.use_webhook("http://127.0.0.1:9/unused", SECRET, 50)
        .await?;
    // The stored connector then points at the metadata service without allowing private targets.
    let mut connector = d.connector_now().await?;
    let DestinationConfig::Webhook(config) = &mut connector.destination else {
        anyhow::bail!("not a webhook");
    };
    config.url = "https://169.254.169.254/latest/meta-data/iam/security-credentials/".into();
    config.allow_private = false;
    d.state.update_connector(&connector).await?;
    d.put("m.csv", &delimited(&rows("m", 5), ',')).await?;
    ensure!(d.sync().await?.enqueued == 1);
    d.drain().await?;
    let entry = d.file("m.csv").await?;
    let error = entry.error.clone().unwrap_or_default();
    ensure!(entry.status == FileStatus::Failed, "{entry:#?}");
    ensure!(
        error.contains("169.254.169.254")
            && error.contains("link-local")
            && error.contains("refused"),
        "{error}"
    );
    Ok(())
}
