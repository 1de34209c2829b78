//! Receiving and deleting work-queue messages, for the local runner (in Lambda, the event source mapping
//! does this and hands the worker an `SqsEvent`).

use async_trait::async_trait;
use aws_sdk_sqs::types::MessageSystemAttributeName;
use s3_importer_core::sync::ports::{DeadLetter, DeadLetterQueue, QueueError};

use crate::error::AwsCallError;

/// A received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// SQS message id.
    pub message_id: String,
    /// Receipt handle, needed to delete it.
    pub receipt_handle: String,
    /// Body.
    pub body: String,
    /// `ApproximateReceiveCount`.
    pub receive_count: u32,
    /// `SentTimestamp` (epoch milliseconds).
    pub sent_timestamp: String,
}

/// Receives and deletes messages of one queue.
#[derive(Debug, Clone)]
pub struct SqsConsumer {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsConsumer {
    /// A consumer of `queue_url`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }

    /// Receives up to `max` (≤ 10) messages, waiting up to `wait_seconds` for the first.
    pub async fn receive(
        &self,
        max: i32,
        wait_seconds: i32,
    ) -> Result<Vec<Received>, AwsCallError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(max.clamp(1, 10))
            .wait_time_seconds(wait_seconds.clamp(0, 20))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .map_err(AwsCallError::from_sdk)?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| {
                let attrs = m.attributes.unwrap_or_default();
                Some(Received {
                    message_id: m.message_id?,
                    receipt_handle: m.receipt_handle?,
                    body: m.body.unwrap_or_default(),
                    receive_count: attrs
                        .get(&MessageSystemAttributeName::ApproximateReceiveCount)
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(1),
                    sent_timestamp: attrs
                        .get(&MessageSystemAttributeName::SentTimestamp)
                        .cloned()
                        .unwrap_or_default(),
                })
            })
            .collect())
    }

    /// Deletes a received message.
    pub async fn delete(&self, receipt_handle: &str) -> Result<(), AwsCallError> {
        self.client
            .delete_message()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .map_err(AwsCallError::from_sdk)?;
        Ok(())
    }

    /// Makes a received message visible again after `seconds`.
    pub async fn set_visibility(
        &self,
        receipt_handle: &str,
        seconds: i32,
    ) -> Result<(), AwsCallError> {
        crate::queue::change_visibility(&self.client, &self.queue_url, receipt_handle, seconds)
            .await
    }
}

/// The dead-letter queue is read with the same calls: the lister's sweep receives without waiting.
#[async_trait]
impl DeadLetterQueue for SqsConsumer {
    async fn receive(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        let max = i32::try_from(max.min(10)).unwrap_or(10);
        let received = SqsConsumer::receive(self, max, 0)
            .await
            .map_err(|e| QueueError {
                context: format!("receive from the dead-letter queue {}", self.queue_url),
                source: Box::new(e),
            })?;
        Ok(received
            .into_iter()
            .map(|r| DeadLetter {
                receipt_handle: r.receipt_handle,
                body: r.body,
            })
            .collect())
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        SqsConsumer::delete(self, receipt_handle)
            .await
            .map_err(|e| QueueError {
                context: format!(
                    "delete a message of the dead-letter queue {}",
                    self.queue_url
                ),
                source: Box::new(e),
            })
    }
}
