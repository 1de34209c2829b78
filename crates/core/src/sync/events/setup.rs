//! What a user pastes to send a connector's S3 events to the deployment: the bucket notification configuration
//! (S3 → SQS) and, as the alternative, the EventBridge rule. Printed by `connector events NAME`.

use serde_json::{json, Value};

/// The notification configuration's id for a connector.
pub fn notification_id(connector_name: &str) -> String {
    format!("s3-importer-{connector_name}")
}

/// A key-prefix filter value as S3 wants it in a notification configuration: a space as `+`, other special
/// characters percent-encoded (S3's "safe characters" and `/` stay as they are).
pub fn encode_prefix_filter(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len());
    for b in prefix.bytes() {
        match b {
            b' ' => out.push('+'),
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'/'
            | b'!'
            | b'-'
            | b'_'
            | b'.'
            | b'*'
            | b'\''
            | b'('
            | b')' => out.push(b as char),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// The bucket notification configuration: `s3:ObjectCreated:*` under the folder, to the notification queue.
/// `put-bucket-notification-configuration` replaces the bucket's whole configuration, so a bucket that already
/// has one merges this entry into its `QueueConfigurations`.
pub fn bucket_notification(connector_name: &str, queue_arn: &str, folder: Option<&str>) -> Value {
    let mut queue = json!({
        "Id": notification_id(connector_name),
        "QueueArn": queue_arn,
        "Events": ["s3:ObjectCreated:*"],
    });
    if let Some(folder) = folder.filter(|f| !f.is_empty()) {
        queue["Filter"] = json!({
            "Key": { "FilterRules": [{ "Name": "prefix", "Value": encode_prefix_filter(folder) }] }
        });
    }
    json!({ "QueueConfigurations": [queue] })
}

/// The EventBridge alternative's event pattern: `Object Created` in the bucket, under the folder. (EventBridge
/// matches the key as written, not encoded.)
pub fn eventbridge_pattern(bucket: &str, folder: Option<&str>) -> Value {
    let mut detail = json!({ "bucket": { "name": [bucket] } });
    if let Some(folder) = folder.filter(|f| !f.is_empty()) {
        detail["object"] = json!({ "key": [{ "prefix": folder }] });
    }
    json!({
        "source": ["aws.s3"],
        "detail-type": ["Object Created"],
        "detail": detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_filter_is_encoded_as_s3_wants_it() {
        assert_eq!(encode_prefix_filter("in/2024 Q1/"), "in/2024+Q1/");
        assert_eq!(encode_prefix_filter("a+b=c/é/"), "a%2Bb%3Dc/%C3%A9/");
        assert_eq!(
            encode_prefix_filter("plain-folder_1.x/"),
            "plain-folder_1.x/"
        );
    }

    #[test]
    fn the_notification_filters_by_folder_and_names_the_queue() {
        let queue = "arn:aws:sqs:us-east-1:111122223333:s3i-notifications";
        let config = bucket_notification("orders", queue, Some("in/a b/"));
        assert_eq!(
            config,
            json!({"QueueConfigurations": [{
                "Id": "s3-importer-orders",
                "QueueArn": queue,
                "Events": ["s3:ObjectCreated:*"],
                "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "in/a+b/"}]}}
            }]})
        );
        let whole = bucket_notification("orders", queue, None);
        assert!(whole["QueueConfigurations"][0].get("Filter").is_none());
    }

    #[test]
    fn the_eventbridge_pattern_matches_the_bucket_and_folder() {
        let pattern = eventbridge_pattern("acme", Some("in/a b/"));
        assert_eq!(pattern["detail-type"], json!(["Object Created"]));
        assert_eq!(pattern["detail"]["bucket"]["name"], json!(["acme"]));
        assert_eq!(
            pattern["detail"]["object"]["key"],
            json!([{"prefix": "in/a b/"}])
        );
        assert!(eventbridge_pattern("acme", None)["detail"]
            .get("object")
            .is_none());
    }
}
