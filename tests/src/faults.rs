//! Faults injected at the SDK's HTTP layer, under the importer's own clients (`make soak`): throttling, 5xx
//! answers, connections reset before the request is sent or after the service applied it (the answer lost),
//! and added latency. The SDK's retries, the engine's transient-error handling and the ledger's conditions
//! are what must absorb them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_s3::primitives::SdkBody;
use aws_smithy_runtime_api::client::http::{
    http_client_fn, HttpClient, HttpConnector, HttpConnectorFuture, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::http::StatusCode;

use crate::recording::Call;

/// Per-request probabilities of each fault (each in `[0, 1]`; their sum at most 1).
#[derive(Debug, Clone, Copy)]
pub struct FaultRates {
    /// S3 503 SlowDown, DynamoDB ThrottlingException, SQS 503.
    pub throttle: f64,
    /// A 500 answer.
    pub server_error: f64,
    /// The connection reset before the request is sent.
    pub reset_before: f64,
    /// The request applied by the service and its answer lost (the connection reset after it).
    pub reset_after: f64,
    /// The request delayed by up to `max_latency`.
    pub latency: f64,
    /// The largest added latency.
    pub max_latency: Duration,
}

/// How many faults of each kind were injected.
#[derive(Debug, Default)]
pub struct FaultCounts {
    /// Requests seen.
    pub requests: AtomicU64,
    /// Throttling answers.
    pub throttled: AtomicU64,
    /// 500 answers.
    pub server_errors: AtomicU64,
    /// Resets before sending.
    pub reset_before: AtomicU64,
    /// Answers lost after the service applied the request.
    pub reset_after: AtomicU64,
    /// Delayed requests.
    pub delayed: AtomicU64,
}

impl FaultCounts {
    /// `requests=… throttled=… server_errors=… reset_before=… reset_after=… delayed=…`.
    pub fn summary(&self) -> String {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "requests={} throttled={} server_errors={} reset_before={} reset_after={} delayed={}",
            n(&self.requests),
            n(&self.throttled),
            n(&self.server_errors),
            n(&self.reset_before),
            n(&self.reset_after),
            n(&self.delayed)
        )
    }
}

/// A small deterministic generator (splitmix64), shared by the connectors of one configuration.
#[derive(Debug)]
pub struct Rng(Mutex<u64>);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(Mutex::new(seed))
    }

    /// A number in `[0, 1)`.
    pub fn unit(&self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A number in `[0, n)` (0 when `n` is 0).
    pub fn below(&self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }

    fn next(&self) -> u64 {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// `base` with an HTTP client that injects faults at `rates` into every request, counted in `counts`.
pub fn faulty(
    base: &SdkConfig,
    rates: FaultRates,
    rng: Arc<Rng>,
    counts: Arc<FaultCounts>,
) -> SdkConfig {
    let inner = aws_smithy_http_client::Builder::new().build_http();
    let client = http_client_fn(move |settings, components| {
        SharedHttpConnector::new(FaultyConnector {
            inner: inner.http_connector(settings, components),
            rates,
            rng: rng.clone(),
            counts: counts.clone(),
        })
    });
    base.to_builder().http_client(client).build()
}

#[derive(Debug)]
struct FaultyConnector {
    inner: SharedHttpConnector,
    rates: FaultRates,
    rng: Arc<Rng>,
    counts: Arc<FaultCounts>,
}

/// An error answer of `service` with `status` and `code`, in the protocol's own shape.
fn answer(service: &str, status: u16, code: &str) -> HttpResponse {
    let (content_type, body) = if service == "s3" {
        (
            "application/xml",
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
                 <Message>injected</Message><RequestId>fault</RequestId></Error>"
            ),
        )
    } else {
        (
            "application/x-amz-json-1.0",
            format!("{{\"__type\":\"{code}\",\"message\":\"injected\"}}"),
        )
    };
    let status = StatusCode::try_from(status)
        .or_else(|_| StatusCode::try_from(500u16))
        .expect("500 is a status code");
    let mut response = HttpResponse::new(status, SdkBody::from(body));
    response.headers_mut().insert("content-type", content_type);
    response
}

fn reset(when: &str) -> ConnectorError {
    ConnectorError::io(format!("connection reset by peer (injected {when})").into())
}

impl HttpConnector for FaultyConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let count = |c: &AtomicU64| c.fetch_add(1, Ordering::Relaxed);
        count(&self.counts.requests);
        let service = Call::from_request(&request).service;
        let r = self.rates;
        let mut roll = self.rng.unit();
        let mut hit = |p: f64| {
            roll -= p;
            roll < 0.0
        };
        if hit(r.throttle) {
            count(&self.counts.throttled);
            let response = match service.as_str() {
                "s3" => answer("s3", 503, "SlowDown"),
                "dynamodb" => answer(
                    "dynamodb",
                    400,
                    "com.amazonaws.dynamodb.v20120810#ThrottlingException",
                ),
                other => answer(other, 503, "ServiceUnavailable"),
            };
            return HttpConnectorFuture::ready(Ok(response));
        }
        if hit(r.server_error) {
            count(&self.counts.server_errors);
            return HttpConnectorFuture::ready(Ok(answer(&service, 500, "InternalError")));
        }
        if hit(r.reset_before) {
            count(&self.counts.reset_before);
            return HttpConnectorFuture::ready(Err(reset("before sending")));
        }
        if hit(r.reset_after) {
            count(&self.counts.reset_after);
            let sent = self.inner.call(request);
            return HttpConnectorFuture::new(async move {
                let _applied = sent.await;
                Err(reset("after the service answered"))
            });
        }
        if hit(r.latency) {
            count(&self.counts.delayed);
            let millis = self.rng.below(r.max_latency.as_millis() as u64 + 1);
            let sent = self.inner.call(request);
            return HttpConnectorFuture::new(async move {
                tokio::time::sleep(Duration::from_millis(millis)).await;
                sent.await
            });
        }
        self.inner.call(request)
    }
}
