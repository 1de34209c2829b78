//! `connector retry --skipped` as a user runs it against a deployment on the emulator: files skipped under a
//! small size limit stay skipped while the limit is unchanged (each listed with its reason), are re-queued and
//! imported once it is raised, and a file no setting imports (no supported format) is never sent.

mod common;

use std::process::Stdio;

use anyhow::Result;
use common::deployment::Deployment;
use serde_json::Value;

const SMALL: (&str, &str) = ("S3I_MAX_FILE_BYTES", "10");

fn json_with(d: &Deployment, env: &[(&str, &str)], args: &[&str]) -> Result<Value> {
    let out = d.cli_with(env, args, Stdio::piped());
    assert_eq!(
        out.status.code(),
        Some(0),
        "s3-importer {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn statuses(d: &Deployment) -> Vec<(String, String)> {
    let files = d.json(&["connector", "files", "shop", "--json"]);
    let mut out: Vec<(String, String)> = files
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    (
                        f["version"]["key"].as_str().unwrap_or_default().to_owned(),
                        f["status"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[tokio::test]
async fn skipped_files_are_retried_once_the_limit_is_raised_and_only_those_a_sync_would_import(
) -> Result<()> {
    let d = Deployment::new().await?;
    d.add_template();
    let bucket = d.bucket_with_demo_files("in/").await?;
    d.create("shop", &bucket, &["--folder", "in/"]);
    let out = d.cli_with(
        &[SMALL],
        &["run", "--once", "--connector", "shop"],
        Stdio::piped(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let skipped = vec![
        ("in/README.txt".to_owned(), "skipped".to_owned()),
        ("in/orders-2024-05-01.csv".to_owned(), "skipped".to_owned()),
        (
            "in/orders-2024-05-04-bad.csv".to_owned(),
            "skipped".to_owned(),
        ),
    ];
    assert_eq!(statuses(&d), skipped);

    // The limit unchanged: nothing is sent, and each file says why (the size is checked first).
    let same = json_with(
        &d,
        &[SMALL],
        &["connector", "retry", "shop", "--skipped", "--json"],
    )?;
    assert_eq!(same["requeued"], serde_json::json!([]), "{same:#}");
    let reasons: Vec<&str> = same["not_retried"]
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["reason"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(reasons.len(), 3, "{same:#}");
    assert_eq!(
        reasons
            .iter()
            .filter(|r| r.contains("over the 10-byte limit (S3I_MAX_FILE_BYTES here"))
            .count(),
        3,
        "{same:#}"
    );
    assert_eq!(statuses(&d), skipped);

    // The default limit: the two CSV files are re-queued and imported; README.txt stays skipped.
    let text = d.expect(0, &["connector", "retry", "shop", "--skipped"]);
    assert!(
        text.contains("not retried in/README.txt: still skipped: unsupported format")
            && text.contains("re-queued in/orders-2024-05-01.csv")
            && text.contains("2 file(s) re-queued"),
        "{text}"
    );
    d.expect(0, &["run", "--once", "--connector", "shop"]);
    let now = statuses(&d);
    assert_eq!(now[0], skipped[0]);
    for (key, status) in &now[1..] {
        assert_ne!(status, "skipped", "{key}: {now:?}");
        assert_ne!(status, "queued", "{key} was not imported: {now:?}");
    }
    let imported = d.json(&["connector", "show", "shop", "--json"]);
    assert!(
        imported["totals"]["rows_imported"].as_u64() > Some(0),
        "{imported:#}"
    );

    // Asking again sends nothing; an unknown key is an error naming the status.
    let again = d.json(&["connector", "retry", "shop", "--skipped", "--json"]);
    assert_eq!(again["requeued"], serde_json::json!([]), "{again:#}");
    let unknown = d.expect(
        3,
        &["connector", "retry", "shop", "--skipped", "in/nope.csv"],
    );
    assert!(
        unknown.contains("no skipped file \"in/nope.csv\""),
        "{unknown}"
    );
    Ok(())
}
