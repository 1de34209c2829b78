//! `make bench`: the import pipeline's throughput and peak memory, per format, against the raw parse speed of
//! the same bytes.
//!
//! The parent process generates deterministic data (cached under `target/bench-data/`), then runs every
//! measurement in a child process of its own pinned to one CPU, so each peak RSS is that of the process that
//! did the work (read from the kernel's `VmHWM`, not estimated) and no measurement runs on two cores.
//!
//! Usage: `cargo bench -p s3-importer-file --bench pipeline -- [--mb N] [--runs R] [--formats csv,jsonl,json]
//! [--tmpfs DIR]` (`BENCH_MB`, `BENCH_RUNS` and `BENCH_TMPFS` also set them). The last lines are
//! machine-readable, one per format: `bench format=csv input_mb=1000 rows=... mb_per_s=...
//! raw_parse_mb_per_s=... ratio=... peak_rss_mib=... cpu_ratio=... mb_per_s_tmpfs=... ratio_tmpfs=...
//! cpu_ratio_tmpfs=... peak_rss_mib_tmpfs=...`. Each figure is the best of R runs (3 by default), raw and
//! pipeline runs interleaved; `ratio` is wall time, `cpu_ratio` the same ratio in CPU time (user + system), which
//! other load on the machine moves less.
//!
//! The pipeline writes its JSONL output (and `fsync`s it, as the file sink does) to a temporary directory on
//! the disk (`TMPDIR`, else `/tmp`): the plain figures. It runs a second time with the output on a tmpfs
//! (`/dev/shm` unless `--tmpfs`/`BENCH_TMPFS` names another directory; `--tmpfs none` skips it): the `_tmpfs`
//! figures, the same work without the disk's writeback, which on a VM can dominate a gigabyte's wall time.
//! For CSV the raw parse is the `csv` crate's `read_byte_record` loop; for JSON Lines `serde_json` parsing each
//! line into `IgnoredAny`; for a JSON array `serde_json` streaming the document into `IgnoredAny`.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use s3_importer_core::pipeline::{self, ImportOptions};
use s3_importer_core::sink::ErrorReportWriter;
use s3_importer_core::template::Template;
use s3_importer_core::{Compression, FileFormat, Format};
use s3_importer_file::bench::data::TEMPLATE;
use s3_importer_file::bench::process::{cpu_secs, peak_rss_kib, pin_to_one_cpu};
use s3_importer_file::JsonlFileSink;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Child: one measurement; prints `rows secs peak_rss_kib cpu_secs`. The pipeline's output goes to a new
/// temporary directory inside `out_dir` (the system's temporary directory when `None`).
fn child(mode: &str, format: Format, path: &Path, out_dir: Option<&Path>) -> Result<()> {
    pin_to_one_cpu();
    let started = Instant::now();
    let cpu_started = cpu_secs();
    // The pipeline stops the clock itself, before its temporary output is deleted.
    let mut stopped = None;
    // How the pipeline's output file was written (direct I/O where the file system has it).
    let mut output_io = "none";
    let rows: u64 = match mode {
        "raw" => match format {
            Format::Csv | Format::Tsv => {
                let mut rdr = csv::ReaderBuilder::new()
                    .buffer_capacity(256 * 1024)
                    .from_reader(std::fs::File::open(path)?);
                let mut rec = csv::ByteRecord::new();
                let mut n = 0;
                while rdr.read_byte_record(&mut rec)? {
                    n += 1;
                }
                n
            }
            Format::Jsonl => {
                let mut rdr = BufReader::with_capacity(256 * 1024, std::fs::File::open(path)?);
                let mut line = Vec::new();
                let mut n = 0;
                while rdr.read_until(b'\n', &mut line)? > 0 {
                    serde_json::from_slice::<serde::de::IgnoredAny>(&line)?;
                    line.clear();
                    n += 1;
                }
                n
            }
            Format::Json => {
                let rdr = BufReader::with_capacity(256 * 1024, std::fs::File::open(path)?);
                let v: Vec<serde::de::IgnoredAny> = serde_json::from_reader(rdr)?;
                v.len() as u64
            }
        },
        _ => {
            let template = Arc::new(Template::from_toml(TEMPLATE)?);
            let out_dir = match out_dir {
                Some(dir) => tempfile::tempdir_in(dir)?,
                None => tempfile::tempdir()?,
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let rows = runtime.block_on(async {
                let input = std::fs::File::open(path)?;
                let mut rows = JsonlFileSink::create(out_dir.path().join("rows.jsonl")).await?;
                output_io = if rows.is_direct_io() {
                    "direct"
                } else {
                    "buffered"
                };
                let mut rejects = ErrorReportWriter::new(
                    tokio::fs::File::create(out_dir.path().join("errors.jsonl")).await?,
                    "errors",
                );
                let report = pipeline::import_blocking(
                    input,
                    FileFormat {
                        format,
                        compression: Compression::None,
                    },
                    template,
                    ImportOptions::for_file_output(),
                    &mut rows,
                    &mut rejects,
                )
                .await?;
                if let Some(f) = report.failure() {
                    return Err(format!("bench file failed: {f}").into());
                }
                if report.counts.rows_rejected > 0 {
                    return Err(format!(
                        "bench data rejected {} rows: {:?}",
                        report.counts.rows_rejected, report.first_error
                    )
                    .into());
                }
                Ok::<u64, Box<dyn std::error::Error>>(report.counts.rows_imported)
            })?;
            stopped = Some((started.elapsed(), cpu_secs()));
            rows
        }
    };
    let (elapsed, cpu_now) = stopped.unwrap_or_else(|| (started.elapsed(), cpu_secs()));
    println!(
        "{rows} {} {} {} {output_io}",
        elapsed.as_secs_f64(),
        peak_rss_kib(),
        cpu_now - cpu_started
    );
    Ok(())
}

struct Measured {
    rows: u64,
    secs: f64,
    peak_kib: u64,
    cpu_secs: f64,
    /// `direct`, `buffered` (the pipeline's output file) or `none` (raw parse).
    output_io: String,
}

/// What one child process measures: the raw parse, or the pipeline with its output in a directory (the
/// system's temporary directory when `None`).
#[derive(Clone, Copy)]
enum Mode<'a> {
    Raw,
    Pipeline(Option<&'a Path>),
}

/// Best of `runs`, per mode, with the modes' runs interleaved (raw, pipeline, raw, ...) so that all see the
/// same load from whatever else shares the machine.
fn measure_all(
    format: Format,
    path: &Path,
    runs: usize,
    modes: &[Mode<'_>],
) -> Result<Vec<Measured>> {
    let mut bests: Vec<Option<Measured>> = modes.iter().map(|_| None).collect();
    for _ in 0..runs.max(1) {
        for (mode, best) in modes.iter().zip(bests.iter_mut()) {
            let m = measure_once(*mode, format, path)?;
            let cpu_secs = best
                .as_ref()
                .map_or(m.cpu_secs, |b| b.cpu_secs.min(m.cpu_secs));
            if best.as_ref().is_none_or(|b| m.secs < b.secs) {
                *best = Some(m);
            }
            if let Some(b) = best.as_mut() {
                b.cpu_secs = cpu_secs;
            }
        }
    }
    bests
        .into_iter()
        .map(|b| b.ok_or_else(|| "no run".into()))
        .collect()
}

fn measure_once(mode: Mode<'_>, format: Format, path: &Path) -> Result<Measured> {
    let exe = std::env::current_exe()?;
    let mut command = Command::new(&exe);
    match mode {
        Mode::Raw => command.args(["--child", "raw", format.as_str()]).arg(path),
        Mode::Pipeline(dir) => {
            command
                .args(["--child", "pipeline", format.as_str()])
                .arg(path);
            if let Some(dir) = dir {
                command.arg(dir);
            }
            &mut command
        }
    };
    let out = command.output()?;
    let mode = match mode {
        Mode::Raw => "raw",
        Mode::Pipeline(_) => "pipeline",
    };
    if !out.status.success() {
        return Err(format!(
            "{mode} {format} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let text = String::from_utf8(out.stdout)?;
    let mut it = text.split_whitespace();
    Ok(Measured {
        rows: it.next().ok_or("no rows")?.parse()?,
        secs: it.next().ok_or("no secs")?.parse()?,
        peak_kib: it.next().ok_or("no rss")?.parse()?,
        cpu_secs: it.next().ok_or("no cpu")?.parse()?,
        output_io: it.next().ok_or("no output_io")?.to_owned(),
    })
}

fn arg_value(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let mode = args.get(i + 1).ok_or("mode")?;
        let format: Format = args.get(i + 2).ok_or("format")?.parse()?;
        let path = PathBuf::from(args.get(i + 3).ok_or("path")?);
        let out_dir = args.get(i + 4).map(PathBuf::from);
        return child(mode, format, &path, out_dir.as_deref());
    }
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --all-targets` runs bench binaries without `--bench`: do not generate a gigabyte then.
        eprintln!("pipeline bench: run it with `make bench` or `cargo bench -p s3-importer-file --bench pipeline`");
        return Ok(());
    }
    let mb: u64 = arg_value(&args, "--mb")
        .or_else(|| std::env::var("BENCH_MB").ok())
        .unwrap_or_else(|| "1000".into())
        .parse()?;
    let runs: usize = arg_value(&args, "--runs")
        .or_else(|| std::env::var("BENCH_RUNS").ok())
        .unwrap_or_else(|| "3".into())
        .parse()?;
    let formats: Vec<Format> = arg_value(&args, "--formats")
        .unwrap_or_else(|| "csv,jsonl,json".into())
        .split(',')
        .map(str::parse)
        .collect::<std::result::Result<_, _>>()?;
    let tmpfs = arg_value(&args, "--tmpfs")
        .or_else(|| std::env::var("BENCH_TMPFS").ok())
        .unwrap_or_else(|| "/dev/shm".into());
    let tmpfs = (tmpfs != "none" && Path::new(&tmpfs).is_dir()).then(|| PathBuf::from(tmpfs));
    if tmpfs.is_none() {
        eprintln!("no tmpfs directory: only the disk-output figures are measured");
    }
    let mut lines = Vec::new();
    for format in formats {
        let path = s3_importer_file::bench::data::cached(format, mb)?;
        let bytes = std::fs::metadata(&path)?.len();
        let input_mb = bytes as f64 / 1e6;
        // Warm the page cache so the first measurement does not pay for the disk.
        std::io::copy(
            &mut std::fs::File::open(&path)?.take(u64::MAX),
            &mut std::io::sink(),
        )?;
        let mut modes = vec![Mode::Raw, Mode::Pipeline(None)];
        if let Some(dir) = &tmpfs {
            modes.push(Mode::Pipeline(Some(dir)));
        }
        let measured = measure_all(format, &path, runs, &modes)?;
        let (raw, pipe) = (&measured[0], &measured[1]);
        let raw_speed = input_mb / raw.secs;
        let pipe_speed = input_mb / pipe.secs;
        let cpu_ratio = raw.cpu_secs / pipe.cpu_secs;
        eprintln!(
            "{format:>5}: {input_mb:.0} MB, {} rows | raw parse {raw_speed:.1} MB/s ({:.1} MiB peak) | pipeline {pipe_speed:.1} MB/s ({:.1} MiB peak, {} output) | ratio {:.2} (CPU time: raw {:.3}s, pipeline {:.3}s, ratio {cpu_ratio:.2}; best of {runs})",
            pipe.rows,
            raw.peak_kib as f64 / 1024.0,
            pipe.peak_kib as f64 / 1024.0,
            pipe.output_io,
            pipe_speed / raw_speed,
            raw.cpu_secs,
            pipe.cpu_secs,
        );
        let mut line = format!(
            "bench format={format} input_mb={input_mb:.0} rows={} mb_per_s={pipe_speed:.1} raw_parse_mb_per_s={raw_speed:.1} ratio={:.2} peak_rss_mib={:.1} cpu_ratio={cpu_ratio:.2} output_io={}",
            pipe.rows,
            pipe_speed / raw_speed,
            pipe.peak_kib as f64 / 1024.0,
            pipe.output_io
        );
        if let Some(shm) = measured.get(2) {
            let shm_speed = input_mb / shm.secs;
            let shm_cpu_ratio = raw.cpu_secs / shm.cpu_secs;
            eprintln!(
                "{format:>5}: output on tmpfs | pipeline {shm_speed:.1} MB/s ({:.1} MiB peak) | ratio {:.2} (CPU time: pipeline {:.3}s, ratio {shm_cpu_ratio:.2})",
                shm.peak_kib as f64 / 1024.0,
                shm_speed / raw_speed,
                shm.cpu_secs,
            );
            line.push_str(&format!(
                " mb_per_s_tmpfs={shm_speed:.1} ratio_tmpfs={:.2} cpu_ratio_tmpfs={shm_cpu_ratio:.2} peak_rss_mib_tmpfs={:.1}",
                shm_speed / raw_speed,
                shm.peak_kib as f64 / 1024.0
            ));
        }
        lines.push(line);
    }
    for line in lines {
        println!("{line}");
    }
    Ok(())
}
