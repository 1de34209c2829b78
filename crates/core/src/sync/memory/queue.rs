//! SQS in memory: the messages the queue accepted, received with a visibility timeout, with knobs to refuse
//! entries or whole sends.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::sync::model::FileMessage;
use crate::sync::ports::{DeadLetter, DeadLetterQueue, FileQueue, QueueError};

/// The largest message body SQS takes (256 KiB); a larger message is refused on its own.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// A received message, hidden until `visible_at`.
#[derive(Debug)]
struct InFlight {
    receipt_handle: String,
    message: FileMessage,
    visible_at: Instant,
}

#[derive(Debug, Default)]
struct QueueInner {
    /// Accepted, not yet received (or drained).
    sent: Vec<FileMessage>,
    /// Received and not deleted: hidden until their visibility runs out.
    in_flight: Vec<InFlight>,
    receipts: u64,
    reject_next: usize,
    fail_next_sends: usize,
    extensions: Vec<(String, u32)>,
}

/// SQS in memory: records accepted messages; can reject entries or whole calls to exercise the lister's
/// handling of partial sends. Messages over [`MAX_MESSAGE_BYTES`] are refused, as SQS refuses them.
///
/// Tests either take what was sent ([`MemoryQueue::sent`], [`MemoryQueue::drain`]) or receive it as a
/// worker does ([`MemoryQueue::receive`], hidden for a visibility timeout that
/// [`FileQueue::extend_visibility`] extends, until [`MemoryQueue::delete`]).
#[derive(Debug, Default)]
pub struct MemoryQueue {
    inner: Mutex<QueueInner>,
}

impl MemoryQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    fn inner(&self) -> MutexGuard<'_, QueueInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The next `n` messages offered are refused (returned as `false`, as the SQS adapter does once its own
    /// retries of a failed batch entry are exhausted).
    pub fn reject_next(&self, n: usize) {
        self.inner().reject_next = n;
    }

    /// The next `n` calls to `send` fail as a whole (as a throttled or unreachable SQS would).
    pub fn fail_next_sends(&self, n: usize) {
        self.inner().fail_next_sends = n;
    }

    /// Every accepted message not yet received or drained, without removing them.
    pub fn sent(&self) -> Vec<FileMessage> {
        self.inner().sent.clone()
    }

    /// Every visibility extension asked for so far: `(receipt handle, seconds)`.
    pub fn extensions(&self) -> Vec<(String, u32)> {
        self.inner().extensions.clone()
    }

    /// Removes and returns every accepted message not yet received (what workers would receive).
    pub fn drain(&self) -> Vec<FileMessage> {
        std::mem::take(&mut self.inner().sent)
    }

    /// Receives up to `max` visible messages, as SQS ReceiveMessage does: received messages whose visibility
    /// ran out first, then new ones in the order they were sent. Each is hidden for `visibility_seconds` and
    /// comes with a new receipt handle.
    pub fn receive(&self, max: usize, visibility_seconds: u32) -> Vec<(String, FileMessage)> {
        let now = Instant::now();
        let hidden_until = now + Duration::from_secs(u64::from(visibility_seconds));
        let mut q = self.inner();
        let q = &mut *q;
        let mut received = Vec::new();
        for flight in q.in_flight.iter_mut() {
            if received.len() == max {
                break;
            }
            if flight.visible_at <= now {
                q.receipts += 1;
                flight.receipt_handle = format!("memory-receipt-{}", q.receipts);
                flight.visible_at = hidden_until;
                received.push((flight.receipt_handle.clone(), flight.message.clone()));
            }
        }
        let take = (max - received.len()).min(q.sent.len());
        for message in q.sent.drain(..take) {
            q.receipts += 1;
            let receipt_handle = format!("memory-receipt-{}", q.receipts);
            received.push((receipt_handle.clone(), message.clone()));
            q.in_flight.push(InFlight {
                receipt_handle,
                message,
                visible_at: hidden_until,
            });
        }
        received
    }

    /// Deletes a received message (DeleteMessage); false when no received message has that receipt handle.
    pub fn delete(&self, receipt_handle: &str) -> bool {
        let mut q = self.inner();
        let before = q.in_flight.len();
        q.in_flight.retain(|f| f.receipt_handle != receipt_handle);
        q.in_flight.len() < before
    }
}

#[async_trait]
impl FileQueue for MemoryQueue {
    async fn send(&self, messages: &[FileMessage]) -> Result<Vec<bool>, QueueError> {
        let mut sizes = Vec::with_capacity(messages.len());
        for message in messages {
            let body = serde_json::to_vec(message).map_err(|e| QueueError {
                context: "serialize a file message".to_owned(),
                source: Box::new(e),
            })?;
            sizes.push(body.len());
        }
        let mut q = self.inner();
        if q.fail_next_sends > 0 {
            q.fail_next_sends -= 1;
            return Err(QueueError {
                context: format!("send {} messages to the memory queue", messages.len()),
                source: "injected failure".into(),
            });
        }
        let mut accepted = Vec::with_capacity(messages.len());
        for (message, size) in messages.iter().zip(sizes) {
            if size > MAX_MESSAGE_BYTES {
                accepted.push(false);
            } else if q.reject_next > 0 {
                q.reject_next -= 1;
                accepted.push(false);
            } else {
                q.sent.push(message.clone());
                accepted.push(true);
            }
        }
        Ok(accepted)
    }

    async fn extend_visibility(
        &self,
        receipt_handle: &str,
        seconds: u32,
    ) -> Result<(), QueueError> {
        let mut q = self.inner();
        q.extensions.push((receipt_handle.to_owned(), seconds));
        // SQS measures the new timeout from now. A handle of no received message (a test's made-up one)
        // is only recorded.
        let visible_at = Instant::now() + Duration::from_secs(u64::from(seconds));
        if let Some(flight) = q
            .in_flight
            .iter_mut()
            .find(|f| f.receipt_handle == receipt_handle)
        {
            flight.visible_at = visible_at;
        }
        Ok(())
    }
}

/// A memory queue also stands for a dead-letter queue: what was sent to it is what the sweep receives.
#[async_trait]
impl DeadLetterQueue for MemoryQueue {
    async fn receive(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError> {
        MemoryQueue::receive(self, max.min(10), 30)
            .into_iter()
            .map(|(receipt_handle, message)| {
                let body = serde_json::to_string(&message).map_err(|e| QueueError {
                    context: "serialize a file message".to_owned(),
                    source: Box::new(e),
                })?;
                Ok(DeadLetter {
                    receipt_handle,
                    body,
                })
            })
            .collect()
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        MemoryQueue::delete(self, receipt_handle);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sync::model::FileVersion;
    use chrono::{TimeZone, Utc};

    #[tokio::test]
    async fn queue_rejects_the_next_entries_when_told() -> Result<(), Box<dyn std::error::Error>> {
        let q = MemoryQueue::new();
        let msg = FileMessage {
            v: 1,
            version: FileVersion {
                connector_id: "c".into(),
                bucket: "b".into(),
                key: "k".into(),
                etag: "\"e\"".into(),
                version_id: None,
            },
            size: 1,
            last_modified: Utc
                .with_ymd_and_hms(2025, 1, 1, 0, 0, 0)
                .single()
                .unwrap_or_default(),
            piece: 0,
        };
        q.reject_next(1);
        assert_eq!(
            q.send(&[msg.clone(), msg.clone()]).await?,
            vec![false, true]
        );
        q.fail_next_sends(1);
        assert!(q.send(std::slice::from_ref(&msg)).await.is_err());
        assert_eq!(q.drain().len(), 1);
        assert!(q.sent().is_empty());
        Ok(())
    }
}
