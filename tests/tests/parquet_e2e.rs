//! The Parquet output end to end on the emulator, read back by DuckDB (an independent reader, from the
//! project's virtualenv): files of every format imported through the lister and the worker give Parquet objects
//! whose column types are the template's and whose values are the source's typed rows; and a file imported in
//! three pieces gives the same rows as a one-pass import, leaving nothing staged.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use chrono::{Duration, NaiveDate, TimeZone, Utc};
use s3_importer_core::sync::contract::fixtures::{self, gzip, piece_time};
use s3_importer_tests::deployment::{Deployment, Options};
use s3_importer_tests::{repo_root, s3_client, PYTHON_ENV};
use serde_json::{json, Value};

const PREFIX: &str = "lake";

const TEMPLATE: &str = r#"
name = "typed"
primary_key = ["id"]

[[fields]]
name = "id"
type = "string"
required = true

[[fields]]
name = "qty"
type = "integer"

[[fields]]
name = "amount"
type = "decimal"
precision = 12
scale = 2

[[fields]]
name = "paid"
type = "boolean"

[[fields]]
name = "day"
type = "date"

[[fields]]
name = "at"
type = "timestamp"

[[fields]]
name = "kind"
type = "enum"
values = ["retail", "wholesale"]

[[fields]]
name = "note"
type = "string"
"#;

/// One source row, as written in the files.
struct Source {
    id: String,
    qty: Option<i64>,
    /// Cents.
    amount: i64,
    paid: bool,
    day: NaiveDate,
    /// Local time at +02:00, with microseconds.
    at: String,
    /// The same instant, µs since the epoch.
    at_micros: i64,
    kind: &'static str,
    note: String,
}

fn sources(prefix: &str, n: i64) -> Result<Vec<Source>> {
    let base = Utc
        .with_ymd_and_hms(2024, 3, 1, 8, 0, 0)
        .single()
        .context("base time")?;
    let first_day = NaiveDate::from_ymd_opt(2024, 1, 1).context("first day")?;
    (1..=n)
        .map(|i| {
            let utc = base + Duration::minutes(i) + Duration::microseconds(i * 1001);
            let local =
                utc.with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).context("offset")?);
            Ok(Source {
                id: format!("{prefix}-{i:04}"),
                qty: (i % 5 != 0).then_some(i * 3 - 50),
                amount: i * 1234 - 20_050,
                paid: i % 2 == 0,
                day: first_day + Duration::days(i),
                at: local.format("%Y-%m-%dT%H:%M:%S%.6f%:z").to_string(),
                at_micros: utc.timestamp_micros(),
                kind: if i % 3 == 0 { "wholesale" } else { "retail" },
                note: format!("żółw 🐢 {i}"),
            })
        })
        .collect()
}

/// Cents as the decimal text DuckDB prints for DECIMAL(12,2).
fn decimal(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
}

fn delimited(rows: &[Source], sep: char) -> Vec<u8> {
    let mut out =
        ["id", "qty", "amount", "paid", "day", "at", "kind", "note"].join(&sep.to_string()) + "\n";
    for r in rows {
        let cells = [
            r.id.clone(),
            r.qty.map(|q| q.to_string()).unwrap_or_default(),
            decimal(r.amount),
            r.paid.to_string(),
            r.day.to_string(),
            r.at.clone(),
            r.kind.to_owned(),
            r.note.clone(),
        ];
        out += &cells.join(&sep.to_string());
        out.push('\n');
    }
    out.into_bytes()
}

fn object(r: &Source) -> Value {
    json!({
        "id": r.id, "qty": r.qty, "amount": decimal(r.amount), "paid": r.paid,
        "day": r.day.to_string(), "at": r.at, "kind": r.kind, "note": r.note,
    })
}

/// The rows DuckDB should read: id, qty, amount, paid, day, at (µs), kind, note, record number.
fn expected(rows: &[Source]) -> Vec<Value> {
    rows.iter()
        .zip(1u64..)
        .map(|(r, record)| {
            json!([
                r.id,
                r.qty,
                decimal(r.amount),
                r.paid,
                r.day.to_string(),
                r.at_micros,
                r.kind,
                r.note,
                record
            ])
        })
        .collect()
}

/// A source file: its name, its rows and its body.
type File = (&'static str, Vec<Source>, Vec<u8>);

/// What DuckDB reads: `DESCRIBE` (column, type) and the rows.
type Read = (Vec<(String, String)>, Vec<Value>);

/// The files of every format.
fn files() -> Result<Vec<File>> {
    let csv = sources("csv", 120)?;
    let tsv = sources("tsv", 90)?;
    let jsonl = sources("jsonl", 75)?;
    let array = sources("json", 60)?;
    let gz = sources("gz", 150)?;
    let lines: String = jsonl.iter().map(|r| format!("{}\n", object(r))).collect();
    let items: Vec<Value> = array.iter().map(object).collect();
    Ok(vec![
        ("a.csv", delimited(&csv, ','), csv),
        ("b.tsv", delimited(&tsv, '\t'), tsv),
        ("c.jsonl", lines.into_bytes(), jsonl),
        ("d.json", serde_json::to_vec_pretty(&items)?, array),
        ("e.csv.gz", gzip(&delimited(&gz, ','))?, gz),
    ]
    .into_iter()
    .map(|(name, body, rows)| (name, rows, body))
    .collect())
}

/// What DuckDB reads from the Parquet objects downloaded under `dir`: `DESCRIBE` and the rows of `key`'s
/// file (by `_source_key`), ordered by id.
fn duckdb(dir: &Path, source_key: &str) -> Result<Read> {
    let python = std::env::var_os(PYTHON_ENV)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    let script = r#"
import duckdb, json, sys
src = "read_parquet('%s/**/*.parquet', hive_partitioning = true)" % sys.argv[1]
con = duckdb.connect()
describe = [[r[0], r[1]] for r in con.sql("DESCRIBE SELECT * FROM " + src).fetchall()]
rows = con.execute(
    'SELECT "id", "qty", CAST("amount" AS VARCHAR), "paid", CAST("day" AS VARCHAR), epoch_us("at"), "kind", '
    '"note", "_source_row" '
    "FROM " + src + " WHERE _source_key = ? ORDER BY id", [sys.argv[2]]).fetchall()
print(json.dumps({"describe": describe, "rows": rows}))
"#;
    let out = Command::new(&python)
        .args(["-c", script])
        .arg(dir)
        .arg(source_key)
        .output()
        .with_context(|| format!("run {} (make venv installs duckdb)", python.display()))?;
    if !out.status.success() {
        bail!(
            "DuckDB failed (make venv installs duckdb from infra/local/requirements.txt): {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let answer: Value = serde_json::from_slice(&out.stdout).context("DuckDB's answer")?;
    let describe = answer["describe"]
        .as_array()
        .context("describe")?
        .iter()
        .map(|c| {
            (
                c[0].as_str().unwrap_or_default().to_owned(),
                c[1].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let rows = answer["rows"].as_array().context("rows")?.clone();
    Ok((describe, rows))
}

/// Downloads the Parquet objects of `d`'s connector into `dir`, keeping their partition paths; returns their
/// keys below the connector's prefix.
async fn download(d: &Deployment, dir: &Path) -> Result<Vec<String>> {
    let root = format!("{PREFIX}/connector={}/", d.connector.id);
    let keys = d.output_keys(&root).await?;
    let bucket = &d.provisioned.names.output_bucket;
    for key in &keys {
        let body = d.read_output(&format!("s3://{bucket}/{key}")).await?;
        let path = dir.join(key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, body)?;
    }
    Ok(keys)
}

async fn deployment() -> Result<Deployment> {
    let d = Deployment::with(Options {
        template: TEMPLATE.to_owned(),
        ..Options::default()
    })
    .await?;
    d.use_s3_parquet(PREFIX).await?;
    Ok(d)
}

#[tokio::test]
async fn duckdb_reads_every_format_with_the_template_types_and_the_source_values() -> Result<()> {
    let d = deployment().await?;
    let files = files()?;
    for (name, _, body) in &files {
        d.put(name, body).await?;
    }
    ensure!(d.sync().await?.enqueued == files.len() as u64);
    let drained = d.drain().await?;
    ensure!(drained.retried.is_empty(), "{drained:?}");

    let dir = tempfile::tempdir()?;
    let keys = download(&d, dir.path()).await?;
    ensure!(keys.len() == files.len(), "one object per file: {keys:?}");
    ensure!(
        keys.iter()
            .all(|k| k.contains("/date=") && k.ends_with(".parquet")),
        "{keys:?}"
    );
    for (name, rows, _) in &files {
        let entry = d.file(name).await?;
        ensure!(
            entry.rows_imported == rows.len() as u64,
            "{name}: {entry:#?}"
        );
        let (describe, got) = duckdb(dir.path(), &Deployment::key(name))?;
        let types: Vec<(&str, &str)> = describe
            .iter()
            .map(|(n, t)| (n.as_str(), t.as_str()))
            .collect();
        for want in [
            ("id", "VARCHAR"),
            ("qty", "BIGINT"),
            ("amount", "DECIMAL(12,2)"),
            ("paid", "BOOLEAN"),
            ("day", "DATE"),
            ("at", "TIMESTAMP WITH TIME ZONE"),
            ("kind", "VARCHAR"),
            ("note", "VARCHAR"),
            ("_source_row", "BIGINT"),
            ("_source_last_modified", "TIMESTAMP WITH TIME ZONE"),
        ] {
            ensure!(types.contains(&want), "{name}: {want:?} not in {types:?}");
        }
        ensure!(
            got == expected(rows),
            "{name}: DuckDB read\n{:#?}\nexpected\n{:#?}",
            got.iter().take(3).collect::<Vec<_>>(),
            expected(rows).iter().take(3).collect::<Vec<_>>()
        );
    }
    ensure!(d
        .output_keys(&format!("{PREFIX}/_staging/"))
        .await?
        .is_empty());
    Ok(())
}

#[tokio::test]
async fn a_file_in_three_pieces_gives_the_rows_of_one_pass_and_leaves_nothing_staged() -> Result<()>
{
    let (one, d) = tokio::try_join!(deployment(), deployment())?;
    let rows = sources("p", 300)?;
    let body = delimited(&rows, ',');
    for d in [&one, &d] {
        d.put("p.csv", &body).await?;
        ensure!(d.sync().await?.enqueued == 1);
    }
    one.drain().await?;
    let mut worker = d.worker.clone();
    worker.settings = fixtures::piecewise(&worker.settings, 100);
    let drained = d.drain_in_pieces(&worker, piece_time()).await?;
    ensure!(drained.retried.is_empty(), "{drained:?}");
    ensure!(drained.delivered >= 3, "in pieces: {drained:?}");
    let entry = d.file("p.csv").await?;
    ensure!(entry.rows_imported == 300, "{entry:#?}");

    let (dir_one, dir) = (tempfile::tempdir()?, tempfile::tempdir()?);
    ensure!(download(&one, dir_one.path()).await?.len() == 1);
    ensure!(download(&d, dir.path()).await?.len() == 1);
    let key = Deployment::key("p.csv");
    let (_, want) = duckdb(dir_one.path(), &key)?;
    let (_, got) = duckdb(dir.path(), &key)?;
    ensure!(want == expected(&rows), "one pass: {:?}", want.first());
    ensure!(
        got == want,
        "pieces: {} rows, one pass: {}",
        got.len(),
        want.len()
    );
    ensure!(
        d.output_keys(&format!("{PREFIX}/_staging/"))
            .await?
            .is_empty(),
        "staged objects left: {:?}",
        d.output_keys(&format!("{PREFIX}/_staging/")).await?
    );
    ensure!(
        d.open_uploads(PREFIX).await?.is_empty(),
        "open uploads left"
    );
    Ok(())
}

/// The partition layout ties each object to its connector and its source's date, and the objects are read
/// by the crate's own reader too (every row of every object, lineage included).
#[tokio::test]
async fn objects_carry_lineage_and_sit_in_their_date_partition() -> Result<()> {
    let d = deployment().await?;
    let rows = sources("l", 10)?;
    d.put("l.csv", &delimited(&rows, ',')).await?;
    ensure!(d.sync().await?.enqueued == 1);
    d.drain().await?;
    let entry = d.file("l.csv").await?;
    let keys = d
        .output_keys(&format!("{PREFIX}/connector={}/", d.connector.id))
        .await?;
    let [key] = keys.as_slice() else {
        bail!("one object expected: {keys:?}");
    };
    let date = entry.last_modified.format("%Y-%m-%d").to_string();
    ensure!(
        key.contains(&format!("/date={date}/")),
        "{key} not in the partition of {date}"
    );
    let out = s3_client(&d.sdk)
        .get_object()
        .bucket(&d.provisioned.names.output_bucket)
        .key(key)
        .send()
        .await?;
    ensure!(out.content_type() == Some("application/vnd.apache.parquet"));
    let body = out.body.collect().await?.to_vec();
    let read = s3_importer_tests::parquet_rows::parquet_rows(body)?;
    ensure!(read.len() == 10);
    for (row, record) in read.iter().zip(1i64..) {
        ensure!(row["_source_key"] == json!(Deployment::key("l.csv")));
        ensure!(row["_source_etag"] == json!(entry.version.etag));
        ensure!(row["_source_row"] == json!(record));
        ensure!(row["_source_last_modified"] == json!(entry.last_modified.timestamp_micros()));
        ensure!(row["_extra"].is_null());
    }
    Ok(())
}
