//! A webhook receiver on loopback for the webhook destination's tests: a small hyper server that verifies
//! every request's signature with its own HMAC (ring, not the crate's `verify`), dedupes by
//! `Idempotency-Key` as the README tells receivers to, counts deliveries per key and rows per record, keeps
//! an upsert table per connector (the contract suite's reader), and answers with injected faults: 5xx,
//! answers slower than the client's timeout, closed connections, 429 with `Retry-After`, 410, 4xx.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use ring::hmac;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Seconds a signature's timestamp may be off (a replay older than this is refused).
pub const TOLERANCE_SECONDS: u64 = 300;

/// What the receiver does to one request (after verifying its signature).
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer this status (500, 503, 400, 410, …) without taking the batch.
    Status(u16),
    /// Answer 429 with `Retry-After: N`.
    TooMany(u64),
    /// Take the batch, then answer 200 after this long (longer than the client's timeout: the client gives
    /// up and sends the batch again, a duplicate for the receiver).
    Slow(Duration),
    /// Close the connection without answering (before taking the batch).
    Close,
}

/// One batch as the receiver took it.
#[derive(Debug, Clone)]
pub struct Taken {
    /// The idempotency key.
    pub key: String,
    /// The body.
    pub body: Value,
}

/// A row of the receiver's upsert table, with where it came from.
#[derive(Debug, Clone)]
pub struct TableRow {
    /// The row (`data`).
    pub data: Value,
    /// The file's key.
    pub key: String,
    /// The file's ETag.
    pub etag: String,
    /// The file's LastModified, epoch milliseconds.
    pub last_modified_ms: i64,
    /// The row's record number.
    pub record: u64,
}

/// What the receiver saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Every request, probes included.
    pub requests: u64,
    /// Requests whose signature did not verify (answered 401).
    pub bad_signatures: u64,
    /// Requests answered with an injected fault.
    pub faults: u64,
    /// Signed probes accepted.
    pub probes: u64,
    /// Valid deliveries per idempotency key (a count above 1 is a redelivery, answered 200 and not applied).
    pub deliveries: HashMap<String, u64>,
    /// The batches applied (the first delivery of each key), in order.
    pub batches: Vec<Taken>,
    /// Rows applied per (file key, ETag, record): 1 each when every row was delivered exactly once.
    pub rows: BTreeMap<(String, String, u64), u64>,
    /// Per connector, the rows by `id` with their lineage.
    pub tables: HashMap<String, BTreeMap<String, TableRow>>,
    /// Every idempotency key seen with its rows' records, to check that a key always covers the same rows.
    pub key_records: HashMap<String, Vec<u64>>,
    /// Keys delivered with different records than the first time (must stay empty).
    pub unstable_keys: Vec<String>,
}

struct Shared {
    secret: Vec<u8>,
    faults: VecDeque<Option<Fault>>,
    /// Applied to every request after the queue is empty (a receiver that is gone, or always slow).
    always: Option<Fault>,
    seen: Seen,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    task: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// A receiver on 127.0.0.1 (a free port) verifying signatures with `secret`.
    pub async fn start(secret: &str) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("bind the receiver")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Mutex::new(Shared {
            secret: secret.as_bytes().to_vec(),
            faults: VecDeque::new(),
            always: None,
            seen: Seen::default(),
        }));
        let state = shared.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request| handle(state.clone(), request));
                    // A connection closed by a `Close` fault ends with an error: expected.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, shared, task })
    }

    /// `http://127.0.0.1:PORT/hook`.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// The next requests get these faults, one each (`None`: answered normally), after the ones queued.
    pub fn inject(&self, faults: impl IntoIterator<Item = Option<Fault>>) {
        self.lock().faults.extend(faults);
    }

    /// Every request after the queued faults gets `fault` (`None`: normal again).
    pub fn always(&self, fault: Option<Fault>) {
        self.lock().always = fault;
    }

    /// Faults still queued.
    pub fn pending_faults(&self) -> usize {
        self.lock().faults.len()
    }

    /// What the receiver saw so far.
    pub fn seen<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.lock().seen)
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        lock(&self.shared)
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

fn answer(status: u16, text: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(text.to_owned())));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
}

/// The signature check of the README: `t=…,v1=…`, HMAC-SHA256 over `t + "." + body`, in constant time,
/// and the timestamp within the tolerance.
fn verify(secret: &[u8], header: Option<&str>, body: &[u8]) -> bool {
    let Some(header) = header else { return false };
    let (mut t, mut v1) = (None, None);
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = Some(value.to_owned()),
            Some(("v1", value)) => v1 = Some(value.to_owned()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let Ok(timestamp) = t.parse::<u64>() else {
        return false;
    };
    if now.abs_diff(timestamp) > TOLERANCE_SECONDS {
        return false;
    }
    let Ok(mac) = decode_hex(&v1) else {
        return false;
    };
    let mut message = format!("{t}.").into_bytes();
    message.extend_from_slice(body);
    hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, secret), &message, &mac).is_ok()
}

fn decode_hex(s: &str) -> Result<Vec<u8>, ()> {
    if s.len() % 2 != 0 {
        return Err(());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2).ok_or(())?, 16).map_err(|_| ()))
        .collect()
}

async fn handle(
    shared: Arc<Mutex<Shared>>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let signature = header("s3-importer-signature");
    let key = header("idempotency-key");
    let probe = header("s3-importer-probe").is_some();
    let body = match request.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Err(std::io::Error::other(e)),
    };
    let fault = {
        let mut s = lock(&shared);
        s.seen.requests += 1;
        if !verify(&s.secret, signature.as_deref(), &body) {
            s.seen.bad_signatures += 1;
            return Ok(answer(
                401,
                "signature mismatch: this receiver holds another secret",
            ));
        }
        if probe {
            s.seen.probes += 1;
            return Ok(answer(200, "probe ok"));
        }
        let fault = match s.faults.pop_front() {
            Some(queued) => queued,
            None => s.always.clone(),
        };
        if fault.is_some() {
            s.seen.faults += 1;
        }
        fault
    };
    let Some(key) = key else {
        return Ok(answer(400, "no Idempotency-Key"));
    };
    match fault {
        Some(Fault::Status(status)) => return Ok(answer(status, "injected failure")),
        Some(Fault::TooMany(after)) => {
            let mut response = answer(429, "slow down");
            if let Ok(v) = after.to_string().parse() {
                response.headers_mut().insert("retry-after", v);
            }
            return Ok(response);
        }
        Some(Fault::Close) => return Err(std::io::Error::other("injected: connection closed")),
        Some(Fault::Slow(_)) | None => {}
    }
    let Ok(parsed) = serde_json::from_slice::<Value>(&body) else {
        return Ok(answer(400, "body is not JSON"));
    };
    take(&mut lock(&shared), &key, parsed);
    if let Some(Fault::Slow(delay)) = fault {
        tokio::time::sleep(delay).await;
    }
    Ok(answer(200, "ok"))
}

/// Counts the delivery and applies the batch the first time its key is seen.
fn take(s: &mut Shared, key: &str, body: Value) {
    let records: Vec<u64> = body["rows"]
        .as_array()
        .map(|rows| rows.iter().filter_map(|r| r["record"].as_u64()).collect())
        .unwrap_or_default();
    let count = s.seen.deliveries.entry(key.to_owned()).or_insert(0);
    *count += 1;
    if *count > 1 {
        if s.seen.key_records.get(key) != Some(&records) {
            s.seen.unstable_keys.push(key.to_owned());
        }
        return;
    }
    s.seen.key_records.insert(key.to_owned(), records);
    let file = &body["file"];
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let (file_key, etag) = (text(&file["key"]), text(&file["etag"]));
    let last_modified =
        chrono::DateTime::parse_from_rfc3339(file["last_modified"].as_str().unwrap_or_default())
            .map(|t| t.timestamp_millis())
            .unwrap_or_default();
    let connector = text(&body["connector"]);
    for row in body["rows"].as_array().into_iter().flatten() {
        let record = row["record"].as_u64().unwrap_or_default();
        *s.seen
            .rows
            .entry((file_key.clone(), etag.clone(), record))
            .or_insert(0) += 1;
        let data = row["data"].clone();
        let Some(id) = data["id"].as_str().map(str::to_owned) else {
            continue;
        };
        let table = s.seen.tables.entry(connector.clone()).or_default();
        // An upsert that keeps the newer file version's row (the README's advice to receivers).
        if table
            .get(&id)
            .is_some_and(|old| old.last_modified_ms > last_modified)
        {
            continue;
        }
        table.insert(
            id,
            TableRow {
                data,
                key: file_key.clone(),
                etag: etag.clone(),
                last_modified_ms: last_modified,
                record,
            },
        );
    }
    s.seen.batches.push(Taken {
        key: key.to_owned(),
        body,
    });
}
