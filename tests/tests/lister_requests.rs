//! The lister function's explicit requests (`{"action": "verify" | "sync", "connector_id": …}`), which the CLI
//! sends with Lambda Invoke so the checks run as the deployment's role, and the schedule's event, which keeps
//! syncing every active connector. The handler is called directly against the emulator.

use anyhow::Result;
use s3_importer_aws::verify::CheckStatus;
use s3_importer_lister::{handle, ListerError, ListerResponse};
use s3_importer_tests::deployment::{request_id, Deployment};
use serde_json::json;

const CSV: &[u8] = b"id,qty\na-1,1\n";

/// The lister's answer to the explicit request `action` on connector `connector` (its id or name), as the
/// CLI's Lambda Invoke sends it.
async fn request(
    d: &Deployment,
    action: &str,
    connector: &str,
) -> Result<ListerResponse, ListerError> {
    handle(
        &d.lister,
        json!({ "action": action, "connector_id": connector }),
        &request_id(action),
    )
    .await
}

#[tokio::test]
async fn verify_runs_the_doctor_as_the_function_and_syncs_nothing() -> Result<()> {
    let d = Deployment::new().await?;
    d.put("orders.csv", CSV).await?;
    let response = request(&d, "verify", &d.connector.id).await?;
    let report = response.report.expect("verify returns a report");
    assert!(report.ok(), "{report:#?}");
    let status = |name: &str| {
        report
            .checks
            .iter()
            .find(|c| c.check == name)
            .map(|c| c.status)
    };
    assert_eq!(status("list"), Some(CheckStatus::Pass));
    assert_eq!(status("read"), Some(CheckStatus::Pass));
    assert_eq!(
        report.sample_key.as_deref(),
        Some(Deployment::key("orders.csv").as_str())
    );
    assert!(response.connectors.is_empty(), "verify does not sync");
    assert_eq!(d.queue_depth().await?, (0, 0), "verify enqueues nothing");
    assert!(d.files().await?.is_empty());
    // The report survives the Lambda payload's JSON round trip (the CLI parses it).
    let back: s3_importer_aws::verify::Report =
        serde_json::from_value(serde_json::to_value(&report)?)?;
    assert_eq!(back, report);
    Ok(())
}

#[tokio::test]
async fn verify_reports_a_missing_bucket() -> Result<()> {
    let d = Deployment::new().await?;
    let mut connector = d.connector.clone();
    connector.source.bucket = format!("{}-missing", d.source_bucket);
    use s3_importer_core::sync::ports::ConnectorStore;
    d.state.update_connector(&connector).await?;
    let response = request(&d, "verify", &connector.name).await?;
    let report = response.report.expect("a report");
    let failure = report.first_failure().expect("a failure");
    assert_eq!(failure.check, "bucket", "{report:#?}");
    assert_eq!(failure.cause.as_deref(), Some("no_such_bucket"));
    Ok(())
}

#[tokio::test]
async fn sync_action_syncs_that_connector_now() -> Result<()> {
    let d = Deployment::new().await?;
    d.put("orders.csv", CSV).await?;
    let response = request(&d, "sync", &d.connector.id).await?;
    assert!(response.report.is_none());
    let [result] = response.connectors.as_slice() else {
        panic!("one connector: {response:#?}");
    };
    assert_eq!(result.connector, d.connector.name);
    assert_eq!(result.outcome, "ran");
    assert_eq!(result.run.as_ref().map(|r| r.enqueued), Some(1));
    assert_eq!(d.queue_depth().await?.0, 1);
    Ok(())
}

#[tokio::test]
async fn the_scheduled_event_syncs_every_active_connector() -> Result<()> {
    let d = Deployment::new().await?;
    d.put("orders.csv", CSV).await?;
    let scheduled = json!({
        "version": "0", "id": "0d5b2f5e-6f7b-4c3a-9d38-0f1c2b3a4d5e",
        "detail-type": "Scheduled Event", "source": "aws.events", "account": "123456789012",
        "time": "2026-11-28T02:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/s3-importer-schedule"], "detail": {}
    });
    let response = handle(&d.lister, scheduled, &request_id("schedule")).await?;
    assert!(response.report.is_none());
    let ran: Vec<_> = response
        .connectors
        .iter()
        .filter(|r| r.connector == d.connector.name)
        .collect();
    assert_eq!(ran.len(), 1, "{response:#?}");
    assert_eq!(ran[0].outcome, "ran");
    assert_eq!(d.queue_depth().await?.0, 1);
    Ok(())
}

#[tokio::test]
async fn bad_requests_are_named() -> Result<()> {
    let d = Deployment::new().await?;
    let unknown = request(&d, "verify", "no-such-connector")
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, ListerError::UnknownConnector(_)),
        "{unknown}"
    );
    let missing = handle(
        &d.lister,
        json!({ "action": "verify" }),
        &request_id("verify"),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(missing, ListerError::MissingConnector(_)),
        "{missing}"
    );
    let action = request(&d, "delete", &d.connector.id).await.unwrap_err();
    assert!(matches!(action, ListerError::UnknownAction(_)), "{action}");
    assert_eq!(d.queue_depth().await?, (0, 0));
    Ok(())
}
