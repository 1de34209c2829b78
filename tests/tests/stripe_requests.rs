//! The Stripe destination at the request level, against a local server answering like Stripe's API
//! reference (`s3_importer_tests::stripe_api`): what localstripe lacks — prices, billing meter events,
//! idempotency keys, rate limiting — checked by the method, path, form encoding and headers of every
//! request, and by what the server holds afterwards. Files go through the real pipeline with the built-in
//! templates.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use chrono::Utc;
use s3_importer_core::sync::StripeObject;
use s3_importer_core::ErrorCode;
use s3_importer_stripe::{ApiKey, MemoryCustomerIds, Stripe, API_VERSION};
use s3_importer_tests::stripe_api::StripeApi;
use s3_importer_tests::stripe_import::{config, import, stripe, Version};
use serde_json::Value;

const KEY: &str = "sk_test_requests";
const CONNECTOR: &str = "c-stripe-req";

fn v(etag: &str, modified: i64) -> Version<'_> {
    Version {
        connector: CONNECTOR,
        key: "in/usage.csv",
        etag,
        modified,
    }
}

fn events_csv(n: usize, now: i64) -> String {
    let mut csv = String::from(
        "timestamp,event_name,payload_stripe_customer_id,payload_value,payload_region\n",
    );
    for i in 1..=n {
        csv.push_str(&format!(
            "{},api_calls,cus_{},{},eu\n",
            now - i as i64,
            i % 7,
            i
        ));
    }
    csv
}

#[tokio::test]
async fn meter_events_are_sent_once_each_with_stable_identifiers_across_redeliveries_and_pieces(
) -> Result<()> {
    let api = StripeApi::start().await?;
    let account = stripe(
        &config(StripeObject::MeterEvents, &api.url(), Some(1000)),
        KEY,
        Arc::new(MemoryCustomerIds::new()),
    )?;
    let now = Utc::now().timestamp();
    let csv = events_csv(40, now);
    let (report, rejects) = import(
        account.clone(),
        "stripe-meter-events",
        v("\"u1\"", 1_000),
        &csv,
    )
    .await?;
    ensure!(report?.counts.rows_imported == 40 && rejects.rows.is_empty());
    let first: Vec<_> = api.seen(|s| s.requests.clone());
    ensure!(first.len() == 40, "{} requests", first.len());
    for r in &first {
        ensure!(
            r.method == "POST" && r.path == "/v1/billing/meter_events",
            "{} {}",
            r.method,
            r.path
        );
        ensure!(r.content_type.as_deref() == Some("application/x-www-form-urlencoded"));
        ensure!(r.stripe_version.as_deref() == Some(API_VERSION));
        ensure!(r.authorization.as_deref() == Some(&*format!("Bearer {KEY}")));
        ensure!(
            r.body.contains("payload%5Bstripe_customer_id%5D=cus_"),
            "nested payload not bracket-encoded: {}",
            r.body
        );
        ensure!(
            r.field("payload[region]") == Some("eu") && r.field("event_name") == Some("api_calls")
        );
        ensure!(r.idempotency_key.as_deref().is_some_and(|k| k.len() == 64));
        ensure!(r.field("identifier").is_some_and(|i| i.len() == 64));
    }
    let identifiers: HashSet<_> = first
        .iter()
        .filter_map(|r| r.field("identifier").map(str::to_owned))
        .collect();
    ensure!(identifiers.len() == 40, "identifiers are not distinct");

    // Redelivered, and continued in pieces (the first 25 rows, then all): the same identifiers and keys,
    // and the server holds still 40 events.
    import(
        account.clone(),
        "stripe-meter-events",
        v("\"u1\"", 1_000),
        &csv,
    )
    .await?
    .0?;
    let head: String = csv.lines().take(26).map(|l| format!("{l}\n")).collect();
    import(
        account.clone(),
        "stripe-meter-events",
        v("\"u1\"", 1_000),
        &head,
    )
    .await?
    .0?;
    let all = api.seen(|s| s.requests.clone());
    let again: HashSet<_> = all[40..]
        .iter()
        .filter_map(|r| r.field("identifier").map(str::to_owned))
        .collect();
    ensure!(
        again.is_subset(&identifiers) && again.len() == 40,
        "identifiers changed on redelivery"
    );
    let by_id: HashMap<_, _> = first
        .iter()
        .map(|r| {
            (
                r.field("identifier").map(str::to_owned),
                r.idempotency_key.clone(),
            )
        })
        .collect();
    for r in &all[40..] {
        ensure!(
            by_id.get(&r.field("identifier").map(str::to_owned)) == Some(&r.idempotency_key),
            "idempotency key changed"
        );
    }
    ensure!(
        api.seen(|s| s.meter_events.len()) == 40,
        "{} events held",
        api.seen(|s| s.meter_events.len())
    );
    ensure!(api.seen(|s| s.replays) == 65);
    Ok(())
}

#[tokio::test]
async fn out_of_window_timestamps_and_refused_rows_go_to_the_report_with_positions() -> Result<()> {
    let api = StripeApi::start().await?;
    let account = stripe(
        &config(StripeObject::MeterEvents, &api.url(), Some(1000)),
        KEY,
        Arc::new(MemoryCustomerIds::new()),
    )?;
    let now = Utc::now().timestamp();
    let csv = format!(
        "timestamp,event_name,payload_stripe_customer_id,payload_value\n\
         {now},api_calls,cus_1,1\n{},api_calls,cus_1,1\n{},api_calls,cus_1,1\n{now},api_calls,cus_1,lots\n{now},api_calls,cus_2,2\n",
        now - 36 * 86_400,
        now + 600,
    );
    let (report, rejects) = import(account, "stripe-meter-events", v("\"w\"", 1_000), &csv).await?;
    let report = report?;
    ensure!(
        report.counts.rows_imported == 2 && report.counts.rows_rejected == 3,
        "{:?}",
        report.counts
    );
    let by_record: BTreeMap<u64, _> = rejects
        .rows
        .iter()
        .map(|r| (r.position.record, r.errors[0].clone()))
        .collect();
    ensure!(
        by_record.keys().copied().collect::<Vec<_>>() == [2, 3, 4],
        "{by_record:?}"
    );
    ensure!(
        by_record[&2].column.as_deref() == Some("timestamp")
            && by_record[&2].message.contains("35 days")
    );
    ensure!(
        by_record[&3].column.as_deref() == Some("timestamp")
            && by_record[&3].message.contains("5 minutes")
    );
    ensure!(
        by_record[&4].code == ErrorCode::DestinationRejected
            && by_record[&4].column.as_deref() == Some("payload_value")
    );
    ensure!(
        by_record[&4].message.contains("Invalid number")
            && by_record[&4].message.contains("param payload[value]"),
        "{}",
        by_record[&4].message
    );
    ensure!(rejects
        .rows
        .iter()
        .all(|r| r.position.line == r.position.record + 1));
    // The out-of-window rows made no call.
    ensure!(
        api.seen(|s| s.requests.len()) == 3,
        "{} requests",
        api.seen(|s| s.requests.len())
    );
    Ok(())
}

#[tokio::test]
async fn rate_limit_429s_slow_the_import_without_losing_or_duplicating_a_row() -> Result<()> {
    const N: usize = 60;
    let api = StripeApi::start().await?;
    // The server allows 20 requests per second; the client is set to 60: Stripe's 429s must slow it.
    api.limit(20);
    api.inject([(500, None), (503, Some(true))]);
    // The default retry policy (250 ms base backoff), as deployed.
    let account = Arc::new(Stripe::new(
        &config(StripeObject::MeterEvents, &api.url(), Some(60)),
        ApiKey::new(KEY)?,
        Arc::new(MemoryCustomerIds::new()),
    )?);
    let started = Instant::now();
    let (report, rejects) = import(
        account,
        "stripe-meter-events",
        v("\"r\"", 1_000),
        &events_csv(N, Utc::now().timestamp()),
    )
    .await?;
    let took = started.elapsed();
    ensure!(report?.counts.rows_imported == N as u64 && rejects.rows.is_empty());
    let (events, limited) = api.seen(|s| (s.meter_events.clone(), s.rate_limited));
    ensure!(
        limited > 0,
        "the server never rate-limited: the test proves nothing"
    );
    let ids: HashSet<_> = events
        .iter()
        .filter_map(|e| e.get("identifier").and_then(Value::as_str))
        .collect();
    ensure!(
        events.len() == N && ids.len() == N,
        "{} events, {} distinct",
        events.len(),
        ids.len()
    );
    ensure!(
        took.as_secs_f64() >= (N as f64 / 20.0) - 1.5,
        "{took:?}: faster than the server's limit"
    );
    println!("{N} meter events at a server limit of 20/s: {took:?} ({:.1} rows/s), {limited} answers 429", N as f64 / took.as_secs_f64());
    Ok(())
}

#[tokio::test]
async fn the_client_limiter_keeps_to_its_rate() -> Result<()> {
    const N: usize = 50;
    let api = StripeApi::start().await?;
    let account = stripe(
        &config(StripeObject::MeterEvents, &api.url(), Some(25)),
        KEY,
        Arc::new(MemoryCustomerIds::new()),
    )?;
    let started = Instant::now();
    import(
        account,
        "stripe-meter-events",
        v("\"l\"", 1_000),
        &events_csv(N, Utc::now().timestamp()),
    )
    .await?
    .0?;
    let took = started.elapsed().as_secs_f64();
    let rate = N as f64 / took;
    // The limiter's promise is an upper bound; how close a loaded machine gets to it is printed, not tested.
    ensure!(rate <= 26.0, "{rate:.1} rows/s at a limit of 25");
    println!("{N} meter events at the test-key default of 25/s: {took:.2} s ({rate:.1} rows/s)");
    Ok(())
}

fn prices_csv(rows: &[(&str, i64, &str)]) -> String {
    let mut csv =
        String::from("lookup_key,product,unit_amount,currency,recurring_interval,nickname\n");
    for (key, amount, nickname) in rows {
        csv.push_str(&format!("{key},prod_1,{amount},usd,month,{nickname}\n"));
    }
    csv
}

#[tokio::test]
async fn prices_are_kept_by_lookup_key_and_a_changed_amount_makes_a_new_price() -> Result<()> {
    let api = StripeApi::start().await?;
    let account = stripe(
        &config(StripeObject::Prices, &api.url(), Some(1000)),
        KEY,
        Arc::new(MemoryCustomerIds::new()),
    )?;
    let first = prices_csv(&[("basic", 900, "Basic"), ("pro", 2900, "Pro")]);
    import(account.clone(), "stripe-prices", v("\"p1\"", 1_000), &first)
        .await?
        .0?;
    let creates = api.seen(|s| {
        s.requests
            .iter()
            .filter(|r| r.method == "POST" && r.path == "/v1/prices")
            .cloned()
            .collect::<Vec<_>>()
    });
    ensure!(creates.len() == 2);
    let c = &creates[0];
    ensure!(
        c.field("lookup_key") == Some("basic")
            && c.field("unit_amount") == Some("900")
            && c.field("recurring[interval]") == Some("month")
    );
    ensure!(c.field("transfer_lookup_key").is_none() && c.idempotency_key.is_some());
    let gets = api.seen(|s| s.requests.iter().filter(|r| r.method == "GET").count());
    ensure!(gets == 2);

    // Redelivered: nothing created.
    import(account.clone(), "stripe-prices", v("\"p1\"", 1_000), &first)
        .await?
        .0?;
    ensure!(api.seen(|s| s.prices.len()) == 2);

    // pro's amount changes, basic's nickname changes.
    let second = prices_csv(&[("basic", 900, "Basic plan"), ("pro", 3900, "Pro")]);
    import(
        account.clone(),
        "stripe-prices",
        v("\"p2\"", 2_000),
        &second,
    )
    .await?
    .0?;
    let prices = api.seen(|s| s.prices.clone());
    ensure!(prices.len() == 3, "{prices:?}");
    let holder = |key: &str| {
        prices
            .iter()
            .find(|p| p.get("lookup_key").and_then(Value::as_str) == Some(key))
            .cloned()
    };
    let pro = holder("pro").context("no price holds pro")?;
    ensure!(
        pro["unit_amount"] == 3900 && pro["id"] == "price_3",
        "{pro}"
    );
    let basic = holder("basic").context("no price holds basic")?;
    ensure!(
        basic["id"] == "price_1" && basic["nickname"] == "Basic plan",
        "{basic}"
    );
    let transfer = api.seen(|s| {
        s.requests
            .iter()
            .filter(|r| r.field("transfer_lookup_key") == Some("true"))
            .count()
    });
    ensure!(transfer == 1);

    // A row Stripe refuses (an unknown product) goes to the report with Stripe's message, on its column.
    let bad = "lookup_key,product,unit_amount,currency\nfree,widget,0,usd\n";
    let (report, rejects) = import(account, "stripe-prices", v("\"p3\"", 3_000), bad).await?;
    ensure!(report?.counts.rows_rejected == 1 && rejects.rows.len() == 1);
    let e = &rejects.rows[0].errors[0];
    ensure!(
        e.column.as_deref() == Some("product") && e.message.contains("No such product"),
        "{e:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_revoked_key_fails_the_file_and_breaks_the_connector() -> Result<()> {
    let api = StripeApi::start().await?;
    api.revoke();
    let account = stripe(
        &config(StripeObject::MeterEvents, &api.url(), Some(1000)),
        KEY,
        Arc::new(MemoryCustomerIds::new()),
    )?;
    let verified = account.verify().await;
    ensure!(
        verified.as_ref().is_err_and(|e| e.breaks_connector()),
        "{verified:?}"
    );
    let (report, _) = import(
        account,
        "stripe-meter-events",
        v("\"k\"", 1_000),
        &events_csv(3, Utc::now().timestamp()),
    )
    .await?;
    let e = report
        .err()
        .context("the file succeeded with a revoked key")?;
    ensure!(e.breaks_connector(), "{e}");
    let text = format!("{e:#}");
    ensure!(
        format!("{}", e.source).contains("API key revoked or lacks permission"),
        "{text}"
    );
    ensure!(
        !format!("{e:?}").contains(KEY),
        "the key leaked into the error"
    );
    // The verify call and one attempt per row of the batch in flight: no retry of a 401.
    let keys = api.seen(|s| {
        s.requests
            .iter()
            .map(|r| r.idempotency_key.clone())
            .collect::<Vec<_>>()
    });
    let distinct: HashSet<_> = keys.iter().collect();
    ensure!(keys.len() <= 4 && distinct.len() == keys.len(), "{keys:?}");
    Ok(())
}

/// A new product with an amount is created with its default price in the same request
/// (`default_price_data[…]`, which localstripe refuses); an unchanged redelivery creates neither again, and a
/// row without an amount makes no price.
#[tokio::test]
async fn a_new_product_with_an_amount_is_created_with_its_default_price() -> Result<()> {
    let api = StripeApi::start().await?;
    let account = stripe(
        &config(StripeObject::Products, &api.url(), Some(1000)),
        KEY,
        Arc::new(MemoryCustomerIds::new()),
    )?;
    let csv = "product_id,name,default_price_unit_amount,default_price_currency\n\
               prod_pen,Fountain pen,1200,EUR\n\
               prod_pad,Notepad,,\n";
    let version = Version {
        connector: CONNECTOR,
        key: "in/products.csv",
        etag: "\"p1\"",
        modified: 1_000,
    };
    for _ in 0..2 {
        let (report, rejects) = import(account.clone(), "stripe-products", version, csv).await?;
        let report = report?;
        ensure!(
            report.counts.rows_imported == 2 && rejects.rows.is_empty(),
            "{:?} {:?}",
            report.counts,
            rejects.rows
        );
    }
    api.seen(|s| {
        let creates: Vec<_> = s
            .requests
            .iter()
            .filter(|r| r.method == "POST" && r.path == "/v1/products")
            .collect();
        ensure!(
            creates.len() == 2,
            "one create per product: {}",
            creates.len()
        );
        let pen = creates
            .iter()
            .find(|r| r.field("id") == Some("prod_pen"))
            .context("no create of prod_pen")?;
        ensure!(
            pen.field("default_price_data[unit_amount]") == Some("1200")
                && pen
                    .field("default_price_data[currency]")
                    .map(str::to_ascii_lowercase)
                    == Some("eur".into()),
            "{:?}",
            pen.form
        );
        ensure!(pen.idempotency_key.is_some());
        let pad = creates
            .iter()
            .find(|r| r.field("id") == Some("prod_pad"))
            .context("no create of prod_pad")?;
        ensure!(
            pad.form
                .iter()
                .all(|(k, _)| !k.starts_with("default_price_data")),
            "{:?}",
            pad.form
        );
        ensure!(s.prices.len() == 1, "{:?}", s.prices);
        ensure!(s.prices[0]["unit_amount"] == 1200 && s.prices[0]["product"] == "prod_pen");
        let product = s
            .products
            .iter()
            .find(|p| p["id"] == "prod_pen")
            .context("prod_pen")?;
        ensure!(product["default_price"] == s.prices[0]["id"], "{product}");
        Ok(())
    })
}
