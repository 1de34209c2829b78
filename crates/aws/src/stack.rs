//! The deployment's resource names, read from the outputs of its CloudFormation stack (`DescribeStacks`), so
//! the CLI needs only `--stack NAME`.

use std::collections::HashMap;

use crate::error::AwsCallError;

/// Output names the deployment's stack (`template.yaml`) declares.
pub mod outputs {
    /// DynamoDB state table.
    pub const STATE_TABLE: &str = "StateTableName";
    /// DynamoDB records table.
    pub const RECORDS_TABLE: &str = "RecordsTableName";
    /// SQS work queue URL.
    pub const QUEUE_URL: &str = "QueueUrl";
    /// SQS notification queue URL (S3 events for connectors in `events` mode).
    pub const NOTIFICATION_QUEUE_URL: &str = "NotificationQueueUrl";
    /// SQS dead-letter queue URL.
    pub const DEAD_LETTER_QUEUE_URL: &str = "DeadLetterQueueUrl";
    /// Output bucket.
    pub const OUTPUT_BUCKET: &str = "OutputBucketName";
    /// Lister function name.
    pub const LISTER_FUNCTION: &str = "ListerFunctionName";
    /// Worker function name.
    pub const WORKER_FUNCTION: &str = "WorkerFunctionName";
    /// The lister's execution role ARN (a principal of every source role's trust policy).
    pub const LISTER_ROLE_ARN: &str = "ListerRoleArn";
    /// The worker's execution role ARN (a principal of every source role's trust policy).
    pub const WORKER_ROLE_ARN: &str = "WorkerRoleArn";
    /// The prefix the deployment may assume source roles with.
    pub const SOURCE_ROLE_NAME_PREFIX: &str = "SourceRoleNamePrefix";
}

/// The outputs the CLI uses, each `None` when the stack does not declare it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StackOutputs {
    /// [`outputs::STATE_TABLE`].
    pub state_table: Option<String>,
    /// [`outputs::RECORDS_TABLE`].
    pub records_table: Option<String>,
    /// [`outputs::QUEUE_URL`].
    pub queue_url: Option<String>,
    /// [`outputs::NOTIFICATION_QUEUE_URL`].
    pub notification_queue_url: Option<String>,
    /// [`outputs::DEAD_LETTER_QUEUE_URL`].
    pub dead_letter_queue_url: Option<String>,
    /// [`outputs::OUTPUT_BUCKET`].
    pub output_bucket: Option<String>,
    /// [`outputs::LISTER_FUNCTION`].
    pub lister_function: Option<String>,
    /// [`outputs::WORKER_FUNCTION`].
    pub worker_function: Option<String>,
    /// [`outputs::LISTER_ROLE_ARN`].
    pub lister_role_arn: Option<String>,
    /// [`outputs::WORKER_ROLE_ARN`].
    pub worker_role_arn: Option<String>,
    /// [`outputs::SOURCE_ROLE_NAME_PREFIX`].
    pub source_role_name_prefix: Option<String>,
}

impl StackOutputs {
    /// Picks the known outputs from `(OutputKey, OutputValue)` pairs.
    pub fn from_pairs(pairs: HashMap<String, String>) -> Self {
        let mut pairs = pairs;
        let mut take = |key: &str| pairs.remove(key).filter(|v| !v.is_empty());
        Self {
            state_table: take(outputs::STATE_TABLE),
            records_table: take(outputs::RECORDS_TABLE),
            queue_url: take(outputs::QUEUE_URL),
            notification_queue_url: take(outputs::NOTIFICATION_QUEUE_URL),
            dead_letter_queue_url: take(outputs::DEAD_LETTER_QUEUE_URL),
            output_bucket: take(outputs::OUTPUT_BUCKET),
            lister_function: take(outputs::LISTER_FUNCTION),
            worker_function: take(outputs::WORKER_FUNCTION),
            lister_role_arn: take(outputs::LISTER_ROLE_ARN),
            worker_role_arn: take(outputs::WORKER_ROLE_ARN),
            source_role_name_prefix: take(outputs::SOURCE_ROLE_NAME_PREFIX),
        }
    }
}

/// Reading the stack failed.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    /// No stack by that name in this account and region.
    #[error(
        "stack {stack:?} not found in this account and region: check --stack, --region and --profile \
         (`aws cloudformation list-stacks` lists them)"
    )]
    NotFound {
        /// Stack name.
        stack: String,
    },
    /// The call failed.
    #[error("cannot describe stack {stack:?}: {source}")]
    Call {
        /// Stack name.
        stack: String,
        /// Cause.
        #[source]
        source: AwsCallError,
    },
}

/// Reads the outputs of `stack` (a name or stack id).
pub async fn read_outputs(
    client: &aws_sdk_cloudformation::Client,
    stack: &str,
) -> Result<StackOutputs, StackError> {
    let result = client.describe_stacks().stack_name(stack).send().await;
    let out = match result {
        Ok(out) => out,
        Err(e) => {
            let err = AwsCallError::from_sdk(e);
            // CloudFormation answers a missing stack with ValidationError "Stack with id X does not exist".
            if err.code() == "ValidationError"
                && err.message_or_summary().contains("does not exist")
            {
                return Err(StackError::NotFound {
                    stack: stack.to_owned(),
                });
            }
            return Err(StackError::Call {
                stack: stack.to_owned(),
                source: err,
            });
        }
    };
    let Some(found) = out.stacks().first() else {
        return Err(StackError::NotFound {
            stack: stack.to_owned(),
        });
    };
    let pairs = found
        .outputs()
        .iter()
        .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
        .collect();
    Ok(StackOutputs::from_pairs(pairs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudformation::operation::describe_stacks::{
        DescribeStacksError, DescribeStacksOutput,
    };
    use aws_sdk_cloudformation::types::{Output, Stack, StackStatus};
    use aws_smithy_mocks::{mock, mock_client};

    use crate::test_support::error_meta;

    fn output(key: &str, value: &str) -> Output {
        Output::builder()
            .output_key(key)
            .output_value(value)
            .build()
    }

    #[tokio::test]
    async fn reads_the_known_outputs() {
        let rule = mock!(aws_sdk_cloudformation::Client::describe_stacks)
            .match_requests(|r| r.stack_name() == Some("prod"))
            .then_output(|| {
                DescribeStacksOutput::builder()
                    .stacks(
                        Stack::builder()
                            .stack_name("prod")
                            .stack_status(StackStatus::CreateComplete)
                            .creation_time(aws_smithy_types::DateTime::from_secs(0))
                            .outputs(output("StateTableName", "prod-state"))
                            .outputs(output("QueueUrl", "https://sqs/q"))
                            .outputs(output("ListerRoleArn", "arn:aws:iam::1:role/l"))
                            .outputs(output("SourceRoleNamePrefix", "s3-importer-"))
                            .outputs(output("Unrelated", "x"))
                            .build(),
                    )
                    .build()
            });
        let client = mock_client!(aws_sdk_cloudformation, [&rule]);
        let outputs = read_outputs(&client, "prod").await.unwrap();
        assert_eq!(outputs.state_table.as_deref(), Some("prod-state"));
        assert_eq!(outputs.queue_url.as_deref(), Some("https://sqs/q"));
        assert_eq!(
            outputs.lister_role_arn.as_deref(),
            Some("arn:aws:iam::1:role/l")
        );
        assert_eq!(
            outputs.source_role_name_prefix.as_deref(),
            Some("s3-importer-")
        );
        assert_eq!(outputs.records_table, None);
    }

    #[tokio::test]
    async fn a_missing_stack_says_so() {
        let rule = mock!(aws_sdk_cloudformation::Client::describe_stacks).then_error(|| {
            DescribeStacksError::generic(error_meta(
                "ValidationError",
                "Stack with id nope does not exist",
            ))
        });
        let client = mock_client!(aws_sdk_cloudformation, [&rule]);
        let err = read_outputs(&client, "nope").await.unwrap_err();
        assert!(matches!(err, StackError::NotFound { .. }), "{err}");
    }
}
