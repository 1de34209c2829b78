//! What the benchmarks share: their data ([`data`]) and how a child process measures itself ([`process`]).

pub mod data;
#[cfg(target_os = "linux")]
pub mod process;
