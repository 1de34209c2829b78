//! What can go wrong sending to a webhook.

use std::net::IpAddr;

use crate::ssrf::Forbidden;

/// A webhook failure, before the retry policy classifies it.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The URL is not acceptable.
    #[error("webhook URL refused: {reason}")]
    BadUrl {
        /// Why.
        reason: String,
    },
    /// The host is (or resolves to) an address the SSRF guard refuses.
    #[error("webhook host {host} is {ip}, a {reason} address: refused (pass --webhook-allow-private only for local development)")]
    Forbidden {
        /// The host.
        host: String,
        /// The address found.
        ip: IpAddr,
        /// Its class.
        reason: Forbidden,
    },
    /// The host could not be resolved.
    #[error("resolve webhook host {host}: {source}")]
    Resolve {
        /// The host.
        host: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// Connecting, TLS, writing or reading failed (a reset connection, a refused port).
    #[error("webhook {url}: {what}: {source}")]
    Io {
        /// The URL (without query).
        url: String,
        /// The step.
        what: &'static str,
        /// The error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The request took longer than the timeout.
    #[error("webhook {url}: no answer within {seconds}s")]
    Timeout {
        /// The URL (without query).
        url: String,
        /// The timeout.
        seconds: u64,
    },
    /// The request could not be built (a bad header value).
    #[error("build webhook request: {0}")]
    Request(String),
}

impl WebhookError {
    /// Whether sending again may succeed (a timeout, a reset connection, a failed resolution).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Io { .. } | Self::Timeout { .. } | Self::Resolve { .. }
        )
    }
}

/// A receiver's answer that is not a success, as the error of a delivery that gave up.
#[derive(Debug, thiserror::Error)]
#[error("webhook answered {status}{}: {excerpt}", retry.map(|n| format!(" after {n} attempts")).unwrap_or_default())]
pub struct Answered {
    /// The HTTP status.
    pub status: u16,
    /// The start of the answer's body (bounded, control characters replaced).
    pub excerpt: String,
    /// Attempts made, for a status that was retried.
    pub retry: Option<u32>,
}
