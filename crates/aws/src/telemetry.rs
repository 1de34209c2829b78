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
