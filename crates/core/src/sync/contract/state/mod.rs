//! The state contract: the checks every state store passes (connectors, templates, the file ledger, leases,
//! sync history), run against the in-memory store and against DynamoDB on the emulator, so both agree on
//! every conditional outcome.
//!
//! To run it against a new store, call [`state_store_contract_tests!`](crate::state_store_contract_tests)
//! in a test file with an expression giving a fresh store (`impl Future<Output = Result<Store, String>>`);
//! a backend whose conditional writes are not atomic under concurrency adds
//! `concurrency_ignored = "why"`. [`state_store_contract`] runs every check on one store.

mod connectors;
mod ledger;
mod templates_runs_leases;

pub use connectors::*;
pub use ledger::*;
pub use templates_runs_leases::*;

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, Timelike, Utc};

#[allow(unused_imports)] // for the checks' modules, which import `super::*`
use super::expect;
use super::{expect_eq, unique, CheckResult, Ctx};
#[allow(unused_imports)]
use crate::sync::model::{
    Checkpoint, CheckpointStart, Connector, ConnectorStatus, DestinationConfig, FileStatus,
    FileVersion, LedgerEntry, ObjectMeta, Reconcile, ReconcileProgress, ReconcileRun, SkipReason,
    Source, SyncRun,
};
use crate::sync::ports::{ClaimOutcome, StartOutcome, StateError, StateStore};
use crate::template::Template;
use crate::{Compression, FileFormat, Format};

/// A store under test, shared with spawned tasks.
pub type Store = Arc<dyn StateStore>;

/// One `#[tokio::test]` per state contract check. `$store` is an expression evaluated afresh in each test,
/// of type `impl Future<Output = Result<Arc<dyn StateStore>, String>>`.
///
/// With `concurrency_ignored = "why"`, the checks that race writers against each other
/// ([`CONCURRENCY_CHECKS`]) are generated with `#[ignore = "why"]`: for a backend that cannot keep
/// conditional writes atomic under concurrency (moto), so the gap shows as "ignored" instead of flaking.
///
/// This macro holds the suite's one list of checks; the runner table ([`CHECKS`], [`run_check`]) is
/// generated from it too.
///
/// ```ignore
/// s3_importer_core::state_store_contract_tests!(async {
///     Ok::<_, String>(std::sync::Arc::new(MemoryStateStore::new()) as std::sync::Arc<dyn StateStore>)
/// });
/// ```
#[macro_export]
macro_rules! state_store_contract_tests {
    ($store:expr) => {
        $crate::state_store_contract_tests!(@suite [tests [$crate::sync::contract::state] $store] []);
    };
    ($store:expr, concurrency_ignored = $reason:literal) => {
        $crate::state_store_contract_tests!(
            @suite [tests [$crate::sync::contract::state] $store] [#[ignore = $reason]]
        );
    };
    (@suite [$($mode:tt)*] [$($concurrency:tt)*]) => {
        $crate::__contract_suite! { $($mode)*;
            SEQUENTIAL_CHECKS on [] {
                claim_is_exclusive,
                entries_round_trip_exactly,
                mark_queued_only_moves_claimed,
                start_file_outcomes,
                expired_lease_can_be_taken_over,
                renew_extends_the_lease_and_keeps_the_checkpoint,
                checkpoint_hands_the_file_back_and_marks_the_continuation,
                finish_requires_lease_owner,
                release_returns_to_queued,
                reopen_only_from_the_given_state,
                dead_letter_fails_only_files_on_their_way,
                list_files_filters_by_status,
                get_files_over_100_ids,
                keys_with_unicode_and_1024_bytes,
                connectors_round_trip_exactly,
                watermark_is_monotonic,
                reconcile_progress_round_trips,
                names_are_unique_and_rename_frees_the_old_name,
                update_keeps_watermark_and_last_sync,
                delete_removes_everything,
                templates_are_versioned,
                sync_runs_newest_first,
                lease_is_exclusive_until_expiry,
            }
            // The checks that race several writers on one item.
            CONCURRENCY_CHECKS on [$($concurrency)*] {
                concurrent_claims_one_wins,
                concurrent_starts_one_wins,
                concurrent_creates_with_one_name_one_wins,
                concurrent_template_versions_are_distinct,
                concurrent_lease_acquisitions_one_wins,
            }
        }
    };
}

crate::state_store_contract_tests!(@suite [runner Store] []);

/// Runs every check (even after a failure) on one store and reports all failures.
pub async fn state_store_contract(store: Store) -> CheckResult {
    run_checks(store, CHECKS).await
}

// ---------------------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------------------

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
            versions: false,
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
        discovery: Default::default(),
        reconcile: None,
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
    let object = ObjectMeta::new(key, etag, 1234, at - Duration::minutes(3));
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
        // A reconciliation's counts round-trip with the run.
        reconciled: Some(ReconcileRun {
            listed: listed + 2,
            list_calls: 1,
            ledger_reads: listed,
            found: 1,
            enqueued: 1,
            missed_by_events: 0,
            found_late: 1,
            complete: true,
        }),
    }
}

/// Creates `conn`, the first step of the checks that need a connector.
async fn create_connector(store: &Store, conn: &Connector) -> CheckResult {
    store.create_connector(conn).await.ctx("create_connector")
}

/// Deletes connector `id` and all under it; returns how many items went. Checks clean up after themselves
/// ([`clean_up`]), since a real table is shared by many runs.
async fn delete_connector(store: &Store, id: &str) -> Result<u64, String> {
    store.delete_connector(id).await.ctx("delete_connector")
}

/// Checks the connector that `get_connector(id)` reads back.
async fn expect_connector(
    store: &Store,
    what: &str,
    id: &str,
    want: Option<Connector>,
) -> CheckResult {
    expect_eq(what, store.get_connector(id).await.ctx(what)?, want)
}

/// Deletes the check's connector at its end.
async fn clean_up(store: &Store, id: &str) -> CheckResult {
    delete_connector(store, id).await.map(drop)
}

/// A [`new_connector`], created in the store.
async fn create_new_connector(
    store: &Store,
    prefix: &str,
    at: DateTime<Utc>,
) -> Result<Connector, String> {
    let conn = new_connector(prefix, at);
    create_connector(store, &conn).await?;
    Ok(conn)
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
