//! The ports the pipeline writes to: typed rows ([`RowSink`]) and rejected rows ([`RejectSink`]), with an
//! error report writer for any async writer and in-memory adapters. (The JSON Lines file sink of local imports
//! lives in its own crate, `s3-importer-file`, used by the command line.)

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};

use crate::{ErrorCode, Position, RowError};

/// A batch of validated rows: newline-terminated JSON objects stored back to back, plus where each came from.
///
/// Rows arrive already serialized because the common destinations (JSONL files, S3 objects) write them as is;
/// destinations that need fields (DynamoDB) parse the object, which costs far less than the write itself.
#[derive(Debug, Default, Clone)]
pub struct RowBatch {
    /// The rows in `data[start..used]`; the bytes after are initialised room for the next rows (see
    /// [`RowBatch::room`]), the bytes before are where the sink's [`RowPlacement`] asked the rows to start.
    data: Vec<u8>,
    start: usize,
    used: usize,
    /// Each row's position and where it ends in `data`, unless `skip_positions`.
    rows: Vec<(Position, usize)>,
    /// Number of rows.
    count: usize,
    /// Made for a sink that does not read positions (see [`RowSink::needs_positions`]): `rows` stays empty.
    skip_positions: bool,
}

/// Where a sink wants the rows of each batch in memory, for a sink that writes them straight from there and
/// needs them at particular addresses (a file written with direct I/O). Given by [`RowSink::placement`]; the
/// pipeline calls it on the reading thread for every batch before filling it, and knows nothing of what it
/// does. A placement is a request, not a promise: a batch whose memory grows moves, so the sink checks the
/// address it gets.
pub trait RowPlacement: Send + Sync {
    /// How many bytes after `address` (the start of a batch's memory) its rows should start, when `offset`
    /// bytes of rows were sent to the sink before them.
    fn rows_start(&self, address: usize, offset: u64) -> usize;
}

impl RowBatch {
    /// An empty batch with room for `bytes` of JSON.
    pub fn with_capacity(bytes: usize, rows: usize) -> Self {
        Self {
            data: Vec::with_capacity(bytes),
            start: 0,
            used: 0,
            rows: Vec::with_capacity(rows),
            count: 0,
            skip_positions: false,
        }
    }

    /// The same batch, recording no row positions from now on: for a sink that writes the rows as they are
    /// (see [`RowSink::needs_positions`]), which then saves a 32-byte record per row. [`RowBatch::iter`] gives
    /// such rows `Position::default()`.
    pub fn without_positions(mut self) -> Self {
        self.skip_positions = true;
        self.rows = Vec::new();
        self
    }

    /// Empties the batch and starts its rows where `placement` asks for rows that follow `offset` bytes sent
    /// before them (the pipeline does this for a sink with a [`RowSink::placement`]).
    pub fn place(&mut self, placement: &dyn RowPlacement, offset: u64) {
        self.rows.clear();
        self.count = 0;
        let mut start = placement.rows_start(self.data.as_ptr() as usize, offset);
        if start > self.data.capacity() {
            // Growing moves the memory: ask again for the new address.
            self.data.reserve(start);
            start = placement.rows_start(self.data.as_ptr() as usize, offset);
        }
        if self.data.len() < start {
            self.data.resize(start, 0);
        }
        self.start = start;
        self.used = start;
    }

    /// At least `n` bytes of room after the rows, for the next row (written at its start, then committed with
    /// [`RowBatch::commit_next`]). The room is initialised once, when the batch first grows to it, and reused
    /// after [`RowBatch::clear`].
    pub fn room(&mut self, n: usize) -> &mut [u8] {
        // One more byte for the newline `commit_next` adds.
        let need = self.used + n + 1;
        if self.data.len() < need {
            self.data.resize(need, 0);
        }
        self.data
            .get_mut(self.used..self.used + n)
            .unwrap_or_default()
    }

    /// Makes the first `n` bytes of [`RowBatch::room`] the next row (a newline is added).
    pub fn commit_next(&mut self, n: usize, position: Position) {
        let end = self.used + n;
        if self.data.len() <= end {
            self.data.resize(end + 1, 0);
        }
        self.data[end] = b'\n';
        self.used = end + 1;
        self.count += 1;
        if !self.skip_positions {
            self.rows.push((position, self.used));
        }
    }

    /// Appends one row from its JSON text (without newline).
    pub fn push_row(&mut self, position: Position, json: &[u8]) {
        self.room(json.len()).copy_from_slice(json);
        self.commit_next(json.len(), position);
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when the batch holds no row.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of JSON held.
    pub fn byte_len(&self) -> usize {
        self.used - self.start
    }

    /// All rows as newline-terminated JSON Lines.
    pub fn as_jsonl(&self) -> &[u8] {
        self.data.get(self.start..self.used).unwrap_or_default()
    }

    /// Each row's position (`Position::default()` in a batch [`RowBatch::without_positions`]) and JSON object
    /// text (without the newline).
    pub fn iter(&self) -> impl Iterator<Item = (Position, &[u8])> + '_ {
        let mut start = self.start;
        let mut recorded = self.rows.iter();
        let mut left = self.count;
        std::iter::from_fn(move || {
            left = left.checked_sub(1)?;
            let (position, end) = if self.skip_positions {
                // A row is one line: JSON text has no raw line break.
                let rest = self.data.get(start..self.used)?;
                let newline = rest.iter().position(|&b| b == b'\n')?;
                (Position::default(), start + newline + 1)
            } else {
                *recorded.next()?
            };
            let row = self.data.get(start..end - 1)?;
            start = end;
            Some((position, row))
        })
    }

    /// Empties the batch, keeping its memory (and where its rows start, see [`RowBatch::place`]).
    pub fn clear(&mut self) {
        self.used = self.start;
        self.rows.clear();
        self.count = 0;
    }
}

/// A rejected row: where it is and every reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedRow {
    /// Position of the row in its file.
    pub position: Position,
    /// Every reason it was rejected.
    pub errors: Vec<RowError>,
}

/// One line of an error report (JSONL): one per reason, so a row with two bad columns has two lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReportEntry {
    /// Record number (1-based, data records only).
    pub record: u64,
    /// Line where the record starts (1-based).
    pub line: u64,
    /// Byte offset of the record in the decoded file.
    pub byte: u64,
    /// Column concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Explanation (never the value).
    pub message: String,
}

impl RejectedRow {
    /// The report lines for this row.
    pub fn entries(&self) -> impl Iterator<Item = ErrorReportEntry> + '_ {
        self.errors.iter().map(|e| ErrorReportEntry {
            record: self.position.record,
            line: self.position.line,
            byte: self.position.byte,
            column: e.column.clone(),
            code: e.code,
            message: e.message.clone(),
        })
    }
}

/// Whether retrying a failed write can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinkErrorKind {
    /// Throttling, timeouts, 5xx: the whole file can be retried later and will produce the same result.
    Transient,
    /// Access denied, a missing table, an item too large: retrying will not help.
    Permanent,
    /// The destination itself is gone for good (a webhook answering 410 Gone): retrying will not help, and
    /// the worker marks the connector broken until a user fixes it.
    ConnectorBroken,
}

/// A destination write that failed.
#[derive(Debug, thiserror::Error)]
#[error("{context}: {source}")]
pub struct SinkError {
    /// Transient or permanent.
    pub kind: SinkErrorKind,
    /// What was being written where, e.g. "write to s3://bucket/key".
    pub context: String,
    /// The underlying error.
    #[source]
    pub source: Box<dyn std::error::Error + Send + Sync>,
}

impl SinkError {
    /// A transient failure.
    pub fn transient(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            kind: SinkErrorKind::Transient,
            context: context.into(),
            source: source.into(),
        }
    }

    /// A permanent failure.
    pub fn permanent(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            kind: SinkErrorKind::Permanent,
            context: context.into(),
            source: source.into(),
        }
    }

    /// A failure that breaks the connector (see [`SinkErrorKind::ConnectorBroken`]).
    pub fn connector_broken(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            kind: SinkErrorKind::ConnectorBroken,
            context: context.into(),
            source: source.into(),
        }
    }

    /// True when a retry may succeed.
    pub fn is_transient(&self) -> bool {
        self.kind == SinkErrorKind::Transient
    }

    /// True when the destination is gone and the connector must be marked broken.
    pub fn breaks_connector(&self) -> bool {
        self.kind == SinkErrorKind::ConnectorBroken
    }
}

/// Where validated rows go. Implementations must make a retried file produce the same final state
/// (idempotent writes), because the pipe delivers at least once.
#[async_trait]
pub trait RowSink: Send {
    /// Writes a batch. Returning means the rows are durably accepted (or staged, for sinks that commit).
    async fn write_batch(&mut self, batch: &RowBatch) -> Result<(), SinkError>;

    /// Whether the sink reads the rows' positions ([`RowBatch::iter`]). A sink that writes the rows as they
    /// are (a JSON Lines file or object) says no, and its batches record none. The default is yes.
    fn needs_positions(&self) -> bool {
        true
    }

    /// Where the rows of the batches sent to this sink should be in memory, for a sink that writes them
    /// straight from there (see [`RowPlacement`]). The default is `None`: anywhere.
    fn placement(&self) -> Option<Box<dyn RowPlacement>> {
        None
    }

    /// The least time writing one row is known to take before any write is measured: a destination held to
    /// a request rate (an API) says so, and the first batches of a piece are sized to the write budget by it,
    /// so that a first write cannot overrun the piece's deadline (see [`crate::pace`]). The default is
    /// `None`: unknown until measured.
    fn row_cost(&self) -> Option<std::time::Duration> {
        None
    }

    /// Whether what the sink writes stays invisible until [`RowSink::finish`], so that [`RowSink::abort`]
    /// leaves nothing (an S3 object completed at the end, a database transaction): such a sink is already
    /// all-or-nothing. The default is no (writes visible at once, as DynamoDB upserts): the worker then
    /// honours the template's `on_error.validate_first` by validating the whole file before writing.
    fn stages(&self) -> bool {
        false
    }

    /// Writes a batch the sink may keep while writing, and gives it back (its buffers are reused for later
    /// batches). The pipeline calls this one; sinks that hand the bytes to another thread (a file written by
    /// the blocking pool) override it to avoid copying the batch. The default calls
    /// [`RowSink::write_batch`].
    async fn write_owned(&mut self, batch: RowBatch) -> Result<RowBatch, SinkError> {
        self.write_batch(&batch).await?;
        Ok(batch)
    }

    /// Sends what the sink holds back (a sink that batches by its own rules, a webhook) before the pipeline
    /// suspends or finishes it, so that [`RowSink::take_refused`] gives every refused row. The default does
    /// nothing.
    async fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Rows the destination refused since the last call (a webhook receiver answering 4xx), with why: the
    /// pipeline writes them to the error report and counts them rejected instead of imported. The default
    /// refuses nothing.
    fn take_refused(&mut self) -> Vec<RejectedRow> {
        Vec::new()
    }

    /// The file is complete: make what was written visible.
    async fn finish(&mut self) -> Result<(), SinkError>;

    /// The file failed: discard anything staged. Writes already visible (upserts) stay.
    async fn abort(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// The import stopped before the end of the file (a checkpoint): make what was written durable without
    /// making it visible, and return what the next piece needs to carry on (given back to the destination
    /// through the ledger's checkpoint). Sinks whose writes are durable at once (upserts) return `None`.
    async fn suspend(&mut self) -> Result<Option<serde_json::Value>, SinkError> {
        Ok(None)
    }
}

/// Where rejected rows go (the error report).
#[async_trait]
pub trait RejectSink: Send {
    /// Writes rejected rows.
    async fn write_rejects(&mut self, rows: &[RejectedRow]) -> Result<(), SinkError>;

    /// Completes the report. Returns its location when anything was written.
    async fn finish(&mut self) -> Result<Option<String>, SinkError>;

    /// The import stopped before the end of the file: as [`RowSink::suspend`]. The default finishes the
    /// report (right for sinks that keep one part per piece) and carries nothing.
    async fn suspend(&mut self) -> Result<Option<serde_json::Value>, SinkError> {
        self.finish().await?;
        Ok(None)
    }
}

/// Writes an error report as JSON Lines ([`ErrorReportEntry`]) to any async writer.
#[derive(Debug)]
pub struct ErrorReportWriter<W> {
    out: BufWriter<W>,
    location: String,
    entries: u64,
    line: Vec<u8>,
}

impl<W: AsyncWrite + Unpin + Send> ErrorReportWriter<W> {
    /// A report written to `out`, known to users as `location` (a path or URI).
    pub fn new(out: W, location: impl Into<String>) -> Self {
        Self {
            out: BufWriter::new(out),
            location: location.into(),
            entries: 0,
            line: Vec::new(),
        }
    }

    /// Entries written so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }
}

#[async_trait]
impl<W: AsyncWrite + Unpin + Send> RejectSink for ErrorReportWriter<W> {
    async fn write_rejects(&mut self, rows: &[RejectedRow]) -> Result<(), SinkError> {
        self.line.clear();
        for row in rows {
            for entry in row.entries() {
                serde_json::to_writer(&mut self.line, &entry)
                    .map_err(|e| SinkError::permanent("serialize error report entry", e))?;
                self.line.push(b'\n');
                self.entries += 1;
            }
        }
        self.out
            .write_all(&self.line)
            .await
            .map_err(|e| SinkError::transient(format!("write error report {}", self.location), e))
    }

    async fn finish(&mut self) -> Result<Option<String>, SinkError> {
        self.out.flush().await.map_err(|e| {
            SinkError::transient(format!("flush error report {}", self.location), e)
        })?;
        Ok((self.entries > 0).then(|| self.location.clone()))
    }
}

/// Keeps rows in memory: for tests and previews.
#[derive(Debug, Default)]
pub struct MemorySink {
    /// Every row received, as (position, JSON text).
    pub rows: Vec<(Position, String)>,
    /// Whether `finish` was called.
    pub finished: bool,
    /// Whether `abort` was called.
    pub aborted: bool,
}

#[async_trait]
impl RowSink for MemorySink {
    async fn write_batch(&mut self, batch: &RowBatch) -> Result<(), SinkError> {
        for (position, row) in batch.iter() {
            self.rows
                .push((position, String::from_utf8_lossy(row).into_owned()));
        }
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), SinkError> {
        self.finished = true;
        Ok(())
    }

    async fn abort(&mut self) -> Result<(), SinkError> {
        self.aborted = true;
        Ok(())
    }
}

/// Keeps rejected rows in memory: for tests and previews.
#[derive(Debug, Default)]
pub struct MemoryRejects {
    /// Every rejected row received.
    pub rows: Vec<RejectedRow>,
}

#[async_trait]
impl RejectSink for MemoryRejects {
    async fn write_rejects(&mut self, rows: &[RejectedRow]) -> Result<(), SinkError> {
        self.rows.extend_from_slice(rows);
        Ok(())
    }

    async fn finish(&mut self) -> Result<Option<String>, SinkError> {
        Ok((!self.rows.is_empty()).then(|| "memory".to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(record: u64) -> Position {
        Position {
            record,
            line: record + 1,
            byte: record * 10,
        }
    }

    /// Rows at `offset % 4096` past a 4096-aligned address, as a file written with direct I/O asks.
    struct Aligned;

    impl RowPlacement for Aligned {
        fn rows_start(&self, address: usize, offset: u64) -> usize {
            address.wrapping_neg() % 4096 + (offset % 4096) as usize
        }
    }

    #[test]
    fn a_placed_batch_starts_its_rows_where_the_placement_asks() {
        for written in [0u64, 1, 4095, 4096, 10_000] {
            // Room for the largest start (4095 + 4095) and the rows, so no row moves the memory: a batch whose
            // memory moved is no longer placed (the file sink then copies it), which is not what this checks.
            let mut batch = RowBatch::with_capacity(16 * 1024, 4);
            batch.place(&Aligned, written);
            batch.push_row(pos(1), br#"{"a":1}"#);
            batch.push_row(pos(2), br#"{"a":2}"#);
            assert_eq!(batch.as_jsonl(), b"{\"a\":1}\n{\"a\":2}\n");
            assert_eq!(batch.byte_len(), 16);
            assert_eq!(batch.iter().count(), 2);
            let at = |batch: &RowBatch| batch.as_jsonl().as_ptr() as u64 % 4096;
            assert_eq!(at(&batch), written % 4096, "written {written}");
            // Rows still read the same afterwards, and a cleared batch keeps its placement.
            assert_eq!(batch.iter().map(|(_, r)| r.len()).sum::<usize>(), 14);
            batch.clear();
            batch.push_row(pos(3), b"{}");
            assert_eq!(batch.as_jsonl(), b"{}\n");
            assert_eq!(at(&batch), written % 4096, "written {written}, cleared");
            // Placed again for the next offset, the rows move there.
            batch.place(&Aligned, written + 3);
            assert!(batch.is_empty());
            batch.push_row(pos(4), b"{}");
            assert_eq!(at(&batch), (written + 3) % 4096);
        }
    }

    #[test]
    fn row_batch_iterates_rows_without_newlines() {
        let mut batch = RowBatch::default();
        batch.push_row(pos(1), br#"{"a":1}"#);
        let room = batch.room(64);
        room[..7].copy_from_slice(br#"{"a":2}"#);
        room[7..].fill(b'#');
        batch.commit_next(7, pos(2));
        let rows: Vec<_> = batch.iter().collect();
        assert_eq!(
            rows,
            vec![(pos(1), &br#"{"a":1}"#[..]), (pos(2), &br#"{"a":2}"#[..])]
        );
        assert_eq!(batch.as_jsonl(), b"{\"a\":1}\n{\"a\":2}\n");
        assert_eq!(batch.byte_len(), 16);
        batch.clear();
        assert!(batch.is_empty());
        assert_eq!(batch.as_jsonl(), b"");
        // The room left by the rows cleared is reused, whatever it holds.
        batch.push_row(pos(3), br#"{"b":3}"#);
        assert_eq!(batch.as_jsonl(), b"{\"b\":3}\n");
    }

    #[test]
    fn a_batch_without_positions_counts_and_reads_its_rows_the_same() {
        for written in [None, Some(0u64), Some(4095)] {
            let mut batch = RowBatch::with_capacity(1024, 4).without_positions();
            if let Some(written) = written {
                batch.place(&Aligned, written);
            }
            assert!(batch.is_empty());
            batch.push_row(pos(1), br#"{"a":1}"#);
            let room = batch.room(64);
            room[..2].copy_from_slice(b"{}");
            room[2..].fill(b'\n');
            batch.commit_next(2, pos(2));
            batch.push_row(pos(3), br#"{"c":"x\ny"}"#);
            assert_eq!(batch.len(), 3);
            assert_eq!(batch.as_jsonl(), b"{\"a\":1}\n{}\n{\"c\":\"x\\ny\"}\n");
            let rows: Vec<_> = batch.iter().collect();
            let none = Position::default();
            assert_eq!(
                rows,
                vec![
                    (none, &br#"{"a":1}"#[..]),
                    (none, &b"{}"[..]),
                    (none, &br#"{"c":"x\ny"}"#[..])
                ]
            );
            batch.clear();
            assert!(batch.is_empty() && batch.iter().next().is_none());
            batch.push_row(pos(4), b"{}");
            assert_eq!((batch.len(), batch.iter().count()), (1, 1));
            batch.place(&Aligned, 7);
            assert_eq!(batch.len(), 0);
        }
    }

    #[tokio::test]
    async fn error_report_has_one_line_per_reason() -> Result<(), Box<dyn std::error::Error>> {
        let mut buf = Vec::new();
        let mut report = ErrorReportWriter::new(&mut buf, "errors.jsonl");
        let row = RejectedRow {
            position: pos(3),
            errors: vec![
                RowError::column("amount", ErrorCode::InvalidDecimal, "expected a decimal"),
                RowError::record(ErrorCode::FieldCountMismatch, "expected 3 fields, found 2"),
            ],
        };
        report.write_rejects(std::slice::from_ref(&row)).await?;
        assert_eq!(report.finish().await?, Some("errors.jsonl".to_owned()));
        drop(report);
        let lines: Vec<ErrorReportEntry> = buf
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(serde_json::from_slice)
            .collect::<Result<_, _>>()?;
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].column.as_deref(), Some("amount"));
        assert_eq!((lines[0].record, lines[0].line, lines[0].byte), (3, 4, 30));
        assert_eq!(lines[1].code, ErrorCode::FieldCountMismatch);
        Ok(())
    }
}
