//! The shard's in-memory index of durable segments: per tag, its segments
//! in write order (a later segment holds later writes, so it wins on equal
//! timestamps), each with where it is and what it covers, and for
//! compacted segments their summaries and where their rollups are; and the registry of live chunk files
//! (kind, partition, size, time range, checkpoint). Built at open from the
//! chunks' directories and kept current by flushes, compaction and
//! retention. Owns bookkeeping only; never does I/O.

use std::collections::HashSet;
use std::rc::Rc;

use ahash::AHashMap;

use crate::aggregate::Summary;
use crate::storage::block::BLOCK_SIZE;
use crate::storage::chunk::{DirEntry, Kind, Partition, RollupRef};
use crate::storage::file::DataFile;

const NO_SUMMARY: u32 = u32::MAX;

/// Where one segment is and what it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegRef {
    /// Chunk id.
    pub chunk: u64,
    /// Slot of its block in the chunk.
    pub slot: u32,
    /// Index of the segment in its block.
    pub index: u16,
    /// Points.
    pub count: u32,
    /// Smallest timestamp.
    pub min_ts: i64,
    /// Largest timestamp.
    pub max_ts: i64,
    /// Write order (see [`crate::storage::block::SegEntry::order`]).
    pub order: u64,
    summary: u32,
}

/// A live chunk file.
pub struct ChunkInfo {
    /// The file.
    pub file: Rc<DataFile>,
    /// Kind.
    pub kind: Kind,
    /// Sealed (never written again).
    pub sealed: bool,
    /// Time partition (compacted chunks).
    pub partition: Option<Partition>,
    /// Offset of block slot 0.
    pub data_offset: u64,
    /// Blocks committed.
    pub blocks: u32,
    /// Bytes the file holds on disk (blocks, header and directory).
    pub bytes: u64,
    /// Smallest and largest timestamp of its segments.
    pub min_ts: i64,
    /// Largest timestamp of its segments.
    pub max_ts: i64,
    /// The WAL checkpoint its header records.
    pub checkpoint: u64,
    /// Tags with segments in it (sorted, unique once [`Index::finish_chunk`] ran).
    pub tags: Vec<u32>,
    /// Points it holds.
    pub points: u64,
    /// The compaction job that wrote it (compacted chunks; 0 otherwise).
    pub job: u64,
    /// Bytes of its segments' rollups (part of `bytes`).
    pub rollup_bytes: u64,
}

impl ChunkInfo {
    /// Offset of `slot`'s block.
    pub fn block_offset(&self, slot: u32) -> u64 {
        self.data_offset + slot as u64 * BLOCK_SIZE as u64
    }
}

/// Segments per tag plus the chunk files.
#[derive(Default)]
pub struct Index {
    tags: AHashMap<u32, Vec<SegRef>>,
    chunks: AHashMap<u64, ChunkInfo>,
    summaries: Vec<(Summary, Option<RollupRef>)>,
    free_summaries: Vec<u32>,
    segments: u64,
}

impl Index {
    /// Registers a chunk file (before its segments are added).
    pub fn add_chunk(&mut self, id: u64, info: ChunkInfo) {
        self.chunks.insert(id, info);
    }

    /// The chunk `id`, if live.
    pub fn chunk(&self, id: u64) -> Option<&ChunkInfo> {
        self.chunks.get(&id)
    }

    /// The chunk `id`, if live, to update its bookkeeping.
    pub fn chunk_mut(&mut self, id: u64) -> Option<&mut ChunkInfo> {
        self.chunks.get_mut(&id)
    }

    /// Every live chunk.
    pub fn chunks(&self) -> impl Iterator<Item = (u64, &ChunkInfo)> {
        self.chunks.iter().map(|(id, c)| (*id, c))
    }

    /// Adds a durable segment of chunk `chunk` (registered), keeping the
    /// tag's segments in write order.
    pub fn add(&mut self, chunk: u64, e: &DirEntry) {
        let summary = match e.summary {
            Some(s) => match self.free_summaries.pop() {
                Some(i) => {
                    self.summaries[i as usize] = (s, e.rollup);
                    i
                }
                None => {
                    self.summaries.push((s, e.rollup));
                    (self.summaries.len() - 1) as u32
                }
            },
            None => NO_SUMMARY,
        };
        let r = SegRef {
            chunk,
            slot: e.slot,
            index: e.index,
            count: e.count,
            min_ts: e.min_ts,
            max_ts: e.max_ts,
            order: e.order,
            summary,
        };
        let v = self.tags.entry(e.tag).or_default();
        // Flushes append newer segments; only compaction outputs (whose
        // order is that of their newest input) may land before the end.
        let at = v.partition_point(|x| x.order <= r.order);
        v.insert(at, r);
        self.segments += 1;
        if let Some(c) = self.chunks.get_mut(&chunk) {
            c.tags.push(e.tag);
            c.points += e.count as u64;
            c.min_ts = c.min_ts.min(e.min_ts);
            c.max_ts = c.max_ts.max(e.max_ts);
        }
    }

    /// Sorts and de-duplicates a chunk's tag list once its segments are in.
    pub fn finish_chunk(&mut self, chunk: u64) {
        if let Some(c) = self.chunks.get_mut(&chunk) {
            c.tags.sort_unstable();
            c.tags.dedup();
        }
    }

    /// The summary of a segment, if it has one.
    pub fn summary(&self, r: &SegRef) -> Option<&Summary> {
        (r.summary != NO_SUMMARY).then(|| &self.summaries[r.summary as usize].0)
    }

    /// Where a segment's rollup is, if it has one.
    pub fn rollup(&self, r: &SegRef) -> Option<RollupRef> {
        (r.summary != NO_SUMMARY)
            .then(|| self.summaries[r.summary as usize].1)
            .flatten()
    }

    /// Segments of `tag` overlapping `[start, end)`, oldest write first,
    /// with the file and offset of each one's block.
    pub fn overlapping(&self, tag: u32, start: i64, end: i64) -> Vec<(SegRef, Rc<DataFile>, u64)> {
        self.tags
            .get(&tag)
            .map(|v| {
                v.iter()
                    .filter(|r| r.min_ts < end && r.max_ts >= start)
                    .filter_map(|r| self.locate(r).map(|(f, off)| (*r, f, off)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every segment of `tag`, oldest write first.
    pub fn segments_of(&self, tag: u32) -> &[SegRef] {
        self.tags.get(&tag).map_or(&[], Vec::as_slice)
    }

    /// The segment of `tag` holding its greatest timestamp (the latest
    /// write on ties).
    pub fn newest(&self, tag: u32) -> Option<(SegRef, Rc<DataFile>, u64)> {
        let v = self.tags.get(&tag)?;
        let max = v.iter().map(|r| r.max_ts).max()?;
        let best = v.iter().rev().find(|r| r.max_ts == max)?;
        self.locate(best).map(|(f, off)| (*best, f, off))
    }

    /// The file and block offset of a segment.
    pub fn locate(&self, r: &SegRef) -> Option<(Rc<DataFile>, u64)> {
        let c = self.chunks.get(&r.chunk)?;
        Some((c.file.clone(), c.block_offset(r.slot)))
    }

    /// Drops chunks `ids` and all their segments in one step (the shard
    /// itself does it a tag at a time with yields between:
    /// [`Index::swap_tag`], then [`Index::drop_chunks`]). Returns their
    /// files.
    pub fn remove_chunks(&mut self, ids: &[u64]) -> Vec<(u64, ChunkInfo)> {
        let set: HashSet<u64> = ids.iter().copied().collect();
        for tag in self.tags_of(ids) {
            self.swap_tag(tag, &set, &[]);
        }
        self.drop_chunks(ids)
    }

    /// Every tag with a segment in chunks `ids`, sorted.
    pub fn tags_of(&self, ids: &[u64]) -> Vec<u32> {
        let mut tags = Vec::new();
        for id in ids {
            if let Some(c) = self.chunks.get(id) {
                tags.extend_from_slice(&c.tags);
            }
        }
        tags.sort_unstable();
        tags.dedup();
        tags
    }

    /// For one tag, in one step: drops its segments in chunks `old` and
    /// adds `new` (segments of registered chunks), keeping write order. A
    /// compaction job's swap (or retention's removal, with no `new`) runs
    /// this for each tag, so a reader sees each tag either before or after
    /// it, and never both or neither.
    pub fn swap_tag(&mut self, tag: u32, old: &HashSet<u64>, new: &[(u64, &DirEntry)]) {
        if let Some(v) = self.tags.get_mut(&tag) {
            let before = v.len();
            let free = &mut self.free_summaries;
            v.retain(|r| {
                let keep = !old.contains(&r.chunk);
                if !keep && r.summary != NO_SUMMARY {
                    free.push(r.summary);
                }
                keep
            });
            self.segments -= (before - v.len()) as u64;
            if v.is_empty() {
                self.tags.remove(&tag);
            }
        }
        for (chunk, e) in new {
            debug_assert_eq!(e.tag, tag);
            self.add(*chunk, e);
        }
    }

    /// Drops the registry entries of chunks `ids`, whose segments
    /// [`Index::swap_tag`] already took out. Returns their files.
    pub fn drop_chunks(&mut self, ids: &[u64]) -> Vec<(u64, ChunkInfo)> {
        ids.iter()
            .filter_map(|id| self.chunks.remove(id).map(|c| (*id, c)))
            .collect()
    }

    /// Segments indexed.
    pub fn segments(&self) -> u64 {
        self.segments
    }

    /// Tags with at least one durable segment.
    pub fn tag_count(&self) -> usize {
        self.tags.len()
    }

    /// Takes every chunk file out (for closing).
    pub fn take_files(&mut self) -> Vec<Rc<DataFile>> {
        self.tags.clear();
        self.chunks.drain().map(|(_, c)| c.file).collect()
    }
}
