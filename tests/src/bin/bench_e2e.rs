//! `make bench-e2e`: a large file imported end to end on the local emulator by the worker *binary*.
//!
//! The bench generates a deterministic file of `BENCH_E2E_MB` MB (default 1000) in each of the
//! `BENCH_E2E_FORMATS` (default `csv,jsonl,json`; `json` is a top-level array) straight into a multipart
//! upload to the emulator (nothing on disk), provisions a deployment (state and records tables, work queue,
//! output bucket, template, connector writing S3 JSON Lines), lets the lister enqueue the file, and then plays
//! Lambda for the release `worker` binary (`BENCH_E2E_WORKER`): it serves the Lambda Runtime API on a loopback
//! port, hands the binary each received SQS batch as an invocation whose deadline leaves
//! `BENCH_E2E_PIECE_SECONDS` of work before the checkpoint margin — so the file goes in several pieces, each
//! continuing from the previous one's checkpoint — and settles the batch as the event source mapping does.
//!
//! It runs once with ranged read-ahead (`S3I_READ_AHEAD_RANGES=4`, the default) and once with one GetObject
//! stream (`S3I_READ_AHEAD_RANGES=1`), each in a fresh worker process whose peak RSS (`VmHWM`) is read from
//! `/proc`, and checks that the ledger and the JSON Lines output hold exactly the rows generated. It ends with
//! one line per format and mode:
//!
//! ```text
//! bench-e2e mode=ranged format=csv input_mb=1000 connection_mb_per_s=0 rows=... mb_per_s=... pieces=... peak_rss_mib=...
//! ```
//!
//! It exits non-zero when a row is missing or extra, when an invocation answers after its deadline (Lambda would
//! have stopped it), or when a worker's peak RSS reaches 100 MiB.
//!
//! With `BENCH_E2E_CONNECTION_MB_PER_S` set, the worker reaches the emulator through a loopback proxy that
//! caps each TCP connection's download rate, as S3's throughput per connection is bounded while its
//! throughput across parallel connections is not (AWS's performance guidance: byte-range fetches on several
//! connections). That shows what ranged read-ahead is for, which the bare emulator cannot: it serves every
//! range by copying the whole object, so on it ranges cost more than one stream.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use aws_lambda_events::sqs::SqsBatchResponse;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use s3_importer_core::config::vars;
use s3_importer_core::sync::ports::ConnectorStore;
use s3_importer_core::sync::{FileMessage, FileStatus};
use s3_importer_tests::deployment::{bucket_and_key, sqs_event, Deployment, Options};
use s3_importer_tests::{emulator, s3_client};
use tokio::sync::mpsc as tokio_mpsc;

/// The worker's peak RSS must stay under this (a 128 MB Lambda).
const RSS_CEILING_MIB: f64 = 100.0;
/// Seconds before the deadline at which a piece stops (the handler starts no message with less than 20 s).
const CHECKPOINT_MARGIN_SECONDS: u64 = 20;
/// Multipart upload part size.
const PART_BYTES: usize = 16 * 1024 * 1024;
/// The output folder of the JSON Lines destination.
const OUTPUT_PREFIX: &str = "bench";

const TEMPLATE: &str = r#"
name = "bench_e2e_orders"
primary_key = ["id"]

[[fields]]
name = "id"
type = "integer"
required = true

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
name = "country"
type = "enum"
values = ["US", "GB", "FR", "DE", "JP", "BR", "IN", "CA"]
"#;

struct Settings {
    input_mb: u64,
    worker: PathBuf,
    piece_seconds: u64,
    /// The download rate cap of each connection between the worker and the emulator (0: no proxy).
    connection_mb_per_s: u64,
    modes: Vec<Mode>,
    formats: Vec<Format>,
}

/// The generated file's format (the same rows in each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    Jsonl,
    /// A top-level JSON array of objects, one per line.
    Json,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
            Format::Json => "json",
        }
    }

    /// The file's name in the connector's folder (the extension chooses the reader).
    fn file_name(self) -> String {
        format!("bench-e2e.{}", self.name())
    }

    fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv",
            Format::Jsonl => "application/x-ndjson",
            Format::Json => "application/json",
        }
    }

    /// What comes before the first record.
    fn head(self) -> &'static [u8] {
        match self {
            Format::Csv => b"id,customer,email,amount,quantity,paid,created_at,country\n",
            Format::Jsonl => b"",
            Format::Json => b"[\n",
        }
    }

    /// What comes after the last record.
    fn tail(self) -> &'static [u8] {
        match self {
            Format::Json => b"\n]\n",
            Format::Csv | Format::Jsonl => b"",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Mode {
    Ranged,
    Single,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Ranged => "ranged",
            Mode::Single => "single",
        }
    }

    fn ranges(self) -> &'static str {
        match self {
            Mode::Ranged => "4",
            Mode::Single => "1",
        }
    }
}

fn env_number(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name) {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .with_context(|| format!("{name}={v:?} is not a number")),
        _ => Ok(default),
    }
}

impl Settings {
    fn from_env() -> Result<Self> {
        let worker = std::env::var_os("BENCH_E2E_WORKER")
            .map(PathBuf::from)
            .unwrap_or_else(|| s3_importer_tests::repo_root().join("target/release/worker"));
        ensure!(
            worker.is_file(),
            "worker binary {} not found: build it with `cargo build --release -p s3-importer-worker` or set \
             BENCH_E2E_WORKER",
            worker.display()
        );
        let modes = std::env::var("BENCH_E2E_MODES").unwrap_or_else(|_| "ranged,single".into());
        let modes = modes
            .split(',')
            .map(|m| match m.trim() {
                "ranged" => Ok(Mode::Ranged),
                "single" => Ok(Mode::Single),
                other => bail!("BENCH_E2E_MODES: unknown mode {other:?} (ranged, single)"),
            })
            .collect::<Result<Vec<_>>>()?;
        let formats =
            std::env::var("BENCH_E2E_FORMATS").unwrap_or_else(|_| "csv,jsonl,json".into());
        let formats = formats
            .split(',')
            .map(|f| match f.trim() {
                "csv" => Ok(Format::Csv),
                "jsonl" => Ok(Format::Jsonl),
                "json" => Ok(Format::Json),
                other => bail!("BENCH_E2E_FORMATS: unknown format {other:?} (csv, jsonl, json)"),
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            input_mb: env_number("BENCH_E2E_MB", 1000)?.max(1),
            worker,
            piece_seconds: env_number("BENCH_E2E_PIECE_SECONDS", 15)?.max(1),
            connection_mb_per_s: env_number("BENCH_E2E_CONNECTION_MB_PER_S", 0)?,
            modes,
            formats,
        })
    }
}

/// A small deterministic generator (64-bit xorshift*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[(self.next() % items.len() as u64) as usize]
    }
}

const FIRST: &[&str] = &[
    "Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Zoë",
];
const LAST: &[&str] = &[
    "Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Núñez",
];
const COUNTRIES: &[&str] = &["US", "GB", "FR", "DE", "JP", "BR", "IN", "CA"];

/// Appends one record for `id` in `format` (some customers with a comma, quoted in CSV; some emails empty in
/// CSV, absent in JSON). `first` is whether it is the file's first record (a JSON array separates the others
/// with a comma).
fn write_row(out: &mut Vec<u8>, rng: &mut Rng, id: u64, format: Format, first: bool) {
    let first_name = rng.pick(FIRST);
    let last = rng.pick(LAST);
    let r = rng.next();
    let comma_name = r % 8 == 0;
    let email = (r % 10 != 1).then(|| format!("{}.{id}@example.com", first_name.to_lowercase()));
    let cents = rng.next() % 10_000_000;
    let t = rng.next();
    let amount = format!("{}.{:02}", cents / 100, cents % 100);
    let created_at = format!(
        "2024-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        1 + (t >> 8) % 12,
        1 + (t >> 16) % 28,
        (t >> 24) % 24,
        (t >> 32) % 60,
        (t >> 40) % 60
    );
    let (quantity, paid, country) = (t % 100, t % 2 == 0, rng.pick(COUNTRIES));
    if format == Format::Csv {
        let customer = if comma_name {
            format!("\"{last}, {first_name}\"")
        } else {
            format!("{first_name} {last}")
        };
        let _ = writeln!(
            out,
            "{id},{customer},{},{amount},{quantity},{paid},{created_at},{country}",
            email.unwrap_or_default()
        );
        return;
    }
    let customer = if comma_name {
        format!("{last}, {first_name}")
    } else {
        format!("{first_name} {last}")
    };
    if format == Format::Json && !first {
        out.extend_from_slice(b",\n");
    }
    // The names and countries hold no character JSON must escape.
    let _ = write!(out, "{{\"id\":{id},\"customer\":\"{customer}\"");
    if let Some(email) = email {
        let _ = write!(out, ",\"email\":\"{email}\"");
    }
    let _ = write!(
        out,
        ",\"amount\":{amount},\"quantity\":{quantity},\"paid\":{paid},\"created_at\":\"{created_at}\",\"country\":\"{country}\"}}"
    );
    if format == Format::Jsonl {
        out.push(b'\n');
    }
}

/// Generates `target_bytes` (and a little more, to the end of a record) of `format` into a multipart upload
/// of `s3://bucket/key`; returns (rows, bytes, ETag).
async fn upload_generated(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    target_bytes: u64,
    format: Format,
) -> Result<(u64, u64, String)> {
    let upload = client
        .create_multipart_upload()
        .bucket(bucket)
        .key(key)
        .content_type(format.content_type())
        .send()
        .await
        .context("create the multipart upload")?;
    let upload_id = upload
        .upload_id()
        .context("no upload id from CreateMultipartUpload")?
        .to_owned();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut part = Vec::with_capacity(PART_BYTES + 1024);
    part.extend_from_slice(format.head());
    let (mut rows, mut bytes) = (0u64, 0u64);
    let mut parts = Vec::new();
    loop {
        let done = bytes + part.len() as u64 >= target_bytes;
        if !done && part.len() < PART_BYTES {
            rows += 1;
            write_row(&mut part, &mut rng, rows, format, rows == 1);
            continue;
        }
        if done {
            part.extend_from_slice(format.tail());
        }
        let number = i32::try_from(parts.len() + 1).context("too many parts")?;
        bytes += part.len() as u64;
        let body = std::mem::replace(&mut part, Vec::with_capacity(PART_BYTES + 1024));
        let out = client
            .upload_part()
            .bucket(bucket)
            .key(key)
            .upload_id(&upload_id)
            .part_number(number)
            .body(ByteStream::from(body))
            .send()
            .await
            .with_context(|| format!("upload part {number}"))?;
        parts.push(
            CompletedPart::builder()
                .part_number(number)
                .set_e_tag(out.e_tag)
                .build(),
        );
        if done {
            break;
        }
    }
    let out = client
        .complete_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(&upload_id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .context("complete the multipart upload")?;
    let etag = out.e_tag.context("no ETag from CompleteMultipartUpload")?;
    Ok((rows, bytes, etag))
}

/// One invocation handed to the worker process.
struct Invocation {
    request_id: String,
    deadline_ms: u64,
    body: String,
}

/// What the worker process answered for an invocation (request id, body); an error for `/error` posts.
type Outcome = (String, std::result::Result<String, String>);

/// A minimal Lambda Runtime API (`/2018-06-01/runtime/...`) on a loopback port: `invocation/next` hands out
/// the queued invocations one at a time; `response` and `error` posts come back as [`Outcome`]s.
struct RuntimeApi {
    address: String,
    invocations: mpsc::Sender<Invocation>,
    outcomes: tokio_mpsc::UnboundedReceiver<Outcome>,
}

impl RuntimeApi {
    fn start() -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("bind the Runtime API port")?;
        let address = listener.local_addr()?.to_string();
        let (invocations, next) = mpsc::channel::<Invocation>();
        let (outcome_tx, outcomes) = tokio_mpsc::unbounded_channel();
        let next = Arc::new(Mutex::new(next));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let next = next.clone();
                let outcome_tx = outcome_tx.clone();
                std::thread::spawn(move || {
                    if let Err(e) = serve_connection(stream, &next, &outcome_tx) {
                        eprintln!("bench-e2e: runtime API connection: {e:#}");
                    }
                });
            }
        });
        Ok(Self {
            address,
            invocations,
            outcomes,
        })
    }
}

fn serve_connection(
    stream: TcpStream,
    next: &Mutex<mpsc::Receiver<Invocation>>,
    outcomes: &tokio_mpsc::UnboundedSender<Outcome>,
) -> Result<()> {
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut words = line.split_whitespace();
        let method = words.next().unwrap_or_default().to_owned();
        let path = words.next().unwrap_or_default().to_owned();
        let (mut length, mut chunked) = (0usize, false);
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header)? == 0 {
                return Ok(());
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.parse().context("content-length")?,
                    "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                    _ => {}
                }
            }
        }
        let body = if chunked {
            read_chunked(&mut reader)?
        } else {
            let mut body = vec![0; length];
            reader.read_exact(&mut body)?;
            body
        };
        let body = String::from_utf8_lossy(&body).into_owned();
        let route = path.trim_start_matches("/2018-06-01/runtime/");
        if method == "GET" && route == "invocation/next" {
            let invocation = {
                let next = next.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                match next.recv() {
                    Ok(invocation) => invocation,
                    Err(_) => return Ok(()),
                }
            };
            write!(
                writer,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nlambda-runtime-aws-request-id: {}\r\n\
                 lambda-runtime-deadline-ms: {}\r\nlambda-runtime-invoked-function-arn: \
                 arn:aws:lambda:us-east-1:123456789012:function:bench-e2e-worker\r\n\
                 lambda-runtime-trace-id: Root=1-00000000-000000000000000000000000\r\ncontent-length: {}\r\n\r\n{}",
                invocation.request_id,
                invocation.deadline_ms,
                invocation.body.len(),
                invocation.body
            )?;
        } else if method == "POST" {
            let outcome = match route.split('/').collect::<Vec<_>>().as_slice() {
                ["invocation", id, "response"] => Some(((*id).to_owned(), Ok(body))),
                ["invocation", id, "error"] => Some(((*id).to_owned(), Err(body))),
                ["init", "error"] => Some(("init".to_owned(), Err(body))),
                _ => None,
            };
            let status = if outcome.is_some() {
                "202 Accepted"
            } else {
                "404 Not Found"
            };
            if let Some(outcome) = outcome {
                let _ = outcomes.send(outcome);
            }
            write!(
                writer,
                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: 16\r\n\r\n{{\"status\":\"OK\"}}"
            )?;
        } else {
            write!(
                writer,
                "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
            )?;
        }
        writer.flush()?;
    }
}

fn read_chunked(reader: &mut impl BufRead) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size)?;
        let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
            .context("chunk size")?;
        let mut chunk = vec![0; size + 2];
        reader.read_exact(&mut chunk)?;
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(&chunk[..size]);
    }
}

/// A loopback TCP proxy to `upstream` (`host:port`) that caps the download rate of each connection at
/// `bytes_per_s`; returns its `http://` URL.
async fn start_throttling_proxy(upstream: String, bytes_per_s: u64) -> Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("bind the proxy port")?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (server_read, mut server_write) = server.into_split();
                let up = tokio::io::copy(&mut client_read, &mut server_write);
                let down = copy_throttled(server_read, &mut client_write, bytes_per_s);
                // Either direction closing ends the connection.
                tokio::select! {
                    _ = up => {}
                    _ = down => {}
                }
            });
        }
    });
    Ok(url)
}

/// Copies `from` to `to` at no more than `bytes_per_s` on average since the copy began.
async fn copy_throttled(
    mut from: impl tokio::io::AsyncRead + Unpin,
    to: &mut (impl tokio::io::AsyncWrite + Unpin),
    bytes_per_s: u64,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 64 * 1024];
    let (started, mut sent) = (Instant::now(), 0u64);
    loop {
        let n = from.read(&mut buffer).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        to.write_all(&buffer[..n]).await?;
        sent += n as u64;
        let due = Duration::from_secs_f64(sent as f64 / bytes_per_s as f64);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
}

/// The worker process: the release `worker` binary against the Runtime API.
struct WorkerProcess {
    child: Child,
}

impl WorkerProcess {
    fn spawn(
        settings: &Settings,
        d: &Deployment,
        api: &RuntimeApi,
        mode: Mode,
        log: &PathBuf,
        endpoint: Option<&str>,
    ) -> Result<Self> {
        let mut command = Command::new(&settings.worker);
        command.envs(s3_importer_tests::emulator_blocking().env_vars());
        if let Some(endpoint) = endpoint {
            command.env("AWS_ENDPOINT_URL", endpoint);
        }
        command
            .env(vars::STATE_TABLE, &d.config.state_table)
            .env(vars::QUEUE_URL, &d.config.queue_url)
            .env(vars::RECORDS_TABLE, &d.config.records_table)
            .env(vars::OUTPUT_BUCKET, &d.config.output_bucket)
            .env(
                vars::CHECKPOINT_MARGIN_SECONDS,
                CHECKPOINT_MARGIN_SECONDS.to_string(),
            )
            .env(vars::HEARTBEAT_SECONDS, "10")
            .env(vars::READ_AHEAD_RANGES, mode.ranges())
            .env(vars::LOG_FORMAT, "text")
            .env("RUST_LOG", "warn")
            .env("AWS_LAMBDA_RUNTIME_API", &api.address)
            .env("AWS_LAMBDA_FUNCTION_NAME", "bench-e2e-worker")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?,
            );
        let child = command
            .spawn()
            .with_context(|| format!("start {}", settings.worker.display()))?;
        Ok(Self { child })
    }

    /// Peak resident set size so far (`VmHWM`), in MiB.
    fn peak_rss_mib(&self) -> Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .context("read the worker's /proc status (Linux only)")?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("no VmHWM in /proc status")?;
        Ok(kib / 1024.0)
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Measured {
    mode: Mode,
    format: Format,
    bytes: u64,
    rows: u64,
    seconds: f64,
    pieces: u32,
    invocations: u64,
    peak_rss_mib: f64,
}

/// The uploaded file: bucket, ETag, rows, bytes.
#[derive(Debug, Clone)]
struct Uploaded {
    bucket: String,
    etag: String,
    rows: u64,
    bytes: u64,
}

async fn run_mode(
    settings: &Settings,
    mode: Mode,
    format: Format,
    source: Option<&Uploaded>,
) -> Result<(Deployment, Measured, Uploaded)> {
    let d = Deployment::with(Options {
        template: TEMPLATE.to_owned(),
        visibility_timeout: 60,
        ..Options::default()
    })
    .await?;
    d.use_s3_jsonl(OUTPUT_PREFIX).await?;
    let s3 = s3_client(&d.sdk);
    let file_name = format.file_name();
    let key = Deployment::key(&file_name);
    let target = settings.input_mb * 1_000_000;
    // The first mode uploads the file; the next ones read the same object through their own connector.
    let uploaded = match source {
        None => {
            let started = Instant::now();
            let (rows, bytes, etag) =
                upload_generated(&s3, &d.source_bucket, &key, target, format).await?;
            eprintln!(
                "bench-e2e: generated and uploaded {bytes} bytes ({rows} rows) in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            Uploaded {
                bucket: d.source_bucket.clone(),
                etag,
                rows,
                bytes,
            }
        }
        Some(uploaded) => {
            let mut connector = d.connector_now().await?;
            connector.source.bucket = uploaded.bucket.clone();
            d.state.update_connector(&connector).await?;
            uploaded.clone()
        }
    };
    let (rows, bytes) = (uploaded.rows, uploaded.bytes);
    let run = d.sync().await?;
    ensure!(
        run.enqueued == 1,
        "the lister enqueued {} files, not 1: {run:?}",
        run.enqueued
    );

    let mut api = RuntimeApi::start()?;
    let log = std::env::temp_dir().join(format!(
        "bench-e2e-worker-{}-{}-{}.log",
        format.name(),
        mode.name(),
        std::process::id()
    ));
    let proxy = match settings.connection_mb_per_s {
        0 => None,
        rate => {
            let url = s3_importer_tests::emulator_blocking().url().to_owned();
            let upstream = url
                .strip_prefix("http://")
                .with_context(|| format!("the emulator's URL {url} is not http://"))?
                .trim_end_matches('/')
                .to_owned();
            Some(start_throttling_proxy(upstream, rate * 1_000_000).await?)
        }
    };
    let mut worker = WorkerProcess::spawn(settings, &d, &api, mode, &log, proxy.as_deref())?;
    let margin = Duration::from_secs(CHECKPOINT_MARGIN_SECONDS);
    let budget = margin + Duration::from_secs(settings.piece_seconds);
    let mut pieces = BTreeSet::new();
    let mut invocations = 0u64;
    let started = Instant::now();
    loop {
        let messages = d.consumer.receive(10, 0).await?;
        if messages.is_empty() {
            let entry = d.file(&file_name).await?;
            if !matches!(
                entry.status,
                FileStatus::Claimed | FileStatus::Queued | FileStatus::Processing
            ) {
                break;
            }
            ensure!(
                started.elapsed() < Duration::from_secs(6 * 3600),
                "no message on the queue and the file is still {}",
                entry.status
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        for m in &messages {
            let message: FileMessage =
                serde_json::from_str(&m.body).context("parse a work message")?;
            ensure!(
                pieces.insert(message.piece),
                "piece {} delivered twice",
                message.piece
            );
        }
        invocations += 1;
        let request_id = format!("bench-{}-{}-{invocations}", format.name(), mode.name());
        let deadline = chrono::Utc::now() + chrono::Duration::from_std(budget)?;
        api.invocations
            .send(Invocation {
                request_id: request_id.clone(),
                deadline_ms: u64::try_from(deadline.timestamp_millis())?,
                body: serde_json::to_string(&sqs_event(&messages)?)?,
            })
            .context("the Runtime API is gone")?;
        let outcome = loop {
            match tokio::time::timeout(Duration::from_secs(1), api.outcomes.recv()).await {
                Ok(Some(outcome)) => break outcome,
                Ok(None) => bail!("the Runtime API stopped"),
                Err(_) => {
                    if let Some(status) = worker.exited() {
                        bail!("the worker exited ({status}); its log: {}", log.display());
                    }
                    ensure!(
                        started.elapsed() < Duration::from_secs(6 * 3600),
                        "the worker did not answer"
                    );
                }
            }
        };
        // Lambda stops an invocation at its deadline: a piece that answers later would have been killed.
        let late = chrono::Utc::now() - deadline;
        ensure!(
            late <= chrono::Duration::zero(),
            "invocation {request_id} answered {} ms after its deadline: Lambda would have killed it; worker log: {}",
            late.num_milliseconds(),
            log.display()
        );
        let body = match outcome {
            (id, Ok(body)) if id == request_id => body,
            (id, result) => bail!(
                "invocation {id} failed: {result:?}; worker log: {}",
                log.display()
            ),
        };
        let response: SqsBatchResponse =
            serde_json::from_str(&body).context("parse the batch response")?;
        let failed = d.settle(&messages, &response).await?;
        ensure!(
            failed.is_empty(),
            "the worker asked for {} message(s) to be retried; worker log: {}",
            failed.len(),
            log.display()
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    let peak_rss_mib = worker.peak_rss_mib()?;
    drop(worker);

    let entry = d.file(&file_name).await?;
    ensure!(
        entry.status == FileStatus::Imported,
        "the file ended {} ({:?}); worker log: {}",
        entry.status,
        entry.error,
        log.display()
    );
    ensure!(
        entry.rows_imported == rows && entry.rows_rejected == 0,
        "the ledger says {} rows imported and {} rejected; {rows} were generated",
        entry.rows_imported,
        entry.rows_rejected
    );
    let lines = count_output_lines(&d, &file_name, &uploaded.etag).await?;
    ensure!(
        lines == rows,
        "the JSON Lines output has {lines} rows; {rows} were generated"
    );
    let _ = std::fs::remove_file(&log);
    let pieces_count = pieces.len() as u32;
    ensure!(
        pieces.iter().copied().eq(0..pieces_count),
        "pieces delivered are not 0..{pieces_count}: {pieces:?}"
    );
    Ok((
        d,
        Measured {
            mode,
            format,
            bytes,
            rows,
            seconds,
            pieces: pieces_count,
            invocations,
            peak_rss_mib,
        },
        uploaded,
    ))
}

/// Streams the JSON Lines output of the file and counts its lines (then deletes it: the emulator keeps
/// objects in memory or temporary files).
async fn count_output_lines(d: &Deployment, file_name: &str, etag: &str) -> Result<u64> {
    let location = d.output_location(OUTPUT_PREFIX, file_name, etag);
    let mut body = d.open_output(&location).await?;
    let mut lines = 0u64;
    while let Some(chunk) = body.try_next().await? {
        lines += count_newlines(&chunk);
    }
    let (bucket, key) = bucket_and_key(&location)?;
    let s3 = s3_client(&d.sdk);
    s3.delete_object().bucket(bucket).key(key).send().await?;
    Ok(lines)
}

fn count_newlines(bytes: &[u8]) -> u64 {
    bytes.iter().filter(|&&b| b == b'\n').count() as u64
}

#[tokio::main]
async fn main() -> Result<()> {
    let settings = Settings::from_env()?;
    let url = emulator().await.url().to_owned();
    eprintln!(
        "bench-e2e: {} MB per format on the emulator at {url}, worker {}, {} s of work per piece{}",
        settings.input_mb,
        settings.worker.display(),
        settings.piece_seconds,
        match settings.connection_mb_per_s {
            0 => String::new(),
            rate => format!(", {rate} MB/s per connection"),
        }
    );
    let mut results = Vec::new();
    for &format in &settings.formats {
        let mut source: Option<Uploaded> = None;
        let mut first: Option<Deployment> = None;
        for &mode in &settings.modes {
            let (d, measured, uploaded) = run_mode(&settings, mode, format, source.as_ref())
                .await
                .with_context(|| format!("format {}, mode {}", format.name(), mode.name()))?;
            source.get_or_insert(uploaded);
            eprintln!(
                "bench-e2e: {} {}: {} rows in {:.1} s, {} pieces in {} invocations",
                format.name(),
                mode.name(),
                measured.rows,
                measured.seconds,
                measured.pieces,
                measured.invocations
            );
            first.get_or_insert(d);
            results.push(measured);
        }
        // The source object is the largest thing the emulator holds: delete it before the next format's.
        if let (Some(uploaded), Some(d)) = (&source, &first) {
            let _ = s3_client(&d.sdk)
                .delete_object()
                .bucket(&uploaded.bucket)
                .key(Deployment::key(&format.file_name()))
                .send()
                .await;
        }
    }
    let mut over = Vec::new();
    for m in &results {
        println!(
            "bench-e2e mode={} format={} input_mb={} connection_mb_per_s={} rows={} mb_per_s={:.1} pieces={} peak_rss_mib={:.1}",
            m.mode.name(),
            m.format.name(),
            m.bytes / 1_000_000,
            settings.connection_mb_per_s,
            m.rows,
            m.bytes as f64 / 1e6 / m.seconds,
            m.pieces,
            m.peak_rss_mib
        );
        if m.peak_rss_mib >= RSS_CEILING_MIB {
            over.push(format!(
                "{} {}: {:.1} MiB",
                m.format.name(),
                m.mode.name(),
                m.peak_rss_mib
            ));
        }
    }
    ensure!(
        over.is_empty(),
        "the worker's peak RSS reached the {RSS_CEILING_MIB} MiB ceiling: {}",
        over.join(", ")
    );
    Ok(())
}
