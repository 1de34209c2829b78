//! How the `s3-importer` process behaves at its edges, without AWS: a closed stdout, a malformed
//! configuration variable, no AWS region. Nothing here reaches the network (the endpoint is a closed port).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod common;
#[cfg(unix)]
use common::closed_pipe;
use common::create_connector;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Nothing listens there: a command that calls AWS fails fast instead of reaching a real account.
const NO_ENDPOINT: &str = "http://127.0.0.1:9";

/// The four deployment names, all set.
const DEPLOYMENT: [(&str, &str); 4] = [
    ("S3I_STATE_TABLE", "state"),
    ("S3I_QUEUE_URL", "http://127.0.0.1:9/000000000000/work"),
    ("S3I_RECORDS_TABLE", "records"),
    ("S3I_OUTPUT_BUCKET", "output"),
];

/// Runs the binary in an environment of only `env` (plus PATH, and a HOME without an AWS profile).
fn cli(home: &Path, env: &[(&str, &str)], args: &[&str], stdout: Stdio) -> Result<Output> {
    // Empty AWS config and credentials files: no profile region, and no warning about a missing file.
    for file in ["aws-config", "aws-credentials"] {
        std::fs::write(home.join(file), "")?;
    }
    Ok(Command::new(env!("CARGO_BIN_EXE_s3-importer"))
        .current_dir(repo())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("AWS_CONFIG_FILE", home.join("aws-config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", home.join("aws-credentials"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()?)
}

#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_the_command_quietly() -> Result {
    let home = tempfile::tempdir()?;
    let out = tempfile::tempdir()?;
    let out_dir = out.path().to_string_lossy().into_owned();
    let output = cli(
        home.path(),
        &[],
        &[
            "import-file",
            "--template",
            "examples/demo/orders.toml",
            "--out-dir",
            &out_dir,
            "examples/demo/files/orders-2024-05-01.csv",
        ],
        closed_pipe()?,
    )?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{stderr}"
    );
    assert_ne!(output.status.code(), Some(101), "{stderr}");
    // The import itself was done: only its summary had nowhere to go.
    assert!(out.path().join("orders-2024-05-01.csv.rows.jsonl").exists());
    Ok(())
}

#[test]
fn a_malformed_variable_is_the_error_not_a_missing_deployment() -> Result {
    let home = tempfile::tempdir()?;
    let mut env = DEPLOYMENT.to_vec();
    env.extend([
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL", NO_ENDPOINT),
        ("S3I_MAX_FILE_BYTES", "abc"),
    ]);
    let output = cli(home.path(), &env, &["run", "--once"], Stdio::piped())?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("error: environment variable S3I_MAX_FILE_BYTES=\"abc\" is invalid"),
        "{stderr}"
    );
    assert!(!stderr.contains("not configured"), "{stderr}");

    // A missing one is still said as such.
    let env: Vec<_> = env
        .into_iter()
        .filter(|(k, _)| *k != "S3I_QUEUE_URL" && *k != "S3I_MAX_FILE_BYTES")
        .collect();
    let output = cli(home.path(), &env, &["run", "--once"], Stdio::piped())?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the deployment is not configured") && stderr.contains("S3I_QUEUE_URL"),
        "{stderr}"
    );
    Ok(())
}

#[test]
fn without_a_region_a_command_says_so_before_calling_aws() -> Result {
    let home = tempfile::tempdir()?;
    let mut env = DEPLOYMENT.to_vec();
    env.extend([
        ("AWS_ENDPOINT_URL", NO_ENDPOINT),
        ("AWS_ACCESS_KEY_ID", "test"),
        ("AWS_SECRET_ACCESS_KEY", "test"),
    ]);
    for args in [
        &["connector", "list"][..],
        &["template", "list"],
        &["run", "--once"],
        &["local", "create-bucket", "some-bucket"],
    ] {
        let output = cli(home.path(), &env, args, Stdio::piped())?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("no AWS region") && stderr.contains("AWS_REGION"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("dispatch failure"), "{args:?}: {stderr}");
    }
    // `connector create --region` is the bucket's region: the deployment's still has to come from somewhere.
    let output = cli(
        home.path(),
        &env,
        &create_connector(
            "orders",
            "123456789012",
            "acme-exports",
            "eu-west-1",
            "orders",
        ),
        Stdio::piped(),
    )?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no AWS region for the deployment: set AWS_REGION"),
        "{stderr}"
    );
    // A command that needs no AWS still runs without a region.
    let output = cli(
        home.path(),
        &env,
        &["template", "validate", "examples/demo/orders.toml"],
        Stdio::piped(),
    )?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}
