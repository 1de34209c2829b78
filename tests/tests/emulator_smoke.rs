//! Proves the emulator harness, and pins down how moto behaves where our code depends on AWS
//! semantics. A test named `moto_...` documents a moto behaviour (or a gap); if a moto upgrade changes
//! it, the failing test says which assumption in `infra/local/README.md` to revisit.

use anyhow::{ensure, Context, Result};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, PutRequest,
    ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TimeToLiveSpecification,
    WriteRequest,
};
use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageSystemAttributeName, SendMessageBatchRequestEntry,
};
use s3_importer_tests::{
    create_bucket, create_queue, create_queue_with_dlq, dynamodb_client, emulator, s3_client,
    sqs_client, unique_name, ACCOUNT_ID,
};

#[tokio::test]
async fn emulator_is_shared_by_every_test_in_the_process() -> Result<()> {
    let a = emulator().await;
    let b = emulator().await;
    ensure!(std::ptr::eq(a, b), "two emulators in one process");
    ensure!(a.url().starts_with("http://127.0.0.1:"), "url {}", a.url());
    let vars = a.env_vars();
    ensure!(
        vars.iter()
            .any(|(k, v)| *k == "AWS_ENDPOINT_URL" && v == a.url()),
        "{vars:?}"
    );
    Ok(())
}

#[tokio::test]
async fn s3_round_trips_awkward_keys_and_ranged_gets() -> Result<()> {
    let cfg = emulator().await.sdk_config().await;
    let s3 = s3_client(&cfg);
    let bucket = unique_name("smoke-s3");
    create_bucket(&cfg, &bucket).await?;

    let long_key = format!("deep/{}.csv", "x".repeat(1010));
    let mut keys = vec![
        "key with spaces.csv".to_owned(),
        "a+b=c&d.csv".to_owned(),
        "100%25 literal %.csv".to_owned(),
        "ünïcödé/日本語 file.csv".to_owned(),
        "folder/".to_owned(),
        long_key,
    ];
    for key in &keys {
        s3.put_object()
            .bucket(&bucket)
            .key(key)
            .body(ByteStream::from(format!("body of {key}").into_bytes()))
            .send()
            .await
            .with_context(|| format!("put s3://{bucket}/{key}"))?;
    }

    // S3 lists in UTF-8 byte order; moto agrees.
    keys.sort();
    let listed: Vec<String> = s3
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await?
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    ensure!(listed == keys, "listed {listed:?}\nexpected {keys:?}");

    for key in &keys {
        let body = s3
            .get_object()
            .bucket(&bucket)
            .key(key)
            .send()
            .await
            .with_context(|| format!("get s3://{bucket}/{key}"))?
            .body
            .collect()
            .await?
            .into_bytes();
        ensure!(
            body == format!("body of {key}").as_bytes(),
            "s3://{bucket}/{key}"
        );
    }

    // A ranged GET from an offset to the end, as the worker uses to resume from a checkpoint.
    let key = "key with spaces.csv";
    let ranged = s3
        .get_object()
        .bucket(&bucket)
        .key(key)
        .range("bytes=8-")
        .send()
        .await?;
    let total = format!("body of {key}").len();
    ensure!(
        ranged.content_range() == Some(&format!("bytes 8-{}/{total}", total - 1)),
        "content range {:?}",
        ranged.content_range()
    );
    let tail = ranged.body.collect().await?.into_bytes();
    ensure!(tail.as_ref() == key.as_bytes(), "range body {tail:?}");

    // A range past the end is 416 InvalidRange, as on AWS.
    let err = s3
        .get_object()
        .bucket(&bucket)
        .key(key)
        .range(format!("bytes={}-", total + 10))
        .send()
        .await
        .expect_err("range past the end");
    ensure!(err.code() == Some("InvalidRange"), "{err:?}");
    Ok(())
}

#[tokio::test]
async fn moto_enforces_if_match_but_ignores_expected_bucket_owner() -> Result<()> {
    let cfg = emulator().await.sdk_config().await;
    let s3 = s3_client(&cfg);
    let bucket = unique_name("smoke-cond");
    create_bucket(&cfg, &bucket).await?;
    let etag = s3
        .put_object()
        .bucket(&bucket)
        .key("a.csv")
        .body(ByteStream::from_static(b"id\n1\n"))
        .send()
        .await?
        .e_tag
        .context("no ETag")?;

    s3.get_object()
        .bucket(&bucket)
        .key("a.csv")
        .if_match(&etag)
        .send()
        .await
        .context("IfMatch with the current ETag")?;

    // Enforced: a stale ETag is 412 PreconditionFailed (the worker's `superseded` path).
    let err = s3
        .get_object()
        .bucket(&bucket)
        .key("a.csv")
        .if_match("\"00000000000000000000000000000000\"")
        .send()
        .await
        .expect_err("stale IfMatch");
    ensure!(err.code() == Some("PreconditionFailed"), "{err:?}");

    // Enforced: NoSuchKey (the worker's `gone` path).
    let err = s3
        .get_object()
        .bucket(&bucket)
        .key("missing.csv")
        .send()
        .await
        .expect_err("missing key");
    ensure!(err.code() == Some("NoSuchKey"), "{err:?}");

    // GAP: AWS answers 403 AccessDenied for a wrong ExpectedBucketOwner; moto ignores the header.
    // Tests of the bucket-owner check must use the in-memory adapter, not the emulator.
    ensure!(ACCOUNT_ID != "111111111111");
    s3.get_object()
        .bucket(&bucket)
        .key("a.csv")
        .expected_bucket_owner("111111111111")
        .send()
        .await
        .context("moto now enforces ExpectedBucketOwner: update infra/local/README.md")?;
    Ok(())
}

#[tokio::test]
async fn moto_reports_multipart_last_modified_as_completion_time() -> Result<()> {
    let cfg = emulator().await.sdk_config().await;
    let s3 = s3_client(&cfg);
    let bucket = unique_name("smoke-mpu");
    create_bucket(&cfg, &bucket).await?;

    let upload = s3
        .create_multipart_upload()
        .bucket(&bucket)
        .key("big.csv")
        .send()
        .await?;
    let upload_id = upload.upload_id().context("no UploadId")?;
    let started = std::time::SystemTime::now();
    // LastModified has second resolution: cross at least one second boundary.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let part = s3
        .upload_part()
        .bucket(&bucket)
        .key("big.csv")
        .upload_id(upload_id)
        .part_number(1)
        .body(ByteStream::from_static(b"id\n1\n"))
        .send()
        .await?;
    s3.complete_multipart_upload()
        .bucket(&bucket)
        .key("big.csv")
        .upload_id(upload_id)
        .multipart_upload(
            aws_sdk_s3::types::CompletedMultipartUpload::builder()
                .parts(
                    aws_sdk_s3::types::CompletedPart::builder()
                        .part_number(1)
                        .set_e_tag(part.e_tag)
                        .build(),
                )
                .build(),
        )
        .send()
        .await?;
    let head = s3
        .head_object()
        .bucket(&bucket)
        .key("big.csv")
        .send()
        .await?;
    let last_modified = head.last_modified().context("no LastModified")?.secs();
    let started_secs = started.duration_since(std::time::UNIX_EPOCH)?.as_secs() as i64;
    // GAP: AWS sets a multipart object's LastModified to the upload's *start*; moto uses completion.
    // The lister's overlap window exists for the AWS behaviour; the emulator cannot reproduce it.
    ensure!(
        last_modified > started_secs,
        "moto now reports the multipart start time ({last_modified} <= {started_secs}): update infra/local/README.md"
    );
    ensure!(
        head.e_tag().is_some_and(|e| e.ends_with("-1\"")),
        "multipart ETag {:?}",
        head.e_tag()
    );
    Ok(())
}

#[tokio::test]
async fn sqs_batch_send_receive_delete() -> Result<()> {
    let cfg = emulator().await.sdk_config().await;
    let sqs = sqs_client(&cfg);
    let queue_url = create_queue(&cfg, &unique_name("smoke-q")).await?;

    let entries: Vec<_> = (0..10)
        .map(|i| {
            SendMessageBatchRequestEntry::builder()
                .id(format!("m{i}"))
                .message_body(format!("{{\"n\":{i}}}"))
                .build()
        })
        .collect::<Result<_, _>>()?;
    let sent = sqs
        .send_message_batch()
        .queue_url(&queue_url)
        .set_entries(Some(entries.clone()))
        .send()
        .await?;
    ensure!(
        sent.successful().len() == 10 && sent.failed().is_empty(),
        "{sent:?}"
    );

    // Enforced: more than 10 entries in a batch is rejected, as on AWS.
    let mut eleven = entries;
    eleven.push(
        SendMessageBatchRequestEntry::builder()
            .id("m10")
            .message_body("x")
            .build()?,
    );
    let err = sqs
        .send_message_batch()
        .queue_url(&queue_url)
        .set_entries(Some(eleven))
        .send()
        .await
        .expect_err("11 entries");
    ensure!(
        err.code() == Some("AWS.SimpleQueueService.TooManyEntriesInBatchRequest"),
        "{err:?}"
    );

    let mut bodies = Vec::new();
    for _ in 0..5 {
        let received = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .send()
            .await?;
        let messages = received.messages();
        if messages.is_empty() {
            break;
        }
        let deletes = messages
            .iter()
            .enumerate()
            .map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(format!("d{i}"))
                    .set_receipt_handle(m.receipt_handle().map(str::to_owned))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        bodies.extend(messages.iter().filter_map(|m| m.body().map(str::to_owned)));
        let deleted = sqs
            .delete_message_batch()
            .queue_url(&queue_url)
            .set_entries(Some(deletes))
            .send()
            .await?;
        ensure!(deleted.failed().is_empty(), "{deleted:?}");
    }
    bodies.sort();
    let mut expected: Vec<String> = (0..10).map(|i| format!("{{\"n\":{i}}}")).collect();
    expected.sort();
    ensure!(bodies == expected, "received {bodies:?}");

    let left = sqs.receive_message().queue_url(&queue_url).send().await?;
    ensure!(left.messages().is_empty(), "queue not empty: {left:?}");
    Ok(())
}

#[tokio::test]
async fn moto_moves_a_message_to_the_dlq_after_max_receive_count() -> Result<()> {
    let cfg = emulator().await.sdk_config().await;
    let sqs = sqs_client(&cfg);
    let queues = create_queue_with_dlq(&cfg, &unique_name("smoke-redrive"), 2, 0).await?;
    sqs.send_message()
        .queue_url(&queues.queue_url)
        .message_body("poison")
        .send()
        .await?;

    let mut counts = Vec::new();
    for _ in 0..3 {
        let received = sqs
            .receive_message()
            .queue_url(&queues.queue_url)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await?;
        counts.extend(received.messages().iter().map(|m| {
            m.attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .cloned()
                .unwrap_or_default()
        }));
    }
    // Received twice (visibility timeout 0, never deleted); the third receive moves it to the DLQ.
    ensure!(counts == ["1", "2"], "receive counts {counts:?}");
    let dead = sqs
        .receive_message()
        .queue_url(&queues.dlq_url)
        .send()
        .await?;
    let bodies: Vec<_> = dead.messages().iter().filter_map(|m| m.body()).collect();
    ensure!(bodies == ["poison"], "dlq holds {bodies:?}");
    Ok(())
}

async fn create_table(cfg: &aws_config::SdkConfig, name: &str) -> Result<()> {
    dynamodb_client(cfg)
        .create_table()
        .table_name(name)
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()?,
        )
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()?,
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .with_context(|| format!("create table {name}"))?;
    Ok(())
}

#[tokio::test]
async fn dynamodb_conditional_put_fails_the_second_time() -> Result<()> {
    let cfg = emulator().await.sdk_config().await;
    let ddb = dynamodb_client(&cfg);
    let table = unique_name("smoke-ddb");
    create_table(&cfg, &table).await?;

    let claim = || {
        ddb.put_item()
            .table_name(&table)
            .item("pk", AttributeValue::S("file#a.csv#etag1".into()))
            .item("state", AttributeValue::S("claimed".into()))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
    };
    claim().send().await.context("first claim")?;
    let err = claim()
        .send()
        .await
        .expect_err("second claim must fail")
        .into_service_error();
    // Enforced, with ReturnValuesOnConditionCheckFailure=ALL_OLD honoured: the existing item comes back.
    let aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(
        failed,
    ) = &err
    else {
        anyhow::bail!("expected ConditionalCheckFailedException, got {err:?}");
    };
    let state = failed.item().and_then(|i| i.get("state"));
    ensure!(
        state == Some(&AttributeValue::S("claimed".into())),
        "old item {:?}",
        failed.item()
    );
    Ok(())
}

#[tokio::test]
async fn moto_does_not_enforce_batch_write_limit_or_expire_ttl() -> Result<()> {
    let cfg = emulator().await.sdk_config().await;
    let ddb = dynamodb_client(&cfg);
    let table = unique_name("smoke-gaps");
    create_table(&cfg, &table).await?;

    // GAP: AWS rejects BatchWriteItem with more than 25 requests (ValidationException); moto takes 26.
    // Code must chunk by 25 itself; only unit tests can prove it does.
    let requests = (0..26)
        .map(|i| {
            Ok(WriteRequest::builder()
                .put_request(
                    PutRequest::builder()
                        .item("pk", AttributeValue::S(format!("row{i}")))
                        .build()?,
                )
                .build())
        })
        .collect::<Result<Vec<_>>>()?;
    let out = ddb
        .batch_write_item()
        .request_items(&table, requests)
        .send()
        .await
        .context(
            "moto now enforces the 25-item BatchWriteItem limit: update infra/local/README.md",
        )?;
    ensure!(
        out.unprocessed_items().is_none_or(|u| u.is_empty()),
        "{out:?}"
    );

    // GAP: TTL is accepted but never expires items, even ones that expired in 1970.
    ddb.update_time_to_live()
        .table_name(&table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name("expires_at")
                .build()?,
        )
        .send()
        .await?;
    ddb.put_item()
        .table_name(&table)
        .item("pk", AttributeValue::S("lease".into()))
        .item("expires_at", AttributeValue::N("1".into()))
        .send()
        .await?;
    let got = ddb
        .get_item()
        .table_name(&table)
        .key("pk", AttributeValue::S("lease".into()))
        .send()
        .await?;
    ensure!(
        got.item().is_some(),
        "moto now expires TTL items: update infra/local/README.md"
    );
    Ok(())
}
