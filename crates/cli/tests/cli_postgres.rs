//! The PostgreSQL destination in the CLI, run as a user runs it: `connector create --destination
//! postgres:… --postgres-secret … --create-table` against a deployment on the emulator and a real PostgreSQL
//! server, `connector show`, and `connector verify` naming a table that no longer fits the template with
//! the `ALTER TABLE` that fixes it.

mod common;

use anyhow::Result;
use common::create_connector;
use common::deployment::Deployment;
use s3_importer_postgres::{connect, ConnectionSettings};
use s3_importer_tests::postgres::{create_rds_secret, postgres};
use s3_importer_tests::unique_name;
use serde_json::Value;

/// The `table` check of a `connector verify --json` report.
fn table_check(report: &Value) -> Value {
    report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["check"] == "table"))
        .cloned()
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn create_table_show_and_verify_a_postgres_destination() -> Result<()> {
    let d = Deployment::new().await?;
    d.add_template();
    let bucket = d.bucket_with_demo_files("in/").await?;
    let server = postgres().await;
    let secret = unique_name("db");
    create_rds_secret(&d.sdk, &secret, &server.url()).await?;
    let table = unique_name("orders").replace('-', "_");
    let destination = format!("postgres:public.{table}");

    // Usage errors: a connection is required, and the PostgreSQL options go with a PostgreSQL destination.
    let mut args = create_connector("x", "123456789012", &bucket, "us-east-1", "demo-orders");
    args.extend(["--destination", destination.as_str()]);
    let out = d.expect(2, &args);
    assert!(out.contains("--postgres-secret"), "{out}");
    let mut args = create_connector("x", "123456789012", &bucket, "us-east-1", "demo-orders");
    args.extend(["--destination", "s3", "--postgres-secret", secret.as_str()]);
    let out = d.expect(2, &args);
    assert!(out.contains("go with --destination postgres"), "{out}");

    let created = d.create(
        "orders-pg",
        &bucket,
        &[
            "--folder",
            "in/",
            "--destination",
            &destination,
            "--postgres-secret",
            &secret,
            "--create-table",
        ],
    );
    assert_eq!(created["table"]["status"], "pass", "{created:#}");
    assert_eq!(created["connector"]["destination"]["kind"], "postgres");
    assert_eq!(
        created["connector"]["destination"]["connection"]["secret_id"],
        secret.as_str()
    );
    let show = d.expect(0, &["connector", "show", "orders-pg"]);
    assert!(
        show.contains(&format!("postgres:public.{table} (secret {secret})")),
        "{show}"
    );
    let report = d.json(&["connector", "verify", "orders-pg", "--json"]);
    assert_eq!(table_check(&report)["status"], "pass", "{report:#}");

    // The table drifts from the template: verify fails, naming each problem and its fix.
    let db = connect(&ConnectionSettings::from_url(&server.url())?).await?;
    db.batch_execute(&format!(
        "ALTER TABLE public.{table} DROP COLUMN customer; \
         ALTER TABLE public.{table} ALTER COLUMN amount TYPE text"
    ))
    .await?;
    let out = d.cli(&["connector", "verify", "orders-pg", "--json"]);
    assert_eq!(out.status.code(), Some(5));
    let report: Value = serde_json::from_slice(&out.stdout)?;
    let check = table_check(&report);
    assert_eq!(check["status"], "fail", "{report:#}");
    assert_eq!(check["cause"], "schema_mismatch");
    let detail = check["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("\"customer\" is missing") && detail.contains("\"amount\" is text"),
        "{detail}"
    );
    let fix = check["fix"].as_str().unwrap_or_default().to_owned();
    assert!(fix.contains("ALTER TABLE"), "{fix}");

    // Running the printed fix makes the table fit again.
    db.batch_execute(&fix).await?;
    let report = d.json(&["connector", "verify", "orders-pg", "--json"]);
    assert_eq!(table_check(&report)["status"], "pass", "{report:#}");

    // The same checks for `update --destination`: another table, not created, fails with the CREATE TABLE.
    let other = format!("{table}_b");
    let out = d.cli(&[
        "connector",
        "update",
        "orders-pg",
        "--destination",
        &format!("postgres:{other}"),
        "--postgres-secret",
        &secret,
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(5));
    let updated: Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(updated["table"]["cause"], "schema_mismatch", "{updated:#}");
    assert!(updated["table"]["fix"]
        .as_str()
        .unwrap_or_default()
        .contains("CREATE TABLE"));
    Ok(())
}
