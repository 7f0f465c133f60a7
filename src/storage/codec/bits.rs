//! Bit-level writer and reader for the compressed streams: bits are stored
//! most significant first, in bytes appended to a `Vec<u8>` whose last byte
//! may be partly filled (the unused low bits are zero). The writer never
//! rewrites earlier bytes, so a stream can be appended to point by point and
//! read at any time without flushing. The reader treats bits past the end as
//! zero and remembers that it overran, so a decoder fed arbitrary bytes
//! terminates and reports the damage instead of panicking.

/// Appends `n` (0..=64) low bits of `v` to `buf`, whose last byte has
/// `*free` (0..=7) unused low bits. Bits of `v` above `n` must be zero.
#[inline]
pub fn put(buf: &mut Vec<u8>, free: &mut u8, v: u64, n: u32) {
    debug_assert!(n <= 64 && (n == 64 || v >> n == 0));
    if n == 0 {
        return;
    }
    let f = *free as u32;
    let used = (8 - f) & 7;
    let total = used + n;
    let mut acc = (v as u128) << (128 - total);
    if f > 0 {
        if let Some(last) = buf.pop() {
            acc |= (last as u128) << 120;
        }
    }
    let nbytes = total.div_ceil(8) as usize;
    // A fixed-size copy (two stores) and a truncate beat a variable memcpy.
    let len = buf.len();
    buf.extend_from_slice(&acc.to_be_bytes());
    buf.truncate(len + nbytes);
    *free = (nbytes as u32 * 8 - total) as u8;
}

/// Reads bits most significant first from a byte slice.
pub struct BitReader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> BitReader<'a> {
    /// A reader at the first bit of `b`.
    pub fn new(b: &'a [u8]) -> Self {
        BitReader { b, pos: 0 }
    }

    /// The next 64 bits, most significant first, without consuming them.
    /// At least the top 57 are real stream bits (or zero past the end).
    #[inline(always)]
    pub fn peek(&self) -> u64 {
        let i = self.pos >> 3;
        let w = match self.b.get(i..i + 8) {
            Some(s) => {
                let mut a = [0u8; 8];
                a.copy_from_slice(s);
                u64::from_be_bytes(a)
            }
            None => self.peek_slow(i),
        };
        w << (self.pos & 7)
    }

    /// The last 1..=7 bytes (or none): the slice's last eight bytes
    /// shifted so that the bits past the end are zero. No variable-length
    /// copy: short streams (a rollup's timing column is a few dozen bytes)
    /// take this path for a good part of their codes, and a `memcpy` call
    /// into a stack buffer followed by a wide load stalled on store
    /// forwarding.
    #[inline(never)]
    fn peek_slow(&self, i: usize) -> u64 {
        let n = self.b.len();
        if i >= n {
            return 0;
        }
        if n >= 8 {
            // i + 8 > n > i: 1..=7 bytes left, so the shift is 8..=56.
            let mut a = [0u8; 8];
            a.copy_from_slice(&self.b[n - 8..]);
            return u64::from_be_bytes(a) << ((i + 8 - n) * 8);
        }
        let mut w = 0u64;
        for (j, &x) in self.b[i..].iter().enumerate() {
            w |= u64::from(x) << (56 - 8 * j);
        }
        w
    }

    /// Consumes `n` bits (may be past the end; see [`Self::overran`]).
    #[inline(always)]
    pub fn skip(&mut self, n: u32) {
        self.pos += n as usize;
    }

    /// Reads `n` (0..=56) bits.
    #[inline(always)]
    pub fn read(&mut self, n: u32) -> u64 {
        debug_assert!(n <= 56);
        if n == 0 {
            return 0;
        }
        let v = self.peek() >> (64 - n);
        self.pos += n as usize;
        v
    }

    /// Reads `n` (0..=64) bits.
    #[inline(always)]
    pub fn read_long(&mut self, n: u32) -> u64 {
        if n <= 56 {
            self.read(n)
        } else {
            let hi = self.read(n - 32);
            (hi << 32) | self.read(32)
        }
    }

    /// True if more bits were consumed than the slice holds.
    pub fn overran(&self) -> bool {
        self.pos > self.b.len() * 8
    }
}

/// True if `v` fits in an `n`-bit two's-complement field.
#[inline(always)]
pub fn fits(v: i64, n: u32) -> bool {
    let lim = 1i64 << (n - 1);
    v >= -lim && v < lim
}

/// The low `n` bits of `v` (its `n`-bit two's-complement field).
#[inline(always)]
pub fn low(v: i64, n: u32) -> u64 {
    (v as u64) & ((1u64 << n) - 1)
}

/// Sign-extends an `n`-bit field read back with [`low`]'s layout.
#[inline(always)]
pub fn sign_extend(v: u64, n: u32) -> i64 {
    ((v << (64 - n)) as i64) >> (64 - n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_and_read_back_any_widths() {
        let fields: Vec<(u64, u32)> = (0..500u64)
            .map(|i| {
                let n = (i * 7 % 65) as u32;
                let v = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                (if n == 64 { v } else { v & ((1u64 << n) - 1) }, n)
            })
            .collect();
        let (mut buf, mut free) = (Vec::new(), 0u8);
        for &(v, n) in &fields {
            put(&mut buf, &mut free, v, n);
        }
        let bits: u64 = fields.iter().map(|f| f.1 as u64).sum();
        assert_eq!(buf.len() as u64, bits.div_ceil(8));
        let mut r = BitReader::new(&buf);
        for &(v, n) in &fields {
            assert_eq!(r.read_long(n), v, "width {n}");
        }
        assert!(!r.overran());
        r.read(8);
        assert!(r.overran());
    }

    #[test]
    fn peeks_near_the_end_see_zeros_past_it() {
        let b: Vec<u8> = (1..=20u8).map(|x| x.wrapping_mul(37) | 1).collect();
        for len in 0..=b.len() {
            let s = &b[..len];
            for bit in 0..(len * 8 + 16) {
                let mut want = 0u64;
                for j in 0..64 {
                    let at = bit + j;
                    let v = s.get(at / 8).map_or(0, |x| (x >> (7 - at % 8)) & 1);
                    want |= u64::from(v) << (63 - j);
                }
                let mut r = BitReader::new(s);
                r.skip(bit as u32);
                // The peek is a byte window shifted: its low `bit % 8`
                // bits are zero.
                let want = want & !((1u64 << (bit % 8)) - 1);
                assert_eq!(r.peek(), want, "len {len} bit {bit}");
            }
        }
    }
}
