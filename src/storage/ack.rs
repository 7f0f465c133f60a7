//! Where a write's acknowledgement spends its time inside the shard: one
//! latency histogram (µs) per stage, cheap to record on the hot path (a
//! single-threaded shard; plain `RefCell`), reported with the shard's stats
//! as `ack_stage_<name>_{p50,p99,p999,max}_us` and on `/metrics`.
//!
//! Stages of one `Shard::write` (a client batch's sub-batch on its owner):
//! - `encode`: the WAL append (sequence numbers, the record bytes);
//! - `insert`: the tag buffers' insert;
//! - `durable_wait`: from the insert to the write resuming after its
//!   record is durable; it is made of the group-commit stages below plus
//!   `wake`;
//! - `shard`: the whole `Shard::write` (backpressure waits included);
//! - `shard_flushing`: the same, for writes during which a flush round ran
//!   (a subset of `shard`, so the two can be compared).
//!
//! Stages of one WAL group (one writer pass, several records):
//! - `wal_queue`: the oldest record of the group, from its append to the
//!   writer taking it (a sync already in flight, the writer's scheduling);
//! - `wal_write`: the O_DIRECT write(s) of the group, submission to
//!   completion seen by the writer;
//! - `wal_sync`: the `fdatasync`, submission to completion seen by the
//!   writer (the executor noticing the completion included);
//! - `wake`: from the writer marking the group durable to a waiting write
//!   resuming (the executor's scheduling of the waiter).
//!
//! The mesh hop and the answer's write are outside the shard and not here.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

/// A stage of the acknowledgement path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// WAL append (record encode).
    Encode,
    /// Tag buffer insert.
    Insert,
    /// Insert to resumed after durable.
    DurableWait,
    /// Oldest record of a group: append to taken by the writer.
    WalQueue,
    /// The group's write.
    WalWrite,
    /// The group's `fdatasync`.
    WalSync,
    /// Marked durable to the waiter resumed.
    Wake,
    /// The whole `Shard::write`.
    Shard,
    /// The whole `Shard::write`, when a flush round ran during it.
    ShardFlushing,
}

impl Stage {
    /// Every stage, in report order.
    pub const ALL: [Stage; 9] = [
        Stage::Encode,
        Stage::Insert,
        Stage::DurableWait,
        Stage::WalQueue,
        Stage::WalWrite,
        Stage::WalSync,
        Stage::Wake,
        Stage::Shard,
        Stage::ShardFlushing,
    ];

    /// The stage's name in counters.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Encode => "encode",
            Stage::Insert => "insert",
            Stage::DurableWait => "durable_wait",
            Stage::WalQueue => "wal_queue",
            Stage::WalWrite => "wal_write",
            Stage::WalSync => "wal_sync",
            Stage::Wake => "wake",
            Stage::Shard => "shard",
            Stage::ShardFlushing => "shard_flushing",
        }
    }
}

/// One histogram per [`Stage`].
pub struct AckStages {
    hists: RefCell<Vec<Histogram<u64>>>,
}

/// A histogram for latencies in µs, 1 µs to 1 h, 2 significant digits
/// (values within 1 %): 3,328 counters, 26 KiB. Every `stats` request and
/// `/metrics` scrape copies each shard's ten of them (to merge shards' and
/// answer over the mesh); at 3 digits (23,552 counters, 184 KiB each) that
/// copy into fresh memory stalled the shard for up to 23 ms.
#[allow(clippy::expect_used)] // constant bounds that hdrhistogram accepts
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("constant histogram bounds are valid")
}

impl Default for AckStages {
    fn default() -> Self {
        AckStages {
            hists: RefCell::new(Stage::ALL.iter().map(|_| new_histogram()).collect()),
        }
    }
}

impl AckStages {
    /// Records `d` for `stage`.
    pub fn record(&self, stage: Stage, d: Duration) {
        let us = (d.as_micros() as u64).max(1);
        let i = stage as usize;
        if let Some(h) = self.hists.borrow_mut().get_mut(i) {
            h.saturating_record(us);
        }
    }

    /// Records the time since `since` for `stage`.
    pub fn since(&self, stage: Stage, since: Instant) {
        self.record(stage, since.elapsed());
    }

    /// Every stage's name and histogram, in report order.
    pub fn snapshot(&self) -> Vec<(&'static str, Histogram<u64>)> {
        let h = self.hists.borrow();
        Stage::ALL
            .iter()
            .zip(h.iter())
            .map(|(s, h)| (s.name(), h.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_as_small_as_documented() {
        // 2 digits: 3,328 counters (26 KiB); 3 digits took 23,552.
        assert_eq!(new_histogram().distinct_values(), 3_328);
        let three = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).unwrap();
        assert_eq!(three.distinct_values(), 23_552);
    }

    #[test]
    fn stages_record_into_their_own_histogram() {
        let a = AckStages::default();
        a.record(Stage::WalSync, Duration::from_micros(700));
        a.record(Stage::WalSync, Duration::from_micros(900));
        a.record(Stage::Wake, Duration::ZERO);
        let s = a.snapshot();
        assert_eq!(s.len(), Stage::ALL.len());
        let sync = &s.iter().find(|(n, _)| *n == "wal_sync").unwrap().1;
        assert_eq!(sync.len(), 2);
        assert!(sync.max() >= 900);
        let wake = &s.iter().find(|(n, _)| *n == "wake").unwrap().1;
        assert_eq!(wake.len(), 1);
        assert_eq!(wake.max(), 1);
        assert_eq!(s.iter().find(|(n, _)| *n == "encode").unwrap().1.len(), 0);
    }
}
