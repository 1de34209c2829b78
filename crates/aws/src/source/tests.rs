//! Request-level tests of the S3 source: what each call sends, and how answers and failures are read.

use super::*;
use aws_sdk_s3::config::http::HttpResponse;
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::primitives::SdkBody;
use aws_sdk_s3::types::{Object, ObjectStorageClass, RestoreStatus};
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use tokio::io::AsyncReadExt;

use crate::test_support::{answering, client_without_retries, s3_error_body, source};

#[tokio::test]
async fn get_object_is_pinned_to_owner_and_etag_with_an_inclusive_range(
) -> Result<(), Box<dyn std::error::Error>> {
    let rule = mock!(aws_sdk_s3::Client::get_object)
        .match_requests(|r| {
            r.bucket() == Some("src")
                && r.key() == Some("in/a.csv")
                && r.expected_bucket_owner() == Some("111122223333")
                && r.if_match() == Some("\"abc\"")
                && r.range() == Some("bytes=10-19")
        })
        .then_output(|| {
            GetObjectOutput::builder()
                .body(ByteStream::from_static(b"0123456789"))
                .content_length(10)
                .content_encoding("gzip")
                .build()
        });
    let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&rule]);
    let s3 = S3Source::with_client(client);
    let mut body = s3
        .open(
            &source(),
            "in/a.csv",
            "\"abc\"",
            None,
            Some(ByteRange {
                start: 10,
                end: Some(20),
            }),
        )
        .await?;
    let mut text = String::new();
    body.reader.read_to_string(&mut text).await?;
    assert_eq!(text, "0123456789");
    assert_eq!(body.content_length, Some(10));
    assert_eq!(body.content_encoding.as_deref(), Some("gzip"));
    assert_eq!(rule.num_calls(), 1);
    Ok(())
}

#[tokio::test]
async fn get_object_without_range_sends_no_range_header() -> Result<(), Box<dyn std::error::Error>>
{
    let rule = mock!(aws_sdk_s3::Client::get_object)
        .match_requests(|r| r.range().is_none() && r.if_match() == Some("\"e\""))
        .then_output(|| {
            GetObjectOutput::builder()
                .body(ByteStream::from_static(b"x"))
                .build()
        });
    let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&rule]);
    S3Source::with_client(client)
        .open(&source(), "k", "\"e\"", None, None)
        .await?;
    assert_eq!(rule.num_calls(), 1);
    Ok(())
}

/// The log lines (WARN and above) written while the returned guard lives, on this thread.
fn capture_warnings() -> (
    Arc<std::sync::Mutex<Vec<u8>>>,
    tracing::subscriber::DefaultGuard,
) {
    #[derive(Clone)]
    struct Shared(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let writer = Shared(log.clone());
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    (log, tracing::subscriber::set_default(subscriber))
}

/// A GetObject answer of `body` with the checksum header `crc32` (and its type).
fn with_checksum(body: &'static str, crc32: &'static str, kind: &'static str) -> HttpResponse {
    let mut response = HttpResponse::new(
        200.try_into()
            .unwrap_or_else(|_| unreachable!("200 is a status code")),
        SdkBody::from(body),
    );
    response.headers_mut().insert("x-amz-checksum-crc32", crc32);
    response.headers_mut().insert("x-amz-checksum-type", kind);
    response
}

/// Opens `in/a.csv` (ETag `etag`, `range`) against S3 answering `answer` to a GetObject whose checksum mode
/// is `mode`, and reads the body. The log's warnings come back with the result.
async fn read_with_checksum(
    etag: &'static str,
    range: Option<ByteRange>,
    mode: Option<ChecksumMode>,
    answer: fn() -> HttpResponse,
) -> (Result<String, Box<dyn std::error::Error>>, usize, String) {
    let (log, _guard) = capture_warnings();
    let rule = mock!(aws_sdk_s3::Client::get_object)
        .match_requests(move |r| r.checksum_mode() == mode.as_ref() && r.if_match() == Some(etag))
        .then_http_response(answer);
    let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&rule]);
    let read = async {
        let mut body = S3Source::with_client(client)
            .open(&source(), "in/a.csv", etag, None, range)
            .await?;
        let mut text = String::new();
        body.reader.read_to_string(&mut text).await?;
        Ok::<_, Box<dyn std::error::Error>>(text)
    };
    let result = read.await;
    let log = String::from_utf8_lossy(&log.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    (result, rule.num_calls(), log)
}

#[tokio::test]
async fn a_whole_read_of_an_object_uploaded_at_once_checks_its_checksum() {
    // CRC32 of "hello" is NhCmhg==: the body passes.
    let (read, calls, log) = read_with_checksum("\"e\"", None, Some(ChecksumMode::Enabled), || {
        with_checksum("hello", "NhCmhg==", "FULL_OBJECT")
    })
    .await;
    assert_eq!(read.ok().as_deref(), Some("hello"), "{log}");
    assert_eq!(calls, 1);
    // A body that does not match its checksum fails the read.
    let (read, _, _) = read_with_checksum("\"e\"", None, Some(ChecksumMode::Enabled), || {
        with_checksum("hellO", "NhCmhg==", "FULL_OBJECT")
    })
    .await;
    let mut err = String::new();
    let mut cause = read
        .as_ref()
        .err()
        .map(|e| e.as_ref() as &dyn std::error::Error);
    while let Some(e) = cause {
        err.push_str(&format!("{e}; "));
        cause = e.source();
    }
    assert!(
        err.contains("checksum mismatch"),
        "a corrupted body must fail the read: {err:?}"
    );
}

#[tokio::test]
async fn a_whole_read_of_an_object_uploaded_in_parts_asks_for_no_checksum_and_logs_no_warning() {
    // S3 keeps a composite checksum for it (a checksum of the parts' checksums, "-3"): nothing to check
    // the bytes against. Even if one came, the request did not ask for it, so the SDK stays quiet.
    let (read, calls, log) = read_with_checksum("\"0123abcd-3\"", None, None, || {
        with_checksum("hello", "AAAAAA==-3", "COMPOSITE")
    })
    .await;
    assert_eq!(read.ok().as_deref(), Some("hello"), "{log}");
    assert_eq!(calls, 1, "the request asked for no checksum");
    assert!(!log.contains("part-level checksum"), "{log}");
    assert!(log.is_empty(), "no warning at all: {log}");
}

#[tokio::test]
async fn a_ranged_read_asks_for_no_checksum_and_logs_no_warning() {
    // A range has no checksum of its own; one that is exactly a part gets the part's ("-N").
    let range = Some(ByteRange {
        start: 0,
        end: Some(5),
    });
    for etag in ["\"e\"", "\"0123abcd-3\""] {
        let (read, calls, log) = read_with_checksum(etag, range, None, || {
            with_checksum("hello", "AAAAAA==-1", "COMPOSITE")
        })
        .await;
        assert_eq!(read.ok().as_deref(), Some("hello"), "{etag}: {log}");
        assert_eq!(calls, 1, "{etag}: the request asked for no checksum");
        assert!(log.is_empty(), "{etag}: no warning: {log}");
    }
}

#[test]
fn multipart_etags_are_told_from_single_part_ones() {
    for (etag, parts) in [
        ("\"9b2cf535f27731c974343645a3985328\"", false),
        ("\"9b2cf535f27731c974343645a3985328-12\"", true),
        ("9b2cf535f27731c974343645a3985328-1", true),
        ("\"abc-\"", false),
        ("\"abc-x1\"", false),
        ("", false),
    ] {
        assert_eq!(uploaded_in_parts(etag), parts, "etag={etag:?}");
    }
}

#[test]
fn range_headers_are_inclusive() {
    assert_eq!(
        range_header(ByteRange {
            start: 0,
            end: Some(1)
        })
        .as_deref(),
        Some("bytes=0-0")
    );
    assert_eq!(
        range_header(ByteRange {
            start: 5,
            end: None
        })
        .as_deref(),
        Some("bytes=5-")
    );
    assert_eq!(
        range_header(ByteRange {
            start: 5,
            end: Some(5)
        }),
        None
    );
}

#[tokio::test]
async fn list_sends_owner_prefix_page_size_and_restore_status(
) -> Result<(), Box<dyn std::error::Error>> {
    let rule = mock!(aws_sdk_s3::Client::list_objects_v2)
        .match_requests(|r| {
            r.bucket() == Some("src")
                && r.prefix() == Some("in/")
                && r.expected_bucket_owner() == Some("111122223333")
                && r.max_keys() == Some(1000)
                && r.continuation_token() == Some("tok")
                && r.optional_object_attributes() == [OptionalObjectAttributes::RestoreStatus]
        })
        .then_output(|| {
            let when = aws_smithy_types::DateTime::from_secs(1_700_000_000);
            ListObjectsV2Output::builder()
                .contents(
                    Object::builder()
                        .key("in/a.csv")
                        .e_tag("\"e1\"")
                        .size(12)
                        .last_modified(when)
                        .storage_class(ObjectStorageClass::Glacier)
                        .restore_status(
                            RestoreStatus::builder()
                                .is_restore_in_progress(false)
                                .restore_expiry_date(when)
                                .build(),
                        )
                        .build(),
                )
                .contents(
                    Object::builder()
                        .key("in/b.csv")
                        .e_tag("\"e2\"")
                        .size(3)
                        .last_modified(when)
                        .storage_class(ObjectStorageClass::DeepArchive)
                        .restore_status(
                            RestoreStatus::builder()
                                .is_restore_in_progress(true)
                                .build(),
                        )
                        .build(),
                )
                .is_truncated(true)
                .next_continuation_token("tok2")
                .build()
        });
    let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&rule]);
    let page = S3Source::with_client(client)
        .list_page(&source(), Some("tok".to_owned()))
        .await?;
    assert_eq!(page.next.as_deref(), Some("tok2"));
    assert_eq!(page.objects.len(), 2);
    let a = &page.objects[0];
    assert_eq!(
        (a.key.as_str(), a.etag.as_str(), a.size),
        ("in/a.csv", "\"e1\"", 12)
    );
    assert_eq!(a.last_modified.timestamp(), 1_700_000_000);
    assert_eq!(a.storage_class.as_deref(), Some("GLACIER"));
    assert!(a.restored, "restored copy with an expiry");
    assert!(!page.objects[1].restored, "restore in progress");
    Ok(())
}

#[tokio::test]
async fn head_sends_the_owner_maps_storage_class_and_restore_and_404_is_none(
) -> Result<(), Box<dyn std::error::Error>> {
    let found = mock!(aws_sdk_s3::Client::head_object)
        .match_requests(|r| {
            r.bucket() == Some("src")
                && r.key() == Some("in/a b.csv")
                && r.expected_bucket_owner() == Some("111122223333")
        })
        .then_output(|| {
            aws_sdk_s3::operation::head_object::HeadObjectOutput::builder()
                .e_tag("\"e1\"")
                .content_length(12)
                .last_modified(aws_smithy_types::DateTime::from_secs(1_700_000_000))
                .storage_class(aws_sdk_s3::types::StorageClass::Glacier)
                .restore("ongoing-request=\"false\", expiry-date=\"Fri, 21 Dec 2012 00:00:00 GMT\"")
                .build()
        });
    let client = mock_client!(aws_sdk_s3, RuleMode::MatchAny, [&found]);
    let meta = S3Source::with_client(client)
        .head(&source(), "in/a b.csv", None)
        .await?
        .ok_or("expected the object")?;
    assert_eq!((meta.etag.as_str(), meta.size), ("\"e1\"", 12));
    assert_eq!(meta.last_modified.timestamp(), 1_700_000_000);
    assert_eq!(meta.storage_class.as_deref(), Some("GLACIER"));
    assert!(meta.restored);

    let missing = answering(mock!(aws_sdk_s3::Client::head_object), 404, None);
    let client = client_without_retries!(aws_sdk_s3, RuleMode::MatchAny, [&missing]);
    assert!(S3Source::with_client(client)
        .head(&source(), "in/x.csv", None)
        .await?
        .is_none());
    let denied = answering(mock!(aws_sdk_s3::Client::head_object), 403, None);
    let client = client_without_retries!(aws_sdk_s3, RuleMode::MatchAny, [&denied]);
    let err = S3Source::with_client(client)
        .head(&source(), "in/x.csv", None)
        .await;
    assert!(
        matches!(err, Err(SourceError::AccessDenied { .. })),
        "{err:?}"
    );
    Ok(())
}

async fn open_error(status: u16, code: Option<&'static str>) -> SourceError {
    let rule = answering(
        mock!(aws_sdk_s3::Client::get_object),
        status,
        code.map(s3_error_body),
    );
    let client = client_without_retries!(aws_sdk_s3, RuleMode::MatchAny, [&rule]);
    match S3Source::with_client(client)
        .open(&source(), "in/a.csv", "\"e\"", None, None)
        .await
    {
        Ok(_) => panic!("expected an error for HTTP {status} {code:?}"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn precondition_failed_means_changed() {
    let err = open_error(412, Some("PreconditionFailed")).await;
    assert!(
        matches!(&err, SourceError::Changed { etag, .. } if etag == "\"e\""),
        "{err:?}"
    );
    assert!(err.to_string().contains("s3://src/in/a.csv"), "{err}");
}

#[tokio::test]
async fn no_such_key_means_not_found() {
    let err = open_error(404, Some("NoSuchKey")).await;
    assert!(matches!(err, SourceError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn slow_down_is_transient() {
    let err = open_error(503, Some("SlowDown")).await;
    assert!(err.is_transient(), "{err:?}");
}

#[tokio::test]
async fn access_denied_mentions_the_expected_owner() {
    let (err, _) = denied(Ok(&["in/a.csv"])).await;
    assert!(matches!(err, SourceError::AccessDenied { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("not owned by account 111122223333"),
        "{err}"
    );
}

#[tokio::test]
async fn invalid_object_state_means_archived() {
    let err = open_error(403, Some("InvalidObjectState")).await;
    assert!(matches!(err, SourceError::Archived { .. }), "{err:?}");
}

#[tokio::test]
async fn kms_errors_name_kms() {
    let err = open_error(400, Some("KMS.DisabledException")).await;
    assert!(matches!(err, SourceError::Kms { .. }), "{err:?}");
}

#[tokio::test]
async fn permanent_redirect_names_the_region() {
    let err = open_error(301, Some("PermanentRedirect")).await;
    assert!(!err.is_transient());
    let text = err.to_string();
    assert!(text.contains("not in region eu-west-1"), "{text}");
}

/// A GetObject answering 403 and a ListObjectsV2 probe answering `listed` (keys) or an error.
async fn denied(listed: Result<&'static [&'static str], u16>) -> (SourceError, usize) {
    let get = answering(
        mock!(aws_sdk_s3::Client::get_object),
        403,
        Some(s3_error_body("AccessDenied")),
    );
    let list = match listed {
        Ok(keys) => mock!(aws_sdk_s3::Client::list_objects_v2)
            .match_requests(|r| {
                r.bucket() == Some("src")
                    && r.prefix() == Some("in/a.csv")
                    && r.max_keys() == Some(1)
                    && r.expected_bucket_owner() == Some("111122223333")
            })
            .then_output(move || {
                let when = aws_smithy_types::DateTime::from_secs(1_700_000_000);
                let mut out = ListObjectsV2Output::builder();
                for key in keys {
                    out = out.contents(
                        Object::builder()
                            .key(*key)
                            .e_tag("\"e\"")
                            .size(1)
                            .last_modified(when)
                            .build(),
                    );
                }
                out.build()
            }),
        Err(status) => answering(
            mock!(aws_sdk_s3::Client::list_objects_v2),
            status,
            Some(s3_error_body("AccessDenied")),
        ),
    };
    let client = client_without_retries!(aws_sdk_s3, RuleMode::MatchAny, [&get, &list]);
    let err = match S3Source::with_client(client)
        .open(&source(), "in/a.csv", "\"e\"", None, None)
        .await
    {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    };
    (err, list.num_calls())
}

#[tokio::test]
async fn access_denied_to_a_key_not_listed_means_not_found() {
    // Without s3:ListBucket S3 answers 403 for a missing key; the probe shows it is gone.
    let (err, probes) = denied(Ok(&[])).await;
    assert!(matches!(err, SourceError::NotFound { .. }), "{err:?}");
    assert_eq!(probes, 1);
    // A longer key with the same beginning is not the object.
    let (err, _) = denied(Ok(&["in/a.csv.bak"])).await;
    assert!(matches!(err, SourceError::NotFound { .. }), "{err:?}");
}

#[tokio::test]
async fn access_denied_to_a_listed_key_stays_access_denied() {
    let (err, probes) = denied(Ok(&["in/a.csv"])).await;
    assert!(matches!(err, SourceError::AccessDenied { .. }), "{err:?}");
    assert_eq!(probes, 1);
}

#[tokio::test]
async fn access_denied_probe_refused_says_existence_is_unknown() {
    let (err, _) = denied(Err(403)).await;
    assert!(matches!(err, SourceError::AccessDenied { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("s3:ListBucket") && text.contains("still exists is unknown"),
        "{text}"
    );
}
