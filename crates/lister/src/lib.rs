//! The lister Lambda: fired by the schedule, it runs one discovery pass over every active connector (or one
//! named connector) and fans new file versions out to the work queue. The handler is a plain async function
//! ([`handle`]) so tests call it with real event JSON; `main.rs` only wires it to `lambda_runtime`.
//!
//! Besides the schedule's event, the function accepts explicit requests (the CLI invokes it with them, so the
//! checks and syncs run as the deployment's own role, the principal the source roles' trust policies admit):
//!
//! | payload | does |
//! |---|---|
//! | `{"action": "verify", "connector_id": "…"}` | runs the connection doctor on that connector; the report is in `report` |
//! | `{"action": "sync", "connector_id": "…"}` | one connector's sync now |
//! | `{"action": "reconcile", "connector_id": "…"}` | one connector's sync with its reconciliation listing now |
//! | anything else (the EventBridge schedule) | a sync of every active connector |
//!
//! The same function consumes the notification queue (S3 events for connectors in `events` mode): an SQS event
//! goes to [`events::handle_notifications`]. One binary and one role for both: the source roles' trust
//! policies already admit this role, and the event path needs the lister's permissions (state table, work
//! queue, assuming source roles) and nothing else.

pub mod events;

use std::sync::Arc;

use s3_importer_aws::consumer::SqsConsumer;
use s3_importer_aws::state::DynamoStateStore;
use s3_importer_aws::verify::notifications::queue_arn_from_url;
use s3_importer_aws::verify::{Doctor, Report};
use s3_importer_aws::{S3Source, SqsQueue};
use s3_importer_core::config::{Config, ConfigError};
use s3_importer_core::metrics;
use s3_importer_core::sync::lister::{self, ListerDeps, ListerSettings, SyncOutcome};
use s3_importer_core::sync::ports::{DeadLetterQueue, StateError};
use s3_importer_core::sync::redo;
use s3_importer_core::sync::{Clock, Discovery, SystemClock};
use serde::{Deserialize, Serialize};
use tracing::info;

/// Why the lister could not run.
#[derive(Debug, thiserror::Error)]
pub enum ListerError {
    /// Bad configuration (cold start).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The state table cannot be read.
    #[error("cannot read connectors: {0}")]
    State(#[from] StateError),
    /// The named connector does not exist.
    #[error("no connector named {0:?}")]
    UnknownConnector(String),
    /// A request without the connector it needs.
    #[error("the {0:?} action needs a connector_id")]
    MissingConnector(String),
    /// An action the lister does not know.
    #[error("unknown action {0:?}: expected \"verify\", \"sync\" or \"reconcile\"")]
    UnknownAction(String),
}

/// What the lister accepts: the scheduler's payload (anything without `action`: every active connector) or a
/// request for one connector.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct ListerRequest {
    /// `verify`, `sync` or `reconcile`; without it, a sync (of `connector`, or of every active connector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The connector (by id or name), e.g. from `connector sync`.
    #[serde(
        default,
        alias = "connector_id",
        skip_serializing_if = "Option::is_none"
    )]
    pub connector: Option<String>,
}

/// One connector's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectorResult {
    /// Connector name.
    pub connector: String,
    /// `ran`, `busy` or `not_active`.
    pub outcome: String,
    /// The sync run, when it ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<s3_importer_core::sync::SyncRun>,
}

/// What the lister returns (visible in the Lambda console and to `connector sync`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ListerResponse {
    /// Per connector (empty for `verify`).
    #[serde(default)]
    pub connectors: Vec<ConnectorResult>,
    /// The connection doctor's report, for `verify`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<Report>,
}

/// The lister's dependencies, built once per cold start.
#[derive(Clone)]
pub struct Lister {
    /// Ports.
    pub deps: ListerDeps,
    /// Settings.
    pub settings: ListerSettings,
    /// CloudWatch namespace of the metrics it emits.
    pub metrics_namespace: String,
    /// The connection doctor (runs with the function's own credentials).
    pub doctor: Arc<Doctor>,
    /// The notification queue's ARN, when the deployment has one (the `notifications` check of `verify`).
    pub notification_queue_arn: Option<String>,
    /// The work queue's dead-letter queue, swept on every scheduled run when the deployment names it.
    pub dead_letters: Option<Arc<dyn DeadLetterQueue>>,
    /// The work queue's `maxReceiveCount`, named in a dead-lettered file's error.
    pub max_receives: u32,
}

/// Dead-letter messages one scheduled run handles at most (the rest wait for the next run).
pub const DEAD_LETTERS_PER_RUN: usize = 200;

impl Lister {
    /// Builds the lister from the environment (`Config::from_env`) and the standard AWS configuration.
    pub async fn from_env() -> Result<Self, ListerError> {
        let config = Config::from_env()?;
        let sdk = s3_importer_aws::load_sdk_config().await;
        Ok(Self::from_config(&config, &sdk, Arc::new(SystemClock)))
    }

    /// Builds the lister from a configuration, an SDK configuration and a clock (tests inject their own).
    pub fn from_config(
        config: &Config,
        sdk: &aws_config::SdkConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let deps = ListerDeps::new(
            Arc::new(DynamoStateStore::new(
                s3_importer_aws::config::dynamodb_client(sdk),
                config.state_table.clone(),
            )),
            Arc::new(S3Source::new(sdk)),
            Arc::new(SqsQueue::new(
                s3_importer_aws::config::sqs_client(sdk),
                config.queue_url.clone(),
            )),
            clock,
        );
        let settings = ListerSettings {
            sync: config.sync,
            concurrency: config.lister_concurrency,
            reconcile: config.reconcile,
            ..ListerSettings::default()
        };
        Self {
            deps,
            settings,
            metrics_namespace: config.metrics_namespace.clone(),
            doctor: Arc::new(Doctor::new(sdk)),
            notification_queue_arn: config.notification_queue_url.as_deref().and_then(|url| {
                let region = sdk
                    .region()
                    .map(|r| r.as_ref().to_owned())
                    .unwrap_or_default();
                queue_arn_from_url(url, &region)
            }),
            dead_letters: config.dead_letter_queue_url.as_ref().map(|url| {
                Arc::new(SqsConsumer::new(
                    s3_importer_aws::config::sqs_client(sdk),
                    url.clone(),
                )) as Arc<dyn DeadLetterQueue>
            }),
            max_receives: config.max_receives,
        }
    }
}

/// Handles one invocation. `request_id` names the lease owner, so two overlapping invocations never share one.
pub async fn handle(
    lister: &Lister,
    event: serde_json::Value,
    request_id: &str,
) -> Result<ListerResponse, ListerError> {
    // The scheduler sends its own payload (or an EventBridge envelope); only `action`/`connector` matter.
    let request: ListerRequest = serde_json::from_value(event).unwrap_or_default();
    let mut settings = lister.settings.clone();
    settings.owner = format!("lister-{request_id}");
    match request.action.as_deref() {
        None | Some("sync") | Some("reconcile") => {}
        Some("verify") => {
            let name = request
                .connector
                .ok_or_else(|| ListerError::MissingConnector("verify".into()))?;
            let connector = find_connector(lister, &name).await?;
            let format = lister
                .deps
                .templates
                .get_template(&connector.template_id, connector.template_version)
                .await
                .ok()
                .flatten()
                .and_then(|t| t.template.format);
            let mut report = lister.doctor.verify(&connector.source, format).await;
            if connector.discovery == Discovery::Events {
                let check = lister
                    .doctor
                    .verify_notifications(
                        &connector.source,
                        lister.notification_queue_arn.as_deref(),
                    )
                    .await;
                report.checks.push(check);
            }
            info!(connector = %connector.name, ok = report.ok(), "connection verified");
            return Ok(ListerResponse {
                connectors: Vec::new(),
                report: Some(report),
            });
        }
        Some(other) => return Err(ListerError::UnknownAction(other.to_owned())),
    }
    if let (Some(action), None) = (&request.action, &request.connector) {
        return Err(ListerError::MissingConnector(action.clone()));
    }
    let outcomes = match &request.connector {
        Some(name) => {
            let connector = find_connector(lister, name).await?;
            let outcome = if request.action.as_deref() == Some("reconcile") {
                lister::reconcile_connector(&lister.deps, &settings, &connector).await
            } else {
                lister::sync_connector(&lister.deps, &settings, &connector).await
            };
            vec![(connector.name, outcome)]
        }
        None => {
            sweep_dead_letters(lister).await;
            lister::sync_all(&lister.deps, &settings).await?
        }
    };
    emit_metrics(lister, &outcomes);
    let connectors = outcomes
        .into_iter()
        .map(|(connector, outcome)| match outcome {
            SyncOutcome::Ran(run) => ConnectorResult {
                connector,
                outcome: "ran".into(),
                run: Some(run),
            },
            SyncOutcome::Busy => ConnectorResult {
                connector,
                outcome: "busy".into(),
                run: None,
            },
            SyncOutcome::NotActive => ConnectorResult {
                connector,
                outcome: "not_active".into(),
                run: None,
            },
        })
        .collect::<Vec<_>>();
    info!(connectors = connectors.len(), "lister run finished");
    Ok(ListerResponse {
        connectors,
        report: None,
    })
}

/// Marks the files whose messages reached the dead-letter queue `failed` (`sync::redo`). A failure is
/// logged and left for the next run: it must not stop the sync.
async fn sweep_dead_letters(lister: &Lister) {
    let Some(dlq) = &lister.dead_letters else {
        return;
    };
    let now = lister.deps.clock.now();
    match redo::sweep_dead_letters(
        &**dlq,
        &*lister.deps.ledger,
        lister.max_receives,
        DEAD_LETTERS_PER_RUN,
        now,
    )
    .await
    {
        Ok(sweep) => {
            if !sweep.failed.is_empty() || sweep.unreadable > 0 {
                info!(
                    failed = sweep.failed.len(),
                    stale = sweep.stale,
                    kept = sweep.kept,
                    unreadable = sweep.unreadable,
                    "dead-letter queue swept"
                );
            }
            let mut per_connector: std::collections::BTreeMap<&str, u64> = Default::default();
            for (connector_id, _) in &sweep.failed {
                *per_connector.entry(connector_id.as_str()).or_default() += 1;
            }
            for (connector_id, files) in per_connector {
                s3_importer_aws::telemetry::emit_metrics(&metrics::files_dead_lettered(
                    &lister.metrics_namespace,
                    connector_id,
                    files,
                    now,
                ));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot sweep the dead-letter queue; next run tries again")
        }
    }
}

async fn find_connector(
    lister: &Lister,
    name: &str,
) -> Result<s3_importer_core::sync::Connector, ListerError> {
    match lister.deps.connectors.find_connector_by_name(name).await? {
        Some(c) => Ok(c),
        None => lister
            .deps
            .connectors
            .get_connector(name)
            .await?
            .ok_or_else(|| ListerError::UnknownConnector(name.to_owned())),
    }
}

/// One EMF document per connector that ran, and one for the whole run with the number of active connectors
/// (see `s3_importer_core::metrics` for the names).
fn emit_metrics(lister: &Lister, outcomes: &[(String, SyncOutcome)]) {
    let now = lister.deps.clock.now();
    let active = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, SyncOutcome::Ran(_) | SyncOutcome::Busy))
        .count();
    s3_importer_aws::telemetry::emit_metrics(&metrics::lister_run(
        &lister.metrics_namespace,
        active as u64,
        now,
    ));
    for (connector, outcome) in outcomes {
        if let SyncOutcome::Ran(run) = outcome {
            s3_importer_aws::telemetry::emit_metrics(&metrics::sync_run(
                &lister.metrics_namespace,
                connector,
                run,
                now,
            ));
        }
    }
}

impl From<ListerError> for lambda_runtime::Diagnostic {
    fn from(e: ListerError) -> Self {
        let error_type = match &e {
            ListerError::Config(_) => "ConfigError",
            ListerError::State(_) => "StateError",
            ListerError::UnknownConnector(_) => "UnknownConnector",
            ListerError::MissingConnector(_) => "MissingConnector",
            ListerError::UnknownAction(_) => "UnknownAction",
        };
        lambda_runtime::Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    }
}
