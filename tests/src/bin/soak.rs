//! `make soak`: the importer on the emulator for a bounded time under everything at once, then an independent
//! count of what arrived.
//!
//! Four connectors read two buckets: a versioned one (each connector created with `versions`: every version is
//! a file) and a plain one, each in `poll` and in `events` discovery, all writing JSON Lines to the output
//! bucket. While a writer puts `SOAK_FILES` file versions of every format (CSV, TSV, JSON Lines, JSON, gzip
//! CSV) — new keys, overwrites and deletes — the driver runs the lister's schedule, the notification handler
//! (some notifications dropped, some delivered twice) and worker invocations (some killed at a random moment:
//! their future dropped, their messages left to reappear after the visibility timeout), every AWS call of the
//! importer's own clients going through injected faults (throttling, 5xx, connection resets before a request
//! and after the service applied it, latency). When the writer is done, the clock moves a day ahead (the
//! reconciliations are due, leases expire) and the driver runs until nothing is left to do.
//!
//! The check reads the sources and the destination with the SDK alone: rows expected are those of every
//! version in the versioned bucket and of every current object in the plain one (rows of a plain-bucket version
//! overwritten or deleted before it was read may be there or not); imported are the distinct ids found in
//! the output; duplicated the ids found more than once. One line per connector:
//! `soak connector=… bucket=versioned|plain discovery=… versions=… rows_expected=… rows_imported=… missing=…
//! duplicated=… unexpected=… failed_files=…`, then the fault counts. Exit status 1 when a row is missing,
//! duplicated or unexpected.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{Event, NotificationConfiguration, QueueConfiguration};
use s3_importer_aws::consumer::{Received, SqsConsumer};
use s3_importer_core::sync::ports::{ConnectorStore, FileLedger};
use s3_importer_core::sync::{Clock, Connector, DestinationConfig, Discovery, FileStatus};
use s3_importer_lister::Lister;
use s3_importer_tests::deployment::{request_id, sqs_event, Deployment, Options};
use s3_importer_tests::faults::{faulty, FaultCounts, FaultRates, Rng};
use s3_importer_tests::versions::created_notification;
use s3_importer_tests::{create_bucket, s3_client};
use s3_importer_worker::Worker;
use serde_json::json;

/// The file kinds written, by extension.
const EXTENSIONS: [&str; 5] = ["csv", "tsv", "jsonl", "json", "csv.gz"];

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One connector of the soak.
struct Soaked {
    connector: Connector,
    bucket: String,
    versioned: bool,
}

/// What the driver did, counted.
#[derive(Default)]
struct Driven {
    scheduled_runs: AtomicU64,
    notifications: AtomicU64,
    dropped: AtomicU64,
    duplicated: AtomicU64,
    invocations: AtomicU64,
    killed: AtomicU64,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
        )
        .with_writer(std::io::stderr)
        .init();
    let seconds: u64 = env_or("SOAK_SECONDS", 300);
    let files: u64 = env_or("SOAK_FILES", 2000);
    let settle_seconds: u64 = env_or("SOAK_SETTLE_SECONDS", 900);
    let seed: u64 = env_or("SOAK_SEED", 7);
    let rate: f64 = env_or("SOAK_FAULT_RATE", 0.01);
    let kill_rate: f64 = env_or("SOAK_KILL_RATE", 0.1);
    let event_fault_rate: f64 = env_or("SOAK_EVENT_FAULT_RATE", 0.05);
    let pollers: usize = env_or("SOAK_POLLERS", 3);
    let started = Instant::now();

    // Lambda's proportions, shortened: a 40-second invocation (the worker starts no message with under 20 s
    // left) whose checkpoint margin is 5 seconds holds its lease a minute longer (100 s), and the queue's
    // visibility timeout outlasts that.
    let d = Deployment::with(Options {
        visibility_timeout: 120,
        ..Options::default()
    })
    .await?;
    d.enable_versioning().await?;
    let plain_bucket = format!("{}-plain", d.source_bucket);
    create_bucket(&d.sdk, &plain_bucket).await?;
    // The plain bucket's notifications are moto's own; the versioned bucket's are sent by the writer as AWS
    // sends them (moto's carry no `versionId`).
    route_direct(&d, &plain_bucket).await?;

    // The connectors, all to JSON Lines in the output bucket; the deployment's own one is paused.
    let mut paused = d.connector_now().await?;
    paused.status = s3_importer_core::sync::ConnectorStatus::Paused;
    d.state.update_connector(&paused).await?;
    let mut soaked = Vec::new();
    for (name, bucket, versioned, discovery) in [
        ("poll-v", d.source_bucket.clone(), true, Discovery::Poll),
        ("events-v", d.source_bucket.clone(), true, Discovery::Events),
        ("poll-p", plain_bucket.clone(), false, Discovery::Poll),
        ("events-p", plain_bucket.clone(), false, Discovery::Events),
    ] {
        let mut c = d.connector.clone();
        c.id = format!("{}-{name}", d.connector.id);
        c.name = format!("soak-{name}");
        c.status = s3_importer_core::sync::ConnectorStatus::Active;
        c.source.bucket = bucket.clone();
        c.source.prefix = Some(format!("{name}/"));
        c.source.versions = versioned;
        c.discovery = discovery;
        c.destination = DestinationConfig::S3Jsonl {
            bucket: d.provisioned.names.output_bucket.clone(),
            prefix: "soak".into(),
        };
        d.state.create_connector(&c).await?;
        soaked.push(Soaked {
            connector: c,
            bucket,
            versioned,
        });
    }

    // The importer's clients under faults; the writer's and the check's without.
    let rng = Arc::new(Rng::new(seed));
    let counts = Arc::new(FaultCounts::default());
    let rates = FaultRates {
        throttle: rate,
        server_error: rate,
        reset_before: rate,
        reset_after: rate,
        latency: rate * 5.0,
        max_latency: Duration::from_millis(300),
    };
    let sdk = faulty(&d.sdk, rates, rng.clone(), counts.clone());
    let clock: Arc<dyn Clock> = d.clock.clone();
    let lister = Lister::from_config(&d.config, &sdk, clock.clone());
    let mut worker = Worker::from_config(&d.config, &sdk, clock);
    worker.settings.checkpoint_margin = chrono::Duration::seconds(5);

    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let s3 = s3_client(&d.sdk);
        let notifications = Notifications {
            sqs: s3_importer_aws::config::sqs_client(&d.sdk),
            queue_url: d.provisioned.notification_queue_url.clone(),
            versioned_bucket: d.source_bucket.clone(),
        };
        let targets: Vec<(String, String)> = soaked
            .iter()
            .map(|s| {
                (
                    s.bucket.clone(),
                    s.connector.source.prefix.clone().unwrap_or_default(),
                )
            })
            .collect();
        let writing = writing.clone();
        let rng = Arc::new(Rng::new(seed ^ 0x5eed));
        tokio::spawn(async move {
            let over = Duration::from_secs(seconds);
            let result = write(&s3, &notifications, &targets, files, over, &rng).await;
            writing.store(false, Ordering::SeqCst);
            result
        })
    };

    let driven = Driven::default();
    let notifications = d.notification_consumer();
    let work = SqsConsumer::new(
        s3_importer_aws::config::sqs_client(&d.sdk),
        d.provisioned.queue_url.clone(),
    );
    let driver = Driver {
        d: &d,
        lister: &lister,
        worker: &worker,
        notifications: &notifications,
        work: &work,
        rng: &rng,
        driven: &driven,
        kill_rate,
    };
    let stop = AtomicBool::new(false);
    let ids: Vec<String> = soaked.iter().map(|s| s.connector.id.clone()).collect();
    // The schedule and the notifications in one loop; the work queue polled by `SOAK_POLLERS` (3) loops, as
    // Lambda's event source mapping polls with several pollers.
    let control = async {
        let mut last_schedule = Instant::now() - Duration::from_secs(60);
        while writing.load(Ordering::SeqCst) {
            driver.control(&mut last_schedule, event_fault_rate).await;
        }
        let written = writer.await.context("the writer panicked")??;
        eprintln!(
            "soak: {} versions written in {:.0} s; settling",
            written.versions,
            started.elapsed().as_secs_f64()
        );
        // A day later: every reconciliation is due and every lease of a killed worker has ended.
        d.clock.advance(chrono::Duration::hours(25));
        let settle_until = Instant::now() + Duration::from_secs(settle_seconds);
        let runs_before = driven.scheduled_runs.load(Ordering::Relaxed);
        loop {
            driver.control(&mut last_schedule, 0.0).await;
            // Quiet, after two scheduled runs on the new day (their reconciliations included).
            let runs = driven.scheduled_runs.load(Ordering::Relaxed) - runs_before;
            if (runs >= 2 && quiet(&d, &ids).await?) || Instant::now() > settle_until {
                break;
            }
        }
        stop.store(true, Ordering::SeqCst);
        eprintln!(
            "soak: settled after {:.0} s",
            started.elapsed().as_secs_f64()
        );
        anyhow::Ok(written)
    };
    let pollers = futures::future::join_all((0..pollers).map(|_| async {
        while !stop.load(Ordering::SeqCst) {
            driver.work().await;
        }
    }));
    let (written, _) = tokio::join!(control, pollers);
    let written = written?;

    let mut bad = false;
    for (s, ids) in soaked.iter().zip(&written.ids) {
        let line = check(&d, s, ids).await?;
        bad |= line.missing > 0 || line.duplicated > 0 || line.unexpected > 0;
        println!("{}", line.render(s));
    }
    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
    println!(
        "soak seconds={:.0} versions_written={} scheduled_runs={} notifications={} events_dropped={} \
         events_duplicated={} worker_invocations={} workers_killed={} {}",
        started.elapsed().as_secs_f64(),
        written.versions,
        n(&driven.scheduled_runs),
        n(&driven.notifications),
        n(&driven.dropped),
        n(&driven.duplicated),
        n(&driven.invocations),
        n(&driven.killed),
        counts.summary()
    );
    if bad {
        std::process::exit(1);
    }
    Ok(())
}

/// Routes the plain bucket's events to the notification queue, as `connector events` prints.
async fn route_direct(d: &Deployment, bucket: &str) -> Result<()> {
    let queue = QueueConfiguration::builder()
        .id("s3-importer")
        .queue_arn(d.notification_queue_arn())
        .events(Event::from("s3:ObjectCreated:*"))
        .build()?;
    s3_client(&d.sdk)
        .put_bucket_notification_configuration()
        .bucket(bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(queue)
                .build(),
        )
        .send()
        .await
        .context("route the plain bucket's events")?;
    Ok(())
}

/// What the writer wrote: how many versions, and the ids of every version's rows, per target.
struct Written {
    versions: u64,
    ids: Vec<BTreeSet<String>>,
}

/// Where the writer sends the notification of each version it writes in the versioned bucket.
struct Notifications {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    versioned_bucket: String,
}

/// Writes `files` versions spread over `over`: new keys, overwrites (a new version of a key written before)
/// and deletes, in every format.
async fn write(
    s3: &aws_sdk_s3::Client,
    notifications: &Notifications,
    targets: &[(String, String)],
    files: u64,
    over: Duration,
    rng: &Rng,
) -> Result<Written> {
    let pause = over / u32::try_from(files.max(1)).unwrap_or(u32::MAX);
    let mut keys: Vec<Vec<String>> = vec![Vec::new(); targets.len()];
    let mut written = Written {
        versions: 0,
        ids: vec![BTreeSet::new(); targets.len()],
    };
    for seq in 0..files {
        let t = rng.below(targets.len() as u64) as usize;
        let (bucket, prefix) = &targets[t];
        let roll = rng.below(100);
        if roll < 10 && !keys[t].is_empty() {
            let i = rng.below(keys[t].len() as u64) as usize;
            let key = keys[t].swap_remove(i);
            s3.delete_object()
                .bucket(bucket)
                .key(&key)
                .send()
                .await
                .with_context(|| format!("delete {key}"))?;
        } else {
            let key = if roll < 30 && !keys[t].is_empty() {
                keys[t][rng.below(keys[t].len() as u64) as usize].clone()
            } else {
                let ext = EXTENSIONS[rng.below(EXTENSIONS.len() as u64) as usize];
                let key = format!("{prefix}f-{seq:06}.{ext}");
                keys[t].push(key.clone());
                key
            };
            let rows = 1 + rng.below(20);
            let body = body_of(&key, seq, rows)?;
            written.ids[t].extend(ids_of(&key, &body)?);
            let size = body.len() as u64;
            let put = s3
                .put_object()
                .bucket(bucket)
                .key(&key)
                .body(ByteStream::from(body))
                .send()
                .await
                .with_context(|| format!("put {key}"))?;
            written.versions += 1;
            if *bucket == notifications.versioned_bucket {
                let body = created_notification(
                    bucket,
                    &key,
                    size,
                    put.e_tag().unwrap_or_default(),
                    put.version_id(),
                );
                notifications
                    .sqs
                    .send_message()
                    .queue_url(&notifications.queue_url)
                    .message_body(body)
                    .send()
                    .await
                    .context("send a notification")?;
            }
        }
        tokio::time::sleep(pause).await;
    }
    Ok(written)
}

/// A file of `rows` rows in the format `key`'s extension names; the ids are unique to this version.
fn body_of(key: &str, seq: u64, rows: u64) -> Result<Vec<u8>> {
    let ids: Vec<(String, u64)> = (0..rows).map(|r| (format!("s{seq}-{r}"), r)).collect();
    let text = if key.ends_with(".tsv") {
        let mut s = "id\tqty\n".to_owned();
        for (id, q) in &ids {
            s.push_str(&format!("{id}\t{q}\n"));
        }
        s
    } else if key.ends_with(".jsonl") {
        ids.iter()
            .map(|(id, q)| format!("{}\n", json!({"id": id, "qty": q})))
            .collect()
    } else if key.ends_with(".json") {
        let rows: Vec<_> = ids
            .iter()
            .map(|(id, q)| json!({"id": id, "qty": q}))
            .collect();
        serde_json::to_string(&rows)?
    } else {
        let mut s = "id,qty\n".to_owned();
        for (id, q) in &ids {
            s.push_str(&format!("{id},{q}\n"));
        }
        s
    };
    if key.ends_with(".gz") {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes())?;
        return Ok(gz.finish()?);
    }
    Ok(text.into_bytes())
}

/// What the run drives, and with what.
struct Driver<'a> {
    d: &'a Deployment,
    lister: &'a Lister,
    worker: &'a Worker,
    notifications: &'a SqsConsumer,
    work: &'a SqsConsumer,
    rng: &'a Rng,
    driven: &'a Driven,
    kill_rate: f64,
}

impl Driver<'_> {
    /// The schedule (every 3 s), then a batch of notifications (a share `event_fault_rate` dropped, as many
    /// repeated).
    async fn control(&self, last_schedule: &mut Instant, event_fault_rate: f64) {
        if last_schedule.elapsed() > Duration::from_secs(3) {
            *last_schedule = Instant::now();
            self.driven.scheduled_runs.fetch_add(1, Ordering::Relaxed);
            let request = request_id("soak-schedule");
            if let Err(e) = s3_importer_lister::handle(self.lister, json!({}), &request).await {
                eprintln!("soak: scheduled run failed: {e:#}");
            }
        }
        match notify(
            self.d,
            self.notifications,
            self.lister,
            self.rng,
            self.driven,
            event_fault_rate,
        )
        .await
        {
            Ok(0) => tokio::time::sleep(Duration::from_millis(100)).await,
            Ok(_) => {}
            Err(e) => eprintln!("soak: notifications: {e:#}"),
        }
    }

    /// A batch of work in up to three invocations at once.
    async fn work(&self) {
        match self.work.receive(10, 0).await {
            Ok(batch) if !batch.is_empty() => {
                let invocations = batch.chunks(batch.len().div_ceil(3)).map(|messages| {
                    invoke(
                        self.d,
                        self.worker,
                        self.work,
                        messages,
                        self.rng,
                        self.driven,
                        self.kill_rate,
                    )
                });
                futures::future::join_all(invocations).await;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            Err(e) => eprintln!("soak: receive work: {e:#}"),
        }
    }
}

/// A batch of notifications: some dropped (deleted unread), some sent again, the rest handled. How many were
/// received.
async fn notify(
    d: &Deployment,
    consumer: &SqsConsumer,
    lister: &Lister,
    rng: &Rng,
    driven: &Driven,
    fault_rate: f64,
) -> Result<usize> {
    let batch = consumer.receive(10, 0).await?;
    let received = batch.len();
    let sqs = s3_importer_aws::config::sqs_client(&d.sdk);
    let queue_url = &d.provisioned.notification_queue_url;
    let mut handled: Vec<Received> = Vec::new();
    for message in batch {
        driven.notifications.fetch_add(1, Ordering::Relaxed);
        let roll = rng.unit();
        if roll < fault_rate {
            driven.dropped.fetch_add(1, Ordering::Relaxed);
            consumer.delete(&message.receipt_handle).await?;
            continue;
        }
        if roll < 2.0 * fault_rate {
            driven.duplicated.fetch_add(1, Ordering::Relaxed);
            sqs.send_message()
                .queue_url(queue_url)
                .message_body(&message.body)
                .send()
                .await?;
        }
        handled.push(message);
    }
    if handled.is_empty() {
        return Ok(received);
    }
    let (response, _) =
        s3_importer_lister::events::handle_notifications(lister, sqs_event(&handled)?).await;
    let failed: BTreeSet<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    for message in &handled {
        if !failed.contains(message.message_id.as_str()) {
            consumer.delete(&message.receipt_handle).await?;
        }
    }
    Ok(received)
}

/// One worker invocation (a Lambda with a 40-second budget) with `messages`, killed at a random moment with
/// probability `kill_rate`: a killed invocation acks nothing, and its messages reappear after the queue's
/// visibility timeout, once the killed attempt's lease has ended.
async fn invoke(
    d: &Deployment,
    worker: &Worker,
    work: &SqsConsumer,
    messages: &[Received],
    rng: &Rng,
    driven: &Driven,
    kill_rate: f64,
) {
    if messages.is_empty() {
        return;
    }
    driven.invocations.fetch_add(1, Ordering::Relaxed);
    let event = match sqs_event(messages) {
        Ok(event) => event,
        Err(e) => {
            eprintln!("soak: {e:#}");
            return;
        }
    };
    let deadline = Some(d.clock.now() + chrono::Duration::seconds(40));
    let request = request_id("soak-worker");
    let run = s3_importer_worker::handle(worker, event, deadline, &request);
    let response = if rng.unit() < kill_rate {
        let after = Duration::from_millis(rng.below(2000));
        match tokio::time::timeout(after, run).await {
            Ok(response) => response,
            Err(_) => {
                driven.killed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    } else {
        run.await
    };
    let failed: BTreeSet<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    for message in messages {
        if !failed.contains(message.message_id.as_str()) {
            if let Err(e) = work.delete(&message.receipt_handle).await {
                eprintln!("soak: delete a message: {e:#}");
            }
        }
    }
}

/// Nothing left to do: both queues empty and no file of the soak's connectors waiting or in progress.
async fn quiet(d: &Deployment, connector_ids: &[String]) -> Result<bool> {
    let (visible, in_flight) = d.queue_depth().await?;
    if visible + in_flight > 0 {
        return Ok(false);
    }
    let (visible, in_flight) = d.notification_depth().await?;
    if visible + in_flight > 0 {
        return Ok(false);
    }
    for id in connector_ids {
        for entry in d.state.list_files(id, None).await? {
            if matches!(
                entry.status,
                FileStatus::Claimed | FileStatus::Queued | FileStatus::Processing
            ) {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// One connector's figures.
struct Figures {
    expected: usize,
    imported: usize,
    missing: usize,
    duplicated: usize,
    unexpected: usize,
    failed_files: usize,
}

impl Figures {
    fn render(&self, s: &Soaked) -> String {
        format!(
            "soak connector={} bucket={} discovery={} versions={} rows_expected={} rows_imported={} missing={} \
             duplicated={} unexpected={} failed_files={}",
            s.connector.name,
            if s.versioned { "versioned" } else { "plain" },
            s.connector.discovery.as_str(),
            s.versioned,
            self.expected,
            self.imported,
            self.missing,
            self.duplicated,
            self.unexpected,
            self.failed_files
        )
    }
}

/// Reads the source (every version, or every current object) and the connector's output, with the SDK alone;
/// `written` are the ids of every version the writer wrote for it.
async fn check(d: &Deployment, s: &Soaked, written: &BTreeSet<String>) -> Result<Figures> {
    let s3 = s3_client(&d.sdk);
    let prefix = s.connector.source.prefix.clone().unwrap_or_default();
    // The rows that must be imported: every version's, or every current object's.
    let mut required: BTreeSet<String> = BTreeSet::new();
    let mut key_marker: Option<String> = None;
    let mut version_marker: Option<String> = None;
    loop {
        let out = s3
            .list_object_versions()
            .bucket(&s.bucket)
            .prefix(&prefix)
            .set_key_marker(key_marker.clone())
            .set_version_id_marker(version_marker.clone())
            .send()
            .await?;
        for version in out.versions() {
            if !s.versioned && version.is_latest() != Some(true) {
                continue;
            }
            let key = version.key().unwrap_or_default();
            let mut get = s3.get_object().bucket(&s.bucket).key(key);
            if s.versioned {
                get = get.set_version_id(version.version_id().map(str::to_owned));
            }
            let body = get
                .send()
                .await?
                .body
                .collect()
                .await?
                .into_bytes()
                .to_vec();
            required.extend(ids_of(key, &body)?);
        }
        if out.is_truncated() != Some(true) {
            break;
        }
        key_marker = out.next_key_marker().map(str::to_owned);
        version_marker = out.next_version_id_marker().map(str::to_owned);
    }
    let mut found: HashMap<String, u64> = HashMap::new();
    for key in d.output_keys(&format!("soak/{}/", s.connector.id)).await? {
        let body = s3
            .get_object()
            .bucket(&d.provisioned.names.output_bucket)
            .key(&key)
            .send()
            .await?
            .body
            .collect()
            .await?
            .into_bytes();
        for line in body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let row: serde_json::Value = serde_json::from_slice(line)?;
            let id = row["id"].as_str().context("an output row without id")?;
            *found.entry(id.to_owned()).or_default() += 1;
        }
    }
    let entries = d.state.list_files(&s.connector.id, None).await?;
    let mut statuses: BTreeMap<FileStatus, usize> = BTreeMap::new();
    for entry in &entries {
        *statuses.entry(entry.status).or_default() += 1;
    }
    eprintln!("soak: {} ledger {statuses:?}", s.connector.name);
    let failed: Vec<_> = entries
        .into_iter()
        .filter(|e| e.status == FileStatus::Failed)
        .collect();
    if let Some(first) = failed.first() {
        eprintln!(
            "soak: {} failed, e.g. {}: {}",
            s.connector.name,
            first.version.key,
            first.error.as_deref().unwrap_or("no reason")
        );
    }
    let failed_files = failed.len();
    Ok(Figures {
        expected: required.len(),
        imported: found.len(),
        missing: required
            .iter()
            .filter(|id| !found.contains_key(*id))
            .count(),
        duplicated: found.values().filter(|n| **n > 1).count(),
        // A plain bucket's version overwritten or deleted before it was read may be imported or not; a row
        // the writer never wrote for this connector may not.
        unexpected: found.keys().filter(|id| !written.contains(*id)).count(),
        failed_files,
    })
}

/// The ids of a source file, read by its extension.
fn ids_of(key: &str, body: &[u8]) -> Result<Vec<String>> {
    let mut text = String::new();
    if key.ends_with(".gz") {
        flate2::read::GzDecoder::new(body).read_to_string(&mut text)?;
    } else {
        text = String::from_utf8(body.to_vec())?;
    }
    let ids = if key.ends_with(".jsonl") {
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                Ok(serde_json::from_str::<serde_json::Value>(l)?["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned())
            })
            .collect::<Result<Vec<_>>>()?
    } else if key.ends_with(".json") {
        let rows: Vec<serde_json::Value> = serde_json::from_str(&text)?;
        rows.iter()
            .map(|r| r["id"].as_str().unwrap_or_default().to_owned())
            .collect()
    } else {
        let separator = if key.ends_with(".tsv") { '\t' } else { ',' };
        text.lines()
            .skip(1)
            .filter_map(|l| l.split(separator).next().map(str::to_owned))
            .collect()
    };
    Ok(ids)
}
