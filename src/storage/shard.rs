//! The shard: one WAL, the tag buffers, the active chunk and the block
//! index, tied together. [`Shard`] is a cheap `Rc` handle used by every task
//! of the shard's executor; state lives in `RefCell`s whose borrows are never
//! held across an `.await`.
//!
//! Write path: WAL append (synchronous, assigns sequence numbers) → insert
//! into tag buffers (so buffers see writes in log order) → await durability.
//! Flushing runs on a lower-priority task queue ([`super::flush`]); queries
//! are in [`super::query`]; open and recovery in [`super::recovery`].

use std::cell::{OnceCell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::task::JoinHandle;

use crate::aggregate::{Func, Interp, Partial, Sample, Slot, WindowSpec};
use crate::storage::ack::Stage;
use crate::storage::aggregate;
use crate::storage::chunk::Kind;
use crate::storage::compact::{self, retention, Compactor, Reason};
use crate::storage::config::ShardConfig;
use crate::storage::control::Control;
use crate::storage::disk::Disk;
use crate::storage::error::{Error, Result};
use crate::storage::flush::{self, Flusher};
use crate::storage::keepalive::KeepAliveStop;
use crate::storage::memory::Memory;
use crate::storage::query;
use crate::storage::snapshot::{self, Snapshot, TagSnap};
use crate::storage::stats::ShardStats;
use crate::storage::wal::Wal;
use crate::Point;

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
    /// Points put back from the buffer snapshot of a clean close (then
    /// the WAL was only read, not replayed).
    pub snapshot_points: u64,
    /// WAL records read but not replayed: the snapshot held them.
    pub wal_records_skipped: u64,
    /// Chunk files loaded.
    pub chunks_loaded: u64,
    /// Blocks indexed.
    pub blocks_indexed: u64,
    /// Chunk directories that were damaged or stale and rebuilt from blocks.
    pub directories_rebuilt: u64,
    /// The checkpoint found: WAL records below it were already in blocks.
    pub checkpoint: u64,
    /// Outputs of unfinished compaction jobs deleted (their inputs stay).
    pub compactions_rolled_back: u64,
    /// Inputs of finished compaction jobs whose deletion had not reached
    /// the disk, deleted now.
    pub superseded_deleted: u64,
}

impl std::fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "recovered in {:.1} ms (chunks {:.1} ms, WAL replay {:.1} ms): {} chunks, {} segments indexed, {} directories rebuilt, {} unfinished compaction outputs and {} superseded chunks deleted; WAL from checkpoint {}: {} records / {} points / {} bytes replayed, {} torn bytes dropped; {} points from the buffer snapshot ({} WAL records it held read, not replayed)",
            self.duration.as_secs_f64() * 1e3,
            self.chunks_duration.as_secs_f64() * 1e3,
            self.replay_duration.as_secs_f64() * 1e3,
            self.chunks_loaded,
            self.blocks_indexed,
            self.directories_rebuilt,
            self.compactions_rolled_back,
            self.superseded_deleted,
            self.checkpoint,
            self.wal_records_replayed,
            self.wal_points_replayed,
            self.wal_bytes_replayed,
            self.torn_bytes_dropped,
            self.snapshot_points,
            self.wal_records_skipped
        )
    }
}

/// Shard state shared by its tasks: the parts (each an `Rc`, so a task
/// such as the flusher holds just the parts it works on), the WAL once
/// recovery has replayed it, and the shard's own tasks.
pub(crate) struct Inner {
    pub cfg: Rc<ShardConfig>,
    pub wal: OnceCell<Rc<Wal>>,
    pub mem: Rc<Memory>,
    pub disk: Rc<Disk>,
    pub ctl: Rc<Control>,
    pub stats: Rc<RefCell<ShardStats>>,
    /// A flush round a full disk stopped (see [`flush::Stalled`]).
    pub stalled: Rc<flush::Stalled>,
    pub recovery: RefCell<RecoveryReport>,
    pub tasks: RefCell<Vec<JoinHandle<()>>>,
    /// Stops the task that keeps the executor from sleeping through a
    /// runnable task (see [`crate::storage::keepalive`]).
    pub keepalive: KeepAliveStop,
}

impl Inner {
    pub(crate) fn new(cfg: ShardConfig, keepalive: KeepAliveStop) -> Inner {
        Inner {
            cfg: Rc::new(cfg),
            wal: OnceCell::new(),
            mem: Rc::default(),
            disk: Rc::default(),
            ctl: Rc::default(),
            stats: Rc::default(),
            stalled: Rc::default(),
            recovery: RefCell::new(RecoveryReport::default()),
            tasks: RefCell::new(Vec::new()),
            keepalive,
        }
    }

    pub(crate) fn wal(&self) -> Result<&Rc<Wal>> {
        self.wal.get().ok_or(Error::Closed)
    }

    /// The parts a flush round works on.
    pub(crate) fn flusher(&self) -> Flusher {
        Flusher {
            cfg: self.cfg.clone(),
            mem: self.mem.clone(),
            disk: self.disk.clone(),
            ctl: self.ctl.clone(),
            stats: self.stats.clone(),
            wal: self.wal.get().cloned(),
            stalled: self.stalled.clone(),
        }
    }

    /// The parts compaction works on.
    pub(crate) fn compactor(&self) -> Compactor {
        Compactor {
            cfg: self.cfg.clone(),
            mem: self.mem.clone(),
            disk: self.disk.clone(),
            ctl: self.ctl.clone(),
            stats: self.stats.clone(),
            flusher: self.flusher(),
        }
    }

    /// The first timestamp still inside the retention window.
    fn cutoff(&self) -> i64 {
        retention::cutoff(self.cfg.retention, compact::now_us())
    }

    /// See [`Control::check`].
    pub(crate) fn check_fenced(&self) -> Result<()> {
        self.ctl.check(self.wal.get().map(|w| &**w))
    }
}

/// One shard's storage engine. A cheap handle (`Rc`): clone it into every
/// task of the shard's executor. Not `Send`.
#[derive(Clone)]
pub struct Shard {
    pub(crate) inner: Rc<Inner>,
}

impl Shard {
    /// Writes a batch. Resolves once the batch is durable under the shard's
    /// sync mode. Within a batch and across batches, a later write of the same
    /// `(tag, ts)` replaces the earlier one.
    pub async fn write(&self, points: &[Point]) -> Result<()> {
        if points.is_empty() {
            return Ok(());
        }
        let inner = &self.inner;
        inner.check_fenced()?;
        let started = Instant::now();
        let flushes_before = inner.stats.borrow().flushes;
        let flushing_before = flush::in_round(&inner.ctl);
        // Backpressure: past twice the budget, wait for the flusher, unless
        // it waits for disk space itself: then the write is refused.
        while inner.mem.active_bytes() > 2 * inner.cfg.memory_budget {
            if let Some(why) = inner.ctl.no_room.borrow().clone() {
                inner.stats.borrow_mut().disk_full_refusals += 1;
                return Err(Error::refused_for_space(why, inner.cfg.dir.join("chunks")));
            }
            inner.stats.borrow_mut().backpressure_waits += 1;
            let listener = inner.ctl.flushed.listen();
            // Checked after listening: a flusher that exits (fence, close)
            // fires `flushed` after setting the reason, so no wake-up is lost.
            inner.check_fenced()?;
            inner.ctl.flush_wanted.notify(1);
            listener.await;
        }
        inner.check_fenced()?;
        inner.ctl.last_write.set(Instant::now());
        let wal = inner.wal()?;
        let t = Instant::now();
        let (first, last) = match wal.append(points) {
            Ok(x) => x,
            Err(e) => {
                if e.is_no_space() {
                    inner.stats.borrow_mut().disk_full_refusals += 1;
                }
                return Err(e);
            }
        };
        let stages = wal.stages();
        stages.since(Stage::Encode, t);
        let t = Instant::now();
        if inner.mem.insert(points, first, t, inner.cfg.memory_budget) {
            inner.ctl.flush_wanted.notify(1);
        }
        stages.since(Stage::Insert, t);
        {
            let mut s = inner.stats.borrow_mut();
            s.points_written += points.len() as u64;
            s.write_batches += 1;
        }
        let t = Instant::now();
        let durable = wal.wait_durable(last).await;
        if durable.is_ok() {
            stages.since(Stage::DurableWait, t);
            let total = started.elapsed();
            stages.record(Stage::Shard, total);
            let flushed = inner.stats.borrow().flushes != flushes_before;
            if flushing_before || flushed || flush::in_round(&inner.ctl) {
                stages.record(Stage::ShardFlushing, total);
            }
        }
        durable
    }

    /// Where acknowledgements spent their time in this shard, by stage
    /// (see [`crate::storage::ack`]); empty before the WAL is open.
    pub fn ack_stages(&self) -> Vec<(&'static str, hdrhistogram::Histogram<u64>)> {
        self.inner
            .wal
            .get()
            .map(|w| w.stages().snapshot())
            .unwrap_or_default()
    }

    /// Points of `tag` with `start <= ts < end`, sorted by timestamp
    /// (never older than the retention window).
    pub async fn range(&self, tag: u32, start: i64, end: i64) -> Result<Vec<Point>> {
        self.range_at_most(tag, start, end, u64::MAX).await
    }

    /// [`Shard::range`], refused with [`Error::Limit`] before any block is
    /// read when its count bound (see [`query::count_bound`]) is past
    /// `max_points`.
    pub async fn range_at_most(
        &self,
        tag: u32,
        start: i64,
        end: i64,
        max_points: u64,
    ) -> Result<Vec<Point>> {
        let i = &self.inner;
        let start = start.max(i.cutoff());
        query::range(&i.mem, &i.disk, &i.stats, tag, start, end, max_points).await
    }

    /// [`Shard::range_at_most`], answered as pieces for the client to
    /// decode when the range's runs do not overlap in time (see
    /// [`query::range_pieces`]).
    pub async fn range_pieces_at_most(
        &self,
        tag: u32,
        start: i64,
        end: i64,
        max_points: u64,
    ) -> Result<query::RangeAnswer> {
        let i = &self.inner;
        let start = start.max(i.cutoff());
        query::range_pieces(&i.mem, &i.disk, &i.stats, tag, start, end, max_points).await
    }

    /// An upper bound of the points of `tag` with `start <= ts < end`
    /// (see [`query::count_bound`]); no block is read.
    pub fn count_bound(&self, tag: u32, start: i64, end: i64) -> (u64, i64, i64) {
        let i = &self.inner;
        let start = start.max(i.cutoff());
        query::count_bound(&i.mem, &i.disk, tag, start, end)
    }

    /// The point of `tag` with the greatest timestamp (inside the retention
    /// window).
    pub async fn latest(&self, tag: u32) -> Result<Option<Point>> {
        let i = &self.inner;
        let p = query::latest(&i.mem, &i.disk, &i.stats, tag).await?;
        Ok(p.filter(|p| p.ts >= i.cutoff()))
    }

    fn scope(&self, tag: u32, good_only: bool) -> aggregate::Scope<'_> {
        let i = &self.inner;
        aggregate::Scope {
            mem: &i.mem,
            disk: &i.disk,
            stats: &i.stats,
            tag,
            cutoff: i.cutoff(),
            good_only,
        }
    }

    /// `func` per window of `spec` over `tag`, computed while walking the
    /// tag's segments (a segment wholly inside one window and overlapping
    /// nothing else is answered from its stored summary). Also returns the
    /// value in force at the start (the last visible point before it) when
    /// `want_before` is set or the function is a time-weighted average.
    /// With `good_only`, points of quality below 192 are invisible.
    pub async fn aggregate(
        &self,
        tag: u32,
        spec: &WindowSpec,
        func: Func,
        good_only: bool,
        want_before: bool,
    ) -> Result<(Vec<Slot>, Option<Sample>)> {
        aggregate::windows(&self.scope(tag, good_only), spec, func, want_before).await
    }

    /// The [`Partial`] of each window of `spec` over `tag` (`None`: empty),
    /// for merging across series.
    pub async fn aggregate_partials(
        &self,
        tag: u32,
        spec: &WindowSpec,
        good_only: bool,
        m2: bool,
    ) -> Result<Vec<Option<Partial>>> {
        aggregate::partials(&self.scope(tag, good_only), spec, m2).await
    }

    /// Values of `tag` at `start, start + every, …` up to `end` inclusive
    /// (see [`crate::aggregate::Interpolator`]), at most `max_samples`.
    #[allow(clippy::too_many_arguments)]
    pub async fn interpolated(
        &self,
        tag: u32,
        start: i64,
        end: i64,
        every: i64,
        interp: Interp,
        good_only: bool,
        max_samples: usize,
    ) -> Result<Vec<(i64, Option<f64>)>> {
        let sc = self.scope(tag, good_only);
        aggregate::interpolated(&sc, start, end, every, interp, max_samples).await
    }

    /// Plot values of `tag` over `[start, end)` for `pixels` intervals (see
    /// [`crate::aggregate::Plotter`]), at most `max_pixels`.
    pub async fn plot(
        &self,
        tag: u32,
        start: i64,
        end: i64,
        pixels: usize,
        good_only: bool,
        max_pixels: usize,
    ) -> Result<Vec<Sample>> {
        aggregate::plot(&self.scope(tag, good_only), start, end, pixels, max_pixels).await
    }

    /// The last visible point of `tag` at or before `time` (PI AtOrBefore).
    pub async fn at_or_before(
        &self,
        tag: u32,
        time: i64,
        good_only: bool,
    ) -> Result<Option<Sample>> {
        aggregate::at_or_before(&self.scope(tag, good_only), time).await
    }

    /// Flushes every buffered point to blocks and advances the checkpoint.
    pub async fn flush(&self) -> Result<()> {
        self.inner.check_fenced()?;
        flush::flush_all(&self.inner.flusher()).await
    }

    /// Flushes, seals the active chunk and compacts everything into one run
    /// per time partition now (what the shard also does by itself after a
    /// quiet spell), then applies retention. Returns whether a job ran.
    pub async fn compact(&self) -> Result<bool> {
        self.inner.check_fenced()?;
        let c = self.inner.compactor();
        let _permit = c.ctl.compact_lock.acquire_permit(1).await;
        let ran = compact::compact_once(&c, Some(Reason::Asked)).await?;
        retention::apply(&c, compact::now_us()).await?;
        Ok(ran)
    }

    /// Applies retention as if the clock read `now_us` (tests).
    pub async fn apply_retention_at(&self, now_us: i64) -> Result<u64> {
        let c = self.inner.compactor();
        let _permit = c.ctl.compact_lock.acquire_permit(1).await;
        retention::apply(&c, now_us).await
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
        (s.points_buffered, s.buffered_bytes) = inner.mem.totals();
        if let Some(w) = inner.wal.get() {
            s.wal_live_bytes = w.live_bytes();
            s.wal_free_bytes = w.free_bytes();
            s.disk_full = u64::from(w.full().is_some() || inner.ctl.no_room.borrow().is_some());
        }
        let index = inner.disk.index.borrow();
        s.segments_indexed = index.segments();
        for (_, c) in index.chunks() {
            s.chunks += 1;
            s.points_on_disk += c.points;
            match c.kind {
                Kind::Flush => {
                    s.disk_flush_bytes += c.bytes;
                    if c.sealed {
                        s.compaction_backlog_bytes += c.bytes;
                    }
                }
                Kind::Compacted => {
                    s.disk_compacted_bytes += c.bytes;
                    s.disk_rollup_bytes += c.rollup_bytes;
                }
                Kind::V1 => {
                    s.disk_v1_bytes += c.bytes;
                    s.compaction_backlog_bytes += c.bytes;
                }
            }
        }
        s
    }

    /// Internal state (WAL, flush lock, fence, buffers), for diagnosing
    /// stalls; the format is not stable.
    pub fn debug_state(&self) -> String {
        let i = &self.inner;
        format!(
            "{}; close stage {}; flush stage {}; flush permits {}; fenced {:?}; no room {:?}; closing {}; frozen {}; full {}; buffered {} bytes; tasks {}; {}",
            i.wal.get().map_or("no wal".into(), |w| w.debug_state()),
            i.ctl.close_stage.get(),
            i.ctl.flush_stage.get(),
            i.ctl.flush_lock.available(),
            i.ctl.fenced.borrow(),
            i.ctl.no_room.borrow(),
            i.ctl.closing.get(),
            i.mem.frozen.borrow().len(),
            i.mem.full.borrow().len(),
            i.mem.active_bytes(),
            i.tasks.borrow().len(),
            crate::storage::file::in_flight_report()
        )
    }

    /// What recovery found when this shard opened.
    pub fn recovery(&self) -> RecoveryReport {
        self.inner.recovery.borrow().clone()
    }

    /// Waits for pending writes to be durable, stops the shard's tasks and
    /// closes its files. Buffers are not written into blocks (the WAL holds
    /// them): their compressed segments go into a buffer snapshot, so the
    /// next open reads them back instead of replaying the WAL.
    pub async fn close(self) -> Result<()> {
        if self.inner.ctl.closing.replace(true) {
            return Err(Error::Closed);
        }
        let closed = self.close_inner().await;
        self.inner.keepalive.stop();
        closed
    }

    /// Writes the buffers as a snapshot (see [`crate::storage::snapshot`])
    /// so the next open need not replay the WAL into them: only when every
    /// record is durable and in the buffers, nothing is fenced and no flush
    /// round waits for disk space. A failure only costs the next open its
    /// replay. Empties the buffers (the shard is closing).
    async fn write_snapshot(&self, wal: &Wal) {
        let inner = &self.inner;
        let whole = inner.ctl.fenced.borrow().is_none()
            && wal.fenced().is_none()
            && !inner.stalled.is_pending()
            && inner.mem.frozen.borrow().is_empty();
        if !whole {
            return;
        }
        inner.ctl.close_stage.set("writing the buffer snapshot");
        let started = Instant::now();
        let tags: Vec<TagSnap> = inner
            .mem
            .bufs
            .borrow_mut()
            .drain_segments()
            .into_iter()
            .map(|(tag, min_seq, max_seq, segs)| TagSnap {
                tag,
                min_seq,
                max_seq,
                segs,
            })
            .collect();
        if tags.is_empty() {
            return;
        }
        let snap = Snapshot {
            wal_end: wal.next_seq(),
            checkpoint: inner.disk.checkpoint.get(),
            tags,
        };
        match snapshot::write(&inner.cfg.dir, &snap).await {
            Ok(bytes) => log::info!(
                "{}: buffer snapshot of {} tags, {} points, {bytes} bytes written in {:.1} ms",
                inner.cfg.dir.display(),
                snap.tags.len(),
                snap.points(),
                started.elapsed().as_secs_f64() * 1e3
            ),
            Err(e) => log::warn!(
                "{}: no buffer snapshot ({e}); the next start replays the WAL",
                inner.cfg.dir.display()
            ),
        }
    }

    async fn close_inner(&self) -> Result<()> {
        let inner = &self.inner;
        let wal = inner.wal()?.clone();
        let last = wal.next_seq();
        inner.ctl.close_stage.set("waiting for durability");
        // Before waiting: a log waiting for disk space gives up its
        // unwritten records at close (they were never acknowledged).
        wal.begin_close();
        let durable = if last > 0 {
            wal.wait_durable(last - 1).await
        } else {
            Ok(())
        };
        inner.ctl.flush_wanted.notify(usize::MAX);
        inner.ctl.compact_wanted.notify(usize::MAX);
        let tasks: Vec<_> = inner.tasks.borrow_mut().drain(..).collect();
        inner.ctl.close_stage.set("waiting for tasks");
        for t in tasks {
            t.await;
        }
        if durable.is_ok() {
            self.write_snapshot(&wal).await;
        }
        inner.ctl.close_stage.set("closing WAL files");
        wal.close_files().await?;
        inner.ctl.close_stage.set("closing chunk files");
        let files = inner.disk.index.borrow_mut().take_files();
        inner.disk.active.borrow_mut().take();
        inner.disk.active_entries.borrow_mut().clear();
        for f in files {
            if let Ok(f) = Rc::try_unwrap(f) {
                f.close().await?;
            }
        }
        inner.ctl.close_stage.set("closed");
        durable
    }
}
