//! `connector verify` against real IAM decisions: the emulator enforces IAM policies (moto's
//! `/moto-api/reset-auth`), and the CLI runs as an IAM user that may list the folder but not read it.
//!
//! Its own test binary, so its own emulator: turning authorization on would break tests running in parallel
//! against a shared one; the tests of this binary take turns.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod common;

use anyhow::{Context, Result};
use common::create_connector;
use s3_importer_aws::provision::{self, Names};
use s3_importer_tests::{emulator, unique_name};
use serde_json::{json, Value};

/// Authorization is server-wide: the tests of this binary take turns.
static EMULATOR_AUTH: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// One HTTP/1.0 POST to the emulator; returns the response body. (The test needs two IAM calls and moto's
/// control API, not an IAM SDK.)
fn post(
    url: &str,
    path: &str,
    content_type: &str,
    extra_headers: &str,
    body: &str,
) -> Result<String> {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address)?;
    write!(
        stream,
        "POST {path} HTTP/1.0\r\nHost: {address}\r\nContent-Type: {content_type}\r\n{extra_headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    anyhow::ensure!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "{response}"
    );
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default())
}

/// Sets moto's count of requests served before authorization starts (`0`: from now on; `inf`: never).
fn set_auth(url: &str, count: &str) -> Result<()> {
    post(url, "/moto-api/reset-auth", "text/plain", "", count).map(|_| ())
}

/// An IAM query-protocol call (authorization is off while the test sets up, so it needs no signature).
fn iam(url: &str, params: &[(&str, &str)]) -> Result<String> {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    let body = params
        .iter()
        .chain([("Version", "2010-05-08")].iter())
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    // moto routes an unsigned request by the service in the credential scope.
    let scope =
        "Authorization: AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/iam/aws4_request, \
                 SignedHeaders=host, Signature=0\r\n";
    post(url, "/", "application/x-www-form-urlencoded", scope, &body)
}

fn xml_field(xml: &str, tag: &str) -> Option<String> {
    let start = xml.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(xml[start..end].to_owned())
}

#[tokio::test]
async fn verify_names_the_missing_permission_on_a_denied_read() -> Result<()> {
    // A private emulator, never a shared one: authorization is switched on below.
    let _turn = EMULATOR_AUTH.lock().await;
    std::env::remove_var(s3_importer_tests::URL_ENV);
    let emu = emulator().await;
    let sdk = emu.sdk_config().await;
    let names = Names::with_prefix(&unique_name("iam"));
    let p = provision::provision(&sdk, &names, 30, 5).await?;
    let bucket = unique_name("src");
    provision::create_bucket(&sdk, &bucket).await?;
    let body = std::fs::read(repo().join("examples/demo/files/orders-2024-05-01.csv"))?;
    s3_importer_aws::s3_client(&sdk)
        .put_object()
        .bucket(&bucket)
        .key("in/orders.csv")
        .body(body.into())
        .send()
        .await?;

    // An IAM user with the state table and the listing, but not s3:GetObject.
    let url = emu.url();
    let policy = json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "dynamodb:*", "Resource": "*"},
            {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": format!("arn:aws:s3:::{bucket}")}
        ]
    });
    let user = unique_name("lister-only");
    iam(url, &[("Action", "CreateUser"), ("UserName", &user)])?;
    iam(
        url,
        &[
            ("Action", "PutUserPolicy"),
            ("UserName", &user),
            ("PolicyName", "list"),
            ("PolicyDocument", &policy.to_string()),
        ],
    )?;
    let key = iam(url, &[("Action", "CreateAccessKey"), ("UserName", &user)])?;
    let access_key_id =
        xml_field(&key, "AccessKeyId").with_context(|| format!("no AccessKeyId in {key}"))?;
    let secret = xml_field(&key, "SecretAccessKey").context("no SecretAccessKey")?;

    let run = |access_key: &str, secret: &str, args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_s3-importer"));
        command
            .current_dir(repo())
            .env_clear()
            .envs(emu.env_vars())
            .env("AWS_ACCESS_KEY_ID", access_key)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("S3I_STATE_TABLE", &p.names.state_table)
            .env("S3I_RECORDS_TABLE", &p.names.records_table)
            .env("S3I_QUEUE_URL", &p.queue_url)
            .env("S3I_OUTPUT_BUCKET", &p.names.output_bucket)
            .args(args)
            .stdin(Stdio::null());
        command.output().expect("the s3-importer binary runs")
    };
    let admin = |args: &[&str]| run("test", "test", args);
    assert!(admin(&["template", "add", "examples/demo/orders.toml"])
        .status
        .success());
    let mut args = create_connector(
        "orders",
        "123456789012",
        &bucket,
        "us-east-1",
        "demo-orders",
    );
    args.extend(["--folder", "in/"]);
    let created = admin(&args);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );

    set_auth(emu.url(), "0")?;
    let out = run(
        &access_key_id,
        &secret,
        &["connector", "verify", "orders", "--json"],
    );
    set_auth(emu.url(), "inf")?;
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout)?;
    let check = |name: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == name)
            .cloned()
            .unwrap()
    };
    assert_eq!(check("list")["status"], "pass", "{report:#}");
    let read = check("read");
    assert_eq!(read["status"], "fail", "{report:#}");
    assert_eq!(read["cause"], "missing_permission");
    assert!(
        read["detail"].as_str().unwrap().contains("access denied"),
        "{read:#}"
    );
    assert!(
        read["fix"]
            .as_str()
            .unwrap()
            .contains(&format!("s3:GetObject on arn:aws:s3:::{bucket}/in/*")),
        "{read:#}"
    );
    Ok(())
}

/// The generated documents are accepted by moto's IAM policy validators (the same checks CreatePolicy,
/// PutRolePolicy and UpdateAssumeRolePolicy make), with and without a folder and a KMS key; a malformed one
/// is refused, so the check can fail.
#[tokio::test]
async fn generated_policies_are_accepted_by_iam() -> Result<()> {
    let _turn = EMULATOR_AUTH.lock().await;
    std::env::remove_var(s3_importer_tests::URL_ENV);
    let emu = emulator().await;
    let sdk = emu.sdk_config().await;
    let names = Names::with_prefix(&unique_name("pol"));
    let p = provision::provision(&sdk, &names, 30, 5).await?;
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_s3-importer"))
            .current_dir(repo())
            .env_clear()
            .envs(emu.env_vars())
            .env("S3I_STATE_TABLE", &p.names.state_table)
            .env("S3I_RECORDS_TABLE", &p.names.records_table)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("the s3-importer binary runs")
    };
    assert!(cli(&["template", "add", "examples/demo/orders.toml"])
        .status
        .success());
    let url = emu.url();
    for (name, extra) in [
        ("plain", vec![]),
        (
            "folder-kms",
            vec![
                "--folder",
                "exports/orders/",
                "--kms-key-arn",
                "arn:aws:kms:eu-west-1:111122223333:key/abcd-1234",
            ],
        ),
    ] {
        let mut args = create_connector(
            name,
            "111122223333",
            "acme-exports",
            "eu-west-1",
            "demo-orders",
        );
        args.push("--json");
        args.extend(extra);
        let out = cli(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let created: Value = serde_json::from_slice(&out.stdout)?;
        let role = created["role_name"].as_str().context("role name")?;
        let trust = created["trust_policy"].to_string();
        let permission = created["permission_policy"].to_string();
        iam(
            url,
            &[
                ("Action", "CreateRole"),
                ("RoleName", role),
                ("AssumeRolePolicyDocument", &trust),
            ],
        )?;
        iam(
            url,
            &[
                ("Action", "UpdateAssumeRolePolicy"),
                ("RoleName", role),
                ("PolicyDocument", &trust),
            ],
        )?;
        iam(
            url,
            &[
                ("Action", "PutRolePolicy"),
                ("RoleName", role),
                ("PolicyName", "read"),
                ("PolicyDocument", &permission),
            ],
        )?;
        iam(
            url,
            &[
                ("Action", "CreatePolicy"),
                ("PolicyName", role),
                ("PolicyDocument", &permission),
            ],
        )?;
    }
    // The control: moto's validator refuses a malformed document.
    let mut broken: Value = serde_json::from_str(&String::from_utf8(
        cli(&["connector", "policy", "plain", "--json"]).stdout,
    )?)?;
    broken["permission_policy"]["Statement"][0]["Effect"] = json!("Maybe");
    let refused = iam(
        url,
        &[
            ("Action", "CreatePolicy"),
            ("PolicyName", "broken"),
            ("PolicyDocument", &broken["permission_policy"].to_string()),
        ],
    );
    assert!(refused.is_err(), "moto accepted a malformed policy");
    Ok(())
}
