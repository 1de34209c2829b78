//! `s3-importer import-file`: the import pipeline on a local file.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use s3_importer_aws::parquet::encode::FileLineage;
use s3_importer_aws::parquet::{ParquetFileSink, DEFAULT_ROW_GROUP_BYTES};
use s3_importer_core::pipeline::{self, ImportOptions, Outcome};
use s3_importer_core::sink::{ErrorReportWriter, RowSink};
use s3_importer_core::template::Template;
use s3_importer_core::{format, Format, Limits};
use s3_importer_file::JsonlFileSink;
use serde_json::json;

use crate::connector::OutputFormat;
use crate::exit::{exit, Status};

/// Arguments of `import-file`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The data template (TOML) that rows must match.
    #[arg(long, short = 't', value_name = "TEMPLATE")]
    template: PathBuf,
    /// Read the file as this format instead of the template's or the extension's (csv, tsv, json, jsonl).
    #[arg(long)]
    format: Option<Format>,
    /// Where typed rows go. Default: `<FILE name>.rows.jsonl` (or `.rows.parquet`) in --out-dir.
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
    /// The rows file's format: JSON Lines as validated, or Parquet typed from the template (as the S3
    /// destination writes it, with its lineage columns).
    #[arg(long, value_enum, default_value_t = OutputFormat::Jsonl)]
    output_format: OutputFormat,
    /// Where the error report goes (JSON Lines). Default: `<FILE name>.errors.jsonl` in --out-dir.
    #[arg(long)]
    errors: Option<PathBuf>,
    /// Directory for the default output names.
    #[arg(long, default_value = ".")]
    out_dir: PathBuf,
    /// Largest record in bytes (a larger one is rejected without being read into memory).
    #[arg(long, default_value_t = Limits::DEFAULT_MAX_RECORD_BYTES, value_parser = at_least_one::<usize>)]
    max_record_bytes: usize,
    /// Most bytes a gzip file may expand to.
    #[arg(long, default_value_t = Limits::DEFAULT_MAX_DECOMPRESSED_BYTES, value_parser = at_least_one::<u64>)]
    max_decompressed_bytes: u64,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// The file to import (.csv .tsv .json .jsonl .ndjson, optionally .gz).
    file: PathBuf,
}

fn default_output(dir: &Path, file: &Path, suffix: &str) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "input".into());
    dir.join(format!("{name}.{suffix}"))
}

/// Whether `a` and `b` name the same file: the same inode when both exist, else the same absolute path.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => match (std::path::absolute(a), std::path::absolute(b)) {
            (Ok(x), Ok(y)) => x == y,
            _ => a == b,
        },
    }
}

/// Refuses an output or error report that would overwrite the input, and one file for both outputs (the
/// rows would overwrite the report). Device files such as `/dev/null` may take both.
fn refuse_overlapping_paths(input: &Path, output: &Path, errors: &Path) -> anyhow::Result<()> {
    for (what, path) in [("--output", output), ("--errors", errors)] {
        if same_file(input, path) {
            return Err(exit(
                Status::Usage,
                format!(
                    "{what} {} is the input file: it would be overwritten",
                    path.display()
                ),
            ));
        }
    }
    let is_regular_or_new = std::fs::metadata(output).map_or(true, |m| m.is_file());
    if is_regular_or_new && same_file(output, errors) {
        return Err(exit(
            Status::Usage,
            format!(
                "--output and --errors both name {}: give the error report its own file",
                output.display()
            ),
        ));
    }
    Ok(())
}

/// Runs the command.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    // An invalid template is a usage error (exit 2), as in `template add`.
    let (_, template) = crate::template_cmd::load(&args.template)?;
    let key = args.file.to_string_lossy();
    let Some(file_format) = format::detect_format(&key, args.format.or(template.format), None)
    else {
        bail!(
            "cannot tell the format of {}: name it .csv, .tsv, .json, .jsonl or .ndjson (optionally .gz), \
             or set `format` in the template or --format",
            args.file.display()
        );
    };
    let input = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot open {}", args.file.display()))?;
    let total = input.metadata().map(|m| m.len()).unwrap_or(0);
    let suffix = match args.output_format {
        OutputFormat::Jsonl => "rows.jsonl",
        OutputFormat::Parquet => "rows.parquet",
    };
    let output = args
        .output
        .clone()
        .unwrap_or_else(|| default_output(&args.out_dir, &args.file, suffix));
    let errors_path = args
        .errors
        .clone()
        .unwrap_or_else(|| default_output(&args.out_dir, &args.file, "errors.jsonl"));
    refuse_overlapping_paths(&args.file, &output, &errors_path)?;
    // A report path that already exists (a file named by the user, /dev/null) is never removed afterwards.
    let errors_existed = tokio::fs::symlink_metadata(&errors_path).await.is_ok();
    let template = Arc::new(template);
    let mut rows = rows_sink(args.output_format, &output, &args.file, &template).await?;
    let errors_file = match tokio::fs::File::create(&errors_path).await {
        Ok(file) => file,
        Err(e) => {
            // Nothing may be left behind by a command that wrote nothing.
            let _ = rows.abort().await;
            return Err(e).with_context(|| format!("cannot create {}", errors_path.display()));
        }
    };
    let mut rejects = ErrorReportWriter::new(errors_file, errors_path.display().to_string());

    let options = ImportOptions {
        limits: Limits {
            max_record_bytes: args.max_record_bytes,
            max_decompressed_bytes: args.max_decompressed_bytes,
            ..Limits::default()
        },
        ..ImportOptions::for_file_output()
    };
    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let counter = options.input_bytes.clone();
        let ticker_bar = bar.clone();
        let ticker = tokio::spawn(async move {
            loop {
                ticker_bar.set_position(counter.load(std::sync::atomic::Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        (bar, ticker)
    });

    let report = pipeline::import_blocking(
        input,
        file_format,
        template,
        options,
        rows.as_mut(),
        &mut rejects,
    )
    .await;
    if let Some((bar, ticker)) = progress {
        ticker.abort();
        bar.finish_and_clear();
    }
    let report = match report {
        Ok(report) => report,
        Err(e) => {
            // The rows file was removed by the pipeline; its report goes too (the import did not happen).
            if !errors_existed {
                let _ = tokio::fs::remove_file(&errors_path).await;
            }
            return Err(e).with_context(|| format!("writing {} failed", output.display()));
        }
    };
    if report.error_report.is_none() && !errors_existed {
        // No rejected rows: do not leave an empty report behind.
        let _ = tokio::fs::remove_file(&errors_path).await;
    }
    let outcome = report.outcome();
    let secs = report.duration.as_secs_f64();
    let mb_per_s = if secs > 0.0 {
        report.input_bytes as f64 / 1e6 / secs
    } else {
        0.0
    };
    if args.json {
        let summary = json!({
            "file": args.file,
            "format": file_format.format,
            "compression": file_format.compression,
            "outcome": outcome,
            "rows_read": report.counts.rows_read,
            "rows_imported": report.counts.rows_imported,
            "rows_rejected": report.counts.rows_rejected,
            "input_bytes": report.input_bytes,
            "duration_ms": report.duration.as_millis() as u64,
            "output": (outcome != Outcome::Failed).then(|| output.display().to_string()),
            "error_report": report.error_report,
            "first_error": report.first_error,
            "failure": report.failure().map(|f| f.to_string()),
        });
        outln!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        match report.failure() {
            None => {
                outln!(
                    "Imported {} rows, rejected {} from {} ({:.1} MB in {:.2}s, {:.0} MB/s)",
                    report.counts.rows_imported,
                    report.counts.rows_rejected,
                    args.file.display(),
                    report.input_bytes as f64 / 1e6,
                    secs,
                    mb_per_s
                );
                outln!("  rows:         {}", output.display());
            }
            Some(failure) => {
                outln!(
                    "FAILED {}: {failure} (after {} rows read, {} rejected; no output written)",
                    args.file.display(),
                    report.counts.rows_read,
                    report.counts.rows_rejected
                );
            }
        }
        if let Some(location) = &report.error_report {
            outln!("  error report: {location}");
        }
        if let Some(first) = &report.first_error {
            outln!("  first error:  {}: {}", first.position, first.error);
        }
    }
    Ok(if outcome == Outcome::Failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The rows file's sink. A Parquet file's lineage columns name the input file, its modification time, and
/// `"local"` for the ETag.
async fn rows_sink(
    format: OutputFormat,
    output: &Path,
    input: &Path,
    template: &Template,
) -> anyhow::Result<Box<dyn RowSink>> {
    Ok(match format {
        OutputFormat::Jsonl => Box::new(JsonlFileSink::create(output).await?),
        OutputFormat::Parquet => {
            let modified = std::fs::metadata(input)
                .and_then(|m| m.modified())
                .map(chrono::DateTime::<chrono::Utc>::from)
                .unwrap_or_else(|_| chrono::Utc::now());
            let lineage = FileLineage {
                source_key: input.display().to_string(),
                source_etag: "\"local\"".into(),
                last_modified_micros: modified.timestamp_micros(),
                imported_at_micros: chrono::Utc::now().timestamp_micros(),
            };
            Box::new(ParquetFileSink::create(
                output,
                template,
                lineage,
                DEFAULT_ROW_GROUP_BYTES,
            )?)
        }
    })
}

/// A limit of at least 1 (0 would refuse every file, and only after reading its header).
fn at_least_one<T>(text: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + From<u8>,
    T::Err: std::fmt::Display,
{
    let value: T = text.parse().map_err(|e: T::Err| e.to_string())?;
    if value < T::from(1u8) {
        return Err("must be at least 1".into());
    }
    Ok(value)
}
