//! A connector's source, checked and turned into the IAM documents its owner pastes: the permission policy
//! of the role that reads the bucket, and that role's trust policy. Pure functions, no AWS calls.
//!
//! The permission policy grants the least the importer needs: `s3:ListBucket` on the bucket (limited to the
//! folder with an `s3:prefix` condition when there is one — which the worker's ListObjectsV2 of one key, telling
//! a deleted file from a refused read, also meets), `s3:GetObject` on the folder's objects (with
//! `s3:ListBucketVersions` and `s3:GetObjectVersion` for a connector reading a versioned bucket's versions), and
//! `kms:Decrypt` on the bucket's KMS key (only through S3) when the files are encrypted with a customer key.
//! The trust policy lets only the deployment's lister and worker roles assume the role, and only with the
//! connector's External ID.

use serde_json::{json, Value};

/// The IAM policy language version every generated document uses.
pub const POLICY_VERSION: &str = "2012-10-17";

/// The default prefix of the source role names (`<prefix><connector name>`); the deployment may only assume
/// roles whose names start with it.
pub const DEFAULT_ROLE_NAME_PREFIX: &str = "s3-importer-";

/// Longest IAM role name.
pub const MAX_ROLE_NAME: usize = 64;

/// An input that cannot be used, with what is wrong and what is expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InvalidInput {
    /// Which input (`--bucket`, `--region`, ...).
    pub field: &'static str,
    /// What is wrong and what to give instead.
    pub message: String,
}

fn invalid(field: &'static str, message: impl Into<String>) -> InvalidInput {
    InvalidInput {
        field,
        message: message.into(),
    }
}

/// A 12-digit AWS account id.
pub fn validate_account_id(account_id: &str) -> Result<(), InvalidInput> {
    if account_id.len() == 12 && account_id.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(invalid(
            "account id",
            format!(
                "{account_id:?} is not a 12-digit AWS account id (digits only, e.g. 123456789012)"
            ),
        ))
    }
}

/// An AWS region code such as `us-east-1`, `eu-central-2` or `us-gov-west-1`.
pub fn validate_region(region: &str) -> Result<(), InvalidInput> {
    let parts: Vec<&str> = region.split('-').collect();
    let letters = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase());
    let ok = parts.len() >= 3
        && parts[0].len() == 2
        && letters(parts[0])
        && parts[1..parts.len() - 1].iter().all(|p| letters(p))
        && parts.last().is_some_and(|p| {
            !p.is_empty() && p.len() <= 2 && p.bytes().all(|b| b.is_ascii_digit())
        });
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "region",
            format!("{region:?} is not an AWS region code (e.g. us-east-1, eu-west-3)"),
        ))
    }
}

/// An S3 general purpose bucket name, by the S3 naming rules: 3–63 characters of lowercase letters, digits,
/// dots and hyphens; starting and ending with a letter or digit; no two adjacent dots; not an IP address;
/// none of the reserved prefixes and suffixes.
pub fn validate_bucket_name(bucket: &str) -> Result<(), InvalidInput> {
    let fail = |why: &str| {
        Err(invalid(
            "bucket",
            format!("{bucket:?} is not a valid S3 bucket name: {why}"),
        ))
    };
    if bucket.len() < 3 || bucket.len() > 63 {
        return fail("it must be 3 to 63 characters long");
    }
    if let Some(c) = bucket
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-'))
    {
        return fail(&format!(
            "{c:?} is not allowed (only lowercase letters, digits, dots and hyphens)"
        ));
    }
    let edge_ok = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    if !edge_ok(bucket.bytes().next()) || !edge_ok(bucket.bytes().last()) {
        return fail("it must begin and end with a letter or a digit");
    }
    if bucket.contains("..") {
        return fail("it must not contain two adjacent dots");
    }
    if bucket.split('.').count() == 4 && bucket.split('.').all(|p| p.parse::<u8>().is_ok()) {
        return fail("it must not be formatted as an IP address");
    }
    for prefix in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if bucket.starts_with(prefix) {
            return fail(&format!("the prefix {prefix:?} is reserved"));
        }
    }
    for suffix in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] {
        if bucket.ends_with(suffix) {
            return fail(&format!("the suffix {suffix:?} is reserved"));
        }
    }
    Ok(())
}

/// A folder (key prefix), normalised: leading slashes removed, a trailing `/` added (so `exports/orders` grants
/// and lists `exports/orders/…`, never `exports/orders-private/…`), `None` for the whole bucket. IAM wildcards
/// (`*`, `?`) and control characters are refused, since they would widen the generated policy.
pub fn normalize_folder(folder: Option<&str>) -> Result<Option<String>, InvalidInput> {
    let Some(folder) = folder.map(|f| f.trim_start_matches('/')) else {
        return Ok(None);
    };
    if folder.is_empty() {
        return Ok(None);
    }
    if folder.len() > 1024 {
        return Err(invalid(
            "folder",
            "a folder (key prefix) is at most 1024 bytes",
        ));
    }
    if folder.contains(['*', '?']) || folder.chars().any(char::is_control) {
        return Err(invalid(
            "folder",
            format!(
                "{folder:?} contains `*`, `?` or a control character, which IAM policies would read as \
                 wildcards; use a plain key prefix such as `exports/orders/`"
            ),
        ));
    }
    let mut folder = folder.to_owned();
    if !folder.ends_with('/') {
        folder.push('/');
    }
    Ok(Some(folder))
}

/// A connector name: 1–64 characters of letters, digits, `.`, `_` and `-`, starting with a letter or
/// digit (it becomes part of the source role's name).
pub fn validate_connector_name(name: &str) -> Result<(), InvalidInput> {
    let ok = !name.is_empty()
        && name.len() <= MAX_ROLE_NAME
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "name",
            format!(
                "{name:?} is not a valid connector name: use 1 to 64 letters, digits, `.`, `_` or `-`, \
                 starting with a letter or digit"
            ),
        ))
    }
}

/// The name of the role the source account creates for a connector: `<prefix><connector name>`.
pub fn role_name(prefix: &str, connector_name: &str) -> Result<String, InvalidInput> {
    let name = format!("{prefix}{connector_name}");
    if name.len() > MAX_ROLE_NAME {
        return Err(invalid(
            "name",
            format!(
                "the source role name {name:?} would be {} characters, over IAM's {MAX_ROLE_NAME}: choose a \
                 connector name of at most {} characters",
                name.len(),
                MAX_ROLE_NAME.saturating_sub(prefix.len())
            ),
        ));
    }
    Ok(name)
}

/// The ARN of a role in an account (`arn:<partition>:iam::<account>:role/<name>`). The partition follows
/// the region (`aws-cn`, `aws-us-gov`, else `aws`).
pub fn role_arn(region: &str, account_id: &str, role_name: &str) -> String {
    format!(
        "arn:{}:iam::{account_id}:role/{role_name}",
        partition(region)
    )
}

/// The AWS partition of a region.
pub fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else if region.starts_with("us-isob-") {
        "aws-iso-b"
    } else if region.starts_with("us-iso-") {
        "aws-iso"
    } else {
        "aws"
    }
}

/// A role ARN as `--role-arn` takes it: `arn:<partition>:iam::<12 digits>:role/<path/>name`. Returns the
/// role's name (without path).
pub fn validate_role_arn(arn: &str) -> Result<&str, InvalidInput> {
    let fail = || {
        invalid(
            "role ARN",
            format!("{arn:?} is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)"),
        )
    };
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    if parts.len() != 6 || parts[0] != "arn" || !parts[1].starts_with("aws") || parts[2] != "iam" {
        return Err(fail());
    }
    validate_account_id(parts[4]).map_err(|_| fail())?;
    let resource = parts[5].strip_prefix("role/").ok_or_else(fail)?;
    let name = resource.rsplit('/').next().unwrap_or_default();
    if name.is_empty() || name.len() > MAX_ROLE_NAME {
        return Err(fail());
    }
    Ok(name)
}

/// A source role ARN the deployment may assume: a valid role ARN (see [`validate_role_arn`]) whose path and
/// name after `role/` start with `prefix`, since the deployment's roles may only assume
/// `arn:…:iam::*:role/<prefix>*` (a role `role/team/<prefix>x` does not match). Returns the role's name.
pub fn validate_source_role_arn<'a>(arn: &'a str, prefix: &str) -> Result<&'a str, InvalidInput> {
    let name = validate_role_arn(arn)?;
    let resource = arn
        .splitn(6, ':')
        .nth(5)
        .and_then(|r| r.strip_prefix("role/"))
        .unwrap_or_default();
    if !resource.starts_with(prefix) {
        return Err(invalid(
            "role ARN",
            format!(
                "{arn:?}: the deployment may only assume roles named role/{prefix}* (path included); \
                 create the role as role/{prefix}<connector name>, without a path"
            ),
        ));
    }
    Ok(name)
}

/// A KMS key ARN (`arn:<partition>:kms:<region>:<account>:key/<id>`): `kms:Decrypt` takes a key, not an alias.
pub fn validate_kms_key_arn(arn: &str) -> Result<(), InvalidInput> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let ok = parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "kms"
        && validate_region(parts[3]).is_ok()
        && validate_account_id(parts[4]).is_ok()
        && parts[5]
            .strip_prefix("key/")
            .is_some_and(|id| !id.is_empty());
    if ok {
        Ok(())
    } else {
        Err(invalid(
            "KMS key ARN",
            format!(
                "{arn:?} is not a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/KEY-ID; an alias cannot be \
                 used in a policy)"
            ),
        ))
    }
}

/// What the permission policy covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PermissionScope<'a> {
    /// Bucket.
    pub bucket: &'a str,
    /// The bucket's region (for the partition and the KMS `ViaService` condition).
    pub region: &'a str,
    /// Folder (key prefix), `None` for the whole bucket.
    pub folder: Option<&'a str>,
    /// The KMS key the objects are encrypted with, when it is a customer managed key.
    pub kms_key_arn: Option<&'a str>,
    /// The connector is fed by S3 events: `connector verify` reads the bucket's notification configuration.
    pub notifications: bool,
    /// The connector reads a versioned bucket's versions: it lists them and reads each by its id.
    pub versions: bool,
}

/// The permission policy of the source role: list the folder, read its objects, decrypt them; for a connector
/// fed by events, read the bucket's notification configuration.
pub fn permission_policy(scope: &PermissionScope<'_>) -> Value {
    let partition = partition(scope.region);
    let bucket_arn = format!("arn:{partition}:s3:::{}", scope.bucket);
    let mut list = json!({
        "Sid": "ListTheFolder",
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": bucket_arn,
    });
    let objects = match scope.folder {
        Some(folder) => {
            list["Condition"] = json!({ "StringLike": { "s3:prefix": [format!("{folder}*")] } });
            format!("{bucket_arn}/{folder}*")
        }
        None => format!("{bucket_arn}/*"),
    };
    let mut statements = vec![list.clone()];
    if scope.versions {
        let mut versions = list;
        versions["Sid"] = json!("ListTheVersions");
        versions["Action"] = json!("s3:ListBucketVersions");
        statements.push(versions);
    }
    statements.push(json!({
        "Sid": "ReadTheFiles",
        "Effect": "Allow",
        "Action": if scope.versions {
            json!(["s3:GetObject", "s3:GetObjectVersion"])
        } else {
            json!("s3:GetObject")
        },
        "Resource": objects,
    }));
    if scope.notifications {
        statements.push(json!({
            "Sid": "CheckTheNotifications",
            "Effect": "Allow",
            "Action": "s3:GetBucketNotification",
            "Resource": bucket_arn,
        }));
    }
    if let Some(key) = scope.kms_key_arn {
        statements.push(json!({
            "Sid": "DecryptTheFiles",
            "Effect": "Allow",
            "Action": "kms:Decrypt",
            "Resource": key,
            "Condition": { "StringEquals": { "kms:ViaService": format!("s3.{}.amazonaws.com", scope.region) } },
        }));
    }
    json!({ "Version": POLICY_VERSION, "Statement": statements })
}

/// The trust policy of the source role: only `principals` (the deployment's lister and worker roles) may
/// assume it, and only with `external_id`.
pub fn trust_policy(principals: &[String], external_id: &str) -> Value {
    let principal = match principals {
        [one] => json!(one),
        many => json!(many),
    };
    json!({
        "Version": POLICY_VERSION,
        "Statement": [{
            "Sid": "S3ImporterReadsThisAccount",
            "Effect": "Allow",
            "Principal": { "AWS": principal },
            "Action": "sts:AssumeRole",
            "Condition": { "StringEquals": { "sts:ExternalId": external_id } },
        }],
    })
}

/// Checks that `document` has the shape of an IAM policy: a `Version` of `2012-10-17`, a non-empty
/// `Statement` list, each statement with `Effect` `Allow`/`Deny`, an `Action` and (for identity policies)
/// a `Resource` or (for trust policies) a `Principal`, every action `service:Action` and every ARN
/// `arn:…`. Used by the tests and by `connector policy` before printing.
pub fn check_policy_document(document: &Value) -> Result<(), String> {
    if document.get("Version").and_then(Value::as_str) != Some(POLICY_VERSION) {
        return Err(format!("Version must be {POLICY_VERSION:?}"));
    }
    let statements = document
        .get("Statement")
        .and_then(Value::as_array)
        .filter(|s| !s.is_empty())
        .ok_or("Statement must be a non-empty list")?;
    let strings = |v: &Value| -> Option<Vec<String>> {
        match v {
            Value::String(s) => Some(vec![s.clone()]),
            Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .filter(|v| !v.is_empty()),
            _ => None,
        }
    };
    for (i, statement) in statements.iter().enumerate() {
        let at = |what: &str| format!("statement {i}: {what}");
        let object = statement.as_object().ok_or_else(|| at("not an object"))?;
        for key in object.keys() {
            if ![
                "Sid",
                "Effect",
                "Action",
                "Resource",
                "Principal",
                "Condition",
            ]
            .contains(&key.as_str())
            {
                return Err(at(&format!("unknown element {key:?}")));
            }
        }
        if !matches!(
            object.get("Effect").and_then(Value::as_str),
            Some("Allow" | "Deny")
        ) {
            return Err(at("Effect must be Allow or Deny"));
        }
        let actions = object
            .get("Action")
            .and_then(strings)
            .ok_or_else(|| at("Action must be a string or a list of strings"))?;
        if let Some(bad) = actions.iter().find(|a| {
            let mut parts = a.splitn(2, ':');
            let service = parts.next().unwrap_or_default();
            let action = parts.next().unwrap_or_default();
            service.is_empty()
                || action.is_empty()
                || !service
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                || !action
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'*')
        }) {
            return Err(at(&format!("action {bad:?} is not service:Action")));
        }
        match (object.get("Resource"), object.get("Principal")) {
            (Some(resource), None) => {
                let arns = strings(resource).ok_or_else(|| at("Resource must be ARNs"))?;
                if let Some(bad) = arns.iter().find(|a| !a.starts_with("arn:")) {
                    return Err(at(&format!("resource {bad:?} is not an ARN")));
                }
            }
            (None, Some(principal)) => {
                let aws = principal
                    .get("AWS")
                    .and_then(strings)
                    .ok_or_else(|| at("Principal must be {\"AWS\": ARN or [ARN, …]}"))?;
                if let Some(bad) = aws.iter().find(|a| !a.starts_with("arn:")) {
                    return Err(at(&format!("principal {bad:?} is not an ARN")));
                }
            }
            _ => {
                return Err(at(
                    "exactly one of Resource (permission) or Principal (trust) is needed",
                ))
            }
        }
        if let Some(condition) = object.get("Condition") {
            let operators = condition
                .as_object()
                .ok_or_else(|| at("Condition must be an object"))?;
            for (operator, keys) in operators {
                let keys = keys
                    .as_object()
                    .ok_or_else(|| at(&format!("condition {operator} must map keys to values")))?;
                if keys.values().any(|v| strings(v).is_none()) {
                    return Err(at(&format!("condition {operator} values must be strings")));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn isolated_partitions_are_named() {
        assert_eq!(partition("us-iso-east-1"), "aws-iso");
        assert_eq!(partition("us-isob-east-1"), "aws-iso-b");
        assert_eq!(partition("cn-north-1"), "aws-cn");
        assert_eq!(partition("us-gov-west-1"), "aws-us-gov");
        assert_eq!(partition("eu-west-1"), "aws");
    }

    #[test]
    fn a_source_role_must_match_the_prefix_path_included() {
        let prefix = "s3-importer-";
        assert_eq!(
            validate_source_role_arn("arn:aws:iam::123456789012:role/s3-importer-x", prefix)
                .unwrap(),
            "s3-importer-x"
        );
        for bad in [
            "arn:aws:iam::123456789012:role/team/s3-importer-x",
            "arn:aws:iam::123456789012:role/other-x",
        ] {
            let err = validate_source_role_arn(bad, prefix).unwrap_err();
            assert!(err.to_string().contains("role/s3-importer-*"), "{err}");
        }
        // A prefix with a path matches roles on that path.
        assert!(
            validate_source_role_arn("arn:aws:iam::123456789012:role/team/s3i-x", "team/s3i-")
                .is_ok()
        );
    }

    use super::*;

    #[test]
    fn account_ids() {
        assert!(validate_account_id("123456789012").is_ok());
        for bad in [
            "12345678901",
            "1234567890123",
            "12345678901a",
            "",
            "-23456789012",
        ] {
            assert!(validate_account_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn regions() {
        for good in [
            "us-east-1",
            "eu-central-2",
            "ap-southeast-4",
            "us-gov-west-1",
            "cn-north-1",
            "il-central-1",
        ] {
            assert!(validate_region(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "us-east",
            "US-EAST-1",
            "useast1",
            "us-east-1a",
            "u-east-1",
            "us--1",
            "us-east-123",
        ] {
            assert!(validate_region(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bucket_names() {
        for good in ["abc", "my-bucket", "my.bucket.2024", "a1b", &"a".repeat(63)] {
            assert!(validate_bucket_name(good).is_ok(), "{good}");
        }
        for bad in [
            "ab",
            &"a".repeat(64),
            "My-Bucket",
            "my_bucket",
            "-bucket",
            "bucket-",
            "my..bucket",
            "192.168.5.4",
            "xn--bucket",
            "sthree-bucket",
            "bucket-s3alias",
            "bucket--ol-s3",
            "bucket.mrap",
            "s3://bucket",
        ] {
            let err = validate_bucket_name(bad).expect_err(bad);
            assert!(
                err.to_string().contains("not a valid S3 bucket name"),
                "{err}"
            );
        }
    }

    #[test]
    fn folders() {
        assert_eq!(normalize_folder(None).unwrap(), None);
        assert_eq!(normalize_folder(Some("/")).unwrap(), None);
        assert_eq!(
            normalize_folder(Some("/in/")).unwrap().as_deref(),
            Some("in/")
        );
        // Without the trailing slash, `exports/orders*` would also match `exports/orders-private/…`.
        assert_eq!(
            normalize_folder(Some("exports/orders")).unwrap().as_deref(),
            Some("exports/orders/")
        );
        assert!(normalize_folder(Some("in/*")).is_err());
        assert!(normalize_folder(Some("in\n")).is_err());
        assert!(normalize_folder(Some(&"a".repeat(1025))).is_err());
    }

    #[test]
    fn names_and_roles() {
        assert!(validate_connector_name("orders-2024.v1_a").is_ok());
        for bad in ["", "-orders", "or ders", "orders/x", &"a".repeat(65)] {
            assert!(validate_connector_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            role_name("s3-importer-", "orders").unwrap(),
            "s3-importer-orders"
        );
        assert!(role_name("s3-importer-", &"a".repeat(53)).is_err());
        assert_eq!(
            role_arn("eu-west-1", "123456789012", "s3-importer-orders"),
            "arn:aws:iam::123456789012:role/s3-importer-orders"
        );
        assert_eq!(
            role_arn("cn-north-1", "123456789012", "r"),
            "arn:aws-cn:iam::123456789012:role/r"
        );
        assert_eq!(
            validate_role_arn("arn:aws:iam::123456789012:role/path/s3-importer-x").unwrap(),
            "s3-importer-x"
        );
        for bad in [
            "s3-importer-x",
            "arn:aws:iam::12:role/x",
            "arn:aws:iam::123456789012:user/x",
        ] {
            assert!(validate_role_arn(bad).is_err(), "{bad}");
        }
        assert!(validate_kms_key_arn("arn:aws:kms:eu-west-1:123456789012:key/1234abcd").is_ok());
        assert!(validate_kms_key_arn("arn:aws:kms:eu-west-1:123456789012:alias/x").is_err());
    }

    #[test]
    fn permission_policy_with_folder_and_kms() {
        let policy = permission_policy(&PermissionScope {
            bucket: "acme-exports",
            region: "eu-west-1",
            folder: Some("orders/"),
            kms_key_arn: Some("arn:aws:kms:eu-west-1:111122223333:key/k-1"),
            notifications: false,
            versions: false,
        });
        let expected = json!({
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ListTheFolder",
                    "Effect": "Allow",
                    "Action": "s3:ListBucket",
                    "Resource": "arn:aws:s3:::acme-exports",
                    "Condition": { "StringLike": { "s3:prefix": ["orders/*"] } }
                },
                {
                    "Sid": "ReadTheFiles",
                    "Effect": "Allow",
                    "Action": "s3:GetObject",
                    "Resource": "arn:aws:s3:::acme-exports/orders/*"
                },
                {
                    "Sid": "DecryptTheFiles",
                    "Effect": "Allow",
                    "Action": "kms:Decrypt",
                    "Resource": "arn:aws:kms:eu-west-1:111122223333:key/k-1",
                    "Condition": { "StringEquals": { "kms:ViaService": "s3.eu-west-1.amazonaws.com" } }
                }
            ]
        });
        assert_eq!(policy, expected);
        check_policy_document(&policy).unwrap();
    }

    #[test]
    fn an_events_connector_may_read_the_bucket_notification_configuration() {
        let scope = |notifications| PermissionScope {
            bucket: "acme-exports",
            region: "us-east-1",
            folder: Some("orders/"),
            kms_key_arn: None,
            notifications,
            versions: false,
        };
        let statement = json!({
            "Sid": "CheckTheNotifications",
            "Effect": "Allow",
            "Action": "s3:GetBucketNotification",
            "Resource": "arn:aws:s3:::acme-exports",
        });
        let with = permission_policy(&scope(true));
        assert!(
            with["Statement"]
                .as_array()
                .is_some_and(|s| s.contains(&statement)),
            "{with}"
        );
        assert_eq!(check_policy_document(&with), Ok(()));
        let without = permission_policy(&scope(false));
        assert!(!without["Statement"]
            .as_array()
            .is_some_and(|s| s.contains(&statement)));
    }

    #[test]
    fn a_connector_reading_versions_may_list_them_in_its_folder_and_read_each() {
        let policy = permission_policy(&PermissionScope {
            bucket: "acme-exports",
            region: "us-east-1",
            folder: Some("orders/"),
            kms_key_arn: None,
            notifications: false,
            versions: true,
        });
        let statements = policy["Statement"].as_array().cloned().unwrap_or_default();
        assert!(statements.contains(&json!({
            "Sid": "ListTheVersions",
            "Effect": "Allow",
            "Action": "s3:ListBucketVersions",
            "Resource": "arn:aws:s3:::acme-exports",
            "Condition": { "StringLike": { "s3:prefix": ["orders/*"] } }
        })));
        assert!(statements.contains(&json!({
            "Sid": "ReadTheFiles",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:GetObjectVersion"],
            "Resource": "arn:aws:s3:::acme-exports/orders/*"
        })));
        assert_eq!(check_policy_document(&policy), Ok(()));
    }

    #[test]
    fn permission_policy_without_folder_or_kms() {
        let policy = permission_policy(&PermissionScope {
            bucket: "acme-exports",
            region: "us-east-1",
            folder: None,
            kms_key_arn: None,
            notifications: false,
            versions: false,
        });
        let expected = json!({
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "ListTheFolder",
                    "Effect": "Allow",
                    "Action": "s3:ListBucket",
                    "Resource": "arn:aws:s3:::acme-exports"
                },
                {
                    "Sid": "ReadTheFiles",
                    "Effect": "Allow",
                    "Action": "s3:GetObject",
                    "Resource": "arn:aws:s3:::acme-exports/*"
                }
            ]
        });
        assert_eq!(policy, expected);
        check_policy_document(&policy).unwrap();
    }

    #[test]
    fn trust_policy_names_the_principals_and_the_external_id() {
        let lister = "arn:aws:iam::999988887777:role/app-ListerRole-1".to_owned();
        let worker = "arn:aws:iam::999988887777:role/app-WorkerRole-1".to_owned();
        let policy = trust_policy(&[lister.clone(), worker.clone()], "f00d");
        let expected = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "S3ImporterReadsThisAccount",
                "Effect": "Allow",
                "Principal": { "AWS": [lister, worker] },
                "Action": "sts:AssumeRole",
                "Condition": { "StringEquals": { "sts:ExternalId": "f00d" } }
            }]
        });
        assert_eq!(policy, expected);
        check_policy_document(&policy).unwrap();
        let single = trust_policy(&["arn:aws:iam::999988887777:root".to_owned()], "x");
        assert_eq!(
            single["Statement"][0]["Principal"]["AWS"],
            json!("arn:aws:iam::999988887777:root")
        );
    }

    #[test]
    fn the_checker_refuses_malformed_documents() {
        let good = permission_policy(&PermissionScope {
            bucket: "b-1",
            region: "us-east-1",
            folder: None,
            kms_key_arn: None,
            notifications: false,
            versions: false,
        });
        let mut bad = good.clone();
        bad["Version"] = json!("2008-10-17");
        assert!(check_policy_document(&bad).is_err());
        let mut bad = good.clone();
        bad["Statement"][0]["Action"] = json!("ListBucket");
        assert!(check_policy_document(&bad).is_err());
        let mut bad = good.clone();
        bad["Statement"][1]["Resource"] = json!("acme/*");
        assert!(check_policy_document(&bad).is_err());
        let mut bad = good;
        bad["Statement"] = json!([]);
        assert!(check_policy_document(&bad).is_err());
    }
}
