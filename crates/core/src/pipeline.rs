// Over 900 lines as one concern (the reader thread and the sink loop of one protocol); the next split is the
// reader half (`read_and_validate`, `ValidateLoop`) into its own module (noted in the stop-25 closing note).
//! The import pipeline: one file's bytes in, typed rows and an error report out.
//!
//! ```text
//! AsyncRead ──SyncIoBridge──► decode (gzip, cap) ──► RecordReader ──► Validator ─┐   blocking thread
//!                                                                                │ bounded channel of batches
//!                             RowSink::write_batch ◄──────────────────────────────┤   async task
//!                             RejectSink::write_rejects ◄─────────────────────────┘
//! ```
//! Parsing and validation run on one blocking thread; the sinks run on the async side. Input that is read with
//! blocking calls (a local file, [`import_blocking`]) is read by that thread directly, without the bridge. The channel holds at
//! most `channel_capacity` batches, so a slow sink stalls the reader instead of filling memory, and batch
//! buffers are recycled so the steady state allocates nothing.

use std::io::Read;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::io::AsyncRead;
use tokio::sync::mpsc;
use tokio_util::io::SyncIoBridge;

use crate::pace::{Pace, WritePace};
use crate::read::{self, decode, ReadError, ReaderTask, RecordReader, StartAt};
use crate::sink::{RejectSink, RejectedRow, RowBatch, RowPlacement, RowSink, SinkError};
use crate::template::Template;
use crate::validate::{TemplateMismatch, Validator};
use crate::{Compression, FileFormat, Limits, Position, RowError};

/// How one import runs.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Limits for hostile input.
    pub limits: Limits,
    /// Rows per batch handed to the sink.
    pub batch_rows: usize,
    /// JSON bytes per batch handed to the sink.
    pub batch_bytes: usize,
    /// Batches in flight between the reader and the sink.
    pub channel_capacity: usize,
    /// Where to start (a checkpoint), or the top of the file. Uncompressed input must already be positioned
    /// at `start.position.byte` (a ranged read); compressed input cannot be entered mid-stream, so it is the
    /// whole file and the pipeline decodes it from the top, skipping the decoded bytes before the checkpoint.
    pub start: StartAt,
    /// Stop at a record boundary once this instant passes (after at least one batch was written), and report
    /// where to continue ([`FileEnd::Stopped`]). Checked by the reader and before every batch written,
    /// so a slow destination stops the import too; batches read but not written are left for the next piece.
    pub deadline: Option<Instant>,
    /// How long one batch write should take at most: a slower destination gets smaller batches (down to one
    /// row), so that a piece still stops near its deadline (see [`crate::pace`]). `None`: batches keep
    /// `batch_rows`.
    pub write_budget: Option<Duration>,
    /// What the earlier pieces of the file measured of the destination (from the checkpoint).
    pub pace: Option<Pace>,
    /// Counts carried over from the earlier pieces of the file: the report's counts are totals, and the
    /// template's `on_error` limits apply to the whole file.
    pub carried: Counts,
    /// Raw (possibly compressed) input bytes read so far, for progress display.
    pub input_bytes: Arc<AtomicU64>,
    /// Read errors this accepts interrupt the import instead of failing the file: it stops after the last
    /// complete record, as at the deadline, with both sinks suspended, and [`Stopped::interrupted`] says
    /// why. The worker passes transient source failures (a network still failing after the read's own
    /// retries), so a long file carries on from where it was instead of losing its staged output.
    pub interruptible: Option<fn(&ReadError) -> bool>,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            batch_rows: 2_000,
            batch_bytes: 512 * 1024,
            channel_capacity: 4,
            start: StartAt::default(),
            deadline: None,
            write_budget: None,
            pace: None,
            carried: Counts::default(),
            input_bytes: Arc::new(AtomicU64::new(0)),
            interruptible: None,
        }
    }
}

impl ImportOptions {
    /// Options for writing to a local file (the command line's JSON Lines file sink): batches of up to 1 MiB, whatever
    /// their row count, two in flight. Each batch goes from the reading thread to the runtime and on to the
    /// blocking pool that writes it, so fewer, larger batches mean fewer thread switches; a file has no use
    /// for the row-count limit that suits destinations writing items (DynamoDB) or parts (S3). Peak memory
    /// stays about 10 MiB for any file size.
    pub fn for_file_output() -> Self {
        Self {
            batch_rows: 1_000_000,
            batch_bytes: 1024 * 1024,
            channel_capacity: 2,
            ..Self::default()
        }
    }
}

/// Rejected rows sent to the error report at most per batch, whatever `batch_rows` is: a batch fills by the
/// bytes of its good rows, so a file of rejected rows alone would otherwise hold them all until `batch_rows`
/// (a million for file output, hundreds of MiB of error entries).
pub const MAX_REJECTS_PER_BATCH: usize = 1_000;

/// Row counts of a file (or of the pieces of it imported so far).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Records read (imported + rejected).
    pub rows_read: u64,
    /// Rows written to the sink.
    pub rows_imported: u64,
    /// Rows written to the error report.
    pub rows_rejected: u64,
}

impl Counts {
    /// The counts of `imported` rows and `rejected` ones (every row read is one or the other).
    pub fn of(imported: u64, rejected: u64) -> Self {
        Self {
            rows_read: imported + rejected,
            rows_imported: imported,
            rows_rejected: rejected,
        }
    }
}

/// Why a whole file failed. Permanent: retrying the same bytes gives the same failure.
#[derive(Debug, thiserror::Error)]
pub enum FileFailure {
    /// The file cannot be read (structure, gzip, limits, I/O).
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The file does not match the template (e.g. a required column is missing from the header).
    #[error("file does not match the template: {0}")]
    Template(#[from] TemplateMismatch),
    /// More rows were rejected than the template's `on_error` allows.
    #[error("{rejected} of {read} rows rejected, over the template's limit ({limit})")]
    TooManyRejected {
        /// Rows rejected when the file was stopped.
        rejected: u64,
        /// Rows read when the file was stopped.
        read: u64,
        /// The limit that was crossed.
        limit: String,
    },
    /// A bug: the reading thread panicked.
    #[error("internal error while reading: {0}")]
    Internal(String),
}

/// The first rejected row of a file, for summaries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirstError {
    /// Where.
    pub position: Position,
    /// The first reason.
    pub error: RowError,
}

/// How a file ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every row imported.
    Imported,
    /// Imported, and some rows rejected into the error report — neither success nor failure.
    ImportedWithRejections,
    /// Stopped at a record boundary before the end (deadline, or an interrupted read); continue from
    /// `stopped_at`.
    Stopped,
    /// The file failed.
    Failed,
}

/// What an import did.
#[derive(Debug)]
pub struct FileReport {
    /// Rows read, imported and rejected: totals of the file, counting the pieces before this one
    /// ([`ImportOptions::carried`]).
    pub counts: Counts,
    /// Raw input bytes read (compressed size for gzip).
    pub input_bytes: u64,
    /// Decoded bytes consumed, up to the last record read.
    pub decoded_bytes: u64,
    /// The first rejected row.
    pub first_error: Option<FirstError>,
    /// Where the error report is, when it has entries (never when stopped: the report is suspended).
    pub error_report: Option<String>,
    /// Wall time.
    pub duration: Duration,
    /// How the import ended.
    pub end: FileEnd,
}

/// How an import ended.
#[derive(Debug)]
pub enum FileEnd {
    /// The whole file was read and the rows sink finished (some rows may have been rejected).
    Complete,
    /// Stopped at a record boundary before the end of the file: both sinks were suspended. Boxed: it is the
    /// large variant, and the rare one (the last moments of a long piece).
    Stopped(Box<Stopped>),
    /// The file failed: the rows sink was aborted.
    Failed(FileFailure),
}

/// Where an import stopped before the end of the file, why, and what its sinks need to carry on.
#[derive(Debug)]
pub struct Stopped {
    /// Where to continue.
    pub at: StartAt,
    /// The read error that stopped the import, when [`ImportOptions::interruptible`] accepted it (`None`: the
    /// deadline).
    pub interrupted: Option<ReadError>,
    /// What the row sink needs to carry on ([`RowSink::suspend`]).
    pub rows_state: Option<serde_json::Value>,
    /// What the reject sink needs to carry on ([`RejectSink::suspend`]).
    pub rejects_state: Option<serde_json::Value>,
    /// What this piece measured of the destination, for the next piece.
    pub pace: Pace,
}

impl FileReport {
    /// The outcome in one word.
    pub fn outcome(&self) -> Outcome {
        match &self.end {
            FileEnd::Failed(_) => Outcome::Failed,
            FileEnd::Stopped(_) => Outcome::Stopped,
            FileEnd::Complete if self.counts.rows_rejected > 0 => Outcome::ImportedWithRejections,
            FileEnd::Complete => Outcome::Imported,
        }
    }

    /// Why the file failed, if it did.
    pub fn failure(&self) -> Option<&FileFailure> {
        match &self.end {
            FileEnd::Failed(failure) => Some(failure),
            _ => None,
        }
    }

    /// Where and why the import stopped, when it stopped before the end.
    pub fn stopped(&self) -> Option<&Stopped> {
        match &self.end {
            FileEnd::Stopped(stopped) => Some(stopped),
            _ => None,
        }
    }
}

struct Message {
    rows: RowBatch,
    rejects: Vec<RejectedRow>,
    /// Where the record after this batch starts.
    end: Position,
    /// The file's header, on the first message only: a piece that stops without waiting for the reader
    /// still carries it to the next piece.
    header: Option<Vec<String>>,
    /// The reader's last message (sent, possibly empty, unless the sink side hung up): what it read is all
    /// sent, and it returns its summary right after.
    last: bool,
}

#[derive(Default)]
struct ReadSummary {
    rows_read: u64,
    rows_imported: u64,
    rows_rejected: u64,
    decoded_bytes: u64,
    failure: Option<FileFailure>,
    stopped_at: Option<StartAt>,
    interrupted: Option<ReadError>,
    header: Option<Vec<String>>,
}

impl ReadSummary {
    /// Ends the read on `error`: an interruption that stops at `resume` when `interruptible` accepts it, else
    /// the file's failure.
    fn read_error(
        &mut self,
        error: ReadError,
        interruptible: Option<fn(&ReadError) -> bool>,
        resume: Position,
    ) {
        if interruptible.is_some_and(|accepts| accepts(&error)) {
            self.stopped_at = Some(StartAt {
                position: resume,
                header: self.header.clone(),
            });
            self.interrupted = Some(error);
        } else {
            self.failure = Some(error.into());
        }
    }
}

/// Imports one file: reads `input` in `file_format`, validates every record against `template`, writes rows
/// to `rows` and rejected rows to `rejects`.
///
/// Returns `Err` only when a sink fails (the caller decides whether to retry, see [`SinkError::kind`]); a file
/// that cannot be imported is a report that ended in [`FileEnd::Failed`]. On success the row sink is
/// finished (its output becomes visible); on failure it is aborted; when stopped by the deadline both sinks
/// are suspended ([`RowSink::suspend`]) and their states returned in [`FileEnd::Stopped`]. The reject sink is
/// finished unless stopped.
pub async fn import<R>(
    input: R,
    file_format: FileFormat,
    template: Arc<Template>,
    options: ImportOptions,
    rows: &mut dyn RowSink,
    rejects: &mut dyn RejectSink,
) -> Result<FileReport, SinkError>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    run(
        Box::new(SyncIoBridge::new(input)),
        file_format,
        template,
        options,
        rows,
        rejects,
    )
    .await
}

/// [`import`] for input that is read with blocking calls, such as a local file: the reading thread reads it
/// directly, without handing every read to the async runtime and copying it across (which costs a thread
/// switch per read).
pub async fn import_blocking<R>(
    input: R,
    file_format: FileFormat,
    template: Arc<Template>,
    options: ImportOptions,
    rows: &mut dyn RowSink,
    rejects: &mut dyn RejectSink,
) -> Result<FileReport, SinkError>
where
    R: Read + Send + 'static,
{
    run(
        Box::new(input),
        file_format,
        template,
        options,
        rows,
        rejects,
    )
    .await
}

async fn run(
    input: Box<dyn Read + Send>,
    file_format: FileFormat,
    template: Arc<Template>,
    options: ImportOptions,
    rows: &mut dyn RowSink,
    rejects: &mut dyn RejectSink,
) -> Result<FileReport, SinkError> {
    let started = Instant::now();
    let (tx, mut rx) = mpsc::channel::<Message>(options.channel_capacity.max(1));
    let (recycle_tx, recycle_rx) = std::sync::mpsc::channel::<RowBatch>();
    let input_bytes = options.input_bytes.clone();
    let counted = CountingRead {
        inner: input,
        count: input_bytes.clone(),
    };
    let on_error = template.on_error;
    let deadline = options.deadline;
    let start_position = options.start.position;
    let start_is_top = options.start.is_start();
    let mut counts = options.carried;
    let positions = rows.needs_positions();
    let placement = rows.placement();
    // A piece carries what the earlier ones measured; the first starts from the sink's known row cost.
    let carried = options.pace.or_else(|| {
        rows.row_cost()
            .map(|cost| Pace::from_row_cost(cost, options.batch_rows, options.write_budget))
    });
    let mut pace = WritePace::new(options.batch_rows, options.write_budget, carried.as_ref());
    let batch_limit = pace.batch_limit();
    let reader_task = tokio::task::spawn_blocking(move || {
        let needs = BatchNeeds {
            positions,
            placement: placement.as_deref(),
            batch_limit: &batch_limit,
        };
        read_and_validate(
            Box::new(counted),
            file_format,
            &template,
            &options,
            needs,
            &tx,
            &recycle_rx,
        )
    });

    let mut first_error = None;
    let mut written_end: Option<Position> = None;
    let mut stopped_by_sink = false;
    // The reader is stuck in a read (a stalled connection) past the stop point: it is not waited for.
    let mut read_stalled = false;
    let mut header: Option<Vec<String>> = None;
    let mut sink_error = None;
    loop {
        let next = match (deadline, written_end) {
            // Once a batch is written the piece can stop: a read that blocks past the stop point (the
            // reader checks the clock only between records) must not hold the piece past its deadline.
            (Some(stop), Some(_)) => {
                match tokio::time::timeout_at(tokio::time::Instant::from_std(stop), rx.recv()).await
                {
                    Ok(next) => next,
                    Err(_) => {
                        stopped_by_sink = true;
                        read_stalled = true;
                        break;
                    }
                }
            }
            _ => rx.recv().await,
        };
        let Some(mut message) = next else { break };
        if header.is_none() {
            header = message.header.take();
        }
        if message.last && message.rows.is_empty() && message.rejects.is_empty() {
            break;
        }
        let last = message.last;
        let rows_written = message.rows.len() as u64;
        // Out of time, or a write that would end past the stop point (the destination's measured pace): what
        // was read but not written is left for the next piece.
        if written_end.is_some()
            && deadline.is_some_and(|d| pace.would_overrun(rows_written.max(1), d))
        {
            stopped_by_sink = true;
            break;
        }
        let write_began = Instant::now();
        let mut batch = if message.rows.is_empty() {
            message.rows
        } else {
            match rows.write_owned(message.rows).await {
                Ok(batch) => batch,
                Err(e) => {
                    sink_error = Some(e);
                    break;
                }
            }
        };
        if !message.rejects.is_empty() {
            if let Err(e) = rejects.write_rejects(&message.rejects).await {
                sink_error = Some(e);
                break;
            }
        }
        pace.record(write_began.elapsed(), rows_written);
        counts.rows_imported += rows_written;
        counts.rows_rejected += message.rejects.len() as u64;
        note_first_error(&mut first_error, &message.rejects);
        if let Err(e) = report_refused(rows, rejects, &mut counts, &mut first_error).await {
            sink_error = Some(e);
            break;
        }
        written_end = Some(message.end);
        batch.clear();
        // The reader may already be done; a failed recycle only costs an allocation.
        let _ = recycle_tx.send(batch);
        if last {
            // The reader is done reading: its summary (a failure, where it stopped) is what ends the piece.
            break;
        }
    }
    // Dropping the receiver makes the reader's next send fail, so it stops promptly.
    drop(rx);
    let summary = if read_stalled {
        // Its read ends on its own, its next send fails, and the thread ends: nothing it read is used.
        ReadSummary {
            header,
            ..Default::default()
        }
    } else {
        match reader_task.await {
            Ok(summary) => summary,
            Err(join) => ReadSummary {
                failure: Some(FileFailure::Internal(join.to_string())),
                ..Default::default()
            },
        }
    };
    if let Some(e) = sink_error {
        // A transient failure in a later piece leaves the output staged by the earlier ones alone: the piece is
        // redone from its checkpoint, which still names that output (aborting would lose it). Otherwise
        // discard, best effort: the sink already failed, its abort may fail too; the first error is the one to
        // report.
        return Err(discard_unless_staged(rows, e, start_is_top).await);
    }

    // A sink that batches by its own rules sends what it holds now, so its refused rows are counted and
    // reported before the file's outcome is decided.
    let flushed = match rows.flush().await {
        Ok(()) => report_refused(rows, rejects, &mut counts, &mut first_error).await,
        Err(e) => Err(e),
    };
    if let Err(e) = flushed {
        return Err(discard_unless_staged(rows, e, start_is_top).await);
    }
    counts.rows_read = counts.rows_imported + counts.rows_rejected;
    let (end, decoded_bytes) = if stopped_by_sink {
        // Whatever the reader found after the last batch written (even a failure) is met again by the next
        // piece.
        let position = written_end.unwrap_or(start_position);
        let at = StartAt {
            position,
            header: summary.header,
        };
        (
            FileEnd::Stopped(Box::new(Stopped::at(at, None))),
            position.byte,
        )
    } else {
        let end = match (summary.stopped_at, summary.failure) {
            (Some(at), _) => FileEnd::Stopped(Box::new(Stopped::at(at, summary.interrupted))),
            (None, Some(failure)) => FileEnd::Failed(failure),
            (None, None) => FileEnd::Complete,
        };
        (end, summary.decoded_bytes)
    };
    let mut report = FileReport {
        counts,
        input_bytes: input_bytes.load(Ordering::Relaxed),
        decoded_bytes,
        first_error,
        error_report: None,
        duration: Duration::ZERO,
        end,
    };
    // Both limits are checked while reading (the ratio once `ratio_min_rows` rows were read), so a hopeless
    // file stops early; the exact ratio over the whole file is decided here, after the last row.
    if matches!(report.end, FileEnd::Complete) && on_error.exceeded_rows(counts.rows_rejected) {
        // Rows the destination refused count too (the reader only knows the rows it rejected).
        report.end = FileEnd::Failed(FileFailure::TooManyRejected {
            rejected: counts.rows_rejected,
            read: counts.rows_read,
            limit: format!(
                "max_rejected_rows = {}",
                on_error.max_rejected_rows.unwrap_or_default()
            ),
        });
    } else if matches!(report.end, FileEnd::Complete)
        && on_error.exceeded_ratio(counts.rows_rejected, counts.rows_read)
    {
        report.end = FileEnd::Failed(FileFailure::TooManyRejected {
            rejected: counts.rows_rejected,
            read: counts.rows_read,
            limit: on_error.ratio_limit(true),
        });
    }
    if let FileEnd::Stopped(stopped) = &mut report.end {
        let suspending = Instant::now();
        stopped.rows_state = rows.suspend().await?;
        stopped.rejects_state = rejects.suspend().await?;
        stopped.pace = pace.carry(suspending.elapsed());
    } else {
        // A sink failing to finish (the last bytes of a file sink meet a full disk, a multipart upload cannot
        // complete) is a sink error like any other: the rows output goes, unless it is staged output a
        // retry of this piece still needs.
        report.error_report = match rejects.finish().await {
            Ok(location) => location,
            Err(e) => return Err(discard_unless_staged(rows, e, start_is_top).await),
        };
        if report.failure().is_some() {
            rows.abort().await?;
        } else if let Err(e) = rows.finish().await {
            return Err(discard_unless_staged(rows, e, start_is_top).await);
        }
    }
    report.duration = started.elapsed();
    Ok(report)
}

/// Keeps the first error of `rejected` when none was kept yet.
fn note_first_error(first_error: &mut Option<FirstError>, rejected: &[RejectedRow]) {
    if first_error.is_none() {
        *first_error = rejected.first().and_then(|r| {
            r.errors.first().map(|error| FirstError {
                position: r.position,
                error: error.clone(),
            })
        });
    }
}

/// Moves the rows the destination refused ([`RowSink::take_refused`]) from imported to rejected, into the
/// error report.
async fn report_refused(
    rows: &mut dyn RowSink,
    rejects: &mut dyn RejectSink,
    counts: &mut Counts,
    first_error: &mut Option<FirstError>,
) -> Result<(), SinkError> {
    let refused = rows.take_refused();
    if refused.is_empty() {
        return Ok(());
    }
    rejects.write_rejects(&refused).await?;
    let n = refused.len() as u64;
    counts.rows_imported = counts.rows_imported.saturating_sub(n);
    counts.rows_rejected += n;
    note_first_error(first_error, &refused);
    Ok(())
}

impl Stopped {
    /// Stopped at `at`, the sinks not yet suspended.
    fn at(at: StartAt, interrupted: Option<ReadError>) -> Self {
        Self {
            at,
            interrupted,
            rows_state: None,
            rejects_state: None,
            pace: Pace::default(),
        }
    }
}

/// After `e`, aborts the rows output (best effort: the sink already failed, its abort may fail too; `e` is
/// the error to report), except when `e` is transient and earlier pieces staged output: the piece is then
/// redone from its checkpoint, which still names that output (aborting would lose it).
async fn discard_unless_staged(
    rows: &mut (dyn RowSink + Send),
    e: SinkError,
    start_is_top: bool,
) -> SinkError {
    let keeps_staged_output = e.is_transient() && !start_is_top;
    if !keeps_staged_output {
        let _ = rows.abort().await;
    }
    e
}

/// Counts raw bytes read, for progress and the report.
struct CountingRead<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// What the rows sink asks of the batches it is sent.
#[derive(Clone, Copy)]
struct BatchNeeds<'a> {
    /// It reads the rows' positions (see [`RowSink::needs_positions`]).
    positions: bool,
    /// Where it wants each batch's rows in memory (see [`RowSink::placement`]).
    placement: Option<&'a dyn RowPlacement>,
    /// Rows per batch for now: fewer than `batch_rows` while the destination writes slowly (see
    /// [`crate::pace`]).
    batch_limit: &'a AtomicUsize,
}

/// How often (in records) the deadline is checked: reading the clock for every row costs a few percent.
const DEADLINE_CHECK_EVERY: u64 = 1024;

fn read_and_validate(
    input: Box<dyn Read + Send>,
    file_format: FileFormat,
    template: &Template,
    options: &ImportOptions,
    needs: BatchNeeds<'_>,
    tx: &mpsc::Sender<Message>,
    recycle: &std::sync::mpsc::Receiver<RowBatch>,
) -> ReadSummary {
    let mut summary = ReadSummary {
        rows_read: options.carried.rows_read,
        rows_imported: options.carried.rows_imported,
        rows_rejected: options.carried.rows_rejected,
        ..ReadSummary::default()
    };
    let interruptible = options.interruptible;
    let start = options.start.position;
    let mut decoded = decode::decoder(input, file_format.compression, &options.limits);
    if file_format.compression != Compression::None && !options.start.is_start() {
        if let Err(e) = skip_decoded(&mut decoded, start.byte) {
            summary.header = options.start.header.clone();
            summary.read_error(e, interruptible, start);
            return summary;
        }
    }
    let delimited = template.delimited_options(file_format.format);
    let mut reader = match read::OpenReader::open(
        decoded,
        file_format.format,
        delimited,
        &options.limits,
        &options.start,
    ) {
        Ok(reader) => reader,
        Err(e) => {
            summary.header = options.start.header.clone();
            summary.read_error(e, interruptible, start);
            return summary;
        }
    };
    summary.header = reader.header().map(|h| {
        h.iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect()
    });
    let mut validator = match Validator::new(template, file_format.format, reader.header()) {
        Ok(v) => v,
        Err(e) => {
            summary.failure = Some(e.into());
            return summary;
        }
    };
    reader.run(ValidateLoop {
        validator: &mut validator,
        template,
        options,
        positions: needs.positions,
        placement: needs.placement,
        batch_limit: needs.batch_limit,
        tx,
        recycle,
        summary: &mut summary,
        start,
        interruptible,
    });
    summary
}

/// The loop of [`read_and_validate`] over one reader: records are validated into batches sent to the sinks.
/// Generic over the reader (see [`read::OpenReader::run`]), so the calls per record inline.
struct ValidateLoop<'a> {
    validator: &'a mut Validator,
    template: &'a Template,
    options: &'a ImportOptions,
    /// The rows sink reads the rows' positions (see [`RowSink::needs_positions`]).
    positions: bool,
    /// Where the rows sink wants each batch's rows in memory (see [`RowSink::placement`]).
    placement: Option<&'a dyn RowPlacement>,
    /// Rows per batch for now (see [`BatchNeeds::batch_limit`]): read again after each batch sent.
    batch_limit: &'a AtomicUsize,
    tx: &'a mpsc::Sender<Message>,
    recycle: &'a std::sync::mpsc::Receiver<RowBatch>,
    summary: &'a mut ReadSummary,
    start: Position,
    interruptible: Option<fn(&ReadError) -> bool>,
}

impl ReaderTask for ValidateLoop<'_> {
    type Output = ();

    fn run<R: RecordReader>(self, reader: &mut R) {
        let ValidateLoop {
            validator,
            template,
            options,
            positions,
            placement,
            batch_limit,
            tx,
            recycle,
            summary,
            start,
            interruptible,
        } = self;
        let mut batch_rows = batch_limit.load(Ordering::Relaxed).max(1);
        let mut header_to_send = summary.header.clone();
        let new_batch = || {
            let batch =
                RowBatch::with_capacity(options.batch_bytes + 64 * 1024, options.batch_rows);
            if positions {
                batch
            } else {
                batch.without_positions()
            }
        };
        // Bytes of rows sent to the sink so far: a sink with a placement has each batch's rows placed for
        // what it has received before them (`RowBatch::place`).
        let mut sent = 0u64;
        let mut batch = new_batch();
        if let Some(placement) = placement {
            batch.place(placement, sent);
        }
        let mut rejected_rows: Vec<RejectedRow> = Vec::new();
        let mut errors: Vec<RowError> = Vec::new();
        let mut since_check = 0u64;
        let mut read_here = 0u64;
        let mut cancelled = false;
        // Where the record being read starts: an interrupted read resumes there.
        let mut resume = start;

        loop {
            if let Some(deadline) = options.deadline {
                since_check += 1;
                if since_check >= DEADLINE_CHECK_EVERY || read_here == 0 {
                    since_check = 0;
                    if read_here > 0 && Instant::now() >= deadline {
                        summary.stopped_at = Some(StartAt {
                            position: reader.next_position(),
                            header: summary.header.clone(),
                        });
                        break;
                    }
                }
            }
            if interruptible.is_some() {
                resume = reader.next_position();
            }
            let record = match reader.next_record() {
                Ok(Some(record)) => record,
                Ok(None) => break,
                Err(e) => {
                    summary.read_error(e, interruptible, resume);
                    break;
                }
            };
            summary.rows_read += 1;
            read_here += 1;
            let position = record.position;
            errors.clear();
            if validator.validate_into(&record.body, &mut batch, position, &mut errors) {
                summary.rows_imported += 1;
            } else {
                summary.rows_rejected += 1;
                rejected_rows.push(RejectedRow {
                    position,
                    errors: std::mem::take(&mut errors),
                });
                // Only a rejected row can push either limit over, so both are checked here, off the path of
                // good rows. The counts include the earlier pieces.
                let on_error = &template.on_error;
                let limit = if on_error.exceeded_rows(summary.rows_rejected) {
                    Some(format!(
                        "max_rejected_rows = {}",
                        on_error.max_rejected_rows.unwrap_or_default()
                    ))
                } else if on_error.exceeded_ratio_early(summary.rows_rejected, summary.rows_read) {
                    Some(on_error.ratio_limit(false))
                } else {
                    None
                };
                if let Some(limit) = limit {
                    summary.failure = Some(FileFailure::TooManyRejected {
                        rejected: summary.rows_rejected,
                        read: summary.rows_read,
                        limit,
                    });
                    break;
                }
            }
            if batch.len() >= batch_rows
                || batch.byte_len() >= options.batch_bytes
                || rejected_rows.len() >= batch_rows.min(MAX_REJECTS_PER_BATCH)
            {
                sent += batch.byte_len() as u64;
                let mut next = recycle.try_recv().unwrap_or_else(|_| new_batch());
                if let Some(placement) = placement {
                    next.place(placement, sent);
                }
                let message = Message {
                    rows: std::mem::replace(&mut batch, next),
                    rejects: std::mem::take(&mut rejected_rows),
                    end: reader.next_position(),
                    header: header_to_send.take(),
                    last: false,
                };
                if tx.blocking_send(message).is_err() {
                    cancelled = true;
                    break;
                }
                batch_rows = batch_limit.load(Ordering::Relaxed).max(1);
            }
        }
        // An interrupted read ends before the record it could not finish.
        let end = match (&summary.interrupted, &summary.stopped_at) {
            (Some(_), Some(stopped)) => stopped.position,
            _ => reader.next_position(),
        };
        summary.decoded_bytes = end.byte;
        if !cancelled {
            // A failed send means the sink side gave up; it reports its own error.
            let _ = tx.blocking_send(Message {
                rows: batch,
                rejects: rejected_rows,
                end,
                header: header_to_send.take(),
                last: true,
            });
        }
    }
}

/// Skips `bytes` decoded bytes: a compressed file resumed at a checkpoint is decoded from the top.
fn skip_decoded(input: &mut Box<dyn std::io::BufRead + Send>, bytes: u64) -> Result<(), ReadError> {
    let skipped = std::io::copy(&mut input.take(bytes), &mut std::io::sink())
        .map_err(|source| ReadError::Io { byte: 0, source })?;
    if skipped < bytes {
        return Err(ReadError::Io {
            byte: skipped,
            source: std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the file ends before the checkpoint at decoded byte {bytes}"),
            ),
        });
    }
    Ok(())
}
