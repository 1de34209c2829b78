//! Limits that make hostile input harmless.

use serde::{Deserialize, Serialize};

/// Bounds applied while reading a file. Every limit is checked while streaming, before memory is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest record (a CSV record, a JSON Lines line, a JSON array element), in bytes. A larger record is
    /// a row error: it is skipped without being buffered and the file continues.
    pub max_record_bytes: usize,
    /// Deepest nesting of JSON arrays/objects inside one record. Deeper is a row error.
    pub max_json_depth: usize,
    /// Most fields in one CSV/TSV record (and in the header). More is a row error (a file error in the header).
    pub max_columns: usize,
    /// Most bytes a compressed file may expand to. Past it the file fails (gzip bomb).
    pub max_decompressed_bytes: u64,
}

impl Limits {
    /// 1 MiB.
    pub const DEFAULT_MAX_RECORD_BYTES: usize = 1 << 20;
    /// 64 levels.
    pub const DEFAULT_MAX_JSON_DEPTH: usize = 64;
    /// 2048 columns.
    pub const DEFAULT_MAX_COLUMNS: usize = 2048;
    /// 16 GiB: a 1 GiB gzip file of ordinary CSV expands 5-10 times; a bomb expands 1000 times.
    pub const DEFAULT_MAX_DECOMPRESSED_BYTES: u64 = 16 << 30;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_record_bytes: Self::DEFAULT_MAX_RECORD_BYTES,
            max_json_depth: Self::DEFAULT_MAX_JSON_DEPTH,
            max_columns: Self::DEFAULT_MAX_COLUMNS,
            max_decompressed_bytes: Self::DEFAULT_MAX_DECOMPRESSED_BYTES,
        }
    }
}
