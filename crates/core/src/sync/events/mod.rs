//! Event-driven discovery: S3 `ObjectCreated` notifications, in any of the three envelopes AWS delivers them
//! (S3 → SQS, S3 → SNS → SQS, S3 → EventBridge → SQS), routed to the connectors in `events` mode whose bucket
//! and folder they fall in, and claimed through the same ledger claim as listed objects (`claim.rs`), under
//! the same skip rules (`rules.rs`). See `docs/architecture.md`, "Event-driven discovery".

mod consume;
pub mod decode;
pub mod envelope;
#[cfg(test)]
mod samples;
pub mod setup;
#[cfg(test)]
mod tests;

pub use consume::{handle_batch, BatchOutcome, EventReport, EventSettings, InboundMessage};
pub use envelope::{parse_body, Envelope, EventKind, Notice, ObjectEvent, ParseError};
