//! One HTTP/1.1 request, on hyper's connection API: the host resolved and checked by the SSRF guard, a TCP
//! connection to that very address (TLS on it, verifying the certificate for the host name against the
//! Mozilla roots), no redirect followed, the whole exchange bounded by a timeout, and at most the client's
//! read limit of the answer read ([`EXCERPT_READ`] for a webhook). Shared with the Stripe destination
//! (`crates/stripe`), which sends GETs and form POSTs and reads whole JSON answers.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, HOST, RETRY_AFTER, USER_AGENT};
use http::{HeaderMap, Method};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::error::WebhookError;
use crate::target::Target;

/// Bytes of an answer's body read at most (the rest is dropped with the connection).
pub const EXCERPT_READ: usize = 4096;
/// Characters of an answer's body kept in messages and error reports.
pub const EXCERPT_CHARS: usize = 300;

/// What the receiver answered.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status.
    pub status: u16,
    /// `Retry-After`, as a duration from now.
    pub retry_after: Option<Duration>,
    /// The start of the body: printable, at most [`EXCERPT_CHARS`] characters.
    pub excerpt: String,
    /// The body as read (at most the client's read limit).
    pub body: Bytes,
    /// The answer's headers.
    pub headers: HeaderMap,
}

/// Sends POSTs to one webhook.
#[derive(Clone)]
pub struct Client {
    target: Target,
    tls: Option<tokio_rustls::TlsConnector>,
    timeout: Duration,
    read_limit: usize,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("target", &self.target.display())
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client of `target`, each request bounded by `timeout` (connecting included).
    pub fn new(target: Target, timeout: Duration) -> Self {
        let tls = target.tls.then(|| {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| b.with_root_certificates(roots).with_no_client_auth());
            config
                .ok()
                .map(|c| tokio_rustls::TlsConnector::from(Arc::new(c)))
        });
        Self {
            target,
            tls: tls.flatten(),
            timeout,
            read_limit: EXCERPT_READ,
        }
    }

    /// The same client reading at most `bytes` of each answer's body (an API whose answers are read whole).
    pub fn with_read_limit(mut self, bytes: usize) -> Self {
        self.read_limit = bytes.max(EXCERPT_READ);
        self
    }

    /// The target.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// POSTs `body` (JSON) with `headers` to the target's path; the answer, whatever its status.
    pub async fn post(
        &self,
        headers: &[(HeaderName, String)],
        body: Bytes,
    ) -> Result<Answer, WebhookError> {
        let request = Request {
            method: Method::POST,
            path_and_query: &self.target.path_and_query,
            content_type: Some("application/json"),
            headers,
        };
        self.send(request, body).await
    }

    /// Sends `request` with `body`; the answer, whatever its status.
    pub async fn send(&self, request: Request<'_>, body: Bytes) -> Result<Answer, WebhookError> {
        let seconds = self.timeout.as_secs();
        match tokio::time::timeout(self.timeout, self.exchange(request, body)).await {
            Ok(answer) => answer,
            Err(_) => Err(WebhookError::Timeout {
                url: self.target.display(),
                seconds,
            }),
        }
    }

    async fn exchange(&self, request: Request<'_>, body: Bytes) -> Result<Answer, WebhookError> {
        let mut built = http::Request::builder()
            .method(request.method)
            .uri(request.path_and_query)
            .header(HOST, self.target.authority.as_str())
            .header(
                USER_AGENT,
                concat!("s3-importer/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(content_type) = request.content_type {
            built = built.header(CONTENT_TYPE, content_type);
        }
        for (name, value) in request.headers {
            let value = HeaderValue::from_str(value)
                .map_err(|e| WebhookError::Request(format!("header {name}: {e}")))?;
            built = built.header(name, value);
        }
        let limit = self.read_limit;
        let request = built
            .body(Full::new(body))
            .map_err(|e| WebhookError::Request(e.to_string()))?;
        // Resolved and checked now, and connected to that address: no second lookup.
        let addr = self.target.resolve().await?;
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| self.io("connect", e))?;
        // Latency matters more than packet count for one request and its answer.
        let _ = stream.set_nodelay(true);
        if !self.target.tls {
            return exchange(TokioIo::new(stream), request, limit)
                .await
                .map_err(|e| self.io("exchange", e));
        }
        let Some(connector) = &self.tls else {
            return Err(WebhookError::Request("TLS could not be configured".into()));
        };
        let name = ServerName::try_from(self.target.host.clone())
            .map_err(|e| WebhookError::Request(format!("TLS server name: {e}")))?;
        let tls = connector
            .connect(name, stream)
            .await
            .map_err(|e| self.io("TLS handshake", e))?;
        exchange(TokioIo::new(tls), request, limit)
            .await
            .map_err(|e| self.io("exchange", e))
    }

    fn io(
        &self,
        what: &'static str,
        e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> WebhookError {
        WebhookError::Io {
            url: self.target.display(),
            what,
            source: e.into(),
        }
    }
}

/// One request's line and headers (the host and user agent are the client's).
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The method.
    pub method: Method,
    /// Path and query, sent in the request line.
    pub path_and_query: &'a str,
    /// The body's type, if it has one.
    pub content_type: Option<&'a str>,
    /// More headers.
    pub headers: &'a [(HeaderName, String)],
}

/// Aborts the connection's task when the exchange ends (or is dropped by the timeout).
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn exchange<T>(
    io: T,
    request: http::Request<Full<Bytes>>,
    limit: usize,
) -> Result<Answer, hyper::Error>
where
    T: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, connection) = http1::handshake(io).await?;
    let _connection = AbortOnDrop(tokio::spawn(async move {
        // Its failure shows as the request's.
        let _ = connection.await;
    }));
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    let headers = response.headers().clone();
    let mut body = response.into_body();
    let mut read = Vec::new();
    while read.len() < limit {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    read.extend_from_slice(data);
                }
            }
            // An answer cut short still has its status; the excerpt is what arrived.
            Some(Err(_)) | None => break,
        }
    }
    Ok(Answer {
        status,
        retry_after,
        excerpt: excerpt(&read),
        body: Bytes::from(read),
        headers,
    })
}

/// `Retry-After` in seconds or as an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
}

/// At most [`EXCERPT_CHARS`] printable characters of `body`.
pub fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text
        .chars()
        .take(EXCERPT_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > EXCERPT_CHARS {
        out.push('…');
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        let later = std::time::SystemTime::now() + Duration::from_secs(120);
        let got = parse_retry_after(&httpdate::fmt_http_date(later)).unwrap_or_default();
        assert!(
            got > Duration::from_secs(100) && got <= Duration::from_secs(120),
            "{got:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn excerpts_are_bounded_and_printable() {
        assert_eq!(excerpt(b"bad\r\nrow\t1"), "bad  row 1");
        let long = vec![b'x'; 10_000];
        let e = excerpt(&long);
        assert_eq!(e.chars().count(), EXCERPT_CHARS + 1);
        assert!(e.ends_with('…'));
        assert_eq!(excerpt(&[0xff, b'a']), "\u{fffd}a");
    }
}
