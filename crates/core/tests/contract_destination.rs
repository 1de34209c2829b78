//! The destination contract (`sync::contract::destination`) against `MemoryDestination`, which has the
//! records table's semantics (upserts): every check of that kind is a test.

use std::sync::Arc;

use async_trait::async_trait;
use s3_importer_core::sink::ErrorReportEntry;
use s3_importer_core::sync::contract::destination::{DestinationFixture, RowLineage, VisibleRow};
use s3_importer_core::sync::memory::MemoryDestination;
use s3_importer_core::sync::ports::Destination;
use s3_importer_core::sync::DestinationConfig;

struct Memory(MemoryDestination);

#[async_trait]
impl DestinationFixture for Memory {
    fn destination(&self) -> Arc<dyn Destination> {
        Arc::new(self.0.clone())
    }

    fn config(&self) -> DestinationConfig {
        DestinationConfig::Dynamodb {
            table: "records".into(),
        }
    }

    async fn visible_rows(&self, connector_id: &str) -> Result<Vec<VisibleRow>, String> {
        self.0
            .rows(connector_id)
            .into_iter()
            .map(|(pk, stored)| {
                Ok(VisibleRow {
                    row: serde_json::from_str(&stored.row).map_err(|e| format!("row {pk}: {e}"))?,
                    lineage: Some(RowLineage {
                        source_key: stored.source_key,
                        source_etag: stored.etag,
                        source_last_modified_ms: stored.last_modified.timestamp_millis(),
                        record: stored.record,
                    }),
                })
            })
            .collect()
    }

    async fn visible_outputs(&self, _connector_id: &str) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }

    async fn open_uploads(&self, _connector_id: &str) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }

    async fn report(&self, location: &str) -> Result<Option<Vec<ErrorReportEntry>>, String> {
        Ok(self.0.report(location))
    }
}

async fn fixture() -> Result<Arc<dyn DestinationFixture>, String> {
    Ok(Arc::new(Memory(MemoryDestination::new())))
}

s3_importer_core::destination_contract_tests!(fixture(), upserts);
