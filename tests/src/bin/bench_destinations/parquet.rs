//! Parquet: the full import to a local Parquet file (`import-file --output-format parquet`: the S3 output's
//! encoding, zstd, row groups of bounded size) against pyarrow reading the same CSV with the same column
//! types and writing it with zstd, on one thread.

use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Result};
use s3_importer_aws::parquet::encode::FileLineage;
use s3_importer_aws::parquet::{ParquetFileSink, DEFAULT_ROW_GROUP_BYTES};
use s3_importer_core::pipeline::ImportOptions;
use s3_importer_tests::postgres::python;

use crate::import::{import, template};
use crate::measure::{self, Run};
use crate::{Figures, Paired};

/// The baseline: `pyarrow.csv.read_csv` with the template's column types (empty strings as nulls, as the
/// importer reads them), then `pyarrow.parquet.write_table` with zstd; one CPU thread, one I/O thread.
const PYARROW: &str = r#"
import sys
import pyarrow as pa, pyarrow.csv as pc, pyarrow.parquet as pq
pa.set_cpu_count(1)
pa.set_io_thread_count(1)
source, target = sys.argv[1], sys.argv[2]
types = {
    "id": pa.int64(), "order_id": pa.string(), "customer": pa.string(), "email": pa.string(),
    "amount": pa.decimal128(38, 2), "quantity": pa.int64(), "paid": pa.bool_(),
    "created_at": pa.timestamp("us", tz="UTC"), "notes": pa.string(),
    "country": pa.dictionary(pa.int32(), pa.string()),
}
table = pc.read_csv(
    source,
    read_options=pc.ReadOptions(use_threads=False),
    parse_options=pc.ParseOptions(newlines_in_values=True),
    convert_options=pc.ConvertOptions(column_types=types, strings_can_be_null=True),
)
pq.write_table(table, target, compression="zstd")
print(table.num_rows)
"#;

/// Measures `runs` pairs (importer, pyarrow), interleaved; the outputs go to a temporary directory on disk.
pub fn bench(csv: &Path, runs: usize) -> Result<Figures> {
    let out = tempfile::tempdir()?;
    let mut paired = Paired::default();
    for run in 1..=runs {
        let ours = out.path().join("importer.parquet");
        let theirs = out.path().join("pyarrow.parquet");
        let importer = measure::run(
            Command::new(std::env::current_exe()?)
                .args(["--child", "parquet"])
                .arg(csv)
                .arg(&ours),
            "the Parquet import",
        )?;
        let baseline = measure::run(
            Command::new(python())
                .args(["-c", PYARROW])
                .arg(csv)
                .arg(&theirs),
            "pyarrow",
        )?;
        let rows = measure::number(&importer, 0, "rows")?;
        let their_rows = measure::number(&baseline, 0, "rows")?;
        ensure!(
            rows == their_rows,
            "the importer wrote {rows} rows, pyarrow {their_rows}"
        );
        report(run, rows, &importer, &baseline, &ours, &theirs)?;
        paired.push(rows, importer, baseline);
        std::fs::remove_file(&ours)?;
        std::fs::remove_file(&theirs)?;
    }
    paired.figures()
}

fn report(
    run: usize,
    rows: u64,
    importer: &Run,
    baseline: &Run,
    ours: &Path,
    theirs: &Path,
) -> Result<()> {
    let mib =
        |path: &Path| -> Result<f64> { Ok(std::fs::metadata(path)?.len() as f64 / 1048576.0) };
    eprintln!(
        "parquet run {run}: {rows} rows | importer {:.1}s ({:.0} rows/s, {:.1} MiB peak, {:.1} MiB file) | pyarrow {:.1}s ({:.0} rows/s, {:.1} MiB peak, {:.1} MiB file)",
        importer.secs,
        rows as f64 / importer.secs,
        importer.peak_rss_mib,
        mib(ours)?,
        baseline.secs,
        rows as f64 / baseline.secs,
        baseline.peak_rss_mib,
        mib(theirs)?,
    );
    Ok(())
}

/// Child: imports `csv` into the Parquet file `output`; prints the rows imported.
pub async fn child(csv: &Path, output: &Path) -> Result<()> {
    let template = template()?;
    let now = chrono::Utc::now().timestamp_micros();
    let lineage = FileLineage {
        source_key: csv.display().to_string(),
        source_etag: "\"local\"".into(),
        last_modified_micros: now,
        imported_at_micros: now,
    };
    let mut rows = ParquetFileSink::create(output, &template, lineage, DEFAULT_ROW_GROUP_BYTES)?;
    let imported = import(csv, template, ImportOptions::for_file_output(), &mut rows).await?;
    println!("{imported}");
    Ok(())
}
