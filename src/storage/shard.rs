//! The shard: one WAL, the tag buffers, the active chunk and the block
//! index, tied together. [`Shard`] is a cheap `Rc` handle used by every task
//! of the shard's executor; state lives in `RefCell`s whose borrows are never
//! held across an `.await`.
//!
//! Write path: WAL append (synchronous, assigns sequence numbers) → insert
//! into tag buffers (so buffers see writes in log order) → await durability.
//! Flushing runs on a lower-priority task queue ([`super::flush`]); queries
//! are in [`super::query`]; open and recovery in [`super::recovery`].

use std::cell::{Cell, OnceCell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use ahash::AHashMap;
use event_listener::Event;
use glommio::task::JoinHandle;

use crate::storage::buffer::{Buffers, Frozen};
use crate::storage::chunk::ActiveChunk;
use crate::storage::index::Index;
use crate::storage::keepalive::KeepAliveStop;
use crate::storage::wal::Wal;
use crate::storage::{ShardConfig, ShardStats};
use crate::{Error, Point, Result};

/// What recovery found when the shard opened.
#[derive(Clone, Debug, Default)]
pub struct RecoveryReport {
    /// Time from `open` start to ready.
    pub duration: Duration,
    /// Of which: loading chunk headers and directories into the index.
    pub chunks_duration: Duration,
    /// Of which: replaying the WAL into buffers (flushes it forced included).
    pub replay_duration: Duration,
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
    /// Chunk directories that were damaged or stale and rebuilt from blocks.
    pub directories_rebuilt: u64,
    /// The checkpoint found: WAL records below it were already in blocks.
    pub checkpoint: u64,
}

impl std::fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "recovered in {:.1} ms (chunks {:.1} ms, WAL replay {:.1} ms): {} chunks, {} blocks indexed, {} directories rebuilt; WAL from checkpoint {}: {} records / {} points / {} bytes replayed, {} torn bytes dropped",
            self.duration.as_secs_f64() * 1e3,
            self.chunks_duration.as_secs_f64() * 1e3,
            self.replay_duration.as_secs_f64() * 1e3,
            self.chunks_loaded,
            self.blocks_indexed,
            self.directories_rebuilt,
            self.checkpoint,
            self.wal_records_replayed,
            self.wal_points_replayed,
            self.wal_bytes_replayed,
            self.torn_bytes_dropped
        )
    }
}

/// Shard state shared by its tasks.
pub(crate) struct Inner {
    pub cfg: ShardConfig,
    pub wal: OnceCell<Rc<Wal>>,
    pub bufs: RefCell<Buffers>,
    /// Buffers being flushed: still served by queries until their blocks
    /// are committed.
    pub frozen: RefCell<AHashMap<u32, Frozen>>,
    pub index: RefCell<Index>,
    /// Taken by the flusher for the duration of a round.
    pub active: RefCell<Option<ActiveChunk>>,
    pub next_chunk_id: Cell<u64>,
    pub checkpoint: Cell<u64>,
    /// Serialises flush rounds.
    pub flush_lock: glommio::sync::Semaphore,
    /// Wakes the flusher.
    pub flush_wanted: Event,
    /// Fired after each flush round (writers waiting for memory).
    pub flushed: Event,
    /// Tags whose buffer holds a block's worth of points.
    pub full: RefCell<Vec<u32>>,
    pub stats: RefCell<ShardStats>,
    pub recovery: RefCell<RecoveryReport>,
    pub closing: Cell<bool>,
    /// Set when a flush failed: the shard stops acknowledging writes.
    pub fenced: RefCell<Option<String>>,
    pub tasks: RefCell<Vec<JoinHandle<()>>>,
    /// What the flusher (or a caller's flush round) is doing now, for stall
    /// reports.
    pub flush_stage: Cell<&'static str>,
    /// How far `close` got, for stall reports.
    pub close_stage: Cell<&'static str>,
    /// Stops the task that keeps the executor from sleeping through a
    /// runnable task (see [`crate::storage::keepalive`]).
    pub keepalive: KeepAliveStop,
}

impl Inner {
    pub(crate) fn new(cfg: ShardConfig, keepalive: KeepAliveStop) -> Inner {
        Inner {
            cfg,
            wal: OnceCell::new(),
            bufs: RefCell::new(Buffers::default()),
            frozen: RefCell::new(AHashMap::new()),
            index: RefCell::new(Index::default()),
            active: RefCell::new(None),
            next_chunk_id: Cell::new(0),
            checkpoint: Cell::new(0),
            flush_lock: glommio::sync::Semaphore::new(1),
            flush_wanted: Event::new(),
            flushed: Event::new(),
            full: RefCell::new(Vec::new()),
            stats: RefCell::new(ShardStats::default()),
            recovery: RefCell::new(RecoveryReport::default()),
            closing: Cell::new(false),
            fenced: RefCell::new(None),
            tasks: RefCell::new(Vec::new()),
            flush_stage: Cell::new("idle"),
            close_stage: Cell::new("open"),
            keepalive,
        }
    }

    pub(crate) fn wal(&self) -> Result<&Rc<Wal>> {
        self.wal.get().ok_or(Error::Closed)
    }

    /// Inserts points written in WAL records starting at `seq` into the
    /// buffers. Returns true if a flush should be triggered.
    pub(crate) fn buffer_points(&self, points: &[Point], seq: u64, now: Instant) -> bool {
        let mut bufs = self.bufs.borrow_mut();
        let mut full = self.full.borrow_mut();
        let before = full.len();
        bufs.insert_batch(points, seq, now, &mut full);
        full.len() > before || bufs.bytes() > self.cfg.memory_budget
    }

    /// `Err` if a failed WAL write or sync, or a failed flush, fenced the
    /// shard (one fence for the whole shard), or if it is closing.
    pub(crate) fn check_fenced(&self) -> Result<()> {
        if let Some(why) = self.fenced.borrow().as_ref() {
            return Err(Error::Fenced(why.clone()));
        }
        if let Some(why) = self.wal.get().and_then(|w| w.fenced()) {
            return Err(Error::Fenced(why));
        }
        if self.closing.get() {
            return Err(Error::Closed);
        }
        Ok(())
    }
}

/// One shard's storage engine. A cheap handle (`Rc`): clone it into every
/// task of the shard's executor. Not `Send`.
#[derive(Clone)]
pub struct Shard {
    pub(crate) inner: Rc<Inner>,
}

impl Shard {
    /// Opens (creating or recovering) the shard in `config.dir`. Must run
    /// inside a glommio executor. See [`super::recovery`].
    pub async fn open(config: ShardConfig) -> Result<Shard> {
        super::recovery::open(config).await
    }

    /// Writes a batch. Resolves once the batch is durable under the shard's
    /// sync mode. Within a batch and across batches, a later write of the same
    /// `(tag, ts)` replaces the earlier one.
    pub async fn write(&self, points: &[Point]) -> Result<()> {
        if points.is_empty() {
            return Ok(());
        }
        let inner = &self.inner;
        inner.check_fenced()?;
        // Backpressure: past twice the budget, wait for the flusher.
        while inner.bufs.borrow().bytes() > 2 * inner.cfg.memory_budget {
            inner.stats.borrow_mut().backpressure_waits += 1;
            let listener = inner.flushed.listen();
            // Checked after listening: a flusher that exits (fence, close)
            // fires `flushed` after setting the reason, so no wake-up is lost.
            inner.check_fenced()?;
            inner.flush_wanted.notify(1);
            listener.await;
        }
        inner.check_fenced()?;
        let wal = inner.wal()?;
        let (first, last) = wal.append(points)?;
        if inner.buffer_points(points, first, Instant::now()) {
            inner.flush_wanted.notify(1);
        }
        {
            let mut s = inner.stats.borrow_mut();
            s.points_written += points.len() as u64;
            s.write_batches += 1;
        }
        wal.wait_durable(last).await
    }

    /// Points of `tag` with `start <= ts < end`, sorted by timestamp.
    pub async fn range(&self, tag: u32, start: i64, end: i64) -> Result<Vec<Point>> {
        super::query::range(&self.inner, tag, start, end).await
    }

    /// The point of `tag` with the greatest timestamp.
    pub async fn latest(&self, tag: u32) -> Result<Option<Point>> {
        super::query::latest(&self.inner, tag).await
    }

    /// Flushes every buffered point to blocks and advances the checkpoint.
    pub async fn flush(&self) -> Result<()> {
        self.inner.check_fenced()?;
        super::flush::flush_all(&self.inner).await
    }

    /// A snapshot of the shard's counters.
    pub fn stats(&self) -> ShardStats {
        let inner = &self.inner;
        let mut s = inner.stats.borrow().clone();
        if let Some(w) = inner.wal.get() {
            let c = w.counters();
            s.wal_bytes = c.bytes;
            s.wal_syncs = c.syncs;
            s.wal_synced_records = c.synced_records;
            s.wal_max_group = c.max_group;
            s.wal_segments_recycled = c.recycled;
        }
        let bufs = inner.bufs.borrow();
        let frozen = inner.frozen.borrow();
        s.points_buffered =
            (bufs.points() + frozen.values().map(|b| b.len()).sum::<usize>()) as u64;
        s.buffered_bytes =
            (bufs.bytes() + frozen.values().map(|b| b.bytes()).sum::<usize>()) as u64;
        s
    }

    /// Internal state (WAL, flush lock, fence, buffers), for diagnosing
    /// stalls; the format is not stable.
    pub fn debug_state(&self) -> String {
        let i = &self.inner;
        format!(
            "{}; close stage {}; flush stage {}; flush permits {}; fenced {:?}; closing {}; frozen {}; full {}; buffered {} bytes; tasks {}; {}",
            i.wal.get().map_or("no wal".into(), |w| w.debug_state()),
            i.close_stage.get(),
            i.flush_stage.get(),
            i.flush_lock.available(),
            i.fenced.borrow(),
            i.closing.get(),
            i.frozen.borrow().len(),
            i.full.borrow().len(),
            i.bufs.borrow().bytes(),
            i.tasks.borrow().len(),
            crate::storage::file::in_flight_report()
        )
    }

    /// What recovery found when this shard opened.
    pub fn recovery(&self) -> RecoveryReport {
        self.inner.recovery.borrow().clone()
    }

    /// Waits for pending writes, flushes every buffer to blocks (so the next
    /// open replays nothing), stops the shard's tasks and closes its files.
    pub async fn close(self) -> Result<()> {
        if self.inner.closing.replace(true) {
            return Err(Error::Closed);
        }
        let closed = self.close_inner().await;
        self.inner.keepalive.stop();
        closed
    }

    async fn close_inner(&self) -> Result<()> {
        let inner = &self.inner;
        let wal = inner.wal()?.clone();
        let last = wal.next_seq();
        inner.close_stage.set("waiting for durability");
        let durable = if last > 0 {
            wal.wait_durable(last - 1).await
        } else {
            Ok(())
        };
        inner.close_stage.set("final flush");
        let flushed = if durable.is_ok() && inner.fenced.borrow().is_none() {
            super::flush::flush_all(inner).await
        } else {
            Ok(())
        };
        wal.begin_close();
        inner.flush_wanted.notify(usize::MAX);
        let tasks: Vec<_> = inner.tasks.borrow_mut().drain(..).collect();
        inner.close_stage.set("waiting for tasks");
        for t in tasks {
            t.await;
        }
        inner.close_stage.set("closing WAL files");
        wal.close_files().await?;
        inner.close_stage.set("closing chunk files");
        let files = inner.index.borrow_mut().take_files();
        inner.active.borrow_mut().take();
        for f in files {
            if let Ok(f) = Rc::try_unwrap(f) {
                f.close().await?;
            }
        }
        inner.close_stage.set("closed");
        durable?;
        flushed
    }
}
