//! Per-tag in-memory buffers: points accepted but not yet in blocks.
//!
//! Points are appended already compressed ([`crate::storage::codec`]), like
//! a Prometheus head chunk: a tag's buffer is a head [`Encoder`] taking
//! points with increasing timestamps, plus (rarely) full segments sealed
//! when the head reached a block's payload capacity and a small uncompressed
//! side buffer for out-of-order or repeated timestamps. A point goes to the
//! side buffer when its timestamp is not above the stream's last, so any
//! side-buffer point is a later write than a stream point with the same
//! timestamp: reads and flushes merge the two with the side buffer winning
//! ties, and among side-buffer points the last write wins ("later write
//! wins"). A side buffer that grows past a quarter of the stream is merged
//! into it by re-encoding. Memory is accounted by capacity (stream bytes,
//! side-buffer slots, segments, plus a fixed per-tag overhead), so the
//! shard's budget tracks what is really held.

use std::time::Instant;

use std::collections::BTreeSet;

use ahash::AHashMap;

use crate::storage::block::PAYLOAD_CAPACITY;
use crate::storage::codec::{Encoder, Sample, Segment, MAX_POINT_BYTES};
use crate::storage::paged::Paged;
use crate::Point;

/// Bytes charged per out-of-order sample slot.
pub const SAMPLE_BYTES: usize = std::mem::size_of::<Sample>();
/// Bytes charged per tag buffer besides its points: the slot (tag and
/// buffer structure) plus the index entry (a dense-table entry or a hash map
/// entry) with its share of free room.
pub const TAG_OVERHEAD: usize = std::mem::size_of::<(u32, TagBuffer)>() + 16;

/// Points a head holds before [`TagBuffer::reserve`] trusts its bytes per
/// point.
const RESERVE_AFTER: usize = 8;

/// Bytes of one slot of [`Buffers`].
const SLOT_BYTES: usize = std::mem::size_of::<(u32, TagBuffer)>();

/// Rarely used parts of a buffer, boxed to keep the common one small.
#[derive(Default)]
struct Cold {
    /// Full segments, oldest first; all before the head in time.
    sealed: Vec<Segment>,
    /// Heap bytes of `sealed`.
    sealed_bytes: usize,
    /// Out-of-order and repeated-timestamp samples in write order (sorted
    /// and de-duplicated when `ooo_sorted`).
    ooo: Vec<Sample>,
    ooo_sorted: bool,
}

impl Cold {
    fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Cold>()
            + self.sealed_bytes
            + self.sealed.capacity() * std::mem::size_of::<Segment>()
            + self.ooo.capacity() * SAMPLE_BYTES
    }

    /// Sorts the side buffer by timestamp keeping the last write of each.
    fn normalize(&mut self) {
        if self.ooo_sorted {
            return;
        }
        self.ooo.sort_by_key(|s| s.ts);
        let v = &mut self.ooo;
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
        self.ooo_sorted = true;
    }
}

/// The buffer of one tag.
pub struct TagBuffer {
    head: Encoder,
    cold: Option<Box<Cold>>,
    /// Points in the stream (sealed segments and head).
    streamed: u32,
    /// Greatest timestamp in the stream.
    stream_last: i64,
    /// Lowest WAL sequence holding any of these samples.
    pub min_seq: u64,
    /// A WAL sequence no greater than that of any point in the head (the
    /// buffer's `min_seq` once its sealed segments are flushed), and no
    /// less than that of any point in the sealed segments.
    head_seq: u64,
    /// Highest WAL sequence holding any of these samples: the write order
    /// of the segments they become.
    pub max_seq: u64,
    /// When the first sample arrived.
    pub since: Instant,
    /// Samples inserted (what the shard's point count was charged).
    inserted: usize,
}

impl TagBuffer {
    fn new(min_seq: u64, since: Instant) -> Self {
        TagBuffer {
            head: Encoder::default(),
            cold: None,
            streamed: 0,
            stream_last: i64::MIN,
            min_seq,
            head_seq: min_seq,
            max_seq: min_seq,
            since,
            inserted: 0,
        }
    }

    /// Number of samples (before de-duplication).
    pub fn len(&self) -> usize {
        self.streamed as usize + self.cold.as_ref().map_or(0, |c| c.ooo.len())
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes held (without the fixed per-tag overhead).
    #[inline(always)]
    fn heap_bytes(&self) -> usize {
        self.head.heap_bytes() + self.cold.as_ref().map_or(0, |c| c.heap_bytes())
    }

    /// Bytes charged for this buffer.
    pub fn bytes(&self) -> usize {
        self.heap_bytes() + TAG_OVERHEAD
    }

    /// Appends `s`, written in WAL record `seq` or later. Returns true if a
    /// segment was sealed (a block's worth).
    #[inline(always)]
    fn push(&mut self, s: Sample, seq: u64) -> bool {
        self.max_seq = self.max_seq.max(seq);
        self.append(s, || seq)
    }

    /// [`Self::push`] without raising `max_seq` (the caller does): `seq`
    /// gives the sample's WAL record, asked only if the head is sealed.
    #[inline(always)]
    fn append(&mut self, s: Sample, seq: impl FnOnce() -> u64) -> bool {
        self.inserted += 1;
        if self.streamed > 0 && s.ts <= self.stream_last {
            self.push_ooo(s);
            return false;
        }
        let sealed = self.head.payload_len() + MAX_POINT_BYTES > PAYLOAD_CAPACITY;
        if sealed {
            self.seal();
            self.head_seq = seq();
        }
        self.head.push(s.ts, s.value.to_bits(), s.quality);
        self.streamed += 1;
        self.stream_last = s.ts;
        sealed
    }

    /// Makes room in the head for about `n` more points at the head's own
    /// bytes per point so far (plus a sixteenth), up to what a block holds:
    /// one reallocation for a tag's points of a replayed WAL segment
    /// instead of one every eighth of its length. Needs a few points in the
    /// head to estimate from; does nothing before.
    fn reserve(&mut self, n: usize) {
        let count = self.head.count() as usize;
        if count < RESERVE_AFTER {
            return;
        }
        let per = self.head.stream_len().div_ceil(count);
        let room = PAYLOAD_CAPACITY.saturating_sub(self.head.payload_len());
        self.head.reserve((n * per + n * per / 16).min(room));
    }

    #[cold]
    fn seal(&mut self) {
        let seg = std::mem::take(&mut self.head).finish();
        let c = self.cold.get_or_insert_default();
        c.sealed_bytes += seg.heap_bytes();
        c.sealed.push(seg);
    }

    #[cold]
    fn push_ooo(&mut self, s: Sample) {
        let c = self.cold.get_or_insert_default();
        c.ooo.push(s);
        c.ooo_sorted = false;
        if c.ooo.len() >= 64 + self.streamed as usize / 4 {
            self.compact();
        }
    }

    /// Every sample, sorted, later write winning.
    fn merged(&mut self) -> Vec<Sample> {
        let mut stream = Vec::with_capacity(self.streamed as usize);
        self.stream_range(i64::MIN, i64::MAX, &mut |ts, v, q| {
            stream.push(Sample {
                ts,
                value: f64::from_bits(v),
                quality: q,
            })
        });
        let Some(c) = self.cold.as_mut() else {
            return stream;
        };
        c.normalize();
        merge_winning(&stream, &c.ooo, |s| s.ts)
    }

    /// Re-encodes stream and side buffer into one stream.
    fn compact(&mut self) {
        let all = self.merged();
        let (min_seq, max_seq, since, inserted) =
            (self.min_seq, self.max_seq, self.since, self.inserted);
        *self = TagBuffer::new(min_seq, since);
        for s in all {
            self.push(s, min_seq);
        }
        self.inserted = inserted;
        self.max_seq = max_seq;
    }

    /// Calls `f` for stream points in `[start, end)`, in order.
    fn stream_range(&self, start: i64, end: i64, f: &mut dyn FnMut(i64, u64, u8)) {
        if let Some(c) = &self.cold {
            for seg in &c.sealed {
                let r = seg.decode(start, end, &mut *f);
                debug_assert!(r.is_ok(), "{r:?}");
            }
        }
        let (lo, hi) = self.head.span();
        if self.head.count() > 0 && lo < end && hi >= start {
            let r = self.head.decode(start, end, f);
            debug_assert!(r.is_ok(), "{r:?}");
        }
    }

    /// Appends the points in `[start, end)` to `out`: sorted, unique, later
    /// write winning.
    pub fn range(&mut self, tag: u32, start: i64, end: i64, out: &mut Vec<Point>) {
        let ooo_empty = self.cold.as_ref().is_none_or(|c| c.ooo.is_empty());
        if ooo_empty {
            self.stream_range(start, end, &mut |ts, v, q| {
                out.push(Point::new(tag, ts, f64::from_bits(v), q))
            });
            return;
        }
        let mut stream = Vec::new();
        self.stream_range(start, end, &mut |ts, v, q| {
            stream.push(Point::new(tag, ts, f64::from_bits(v), q))
        });
        let Some(c) = self.cold.as_mut() else {
            return;
        };
        c.normalize();
        let a = c.ooo.partition_point(|s| s.ts < start);
        let b = c.ooo.partition_point(|s| s.ts < end).max(a);
        let side: Vec<Point> = c.ooo[a..b]
            .iter()
            .map(|s| Point::new(tag, s.ts, s.value, s.quality))
            .collect();
        out.extend(merge_winning(&stream, &side, |p| p.ts));
    }

    /// The sample with the greatest timestamp.
    pub fn last(&mut self) -> Option<Sample> {
        let stream = match self.head.last() {
            Some(s) => Some(s),
            None => self
                .cold
                .as_ref()
                .and_then(|c| c.sealed.last())
                .map(|s| s.last),
        };
        let side = self.cold.as_mut().and_then(|c| {
            c.normalize();
            c.ooo.last().copied()
        });
        match (stream, side) {
            (Some(a), Some(b)) => Some(if b.ts >= a.ts { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// A buffer holding `segs` (in time order, disjoint: a snapshot's),
    /// written in WAL records `min_seq..=max_seq`. Later points append to
    /// a new head behind them.
    fn restored(segs: Vec<Segment>, min_seq: u64, max_seq: u64, since: Instant) -> Self {
        let mut b = TagBuffer::new(min_seq, since);
        b.max_seq = max_seq;
        b.head_seq = max_seq;
        b.streamed = segs.iter().map(|s| s.count).sum();
        b.inserted = b.streamed as usize;
        b.stream_last = segs.last().map_or(i64::MIN, |s| s.last.ts);
        if !segs.is_empty() {
            let c = b.cold.get_or_insert_default();
            c.sealed_bytes = segs.iter().map(|s| s.heap_bytes()).sum();
            c.sealed = segs;
        }
        b
    }

    /// Turns the buffer into block-sized segments, in time order. Without
    /// out-of-order points the stream's bytes are reused as they are.
    pub fn freeze(mut self) -> Vec<Segment> {
        let has_ooo = self.cold.as_ref().is_some_and(|c| !c.ooo.is_empty());
        if has_ooo {
            self.compact();
        }
        let mut segs = self.cold.take().map(|c| c.sealed).unwrap_or_default();
        if self.head.count() > 0 {
            segs.push(self.head.finish());
        }
        segs
    }
}

/// A buffer being flushed: its block-sized segments, still served to
/// queries until their blocks are committed.
pub struct Frozen {
    /// Segments in time order (disjoint, increasing).
    pub segs: Vec<Segment>,
}

impl Frozen {
    /// Points held.
    pub fn len(&self) -> usize {
        self.segs.iter().map(|s| s.count as usize).sum()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.segs.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.segs
            .iter()
            .map(|s| s.heap_bytes() + std::mem::size_of::<Segment>())
            .sum()
    }

    /// Appends the points in `[start, end)` to `out`, sorted.
    pub fn range(&self, tag: u32, start: i64, end: i64, out: &mut Vec<Point>) {
        for seg in &self.segs {
            let r = seg.decode(start, end, |ts, v, q| {
                out.push(Point::new(tag, ts, f64::from_bits(v), q))
            });
            debug_assert!(r.is_ok(), "{r:?}");
        }
    }

    /// The sample with the greatest timestamp.
    pub fn last(&self) -> Option<Sample> {
        self.segs.last().map(|s| s.last)
    }
}

/// Merges two sorted, unique runs; `b` wins on equal keys.
fn merge_winning<T: Copy>(a: &[T], b: &[T], key: impl Fn(&T) -> i64) -> Vec<T> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        let (ka, kb) = (key(&a[i]), key(&b[j]));
        if ka < kb {
            out.push(a[i]);
            i += 1;
        } else {
            if ka == kb {
                i += 1;
            }
            out.push(b[j]);
            j += 1;
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// Tag → slot. Tag ids are mostly small dense integers (the catalog hands
/// them out in order, clients count them up), so an id below `dense.len()`
/// is one 4-byte entry read directly, and a batch of neighbouring ids reads
/// neighbouring entries; a hash map (two dependent cache misses per lookup
/// at 100K tags) holds only ids too far above the others. The dense table
/// only grows to cover an id below `4 × (tags held) + 64Ki`, so it costs
/// at most 16 bytes a tag held when it grew (what [`TAG_OVERHEAD`] charges
/// for the index) plus 256 KiB; like the hash map, it does not shrink when
/// flushes take tags out, and its bytes are charged through
/// [`TAG_OVERHEAD`], not counted exactly.
#[derive(Default)]
struct TagIndex {
    /// `slot + 1` by tag id, 0 for none.
    dense: Vec<u32>,
    /// Ids at or above `dense.len()`.
    sparse: AHashMap<u32, u32>,
    /// Tags held.
    len: usize,
}

impl TagIndex {
    #[inline(always)]
    fn get(&self, tag: u32) -> Option<u32> {
        match self.dense.get(tag as usize) {
            Some(&s) => s.checked_sub(1),
            None => self.sparse.get(&tag).copied(),
        }
    }

    /// Adds a tag that is not held.
    fn insert(&mut self, tag: u32, slot: u32) {
        let t = tag as usize;
        let limit = 4 * (self.len + 1) + (1 << 16);
        if t >= self.dense.len() && t < limit {
            let n = (t + 1).max(2 * self.dense.len()).min(limit);
            self.dense.resize(n, 0);
            let moved: Vec<u32> = self
                .sparse
                .keys()
                .copied()
                .filter(|&k| (k as usize) < n)
                .collect();
            for k in moved {
                if let Some(s) = self.sparse.remove(&k) {
                    self.dense[k as usize] = s + 1;
                }
            }
        }
        match self.dense.get_mut(t) {
            Some(e) => *e = slot + 1,
            None => {
                self.sparse.insert(tag, slot);
            }
        }
        self.len += 1;
    }

    fn remove(&mut self, tag: u32) -> Option<u32> {
        let slot = match self.dense.get_mut(tag as usize) {
            Some(e) => std::mem::take(e).checked_sub(1),
            None => self.sparse.remove(&tag),
        };
        if slot.is_some() {
            self.len -= 1;
        }
        slot
    }

    /// `(tag, slot)` of every tag held, in no particular order.
    fn iter(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        let dense = self
            .dense
            .iter()
            .enumerate()
            .filter(|(_, &s)| s != 0)
            .map(|(t, &s)| (t as u32, s - 1));
        dense.chain(self.sparse.iter().map(|(&t, &s)| (t, s)))
    }
}

/// Tag buffers in one page of [`Buffers`]' slots (a power of two, so a
/// slot's page and place are a shift and a mask).
const SLOT_PAGE: usize = 4096;

/// All tag buffers of a shard: an index from tag to slot (see [`TagIndex`])
/// and the buffers in a dense vector, allocated in first-seen order so
/// round-robin batches walk it sequentially.
#[derive(Default)]
pub struct Buffers {
    index: TagIndex,
    /// Grown a page at a time: a `Vec` of 100,000 buffers copied itself
    /// whole when new tags arrived (a 15–32 ms stall, once per doubling).
    slots: Paged<(u32, TagBuffer), SLOT_PAGE>,
    free: Vec<u32>,
    /// Every buffered tag by `(min_seq, tag)`: the tags pinning the oldest
    /// WAL records first, without scanning every buffer.
    by_seq: BTreeSet<(u64, u32)>,
    /// Where the next [`Buffers::scan_aged`] continues in `slots`.
    age_cursor: usize,
    /// Slot of each point of the batch being inserted (reused).
    scratch: Vec<u32>,
    points: usize,
    bytes: usize,
}

impl Buffers {
    /// Adds a sample to `tag`'s buffer, written in WAL record `seq`.
    /// Returns the buffer's length afterwards.
    pub fn insert(&mut self, tag: u32, s: Sample, seq: u64, now: Instant) -> usize {
        let slot = match self.index.get(tag) {
            Some(slot) => slot as usize,
            None => self.new_slot(tag, seq, now),
        };
        let buf = &mut self.slots[slot].1;
        let before = buf.heap_bytes();
        buf.push(s, seq);
        self.bytes = self.bytes + buf.heap_bytes() - before;
        self.points += 1;
        buf.len()
    }

    /// Inserts a batch written in WAL records starting at `seq`; pushes onto
    /// `full` every tag whose buffer filled a block's worth.
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
        full: &mut Vec<u32>,
    ) {
        const AHEAD: usize = 8;
        let mut slots = std::mem::take(&mut self.scratch);
        slots.clear();
        for p in points {
            let slot = match self.index.get(p.tag) {
                Some(slot) => slot,
                None => self.new_slot(p.tag, seq, now) as u32,
            };
            slots.push(slot);
        }
        for (i, p) in points.iter().enumerate() {
            if let Some(&s) = slots.get(i + 2 * AHEAD) {
                // A slot spans several cache lines and a push touches most.
                let p = &self.slots[s as usize] as *const _ as *const u8;
                for off in (0..SLOT_BYTES).step_by(64) {
                    prefetch(p.wrapping_add(off));
                }
            }
            if let Some(&s) = slots.get(i + AHEAD) {
                prefetch(self.slots[s as usize].1.head.tail_ptr());
            }
            let buf = &mut self.slots[slots[i] as usize].1;
            let before = buf.heap_bytes();
            let sealed = buf.push(
                Sample {
                    ts: p.ts,
                    value: p.value,
                    quality: p.quality,
                },
                seq,
            );
            self.bytes = self.bytes + buf.heap_bytes() - before;
            if sealed {
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
        self.by_seq.insert((seq, tag));
        slot as usize
    }

    /// The slot of `tag`'s buffer, made (first written in WAL record
    /// `seq`) if it has none. Slots are allocated in first-seen order and
    /// stay below [`Self::slot_count`].
    #[inline(always)]
    pub(crate) fn slot_or_new(&mut self, tag: u32, seq: u64, now: Instant) -> u32 {
        match self.index.get(tag) {
            Some(slot) => slot,
            None => self.new_slot(tag, seq, now) as u32,
        }
    }

    /// The slot of `tag`'s buffer, if any.
    #[inline(always)]
    pub(crate) fn slot(&self, tag: u32) -> Option<u32> {
        self.index.get(tag)
    }

    /// One more than the highest slot in use.
    pub(crate) fn slot_count(&self) -> usize {
        self.slots.len()
    }

    /// Appends `n` samples of the tag in `slot` in write order (as
    /// [`Self::insert_batch`] would one at a time), each with a key that
    /// `seq` maps to the WAL record it was written in (keys and records
    /// increase together); room for them is reserved at once. Pushes the tag
    /// onto `full` if its buffer filled a block's worth.
    pub(crate) fn push_run(
        &mut self,
        slot: u32,
        n: usize,
        samples: impl Iterator<Item = (Sample, u32)>,
        seq: impl Fn(u32) -> u64,
        full: &mut Vec<u32>,
    ) {
        let (tag, buf) = &mut self.slots[slot as usize];
        let before = buf.heap_bytes();
        let mut sealed = false;
        let mut reserved = false;
        let mut last = None;
        for (i, (s, key)) in samples.enumerate() {
            if !reserved && buf.head.count() as usize >= RESERVE_AFTER {
                buf.reserve(n - i);
                reserved = true;
            }
            sealed |= buf.append(s, || seq(key));
            last = Some(key);
        }
        if let Some(key) = last {
            buf.max_seq = buf.max_seq.max(seq(key));
        }
        self.bytes = self.bytes + buf.heap_bytes() - before;
        self.points += n;
        if sealed {
            full.push(*tag);
        }
    }

    /// The buffer of `tag`, if any.
    pub fn get(&self, tag: u32) -> Option<&TagBuffer> {
        let slot = self.index.get(tag)? as usize;
        Some(&self.slots[slot].1)
    }

    /// The buffer of `tag`, if any, to read or change it.
    pub fn get_mut(&mut self, tag: u32) -> Option<&mut TagBuffer> {
        let slot = self.index.get(tag)? as usize;
        Some(&mut self.slots[slot].1)
    }

    /// Removes and returns `tag`'s buffer (for a flush).
    pub fn take(&mut self, tag: u32) -> Option<TagBuffer> {
        let slot = self.index.remove(tag)?;
        let empty = TagBuffer::new(0, self.slots[slot as usize].1.since);
        let b = std::mem::replace(&mut self.slots[slot as usize].1, empty);
        self.by_seq.remove(&(b.min_seq, tag));
        self.free.push(slot);
        self.points -= b.inserted;
        self.bytes -= b.bytes();
        Some(b)
    }

    /// Takes `tag`'s sealed segments (a block's worth each) for a flush and
    /// leaves its head buffered, so a full tag does not also write a block
    /// holding the few points that arrived since. `None` when there are none
    /// or the buffer holds out-of-order points (flush all of it then).
    /// Returns the segments, the lowest WAL sequence they may hold and the
    /// highest.
    pub fn take_sealed(&mut self, tag: u32) -> Option<(Vec<Segment>, u64, u64)> {
        let slot = self.index.get(tag)? as usize;
        let buf = &mut self.slots[slot].1;
        let c = buf.cold.as_ref()?;
        if c.sealed.is_empty() || !c.ooo.is_empty() || buf.head.count() == 0 {
            return None;
        }
        let before = buf.heap_bytes();
        let segs = buf.cold.take().map(|c| c.sealed).unwrap_or_default();
        let n: usize = segs.iter().map(|s| s.count as usize).sum();
        buf.streamed -= n as u32;
        let k = n.min(buf.inserted);
        buf.inserted -= k;
        self.points -= k;
        let min_seq = std::mem::replace(&mut buf.min_seq, buf.head_seq);
        self.by_seq.remove(&(min_seq, tag));
        self.by_seq.insert((buf.min_seq, tag));
        self.bytes = self.bytes + buf.heap_bytes() - before;
        Some((segs, min_seq, buf.head_seq))
    }

    /// Puts back `tag`'s buffer from a snapshot (the tag must have none).
    pub fn restore(
        &mut self,
        tag: u32,
        segs: Vec<Segment>,
        min_seq: u64,
        max_seq: u64,
        now: Instant,
    ) {
        if segs.is_empty() || self.index.get(tag).is_some() {
            return;
        }
        let slot = self.new_slot(tag, min_seq, now);
        let buf = TagBuffer::restored(segs, min_seq, max_seq, now);
        self.points += buf.inserted;
        self.bytes += buf.heap_bytes();
        self.slots[slot].1 = buf;
    }

    /// Empties every buffer into its segments (as a flush freezes them),
    /// for a snapshot: `(tag, min_seq, max_seq, segments)` by tag.
    pub fn drain_segments(&mut self) -> Vec<(u32, u64, u64, Vec<Segment>)> {
        let mut tags: Vec<u32> = self.index.iter().map(|(t, _)| t).collect();
        tags.sort_unstable();
        let mut out = Vec::with_capacity(tags.len());
        for tag in tags {
            if let Some(b) = self.take(tag) {
                let (min_seq, max_seq) = (b.min_seq, b.max_seq);
                let segs = b.freeze();
                if !segs.is_empty() {
                    out.push((tag, min_seq, max_seq, segs));
                }
            }
        }
        out
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
        self.by_seq.first().map(|&(seq, _)| seq)
    }

    /// The tags whose buffers hold WAL records below `seq`, lowest
    /// `min_seq` first: `(min_seq, tag)`.
    pub fn pinning_below(&self, seq: u64) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.by_seq.range(..(seq, 0)).copied()
    }

    /// Looks at up to `n` buffers after where the last call stopped
    /// (wrapping around), calling `f` with each non-empty one: a bounded
    /// slice of a sweep over every buffer, so no single call walks 100,000.
    pub fn scan_aged(&mut self, n: usize, mut f: impl FnMut(u32, &TagBuffer)) {
        let len = self.slots.len();
        if len == 0 {
            return;
        }
        let n = n.min(len);
        let mut at = self.age_cursor % len;
        for _ in 0..n {
            let (tag, b) = &self.slots[at];
            if !b.is_empty() && self.index.get(*tag) == Some(at as u32) {
                f(*tag, b);
            }
            at = (at + 1) % len;
        }
        self.age_cursor = at;
    }

    /// Iterates `(tag, buffer)`.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &TagBuffer)> {
        self.index.iter().map(|(_, slot)| {
            let (tag, b) = &self.slots[slot as usize];
            (*tag, b)
        })
    }
}

/// Hints the CPU to load the cache line at `p` (never faults).
#[inline(always)]
pub(crate) fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: prefetch is a hint; it never dereferences or faults, whatever the address.
    #[allow(unsafe_code)]
    unsafe {
        std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_T0);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests;
