//! `make bench-webhook`: rows per second into the webhook destination at its client-side rate limit,
//! through the real pipeline and sink, to the verifying receiver on loopback
//! (`s3_importer_tests::webhook_receiver`, which answers at once: the limiter and the sink are what is
//! measured). `BENCH_WEBHOOK_ROWS` (50,000) rows in batches of `BENCH_WEBHOOK_BATCH_ROWS` (500, the default)
//! at each rate of `BENCH_WEBHOOK_RATES` (`10,100`; 10 requests/s is the default). One line per rate:
//!
//! `bench-webhook rows=… batch_rows=… rate=… requests=… seconds=… rows_per_s=… limit_rows_per_s=…`

use std::time::Instant;

use anyhow::{ensure, Result};
use s3_importer_core::sync::contract::fixtures::{delimited, rows};
use s3_importer_tests::webhook_import::{config, import, webhook};
use s3_importer_tests::webhook_receiver::Receiver;

const SECRET: &str = "whsec-bench";

fn var(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<()> {
    let n: usize = var("BENCH_WEBHOOK_ROWS", "50000").parse()?;
    let batch_rows: u32 = var("BENCH_WEBHOOK_BATCH_ROWS", "500").parse()?;
    let csv = delimited(&rows("b", n), ',');
    for rate in var("BENCH_WEBHOOK_RATES", "10,100").split(',') {
        let rate: u32 = rate.trim().parse()?;
        let receiver = Receiver::start(SECRET).await?;
        let mut cfg = config(&receiver.url(), batch_rows);
        cfg.rate_per_second = Some(rate);
        let started = Instant::now();
        let (report, _) = import(webhook(&cfg, SECRET)?, csv.clone(), 2_000).await?;
        let seconds = started.elapsed().as_secs_f64();
        let report = report?;
        let (delivered, requests) = receiver.seen(|s| (s.rows.len() as u64, s.deliveries.len()));
        ensure!(
            delivered == report.counts.rows_imported,
            "{delivered} rows delivered, {} imported",
            report.counts.rows_imported
        );
        println!(
            "bench-webhook rows={} batch_rows={batch_rows} rate={rate} requests={requests} \
             seconds={seconds:.2} rows_per_s={:.0} limit_rows_per_s={}",
            report.counts.rows_imported,
            report.counts.rows_imported as f64 / seconds,
            u64::from(rate) * u64::from(batch_rows)
        );
    }
    Ok(())
}
