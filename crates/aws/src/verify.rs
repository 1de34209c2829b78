//! The connection doctor: checks, step by step, that the deployment can read a connector's source, and names
//! the precise cause of a failure with what to change.
//!
//! | check | how | a failure means |
//! |---|---|---|
//! | `assume_role` | `sts:AssumeRole` with the External ID | the role's trust policy (principal, External ID) or the role ARN |
//! | `external_id_required` | `sts:AssumeRole` *without* the External ID must be refused | the trust policy lacks the `sts:ExternalId` condition |
//! | `bucket` | `HeadBucket` with `ExpectedBucketOwner`, in the connector's region | missing bucket, another owner, wrong region, no `s3:ListBucket` |
//! | `list` | `ListObjectsV2` on the folder (as the lister does) | no `s3:ListBucket` for the folder, another owner |
//! | `archived` | storage classes in the listing | archived objects are skipped until restored |
//! | `read` | `GetObject` of the first bytes of one importable file (as the worker does) | no `s3:GetObject`, KMS key access, an archived object |
//!
//! S3 refuses a request whose `ExpectedBucketOwner` is not the bucket's owner with 403 AccessDenied, as it
//! refuses a missing permission. When `bucket` or `list` is refused so, the doctor repeats the request without
//! the owner: allowed, the cause is `bucket_owner`.

use aws_credential_types::Credentials;
use aws_sdk_s3::config::{Region, SharedCredentialsProvider};
use chrono::{DateTime, Utc};
use s3_importer_core::sync::ports::{ByteRange, ObjectSource, SourceError};
use s3_importer_core::sync::rules::{self, Decision, SyncSettings};
use s3_importer_core::sync::Source;
use s3_importer_core::Format;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use crate::config::s3_config_builder;
use crate::error::{classify_s3, AwsCallError, S3Failure};
use crate::source::S3Source;
use crate::sts::session_name;

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// Works.
    Pass,
    /// Works, with something the user should know.
    Warn,
    /// Broken: imports will fail until it is fixed.
    Fail,
    /// Not run (an earlier check failed, or it does not apply).
    Skipped,
}

impl CheckStatus {
    /// The status's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Warn => "warn",
            Self::Fail => "FAIL",
            Self::Skipped => "skipped",
        }
    }
}

/// One check of the doctor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Which check (`assume_role`, `external_id_required`, `bucket`, `list`, `archived`, `read`).
    pub check: String,
    /// Outcome.
    pub status: CheckStatus,
    /// What was found.
    pub detail: String,
    /// The cause, in a word (`trust_policy`, `missing_permission`, `wrong_region`, `bucket_owner`,
    /// `no_such_bucket`, `kms_key`, `archived`, `external_id_not_required`, `network`, `other`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// What to change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    /// A passed check.
    pub fn pass(check: &'static str, detail: impl Into<String>) -> Self {
        Self {
            check: check.into(),
            status: CheckStatus::Pass,
            detail: detail.into(),
            cause: None,
            fix: None,
        }
    }

    /// A check not run, and why.
    pub fn skipped(check: &'static str, detail: impl Into<String>) -> Self {
        Self {
            check: check.into(),
            status: CheckStatus::Skipped,
            detail: detail.into(),
            cause: None,
            fix: None,
        }
    }

    /// A failed check: its cause in a word, what was found and what to change.
    pub fn fail(
        check: &'static str,
        cause: &'static str,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            check: check.into(),
            status: CheckStatus::Fail,
            detail: detail.into(),
            cause: Some(cause.into()),
            fix: Some(fix.into()),
        }
    }
}

/// Everything the doctor found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Every check, in order.
    pub checks: Vec<Check>,
    /// The file that was read, when one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_key: Option<String>,
}

impl Report {
    /// True when no check failed.
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.status != CheckStatus::Fail)
    }

    /// The first failed check.
    pub fn first_failure(&self) -> Option<&Check> {
        self.checks.iter().find(|c| c.status == CheckStatus::Fail)
    }
}

/// Runs the checks with the deployment's credentials (the same ones the lister and worker use, or the
/// caller's when run from a workstation).
#[derive(Debug)]
pub struct Doctor {
    sdk: aws_config::SdkConfig,
    sts: aws_sdk_sts::Client,
    source: S3Source,
}

impl Doctor {
    /// A doctor using `sdk` for STS and S3.
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        Self::with_sts(sdk, crate::config::sts_client(sdk))
    }

    /// A doctor with a given STS client (tests use a mocked one).
    pub fn with_sts(sdk: &aws_config::SdkConfig, sts: aws_sdk_sts::Client) -> Self {
        Self {
            sdk: sdk.clone(),
            source: S3Source::with_sts(sdk, sts.clone()),
            sts,
        }
    }

    /// Checks `source`. `template_format` is the template's format, when it sets one (it decides which
    /// files are importable).
    pub async fn verify(&self, source: &Source, template_format: Option<Format>) -> Report {
        let mut checks = Vec::new();
        let mut credentials = None;
        if let Some(role_arn) = &source.role_arn {
            match self
                .assume(role_arn, source.external_id.as_deref(), &source.bucket)
                .await
            {
                Ok(c) => {
                    credentials = Some(c);
                    checks.push(Check::pass(
                        "assume_role",
                        format!("assumed {role_arn} with the connector's External ID"),
                    ));
                }
                Err(err) => {
                    checks.push(assume_failure(role_arn, &err));
                    for check in ["external_id_required", "bucket", "list", "archived", "read"] {
                        checks.push(Check::skipped(check, "the role cannot be assumed"));
                    }
                    return Report {
                        checks,
                        sample_key: None,
                    };
                }
            }
            checks.push(match self.assume(role_arn, None, &source.bucket).await {
                Ok(_) => Check::fail(
                    "external_id_required",
                    "external_id_not_required",
                    format!("{role_arn} can be assumed without the External ID"),
                    "add the condition {\"StringEquals\": {\"sts:ExternalId\": \"<the connector's External ID>\"}} \
                     to the role's trust policy (`s3-importer connector policy NAME` prints it): without it, \
                     anyone who learns the role ARN could have the importer read this bucket",
                ),
                Err(err) if err.kind == crate::error::FailureKind::Service && !err.is_retryable() => {
                    Check::pass("external_id_required", "assuming the role without the External ID is refused")
                }
                Err(err) => Check {
                    check: "external_id_required".into(),
                    status: CheckStatus::Warn,
                    detail: format!("could not check: {err}"),
                    cause: Some("network".into()),
                    fix: Some("run verify again".into()),
                },
            });
        } else {
            checks.push(Check::skipped(
                "assume_role",
                "no role: the deployment's own credentials read the bucket",
            ));
            checks.push(Check::skipped("external_id_required", "no role"));
        }

        let client = self.s3_client(source, credentials);
        let bucket = self.head_bucket(&client, source).await;
        let bucket_failed = bucket.status == CheckStatus::Fail;
        checks.push(bucket);
        if bucket_failed {
            for check in ["list", "archived", "read"] {
                checks.push(Check::skipped(check, "the bucket cannot be reached"));
            }
            return Report {
                checks,
                sample_key: None,
            };
        }

        let folder = format!(
            "s3://{}/{}",
            source.bucket,
            source.prefix.as_deref().unwrap_or_default()
        );
        let page = match self.source.list_page(source, None).await {
            Ok(page) => page,
            Err(err) => {
                let owner_refused = matches!(err, SourceError::AccessDenied { .. })
                    && allowed_without_owner(&client, source, Probe::List).await;
                checks.push(if owner_refused {
                    bucket_owner("list", source)
                } else {
                    source_failure("list", source, &folder, &err)
                });
                for check in ["archived", "read"] {
                    checks.push(Check::skipped(check, "the folder cannot be listed"));
                }
                return Report {
                    checks,
                    sample_key: None,
                };
            }
        };
        let more = if page.next.is_some() {
            " (first page)"
        } else {
            ""
        };
        checks.push(Check::pass(
            "list",
            format!(
                "listed {} object(s) under {folder}{more}",
                page.objects.len()
            ),
        ));

        let settings = SyncSettings {
            max_file_size: u64::MAX,
            ..SyncSettings::default()
        };
        let mut archived = 0;
        let mut sample = None;
        for object in &page.objects {
            match rules::decide(object, DateTime::<Utc>::MIN_UTC, &settings, template_format) {
                Decision::Skip(s3_importer_core::sync::SkipReason::Archived { .. }) => {
                    archived += 1
                }
                Decision::Import(_) if sample.is_none() => sample = Some(object.clone()),
                _ => {}
            }
        }
        checks.push(if archived == 0 {
            Check::pass("archived", "no archived objects on the first page")
        } else {
            Check {
                check: "archived".into(),
                status: CheckStatus::Warn,
                detail: format!("{archived} object(s) are in GLACIER or DEEP_ARCHIVE and not restored"),
                cause: Some("archived".into()),
                fix: Some(
                    "they are skipped; restore them (S3 RestoreObject) and they are imported on the next sync"
                        .into(),
                ),
            }
        });

        let Some(sample) = sample else {
            checks.push(Check::skipped(
                "read",
                format!("no importable file under {folder} yet: upload a .csv, .tsv, .json or .jsonl file"),
            ));
            return Report {
                checks,
                sample_key: None,
            };
        };
        let key = sample.key.clone();
        let read = async {
            let mut body = self
                .source
                .open(
                    source,
                    &key,
                    &sample.etag,
                    Some(ByteRange {
                        start: 0,
                        end: Some(1024),
                    }),
                )
                .await?;
            let mut buffer = Vec::new();
            (&mut body.reader)
                .take(1024)
                .read_to_end(&mut buffer)
                .await
                .map_err(|e| SourceError::Other {
                    context: format!("read s3://{}/{key}", source.bucket),
                    source: Box::new(e),
                })?;
            Ok::<usize, SourceError>(buffer.len())
        };
        checks.push(match read.await {
            Ok(n) => Check::pass(
                "read",
                format!("read the first {n} bytes of s3://{}/{key}", source.bucket),
            ),
            Err(err) => source_failure(
                "read",
                source,
                &format!("s3://{}/{key}", source.bucket),
                &err,
            ),
        });
        Report {
            checks,
            sample_key: Some(key),
        }
    }

    async fn assume(
        &self,
        role_arn: &str,
        external_id: Option<&str>,
        bucket: &str,
    ) -> Result<Credentials, AwsCallError> {
        let out = self
            .sts
            .assume_role()
            .role_arn(role_arn)
            .set_external_id(external_id.map(str::to_owned))
            .role_session_name(session_name(bucket))
            .duration_seconds(900)
            .send()
            .await
            .map_err(AwsCallError::from_sdk)?;
        let c = out
            .credentials()
            .ok_or_else(|| AwsCallError::construction("STS returned no credentials"))?;
        Ok(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            std::time::SystemTime::try_from(*c.expiration()).ok(),
            "s3-importer-verify",
        ))
    }

    /// An S3 client in the source's region, with the role's credentials when one was assumed.
    fn s3_client(&self, source: &Source, credentials: Option<Credentials>) -> aws_sdk_s3::Client {
        let mut builder = s3_config_builder(&self.sdk).region(Region::new(source.region.clone()));
        if let Some(credentials) = credentials {
            builder = builder.credentials_provider(SharedCredentialsProvider::new(credentials));
        }
        aws_sdk_s3::Client::from_conf(builder.build())
    }

    async fn head_bucket(&self, client: &aws_sdk_s3::Client, source: &Source) -> Check {
        let bucket = &source.bucket;
        match client
            .head_bucket()
            .bucket(bucket)
            .expected_bucket_owner(&source.account_id)
            .send()
            .await
        {
            Ok(out) => match out.bucket_region() {
                Some(actual) if actual != source.region => wrong_region(source, Some(actual)),
                _ => Check::pass(
                    "bucket",
                    format!(
                        "s3://{bucket} exists in {}, owned by account {}",
                        out.bucket_region().unwrap_or(&source.region),
                        source.account_id
                    ),
                ),
            },
            Err(e) => {
                let err = AwsCallError::from_sdk(e);
                let failure = classify_s3(err.kind, err.code.as_deref(), err.status);
                if failure == S3Failure::AccessDenied
                    && allowed_without_owner(client, source, Probe::HeadBucket).await
                {
                    return bucket_owner("bucket", source);
                }
                match failure {
                    S3Failure::NotFound | S3Failure::NoSuchBucket => Check::fail(
                        "bucket",
                        "no_such_bucket",
                        format!("bucket {bucket} does not exist ({err})"),
                        "check the bucket name (`connector show NAME`); a connector's bucket cannot change (its ledger \
                         belongs to it): create a connector for the right bucket, and delete this one",
                    ),
                    S3Failure::WrongRegion => wrong_region(source, err.bucket_region.as_deref()),
                    // HeadBucket needs s3:ListBucket on the whole bucket, which a folder-limited policy may
                    // not grant: the listing below (with ExpectedBucketOwner, and the same probe) decides.
                    S3Failure::AccessDenied => Check {
                        check: "bucket".into(),
                        status: CheckStatus::Warn,
                        detail: format!(
                            "HeadBucket on {bucket} was refused ({err}); the bucket's region and owner are checked \
                             by the listing instead"
                        ),
                        cause: None,
                        fix: None,
                    },
                    S3Failure::Transient => Check::fail(
                        "bucket",
                        "network",
                        format!("cannot reach S3: {err}"),
                        "check the network and the endpoint, then run verify again",
                    ),
                    _ => Check::fail("bucket", "other", format!("HeadBucket on {bucket} failed: {err}"), "see the error"),
                }
            }
        }
    }
}

/// The request [`allowed_without_owner`] repeats.
#[derive(Debug, Clone, Copy)]
enum Probe {
    /// `HeadBucket`.
    HeadBucket,
    /// `ListObjectsV2` of at most one key under the folder.
    List,
}

/// True when `probe`, refused with `ExpectedBucketOwner = source.account_id` (403 AccessDenied), is allowed
/// without it: then the bucket exists and may be read, but another account owns it.
///
/// S3 answers a wrong `ExpectedBucketOwner` with the same 403 AccessDenied as a missing permission; only the
/// same request without the owner tells them apart. The probe reads no object (a HeadBucket, or a listing of
/// at most one key whose answer is dropped) and only names the cause: the lister and the worker keep sending
/// the owner, so a bucket of another account is never imported. A refused or failed probe says nothing: the
/// caller keeps its own verdict.
///
/// moto ignores `ExpectedBucketOwner`, so the emulator suites cannot produce this answer; the unit tests below
/// play S3's answers to both requests.
async fn allowed_without_owner(client: &aws_sdk_s3::Client, source: &Source, probe: Probe) -> bool {
    let answered = match probe {
        Probe::HeadBucket => client
            .head_bucket()
            .bucket(&source.bucket)
            .send()
            .await
            .map(|_| ())
            .map_err(AwsCallError::from_sdk),
        Probe::List => client
            .list_objects_v2()
            .bucket(&source.bucket)
            .prefix(source.prefix.as_deref().unwrap_or_default())
            .max_keys(1)
            .send()
            .await
            .map(|_| ())
            .map_err(AwsCallError::from_sdk),
    };
    match answered {
        Ok(()) => true,
        Err(err) => {
            tracing::debug!(bucket = %source.bucket, ?probe, error = %err, "refused without ExpectedBucketOwner too");
            false
        }
    }
}

/// The bucket answers, but not as a bucket of the connector's account.
fn bucket_owner(check: &'static str, source: &Source) -> Check {
    Check::fail(
        check,
        "bucket_owner",
        format!(
            "bucket {} is not owned by account {}: S3 refuses the request that names that owner \
             (ExpectedBucketOwner) and answers it without",
            source.bucket, source.account_id
        ),
        format!(
            "the connector's account id must be the bucket owner's, and it cannot change: if s3://{} is the \
             right bucket, create a connector with its owner's account (`connector create --account-id`) and \
             delete this one; if {} is the right account, the bucket name is wrong",
            source.bucket, source.account_id
        ),
    )
}

fn who(source: &Source) -> String {
    match &source.role_arn {
        Some(role) => format!("permission policy of {role}"),
        None => "the deployment's own role (or the bucket policy)".to_owned(),
    }
}

fn wrong_region(source: &Source, actual: Option<&str>) -> Check {
    Check::fail(
        "bucket",
        "wrong_region",
        format!(
            "bucket {} is not in {}{}",
            source.bucket,
            source.region,
            actual.map(|r| format!(" but in {r}")).unwrap_or_default()
        ),
        format!(
            "correct it with `connector update NAME --bucket-region {}`, then `connector resume NAME`",
            actual.unwrap_or("<the bucket's region>")
        ),
    )
}

fn assume_failure(role_arn: &str, err: &AwsCallError) -> Check {
    if err.is_retryable() || err.kind != crate::error::FailureKind::Service {
        return Check::fail(
            "assume_role",
            "network",
            format!("cannot reach STS: {err}"),
            "check the network and the endpoint, then run verify again",
        );
    }
    Check::fail(
        "assume_role",
        "trust_policy",
        format!("cannot assume {role_arn}: {err}"),
        "check that the role exists with exactly this ARN, and that its trust policy is the one \
         `s3-importer connector policy NAME` prints: it must name the deployment's lister and worker roles \
         as principals and require the connector's External ID (after `reauth --rotate-external-id`, paste \
         the new trust policy)",
    )
}

fn source_failure(check: &'static str, source: &Source, target: &str, err: &SourceError) -> Check {
    let folder = source.prefix.as_deref().unwrap_or_default();
    let bucket = &source.bucket;
    match err {
        SourceError::AccessDenied { message, .. } => Check::fail(
            check,
            "missing_permission",
            format!("access denied to {target}: {message}"),
            if check == "list" {
                format!(
                    "allow s3:ListBucket on arn:aws:s3:::{bucket}{} in the {}, and check that account {} owns \
                     the bucket (S3 refuses a listing for another owner the same way)",
                    if folder.is_empty() { String::new() } else { format!(" for the prefix {folder}*") },
                    who(source),
                    source.account_id
                )
            } else {
                format!("allow s3:GetObject on arn:aws:s3:::{bucket}/{folder}* in the {}", who(source))
            },
        ),
        SourceError::NoSuchBucket { .. } => Check::fail(
            check,
            "no_such_bucket",
            err.to_string(),
            "check the bucket name and the account id",
        ),
        SourceError::Kms { message, .. } => Check::fail(
            check,
            "kms_key",
            format!("cannot decrypt {target}: {message}"),
            "allow kms:Decrypt on the bucket's KMS key in the role's policy (`connector policy NAME \
             --kms-key-arn ARN` prints it) and in the key policy",
        ),
        SourceError::Archived { .. } => Check::fail(
            check,
            "archived",
            err.to_string(),
            "restore the object (S3 RestoreObject), or move it out of GLACIER/DEEP_ARCHIVE",
        ),
        SourceError::AssumeRole { message, role_arn } => Check::fail(
            check,
            "trust_policy",
            format!("cannot assume {role_arn}: {message}"),
            "check the role's trust policy (`connector policy NAME`)",
        ),
        SourceError::Transient { .. } => Check::fail(
            check,
            "network",
            err.to_string(),
            "a transient failure: run verify again",
        ),
        SourceError::Other { source: inner, .. }
            if inner.downcast_ref::<crate::source::WrongRegion>().is_some() =>
        {
            let actual = inner
                .downcast_ref::<crate::source::WrongRegion>()
                .and_then(|w| w.actual.clone());
            let mut c = wrong_region(source, actual.as_deref());
            c.check = check.into();
            c
        }
        other => Check::fail(check, "other", other.to_string(), "see the error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    use aws_sdk_s3::config::http::HttpResponse;
    use aws_sdk_s3::primitives::SdkBody;
    use aws_sdk_sts::operation::assume_role::{AssumeRoleError, AssumeRoleOutput};
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn sts_credentials() -> aws_sdk_sts::types::Credentials {
        aws_sdk_sts::types::Credentials::builder()
            .access_key_id("AKIA")
            .secret_access_key("secret")
            .session_token("token")
            .expiration(aws_smithy_types::DateTime::from_secs(4_000_000_000))
            .build()
            .unwrap()
    }

    fn source() -> Source {
        Source {
            account_id: "111122223333".into(),
            bucket: "acme-exports".into(),
            region: "us-east-1".into(),
            prefix: Some("orders/".into()),
            role_arn: Some("arn:aws:iam::111122223333:role/s3-importer-orders".into()),
            external_id: Some("ext-123".into()),
        }
    }

    fn sdk() -> aws_config::SdkConfig {
        // Unreachable endpoint: the S3 checks after the role checks fail fast and are not under test here.
        aws_config::SdkConfig::builder()
            .region(Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .credentials_provider(SharedCredentialsProvider::new(Credentials::for_tests()))
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build()
    }

    #[tokio::test]
    async fn a_role_that_ignores_the_external_id_fails_the_check() {
        // The role can be assumed with and without the External ID: the trust policy lacks the condition.
        let with_id = mock!(aws_sdk_sts::Client::assume_role)
            .match_requests(|r| r.external_id() == Some("ext-123"))
            .then_output(|| {
                AssumeRoleOutput::builder()
                    .credentials(sts_credentials())
                    .build()
            });
        let without_id = mock!(aws_sdk_sts::Client::assume_role)
            .match_requests(|r| r.external_id().is_none())
            .then_output(|| {
                AssumeRoleOutput::builder()
                    .credentials(sts_credentials())
                    .build()
            });
        let sts = mock_client!(aws_sdk_sts, RuleMode::MatchAny, [&with_id, &without_id]);
        let report = Doctor::with_sts(&sdk(), sts).verify(&source(), None).await;
        assert_eq!(report.checks[0].status, CheckStatus::Pass, "{report:#?}");
        assert_eq!(report.checks[1].check, "external_id_required");
        assert_eq!(report.checks[1].status, CheckStatus::Fail);
        assert_eq!(
            report.checks[1].cause.as_deref(),
            Some("external_id_not_required")
        );
        assert_eq!(with_id.num_calls(), 1);
        assert_eq!(without_id.num_calls(), 1);
        assert!(!report.ok());
    }

    #[tokio::test]
    async fn a_refused_assume_without_external_id_passes() {
        let with_id = mock!(aws_sdk_sts::Client::assume_role)
            .match_requests(|r| {
                r.external_id() == Some("ext-123")
                    && r.role_session_name() == Some("s3-importer-acme-exports")
            })
            .then_output(|| {
                AssumeRoleOutput::builder()
                    .credentials(sts_credentials())
                    .build()
            });
        let without_id = mock!(aws_sdk_sts::Client::assume_role)
            .match_requests(|r| r.external_id().is_none())
            .then_error(|| {
                AssumeRoleError::generic(
                    aws_sdk_sts::error::ErrorMetadata::builder()
                        .code("AccessDenied")
                        .message("not authorized")
                        .build(),
                )
            });
        let sts = mock_client!(aws_sdk_sts, RuleMode::MatchAny, [&with_id, &without_id]);
        let report = Doctor::with_sts(&sdk(), sts).verify(&source(), None).await;
        assert_eq!(report.checks[1].status, CheckStatus::Pass, "{report:#?}");
    }

    #[tokio::test]
    async fn a_refused_assume_role_names_the_trust_policy() {
        let refused = mock!(aws_sdk_sts::Client::assume_role).then_error(|| {
            AssumeRoleError::generic(
                aws_sdk_sts::error::ErrorMetadata::builder()
                    .code("AccessDenied")
                    .message("User is not authorized to perform: sts:AssumeRole")
                    .build(),
            )
        });
        let sts = mock_client!(aws_sdk_sts, [&refused]);
        let report = Doctor::with_sts(&sdk(), sts).verify(&source(), None).await;
        let failure = report.first_failure().unwrap();
        assert_eq!(failure.check, "assume_role");
        assert_eq!(failure.cause.as_deref(), Some("trust_policy"));
        assert!(failure.fix.as_deref().unwrap().contains("trust policy"));
        assert!(report.checks[1..]
            .iter()
            .all(|c| c.status == CheckStatus::Skipped));
    }

    /// One request the played S3 received: the operation and its `ExpectedBucketOwner`.
    type Seen = (&'static str, Option<String>);

    /// An SdkConfig whose every S3 client talks to a played S3: `status(operation, owner)` is its answer to
    /// `HeadBucket`, `ListObjectsV2` or `GetObject` with that `ExpectedBucketOwner` (a 403 is S3's
    /// AccessDenied). moto ignores `ExpectedBucketOwner`, so only a played S3 can refuse a wrong owner.
    fn played_s3(
        status: fn(&str, Option<&str>) -> u16,
    ) -> (aws_config::SdkConfig, Arc<Mutex<Vec<Seen>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let http = aws_smithy_http_client::test_util::infallible_client_fn(move |request| {
            let owner = request
                .headers()
                .get("x-amz-expected-bucket-owner")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let query = request.uri().query().unwrap_or_default();
            let operation = match request.method().as_str() {
                "HEAD" => "HeadBucket",
                _ if query.contains("list-type=2") => "ListObjectsV2",
                _ => "GetObject",
            };
            log.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((operation, owner.clone()));
            let code = status(operation, owner.as_deref());
            let body = match (code, operation) {
                (_, "HeadBucket") => String::new(),
                (403, _) => "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code>\
                             <Message>Access Denied</Message><RequestId>r</RequestId></Error>"
                    .to_owned(),
                (_, "ListObjectsV2") => "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult>\
                                         <Name>acme-exports</Name><Prefix>orders/</Prefix><KeyCount>0</KeyCount>\
                                         <MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated></ListBucketResult>"
                    .to_owned(),
                _ => "id,total\n".to_owned(),
            };
            let mut response = HttpResponse::new(
                code.try_into()
                    .unwrap_or_else(|_| unreachable!("a played status code")),
                SdkBody::from(body),
            );
            if operation == "HeadBucket" && code == 200 {
                response
                    .headers_mut()
                    .insert("x-amz-bucket-region", "us-east-1");
            }
            response
                .try_into_http1x()
                .unwrap_or_else(|_| unreachable!("a played response converts"))
        });
        let sdk = aws_config::SdkConfig::builder()
            .region(Region::new("us-east-1"))
            .endpoint_url("http://s3.test")
            .credentials_provider(SharedCredentialsProvider::new(Credentials::for_tests()))
            .http_client(http)
            .retry_config(aws_config::retry::RetryConfig::disabled())
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        (sdk, seen)
    }

    /// The connector's source without a role: the deployment's own credentials read it.
    fn source_without_role() -> Source {
        Source {
            role_arn: None,
            external_id: None,
            ..source()
        }
    }

    fn check<'r>(report: &'r Report, name: &str) -> &'r Check {
        report
            .checks
            .iter()
            .find(|c| c.check == name)
            .unwrap_or_else(|| panic!("no {name} check in {report:#?}"))
    }

    #[tokio::test]
    async fn a_bucket_of_another_account_fails_the_bucket_check_as_bucket_owner() {
        // S3 refuses HeadBucket with a wrong ExpectedBucketOwner (403 AccessDenied) and answers it without.
        let (sdk, seen) = played_s3(|_, owner| if owner.is_some() { 403 } else { 200 });
        let report = Doctor::new(&sdk).verify(&source_without_role(), None).await;
        let bucket = check(&report, "bucket");
        assert_eq!(bucket.status, CheckStatus::Fail, "{report:#?}");
        assert_eq!(bucket.cause.as_deref(), Some("bucket_owner"), "{report:#?}");
        assert!(
            bucket.detail.contains("not owned by account 111122223333"),
            "{}",
            bucket.detail
        );
        let fix = bucket.fix.as_deref().unwrap_or_default();
        assert!(fix.contains("--account-id"), "{fix}");
        assert_eq!(
            seen.lock().unwrap_or_else(|p| p.into_inner()).as_slice(),
            [
                ("HeadBucket", Some("111122223333".to_owned())),
                ("HeadBucket", None),
            ],
            "the owner-pinned request, then the same without the owner"
        );
        assert_eq!(
            report.first_failure().map(|c| c.check.as_str()),
            Some("bucket")
        );
    }

    #[tokio::test]
    async fn a_bucket_of_another_account_behind_a_folder_policy_fails_the_list_check_as_bucket_owner(
    ) {
        // A folder-limited policy refuses HeadBucket whatever the owner; the listing of the folder is allowed
        // without the owner and refused with it.
        let (sdk, seen) = played_s3(|operation, owner| match operation {
            "ListObjectsV2" if owner.is_none() => 200,
            _ => 403,
        });
        let report = Doctor::new(&sdk).verify(&source_without_role(), None).await;
        assert_eq!(
            check(&report, "bucket").status,
            CheckStatus::Warn,
            "{report:#?}"
        );
        let list = check(&report, "list");
        assert_eq!(list.status, CheckStatus::Fail, "{report:#?}");
        assert_eq!(list.cause.as_deref(), Some("bucket_owner"), "{report:#?}");
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!(
            seen.last(),
            Some(&("ListObjectsV2", None)),
            "the probe is the listing without the owner: {seen:?}"
        );
        assert!(
            seen.contains(&("ListObjectsV2", Some("111122223333".to_owned()))),
            "{seen:?}"
        );
    }

    #[tokio::test]
    async fn a_refusal_with_and_without_the_owner_stays_a_missing_permission() {
        let (sdk, _) = played_s3(|_, _| 403);
        let report = Doctor::new(&sdk).verify(&source_without_role(), None).await;
        let list = check(&report, "list");
        assert_eq!(
            list.cause.as_deref(),
            Some("missing_permission"),
            "{report:#?}"
        );
        assert!(report
            .checks
            .iter()
            .all(|c| c.cause.as_deref() != Some("bucket_owner")));
    }

    #[tokio::test]
    async fn a_bucket_of_the_connectors_account_passes_without_a_probe() {
        let (sdk, seen) = played_s3(|_, owner| {
            assert_eq!(owner, Some("111122223333"), "every request names the owner");
            200
        });
        let report = Doctor::new(&sdk).verify(&source_without_role(), None).await;
        assert_eq!(
            check(&report, "bucket").status,
            CheckStatus::Pass,
            "{report:#?}"
        );
        assert_eq!(
            check(&report, "list").status,
            CheckStatus::Pass,
            "{report:#?}"
        );
        assert!(seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .all(|(_, owner)| owner.is_some()));
    }

    #[test]
    fn source_failures_name_the_cause_and_the_fix() {
        let src = source();
        let read =
            |err: SourceError| source_failure("read", &src, "s3://acme-exports/orders/a.csv", &err);
        let denied = read(SourceError::AccessDenied {
            bucket: "acme-exports".into(),
            key: "orders/a.csv".into(),
            message: "Access Denied".into(),
        });
        assert_eq!(denied.cause.as_deref(), Some("missing_permission"));
        assert!(denied
            .fix
            .unwrap()
            .contains("s3:GetObject on arn:aws:s3:::acme-exports/orders/*"));
        let kms = read(SourceError::Kms {
            bucket: "acme-exports".into(),
            key: "orders/a.csv".into(),
            message: "KMS.AccessDeniedException".into(),
        });
        assert_eq!(kms.cause.as_deref(), Some("kms_key"));
        assert!(kms.fix.unwrap().contains("kms:Decrypt"));
        let archived = read(SourceError::Archived {
            bucket: "acme-exports".into(),
            key: "orders/a.csv".into(),
        });
        assert_eq!(archived.cause.as_deref(), Some("archived"));
        let region = read(SourceError::Other {
            context: "read".into(),
            source: Box::new(crate::source::WrongRegion {
                bucket: "acme-exports".into(),
                configured: "us-east-1".into(),
                actual: Some("eu-west-1".into()),
                detail: "PermanentRedirect".into(),
            }),
        });
        assert_eq!(region.cause.as_deref(), Some("wrong_region"));
        assert!(region.fix.unwrap().contains("--bucket-region eu-west-1"));
        let list = source_failure(
            "list",
            &src,
            "s3://acme-exports/orders/",
            &SourceError::AccessDenied {
                bucket: "acme-exports".into(),
                key: "orders/".into(),
                message: "Access Denied".into(),
            },
        );
        let fix = list.fix.unwrap();
        assert!(
            fix.contains("s3:ListBucket")
                && fix.contains("prefix orders/*")
                && fix.contains("111122223333")
        );
    }
}
