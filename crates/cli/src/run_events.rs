//! The local host of the notification consumer: `s3-importer run` drains the notification queue through the
//! same handler the Lambda function runs (`s3_importer_lister::events`), before each lister pass.

use std::collections::HashSet;

use anyhow::{Context, Result};
use s3_importer_aws::consumer::{Received, SqsConsumer};
use s3_importer_core::sync::events::EventReport;
use s3_importer_lister::Lister;

/// What one drain did.
#[derive(Debug, Default)]
pub struct DrainSummary {
    /// Messages handled and deleted.
    pub acked: u64,
    /// Messages handed back (they come back after the queue's visibility timeout).
    pub retried: u64,
    /// File versions sent to the work queue.
    pub enqueued: u64,
}

/// Receives and handles notification messages until the queue has nothing new.
pub async fn drain(lister: &Lister, consumer: &SqsConsumer) -> Result<DrainSummary> {
    let mut summary = DrainSummary::default();
    let mut retried: HashSet<String> = HashSet::new();
    loop {
        let received = consumer
            .receive(10, 0)
            .await
            .context("cannot receive from the notification queue")?;
        let fresh: Vec<Received> = received
            .into_iter()
            .filter(|m| !retried.contains(&m.message_id))
            .collect();
        if fresh.is_empty() {
            return Ok(summary);
        }
        let event = s3_importer_worker::sqs_event(&fresh, None)
            .context("cannot build the SQS event of the notifications")?;
        let (response, report): (_, EventReport) =
            s3_importer_lister::events::handle_notifications(lister, event).await;
        summary.enqueued += report.enqueued;
        let failed: HashSet<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        for message in &fresh {
            if failed.contains(message.message_id.as_str()) {
                summary.retried += 1;
                retried.insert(message.message_id.clone());
            } else {
                consumer
                    .delete(&message.receipt_handle)
                    .await
                    .context("cannot delete a handled notification")?;
                summary.acked += 1;
            }
        }
    }
}
