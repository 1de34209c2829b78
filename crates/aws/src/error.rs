//! Turning SDK errors into facts we can decide on (code, HTTP status, kind of failure), and the pure rules
//! that classify them. Every adapter maps these onto the port's error type ([`SourceError`], [`SinkError`],
//! [`QueueError`]) so an SDK upgrade stops at this crate.
//!
//! [`SourceError`]: s3_importer_core::sync::ports::SourceError
//! [`SinkError`]: s3_importer_core::sink::SinkError
//! [`QueueError`]: s3_importer_core::sync::ports::QueueError

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

/// Throttling and server-side codes across S3, SQS, STS and DynamoDB: retrying later may succeed.
const RETRYABLE_CODES: &[&str] = &[
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "ProvisionedThroughputExceededException",
    "TransactionConflictException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
    "PriorRequestNotComplete",
    "IDPCommunicationError",
    "KMS.ThrottlingException",
    "KMS.KMSInternalException",
    "AWS.SimpleQueueService.RequestThrottled",
];

/// Retry classification shared by every adapter: timeouts, dispatch failures, unreadable responses, HTTP
/// 429 and 5xx, and the throttling/internal codes above. Construction failures never are.
pub fn is_retryable(kind: FailureKind, code: Option<&str>, status: Option<u16>) -> bool {
    match kind {
        FailureKind::Construction => false,
        FailureKind::Timeout | FailureKind::Dispatch | FailureKind::Response => true,
        FailureKind::Service => {
            code.is_some_and(|c| RETRYABLE_CODES.contains(&c))
                || status.is_some_and(|s| s == 429 || s >= 500)
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
        Some("NoSuchKey") | Some("NotFound") => S3Failure::NotFound,
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
mod tests {
    use super::*;

    #[test]
    fn s3_failures_are_classified_by_code_then_status() {
        use FailureKind::*;
        use S3Failure as F;
        let cases: &[(FailureKind, Option<&str>, Option<u16>, S3Failure)] = &[
            (Service, Some("NoSuchKey"), Some(404), F::NotFound),
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
