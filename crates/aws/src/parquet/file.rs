//! One Parquet file written as a byte stream across pieces: row groups encoded in memory one at a time, handed
//! out as bytes to append to the object, and a footer that lists the row groups of every piece.
//!
//! Each piece has its own `SerializedFileWriter` over a `Vec<u8>`. The first piece's output is the start of
//! the file (`PAR1`, row groups); a later piece drops its writer's `PAR1` and shifts the byte offsets its row
//! groups' metadata records by where its bytes land in the object (`start - 4`). The footer is never the
//! writer's own (that one would list only this piece's row groups): [`PieceWriter::footer`] writes one for
//! the row groups of all pieces, which are carried from piece to piece as a footer too (see the sink).

use std::sync::Arc;

use bytes::Bytes;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{
    FileMetaData, ParquetMetaData, ParquetMetaDataReader, ParquetMetaDataWriter, RowGroupMetaData,
};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::{ColumnPath, TypePtr};

use super::columns::write_column;
use super::encode::RowGroupBuffer;
use super::schema::{ColumnKind, OutputSchema};
use super::ParquetError;

/// Writes the row groups of one piece (see the module docs).
pub struct PieceWriter {
    writer: SerializedFileWriter<Vec<u8>>,
    /// Added to the offsets this piece's writer records: where its byte 0 lands in the object.
    shift: i64,
    /// Bytes of the writer's output still to drop (the `PAR1` of a later piece).
    skip: usize,
    /// Row groups of the earlier pieces, with offsets in the object.
    earlier: Vec<RowGroupMetaData>,
}

impl std::fmt::Debug for PieceWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PieceWriter")
            .field("shift", &self.shift)
            .field("earlier_row_groups", &self.earlier.len())
            .finish_non_exhaustive()
    }
}

/// zstd at its default level (1, as pyarrow), statistics per column chunk, no page index (its offsets would
/// need shifting too, for little gain on files read whole or pruned by partition). Dictionaries for text
/// only: strings and enums repeat, while numbers, dates and timestamps are mostly distinct (a key, an
/// amount, an instant), where a dictionary is built, outgrown and dropped for nothing (on 200 MB of the
/// bench's orders, text-only dictionaries wrote the file about 10% faster and 7% smaller).
fn properties(schema: &OutputSchema) -> Arc<WriterProperties> {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_statistics_enabled(EnabledStatistics::Chunk)
        .set_offset_index_disabled(true)
        .set_dictionary_enabled(false);
    for column in &schema.columns {
        if column.kind == ColumnKind::Text {
            builder =
                builder.set_column_dictionary_enabled(ColumnPath::from(column.name.as_str()), true);
        }
    }
    Arc::new(builder.build())
}

impl PieceWriter {
    /// A writer for the piece whose bytes start at byte `start` of the object (0 for the first piece), after
    /// the `earlier` row groups.
    pub fn new(
        schema: &OutputSchema,
        parquet_type: TypePtr,
        start: u64,
        earlier: Vec<RowGroupMetaData>,
    ) -> Result<Self, ParquetError> {
        let writer = SerializedFileWriter::new(Vec::new(), parquet_type, properties(schema))?;
        let (shift, skip) = if start == 0 {
            (0, 0)
        } else {
            let start = i64::try_from(start).map_err(|e| ParquetError::Schema(e.to_string()))?;
            (start - 4, 4)
        };
        Ok(Self {
            writer,
            shift,
            skip,
            earlier,
        })
    }

    /// Encodes `rows` as the next row group and empties it; its bytes wait in [`PieceWriter::take_output`].
    pub fn write_row_group(&mut self, rows: &mut RowGroupBuffer) -> Result<(), ParquetError> {
        let count = rows.rows();
        let mut group = self.writer.next_row_group()?;
        for column in rows.columns_mut() {
            let mut writer = group
                .next_column()?
                .ok_or_else(|| ParquetError::Schema("more buffers than columns".into()))?;
            write_column(&mut writer, column, count)?;
            writer.close()?;
        }
        group.close()?;
        rows.clear();
        Ok(())
    }

    /// The bytes encoded since the last call, to append to the object.
    pub fn take_output(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(self.writer.inner_mut());
        if self.skip > 0 {
            let n = self.skip.min(out.len());
            out.drain(..n);
            self.skip -= n;
        }
        out
    }

    /// Every row group so far, earlier pieces' and this one's, with offsets in the object.
    pub fn row_groups(&self) -> Result<Vec<RowGroupMetaData>, ParquetError> {
        let mut all = self.earlier.clone();
        for group in self.writer.flushed_row_groups() {
            let ordinal = i32::try_from(all.len()).unwrap_or(i32::MAX);
            all.push(shifted(group, self.shift, ordinal)?);
        }
        Ok(all)
    }

    /// The file's footer (metadata, its length, `PAR1`) for `row_groups`.
    pub fn footer(&self, row_groups: Vec<RowGroupMetaData>) -> Result<Vec<u8>, ParquetError> {
        let num_rows = row_groups.iter().map(RowGroupMetaData::num_rows).sum();
        let props = self.writer.properties();
        let file = FileMetaData::new(
            props.writer_version().as_num(),
            num_rows,
            Some(props.created_by().to_owned()),
            None,
            Arc::new(self.writer.schema_descr().clone()),
            None,
        );
        let metadata = ParquetMetaData::new(file, row_groups);
        let mut out = Vec::new();
        ParquetMetaDataWriter::new(&mut out, &metadata).finish()?;
        Ok(out)
    }
}

/// The row groups listed in a footer written by [`PieceWriter::footer`].
pub fn read_footer(footer: Vec<u8>) -> Result<Vec<RowGroupMetaData>, ParquetError> {
    let metadata = ParquetMetaDataReader::new().parse_and_finish(&Bytes::from(footer))?;
    Ok(metadata.row_groups().to_vec())
}

/// `group` with every offset moved by `shift` bytes, as row group number `ordinal`.
fn shifted(
    group: &RowGroupMetaData,
    shift: i64,
    ordinal: i32,
) -> Result<RowGroupMetaData, ParquetError> {
    let columns = group
        .columns()
        .iter()
        .map(|c| {
            c.clone()
                .into_builder()
                .set_data_page_offset(c.data_page_offset() + shift)
                .set_dictionary_page_offset(c.dictionary_page_offset().map(|o| o + shift))
                .set_index_page_offset(c.index_page_offset().map(|o| o + shift))
                .build()
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut builder = group
        .clone()
        .into_builder()
        .set_column_metadata(columns)
        .set_ordinal(ordinal);
    if let Some(offset) = group.file_offset() {
        builder = builder.set_file_offset(offset + shift);
    }
    Ok(builder.build()?)
}

#[cfg(test)]
mod tests {
    use parquet::file::reader::FileReader;
    use parquet::file::serialized_reader::SerializedFileReader;
    use parquet::record::Field;
    use s3_importer_core::template::Template;

    use super::*;
    use crate::parquet::encode::FileLineage;

    fn schema() -> OutputSchema {
        let template = Template::from_toml(
            "name = \"t\"\n[[fields]]\nname = \"id\"\ntype = \"string\"\nrequired = true\n\
             [[fields]]\nname = \"n\"\ntype = \"integer\"\n",
        )
        .expect("valid template");
        OutputSchema::of(&template).expect("parquet schema")
    }

    /// Rows `first..=last` encoded as one row group by `piece`.
    fn row_group(piece: &mut PieceWriter, first: u64, last: u64) -> Result<(), ParquetError> {
        let lineage = FileLineage {
            source_key: "k".into(),
            source_etag: "\"e\"".into(),
            last_modified_micros: 1,
            imported_at_micros: 2,
        };
        let mut rows = RowGroupBuffer::new(schema(), &lineage);
        for r in first..=last {
            let row = format!(r#"{{"id":"r{r}","n":{}}}"#, r * 10);
            rows.push(row.as_bytes(), r)?;
        }
        piece.write_row_group(&mut rows)
    }

    /// `(id, n, _source_row)` of every row of a Parquet file.
    fn read(file: Vec<u8>) -> Result<Vec<(String, i64, i64)>, ParquetError> {
        let reader = SerializedFileReader::new(Bytes::from(file))?;
        let mut rows = Vec::new();
        for row in reader.get_row_iter(None)? {
            let row = row?;
            let fields: Vec<&Field> = row.get_column_iter().map(|(_, f)| f).collect();
            match (fields[0], fields[1], fields[5]) {
                (Field::Str(id), Field::Long(n), Field::Long(record)) => {
                    rows.push((id.clone(), *n, *record))
                }
                other => return Err(ParquetError::Schema(format!("unexpected row {other:?}"))),
            }
        }
        Ok(rows)
    }

    #[test]
    fn pieces_appending_row_groups_make_one_file_with_every_row() -> Result<(), ParquetError> {
        let schema = schema();
        let parquet_type = schema.parquet_type()?;
        // Piece 0: two row groups, then suspended: its bytes and its footer are what the next piece gets.
        let mut first = PieceWriter::new(&schema, parquet_type.clone(), 0, Vec::new())?;
        row_group(&mut first, 1, 3)?;
        row_group(&mut first, 4, 5)?;
        let mut object = first.take_output();
        let carried = read_footer(first.footer(first.row_groups()?)?)?;
        assert_eq!(carried.len(), 2);
        // Piece 1 resumes after those bytes: one row group, no `PAR1` of its own.
        let mut second =
            PieceWriter::new(&schema, parquet_type.clone(), object.len() as u64, carried)?;
        row_group(&mut second, 6, 9)?;
        let out = second.take_output();
        assert_ne!(out.get(..4), Some(&b"PAR1"[..]));
        object.extend(out);
        let carried = read_footer(second.footer(second.row_groups()?)?)?;
        // Piece 2 writes nothing more and finishes.
        let mut last = PieceWriter::new(&schema, parquet_type, object.len() as u64, carried)?;
        object.extend(last.take_output());
        let groups = last.row_groups()?;
        assert_eq!(
            groups.iter().map(|g| g.ordinal()).collect::<Vec<_>>(),
            vec![Some(0), Some(1), Some(2)]
        );
        object.extend(last.footer(groups)?);

        let want: Vec<(String, i64, i64)> = (1..=9).map(|r| (format!("r{r}"), r * 10, r)).collect();
        assert_eq!(read(object)?, want);
        Ok(())
    }

    #[test]
    fn a_file_without_rows_is_a_valid_empty_file() -> Result<(), ParquetError> {
        let schema = schema();
        let mut piece = PieceWriter::new(&schema, schema.parquet_type()?, 0, Vec::new())?;
        let mut object = piece.take_output();
        object.extend(piece.footer(piece.row_groups()?)?);
        assert_eq!(read(object)?, Vec::new());
        Ok(())
    }
}
