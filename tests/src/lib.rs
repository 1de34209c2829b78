//! Shared harness for the end-to-end tests: a local AWS emulator (moto server) per test process,
//! SDK config and clients pointed at it, and uniquely named resources.
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use s3_importer_tests::{create_bucket, emulator, s3_client, unique_name};
//!
//! let cfg = emulator().await.sdk_config().await;
//! let bucket = unique_name("source");
//! create_bucket(&cfg, &bucket).await?;
//! s3_client(&cfg).put_object().bucket(&bucket).key("a.csv").body(b"id\n1\n".to_vec().into()).send().await?;
//! # Ok(()) }
//! ```
//!
//! The emulator is `S3I_EMULATOR_URL` when that names a healthy server, otherwise a moto this process
//! starts from `$REPO/.venv` (made by `make venv` / `infra/local/venv.sh`) and kills when it exits.
//! See `infra/local/README.md` for moto's known gaps.

pub mod denials;
pub mod deployment;
mod emulator;
pub mod faults;
pub mod localstripe;
mod names;
pub mod notifications;
pub mod parquet_rows;
pub mod postgres;
pub mod postgres_tls;
pub mod recording;
mod resources;
pub mod stripe_api;
pub mod stripe_import;
pub mod versions;
pub mod webhook_import;
pub mod webhook_receiver;

pub use emulator::{
    emulator, emulator_blocking, repo_root, Emulator, ACCESS_KEY_ID, ACCOUNT_ID, PYTHON_ENV,
    REGION, SECRET_ACCESS_KEY, START_TIMEOUT_ENV, URL_ENV,
};
pub use names::unique_name;
pub use resources::{
    create_bucket, create_queue, create_queue_with_dlq, dynamodb_client, s3_client, sqs_client,
    QueueWithDlq,
};

/// Runs `command` to completion and returns its standard output; an error naming `what`, with the command's
/// standard error, when it cannot start or exits unsuccessfully (the build and deployment tools the tests
/// call: `cargo tree`, the SAM translator).
pub fn stdout_of(command: &mut std::process::Command, what: &str) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context;
    let out = command.output().with_context(|| format!("run {what}"))?;
    anyhow::ensure!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.stdout)
}

/// The source of the files the destination tests import without a deployment (bucket `src` of account
/// 123456789012): only its names reach the sinks, in lineage and idempotency keys.
pub fn test_source() -> s3_importer_core::sync::Source {
    s3_importer_core::sync::Source {
        account_id: "123456789012".into(),
        bucket: "src".into(),
        region: "us-east-1".into(),
        prefix: None,
        role_arn: None,
        external_id: None,
        versions: false,
    }
}
