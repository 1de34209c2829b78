//! A source that fails transiently or sees its object overwritten from some request on, by wrapping the memory
//! adapter. The destination and queue faults both tiers inject are in `sync::contract::fixtures`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use s3_importer_core::sync::memory::MemoryObjectSource;
use s3_importer_core::sync::model::Source;
use s3_importer_core::sync::ports::{ByteRange, ListPage, ObjectBody, ObjectSource, SourceError};

/// What a [`FaultySource`] does from its n-th `open` on (listing passes through).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceFault {
    /// Every `open` from the n-th (1-based) on fails transiently (503 SlowDown past the SDK's retries).
    TransientFrom(usize),
    /// Just before the n-th `open`, the object is overwritten with other bytes (a new ETag).
    OverwrittenAt(usize),
}

/// Wraps the memory source and injects a [`SourceFault`] into reads.
pub struct FaultySource {
    inner: Arc<MemoryObjectSource>,
    fault: SourceFault,
    opens: AtomicUsize,
}

impl FaultySource {
    /// `inner` with `fault`.
    pub fn new(inner: Arc<MemoryObjectSource>, fault: SourceFault) -> Self {
        Self {
            inner,
            fault,
            opens: AtomicUsize::new(0),
        }
    }

    /// How many times `open` was called.
    pub fn opens(&self) -> usize {
        self.opens.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl ObjectSource for FaultySource {
    async fn list_page(
        &self,
        source: &Source,
        continuation: Option<String>,
    ) -> Result<ListPage, SourceError> {
        self.inner.list_page(source, continuation).await
    }

    async fn list_page_after(
        &self,
        source: &Source,
        start_after: &str,
    ) -> Result<ListPage, SourceError> {
        self.inner.list_page_after(source, start_after).await
    }

    async fn head(
        &self,
        source: &Source,
        key: &str,
        version_id: Option<&str>,
    ) -> Result<Option<s3_importer_core::sync::ObjectMeta>, SourceError> {
        self.inner.head(source, key, version_id).await
    }

    async fn older_versions(
        &self,
        source: &Source,
        key: &str,
        version_id: &str,
        max: usize,
    ) -> Result<Vec<s3_importer_core::sync::ObjectMeta>, SourceError> {
        self.inner
            .older_versions(source, key, version_id, max)
            .await
    }

    async fn open(
        &self,
        source: &Source,
        key: &str,
        etag: &str,
        version_id: Option<&str>,
        range: Option<ByteRange>,
    ) -> Result<ObjectBody, SourceError> {
        let n = self.opens.fetch_add(1, Ordering::SeqCst) + 1;
        match self.fault {
            SourceFault::TransientFrom(from) if n >= from => {
                return Err(SourceError::Transient {
                    context: format!("read s3://{}/{key}", source.bucket),
                    source: "503 SlowDown (injected)".into(),
                })
            }
            SourceFault::OverwrittenAt(at) if n == at => {
                if let Some(mut object) = self.inner.get(&source.bucket, key) {
                    object.bytes.extend_from_slice(b"overwritten,1\n");
                    object.etag = s3_importer_core::sync::memory::memory_etag(&object.bytes);
                    self.inner.put_object(&source.bucket, key, object);
                }
            }
            _ => {}
        }
        self.inner.open(source, key, etag, version_id, range).await
    }
}
