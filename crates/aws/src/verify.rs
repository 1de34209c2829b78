//! The connection doctor: checks, step by step, that the deployment can read a connector's source, and names
//! the precise cause of a failure with what to change.
//!
//! | check | how | a failure means |
//! |---|---|---|
//! | `assume_role` | `sts:AssumeRole` with the External ID | the role's trust policy (principal, External ID) or the role ARN |
//! | `external_id_required` | `sts:AssumeRole` *without* the External ID must be refused | the trust policy lacks the `sts:ExternalId` condition |
//! | `bucket` | `HeadBucket` with `ExpectedBucketOwner`, in the connector's region | missing bucket, another owner, wrong region, no `s3:ListBucket` |
//! | `list` | `ListObjectsV2` on the folder (as the lister does) | no `s3:ListBucket` for the folder |
//! | `archived` | storage classes in the listing | archived objects are skipped until restored |
//! | `read` | `GetObject` of the first bytes of one importable file (as the worker does) | no `s3:GetObject`, KMS key access, an archived object |

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

        let bucket = self.head_bucket(source, credentials.clone()).await;
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
                checks.push(source_failure("list", source, &folder, &err));
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

    async fn head_bucket(&self, source: &Source, credentials: Option<Credentials>) -> Check {
        let mut builder = s3_config_builder(&self.sdk).region(Region::new(source.region.clone()));
        if let Some(credentials) = credentials {
            builder = builder.credentials_provider(SharedCredentialsProvider::new(credentials));
        }
        let client = aws_sdk_s3::Client::from_conf(builder.build());
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
                match classify_s3(err.kind, err.code.as_deref(), err.status) {
                    S3Failure::NotFound | S3Failure::NoSuchBucket => Check::fail(
                        "bucket",
                        "no_such_bucket",
                        format!("bucket {bucket} does not exist ({err})"),
                        "check the bucket name (`connector show NAME`); a connector's bucket cannot change (its ledger \
                         belongs to it): create a connector for the right bucket, and delete this one",
                    ),
                    S3Failure::WrongRegion => wrong_region(source, err.bucket_region.as_deref()),
                    // HeadBucket needs s3:ListBucket on the whole bucket, which a folder-limited policy may
                    // not grant, and a bucket of another owner answers 403 too: the listing below (with
                    // ExpectedBucketOwner) decides.
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
