//! The byte layout of one message of the replicated log: a batch of one
//! partition's points. `[version u8 = 1][count u32 LE]` then `count`
//! points of 21 bytes (`tag u32, ts i64, value f64 bits, quality u8`, all
//! little-endian). Pure: no I/O. Decoding refuses anything else with a
//! reason (a message another publisher put on the subject is never
//! applied as points).

use crate::Point;

/// The layout version this build writes and reads.
pub const VERSION: u8 = 1;
/// Bytes of the header.
pub const HEADER: usize = 5;
/// Bytes of one point.
pub const POINT: usize = 21;
/// Most points in one message: 840 KB, under NATS's default 1 MiB payload.
pub const MAX_POINTS: usize = 40_000;

/// Encodes `points` (at most [`MAX_POINTS`]) as one message.
pub fn encode(points: &[Point]) -> Vec<u8> {
    debug_assert!(points.len() <= MAX_POINTS);
    let mut out = Vec::with_capacity(HEADER + POINT * points.len());
    out.push(VERSION);
    out.extend_from_slice(&(points.len() as u32).to_le_bytes());
    for p in points {
        out.extend_from_slice(&p.tag.to_le_bytes());
        out.extend_from_slice(&p.ts.to_le_bytes());
        out.extend_from_slice(&p.value.to_bits().to_le_bytes());
        out.push(p.quality);
    }
    out
}

/// Decodes one message, appending its points to `out`; the error says
/// what was wrong (nothing is appended then).
pub fn decode(b: &[u8], out: &mut Vec<Point>) -> Result<(), String> {
    if b.len() < HEADER {
        return Err(format!("{} bytes, shorter than the header", b.len()));
    }
    if b[0] != VERSION {
        return Err(format!(
            "layout version {}, this build reads {VERSION}",
            b[0]
        ));
    }
    let n = u32::from_le_bytes([b[1], b[2], b[3], b[4]]) as usize;
    let body = &b[HEADER..];
    if n > MAX_POINTS || body.len() != n * POINT {
        return Err(format!(
            "{} bytes of points for a count of {n} (at most {MAX_POINTS})",
            body.len()
        ));
    }
    out.reserve(n);
    for c in body.chunks_exact(POINT) {
        let u32_at = |i: usize| u32::from_le_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&c[i..i + 8]);
            u64::from_le_bytes(a)
        };
        out.push(Point {
            tag: u32_at(0),
            ts: u64_at(4) as i64,
            value: f64::from_bits(u64_at(12)),
            quality: c[20],
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(pts in proptest::collection::vec(
            (any::<u32>(), any::<i64>(), any::<u64>(), any::<u8>()), 0..200)) {
            let points: Vec<Point> = pts
                .iter()
                .map(|&(tag, ts, v, quality)| Point { tag, ts, value: f64::from_bits(v), quality })
                .collect();
            let b = encode(&points);
            let mut got = Vec::new();
            decode(&b, &mut got).unwrap();
            prop_assert_eq!(got.len(), points.len());
            for (a, b) in got.iter().zip(&points) {
                prop_assert_eq!((a.tag, a.ts, a.value.to_bits(), a.quality), (b.tag, b.ts, b.value.to_bits(), b.quality));
            }
        }

        #[test]
        fn damage_is_refused_never_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut got = Vec::new();
            if decode(&bytes, &mut got).is_err() {
                prop_assert!(got.is_empty());
            } else {
                prop_assert_eq!(bytes.len(), HEADER + got.len() * POINT);
            }
        }
    }

    #[test]
    fn a_cut_or_foreign_message_is_refused() {
        let b = encode(&[Point {
            tag: 1,
            ts: 2,
            value: 3.0,
            quality: 192,
        }]);
        let mut got = Vec::new();
        assert!(decode(&b[..b.len() - 1], &mut got)
            .unwrap_err()
            .contains("count of 1"));
        assert!(decode(b"hello", &mut got).unwrap_err().contains("version"));
        assert!(got.is_empty());
    }
}
