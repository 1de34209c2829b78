//! `on_error.validate_first` end to end on the emulator, with the DynamoDB records table: the destination
//! whose writes are visible at once and that `RowSink::abort` cannot undo (the engine's cases run on the
//! memory adapters in `crates/core/tests/engine_validate_first.rs`).

use anyhow::{Context, Result};
use s3_importer_core::sink::ErrorReportEntry;
use s3_importer_core::sync::contract::fixtures::TEMPLATE;
use s3_importer_core::sync::FileStatus;
use s3_importer_tests::deployment::{Deployment, Options};

/// 20 rows of the default template, the last 6 with a negative `qty` (rejected): with at most 2 rejected
/// rows allowed, the file fails at its 17th row.
fn over_threshold() -> Vec<u8> {
    let mut csv = String::from("id,qty\n");
    for i in 1..=20 {
        let qty = if i > 14 { -1 } else { i };
        csv.push_str(&format!("row-{i:02},{qty}\n"));
    }
    csv.into_bytes()
}

#[tokio::test]
async fn a_file_over_its_threshold_leaves_the_table_unchanged_with_validate_first_and_not_without(
) -> Result<()> {
    // Without the option (today's behaviour, documented): the 14 good rows read before the failure stay.
    for (validate_first, rows_left) in [(true, 0), (false, 14)] {
        let template = format!(
            "{TEMPLATE}\n[on_error]\nmax_rejected_rows = 2\nvalidate_first = {validate_first}\n"
        );
        let d = Deployment::with(Options {
            template,
            ..Options::default()
        })
        .await?;
        d.put("over.csv", &over_threshold()).await?;
        assert_eq!(d.sync().await?.enqueued, 1);
        assert_eq!(d.drain().await?.acked, 1);

        let entry = d.file("over.csv").await?;
        assert_eq!(entry.status, FileStatus::Failed, "{entry:#?}");
        let error = entry.error.clone().unwrap_or_default();
        assert!(error.contains("3 of 17 rows rejected"), "{error}");
        assert_eq!(
            d.records().await?.len(),
            rows_left,
            "validate_first = {validate_first}"
        );
        let location = entry.error_report.context("no error report")?;
        let entries: Vec<ErrorReportEntry> = String::from_utf8(d.read_output(&location).await?)?
            .lines()
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()?;
        let records: Vec<u64> = entries.iter().map(|e| e.record).collect();
        assert_eq!(records, [15, 16, 17], "validate_first = {validate_first}");
    }
    Ok(())
}
