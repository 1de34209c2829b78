//! PostgreSQL: the full import (binary COPY into a staging table, the upsert into a table with the template's
//! primary key, the file version recorded, one commit) against `psql \copy` of the same CSV into a table of
//! the same columns with no key, index or lineage: the server's raw load speed.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use anyhow::{Context, Result};
use s3_importer_core::pipeline::ImportOptions;
use s3_importer_core::sync::memory::MemoryDestination;
use s3_importer_core::sync::ports::Destination;
use s3_importer_core::sync::{DestinationConfig, PostgresConnection};
use s3_importer_postgres::{connect, ddl, ConnectionSettings, PostgresDestination, TableRef};
use s3_importer_tests::postgres::{postgres, psql, PG_USER};

use crate::import::{import, job, template};
use crate::measure::{self, Run};
use crate::{Figures, Paired};

/// Environment of the importer's child: the server's URL.
const URL_ENV: &str = "BENCH_PG_URL";

/// Measures `runs` pairs (importer, `psql \copy`), interleaved.
pub async fn bench(csv: &Path, runs: usize) -> Result<Figures> {
    let server = postgres().await;
    let url = server.url();
    let settings = ConnectionSettings::from_url(&url)?;
    let template = template()?;
    let client = connect(&settings).await?;
    let mut paired = Paired::default();
    for run in 1..=runs {
        let spec = format!("public.bench_orders_{run}");
        let table = TableRef::parse(&spec)?;
        let raw = format!("bench_raw_{run}");
        client
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS {}; DROP TABLE IF EXISTS {raw}",
                table.quoted()
            ))
            .await?;
        let mut owned = connect(&settings).await?;
        ddl::create(&mut owned, &template, &table).await?;
        let columns: Vec<String> = template
            .fields
            .iter()
            .map(|f| {
                format!(
                    "{} {}",
                    ddl::quote_ident(&f.name),
                    ddl::column_type(&f.field_type)
                )
            })
            .collect();
        client
            .batch_execute(&format!("CREATE TABLE {raw} ({})", columns.join(", ")))
            .await?;

        let importer = measure::run(
            Command::new(std::env::current_exe()?)
                .args(["--child", "postgres"])
                .arg(csv)
                .arg(&spec)
                .arg(format!("run-{run}"))
                .env(URL_ENV, &url),
            "the PostgreSQL import",
        )?;
        let copy = format!(
            "\\copy {raw} FROM '{}' WITH (FORMAT csv, HEADER true)",
            csv.display().to_string().replace('\'', "''")
        );
        let baseline = measure::run(
            Command::new(psql().map_err(anyhow::Error::msg)?)
                .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1"])
                .args(["-p", &server.port().to_string(), "-U", PG_USER])
                .args(["-d", "postgres", "-c", &copy]),
            "psql \\copy",
        )?;
        let rows = measure::number(&importer, 0, "rows")?;
        let count = |sql: String| {
            let client = &client;
            async move {
                let row = client.query_one(&sql, &[]).await?;
                Ok::<i64, anyhow::Error>(row.get(0))
            }
        };
        let in_table = count(format!("SELECT count(*) FROM {}", table.quoted())).await?;
        let in_raw = count(format!("SELECT count(*) FROM {raw}")).await?;
        anyhow::ensure!(
            u64::try_from(in_table)? == rows && in_raw == in_table,
            "rows: imported {rows}, in the table {in_table}, copied by psql {in_raw}"
        );
        report(run, rows, &importer, &baseline);
        paired.push(rows, importer, baseline);
        client
            .batch_execute(&format!("DROP TABLE {}; DROP TABLE {raw}", table.quoted()))
            .await?;
    }
    paired.figures()
}

fn report(run: usize, rows: u64, importer: &Run, baseline: &Run) {
    eprintln!(
        "postgres run {run}: {rows} rows | importer {:.1}s ({:.0} rows/s, {:.1} MiB peak) | psql \\copy {:.1}s ({:.0} rows/s)",
        importer.secs,
        rows as f64 / importer.secs,
        importer.peak_rss_mib,
        baseline.secs,
        rows as f64 / baseline.secs,
    );
}

/// Child: imports `csv` into `table` (already created) as file version `etag`; prints the rows imported.
pub async fn child(csv: &Path, table: &str, etag: &str) -> Result<()> {
    let url = std::env::var(URL_ENV).with_context(|| format!("{URL_ENV} is not set"))?;
    let settings = ConnectionSettings::from_url(&url)?;
    let template = template()?;
    let destination_config = DestinationConfig::Postgres {
        table: table.to_owned(),
        connection: PostgresConnection::Env {
            var: URL_ENV.into(),
        },
    };
    let job = job(csv, etag, &template, destination_config)?;
    let table = TableRef::parse(table)?;
    let rejects: Arc<dyn Destination> = Arc::new(MemoryDestination::default());
    let destination = PostgresDestination::new(settings, table, rejects);
    let mut rows = destination.open_rows(&job).await?;
    let imported = import(csv, template, ImportOptions::default(), rows.as_mut()).await?;
    println!("{imported}");
    Ok(())
}
