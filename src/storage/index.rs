//! The shard's in-memory index of durable blocks: per tag, the blocks in the
//! order they were committed (later blocks hold later writes), and the open
//! chunk files to read them from. Built at open from chunk directories and
//! extended after each flush commit.

use std::rc::Rc;

use ahash::AHashMap;

use crate::storage::chunk::Layout;
use crate::storage::file::DataFile;

/// Where one block is and what it covers.
#[derive(Clone, Copy, Debug)]
pub struct BlockRef {
    /// Chunk id.
    pub chunk: u32,
    /// Slot in the chunk.
    pub slot: u32,
    /// Points.
    pub count: u32,
    /// Smallest timestamp.
    pub min_ts: i64,
    /// Largest timestamp.
    pub max_ts: i64,
}

/// Blocks per tag plus the chunk files.
#[derive(Default)]
pub struct Index {
    tags: AHashMap<u32, Vec<BlockRef>>,
    files: Vec<Option<(Rc<DataFile>, Layout)>>,
    blocks: u64,
}

impl Index {
    /// Registers chunk `id`'s file.
    pub fn set_file(&mut self, id: u32, file: Rc<DataFile>, layout: Layout) {
        let i = id as usize;
        if self.files.len() <= i {
            self.files.resize(i + 1, None);
        }
        self.files[i] = Some((file, layout));
    }

    /// Adds a committed block (call in commit order).
    pub fn add(&mut self, tag: u32, r: BlockRef) {
        self.tags.entry(tag).or_default().push(r);
        self.blocks += 1;
    }

    /// Blocks of `tag` overlapping `[start, end)`, oldest first, with the
    /// file and offset to read each from.
    pub fn overlapping(
        &self,
        tag: u32,
        start: i64,
        end: i64,
    ) -> Vec<(BlockRef, Rc<DataFile>, u64)> {
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

    /// The block of `tag` holding its greatest timestamp (the most recently
    /// committed one on ties).
    pub fn newest(&self, tag: u32) -> Option<(BlockRef, Rc<DataFile>, u64)> {
        let v = self.tags.get(&tag)?;
        let best = v.iter().rev().max_by_key(|r| r.max_ts)?;
        // `max_by_key` returns the last maximum of the reversed iterator,
        // i.e. the earliest; find the latest block with that max instead.
        let best = v.iter().rev().find(|r| r.max_ts == best.max_ts)?;
        self.locate(best).map(|(f, off)| (*best, f, off))
    }

    fn locate(&self, r: &BlockRef) -> Option<(Rc<DataFile>, u64)> {
        let (f, layout) = self.files.get(r.chunk as usize)?.as_ref()?;
        Some((f.clone(), layout.block_offset(r.slot)))
    }

    /// Blocks indexed.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Takes every chunk file out (for closing).
    pub fn take_files(&mut self) -> Vec<Rc<DataFile>> {
        self.files.drain(..).flatten().map(|(f, _)| f).collect()
    }
}
