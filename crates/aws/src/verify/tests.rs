//! Tests of the parent module (`verify.rs`).

use super::*;
use std::sync::{Arc, Mutex};

use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::primitives::SdkBody;
use aws_sdk_sts::operation::assume_role::AssumeRoleOutput;
use aws_smithy_mocks::{mock, mock_client, RuleMode};

use crate::test_support::assume_role_denied;

fn sts_credentials() -> aws_sdk_sts::types::Credentials {
    aws_sdk_sts::types::Credentials::builder()
        .access_key_id("AKIA")
        .secret_access_key("secret")
        .session_token("token")
        .expiration(aws_smithy_types::DateTime::from_secs(4_000_000_000))
        .build()
        .unwrap()
}

/// STS's answer to an allowed `AssumeRole`.
fn assumed() -> AssumeRoleOutput {
    AssumeRoleOutput::builder()
        .credentials(sts_credentials())
        .build()
}

fn source() -> Source {
    Source {
        account_id: "111122223333".into(),
        bucket: "acme-exports".into(),
        region: "us-east-1".into(),
        prefix: Some("orders/".into()),
        role_arn: Some("arn:aws:iam::111122223333:role/s3-importer-orders".into()),
        external_id: Some("ext-123".into()),
        versions: false,
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
        .then_output(assumed);
    let without_id = mock!(aws_sdk_sts::Client::assume_role)
        .match_requests(|r| r.external_id().is_none())
        .then_output(assumed);
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
        .then_output(assumed);
    let without_id = mock!(aws_sdk_sts::Client::assume_role)
        .match_requests(|r| r.external_id().is_none())
        .then_error(|| assume_role_denied("not authorized"));
    let sts = mock_client!(aws_sdk_sts, RuleMode::MatchAny, [&with_id, &without_id]);
    let report = Doctor::with_sts(&sdk(), sts).verify(&source(), None).await;
    assert_eq!(report.checks[1].status, CheckStatus::Pass, "{report:#?}");
}

#[tokio::test]
async fn a_refused_assume_role_names_the_trust_policy() {
    let refused = mock!(aws_sdk_sts::Client::assume_role)
        .then_error(|| assume_role_denied("User is not authorized to perform: sts:AssumeRole"));
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
async fn a_bucket_of_another_account_behind_a_folder_policy_fails_the_list_check_as_bucket_owner() {
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
