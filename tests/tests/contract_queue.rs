//! The work queue contract (`sync::contract::queue`) against `SqsQueue` on the emulator: the same checks
//! `MemoryQueue` passes. SQS failing single entries for its own reasons (retried) or as the sender's fault
//! (not retried) is checked at the request level in `crates/aws/src/queue.rs`: moto does not fail entries
//! on demand. The partial acceptance checked here is the adapter's own: a message over SQS's size limit is
//! never sent.
//!
//! Each test builds its own client and queue.

use std::sync::Arc;

use async_trait::async_trait;
use s3_importer_aws::consumer::SqsConsumer;
use s3_importer_aws::SqsQueue;
use s3_importer_core::sync::contract::queue::{QueueFixture, Received, TestQueue};
use s3_importer_core::sync::ports::FileQueue;
use s3_importer_core::sync::FileMessage;
use s3_importer_tests::{create_queue, emulator, sqs_client, unique_name};

struct Sqs {
    cfg: aws_config::SdkConfig,
}

struct SqsTestQueue {
    client: aws_sdk_sqs::Client,
    url: String,
    /// Deletes the messages a check is done with, as the local runner does.
    consumer: SqsConsumer,
}

#[async_trait]
impl TestQueue for SqsTestQueue {
    fn queue(&self) -> Arc<dyn FileQueue> {
        Arc::new(SqsQueue::new(self.client.clone(), &self.url))
    }

    async fn receive(&self, visibility_seconds: u32) -> Result<Vec<Received>, String> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(10)
            .visibility_timeout(i32::try_from(visibility_seconds).map_err(|e| e.to_string())?)
            .send()
            .await
            .map_err(|e| format!("receive from {}: {e:?}", self.url))?;
        out.messages()
            .iter()
            .map(|m| {
                let body = m.body().ok_or("a message without body")?;
                Ok(Received {
                    message: serde_json::from_str::<FileMessage>(body)
                        .map_err(|e| format!("message body {body:?}: {e}"))?,
                    receipt_handle: m
                        .receipt_handle()
                        .ok_or("a message without receipt handle")?
                        .to_owned(),
                })
            })
            .collect()
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), String> {
        self.consumer
            .delete(receipt_handle)
            .await
            .map_err(|e| format!("delete from {}: {e:?}", self.url))
    }
}

#[async_trait]
impl QueueFixture for Sqs {
    async fn new_queue(&self) -> Result<Box<dyn TestQueue>, String> {
        let url = create_queue(&self.cfg, &unique_name("contract-queue"))
            .await
            .map_err(|e| format!("{e:#}"))?;
        Ok(Box::new(SqsTestQueue {
            client: sqs_client(&self.cfg),
            consumer: SqsConsumer::new(sqs_client(&self.cfg), &url),
            url,
        }))
    }
}

async fn fixture() -> Result<Arc<dyn QueueFixture>, String> {
    Ok(Arc::new(Sqs {
        cfg: emulator().await.sdk_config().await,
    }))
}

s3_importer_core::file_queue_contract_tests!(fixture());
