//! `make bench-latency`: how long a file takes from its PutObject to its ledger entry's `imported`, for a
//! connector in `events` discovery on the local emulator.
//!
//! The bench provisions a deployment (the harness of `bench-e2e` and the end-to-end suites: state and records
//! tables, work queue, notification queue, connector), switches the connector to `events` and routes its bucket's
//! S3 events to the notification queue (S3 → SQS, as `connector events` prints it). A host task plays both event
//! source mappings as `s3-importer run` does: it drains the notification queue through the notification
//! handler and the work queue through the worker handler (the same handlers Lambda runs), polling each every
//! `BENCH_LATENCY_POLL_MS` (default 200) when they are empty. Meanwhile `BENCH_LATENCY_FILES` (default 20) CSV
//! files are written one every `BENCH_LATENCY_GAP_MS` (default 250), and the ledger is read every 100 ms until
//! each is `imported`. It ends with:
//!
//! ```text
//! bench-latency files=20 p50_s=... max_s=...
//! ```
//!
//! and exits non-zero when a file is not imported within 120 s, or any file is not imported exactly once.

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

/// The host: both queues drained until `stop`, each polled every `poll` when it is empty.
async fn host(d: Arc<Deployment>, stop: Arc<AtomicBool>, poll: Duration) -> Result<()> {
    while !stop.load(Ordering::Relaxed) {
        let events = d.drain_notifications().await?;
        let drained = d.drain().await?;
        ensure!(
            drained.retried.is_empty(),
            "the worker handed messages back: {drained:?}"
        );
        if events.messages == 0 && drained.delivered == 0 {
            tokio::time::sleep(poll).await;
        }
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
    let rows = env_number("BENCH_LATENCY_ROWS", 200)?;

    let mut d = Deployment::new().await?;
    d.use_events(Route::Direct, Some(s3_importer_tests::deployment::PREFIX))
        .await?;
    // The s3:TestEvent the configuration triggers.
    d.drain_notifications().await?;
    let d = Arc::new(d);
    let stop = Arc::new(AtomicBool::new(false));
    let host_task = tokio::spawn(host(d.clone(), stop.clone(), poll));

    let mut put_at: HashMap<String, Instant> = HashMap::new();
    let mut latencies: HashMap<String, f64> = HashMap::new();
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
        if host_task.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    host_task.await.context("the host task panicked")??;

    let entries = d.files().await?;
    for name in put_at.keys() {
        let versions = entries.get(name).map(Vec::len).unwrap_or(0);
        ensure!(versions == 1, "{name} has {versions} ledger entries");
    }
    let mut sorted: Vec<f64> = latencies.values().copied().collect();
    sorted.sort_by(f64::total_cmp);
    println!(
        "bench-latency files={} p50_s={:.2} max_s={:.2}",
        sorted.len(),
        percentile(&sorted, 50.0),
        sorted.last().copied().unwrap_or(0.0)
    );
    Ok(())
}
