//! WAL byte layouts: the segment header and the record framing. Pure
//! functions, no I/O.
//!
//! A segment file (`wal/seg-NNNNNN.wal`) is preallocated to a fixed size and
//! reused ("recycled") once the checkpoint has passed it. Its identity lives
//! in its header, not its name, so recycling is one header rewrite.
//!
//! Segment header, page 0 (4096 bytes, little endian, rest zero):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `XTWALSG1` |
//! | 8 | 4 | format version (1) |
//! | 12 | 4 | reserved (0) |
//! | 16 | 8 | segment id (increases by one per rotation) |
//! | 24 | 8 | sequence number of the first record in this segment |
//! | 32 | 4 | CRC32 of bytes 0..32 |
//!
//! Records start at offset 4096 and follow each other with no padding:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | payload length in bytes (`count * 21`; never 0) |
//! | 4 | 4 | CRC32 of bytes 8..24 and the payload |
//! | 8 | 8 | record sequence number (consecutive across segments) |
//! | 16 | 4 | point count |
//! | 20 | 4 | low 32 bits of the segment id |
//! | 24 | 21 × count | points: tag u32, timestamp i64, value f64 bits, quality u8 |
//!
//! Replay accepts a record only if its length fits, its CRC matches, its
//! sequence is the next expected one and its segment id is the segment's
//! own; a zeroed header ends the log. Records left from a recycled segment's
//! previous life fail the sequence and segment-id checks, so they are never
//! replayed.

use crate::storage::le::{u32_at, u64_at};
use crate::Point;

/// Segment header magic.
pub const SEGMENT_MAGIC: &[u8; 8] = b"XTWALSG1";
/// Format version written in segment headers.
pub const VERSION: u32 = 1;
/// Bytes before the first record of a segment.
pub const SEGMENT_HEADER: usize = 4096;
/// Record header size.
pub const RECORD_HEADER: usize = 24;
/// Bytes per encoded point.
pub const POINT_BYTES: usize = 21;
/// Most points in one record (larger batches are split into several records).
pub const MAX_RECORD_POINTS: usize = 65_536;

/// A decoded segment header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Segment id.
    pub id: u64,
    /// Sequence number of the segment's first record.
    pub first_seq: u64,
}

impl SegmentHeader {
    /// Encodes into the first 36 bytes of `page`.
    pub fn encode(&self, page: &mut [u8]) {
        page[0..8].copy_from_slice(SEGMENT_MAGIC);
        page[8..12].copy_from_slice(&VERSION.to_le_bytes());
        page[12..16].fill(0);
        page[16..24].copy_from_slice(&self.id.to_le_bytes());
        page[24..32].copy_from_slice(&self.first_seq.to_le_bytes());
        let crc = crc32fast::hash(&page[0..32]);
        page[32..36].copy_from_slice(&crc.to_le_bytes());
    }

    /// Decodes a header page. `Ok(None)` for an all-zero (never written)
    /// header; `Err(reason)` for a damaged one.
    pub fn decode(page: &[u8]) -> Result<Option<SegmentHeader>, String> {
        // A file cut short or never written (created, then the power failed
        // before it was preallocated) reads as zeros: never initialised.
        let head = &page[..page.len().min(36)];
        if head.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        if page.len() < 36 {
            return Err(format!("segment header truncated to {} bytes", page.len()));
        }
        if &page[0..8] != SEGMENT_MAGIC {
            return Err("bad segment magic".into());
        }
        let crc = u32::from_le_bytes(page[32..36].try_into().unwrap_or_default());
        if crc != crc32fast::hash(&page[0..32]) {
            return Err("segment header checksum mismatch".into());
        }
        let version = u32_at(page, 8);
        if version != VERSION {
            return Err(format!(
                "unsupported WAL version {version} (this build reads {VERSION})"
            ));
        }
        Ok(Some(SegmentHeader {
            id: u64_at(page, 16),
            first_seq: u64_at(page, 24),
        }))
    }
}

/// Encoded size of a record of `n` points.
pub fn record_len(n: usize) -> usize {
    RECORD_HEADER + n * POINT_BYTES
}

/// Appends one record holding `points` to `out`, without its segment id and
/// CRC: [`seal_record`] sets those once the writer knows which segment the
/// record lands in.
pub fn encode_record(out: &mut Vec<u8>, seq: u64, points: &[Point]) {
    debug_assert!(!points.is_empty() && points.len() <= MAX_RECORD_POINTS);
    let start = out.len();
    let payload = points.len() * POINT_BYTES;
    out.reserve(RECORD_HEADER + payload);
    out.extend_from_slice(&(payload as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&(points.len() as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    for p in points {
        let mut b = [0u8; POINT_BYTES];
        b[0..4].copy_from_slice(&p.tag.to_le_bytes());
        b[4..12].copy_from_slice(&p.ts.to_le_bytes());
        b[12..20].copy_from_slice(&p.value.to_bits().to_le_bytes());
        b[20] = p.quality;
        out.extend_from_slice(&b);
    }
    debug_assert_eq!(out.len() - start, record_len(points.len()));
}

/// Stamps the segment id into the record at the start of `rec` and sets its
/// CRC.
pub fn seal_record(rec: &mut [u8], segment_id: u64) {
    rec[20..24].copy_from_slice(&(segment_id as u32).to_le_bytes());
    let len = RECORD_HEADER + u32_at(rec, 0) as usize;
    let crc = crc32fast::hash(&rec[8..len]);
    rec[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// What sits at a position in a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A valid record: its sequence, point count, payload and total length.
    Record {
        /// Sequence number.
        seq: u64,
        /// Encoded points.
        payload: &'a [u8],
        /// Header + payload length.
        len: usize,
    },
    /// A zeroed header: the clean end of the log.
    End,
    /// Something that is not a valid next record (torn, stale or corrupt).
    Invalid(&'static str),
}

/// Decodes the record at the start of `buf`, expecting sequence `want_seq`
/// in segment `segment_id`.
pub fn decode_record(buf: &[u8], want_seq: u64, segment_id: u64) -> Decoded<'_> {
    if buf.len() < RECORD_HEADER {
        return if buf.iter().all(|&b| b == 0) {
            Decoded::End
        } else {
            Decoded::Invalid("truncated header")
        };
    }
    if buf[0..RECORD_HEADER].iter().all(|&b| b == 0) {
        return Decoded::End;
    }
    let plen = u32_at(buf, 0) as usize;
    let count = u32_at(buf, 16) as usize;
    if plen == 0 || count == 0 || count > MAX_RECORD_POINTS || plen != count * POINT_BYTES {
        return Decoded::Invalid("bad length");
    }
    let len = RECORD_HEADER + plen;
    if buf.len() < len {
        return Decoded::Invalid("record runs past the end of the data");
    }
    if u32_at(buf, 4) != crc32fast::hash(&buf[8..len]) {
        return Decoded::Invalid("checksum mismatch");
    }
    if u32_at(buf, 20) != segment_id as u32 {
        return Decoded::Invalid("record from another segment");
    }
    let seq = u64_at(buf, 8);
    if seq != want_seq {
        return Decoded::Invalid("unexpected sequence number");
    }
    Decoded::Record {
        seq,
        payload: &buf[RECORD_HEADER..len],
        len,
    }
}

/// True if a valid record of segment `segment_id` with a sequence number
/// above `after` starts at `buf[0]` (used to tell corruption in the middle of
/// the log from a torn tail).
pub fn is_later_record(buf: &[u8], after: u64, segment_id: u64) -> bool {
    if buf.len() < RECORD_HEADER || u32_at(buf, 20) != segment_id as u32 {
        return false;
    }
    let seq = u64_at(buf, 8);
    if seq <= after {
        return false;
    }
    matches!(decode_record(buf, seq, segment_id), Decoded::Record { .. })
}

/// Iterates the points of a record payload.
pub fn points(payload: &[u8]) -> impl Iterator<Item = Point> + '_ {
    payload.chunks_exact(POINT_BYTES).map(point)
}

/// Decodes one encoded point (the first [`POINT_BYTES`] of `b`).
#[inline(always)]
pub fn point(b: &[u8]) -> Point {
    Point {
        tag: u32_at(b, 0),
        ts: u64_at(b, 4) as i64,
        value: f64::from_bits(u64_at(b, 12)),
        quality: b[20],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(n: u32) -> Vec<Point> {
        (0..n)
            .map(|i| Point::new(i, i as i64 * 1000, i as f64 * 0.5, 192))
            .collect()
    }

    #[test]
    fn record_round_trip() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 7, &pts(5));
        seal_record(&mut buf, 3);
        assert_eq!(buf.len(), record_len(5));
        match decode_record(&buf, 7, 3) {
            Decoded::Record { seq, payload, len } => {
                assert_eq!((seq, len), (7, buf.len()));
                assert_eq!(points(payload).collect::<Vec<_>>(), pts(5));
            }
            o => panic!("{o:?}"),
        }
        assert_eq!(
            decode_record(&buf, 8, 3),
            Decoded::Invalid("unexpected sequence number")
        );
        assert_eq!(
            decode_record(&buf, 7, 4),
            Decoded::Invalid("record from another segment")
        );
        assert_eq!(decode_record(&[0; 64], 7, 3), Decoded::End);
    }

    #[test]
    fn every_bit_flip_is_detected() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 1, &pts(3));
        seal_record(&mut buf, 1);
        for bit in 0..buf.len() * 8 {
            let mut b = buf.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(
                !matches!(decode_record(&b, 1, 1), Decoded::Record { .. }),
                "flip of bit {bit} went unnoticed"
            );
        }
    }

    #[test]
    fn later_records_are_recognised() {
        let mut buf = Vec::new();
        encode_record(&mut buf, 42, &pts(2));
        seal_record(&mut buf, 9);
        assert!(matches!(
            decode_record(&buf, 42, 9),
            Decoded::Record { seq: 42, .. }
        ));
        assert!(is_later_record(&buf, 41, 9));
        assert!(!is_later_record(&buf, 42, 9));
    }

    #[test]
    fn segment_header_round_trip_and_damage() {
        let mut page = vec![0u8; SEGMENT_HEADER];
        assert_eq!(SegmentHeader::decode(&page), Ok(None));
        assert_eq!(SegmentHeader::decode(&[]), Ok(None));
        assert!(SegmentHeader::decode(&[1, 2, 3]).is_err());
        let h = SegmentHeader {
            id: 5,
            first_seq: 1234,
        };
        h.encode(&mut page);
        assert_eq!(SegmentHeader::decode(&page), Ok(Some(h)));
        page[20] ^= 1;
        assert!(SegmentHeader::decode(&page).is_err());
    }
}
