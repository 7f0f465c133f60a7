//! One compaction job: reads every segment of its input chunks, merges each
//! tag's points per time partition (later writes win, points older than the
//! retention window are dropped), re-encodes them into segments with their
//! summaries (a segment ends where its block fills and, for a tag whose
//! points span two intervals or more, at every multiple of
//! `segment_align`, so a summary answers any window that is a multiple of
//! it) and, with rollups on, a segment's per-interval rollup
//! ([`crate::storage::rollup`]), packs them into blocks in tag order (a tag with a block's worth
//! gets blocks of its own), and writes one sealed compacted chunk per
//! partition. Then the outputs replace the inputs in the index, one tag at
//! a time with yields between (each tag's swap is one step; see
//! [`super::swap_in`]), and the input files are deleted.
//!
//! Order of durability (new before old): each output's blocks, then its
//! rollups and directory (entries, summaries and the ids of the inputs it
//! supersedes),
//! `fdatasync`, then its sealed header naming the job and its output count,
//! `fdatasync`; the directory entry of every output; only then the index
//! swap and the unlinks, then the directory `fdatasync`. A crash before all
//! outputs are sealed leaves an unfinished job, whose outputs open deletes;
//! after it, open deletes the superseded inputs. No point is ever visible
//! twice or lost.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};

use super::{id_set, micros, now_us, swap_in, Compactor};
use crate::aggregate::Summary;
use crate::storage::block::{self, Part, BLOCK_SIZE, BODY, MAX_SEGMENTS, PAYLOAD_CAPACITY};
use crate::storage::chunk::{
    self, block_offset, Chunk, DirEntry, Entries, Kind, Partition, RollupBytes, RollupRef,
};
use crate::storage::codec::{Encoder, Segment, MAX_POINT_BYTES};
use crate::storage::error::{Error, Result};
use crate::storage::file::{remove_file, sync_dir, DataFile};
use crate::storage::index::{ChunkInfo, SegRef};
use crate::storage::query::merge;
use crate::storage::rollup;
use crate::storage::slice::Slice;
use crate::Point;

/// Blocks read ahead and cached per job.
const CACHE_BLOCKS: usize = 512;
/// Block reads in flight.
const READS_IN_FLIGHT: usize = 32;
/// Blocks per write.
const WRITE_BLOCKS: usize = 64;
/// Tags whose blocks are read ahead together.
const TAG_BATCH: usize = 256;
/// The least room in an open block worth splitting a tag's points for: a
/// split costs a block entry, a directory entry with its summary and a
/// codec restart (about 200 bytes).
const MIN_SPLIT: usize = 1024;

/// Byte-rate bound for compaction's reads and writes.
struct Pace {
    rate: u64,
    started: Instant,
    bytes: u64,
}

impl Pace {
    async fn spend(&mut self, bytes: u64) {
        self.bytes += bytes;
        if self.rate == 0 {
            return;
        }
        let due = Duration::from_secs_f64(self.bytes as f64 / self.rate as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            glommio::timer::sleep(due - elapsed).await;
        }
    }
}

/// A block's bytes and what verifying them found.
type Verified = (Vec<u8>, block::Block);

/// The blocks of the job's inputs, read ahead per batch of tags and
/// verified once each (a packed block serves many tags).
struct Blocks {
    cache: HashMap<(u64, u32), Rc<Verified>>,
    fifo: VecDeque<(u64, u32)>,
}

impl Blocks {
    /// Makes every block of `want` cached: blocks not wanted are evicted
    /// first (oldest first) when the cache would grow past its size; the
    /// wanted ones stay, even if they alone are more.
    async fn fetch(&mut self, c: &Compactor, want: Vec<(u64, u32)>, pace: &mut Pace) -> Result<()> {
        let wanted: std::collections::HashSet<(u64, u32)> = want.iter().copied().collect();
        let new = wanted
            .iter()
            .filter(|k| !self.cache.contains_key(k))
            .count();
        let mut keep = VecDeque::with_capacity(self.fifo.len());
        while self.cache.len() + new > CACHE_BLOCKS {
            let Some(old) = self.fifo.pop_front() else {
                break;
            };
            if wanted.contains(&old) {
                keep.push_back(old);
            } else {
                self.cache.remove(&old);
            }
        }
        keep.append(&mut self.fifo);
        self.fifo = keep;
        let missing: Vec<(u64, u32, Rc<DataFile>, u64)> = {
            let index = c.disk.index.borrow();
            let mut v = Vec::new();
            for (chunk, slot) in want {
                if self.cache.contains_key(&(chunk, slot)) {
                    continue;
                }
                let Some(info) = index.chunk(chunk) else {
                    return Err(Error::fenced(format!(
                        "internal error: compaction input chunk {chunk} vanished"
                    )));
                };
                v.push((chunk, slot, info.file.clone(), info.block_offset(slot)));
            }
            v.sort_unstable_by_key(|x| (x.0, x.1));
            v.dedup_by_key(|x| (x.0, x.1));
            v
        };
        let n = missing.len() as u64;
        let reads = missing
            .into_iter()
            .map(|(chunk, slot, file, off)| async move {
                let data = file.read_at(off, BLOCK_SIZE).await?;
                let blk =
                    block::verify(&data).map_err(|why| Error::corrupt(file.path(), off, why))?;
                if blk.chunk_id != chunk || blk.slot != slot {
                    return Err(Error::corrupt(
                        file.path(),
                        off,
                        format!(
                            "misplaced block: claims chunk {} slot {}",
                            blk.chunk_id, blk.slot
                        ),
                    ));
                }
                Ok::<_, Error>(((chunk, slot), (data.to_vec(), blk)))
            });
        type Read = Result<((u64, u32), (Vec<u8>, block::Block))>;
        let got: Vec<Read> = stream::iter(reads)
            .buffered(READS_IN_FLIGHT)
            .collect()
            .await;
        for r in got {
            let (k, data) = r?;
            self.fifo.push_back(k);
            self.cache.insert(k, Rc::new(data));
        }
        pace.spend(n * BLOCK_SIZE as u64).await;
        Ok(())
    }
}

/// One partition's output chunk being written.
struct Output {
    chunk: Chunk,
    partition: Partition,
    /// Blocks written or pending.
    blocks: u32,
    /// Encoded blocks not yet written, from slot `blocks - pending.len()`.
    pending: Vec<u8>,
    /// The open shared block: its segments, summaries, orders and
    /// rollups (offsets into `rollups`).
    open: Vec<(u32, Segment, u64, Summary, Option<RollupRef>)>,
    /// The rollups of this output's segments, written when it is sealed.
    rollups: RollupBytes,
    /// Their length, once sealed.
    rollup_bytes: u64,
    open_used: usize,
    entries: Entries,
    points: u64,
    checkpoint: u64,
}

impl Output {
    /// Payload bytes a segment started now can take and still join the
    /// open block; a whole block's when the open block is (nearly) full,
    /// since it is closed before such a segment joins.
    fn room(&self) -> usize {
        if self.open.is_empty() || self.open.len() == MAX_SEGMENTS {
            return PAYLOAD_CAPACITY;
        }
        let room = BODY.saturating_sub(self.open_used + block::ENTRY);
        if room < MIN_SPLIT {
            PAYLOAD_CAPACITY
        } else {
            room
        }
    }

    /// Adds one segment of `tag` with its summary and rollup; next-fit
    /// into the open block.
    async fn add(
        &mut self,
        tag: u32,
        seg: Segment,
        order: u64,
        (summary, rollup): (Summary, Option<Vec<u8>>),
        pace: &mut Pace,
        written: &mut u64,
    ) -> Result<()> {
        let size = block::footprint(&seg);
        if !self.open.is_empty()
            && (self.open_used + size > BODY || self.open.len() == MAX_SEGMENTS)
        {
            self.close_block(pace, written).await?;
        }
        self.points += seg.count as u64;
        self.open_used += size;
        let rollup = rollup.map(|b| {
            let r = RollupRef {
                offset: self.rollups.len() as u64,
                len: b.len() as u32,
                crc: crc32fast::hash(&b),
            };
            self.rollups.extend_from_slice(&b);
            r
        });
        self.open.push((tag, seg, order, summary, rollup));
        Ok(())
    }

    /// Encodes the open block; writes pending blocks once there are enough.
    async fn close_block(&mut self, pace: &mut Pace, written: &mut u64) -> Result<()> {
        if self.open.is_empty() {
            return Ok(());
        }
        let slot = self.blocks;
        let at = self.pending.len();
        self.pending.resize(at + BLOCK_SIZE, 0);
        let parts: Vec<Part<'_>> = self
            .open
            .iter()
            .map(|(tag, seg, order, _, _)| Part {
                tag: *tag,
                seg,
                order: *order,
            })
            .collect();
        let (segs, _) = block::encode(
            &mut self.pending[at..at + BLOCK_SIZE],
            &parts,
            self.chunk.header.id,
            slot,
        );
        for (i, (s, (_, _, _, summary, rollup))) in segs.iter().zip(&self.open).enumerate() {
            self.entries.push(DirEntry {
                tag: s.tag,
                count: s.count,
                min_ts: s.min_ts,
                max_ts: s.max_ts,
                order: s.order,
                slot,
                index: i as u16,
                summary: Some(*summary),
                rollup: *rollup,
            });
        }
        self.open.clear();
        self.open_used = 0;
        self.blocks += 1;
        if self.pending.len() >= WRITE_BLOCKS * BLOCK_SIZE {
            self.write_pending(pace, written).await?;
        }
        Ok(())
    }

    async fn write_pending(&mut self, pace: &mut Pace, written: &mut u64) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let n = (self.pending.len() / BLOCK_SIZE) as u32;
        let first = self.blocks - n;
        self.chunk.reserve(self.blocks).await?;
        self.chunk
            .file
            .write_bytes_at(&self.pending, block_offset(first))
            .await?;
        *written += self.pending.len() as u64;
        pace.spend(self.pending.len() as u64).await;
        self.pending.clear();
        Ok(())
    }
}

/// Drops the outputs of a job that failed (they are not sealed, so a crash
/// now would have the same effect at open).
async fn discard(c: &Compactor, outputs: BTreeMap<Partition, Output>) {
    let dir = c.cfg.dir.join("chunks");
    for (_, o) in outputs {
        let path = o.chunk.file.path().to_path_buf();
        drop(o);
        if let Err(e) = remove_file(&path).await {
            log::warn!("could not remove unfinished compaction output: {e}");
        }
    }
    let _ = sync_dir(&dir).await;
}

/// Runs a job over `inputs` (chunk ids): see the module doc.
pub(crate) async fn run_job(c: &Compactor, inputs: &[u64]) -> Result<()> {
    let started = Instant::now();
    let job = c.disk.new_chunk_id();
    let width = micros(c.cfg.partition).max(1);
    let align = micros(c.cfg.segment_align);
    let roll_span = micros(c.cfg.rollup);
    let cutoff = c
        .cfg
        .retention
        .map(|r| now_us().saturating_sub(micros(r)))
        .unwrap_or(i64::MIN);
    let input_set = id_set(inputs);
    // Every tag with a segment in the inputs, and the inputs' checkpoint.
    let (tags, checkpoint, read_bytes_hint) = {
        let index = c.disk.index.borrow();
        let mut tags = Vec::new();
        let mut checkpoint = 0;
        let mut bytes = 0;
        for id in inputs {
            if let Some(info) = index.chunk(*id) {
                tags.extend_from_slice(&info.tags);
                checkpoint = checkpoint.max(info.checkpoint);
                bytes += info.bytes;
            }
        }
        tags.sort_unstable();
        tags.dedup();
        (tags, checkpoint, bytes)
    };
    let _ = read_bytes_hint;
    let mut pace = Pace {
        rate: c.cfg.compact_rate,
        started: Instant::now(),
        bytes: 0,
    };
    let mut blocks = Blocks {
        cache: HashMap::new(),
        fifo: VecDeque::new(),
    };
    let mut outputs: BTreeMap<Partition, Output> = BTreeMap::new();
    let mut written = 0u64;
    let mut dropped = 0u64;
    let dir = c.cfg.dir.join("chunks");
    let result: Result<()> = async {
        let mut slice = Slice::new();
        let mut next = 0;
        while next < tags.len() {
            if c.ctl.closing.get() {
                return Err(Error::Closed);
            }
            // The next tags whose segments' blocks fit the cache (at least
            // one tag), and the blocks to read for them.
            let segs: Vec<(u32, Vec<SegRef>)> = {
                let index = c.disk.index.borrow();
                let mut segs = Vec::new();
                let mut blocks_needed = 0;
                while next < tags.len() && segs.len() < TAG_BATCH {
                    let t = tags[next];
                    let v: Vec<SegRef> = index
                        .segments_of(t)
                        .iter()
                        .filter(|r| input_set.contains(&r.chunk))
                        .copied()
                        .collect();
                    if !segs.is_empty() && blocks_needed + v.len() > CACHE_BLOCKS {
                        break;
                    }
                    blocks_needed += v.len();
                    segs.push((t, v));
                    next += 1;
                }
                segs
            };
            let want: Vec<(u64, u32)> = segs
                .iter()
                .flat_map(|(_, v)| v.iter().map(|r| (r.chunk, r.slot)))
                .collect();
            blocks.fetch(c, want, &mut pace).await?;
            for (tag, refs) in segs {
                let order = refs.iter().map(|r| r.order).max().unwrap_or(0);
                // Aligned cuts only for a tag whose points here span two
                // intervals or more: of a shorter run at most two segments
                // straddle a window edge, and a cut would cost more than
                // decoding them saves (about 250 bytes against the ~1.8 KB
                // of 30 minutes of a 1 Hz plant signal).
                let lo = refs.iter().map(|r| r.min_ts).min().unwrap_or(0);
                let hi = refs.iter().map(|r| r.max_ts).max().unwrap_or(0);
                let cut = if align > 0 && i128::from(hi) - i128::from(lo) >= 2 * i128::from(align) {
                    align
                } else {
                    0
                };
                let mut w = TagWriter {
                    tag,
                    order,
                    part: None,
                    enc: Encoder::default(),
                    sum: Summary::EMPTY,
                    roll: (roll_span > 0)
                        .then(|| rollup::Builder::new(roll_span, c.cfg.rollup_min_points)),
                    limit: PAYLOAD_CAPACITY,
                    span: 0,
                };
                for cluster in clusters(&refs) {
                    slice.tick().await;
                    let points = merged(c, &blocks, tag, &cluster)?;
                    for p in points {
                        if p.ts < cutoff {
                            dropped += 1;
                            continue;
                        }
                        let part = Partition::of(p.ts, width);
                        if w.part != Some(part) {
                            w.finish(&mut outputs, &mut pace, &mut written).await?;
                            w.part = Some(part);
                            if !outputs.contains_key(&part) {
                                let id = c.disk.new_chunk_id();
                                let index = outputs.len() as u32;
                                let chunk =
                                    Chunk::create_compacted(&dir, id, part, job, index, 0).await?;
                                outputs.insert(
                                    part,
                                    Output {
                                        chunk,
                                        partition: part,
                                        blocks: 0,
                                        pending: Vec::new(),
                                        open: Vec::new(),
                                        rollups: RollupBytes::default(),
                                        rollup_bytes: 0,
                                        open_used: 0,
                                        entries: Entries::default(),
                                        points: 0,
                                        checkpoint,
                                    },
                                );
                            }
                        } else if w.enc.payload_len() + MAX_POINT_BYTES > w.limit
                            || (cut > 0 && w.enc.count() > 0 && p.ts.div_euclid(cut) != w.span)
                        {
                            w.finish(&mut outputs, &mut pace, &mut written).await?;
                            w.part = Some(part);
                        }
                        if w.enc.count() == 0 {
                            w.span = if cut > 0 { p.ts.div_euclid(cut) } else { 0 };
                            w.limit = outputs.get(&part).map_or(PAYLOAD_CAPACITY, Output::room);
                            // Room for the whole segment: no regrowth.
                            w.enc = Encoder::with_capacity(w.limit + 64);
                        }
                        w.push(&p)?;
                    }
                }
                w.finish(&mut outputs, &mut pace, &mut written).await?;
                slice.tick().await;
            }
        }
        // Seal every output, then make their names durable.
        let siblings: Vec<u64> = outputs.values().map(|o| o.chunk.header.id).collect();
        let mut dir_max = 0;
        for out in outputs.values_mut() {
            out.close_block(&mut pace, &mut written).await?;
            out.write_pending(&mut pace, &mut written).await?;
            let blocks = out.blocks;
            let mut entries = std::mem::take(&mut out.entries);
            let rollups = std::mem::take(&mut out.rollups);
            out.rollup_bytes = rollups.len() as u64;
            let sealed = out
                .chunk
                .seal(
                    blocks,
                    &mut entries,
                    rollups,
                    inputs,
                    &siblings,
                    out.checkpoint,
                )
                .await;
            out.entries = entries;
            sealed?;
            dir_max = out.chunk.dir_micros.max(dir_max);
            written += out.chunk.allocated().saturating_sub(block_offset(blocks));
        }
        sync_dir(&dir).await?;
        let mut s = c.stats.borrow_mut();
        s.compaction_dir_max_micros = s.compaction_dir_max_micros.max(dir_max);
        s.compaction_rollup_bytes += outputs.values().map(|o| o.rollup_bytes).sum::<u64>();
        Ok(())
    }
    .await;
    if let Err(e) = result {
        discard(c, outputs).await;
        return Err(e);
    }
    // Swap: the outputs replace the inputs in the index, a tag at a time.
    let new = outputs
        .values()
        .map(|out| {
            let info = ChunkInfo {
                file: out.chunk.file.clone(),
                kind: Kind::Compacted,
                sealed: true,
                partition: Some(out.partition),
                data_offset: chunk::HEADER_BYTES,
                blocks: out.blocks,
                bytes: out.chunk.allocated(),
                min_ts: i64::MAX,
                max_ts: i64::MIN,
                checkpoint: out.chunk.header.checkpoint,
                tags: Vec::new(),
                points: 0,
                job,
                rollup_bytes: out.rollup_bytes,
            };
            (out.chunk.header.id, info, &out.entries)
        })
        .collect();
    let removed = swap_in(c, inputs, new).await;
    let mut read_bytes = 0;
    for (_, info) in &removed {
        read_bytes += info.bytes;
    }
    let paths: Vec<_> = removed
        .into_iter()
        .map(|(_, info)| info.file.path().to_path_buf())
        .collect();
    for path in &paths {
        remove_file(path).await?;
    }
    sync_dir(&dir).await?;
    let points: u64 = outputs.values().map(|o| o.points).sum();
    let mut s = c.stats.borrow_mut();
    s.compactions += 1;
    s.compaction_bytes_read += read_bytes;
    s.compaction_bytes_written += written;
    s.compaction_points += points;
    s.compaction_micros += started.elapsed().as_micros() as u64;
    s.retention_points_dropped += dropped;
    Ok(())
}

/// The segments of one tag grouped into clusters whose time ranges
/// overlap one another, in time order (usually one segment each).
fn clusters(refs: &[SegRef]) -> Vec<Vec<SegRef>> {
    let mut by_time: Vec<SegRef> = refs.to_vec();
    by_time.sort_by_key(|r| (r.min_ts, r.order));
    let mut out = Vec::new();
    let mut i = 0;
    while i < by_time.len() {
        let mut hi = by_time[i].max_ts;
        let mut j = i + 1;
        while j < by_time.len() && by_time[j].min_ts <= hi {
            hi = hi.max(by_time[j].max_ts);
            j += 1;
        }
        out.push(by_time[i..j].to_vec());
        i = j;
    }
    out
}

/// The points of one cluster of `tag`'s segments, merged: sorted, later
/// writes (higher orders) winning on equal timestamps.
fn merged(c: &Compactor, blocks: &Blocks, tag: u32, cluster: &[SegRef]) -> Result<Vec<Point>> {
    let mut by_order: Vec<&SegRef> = cluster.iter().collect();
    by_order.sort_by_key(|r| r.order);
    let mut runs = Vec::with_capacity(by_order.len());
    for r in by_order {
        let mut run = Vec::with_capacity(r.count as usize);
        decode(c, blocks, tag, r, &mut run)?;
        runs.push(run);
    }
    Ok(merge(runs))
}

/// One tag's output stream: points of one partition at a time, cut into
/// segments of at most a block's payload, each with its summary.
struct TagWriter {
    tag: u32,
    order: u64,
    part: Option<Partition>,
    enc: Encoder,
    sum: Summary,
    /// The current segment's rollup (when rollups are on).
    roll: Option<rollup::Builder>,
    /// Payload bytes the current segment may take: the room left in its
    /// output's open block, so blocks are filled rather than padded.
    limit: usize,
    /// The aligned interval (`ts / segment_align`) the current segment
    /// lies in.
    span: i64,
}

impl TagWriter {
    fn push(&mut self, p: &Point) -> Result<()> {
        self.enc.push(p.ts, p.value.to_bits(), p.quality);
        if let Some(r) = &mut self.roll {
            r.push(p.ts, p.value, p.quality);
        }
        self.sum
            .push(p.ts, p.value, p.quality)
            .map_err(|why| Error::fenced(format!("internal error: summary: {why}")))
    }

    /// Ends the current segment (if any) into its partition's output.
    async fn finish(
        &mut self,
        outputs: &mut BTreeMap<Partition, Output>,
        pace: &mut Pace,
        written: &mut u64,
    ) -> Result<()> {
        if self.enc.count() == 0 {
            return Ok(());
        }
        let seg = std::mem::take(&mut self.enc).finish();
        let sum = std::mem::replace(&mut self.sum, Summary::EMPTY);
        let roll = self.roll.as_mut().and_then(rollup::Builder::finish);
        let Some(out) = self.part.and_then(|p| outputs.get_mut(&p)) else {
            return Err(Error::fenced(
                "internal error: compaction output missing for a partition".to_string(),
            ));
        };
        out.add(self.tag, seg, self.order, (sum, roll), pace, written)
            .await
    }
}

fn decode(
    c: &Compactor,
    blocks: &Blocks,
    tag: u32,
    r: &SegRef,
    out: &mut Vec<Point>,
) -> Result<()> {
    let Some(cached) = blocks.cache.get(&(r.chunk, r.slot)) else {
        return Err(Error::fenced(format!(
            "internal error: block {} of chunk {} was not read ahead",
            r.slot, r.chunk
        )));
    };
    let (data, blk) = &**cached;
    let corrupt = |why: String| {
        let index = c.disk.index.borrow();
        match index.chunk(r.chunk) {
            Some(info) => Error::corrupt(info.file.path(), info.block_offset(r.slot), why),
            None => Error::fenced(format!("internal error: chunk {} vanished: {why}", r.chunk)),
        }
    };
    let seg = blk
        .segments
        .get(r.index as usize)
        .filter(|s| s.tag == tag && s.count == r.count && (blk.version == 1 || s.order == r.order))
        .ok_or_else(|| {
            corrupt(format!(
                "no segment {} of tag {tag} where the index expects it",
                r.index
            ))
        })?;
    block::decode_all(data, blk, seg, out).map_err(corrupt)
}
