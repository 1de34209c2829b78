//! The PostgreSQL destination on a real server, beyond the contract: tables made from templates (every type,
//! awkward names), `verify` and its fixes, tables without a primary key, redeliveries, and how failures are
//! classified.

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use s3_importer_core::sink::{RowBatch, SinkErrorKind};
use s3_importer_core::sync::contract::fixtures;
use s3_importer_core::sync::memory::MemoryDestination;
use s3_importer_core::sync::model::{DestinationConfig, ObjectMeta, Source};
use s3_importer_core::sync::ports::{Destination, FileJob};
use s3_importer_core::template::Template;
use s3_importer_core::Position;
use s3_importer_postgres::{
    connect, ddl, verify, ConnectionSettings, FileTarget, PostgresDestination, Problem, TableRef,
};
use s3_importer_tests::postgres::postgres;
use s3_importer_tests::unique_name;
use tokio_postgres::Client;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Every template type, and field names that need quoting.
const ALL_TYPES: &str = r#"
name = "all types"
primary_key = ["order", "x\"y"]
[[fields]]
name = "order"
type = "string"
required = true
[[fields]]
name = "x\"y"
type = "integer"
required = true
[[fields]]
name = "price"
type = "decimal"
precision = 12
scale = 2
[[fields]]
name = "a b"
type = "boolean"
[[fields]]
name = "day"
type = "date"
[[fields]]
name = "at"
type = "timestamp"
[[fields]]
name = "kind"
type = "enum"
values = ["new", "old"]
[[fields]]
name = "doc"
type = "json"
"#;

async fn settings() -> Result<ConnectionSettings, Box<dyn std::error::Error + Send + Sync>> {
    Ok(ConnectionSettings::from_url(&postgres().await.url())?)
}

async fn client() -> Result<Client, Box<dyn std::error::Error + Send + Sync>> {
    Ok(connect(&settings().await?).await?)
}

fn at(secs: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(secs, 0).single().unwrap_or_default()
}

fn job(template: &Template, key: &str, etag: &str, last_modified: DateTime<Utc>) -> FileJob {
    let source = Source {
        account_id: "123456789012".into(),
        bucket: "source".into(),
        region: "us-east-1".into(),
        prefix: None,
        role_arn: None,
        external_id: None,
        versions: false,
    };
    // The destination is this test's PostgreSQL table; the connector's setting is not read.
    let unused = DestinationConfig::Dynamodb {
        table: "unused".into(),
    };
    let object = ObjectMeta::new(key, etag, 1, last_modified);
    fixtures::file_job("c-schema", source, unused, template.clone(), &object)
}

/// Imports `rows` (JSON objects, records 1, 2, …) as one file version, in one piece.
async fn import(
    destination: &PostgresDestination,
    job: &FileJob,
    rows: &[serde_json::Value],
) -> TestResult {
    let mut batch = RowBatch::default();
    for (i, row) in rows.iter().enumerate() {
        let record = i as u64 + 1;
        let position = Position {
            record,
            line: record + 1,
            byte: record * 10,
        };
        batch.push_row(position, row.to_string().as_bytes());
    }
    let mut sink = destination.open_rows(job).await?;
    sink.write_batch(&batch).await?;
    sink.finish().await?;
    Ok(())
}

/// A fresh table made from `template`, and a destination writing it.
async fn table_from(
    template: &Template,
) -> Result<(TableRef, PostgresDestination), Box<dyn std::error::Error + Send + Sync>> {
    let table = TableRef::new("public", unique_name("pg-schema"));
    ddl::create(&mut client().await?, template, &table).await?;
    let destination = PostgresDestination::new(
        settings().await?,
        table.clone(),
        Arc::new(MemoryDestination::new()),
    );
    Ok((table, destination))
}

#[tokio::test]
async fn a_table_from_a_template_with_every_type_verifies_and_keeps_values_exact() -> TestResult {
    let template = Template::from_toml(ALL_TYPES)?;
    let (table, destination) = table_from(&template).await?;
    let client = client().await?;
    let report = verify(&client, &template, &table).await?;
    assert!(report.is_ok(), "{report}");

    let row = serde_json::json!({
        "order": "o'1\\\"", "x\"y": 7, "price": "1234567890.10", "a b": true, "day": "2024-02-29",
        "at": "2024-01-31T10:00:00.123Z", "kind": "new", "doc": {"k": [1, "two", null], "big": 12345678901234567890u64}
    });
    let job = job(&template, "in/all.csv", "\"e1\"", at(1_700_000_000));
    import(&destination, &job, &[row]).await?;
    let got = client
        .query_one(
            &format!(
                "SELECT \"order\", \"x\"\"y\", \"price\"::text, \"a b\", \"day\"::text, \
                 \"at\" = '2024-01-31T10:00:00.123Z'::timestamptz, \"kind\", \"doc\", \
                 _source_key, _source_etag, _source_last_modified = to_timestamp(1700000000), _source_row \
                 FROM {table}"
            ),
            &[],
        )
        .await?;
    assert_eq!(got.get::<_, String>(0), "o'1\\\"");
    assert_eq!(got.get::<_, i64>(1), 7);
    assert_eq!(got.get::<_, String>(2), "1234567890.10");
    assert!(got.get::<_, bool>(3));
    assert_eq!(got.get::<_, String>(4), "2024-02-29");
    assert!(got.get::<_, bool>(5), "timestamp differs");
    assert_eq!(got.get::<_, String>(6), "new");
    assert_eq!(
        got.get::<_, serde_json::Value>(7),
        serde_json::json!({"k": [1, "two", null], "big": 12345678901234567890u64})
    );
    assert_eq!(got.get::<_, String>(8), "in/all.csv");
    assert_eq!(got.get::<_, String>(9), "\"e1\"");
    assert!(got.get::<_, bool>(10), "_source_last_modified differs");
    assert_eq!(got.get::<_, i64>(11), 1);
    Ok(())
}

#[tokio::test]
async fn verify_reports_each_mismatch_with_an_alter_table_that_fixes_it() -> TestResult {
    let template = Template::from_toml(ALL_TYPES)?;
    let (table, _) = table_from(&template).await?;
    let client = client().await?;
    let constraint: String = client
        .query_one(
            "SELECT conname::text FROM pg_constraint WHERE conrelid = $1::text::regclass AND contype = 'p'",
            &[&table.quoted()],
        )
        .await?
        .get(0);
    client
        .batch_execute(&format!(
            "ALTER TABLE {table} DROP COLUMN \"a b\"; ALTER TABLE {table} ALTER COLUMN \"price\" TYPE text; \
             ALTER TABLE {table} DROP COLUMN _source_row; ALTER TABLE {table} DROP CONSTRAINT \"{constraint}\""
        ))
        .await?;
    let report = verify(&client, &template, &table).await?;
    let problems: Vec<&Problem> = report.mismatches.iter().map(|m| &m.problem).collect();
    assert_eq!(
        problems,
        [
            &Problem::WrongType {
                column: "price".into(),
                want: "numeric(12,2)".into(),
                found: "text".into()
            },
            &Problem::MissingColumn {
                column: "a b".into(),
                want: "boolean".into()
            },
            &Problem::MissingColumn {
                column: "_source_row".into(),
                want: "bigint".into()
            },
            &Problem::NoUniqueKey {
                columns: vec!["order".into(), "x\"y".into()]
            },
        ],
        "{report}"
    );
    let text = report.to_string();
    assert!(
        text.contains(&format!(
            "ALTER TABLE {table} ADD PRIMARY KEY (\"order\", \"x\"\"y\")"
        )),
        "{text}"
    );
    for mismatch in &report.mismatches {
        client
            .batch_execute(&mismatch.fix)
            .await
            .map_err(|e| format!("{}: {e}", mismatch.fix))?;
    }
    let report = verify(&client, &template, &table).await?;
    assert!(report.is_ok(), "after the fixes: {report}");

    let missing = TableRef::new("public", unique_name("pg-missing"));
    let report = verify(&client, &template, &missing).await?;
    assert_eq!(report.mismatches.len(), 1, "{report}");
    assert_eq!(report.mismatches[0].problem, Problem::MissingTable);
    client.batch_execute(&report.mismatches[0].fix).await?;
    assert!(verify(&client, &template, &missing).await?.is_ok());
    Ok(())
}

#[tokio::test]
async fn without_a_primary_key_rows_are_appended_once_per_file_version_and_record() -> TestResult {
    let template =
        Template::from_toml("name = \"log\"\n[[fields]]\nname = \"msg\"\ntype = \"string\"\n")?;
    let (table, destination) = table_from(&template).await?;
    let rows = [
        serde_json::json!({"msg": "same"}),
        serde_json::json!({"msg": "same"}),
    ];
    let first = job(&template, "in/log.csv", "\"v1\"", at(1_700_000_000));
    import(&destination, &first, &rows).await?;
    import(
        &destination,
        &job(&template, "in/log.csv", "\"v2\"", at(1_700_000_100)),
        &rows,
    )
    .await?;
    import(&destination, &first, &rows).await?;
    let client = client().await?;
    let got: Vec<(String, i64)> = client
        .query(
            &format!("SELECT _source_etag, _source_row FROM {table} ORDER BY 1, 2"),
            &[],
        )
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let want = [("\"v1\"", 1), ("\"v1\"", 2), ("\"v2\"", 1), ("\"v2\"", 2)]
        .map(|(e, r)| (e.to_owned(), r));
    assert_eq!(got, want);
    Ok(())
}

#[tokio::test]
async fn a_redelivered_file_version_writes_nothing_and_stages_nothing() -> TestResult {
    let template = Template::from_toml(ALL_TYPES)?;
    let (table, destination) = table_from(&template).await?;
    let job = job(&template, "in/once.csv", "\"once\"", at(1_700_000_000));
    import(
        &destination,
        &job,
        &[serde_json::json!({"order": "a", "x\"y": 1, "kind": "new"})],
    )
    .await?;
    // The same file version again: its rows cannot differ in reality; here they do, to see that none is used.
    import(
        &destination,
        &job,
        &[
            serde_json::json!({"order": "a", "x\"y": 1, "kind": "old"}),
            serde_json::json!({"order": "b", "x\"y": 2}),
        ],
    )
    .await?;
    let client = client().await?;
    let kinds: Vec<String> = client
        .query(&format!("SELECT \"kind\" FROM {table}"), &[])
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(kinds, ["new"]);
    let imports: i64 = client
        .query_one(
            "SELECT count(*) FROM s3_importer.imports WHERE target = $1",
            &[&table.quoted()],
        )
        .await?
        .get(0);
    assert_eq!(imports, 1);
    let version = FileTarget::new(&job, &table).version;
    let staging_left: bool = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&s3_importer_postgres::ddl::stage_table(&version)],
        )
        .await?
        .get(0);
    assert!(!staging_left, "the staging table outlived the merge");
    Ok(())
}

#[tokio::test]
async fn a_value_the_column_refuses_fails_the_file_permanently_and_abort_clears_it() -> TestResult {
    let template = Template::from_toml(ALL_TYPES)?;
    let (table, destination) = table_from(&template).await?;
    let job = job(&template, "in/bad.csv", "\"bad\"", at(1_700_000_000));
    let mut batch = RowBatch::default();
    batch.push_row(
        Position {
            record: 1,
            line: 2,
            byte: 0,
        },
        br#"{"order":"a","x\"y":"not a number"}"#,
    );
    let mut sink = destination.open_rows(&job).await?;
    // The binary COPY's encoder refuses the value as the batch is written, before the server sees it.
    let err = match sink.write_batch(&batch).await {
        Err(e) => e,
        Ok(()) => sink
            .finish()
            .await
            .err()
            .ok_or("finish accepted a bad value")?,
    };
    assert_eq!(err.kind, SinkErrorKind::Permanent, "{err}");
    let text = format!("{err} {err:?}");
    assert!(
        text.contains(&table.quoted()) && text.contains("s3://source/in/bad.csv"),
        "{text}"
    );
    assert!(
        text.contains("record: 1") && text.contains("x\\\"y"),
        "no record and column in {text}"
    );
    sink.abort().await?;
    let client = client().await?;
    let left: i64 = client
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .await?
        .get(0);
    assert_eq!(left, 0);
    Ok(())
}

#[tokio::test]
async fn a_server_that_does_not_answer_is_a_transient_failure() -> TestResult {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let settings =
        ConnectionSettings::from_url(&format!("postgres://u@127.0.0.1:{port}/d?sslmode=disable"))?;
    let err = connect(&settings)
        .await
        .err()
        .ok_or("connected to a closed port")?;
    assert!(err.is_transient(), "{err}");
    let destination = PostgresDestination::new(
        settings,
        TableRef::new("public", "t"),
        Arc::new(MemoryDestination::new()),
    );
    let template = Template::from_toml(ALL_TYPES)?;
    let err = destination
        .open_rows(&job(&template, "k", "\"e\"", at(0)))
        .await
        .err()
        .ok_or("opened")?;
    assert_eq!(err.kind, SinkErrorKind::Transient, "{err}");
    Ok(())
}

#[tokio::test]
async fn tls_is_never_silently_skipped_unless_the_mode_allows_plain() -> TestResult {
    // The test server speaks no TLS: `require` and `verify-full` refuse it, `prefer` falls back to plain.
    let port = postgres().await.port();
    for (mode, connects) in [
        ("require", false),
        ("verify-full", false),
        ("prefer", true),
        ("disable", true),
    ] {
        let settings = ConnectionSettings::from_url(&format!(
            "postgres://postgres@127.0.0.1:{port}/postgres?sslmode={mode}"
        ))?;
        assert_eq!(connect(&settings).await.is_ok(), connects, "sslmode={mode}");
    }
    let settings = ConnectionSettings::from_url(&format!(
        "postgres://postgres@127.0.0.1:{port}/postgres?sslmode=require&sslrootcert=/nonexistent/rds.pem"
    ))?;
    let err = connect(&settings)
        .await
        .err()
        .ok_or("connected without its root certificates")?;
    assert!(
        !err.is_transient() && err.to_string().contains("/nonexistent/rds.pem"),
        "{err}"
    );
    Ok(())
}
