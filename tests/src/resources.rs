//! Clients and test resources on the emulator.

use anyhow::{Context, Result};
use aws_config::SdkConfig;
use aws_sdk_sqs::types::QueueAttributeName;

/// An S3 client for the emulator. Path-style addressing is required: virtual-hosted style would send
/// requests to `BUCKET.127.0.0.1`, which does not resolve.
pub fn s3_client(cfg: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(cfg)
            .force_path_style(true)
            .build(),
    )
}

/// An SQS client for the emulator.
pub fn sqs_client(cfg: &SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(cfg)
}

/// A DynamoDB client for the emulator.
pub fn dynamodb_client(cfg: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(cfg)
}

/// Creates bucket `name` in us-east-1 (no location constraint).
pub async fn create_bucket(cfg: &SdkConfig, name: &str) -> Result<()> {
    s3_client(cfg)
        .create_bucket()
        .bucket(name)
        .send()
        .await
        .with_context(|| format!("create bucket s3://{name}"))?;
    Ok(())
}

/// Creates standard queue `name` and returns its URL (`http://127.0.0.1:PORT/123456789012/NAME` on moto).
pub async fn create_queue(cfg: &SdkConfig, name: &str) -> Result<String> {
    let out = sqs_client(cfg)
        .create_queue()
        .queue_name(name)
        .send()
        .await
        .with_context(|| format!("create queue {name}"))?;
    out.queue_url
        .with_context(|| format!("create queue {name}: no QueueUrl in the response"))
}

/// A queue with a dead-letter queue behind it.
#[derive(Debug, Clone)]
pub struct QueueWithDlq {
    /// URL of the main queue.
    pub queue_url: String,
    /// URL of the dead-letter queue (`{name}-dlq`).
    pub dlq_url: String,
    /// ARN of the dead-letter queue, as named in the main queue's redrive policy.
    pub dlq_arn: String,
}

/// Creates `{name}-dlq`, then queue `name` whose redrive policy moves a message to the DLQ once it has
/// been received `max_receive_count` times without being deleted. moto enforces this: the receive after
/// the `max_receive_count`-th moves the message (see `emulator_smoke.rs`).
///
/// `visibility_timeout_secs` sets the main queue's VisibilityTimeout; tests that exercise retries use 0
/// or 1 so a message comes back at once.
pub async fn create_queue_with_dlq(
    cfg: &SdkConfig,
    name: &str,
    max_receive_count: u32,
    visibility_timeout_secs: u32,
) -> Result<QueueWithDlq> {
    let sqs = sqs_client(cfg);
    let dlq_name = format!("{name}-dlq");
    let dlq_url = create_queue(cfg, &dlq_name).await?;
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .with_context(|| format!("get the ARN of queue {dlq_name}"))?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .with_context(|| format!("queue {dlq_name} has no QueueArn attribute"))?;

    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": max_receive_count.to_string(),
    });
    let out = sqs
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .attributes(
            QueueAttributeName::VisibilityTimeout,
            visibility_timeout_secs.to_string(),
        )
        .send()
        .await
        .with_context(|| format!("create queue {name} with dead-letter queue {dlq_name}"))?;
    let queue_url = out
        .queue_url
        .with_context(|| format!("create queue {name}: no QueueUrl in the response"))?;
    Ok(QueueWithDlq {
        queue_url,
        dlq_url,
        dlq_arn,
    })
}
