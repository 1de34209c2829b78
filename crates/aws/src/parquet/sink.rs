//! [`ParquetSink`]: the [`RowSink`] writing a file version's rows as one Parquet object (see the module docs
//! of [`crate::parquet`] for the protocol across pieces).

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use s3_importer_core::sink::{RowBatch, RowSink, SinkError};
use s3_importer_core::sync::ports::FileJob;
use serde::{Deserialize, Serialize};

use super::encode::{FileLineage, RowGroupBuffer};
use super::file::{read_footer, PieceWriter};
use super::layout;
use super::{OutputSchema, ParquetError};
use crate::error::AwsCallError;
use crate::s3_writer::{S3ObjectWriter, WriterState};

/// What a suspended piece hands to the next one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParquetState {
    /// The multipart upload.
    pub writer: WriterState,
    /// Key (same bucket) of the footer listing the row groups written so far.
    pub footer: String,
}

/// Writes one file version's rows as one Parquet object.
#[derive(Debug)]
pub struct ParquetSink {
    s3: aws_sdk_s3::Client,
    bucket: String,
    writer: S3ObjectWriter,
    piece: PieceWriter,
    rows: RowGroupBuffer,
    row_group_bytes: usize,
    staging: String,
    /// This piece's number (0 for the first).
    piece_number: u32,
    /// An earlier attempt completed the object: nothing is written.
    complete: bool,
}

impl ParquetSink {
    /// Opens the sink for `job` writing through `writer` (the object's writer, not resumed yet) under
    /// `prefix` of `bucket`, resuming from the job's checkpoint when it has one.
    pub async fn open(
        s3: aws_sdk_s3::Client,
        writer: S3ObjectWriter,
        bucket: &str,
        prefix: &str,
        job: &FileJob,
        row_group_bytes: usize,
    ) -> Result<Self, SinkError> {
        let uri = writer.uri();
        let permanent = |e: ParquetError| SinkError::permanent(format!("write {uri}"), e);
        let schema = OutputSchema::of(&job.template).map_err(permanent)?;
        let parquet_type = schema.parquet_type().map_err(permanent)?;
        let version = &job.entry.version;
        let staging = layout::staging_prefix(
            prefix,
            &job.connector.id,
            &version.key,
            &version.output_tag(),
        );
        let checkpoint = job.entry.checkpoint.as_ref();
        let state: Option<ParquetState> = checkpoint
            .and_then(|c| c.rows_state.clone())
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| permanent(e.into()))?;
        let (writer, earlier, complete) = match state {
            None => (writer, Vec::new(), false),
            Some(state) => {
                let writer = writer.resume(state.writer).await?;
                match get_small(&s3, bucket, &state.footer).await? {
                    Some(footer) => (writer, read_footer(footer).map_err(permanent)?, false),
                    // The last piece deletes the footers once the object is complete.
                    None if writer.exists().await? => (writer, Vec::new(), true),
                    None => {
                        return Err(SinkError::permanent(
                            format!("resume {uri}"),
                            format!("the footer s3://{bucket}/{} is gone", state.footer),
                        ))
                    }
                }
            }
        };
        let piece =
            PieceWriter::new(&schema, parquet_type, writer.bytes(), earlier).map_err(permanent)?;
        let micros = |t: chrono::DateTime<chrono::Utc>| t.timestamp_micros();
        let lineage = FileLineage {
            source_key: version.key.clone(),
            source_etag: version.etag.clone(),
            last_modified_micros: micros(job.entry.last_modified),
            imported_at_micros: micros(chrono::Utc::now()),
        };
        Ok(Self {
            s3,
            bucket: bucket.to_owned(),
            writer,
            piece,
            rows: RowGroupBuffer::new(schema, &lineage),
            row_group_bytes: row_group_bytes.max(1),
            staging,
            piece_number: checkpoint.map_or(0, |c| c.piece),
            complete,
        })
    }

    fn permanent(&self, e: impl Into<ParquetError>) -> SinkError {
        SinkError::permanent(format!("write {}", self.writer.uri()), e.into())
    }

    /// Encodes the rows held as a row group and appends its bytes to the upload.
    async fn flush_row_group(&mut self) -> Result<(), SinkError> {
        if self.rows.rows() > 0 {
            self.piece
                .write_row_group(&mut self.rows)
                .map_err(|e| self.permanent(e))?;
        }
        let bytes = self.piece.take_output();
        self.writer.write(&bytes).await
    }

    /// Deletes what the earlier pieces staged, footers and carries (best effort: a leftover under
    /// `_staging/` is clutter that no reader sees). Deleting a key that is not there succeeds.
    async fn delete_staged(&self) {
        let keys = (0..self.piece_number).flat_map(|piece| {
            [
                layout::footer_key(&self.staging, piece),
                layout::carry_key(&self.staging, piece),
            ]
        });
        for key in keys {
            if let Err(e) = self
                .s3
                .delete_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await
            {
                tracing::warn!(bucket = %self.bucket, key = %key, error = %AwsCallError::from_sdk(e), "cannot delete a staged object");
            }
        }
    }
}

/// The bytes of a small object (a footer: kilobytes), or `None` when there is no such key.
async fn get_small(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<Option<Vec<u8>>, SinkError> {
    let context = || format!("read s3://{bucket}/{key}");
    match s3.get_object().bucket(bucket).key(key).send().await {
        Ok(out) => {
            let body = out.body.collect(); // bounded: a footer is a few KB per row group
            let data = body.await.map_err(|e| SinkError::transient(context(), e))?;
            Ok(Some(data.into_bytes().to_vec()))
        }
        Err(e) => {
            let err = AwsCallError::from_sdk(e);
            if err.code.as_deref() == Some("NoSuchKey") {
                Ok(None)
            } else if err.is_retryable() {
                Err(SinkError::transient(context(), err))
            } else {
                Err(SinkError::permanent(context(), err))
            }
        }
    }
}

#[async_trait]
impl RowSink for ParquetSink {
    /// The object is visible only when complete: a failed file leaves nothing, so `validate_first` needs no
    /// second read.
    fn stages(&self) -> bool {
        true
    }

    async fn write_batch(&mut self, batch: &RowBatch) -> Result<(), SinkError> {
        if self.complete {
            return Ok(());
        }
        for (position, row) in batch.iter() {
            self.rows
                .push(row, position.record)
                .map_err(|e| self.permanent(e))?;
            if self.rows.bytes() >= self.row_group_bytes {
                self.flush_row_group().await?;
            }
        }
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), SinkError> {
        if !self.complete {
            self.flush_row_group().await?;
            let row_groups = self.piece.row_groups().map_err(|e| self.permanent(e))?;
            let footer = self
                .piece
                .footer(row_groups)
                .map_err(|e| self.permanent(e))?;
            self.writer.write(&footer).await?;
        }
        self.writer.finish().await?;
        self.delete_staged().await;
        Ok(())
    }

    async fn abort(&mut self) -> Result<(), SinkError> {
        self.writer.abort().await?;
        self.delete_staged().await;
        Ok(())
    }

    async fn suspend(&mut self) -> Result<Option<serde_json::Value>, SinkError> {
        let footer = layout::footer_key(&self.staging, self.piece_number);
        if !self.complete {
            self.flush_row_group().await?;
            let row_groups = self.piece.row_groups().map_err(|e| self.permanent(e))?;
            let bytes = self
                .piece
                .footer(row_groups)
                .map_err(|e| self.permanent(e))?;
            self.s3
                .put_object()
                .bucket(&self.bucket)
                .key(&footer)
                .body(ByteStream::from(bytes))
                .send()
                .await
                .map_err(|e| {
                    let err = AwsCallError::from_sdk(e);
                    let context = format!("write s3://{}/{footer}", self.bucket);
                    if err.is_retryable() {
                        SinkError::transient(context, err)
                    } else {
                        SinkError::permanent(context, err)
                    }
                })?;
        }
        let carry = layout::carry_key(&self.staging, self.piece_number);
        let writer = self.writer.suspend(&carry).await?;
        serde_json::to_value(ParquetState { writer, footer })
            .map(Some)
            .map_err(|e| self.permanent(e))
    }
}
