//! `s3-importer import-file`: the pipeline on a local file, run as the user runs it.

use std::path::{Path, PathBuf};
use std::process::Command;

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error>>;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn import(args: &[&str], out: &Path) -> Result<std::process::Output> {
    import_with("examples/demo/orders.toml", args, out)
}

fn import_with(template: &str, args: &[&str], out: &Path) -> Result<std::process::Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_s3-importer"))
        .current_dir(repo())
        .args(["import-file", "--template", template, "--out-dir"])
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

#[test]
fn outputs_that_would_overwrite_the_input_or_each_other_are_refused() -> Result {
    let out = tempfile::tempdir()?;
    let input = out.path().join("orders.csv");
    std::fs::copy(
        repo().join("examples/demo/files/orders-2024-05-04-bad.csv"),
        &input,
    )?;
    let before = std::fs::read(&input)?;
    let input_arg = input.to_str().ok_or("path")?;
    let report = out.path().join("both.jsonl");
    let report_arg = report.to_str().ok_or("path")?;
    for args in [
        vec!["--errors", input_arg, input_arg],
        vec!["-o", input_arg, input_arg],
        vec!["-o", report_arg, "--errors", report_arg, input_arg],
    ] {
        let output = import(&args, out.path())?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("overwritten") || stderr.contains("its own file"),
            "{args:?}: {stderr}"
        );
        assert_eq!(
            std::fs::read(&input)?,
            before,
            "{args:?}: the input is intact"
        );
    }
    // Nothing was written: no output, no `.partial` left behind.
    let mut names: Vec<_> = std::fs::read_dir(out.path())?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    assert_eq!(names, ["orders.csv"]);
    Ok(())
}

#[test]
fn an_existing_error_report_path_is_kept_and_dev_null_stays_a_device() -> Result {
    use std::os::unix::fs::FileTypeExt;
    let out = tempfile::tempdir()?;
    // A clean file: nothing is rejected, but the path the user named is not deleted.
    let report = out.path().join("report.jsonl");
    std::fs::write(&report, "old\n")?;
    let output = import(
        &[
            "--errors",
            report.to_str().ok_or("path")?,
            "examples/demo/files/orders-2024-05-01.csv",
        ],
        out.path(),
    )?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&report)?,
        "",
        "truncated, not removed"
    );
    // Rows and report to /dev/null: written through the device, which stays a device.
    let output = import(
        &[
            "-o",
            "/dev/null",
            "--errors",
            "/dev/null",
            "examples/demo/files/orders-2024-05-04-bad.csv",
        ],
        out.path(),
    )?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(std::fs::metadata("/dev/null")?.file_type().is_char_device());
    assert!(!Path::new("/dev/null.partial").exists());
    Ok(())
}

#[test]
fn a_missing_or_invalid_template_is_a_usage_error() -> Result {
    let out = tempfile::tempdir()?;
    let bad = out.path().join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"x\"\n[[fields]]\nname = \"id\"\ntype = \"integr\"\n",
    )?;
    for template in [bad.to_str().ok_or("path")?, "no/such/template.toml"] {
        let output = import_with(
            template,
            &["examples/demo/files/orders-2024-05-01.csv"],
            out.path(),
        )?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{template}: {stderr}");
        assert!(stderr.contains(template), "{template}: {stderr}");
    }
    Ok(())
}

#[test]
fn an_operating_system_error_is_said_once() -> Result {
    let out = tempfile::tempdir()?;
    let missing = out.path().join("no-such-dir");
    let output = import_with(
        "examples/demo/orders.toml",
        &["examples/demo/files/orders-2024-05-04-bad.csv"],
        &missing,
    )?;
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8(output.stderr)?;
    assert_eq!(
        text.matches("No such file or directory").count(),
        1,
        "{text}"
    );
    assert!(text.contains("no-such-dir"), "{text}");
    Ok(())
}

#[test]
fn a_rows_file_that_cannot_be_created_leaves_no_error_report_behind() -> Result {
    let out = tempfile::tempdir()?;
    let rows = out.path().join("no-such-dir").join("rows.jsonl");
    let output = import(
        &[
            "--output",
            rows.to_str().ok_or("path")?,
            "examples/demo/files/orders-2024-05-04-bad.csv",
        ],
        out.path(),
    )?;
    assert_eq!(output.status.code(), Some(1));
    let left: Vec<_> = std::fs::read_dir(out.path())?.collect::<std::result::Result<_, _>>()?;
    assert!(left.is_empty(), "{left:?}");
    Ok(())
}

#[test]
fn a_zero_limit_is_a_usage_error() -> Result {
    let out = tempfile::tempdir()?;
    for option in ["--max-record-bytes", "--max-decompressed-bytes"] {
        let output = import(
            &[option, "0", "examples/demo/files/orders-2024-05-01.csv"],
            out.path(),
        )?;
        assert_eq!(output.status.code(), Some(2), "{option}");
        let text = String::from_utf8(output.stderr)?;
        assert!(text.contains("at least 1"), "{option}: {text}");
    }
    Ok(())
}

#[test]
fn parquet_output_holds_the_same_typed_rows_as_json_lines() -> Result {
    let input = "examples/demo/files/orders-2024-05-04-bad.csv";
    let jsonl = tempfile::tempdir()?;
    let parquet = tempfile::tempdir()?;
    assert!(import(&[input], jsonl.path())?.status.success());
    let output = import(&["--output-format", "parquet", input], parquet.path())?;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout)?;
    assert!(
        text.contains("orders-2024-05-04-bad.csv.rows.parquet"),
        "{text}"
    );
    let rows = s3_importer_tests::parquet_rows::parquet_rows(std::fs::read(
        parquet
            .path()
            .join("orders-2024-05-04-bad.csv.rows.parquet"),
    )?)?;
    let expected: Vec<serde_json::Map<String, serde_json::Value>> =
        std::fs::read_to_string(jsonl.path().join("orders-2024-05-04-bad.csv.rows.jsonl"))?
            .lines()
            .map(serde_json::from_str)
            .collect::<std::result::Result<_, _>>()?;
    assert_eq!(rows.len(), expected.len());
    for (row, want) in rows.iter().zip(&expected) {
        // Strings and decimals read back as the JSON Lines text; the lineage columns name the input.
        for field in ["order_id", "customer", "amount"] {
            assert_eq!(row.get(field), want.get(field), "{field} in {row:?}");
        }
        assert_eq!(row.get("_source_key").and_then(|v| v.as_str()), Some(input));
    }
    // The error report is the same as with JSON Lines output, and no partial file is left.
    assert!(parquet
        .path()
        .join("orders-2024-05-04-bad.csv.errors.jsonl")
        .exists());
    assert_eq!(std::fs::read_dir(parquet.path())?.count(), 2);
    Ok(())
}

#[test]
fn failed_file_leaves_no_parquet_output() -> Result {
    let out = tempfile::tempdir()?;
    let bad = out.path().join("truncated.json");
    std::fs::write(&bad, br#"[{"Order ID": "A", "Customer": "x""#)?;
    let output = import(
        &["--output-format", "parquet", bad.to_str().ok_or("path")?],
        out.path(),
    )?;
    assert_eq!(output.status.code(), Some(1));
    let left: Vec<_> = std::fs::read_dir(out.path())?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::result::Result<_, _>>()?;
    assert_eq!(left, vec![std::ffi::OsString::from("truncated.json")]);
    Ok(())
}
