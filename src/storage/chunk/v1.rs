//! Reading chunk files of format version 1: a
//! header, directory pages and a fixed number of 16 KiB block slots, one
//! tag per block. Read-only: compaction rewrites such chunks into version 2
//! and deletes them. Never writes.
//!
//! File `chunks/chunk-NNNNNNNNNNNNNNNN.xtc` (id in hex), little endian:
//!
//! | offset | size | what |
//! |---|---|---|
//! | 0 | 4096 | header slot A |
//! | 4096 | 4096 | header slot B |
//! | 8192 | 4096 × ceil(blocks / 127) | directory pages |
//! | after | 16384 × blocks | block slots ([`crate::storage::block`]) |
//!
//! Header slot (commits alternate between A and B; the valid slot with the
//! higher generation is current, so a torn header write loses nothing):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `XTCHUNK1` |
//! | 8 | 4 | format version (1) |
//! | 12 | 4 | block slots in this chunk |
//! | 16 | 8 | chunk id |
//! | 24 | 8 | generation (one per commit) |
//! | 32 | 4 | committed blocks (slots `0..n` are durable and listed) |
//! | 36 | 4 | sealed (1) or active (0) |
//! | 40 | 8 | checkpoint: every WAL record below this sequence is in durable blocks |
//! | 48 | 4 | CRC32 of bytes 0..48 |
//!
//! Directory page (127 entries of 32 bytes after a 16-byte page header):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `XDIR` |
//! | 4 | 4 | page index |
//! | 8 | 4 | entries in this page |
//! | 12 | 4 | CRC32 of bytes 0..12 and the entries |
//! | 16 + 32i | 4 | entry: tag |
//! | +4 | 4 | point count |
//! | +8 | 8 | min timestamp |
//! | +16 | 8 | max timestamp |
//! | +24 | 4 | slot |
//! | +28 | 4 | the block's CRC |
//!
//! Version 1's commit protocol was: blocks, then the touched directory
//! pages, `fdatasync`, then the next header slot with the new committed
//! count and checkpoint, `fdatasync`.

use super::{DirEntry, HEADER_BYTES};
use crate::storage::block::{self, BLOCK_SIZE};
use crate::storage::error::{Error, Result};
use crate::storage::file::{DataFile, PAGE};
use crate::storage::le::{u32_at, u64_at};

const DIR_MAGIC: &[u8; 4] = b"XDIR";
/// The version this module reads.
pub const VERSION: u32 = 1;
/// Directory entries per 4 KiB page.
pub const ENTRIES_PER_PAGE: usize = 127;
const ENTRY: usize = 32;

/// Where things are in a chunk of a given size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Block slots.
    pub blocks: u32,
}

impl Layout {
    /// Directory pages.
    pub fn dir_pages(&self) -> u64 {
        (self.blocks as u64).div_ceil(ENTRIES_PER_PAGE as u64)
    }
    /// Offset of slot 0.
    pub fn data_offset(&self) -> u64 {
        HEADER_BYTES + self.dir_pages() * PAGE as u64
    }
    /// Offset of `slot`.
    pub fn block_offset(&self, slot: u32) -> u64 {
        self.data_offset() + slot as u64 * BLOCK_SIZE as u64
    }
    /// Size of the whole file.
    pub fn file_size(&self) -> u64 {
        self.block_offset(self.blocks)
    }
}

/// A decoded version 1 header slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkHeader {
    /// Block slots.
    pub blocks: u32,
    /// Chunk id.
    pub id: u64,
    /// Commit generation.
    pub generation: u64,
    /// Committed blocks.
    pub committed: u32,
    /// Sealed.
    pub sealed: bool,
    /// WAL checkpoint at this commit.
    pub checkpoint: u64,
}

impl ChunkHeader {
    /// Decodes a version 1 header slot (the caller has checked magic and
    /// version).
    pub fn decode(page: &[u8]) -> std::result::Result<Option<ChunkHeader>, String> {
        if page[0..52].iter().all(|&b| b == 0) {
            return Ok(None);
        }
        if u32_at(page, 48) != crc32fast::hash(&page[0..48]) {
            return Err("chunk header checksum mismatch".into());
        }
        let h = ChunkHeader {
            blocks: u32_at(page, 12),
            id: u64_at(page, 16),
            generation: u64_at(page, 24),
            committed: u32_at(page, 32),
            sealed: u32_at(page, 36) != 0,
            checkpoint: u64_at(page, 40),
        };
        if h.blocks == 0 || h.committed > h.blocks {
            return Err(format!(
                "bad chunk header: {} of {} blocks committed",
                h.committed, h.blocks
            ));
        }
        Ok(Some(h))
    }
}

fn dir_crc(page: &[u8], n: usize) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&page[0..12]);
    h.update(&page[16..16 + ENTRY * n]);
    h.finalize()
}

fn decode_dir_page(page: &[u8], index: u32) -> std::result::Result<Vec<V1Entry>, String> {
    if &page[0..4] != DIR_MAGIC || u32_at(page, 4) != index {
        return Err(format!("directory page {index}: bad magic or index"));
    }
    let n = u32_at(page, 8) as usize;
    if n > ENTRIES_PER_PAGE || u32_at(page, 12) != dir_crc(page, n) {
        return Err(format!("directory page {index}: checksum mismatch"));
    }
    Ok((0..n)
        .map(|i| {
            let b = &page[16 + ENTRY * i..16 + ENTRY * (i + 1)];
            V1Entry {
                tag: u32_at(b, 0),
                count: u32_at(b, 4),
                min_ts: u64_at(b, 8) as i64,
                max_ts: u64_at(b, 16) as i64,
                slot: u32_at(b, 24),
                crc: u32_at(b, 28),
            }
        })
        .collect())
}

/// One version 1 directory entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct V1Entry {
    tag: u32,
    count: u32,
    min_ts: i64,
    max_ts: i64,
    slot: u32,
    crc: u32,
}

/// The write order of a version 1 block: blocks of one tag were committed
/// in (chunk, slot) order, and every version 1 block is older than any
/// version 2 segment (whose orders start at [`super::V2_ORDER`]).
pub fn order(chunk_id: u64, slot: u32) -> u64 {
    (chunk_id << 20) | u64::from(slot & 0xF_FFFF)
}

/// Opens a version 1 chunk whose header slots are `hdr`. With
/// `scan_blocks` (the chunk was the active one), every committed block is
/// read and verified and the directory rebuilt from them; otherwise the
/// directory pages are trusted if their checksums hold and rebuilt from the
/// blocks only when they do not. `None`: both slots zero.
pub async fn open(
    file: DataFile,
    hdr: &[u8],
    scan_blocks: bool,
) -> Result<Option<(ChunkHeader, Vec<DirEntry>, bool, DataFile)>> {
    let path = file.path().to_path_buf();
    let a = ChunkHeader::decode(&hdr[0..PAGE]);
    let b = ChunkHeader::decode(&hdr[PAGE..2 * PAGE]);
    // The header fields sit in one 512-byte sector, which a crash cannot
    // tear: a slot that fails its checksum is damage, never a torn commit.
    let header = match (a, b) {
        (Err(e), _) => return Err(Error::corrupt(&path, 0, e)),
        (_, Err(e)) => return Err(Error::corrupt(&path, PAGE as u64, e)),
        (Ok(None), Ok(None)) => return Ok(None),
        (Ok(Some(x)), Ok(Some(y))) => {
            if x.generation >= y.generation {
                x
            } else {
                y
            }
        }
        (Ok(Some(x)), Ok(None)) | (Ok(None), Ok(Some(x))) => x,
    };
    let layout = Layout {
        blocks: header.blocks,
    };
    let n = header.committed as usize;
    let pages = n.div_ceil(ENTRIES_PER_PAGE);
    let dir_bytes = file.read_vec(HEADER_BYTES, pages * PAGE).await?;
    let mut from_dir = Vec::with_capacity(n);
    let mut dir_err = None;
    for p in 0..pages {
        let page = dir_bytes.get(p * PAGE..(p + 1) * PAGE).unwrap_or(&[]);
        let decoded = if page.len() == PAGE {
            decode_dir_page(page, p as u32)
        } else {
            Err("directory truncated".into())
        };
        match decoded {
            Ok(mut e) => from_dir.append(&mut e),
            Err(e) => {
                dir_err = Some((HEADER_BYTES + (p * PAGE) as u64, e));
                break;
            }
        }
    }
    if dir_err.is_none() && from_dir.len() != n {
        dir_err = Some((
            HEADER_BYTES,
            format!("directory lists {} blocks, header says {n}", from_dir.len()),
        ));
    }
    let mut rebuilt = false;
    let entries = if scan_blocks || dir_err.is_some() {
        let scanned = scan(&file, layout, header.id, n).await?;
        if let Some((off, why)) = &dir_err {
            log::warn!(
                "chunk {}: {why} at offset {off}; directory rebuilt from {} self-describing blocks",
                path.display(),
                scanned.len()
            );
            rebuilt = true;
        } else if scanned != from_dir {
            log::warn!(
                "chunk {}: directory disagrees with its blocks; rebuilt from the blocks",
                path.display()
            );
            rebuilt = true;
        }
        scanned
    } else {
        from_dir
    };
    let entries = entries
        .into_iter()
        .map(|e| DirEntry {
            tag: e.tag,
            count: e.count,
            min_ts: e.min_ts,
            max_ts: e.max_ts,
            order: order(header.id, e.slot),
            slot: e.slot,
            index: 0,
            summary: None,
            rollup: None,
        })
        .collect();
    Ok(Some((header, entries, rebuilt, file)))
}

/// Reads and verifies committed blocks `0..n`, returning their entries.
async fn scan(file: &DataFile, layout: Layout, chunk_id: u64, n: usize) -> Result<Vec<V1Entry>> {
    const STEP: usize = crate::storage::file::MAX_IO / BLOCK_SIZE;
    let mut out = Vec::with_capacity(n);
    let mut slot = 0usize;
    while slot < n {
        let k = STEP.min(n - slot);
        let at = layout.block_offset(slot as u32);
        let data = file.read_at(at, k * BLOCK_SIZE).await?;
        for i in 0..k {
            let off = at + (i * BLOCK_SIZE) as u64;
            let b = data
                .get(i * BLOCK_SIZE..(i + 1) * BLOCK_SIZE)
                .unwrap_or(&[]);
            let blk = block::verify(b).map_err(|why| Error::corrupt(file.path(), off, why))?;
            let seg = match (blk.version, blk.segments.as_slice()) {
                (block::VERSION_1, [seg]) => *seg,
                _ => {
                    return Err(Error::corrupt(
                        file.path(),
                        off,
                        "a version 2 block in a version 1 chunk",
                    ))
                }
            };
            if blk.chunk_id != chunk_id || blk.slot as usize != slot + i {
                return Err(Error::corrupt(
                    file.path(),
                    off,
                    format!(
                        "misplaced block: claims chunk {} slot {}",
                        blk.chunk_id, blk.slot
                    ),
                ));
            }
            out.push(V1Entry {
                tag: seg.tag,
                count: seg.count,
                min_ts: seg.min_ts,
                max_ts: seg.max_ts,
                slot: blk.slot,
                crc: blk.crc,
            });
        }
        slot += k;
    }
    Ok(out)
}
