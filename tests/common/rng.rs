//! A seeded xorshift64 for tests that replay a case from its seed (power
//! loss, mutated streams): deterministic, no dependency.
#![allow(dead_code)]

/// xorshift64 state (never zero).
pub struct Rng(u64);

impl Rng {
    /// The generator for `seed` (any value, zero included).
    pub fn seeded(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next value.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A value in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}
