//! The Stripe destination end to end against localstripe (a stateful fake Stripe server, started per test
//! on a free loopback port): CSV files imported by the real pipeline with the built-in templates
//! `stripe-products` and `stripe-customers`, then the server's objects read back independently.
//!
//! A worker "killed mid-file" is the first part of the file imported and nothing else (the Stripe sink
//! writes each row before its batch returns and stages nothing, so a kill leaves exactly the rows sent
//! before it), followed by the redelivery of the whole file.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use s3_importer_core::sync::StripeObject;
use s3_importer_stripe::{Mapping, MemoryCustomerIds};
use s3_importer_tests::localstripe::{LocalStripe, KEY};
use s3_importer_tests::stripe_import::{config, import, stripe, Version};
use serde_json::Value;

const CONNECTOR: &str = "c-stripe-e2e";

fn products_csv(n: usize, changed: &[usize], tag: &str) -> String {
    let mut csv = String::from("product_id,name,description,active,colour\n");
    for i in 1..=n {
        let name = if changed.contains(&i) {
            format!("Product {i} {tag}")
        } else {
            format!("Product {i}")
        };
        csv.push_str(&format!("prod-{i:03},{name},Item number {i},true,blue\n"));
    }
    csv
}

/// The first `rows` data rows of `csv` (a worker killed after them).
fn head(csv: &str, rows: usize) -> String {
    csv.lines()
        .take(rows + 1)
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The connector's products by id: (name, `s3i_source_etag`).
async fn products(server: &LocalStripe) -> Result<BTreeMap<String, (String, String)>> {
    let mut out = BTreeMap::new();
    for p in server.list("products").await? {
        let meta = |k: &str| {
            p.pointer(&format!("/metadata/{k}"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        if meta("s3i_connector").as_deref() != Some(CONNECTOR) {
            continue;
        }
        let id = p
            .get("id")
            .and_then(Value::as_str)
            .context("id")?
            .to_owned();
        ensure!(
            meta("colour").as_deref() == Some("blue"),
            "{id}: the extra column is not in the metadata: {p}"
        );
        let name = p
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        ensure!(
            out.insert(
                id.clone(),
                (name, meta("s3i_source_etag").unwrap_or_default())
            )
            .is_none(),
            "{id} twice"
        );
    }
    Ok(out)
}

#[tokio::test]
async fn products_are_created_updated_when_changed_and_never_duplicated() -> Result<()> {
    const N: usize = 30;
    let server = LocalStripe::start().await?;
    let account = stripe(
        &config(StripeObject::Products, &server.url(), Some(200)),
        KEY,
        Arc::new(MemoryCustomerIds::new()),
    )?;
    let v = |etag, modified| Version {
        connector: CONNECTOR,
        key: "in/products.csv",
        etag,
        modified,
    };

    let first = products_csv(N, &[], "");
    let (report, rejects) = import(
        account.clone(),
        "stripe-products",
        v("\"e1\"", 1_000),
        &first,
    )
    .await?;
    let report = report?;
    ensure!(
        report.counts.rows_imported == N as u64 && rejects.rows.is_empty(),
        "{:?} {:?}",
        report.counts,
        rejects.rows
    );
    let after_first = products(&server).await?;
    ensure!(
        after_first.len() == N,
        "{} products after the first file",
        after_first.len()
    );
    ensure!(
        after_first["prod-007"] == ("Product 7".into(), "\"e1\"".into()),
        "{:?}",
        after_first["prod-007"]
    );

    // The file overwritten with three rows changed: only those three are written (their lineage moves).
    let changed = [3, 10, 27];
    let second = products_csv(N, &changed, "v2");
    import(
        account.clone(),
        "stripe-products",
        v("\"e2\"", 2_000),
        &second,
    )
    .await?
    .0?;
    let after_second = products(&server).await?;
    ensure!(
        after_second.len() == N,
        "{} products after the overwrite",
        after_second.len()
    );
    let updated: Vec<&String> = after_second
        .iter()
        .filter(|(_, (_, etag))| etag == "\"e2\"")
        .map(|(id, _)| id)
        .collect();
    ensure!(
        updated == ["prod-003", "prod-010", "prod-027"],
        "updated: {updated:?}"
    );
    ensure!(after_second["prod-010"].0 == "Product 10 v2");

    // A duplicate delivery changes nothing.
    import(
        account.clone(),
        "stripe-products",
        v("\"e2\"", 2_000),
        &second,
    )
    .await?
    .0?;
    ensure!(
        products(&server).await? == after_second,
        "a duplicate delivery changed products"
    );

    // A worker killed mid-file, then the file redelivered whole: N products with the final values.
    let third = products_csv(N, &[2, 20, 29], "v3");
    import(
        account.clone(),
        "stripe-products",
        v("\"e3\"", 3_000),
        &head(&third, 15),
    )
    .await?
    .0?;
    import(
        account.clone(),
        "stripe-products",
        v("\"e3\"", 3_000),
        &third,
    )
    .await?
    .0?;
    let last = products(&server).await?;
    ensure!(
        last.len() == N,
        "{} products after the crash and redelivery",
        last.len()
    );
    for i in 1..=N {
        let want = if [2, 20, 29].contains(&i) {
            format!("Product {i} v3")
        } else {
            format!("Product {i}")
        };
        ensure!(
            last[&format!("prod-{i:03}")].0 == want,
            "prod-{i:03}: {:?}",
            last[&format!("prod-{i:03}")]
        );
    }

    // An older file version imported late overwrites nothing.
    import(
        account,
        "stripe-products",
        v("\"e0\"", 500),
        &products_csv(N, &[1], "old"),
    )
    .await?
    .0?;
    ensure!(
        products(&server).await? == last,
        "an older file version overwrote products"
    );
    Ok(())
}

fn customers_csv(n: usize, city: &str) -> String {
    let mut csv = String::from("external_key,email,name,address_city,address_country,plan\n");
    for i in 1..=n {
        csv.push_str(&format!(
            "crm-{i},c{i}@example.com,Customer {i},{city},FR,pro\n"
        ));
    }
    csv
}

/// The connector's customers by external key: (id, city).
async fn customers(server: &LocalStripe) -> Result<BTreeMap<String, (String, String)>> {
    let mut out = BTreeMap::new();
    for c in server.list("customers").await? {
        if c.pointer("/metadata/s3i_connector").and_then(Value::as_str) != Some(CONNECTOR) {
            continue;
        }
        let key = c
            .pointer("/metadata/s3i_external_key")
            .and_then(Value::as_str)
            .context("external key")?
            .to_owned();
        let id = c
            .get("id")
            .and_then(Value::as_str)
            .context("id")?
            .to_owned();
        let city = c
            .pointer("/address/city")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        ensure!(
            out.insert(key.clone(), (id, city)).is_none(),
            "two customers for {key}"
        );
    }
    Ok(out)
}

#[tokio::test]
async fn customers_are_never_duplicated_and_the_mapping_survives_a_rename() -> Result<()> {
    const N: usize = 12;
    let server = LocalStripe::start().await?;
    let ids = Arc::new(MemoryCustomerIds::new());
    let account = stripe(
        &config(StripeObject::Customers, &server.url(), Some(200)),
        KEY,
        ids.clone(),
    )?;
    let v = |key, etag, modified| Version {
        connector: CONNECTOR,
        key,
        etag,
        modified,
    };

    let first = customers_csv(N, "Lyon");
    import(
        account.clone(),
        "stripe-customers",
        v("in/customers.csv", "\"e1\"", 1_000),
        &first,
    )
    .await?
    .0?;
    let created = customers(&server).await?;
    ensure!(created.len() == N, "{} customers", created.len());
    let mapping = ids.of(CONNECTOR);
    for (key, (id, city)) in &created {
        ensure!(city == "Lyon");
        ensure!(
            mapping.get(key)
                == Some(&Mapping::Known {
                    customer_id: id.clone()
                }),
            "mapping of {key}: {:?}",
            mapping.get(key)
        );
    }

    // Redelivered: no second customer.
    import(
        account.clone(),
        "stripe-customers",
        v("in/customers.csv", "\"e1\"", 1_000),
        &first,
    )
    .await?
    .0?;
    ensure!(
        customers(&server).await? == created,
        "a redelivery changed customers"
    );

    // Killed mid-file, then redelivered: the same customers, the final values.
    let moved = customers_csv(N, "Paris");
    import(
        account.clone(),
        "stripe-customers",
        v("in/customers.csv", "\"e2\"", 2_000),
        &head(&moved, 5),
    )
    .await?
    .0?;
    import(
        account.clone(),
        "stripe-customers",
        v("in/customers.csv", "\"e2\"", 2_000),
        &moved,
    )
    .await?
    .0?;
    let after = customers(&server).await?;
    ensure!(
        after.len() == N,
        "{} customers after the crash",
        after.len()
    );
    for (key, (id, city)) in &after {
        ensure!(
            city == "Paris" && created[key].0 == *id,
            "{key}: {id} {city}"
        );
    }

    // The file renamed (a new key, a new version): the mapping, kept per connector, still holds.
    let renamed = customers_csv(N, "Nice");
    import(
        account.clone(),
        "stripe-customers",
        v("archive/customers-2026.csv", "\"e3\"", 3_000),
        &renamed,
    )
    .await?
    .0?;
    let after_rename = customers(&server).await?;
    ensure!(
        after_rename.len() == N,
        "{} customers after the rename",
        after_rename.len()
    );
    ensure!(
        after_rename
            .iter()
            .all(|(k, (id, city))| city == "Nice" && created[k].0 == *id),
        "{after_rename:?}"
    );

    // A replay of the first file (older) neither duplicates nor overwrites.
    import(
        account,
        "stripe-customers",
        v("in/customers.csv", "\"e1\"", 1_000),
        &first,
    )
    .await?
    .0?;
    ensure!(
        customers(&server).await? == after_rename,
        "a replay of an older file changed customers"
    );
    Ok(())
}
