//! The 16 KiB block: the unit of storage on disk. Every block describes
//! itself (tag, time range, count, WAL sequence, its own chunk and slot, CRC),
//! so a chunk's directory can always be rebuilt by scanning its blocks, and a
//! misdirected or damaged block is never served.
//!
//! Header (little endian, 64 bytes, the same for every encoding):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `XBLK` |
//! | 4 | 2 | format version (1) |
//! | 6 | 2 | encoding: 0 = raw columns, 1 = compressed |
//! | 8 | 4 | tag id |
//! | 12 | 4 | point count (raw: 1..=960; compressed: 1..=[`MAX_POINTS`]) |
//! | 16 | 8 | min timestamp |
//! | 24 | 8 | max timestamp |
//! | 32 | 8 | lowest WAL sequence of the points |
//! | 40 | 8 | chunk id |
//! | 48 | 4 | slot within the chunk |
//! | 52 | 4 | payload length (≤ 16320) |
//! | 56 | 4 | reserved (0) |
//! | 60 | 4 | CRC32 of bytes 0..60 and the payload |
//! | 64 | .. | payload |
//!
//! Payload, encoding 1 (compressed, written since issue 7; see
//! [`crate::storage::codec`]):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 2 | quality runs R (≥ 1) |
//! | 2 | 5 × R | runs: quality (u8), run length (u32); lengths sum to count |
//! | 2 + 5R | rest | bit stream, most significant bit first: first timestamp (64 bits), first value (64 bits), then per point a delta-of-delta timestamp code followed by an XOR value code; the last byte is zero padded |
//!
//! Payload, encoding 0 (raw columns, written before issue 7, still read):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 × n | timestamps (i64), ascending, unique |
//! | .. | 8 × n | values (f64 bits) |
//! | .. | n | qualities |
//!
//! Timestamps are strictly increasing in both encodings. The rest of the
//! block is zero.

use crate::storage::codec::{self, Sample, Segment};
use crate::storage::le::{u32_at, u64_at};
use crate::Point;

/// Size of a block on disk.
pub const BLOCK_SIZE: usize = 16 * 1024;
/// Block header size.
pub const HEADER: usize = 64;
/// Points that fit in one raw (encoding 0) block.
pub const POINTS_PER_BLOCK: usize = (BLOCK_SIZE - HEADER) / 17;
/// Payload bytes a block can hold.
pub const PAYLOAD_CAPACITY: usize = BLOCK_SIZE - HEADER;
/// Most points a compressed block can hold: every point after the first
/// takes at least two bits (an unchanged delta and an unchanged value).
pub const MAX_POINTS: usize = PAYLOAD_CAPACITY * 4;
/// Block magic.
pub const MAGIC: &[u8; 4] = b"XBLK";
/// Block format version.
pub const VERSION: u16 = 1;
/// Encoding 0: raw columns.
pub const RAW: u16 = 0;
/// Encoding 1: compressed ([`crate::storage::codec`]).
pub const COMPRESSED: u16 = 1;

/// The self-description of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockHeader {
    /// Tag id.
    pub tag: u32,
    /// Points in the block.
    pub count: u32,
    /// Smallest timestamp.
    pub min_ts: i64,
    /// Largest timestamp.
    pub max_ts: i64,
    /// Lowest WAL sequence of the points.
    pub first_seq: u64,
    /// Chunk the block was written to.
    pub chunk_id: u64,
    /// Slot within that chunk.
    pub slot: u32,
    /// Payload encoding ([`RAW`] or [`COMPRESSED`]).
    pub encoding: u16,
}

/// Writes a compressed block for `seg` (1..=MAX_POINTS points whose
/// payload fits [`PAYLOAD_CAPACITY`]) into `out` (BLOCK_SIZE zeroed bytes).
/// Returns the header and the block's CRC.
pub fn encode(
    out: &mut [u8],
    tag: u32,
    seg: &Segment,
    first_seq: u64,
    chunk_id: u64,
    slot: u32,
) -> (BlockHeader, u32) {
    let plen = seg.payload_len();
    debug_assert!(seg.count > 0 && plen <= PAYLOAD_CAPACITY && out.len() == BLOCK_SIZE);
    let h = BlockHeader {
        tag,
        count: seg.count,
        min_ts: seg.min_ts,
        max_ts: seg.last.ts,
        first_seq,
        chunk_id,
        slot,
        encoding: COMPRESSED,
    };
    seg.write_payload(&mut out[HEADER..HEADER + plen]);
    finish(out, &h, plen)
}

fn finish(out: &mut [u8], h: &BlockHeader, plen: usize) -> (BlockHeader, u32) {
    out[0..4].copy_from_slice(MAGIC);
    out[4..6].copy_from_slice(&VERSION.to_le_bytes());
    out[6..8].copy_from_slice(&h.encoding.to_le_bytes());
    out[8..12].copy_from_slice(&h.tag.to_le_bytes());
    out[12..16].copy_from_slice(&h.count.to_le_bytes());
    out[16..24].copy_from_slice(&h.min_ts.to_le_bytes());
    out[24..32].copy_from_slice(&h.max_ts.to_le_bytes());
    out[32..40].copy_from_slice(&h.first_seq.to_le_bytes());
    out[40..48].copy_from_slice(&h.chunk_id.to_le_bytes());
    out[48..52].copy_from_slice(&h.slot.to_le_bytes());
    out[52..56].copy_from_slice(&(plen as u32).to_le_bytes());
    let crc = checksum(out, plen);
    out[60..64].copy_from_slice(&crc.to_le_bytes());
    (*h, crc)
}

/// Writes a raw (encoding 0) block: the format before compression, kept so
/// tests can check such blocks still read. `samples` sorted, unique,
/// 1..=POINTS_PER_BLOCK.
pub fn encode_raw(
    out: &mut [u8],
    tag: u32,
    samples: &[Sample],
    first_seq: u64,
    chunk_id: u64,
    slot: u32,
) -> (BlockHeader, u32) {
    let n = samples.len();
    debug_assert!(n > 0 && n <= POINTS_PER_BLOCK && out.len() == BLOCK_SIZE);
    let h = BlockHeader {
        tag,
        count: n as u32,
        min_ts: samples[0].ts,
        max_ts: samples[n - 1].ts,
        first_seq,
        chunk_id,
        slot,
        encoding: RAW,
    };
    let plen = n * 17;
    let (ts, rest) = out[HEADER..HEADER + plen].split_at_mut(8 * n);
    let (vals, qs) = rest.split_at_mut(8 * n);
    for (i, s) in samples.iter().enumerate() {
        ts[8 * i..8 * i + 8].copy_from_slice(&s.ts.to_le_bytes());
        vals[8 * i..8 * i + 8].copy_from_slice(&s.value.to_bits().to_le_bytes());
        qs[i] = s.quality;
    }
    finish(out, &h, plen)
}

fn checksum(b: &[u8], plen: usize) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&b[0..60]);
    h.update(&b[HEADER..HEADER + plen]);
    h.finalize()
}

/// Validates a block read from disk and returns its header and CRC.
/// `Err` names what is wrong; such a block is never served.
pub fn verify(b: &[u8]) -> Result<(BlockHeader, u32), String> {
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
    if version != VERSION || encoding > COMPRESSED {
        return Err(format!(
            "unsupported block version {version} / encoding {encoding}"
        ));
    }
    let count = u32_at(b, 12) as usize;
    let plen = u32_at(b, 52) as usize;
    let sane = match encoding {
        RAW => count <= POINTS_PER_BLOCK && plen == count * 17,
        _ => count <= MAX_POINTS && plen <= PAYLOAD_CAPACITY,
    };
    if count == 0 || !sane {
        return Err(format!("bad block count {count} / payload length {plen}"));
    }
    let crc = u32_at(b, 60);
    if crc != checksum(b, plen) {
        return Err("block checksum mismatch".into());
    }
    if encoding == COMPRESSED {
        codec::split_payload(&b[HEADER..HEADER + plen], count as u32)
            .map_err(|e| format!("bad compressed payload: {e}"))?;
    }
    let h = BlockHeader {
        tag: u32_at(b, 8),
        count: count as u32,
        min_ts: u64_at(b, 16) as i64,
        max_ts: u64_at(b, 24) as i64,
        first_seq: u64_at(b, 32),
        chunk_id: u64_at(b, 40),
        slot: u32_at(b, 48),
        encoding,
    };
    Ok((h, crc))
}

/// Appends the points of a verified block with `start <= ts < end` to
/// `out`, as points of `tag`. `Err` names damage the checksum missed.
pub fn decode_into(
    b: &[u8],
    h: &BlockHeader,
    tag: u32,
    start: i64,
    end: i64,
    out: &mut Vec<Point>,
) -> Result<(), String> {
    if h.min_ts >= end || h.max_ts < start {
        return Ok(());
    }
    if h.encoding == RAW {
        if h.count as usize > POINTS_PER_BLOCK || b.len() < HEADER + 17 * h.count as usize {
            return Err("raw block header does not fit the block".into());
        }
        // Written sorted and inside the header's range; anything else is
        // damage the checksum missed, and none of the block is served.
        let mut prev = None;
        for s in raw_samples(b, h) {
            if prev.is_some_and(|p| s.ts <= p) || s.ts < h.min_ts || s.ts > h.max_ts {
                return Err(format!(
                    "raw block timestamps out of order or outside [{}, {}]",
                    h.min_ts, h.max_ts
                ));
            }
            prev = Some(s.ts);
        }
        out.extend(
            raw_samples(b, h)
                .filter(|s| s.ts >= start && s.ts < end)
                .map(|s| Point::new(tag, s.ts, s.value, s.quality)),
        );
        return Ok(());
    }
    let plen = u32_at(b, 52) as usize;
    let payload = b
        .get(HEADER..HEADER + plen)
        .ok_or_else(|| "payload beyond the block".to_string())?;
    let before = out.len();
    codec::decode_payload_into(payload, h.count, tag, start, end, out)
        .map_err(|e| format!("bad compressed payload: {e}"))?;
    // Queries pick blocks by the header's range: a point outside it would be
    // served by some queries and not by others.
    if out[before..]
        .iter()
        .any(|p| p.ts < h.min_ts || p.ts > h.max_ts)
    {
        out.truncate(before);
        return Err(format!(
            "compressed block holds a timestamp outside [{}, {}]",
            h.min_ts, h.max_ts
        ));
    }
    Ok(())
}

/// The samples of a verified raw block.
fn raw_samples<'a>(b: &'a [u8], h: &BlockHeader) -> impl Iterator<Item = Sample> + 'a {
    let n = h.count as usize;
    let ts = &b[HEADER..HEADER + 8 * n];
    let vals = &b[HEADER + 8 * n..HEADER + 16 * n];
    let qs = &b[HEADER + 16 * n..HEADER + 17 * n];
    (0..n).map(move |i| Sample {
        ts: u64_at(ts, 8 * i) as i64,
        value: f64::from_bits(u64_at(vals, 8 * i)),
        quality: qs[i],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::codec::Encoder;

    fn decode_all(b: &[u8], h: &BlockHeader) -> Vec<Sample> {
        let mut out = Vec::new();
        decode_into(b, h, h.tag, i64::MIN, i64::MAX, &mut out).unwrap();
        out.iter()
            .map(|p| Sample {
                ts: p.ts,
                value: p.value,
                quality: p.quality,
            })
            .collect()
    }

    fn flips_detected(b: &[u8], plen: usize) {
        for byte in (0..HEADER + plen).step_by(7) {
            let mut c = b.to_vec();
            c[byte] ^= 0x10;
            assert!(verify(&c).is_err(), "flip at byte {byte} went unnoticed");
        }
    }

    #[test]
    fn raw_block_still_reads_and_every_flip_detected() {
        let pts: Vec<Sample> = (0..POINTS_PER_BLOCK as i64)
            .map(|i| Sample {
                ts: i * 10,
                value: (i as f64).sin(),
                quality: 192,
            })
            .collect();
        let mut b = vec![0u8; BLOCK_SIZE];
        let (h, crc) = encode_raw(&mut b, 9, &pts, 77, 3, 12);
        let (h2, crc2) = verify(&b).unwrap();
        assert_eq!((h, crc), (h2, crc2));
        assert_eq!(h.encoding, RAW);
        assert_eq!(h.max_ts, (POINTS_PER_BLOCK as i64 - 1) * 10);
        assert_eq!(decode_all(&b, &h), pts);
        let mut part = Vec::new();
        decode_into(&b, &h, 9, 100, 130, &mut part).unwrap();
        assert_eq!(
            part.iter().map(|p| p.ts).collect::<Vec<_>>(),
            [100, 110, 120]
        );
        flips_detected(&b, 17 * POINTS_PER_BLOCK);
    }

    fn compressed(n: i64) -> (Vec<Sample>, Vec<u8>, BlockHeader) {
        let pts: Vec<Sample> = (0..n)
            .map(|i| Sample {
                ts: 1_700_000_000_000_000 + i * 1_000_000 + (i * 7919) % 300,
                value: ((i as f64) / 50.0).sin().mul_add(10.0, 20.0).round() / 10.0,
                quality: if i % 97 == 0 { 0 } else { 192 },
            })
            .collect();
        let mut e = Encoder::default();
        for s in &pts {
            e.push(s.ts, s.value.to_bits(), s.quality);
        }
        let seg = e.finish();
        let mut b = vec![0u8; BLOCK_SIZE];
        let (h, _) = encode(&mut b, 4, &seg, 5, 6, 7);
        (pts, b, h)
    }

    #[test]
    fn compressed_block_round_trips_beyond_960_points_and_every_flip_detected() {
        let (pts, b, h) = compressed(3000);
        let (h2, _) = verify(&b).unwrap();
        assert_eq!(h, h2);
        assert_eq!((h.encoding, h.count), (COMPRESSED, 3000));
        assert_eq!((h.min_ts, h.max_ts), (pts[0].ts, pts[2999].ts));
        assert_eq!(decode_all(&b, &h), pts);
        let plen = u32_at(&b, 52) as usize;
        assert!(plen <= PAYLOAD_CAPACITY);
        flips_detected(&b, plen);
    }

    /// Re-seals `b`'s CRC after an edit, so only the edit is wrong.
    fn reseal(b: &mut [u8]) {
        let plen = u32_at(b, 52) as usize;
        let crc = checksum(b, plen);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
    }

    /// Found by `scripts/fuzz.sh` (target `block`): blocks whose checksum
    /// is right but whose timestamps are out of order, or outside the
    /// header's range, are refused instead of served.
    #[test]
    fn consistent_checksums_do_not_excuse_bad_timestamps() {
        let pts: Vec<Sample> = (0..10i64)
            .map(|i| Sample {
                ts: 100 + i,
                value: i as f64,
                quality: 192,
            })
            .collect();
        let mut b = vec![0u8; BLOCK_SIZE];
        encode_raw(&mut b, 9, &pts, 1, 1, 0);
        // Swap the first two timestamps.
        let (a, c) = (u64_at(&b, HEADER), u64_at(&b, HEADER + 8));
        b[HEADER..HEADER + 8].copy_from_slice(&c.to_le_bytes());
        b[HEADER + 8..HEADER + 16].copy_from_slice(&a.to_le_bytes());
        reseal(&mut b);
        let (h, _) = verify(&b).unwrap();
        let mut out = Vec::new();
        let e = decode_into(&b, &h, 9, i64::MIN, i64::MAX, &mut out).unwrap_err();
        assert!(e.contains("out of order"), "{e}");
        assert!(out.is_empty());

        let (_, mut b, _) = compressed(100);
        // Narrow the header's range so the payload's points fall outside it.
        let max = u64_at(&b, 24) as i64;
        b[24..32].copy_from_slice(&((max - 1) as u64).to_le_bytes());
        reseal(&mut b);
        let (h, _) = verify(&b).unwrap();
        let e = decode_into(&b, &h, 9, i64::MIN, i64::MAX, &mut out).unwrap_err();
        assert!(e.contains("outside"), "{e}");
        assert!(out.is_empty());
    }

    #[test]
    fn absurd_header_counts_are_rejected_without_panicking() {
        let (_, b, _) = compressed(100);
        for count in [0u32, MAX_POINTS as u32 + 1, u32::MAX, 101, 99] {
            let mut c = b.clone();
            c[12..16].copy_from_slice(&count.to_le_bytes());
            let plen = u32_at(&c, 52) as usize;
            // Re-seal the CRC so only the count is wrong.
            let crc = checksum(&c, plen);
            c[60..64].copy_from_slice(&crc.to_le_bytes());
            assert!(verify(&c).is_err(), "count {count} accepted");
        }
        for plen in [PAYLOAD_CAPACITY as u32 + 1, u32::MAX] {
            let mut c = b.clone();
            c[52..56].copy_from_slice(&plen.to_le_bytes());
            assert!(verify(&c).is_err(), "payload length {plen} accepted");
        }
        let mut c = b.clone();
        c[6] = 2;
        assert!(verify(&c).is_err());
    }
}
