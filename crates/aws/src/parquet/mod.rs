//! Parquet output in S3: one Parquet object per source file version, typed from the template, written as a
//! stream through one multipart upload and visible only when the file is finished.
//!
//! **Memory.** Rows are read straight into typed column buffers ([`encode::RowGroupBuffer`], no allocation
//! per row or value); when the buffers hold the row group size ([`DEFAULT_ROW_GROUP_BYTES`] by default) they
//! are encoded (zstd) as one row group and its bytes appended to the upload
//! ([`crate::s3_writer::S3ObjectWriter`]). Memory is one row group's buffers, its encoded bytes and one part,
//! whatever the file's size.
//!
//! **Visible once, complete.** The object's key is a function of the file version ([`layout`]); the upload
//! is completed only by `finish`, so a reader never sees part of a file, a retried file replaces the object
//! whole, and `abort` aborts the upload.
//!
//! **Pieces.** A Parquet file cannot simply be carried on as bytes: its footer lists every row group's
//! offsets. The design keeps the byte stream anyway, and carries the footer beside it:
//! - every piece appends whole row groups to the *same* multipart upload; `suspend` ends the piece on a row
//!   group boundary and suspends the upload as the JSONL output does (parts so far, and a carry object with
//!   the bytes short of a part);
//! - the row groups written so far (their metadata, offsets in the final object) are saved as a Parquet
//!   footer in a staging object `footer-<piece>` named in the checkpoint; the next piece reads it back and
//!   shifts its own row groups' offsets by where its bytes start ([`file::PieceWriter`]);
//! - the last piece writes the footer of all row groups, then completes the upload, then deletes the
//!   staging objects.
//!
//! Nothing is copied at the end, and no piece's output is read back. A piece redone after a crash starts
//! from the last checkpoint: the same part numbers and the same staging keys are written again, and only
//! what the checkpoint lists counts, so the object is exactly one pass's rows. A piece redelivered after the
//! object was completed finds its staging objects gone and the object there, and writes nothing.

pub mod athena;
mod columns;
mod convert;
pub mod encode;
pub mod file;
pub mod json_row;
pub mod layout;
pub mod local;
pub mod schema;
pub mod sink;

pub use local::ParquetFileSink;
pub use schema::OutputSchema;
pub use sink::ParquetSink;

/// Row group size by default: bytes the column buffers hold (values, offsets, levels) before a row group is
/// written. 64 MiB is about 300,000 rows and 8 MiB of zstd for the bench's orders: above the 122,880 rows
/// DuckDB writes per row group, so engines still read row groups in parallel and skip them by statistics,
/// while a worker's peak stays near 100 MiB.
pub const DEFAULT_ROW_GROUP_BYTES: usize = 64 * 1024 * 1024;

/// Why rows cannot be written as Parquet.
#[derive(Debug, thiserror::Error)]
pub enum ParquetError {
    /// A template field Parquet cannot hold as declared.
    #[error("field {field}: {reason}")]
    Field {
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },
    /// The schema could not be built.
    #[error("Parquet schema: {0}")]
    Schema(String),
    /// A row's value does not fit its column.
    #[error(transparent)]
    Value(#[from] encode::ValueError),
    /// The encoder failed.
    #[error("encode Parquet: {0}")]
    Encode(#[from] parquet::errors::ParquetError),
    /// The checkpoint of a piece is not one this sink wrote.
    #[error("read the checkpoint: {0}")]
    Checkpoint(#[from] serde_json::Error),
}
