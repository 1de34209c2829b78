//! S3 events on the emulator: a connector switched to `events` discovery, its bucket's notifications routed to
//! the deployment's notification queue (directly, or through SNS or EventBridge), and the queue drained
//! through the notification handler the Lambda function runs (`s3_importer_lister::events`).

use std::process::Command;

use anyhow::{ensure, Context, Result};
use aws_sdk_s3::types::{
    Event, FilterRule, FilterRuleName, NotificationConfiguration, NotificationConfigurationFilter,
    QueueConfiguration, S3KeyFilter,
};
use s3_importer_aws::consumer::{Received, SqsConsumer};
use s3_importer_core::sync::events::EventReport;
use s3_importer_core::sync::ports::ConnectorStore;
use s3_importer_core::sync::Discovery;
use s3_importer_lister::Lister;

use crate::deployment::{sqs_event, Deployment};
use crate::{emulator, repo_root, s3_client, stdout_of, ACCOUNT_ID, REGION};

/// How the bucket's events reach the notification queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// S3 → SQS.
    Direct,
    /// S3 → SNS → SQS, wrapped in SNS notifications.
    Sns,
    /// S3 → SNS → SQS with raw message delivery.
    SnsRaw,
    /// S3 → EventBridge → SQS.
    EventBridge,
}

impl Deployment {
    /// The notification queue's ARN.
    pub fn notification_queue_arn(&self) -> String {
        let name = &self.provisioned.names.notification_queue;
        format!("arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}")
    }

    /// Switches the connector to `events` discovery and routes its bucket's events to the notification queue
    /// ([`Deployment::route_events`]).
    pub async fn use_events(&mut self, route: Route, prefix: Option<&str>) -> Result<()> {
        self.connector.discovery = Discovery::Events;
        self.state.update_connector(&self.connector).await?;
        self.route_events(route, prefix).await
    }

    /// Routes the source bucket's events to the notification queue; `prefix` filters a direct route (`None`:
    /// every key, so the importer's own folder scoping is what is tested).
    pub async fn route_events(&self, route: Route, prefix: Option<&str>) -> Result<()> {
        let queue_arn = self.notification_queue_arn();
        let mode = match route {
            Route::Direct => {
                let mut queue = QueueConfiguration::builder()
                    .id("s3-importer")
                    .queue_arn(&queue_arn)
                    .events(Event::from("s3:ObjectCreated:*"))
                    .events(Event::from("s3:ObjectRemoved:*"));
                if let Some(prefix) = prefix {
                    let rule = FilterRule::builder()
                        .name(FilterRuleName::Prefix)
                        .value(prefix)
                        .build();
                    queue = queue.filter(
                        NotificationConfigurationFilter::builder()
                            .key(S3KeyFilter::builder().filter_rules(rule).build())
                            .build(),
                    );
                }
                s3_client(&self.sdk)
                    .put_bucket_notification_configuration()
                    .bucket(&self.source_bucket)
                    .notification_configuration(
                        NotificationConfiguration::builder()
                            .queue_configurations(queue.build()?)
                            .build(),
                    )
                    .send()
                    .await
                    .context("put the bucket notification configuration")?;
                return Ok(());
            }
            Route::Sns => "sns",
            Route::SnsRaw => "sns-raw",
            Route::EventBridge => "eventbridge",
        };
        // SNS and EventBridge are configured with boto3 from the emulator's virtualenv (no Rust SDK for them here).
        let python = std::env::var(crate::PYTHON_ENV)
            .ok()
            .filter(|p| !p.trim().is_empty())
            .unwrap_or_else(|| "python3".to_owned());
        let name = format!("{}-{mode}", self.provisioned.names.notification_queue);
        let mut command = Command::new(python);
        command
            .arg(repo_root().join("tests/src/notify_setup.py"))
            .args([
                mode,
                &self.source_bucket,
                &queue_arn,
                crate::deployment::PREFIX,
                &name,
            ])
            .envs(emulator().await.env_vars());
        stdout_of(&mut command, "notify_setup.py")?;
        Ok(())
    }

    /// The notification queue's consumer.
    pub fn notification_consumer(&self) -> SqsConsumer {
        SqsConsumer::new(
            s3_importer_aws::config::sqs_client(&self.sdk),
            self.provisioned.notification_queue_url.clone(),
        )
    }

    /// Drains the notification queue through `lister`'s notification handler; the summed counts.
    pub async fn drain_notifications_with(&self, lister: &Lister) -> Result<EventReport> {
        drain_notifications(lister, &self.notification_consumer()).await
    }

    /// [`Deployment::drain_notifications_with`] the deployment's own lister.
    pub async fn drain_notifications(&self) -> Result<EventReport> {
        self.drain_notifications_with(&self.lister).await
    }
}

/// Receives notification messages until none is visible, hands each batch to the handler as Lambda's event
/// source mapping would, and deletes what it did not hand back.
pub async fn drain_notifications(lister: &Lister, consumer: &SqsConsumer) -> Result<EventReport> {
    let mut total = EventReport::default();
    loop {
        let batch: Vec<Received> = consumer.receive(10, 0).await?;
        if batch.is_empty() {
            return Ok(total);
        }
        let event = sqs_event(&batch)?;
        let (response, report) =
            s3_importer_lister::events::handle_notifications(lister, event).await;
        ensure!(
            response.batch_item_failures.is_empty(),
            "notifications handed back: {:?} ({report:?})",
            response.batch_item_failures
        );
        total.absorb(&report);
        for message in &batch {
            consumer.delete(&message.receipt_handle).await?;
        }
    }
}
