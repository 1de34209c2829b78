//! Delivering one batch: the request signed afresh for each attempt under the same idempotency key, the
//! per-destination concurrency and rate limits, and the retry policy (exponential backoff with full jitter,
//! bounded attempts and total time, `Retry-After` honoured).
//!
//! | answer | what happens |
//! |---|---|
//! | 2xx | delivered |
//! | 408, 429, 5xx, a timeout, a reset or refused connection | retried; given up after the policy's attempts or time: a transient failure (the file is retried later, with the same batches and keys) |
//! | 410 Gone | the destination is gone: the connector is marked broken |
//! | 3xx | a permanent failure (redirects are not followed) |
//! | another 4xx | the batch is refused: its rows go to the error report (or the file fails, `on_reject = fail`) |
//! | an address the SSRF guard refuses, a bad URL | a permanent failure |

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::HeaderName;
use s3_importer_core::sink::SinkError;
use tokio::sync::{Mutex, Semaphore, SemaphorePermit};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::client::{Answer, Client};
use crate::error::Answered;
use crate::signing::{SigningSecret, IDEMPOTENCY_HEADER, SIGNATURE_HEADER};

/// How failed requests are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts at most (the first included).
    pub attempts: u32,
    /// The first backoff's upper bound; doubled for each attempt.
    pub base: Duration,
    /// A backoff's upper bound.
    pub max_delay: Duration,
    /// Time spent on one batch at most, waits included: well under the worker's checkpoint margin (60 s),
    /// so a piece still stops before its deadline.
    pub total: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 6,
            base: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            total: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1` (1-based `attempt` just failed): full jitter over the
    /// exponential bound, or the receiver's `Retry-After` when it gave one.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after;
        }
        let bound = self
            .base
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_delay);
        bound.mul_f64(fastrand::f64())
    }
}

/// Requests in flight and requests per second to one destination, shared by the files a worker process
/// imports.
#[derive(Debug)]
pub struct Throttle {
    permits: Semaphore,
    interval: Duration,
    next: Mutex<Instant>,
}

impl Throttle {
    /// At most `concurrency` requests in flight, started at most `rate` per second.
    pub fn new(rate: u32, concurrency: u32) -> Self {
        Self {
            permits: Semaphore::new(concurrency.max(1) as usize),
            interval: Duration::from_secs(1) / rate.max(1),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Waits for a slot; the permit is held while the request runs.
    pub async fn acquire(&self) -> Option<SemaphorePermit<'_>> {
        let permit = self.permits.acquire().await.ok();
        let at = {
            let mut next = self.next.lock().await;
            let at = (*next).max(Instant::now());
            *next = at + self.interval;
            at
        };
        tokio::time::sleep_until(at).await;
        permit
    }
}

/// How a batch ended.
#[derive(Debug)]
pub enum Delivered {
    /// The receiver accepted it (2xx).
    Accepted,
    /// The receiver refused it (a 4xx other than 408, 410, 429).
    Refused(Answered),
}

/// Sends one batch: see the module docs.
pub async fn deliver(
    client: &Client,
    throttle: &Throttle,
    secret: &SigningSecret,
    policy: &RetryPolicy,
    idempotency_key: &str,
    body: Bytes,
) -> Result<Delivered, SinkError> {
    let started = Instant::now();
    let url = client.target().display();
    let context = || format!("deliver batch {idempotency_key} to webhook {url}");
    let mut attempt = 0;
    loop {
        attempt += 1;
        let result = {
            let _permit = throttle.acquire().await;
            // Signed afresh for each attempt: a receiver's replay tolerance counts from the send.
            let headers = [
                (
                    HeaderName::from_static(IDEMPOTENCY_HEADER),
                    idempotency_key.to_owned(),
                ),
                (
                    HeaderName::from_static(SIGNATURE_HEADER),
                    secret.sign(unix_now(), &body),
                ),
            ];
            client.post(&headers, body.clone()).await
        };
        let retry_after = match result {
            Ok(Answer { status, .. }) if (200..300).contains(&status) => {
                debug!(key = idempotency_key, status, attempt, "batch delivered");
                return Ok(Delivered::Accepted);
            }
            Ok(Answer {
                status: 410,
                excerpt,
                ..
            }) => {
                return Err(SinkError::connector_broken(
                    context(),
                    Answered {
                        status: 410,
                        excerpt,
                        retry: None,
                    },
                ))
            }
            Ok(Answer {
                status, excerpt, ..
            }) if (300..400).contains(&status) => {
                return Err(SinkError::permanent(
                    format!(
                        "{} (redirects are not followed: set the final URL)",
                        context()
                    ),
                    Answered {
                        status,
                        excerpt,
                        retry: None,
                    },
                ))
            }
            Ok(answer) if answer.status == 408 || answer.status == 429 || answer.status >= 500 => {
                if !may_retry(policy, attempt, started, answer.retry_after) {
                    return Err(SinkError::transient(
                        context(),
                        Answered {
                            status: answer.status,
                            excerpt: answer.excerpt,
                            retry: Some(attempt),
                        },
                    ));
                }
                warn!(
                    key = idempotency_key,
                    status = answer.status,
                    attempt,
                    "webhook answered a retryable status"
                );
                answer.retry_after
            }
            Ok(Answer {
                status, excerpt, ..
            }) => {
                return Ok(Delivered::Refused(Answered {
                    status,
                    excerpt,
                    retry: None,
                }))
            }
            Err(e) if e.is_retryable() => {
                if !may_retry(policy, attempt, started, None) {
                    return Err(SinkError::transient(
                        format!("{} after {attempt} attempts", context()),
                        e,
                    ));
                }
                warn!(key = idempotency_key, error = %e, attempt, "webhook request failed; retrying");
                None
            }
            Err(e) => return Err(SinkError::permanent(context(), e)),
        };
        tokio::time::sleep(policy.delay(attempt, retry_after)).await;
    }
}

/// Whether another attempt fits the policy: attempts left, and its wait within the total time (shared with
/// the Stripe destination).
pub fn may_retry(
    policy: &RetryPolicy,
    attempt: u32,
    started: Instant,
    retry_after: Option<Duration>,
) -> bool {
    let wait = retry_after.unwrap_or(
        policy
            .max_delay
            .min(policy.base.saturating_mul(1u32 << attempt.min(16))),
    );
    attempt < policy.attempts && started.elapsed() + wait < policy.total
}

/// Seconds since the epoch, for the signature's timestamp.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_under_an_exponential_bound() {
        let policy = RetryPolicy::default();
        for attempt in 1..10 {
            let bound =
                (Duration::from_millis(250) * (1 << (attempt - 1))).min(Duration::from_secs(8));
            let delays: Vec<_> = (0..50).map(|_| policy.delay(attempt, None)).collect();
            assert!(delays.iter().all(|d| *d <= bound), "attempt {attempt}");
            assert!(delays.iter().any(|d| *d != delays[0]), "jittered");
        }
        assert_eq!(
            policy.delay(3, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn retries_stop_at_the_attempt_and_time_bounds() {
        let policy = RetryPolicy::default();
        let now = Instant::now();
        assert!(may_retry(&policy, 1, now, None));
        assert!(!may_retry(&policy, 6, now, None));
        assert!(!may_retry(&policy, 1, now, Some(Duration::from_secs(31))));
        assert!(may_retry(&policy, 1, now, Some(Duration::from_secs(29))));
    }

    #[tokio::test(start_paused = true)]
    async fn the_throttle_spaces_requests_by_the_rate() {
        let throttle = Throttle::new(4, 2);
        let start = Instant::now();
        for _ in 0..5 {
            drop(throttle.acquire().await);
        }
        // Five requests at 4/s: the fifth starts a second after the first.
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        let first = throttle.acquire().await;
        let second = throttle.acquire().await;
        assert!(first.is_some() && second.is_some());
        assert_eq!(throttle.permits.available_permits(), 0);
    }
}
