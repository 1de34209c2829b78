//! Fixtures shared by the two tiers of the sync engine's tests: the fast tier on the in-memory adapters
//! (`crates/core/tests/engine_*.rs`) and the emulator suites (`tests/tests/sync_e2e.rs`, `large_files.rs`).
//! Both run the same scenarios, so the files they import, the faults they inject into the ports, the piece
//! settings, the scenario matrices and the checks that both tiers make are written here once.
//!
//! Checks return a [`CheckResult`]: `Err` says what differed, and each tier turns it into its own error.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use chrono::Duration;
use tokio::sync::Notify;

use super::{expect, expect_eq, CheckResult};
use crate::sink::{ErrorReportEntry, RejectSink, RowBatch, RowSink, SinkError};
use crate::sync::model::{
    Connector, ConnectorStatus, DestinationConfig, FileMessage, FileStatus, FileVersion,
    LedgerEntry, ObjectMeta, Source, SyncRun,
};
use crate::sync::ports::{Destination, FileJob, FileQueue, QueueError};
use crate::sync::read_ahead::ReadAhead;
use crate::sync::worker::WorkerSettings;
use crate::template::Template;
use crate::ErrorCode;

/// The default template of both tiers: `id` (the primary key, a string) and `qty` (an integer, at least 0),
/// from CSV, JSON Lines or JSON by extension. A TOML file, so that the emulator suites' library
/// (`tests/src/deployment.rs`), which builds without the `contract-tests` feature, includes the same text.
pub const TEMPLATE: &str = include_str!("items.toml");

// ---------------------------------------------------------------------------------------------------------
// Jobs handed to a destination directly
// ---------------------------------------------------------------------------------------------------------

/// The job a destination receives for `object`, a file version of the connector `connector_id` reading
/// `source` and writing to `destination` with `template`: what the destination suites and the adapters' own
/// tests hand a [`Destination`] without a worker. The connector was created when the object was last modified.
pub fn file_job(
    connector_id: &str,
    source: Source,
    destination: DestinationConfig,
    template: Template,
    object: &ObjectMeta,
) -> FileJob {
    let at = object.last_modified;
    let version = FileVersion {
        connector_id: connector_id.to_owned(),
        bucket: source.bucket.clone(),
        key: object.key.clone(),
        etag: object.etag.clone(),
        version_id: None,
    };
    FileJob {
        connector: Connector {
            id: connector_id.to_owned(),
            name: format!("n-{connector_id}"),
            status: ConnectorStatus::Active,
            source,
            template_id: template.name.clone(),
            template_version: None,
            destination,
            created_at: at,
            updated_at: at,
            watermark: None,
            last_sync: None,
            discovery: Default::default(),
            reconcile: None,
        },
        entry: LedgerEntry::discovered(version, object, at),
        template: Arc::new(template),
    }
}

/// Ledger entries by name in the folder (`prefix` stripped from the key); a key has one entry per version.
pub fn by_name(entries: Vec<LedgerEntry>, prefix: &str) -> BTreeMap<String, Vec<LedgerEntry>> {
    let mut files: BTreeMap<String, Vec<LedgerEntry>> = BTreeMap::new();
    for entry in entries {
        let key = &entry.version.key;
        let name = key.strip_prefix(prefix).unwrap_or(key).to_owned();
        files.entry(name).or_default().push(entry);
    }
    files
}

/// A batch of `rows` (JSON objects) as records 1, 2, … on lines 2, 3, … (the lines after a CSV header).
pub fn batch_of(rows: &[&str]) -> RowBatch {
    let mut batch = RowBatch::default();
    for (record, row) in (1u64..).zip(rows) {
        let position = crate::Position {
            record,
            line: record + 1,
            byte: 0,
        };
        batch.push_row(position, row.as_bytes());
    }
    batch
}

// ---------------------------------------------------------------------------------------------------------
// Files of the default template
// ---------------------------------------------------------------------------------------------------------

/// A CSV file of the default template: `id,qty` and one line per row.
pub fn csv(rows: &[(&str, i64)]) -> Vec<u8> {
    let mut out = String::from("id,qty\n");
    for (id, qty) in rows {
        out.push_str(&format!("{id},{qty}\n"));
    }
    out.into_bytes()
}

/// `n` rows of the default template, `<prefix>-00001` ...; every 7th has a negative `qty` (rejected:
/// `min = 0`), so a file of them has an error report.
pub fn rows(prefix: &str, n: usize) -> Vec<(String, i64)> {
    (1..=n)
        .map(|i| {
            let qty = if i % 7 == 0 { -(i as i64) } else { i as i64 };
            (format!("{prefix}-{i:05}"), qty)
        })
        .collect()
}

/// `rows` as a delimited file (`id<sep>qty` header), CSV with `,`, TSV with `\t`.
pub fn delimited(rows: &[(String, i64)], sep: char) -> Vec<u8> {
    let mut out = format!("id{sep}qty\n").into_bytes();
    for (id, qty) in rows {
        out.extend_from_slice(format!("{id}{sep}{qty}\n").as_bytes());
    }
    out
}

/// `rows` as JSON Lines.
pub fn jsonl(rows: &[(String, i64)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (id, qty) in rows {
        out.extend_from_slice(format!("{{\"id\":\"{id}\",\"qty\":{qty}}}\n").as_bytes());
    }
    out
}

/// `rows` as one JSON array, an object per line.
pub fn json_array(rows: &[(String, i64)]) -> Vec<u8> {
    let items: Vec<String> = rows
        .iter()
        .map(|(id, qty)| format!("  {{\"id\": \"{id}\", \"qty\": {qty}}}"))
        .collect();
    format!("[\n{}\n]\n", items.join(",\n")).into_bytes()
}

/// `bytes` gzip-compressed.
pub fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes)?;
    encoder.finish()
}

// ---------------------------------------------------------------------------------------------------------
// Pieces
// ---------------------------------------------------------------------------------------------------------

/// Time left in each invocation of a piece-by-piece drain (the handler starts no message with < 20 s).
pub fn piece_time() -> Duration {
    Duration::seconds(30)
}

/// Ranged reads of `chunk_bytes`, 3 in flight, for objects of any size.
pub fn ranged_reads(chunk_bytes: u64) -> ReadAhead {
    ReadAhead {
        chunk_bytes,
        in_flight: 3,
        min_object_bytes: 1,
    }
}

/// `settings` for a worker whose every piece writes about one batch of `batch_rows` and stops (its
/// checkpoint margin is the whole invocation of [`piece_time`]), reading ranges of 1000 bytes (the one-pass
/// imports they are compared with read one stream).
pub fn piecewise(settings: &WorkerSettings, batch_rows: usize) -> WorkerSettings {
    WorkerSettings {
        checkpoint_margin: piece_time(),
        batch_rows,
        read_ahead: ranged_reads(1000),
        ..settings.clone()
    }
}

/// Where a piece is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    /// Mid-piece, after some rows were written, before the checkpoint.
    BeforeCheckpoint,
    /// After the checkpoint, before the continuation was sent.
    AfterCheckpoint,
    /// After the continuation was sent, before the message was acked.
    AfterSend,
    /// The whole hand-over done, but the ack lost (the message comes back).
    AckLost,
}

impl Kill {
    /// The file's status once the piece is dead: `processing` when it died before its checkpoint, `queued`
    /// (waiting for its continuation) after.
    pub fn status_after(self) -> FileStatus {
        match self {
            Kill::BeforeCheckpoint => FileStatus::Processing,
            _ => FileStatus::Queued,
        }
    }

    /// The queue fault that kills the piece at this point, if a queue fault does.
    pub fn queue_fault(self) -> Option<QueueFault> {
        match self {
            Kill::AfterCheckpoint => Some(QueueFault::HangBeforeSend),
            Kill::AfterSend => Some(QueueFault::HangAfterSend),
            _ => None,
        }
    }
}

/// One `#[tokio::test]` per [`Kill`] point, each calling `scenario(kill).await` (an async fn of the test
/// file returning `ret`): both tiers run the same four kills under the same names.
#[macro_export]
macro_rules! piece_kill_tests {
    ($scenario:ident -> $ret:ty) => {
        $crate::piece_kill_tests!(@each $scenario -> $ret;
            piece_killed_before_its_checkpoint_is_redone: BeforeCheckpoint,
            piece_killed_after_its_checkpoint_sends_the_continuation_on_redelivery: AfterCheckpoint,
            piece_killed_after_sending_the_continuation_does_not_import_twice: AfterSend,
            lost_ack_of_a_finished_piece_is_recognised_from_the_ledger: AckLost,
        );
    };
    (@each $scenario:ident -> $ret:ty; $($test:ident: $kill:ident,)*) => {
        $(
            #[tokio::test]
            async fn $test() -> $ret {
                $scenario($crate::sync::contract::fixtures::Kill::$kill).await
            }
        )*
    };
}

/// How the third piece of a file fails while its worker lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceFault {
    /// The source keeps failing (503 SlowDown, past the read's retries) once the piece has read a few
    /// ranges.
    SourceFailsMidPiece,
    /// The source keeps failing before the piece has read one whole record.
    SourceFailsBeforeARecord,
    /// The destination keeps failing transiently (throttling) after a few rows.
    DestinationFails,
}

impl PieceFault {
    /// For a source fault, `(n, chunk_bytes)`: reading ranges of `chunk_bytes`, every read from the n-th
    /// (1-based) on fails. Ranges of 1000 bytes (about 90 rows): four are read, the fifth keeps failing.
    /// Ranges of 4 bytes: the first holds no whole record, the second keeps failing.
    pub fn failing_reads(self) -> Option<(usize, u64)> {
        match self {
            PieceFault::SourceFailsMidPiece => Some((5, 1000)),
            PieceFault::SourceFailsBeforeARecord => Some((2, 4)),
            PieceFault::DestinationFails => None,
        }
    }
}

/// Rows imported or rejected before the entry's checkpoint.
pub fn rows_at(entry: &LedgerEntry) -> u64 {
    entry
        .checkpoint
        .as_ref()
        .map_or(0, |c| c.rows_imported + c.rows_rejected)
}

/// After [`PieceFault::SourceFailsMidPiece`]: the third piece made progress past the entry `before` it,
/// checkpointed after its last complete record and handed over to a new message.
pub fn check_progressed_and_handed_over(before: &LedgerEntry, after: &LedgerEntry) -> CheckResult {
    let handed_over = after
        .checkpoint
        .as_ref()
        .is_some_and(|c| c.piece == 3 && c.continued);
    let progressed = rows_at(after) > rows_at(before) + 40;
    expect(
        &format!("the piece made progress and handed over: {after:#?}"),
        after.status == FileStatus::Queued && handed_over && progressed,
    )
}

/// After [`PieceFault::SourceFailsBeforeARecord`]: nothing to checkpoint, so the file is `queued` again
/// with its checkpoint as it was `before`, and says why.
pub fn check_interrupted_before_any_record(
    before: &LedgerEntry,
    after: &LedgerEntry,
) -> CheckResult {
    expect_eq(
        &format!("(status, checkpoint) of {after:#?}"),
        (after.status, &after.checkpoint),
        (FileStatus::Queued, &before.checkpoint),
    )?;
    let error = after.error.as_deref().unwrap_or_default();
    expect(
        &format!("the error says why: {after:#?}"),
        error.contains("interrupted before any record"),
    )
}

// ---------------------------------------------------------------------------------------------------------
// Checks both tiers make
// ---------------------------------------------------------------------------------------------------------

/// An object overwritten during a ranged read ends `superseded`, saying so.
pub fn check_superseded_while_read(entry: &LedgerEntry) -> CheckResult {
    let error = entry.error.as_deref().unwrap_or_default();
    expect(
        &format!("{entry:#?}"),
        entry.status == FileStatus::Superseded && error.contains("while it was read"),
    )
}

/// A CSV file with three bad values among five rows (`r-2`, `r-3` and `r-4` are rejected).
pub const REJECTS_CSV: &[u8] = b"id,qty\nr-1,1\nr-2,not-a-number\nr-3,\nr-4,-5\nr-5,5\n";

/// [`REJECTS_CSV`] imported: two rows imported, three rejected.
pub fn check_rejects_imported(entry: &LedgerEntry) -> CheckResult {
    expect_eq(
        &format!("(status, rows_imported, rows_rejected) of {entry:#?}"),
        (entry.status, entry.rows_imported, entry.rows_rejected),
        (FileStatus::Imported, 2, 3),
    )
}

/// The error report of [`REJECTS_CSV`]: one positioned entry per rejected value, and never the value itself.
pub fn check_rejects_report(entries: &[ErrorReportEntry]) -> CheckResult {
    let summary: Vec<(u64, u64, Option<&str>, ErrorCode)> = entries
        .iter()
        .map(|e| (e.record, e.line, e.column.as_deref(), e.code))
        .collect();
    expect_eq(
        "the report's entries",
        summary,
        vec![
            (2, 3, Some("qty"), ErrorCode::InvalidInteger),
            (3, 4, Some("qty"), ErrorCode::NullValue),
            (4, 5, Some("qty"), ErrorCode::ConstraintViolated),
        ],
    )?;
    expect(
        &format!("the report never holds values: {entries:#?}"),
        entries.iter().all(|e| !e.message.contains("not-a-number")),
    )
}

/// A file whose message went to the dead-letter queue after its second receive: still `queued`, after two
/// attempts, with its last (transient) error kept; and the lister pass after that sent it again
/// `enqueued_again` times, which must be none.
pub fn check_dead_lettered(entry: &LedgerEntry, enqueued_again: u64) -> CheckResult {
    expect_eq(
        "(status, attempts)",
        (entry.status, entry.attempts),
        (FileStatus::Queued, 2),
    )?;
    expect(
        &format!("the last transient error is kept: {entry:#?}"),
        entry.error.is_some(),
    )?;
    expect_eq(
        "files a lister pass sends again (a queued file is never re-sent by the lister)",
        enqueued_again,
        0,
    )
}

/// Every version of every file in `files` (the ledger by file name) is `imported`.
pub fn check_all_imported(files: &BTreeMap<String, Vec<LedgerEntry>>) -> CheckResult {
    expect(
        &format!("every file imported: {files:#?}"),
        files
            .values()
            .flatten()
            .all(|e| e.status == FileStatus::Imported),
    )
}

/// A pass over a connector whose bucket does not exist: the run names `bucket`, lists and sends nothing and
/// keeps no watermark, and the connector is broken saying the bucket does not exist.
pub fn check_missing_bucket(run: &SyncRun, status: &ConnectorStatus, bucket: &str) -> CheckResult {
    let error = run.error.clone().unwrap_or_default();
    expect(
        &format!("the run names the bucket: {run:#?}"),
        error.contains(bucket),
    )?;
    expect_eq(
        "(listed, enqueued, watermark_after)",
        (run.listed, run.enqueued, run.watermark_after),
        (0, 0, None),
    )?;
    match status {
        ConnectorStatus::Broken { reason } => expect(reason, reason.contains("does not exist")),
        other => Err(format!("the connector should be broken, is {other:?}")),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Faults, injected by wrapping a port
// ---------------------------------------------------------------------------------------------------------

/// A destination fault, after some rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// After this many rows, every write fails with a transient error (throttling, 5xx).
    TransientAfter(u64),
    /// After this many rows, writes wait until [`FaultyDestination::release`] (forever when never released:
    /// the worker is "killed" when its caller drops it).
    HoldAfter(u64),
    /// Every batch waits this long, then goes through (a destination that costs by the request).
    Slow(std::time::Duration),
    /// Every batch waits this long for each of its rows, then goes through (one that costs by the row).
    SlowPerRow(std::time::Duration),
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
    batches: Arc<Mutex<Vec<usize>>>,
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
            batches: Arc::new(Mutex::new(Vec::new())),
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
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The number of rows of each batch let through, in the order written.
    pub fn batch_sizes(&self) -> Vec<usize> {
        self.batches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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
            Fault::Slow(_) | Fault::SlowPerRow(_) => u64::MAX,
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
            .unwrap_or_else(PoisonError::into_inner)
            .extend(batch.iter().map(|(position, _)| position.record));
        self.destination
            .batches
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(batch.len());
        Ok(())
    }
}

#[async_trait]
impl RowSink for FaultySink {
    async fn write_batch(&mut self, batch: &RowBatch) -> Result<(), SinkError> {
        match self.destination.fault {
            Fault::Slow(delay) => tokio::time::sleep(delay).await,
            Fault::SlowPerRow(delay) => {
                let rows = u32::try_from(batch.len()).unwrap_or(u32::MAX);
                tokio::time::sleep(delay.saturating_mul(rows)).await;
            }
            Fault::TransientAfter(_) | Fault::HoldAfter(_) => {}
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

    fn stages(&self) -> bool {
        self.inner.stages()
    }

    async fn flush(&mut self) -> Result<(), SinkError> {
        self.inner.flush().await
    }

    fn take_refused(&mut self) -> Vec<crate::sink::RejectedRow> {
        self.inner.take_refused()
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

/// Wraps a queue and injects a [`QueueFault`] into sends (the heartbeat passes through).
#[derive(Clone)]
pub struct FaultyQueue {
    inner: Arc<dyn FileQueue>,
    fault: QueueFault,
    hung: Arc<Notify>,
}

impl FaultyQueue {
    /// `inner` with `fault`.
    pub fn new(inner: Arc<dyn FileQueue>, fault: QueueFault) -> Self {
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
