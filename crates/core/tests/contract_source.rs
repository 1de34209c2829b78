//! The object source contract (`sync::contract::source`) against `MemoryObjectSource`: every check is a test.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use s3_importer_core::sync::contract::source::{FixtureObject, SourceFixture};
use s3_importer_core::sync::contract::unique;
use s3_importer_core::sync::memory::{memory_etag, MemoryObject, MemoryObjectSource};
use s3_importer_core::sync::ports::ObjectSource;
use s3_importer_core::sync::Source;

/// Buckets in one `MemoryObjectSource`, owned by one account.
struct Memory {
    s3: Arc<MemoryObjectSource>,
}

#[async_trait]
impl SourceFixture for Memory {
    fn source(&self) -> Arc<dyn ObjectSource> {
        self.s3.clone()
    }

    async fn new_bucket(&self, prefix: Option<&str>) -> Result<Source, String> {
        let source = Source {
            account_id: "111111111111".into(),
            bucket: unique("bucket"),
            region: "us-east-1".into(),
            prefix: prefix.map(str::to_owned),
            role_arn: None,
            external_id: None,
            versions: false,
        };
        self.s3.create_bucket(&source.bucket, &source.account_id);
        Ok(source)
    }

    async fn put(&self, source: &Source, key: &str, object: FixtureObject) -> Result<(), String> {
        let etag = memory_etag(&object.bytes);
        self.s3.put_object(
            &source.bucket,
            key,
            MemoryObject {
                bytes: object.bytes,
                etag,
                last_modified: Utc::now(),
                storage_class: object.storage_class,
                restored: false,
                content_encoding: object.content_encoding,
                version_id: None,
            },
        );
        Ok(())
    }

    async fn delete(&self, source: &Source, key: &str) -> Result<(), String> {
        if self.s3.delete(&source.bucket, key) {
            Ok(())
        } else {
            Err(format!(
                "delete s3://{}/{key}: no such object",
                source.bucket
            ))
        }
    }

    async fn enable_versioning(&self, source: &Source) -> Result<(), String> {
        self.s3.enable_versioning(&source.bucket);
        Ok(())
    }
}

async fn fixture() -> Result<Arc<dyn SourceFixture>, String> {
    Ok(Arc::new(Memory {
        s3: Arc::new(MemoryObjectSource::new()),
    }))
}

s3_importer_core::object_source_contract_tests!(fixture());

/// The whole suite in one run on one fixture.
#[tokio::test]
async fn whole_contract_passes_on_one_fixture() -> Result<(), String> {
    use s3_importer_core::sync::contract::source::{run_checks, CHECKS};
    run_checks(fixture().await?, CHECKS).await
}
