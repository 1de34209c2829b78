//! The PostgreSQL destination end to end: the lister and the worker handlers on the emulator, the connection
//! read from a Secrets Manager secret there, rows written into a real PostgreSQL server
//! (`s3_importer_tests::postgres`). Each test has its own deployment and its own table.
//!
//! What a user of a table sees: a first import; an overwritten file updating its rows; an older file
//! arriving late not overwriting newer rows; a duplicate delivery writing nothing; a worker killed mid-file
//! leaving nothing visible and the redelivered message importing every row once; a file failing its
//! threshold leaving the table unchanged; a file imported in three pieces becoming visible in one commit; a
//! replay merging a file version again, as often as asked, with the result of one import.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use anyhow::{ensure, Context, Result};
use chrono::Duration;
use s3_importer_core::sync::contract::fixtures::{
    self, delimited, piece_time, rows, Fault, FaultyDestination, TEMPLATE,
};
use s3_importer_core::sync::ports::FileLedger;
use s3_importer_core::sync::redo::{self, ReplayFilter};
use s3_importer_core::sync::{Clock, FileStatus};
use s3_importer_core::template::Template;
use s3_importer_postgres::{connect, ddl, ConnectionSettings, TableRef};
use s3_importer_tests::deployment::{Deployment, Options};
use s3_importer_tests::postgres::postgres;
use tokio_postgres::Client;

/// A deployment whose connector writes to a table of its own, created from the template as `connector
/// create --create-table` does, and a client of the server.
struct PgDeployment {
    d: Deployment,
    db: Client,
    table: TableRef,
}

impl PgDeployment {
    async fn new() -> Result<Self> {
        Self::with(Options::default()).await
    }

    async fn with(options: Options) -> Result<Self> {
        let template = Template::from_toml(&options.template)?;
        let d = Deployment::with(options).await?;
        let server = postgres().await;
        let table = TableRef::new(
            "public",
            format!("e2e_{}", d.connector.id.replace('-', "_")),
        );
        let mut db = connect(&ConnectionSettings::from_url(&server.url())?).await?;
        ddl::create(&mut db, &template, &table).await?;
        d.use_postgres(&server.url(), &table.name).await?;
        Ok(Self { d, db, table })
    }

    /// `(id, qty, source ETag)` of every row, by id.
    async fn rows(&self) -> Result<Vec<(String, i64, String)>> {
        let sql = format!(
            "SELECT id, qty, _source_etag FROM {} ORDER BY id",
            self.table.quoted()
        );
        let found = self.db.query(&sql, &[]).await.context("read the table")?;
        Ok(found
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// The file versions recorded as merged into the table.
    async fn imports(&self) -> Result<i64> {
        let row = self
            .db
            .query_one(
                "SELECT count(*) FROM s3_importer.imports WHERE connector_id = $1",
                &[&self.d.connector.id],
            )
            .await?;
        Ok(row.get(0))
    }
}

/// The rows of `file` the template accepts (every 7th has a negative quantity), with `etag`.
fn accepted(file: &[(String, i64)], etag: &str) -> Vec<(String, i64, String)> {
    let mut rows: Vec<_> = file
        .iter()
        .filter(|(_, qty)| *qty >= 0)
        .map(|(id, qty)| (id.clone(), *qty, etag.to_owned()))
        .collect();
    rows.sort();
    rows
}

/// `file` with every quantity plus `delta` (rejected rows stay rejected).
fn bumped(file: &[(String, i64)], delta: i64) -> Vec<(String, i64)> {
    file.iter()
        .map(|(id, qty)| (id.clone(), if *qty >= 0 { qty + delta } else { *qty }))
        .collect()
}

#[tokio::test]
async fn first_import_then_an_overwrite_updates_the_rows_and_a_duplicate_delivery_writes_nothing(
) -> Result<()> {
    let pg = PgDeployment::new().await?;
    let d = &pg.d;
    let first = rows("f", 50);
    let etag = d.put("f.csv", &delimited(&first, ',')).await?;
    ensure!(d.sync().await?.enqueued == 1);
    d.drain().await?;
    ensure!(pg.rows().await? == accepted(&first, &etag), "first import");
    let entry = d.file("f.csv").await?;
    ensure!(
        entry.status == FileStatus::Imported
            && entry.rows_imported == 43
            && entry.rows_rejected == 7,
        "{entry:#?}"
    );

    // The file is overwritten with new quantities: its rows are updated, none added.
    let second = bumped(&first, 1000);
    let new_etag = d.put("f.csv", &delimited(&second, ',')).await?;
    ensure!(d.sync().await?.enqueued == 1);
    let messages = d.receive().await?;
    ensure!(messages.len() == 1);
    let response = d.deliver(&d.worker, &messages).await?;
    ensure!(response.batch_item_failures.is_empty(), "{response:?}");
    ensure!(
        pg.rows().await? == accepted(&second, &new_etag),
        "the overwrite"
    );

    // The same message again (SQS delivers at least once): nothing changes, nothing is recorded twice.
    let response = d.deliver(&d.worker, &messages).await?;
    ensure!(response.batch_item_failures.is_empty(), "{response:?}");
    d.settle(&messages, &response).await?;
    ensure!(pg.rows().await? == accepted(&second, &new_etag));
    ensure!(pg.imports().await? == 2, "one import per file version");
    Ok(())
}

#[tokio::test]
async fn a_replay_merges_the_file_version_again_and_two_leave_the_table_as_one() -> Result<()> {
    let pg = PgDeployment::new().await?;
    let d = &pg.d;
    let file = rows("r", 30);
    let etag = d.put("r.csv", &delimited(&file, ',')).await?;
    ensure!(d.sync().await?.enqueued == 1);
    d.drain().await?;
    let want = accepted(&file, &etag);
    ensure!(pg.rows().await? == want, "first import");
    // Rows lost on the table's side (a restore, a mistaken delete): a redelivery would write nothing, a
    // replay writes them again.
    pg.db
        .execute(&format!("DELETE FROM {}", pg.table.quoted()), &[])
        .await?;
    let filter = ReplayFilter {
        keys: vec![s3_importer_tests::deployment::Deployment::key("r.csv")],
        ..ReplayFilter::default()
    };
    for round in 1..=2u32 {
        let plan = filter.plan(d.state.list_files(&d.connector.id, None).await?);
        let done = redo::requeue(
            &*d.state,
            &*d.real_queue(),
            plan.replay,
            true,
            d.clock.now(),
        )
        .await?;
        ensure!(done.sent.len() == 1, "round {round}: {done:?}");
        let drained = d.drain().await?;
        ensure!(drained.acked == 1, "round {round}: {drained:?}");
        ensure!(
            pg.rows().await? == want,
            "round {round}: the rows as one import left them"
        );
        let entry = d.file("r.csv").await?;
        ensure!(
            (entry.status, entry.replays) == (FileStatus::Imported, round),
            "{entry:#?}"
        );
    }
    ensure!(pg.imports().await? == 1, "one imports row per file version");
    let replays: i32 = pg
        .db
        .query_one(
            "SELECT replays FROM s3_importer.imports WHERE connector_id = $1",
            &[&d.connector.id],
        )
        .await?
        .get(0);
    ensure!(replays == 2, "imports records the last replay: {replays}");
    Ok(())
}

#[tokio::test]
async fn an_older_file_arriving_late_does_not_overwrite_newer_rows() -> Result<()> {
    let pg = PgDeployment::new().await?;
    let d = &pg.d;
    let old = rows("k", 20);
    let new = bumped(&old, 500);
    d.put("a-old.csv", &delimited(&old, ',')).await?;
    // S3's LastModified has whole seconds: the newer file is a second later.
    tokio::time::sleep(StdDuration::from_millis(1100)).await;
    let new_etag = d.put("b-new.csv", &delimited(&new, ',')).await?;
    ensure!(d.sync().await?.enqueued == 2);
    let mut messages = Vec::new();
    while messages.len() < 2 {
        let got = d.receive().await?;
        ensure!(!got.is_empty(), "two messages queued");
        messages.extend(got);
    }
    // The newer file is imported first, the older one after it.
    messages.sort_by_key(|m| !m.body.contains("b-new.csv"));
    for message in &messages {
        let batch = std::slice::from_ref(message);
        let response = d.deliver(&d.worker, batch).await?;
        ensure!(response.batch_item_failures.is_empty(), "{response:?}");
        d.settle(batch, &response).await?;
    }
    ensure!(
        d.file("a-old.csv").await?.status == FileStatus::Imported,
        "the older file is imported (its rows lost to newer ones)"
    );
    ensure!(
        pg.rows().await? == accepted(&new, &new_etag),
        "the newer file's rows stay"
    );
    Ok(())
}

#[tokio::test]
async fn a_file_failing_its_threshold_leaves_the_table_unchanged() -> Result<()> {
    let pg = PgDeployment::with(Options {
        template: format!("{TEMPLATE}\n[on_error]\nmax_rejected_rows = 3\n"),
        ..Options::default()
    })
    .await?;
    let d = &pg.d;
    let good = rows("g", 20); // 2 rejected
    let etag = d.put("good.csv", &delimited(&good, ',')).await?;
    d.sync().await?;
    d.drain().await?;
    let before = pg.rows().await?;
    ensure!(before == accepted(&good, &etag));

    // The 4th rejected row (record 28) fails the file after two batches of 10 rows were written (staged).
    let bad = bumped(&rows("g", 300), 7);
    d.put("bad.csv", &delimited(&bad, ',')).await?;
    d.sync().await?;
    let mut worker = d.worker.clone();
    worker.settings.batch_rows = 10;
    d.drain_with(&worker).await?;
    let entry = d.file("bad.csv").await?;
    ensure!(entry.status == FileStatus::Failed, "{entry:#?}");
    ensure!(pg.rows().await? == before, "the table is unchanged");
    Ok(())
}

#[tokio::test]
async fn a_worker_killed_mid_file_leaves_nothing_visible_and_the_redelivery_imports_each_row_once(
) -> Result<()> {
    let pg = PgDeployment::new().await?;
    let d = &pg.d;
    let file = rows("w", 400);
    let etag = d.put("w.csv", &delimited(&file, ',')).await?;
    ensure!(d.sync().await?.enqueued == 1);
    let messages = d.receive().await?;
    ensure!(messages.len() == 1);

    // The worker stages 150 rows, then hangs and is killed.
    let mut bad = d.worker_with(Arc::new(FaultyDestination::new(
        d.real_destination(),
        Fault::HoldAfter(150),
    )));
    bad.settings.batch_rows = 50;
    let run = d.deliver_with_deadline(&bad, &messages, Duration::minutes(5));
    ensure!(
        tokio::time::timeout(StdDuration::from_secs(5), run)
            .await
            .is_err(),
        "the worker should still be running when killed"
    );
    ensure!(pg.rows().await?.is_empty(), "nothing visible");

    // The message comes back after its visibility timeout and the dead worker's lease has run out.
    d.expire_visibility(&messages).await?;
    d.clock.advance(Duration::minutes(7));
    let drained = d.drain().await?;
    ensure!(drained.retried.is_empty(), "{drained:?}");
    ensure!(pg.rows().await? == accepted(&file, &etag));
    ensure!(pg.imports().await? == 1);
    Ok(())
}

#[tokio::test]
async fn a_file_in_three_pieces_becomes_visible_in_one_commit() -> Result<()> {
    let pg = PgDeployment::new().await?;
    let d = &pg.d;
    let file = rows("p", 120); // 103 accepted: pieces of 40, 40 and 23
    let etag = d.put("p.csv", &delimited(&file, ',')).await?;
    ensure!(d.sync().await?.enqueued == 1);
    let mut worker = d.worker.clone();
    worker.settings = fixtures::piecewise(&worker.settings, 40);
    let mut pieces = 0;
    loop {
        let messages = d.receive().await?;
        ensure!(messages.len() == 1 && pieces < 10, "pieces: {pieces}");
        let response = d
            .deliver_with_deadline(&worker, &messages, piece_time())
            .await?;
        ensure!(d.settle(&messages, &response).await?.is_empty());
        pieces += 1;
        if d.file("p.csv").await?.status == FileStatus::Imported {
            break;
        }
        ensure!(
            pg.rows().await?.is_empty(),
            "nothing visible after piece {pieces}"
        );
    }
    ensure!(pieces >= 3, "the file took {pieces} pieces");
    ensure!(pg.rows().await? == accepted(&file, &etag));
    ensure!(pg.imports().await? == 1);
    Ok(())
}
