//! AWS Secrets Manager: the one call the importer makes (`GetSecretValue`), for connection settings that are
//! never stored in the state table and never logged. The value is wrapped in [`SecretValue`], whose `Debug`
//! shows nothing of it.

use std::fmt;

use crate::error::AwsCallError;

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The call failed (no such secret, access denied, throttled, unreachable).
    #[error("read secret {secret_id}: {source}")]
    Call {
        /// The secret's name or ARN.
        secret_id: String,
        /// The classified SDK error.
        #[source]
        source: AwsCallError,
    },
    /// The secret holds binary data, not a string.
    #[error("read secret {secret_id}: it holds binary data; store the settings as a JSON string")]
    NotAString {
        /// The secret's name or ARN.
        secret_id: String,
    },
}

impl SecretError {
    /// Whether a later attempt may succeed (throttling, a server error, a network failure).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Call { source, .. } => source.is_retryable(),
            Self::NotAString { .. } => false,
        }
    }
}

/// A secret's string value: `Debug` prints `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// The value itself, for the one place that uses it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Reads secrets from Secrets Manager.
#[derive(Debug, Clone)]
pub struct Secrets {
    client: aws_sdk_secretsmanager::Client,
}

impl Secrets {
    /// Secrets read with `client`.
    pub fn new(client: aws_sdk_secretsmanager::Client) -> Self {
        Self { client }
    }

    /// The current string value of the secret `secret_id` (name or ARN).
    pub async fn get(&self, secret_id: &str) -> Result<SecretValue, SecretError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| SecretError::Call {
                secret_id: secret_id.to_owned(),
                source: AwsCallError::from_sdk(e),
            })?;
        match out.secret_string {
            Some(value) => Ok(SecretValue(value)),
            None => Err(SecretError::NotAString {
                secret_id: secret_id.to_owned(),
            }),
        }
    }
}
