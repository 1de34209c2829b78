//! The one classification as every adapter applies it: HTTP 429 with no error code, and
//! `LimitExceededException`, come back from each service's real deserializer (the mock answers with the
//! HTTP response the service would send) and each adapter must call them transient or retry them.
//!
//! SDK retries are disabled on every client, so what is seen is the adapter's own mapping.

use std::time::Duration;

use aws_smithy_mocks::{mock, RuleMode};
use chrono::Utc;
use s3_importer_core::sync::ports::{FileLedger, FileQueue, ObjectSource, SourceError, StateError};
use s3_importer_core::sync::FileVersion;

use crate::error::AwsCallError;
use crate::queue::SqsQueue;
use crate::s3_writer::S3ObjectWriter;
use crate::source::S3Source;
use crate::state::DynamoStateStore;
use crate::sts::{RoleCredentialsCache, RoleKey};
use crate::test_support::{
    accepted_entry, answering, client_without_retries, message, s3_error_body, source,
};

/// The answers every adapter must treat as "try again later": a bare 429, and a throttling code that only
/// one of the two old lists knew.
const THROTTLED: [(u16, Option<&str>); 2] = [(429, None), (400, Some("LimitExceededException"))];

/// A client of `$sdk` (SDK retries off) each of whose `$operation`s answers HTTP `$status` with `$body`.
macro_rules! throttled_client {
    ($sdk:ident, $status:expr, $body:expr, [$($operation:ident),+]) => {{
        let body: Option<String> = $body;
        let rules = [$(answering(mock!($sdk::Client::$operation), $status, body.clone())),+];
        client_without_retries!($sdk, RuleMode::MatchAny, &rules)
    }};
}

/// An STS (query protocol) error body.
fn sts_body(code: &str) -> String {
    format!(
        "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>mocked {code}</Message>\
         </Error><RequestId>r</RequestId></ErrorResponse>"
    )
}

/// A JSON-protocol (DynamoDB, SQS) error body.
fn json_body(namespace: &str, code: &str) -> String {
    format!(r#"{{"__type":"{namespace}#{code}","message":"mocked {code}"}}"#)
}

/// A DynamoDB error body.
fn dynamodb_body(code: &str) -> String {
    json_body("com.amazonaws.dynamodb.v20120810", code)
}

fn version() -> FileVersion {
    FileVersion {
        connector_id: "c-1".to_owned(),
        bucket: "src".to_owned(),
        key: "in/a.csv".to_owned(),
        etag: "\"e\"".to_owned(),
        version_id: None,
    }
}

#[test]
fn the_policy_retries_429_and_limit_exceeded() {
    use super::FailureKind::Service;
    for (status, code) in THROTTLED {
        assert!(
            super::is_retryable(Service, code, Some(status)),
            "HTTP {status} {code:?}"
        );
    }
}

#[tokio::test]
async fn s3_source_reads_are_transient() {
    for (status, code) in THROTTLED {
        let body = code.map(s3_error_body);
        let client = throttled_client!(aws_sdk_s3, status, body, [get_object, list_objects_v2]);
        let source_reader = S3Source::with_client(client);
        let opened = source_reader
            .open(&source(), "in/a.csv", "\"e\"", None, None)
            .await;
        let err = opened.err();
        assert!(
            err.as_ref().is_some_and(SourceError::is_transient),
            "GetObject answered HTTP {status} {code:?}: {err:?}"
        );
        let listed = source_reader.list_page(&source(), None).await;
        let err = listed.err();
        assert!(
            err.as_ref().is_some_and(SourceError::is_transient),
            "ListObjectsV2 answered HTTP {status} {code:?}: {err:?}"
        );
    }
}

#[tokio::test]
async fn s3_object_writes_are_transient() {
    for (status, code) in THROTTLED {
        let client = throttled_client!(aws_sdk_s3, status, code.map(s3_error_body), [put_object]);
        let mut writer = S3ObjectWriter::new(client, "out", "c-1/a.jsonl");
        let err = writer.finish().await.err();
        assert!(
            err.as_ref().is_some_and(|e| e.is_transient()),
            "PutObject answered HTTP {status} {code:?}: {err:?}"
        );
    }
}

#[tokio::test]
async fn sts_assume_role_is_transient() {
    for (status, code) in THROTTLED {
        let sts = throttled_client!(aws_sdk_sts, status, code.map(sts_body), [assume_role]);
        let key = RoleKey {
            role_arn: "arn:aws:iam::111122223333:role/source".to_owned(),
            external_id: Some("ext".to_owned()),
        };
        let err = RoleCredentialsCache::new(sts)
            .credentials(&key, "s3-importer-src")
            .await
            .err();
        assert!(
            matches!(err, Some(SourceError::Transient { .. })),
            "AssumeRole answered HTTP {status} {code:?}: {err:?}"
        );
    }
}

#[tokio::test]
async fn sqs_sends_are_retried() -> Result<(), Box<dyn std::error::Error>> {
    for (status, code) in THROTTLED {
        let send = mock!(aws_sdk_sqs::Client::send_message_batch)
            .sequence()
            .http_status(status, code.map(|c| json_body("com.amazonaws.sqs", c)))
            .output(|| {
                aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput::builder()
                    .successful(accepted_entry("0"))
                    .set_failed(Some(vec![]))
                    .build()
                    .unwrap_or_else(|e| panic!("a complete output: {e}"))
            })
            .build();
        let client = client_without_retries!(aws_sdk_sqs, RuleMode::Sequential, [&send]);
        let accepted = tokio::time::timeout(
            Duration::from_secs(10),
            SqsQueue::new(client, "q").send(&[message(version())]),
        )
        .await??;
        assert_eq!(
            (accepted, send.num_calls()),
            (vec![true], 2),
            "SendMessageBatch answered HTTP {status} {code:?} once: retried and accepted"
        );
    }
    Ok(())
}

#[tokio::test]
async fn dynamodb_state_writes_and_reads_are_transient() {
    for (status, code) in THROTTLED {
        let body = code.map(dynamodb_body);
        let client = throttled_client!(aws_sdk_dynamodb, status, body, [put_item, get_item]);
        let store = DynamoStateStore::new(client, "state");
        let object = s3_importer_core::sync::model::ObjectMeta {
            key: "in/a.csv".to_owned(),
            etag: "\"e\"".to_owned(),
            size: 1,
            last_modified: Utc::now(),
            storage_class: None,
            restored: false,
            version_id: None,
        };
        let entry =
            s3_importer_core::sync::model::LedgerEntry::discovered(version(), &object, Utc::now());
        let err = store.claim_file(&entry).await.err();
        assert!(
            matches!(err, Some(StateError::Transient { .. })),
            "PutItem (a conditional write) answered HTTP {status} {code:?}: {err:?}"
        );
        let err = store.get_file("c-1", "f").await.err();
        assert!(
            matches!(err, Some(StateError::Transient { .. })),
            "GetItem answered HTTP {status} {code:?}: {err:?}"
        );
    }
}

#[tokio::test]
async fn dynamodb_record_writes_and_table_creation_are_retryable() {
    for (status, code) in THROTTLED {
        let body = code.map(dynamodb_body);
        let client = throttled_client!(aws_sdk_dynamodb, status, body, [put_item, create_table]);
        // The records sink's PutItem is mapped by exactly this (`AwsCallError::from_sdk`, then
        // `is_retryable` decides between retrying and a permanent failure).
        let put_error = client
            .put_item()
            .table_name("records")
            .item("pk", aws_sdk_dynamodb::types::AttributeValue::S("k".into()))
            .send()
            .await
            .err()
            .map(AwsCallError::from_sdk);
        assert!(
            put_error.as_ref().is_some_and(AwsCallError::is_retryable),
            "PutItem answered HTTP {status} {code:?}: {put_error:?}"
        );
        let created = crate::records::create_records_table(&client, "records").await;
        let err = created.err();
        assert!(
            err.as_ref().is_some_and(AwsCallError::is_retryable),
            "CreateTable answered HTTP {status} {code:?}: {err:?}"
        );
    }
}
