//! The worker's CloudWatch metrics: one Embedded Metric Format document per file message (names and units in
//! `s3_importer_core::metrics`).

use s3_importer_core::metrics;
use s3_importer_core::sync::worker::MessageResult;

use crate::Worker;

/// Emits the document for one processed message (nothing for a body that was not a file message).
pub fn emit_for_message(worker: &Worker, result: &MessageResult) {
    let now = worker.deps.clock.now();
    if let Some(document) = metrics::file_message(&worker.metrics_namespace, result, now) {
        s3_importer_aws::telemetry::emit_metrics(&document);
    }
}
