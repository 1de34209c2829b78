//! The importer's side of a measurement, run in a child process: the bench CSV through the pipeline into one
//! destination's row sink, as the worker (or `import-file`) runs it.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use chrono::Utc;
use s3_importer_core::pipeline::{self, ImportOptions};
use s3_importer_core::sink::{ErrorReportWriter, RowSink};
use s3_importer_core::sync::contract::fixtures::file_job;
use s3_importer_core::sync::ports::FileJob;
use s3_importer_core::sync::{DestinationConfig, ObjectMeta, Source};
use s3_importer_core::template::Template;
use s3_importer_core::{Compression, FileFormat, Format};

/// The bench data's template.
pub fn template() -> Result<Arc<Template>> {
    Ok(Arc::new(Template::from_toml(
        s3_importer_file::bench::data::TEMPLATE,
    )?))
}

/// The job a worker would run for the bench CSV written to `destination`; `etag` tells runs apart (a
/// destination treats a file version it already has as a redelivery).
pub fn job(
    csv: &Path,
    etag: &str,
    template: &Template,
    destination: DestinationConfig,
) -> Result<FileJob> {
    let size = std::fs::metadata(csv)
        .with_context(|| format!("cannot read {}", csv.display()))?
        .len();
    let source = Source {
        account_id: "123456789012".into(),
        bucket: "bench".into(),
        region: "us-east-1".into(),
        prefix: None,
        role_arn: None,
        external_id: None,
        versions: false,
    };
    let object = ObjectMeta::new("bench/orders.csv", format!("\"{etag}\""), size, Utc::now());
    Ok(file_job(
        "bench",
        source,
        destination,
        template.clone(),
        &object,
    ))
}

/// Imports `csv` into `rows` with `options` (the rejected rows are discarded: the bench data has none, and
/// any is an error). Returns the rows imported.
pub async fn import(
    csv: &Path,
    template: Arc<Template>,
    options: ImportOptions,
    rows: &mut dyn RowSink,
) -> Result<u64> {
    let input =
        std::fs::File::open(csv).with_context(|| format!("cannot open {}", csv.display()))?;
    let mut rejects = ErrorReportWriter::new(tokio::io::sink(), "discarded");
    let format = FileFormat {
        format: Format::Csv,
        compression: Compression::None,
    };
    let report =
        pipeline::import_blocking(input, format, template, options, rows, &mut rejects).await?;
    if let Some(failure) = report.failure() {
        bail!("the bench file failed: {failure}");
    }
    if report.counts.rows_rejected > 0 {
        bail!(
            "the bench data had {} rejected rows (first: {:?})",
            report.counts.rows_rejected,
            report.first_error
        );
    }
    Ok(report.counts.rows_imported)
}
