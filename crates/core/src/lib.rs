//! The heart of s3-importer, free of AWS: file formats, streaming record readers, data templates, typed
//! validation, the import pipeline and its ports.
//!
//! Data flows as: `AsyncRead` (an S3 body or a local file) → [`read::decode`] (gzip, decompressed-bytes cap)
//! → a [`read::RecordReader`] (CSV/TSV, JSON array, JSON Lines) → [`validate::Validator`] (typed JSON row, or
//! [`RowError`]s) → [`pipeline`] (batches over bounded channels) → a [`sink::RowSink`] and a
//! [`sink::RejectSink`].
#![warn(missing_docs)]

mod bytes;
pub mod config;
pub mod format;
mod json_out;
pub mod limits;
pub mod metrics;
pub mod pace;
pub mod pipeline;
pub mod policy;
pub mod position;
pub mod read;
pub mod row_error;
pub mod sink;
pub mod sync;
pub mod template;
#[cfg(test)]
mod test_rng;
pub mod validate;

pub use format::{Compression, FileFormat, Format};
pub use limits::Limits;
pub use position::Position;
pub use row_error::{ErrorCode, RowError};
