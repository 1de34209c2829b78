//! `s3-importer import-file`: the pipeline on a local file, run as the user runs it.

use std::path::{Path, PathBuf};
use std::process::Command;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn import(args: &[&str], out: &Path) -> Result<std::process::Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_s3-importer"))
        .current_dir(repo())
        .args([
            "import-file",
            "--template",
            "examples/demo/orders.toml",
            "--out-dir",
        ])
        .arg(out)
        .args(args)
        .output()?)
}

#[test]
fn import_file_writes_typed_rows_and_an_error_report() -> Result {
    let out = tempfile::tempdir()?;
    let output = import(
        &["--json", "examples/demo/files/orders-2024-05-04-bad.csv"],
        out.path(),
    )?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    assert_eq!(summary["outcome"], "imported_with_rejections");
    assert_eq!(
        (
            summary["rows_imported"].as_u64(),
            summary["rows_rejected"].as_u64()
        ),
        (Some(2), Some(5))
    );
    let rows = std::fs::read_to_string(out.path().join("orders-2024-05-04-bad.csv.rows.jsonl"))?;
    assert_eq!(rows.lines().count(), 2);
    let errors =
        std::fs::read_to_string(out.path().join("orders-2024-05-04-bad.csv.errors.jsonl"))?;
    let first: serde_json::Value =
        serde_json::from_str(errors.lines().next().ok_or("empty report")?)?;
    assert_eq!(
        (first["line"].as_u64(), first["column"].as_str()),
        (Some(3), Some("Customer"))
    );
    assert!(
        !errors.contains("Alan Turing"),
        "the report never carries cell values"
    );
    Ok(())
}

#[test]
fn clean_file_leaves_no_error_report_and_prints_a_summary() -> Result {
    let out = tempfile::tempdir()?;
    let output = import(&["examples/demo/files/orders-2024-05-03.json"], out.path())?;
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout)?;
    assert!(text.contains("Imported 2 rows, rejected 0"), "{text}");
    assert!(!out
        .path()
        .join("orders-2024-05-03.json.errors.jsonl")
        .exists());
    Ok(())
}

#[test]
fn failed_file_exits_1_and_writes_no_output() -> Result {
    let out = tempfile::tempdir()?;
    let bad = out.path().join("truncated.json");
    std::fs::write(&bad, br#"[{"Order ID": "A", "Customer": "x""#)?;
    let output = import(&[bad.to_str().ok_or("path")?], out.path())?;
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8(output.stdout)?;
    assert!(
        text.starts_with("FAILED") && text.contains("byte"),
        "{text}"
    );
    assert!(!out.path().join("truncated.json.rows.jsonl").exists());
    Ok(())
}

#[test]
fn unknown_extension_is_a_clear_error() -> Result {
    let out = tempfile::tempdir()?;
    let output = import(&["examples/demo/files/README.txt"], out.path())?;
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8(output.stderr)?;
    assert!(
        text.contains("cannot tell the format") && text.contains("--format"),
        "{text}"
    );
    Ok(())
}
