//! Connectors, file versions, the ledger, and the rules that decide what to import (`docs/architecture.md`).
//!
//! Everything here is AWS-free: the lister and worker algorithms talk to S3, SQS and DynamoDB through the
//! [`ports`] traits, which have in-memory adapters ([`memory`]) for fast tests and real adapters in the
//! `s3-importer-aws` crate.

pub mod claim;
pub mod clock;
#[cfg(feature = "contract-tests")]
pub mod contract;
pub mod events;
pub mod lister;
pub mod memory;
pub mod model;
pub mod ports;
pub mod read_ahead;
pub mod reconcile;
pub mod redo;
pub mod rules;
mod validate_first;
pub mod versions;
pub mod worker;

pub use clock::{Clock, FixedClock, SystemClock};
pub use model::*;
