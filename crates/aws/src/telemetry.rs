//! Logging setup shared by the Lambda binaries and the local runner.

use tracing_subscriber::EnvFilter;

/// Installs the global tracing subscriber: JSON lines (one object per event, span fields included) unless
/// `S3I_LOG_FORMAT=text`; level from `RUST_LOG` (default `info`). Safe to call twice (the second is a no-op).
pub fn init_tracing() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let text = std::env::var(s3_importer_core::config::vars::LOG_FORMAT).is_ok_and(|v| v == "text");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = if text {
        builder.try_init()
    } else {
        // Lambda already stamps each line with the time; the JSON keeps fields machine-readable.
        builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .without_time()
            .try_init()
    };
    // An error only means a subscriber is already installed (tests, the local runner).
    drop(result);
}

/// Set by Lambda in every function's environment.
const LAMBDA_FUNCTION_NAME: &str = "AWS_LAMBDA_FUNCTION_NAME";

/// Where metric documents go: standard output in Lambda (CloudWatch Logs extracts EMF from the function's log
/// stream), a debug-level log event elsewhere, or a writer installed with [`set_metrics_writer`].
type MetricsWriter = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

static METRICS_WRITER: std::sync::RwLock<Option<MetricsWriter>> = std::sync::RwLock::new(None);

/// Sends every later metric document (one JSON line, no newline) to `writer` instead of standard output, for
/// the whole process (the local runner and the tests capture them this way).
pub fn set_metrics_writer(writer: impl Fn(&str) + Send + Sync + 'static) {
    let mut slot = METRICS_WRITER
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *slot = Some(std::sync::Arc::new(writer));
}

/// Emits one CloudWatch Embedded Metric Format document as a line of its own on standard output in Lambda (or
/// to the installed writer; outside Lambda, as a debug log event). EMF needs the whole object on one line; the line is written with one call while holding
/// the standard-output lock, so concurrent emitters never interleave.
pub fn emit_metrics(document: &s3_importer_core::metrics::EmfDocument) {
    let line = document.to_line();
    let writer = METRICS_WRITER
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    match writer {
        Some(writer) => writer(&line),
        // Outside Lambda (the CLI's local runner) the documents would mix with the command's output: log them.
        None if std::env::var_os(LAMBDA_FUNCTION_NAME).is_none() => {
            tracing::debug!(target: "s3_importer::metrics", emf = %line, "metrics");
        }
        None => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            // Metrics are best effort: a closed standard output must not fail the import.
            drop(writeln!(out, "{line}").and_then(|()| out.flush()));
        }
    }
}
