//! S3 answers the emulator does not give on its own: 403 for a missing key to a caller that may not list the
//! bucket (moto, IAM off, never does), and an error injected into one chosen GetObject.
//!
//! Without `s3:ListBucket` — or with it only under an `s3:prefix` condition, which a GetObject request does not
//! satisfy — S3 answers a GetObject of a missing key with 403 AccessDenied instead of 404 NoSuchKey, so the
//! caller cannot learn which keys exist. [`missing_keys_denied`] gives an SDK configuration whose HTTP client
//! turns the emulator's 404 answers to GetObject into that 403; ListObjectsV2 goes through (a role allowed to list
//! the folder) or is refused too (a role without `s3:ListBucket` at all).
//!
//! [`nth_get_object_answered`] answers one chosen GetObject with an error, e.g. the 412 of an object overwritten
//! in the middle of a ranged read; [`get_objects_answered_from`] answers every GetObject from a chosen one on,
//! e.g. with 503 SlowDown for a network that keeps failing once a read is under way.

use aws_config::SdkConfig;
use aws_sdk_s3::primitives::SdkBody;
use aws_smithy_runtime_api::client::http::{
    http_client_fn, HttpClient, HttpConnector, HttpConnectorFuture, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::http::StatusCode;

use crate::recording::Call;

/// Whether ListObjectsV2 is allowed to the caller whose missing keys are denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    /// Listing the bucket works (e.g. `s3:ListBucket` under an `s3:prefix` condition).
    Allowed,
    /// Listing is refused with 403 AccessDenied too.
    Refused,
}

/// `base` with an HTTP client under which a GetObject of a missing key is answered 403 AccessDenied (see the
/// module docs), and ListObjectsV2 as `listing` says.
pub fn missing_keys_denied(base: &SdkConfig, listing: Listing) -> SdkConfig {
    let inner = aws_smithy_http_client::Builder::new().build_http();
    let client = http_client_fn(move |settings, components| {
        SharedHttpConnector::new(DenyingConnector {
            inner: inner.http_connector(settings, components),
            listing,
        })
    });
    base.to_builder().http_client(client).build()
}

#[derive(Debug)]
struct DenyingConnector {
    inner: SharedHttpConnector,
    listing: Listing,
}

fn access_denied() -> HttpResponse {
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code>\
                <Message>Access Denied</Message><RequestId>denied</RequestId></Error>";
    let mut response = HttpResponse::new(
        StatusCode::try_from(403u16).expect("403 is a status code"),
        SdkBody::from(body),
    );
    response
        .headers_mut()
        .insert("content-type", "application/xml");
    response
}

impl HttpConnector for DenyingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let call = Call::from_request(&request);
        match (call.service.as_str(), call.operation.as_str()) {
            ("s3", "ListObjectsV2") if self.listing == Listing::Refused => {
                HttpConnectorFuture::ready(Ok(access_denied()))
            }
            ("s3", "GetObject") => {
                let answer = self.inner.call(request);
                HttpConnectorFuture::new(async move {
                    let response = answer.await?;
                    if response.status().as_u16() == 404 {
                        Ok(access_denied())
                    } else {
                        Ok(response)
                    }
                })
            }
            _ => self.inner.call(request),
        }
    }
}

/// `base` with an HTTP client that answers the `n`-th GetObject (counting from 1) with `status` and the S3 error
/// `code` instead of sending it, e.g. 412 PreconditionFailed for an object overwritten in the middle of a
/// ranged read.
pub fn nth_get_object_answered(
    base: &SdkConfig,
    n: usize,
    status: u16,
    code: &'static str,
) -> SdkConfig {
    get_objects_answered(base, None, n..=n, status, code)
}

/// `base` with an HTTP client that answers every GetObject of `bucket` from the `n`-th on (counting from 1, the
/// SDK's own retries included) with `status` and the S3 error `code` instead of sending it.
pub fn get_objects_answered_from(
    base: &SdkConfig,
    bucket: &str,
    n: usize,
    status: u16,
    code: &'static str,
) -> SdkConfig {
    get_objects_answered(base, Some(bucket.to_owned()), n..=usize::MAX, status, code)
}

/// GetObjects (of `bucket`, or of any bucket) numbered `calls` are answered with `status` and `code`.
fn get_objects_answered(
    base: &SdkConfig,
    bucket: Option<String>,
    calls: std::ops::RangeInclusive<usize>,
    status: u16,
    code: &'static str,
) -> SdkConfig {
    let inner = aws_smithy_http_client::Builder::new().build_http();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let client = http_client_fn(move |settings, components| {
        SharedHttpConnector::new(NthGetConnector {
            inner: inner.http_connector(settings, components),
            seen: seen.clone(),
            bucket: bucket.clone(),
            calls: calls.clone(),
            status,
            code,
        })
    });
    base.to_builder().http_client(client).build()
}

#[derive(Debug)]
struct NthGetConnector {
    inner: SharedHttpConnector,
    seen: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    bucket: Option<String>,
    calls: std::ops::RangeInclusive<usize>,
    status: u16,
    code: &'static str,
}

impl HttpConnector for NthGetConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let call = Call::from_request(&request);
        if (call.service.as_str(), call.operation.as_str()) == ("s3", "GetObject")
            && self
                .bucket
                .as_ref()
                .is_none_or(|b| *b == call.s3_bucket_and_key().0)
            && self
                .calls
                .contains(&(self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1))
        {
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code>\
                 <Message>injected</Message><RequestId>injected</RequestId></Error>",
                self.code
            );
            let mut response = HttpResponse::new(
                StatusCode::try_from(self.status).expect("a status code"),
                SdkBody::from(body),
            );
            response
                .headers_mut()
                .insert("content-type", "application/xml");
            return HttpConnectorFuture::ready(Ok(response));
        }
        self.inner.call(request)
    }
}
