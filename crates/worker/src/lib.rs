//! The worker Lambda: takes file messages from SQS, imports each file version once in effect, and returns
//! only the messages to retry (`ReportBatchItemFailures`). The handler is a plain async function
//! ([`handle`]) so tests call it with real event JSON; `main.rs` only wires it to `lambda_runtime`.

use std::sync::Arc;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Duration, Utc};
use s3_importer_aws::secrets::Secrets;
use s3_importer_aws::state::DynamoStateStore;
use s3_importer_aws::{AwsDestination, S3Source, SqsQueue};
use s3_importer_core::config::{Config, ConfigError};
use s3_importer_core::sync::worker::{self, Delivery, Disposition, WorkerDeps, WorkerSettings};
use s3_importer_core::sync::{Clock, SystemClock};
use tracing::{info, info_span, warn, Instrument};

use crate::destinations::Destinations;

pub mod destinations;
pub mod metrics;
pub mod stripes;
pub mod webhooks;

/// Why the worker could not start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Bad configuration (cold start).
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// The worker's dependencies, built once per cold start.
#[derive(Clone)]
pub struct Worker {
    /// Ports.
    pub deps: WorkerDeps,
    /// Settings.
    pub settings: WorkerSettings,
    /// CloudWatch namespace of the metrics it emits.
    pub metrics_namespace: String,
}

impl Worker {
    /// Builds the worker from the environment and the standard AWS configuration.
    pub async fn from_env() -> Result<Self, WorkerError> {
        let config = Config::from_env()?;
        let sdk = s3_importer_aws::load_sdk_config().await;
        Ok(Self::from_config(&config, &sdk, Arc::new(SystemClock)))
    }

    /// Builds the worker from a configuration, an SDK configuration and a clock.
    pub fn from_config(
        config: &Config,
        sdk: &aws_config::SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let deps = WorkerDeps::new(
            Arc::new(DynamoStateStore::new(
                s3_importer_aws::config::dynamodb_client(sdk),
                config.state_table.clone(),
            )),
            Arc::new(S3Source::new(sdk)),
            Arc::new(
                Destinations::new(
                    Arc::new(
                        AwsDestination::new(
                            s3_importer_aws::s3_client(sdk),
                            s3_importer_aws::config::dynamodb_client(sdk),
                            config.output_bucket.clone(),
                        )
                        .with_concurrency(config.dynamodb_write_concurrency),
                    ),
                    Secrets::new(s3_importer_aws::config::secretsmanager_client(sdk)),
                )
                .with_stripe(
                    Arc::new(s3_importer_stripe::DynamoCustomerIds::new(
                        s3_importer_aws::config::dynamodb_client(sdk),
                        config.state_table.clone(),
                    )),
                    config.worker_concurrency,
                ),
            ),
            Arc::new(SqsQueue::new(
                s3_importer_aws::config::sqs_client(sdk),
                config.queue_url.clone(),
            )),
            clock,
        );
        Self {
            deps,
            settings: WorkerSettings {
                limits: config.limits,
                checkpoint_margin: config.checkpoint_margin,
                heartbeat_interval: config.heartbeat_interval,
                read_ahead: config.read_ahead,
                ..WorkerSettings::default()
            },
            metrics_namespace: config.metrics_namespace.clone(),
        }
    }
}

/// Time kept in hand at the end of an invocation: a message is not started with less than this left.
const MIN_TIME_FOR_A_MESSAGE: Duration = Duration::seconds(20);

/// Handles one SQS batch. Messages are processed one after another (each file streams through bounded
/// memory; parallelism comes from Lambda's concurrency). `deadline` is the invocation's deadline;
/// `request_id` identifies it.
pub async fn handle(
    worker: &Worker,
    event: SqsEvent,
    deadline: Option<DateTime<Utc>>,
    request_id: &str,
) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let message_id = record.message_id.clone().unwrap_or_default();
        let receive_count = record
            .attributes
            .get("ApproximateReceiveCount")
            .cloned()
            .unwrap_or_default();
        if let Some(deadline) = deadline {
            if worker.deps.clock.now() + MIN_TIME_FOR_A_MESSAGE > deadline {
                // Not enough time to start: hand it back untouched rather than half-process it.
                response.batch_item_failures.push(failure(&message_id));
                continue;
            }
        }
        let Some(body) = record.body.as_deref() else {
            warn!(message_id = %message_id, "message without a body acked");
            continue;
        };
        // The owner is unique per attempt: the ledger's lease names who may finish the file.
        let owner = format!("{request_id}/{message_id}/{receive_count}");
        let span = info_span!("message", message_id = %message_id, receive_count = %receive_count);
        let delivery = Delivery {
            owner: &owner,
            deadline,
            receipt_handle: record.receipt_handle.as_deref(),
        };
        let result = worker::process_message(&worker.deps, &worker.settings, body, delivery)
            .instrument(span)
            .await;
        info!(
            message_id = %message_id,
            disposition = ?result.disposition,
            status = result.status.map(|s| s.as_str()).unwrap_or(""),
            rows_imported = result.counts.rows_imported,
            rows_rejected = result.counts.rows_rejected,
            bytes = result.bytes,
            detail = %result.detail,
            "message processed"
        );
        metrics::emit_for_message(worker, &result);
        if result.disposition == Disposition::Retry {
            response.batch_item_failures.push(failure(&message_id));
        }
    }
    response
}

fn failure(message_id: &str) -> BatchItemFailure {
    let mut failure = BatchItemFailure::default();
    failure.item_identifier = message_id.to_owned();
    failure
}

/// Converts the runtime's deadline (epoch milliseconds) to a time.
pub fn deadline_from_millis(millis: u64) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_millis(i64::try_from(millis).ok()?)
}

/// The event Lambda's SQS event source mapping delivers for these received messages (the same JSON shape), so
/// the local runner and the tests drive [`handle`] exactly as Lambda does.
pub fn sqs_event(
    messages: &[s3_importer_aws::consumer::Received],
    event_source_arn: Option<&str>,
) -> Result<SqsEvent, serde_json::Error> {
    let records: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| {
            serde_json::json!({
                "messageId": m.message_id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "attributes": {
                    "ApproximateReceiveCount": m.receive_count.to_string(),
                    "SentTimestamp": m.sent_timestamp,
                },
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": event_source_arn,
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records }))
}
