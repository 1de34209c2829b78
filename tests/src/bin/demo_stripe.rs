//! `make demo-stripe`: the Stripe destination against localstripe (a local fake Stripe server started on a
//! free loopback port): `examples/demo/stripe/products.csv` imported with the built-in `stripe-products`
//! template, then an overwritten version with two rows changed (only those two are written), delivered
//! twice; then `customers.csv` with `stripe-customers`, twice. Prints what the server holds after each step.

use std::sync::Arc;

use anyhow::{Context, Result};
use s3_importer_core::sync::StripeObject;
use s3_importer_stripe::MemoryCustomerIds;
use s3_importer_tests::localstripe::{LocalStripe, KEY};
use s3_importer_tests::repo_root;
use s3_importer_tests::stripe_import::{config, import, stripe, Version};
use serde_json::Value;

const CONNECTOR: &str = "c-demo-stripe";

fn read(name: &str) -> Result<String> {
    let path = repo_root().join("examples/demo/stripe").join(name);
    std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))
}

async fn show(server: &LocalStripe, resource: &str) -> Result<usize> {
    let objects = server.list(resource).await?;
    for o in &objects {
        let field = |p: &str| {
            o.pointer(p)
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    Value::Null => "-".to_owned(),
                    other => other.to_string(),
                })
                .unwrap_or_else(|| "-".to_owned())
        };
        match resource {
            "products" => println!(
                "  {:<9} {:<13} {:<18} active={:<5} from {} record {}",
                field("/id"),
                field("/name"),
                field("/description"),
                field("/active"),
                field("/metadata/s3i_source_etag"),
                field("/metadata/s3i_record")
            ),
            _ => println!(
                "  {:<20} {:<9} {:<18} {:<11} from {}",
                field("/id"),
                field("/metadata/s3i_external_key"),
                field("/email"),
                field("/address/city"),
                field("/metadata/s3i_source_etag")
            ),
        }
    }
    Ok(objects.len())
}

async fn step(
    account: &Arc<s3_importer_stripe::Stripe>,
    template: &str,
    version: Version<'_>,
    csv: &str,
) -> Result<()> {
    let (report, _rejects) = import(account.clone(), template, version, csv).await?;
    let report = report?;
    println!(
        "{} {} ({}): {} rows imported, {} rejected",
        template,
        version.key,
        version.etag,
        report.counts.rows_imported,
        report.counts.rows_rejected
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let server = LocalStripe::start().await?;
    println!("localstripe on {}", server.url());
    let customers = Arc::new(MemoryCustomerIds::new());
    let products = stripe(
        &config(StripeObject::Products, &server.url(), None),
        KEY,
        customers.clone(),
    )?;
    let v = |key, etag, modified| Version {
        connector: CONNECTOR,
        key,
        etag,
        modified,
    };

    step(
        &products,
        "stripe-products",
        v("in/products.csv", "\"v1\"", 1_000),
        &read("products.csv")?,
    )
    .await?;
    show(&server, "products").await?;
    let second = read("products-v2.csv")?;
    step(
        &products,
        "stripe-products",
        v("in/products.csv", "\"v2\"", 2_000),
        &second,
    )
    .await?;
    println!("(only prod_ink and prod_env changed: they alone now come from \"v2\")");
    step(
        &products,
        "stripe-products",
        v("in/products.csv", "\"v2\"", 2_000),
        &second,
    )
    .await?;
    let n = show(&server, "products").await?;
    println!("{n} products after a duplicate delivery\n");

    let account = stripe(
        &config(StripeObject::Customers, &server.url(), None),
        KEY,
        customers.clone(),
    )?;
    let csv = read("customers.csv")?;
    step(
        &account,
        "stripe-customers",
        v("in/customers.csv", "\"c1\"", 1_000),
        &csv,
    )
    .await?;
    step(
        &account,
        "stripe-customers",
        v("renamed/customers.csv", "\"c1\"", 1_000),
        &csv,
    )
    .await?;
    let n = show(&server, "customers").await?;
    println!("{n} customers after the file was delivered again under another name (mapping kept per connector)");
    Ok(())
}
