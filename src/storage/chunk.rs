//! Chunk files: a header, a directory and a fixed number of 16 KiB block
//! slots. Each shard appends blocks to one active chunk; a full chunk is
//! sealed and never written again (safe to copy for backup).
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
//! Commit protocol (one per flush round, never one write per block): blocks
//! are written into free slots (many writes in flight), then the touched
//! directory pages in one write, `fdatasync`, then the next header slot with
//! the new committed count and checkpoint, `fdatasync`.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::storage::block::{self, BLOCK_SIZE};
use crate::storage::error::{Error, Result};
use crate::storage::file::{list_dir, sync_dir, DataFile, PAGE};
use crate::storage::le::{u32_at, u64_at};

const MAGIC: &[u8; 8] = b"XTCHUNK1";
const DIR_MAGIC: &[u8; 4] = b"XDIR";
const VERSION: u32 = 1;
/// Directory entries per 4 KiB page.
pub const ENTRIES_PER_PAGE: usize = 127;
const ENTRY: usize = 32;
const HEADER_BYTES: u64 = 2 * PAGE as u64;

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

/// A decoded header slot.
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
    fn encode(&self, page: &mut [u8]) {
        page[0..8].copy_from_slice(MAGIC);
        page[8..12].copy_from_slice(&VERSION.to_le_bytes());
        page[12..16].copy_from_slice(&self.blocks.to_le_bytes());
        page[16..24].copy_from_slice(&self.id.to_le_bytes());
        page[24..32].copy_from_slice(&self.generation.to_le_bytes());
        page[32..36].copy_from_slice(&self.committed.to_le_bytes());
        page[36..40].copy_from_slice(&(self.sealed as u32).to_le_bytes());
        page[40..48].copy_from_slice(&self.checkpoint.to_le_bytes());
        let crc = crc32fast::hash(&page[0..48]);
        page[48..52].copy_from_slice(&crc.to_le_bytes());
    }

    fn decode(page: &[u8]) -> std::result::Result<Option<ChunkHeader>, String> {
        if page[0..52].iter().all(|&b| b == 0) {
            return Ok(None);
        }
        if &page[0..8] != MAGIC {
            return Err("bad chunk magic".into());
        }
        if u32_at(page, 48) != crc32fast::hash(&page[0..48]) {
            return Err("chunk header checksum mismatch".into());
        }
        let version = u32_at(page, 8);
        if version != VERSION {
            return Err(format!(
                "unsupported chunk version {version} (this build reads {VERSION})"
            ));
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

/// One directory entry: where a block is and what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// Tag.
    pub tag: u32,
    /// Points.
    pub count: u32,
    /// Smallest timestamp.
    pub min_ts: i64,
    /// Largest timestamp.
    pub max_ts: i64,
    /// Slot.
    pub slot: u32,
    /// The block's CRC.
    pub crc: u32,
}

fn encode_dir_page(page: &mut [u8], index: u32, entries: &[DirEntry]) {
    page.fill(0);
    page[0..4].copy_from_slice(DIR_MAGIC);
    page[4..8].copy_from_slice(&index.to_le_bytes());
    page[8..12].copy_from_slice(&(entries.len() as u32).to_le_bytes());
    for (i, e) in entries.iter().enumerate() {
        let b = &mut page[16 + ENTRY * i..16 + ENTRY * (i + 1)];
        b[0..4].copy_from_slice(&e.tag.to_le_bytes());
        b[4..8].copy_from_slice(&e.count.to_le_bytes());
        b[8..16].copy_from_slice(&e.min_ts.to_le_bytes());
        b[16..24].copy_from_slice(&e.max_ts.to_le_bytes());
        b[24..28].copy_from_slice(&e.slot.to_le_bytes());
        b[28..32].copy_from_slice(&e.crc.to_le_bytes());
    }
    let crc = dir_crc(page, entries.len());
    page[12..16].copy_from_slice(&crc.to_le_bytes());
}

fn dir_crc(page: &[u8], n: usize) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&page[0..12]);
    h.update(&page[16..16 + ENTRY * n]);
    h.finalize()
}

fn decode_dir_page(page: &[u8], index: u32) -> std::result::Result<Vec<DirEntry>, String> {
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
            DirEntry {
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

/// File name of chunk `id`.
pub fn chunk_file_name(id: u64) -> String {
    format!("chunk-{id:016x}.xtc")
}

/// Parses a chunk file name.
pub fn parse_chunk_file_name(name: &str) -> Option<u64> {
    u64::from_str_radix(name.strip_prefix("chunk-")?.strip_suffix(".xtc")?, 16).ok()
}

/// The chunk blocks are appended to, owned by the flusher.
pub struct ActiveChunk {
    /// The file.
    pub file: Rc<DataFile>,
    /// Its layout.
    pub layout: Layout,
    /// The last committed header.
    pub header: ChunkHeader,
    /// Committed entries, in slot order.
    pub entries: Vec<DirEntry>,
}

impl ActiveChunk {
    /// Creates chunk `id` in `dir`: preallocated, first header durable, name durable.
    pub async fn create(dir: &Path, id: u64, blocks: u32, checkpoint: u64) -> Result<ActiveChunk> {
        let layout = Layout { blocks };
        let path = dir.join(chunk_file_name(id));
        let file = DataFile::open(&path).await?;
        file.preallocate(layout.file_size()).await?;
        let header = ChunkHeader {
            blocks,
            id,
            generation: 0,
            committed: 0,
            sealed: false,
            checkpoint,
        };
        let mut page = file.buffer(HEADER_BYTES as usize);
        header.encode(&mut page.as_bytes_mut()[..PAGE]);
        file.write_at(page, 0).await?;
        file.sync().await?;
        sync_dir(dir).await?;
        Ok(ActiveChunk {
            file: Rc::new(file),
            layout,
            header,
            entries: Vec::new(),
        })
    }

    /// Slots not yet used.
    pub fn free_slots(&self) -> u32 {
        self.layout.blocks - self.header.committed
    }

    /// Makes `new` (blocks already written to the next slots) durable and
    /// listed, records `checkpoint`, and seals the chunk if it is full.
    pub async fn commit(&mut self, new: &[DirEntry], checkpoint: u64) -> Result<()> {
        let old = self.entries.len();
        self.entries.extend_from_slice(new);
        let total = self.entries.len();
        if total > old {
            let first_page = old / ENTRIES_PER_PAGE;
            let last_page = (total - 1) / ENTRIES_PER_PAGE;
            let pages = last_page - first_page + 1;
            let mut buf = self.file.buffer(pages * PAGE);
            for p in first_page..=last_page {
                let from = p * ENTRIES_PER_PAGE;
                let to = (from + ENTRIES_PER_PAGE).min(total);
                let at = (p - first_page) * PAGE;
                encode_dir_page(
                    &mut buf.as_bytes_mut()[at..at + PAGE],
                    p as u32,
                    &self.entries[from..to],
                );
            }
            self.file
                .write_at(buf, HEADER_BYTES + (first_page * PAGE) as u64)
                .await?;
        }
        self.file.sync().await?;
        let mut h = self.header;
        h.generation += 1;
        h.committed = total as u32;
        h.sealed = h.committed == h.blocks;
        h.checkpoint = checkpoint;
        let mut page = self.file.buffer(PAGE);
        h.encode(page.as_bytes_mut());
        self.file
            .write_at(page, (h.generation % 2) * PAGE as u64)
            .await?;
        self.file.sync().await?;
        self.header = h;
        Ok(())
    }
}

/// A chunk found at open.
pub struct OpenedChunk {
    /// The file.
    pub file: Rc<DataFile>,
    /// Current header.
    pub header: ChunkHeader,
    /// Committed entries in slot order.
    pub entries: Vec<DirEntry>,
    /// True if the directory had to be rebuilt from the blocks.
    pub rebuilt: bool,
}

/// Opens a chunk file. `None` for a file whose creation never completed
/// (both header slots zero). With `scan_blocks`, every committed block is
/// read and verified and the directory rebuilt from them (the active chunk);
/// otherwise the directory pages are trusted if their checksums hold and the
/// blocks are rebuilt only when they do not.
pub async fn open_chunk(path: &Path, scan_blocks: bool) -> Result<Option<OpenedChunk>> {
    let file = DataFile::open(path).await?;
    let hdr = file.read_at(0, HEADER_BYTES as usize).await?;
    if hdr.len() < HEADER_BYTES as usize {
        if hdr.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        return Err(Error::corrupt(path, 0, "chunk header truncated"));
    }
    let a = ChunkHeader::decode(&hdr[0..PAGE]);
    let b = ChunkHeader::decode(&hdr[PAGE..2 * PAGE]);
    // The header fields sit in one 512-byte sector, which a crash cannot
    // tear: a slot that fails its checksum is damage, never a torn commit.
    // (A lost commit leaves the older, valid generation in place.)
    let header = match (a, b) {
        (Err(e), _) => return Err(Error::corrupt(path, 0, e)),
        (_, Err(e)) => return Err(Error::corrupt(path, PAGE as u64, e)),
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
    Ok(Some(OpenedChunk {
        file: Rc::new(file),
        header,
        entries,
        rebuilt,
    }))
}

/// Reads and verifies committed blocks `0..n`, returning their entries.
async fn scan(file: &DataFile, layout: Layout, chunk_id: u64, n: usize) -> Result<Vec<DirEntry>> {
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
            let (h, crc) = block::verify(b).map_err(|why| Error::corrupt(file.path(), off, why))?;
            if h.chunk_id != chunk_id || h.slot as usize != slot + i {
                return Err(Error::corrupt(
                    file.path(),
                    off,
                    format!(
                        "misplaced block: claims chunk {} slot {}",
                        h.chunk_id, h.slot
                    ),
                ));
            }
            out.push(DirEntry {
                tag: h.tag,
                count: h.count,
                min_ts: h.min_ts,
                max_ts: h.max_ts,
                slot: h.slot,
                crc,
            });
        }
        slot += k;
    }
    Ok(out)
}

/// Lists chunk files in `dir`, sorted by id.
pub async fn list_chunks(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut v: Vec<(u64, PathBuf)> = list_dir(dir)
        .await?
        .into_iter()
        .filter_map(|(name, path)| parse_chunk_file_name(&name).map(|id| (id, path)))
        .collect();
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_fits_64_mib() {
        let l = Layout { blocks: 4064 };
        assert!(l.file_size() <= 64 << 20);
        assert_eq!(l.data_offset() % PAGE as u64, 0);
    }

    #[test]
    fn header_and_directory_round_trip() {
        let h = ChunkHeader {
            blocks: 10,
            id: 3,
            generation: 4,
            committed: 2,
            sealed: false,
            checkpoint: 99,
        };
        let mut page = vec![0u8; PAGE];
        h.encode(&mut page);
        assert_eq!(ChunkHeader::decode(&page), Ok(Some(h)));
        page[41] ^= 4;
        assert!(ChunkHeader::decode(&page).is_err());

        let e: Vec<DirEntry> = (0..127)
            .map(|i| DirEntry {
                tag: i,
                count: 5,
                min_ts: i as i64,
                max_ts: i as i64 + 9,
                slot: i,
                crc: 7 * i,
            })
            .collect();
        encode_dir_page(&mut page, 2, &e);
        assert_eq!(decode_dir_page(&page, 2), Ok(e));
        assert!(decode_dir_page(&page, 3).is_err());
        page[100] ^= 1;
        assert!(decode_dir_page(&page, 2).is_err());
    }
}
