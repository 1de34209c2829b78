//! SDK configuration from the standard AWS environment, and clients built from it.
//!
//! | variable | effect |
//! |---|---|
//! | `AWS_REGION` / `AWS_DEFAULT_REGION` | region of the clients (the Lambda's region; source buckets use their own) |
//! | `AWS_ENDPOINT_URL` | one endpoint for every service (a local emulator); S3 then uses path-style addressing |
//! | `AWS_PROFILE` | named profile for credentials and region (CLI use) |
//! | `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` | static credentials |
//!
//! Everything else of the default chain (SSO, credential_process, container and instance metadata) applies.

use aws_config::{BehaviorVersion, SdkConfig};

/// Loads the SDK configuration from the standard AWS environment (see the module docs).
pub async fn load_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// An S3 client for `sdk_config`. With an endpoint override (a local emulator) it uses path-style addressing:
/// virtual-hosted style would send requests to `BUCKET.127.0.0.1`, which does not resolve. Real AWS keeps
/// virtual-hosted style.
pub fn s3_client(sdk_config: &SdkConfig) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(s3_config_builder(sdk_config).build())
}

/// The S3 configuration builder behind [`s3_client`], for callers that change the region or credentials.
pub fn s3_config_builder(sdk_config: &SdkConfig) -> aws_sdk_s3::config::Builder {
    aws_sdk_s3::config::Builder::from(sdk_config).force_path_style(use_path_style(sdk_config))
}

/// Path-style addressing exactly when an endpoint override is configured (`AWS_ENDPOINT_URL`).
pub fn use_path_style(sdk_config: &SdkConfig) -> bool {
    sdk_config.endpoint_url().is_some()
}

/// An SQS client for `sdk_config`.
pub fn sqs_client(sdk_config: &SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(sdk_config)
}

/// A DynamoDB client for `sdk_config`.
pub fn dynamodb_client(sdk_config: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(sdk_config)
}

/// A Secrets Manager client for `sdk_config`.
pub fn secretsmanager_client(sdk_config: &SdkConfig) -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(sdk_config)
}

/// An STS client for `sdk_config`.
pub fn sts_client(sdk_config: &SdkConfig) -> aws_sdk_sts::Client {
    aws_sdk_sts::Client::new(sdk_config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_config::Region;

    #[test]
    fn path_style_only_with_an_endpoint_override() {
        let emulator = SdkConfig::builder()
            .region(Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:5000")
            .behavior_version(BehaviorVersion::latest())
            .build();
        assert!(use_path_style(&emulator));

        let aws = SdkConfig::builder()
            .region(Region::new("us-east-1"))
            .behavior_version(BehaviorVersion::latest())
            .build();
        assert!(!use_path_style(&aws));
    }
}
