//! Hands one column buffer to the parquet crate's column writer.
//!
//! Numbers go as they are. Text is handed in batches of [`BATCH`] values, each a slice of the column's one
//! byte buffer (shared, never copied value by value); the lineage constants are one value repeated. A batch
//! of `ByteArray`s is the only memory this adds, whatever the row group's size.

use bytes::Bytes;
use parquet::data_type::{
    BoolType, ByteArray, ByteArrayType, FixedLenByteArray, FixedLenByteArrayType, Int32Type,
    Int64Type,
};
use parquet::file::writer::SerializedColumnWriter;

use super::encode::{ColumnBuffer, Values};
use super::ParquetError;

/// Rows handed to the column writer at a time.
const BATCH: usize = 4096;

/// Writes `column` (of `rows` rows) with `writer`, leaving its byte buffers empty.
pub fn write_column(
    writer: &mut SerializedColumnWriter<'_>,
    column: &mut ColumnBuffer,
    rows: usize,
) -> Result<(), ParquetError> {
    let levels = (!column.required()).then_some(column.levels.as_slice());
    match &mut column.values {
        Values::Bool(v) => {
            writer.typed::<BoolType>().write_batch(v, levels, None)?;
        }
        Values::I32(v) => {
            writer.typed::<Int32Type>().write_batch(v, levels, None)?;
        }
        Values::I64(v) => {
            writer.typed::<Int64Type>().write_batch(v, levels, None)?;
        }
        Values::Bytes { data, ends } => {
            let data = Bytes::from(std::mem::take(data));
            let writer = writer.typed::<ByteArrayType>();
            let mut batch: Vec<ByteArray> = Vec::with_capacity(BATCH.min(rows));
            let mut start = 0;
            let mut ends = ends.iter();
            in_batches(levels, rows, |levels, present| {
                batch.clear();
                for &end in ends.by_ref().take(present) {
                    batch.push(data.slice(start..end).into());
                    start = end;
                }
                writer.write_batch(&batch, levels, None)?;
                Ok(())
            })?;
        }
        Values::Fixed { data, width } => {
            let width = (*width).max(1);
            let data = Bytes::from(std::mem::take(data));
            let writer = writer.typed::<FixedLenByteArrayType>();
            let mut batch: Vec<FixedLenByteArray> = Vec::with_capacity(BATCH.min(rows));
            let mut values = (0..data.len() / width).map(|i| i * width);
            in_batches(levels, rows, |levels, present| {
                batch.clear();
                for start in values.by_ref().take(present) {
                    let value = ByteArray::from(data.slice(start..start + width));
                    batch.push(value.into());
                }
                writer.write_batch(&batch, levels, None)?;
                Ok(())
            })?;
        }
        Values::SameBytes(value) => {
            let batch = vec![value.clone(); BATCH.min(rows)];
            let writer = writer.typed::<ByteArrayType>();
            in_batches(None, rows, |_, present| {
                writer.write_batch(&batch[..present], None, None)?;
                Ok(())
            })?;
        }
        Values::SameI64(value) => {
            let batch = vec![*value; BATCH.min(rows)];
            let writer = writer.typed::<Int64Type>();
            in_batches(None, rows, |_, present| {
                writer.write_batch(&batch[..present], None, None)?;
                Ok(())
            })?;
        }
    }
    Ok(())
}

/// Calls `write` for each batch of up to [`BATCH`] of `rows` rows, with its definition levels (`None` for a
/// REQUIRED column) and how many of its rows have a value.
fn in_batches(
    levels: Option<&[i16]>,
    rows: usize,
    mut write: impl FnMut(Option<&[i16]>, usize) -> Result<(), ParquetError>,
) -> Result<(), ParquetError> {
    match levels {
        Some(levels) => {
            for chunk in levels.chunks(BATCH) {
                let present = chunk.iter().filter(|&&l| l == 1).count();
                write(Some(chunk), present)?;
            }
        }
        None => {
            let mut left = rows;
            while left > 0 {
                let n = left.min(BATCH);
                write(None, n)?;
                left -= n;
            }
        }
    }
    Ok(())
}
