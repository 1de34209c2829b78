//! `make bench-destinations`: how fast rows reach each destination, against a baseline tool measured in the
//! same run on the same rows (the `make bench` data: a generated CSV of `BENCH_MB` MB, default 1000, cached
//! under `target/bench-data/`).
//!
//! - `postgres`: the full import into a table with a primary key, against `psql \copy` into a table with the
//!   same columns and no key (the server's raw load speed), on a real server from the project venv;
//! - `parquet`: the full import to a local Parquet file, against pyarrow (`read_csv` + `write_table`, zstd,
//!   one thread) on the same CSV;
//! - `dynamodb`: on the emulator, the first `BENCH_DYNAMODB_ROWS` rows (default 5,000: the emulator takes
//!   milliseconds a request) through the DynamoDB destination, against boto3's `batch_writer`.
//!
//! Every measurement is a child process pinned to one CPU (one worker), timed from spawn to exit, its peak
//! RSS read from the kernel when it is reaped; importer and baseline runs are interleaved, `BENCH_RUNS`
//! (default 1) pairs, and the best of each side is kept. The last line per destination:
//!
//! ```text
//! bench-destination kind=postgres rows=… rows_per_s=… mb_per_s=… baseline_rows_per_s=… ratio=… peak_rss_mib=…
//! ```
//!
//! `BENCH_DESTINATIONS` (default `postgres,parquet,dynamodb`) picks them; `S3I_DYNAMODB_WRITE_CONCURRENCY`
//! (default 16) is the DynamoDB destination's PutItem calls in flight, as in the worker.

mod dynamodb;
mod import;
mod measure;
mod parquet;
mod postgres;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use s3_importer_core::config::{vars, DEFAULT_DYNAMODB_WRITE_CONCURRENCY};
use s3_importer_core::Format;

use crate::measure::Run;

/// Importer and baseline runs of one destination.
#[derive(Debug, Default)]
pub struct Paired {
    rows: u64,
    importer: Vec<Run>,
    baseline: Vec<Run>,
    /// DynamoDB: write requests per 1,000 rows, (importer, baseline).
    requests_per_1000_rows: Option<(f64, f64)>,
}

impl Paired {
    fn push(&mut self, rows: u64, importer: Run, baseline: Run) {
        self.rows = rows;
        self.importer.push(importer);
        self.baseline.push(baseline);
    }

    /// The best (fastest) run of each side.
    fn figures(self) -> Result<Figures> {
        let best = |runs: &[Run]| {
            runs.iter()
                .min_by(|a, b| a.secs.total_cmp(&b.secs))
                .cloned()
                .context("no run")
        };
        Ok(Figures {
            rows: self.rows,
            importer: best(&self.importer)?,
            baseline: best(&self.baseline)?,
            requests_per_1000_rows: self.requests_per_1000_rows,
        })
    }
}

/// What one destination's line reports.
#[derive(Debug)]
pub struct Figures {
    rows: u64,
    importer: Run,
    baseline: Run,
    requests_per_1000_rows: Option<(f64, f64)>,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .with_context(|| format!("{name}={v:?} is invalid")),
        _ => Ok(default),
    }
}

fn arg(args: &[String], i: usize, what: &str) -> Result<String> {
    args.get(i)
        .cloned()
        .with_context(|| format!("missing argument: {what}"))
}

/// A measured child: `--child KIND ARGS…`.
async fn child(args: &[String]) -> Result<()> {
    let kind = arg(args, 0, "kind")?;
    let csv = PathBuf::from(arg(args, 1, "csv")?);
    match kind.as_str() {
        "postgres" => postgres::child(&csv, &arg(args, 2, "table")?, &arg(args, 3, "etag")?).await,
        "parquet" => parquet::child(&csv, Path::new(&arg(args, 2, "output")?)).await,
        "dynamodb" => {
            let concurrency = arg(args, 3, "concurrency")?.parse()?;
            dynamodb::child(&csv, &arg(args, 2, "table")?, concurrency).await
        }
        other => bail!("unknown child {other}"),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        return child(&args[i + 1..]).await;
    }
    let mb: u64 = env_or("BENCH_MB", 1000)?;
    let runs: usize = env_or("BENCH_RUNS", 1usize)?.max(1);
    let dynamodb_rows: u64 = env_or("BENCH_DYNAMODB_ROWS", 5_000)?.max(1);
    let concurrency: usize = env_or(
        vars::DYNAMODB_WRITE_CONCURRENCY,
        DEFAULT_DYNAMODB_WRITE_CONCURRENCY,
    )?
    .max(1);
    let kinds = std::env::var("BENCH_DESTINATIONS")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "postgres,parquet,dynamodb".into());
    let csv = s3_importer_file::bench::data::cached(Format::Csv, mb)?;
    let bytes = std::fs::metadata(&csv)?.len();
    let mut lines = Vec::new();
    for kind in kinds.split(',').map(str::trim) {
        let (figures, input_bytes) = match kind {
            "postgres" => (postgres::bench(&csv, runs).await?, bytes),
            "parquet" => (parquet::bench(&csv, runs)?, bytes),
            "dynamodb" => {
                let figures = dynamodb::bench(&csv, dynamodb_rows, concurrency, runs).await?;
                // The rows are a prefix of the file: its bytes in proportion.
                let share = bytes as f64 * figures.rows as f64 / rows_in(&csv)? as f64;
                (figures, share as u64)
            }
            other => bail!(
                "unknown destination {other:?} in BENCH_DESTINATIONS (postgres, parquet, dynamodb)"
            ),
        };
        lines.push(line(kind, &figures, input_bytes, concurrency));
    }
    for line in lines {
        println!("{line}");
    }
    Ok(())
}

/// Records in the bench CSV.
fn rows_in(csv: &Path) -> Result<u64> {
    let mut reader = ::csv::Reader::from_path(csv)?;
    let mut record = ::csv::ByteRecord::new();
    let mut n = 0;
    while reader.read_byte_record(&mut record)? {
        n += 1;
    }
    Ok(n)
}

fn line(kind: &str, f: &Figures, input_bytes: u64, concurrency: usize) -> String {
    let rows_per_s = f.rows as f64 / f.importer.secs;
    let baseline = f.rows as f64 / f.baseline.secs;
    let mut line = format!(
        "bench-destination kind={kind} rows={} rows_per_s={rows_per_s:.0} mb_per_s={:.1} baseline_rows_per_s={baseline:.0} ratio={:.2} peak_rss_mib={:.1} baseline_peak_rss_mib={:.1}",
        f.rows,
        input_bytes as f64 / 1e6 / f.importer.secs,
        rows_per_s / baseline,
        f.importer.peak_rss_mib,
        f.baseline.peak_rss_mib,
    );
    if let Some((ours, theirs)) = f.requests_per_1000_rows {
        line.push_str(&format!(
            " write_concurrency={concurrency} requests_per_1000_rows={ours:.0} baseline_requests_per_1000_rows={theirs:.0}"
        ));
    }
    line
}
