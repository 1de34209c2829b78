//! The event path on the in-memory adapters: each envelope, keys as S3 encodes them, routing, the skip rules,
//! duplicates, and the one claim shared with the lister.

use std::sync::Arc;

use super::samples::{eventbridge, s3_direct, sns_wrapped, test_event, versioned};
use super::*;
use crate::sync::lister::{self, ListerDeps, ListerSettings, SyncOutcome};
use crate::sync::memory::{MemoryObject, MemoryObjectSource, MemoryQueue, MemoryStateStore};
use crate::sync::ports::{ConnectorStore, FileLedger, TemplateStore};
use crate::sync::{
    Clock, Connector, ConnectorStatus, DestinationConfig, Discovery, FileStatus, FixedClock, Source,
};
use crate::template::Template;

const ACCOUNT: &str = "111122223333";
const BUCKET: &str = "landing";
const TEMPLATE: &str = include_str!("../contract/items.toml");
const BODY: &[u8] = b"id,qty\na,1\n";

// -------------------------------------------------------------------------------------------------------------
// Parsing
// -------------------------------------------------------------------------------------------------------------

fn one_object(body: &str) -> ObjectEvent {
    match parse_body(body).as_deref() {
        Ok([Notice::Object(event)]) => event.clone(),
        other => panic!("expected one object event, got {other:?}"),
    }
}

#[test]
fn s3_direct_keys_are_form_decoded_and_etags_quoted() {
    let event = one_object(&s3_direct(
        "ObjectCreated:Put",
        BUCKET,
        "in/red+flower+%2B1+100%25+caf%C3%A9.csv",
        42,
        "0123456789abcdef0123456789abcdef",
    ));
    assert_eq!(event.envelope, Envelope::S3);
    assert_eq!(event.kind, EventKind::Created);
    assert_eq!(event.bucket, BUCKET);
    assert_eq!(event.key, "in/red flower +1 100% café.csv");
    assert_eq!(event.fallback_key, None);
    assert_eq!(event.size, Some(42));
    assert_eq!(
        event.etag.as_deref(),
        Some("\"0123456789abcdef0123456789abcdef\"")
    );
}

#[test]
fn sns_wrapped_bodies_are_unwrapped_and_raw_delivery_reads_as_s3() {
    let inner = s3_direct(
        "ObjectCreated:CompleteMultipartUpload",
        BUCKET,
        "in/a+b.csv",
        7,
        "e-2",
    );
    let wrapped = one_object(&sns_wrapped(&inner));
    assert_eq!(wrapped.envelope, Envelope::Sns);
    assert_eq!(wrapped.key, "in/a b.csv");
    assert_eq!(wrapped.name, "ObjectCreated:CompleteMultipartUpload");
    let raw = one_object(&inner);
    assert_eq!(raw.envelope, Envelope::S3);
    assert_eq!(raw.key, wrapped.key);
}

#[test]
fn eventbridge_keys_are_taken_as_written_with_a_percent_decoded_fallback() {
    let event = one_object(&eventbridge(
        "Object Created",
        BUCKET,
        "in/a+b c.csv",
        5,
        "b19",
    ));
    assert_eq!(event.envelope, Envelope::EventBridge);
    assert_eq!(
        event.key, "in/a+b c.csv",
        "a + in an EventBridge key is a +"
    );
    assert_eq!(event.fallback_key, None);
    assert_eq!(event.etag.as_deref(), Some("\"b19\""));
    assert_eq!(event.name, "PutObject");
    let escaped = one_object(&eventbridge(
        "Object Created",
        BUCKET,
        "in/caf%C3%A9.csv",
        5,
        "b19",
    ));
    assert_eq!(escaped.key, "in/caf%C3%A9.csv");
    assert_eq!(escaped.fallback_key.as_deref(), Some("in/café.csv"));
}

#[test]
fn removals_test_events_and_other_notifications_are_told_apart() {
    let removed = one_object(&s3_direct(
        "ObjectRemoved:Delete",
        BUCKET,
        "in/x.csv",
        0,
        "e",
    ));
    assert_eq!(removed.kind, EventKind::Removed);
    let deleted = one_object(&eventbridge("Object Deleted", BUCKET, "in/x.csv", 0, "e"));
    assert_eq!(deleted.kind, EventKind::Removed);
    for body in [test_event(BUCKET), sns_wrapped(&test_event(BUCKET))] {
        assert_eq!(
            parse_body(&body),
            Ok(vec![Notice::Test {
                bucket: BUCKET.into()
            }])
        );
    }
    let restore = s3_direct("ObjectRestore:Completed", BUCKET, "in/x.csv", 1, "e");
    assert!(matches!(
        parse_body(&restore).as_deref(),
        Ok([Notice::Ignored { .. }])
    ));
    let tagged = eventbridge("Object Tags Added", BUCKET, "in/x.csv", 1, "e");
    assert!(matches!(
        parse_body(&tagged).as_deref(),
        Ok([Notice::Ignored { .. }])
    ));
}

#[test]
fn malformed_bodies_are_errors_not_panics() {
    assert!(matches!(
        parse_body("not json"),
        Err(ParseError::NotJson(_))
    ));
    assert_eq!(parse_body("{\"hello\": 1}"), Err(ParseError::Unrecognised));
    assert_eq!(parse_body("[1,2]"), Err(ParseError::Unrecognised));
    let no_key = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{}}}]}"#;
    assert!(matches!(
        parse_body(no_key),
        Err(ParseError::Missing {
            field: "s3.object.key",
            ..
        })
    ));
    let bad_escape = s3_direct("ObjectCreated:Put", BUCKET, "in/100%.csv", 1, "e");
    assert!(matches!(parse_body(&bad_escape), Err(ParseError::Key(_))));
    let bad_sns =
        r#"{"Type":"Notification","TopicArn":"arn:aws:sns:us-east-1:1:t","Message":"{oops"}"#;
    assert!(matches!(parse_body(bad_sns), Err(ParseError::NotJson(_))));
}

// -------------------------------------------------------------------------------------------------------------
// Consuming
// -------------------------------------------------------------------------------------------------------------

struct Harness {
    state: Arc<MemoryStateStore>,
    s3: Arc<MemoryObjectSource>,
    queue: Arc<MemoryQueue>,
    deps: ListerDeps,
    clock: Arc<FixedClock>,
}

impl Harness {
    async fn new() -> Self {
        let state = Arc::new(MemoryStateStore::new());
        let s3 = Arc::new(MemoryObjectSource::new());
        s3.create_bucket(BUCKET, ACCOUNT);
        let queue = Arc::new(MemoryQueue::new());
        let clock = Arc::new(FixedClock::new());
        let parsed = Template::from_toml(TEMPLATE).expect("the test template parses");
        state
            .put_template(&parsed.name, TEMPLATE, &parsed, clock.now())
            .await
            .expect("template stored");
        let as_clock: Arc<dyn Clock> = clock.clone();
        let deps = ListerDeps::new(state.clone(), s3.clone(), queue.clone(), as_clock);
        Self {
            state,
            s3,
            queue,
            deps,
            clock,
        }
    }

    async fn connector(&self, id: &str, prefix: &str, discovery: Discovery) -> Connector {
        let now = self.clock.now();
        let connector = Connector {
            id: id.into(),
            name: format!("{id}-name"),
            status: ConnectorStatus::Active,
            source: Source {
                account_id: ACCOUNT.into(),
                bucket: BUCKET.into(),
                region: "us-east-1".into(),
                prefix: Some(prefix.into()),
                role_arn: None,
                external_id: None,
                versions: false,
            },
            template_id: "items".into(),
            template_version: None,
            destination: DestinationConfig::Dynamodb {
                table: "records".into(),
            },
            created_at: now,
            updated_at: now,
            watermark: None,
            last_sync: None,
            discovery,
            reconcile: None,
        };
        self.state
            .create_connector(&connector)
            .await
            .expect("connector stored");
        connector
    }

    /// Puts an object; returns its bare ETag (as events carry it).
    fn put(&self, key: &str) -> String {
        self.s3
            .put(BUCKET, key, BODY, self.clock.now())
            .trim_matches('"')
            .to_owned()
    }

    async fn handle(&self, bodies: &[String]) -> BatchOutcome {
        let ids: Vec<String> = (0..bodies.len()).map(|i| format!("m-{i}")).collect();
        let messages: Vec<InboundMessage<'_>> = ids
            .iter()
            .zip(bodies)
            .map(|(id, body)| InboundMessage { id, body })
            .collect();
        handle_batch(&self.deps, &EventSettings::default(), &messages).await
    }

    async fn entries(&self, connector_id: &str) -> Vec<crate::sync::LedgerEntry> {
        self.state
            .list_files(connector_id, None)
            .await
            .expect("ledger readable")
    }
}

#[tokio::test]
async fn each_envelope_claims_and_sends_once_without_listing() {
    let h = Harness::new().await;
    h.connector("c-ev", "in/", Discovery::Events).await;
    let keys = [
        "in/red flower.csv",
        "in/a+b.csv",
        "in/100%.csv",
        "in/café 日本.csv",
    ];
    let etags: Vec<String> = keys.iter().map(|k| h.put(k)).collect();
    let bodies = vec![
        s3_direct(
            "ObjectCreated:Put",
            BUCKET,
            "in/red+flower.csv",
            11,
            &etags[0],
        ),
        sns_wrapped(&s3_direct(
            "ObjectCreated:Put",
            BUCKET,
            "in/a%2Bb.csv",
            11,
            &etags[1],
        )),
        s3_direct("ObjectCreated:Copy", BUCKET, "in/100%25.csv", 11, &etags[2]),
        eventbridge("Object Created", BUCKET, keys[3], 11, &etags[3]),
        test_event(BUCKET),
    ];
    let outcome = h.handle(&bodies).await;
    assert_eq!(outcome.retry, Vec::<String>::new());
    assert_eq!(outcome.report.new, 4, "{:?}", outcome.report);
    assert_eq!(outcome.report.enqueued, 4);
    assert_eq!(outcome.report.test_events, 1);
    let mut sent: Vec<String> = h.queue.sent().into_iter().map(|m| m.version.key).collect();
    sent.sort();
    let mut expected: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
    expected.sort();
    assert_eq!(sent, expected);
    assert_eq!(h.s3.list_calls(), 0, "events mode never lists");
    let entries = h.entries("c-ev").await;
    assert_eq!(entries.len(), 4);
    assert!(entries.iter().all(|e| e.status == FileStatus::Queued));
}

#[tokio::test]
async fn duplicated_events_in_every_envelope_claim_once() {
    let h = Harness::new().await;
    h.connector("c-ev", "in/", Discovery::Events).await;
    let etag = h.put("in/dup file.csv");
    let direct = s3_direct("ObjectCreated:Put", BUCKET, "in/dup+file.csv", 11, &etag);
    let bodies = vec![
        direct.clone(),
        direct.clone(),
        sns_wrapped(&direct),
        eventbridge("Object Created", BUCKET, "in/dup file.csv", 11, &etag),
    ];
    let first = h.handle(&bodies).await;
    let again = h.handle(&bodies).await;
    assert_eq!(first.report.new, 1);
    assert_eq!(first.report.already_known, 3);
    assert_eq!(again.report.new, 0);
    assert_eq!(again.report.already_known, 4);
    assert_eq!(h.queue.sent().len(), 1);
    assert_eq!(h.entries("c-ev").await.len(), 1);
}

#[tokio::test]
async fn events_are_routed_by_bucket_and_folder_to_event_connectors_only() {
    let h = Harness::new().await;
    h.connector("c-in", "in/", Discovery::Events).await;
    h.connector("c-in-eu", "in/eu/", Discovery::Events).await;
    h.connector("c-poll", "", Discovery::Poll).await;
    let eu = h.put("in/eu/x.csv");
    let out = h.put("out/y.csv");
    let other = "0123";
    let bodies = vec![
        s3_direct("ObjectCreated:Put", BUCKET, "in/eu/x.csv", 11, &eu),
        s3_direct("ObjectCreated:Put", BUCKET, "out/y.csv", 11, &out),
        s3_direct("ObjectCreated:Put", "another-bucket", "in/z.csv", 11, other),
    ];
    let outcome = h.handle(&bodies).await;
    assert_eq!(outcome.report.outside_folder, 1);
    assert_eq!(outcome.report.unrouted, 1);
    assert_eq!(
        outcome.report.new, 2,
        "both connectors whose folder holds the key"
    );
    assert_eq!(h.entries("c-in").await.len(), 1);
    assert_eq!(h.entries("c-in-eu").await.len(), 1);
    assert!(
        h.entries("c-poll").await.is_empty(),
        "a polling connector takes no events"
    );
}

#[tokio::test]
async fn the_skip_rules_of_listing_apply_to_events() {
    let h = Harness::new().await;
    h.connector("c-ev", "in/", Discovery::Events).await;
    let archived = h.s3.put_object(
        BUCKET,
        "in/old.csv",
        MemoryObject {
            storage_class: Some("GLACIER".into()),
            ..MemoryObject::new(BODY, h.clock.now())
        },
    );
    let unknown = h.put("in/picture.png");
    let marker = h.put("in/sub/");
    let bodies = vec![
        s3_direct(
            "ObjectCreated:Put",
            BUCKET,
            "in/old.csv",
            11,
            archived.trim_matches('"'),
        ),
        s3_direct("ObjectCreated:Put", BUCKET, "in/picture.png", 11, &unknown),
        s3_direct("ObjectCreated:Put", BUCKET, "in/sub/", 0, &marker),
    ];
    let mut small = EventSettings::default();
    let outcome = h.handle(&bodies).await;
    assert_eq!(
        outcome.report.skipped.get("archived"),
        Some(&1),
        "{:?}",
        outcome.report
    );
    assert_eq!(outcome.report.skipped.get("unsupported_format"), Some(&1));
    assert_eq!(outcome.report.ignored, 1, "a folder marker");
    assert!(h.queue.sent().is_empty());

    small.sync.max_file_size = 4;
    let big = h.put("in/big.csv");
    let body = s3_direct("ObjectCreated:Put", BUCKET, "in/big.csv", 11, &big);
    let outcome = handle_batch(
        &h.deps,
        &small,
        &[InboundMessage {
            id: "m",
            body: &body,
        }],
    )
    .await;
    assert_eq!(
        outcome.report.skipped.get("too_large"),
        Some(&1),
        "{:?}",
        outcome.report
    );
    assert!(h.queue.sent().is_empty());
    let entries = h.entries("c-ev").await;
    assert_eq!(entries.len(), 3);
    assert!(entries.iter().all(|e| e.status == FileStatus::Skipped));
}

#[tokio::test]
async fn malformed_removed_and_stale_events_are_acknowledged_and_counted() {
    let h = Harness::new().await;
    h.connector("c-ev", "in/", Discovery::Events).await;
    let old = h.put("in/replaced.csv");
    h.s3.put(
        BUCKET,
        "in/replaced.csv",
        &b"id,qty\nb,2\n"[..],
        h.clock.now(),
    );
    let bodies = vec![
        "garbage".to_owned(),
        "{}".to_owned(),
        s3_direct("ObjectRemoved:Delete", BUCKET, "in/x.csv", 0, "e"),
        s3_direct("ObjectCreated:Put", BUCKET, "in/replaced.csv", 11, &old),
        s3_direct("ObjectCreated:Put", BUCKET, "in/deleted.csv", 11, "e"),
    ];
    let outcome = h.handle(&bodies).await;
    assert!(outcome.retry.is_empty());
    assert_eq!(outcome.report.malformed, 2);
    assert_eq!(outcome.report.removed, 1);
    assert_eq!(outcome.report.stale, 2);
    assert!(h.entries("c-ev").await.is_empty());
}

#[tokio::test]
async fn a_send_failure_hands_the_message_back_and_the_retry_sends_once() {
    let h = Harness::new().await;
    h.connector("c-ev", "in/", Discovery::Events).await;
    let etag = h.put("in/a.csv");
    let body = s3_direct("ObjectCreated:Put", BUCKET, "in/a.csv", 11, &etag);
    h.queue.fail_next_sends(1);
    let failed = h.handle(std::slice::from_ref(&body)).await;
    assert_eq!(failed.retry, vec!["m-0".to_owned()]);
    assert!(h.queue.sent().is_empty());
    // The entry is `claimed`: the retried event finds it known, and the scheduled pass (which lists nothing for
    // an events connector) sends it once it is older than `resend_claimed_after`.
    let again = h.handle(&[body]).await;
    assert_eq!(again.report.already_known, 1);
    assert!(h.queue.sent().is_empty());
    let settings = ListerSettings::default();
    h.clock
        .advance(settings.sync.resend_claimed_after + chrono::Duration::seconds(1));
    let all = lister::sync_all(&h.deps, &settings)
        .await
        .expect("sync_all");
    let [(_, SyncOutcome::Ran(run))] = all.as_slice() else {
        panic!("one pass expected: {all:?}");
    };
    assert_eq!((run.listed, run.resent), (0, 1), "{run:?}");
    assert_eq!(h.s3.list_calls(), 0);
    assert_eq!(h.queue.sent().len(), 1);
    let entries = h.entries("c-ev").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].status, FileStatus::Queued);
}

#[tokio::test]
async fn an_event_and_a_listing_share_one_claim() {
    let h = Harness::new().await;
    let connector = h.connector("c-ev", "in/", Discovery::Events).await;
    let etag = h.put("in/a.csv");
    h.handle(&[s3_direct(
        "ObjectCreated:Put",
        BUCKET,
        "in/a.csv",
        11,
        &etag,
    )])
    .await;
    // The schedule does not list an events connector; an explicit sync lists and finds the file known.
    let settings = ListerSettings::default();
    let all = lister::sync_all(&h.deps, &settings)
        .await
        .expect("sync_all");
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(h.s3.list_calls(), 0);
    let SyncOutcome::Ran(run) = lister::sync_connector(&h.deps, &settings, &connector).await else {
        panic!("the sync did not run");
    };
    assert_eq!((run.new, run.already_known), (0, 1), "{run:?}");
    assert_eq!(h.queue.sent().len(), 1);
}

// -------------------------------------------------------------------------------------------------------------
// Versioned buckets
// -------------------------------------------------------------------------------------------------------------

#[test]
fn version_ids_are_read_from_each_envelope() {
    let direct = s3_direct("ObjectCreated:Put", BUCKET, "in/a.csv", 1, "e");
    let cases = [
        (versioned(&direct, "v-s3"), Some("v-s3")),
        (sns_wrapped(&versioned(&direct, "v-sns")), Some("v-sns")),
        (
            versioned(
                &eventbridge("Object Created", BUCKET, "in/a.csv", 1, "e"),
                "v-eb",
            ),
            Some("v-eb"),
        ),
        // A bucket without versioning: no id, or an empty one.
        (direct.clone(), None),
        (versioned(&direct, ""), None),
    ];
    for (body, want) in cases {
        assert_eq!(one_object(&body).version_id.as_deref(), want, "{body}");
    }
}

/// Two versions of one key written before either event is handled: a connector reading versions claims each
/// event's own version (looked up by its id), once; a connector that does not finds the first one replaced.
#[tokio::test]
async fn versioned_connectors_claim_each_events_version_once() {
    let mut claimed = Vec::new();
    for versions in [true, false] {
        let h = Harness::new().await;
        h.s3.enable_versioning(BUCKET);
        let mut c = h.connector("c-v", "in/", Discovery::Events).await;
        c.source.versions = versions;
        h.state.update_connector(&c).await.expect("connector saved");
        let mut written = Vec::new();
        for body in ["id,qty\na,1\n", "id,qty\na,2\n"] {
            let etag = h.s3.put(BUCKET, "in/k.csv", body, h.clock.now());
            let version_id =
                h.s3.get(BUCKET, "in/k.csv")
                    .and_then(|o| o.version_id)
                    .expect("a version id");
            written.push((etag, version_id));
        }
        let event = |(etag, version_id): &(String, String)| {
            versioned(
                &s3_direct(
                    "ObjectCreated:Put",
                    BUCKET,
                    "in/k.csv",
                    11,
                    etag.trim_matches('"'),
                ),
                version_id,
            )
        };
        let first = event(&written[0]);
        let bodies = vec![first.clone(), event(&written[1]), first];
        let outcome = h.handle(&bodies).await;
        assert!(outcome.retry.is_empty(), "{outcome:?}");
        let report = &outcome.report;
        let mut entries: Vec<(String, Option<String>, FileStatus)> = h
            .entries("c-v")
            .await
            .into_iter()
            .map(|e| (e.version.etag, e.version.version_id, e.status))
            .collect();
        entries.sort();
        if versions {
            assert_eq!((report.new, report.already_known, report.stale), (2, 1, 0));
            let mut want: Vec<_> = written
                .iter()
                .map(|(etag, id)| (etag.clone(), Some(id.clone()), FileStatus::Queued))
                .collect();
            want.sort();
            assert_eq!(entries, want);
        } else {
            assert_eq!((report.new, report.stale), (1, 2), "{report:?}");
            assert_eq!(
                entries,
                vec![(written[1].0.clone(), None, FileStatus::Queued)]
            );
        }
        claimed.push(report.enqueued);
    }
    assert_eq!(claimed, vec![2, 1]);
}
