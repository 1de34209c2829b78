//! What can go wrong calling Stripe, and Stripe's own error object.

use s3_importer_webhook::Answer;

/// Stripe's error object (`{"error":{"type","code","message","param"}}`) with the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The HTTP status.
    pub status: u16,
    /// `error.type` (`invalid_request_error`, `api_error`…).
    pub kind: Option<String>,
    /// `error.code` (`resource_missing`, `parameter_invalid_integer`…).
    pub code: Option<String>,
    /// `error.message`, or an excerpt of the body when it is not Stripe's error object.
    pub message: String,
    /// `error.param`: the request field at fault.
    pub param: Option<String>,
}

impl Refusal {
    /// The error of `answer`.
    pub fn from_answer(answer: &Answer) -> Self {
        let error = serde_json::from_slice::<serde_json::Value>(&answer.body)
            .ok()
            .and_then(|v| v.get("error").cloned());
        let field = |name: &str| {
            error
                .as_ref()
                .and_then(|e| e.get(name))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        };
        Self {
            status: answer.status,
            kind: field("type"),
            code: field("code"),
            message: field("message").unwrap_or_else(|| answer.excerpt.clone()),
            param: field("param"),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Stripe answered {}", self.status)?;
        if let Some(kind) = &self.kind {
            write!(f, " {kind}")?;
        }
        if let Some(code) = &self.code {
            write!(f, " ({code})")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(param) = &self.param {
            write!(f, " [param {param}]")?;
        }
        Ok(())
    }
}

/// A Stripe failure, as the source of a [`s3_importer_core::sink::SinkError`].
#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    /// 401 or 403.
    #[error("API key revoked or lacks permission for this request: {0} (check the key's permissions, listed in the README's \"Stripe\")")]
    KeyRejected(Refusal),
    /// A status that failed the request.
    #[error("{0}")]
    Answered(Refusal),
    /// A 2xx whose body is not the JSON expected.
    #[error("Stripe's answer is not the JSON expected: {0}")]
    BadAnswer(String),
    /// The configuration is not usable.
    #[error("Stripe destination: {0}")]
    Config(String),
    /// The customer mapping in the state table failed.
    #[error("customer mapping: {0}")]
    Mapping(String),
}
