//! WAL replay's insert: the points of one replayed segment go into the tag
//! buffers grouped by tag instead of record by record.
//!
//! Record by record, with 100K tags every point lands on another buffer
//! (its slot and stream tail both miss the cache) and every buffer grows an
//! eighth at a time, each growth a reallocation into fresh pages the kernel
//! zeroes. Grouped, a tag's points of the segment are appended back to back
//! into a stream whose room is reserved once, and the buffers are visited
//! in slot order. A segment is grouped with a counting sort by slot: one
//! pass counts each slot's points (making the slots of new tags, in record
//! order, as inserting would), one places each point's offset and record
//! in its slot's range, and one appends each range in order.
//!
//! What the buffers end up holding is exactly what inserting the records in
//! order would give: the same points, in write order within each tag, each
//! with the sequence number of its record. Owns only reused scratch
//! arrays; never does I/O and never reads the segment beyond the records it
//! is given.

use std::time::Instant;

use crate::storage::buffer::{prefetch, Buffers};
use crate::storage::codec::Sample;
use crate::storage::wal::format::{self, POINT_BYTES};

/// How many points ahead of the one appended the next point's bytes are
/// prefetched (a tag's points lie a few records apart in the segment).
const AHEAD: usize = 16;

/// Scratch for grouping segments by tag, reused from segment to segment.
#[derive(Default)]
pub struct Regroup {
    /// Per slot: its points in the segment, then where its range ends.
    ends: Vec<u32>,
    /// Offset of each point in the segment, grouped by slot. (A point's
    /// record is found from its offset only when its buffer needs it.)
    order: Vec<u32>,
}

impl Regroup {
    /// True if a segment of `len` bytes can be grouped (its offsets fit the
    /// scratch's 32 bits).
    pub fn fits(len: usize) -> bool {
        len <= u32::MAX as usize
    }

    /// Inserts the points of `records` (`(seq, payload offset, payload
    /// length)` in `data`, in sequence order, as
    /// [`crate::storage::wal::replay::SegmentRecords`] lists them) into
    /// `bufs`; pushes onto `full` every tag whose buffer filled a block's
    /// worth. Returns the points inserted. `data` must pass [`Self::fits`].
    pub fn insert(
        &mut self,
        bufs: &mut Buffers,
        data: &[u8],
        records: &[(u64, usize, usize)],
        now: Instant,
        full: &mut Vec<u32>,
    ) -> usize {
        let total = self.group(bufs, data, records, now);
        self.append(bufs, data, records, full);
        total
    }

    /// Groups the points of `records` by the slot of their tag, making the
    /// slots of tags not buffered yet. Returns the points grouped.
    fn group(
        &mut self,
        bufs: &mut Buffers,
        data: &[u8],
        records: &[(u64, usize, usize)],
        now: Instant,
    ) -> usize {
        debug_assert!(Self::fits(data.len()));
        // Count each slot's points, making the slots of tags first seen.
        self.ends.clear();
        let mut total = 0usize;
        for &(seq, off, len) in records {
            for p in (off..off + len).step_by(POINT_BYTES) {
                let slot = bufs.slot_or_new(tag_at(data, p), seq, now) as usize;
                if slot >= self.ends.len() {
                    self.ends.resize(bufs.slot_count().max(slot + 1), 0);
                }
                self.ends[slot] += 1;
            }
            total += len / POINT_BYTES;
        }
        // Each slot's range starts where the previous one ends.
        let mut at = 0u32;
        for e in self.ends.iter_mut() {
            let n = *e;
            *e = at;
            at += n;
        }
        // Place the points; afterwards `ends[slot]` is where its range ends.
        self.order.clear();
        self.order.resize(total, 0);
        for &(_, off, len) in records {
            for p in (off..off + len).step_by(POINT_BYTES) {
                let slot = bufs.slot(tag_at(data, p)).unwrap_or(0) as usize;
                let e = &mut self.ends[slot];
                self.order[*e as usize] = p as u32;
                *e += 1;
            }
        }
        total
    }

    /// Appends each slot's grouped points to its buffer, slot by slot.
    /// The buffers must not have lost a slot since [`Self::group`].
    fn append(
        &mut self,
        bufs: &mut Buffers,
        data: &[u8],
        records: &[(u64, usize, usize)],
        full: &mut Vec<u32>,
    ) {
        let order = &self.order;
        // The sequence of the record holding the point at `off`.
        let seq = |off: u32| {
            let r = records.partition_point(|&(_, o, _)| o <= off as usize);
            records[r.saturating_sub(1)].0
        };
        let mut start = 0;
        for (slot, &end) in self.ends.iter().enumerate() {
            let end = end as usize;
            if end == start {
                continue;
            }
            let run = (start..end).map(|i| {
                if let Some(&ahead) = order.get(i + AHEAD) {
                    prefetch(data.as_ptr().wrapping_add(ahead as usize));
                }
                let off = order[i];
                let p = format::point(&data[off as usize..]);
                let sample = Sample {
                    ts: p.ts,
                    value: p.value,
                    quality: p.quality,
                };
                (sample, off)
            });
            bufs.push_run(slot as u32, end - start, run, seq, full);
            start = end;
        }
    }
}

/// The tag of the point encoded at `p`.
#[inline(always)]
fn tag_at(data: &[u8], p: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&data[p..p + 4]);
    u32::from_le_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::wal::format::{encode_record, seal_record, RECORD_HEADER};
    use crate::Point;

    /// Records of `batches` encoded one after another (as in a segment),
    /// with their `(seq, payload offset, payload length)`.
    fn segment(batches: &[Vec<Point>], first_seq: u64) -> (Vec<u8>, Vec<(u64, usize, usize)>) {
        let mut data = Vec::new();
        let mut records = Vec::new();
        for (i, b) in batches.iter().enumerate() {
            let mut rec = Vec::new();
            let seq = first_seq + i as u64;
            encode_record(&mut rec, seq, b);
            seal_record(&mut rec, 1);
            records.push((seq, data.len() + RECORD_HEADER, b.len() * POINT_BYTES));
            data.extend_from_slice(&rec);
        }
        (data, records)
    }

    /// Inserting grouped gives what inserting record by record gives: the
    /// same points per tag (out-of-order and repeated timestamps, later
    /// write winning), sequence bounds and full tags, over two segments.
    #[test]
    fn grouped_insert_matches_record_order() {
        let now = Instant::now();
        let mut x = 7u64;
        let mut rand = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut segments = Vec::new();
        let mut seq = 100;
        for s in 0..2 {
            let mut batches = Vec::new();
            for b in 0..60 {
                let batch: Vec<Point> = (0..500)
                    .map(|i| {
                        let tag = (rand() % 10) as u32 * 3 + 1_000 * (b % 2);
                        let r = rand();
                        // Mostly increasing, sometimes behind or repeated.
                        let ts = (s * 60 + b) as i64 * 1_000 + i as i64
                            - if r % 10 == 0 { (r % 5_000) as i64 } else { 0 };
                        let value = if r % 3 == 0 {
                            f64::from_bits(rand())
                        } else {
                            (r % 1000) as f64 * 0.1
                        };
                        Point::new(tag, ts, value, if r % 17 == 0 { 0 } else { 192 })
                    })
                    .collect();
                batches.push(batch);
            }
            segments.push(segment(&batches, seq));
            seq += batches.len() as u64;
        }
        let (mut one, mut grouped) = (Buffers::default(), Buffers::default());
        let (mut full_one, mut full_grouped) = (Vec::new(), Vec::new());
        let mut regroup = Regroup::default();
        let mut inserted = 0;
        for (data, records) in &segments {
            for &(seq, off, len) in records {
                let pts: Vec<Point> = format::points(&data[off..off + len]).collect();
                one.insert_batch(&pts, seq, now, &mut full_one);
            }
            inserted += regroup.insert(&mut grouped, data, records, now, &mut full_grouped);
        }
        assert_eq!(inserted, 2 * 60 * 500);
        assert_eq!(one.points(), grouped.points());
        full_one.sort_unstable();
        full_one.dedup();
        full_grouped.sort_unstable();
        full_grouped.dedup();
        assert!(!full_one.is_empty(), "some tag should fill a block");
        assert_eq!(full_one, full_grouped);
        let mut tags: Vec<u32> = one.iter().map(|(t, _)| t).collect();
        tags.sort_unstable();
        let mut tags_grouped: Vec<u32> = grouped.iter().map(|(t, _)| t).collect();
        tags_grouped.sort_unstable();
        assert_eq!(tags, tags_grouped);
        for tag in tags {
            let (a, b) = (one.get_mut(tag).unwrap(), grouped.get_mut(tag).unwrap());
            assert_eq!((a.min_seq, a.max_seq), (b.min_seq, b.max_seq), "tag {tag}");
            let (mut pa, mut pb) = (Vec::new(), Vec::new());
            a.range(tag, i64::MIN, i64::MAX, &mut pa);
            b.range(tag, i64::MIN, i64::MAX, &mut pb);
            let bits = |v: &[Point]| -> Vec<(i64, u64, u8)> {
                v.iter()
                    .map(|p| (p.ts, p.value.to_bits(), p.quality))
                    .collect()
            };
            assert_eq!(bits(&pa), bits(&pb), "tag {tag}");
        }
    }
}
