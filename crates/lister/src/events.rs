//! The notification consumer: the lister function, invoked by the notification queue's event source mapping,
//! hands each batch of S3 notifications to `s3_importer_core::sync::events` (see `docs/architecture.md`,
//! "Event-driven discovery"). Malformed messages are acknowledged; the ones that met a transient failure are
//! returned as batch item failures (the mapping has `ReportBatchItemFailures`).

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use s3_importer_core::sync::events::{self, EventReport, EventSettings, InboundMessage};
use serde_json::Value;
use tracing::warn;

use crate::Lister;

/// True when the payload is an SQS event (what an event source mapping sends), not a schedule or CLI request.
pub fn is_sqs_event(payload: &Value) -> bool {
    payload
        .get("Records")
        .and_then(Value::as_array)
        .and_then(|records| records.first())
        .and_then(|record| record.get("eventSource"))
        .and_then(Value::as_str)
        == Some("aws:sqs")
}

/// Handles one batch of the notification queue. Returns the messages to retry, and the counts.
pub async fn handle_notifications(
    lister: &Lister,
    event: SqsEvent,
) -> (SqsBatchResponse, EventReport) {
    let settings = EventSettings {
        sync: lister.settings.sync,
    };
    // A message without an id cannot be handed back; without a body it is malformed (the empty body says so).
    let owned: Vec<(String, String)> = event
        .records
        .into_iter()
        .map(|m| (m.message_id.unwrap_or_default(), m.body.unwrap_or_default()))
        .collect();
    let messages: Vec<InboundMessage<'_>> = owned
        .iter()
        .map(|(id, body)| InboundMessage { id, body })
        .collect();
    let outcome = events::handle_batch(&lister.deps, &settings, &messages).await;
    let mut response = SqsBatchResponse::default();
    for id in outcome.retry {
        if id.is_empty() {
            warn!("a message without an id cannot be handed back; acknowledged");
            continue;
        }
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = id;
        response.batch_item_failures.push(failure);
    }
    (response, outcome.report)
}
