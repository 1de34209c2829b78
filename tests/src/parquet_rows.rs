//! Reads a Parquet object back into JSON rows with the `parquet` crate's record reader, for the checks of
//! the Parquet output (the end-to-end tests also read it with DuckDB, an independent reader).

use anyhow::{anyhow, bail, Result};
use parquet::file::reader::FileReader;
use parquet::file::serialized_reader::SerializedFileReader;
use parquet::record::Field;

/// The rows of a Parquet file, each a JSON object of every column: strings as strings, integers as numbers,
/// timestamps as microseconds and dates as days (numbers), JSON columns as their text, nulls as null.
pub fn parquet_rows(bytes: Vec<u8>) -> Result<Vec<serde_json::Map<String, serde_json::Value>>> {
    let reader = SerializedFileReader::new(bytes::Bytes::from(bytes))?;
    let mut rows = Vec::new();
    for row in reader.get_row_iter(None)? {
        let row = row?;
        let mut object = serde_json::Map::new();
        for (name, field) in row.get_column_iter() {
            object.insert(name.clone(), json_of(field)?);
        }
        rows.push(object);
    }
    Ok(rows)
}

fn json_of(field: &Field) -> Result<serde_json::Value> {
    use serde_json::Value;
    Ok(match field {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::Bool(*b),
        Field::Int(n) | Field::Date(n) => Value::from(*n),
        Field::Long(n) | Field::TimestampMicros(n) => Value::from(*n),
        Field::Str(s) => Value::String(s.clone()),
        Field::Bytes(b) => Value::String(
            b.as_utf8()
                .map_err(|e| anyhow!("a byte array column is not UTF-8: {e}"))?
                .to_owned(),
        ),
        Field::Decimal(d) => Value::String(decimal_text(d.data(), d.scale())),
        other => bail!("the test reader does not convert {other:?}"),
    })
}

/// A decimal's big-endian two's complement unscaled bytes at `scale` as text (`-1.50`).
fn decimal_text(bytes: &[u8], scale: i32) -> String {
    let negative = bytes.first().is_some_and(|b| b & 0x80 != 0);
    let mut unscaled: i128 = if negative { -1 } else { 0 };
    for &b in bytes {
        unscaled = (unscaled << 8) | i128::from(b);
    }
    let digits = unscaled.unsigned_abs().to_string();
    let scale = usize::try_from(scale).unwrap_or(0);
    let digits = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = digits.split_at(digits.len() - scale);
    let sign = if unscaled < 0 { "-" } else { "" };
    if scale == 0 {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}
