//! Dry runs: `connector preview` (what a sync would do now, and the first rows of one file) and
//! `template validate --against` (how many rows of each file would pass). Nothing is written anywhere.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use async_trait::async_trait;
use chrono::Utc;
use s3_importer_aws::S3Source;
use s3_importer_core::pipeline::{self, FileReport, ImportOptions};
use s3_importer_core::sink::{RejectSink, RejectedRow, RowBatch, RowSink, SinkError};
use s3_importer_core::sync::ports::{ObjectSource, StateStore};
use s3_importer_core::sync::rules::{self, Decision, Ignored};
use s3_importer_core::sync::{FileStatus, LedgerEntry, ObjectMeta};
use s3_importer_core::template::Template;
use s3_importer_core::{FileFormat, Position, RowError};
use serde::Serialize;
use serde_json::json;
use tokio::io::AsyncRead;

use crate::aws_args::AwsArgs;
use crate::connector::find;
use crate::exit::{exit, Status};
use crate::table;

/// Arguments of `connector preview`.
#[derive(Debug, clap::Args)]
pub struct PreviewArgs {
    /// Connector name.
    name: String,
    /// Rows of the sample file to parse and show.
    #[arg(long, default_value_t = 10)]
    rows: usize,
    /// The file to sample (default: the first file that would be imported).
    #[arg(long)]
    file: Option<String>,
    /// Files to show at most (all are counted).
    #[arg(long, default_value_t = 200)]
    limit: usize,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// One listed file and what a sync would do with it.
#[derive(Debug, Serialize)]
struct PreviewFile {
    key: String,
    size: u64,
    last_modified: chrono::DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<String>,
    /// `import`, `already_<status>`, `skip`, `ignore`.
    action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    /// A versioned connector's file is a version.
    #[serde(skip_serializing_if = "Option::is_none")]
    version_id: Option<String>,
    #[serde(skip)]
    etag: String,
    #[serde(skip)]
    importable: bool,
}

/// One row of the sample: typed, or rejected with its errors.
#[derive(Debug, Serialize)]
struct SampleRow {
    record: u64,
    line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    row: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<RowError>,
}

/// Keeps the first `limit` rows, then stops the pipeline (a sink error it reports back).
struct FirstRows {
    limit: usize,
    rows: Vec<(Position, String)>,
}

const ENOUGH: &str = "preview: enough rows";

#[async_trait]
impl RowSink for FirstRows {
    async fn write_batch(&mut self, batch: &RowBatch) -> Result<(), SinkError> {
        for (position, row) in batch.iter() {
            self.rows
                .push((position, String::from_utf8_lossy(row).into_owned()));
        }
        if self.rows.len() >= self.limit {
            return Err(SinkError::permanent(ENOUGH, ENOUGH));
        }
        Ok(())
    }
    async fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Keeps the first `keep` rejected rows and counts them all; with `stop_at`, stops the pipeline there.
struct FirstRejects {
    keep: usize,
    stop_at: Option<usize>,
    count: usize,
    rows: Vec<RejectedRow>,
}

#[async_trait]
impl RejectSink for FirstRejects {
    async fn write_rejects(&mut self, rows: &[RejectedRow]) -> Result<(), SinkError> {
        self.count += rows.len();
        let room = self.keep.saturating_sub(self.rows.len());
        self.rows.extend(rows.iter().take(room).cloned());
        if self.stop_at.is_some_and(|n| self.count >= n) {
            return Err(SinkError::permanent(ENOUGH, ENOUGH));
        }
        Ok(())
    }
    async fn finish(&mut self) -> Result<Option<String>, SinkError> {
        Ok(None)
    }
}

/// Counts rows and writes nothing.
struct Discard;

#[async_trait]
impl RowSink for Discard {
    async fn write_batch(&mut self, _batch: &RowBatch) -> Result<(), SinkError> {
        Ok(())
    }
    async fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// `connector preview`.
pub async fn preview(
    aws: &AwsArgs,
    sdk: &aws_config::SdkConfig,
    state: &dyn StateStore,
    args: PreviewArgs,
) -> Result<ExitCode> {
    let connector = find(state, &args.name).await?;
    let template = state
        .get_template(&connector.template_id, connector.template_version)
        .await?
        .ok_or_else(|| {
            exit(
                Status::NotFound,
                format!(
                    "the connector's template {:?} is not stored: `s3-importer template add FILE`",
                    connector.template_id
                ),
            )
        })?;
    // The configuration a sync applies, read the same way: a malformed variable is an error naming it.
    let settings = aws.settings()?;
    let limits = settings.limits;
    let settings = settings.sync;
    let source = S3Source::new(sdk);
    let now = Utc::now();
    let window = rules::window_start(connector.watermark, now, &settings);

    let mut files: Vec<PreviewFile> = Vec::new();
    let mut continuation = None;
    loop {
        let page = source
            .list_page(&connector.source, continuation.take())
            .await
            .with_context(|| {
                format!(
                    "cannot list the source (`s3-importer connector verify {}` says why)",
                    connector.name
                )
            })?;
        let ids: Vec<String> = page.objects.iter().map(ObjectMeta::file_id).collect();
        let known: HashMap<String, LedgerEntry> = if ids.is_empty() {
            HashMap::new()
        } else {
            state.get_files(&connector.id, &ids).await?
        };
        for (object, id) in page.objects.into_iter().zip(ids) {
            let decision = rules::decide(&object, window, &settings, template.template.format);
            if decision == Decision::Ignore(Ignored::FolderMarker) {
                continue;
            }
            files.push(describe(object, &decision, known.get(&id)));
        }
        match page.next {
            Some(next) => continuation = Some(next),
            None => break,
        }
    }

    let sample_key = match &args.file {
        Some(key) => Some(key.clone()),
        None => files
            .iter()
            .find(|f| f.action == "import")
            .or_else(|| files.iter().find(|f| f.importable))
            .map(|f| f.key.clone()),
    };
    let mut sample_rows = Vec::new();
    let mut sample_failure = None;
    if let Some(key) = &sample_key {
        // The newest listed version of the key (a listing names a key's versions newest first).
        let (etag, version_id) = match files.iter().find(|f| &f.key == key) {
            Some(f) => (f.etag.clone(), f.version_id.clone()),
            None => {
                return Err(exit(
                    Status::NotFound,
                    format!(
                        "no file {key:?} under the connector's folder (s3://{}/{})",
                        connector.source.bucket,
                        connector.source.prefix.as_deref().unwrap_or("")
                    ),
                ))
            }
        };
        let body = source
            .open(&connector.source, key, &etag, version_id.as_deref(), None)
            .await
            .with_context(|| format!("cannot read s3://{}/{key}", connector.source.bucket))?;
        let format = s3_importer_core::format::detect_format(
            key,
            template.template.format,
            body.content_encoding.as_deref(),
        )
        .ok_or_else(|| {
            exit(
                Status::Usage,
                format!("cannot tell the format of {key}: it would be skipped"),
            )
        })?;
        let (rows, failure) = first_rows(
            body.reader,
            format,
            Arc::new(template.template.clone()),
            args.rows.max(1),
            limits,
        )
        .await?;
        sample_rows = rows;
        sample_failure = failure;
    }

    let mut counts: std::collections::BTreeMap<String, u64> = Default::default();
    for f in &files {
        *counts.entry(f.action.clone()).or_default() += 1;
    }
    if args.json {
        let out = json!({
            "connector": connector.name,
            "template": {"id": template.id, "version": template.version},
            "window_start": window,
            "counts": counts,
            "files": files.iter().take(args.limit).collect::<Vec<_>>(),
            "sample": sample_key.as_ref().map(|k| json!({"key": k, "rows": sample_rows, "file_error": sample_failure})),
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "Files under s3://{}/{} (template {} version {}; files modified before {} are outside the sync window):",
        connector.source.bucket,
        connector.source.prefix.as_deref().unwrap_or(""),
        template.id,
        template.version,
        window.format("%Y-%m-%d %H:%M:%S")
    );
    let rows: Vec<Vec<String>> = files
        .iter()
        .take(args.limit)
        .map(|f| {
            vec![
                f.key.clone(),
                f.size.to_string(),
                f.last_modified.format("%Y-%m-%d %H:%M:%S").to_string(),
                f.format.clone().unwrap_or_default(),
                f.action.replace('_', " "),
                f.reason.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table::print(
        &["KEY", "BYTES", "LAST MODIFIED", "FORMAT", "WOULD", "WHY"],
        &rows,
    );
    if files.len() > args.limit {
        outln!("… and {} more (--limit)", files.len() - args.limit);
    }
    let summary: Vec<String> = counts
        .iter()
        .map(|(a, n)| format!("{n} {}", a.replace('_', " ")))
        .collect();
    outln!("{} file(s): {}", files.len(), summary.join(", "));
    if let Some(key) = &sample_key {
        outln!();
        outln!("First rows of {key}, parsed with the template:");
        let rows: Vec<Vec<String>> = sample_rows
            .iter()
            .map(|r| {
                let (status, detail) = match &r.row {
                    Some(row) => ("ok", row.to_string()),
                    None => (
                        "REJECTED",
                        r.errors
                            .iter()
                            .map(|e| e.to_string())
                            .collect::<Vec<_>>()
                            .join("; "),
                    ),
                };
                vec![
                    r.record.to_string(),
                    r.line.to_string(),
                    status.to_owned(),
                    detail,
                ]
            })
            .collect();
        table::print(&["RECORD", "LINE", "ROW", "VALUES / ERRORS"], &rows);
        if let Some(failure) = &sample_failure {
            outln!("the file would fail: {failure}");
        }
    } else {
        outln!("no file to sample: upload a .csv, .tsv, .json or .jsonl file to the folder");
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(object: ObjectMeta, decision: &Decision, known: Option<&LedgerEntry>) -> PreviewFile {
    let mut file = PreviewFile {
        key: object.key,
        size: object.size,
        last_modified: object.last_modified,
        format: None,
        action: String::new(),
        reason: None,
        version_id: object.version_id,
        etag: object.etag,
        importable: false,
    };
    if let Decision::Import(format) = decision {
        file.format = Some(format_name(*format));
        file.importable = true;
    }
    if let Some(entry) = known {
        file.action = format!("already_{}", entry.status);
        file.reason = entry
            .skip_reason
            .as_ref()
            .map(|r| r.to_string())
            .or_else(|| entry.error.clone())
            .or_else(|| {
                (entry.status == FileStatus::Imported).then(|| {
                    format!(
                        "{} rows imported, {} rejected",
                        entry.rows_imported, entry.rows_rejected
                    )
                })
            });
        return file;
    }
    match decision {
        Decision::Import(_) => file.action = "import".into(),
        Decision::Skip(reason) => {
            file.action = "skip".into();
            file.reason = Some(format!("{}: {reason}", reason.code()));
        }
        Decision::Ignore(_) => {
            file.action = "ignore".into();
            file.reason = Some("modified before the sync window".into());
        }
    }
    file
}

fn format_name(format: FileFormat) -> String {
    let mut name = format.format.as_str().to_owned();
    if format.compression == s3_importer_core::Compression::Gzip {
        name.push_str("+gzip");
    }
    name
}

/// Parses the first `n` records of `input` with `template`: typed rows and rejected rows in file order,
/// and the file's failure if it fails before that, under the deployment's reader `limits`.
async fn first_rows<R>(
    input: R,
    format: FileFormat,
    template: Arc<Template>,
    n: usize,
    limits: s3_importer_core::Limits,
) -> Result<(Vec<SampleRow>, Option<String>)>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let mut rows = FirstRows {
        limit: n,
        rows: Vec::new(),
    };
    let mut rejects = FirstRejects {
        keep: n,
        stop_at: Some(n),
        count: 0,
        rows: Vec::new(),
    };
    let options = ImportOptions {
        limits,
        batch_rows: n,
        ..ImportOptions::default()
    };
    let failure =
        match pipeline::import(input, format, template, options, &mut rows, &mut rejects).await {
            Ok(report) => report.failure().map(|f| f.to_string()),
            Err(e) if e.context == ENOUGH => None,
            Err(e) => return Err(e).context("cannot preview the file"),
        };
    let mut sample: Vec<SampleRow> = rows
        .rows
        .into_iter()
        .map(|(p, row)| SampleRow {
            record: p.record,
            line: p.line,
            row: serde_json::from_str(&row).ok(),
            errors: Vec::new(),
        })
        .chain(rejects.rows.into_iter().map(|r| SampleRow {
            record: r.position.record,
            line: r.position.line,
            row: None,
            errors: r.errors,
        }))
        .collect();
    sample.sort_by_key(|r| r.record);
    sample.truncate(n);
    Ok((sample, failure))
}

/// What a dry run of one file found.
#[derive(Debug, Serialize)]
pub struct DryRun {
    /// File path or `s3://` URI.
    pub file: String,
    /// Detected format.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Records read.
    pub rows: u64,
    /// Rows that would be imported.
    pub passed: u64,
    /// Rows that would be rejected.
    pub rejected: u64,
    /// The first rejected rows.
    pub first_errors: Vec<RejectedRow>,
    /// Why the whole file would fail.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_error: Option<String>,
}

impl DryRun {
    /// True when every row would pass.
    pub fn clean(&self) -> bool {
        self.rejected == 0 && self.file_error.is_none()
    }

    fn unreadable(file: String, why: String) -> Self {
        Self {
            file,
            format: None,
            rows: 0,
            passed: 0,
            rejected: 0,
            first_errors: Vec::new(),
            file_error: Some(why),
        }
    }
}

/// Runs the whole pipeline over `input` with a sink that writes nothing.
pub async fn dry_run<R>(
    file: String,
    input: R,
    format: FileFormat,
    template: Arc<Template>,
) -> Result<DryRun>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let mut rejects = FirstRejects {
        keep: 3,
        stop_at: None,
        count: 0,
        rows: Vec::new(),
    };
    let report: FileReport = pipeline::import(
        input,
        format,
        template,
        ImportOptions::default(),
        &mut Discard,
        &mut rejects,
    )
    .await
    .context("dry run failed")?;
    Ok(DryRun {
        file,
        format: Some(format_name(format)),
        rows: report.counts.rows_read,
        passed: report.counts.rows_imported,
        rejected: report.counts.rows_rejected,
        first_errors: rejects.rows,
        file_error: report.failure().map(|f| f.to_string()),
    })
}

/// `template validate FILE --against PATH_OR_S3_URI`: a dry run over a local file, every file of a local
/// directory, or every object under an `s3://bucket/prefix`.
pub async fn validate_against(
    aws: &AwsArgs,
    template: Template,
    against: &str,
) -> Result<Vec<DryRun>> {
    let template = Arc::new(template);
    let mut results = Vec::new();
    if let Some(rest) = against.strip_prefix("s3://") {
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let sdk = aws.sdk_config().await?;
        let s3 = s3_importer_aws::s3_client(&sdk);
        let mut pages = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        let mut objects = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page
                .map_err(s3_importer_aws::error::AwsCallError::from_sdk)
                .with_context(|| format!("cannot list {against}"))?;
            objects.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned))
                    .filter(|k| !k.ends_with('/')),
            );
        }
        if objects.is_empty() {
            return Err(exit(
                Status::NotFound,
                format!("no objects under {against}"),
            ));
        }
        for key in objects {
            let uri = format!("s3://{bucket}/{key}");
            let out = s3
                .get_object()
                .bucket(bucket)
                .key(&key)
                .send()
                .await
                .map_err(s3_importer_aws::error::AwsCallError::from_sdk)
                .with_context(|| format!("cannot read {uri}"))?;
            let Some(format) = s3_importer_core::format::detect_format(
                &key,
                template.format,
                out.content_encoding(),
            ) else {
                results.push(DryRun::unreadable(
                    uri,
                    "unsupported format: it would be skipped".into(),
                ));
                continue;
            };
            results.push(dry_run(uri, out.body.into_async_read(), format, template.clone()).await?);
        }
        return Ok(results);
    }
    let path = std::path::Path::new(against);
    let mut paths = Vec::new();
    if path.is_dir() {
        for entry in std::fs::read_dir(path).with_context(|| format!("cannot read {against}"))? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                paths.push(entry.path());
            }
        }
        paths.sort();
    } else if path.is_file() {
        paths.push(path.to_path_buf());
    } else {
        return Err(exit(
            Status::NotFound,
            format!("{against}: no such file or directory (or give s3://BUCKET/PREFIX)"),
        ));
    }
    for p in paths {
        let name = p.display().to_string();
        let Some(format) = s3_importer_core::format::detect_format(&name, template.format, None)
        else {
            results.push(DryRun::unreadable(
                name,
                "unsupported format: it would be skipped".into(),
            ));
            continue;
        };
        let file = tokio::fs::File::open(&p)
            .await
            .with_context(|| format!("cannot open {name}"))?;
        results.push(dry_run(name, file, format, template.clone()).await?);
    }
    Ok(results)
}

/// Prints dry-run results as a table (or JSON) and returns the exit status: 5 when any row or file fails.
pub fn print_dry_runs(results: &[DryRun], json: bool) -> Result<ExitCode> {
    if json {
        outln!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        let rows: Vec<Vec<String>> = results
            .iter()
            .map(|r| {
                let first = r.file_error.clone().unwrap_or_else(|| {
                    r.first_errors
                        .iter()
                        .flat_map(|row| {
                            row.errors
                                .iter()
                                .map(move |e| format!("line {}: {e}", row.position.line))
                        })
                        .take(3)
                        .collect::<Vec<_>>()
                        .join("; ")
                });
                vec![
                    r.file.clone(),
                    r.format.clone().unwrap_or_default(),
                    r.rows.to_string(),
                    r.passed.to_string(),
                    r.rejected.to_string(),
                    first,
                ]
            })
            .collect();
        table::print(
            &["FILE", "FORMAT", "ROWS", "PASS", "REJECTED", "FIRST ERRORS"],
            &rows,
        );
        outln!("dry run: nothing was written");
    }
    Ok(if results.iter().all(DryRun::clean) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(Status::CheckFailed as u8)
    })
}
