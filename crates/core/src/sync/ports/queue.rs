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
