//! The destination contract (`sync::contract::destination`) against the Stripe destination writing
//! products, kind `upserts` (each row is a product upserted by id as it is written, like DynamoDB's), on
//! localstripe. Product ids are per Stripe account, and the contract's connectors write the same ids as if
//! each had its own table: so each connector of a test writes to its own account (its own localstripe,
//! started when the connector's first file is opened). The contract's rows `{"id","qty"}` become products with that id
//! (named by it: the rows have no name) and `metadata[qty]`; the fixture reads every product whose
//! `metadata[s3i_connector]` is the connector back as `{"id", "qty"}` (Stripe metadata values are strings:
//! the fixture turns digits back into a number) with the lineage kept in the metadata. Error reports go to
//! the in-memory destination.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use s3_importer_core::sink::{ErrorReportEntry, RejectSink, RowSink, SinkError};
use s3_importer_core::sync::contract::destination::{DestinationFixture, RowLineage, VisibleRow};
use s3_importer_core::sync::memory::MemoryDestination;
use s3_importer_core::sync::ports::{Destination, FileJob};
use s3_importer_core::sync::{DestinationConfig, StripeObject};
use s3_importer_stripe::{MemoryCustomerIds, StripeDestination};
use s3_importer_tests::localstripe::{LocalStripe, KEY};
use s3_importer_tests::stripe_import::{config, stripe};
use serde_json::Value;

/// Each connector's account: its server and destination.
/// Each connector's fake server and the destination writing to it.
type ByConnector = HashMap<String, (Arc<LocalStripe>, Arc<StripeDestination>)>;
type Accounts = Mutex<ByConnector>;

/// Routes each connector's files to its own account.
struct PerConnector {
    accounts: Arc<Accounts>,
    reports: MemoryDestination,
}

impl PerConnector {
    async fn account(&self, connector_id: &str) -> Result<Arc<StripeDestination>, SinkError> {
        if let Some((_, d)) = lock(&self.accounts).get(connector_id) {
            return Ok(d.clone());
        }
        let context = "start the connector's localstripe";
        let server = LocalStripe::start()
            .await
            .map_err(|e| SinkError::permanent(context, format!("{e:#}")))?;
        let products = config(StripeObject::Products, &server.url(), Some(500));
        let account = stripe(&products, KEY, Arc::new(MemoryCustomerIds::new()))
            .map_err(|e| SinkError::permanent(context, format!("{e:#}")))?;
        let destination = Arc::new(StripeDestination::new(
            account,
            Arc::new(self.reports.clone()),
        ));
        lock(&self.accounts).insert(
            connector_id.to_owned(),
            (Arc::new(server), destination.clone()),
        );
        Ok(destination)
    }
}

fn lock(accounts: &Accounts) -> std::sync::MutexGuard<'_, ByConnector> {
    accounts.lock().unwrap_or_else(PoisonError::into_inner)
}

#[async_trait]
impl Destination for PerConnector {
    async fn open_rows(&self, job: &FileJob) -> Result<Box<dyn RowSink>, SinkError> {
        self.account(&job.connector.id).await?.open_rows(job).await
    }

    async fn open_rejects(&self, job: &FileJob) -> Result<Box<dyn RejectSink>, SinkError> {
        self.reports.open_rejects(job).await
    }
}

struct Fixture {
    accounts: Arc<Accounts>,
    reports: MemoryDestination,
    config: DestinationConfig,
    destination: Arc<dyn Destination>,
}

fn visible(product: &Value) -> Option<VisibleRow> {
    let meta = |k: &str| {
        product
            .pointer(&format!("/metadata/{k}"))
            .and_then(Value::as_str)
    };
    let mut row = serde_json::Map::new();
    row.insert("id".into(), product.get("id")?.clone());
    if let Some(qty) = meta("qty") {
        let value = qty
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::from(qty));
        row.insert("qty".into(), value);
    }
    Some(VisibleRow {
        row: Value::Object(row),
        lineage: Some(RowLineage {
            source_key: meta("s3i_source_key")?.to_owned(),
            source_etag: meta("s3i_source_etag")?.to_owned(),
            source_last_modified_ms: meta("s3i_last_modified_ms")?.parse().ok()?,
            record: meta("s3i_record")?.parse().ok()?,
        }),
    })
}

#[async_trait]
impl DestinationFixture for Fixture {
    fn destination(&self) -> Arc<dyn Destination> {
        self.destination.clone()
    }

    fn config(&self) -> DestinationConfig {
        self.config.clone()
    }

    async fn visible_rows(&self, connector_id: &str) -> Result<Vec<VisibleRow>, String> {
        let server = lock(&self.accounts)
            .get(connector_id)
            .map(|(s, _)| s.clone());
        let Some(server) = server else {
            return Ok(Vec::new());
        };
        let products = server
            .list("products")
            .await
            .map_err(|e| format!("{e:#}"))?;
        products
            .iter()
            .filter(|p| {
                p.pointer("/metadata/s3i_connector").and_then(Value::as_str) == Some(connector_id)
            })
            .map(|p| visible(p).ok_or_else(|| format!("a product without its lineage: {p}")))
            .collect()
    }

    async fn visible_outputs(&self, _connector_id: &str) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }

    async fn open_uploads(&self, _connector_id: &str) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }

    async fn report(&self, location: &str) -> Result<Option<Vec<ErrorReportEntry>>, String> {
        Ok(self.reports.report(location))
    }
}

async fn fixture() -> Result<Arc<dyn DestinationFixture>, String> {
    let accounts = Arc::new(Accounts::default());
    let reports = MemoryDestination::new();
    let destination = Arc::new(PerConnector {
        accounts: accounts.clone(),
        reports: reports.clone(),
    });
    Ok(Arc::new(Fixture {
        accounts,
        reports,
        config: DestinationConfig::Stripe(config(
            StripeObject::Products,
            "http://127.0.0.1:1",
            None,
        )),
        destination,
    }))
}

s3_importer_core::destination_contract_tests!(fixture(), upserts);
