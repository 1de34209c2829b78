//! DynamoDB on the emulator: the first `rows` rows of the bench CSV through the DynamoDB destination (one
//! conditional PutItem per row, `S3I_DYNAMODB_WRITE_CONCURRENCY` in flight) against boto3's `batch_writer`
//! (BatchWriteItem, 25 unconditional puts a request) on the same rows. The emulator's cost per request
//! dominates both, so the requests each sends per 1,000 rows are counted too.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use s3_importer_aws::destination::AwsDestination;
use s3_importer_aws::records::create_records_table;
use s3_importer_core::pipeline::ImportOptions;
use s3_importer_core::sync::ports::Destination;
use s3_importer_core::sync::DestinationConfig;
use s3_importer_tests::emulator;
use s3_importer_tests::postgres::python;
use s3_importer_tests::recording::Recorder;
use s3_importer_tests::{dynamodb_client, s3_client};

use crate::import::{import, job, template};
use crate::measure::{self, Run};
use crate::{Figures, Paired};

/// The baseline: the same CSV rows as items of the same key (`pk`) and types, through `batch_writer`.
/// Prints the rows written and the BatchWriteItem requests sent.
const BOTO3: &str = r#"
import csv, sys
from decimal import Decimal
import boto3
source, table_name = sys.argv[1], sys.argv[2]
table = boto3.resource("dynamodb").Table(table_name)
requests = 0
def count(**kwargs):
    global requests
    requests += 1
table.meta.client.meta.events.register("before-call.dynamodb.BatchWriteItem", count)
rows = 0
with open(source, newline="") as f, table.batch_writer() as writer:
    for row in csv.DictReader(f):
        item = {"pk": "bench#" + row["id"], "connector_id": "bench"}
        for name, value in row.items():
            if value == "":
                continue
            if name in ("id", "quantity"):
                item[name] = int(value)
            elif name == "amount":
                item[name] = Decimal(value)
            elif name == "paid":
                item[name] = value == "true"
            else:
                item[name] = value
        writer.put_item(Item=item)
        rows += 1
print(rows, requests)
"#;

/// Measures `runs` pairs (importer, boto3), interleaved, on the first `rows` rows of `csv`.
pub async fn bench(csv: &Path, rows: u64, concurrency: usize, runs: usize) -> Result<Figures> {
    let subset = first_rows(csv, rows)?;
    let emulator = emulator().await;
    let cfg = emulator.sdk_config().await;
    let dynamodb = dynamodb_client(&cfg);
    let mut paired = Paired::default();
    for run in 1..=runs {
        let ours = format!("bench-records-{run}");
        let theirs = format!("bench-boto3-{run}");
        for table in [&ours, &theirs] {
            let _ = dynamodb.delete_table().table_name(table).send().await;
            create_records_table(&dynamodb, table).await?;
        }
        let importer = measure::run(
            Command::new(std::env::current_exe()?)
                .args(["--child", "dynamodb"])
                .arg(&subset)
                .arg(&ours)
                .arg(concurrency.to_string())
                .envs(emulator.env_vars()),
            "the DynamoDB import",
        )?;
        let baseline = measure::run(
            Command::new(python())
                .args(["-c", BOTO3])
                .arg(&subset)
                .arg(&theirs)
                .envs(emulator.env_vars()),
            "boto3 batch_writer",
        )?;
        let imported = measure::number(&importer, 0, "rows")?;
        let their_rows = measure::number(&baseline, 0, "rows")?;
        ensure!(
            imported == rows && their_rows == rows,
            "rows: {rows} in the file, {imported} imported, {their_rows} written by boto3"
        );
        for table in [&ours, &theirs] {
            let count = dynamodb
                .scan()
                .table_name(table)
                .select(aws_sdk_dynamodb::types::Select::Count)
                .into_paginator()
                .send()
                .try_collect()
                .await?
                .iter()
                .map(|page| u64::try_from(page.count).unwrap_or(0))
                .sum::<u64>();
            ensure!(count == rows, "{table} holds {count} items, not {rows}");
        }
        let requests = measure::number(&importer, 1, "requests")?;
        let their_requests = measure::number(&baseline, 1, "requests")?;
        report(
            run,
            rows,
            &importer,
            &baseline,
            requests as f64 * 1000.0 / rows as f64,
            their_requests as f64 * 1000.0 / rows as f64,
        );
        paired.push(rows, importer, baseline);
        paired.requests_per_1000_rows = Some((
            requests as f64 * 1000.0 / rows as f64,
            their_requests as f64 * 1000.0 / rows as f64,
        ));
        for table in [&ours, &theirs] {
            dynamodb.delete_table().table_name(table).send().await?;
        }
    }
    std::fs::remove_file(&subset)?;
    paired.figures()
}

fn report(run: usize, rows: u64, importer: &Run, baseline: &Run, ours: f64, theirs: f64) {
    eprintln!(
        "dynamodb run {run}: {rows} rows | importer {:.1}s ({:.0} rows/s, {ours:.0} requests per 1,000 rows) | boto3 batch_writer {:.1}s ({:.0} rows/s, {theirs:.0} requests per 1,000 rows)",
        importer.secs,
        rows as f64 / importer.secs,
        baseline.secs,
        rows as f64 / baseline.secs,
    );
}

/// The header and the first `rows` records of `csv`, as a CSV file of their own (next to it).
fn first_rows(csv: &Path, rows: u64) -> Result<PathBuf> {
    let path = csv.with_file_name(format!("bench-dynamodb-{rows}rows.csv"));
    let mut reader =
        ::csv::Reader::from_path(csv).with_context(|| format!("read {}", csv.display()))?;
    let mut writer = ::csv::Writer::from_writer(BufWriter::new(std::fs::File::create(&path)?));
    writer.write_byte_record(reader.byte_headers()?)?;
    let mut record = ::csv::ByteRecord::new();
    let mut n = 0;
    while n < rows && reader.read_byte_record(&mut record)? {
        writer.write_byte_record(&record)?;
        n += 1;
    }
    ensure!(n == rows, "{} has only {n} rows", csv.display());
    writer.into_inner()?.flush()?;
    Ok(path)
}

/// Child: imports `csv` into the records table `table` with `concurrency` PutItem calls in flight; prints
/// the rows imported and the DynamoDB write requests sent.
pub async fn child(csv: &Path, table: &str, concurrency: usize) -> Result<()> {
    let base = aws_config::load_from_env().await;
    // Only the operations are counted: keeping 5,000 parsed request bodies would be the child's peak memory.
    let recorder = Recorder::operations_only();
    let cfg = recorder.sdk_config(&base);
    let destination = AwsDestination::new(s3_client(&cfg), dynamodb_client(&cfg), "unused")
        .with_concurrency(concurrency);
    let template = template()?;
    let job = job(
        csv,
        "run",
        &template,
        DestinationConfig::Dynamodb {
            table: table.to_owned(),
        },
    )?;
    let mut rows = destination.open_rows(&job).await?;
    let imported = import(csv, template, ImportOptions::default(), rows.as_mut()).await?;
    let requests = recorder
        .calls()
        .iter()
        .filter(|call| matches!(call.operation.as_str(), "PutItem" | "BatchWriteItem"))
        .count();
    println!("{imported} {requests}");
    Ok(())
}
