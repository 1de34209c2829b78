//! Parsing one SQS message body into S3 notifications, whichever way it came: S3 → SQS, S3 → SNS → SQS (raw
//! or wrapped delivery), or S3 → EventBridge → SQS.

use serde_json::Value;

use super::decode::{form_decode, percent_decode, KeyDecodeError};

/// How the notification reached the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// S3 → SQS, or S3 → SNS → SQS with raw message delivery (the same body).
    S3,
    /// S3 → SNS → SQS, the S3 body wrapped in an SNS notification's `Message`.
    Sns,
    /// S3 → EventBridge → SQS.
    EventBridge,
}

impl Envelope {
    /// A short name for logs and counts.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::S3 => "s3",
            Self::Sns => "sns",
            Self::EventBridge => "eventbridge",
        }
    }
}

/// What happened to the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// `ObjectCreated:*` (or EventBridge `Object Created`).
    Created,
    /// `ObjectRemoved:*` (or EventBridge `Object Deleted`): recorded, not acted on.
    Removed,
}

/// One object event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEvent {
    /// How it came.
    pub envelope: Envelope,
    /// Created or removed.
    pub kind: EventKind,
    /// The event's name (`ObjectCreated:Put`) or EventBridge reason (`PutObject`).
    pub name: String,
    /// Bucket.
    pub bucket: String,
    /// The object key, decoded.
    pub key: String,
    /// A second reading of the key to try when the first names no object: for EventBridge, whose keys are
    /// not form-encoded, the percent-decoded key when it differs.
    pub fallback_key: Option<String>,
    /// Size, when the event carries one (removals do not).
    pub size: Option<u64>,
    /// ETag with its quotes, as S3 lists it, when the event carries one.
    pub etag: Option<String>,
    /// The `VersionId` of the version created, on a versioned bucket.
    pub version_id: Option<String>,
}

/// One notification in a message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// An object event.
    Object(ObjectEvent),
    /// `s3:TestEvent`, sent when a notification configuration is saved: acknowledged and ignored.
    Test {
        /// The bucket named by the test event.
        bucket: String,
    },
    /// A well-formed message that is not an object event we act on (another EventBridge detail type, an SNS
    /// subscription confirmation, a restore or lifecycle event).
    Ignored {
        /// What it was.
        what: String,
    },
}

/// Why a body could not be read as a notification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON.
    #[error("message body is not JSON: {0}")]
    NotJson(String),
    /// JSON, but no envelope we know.
    #[error("message body is not an S3, SNS or EventBridge notification")]
    Unrecognised,
    /// A record without a field it needs.
    #[error("{envelope} notification without {field}")]
    Missing {
        /// Envelope.
        envelope: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// A key that cannot be decoded.
    #[error(transparent)]
    Key(#[from] KeyDecodeError),
}

/// Parses one SQS message body.
pub fn parse_body(body: &str) -> Result<Vec<Notice>, ParseError> {
    let value: Value =
        serde_json::from_str(body).map_err(|e| ParseError::NotJson(e.to_string()))?;
    parse_value(&value, Envelope::S3)
}

fn parse_value(value: &Value, envelope: Envelope) -> Result<Vec<Notice>, ParseError> {
    if let Some(records) = value.get("Records").and_then(Value::as_array) {
        return records.iter().map(|r| s3_record(r, envelope)).collect();
    }
    if value.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        let bucket = str_at(value, &["Bucket"]).unwrap_or_default().to_owned();
        return Ok(vec![Notice::Test { bucket }]);
    }
    if let Some(kind) = value.get("Type").and_then(Value::as_str) {
        if envelope == Envelope::S3 && value.get("TopicArn").is_some() {
            if kind != "Notification" {
                return Ok(vec![Notice::Ignored {
                    what: format!("SNS {kind}"),
                }]);
            }
            let message = str_at(value, &["Message"]).ok_or(ParseError::Missing {
                envelope: "SNS",
                field: "Message",
            })?;
            let inner: Value =
                serde_json::from_str(message).map_err(|e| ParseError::NotJson(e.to_string()))?;
            return parse_value(&inner, Envelope::Sns);
        }
    }
    if let (Some(detail_type), Some(detail)) = (
        value.get("detail-type").and_then(Value::as_str),
        value.get("detail"),
    ) {
        if value.get("source").and_then(Value::as_str) != Some("aws.s3") {
            return Ok(vec![Notice::Ignored {
                what: format!("EventBridge {detail_type} from another source"),
            }]);
        }
        return eventbridge(detail_type, detail).map(|n| vec![n]);
    }
    Err(ParseError::Unrecognised)
}

fn s3_record(record: &Value, envelope: Envelope) -> Result<Notice, ParseError> {
    let missing = |field| ParseError::Missing {
        envelope: envelope.as_str(),
        field,
    };
    let name = str_at(record, &["eventName"]).ok_or_else(|| missing("eventName"))?;
    let kind = if name.starts_with("ObjectCreated:") {
        EventKind::Created
    } else if name.starts_with("ObjectRemoved:") {
        EventKind::Removed
    } else {
        return Ok(Notice::Ignored {
            what: name.to_owned(),
        });
    };
    let bucket =
        str_at(record, &["s3", "bucket", "name"]).ok_or_else(|| missing("s3.bucket.name"))?;
    let key = str_at(record, &["s3", "object", "key"]).ok_or_else(|| missing("s3.object.key"))?;
    let object = &record["s3"]["object"];
    Ok(Notice::Object(ObjectEvent {
        envelope,
        kind,
        name: name.to_owned(),
        bucket: bucket.to_owned(),
        key: form_decode(key)?,
        fallback_key: None,
        size: object.get("size").and_then(Value::as_u64),
        etag: object.get("eTag").and_then(Value::as_str).map(quoted),
        version_id: version_id(object.get("versionId")),
    }))
}

fn eventbridge(detail_type: &str, detail: &Value) -> Result<Notice, ParseError> {
    let kind = match detail_type {
        "Object Created" => EventKind::Created,
        "Object Deleted" => EventKind::Removed,
        other => {
            return Ok(Notice::Ignored {
                what: format!("EventBridge {other}"),
            })
        }
    };
    let missing = |field| ParseError::Missing {
        envelope: "eventbridge",
        field,
    };
    let bucket =
        str_at(detail, &["bucket", "name"]).ok_or_else(|| missing("detail.bucket.name"))?;
    let key = str_at(detail, &["object", "key"]).ok_or_else(|| missing("detail.object.key"))?;
    let object = &detail["object"];
    // EventBridge keys are not form-encoded: the key is taken as it is, and its percent-decoded reading
    // (when it differs and decodes) is the fallback, so a key escaped on the way still resolves.
    let fallback_key = percent_decode(key).ok().filter(|k| k != key);
    Ok(Notice::Object(ObjectEvent {
        envelope: Envelope::EventBridge,
        kind,
        name: str_at(detail, &["reason"])
            .unwrap_or(detail_type)
            .to_owned(),
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        fallback_key,
        size: object.get("size").and_then(Value::as_u64),
        // AWS writes `etag`; some emulators `eTag`.
        etag: object
            .get("etag")
            .or_else(|| object.get("eTag"))
            .and_then(Value::as_str)
            .map(quoted),
        version_id: version_id(object.get("version-id")),
    }))
}

/// An event's version id; S3 writes none, or an empty one, for a bucket without versioning.
fn version_id(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |v, p| v.get(*p))
        .and_then(Value::as_str)
}

/// Events carry the ETag bare; listings and HeadObject quote it. The ledger's file id hashes the quoted form.
fn quoted(etag: &str) -> String {
    if etag.starts_with('"') {
        etag.to_owned()
    } else {
        format!("\"{etag}\"")
    }
}
