//! The object source contract (`sync::contract::source`) against `S3Source` on the emulator: the same
//! checks `MemoryObjectSource` passes. What moto does not do (`ExpectedBucketOwner`, `RestoreStatus`, STS
//! `ExternalId`) is in `aws_adapters.rs` and the request-level tests of `crates/aws`.
//!
//! Each test builds its own client (a client is bound to the runtime it was first used on) and its own
//! buckets.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::StorageClass;
use s3_importer_aws::S3Source;
use s3_importer_core::sync::contract::source::{FixtureObject, SourceFixture};
use s3_importer_core::sync::ports::ObjectSource;
use s3_importer_core::sync::Source;
use s3_importer_tests::{create_bucket, emulator, s3_client, unique_name, ACCOUNT_ID, REGION};

struct S3 {
    client: aws_sdk_s3::Client,
    cfg: aws_config::SdkConfig,
}

#[async_trait]
impl SourceFixture for S3 {
    fn source(&self) -> Arc<dyn ObjectSource> {
        Arc::new(S3Source::with_client(self.client.clone()))
    }

    async fn new_bucket(&self, prefix: Option<&str>) -> Result<Source, String> {
        let bucket = unique_name("contract-source");
        create_bucket(&self.cfg, &bucket)
            .await
            .map_err(|e| format!("{e:#}"))?;
        Ok(Source {
            account_id: ACCOUNT_ID.to_owned(),
            bucket,
            region: REGION.to_owned(),
            prefix: prefix.map(str::to_owned),
            role_arn: None,
            external_id: None,
            versions: false,
        })
    }

    async fn put(&self, source: &Source, key: &str, object: FixtureObject) -> Result<(), String> {
        self.client
            .put_object()
            .bucket(&source.bucket)
            .key(key)
            .set_storage_class(object.storage_class.as_deref().map(StorageClass::from))
            .set_content_encoding(object.content_encoding)
            .body(ByteStream::from(object.bytes))
            .send()
            .await
            .map_err(|e| format!("put s3://{}/{key}: {e:?}", source.bucket))?;
        Ok(())
    }

    async fn delete(&self, source: &Source, key: &str) -> Result<(), String> {
        self.client
            .delete_object()
            .bucket(&source.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| format!("delete s3://{}/{key}: {e:?}", source.bucket))?;
        Ok(())
    }

    async fn enable_versioning(&self, source: &Source) -> Result<(), String> {
        s3_importer_tests::versions::enable_versioning(&self.client, &source.bucket)
            .await
            .map_err(|e| format!("{e:#}"))
    }
}

async fn fixture() -> Result<Arc<dyn SourceFixture>, String> {
    let cfg = emulator().await.sdk_config().await;
    Ok(Arc::new(S3 {
        client: s3_client(&cfg),
        cfg,
    }))
}

s3_importer_core::object_source_contract_tests!(fixture());
