//! The webhook destination against a real HTTP receiver on loopback (`s3_importer_tests::webhook_receiver`),
//! through the import pipeline: faults injected (500s, answers slower than the timeout, closed connections,
//! 429 with Retry-After, 410, 4xx), every batch delivered once as counted by idempotency key, every row once
//! after dedupe; a receiver with another secret refusing everything; targets the SSRF guard refuses at write
//! time; and the throughput to the receiver. No emulator: the end-to-end runs are in `webhook_e2e.rs`.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use s3_importer_core::sync::contract::fixtures::{delimited, rows};
use s3_importer_core::sync::WebhookOnReject;
use s3_importer_core::ErrorCode;
use s3_importer_tests::webhook_import::{config, import, webhook};
use s3_importer_tests::webhook_receiver::{Fault, Receiver};
use s3_importer_webhook::{SigningSecret, Webhook};

const SECRET: &str = "whsec-test-1";

/// Records of the rows `rows(…)` accepts (every 7th is rejected by the template).
fn accepted_records(n: u64) -> Vec<u64> {
    (1..=n).filter(|r| r % 7 != 0).collect()
}

#[tokio::test]
async fn every_batch_is_delivered_once_by_key_and_every_row_once_despite_faults() -> Result<()> {
    let receiver = Receiver::start(SECRET).await?;
    receiver.inject([
        Some(Fault::Status(500)),
        None,
        Some(Fault::Slow(Duration::from_millis(1500))),
        None,
        Some(Fault::Close),
        Some(Fault::Status(503)),
        None,
        Some(Fault::TooMany(1)),
        None,
        Some(Fault::Close),
    ]);
    let (report, rejects) = import(
        webhook(&config(&receiver.url(), 50), SECRET)?,
        delimited(&rows("r", 700), ','),
        37,
    )
    .await?;
    let report = report?;
    ensure!(report.failure().is_none(), "{:?}", report.end);
    ensure!(receiver.pending_faults() == 0, "every fault was met");
    let accepted = accepted_records(700);
    ensure!(report.counts.rows_imported == accepted.len() as u64);
    ensure!(rejects.rows.len() == 100, "the template's own rejections");
    receiver.seen(|s| {
        ensure!(s.bad_signatures == 0, "every signature verified");
        ensure!(s.unstable_keys.is_empty(), "{:?}", s.unstable_keys);
        // 600 rows in batches of 50: 12 distinct keys, applied once each.
        ensure!(
            s.batches.len() == 12 && s.deliveries.len() == 12,
            "{} batches",
            s.batches.len()
        );
        // The slow answer made the client send its batch again: one key delivered twice, deduped.
        let twice: Vec<_> = s.deliveries.values().filter(|n| **n > 1).collect();
        ensure!(twice == vec![&2], "redeliveries: {twice:?}");
        let records: Vec<u64> = s.rows.keys().map(|(_, _, r)| *r).collect();
        ensure!(records == accepted, "every accepted row once");
        ensure!(s.rows.values().all(|n| *n == 1), "no row applied twice");
        // Batches cover consecutive accepted records: the body says which, and the rows' positions.
        let first = &s.batches[0].body;
        ensure!(
            first["batch"]["first_record"] == 1 && first["batch"]["last_record"] == 58,
            "{}",
            first["batch"]
        );
        ensure!(first["rows"][0]["line"] == 2 && first["file"]["key"] == "in/orders.csv");
        ensure!(first["file"]["etag"] == "\"etag-1\"" && first["connector"] == "c-webhook");
        Ok(())
    })
}

#[tokio::test]
async fn the_same_file_sent_again_repeats_the_same_keys() -> Result<()> {
    let receiver = Receiver::start(SECRET).await?;
    let csv = delimited(&rows("k", 300), ',');
    let hook = webhook(&config(&receiver.url(), 40), SECRET)?;
    // Different pipeline batch sizes (as a slow destination's pace makes them): the same webhook batches.
    import(hook.clone(), csv.clone(), 13).await?.0?;
    let keys = receiver.seen(|s| s.batches.iter().map(|b| b.key.clone()).collect::<Vec<_>>());
    import(hook, csv, 100).await?.0?;
    receiver.seen(|s| {
        ensure!(
            s.batches.len() == keys.len(),
            "no new key on the redelivery"
        );
        ensure!(
            s.deliveries.values().all(|n| *n == 2),
            "each key delivered twice"
        );
        ensure!(s.unstable_keys.is_empty() && s.bad_signatures == 0);
        Ok(())
    })
}

#[tokio::test]
async fn retry_after_is_honoured() -> Result<()> {
    let receiver = Receiver::start(SECRET).await?;
    receiver.inject([Some(Fault::TooMany(2))]);
    let started = Instant::now();
    import(
        webhook(&config(&receiver.url(), 500), SECRET)?,
        delimited(&rows("t", 10), ','),
        100,
    )
    .await?
    .0?;
    let took = started.elapsed();
    ensure!(took >= Duration::from_secs(2), "waited {took:?}");
    ensure!(receiver.seen(|s| s.batches.len()) == 1);
    Ok(())
}

#[tokio::test]
async fn a_receiver_with_another_secret_refuses_every_batch_into_the_error_report() -> Result<()> {
    let receiver = Receiver::start("the-receivers-secret").await?;
    let (report, rejects) = import(
        webhook(&config(&receiver.url(), 25), SECRET)?,
        delimited(&rows("s", 100), ','),
        30,
    )
    .await?;
    let report = report?;
    ensure!(report.counts.rows_imported == 0, "{:?}", report.counts);
    ensure!(report.counts.rows_rejected == 100, "{:?}", report.counts);
    let refused: Vec<_> = rejects
        .rows
        .iter()
        .filter(|r| r.errors[0].code == ErrorCode::DestinationRejected)
        .collect();
    ensure!(refused.len() == 86, "{} refused", refused.len());
    let message = &refused[0].errors[0].message;
    ensure!(
        message.contains("401") && message.contains("signature mismatch"),
        "{message}"
    );
    receiver.seen(|s| {
        ensure!(
            s.bad_signatures == 4 && s.batches.is_empty(),
            "{} bad",
            s.bad_signatures
        );
        Ok(())
    })
}

#[tokio::test]
async fn on_reject_fail_fails_the_file_and_410_breaks_the_connector() -> Result<()> {
    let receiver = Receiver::start(SECRET).await?;
    receiver.inject([Some(Fault::Status(422))]);
    let mut cfg = config(&receiver.url(), 500);
    cfg.on_reject = WebhookOnReject::Fail;
    let (report, _) = import(webhook(&cfg, SECRET)?, delimited(&rows("f", 10), ','), 100).await?;
    let e = report.err().context("a refused batch fails the file")?;
    ensure!(
        !e.is_transient() && !e.breaks_connector() && e.to_string().contains("422"),
        "{e}"
    );

    receiver.always(Some(Fault::Status(410)));
    let (report, _) = import(
        webhook(&config(&receiver.url(), 500), SECRET)?,
        delimited(&rows("g", 10), ','),
        100,
    )
    .await?;
    let e = report.err().context("410 fails")?;
    ensure!(e.breaks_connector() && e.to_string().contains("410"), "{e}");

    // 5xx until the attempts are spent: transient (the file is retried later).
    receiver.always(Some(Fault::Status(502)));
    let (report, _) = import(
        webhook(&config(&receiver.url(), 500), SECRET)?,
        delimited(&rows("h", 10), ','),
        100,
    )
    .await?;
    let e = report.err().context("502s fail")?;
    ensure!(
        e.is_transient() && e.to_string().contains("502 after 6 attempts"),
        "{e}"
    );
    Ok(())
}

#[tokio::test]
async fn metadata_and_loopback_targets_are_refused_at_write_time() -> Result<()> {
    let mut metadata = config("http://169.254.169.254/latest/meta-data/", 10);
    metadata.allow_private = false;
    let e = Webhook::new(&metadata, SigningSecret::new(b"x"))
        .err()
        .context("refused")?;
    ensure!(e.to_string().contains("http:// is refused"), "{e}");
    metadata.url = "https://169.254.169.254/latest/meta-data/".into();
    let e = Webhook::new(&metadata, SigningSecret::new(b"x"))
        .err()
        .context("refused")?;
    ensure!(
        e.to_string().contains("169.254.169.254") && e.to_string().contains("link-local"),
        "{e}"
    );

    // A name resolving to loopback passes the URL check and is refused when the request is made.
    let receiver = Receiver::start(SECRET).await?;
    let port = receiver
        .url()
        .split(':')
        .nth(2)
        .and_then(|p| p.split('/').next())
        .unwrap_or_default()
        .to_owned();
    let mut named = config(&format!("https://localhost:{port}/hook"), 10);
    named.allow_private = false;
    let (report, _) = import(webhook(&named, SECRET)?, delimited(&rows("l", 5), ','), 100).await?;
    let e = report.err().context("refused at write time")?;
    ensure!(
        !e.is_transient() && e.to_string().contains("loopback"),
        "{e}"
    );
    ensure!(receiver.seen(|s| s.requests) == 0, "nothing was sent");
    Ok(())
}

#[tokio::test]
async fn throughput_to_the_loopback_receiver() -> Result<()> {
    let receiver = Receiver::start(SECRET).await?;
    let n = 50_000;
    let csv = delimited(&rows("p", n), ',');
    let started = Instant::now();
    let (report, _) = import(webhook(&config(&receiver.url(), 500), SECRET)?, csv, 1000).await?;
    let report = report?;
    let took = started.elapsed();
    let rate = report.counts.rows_imported as f64 / took.as_secs_f64();
    println!(
        "webhook throughput: {} rows in {took:?}: {rate:.0} rows/s",
        report.counts.rows_imported
    );
    ensure!(receiver.seen(|s| s.rows.len()) as u64 == report.counts.rows_imported);
    Ok(())
}

/// The code block of the README's Webhook section that starts with `opening` (a fence line).
fn readme_block(opening: &str) -> Result<String> {
    let readme = std::fs::read_to_string(s3_importer_tests::repo_root().join("README.md"))?;
    let section = readme
        .split("### Webhook")
        .nth(1)
        .context("no Webhook section")?;
    let start = section.find(opening).context("no such block")? + opening.len();
    let rest = &section[start..];
    let end = rest.find("\n```").context("unterminated block")?;
    Ok(rest[..end].to_owned())
}

/// Runs `program` with `script` and the arguments; its stdout, trimmed.
fn run_script(
    program: &std::path::Path,
    flag: &str,
    script: &str,
    args: &[&str],
) -> Result<String> {
    let out = std::process::Command::new(program)
        .arg(flag)
        .arg(script)
        .args(args)
        .output()
        .with_context(|| format!("run {}", program.display()))?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

#[test]
fn the_readme_verification_snippets_accept_our_signatures_and_nothing_else() -> Result<()> {
    let secret = SigningSecret::new(b"readme-secret");
    let body = r#"{"version":1,"rows":[{"record":1,"line":2,"data":{"id":"ü"}}]}"#;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let header = secret.sign(now, body.as_bytes());
    let old = secret.sign(now - 3600, body.as_bytes());
    // (secret, header, body) → the snippet's answer.
    let cases = [
        ("readme-secret", header.as_str(), body, "True"),
        (
            "readme-secret",
            header.as_str(),
            &body.replace("ü", "u"),
            "False",
        ),
        ("another-secret", header.as_str(), body, "False"),
        ("readme-secret", old.as_str(), body, "False"),
    ];
    let python = std::env::var_os(s3_importer_tests::PYTHON_ENV)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| s3_importer_tests::repo_root().join(".venv/bin/python"));
    let py = format!(
        "{}\nimport sys\nprint(verify(sys.argv[1].encode(), sys.argv[2], sys.argv[3].encode()))",
        readme_block("```python\n")?
    );
    let js = format!(
        "{}\nconst [s, h, b] = process.argv.slice(1);\nconsole.log(verify(s, h, Buffer.from(b)) ? 'True' : 'False');",
        readme_block("```js\n")?
    );
    for (s, h, b, want) in cases {
        ensure!(
            run_script(&python, "-c", &py, &[s, h, b])? == want,
            "python: {s} {h} {b}"
        );
        ensure!(
            run_script(std::path::Path::new("node"), "-e", &js, &[s, h, b])? == want,
            "node: {s} {h} {b}"
        );
    }
    Ok(())
}
