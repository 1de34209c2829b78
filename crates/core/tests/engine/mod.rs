//! The fast engine tier's world: the lister and the worker — their real functions, `lister::sync_connector`
//! and `worker::process_message` — on the in-memory adapters, with a clock the test moves. No emulator, no
//! network: each scenario runs in milliseconds.
//!
//! [`World`] plays the parts AWS plays around the engine: it keeps the messages the lister and the worker
//! send as SQS would (a receive makes a message invisible and counts the receive; an acked message is
//! deleted; a retried one stays invisible until [`World::expire_visibility`]; a message received
//! `max_receive_count` times goes to the dead-letter queue on the next receive), and it delivers them to the
//! worker as the handler does (one owner per attempt). Faults are wrappers around the port traits
//! ([`FaultyDestination`], [`FaultyQueue`], shared with the emulator suites in `sync::contract::fixtures`,
//! and [`FaultySource`]), so the adapters themselves stay untouched.

// Each test binary (engine_lister, engine_worker, engine_pieces) uses a part of the harness.
#![allow(dead_code)]

mod faults;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Duration, Utc};
use s3_importer_core::sink::ErrorReportEntry;
use s3_importer_core::sync::lister::{self, ListerDeps, ListerSettings, SyncOutcome};
use s3_importer_core::sync::memory::{
    MemoryDestination, MemoryObject, MemoryObjectSource, MemoryQueue, MemoryStateStore, StoredRow,
};
use s3_importer_core::sync::ports::{
    ConnectorStore, DeadLetter, DeadLetterQueue, Destination, FileLedger, FileQueue, ObjectSource,
    QueueError, TemplateStore,
};
use s3_importer_core::sync::worker::{
    self, Delivery, Disposition, MessageResult, WorkerDeps, WorkerSettings,
};
use s3_importer_core::sync::{
    Clock, Connector, ConnectorStatus, DestinationConfig, FileMessage, FileStatus, FixedClock,
    LedgerEntry, Source, SyncRun,
};
use s3_importer_core::template::Template;

#[allow(unused_imports)] // not every test binary injects faults
pub use faults::{FaultySource, SourceFault};
#[allow(unused_imports)] // not every test binary uses every fixture
pub use s3_importer_core::sync::contract::fixtures::{
    self, csv, piece_time, Fault, FaultyDestination, FaultyQueue, QueueFault, TEMPLATE,
};

/// What every scenario returns.
pub type Result<T = (), E = Box<dyn std::error::Error + Send + Sync>> = std::result::Result<T, E>;

/// An error with this message.
pub fn fail(message: impl Into<String>) -> Box<dyn std::error::Error + Send + Sync> {
    message.into().into()
}

/// The account that owns the source bucket.
pub const ACCOUNT_ID: &str = "111111111111";
/// The source bucket.
pub const BUCKET: &str = "engine-source";
/// The folder (key prefix) the connector reads.
pub const PREFIX: &str = "incoming/";

/// A worker: the dependencies and settings `process_message` is called with.
#[derive(Clone)]
pub struct Worker {
    /// Ports.
    pub deps: WorkerDeps,
    /// Settings.
    pub settings: WorkerSettings,
}

/// A message as a worker receives it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The queue's id for it.
    pub id: String,
    /// The body.
    pub body: String,
    /// How many times it was received, this time included (SQS's ApproximateReceiveCount).
    pub receive_count: u32,
    /// The body, parsed.
    pub message: FileMessage,
}

/// What one drain did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drained {
    /// Messages handed to the worker.
    pub delivered: u64,
    /// Messages acked (deleted).
    pub acked: u64,
    /// Ids of the messages retried (left on the queue, invisible).
    pub retried: Vec<String>,
}

#[derive(Debug)]
struct Queued {
    id: String,
    body: String,
    receive_count: u32,
    visible: bool,
}

#[derive(Debug, Default)]
struct Sqs {
    next_id: u64,
    messages: Vec<Queued>,
    dead: Vec<Queued>,
}

static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// A request id unique in this process, as Lambda gives each invocation.
pub fn request_id(what: &str) -> String {
    format!("{what}-{}", REQUESTS.fetch_add(1, Ordering::Relaxed))
}

/// One connector over one source bucket, on the in-memory adapters.
pub struct World {
    /// The state table.
    pub state: Arc<MemoryStateStore>,
    /// The source bucket.
    pub s3: Arc<MemoryObjectSource>,
    /// The work queue as the lister and the worker send to it (the world moves what they send into its SQS).
    pub queue: Arc<MemoryQueue>,
    /// The destination (rows by primary key, error reports by file version).
    pub destination: MemoryDestination,
    /// The clock every part reads.
    pub clock: Arc<FixedClock>,
    /// The connector, as created.
    pub connector: Connector,
    /// The lister's ports.
    pub lister: ListerDeps,
    /// The lister's settings.
    pub lister_settings: ListerSettings,
    /// The default worker.
    pub worker: Worker,
    /// Receives before a message moves to the dead-letter queue.
    pub max_receive_count: u32,
    sqs: Mutex<Sqs>,
}

impl World {
    /// A world with the default template and settings.
    pub async fn new() -> Result<Self> {
        Self::with_template(TEMPLATE).await
    }

    /// A world whose connector uses `template` (TOML).
    pub async fn with_template(template: &str) -> Result<Self> {
        let state = Arc::new(MemoryStateStore::new());
        let s3 = Arc::new(MemoryObjectSource::new());
        s3.create_bucket(BUCKET, ACCOUNT_ID);
        let queue = Arc::new(MemoryQueue::new());
        let destination = MemoryDestination::new();
        let clock = Arc::new(FixedClock::new());
        let parsed = Template::from_toml(template).map_err(|e| fail(e.to_string()))?;
        state
            .put_template(&parsed.name, template, &parsed, clock.now())
            .await?;
        let now = clock.now();
        let connector = Connector {
            id: "c-engine".into(),
            name: "engine-connector".into(),
            status: ConnectorStatus::Active,
            source: Source {
                account_id: ACCOUNT_ID.into(),
                bucket: BUCKET.into(),
                region: "us-east-1".into(),
                prefix: Some(PREFIX.into()),
                role_arn: None,
                external_id: None,
                versions: false,
            },
            template_id: parsed.name.clone(),
            template_version: None,
            destination: DestinationConfig::Dynamodb {
                table: "records".into(),
            },
            created_at: now,
            updated_at: now,
            watermark: None,
            last_sync: None,
            discovery: Default::default(),
            reconcile: None,
        };
        state.create_connector(&connector).await?;
        let as_clock: Arc<dyn Clock> = clock.clone();
        let lister = ListerDeps::new(state.clone(), s3.clone(), queue.clone(), as_clock.clone());
        let worker = Worker {
            deps: WorkerDeps::new(
                state.clone(),
                s3.clone(),
                Arc::new(destination.clone()),
                queue.clone(),
                as_clock,
            ),
            settings: WorkerSettings::default(),
        };
        Ok(Self {
            state,
            s3,
            queue,
            destination,
            clock,
            connector,
            lister,
            lister_settings: ListerSettings {
                owner: "lister-engine".into(),
                ..ListerSettings::default()
            },
            worker,
            max_receive_count: 5,
            sqs: Mutex::new(Sqs::default()),
        })
    }

    // -----------------------------------------------------------------------------------------------------
    // The source bucket
    // -----------------------------------------------------------------------------------------------------

    /// The full key of `name` in the connector's folder.
    pub fn key(name: &str) -> String {
        format!("{PREFIX}{name}")
    }

    /// Writes `incoming/<name>` now; returns its ETag.
    pub fn put(&self, name: &str, body: &[u8]) -> String {
        self.put_at(name, body, self.clock.now())
    }

    /// Writes `incoming/<name>` with this LastModified; returns its ETag.
    pub fn put_at(&self, name: &str, body: &[u8], last_modified: DateTime<Utc>) -> String {
        self.s3.put(BUCKET, &Self::key(name), body, last_modified)
    }

    /// Writes `key` (a full key, inside the folder or not) with every attribute given; returns its ETag.
    pub fn put_object(&self, key: &str, object: MemoryObject) -> String {
        self.s3.put_object(BUCKET, key, object)
    }

    /// Deletes `incoming/<name>`.
    pub fn delete(&self, name: &str) -> bool {
        self.s3.delete(BUCKET, &Self::key(name))
    }

    /// LastModified of `incoming/<name>`, as the lister lists it.
    pub fn last_modified(&self, name: &str) -> Result<DateTime<Utc>> {
        self.s3
            .get(BUCKET, &Self::key(name))
            .map(|o| o.last_modified)
            .ok_or_else(|| fail(format!("{name} is not in the bucket")))
    }

    // -----------------------------------------------------------------------------------------------------
    // The lister
    // -----------------------------------------------------------------------------------------------------

    /// One lister pass over the connector as stored now; its sync run.
    pub async fn sync(&self) -> Result<SyncRun> {
        self.sync_with(&self.lister, &self.lister_settings).await
    }

    /// One pass with other ports or settings.
    pub async fn sync_with(&self, deps: &ListerDeps, settings: &ListerSettings) -> Result<SyncRun> {
        let connector = self.connector_now().await?;
        match lister::sync_connector(deps, settings, &connector).await {
            SyncOutcome::Ran(run) => Ok(run),
            other => Err(fail(format!("the pass did not run: {other:?}"))),
        }
    }

    /// The connector as stored now (status, watermark, last sync).
    pub async fn connector_now(&self) -> Result<Connector> {
        self.state
            .get_connector(&self.connector.id)
            .await?
            .ok_or_else(|| fail("the connector is gone"))
    }

    // -----------------------------------------------------------------------------------------------------
    // The queue, as SQS keeps it
    // -----------------------------------------------------------------------------------------------------

    fn sqs(&self) -> MutexGuard<'_, Sqs> {
        self.sqs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Moves what was sent to the memory queue onto the simulated SQS queue.
    fn collect_sent(&self, sqs: &mut Sqs) -> Result<()> {
        for message in self.queue.drain() {
            sqs.next_id += 1;
            sqs.messages.push(Queued {
                id: format!("m-{}", sqs.next_id),
                body: serde_json::to_string(&message)?,
                receive_count: 0,
                visible: true,
            });
        }
        Ok(())
    }

    /// Receives up to `max` visible messages; they become invisible. A message already received
    /// `max_receive_count` times moves to the dead-letter queue instead (SQS's redrive policy).
    pub fn receive_up_to(&self, max: usize) -> Result<Vec<Received>> {
        let mut sqs = self.sqs();
        self.collect_sent(&mut sqs)?;
        let max_receives = self.max_receive_count;
        let (dead, alive): (Vec<Queued>, Vec<Queued>) = std::mem::take(&mut sqs.messages)
            .into_iter()
            .partition(|m| m.visible && m.receive_count >= max_receives);
        sqs.messages = alive;
        sqs.dead.extend(dead);
        let mut out = Vec::new();
        for m in sqs.messages.iter_mut().filter(|m| m.visible).take(max) {
            m.visible = false;
            m.receive_count += 1;
            out.push(Received {
                id: m.id.clone(),
                body: m.body.clone(),
                receive_count: m.receive_count,
                message: serde_json::from_str(&m.body)?,
            });
        }
        Ok(out)
    }

    /// Receives every visible message.
    pub fn receive(&self) -> Result<Vec<Received>> {
        self.receive_up_to(usize::MAX)
    }

    /// Sends a copy of `message` (at-least-once delivery: the same body twice).
    pub fn send_copy(&self, message: &Received) {
        let mut sqs = self.sqs();
        sqs.next_id += 1;
        let id = format!("m-{}", sqs.next_id);
        sqs.messages.push(Queued {
            id,
            body: message.body.clone(),
            receive_count: 0,
            visible: true,
        });
    }

    /// Makes `messages` visible again, as if their visibility timeout had passed.
    pub fn expire_visibility(&self, messages: &[Received]) {
        let mut sqs = self.sqs();
        for m in sqs
            .messages
            .iter_mut()
            .filter(|m| messages.iter().any(|r| r.id == m.id))
        {
            m.visible = true;
        }
    }

    /// `(visible, in flight)` messages on the work queue.
    pub fn queue_depth(&self) -> Result<(usize, usize)> {
        let mut sqs = self.sqs();
        self.collect_sent(&mut sqs)?;
        let visible = sqs.messages.iter().filter(|m| m.visible).count();
        Ok((visible, sqs.messages.len() - visible))
    }

    /// Messages on the dead-letter queue.
    pub fn dead_letter_depth(&self) -> usize {
        self.sqs().dead.len()
    }

    /// Makes the dead-letter queue's received messages visible again (their visibility timeout passed).
    pub fn expire_dead_letters(&self) {
        for m in &mut self.sqs().dead {
            m.visible = true;
        }
    }

    /// The dead-letter queue as the lister's sweep reads it: a received message is hidden until deleted.
    pub fn dead_letters(&self) -> DeadLetters<'_> {
        DeadLetters(self)
    }

    // -----------------------------------------------------------------------------------------------------
    // The worker, as the handler calls it
    // -----------------------------------------------------------------------------------------------------

    /// The default worker with another destination.
    pub fn worker_with(&self, destination: Arc<dyn Destination>) -> Worker {
        let mut worker = self.worker.clone();
        worker.deps.destination = destination;
        worker
    }

    /// The default worker sending through another queue.
    pub fn worker_with_queue(&self, queue: Arc<dyn FileQueue>) -> Worker {
        let mut worker = self.worker.clone();
        worker.deps.queue = queue;
        worker
    }

    /// The default worker reading through another source.
    pub fn worker_with_source(&self, source: Arc<dyn ObjectSource>) -> Worker {
        let mut worker = self.worker.clone();
        worker.deps.source = source;
        worker
    }

    /// One message through `process_message`, as the handler hands it over: the owner names this attempt.
    pub async fn process(
        &self,
        worker: &Worker,
        message: &Received,
        deadline: Option<DateTime<Utc>>,
    ) -> MessageResult {
        let owner = format!(
            "{}/{}/{}",
            request_id("worker"),
            message.id,
            message.receive_count
        );
        let delivery = Delivery {
            owner: &owner,
            deadline,
            receipt_handle: Some(&message.id),
        };
        worker::process_message(&worker.deps, &worker.settings, &message.body, delivery).await
    }

    /// Hands `messages` to `worker` one after another (an invocation with `left` until its deadline, or
    /// none); the ids of those to retry.
    pub async fn deliver(
        &self,
        worker: &Worker,
        messages: &[Received],
        left: Option<Duration>,
    ) -> Vec<String> {
        let deadline = left.map(|left| self.clock.now() + left);
        let mut retried = Vec::new();
        for message in messages {
            let result = self.process(worker, message, deadline).await;
            if result.disposition == Disposition::Retry {
                retried.push(message.id.clone());
            }
        }
        retried
    }

    /// What Lambda does with the answer: deletes every message not to retry.
    pub fn settle(&self, messages: &[Received], retried: &[String]) {
        let acked: Vec<&str> = messages
            .iter()
            .filter(|m| !retried.contains(&m.id))
            .map(|m| m.id.as_str())
            .collect();
        self.sqs()
            .messages
            .retain(|m| !acked.contains(&m.id.as_str()));
    }

    /// Hands `messages` to `worker` and kills it (drops its future: no ack, no ledger write after that point)
    /// once `point` resolves, e.g. [`FaultyDestination::held`] or [`FaultyQueue::hung`]. An error if the
    /// worker finished first.
    pub async fn kill_when(
        &self,
        worker: &Worker,
        messages: &[Received],
        left: Option<Duration>,
        point: impl std::future::Future<Output = ()>,
    ) -> Result {
        tokio::select! {
            retried = self.deliver(worker, messages, left) => Err(fail(format!(
                "the worker finished (retrying {retried:?}) instead of being killed"
            ))),
            () = point => Ok(()),
        }
    }

    /// Delivers and settles.
    pub async fn deliver_and_settle(
        &self,
        worker: &Worker,
        messages: &[Received],
        left: Option<Duration>,
    ) -> Vec<String> {
        let retried = self.deliver(worker, messages, left).await;
        self.settle(messages, &retried);
        retried
    }

    /// Delivers every visible message to the default worker, 10 at a time, until none is left (retried
    /// messages stay invisible).
    pub async fn drain(&self) -> Result<Drained> {
        self.drain_with(&self.worker, None).await
    }

    /// [`World::drain`] through `worker`, each batch an invocation with `left` until its deadline, or none.
    pub async fn drain_with(&self, worker: &Worker, left: Option<Duration>) -> Result<Drained> {
        let mut drained = Drained::default();
        loop {
            let messages = self.receive_up_to(10)?;
            if messages.is_empty() {
                return Ok(drained);
            }
            let retried = self.deliver_and_settle(worker, &messages, left).await;
            drained.delivered += messages.len() as u64;
            drained.acked += (messages.len() - retried.len()) as u64;
            drained.retried.extend(retried);
        }
    }

    // -----------------------------------------------------------------------------------------------------
    // The ledger and the destination
    // -----------------------------------------------------------------------------------------------------

    /// Every ledger entry, by name in the folder; a key has one entry per version.
    pub async fn files(&self) -> Result<BTreeMap<String, Vec<LedgerEntry>>> {
        let entries = self.state.list_files(&self.connector.id, None).await?;
        Ok(fixtures::by_name(entries, PREFIX))
    }

    /// The `(etag, status)` of every version of `name` in the ledger.
    pub async fn versions(&self, name: &str) -> Result<BTreeSet<(String, FileStatus)>> {
        let files = self.files().await?;
        Ok(files
            .get(name)
            .into_iter()
            .flatten()
            .map(|e| (e.version.etag.clone(), e.status))
            .collect())
    }

    /// The one ledger entry of `name`.
    pub async fn file(&self, name: &str) -> Result<LedgerEntry> {
        let mut entries = self.files().await?.remove(name).unwrap_or_default();
        if entries.len() != 1 {
            return Err(fail(format!(
                "{name} has {} ledger entries, not 1: {entries:#?}",
                entries.len()
            )));
        }
        entries.pop().ok_or_else(|| fail("checked above"))
    }

    /// The connector's rows, by the `id` of each.
    pub fn records(&self) -> Result<BTreeMap<String, StoredRow>> {
        let mut out = BTreeMap::new();
        for (_, row) in self.destination.rows(&self.connector.id) {
            let value: serde_json::Value = serde_json::from_str(&row.row)?;
            let id = value["id"]
                .as_str()
                .ok_or_else(|| fail(format!("a row without an id: {}", row.row)))?
                .to_owned();
            out.insert(id, row);
        }
        Ok(out)
    }

    /// The `id`s of the rows, sorted.
    pub fn ids(&self) -> Result<Vec<String>> {
        Ok(self.records()?.into_keys().collect())
    }

    /// The error report of `name`'s one version (`None` when it has none).
    pub async fn report(&self, name: &str) -> Result<Option<Vec<ErrorReportEntry>>> {
        let entry = self.file(name).await?;
        Ok(entry
            .error_report
            .as_deref()
            .and_then(|location| self.destination.report(location)))
    }
}

/// The rows of two worlds compared as a one-pass import and another: everything but the upload time.
pub fn comparable(
    records: &BTreeMap<String, StoredRow>,
) -> BTreeMap<String, (String, String, u64)> {
    records
        .iter()
        .map(|(id, r)| (id.clone(), (r.row.clone(), r.source_key.clone(), r.record)))
        .collect()
}

/// `n` rows `<prefix>-001,1` ...
pub fn numbered(prefix: &str, n: usize) -> Vec<(String, i64)> {
    (1..=n)
        .map(|i| (format!("{prefix}-{i:03}"), i as i64))
        .collect()
}

/// [`csv`] of owned rows.
pub fn csv_owned(rows: &[(String, i64)]) -> Vec<u8> {
    let borrowed: Vec<(&str, i64)> = rows.iter().map(|(id, q)| (id.as_str(), *q)).collect();
    csv(&borrowed)
}

/// A worker whose every piece writes about one batch of `batch_rows` and stops
/// ([`fixtures::piecewise`]).
pub fn piecewise(world: &World, batch_rows: usize) -> Worker {
    let mut worker = world.worker.clone();
    worker.settings = fixtures::piecewise(&worker.settings, batch_rows);
    worker
}

/// The one message of `messages` (an error if there are more or none).
pub fn one(messages: Vec<Received>) -> Result<Received> {
    match <[Received; 1]>::try_from(messages) {
        Ok([m]) => Ok(m),
        Err(all) => Err(fail(format!("{} messages, not 1: {all:#?}", all.len()))),
    }
}

/// [`World::dead_letters`].
pub struct DeadLetters<'a>(&'a World);

#[async_trait::async_trait]
impl DeadLetterQueue for DeadLetters<'_> {
    async fn receive(&self, max: usize) -> std::result::Result<Vec<DeadLetter>, QueueError> {
        let mut sqs = self.0.sqs();
        Ok(sqs
            .dead
            .iter_mut()
            .filter(|m| m.visible)
            .take(max)
            .map(|m| {
                m.visible = false;
                DeadLetter {
                    receipt_handle: m.id.clone(),
                    body: m.body.clone(),
                }
            })
            .collect())
    }

    async fn delete(&self, receipt_handle: &str) -> std::result::Result<(), QueueError> {
        self.0.sqs().dead.retain(|m| m.id != receipt_handle);
        Ok(())
    }
}
