//! AWS adapters for the s3-importer ports.
//!
//! | port | adapter | AWS |
//! |---|---|---|
//! | `ObjectSource` | [`S3Source`] | S3 ListObjectsV2 / GetObject, in the source bucket's region, via `sts:AssumeRole` for cross-account sources |
//! | `FileQueue` | [`SqsQueue`] | SQS SendMessageBatch |
//! | `Destination` | [`AwsDestination`] | DynamoDB PutItem (records table) or S3 multipart upload (JSONL, Parquet), and the S3 error report |
//!
//! Clients come from [`config::load_sdk_config`] (the standard AWS environment). SDK types stop here: the
//! ports speak the core crate's types, and SDK errors are classified in [`error`].
#![warn(missing_docs)]

pub mod config;
pub mod destination;
pub mod error;
pub mod parquet;
pub mod queue;
pub mod records;
pub mod s3_writer;
pub mod secrets;
pub mod source;
pub mod state;
pub mod sts;

pub use config::{load_sdk_config, s3_client};
pub use destination::AwsDestination;
pub use queue::SqsQueue;
pub use records::create_records_table;
pub use source::S3Source;
pub mod consumer;
pub mod provision;
#[cfg(feature = "stack")]
pub mod stack;
pub mod telemetry;
#[cfg(test)]
mod test_support;
pub mod verify;
