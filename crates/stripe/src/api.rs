//! One Stripe API call, with Stripe's rules applied: `Authorization: Bearer` with the secret key,
//! `Stripe-Version` pinned, `Idempotency-Key` on creates, the client-side rate and concurrency limits, and
//! the retry policy (exponential backoff with full jitter, bounded attempts and total time).
//!
//! | answer | what happens |
//! |---|---|
//! | 2xx | the object |
//! | 401, 403 | the key is revoked or lacks a permission: the file fails and the connector is marked broken |
//! | 404 `resource_missing` (or without a code) | [`Reply::Missing`] (an upsert then creates) |
//! | 429, 409 (a concurrent request with the same idempotency key), 5xx, a timeout, a reset | retried, unless `Stripe-Should-Retry: false`; given up after the policy: a transient failure (the file is retried later, with the same idempotency keys) |
//! | another 4xx (`invalid_request_error`…) | [`Reply::Refused`]: the row goes to the error report with Stripe's message and `param` |
//!
//! `Stripe-Should-Retry: true` makes any status retried; `false` makes none retried.

use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, AUTHORIZATION};
use http::Method;
use s3_importer_core::sink::SinkError;
use s3_importer_webhook::deliver::may_retry;
use s3_importer_webhook::{Answer, Request};
use serde_json::Value;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::error::{Refusal, StripeError};
use crate::form::Form;
use crate::Stripe;

/// The API version every request pins (`Stripe-Version`): the objects' shapes the sink reads are this
/// version's.
pub const API_VERSION: &str = "2024-06-20";

/// What Stripe answered to a call that did not fail the file.
#[derive(Debug, Clone)]
pub enum Reply {
    /// The object (or list) returned.
    Object(Value),
    /// 404 `resource_missing`.
    Missing,
    /// A 4xx refusing the request (the row's fault).
    Refused(Refusal),
}

impl Stripe {
    /// `GET path` (with its query).
    pub async fn get(&self, path: &str) -> Result<Reply, SinkError> {
        self.call(Method::GET, path, None, None).await
    }

    /// `POST path` with `form`, under `idempotency_key` when it creates something.
    pub async fn post(
        &self,
        path: &str,
        form: &Form,
        idempotency_key: Option<&str>,
    ) -> Result<Reply, SinkError> {
        self.call(Method::POST, path, Some(form), idempotency_key)
            .await
    }

    /// One call: see the module docs.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        form: Option<&Form>,
        idempotency_key: Option<&str>,
    ) -> Result<Reply, SinkError> {
        let context = || format!("Stripe {method} {path}");
        let body = form.map(|f| Bytes::from(f.encode())).unwrap_or_default();
        let full_path = format!("{}{path}", self.base_path);
        let mut headers = vec![
            (AUTHORIZATION, format!("Bearer {}", self.key.expose())),
            (
                HeaderName::from_static("stripe-version"),
                API_VERSION.to_owned(),
            ),
        ];
        if let Some(key) = idempotency_key {
            headers.push((HeaderName::from_static("idempotency-key"), key.to_owned()));
        }
        let request = Request {
            method: method.clone(),
            path_and_query: &full_path,
            content_type: form.map(|_| "application/x-www-form-urlencoded"),
            headers: &headers,
        };
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = {
                let _permit = self.throttle.acquire().await;
                self.client.send(request.clone(), body.clone()).await
            };
            let answer = match result {
                Ok(answer) => answer,
                Err(e) if e.is_retryable() => {
                    if !may_retry(&self.policy, attempt, started, None) {
                        return Err(SinkError::transient(
                            format!("{} after {attempt} attempts", context()),
                            e,
                        ));
                    }
                    warn!(%method, path, error = %e, attempt, "Stripe request failed; retrying");
                    tokio::time::sleep(self.policy.delay(attempt, None)).await;
                    continue;
                }
                Err(e) => return Err(SinkError::permanent(context(), e)),
            };
            let should_retry = should_retry(&answer);
            let status = answer.status;
            if (200..300).contains(&status) {
                debug!(%method, path, status, attempt, "Stripe call done");
                return serde_json::from_slice(&answer.body)
                    .map(Reply::Object)
                    .map_err(|e| {
                        SinkError::transient(context(), StripeError::BadAnswer(e.to_string()))
                    });
            }
            let refusal = Refusal::from_answer(&answer);
            if status == 401 || status == 403 {
                self.refuse_key();
                return Err(SinkError::connector_broken(
                    context(),
                    StripeError::KeyRejected(refusal),
                ));
            }
            let retryable = should_retry
                .unwrap_or(status == 409 || status == 429 || status == 408 || status >= 500);
            if retryable {
                if !may_retry(&self.policy, attempt, started, answer.retry_after) {
                    return Err(SinkError::transient(
                        format!("{} after {attempt} attempts", context()),
                        StripeError::Answered(refusal),
                    ));
                }
                warn!(%method, path, status, attempt, "Stripe answered a retryable status");
                let wait = self.policy.delay(attempt, answer.retry_after);
                tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
                continue;
            }
            if status >= 500 {
                return Err(SinkError::transient(
                    context(),
                    StripeError::Answered(refusal),
                ));
            }
            // Stripe says `resource_missing`; a fake server may give no code.
            if status == 404 && matches!(refusal.code.as_deref(), None | Some("resource_missing")) {
                return Ok(Reply::Missing);
            }
            return Ok(Reply::Refused(refusal));
        }
    }
}

/// `Stripe-Should-Retry`, when the answer has it.
fn should_retry(answer: &Answer) -> Option<bool> {
    match answer
        .headers
        .get("stripe-should-retry")
        .and_then(|v| v.to_str().ok())
    {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    }
}
