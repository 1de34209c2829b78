//! `make bench-latency`: how long a file takes from its PutObject to its ledger entry's `imported`, for a
//! connector in `events` discovery on the local emulator.
//!
//! The bench provisions a deployment (the harness of `bench-e2e` and the end-to-end suites: state and records
//! tables, work queue, notification queue, connector), switches the connector to `events` and routes its bucket's
//! S3 events to the notification queue (S3 → SQS, as `connector events` prints it). Host tasks play both event
//! source mappings with the handlers Lambda runs: one drains the notification queue through the notification
//! handler, `BENCH_LATENCY_WORKERS` (default 4) take the work queue's messages one at a time through the worker
//! handler (the template's batch size 1, with concurrency), each polling every `BENCH_LATENCY_POLL_MS` (default
//! 200) when its queue is empty. Meanwhile `BENCH_LATENCY_FILES` (default 20) CSV files of `BENCH_LATENCY_ROWS`
//! (default 50) rows are written one every `BENCH_LATENCY_GAP_MS` (default 250), and the ledger is read every
//! 100 ms until each is `imported`. It ends with:
//!
//! ```text
//! bench-latency-claimed files=20 p50_s=... max_s=...
//! bench-latency files=20 p50_s=... max_s=...
//! ```
//!
//! preceded by the same figures up to the ledger entry's creation (`bench-latency-claimed`: the event claimed
//! the file; the rest is the import), and exits non-zero when a file is not imported within 120 s, or any file is not imported exactly once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use s3_importer_core::sync::FileStatus;
use s3_importer_tests::deployment::Deployment;
use s3_importer_tests::notifications::Route;

/// A file not imported within this long fails the bench.
const TIMEOUT: Duration = Duration::from_secs(120);

fn env_number(name: &str, default: u64) -> Result<u64> {
    match std::env::var(name).ok().filter(|v| !v.trim().is_empty()) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse()
            .with_context(|| format!("{name}={v:?} is not a number")),
    }
}

fn csv(rows: u64, file: u64) -> Vec<u8> {
    let mut out = b"id,qty\n".to_vec();
    for i in 0..rows {
        out.extend_from_slice(format!("f{file}-r{i},{}\n", i % 97).as_bytes());
    }
    out
}

/// The notification queue's event source mapping: drained until `stop`, polled every `poll` when empty.
async fn events_host(d: Arc<Deployment>, stop: Arc<AtomicBool>, poll: Duration) -> Result<()> {
    while !stop.load(Ordering::Relaxed) {
        if d.drain_notifications().await?.messages == 0 {
            tokio::time::sleep(poll).await;
        }
    }
    Ok(())
}

/// One concurrent worker invocation slot of the work queue's event source mapping (batch size 1, the
/// template's default), polling every `poll` when the queue is empty.
async fn worker_host(d: Arc<Deployment>, stop: Arc<AtomicBool>, poll: Duration) -> Result<()> {
    while !stop.load(Ordering::Relaxed) {
        let messages = d.consumer.receive(1, 0).await?;
        if messages.is_empty() {
            tokio::time::sleep(poll).await;
            continue;
        }
        let response = d.deliver(&d.worker, &messages).await?;
        let failed = d.settle(&messages, &response).await?;
        ensure!(
            failed.is_empty(),
            "the worker handed messages back: {failed:?}"
        );
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<()> {
    let files = env_number("BENCH_LATENCY_FILES", 20)?.max(1);
    let gap = Duration::from_millis(env_number("BENCH_LATENCY_GAP_MS", 250)?);
    let poll = Duration::from_millis(env_number("BENCH_LATENCY_POLL_MS", 200)?.max(1));
    let rows = env_number("BENCH_LATENCY_ROWS", 50)?;
    let workers = env_number("BENCH_LATENCY_WORKERS", 4)?.max(1);

    let mut d = Deployment::new().await?;
    d.use_events(Route::Direct, Some(s3_importer_tests::deployment::PREFIX))
        .await?;
    // The s3:TestEvent the configuration triggers.
    d.drain_notifications().await?;
    let d = Arc::new(d);
    let stop = Arc::new(AtomicBool::new(false));
    let mut hosts = vec![tokio::spawn(events_host(d.clone(), stop.clone(), poll))];
    for _ in 0..workers {
        hosts.push(tokio::spawn(worker_host(d.clone(), stop.clone(), poll)));
    }

    let mut put_at: HashMap<String, Instant> = HashMap::new();
    let mut latencies: HashMap<String, f64> = HashMap::new();
    // PutObject to the ledger entry's existence (the event claimed it): discovery's share of the latency.
    let mut claimed: HashMap<String, f64> = HashMap::new();
    let started = Instant::now();
    let mut next_put = 0u64;
    let mut next_put_at = Instant::now();
    while latencies.len() < files as usize {
        if next_put < files && Instant::now() >= next_put_at {
            let name = format!("latency-{next_put:03}.csv");
            d.put(&name, &csv(rows, next_put)).await?;
            put_at.insert(name, Instant::now());
            next_put += 1;
            next_put_at = Instant::now() + gap;
        }
        let entries = d.files().await?;
        for (name, versions) in &entries {
            if let (false, Some(at)) = (claimed.contains_key(name), put_at.get(name)) {
                claimed.insert(name.clone(), at.elapsed().as_secs_f64());
            }
            if latencies.contains_key(name) {
                continue;
            }
            if versions.iter().any(|e| e.status == FileStatus::Imported) {
                if let Some(at) = put_at.get(name) {
                    latencies.insert(name.clone(), at.elapsed().as_secs_f64());
                }
            }
        }
        if started.elapsed() > TIMEOUT + gap * files as u32 {
            stop.store(true, Ordering::Relaxed);
            bail!(
                "only {} of {files} files imported in {:?}",
                latencies.len(),
                started.elapsed()
            );
        }
        if hosts.iter().any(|h| h.is_finished()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for host in hosts {
        host.await.context("a host task panicked")??;
    }

    let entries = d.files().await?;
    for name in put_at.keys() {
        let versions = entries.get(name).map(Vec::len).unwrap_or(0);
        ensure!(versions == 1, "{name} has {versions} ledger entries");
    }
    let mut sorted: Vec<f64> = latencies.values().copied().collect();
    sorted.sort_by(f64::total_cmp);
    let mut discovery: Vec<f64> = claimed.values().copied().collect();
    discovery.sort_by(f64::total_cmp);
    println!(
        "bench-latency-claimed files={} p50_s={:.2} max_s={:.2}",
        discovery.len(),
        percentile(&discovery, 50.0),
        discovery.last().copied().unwrap_or(0.0)
    );
    println!(
        "bench-latency files={} p50_s={:.2} max_s={:.2}",
        sorted.len(),
        percentile(&sorted, 50.0),
        sorted.last().copied().unwrap_or(0.0)
    );
    Ok(())
}
