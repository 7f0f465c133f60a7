//! The 16 KiB block: the unit of storage on disk. Every block describes
//! itself (tag, time range, count, WAL sequence, its own chunk and slot, CRC),
//! so a chunk's directory can always be rebuilt by scanning its blocks, and a
//! misdirected or damaged block is never served.
//!
//! Layout (little endian):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `XBLK` |
//! | 4 | 2 | format version (1) |
//! | 6 | 2 | encoding (0 = raw columns) |
//! | 8 | 4 | tag id |
//! | 12 | 4 | point count (1..=960) |
//! | 16 | 8 | min timestamp |
//! | 24 | 8 | max timestamp |
//! | 32 | 8 | lowest WAL sequence of the points |
//! | 40 | 8 | chunk id |
//! | 48 | 4 | slot within the chunk |
//! | 52 | 4 | payload length |
//! | 56 | 4 | reserved (0) |
//! | 60 | 4 | CRC32 of bytes 0..60 and the payload |
//! | 64 | 8 × n | timestamps (i64), ascending, unique |
//! | .. | 8 × n | values (f64 bits) |
//! | .. | n | qualities |
//!
//! The rest of the block is zero.

use crate::storage::buffer::Sample;
use crate::storage::le::{u32_at, u64_at};

/// Size of a block on disk.
pub const BLOCK_SIZE: usize = 16 * 1024;
/// Block header size.
pub const HEADER: usize = 64;
/// Points that fit in one raw block.
pub const POINTS_PER_BLOCK: usize = (BLOCK_SIZE - HEADER) / 17;
const MAGIC: &[u8; 4] = b"XBLK";
const VERSION: u16 = 1;

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
}

/// Encodes `samples` (sorted, unique, 1..=POINTS_PER_BLOCK) into `out`
/// (BLOCK_SIZE zeroed bytes). Returns the header and the block's CRC.
pub fn encode(
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
    };
    out[0..4].copy_from_slice(MAGIC);
    out[4..6].copy_from_slice(&VERSION.to_le_bytes());
    out[6..8].copy_from_slice(&0u16.to_le_bytes());
    out[8..12].copy_from_slice(&tag.to_le_bytes());
    out[12..16].copy_from_slice(&h.count.to_le_bytes());
    out[16..24].copy_from_slice(&h.min_ts.to_le_bytes());
    out[24..32].copy_from_slice(&h.max_ts.to_le_bytes());
    out[32..40].copy_from_slice(&first_seq.to_le_bytes());
    out[40..48].copy_from_slice(&chunk_id.to_le_bytes());
    out[48..52].copy_from_slice(&slot.to_le_bytes());
    let plen = n * 17;
    out[52..56].copy_from_slice(&(plen as u32).to_le_bytes());
    let (ts, rest) = out[HEADER..HEADER + plen].split_at_mut(8 * n);
    let (vals, qs) = rest.split_at_mut(8 * n);
    for (i, s) in samples.iter().enumerate() {
        ts[8 * i..8 * i + 8].copy_from_slice(&s.ts.to_le_bytes());
        vals[8 * i..8 * i + 8].copy_from_slice(&s.value.to_bits().to_le_bytes());
        qs[i] = s.quality;
    }
    let crc = checksum(out, plen);
    out[60..64].copy_from_slice(&crc.to_le_bytes());
    (h, crc)
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
    if version != VERSION || b[6] != 0 || b[7] != 0 {
        return Err(format!("unsupported block version {version}"));
    }
    let count = u32_at(b, 12) as usize;
    let plen = u32_at(b, 52) as usize;
    if count == 0 || count > POINTS_PER_BLOCK || plen != count * 17 {
        return Err(format!("bad block count {count} / payload length {plen}"));
    }
    let crc = u32_at(b, 60);
    if crc != checksum(b, plen) {
        return Err("block checksum mismatch".into());
    }
    let h = BlockHeader {
        tag: u32_at(b, 8),
        count: count as u32,
        min_ts: u64_at(b, 16) as i64,
        max_ts: u64_at(b, 24) as i64,
        first_seq: u64_at(b, 32),
        chunk_id: u64_at(b, 40),
        slot: u32_at(b, 48),
    };
    Ok((h, crc))
}

/// The samples of a verified block.
pub fn samples<'a>(b: &'a [u8], h: &BlockHeader) -> impl Iterator<Item = Sample> + 'a {
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

    #[test]
    fn round_trip_and_every_flip_detected() {
        let pts: Vec<Sample> = (0..POINTS_PER_BLOCK as i64)
            .map(|i| Sample {
                ts: i * 10,
                value: (i as f64).sin(),
                quality: 192,
            })
            .collect();
        let mut b = vec![0u8; BLOCK_SIZE];
        let (h, crc) = encode(&mut b, 9, &pts, 77, 3, 12);
        let (h2, crc2) = verify(&b).unwrap();
        assert_eq!((h, crc), (h2, crc2));
        assert_eq!(h.max_ts, (POINTS_PER_BLOCK as i64 - 1) * 10);
        assert_eq!(samples(&b, &h).collect::<Vec<_>>(), pts);
        for byte in (0..HEADER + 17 * POINTS_PER_BLOCK).step_by(7) {
            let mut c = b.clone();
            c[byte] ^= 0x10;
            assert!(verify(&c).is_err(), "flip at byte {byte} went unnoticed");
        }
    }
}
