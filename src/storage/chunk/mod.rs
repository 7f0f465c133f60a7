//! Chunk files: two header slots, then 16 KiB block slots, then (once
//! sealed) a directory of every segment in the chunk. Two kinds:
//! - **flush** chunks (level 0): each shard appends the blocks of its flush
//!   rounds to one active flush chunk; a full one is sealed;
//! - **compacted** chunks: written whole by one compaction job for one time
//!   partition, with per-segment summaries, then sealed.
//!
//! A sealed chunk is never written again (safe to hard-link for backup).
//! Chunks of format version 1 are read by [`v1`].
//!
//! File `chunks/chunk-NNNNNNNNNNNNNNNN.xtc` (id in hex), little endian:
//!
//! | offset | size | what |
//! |---|---|---|
//! | 0 | 4096 | header slot A |
//! | 4096 | 4096 | header slot B |
//! | 8192 | 16384 × n | block slots ([`crate::storage::block`]) |
//! | 8192 + 16384 × n | whole pages | rollups (version 3 compacted chunks; each located by its directory entry) |
//! | directory offset | directory length | directory (sealed chunks) |
//!
//! Header slot (commits alternate between A and B; the valid slot with the
//! higher generation is current, and the fields sit in the first 512-byte
//! sector, which a crash cannot tear):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `XTCHUNK1` |
//! | 8 | 4 | format version (3; 2 is read too) |
//! | 12 | 4 | kind: 0 flush, 1 compacted |
//! | 16 | 8 | chunk id |
//! | 24 | 8 | generation (one per commit) |
//! | 32 | 4 | committed blocks (slots `0..n` are durable) |
//! | 36 | 4 | sealed (1) or not (0) |
//! | 40 | 8 | checkpoint: every WAL record below this sequence is in durable blocks |
//! | 48 | 8 | partition start, µs (compacted; 0 for flush chunks) |
//! | 56 | 8 | partition width, µs (compacted; 0 for flush chunks) |
//! | 64 | 4 | block slots allocated |
//! | 68 | 4 | directory entries |
//! | 72 | 8 | directory offset |
//! | 80 | 4 | directory length in bytes |
//! | 84 | 4 | CRC32 of the directory |
//! | 88 | 4 | superseded chunks listed after the entries |
//! | 92 | 4 | compaction job: outputs in the job (compacted) |
//! | 96 | 8 | compaction job id (compacted) |
//! | 104 | 4 | this output's index in the job (compacted) |
//! | 108 | 4 | reserved (0) |
//! | 112 | 8 | smallest timestamp of the data (sealed) |
//! | 120 | 8 | largest timestamp of the data (sealed) |
//! | 128 | 4 | CRC32 of bytes 0..128 |
//!
//! Directory: one entry per segment, in slot order, then the ids (u64) of
//! the chunks a compacted chunk supersedes, then the ids (u64) of every
//! output of its job (itself included). Entry (40 bytes; compacted chunks
//! add the segment's [`Summary`], 104 bytes, and from version 3 where its
//! rollup is, 16 bytes):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | tag |
//! | 4 | 4 | points |
//! | 8 | 8 | smallest timestamp |
//! | 16 | 8 | largest timestamp |
//! | 24 | 8 | write order |
//! | 32 | 4 | slot |
//! | 36 | 2 | index of the segment in its block |
//! | 38 | 2 | reserved (0) |
//! | 40 | 104 | summary (compacted chunks only) |
//! | 144 | 8 | file offset of the segment's rollup (compacted, version 3) |
//! | 152 | 4 | its length (0: none) |
//! | 156 | 4 | its CRC32 |
//!
//! A version 3 compacted chunk holds its segments' rollups
//! ([`crate::storage::rollup`]) between the last block and the directory,
//! one run per segment in directory order, padded to a page; a damaged
//! rollup is never used (its CRC fails and the segment is decoded).
//!
//! Commit protocol of a flush round (never one write per block): the
//! round's blocks into free slots, many writes in flight, `fdatasync`, then
//! the next header slot with the new committed count and checkpoint,
//! `fdatasync`. Sealing: the directory after the last block, `fdatasync`,
//! the sealed header, `fdatasync`. A compacted chunk is written whole the
//! same way (its rollups, then its directory, one `fdatasync`) and sealed once; a compacted chunk that is not sealed is an
//! unfinished job's output and is deleted at open.

pub mod v1;

use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::aggregate::{Summary, SUMMARY_LEN};
use crate::storage::block::{self, BLOCK_SIZE};
use crate::storage::error::{Error, Result};
use crate::storage::file::{list_dir, page_up, DataFile, PAGE};
use crate::storage::le::{u32_at, u64_at};
use crate::storage::paged::Paged;

/// Chunk header magic (both versions).
pub const MAGIC: &[u8; 8] = b"XTCHUNK1";
/// Format version written now.
pub const VERSION: u32 = 3;
/// The previous version (no rollups), still read.
pub const VERSION_2: u32 = 2;
/// Bytes before block slot 0.
pub const HEADER_BYTES: u64 = 2 * PAGE as u64;
/// Write orders of version 2 segments start here (version 1 blocks order
/// below it, see [`v1::order`]); the rest is the WAL sequence.
pub const V2_ORDER: u64 = 1 << 62;
/// Directory entry without a summary.
pub const ENTRY: usize = 40;
/// Directory entry with a summary.
pub const ENTRY_SUMMARY: usize = ENTRY + SUMMARY_LEN;
/// Directory entry of a version 3 compacted chunk: summary and rollup.
pub const ENTRY_ROLLUP: usize = ENTRY_SUMMARY + 16;
/// Bytes a compacted chunk file grows by at a time.
const GROW: u64 = 16 << 20;

/// Offset of block slot `slot` in a version 2 chunk.
pub fn block_offset(slot: u32) -> u64 {
    HEADER_BYTES + slot as u64 * BLOCK_SIZE as u64
}

/// What a chunk holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Level 0: flush rounds' packed blocks, any partition.
    Flush,
    /// A compaction job's output for one partition, with summaries.
    Compacted,
    /// Format version 1, read-only.
    V1,
}

/// A time partition: `[start, start + width)`, aligned to the epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition {
    /// First µs of the partition.
    pub start: i64,
    /// Width in µs (> 0).
    pub width: i64,
}

impl Partition {
    /// The partition of width `width` holding `ts`.
    pub fn of(ts: i64, width: i64) -> Partition {
        let width = width.max(1);
        Partition {
            start: ts.div_euclid(width).saturating_mul(width),
            width,
        }
    }

    /// The µs after the partition's last.
    pub fn end(&self) -> i64 {
        self.start.saturating_add(self.width)
    }
}

/// A decoded header slot (version 2; version 1 headers are mapped to it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Format version of the file (2 or 3; 1 is mapped to 2).
    pub version: u32,
    /// Kind of chunk.
    pub kind: Kind,
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
    /// Time partition (compacted chunks).
    pub partition: Option<Partition>,
    /// Block slots allocated.
    pub capacity: u32,
    /// Directory entries (sealed).
    pub entries: u32,
    /// Directory offset (sealed).
    pub dir_offset: u64,
    /// Directory length (sealed).
    pub dir_len: u32,
    /// Directory CRC (sealed).
    pub dir_crc: u32,
    /// Superseded chunks listed in the directory.
    pub claims: u32,
    /// Compaction job id (compacted).
    pub job: u64,
    /// Outputs of that job (compacted).
    pub job_outputs: u32,
    /// This output's index in the job (compacted).
    pub job_index: u32,
    /// Smallest timestamp of the data (sealed).
    pub min_ts: i64,
    /// Largest timestamp of the data (sealed).
    pub max_ts: i64,
}

impl Header {
    fn new(kind: Kind, id: u64, capacity: u32, checkpoint: u64) -> Header {
        Header {
            version: VERSION,
            kind,
            id,
            generation: 0,
            committed: 0,
            sealed: false,
            checkpoint,
            partition: None,
            capacity,
            entries: 0,
            dir_offset: 0,
            dir_len: 0,
            dir_crc: 0,
            claims: 0,
            job: 0,
            job_outputs: 0,
            job_index: 0,
            min_ts: 0,
            max_ts: 0,
        }
    }

    fn encode(&self, page: &mut [u8]) {
        page[..132].fill(0);
        page[0..8].copy_from_slice(MAGIC);
        page[8..12].copy_from_slice(&self.version.to_le_bytes());
        let kind: u32 = match self.kind {
            Kind::Compacted => 1,
            _ => 0,
        };
        page[12..16].copy_from_slice(&kind.to_le_bytes());
        page[16..24].copy_from_slice(&self.id.to_le_bytes());
        page[24..32].copy_from_slice(&self.generation.to_le_bytes());
        page[32..36].copy_from_slice(&self.committed.to_le_bytes());
        page[36..40].copy_from_slice(&u32::from(self.sealed).to_le_bytes());
        page[40..48].copy_from_slice(&self.checkpoint.to_le_bytes());
        let (ps, pw) = self.partition.map_or((0, 0), |p| (p.start, p.width));
        page[48..56].copy_from_slice(&ps.to_le_bytes());
        page[56..64].copy_from_slice(&pw.to_le_bytes());
        page[64..68].copy_from_slice(&self.capacity.to_le_bytes());
        page[68..72].copy_from_slice(&self.entries.to_le_bytes());
        page[72..80].copy_from_slice(&self.dir_offset.to_le_bytes());
        page[80..84].copy_from_slice(&self.dir_len.to_le_bytes());
        page[84..88].copy_from_slice(&self.dir_crc.to_le_bytes());
        page[88..92].copy_from_slice(&self.claims.to_le_bytes());
        page[92..96].copy_from_slice(&self.job_outputs.to_le_bytes());
        page[96..104].copy_from_slice(&self.job.to_le_bytes());
        page[104..108].copy_from_slice(&self.job_index.to_le_bytes());
        page[112..120].copy_from_slice(&self.min_ts.to_le_bytes());
        page[120..128].copy_from_slice(&self.max_ts.to_le_bytes());
        let crc = crc32fast::hash(&page[0..128]);
        page[128..132].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes a version 2 slot (magic and version already checked).
    pub(crate) fn decode(page: &[u8]) -> std::result::Result<Option<Header>, String> {
        if page[0..132].iter().all(|&b| b == 0) {
            return Ok(None);
        }
        if u32_at(page, 128) != crc32fast::hash(&page[0..128]) {
            return Err("chunk header checksum mismatch".into());
        }
        let kind = match u32_at(page, 12) {
            0 => Kind::Flush,
            1 => Kind::Compacted,
            k => return Err(format!("unknown chunk kind {k}")),
        };
        let pw = u64_at(page, 56) as i64;
        let h = Header {
            version: u32_at(page, 8),
            kind,
            id: u64_at(page, 16),
            generation: u64_at(page, 24),
            committed: u32_at(page, 32),
            sealed: u32_at(page, 36) != 0,
            checkpoint: u64_at(page, 40),
            partition: (pw > 0).then(|| Partition {
                start: u64_at(page, 48) as i64,
                width: pw,
            }),
            capacity: u32_at(page, 64),
            entries: u32_at(page, 68),
            dir_offset: u64_at(page, 72),
            dir_len: u32_at(page, 80),
            dir_crc: u32_at(page, 84),
            claims: u32_at(page, 88),
            job_outputs: u32_at(page, 92),
            job: u64_at(page, 96),
            job_index: u32_at(page, 104),
            min_ts: u64_at(page, 112) as i64,
            max_ts: u64_at(page, 120) as i64,
        };
        if h.committed > h.capacity {
            return Err(format!(
                "bad chunk header: {} of {} blocks committed",
                h.committed, h.capacity
            ));
        }
        if h.kind == Kind::Compacted
            && (h.partition.is_none() || (h.sealed && h.job_index >= h.job_outputs))
        {
            return Err("bad compacted chunk header: no partition or job".into());
        }
        Ok(Some(h))
    }

    /// Bytes of one directory entry of this chunk.
    pub fn entry_size(&self) -> usize {
        match self.kind {
            Kind::Compacted if self.version >= VERSION => ENTRY_ROLLUP,
            Kind::Compacted => ENTRY_SUMMARY,
            _ => ENTRY,
        }
    }
}

/// One segment as a directory lists it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DirEntry {
    /// Tag.
    pub tag: u32,
    /// Points.
    pub count: u32,
    /// Smallest timestamp.
    pub min_ts: i64,
    /// Largest timestamp.
    pub max_ts: i64,
    /// Write order.
    pub order: u64,
    /// Slot of its block.
    pub slot: u32,
    /// Index of the segment in its block.
    pub index: u16,
    /// Statistics of its points (compacted chunks).
    pub summary: Option<Summary>,
    /// Where its rollup is (version 3 compacted chunks that have one).
    pub rollup: Option<RollupRef>,
}

/// Where a segment's rollup lies in its chunk file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RollupRef {
    /// File offset (while a compaction job writes it: offset into the
    /// job's rollup bytes, made absolute by [`Chunk::seal`]).
    pub offset: u64,
    /// Bytes.
    pub len: u32,
    /// CRC32 of the bytes.
    pub crc: u32,
}

/// Elements of a page of [`Entries`].
pub const ENTRY_PAGE: usize = 4096;
/// Bytes of a page of [`RollupBytes`] (a multiple of [`PAGE`], so every
/// page but the last is written at an aligned offset).
pub const ROLLUP_PAGE: usize = 1 << 20;
const _: () = assert!(ROLLUP_PAGE.is_multiple_of(PAGE));
/// A chunk's directory entries while it is written (grown a page at a
/// time: see [`crate::storage::paged`]).
pub type Entries = Paged<DirEntry, ENTRY_PAGE>;
/// A compacted chunk's rollups while it is written.
pub type RollupBytes = Paged<u8, ROLLUP_PAGE>;

/// Encodes a directory: `entries` (with summaries when `summaries`), then
/// `claims`, then `siblings`.
#[cfg(test)]
fn encode_dir(entries: &[DirEntry], claims: &[u64], siblings: &[u64], size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * size + claims.len() * 8);
    for e in entries {
        encode_entry(&mut out, e, size);
    }
    for c in claims.iter().chain(siblings) {
        out.extend_from_slice(&c.to_le_bytes());
    }
    out
}

/// The directory layout (entries, claims, siblings), a
/// [`crate::storage::slice::SLICE`] at a time
/// (a compacted chunk's directory of 100,000 tags' entries is tens of MB),
/// padded with zeros to whole pages. Returns the padded bytes, the
/// directory's own length and its CRC, and the longest stretch it ran
/// without yielding.
async fn encode_dir_sliced(
    entries: &Entries,
    claims: &[u64],
    siblings: &[u64],
    size: usize,
) -> (Vec<u8>, usize, u32, std::time::Duration) {
    let dir_len = entries.len() * size + (claims.len() + siblings.len()) * 8;
    let len = page_up(dir_len).max(PAGE);
    let mut out = Vec::with_capacity(len);
    let mut crc = crc32fast::Hasher::new();
    let mut slice = crate::storage::slice::Slice::new();
    for piece in entries.pages().flat_map(|p| p.chunks(1024)) {
        let at = out.len();
        for e in piece {
            encode_entry(&mut out, e, size);
        }
        crc.update(&out[at..]);
        slice.tick().await;
    }
    let at = out.len();
    for c in claims.iter().chain(siblings) {
        out.extend_from_slice(&c.to_le_bytes());
    }
    crc.update(&out[at..]);
    debug_assert_eq!(out.len(), dir_len);
    out.resize(len, 0);
    (out, dir_len, crc.finalize(), slice.longest())
}

/// One directory entry in the directory layout (`size`: [`ENTRY`],
/// [`ENTRY_SUMMARY`] or [`ENTRY_ROLLUP`]).
fn encode_entry(out: &mut Vec<u8>, e: &DirEntry, size: usize) {
    out.extend_from_slice(&e.tag.to_le_bytes());
    out.extend_from_slice(&e.count.to_le_bytes());
    out.extend_from_slice(&e.min_ts.to_le_bytes());
    out.extend_from_slice(&e.max_ts.to_le_bytes());
    out.extend_from_slice(&e.order.to_le_bytes());
    out.extend_from_slice(&e.slot.to_le_bytes());
    out.extend_from_slice(&e.index.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    if size >= ENTRY_SUMMARY {
        out.extend_from_slice(&e.summary.unwrap_or(Summary::EMPTY).encode());
    }
    if size >= ENTRY_ROLLUP {
        let r = e.rollup.unwrap_or(RollupRef {
            offset: 0,
            len: 0,
            crc: 0,
        });
        out.extend_from_slice(&r.offset.to_le_bytes());
        out.extend_from_slice(&r.len.to_le_bytes());
        out.extend_from_slice(&r.crc.to_le_bytes());
    }
}

type Dir = (Vec<DirEntry>, Vec<u64>, Vec<u64>);

fn decode_dir(h: &Header, b: &[u8]) -> std::result::Result<Dir, String> {
    let size = h.entry_size();
    let n = h.entries as usize;
    let ids = h.claims as usize + h.job_outputs as usize;
    let need = n.checked_mul(size).and_then(|x| x.checked_add(ids * 8));
    if need != Some(h.dir_len as usize) || b.len() < h.dir_len as usize {
        return Err(format!(
            "directory of {} bytes cannot hold {n} entries and {} claims",
            h.dir_len, h.claims
        ));
    }
    let b = &b[..h.dir_len as usize];
    if crc32fast::hash(b) != h.dir_crc {
        return Err("directory checksum mismatch".into());
    }
    let mut entries = Vec::with_capacity(n);
    for i in 0..n {
        let e = &b[i * size..(i + 1) * size];
        let summary = if size >= ENTRY_SUMMARY {
            let b = &e[ENTRY..ENTRY_SUMMARY];
            Some(Summary::decode(b).map_err(|x| format!("entry {i}: summary: {x}"))?)
        } else {
            None
        };
        let rollup = if size >= ENTRY_ROLLUP {
            let r = RollupRef {
                offset: u64_at(e, ENTRY_SUMMARY),
                len: u32_at(e, ENTRY_SUMMARY + 8),
                crc: u32_at(e, ENTRY_SUMMARY + 12),
            };
            let lo = block_offset(h.committed);
            let inside =
                r.offset >= lo && r.offset.checked_add(u64::from(r.len)) <= Some(h.dir_offset);
            if r.len > 0 && !inside {
                return Err(format!(
                    "entry {i}: rollup at {} (+{}) outside {lo}..{}",
                    r.offset, r.len, h.dir_offset
                ));
            }
            (r.len > 0).then_some(r)
        } else {
            None
        };
        let d = DirEntry {
            tag: u32_at(e, 0),
            count: u32_at(e, 4),
            min_ts: u64_at(e, 8) as i64,
            max_ts: u64_at(e, 16) as i64,
            order: u64_at(e, 24),
            slot: u32_at(e, 32),
            index: u16::from_le_bytes([e[36], e[37]]),
            summary,
            rollup,
        };
        if d.slot >= h.committed || d.count == 0 || d.min_ts > d.max_ts {
            return Err(format!(
                "entry {i}: slot {} / count {} out of range",
                d.slot, d.count
            ));
        }
        entries.push(d);
    }
    let claims = (0..h.claims as usize)
        .map(|i| u64_at(b, n * size + 8 * i))
        .collect();
    let siblings = (h.claims as usize..ids)
        .map(|i| u64_at(b, n * size + 8 * i))
        .collect();
    Ok((entries, claims, siblings))
}

/// File name of chunk `id`.
pub fn chunk_file_name(id: u64) -> String {
    format!("chunk-{id:016x}.xtc")
}

/// Parses a chunk file name.
pub fn parse_chunk_file_name(name: &str) -> Option<u64> {
    u64::from_str_radix(name.strip_prefix("chunk-")?.strip_suffix(".xtc")?, 16).ok()
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

/// A version 2 chunk being written: the active flush chunk, or a
/// compaction job's output.
pub struct Chunk {
    /// The file.
    pub file: Rc<DataFile>,
    /// The last header written (durable once its commit returned).
    pub header: Header,
    /// Bytes allocated on disk.
    allocated: u64,
    /// The longest stretch, in µs, the last [`Chunk::seal`] spent encoding
    /// its directory without yielding.
    pub dir_micros: u64,
}

impl Chunk {
    /// Creates flush chunk `id` with `capacity` block slots in `dir`:
    /// preallocated, first header durable (the caller makes the name
    /// durable).
    pub async fn create_flush(
        dir: &Path,
        id: u64,
        capacity: u32,
        checkpoint: u64,
    ) -> Result<Chunk> {
        let header = Header::new(Kind::Flush, id, capacity, checkpoint);
        Chunk::create(dir, header, block_offset(capacity)).await
    }

    /// Creates compacted chunk `id` for `partition`, output `index` of the
    /// `outputs` of job `job`. Its header is written unsealed, so a job cut
    /// short leaves a file that open recognises and deletes.
    pub async fn create_compacted(
        dir: &Path,
        id: u64,
        partition: Partition,
        job: u64,
        index: u32,
        outputs: u32,
    ) -> Result<Chunk> {
        let mut header = Header::new(Kind::Compacted, id, 0, 0);
        header.partition = Some(partition);
        header.job = job;
        header.job_index = index;
        header.job_outputs = outputs;
        Chunk::create(dir, header, GROW).await
    }

    async fn create(dir: &Path, header: Header, size: u64) -> Result<Chunk> {
        let path = dir.join(chunk_file_name(header.id));
        let file = DataFile::open(&path).await?;
        if let Err(e) = file.preallocate(size).await {
            // Nothing is in it yet: remove it rather than leave recovery an
            // empty file without a header.
            drop(file);
            if let Err(r) = crate::storage::file::remove_file(&path).await {
                log::warn!("could not remove a chunk file whose creation failed: {r}");
            }
            return Err(e);
        }
        let mut page = file.buffer(HEADER_BYTES as usize);
        header.encode(&mut page.as_bytes_mut()[..PAGE]);
        file.write_at(page, 0).await?;
        file.sync().await?;
        Ok(Chunk {
            file: Rc::new(file),
            header,
            allocated: size,
            dir_micros: 0,
        })
    }

    /// The writable handle of a chunk found at open (the active flush
    /// chunk, or one to seal).
    pub fn from_opened(c: &Opened) -> Chunk {
        Chunk {
            file: c.file.clone(),
            header: c.header,
            allocated: block_offset(c.header.capacity),
            dir_micros: 0,
        }
    }

    /// Block slots still free (flush chunks).
    pub fn free_slots(&self) -> u32 {
        self.header.capacity.saturating_sub(self.header.committed)
    }

    /// Makes room for blocks up to slot `slots` (compacted chunks grow as
    /// they are written).
    pub async fn reserve(&mut self, slots: u32) -> Result<()> {
        let need = block_offset(slots);
        if need > self.allocated {
            let to = need.div_ceil(GROW) * GROW;
            self.file.preallocate(to).await?;
            self.allocated = to;
        }
        if self.header.kind == Kind::Compacted {
            self.header.capacity = self.header.capacity.max(slots);
        }
        Ok(())
    }

    /// Makes the blocks written to slots `committed..committed + n` durable
    /// and listed, with `checkpoint` (flush chunks): `fdatasync`, the next
    /// header slot, `fdatasync`.
    pub async fn commit(&mut self, n: u32, checkpoint: u64) -> Result<()> {
        self.file.sync().await?;
        let mut h = self.header;
        h.generation += 1;
        h.committed += n;
        h.checkpoint = checkpoint.max(h.checkpoint);
        self.write_header(&h).await?;
        self.header = h;
        Ok(())
    }

    /// Seals the chunk: writes `rollups` (a compacted chunk's; the
    /// entries' [`RollupRef`] offsets are into it, and are made file
    /// offsets here) and the directory of `entries` (and for a compacted
    /// chunk `claims`, the chunks it supersedes, and `siblings`, every
    /// output of its job) after the last block, `fdatasync`, then the
    /// sealed header, `fdatasync`. The blocks must be written (a compacted
    /// chunk's: all `blocks` of them).
    pub async fn seal(
        &mut self,
        blocks: u32,
        entries: &mut Entries,
        rollups: RollupBytes,
        claims: &[u64],
        siblings: &[u64],
        checkpoint: u64,
    ) -> Result<()> {
        let size = self.header.entry_size();
        let at = block_offset(blocks);
        let rollups = if size >= ENTRY_ROLLUP {
            rollups
        } else {
            RollupBytes::default()
        };
        for e in entries.iter_mut() {
            if size < ENTRY_ROLLUP {
                e.rollup = None;
            }
            if let Some(r) = &mut e.rollup {
                r.offset += at;
            }
        }
        let rollup_len = page_up(rollups.len());
        let (padded, dir_len, dir_crc, longest) =
            encode_dir_sliced(entries, claims, siblings, size).await;
        self.dir_micros = longest.as_micros() as u64;
        let len = rollup_len + padded.len();
        if at + len as u64 > self.allocated {
            self.file.preallocate(at + len as u64).await?;
            self.allocated = at + len as u64;
        }
        // Two writes (each copied to DMA buffers a slice at a time), one
        // sync: the rollups are tens of MB for a big job.
        // A page at a time: every page but the last is whole
        // (`ROLLUP_PAGE` bytes, a multiple of the file's pages).
        let mut pos = at;
        for page in rollups.pages() {
            self.file.write_bytes_at(page, pos).await?;
            pos += page.len() as u64;
        }
        self.file
            .write_bytes_at(&padded, at + rollup_len as u64)
            .await?;
        self.file.sync().await?;
        let mut h = self.header;
        h.generation += 1;
        h.committed = blocks;
        h.capacity = h.capacity.max(blocks);
        h.sealed = true;
        h.checkpoint = checkpoint.max(h.checkpoint);
        h.entries = entries.len() as u32;
        h.dir_offset = at + rollup_len as u64;
        h.dir_len = dir_len as u32;
        h.dir_crc = dir_crc;
        h.claims = claims.len() as u32;
        h.job_outputs = siblings.len() as u32;
        h.min_ts = entries.iter().map(|e| e.min_ts).min().unwrap_or(0);
        h.max_ts = entries.iter().map(|e| e.max_ts).max().unwrap_or(0);
        self.write_header(&h).await?;
        self.header = h;
        // Give back what was preallocated past the directory (a flush chunk
        // sealed early, a compacted chunk's last growth step). Only bytes
        // no header points at are cut, so a crash around it loses nothing.
        let end = at + len as u64;
        if self.allocated > end {
            self.file.truncate(end).await?;
            self.allocated = end;
        }
        Ok(())
    }

    /// [`Chunk::seal`] for a flush chunk: its committed blocks, `entries`,
    /// no rollups, claims or siblings.
    pub async fn seal_flush(&mut self, entries: &mut Entries, checkpoint: u64) -> Result<()> {
        let committed = self.header.committed;
        self.seal(
            committed,
            entries,
            RollupBytes::default(),
            &[],
            &[],
            checkpoint,
        )
        .await
    }

    /// Bytes the file holds on disk.
    pub fn allocated(&self) -> u64 {
        self.allocated
    }

    async fn write_header(&self, h: &Header) -> Result<()> {
        let mut page = self.file.buffer(PAGE);
        h.encode(page.as_bytes_mut());
        self.file
            .write_at(page, (h.generation % 2) * PAGE as u64)
            .await?;
        self.file.sync().await
    }
}

/// A chunk found at open.
pub struct Opened {
    /// The file.
    pub file: Rc<DataFile>,
    /// Its current header.
    pub header: Header,
    /// Its segments, in slot order.
    pub entries: Vec<DirEntry>,
    /// Chunks it supersedes (compacted chunks).
    pub claims: Vec<u64>,
    /// Every output of its compaction job (compacted chunks).
    pub siblings: Vec<u64>,
    /// True if the directory had to be rebuilt from the blocks.
    pub rebuilt: bool,
}

/// What open found in a chunk file.
pub enum Found {
    /// A chunk to serve.
    Chunk(Opened),
    /// Creation never completed (both header slots zero): nothing in it.
    Empty,
    /// A compaction output whose job did not finish: its data is also in
    /// the job's inputs.
    Unfinished(Header),
}

/// Opens a chunk file of either version. Unsealed flush chunks (and an
/// unsealed version 1 chunk) have every committed block read, verified and
/// listed; sealed ones are read from their directory, rebuilt from the
/// blocks if it is damaged (a compacted chunk's directory cannot be
/// rebuilt: it holds the summaries and the chunks it supersedes, so damage
/// there fails with file and offset).
pub async fn open_chunk(path: &Path, active_v1: bool) -> Result<Found> {
    let file = DataFile::open(path).await?;
    let hdr = file.read_at(0, HEADER_BYTES as usize).await?;
    if hdr.len() < HEADER_BYTES as usize {
        if hdr.iter().all(|&b| b == 0) {
            return Ok(Found::Empty);
        }
        return Err(Error::corrupt(path, 0, "chunk header truncated"));
    }
    let mut version = None;
    for slot in [0, PAGE] {
        let page = &hdr[slot..slot + PAGE];
        if page[0..8].iter().all(|&b| b == 0) {
            continue;
        }
        if &page[0..8] != MAGIC {
            return Err(Error::corrupt(path, slot as u64, "bad chunk magic"));
        }
        let v = u32_at(page, 8);
        if v != VERSION && v != VERSION_2 && v != v1::VERSION {
            return Err(Error::corrupt(
                path,
                slot as u64,
                format!("unsupported chunk version {v} (this build reads 1 to {VERSION})"),
            ));
        }
        if version.is_some_and(|x| x != v) {
            return Err(Error::corrupt(
                path,
                slot as u64,
                "header slots of two versions",
            ));
        }
        version = Some(v);
    }
    match version {
        None => Ok(Found::Empty),
        Some(v1::VERSION) => {
            let Some((h, entries, rebuilt, file)) = v1::open(file, &hdr, active_v1).await? else {
                return Ok(Found::Empty);
            };
            let mut header = Header::new(Kind::V1, h.id, h.blocks, h.checkpoint);
            header.committed = h.committed;
            header.sealed = h.sealed;
            header.generation = h.generation;
            header.version = VERSION_2;
            header.min_ts = entries.iter().map(|e| e.min_ts).min().unwrap_or(0);
            header.max_ts = entries.iter().map(|e| e.max_ts).max().unwrap_or(0);
            Ok(Found::Chunk(Opened {
                file: Rc::new(file),
                header,
                entries,
                claims: Vec::new(),
                siblings: Vec::new(),
                rebuilt,
            }))
        }
        Some(_) => open_v2(file, &hdr).await,
    }
}

async fn open_v2(file: DataFile, hdr: &[u8]) -> Result<Found> {
    let path = file.path().to_path_buf();
    let a = Header::decode(&hdr[0..PAGE]);
    let b = Header::decode(&hdr[PAGE..2 * PAGE]);
    let header = match (a, b) {
        (Err(e), _) => return Err(Error::corrupt(&path, 0, e)),
        (_, Err(e)) => return Err(Error::corrupt(&path, PAGE as u64, e)),
        (Ok(None), Ok(None)) => return Ok(Found::Empty),
        (Ok(Some(x)), Ok(Some(y))) => {
            if x.generation >= y.generation {
                x
            } else {
                y
            }
        }
        (Ok(Some(x)), Ok(None)) | (Ok(None), Ok(Some(x))) => x,
    };
    if header.kind == Kind::Compacted && !header.sealed {
        return Ok(Found::Unfinished(header));
    }
    let mut rebuilt = false;
    let (entries, claims, siblings) = if header.sealed {
        let dir = file
            .read_vec(header.dir_offset, page_up(header.dir_len as usize))
            .await?;
        match decode_dir(&header, &dir) {
            Ok(x) => x,
            Err(why) if header.kind == Kind::Flush => {
                let scanned = scan(&file, &header).await?;
                log::warn!(
                    "chunk {}: {why} at offset {}; directory rebuilt from {} self-describing segments",
                    path.display(),
                    header.dir_offset,
                    scanned.len()
                );
                rebuilt = true;
                (scanned, Vec::new(), Vec::new())
            }
            Err(why) => return Err(Error::corrupt(&path, header.dir_offset, why)),
        }
    } else {
        (scan(&file, &header).await?, Vec::new(), Vec::new())
    };
    Ok(Found::Chunk(Opened {
        file: Rc::new(file),
        header,
        entries,
        claims,
        siblings,
        rebuilt,
    }))
}

/// Reads and verifies committed blocks `0..committed` of a version 2
/// chunk, returning their segments.
async fn scan(file: &DataFile, h: &Header) -> Result<Vec<DirEntry>> {
    const STEP: usize = crate::storage::file::MAX_IO / BLOCK_SIZE;
    let n = h.committed as usize;
    let mut out = Vec::with_capacity(n);
    let mut slot = 0usize;
    while slot < n {
        let k = STEP.min(n - slot);
        let at = block_offset(slot as u32);
        let data = file.read_vec(at, k * BLOCK_SIZE).await?;
        for i in 0..k {
            let off = at + (i * BLOCK_SIZE) as u64;
            let b = data
                .get(i * BLOCK_SIZE..(i + 1) * BLOCK_SIZE)
                .unwrap_or(&[]);
            let blk = block::verify(b).map_err(|why| Error::corrupt(file.path(), off, why))?;
            if blk.chunk_id != h.id
                || blk.slot as usize != slot + i
                || blk.version != block::VERSION
            {
                return Err(Error::corrupt(
                    file.path(),
                    off,
                    format!(
                        "misplaced block: claims chunk {} slot {} (version {})",
                        blk.chunk_id, blk.slot, blk.version
                    ),
                ));
            }
            for (j, s) in blk.segments.iter().enumerate() {
                out.push(DirEntry {
                    tag: s.tag,
                    count: s.count,
                    min_ts: s.min_ts,
                    max_ts: s.max_ts,
                    order: s.order,
                    slot: blk.slot,
                    index: j as u16,
                    summary: None,
                    rollup: None,
                });
            }
        }
        slot += k;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_every_field_is_checked() {
        let mut h = Header::new(Kind::Compacted, 3, 10, 99);
        h.partition = Some(Partition::of(1_700_000_000_000_000, 86_400_000_000));
        (h.job, h.job_index, h.job_outputs) = (7, 1, 2);
        (h.committed, h.sealed, h.entries, h.claims) = (9, true, 30, 4);
        (h.dir_offset, h.dir_len, h.dir_crc) = (block_offset(9), 30 * ENTRY_SUMMARY as u32 + 32, 5);
        (h.min_ts, h.max_ts) = (-5, 77);
        let mut page = vec![0u8; PAGE];
        h.encode(&mut page);
        assert_eq!(Header::decode(&page), Ok(Some(h)));
        for byte in (0..132).step_by(3) {
            let mut p = page.clone();
            p[byte] ^= 4;
            assert!(
                Header::decode(&p).ne(&Ok(Some(h))),
                "flip at {byte} unnoticed"
            );
        }
    }

    #[test]
    fn directory_round_trips_with_summaries_rollups_and_claims() {
        let mut h = Header::new(Kind::Compacted, 1, 4, 0);
        h.partition = Some(Partition::of(0, 1000));
        h.committed = 4;
        h.dir_offset = block_offset(4) + 2 * PAGE as u64;
        let s = Summary::of(&[
            crate::Point::new(1, 5, 2.0, 192),
            crate::Point::new(1, 6, 3.0, 0),
        ])
        .unwrap();
        let entries: Vec<DirEntry> = (0..5)
            .map(|i| DirEntry {
                tag: i,
                count: 2,
                min_ts: 5,
                max_ts: 6,
                order: V2_ORDER + i as u64,
                slot: i % 4,
                index: i as u16,
                summary: Some(s),
                rollup: (i % 2 == 0).then(|| RollupRef {
                    offset: block_offset(4) + 100 * u64::from(i),
                    len: 50,
                    crc: i * 7,
                }),
            })
            .collect();
        let claims = [3u64, 9, 12];
        let siblings = [20u64, 21];
        let dir_of = |entries: &[DirEntry], h: &mut Header| {
            let dir = encode_dir(entries, &claims, &siblings, ENTRY_ROLLUP);
            (h.entries, h.claims, h.job_outputs, h.dir_len, h.dir_crc) =
                (5, 3, 2, dir.len() as u32, crc32fast::hash(&dir));
            dir
        };
        let dir = dir_of(&entries, &mut h);
        assert_eq!(
            decode_dir(&h, &dir),
            Ok((entries.clone(), claims.to_vec(), siblings.to_vec()))
        );
        let mut bad = dir.clone();
        bad[45] ^= 1;
        assert!(decode_dir(&h, &bad).is_err());
        // A rollup outside the bytes between the blocks and the directory
        // is refused even under a good checksum.
        let mut far = entries.clone();
        far[2].rollup.as_mut().unwrap().offset = h.dir_offset - 10;
        let dir = dir_of(&far, &mut h);
        assert!(decode_dir(&h, &dir).unwrap_err().contains("rollup"));
        // Version 2 entries carry no rollup.
        let mut v2 = Header {
            version: VERSION_2,
            ..h
        };
        let old: Vec<DirEntry> = entries
            .iter()
            .map(|e| DirEntry { rollup: None, ..*e })
            .collect();
        let dir = encode_dir(&old, &claims, &siblings, v2.entry_size());
        (v2.dir_len, v2.dir_crc) = (dir.len() as u32, crc32fast::hash(&dir));
        assert_eq!(v2.entry_size(), ENTRY_SUMMARY);
        assert_eq!(
            decode_dir(&v2, &dir),
            Ok((old, claims.to_vec(), siblings.to_vec()))
        );
    }

    #[test]
    fn partitions_align_to_the_epoch() {
        let p = Partition::of(-1, 10);
        assert_eq!((p.start, p.end()), (-10, 0));
        assert_eq!(Partition::of(10, 10).start, 10);
        assert_eq!(Partition::of(19, 10).start, 10);
    }
}
