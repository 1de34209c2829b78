//! How fast the destination writes, measured while a piece runs, so that a slow destination never makes a piece
//! overrun its invocation's deadline (`docs/architecture.md`, "Pieces").
//!
//! Two rules use the measurements:
//! - **stop before a write that would end too late**: before each batch the pipeline predicts how long writing
//!   it will take (the slowest of the recent writes, scaled to the batch's rows, with half again as headroom)
//!   and stops the piece instead of starting a write that would end past the stop point;
//! - **smaller batches for a slow destination**: a write slower than the budget shrinks the batches the reader
//!   makes to the rows that fit the budget at the measured pace (down to one row); writes well under the budget
//!   let them grow back to the configured size. A destination whose writes cost the same whatever their size
//!   (a fixed latency per request) gains nothing from smaller batches: when a smaller batch costs as much per
//!   batch as the larger one before it, the batches go back to the larger size and shrink no further.
//!
//! What a piece measured is carried to the next one in the ledger's checkpoint ([`Pace`]), so the next piece
//! starts with the batch size and the expectations the destination has shown.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How many recent writes the prediction looks at: enough to cover the batches already queued at the old size
/// when the batches shrink, few enough that one slow write is forgotten after a while.
const RECENT_WRITES: usize = 8;

/// What a piece measured of its destination, carried to the next piece in the checkpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pace {
    /// The slowest recent batch write, in milliseconds.
    pub write_ms: u64,
    /// The rows of that write.
    pub write_rows: u64,
    /// The batch size (rows) the reader was held to at the end of the piece.
    pub batch_rows: u64,
    /// The size batches do not shrink below (0: none): smaller ones were found to cost no less.
    #[serde(default)]
    pub batch_floor: u64,
    /// How long suspending the sinks took at the end of the piece, in milliseconds.
    pub suspend_ms: u64,
}

impl Pace {
    /// What a sink whose rows cost at least `row_cost` each is expected to show before any write: batches of
    /// the rows that fit `budget` at that cost (all `max_rows` without a budget), each taking that long.
    pub fn from_row_cost(row_cost: Duration, max_rows: usize, budget: Option<Duration>) -> Self {
        let max_rows = max_rows.max(1);
        let rows = budget.map_or(max_rows, |budget| {
            let fit = budget.as_nanos() / row_cost.as_nanos().max(1);
            usize::try_from(fit)
                .unwrap_or(usize::MAX)
                .clamp(1, max_rows)
        });
        Self {
            write_ms: millis(row_cost.saturating_mul(u32::try_from(rows).unwrap_or(u32::MAX))),
            write_rows: rows as u64,
            batch_rows: rows as u64,
            batch_floor: 0,
            suspend_ms: 0,
        }
    }
}

/// The measured writes of one piece, and the batch size the reader is held to.
#[derive(Debug)]
pub struct WritePace {
    recent: VecDeque<(Duration, u64)>,
    budget: Option<Duration>,
    max_rows: usize,
    /// Batches do not shrink below this: the size at which smaller batches were found to cost no less.
    floor: usize,
    limit: Arc<AtomicUsize>,
}

impl WritePace {
    /// Pacing for batches of at most `max_rows`, each write meant to take at most `budget` (`None`: any
    /// time, and the batch size never changes), starting from what an earlier piece measured.
    pub fn new(max_rows: usize, budget: Option<Duration>, carried: Option<&Pace>) -> Self {
        let max_rows = max_rows.max(1);
        let mut recent = VecDeque::with_capacity(RECENT_WRITES);
        let mut start_rows = max_rows;
        let mut floor = 1;
        if let Some(p) = carried {
            floor = usize::try_from(p.batch_floor)
                .unwrap_or(max_rows)
                .clamp(1, max_rows);
            if p.write_rows > 0 {
                recent.push_back((Duration::from_millis(p.write_ms), p.write_rows));
            }
            if budget.is_some() && p.batch_rows > 0 {
                start_rows = usize::try_from(p.batch_rows)
                    .unwrap_or(max_rows)
                    .clamp(floor, max_rows);
            }
        }
        Self {
            recent,
            budget,
            max_rows,
            floor,
            limit: Arc::new(AtomicUsize::new(start_rows)),
        }
    }

    /// The batch size the reader is held to, shared with it (it reads the value before closing each batch).
    pub fn batch_limit(&self) -> Arc<AtomicUsize> {
        self.limit.clone()
    }

    /// How long writing a batch of `rows` is expected to take: each recent write scaled up to `rows` (never
    /// down: a smaller batch is not assumed cheaper than a measured one), the largest of them.
    pub fn expected(&self, rows: u64) -> Duration {
        self.recent
            .iter()
            .map(|&(took, measured)| {
                if rows > measured && measured > 0 {
                    took.mul_f64(rows as f64 / measured as f64)
                } else {
                    took
                }
            })
            .max()
            .unwrap_or_default()
    }

    /// Whether a batch of `rows` written from now would end at or past `stop`, with half again as headroom.
    pub fn would_overrun(&self, rows: u64, stop: Instant) -> bool {
        let expected = self.expected(rows);
        Instant::now() + expected + expected / 2 >= stop
    }

    /// Records a write of `rows` that took `took`, and resizes the batches when a budget is set.
    pub fn record(&mut self, took: Duration, rows: u64) {
        let before = self.recent.back().copied();
        if self.recent.len() == RECENT_WRITES {
            self.recent.pop_front();
        }
        self.recent.push_back((took, rows));
        let Some(budget) = self.budget else { return };
        if rows == 0 {
            return;
        }
        let current = self.limit.load(Ordering::Relaxed);
        let next = if took > budget && before.is_some_and(|b| costs_per_batch(b, (took, rows))) {
            // Smaller batches did not make the writes faster: back to the size before, and no smaller.
            let (_, larger) = before.unwrap_or_default();
            self.floor = usize::try_from(larger).unwrap_or(self.max_rows);
            self.floor
        } else if took > budget {
            // The rows that fit the budget at this write's pace.
            let fit = rows as u128 * budget.as_nanos() / took.as_nanos().max(1);
            usize::try_from(fit).unwrap_or(usize::MAX)
        } else if took < budget / 4 && rows as usize >= current {
            current.saturating_mul(2)
        } else {
            current
        };
        self.limit.store(
            next.clamp(self.floor.min(self.max_rows), self.max_rows),
            Ordering::Relaxed,
        );
    }

    /// What to carry to the next piece, with how long suspending the sinks took.
    pub fn carry(&self, suspend: Duration) -> Pace {
        let (took, rows) = self
            .recent
            .iter()
            .copied()
            .max_by_key(|&(took, _)| took)
            .unwrap_or_default();
        Pace {
            write_ms: millis(took),
            write_rows: rows,
            batch_rows: self.limit.load(Ordering::Relaxed) as u64,
            batch_floor: if self.floor > 1 { self.floor as u64 } else { 0 },
            suspend_ms: millis(suspend),
        }
    }
}

/// Whether `smaller` (a write of fewer rows after `larger`) cost at least three quarters of `larger`'s time:
/// the destination's cost is per batch (latency), not per row.
fn costs_per_batch(larger: (Duration, u64), smaller: (Duration, u64)) -> bool {
    let ((larger_took, larger_rows), (smaller_took, smaller_rows)) = (larger, smaller);
    smaller_rows < larger_rows && smaller_took * 4 >= larger_took * 3
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_known_row_cost_sizes_the_first_batches_to_the_budget() {
        // 25 requests a second, a 15 s budget: 375 rows a batch, expected to take 15 s.
        let pace = Pace::from_row_cost(ms(40), 2000, Some(Duration::from_secs(15)));
        assert_eq!(
            (pace.batch_rows, pace.write_rows, pace.write_ms),
            (375, 375, 15_000)
        );
        let paced = WritePace::new(2000, Some(Duration::from_secs(15)), Some(&pace));
        assert_eq!(paced.batch_limit().load(Ordering::Relaxed), 375);
        assert_eq!(paced.expected(750), Duration::from_secs(30));
        // A cheap row fills the configured size; a dear one still gets one row; no budget: the configured size.
        assert_eq!(
            Pace::from_row_cost(Duration::from_micros(1), 2000, Some(ms(100))).batch_rows,
            2000
        );
        assert_eq!(
            Pace::from_row_cost(Duration::from_secs(1), 2000, Some(ms(100))).batch_rows,
            1
        );
        assert_eq!(Pace::from_row_cost(ms(40), 2000, None).batch_rows, 2000);
    }

    #[test]
    fn without_a_budget_the_batch_size_never_changes() {
        let mut pace = WritePace::new(2000, None, None);
        pace.record(ms(10_000), 2000);
        assert_eq!(pace.batch_limit().load(Ordering::Relaxed), 2000);
    }

    #[test]
    fn a_write_over_budget_shrinks_batches_to_what_fits_and_fast_writes_grow_them_back() {
        let mut pace = WritePace::new(2000, Some(ms(250)), None);
        pace.record(ms(1000), 2000);
        assert_eq!(pace.batch_limit().load(Ordering::Relaxed), 500);
        // A write under budget but not far under keeps the size.
        pace.record(ms(200), 500);
        assert_eq!(pace.batch_limit().load(Ordering::Relaxed), 500);
        // Far under budget: doubles, up to the configured size.
        pace.record(ms(10), 500);
        assert_eq!(pace.batch_limit().load(Ordering::Relaxed), 1000);
        pace.record(ms(10), 1000);
        pace.record(ms(10), 2000);
        assert_eq!(pace.batch_limit().load(Ordering::Relaxed), 2000);
        // Never below one row.
        let mut pace = WritePace::new(2000, Some(ms(250)), None);
        pace.record(ms(1_000_000), 2000);
        assert_eq!(pace.batch_limit().load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_destination_that_costs_the_same_per_batch_keeps_its_batches() {
        let mut pace = WritePace::new(2000, Some(ms(250)), None);
        pace.record(ms(1000), 2000);
        assert_eq!(pace.batch_limit().load(Ordering::Relaxed), 500);
        // A quarter of the rows, the same time: the cost is per request.
        pace.record(ms(1000), 500);
        assert_eq!(pace.batch_limit().load(Ordering::Relaxed), 2000);
        pace.record(ms(1000), 2000);
        assert_eq!(
            pace.batch_limit().load(Ordering::Relaxed),
            2000,
            "no smaller than the floor"
        );
        // The next piece keeps the floor.
        let mut next = WritePace::new(2000, Some(ms(250)), Some(&pace.carry(ms(0))));
        next.record(ms(1000), 2000);
        assert_eq!(next.batch_limit().load(Ordering::Relaxed), 2000);
    }

    #[test]
    fn a_batch_smaller_than_the_measured_ones_still_expects_their_time_and_a_larger_one_scales_up()
    {
        let mut pace = WritePace::new(2000, None, None);
        assert_eq!(pace.expected(100), Duration::ZERO);
        pace.record(ms(400), 100);
        pace.record(ms(100), 1000);
        assert_eq!(pace.expected(50), ms(400));
        assert_eq!(pace.expected(200), ms(800));
        assert_eq!(pace.expected(2000), ms(8000));
    }

    #[test]
    fn old_writes_are_forgotten_after_the_recent_window() {
        let mut pace = WritePace::new(2000, None, None);
        pace.record(ms(5000), 2000);
        for _ in 0..RECENT_WRITES {
            pace.record(ms(10), 2000);
        }
        assert_eq!(pace.expected(2000), ms(10));
    }

    #[test]
    fn a_write_is_not_started_when_it_would_end_past_the_stop() {
        let mut pace = WritePace::new(2000, None, None);
        let stop = Instant::now() + ms(1000);
        assert!(!pace.would_overrun(2000, stop), "nothing measured yet");
        pace.record(ms(500), 2000);
        // 500 ms expected, 750 with headroom: still before the stop a second away.
        assert!(!pace.would_overrun(2000, stop));
        pace.record(ms(700), 2000);
        assert!(pace.would_overrun(2000, stop));
    }

    #[test]
    fn the_next_piece_starts_from_what_this_one_measured() {
        let mut pace = WritePace::new(2000, Some(ms(250)), None);
        pace.record(ms(1000), 2000);
        pace.record(ms(240), 500);
        let carried = pace.carry(ms(1234));
        assert_eq!(
            carried,
            Pace {
                write_ms: 1000,
                write_rows: 2000,
                batch_rows: 500,
                batch_floor: 0,
                suspend_ms: 1234
            }
        );
        let next = WritePace::new(2000, Some(ms(250)), Some(&carried));
        assert_eq!(next.batch_limit().load(Ordering::Relaxed), 500);
        assert_eq!(next.expected(500), ms(1000));
        // Without a budget the carried size is not imposed.
        let unpaced = WritePace::new(2000, None, Some(&carried));
        assert_eq!(unpaced.batch_limit().load(Ordering::Relaxed), 2000);
    }
}
