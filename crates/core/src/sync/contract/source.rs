//! The object source contract: listing pages (1000 per page, continuation, prefix scoping), reading byte
//! ranges, `IfMatch` on the listed ETag, missing objects and buckets, archived objects and
//! `Content-Encoding`, checked on [`ObjectSource`] adapters.
//!
//! To run it against a new adapter, implement [`SourceFixture`] (fresh buckets, putting and deleting
//! objects) and call [`object_source_contract_tests!`](crate::object_source_contract_tests) in a test file
//! with an expression giving the fixture (`impl Future<Output = Result<Arc<dyn SourceFixture>, String>>`).

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use futures::stream::{self, StreamExt, TryStreamExt};
use tokio::io::AsyncReadExt;

use super::{expect, expect_eq, report, unique, CheckResult, Ctx};
use crate::sync::model::{ObjectMeta, Source};
use crate::sync::ports::{ByteRange, ObjectSource, SourceError};

/// An object a check stores in the source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FixtureObject {
    /// The body, as stored.
    pub bytes: Vec<u8>,
    /// Storage class (`None`: STANDARD).
    pub storage_class: Option<String>,
    /// `Content-Encoding` to store with the object.
    pub content_encoding: Option<String>,
}

impl FixtureObject {
    /// A STANDARD object with this body.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self {
            bytes: bytes.into(),
            ..Self::default()
        }
    }
}

/// What a check needs from the backend behind an [`ObjectSource`] adapter.
#[async_trait]
pub trait SourceFixture: Send + Sync {
    /// The adapter under test.
    fn source(&self) -> Arc<dyn ObjectSource>;
    /// Creates a new, empty bucket and returns the connector source reading it under `prefix`.
    async fn new_bucket(&self, prefix: Option<&str>) -> Result<Source, String>;
    /// Stores (or overwrites) `key` in the source's bucket.
    async fn put(&self, source: &Source, key: &str, object: FixtureObject) -> Result<(), String>;
    /// Deletes `key` from the source's bucket.
    async fn delete(&self, source: &Source, key: &str) -> Result<(), String>;
    /// Turns versioning on for the source's bucket.
    async fn enable_versioning(&self, source: &Source) -> Result<(), String>;
}

/// A fixture under test, shared by the checks.
pub type Fixture = Arc<dyn SourceFixture>;

/// One `#[tokio::test]` per object source contract check. `$fixture` is an expression evaluated afresh in
/// each test, of type `impl Future<Output = Result<Arc<dyn SourceFixture>, String>>`.
///
/// This macro holds the suite's one list of checks; the runner table ([`CHECKS`], [`run_check`]) is
/// generated from it too.
#[macro_export]
macro_rules! object_source_contract_tests {
    ($fixture:expr) => {
        $crate::object_source_contract_tests!(@suite [tests [$crate::sync::contract::source] $fixture]);
    };
    (@suite [$($mode:tt)*]) => {
        $crate::__contract_suite! { $($mode)*;
            SOURCE_CHECKS on [] {
                listing_pages_by_1000_within_the_prefix,
                listing_resumes_after_a_key,
                awkward_keys_are_listed_and_read_back,
                range_reads_return_the_requested_bytes,
                open_with_a_stale_etag_is_changed,
                open_of_a_deleted_object_is_not_found,
                listing_a_missing_bucket_is_no_such_bucket,
                archived_objects_are_listed_and_refused,
                content_encoding_is_reported_and_the_bytes_are_as_stored,
                versions_are_listed_and_read_pinned,
            }
        }
    };
}

crate::object_source_contract_tests!(@suite [runner Fixture]);

// ---------------------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------------------

/// Lists every page; returns the objects and each page's size.
async fn list_all(
    fixture: &Fixture,
    source: &Source,
) -> Result<(Vec<ObjectMeta>, Vec<usize>), String> {
    let adapter = fixture.source();
    let mut objects = Vec::new();
    let mut pages = Vec::new();
    let mut next = None;
    loop {
        let page = adapter.list_page(source, next).await.ctx(&format!(
            "list s3://{} page {}",
            source.bucket,
            pages.len() + 1
        ))?;
        pages.push(page.objects.len());
        objects.extend(page.objects);
        match page.next {
            Some(token) => next = Some(token),
            None => return Ok((objects, pages)),
        }
    }
}

/// Puts a one-byte object at each of `keys` and `outside`, 32 at a time.
async fn put_all(
    fixture: &Fixture,
    source: &Source,
    keys: &[String],
    outside: &[&str],
) -> Result<(), String> {
    stream::iter(
        keys.iter()
            .map(String::as_str)
            .chain(outside.iter().copied())
            .map(|key| fixture.put(source, key, FixtureObject::new("x"))),
    )
    .buffer_unordered(32)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(())
}

async fn read_all(
    fixture: &Fixture,
    source: &Source,
    key: &str,
    etag: &str,
    range: Option<ByteRange>,
) -> Result<Vec<u8>, String> {
    read_version(fixture, source, (key, etag, None), range).await
}

async fn read_version(
    fixture: &Fixture,
    source: &Source,
    (key, etag, version_id): (&str, &str, Option<&str>),
    range: Option<ByteRange>,
) -> Result<Vec<u8>, String> {
    let what = format!("read s3://{}/{key} {version_id:?} {range:?}", source.bucket);
    let mut body = fixture
        .source()
        .open(source, key, etag, version_id, range)
        .await
        .ctx(&what)?;
    let mut bytes = Vec::new();
    body.reader.read_to_end(&mut bytes).await.ctx(&what)?;
    Ok(bytes)
}

/// The listed entry of `key` (the only way a check learns an object's ETag, as the lister does).
async fn listed(fixture: &Fixture, source: &Source, key: &str) -> Result<ObjectMeta, String> {
    let (objects, _) = list_all(fixture, source).await?;
    objects
        .into_iter()
        .find(|o| o.key == key)
        .ok_or_else(|| format!("{key} is not listed in s3://{}", source.bucket))
}

fn failure_of<T>(result: Result<T, SourceError>) -> Result<SourceError, String> {
    match result {
        Ok(_) => Err("expected an error, got a body".to_owned()),
        Err(e) => Ok(e),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------------------

/// 2001 objects under the prefix come in pages of 1000, 1000 and 1, in key order; keys outside the prefix
/// (before it, after it, sharing its first letters) are never listed; a listed object says its ETag (quoted),
/// size, LastModified and class.
pub async fn listing_pages_by_1000_within_the_prefix(fixture: Fixture) -> CheckResult {
    let source = fixture.new_bucket(Some("in/")).await?;
    let keys: Vec<String> = (0..2001).map(|i| format!("in/{i:05}.csv")).collect();
    put_all(
        &fixture,
        &source,
        &keys,
        &["im", "inbox.csv", "other/outside.csv", "out/1.csv"],
    )
    .await?;

    let (objects, pages) = list_all(&fixture, &source).await?;
    expect_eq("page sizes", pages, vec![1000, 1000, 1])?;
    let listed: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    expect(
        "every key under the prefix is listed once, in key order, and nothing else",
        listed == keys.iter().map(String::as_str).collect::<Vec<_>>(),
    )?;
    let first = &objects[0];
    expect(
        &format!("the ETag keeps its quotes: {}", first.etag),
        first.etag.len() > 2 && first.etag.starts_with('"') && first.etag.ends_with('"'),
    )?;
    expect_eq("size", first.size, 1)?;
    expect(
        &format!("LastModified {} is about now", first.last_modified),
        (Utc::now() - first.last_modified).num_minutes().abs() < 5,
    )?;
    expect(
        &format!(
            "storage class {:?} is STANDARD or unsaid",
            first.storage_class
        ),
        first
            .storage_class
            .as_deref()
            .is_none_or(|c| c == "STANDARD"),
    )?;
    expect("a STANDARD object is not `restored`", !first.restored)
}

/// A listing resumed after a key (`StartAfter`) starts with the next key under the prefix, continues with the
/// page's token, and never returns the key itself or keys outside the prefix; a key before the prefix starts
/// at the prefix, one past the last key lists nothing.
pub async fn listing_resumes_after_a_key(fixture: Fixture) -> CheckResult {
    let source = fixture.new_bucket(Some("in/")).await?;
    let keys: Vec<String> = (0..1005).map(|i| format!("in/{i:05} ü.csv")).collect();
    put_all(
        &fixture,
        &source,
        &keys,
        &["a/before.csv", "inbox.csv", "out/1.csv"],
    )
    .await?;
    let adapter = fixture.source();
    let resume = |after: String| {
        let (adapter, source) = (adapter.clone(), source.clone());
        async move {
            let mut listed = Vec::new();
            let mut page = adapter
                .list_page_after(&source, &after)
                .await
                .ctx(&format!("list after {after:?}"))?;
            loop {
                listed.extend(page.objects.into_iter().map(|o| o.key));
                let Some(token) = page.next else {
                    return Ok::<_, String>(listed);
                };
                page = adapter
                    .list_page(&source, Some(token))
                    .await
                    .ctx("continue")?;
            }
        }
    };
    expect_eq(
        "after the third key",
        resume(keys[2].clone()).await?,
        keys[3..].to_vec(),
    )?;
    expect_eq(
        "after a key before the prefix",
        resume("a/before.csv".into()).await?,
        keys.clone(),
    )?;
    expect_eq(
        "after the last key",
        resume(keys[1004].clone()).await?,
        Vec::<String>::new(),
    )
}

/// Keys with spaces, `+ = & %`, non-ASCII letters and 1024 bytes are listed and read back as they are.
pub async fn awkward_keys_are_listed_and_read_back(fixture: Fixture) -> CheckResult {
    let source = fixture.new_bucket(Some("in/")).await?;
    let keys: BTreeSet<String> = [
        "in/key with spaces.csv".to_owned(),
        "in/a+b=c&d.csv".to_owned(),
        "in/100% done.csv".to_owned(),
        "in/ünïcødé-日本語.csv".to_owned(),
        format!("in/{}.csv", "k".repeat(1010)),
    ]
    .into();
    for key in &keys {
        fixture
            .put(&source, key, FixtureObject::new(key.as_bytes()))
            .await?;
    }
    let (objects, _) = list_all(&fixture, &source).await?;
    let listed: BTreeSet<String> = objects.iter().map(|o| o.key.clone()).collect();
    expect_eq("listed keys", &listed, &keys)?;
    let mut failures = Vec::new();
    for object in &objects {
        let body = read_all(&fixture, &source, &object.key, &object.etag, None).await?;
        if body != object.key.as_bytes() {
            failures.push(format!(
                "body of {:?}: {:?}",
                object.key,
                String::from_utf8_lossy(&body)
            ));
        }
    }
    report(failures)
}

/// Ranges `[start, end)` read those bytes; an open end reads to the end; an end past the object stops at its
/// end; an empty range, or one starting at or after the end (a piece checkpointed at the end of the file),
/// reads nothing.
pub async fn range_reads_return_the_requested_bytes(fixture: Fixture) -> CheckResult {
    let source = fixture.new_bucket(None).await?;
    fixture
        .put(&source, "digits.csv", FixtureObject::new("0123456789"))
        .await?;
    let etag = listed(&fixture, &source, "digits.csv").await?.etag;
    let whole = fixture
        .source()
        .open(&source, "digits.csv", &etag, None, None)
        .await
        .ctx("open digits.csv")?;
    expect_eq(
        "content length of the whole object",
        whole.content_length,
        Some(10),
    )?;
    let cases: [(u64, Option<u64>, &str); 8] = [
        (0, None, "0123456789"),
        (2, Some(5), "234"),
        (5, None, "56789"),
        (6, None, "6789"),
        (8, Some(100), "89"),
        (3, Some(3), ""),
        (10, None, ""),
        (11, None, ""),
    ];
    let mut failures = Vec::new();
    for (start, end, want) in cases {
        let range = ByteRange { start, end };
        match read_all(&fixture, &source, "digits.csv", &etag, Some(range)).await {
            Ok(got) if got == want.as_bytes() => {}
            Ok(got) => failures.push(format!(
                "{range:?}: expected {want:?}, got {:?}",
                String::from_utf8_lossy(&got)
            )),
            Err(e) => failures.push(format!("{range:?}: expected {want:?}, got {e}")),
        }
    }
    report(failures)
}

/// An object overwritten after it was listed is `Changed`, naming the bucket, the key and the ETag asked for.
pub async fn open_with_a_stale_etag_is_changed(fixture: Fixture) -> CheckResult {
    let source = fixture.new_bucket(None).await?;
    fixture
        .put(&source, "a.csv", FixtureObject::new("version 1"))
        .await?;
    let stale = listed(&fixture, &source, "a.csv").await?.etag;
    fixture
        .put(&source, "a.csv", FixtureObject::new("version 2"))
        .await?;
    let fresh = listed(&fixture, &source, "a.csv").await?.etag;
    expect("a new body gives a new ETag", fresh != stale)?;
    match failure_of(
        fixture
            .source()
            .open(&source, "a.csv", &stale, None, None)
            .await,
    )? {
        SourceError::Changed { bucket, key, etag } => expect_eq(
            "Changed names",
            (bucket, key, etag),
            (source.bucket.clone(), "a.csv".to_owned(), stale),
        ),
        other => Err(format!("expected Changed, got {other:?}")),
    }?;
    let body = read_all(&fixture, &source, "a.csv", &fresh, None).await?;
    expect_eq("the current version reads", body, b"version 2".to_vec())
}

/// An object deleted after it was listed is `NotFound`, naming the bucket and the key.
pub async fn open_of_a_deleted_object_is_not_found(fixture: Fixture) -> CheckResult {
    let source = fixture.new_bucket(None).await?;
    fixture
        .put(&source, "gone.csv", FixtureObject::new("x"))
        .await?;
    let etag = listed(&fixture, &source, "gone.csv").await?.etag;
    fixture.delete(&source, "gone.csv").await?;
    match failure_of(
        fixture
            .source()
            .open(&source, "gone.csv", &etag, None, None)
            .await,
    )? {
        SourceError::NotFound { bucket, key } => expect_eq(
            "NotFound names",
            (bucket, key),
            (source.bucket.clone(), "gone.csv".to_owned()),
        ),
        other => Err(format!("expected NotFound, got {other:?}")),
    }
}

/// Listing a bucket that does not exist is `NoSuchBucket`.
pub async fn listing_a_missing_bucket_is_no_such_bucket(fixture: Fixture) -> CheckResult {
    let existing = fixture.new_bucket(None).await?;
    let missing = Source {
        bucket: unique("no-bucket"),
        ..existing
    };
    match fixture.source().list_page(&missing, None).await {
        Err(SourceError::NoSuchBucket { bucket, .. }) => {
            expect_eq("NoSuchBucket names", bucket, missing.bucket.clone())
        }
        other => Err(format!("expected NoSuchBucket, got {other:?}")),
    }
}

/// GLACIER and DEEP_ARCHIVE objects are listed with their class and not `restored`; reading one is
/// `Archived`.
pub async fn archived_objects_are_listed_and_refused(fixture: Fixture) -> CheckResult {
    let source = fixture.new_bucket(None).await?;
    let mut failures = Vec::new();
    for class in ["GLACIER", "DEEP_ARCHIVE"] {
        let key = format!("cold-{class}.csv");
        fixture
            .put(
                &source,
                &key,
                FixtureObject {
                    storage_class: Some(class.to_owned()),
                    ..FixtureObject::new("id\n1\n")
                },
            )
            .await?;
        let meta = listed(&fixture, &source, &key).await?;
        if meta.storage_class.as_deref() != Some(class) || meta.restored {
            failures.push(format!("{key} is listed as {meta:?}"));
        }
        match fixture
            .source()
            .open(&source, &key, &meta.etag, None, None)
            .await
        {
            Err(SourceError::Archived { bucket, key: k })
                if bucket == source.bucket && k == key => {}
            Err(other) => failures.push(format!("reading {key}: expected Archived, got {other:?}")),
            Ok(body) => failures.push(format!("reading {key}: expected Archived, got {body:?}")),
        }
    }
    report(failures)
}

/// A gzip object stored with `Content-Encoding: gzip` is read with that encoding and its stored bytes (the
/// adapter does not decompress: the pipeline does).
pub async fn content_encoding_is_reported_and_the_bytes_are_as_stored(
    fixture: Fixture,
) -> CheckResult {
    use std::io::Write;
    let source = fixture.new_bucket(None).await?;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(b"id\n1\n2\n").ctx("gzip the fixture")?;
    let gzip = encoder.finish().ctx("gzip the fixture")?;
    fixture
        .put(
            &source,
            "data.csv",
            FixtureObject {
                content_encoding: Some("gzip".to_owned()),
                ..FixtureObject::new(gzip.clone())
            },
        )
        .await?;
    fixture
        .put(&source, "plain.csv", FixtureObject::new("id\n1\n"))
        .await?;
    let meta = listed(&fixture, &source, "data.csv").await?;
    expect_eq(
        "listed size (the stored bytes)",
        meta.size,
        gzip.len() as u64,
    )?;
    let mut body = fixture
        .source()
        .open(&source, "data.csv", &meta.etag, None, None)
        .await
        .ctx("open data.csv")?;
    expect_eq(
        "Content-Encoding",
        body.content_encoding.as_deref(),
        Some("gzip"),
    )?;
    let mut bytes = Vec::new();
    body.reader
        .read_to_end(&mut bytes)
        .await
        .ctx("read data.csv")?;
    expect("the body is the stored gzip bytes", bytes == gzip)?;
    let plain = listed(&fixture, &source, "plain.csv").await?;
    let body = fixture
        .source()
        .open(&source, "plain.csv", &plain.etag, None, None)
        .await
        .ctx("open plain.csv")?;
    expect_eq(
        "Content-Encoding of a plain object",
        body.content_encoding,
        None,
    )
}

/// On a versioned bucket read as [`versions`](Source::versions): every version of a key is listed, newest
/// first, each with its own `VersionId` (two puts of equal bytes too), still after the key is deleted (delete
/// markers are not listed); each version reads pinned, by range too, and a HeadObject of a version names it.
/// The same bucket read without `versions` lists only current objects, without version ids.
pub async fn versions_are_listed_and_read_pinned(fixture: Fixture) -> CheckResult {
    let plain = fixture.new_bucket(Some("in/")).await?;
    fixture.enable_versioning(&plain).await?;
    let source = Source {
        versions: true,
        ..plain.clone()
    };
    for body in ["id\n1\n", "id\n2\n", "id\n2\n"] {
        fixture
            .put(&source, "in/k.csv", FixtureObject::new(body))
            .await?;
    }
    fixture
        .put(&source, "in/other.csv", FixtureObject::new("id\n9\n"))
        .await?;
    fixture
        .put(&source, "out/no.csv", FixtureObject::new("x"))
        .await?;
    fixture.delete(&source, "in/other.csv").await?;

    let (objects, _) = list_all(&fixture, &source).await?;
    let keys: Vec<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    expect_eq(
        "listed versions",
        keys,
        vec!["in/k.csv", "in/k.csv", "in/k.csv", "in/other.csv"],
    )?;
    let ids: BTreeSet<Option<&str>> = objects.iter().map(|o| o.version_id.as_deref()).collect();
    expect(
        &format!("four distinct version ids: {ids:?}"),
        ids.len() == 4 && !ids.contains(&None),
    )?;
    let mut failures = Vec::new();
    for (object, want) in objects
        .iter()
        .zip(["id\n2\n", "id\n2\n", "id\n1\n", "id\n9\n"])
    {
        let pinned = (
            object.key.as_str(),
            object.etag.as_str(),
            object.version_id.as_deref(),
        );
        let body = read_version(&fixture, &source, pinned, None).await?;
        if body != want.as_bytes() {
            failures.push(format!(
                "{object:?} reads {:?}",
                String::from_utf8_lossy(&body)
            ));
        }
        let tail = read_version(
            &fixture,
            &source,
            pinned,
            Some(ByteRange {
                start: 3,
                end: None,
            }),
        )
        .await?;
        if tail != want.as_bytes()[3..] {
            failures.push(format!("{object:?} from byte 3 reads {tail:?}"));
        }
        let head = fixture
            .source()
            .head(&source, &object.key, object.version_id.as_deref())
            .await
            .ctx("head a version")?;
        if head.as_ref().map(|h| (&h.etag, &h.version_id))
            != Some((&object.etag, &object.version_id))
        {
            failures.push(format!("head of {object:?} is {head:?}"));
        }
    }
    let (current, _) = list_all(&fixture, &plain).await?;
    let current: Vec<(&str, Option<&str>)> = current
        .iter()
        .map(|o| (o.key.as_str(), o.version_id.as_deref()))
        .collect();
    if current != vec![("in/k.csv", None)] {
        failures.push(format!("without versions the listing is {current:?}"));
    }
    let head = fixture
        .source()
        .head(&plain, "in/k.csv", None)
        .await
        .ctx("head the current object")?;
    if head.as_ref().map(|h| h.version_id.as_deref()) != Some(None) {
        failures.push(format!("without versions the head is {head:?}"));
    }
    report(failures)
}
