//! `make bench-lister`: one reconciliation pass (`lister::reconcile_connector`) over a folder of N objects, in
//! a process of its own per size so its peak RSS is the pass's alone. It ends with one line per size:
//!
//! ```text
//! bench-lister objects=N list_calls=… ledger_reads=… peak_rss_mib=… seconds=… source=memory
//! ```
//!
//! - `source=memory` (`BENCH_LISTER_OBJECTS`, default `100000,1000000`): a source that makes each page of
//!   1,000 keys when asked, so nothing but the pass holds objects.
//! - `source=emulator` (`BENCH_LISTER_EMULATOR_OBJECTS`, default 100000; 0 skips it): the objects are put in
//!   a bucket on the emulator first (not timed), then listed through the S3 adapter with ListObjectsV2.
//!
//! Both count on a ledger that answers lookups without storing (every object is known but one in 1,000, which
//! the pass claims and sends to a counting queue): what is measured is the pass (listing, per-page lookups and
//! claims), not a store that grows with the test. The state store's own cost per object is the ledger's
//! BatchGetItem (README, "Reconciliation"). The bench fails when the list calls are not objects / 1,000
//! (rounded up), the lookups not one per object, or the claims not one per new object.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use s3_importer_core::sync::lister::{self, ListerDeps, ListerSettings, SyncOutcome};
use s3_importer_core::sync::memory::MemoryStateStore;
use s3_importer_core::sync::ports::{
    ByteRange, ClaimOutcome, ConnectorStore, FileLedger, FileQueue, ListPage, ObjectBody,
    ObjectSource, QueueError, SourceError, StartOutcome, StateError, TemplateStore,
};
use s3_importer_core::sync::{
    Checkpoint, Connector, ConnectorStatus, DestinationConfig, Discovery, FileMessage, FileStatus,
    FileVersion, LedgerEntry, ObjectMeta, Source, SystemClock,
};
use s3_importer_core::template::Template;
use s3_importer_tests::{emulator, s3_client, ACCOUNT_ID, REGION};

/// One object in this many is new to the ledger.
const NEW_EVERY: u64 = 1000;
const PREFIX: &str = "bench/";
const TEMPLATE: &str = include_str!("../../../crates/core/src/sync/contract/items.toml");

fn env_sizes(name: &str, default: &str) -> Result<Vec<u64>> {
    let value = std::env::var(name).unwrap_or_else(|_| default.to_owned());
    value
        .split(',')
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(|v| v.parse().with_context(|| format!("{name}={value:?}")))
        .collect()
}

fn key(i: u64) -> String {
    format!("{PREFIX}{i:09}.csv")
}

fn is_new(i: u64) -> bool {
    i % NEW_EVERY == 0
}

/// A folder of `objects` keys whose pages are made on request: `000000000.csv`, … The ETag says whether
/// the ledger knows the object (`"new"` / `"old"`).
struct SyntheticSource {
    objects: u64,
    modified: DateTime<Utc>,
}

impl SyntheticSource {
    fn page_from(&self, first: u64) -> ListPage {
        let end = (first + 1000).min(self.objects);
        let objects = (first..end)
            .map(|i| ObjectMeta {
                key: key(i),
                etag: if is_new(i) { "\"new\"" } else { "\"old\"" }.to_owned(),
                size: 100,
                last_modified: self.modified,
                storage_class: None,
                restored: false,
                version_id: None,
            })
            .collect();
        let next = (end < self.objects).then(|| end.to_string());
        ListPage { objects, next }
    }
}

#[async_trait]
impl ObjectSource for SyntheticSource {
    async fn list_page(
        &self,
        _source: &Source,
        continuation: Option<String>,
    ) -> Result<ListPage, SourceError> {
        let first = continuation.and_then(|t| t.parse().ok()).unwrap_or(0);
        Ok(self.page_from(first))
    }

    async fn list_page_after(
        &self,
        _source: &Source,
        start_after: &str,
    ) -> Result<ListPage, SourceError> {
        let after: Option<u64> = start_after
            .strip_prefix(PREFIX)
            .and_then(|k| k.strip_suffix(".csv"))
            .and_then(|n| n.parse().ok());
        Ok(self.page_from(after.map_or(0, |n| n + 1)))
    }

    async fn open(
        &self,
        source: &Source,
        key: &str,
        _etag: &str,
        _version_id: Option<&str>,
        _range: Option<ByteRange>,
    ) -> Result<ObjectBody, SourceError> {
        Err(SourceError::NotFound {
            bucket: source.bucket.clone(),
            key: key.to_owned(),
        })
    }

    async fn head(
        &self,
        _source: &Source,
        _key: &str,
        _version_id: Option<&str>,
    ) -> Result<Option<ObjectMeta>, SourceError> {
        Ok(None)
    }

    async fn older_versions(
        &self,
        _source: &Source,
        _key: &str,
        _version_id: &str,
        _max: usize,
    ) -> Result<Vec<ObjectMeta>, SourceError> {
        Ok(Vec::new())
    }
}

/// A ledger that knows every file version whose ETag is not `new_etag`, without storing anything, and
/// counts lookups and claims.
struct CountingLedger {
    new_etag: String,
    known: LedgerEntry,
    reads: AtomicU64,
    claims: AtomicU64,
}

fn unsupported(what: &str) -> StateError {
    StateError::Other {
        context: format!("the bench ledger does not {what}"),
        source: "unsupported".into(),
    }
}

#[async_trait]
impl FileLedger for CountingLedger {
    async fn get_files(
        &self,
        _connector_id: &str,
        file_ids: &[String],
    ) -> Result<HashMap<String, LedgerEntry>, StateError> {
        self.reads
            .fetch_add(file_ids.len() as u64, Ordering::Relaxed);
        Ok(file_ids
            .iter()
            .filter(|id| !id.ends_with(&self.new_etag))
            .map(|id| (id.clone(), self.known.clone()))
            .collect())
    }
    async fn get_file(&self, _: &str, _: &str) -> Result<Option<LedgerEntry>, StateError> {
        Err(unsupported("get one file"))
    }
    async fn list_files(
        &self,
        _: &str,
        _: Option<FileStatus>,
    ) -> Result<Vec<LedgerEntry>, StateError> {
        // No entry is left `claimed` by an earlier lister.
        Ok(Vec::new())
    }
    async fn claim_file(&self, _entry: &LedgerEntry) -> Result<ClaimOutcome, StateError> {
        self.claims.fetch_add(1, Ordering::Relaxed);
        Ok(ClaimOutcome::Claimed)
    }
    async fn mark_queued(&self, _: &str, _: &str, _: DateTime<Utc>) -> Result<(), StateError> {
        Ok(())
    }
    async fn start_file(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: DateTime<Utc>,
        _: DateTime<Utc>,
    ) -> Result<StartOutcome, StateError> {
        Err(unsupported("start files"))
    }
    async fn renew_file(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: DateTime<Utc>,
        _: Option<&Checkpoint>,
    ) -> Result<(), StateError> {
        Err(unsupported("renew files"))
    }
    async fn checkpoint_file(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: Option<&Checkpoint>,
    ) -> Result<(), StateError> {
        Err(unsupported("checkpoint files"))
    }
    async fn mark_continued(&self, _: &str, _: &str, _: u32) -> Result<(), StateError> {
        Err(unsupported("continue files"))
    }
    async fn finish_file(&self, _: &LedgerEntry, _: &str) -> Result<(), StateError> {
        Err(unsupported("finish files"))
    }
    async fn release_file(&self, _: &str, _: &str, _: &str, _: &str) -> Result<(), StateError> {
        Err(unsupported("release files"))
    }
    async fn reopen_file(
        &self,
        _: &str,
        _: &str,
        _: FileStatus,
        _: bool,
    ) -> Result<bool, StateError> {
        Err(unsupported("reopen files"))
    }
    async fn dead_letter_file(
        &self,
        _: &str,
        _: &str,
        _: &str,
        _: DateTime<Utc>,
    ) -> Result<bool, StateError> {
        Err(unsupported("dead-letter files"))
    }
}

/// A queue that accepts and counts.
#[derive(Default)]
struct CountingQueue {
    sent: AtomicU64,
}

#[async_trait]
impl FileQueue for CountingQueue {
    async fn send(&self, messages: &[FileMessage]) -> Result<Vec<bool>, QueueError> {
        self.sent
            .fetch_add(messages.len() as u64, Ordering::Relaxed);
        Ok(vec![true; messages.len()])
    }
    async fn extend_visibility(&self, _: &str, _: u32) -> Result<(), QueueError> {
        Ok(())
    }
}

/// The process's peak resident set (VmHWM), in MiB.
fn peak_rss_mib() -> Result<f64> {
    let status = std::fs::read_to_string("/proc/self/status").context("read /proc/self/status")?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/self/status")?;
    Ok(kib / 1024.0)
}

/// One pass over `objects` objects of `source`; prints the line.
async fn measure(
    objects: u64,
    source: Arc<dyn ObjectSource>,
    bucket: &str,
    new_etag: &str,
    label: &str,
) -> Result<()> {
    let state = Arc::new(MemoryStateStore::new());
    let now = Utc::now();
    let template = Template::from_toml(TEMPLATE).context("template")?;
    state
        .put_template(&template.name, TEMPLATE, &template, now)
        .await?;
    let connector = Connector {
        id: "c-bench".into(),
        name: "bench".into(),
        status: ConnectorStatus::Active,
        source: Source {
            account_id: ACCOUNT_ID.into(),
            bucket: bucket.to_owned(),
            region: REGION.into(),
            prefix: Some(PREFIX.into()),
            role_arn: None,
            external_id: None,
            versions: false,
        },
        template_id: template.name.clone(),
        template_version: None,
        destination: DestinationConfig::Dynamodb {
            table: "records".into(),
        },
        created_at: now,
        updated_at: now,
        watermark: None,
        last_sync: None,
        // Events: the run lists only for the reconciliation.
        discovery: Discovery::Events,
        reconcile: None,
    };
    state.create_connector(&connector).await?;
    let ledger = Arc::new(CountingLedger {
        new_etag: format!("#{}", new_etag.trim_matches('"')),
        known: LedgerEntry::discovered(
            FileVersion {
                connector_id: connector.id.clone(),
                bucket: bucket.to_owned(),
                key: key(1),
                etag: "\"old\"".into(),
                version_id: None,
            },
            &ObjectMeta {
                key: key(1),
                etag: "\"old\"".into(),
                size: 100,
                last_modified: now,
                storage_class: None,
                restored: false,
                version_id: None,
            },
            now,
        ),
        reads: AtomicU64::new(0),
        claims: AtomicU64::new(0),
    });
    let queue = Arc::new(CountingQueue::default());
    let mut deps = ListerDeps::new(state.clone(), source, queue.clone(), Arc::new(SystemClock));
    deps.ledger = ledger.clone();
    let mut settings = ListerSettings::default();
    settings.reconcile.max_list_calls = u64::MAX;
    settings.reconcile.max_duration = std::time::Duration::from_secs(24 * 3600);
    // The emulator's objects were just put: no overlap, so every object is the reconciliation's.
    settings.sync.overlap = Duration::zero();

    let started = Instant::now();
    let outcome = lister::reconcile_connector(&deps, &settings, &connector).await;
    let seconds = started.elapsed().as_secs_f64();
    let SyncOutcome::Ran(run) = outcome else {
        bail!("the pass did not run: {outcome:?}");
    };
    ensure!(run.error.is_none(), "the pass failed: {:?}", run.error);
    let reconciled = run.reconciled.context("no reconciliation")?;
    let new = objects.div_ceil(NEW_EVERY);
    ensure!(reconciled.complete, "incomplete: {reconciled:?}");
    ensure!(
        reconciled.list_calls == objects.div_ceil(1000).max(1),
        "{} list calls for {objects} objects",
        reconciled.list_calls
    );
    ensure!(
        ledger.reads.load(Ordering::Relaxed) == objects && reconciled.ledger_reads == objects,
        "{} lookups for {objects} objects",
        ledger.reads.load(Ordering::Relaxed)
    );
    ensure!(
        ledger.claims.load(Ordering::Relaxed) == new
            && queue.sent.load(Ordering::Relaxed) == new
            && reconciled.missed_by_events == new,
        "{} claims and {} messages for {new} new objects",
        ledger.claims.load(Ordering::Relaxed),
        queue.sent.load(Ordering::Relaxed)
    );
    println!(
        "bench-lister objects={objects} list_calls={} ledger_reads={} peak_rss_mib={:.1} seconds={seconds:.2} source={label}",
        reconciled.list_calls,
        reconciled.ledger_reads,
        peak_rss_mib()?,
    );
    Ok(())
}

/// Puts `objects` small objects in a new bucket on the emulator (one in [`NEW_EVERY`] with the body `new`);
/// returns the bucket and the new objects' ETag.
async fn fill_emulator_bucket(objects: u64) -> Result<(String, String)> {
    let sdk = emulator().await.sdk_config().await;
    let s3 = s3_client(&sdk);
    let bucket = format!("bench-lister-{}", std::process::id());
    s3.create_bucket().bucket(&bucket).send().await?;
    let started = Instant::now();
    stream::iter(0..objects)
        .map(|i| {
            let (s3, bucket) = (s3.clone(), bucket.clone());
            async move {
                let body = if is_new(i) { "new" } else { "old" };
                s3.put_object()
                    .bucket(&bucket)
                    .key(key(i))
                    .body(body.as_bytes().to_vec().into())
                    .send()
                    .await
                    .with_context(|| format!("put {}", key(i)))
            }
        })
        .buffer_unordered(32)
        .try_for_each(|_| async { Ok(()) })
        .await?;
    eprintln!(
        "bench-lister: {objects} objects put on the emulator in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let head = s3.head_object().bucket(&bucket).key(key(0)).send().await?;
    let etag = head.e_tag().context("no ETag")?.to_owned();
    Ok((bucket, etag))
}

/// Runs this binary again for one measurement, so each size has its own peak RSS.
fn run_child(args: &[String], env: &[(&'static str, String)]) -> Result<()> {
    let exe = std::env::current_exe()?;
    let status = std::process::Command::new(exe)
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .status()?;
    ensure!(status.success(), "measurement {args:?} failed: {status}");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["--one", "memory", n] => {
            let objects: u64 = n.parse()?;
            let source = Arc::new(SyntheticSource {
                objects,
                modified: Utc::now() - Duration::hours(2),
            });
            measure(objects, source, "bench-source", "\"new\"", "memory").await
        }
        ["--one", "emulator", n, bucket, etag] => {
            let sdk = emulator().await.sdk_config().await;
            let source = Arc::new(s3_importer_aws::S3Source::new(&sdk));
            measure(n.parse()?, source, bucket, etag, "emulator").await
        }
        [] => {
            for n in env_sizes("BENCH_LISTER_OBJECTS", "100000,1000000")? {
                run_child(&["--one".into(), "memory".into(), n.to_string()], &[])?;
            }
            for n in env_sizes("BENCH_LISTER_EMULATOR_OBJECTS", "100000")? {
                if n == 0 {
                    continue;
                }
                let (bucket, etag) = fill_emulator_bucket(n).await?;
                let env = emulator().await.env_vars();
                run_child(
                    &[
                        "--one".into(),
                        "emulator".into(),
                        n.to_string(),
                        bucket,
                        etag,
                    ],
                    &env,
                )?;
            }
            Ok(())
        }
        _ => bail!("usage: bench-lister (the sizes come from BENCH_LISTER_OBJECTS and BENCH_LISTER_EMULATOR_OBJECTS)"),
    }
}
