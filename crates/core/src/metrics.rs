//! CloudWatch metrics as Embedded Metric Format (EMF) documents: one JSON object per line on the function's
//! standard output, which CloudWatch Logs turns into metrics with no API call and no extra permission.
//!
//! This module only builds the documents (pure, no I/O); the Lambda binaries print them. Every document
//! publishes its metrics twice: per connector (dimension [`CONNECTOR_DIMENSION`]) and for the whole deployment
//! (no dimension), which the template's alarms and dashboard read.
//!
//! | metric | unit | emitted by | meaning |
//! |---|---|---|---|
//! | `FilesListed` | Count | lister | objects listed in the connector's folder |
//! | `FilesEnqueued` | Count | lister | file versions sent to the work queue |
//! | `FilesSkipped` | Count | lister, worker | versions skipped (too large, archived, superseded, gone, ...) |
//! | `SyncDuration` | Milliseconds | lister | one connector's discovery pass |
//! | `SyncsSucceeded` / `SyncsFailed` | Count | lister | discovery passes that finished / failed |
//! | `FilesMissedByEvents` | Count | lister | versions of an event-mode connector found only by the reconciliation listing |
//! | `FilesFoundLate` | Count | lister | versions of a polling connector found by the reconciliation behind the poll window |
//! | `FilesImported` | Count | worker | files imported (some rows may be rejected) |
//! | `FilesFailed` | Count | worker | files that failed permanently |
//! | `FilesRetried` | Count | worker | messages handed back for a retry |
//! | `RowsImported` / `RowsRejected` | Count | worker | rows written / rows in error reports |
//! | `BytesRead` | Bytes | worker | bytes read from the source |
//! | `ImportLag` | Seconds | worker | from the file's LastModified to its import |
//!
//! See <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>.

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::sync::worker::{Disposition, MessageResult};
use crate::sync::{FileStatus, SyncRun};

/// Namespace used when `S3I_METRICS_NAMESPACE` is not set (the template sets `S3Importer/<stack>`).
pub const DEFAULT_NAMESPACE: &str = "S3Importer";
/// The per-connector dimension: the connector's id.
pub const CONNECTOR_DIMENSION: &str = "ConnectorId";

/// Metric names.
pub mod names {
    /// Objects listed.
    pub const FILES_LISTED: &str = "FilesListed";
    /// Versions enqueued.
    pub const FILES_ENQUEUED: &str = "FilesEnqueued";
    /// Versions skipped.
    pub const FILES_SKIPPED: &str = "FilesSkipped";
    /// Discovery pass duration.
    pub const SYNC_DURATION: &str = "SyncDuration";
    /// Discovery passes that finished.
    pub const SYNCS_SUCCEEDED: &str = "SyncsSucceeded";
    /// Discovery passes that failed.
    pub const SYNCS_FAILED: &str = "SyncsFailed";
    /// Files imported.
    pub const FILES_IMPORTED: &str = "FilesImported";
    /// Files failed permanently.
    pub const FILES_FAILED: &str = "FilesFailed";
    /// Files whose messages reached the dead-letter queue (also counted in [`FILES_FAILED`]).
    pub const FILES_DEAD_LETTERED: &str = "FilesDeadLettered";
    /// Messages handed back for a retry.
    pub const FILES_RETRIED: &str = "FilesRetried";
    /// Rows imported.
    pub const ROWS_IMPORTED: &str = "RowsImported";
    /// Rows rejected.
    pub const ROWS_REJECTED: &str = "RowsRejected";
    /// Bytes read from the source.
    pub const BYTES_READ: &str = "BytesRead";
    /// LastModified to import, in seconds.
    pub const IMPORT_LAG: &str = "ImportLag";
    /// Versions the reconciliation listing found that a connector's S3 events missed.
    pub const FILES_MISSED_BY_EVENTS: &str = "FilesMissedByEvents";
    /// Versions the reconciliation listing found behind a polling connector's window.
    pub const FILES_FOUND_LATE: &str = "FilesFoundLate";
    /// Connectors a scheduled lister run found active (deployment-wide only, no connector dimension).
    pub const ACTIVE_CONNECTORS: &str = "ActiveConnectors";
}

/// A CloudWatch unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A count.
    Count,
    /// Bytes.
    Bytes,
    /// Seconds.
    Seconds,
    /// Milliseconds.
    Milliseconds,
}

impl Unit {
    /// The name CloudWatch uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Bytes => "Bytes",
            Self::Seconds => "Seconds",
            Self::Milliseconds => "Milliseconds",
        }
    }
}

/// One EMF document: a namespace, a timestamp, dimensions, metrics and free-form properties.
#[derive(Debug, Clone, PartialEq)]
pub struct EmfDocument {
    namespace: String,
    timestamp_ms: i64,
    dimensions: Vec<(&'static str, String)>,
    metrics: Vec<(&'static str, Unit, f64)>,
    properties: Vec<(&'static str, Value)>,
}

impl EmfDocument {
    /// An empty document in `namespace` at `timestamp`.
    pub fn new(namespace: &str, timestamp: DateTime<Utc>) -> Self {
        Self {
            namespace: namespace.to_owned(),
            timestamp_ms: timestamp.timestamp_millis(),
            dimensions: Vec::new(),
            metrics: Vec::new(),
            properties: Vec::new(),
        }
    }

    /// Adds a dimension (the metrics are published with all dimensions, and again with none).
    pub fn dimension(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.dimensions.push((name, value.into()));
        self
    }

    /// Adds a metric value.
    pub fn metric(mut self, name: &'static str, unit: Unit, value: f64) -> Self {
        self.metrics.push((name, unit, value));
        self
    }

    /// Adds a property: searchable in CloudWatch Logs Insights, not a metric.
    pub fn property(mut self, name: &'static str, value: impl Into<Value>) -> Self {
        self.properties.push((name, value.into()));
        self
    }

    /// The value of metric `name`, if the document has it.
    pub fn value(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .find(|(n, _, _)| *n == name)
            .map(|(_, _, v)| *v)
    }

    /// The document as JSON.
    pub fn to_json(&self) -> Value {
        let dimension_names: Vec<&str> = self.dimensions.iter().map(|(n, _)| *n).collect();
        let dimension_sets = if dimension_names.is_empty() {
            json!([[]])
        } else {
            json!([dimension_names, []])
        };
        let definitions: Vec<Value> = self
            .metrics
            .iter()
            .map(|(name, unit, _)| json!({ "Name": name, "Unit": unit.as_str() }))
            .collect();
        let mut root = Map::new();
        for (name, value) in &self.properties {
            root.insert((*name).to_owned(), value.clone());
        }
        for (name, value) in &self.dimensions {
            root.insert((*name).to_owned(), Value::String(value.clone()));
        }
        for (name, _, value) in &self.metrics {
            root.insert((*name).to_owned(), json!(value));
        }
        root.insert(
            "_aws".to_owned(),
            json!({
                "Timestamp": self.timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": dimension_sets,
                    "Metrics": definitions,
                }],
            }),
        );
        Value::Object(root)
    }

    /// The document as one line of JSON (no trailing newline).
    pub fn to_line(&self) -> String {
        self.to_json().to_string()
    }
}

/// Counts as metric values (exact below 2^53, far beyond any real count).
fn count(n: u64) -> f64 {
    n as f64
}

/// The lister's deployment-wide document for one invocation: how many connectors were active (synced or held by
/// another run). Emitted on every run, also when no connector is active, so an alarm can tell "nothing to sync"
/// from "syncs failing".
pub fn lister_run(namespace: &str, active_connectors: u64, now: DateTime<Utc>) -> EmfDocument {
    EmfDocument::new(namespace, now)
        .property("Function", "lister")
        .metric(
            names::ACTIVE_CONNECTORS,
            Unit::Count,
            count(active_connectors),
        )
}

/// The lister's document for one connector's discovery pass.
pub fn sync_run(
    namespace: &str,
    connector_name: &str,
    run: &SyncRun,
    now: DateTime<Utc>,
) -> EmfDocument {
    let failed = run.error.is_some();
    let mut doc = EmfDocument::new(namespace, now)
        .dimension(CONNECTOR_DIMENSION, run.connector_id.clone())
        .property("Function", "lister")
        .property("Connector", connector_name)
        .metric(names::FILES_LISTED, Unit::Count, count(run.listed))
        .metric(names::FILES_ENQUEUED, Unit::Count, count(run.enqueued))
        .metric(
            names::FILES_SKIPPED,
            Unit::Count,
            count(run.skipped.values().sum()),
        )
        .metric(
            names::SYNC_DURATION,
            Unit::Milliseconds,
            count(run.duration_ms),
        )
        .metric(
            names::SYNCS_SUCCEEDED,
            Unit::Count,
            if failed { 0.0 } else { 1.0 },
        )
        .metric(
            names::SYNCS_FAILED,
            Unit::Count,
            if failed { 1.0 } else { 0.0 },
        );
    // Only a run that reconciled says how many files the reconciliation found: the alarm on
    // `FilesMissedByEvents` reads a sum, and a missing point is no news.
    if let Some(reconciled) = &run.reconciled {
        doc = doc
            .metric(
                names::FILES_MISSED_BY_EVENTS,
                Unit::Count,
                count(reconciled.missed_by_events),
            )
            .metric(
                names::FILES_FOUND_LATE,
                Unit::Count,
                count(reconciled.found_late),
            );
    }
    doc
}

/// The lister's document for one connector's files found in the dead-letter queue and marked `failed`:
/// counted as dead-lettered and as failed, so the failed-files alarm sees them too.
pub fn files_dead_lettered(
    namespace: &str,
    connector_id: &str,
    files: u64,
    now: DateTime<Utc>,
) -> EmfDocument {
    EmfDocument::new(namespace, now)
        .dimension(CONNECTOR_DIMENSION, connector_id.to_owned())
        .property("Function", "lister")
        .metric(names::FILES_DEAD_LETTERED, Unit::Count, count(files))
        .metric(names::FILES_FAILED, Unit::Count, count(files))
}

/// The worker's document for one message, or `None` when the body was not a file message (nothing to
/// attribute it to; the worker logs those). The file comes from [`MessageResult::message`].
pub fn file_message(
    namespace: &str,
    result: &MessageResult,
    now: DateTime<Utc>,
) -> Option<EmfDocument> {
    let message = result.message.as_ref()?;
    let status = result.status;
    let is = |s: FileStatus| if status == Some(s) { 1.0 } else { 0.0 };
    let skipped = matches!(
        status,
        Some(FileStatus::Skipped | FileStatus::Superseded | FileStatus::Gone)
    );
    let mut doc = EmfDocument::new(namespace, now)
        .dimension(CONNECTOR_DIMENSION, message.version.connector_id.clone())
        .property("Function", "worker")
        .property("Key", message.version.key.clone())
        .property("Status", status.map(|s| s.as_str()).unwrap_or(""))
        .metric(names::FILES_IMPORTED, Unit::Count, is(FileStatus::Imported))
        .metric(names::FILES_FAILED, Unit::Count, is(FileStatus::Failed))
        .metric(
            names::FILES_SKIPPED,
            Unit::Count,
            if skipped { 1.0 } else { 0.0 },
        )
        .metric(
            names::FILES_RETRIED,
            Unit::Count,
            if result.disposition == Disposition::Retry {
                1.0
            } else {
                0.0
            },
        )
        .metric(
            names::ROWS_IMPORTED,
            Unit::Count,
            count(result.counts.rows_imported),
        )
        .metric(
            names::ROWS_REJECTED,
            Unit::Count,
            count(result.counts.rows_rejected),
        )
        .metric(names::BYTES_READ, Unit::Bytes, count(result.bytes));
    if status == Some(FileStatus::Imported) {
        let lag_ms = (now - message.last_modified).num_milliseconds().max(0);
        doc = doc.metric(names::IMPORT_LAG, Unit::Seconds, lag_ms as f64 / 1000.0);
    }
    Some(doc)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(secs, 0).single().unwrap_or_default()
    }

    #[test]
    fn the_lister_run_document_is_deployment_wide() {
        let doc = lister_run("S3Importer/s", 0, at(1_700_000_000)).to_json();
        assert_eq!(doc["ActiveConnectors"], 0.0);
        assert_eq!(doc["Function"], "lister");
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            serde_json::json!([[]])
        );
        assert_eq!(
            doc["_aws"]["CloudWatchMetrics"][0]["Metrics"],
            serde_json::json!([{ "Name": "ActiveConnectors", "Unit": "Count" }])
        );
    }

    #[test]
    fn document_shape_follows_the_specification() {
        let doc = EmfDocument::new("Ns", at(1_700_000_000))
            .dimension(CONNECTOR_DIMENSION, "c-1")
            .property("Connector", "orders")
            .metric("RowsImported", Unit::Count, 3.0)
            .to_json();
        assert_eq!(doc["_aws"]["Timestamp"], json!(1_700_000_000_000i64));
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Ns");
        assert_eq!(directive["Dimensions"], json!([["ConnectorId"], []]));
        assert_eq!(
            directive["Metrics"],
            json!([{ "Name": "RowsImported", "Unit": "Count" }])
        );
        assert_eq!(doc["ConnectorId"], "c-1");
        assert_eq!(doc["RowsImported"], json!(3.0));
        assert_eq!(doc["Connector"], "orders");
    }

    #[test]
    fn a_failed_sync_counts_as_failed_not_succeeded() {
        let run = SyncRun {
            connector_id: "c-1".into(),
            started_at: at(0),
            duration_ms: 12,
            listed: 5,
            candidates: 4,
            new: 3,
            enqueued: 2,
            resent: 0,
            already_known: 1,
            skipped: [("too_large".to_owned(), 1u64)].into_iter().collect(),
            watermark_before: None,
            watermark_after: None,
            error: Some("AccessDenied".into()),
            reconciled: None,
        };
        let doc = sync_run("Ns", "orders", &run, at(10));
        assert_eq!(doc.value(names::SYNCS_FAILED), Some(1.0));
        assert_eq!(doc.value(names::SYNCS_SUCCEEDED), Some(0.0));
        assert_eq!(doc.value(names::FILES_SKIPPED), Some(1.0));
        assert_eq!(doc.value(names::FILES_ENQUEUED), Some(2.0));
        assert_eq!(doc.value(names::FILES_MISSED_BY_EVENTS), None);
    }

    #[test]
    fn a_run_that_reconciled_counts_what_the_reconciliation_found() {
        let run = SyncRun {
            connector_id: "c-1".into(),
            reconciled: Some(crate::sync::ReconcileRun {
                found: 3,
                missed_by_events: 2,
                found_late: 0,
                ..Default::default()
            }),
            ..SyncRun::default()
        };
        let doc = sync_run("Ns", "orders", &run, at(10));
        assert_eq!(doc.value(names::FILES_MISSED_BY_EVENTS), Some(2.0));
        assert_eq!(doc.value(names::FILES_FOUND_LATE), Some(0.0));
    }

    #[test]
    fn import_lag_only_for_imported_files_and_nothing_for_foreign_messages() {
        let message = serde_json::from_value(json!({
            "v": 1, "connector_id": "c-1", "bucket": "b", "key": "k.csv", "etag": "\"e\"",
            "size": 10, "last_modified": "1970-01-01T00:00:00Z"
        }))
        .ok();
        assert!(message.is_some());
        let imported = MessageResult {
            disposition: Disposition::Ack,
            message,
            status: Some(FileStatus::Imported),
            counts: crate::pipeline::Counts::of(7, 1),
            bytes: 10,
            detail: String::new(),
        };
        let doc = file_message("Ns", &imported, at(90));
        assert_eq!(
            doc.as_ref().and_then(|d| d.value(names::IMPORT_LAG)),
            Some(90.0)
        );
        let retried = MessageResult {
            disposition: Disposition::Retry,
            status: None,
            ..imported
        };
        let doc = file_message("Ns", &retried, at(90));
        assert_eq!(doc.as_ref().and_then(|d| d.value(names::IMPORT_LAG)), None);
        assert_eq!(
            doc.as_ref().and_then(|d| d.value(names::FILES_RETRIED)),
            Some(1.0)
        );
        // A body that is not a file message leaves the result without one.
        let foreign = MessageResult {
            message: None,
            ..retried
        };
        assert!(file_message("Ns", &foreign, at(90)).is_none());
    }
}
