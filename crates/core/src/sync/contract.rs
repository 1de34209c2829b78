//! The [`StateStore`] contract: one suite of checks, run against the in-memory store and against DynamoDB
//! (on the emulator), so the fast tests and production agree on every conditional outcome.
//!
//! Compiled with the `contract-tests` feature (test-only). Each check is a public async fn taking a store
//! and returning `Err` with what differed; [`state_store_contract_tests!`](crate::state_store_contract_tests)
//! turns every check into a `#[tokio::test]`. Checks use fresh, unique ids and names, so they can run in
//! parallel and many times against one table; they never assume the store is empty.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Duration, Timelike, Utc};

use super::model::{
    Checkpoint, CheckpointStart, Connector, ConnectorStatus, DestinationConfig, FileStatus,
    FileVersion, LedgerEntry, ObjectMeta, SkipReason, Source, SyncRun,
};
use super::ports::{ClaimOutcome, StartOutcome, StateError, StateStore};
use crate::template::Template;
use crate::{Compression, FileFormat, Format};

/// A store under test, shared with spawned tasks.
pub type Store = Arc<dyn StateStore>;
/// What a check returns: `Err` says what differed.
pub type CheckResult = Result<(), String>;

/// Every check, by name, in the order [`state_store_contract`] runs them.
pub const CHECKS: &[&str] = &[
    "claim_is_exclusive",
    "concurrent_claims_one_wins",
    "entries_round_trip_exactly",
    "mark_queued_only_moves_claimed",
    "start_file_outcomes",
    "concurrent_starts_one_wins",
    "expired_lease_can_be_taken_over",
    "renew_extends_the_lease_and_keeps_the_checkpoint",
    "checkpoint_hands_the_file_back_and_marks_the_continuation",
    "finish_requires_lease_owner",
    "release_returns_to_queued",
    "retry_only_failed",
    "list_files_filters_by_status",
    "get_files_over_100_ids",
    "keys_with_unicode_and_1024_bytes",
    "connectors_round_trip_exactly",
    "watermark_is_monotonic",
    "names_are_unique_and_rename_frees_the_old_name",
    "concurrent_creates_with_one_name_one_wins",
    "update_keeps_watermark_and_last_sync",
    "delete_removes_everything",
    "templates_are_versioned",
    "concurrent_template_versions_are_distinct",
    "sync_runs_newest_first",
    "lease_is_exclusive_until_expiry",
    "concurrent_lease_acquisitions_one_wins",
];

/// The checks that race several writers on one item (a subset of [`CHECKS`]).
pub const CONCURRENCY_CHECKS: &[&str] = &[
    "concurrent_claims_one_wins",
    "concurrent_starts_one_wins",
    "concurrent_creates_with_one_name_one_wins",
    "concurrent_template_versions_are_distinct",
    "concurrent_lease_acquisitions_one_wins",
];

/// Runs every check (even after a failure) and reports all failures.
pub async fn state_store_contract(store: Store) -> CheckResult {
    run_checks(store, CHECKS).await
}

/// Runs the named checks one after the other (even after a failure) and reports all failures.
pub async fn run_checks(store: Store, names: &[&str]) -> CheckResult {
    let mut failures = Vec::new();
    for name in names {
        if let Err(why) = run_check(name, store.clone()).await {
            failures.push(format!("{name}: {why}"));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

/// Runs one check by name.
pub async fn run_check(name: &str, store: Store) -> CheckResult {
    match name {
        "claim_is_exclusive" => claim_is_exclusive(store).await,
        "concurrent_claims_one_wins" => concurrent_claims_one_wins(store).await,
        "entries_round_trip_exactly" => entries_round_trip_exactly(store).await,
        "mark_queued_only_moves_claimed" => mark_queued_only_moves_claimed(store).await,
        "start_file_outcomes" => start_file_outcomes(store).await,
        "concurrent_starts_one_wins" => concurrent_starts_one_wins(store).await,
        "expired_lease_can_be_taken_over" => expired_lease_can_be_taken_over(store).await,
        "renew_extends_the_lease_and_keeps_the_checkpoint" => {
            renew_extends_the_lease_and_keeps_the_checkpoint(store).await
        }
        "checkpoint_hands_the_file_back_and_marks_the_continuation" => {
            checkpoint_hands_the_file_back_and_marks_the_continuation(store).await
        }
        "finish_requires_lease_owner" => finish_requires_lease_owner(store).await,
        "release_returns_to_queued" => release_returns_to_queued(store).await,
        "retry_only_failed" => retry_only_failed(store).await,
        "list_files_filters_by_status" => list_files_filters_by_status(store).await,
        "get_files_over_100_ids" => get_files_over_100_ids(store).await,
        "keys_with_unicode_and_1024_bytes" => keys_with_unicode_and_1024_bytes(store).await,
        "connectors_round_trip_exactly" => connectors_round_trip_exactly(store).await,
        "watermark_is_monotonic" => watermark_is_monotonic(store).await,
        "names_are_unique_and_rename_frees_the_old_name" => {
            names_are_unique_and_rename_frees_the_old_name(store).await
        }
        "concurrent_creates_with_one_name_one_wins" => {
            concurrent_creates_with_one_name_one_wins(store).await
        }
        "update_keeps_watermark_and_last_sync" => update_keeps_watermark_and_last_sync(store).await,
        "delete_removes_everything" => delete_removes_everything(store).await,
        "templates_are_versioned" => templates_are_versioned(store).await,
        "concurrent_template_versions_are_distinct" => {
            concurrent_template_versions_are_distinct(store).await
        }
        "sync_runs_newest_first" => sync_runs_newest_first(store).await,
        "lease_is_exclusive_until_expiry" => lease_is_exclusive_until_expiry(store).await,
        "concurrent_lease_acquisitions_one_wins" => {
            concurrent_lease_acquisitions_one_wins(store).await
        }
        other => Err(format!("no check named {other:?}")),
    }
}

/// One `#[tokio::test]` per contract check. `$store` is an expression evaluated afresh in each test, of
/// type `impl Future<Output = Result<Arc<dyn StateStore>, String>>`.
///
/// With `concurrency_ignored = "why"`, the checks that race writers against each other
/// ([`CONCURRENCY_CHECKS`]) are generated with `#[ignore = "why"]`: for a backend that cannot keep
/// conditional writes atomic under concurrency (moto), so the gap shows as "ignored" instead of flaking.
///
/// ```ignore
/// s3_importer_core::state_store_contract_tests!(async {
///     Ok::<_, String>(std::sync::Arc::new(MemoryStateStore::new()) as std::sync::Arc<dyn StateStore>)
/// });
/// ```
#[macro_export]
macro_rules! state_store_contract_tests {
    ($store:expr) => {
        $crate::state_store_contract_tests!(@all $store; []);
    };
    ($store:expr, concurrency_ignored = $reason:literal) => {
        $crate::state_store_contract_tests!(@all $store; [#[ignore = $reason]]);
    };
    (@all $store:expr; [$($concurrency_attr:tt)*]) => {
        $crate::state_store_contract_tests!(@each $store; [];
            claim_is_exclusive,
            entries_round_trip_exactly,
            mark_queued_only_moves_claimed,
            start_file_outcomes,
            expired_lease_can_be_taken_over,
            renew_extends_the_lease_and_keeps_the_checkpoint,
            checkpoint_hands_the_file_back_and_marks_the_continuation,
            finish_requires_lease_owner,
            release_returns_to_queued,
            retry_only_failed,
            list_files_filters_by_status,
            get_files_over_100_ids,
            keys_with_unicode_and_1024_bytes,
            connectors_round_trip_exactly,
            watermark_is_monotonic,
            names_are_unique_and_rename_frees_the_old_name,
            update_keeps_watermark_and_last_sync,
            delete_removes_everything,
            templates_are_versioned,
            sync_runs_newest_first,
            lease_is_exclusive_until_expiry,
        );
        $crate::state_store_contract_tests!(@each $store; [$($concurrency_attr)*];
            concurrent_claims_one_wins,
            concurrent_starts_one_wins,
            concurrent_creates_with_one_name_one_wins,
            concurrent_template_versions_are_distinct,
            concurrent_lease_acquisitions_one_wins,
        );
    };
    (@each $store:expr; $attrs:tt; $($check:ident),* $(,)?) => {
        $( $crate::state_store_contract_tests!(@one $store; $attrs; $check); )*
    };
    (@one $store:expr; [$($attr:tt)*]; $check:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $($attr)*
        async fn $check() -> Result<(), String> {
            let store = $store.await?;
            $crate::sync::contract::$check(store).await
        }
    };
}

// ---------------------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------------------

/// A name no other check, test process or earlier run uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
    format!("{prefix}-{:x}-{nanos:x}-{n}", std::process::id())
}

/// A point in time with nanoseconds (so a store that rounds instants fails), close to the real now (so a
/// real table's TTL does not sweep the items mid-check).
fn t0() -> DateTime<Utc> {
    let now = Utc::now();
    now.with_nanosecond(now.nanosecond() / 1000 * 1000 + 123)
        .unwrap_or(now)
}

fn connector(id: &str, name: &str, at: DateTime<Utc>) -> Connector {
    Connector {
        id: id.to_owned(),
        name: name.to_owned(),
        status: ConnectorStatus::Active,
        source: Source {
            account_id: "123456789012".into(),
            bucket: "source-bucket".into(),
            region: "eu-west-1".into(),
            prefix: Some("incoming/".into()),
            role_arn: Some("arn:aws:iam::123456789012:role/reader".into()),
            external_id: Some("ext-1234".into()),
        },
        template_id: "orders".into(),
        template_version: Some(2),
        destination: DestinationConfig::Dynamodb {
            table: "records".into(),
        },
        created_at: at,
        updated_at: at,
        watermark: None,
        last_sync: None,
    }
}

fn new_connector(prefix: &str, at: DateTime<Utc>) -> Connector {
    connector(
        &unique(&format!("c-{prefix}")),
        &unique(&format!("n-{prefix}")),
        at,
    )
}

fn entry(connector_id: &str, key: &str, etag: &str, at: DateTime<Utc>) -> LedgerEntry {
    let version = FileVersion {
        connector_id: connector_id.to_owned(),
        bucket: "source-bucket".into(),
        key: key.to_owned(),
        etag: etag.to_owned(),
        version_id: None,
    };
    let object = ObjectMeta {
        key: key.to_owned(),
        etag: etag.to_owned(),
        size: 1234,
        last_modified: at - Duration::minutes(3),
        storage_class: None,
        restored: false,
    };
    let mut entry = LedgerEntry::discovered(version, &object, at);
    entry.format = Some(FileFormat {
        format: Format::Csv,
        compression: Compression::None,
    });
    entry
}

fn template(name: &str) -> Result<Template, String> {
    Template::from_toml(&format!(
        "name = \"{name}\"\nprimary_key = [\"id\"]\n\n[[fields]]\nname = \"id\"\ntype = \"integer\"\nrequired = true\n\n\
         [[fields]]\nname = \"amount\"\ntype = \"decimal\"\n"
    ))
    .map_err(|e| format!("fixture template: {e}"))
}

fn run(connector_id: &str, started_at: DateTime<Utc>, listed: u64) -> SyncRun {
    SyncRun {
        connector_id: connector_id.to_owned(),
        started_at,
        duration_ms: 1500,
        listed,
        candidates: listed,
        new: 2,
        enqueued: 2,
        resent: 0,
        already_known: 1,
        skipped: BTreeMap::from([("too_large".to_owned(), 1), ("archived".to_owned(), 2)]),
        watermark_before: Some(started_at - Duration::hours(1)),
        watermark_after: Some(started_at - Duration::minutes(1)),
        error: None,
    }
}

/// Adds what was being done to a store error.
trait Ctx<T> {
    fn ctx(self, what: &str) -> Result<T, String>;
}

impl<T, E: Display> Ctx<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Result<T, String> {
        self.map_err(|e| format!("{what}: unexpected error: {e}"))
    }
}

fn expect_eq<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> CheckResult {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}:\n  expected {want:?}\n  got      {got:?}"))
    }
}

fn expect(what: &str, ok: bool) -> CheckResult {
    if ok {
        Ok(())
    } else {
        Err(what.to_owned())
    }
}

async fn claim(store: &Store, entry: &LedgerEntry) -> CheckResult {
    let outcome = store.claim_file(entry).await.ctx("claim_file")?;
    expect_eq(
        &format!("claiming {}", entry.version.key),
        outcome,
        ClaimOutcome::Claimed,
    )
}

/// Claims `entry` and starts it for `owner` at `now` with a 5-minute lease; returns the started entry.
async fn claim_and_start(
    store: &Store,
    entry: &LedgerEntry,
    owner: &str,
    now: DateTime<Utc>,
) -> Result<LedgerEntry, String> {
    claim(store, entry).await?;
    start(store, entry, owner, now, now + Duration::minutes(5)).await
}

async fn start(
    store: &Store,
    entry: &LedgerEntry,
    owner: &str,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<LedgerEntry, String> {
    let c = &entry.version.connector_id;
    match store
        .start_file(c, &entry.version.file_id(), owner, now, until)
        .await
        .ctx("start_file")?
    {
        StartOutcome::Started(started) => Ok(*started),
        other => Err(format!(
            "start_file by {owner}: expected Started, got {other:?}"
        )),
    }
}

async fn get(store: &Store, entry: &LedgerEntry) -> Result<LedgerEntry, String> {
    store
        .get_file(&entry.version.connector_id, &entry.version.file_id())
        .await
        .ctx("get_file")?
        .ok_or_else(|| format!("get_file: entry {} missing", entry.version.key))
}

fn is_conflict<T: std::fmt::Debug>(what: &str, result: Result<T, StateError>) -> CheckResult {
    match result {
        Err(StateError::Conflict { .. }) => Ok(()),
        other => Err(format!("{what}: expected Conflict, got {other:?}")),
    }
}

fn is_not_found<T: std::fmt::Debug>(what: &str, result: Result<T, StateError>) -> CheckResult {
    match result {
        Err(StateError::NotFound { .. }) => Ok(()),
        other => Err(format!("{what}: expected NotFound, got {other:?}")),
    }
}

fn is_name_taken<T: std::fmt::Debug>(what: &str, result: Result<T, StateError>) -> CheckResult {
    match result {
        Err(StateError::NameTaken { .. }) => Ok(()),
        other => Err(format!("{what}: expected NameTaken, got {other:?}")),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Ledger
// ---------------------------------------------------------------------------------------------------------

/// A file version is claimed once; a new ETag on the same key is a new version.
pub async fn claim_is_exclusive(store: Store) -> CheckResult {
    let c = unique("c-claim");
    let t = t0();
    let e = entry(&c, "in/a.csv", "\"e1\"", t);
    claim(&store, &e).await?;
    let again = LedgerEntry {
        size: 99,
        ..e.clone()
    };
    expect_eq(
        "second claim",
        store.claim_file(&again).await.ctx("claim_file")?,
        ClaimOutcome::AlreadyKnown,
    )?;
    expect_eq(
        "stored entry is the first claim",
        get(&store, &e).await?,
        e.clone(),
    )?;
    let newer = entry(&c, "in/a.csv", "\"e2\"", t);
    claim(&store, &newer).await?;
    expect_eq(
        "entries of the key",
        store.list_files(&c, None).await.ctx("list_files")?.len(),
        2,
    )
}

/// Eight listers racing to claim one version: exactly one wins.
pub async fn concurrent_claims_one_wins(store: Store) -> CheckResult {
    let c = unique("c-race");
    let e = entry(&c, "race.csv", "\"e\"", t0());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (store, e) = (store.clone(), e.clone());
        tasks.spawn(async move { store.claim_file(&e).await });
    }
    let mut claimed = 0;
    while let Some(joined) = tasks.join_next().await {
        if joined.ctx("join")?.ctx("claim_file")? == ClaimOutcome::Claimed {
            claimed += 1;
        }
    }
    expect_eq("claims won", claimed, 1)
}

/// Every field of an entry survives the store, to the nanosecond.
pub async fn entries_round_trip_exactly(store: Store) -> CheckResult {
    let c = unique("c-rt");
    let t = t0();
    let mut e = entry(&c, "in/rich file.csv.gz", "\"abc-3\"", t);
    e.version.version_id = Some("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY".into());
    e.status = FileStatus::Skipped;
    e.format = Some(FileFormat {
        format: Format::Tsv,
        compression: Compression::Gzip,
    });
    e.skip_reason = Some(SkipReason::TooLarge {
        size: 5 << 30,
        limit: 1 << 30,
    });
    e.queued_at = Some(t + Duration::nanoseconds(1));
    e.started_at = Some(t + Duration::milliseconds(2));
    e.finished_at = Some(t + Duration::seconds(3));
    e.lease_until = Some(t + Duration::minutes(4) + Duration::nanoseconds(7));
    e.lease_owner = Some("worker-1".into());
    e.attempts = 3;
    e.rows_imported = u64::from(u32::MAX) * 4;
    e.rows_rejected = 12;
    e.error_report = Some("s3://reports/c/abc.jsonl".into());
    e.error = Some("line 3, column \"amount\": not a decimal — «x»".into());
    e.template_version = Some(7);
    e.checkpoint = Some(Checkpoint {
        start: CheckpointStart {
            byte: 1 << 33,
            record: 10_000_000,
            line: 10_000_001,
            header: Some(vec!["id".into(), "".into(), "ä".into()]),
        },
        piece: 4,
        rows_imported: 9_999_990,
        rows_rejected: 10,
        rows_state: Some(serde_json::json!({
            "upload_id": "u-1",
            "parts": [{"n": 1, "etag": "\"p1\""}, {"n": 2, "etag": "\"p2\""}],
            "carry": null,
            "bytes": 1u64 << 40,
            "empty": [],
        })),
        rejects_state: Some(serde_json::json!({"entries": 0})),
        continued: true,
        template_version: Some(7),
        format: e.format,
    });
    claim(&store, &e).await?;
    expect_eq("get_file", get(&store, &e).await?, e.clone())?;
    let id = e.version.file_id();
    let many = store
        .get_files(&c, std::slice::from_ref(&id))
        .await
        .ctx("get_files")?;
    expect_eq("get_files", many.get(&id), Some(&e))?;
    expect_eq(
        "list_files",
        store.list_files(&c, None).await.ctx("list_files")?,
        vec![e],
    )
}

/// `mark_queued` moves `claimed → queued` and nothing else.
pub async fn mark_queued_only_moves_claimed(store: Store) -> CheckResult {
    let c = unique("c-mq");
    let t = t0();
    let e = entry(&c, "q.csv", "\"q\"", t);
    claim(&store, &e).await?;
    store
        .mark_queued(&c, &e.version.file_id(), t + Duration::seconds(1))
        .await
        .ctx("mark_queued")?;
    let queued = get(&store, &e).await?;
    expect_eq("status", queued.status, FileStatus::Queued)?;
    expect_eq(
        "queued_at",
        queued.queued_at,
        Some(t + Duration::seconds(1)),
    )?;
    store
        .mark_queued(&c, &e.version.file_id(), t + Duration::seconds(9))
        .await
        .ctx("mark_queued again")?;
    expect_eq(
        "queued_at after a second mark",
        get(&store, &e).await?.queued_at,
        Some(t + Duration::seconds(1)),
    )?;
    // A worker may start the file before the lister marks it queued: the mark must not undo the start.
    let s = entry(&c, "started-first.csv", "\"s\"", t);
    claim_and_start(&store, &s, "w", t).await?;
    store
        .mark_queued(&c, &s.version.file_id(), t)
        .await
        .ctx("mark_queued on processing")?;
    expect_eq(
        "status after marking a started entry",
        get(&store, &s).await?.status,
        FileStatus::Processing,
    )?;
    store
        .mark_queued(&c, "0123#missing", t)
        .await
        .ctx("mark_queued on a missing entry")?;
    expect_eq(
        "entries",
        store.list_files(&c, None).await.ctx("list_files")?.len(),
        2,
    )
}

/// `start_file`: Unknown, Started, Busy (while the lease lives), AlreadyFinished.
pub async fn start_file_outcomes(store: Store) -> CheckResult {
    let c = unique("c-start");
    let t = t0();
    let missing = store
        .start_file(&c, "0000#none", "w1", t, t + Duration::minutes(5))
        .await
        .ctx("start_file")?;
    expect_eq("start of a missing entry", missing, StartOutcome::Unknown)?;

    let e = entry(&c, "s.csv", "\"s\"", t);
    claim(&store, &e).await?;
    store
        .mark_queued(&c, &e.version.file_id(), t + Duration::seconds(1))
        .await
        .ctx("mark_queued")?;
    let now = t + Duration::seconds(2);
    let until = now + Duration::minutes(5);
    let started = start(&store, &e, "w1", now, until).await?;
    let mut want = e.clone();
    want.status = FileStatus::Processing;
    want.queued_at = Some(t + Duration::seconds(1));
    want.started_at = Some(now);
    want.lease_until = Some(until);
    want.lease_owner = Some("w1".into());
    want.attempts = 1;
    expect_eq("started entry", started.clone(), want)?;
    expect_eq(
        "stored started entry",
        get(&store, &e).await?,
        started.clone(),
    )?;

    let id = e.version.file_id();
    let busy = store
        .start_file(&c, &id, "w2", now + Duration::seconds(1), until)
        .await
        .ctx("start_file w2")?;
    expect_eq(
        "start while the lease lives",
        busy,
        StartOutcome::Busy(until),
    )?;
    // The lease ends strictly after `lease_until`.
    let at_end = store
        .start_file(&c, &id, "w2", until, until + Duration::minutes(5))
        .await
        .ctx("start_file")?;
    expect_eq(
        "start at the lease's last instant",
        at_end,
        StartOutcome::Busy(until),
    )?;

    let mut done = started;
    done.status = FileStatus::Imported;
    done.rows_imported = 10;
    done.finished_at = Some(now + Duration::seconds(30));
    store.finish_file(&done, "w1").await.ctx("finish_file")?;
    let dup = store
        .start_file(
            &c,
            &id,
            "w3",
            now + Duration::hours(1),
            now + Duration::hours(2),
        )
        .await
        .ctx("start_file")?;
    expect_eq(
        "start of an imported entry",
        dup,
        StartOutcome::AlreadyFinished(FileStatus::Imported),
    )?;
    expect_eq("entry after the duplicate", get(&store, &e).await?, done)
}

/// Eight workers receiving the same message: exactly one starts, the rest see it busy.
pub async fn concurrent_starts_one_wins(store: Store) -> CheckResult {
    let c = unique("c-srace");
    let t = t0();
    let e = entry(&c, "srace.csv", "\"e\"", t);
    claim(&store, &e).await?;
    let until = t + Duration::minutes(5);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..8 {
        let (store, c, id) = (store.clone(), c.clone(), e.version.file_id());
        tasks.spawn(async move { store.start_file(&c, &id, &format!("w{i}"), t, until).await });
    }
    let (mut started, mut busy) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined.ctx("join")?.ctx("start_file")? {
            StartOutcome::Started(_) => started += 1,
            StartOutcome::Busy(u) if u == until => busy += 1,
            other => return Err(format!("unexpected outcome {other:?}")),
        }
    }
    expect_eq("(started, busy)", (started, busy), (1, 7))?;
    expect_eq("attempts", get(&store, &e).await?.attempts, 1)
}

/// A worker that died keeps nobody waiting longer than its lease; it cannot finish after a takeover.
pub async fn expired_lease_can_be_taken_over(store: Store) -> CheckResult {
    let c = unique("c-expire");
    let t = t0();
    let e = entry(&c, "x.csv", "\"x\"", t);
    let first = claim_and_start(&store, &e, "w1", t).await?;
    let until = first.lease_until.ok_or("no lease_until")?;
    let later = until + Duration::milliseconds(1);
    let second = start(&store, &e, "w2", later, later + Duration::minutes(5)).await?;
    expect_eq(
        "owner after takeover",
        second.lease_owner.as_deref(),
        Some("w2"),
    )?;
    expect_eq("attempts after takeover", second.attempts, 2)?;
    let mut late = first.clone();
    late.status = FileStatus::Imported;
    is_conflict(
        "finish by the old owner",
        store.finish_file(&late, "w1").await,
    )?;
    is_conflict(
        "renew by the old owner",
        store
            .renew_file(
                &c,
                &e.version.file_id(),
                "w1",
                later + Duration::hours(1),
                None,
            )
            .await,
    )?;
    is_conflict(
        "release by the old owner",
        store
            .release_file(&c, &e.version.file_id(), "w1", "late")
            .await,
    )?;
    let mut done = second;
    done.status = FileStatus::Imported;
    store
        .finish_file(&done, "w2")
        .await
        .ctx("finish by the new owner")?;
    expect_eq("final entry", get(&store, &e).await?, done)
}

/// `renew_file` extends the lease and stores a checkpoint; `None` keeps the last one.
pub async fn renew_extends_the_lease_and_keeps_the_checkpoint(store: Store) -> CheckResult {
    let c = unique("c-renew");
    let t = t0();
    let e = entry(&c, "long.jsonl", "\"l\"", t);
    claim_and_start(&store, &e, "w", t).await?;
    let id = e.version.file_id();
    let checkpoint = Checkpoint {
        start: CheckpointStart {
            byte: 4096,
            record: 100,
            line: 101,
            header: Some(vec!["id".into()]),
        },
        piece: 1,
        rows_imported: 99,
        rows_rejected: 1,
        rows_state: None,
        rejects_state: Some(serde_json::json!({"entries": 1})),
        continued: false,
        template_version: None,
        format: None,
    };
    let until = t + Duration::minutes(20);
    store
        .renew_file(&c, &id, "w", until, Some(&checkpoint))
        .await
        .ctx("renew_file")?;
    let renewed = get(&store, &e).await?;
    expect_eq("lease_until", renewed.lease_until, Some(until))?;
    expect_eq("checkpoint", renewed.checkpoint.as_ref(), Some(&checkpoint))?;
    let until = until + Duration::minutes(20);
    store
        .renew_file(&c, &id, "w", until, None)
        .await
        .ctx("renew_file without checkpoint")?;
    let renewed = get(&store, &e).await?;
    expect_eq("lease_until", renewed.lease_until, Some(until))?;
    expect_eq(
        "checkpoint kept",
        renewed.checkpoint.as_ref(),
        Some(&checkpoint),
    )?;
    let busy = store
        .start_file(
            &c,
            &id,
            "w2",
            t + Duration::minutes(30),
            t + Duration::hours(1),
        )
        .await
        .ctx("start")?;
    expect_eq(
        "start during the renewed lease",
        busy,
        StartOutcome::Busy(until),
    )?;
    is_conflict(
        "renew by another worker",
        store.renew_file(&c, &id, "w2", until, None).await,
    )?;
    is_conflict(
        "renew of a missing entry",
        store.renew_file(&c, "0000#none", "w", until, None).await,
    )
}

/// `checkpoint_file` hands a held file back as `queued` with its checkpoint (only by the holder);
/// `mark_continued` flags the checkpoint of that piece only; a new attempt starts with the checkpoint.
pub async fn checkpoint_hands_the_file_back_and_marks_the_continuation(
    store: Store,
) -> CheckResult {
    let c = unique("c-checkpoint");
    let t = t0();
    let e = entry(&c, "long.csv", "\"l\"", t);
    claim_and_start(&store, &e, "w", t).await?;
    let id = e.version.file_id();
    let checkpoint = Checkpoint {
        start: CheckpointStart {
            byte: 1 << 32,
            record: 7,
            line: 9,
            header: Some(vec!["id".into(), "qty".into()]),
        },
        piece: 3,
        rows_imported: 6,
        rows_rejected: 1,
        rows_state: Some(serde_json::json!({"parts": [{"n": 1, "etag": "\"x\""}], "bytes": 5})),
        rejects_state: None,
        continued: false,
        template_version: None,
        format: None,
    };
    is_conflict(
        "checkpoint by another worker",
        store
            .checkpoint_file(&c, &id, "w2", Some(&checkpoint))
            .await,
    )?;
    store
        .checkpoint_file(&c, &id, "w", Some(&checkpoint))
        .await
        .ctx("checkpoint_file")?;
    let queued = get(&store, &e).await?;
    expect_eq(
        "status, lease and checkpoint",
        (
            queued.status,
            queued.lease_owner.clone(),
            queued.lease_until,
            queued.checkpoint.clone(),
        ),
        (FileStatus::Queued, None, None, Some(checkpoint.clone())),
    )?;
    is_conflict(
        "a second checkpoint without the lease",
        store.checkpoint_file(&c, &id, "w", None).await,
    )?;
    store
        .mark_continued(&c, &id, 2)
        .await
        .ctx("mark_continued of another piece")?;
    expect_eq(
        "continued after marking another piece",
        get(&store, &e).await?.checkpoint.map(|c| c.continued),
        Some(false),
    )?;
    store
        .mark_continued(&c, &id, 3)
        .await
        .ctx("mark_continued")?;
    let marked = get(&store, &e).await?;
    expect_eq(
        "continued",
        marked
            .checkpoint
            .as_ref()
            .map(|c| (c.continued, c.piece, c.rows_state.clone())),
        Some((true, 3, checkpoint.rows_state.clone())),
    )?;
    store
        .mark_continued(&c, "0000#none", 3)
        .await
        .ctx("mark_continued of a missing entry")?;
    let started = store
        .start_file(&c, &id, "w3", t, t + Duration::minutes(15))
        .await
        .ctx("start the next piece")?;
    let StartOutcome::Started(next) = started else {
        return Err(format!("the next piece did not start: {started:?}"));
    };
    expect_eq(
        "the next piece sees the checkpoint",
        next.checkpoint.map(|c| c.piece),
        Some(3),
    )?;
    // Handing back without a checkpoint keeps the stored one.
    store
        .checkpoint_file(&c, &id, "w3", None)
        .await
        .ctx("hand back")?;
    let back = get(&store, &e).await?;
    expect_eq(
        "handed back",
        (back.status, back.checkpoint.map(|c| c.piece)),
        (FileStatus::Queued, Some(3)),
    )
}

/// Only the lease holder writes the outcome, and only a final one.
pub async fn finish_requires_lease_owner(store: Store) -> CheckResult {
    let c = unique("c-finish");
    let t = t0();
    let e = entry(&c, "f.csv", "\"f\"", t);
    let started = claim_and_start(&store, &e, "w1", t).await?;
    let mut failed = started.clone();
    failed.status = FileStatus::Failed;
    failed.error = Some("line 7: expected 3 fields, found 2".into());
    failed.finished_at = Some(t + Duration::seconds(5));
    is_conflict(
        "finish by another worker",
        store.finish_file(&failed, "w2").await,
    )?;
    let not_final = store.finish_file(&started, "w1").await;
    expect(
        &format!("finish with status processing must fail, got {not_final:?}"),
        not_final.is_err(),
    )?;
    expect_eq(
        "entry after refused finishes",
        get(&store, &e).await?,
        started,
    )?;
    store.finish_file(&failed, "w1").await.ctx("finish_file")?;
    expect_eq("finished entry", get(&store, &e).await?, failed.clone())?;
    is_conflict("a second finish", store.finish_file(&failed, "w1").await)?;
    let never = entry(&c, "never-claimed.csv", "\"n\"", t);
    is_conflict(
        "finish of a missing entry",
        store
            .finish_file(
                &LedgerEntry {
                    status: FileStatus::Imported,
                    ..never
                },
                "w1",
            )
            .await,
    )
}

/// A transient failure hands the file back (`queued`, error kept) for the redelivery.
pub async fn release_returns_to_queued(store: Store) -> CheckResult {
    let c = unique("c-release");
    let t = t0();
    let e = entry(&c, "r.csv", "\"r\"", t);
    let started = claim_and_start(&store, &e, "w1", t).await?;
    let id = e.version.file_id();
    is_conflict(
        "release by another worker",
        store.release_file(&c, &id, "w2", "nope").await,
    )?;
    store
        .release_file(&c, &id, "w1", "throttled by the records table")
        .await
        .ctx("release_file")?;
    let mut want = started;
    want.status = FileStatus::Queued;
    want.error = Some("throttled by the records table".into());
    want.lease_owner = None;
    want.lease_until = None;
    expect_eq("released entry", get(&store, &e).await?, want)?;
    is_conflict(
        "a second release",
        store.release_file(&c, &id, "w1", "again").await,
    )?;
    let again = start(
        &store,
        &e,
        "w2",
        t + Duration::seconds(1),
        t + Duration::minutes(5),
    )
    .await?;
    expect_eq("attempts after a release", again.attempts, 2)
}

/// `retry_file` moves `failed → claimed` (outcome cleared) and nothing else.
pub async fn retry_only_failed(store: Store) -> CheckResult {
    let c = unique("c-retry");
    let t = t0();
    let f = entry(&c, "bad.csv", "\"b\"", t);
    let mut failed = claim_and_start(&store, &f, "w", t).await?;
    failed.status = FileStatus::Failed;
    failed.error = Some("template mismatch".into());
    failed.error_report = Some("s3://r/bad.jsonl".into());
    failed.rows_imported = 5;
    failed.rows_rejected = 7;
    failed.finished_at = Some(t + Duration::seconds(9));
    failed.checkpoint = Some(Checkpoint {
        start: CheckpointStart {
            byte: 10,
            record: 1,
            line: 2,
            header: None,
        },
        piece: 1,
        rows_imported: 5,
        rows_rejected: 0,
        rows_state: None,
        rejects_state: None,
        continued: false,
        template_version: None,
        format: None,
    });
    store.finish_file(&failed, "w").await.ctx("finish_file")?;
    expect(
        "retry of a failed entry",
        store
            .retry_file(&c, &f.version.file_id(), t)
            .await
            .ctx("retry_file")?,
    )?;
    let mut want = failed;
    want.reset_for_retry();
    expect_eq("retried entry", get(&store, &f).await?, want.clone())?;
    expect(
        "retry of a claimed entry must be refused",
        !store
            .retry_file(&c, &f.version.file_id(), t)
            .await
            .ctx("retry_file")?,
    )?;
    expect_eq("entry after a refused retry", get(&store, &f).await?, want)?;

    let ok = entry(&c, "good.csv", "\"g\"", t);
    let mut imported = claim_and_start(&store, &ok, "w", t).await?;
    imported.status = FileStatus::Imported;
    store.finish_file(&imported, "w").await.ctx("finish_file")?;
    expect(
        "retry of an imported entry must be refused",
        !store
            .retry_file(&c, &ok.version.file_id(), t)
            .await
            .ctx("retry_file")?,
    )?;
    expect_eq("imported entry", get(&store, &ok).await?, imported)?;
    expect(
        "retry of a missing entry must be refused",
        !store
            .retry_file(&c, "0000#none", t)
            .await
            .ctx("retry_file")?,
    )
}

/// `list_files` returns every entry, or those with one status.
pub async fn list_files_filters_by_status(store: Store) -> CheckResult {
    let c = unique("c-list");
    let t = t0();
    let entries: Vec<LedgerEntry> = (0..5)
        .map(|i| entry(&c, &format!("l/{i}.csv"), &format!("\"{i}\""), t))
        .collect();
    for e in &entries {
        claim(&store, e).await?;
    }
    store
        .mark_queued(&c, &entries[0].version.file_id(), t)
        .await
        .ctx("mark_queued")?;
    store
        .mark_queued(&c, &entries[1].version.file_id(), t)
        .await
        .ctx("mark_queued")?;
    start(&store, &entries[1], "w", t, t + Duration::minutes(1)).await?;
    let count = |s: Option<FileStatus>| {
        let store = store.clone();
        let c = c.clone();
        async move {
            store
                .list_files(&c, s)
                .await
                .ctx("list_files")
                .map(|v| v.len())
        }
    };
    expect_eq("all", count(None).await?, 5)?;
    expect_eq("claimed", count(Some(FileStatus::Claimed)).await?, 3)?;
    expect_eq("queued", count(Some(FileStatus::Queued)).await?, 1)?;
    expect_eq("processing", count(Some(FileStatus::Processing)).await?, 1)?;
    expect_eq("imported", count(Some(FileStatus::Imported)).await?, 0)?;
    expect_eq(
        "another connector",
        store
            .list_files(&unique("c-none"), None)
            .await
            .ctx("list_files")?
            .len(),
        0,
    )
}

/// `get_files` with more ids than one DynamoDB batch (100), unknown ids and duplicates.
pub async fn get_files_over_100_ids(store: Store) -> CheckResult {
    let c = unique("c-many");
    let t = t0();
    let entries: Vec<LedgerEntry> = (0..250)
        .map(|i| entry(&c, &format!("many/{i:04}.csv"), &format!("\"etag{i}\""), t))
        .collect();
    for chunk in entries.chunks(25) {
        let mut tasks = tokio::task::JoinSet::new();
        for e in chunk {
            let (store, e) = (store.clone(), e.clone());
            tasks.spawn(async move { store.claim_file(&e).await });
        }
        while let Some(joined) = tasks.join_next().await {
            expect_eq(
                "claim",
                joined.ctx("join")?.ctx("claim_file")?,
                ClaimOutcome::Claimed,
            )?;
        }
    }
    let mut ids: Vec<String> = entries.iter().map(|e| e.version.file_id()).collect();
    ids.extend((0..30).map(|i| format!("{i:032x}#unknown")));
    ids.extend(entries[..10].iter().map(|e| e.version.file_id()));
    let found = store.get_files(&c, &ids).await.ctx("get_files")?;
    expect_eq("entries found", found.len(), 250)?;
    for e in &entries {
        expect_eq("entry", found.get(&e.version.file_id()), Some(e))?;
    }
    expect_eq(
        "get_files of nothing",
        store.get_files(&c, &[]).await.ctx("get_files")?.len(),
        0,
    )
}

/// S3 keys are up to 1024 bytes of any UTF-8; names too are any text.
pub async fn keys_with_unicode_and_1024_bytes(store: Store) -> CheckResult {
    let c = unique("c-unicode");
    let t = t0();
    let mut key = String::from("données/日本語/emoji 🎉/with spaces & #hash/");
    while key.len() < 1020 {
        key.push('é');
    }
    while key.len() < 1024 {
        key.push('x');
    }
    expect_eq("key length", key.len(), 1024)?;
    let e = entry(&c, &key, "\"d41d8cd98f00b204e9800998ecf8427e-2\"", t);
    claim(&store, &e).await?;
    expect_eq(
        "stored key",
        get(&store, &e).await?.version.key,
        key.clone(),
    )?;
    let listed = store.list_files(&c, None).await.ctx("list_files")?;
    expect_eq(
        "listed keys",
        listed
            .iter()
            .map(|e| e.version.key.as_str())
            .collect::<Vec<_>>(),
        vec![key.as_str()],
    )?;

    let name = unique("Ünïcödé connector 日本 «quotes» \"and\" spaces");
    let conn = connector(&unique("c-u"), &name, t);
    store
        .create_connector(&conn)
        .await
        .ctx("create_connector")?;
    expect_eq(
        "found by name",
        store.find_connector_by_name(&name).await.ctx("find")?,
        Some(conn.clone()),
    )?;
    store
        .delete_connector(&conn.id)
        .await
        .ctx("delete_connector")?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Connectors
// ---------------------------------------------------------------------------------------------------------

/// A connector reads back as written, by id, by name and in the list.
pub async fn connectors_round_trip_exactly(store: Store) -> CheckResult {
    let t = t0();
    let mut conn = new_connector("rt", t);
    conn.status = ConnectorStatus::Broken {
        reason: "cannot assume role: AccessDenied".into(),
    };
    conn.destination = DestinationConfig::S3Jsonl {
        bucket: "out".into(),
        prefix: "".into(),
    };
    store
        .create_connector(&conn)
        .await
        .ctx("create_connector")?;
    expect_eq(
        "get_connector",
        store.get_connector(&conn.id).await.ctx("get")?,
        Some(conn.clone()),
    )?;
    expect_eq(
        "find_connector_by_name",
        store.find_connector_by_name(&conn.name).await.ctx("find")?,
        Some(conn.clone()),
    )?;
    let all = store.list_connectors().await.ctx("list_connectors")?;
    expect_eq("listed", all.iter().find(|c| c.id == conn.id), Some(&conn))?;
    expect_eq(
        "get of an unknown id",
        store.get_connector(&unique("c-none")).await.ctx("get")?,
        None,
    )?;
    expect_eq(
        "find of an unknown name",
        store
            .find_connector_by_name(&unique("none"))
            .await
            .ctx("find")?,
        None,
    )?;
    is_conflict(
        "creating the same id again",
        store
            .create_connector(&Connector {
                name: unique("other"),
                ..conn.clone()
            })
            .await,
    )?;
    store
        .delete_connector(&conn.id)
        .await
        .ctx("delete_connector")?;
    Ok(())
}

/// The watermark only moves forward; a lower value is a no-op, an unknown connector an error.
pub async fn watermark_is_monotonic(store: Store) -> CheckResult {
    let t = t0();
    let conn = new_connector("wm", t);
    store
        .create_connector(&conn)
        .await
        .ctx("create_connector")?;
    let watermark = |store: Store, id: String| async move {
        store
            .get_connector(&id)
            .await
            .ctx("get_connector")?
            .ok_or("connector vanished".to_owned())
            .map(|c| c.watermark)
    };
    let t2 = t + Duration::milliseconds(2) + Duration::nanoseconds(5);
    store.advance_watermark(&conn.id, t2).await.ctx("advance")?;
    expect_eq(
        "after advancing",
        watermark(store.clone(), conn.id.clone()).await?,
        Some(t2),
    )?;
    store
        .advance_watermark(&conn.id, t)
        .await
        .ctx("advance backwards")?;
    expect_eq(
        "after a lower value",
        watermark(store.clone(), conn.id.clone()).await?,
        Some(t2),
    )?;
    store
        .advance_watermark(&conn.id, t2)
        .await
        .ctx("advance to the same")?;
    let t3 = t2 + Duration::nanoseconds(1000);
    store.advance_watermark(&conn.id, t3).await.ctx("advance")?;
    expect_eq(
        "after advancing again",
        watermark(store.clone(), conn.id.clone()).await?,
        Some(t3),
    )?;
    is_not_found(
        "advancing an unknown connector",
        store.advance_watermark(&unique("c-none"), t3).await,
    )?;
    store
        .delete_connector(&conn.id)
        .await
        .ctx("delete_connector")?;
    Ok(())
}

/// Names are unique across create and rename; a rename frees the old name.
pub async fn names_are_unique_and_rename_frees_the_old_name(store: Store) -> CheckResult {
    let t = t0();
    let (n1, n2, n3) = (unique("n1"), unique("n2"), unique("n3"));
    let a = connector(&unique("c-a"), &n1, t);
    store.create_connector(&a).await.ctx("create a")?;
    let b = connector(&unique("c-b"), &n1, t);
    is_name_taken("create b with a's name", store.create_connector(&b).await)?;
    expect_eq(
        "b after a refused create",
        store.get_connector(&b.id).await.ctx("get b")?,
        None,
    )?;
    let b = Connector {
        name: n2.clone(),
        ..b
    };
    store.create_connector(&b).await.ctx("create b")?;
    is_name_taken(
        "rename a to b's name",
        store
            .update_connector(&Connector {
                name: n2.clone(),
                ..a.clone()
            })
            .await,
    )?;
    expect_eq(
        "a after a refused rename",
        store.get_connector(&a.id).await.ctx("get a")?,
        Some(a.clone()),
    )?;
    let renamed = Connector {
        name: n3.clone(),
        updated_at: t + Duration::seconds(1),
        ..a.clone()
    };
    store.update_connector(&renamed).await.ctx("rename a")?;
    expect_eq(
        "find old name",
        store.find_connector_by_name(&n1).await.ctx("find")?,
        None,
    )?;
    expect_eq(
        "find new name",
        store.find_connector_by_name(&n3).await.ctx("find")?,
        Some(renamed.clone()),
    )?;
    let c = connector(&unique("c-c"), &n1, t);
    store
        .create_connector(&c)
        .await
        .ctx("create c with the freed name")?;
    is_not_found(
        "update of an unknown connector",
        store
            .update_connector(&connector(&unique("c-none"), &unique("n"), t))
            .await,
    )?;
    for id in [&a.id, &b.id, &c.id] {
        store.delete_connector(id).await.ctx("delete_connector")?;
    }
    Ok(())
}

/// Four CLIs creating connectors with one name at once: one wins.
pub async fn concurrent_creates_with_one_name_one_wins(store: Store) -> CheckResult {
    let t = t0();
    let name = unique("n-race");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let (store, conn) = (store.clone(), connector(&unique("c-nrace"), &name, t));
        tasks.spawn(async move { (conn.id.clone(), store.create_connector(&conn).await) });
    }
    let mut winners = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined.ctx("join")? {
            (id, Ok(())) => winners.push(id),
            (_, Err(StateError::NameTaken { .. })) => {}
            (_, Err(e)) => return Err(format!("create_connector: unexpected error: {e}")),
        }
    }
    expect_eq("winners", winners.len(), 1)?;
    let found = store
        .find_connector_by_name(&name)
        .await
        .ctx("find")?
        .map(|c| c.id);
    expect_eq("owner of the name", found.as_ref(), winners.first())?;
    store
        .delete_connector(&winners[0])
        .await
        .ctx("delete_connector")?;
    Ok(())
}

/// A settings change keeps the lister's watermark and last sync, and removes cleared optional settings.
pub async fn update_keeps_watermark_and_last_sync(store: Store) -> CheckResult {
    let t = t0();
    let conn = new_connector("upd", t);
    store
        .create_connector(&conn)
        .await
        .ctx("create_connector")?;
    store.advance_watermark(&conn.id, t).await.ctx("advance")?;
    let r = run(&conn.id, t, 3);
    store.record_sync_run(&r).await.ctx("record_sync_run")?;
    // The caller's copy is stale (no watermark, no last sync): the update must not write those back.
    let mut changed = conn.clone();
    changed.status = ConnectorStatus::Paused;
    changed.template_version = None;
    changed.source.role_arn = None;
    changed.source.external_id = None;
    changed.updated_at = t + Duration::seconds(5);
    store
        .update_connector(&changed)
        .await
        .ctx("update_connector")?;
    let want = Connector {
        watermark: Some(t),
        last_sync: Some(r),
        ..changed
    };
    expect_eq(
        "updated connector",
        store.get_connector(&conn.id).await.ctx("get")?,
        Some(want),
    )?;
    store
        .delete_connector(&conn.id)
        .await
        .ctx("delete_connector")?;
    Ok(())
}

/// Deleting a connector removes its ledger, sync runs, name and sync lease; the count says how many items.
pub async fn delete_removes_everything(store: Store) -> CheckResult {
    let t = t0();
    let conn = new_connector("del", t);
    store
        .create_connector(&conn)
        .await
        .ctx("create_connector")?;
    for i in 0..30 {
        claim(&store, &entry(&conn.id, &format!("d/{i}.csv"), "\"d\"", t)).await?;
    }
    store
        .record_sync_run(&run(&conn.id, t, 1))
        .await
        .ctx("record_sync_run")?;
    store
        .record_sync_run(&run(&conn.id, t + Duration::seconds(1), 2))
        .await
        .ctx("record_sync_run")?;
    let lease = super::model::sync_lease_name(&conn.id);
    expect(
        "lease",
        store
            .acquire_lease(&lease, "lister-1", t, Duration::minutes(10))
            .await
            .ctx("acquire_lease")?,
    )?;

    expect_eq(
        "items removed",
        store
            .delete_connector(&conn.id)
            .await
            .ctx("delete_connector")?,
        33,
    )?;
    expect_eq(
        "connector",
        store.get_connector(&conn.id).await.ctx("get")?,
        None,
    )?;
    expect_eq(
        "by name",
        store.find_connector_by_name(&conn.name).await.ctx("find")?,
        None,
    )?;
    expect_eq(
        "files",
        store
            .list_files(&conn.id, None)
            .await
            .ctx("list_files")?
            .len(),
        0,
    )?;
    expect_eq(
        "sync runs",
        store
            .list_sync_runs(&conn.id, 10)
            .await
            .ctx("list_sync_runs")?
            .len(),
        0,
    )?;
    let listed = store.list_connectors().await.ctx("list_connectors")?;
    expect(
        "deleted connector still listed",
        !listed.iter().any(|c| c.id == conn.id),
    )?;
    expect(
        "sync lease still held",
        store
            .acquire_lease(&lease, "lister-2", t, Duration::minutes(10))
            .await
            .ctx("acquire_lease")?,
    )?;
    store
        .release_lease(&lease, "lister-2")
        .await
        .ctx("release_lease")?;
    let reuse = connector(&unique("c-reuse"), &conn.name, t);
    store
        .create_connector(&reuse)
        .await
        .ctx("create with the deleted connector's name")?;
    expect_eq(
        "second delete",
        store
            .delete_connector(&conn.id)
            .await
            .ctx("delete_connector")?,
        0,
    )?;
    expect_eq(
        "delete of the reuse",
        store
            .delete_connector(&reuse.id)
            .await
            .ctx("delete_connector")?,
        1,
    )
}

// ---------------------------------------------------------------------------------------------------------
// Templates, sync runs, leases
// ---------------------------------------------------------------------------------------------------------

/// Every put is a new version; the latest is the default.
pub async fn templates_are_versioned(store: Store) -> CheckResult {
    let t = t0();
    let id = unique("tpl");
    let (v1, v2) = (template("orders")?, template("orders_v2")?);
    expect_eq(
        "first version",
        store
            .put_template(&id, "source 1", &v1, t)
            .await
            .ctx("put_template")?,
        1,
    )?;
    let later = t + Duration::seconds(1);
    expect_eq(
        "second version",
        store
            .put_template(&id, "source 2", &v2, later)
            .await
            .ctx("put_template")?,
        2,
    )?;
    let latest = store
        .get_template(&id, None)
        .await
        .ctx("get_template")?
        .ok_or("latest missing")?;
    expect_eq(
        "latest",
        (
            latest.version,
            latest.source.as_str(),
            &latest.template,
            latest.created_at,
        ),
        (2, "source 2", &v2, later),
    )?;
    let first = store
        .get_template(&id, Some(1))
        .await
        .ctx("get_template")?
        .ok_or("v1 missing")?;
    expect_eq(
        "v1",
        (
            first.id.as_str(),
            first.version,
            first.source.as_str(),
            &first.template,
            first.created_at,
        ),
        (id.as_str(), 1, "source 1", &v1, t),
    )?;
    expect_eq(
        "v3",
        store.get_template(&id, Some(3)).await.ctx("get_template")?,
        None,
    )?;
    expect_eq(
        "unknown template",
        store
            .get_template(&unique("tpl-none"), None)
            .await
            .ctx("get_template")?,
        None,
    )?;
    let all = store.list_templates().await.ctx("list_templates")?;
    expect_eq(
        "listed version",
        all.iter().find(|s| s.id == id).map(|s| s.version),
        Some(2),
    )
}

/// Four writers adding versions of one template at once get four distinct versions.
pub async fn concurrent_template_versions_are_distinct(store: Store) -> CheckResult {
    let t = t0();
    let id = unique("tpl-race");
    let tpl = template("race")?;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..4 {
        let (store, id, tpl) = (store.clone(), id.clone(), tpl.clone());
        tasks.spawn(async move {
            store
                .put_template(&id, &format!("source {i}"), &tpl, t)
                .await
        });
    }
    let mut versions = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        versions.push(joined.ctx("join")?.ctx("put_template")?);
    }
    versions.sort_unstable();
    expect_eq("versions", versions, vec![1, 2, 3, 4])
}

/// Sync runs list newest first, and the last recorded is the connector's last sync.
pub async fn sync_runs_newest_first(store: Store) -> CheckResult {
    let t = t0();
    let conn = new_connector("runs", t);
    store
        .create_connector(&conn)
        .await
        .ctx("create_connector")?;
    let runs: Vec<SyncRun> = (0..3)
        .map(|i| run(&conn.id, t + Duration::seconds(i), i as u64))
        .collect();
    // Recorded out of order: listing sorts by start time, not by insertion.
    for r in [&runs[1], &runs[0], &runs[2]] {
        store.record_sync_run(r).await.ctx("record_sync_run")?;
    }
    let newest_first = vec![runs[2].clone(), runs[1].clone(), runs[0].clone()];
    expect_eq(
        "all runs",
        store
            .list_sync_runs(&conn.id, 10)
            .await
            .ctx("list_sync_runs")?,
        newest_first.clone(),
    )?;
    expect_eq(
        "two runs",
        store
            .list_sync_runs(&conn.id, 2)
            .await
            .ctx("list_sync_runs")?,
        newest_first[..2].to_vec(),
    )?;
    expect_eq(
        "no runs",
        store
            .list_sync_runs(&conn.id, 0)
            .await
            .ctx("list_sync_runs")?,
        vec![],
    )?;
    let last = store
        .get_connector(&conn.id)
        .await
        .ctx("get")?
        .and_then(|c| c.last_sync);
    expect_eq("last sync", last, Some(runs[2].clone()))?;
    let mut failed = run(&conn.id, t + Duration::seconds(10), 0);
    failed.error = Some("cannot list s3://source-bucket/incoming/: AccessDenied".into());
    store
        .record_sync_run(&failed)
        .await
        .ctx("record_sync_run")?;
    expect_eq(
        "latest run",
        store
            .list_sync_runs(&conn.id, 1)
            .await
            .ctx("list_sync_runs")?,
        vec![failed],
    )?;
    is_not_found(
        "recording for an unknown connector",
        store.record_sync_run(&run(&unique("c-none"), t, 0)).await,
    )?;
    store
        .delete_connector(&conn.id)
        .await
        .ctx("delete_connector")?;
    Ok(())
}

/// A named lease has one holder until it expires; the holder may renew and release it.
pub async fn lease_is_exclusive_until_expiry(store: Store) -> CheckResult {
    let t = t0();
    let name = unique("lease");
    let ttl = Duration::minutes(1);
    let acquire = |owner: &'static str, at: DateTime<Utc>| {
        let (store, name) = (store.clone(), name.clone());
        async move {
            store
                .acquire_lease(&name, owner, at, ttl)
                .await
                .ctx("acquire_lease")
        }
    };
    expect("a takes the free lease", acquire("a", t).await?)?;
    expect(
        "b must not take a live lease",
        !acquire("b", t + Duration::seconds(30)).await?,
    )?;
    expect(
        "a renews its own lease",
        acquire("a", t + Duration::seconds(30)).await?,
    )?;
    expect(
        "b must not take the renewed lease",
        !acquire("b", t + Duration::seconds(80)).await?,
    )?;
    expect(
        "b must not take it at its last instant",
        !acquire("b", t + Duration::seconds(90)).await?,
    )?;
    expect(
        "b takes the expired lease",
        acquire("b", t + Duration::seconds(91)).await?,
    )?;
    store
        .release_lease(&name, "a")
        .await
        .ctx("release by a former holder")?;
    expect(
        "a must not take b's lease",
        !acquire("a", t + Duration::seconds(92)).await?,
    )?;
    store.release_lease(&name, "b").await.ctx("release_lease")?;
    expect(
        "a takes the released lease",
        acquire("a", t + Duration::seconds(92)).await?,
    )?;
    store.release_lease(&name, "a").await.ctx("release_lease")
}

/// Six listers firing at once for one connector: one takes the lease.
pub async fn concurrent_lease_acquisitions_one_wins(store: Store) -> CheckResult {
    let t = t0();
    let name = unique("lease-race");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..6 {
        let (store, name) = (store.clone(), name.clone());
        tasks.spawn(async move {
            store
                .acquire_lease(&name, &format!("l{i}"), t, Duration::minutes(1))
                .await
        });
    }
    let mut taken = 0;
    while let Some(joined) = tasks.join_next().await {
        taken += usize::from(joined.ctx("join")?.ctx("acquire_lease")?);
    }
    expect_eq("concurrent acquisitions won", taken, 1)
}
