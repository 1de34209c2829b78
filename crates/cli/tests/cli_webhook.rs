//! The webhook destination in the CLI, run as a user runs it against a deployment on the emulator and a
//! receiver on loopback (`s3_importer_tests::webhook_receiver`): the SSRF guard refusing the metadata service
//! and loopback at `connector create`, the usage errors, `connector show`, and `connector verify`'s signed
//! probe (accepted by a receiver with the secret, refused by one with another).

mod common;

use anyhow::Result;
use common::create_connector;
use common::deployment::Deployment;
use s3_importer_tests::unique_name;
use s3_importer_tests::webhook_receiver::Receiver;
use serde_json::Value;

const SECRET: &str = "whsec-cli";

/// The `webhook` check of a `connector verify --json` report.
fn webhook_check(report: &Value) -> Value {
    report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["check"] == "webhook"))
        .cloned()
        .unwrap_or(Value::Null)
}

async fn create_secret(d: &Deployment, name: &str, value: &str) -> Result<()> {
    s3_importer_aws::config::secretsmanager_client(&d.sdk)
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await?;
    Ok(())
}

// The CLI runs as a blocking child process while the receiver answers on another runtime thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_refuses_internal_targets_then_show_and_verify_a_webhook() -> Result<()> {
    let d = Deployment::new().await?;
    d.add_template();
    let bucket = d.bucket_with_demo_files("in/").await?;
    let receiver = Receiver::start(SECRET).await?;
    let secret = unique_name("hook");
    create_secret(&d, &secret, SECRET).await?;
    let port = receiver
        .url()
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .unwrap_or_default()
        .to_owned();

    // The metadata service, loopback and private targets are refused at create, with the reason.
    let refused = [
        (
            "http://169.254.169.254/latest/meta-data/",
            "http:// is refused",
        ),
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://[::ffff:169.254.169.254]/", "link-local"),
        ("https://127.0.0.1/hook", "loopback"),
        (&*format!("https://localhost:{port}/hook"), "loopback"),
        ("https://10.0.0.7/hook", "private"),
        ("https://user:pw@example.com/hook", "credentials"),
    ];
    for (url, why) in refused {
        let mut args = create_connector("x", "123456789012", &bucket, "us-east-1", "demo-orders");
        args.extend(["--destination", url, "--webhook-secret", secret.as_str()]);
        let out = d.expect(2, &args);
        assert!(out.contains(why) && out.contains("refused"), "{url}: {out}");
    }
    // Usage errors: a secret is required, and the webhook options go with a webhook destination.
    let mut args = create_connector("x", "123456789012", &bucket, "us-east-1", "demo-orders");
    args.extend(["--destination", "https://example.com/hook"]);
    assert!(d.expect(2, &args).contains("--webhook-secret"));
    let mut args = create_connector("x", "123456789012", &bucket, "us-east-1", "demo-orders");
    args.extend(["--destination", "s3", "--webhook-rate", "5"]);
    assert!(d.expect(2, &args).contains("go with --destination https"));
    let shown = d.cli(&["connector", "show", "x"]);
    assert!(!shown.status.success(), "no connector was created");

    // The loopback receiver, allowed explicitly.
    let url = receiver.url();
    let created = d.create(
        "orders-hook",
        &bucket,
        &[
            "--folder",
            "in/",
            "--destination",
            &url,
            "--webhook-secret",
            &secret,
            "--webhook-allow-private",
            "--webhook-rate",
            "20",
            "--webhook-on-reject",
            "fail",
        ],
    );
    let destination = &created["connector"]["destination"];
    assert_eq!(destination["kind"], "webhook", "{created:#}");
    assert_eq!(destination["secret"]["secret_id"], secret.as_str());
    assert_eq!(destination["rate_per_second"], 20);
    assert_eq!(destination["on_reject"], "fail");
    assert!(
        !created.to_string().contains(SECRET),
        "the secret's value is never stored"
    );
    let show = d.expect(0, &["connector", "show", "orders-hook"]);
    assert!(
        show.contains(&format!(
            "webhook {url} (signed with secret {secret}, private targets allowed)"
        )),
        "{show}"
    );

    let report = d.json_any(&["connector", "verify", "orders-hook", "--json"]);
    let check = webhook_check(&report);
    assert_eq!(check["status"], "pass", "{report:#}");
    assert_eq!(receiver.seen(|s| (s.probes, s.bad_signatures)), (1, 0));

    // A receiver holding another secret refuses the probe: verify says so.
    let other = Receiver::start("another-secret").await?;
    let other_url = other.url();
    d.expect(
        0,
        &[
            "connector",
            "update",
            "orders-hook",
            "--destination",
            &other_url,
            "--webhook-secret",
            &secret,
            "--webhook-allow-private",
        ],
    );
    let report = d.json_any(&["connector", "verify", "orders-hook", "--json"]);
    let check = webhook_check(&report);
    assert_eq!(check["status"], "fail", "{report:#}");
    assert!(
        check["detail"].as_str().unwrap_or_default().contains("401"),
        "{check:#}"
    );
    assert_eq!(other.seen(|s| s.bad_signatures), 1);

    // An update to the metadata service is refused too.
    let out = d.expect(
        2,
        &[
            "connector",
            "update",
            "orders-hook",
            "--destination",
            "https://169.254.169.254/",
            "--webhook-secret",
            &secret,
        ],
    );
    assert!(out.contains("link-local"), "{out}");
    Ok(())
}
