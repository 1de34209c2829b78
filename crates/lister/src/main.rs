//! The lister Lambda binary: wiring only (see the library for the handlers).

use lambda_runtime::{service_fn, Diagnostic, Error, LambdaEvent};
use s3_importer_lister::events::{handle_notifications, is_sqs_event};
use s3_importer_lister::{handle, Lister};

#[tokio::main]
async fn main() -> Result<(), Error> {
    s3_importer_aws::telemetry::init_tracing();
    // Configuration errors surface at cold start, before any event is accepted.
    let lister = Lister::from_env().await?;
    let lister = &lister;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let response = if is_sqs_event(&event.payload) {
                // The notification queue's event source mapping.
                let sqs = serde_json::from_value(event.payload).map_err(serde_diagnostic)?;
                serde_json::to_value(handle_notifications(lister, sqs).await.0)
            } else {
                serde_json::to_value(
                    handle(lister, event.payload, &event.context.request_id).await?,
                )
            };
            response.map_err(serde_diagnostic)
        },
    ))
    .await
}

fn serde_diagnostic(e: serde_json::Error) -> Diagnostic {
    Diagnostic {
        error_type: "SerdeError".into(),
        error_message: e.to_string(),
    }
}
