//! [`ParquetFileSink`]: the Parquet output of a local import (`s3-importer import-file --output-format
//! parquet`), the same encoding as the S3 output in one piece: rows buffered by column, a row group encoded
//! each time the buffer holds the row group size, its bytes appended to `NAME.partial`, the footer written and
//! the file renamed into place by `finish`.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use s3_importer_core::sink::{RowBatch, RowSink, SinkError};
use s3_importer_core::template::Template;

use super::encode::{FileLineage, RowGroupBuffer};
use super::file::PieceWriter;
use super::{OutputSchema, ParquetError};

/// Writes rows as one local Parquet file that appears under its final name only when complete.
#[derive(Debug)]
pub struct ParquetFileSink {
    path: PathBuf,
    partial: PathBuf,
    /// `None` once finished or aborted.
    file: Option<std::io::BufWriter<std::fs::File>>,
    piece: PieceWriter,
    rows: RowGroupBuffer,
    row_group_bytes: usize,
}

impl ParquetFileSink {
    /// Creates `PATH.partial` for the rows of `template`; `lineage` fills the lineage columns of every row.
    /// A template Parquet cannot hold is refused here, before any row is read.
    pub fn create(
        path: impl Into<PathBuf>,
        template: &Template,
        lineage: FileLineage,
        row_group_bytes: usize,
    ) -> Result<Self, SinkError> {
        let path = path.into();
        let refuse = |e: ParquetError| SinkError::permanent(format!("write {}", path.display()), e);
        let schema = OutputSchema::of(template).map_err(refuse)?;
        let parquet_type = schema.parquet_type().map_err(refuse)?;
        let piece = PieceWriter::new(&schema, parquet_type, 0, Vec::new()).map_err(refuse)?;
        let mut partial = path.clone().into_os_string();
        partial.push(".partial");
        let partial = PathBuf::from(partial);
        let file = std::fs::File::create(&partial).map_err(|e| io_error("create", &partial, e))?;
        Ok(Self {
            path,
            partial,
            file: Some(std::io::BufWriter::with_capacity(1 << 20, file)),
            piece,
            rows: RowGroupBuffer::new(schema, &lineage),
            row_group_bytes: row_group_bytes.max(1),
        })
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn refuse(&self, e: impl Into<ParquetError>) -> SinkError {
        SinkError::permanent(format!("write {}", self.path.display()), e.into())
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        let Some(file) = self.file.as_mut() else {
            return Err(SinkError::permanent(
                format!("write {}", self.path.display()),
                "the file was already finished or aborted",
            ));
        };
        file.write_all(bytes)
            .map_err(|e| io_error("write", &self.partial, e))
    }

    /// Encodes the rows held as a row group and appends its bytes to the file.
    fn flush_row_group(&mut self) -> Result<(), SinkError> {
        if self.rows.rows() > 0 {
            self.piece
                .write_row_group(&mut self.rows)
                .map_err(|e| self.refuse(e))?;
        }
        let bytes = self.piece.take_output();
        self.append(&bytes)
    }
}

#[async_trait]
impl RowSink for ParquetFileSink {
    fn stages(&self) -> bool {
        true
    }

    async fn write_batch(&mut self, batch: &RowBatch) -> Result<(), SinkError> {
        for (position, row) in batch.iter() {
            self.rows
                .push(row, position.record)
                .map_err(|e| self.refuse(e))?;
            if self.rows.bytes() >= self.row_group_bytes {
                self.flush_row_group()?;
            }
        }
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), SinkError> {
        self.flush_row_group()?;
        let row_groups = self.piece.row_groups().map_err(|e| self.refuse(e))?;
        let footer = self.piece.footer(row_groups).map_err(|e| self.refuse(e))?;
        self.append(&footer)?;
        if let Some(file) = self.file.take() {
            let file = file
                .into_inner()
                .map_err(|e| io_error("write", &self.partial, e.into_error()))?;
            file.sync_all()
                .map_err(|e| io_error("sync", &self.partial, e))?;
        }
        std::fs::rename(&self.partial, &self.path).map_err(|e| io_error("rename to", &self.path, e))
    }

    async fn abort(&mut self) -> Result<(), SinkError> {
        if self.file.take().is_some() {
            match std::fs::remove_file(&self.partial) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("remove", &self.partial, e)),
            }
        }
        Ok(())
    }
}

fn io_error(what: &str, path: &Path, e: std::io::Error) -> SinkError {
    SinkError::permanent(format!("{what} {}", path.display()), e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::RowAccessor;
    use s3_importer_core::Position;

    const TEMPLATE: &str = r#"
name = "t"
primary_key = ["id"]
[[fields]]
name = "id"
type = "integer"
required = true
[[fields]]
name = "name"
type = "string"
"#;

    fn lineage() -> FileLineage {
        FileLineage {
            source_key: "in.csv".into(),
            source_etag: "\"local\"".into(),
            last_modified_micros: 0,
            imported_at_micros: 0,
        }
    }

    fn batch(from: u64, n: u64) -> RowBatch {
        let mut batch = RowBatch::default();
        for record in from..from + n {
            let position = Position {
                record,
                line: record + 1,
                byte: 0,
            };
            batch.push_row(
                position,
                format!(r#"{{"id":{record},"name":"row {record}"}}"#).as_bytes(),
            );
        }
        batch
    }

    #[tokio::test]
    async fn finished_file_has_every_row_in_several_row_groups(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("out.parquet");
        let template = Template::from_toml(TEMPLATE)?;
        // A tiny row group size: a row group every few rows.
        let mut sink = ParquetFileSink::create(&path, &template, lineage(), 64)?;
        sink.write_batch(&batch(1, 50)).await?;
        sink.write_batch(&batch(51, 50)).await?;
        assert!(!path.exists(), "visible before finish");
        sink.finish().await?;
        let reader = SerializedFileReader::new(std::fs::File::open(&path)?)?;
        let meta = reader.metadata();
        assert_eq!(meta.file_metadata().num_rows(), 100);
        assert!(meta.num_row_groups() > 1, "{}", meta.num_row_groups());
        let ids: Vec<i64> = reader
            .get_row_iter(None)?
            .map(|row| row.map(|r| r.get_long(0)))
            .collect::<Result<Result<_, _>, _>>()??;
        assert_eq!(ids, (1..=100).collect::<Vec<_>>());
        assert!(!dir.path().join("out.parquet.partial").exists());
        Ok(())
    }

    #[tokio::test]
    async fn aborted_file_leaves_nothing() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("out.parquet");
        let template = Template::from_toml(TEMPLATE)?;
        let mut sink = ParquetFileSink::create(&path, &template, lineage(), 64)?;
        sink.write_batch(&batch(1, 50)).await?;
        sink.abort().await?;
        assert_eq!(std::fs::read_dir(dir.path())?.count(), 0);
        Ok(())
    }

    #[tokio::test]
    async fn row_that_does_not_fit_its_column_names_the_record(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let template = Template::from_toml(TEMPLATE)?;
        let mut sink = ParquetFileSink::create(
            dir.path().join("out.parquet"),
            &template,
            lineage(),
            1 << 20,
        )?;
        let mut bad = RowBatch::default();
        let position = Position {
            record: 7,
            line: 8,
            byte: 0,
        };
        bad.push_row(position, br#"{"id":"seven"}"#);
        let err = sink.write_batch(&bad).await.err().map(|e| e.to_string());
        assert!(
            err.as_deref().is_some_and(|e| e.contains("record 7: id")),
            "{err:?}"
        );
        Ok(())
    }
}
