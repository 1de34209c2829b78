//! What the adapters' unit tests share: the source they read, the messages they send, and the mocked
//! answers and clients (`aws_smithy_mocks`) they are tested against.

use std::fmt::Debug;

use aws_sdk_sqs::types::SendMessageBatchResultEntry;
use aws_smithy_mocks::{Rule, RuleBuilder};
use aws_smithy_types::error::ErrorMetadata;
use chrono::{TimeZone, Utc};
use s3_importer_core::sync::{FileMessage, FileVersion, Source};

/// `mock_client!` with the SDK's own retries disabled, so a test sees the adapter's own mapping and retries.
macro_rules! client_without_retries {
    ($sdk:ident, $mode:expr, $rules:expr) => {
        aws_smithy_mocks::mock_client!($sdk, $mode, $rules, |c| c
            .retry_config($sdk::config::retry::RetryConfig::disabled()))
    };
}
pub(crate) use client_without_retries;

/// A source without a role in account 111122223333: bucket `src` in eu-west-1, prefix `in/`.
pub(crate) fn source() -> Source {
    Source {
        account_id: "111122223333".to_owned(),
        bucket: "src".to_owned(),
        region: "eu-west-1".to_owned(),
        prefix: Some("in/".to_owned()),
        role_arn: None,
        external_id: None,
        versions: false,
    }
}

/// An S3 (REST-XML) error body with `code`.
pub(crate) fn s3_error_body(code: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>mocked {code}</Message><RequestId>r</RequestId></Error>"
    )
}

/// The error metadata a service's answer carries (any SDK's `ErrorMetadata` is this type).
pub(crate) fn error_meta(code: &str, message: &str) -> ErrorMetadata {
    ErrorMetadata::builder().code(code).message(message).build()
}

/// The rule `mock` answering every call with HTTP `status` and `body` (an error body, or none).
pub(crate) fn answering<I, O, E>(
    mock: RuleBuilder<I, O, E>,
    status: u16,
    body: Option<String>,
) -> Rule
where
    I: Debug + Send + Sync + 'static,
    O: Debug + Send + Sync + 'static,
    E: Debug + Send + Sync + std::error::Error + 'static,
{
    mock.sequence().http_status(status, body).build()
}

/// The work message of the first piece of `version`: one byte, last modified at 1 700 000 000 s.
pub(crate) fn message(version: FileVersion) -> FileMessage {
    FileMessage {
        v: FileMessage::VERSION,
        version,
        size: 1,
        last_modified: Utc
            .timestamp_opt(1_700_000_000, 0)
            .single()
            .unwrap_or_default(),
        piece: 0,
    }
}

/// SQS's answer that the batch entry `id` was accepted.
pub(crate) fn accepted_entry(id: &str) -> SendMessageBatchResultEntry {
    SendMessageBatchResultEntry::builder()
        .id(id)
        .message_id(format!("m{id}"))
        .md5_of_message_body("x")
        .build()
        .unwrap_or_else(|e| panic!("a complete entry: {e}"))
}

/// STS refusing `AssumeRole` (`AccessDenied`) with `message`.
pub(crate) fn assume_role_denied(
    message: &str,
) -> aws_sdk_sts::operation::assume_role::AssumeRoleError {
    aws_sdk_sts::operation::assume_role::AssumeRoleError::generic(error_meta(
        "AccessDenied",
        message,
    ))
}
