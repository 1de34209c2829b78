//! What the AWS adapters (`s3-importer-aws`) do on the emulator beyond their ports' contract suites
//! (`contract_source.rs`, `contract_queue.rs`, `contract_destination.rs`, `state_contract_dynamodb.rs`):
//! sources read through an assumed role, moto's restore gap, the records table's item layout, the JSONL
//! object's bytes and metadata, and where the error report lives. What moto does not enforce
//! (`ExpectedBucketOwner`, STS `ExternalId`) is asserted on the requests by the unit tests in `crates/aws`.

use anyhow::{ensure, Context, Result};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_s3::primitives::ByteStream;
use chrono::{DateTime, TimeZone, Utc};
use s3_importer_aws::destination::{error_report_key, output_key};
use s3_importer_aws::{create_records_table, AwsDestination, S3Source};
use s3_importer_core::sink::{ErrorReportEntry, RejectedRow};
use s3_importer_core::sync::contract::fixtures;
use s3_importer_core::sync::ports::{ByteRange, Destination, FileJob, ObjectSource};
use s3_importer_core::sync::{DestinationConfig, ObjectMeta, Source};
use s3_importer_core::template::Template;
use s3_importer_core::{ErrorCode, Position, RowError};
use s3_importer_tests::deployment::TEMPLATE;
use s3_importer_tests::{
    create_bucket, dynamodb_client, emulator, s3_client, unique_name, ACCOUNT_ID, REGION,
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
        versions: false,
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
    let mut body = s3.open(source, key, etag, None, range).await?;
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
    // The suites' template (`id`, `qty`) and a decimal, which the records table stores as an exact number.
    let template = Template::from_toml(&format!(
        "{TEMPLATE}\n[[fields]]\nname = \"price\"\ntype = \"decimal\"\nscale = 2\n"
    ))?;
    let object = ObjectMeta::new(key, etag, 100, last_modified);
    Ok(fixtures::file_job(
        "c-0123456789abcdef",
        source("source-bucket", None),
        destination,
        template,
        &object,
    ))
}

// ---------------------------------------------------------------------------------------------------------
// Source
// ---------------------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------------------
// Destinations
// ---------------------------------------------------------------------------------------------------------

/// What the destination contract does not see: the JSONL object's exact bytes (each row newline-terminated)
/// and its metadata naming the source (percent-encoded).
#[tokio::test]
async fn s3_jsonl_output_is_the_rows_as_lines_and_names_its_source() -> Result<()> {
    let cfg = emulator().await.sdk_config().await;
    let out = unique_name("jsonl-out");
    create_bucket(&cfg, &out).await?;
    let destination = AwsDestination::new(s3_client(&cfg), dynamodb_client(&cfg), &out);
    let config = DestinationConfig::S3Jsonl {
        bucket: out.clone(),
        prefix: "normalized/".into(),
    };
    let job = job(config, "in/orders 1.csv", "\"etag-1\"", at(1_700_000_000))?;
    let key = output_key("normalized", &job.connector.id, "in/orders 1.csv", "etag-1");
    let mut sink = destination.open_rows(&job).await?;
    sink.write_batch(&fixtures::batch_of(&[
        r#"{"id":"1","qty":2,"price":"2.00"}"#,
        r#"{"id":"2","qty":3,"price":"3.00"}"#,
    ]))
    .await?;
    sink.finish().await?;
    let body = get_object(&cfg, &out, &key)
        .await?
        .context("output missing after finish")?;
    ensure!(
        body == b"{\"id\":\"1\",\"qty\":2,\"price\":\"2.00\"}\n{\"id\":\"2\",\"qty\":3,\"price\":\"3.00\"}\n",
        "{:?}",
        String::from_utf8_lossy(&body)
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

/// The records table's item layout, which the destination contract (upserts, the ordering guard, lineage)
/// does not see: the key with `#` escaped, decimals as exact numbers, the connector and import time
/// attributes; and creating the table twice is fine.
#[tokio::test]
async fn dynamodb_records_item_layout() -> Result<()> {
    let cfg = emulator().await.sdk_config().await;
    let table = unique_name("records");
    create_records_table(&dynamodb_client(&cfg), &table).await?;
    create_records_table(&dynamodb_client(&cfg), &table).await?; // idempotent
    let destination = AwsDestination::new(s3_client(&cfg), dynamodb_client(&cfg), "unused");
    let config = DestinationConfig::Dynamodb {
        table: table.clone(),
    };
    let newer = job(config, "in/orders.csv", "\"new\"", at(1_700_000_100))?;
    let mut sink = destination.open_rows(&newer).await?;
    sink.write_batch(&fixtures::batch_of(&[
        r#"{"id":"1","qty":10,"price":"10.50"}"#,
        r#"{"id":"a#b","qty":20,"price":"0.01"}"#,
        r#"{"id":"1","qty":11,"price":"11.50"}"#,
    ]))
    .await?;
    sink.finish().await?;

    let one = get_record(&cfg, &table, "c-0123456789abcdef#1")
        .await?
        .context("record 1 missing")?;
    ensure!(n(&one, "qty").as_deref() == Some("11"), "{one:?}");
    ensure!(
        n(&one, "price").as_deref() == Some("11.5") || n(&one, "price").as_deref() == Some("11.50"),
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
    Ok(())
}

/// What the destination contract does not see: where the S3 error report lives (the file version's key in
/// the output bucket), and that a file with no rejected row writes nothing there.
#[tokio::test]
async fn error_report_lives_at_the_file_versions_key_and_a_clean_file_writes_none() -> Result<()> {
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
