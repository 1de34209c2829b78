//! All-or-nothing for destinations that cannot stage (`on_error.validate_first`, see `docs/architecture.md`,
//! "Data flow").
//!
//! DynamoDB upserts are visible as soon as they are written, and `RowSink::abort` cannot take them back: a file
//! failing its `on_error` threshold halfway leaves the rows before the failure. With `validate_first`, the
//! worker reads the file twice:
//! 1. the *validation pass* reads and validates every row, writes no row (the rows go to [`DiscardRows`]) and
//!    writes the error report; it ends with the thresholds decided, exactly as an import would decide them;
//! 2. only if it passed, the *writing pass* reads the file again from the top (pinned to the same ETag, so the
//!    same rows) and writes the rows; its rejected rows were reported by the first pass and go to
//!    [`DiscardRejects`], and the file's report is the first pass's.
//!
//! A destination that stages ([`RowSink::stages`]: S3 objects, PostgreSQL) is already all-or-nothing: it gets
//! one pass, `validate_first` or not.
//!
//! The validation pass must finish within one invocation: it has no checkpoint of its own. Out of time, the
//! file fails with a reason that says so ([`Validation::OutOfTime`]). The writing pass may be imported in
//! pieces like any file; its checkpoints carry [`Validated`], so a continuation neither validates again nor
//! writes a second report.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::io::AsyncRead;

use super::model::Validated;
use crate::pipeline::{self, FileEnd, FileReport, ImportOptions};
use crate::read::ReadError;
use crate::sink::{RejectSink, RejectedRow, RowBatch, RowSink, SinkError};
use crate::template::Template;
use crate::FileFormat;

/// How a validation pass ended.
#[derive(Debug)]
pub(super) enum Validation {
    /// Every row read, no threshold crossed: the rows may be written.
    Passed(Validated),
    /// The file failed (a threshold, or an unreadable file): its report says why, and no row was written.
    Failed(FileReport),
    /// The invocation's time ran out at this decoded byte, before the end of the file.
    OutOfTime {
        /// Decoded bytes validated.
        byte: u64,
    },
    /// The source failed transiently (after the read's own retries): the file is retried from the top.
    Interrupted(ReadError),
}

/// Reads and validates the whole of `input` with `options`, writing only the error report to `rejects`.
pub(super) async fn validation_pass<R>(
    input: R,
    format: FileFormat,
    template: Arc<Template>,
    options: ImportOptions,
    rejects: &mut dyn RejectSink,
) -> Result<Validation, SinkError>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let report =
        pipeline::import(input, format, template, options, &mut DiscardRows, rejects).await?;
    Ok(match report.end {
        FileEnd::Complete => Validation::Passed(Validated {
            error_report: report.error_report,
        }),
        FileEnd::Failed(_) => Validation::Failed(report),
        FileEnd::Stopped(stopped) => match stopped.interrupted {
            Some(error) => Validation::Interrupted(error),
            None => Validation::OutOfTime {
                byte: stopped.at.position.byte,
            },
        },
    })
}

/// The rows of a validation pass: counted by the pipeline, written nowhere.
pub(super) struct DiscardRows;

#[async_trait]
impl RowSink for DiscardRows {
    fn needs_positions(&self) -> bool {
        false
    }

    async fn write_batch(&mut self, _batch: &RowBatch) -> Result<(), SinkError> {
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// The rejected rows of a writing pass: the validation pass already reported them.
pub(super) struct DiscardRejects;

#[async_trait]
impl RejectSink for DiscardRejects {
    async fn write_rejects(&mut self, _rows: &[RejectedRow]) -> Result<(), SinkError> {
        Ok(())
    }

    async fn finish(&mut self) -> Result<Option<String>, SinkError> {
        Ok(None)
    }
}
