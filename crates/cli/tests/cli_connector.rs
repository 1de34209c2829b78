//! The connector lifecycle, run as a user runs it: the `s3-importer` binary against a deployment provisioned
//! on the local AWS emulator (moto). Each test has its own tables, queue and buckets.

use std::process::{Command, Output, Stdio};

mod common;
#[cfg(unix)]
use common::closed_pipe;
use common::create_connector;
use common::deployment::Deployment;

use anyhow::{Context, Result};
use s3_importer_aws::provision::{self, Names};
use s3_importer_tests::unique_name;
use serde_json::{json, Value};

fn statuses(files: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = files
        .as_array()
        .expect("a list of files")
        .iter()
        .map(|f| {
            (
                f["version"]["key"].as_str().unwrap_or_default().to_owned(),
                f["status"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn create_validates_every_input_and_prints_the_policies() -> Result<()> {
    let d = Deployment::new().await?;
    d.add_template();
    let bucket = d.bucket_with_demo_files("in/").await?;

    let created = d.create("orders", &bucket, &["--folder", "in/"]);
    let external_id = created["external_id"].as_str().unwrap().to_owned();
    assert_eq!(external_id.len(), 32, "{external_id}");
    assert!(external_id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(created["role_name"], "s3-importer-orders");
    assert_eq!(
        created["role_arn"],
        "arn:aws:iam::123456789012:role/s3-importer-orders"
    );
    assert_eq!(
        created["permission_policy"],
        json!({
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "ListTheFolder", "Effect": "Allow", "Action": "s3:ListBucket",
                 "Resource": format!("arn:aws:s3:::{bucket}"),
                 "Condition": {"StringLike": {"s3:prefix": ["in/*"]}}},
                {"Sid": "ReadTheFiles", "Effect": "Allow", "Action": "s3:GetObject",
                 "Resource": format!("arn:aws:s3:::{bucket}/in/*")}
            ]
        })
    );
    // Without --stack or role options the trust policy names the deployment's account (moto's).
    assert_eq!(
        created["trust_policy"]["Statement"][0]["Principal"]["AWS"],
        "arn:aws:iam::123456789012:root"
    );
    assert_eq!(
        created["trust_policy"]["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"],
        external_id.as_str()
    );
    s3_importer_core::policy::check_policy_document(&created["permission_policy"]).unwrap();
    s3_importer_core::policy::check_policy_document(&created["trust_policy"]).unwrap();

    // `connector policy` prints the same documents again (the External ID is stored), plus KMS on request.
    let again = d.json(&["connector", "policy", "orders", "--json"]);
    assert_eq!(again["trust_policy"], created["trust_policy"]);
    assert_eq!(again["permission_policy"], created["permission_policy"]);
    let key = "arn:aws:kms:us-east-1:123456789012:key/k-1";
    let kms = d.json(&[
        "connector",
        "policy",
        "orders",
        "--kms-key-arn",
        key,
        "--json",
    ]);
    assert_eq!(
        kms["permission_policy"]["Statement"][2]["Action"],
        "kms:Decrypt"
    );
    assert_eq!(kms["permission_policy"]["Statement"][2]["Resource"], key);
    let text = d.expect(0, &["connector", "policy", "orders"]);
    assert!(
        text.contains("create the IAM role s3-importer-orders"),
        "{text}"
    );
    assert!(text.contains(&external_id), "{text}");

    // A second connector gets its own External ID.
    let other = d.create("orders-2", &bucket, &[]);
    assert_ne!(other["external_id"], created["external_id"]);
    assert_eq!(
        other["permission_policy"]["Statement"][1]["Resource"],
        format!("arn:aws:s3:::{bucket}/*")
    );

    // Failure paths: each names the input and ends with its exit status.
    let base = |name: &'static str, bucket: &str, account: &str, region: &str, template: &str| {
        d.cli(&create_connector(name, account, bucket, region, template))
    };
    let check = |out: Output, code: i32, needle: &str| {
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{stderr}");
        assert!(stderr.contains(needle), "expected {needle:?} in: {stderr}");
    };
    check(
        base(
            "orders",
            &bucket,
            "123456789012",
            "us-east-1",
            "demo-orders",
        ),
        4,
        "already exists",
    );
    check(
        base(
            "x1",
            "Bad_Bucket",
            "123456789012",
            "us-east-1",
            "demo-orders",
        ),
        2,
        "not a valid S3 bucket name",
    );
    check(
        base("x2", &bucket, "12345", "us-east-1", "demo-orders"),
        2,
        "12-digit",
    );
    check(
        base("x3", &bucket, "123456789012", "mars-1", "demo-orders"),
        2,
        "not an AWS region",
    );
    check(
        base("x4", &bucket, "123456789012", "us-east-1", "nope"),
        3,
        "no template",
    );
    check(
        base(
            "bad name",
            &bucket,
            "123456789012",
            "us-east-1",
            "demo-orders",
        ),
        2,
        "not a valid connector name",
    );
    check(
        d.cli(&["connector", "show", "ghost"]),
        3,
        "no connector named",
    );
    check(
        d.cli(&["connector", "policy", "ghost"]),
        3,
        "no connector named",
    );
    check(
        d.cli(&["connector", "verify", "ghost"]),
        3,
        "no connector named",
    );
    // Nothing half-made: the failed creates left no connector.
    let list = d.json(&["connector", "list", "--json"]);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["orders", "orders-2"]);
    Ok(())
}

#[tokio::test]
async fn lifecycle_preview_sync_status_edit_retry_pause_delete() -> Result<()> {
    let d = Deployment::new().await?;
    d.add_template();
    let bucket = d.bucket_with_demo_files("in/").await?;
    // A CSV whose header lacks required columns: the file fails as a whole.
    d.put(&bucket, "in/broken.csv", b"Order ID,Customer\n1,Ann\n")
        .await?;
    d.create("shop", &bucket, &["--folder", "in/"]);

    // Preview: what a sync would do, and the first rows of a file with a bad row shown inline.
    let preview = d.json(&["connector", "preview", "shop", "--json"]);
    let actions: Vec<(String, String)> = preview["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["key"].as_str().unwrap().to_owned(),
                f["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("in/README.txt".to_owned(), "skip".to_owned()),
            ("in/broken.csv".to_owned(), "import".to_owned()),
            ("in/orders-2024-05-01.csv".to_owned(), "import".to_owned()),
            (
                "in/orders-2024-05-04-bad.csv".to_owned(),
                "import".to_owned()
            ),
        ]
    );
    let bad = d.json(&[
        "connector",
        "preview",
        "shop",
        "--file",
        "in/orders-2024-05-04-bad.csv",
        "--rows",
        "4",
        "--json",
    ]);
    let rows = bad["sample"]["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{bad:#}");
    assert!(rows.iter().any(|r| r["row"].is_object()), "{bad:#}");
    let rejected: Vec<&Value> = rows.iter().filter(|r| r["errors"].is_array()).collect();
    assert!(!rejected.is_empty(), "{bad:#}");
    assert!(rejected[0]["errors"][0]["code"].is_string());
    let text = d.expect(
        0,
        &[
            "connector",
            "preview",
            "shop",
            "--file",
            "in/orders-2024-05-04-bad.csv",
        ],
    );
    assert!(text.contains("REJECTED"), "{text}");
    let broken = d.json(&[
        "connector",
        "preview",
        "shop",
        "--file",
        "in/broken.csv",
        "--json",
    ]);
    assert!(
        broken["sample"]["file_error"]
            .as_str()
            .unwrap()
            .contains("required"),
        "{broken:#}"
    );
    // A preview writes nothing.
    assert_eq!(d.json(&["connector", "files", "shop", "--json"]), json!([]));

    // Sync now, then the workers (the local runner drains the queue).
    let synced = d.json(&["connector", "sync", "shop", "--json"]);
    assert_eq!(synced["outcome"], "ran");
    assert_eq!(synced["run"]["enqueued"], 3, "{synced:#}");
    d.expect(0, &["run", "--once", "--connector", "shop"]);
    let files = d.json(&["connector", "files", "shop", "--json"]);
    assert_eq!(
        statuses(&files),
        [
            ("in/README.txt".to_owned(), "skipped".to_owned()),
            ("in/broken.csv".to_owned(), "failed".to_owned()),
            ("in/orders-2024-05-01.csv".to_owned(), "imported".to_owned()),
            (
                "in/orders-2024-05-04-bad.csv".to_owned(),
                "imported".to_owned()
            ),
        ]
    );
    let failed = d.json(&["connector", "files", "shop", "--status", "failed", "--json"]);
    assert_eq!(failed.as_array().unwrap().len(), 1);
    let future = d.json(&[
        "connector",
        "files",
        "shop",
        "--since",
        "2999-01-01",
        "--json",
    ]);
    assert_eq!(future, json!([]));
    let recent = d.json(&["connector", "files", "shop", "--since", "1h", "--json"]);
    assert_eq!(recent.as_array().unwrap().len(), 4);
    let table = d.expect(0, &["connector", "files", "shop", "--timeline"]);
    assert!(
        table.contains("ATTEMPTS") && table.contains("error report: s3://"),
        "{table}"
    );

    // Preview again: imported files are known.
    let again = d.json(&["connector", "preview", "shop", "--json"]);
    assert_eq!(again["counts"]["already_imported"], 2, "{again:#}");
    assert_eq!(again["counts"]["already_failed"], 1, "{again:#}");

    // Status and history.
    let show = d.json(&["connector", "show", "shop", "--json"]);
    assert_eq!(show["connector"]["status"]["state"], "active");
    assert_eq!(show["template"], json!({"id": "demo-orders", "version": 1}));
    assert_eq!(show["totals"]["files"], 4);
    assert_eq!(show["totals"]["rows_imported"], 7);
    assert_eq!(show["totals"]["rows_rejected"], 5);
    // The last sync is the runner's, which found nothing new.
    assert_eq!(show["connector"]["last_sync"]["enqueued"], 0);
    assert_eq!(show["connector"]["last_sync"]["already_known"], 4);
    let text = d.expect(0, &["connector", "show", "shop"]);
    assert!(
        text.contains("demo-orders version 1 (latest)") && text.contains("7 imported, 5 rejected"),
        "{text}"
    );
    let syncs = d.json(&["connector", "syncs", "shop", "--json"]);
    let enqueued: Vec<&Value> = syncs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["enqueued"])
        .collect();
    assert_eq!(enqueued, [&json!(0), &json!(3)], "newest first: {syncs:#}");
    let list = d.expect(0, &["connector", "list"]);
    assert!(list.contains("shop") && list.contains("enqueued"), "{list}");

    // Retry the failed file after fixing nothing: it is re-queued through the ledger, fails again, and the
    // imported files are not imported twice.
    let retried = d.json(&["connector", "retry", "shop", "--json"]);
    assert_eq!(retried["requeued"], json!(["in/broken.csv"]));
    let queued = d.json(&["connector", "files", "shop", "--status", "queued", "--json"]);
    assert_eq!(queued.as_array().unwrap().len(), 1);
    d.expect(0, &["run", "--once", "--connector", "shop"]);
    let files = d.json(&["connector", "files", "shop", "--json"]);
    let broken_entry = files
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["version"]["key"] == "in/broken.csv")
        .unwrap();
    assert_eq!(broken_entry["status"], "failed");
    assert_eq!(broken_entry["attempts"], 2);
    for f in files
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["status"] == "imported")
    {
        assert_eq!(f["attempts"], 1, "imported twice: {f:#}");
    }
    let nothing = d.expect(
        3,
        &["connector", "retry", "shop", "in/orders-2024-05-01.csv"],
    );
    assert!(nothing.contains("no failed file"), "{nothing}");

    // Replay: without --yes a plan and the rows at stake, nothing sent; with it, the one file version again.
    let plan = d.json(&[
        "connector",
        "replay",
        "shop",
        "--key",
        "in/orders-2024-05-01.csv",
        "--json",
    ]);
    assert_eq!(plan["dry_run"], true, "{plan:#}");
    assert_eq!(plan["replay"][0]["key"], "in/orders-2024-05-01.csv");
    assert!(plan["rows_at_stake"].as_u64().unwrap() > 0, "{plan:#}");
    let text = d.expect(0, &["connector", "replay", "shop", "--status", "imported"]);
    assert!(
        text.contains("would replay") && text.contains("add --yes"),
        "{text}"
    );
    let queued = d.json(&["connector", "files", "shop", "--status", "queued", "--json"]);
    assert!(
        queued.as_array().unwrap().is_empty(),
        "a dry run sends nothing"
    );
    let unknown = d.expect(3, &["connector", "replay", "shop", "--key", "in/nope.csv"]);
    assert!(unknown.contains("has no file"), "{unknown}");
    d.expect(2, &["connector", "replay", "shop", "--status", "queued"]);
    let replayed = d.json(&[
        "connector",
        "replay",
        "shop",
        "--key",
        "in/orders-2024-05-01.csv",
        "--yes",
        "--json",
    ]);
    assert_eq!(replayed["requeued"], json!(["in/orders-2024-05-01.csv"]));
    d.expect(0, &["run", "--once", "--connector", "shop"]);
    let files = d.json(&["connector", "files", "shop", "--json"]);
    let replayed_entry = files
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["version"]["key"] == "in/orders-2024-05-01.csv")
        .unwrap();
    assert_eq!(
        (
            &replayed_entry["status"],
            &replayed_entry["attempts"],
            &replayed_entry["replays"]
        ),
        (&json!("imported"), &json!(2), &json!(1)),
        "{replayed_entry:#}"
    );
    // Nothing in the dead-letter queue: a re-drive says so.
    let redriven = d.expect(0, &["connector", "redrive", "shop"]);
    assert!(redriven.contains("no dead-lettered files"), "{redriven}");

    // Update: rename and change the template; unknown template refused.
    d.expect(
        0,
        &[
            "template",
            "add",
            "examples/demo/orders.toml",
            "--id",
            "orders-v2",
        ],
    );
    d.expect(
        0,
        &[
            "connector",
            "update",
            "shop",
            "--name",
            "shop-eu",
            "--template",
            "orders-v2",
        ],
    );
    d.expect(3, &["connector", "show", "shop"]);
    let show = d.json(&["connector", "show", "shop-eu", "--json"]);
    assert_eq!(show["connector"]["template_id"], "orders-v2");
    assert_eq!(show["totals"]["files"], 4, "the ledger follows the rename");
    d.expect(
        3,
        &["connector", "update", "shop-eu", "--template", "missing"],
    );
    d.create("taken", &bucket, &[]);
    d.expect(4, &["connector", "update", "shop-eu", "--name", "taken"]);
    d.expect(2, &["connector", "update", "shop-eu"]);
    // The bucket's recorded region can be corrected (a bad one is refused); the ledger stays.
    d.expect(
        2,
        &[
            "connector",
            "update",
            "shop-eu",
            "--bucket-region",
            "nowhere",
        ],
    );
    d.expect(
        0,
        &[
            "connector",
            "update",
            "shop-eu",
            "--bucket-region",
            "eu-west-1",
        ],
    );
    let show = d.json(&["connector", "show", "shop-eu", "--json"]);
    assert_eq!(show["connector"]["source"]["region"], "eu-west-1");
    assert_eq!(show["totals"]["files"], 4);
    d.expect(
        0,
        &[
            "connector",
            "update",
            "shop-eu",
            "--bucket-region",
            "us-east-1",
        ],
    );

    // Pause: no sync; resume verifies and activates.
    d.expect(0, &["connector", "pause", "shop-eu"]);
    let show = d.json(&["connector", "show", "shop-eu", "--json"]);
    assert_eq!(show["connector"]["status"]["state"], "paused");
    let refused = d.expect(2, &["connector", "sync", "shop-eu"]);
    assert!(refused.contains("resume"), "{refused}");
    let resumed = d.expect(0, &["connector", "resume", "shop-eu"]);
    assert!(resumed.contains("is active"), "{resumed}");

    // Delete: needs confirmation; removes the state, never the source files.
    let unconfirmed = d.expect(2, &["connector", "delete", "shop-eu"]);
    assert!(unconfirmed.contains("--yes"), "{unconfirmed}");
    d.expect(0, &["connector", "show", "shop-eu"]);
    let deleted = d.expect(0, &["connector", "delete", "shop-eu", "--yes"]);
    assert!(deleted.contains("was not touched"), "{deleted}");
    d.expect(3, &["connector", "show", "shop-eu"]);
    d.expect(3, &["connector", "delete", "shop-eu", "--yes"]);
    let left = s3_importer_aws::s3_client(&d.sdk)
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await?;
    assert_eq!(left.contents().len(), 4, "the source bucket is untouched");
    Ok(())
}

#[tokio::test]
async fn verify_passes_on_a_readable_source_and_names_a_missing_bucket() -> Result<()> {
    let d = Deployment::new().await?;
    d.add_template();
    let bucket = d.bucket_with_demo_files("in/").await?;
    d.create("good", &bucket, &["--folder", "in/"]);
    let report = d.json(&["connector", "verify", "good", "--json"]);
    assert_eq!(report["ok"], true, "{report:#}");
    let checks: Vec<(&str, &str)> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["check"].as_str().unwrap(), c["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        checks,
        [
            ("assume_role", "skipped"),
            ("external_id_required", "skipped"),
            ("bucket", "pass"),
            ("list", "pass"),
            ("archived", "pass"),
            ("read", "pass"),
        ]
    );
    assert_eq!(report["sample_key"], "in/orders-2024-05-01.csv");

    let missing = unique_name("gone");
    d.create("lost", &missing, &[]);
    let out = d.cli(&["connector", "verify", "lost", "--json"]);
    assert_eq!(out.status.code(), Some(5));
    let report: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(report["ok"], false);
    assert_eq!(report["checks"][2]["check"], "bucket");
    assert_eq!(report["checks"][2]["cause"], "no_such_bucket", "{report:#}");
    assert!(report["checks"][2]["fix"]
        .as_str()
        .unwrap()
        .contains("bucket name"));
    let text = d.expect(5, &["connector", "verify", "lost"]);
    assert!(
        text.contains("FAIL") && text.contains("does not exist"),
        "{text}"
    );

    // reauth re-verifies: a failure marks the connector broken with the reason; exit 5.
    let out = d.expect(5, &["connector", "reauth", "lost", "--rotate-external-id"]);
    assert!(out.contains("is broken"), "{out}");
    let show = d.json(&["connector", "show", "lost", "--json"]);
    assert_eq!(show["connector"]["status"]["state"], "broken");
    assert!(show["connector"]["status"]["reason"]
        .as_str()
        .unwrap()
        .contains("does not exist"));
    // Fix the cause (create the bucket), reauth again: active.
    provision::create_bucket(&d.sdk, &missing).await?;
    let before = show["connector"]["source"]["external_id"].clone();
    let out = d.expect(0, &["connector", "reauth", "lost"]);
    assert!(out.contains("is active"), "{out}");
    let show = d.json(&["connector", "show", "lost", "--json"]);
    assert_eq!(show["connector"]["status"]["state"], "active");
    assert_eq!(
        show["connector"]["source"]["external_id"], before,
        "no rotation without the flag"
    );
    Ok(())
}

#[tokio::test]
async fn template_validate_dry_runs_local_files_and_s3_objects() -> Result<()> {
    let d = Deployment::new().await?;
    let bucket = d.bucket_with_demo_files("in/").await?;
    let valid = d.expect(0, &["template", "validate", "examples/demo/orders.toml"]);
    assert!(valid.contains("valid template"), "{valid}");
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("bad.toml"),
        "name = \"x\"\n[[fields]]\nname = 1\n",
    )?;
    let bad = dir.path().join("bad.toml");
    d.expect(2, &["template", "validate", bad.to_str().unwrap()]);

    let out = d.cli(&[
        "template",
        "validate",
        "examples/demo/orders.toml",
        "--against",
        "examples/demo/files",
        "--json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Value = serde_json::from_slice(&out.stdout)?;
    let by_file = |suffix: &str| {
        results
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["file"].as_str().unwrap().ends_with(suffix))
            .cloned()
            .unwrap()
    };
    assert_eq!(by_file("orders-2024-05-01.csv")["passed"], 5);
    assert_eq!(by_file("orders-2024-05-01.csv")["rejected"], 0);
    let bad = by_file("orders-2024-05-04-bad.csv");
    assert_eq!(
        (bad["passed"].as_u64(), bad["rejected"].as_u64()),
        (Some(2), Some(5))
    );
    assert!(!bad["first_errors"].as_array().unwrap().is_empty());
    assert!(by_file("README.txt")["file_error"]
        .as_str()
        .unwrap()
        .contains("unsupported"));

    let uri = format!("s3://{bucket}/in/orders-2024-05-01.csv");
    let clean = d.json(&[
        "template",
        "validate",
        "examples/demo/orders.toml",
        "--against",
        &uri,
        "--json",
    ]);
    assert_eq!(clean[0]["passed"], 5);
    let all = d.expect(
        5,
        &[
            "template",
            "validate",
            "examples/demo/orders.toml",
            "--against",
            &format!("s3://{bucket}/in/"),
        ],
    );
    assert!(
        all.contains("orders-2024-05-04-bad.csv") && all.contains("nothing was written"),
        "{all}"
    );
    d.expect(
        3,
        &[
            "template",
            "validate",
            "examples/demo/orders.toml",
            "--against",
            "no/such/dir",
        ],
    );
    // Nothing was written: no template stored, no connector.
    assert_eq!(d.json(&["template", "list", "--json"]), json!([]));
    Ok(())
}

#[tokio::test]
async fn stack_outputs_name_the_deployment_and_the_trust_policy_principals() -> Result<()> {
    let d = Deployment::new().await?;
    let stack = unique_name("stack");
    let lister = "arn:aws:iam::123456789012:role/prod-ListerRole-ABC";
    let worker = "arn:aws:iam::123456789012:role/prod-WorkerRole-DEF";
    let mut outputs = serde_json::Map::new();
    for (k, v) in [
        ("StateTableName", d.names.state_table.as_str()),
        ("RecordsTableName", d.names.records_table.as_str()),
        ("QueueUrl", d.queue_url.as_str()),
        ("DeadLetterQueueUrl", d.queue_url.as_str()),
        ("OutputBucketName", d.names.output_bucket.as_str()),
        ("ListerFunctionName", "prod-lister"),
        ("WorkerFunctionName", "prod-worker"),
        ("ListerRoleArn", lister),
        ("WorkerRoleArn", worker),
        ("SourceRoleNamePrefix", "acme-importer-"),
    ] {
        outputs.insert(k.to_owned(), json!({ "Value": v }));
    }
    let template = json!({
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": { "Marker": { "Type": "AWS::SQS::Queue", "Properties": { "QueueName": unique_name("marker") } } },
        "Outputs": outputs,
    });
    let cfn = aws_sdk_cloudformation::Client::new(&d.sdk);
    cfn.create_stack()
        .stack_name(&stack)
        .template_body(template.to_string())
        .send()
        .await
        .context("create the stack on the emulator")?;

    // Only --stack: no S3I_* variables.
    let bare = Deployment {
        env: d
            .env
            .iter()
            .filter(|(k, _)| !k.starts_with("S3I_") || k == "S3I_EMULATOR_URL")
            .cloned()
            .collect(),
        sdk: d.sdk.clone(),
        names: Names::with_prefix("unused"),
        queue_url: String::new(),
    };
    let no_config = bare.cli(&["connector", "list"]);
    assert_eq!(no_config.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_config.stderr).contains("--stack"));
    bare.expect(
        0,
        &[
            "--stack",
            &stack,
            "template",
            "add",
            "examples/demo/orders.toml",
        ],
    );
    let mut args = vec!["--stack", stack.as_str()];
    args.extend(create_connector(
        "orders",
        "111122223333",
        "acme-exports",
        "eu-west-1",
        "demo-orders",
    ));
    args.push("--json");
    let created = bare.json(&args);
    assert_eq!(created["role_name"], "acme-importer-orders");
    assert_eq!(
        created["role_arn"],
        "arn:aws:iam::111122223333:role/acme-importer-orders"
    );
    assert_eq!(
        created["trust_policy"]["Statement"][0]["Principal"]["AWS"],
        json!([lister, worker])
    );
    // The stack's records table is the default destination, and the state went to the stack's table.
    assert_eq!(
        created["connector"]["destination"]["table"],
        d.names.records_table.as_str()
    );
    let listed = d.json(&["connector", "list", "--json"]);
    assert_eq!(listed[0]["name"], "orders");
    let missing = bare.cli(&["--stack", "no-such-stack", "connector", "list"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("not found"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    Ok(())
}

#[test]
fn every_command_has_help_with_an_example() {
    let commands: &[&[&str]] = &[
        &["connector", "create"],
        &["connector", "policy"],
        &["connector", "verify"],
        &["connector", "preview"],
        &["connector", "list"],
        &["connector", "show"],
        &["connector", "files"],
        &["connector", "syncs"],
        &["connector", "update"],
        &["connector", "reauth"],
        &["connector", "pause"],
        &["connector", "resume"],
        &["connector", "delete"],
        &["connector", "sync"],
        &["connector", "retry"],
        &["connector", "redrive"],
        &["connector", "replay"],
        &["template", "add"],
        &["template", "list"],
        &["template", "show"],
        &["template", "validate"],
        &["run"],
        &["import-file"],
        &["connector"],
        &["template"],
        &["local"],
    ];
    for command in commands {
        let out = Command::new(env!("CARGO_BIN_EXE_s3-importer"))
            .args(*command)
            .arg("--help")
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{command:?}");
        assert!(
            help.contains("Example"),
            "{command:?} --help has no example:\n{help}"
        );
        assert!(
            help.contains("--stack"),
            "{command:?} --help lacks the AWS options:\n{help}"
        );
    }
}

#[cfg(unix)]
#[tokio::test]
async fn a_closed_stdout_ends_listing_commands_quietly() -> Result<()> {
    let d = Deployment::new().await?;
    d.add_template();
    let bucket = d.bucket_with_demo_files("in/").await?;
    d.create("shop", &bucket, &["--folder", "in/"]);
    d.expect(0, &["connector", "sync", "shop"]);
    for args in [
        &["template", "list"][..],
        &["connector", "files", "shop"],
        &["connector", "list", "--json"],
    ] {
        let out = d.cli_with(&[], args, closed_pipe()?);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "{args:?}: {stderr}"
        );
        assert_ne!(out.status.code(), Some(101), "{args:?}: {stderr}");
    }
    Ok(())
}

#[tokio::test]
async fn preview_reads_the_configuration_like_sync_and_refuses_a_malformed_variable() -> Result<()>
{
    let d = Deployment::new().await?;
    d.add_template();
    let bucket = d.bucket_with_demo_files("in/").await?;
    d.create("shop", &bucket, &["--folder", "in/"]);
    for (name, value) in [("S3I_MAX_FILE_BYTES", "abc"), ("S3I_LOOKBACK_DAYS", "-5")] {
        for args in [
            &["connector", "preview", "shop"][..],
            &["connector", "sync", "shop"],
            &["run", "--once"],
        ] {
            let out = d.cli_with(&[(name, value)], args, Stdio::piped());
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{name}={value} {args:?}: {stderr}"
            );
            assert!(
                stderr.starts_with(&format!(
                    "error: environment variable {name}={value:?} is invalid"
                )),
                "{name}={value} {args:?}: {stderr}"
            );
            assert!(!stderr.contains("not configured"), "{args:?}: {stderr}");
        }
    }
    // A valid value is applied, as a sync would: every demo file is over 10 bytes.
    let out = d.cli_with(
        &[("S3I_MAX_FILE_BYTES", "10")],
        &["connector", "preview", "shop", "--json"],
        Stdio::piped(),
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let preview: Value = serde_json::from_slice(&out.stdout)?;
    let files = preview["files"].as_array().expect("files");
    assert!(!files.is_empty(), "{preview:#}");
    for f in files {
        assert_eq!(f["action"], "skip", "{preview:#}");
        assert!(
            f["reason"]
                .as_str()
                .unwrap_or_default()
                .starts_with("too_large"),
            "{preview:#}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn run_once_fails_on_a_failed_sync_and_on_a_missing_connector() -> Result<()> {
    let d = Deployment::new().await?;
    d.add_template();
    let bucket = d.bucket_with_demo_files("in/").await?;
    d.create("good", &bucket, &["--folder", "in/"]);
    d.create("lost", &unique_name("gone"), &[]);

    // `run --once`: the good connector is synced and imported, and the failure is the exit status.
    let failed = d.expect(1, &["run", "--once"]);
    assert!(
        failed.contains("failed") && failed.contains("lost:"),
        "{failed}"
    );
    assert!(!failed.contains("good:"), "{failed}");
    let files = statuses(&d.json(&["connector", "files", "good", "--json"]));
    let imported = files.iter().filter(|(_, s)| s == "imported").count();
    assert_eq!(imported, 2, "{files:?}");

    d.expect(0, &["run", "--once", "--connector", "good"]);
    let missing = d.expect(3, &["run", "--once", "--connector", "nope"]);
    assert!(missing.contains("no connector named \"nope\""), "{missing}");
    Ok(())
}

#[tokio::test]
async fn a_failed_connector_sync_prints_only_the_error() -> Result<()> {
    let d = Deployment::new().await?;
    d.add_template();
    d.create("gone", &unique_name("gone"), &[]);
    let out = d.cli(&["connector", "sync", "gone"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(!stdout.contains("synced"), "{stdout}");
    assert!(stderr.contains("the sync failed"), "{stderr}");
    Ok(())
}

#[tokio::test]
async fn local_create_bucket_applies_the_connector_bucket_rules() -> Result<()> {
    let d = Deployment::new().await?;
    let refused = d.expect(2, &["local", "create-bucket", "Bad_Name"]);
    assert!(refused.contains("Bad_Name"), "{refused}");
    // The same rules as `connector create --bucket`.
    let refused = d.expect(
        2,
        &create_connector("x", "123456789012", "Bad_Name", "us-east-1", "demo-orders"),
    );
    assert!(refused.contains("Bad_Name"), "{refused}");
    let good = unique_name("good");
    d.expect(0, &["local", "create-bucket", &good]);
    Ok(())
}

#[tokio::test]
async fn template_show_names_the_missing_version() -> Result<()> {
    let d = Deployment::new().await?;
    d.add_template();
    let missing = d.expect(3, &["template", "show", "demo-orders", "--version", "9"]);
    assert!(
        missing.contains("no version 9 of template \"demo-orders\""),
        "{missing}"
    );
    let missing = d.expect(3, &["template", "show", "nothing-here"]);
    assert!(
        missing.contains("no template \"nothing-here\""),
        "{missing}"
    );
    d.expect(0, &["template", "show", "demo-orders", "--version", "1"]);
    Ok(())
}

#[tokio::test]
async fn an_s3_destination_writes_parquet_and_prints_its_athena_table() -> Result<()> {
    let d = Deployment::new().await?;
    d.add_template();
    let bucket = unique_name("src");
    provision::create_bucket(&d.sdk, &bucket).await?;
    let out = d.expect(
        2,
        &[
            "connector",
            "create",
            "--name",
            "dyn",
            "--account-id",
            "123456789012",
            "--bucket",
            &bucket,
            "--region",
            "us-east-1",
            "--template",
            "demo-orders",
            "--output-format",
            "parquet",
        ],
    );
    assert!(
        out.contains("--output-format applies to an s3 destination"),
        "{out}"
    );

    let created = d.create(
        "lake",
        &bucket,
        &[
            "--destination",
            "s3:my-lake/parquet/orders/",
            "--output-format",
            "parquet",
        ],
    );
    assert_eq!(
        created["connector"]["destination"],
        json!({ "kind": "s3_parquet", "bucket": "my-lake", "prefix": "parquet/orders" })
    );
    let id = created["id"].as_str().unwrap_or_default().to_owned();
    let shown = d.expect(0, &["connector", "show", "lake"]);
    assert!(
        shown.contains("s3://my-lake/parquet/orders (parquet)"),
        "{shown}"
    );

    let schema = d.expect(0, &["connector", "schema", "lake"]);
    assert!(
        schema.contains("REQUIRED INT64 amount (DECIMAL(12,2));"),
        "{schema}"
    );
    let ddl = d.expect(0, &["connector", "schema", "lake", "--athena"]);
    for part in [
        "CREATE EXTERNAL TABLE IF NOT EXISTS `lake` (",
        "`amount` decimal(12,2),",
        "`created_at` timestamp,",
        "PARTITIONED BY (`connector` string, `date` string)",
        "LOCATION 's3://my-lake/parquet/orders/'",
        &format!("'projection.connector.values' = '{id}'"),
    ] {
        assert!(ddl.contains(part), "{part} not in\n{ddl}");
    }

    // Back to JSON Lines: same bucket and prefix; the schema command then says what to do.
    let updated = d.json(&[
        "connector",
        "update",
        "lake",
        "--output-format",
        "jsonl",
        "--json",
    ]);
    assert_eq!(updated["destination"]["kind"], "s3_jsonl", "{updated:#}");
    let out = d.expect(2, &["connector", "schema", "lake", "--athena"]);
    assert!(out.contains("--output-format parquet"), "{out}");
    Ok(())
}
