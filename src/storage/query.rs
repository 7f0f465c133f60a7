//! Queries: `range` and `latest`, merged from the active buffer, buffers
//! being flushed and durable blocks.
//!
//! Precedence for the same `(tag, ts)`: the active buffer over frozen
//! buffers over segments on disk, and among segments the one with the
//! higher write order (the highest WAL sequence of its points). That is
//! write order, so "later write wins" holds wherever the points live, and
//! whether or not compaction has rewritten them. Block reads are issued
//! concurrently and each block is verified (CRC, chunk, slot, and the
//! segment's tag and count) before use: a damaged block fails the query
//! with an error naming file and offset; it is never served.

use std::cell::RefCell;
use std::rc::Rc;

use futures_util::stream::{self, StreamExt};

use crate::storage::block::{self, BLOCK_SIZE};
use crate::storage::codec::Sample;
use crate::storage::disk::Disk;
use crate::storage::error::{Error, Result};
use crate::storage::file::DataFile;
use crate::storage::index::SegRef;
use crate::storage::memory::Memory;
use crate::storage::stats::ShardStats;
use crate::Point;

/// Block reads in flight per query.
const READS_IN_FLIGHT: usize = 64;

/// Points of `tag` in `[start, end)`, sorted, later writes winning; a
/// range whose count bound (the overlapping segments' whole counts plus
/// the points in memory: known before any block is read) is past
/// `max_points` is refused with [`Error::Limit`], nothing decoded.
///
/// Each block is decoded as soon as it has arrived (reads stay in flight
/// meanwhile), straight onto one vector sized for every segment: when the
/// segments (oldest write first) and then the buffers follow one another
/// in time, as in-order writes leave them, that vector is the answer as it
/// stands; only overlapping runs are copied out and merged.
pub(crate) async fn range(
    mem: &Memory,
    disk: &Disk,
    stats: &RefCell<ShardStats>,
    tag: u32,
    start: i64,
    end: i64,
    max_points: u64,
) -> Result<Vec<Point>> {
    if start >= end {
        return Ok(Vec::new());
    }
    let snap = Snapshot::take(mem, disk, tag, start, end, max_points)?;
    merged(stats, tag, start, end, snap).await
}

/// One piece of a range answered as pieces ([`range_pieces`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Piece {
    /// A disk segment's verified codec payload as it is on disk (see
    /// [`crate::storage::codec::split_payload`]): `count` points, all with
    /// `min_ts <= ts <= max_ts`; the receiver decodes and clips it.
    Encoded {
        /// Points in the payload.
        count: u32,
        /// No point is earlier.
        min_ts: i64,
        /// No point is later.
        max_ts: i64,
        /// The payload.
        payload: Vec<u8>,
    },
    /// Points, sorted, already clipped (memory runs and raw blocks).
    Points(Vec<Point>),
}

/// A range answered as pieces: each piece's points follow the previous
/// piece's in time (no two overlap, so no later-write-wins merging is
/// needed), and the answer is their points with `start <= ts < end`, in
/// piece order. `start` and `end` are the range the shard answered (the
/// start may be raised to the retention cutoff).
#[derive(Clone, Debug, PartialEq)]
pub struct Pieces {
    /// The tag every point is of.
    pub tag: u32,
    /// Inclusive start the pieces are clipped to.
    pub start: i64,
    /// Exclusive end the pieces are clipped to.
    pub end: i64,
    /// The pieces, in time order.
    pub pieces: Vec<Piece>,
}

/// What [`range_pieces`] answers.
#[derive(Debug)]
pub enum RangeAnswer {
    /// The points, merged (some runs overlapped in time).
    Points(Vec<Point>),
    /// Pieces for the receiver to decode.
    Pieces(Pieces),
}

/// [`range`], answered as [`Pieces`] when the range's segments (by their
/// declared time spans, from the index, before any block is read) and its
/// memory runs follow one another in time with no overlap: each codec
/// segment's payload is shipped as it is, after its block passed the
/// checks of [`decode_segment`] but for decoding; raw segments and memory
/// runs go as points. Otherwise the merged points, as [`range`] answers.
/// Refused past `max_points` the same way, before any block is read.
pub(crate) async fn range_pieces(
    mem: &Memory,
    disk: &Disk,
    stats: &RefCell<ShardStats>,
    tag: u32,
    start: i64,
    end: i64,
    max_points: u64,
) -> Result<RangeAnswer> {
    if start >= end {
        return Ok(RangeAnswer::Points(Vec::new()));
    }
    let mut snap = Snapshot::take(mem, disk, tag, start, end, max_points)?;
    // Runs in time order: (smallest ts, largest ts, Ok(segment) or Err(memory run)).
    let mut runs: Vec<(i64, i64, std::result::Result<usize, usize>)> =
        Vec::with_capacity(snap.blocks.len() + snap.mem_runs.len());
    for (i, (r, _, _)) in snap.blocks.iter().enumerate() {
        runs.push((r.min_ts, r.max_ts, Ok(i)));
    }
    for (j, run) in snap.mem_runs.iter().enumerate() {
        if let (Some(a), Some(b)) = (run.first(), run.last()) {
            runs.push((a.ts, b.ts, Err(j)));
        }
    }
    runs.sort_by_key(|r| r.0);
    if runs.windows(2).any(|w| w[0].1 >= w[1].0) {
        stats.borrow_mut().pieces_ranges_merged += 1;
        return merged(stats, tag, start, end, snap)
            .await
            .map(RangeAnswer::Points);
    }
    let segs = &snap.blocks;
    let (block_of, unique) = unique_blocks(segs);
    let blocks = read_blocks(&unique).await?;
    let mut pieces = Vec::with_capacity(runs.len());
    let mut from_disk = 0u64;
    let mut encoded = 0u64;
    for (_, _, which) in runs {
        match which {
            Ok(i) => {
                let (r, file, off) = &segs[i];
                let data = &blocks[block_of[i]];
                let (blk, seg) = checked_segment(data, r, tag, file.path(), *off)?;
                // The overlap test above used the index's spans: the
                // piece's must be those (the receiver checks its points
                // against them).
                if (seg.min_ts, seg.max_ts) != (r.min_ts, r.max_ts) {
                    return Err(Error::corrupt(
                        file.path(),
                        *off,
                        format!(
                            "segment {} spans {}..={}, the index says {}..={}",
                            r.index, seg.min_ts, seg.max_ts, r.min_ts, r.max_ts
                        ),
                    ));
                }
                from_disk += u64::from(seg.count);
                if blk.encoding == block::RAW {
                    let mut out = Vec::new();
                    block::decode_into(data, &blk, &seg, start, end, &mut out)
                        .map_err(|why| Error::corrupt(file.path(), *off, why))?;
                    if !out.is_empty() {
                        pieces.push(Piece::Points(out));
                    }
                } else {
                    let payload = block::payload(data, &seg)
                        .map_err(|why| Error::corrupt(file.path(), *off, why))?;
                    encoded += 1;
                    pieces.push(Piece::Encoded {
                        count: seg.count,
                        min_ts: seg.min_ts,
                        max_ts: seg.max_ts,
                        payload: payload.to_vec(),
                    });
                }
            }
            Err(j) => pieces.push(Piece::Points(std::mem::take(&mut snap.mem_runs[j]))),
        }
    }
    {
        let mut s = stats.borrow_mut();
        s.blocks_read += unique.len() as u64;
        s.points_from_disk += from_disk;
        s.points_from_memory += snap.mem as u64;
        s.segments_shipped_encoded += encoded;
    }
    Ok(RangeAnswer::Pieces(Pieces {
        tag,
        start,
        end,
        pieces,
    }))
}

/// What a range reads, taken at one instant: the overlapping segments
/// (oldest write first) and the memory runs in range (frozen, then
/// active), after the count bound was checked.
struct Snapshot {
    blocks: Vec<(SegRef, Rc<DataFile>, u64)>,
    mem_runs: Vec<Vec<Point>>,
    mem: usize,
    cap: usize,
}

impl Snapshot {
    fn take(
        mem: &Memory,
        disk: &Disk,
        tag: u32,
        start: i64,
        end: i64,
        max_points: u64,
    ) -> Result<Snapshot> {
        let blocks = disk.index.borrow().overlapping(tag, start, end);
        let mut mem_runs: Vec<Vec<Point>> = Vec::new();
        if let Some(b) = mem.frozen.borrow().get(&tag) {
            let mut run = Vec::new();
            b.range(tag, start, end, &mut run);
            mem_runs.push(run);
        }
        if let Some(b) = mem.bufs.borrow_mut().get_mut(tag) {
            let mut run = Vec::new();
            b.range(tag, start, end, &mut run);
            mem_runs.push(run);
        }
        let mem: usize = mem_runs.iter().map(Vec::len).sum();
        let cap = blocks
            .iter()
            .map(|(r, _, _)| r.count as usize)
            .sum::<usize>()
            + mem;
        if cap as u64 > max_points {
            return Err(Error::Limit {
                what: "range",
                detail: format!(
                    "may hold up to {cap} points (counted from the block index, duplicates \
                     included), past the {max_points} one answer holds: query a narrower range"
                ),
            });
        }
        Ok(Snapshot {
            blocks,
            mem_runs,
            mem,
            cap,
        })
    }
}

/// The points of `snap` in `[start, end)`, merged, later writes winning.
async fn merged(
    stats: &RefCell<ShardStats>,
    tag: u32,
    start: i64,
    end: i64,
    snap: Snapshot,
) -> Result<Vec<Point>> {
    let Snapshot {
        blocks,
        mem_runs,
        mem,
        cap,
    } = snap;
    let mut all = Vec::with_capacity(cap);
    let mut spans = Vec::with_capacity(blocks.len() + mem_runs.len());
    let reads = decode_segments_into(tag, &blocks, start, end, &mut all, &mut spans).await?;
    let disk = all.len();
    for run in mem_runs.iter().filter(|r| !r.is_empty()) {
        let at = all.len();
        all.extend_from_slice(run);
        spans.push((at, all.len()));
    }
    let merged = if in_time_order(&all, &spans) {
        all
    } else {
        merge(spans.iter().map(|&(a, b)| all[a..b].to_vec()).collect())
    };
    {
        let mut s = stats.borrow_mut();
        s.blocks_read += reads;
        s.points_from_disk += disk as u64;
        s.points_from_memory += mem as u64;
    }
    Ok(merged)
}

/// An upper bound of the points of `tag` in `[start, end)`: the whole
/// count of every segment overlapping it (duplicates across segments and
/// the points of edge segments outside the range included) plus the
/// points in memory in it; with bounds `(min, max)` of their timestamps
/// (`min > max` when there are none). Reads no block.
pub(crate) fn count_bound(
    mem: &Memory,
    disk: &Disk,
    tag: u32,
    start: i64,
    end: i64,
) -> (u64, i64, i64) {
    let (mut n, mut lo, mut hi) = (0u64, i64::MAX, i64::MIN);
    if start >= end {
        return (n, lo, hi);
    }
    for r in disk.index.borrow().segments_of(tag) {
        if r.min_ts < end && r.max_ts >= start {
            n += u64::from(r.count);
            lo = lo.min(r.min_ts.max(start));
            hi = hi.max(r.max_ts.min(end - 1));
        }
    }
    let mut run = Vec::new();
    if let Some(b) = mem.frozen.borrow().get(&tag) {
        b.range(tag, start, end, &mut run);
    }
    if let Some(b) = mem.bufs.borrow_mut().get_mut(tag) {
        b.range(tag, start, end, &mut run);
    }
    for p in &run {
        lo = lo.min(p.ts);
        hi = hi.max(p.ts);
    }
    (n + run.len() as u64, lo, hi)
}

/// The point of `tag` with the greatest timestamp.
pub(crate) async fn latest(
    mem: &Memory,
    disk: &Disk,
    stats: &RefCell<ShardStats>,
    tag: u32,
) -> Result<Option<Point>> {
    let mut best: Option<Sample> = None;
    if let Some(b) = mem.frozen.borrow().get(&tag) {
        best = b.last();
    }
    if let Some(b) = mem.bufs.borrow_mut().get_mut(tag) {
        if let Some(s) = b.last() {
            if best.is_none_or(|x| s.ts >= x.ts) {
                best = Some(s);
            }
        }
    }
    let newest = disk.index.borrow().newest(tag);
    let mut from_disk = false;
    if let Some((r, file, off)) = newest {
        if best.is_none_or(|m| r.max_ts > m.ts) {
            let (runs, _) =
                read_segments(tag, &[(r, file, off)], r.max_ts, r.max_ts.saturating_add(1)).await?;
            if let Some(p) = runs.into_iter().flatten().last() {
                best = Some(Sample {
                    ts: p.ts,
                    value: p.value,
                    quality: p.quality,
                });
                from_disk = true;
            }
        }
    }
    let mut s = stats.borrow_mut();
    if from_disk {
        s.blocks_read += 1;
        s.points_from_disk += 1;
    } else if best.is_some() {
        s.points_from_memory += 1;
    }
    Ok(best.map(|s| Point {
        tag,
        ts: s.ts,
        value: s.value,
        quality: s.quality,
    }))
}

/// Whether the runs `spans` of `points` (each sorted) follow one another in
/// time: each run's first point after the previous run's last, so their
/// concatenation is what [`merge`] would make of them.
fn in_time_order(points: &[Point], spans: &[(usize, usize)]) -> bool {
    spans
        .windows(2)
        .all(|w| points[w[0].1 - 1].ts < points[w[1].0].ts)
}

/// The blocks holding `segs`, each once however many of the segments it
/// holds (compaction's aligned cuts put a day's hours in a few blocks):
/// per segment the index of its block in the list, and the list of (file,
/// offset) to read.
#[allow(clippy::type_complexity)]
fn unique_blocks(segs: &[(SegRef, Rc<DataFile>, u64)]) -> (Vec<usize>, Vec<(Rc<DataFile>, u64)>) {
    let mut block_of = Vec::with_capacity(segs.len());
    let mut unique: Vec<(Rc<DataFile>, u64)> = Vec::new();
    let mut seen = std::collections::HashMap::new();
    for (r, file, off) in segs {
        let i = *seen.entry((r.chunk, r.slot)).or_insert_with(|| {
            unique.push((file.clone(), *off));
            unique.len() - 1
        });
        block_of.push(i);
    }
    (block_of, unique)
}

/// Reads `blocks` ([`unique_blocks`]), [`READS_IN_FLIGHT`] at a time, in
/// order.
async fn read_blocks(blocks: &[(Rc<DataFile>, u64)]) -> Result<Vec<glommio::io::ReadResult>> {
    let reads = blocks
        .iter()
        .map(|(file, off)| async move { file.read_at(*off, BLOCK_SIZE).await });
    let mut done = stream::iter(reads).buffered(READS_IN_FLIGHT);
    let mut out = Vec::with_capacity(blocks.len());
    while let Some(b) = done.next().await {
        out.push(b?);
    }
    Ok(out)
}

/// Reads the blocks of `segs` (each once, however many of the segments it
/// holds; up to [`READS_IN_FLIGHT`] at a time) and appends each segment's
/// points in `[start, end)` to `out`, in the order given, as soon as its
/// block has arrived (blocks are numbered in the order the segments first
/// need them, and arrive in that order). `spans` gets each non-empty
/// segment's `[from, to)` in `out`. Returns the blocks read.
async fn decode_segments_into(
    tag: u32,
    segs: &[(SegRef, Rc<DataFile>, u64)],
    start: i64,
    end: i64,
    out: &mut Vec<Point>,
    spans: &mut Vec<(usize, usize)>,
) -> Result<u64> {
    let (block_of, unique) = unique_blocks(segs);
    let reads = unique
        .iter()
        .map(|(file, off)| async move { file.read_at(*off, BLOCK_SIZE).await });
    let mut done = stream::iter(reads).buffered(READS_IN_FLIGHT);
    let mut blocks = Vec::with_capacity(unique.len());
    let mut next = 0;
    while let Some(b) = done.next().await {
        blocks.push(b?);
        while let Some(&i) = block_of.get(next) {
            let (Some(data), Some((r, file, off))) = (blocks.get(i), segs.get(next)) else {
                break;
            };
            let at = out.len();
            decode_segment(data, r, tag, file.path(), *off, start, end, out)?;
            if out.len() > at {
                spans.push((at, out.len()));
            }
            next += 1;
        }
    }
    Ok(unique.len() as u64)
}

/// Reads the blocks of `segs` concurrently, each block once however many
/// of the segments it holds, and verifies them; returns each segment's
/// points in `[start, end)`, in the order given, and the blocks read.
pub(crate) async fn read_segments(
    tag: u32,
    segs: &[(SegRef, Rc<DataFile>, u64)],
    start: i64,
    end: i64,
) -> Result<(Vec<Vec<Point>>, u64)> {
    let (block_of, unique) = unique_blocks(segs);
    let blocks = read_blocks(&unique).await?;
    let mut runs = Vec::with_capacity(segs.len());
    for ((r, file, off), &i) in segs.iter().zip(&block_of) {
        let mut out = Vec::new();
        decode_segment(&blocks[i], r, tag, file.path(), *off, start, end, &mut out)?;
        runs.push(out);
    }
    Ok((runs, unique.len() as u64))
}

/// Verifies block `data` (read from `path` at `off`) against what the
/// index expects of segment `r` of `tag`, and appends its points in
/// `[start, end)` to `out`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn decode_segment(
    data: &[u8],
    r: &SegRef,
    tag: u32,
    path: &std::path::Path,
    off: u64,
    start: i64,
    end: i64,
    out: &mut Vec<Point>,
) -> Result<()> {
    let (blk, seg) = checked_segment(data, r, tag, path, off)?;
    block::decode_into(data, &blk, &seg, start, end, out)
        .map_err(|why| Error::corrupt(path, off, why))
}

/// Verifies block `data` (read from `path` at `off`: CRC, chunk, slot,
/// and every segment's payload framing) and that it holds segment `r` of
/// `tag` as the index expects it (tag, count, write order); returns the
/// block and that segment's entry.
fn checked_segment(
    data: &[u8],
    r: &SegRef,
    tag: u32,
    path: &std::path::Path,
    off: u64,
) -> Result<(block::Block, block::SegEntry)> {
    let blk = block::verify(data).map_err(|why| Error::corrupt(path, off, why))?;
    let seg = blk.segments.get(r.index as usize).copied();
    // Version 1 blocks carry their lowest WAL sequence, not the order the
    // index gave them (their place in commit order).
    let ok = seg.is_some_and(|s| {
        s.tag == tag && s.count == r.count && (blk.version == 1 || s.order == r.order)
    }) && blk.slot == r.slot
        && blk.chunk_id == r.chunk;
    match seg.filter(|_| ok) {
        Some(seg) => Ok((blk, seg)),
        None => Err(Error::corrupt(
            path,
            off,
            format!(
                "block claims chunk {} slot {} without segment {} of tag {tag} the index expects",
                blk.chunk_id, blk.slot, r.index
            ),
        )),
    }
}

/// Merges runs (each sorted and unique, given oldest write first) into one
/// sorted run where the latest run wins on equal timestamps.
pub(crate) fn merge(mut runs: Vec<Vec<Point>>) -> Vec<Point> {
    runs.retain(|r| !r.is_empty());
    if runs.len() <= 1 {
        return runs.pop().unwrap_or_default();
    }
    // Common case: runs cover disjoint time spans; concatenate in time order.
    let mut order: Vec<usize> = (0..runs.len()).collect();
    order.sort_by_key(|&i| runs[i][0].ts);
    let disjoint = order
        .windows(2)
        .all(|w| runs[w[0]].last().map(|s| s.ts) < Some(runs[w[1]][0].ts));
    if disjoint {
        let mut out = Vec::with_capacity(runs.iter().map(|r| r.len()).sum());
        for i in order {
            out.extend_from_slice(&runs[i]);
        }
        return out;
    }
    // Overlap: stable sort keeps write order among equal timestamps; keep the last.
    let mut all: Vec<Point> = runs.concat();
    all.sort_by_key(|s| s.ts);
    let mut out: Vec<Point> = Vec::with_capacity(all.len());
    for s in all {
        match out.last_mut() {
            Some(l) if l.ts == s.ts => *l = s,
            _ => out.push(s),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(v: &[(i64, f64)]) -> Vec<Point> {
        v.iter()
            .map(|&(ts, value)| Point::new(1, ts, value, 0))
            .collect()
    }

    #[test]
    fn merge_prefers_later_runs() {
        let m = merge(vec![
            run(&[(1, 1.0), (3, 1.0)]),
            run(&[(2, 2.0), (3, 2.0)]),
            run(&[(3, 3.0)]),
        ]);
        assert_eq!(m, run(&[(1, 1.0), (2, 2.0), (3, 3.0)]));
        let m = merge(vec![run(&[(5, 1.0)]), run(&[(1, 2.0), (2, 2.0)])]);
        assert_eq!(m, run(&[(1, 2.0), (2, 2.0), (5, 1.0)]));
    }
}
