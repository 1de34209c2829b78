//! From validated JSON rows to typed column values: one row group's worth, held column by column.
//!
//! A row is read key by key ([`json_row`]) straight into the column buffers: text goes end to end into one
//! byte buffer per column, numbers into typed vectors, and the lineage columns that are the same on every
//! row of a file are held once. No row costs an allocation, and [`RowGroupBuffer::bytes`] is what the
//! buffers hold: what bounds a row group.

use parquet::data_type::ByteArray;
use serde_json::{Map, Value};

use super::convert::{cell, Cell};
pub use super::convert::{date_days, decimal_fixed, decimal_unscaled, timestamp_micros};
use super::json_row::{self, RowError};
use super::schema::{decimal_bytes, ColumnKind, OutputSchema, LINEAGE};

/// What every row of one file shares (the lineage columns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileLineage {
    /// Source key.
    pub source_key: String,
    /// Source ETag (quoted).
    pub source_etag: String,
    /// Source LastModified, µs since the epoch.
    pub last_modified_micros: i64,
    /// Import time, µs since the epoch.
    pub imported_at_micros: i64,
}

/// The non-null values of one column (the physical type's buffer).
#[derive(Debug, Clone)]
pub enum Values {
    /// BOOLEAN.
    Bool(Vec<bool>),
    /// INT32 (dates, small decimals).
    I32(Vec<i32>),
    /// INT64 (integers, timestamps, decimals up to 18 digits).
    I64(Vec<i64>),
    /// BYTE_ARRAY (text, JSON): the values end to end in `data`, value `i` ending at `ends[i]`.
    Bytes {
        /// The values' bytes.
        data: Vec<u8>,
        /// Where each value ends in `data`.
        ends: Vec<usize>,
    },
    /// FIXED_LEN_BYTE_ARRAY (decimals over 18 digits): values of `width` bytes end to end.
    Fixed {
        /// The values' bytes.
        data: Vec<u8>,
        /// Bytes per value.
        width: usize,
    },
    /// The same BYTE_ARRAY on every row (a lineage column).
    SameBytes(ByteArray),
    /// The same INT64 on every row (a lineage column).
    SameI64(i64),
}

/// One column of a row group being built.
#[derive(Debug, Clone)]
pub struct ColumnBuffer {
    /// The non-null values.
    pub values: Values,
    /// Definition levels (1 present, 0 null) for an OPTIONAL column; empty for a REQUIRED one.
    pub levels: Vec<i16>,
    required: bool,
}

/// The rows of one row group, column by column.
#[derive(Debug, Clone)]
pub struct RowGroupBuffer {
    schema: OutputSchema,
    columns: Vec<ColumnBuffer>,
    rows: usize,
    /// Which template fields the row being read has set.
    seen: Vec<bool>,
}

/// A row that does not fit its column (a bug upstream, or a row the validator did not write).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {record}: {column}: {reason}")]
pub struct ValueError {
    /// Record number in the source file.
    pub record: u64,
    /// Column name (`row` for the row as a whole).
    pub column: String,
    /// What is wrong (never the value).
    pub reason: String,
}

/// Columns after the template's fields: `_source_key`, `_source_etag`, `_source_last_modified`,
/// `_source_row`, `_imported_at`, `_extra` ([`LINEAGE`]).
const SOURCE_ROW: usize = 3;
const EXTRA: usize = 5;

impl RowGroupBuffer {
    /// An empty row group of `schema`'s columns, for the rows of the file `lineage` describes.
    pub fn new(schema: OutputSchema, lineage: &FileLineage) -> Self {
        let mut columns: Vec<ColumnBuffer> = schema.columns[..schema.fields]
            .iter()
            .map(|c| ColumnBuffer::new(c.kind, c.required))
            .collect();
        debug_assert_eq!(schema.columns.len(), schema.fields + LINEAGE.len());
        let same = |values| ColumnBuffer {
            values,
            levels: Vec::new(),
            required: true,
        };
        columns.extend([
            same(Values::SameBytes(
                lineage.source_key.as_bytes().to_vec().into(),
            )),
            same(Values::SameBytes(
                lineage.source_etag.as_bytes().to_vec().into(),
            )),
            same(Values::SameI64(lineage.last_modified_micros)),
            ColumnBuffer::new(ColumnKind::Int64, true),
            same(Values::SameI64(lineage.imported_at_micros)),
            ColumnBuffer::new(ColumnKind::Json, false),
        ]);
        let seen = vec![false; schema.fields];
        Self {
            schema,
            columns,
            rows: 0,
            seen,
        }
    }

    /// Rows held.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Bytes the column buffers hold: what bounds a row group.
    pub fn bytes(&self) -> usize {
        self.columns.iter().map(ColumnBuffer::bytes).sum()
    }

    /// The columns, in schema order.
    pub fn columns(&self) -> &[ColumnBuffer] {
        &self.columns
    }

    /// The columns, in schema order, to hand their buffers to the writer.
    pub fn columns_mut(&mut self) -> &mut [ColumnBuffer] {
        &mut self.columns
    }

    /// Empties the row group, keeping its memory.
    pub fn clear(&mut self) {
        for c in &mut self.columns {
            match &mut c.values {
                Values::Bool(v) => v.clear(),
                Values::I32(v) => v.clear(),
                Values::I64(v) => v.clear(),
                Values::Bytes { data, ends } => {
                    data.clear();
                    ends.clear();
                }
                Values::Fixed { data, .. } => data.clear(),
                Values::SameBytes(_) | Values::SameI64(_) => {}
            }
            c.levels.clear();
        }
        self.rows = 0;
    }

    /// Appends one row (a JSON object) with its record number; nothing is appended when a value is refused.
    pub fn push(&mut self, row: &[u8], record: u64) -> Result<(), ValueError> {
        let fail = |column: &str, reason: String| ValueError {
            record,
            column: column.to_owned(),
            reason,
        };
        let fields = self.schema.fields;
        self.seen.fill(false);
        let mut extra: Option<Map<String, Value>> = None;
        // The validator writes the fields in template order: the next key is most likely the next field.
        let mut next = 0;
        let read = json_row::for_each_entry(row, |key, value| {
            let columns = &self.schema.columns[..fields];
            let index = match columns.get(next) {
                Some(c) if c.name == key => Some(next),
                _ => columns.iter().position(|c| c.name == key),
            };
            let Some(i) = index else {
                extra
                    .get_or_insert_with(Map::new)
                    .insert(key.into_owned(), value.into_value());
                return Ok(());
            };
            next = i + 1;
            let kind = columns[i].kind;
            let converted = cell(kind, &value).map_err(|reason| (i, reason))?;
            // A key given twice: the last one counts, as in a JSON map.
            if std::mem::take(&mut self.seen[i]) {
                self.columns[i].pop();
            }
            if converted != Cell::Null {
                self.columns[i].push(converted);
                self.seen[i] = true;
            }
            Ok(())
        });
        let refused = match read {
            Ok(()) => self.schema.columns[..fields]
                .iter()
                .zip(&self.seen)
                .position(|(c, seen)| c.required && !seen)
                .map(|i| {
                    fail(
                        &self.schema.columns[i].name,
                        "a required field is missing".into(),
                    )
                }),
            Err(RowError::Json(e)) => Some(fail("row", format!("not a JSON object: {e}"))),
            Err(RowError::Entry((i, reason))) => Some(fail(&self.schema.columns[i].name, reason)),
        };
        if let Some(err) = refused {
            for (column, seen) in self.columns.iter_mut().zip(&self.seen) {
                if *seen {
                    column.pop();
                }
            }
            return Err(err);
        }
        for (column, seen) in self.columns.iter_mut().zip(&self.seen) {
            if !seen {
                column.push(Cell::Null);
            }
        }
        self.columns[fields + SOURCE_ROW]
            .push(Cell::I64(i64::try_from(record).unwrap_or(i64::MAX)));
        let extra = extra.map(|object| Value::Object(object).to_string());
        self.columns[fields + EXTRA].push(extra.as_deref().map_or(Cell::Null, Cell::Text));
        self.rows += 1;
        Ok(())
    }
}

impl ColumnBuffer {
    /// An empty column of `kind`.
    fn new(kind: ColumnKind, required: bool) -> Self {
        let values = match kind {
            ColumnKind::Text | ColumnKind::Json => Values::Bytes {
                data: Vec::new(),
                ends: Vec::new(),
            },
            ColumnKind::Int64 | ColumnKind::Timestamp => Values::I64(Vec::new()),
            ColumnKind::Boolean => Values::Bool(Vec::new()),
            ColumnKind::Date => Values::I32(Vec::new()),
            ColumnKind::Decimal { precision, .. } => match precision {
                ..=9 => Values::I32(Vec::new()),
                10..=18 => Values::I64(Vec::new()),
                _ => Values::Fixed {
                    data: Vec::new(),
                    width: decimal_bytes(precision),
                },
            },
        };
        Self {
            values,
            levels: Vec::new(),
            required,
        }
    }

    /// Whether the column is REQUIRED (no definition levels).
    pub fn required(&self) -> bool {
        self.required
    }

    /// Bytes the buffers hold.
    fn bytes(&self) -> usize {
        let values = match &self.values {
            Values::Bool(v) => v.len(),
            Values::I32(v) => v.len() * 4,
            Values::I64(v) => v.len() * 8,
            Values::Bytes { data, ends } => data.len() + ends.len() * 8,
            Values::Fixed { data, .. } => data.len(),
            Values::SameBytes(_) | Values::SameI64(_) => 0,
        };
        values + self.levels.len() * 2
    }

    /// Appends a converted value (of this column's physical type; `Cell::Null` for no value).
    fn push(&mut self, cell: Cell<'_>) {
        if !self.required {
            self.levels.push(i16::from(cell != Cell::Null));
        }
        match (&mut self.values, cell) {
            (Values::Bool(v), Cell::Bool(b)) => v.push(b),
            (Values::I32(v), Cell::I32(n)) => v.push(n),
            (Values::I64(v), Cell::I64(n)) => v.push(n),
            (Values::Bytes { data, ends }, Cell::Text(s)) => {
                data.extend_from_slice(s.as_bytes());
                ends.push(data.len());
            }
            (Values::Bytes { data, ends }, Cell::Owned(s)) => {
                data.extend_from_slice(s.as_bytes());
                ends.push(data.len());
            }
            (Values::Fixed { data, width }, Cell::Wide(n)) => {
                data.extend_from_slice(super::convert::decimal_be(&n.to_be_bytes(), *width));
            }
            // `cell` converts by the same `ColumnKind` that chose the buffer: no other pair is built
            // (and `Null` has no value to hold).
            _ => {}
        }
    }

    /// Removes the last row's entry (the last value, and its level for an OPTIONAL column).
    fn pop(&mut self) {
        if !self.required && self.levels.pop() != Some(1) {
            return;
        }
        match &mut self.values {
            Values::Bool(v) => {
                v.pop();
            }
            Values::I32(v) => {
                v.pop();
            }
            Values::I64(v) => {
                v.pop();
            }
            Values::Bytes { data, ends } => {
                ends.pop();
                data.truncate(ends.last().copied().unwrap_or(0));
            }
            Values::Fixed { data, width } => data.truncate(data.len().saturating_sub(*width)),
            Values::SameBytes(_) | Values::SameI64(_) => {}
        }
    }
}

#[cfg(test)]
#[path = "encode_tests.rs"]
mod tests;
