//! The state contract (`sync::contract::state`) against the in-memory store: every check is a test.

use std::sync::Arc;

use s3_importer_core::sync::memory::MemoryStateStore;
use s3_importer_core::sync::ports::StateStore;

async fn store() -> Result<Arc<dyn StateStore>, String> {
    Ok(Arc::new(MemoryStateStore::new()))
}

s3_importer_core::state_store_contract_tests!(store());

/// The whole suite in one run against one store, as a smoke test of `state_store_contract` itself.
#[tokio::test]
async fn whole_contract_passes_on_one_shared_store() -> Result<(), String> {
    s3_importer_core::sync::contract::state::state_store_contract(Arc::new(MemoryStateStore::new()))
        .await
}
