//! The CloudWatch Embedded Metric Format lines a real lister and worker run emits: each is a valid EMF document
//! (checked here against the specification, independently of the code that builds them), the metric names and
//! dimensions are the ones the README documents, and the values are what the run did.
//!
//! Specification: <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, OnceLock, PoisonError};

use anyhow::{bail, ensure, Context, Result};
use s3_importer_tests::deployment::Deployment;
use s3_importer_tests::repo_root;
use serde_json::Value;

/// Every metric line this test process emits.
fn captured() -> &'static Mutex<Vec<String>> {
    static LINES: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    LINES.get_or_init(|| {
        s3_importer_aws::telemetry::set_metrics_writer(|line| {
            captured()
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(line.to_owned());
        });
        Mutex::new(Vec::new())
    })
}

const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// A parsed, validated EMF document.
#[derive(Debug)]
struct Emf {
    namespace: String,
    dimension_sets: Vec<Vec<String>>,
    metrics: BTreeMap<String, (String, f64)>,
    root: serde_json::Map<String, Value>,
}

/// Validates one line against the EMF specification: a JSON object with `_aws.Timestamp` (epoch ms),
/// `_aws.CloudWatchMetrics` (directives with a Namespace of 1-1024 characters, Dimensions as arrays of at most
/// 30 dimension names each present as a string member, and Metrics with a Name present as a numeric member and a
/// valid Unit), at most 100 metrics per directive.
fn parse_emf(line: &str) -> Result<Emf> {
    ensure!(!line.contains('\n'), "an EMF document is one line");
    let value: Value = serde_json::from_str(line).context("not JSON")?;
    let root = value.as_object().context("not a JSON object")?.clone();
    let aws = root.get("_aws").context("no _aws member")?;
    let timestamp = aws["Timestamp"]
        .as_i64()
        .context("_aws.Timestamp is not an integer")?;
    ensure!(
        timestamp > 1_500_000_000_000,
        "_aws.Timestamp {timestamp} is not epoch milliseconds"
    );
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .context("_aws.CloudWatchMetrics is not an array")?;
    let [directive] = directives.as_slice() else {
        bail!("expected one metric directive, found {}", directives.len());
    };
    let namespace = directive["Namespace"]
        .as_str()
        .context("Namespace is not a string")?
        .to_owned();
    ensure!(
        !namespace.is_empty() && namespace.len() <= 1024 && !namespace.starts_with("AWS/"),
        "bad namespace {namespace:?}"
    );
    let mut dimension_sets = Vec::new();
    for set in directive["Dimensions"]
        .as_array()
        .context("Dimensions is not an array")?
    {
        let names: Vec<String> = set
            .as_array()
            .context("a dimension set is not an array")?
            .iter()
            .map(|n| {
                n.as_str()
                    .map(str::to_owned)
                    .context("a dimension name is not a string")
            })
            .collect::<Result<_>>()?;
        ensure!(names.len() <= 30, "more than 30 dimensions in a set");
        for name in &names {
            ensure!(
                root.get(name).is_some_and(Value::is_string),
                "dimension {name} is not a string member of the document"
            );
        }
        dimension_sets.push(names);
    }
    let definitions = directive["Metrics"]
        .as_array()
        .context("Metrics is not an array")?;
    ensure!(
        !definitions.is_empty() && definitions.len() <= 100,
        "1 to 100 metrics per directive"
    );
    let mut metrics = BTreeMap::new();
    for definition in definitions {
        let name = definition["Name"]
            .as_str()
            .context("metric without a Name")?;
        ensure!(!name.is_empty() && name.len() <= 1024, "bad metric name");
        let unit = definition["Unit"].as_str().unwrap_or("None");
        ensure!(UNITS.contains(&unit), "{name}: unknown unit {unit}");
        let value = root
            .get(name)
            .and_then(Value::as_f64)
            .with_context(|| format!("metric {name} has no numeric member"))?;
        ensure!(value.is_finite(), "{name} is not finite");
        ensure!(
            metrics
                .insert(name.to_owned(), (unit.to_owned(), value))
                .is_none(),
            "{name} defined twice"
        );
    }
    Ok(Emf {
        namespace,
        dimension_sets,
        metrics,
        root,
    })
}

/// The metric names and dimensions the README's "Metrics" table documents.
fn documented() -> (BTreeMap<String, String>, BTreeSet<String>) {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let section: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.starts_with("### Metrics"))
        .skip(1)
        .take_while(|l| !l.starts_with('#'))
        .collect();
    assert!(
        !section.is_empty(),
        "README.md has no \"### Metrics\" section"
    );
    let mut metrics = BTreeMap::new();
    for row in section.iter().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let unit = cells.get(2).copied().unwrap_or("").to_owned();
        for name in cells[1].split('`').skip(1).step_by(2) {
            metrics.insert(name.to_owned(), unit.clone());
        }
    }
    let dimensions = section
        .iter()
        .filter(|l| l.starts_with("Dimensions:"))
        .flat_map(|l| l.split('`').skip(1).step_by(2).map(str::to_owned))
        .collect();
    (metrics, dimensions)
}

#[tokio::test]
async fn lister_and_worker_emit_valid_documented_emf() -> Result<()> {
    let lines = captured();
    let d = Deployment::new().await?;
    d.put("good.csv", b"id,qty\n1,2\n2,3\n").await?;
    d.put("mixed.csv", b"id,qty\n3,4\n4,-1\n").await?;
    d.put("no-qty.csv", b"id\nn-1\n").await?;
    // A sync with its reconciliation (which finds nothing the poll did not), so the lister's document carries
    // the reconciliation's counts too.
    let response = s3_importer_lister::handle(
        &d.lister,
        serde_json::json!({ "action": "reconcile", "connector": d.connector.name }),
        "metrics-emf",
    )
    .await?;
    let run = response
        .connectors
        .into_iter()
        .find_map(|c| c.run)
        .ok_or_else(|| anyhow::anyhow!("the lister did not run"))?;
    ensure!(run.enqueued == 3, "enqueued {}", run.enqueued);
    ensure!(run.reconciled.is_some(), "{run:?}");
    let drained = d.drain().await?;
    ensure!(drained.acked == 3, "{drained:?}");

    let (documented_metrics, documented_dimensions) = documented();
    let mut lister = Vec::new();
    let mut worker = Vec::new();
    let mut runs = Vec::new();
    let all = lines.lock().unwrap_or_else(PoisonError::into_inner).clone();
    for line in &all {
        let emf = parse_emf(line).with_context(|| format!("invalid EMF line: {line}"))?;
        // The lister's deployment-wide document (no connector dimension); other tests' runs may add more.
        if emf.root.get("ConnectorId").is_none()
            && emf.namespace == d.config.metrics_namespace
            && emf.root.get("Function").and_then(Value::as_str) == Some("lister")
        {
            ensure!(
                emf.dimension_sets == [Vec::<String>::new()],
                "deployment-wide only: {line}"
            );
            for (name, (unit, _)) in &emf.metrics {
                ensure!(
                    documented_metrics.get(name) == Some(unit),
                    "{name} ({unit}) is not documented with that unit in the README's Metrics table"
                );
            }
            runs.push(emf);
            continue;
        }
        if emf.root.get("ConnectorId").and_then(Value::as_str) != Some(d.connector.id.as_str()) {
            continue;
        }
        ensure!(emf.namespace == d.config.metrics_namespace, "{line}");
        ensure!(
            emf.dimension_sets == [vec!["ConnectorId".to_owned()], vec![]],
            "per connector and aggregated: {line}"
        );
        for set in &emf.dimension_sets {
            for dim in set {
                ensure!(
                    documented_dimensions.contains(dim),
                    "dimension {dim} is not documented in the README"
                );
            }
        }
        for (name, (unit, _)) in &emf.metrics {
            ensure!(
                documented_metrics.get(name) == Some(unit),
                "{name} ({unit}) is not documented with that unit in the README's Metrics table"
            );
        }
        match emf.root.get("Function").and_then(Value::as_str) {
            Some("lister") => lister.push(emf),
            Some("worker") => worker.push(emf),
            other => bail!("document from {other:?}: {line}"),
        }
    }
    let [sync] = lister.as_slice() else {
        bail!("expected one lister document, got {}", lister.len());
    };
    let value = |emf: &Emf, name: &str| emf.metrics.get(name).map(|(_, v)| *v);
    ensure!(value(sync, "FilesListed") == Some(3.0));
    ensure!(value(sync, "FilesEnqueued") == Some(3.0));
    ensure!(value(sync, "SyncsSucceeded") == Some(1.0));
    ensure!(value(sync, "SyncsFailed") == Some(0.0));
    ensure!(value(sync, "FilesFoundLate") == Some(0.0));
    ensure!(value(sync, "FilesMissedByEvents") == Some(0.0));
    ensure!(sync.root["Connector"] == d.connector.name.as_str());
    ensure!(
        runs.iter()
            .any(|r| value(r, "ActiveConnectors").is_some_and(|n| n >= 1.0)),
        "the lister reports the active connectors of its run: {runs:?}"
    );

    ensure!(
        worker.len() == 3,
        "one worker document per file: {worker:?}"
    );
    let total = |name: &str| -> f64 { worker.iter().filter_map(|e| value(e, name)).sum() };
    ensure!(total("FilesImported") == 2.0);
    ensure!(total("FilesFailed") == 1.0);
    ensure!(total("RowsImported") == 3.0);
    ensure!(total("RowsRejected") == 1.0);
    ensure!(total("BytesRead") > 0.0);
    let lags: Vec<f64> = worker
        .iter()
        .filter_map(|e| value(e, "ImportLag"))
        .collect();
    ensure!(
        lags.len() == 2 && lags.iter().all(|l| *l >= 0.0),
        "ImportLag for each imported file: {lags:?}"
    );
    // Every documented metric is emitted by one of the two functions.
    let emitted: BTreeSet<&String> = lister
        .iter()
        .chain(&worker)
        .chain(&runs)
        .flat_map(|e| e.metrics.keys())
        .collect();
    for name in documented_metrics.keys() {
        ensure!(
            emitted.contains(name),
            "the README documents {name}, which no function emitted"
        );
    }
    Ok(())
}

#[test]
fn the_validator_rejects_what_cloudwatch_rejects() {
    let good = r#"{"_aws":{"Timestamp":1700000000000,"CloudWatchMetrics":[{"Namespace":"N","Dimensions":[["C"]],"Metrics":[{"Name":"M","Unit":"Count"}]}]},"C":"x","M":1}"#;
    assert!(parse_emf(good).is_ok());
    for bad in [
        good.replace(r#""C":"x","#, ""), // dimension value missing
        good.replace(r#","M":1"#, ""),   // metric value missing
        good.replace(r#""Unit":"Count""#, r#""Unit":"Rows""#), // unknown unit
        good.replace("1700000000000", "1700000000"), // seconds, not milliseconds
        good.replace(r#""M":1"#, r#""M":"1""#), // value not numeric
        good.replace(r#""Namespace":"N""#, r#""Namespace":"AWS/X""#),
    ] {
        assert!(parse_emf(&bad).is_err(), "accepted {bad}");
    }
}
