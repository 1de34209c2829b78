//! The destination contract: a file version written twice is visible once, a file written in suspended and
//! resumed pieces gives one pass's output, and the error report is the same in one piece or several; then,
//! by how the destination shows rows, either upserts (visible at once, kept on abort, an older file version
//! never overwrites a newer one) or staged outputs (invisible until finish, replaced whole by a retry,
//! nothing left by an abort). Checked on [`Destination`] adapters.
//!
//! To run it against a new adapter, implement [`DestinationFixture`] (the destination settings, and
//! reading back what a reader sees) and call
//! [`destination_contract_tests!`](crate::destination_contract_tests) in a test file with an expression
//! giving the fixture (`impl Future<Output = Result<Arc<dyn DestinationFixture>, String>>`) and the kind,
//! `upserts`, `staged` or `transactional` (rows invisible until finish: a SQL table; its fixture's
//! `open_uploads` lists the file versions with rows staged).

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};

use super::{expect, expect_eq, unique, CheckResult, Ctx};
use crate::sink::{ErrorReportEntry, RejectedRow, RowBatch};
use crate::sync::model::{Checkpoint, DestinationConfig, ObjectMeta, Source};
use crate::sync::ports::{Destination, FileJob};
use crate::template::Template;
use crate::{ErrorCode, Position, RowError};

/// Where a row came from, for destinations that record it per row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowLineage {
    /// Source key.
    pub source_key: String,
    /// Source ETag, quoted as listed.
    pub source_etag: String,
    /// Source LastModified, epoch milliseconds.
    pub source_last_modified_ms: i64,
    /// Record number in the source file.
    pub record: u64,
}

/// A row as a reader of the destination sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct VisibleRow {
    /// The row's JSON object, without the destination's own attributes (keys, lineage).
    pub row: serde_json::Value,
    /// Its lineage, where the destination keeps one per row (`None` for files of rows).
    pub lineage: Option<RowLineage>,
}

/// What a check needs from the backend behind a [`Destination`] adapter.
#[async_trait]
pub trait DestinationFixture: Send + Sync {
    /// The adapter under test.
    fn destination(&self) -> Arc<dyn Destination>;
    /// The destination settings of the connectors the checks write for.
    fn config(&self) -> DestinationConfig;
    /// The connector's rows a reader sees now, in a stable order: primary-key order for a table, file order
    /// (outputs by name) for files.
    async fn visible_rows(&self, connector_id: &str) -> Result<Vec<VisibleRow>, String>;
    /// The connector's outputs (objects, files) a reader sees; empty for destinations of rows, not files.
    async fn visible_outputs(&self, connector_id: &str) -> Result<Vec<String>, String>;
    /// The connector's uploads started and neither completed nor aborted; empty where nothing is staged.
    async fn open_uploads(&self, connector_id: &str) -> Result<Vec<String>, String>;
    /// The entries of the error report at `location` (as a reject sink's `finish` returned it); `None` when
    /// no report is there.
    async fn report(&self, location: &str) -> Result<Option<Vec<ErrorReportEntry>>, String>;
}

/// A fixture under test, shared by the checks.
pub type Fixture = Arc<dyn DestinationFixture>;

/// One `#[tokio::test]` per destination contract check that applies to the destination's kind:
/// - `upserts`: rows keyed by primary key, visible as soon as written (a table);
/// - `staged`: one output per file version, visible only when complete (an object, a file);
/// - `transactional`: rows keyed by primary key, visible only when the file is finished, all at once (a SQL
///   table written in one transaction per file version); the ordering guard applies.
///
/// `$fixture` is an expression evaluated afresh in each test, of type
/// `impl Future<Output = Result<Arc<dyn DestinationFixture>, String>>`. This macro holds the suite's one
/// list of checks; the runner table ([`CHECKS`], [`run_check`]) is generated from it too.
#[macro_export]
macro_rules! destination_contract_tests {
    ($fixture:expr, upserts) => {
        $crate::destination_contract_tests!(
            @suite [tests [$crate::sync::contract::destination] $fixture] on off off
        );
    };
    ($fixture:expr, staged) => {
        $crate::destination_contract_tests!(
            @suite [tests [$crate::sync::contract::destination] $fixture] off on off
        );
    };
    ($fixture:expr, transactional) => {
        $crate::destination_contract_tests!(
            @suite [tests [$crate::sync::contract::destination] $fixture] off off on
        );
    };
    (@suite [$($mode:tt)*] $upserts:ident $staged:ident $transactional:ident) => {
        $crate::__contract_suite! { $($mode)*;
            DESTINATION_CHECKS on [] {
                rewriting_a_file_version_gives_the_same_rows_once,
                suspended_and_resumed_pieces_give_one_pass_output,
                an_error_report_is_the_same_in_one_piece_or_several,
            }
            UPSERT_CHECKS $upserts [] {
                rows_are_visible_once_written_and_kept_on_abort,
                an_older_file_version_never_overwrites_a_newer_one,
            }
            STAGED_CHECKS $staged [] {
                output_is_invisible_until_finish,
                a_retry_replaces_the_output_whole,
                abort_leaves_nothing_and_an_empty_file_gives_an_empty_output,
            }
            TRANSACTIONAL_CHECKS $transactional [] {
                rows_are_invisible_until_finish_then_all_visible,
                an_older_file_version_never_overwrites_a_newer_one_at_finish,
                a_failed_attempt_or_a_redone_piece_leaves_no_rows,
                abort_leaves_no_rows_and_nothing_staged,
            }
        }
    };
}

crate::destination_contract_tests!(@suite [runner Fixture] on on on);

// ---------------------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------------------

/// No upload or staged row of `connector` is left after `step`.
async fn expect_nothing_staged(fixture: &Fixture, connector: &str, step: &str) -> CheckResult {
    expect_eq(
        &format!("staged after {step}"),
        fixture.open_uploads(connector).await?,
        Vec::<String>::new(),
    )
}

/// No row of `connector` is visible (`what`: when, for the failure message).
async fn expect_no_rows(fixture: &Fixture, connector: &str, what: &str) -> CheckResult {
    expect_eq(what, fixture.visible_rows(connector).await?.len(), 0)
}

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).single().unwrap_or_default()
}

/// A job for one file version of `connector_id`, from its first piece.
fn job(
    fixture: &Fixture,
    connector_id: &str,
    key: &str,
    etag: &str,
    last_modified: DateTime<Utc>,
) -> Result<FileJob, String> {
    let template = Template::from_toml(
        "name = \"orders\"\nprimary_key = [\"id\"]\n\n[[fields]]\nname = \"id\"\ntype = \"string\"\nrequired = true\n\n\
         [[fields]]\nname = \"qty\"\ntype = \"integer\"\n",
    )
    .map_err(|e| format!("fixture template: {e}"))?;
    let source = Source {
        account_id: "123456789012".into(),
        bucket: "source-bucket".into(),
        region: "us-east-1".into(),
        prefix: None,
        role_arn: None,
        external_id: None,
        versions: false,
    };
    let object = ObjectMeta::new(key, etag, 100, last_modified);
    Ok(super::fixtures::file_job(
        connector_id,
        source,
        fixture.config(),
        template,
        &object,
    ))
}

/// The same job, as piece `piece` carrying the sinks' states the piece before left.
fn piece(
    job: &FileJob,
    piece: u32,
    states: (Option<serde_json::Value>, Option<serde_json::Value>),
) -> FileJob {
    let mut job = job.clone();
    job.entry.checkpoint = Some(Checkpoint {
        piece,
        rows_state: states.0,
        rejects_state: states.1,
        ..Checkpoint::default()
    });
    job
}

fn pos(record: u64) -> Position {
    Position {
        record,
        line: record + 1,
        byte: record * 10,
    }
}

/// `(record, row JSON)` pairs as a batch.
fn batch(rows: &[(u64, String)]) -> RowBatch {
    let mut batch = RowBatch::default();
    for (record, json) in rows {
        batch.push_row(pos(*record), json.as_bytes());
    }
    batch
}

fn row(id: &str, qty: i64) -> String {
    serde_json::json!({ "id": id, "qty": qty }).to_string()
}

/// Records `first..=last` as rows with ids equal to their record numbers.
fn rows(first: u64, last: u64) -> Vec<(u64, String)> {
    (first..=last)
        .map(|r| (r, row(&r.to_string(), r as i64 * 10)))
        .collect()
}

fn rejected(record: u64) -> RejectedRow {
    RejectedRow {
        position: pos(record),
        errors: vec![
            RowError::column("qty", ErrorCode::FieldCountMismatch, "bad"),
            RowError::record(ErrorCode::InvalidJson, "worse"),
        ],
    }
}

async fn write_file(fixture: &Fixture, job: &FileJob, rows: &[(u64, String)]) -> CheckResult {
    let mut sink = fixture
        .destination()
        .open_rows(job)
        .await
        .ctx("open_rows")?;
    sink.write_batch(&batch(rows)).await.ctx("write_batch")?;
    sink.finish().await.ctx("finish")
}

fn values(rows: &[VisibleRow]) -> Vec<&serde_json::Value> {
    rows.iter().map(|r| &r.row).collect()
}

fn json(rows: &[(u64, String)]) -> Result<Vec<serde_json::Value>, String> {
    rows.iter()
        .map(|(_, r)| serde_json::from_str(r).ctx("fixture row"))
        .collect()
}

/// What a piece leaves: the rows' and the report's states (suspended), or the report's location (finished).
type PieceEnd = (
    Option<serde_json::Value>,
    Option<serde_json::Value>,
    Option<String>,
);

/// One piece: opens both sinks for `job`, writes `rows` and `rejects`, then suspends both (returning their
/// states) or, for the last piece, finishes both (returning the report's location).
async fn run_piece(
    fixture: &Fixture,
    job: &FileJob,
    rows: &[(u64, String)],
    rejects: &[RejectedRow],
    last: bool,
) -> Result<PieceEnd, String> {
    let dest = fixture.destination();
    let mut sink = dest.open_rows(job).await.ctx("open_rows")?;
    let mut report = dest.open_rejects(job).await.ctx("open_rejects")?;
    sink.write_batch(&batch(rows)).await.ctx("write_batch")?;
    report.write_rejects(rejects).await.ctx("write_rejects")?;
    if last {
        let location = report.finish().await.ctx("finish the report")?;
        sink.finish().await.ctx("finish the rows")?;
        Ok((None, None, location))
    } else {
        let rows_state = sink.suspend().await.ctx("suspend the rows")?;
        let rejects_state = report.suspend().await.ctx("suspend the report")?;
        Ok((rows_state, rejects_state, None))
    }
}

async fn report_of(
    fixture: &Fixture,
    location: Option<String>,
) -> Result<Vec<ErrorReportEntry>, String> {
    let location = location.ok_or("finish gave no report location although rows were rejected")?;
    fixture
        .report(&location)
        .await?
        .ok_or_else(|| format!("no report at {location}"))
}

// ---------------------------------------------------------------------------------------------------------
// Every destination
// ---------------------------------------------------------------------------------------------------------

/// Writing a file version again (a redelivery) gives the same visible rows and outputs, once.
pub async fn rewriting_a_file_version_gives_the_same_rows_once(fixture: Fixture) -> CheckResult {
    let connector = unique("c-rewrite");
    let job = job(
        &fixture,
        &connector,
        "in/orders 1.csv",
        "\"etag-1\"",
        at(1_700_000_000),
    )?;
    let written = rows(1, 3);
    write_file(&fixture, &job, &written).await?;
    let first = fixture.visible_rows(&connector).await?;
    let outputs = fixture.visible_outputs(&connector).await?;
    expect_eq(
        "visible rows",
        values(&first),
        json(&written)?.iter().collect(),
    )?;
    write_file(&fixture, &job, &written).await?;
    expect_eq(
        "visible rows after the rewrite",
        fixture.visible_rows(&connector).await?,
        first,
    )?;
    expect_eq(
        "outputs after the rewrite",
        fixture.visible_outputs(&connector).await?,
        outputs,
    )
}

/// A file written in three pieces (each suspended, the next resumed from its states) shows the same rows
/// and the same error report as the file written in one pass.
pub async fn suspended_and_resumed_pieces_give_one_pass_output(fixture: Fixture) -> CheckResult {
    let batches = [rows(1, 3), rows(4, 6), rows(7, 9)];
    let rejects = [[rejected(10)], [rejected(11)], [rejected(12)]];
    let one_pass = unique("c-one-pass");
    let whole = job(
        &fixture,
        &one_pass,
        "in/big.csv",
        "\"b\"",
        at(1_700_000_000),
    )?;
    let all_rows: Vec<(u64, String)> = batches.iter().flatten().cloned().collect();
    let all_rejects: Vec<RejectedRow> = rejects.iter().flatten().cloned().collect();
    let (_, _, location) = run_piece(&fixture, &whole, &all_rows, &all_rejects, true).await?;
    let want_report = report_of(&fixture, location).await?;

    let pieces = unique("c-pieces");
    let first = job(&fixture, &pieces, "in/big.csv", "\"b\"", at(1_700_000_000))?;
    let states = run_piece(&fixture, &first, &batches[0], &rejects[0], false).await?;
    let second = piece(&first, 1, (states.0, states.1));
    let states = run_piece(&fixture, &second, &batches[1], &rejects[1], false).await?;
    let third = piece(&first, 2, (states.0, states.1));
    let (_, _, location) = run_piece(&fixture, &third, &batches[2], &rejects[2], true).await?;
    let got_report = report_of(&fixture, location).await?;

    let want_rows = fixture.visible_rows(&one_pass).await?;
    expect_eq(
        "rows of the one pass",
        values(&want_rows),
        json(&all_rows)?.iter().collect(),
    )?;
    expect_eq(
        "rows of the pieces",
        fixture.visible_rows(&pieces).await?,
        want_rows,
    )?;
    expect_eq("error report of the pieces", got_report, want_report)?;
    expect_eq(
        "outputs of the pieces",
        fixture.visible_outputs(&pieces).await?.len(),
        fixture.visible_outputs(&one_pass).await?.len(),
    )
}

/// The error report of a file read in pieces holds each piece's entries once, even when the last piece is
/// redone (a retry from its checkpoint after the rows failed to finish); it equals the one-piece report. A
/// file with no rejected row has no report.
pub async fn an_error_report_is_the_same_in_one_piece_or_several(fixture: Fixture) -> CheckResult {
    let dest = fixture.destination();
    let clean = job(
        &fixture,
        &unique("c-clean"),
        "in/clean.csv",
        "\"c\"",
        at(1_700_000_000),
    )?;
    let mut report = dest.open_rejects(&clean).await.ctx("open_rejects")?;
    report.write_rejects(&[]).await.ctx("write_rejects")?;
    expect_eq(
        "location of a report with no rejects",
        report.finish().await.ctx("finish")?,
        None,
    )?;

    let whole = job(
        &fixture,
        &unique("c-whole"),
        "in/big.csv",
        "\"b\"",
        at(1_700_000_000),
    )?;
    let mut report = dest.open_rejects(&whole).await.ctx("open_rejects")?;
    report
        .write_rejects(&[rejected(1), rejected(5)])
        .await
        .ctx("write_rejects")?;
    let want = report_of(&fixture, report.finish().await.ctx("finish")?).await?;
    expect_eq(
        "one-piece report (two entries per row)",
        want.iter().map(|e| (e.record, e.line)).collect::<Vec<_>>(),
        vec![(1, 2), (1, 2), (5, 6), (5, 6)],
    )?;

    let first = job(
        &fixture,
        &unique("c-pieces"),
        "in/big.csv",
        "\"b\"",
        at(1_700_000_000),
    )?;
    let mut report = dest.open_rejects(&first).await.ctx("open_rejects")?;
    report
        .write_rejects(&[rejected(1)])
        .await
        .ctx("write_rejects")?;
    let state = report.suspend().await.ctx("suspend")?;
    let second = piece(&first, 1, (None, state));
    let mut locations = Vec::new();
    for attempt in 1..=2 {
        let mut report = dest.open_rejects(&second).await.ctx("open_rejects")?;
        report
            .write_rejects(&[rejected(5)])
            .await
            .ctx("write_rejects")?;
        let location = report.finish().await.ctx("finish")?;
        let got = report_of(&fixture, location.clone()).await?;
        expect_eq(
            &format!("report after attempt {attempt} of the last piece"),
            &got,
            &want,
        )?;
        locations.push(location);
    }
    expect(
        "both attempts name one location",
        locations[0] == locations[1],
    )?;

    // A retry from the start with no rejects says there is no report.
    let mut report = dest.open_rejects(&first).await.ctx("open_rejects")?;
    expect_eq(
        "location of a rejection-free retry",
        report.finish().await.ctx("finish")?,
        None,
    )
}

// ---------------------------------------------------------------------------------------------------------
// Upserts
// ---------------------------------------------------------------------------------------------------------

/// Upserted rows are visible before `finish` (once flushed: a sink that batches by its own rules, a webhook,
/// sends what it holds when the pipeline flushes it), and an abort does not take them back.
pub async fn rows_are_visible_once_written_and_kept_on_abort(fixture: Fixture) -> CheckResult {
    let connector = unique("c-upsert");
    let job = job(&fixture, &connector, "in/a.csv", "\"a\"", at(1_700_000_000))?;
    let written = rows(1, 2);
    let mut sink = fixture
        .destination()
        .open_rows(&job)
        .await
        .ctx("open_rows")?;
    sink.write_batch(&batch(&written))
        .await
        .ctx("write_batch")?;
    sink.flush().await.ctx("flush")?;
    let want = json(&written)?;
    expect_eq(
        "rows before finish",
        values(&fixture.visible_rows(&connector).await?),
        want.iter().collect(),
    )?;
    sink.abort().await.ctx("abort")?;
    expect_eq(
        "rows after abort",
        values(&fixture.visible_rows(&connector).await?),
        want.iter().collect(),
    )
}

/// One row per primary key, the later row of a batch winning; a row from an older file version (by source
/// LastModified) imported late never overwrites a newer version's, new keys are written; a re-import of the
/// newer version changes nothing; an even newer version replaces the row. Each row keeps its lineage.
pub async fn an_older_file_version_never_overwrites_a_newer_one(fixture: Fixture) -> CheckResult {
    let connector = unique("c-order");
    let newer = job(
        &fixture,
        &connector,
        "in/orders.csv",
        "\"new\"",
        at(1_700_000_100),
    )?;
    let newer_rows = vec![(1, row("1", 10)), (2, row("a#b", 20)), (3, row("1", 11))];
    write_file(&fixture, &newer, &newer_rows).await?;
    let older = job(
        &fixture,
        &connector,
        "in/orders.csv",
        "\"old\"",
        at(1_700_000_000),
    )?;
    write_file(&fixture, &older, &[(1, row("1", 1)), (2, row("2", 2))]).await?;

    let lineage = |etag: &str, secs: i64, record| RowLineage {
        source_key: "in/orders.csv".into(),
        source_etag: etag.into(),
        source_last_modified_ms: secs * 1000,
        record,
    };
    let by_id = |rows: &[VisibleRow], id: &str| {
        rows.iter()
            .find(|r| r.row.get("id").and_then(|v| v.as_str()) == Some(id))
            .cloned()
            .ok_or_else(|| format!("no visible row with id {id:?} in {rows:?}"))
    };
    let visible = fixture.visible_rows(&connector).await?;
    expect_eq("number of rows", visible.len(), 3)?;
    let one = by_id(&visible, "1")?;
    expect_eq(
        "row 1: the later row of the newer file",
        one.row,
        serde_json::json!({"id": "1", "qty": 11}),
    )?;
    expect_eq(
        "row 1's lineage",
        one.lineage,
        Some(lineage("\"new\"", 1_700_000_100, 3)),
    )?;
    expect_eq(
        "row a#b",
        by_id(&visible, "a#b")?.row,
        serde_json::json!({"id": "a#b", "qty": 20}),
    )?;
    let two = by_id(&visible, "2")?;
    expect_eq(
        "row 2, new, from the older file",
        two.lineage,
        Some(lineage("\"old\"", 1_700_000_000, 2)),
    )?;

    write_file(&fixture, &newer, &newer_rows).await?;
    expect_eq(
        "rows after re-importing the newer file",
        fixture.visible_rows(&connector).await?,
        visible,
    )?;

    let newest = job(
        &fixture,
        &connector,
        "in/orders.csv",
        "\"newest\"",
        at(1_700_000_200),
    )?;
    write_file(&fixture, &newest, &[(1, row("1", 99))]).await?;
    let one = by_id(&fixture.visible_rows(&connector).await?, "1")?;
    expect_eq(
        "row 1 after the newest file",
        one.row,
        serde_json::json!({"id": "1", "qty": 99}),
    )
}

// ---------------------------------------------------------------------------------------------------------
// Staged outputs
// ---------------------------------------------------------------------------------------------------------

fn padded(record: u64) -> String {
    serde_json::json!({ "id": record.to_string(), "qty": 1, "pad": "p".repeat(1000) }).to_string()
}

/// 6 MB of rows (several parts, where parts are 5 MiB) stay invisible until `finish`, then appear whole, in
/// file order, as one output.
pub async fn output_is_invisible_until_finish(fixture: Fixture) -> CheckResult {
    let connector = unique("c-staged");
    let job = job(
        &fixture,
        &connector,
        "in/orders 1.csv",
        "\"etag-1\"",
        at(1_700_000_000),
    )?;
    let mut sink = fixture
        .destination()
        .open_rows(&job)
        .await
        .ctx("open_rows")?;
    let mut all = Vec::new();
    for b in 0..6u64 {
        let rows: Vec<(u64, String)> = (1..=1000)
            .map(|i| (b * 1000 + i, padded(b * 1000 + i)))
            .collect();
        sink.write_batch(&batch(&rows)).await.ctx("write_batch")?;
        all.extend(rows);
    }
    expect_no_rows(&fixture, &connector, "rows before finish").await?;
    expect_eq(
        "outputs before finish",
        fixture.visible_outputs(&connector).await?,
        Vec::<String>::new(),
    )?;
    sink.finish().await.ctx("finish")?;
    let visible = fixture.visible_rows(&connector).await?;
    expect_eq("rows after finish", visible.len(), all.len())?;
    expect(
        "rows after finish are the rows written, in order",
        values(&visible) == json(&all)?.iter().collect::<Vec<_>>(),
    )?;
    expect_eq(
        "outputs after finish",
        fixture.visible_outputs(&connector).await?.len(),
        1,
    )
}

/// A retry of a file version replaces its output whole: only the retry's rows are visible, in one output.
pub async fn a_retry_replaces_the_output_whole(fixture: Fixture) -> CheckResult {
    let connector = unique("c-retry");
    let job = job(
        &fixture,
        &connector,
        "in/orders.csv",
        "\"etag-1\"",
        at(1_700_000_000),
    )?;
    write_file(&fixture, &job, &rows(1, 3)).await?;
    let retry = vec![(1, row("1", 2))];
    write_file(&fixture, &job, &retry).await?;
    expect_eq(
        "rows after the retry",
        values(&fixture.visible_rows(&connector).await?),
        json(&retry)?.iter().collect(),
    )?;
    expect_eq(
        "outputs after the retry",
        fixture.visible_outputs(&connector).await?.len(),
        1,
    )
}

/// An aborted file leaves no rows, no output and no open upload (even after a part was sent); a file with
/// no rows gives one empty output.
pub async fn abort_leaves_nothing_and_an_empty_file_gives_an_empty_output(
    fixture: Fixture,
) -> CheckResult {
    let failed = unique("c-abort");
    let job_failed = job(
        &fixture,
        &failed,
        "in/bad.csv",
        "\"e-bad\"",
        at(1_700_000_000),
    )?;
    let mut sink = fixture
        .destination()
        .open_rows(&job_failed)
        .await
        .ctx("open_rows")?;
    let big = serde_json::json!({ "id": "1", "pad": "p".repeat(6 << 20) }).to_string();
    sink.write_batch(&batch(&[(1, big)]))
        .await
        .ctx("write_batch")?;
    sink.abort().await.ctx("abort")?;
    expect_no_rows(&fixture, &failed, "rows after abort").await?;
    expect_eq(
        "outputs after abort",
        fixture.visible_outputs(&failed).await?,
        Vec::<String>::new(),
    )?;
    expect_nothing_staged(&fixture, &failed, "abort").await?;

    let empty = unique("c-empty");
    let job_empty = job(
        &fixture,
        &empty,
        "in/empty.csv",
        "\"e-empty\"",
        at(1_700_000_000),
    )?;
    let mut sink = fixture
        .destination()
        .open_rows(&job_empty)
        .await
        .ctx("open_rows")?;
    sink.finish().await.ctx("finish")?;
    expect_no_rows(&fixture, &empty, "rows of an empty file").await?;
    expect_eq(
        "outputs of an empty file",
        fixture.visible_outputs(&empty).await?.len(),
        1,
    )
}

// ---------------------------------------------------------------------------------------------------------
// Transactional rows (a SQL table: rows staged, then visible all at once when the file is finished)
// ---------------------------------------------------------------------------------------------------------

/// Visible rows, sorted by their JSON text: the checks below compare sets of rows, whatever the key order.
async fn sorted_rows(fixture: &Fixture, connector: &str) -> Result<Vec<serde_json::Value>, String> {
    let mut rows: Vec<serde_json::Value> = values(&fixture.visible_rows(connector).await?)
        .into_iter()
        .cloned()
        .collect();
    rows.sort_by_key(|r| r.to_string());
    Ok(rows)
}

fn sorted_json(rows: &[(u64, String)]) -> Result<Vec<serde_json::Value>, String> {
    let mut rows = json(rows)?;
    rows.sort_by_key(|r| r.to_string());
    Ok(rows)
}

/// Opens the row sink of `job`, writes `rows`, and leaves it as a crash would: neither finished nor aborted.
async fn crash_after(fixture: &Fixture, job: &FileJob, rows: &[(u64, String)]) -> CheckResult {
    let mut sink = fixture
        .destination()
        .open_rows(job)
        .await
        .ctx("open_rows")?;
    sink.write_batch(&batch(rows)).await.ctx("write_batch")?;
    drop(sink);
    Ok(())
}

/// Rows written and suspended stay invisible through every piece; `finish` shows them all, and leaves
/// nothing staged.
pub async fn rows_are_invisible_until_finish_then_all_visible(fixture: Fixture) -> CheckResult {
    let connector = unique("c-tx");
    let first = job(&fixture, &connector, "in/a.csv", "\"a\"", at(1_700_000_000))?;
    let dest = fixture.destination();
    let mut sink = dest.open_rows(&first).await.ctx("open_rows")?;
    sink.write_batch(&batch(&rows(1, 3)))
        .await
        .ctx("write_batch")?;
    sink.write_batch(&batch(&rows(4, 6)))
        .await
        .ctx("write_batch")?;
    expect_no_rows(&fixture, &connector, "rows before suspend").await?;
    let state = sink.suspend().await.ctx("suspend")?;
    expect_no_rows(&fixture, &connector, "rows after suspend").await?;
    let mut sink = dest
        .open_rows(&piece(&first, 1, (state, None)))
        .await
        .ctx("open_rows")?;
    sink.write_batch(&batch(&rows(7, 8)))
        .await
        .ctx("write_batch")?;
    expect_no_rows(&fixture, &connector, "rows before finish").await?;
    sink.finish().await.ctx("finish")?;
    expect_eq(
        "rows after finish",
        sorted_rows(&fixture, &connector).await?,
        sorted_json(&rows(1, 8))?,
    )?;
    expect_nothing_staged(&fixture, &connector, "finish").await
}

/// The ordering guard of [`an_older_file_version_never_overwrites_a_newer_one`], for rows merged at finish.
pub async fn an_older_file_version_never_overwrites_a_newer_one_at_finish(
    fixture: Fixture,
) -> CheckResult {
    an_older_file_version_never_overwrites_a_newer_one(fixture).await
}

/// A first attempt that crashed, and a piece that crashed before its checkpoint and was redone, leave none
/// of their rows: only the rows of the successful attempt's pieces are visible, once.
pub async fn a_failed_attempt_or_a_redone_piece_leaves_no_rows(fixture: Fixture) -> CheckResult {
    let connector = unique("c-redo");
    let first = job(&fixture, &connector, "in/r.csv", "\"r\"", at(1_700_000_000))?;
    crash_after(
        &fixture,
        &first,
        &[(1, row("stale-1", 1)), (2, row("stale-2", 2))],
    )
    .await?;
    let dest = fixture.destination();
    let mut sink = dest.open_rows(&first).await.ctx("open_rows")?;
    sink.write_batch(&batch(&rows(1, 2)))
        .await
        .ctx("write_batch")?;
    let state = sink.suspend().await.ctx("suspend")?;
    let second = piece(&first, 1, (state, None));
    let crashed = [(3, row("x-3", 3)), (4, row("x-4", 4)), (5, row("x-5", 5))];
    crash_after(&fixture, &second, &crashed).await?;
    let mut sink = dest
        .open_rows(&second)
        .await
        .ctx("open_rows (redone piece)")?;
    sink.write_batch(&batch(&rows(3, 4)))
        .await
        .ctx("write_batch")?;
    sink.finish().await.ctx("finish")?;
    expect_eq(
        "rows after the redone piece",
        sorted_rows(&fixture, &connector).await?,
        sorted_json(&rows(1, 4))?,
    )?;
    expect_nothing_staged(&fixture, &connector, "finish").await
}

/// An abort (after a suspended piece) leaves no row and nothing staged, and does not count as an import:
/// the file retried from the start is imported; an empty file finishes with no row.
pub async fn abort_leaves_no_rows_and_nothing_staged(fixture: Fixture) -> CheckResult {
    let connector = unique("c-tx-abort");
    let first = job(
        &fixture,
        &connector,
        "in/bad.csv",
        "\"bad\"",
        at(1_700_000_000),
    )?;
    let dest = fixture.destination();
    let mut sink = dest.open_rows(&first).await.ctx("open_rows")?;
    sink.write_batch(&batch(&rows(1, 3)))
        .await
        .ctx("write_batch")?;
    let state = sink.suspend().await.ctx("suspend")?;
    let mut sink = dest
        .open_rows(&piece(&first, 1, (state, None)))
        .await
        .ctx("open_rows")?;
    sink.write_batch(&batch(&rows(4, 5)))
        .await
        .ctx("write_batch")?;
    expect(
        "rows are staged before the abort",
        !fixture.open_uploads(&connector).await?.is_empty(),
    )?;
    sink.abort().await.ctx("abort")?;
    expect_no_rows(&fixture, &connector, "rows after abort").await?;
    expect_nothing_staged(&fixture, &connector, "abort").await?;
    write_file(&fixture, &first, &rows(1, 2)).await?;
    expect_eq(
        "rows of the retry",
        sorted_rows(&fixture, &connector).await?,
        sorted_json(&rows(1, 2))?,
    )?;

    let empty = unique("c-tx-empty");
    let job_empty = job(&fixture, &empty, "in/empty.csv", "\"e\"", at(1_700_000_000))?;
    let mut sink = dest.open_rows(&job_empty).await.ctx("open_rows")?;
    sink.finish().await.ctx("finish")?;
    expect_no_rows(&fixture, &empty, "rows of an empty file").await
}
