//! Values: XOR with the previous value inside a leading/trailing-zero
//! window (Gorilla), plus a decimal code for values that are exact decimals
//! (what most plant signals are: an ADC reading scaled to 0.01 or 0.1, a
//! counter): such a value is sent as the difference of `value × 10^d` from
//! the previous one, a few bits where XOR needs ~40. Values are handled as
//! their 64 raw bits, so NaN payloads, -0.0, infinities and subnormals
//! round-trip bit for bit (the encoder uses the decimal code only when the
//! decoder's reconstruction gives back exactly the same bits).
//!
//! | prefix | payload | meaning |
//! |---|---|---|
//! | `0` | — | same bits as the previous value |
//! | `10` | delta | decimal at the current scale `s`: `value = from_int(prev_int + delta, s)` |
//! | `110` | the meaningful bits | XOR fits the previous window |
//! | `1110` | 5 bits leading zeros (≤ 31), 6 bits length (0 = 64), the bits | XOR, new window |
//! | `1111` | 4 bits scale `s`, delta | decimal at new scale `s` |
//!
//! A scale `s` has `d = s & 7` decimal digits and a form: `s & 8 == 0`
//! divides, `from_int(i, s) = i / 10^d` (values parsed from decimal text),
//! `s & 8 == 8` multiplies, `from_int(i, s) = i × 10^-d` with the f64
//! constant `1e-d` (values scaled from raw counts, `raw × 0.01`). Both are
//! IEEE-exact operations, so encoder and decoder agree on every machine.
//!
//! Delta (signed, two's complement): `0` + 7 bits, `10` + 14 bits,
//! `110` + 24 bits, `111` + 40 bits. `prev_int` is the integer `i` with
//! `from_int(i, s) == previous value` (`i` = previous × 10^d rounded, below
//! 2^53), recomputed by both sides after every XOR code and scale change;
//! the decimal code is only used while it exists.

use super::bits::{fits, low, put, sign_extend, BitReader};

/// The widest encoding of one value, in bits.
pub const MAX_BITS: u32 = 4 + 5 + 6 + 64;

const NO_SCALE: u8 = u8::MAX;
/// Powers of ten for 0..=7 digits (exact in f64).
const POW10: [f64; 8] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7];
/// The f64 constants `1e-d` (nearest doubles, as a compiler writes them).
const NEG_POW10: [f64; 8] = [1e0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7];
/// The multiplying form flag of a scale.
const MUL: u8 = 8;
/// Points without a scale search after one failed.
const SEARCH_BACKOFF: u8 = 16;

/// The decoder's reconstruction of a decimal at scale `s`.
#[inline(always)]
fn from_int(i: i64, s: u8) -> u64 {
    let d = s as usize & 7;
    if s & MUL == 0 {
        (i as f64 / POW10[d]).to_bits()
    } else {
        (i as f64 * NEG_POW10[d]).to_bits()
    }
}

/// `v × 10^d` (`d` of scale `s`) if it is an integer below 2^53 from which
/// [`from_int`] gives back exactly `v`.
#[inline(always)]
fn as_int(v: u64, s: u8) -> Option<i64> {
    let f = f64::from_bits(v) * POW10[s as usize & 7];
    if f.is_nan() || f.abs() >= (1u64 << 53) as f64 {
        return None;
    }
    // Round half away from zero without a libm call; the check below makes
    // any rounding slip harmless.
    let i = (f + 0.5f64.copysign(f)) as i64;
    (from_int(i, s) == v).then_some(i)
}

/// `(bits, width)` of a delta, or `None` if it needs more than 40 bits.
#[inline(always)]
fn delta_code(delta: i64) -> Option<(u64, u32)> {
    if fits(delta, 7) {
        Some((low(delta, 7), 8))
    } else if fits(delta, 14) {
        Some(((0b10 << 14) | low(delta, 14), 16))
    } else if fits(delta, 24) {
        Some(((0b110 << 24) | low(delta, 24), 27))
    } else if fits(delta, 40) {
        Some(((0b111 << 40) | low(delta, 40), 43))
    } else {
        None
    }
}

#[inline(always)]
fn read_delta(r: &mut BitReader) -> i64 {
    let w = r.peek();
    match w.leading_ones() {
        0 => sign_extend(r.read(8), 7),
        1 => sign_extend(r.read(16), 14),
        2 => sign_extend(r.read(27), 24),
        _ => sign_extend(r.read(43), 40),
    }
}

/// The value coder state shared by encoder and decoder.
#[derive(Clone, Copy, Debug)]
pub struct ValueState {
    /// Previous value's bits.
    pub prev: u64,
    /// Leading zeros of the current XOR window.
    lead: u8,
    /// Trailing zeros of the current XOR window (64 = no window yet).
    trail: u8,
    /// Current decimal scale, or `NO_SCALE`.
    scale: u8,
    /// Encoder only: points left before the next scale search.
    backoff: u8,
    /// `prev × 10^scale` when exact (see the module doc).
    prev_int: Option<i64>,
}

impl Default for ValueState {
    fn default() -> Self {
        ValueState::new(0)
    }
}

impl ValueState {
    /// State after a first value written raw.
    pub fn new(first: u64) -> Self {
        ValueState {
            prev: first,
            lead: 0,
            trail: 64,
            scale: NO_SCALE,
            backoff: 0,
            prev_int: None,
        }
    }

    fn refresh_int(&mut self) {
        self.prev_int = if self.scale == NO_SCALE {
            None
        } else {
            as_int(self.prev, self.scale)
        };
    }

    /// Appends `v`.
    #[inline(always)]
    pub fn put(&mut self, buf: &mut Vec<u8>, free: &mut u8, v: u64) {
        if v == self.prev {
            put(buf, free, 0, 1);
            return;
        }
        if let Some(pi) = self.prev_int {
            if let Some(i) = as_int(v, self.scale) {
                if let Some((code, n)) = delta_code(i - pi) {
                    put(buf, free, (0b10 << n) | code, n + 2);
                    self.prev = v;
                    self.prev_int = Some(i);
                    return;
                }
            }
        }
        self.put_slow(buf, free, v);
    }

    #[inline(never)]
    fn put_slow(&mut self, buf: &mut Vec<u8>, free: &mut u8, v: u64) {
        if self.backoff == 0 {
            if let Some((d, i, code, n)) = self.search(v) {
                put(buf, free, (0b1111 << 4) | d as u64, 8);
                put(buf, free, code, n);
                self.prev = v;
                self.scale = d;
                self.prev_int = Some(i);
                return;
            }
            self.backoff = SEARCH_BACKOFF;
        } else {
            self.backoff -= 1;
        }
        let x = v ^ self.prev;
        self.prev = v;
        let lead = x.leading_zeros().min(31);
        let trail = x.trailing_zeros();
        if self.trail < 64 && lead >= self.lead as u32 && trail >= self.trail as u32 {
            let n = 64 - self.lead as u32 - self.trail as u32;
            let bits = x >> self.trail;
            if n <= 61 {
                put(buf, free, (0b110 << n) | bits, n + 3);
            } else {
                put(buf, free, 0b110, 3);
                put(buf, free, bits, n);
            }
        } else {
            let n = 64 - lead - trail;
            let head = (0b1110 << 11) | ((lead as u64) << 6) | (n as u64 & 63);
            put(buf, free, head, 15);
            put(buf, free, x >> trail, n);
            self.lead = lead as u8;
            self.trail = trail as u8;
        }
        self.refresh_int();
    }

    /// The smallest scale at which both the previous value and `v` are
    /// exact decimals a short delta apart (dividing form first).
    fn search(&self, v: u64) -> Option<(u8, i64, u64, u32)> {
        for d in 0..8u8 {
            for s in [d, d | MUL] {
                if s == MUL {
                    continue;
                }
                let Some(i) = as_int(v, s) else { continue };
                let Some(pi) = as_int(self.prev, s) else {
                    continue;
                };
                let (code, n) = delta_code(i - pi)?;
                return Some((s, i, code, n));
            }
        }
        None
    }

    /// Reads the next value. `None` for an impossible code (damage).
    #[inline(always)]
    pub fn read(&mut self, r: &mut BitReader) -> Option<u64> {
        let w = r.peek();
        if w >> 63 == 0 {
            r.skip(1);
            return Some(self.prev);
        }
        if w >> 62 == 0b10 {
            r.skip(2);
            let i = self.prev_int?.wrapping_add(read_delta(r));
            self.prev = from_int(i, self.scale);
            self.prev_int = Some(i);
            return Some(self.prev);
        }
        self.read_slow(r, w)
    }

    /// Out of line: inlined, it slowed the decimal path (the common one in
    /// plants) from 5.6 to 6.6 ns/point in `cargo bench --bench codec`.
    #[inline(never)]
    fn read_slow(&mut self, r: &mut BitReader, w: u64) -> Option<u64> {
        match w.leading_ones() {
            2 => {
                r.skip(3);
                if self.trail >= 64 {
                    return None;
                }
                let n = 64 - self.lead as u32 - self.trail as u32;
                self.prev ^= r.read_long(n) << self.trail;
            }
            3 => {
                let lead = ((w >> 55) & 31) as u32;
                let n = match ((w >> 49) & 63) as u32 {
                    0 => 64,
                    n => n,
                };
                r.skip(15);
                if lead + n > 64 {
                    return None;
                }
                let trail = 64 - lead - n;
                self.prev ^= r.read_long(n) << trail;
                self.lead = lead as u8;
                self.trail = trail as u8;
            }
            _ => {
                let d = ((w >> 56) & 15) as u8;
                r.skip(8);
                let pi = as_int(self.prev, d)?;
                let i = pi.wrapping_add(read_delta(r));
                self.scale = d;
                self.prev = from_int(i, d);
                self.prev_int = Some(i);
                return Some(self.prev);
            }
        }
        self.refresh_int();
        Some(self.prev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(vals: &[u64]) -> usize {
        let (mut buf, mut free) = (Vec::new(), 0u8);
        let mut st = ValueState::new(vals[0]);
        for &v in &vals[1..] {
            st.put(&mut buf, &mut free, v);
        }
        let mut r = BitReader::new(&buf);
        let mut st = ValueState::new(vals[0]);
        for (k, &v) in vals[1..].iter().enumerate() {
            assert_eq!(st.read(&mut r), Some(v), "value {}", k + 1);
        }
        assert!(!r.overran());
        buf.len()
    }

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
            0.1,
            -0.0,
            0.3,
            0.0,
            1e15,
            9007199254740993.0,
            -7.77,
            7.0 * 0.01,
            29.0 * 0.01,
            -3.0 * 0.1,
            12345.0 * 1e-7,
        ]
        .iter()
        .map(|v| v.to_bits())
        .chain([0x7ff8_dead_beef_0001, u64::MAX, 1, 1 << 63, 0])
        .collect();
        round_trip(&vals);
    }

    #[test]
    fn scaled_raw_counts_cost_about_a_byte() {
        let vals: Vec<u64> = (0..1000)
            .map(|i| (2000 + (i * 37) % 21 - 10) as f64 * 0.01)
            .map(f64::to_bits)
            .collect();
        let bytes = round_trip(&vals);
        assert!(bytes <= 1300, "{bytes} bytes for 1000 scaled counts");
    }

    #[test]
    fn decimals_cost_about_a_byte() {
        let vals: Vec<u64> = (0..1000)
            .map(|i| (2000.0 + ((i * 37) % 21) as f64 - 10.0) / 100.0)
            .map(f64::to_bits)
            .collect();
        let bytes = round_trip(&vals);
        assert!(bytes <= 1300, "{bytes} bytes for 1000 decimals");
    }
}
