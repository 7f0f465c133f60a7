//! Flushing: moving tag buffers into 16 KiB blocks of the active chunk.
//!
//! A round freezes the chosen buffers into block-sized compressed segments
//! (still visible to queries; a buffer without out-of-order points hands
//! over its encoded bytes as they are), wraps each segment in a block
//! header, writes runs of contiguous slots with many writes in flight, then commits: directory pages, `fdatasync`, header with the new
//! checkpoint, `fdatasync` ([`ActiveChunk::commit`]). Only then are the
//! blocks published to the index and the frozen buffers dropped, and WAL
//! segments below the checkpoint released. Rounds are serialised by the
//! shard's flush lock.
//!
//! The flusher task runs on a low-priority task queue and picks tags that
//! fill a block, exceed the memory budget (largest first), pin too much WAL
//! (oldest first) or are older than the flush age.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;

use crate::storage::block::{self, BLOCK_SIZE};
use crate::storage::buffer::Frozen;
use crate::storage::chunk::{ActiveChunk, DirEntry};
use crate::storage::config::ShardConfig;
use crate::storage::control::Control;
use crate::storage::disk::Disk;
use crate::storage::error::{Error, Result};
use crate::storage::index::BlockRef;
use crate::storage::memory::Memory;
use crate::storage::stats::ShardStats;
use crate::storage::wal::Wal;

/// Blocks written per commit at most (bounds memory held by a round).
const MAX_BLOCKS_PER_COMMIT: usize = 1024;
/// Blocks per write request.
const BLOCKS_PER_WRITE: usize = 64;

/// One planned block: a segment of a frozen buffer.
struct Planned {
    tag: u32,
    seg: usize,
    min_seq: u64,
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
}

impl Flusher {
    fn check(&self) -> Result<()> {
        self.ctl.check(self.wal.as_deref())
    }
}

/// Flushes every buffered tag (takes the flush lock).
pub(crate) async fn flush_all(f: &Flusher) -> Result<()> {
    let next = f.wal.as_ref().ok_or(Error::Closed)?.next_seq();
    flush_everything(f, next).await
}

/// Flushes every buffered tag, with `wal_next` as in [`flush_round`] (takes
/// the flush lock). Recovery uses it while replaying, before the WAL exists.
pub(crate) async fn flush_everything(f: &Flusher, wal_next: u64) -> Result<()> {
    f.ctl
        .flush_stage
        .set("flush_all: waiting for the flush lock");
    let _permit = f.ctl.flush_lock.acquire_permit(1).await;
    let tags: Vec<(u32, Take)> = f
        .mem
        .bufs
        .borrow()
        .iter()
        .map(|(t, _)| (t, Take::All))
        .collect();
    flush_round(f, tags, wal_next).await
}

/// Flushes `tags`. `wal_next` is a WAL sequence number no greater than any
/// record not yet in the buffers (the checkpoint when nothing is buffered).
/// The caller holds the flush lock.
pub(crate) async fn flush_round(f: &Flusher, tags: Vec<(u32, Take)>, wal_next: u64) -> Result<()> {
    let started = Instant::now();
    let mut plan = Vec::new();
    {
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
            let (segs, min_seq) = match sealed {
                Some(x) => x,
                None => {
                    let Some(b) = bufs.take(tag) else {
                        continue;
                    };
                    let min_seq = b.min_seq;
                    (b.freeze(), min_seq)
                }
            };
            plan.extend((0..segs.len()).map(|seg| Planned { tag, seg, min_seq }));
            frozen.insert(tag, Frozen { segs });
        }
    }
    if plan.is_empty() {
        return Ok(());
    }
    let total_blocks = plan.len();
    let mut done = 0;
    let result = async {
        while done < plan.len() {
            f.ctl.flush_stage.set("round: take_active");
            let mut chunk = take_active(f).await?;
            let k = (chunk.free_slots() as usize)
                .min(plan.len() - done)
                .min(MAX_BLOCKS_PER_COMMIT);
            let batch = &plan[done..done + k];
            f.ctl.flush_stage.set("round: write_blocks");
            let entries = write_blocks(f, &chunk, batch).await;
            let entries = match entries {
                Ok(e) => e,
                Err(e) => {
                    *f.disk.active.borrow_mut() = Some(chunk);
                    return Err(e);
                }
            };
            let remaining_min = plan[done + k..].iter().map(|p| p.min_seq).min();
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
            let committed = chunk.commit(&entries, checkpoint).await;
            let sealed = chunk.header.sealed;
            let chunk_id = chunk.header.id as u32;
            if !sealed {
                *f.disk.active.borrow_mut() = Some(chunk);
            }
            committed?;
            publish(
                f,
                chunk_id,
                batch,
                &entries,
                plan.get(done + k).map(|p| p.tag),
            );
            f.disk.checkpoint.set(checkpoint);
            if sealed {
                f.stats.borrow_mut().chunks_sealed += 1;
            }
            done += k;
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        log::error!("flush failed in {}, shard fenced: {e}", f.cfg.dir.display());
        f.ctl.fence(e.to_string());
        return Err(e);
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
        s.blocks_written += total_blocks as u64;
        s.flush_micros += micros;
        s.flush_max_micros = s.flush_max_micros.max(micros);
    }
    f.ctl.flushed.notify(usize::MAX);
    Ok(())
}

/// The active chunk, creating the next one if there is none or it is sealed.
async fn take_active(f: &Flusher) -> Result<ActiveChunk> {
    if let Some(c) = f.disk.active.borrow_mut().take() {
        if c.free_slots() > 0 {
            return Ok(c);
        }
    }
    let id = f.disk.next_chunk_id.get();
    let dir = f.cfg.dir.join("chunks");
    let c = ActiveChunk::create(&dir, id, f.cfg.blocks_per_chunk, f.disk.checkpoint.get()).await?;
    f.disk.next_chunk_id.set(id + 1);
    f.disk
        .index
        .borrow_mut()
        .set_file(id as u32, c.file.clone(), c.layout);
    Ok(c)
}

/// Encodes `batch` into the chunk's next free slots and writes them, many
/// writes in flight. Returns their directory entries.
async fn write_blocks(
    f: &Flusher,
    chunk: &ActiveChunk,
    batch: &[Planned],
) -> Result<Vec<DirEntry>> {
    let first_slot = chunk.header.committed;
    let mut entries = Vec::with_capacity(batch.len());
    let mut writes = Vec::new();
    for (g, group) in batch.chunks(BLOCKS_PER_WRITE).enumerate() {
        let mut buf = chunk.file.buffer(group.len() * BLOCK_SIZE);
        {
            let frozen = f.mem.frozen.borrow();
            for (i, p) in group.iter().enumerate() {
                let slot = first_slot + (g * BLOCKS_PER_WRITE + i) as u32;
                let Some(seg) = frozen.get(&p.tag).and_then(|f| f.segs.get(p.seg)) else {
                    return Err(Error::fenced(format!(
                        "internal error: flush plan names segment {} of tag {} that is not frozen",
                        p.seg, p.tag
                    )));
                };
                let out = &mut buf.as_bytes_mut()[i * BLOCK_SIZE..(i + 1) * BLOCK_SIZE];
                let (h, crc) = block::encode(out, p.tag, seg, p.min_seq, chunk.header.id, slot);
                entries.push(DirEntry {
                    tag: h.tag,
                    count: h.count,
                    min_ts: h.min_ts,
                    max_ts: h.max_ts,
                    slot,
                    crc,
                });
            }
        }
        let at = chunk
            .layout
            .block_offset(first_slot + (g * BLOCKS_PER_WRITE) as u32);
        writes.push(chunk.file.write_at(buf, at));
        glommio::executor().yield_if_needed().await;
    }
    f.ctl.flush_stage.set("round: write_blocks join");
    for r in join_all(writes).await {
        r?;
    }
    Ok(entries)
}

/// Makes committed blocks visible and drops frozen buffers whose blocks are
/// all committed (`next_tag` still has blocks in a later commit).
fn publish(
    f: &Flusher,
    chunk: u32,
    batch: &[Planned],
    entries: &[DirEntry],
    next_tag: Option<u32>,
) {
    let mut index = f.disk.index.borrow_mut();
    let mut frozen = f.mem.frozen.borrow_mut();
    for (p, e) in batch.iter().zip(entries) {
        index.add(
            p.tag,
            BlockRef {
                chunk,
                slot: e.slot,
                count: e.count,
                min_ts: e.min_ts,
                max_ts: e.max_ts,
            },
        );
        if Some(p.tag) != next_tag {
            frozen.remove(&p.tag);
        }
    }
}

/// Picks the tags the flusher should write out now, and what of each.
fn pick(f: &Flusher) -> Vec<(u32, Take)> {
    let mut tags: Vec<(u32, Take)> = std::mem::take(&mut *f.mem.full.borrow_mut())
        .into_iter()
        .map(|t| (t, Take::Sealed))
        .collect();
    let bufs = f.mem.bufs.borrow();
    let budget = f.cfg.memory_budget;
    if bufs.bytes() > budget {
        let mut by_size: Vec<(usize, u32)> = bufs.iter().map(|(t, b)| (b.bytes(), t)).collect();
        by_size.sort_unstable_by(|a, b| b.cmp(a));
        let mut to_free = bufs.bytes() - budget / 2;
        for (bytes, tag) in by_size {
            if to_free == 0 {
                break;
            }
            tags.push((tag, Take::All));
            to_free = to_free.saturating_sub(bytes);
        }
    }
    let wal_target = f
        .wal
        .as_ref()
        .and_then(|w| w.flush_target(f.cfg.wal_budget));
    let now = Instant::now();
    let age = f.cfg.flush_age;
    for (tag, b) in bufs.iter() {
        let old = now.duration_since(b.since) >= age;
        let pins_wal = wal_target.is_some_and(|t| b.min_seq < t);
        if old || pins_wal {
            tags.push((tag, Take::All));
        }
    }
    // `All` sorts first, so it wins over `Sealed` for the same tag.
    tags.sort_unstable();
    tags.dedup_by_key(|t| t.0);
    tags
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
        let tags = pick(f);
        if tags.is_empty() {
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
        if flush_round(f, tags, next).await.is_err() {
            return;
        }
    }
}
