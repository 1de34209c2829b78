//! Faults injected by wrapping a port around its memory adapter: a destination that throttles or holds (a
//! worker "killed" mid-file is one whose future is dropped while held), a queue whose sends hang, a source
//! that fails transiently or sees its object overwritten from some request on.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use s3_importer_core::sink::{RejectSink, RowBatch, RowSink, SinkError};
use s3_importer_core::sync::memory::{MemoryObjectSource, MemoryQueue};
use s3_importer_core::sync::model::{FileMessage, Source};
use s3_importer_core::sync::ports::{
    ByteRange, Destination, FileJob, FileQueue, ListPage, ObjectBody, ObjectSource, QueueError,
    SourceError,
};
use tokio::sync::Notify;

/// A destination fault, after some rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// After this many rows, every write fails with a transient error (throttling, 5xx).
    TransientAfter(u64),
    /// After this many rows, writes wait until [`FaultyDestination::release`] (forever when never released:
    /// the worker is "killed" when its caller drops it).
    HoldAfter(u64),
    /// Every batch waits this long, then goes through.
    Slow(std::time::Duration),
}

/// Wraps a destination and injects a [`Fault`] into its row sinks (error reports pass through), recording
/// the record number of every row it lets through.
#[derive(Clone)]
pub struct FaultyDestination {
    inner: Arc<dyn Destination>,
    fault: Fault,
    held: Arc<Notify>,
    release: Arc<Notify>,
    written: Arc<Mutex<Vec<u64>>>,
}

impl FaultyDestination {
    /// `inner` with `fault`.
    pub fn new(inner: Arc<dyn Destination>, fault: Fault) -> Self {
        Self {
            inner,
            fault,
            held: Arc::new(Notify::new()),
            release: Arc::new(Notify::new()),
            written: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// `inner` with no fault: only records what is written.
    pub fn recording(inner: Arc<dyn Destination>) -> Self {
        Self::new(inner, Fault::Slow(std::time::Duration::ZERO))
    }

    /// Resolves once a write is held ([`Fault::HoldAfter`]).
    pub async fn held(&self) {
        self.held.notified().await;
    }

    /// Lets the held write go on.
    pub fn release(&self) {
        self.release.notify_one();
    }

    /// The record numbers of the rows let through, in the order written.
    pub fn written(&self) -> Vec<u64> {
        self.written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// How many times each record was written.
    pub fn writes_per_record(&self) -> BTreeMap<u64, u32> {
        let mut out = BTreeMap::new();
        for record in self.written() {
            *out.entry(record).or_default() += 1;
        }
        out
    }
}

#[async_trait]
impl Destination for FaultyDestination {
    async fn open_rows(&self, job: &FileJob) -> Result<Box<dyn RowSink>, SinkError> {
        let inner = self.inner.open_rows(job).await?;
        let rows_left = match self.fault {
            Fault::TransientAfter(n) | Fault::HoldAfter(n) => n,
            Fault::Slow(_) => u64::MAX,
        };
        Ok(Box::new(FaultySink {
            inner,
            destination: self.clone(),
            rows_left,
        }))
    }

    async fn open_rejects(&self, job: &FileJob) -> Result<Box<dyn RejectSink>, SinkError> {
        self.inner.open_rejects(job).await
    }
}

struct FaultySink {
    inner: Box<dyn RowSink>,
    destination: FaultyDestination,
    rows_left: u64,
}

impl FaultySink {
    async fn pass(&mut self, batch: &RowBatch) -> Result<(), SinkError> {
        self.inner.write_batch(batch).await?;
        self.destination
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(batch.iter().map(|(position, _)| position.record));
        Ok(())
    }
}

#[async_trait]
impl RowSink for FaultySink {
    async fn write_batch(&mut self, batch: &RowBatch) -> Result<(), SinkError> {
        if let Fault::Slow(delay) = self.destination.fault {
            tokio::time::sleep(delay).await;
        }
        if batch.len() as u64 <= self.rows_left {
            self.rows_left -= batch.len() as u64;
            return self.pass(batch).await;
        }
        // Write the rows before the fault, then fail or hold.
        let mut before = RowBatch::default();
        for (position, row) in batch.iter().take(self.rows_left as usize) {
            before.push_row(position, row);
        }
        if !before.is_empty() {
            self.pass(&before).await?;
        }
        self.rows_left = 0;
        match self.destination.fault {
            Fault::HoldAfter(_) => {
                self.destination.held.notify_one();
                self.destination.release.notified().await;
                self.rows_left = u64::MAX;
                let mut rest = RowBatch::default();
                for (position, row) in batch.iter().skip(before.len()) {
                    rest.push_row(position, row);
                }
                self.pass(&rest).await
            }
            _ => Err(SinkError::transient(
                "write to the destination (injected fault)",
                "ProvisionedThroughputExceededException: rate of requests exceeds the allowed throughput",
            )),
        }
    }

    async fn finish(&mut self) -> Result<(), SinkError> {
        self.inner.finish().await
    }

    async fn abort(&mut self) -> Result<(), SinkError> {
        self.inner.abort().await
    }

    async fn suspend(&mut self) -> Result<Option<serde_json::Value>, SinkError> {
        self.inner.suspend().await
    }
}

/// A queue fault: the worker is "killed" (its future never returns) at one point of handing a file over to
/// its next piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueFault {
    /// Sending never returns and sends nothing (killed after the checkpoint, before the send).
    HangBeforeSend,
    /// The message is sent, then the call never returns (killed after the send, before the ack).
    HangAfterSend,
}

/// Wraps the memory queue and injects a [`QueueFault`] into sends (the heartbeat passes through).
#[derive(Clone)]
pub struct FaultyQueue {
    inner: Arc<MemoryQueue>,
    fault: QueueFault,
    hung: Arc<Notify>,
}

impl FaultyQueue {
    /// `inner` with `fault`.
    pub fn new(inner: Arc<MemoryQueue>, fault: QueueFault) -> Self {
        Self {
            inner,
            fault,
            hung: Arc::new(Notify::new()),
        }
    }

    /// Resolves once a send hangs.
    pub async fn hung(&self) {
        self.hung.notified().await;
    }
}

#[async_trait]
impl FileQueue for FaultyQueue {
    async fn send(&self, messages: &[FileMessage]) -> Result<Vec<bool>, QueueError> {
        if self.fault == QueueFault::HangAfterSend {
            self.inner.send(messages).await?;
        }
        self.hung.notify_one();
        std::future::pending().await
    }

    async fn extend_visibility(
        &self,
        receipt_handle: &str,
        seconds: u32,
    ) -> Result<(), QueueError> {
        self.inner.extend_visibility(receipt_handle, seconds).await
    }
}

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

    async fn open(
        &self,
        source: &Source,
        key: &str,
        etag: &str,
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
        self.inner.open(source, key, etag, range).await
    }
}
