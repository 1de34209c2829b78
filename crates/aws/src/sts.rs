//! Cross-account access: `sts:AssumeRole` with the connector's External ID, cached per (role, External ID).
//!
//! Credentials are reused until five minutes before they expire, so a listing of a million objects or a
//! long import calls STS once an hour, not once a request. The cache is also a [`ProvideCredentials`], so
//! S3 clients built for a role ask it for credentials on every request (cheap: a lock and a clone) and
//! pick up refreshed ones without being rebuilt.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{self, error::CredentialsError, ProvideCredentials};
use aws_credential_types::Credentials;
use s3_importer_core::sync::ports::SourceError;

use crate::error::AwsCallError;

/// Credentials closer than this to their expiry are refreshed before use.
pub const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(5 * 60);

/// Longest role session name STS accepts.
const MAX_SESSION_NAME: usize = 64;

/// The cache key: one set of credentials per role and External ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoleKey {
    /// Role ARN.
    pub role_arn: String,
    /// External ID required by the role's trust policy.
    pub external_id: Option<String>,
}

type Slot = Arc<tokio::sync::Mutex<Option<Credentials>>>;

/// Assumes roles and caches the credentials per [`RoleKey`].
#[derive(Debug)]
pub struct RoleCredentialsCache {
    sts: aws_sdk_sts::Client,
    // One async slot per role: callers of the same role wait for one AssumeRole; other roles do not wait.
    slots: Mutex<HashMap<RoleKey, Slot>>,
}

impl RoleCredentialsCache {
    /// A cache calling STS with `sts` (the Lambda's own credentials).
    pub fn new(sts: aws_sdk_sts::Client) -> Self {
        Self {
            sts,
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// Credentials for `key`, from the cache or from a fresh `AssumeRole` named `session_name`.
    pub async fn credentials(
        &self,
        key: &RoleKey,
        session_name: &str,
    ) -> Result<Credentials, SourceError> {
        let slot = {
            // A poisoned lock only means another task panicked while inserting: the map is still usable.
            let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.entry(key.clone()).or_default().clone()
        };
        let mut cached = slot.lock().await;
        if let Some(credentials) = cached.as_ref().filter(|c| is_fresh(c, SystemTime::now())) {
            return Ok(credentials.clone());
        }
        let credentials = self.assume_role(key, session_name).await?;
        *cached = Some(credentials.clone());
        Ok(credentials)
    }

    async fn assume_role(
        &self,
        key: &RoleKey,
        session_name: &str,
    ) -> Result<Credentials, SourceError> {
        tracing::debug!(role_arn = %key.role_arn, session_name, "assuming role");
        let out = self
            .sts
            .assume_role()
            .role_arn(&key.role_arn)
            .set_external_id(key.external_id.clone())
            .role_session_name(session_name)
            .send()
            .await
            .map_err(|e| assume_role_error(&key.role_arn, AwsCallError::from_sdk(e)))?;
        let Some(c) = out.credentials() else {
            return Err(SourceError::AssumeRole {
                role_arn: key.role_arn.clone(),
                message: "STS returned no credentials".to_owned(),
            });
        };
        let expiry = SystemTime::try_from(*c.expiration()).ok();
        Ok(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            expiry,
            "s3-importer-assume-role",
        ))
    }

    /// A credentials provider for one role, backed by this cache.
    pub fn provider(self: &Arc<Self>, key: RoleKey, session_name: String) -> AssumedRoleProvider {
        AssumedRoleProvider {
            cache: Arc::clone(self),
            key,
            session_name,
        }
    }
}

/// True when `credentials` can be used for at least [`REFRESH_BEFORE_EXPIRY`] more.
pub fn is_fresh(credentials: &Credentials, now: SystemTime) -> bool {
    match credentials.expiry() {
        None => true,
        Some(expiry) => expiry
            .duration_since(now)
            .is_ok_and(|left| left > REFRESH_BEFORE_EXPIRY),
    }
}

/// The role session name, `s3-importer-<bucket>`, cut to STS's 64 characters. It shows in the source
/// account's CloudTrail, so its owner can tell which bucket the calls were for.
///
/// The [`ObjectSource`](s3_importer_core::sync::ports::ObjectSource) port passes the [`Source`] and not the
/// connector, so the bucket (unique per connector in practice) stands in for the connector id.
///
/// [`Source`]: s3_importer_core::sync::Source
pub fn session_name(bucket: &str) -> String {
    let mut name: String = format!("s3-importer-{bucket}")
        .chars()
        // STS allows [\w+=,.@-]; bucket names are [a-z0-9.-], but be strict anyway.
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@-_".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(MAX_SESSION_NAME);
    name
}

/// Maps an AssumeRole failure to a message that says what to fix.
fn assume_role_error(role_arn: &str, err: AwsCallError) -> SourceError {
    if err.is_retryable() {
        return SourceError::Transient {
            context: format!("assume role {role_arn}"),
            source: Box::new(err),
        };
    }
    let message = match err.code() {
        "AccessDenied" => format!(
            "{}; check that the role's trust policy allows this account's importer role as Principal and \
             requires exactly this connector's External ID (Condition StringEquals sts:ExternalId)",
            err.message_or_summary()
        ),
        "RegionDisabledException" => format!(
            "{}; activate STS in this region (IAM → Account settings) or use another region",
            err.message_or_summary()
        ),
        "ExpiredToken" | "InvalidClientTokenId" => format!(
            "{}; the importer's own credentials are invalid or expired",
            err.message_or_summary()
        ),
        _ => err.to_string(),
    };
    SourceError::AssumeRole {
        role_arn: role_arn.to_owned(),
        message,
    }
}

/// A [`ProvideCredentials`] for one role, served from a shared [`RoleCredentialsCache`].
#[derive(Debug, Clone)]
pub struct AssumedRoleProvider {
    cache: Arc<RoleCredentialsCache>,
    key: RoleKey,
    session_name: String,
}

impl ProvideCredentials for AssumedRoleProvider {
    fn provide_credentials<'a>(&'a self) -> provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        provider::future::ProvideCredentials::new(async move {
            self.cache
                .credentials(&self.key, &self.session_name)
                .await
                .map_err(CredentialsError::provider_error)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sts::operation::assume_role::AssumeRoleOutput;
    use aws_sdk_sts::types::Credentials as StsCredentials;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    use crate::test_support::assume_role_denied;

    const ROLE: &str = "arn:aws:iam::111122223333:role/s3-importer-source";

    fn sts_output(expires_in: Duration) -> AssumeRoleOutput {
        let expiration = aws_smithy_types::DateTime::from(SystemTime::now() + expires_in);
        AssumeRoleOutput::builder()
            .credentials(
                StsCredentials::builder()
                    .access_key_id("ASIAEXAMPLE")
                    .secret_access_key("secret")
                    .session_token("token")
                    .expiration(expiration)
                    .build()
                    .expect("all required fields set"),
            )
            .build()
    }

    fn key() -> RoleKey {
        RoleKey {
            role_arn: ROLE.to_owned(),
            external_id: Some("ext-123".to_owned()),
        }
    }

    #[tokio::test]
    async fn assume_role_sends_external_id_and_role_and_is_cached(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let rule = mock!(aws_sdk_sts::Client::assume_role)
            .match_requests(|r| {
                r.role_arn() == Some(ROLE)
                    && r.external_id() == Some("ext-123")
                    && r.role_session_name() == Some("s3-importer-source-bucket")
            })
            .then_output(|| sts_output(Duration::from_secs(3600)));
        let sts = mock_client!(aws_sdk_sts, RuleMode::MatchAny, [&rule]);
        let cache = RoleCredentialsCache::new(sts);
        let session = session_name("source-bucket");
        let first = cache.credentials(&key(), &session).await?;
        let second = cache.credentials(&key(), &session).await?;
        assert_eq!(first.access_key_id(), "ASIAEXAMPLE");
        assert_eq!(second.session_token(), Some("token"));
        assert_eq!(
            rule.num_calls(),
            1,
            "credentials must be cached, not fetched per request"
        );
        Ok(())
    }

    #[tokio::test]
    async fn credentials_close_to_expiry_are_refreshed() -> Result<(), Box<dyn std::error::Error>> {
        let rule = mock!(aws_sdk_sts::Client::assume_role)
            .then_output(|| sts_output(Duration::from_secs(120)));
        let sts = mock_client!(aws_sdk_sts, RuleMode::MatchAny, [&rule]);
        let cache = RoleCredentialsCache::new(sts);
        cache.credentials(&key(), "s").await?;
        cache.credentials(&key(), "s").await?;
        assert_eq!(
            rule.num_calls(),
            2,
            "credentials expiring within 5 minutes must be refreshed"
        );
        Ok(())
    }

    #[tokio::test]
    async fn access_denied_says_to_check_the_trust_policy_and_external_id() {
        let rule = mock!(aws_sdk_sts::Client::assume_role)
            .then_error(|| assume_role_denied("User is not authorized to perform: sts:AssumeRole"));
        let sts = mock_client!(aws_sdk_sts, RuleMode::MatchAny, [&rule]);
        let cache = RoleCredentialsCache::new(sts);
        match cache.credentials(&key(), "s").await {
            Err(SourceError::AssumeRole { role_arn, message }) => {
                assert_eq!(role_arn, ROLE);
                assert!(message.contains("trust policy"), "{message}");
                assert!(message.contains("External ID"), "{message}");
            }
            other => panic!("expected AssumeRole, got {other:?}"),
        }
    }

    #[test]
    fn session_names_fit_sts_limits() {
        assert_eq!(session_name("my.bucket-1"), "s3-importer-my.bucket-1");
        let long = session_name(&"b".repeat(63));
        assert_eq!(long.len(), 64);
    }

    #[test]
    fn freshness_keeps_a_five_minute_margin() {
        let now = SystemTime::now();
        let c = |secs| Credentials::new("a", "b", None, Some(now + Duration::from_secs(secs)), "t");
        assert!(is_fresh(&c(301), now));
        assert!(!is_fresh(&c(299), now));
        assert!(is_fresh(&Credentials::new("a", "b", None, None, "t"), now));
    }
}
