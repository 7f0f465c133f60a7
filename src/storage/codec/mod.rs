//! The compressed point codec: pure functions and in-memory structures, no
//! I/O. One interleaved bit stream per series holds, for every point, its
//! timestamp as delta-of-delta ([`timestamps`]) followed by its value as XOR
//! with the previous one ([`values`]); the first point is written raw
//! (64-bit timestamp, 64-bit value). Quality codes live beside the stream as
//! runs ([`quality`]). The stream is appended one point at a time by an
//! [`Encoder`] (a tag buffer's head, like a Prometheus head chunk) and the
//! very same bytes become a block's payload ([`crate::storage::block`]), so a
//! flush copies bytes instead of re-encoding.
//!
//! Streams hold strictly increasing timestamps; the decoder checks that, and
//! never panics or over-allocates on damaged input.

pub mod bits;
pub mod quality;
pub mod timestamps;
pub mod values;

use smallvec::SmallVec;

use crate::Point;
use bits::{put, BitReader};
pub use quality::QRun;
use values::ValueState;

/// Bytes one point can add to an encoded payload at most (stream bits of
/// both fields, rounded up, plus a new quality run).
pub const MAX_POINT_BYTES: usize =
    (timestamps::MAX_BITS + values::MAX_BITS).div_ceil(8) as usize + 1 + quality::RUN_BYTES;

/// Free bytes [`Encoder::push`] wants at the stream's tail: one point's
/// widest fields plus the 16-byte store of [`bits::put`].
const HEADROOM: usize = 48;
/// Fewest bytes a stream grows by past [`HEADROOM`].
const MIN_GROWTH: usize = 64;

/// One sample of a series whose tag is known from context (a tag buffer's
/// key, a block's header): what the codec encodes and decodes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Timestamp, µs.
    pub ts: i64,
    /// Value.
    pub value: f64,
    /// Quality.
    pub quality: u8,
}

/// Quality runs: almost always one, kept inline.
pub type Runs = SmallVec<[QRun; 1]>;

/// Why a stream could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Appends points with strictly increasing timestamps to a stream.
#[derive(Default)]
pub struct Encoder {
    bits: Vec<u8>,
    runs: Runs,
    free: u8,
    count: u32,
    first_ts: i64,
    ts: i64,
    delta: i64,
    xor: ValueState,
}

impl Encoder {
    /// An empty stream with room for `bytes` of bit stream, for writers that
    /// know about how large the segment will get (compaction fills a block).
    pub fn with_capacity(bytes: usize) -> Self {
        Encoder {
            bits: Vec::with_capacity(bytes),
            ..Encoder::default()
        }
    }

    /// Points encoded.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Bytes of the payload this stream would make (see
    /// [`Segment::payload_len`]).
    pub fn payload_len(&self) -> usize {
        payload_len(&self.runs, &self.bits)
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        heap_bytes(&self.runs, &self.bits)
    }

    /// Bytes of the bit stream so far.
    pub fn stream_len(&self) -> usize {
        self.bits.len()
    }

    /// Makes room for `bytes` more bytes of stream (besides the headroom
    /// every push wants) in one reallocation, for a writer that knows about
    /// how much is coming (WAL replay inserting a tag's points together).
    pub fn reserve(&mut self, bytes: usize) {
        let want = bytes + HEADROOM;
        if self.bits.capacity() - self.bits.len() < want {
            self.bits.reserve_exact(want);
        }
    }

    /// Where the next byte will be appended (for prefetching).
    #[inline(always)]
    pub fn tail_ptr(&self) -> *const u8 {
        self.bits.as_ptr().wrapping_add(self.bits.len())
    }

    /// The last point appended.
    pub fn last(&self) -> Option<Sample> {
        let q = self.runs.last()?.quality;
        Some(Sample {
            ts: self.ts,
            value: f64::from_bits(self.xor.prev),
            quality: q,
        })
    }

    /// Smallest and largest timestamp (meaningless when empty).
    pub fn span(&self) -> (i64, i64) {
        (self.first_ts, self.ts)
    }

    /// Appends a point. `ts` must exceed the previous point's.
    #[inline]
    pub fn push(&mut self, ts: i64, value: u64, q: u8) {
        debug_assert!(self.count == 0 || ts > self.ts);
        if self.bits.len() + HEADROOM > self.bits.capacity() {
            self.grow();
        }
        if self.count == 0 {
            put(&mut self.bits, &mut self.free, ts as u64, 64);
            put(&mut self.bits, &mut self.free, value, 64);
            self.first_ts = ts;
            self.xor = ValueState::new(value);
        } else {
            let delta = ts.wrapping_sub(self.ts);
            timestamps::put_dod(
                &mut self.bits,
                &mut self.free,
                delta.wrapping_sub(self.delta),
            );
            self.delta = delta;
            self.xor.put(&mut self.bits, &mut self.free, value);
        }
        self.ts = ts;
        self.count += 1;
        quality::push(&mut self.runs, q);
    }

    /// Grows the stream so that about an eighth of its length (at least
    /// [`MIN_GROWTH`] bytes) can be appended before the next growth, on top
    /// of the [`HEADROOM`] every push needs: buffers are charged by
    /// capacity, so doubling would waste a third on average. (Reserving
    /// less than the headroom would make every push reallocate.)
    #[cold]
    fn grow(&mut self) {
        let step = (self.bits.len() / 8).max(MIN_GROWTH);
        self.bits.reserve_exact(HEADROOM + step);
    }

    /// Ends the stream.
    pub fn finish(mut self) -> Segment {
        self.bits.shrink_to_fit();
        let last = self.last().unwrap_or(Sample {
            ts: 0,
            value: 0.0,
            quality: 0,
        });
        Segment {
            bits: self.bits,
            runs: self.runs,
            count: self.count,
            min_ts: self.first_ts,
            last,
        }
    }

    /// Decodes the points with `start <= ts < end` into `f`.
    pub fn decode(
        &self,
        start: i64,
        end: i64,
        f: impl FnMut(i64, u64, u8),
    ) -> Result<(), DecodeError> {
        decode(
            &self.bits,
            self.runs.iter().copied(),
            self.count,
            start,
            end,
            f,
        )
    }
}

/// A finished stream: a block's payload in memory.
#[derive(Clone, Debug)]
pub struct Segment {
    /// The interleaved timestamp/value bit stream.
    pub bits: Vec<u8>,
    /// Quality runs.
    pub runs: Runs,
    /// Points.
    pub count: u32,
    /// First (smallest) timestamp.
    pub min_ts: i64,
    /// Last point (greatest timestamp).
    pub last: Sample,
}

impl Segment {
    /// Bytes of the block payload: run count (u16), runs, stream.
    pub fn payload_len(&self) -> usize {
        payload_len(&self.runs, &self.bits)
    }

    /// Heap bytes held (besides the structure itself).
    pub fn heap_bytes(&self) -> usize {
        heap_bytes(&self.runs, &self.bits)
    }

    /// Writes the payload into `out` (exactly [`Self::payload_len`] bytes).
    pub fn write_payload(&self, out: &mut [u8]) {
        let r = self.runs.len();
        out[0..2].copy_from_slice(&(r as u16).to_le_bytes());
        quality::write(&self.runs, &mut out[2..2 + quality::RUN_BYTES * r]);
        out[2 + quality::RUN_BYTES * r..].copy_from_slice(&self.bits);
    }

    /// Decodes the points with `start <= ts < end` into `f`.
    pub fn decode(
        &self,
        start: i64,
        end: i64,
        f: impl FnMut(i64, u64, u8),
    ) -> Result<(), DecodeError> {
        if self.count == 0 || self.min_ts >= end || self.last.ts < start {
            return Ok(());
        }
        decode(
            &self.bits,
            self.runs.iter().copied(),
            self.count,
            start,
            end,
            f,
        )
    }
}

/// Splits a payload into its serialized runs and its stream, checking that
/// the runs cover exactly `count` points.
pub fn split_payload(p: &[u8], count: u32) -> Result<(&[u8], &[u8]), DecodeError> {
    if p.len() < 2 {
        return Err(DecodeError("payload shorter than its run count"));
    }
    let r = u16::from_le_bytes([p[0], p[1]]) as usize;
    let end = 2 + quality::RUN_BYTES * r;
    if end > p.len() {
        return Err(DecodeError("quality runs overrun the payload"));
    }
    let runs = &p[2..end];
    let mut total = 0u64;
    for run in quality::read(runs) {
        if run.len == 0 {
            return Err(DecodeError("empty quality run"));
        }
        total += run.len as u64;
    }
    if total != count as u64 {
        return Err(DecodeError("quality runs do not cover the point count"));
    }
    Ok((runs, &p[end..]))
}

/// Decodes a payload (see [`Segment::write_payload`]) holding `count`
/// points, calling `f(ts, value bits, quality)` for those with
/// `start <= ts < end`, in order.
pub fn decode_payload(
    p: &[u8],
    count: u32,
    start: i64,
    end: i64,
    f: impl FnMut(i64, u64, u8),
) -> Result<(), DecodeError> {
    let (runs, stream) = split_payload(p, count)?;
    decode(stream, quality::read(runs), count, start, end, f)
}

/// Decodes a payload (see [`decode_payload`]) straight into `out` as
/// points of `tag`: the query path's inner loop.
pub fn decode_payload_into(
    p: &[u8],
    count: u32,
    tag: u32,
    start: i64,
    end: i64,
    out: &mut Vec<Point>,
) -> Result<(), DecodeError> {
    let (runs, stream) = split_payload(p, count)?;
    out.reserve(count as usize);
    let len = out.len();
    let spare = out.spare_capacity_mut();
    let mut k = 0;
    // Writing into the reserved tail keeps length and capacity in registers
    // (`Vec::push` reloads them every point).
    let r = decode(
        stream,
        quality::read(runs),
        count,
        start,
        end,
        |ts, v, q| {
            if let Some(slot) = spare.get_mut(k) {
                slot.write(Point::new(tag, ts, f64::from_bits(v), q));
                k += 1;
            }
        },
    );
    // SAFETY: the first `k` slots of the spare capacity were initialised
    // above, and `len + k` is within the capacity.
    #[allow(unsafe_code)]
    unsafe {
        out.set_len(len + k)
    };
    r
}

/// Decodes `count` points of `stream` with qualities from `runs`, calling
/// `f` for those with `start <= ts < end`. Stops early past `end`. Errors on
/// a stream that is too short, not strictly increasing, or otherwise damaged.
pub fn decode(
    stream: &[u8],
    runs: impl IntoIterator<Item = QRun>,
    count: u32,
    start: i64,
    end: i64,
    mut f: impl FnMut(i64, u64, u8),
) -> Result<(), DecodeError> {
    if count == 0 {
        return Ok(());
    }
    let mut r = BitReader::new(stream);
    let mut ts = r.read_long(64) as i64;
    let mut xor = ValueState::new(r.read_long(64));
    let mut delta = 0i64;
    let mut done = 0u32;
    let mut first = true;
    let mut stopped = false;
    'runs: for run in runs {
        let n = run.len.min(count - done);
        for _ in 0..n {
            if first {
                first = false;
            } else {
                delta = delta.wrapping_add(timestamps::read_dod(&mut r));
                let next = ts.wrapping_add(delta);
                if next <= ts {
                    return Err(DecodeError("timestamps not strictly increasing"));
                }
                ts = next;
                if xor.read(&mut r).is_none() {
                    return Err(DecodeError("bad value window"));
                }
                // Past the end the reader yields zeros ("same delta, same
                // value"): stop at once rather than run to a huge count.
                if r.overran() {
                    return Err(DecodeError("stream shorter than its point count"));
                }
            }
            if ts >= end {
                stopped = true;
                break 'runs;
            }
            if ts >= start {
                f(ts, xor.prev, run.quality);
            }
        }
        done += n;
        if done == count {
            break;
        }
    }
    if r.overran() {
        return Err(DecodeError("stream shorter than its point count"));
    }
    if !stopped && done != count {
        return Err(DecodeError("quality runs do not cover the point count"));
    }
    Ok(())
}

/// Payload bytes of a stream: run count (u16), runs, bit stream.
fn payload_len(runs: &Runs, bits: &[u8]) -> usize {
    2 + quality::RUN_BYTES * runs.len() + bits.len()
}

/// Heap bytes held by a stream's runs (when spilled) and bits.
fn heap_bytes(runs: &Runs, bits: &Vec<u8>) -> usize {
    bits.capacity()
        + if runs.spilled() {
            runs.capacity() * std::mem::size_of::<QRun>()
        } else {
            0
        }
}

#[cfg(test)]
mod tests;
