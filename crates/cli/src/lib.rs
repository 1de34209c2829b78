//! The local-file output of `s3-importer import-file`: a JSON Lines file sink ([`JsonlFileSink`]) that writes
//! around the page cache where it can. A library of its own so that the pipeline benchmark
//! (`benches/pipeline.rs`) writes its output as the command does.
#![warn(missing_docs)]

mod direct_io;
mod jsonl_file;

pub use jsonl_file::JsonlFileSink;
