//! The worker Lambda binary: wiring only (see the library for the handler).

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{service_fn, Error, LambdaEvent};
use s3_importer_worker::{deadline_from_millis, handle, Worker};

#[tokio::main]
async fn main() -> Result<(), Error> {
    s3_importer_aws::telemetry::init_tracing();
    let worker = Worker::from_env().await?;
    let worker = &worker;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = deadline_from_millis(event.context.deadline);
        Ok::<SqsBatchResponse, Error>(
            handle(worker, event.payload, deadline, &event.context.request_id).await,
        )
    }))
    .await
}
