//! Real-shaped notification bodies, as each envelope delivers them to SQS (fields and nesting from the S3
//! and EventBridge documentation's examples), for the tests.

use serde_json::json;

/// S3 → SQS (and S3 → SNS → SQS with raw delivery): the body is the S3 event. `encoded_key` is the key as S3
/// writes it (form-encoded); `etag` bare, as S3 writes it.
pub fn s3_direct(
    event_name: &str,
    bucket: &str,
    encoded_key: &str,
    size: u64,
    etag: &str,
) -> String {
    json!({
        "Records": [{
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "us-east-1",
            "eventTime": "2026-12-07T05:30:00.123Z",
            "eventName": event_name,
            "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
            "requestParameters": {"sourceIPAddress": "203.0.113.7"},
            "responseElements": {
                "x-amz-request-id": "C3D13FE58DE4C810",
                "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD"
            },
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "s3-importer",
                "bucket": {
                    "name": bucket,
                    "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                    "arn": format!("arn:aws:s3:::{bucket}")
                },
                "object": {
                    "key": encoded_key,
                    "size": size,
                    "eTag": etag,
                    "sequencer": "0055AED6DCD90281E5"
                }
            }
        }]
    })
    .to_string()
}

/// S3 → SNS → SQS without raw delivery: the S3 event is a string in the SNS notification's `Message`.
pub fn sns_wrapped(inner: &str) -> String {
    json!({
        "Type": "Notification",
        "MessageId": "da41e39f-ea4d-435a-b922-c6aae3915ebe",
        "TopicArn": "arn:aws:sns:us-east-1:111122223333:s3-importer-events",
        "Subject": "Amazon S3 Notification",
        "Message": inner,
        "Timestamp": "2026-12-07T05:30:00.456Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7fUQvi2egU3N858fiTDN6bkkOxYDVrY0Ad8L10Hs3zH81mtnPk5uvvolIC1CXGu43obcgFxeL3khZl8IKvO61GWB6jI9b5+gLPoBc1Q=",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:us-east-1:111122223333:s3-importer-events:0e1a0e3c"
    })
    .to_string()
}

/// S3 → EventBridge → SQS: the EventBridge event (the rule's target takes the whole event). The key is written
/// as it is (not form-encoded).
pub fn eventbridge(detail_type: &str, bucket: &str, key: &str, size: u64, etag: &str) -> String {
    json!({
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": detail_type,
        "source": "aws.s3",
        "account": "111122223333",
        "time": "2026-12-07T05:30:00Z",
        "region": "us-east-1",
        "resources": [format!("arn:aws:s3:::{bucket}")],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": {
                "key": key,
                "size": size,
                "etag": etag,
                "sequencer": "617f08299329d189"
            },
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "111122223333",
            "source-ip-address": "203.0.113.7",
            "reason": "PutObject"
        }
    })
    .to_string()
}

/// `body` (an [`s3_direct`] or [`eventbridge`] body) for a versioned bucket: the object's version id where
/// each envelope writes it (`versionId`, EventBridge `version-id`).
pub fn versioned(body: &str, version_id: &str) -> String {
    let mut value: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    if let Some(object) = value
        .pointer_mut("/Records/0/s3/object")
        .and_then(serde_json::Value::as_object_mut)
    {
        object.insert("versionId".into(), json!(version_id));
    } else if let Some(object) = value
        .pointer_mut("/detail/object")
        .and_then(serde_json::Value::as_object_mut)
    {
        object.insert("version-id".into(), json!(version_id));
    }
    value.to_string()
}

/// The `s3:TestEvent` S3 sends when a notification configuration is saved.
pub fn test_event(bucket: &str) -> String {
    json!({
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2026-12-07T05:29:59.000Z",
        "Bucket": bucket,
        "RequestId": "5582815E1AEA5ADF",
        "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE"
    })
    .to_string()
}
