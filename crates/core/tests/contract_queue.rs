//! The work queue contract (`sync::contract::queue`) against `MemoryQueue`: every check is a test.

use std::sync::Arc;

use async_trait::async_trait;
use s3_importer_core::sync::contract::queue::{QueueFixture, Received, TestQueue};
use s3_importer_core::sync::memory::MemoryQueue;
use s3_importer_core::sync::ports::FileQueue;

/// A new `MemoryQueue` per queue.
struct Memory;

struct MemoryTestQueue(Arc<MemoryQueue>);

#[async_trait]
impl TestQueue for MemoryTestQueue {
    fn queue(&self) -> Arc<dyn FileQueue> {
        self.0.clone()
    }

    async fn receive(&self, visibility_seconds: u32) -> Result<Vec<Received>, String> {
        Ok(self
            .0
            .receive(10, visibility_seconds)
            .into_iter()
            .map(|(receipt_handle, message)| Received {
                message,
                receipt_handle,
            })
            .collect())
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), String> {
        if self.0.delete(receipt_handle) {
            Ok(())
        } else {
            Err(format!(
                "no received message has the receipt handle {receipt_handle}"
            ))
        }
    }
}

#[async_trait]
impl QueueFixture for Memory {
    async fn new_queue(&self) -> Result<Box<dyn TestQueue>, String> {
        Ok(Box::new(MemoryTestQueue(Arc::new(MemoryQueue::new()))))
    }
}

async fn fixture() -> Result<Arc<dyn QueueFixture>, String> {
    Ok(Arc::new(Memory))
}

s3_importer_core::file_queue_contract_tests!(fixture());
