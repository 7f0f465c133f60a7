//! The 16 KiB block: the unit of storage and of I/O on disk. A block holds
//! one or more *segments*, each the compressed points of one tag (see
//! [`crate::storage::codec`]): a flush packs many tags' small segments into
//! shared blocks, and compaction writes a tag with a block's worth of points
//! into blocks of its own. Every block describes itself (its segments'
//! tags, counts, time ranges and write order, its own chunk and slot, a
//! CRC), so a chunk's directory can always be rebuilt by scanning its
//! blocks, and a misdirected or damaged block is never served.
//!
//! ## Version 2 (written now): encoding 2, segments
//!
//! Header (little endian, 64 bytes):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `XBLK` |
//! | 4 | 2 | format version (2) |
//! | 6 | 2 | encoding (2 = segments) |
//! | 8 | 2 | segments `n` (1..=[`MAX_SEGMENTS`]) |
//! | 10 | 2 | reserved (0) |
//! | 12 | 4 | points (sum of the segments' counts) |
//! | 16 | 8 | smallest timestamp of any segment |
//! | 24 | 8 | largest timestamp of any segment |
//! | 32 | 8 | reserved (0) |
//! | 40 | 8 | chunk id |
//! | 48 | 4 | slot within the chunk |
//! | 52 | 4 | bytes used after the header: table + payloads (≤ 16320) |
//! | 56 | 4 | reserved (0) |
//! | 60 | 4 | CRC32 of bytes 0..60 and the used bytes |
//! | 64 | 36 × n | segment table |
//! | 64 + 36n | .. | the payloads, one after the other in table order |
//!
//! Segment table entry (36 bytes):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | tag id |
//! | 4 | 4 | points |
//! | 8 | 8 | smallest timestamp |
//! | 16 | 8 | largest timestamp |
//! | 24 | 8 | write order: the highest WAL sequence of its points (later writes win) |
//! | 32 | 2 | payload length |
//! | 34 | 2 | reserved (0) |
//!
//! A payload is the codec's: quality runs, then one bit stream of
//! timestamps and values ([`crate::storage::codec::Segment::write_payload`]).
//! The rest of the block is zero.
//!
//! ## Version 1 (format 1, still read)
//!
//! One tag per block. Header: magic, version 1, encoding (0 raw columns, 1
//! compressed), tag (8..12), count (12..16), min/max timestamp, lowest WAL
//! sequence (32..40), chunk id, slot, payload length (52..56), CRC (60..64).
//! Encoding 0's payload is `8n` timestamps, `8n` value bits, `n`
//! qualities; encoding 1's is a codec payload. Such a block reads as one
//! segment whose write order is its lowest WAL sequence.
//!
//! Timestamps are strictly increasing within a segment in every version.

use crate::storage::codec::{self, Sample, Segment};
use crate::storage::le::{u32_at, u64_at};
use crate::Point;

/// Size of a block on disk.
pub const BLOCK_SIZE: usize = 16 * 1024;
/// Block header size.
pub const HEADER: usize = 64;
/// Bytes of one segment-table entry.
pub const ENTRY: usize = 36;
/// Bytes after the header.
pub const BODY: usize = BLOCK_SIZE - HEADER;
/// Payload bytes one segment may hold: a whole block but for its table
/// entry. Tag buffers seal their segments at this size.
pub const PAYLOAD_CAPACITY: usize = BODY - ENTRY;
/// Points that fit in one raw (version 1, encoding 0) block.
pub const POINTS_PER_BLOCK: usize = (BLOCK_SIZE - HEADER) / 17;
/// Most points a compressed segment can hold: every point after the first
/// takes at least two bits (an unchanged delta and an unchanged value).
pub const MAX_POINTS: usize = BODY * 4;
/// Most segments in one block (each has an entry and at least a run count,
/// two quality-run bytes' worth and the first point's 16 bytes).
pub const MAX_SEGMENTS: usize = BODY / (ENTRY + 2 + 5 + 16);
/// Block magic.
pub const MAGIC: &[u8; 4] = b"XBLK";
/// Block format version written now.
pub const VERSION: u16 = 2;
/// Version 1 (one tag per block).
pub const VERSION_1: u16 = 1;
/// Version 1 encoding 0: raw columns.
pub const RAW: u16 = 0;
/// Version 1 encoding 1: one compressed segment.
pub const COMPRESSED: u16 = 1;
/// Version 2 encoding: a table of compressed segments.
pub const SEGMENTS: u16 = 2;

/// One segment of a block, as its table describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegEntry {
    /// Tag id.
    pub tag: u32,
    /// Points.
    pub count: u32,
    /// Smallest timestamp.
    pub min_ts: i64,
    /// Largest timestamp.
    pub max_ts: i64,
    /// Write order: the highest WAL sequence of its points (version 1: the
    /// lowest). Among segments of one tag, a higher order holds later writes.
    pub order: u64,
    /// Offset of the payload within the block.
    pub offset: u16,
    /// Payload length.
    pub len: u16,
}

/// A block that passed verification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// Format version (1 or 2).
    pub version: u16,
    /// Encoding ([`RAW`], [`COMPRESSED`] or [`SEGMENTS`]).
    pub encoding: u16,
    /// Chunk the block was written to.
    pub chunk_id: u64,
    /// Slot within that chunk.
    pub slot: u32,
    /// Its segments (one for version 1 blocks).
    pub segments: Vec<SegEntry>,
    /// The block's CRC.
    pub crc: u32,
}

/// A segment to place in a block: its tag, its points and its write order.
#[derive(Clone, Copy)]
pub struct Part<'a> {
    /// Tag id.
    pub tag: u32,
    /// The compressed points.
    pub seg: &'a Segment,
    /// Write order (highest WAL sequence of its points).
    pub order: u64,
}

/// Bytes `seg` takes in a block: its table entry and its payload.
pub fn footprint(seg: &Segment) -> usize {
    ENTRY + seg.payload_len()
}

/// Writes a version 2 block holding `parts` (1..=[`MAX_SEGMENTS`], each
/// with points, whose footprints sum to at most [`BODY`]) into `out`
/// (BLOCK_SIZE zeroed bytes). Returns the segments' entries and the CRC.
pub fn encode(
    out: &mut [u8],
    parts: &[Part<'_>],
    chunk_id: u64,
    slot: u32,
) -> (Vec<SegEntry>, u32) {
    debug_assert!(!parts.is_empty() && parts.len() <= MAX_SEGMENTS && out.len() == BLOCK_SIZE);
    let n = parts.len();
    let mut at = HEADER + ENTRY * n;
    let mut entries = Vec::with_capacity(n);
    let (mut points, mut min, mut max) = (0u32, i64::MAX, i64::MIN);
    for (i, p) in parts.iter().enumerate() {
        let len = p.seg.payload_len();
        debug_assert!(at + len <= BLOCK_SIZE);
        p.seg.write_payload(&mut out[at..at + len]);
        let e = SegEntry {
            tag: p.tag,
            count: p.seg.count,
            min_ts: p.seg.min_ts,
            max_ts: p.seg.last.ts,
            order: p.order,
            offset: at as u16,
            len: len as u16,
        };
        let t = &mut out[HEADER + ENTRY * i..HEADER + ENTRY * (i + 1)];
        t[0..4].copy_from_slice(&e.tag.to_le_bytes());
        t[4..8].copy_from_slice(&e.count.to_le_bytes());
        t[8..16].copy_from_slice(&e.min_ts.to_le_bytes());
        t[16..24].copy_from_slice(&e.max_ts.to_le_bytes());
        t[24..32].copy_from_slice(&e.order.to_le_bytes());
        t[32..34].copy_from_slice(&e.len.to_le_bytes());
        points = points.saturating_add(e.count);
        min = min.min(e.min_ts);
        max = max.max(e.max_ts);
        entries.push(e);
        at += len;
    }
    let used = at - HEADER;
    out[0..4].copy_from_slice(MAGIC);
    out[4..6].copy_from_slice(&VERSION.to_le_bytes());
    out[6..8].copy_from_slice(&SEGMENTS.to_le_bytes());
    out[8..10].copy_from_slice(&(n as u16).to_le_bytes());
    out[12..16].copy_from_slice(&points.to_le_bytes());
    out[16..24].copy_from_slice(&min.to_le_bytes());
    out[24..32].copy_from_slice(&max.to_le_bytes());
    out[40..48].copy_from_slice(&chunk_id.to_le_bytes());
    out[48..52].copy_from_slice(&slot.to_le_bytes());
    out[52..56].copy_from_slice(&(used as u32).to_le_bytes());
    let crc = checksum(out, used);
    out[60..64].copy_from_slice(&crc.to_le_bytes());
    (entries, crc)
}

/// Writes a version 1 raw (encoding 0) block: the format before
/// compression, kept so tests can check such blocks still read. `samples`
/// sorted, unique, 1..=POINTS_PER_BLOCK.
pub fn encode_raw(
    out: &mut [u8],
    tag: u32,
    samples: &[Sample],
    first_seq: u64,
    chunk_id: u64,
    slot: u32,
) -> u32 {
    let n = samples.len();
    debug_assert!(n > 0 && n <= POINTS_PER_BLOCK && out.len() == BLOCK_SIZE);
    let plen = n * 17;
    let (ts, rest) = out[HEADER..HEADER + plen].split_at_mut(8 * n);
    let (vals, qs) = rest.split_at_mut(8 * n);
    for (i, s) in samples.iter().enumerate() {
        ts[8 * i..8 * i + 8].copy_from_slice(&s.ts.to_le_bytes());
        vals[8 * i..8 * i + 8].copy_from_slice(&s.value.to_bits().to_le_bytes());
        qs[i] = s.quality;
    }
    v1_header(
        out,
        RAW,
        tag,
        n as u32,
        samples[0].ts,
        samples[n - 1].ts,
        first_seq,
        chunk_id,
        slot,
        plen,
    )
}

/// Writes a version 1 compressed (encoding 1) block holding `seg`: the
/// format 1, kept so tests can check such blocks still read.
pub fn encode_v1(
    out: &mut [u8],
    tag: u32,
    seg: &Segment,
    first_seq: u64,
    chunk_id: u64,
    slot: u32,
) -> u32 {
    let plen = seg.payload_len();
    debug_assert!(plen <= BODY && out.len() == BLOCK_SIZE);
    seg.write_payload(&mut out[HEADER..HEADER + plen]);
    v1_header(
        out,
        COMPRESSED,
        tag,
        seg.count,
        seg.min_ts,
        seg.last.ts,
        first_seq,
        chunk_id,
        slot,
        plen,
    )
}

#[allow(clippy::too_many_arguments)]
fn v1_header(
    out: &mut [u8],
    encoding: u16,
    tag: u32,
    count: u32,
    min_ts: i64,
    max_ts: i64,
    first_seq: u64,
    chunk_id: u64,
    slot: u32,
    plen: usize,
) -> u32 {
    out[0..4].copy_from_slice(MAGIC);
    out[4..6].copy_from_slice(&VERSION_1.to_le_bytes());
    out[6..8].copy_from_slice(&encoding.to_le_bytes());
    out[8..12].copy_from_slice(&tag.to_le_bytes());
    out[12..16].copy_from_slice(&count.to_le_bytes());
    out[16..24].copy_from_slice(&min_ts.to_le_bytes());
    out[24..32].copy_from_slice(&max_ts.to_le_bytes());
    out[32..40].copy_from_slice(&first_seq.to_le_bytes());
    out[40..48].copy_from_slice(&chunk_id.to_le_bytes());
    out[48..52].copy_from_slice(&slot.to_le_bytes());
    out[52..56].copy_from_slice(&(plen as u32).to_le_bytes());
    let crc = checksum(out, plen);
    out[60..64].copy_from_slice(&crc.to_le_bytes());
    crc
}

fn checksum(b: &[u8], used: usize) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&b[0..60]);
    h.update(&b[HEADER..HEADER + used]);
    h.finalize()
}

/// Validates a block read from disk and returns what it holds. `Err`
/// names what is wrong; such a block is never served. A verified block's
/// segments can still hold damage the CRC missed; [`decode_into`] checks
/// every point it decodes.
pub fn verify(b: &[u8]) -> Result<Block, String> {
    if b.len() < BLOCK_SIZE {
        return Err(format!("block truncated to {} bytes", b.len()));
    }
    if &b[0..4] != MAGIC {
        return Err(if b[0..HEADER].iter().all(|&x| x == 0) {
            "empty block slot".into()
        } else {
            "bad block magic".into()
        });
    }
    let version = u16::from_le_bytes([b[4], b[5]]);
    let encoding = u16::from_le_bytes([b[6], b[7]]);
    let used = u32_at(b, 52) as usize;
    if used > BODY {
        return Err(format!("bad block payload length {used}"));
    }
    match (version, encoding) {
        (VERSION_1, RAW | COMPRESSED) | (VERSION, SEGMENTS) => {}
        _ => {
            return Err(format!(
                "unsupported block version {version} / encoding {encoding}"
            ))
        }
    }
    let crc = u32_at(b, 60);
    if crc != checksum(b, used) {
        return Err("block checksum mismatch".into());
    }
    let chunk_id = u64_at(b, 40);
    let slot = u32_at(b, 48);
    let segments = if version == VERSION_1 {
        vec![verify_v1(b, encoding, used)?]
    } else {
        verify_segments(b, used)?
    };
    Ok(Block {
        version,
        encoding,
        chunk_id,
        slot,
        segments,
        crc,
    })
}

fn verify_v1(b: &[u8], encoding: u16, plen: usize) -> Result<SegEntry, String> {
    let count = u32_at(b, 12) as usize;
    let sane = match encoding {
        RAW => count <= POINTS_PER_BLOCK && plen == count * 17,
        _ => count <= MAX_POINTS,
    };
    if count == 0 || !sane {
        return Err(format!("bad block count {count} / payload length {plen}"));
    }
    if encoding == COMPRESSED {
        codec::split_payload(&b[HEADER..HEADER + plen], count as u32)
            .map_err(|e| format!("bad compressed payload: {e}"))?;
    }
    Ok(SegEntry {
        tag: u32_at(b, 8),
        count: count as u32,
        min_ts: u64_at(b, 16) as i64,
        max_ts: u64_at(b, 24) as i64,
        order: u64_at(b, 32),
        offset: HEADER as u16,
        len: plen as u16,
    })
}

fn verify_segments(b: &[u8], used: usize) -> Result<Vec<SegEntry>, String> {
    let n = u16::from_le_bytes([b[8], b[9]]) as usize;
    if n == 0 || n > MAX_SEGMENTS || ENTRY * n > used {
        return Err(format!("bad segment count {n} for {used} used bytes"));
    }
    let mut at = HEADER + ENTRY * n;
    let end = HEADER + used;
    let mut out = Vec::with_capacity(n);
    let (mut points, mut min, mut max) = (0u64, i64::MAX, i64::MIN);
    for i in 0..n {
        let t = &b[HEADER + ENTRY * i..HEADER + ENTRY * (i + 1)];
        let e = SegEntry {
            tag: u32_at(t, 0),
            count: u32_at(t, 4),
            min_ts: u64_at(t, 8) as i64,
            max_ts: u64_at(t, 16) as i64,
            order: u64_at(t, 24),
            offset: at as u16,
            len: u16::from_le_bytes([t[32], t[33]]),
        };
        let stop = at + e.len as usize;
        if e.count == 0 || e.count as usize > MAX_POINTS || e.min_ts > e.max_ts || stop > end {
            return Err(format!(
                "segment {i}: bad count {} / range {}..{} / length {}",
                e.count, e.min_ts, e.max_ts, e.len
            ));
        }
        codec::split_payload(&b[at..stop], e.count)
            .map_err(|why| format!("segment {i}: bad compressed payload: {why}"))?;
        points += e.count as u64;
        min = min.min(e.min_ts);
        max = max.max(e.max_ts);
        at = stop;
        out.push(e);
    }
    if at != end
        || points != u32_at(b, 12) as u64
        || min != u64_at(b, 16) as i64
        || max != u64_at(b, 24) as i64
    {
        return Err("block header disagrees with its segment table".into());
    }
    Ok(out)
}

/// Appends the points of segment `e` of a verified block with
/// `start <= ts < end` to `out`, as points of `e.tag`. `Err` names damage
/// the checksum missed (timestamps out of order, or outside the segment's
/// declared range); nothing of such a segment is appended.
pub fn decode_into(
    b: &[u8],
    block: &Block,
    e: &SegEntry,
    start: i64,
    end: i64,
    out: &mut Vec<Point>,
) -> Result<(), String> {
    if e.min_ts >= end || e.max_ts < start {
        return Ok(());
    }
    let payload = payload(b, e)?;
    if block.encoding == RAW {
        return decode_raw(payload, e, start, end, out);
    }
    let before = out.len();
    codec::decode_payload_into(payload, e.count, e.tag, start, end, out)
        .map_err(|why| format!("bad compressed payload: {why}"))?;
    // Queries pick segments by their declared range: a point outside it
    // would be served by some queries and not by others.
    if out[before..]
        .iter()
        .any(|p| p.ts < e.min_ts || p.ts > e.max_ts)
    {
        out.truncate(before);
        return Err(format!(
            "compressed segment holds a timestamp outside [{}, {}]",
            e.min_ts, e.max_ts
        ));
    }
    Ok(())
}

/// Segment `e`'s payload in block `b` (a codec payload unless the block
/// is [`RAW`]).
pub fn payload<'a>(b: &'a [u8], e: &SegEntry) -> Result<&'a [u8], String> {
    let (at, len) = (e.offset as usize, e.len as usize);
    b.get(at..at.saturating_add(len))
        .ok_or_else(|| "segment beyond the block".to_string())
}

/// Appends every point of segment `e` to `out`, in order (compaction's
/// input). Same checks as [`decode_into`].
pub fn decode_all(
    b: &[u8],
    block: &Block,
    e: &SegEntry,
    out: &mut Vec<Point>,
) -> Result<(), String> {
    decode_into(b, block, e, i64::MIN, i64::MAX, out)
}

fn decode_raw(
    p: &[u8],
    e: &SegEntry,
    start: i64,
    end: i64,
    out: &mut Vec<Point>,
) -> Result<(), String> {
    let n = e.count as usize;
    if n > POINTS_PER_BLOCK || p.len() < 17 * n {
        return Err("raw block header does not fit the block".into());
    }
    let sample = |i: usize| Sample {
        ts: u64_at(p, 8 * i) as i64,
        value: f64::from_bits(u64_at(p, 8 * n + 8 * i)),
        quality: p[16 * n + i],
    };
    // Written sorted and inside the header's range; anything else is
    // damage the checksum missed, and none of the block is served.
    let mut prev = None;
    for i in 0..n {
        let s = sample(i);
        if prev.is_some_and(|q| s.ts <= q) || s.ts < e.min_ts || s.ts > e.max_ts {
            return Err(format!(
                "raw block timestamps out of order or outside [{}, {}]",
                e.min_ts, e.max_ts
            ));
        }
        prev = Some(s.ts);
    }
    out.extend(
        (0..n)
            .map(sample)
            .filter(|s| s.ts >= start && s.ts < end)
            .map(|s| Point::new(e.tag, s.ts, s.value, s.quality)),
    );
    Ok(())
}

#[cfg(test)]
mod tests;
