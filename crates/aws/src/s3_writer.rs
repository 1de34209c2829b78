//! [`S3ObjectWriter`]: streams bytes to one S3 object that becomes visible only when complete.
//!
//! Bytes are buffered into parts of at least [`PART_SIZE`] and sent with multipart upload; the upload is
//! completed only by [`S3ObjectWriter::finish`], so readers never see half an object, and a retried file
//! writing the same key replaces the earlier object whole. An object smaller than one part (the common
//! case) is sent with a single PutObject. Memory stays around one part whatever the object size; with
//! S3's 10,000-part limit the largest object is about 80 GB.

use std::collections::HashMap;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use s3_importer_core::sink::SinkError;

use crate::error::AwsCallError;

/// Smallest part sent (S3 requires ≥ 5 MiB for every part but the last).
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// The writer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Open,
    Finished,
    Aborted,
}

/// Writes one S3 object (see the module docs).
#[derive(Debug)]
pub struct S3ObjectWriter {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
    content_type: String,
    metadata: HashMap<String, String>,
    part_size: usize,
    buffer: Vec<u8>,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    bytes: u64,
    state: State,
}

impl S3ObjectWriter {
    /// A writer of `s3://bucket/key`. Nothing is sent until [`PART_SIZE`] bytes are buffered or
    /// [`S3ObjectWriter::finish`] is called.
    pub fn new(
        client: aws_sdk_s3::Client,
        bucket: impl Into<String>,
        key: impl Into<String>,
    ) -> Self {
        Self {
            client,
            bucket: bucket.into(),
            key: key.into(),
            content_type: "application/x-ndjson".to_owned(),
            metadata: HashMap::new(),
            part_size: PART_SIZE,
            buffer: Vec::new(),
            upload_id: None,
            parts: Vec::new(),
            bytes: 0,
            state: State::Open,
        }
    }

    /// Sets the Content-Type (default `application/x-ndjson`).
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = content_type.into();
        self
    }

    /// Adds user metadata (`x-amz-meta-NAME`). Values must be ASCII (they travel as HTTP headers).
    pub fn metadata(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(name.into(), value.into());
        self
    }

    /// Sets the part size (at least 5 MiB on AWS; smaller on the emulator for tests).
    pub fn part_size(mut self, bytes: usize) -> Self {
        self.part_size = bytes.max(1);
        self
    }

    /// `s3://bucket/key`.
    pub fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn error(&self, action: &str, err: AwsCallError) -> SinkError {
        let context = format!("{action} {}", self.uri());
        if err.is_retryable() {
            SinkError::transient(context, err)
        } else {
            SinkError::permanent(context, err)
        }
    }

    fn check_open(&self) -> Result<(), SinkError> {
        match self.state {
            State::Open => Ok(()),
            State::Finished => Err(SinkError::permanent(
                format!("write {}", self.uri()),
                "object already finished",
            )),
            State::Aborted => Err(SinkError::permanent(
                format!("write {}", self.uri()),
                "upload already aborted",
            )),
        }
    }

    /// Appends bytes, sending a part whenever a full one is buffered.
    pub async fn write(&mut self, data: &[u8]) -> Result<(), SinkError> {
        self.check_open()?;
        self.buffer.extend_from_slice(data);
        self.bytes += data.len() as u64;
        if self.buffer.len() >= self.part_size {
            self.upload_part().await?;
        }
        Ok(())
    }

    async fn upload_id(&mut self) -> Result<String, SinkError> {
        if let Some(id) = &self.upload_id {
            return Ok(id.clone());
        }
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&self.key)
            .content_type(&self.content_type)
            .set_metadata(Some(self.metadata.clone()).filter(|m| !m.is_empty()))
            .send()
            .await
            .map_err(|e| self.error("start multipart upload of", AwsCallError::from_sdk(e)))?;
        let id = out
            .upload_id()
            .ok_or_else(|| {
                SinkError::permanent(
                    format!("start multipart upload of {}", self.uri()),
                    "no UploadId in the response",
                )
            })?
            .to_owned();
        self.upload_id = Some(id.clone());
        Ok(id)
    }

    /// Sends the buffer as the next part.
    async fn upload_part(&mut self) -> Result<(), SinkError> {
        let upload_id = self.upload_id().await?;
        let part_number = i32::try_from(self.parts.len() + 1).unwrap_or(i32::MAX);
        let body = std::mem::take(&mut self.buffer);
        let out = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&upload_id)
            .part_number(part_number)
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| {
                self.error(
                    &format!("upload part {part_number} of"),
                    AwsCallError::from_sdk(e),
                )
            })?;
        self.parts.push(
            CompletedPart::builder()
                .part_number(part_number)
                .set_e_tag(out.e_tag().map(str::to_owned))
                .build(),
        );
        Ok(())
    }

    /// Makes the object visible: PutObject when nothing was sent yet (an empty object included), otherwise
    /// the last part and CompleteMultipartUpload. Calling it again is a no-op.
    pub async fn finish(&mut self) -> Result<(), SinkError> {
        match self.state {
            State::Finished => return Ok(()),
            State::Aborted => return self.check_open(),
            State::Open => {}
        }
        if self.upload_id.is_none() {
            let body = std::mem::take(&mut self.buffer);
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .content_type(&self.content_type)
                .set_metadata(Some(self.metadata.clone()).filter(|m| !m.is_empty()))
                .body(ByteStream::from(body))
                .send()
                .await
                .map_err(|e| self.error("write", AwsCallError::from_sdk(e)))?;
        } else {
            if !self.buffer.is_empty() {
                self.upload_part().await?;
            }
            let upload_id = self.upload_id().await?;
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(self.parts.clone()))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| {
                    self.error("complete multipart upload of", AwsCallError::from_sdk(e))
                })?;
        }
        self.state = State::Finished;
        tracing::debug!(bucket = %self.bucket, key = %self.key, bytes = self.bytes, parts = self.parts.len(), "object written");
        Ok(())
    }

    /// Discards everything: aborts the multipart upload, if one was started. Nothing becomes visible.
    /// (A bucket lifecycle rule `AbortIncompleteMultipartUpload` cleans up uploads of crashed writers.)
    pub async fn abort(&mut self) -> Result<(), SinkError> {
        if self.state != State::Open {
            return Ok(());
        }
        self.state = State::Aborted;
        self.buffer = Vec::new();
        if let Some(upload_id) = self.upload_id.take() {
            self.client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(upload_id)
                .send()
                .await
                .map_err(|e| self.error("abort multipart upload of", AwsCallError::from_sdk(e)))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_s3::operation::complete_multipart_upload::CompleteMultipartUploadOutput;
    use aws_sdk_s3::operation::create_multipart_upload::CreateMultipartUploadOutput;
    use aws_sdk_s3::operation::put_object::PutObjectOutput;
    use aws_sdk_s3::operation::upload_part::UploadPartOutput;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    #[tokio::test]
    async fn small_objects_are_one_put_and_large_ones_multipart(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let put = mock!(aws_sdk_s3::Client::put_object)
            .match_requests(|r| {
                r.key() == Some("small") && r.metadata().and_then(|m| m.get("source-key")).is_some()
            })
            .then_output(|| PutObjectOutput::builder().build());
        let create = mock!(aws_sdk_s3::Client::create_multipart_upload).then_output(|| {
            CreateMultipartUploadOutput::builder()
                .upload_id("u1")
                .build()
        });
        let part = mock!(aws_sdk_s3::Client::upload_part)
            .match_requests(|r| r.upload_id() == Some("u1"))
            .then_output(|| UploadPartOutput::builder().e_tag("\"p\"").build());
        let complete = mock!(aws_sdk_s3::Client::complete_multipart_upload)
            .match_requests(|r| r.multipart_upload().map(|m| m.parts().len()) == Some(3))
            .then_output(|| CompleteMultipartUploadOutput::builder().build());
        let client = mock_client!(
            aws_sdk_s3,
            RuleMode::MatchAny,
            [&put, &create, &part, &complete]
        );

        let mut small =
            S3ObjectWriter::new(client.clone(), "b", "small").metadata("source-key", "a.csv");
        small.write(b"{}\n").await?;
        small.finish().await?;
        assert_eq!((put.num_calls(), create.num_calls()), (1, 0));

        let mut large = S3ObjectWriter::new(client, "b", "large").part_size(4);
        large.write(b"12345").await?; // part 1
        large.write(b"123").await?;
        large.write(b"45").await?; // part 2
        assert_eq!(complete.num_calls(), 0, "not visible before finish");
        large.write(b"x").await?;
        large.finish().await?; // part 3 + complete
        assert_eq!(
            (create.num_calls(), part.num_calls(), complete.num_calls()),
            (1, 3, 1)
        );
        Ok(())
    }
}
