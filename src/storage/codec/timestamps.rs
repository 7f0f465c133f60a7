//! Timestamps as delta-of-delta (Gorilla, widened for microseconds).
//! Deltas and deltas of deltas use wrapping i64 arithmetic, so any sequence
//! of i64 values (extremes included) round-trips exactly.
//!
//! | prefix | payload | delta of delta |
//! |---|---|---|
//! | `0` | — | 0 |
//! | `10` | 8 bits | -128..=127 |
//! | `110` | 14 bits | -8192..=8191 |
//! | `1110` | 20 bits | ±2^19 (±0.5 s in µs) |
//! | `11110` | 32 bits | ±2^31 |
//! | `11111` | 64 bits | anything |
//!
//! Payloads are two's complement, most significant bit first.

use super::bits::{fits, low, put, sign_extend, BitReader};

/// The widest encoding of one delta of delta, in bits.
pub const MAX_BITS: u32 = 5 + 64;

/// The bits encoding `dod`, as `(value, width)` (width ≤ 64 except the
/// 64-bit case, which is written by [`put_dod`] in two parts).
#[inline(always)]
pub fn put_dod(buf: &mut Vec<u8>, free: &mut u8, dod: i64) {
    if dod == 0 {
        put(buf, free, 0, 1);
    } else if fits(dod, 8) {
        put(buf, free, (0b10 << 8) | low(dod, 8), 10);
    } else if fits(dod, 14) {
        put(buf, free, (0b110 << 14) | low(dod, 14), 17);
    } else if fits(dod, 20) {
        put(buf, free, (0b1110 << 20) | low(dod, 20), 24);
    } else if fits(dod, 32) {
        put(buf, free, (0b11110 << 32) | low(dod, 32), 37);
    } else {
        put(buf, free, 0b11111, 5);
        put(buf, free, dod as u64, 64);
    }
}

/// Reads one delta of delta.
#[inline(always)]
pub fn read_dod(r: &mut BitReader) -> i64 {
    let w = r.peek();
    if w >> 63 == 0 {
        r.skip(1);
        return 0;
    }
    match w.leading_ones() {
        1 => {
            r.skip(2);
            sign_extend(r.read(8), 8)
        }
        2 => {
            r.skip(3);
            sign_extend(r.read(14), 14)
        }
        3 => {
            r.skip(4);
            sign_extend(r.read(20), 20)
        }
        4 => {
            r.skip(5);
            sign_extend(r.read(32), 32)
        }
        _ => {
            r.skip(5);
            r.read_long(64) as i64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bucket_edge_round_trips() {
        let mut vals = vec![0i64, i64::MIN, i64::MAX, -1, 1];
        for n in [8u32, 14, 20, 32] {
            let lim = 1i64 << (n - 1);
            vals.extend([lim - 1, lim, -lim, -lim - 1]);
        }
        let (mut buf, mut free) = (Vec::new(), 0u8);
        for &v in &vals {
            put_dod(&mut buf, &mut free, v);
        }
        let mut r = BitReader::new(&buf);
        for &v in &vals {
            assert_eq!(read_dod(&mut r), v);
        }
        assert!(!r.overran());
    }
}
