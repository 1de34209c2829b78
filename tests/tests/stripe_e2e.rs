//! The Stripe destination end to end on the emulator: a file uploaded, the lister, the worker (its real
//! routing, the API key read from Secrets Manager, customer mappings in the state table), and a Stripe
//! server on loopback — localstripe for customers, the request-level server (`s3_importer_tests::stripe_api`)
//! for meter events, rate limits and keys. Each test has its own deployment and server.
//! (Customer mappings are deleted with their connector: the state store's key layout and the Stripe crate's
//! must agree, and the first test checks they do.)

use std::collections::BTreeMap;
use std::time::{Duration as StdDuration, Instant};

use anyhow::{ensure, Context, Result};
use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{Duration, Utc};
use s3_importer_core::sync::ports::ConnectorStore;
use s3_importer_core::sync::redo;
use s3_importer_core::sync::worker::{self, Delivery, Disposition};
use s3_importer_core::sync::{Clock, ConnectorStatus, FileStatus, StripeObject};
use s3_importer_stripe::{CustomerIds, DynamoCustomerIds, Mapping, MemoryCustomerIds};
use s3_importer_tests::deployment::{Deployment, Options};
use s3_importer_tests::localstripe::{self, LocalStripe};
use s3_importer_tests::stripe_api::StripeApi;
use serde_json::Value;

fn template(name: &str) -> Result<String> {
    let path =
        s3_importer_tests::repo_root().join(format!("examples/templates/stripe/{name}.toml"));
    std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))
}

async fn deployment(template_name: &str) -> Result<Deployment> {
    Deployment::with(Options {
        template: template(template_name)?,
        ..Options::default()
    })
    .await
}

fn customers_csv(n: usize, city: &str) -> Vec<u8> {
    let mut csv = String::from("external_key,email,name,address_city,address_country\n");
    for i in 1..=n {
        csv.push_str(&format!(
            "crm-{i},c{i}@example.com,Customer {i},{city},FR\n"
        ));
    }
    csv.into_bytes()
}

/// localstripe's customers of `connector` by external key: (id, city); fails on a second customer for a key.
async fn customers(
    server: &LocalStripe,
    connector: &str,
) -> Result<BTreeMap<String, (String, String)>> {
    let mut out = BTreeMap::new();
    for c in server.list("customers").await? {
        if c.pointer("/metadata/s3i_connector").and_then(Value::as_str) != Some(connector) {
            continue;
        }
        let key = c
            .pointer("/metadata/s3i_external_key")
            .and_then(Value::as_str)
            .context("external key")?;
        let id = c.get("id").and_then(Value::as_str).context("id")?;
        let city = c
            .pointer("/address/city")
            .and_then(Value::as_str)
            .unwrap_or_default();
        ensure!(
            out.insert(key.to_owned(), (id.to_owned(), city.to_owned()))
                .is_none(),
            "two customers for {key}"
        );
    }
    Ok(out)
}

/// The customer mappings the state table holds for the deployment's connector: external key → customer id.
async fn mappings(d: &Deployment) -> Result<BTreeMap<String, String>> {
    let items = s3_importer_tests::dynamodb_client(&d.sdk)
        .query()
        .table_name(&d.provisioned.names.state_table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(
            ":pk",
            AttributeValue::S(format!("STRIPE_CUSTOMER#{}", d.connector.id)),
        )
        .consistent_read(true)
        .send()
        .await?;
    let text = |item: &std::collections::HashMap<String, AttributeValue>, name: &str| {
        item.get(name)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default()
    };
    Ok(items
        .items()
        .iter()
        .map(|item| (text(item, "sk"), text(item, "customer_id")))
        .collect())
}

#[tokio::test]
async fn customers_are_created_once_mapped_in_the_state_table_and_kept_across_a_rename(
) -> Result<()> {
    const N: usize = 12;
    let d = deployment("stripe-customers").await?;
    let server = LocalStripe::start().await?;
    d.use_stripe(
        StripeObject::Customers,
        &server.url(),
        localstripe::KEY,
        200,
    )
    .await?;
    d.put("customers.csv", &customers_csv(N, "Lyon")).await?;
    ensure!(d.sync().await?.enqueued == 1);
    let messages = d.receive().await?;
    let response = d.deliver(&d.worker, &messages).await?;
    ensure!(response.batch_item_failures.is_empty(), "{response:?}");
    d.settle(&messages, &response).await?;
    let entry = d.file("customers.csv").await?;
    ensure!(
        entry.status == FileStatus::Imported && entry.rows_imported == N as u64,
        "{entry:#?}"
    );
    let created = customers(&server, &d.connector.id).await?;
    ensure!(created.len() == N, "{created:?}");
    let mapped = mappings(&d).await?;
    let ids: BTreeMap<String, String> = created
        .iter()
        .map(|(key, (id, _))| (key.clone(), id.clone()))
        .collect();
    ensure!(
        mapped == ids,
        "the state table maps each key to its customer: {mapped:?}"
    );

    // The same message again (SQS delivers at least once): acked, nothing created.
    let response = d.deliver(&d.worker, &messages).await?;
    ensure!(response.batch_item_failures.is_empty(), "{response:?}");
    ensure!(customers(&server, &d.connector.id).await?.len() == N);

    // The file renamed, with new values: the same customers, updated.
    d.put("renamed.csv", &customers_csv(N, "Nice")).await?;
    ensure!(d.sync().await?.enqueued == 1);
    let drained = d.drain().await?;
    ensure!(drained.retried.is_empty(), "{drained:?}");
    let updated = customers(&server, &d.connector.id).await?;
    ensure!(updated.len() == N, "{updated:?}");
    ensure!(
        updated.values().all(|(_, city)| city == "Nice"),
        "{updated:?}"
    );
    ensure!(
        updated
            .iter()
            .all(|(key, (id, _))| ids.get(key) == Some(id)),
        "the same customers: {updated:?}"
    );
    ensure!(mappings(&d).await? == ids);

    // Deleting the connector deletes its mappings with the rest of its state (the customers stay in Stripe).
    d.state.delete_connector(&d.connector.id).await?;
    ensure!(mappings(&d).await?.is_empty(), "{:?}", mappings(&d).await?);
    Ok(())
}

fn events_csv(n: usize) -> Vec<u8> {
    let now = Utc::now().timestamp();
    let mut csv = String::from("timestamp,event_name,payload_stripe_customer_id,payload_value\n");
    for i in 1..=n {
        csv.push_str(&format!("{},api_calls,cus_{},{i}\n", now - 60, i % 5));
    }
    csv.into_bytes()
}

/// Each invocation runs the worker's message processing with `left` until its deadline (as the handler
/// does, without its 20-second floor for starting a message): how long each one took.
async fn pieces(
    d: &Deployment,
    worker: &s3_importer_worker::Worker,
    left: StdDuration,
) -> Result<Vec<StdDuration>> {
    let mut took = Vec::new();
    loop {
        let messages = d.receive().await?;
        if messages.is_empty() {
            return Ok(took);
        }
        ensure!(took.len() < 40, "no progress: {took:?}");
        for message in &messages {
            let started = Instant::now();
            let owner = format!("piece-{}/{}", took.len(), message.message_id);
            let result = worker::process_message(
                &worker.deps,
                &worker.settings,
                &message.body,
                Delivery {
                    owner: &owner,
                    deadline: Some(d.clock.now() + Duration::from_std(left)?),
                    receipt_handle: Some(&message.receipt_handle),
                },
            )
            .await;
            took.push(started.elapsed());
            ensure!(result.disposition != Disposition::Retry, "{result:?}");
            d.consumer.delete(&message.receipt_handle).await?;
        }
    }
}

/// At 100 requests a second, 600 meter events take 6 s, and each invocation has 4 s: the pieces' batches are
/// sized to the write budget from the rate before any write (not 600 rows at once, a 6-second first write),
/// so none answers after its deadline, and every event is sent once.
#[tokio::test]
async fn meter_events_at_the_rate_limit_are_imported_in_pieces_none_past_its_deadline() -> Result<()>
{
    const ROWS: usize = 600;
    let left = StdDuration::from_secs(4);
    let d = deployment("stripe-meter-events").await?;
    let api = StripeApi::start().await?;
    d.use_stripe(StripeObject::MeterEvents, &api.url(), "sk_test_pieces", 100)
        .await?;
    let mut worker = d.worker.clone();
    worker.settings.checkpoint_margin = Duration::seconds(2);
    d.put("usage.csv", &events_csv(ROWS)).await?;
    ensure!(d.sync().await?.enqueued == 1);
    let took = pieces(&d, &worker, left).await?;
    ensure!(took.len() >= 2, "in pieces: {took:?}");
    ensure!(
        took.iter().all(|t| *t < left),
        "an invocation overran its deadline: {took:?}"
    );
    let entry = d.file("usage.csv").await?;
    ensure!(
        entry.status == FileStatus::Imported && entry.rows_imported == ROWS as u64,
        "{entry:#?}"
    );
    api.seen(|s| {
        let identifiers: std::collections::HashSet<_> = s
            .meter_events
            .iter()
            .map(|e| e["identifier"].as_str().unwrap_or_default().to_owned())
            .collect();
        ensure!(
            s.meter_events.len() == ROWS && identifiers.len() == ROWS,
            "{} events, {} identifiers",
            s.meter_events.len(),
            identifiers.len()
        );
        Ok(())
    })
}

/// Stripe refuses the key mid-file: the file fails and the connector is broken. Once the secret holds the
/// new key and the connector is resumed, the same worker process reads the key again at once (not after its
/// 5-minute cache) and imports the retried file.
#[tokio::test]
async fn a_key_refused_mid_file_is_read_again_for_the_next_file_once_rotated() -> Result<()> {
    let d = deployment("stripe-meter-events").await?;
    let api = StripeApi::start().await?;
    api.accept_only("sk_test_new");
    let secret = d
        .use_stripe(StripeObject::MeterEvents, &api.url(), "sk_test_old", 1000)
        .await?;
    d.put("usage.csv", &events_csv(20)).await?;
    ensure!(d.sync().await?.enqueued == 1);
    d.drain().await?;
    let entry = d.file("usage.csv").await?;
    ensure!(entry.status == FileStatus::Failed, "{entry:#?}");
    let mut connector = d.connector_now().await?;
    ensure!(
        matches!(&connector.status, ConnectorStatus::Broken { reason } if reason.contains("API key")),
        "{:?}",
        connector.status
    );

    aws_sdk_secretsmanager::Client::new(&d.sdk)
        .put_secret_value()
        .secret_id(&secret)
        .secret_string("sk_test_new")
        .send()
        .await?;
    connector.status = ConnectorStatus::Active;
    d.state.update_connector(&connector).await?;
    let requeued = redo::requeue(
        &*d.state,
        &*d.real_queue(),
        vec![entry],
        false,
        d.clock.now(),
    )
    .await?;
    ensure!(requeued.sent.len() == 1, "{requeued:?}");
    let drained = d.drain().await?;
    ensure!(drained.retried.is_empty(), "{drained:?}");
    let entry = d.file("usage.csv").await?;
    ensure!(
        entry.status == FileStatus::Imported && entry.rows_imported == 20,
        "{entry:#?}"
    );
    ensure!(api.seen(|s| s.meter_events.len()) == 20);
    Ok(())
}

/// The DynamoDB mapping store on the emulator, as the memory one: the first claim wins, a later claim sees
/// it pending with the first key, a record makes it known, and connectors do not see each other's mappings.
#[tokio::test]
async fn the_state_table_keeps_customer_mappings_as_the_memory_store_does() -> Result<()> {
    let d = Deployment::new().await?;
    let ids = DynamoCustomerIds::new(
        s3_importer_tests::dynamodb_client(&d.sdk),
        d.provisioned.names.state_table.clone(),
    );
    let memory = MemoryCustomerIds::new();
    for store in [&ids as &dyn CustomerIds, &memory] {
        let claimed = |key: &str| Mapping::Claimed {
            idempotency_key: key.to_owned(),
        };
        let pending = |key: &str| Mapping::Pending {
            idempotency_key: key.to_owned(),
        };
        ensure!(
            store.claim("c1", "k'1", "key-a").await? == claimed("key-a"),
            "{store:?}"
        );
        ensure!(
            store.claim("c1", "k'1", "key-b").await? == pending("key-a"),
            "{store:?}"
        );
        ensure!(
            store.claim("c2", "k'1", "key-c").await? == claimed("key-c"),
            "{store:?}"
        );
        store.record("c1", "k'1", "cus_1").await?;
        let known = Mapping::Known {
            customer_id: "cus_1".into(),
        };
        ensure!(
            store.claim("c1", "k'1", "key-d").await? == known,
            "{store:?}"
        );
        ensure!(
            store.claim("c2", "k'1", "key-e").await? == pending("key-c"),
            "{store:?}"
        );
    }
    Ok(())
}
