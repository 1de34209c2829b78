//! [`S3ObjectWriter`]: streams bytes to one S3 object that becomes visible only when complete.
//!
//! Bytes are buffered into parts of at least [`PART_SIZE`] and sent with multipart upload; the upload is
//! completed only by [`S3ObjectWriter::finish`], so readers never see half an object, and a retried file
//! writing the same key replaces the earlier object whole. An object smaller than one part (the common
//! case) is sent with a single PutObject. Memory stays around one part whatever the object size; with
//! S3's 10,000-part limit the largest object is about 80 GB.
//!
//! A long file imported in several pieces writes one object across them: [`S3ObjectWriter::suspend`] keeps
//! the multipart upload open and returns a [`WriterState`] (upload id, parts so far, and the key of a small
//! *carry* object holding the bytes not yet a full part, since every part but the last must be ≥ 5 MiB);
//! the next piece resumes from it ([`S3ObjectWriter::resume`]) and the last one completes the upload. Part
//! numbers continue from the state, so a piece redone after a crash re-sends the same part numbers and
//! only the parts listed in the state at completion count: the object is exactly one pass's output.

use std::collections::HashMap;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use s3_importer_core::sink::SinkError;
use serde::{Deserialize, Serialize};

use crate::error::AwsCallError;

/// Smallest part sent (S3 requires ≥ 5 MiB for every part but the last).
pub const PART_SIZE: usize = 8 * 1024 * 1024;

/// One uploaded part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartRef {
    /// Part number.
    pub n: i32,
    /// The part's ETag.
    pub etag: String,
}

/// What a suspended writer hands to the next piece (stored in the ledger's checkpoint).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterState {
    /// The open multipart upload, once one was started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
    /// Parts uploaded so far, in order.
    #[serde(default)]
    pub parts: Vec<PartRef>,
    /// Bytes written so far (parts and carry).
    pub bytes: u64,
    /// Key (same bucket) of the object holding the bytes written but not yet sent as a part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carry: Option<String>,
}

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
    /// The carry object this writer was resumed from (deleted once the object is complete).
    resumed_carry: Option<String>,
    /// A crashed earlier attempt already completed the object: nothing is left to write.
    already_complete: bool,
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
            resumed_carry: None,
            already_complete: false,
        }
    }

    /// Carries on writing an object a suspended writer left (see the module docs). The carry object's
    /// bytes are read back into the buffer. When the carry or the upload is gone and the object exists, an
    /// earlier attempt of the last piece completed it: the writer then writes nothing.
    pub async fn resume(mut self, state: WriterState) -> Result<Self, SinkError> {
        self.upload_id = state.upload_id;
        self.parts = state
            .parts
            .into_iter()
            .map(|p| {
                CompletedPart::builder()
                    .part_number(p.n)
                    .e_tag(p.etag)
                    .build()
            })
            .collect();
        self.bytes = state.bytes;
        if let Some(carry) = state.carry {
            let result = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&carry)
                .send()
                .await;
            match result {
                Ok(out) => {
                    let whole = out.body.collect(); // bounded: a carry object is under one 5 MiB part
                    let data = whole.await.map_err(|e| {
                        SinkError::transient(format!("read s3://{}/{carry}", self.bucket), e)
                    })?;
                    self.buffer = data.into_bytes().to_vec();
                }
                Err(e) => {
                    let err = AwsCallError::from_sdk(e);
                    if err.code.as_deref() == Some("NoSuchKey") && self.exists().await? {
                        self.already_complete = true;
                    } else {
                        return Err(
                            self.error(&format!("read s3://{}/{carry} for", self.bucket), err)
                        );
                    }
                }
            }
            self.resumed_carry = Some(carry);
        }
        Ok(self)
    }

    /// Whether the object exists (HeadObject).
    pub async fn exists(&self) -> Result<bool, SinkError> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) => {
                let err = AwsCallError::from_sdk(e);
                if err.status == Some(404) {
                    Ok(false)
                } else {
                    Err(self.error("look for", err))
                }
            }
        }
    }

    /// Stops writing without making the object visible: the buffered bytes (less than a part) go to the
    /// carry object `carry_key`, and the returned state lets [`S3ObjectWriter::resume`] carry on.
    pub async fn suspend(&mut self, carry_key: &str) -> Result<WriterState, SinkError> {
        self.check_open()?;
        let carry = if self.buffer.is_empty() || self.already_complete {
            None
        } else {
            let body = std::mem::take(&mut self.buffer);
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(carry_key)
                .body(ByteStream::from(body))
                .send()
                .await
                .map_err(|e| self.error("write the carry of", AwsCallError::from_sdk(e)))?;
            Some(carry_key.to_owned())
        };
        Ok(WriterState {
            upload_id: self.upload_id.clone(),
            parts: self
                .parts
                .iter()
                .map(|p| PartRef {
                    n: p.part_number().unwrap_or_default(),
                    etag: p.e_tag().unwrap_or_default().to_owned(),
                })
                .collect(),
            bytes: self.bytes,
            carry,
        })
    }

    /// Deletes the carry object this writer was resumed from (best effort: a leftover is only clutter).
    async fn delete_resumed_carry(&mut self) {
        if let Some(carry) = self.resumed_carry.take() {
            if let Err(e) = self
                .client
                .delete_object()
                .bucket(&self.bucket)
                .key(&carry)
                .send()
                .await
            {
                tracing::warn!(bucket = %self.bucket, key = %carry, error = %AwsCallError::from_sdk(e), "cannot delete a carry object");
            }
        }
    }

    /// An upload that vanished while the object exists was completed by an earlier attempt.
    async fn completed_elsewhere(&mut self, err: &AwsCallError) -> Result<bool, SinkError> {
        if err.code.as_deref() == Some("NoSuchUpload") && self.exists().await? {
            self.already_complete = true;
            self.buffer.clear();
            return Ok(true);
        }
        Ok(false)
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
        if self.already_complete {
            self.bytes += data.len() as u64;
            return Ok(());
        }
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
        let out = match self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(&upload_id)
            .part_number(part_number)
            .body(ByteStream::from(body))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) => {
                let err = AwsCallError::from_sdk(e);
                if self.completed_elsewhere(&err).await? {
                    return Ok(());
                }
                return Err(self.error(&format!("upload part {part_number} of"), err));
            }
        };
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
        if self.already_complete {
            self.state = State::Finished;
            self.delete_resumed_carry().await;
            return Ok(());
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
            if !self.already_complete {
                let upload_id = self.upload_id().await?;
                let result = self
                    .client
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
                    .await;
                if let Err(e) = result {
                    let err = AwsCallError::from_sdk(e);
                    if !self.completed_elsewhere(&err).await? {
                        return Err(self.error("complete multipart upload of", err));
                    }
                }
            }
        }
        self.state = State::Finished;
        self.delete_resumed_carry().await;
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
