//! The byte layout of one message of the replicated log: a batch of one
//! partition's points. `[version u8 = 1][count u32 LE]` then `count`
//! points of 21 bytes (`tag u32, ts i64, value f64 bits, quality u8`, all
//! little-endian). Pure: no I/O. Decoding refuses anything else with a
//! reason (a message another publisher put on the subject is never
//! applied as points).
//!
//! The catalog stream's messages (series keys proposed for ids, see
//! [`crate::cluster::log`]) are `[version u8 = 0x81][count u32 LE]` then
//! `count` times `[len u32 LE][len bytes of UTF-8]`.

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

/// The catalog layout's version byte (apart from the points' versions).
pub const KEYS_VERSION: u8 = 0x81;
/// Most key bytes one catalog message carries (under NATS's 1 MiB).
pub const MAX_KEY_BYTES: usize = 512 << 10;

/// Encodes series keys into catalog messages, each at most
/// [`MAX_KEY_BYTES`] of keys (one key longer than that gets a message of
/// its own; the applier refuses it by length).
pub fn encode_keys(keys: &[String]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut n = 0u32;
    let finish = |cur: &mut Vec<u8>, n: &mut u32, out: &mut Vec<Vec<u8>>| {
        if *n > 0 {
            cur[1..HEADER].copy_from_slice(&n.to_le_bytes());
            out.push(std::mem::take(cur));
            *n = 0;
        }
    };
    for k in keys {
        if n > 0 && cur.len() + 4 + k.len() > MAX_KEY_BYTES {
            finish(&mut cur, &mut n, &mut out);
        }
        if n == 0 {
            cur.push(KEYS_VERSION);
            cur.extend_from_slice(&[0; 4]);
        }
        cur.extend_from_slice(&(k.len() as u32).to_le_bytes());
        cur.extend_from_slice(k.as_bytes());
        n += 1;
    }
    finish(&mut cur, &mut n, &mut out);
    out
}

/// Decodes one catalog message, appending its keys to `out`; the error
/// says what was wrong (nothing is appended then).
pub fn decode_keys(b: &[u8], out: &mut Vec<String>) -> Result<(), String> {
    if b.len() < HEADER {
        return Err(format!("{} bytes, shorter than the header", b.len()));
    }
    if b[0] != KEYS_VERSION {
        return Err(format!(
            "catalog layout version {}, this build reads {KEYS_VERSION}",
            b[0]
        ));
    }
    let n = u32::from_le_bytes([b[1], b[2], b[3], b[4]]) as usize;
    // Every key takes 4 bytes at least: a count above that is a lie.
    if n > (b.len() - HEADER) / 4 {
        return Err(format!("a count of {n} keys in {} bytes", b.len()));
    }
    let mut keys = Vec::with_capacity(n);
    let mut at = HEADER;
    for i in 0..n {
        let Some(l) = b.get(at..at + 4) else {
            return Err(format!("key {i}: cut before its length"));
        };
        let l = u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize;
        at += 4;
        let Some(k) = b.get(at..at.saturating_add(l)) else {
            return Err(format!("key {i}: {l} bytes announced, fewer left"));
        };
        let k = std::str::from_utf8(k).map_err(|e| format!("key {i}: not UTF-8 ({e})"))?;
        keys.push(k.to_string());
        at += l;
    }
    if at != b.len() {
        return Err(format!("{} bytes after the last key", b.len() - at));
    }
    out.extend(keys);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(crate::proptest_config::config(256))]
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

    proptest! {
        #![proptest_config(crate::proptest_config::config(256))]
        #[test]
        fn keys_round_trip(keys in proptest::collection::vec(".{0,40}", 0..100)) {
            let mut got = Vec::new();
            for m in encode_keys(&keys) {
                prop_assert!(m.len() <= MAX_KEY_BYTES + HEADER + 4 + 40 * 4);
                decode_keys(&m, &mut got).unwrap();
            }
            prop_assert_eq!(got, keys);
        }

        #[test]
        fn damaged_keys_are_refused_never_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300), cut in 0usize..300) {
            let mut got = Vec::new();
            let _ = decode_keys(&bytes, &mut got);
            let mut m = encode_keys(&["cpu,host=a value".to_string(), "x".to_string()]).remove(0);
            m.truncate(cut.min(m.len()));
            let mut got = Vec::new();
            if decode_keys(&m, &mut got).is_err() {
                prop_assert!(got.is_empty());
            }
        }
    }

    #[test]
    fn many_keys_make_several_messages() {
        let keys: Vec<String> = (0..40_000)
            .map(|i| format!("m,host=h{i:05} field_name"))
            .collect();
        let msgs = encode_keys(&keys);
        assert!(msgs.len() >= 2, "{}", msgs.len());
        let mut got = Vec::new();
        for m in &msgs {
            assert!(m.len() <= MAX_KEY_BYTES + HEADER);
            decode_keys(m, &mut got).unwrap();
        }
        assert_eq!(got, keys);
        assert!(encode_keys(&[]).is_empty());
        // A points message is not a catalog message, nor the reverse.
        assert!(decode_keys(&encode(&[]), &mut got).is_err());
        assert!(decode(&msgs[0], &mut Vec::new()).is_err());
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
