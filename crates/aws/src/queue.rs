//! [`SqsQueue`]: the [`FileQueue`] port on Amazon SQS.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use s3_importer_core::sync::ports::{FileQueue, QueueError};
use s3_importer_core::sync::FileMessage;

use crate::error::AwsCallError;

/// Entries per SendMessageBatch (SQS's maximum).
pub const MAX_BATCH_ENTRIES: usize = 10;
/// Total payload of one SendMessageBatch, and the largest single message (SQS's limit: 256 KiB).
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// The longest visibility timeout SQS accepts (12 hours).
pub const MAX_VISIBILITY_SECONDS: u32 = 12 * 60 * 60;
/// Attempts per entry (the first send and two retries of the entries SQS failed).
const ATTEMPTS: u32 = 3;
/// First retry delay; doubled on each retry.
const BASE_BACKOFF: Duration = Duration::from_millis(100);

/// The work queue on SQS. Messages are the JSON of [`FileMessage`].
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsQueue {
    /// A queue at `queue_url`.
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }

    /// The queue URL.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Sends one batch (≤ 10 entries, ≤ 256 KiB), retrying the entries SQS failed for its own reasons.
    /// Accepted entries are marked in `accepted` (same indexes as `bodies`).
    async fn send_batch(
        &self,
        bodies: &[String],
        accepted: &mut [bool],
    ) -> Result<(), AwsCallError> {
        // Entry ids are the index within the batch: "0".."9".
        let mut pending: Vec<usize> = (0..bodies.len()).collect();
        let mut attempt = 0;
        while !pending.is_empty() {
            attempt += 1;
            let entries = pending
                .iter()
                .map(|&i| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(&bodies[i])
                        .build()
                        .map_err(|e| AwsCallError::construction(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = match self
                .client
                .send_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) => {
                    let err = AwsCallError::from_sdk(e);
                    if err.is_retryable() && attempt < ATTEMPTS {
                        tracing::warn!(queue_url = %self.queue_url, attempt, error = %err, "SendMessageBatch failed; retrying");
                        tokio::time::sleep(backoff(attempt)).await;
                        continue;
                    }
                    return Err(err);
                }
            };
            for ok in out.successful() {
                if let Ok(i) = ok.id().parse::<usize>() {
                    if let Some(slot) = accepted.get_mut(i) {
                        *slot = true;
                    }
                }
            }
            let mut retry = Vec::new();
            for failed in out.failed() {
                let Ok(i) = failed.id().parse::<usize>() else {
                    continue;
                };
                if failed.sender_fault() {
                    // Our message is wrong (too large, invalid characters): a retry sends the same thing.
                    tracing::warn!(
                        queue_url = %self.queue_url,
                        code = failed.code(),
                        message = failed.message().unwrap_or_default(),
                        "SQS rejected a message"
                    );
                } else if attempt < ATTEMPTS {
                    retry.push(i);
                } else {
                    tracing::warn!(
                        queue_url = %self.queue_url,
                        code = failed.code(),
                        attempts = attempt,
                        "SQS did not accept a message after retries"
                    );
                }
            }
            pending = retry;
            if !pending.is_empty() {
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
        Ok(())
    }
}

fn backoff(attempt: u32) -> Duration {
    BASE_BACKOFF * 2u32.saturating_pow(attempt.saturating_sub(1))
}

/// Splits message sizes into batches of at most [`MAX_BATCH_ENTRIES`] entries and [`MAX_BATCH_BYTES`]
/// bytes, in order. Returns `(start, end)` index ranges. A message larger than the limit on its own must be
/// left out by the caller.
pub fn plan_batches(sizes: &[usize]) -> Vec<(usize, usize)> {
    let mut batches = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, &size) in sizes.iter().enumerate() {
        if i > start && (i - start == MAX_BATCH_ENTRIES || bytes + size > MAX_BATCH_BYTES) {
            batches.push((start, i));
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < sizes.len() {
        batches.push((start, sizes.len()));
    }
    batches
}

#[async_trait]
impl FileQueue for SqsQueue {
    /// Sends in batches of 10. Entries SQS fails for its own reasons are retried (up to 3 attempts);
    /// entries it rejects as our fault are not. A batch whose call fails (after retries) leaves its messages
    /// unaccepted and the next batches are still tried: the lister re-sends unaccepted claims on its next
    /// pass. `Err` only when nothing at all was accepted because of such a failure.
    async fn send(&self, messages: &[FileMessage]) -> Result<Vec<bool>, QueueError> {
        let mut accepted = vec![false; messages.len()];
        let mut bodies = Vec::with_capacity(messages.len());
        for message in messages {
            let body = serde_json::to_string(message).map_err(|e| QueueError {
                context: "serialize a file message".to_owned(),
                source: Box::new(e),
            })?;
            bodies.push(body);
        }
        // A message over the limit on its own can never be sent (S3 keys are ≤ 1 KiB, so this is defensive).
        let mut sendable = Vec::with_capacity(bodies.len());
        for (i, body) in bodies.iter().enumerate() {
            if body.len() <= MAX_BATCH_BYTES {
                sendable.push(i);
            } else {
                tracing::warn!(queue_url = %self.queue_url, bytes = body.len(), "file message over the SQS size limit");
            }
        }
        let sizes: Vec<usize> = sendable.iter().map(|&i| bodies[i].len()).collect();

        let mut last_error = None;
        for (start, end) in plan_batches(&sizes) {
            let indexes = &sendable[start..end];
            let batch: Vec<String> = indexes.iter().map(|&i| bodies[i].clone()).collect();
            let mut batch_accepted = vec![false; batch.len()];
            match self.send_batch(&batch, &mut batch_accepted).await {
                Ok(()) => {}
                Err(err) => {
                    tracing::warn!(queue_url = %self.queue_url, messages = batch.len(), error = %err, "SendMessageBatch failed");
                    last_error = Some(err);
                }
            }
            for (k, &i) in indexes.iter().enumerate() {
                accepted[i] = batch_accepted[k];
            }
        }
        match last_error {
            Some(err) if !accepted.iter().any(|&a| a) => Err(QueueError {
                context: format!("send messages to {}", self.queue_url),
                source: Box::new(err),
            }),
            _ => Ok(accepted),
        }
    }

    async fn extend_visibility(
        &self,
        receipt_handle: &str,
        seconds: u32,
    ) -> Result<(), QueueError> {
        // SQS caps a message's visibility at 12 hours from its receipt.
        let seconds = i32::try_from(seconds.min(MAX_VISIBILITY_SECONDS)).unwrap_or(i32::MAX);
        change_visibility(&self.client, &self.queue_url, receipt_handle, seconds)
            .await
            .map_err(|e| QueueError {
                context: format!("extend the visibility of a message of {}", self.queue_url),
                source: Box::new(e),
            })
    }
}

/// Makes the received message `receipt_handle` of `queue_url` visible again after `seconds`
/// (`ChangeMessageVisibility`): the queue extends a message's visibility with it, the local consumer
/// gives a message back.
pub(crate) async fn change_visibility(
    client: &aws_sdk_sqs::Client,
    queue_url: &str,
    receipt_handle: &str,
    seconds: i32,
) -> Result<(), AwsCallError> {
    client
        .change_message_visibility()
        .queue_url(queue_url)
        .receipt_handle(receipt_handle)
        .visibility_timeout(seconds)
        .send()
        .await
        .map_err(AwsCallError::from_sdk)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput;
    use aws_sdk_sqs::types::BatchResultErrorEntry;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use s3_importer_core::sync::FileVersion;

    use crate::test_support::accepted_entry;

    fn message(n: usize) -> FileMessage {
        crate::test_support::message(FileVersion {
            connector_id: "c-1".to_owned(),
            bucket: "b".to_owned(),
            key: format!("k{n}.csv"),
            etag: format!("\"e{n}\""),
            version_id: None,
        })
    }

    fn failed(id: &str, sender_fault: bool) -> BatchResultErrorEntry {
        BatchResultErrorEntry::builder()
            .id(id)
            .sender_fault(sender_fault)
            .code("InternalError")
            .build()
            .unwrap()
    }

    #[test]
    fn batches_hold_at_most_ten_entries_and_256_kib() {
        assert_eq!(plan_batches(&[1; 25]), vec![(0, 10), (10, 20), (20, 25)]);
        assert_eq!(plan_batches(&[100 * 1024; 5]), vec![(0, 2), (2, 4), (4, 5)]);
        assert_eq!(plan_batches(&[]), Vec::<(usize, usize)>::new());
        assert_eq!(plan_batches(&[MAX_BATCH_BYTES, 1]), vec![(0, 1), (1, 2)]);
    }

    #[tokio::test]
    async fn sends_batches_of_ten_and_retries_only_failed_entries(
    ) -> Result<(), Box<dyn std::error::Error>> {
        // First batch of 10: entries 3 (server fault) and 7 (sender fault) fail; only 3 is retried.
        let first = mock!(aws_sdk_sqs::Client::send_message_batch)
            .match_requests(|r| r.entries().len() == 10 && r.queue_url() == Some("q"))
            .then_output(|| {
                let mut out = SendMessageBatchOutput::builder();
                for i in (0..10).filter(|i| *i != 3 && *i != 7) {
                    out = out.successful(accepted_entry(&i.to_string()));
                }
                out.failed(failed("3", false))
                    .failed(failed("7", true))
                    .build()
                    .unwrap()
            });
        let retry = mock!(aws_sdk_sqs::Client::send_message_batch)
            .match_requests(|r| r.entries().len() == 1 && r.entries()[0].id() == "3")
            .then_output(|| {
                SendMessageBatchOutput::builder()
                    .successful(accepted_entry("3"))
                    .set_failed(Some(vec![]))
                    .build()
                    .unwrap()
            });
        let second = mock!(aws_sdk_sqs::Client::send_message_batch)
            .match_requests(|r| {
                r.entries().len() == 2
                    && r.entries().iter().map(|e| e.id()).collect::<Vec<_>>() == ["0", "1"]
                    && r.entries()[1].message_body().contains("k11.csv")
            })
            .then_output(|| {
                SendMessageBatchOutput::builder()
                    .successful(accepted_entry("0"))
                    .successful(accepted_entry("1"))
                    .set_failed(Some(vec![]))
                    .build()
                    .unwrap()
            });
        let client = mock_client!(aws_sdk_sqs, RuleMode::Sequential, [&first, &retry, &second]);
        let queue = SqsQueue::new(client, "q");
        let messages: Vec<_> = (0..12).map(message).collect();
        let accepted = queue.send(&messages).await?;
        let expected: Vec<bool> = (0..12).map(|i| i != 7).collect();
        assert_eq!(accepted, expected);
        assert_eq!(
            (first.num_calls(), retry.num_calls(), second.num_calls()),
            (1, 1, 1)
        );
        Ok(())
    }

    #[tokio::test]
    async fn a_failing_queue_is_an_error() {
        let rule = mock!(aws_sdk_sqs::Client::send_message_batch).then_error(|| {
            aws_sdk_sqs::operation::send_message_batch::SendMessageBatchError::QueueDoesNotExist(
                aws_sdk_sqs::types::error::QueueDoesNotExist::builder()
                    .message("no queue")
                    .build(),
            )
        });
        let client = mock_client!(aws_sdk_sqs, RuleMode::MatchAny, [&rule]);
        let err = SqsQueue::new(client, "q")
            .send(&[message(1)])
            .await
            .expect_err("queue does not exist");
        assert!(err.to_string().contains("send messages to q"), "{err}");
    }
}
