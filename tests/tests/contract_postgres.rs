//! The destination contract (`sync::contract::destination`, kind `transactional`) against
//! `PostgresDestination` on a real PostgreSQL server (`s3_importer_tests::postgres`).
//!
//! Each connector of a check gets its own table, named after it and made from the job's template on first
//! use, so checks run in parallel on one server. Error reports go to a `MemoryDestination`: the PostgreSQL
//! destination hands `open_rejects` to another destination (S3 in the worker), and the checks read them there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use s3_importer_core::sink::{ErrorReportEntry, RejectSink, RowSink, SinkError};
use s3_importer_core::sync::contract::destination::{DestinationFixture, RowLineage, VisibleRow};
use s3_importer_core::sync::memory::MemoryDestination;
use s3_importer_core::sync::ports::{Destination, FileJob};
use s3_importer_core::sync::DestinationConfig;
use s3_importer_postgres::{
    connect, ddl, ConnectionSettings, FileTarget, PostgresDestination, TableRef,
};
use s3_importer_tests::postgres::postgres;

/// A `PostgresDestination` per connector, each on a table of its own, created on first use.
struct PerConnectorTables {
    settings: ConnectionSettings,
    rejects: Arc<MemoryDestination>,
    tables: Mutex<HashMap<String, Arc<PostgresDestination>>>,
    /// The staging ids of the file versions opened, per connector (for `open_uploads`).
    versions: Mutex<HashMap<String, Vec<String>>>,
}

fn table_of(connector_id: &str) -> TableRef {
    TableRef::new("public", connector_id)
}

impl PerConnectorTables {
    async fn destination(&self, job: &FileJob) -> Result<Arc<PostgresDestination>, SinkError> {
        let id = &job.connector.id;
        if let Some(found) = self.tables.lock().ok().and_then(|t| t.get(id).cloned()) {
            return Ok(found);
        }
        let table = table_of(id);
        let fail = |e| SinkError::permanent(format!("create {table}"), e);
        let mut client = connect(&self.settings).await.map_err(fail)?;
        ddl::create(&mut client, &job.template, &table)
            .await
            .map_err(fail)?;
        let rejects: Arc<dyn Destination> = self.rejects.clone();
        let destination = Arc::new(PostgresDestination::new(
            self.settings.clone(),
            table,
            rejects,
        ));
        if let Ok(mut tables) = self.tables.lock() {
            tables.insert(id.clone(), destination.clone());
        }
        Ok(destination)
    }
}

#[async_trait]
impl Destination for PerConnectorTables {
    async fn open_rows(&self, job: &FileJob) -> Result<Box<dyn RowSink>, SinkError> {
        let destination = self.destination(job).await?;
        let version = FileTarget::new(job, destination.table()).version;
        if let Ok(mut versions) = self.versions.lock() {
            versions
                .entry(job.connector.id.clone())
                .or_default()
                .push(version);
        }
        destination.open_rows(job).await
    }

    async fn open_rejects(&self, job: &FileJob) -> Result<Box<dyn RejectSink>, SinkError> {
        self.destination(job).await?.open_rejects(job).await
    }
}

struct Postgres {
    destination: Arc<PerConnectorTables>,
}

#[async_trait]
impl DestinationFixture for Postgres {
    fn destination(&self) -> Arc<dyn Destination> {
        self.destination.clone()
    }

    fn config(&self) -> DestinationConfig {
        // The connector's destination settings are not read by `PostgresDestination` (it is built for one
        // table); any value does.
        DestinationConfig::Dynamodb {
            table: "unused by the PostgreSQL destination".into(),
        }
    }

    async fn visible_rows(&self, connector_id: &str) -> Result<Vec<VisibleRow>, String> {
        let client = connect(&self.destination.settings)
            .await
            .map_err(|e| e.to_string())?;
        let table = table_of(connector_id);
        let exists = client
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table.quoted()])
            .await
            .map_err(|e| e.to_string())?;
        if !exists.get::<_, bool>(0) {
            return Ok(Vec::new());
        }
        let rows = client
            .query(
                &format!(
                    "SELECT to_jsonb(t) - '_source_key' - '_source_etag' - '_source_last_modified' \
                         - '_source_row' - '_imported_at', \
                     _source_key, _source_etag, \
                     (extract(epoch FROM _source_last_modified) * 1000)::bigint, _source_row \
                     FROM {table} t ORDER BY \"id\""
                ),
                &[],
            )
            .await
            .map_err(|e| format!("read {table}: {e}"))?;
        rows.iter()
            .map(|r| {
                Ok(VisibleRow {
                    row: r.get(0),
                    lineage: Some(RowLineage {
                        source_key: r.get(1),
                        source_etag: r.get(2),
                        source_last_modified_ms: r.get(3),
                        record: u64::try_from(r.get::<_, i64>(4)).map_err(|e| e.to_string())?,
                    }),
                })
            })
            .collect()
    }

    async fn visible_outputs(&self, _connector_id: &str) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }

    /// The file versions of the connector with rows staged: `<staging id>: <n> rows`.
    async fn open_uploads(&self, connector_id: &str) -> Result<Vec<String>, String> {
        let versions = self
            .destination
            .versions
            .lock()
            .map_err(|e| e.to_string())?
            .get(connector_id)
            .cloned()
            .unwrap_or_default();
        let client = connect(&self.destination.settings)
            .await
            .map_err(|e| e.to_string())?;
        // A staging table left is an open upload, even an empty one (finish and abort drop it).
        let mut open = Vec::new();
        for version in &versions {
            let stage = ddl::stage_table(version);
            let exists: bool = client
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&stage])
                .await
                .map_err(|e| e.to_string())?
                .get(0);
            if exists {
                let rows: i64 = client
                    .query_one(&format!("SELECT count(*) FROM {stage}"), &[])
                    .await
                    .map_err(|e| e.to_string())?
                    .get(0);
                open.push(format!("{version}: {rows} rows"));
            }
        }
        open.sort();
        Ok(open)
    }

    async fn report(&self, location: &str) -> Result<Option<Vec<ErrorReportEntry>>, String> {
        Ok(self.destination.rejects.report(location))
    }
}

async fn fixture() -> Result<Arc<dyn DestinationFixture>, String> {
    let settings =
        ConnectionSettings::from_url(&postgres().await.url()).map_err(|e| e.to_string())?;
    Ok(Arc::new(Postgres {
        destination: Arc::new(PerConnectorTables {
            settings,
            rejects: Arc::new(MemoryDestination::new()),
            tables: Mutex::new(HashMap::new()),
            versions: Mutex::new(HashMap::new()),
        }),
    }))
}

s3_importer_core::destination_contract_tests!(fixture(), transactional);
