//! A destination that refuses rows (a webhook's 4xx: `RowSink::take_refused`) or says it is gone (a webhook's
//! 410: `SinkError::connector_broken`), on the fast engine tier: refused rows move from imported to rejected
//! and into the error report, count for the template's `on_error` limits, and a gone destination fails the
//! file and marks the connector broken.

mod engine;

use std::sync::Arc;

use async_trait::async_trait;
use engine::{fail, Result, World};
use s3_importer_core::sink::{RejectSink, RejectedRow, RowBatch, RowSink, SinkError};
use s3_importer_core::sync::ports::{Destination, FileJob};
use s3_importer_core::sync::{ConnectorStatus, FileStatus};
use s3_importer_core::{ErrorCode, RowError};

/// Wraps a destination: its row sinks hold rows back until `flush` (as a webhook's batches), then refuse
/// those whose record is a multiple of `refuse_every`, or fail as gone when `gone`.
struct Refusing {
    inner: Arc<dyn Destination>,
    refuse_every: u64,
    gone: bool,
}

struct RefusingSink {
    inner: Box<dyn RowSink>,
    held: RowBatch,
    refused: Vec<RejectedRow>,
    refuse_every: u64,
    gone: bool,
}

#[async_trait]
impl Destination for Refusing {
    async fn open_rows(&self, job: &FileJob) -> std::result::Result<Box<dyn RowSink>, SinkError> {
        Ok(Box::new(RefusingSink {
            inner: self.inner.open_rows(job).await?,
            held: RowBatch::default(),
            refused: Vec::new(),
            refuse_every: self.refuse_every,
            gone: self.gone,
        }))
    }

    async fn open_rejects(
        &self,
        job: &FileJob,
    ) -> std::result::Result<Box<dyn RejectSink>, SinkError> {
        self.inner.open_rejects(job).await
    }
}

#[async_trait]
impl RowSink for RefusingSink {
    async fn write_batch(&mut self, batch: &RowBatch) -> std::result::Result<(), SinkError> {
        for (position, row) in batch.iter() {
            self.held.push_row(position, row);
        }
        Ok(())
    }

    async fn flush(&mut self) -> std::result::Result<(), SinkError> {
        if self.gone && !self.held.is_empty() {
            return Err(SinkError::connector_broken(
                "deliver to the receiver",
                "answered 410 Gone",
            ));
        }
        let mut accepted = RowBatch::default();
        for (position, row) in self.held.iter() {
            if position.record % self.refuse_every == 0 {
                self.refused.push(RejectedRow {
                    position,
                    errors: vec![RowError::record(
                        ErrorCode::DestinationRejected,
                        "answered 422",
                    )],
                });
            } else {
                accepted.push_row(position, row);
            }
        }
        self.held.clear();
        self.inner.write_batch(&accepted).await
    }

    fn take_refused(&mut self) -> Vec<RejectedRow> {
        std::mem::take(&mut self.refused)
    }

    async fn finish(&mut self) -> std::result::Result<(), SinkError> {
        self.inner.finish().await
    }
}

#[tokio::test]
async fn refused_rows_are_reported_and_counted_rejected() -> Result {
    let w = World::new().await?;
    // 30 valid rows: the destination refuses records 5, 10, 15, 20, 25 and 30.
    w.put("r.csv", &engine::csv_owned(&engine::numbered("r", 30)));
    w.sync().await?;
    let worker = w.worker_with(Arc::new(Refusing {
        inner: Arc::new(w.destination.clone()),
        refuse_every: 5,
        gone: false,
    }));
    w.drain_with(&worker, None).await?;
    let entry = w.file("r.csv").await?;
    assert_eq!(entry.status, FileStatus::Imported, "{entry:#?}");
    assert_eq!((entry.rows_imported, entry.rows_rejected), (24, 6));
    assert_eq!(w.ids()?.len(), 24);
    let report = w.report("r.csv").await?.ok_or_else(|| fail("no report"))?;
    let refused: Vec<u64> = report
        .iter()
        .filter(|e| e.code == ErrorCode::DestinationRejected)
        .map(|e| e.record)
        .collect();
    assert_eq!(refused, vec![5, 10, 15, 20, 25, 30]);
    Ok(())
}

#[tokio::test]
async fn refused_rows_count_for_max_rejected_rows() -> Result {
    let w = World::with_template(&format!(
        "{}\n[on_error]\nmax_rejected_rows = 5\n",
        engine::TEMPLATE
    ))
    .await?;
    // The template rejects none; the destination refuses 6: 6 > 5.
    w.put("m.csv", &engine::csv_owned(&engine::numbered("m", 30)));
    w.sync().await?;
    let worker = w.worker_with(Arc::new(Refusing {
        inner: Arc::new(w.destination.clone()),
        refuse_every: 5,
        gone: false,
    }));
    w.drain_with(&worker, None).await?;
    let entry = w.file("m.csv").await?;
    assert_eq!(entry.status, FileStatus::Failed, "{entry:#?}");
    let error = entry.error.unwrap_or_default();
    assert!(error.contains("max_rejected_rows = 5"), "{error}");
    Ok(())
}

#[tokio::test]
async fn a_gone_destination_fails_the_file_and_breaks_the_connector() -> Result {
    let w = World::new().await?;
    w.put("g.csv", &engine::csv_owned(&engine::numbered("g", 10)));
    w.sync().await?;
    let worker = w.worker_with(Arc::new(Refusing {
        inner: Arc::new(w.destination.clone()),
        refuse_every: 1000,
        gone: true,
    }));
    let drained = w.drain_with(&worker, None).await?;
    assert!(drained.retried.is_empty(), "{drained:?}");
    let entry = w.file("g.csv").await?;
    assert_eq!(entry.status, FileStatus::Failed);
    assert!(
        entry.error.as_deref().unwrap_or_default().contains("410"),
        "{entry:#?}"
    );
    match w.connector_now().await?.status {
        ConnectorStatus::Broken { reason } => assert!(reason.contains("410 Gone"), "{reason}"),
        other => return Err(fail(format!("connector is {other:?}, not broken"))),
    }
    // A broken connector is not synced: a new file waits.
    w.put("h.csv", &engine::csv_owned(&engine::numbered("h", 3)));
    let _ = w.sync().await;
    assert_eq!(
        w.receive()?.len(),
        0,
        "nothing queued for a broken connector"
    );
    Ok(())
}
