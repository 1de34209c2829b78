//! The queue port: the work queue between the lister and the workers (SQS in production).

use async_trait::async_trait;

use super::BoxError;
use crate::sync::model::FileMessage;

/// Sending to the work queue failed as a whole.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {source}")]
pub struct QueueError {
    /// What was being done.
    pub context: String,
    /// Cause.
    #[source]
    pub source: BoxError,
}

/// The work queue.
#[async_trait]
pub trait FileQueue: Send + Sync {
    /// Sends messages (batched by 10, failed entries retried). Returns, for each message in order, whether
    /// the queue accepted it.
    async fn send(&self, messages: &[FileMessage]) -> Result<Vec<bool>, QueueError>;

    /// Keeps a received message invisible for `seconds` from now (ChangeMessageVisibility), so it is not
    /// delivered again while its file is being imported.
    async fn extend_visibility(&self, receipt_handle: &str, seconds: u32)
        -> Result<(), QueueError>;
}

/// A message taken from the dead-letter queue: its receipt (to delete it) and its body as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The receipt handle of this receive.
    pub receipt_handle: String,
    /// The body (a [`FileMessage`] as JSON, unless someone sent something else).
    pub body: String,
}

/// The work queue's dead-letter queue: where a file's message lands after its last allowed receive. The
/// lister sweeps it so those files end `failed` instead of `queued` forever (see [`crate::sync::redo`]).
#[async_trait]
pub trait DeadLetterQueue: Send + Sync {
    /// Up to `max` (at most 10) visible messages, without waiting; each is hidden for the queue's
    /// visibility timeout until deleted.
    async fn receive(&self, max: usize) -> Result<Vec<DeadLetter>, QueueError>;
    /// Deletes a received message.
    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError>;
}
