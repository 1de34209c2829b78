//! The AWS adapters (`s3-importer-aws`) end to end on the emulator: S3 source listing and reads, the SQS
//! queue, the DynamoDB and S3 JSONL destinations and the S3 error report. What moto does not enforce
//! (`ExpectedBucketOwner`, STS `ExternalId`) is asserted on the requests by the unit tests in `crates/aws`.

use std::collections::BTreeSet;
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, TimeZone, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use s3_importer_aws::destination::{error_report_key, output_key};
use s3_importer_aws::{create_records_table, AwsDestination, S3Source, SqsQueue};
use s3_importer_core::sink::{ErrorReportEntry, RejectedRow, RowBatch};
use s3_importer_core::sync::ports::{
    ByteRange, Destination, FileJob, FileQueue, ObjectSource, SourceError,
};
use s3_importer_core::sync::{
    Connector, ConnectorStatus, DestinationConfig, FileMessage, FileVersion, LedgerEntry,
    ObjectMeta, Source,
};
use s3_importer_core::template::Template;
use s3_importer_core::{ErrorCode, Position, RowError};
use s3_importer_tests::{
    create_bucket, create_queue, dynamodb_client, emulator, s3_client, sqs_client, unique_name,
    ACCOUNT_ID, REGION,
};
use tokio::io::AsyncReadExt;

fn source(bucket: &str, prefix: Option<&str>) -> Source {
    Source {
        account_id: ACCOUNT_ID.to_owned(),
        bucket: bucket.to_owned(),
        region: REGION.to_owned(),
        prefix: prefix.map(str::to_owned),
        role_arn: None,
        external_id: None,
    }
}

async fn put(cfg: &SdkConfig, bucket: &str, key: &str, body: &[u8]) -> Result<()> {
    s3_client(cfg)
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .send()
        .await
        .with_context(|| format!("put s3://{bucket}/{key}"))?;
    Ok(())
}

async fn list_all(s3: &S3Source, source: &Source) -> Result<(Vec<ObjectMeta>, usize)> {
    let mut objects = Vec::new();
    let mut next = None;
    let mut pages = 0;
    loop {
        let page = s3.list_page(source, next).await?;
        pages += 1;
        objects.extend(page.objects);
        match page.next {
            Some(token) => next = Some(token),
            None => return Ok((objects, pages)),
        }
    }
}

async fn read_all(
    s3: &S3Source,
    source: &Source,
    key: &str,
    etag: &str,
    range: Option<ByteRange>,
) -> Result<Vec<u8>> {
    let mut body = s3.open(source, key, etag, range).await?;
    let mut bytes = Vec::new();
    body.reader.read_to_end(&mut bytes).await?;
    Ok(bytes)
}

async fn get_object(cfg: &SdkConfig, bucket: &str, key: &str) -> Result<Option<Vec<u8>>> {
    match s3_client(cfg)
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
    {
        Ok(out) => Ok(Some(out.body.collect().await?.to_vec())),
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
        Err(e) => Err(e).with_context(|| format!("get s3://{bucket}/{key}")),
    }
}

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).single().unwrap_or_default()
}

fn job(
    destination: DestinationConfig,
    key: &str,
    etag: &str,
    last_modified: DateTime<Utc>,
) -> Result<FileJob> {
    let template = Template::from_toml(
        r#"
name = "orders"
primary_key = ["id"]
[[fields]]
name = "id"
type = "string"
required = true
[[fields]]
name = "qty"
type = "integer"
[[fields]]
name = "price"
type = "decimal"
scale = 2
"#,
    )?;
    let version = FileVersion {
        connector_id: "c-0123456789abcdef".into(),
        bucket: "source-bucket".into(),
        key: key.into(),
        etag: etag.into(),
        version_id: None,
    };
    let object = ObjectMeta {
        key: key.into(),
        etag: etag.into(),
        size: 100,
        last_modified,
        storage_class: None,
        restored: false,
    };
    Ok(FileJob {
        connector: Connector {
            id: "c-0123456789abcdef".into(),
            name: "orders".into(),
            status: ConnectorStatus::Active,
            source: source("source-bucket", None),
            template_id: "orders".into(),
            template_version: None,
            destination,
            created_at: last_modified,
            updated_at: last_modified,
            watermark: None,
            last_sync: None,
        },
        entry: LedgerEntry::discovered(version, &object, last_modified),
        template: Arc::new(template),
    })
}

fn batch(rows: &[&str]) -> RowBatch {
    let mut batch = RowBatch::default();
    for (i, row) in rows.iter().enumerate() {
        let record = i as u64 + 1;
        batch.push_row(
            Position {
                record,
                line: record + 1,
                byte: 0,
            },
            row.as_bytes(),
        );
    }
    batch
}

// ---------------------------------------------------------------------------------------------------------
// Source
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn list_paginates_over_1005_objects_under_the_prefix_only() -> Result<()> {
    let cfg = emulator().await.sdk_config().await;
    let bucket = unique_name("list-many");
    create_bucket(&cfg, &bucket).await?;
    let keys: Vec<String> = (0..1005).map(|i| format!("in/part-{i:05}.csv")).collect();
    stream::iter(keys.iter().map(|k| put(&cfg, &bucket, k, b"x")))
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    put(&cfg, &bucket, "other/outside.csv", b"x").await?;
    put(&cfg, &bucket, "inbox.csv", b"x").await?;

    let s3 = S3Source::with_client(s3_client(&cfg));
    let (objects, pages) = list_all(&s3, &source(&bucket, Some("in/"))).await?;
    ensure!(
        pages == 2,
        "1005 objects come in 2 pages of ≤ 1000, got {pages}"
    );
    let listed: BTreeSet<&str> = objects.iter().map(|o| o.key.as_str()).collect();
    ensure!(
        listed.len() == 1005 && objects.len() == 1005,
        "listed {} objects",
        objects.len()
    );
    ensure!(
        listed == keys.iter().map(String::as_str).collect(),
        "listing differs from the uploaded keys"
    );
    let first = &objects[0];
    ensure!(
        first.etag.starts_with('"') && first.etag.ends_with('"'),
        "ETag keeps its quotes: {}",
        first.etag
    );
    ensure!(first.size == 1, "size {}", first.size);
    ensure!(
        (Utc::now() - first.last_modified).num_minutes().abs() < 5,
        "{}",
        first.last_modified
    );
    ensure!(
        first.storage_class.as_deref() == Some("STANDARD"),
        "{:?}",
        first.storage_class
    );
    ensure!(!first.restored);
    Ok(())
}

#[tokio::test]
async fn awkward_keys_are_listed_and_read_back() -> Result<()> {
    let cfg = emulator().await.sdk_config().await;
    let bucket = unique_name("awkward-keys");
    create_bucket(&cfg, &bucket).await?;
    let long = format!("in/{}.csv", "k".repeat(1010));
    let keys = [
        "in/key with spaces.csv".to_owned(),
        "in/a+b=c&d.csv".to_owned(),
        "in/100% done.csv".to_owned(),
        "in/ünïcødé-日本語.csv".to_owned(),
        long,
    ];
    for key in &keys {
        put(&cfg, &bucket, key, key.as_bytes()).await?;
    }
    let s3 = S3Source::with_client(s3_client(&cfg));
    let src = source(&bucket, Some("in/"));
    let (objects, _) = list_all(&s3, &src).await?;
    ensure!(
        objects.len() == keys.len(),
        "listed {:?}",
        objects.iter().map(|o| &o.key).collect::<Vec<_>>()
    );
    for object in &objects {
        ensure!(
            keys.contains(&object.key),
            "unexpected key {:?}",
            object.key
        );
        let body = read_all(&s3, &src, &object.key, &object.etag, None).await?;
        ensure!(body == object.key.as_bytes(), "body of {:?}", object.key);
    }
    Ok(())
}

#[tokio::test]
async fn a_source_with_a_role_is_read_through_assumed_credentials() -> Result<()> {
    let cfg = emulator().await.sdk_config().await;
    let bucket = unique_name("role-source");
    create_bucket(&cfg, &bucket).await?;
    put(&cfg, &bucket, "in/a.csv", b"id\n1\n").await?;
    let src = Source {
        role_arn: Some(format!("arn:aws:iam::{ACCOUNT_ID}:role/s3-importer-source")),
        external_id: Some("ext-0123".into()),
        ..source(&bucket, Some("in/"))
    };
    // Per-region clients with credentials from STS AssumeRole (moto accepts any role and External ID).
    let s3 = S3Source::new(&cfg);
    let (objects, _) = list_all(&s3, &src).await?;
    ensure!(objects.len() == 1, "{objects:?}");
    let body = read_all(&s3, &src, "in/a.csv", &objects[0].etag, None).await?;
    ensure!(body == b"id\n1\n");
    Ok(())
}

#[tokio::test]
async fn open_with_a_stale_etag_is_changed() -> Result<()> {
    let cfg = emulator().await.sdk_config().await;
    let bucket = unique_name("stale-etag");
    create_bucket(&cfg, &bucket).await?;
    put(&cfg, &bucket, "a.csv", b"version 1").await?;
    let s3 = S3Source::with_client(s3_client(&cfg));
    let src = source(&bucket, None);
    let (objects, _) = list_all(&s3, &src).await?;
    put(&cfg, &bucket, "a.csv", b"version 2").await?;
    match s3.open(&src, "a.csv", &objects[0].etag, None).await {
        Err(SourceError::Changed {
            bucket: b,
            key,
            etag,
        }) => {
            ensure!(b == bucket && key == "a.csv" && etag == objects[0].etag);
            Ok(())
        }
        Err(other) => anyhow::bail!("expected Changed, got {other:?}"),
        Ok(body) => anyhow::bail!("expected Changed, got {body:?}"),
    }
}

#[tokio::test]
async fn open_of_a_deleted_object_is_not_found() -> Result<()> {
    let cfg = emulator().await.sdk_config().await;
    let bucket = unique_name("deleted");
    create_bucket(&cfg, &bucket).await?;
    put(&cfg, &bucket, "gone.csv", b"x").await?;
    let s3 = S3Source::with_client(s3_client(&cfg));
    let src = source(&bucket, None);
    let (objects, _) = list_all(&s3, &src).await?;
    s3_client(&cfg)
        .delete_object()
        .bucket(&bucket)
        .key("gone.csv")
        .send()
        .await?;
    let err = s3
        .open(&src, "gone.csv", &objects[0].etag, None)
        .await
        .err();
    ensure!(matches!(err, Some(SourceError::NotFound { .. })), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn open_of_a_missing_bucket_is_no_such_bucket() -> Result<()> {
    let cfg = emulator().await.sdk_config().await;
    let s3 = S3Source::with_client(s3_client(&cfg));
    let err = s3
        .list_page(&source(&unique_name("no-bucket"), None), None)
        .await
        .err();
    ensure!(
        matches!(err, Some(SourceError::NoSuchBucket { .. })),
        "{err:?}"
    );
    Ok(())
}

async fn put_glacier(cfg: &SdkConfig, bucket: &str, key: &str) -> Result<()> {
    s3_client(cfg)
        .put_object()
        .bucket(bucket)
        .key(key)
        .storage_class(aws_sdk_s3::types::StorageClass::Glacier)
        .body(ByteStream::from_static(b"id\n1\n"))
        .send()
        .await
        .with_context(|| format!("put s3://{bucket}/{key} in GLACIER"))?;
    Ok(())
}

#[tokio::test]
async fn reading_an_archived_object_is_archived() -> Result<()> {
    let cfg = emulator().await.sdk_config().await;
    let bucket = unique_name("archived");
    create_bucket(&cfg, &bucket).await?;
    put_glacier(&cfg, &bucket, "cold.csv").await?;
    let s3 = S3Source::with_client(s3_client(&cfg));
    let src = source(&bucket, None);
    let (objects, _) = list_all(&s3, &src).await?;
    ensure!(
        objects[0].storage_class.as_deref() == Some("GLACIER"),
        "{objects:?}"
    );
    ensure!(!objects[0].restored, "{objects:?}");
    let err = s3
        .open(&src, "cold.csv", &objects[0].etag, None)
        .await
        .err();
    ensure!(matches!(err, Some(SourceError::Archived { .. })), "{err:?}");
    Ok(())
}

/// moto accepts `OptionalObjectAttributes=RestoreStatus` but never returns `RestoreStatus`, even for a
/// restored object (AWS returns `IsRestoreInProgress=false` and `RestoreExpiryDate`). The `restored` mapping is
/// covered by the unit tests in `crates/aws/src/source.rs`; if this fails, moto now reports it: test it here.
#[tokio::test]
async fn moto_lists_restored_objects_without_restore_status() -> Result<()> {
    let cfg = emulator().await.sdk_config().await;
    let bucket = unique_name("restored");
    create_bucket(&cfg, &bucket).await?;
    put_glacier(&cfg, &bucket, "warm.csv").await?;
    s3_client(&cfg)
        .restore_object()
        .bucket(&bucket)
        .key("warm.csv")
        .restore_request(aws_sdk_s3::types::RestoreRequest::builder().days(1).build())
        .send()
        .await?;
    let s3 = S3Source::with_client(s3_client(&cfg));
    let src = source(&bucket, None);
    let (objects, _) = list_all(&s3, &src).await?;
    ensure!(
        !objects[0].restored,
        "moto now reports RestoreStatus: {objects:?}"
    );
    // The restored copy is readable.
    let body = read_all(&s3, &src, "warm.csv", &objects[0].etag, None).await?;
    ensure!(body == b"id\n1\n");
    Ok(())
}

#[tokio::test]
async fn range_reads_return_the_requested_bytes() -> Result<()> {
    let cfg = emulator().await.sdk_config().await;
    let bucket = unique_name("range");
    create_bucket(&cfg, &bucket).await?;
    put(&cfg, &bucket, "digits.csv", b"0123456789").await?;
    let s3 = S3Source::with_client(s3_client(&cfg));
    let src = source(&bucket, None);
    let (objects, _) = list_all(&s3, &src).await?;
    let etag = &objects[0].etag;
    let middle = read_all(
        &s3,
        &src,
        "digits.csv",
        etag,
        Some(ByteRange {
            start: 2,
            end: Some(5),
        }),
    )
    .await?;
    ensure!(middle == b"234", "{:?}", String::from_utf8_lossy(&middle));
    let tail = read_all(
        &s3,
        &src,
        "digits.csv",
        etag,
        Some(ByteRange {
            start: 5,
            end: None,
        }),
    )
    .await?;
    ensure!(tail == b"56789", "{:?}", String::from_utf8_lossy(&tail));
    let past_end = read_all(
        &s3,
        &src,
        "digits.csv",
        etag,
        Some(ByteRange {
            start: 10,
            end: None,
        }),
    )
    .await?;
    ensure!(
        past_end.is_empty(),
        "a piece starting at the end reads nothing"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Destinations
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn s3_jsonl_output_is_invisible_until_finish_and_a_retry_overwrites_it() -> Result<()> {
    let cfg = emulator().await.sdk_config().await;
    let out = unique_name("jsonl-out");
    create_bucket(&cfg, &out).await?;
    // 5 MiB parts (S3's minimum, which moto enforces) so a 6 MiB output really is multipart.
    let destination =
        AwsDestination::new(s3_client(&cfg), dynamodb_client(&cfg), &out).with_part_size(5 << 20);
    let config = DestinationConfig::S3Jsonl {
        bucket: out.clone(),
        prefix: "normalized/".into(),
    };
    let job = job(config, "in/orders 1.csv", "\"etag-1\"", at(1_700_000_000))?;
    let key = output_key("normalized", &job.connector.id, "in/orders 1.csv", "etag-1");

    let padding = "p".repeat(1000);
    let row = format!(r#"{{"id":"1","qty":1,"price":"1.00","pad":"{padding}"}}"#);
    let rows: Vec<&str> = vec![row.as_str(); 1000];
    let mut sink = destination.open_rows(&job).await?;
    for _ in 0..6 {
        sink.write_batch(&batch(&rows)).await?;
    }
    ensure!(
        get_object(&cfg, &out, &key).await?.is_none(),
        "output visible before finish"
    );
    sink.finish().await?;
    let first = get_object(&cfg, &out, &key)
        .await?
        .context("output missing after finish")?;
    ensure!(
        first.len() == 6 * 1000 * (row.len() + 1),
        "{} bytes",
        first.len()
    );

    // A retry of the same file version writes the same key: replaced, not duplicated.
    let mut retry = destination.open_rows(&job).await?;
    retry
        .write_batch(&batch(&[r#"{"id":"1","qty":2,"price":"2.00"}"#]))
        .await?;
    retry.finish().await?;
    let second = get_object(&cfg, &out, &key)
        .await?
        .context("output missing after retry")?;
    ensure!(
        second == b"{\"id\":\"1\",\"qty\":2,\"price\":\"2.00\"}\n",
        "{:?}",
        String::from_utf8_lossy(&second)
    );
    let listed = s3_client(&cfg)
        .list_objects_v2()
        .bucket(&out)
        .send()
        .await?;
    ensure!(
        listed.contents().len() == 1,
        "one object per file version, got {}",
        listed.contents().len()
    );
    let head = s3_client(&cfg)
        .head_object()
        .bucket(&out)
        .key(&key)
        .send()
        .await?;
    let meta = head.metadata().cloned().unwrap_or_default();
    ensure!(
        meta.get("source-key").map(String::as_str) == Some("in/orders%201.csv"),
        "{meta:?}"
    );
    Ok(())
}

#[tokio::test]
async fn s3_jsonl_abort_leaves_nothing_and_an_empty_file_gives_an_empty_object() -> Result<()> {
    let cfg = emulator().await.sdk_config().await;
    let out = unique_name("jsonl-abort");
    create_bucket(&cfg, &out).await?;
    let destination =
        AwsDestination::new(s3_client(&cfg), dynamodb_client(&cfg), &out).with_part_size(5 << 20);
    let config = DestinationConfig::S3Jsonl {
        bucket: out.clone(),
        prefix: String::new(),
    };

    let failed = job(config.clone(), "in/bad.csv", "\"e-bad\"", at(1_700_000_000))?;
    let mut sink = destination.open_rows(&failed).await?;
    let big = format!(r#"{{"id":"1","pad":"{}"}}"#, "p".repeat(6 << 20));
    sink.write_batch(&batch(&[big.as_str()])).await?; // starts a multipart upload
    sink.abort().await?;
    let uploads = s3_client(&cfg)
        .list_multipart_uploads()
        .bucket(&out)
        .send()
        .await?;
    ensure!(
        uploads.uploads().is_empty(),
        "aborted upload still listed: {:?}",
        uploads.uploads()
    );

    let empty = job(config, "in/empty.csv", "\"e-empty\"", at(1_700_000_000))?;
    let mut sink = destination.open_rows(&empty).await?;
    sink.finish().await?;
    let key = output_key("", &empty.connector.id, "in/empty.csv", "e-empty");
    ensure!(
        get_object(&cfg, &out, &key).await?.as_deref() == Some(&b""[..]),
        "empty file gives an empty object"
    );
    let listed = s3_client(&cfg)
        .list_objects_v2()
        .bucket(&out)
        .send()
        .await?;
    ensure!(
        listed.contents().len() == 1,
        "only the empty file's object: {:?}",
        listed.contents()
    );
    Ok(())
}

async fn get_record(
    cfg: &SdkConfig,
    table: &str,
    pk: &str,
) -> Result<Option<std::collections::HashMap<String, AttributeValue>>> {
    Ok(dynamodb_client(cfg)
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(pk.into()))
        .consistent_read(true)
        .send()
        .await?
        .item)
}

fn n(item: &std::collections::HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_n().ok()).cloned()
}

fn s(item: &std::collections::HashMap<String, AttributeValue>, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

#[tokio::test]
async fn dynamodb_records_upsert_by_key_and_an_older_file_never_overwrites_a_newer_one(
) -> Result<()> {
    let cfg = emulator().await.sdk_config().await;
    let table = unique_name("records");
    create_records_table(&dynamodb_client(&cfg), &table).await?;
    create_records_table(&dynamodb_client(&cfg), &table).await?; // idempotent
    let destination = AwsDestination::new(s3_client(&cfg), dynamodb_client(&cfg), "unused");
    let config = DestinationConfig::Dynamodb {
        table: table.clone(),
    };

    // The newer version of the file is imported first...
    let newer = job(
        config.clone(),
        "in/orders.csv",
        "\"new\"",
        at(1_700_000_100),
    )?;
    let mut sink = destination.open_rows(&newer).await?;
    sink.write_batch(&batch(&[
        r#"{"id":"1","qty":10,"price":"10.50"}"#,
        r#"{"id":"a#b","qty":20,"price":"0.01"}"#,
        r#"{"id":"1","qty":11,"price":"11.50"}"#,
    ]))
    .await?;
    sink.finish().await?;

    // ...then the older one arrives late: its rows for existing keys are superseded, new keys are written.
    let older = job(
        config.clone(),
        "in/orders.csv",
        "\"old\"",
        at(1_700_000_000),
    )?;
    let mut sink = destination.open_rows(&older).await?;
    sink.write_batch(&batch(&[
        r#"{"id":"1","qty":1,"price":"1.00"}"#,
        r#"{"id":"2","qty":2,"price":"2.00"}"#,
    ]))
    .await?;
    sink.finish().await?;

    let pk1 = "c-0123456789abcdef#1";
    let one = get_record(&cfg, &table, pk1)
        .await?
        .context("record 1 missing")?;
    ensure!(
        n(&one, "qty").as_deref() == Some("11"),
        "later row in the batch wins, newer file kept: {one:?}"
    );
    ensure!(
        n(&one, "price").as_deref() == Some("11.5") || n(&one, "price").as_deref() == Some("11.50"),
        "{one:?}"
    );
    ensure!(
        s(&one, "_source_etag").as_deref() == Some("\"new\""),
        "{one:?}"
    );
    ensure!(
        s(&one, "_source_key").as_deref() == Some("in/orders.csv"),
        "{one:?}"
    );
    ensure!(
        n(&one, "_source_last_modified").as_deref() == Some("1700000100000"),
        "{one:?}"
    );
    ensure!(n(&one, "_source_row").as_deref() == Some("3"), "{one:?}");
    ensure!(
        s(&one, "connector_id").as_deref() == Some("c-0123456789abcdef"),
        "{one:?}"
    );
    ensure!(
        s(&one, "_imported_at").is_some_and(|t| t.ends_with('Z')),
        "{one:?}"
    );

    let escaped = get_record(&cfg, &table, r"c-0123456789abcdef#a\#b").await?;
    ensure!(escaped.is_some(), "'#' in a key value is escaped in pk");
    let two = get_record(&cfg, &table, "c-0123456789abcdef#2")
        .await?
        .context("record 2 missing")?;
    ensure!(
        s(&two, "_source_etag").as_deref() == Some("\"old\""),
        "{two:?}"
    );

    // A retry of the newer file rewrites identical content; an even newer file replaces the row.
    let newest = job(config, "in/orders.csv", "\"newest\"", at(1_700_000_200))?;
    let mut sink = destination.open_rows(&newest).await?;
    sink.write_batch(&batch(&[r#"{"id":"1","qty":99,"price":"9.99"}"#]))
        .await?;
    sink.finish().await?;
    let one = get_record(&cfg, &table, pk1)
        .await?
        .context("record 1 missing")?;
    ensure!(n(&one, "qty").as_deref() == Some("99"), "{one:?}");
    Ok(())
}

#[tokio::test]
async fn error_report_is_written_only_when_rows_were_rejected() -> Result<()> {
    let cfg = emulator().await.sdk_config().await;
    let out = unique_name("reports");
    create_bucket(&cfg, &out).await?;
    let destination = AwsDestination::new(s3_client(&cfg), dynamodb_client(&cfg), &out);
    let config = DestinationConfig::S3Jsonl {
        bucket: out.clone(),
        prefix: "rows".into(),
    };

    let clean = job(config.clone(), "in/clean.csv", "\"c\"", at(1_700_000_000))?;
    let mut report = destination.open_rejects(&clean).await?;
    report.write_rejects(&[]).await?;
    ensure!(report.finish().await?.is_none(), "no rejects, no report");
    let listed = s3_client(&cfg)
        .list_objects_v2()
        .bucket(&out)
        .send()
        .await?;
    ensure!(listed.contents().is_empty(), "{:?}", listed.contents());

    let dirty = job(config, "in/dirty.csv", "\"d\"", at(1_700_000_000))?;
    let mut report = destination.open_rejects(&dirty).await?;
    let rejected = RejectedRow {
        position: Position {
            record: 4,
            line: 5,
            byte: 40,
        },
        errors: vec![
            RowError::column("qty", ErrorCode::FieldCountMismatch, "bad"),
            RowError::record(ErrorCode::InvalidJson, "worse"),
        ],
    };
    report
        .write_rejects(std::slice::from_ref(&rejected))
        .await?;
    let uri = report.finish().await?.context("a report location")?;
    let key = error_report_key(&dirty.connector.id, "in/dirty.csv", "\"d\"");
    ensure!(uri == format!("s3://{out}/{key}"), "{uri}");
    let body = get_object(&cfg, &out, &key)
        .await?
        .context("report missing")?;
    let entries: Vec<ErrorReportEntry> = body
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(serde_json::from_slice)
        .collect::<Result<_, _>>()?;
    ensure!(
        entries.len() == 2 && entries[0].record == 4 && entries[0].line == 5,
        "{entries:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Queue
// ---------------------------------------------------------------------------------------------------------

#[tokio::test]
async fn sqs_batch_send_of_25_messages_arrives_as_25_messages() -> Result<()> {
    let cfg = emulator().await.sdk_config().await;
    let queue_url = create_queue(&cfg, &unique_name("files")).await?;
    let queue = SqsQueue::new(sqs_client(&cfg), &queue_url);
    let messages: Vec<FileMessage> = (0..25)
        .map(|i| FileMessage {
            v: FileMessage::VERSION,
            version: FileVersion {
                connector_id: "c-1".into(),
                bucket: "b".into(),
                key: format!("in/file {i}.csv"),
                etag: format!("\"e{i}\""),
                version_id: None,
            },
            size: i,
            last_modified: at(1_700_000_000),
            piece: 0,
        })
        .collect();
    let accepted = queue.send(&messages).await?;
    ensure!(accepted == vec![true; 25], "{accepted:?}");

    let sqs = sqs_client(&cfg);
    let mut received = Vec::new();
    for _ in 0..20 {
        let out = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .send()
            .await?;
        for message in out.messages() {
            let body = message.body().context("message without body")?;
            received.push(serde_json::from_str::<FileMessage>(body)?);
        }
        if received.len() >= 25 {
            break;
        }
    }
    ensure!(received.len() == 25, "received {}", received.len());
    let keys: BTreeSet<String> = received.into_iter().map(|m| m.version.key).collect();
    ensure!(
        keys == messages.iter().map(|m| m.version.key.clone()).collect(),
        "{keys:?}"
    );
    Ok(())
}
