//! Turning SDK errors into facts we can decide on (code, HTTP status, kind of failure), and the one set of
//! pure rules that classify them. Every adapter (state, source, queue, destination, S3 writer, STS) maps
//! these onto the port's error type ([`SourceError`], [`SinkError`], [`QueueError`], [`StateError`]) so an
//! SDK upgrade stops at this crate, and none keeps its own list of codes (`docs/architecture.md`, "Errors
//! and retries").
//!
//! | failure | retryable |
//! |---|---|
//! | timeout, dispatch failure (connection, DNS, TLS, credentials), unreadable response | yes |
//! | HTTP 429 or 5xx, whatever the code | yes |
//! | a throttling code of S3, SQS, DynamoDB, STS or KMS (`SlowDown`, `RequestThrottled`, `Throttling`, `ProvisionedThroughputExceededException`, `LimitExceededException`, ...) | yes |
//! | a server-side code (`InternalError`, `ServiceUnavailable`, `RequestTimeout`, ...) | yes |
//! | a DynamoDB transaction cancelled for `TransactionConflict`, `ThrottlingError` or `ProvisionedThroughputExceeded` | yes |
//! | a request that could not be built | no |
//! | any other answer (`ConditionalCheckFailedException`, `ValidationException`, `AccessDenied`, ...) | no: a domain outcome or a permanent error |
//!
//! [`SourceError`]: s3_importer_core::sync::ports::SourceError
//! [`SinkError`]: s3_importer_core::sink::SinkError
//! [`QueueError`]: s3_importer_core::sync::ports::QueueError
//! [`StateError`]: s3_importer_core::sync::ports::StateError

use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How an SDK call failed, before looking at the service's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The request could not be built (a bug or invalid input): never retried.
    Construction,
    /// No response in time.
    Timeout,
    /// The request could not be sent (connection refused, DNS, TLS, credentials could not be loaded).
    Dispatch,
    /// A response arrived but could not be read.
    Response,
    /// The service answered with an error.
    Service,
}

/// An SDK error reduced to what decisions need, keeping the original as the source.
#[derive(Debug, thiserror::Error)]
#[error("{summary}")]
pub struct AwsCallError {
    /// Kind of failure.
    pub kind: FailureKind,
    /// The service's error code (`NoSuchKey`, `SlowDown`, ...), when it sent one.
    pub code: Option<String>,
    /// The service's message.
    pub message: Option<String>,
    /// HTTP status of the response, when there was one.
    pub status: Option<u16>,
    /// `x-amz-bucket-region` from the response (S3 sends it on redirects and wrong-region errors).
    pub bucket_region: Option<String>,
    summary: String,
    #[source]
    source: BoxError,
}

impl AwsCallError {
    /// Inspects an SDK error from any AWS service client.
    pub fn from_sdk<E>(err: SdkError<E, HttpResponse>) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let kind = match &err {
            SdkError::ConstructionFailure(_) => FailureKind::Construction,
            SdkError::TimeoutError(_) => FailureKind::Timeout,
            SdkError::DispatchFailure(_) => FailureKind::Dispatch,
            SdkError::ResponseError(_) => FailureKind::Response,
            _ => FailureKind::Service,
        };
        let code = err.code().map(str::to_owned);
        let message = err.message().map(str::to_owned);
        let status = err.raw_response().map(|r| r.status().as_u16());
        let bucket_region = err
            .raw_response()
            .and_then(|r| r.headers().get("x-amz-bucket-region"))
            .map(str::to_owned);
        let summary = match (kind, &code) {
            (FailureKind::Service, Some(code)) => {
                let mut s = code.clone();
                if let Some(m) = message.as_deref().filter(|m| !m.is_empty()) {
                    s.push_str(": ");
                    s.push_str(m);
                }
                if let Some(status) = status {
                    s.push_str(&format!(" (HTTP {status})"));
                }
                s
            }
            (FailureKind::Service, None) => match status {
                Some(status) => format!("HTTP {status} with no error code"),
                None => DisplayErrorContext(&err).to_string(),
            },
            _ => DisplayErrorContext(&err).to_string(),
        };
        Self {
            kind,
            code,
            message,
            status,
            bucket_region,
            summary,
            source: Box::new(err),
        }
    }

    /// A request that could not be built (never retried).
    pub fn construction(message: impl Into<String>) -> Self {
        let summary = message.into();
        Self {
            kind: FailureKind::Construction,
            code: None,
            message: None,
            status: None,
            bucket_region: None,
            source: summary.clone().into(),
            summary,
        }
    }

    /// The error code, or `""`.
    pub fn code(&self) -> &str {
        self.code.as_deref().unwrap_or("")
    }

    /// The message, or the summary when the service sent none.
    pub fn message_or_summary(&self) -> &str {
        self.message
            .as_deref()
            .filter(|m| !m.is_empty())
            .unwrap_or(&self.summary)
    }

    /// True when retrying later may succeed: see [`is_retryable`].
    pub fn is_retryable(&self) -> bool {
        is_retryable(self.kind, self.code.as_deref(), self.status)
    }
}

/// A failed DynamoDB TransactWriteItems: the call, and the cancellation reasons of its items, which tell a
/// failed condition (a domain outcome) from a conflict or throttling (retryable). Kept apart from
/// [`AwsCallError`] so that every other call's error stays small.
#[derive(Debug)]
pub struct TransactionFailure {
    /// The call's failure.
    pub call: AwsCallError,
    /// The per-item reasons (`ConditionalCheckFailed`, `None`, ...), in the order of the transaction's
    /// items; empty when the transaction failed for another reason than a cancellation.
    pub reasons: Vec<String>,
}

impl TransactionFailure {
    /// Inspects a failed TransactWriteItems.
    pub fn from_sdk(err: SdkError<TransactWriteItemsError, HttpResponse>) -> Self {
        let reasons: Vec<String> = match err.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(e)) => e
                .cancellation_reasons()
                .iter()
                // DynamoDB names the items that did not fail `None`; a missing code means the same.
                .map(|r| r.code().unwrap_or("None").to_owned())
                .collect(),
            _ => Vec::new(),
        };
        let mut call = AwsCallError::from_sdk(err);
        if !reasons.is_empty() {
            call.summary
                .push_str(&format!(" (cancellation reasons: {})", reasons.join(", ")));
        }
        Self { call, reasons }
    }

    /// True when retrying later may succeed: the call by [`is_retryable`], or a reason by
    /// [`is_retryable_cancellation`].
    pub fn is_retryable(&self) -> bool {
        self.call.is_retryable() || self.reasons.iter().any(|r| is_retryable_cancellation(r))
    }
}

/// Throttling and request-rate limits of S3, SQS, DynamoDB and STS (and KMS behind S3): the service asks us
/// to slow down, so a later attempt may succeed.
const THROTTLING_CODES: &[&str] = &[
    // S3
    "SlowDown",
    // STS, and the generic AWS code
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    // SQS (JSON protocol, then query protocol)
    "RequestThrottled",
    "AWS.SimpleQueueService.RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    // DynamoDB
    "RequestLimitExceeded",
    "LimitExceededException",
    "ProvisionedThroughputExceededException",
    "TransactionConflictException",
    // KMS, for SSE-KMS objects
    "KMS.ThrottlingException",
];

/// Server-side failures and timeouts: the request was fine, the service could not answer it this time.
const SERVER_CODES: &[&str] = &[
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
    "PriorRequestNotComplete",
    "IDPCommunicationError",
    "KMS.KMSInternalException",
];

/// Reasons (`CancellationReason.Code`) for which DynamoDB cancels a transaction and a later attempt may
/// succeed: a conflict with another transaction, or throttling of one of its items.
const RETRYABLE_CANCELLATIONS: &[&str] = &[
    "TransactionConflict",
    "ThrottlingError",
    "ProvisionedThroughputExceeded",
];

/// True for an error code that means "try again later" on any of the services we call: throttling,
/// request-rate limits and server-side failures.
pub fn is_retryable_code(code: &str) -> bool {
    THROTTLING_CODES.contains(&code) || SERVER_CODES.contains(&code)
}

/// True for a DynamoDB transaction cancellation reason that means "try again later".
pub fn is_retryable_cancellation(reason: &str) -> bool {
    RETRYABLE_CANCELLATIONS.contains(&reason)
}

/// The retry classification every adapter uses: timeouts, dispatch failures, unreadable responses, HTTP
/// 429 and 5xx, and the throttling and server-side codes ([`is_retryable_code`]) are retryable;
/// construction failures never are; any other answer of the service is permanent.
pub fn is_retryable(kind: FailureKind, code: Option<&str>, status: Option<u16>) -> bool {
    match kind {
        FailureKind::Construction => false,
        FailureKind::Timeout | FailureKind::Dispatch | FailureKind::Response => true,
        FailureKind::Service => {
            code.is_some_and(is_retryable_code) || status.is_some_and(|s| s == 429 || s >= 500)
        }
    }
}

/// What an S3 failure means for an object (source reads and listings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Failure {
    /// The key does not exist (404 / NoSuchKey).
    NotFound,
    /// The `If-Match` ETag no longer matches (412 / PreconditionFailed).
    Changed,
    /// The bucket does not exist.
    NoSuchBucket,
    /// 403: no permission, or the bucket is not owned by the expected account.
    AccessDenied,
    /// The object is in an archive tier and not restored (InvalidObjectState).
    Archived,
    /// The object's KMS key cannot be used (`KMS.*`).
    Kms,
    /// The bucket is in another region (PermanentRedirect, 301, AuthorizationHeaderMalformed).
    WrongRegion,
    /// The requested range starts past the end of the object (416 / InvalidRange).
    InvalidRange,
    /// Throttling, 5xx, timeouts, dispatch failures.
    Transient,
    /// Anything else: permanent.
    Other,
}

/// Classifies an S3 failure. The code wins over the status; a status alone (HEAD-like responses without a
/// body) is used when there is no code.
pub fn classify_s3(kind: FailureKind, code: Option<&str>, status: Option<u16>) -> S3Failure {
    if kind != FailureKind::Service {
        return if is_retryable(kind, code, status) {
            S3Failure::Transient
        } else {
            S3Failure::Other
        };
    }
    match code {
        Some("NoSuchKey") | Some("NoSuchVersion") | Some("NotFound") => S3Failure::NotFound,
        Some("PreconditionFailed") => S3Failure::Changed,
        Some("NoSuchBucket") => S3Failure::NoSuchBucket,
        Some("AccessDenied")
        | Some("AllAccessDisabled")
        | Some("InvalidAccessKeyId")
        | Some("AccountProblem") => S3Failure::AccessDenied,
        Some("InvalidObjectState") => S3Failure::Archived,
        Some(c) if c.starts_with("KMS.") => S3Failure::Kms,
        Some("PermanentRedirect")
        | Some("AuthorizationHeaderMalformed")
        | Some("IllegalLocationConstraintException") => S3Failure::WrongRegion,
        Some("InvalidRange") => S3Failure::InvalidRange,
        c if is_retryable(kind, c, status) => S3Failure::Transient,
        Some(_) => S3Failure::Other,
        None => match status {
            Some(404) => S3Failure::NotFound,
            Some(412) => S3Failure::Changed,
            Some(403) => S3Failure::AccessDenied,
            Some(301) => S3Failure::WrongRegion,
            Some(416) => S3Failure::InvalidRange,
            _ => S3Failure::Other,
        },
    }
}

#[cfg(test)]
mod every_adapter;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_table_classifies_the_failures_of_every_service() {
        use FailureKind::*;
        let cases: &[(FailureKind, Option<&str>, Option<u16>, bool)] = &[
            // Throttling, by service.
            (Service, Some("SlowDown"), Some(503), true),
            (Service, Some("RequestThrottled"), Some(400), true),
            (
                Service,
                Some("AWS.SimpleQueueService.RequestThrottled"),
                Some(403),
                true,
            ),
            (Service, Some("Throttling"), Some(400), true),
            (Service, Some("ThrottlingException"), Some(400), true),
            (
                Service,
                Some("ProvisionedThroughputExceededException"),
                Some(400),
                true,
            ),
            (Service, Some("RequestLimitExceeded"), Some(400), true),
            (Service, Some("LimitExceededException"), Some(400), true),
            (
                Service,
                Some("TransactionConflictException"),
                Some(400),
                true,
            ),
            (Service, Some("TooManyRequestsException"), Some(400), true),
            (Service, Some("KMS.ThrottlingException"), Some(400), true),
            // Server-side.
            (Service, Some("InternalError"), Some(500), true),
            (Service, Some("InternalServerError"), Some(500), true),
            (Service, Some("ServiceUnavailable"), Some(503), true),
            (Service, Some("RequestTimeout"), Some(400), true),
            (Service, Some("IDPCommunicationError"), Some(400), true),
            // The status alone, whatever the code says.
            (Service, None, Some(429), true),
            (Service, Some("SomethingNew"), Some(429), true),
            (Service, None, Some(500), true),
            (Service, None, Some(502), true),
            (Service, None, Some(503), true),
            (Service, Some("SomethingNew"), Some(504), true),
            // Before or without an answer.
            (Timeout, None, None, true),
            (Dispatch, None, None, true),
            (Response, None, Some(200), true),
            (Construction, None, None, false),
            (Construction, Some("ThrottlingException"), Some(429), false),
            // Answers that are outcomes or permanent.
            (
                Service,
                Some("ConditionalCheckFailedException"),
                Some(400),
                false,
            ),
            (
                Service,
                Some("TransactionCanceledException"),
                Some(400),
                false,
            ),
            (Service, Some("ValidationException"), Some(400), false),
            (Service, Some("ResourceNotFoundException"), Some(400), false),
            (Service, Some("AccessDenied"), Some(403), false),
            (Service, Some("AccessDeniedException"), Some(400), false),
            (Service, Some("QueueDoesNotExist"), Some(400), false),
            (Service, Some("NoSuchKey"), Some(404), false),
            (Service, None, Some(400), false),
            (Service, None, Some(404), false),
            (Service, None, None, false),
        ];
        for &(kind, code, status, expected) in cases {
            assert_eq!(
                is_retryable(kind, code, status),
                expected,
                "kind {kind:?}, code {code:?}, status {status:?}"
            );
        }
    }

    #[test]
    fn transactions_cancelled_by_conflicts_or_throttling_are_retryable() {
        let cases = [
            ("TransactionConflict", true),
            ("ThrottlingError", true),
            ("ProvisionedThroughputExceeded", true),
            ("ConditionalCheckFailed", false),
            ("ItemCollectionSizeLimitExceeded", false),
            ("ValidationError", false),
            ("None", false),
        ];
        for (reason, expected) in cases {
            assert_eq!(
                is_retryable_cancellation(reason),
                expected,
                "reason {reason}"
            );
        }
    }

    #[test]
    fn s3_failures_are_classified_by_code_then_status() {
        use FailureKind::*;
        use S3Failure as F;
        let cases: &[(FailureKind, Option<&str>, Option<u16>, S3Failure)] = &[
            (Service, Some("NoSuchKey"), Some(404), F::NotFound),
            (Service, Some("NoSuchVersion"), Some(404), F::NotFound),
            (Service, None, Some(404), F::NotFound),
            (Service, Some("PreconditionFailed"), Some(412), F::Changed),
            (Service, None, Some(412), F::Changed),
            (Service, Some("NoSuchBucket"), Some(404), F::NoSuchBucket),
            (Service, Some("AccessDenied"), Some(403), F::AccessDenied),
            (Service, None, Some(403), F::AccessDenied),
            (Service, Some("InvalidObjectState"), Some(403), F::Archived),
            (Service, Some("KMS.DisabledException"), Some(400), F::Kms),
            (Service, Some("KMS.NotFoundException"), Some(400), F::Kms),
            (
                Service,
                Some("PermanentRedirect"),
                Some(301),
                F::WrongRegion,
            ),
            (Service, None, Some(301), F::WrongRegion),
            (
                Service,
                Some("AuthorizationHeaderMalformed"),
                Some(400),
                F::WrongRegion,
            ),
            (Service, Some("InvalidRange"), Some(416), F::InvalidRange),
            (Service, Some("SlowDown"), Some(503), F::Transient),
            (Service, None, Some(503), F::Transient),
            (Service, Some("InternalError"), Some(500), F::Transient),
            (Service, None, Some(500), F::Transient),
            (Timeout, None, None, F::Transient),
            (Dispatch, None, None, F::Transient),
            (Response, None, Some(200), F::Transient),
            (Construction, None, None, F::Other),
            (Service, Some("InvalidArgument"), Some(400), F::Other),
            (Service, None, Some(400), F::Other),
        ];
        for &(kind, code, status, expected) in cases {
            assert_eq!(
                classify_s3(kind, code, status),
                expected,
                "kind {kind:?}, code {code:?}, status {status:?}"
            );
        }
    }

    #[test]
    fn retryable_covers_throttling_of_every_service() {
        use FailureKind::Service;
        for code in [
            "SlowDown",
            "ThrottlingException",
            "ProvisionedThroughputExceededException",
            "RequestLimitExceeded",
        ] {
            assert!(is_retryable(Service, Some(code), Some(400)), "{code}");
        }
        for code in [
            "ConditionalCheckFailedException",
            "ValidationException",
            "AccessDeniedException",
        ] {
            assert!(!is_retryable(Service, Some(code), Some(400)), "{code}");
        }
        assert!(is_retryable(Service, None, Some(429)));
        assert!(is_retryable(Service, None, Some(502)));
    }
}
