//! Deployment configuration, read once from the environment at cold start (`Config::from_env`).
//!
//! Every variable is documented in the README's configuration table; the template-to-code agreement test
//! checks `template.yaml` sets the ones each function reads.

use std::collections::HashMap;

use chrono::Duration;

use crate::sync::read_ahead::ReadAhead;
use crate::sync::reconcile::ReconcileSettings;
use crate::sync::rules::SyncSettings;
use crate::Limits;

/// A configuration value is missing or malformed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("environment variable {name} is not set: {help}")]
    Missing {
        /// Variable.
        name: &'static str,
        /// What it should hold.
        help: &'static str,
    },
    /// A variable does not parse.
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Invalid {
        /// Variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// Why.
        reason: String,
    },
}

/// Names of the environment variables.
pub mod vars {
    /// State table (connectors, templates, ledger, sync runs).
    pub const STATE_TABLE: &str = "S3I_STATE_TABLE";
    /// Work queue URL.
    pub const QUEUE_URL: &str = "S3I_QUEUE_URL";
    /// Notification queue URL (S3 events for connectors in `events` mode); optional.
    pub const NOTIFICATION_QUEUE_URL: &str = "S3I_NOTIFICATION_QUEUE_URL";
    /// Dead-letter queue URL of the work queue: the lister marks the files whose messages land there
    /// `failed`; optional.
    pub const DEAD_LETTER_QUEUE_URL: &str = "S3I_DEAD_LETTER_QUEUE_URL";
    /// Receives of a work message before SQS moves it to the dead-letter queue (the redrive policy's
    /// `maxReceiveCount`), named in a dead-lettered file's error.
    pub const MAX_RECEIVES: &str = "S3I_MAX_RECEIVES";
    /// Default records table for DynamoDB destinations.
    pub const RECORDS_TABLE: &str = "S3I_RECORDS_TABLE";
    /// Bucket for error reports and S3 JSONL output.
    pub const OUTPUT_BUCKET: &str = "S3I_OUTPUT_BUCKET";
    /// First-sync lookback in days.
    pub const LOOKBACK_DAYS: &str = "S3I_LOOKBACK_DAYS";
    /// Overlap window in minutes.
    pub const OVERLAP_MINUTES: &str = "S3I_OVERLAP_MINUTES";
    /// Largest file imported, in bytes.
    pub const MAX_FILE_BYTES: &str = "S3I_MAX_FILE_BYTES";
    /// Largest record, in bytes.
    pub const MAX_RECORD_BYTES: &str = "S3I_MAX_RECORD_BYTES";
    /// Most bytes a compressed file may expand to.
    pub const MAX_DECOMPRESSED_BYTES: &str = "S3I_MAX_DECOMPRESSED_BYTES";
    /// Connectors synced at once by one lister run.
    pub const LISTER_CONCURRENCY: &str = "S3I_LISTER_CONCURRENCY";
    /// Resend `claimed` entries older than this many minutes.
    pub const RESEND_CLAIMED_MINUTES: &str = "S3I_RESEND_CLAIMED_MINUTES";
    /// Log format: `json` (default in Lambda) or `text`.
    pub const LOG_FORMAT: &str = "S3I_LOG_FORMAT";
    /// CloudWatch namespace of the embedded-format metrics (default `S3Importer`).
    pub const METRICS_NAMESPACE: &str = "S3I_METRICS_NAMESPACE";
    /// Worker: seconds before the invocation's deadline at which a long file stops, checkpoints and continues
    /// in a new message (default 60).
    pub const CHECKPOINT_MARGIN_SECONDS: &str = "S3I_CHECKPOINT_MARGIN_SECONDS";
    /// Worker: seconds between two extensions of the message's visibility while a file is imported; each
    /// extends it by three intervals (default 60).
    pub const HEARTBEAT_SECONDS: &str = "S3I_HEARTBEAT_SECONDS";
    /// Worker: ranged GETs in flight ahead of the parser for large objects (default 4); `1` (or `0`) reads every
    /// object as one GetObject stream.
    pub const READ_AHEAD_RANGES: &str = "S3I_READ_AHEAD_RANGES";
    /// Worker: conditional PutItem calls in flight per batch written to a DynamoDB destination (default 16).
    pub const DYNAMODB_WRITE_CONCURRENCY: &str = "S3I_DYNAMODB_WRITE_CONCURRENCY";
    /// Worker: invocations that may run at once (the template's `WorkerMaximumConcurrency`; default 1). A
    /// Stripe connector created without `--stripe-workers` divides its rate by it, so the deployment as a
    /// whole keeps to the account's limit.
    pub const WORKER_CONCURRENCY: &str = "S3I_WORKER_CONCURRENCY";
    /// Lister: minutes between two reconciliation listings of a polling connector's whole lookback (default
    /// 1440, a day; 0 turns them off).
    pub const RECONCILE_POLL_MINUTES: &str = "S3I_RECONCILE_POLL_MINUTES";
    /// Lister: minutes between two reconciliation listings of an event-mode connector (default 60; 0 turns
    /// them off).
    pub const RECONCILE_EVENTS_MINUTES: &str = "S3I_RECONCILE_EVENTS_MINUTES";
    /// Lister: ListObjectsV2 calls one run spends on one connector's reconciliation before it checkpoints
    /// (default 1000).
    pub const RECONCILE_MAX_LIST_CALLS: &str = "S3I_RECONCILE_MAX_LIST_CALLS";
    /// Lister: seconds one run spends on one connector's reconciliation before it checkpoints (default 120).
    pub const RECONCILE_SECONDS: &str = "S3I_RECONCILE_SECONDS";
}

/// Conditional PutItem calls in flight per batch by default ([`vars::DYNAMODB_WRITE_CONCURRENCY`]).
pub const DEFAULT_DYNAMODB_WRITE_CONCURRENCY: usize = 16;

/// The deployment's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// State table name.
    pub state_table: String,
    /// Work queue URL.
    pub queue_url: String,
    /// Notification queue URL, when the deployment has one (`events` discovery).
    pub notification_queue_url: Option<String>,
    /// The work queue's dead-letter queue URL, when known ([`vars::DEAD_LETTER_QUEUE_URL`]).
    pub dead_letter_queue_url: Option<String>,
    /// The work queue's `maxReceiveCount` ([`vars::MAX_RECEIVES`], default 5).
    pub max_receives: u32,
    /// Default records table.
    pub records_table: String,
    /// Output bucket.
    pub output_bucket: String,
    /// Discovery settings.
    pub sync: SyncSettings,
    /// Reconciliation listing: schedule and per-run budget.
    pub reconcile: ReconcileSettings,
    /// Reader limits.
    pub limits: Limits,
    /// Connectors synced concurrently.
    pub lister_concurrency: usize,
    /// CloudWatch namespace of the metrics the functions emit.
    pub metrics_namespace: String,
    /// Worker: how long before the deadline a long file checkpoints ([`vars::CHECKPOINT_MARGIN_SECONDS`]).
    pub checkpoint_margin: Duration,
    /// Worker: the visibility heartbeat's interval ([`vars::HEARTBEAT_SECONDS`]).
    pub heartbeat_interval: std::time::Duration,
    /// Worker: how large uncompressed objects are read ([`vars::READ_AHEAD_RANGES`]).
    pub read_ahead: ReadAhead,
    /// Worker: PutItem calls in flight per batch to a DynamoDB destination
    /// ([`vars::DYNAMODB_WRITE_CONCURRENCY`]).
    pub dynamodb_write_concurrency: usize,
    /// Worker: invocations that may run at once ([`vars::WORKER_CONCURRENCY`]).
    pub worker_concurrency: u32,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_map(&std::env::vars().collect())
    }

    /// Reads a map of variables (for tests).
    pub fn from_map(env: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let required = |name: &'static str, help: &'static str| -> Result<String, ConfigError> {
            env.get(name)
                .filter(|v| !v.trim().is_empty())
                .cloned()
                .ok_or(ConfigError::Missing { name, help })
        };
        fn number<T: std::str::FromStr>(
            env: &HashMap<String, String>,
            name: &'static str,
            default: T,
        ) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            match env.get(name).map(|v| v.trim()).filter(|v| !v.is_empty()) {
                None => Ok(default),
                Some(v) => v.parse().map_err(|e: T::Err| ConfigError::Invalid {
                    name,
                    value: v.to_owned(),
                    reason: e.to_string(),
                }),
            }
        }
        let defaults = SyncSettings::default();
        let lookback_days: i64 = number(env, vars::LOOKBACK_DAYS, 90)?;
        let overlap_minutes: i64 = number(env, vars::OVERLAP_MINUTES, 15)?;
        let resend_minutes: i64 = number(env, vars::RESEND_CLAIMED_MINUTES, 5)?;
        for (name, value) in [
            (vars::LOOKBACK_DAYS, lookback_days),
            (vars::OVERLAP_MINUTES, overlap_minutes),
            (vars::RESEND_CLAIMED_MINUTES, resend_minutes),
        ] {
            if value < 0 {
                return Err(ConfigError::Invalid {
                    name,
                    value: value.to_string(),
                    reason: "must not be negative".into(),
                });
            }
        }
        let limits_default = Limits::default();
        let reconcile_default = ReconcileSettings::default();
        let reconcile = ReconcileSettings {
            poll_every: Duration::minutes(
                number(env, vars::RECONCILE_POLL_MINUTES, 1440u32)?.into(),
            ),
            events_every: Duration::minutes(
                number(env, vars::RECONCILE_EVENTS_MINUTES, 60u32)?.into(),
            ),
            max_list_calls: number(
                env,
                vars::RECONCILE_MAX_LIST_CALLS,
                reconcile_default.max_list_calls,
            )?
            .max(1),
            max_duration: std::time::Duration::from_secs(
                number(env, vars::RECONCILE_SECONDS, 120u32)?.max(1).into(),
            ),
            ..reconcile_default
        };
        Ok(Self {
            state_table: required(vars::STATE_TABLE, "the name of the state DynamoDB table")?,
            queue_url: required(vars::QUEUE_URL, "the URL of the work SQS queue")?,
            notification_queue_url: env
                .get(vars::NOTIFICATION_QUEUE_URL)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
            dead_letter_queue_url: env
                .get(vars::DEAD_LETTER_QUEUE_URL)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .map(str::to_owned),
            max_receives: number(env, vars::MAX_RECEIVES, 5u32)?.max(1),
            records_table: required(
                vars::RECORDS_TABLE,
                "the name of the records DynamoDB table",
            )?,
            output_bucket: required(
                vars::OUTPUT_BUCKET,
                "the bucket for error reports and JSONL output",
            )?,
            sync: SyncSettings {
                lookback: Duration::days(lookback_days),
                overlap: Duration::minutes(overlap_minutes),
                max_file_size: number(env, vars::MAX_FILE_BYTES, defaults.max_file_size)?,
                resend_claimed_after: Duration::minutes(resend_minutes),
            },
            reconcile,
            limits: Limits {
                max_record_bytes: number(
                    env,
                    vars::MAX_RECORD_BYTES,
                    limits_default.max_record_bytes,
                )?,
                max_decompressed_bytes: number(
                    env,
                    vars::MAX_DECOMPRESSED_BYTES,
                    limits_default.max_decompressed_bytes,
                )?,
                ..limits_default
            },
            lister_concurrency: number(env, vars::LISTER_CONCURRENCY, 4usize)?.max(1),
            metrics_namespace: env
                .get(vars::METRICS_NAMESPACE)
                .map(|v| v.trim())
                .filter(|v| !v.is_empty())
                .unwrap_or(crate::metrics::DEFAULT_NAMESPACE)
                .to_owned(),
            checkpoint_margin: Duration::seconds(
                number(env, vars::CHECKPOINT_MARGIN_SECONDS, 60u32)?.into(),
            ),
            heartbeat_interval: std::time::Duration::from_secs(
                number(env, vars::HEARTBEAT_SECONDS, 60u32)?.max(1).into(),
            ),
            read_ahead: ReadAhead {
                in_flight: number(env, vars::READ_AHEAD_RANGES, ReadAhead::default().in_flight)?,
                ..ReadAhead::default()
            },
            dynamodb_write_concurrency: number(
                env,
                vars::DYNAMODB_WRITE_CONCURRENCY,
                DEFAULT_DYNAMODB_WRITE_CONCURRENCY,
            )?
            .max(1),
            worker_concurrency: number(env, vars::WORKER_CONCURRENCY, 1u32)?.max(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> HashMap<String, String> {
        [
            (vars::STATE_TABLE, "state"),
            (vars::QUEUE_URL, "http://queue"),
            (vars::RECORDS_TABLE, "records"),
            (vars::OUTPUT_BUCKET, "out"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn defaults_match_the_design() -> Result<(), ConfigError> {
        let c = Config::from_map(&base())?;
        assert_eq!(c.sync, SyncSettings::default());
        assert_eq!(c.reconcile, ReconcileSettings::default());
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.lister_concurrency, 4);
        assert_eq!(c.checkpoint_margin, Duration::seconds(60));
        assert_eq!(c.heartbeat_interval, std::time::Duration::from_secs(60));
        assert_eq!(c.read_ahead, ReadAhead::default());
        assert_eq!(c.dynamodb_write_concurrency, 16);
        assert_eq!(c.worker_concurrency, 1);
        Ok(())
    }

    #[test]
    fn missing_variable_is_named() {
        let mut env = base();
        env.remove(vars::QUEUE_URL);
        let err = Config::from_map(&env)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("S3I_QUEUE_URL"), "{err}");
    }

    #[test]
    fn invalid_number_is_named_with_its_value() {
        let mut env = base();
        env.insert(vars::LOOKBACK_DAYS.into(), "ninety".into());
        let err = Config::from_map(&env)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("S3I_LOOKBACK_DAYS") && err.contains("ninety"),
            "{err}"
        );
        env.insert(vars::LOOKBACK_DAYS.into(), "-1".into());
        assert!(Config::from_map(&env).is_err());
    }

    #[test]
    fn overrides_apply() -> Result<(), ConfigError> {
        let mut env = base();
        env.insert(vars::LOOKBACK_DAYS.into(), "7".into());
        env.insert(vars::MAX_FILE_BYTES.into(), "1000".into());
        let c = Config::from_map(&env)?;
        assert_eq!(c.sync.lookback, Duration::days(7));
        assert_eq!(c.sync.max_file_size, 1000);
        env.insert(vars::READ_AHEAD_RANGES.into(), "1".into());
        let c = Config::from_map(&env)?;
        assert!(
            !c.read_ahead.applies(0, u64::MAX),
            "one range in flight is one stream"
        );
        Ok(())
    }
}
