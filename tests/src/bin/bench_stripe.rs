//! `make bench-stripe`: rows per second into the Stripe destination at its client-side rate limit, per
//! object kind, through the real pipeline and sink against the request-level Stripe server on loopback
//! (`s3_importer_tests::stripe_api`, which answers at once: the limiter is what is measured). For each kind:
//! `BENCH_STRIPE_ROWS` (100) new rows at `BENCH_STRIPE_RATE` (25, a test key's default) requests per second,
//! then, for the kinds that upsert, the same rows again from a new file version (unchanged: one read each).
//! Prints, per step:
//!
//! `bench-stripe object=… step=new|unchanged rows=… rate=… requests=… seconds=… rows_per_s=…
//! requests_per_row=… hours_per_million_rows=…`

use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Result};
use s3_importer_core::sync::StripeObject;
use s3_importer_stripe::MemoryCustomerIds;
use s3_importer_tests::stripe_api::StripeApi;
use s3_importer_tests::stripe_import::{config, import, stripe, Version};

const KEY: &str = "sk_test_bench";

fn var(name: &str, default: u32) -> Result<u32> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => Ok(v.parse()?),
        _ => Ok(default),
    }
}

/// `rows` rows of `object`'s built-in template.
fn csv(object: StripeObject, rows: u32, now: i64) -> String {
    let mut csv = String::new();
    for i in 1..=rows {
        let line = match object {
            StripeObject::Products => format!("prod_bench_{i},Product {i},Item {i},true\n"),
            StripeObject::Customers => format!("crm-{i},c{i}@example.com,Customer {i},Lyon\n"),
            StripeObject::Prices => format!("plan_{i},prod_bench_{i},{},eur,month\n", 100 + i),
            StripeObject::MeterEvents => format!("{},api_calls,cus_{},{i}\n", now - 60, i % 50),
        };
        csv.push_str(&line);
    }
    let header = match object {
        StripeObject::Products => "product_id,name,description,active\n",
        StripeObject::Customers => "external_key,email,name,address_city\n",
        StripeObject::Prices => "lookup_key,product,unit_amount,currency,recurring_interval\n",
        StripeObject::MeterEvents => {
            "timestamp,event_name,payload_stripe_customer_id,payload_value\n"
        }
    };
    format!("{header}{csv}")
}

#[tokio::main]
async fn main() -> Result<()> {
    let rows = var("BENCH_STRIPE_ROWS", 100)?;
    let rate = var("BENCH_STRIPE_RATE", 25)?;
    let now = chrono::Utc::now().timestamp();
    for object in StripeObject::ALL {
        let api = StripeApi::start().await?;
        let account = stripe(
            &config(object, &api.url(), Some(rate)),
            KEY,
            Arc::new(MemoryCustomerIds::new()),
        )?;
        let template = object.template_name();
        let body = csv(object, rows, now);
        let steps: &[(&str, &str, i64)] = match object {
            StripeObject::MeterEvents => &[("new", "\"v1\"", 1_000)],
            _ => &[("new", "\"v1\"", 1_000), ("unchanged", "\"v2\"", 2_000)],
        };
        for (step, etag, modified) in steps {
            let before = api.seen(|s| s.requests.len());
            let started = Instant::now();
            let (report, rejects) = import(
                account.clone(),
                &template,
                Version {
                    connector: "c-bench-stripe",
                    key: "in/bench.csv",
                    etag,
                    modified: *modified,
                },
                &body,
            )
            .await?;
            let seconds = started.elapsed().as_secs_f64();
            let report = report?;
            ensure!(
                report.counts.rows_imported == u64::from(rows) && rejects.rows.is_empty(),
                "{} {step}: {:?}, first refusal {:?}",
                object.name(),
                report.counts,
                rejects.rows.first()
            );
            let requests = api.seen(|s| s.requests.len()) - before;
            let rows_per_s = f64::from(rows) / seconds;
            println!(
                "bench-stripe object={} step={step} rows={rows} rate={rate} requests={requests} \
                 seconds={seconds:.2} rows_per_s={rows_per_s:.1} requests_per_row={:.2} \
                 hours_per_million_rows={:.1}",
                object.name(),
                requests as f64 / f64::from(rows),
                1_000_000.0 / rows_per_s / 3600.0
            );
        }
    }
    Ok(())
}
