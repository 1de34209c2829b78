//! The nouns of the product: connectors, objects, file versions, ledger entries, queue messages, sync runs.
//!
//! Past 900 lines, on purpose for now: one concern (the stored shapes every port and the state codec share),
//! mostly field docs. The next split is the reconciliation's types (`Reconcile*`) into `reconcile.rs`, then the
//! ledger entry and its transitions into a `ledger` module.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ports::StateError;
use crate::pace::Pace;
use crate::pipeline::Counts;
use crate::read::StartAt;
use crate::FileFormat;

/// A connector's lifecycle state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ConnectorStatus {
    /// Synced on every schedule.
    Active,
    /// Kept, not synced.
    Paused,
    /// Syncs fail for a reason the user must fix (e.g. the role can no longer be assumed).
    Broken {
        /// What is wrong and what to do.
        reason: String,
    },
    /// Being deleted.
    Deleting,
}

impl ConnectorStatus {
    /// The state's name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Broken { .. } => "broken",
            Self::Deleting => "deleting",
        }
    }
}

/// Where a connector's files are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// The 12-digit AWS account that owns the bucket (sent as `ExpectedBucketOwner` on every S3 call).
    pub account_id: String,
    /// Bucket name.
    pub bucket: String,
    /// The bucket's region.
    pub region: String,
    /// Folder (key prefix), without leading slash; `None` for the whole bucket.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Role to assume for cross-account access.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role_arn: Option<String>,
    /// The External ID required by the role's trust policy (generated per connector).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Versioned bucket: list every version (ListObjectVersions), take the `VersionId` of events, pin reads
    /// to it, and count each version as its own file version (`docs/architecture.md`, "Versioned buckets").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub versions: bool,
}

/// Where a connector's rows go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DestinationConfig {
    /// Upsert rows by primary key into a DynamoDB table.
    Dynamodb {
        /// Table name.
        table: String,
    },
    /// Normalized JSON Lines objects in S3, one per source file version.
    S3Jsonl {
        /// Bucket.
        bucket: String,
        /// Key prefix.
        #[serde(default)]
        prefix: String,
    },
    /// Rows into a PostgreSQL table, visible one file version at a time (one transaction each).
    Postgres {
        /// The table: `schema.table`, or `table` in `public`.
        table: String,
        /// Where the worker finds the server and its credentials.
        connection: PostgresConnection,
    },
    /// Parquet objects in S3, one per source file version, partitioned by connector and date.
    S3Parquet {
        /// Bucket.
        bucket: String,
        /// Key prefix.
        #[serde(default)]
        prefix: String,
    },
    /// Rows POSTed in signed batches to an HTTPS endpoint (see the README's "Webhook").
    Webhook(WebhookConfig),
    /// Rows written as Stripe objects through the Stripe API (see the README's "Stripe").
    Stripe(StripeConfig),
}

/// The Stripe object a connector's rows become (one built-in template each, `examples/templates/stripe/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StripeObject {
    /// Products, upserted by id.
    Products,
    /// Customers, by an external key mapped to the customer id in the state table.
    Customers,
    /// Prices, by lookup key (a changed amount makes a new price that takes the key over).
    Prices,
    /// Billing meter events, each sent once.
    MeterEvents,
}

impl StripeObject {
    /// Every kind, in documentation order.
    pub const ALL: [Self; 4] = [
        Self::Products,
        Self::Customers,
        Self::Prices,
        Self::MeterEvents,
    ];

    /// The name used in flags and messages (`products`, `meter_events`…).
    pub fn name(self) -> &'static str {
        match self {
            Self::Products => "products",
            Self::Customers => "customers",
            Self::Prices => "prices",
            Self::MeterEvents => "meter_events",
        }
    }

    /// The template fields every row of this kind needs: a template without one of them cannot feed it.
    pub fn required_fields(self) -> &'static [&'static str] {
        match self {
            Self::Products => &["id"],
            Self::Customers => &["external_key"],
            Self::Prices => &["lookup_key", "product", "unit_amount", "currency"],
            Self::MeterEvents => &["event_name", "timestamp"],
        }
    }

    /// The built-in template for this kind (`examples/templates/stripe/<name>.toml`).
    pub fn template_name(self) -> String {
        format!("stripe-{}", self.name().replace('_', "-"))
    }

    /// The kind named `name` (`meter-events` is accepted for `meter_events`).
    pub fn parse(name: &str) -> Option<Self> {
        let name = name.replace('-', "_");
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// A Stripe destination: which object the rows become, where the API key is read, and the limits of the
/// client. The key itself is never stored: only where to read it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StripeConfig {
    /// The object kind.
    pub object: StripeObject,
    /// Where the secret API key (`sk_…` or a restricted `rk_…`) is read.
    pub key: WebhookSecret,
    /// The API's base URL (`None`: `https://api.stripe.com`); another one (a local fake server, plain
    /// http on loopback) only for local development and tests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Requests per second at most, for the whole connector (`None`: 25 for test keys, 100 for live keys),
    /// divided among `workers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_second: Option<u32>,
    /// Worker processes that may import this connector's files at once (`None`: 1): each gets its share of
    /// the rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<u32>,
    /// Requests in flight at most, per worker process (`None`: 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Seconds one request may take (`None`: 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
}

/// Where a webhook destination's signing secret comes from. The secret itself is never stored: only where to
/// read it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum WebhookSecret {
    /// An AWS Secrets Manager secret (name or ARN) whose string value is the signing secret.
    Secret {
        /// Secret name or ARN.
        secret_id: String,
    },
    /// An environment variable of the worker and the CLI holding the signing secret (local use).
    Env {
        /// The variable's name.
        var: String,
    },
}

impl std::fmt::Display for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Secret { secret_id } => write!(f, "secret {secret_id}"),
            Self::Env { var } => write!(f, "${var}"),
        }
    }
}

/// What a webhook receiver's 4xx answer (other than 408, 410 and 429) does to the batch's rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookOnReject {
    /// The rows go to the error report with the status and an excerpt of the answer; the file goes on.
    #[default]
    Report,
    /// The file fails.
    Fail,
}

/// A webhook destination: the URL, the signing secret's source, and the limits of the connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WebhookConfig {
    /// The endpoint (`https://…`; `http://` only with `allow_private`).
    pub url: String,
    /// Where the HMAC signing secret is read.
    pub secret: WebhookSecret,
    /// Allow targets resolving to private, loopback or link-local addresses, and plain http (local
    /// development and tests). Off by default: such targets are refused.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_private: bool,
    /// Requests per second at most, per worker process (`None`: 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_second: Option<u32>,
    /// Requests in flight at most, per worker process (`None`: 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Rows per request at most (`None`: 500).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_rows: Option<u32>,
    /// Body bytes per request at most (`None`: 1 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_bytes: Option<u32>,
    /// Seconds one request may take (`None`: 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    /// What a 4xx answer does to the batch's rows.
    #[serde(default)]
    pub on_reject: WebhookOnReject,
}

/// Where a PostgreSQL destination's connection settings come from. The settings themselves (a password)
/// are never stored: only where to read them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "from", rename_all = "snake_case")]
pub enum PostgresConnection {
    /// An AWS Secrets Manager secret (name or ARN) in the RDS format: host, port, username, password,
    /// dbname, and optionally `sslmode`.
    Secret {
        /// Secret name or ARN.
        secret_id: String,
    },
    /// A `postgres://` URL in an environment variable of the worker and the CLI (local use).
    Env {
        /// The variable's name.
        var: String,
    },
}

impl std::fmt::Display for PostgresConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Secret { secret_id } => write!(f, "secret {secret_id}"),
            Self::Env { var } => write!(f, "${var}"),
        }
    }
}

/// A connector: one folder of one bucket, imported with one template into one destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connector {
    /// Stable id (`c-` and 16 hex digits).
    pub id: String,
    /// Unique, user-chosen name.
    pub name: String,
    /// Lifecycle state.
    pub status: ConnectorStatus,
    /// Source bucket and access.
    pub source: Source,
    /// Template id.
    pub template_id: String,
    /// Template version, or `None` for the latest one at import time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_version: Option<u32>,
    /// Destination.
    pub destination: DestinationConfig,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Newest LastModified sent so far: an optimisation bounding what is considered; the ledger decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<DateTime<Utc>>,
    /// Summary of the last sync run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync: Option<SyncRun>,
    /// How new files are found: listing on the schedule (the default) or S3 event notifications.
    #[serde(default)]
    pub discovery: Discovery,
    /// The reconciliation listing's progress (the lister's, like the watermark; `update_connector` leaves it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile: Option<Reconcile>,
}

/// Where a connector's reconciliation listing stands: when the last complete pass started, and the pass in
/// progress, if one stopped at its budget (README, "Reconciliation").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconcile {
    /// When the last pass that reached the end of the listing started; the next is due an interval later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    /// A pass that stopped at its budget: the next lister run continues it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress: Option<ReconcileProgress>,
}

/// A reconciliation pass that stopped before the end of the listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileProgress {
    /// When the pass started: its window (`started_at - lookback` to `started_at - overlap`) stays fixed
    /// across the invocations that continue it.
    pub started_at: DateTime<Utc>,
    /// The last key of the last page whose objects were all claimed or known; listing resumes after it.
    pub after_key: String,
}

/// How a connector's new files are found (README, "Discovery: polling or S3 events").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Discovery {
    /// The scheduled lister lists the folder.
    #[default]
    Poll,
    /// S3 `ObjectCreated` notifications, through the notification queue; the schedule does not list.
    Events,
}

impl Discovery {
    /// The mode's name, as the CLI takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Poll => "poll",
            Self::Events => "events",
        }
    }
}

impl std::str::FromStr for Discovery {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "poll" => Ok(Self::Poll),
            "events" => Ok(Self::Events),
            other => Err(format!(
                "unknown discovery {other:?}: expected \"poll\" or \"events\""
            )),
        }
    }
}

/// One object as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectMeta {
    /// Full key.
    pub key: String,
    /// ETag as S3 returns it (with its quotes).
    pub etag: String,
    /// Size in bytes.
    pub size: u64,
    /// LastModified (the *start* of a multipart upload).
    pub last_modified: DateTime<Utc>,
    /// Storage class, when S3 reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// True when an archived object has a restored copy available.
    #[serde(default)]
    pub restored: bool,
    /// The S3 `VersionId`, for a source listed or looked up by version ([`Source::versions`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

impl ObjectMeta {
    /// An object in the default storage class, not archived: what most listings return and most tests and
    /// fixtures need.
    pub fn new(
        key: impl Into<String>,
        etag: impl Into<String>,
        size: u64,
        last_modified: DateTime<Utc>,
    ) -> Self {
        Self {
            key: key.into(),
            etag: etag.into(),
            size,
            last_modified,
            storage_class: None,
            restored: false,
            version_id: None,
        }
    }

    /// Where a listing resumes after this object ([`ObjectSource::list_page_after`]): its key, or for a
    /// listed version `<version id>\n<key>`, so the key's older versions on the next page are not skipped
    /// (S3 may split one key's versions between pages; a version id has no line break).
    ///
    /// [`ObjectSource::list_page_after`]: super::ports::ObjectSource::list_page_after
    pub fn listing_position(&self) -> String {
        match &self.version_id {
            Some(version_id) => format!("{version_id}\n{}", self.key),
            None => self.key.clone(),
        }
    }

    /// The ledger id this object's file version has (see [`FileVersion::file_id`]).
    pub fn file_id(&self) -> String {
        versioned_file_id(&self.key, &self.etag, self.version_id.as_deref())
    }
}

/// The identity of one thing to import: connector, bucket, key, ETag (and VersionId when known).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileVersion {
    /// Connector id.
    pub connector_id: String,
    /// Bucket.
    pub bucket: String,
    /// Key.
    pub key: String,
    /// ETag, quoted as S3 returns it.
    pub etag: String,
    /// VersionId on versioned buckets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_id: Option<String>,
}

impl FileVersion {
    /// The ledger id: `<sha256(key), 32 hex>#<etag without quotes>`, and `#<VersionId>` after it for a
    /// version of a versioned source (two uploads of equal bytes are then two versions). Keys reach 1024
    /// bytes, as does the DynamoDB sort key limit, so the key is hashed; the full key stays an attribute.
    pub fn file_id(&self) -> String {
        versioned_file_id(&self.key, &self.etag, self.version_id.as_deref())
    }
}

impl FileVersion {
    /// The part of this file version's output paths (S3 objects, staging) that names it: the ETag without
    /// quotes, and for a version of a versioned source `-<sha256(version id), 16 hex>` after it, so two
    /// versions of equal bytes never share an output object (version ids hold `/` and `+`: hashed).
    pub fn output_tag(&self) -> String {
        let etag = self.etag.trim_matches('"');
        match &self.version_id {
            Some(version_id) => {
                let digest = Sha256::digest(version_id.as_bytes());
                format!("{etag}-{}", hex::encode(&digest[..8]))
            }
            None => etag.to_owned(),
        }
    }
}

fn versioned_file_id(key: &str, etag: &str, version_id: Option<&str>) -> String {
    match version_id {
        Some(version_id) => format!("{}#{version_id}", file_id(key, etag)),
        None => file_id(key, etag),
    }
}

/// See [`FileVersion::file_id`].
pub fn file_id(key: &str, etag: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    format!("{}#{}", hex::encode(&digest[..16]), etag.trim_matches('"'))
}

/// A ledger entry's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileStatus {
    /// Claimed by a lister, not yet accepted by SQS.
    Claimed,
    /// Accepted by SQS.
    Queued,
    /// A worker holds it (with a lease).
    Processing,
    /// Done: rows written (some may have been rejected into the error report).
    Imported,
    /// The file cannot be imported (permanent); `connector retry` re-queues it.
    Failed,
    /// Not imported on purpose (too large, unsupported, archived).
    Skipped,
    /// The key was overwritten before it was read; the newer version has its own entry.
    Superseded,
    /// The object was deleted before it was read.
    Gone,
}

impl FileStatus {
    /// The state's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Claimed => "claimed",
            Self::Queued => "queued",
            Self::Processing => "processing",
            Self::Imported => "imported",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Superseded => "superseded",
            Self::Gone => "gone",
        }
    }

    /// Final states: nothing more happens without a user's request.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::Imported | Self::Failed | Self::Skipped | Self::Superseded | Self::Gone
        )
    }
}

impl std::str::FromStr for FileStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "claimed" => Self::Claimed,
            "queued" => Self::Queued,
            "processing" => Self::Processing,
            "imported" => Self::Imported,
            "failed" => Self::Failed,
            "skipped" => Self::Skipped,
            "superseded" => Self::Superseded,
            "gone" => Self::Gone,
            other => return Err(format!("unknown file status {other:?}")),
        })
    }
}

impl std::fmt::Display for FileStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a listed object is not imported.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum SkipReason {
    /// Larger than the connector's maximum file size.
    TooLarge {
        /// Object size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// No supported format can be told from the name or the template.
    UnsupportedFormat,
    /// In an archive storage class and not restored.
    Archived {
        /// The storage class.
        storage_class: String,
    },
}

impl SkipReason {
    /// Short name used in counters and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge { .. } => "too_large",
            Self::UnsupportedFormat => "unsupported_format",
            Self::Archived { .. } => "archived",
        }
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge { size, limit } => write!(f, "file is {size} bytes, over the {limit}-byte limit"),
            Self::UnsupportedFormat => {
                f.write_str("unsupported format: name files .csv .tsv .json .jsonl .ndjson (optionally .gz), or set the template's format")
            }
            Self::Archived { storage_class } => {
                write!(f, "object is archived in {storage_class}; restore it to import it")
            }
        }
    }
}

/// The ledger's record of one file version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Which file version.
    pub version: FileVersion,
    /// State.
    pub status: FileStatus,
    /// Size in bytes.
    pub size: u64,
    /// LastModified.
    pub last_modified: DateTime<Utc>,
    /// Detected format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<FileFormat>,
    /// Why it was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_reason: Option<SkipReason>,
    /// When a lister first saw it.
    pub discovered_at: DateTime<Utc>,
    /// When SQS accepted its message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued_at: Option<DateTime<Utc>>,
    /// When a worker last started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a final state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// A worker's lease: another worker may take over after this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<DateTime<Utc>>,
    /// Who holds the lease (a worker's invocation id); only the holder may finish the entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_owner: Option<String>,
    /// Times a worker started it.
    #[serde(default)]
    pub attempts: u32,
    /// Rows imported.
    #[serde(default)]
    pub rows_imported: u64,
    /// Rows rejected.
    #[serde(default)]
    pub rows_rejected: u64,
    /// Error report location (`s3://…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_report: Option<String>,
    /// Why it failed, with position.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Template version used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_version: Option<u32>,
    /// Where a long file's next piece starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<Checkpoint>,
    /// Times the file version was replayed (`connector replay`): destinations that remember the file
    /// versions they applied apply it again when this is higher than what they recorded.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replays: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl LedgerEntry {
    /// A new entry for a listed object.
    pub fn discovered(version: FileVersion, object: &ObjectMeta, now: DateTime<Utc>) -> Self {
        Self {
            version,
            status: FileStatus::Claimed,
            size: object.size,
            last_modified: object.last_modified,
            format: None,
            skip_reason: None,
            discovered_at: now,
            queued_at: None,
            started_at: None,
            finished_at: None,
            lease_until: None,
            lease_owner: None,
            attempts: 0,
            rows_imported: 0,
            rows_rejected: 0,
            error_report: None,
            error: None,
            template_version: None,
            checkpoint: None,
            replays: 0,
        }
    }

    /// True when `owner` holds the entry's processing lease (expired or not: an expired lease that nobody
    /// took over is still the holder's to renew or finish).
    pub fn is_held_by(&self, owner: &str) -> bool {
        self.status == FileStatus::Processing && self.lease_owner.as_deref() == Some(owner)
    }

    /// `finish_file` only writes final states: anything else would strand the entry without a lease.
    pub fn check_final(&self) -> Result<(), StateError> {
        if self.status.is_terminal() {
            Ok(())
        } else {
            Err(StateError::Other {
                context: format!(
                    "finish file {} of connector {}",
                    self.version.file_id(),
                    self.version.connector_id
                ),
                source: format!("status {} is not final", self.status).into(),
            })
        }
    }

    /// What `reopen_file` does to an entry a user sends again (`retry`, `redrive`, `replay`): back to `claimed`
    /// with the outcome of the last attempt cleared, so the next lister pass sends it (if the caller does not)
    /// and the worker starts from the first byte. `discovered_at` is kept (old), so the lister's "claimed but
    /// never sent" rule picks it up on its next pass; `attempts` is kept as history. A replay also counts in
    /// `replays`.
    pub fn reopen(&mut self, replay: bool) {
        self.status = FileStatus::Claimed;
        self.queued_at = None;
        self.finished_at = None;
        self.lease_until = None;
        self.lease_owner = None;
        self.rows_imported = 0;
        self.rows_rejected = 0;
        self.error_report = None;
        self.error = None;
        self.skip_reason = None;
        self.checkpoint = None;
        if replay {
            self.replays += 1;
        }
    }

    /// What `dead_letter_file` does: the file failed because its message reached the dead-letter queue.
    pub fn dead_lettered(&mut self, error: &str, now: DateTime<Utc>) {
        self.status = FileStatus::Failed;
        self.error = Some(error.to_owned());
        self.finished_at = Some(now);
        self.lease_until = None;
        self.lease_owner = None;
    }

    /// Whether the file is still on its way (`claimed`, `queued`, or `processing` with nobody holding a live
    /// lease): what `start_file` may start and `dead_letter_file` may fail.
    pub fn awaits_a_worker(&self, now: DateTime<Utc>) -> bool {
        match self.status {
            FileStatus::Claimed | FileStatus::Queued => true,
            FileStatus::Processing => lease_is_free(self.lease_until, now),
            _ => false,
        }
    }

    /// The rows imported and rejected (the entry keeps those two; every row read is one or the other).
    pub fn counts(&self) -> Counts {
        Counts::of(self.rows_imported, self.rows_rejected)
    }

    /// Records the rows imported and rejected.
    pub fn set_counts(&mut self, counts: Counts) {
        self.rows_imported = counts.rows_imported;
        self.rows_rejected = counts.rows_rejected;
    }
}

/// A lease (a file's or a named one) is free for the taking once its end is strictly in the past.
pub fn lease_is_free(until: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    until.is_none_or(|until| until < now)
}

/// The lease name the lister takes for a connector's sync pass; deleting a connector removes it.
pub fn sync_lease_name(connector_id: &str) -> String {
    format!("sync#{connector_id}")
}

/// Progress saved between the pieces of a long file. The default is piece 0 at the start of the file,
/// nothing counted or carried: tests and fixtures spell out only the fields they care about.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Where the next piece starts.
    pub start: CheckpointStart,
    /// Piece number of the next piece (0-based).
    pub piece: u32,
    /// Rows imported so far.
    pub rows_imported: u64,
    /// Rows rejected so far.
    pub rows_rejected: u64,
    /// What the destination's row sink needs to carry on (e.g. an S3 multipart upload's parts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_state: Option<serde_json::Value>,
    /// What the error report needs to carry on (its parts so far).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejects_state: Option<serde_json::Value>,
    /// True once the message for piece `piece` was accepted by the queue. A redelivered message of the
    /// piece before finds it false after a crash between the checkpoint and the send, and sends it again.
    #[serde(default)]
    pub continued: bool,
    /// The template version the first piece used (every piece uses it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_version: Option<u32>,
    /// The format the first piece detected (a gzip file is decoded from the top by every piece).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<FileFormat>,
    /// What the pieces so far measured of the destination (batch write times, batch size, suspend time):
    /// the next piece stops and sizes its batches by it (see [`crate::pace`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pace: Option<Pace>,
    /// Set when the template's `on_error.validate_first` had the whole file validated before the first row
    /// was written: the pieces are those of the writing pass, which writes no error report of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validated: Option<Validated>,
}

/// What a file's validation pass (`on_error.validate_first`) found, carried by the writing pass.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validated {
    /// Where the validation pass wrote the file's error report, when any row was rejected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_report: Option<String>,
}

impl Checkpoint {
    /// The rows imported and rejected by the pieces so far: what the next piece carries on from.
    pub fn counts(&self) -> Counts {
        Counts::of(self.rows_imported, self.rows_rejected)
    }
}

/// A serializable [`StartAt`]. The default is the start of the file, as [`StartAt::default`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointStart {
    /// Decoded byte offset of the next record (as in [`StartAt::position`]).
    pub byte: u64,
    /// Record numbering, as in [`StartAt::position`].
    pub record: u64,
    /// Line numbering, as in [`StartAt::position`].
    pub line: u64,
    /// CSV header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<Vec<String>>,
}

impl From<&StartAt> for CheckpointStart {
    fn from(s: &StartAt) -> Self {
        Self {
            byte: s.position.byte,
            record: s.position.record,
            line: s.position.line,
            header: s.header.clone(),
        }
    }
}

impl From<&CheckpointStart> for StartAt {
    fn from(c: &CheckpointStart) -> Self {
        StartAt {
            position: crate::Position {
                record: c.record,
                line: c.line,
                byte: c.byte,
            },
            header: c.header.clone(),
        }
    }
}

/// The SQS message for one file version (versioned JSON, small).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMessage {
    /// Message schema version: 1.
    pub v: u32,
    /// The file version.
    #[serde(flatten)]
    pub version: FileVersion,
    /// Size in bytes.
    pub size: u64,
    /// LastModified.
    pub last_modified: DateTime<Utc>,
    /// Piece number for continuations of long files (0 for the first).
    #[serde(default)]
    pub piece: u32,
}

impl FileMessage {
    /// The current schema version.
    pub const VERSION: u32 = 1;

    /// A message for the first piece of a ledger entry.
    pub fn for_entry(entry: &LedgerEntry) -> Self {
        Self {
            v: Self::VERSION,
            version: entry.version.clone(),
            size: entry.size,
            last_modified: entry.last_modified,
            piece: 0,
        }
    }
}

/// One lister pass over one connector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRun {
    /// Connector id.
    pub connector_id: String,
    /// Started.
    pub started_at: DateTime<Utc>,
    /// Duration in milliseconds.
    pub duration_ms: u64,
    /// Objects listed (folder markers included).
    pub listed: u64,
    /// Objects inside the time window.
    pub candidates: u64,
    /// Versions seen for the first time (claimed or skipped).
    pub new: u64,
    /// Messages accepted by SQS in this run.
    pub enqueued: u64,
    /// Of those, claimed-but-unsent versions from an earlier run.
    pub resent: u64,
    /// Versions already in the ledger.
    pub already_known: u64,
    /// Skipped versions by reason code.
    pub skipped: BTreeMap<String, u64>,
    /// Watermark before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark_before: Option<DateTime<Utc>>,
    /// Watermark after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark_after: Option<DateTime<Utc>>,
    /// Why the run failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The reconciliation listing this run did, if it was due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciled: Option<ReconcileRun>,
}

/// What one run's reconciliation listing did (README, "Reconciliation").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileRun {
    /// Objects listed by the reconciliation.
    pub listed: u64,
    /// ListObjectsV2 calls made.
    pub list_calls: u64,
    /// Ledger entries looked up (one per object inside the window).
    pub ledger_reads: u64,
    /// Versions the ledger did not have, now claimed and sent (or recorded as skipped).
    pub found: u64,
    /// Of those, messages SQS accepted (also counted in the run's `enqueued`).
    pub enqueued: u64,
    /// Found versions of an event-mode connector: what its S3 events missed (`FilesMissedByEvents`).
    pub missed_by_events: u64,
    /// Found versions of a polling connector older than its poll window (`FilesFoundLate`).
    pub found_late: u64,
    /// The pass reached the end of the listing (otherwise the next run continues it).
    pub complete: bool,
}
