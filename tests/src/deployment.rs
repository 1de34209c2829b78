//! A whole deployment of the sync engine on the emulator, for end-to-end behaviour tests: provisioned
//! resources under unique names, a source bucket, a stored template, one connector, an injected clock, and
//! the lister and worker *handlers* (the code Lambda runs) built from a [`Config`] naming those resources.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use s3_importer_tests::deployment::Deployment;
//!
//! let d = Deployment::new().await?;
//! d.put("a.csv", b"id,qty\n1,2\n").await?;
//! let run = d.sync().await?;
//! assert_eq!(run.enqueued, 1);
//! let drained = d.drain().await?;
//! assert_eq!(drained.acked, 1);
//! assert_eq!(d.records().await?.len(), 1);
//! # Ok(()) }
//! ```
//!
//! Every deployment has its own tables, queues and buckets, so tests run in parallel on one emulator.

use std::collections::{BTreeMap, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use aws_config::SdkConfig;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::QueueAttributeName;
use chrono::{DateTime, Utc};
use s3_importer_aws::consumer::{Received, SqsConsumer};
use s3_importer_aws::provision::{provision, Names, Provisioned};
use s3_importer_aws::secrets::Secrets;
use s3_importer_aws::state::DynamoStateStore;
use s3_importer_aws::{AwsDestination, SqsQueue};
use s3_importer_core::config::{vars, Config};
use s3_importer_core::sync::contract::fixtures;
use s3_importer_core::sync::ports::{
    ConnectorStore, Destination, FileLedger, FileQueue, TemplateStore,
};
use s3_importer_core::sync::{
    Clock, Connector, ConnectorStatus, DestinationConfig, FileStatus, FixedClock, LedgerEntry,
    PostgresConnection, Source, StripeConfig, StripeObject, SyncRun, WebhookConfig,
    WebhookOnReject, WebhookSecret,
};
use s3_importer_core::template::Template;
use s3_importer_lister::Lister;
use s3_importer_worker::destinations::Destinations;
use s3_importer_worker::Worker;
use serde_json::json;

use crate::{create_bucket, dynamodb_client, emulator, s3_client, unique_name, ACCOUNT_ID, REGION};

/// The folder (key prefix) the connector reads.
pub const PREFIX: &str = "incoming/";

/// The default template: `id` (the primary key) and `qty`, from CSV, JSON Lines or JSON by extension; the
/// engine tier's template too.
pub const TEMPLATE: &str = fixtures::TEMPLATE;

/// How to build a [`Deployment`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Extra configuration variables (`S3I_MAX_FILE_BYTES`, `S3I_LOOKBACK_DAYS`, ...).
    pub env: Vec<(&'static str, String)>,
    /// The template's TOML.
    pub template: String,
    /// The work queue's VisibilityTimeout in seconds.
    pub visibility_timeout: u32,
    /// Receives before a message moves to the DLQ.
    pub max_receive_count: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            env: Vec::new(),
            template: TEMPLATE.to_owned(),
            visibility_timeout: 30,
            max_receive_count: 5,
        }
    }
}

/// What one [`Deployment::drain`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drained {
    /// Messages handed to the worker.
    pub delivered: u64,
    /// Messages the worker acked (deleted from the queue).
    pub acked: u64,
    /// Ids of the messages the worker reported as batch item failures (left on the queue, invisible).
    pub retried: Vec<String>,
}

/// One provisioned deployment with one connector.
pub struct Deployment {
    /// SDK configuration for the emulator.
    pub sdk: SdkConfig,
    /// What was provisioned.
    pub provisioned: Provisioned,
    /// The configuration the handlers were built from.
    pub config: Config,
    /// The source bucket.
    pub source_bucket: String,
    /// The connector (as created; read [`Deployment::connector_now`] for its current state).
    pub connector: Connector,
    /// The clock every handler reads.
    pub clock: Arc<FixedClock>,
    /// The state table.
    pub state: Arc<DynamoStateStore>,
    /// The lister handler's dependencies.
    pub lister: Lister,
    /// The worker handler's dependencies.
    pub worker: Worker,
    /// Receives and deletes work-queue messages (the event source mapping's job in Lambda).
    pub consumer: SqsConsumer,
}

impl std::fmt::Debug for Deployment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deployment")
            .field("names", &self.provisioned.names)
            .field("source_bucket", &self.source_bucket)
            .field("connector", &self.connector.id)
            .finish_non_exhaustive()
    }
}

static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// A request id unique in this process, as Lambda gives each invocation.
pub fn request_id(what: &str) -> String {
    format!(
        "{what}-{}-{}",
        std::process::id(),
        REQUESTS.fetch_add(1, Ordering::Relaxed)
    )
}

impl Deployment {
    /// A deployment with the default [`Options`].
    pub async fn new() -> Result<Self> {
        Self::with(Options::default()).await
    }

    /// A deployment with these options.
    pub async fn with(options: Options) -> Result<Self> {
        let sdk = emulator().await.sdk_config().await;
        let prefix = unique_name("sync");
        let names = Names::with_prefix(&prefix);
        let provisioned = provision(
            &sdk,
            &names,
            options.visibility_timeout,
            options.max_receive_count,
        )
        .await
        .with_context(|| format!("provision {prefix}"))?;
        let source_bucket = format!("{prefix}-src");
        create_bucket(&sdk, &source_bucket).await?;

        let mut env: HashMap<String, String> = [
            (vars::STATE_TABLE, names.state_table.clone()),
            (vars::QUEUE_URL, provisioned.queue_url.clone()),
            (
                vars::NOTIFICATION_QUEUE_URL,
                provisioned.notification_queue_url.clone(),
            ),
            (
                vars::DEAD_LETTER_QUEUE_URL,
                provisioned.dead_letter_queue_url.clone(),
            ),
            (vars::MAX_RECEIVES, options.max_receive_count.to_string()),
            (vars::RECORDS_TABLE, names.records_table.clone()),
            (vars::OUTPUT_BUCKET, names.output_bucket.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        env.extend(
            options
                .env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone())),
        );
        let config = Config::from_map(&env)?;

        let clock = Arc::new(FixedClock::new());
        let state = Arc::new(DynamoStateStore::new(
            dynamodb_client(&sdk),
            names.state_table.clone(),
        ));
        let template = Template::from_toml(&options.template).context("parse the template")?;
        state
            .put_template(&template.name, &options.template, &template, clock.now())
            .await?;
        let now = clock.now();
        let mut hasher = DefaultHasher::new();
        prefix.hash(&mut hasher);
        let connector = dynamodb_connector(
            format!("c-{:016x}", hasher.finish()),
            format!("{prefix}-connector"),
            &source_bucket,
            PREFIX,
            &template.name,
            &names.records_table,
            now,
        );
        state.create_connector(&connector).await?;

        let as_clock: Arc<dyn Clock> = clock.clone();
        let lister = Lister::from_config(&config, &sdk, as_clock.clone());
        let worker = Worker::from_config(&config, &sdk, as_clock);
        let consumer = SqsConsumer::new(
            s3_importer_aws::config::sqs_client(&sdk),
            provisioned.queue_url.clone(),
        );
        Ok(Self {
            sdk,
            provisioned,
            config,
            source_bucket,
            connector,
            clock,
            state,
            lister,
            worker,
            consumer,
        })
    }

    /// The full key of `name` in the connector's folder.
    pub fn key(name: &str) -> String {
        format!("{PREFIX}{name}")
    }

    /// Writes `incoming/<name>`; returns its ETag (quoted, as S3 returns it).
    pub async fn put(&self, name: &str, body: &[u8]) -> Result<String> {
        self.put_key(&Self::key(name), body, None).await
    }

    /// Writes `key` (a full key, inside the folder or not), optionally in a storage class; returns its ETag.
    pub async fn put_key(
        &self,
        key: &str,
        body: &[u8],
        storage_class: Option<aws_sdk_s3::types::StorageClass>,
    ) -> Result<String> {
        let out = s3_client(&self.sdk)
            .put_object()
            .bucket(&self.source_bucket)
            .key(key)
            .body(ByteStream::from(body.to_vec()))
            .set_storage_class(storage_class)
            .send()
            .await
            .with_context(|| format!("put s3://{}/{key}", self.source_bucket))?;
        out.e_tag.context("PutObject returned no ETag")
    }

    /// One lister invocation for this connector (as `connector sync` sends it); returns its sync run.
    pub async fn sync(&self) -> Result<SyncRun> {
        self.sync_as(&request_id("lister")).await
    }

    /// One lister invocation with the given request id.
    pub async fn sync_as(&self, request_id: &str) -> Result<SyncRun> {
        sync_connector(&self.lister, &self.connector.name, request_id).await
    }

    /// Receives every visible message (they become invisible for the queue's visibility timeout).
    pub async fn receive(&self) -> Result<Vec<Received>> {
        let mut all = Vec::new();
        loop {
            let batch = self.consumer.receive(10, 0).await?;
            if batch.is_empty() {
                return Ok(all);
            }
            all.extend(batch);
        }
    }

    /// Hands `messages` to `worker`'s handler as the SQS event Lambda would deliver.
    pub async fn deliver(
        &self,
        worker: &Worker,
        messages: &[Received],
    ) -> Result<SqsBatchResponse> {
        self.invoke(worker, messages, None).await
    }

    /// One invocation of `worker`'s handler with `messages`, with `left` until its deadline, or none.
    async fn invoke(
        &self,
        worker: &Worker,
        messages: &[Received],
        left: Option<chrono::Duration>,
    ) -> Result<SqsBatchResponse> {
        let event = sqs_event(messages)?;
        let deadline = left.map(|left| self.clock.now() + left);
        Ok(s3_importer_worker::handle(worker, event, deadline, &request_id("worker")).await)
    }

    /// What Lambda does with the handler's answer: deletes every message not listed as a failure.
    /// Returns the ids of the failed ones.
    pub async fn settle(
        &self,
        messages: &[Received],
        response: &SqsBatchResponse,
    ) -> Result<Vec<String>> {
        let failed: Vec<String> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        for message in messages {
            if !failed.contains(&message.message_id) {
                self.consumer.delete(&message.receipt_handle).await?;
            }
        }
        Ok(failed)
    }

    /// Makes received messages visible again at once, as if their visibility timeout had passed.
    pub async fn expire_visibility(&self, messages: &[Received]) -> Result<()> {
        for message in messages {
            self.consumer
                .set_visibility(&message.receipt_handle, 0)
                .await?;
        }
        Ok(())
    }

    /// Delivers every visible message to the deployment's worker until none is left, as Lambda's event
    /// source mapping would (failed messages stay invisible until their visibility timeout).
    pub async fn drain(&self) -> Result<Drained> {
        self.drain_with(&self.worker).await
    }

    /// [`Deployment::drain`] through another worker (e.g. one with a faulty destination).
    pub async fn drain_with(&self, worker: &Worker) -> Result<Drained> {
        self.drain_invocations(worker, None).await
    }

    /// Delivers `messages` to `worker`'s handler as an invocation with `left` until its deadline.
    pub async fn deliver_with_deadline(
        &self,
        worker: &Worker,
        messages: &[Received],
        left: chrono::Duration,
    ) -> Result<SqsBatchResponse> {
        self.invoke(worker, messages, Some(left)).await
    }

    /// [`Deployment::drain_with`], each batch an invocation with `left` until its deadline (so long files
    /// are imported in pieces when the worker's checkpoint margin leaves little of it).
    pub async fn drain_in_pieces(
        &self,
        worker: &Worker,
        left: chrono::Duration,
    ) -> Result<Drained> {
        self.drain_invocations(worker, Some(left)).await
    }

    /// Receives up to 10 messages at a time and hands them to `worker` as one invocation (with `left` until
    /// its deadline, or none), settling each, until no message is visible.
    async fn drain_invocations(
        &self,
        worker: &Worker,
        left: Option<chrono::Duration>,
    ) -> Result<Drained> {
        let mut drained = Drained::default();
        loop {
            let messages = self.consumer.receive(10, 0).await?;
            if messages.is_empty() {
                return Ok(drained);
            }
            let response = self.invoke(worker, &messages, left).await?;
            let failed = self.settle(&messages, &response).await?;
            drained.delivered += messages.len() as u64;
            drained.acked += (messages.len() - failed.len()) as u64;
            drained.retried.extend(failed);
        }
    }

    /// Sends the connector's rows to normalized JSONL objects in the output bucket under `prefix`.
    pub async fn use_s3_jsonl(&self, prefix: &str) -> Result<()> {
        let mut connector = self.connector_now().await?;
        connector.destination = DestinationConfig::S3Jsonl {
            bucket: self.provisioned.names.output_bucket.clone(),
            prefix: prefix.to_owned(),
        };
        self.state.update_connector(&connector).await?;
        Ok(())
    }

    /// Sends the connector's rows to Parquet objects in the output bucket under `prefix`.
    pub async fn use_s3_parquet(&self, prefix: &str) -> Result<()> {
        let mut connector = self.connector_now().await?;
        connector.destination = DestinationConfig::S3Parquet {
            bucket: self.provisioned.names.output_bucket.clone(),
            prefix: prefix.to_owned(),
        };
        self.state.update_connector(&connector).await?;
        Ok(())
    }

    /// The keys of the output bucket under `prefix`, sorted.
    pub async fn output_keys(&self, prefix: &str) -> Result<Vec<String>> {
        let bucket = &self.provisioned.names.output_bucket;
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let out = s3_client(&self.sdk)
                .list_objects_v2()
                .bucket(bucket)
                .prefix(prefix)
                .set_continuation_token(token)
                .send()
                .await
                .with_context(|| format!("list s3://{bucket}/{prefix}"))?;
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
            match out.next_continuation_token() {
                Some(next) => token = Some(next.to_owned()),
                None => break,
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// The keys of the multipart uploads of the output bucket still open under `prefix`.
    pub async fn open_uploads(&self, prefix: &str) -> Result<Vec<String>> {
        let bucket = &self.provisioned.names.output_bucket;
        let out = s3_client(&self.sdk)
            .list_multipart_uploads()
            .bucket(bucket)
            .prefix(prefix)
            .send()
            .await
            .with_context(|| format!("list the uploads of s3://{bucket}/{prefix}"))?;
        Ok(out
            .uploads()
            .iter()
            .filter_map(|u| u.key().map(str::to_owned))
            .collect())
    }

    /// The `s3://` location of the JSONL output of `incoming/<name>` at `etag` under `prefix`.
    pub fn output_location(&self, prefix: &str, name: &str, etag: &str) -> String {
        format!(
            "s3://{}/{}",
            self.provisioned.names.output_bucket,
            s3_importer_aws::destination::output_key(
                prefix,
                &self.connector.id,
                &Self::key(name),
                etag
            )
        )
    }

    /// The deployment's worker sending through `queue` instead.
    pub fn worker_with_queue(&self, queue: Arc<dyn FileQueue>) -> Worker {
        let mut worker = self.worker.clone();
        worker.deps.queue = queue;
        worker
    }

    /// The deployment's real work queue.
    pub fn real_queue(&self) -> Arc<dyn FileQueue> {
        Arc::new(SqsQueue::new(
            s3_importer_aws::config::sqs_client(&self.sdk),
            self.provisioned.queue_url.clone(),
        ))
    }

    /// `(visible, in flight)` messages on the work queue.
    pub async fn queue_depth(&self) -> Result<(u64, u64)> {
        self.depth(&self.provisioned.queue_url).await
    }

    /// `(visible, in flight)` messages on the dead-letter queue.
    pub async fn dead_letter_depth(&self) -> Result<(u64, u64)> {
        self.depth(&self.provisioned.dead_letter_queue_url).await
    }

    /// `(visible, in flight)` messages on the notification queue.
    pub async fn notification_depth(&self) -> Result<(u64, u64)> {
        self.depth(&self.provisioned.notification_queue_url).await
    }

    async fn depth(&self, queue_url: &str) -> Result<(u64, u64)> {
        let attributes = s3_importer_aws::config::sqs_client(&self.sdk)
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await?
            .attributes
            .unwrap_or_default();
        let count = |name: &QueueAttributeName| -> u64 {
            attributes
                .get(name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok((
            count(&QueueAttributeName::ApproximateNumberOfMessages),
            count(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        ))
    }

    /// The connector as stored now (watermark, last sync).
    pub async fn connector_now(&self) -> Result<Connector> {
        self.state
            .get_connector(&self.connector.id)
            .await?
            .context("the connector is gone")
    }

    /// Every ledger entry, by name in the folder (`incoming/` stripped); a key has one entry per version.
    pub async fn files(&self) -> Result<BTreeMap<String, Vec<LedgerEntry>>> {
        let entries = self.state.list_files(&self.connector.id, None).await?;
        Ok(fixtures::by_name(entries, PREFIX))
    }

    /// Checks that the ledger holds exactly `names`, each once and `imported`.
    pub async fn imported_once(&self, names: &[&str]) -> Result<()> {
        let files = self.files().await?;
        for name in names {
            let entries = files.get(*name).cloned().unwrap_or_default();
            ensure!(
                entries.len() == 1 && entries[0].status == FileStatus::Imported,
                "{name}: {entries:#?}"
            );
        }
        ensure!(
            files.len() == names.len(),
            "unexpected entries: {:?}",
            files.keys()
        );
        Ok(())
    }

    /// The one ledger entry of `name` (an error when it has none or several versions).
    pub async fn file(&self, name: &str) -> Result<LedgerEntry> {
        let mut files = self.files().await?;
        let entries = files.remove(name).unwrap_or_default();
        ensure!(
            entries.len() == 1,
            "{name} has {} ledger entries, not 1: {entries:#?}",
            entries.len()
        );
        entries.into_iter().next().context("checked above")
    }

    /// This connector's items in the records table, by partition key.
    pub async fn records(&self) -> Result<BTreeMap<String, HashMap<String, AttributeValue>>> {
        let client = dynamodb_client(&self.sdk);
        let mut records = BTreeMap::new();
        let mut start = None;
        loop {
            let out = client
                .scan()
                .table_name(&self.provisioned.names.records_table)
                .filter_expression("connector_id = :c")
                .expression_attribute_values(":c", AttributeValue::S(self.connector.id.clone()))
                .set_exclusive_start_key(start)
                .send()
                .await?;
            for item in out.items.unwrap_or_default() {
                let pk = match item.get("pk") {
                    Some(AttributeValue::S(pk)) => pk.clone(),
                    other => bail!("record without a string pk: {other:?}"),
                };
                ensure!(
                    records.insert(pk.clone(), item).is_none(),
                    "pk {pk} scanned twice"
                );
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(records),
            }
        }
    }

    /// The partition key of the row whose `id` is `id`.
    pub fn pk(&self, id: &str) -> String {
        s3_importer_aws::records::record_pk(&self.connector.id, [id])
    }

    /// Reads an object of the output bucket from its `s3://` location.
    pub async fn read_output(&self, location: &str) -> Result<Vec<u8>> {
        let body = self.open_output(location).await?;
        Ok(body.collect().await?.into_bytes().to_vec())
    }

    /// Opens an object of the output bucket from its `s3://` location: its body, as a stream.
    pub async fn open_output(&self, location: &str) -> Result<ByteStream> {
        let (bucket, key) = bucket_and_key(location)?;
        let out = s3_client(&self.sdk)
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .with_context(|| format!("get {location}"))?;
        Ok(out.body)
    }

    /// The deployment's real destination (records table, S3 error reports).
    pub fn real_destination(&self) -> Arc<dyn Destination> {
        self.real_destination_in_parts(s3_importer_aws::s3_writer::PART_SIZE)
    }

    /// The real destination staging its S3 outputs in multipart parts of `part_bytes`; PostgreSQL
    /// connectors are routed as in the worker.
    pub fn real_destination_in_parts(&self, part_bytes: usize) -> Arc<dyn Destination> {
        Arc::new(Destinations::new(
            Arc::new(
                AwsDestination::new(
                    s3_importer_aws::s3_client(&self.sdk),
                    dynamodb_client(&self.sdk),
                    self.provisioned.names.output_bucket.clone(),
                )
                .with_part_size(part_bytes),
            ),
            Secrets::new(s3_importer_aws::config::secretsmanager_client(&self.sdk)),
        ))
    }

    /// Sends the connector's rows to the PostgreSQL table `table` of the server at `url` (a
    /// `postgres://…?sslmode=disable` URL), through a Secrets Manager secret in the RDS format on the
    /// emulator, as a deployment reaches RDS. Returns the secret's name.
    pub async fn use_postgres(&self, url: &str, table: &str) -> Result<String> {
        let secret_id = format!("s3-importer/{}/db", self.connector.id);
        crate::postgres::create_rds_secret(&self.sdk, &secret_id, url).await?;
        let mut connector = self.connector_now().await?;
        connector.destination = DestinationConfig::Postgres {
            table: table.to_owned(),
            connection: PostgresConnection::Secret {
                secret_id: secret_id.clone(),
            },
        };
        self.state.update_connector(&connector).await?;
        Ok(secret_id)
    }

    /// Sends the connector's rows to the webhook at `url` (private targets allowed: the tests' receiver is on
    /// loopback), signed with `signing_secret` stored in a Secrets Manager secret on the emulator, with
    /// batches of `batch_rows` and a 1-second request timeout. Returns the secret's name.
    pub async fn use_webhook(
        &self,
        url: &str,
        signing_secret: &str,
        batch_rows: u32,
    ) -> Result<String> {
        let secret_id = format!("s3-importer/{}/webhook", self.connector.id);
        aws_sdk_secretsmanager::Client::new(&self.sdk)
            .create_secret()
            .name(&secret_id)
            .secret_string(signing_secret)
            .send()
            .await
            .with_context(|| format!("create secret {secret_id}"))?;
        let mut connector = self.connector_now().await?;
        connector.destination = DestinationConfig::Webhook(WebhookConfig {
            url: url.to_owned(),
            secret: WebhookSecret::Secret {
                secret_id: secret_id.clone(),
            },
            allow_private: true,
            rate_per_second: Some(1000),
            concurrency: Some(4),
            batch_rows: Some(batch_rows),
            batch_bytes: None,
            timeout_seconds: Some(1),
            on_reject: WebhookOnReject::Report,
        });
        self.state.update_connector(&connector).await?;
        Ok(secret_id)
    }

    /// Sends the connector's rows to Stripe as `object` objects through the API at `base_url` (a server on
    /// loopback), with the API key `key` stored in a Secrets Manager secret on the emulator, at `rate`
    /// requests per second. Returns the secret's name.
    pub async fn use_stripe(
        &self,
        object: StripeObject,
        base_url: &str,
        key: &str,
        rate: u32,
    ) -> Result<String> {
        let secret_id = format!("s3-importer/{}/stripe", self.connector.id);
        aws_sdk_secretsmanager::Client::new(&self.sdk)
            .create_secret()
            .name(&secret_id)
            .secret_string(key)
            .send()
            .await
            .with_context(|| format!("create secret {secret_id}"))?;
        let mut connector = self.connector_now().await?;
        connector.destination = DestinationConfig::Stripe(StripeConfig {
            object,
            key: WebhookSecret::Secret {
                secret_id: secret_id.clone(),
            },
            base_url: Some(base_url.to_owned()),
            rate_per_second: Some(rate),
            workers: None,
            concurrency: Some(4),
            timeout_seconds: Some(5),
        });
        self.state.update_connector(&connector).await?;
        Ok(secret_id)
    }

    /// The deployment's worker writing through `destination` instead.
    pub fn worker_with(&self, destination: Arc<dyn Destination>) -> Worker {
        let mut worker = self.worker.clone();
        worker.deps.destination = destination;
        worker
    }
}

/// One invocation of `lister`'s handler for the connector `name` (as `connector sync` sends it) with
/// `request_id`; the pass's sync run (an error when the lister answered for another number of connectors, or
/// did not run this one).
pub async fn sync_connector(lister: &Lister, name: &str, request_id: &str) -> Result<SyncRun> {
    let response =
        s3_importer_lister::handle(lister, json!({ "connector": name }), request_id).await?;
    let [result] = response.connectors.as_slice() else {
        bail!(
            "the lister answered for {} connectors, not 1",
            response.connectors.len()
        );
    };
    let run = result
        .run
        .clone()
        .with_context(|| format!("the lister did not run {name}: {}", result.outcome))?;
    Ok(run)
}

/// The bucket and key of an `s3://bucket/key` location.
pub fn bucket_and_key(location: &str) -> Result<(&str, &str)> {
    location
        .strip_prefix("s3://")
        .with_context(|| format!("{location} is not an s3:// location"))?
        .split_once('/')
        .with_context(|| format!("{location} has no key"))
}

/// A new active connector `id`/`name` reading `prefix` of the emulator account's `bucket` with the latest
/// version of `template_id`, writing to the DynamoDB table `records_table`, created `now`: the connector of a
/// [`Deployment`] and of the deployed stack's test.
pub fn dynamodb_connector(
    id: String,
    name: String,
    bucket: &str,
    prefix: &str,
    template_id: &str,
    records_table: &str,
    now: DateTime<Utc>,
) -> Connector {
    Connector {
        id,
        name,
        status: ConnectorStatus::Active,
        source: Source {
            account_id: ACCOUNT_ID.to_owned(),
            bucket: bucket.to_owned(),
            region: REGION.to_owned(),
            prefix: Some(prefix.to_owned()),
            role_arn: None,
            external_id: None,
            versions: false,
        },
        template_id: template_id.to_owned(),
        template_version: None,
        destination: DestinationConfig::Dynamodb {
            table: records_table.to_owned(),
        },
        created_at: now,
        updated_at: now,
        watermark: None,
        last_sync: None,
        discovery: Default::default(),
        reconcile: None,
    }
}

/// The event Lambda's SQS event source mapping delivers for these messages (the same JSON shape).
pub fn sqs_event(messages: &[Received]) -> Result<SqsEvent> {
    let arn = format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:work");
    s3_importer_worker::sqs_event(messages, Some(&arn)).context("build the SQS event")
}
