//! In-memory adapters of the ports: fast, deterministic stand-ins for S3, SQS, DynamoDB and the
//! destinations, used by the lister and worker tests and by previews.
//!
//! They are faithful rather than convenient: each passes its port's contract suite (`sync::contract`, when
//! the `contract-tests` feature is on), as the AWS adapter does. [`MemoryStateStore`] has the same
//! conditional outcomes as the DynamoDB adapter, [`MemoryObjectSource`] pages by 1000 and honours
//! `IfMatch`, [`MemoryQueue`] refuses what SQS refuses, and [`MemoryDestination`] keeps the ordering guard
//! of the DynamoDB records table.
//!
//! | port | adapter | file |
//! |---|---|---|
//! | the state capabilities | [`MemoryStateStore`] | `state.rs` |
//! | `ObjectSource` | [`MemoryObjectSource`] | `source.rs` |
//! | `FileQueue` | [`MemoryQueue`] | `queue.rs` |
//! | `Destination` | [`MemoryDestination`] | `destination.rs` |

mod destination;
mod queue;
mod source;
mod state;

pub use destination::{memory_report_location, primary_key_json, MemoryDestination, StoredRow};
pub use queue::{MemoryQueue, MAX_MESSAGE_BYTES};
pub use source::{memory_etag, MemoryObject, MemoryObjectSource, LIST_PAGE_SIZE};
pub use state::MemoryStateStore;
