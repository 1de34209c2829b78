//! Stripe customers at the request level (`s3_importer_tests::stripe_api`, which keeps idempotency keys
//! and answers searches, as localstripe does not): a create that reached Stripe without its customer id
//! being recorded — the worker crashed between the two — is resumed without a second customer, whether
//! Stripe's search already finds it, or not yet (the claim's idempotency key then answers the first
//! create, or refuses other values until the search catches up).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use async_trait::async_trait;
use s3_importer_core::sync::StripeObject;
use s3_importer_stripe::{CustomerIds, Mapping, MemoryCustomerIds, StripeError};
use s3_importer_tests::stripe_api::StripeApi;
use s3_importer_tests::stripe_import::{config, import, stripe, Version};

const KEY: &str = "sk_test_customers";
const CONNECTOR: &str = "c-stripe-customers";
const N: usize = 5;
/// The row whose customer id is never recorded: the worker "crashes" right after Stripe created it.
const CRASH_AT: usize = 3;

/// Mappings that fail the `nth` record (1-based), as a worker killed between the create and the record.
#[derive(Debug)]
struct CrashBeforeRecord {
    inner: Arc<MemoryCustomerIds>,
    nth: usize,
    records: AtomicUsize,
}

#[async_trait]
impl CustomerIds for CrashBeforeRecord {
    async fn claim(
        &self,
        connector_id: &str,
        external_key: &str,
        idempotency_key: &str,
    ) -> Result<Mapping, StripeError> {
        self.inner
            .claim(connector_id, external_key, idempotency_key)
            .await
    }

    async fn record(
        &self,
        connector_id: &str,
        external_key: &str,
        customer_id: &str,
    ) -> Result<(), StripeError> {
        if self.records.fetch_add(1, Ordering::SeqCst) + 1 == self.nth {
            return Err(StripeError::Mapping("killed before the record".into()));
        }
        self.inner
            .record(connector_id, external_key, customer_id)
            .await
    }
}

fn customers_csv(city: &str) -> String {
    let mut csv = String::from("external_key,email,name,address_city\n");
    for i in 1..=N {
        csv.push_str(&format!("crm-{i},c{i}@example.com,Customer {i},{city}\n"));
    }
    csv
}

fn v(etag: &str, modified: i64) -> Version<'_> {
    Version {
        connector: CONNECTOR,
        key: "in/customers.csv",
        etag,
        modified,
    }
}

/// The server's customers by external key: (id, city).
fn customers(api: &StripeApi) -> Result<BTreeMap<String, (String, String)>> {
    api.seen(|s| {
        let mut out = BTreeMap::new();
        for c in &s.customers {
            let key = c["metadata"]["s3i_external_key"]
                .as_str()
                .context("external key")?;
            let id = c["id"].as_str().context("id")?;
            let city = c["address"]["city"].as_str().unwrap_or_default();
            ensure!(
                out.insert(key.to_owned(), (id.to_owned(), city.to_owned()))
                    .is_none(),
                "two customers for {key}"
            );
        }
        Ok(out)
    })
}

/// Customer creates the server ran or replayed, by idempotency key.
fn creates(api: &StripeApi) -> Vec<(String, u16)> {
    api.seen(|s| {
        s.requests
            .iter()
            .filter(|r| r.method == "POST" && r.path == "/v1/customers")
            .map(|r| (r.idempotency_key.clone().unwrap_or_default(), r.status))
            .collect()
    })
}

/// Imports the file with the crash at row [`CRASH_AT`]: its customer exists in Stripe, unrecorded.
async fn crash_mid_file(api: &StripeApi, ids: &Arc<MemoryCustomerIds>) -> Result<String> {
    let crashing = Arc::new(CrashBeforeRecord {
        inner: ids.clone(),
        nth: CRASH_AT,
        records: AtomicUsize::new(0),
    });
    let account = stripe(
        &config(StripeObject::Customers, &api.url(), Some(1000)),
        KEY,
        crashing,
    )?;
    let (report, _) = import(
        account,
        "stripe-customers",
        v("\"e1\"", 1_000),
        &customers_csv("Lyon"),
    )
    .await?;
    let e = report.err().context("the crash did not fail the file")?;
    ensure!(e.is_transient(), "{e}");
    ensure!(customers(api)?.len() == CRASH_AT, "{:?}", customers(api)?);
    match ids.of(CONNECTOR).get(&format!("crm-{CRASH_AT}")) {
        Some(Mapping::Claimed { idempotency_key }) => Ok(idempotency_key.clone()),
        other => anyhow::bail!("the crashed row's mapping: {other:?}"),
    }
}

fn every_mapping_known(
    ids: &MemoryCustomerIds,
    server: &BTreeMap<String, (String, String)>,
) -> Result<()> {
    let mapping = ids.of(CONNECTOR);
    ensure!(mapping.len() == N, "{mapping:?}");
    for (key, (id, _)) in server {
        ensure!(
            mapping.get(key)
                == Some(&Mapping::Known {
                    customer_id: id.clone()
                }),
            "{key}: {:?}",
            mapping.get(key)
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_redelivery_after_a_crash_replays_the_create_under_its_key_before_search_finds_it(
) -> Result<()> {
    let api = StripeApi::start().await?;
    api.search_lags(true);
    let ids = Arc::new(MemoryCustomerIds::new());
    let claim = crash_mid_file(&api, &ids).await?;

    let account = stripe(
        &config(StripeObject::Customers, &api.url(), Some(1000)),
        KEY,
        ids.clone(),
    )?;
    import(
        account,
        "stripe-customers",
        v("\"e1\"", 1_000),
        &customers_csv("Lyon"),
    )
    .await?
    .0?;
    let server = customers(&api)?;
    ensure!(server.len() == N, "{server:?}");
    every_mapping_known(&ids, &server)?;
    let resumed: Vec<_> = creates(&api)
        .into_iter()
        .filter(|(key, _)| *key == claim)
        .collect();
    ensure!(
        resumed == vec![(claim.clone(), 200), (claim.clone(), 200)],
        "the crashed row's create, then its replay under the same key: {resumed:?}"
    );
    ensure!(api.seen(|s| s.replays) == 1);
    Ok(())
}

#[tokio::test]
async fn a_changed_file_after_a_crash_finds_the_customer_by_search_and_updates_it() -> Result<()> {
    let api = StripeApi::start().await?;
    let ids = Arc::new(MemoryCustomerIds::new());
    crash_mid_file(&api, &ids).await?;
    let before = creates(&api).len();

    let account = stripe(
        &config(StripeObject::Customers, &api.url(), Some(1000)),
        KEY,
        ids.clone(),
    )?;
    import(
        account,
        "stripe-customers",
        v("\"e2\"", 2_000),
        &customers_csv("Nice"),
    )
    .await?
    .0?;
    let server = customers(&api)?;
    ensure!(server.len() == N, "{server:?}");
    ensure!(
        server.values().all(|(_, city)| city == "Nice"),
        "every customer has the new file's values: {server:?}"
    );
    every_mapping_known(&ids, &server)?;
    ensure!(
        creates(&api).len() - before == N - CRASH_AT,
        "only the rows after the crash were created: {:?}",
        creates(&api)
    );
    let searches = api.seen(|s| {
        s.requests
            .iter()
            .filter(|r| r.path == "/v1/customers/search")
            .map(|r| r.query.clone())
            .collect::<Vec<_>>()
    });
    ensure!(
        searches
            == vec![vec![(
                "query".to_owned(),
                format!("metadata['s3i_external_key']:'crm-{CRASH_AT}'")
            )]],
        "one search, for the crashed row only: {searches:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_changed_file_meeting_an_unsearchable_earlier_create_is_retried_not_duplicated(
) -> Result<()> {
    let api = StripeApi::start().await?;
    api.search_lags(true);
    let ids = Arc::new(MemoryCustomerIds::new());
    let claim = crash_mid_file(&api, &ids).await?;
    let account = stripe(
        &config(StripeObject::Customers, &api.url(), Some(1000)),
        KEY,
        ids.clone(),
    )?;

    // Other values under the claim's key: Stripe refuses the key's reuse, and the file is retried later.
    let (report, rejects) = import(
        account.clone(),
        "stripe-customers",
        v("\"e2\"", 2_000),
        &customers_csv("Nice"),
    )
    .await?;
    let e = report
        .err()
        .context("the refused reuse did not fail the file")?;
    ensure!(e.is_transient(), "{e}");
    ensure!(
        format!("{e:#}").contains(&format!("crm-{CRASH_AT}")),
        "names the external key: {e:#}"
    );
    ensure!(rejects.rows.is_empty(), "no row refused for it");
    ensure!(customers(&api)?.len() == CRASH_AT);
    ensure!(
        creates(&api)
            .iter()
            .any(|(k, status)| *k == claim && *status == 400),
        "{:?}",
        creates(&api)
    );

    // Once the search finds it, the retry updates it and creates the rest.
    api.search_lags(false);
    import(
        account,
        "stripe-customers",
        v("\"e2\"", 2_000),
        &customers_csv("Nice"),
    )
    .await?
    .0?;
    let server = customers(&api)?;
    ensure!(server.len() == N, "{server:?}");
    ensure!(
        server.values().all(|(_, city)| city == "Nice"),
        "{server:?}"
    );
    every_mapping_known(&ids, &server)?;
    Ok(())
}
