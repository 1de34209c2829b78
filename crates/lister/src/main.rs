//! The lister Lambda binary: wiring only (see the library for the handler).

use lambda_runtime::{service_fn, Error, LambdaEvent};
use s3_importer_lister::{handle, Lister};

#[tokio::main]
async fn main() -> Result<(), Error> {
    s3_importer_aws::telemetry::init_tracing();
    // Configuration errors surface at cold start, before any event is accepted.
    let lister = Lister::from_env().await?;
    let lister = &lister;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            handle(lister, event.payload, &event.context.request_id).await
        },
    ))
    .await
}
