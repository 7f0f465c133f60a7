//! TEMPORARY in-memory stand-in with the final `Shard` API, so the network
//! layer can be built in parallel. Replaced by the real engine before landing.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use crate::storage::{ShardConfig, ShardStats};
use crate::{Point, Result};

/// What recovery found when the shard opened.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    /// Time from `open` start to ready.
    pub duration: Duration,
    /// WAL records replayed.
    pub wal_records_replayed: u64,
    /// Points replayed from the WAL into buffers.
    pub wal_points_replayed: u64,
    /// WAL bytes replayed.
    pub wal_bytes_replayed: u64,
    /// Bytes of torn tail dropped.
    pub torn_bytes_dropped: u64,
    /// Chunk files loaded.
    pub chunks_loaded: u64,
    /// Blocks indexed.
    pub blocks_indexed: u64,
    /// Directory pages that failed their checksum and were rebuilt from blocks.
    pub directories_rebuilt: u64,
}

/// One shard's storage engine. A cheap handle (`Rc`): clone it into every
/// task of the shard's executor. Not `Send`.
#[derive(Clone)]
pub struct Shard {
    inner: Rc<RefCell<Inner>>,
}

struct Inner {
    data: BTreeMap<(u32, i64), Point>,
    stats: ShardStats,
    recovery: RecoveryReport,
}

impl Shard {
    /// Opens (creating or recovering) the shard in `config.dir`. Must run
    /// inside a glommio executor.
    pub async fn open(config: ShardConfig) -> Result<Shard> {
        let _ = config;
        Ok(Shard {
            inner: Rc::new(RefCell::new(Inner {
                data: BTreeMap::new(),
                stats: ShardStats::default(),
                recovery: RecoveryReport::default(),
            })),
        })
    }

    /// Writes a batch. Resolves once the batch is durable under the shard's
    /// sync mode. Within a batch and across batches, a later write of the same
    /// `(tag, ts)` replaces the earlier one.
    pub async fn write(&self, points: &[Point]) -> Result<()> {
        let mut i = self.inner.borrow_mut();
        for p in points {
            i.data.insert((p.tag, p.ts), *p);
        }
        i.stats.points_written += points.len() as u64;
        i.stats.write_batches += 1;
        Ok(())
    }

    /// Points of `tag` with `start <= ts < end`, sorted by timestamp.
    pub async fn range(&self, tag: u32, start: i64, end: i64) -> Result<Vec<Point>> {
        if start >= end {
            return Ok(Vec::new());
        }
        let i = self.inner.borrow();
        Ok(i.data
            .range((tag, start)..(tag, end))
            .map(|(_, p)| *p)
            .collect())
    }

    /// The point of `tag` with the greatest timestamp.
    pub async fn latest(&self, tag: u32) -> Result<Option<Point>> {
        let i = self.inner.borrow();
        Ok(i.data
            .range((tag, i64::MIN)..=(tag, i64::MAX))
            .next_back()
            .map(|(_, p)| *p))
    }

    /// Flushes every buffered point to blocks and advances the checkpoint.
    pub async fn flush(&self) -> Result<()> {
        Ok(())
    }

    /// A snapshot of the shard's counters.
    pub fn stats(&self) -> ShardStats {
        self.inner.borrow().stats.clone()
    }

    /// What recovery found when this shard opened.
    pub fn recovery(&self) -> RecoveryReport {
        self.inner.borrow().recovery.clone()
    }

    /// Flushes, syncs and closes every file. Pending writes complete first.
    pub async fn close(self) -> Result<()> {
        Ok(())
    }
}
