//! `connector events`: what to paste so a connector in `events` mode gets its bucket's S3 events — the bucket
//! notification configuration (S3 → the deployment's notification queue) or the EventBridge alternative.

use std::process::ExitCode;

use anyhow::Result;
use s3_importer_core::sync::events::setup;
use s3_importer_core::sync::Discovery;
use serde_json::json;

use super::{find, Deployment};
use crate::exit::{exit, Status};

/// Runs `connector events NAME`.
pub(super) async fn events(deployment: Deployment<'_>, name: &str, json: bool) -> Result<ExitCode> {
    let Deployment { aws, sdk, state } = deployment;
    let connector = find(state, name).await?;
    let Some(queue_arn) = aws.notification_queue_arn(sdk) else {
        return Err(exit(
            Status::Usage,
            "the deployment's notification queue is not known: pass --stack (or --notification-queue-url, \
             S3I_NOTIFICATION_QUEUE_URL)",
        ));
    };
    let source = &connector.source;
    let folder = source.prefix.as_deref();
    let notification = setup::bucket_notification(&connector.name, &queue_arn, folder);
    let pattern = setup::eventbridge_pattern(&source.bucket, folder);
    let rule = format!("s3-importer-{}", connector.name);
    if json {
        let out = json!({
            "connector": connector.name,
            "discovery": connector.discovery.as_str(),
            "bucket": source.bucket,
            "folder": folder,
            "notification_queue_arn": queue_arn,
            "bucket_notification": notification,
            "eventbridge": {
                "bucket_notification": {"EventBridgeConfiguration": {}},
                "rule": rule,
                "event_pattern": pattern,
                "target": queue_arn,
            },
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    if connector.discovery != Discovery::Events {
        outln!(
            "# connector {} polls: switch it with `s3-importer connector update {} --discovery events`",
            connector.name,
            connector.name
        );
    }
    outln!(
        "# S3 → SQS: in the bucket's account (this replaces the bucket's notification configuration: merge \
         this entry into an existing one)"
    );
    outln!(
        "aws s3api put-bucket-notification-configuration --bucket {} --notification-configuration '{}'",
        source.bucket,
        serde_json::to_string(&notification)?
    );
    outln!();
    outln!("{}", serde_json::to_string_pretty(&notification)?);
    outln!();
    outln!("# Or S3 → EventBridge → SQS: turn EventBridge on for the bucket, then a rule on its default bus");
    outln!(
        "aws s3api put-bucket-notification-configuration --bucket {} --notification-configuration \
         '{{\"EventBridgeConfiguration\": {{}}}}'",
        source.bucket
    );
    outln!(
        "aws events put-rule --name {rule} --event-pattern '{}'",
        serde_json::to_string(&pattern)?
    );
    outln!("aws events put-targets --rule {rule} --targets 'Id=s3-importer,Arn={queue_arn}'");
    outln!();
    outln!(
        "# Then `s3-importer connector verify {}` checks the bucket's notification configuration.",
        connector.name
    );
    Ok(ExitCode::SUCCESS)
}
