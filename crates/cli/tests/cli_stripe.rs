//! The Stripe destination in the CLI, run as a user runs it against a deployment on the emulator and
//! localstripe on loopback: the usage errors (an unknown object, no key, Stripe options without a Stripe
//! destination, a template lacking the object's fields), `connector create` storing where the key is read
//! and never the key, `connector show`, and `connector verify`'s read call passing with the key and failing
//! without it.

mod common;

use anyhow::Result;
use common::create_connector;
use common::deployment::Deployment;
use s3_importer_tests::localstripe::{self, LocalStripe};
use s3_importer_tests::unique_name;
use serde_json::Value;

/// The `stripe` check of a `connector verify --json` report.
fn stripe_check(report: &Value) -> Value {
    report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["check"] == "stripe"))
        .cloned()
        .unwrap_or(Value::Null)
}

// The CLI runs as a blocking child process while localstripe answers in its own process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_show_and_verify_a_stripe_destination_and_refuse_what_cannot_work() -> Result<()> {
    let d = Deployment::new().await?;
    d.add_template();
    d.expect(
        0,
        &[
            "template",
            "add",
            "examples/templates/stripe/stripe-products.toml",
        ],
    );
    let bucket = d.bucket_with_demo_files("in/").await?;
    let server = LocalStripe::start().await?;
    let url = server.url();
    let secret = unique_name("stripe-key");
    s3_importer_aws::config::secretsmanager_client(&d.sdk)
        .create_secret()
        .name(&secret)
        .secret_string(localstripe::KEY)
        .send()
        .await?;

    let usage = [
        (
            vec!["--destination", "stripe:widgets", "--stripe-secret", &secret],
            "stripe-products",
            "takes one of products, customers, prices, meter_events",
        ),
        (
            vec!["--destination", "stripe:products"],
            "stripe-products",
            "needs --stripe-secret",
        ),
        (
            vec!["--destination", "s3", "--stripe-rate", "5"],
            "stripe-products",
            "go with --destination stripe:OBJECT",
        ),
        (
            vec!["--destination", "stripe:products", "--stripe-secret", &secret],
            "demo-orders",
            "template demo-orders has no field id, which every stripe:products row needs: start from \
             examples/templates/stripe/stripe-products.toml",
        ),
    ];
    for (extra, template, why) in usage {
        let mut args = create_connector("x", "123456789012", &bucket, "us-east-1", template);
        args.extend(extra);
        let out = d.expect(2, &args);
        assert!(out.contains(why), "{args:?}: {out}");
    }
    assert!(
        !d.cli(&["connector", "show", "x"]).status.success(),
        "no connector was created"
    );

    let mut args = create_connector(
        "products",
        "123456789012",
        &bucket,
        "us-east-1",
        "stripe-products",
    );
    args.extend([
        "--folder",
        "in/",
        "--destination",
        "stripe:products",
        "--stripe-secret",
        &secret,
        "--stripe-base-url",
        &url,
        "--stripe-rate",
        "20",
        "--json",
    ]);
    let created = d.json(&args);
    let destination = &created["connector"]["destination"];
    assert_eq!(destination["kind"], "stripe", "{created:#}");
    assert_eq!(destination["object"], "products");
    assert_eq!(destination["key"]["secret_id"], secret.as_str());
    assert_eq!(destination["rate_per_second"], 20);
    assert!(
        !created.to_string().contains(localstripe::KEY),
        "the key's value is never stored"
    );
    let show = d.expect(0, &["connector", "show", "products"]);
    assert!(
        show.contains(&format!(
            "stripe products at {url} (key from secret {secret})"
        )),
        "{show}"
    );

    let report = d.json_any(&["connector", "verify", "products", "--json"]);
    let check = stripe_check(&report);
    assert_eq!(check["status"], "pass", "{report:#}");
    assert!(
        check["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("reads products (20 requests/s per worker)"),
        "{check:#}"
    );

    // A secret that does not exist: verify fails on the key, and says how to fix it.
    d.expect(
        0,
        &[
            "connector",
            "update",
            "products",
            "--destination",
            "stripe:products",
            "--stripe-secret",
            "no-such-secret",
            "--stripe-base-url",
            &url,
        ],
    );
    let report = d.json_any(&["connector", "verify", "products", "--json"]);
    let check = stripe_check(&report);
    assert_eq!(check["status"], "fail", "{report:#}");
    assert!(
        check["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("no-such-secret"),
        "{check:#}"
    );
    Ok(())
}
