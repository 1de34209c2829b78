//! The capability traits the lister and worker use. Each has an in-memory adapter ([`super::memory`]) and an
//! AWS adapter (`s3-importer-aws`), checked by one contract suite per port against both
//! (`docs/architecture.md`, "Ports and adapters").

mod destination;
mod queue;
mod source;
mod state;

pub use destination::{Destination, FileJob};
pub use queue::{DeadLetter, DeadLetterQueue, FileQueue, QueueError};
pub use source::{ByteRange, ListPage, ObjectBody, ObjectSource, SourceError};
pub use state::*;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
