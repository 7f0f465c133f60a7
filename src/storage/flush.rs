//! Flushing: moving tag buffers into packed blocks of the active flush
//! chunk, continuously and in bounded rounds.
//!
//! A round freezes the chosen buffers into compressed segments (still
//! visible to queries; a buffer without out-of-order points hands over its
//! encoded bytes as they are), packs the segments into shared blocks in tag
//! order (a small flush costs its own bytes plus a 36-byte table entry, not
//! a block per tag; a tag with a block's worth gets a block of its own),
//! writes them with many writes in flight, then commits ([`Chunk::commit`]:
//! `fdatasync`, header with the new checkpoint, `fdatasync`). Only then are
//! the segments published to the index and the frozen buffers dropped, and
//! WAL segments below the checkpoint released. A full chunk is sealed (its
//! directory written) and the next one created. Rounds are serialised by
//! the shard's flush lock.
//!
//! The flusher task runs on a low-priority task queue and picks, per round,
//! at most [`ROUND_BYTES`] of buffers: tags that filled a block, the
//! largest buffers while over the memory budget, the tags pinning the
//! oldest WAL segment while the log is over half its budget (so the log is
//! trimmed a segment at a time, never 100,000 tags at once), and buffers
//! older than the flush age.
//!
//! A full disk does not fence the shard: chunk files are preallocated, so
//! ENOSPC can only come from creating the next one, before anything is in
//! it. The round then stops with what it has not written still frozen
//! (served by queries, counted by the checkpoint) and kept as [`Stalled`];
//! [`Control::no_room`] says why, and the flusher retries that remainder
//! every 300 ms before it freezes anything new.

use crate::storage::slice::Slice;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::storage::block::{self, Part, BLOCK_SIZE, BODY, MAX_SEGMENTS};
use crate::storage::buffer::Frozen;
use crate::storage::chunk::{self, block_offset, Chunk, DirEntry, Kind, V2_ORDER};
use crate::storage::config::ShardConfig;
use crate::storage::control::Control;
use crate::storage::disk::Disk;
use crate::storage::error::{Error, Result};
use crate::storage::file::sync_dir;
use crate::storage::index::ChunkInfo;
use crate::storage::memory::Memory;
use crate::storage::stats::ShardStats;
use crate::storage::wal::Wal;

/// Buffer bytes one round takes at most (its output is about as large).
pub const ROUND_BYTES: usize = 1 << 20;
/// Tags one round takes at most.
const ROUND_TAGS: usize = 16_384;
/// Blocks per write request.
const BLOCKS_PER_WRITE: usize = 64;
/// Buffers one pick looks at for the flush age (a sweep over 100,000 tags
/// takes 13 picks; the flusher picks at least once a second).
const AGE_SCAN: usize = 8_192;
/// A paced round is followed by a pause this many times its own length.
const PACE: u32 = 4;
/// The longest pause after a paced round.
const MAX_PAUSE: Duration = Duration::from_millis(500);

/// The parts of a shard a flush round works on (cheap `Rc` clones of the
/// shard's own): its in-memory points, its durable blocks, its life cycle,
/// counters, and the WAL (absent while recovery replays it).
#[derive(Clone)]
pub(crate) struct Flusher {
    pub cfg: Rc<ShardConfig>,
    pub mem: Rc<Memory>,
    pub disk: Rc<Disk>,
    pub ctl: Rc<Control>,
    pub stats: Rc<RefCell<ShardStats>>,
    pub wal: Option<Rc<Wal>>,
    /// A round a full disk stopped, retried first.
    pub stalled: Rc<Stalled>,
}

impl Flusher {
    fn check(&self) -> Result<()> {
        self.ctl.check(self.wal.as_deref())
    }
}

/// What a flush takes from a tag's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Take {
    /// Everything.
    All,
    /// Only the sealed, block-sized segments (the tag filled a block); the
    /// head stays buffered. Falls back to `All` if the buffer holds
    /// out-of-order points.
    Sealed,
}

/// One frozen segment to place: its tag, its index in the tag's frozen
/// list, its write order and the lowest WAL sequence it may hold.
#[derive(Clone)]
struct Planned {
    tag: u32,
    seg: usize,
    order: u64,
    min_seq: u64,
    footprint: usize,
}

/// The part of a round that a full disk stopped: plan entries not yet
/// written (perhaps none, when only sealing a full chunk failed), whose
/// segments stay frozen until a later round writes them.
#[derive(Default)]
pub(crate) struct Stalled(RefCell<Option<Vec<Planned>>>);

impl Stalled {
    /// Whether a stopped round waits to be retried.
    pub fn is_pending(&self) -> bool {
        self.0.borrow().is_some()
    }
}

/// How writing a round's plan stopped short.
enum PlanError {
    /// A write, commit or seal failed: the shard is fenced.
    Failed(Error),
    /// The next chunk file could not be created for lack of space; plan
    /// entries from `next` on were not written.
    NoRoom { err: Error, next: usize },
}

impl From<Error> for PlanError {
    fn from(e: Error) -> Self {
        PlanError::Failed(e)
    }
}

/// Flushes every buffered tag, in bounded rounds (takes the flush lock per
/// round). Writes that arrive meanwhile may stay buffered.
pub(crate) async fn flush_all(f: &Flusher) -> Result<()> {
    let mut tags: Vec<u32> = f.mem.bufs.borrow().iter().map(|(t, _)| t).collect();
    tags.sort_unstable();
    for part in tags.chunks(ROUND_TAGS) {
        let next = f.wal.as_ref().ok_or(Error::Closed)?.next_seq();
        let _permit = f.ctl.flush_lock.acquire_permit(1).await;
        flush_round(f, part.iter().map(|&t| (t, Take::All)).collect(), next).await?;
    }
    Ok(())
}

/// Whether a flush round is under way (between freezing its tags and
/// counting it), from the flush stage the rounds report.
pub(crate) fn in_round(ctl: &Control) -> bool {
    let stage = ctl.flush_stage.get();
    stage.starts_with("round: ") && stage != "round: done"
}

/// Flushes every buffered tag, with `wal_next` as in [`flush_round`] (takes
/// the flush lock). Recovery uses it while replaying, before the WAL exists.
pub(crate) async fn flush_everything(f: &Flusher, wal_next: u64) -> Result<()> {
    f.ctl
        .flush_stage
        .set("flush_all: waiting for the flush lock");
    let _permit = f.ctl.flush_lock.acquire_permit(1).await;
    let mut tags: Vec<(u32, Take)> = f
        .mem
        .bufs
        .borrow()
        .iter()
        .map(|(t, _)| (t, Take::All))
        .collect();
    tags.sort_unstable();
    flush_round(f, tags, wal_next).await
}

/// Flushes `tags`. `wal_next` is a WAL sequence number no greater than any
/// record not yet in the buffers (the checkpoint when nothing is buffered).
/// The caller holds the flush lock. A round that a full disk stopped
/// earlier is written first; until it is, nothing new is frozen and the
/// call fails with the no-space error.
pub(crate) async fn flush_round(f: &Flusher, tags: Vec<(u32, Take)>, wal_next: u64) -> Result<()> {
    let stalled = f.stalled.0.borrow_mut().take();
    if let Some(plan) = stalled {
        // First a chunk with room (sealing the full one), then the rest.
        match take_active(f).await {
            Ok(c) => *f.disk.active.borrow_mut() = Some(c),
            Err(TakeError::NoRoom(err)) => {
                *f.ctl.no_room.borrow_mut() = Some(err.reason());
                *f.stalled.0.borrow_mut() = Some(plan);
                return Err(err);
            }
            Err(TakeError::Failed(e)) => {
                log::error!("flush failed in {}, shard fenced: {e}", f.cfg.dir.display());
                f.ctl.fence(e.to_string());
                return Err(e);
            }
        }
        if plan.is_empty() && f.ctl.no_room.borrow_mut().take().is_some() {
            log::info!("flush in {}: disk space is back", f.cfg.dir.display());
        }
        run_plan(f, plan, wal_next).await?;
    }
    let plan = freeze(f, tags);
    run_plan(f, plan, wal_next).await
}

/// Writes a frozen plan, then releases WAL segments and counts the round.
async fn run_plan(f: &Flusher, plan: Vec<Planned>, wal_next: u64) -> Result<()> {
    let started = Instant::now();
    if plan.is_empty() {
        return Ok(());
    }
    let result = write_plan(f, &plan, wal_next).await;
    let (segments, blocks, bytes) = match result {
        Ok(x) => x,
        Err(PlanError::NoRoom { err, next }) => {
            let why = err.reason();
            if f.ctl.no_room.borrow().is_none() {
                log::warn!(
                    "flush in {} waits for disk space: {why}",
                    f.cfg.dir.display()
                );
            }
            *f.ctl.no_room.borrow_mut() = Some(why);
            *f.stalled.0.borrow_mut() = Some(plan[next..].to_vec());
            // Writers waiting for memory see the refusal now.
            f.ctl.flushed.notify(usize::MAX);
            return Err(err);
        }
        Err(PlanError::Failed(e)) => {
            log::error!("flush failed in {}, shard fenced: {e}", f.cfg.dir.display());
            f.ctl.fence(e.to_string());
            return Err(e);
        }
    };
    if f.ctl.no_room.borrow_mut().take().is_some() {
        log::info!("flush in {}: disk space is back", f.cfg.dir.display());
    }
    if let Some(wal) = &f.wal {
        f.ctl.flush_stage.set("round: wal release");
        wal.release(f.disk.checkpoint.get()).await?;
    }
    f.ctl.flush_stage.set("round: done");
    let micros = started.elapsed().as_micros() as u64;
    {
        let mut s = f.stats.borrow_mut();
        s.flushes += 1;
        s.segments_flushed += segments as u64;
        s.blocks_written += blocks as u64;
        s.flush_bytes_written += bytes;
        s.flush_micros += micros;
        s.flush_max_micros = s.flush_max_micros.max(micros);
    }
    f.ctl.flushed.notify(usize::MAX);
    Ok(())
}

/// Freezes the chosen buffers and plans their segments in tag order.
fn freeze(f: &Flusher, tags: Vec<(u32, Take)>) -> Vec<Planned> {
    let mut plan = Vec::new();
    let mut bufs = f.mem.bufs.borrow_mut();
    let mut frozen = f.mem.frozen.borrow_mut();
    for (tag, take) in tags {
        if frozen.contains_key(&tag) {
            continue;
        }
        let sealed = match take {
            Take::Sealed => bufs.take_sealed(tag),
            Take::All => None,
        };
        let (segs, min_seq, max_seq) = match sealed {
            Some(x) => x,
            None => {
                let Some(b) = bufs.take(tag) else {
                    continue;
                };
                let (min_seq, max_seq) = (b.min_seq, b.max_seq);
                (b.freeze(), min_seq, max_seq)
            }
        };
        plan.extend(segs.iter().enumerate().map(|(seg, s)| Planned {
            tag,
            seg,
            order: V2_ORDER + max_seq,
            min_seq,
            footprint: block::footprint(s),
        }));
        frozen.insert(tag, Frozen { segs });
    }
    plan.sort_by_key(|p| p.tag);
    plan
}

/// Splits `plan` into blocks, next-fit in plan order: `(start, end)` ranges.
fn pack(plan: &[Planned]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (i, p) in plan.iter().enumerate() {
        if i > start && (used + p.footprint > BODY || i - start == MAX_SEGMENTS) {
            out.push((start, i));
            start = i;
            used = 0;
        }
        used += p.footprint;
    }
    if start < plan.len() {
        out.push((start, plan.len()));
    }
    out
}

/// Writes the plan's blocks into the active chunk (sealing it and creating
/// the next when full), commits, publishes. Returns segments, blocks and
/// bytes written.
async fn write_plan(
    f: &Flusher,
    plan: &[Planned],
    wal_next: u64,
) -> std::result::Result<(usize, usize, u64), PlanError> {
    let blocks = pack(plan);
    let mut done = 0;
    let mut bytes = 0u64;
    while done < blocks.len() {
        f.ctl.flush_stage.set("round: take_active");
        let mut chunk = match take_active(f).await {
            Ok(c) => c,
            Err(TakeError::NoRoom(err)) => {
                // Entries before `next` are committed and published.
                let next = blocks[done].0;
                return Err(PlanError::NoRoom { err, next });
            }
            Err(TakeError::Failed(e)) => return Err(e.into()),
        };
        let k = (chunk.free_slots() as usize).min(blocks.len() - done);
        let batch = &blocks[done..done + k];
        f.ctl.flush_stage.set("round: write_blocks");
        let written = write_blocks(f, &chunk, plan, batch).await;
        let entries = match written {
            Ok(e) => e,
            Err(e) => {
                *f.disk.active.borrow_mut() = Some(chunk);
                return Err(e.into());
            }
        };
        let next_plan = batch.last().map_or(plan.len(), |b| b.1);
        let remaining_min = plan[next_plan..].iter().map(|p| p.min_seq).min();
        let buffered_min = f.mem.bufs.borrow().min_seq();
        // Never persisted lower than before: WAL segments below the
        // previous checkpoint may already be recycled, and commits
        // alternate between two header slots, so a lower value would
        // become the chunk's newest once the older slot is overwritten.
        let checkpoint = [remaining_min, buffered_min, Some(wal_next)]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(wal_next)
            .max(f.disk.checkpoint.get());
        f.ctl.flush_stage.set("round: commit");
        let committed = chunk.commit(k as u32, checkpoint).await;
        if let Err(e) = committed {
            *f.disk.active.borrow_mut() = Some(chunk);
            return Err(e.into());
        }
        bytes += (k * BLOCK_SIZE) as u64;
        publish(f, &chunk, &entries, plan, next_plan);
        f.disk.checkpoint.set(checkpoint);
        if chunk.free_slots() == 0 {
            f.ctl.flush_stage.set("round: seal");
            let sealed = seal(f, &mut chunk, checkpoint).await;
            if let Err(e) = sealed {
                *f.disk.active.borrow_mut() = Some(chunk);
                if e.is_alloc_no_space() {
                    // The next take seals it; this batch is committed.
                    let err = dir_no_space(f);
                    return Err(PlanError::NoRoom {
                        err,
                        next: next_plan,
                    });
                }
                return Err(e.into());
            }
        } else {
            *f.disk.active.borrow_mut() = Some(chunk);
        }
        done += k;
    }
    Ok((plan.len(), blocks.len(), bytes))
}

/// Seals a full (or idle) flush chunk: its directory, then the sealed
/// header. Its segments stay indexed; it is now compaction's input.
pub(crate) async fn seal(f: &Flusher, chunk: &mut Chunk, checkpoint: u64) -> Result<()> {
    let id = chunk.header.id;
    let mut entries = std::mem::take(&mut *f.disk.active_entries.borrow_mut());
    let sealed = chunk.seal_flush(&mut entries, checkpoint).await;
    if sealed.is_err() {
        *f.disk.active_entries.borrow_mut() = entries;
        return sealed;
    }
    let dir_end = chunk.header.dir_offset + chunk.header.dir_len as u64;
    if let Some(c) = f.disk.index.borrow_mut().chunk_mut(id) {
        c.sealed = true;
        c.bytes = dir_end.next_multiple_of(crate::storage::file::PAGE as u64);
        c.checkpoint = chunk.header.checkpoint;
    }
    f.stats.borrow_mut().chunks_sealed += 1;
    f.disk.note_sealed();
    Ok(())
}

/// The active chunk, creating the next one if there is none or it is full.
/// A full one is sealed first: it is full but unsealed after a crash between
/// its last commit and its seal (recovery makes it active again). Left
/// unsealed, it would stay in the index as a second "active" chunk that
/// compaction never takes, while it takes the newer chunks: their merged
/// outputs would then outrank its later writes.
/// A chunk file that cannot be created for lack of space is
/// [`TakeError::NoRoom`]: nothing was written, so the shard is not fenced.
async fn take_active(f: &Flusher) -> std::result::Result<Chunk, TakeError> {
    let taken = f.disk.active.borrow_mut().take();
    if let Some(mut c) = taken {
        if c.free_slots() > 0 {
            return Ok(c);
        }
        let sealed = seal(f, &mut c, f.disk.checkpoint.get()).await;
        if let Err(e) = sealed {
            *f.disk.active.borrow_mut() = Some(c);
            if e.is_alloc_no_space() {
                return Err(TakeError::NoRoom(dir_no_space(f)));
            }
            return Err(TakeError::Failed(e));
        }
    }
    let id = f.disk.new_chunk_id();
    let dir = f.cfg.dir.join("chunks");
    let size = block_offset(f.cfg.blocks_per_chunk);
    let c = match Chunk::create_flush(&dir, id, f.cfg.blocks_per_chunk, f.disk.checkpoint.get())
        .await
    {
        Ok(c) => c,
        Err(e) if e.is_alloc_no_space() => {
            return Err(TakeError::NoRoom(Error::no_space(
                "the next chunk file",
                &dir,
                size,
            )))
        }
        Err(e) => return Err(TakeError::Failed(e)),
    };
    sync_dir(&dir).await.map_err(TakeError::Failed)?;
    f.disk.index.borrow_mut().add_chunk(
        id,
        ChunkInfo {
            file: c.file.clone(),
            kind: Kind::Flush,
            sealed: false,
            partition: None,
            data_offset: chunk::HEADER_BYTES,
            blocks: 0,
            bytes: block_offset(f.cfg.blocks_per_chunk),
            min_ts: i64::MAX,
            max_ts: i64::MIN,
            checkpoint: c.header.checkpoint,
            tags: Vec::new(),
            points: 0,
            job: 0,
            rollup_bytes: 0,
        },
    );
    Ok(c)
}

/// The no-space error of a full chunk whose directory has no room to be
/// written (sealing it waits for space).
fn dir_no_space(f: &Flusher) -> Error {
    Error::no_space(
        "sealing a full chunk file (its directory)",
        &f.cfg.dir.join("chunks"),
        GROW_HINT,
    )
}

/// What a chunk directory needs at most, for the no-space message.
const GROW_HINT: u64 = 1 << 20;

/// Why [`take_active`] has no chunk to give.
enum TakeError {
    Failed(Error),
    NoRoom(Error),
}

/// Encodes `batch` (block ranges of `plan`) into the chunk's next free
/// slots and writes them, many writes in flight. Returns their entries.
async fn write_blocks(
    f: &Flusher,
    chunk: &Chunk,
    plan: &[Planned],
    batch: &[(usize, usize)],
) -> Result<Vec<DirEntry>> {
    let first_slot = chunk.header.committed;
    let id = chunk.header.id;
    let mut entries = Vec::new();
    let mut writes = Vec::new();
    let mut slice = Slice::new();
    for (g, group) in batch.chunks(BLOCKS_PER_WRITE).enumerate() {
        let mut buf = chunk.file.buffer(group.len() * BLOCK_SIZE);
        {
            let frozen = f.mem.frozen.borrow();
            for (i, &(a, b)) in group.iter().enumerate() {
                let slot = first_slot + (g * BLOCKS_PER_WRITE + i) as u32;
                let mut parts = Vec::with_capacity(b - a);
                for p in &plan[a..b] {
                    let Some(seg) = frozen.get(&p.tag).and_then(|x| x.segs.get(p.seg)) else {
                        return Err(Error::fenced(format!(
                            "internal error: flush plan names segment {} of tag {} that is not frozen",
                            p.seg, p.tag
                        )));
                    };
                    parts.push(Part {
                        tag: p.tag,
                        seg,
                        order: p.order,
                    });
                }
                let out = &mut buf.as_bytes_mut()[i * BLOCK_SIZE..(i + 1) * BLOCK_SIZE];
                let (segs, _) = block::encode(out, &parts, id, slot);
                entries.extend(segs.iter().enumerate().map(|(j, s)| DirEntry {
                    tag: s.tag,
                    count: s.count,
                    min_ts: s.min_ts,
                    max_ts: s.max_ts,
                    order: s.order,
                    slot,
                    index: j as u16,
                    summary: None,
                    rollup: None,
                }));
            }
        }
        let at = block_offset(first_slot + (g * BLOCKS_PER_WRITE) as u32);
        writes.push(chunk.file.write_at(buf, at));
        slice.tick().await;
    }
    f.ctl.flush_stage.set("round: write_blocks join");
    for r in join_all(writes).await {
        r?;
    }
    Ok(entries)
}

/// Makes committed segments visible and drops frozen buffers whose
/// segments are all committed (those of plan entries from `next` on are
/// still to be written).
fn publish(f: &Flusher, chunk: &Chunk, entries: &[DirEntry], plan: &[Planned], next: usize) {
    let id = chunk.header.id;
    {
        let mut index = f.disk.index.borrow_mut();
        for e in entries {
            index.add(id, e);
        }
        index.finish_chunk(id);
        if let Some(c) = index.chunk_mut(id) {
            c.blocks = chunk.header.committed;
            c.checkpoint = chunk.header.checkpoint;
        }
    }
    f.disk
        .active_entries
        .borrow_mut()
        .extend_from_slice(entries);
    let pending: Vec<u32> = plan[next..].iter().map(|p| p.tag).collect();
    let mut frozen = f.mem.frozen.borrow_mut();
    for e in entries {
        if !pending.contains(&e.tag) {
            frozen.remove(&e.tag);
        }
    }
}

/// Picks the tags the flusher should write out now, and what of each, at
/// most about [`ROUND_BYTES`] of buffers; and whether the round is urgent
/// (full tags, over the memory budget, or the WAL past three quarters of
/// its budget) or may be paced.
fn pick(f: &Flusher) -> (Vec<(u32, Take)>, bool) {
    let mut budget = ROUND_BYTES;
    let mut tags: Vec<(u32, Take)> = Vec::new();
    let mut bufs = f.mem.bufs.borrow_mut();
    let mut add = |tags: &mut Vec<(u32, Take)>, tag: u32, take: Take, bytes: usize| -> bool {
        if budget == 0 || tags.len() >= ROUND_TAGS {
            return false;
        }
        tags.push((tag, take));
        budget = budget.saturating_sub(bytes.max(1));
        true
    };
    {
        let mut full = f.mem.full.borrow_mut();
        while let Some(&t) = full.last() {
            let bytes = bufs.get(t).map_or(0, |b| b.bytes());
            if !add(&mut tags, t, Take::Sealed, bytes) {
                break;
            }
            full.pop();
        }
    }
    let mem_budget = f.cfg.memory_budget;
    if bufs.bytes() > mem_budget {
        let mut by_size: Vec<(usize, u32)> = bufs.iter().map(|(t, b)| (b.bytes(), t)).collect();
        let n = by_size.len().min(ROUND_TAGS);
        if n > 0 && n < by_size.len() {
            by_size.select_nth_unstable_by(n - 1, |a, b| b.cmp(a));
            by_size.truncate(n);
        }
        by_size.sort_unstable_by(|a, b| b.cmp(a));
        let mut to_free = bufs.bytes() - mem_budget / 2;
        for (bytes, tag) in by_size {
            if to_free == 0 || !add(&mut tags, tag, Take::All, bytes) {
                break;
            }
            to_free = to_free.saturating_sub(bytes);
        }
    }
    let mut urgent = !tags.is_empty();
    let wal_target = f
        .wal
        .as_ref()
        .and_then(|w| w.flush_target(f.cfg.wal_budget / 2));
    if wal_target.is_some()
        && f.wal.as_ref().map_or(0, |w| w.live_bytes()) > f.cfg.wal_budget / 4 * 3
    {
        urgent = true;
    }
    if let Some(target) = wal_target {
        // The tags pinning the oldest segments, oldest first.
        let bufs = &*bufs;
        for (_, tag) in bufs.pinning_below(target) {
            let bytes = bufs.get(tag).map_or(0, |b| b.bytes());
            if !add(&mut tags, tag, Take::All, bytes) {
                break;
            }
        }
    }
    // Buffers older than the flush age, a bounded slice of them per pick.
    let now = Instant::now();
    let age = f.cfg.flush_age;
    let mut aged = Vec::new();
    bufs.scan_aged(AGE_SCAN, |tag, b| {
        if now.duration_since(b.since) >= age {
            aged.push((tag, b.bytes()));
        }
    });
    for (tag, bytes) in aged {
        if !add(&mut tags, tag, Take::All, bytes) {
            break;
        }
    }
    // `All` sorts first, so it wins over `Sealed` for the same tag.
    tags.sort_unstable();
    tags.dedup_by_key(|t| t.0);
    (tags, urgent)
}

/// The flusher task: waits for work (or a periodic tick for age-based
/// flushes) and runs rounds until the shard closes or is fenced. On exit it
/// wakes every writer waiting for memory, so they see the fence or the close
/// instead of waiting for a flush that will never come.
pub(crate) async fn run_flusher(f: Flusher) {
    flusher_loop(&f).await;
    f.ctl.flushed.notify(usize::MAX);
}

async fn flusher_loop(f: &Flusher) {
    let tick = (f.cfg.flush_age / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        if f.check().is_err() {
            return;
        }
        let listener = f.ctl.flush_wanted.listen();
        let (tags, urgent) = pick(f);
        if tags.is_empty() && !f.stalled.is_pending() {
            f.ctl.flush_stage.set("flusher: idle");
            futures_lite::future::or(listener, glommio::timer::sleep(tick)).await;
            continue;
        }
        f.ctl.flush_stage.set("flusher: waiting for the flush lock");
        let _permit = f.ctl.flush_lock.acquire_permit(1).await;
        if f.ctl.closing.get() {
            return;
        }
        let Some(next) = f.wal.as_ref().map(|w| w.next_seq()) else {
            return;
        };
        let started = Instant::now();
        if flush_round(f, tags, next).await.is_err() {
            if f.check().is_err() || !f.stalled.is_pending() {
                return;
            }
            // The disk is full: try again soon (close cuts the wait short).
            drop(_permit);
            f.ctl.flush_stage.set("flusher: waiting for disk space");
            for _ in 0..3 {
                if f.ctl.closing.get() {
                    return;
                }
                glommio::timer::sleep(Duration::from_millis(100)).await;
            }
            continue;
        }
        drop(_permit);
        if urgent {
            glommio::executor().yield_if_needed().await;
        } else {
            // Trimming the WAL or flushing by age has time: spread the
            // rounds out (at most 1 / (1 + PACE) of the time), so 100,000
            // tags pinning one segment do not become a burst of rounds and
            // syncs that acknowledgements queue behind. Urgent work (a
            // writer over the memory budget, a full tag) cuts the pause.
            f.ctl.flush_stage.set("flusher: pacing");
            let pause = (started.elapsed() * PACE).min(MAX_PAUSE);
            let listener = f.ctl.flush_wanted.listen();
            futures_lite::future::or(listener, glommio::timer::sleep(pause)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(footprints: &[usize]) -> Vec<Planned> {
        footprints
            .iter()
            .enumerate()
            .map(|(i, &footprint)| Planned {
                tag: i as u32,
                seg: 0,
                order: 0,
                min_seq: 0,
                footprint,
            })
            .collect()
    }

    #[test]
    fn packing_is_next_fit_and_never_overfills() {
        for sizes in [
            vec![BODY],
            vec![BODY, 100, BODY, 100],
            vec![100; 1000],
            vec![5000, 5000, 5000, 5000, 7000, 9000],
            vec![60; MAX_SEGMENTS * 3 + 7],
        ] {
            let plan = planned(&sizes);
            let blocks = pack(&plan);
            let mut next = 0;
            for &(a, b) in &blocks {
                assert_eq!(a, next);
                assert!(b > a && b - a <= MAX_SEGMENTS);
                let used: usize = plan[a..b].iter().map(|p| p.footprint).sum();
                assert!(used <= BODY || b - a == 1, "{used}");
                // Next fit: the next segment would not have fitted.
                if let Some(n) = plan.get(b) {
                    assert!(used + n.footprint > BODY || b - a == MAX_SEGMENTS);
                }
                next = b;
            }
            assert_eq!(next, plan.len());
        }
    }
}
