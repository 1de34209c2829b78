//! The Stripe row sink: each row written as its object (see [`crate::objects`]) before the batch returns,
//! rows refused (before any call, or by Stripe with a 4xx) kept for the error report
//! ([`RowSink::take_refused`]). Products, customers and prices are written in file order, so a later row for
//! the same id wins; meter events, which are independent, are sent up to the client's concurrency at once.
//! Nothing is staged: a suspended piece has written every row before its checkpoint, and the next piece
//! needs no state.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use s3_importer_core::sink::{RejectedRow, RowBatch, RowSink, SinkError};
use s3_importer_core::sync::{FileVersion, StripeObject};
use s3_importer_core::{ErrorCode, Position, RowError};
use serde_json::{Map, Value};
use tracing::info;

use crate::objects::{self, RowOutcome, RowSource};
use crate::Stripe;

/// Writes one file version's rows to Stripe.
pub struct StripeSink {
    stripe: Arc<Stripe>,
    version: FileVersion,
    last_modified_ms: i64,
    refused: Vec<RejectedRow>,
    written: u64,
    unchanged: u64,
}

impl StripeSink {
    /// A sink for `version`'s rows; the file was last modified at `last_modified` (kept in each object's
    /// lineage, so an older file version never overwrites a newer one's object).
    pub fn new(stripe: Arc<Stripe>, version: FileVersion, last_modified: DateTime<Utc>) -> Self {
        Self {
            stripe,
            version,
            last_modified_ms: last_modified.timestamp_millis(),
            refused: Vec::new(),
            written: 0,
            unchanged: 0,
        }
    }

    async fn write_one(
        stripe: &Stripe,
        source: RowSource<'_>,
        row: &[u8],
    ) -> Result<RowOutcome, SinkError> {
        let row: Map<String, Value> = match serde_json::from_slice(row) {
            Ok(row) => row,
            Err(e) => {
                return Ok(RowOutcome::Refused(RowError::record(
                    ErrorCode::InvalidJson,
                    format!("the row is not a JSON object: {e}"),
                )))
            }
        };
        match stripe.object() {
            StripeObject::Products => objects::product(stripe, source, &row).await,
            StripeObject::Customers => objects::customer(stripe, source, &row).await,
            StripeObject::Prices => objects::price(stripe, source, &row).await,
            StripeObject::MeterEvents => objects::meter_event(stripe, source, &row).await,
        }
    }

    fn tally(&mut self, position: Position, outcome: RowOutcome) {
        match outcome {
            RowOutcome::Written => self.written += 1,
            RowOutcome::Unchanged => self.unchanged += 1,
            RowOutcome::Refused(error) => self.refused.push(RejectedRow {
                position,
                errors: vec![error],
            }),
        }
    }
}

#[async_trait]
impl RowSink for StripeSink {
    async fn write_batch(&mut self, batch: &RowBatch) -> Result<(), SinkError> {
        let stripe = self.stripe.clone();
        let (version, last_modified_ms) = (&self.version, self.last_modified_ms);
        let source = |position: Position| RowSource {
            version,
            last_modified_ms,
            record: position.record,
        };
        let outcomes: Vec<(Position, Result<RowOutcome, SinkError>)> =
            if stripe.object() == StripeObject::MeterEvents {
                // Futures made first (they run only when polled), then up to `concurrency` at once.
                let sends: Vec<_> = batch
                    .iter()
                    .map(|(position, row)| {
                        let send = Self::write_one(&stripe, source(position), row);
                        async move { (position, send.await) }
                    })
                    .collect();
                stream::iter(sends)
                    .buffered(stripe.concurrency)
                    .collect()
                    .await
            } else {
                let mut outcomes = Vec::with_capacity(batch.len());
                for (position, row) in batch.iter() {
                    let outcome = Self::write_one(&stripe, source(position), row).await;
                    let failed = outcome.is_err();
                    outcomes.push((position, outcome));
                    if failed {
                        break;
                    }
                }
                outcomes
            };
        for (position, outcome) in outcomes {
            self.tally(position, outcome?);
        }
        Ok(())
    }

    /// A row costs at least one request at the account's rate (meter events, and the upsert's first call
    /// of the other kinds), so a piece's first batch is sized to what the rate allows in the write budget:
    /// 375 rows at 25 requests/s and the default 60 s checkpoint margin, not the 2,000 rows (80 s) that
    /// would overrun the deadline.
    fn row_cost(&self) -> Option<Duration> {
        Some(Duration::from_secs(1) / self.stripe.rate().max(1))
    }

    fn take_refused(&mut self) -> Vec<RejectedRow> {
        std::mem::take(&mut self.refused)
    }

    async fn finish(&mut self) -> Result<(), SinkError> {
        info!(
            connector = %self.version.connector_id,
            key = %self.version.key,
            object = self.stripe.object().name(),
            written = self.written,
            unchanged = self.unchanged,
            "Stripe file written"
        );
        Ok(())
    }

    async fn suspend(&mut self) -> Result<Option<serde_json::Value>, SinkError> {
        Ok(None)
    }
}
