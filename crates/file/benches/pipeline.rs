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

use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use s3_importer_core::pipeline::{self, ImportOptions};
use s3_importer_core::sink::ErrorReportWriter;
use s3_importer_core::template::Template;
use s3_importer_core::{Compression, FileFormat, Format};
use s3_importer_file::JsonlFileSink;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const TEMPLATE: &str = r#"
name = "bench_orders"
primary_key = ["id"]

[[fields]]
name = "id"
type = "integer"
required = true

[[fields]]
name = "order_id"
type = "string"
required = true
max_length = 32

[[fields]]
name = "customer"
type = "string"
required = true

[[fields]]
name = "email"
type = "string"

[[fields]]
name = "amount"
type = "decimal"
required = true
scale = 2

[[fields]]
name = "quantity"
type = "integer"
min = 0

[[fields]]
name = "paid"
type = "boolean"

[[fields]]
name = "created_at"
type = "timestamp"
required = true

[[fields]]
name = "notes"
type = "string"

[[fields]]
name = "country"
type = "enum"
values = ["US", "GB", "FR", "DE", "JP", "BR", "IN", "CA"]
"#;

/// splitmix64: small, fast, deterministic.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const FIRST: &[&str] = &[
    "Ada", "Grace", "Linus", "Margaret", "Dennis", "Barbara", "Ken", "Frances", "José", "Zoë",
];
const LAST: &[&str] = &[
    "Lovelace", "Hopper", "Torvalds", "Hamilton", "Ritchie", "Liskov", "Thompson", "Allen",
    "Núñez", "O'Brien",
];
const COUNTRIES: &[&str] = &["US", "GB", "FR", "DE", "JP", "BR", "IN", "CA"];
const NOTES: &[&str] = &[
    "leave at the door",
    "gift wrap, please",
    "call on arrival",
    "fragile: \"glass\"",
    "second\nline",
];

struct Row {
    id: u64,
    order_id: String,
    customer: String,
    email: String,
    amount: String,
    quantity: u64,
    paid: bool,
    created_at: String,
    notes: String,
    country: &'static str,
}

fn row(rng: &mut Rng, id: u64) -> Row {
    let first = FIRST[rng.below(FIRST.len() as u64) as usize];
    let last = LAST[rng.below(LAST.len() as u64) as usize];
    let customer = match rng.below(100) {
        0..=9 => format!("{last}, {first}"),            // quoted comma
        10 => format!("{first} {last}\nAccounts Dept"), // embedded newline
        11 => format!("{first} \"The Best\" {last}"),   // doubled quotes
        _ => format!("{first} {last}"),
    };
    let email = if rng.below(10) == 0 {
        String::new()
    } else {
        format!("{}.{}@example.com", first.to_lowercase(), id)
    };
    let cents = rng.below(10_000_000);
    let offset = if rng.below(4) == 0 { "+02:00" } else { "Z" };
    Row {
        id,
        order_id: format!("ORD-{:012X}", rng.next() >> 16),
        customer,
        email,
        amount: format!("{}.{:02}", cents / 100, cents % 100),
        quantity: rng.below(100),
        paid: rng.below(2) == 0,
        created_at: format!(
            "2024-{:02}-{:02}T{:02}:{:02}:{:02}{offset}",
            1 + rng.below(12),
            1 + rng.below(28),
            rng.below(24),
            rng.below(60),
            rng.below(60)
        ),
        notes: if rng.below(10) < 7 {
            String::new()
        } else {
            NOTES[rng.below(NOTES.len() as u64) as usize].to_owned()
        },
        country: COUNTRIES[rng.below(COUNTRIES.len() as u64) as usize],
    }
}

fn write_json_row(out: &mut Vec<u8>, r: &Row) -> Result<()> {
    out.extend_from_slice(b"{\"id\":");
    out.extend_from_slice(r.id.to_string().as_bytes());
    for (k, v) in [("order_id", &r.order_id), ("customer", &r.customer)] {
        write!(out, ",\"{k}\":{}", serde_json::to_string(v)?)?;
    }
    if !r.email.is_empty() {
        write!(out, ",\"email\":{}", serde_json::to_string(&r.email)?)?;
    }
    write!(
        out,
        ",\"amount\":{},\"quantity\":{},\"paid\":{},\"created_at\":\"{}\"",
        r.amount, r.quantity, r.paid, r.created_at
    )?;
    if r.notes.is_empty() {
        out.extend_from_slice(b",\"notes\":null");
    } else {
        write!(out, ",\"notes\":{}", serde_json::to_string(&r.notes)?)?;
    }
    write!(out, ",\"country\":\"{}\"}}", r.country)?;
    Ok(())
}

/// Counts bytes written through it.
struct CountingWrite<W> {
    inner: W,
    count: std::rc::Rc<std::cell::Cell<u64>>,
}

impl<W: Write> Write for CountingWrite<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn generate(format: Format, path: &Path, target_bytes: u64) -> Result<u64> {
    let tmp = path.with_extension("tmp");
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&tmp)?);
    let mut rng = Rng(0x5EED);
    let mut written = 0u64;
    let mut id = 0u64;
    let mut buf = Vec::with_capacity(512);
    match format {
        Format::Csv | Format::Tsv => {
            let counter = std::rc::Rc::new(std::cell::Cell::new(0u64));
            let counting = CountingWrite {
                inner: &mut out,
                count: counter.clone(),
            };
            let mut w = csv::WriterBuilder::new()
                .buffer_capacity(1 << 16)
                .from_writer(counting);
            w.write_record([
                "id",
                "order_id",
                "customer",
                "email",
                "amount",
                "quantity",
                "paid",
                "created_at",
                "notes",
                "country",
            ])?;
            while counter.get() < target_bytes {
                id += 1;
                let r = row(&mut rng, id);
                w.write_record([
                    r.id.to_string().as_str(),
                    &r.order_id,
                    &r.customer,
                    &r.email,
                    &r.amount,
                    r.quantity.to_string().as_str(),
                    if r.paid { "true" } else { "false" },
                    &r.created_at,
                    &r.notes,
                    r.country,
                ])?;
            }
            w.flush()?;
        }
        Format::Jsonl => {
            while written < target_bytes {
                id += 1;
                buf.clear();
                write_json_row(&mut buf, &row(&mut rng, id))?;
                buf.push(b'\n');
                written += buf.len() as u64;
                out.write_all(&buf)?;
            }
        }
        Format::Json => {
            out.write_all(b"[\n")?;
            while written < target_bytes {
                id += 1;
                buf.clear();
                if id > 1 {
                    buf.extend_from_slice(b",\n");
                }
                write_json_row(&mut buf, &row(&mut rng, id))?;
                written += buf.len() as u64;
                out.write_all(&buf)?;
            }
            out.write_all(b"\n]\n")?;
        }
    }
    out.flush()?;
    drop(out);
    std::fs::rename(&tmp, path)?;
    Ok(id)
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn pin_to_one_cpu() {
    // SAFETY: sched_setaffinity on the calling thread with a zeroed, then filled, cpu_set_t owned here.
    unsafe {
        let ncpu = libc::sysconf(libc::_SC_NPROCESSORS_ONLN).max(1) as usize;
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(ncpu - 1, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// User plus system CPU time of this process so far, in seconds: unlike wall time, barely moved by the other
/// processes sharing the machine.
fn cpu_secs() -> f64 {
    // SAFETY: getrusage fills the zeroed struct owned here.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

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
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench-data");
    std::fs::create_dir_all(&dir)?;

    let mut lines = Vec::new();
    for format in formats {
        let path = dir.join(format!("bench-{mb}mb.{}", format.as_str()));
        if !path.exists() {
            let t = Instant::now();
            eprintln!("generating {} ({mb} MB)...", path.display());
            generate(format, &path, mb * 1_000_000)?;
            eprintln!("  done in {:.1}s", t.elapsed().as_secs_f64());
        }
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
