//! The local-file output of `s3-importer import-file`: a JSON Lines file sink ([`JsonlFileSink`]) that writes
//! around the page cache where it can (direct I/O). Only the command line writes local files, so this is not in
//! the core crate; it is a crate of its own, next to the CLI, so that the pipeline benchmark
//! (`benches/pipeline.rs`, `make bench`) writes its output as the command does without building the AWS SDK.
//!
//! It also holds what the benchmarks share ([`mod@bench`]): the deterministic data they import and how a child
//! process measures itself.
#![warn(missing_docs)]

pub mod bench;
mod direct_io;
mod jsonl_file;

pub use jsonl_file::JsonlFileSink;
