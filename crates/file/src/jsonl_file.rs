//! The JSON Lines file sink of local imports: rows written to `NAME.partial` and renamed when complete, with
//! direct I/O where the file system allows it (see the `direct_io` module).

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use s3_importer_core::sink::{RowBatch, RowPlacement, RowSink, SinkError, SinkErrorKind};

use crate::direct_io::{OutputFile, RowsAtFileOffset};

/// Writes rows as JSON Lines to a local file that appears under its final name only when the file is
/// complete (written to `NAME.partial`, renamed on [`RowSink::finish`], removed on [`RowSink::abort`]).
///
/// Batches are written by the runtime's blocking pool ([`RowSink::write_owned`] moves each batch to the
/// writing thread). On Linux the file is written with direct I/O where the file system allows it: rows are
/// staged in one aligned 1 MiB buffer and the disk reads them from there, instead of each page being
/// allocated and copied into the page cache and written back later, which was a third of the CPU time of a
/// CSV import; elsewhere, or when the file system refuses, writes are ordinary buffered ones (see the
/// `direct_io` module). Either way the file is synced before it is renamed.
#[derive(Debug)]
pub struct JsonlFileSink {
    path: PathBuf,
    partial: PathBuf,
    /// Written in place (not a regular file): never renamed, synced or removed.
    in_place: bool,
    /// `None` once finished or aborted.
    file: Option<OutputFile>,
}

impl JsonlFileSink {
    /// Creates `PATH.partial` for writing, with direct I/O where the file system has it (see below). When
    /// `PATH` exists and is not a regular file (`/dev/null`, a FIFO, a terminal), rows are written to it
    /// directly: it is neither replaced nor removed.
    pub async fn create(path: impl Into<PathBuf>) -> Result<Self, SinkError> {
        let path = path.into();
        let in_place = match tokio::fs::metadata(&path).await {
            Ok(m) if m.is_dir() => {
                return Err(SinkError::permanent(
                    format!("create {}", path.display()),
                    "it is a directory",
                ))
            }
            Ok(m) => !m.is_file(),
            Err(_) => false,
        };
        let partial = if in_place {
            path.clone()
        } else {
            partial_path(&path)
        };
        let target = partial.clone();
        let file = tokio::task::spawn_blocking(move || {
            if in_place {
                OutputFile::open_in_place(&target)
            } else {
                OutputFile::create(&target, true)
            }
        })
        .await
        .map_err(|e| SinkError::permanent("create", e))?
        .map_err(|e| io_error("create", &partial, e))?;
        Ok(Self {
            path,
            partial,
            file: Some(file),
            in_place,
        })
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether rows are being written with direct I/O (around the page cache).
    pub fn is_direct_io(&self) -> bool {
        self.file.as_ref().is_some_and(OutputFile::is_direct)
    }

    /// Runs `f` with the file on the blocking pool.
    async fn with_file<T, F>(&mut self, what: &str, f: F) -> Result<T, SinkError>
    where
        F: FnOnce(&mut OutputFile) -> std::io::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let Some(mut file) = self.file.take() else {
            return Err(SinkError::permanent(what, "sink already finished"));
        };
        let (file, result) = tokio::task::spawn_blocking(move || {
            let result = f(&mut file);
            (file, result)
        })
        .await
        .map_err(|e| SinkError::permanent(what, e))?;
        self.file = Some(file);
        result.map_err(|e| io_error(what, &self.partial, e))
    }
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

#[async_trait]
impl RowSink for JsonlFileSink {
    fn needs_positions(&self) -> bool {
        false
    }

    /// Written to `NAME.partial`, renamed by `finish`, removed by `abort`.
    fn stages(&self) -> bool {
        true
    }

    fn placement(&self) -> Option<Box<dyn RowPlacement>> {
        // Only a file written directly reads the rows from the batch's memory; buffered writes copy anyway.
        self.is_direct_io()
            .then(|| Box::new(RowsAtFileOffset) as Box<dyn RowPlacement>)
    }

    async fn write_batch(&mut self, batch: &RowBatch) -> Result<(), SinkError> {
        self.write_owned(batch.clone()).await.map(drop)
    }

    async fn write_owned(&mut self, batch: RowBatch) -> Result<RowBatch, SinkError> {
        self.with_file("write", move |file| {
            file.write_rows(batch.as_jsonl())?;
            Ok(batch)
        })
        .await
    }

    async fn finish(&mut self) -> Result<(), SinkError> {
        if self.in_place {
            self.with_file("flush", |file| file.finish(false)).await?;
            self.file = None;
        }
        if self.file.is_some() {
            self.with_file("write", |file| file.write_staged()).await?;
            self.with_file("sync", |file| file.finish(true)).await?;
            self.file = None;
            tokio::fs::rename(&self.partial, &self.path)
                .await
                .map_err(|e| io_error("rename to", &self.path, e))?;
        }
        Ok(())
    }

    async fn abort(&mut self) -> Result<(), SinkError> {
        if self.file.take().is_some() && !self.in_place {
            match tokio::fs::remove_file(&self.partial).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error("remove", &self.partial, e)),
            }
        }
        Ok(())
    }
}

/// A failed file operation on `path`. A full disk or a permission problem will not fix itself; an interrupted
/// write might.
fn io_error(context: &str, path: &Path, source: std::io::Error) -> SinkError {
    let kind = match source.kind() {
        std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut => SinkErrorKind::Transient,
        _ => SinkErrorKind::Permanent,
    };
    SinkError {
        kind,
        context: format!("{context} {}", path.display()),
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use s3_importer_core::Position;

    fn pos(record: u64) -> Position {
        Position {
            record,
            line: record + 1,
            byte: record * 10,
        }
    }

    #[tokio::test]
    async fn jsonl_file_sink_is_visible_only_after_finish() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("out.jsonl");
        let mut sink = JsonlFileSink::create(&path).await?;
        let mut batch = RowBatch::default();
        batch.push_row(pos(1), b"{}");
        sink.write_batch(&batch).await?;
        assert!(!path.exists(), "output visible before finish");
        sink.finish().await?;
        assert_eq!(std::fs::read(&path)?, b"{}\n");
        assert!(!partial_path(&path).exists());
        Ok(())
    }

    #[tokio::test]
    async fn jsonl_file_sink_abort_leaves_nothing() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("out.jsonl");
        let mut sink = JsonlFileSink::create(&path).await?;
        sink.abort().await?;
        assert_eq!(std::fs::read_dir(dir.path())?.count(), 0);
        Ok(())
    }
}
