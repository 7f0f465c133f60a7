//! The shard's points that are only in memory (and the WAL): the active tag
//! buffers, the buffers frozen by a flush round in progress (still served
//! by queries until their blocks are committed), and the tags whose buffer
//! filled a block. Owns no I/O and never blocks.

use std::cell::RefCell;
use std::time::Instant;

use ahash::AHashMap;

use crate::storage::buffer::{Buffers, Frozen};
use crate::Point;

/// In-memory points of one shard.
#[derive(Default)]
pub(crate) struct Memory {
    /// Active buffers, one per tag.
    pub bufs: RefCell<Buffers>,
    /// Buffers being flushed.
    pub frozen: RefCell<AHashMap<u32, Frozen>>,
    /// Tags whose buffer holds a block's worth of points.
    pub full: RefCell<Vec<u32>>,
}

impl Memory {
    /// Inserts points written in WAL records starting at `seq`. Returns true
    /// if a flush should be triggered (a block filled, or the buffers are
    /// over `budget` bytes).
    pub fn insert(&self, points: &[Point], seq: u64, now: Instant, budget: usize) -> bool {
        let mut bufs = self.bufs.borrow_mut();
        let mut full = self.full.borrow_mut();
        let before = full.len();
        bufs.insert_batch(points, seq, now, &mut full);
        full.len() > before || bufs.bytes() > budget
    }

    /// Bytes held by active buffers (what the memory budget limits).
    pub fn active_bytes(&self) -> usize {
        self.bufs.borrow().bytes()
    }

    /// Points and bytes held, active and frozen together.
    pub fn totals(&self) -> (u64, u64) {
        let bufs = self.bufs.borrow();
        let frozen = self.frozen.borrow();
        let points = bufs.points() + frozen.values().map(|b| b.len()).sum::<usize>();
        let bytes = bufs.bytes() + frozen.values().map(|b| b.bytes()).sum::<usize>();
        (points as u64, bytes as u64)
    }
}
