//! The CLI pointed at a deployment provisioned on the local AWS emulator (moto): its own tables, queue and
//! buckets per test, and the `s3-importer` binary run with the deployment's environment.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result};
use s3_importer_aws::provision::{self, Names};
use s3_importer_tests::{emulator, unique_name};
use serde_json::Value;

use super::create_connector;

/// The repository's root (the CLI runs there, so `examples/…` paths resolve).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A deployment on the emulator, and the CLI pointed at it through the environment.
pub struct Deployment {
    pub env: Vec<(String, String)>,
    pub sdk: aws_config::SdkConfig,
    pub names: Names,
    pub queue_url: String,
}

impl Deployment {
    pub async fn new() -> Result<Self> {
        let emu = emulator().await;
        let sdk = emu.sdk_config().await;
        let names = Names::with_prefix(&unique_name("cli"));
        let p = provision::provision(&sdk, &names, 30, 5).await?;
        let mut env: Vec<(String, String)> = emu
            .env_vars()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        env.extend([
            ("S3I_STATE_TABLE".to_owned(), p.names.state_table.clone()),
            (
                "S3I_RECORDS_TABLE".to_owned(),
                p.names.records_table.clone(),
            ),
            ("S3I_QUEUE_URL".to_owned(), p.queue_url.clone()),
            (
                "S3I_DEAD_LETTER_QUEUE_URL".to_owned(),
                p.dead_letter_queue_url.clone(),
            ),
            (
                "S3I_OUTPUT_BUCKET".to_owned(),
                p.names.output_bucket.clone(),
            ),
            ("S3I_LOG_FORMAT".to_owned(), "text".to_owned()),
        ]);
        Ok(Self {
            env,
            sdk,
            names,
            queue_url: p.queue_url,
        })
    }

    /// Runs the CLI (stdin closed: no terminal, so no prompts).
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_with(&[], args, Stdio::piped())
    }

    /// Runs the CLI with `extra` variables on top of the deployment's, and stdout to `stdout`.
    pub fn cli_with(&self, extra: &[(&str, &str)], args: &[&str], stdout: Stdio) -> Output {
        Command::new(env!("CARGO_BIN_EXE_s3-importer"))
            .current_dir(repo())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().copied())
            .args(args)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .output()
            .expect("the s3-importer binary runs")
    }

    /// Runs the CLI and expects `code`; returns stdout.
    pub fn expect(&self, code: i32, args: &[&str]) -> String {
        let out = self.cli(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(code),
            "s3-importer {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
            args.join(" ")
        );
        if code == 0 {
            stdout
        } else {
            format!("{stdout}{stderr}")
        }
    }

    /// Runs the CLI and parses its stdout as JSON, whatever its exit status (a report with failed checks).
    pub fn json_any(&self, args: &[&str]) -> Value {
        let out = self.cli(args);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "{e}: not JSON:\n{stdout}\n--- stderr\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let out = self.expect(0, args);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: not JSON:\n{out}"))
    }

    pub async fn bucket_with_demo_files(&self, prefix: &str) -> Result<String> {
        let bucket = unique_name("src");
        provision::create_bucket(&self.sdk, &bucket).await?;
        let s3 = s3_importer_aws::s3_client(&self.sdk);
        for name in [
            "orders-2024-05-01.csv",
            "orders-2024-05-04-bad.csv",
            "README.txt",
        ] {
            let body = std::fs::read(repo().join("examples/demo/files").join(name))?;
            s3.put_object()
                .bucket(&bucket)
                .key(format!("{prefix}{name}"))
                .body(body.into())
                .send()
                .await
                .context("upload")?;
        }
        Ok(bucket)
    }

    pub async fn put(&self, bucket: &str, key: &str, body: &[u8]) -> Result<()> {
        s3_importer_aws::s3_client(&self.sdk)
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(body.to_vec().into())
            .send()
            .await?;
        Ok(())
    }

    pub fn add_template(&self) {
        self.expect(0, &["template", "add", "examples/demo/orders.toml"]);
    }

    pub fn create(&self, name: &str, bucket: &str, extra: &[&str]) -> Value {
        let mut args = create_connector(name, "123456789012", bucket, "us-east-1", "demo-orders");
        args.push("--json");
        args.extend_from_slice(extra);
        self.json(&args)
    }
}
