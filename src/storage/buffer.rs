//! Per-tag in-memory buffers: points accepted but not yet in blocks.
//!
//! A tag's buffer is an append-only vector while timestamps increase
//! (the common case); an out-of-order or repeated timestamp marks it
//! unsorted, and the next read or flush sorts it stably and keeps the last
//! write of each timestamp ("later write wins"). Memory is accounted by
//! vector capacity so the shard's budget tracks what is really held.

use std::time::Instant;

use ahash::AHashMap;

/// One buffered sample (the tag is the map key).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Timestamp, µs.
    pub ts: i64,
    /// Value.
    pub value: f64,
    /// Quality.
    pub quality: u8,
}

/// Bytes charged per buffered sample slot.
pub const SAMPLE_BYTES: usize = std::mem::size_of::<Sample>();
/// Bytes charged per tag buffer besides its samples (map entry, header).
pub const TAG_OVERHEAD: usize = 64;

/// The buffer of one tag.
pub struct TagBuffer {
    samples: Vec<Sample>,
    /// True while timestamps are strictly increasing.
    sorted: bool,
    /// Lowest WAL sequence holding any of these samples.
    pub min_seq: u64,
    /// When the first sample arrived.
    pub since: Instant,
    /// Samples inserted (what the shard's point count was charged).
    inserted: usize,
}

impl TagBuffer {
    fn new(min_seq: u64, since: Instant) -> Self {
        TagBuffer {
            samples: Vec::new(),
            sorted: true,
            min_seq,
            since,
            inserted: 0,
        }
    }

    /// Number of samples (before de-duplication).
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Bytes charged for this buffer.
    pub fn bytes(&self) -> usize {
        self.samples.capacity() * SAMPLE_BYTES + TAG_OVERHEAD
    }

    fn push(&mut self, s: Sample) {
        if let Some(last) = self.samples.last() {
            if s.ts <= last.ts {
                self.sorted = false;
            }
        }
        self.samples.push(s);
        self.inserted += 1;
    }

    /// Sorts by timestamp and keeps the last write of each timestamp.
    pub fn normalize(&mut self) {
        if self.sorted {
            return;
        }
        self.samples.sort_by_key(|s| s.ts);
        let v = &mut self.samples;
        let mut w = 0;
        for r in 0..v.len() {
            if w > 0 && v[w - 1].ts == v[r].ts {
                v[w - 1] = v[r];
            } else {
                v[w] = v[r];
                w += 1;
            }
        }
        v.truncate(w);
        self.sorted = true;
    }

    /// Normalized samples.
    pub fn samples(&mut self) -> &[Sample] {
        self.normalize();
        &self.samples
    }

    /// Normalized samples with `start <= ts < end`.
    pub fn range(&mut self, start: i64, end: i64) -> &[Sample] {
        self.normalize();
        let a = self.samples.partition_point(|s| s.ts < start);
        let b = self.samples.partition_point(|s| s.ts < end);
        &self.samples[a..b.max(a)]
    }

    /// The sample with the greatest timestamp.
    pub fn last(&mut self) -> Option<Sample> {
        self.normalize();
        self.samples.last().copied()
    }
}

/// All tag buffers of a shard: a small map from tag to slot (8-byte
/// entries, cache resident for ~100K tags) and the buffers in a dense vector,
/// allocated in first-seen order so round-robin batches walk it sequentially.
#[derive(Default)]
pub struct Buffers {
    index: AHashMap<u32, u32>,
    slots: Vec<(u32, TagBuffer)>,
    free: Vec<u32>,
    /// Slot of each point of the batch being inserted (reused).
    scratch: Vec<u32>,
    points: usize,
    bytes: usize,
}

impl Buffers {
    /// Adds a sample to `tag`'s buffer, written in WAL record `seq`.
    /// Returns the buffer's length afterwards.
    pub fn insert(&mut self, tag: u32, s: Sample, seq: u64, now: Instant) -> usize {
        let slot = match self.index.get(&tag) {
            Some(&slot) => slot as usize,
            None => self.new_slot(tag, seq, now),
        };
        let buf = &mut self.slots[slot].1;
        let cap = buf.samples.capacity();
        buf.push(s);
        self.bytes += (buf.samples.capacity() - cap) * SAMPLE_BYTES;
        self.points += 1;
        buf.len()
    }

    /// Inserts a batch written in WAL records starting at `seq`; pushes onto
    /// `full` every tag whose buffer reaches `full_at` samples.
    ///
    /// With many tags every point misses the cache twice (its buffer, then
    /// the buffer's vector tail). Resolving all slots first lets those
    /// independent lookups overlap, and prefetching buffers and tails a few
    /// points ahead hides most of the rest.
    pub fn insert_batch(
        &mut self,
        points: &[crate::Point],
        seq: u64,
        now: Instant,
        full_at: usize,
        full: &mut Vec<u32>,
    ) {
        const AHEAD: usize = 8;
        let mut slots = std::mem::take(&mut self.scratch);
        slots.clear();
        for p in points {
            let slot = match self.index.get(&p.tag) {
                Some(&slot) => slot,
                None => self.new_slot(p.tag, seq, now) as u32,
            };
            slots.push(slot);
        }
        for (i, p) in points.iter().enumerate() {
            if let Some(&s) = slots.get(i + 2 * AHEAD) {
                prefetch(&self.slots[s as usize] as *const _ as *const u8);
            }
            if let Some(&s) = slots.get(i + AHEAD) {
                let v = &self.slots[s as usize].1.samples;
                prefetch(v.as_ptr().wrapping_add(v.len()) as *const u8);
            }
            let buf = &mut self.slots[slots[i] as usize].1;
            let cap = buf.samples.capacity();
            buf.push(Sample {
                ts: p.ts,
                value: p.value,
                quality: p.quality,
            });
            self.bytes += (buf.samples.capacity() - cap) * SAMPLE_BYTES;
            if buf.len() == full_at {
                full.push(p.tag);
            }
        }
        self.points += points.len();
        self.scratch = slots;
    }

    #[cold]
    fn new_slot(&mut self, tag: u32, seq: u64, now: Instant) -> usize {
        self.bytes += TAG_OVERHEAD;
        let buf = TagBuffer::new(seq, now);
        let slot = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = (tag, buf);
                i
            }
            None => {
                self.slots.push((tag, buf));
                (self.slots.len() - 1) as u32
            }
        };
        self.index.insert(tag, slot);
        slot as usize
    }

    /// The buffer of `tag`, if any.
    pub fn get_mut(&mut self, tag: u32) -> Option<&mut TagBuffer> {
        let slot = *self.index.get(&tag)? as usize;
        Some(&mut self.slots[slot].1)
    }

    /// Removes and returns `tag`'s buffer (for a flush).
    pub fn take(&mut self, tag: u32) -> Option<TagBuffer> {
        let slot = self.index.remove(&tag)?;
        let empty = TagBuffer::new(0, self.slots[slot as usize].1.since);
        let b = std::mem::replace(&mut self.slots[slot as usize].1, empty);
        self.free.push(slot);
        self.points -= b.inserted;
        self.bytes -= b.bytes();
        Some(b)
    }

    /// Buffered samples.
    pub fn points(&self) -> usize {
        self.points
    }

    /// Bytes charged.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Lowest WAL sequence still only in memory.
    pub fn min_seq(&self) -> Option<u64> {
        self.iter().map(|(_, b)| b.min_seq).min()
    }

    /// Iterates `(tag, buffer)`.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &TagBuffer)> {
        self.index.values().map(|&slot| {
            let (tag, b) = &self.slots[slot as usize];
            (*tag, b)
        })
    }
}

/// Hints the CPU to load the cache line at `p` (never faults).
#[inline(always)]
fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch is a hint; it never dereferences or faults, whatever the address.
    unsafe {
        std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(ts: i64, v: f64) -> Sample {
        Sample {
            ts,
            value: v,
            quality: 192,
        }
    }

    #[test]
    fn later_write_wins_and_order_is_restored() {
        let now = Instant::now();
        let mut b = Buffers::default();
        for (ts, v) in [(5, 1.0), (3, 2.0), (5, 3.0), (1, 4.0), (3, 5.0)] {
            b.insert(7, s(ts, v), 1, now);
        }
        let buf = b.get_mut(7).unwrap();
        assert_eq!(buf.samples(), &[s(1, 4.0), s(3, 5.0), s(5, 3.0)]);
        assert_eq!(buf.range(2, 5), &[s(3, 5.0)]);
        assert_eq!(buf.last(), Some(s(5, 3.0)));
        let taken = b.take(7).unwrap();
        assert_eq!(taken.len(), 3);
        assert_eq!((b.points(), b.bytes()), (0, 0));
    }
}
