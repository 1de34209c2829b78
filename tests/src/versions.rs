//! A versioned source bucket on the emulator: versioning turned on, objects written with their version ids
//! returned, and the S3 notification AWS sends for a versioned bucket (with `versionId`, which moto's own
//! notifications leave out) put on the notification queue.

use anyhow::{Context, Result};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use serde_json::json;

use crate::deployment::Deployment;
use crate::{s3_client, REGION};

/// Turns versioning on for `bucket`.
pub async fn enable_versioning(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<()> {
    s3.put_bucket_versioning()
        .bucket(bucket)
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .with_context(|| format!("enable versioning on {bucket}"))?;
    Ok(())
}

impl Deployment {
    /// Turns versioning on for the source bucket.
    pub async fn enable_versioning(&self) -> Result<()> {
        enable_versioning(&s3_client(&self.sdk), &self.source_bucket).await
    }

    /// Writes `key` (a full key) in the versioned source bucket; its ETag (quoted) and VersionId.
    pub async fn put_version(&self, key: &str, body: &[u8]) -> Result<(String, String)> {
        let out = s3_client(&self.sdk)
            .put_object()
            .bucket(&self.source_bucket)
            .key(key)
            .body(ByteStream::from(body.to_vec()))
            .send()
            .await
            .with_context(|| format!("put s3://{}/{key}", self.source_bucket))?;
        Ok((
            out.e_tag.context("PutObject returned no ETag")?,
            out.version_id
                .context("PutObject returned no VersionId: is versioning on?")?,
        ))
    }

    /// Sends the `ObjectCreated:Put` notification S3 sends directly to a queue for one version of `key`
    /// ([`created_notification`]).
    pub async fn notify_version(
        &self,
        key: &str,
        size: u64,
        etag: &str,
        version_id: &str,
    ) -> Result<()> {
        let body = created_notification(&self.source_bucket, key, size, etag, Some(version_id));
        s3_importer_aws::config::sqs_client(&self.sdk)
            .send_message()
            .queue_url(&self.provisioned.notification_queue_url)
            .message_body(body)
            .send()
            .await
            .context("send a notification")?;
        Ok(())
    }
}

/// The `ObjectCreated:Put` notification S3 sends directly to a queue for `key` in `bucket`, with its
/// `versionId` on a versioned bucket (the key form-encoded, the ETag bare, as S3 writes them).
pub fn created_notification(
    bucket: &str,
    key: &str,
    size: u64,
    etag: &str,
    version_id: Option<&str>,
) -> String {
    let mut object = json!({
        "key": form_urlencoded(key),
        "size": size,
        "eTag": etag.trim_matches('"'),
        "sequencer": "0055AED6DCD90281E5"
    });
    if let Some(version_id) = version_id {
        object["versionId"] = json!(version_id);
    }
    json!({
        "Records": [{
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": REGION,
            "eventTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "eventName": "ObjectCreated:Put",
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "s3-importer",
                "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
                "object": object
            }
        }]
    })
    .to_string()
}

/// A key as S3 writes it into a notification: unreserved bytes as they are, a space as `+`, others `%XX`.
fn form_urlencoded(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}
