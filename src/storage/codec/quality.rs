//! Quality codes run-length encoded: `(quality, run length)` pairs. On disk
//! a run is 5 bytes: the quality byte, then the length as u32 LE.

use crate::storage::le::u32_at;

/// One run of equal quality codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QRun {
    /// Quality code.
    pub quality: u8,
    /// Points in the run (≥ 1).
    pub len: u32,
}

/// Bytes of one serialized run.
pub const RUN_BYTES: usize = 5;

/// Extends `runs` with one more point of quality `q`.
#[inline(always)]
pub fn push<A: smallvec::Array<Item = QRun>>(runs: &mut smallvec::SmallVec<A>, q: u8) {
    match runs.last_mut() {
        Some(r) if r.quality == q => r.len += 1,
        _ => runs.push(QRun { quality: q, len: 1 }),
    }
}

/// Serializes `runs` into `out` (exactly `RUN_BYTES × runs.len()` bytes).
pub fn write(runs: &[QRun], out: &mut [u8]) {
    for (r, o) in runs.iter().zip(out.chunks_exact_mut(RUN_BYTES)) {
        o[0] = r.quality;
        o[1..5].copy_from_slice(&r.len.to_le_bytes());
    }
}

/// The runs serialized in `b` (a multiple of `RUN_BYTES`).
pub fn read(b: &[u8]) -> impl Iterator<Item = QRun> + '_ {
    b.chunks_exact(RUN_BYTES).map(|c| QRun {
        quality: c[0],
        len: u32_at(c, 1),
    })
}
