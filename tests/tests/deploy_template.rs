//! The template-to-code agreement test: `template.yaml`, translated offline to CloudFormation by the SAM
//! translator (`infra/deploy/translate.py`, from `.venv-deploy`), must wire what the code expects:
//!
//! - the environment variables each function gets are ones `crates/core/src/config.rs` reads, and they make a
//!   valid `Config` naming the right resources;
//! - the tables' key schemas are those the code creates (`provision`), the TTL attribute is the code's;
//! - the queue, its dead-letter queue, the event source mapping and the timeouts are wired as documented;
//! - every AWS call the real lister and worker make (recorded while they run against the emulator) is granted
//!   to that function's role on the resource it touched, and nothing else is granted (no wildcard actions).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, OnceLock};

use anyhow::{bail, ensure, Context, Result};
use s3_importer_aws::stack::outputs;
use s3_importer_core::config::Config;
use s3_importer_core::sync::ports::{ConnectorStore, FileLedger, TemplateStore};
use s3_importer_core::sync::{Clock, DestinationConfig, Discovery, FileMessage};
use s3_importer_lister::Lister;
use s3_importer_tests::deployment::{sync_connector, Deployment};
use s3_importer_tests::notifications::Route;
use s3_importer_tests::recording::{Call, Recorder};
use s3_importer_tests::{dynamodb_client, emulator, repo_root, stdout_of, unique_name, ACCOUNT_ID};
use s3_importer_worker::Worker;
use serde_json::{json, Value};

/// The stack outputs `s3-importer --stack NAME` reads (the CLI's own constants).
const CLI_OUTPUTS: &[&str] = &[
    outputs::STATE_TABLE,
    outputs::RECORDS_TABLE,
    outputs::QUEUE_URL,
    outputs::NOTIFICATION_QUEUE_URL,
    outputs::DEAD_LETTER_QUEUE_URL,
    outputs::OUTPUT_BUCKET,
    outputs::LISTER_FUNCTION,
    outputs::WORKER_FUNCTION,
    outputs::LISTER_ROLE_ARN,
    outputs::WORKER_ROLE_ARN,
    outputs::SOURCE_ROLE_NAME_PREFIX,
];

/// Actions the Lambda service performs with a function's role on its behalf (not SDK calls of the code):
/// writing the function's logs, and, for the worker, the SQS event source mapping polling the queue. The
/// lister's role is also EventsFunction's (the lister's code consuming the notification queue): its logs and
/// its event source mapping are the lister role's too.
const SERVICE_ACTIONS: &[(&str, &str, &str)] = &[
    ("ListerFunction", "logs:CreateLogStream", "ListerLogGroup"),
    ("ListerFunction", "logs:PutLogEvents", "ListerLogGroup"),
    ("ListerFunction", "logs:CreateLogStream", "EventsLogGroup"),
    ("ListerFunction", "logs:PutLogEvents", "EventsLogGroup"),
    ("ListerFunction", "sqs:ReceiveMessage", "NotificationQueue"),
    ("ListerFunction", "sqs:DeleteMessage", "NotificationQueue"),
    (
        "ListerFunction",
        "sqs:GetQueueAttributes",
        "NotificationQueue",
    ),
    ("WorkerFunction", "logs:CreateLogStream", "WorkerLogGroup"),
    ("WorkerFunction", "logs:PutLogEvents", "WorkerLogGroup"),
    ("WorkerFunction", "sqs:ReceiveMessage", "WorkQueue"),
    ("WorkerFunction", "sqs:DeleteMessage", "WorkQueue"),
    ("WorkerFunction", "sqs:GetQueueAttributes", "WorkQueue"),
];

/// Actions the code calls only on failure paths a successful run does not reach, with the S3 level of their
/// resource and the SDK method that calls them (checked to exist in `crates/aws/src`).
const FAILURE_PATH_ACTIONS: &[(&str, &str, &str, S3Level, &str)] = &[
    (
        "WorkerFunction",
        "s3:AbortMultipartUpload",
        "OutputBucket",
        S3Level::Object,
        ".abort_multipart_upload()",
    ),
    // A GetObject answered 403 is checked with a ListObjectsV2 of the key (deleted, or refused?).
    (
        "WorkerFunction",
        "s3:ListBucket",
        "SourceBucketNamePattern",
        S3Level::Bucket,
        ".list_objects_v2()",
    ),
];

/// Statements present only when a template condition holds (their parameters set): the function, the
/// condition, the action, the resource (a parameter, or `*` for actions without resource-level
/// permissions), and the SDK method of `crates/aws/src` that calls it (`None`: the Lambda service performs it
/// with the function's role, here the network interfaces of a function in a VPC).
const CONDITIONAL_ACTIONS: &[(&str, &str, &str, &str, Option<&str>)] = &[
    (
        "WorkerFunction",
        "HasPostgresSecrets",
        "secretsmanager:GetSecretValue",
        "PostgresSecretArns",
        Some(".get_secret_value()"),
    ),
    (
        "WorkerFunction",
        "HasWebhookSecrets",
        "secretsmanager:GetSecretValue",
        "WebhookSecretArns",
        Some(".get_secret_value()"),
    ),
    (
        "WorkerFunction",
        "HasStripeSecrets",
        "secretsmanager:GetSecretValue",
        "StripeSecretArns",
        Some(".get_secret_value()"),
    ),
    (
        "WorkerFunction",
        "WorkerInVpc",
        "ec2:CreateNetworkInterface",
        "*",
        None,
    ),
    (
        "WorkerFunction",
        "WorkerInVpc",
        "ec2:DescribeNetworkInterfaces",
        "*",
        None,
    ),
    (
        "WorkerFunction",
        "WorkerInVpc",
        "ec2:DescribeSubnets",
        "*",
        None,
    ),
    (
        "WorkerFunction",
        "WorkerInVpc",
        "ec2:DeleteNetworkInterface",
        "*",
        None,
    ),
    (
        "WorkerFunction",
        "WorkerInVpc",
        "ec2:AssignPrivateIpAddresses",
        "*",
        None,
    ),
    (
        "WorkerFunction",
        "WorkerInVpc",
        "ec2:UnassignPrivateIpAddresses",
        "*",
        None,
    ),
];

fn translated() -> &'static Value {
    static TRANSLATED: OnceLock<Value> = OnceLock::new();
    TRANSLATED.get_or_init(|| {
        let root = repo_root();
        let python = root.join(".venv-deploy/bin/python");
        assert!(
            python.exists(),
            "{} not found: run `make deploy-venv` (infra/deploy/venv.sh) first",
            python.display()
        );
        let stdout = stdout_of(
            Command::new(&python)
                .arg(root.join("infra/deploy/translate.py"))
                .arg(root.join("template.yaml"))
                .current_dir(&root),
            "infra/deploy/translate.py template.yaml",
        )
        .expect("the SAM translator accepts template.yaml");
        serde_json::from_slice(&stdout).expect("the translator printed JSON")
    })
}

fn resource(id: &str) -> &'static Value {
    let r = &translated()["Resources"][id];
    assert!(
        r.is_object(),
        "the translated template has no resource {id}"
    );
    r
}

fn props(id: &str) -> &'static Value {
    &resource(id)["Properties"]
}

fn parameter_default(name: &str) -> Option<String> {
    match &translated()["Parameters"][name]["Default"] {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A value the way the test resolves it: parameters to their defaults, resources to `ref:<LogicalId>`.
fn resolve(value: &Value) -> String {
    if let Some(name) = value.get("Ref").and_then(Value::as_str) {
        return parameter_default(name).unwrap_or_else(|| format!("ref:{name}"));
    }
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => format!("expr:{other}"),
    }
}

/// The `S3I_*` variables the code reads: every `pub const ...: &str = "S3I_..."` of `config.rs`.
fn variables_the_code_reads() -> BTreeSet<String> {
    let source = std::fs::read_to_string(repo_root().join("crates/core/src/config.rs"))
        .expect("read crates/core/src/config.rs");
    let names: BTreeSet<String> = source
        .lines()
        .filter(|l| l.trim_start().starts_with("pub const ") && l.contains(": &str = \"S3I_"))
        .filter_map(|l| l.split('"').nth(1))
        .map(str::to_owned)
        .collect();
    assert!(
        names.len() >= 4,
        "found only {names:?} in config.rs: has its layout changed?"
    );
    names
}

fn environment(function: &str) -> BTreeMap<String, Value> {
    props(function)["Environment"]["Variables"]
        .as_object()
        .unwrap_or_else(|| panic!("{function} has no environment variables"))
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[test]
fn environment_variables_agree_with_the_code() {
    let known = variables_the_code_reads();
    for function in ["ListerFunction", "WorkerFunction", "EventsFunction"] {
        let env = environment(function);
        let unknown: Vec<&String> = env.keys().filter(|k| !known.contains(*k)).collect();
        assert!(
            unknown.is_empty(),
            "template.yaml sets {unknown:?} on {function}, which crates/core/src/config.rs does not read \
             (it reads {known:?})"
        );
        let map: HashMap<String, String> =
            env.iter().map(|(k, v)| (k.clone(), resolve(v))).collect();
        let config = Config::from_map(&map).unwrap_or_else(|e| {
            panic!("{function}'s environment in template.yaml is not a valid configuration: {e}")
        });
        assert_eq!(config.state_table, "ref:StateTable", "{function}");
        assert_eq!(config.records_table, "ref:RecordsTable", "{function}");
        assert_eq!(config.queue_url, "ref:WorkQueue", "{function}");
        assert_eq!(
            config.notification_queue_url.as_deref(),
            Some("ref:NotificationQueue"),
            "{function}"
        );
        assert_eq!(config.output_bucket, "ref:OutputBucket", "{function}");
        // The parameters reach the configuration.
        let days: i64 = parameter_default("LookbackDays")
            .and_then(|d| d.parse().ok())
            .expect("LookbackDays default");
        assert_eq!(config.sync.lookback.num_days(), days, "{function}");
        let bytes: u64 = parameter_default("MaxFileBytes")
            .and_then(|d| d.parse().ok())
            .expect("MaxFileBytes default");
        assert_eq!(config.sync.max_file_size, bytes, "{function}");
        let concurrency: usize = parameter_default("DynamoDbWriteConcurrency")
            .and_then(|d| d.parse().ok())
            .expect("DynamoDbWriteConcurrency default");
        assert_eq!(config.dynamodb_write_concurrency, concurrency, "{function}");
        // The metrics go to the namespace the alarms read.
        let namespace = &env["S3I_METRICS_NAMESPACE"];
        assert_eq!(
            &props("FilesFailedAlarm")["Namespace"],
            namespace,
            "FilesFailedAlarm"
        );
        for query in props("NoSuccessfulSyncAlarm")["Metrics"]
            .as_array()
            .expect("NoSuccessfulSyncAlarm is a metric-math alarm")
            .iter()
            .filter(|q| q["MetricStat"].is_object())
        {
            assert_eq!(
                &query["MetricStat"]["Metric"]["Namespace"], namespace,
                "NoSuccessfulSyncAlarm"
            );
        }
    }
}

/// The `(name, value)` pairs of `items` (a table's key schema or attribute definitions as DynamoDB describes it).
fn pairs<T>(items: &[T], pair: impl Fn(&T) -> (&str, &str)) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|item| {
            let (name, value) = pair(item);
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

/// The `(item[name], item[value])` pairs of `list` (a key schema or attribute definitions in template.yaml),
/// `None` when it is not a list.
fn template_pairs(list: &Value, name: &str, value: &str) -> Option<BTreeSet<(String, String)>> {
    let items = list.as_array()?;
    Some(
        items
            .iter()
            .map(|item| (resolve(&item[name]), resolve(&item[value])))
            .collect(),
    )
}

#[tokio::test]
async fn key_schemas_and_ttl_are_those_the_code_uses() -> Result<()> {
    let sdk = emulator().await.sdk_config().await;
    let names = s3_importer_aws::provision::Names::with_prefix(&unique_name("schema"));
    s3_importer_aws::provision::provision(&sdk, &names, 30, 5).await?;
    let client = dynamodb_client(&sdk);
    for (logical, table) in [
        ("StateTable", &names.state_table),
        ("RecordsTable", &names.records_table),
    ] {
        let described = client
            .describe_table()
            .table_name(table)
            .send()
            .await?
            .table
            .context("no table description")?;
        let code_keys = pairs(described.key_schema(), |k| {
            (k.attribute_name(), k.key_type().as_str())
        });
        let code_attributes = pairs(described.attribute_definitions(), |a| {
            (a.attribute_name(), a.attribute_type().as_str())
        });
        let p = props(logical);
        let template_keys =
            template_pairs(&p["KeySchema"], "AttributeName", "KeyType").context("KeySchema")?;
        let template_attributes =
            template_pairs(&p["AttributeDefinitions"], "AttributeName", "AttributeType")
                .context("AttributeDefinitions")?;
        ensure!(
            code_keys == template_keys,
            "{logical}: key schema {template_keys:?} in template.yaml, {code_keys:?} in the code"
        );
        ensure!(
            code_attributes == template_attributes,
            "{logical}: attributes {template_attributes:?} in template.yaml, {code_attributes:?} in the code"
        );
        ensure!(p["BillingMode"] == "PAY_PER_REQUEST", "{logical} on-demand");
        ensure!(
            p["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] == true,
            "{logical} point-in-time recovery"
        );
        ensure!(p["SSESpecification"]["SSEEnabled"] == true, "{logical} SSE");
    }
    let ttl = &props("StateTable")["TimeToLiveSpecification"];
    ensure!(
        ttl["AttributeName"] == s3_importer_aws::state::TTL_ATTRIBUTE && ttl["Enabled"] == true,
        "the state table's TTL attribute must be {:?}: {ttl}",
        s3_importer_aws::state::TTL_ATTRIBUTE
    );
    Ok(())
}

#[test]
fn queue_wiring_and_timeouts() {
    let queue = props("WorkQueue");
    assert_eq!(
        queue["RedrivePolicy"]["deadLetterTargetArn"],
        json!({ "Fn::GetAtt": ["DeadLetterQueue", "Arn"] })
    );
    assert_eq!(queue["RedrivePolicy"]["maxReceiveCount"], json!(5));
    for q in ["WorkQueue", "DeadLetterQueue", "ScheduleDeadLetterQueue"] {
        assert_eq!(props(q)["SqsManagedSseEnabled"], json!(true), "{q} SSE");
    }
    // Visibility timeout at least six times the longest worker timeout the parameter allows.
    let worker_timeout = &translated()["Parameters"]["WorkerTimeoutSeconds"];
    let max_timeout = worker_timeout["MaxValue"].as_u64().expect("MaxValue");
    assert!(max_timeout <= 900, "Lambda's limit is 900 s");
    let visibility = queue["VisibilityTimeout"]
        .as_u64()
        .expect("a literal VisibilityTimeout");
    assert!(
        visibility >= 6 * max_timeout,
        "VisibilityTimeout {visibility} < 6 x {max_timeout}"
    );
    assert_eq!(
        props("WorkerFunction")["Timeout"],
        json!({ "Ref": "WorkerTimeoutSeconds" })
    );

    let mapping = props("WorkerFunctionQueue");
    assert_eq!(
        mapping["EventSourceArn"],
        json!({ "Fn::GetAtt": ["WorkQueue", "Arn"] })
    );
    assert_eq!(mapping["FunctionName"], json!({ "Ref": "WorkerFunction" }));
    assert_eq!(
        mapping["FunctionResponseTypes"],
        json!(["ReportBatchItemFailures"])
    );
    assert_eq!(mapping["BatchSize"], json!({ "Ref": "WorkerBatchSize" }));
    assert_eq!(
        mapping["ScalingConfig"]["MaximumConcurrency"],
        json!({ "Ref": "WorkerMaximumConcurrency" })
    );

    // The notification queue: its DLQ, SSE, a visibility timeout of six EventsFunction timeouts, the lister's
    // code and role consuming it with partial batch failures.
    let notifications = props("NotificationQueue");
    assert_eq!(
        notifications["RedrivePolicy"]["deadLetterTargetArn"],
        json!({ "Fn::GetAtt": ["NotificationDeadLetterQueue", "Arn"] })
    );
    for q in ["NotificationQueue", "NotificationDeadLetterQueue"] {
        assert_eq!(props(q)["SqsManagedSseEnabled"], json!(true), "{q} SSE");
    }
    let events = props("EventsFunction");
    assert_eq!(events["Role"], props("ListerFunction")["Role"]);
    let events_timeout = events["Timeout"].as_u64().expect("a literal Timeout");
    assert!(notifications["VisibilityTimeout"].as_u64() >= Some(6 * events_timeout));
    let mapping = props("EventsFunctionNotifications");
    assert_eq!(
        mapping["EventSourceArn"],
        json!({ "Fn::GetAtt": ["NotificationQueue", "Arn"] })
    );
    assert_eq!(
        mapping["FunctionResponseTypes"],
        json!(["ReportBatchItemFailures"])
    );
    // Only S3, SNS and EventBridge may send, each scoped to the allowed accounts.
    let policy = props("NotificationQueuePolicy");
    let statements = policy["PolicyDocument"]["Statement"]
        .as_array()
        .expect("statements");
    let services: BTreeSet<&str> = statements
        .iter()
        .filter_map(|s| s["Principal"]["Service"].as_str())
        .collect();
    assert_eq!(
        services,
        [
            "events.amazonaws.com",
            "s3.amazonaws.com",
            "sns.amazonaws.com"
        ]
        .into_iter()
        .collect()
    );
    for s in statements {
        assert_eq!(s["Action"], json!("sqs:SendMessage"));
        assert!(
            s["Condition"]["StringEquals"]["aws:SourceAccount"].is_object(),
            "{s}"
        );
    }

    let lister = props("ListerFunction");
    assert_eq!(lister["ReservedConcurrentExecutions"], json!(1));
    let schedule = props("ListerFunctionSchedule");
    assert_eq!(
        schedule["ScheduleExpression"],
        json!({ "Ref": "ScheduleExpression" })
    );
    assert!(schedule["Target"]["RetryPolicy"]["MaximumRetryAttempts"].is_number());
    assert_eq!(
        schedule["Target"]["DeadLetterConfig"]["Arn"],
        json!({ "Fn::GetAtt": ["ScheduleDeadLetterQueue", "Arn"] })
    );
    for (function, log_group) in [
        ("ListerFunction", "ListerLogGroup"),
        ("WorkerFunction", "WorkerLogGroup"),
    ] {
        let p = props(function);
        assert_eq!(p["Runtime"], "provided.al2023", "{function}");
        assert_eq!(p["Architectures"], json!(["arm64"]), "{function}");
        assert_eq!(p["LoggingConfig"]["LogFormat"], "JSON", "{function}");
        assert_eq!(
            p["LoggingConfig"]["LogGroup"],
            json!({ "Ref": log_group }),
            "{function}"
        );
        assert!(
            props(log_group)["RetentionInDays"].is_object(),
            "{log_group} has a retention"
        );
    }
    for output in CLI_OUTPUTS {
        assert!(
            translated()["Outputs"][output]["Value"].is_object(),
            "the CLI reads the stack output {output}"
        );
    }
}

/// One policy statement, flattened.
#[derive(Debug)]
struct Statement {
    actions: Vec<String>,
    resources: Vec<Value>,
    /// The template condition the statement is granted under (`Fn::If [COND, STATEMENT, AWS::NoValue]`).
    condition: Option<String>,
}

/// The statements of the role a function runs as; fails on anything but plain Allow statements, each
/// granted always or under a condition.
fn role_statements(function: &str) -> Vec<Statement> {
    let role_ref = &props(function)["Role"];
    let role_id = role_ref["Fn::GetAtt"][0]
        .as_str()
        .unwrap_or_else(|| panic!("{function}'s Role is not a role of this template: {role_ref}"));
    let role = props(role_id);
    assert!(
        role.get("ManagedPolicyArns").is_none(),
        "{role_id} must not attach managed policies (they grant more than the code calls)"
    );
    let mut statements = Vec::new();
    for policy in role["Policies"].as_array().expect("inline policies") {
        for s in policy["PolicyDocument"]["Statement"]
            .as_array()
            .expect("statements")
        {
            let (condition, s) = match s.get("Fn::If") {
                Some(branches) => {
                    assert_eq!(
                        branches[2],
                        json!({ "Ref": "AWS::NoValue" }),
                        "{role_id}: a conditional statement is granted or absent: {s}"
                    );
                    (branches[0].as_str().map(str::to_owned), &branches[1])
                }
                None => (None, s),
            };
            assert_eq!(s["Effect"], "Allow", "{role_id}: {s}");
            assert!(
                s.get("NotAction").is_none() && s.get("NotResource").is_none(),
                "{role_id}: {s}"
            );
            assert!(s.get("Condition").is_none(), "{role_id}: {s}");
            let list = |v: &Value| match v {
                Value::Array(a) => a.clone(),
                Value::Null => Vec::new(),
                other => vec![other.clone()],
            };
            let actions: Vec<String> = list(&s["Action"])
                .iter()
                .map(|a| a.as_str().expect("literal action").to_owned())
                .collect();
            let resources = list(&s["Resource"]);
            for a in &actions {
                assert!(
                    !a.contains('*') && !a.contains('?'),
                    "{role_id} grants the wildcard action {a}"
                );
            }
            for r in &resources {
                assert!(
                    r != "*" || condition.is_some(),
                    "{role_id} grants {actions:?} on every resource"
                );
            }
            statements.push(Statement {
                actions,
                resources,
                condition,
            });
        }
    }
    statements
}

/// Whether a policy resource names `target`: a logical resource (`Fn::GetAtt`/`Ref`/`${X.Arn}`) or a
/// parameter (`${SourceBucketNamePattern}`), and, for S3, the right level (`bucket/*` for objects).
fn names_target(resource: &Value, target: &Target) -> bool {
    let text = resource.to_string();
    let mentions = text.contains(&format!("\"{}\"", target.logical))
        || text.contains(&format!("${{{}.", target.logical))
        || text.contains(&format!("${{{}}}", target.logical));
    let level = match target.s3_level {
        Some(S3Level::Bucket) => !text.contains("/*"),
        Some(S3Level::Object) => text.contains("/*"),
        None => true,
    };
    mentions && level
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum S3Level {
    Bucket,
    Object,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Target {
    logical: String,
    s3_level: Option<S3Level>,
}

impl Target {
    fn of(logical: &str) -> Self {
        Self {
            logical: logical.to_owned(),
            s3_level: None,
        }
    }
}

/// The resources of one test deployment, by the template's logical ids.
struct Resources {
    by_name: HashMap<String, String>,
    source_buckets: BTreeSet<String>,
}

impl Resources {
    fn logical(&self, name: &str) -> Result<String> {
        if self.source_buckets.contains(name) {
            return Ok("SourceBucketNamePattern".to_owned());
        }
        self.by_name
            .get(name)
            .cloned()
            .with_context(|| format!("{name} is not a resource of the deployment"))
    }
}

/// The IAM actions (and the resources they apply to) one recorded request needs. See the Service
/// Authorization Reference: S3 object reads/writes are s3:GetObject/s3:PutObject, listing is s3:ListBucket,
/// batch SQS calls need the single-message action, and a DynamoDB transaction needs each item's action.
fn required(call: &Call, resources: &Resources) -> Result<Vec<(String, Target)>> {
    let json = call.json.clone().unwrap_or(Value::Null);
    let queue = || -> Result<Target> {
        let url = json["QueueUrl"].as_str().context("QueueUrl")?;
        let name = url.rsplit('/').next().unwrap_or(url);
        Ok(Target::of(&resources.logical(name)?))
    };
    let table = |v: &Value| -> Result<Target> {
        Ok(Target::of(
            &resources.logical(v.as_str().context("TableName")?)?,
        ))
    };
    let s3 = |level: S3Level| -> Result<Target> {
        let (bucket, _) = call.s3_bucket_and_key();
        Ok(Target {
            logical: resources.logical(&bucket)?,
            s3_level: Some(level),
        })
    };
    Ok(match (call.service.as_str(), call.operation.as_str()) {
        ("dynamodb", "TransactWriteItems") => {
            let mut needs = Vec::new();
            for item in json["TransactItems"].as_array().context("TransactItems")? {
                for (kind, action) in [
                    ("Put", "PutItem"),
                    ("Update", "UpdateItem"),
                    ("Delete", "DeleteItem"),
                    ("ConditionCheck", "ConditionCheckItem"),
                ] {
                    if let Some(op) = item.get(kind) {
                        needs.push((format!("dynamodb:{action}"), table(&op["TableName"])?));
                    }
                }
            }
            needs
        }
        ("dynamodb", "TransactGetItems") => {
            let mut needs = Vec::new();
            for item in json["TransactItems"].as_array().context("TransactItems")? {
                needs.push((
                    "dynamodb:GetItem".to_owned(),
                    table(&item["Get"]["TableName"])?,
                ));
            }
            needs
        }
        ("dynamodb", op @ ("BatchWriteItem" | "BatchGetItem")) => {
            let mut needs = Vec::new();
            for name in json["RequestItems"]
                .as_object()
                .context("RequestItems")?
                .keys()
            {
                needs.push((format!("dynamodb:{op}"), table(&json!(name))?));
            }
            needs
        }
        ("dynamodb", op) => vec![(format!("dynamodb:{op}"), table(&json["TableName"])?)],
        ("sqs", op) => {
            let action = match op {
                "SendMessageBatch" => "SendMessage",
                "DeleteMessageBatch" => "DeleteMessage",
                "ChangeMessageVisibilityBatch" => "ChangeMessageVisibility",
                other => other,
            };
            vec![(format!("sqs:{action}"), queue()?)]
        }
        ("sts", "AssumeRole") => {
            let arn = call.form_field("RoleArn").context("RoleArn")?;
            ensure!(
                arn.contains(":role/s3-importer-"),
                "assumed {arn}, outside the default SourceRoleNamePrefix"
            );
            vec![(
                "sts:AssumeRole".to_owned(),
                Target::of("SourceRoleNamePrefix"),
            )]
        }
        ("s3", "ListObjectsV2" | "HeadBucket") => {
            vec![("s3:ListBucket".to_owned(), s3(S3Level::Bucket)?)]
        }
        ("s3", "ListObjectVersions") => {
            vec![("s3:ListBucketVersions".to_owned(), s3(S3Level::Bucket)?)]
        }
        // Reading a given version is its own action.
        ("s3", "GetObject" | "HeadObject") if call.uri.contains("versionId=") => {
            vec![("s3:GetObjectVersion".to_owned(), s3(S3Level::Object)?)]
        }
        ("s3", "GetBucketNotificationConfiguration") => {
            vec![("s3:GetBucketNotification".to_owned(), s3(S3Level::Bucket)?)]
        }
        ("s3", "GetObject" | "HeadObject") => {
            vec![("s3:GetObject".to_owned(), s3(S3Level::Object)?)]
        }
        (
            "s3",
            "PutObject" | "CreateMultipartUpload" | "UploadPart" | "CompleteMultipartUpload",
        ) => vec![("s3:PutObject".to_owned(), s3(S3Level::Object)?)],
        ("s3", "AbortMultipartUpload") => {
            vec![("s3:AbortMultipartUpload".to_owned(), s3(S3Level::Object)?)]
        }
        ("s3", "DeleteObject") => vec![("s3:DeleteObject".to_owned(), s3(S3Level::Object)?)],
        _ => bail!(
            "no IAM mapping for {} ({} {}): add it to `required`",
            call.name(),
            call.method,
            call.uri
        ),
    })
}

/// Runs the real lister and worker handlers through recording SDK configurations: a same-account connector
/// importing into DynamoDB (good and bad rows, so an error report is written) and a cross-account connector
/// (assumed role) importing into S3 JSON Lines in the output bucket.
async fn record_a_real_run() -> Result<(Vec<Call>, Vec<Call>, Resources)> {
    let mut d = Deployment::new().await?;
    let lister_calls = Recorder::new();
    let worker_calls = Recorder::new();
    let clock: Arc<dyn Clock> = d.clock.clone();
    d.lister = Lister::from_config(&d.config, &lister_calls.sdk_config(&d.sdk), clock.clone());
    d.worker = Worker::from_config(&d.config, &worker_calls.sdk_config(&d.sdk), clock);

    // A second connector: cross-account (a role named as `connector create` asks), S3 JSONL destination.
    let mut other = d.connector.clone();
    other.id = format!("{}-x", d.connector.id);
    other.name = format!("{}-x", d.connector.name);
    other.source.role_arn = Some(format!(
        "arn:aws:iam::{ACCOUNT_ID}:role/s3-importer-{}",
        other.name
    ));
    other.source.external_id = Some("external-id".to_owned());
    other.destination = DestinationConfig::S3Jsonl {
        bucket: d.provisioned.names.output_bucket.clone(),
        prefix: "normalized".to_owned(),
    };
    d.state.create_connector(&other).await?;

    d.put("a.csv", b"id,qty\n1,2\n2,oops\n3,4\n").await?;
    d.put("b.jsonl", b"{\"id\":\"4\",\"qty\":5}\n").await?;
    let run = d.sync().await?;
    ensure!(
        run.enqueued == 2,
        "first connector enqueued {}",
        run.enqueued
    );
    let other_run = sync_connector(&d.lister, &other.name, "lister-cross-account").await?;
    // `connector verify` with --stack invokes the lister: the connection doctor runs as the lister's role, for
    // a same-account connector and for a cross-account one.
    for connector in [&d.connector.id, &other.id] {
        let verified = s3_importer_lister::handle(
            &d.lister,
            json!({ "action": "verify", "connector_id": connector }),
            "lister-verify",
        )
        .await?;
        let report = verified.report.context("verify returned no report")?;
        ensure!(
            report.sample_key.is_some(),
            "the doctor read no file: {report:?}"
        );
    }
    ensure!(
        other_run.enqueued == 2,
        "cross-account connector enqueued {}",
        other_run.enqueued
    );
    // Every file in pieces of one row (the worker's checkpoint margin is the whole invocation), so the
    // continuation path runs too: checkpoints, continuation messages, S3 outputs carried between pieces.
    let mut piecewise = d.worker.clone();
    piecewise.settings.checkpoint_margin = chrono::Duration::seconds(30);
    piecewise.settings.batch_rows = 1;
    let drained = d
        .drain_in_pieces(&piecewise, chrono::Duration::seconds(30))
        .await?;
    ensure!(
        drained.acked > 4 && drained.retried.is_empty(),
        "{drained:?}"
    );
    ensure!(d.records().await?.len() == 3, "three good rows imported");

    // A connector in `events` mode: an S3 event handled by the lister's notification handler (as
    // EventsFunction runs it: HeadObject, the ledger claim, the work queue), then `connector verify`, which
    // reads the bucket's notification configuration.
    let mut events = d.connector.clone();
    events.id = format!("{}-e", d.connector.id);
    events.name = format!("{}-e", d.connector.name);
    events.discovery = Discovery::Events;
    d.state.create_connector(&events).await?;
    d.route_events(Route::Direct, None).await?;
    d.put("c.csv", b"id,qty\n5,6\n").await?;
    let report = d.drain_notifications().await?;
    ensure!(
        report.enqueued == 1,
        "events connector enqueued: {report:?}"
    );
    let verified = s3_importer_lister::handle(
        &d.lister,
        json!({ "action": "verify", "connector_id": events.id }),
        "lister-verify-events",
    )
    .await?;
    let report = verified.report.context("verify returned no report")?;
    ensure!(
        report.checks.iter().any(|c| c.check == "notifications"
            && c.status == s3_importer_aws::verify::CheckStatus::Pass),
        "{report:?}"
    );
    let drained = d.drain().await?;
    ensure!(
        drained.acked == 1 && drained.retried.is_empty(),
        "{drained:?}"
    );

    // A connector reading a versioned bucket's versions, in `events` mode: a notification naming a version is
    // looked up by it (HeadObject with a VersionId), the reconciliation lists versions, and the worker reads
    // each version pinned and lists the key's older versions to order them.
    d.enable_versioning().await?;
    let mut versioned = d.connector.clone();
    versioned.id = format!("{}-v", d.connector.id);
    versioned.name = format!("{}-v", d.connector.name);
    versioned.discovery = Discovery::Events;
    versioned.source.versions = true;
    versioned.source.prefix = Some("versioned/".to_owned());
    d.state.create_connector(&versioned).await?;
    let body = b"id,qty\n8,9\n";
    let (etag, older) = d.put_version("versioned/v.csv", body).await?;
    d.put_version("versioned/v.csv", b"id,qty\n8,10\n").await?;
    d.notify_version("versioned/v.csv", body.len() as u64, &etag, &older)
        .await?;
    let report = d.drain_notifications().await?;
    ensure!(
        report.enqueued == 2,
        "versioned connector enqueued: {report:?}"
    );
    s3_importer_lister::handle(
        &d.lister,
        json!({ "action": "reconcile", "connector_id": versioned.id }),
        "lister-reconcile-versions",
    )
    .await?;
    let drained = d.drain().await?;
    ensure!(
        drained.acked == 2 && drained.retried.is_empty(),
        "{drained:?}"
    );

    // A scheduled run sweeps the dead-letter queue: a message of a file that finished meanwhile is read
    // against the ledger and deleted.
    let stale = FileMessage::for_entry(&d.file("a.csv").await?);
    s3_importer_aws::config::sqs_client(&d.sdk)
        .send_message()
        .queue_url(&d.provisioned.dead_letter_queue_url)
        .message_body(serde_json::to_string(&stale)?)
        .send()
        .await?;
    s3_importer_lister::handle(&d.lister, json!({}), "lister-schedule").await?;
    ensure!(
        d.dead_letter_depth().await? == (0, 0),
        "the sweep deleted the stale dead letter"
    );

    let names = &d.provisioned.names;
    let by_name: HashMap<String, String> = [
        (names.state_table.clone(), "StateTable"),
        (names.records_table.clone(), "RecordsTable"),
        (names.queue.clone(), "WorkQueue"),
        (names.dead_letter_queue.clone(), "DeadLetterQueue"),
        (names.notification_queue.clone(), "NotificationQueue"),
        (names.output_bucket.clone(), "OutputBucket"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_owned()))
    .collect();
    let resources = Resources {
        by_name,
        source_buckets: [d.source_bucket.clone()].into_iter().collect(),
    };
    Ok((lister_calls.calls(), worker_calls.calls(), resources))
}

#[tokio::test]
async fn every_call_the_functions_make_is_granted_and_nothing_more() -> Result<()> {
    let (lister_calls, worker_calls, resources) = record_a_real_run().await?;
    let mut report = Vec::new();
    for (function, calls) in [
        ("ListerFunction", &lister_calls),
        ("WorkerFunction", &worker_calls),
    ] {
        ensure!(!calls.is_empty(), "{function}: no call recorded");
        let (conditional, statements): (Vec<_>, Vec<_>) = role_statements(function)
            .into_iter()
            .partition(|s| s.condition.is_some());
        check_conditional_grants(function, &conditional)?;
        let mut needed: BTreeSet<(String, Target)> = BTreeSet::new();
        for call in calls.iter() {
            for need in required(call, &resources)
                .with_context(|| format!("{function}: {}", call.name()))?
            {
                needed.insert(need);
            }
        }
        let operations: BTreeSet<String> = calls.iter().map(Call::name).collect();
        let line = format!(
            "{function}: calls {operations:?}; needs {:?}",
            needed
                .iter()
                .map(|(a, t)| format!("{a} on {}", t.logical))
                .collect::<BTreeSet<_>>()
        );
        eprintln!("{line}");
        report.push(line);
        for (_, action, logical) in SERVICE_ACTIONS.iter().filter(|s| s.0 == function) {
            needed.insert((action.to_string(), Target::of(logical)));
        }
        let aws_source = read_aws_sources();
        for (_, action, logical, level, method) in
            FAILURE_PATH_ACTIONS.iter().filter(|s| s.0 == function)
        {
            ensure!(
                aws_source.contains(method),
                "{action} is granted for {method}, which crates/aws/src no longer calls"
            );
            needed.insert((
                action.to_string(),
                Target {
                    logical: logical.to_string(),
                    s3_level: Some(*level),
                },
            ));
        }
        // Every need is granted, on its resource.
        for (action, target) in &needed {
            let granted = statements.iter().any(|s| {
                s.actions.iter().any(|a| a == action)
                    && s.resources.iter().any(|r| names_target(r, target))
            });
            ensure!(
                granted,
                "{function} calls {action} on {target:?}, which its role in template.yaml does not grant"
            );
        }
        // Nothing else is granted.
        for s in &statements {
            for action in &s.actions {
                for resource in &s.resources {
                    let used = needed
                        .iter()
                        .any(|(a, t)| a == action && names_target(resource, t));
                    ensure!(
                        used,
                        "{function}'s role grants {action} on {resource}, which the code never needs"
                    );
                }
            }
        }
    }
    ensure!(report.len() == 2);
    Ok(())
}

/// The conditional statements of `function`'s role grant exactly its [`CONDITIONAL_ACTIONS`], each under its
/// condition on its resource, and the code still calls each one it says the code calls.
fn check_conditional_grants(function: &str, conditional: &[Statement]) -> Result<()> {
    let resource_of = |r: &Value| match r {
        Value::String(s) => s.clone(),
        other => other["Ref"].as_str().unwrap_or_default().to_owned(),
    };
    let mut granted = BTreeSet::new();
    for s in conditional {
        for action in &s.actions {
            for resource in &s.resources {
                granted.insert((
                    s.condition.clone().unwrap_or_default(),
                    action.clone(),
                    resource_of(resource),
                ));
            }
        }
    }
    let expected: BTreeSet<_> = CONDITIONAL_ACTIONS
        .iter()
        .filter(|c| c.0 == function)
        .map(|c| (c.1.to_owned(), c.2.to_owned(), c.3.to_owned()))
        .collect();
    ensure!(
        granted == expected,
        "{function}'s conditional grants {granted:?} differ from {expected:?}"
    );
    let aws_source = read_aws_sources();
    for (_, _, action, _, method) in CONDITIONAL_ACTIONS.iter().filter(|c| c.0 == function) {
        if let Some(method) = method {
            ensure!(
                aws_source.contains(method),
                "{action} is granted for {method}, which crates/aws/src no longer calls"
            );
        }
    }
    Ok(())
}

fn read_aws_sources() -> String {
    let dir: PathBuf = repo_root().join("crates/aws/src");
    let mut all = String::new();
    for entry in std::fs::read_dir(&dir).expect("crates/aws/src").flatten() {
        if entry.path().extension().is_some_and(|e| e == "rs") {
            all.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
    }
    all
}

#[test]
fn alarms_and_dashboard_read_metrics_the_code_emits() {
    use s3_importer_core::metrics::names;
    let emitted = [
        names::FILES_LISTED,
        names::FILES_ENQUEUED,
        names::FILES_SKIPPED,
        names::SYNC_DURATION,
        names::SYNCS_SUCCEEDED,
        names::SYNCS_FAILED,
        names::FILES_IMPORTED,
        names::FILES_FAILED,
        names::FILES_RETRIED,
        names::ROWS_IMPORTED,
        names::ROWS_REJECTED,
        names::BYTES_READ,
        names::IMPORT_LAG,
        names::ACTIVE_CONNECTORS,
        names::FILES_DEAD_LETTERED,
        names::FILES_MISSED_BY_EVENTS,
        names::FILES_FOUND_LATE,
    ];
    let resources = translated()["Resources"].as_object().expect("resources");
    let mut alarms = 0;
    for (id, r) in resources {
        if r["Type"] != "AWS::CloudWatch::Alarm" {
            continue;
        }
        alarms += 1;
        let p = &r["Properties"];
        assert_eq!(
            p["AlarmActions"],
            json!([{ "Ref": "AlarmTopic" }]),
            "{id} notifies the topic"
        );
        // A single-metric alarm, or the metrics of a metric-math alarm; the stack's namespace is a `Fn::Sub`.
        let mut read = vec![p];
        if let Some(queries) = p["Metrics"].as_array() {
            read.extend(queries.iter().map(|q| &q["MetricStat"]["Metric"]));
        }
        for m in read {
            if m["Namespace"].is_object() {
                let metric = m["MetricName"].as_str().unwrap_or("");
                assert!(
                    emitted.contains(&metric),
                    "{id} reads {metric}, which the code does not emit"
                );
            }
        }
    }
    assert!(
        alarms >= 5,
        "DLQ, errors, failed files, no sync, oldest message"
    );
    assert_ne!(
        props("AlarmTopic")["KmsMasterKeyId"],
        "alias/aws/sns",
        "CloudWatch alarms cannot publish to a topic under the AWS managed SNS key"
    );
    let body = props("Dashboard")["DashboardBody"]["Fn::Sub"][0]
        .as_str()
        .expect("dashboard body");
    let shown = dashboard_metrics(body);
    let ours: Vec<&str> = shown
        .iter()
        .filter(|(ns, _)| ns == DASHBOARD_NAMESPACE)
        .map(|(_, m)| m.as_str())
        .collect();
    for metric in &ours {
        assert!(
            emitted.contains(metric),
            "the dashboard shows {metric}, which the code does not emit"
        );
    }
    for (ns, metric) in &shown {
        assert!(
            ns == DASHBOARD_NAMESPACE || ns.starts_with("AWS/"),
            "the dashboard shows {metric} from an unknown namespace {ns}"
        );
    }
    assert!(
        ours.len() >= 10,
        "the dashboard rows were read (found {ours:?})"
    );
}

/// What `${Ns}` (the stack's metric namespace) becomes when the dashboard body is read.
const DASHBOARD_NAMESPACE: &str = "S3Importer/stack";

/// The `(namespace, metric name)` of every metric row of a CloudWatch dashboard body (the `Fn::Sub` string).
///
/// The `${...}` placeholders are substituted (`${Ns}` by [`DASHBOARD_NAMESPACE`], others by their own name) and
/// the body is parsed as JSON. Per the dashboard body structure, a `"."` item repeats the item in the same position
/// of the previous row, and a leading `"..."` repeats the previous row's leading items up to the ones given.
/// Math-expression rows (only an options object) have no metric and are skipped.
fn dashboard_metrics(body: &str) -> Vec<(String, String)> {
    let mut text = String::with_capacity(body.len());
    let mut rest = body;
    while let Some(at) = rest.find("${") {
        text.push_str(&rest[..at]);
        let close = rest[at..]
            .find('}')
            .expect("an unclosed ${ in the dashboard body")
            + at;
        let name = &rest[at + 2..close];
        text.push_str(if name == "Ns" {
            DASHBOARD_NAMESPACE
        } else {
            name
        });
        rest = &rest[close + 1..];
    }
    text.push_str(rest);
    let parsed: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the dashboard body is not JSON: {e}\n{text}"));
    let widgets = parsed["widgets"].as_array().expect("widgets");
    let mut metrics = Vec::new();
    for widget in widgets {
        if widget["type"] != "metric" {
            continue;
        }
        let rows = widget["properties"]["metrics"]
            .as_array()
            .expect("a metric widget lists metrics");
        let mut previous: Vec<String> = Vec::new();
        for row in rows {
            let items: Vec<&str> = row
                .as_array()
                .expect("a metric row is an array")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            if items.is_empty() {
                continue;
            }
            let mut expanded: Vec<String> = Vec::new();
            let given = if items[0] == "..." {
                let keep = previous.len().saturating_sub(items.len() - 1);
                expanded.extend(previous[..keep].iter().cloned());
                &items[1..]
            } else {
                &items[..]
            };
            for item in given {
                let position = expanded.len();
                if *item == "." {
                    let repeated = previous.get(position).unwrap_or_else(|| {
                        panic!("'.' at position {position} with no previous row item")
                    });
                    expanded.push(repeated.clone());
                } else {
                    expanded.push((*item).to_owned());
                }
            }
            assert!(
                expanded.len() >= 2,
                "a metric row names a namespace and a metric: {row}"
            );
            metrics.push((expanded[0].clone(), expanded[1].clone()));
            previous = expanded;
        }
    }
    metrics
}

/// The no-successful-sync alarm is quiet when nothing is active (fresh stack, every connector paused): it
/// breaches only when the lister saw active connectors and none of their syncs succeeded. A lister that is not
/// invoked at all has its own alarm, breaching on missing data.
#[test]
fn the_sync_alarms_tell_idle_from_failing() {
    let p = props("NoSuccessfulSyncAlarm");
    assert_eq!(p["TreatMissingData"], "notBreaching");
    assert!(p["MetricName"].is_null(), "a metric-math alarm");
    let queries = p["Metrics"].as_array().expect("metric math");
    let id_of = |metric: &str, stat: &str| -> String {
        let q = queries
            .iter()
            .find(|q| q["MetricStat"]["Metric"]["MetricName"] == metric)
            .unwrap_or_else(|| panic!("NoSuccessfulSyncAlarm reads {metric}"));
        assert_eq!(q["MetricStat"]["Stat"], stat, "{metric}");
        assert_eq!(q["ReturnData"], false, "{metric}");
        assert!(
            q["MetricStat"]["Metric"]["Dimensions"].is_null(),
            "{metric}: the deployment-wide series"
        );
        q["Id"].as_str().expect("id").to_owned()
    };
    let active = id_of(
        s3_importer_core::metrics::names::ACTIVE_CONNECTORS,
        "Maximum",
    );
    let succeeded = id_of(s3_importer_core::metrics::names::SYNCS_SUCCEEDED, "Sum");
    let returned: Vec<&Value> = queries.iter().filter(|q| q["ReturnData"] == true).collect();
    let [expression] = returned.as_slice() else {
        panic!("one expression is alarmed on: {queries:?}");
    };
    assert_eq!(
        expression["Expression"],
        format!("IF({active} > 0 AND FILL({succeeded}, 0) < 1, 1, 0)")
    );
    assert_eq!(p["ComparisonOperator"], "GreaterThanOrEqualToThreshold");
    assert_eq!(p["Threshold"], 1.0);

    let p = props("ListerNotInvokedAlarm");
    assert_eq!(p["Namespace"], "AWS/Lambda");
    assert_eq!(p["MetricName"], "Invocations");
    assert_eq!(
        p["Dimensions"],
        json!([{ "Name": "FunctionName", "Value": { "Ref": "ListerFunction" } }])
    );
    assert_eq!(p["Statistic"], "Sum");
    assert_eq!(p["ComparisonOperator"], "LessThanThreshold");
    assert_eq!(p["Threshold"], 1.0);
    assert_eq!(p["TreatMissingData"], "breaching");
}

#[test]
fn dashboard_rows_are_resolved_as_cloudwatch_does() {
    let body = r#"{"widgets": [
        {"type": "metric", "properties": {"metrics": [
            ["${Ns}", "FilesImported"], [".", "Bogus", {"yAxis": "right"}], ["...", {"stat": "p90"}],
            ["AWS/Lambda", "Errors", "FunctionName", "${ListerFunction}"], ["...", "${WorkerFunction}"],
            [".", "Throttles", ".", "."], [{"expression": "m1 + m2"}]
        ]}},
        {"type": "alarm", "properties": {"alarms": ["${SomeAlarm.Arn}"]}}
    ]}"#;
    let ns = DASHBOARD_NAMESPACE.to_owned();
    let pair = |n: &str, m: &str| (n.to_owned(), m.to_owned());
    assert_eq!(
        dashboard_metrics(body),
        vec![
            pair(&ns, "FilesImported"),
            pair(&ns, "Bogus"),
            pair(&ns, "Bogus"),
            pair("AWS/Lambda", "Errors"),
            pair("AWS/Lambda", "Errors"),
            pair("AWS/Lambda", "Throttles"),
        ]
    );
}

/// The storage part of the translated template (tables, bucket, queues and their outputs), deployed with the
/// emulator's CloudFormation; then one sync runs through the resources the stack created, found by the CLI's
/// own output reader. The functions, roles, schedule, alarms and dashboard are left out: the emulator cannot run
/// Lambda functions here.
#[tokio::test]
async fn the_stack_storage_deploys_on_the_emulator_and_one_sync_runs_through_it() -> Result<()> {
    use s3_importer_core::config::vars;
    use s3_importer_core::sync::FixedClock;
    use s3_importer_core::template::Template;
    use s3_importer_tests::deployment::dynamodb_connector;

    const STORAGE: &[&str] = &[
        "StateTable",
        "RecordsTable",
        "OutputBucket",
        "DeadLetterQueue",
        "WorkQueue",
    ];
    let t = translated();
    let storage_outputs = [
        outputs::STATE_TABLE,
        outputs::RECORDS_TABLE,
        outputs::QUEUE_URL,
        outputs::DEAD_LETTER_QUEUE_URL,
        outputs::OUTPUT_BUCKET,
    ];
    let body = json!({
        "AWSTemplateFormatVersion": t["AWSTemplateFormatVersion"],
        "Parameters": t["Parameters"],
        "Resources": STORAGE.iter().map(|id| ((*id).to_owned(), t["Resources"][*id].clone()))
            .collect::<serde_json::Map<_, _>>(),
        "Outputs": storage_outputs.iter().map(|id| ((*id).to_owned(), t["Outputs"][*id].clone()))
            .collect::<serde_json::Map<_, _>>(),
    });
    let sdk = emulator().await.sdk_config().await;
    let cfn = aws_sdk_cloudformation::Client::new(&sdk);
    let stack = unique_name("stack");
    cfn.create_stack()
        .stack_name(&stack)
        .template_body(body.to_string())
        .send()
        .await
        .context("create the stack")?;
    let mut status = String::new();
    for _ in 0..50 {
        let described = cfn.describe_stacks().stack_name(&stack).send().await?;
        status = described
            .stacks()
            .first()
            .and_then(|s| s.stack_status())
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default();
        if !status.ends_with("IN_PROGRESS") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    ensure!(status == "CREATE_COMPLETE", "stack status {status}");
    let out = s3_importer_aws::stack::read_outputs(&cfn, &stack).await?;

    let env: HashMap<String, String> = [
        (vars::STATE_TABLE, out.state_table.clone()),
        (vars::QUEUE_URL, out.queue_url.clone()),
        (vars::RECORDS_TABLE, out.records_table.clone()),
        (vars::OUTPUT_BUCKET, out.output_bucket.clone()),
    ]
    .into_iter()
    .map(|(k, v)| {
        Ok((
            k.to_owned(),
            v.with_context(|| format!("no output for {k}"))?,
        ))
    })
    .collect::<Result<_>>()?;
    let config = Config::from_map(&env)?;

    // The queue the stack made is wired to its dead-letter queue as the template says.
    let attributes = s3_importer_tests::sqs_client(&sdk)
        .get_queue_attributes()
        .queue_url(&config.queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
        .send()
        .await?;
    let attributes = attributes.attributes().cloned().unwrap_or_default();
    let visibility = attributes
        .get(&aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout)
        .cloned()
        .unwrap_or_default();
    ensure!(visibility == "5400", "visibility timeout {visibility}");
    let redrive = attributes
        .get(&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)
        .cloned()
        .unwrap_or_default();
    ensure!(
        redrive.contains("\"maxReceiveCount\": 5") || redrive.contains("\"maxReceiveCount\":5"),
        "{redrive}"
    );

    // One connector on a source bucket, one file, one sync, one worker pass.
    let source_bucket = format!("{stack}-src");
    s3_importer_tests::create_bucket(&sdk, &source_bucket).await?;
    s3_importer_tests::s3_client(&sdk)
        .put_object()
        .bucket(&source_bucket)
        .key("in/a.csv")
        .body(b"id,qty\n1,2\n2,x\n".to_vec().into())
        .send()
        .await?;
    let clock = Arc::new(FixedClock::new());
    let state = s3_importer_aws::state::DynamoStateStore::new(
        dynamodb_client(&sdk),
        config.state_table.clone(),
    );
    let toml = s3_importer_tests::deployment::TEMPLATE;
    let template = Template::from_toml(toml)?;
    state
        .put_template(&template.name, toml, &template, clock.now())
        .await?;
    let connector = dynamodb_connector(
        format!("c-{:016x}", 0x5eed_u64),
        format!("{stack}-c"),
        &source_bucket,
        "in/",
        &template.name,
        &config.records_table,
        clock.now(),
    );
    state.create_connector(&connector).await?;
    let as_clock: Arc<dyn Clock> = clock.clone();
    let lister = Lister::from_config(&config, &sdk, as_clock.clone());
    let worker = Worker::from_config(&config, &sdk, as_clock);
    let run = sync_connector(&lister, &connector.name, "stack-lister").await?;
    ensure!(run.enqueued == 1, "enqueued {}", run.enqueued);
    let consumer = s3_importer_aws::consumer::SqsConsumer::new(
        s3_importer_tests::sqs_client(&sdk),
        config.queue_url.clone(),
    );
    let messages = consumer.receive(10, 0).await?;
    ensure!(messages.len() == 1, "{} messages", messages.len());
    let event = s3_importer_worker::sqs_event(&messages, None)?;
    let answer = s3_importer_worker::handle(&worker, event, None, "stack-worker").await;
    ensure!(answer.batch_item_failures.is_empty(), "{answer:?}");
    let entries = state.list_files(&connector.id, None).await?;
    ensure!(
        entries.len() == 1 && entries[0].status == s3_importer_core::sync::FileStatus::Imported,
        "{entries:#?}"
    );
    let items = dynamodb_client(&sdk)
        .scan()
        .table_name(&config.records_table)
        .send()
        .await?;
    ensure!(
        items.count() == 1,
        "one good row in the stack's records table"
    );
    Ok(())
}
