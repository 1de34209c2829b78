//! The worker's destination: each connector's rows go where its configuration says — DynamoDB or S3 (the
//! AWS destination), a PostgreSQL table or a webhook — and every error report goes to the output bucket.
//!
//! A PostgreSQL connector's connection settings are read when a file of it is first opened (from Secrets
//! Manager, or from an environment variable for local use), never stored, and kept for [`SETTINGS_TTL`]: a
//! rotated secret is picked up after at most that long, and at once after a file fails to open, because a
//! failure drops the cached settings. A webhook connector's signing secret is read the same way (see
//! [`crate::webhooks`]), and its webhook (with the per-process concurrency and rate limits) is shared by the
//! files that go to it. A Stripe connector's API key likewise (see [`crate::stripes`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use s3_importer_aws::secrets::{SecretError, Secrets};
use s3_importer_core::sink::{RejectSink, RowSink, SinkError};
use s3_importer_core::sync::ports::{Destination, FileJob};
use s3_importer_core::sync::{DestinationConfig, PostgresConnection};
use s3_importer_postgres::{ConnectionSettings, PgError, PostgresDestination, TableRef};

use s3_importer_stripe::CustomerIds;

use crate::stripes::Stripes;
use crate::webhooks::Webhooks;

/// How long connection settings read from a secret are reused.
pub const SETTINGS_TTL: Duration = Duration::from_secs(300);

/// Why a PostgreSQL connector's connection settings could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The secret could not be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The environment variable is not set.
    #[error("environment variable {var} is not set: it must hold the postgres:// URL of the connector's database")]
    MissingVar {
        /// The variable.
        var: String,
    },
    /// The secret or URL does not give usable settings (the message never quotes them).
    #[error("the connection settings of {from} are unusable: {source}")]
    Settings {
        /// Where they came from (`secret NAME`, `$VAR`).
        from: String,
        /// What is wrong.
        #[source]
        source: PgError,
    },
}

impl ConnectionError {
    /// Whether a later attempt may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Secret(e) if e.is_retryable())
    }
}

/// The connection settings `connection` names: the RDS-format secret's, or the URL in the variable.
pub async fn connection_settings(
    connection: &PostgresConnection,
    secrets: &Secrets,
) -> Result<ConnectionSettings, ConnectionError> {
    let unusable = |source| ConnectionError::Settings {
        from: connection.to_string(),
        source,
    };
    match connection {
        PostgresConnection::Secret { secret_id } => {
            let value = secrets.get(secret_id).await?;
            ConnectionSettings::from_rds_secret(value.expose()).map_err(unusable)
        }
        PostgresConnection::Env { var } => {
            let url =
                std::env::var(var).map_err(|_| ConnectionError::MissingVar { var: var.clone() })?;
            ConnectionSettings::from_url(&url).map_err(unusable)
        }
    }
}

type Key = (PostgresConnection, String);

/// Routes each connector's rows to its destination (see the module docs).
pub struct Destinations {
    aws: Arc<dyn Destination>,
    secrets: Secrets,
    postgres: Mutex<HashMap<Key, (Arc<PostgresDestination>, Instant)>>,
    webhooks: Webhooks,
    stripes: Stripes,
}

impl Destinations {
    /// DynamoDB and S3 connectors (and every error report) through `aws`; PostgreSQL connectors with
    /// settings read through `secrets`.
    pub fn new(aws: Arc<dyn Destination>, secrets: Secrets) -> Self {
        Self {
            webhooks: Webhooks::new(aws.clone(), secrets.clone()),
            stripes: Stripes::new(aws.clone(), secrets.clone(), None),
            aws,
            secrets,
            postgres: Mutex::new(HashMap::new()),
        }
    }

    /// The same destinations keeping Stripe customer mappings in `customers` (the state table), in a
    /// deployment running up to `workers` worker processes at once (a Stripe connector's rate is shared).
    pub fn with_stripe(mut self, customers: Arc<dyn CustomerIds>, workers: u32) -> Self {
        self.stripes = Stripes::new(self.aws.clone(), self.secrets.clone(), Some(customers))
            .with_workers(workers);
        self
    }

    async fn postgres(
        &self,
        connection: &PostgresConnection,
        table: &str,
    ) -> Result<Arc<PostgresDestination>, SinkError> {
        let key = (connection.clone(), table.to_owned());
        if let Some((destination, at)) = self.cache().get(&key) {
            if at.elapsed() < SETTINGS_TTL {
                return Ok(destination.clone());
            }
        }
        let context = format!("connect to PostgreSQL for table {table}");
        let table = TableRef::parse(table).map_err(|e| SinkError::permanent(&context, e))?;
        let settings = connection_settings(connection, &self.secrets)
            .await
            .map_err(|e| {
                if e.is_retryable() {
                    SinkError::transient(&context, e)
                } else {
                    SinkError::permanent(&context, e)
                }
            })?;
        let destination = Arc::new(PostgresDestination::new(settings, table, self.aws.clone()));
        self.cache()
            .insert(key, (destination.clone(), Instant::now()));
        Ok(destination)
    }

    fn cache(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<Key, (Arc<PostgresDestination>, Instant)>> {
        // The map holds no invariant a panic could break.
        self.postgres.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[async_trait]
impl Destination for Destinations {
    async fn open_rows(&self, job: &FileJob) -> Result<Box<dyn RowSink>, SinkError> {
        if let DestinationConfig::Webhook(config) = &job.connector.destination {
            return self.webhooks.open_rows(config, job).await;
        }
        if let DestinationConfig::Stripe(config) = &job.connector.destination {
            let opened = self.stripes.open_rows(config, job).await;
            if opened.is_err() {
                self.stripes.forget(config);
            }
            return opened;
        }
        let DestinationConfig::Postgres { table, connection } = &job.connector.destination else {
            return self.aws.open_rows(job).await;
        };
        let destination = self.postgres(connection, table).await?;
        let opened = destination.open_rows(job).await;
        if opened.is_err() {
            // The password may have been rotated: read the settings again for the next file.
            self.cache().remove(&(connection.clone(), table.clone()));
        }
        opened
    }

    async fn open_rejects(&self, job: &FileJob) -> Result<Box<dyn RejectSink>, SinkError> {
        self.aws.open_rejects(job).await
    }
}
