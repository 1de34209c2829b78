//! The import pipeline: reader + template → typed rows to a `RowSink`, rejected rows to a `RejectSink`, and a
//! file report whose partial outcome is first-class.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use s3_importer_core::pipeline::{self, Counts, FileFailure, ImportOptions, Outcome};
use s3_importer_core::read::ReadError;
use s3_importer_core::sink::{
    MemoryRejects, MemorySink, RejectSink, RejectedRow, RowBatch, RowSink, SinkError,
};
use s3_importer_core::template::Template;
use s3_importer_core::{Compression, ErrorCode, FileFormat, Format, Limits};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

const TEMPLATE: &str = r#"
name = "people"
primary_key = ["id"]

[[fields]]
name = "id"
type = "integer"
required = true

[[fields]]
name = "name"
type = "string"
required = true

[[fields]]
name = "score"
type = "decimal"
"#;

fn template(extra: &str) -> Result<Arc<Template>> {
    Ok(Arc::new(Template::from_toml(&format!(
        "{TEMPLATE}\n{extra}"
    ))?))
}

fn csv() -> FileFormat {
    FileFormat {
        format: Format::Csv,
        compression: Compression::None,
    }
}

async fn run(
    bytes: Vec<u8>,
    format: FileFormat,
    template: Arc<Template>,
    options: ImportOptions,
) -> Result<(pipeline::FileReport, MemorySink, MemoryRejects)> {
    let mut rows = MemorySink::default();
    let mut rejects = MemoryRejects::default();
    let report = pipeline::import(
        std::io::Cursor::new(bytes),
        format,
        template,
        options,
        &mut rows,
        &mut rejects,
    )
    .await?;
    Ok((report, rows, rejects))
}

#[tokio::test]
async fn good_rows_are_typed_and_bad_rows_go_to_the_report_with_their_position() -> Result {
    let input = b"id,name,score\n1,Ada,1.50\nx,Grace,2\n3,,3\n4,Linus,4.25\n".to_vec();
    let (report, rows, rejects) =
        run(input, csv(), template("")?, ImportOptions::default()).await?;
    assert_eq!(report.outcome(), Outcome::ImportedWithRejections);
    assert_eq!(
        (
            report.counts.rows_read,
            report.counts.rows_imported,
            report.counts.rows_rejected
        ),
        (4, 2, 2)
    );
    assert!(rows.finished && !rows.aborted);
    let typed: Vec<serde_json::Value> = rows
        .rows
        .iter()
        .map(|(_, json)| serde_json::from_str(json))
        .collect::<std::result::Result<_, _>>()?;
    assert_eq!(
        typed[0],
        serde_json::json!({"id": 1, "name": "Ada", "score": "1.50"})
    );
    assert_eq!(typed[1]["id"], 4);
    let positions: Vec<(u64, u64)> = rejects
        .rows
        .iter()
        .map(|r| (r.position.record, r.position.line))
        .collect();
    assert_eq!(positions, vec![(2, 3), (3, 4)]);
    assert_eq!(rejects.rows[0].errors[0].code, ErrorCode::InvalidInteger);
    assert_eq!(rejects.rows[0].errors[0].column.as_deref(), Some("id"));
    assert_eq!(rejects.rows[1].errors[0].code, ErrorCode::NullValue);
    let first = report.first_error.ok_or("no first error")?;
    assert_eq!(first.position.record, 2);
    assert_eq!(report.error_report.as_deref(), Some("memory"));
    Ok(())
}

#[tokio::test]
async fn clean_file_is_imported_and_has_no_error_report() -> Result {
    let (report, rows, _) = run(
        b"id,name\n1,a\n2,b\n".to_vec(),
        csv(),
        template("")?,
        ImportOptions::default(),
    )
    .await?;
    assert_eq!(report.outcome(), Outcome::Imported);
    assert_eq!(rows.rows.len(), 2);
    assert_eq!(report.error_report, None);
    assert_eq!(report.input_bytes, 16);
    Ok(())
}

#[tokio::test]
async fn missing_required_column_fails_the_file_and_aborts_the_sink() -> Result {
    let (report, rows, _) = run(
        b"id,score\n1,2\n".to_vec(),
        csv(),
        template("")?,
        ImportOptions::default(),
    )
    .await?;
    assert_eq!(report.outcome(), Outcome::Failed);
    assert!(
        matches!(report.failure(), Some(FileFailure::Template(_))),
        "{:?}",
        report.failure()
    );
    assert!(rows.aborted && !rows.finished);
    assert!(report
        .failure()
        .map(|f| f.to_string())
        .unwrap_or_default()
        .contains("name"));
    Ok(())
}

#[tokio::test]
async fn max_rejected_rows_stops_the_file_early() -> Result {
    let mut input = b"id,name\n".to_vec();
    for i in 0..1000 {
        writeln!(input, "bad{i},n")?;
    }
    let on_error = "[on_error]\nmax_rejected_rows = 3\n";
    let (report, rows, _) =
        run(input, csv(), template(on_error)?, ImportOptions::default()).await?;
    assert!(
        matches!(
            report.failure(),
            Some(FileFailure::TooManyRejected {
                rejected: 4,
                read: 4,
                ..
            })
        ),
        "{:?}",
        report.failure()
    );
    assert!(rows.aborted);
    Ok(())
}

#[tokio::test]
async fn max_rejected_ratio_is_checked_at_the_end() -> Result {
    let input = b"id,name\n1,a\n2,b\nx,c\n4,d\n".to_vec();
    let strict = "[on_error]\nmax_rejected_ratio = 0.2\n";
    let (report, _, _) = run(
        input.clone(),
        csv(),
        template(strict)?,
        ImportOptions::default(),
    )
    .await?;
    assert!(
        matches!(
            report.failure(),
            Some(FileFailure::TooManyRejected {
                rejected: 1,
                read: 4,
                ..
            })
        ),
        "{:?}",
        report.failure()
    );
    let lenient = "[on_error]\nmax_rejected_ratio = 0.25\n";
    let (report, _, _) = run(input, csv(), template(lenient)?, ImportOptions::default()).await?;
    assert_eq!(report.outcome(), Outcome::ImportedWithRejections);
    Ok(())
}

/// `n` rows, `bad(i)` of them (1-based) with a name missing (a required field: rejected).
fn rows_where(n: u64, bad: impl Fn(u64) -> bool) -> Result<Vec<u8>> {
    let mut input = b"id,name\n".to_vec();
    for i in 1..=n {
        if bad(i) {
            writeln!(input, "{i},")?;
        } else {
            writeln!(input, "{i},n{i}")?;
        }
    }
    Ok(input)
}

fn too_many_rejected(report: &pipeline::FileReport) -> Option<(u64, u64, String)> {
    match report.failure() {
        Some(FileFailure::TooManyRejected {
            rejected,
            read,
            limit,
        }) => Some((*rejected, *read, limit.clone())),
        _ => None,
    }
}

#[tokio::test]
async fn max_rejected_ratio_fails_the_file_as_rows_are_read_once_ratio_min_rows_were_read() -> Result
{
    // Every second row is bad: 50%, over 10% from the start, judged from the 100th row on.
    let input = rows_where(10_000, |i| i % 2 == 0)?;
    let len = input.len() as u64;
    let on_error = "[on_error]\nmax_rejected_ratio = 0.1\nratio_min_rows = 100\n";
    let (report, rows, _) =
        run(input, csv(), template(on_error)?, ImportOptions::default()).await?;
    let (rejected, read, limit) = too_many_rejected(&report).ok_or("not failed by the ratio")?;
    assert_eq!((rejected, read), (50, 100), "{limit}");
    assert!(limit.contains("once 100 were read"), "{limit}");
    assert!(
        report.decoded_bytes < len / 10,
        "stopped reading early: {} of {len} bytes",
        report.decoded_bytes
    );
    assert!(rows.aborted);
    Ok(())
}

/// The documented cost of judging early: bad rows at the top of a file fail it once `ratio_min_rows` rows
/// were read, though the whole file would be under the ratio; fewer than that are left to the end.
#[tokio::test]
async fn bad_rows_at_the_top_are_judged_at_the_end_unless_ratio_min_rows_were_read() -> Result {
    let input = rows_where(1_000, |i| i <= 50)?;
    let at_the_end = "[on_error]\nmax_rejected_ratio = 0.1\nratio_min_rows = 100\n";
    let (report, _, _) = run(
        input.clone(),
        csv(),
        template(at_the_end)?,
        ImportOptions::default(),
    )
    .await?;
    assert_eq!(
        report.outcome(),
        Outcome::ImportedWithRejections,
        "5% of the file"
    );
    assert_eq!(report.counts, Counts::of(950, 50));

    let early = "[on_error]\nmax_rejected_ratio = 0.1\nratio_min_rows = 10\n";
    let (report, _, _) = run(input, csv(), template(early)?, ImportOptions::default()).await?;
    let failed = too_many_rejected(&report).map(|(rejected, read, _)| (rejected, read));
    assert_eq!(failed, Some((10, 10)), "all of the first 10 rows");
    Ok(())
}

/// A later piece judges the ratio over the whole file so far: the counts carried from the earlier pieces.
#[tokio::test]
async fn the_early_ratio_counts_the_rows_of_the_earlier_pieces() -> Result {
    // Earlier pieces: 100 of 1,000 rejected, exactly the 10% allowed. This piece's first row is bad.
    let input = rows_where(500, |i| i == 1)?;
    let on_error = "[on_error]\nmax_rejected_ratio = 0.1\nratio_min_rows = 100\n";
    let options = ImportOptions {
        carried: Counts::of(900, 100),
        ..ImportOptions::default()
    };
    let (report, _, _) = run(input, csv(), template(on_error)?, options).await?;
    let failed = too_many_rejected(&report).map(|(rejected, read, _)| (rejected, read));
    assert_eq!(failed, Some((101, 1001)));
    Ok(())
}

#[tokio::test]
async fn gzip_jsonl_is_decoded_as_a_stream() -> Result {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for i in 0..500 {
        writeln!(enc, r#"{{"id": {i}, "name": "n{i}", "score": 1.5}}"#)?;
    }
    let bytes = enc.finish()?;
    let format = FileFormat {
        format: Format::Jsonl,
        compression: Compression::Gzip,
    };
    let (report, rows, _) = run(
        bytes.clone(),
        format,
        template("")?,
        ImportOptions::default(),
    )
    .await?;
    assert_eq!(report.outcome(), Outcome::Imported);
    assert_eq!(rows.rows.len(), 500);
    assert_eq!(report.input_bytes, bytes.len() as u64);
    assert!(report.decoded_bytes > report.input_bytes);
    Ok(())
}

#[tokio::test]
async fn gzip_bomb_fails_the_file_with_the_cap() -> Result {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(b"id,name\n")?;
    let line = b"1,aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n".repeat(1000);
    for _ in 0..200 {
        enc.write_all(&line)?;
    }
    let bytes = enc.finish()?;
    let options = ImportOptions {
        limits: Limits {
            max_decompressed_bytes: 1 << 20,
            ..Limits::default()
        },
        ..ImportOptions::default()
    };
    let format = FileFormat {
        format: Format::Csv,
        compression: Compression::Gzip,
    };
    let (report, rows, _) = run(bytes, format, template("")?, options).await?;
    assert!(
        matches!(
            report.failure(),
            Some(FileFailure::Read(ReadError::DecompressedTooLarge {
                limit: 1_048_576
            }))
        ),
        "{:?}",
        report.failure()
    );
    assert!(rows.aborted);
    Ok(())
}

/// A sink that takes `delay` per batch and records how much input had been read when each batch arrived.
struct SlowSink {
    delay: Duration,
    input_bytes: Arc<AtomicU64>,
    seen: Vec<(u64, usize)>,
}

#[async_trait]
impl RowSink for SlowSink {
    async fn write_batch(&mut self, batch: &RowBatch) -> std::result::Result<(), SinkError> {
        self.seen
            .push((self.input_bytes.load(Ordering::Relaxed), batch.len()));
        tokio::time::sleep(self.delay).await;
        Ok(())
    }

    async fn finish(&mut self) -> std::result::Result<(), SinkError> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_sink_slows_the_reader_instead_of_filling_memory() -> Result {
    // 400,000 rows (~7 MB); batches of 1,000 rows; 2 batches in flight. If the reader ran ahead, the
    // input read when the first batches reach the sink would be close to the whole file.
    let mut input = b"id,name\n".to_vec();
    for i in 0..400_000 {
        writeln!(input, "{i},name{i}")?;
    }
    let total = input.len() as u64;
    let options = ImportOptions {
        batch_rows: 1_000,
        channel_capacity: 2,
        ..ImportOptions::default()
    };
    let mut sink = SlowSink {
        delay: Duration::from_millis(5),
        input_bytes: options.input_bytes.clone(),
        seen: Vec::new(),
    };
    let mut rejects = MemoryRejects::default();
    let report = pipeline::import(
        std::io::Cursor::new(input),
        csv(),
        template("")?,
        options,
        &mut sink,
        &mut rejects,
    )
    .await?;
    assert_eq!(report.counts.rows_imported, 400_000);
    assert_eq!(sink.seen.len(), 400);
    // When the sink receives its 10th batch, the reader can be ahead by at most the channel (2 batches), the
    // batch being filled, and the read buffers (two of 256 KiB) — far from the whole file.
    let (read_at_10th, _) = sink.seen[9];
    let bound = 14 * 20_000 + 4 * 256 * 1024;
    assert!(
        read_at_10th < bound,
        "read {read_at_10th} of {total} bytes when the 10th batch arrived (bound {bound})"
    );
    Ok(())
}

/// A sink that fails after `ok` batches (or, with `fail_finish`, when it finishes).
struct FailingSink {
    ok: usize,
    transient: bool,
    aborted: bool,
    fail_finish: bool,
}

#[async_trait]
impl RowSink for FailingSink {
    async fn write_batch(&mut self, _batch: &RowBatch) -> std::result::Result<(), SinkError> {
        if self.ok == 0 {
            let e = std::io::Error::other("throttled");
            return Err(if self.transient {
                SinkError::transient("write", e)
            } else {
                SinkError::permanent("write", e)
            });
        }
        self.ok -= 1;
        Ok(())
    }

    async fn finish(&mut self) -> std::result::Result<(), SinkError> {
        if self.fail_finish {
            let e = std::io::Error::from_raw_os_error(28);
            return Err(SinkError::permanent("write the last rows", e));
        }
        Ok(())
    }

    async fn abort(&mut self) -> std::result::Result<(), SinkError> {
        self.aborted = true;
        Ok(())
    }
}

#[tokio::test]
async fn a_sink_failing_to_finish_is_aborted() -> Result {
    // A file sink writes its last bytes when it finishes: a full disk then must not leave a partial file.
    let mut sink = FailingSink {
        ok: usize::MAX,
        transient: false,
        aborted: false,
        fail_finish: true,
    };
    let mut rejects = MemoryRejects::default();
    let result = pipeline::import(
        std::io::Cursor::new(b"id,name\n1,a\n".to_vec()),
        csv(),
        template("")?,
        ImportOptions::default(),
        &mut sink,
        &mut rejects,
    )
    .await;
    assert!(result.is_err());
    assert!(sink.aborted);
    Ok(())
}

#[tokio::test]
async fn failing_sink_returns_its_error_and_the_reader_stops() -> Result {
    let mut input = b"id,name\n".to_vec();
    for i in 0..100_000 {
        writeln!(input, "{i},n")?;
    }
    let mut sink = FailingSink {
        ok: 2,
        transient: true,
        aborted: false,
        fail_finish: false,
    };
    let mut rejects = MemoryRejects::default();
    let options = ImportOptions {
        batch_rows: 100,
        ..ImportOptions::default()
    };
    let result = pipeline::import(
        std::io::Cursor::new(input),
        csv(),
        template("")?,
        options,
        &mut sink,
        &mut rejects,
    )
    .await;
    let err = result.err().ok_or("expected the sink's error")?;
    assert!(err.is_transient(), "{err}");
    assert!(sink.aborted);
    Ok(())
}

#[tokio::test]
async fn deadline_stops_at_a_record_boundary_and_the_rest_resumes_from_there() -> Result {
    let mut input = b"id,name\n".to_vec();
    for i in 0..50_000 {
        writeln!(input, "{i},name {i}")?;
    }
    let options = ImportOptions {
        deadline: Some(Instant::now()),
        batch_rows: 500,
        ..ImportOptions::default()
    };
    let (first, rows_a, _) = run(input.clone(), csv(), template("")?, options).await?;
    assert_eq!(first.outcome(), Outcome::Stopped);
    let at = first
        .stopped()
        .map(|s| s.at.clone())
        .ok_or("no stop position")?;
    assert!(
        !rows_a.finished && !rows_a.aborted,
        "a stopped import leaves the sink open"
    );
    assert!(first.counts.rows_imported > 0 && first.counts.rows_imported < 50_000);

    let rest = input[at.position.byte as usize..].to_vec();
    let options = ImportOptions {
        start: at,
        ..ImportOptions::default()
    };
    let (second, rows_b, _) = run(rest, csv(), template("")?, options).await?;
    assert_eq!(second.outcome(), Outcome::Imported);
    assert_eq!(
        first.counts.rows_imported + second.counts.rows_imported,
        50_000
    );
    let ids: Vec<u64> = rows_a
        .rows
        .iter()
        .chain(rows_b.rows.iter())
        .map(|(_, json)| {
            serde_json::from_str::<serde_json::Value>(json)
                .map(|v| v["id"].as_u64().unwrap_or(u64::MAX))
        })
        .collect::<std::result::Result<_, _>>()?;
    assert_eq!(
        ids,
        (0..50_000).collect::<Vec<u64>>(),
        "every row exactly once, in order"
    );
    let last = rows_b.rows.last().ok_or("no rows")?.0;
    assert_eq!(
        (last.record, last.line),
        (50_000, 50_001),
        "numbering continues across pieces"
    );
    Ok(())
}

/// Input that gives `bytes[..cut]`, then blocks in its next read for `stall` (a connection that stops sending),
/// then gives the rest.
struct StallingRead {
    bytes: std::io::Cursor<Vec<u8>>,
    cut: u64,
    stall: Duration,
}

impl std::io::Read for StallingRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.cut.saturating_sub(self.bytes.position());
        if left == 0 && !self.stall.is_zero() {
            std::thread::sleep(std::mem::take(&mut self.stall));
        }
        let n = if left == 0 {
            buf.len()
        } else {
            buf.len().min(usize::try_from(left).unwrap_or(usize::MAX))
        };
        self.bytes.read(&mut buf[..n])
    }
}

/// A read that blocks past the stop point does not hold the piece: it stops when the stop point comes, after
/// the last batch written, with the header carried, and the next piece reads the rest from there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_stalled_past_the_stop_point_stops_the_piece_on_time() -> Result {
    let mut input = b"id,name\n".to_vec();
    // The read stalls three bytes into row 550: rows 0..549 are read, 500 of them written in five batches.
    let mut cut = 0;
    for i in 0..1_000 {
        if i == 550 {
            cut = input.len() as u64 + 3;
        }
        writeln!(input, "{i},name {i}")?;
    }
    let began = Instant::now();
    let options = ImportOptions {
        deadline: Some(began + Duration::from_millis(500)),
        batch_rows: 100,
        ..ImportOptions::default()
    };
    let mut rows = MemorySink::default();
    let mut rejects = MemoryRejects::default();
    let report = pipeline::import_blocking(
        StallingRead {
            bytes: std::io::Cursor::new(input.clone()),
            cut,
            stall: Duration::from_secs(3),
        },
        csv(),
        template("")?,
        options,
        &mut rows,
        &mut rejects,
    )
    .await?;
    let took = began.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "the piece waited for the stalled read: {took:?}"
    );
    assert_eq!(report.outcome(), Outcome::Stopped);
    let at = report
        .stopped()
        .map(|s| s.at.clone())
        .ok_or("no stop position")?;
    assert_eq!(
        at.header.as_deref(),
        Some(&["id".to_owned(), "name".to_owned()][..])
    );
    let written = report.counts.rows_imported;
    assert_eq!(
        written, 500,
        "the batches complete before the stall are written"
    );
    assert_eq!(rows.rows.len() as u64, written);

    let rest = input[at.position.byte as usize..].to_vec();
    let (second, rows_b, _) = run(
        rest,
        csv(),
        template("")?,
        ImportOptions {
            start: at,
            ..ImportOptions::default()
        },
    )
    .await?;
    assert_eq!(second.outcome(), Outcome::Imported);
    let mut rows_a = rows;
    rows_a.rows.extend(rows_b.rows);
    assert_eq!(
        ids_of(&rows_a)?,
        (0..1_000).collect::<Vec<u64>>(),
        "every row exactly once, in order"
    );
    Ok(())
}

/// Input that gives `bytes[..cut]`, then fails the next read with an I/O error, as a network does mid-body.
struct CutRead {
    bytes: std::io::Cursor<Vec<u8>>,
    cut: u64,
}

impl std::io::Read for CutRead {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.cut.saturating_sub(self.bytes.position());
        if left == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset",
            ));
        }
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        self.bytes.read(&mut buf[..n])
    }
}

fn any_io_error(error: &ReadError) -> bool {
    matches!(error, ReadError::Io { .. } | ReadError::Gzip { .. })
}

/// Runs `bytes` (from `options.start`) cut after `cut` raw bytes.
async fn run_cut(
    bytes: Vec<u8>,
    cut: u64,
    format: FileFormat,
    options: ImportOptions,
) -> Result<(pipeline::FileReport, MemorySink, MemoryRejects)> {
    let mut rows = MemorySink::default();
    let mut rejects = MemoryRejects::default();
    let report = pipeline::import_blocking(
        CutRead {
            bytes: std::io::Cursor::new(bytes),
            cut,
        },
        format,
        template("")?,
        options,
        &mut rows,
        &mut rejects,
    )
    .await?;
    Ok((report, rows, rejects))
}

fn ids_of(rows: &MemorySink) -> Result<Vec<u64>> {
    Ok(rows
        .rows
        .iter()
        .map(|(_, json)| {
            serde_json::from_str::<serde_json::Value>(json)
                .map(|v| v["id"].as_u64().unwrap_or(u64::MAX))
        })
        .collect::<std::result::Result<_, _>>()?)
}

/// An accepted read error stops the import after the last complete record, with the sinks suspended (not
/// aborted), and the file resumed from there gives every row exactly once — for each format, and for gzip,
/// which is decoded again from the top and skipped to the stop.
#[tokio::test]
async fn interrupted_read_stops_after_the_last_complete_record_and_resumes_there() -> Result {
    const ROWS: u64 = 20_000;
    let mut csv_bytes = b"id,name\n".to_vec();
    let mut jsonl = Vec::new();
    let mut array = b"[\n".to_vec();
    for i in 0..ROWS {
        writeln!(csv_bytes, "{i},\"name, {i}\"")?;
        writeln!(jsonl, r#"{{"id": {i}, "name": "name {i}"}}"#)?;
        let sep = if i + 1 == ROWS { "" } else { "," };
        writeln!(array, r#"  {{"id": {i}, "name": "name {i}"}}{sep}"#)?;
    }
    array.extend_from_slice(b"]\n");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&csv_bytes)?;
    let gzipped = gz.finish()?;
    let cases = [
        (csv(), csv_bytes),
        (
            FileFormat {
                format: Format::Jsonl,
                compression: Compression::None,
            },
            jsonl,
        ),
        (
            FileFormat {
                format: Format::Json,
                compression: Compression::None,
            },
            array,
        ),
        (
            FileFormat {
                format: Format::Csv,
                compression: Compression::Gzip,
            },
            gzipped,
        ),
    ];
    for (format, bytes) in cases {
        let cut = bytes.len() as u64 * 3 / 7;
        let options = ImportOptions {
            batch_rows: 700,
            interruptible: Some(any_io_error),
            ..ImportOptions::default()
        };
        let (first, rows_a, rejects_a) = run_cut(bytes.clone(), cut, format, options).await?;
        assert_eq!(first.outcome(), Outcome::Stopped, "{format:?}: {first:?}");
        assert!(
            matches!(
                first.stopped().and_then(|s| s.interrupted.as_ref()),
                Some(ReadError::Io { .. } | ReadError::Gzip { .. })
            ),
            "{format:?}: {:?}",
            first.stopped().and_then(|s| s.interrupted.as_ref())
        );
        assert!(!rows_a.finished && !rows_a.aborted, "{format:?}: suspended");
        assert!(rejects_a.rows.is_empty());
        let at = first
            .stopped()
            .map(|s| s.at.clone())
            .ok_or("no stop position")?;
        assert_eq!(
            at.position.record,
            first.counts.rows_imported + 1,
            "{format:?}: the next record is the one cut short"
        );
        assert!(
            first.counts.rows_imported > 0 && first.counts.rows_imported < ROWS,
            "{format:?}"
        );

        // The next piece: uncompressed input is entered at the offset; gzip is read from the top.
        let rest = if format.compression == Compression::None {
            bytes[usize::try_from(at.position.byte)?..].to_vec()
        } else {
            bytes.clone()
        };
        let options = ImportOptions {
            start: at,
            carried: first.counts,
            ..ImportOptions::default()
        };
        let (second, rows_b, _) = run(rest, format, template("")?, options).await?;
        assert_eq!(
            second.outcome(),
            Outcome::Imported,
            "{format:?}: {second:?}"
        );
        assert_eq!(
            second.counts.rows_imported, ROWS,
            "{format:?}: totals carry over"
        );
        let mut ids = ids_of(&rows_a)?;
        ids.extend(ids_of(&rows_b)?);
        assert_eq!(
            ids,
            (0..ROWS).collect::<Vec<_>>(),
            "{format:?}: every row once, in order"
        );
    }
    Ok(())
}

/// Without `interruptible` (or when it refuses the error) a read error fails the file and discards the output.
#[tokio::test]
async fn read_error_not_accepted_as_an_interruption_fails_the_file() -> Result {
    let mut bytes = b"id,name\n".to_vec();
    for i in 0..5_000 {
        writeln!(bytes, "{i},n")?;
    }
    let cut = bytes.len() as u64 / 2;
    for interruptible in [
        None,
        Some((|_: &ReadError| false) as fn(&ReadError) -> bool),
    ] {
        let options = ImportOptions {
            batch_rows: 100,
            interruptible,
            ..ImportOptions::default()
        };
        let (report, rows, _) = run_cut(bytes.clone(), cut, csv(), options).await?;
        assert_eq!(report.outcome(), Outcome::Failed);
        assert!(
            matches!(
                report.failure(),
                Some(FileFailure::Read(ReadError::Io { .. }))
            ),
            "{:?}",
            report.failure()
        );
        assert!(report.stopped().is_none());
        assert!(rows.aborted);
    }
    Ok(())
}

/// A read cut before the first record of a piece stops where the piece started.
#[tokio::test]
async fn read_interrupted_before_any_record_stops_at_the_start() -> Result {
    let mut bytes = b"id,name\n".to_vec();
    for i in 0..100 {
        writeln!(bytes, "{i},n")?;
    }
    let options = ImportOptions {
        interruptible: Some(any_io_error),
        ..ImportOptions::default()
    };
    let (report, rows, _) = run_cut(bytes, 3, csv(), options).await?;
    assert_eq!(report.outcome(), Outcome::Stopped);
    assert_eq!(report.counts.rows_read, 0);
    let at = report
        .stopped()
        .map(|s| s.at.clone())
        .ok_or("no stop position")?;
    assert_eq!(at.position.byte, 0);
    assert!(!rows.aborted && rows.rows.is_empty());
    Ok(())
}

/// A transient sink failure in a later piece leaves the output staged by the earlier pieces alone (the piece is
/// redone from its checkpoint); in the first piece, or when the failure is permanent, the output is discarded.
#[tokio::test]
async fn transient_sink_failure_in_a_later_piece_does_not_abort_the_staged_output() -> Result {
    let mut input = b"id,name\n".to_vec();
    for i in 0..10_000 {
        writeln!(input, "{i},n")?;
    }
    let later = s3_importer_core::read::StartAt {
        position: s3_importer_core::Position {
            record: 0,
            line: 1,
            byte: 8,
        },
        header: Some(vec!["id".into(), "name".into()]),
    };
    for (start, transient, aborted) in [
        (later.clone(), true, false),
        (later.clone(), false, true),
        (Default::default(), true, true),
    ] {
        let body = if start.is_start() {
            input.clone()
        } else {
            input[8..].to_vec()
        };
        let mut sink = FailingSink {
            ok: 2,
            transient,
            aborted: false,
            fail_finish: false,
        };
        let mut rejects = MemoryRejects::default();
        let options = ImportOptions {
            batch_rows: 100,
            start,
            ..ImportOptions::default()
        };
        let result = pipeline::import(
            std::io::Cursor::new(body),
            csv(),
            template("")?,
            options,
            &mut sink,
            &mut rejects,
        )
        .await;
        let err = result.err().ok_or("expected the sink's error")?;
        assert_eq!(err.is_transient(), transient);
        assert_eq!(sink.aborted, aborted, "transient {transient}, later piece");
    }
    Ok(())
}

/// Records the size of every call to the error report.
#[derive(Default)]
struct CountingRejects {
    calls: Vec<usize>,
}

#[async_trait]
impl RejectSink for CountingRejects {
    async fn write_rejects(&mut self, rows: &[RejectedRow]) -> std::result::Result<(), SinkError> {
        self.calls.push(rows.len());
        Ok(())
    }

    async fn finish(&mut self) -> std::result::Result<Option<String>, SinkError> {
        Ok(Some("counted".into()))
    }
}

#[tokio::test]
async fn a_file_of_rejected_rows_reaches_the_report_in_bounded_batches() -> Result {
    // File output fills batches by the bytes of good rows; rows that are all rejected must still leave the
    // reader in batches of at most MAX_REJECTS_PER_BATCH, not be held until the end of the file.
    let n = 3 * pipeline::MAX_REJECTS_PER_BATCH + 17;
    let mut bytes = b"id,name,score\n".to_vec();
    for i in 0..n {
        writeln!(bytes, "not-a-number-{i},x,1.5")?;
    }
    let mut rows = MemorySink::default();
    let mut rejects = CountingRejects::default();
    let report = pipeline::import(
        std::io::Cursor::new(bytes),
        csv(),
        template("")?,
        ImportOptions::for_file_output(),
        &mut rows,
        &mut rejects,
    )
    .await?;
    assert_eq!(report.counts.rows_rejected, n as u64);
    assert_eq!(rejects.calls.iter().sum::<usize>(), n);
    assert!(
        rejects
            .calls
            .iter()
            .all(|&c| c <= pipeline::MAX_REJECTS_PER_BATCH),
        "error report batches {:?}",
        rejects.calls
    );
    Ok(())
}

#[tokio::test]
async fn empty_files_of_every_format_import_zero_rows() -> Result {
    let formats = [Format::Csv, Format::Tsv, Format::Json, Format::Jsonl];
    let contents: [&[u8]; 4] = [b"", b"\n\r\n", b"\xef\xbb\xbf", b" \n"];
    for format in formats {
        for content in contents {
            if matches!(format, Format::Csv | Format::Tsv) && content.contains(&b' ') {
                // A line of spaces is a CSV record: a header with one blank column (below).
                continue;
            }
            let file = FileFormat {
                format,
                compression: Compression::None,
            };
            // The template has required fields: an empty CSV has no header to miss them in.
            let (report, rows, rejects) = run(
                content.to_vec(),
                file,
                template("")?,
                ImportOptions::default(),
            )
            .await?;
            assert!(
                report.failure().is_none(),
                "{format} {content:?}: {:?}",
                report.failure()
            );
            assert_eq!(
                (report.counts.rows_read, rows.rows.len(), rejects.rows.len()),
                (0, 0, 0)
            );
        }
    }
    // A header that names no required column still fails the file, blank or not.
    for header in [&b"a,b\n"[..], b" \n", b",\n1,Ada\n"] {
        let (report, _, _) = run(
            header.to_vec(),
            csv(),
            template("")?,
            ImportOptions::default(),
        )
        .await?;
        assert!(report.failure().is_some(), "{header:?}");
    }
    Ok(())
}

/// Records the positions its batches carry; says whether it reads them.
struct PositionsSink {
    needs: bool,
    seen: Vec<(u64, u64, u64)>,
    rows: Vec<String>,
}

#[async_trait]
impl RowSink for PositionsSink {
    fn needs_positions(&self) -> bool {
        self.needs
    }

    async fn write_batch(&mut self, batch: &RowBatch) -> std::result::Result<(), SinkError> {
        for (p, row) in batch.iter() {
            self.seen.push((p.record, p.line, p.byte));
            self.rows.push(String::from_utf8_lossy(row).into_owned());
        }
        Ok(())
    }

    async fn finish(&mut self) -> std::result::Result<(), SinkError> {
        Ok(())
    }
}

/// A sink that reads positions gets each row's; one that says it does not gets the same rows, without them.
#[tokio::test]
async fn rows_carry_their_positions_to_the_sinks_that_read_them() -> Result {
    let input = b"id,name,score\n1,\"two\nlines\",1.5\n2,b,\n\n3,c,2\n".to_vec();
    let mut got = Vec::new();
    for needs in [true, false] {
        let mut rows = PositionsSink {
            needs,
            seen: Vec::new(),
            rows: Vec::new(),
        };
        let mut rejects = MemoryRejects::default();
        let report = pipeline::import(
            std::io::Cursor::new(input.clone()),
            csv(),
            template("")?,
            ImportOptions {
                batch_rows: 2,
                ..ImportOptions::default()
            },
            &mut rows,
            &mut rejects,
        )
        .await?;
        assert_eq!(report.counts.rows_imported, 3);
        got.push(rows);
    }
    let (with, without) = (&got[0], &got[1]);
    assert_eq!(with.seen, vec![(1, 2, 14), (2, 4, 32), (3, 6, 38)]);
    assert_eq!(without.seen, vec![(0, 0, 0); 3]);
    assert_eq!(with.rows, without.rows);
    assert_eq!(
        with.rows[0],
        r#"{"id":1,"name":"two\nlines","score":"1.5"}"#
    );
    Ok(())
}

/// A sink that takes `cost` per row and says so ([`RowSink::row_cost`]), recording each batch's size.
struct RatedSink {
    cost: Duration,
    batches: Vec<usize>,
}

#[async_trait]
impl RowSink for RatedSink {
    async fn write_batch(&mut self, batch: &RowBatch) -> std::result::Result<(), SinkError> {
        self.batches.push(batch.len());
        tokio::time::sleep(self.cost * batch.len() as u32).await;
        Ok(())
    }

    fn row_cost(&self) -> Option<Duration> {
        Some(self.cost)
    }

    async fn finish(&mut self) -> std::result::Result<(), SinkError> {
        Ok(())
    }
}

/// A rate-limited sink (2 ms a row) with a 100 ms write budget: the very first batch holds the 50 rows that
/// fit, not the configured 2,000, and the piece stops near its deadline instead of after a 4 s first write.
#[tokio::test]
async fn a_sink_with_a_known_row_cost_gets_first_batches_that_fit_the_budget() -> Result {
    let mut input = b"id,name\n".to_vec();
    for i in 0..2_000 {
        writeln!(input, "{i},name {i}")?;
    }
    let mut sink = RatedSink {
        cost: Duration::from_millis(2),
        batches: Vec::new(),
    };
    let started = Instant::now();
    let options = ImportOptions {
        deadline: Some(started + Duration::from_millis(600)),
        write_budget: Some(Duration::from_millis(100)),
        batch_rows: 2_000,
        ..ImportOptions::default()
    };
    let report = pipeline::import(
        std::io::Cursor::new(input),
        csv(),
        template("")?,
        options,
        &mut sink,
        &mut MemoryRejects::default(),
    )
    .await?;
    let took = started.elapsed();
    assert_eq!(report.outcome(), Outcome::Stopped);
    assert_eq!(sink.batches.first(), Some(&50), "{:?}", sink.batches);
    assert!(sink.batches.iter().all(|&n| n <= 50), "{:?}", sink.batches);
    assert!(took < Duration::from_millis(1500), "stopped after {took:?}");
    Ok(())
}
