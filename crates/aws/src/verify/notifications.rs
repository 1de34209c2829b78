//! The `notifications` check of a connector in `events` mode: the bucket's notification configuration
//! (`GetBucketNotificationConfiguration`, as the connector's role) sends `s3:ObjectCreated:*` for the
//! connector's folder to the deployment's notification queue, or sends the bucket's events to EventBridge.

use aws_sdk_s3::operation::get_bucket_notification_configuration::GetBucketNotificationConfigurationOutput;
use aws_sdk_s3::types::FilterRuleName;
use s3_importer_core::sync::Source;

use super::{Check, Doctor};
use crate::error::AwsCallError;

/// The check's name.
pub const CHECK: &str = "notifications";

/// One queue configuration, reduced to what the check judges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRule {
    /// The destination queue ARN.
    pub queue_arn: String,
    /// Event names (`s3:ObjectCreated:*`, `s3:ObjectCreated:Put`, …).
    pub events: Vec<String>,
    /// The key prefix filter, if any.
    pub prefix: Option<String>,
}

impl Doctor {
    /// Checks that `source`'s bucket notifies `queue_arn` (the deployment's notification queue) of objects
    /// created in its folder. `queue_arn` is `None` when the deployment has no notification queue.
    pub async fn verify_notifications(&self, source: &Source, queue_arn: Option<&str>) -> Check {
        let Some(queue_arn) = queue_arn else {
            return Check::fail(
                CHECK,
                "no_notification_queue",
                "the deployment has no notification queue",
                "deploy this version of the template (it creates NotificationQueue) and pass its URL \
                 (S3I_NOTIFICATION_QUEUE_URL, or --stack)",
            );
        };
        let mut credentials = None;
        if let Some(role_arn) = &source.role_arn {
            match self
                .assume(role_arn, source.external_id.as_deref(), &source.bucket)
                .await
            {
                Ok(c) => credentials = Some(c),
                Err(err) => {
                    return Check::skipped(CHECK, format!("the role cannot be assumed: {err}"));
                }
            }
        }
        let client = self.s3_client(source, credentials);
        let result = client
            .get_bucket_notification_configuration()
            .bucket(&source.bucket)
            .expected_bucket_owner(&source.account_id)
            .send()
            .await;
        match result {
            Ok(out) => judge(
                &rules(&out),
                out.event_bridge_configuration().is_some(),
                queue_arn,
                source,
            ),
            Err(e) => {
                let err = AwsCallError::from_sdk(e);
                Check::fail(
                    CHECK,
                    "cannot_read_notifications",
                    format!(
                        "GetBucketNotificationConfiguration on {} failed: {err}",
                        source.bucket
                    ),
                    "grant s3:GetBucketNotification on the bucket to the connector's role \
                     (`s3-importer connector policy NAME` prints the policy)",
                )
            }
        }
    }
}

/// The ARN of the queue at `url` (`https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`, or an emulator's
/// `http://HOST/ACCOUNT/NAME`, whose region is `default_region`).
pub fn queue_arn_from_url(url: &str, default_region: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let mut parts = rest.split('/');
    let host = parts.next()?;
    let account = parts.next().filter(|a| !a.is_empty())?;
    let name = parts.next().filter(|n| !n.is_empty())?;
    let region = host
        .strip_prefix("sqs.")
        .and_then(|h| h.split('.').next())
        .unwrap_or(default_region);
    let partition = if host.ends_with(".amazonaws.com.cn") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    };
    Some(format!("arn:{partition}:sqs:{region}:{account}:{name}"))
}

/// The queue configurations of an answer.
pub fn rules(out: &GetBucketNotificationConfigurationOutput) -> Vec<QueueRule> {
    out.queue_configurations()
        .iter()
        .map(|q| QueueRule {
            queue_arn: q.queue_arn().to_owned(),
            events: q.events().iter().map(|e| e.as_str().to_owned()).collect(),
            prefix: q
                .filter()
                .and_then(|f| f.key())
                .map(|k| k.filter_rules())
                .unwrap_or_default()
                .iter()
                // `prefix` as S3 writes it; some emulators write `Prefix`.
                .find(|r| {
                    r.name().is_some_and(|n| {
                        n.as_str()
                            .eq_ignore_ascii_case(FilterRuleName::Prefix.as_str())
                    })
                })
                .and_then(|r| r.value())
                .map(str::to_owned),
        })
        .collect()
}

/// Passes when a queue rule sends created objects of the folder to `queue_arn`; with no such rule, passes
/// (saying what to check) when the bucket sends its events to EventBridge.
pub fn judge(rules: &[QueueRule], eventbridge: bool, queue_arn: &str, source: &Source) -> Check {
    let folder = source.prefix.as_deref().unwrap_or("");
    let covers = |r: &QueueRule| {
        r.queue_arn == queue_arn
            && r.events.iter().any(|e| e == "s3:ObjectCreated:*")
            && r.prefix.as_deref().is_none_or(|p| folder.starts_with(p))
    };
    if let Some(rule) = rules.iter().find(|r| covers(r)) {
        return Check::pass(
            CHECK,
            format!(
                "s3:ObjectCreated:* under {:?} goes to {queue_arn}",
                rule.prefix.as_deref().unwrap_or("")
            ),
        );
    }
    if eventbridge {
        return Check::pass(
            CHECK,
            format!(
                "the bucket sends its events to EventBridge: an \"Object Created\" rule for {:?} must target \
                 {queue_arn} (`s3-importer connector events NAME` prints it)",
                folder
            ),
        );
    }
    let found = if rules.is_empty() {
        "no queue notification".to_owned()
    } else {
        format!(
            "queue notifications to {}",
            rules
                .iter()
                .map(|r| format!(
                    "{} ({}) under {:?}",
                    r.queue_arn,
                    r.events.join(","),
                    r.prefix.as_deref().unwrap_or("")
                ))
                .collect::<Vec<_>>()
                .join("; ")
        )
    };
    Check::fail(
        CHECK,
        "not_notified",
        format!("bucket {} has {found}, none sending s3:ObjectCreated:* under {folder:?} to {queue_arn}", source.bucket),
        "add the notification `s3-importer connector events NAME` prints (put-bucket-notification-configuration \
         replaces the whole configuration: merge it with the existing one)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::CheckStatus;

    const QUEUE: &str = "arn:aws:sqs:us-east-1:111122223333:s3i-notifications";

    fn source(prefix: &str) -> Source {
        Source {
            account_id: "111122223333".into(),
            bucket: "src".into(),
            region: "us-east-1".into(),
            prefix: Some(prefix.into()),
            role_arn: None,
            external_id: None,
            versions: false,
        }
    }

    fn rule(queue: &str, event: &str, prefix: Option<&str>) -> QueueRule {
        QueueRule {
            queue_arn: queue.into(),
            events: vec![event.into()],
            prefix: prefix.map(str::to_owned),
        }
    }

    #[test]
    fn a_rule_for_the_queue_and_a_covering_prefix_passes() {
        for prefix in [Some("in/"), Some("in"), Some(""), None] {
            let check = judge(
                &[rule(QUEUE, "s3:ObjectCreated:*", prefix)],
                false,
                QUEUE,
                &source("in/"),
            );
            assert_eq!(check.status, CheckStatus::Pass, "{prefix:?}: {check:?}");
        }
    }

    #[test]
    fn another_queue_another_folder_or_only_puts_fail() {
        for rules in [
            vec![],
            vec![rule(
                "arn:aws:sqs:us-east-1:111122223333:other",
                "s3:ObjectCreated:*",
                None,
            )],
            vec![rule(QUEUE, "s3:ObjectCreated:*", Some("out/"))],
            vec![rule(QUEUE, "s3:ObjectRemoved:*", None)],
        ] {
            let check = judge(&rules, false, QUEUE, &source("in/"));
            assert_eq!(check.status, CheckStatus::Fail, "{rules:?}");
            assert_eq!(check.cause.as_deref(), Some("not_notified"));
        }
    }

    #[test]
    fn queue_arns_come_from_urls() {
        assert_eq!(
            queue_arn_from_url(
                "https://sqs.eu-west-1.amazonaws.com/111122223333/n",
                "us-east-1"
            )
            .as_deref(),
            Some("arn:aws:sqs:eu-west-1:111122223333:n")
        );
        assert_eq!(
            queue_arn_from_url("http://127.0.0.1:5000/123456789012/n", "us-east-1").as_deref(),
            Some("arn:aws:sqs:us-east-1:123456789012:n")
        );
        assert_eq!(
            queue_arn_from_url("http://127.0.0.1:5000/", "us-east-1"),
            None
        );
    }

    #[test]
    fn eventbridge_on_passes_and_says_what_to_check() {
        let check = judge(&[], true, QUEUE, &source("in/"));
        assert_eq!(check.status, CheckStatus::Pass);
        assert!(check.detail.contains("EventBridge"), "{}", check.detail);
    }
}
