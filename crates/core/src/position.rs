//! Where a record sits in its file.

use serde::{Deserialize, Serialize};

/// The position of a record in its (decoded) file. Every row and every error carries one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Position {
    /// 1-based record number among data records (the CSV header is not counted).
    pub record: u64,
    /// 1-based line on which the record starts.
    pub line: u64,
    /// 0-based byte offset of the record's first byte in the decoded stream.
    pub byte: u64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "record {}, line {}, byte {}",
            self.record, self.line, self.byte
        )
    }
}
