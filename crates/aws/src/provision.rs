//! Creating a deployment's resources outside CloudFormation: for the local emulator (`s3-importer local
//! setup`, `make demo`) and the end-to-end tests. Every step is idempotent. On AWS, `template.yaml` creates
//! the same resources with the same key schemas.

use std::collections::HashMap;

use aws_config::SdkConfig;
use aws_sdk_sqs::types::QueueAttributeName;

use crate::config::{dynamodb_client, s3_client, sqs_client};
use crate::error::AwsCallError;

/// Names of a deployment's resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// State table.
    pub state_table: String,
    /// Records table.
    pub records_table: String,
    /// Work queue name.
    pub queue: String,
    /// Dead-letter queue name.
    pub dead_letter_queue: String,
    /// Notification queue name (S3 events for connectors in `events` mode).
    pub notification_queue: String,
    /// Output bucket.
    pub output_bucket: String,
}

impl Names {
    /// Names derived from one prefix: `<prefix>-state`, `<prefix>-records`, `<prefix>-work`, `<prefix>-dlq`,
    /// `<prefix>-notifications`, `<prefix>-output`.
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            state_table: format!("{prefix}-state"),
            records_table: format!("{prefix}-records"),
            queue: format!("{prefix}-work"),
            dead_letter_queue: format!("{prefix}-dlq"),
            notification_queue: format!("{prefix}-notifications"),
            output_bucket: format!("{prefix}-output"),
        }
    }
}

/// What [`provision`] created (or found).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provisioned {
    /// Names.
    pub names: Names,
    /// Work queue URL.
    pub queue_url: String,
    /// Dead-letter queue URL.
    pub dead_letter_queue_url: String,
    /// Notification queue URL.
    pub notification_queue_url: String,
}

/// A provisioning step failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot create {what}: {source}")]
pub struct ProvisionError {
    /// The resource.
    pub what: String,
    /// Cause.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

fn fail(what: impl Into<String>) -> impl FnOnce(AwsCallError) -> ProvisionError {
    let what = what.into();
    move |e| ProvisionError {
        what,
        source: Box::new(e),
    }
}

/// Creates (or reuses) the state table, the records table, the queue with its DLQ (`maxReceiveCount`
/// receives), the notification queue, and the output bucket.
pub async fn provision(
    sdk: &SdkConfig,
    names: &Names,
    visibility_timeout_seconds: u32,
    max_receive_count: u32,
) -> Result<Provisioned, ProvisionError> {
    let dynamodb = dynamodb_client(sdk);
    crate::state::create_state_table(&dynamodb, &names.state_table)
        .await
        .map_err(|e| ProvisionError {
            what: format!("state table {}", names.state_table),
            source: Box::new(e),
        })?;
    crate::records::create_records_table(&dynamodb, &names.records_table)
        .await
        .map_err(fail(format!("records table {}", names.records_table)))?;

    let sqs = sqs_client(sdk);
    let dlq_url = sqs
        .create_queue()
        .queue_name(&names.dead_letter_queue)
        .send()
        .await
        .map_err(|e| fail(format!("queue {}", names.dead_letter_queue))(AwsCallError::from_sdk(e)))?
        .queue_url
        .unwrap_or_default();
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| fail(format!("queue {}", names.dead_letter_queue))(AwsCallError::from_sdk(e)))?
        .attributes
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .unwrap_or_default();
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": max_receive_count.to_string(),
    })
    .to_string();
    let attributes: HashMap<QueueAttributeName, String> = [
        (
            QueueAttributeName::VisibilityTimeout,
            visibility_timeout_seconds.to_string(),
        ),
        (QueueAttributeName::RedrivePolicy, redrive),
    ]
    .into_iter()
    .collect();
    let queue_url = sqs
        .create_queue()
        .queue_name(&names.queue)
        .set_attributes(Some(attributes))
        .send()
        .await
        .map_err(|e| fail(format!("queue {}", names.queue))(AwsCallError::from_sdk(e)))?
        .queue_url
        .unwrap_or_default();

    let notification_queue_url = sqs
        .create_queue()
        .queue_name(&names.notification_queue)
        .send()
        .await
        .map_err(|e| {
            fail(format!("queue {}", names.notification_queue))(AwsCallError::from_sdk(e))
        })?
        .queue_url
        .unwrap_or_default();

    create_bucket(sdk, &names.output_bucket).await?;
    Ok(Provisioned {
        names: names.clone(),
        queue_url,
        dead_letter_queue_url: dlq_url,
        notification_queue_url,
    })
}

/// Creates a bucket in the configured region if it does not exist (already owned by us is fine).
pub async fn create_bucket(sdk: &SdkConfig, bucket: &str) -> Result<(), ProvisionError> {
    let s3 = s3_client(sdk);
    let mut request = s3.create_bucket().bucket(bucket);
    if let Some(region) = sdk
        .region()
        .map(|r| r.as_ref().to_owned())
        .filter(|r| r != "us-east-1")
    {
        // us-east-1 is the default location and must not be named; every other region must be.
        request = request.create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                    region.as_str(),
                ))
                .build(),
        );
    }
    match request.send().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let e = AwsCallError::from_sdk(e);
            if matches!(e.code.as_deref(), Some("BucketAlreadyOwnedByYou")) {
                Ok(())
            } else {
                Err(fail(format!("bucket {bucket}"))(e))
            }
        }
    }
}

/// Counts a connector's items in a records table (a paginated Scan: for demos and tests, not production).
pub async fn count_records(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    connector_id: &str,
) -> Result<u64, ProvisionError> {
    use aws_sdk_dynamodb::types::{AttributeValue, Select};
    let mut total = 0u64;
    let mut start = None;
    loop {
        let out = client
            .scan()
            .table_name(table)
            .select(Select::Count)
            .filter_expression("connector_id = :c")
            .expression_attribute_values(":c", AttributeValue::S(connector_id.to_owned()))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| fail(format!("count of table {table}"))(AwsCallError::from_sdk(e)))?;
        total += out.count.max(0) as u64;
        match out.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => break,
        }
    }
    Ok(total)
}
