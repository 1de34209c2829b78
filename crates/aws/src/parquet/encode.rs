//! From validated JSON rows to typed column values: one row group's worth, held column by column.
//!
//! Rows come from the validator, so each value already has its template type's JSON form (an integer is a
//! JSON number, a decimal a string of digits with the declared scale, a date `YYYY-MM-DD`, a timestamp RFC
//! 3339); the conversions here are exact and still refuse anything else, naming the record and column.

use chrono::{DateTime, NaiveDate};
use parquet::data_type::{ByteArray, FixedLenByteArray};
use serde_json::{Map, Value};

use super::schema::{decimal_bytes, ColumnKind, OutputSchema};

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

/// One value, converted.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Null,
    Bool(bool),
    I32(i32),
    I64(i64),
    Bytes(Vec<u8>),
    Fixed(Vec<u8>),
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
    /// BYTE_ARRAY (text, JSON).
    Bytes(Vec<ByteArray>),
    /// FIXED_LEN_BYTE_ARRAY (decimals over 18 digits).
    Fixed(Vec<FixedLenByteArray>),
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
    bytes: usize,
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

impl RowGroupBuffer {
    /// An empty row group of `schema`'s columns.
    pub fn new(schema: OutputSchema) -> Self {
        let columns = schema
            .columns
            .iter()
            .map(|c| ColumnBuffer {
                values: match c.kind {
                    ColumnKind::Text | ColumnKind::Json => Values::Bytes(Vec::new()),
                    ColumnKind::Int64 | ColumnKind::Timestamp => Values::I64(Vec::new()),
                    ColumnKind::Boolean => Values::Bool(Vec::new()),
                    ColumnKind::Date => Values::I32(Vec::new()),
                    ColumnKind::Decimal { precision, .. } => match precision {
                        ..=9 => Values::I32(Vec::new()),
                        10..=18 => Values::I64(Vec::new()),
                        _ => Values::Fixed(Vec::new()),
                    },
                },
                levels: Vec::new(),
                required: c.required,
            })
            .collect();
        Self {
            schema,
            columns,
            rows: 0,
            bytes: 0,
        }
    }

    /// Rows held.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// About how many bytes the values take (uncompressed): what bounds a row group.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The columns, in schema order.
    pub fn columns(&self) -> &[ColumnBuffer] {
        &self.columns
    }

    /// Empties the row group, keeping its memory.
    pub fn clear(&mut self) {
        for c in &mut self.columns {
            match &mut c.values {
                Values::Bool(v) => v.clear(),
                Values::I32(v) => v.clear(),
                Values::I64(v) => v.clear(),
                Values::Bytes(v) => v.clear(),
                Values::Fixed(v) => v.clear(),
            }
            c.levels.clear();
        }
        self.rows = 0;
        self.bytes = 0;
    }

    /// Appends one row (a JSON object) with its record number; nothing is appended when a value is refused.
    pub fn push(
        &mut self,
        row: &[u8],
        record: u64,
        lineage: &FileLineage,
    ) -> Result<(), ValueError> {
        let fail = |column: &str, reason: String| ValueError {
            record,
            column: column.to_owned(),
            reason,
        };
        let mut object: Map<String, Value> = serde_json::from_slice(row)
            .map_err(|e| fail("row", format!("not a JSON object: {e}")))?;
        let mut cells = Vec::with_capacity(self.schema.columns.len());
        for column in &self.schema.columns[..self.schema.fields] {
            let value = object.remove(&column.name).unwrap_or(Value::Null);
            let cell = cell(column.kind, value).map_err(|reason| fail(&column.name, reason))?;
            if column.required && cell == Cell::Null {
                return Err(fail(&column.name, "a required field is missing".into()));
            }
            cells.push(cell);
        }
        let extra = if object.is_empty() {
            Cell::Null
        } else {
            Cell::Bytes(Value::Object(object).to_string().into_bytes())
        };
        cells.extend([
            Cell::Bytes(lineage.source_key.as_bytes().to_vec()),
            Cell::Bytes(lineage.source_etag.as_bytes().to_vec()),
            Cell::I64(lineage.last_modified_micros),
            Cell::I64(i64::try_from(record).unwrap_or(i64::MAX)),
            Cell::I64(lineage.imported_at_micros),
            extra,
        ]);
        for (column, cell) in self.columns.iter_mut().zip(cells) {
            self.bytes += column.push(cell);
        }
        self.rows += 1;
        Ok(())
    }
}

impl ColumnBuffer {
    /// Appends a converted value (of this column's physical type); returns about how many bytes it takes.
    fn push(&mut self, cell: Cell) -> usize {
        let present = cell != Cell::Null;
        if !self.required {
            self.levels.push(i16::from(present));
        }
        let size = match (&mut self.values, cell) {
            (_, Cell::Null) => 0,
            (Values::Bool(v), Cell::Bool(b)) => {
                v.push(b);
                1
            }
            (Values::I32(v), Cell::I32(n)) => {
                v.push(n);
                4
            }
            (Values::I64(v), Cell::I64(n)) => {
                v.push(n);
                8
            }
            (Values::Bytes(v), Cell::Bytes(b)) => {
                let n = b.len() + 4;
                v.push(ByteArray::from(b));
                n
            }
            (Values::Fixed(v), Cell::Fixed(b)) => {
                let n = b.len();
                v.push(FixedLenByteArray::from(b));
                n
            }
            // `cell` converts by the same `ColumnKind` that chose the buffer: no other pair is built.
            _ => 0,
        };
        size + 2
    }
}

/// Converts one JSON value to its column's physical value.
fn cell(kind: ColumnKind, value: Value) -> Result<Cell, String> {
    if value.is_null() {
        return Ok(Cell::Null);
    }
    let text = |value: &Value| -> Result<String, String> {
        value
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("expected a JSON string, found {}", json_kind(value)))
    };
    Ok(match kind {
        ColumnKind::Text => Cell::Bytes(text(&value)?.into_bytes()),
        ColumnKind::Json => Cell::Bytes(value.to_string().into_bytes()),
        ColumnKind::Int64 => Cell::I64(
            value
                .as_i64()
                .ok_or_else(|| format!("expected a 64-bit integer, found {}", json_kind(&value)))?,
        ),
        ColumnKind::Boolean => Cell::Bool(
            value
                .as_bool()
                .ok_or_else(|| format!("expected a boolean, found {}", json_kind(&value)))?,
        ),
        ColumnKind::Date => Cell::I32(date_days(&text(&value)?)?),
        ColumnKind::Timestamp => Cell::I64(timestamp_micros(&text(&value)?)?),
        ColumnKind::Decimal { precision, scale } => {
            // A decimal arrives as a string; a JSON number (a row written by hand) is read from its text.
            let digits = match &value {
                Value::Number(n) => n.to_string(),
                other => text(other)?,
            };
            let unscaled = decimal_unscaled(&digits, precision, scale)?;
            match precision {
                ..=9 => Cell::I32(i32::try_from(unscaled).map_err(|e| e.to_string())?),
                10..=18 => Cell::I64(i64::try_from(unscaled).map_err(|e| e.to_string())?),
                _ => Cell::Fixed(decimal_fixed(unscaled, decimal_bytes(precision))),
            }
        }
    })
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date.
pub fn date_days(text: &str) -> Result<i32, String> {
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|e| format!("expected a date YYYY-MM-DD: {e}"))?;
    let days = date.signed_duration_since(NaiveDate::default()).num_days();
    i32::try_from(days).map_err(|e| e.to_string())
}

/// Microseconds since the epoch (UTC) of an RFC 3339 timestamp, any offset; digits past the microsecond are
/// dropped (towards the past).
pub fn timestamp_micros(text: &str) -> Result<i64, String> {
    let at = DateTime::parse_from_rfc3339(text)
        .map_err(|e| format!("expected an RFC 3339 timestamp: {e}"))?;
    let secs = at.timestamp();
    let micros = i64::from(at.timestamp_subsec_micros());
    secs.checked_mul(1_000_000)
        .and_then(|s| s.checked_add(micros))
        .ok_or_else(|| "timestamp out of range".to_owned())
}

/// The unscaled integer of a decimal (`-12.5` at scale 2 is `-1250`): exact, refusing more than `precision`
/// digits or non-zero digits past `scale`.
pub fn decimal_unscaled(text: &str, precision: u32, scale: u32) -> Result<i128, String> {
    let bad = || format!("expected a decimal of precision {precision} and scale {scale}");
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let (int, frac) = rest.split_once('.').unwrap_or((rest, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return Err(bad());
    }
    let scale = scale as usize;
    let (kept, dropped) = frac.split_at(frac.len().min(scale));
    if dropped.bytes().any(|b| b != b'0') {
        return Err(bad());
    }
    let int = int.trim_start_matches('0');
    if int.len() + scale > precision as usize {
        return Err(bad());
    }
    let mut unscaled: i128 = 0;
    let digits = int
        .bytes()
        .chain(kept.bytes())
        .chain(std::iter::repeat_n(b'0', scale - kept.len()));
    for d in digits {
        // At most 38 digits: below i128::MAX (about 1.7e38).
        unscaled = unscaled * 10 + i128::from(d - b'0');
    }
    Ok(if negative { -unscaled } else { unscaled })
}

/// The last `bytes` bytes of `value`'s big-endian two's complement (a FIXED_LEN_BYTE_ARRAY decimal).
pub fn decimal_fixed(value: i128, bytes: usize) -> Vec<u8> {
    let be = value.to_be_bytes();
    be[be.len() - bytes.min(be.len())..].to_vec()
}

#[cfg(test)]
#[path = "encode_tests.rs"]
mod tests;
