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
//! | `notifications` (connectors in `events` mode, [`Doctor::verify_notifications`]) | `GetBucketNotificationConfiguration` | no `s3:ObjectCreated:*` notification of the folder to the notification queue (and EventBridge off), or no `s3:GetBucketNotification` |
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
                    // A versioned connector reads versions: the check reads as the worker does.
                    sample.version_id.as_deref(),
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

pub mod notifications;
#[cfg(test)]
mod tests;
