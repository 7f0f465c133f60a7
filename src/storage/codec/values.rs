//! Values as XOR with the previous value (Gorilla). Values are handled as
//! their 64 raw bits, so NaN payloads, -0.0, infinities and subnormals
//! round-trip bit for bit.
//!
//! | prefix | payload | meaning |
//! |---|---|---|
//! | `0` | — | same bits as the previous value |
//! | `10` | the meaningful bits | XOR fits the previous leading/trailing-zero window |
//! | `11` | 5 bits leading zeros (≤ 31), 6 bits length (0 = 64), the bits | new window |

use super::bits::{put, BitReader};

/// The widest encoding of one value, in bits.
pub const MAX_BITS: u32 = 2 + 5 + 6 + 64;

/// The XOR window state shared by encoder and decoder.
#[derive(Clone, Copy, Debug, Default)]
pub struct XorState {
    /// Previous value's bits.
    pub prev: u64,
    /// Leading zeros of the current window.
    pub lead: u8,
    /// Trailing zeros of the current window (64 = no window yet).
    pub trail: u8,
}

impl XorState {
    /// State after a first value written raw.
    pub fn new(first: u64) -> Self {
        XorState {
            prev: first,
            lead: 0,
            trail: 64,
        }
    }

    /// Appends `v`.
    #[inline(always)]
    pub fn put(&mut self, buf: &mut Vec<u8>, free: &mut u8, v: u64) {
        let x = v ^ self.prev;
        self.prev = v;
        if x == 0 {
            put(buf, free, 0, 1);
            return;
        }
        let lead = x.leading_zeros().min(31);
        let trail = x.trailing_zeros();
        if self.trail < 64 && lead >= self.lead as u32 && trail >= self.trail as u32 {
            let n = 64 - self.lead as u32 - self.trail as u32;
            let bits = x >> self.trail;
            if n <= 62 {
                put(buf, free, (0b10 << n) | bits, n + 2);
            } else {
                put(buf, free, 0b10, 2);
                put(buf, free, bits, n);
            }
            return;
        }
        let n = 64 - lead - trail;
        let head = (0b11 << 11) | ((lead as u64) << 6) | (n as u64 & 63);
        put(buf, free, head, 13);
        put(buf, free, x >> trail, n);
        self.lead = lead as u8;
        self.trail = trail as u8;
    }

    /// Reads the next value. `None` for an impossible window (damage).
    #[inline(always)]
    pub fn read(&mut self, r: &mut BitReader) -> Option<u64> {
        let w = r.peek();
        if w >> 63 == 0 {
            r.skip(1);
            return Some(self.prev);
        }
        if w >> 62 == 0b10 {
            r.skip(2);
            if self.trail >= 64 {
                return None;
            }
            let n = 64 - self.lead as u32 - self.trail as u32;
            self.prev ^= r.read_long(n) << self.trail;
            return Some(self.prev);
        }
        let lead = ((w >> 57) & 31) as u32;
        let n = match ((w >> 51) & 63) as u32 {
            0 => 64,
            n => n,
        };
        r.skip(13);
        if lead + n > 64 {
            return None;
        }
        let trail = 64 - lead - n;
        self.prev ^= r.read_long(n) << trail;
        self.lead = lead as u8;
        self.trail = trail as u8;
        Some(self.prev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn awkward_values_round_trip() {
        let vals: Vec<u64> = [
            0.0f64,
            -0.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE / 3.0,
            1.0,
            1.0,
            1.5,
            -2.25,
        ]
        .iter()
        .map(|v| v.to_bits())
        .chain([0x7ff8_dead_beef_0001, u64::MAX, 1, 1 << 63, 0])
        .collect();
        let (mut buf, mut free) = (Vec::new(), 0u8);
        let mut st = XorState::new(vals[0]);
        for &v in &vals[1..] {
            st.put(&mut buf, &mut free, v);
        }
        let mut r = BitReader::new(&buf);
        let mut st = XorState::new(vals[0]);
        for &v in &vals[1..] {
            assert_eq!(st.read(&mut r), Some(v));
        }
        assert!(!r.overran());
    }
}
