//! Records every AWS API request a piece of code sends, by giving it an SDK configuration whose HTTP client
//! writes down each request before passing it on. The template-to-code agreement test runs the real lister
//! and worker handlers this way and checks that each IAM action their calls need is granted to their role.
//!
//! The service comes from the request's SigV4 credential scope; the operation from `X-Amz-Target` (DynamoDB,
//! SQS), the `Action` form field (STS), or the REST shape of the request (S3). An S3 request of a shape not
//! known here is recorded as `Unknown`, so a test fails rather than guess.

use std::sync::{Arc, Mutex, PoisonError};

use aws_config::SdkConfig;
use aws_smithy_runtime_api::client::http::{
    http_client_fn, HttpClient, HttpConnector, HttpConnectorFuture, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use serde_json::Value;

/// One request, as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// Signing name of the service: `s3`, `dynamodb`, `sqs`, `sts`.
    pub service: String,
    /// API operation, e.g. `PutItem`, `SendMessageBatch`, `ListObjectsV2`, `AssumeRole`; `Unknown` for an S3
    /// request of a shape this module does not know.
    pub operation: String,
    /// HTTP method.
    pub method: String,
    /// Full URI.
    pub uri: String,
    /// The body when it is JSON (DynamoDB, SQS).
    pub json: Option<Value>,
    /// Form fields of a query-protocol body (STS).
    pub form: Vec<(String, String)>,
}

impl Call {
    /// The call `request` makes.
    pub fn from_request(request: &HttpRequest) -> Self {
        let header = |name: &str| request.headers().get(name).unwrap_or("").to_owned();
        let service = credential_scope_service(&header("authorization")).unwrap_or_default();
        let body = request.body().bytes().unwrap_or_default();
        let json = serde_json::from_slice::<Value>(body).ok();
        let form = if json.is_none() {
            form_fields(body)
        } else {
            Vec::new()
        };
        let method = request.method().to_owned();
        let uri = request.uri().to_owned();
        let target = header("x-amz-target");
        let operation = if let Some((_, op)) = target.split_once('.') {
            op.to_owned()
        } else if let Some((_, action)) = form.iter().find(|(k, _)| k == "Action") {
            action.clone()
        } else if service == "s3" {
            s3_operation(&method, &uri, &header("x-amz-copy-source")).to_owned()
        } else {
            "Unknown".to_owned()
        };
        Self {
            service,
            operation,
            method,
            uri,
            json,
            form,
        }
    }

    /// `service:Operation`, e.g. `dynamodb:PutItem`.
    pub fn name(&self) -> String {
        format!("{}:{}", self.service, self.operation)
    }

    /// The path of the URI split into the bucket and the key (S3, path-style addressing).
    pub fn s3_bucket_and_key(&self) -> (String, Option<String>) {
        let (path, _) = split_query(&self.uri);
        let path = path
            .split_once("://")
            .and_then(|(_, rest)| rest.split_once('/'))
            .map(|(_, p)| p)
            .unwrap_or("");
        match path.split_once('/') {
            Some((bucket, key)) if !key.is_empty() => (bucket.to_owned(), Some(key.to_owned())),
            Some((bucket, _)) => (bucket.to_owned(), None),
            None => (path.to_owned(), None),
        }
    }

    /// A form field of the body (STS).
    pub fn form_field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `Credential=AKID/20250101/us-east-1/dynamodb/aws4_request` → `dynamodb`.
fn credential_scope_service(authorization: &str) -> Option<String> {
    let credential = authorization.split("Credential=").nth(1)?;
    let scope = credential.split([',', ' ']).next()?;
    scope.split('/').nth(3).map(str::to_owned)
}

fn split_query(uri: &str) -> (&str, &str) {
    uri.split_once('?').unwrap_or((uri, ""))
}

fn form_fields(body: &[u8]) -> Vec<(String, String)> {
    let Ok(text) = std::str::from_utf8(body) else {
        return Vec::new();
    };
    text.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(b) => {
                    out.push(b);
                    i += 3;
                }
                Err(_) => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The S3 operation of a path-style REST request (the shapes the adapters send).
fn s3_operation(method: &str, uri: &str, copy_source: &str) -> &'static str {
    let (_, query) = split_query(uri);
    let params: Vec<&str> = query
        .split('&')
        .map(|p| p.split_once('=').map(|(k, _)| k).unwrap_or(p))
        .collect();
    let has = |name: &str| params.contains(&name);
    let call = Call {
        service: "s3".into(),
        operation: String::new(),
        method: method.into(),
        uri: uri.into(),
        json: None,
        form: Vec::new(),
    };
    let (_, key) = call.s3_bucket_and_key();
    match (method, key.is_some()) {
        ("GET", false) if has("list-type") => "ListObjectsV2",
        ("GET", false) if has("versions") => "ListObjectVersions",
        ("GET", false) if has("location") => "GetBucketLocation",
        ("GET", false) if has("notification") => "GetBucketNotificationConfiguration",
        ("HEAD", false) => "HeadBucket",
        ("GET", true) if has("uploadId") => "ListParts",
        ("GET", true) => "GetObject",
        ("HEAD", true) => "HeadObject",
        ("PUT", true) if has("partNumber") && has("uploadId") => "UploadPart",
        ("PUT", true) if !copy_source.is_empty() => "CopyObject",
        ("PUT", true) => "PutObject",
        ("POST", true) if has("uploads") => "CreateMultipartUpload",
        ("POST", true) if has("uploadId") => "CompleteMultipartUpload",
        ("DELETE", true) if has("uploadId") => "AbortMultipartUpload",
        ("DELETE", true) => "DeleteObject",
        _ => "Unknown",
    }
}

#[derive(Debug)]
struct RecordingConnector {
    inner: SharedHttpConnector,
    calls: Arc<Mutex<Vec<Call>>>,
    bodies: bool,
}

impl HttpConnector for RecordingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let mut call = Call::from_request(&request);
        if !self.bodies {
            call.json = None;
            call.form.clear();
        }
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(call);
        self.inner.call(request)
    }
}

/// Collects the requests sent through the SDK configurations it makes.
#[derive(Debug, Clone)]
pub struct Recorder {
    calls: Arc<Mutex<Vec<Call>>>,
    /// Whether calls keep their bodies (`json`, `form`).
    bodies: bool,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            calls: Arc::default(),
            bodies: true,
        }
    }
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty recorder that drops each request's body once its operation is known (`json` and `form` stay
    /// empty): for thousands of requests whose count is all that matters, as in the destinations bench,
    /// where keeping every PutItem body parsed was most of the importer's peak memory (about 34 KiB a row).
    pub fn operations_only() -> Self {
        Self {
            bodies: false,
            ..Self::default()
        }
    }

    /// `base` with an HTTP client that records every request (plain HTTP: the emulator's endpoint).
    pub fn sdk_config(&self, base: &SdkConfig) -> SdkConfig {
        let inner = aws_smithy_http_client::Builder::new().build_http();
        let calls = self.calls.clone();
        let bodies = self.bodies;
        let client = http_client_fn(move |settings, components| {
            SharedHttpConnector::new(RecordingConnector {
                inner: inner.http_connector(settings, components),
                calls: calls.clone(),
                bodies,
            })
        });
        base.to_builder().http_client(client).build()
    }

    /// Every request so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_shapes() {
        let bucket = "http://127.0.0.1:5000/bucket";
        let object: &str = &format!("{bucket}/a/b.csv");
        let cases = [
            ("GET", object, "", "GetObject"),
            ("HEAD", object, "", "HeadObject"),
            ("PUT", object, "", "PutObject"),
            ("PUT", object, "?partNumber=1&uploadId=x", "UploadPart"),
            ("POST", object, "?uploads", "CreateMultipartUpload"),
            ("POST", object, "?uploadId=x", "CompleteMultipartUpload"),
            ("DELETE", object, "?uploadId=x", "AbortMultipartUpload"),
            ("GET", bucket, "?list-type=2&prefix=in%2F", "ListObjectsV2"),
            ("POST", bucket, "?delete", "Unknown"),
        ];
        for (method, path, query, operation) in cases {
            let url = format!("{path}{query}");
            assert_eq!(s3_operation(method, &url, ""), operation, "{method} {url}");
        }
    }

    #[test]
    fn credential_scope() {
        let auth = "AWS4-HMAC-SHA256 Credential=test/20250101/us-east-1/sqs/aws4_request, SignedHeaders=host";
        assert_eq!(credential_scope_service(auth).as_deref(), Some("sqs"));
        assert_eq!(credential_scope_service(""), None);
    }

    #[test]
    fn form_decoding() {
        assert_eq!(
            form_fields(b"Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2Fx"),
            vec![
                ("Action".to_owned(), "AssumeRole".to_owned()),
                ("RoleArn".to_owned(), "arn:aws:iam::1:role/x".to_owned())
            ]
        );
    }
}
