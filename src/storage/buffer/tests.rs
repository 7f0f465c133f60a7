//! Buffer semantics: order, later write wins across stream and side buffer,
//! sealing, compaction and memory accounting.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;

fn s(ts: i64, v: f64) -> Sample {
    Sample {
        ts,
        value: v,
        quality: 192,
    }
}

fn all(b: &mut TagBuffer) -> Vec<Sample> {
    let mut out = Vec::new();
    b.range(1, i64::MIN, i64::MAX, &mut out);
    out.iter()
        .map(|p| Sample {
            ts: p.ts,
            value: p.value,
            quality: p.quality,
        })
        .collect()
}

#[test]
fn later_write_wins_and_order_is_restored() {
    let now = Instant::now();
    let mut b = Buffers::default();
    for (ts, v) in [(5, 1.0), (3, 2.0), (5, 3.0), (1, 4.0), (3, 5.0)] {
        b.insert(7, s(ts, v), 1, now);
    }
    let buf = b.get_mut(7).unwrap();
    assert_eq!(all(buf), [s(1, 4.0), s(3, 5.0), s(5, 3.0)]);
    let mut part = Vec::new();
    buf.range(7, 2, 5, &mut part);
    assert_eq!(part, [Point::new(7, 3, 5.0, 192)]);
    assert_eq!(buf.last(), Some(s(5, 3.0)));
    let taken = b.take(7).unwrap();
    assert_eq!(taken.len(), 4);
    assert_eq!((b.points(), b.bytes()), (0, 0));
}

#[test]
fn a_block_worth_seals_and_is_reported_full_once() {
    let now = Instant::now();
    let mut b = Buffers::default();
    let mut full = Vec::new();
    let pts: Vec<Point> = (0..200_000i64)
        .map(|i| Point::new(3, i * 1_000_000 + (i * 7919) % 5000, (i as f64).sin(), 192))
        .collect();
    for c in pts.chunks(1000) {
        b.insert_batch(c, 1, now, &mut full);
    }
    assert!(!full.is_empty() && full.iter().all(|&t| t == 3));
    let bytes = b.bytes();
    let buf = b.take(3).unwrap();
    assert_eq!(buf.bytes(), bytes);
    let segs = buf.freeze();
    assert_eq!(segs.len(), full.len() + 1);
    assert!(segs.iter().all(|s| s.payload_len() <= PAYLOAD_CAPACITY));
    let n: u32 = segs.iter().map(|s| s.count).sum();
    assert_eq!(n, 200_000);
    assert!(segs.windows(2).all(|w| w[0].last.ts < w[1].min_ts));
}

#[test]
fn take_sealed_leaves_the_head_with_its_own_wal_sequence() {
    let now = Instant::now();
    let mut b = Buffers::default();
    let mut full = Vec::new();
    let mut seq = 10;
    let mut n = 0i64;
    while full.is_empty() {
        let pts: Vec<Point> = (n..n + 100)
            .map(|i| {
                Point::new(
                    4,
                    i * 1_000_000,
                    f64::from_bits((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
                    192,
                )
            })
            .collect();
        b.insert_batch(&pts, seq, now, &mut full);
        seq += 1;
        n += 100;
    }
    let sealed_at = seq - 1;
    let (points, bytes) = (b.points(), b.bytes());
    let (segs, min_seq, _) = b.take_sealed(4).unwrap();
    assert_eq!(min_seq, 10);
    assert_eq!(segs.len(), 1);
    let in_segs = segs[0].count as usize;
    assert_eq!(b.points(), points - in_segs);
    assert!(b.bytes() < bytes);
    let buf = b.get_mut(4).unwrap();
    assert_eq!(buf.min_seq, sealed_at);
    assert_eq!(buf.bytes(), b.bytes());
    let rest = all(b.get_mut(4).unwrap());
    assert_eq!(rest.len() + in_segs, n as usize);
    assert_eq!(rest[0].ts, segs[0].last.ts + 1_000_000);
    assert!(b.take_sealed(4).is_none());
    // With an out-of-order point buffered, the whole buffer must go.
    b.insert(4, s(5, 1.0), seq, now);
    assert!(b.take_sealed(4).is_none());
}

#[test]
fn compressed_buffer_costs_few_bytes_per_point() {
    let now = Instant::now();
    let mut b = Buffers::default();
    let mut full = Vec::new();
    let pts: Vec<Point> = (0..5_000i64)
        .map(|i| Point::new(1, i * 1_000_000, 20.0 + (i / 100) as f64 * 0.5, 192))
        .collect();
    b.insert_batch(&pts, 1, now, &mut full);
    let per_point = (b.bytes() - TAG_OVERHEAD) as f64 / 5_000.0;
    assert!(per_point < 1.0, "{per_point} bytes/point");
}

#[derive(Clone, Debug)]
struct W(i64, u64, u8);

proptest! {
    #![proptest_config(crate::proptest_config::config(256))]

    /// Any write sequence (mostly increasing, with out-of-order and repeated
    /// timestamps) reads back like a map where the later write wins, before
    /// and after freezing, and the accounted bytes match the buffer.
    #[test]
    fn buffer_matches_model(
        writes in prop::collection::vec(
            (prop_oneof![3 => 0i64..2000, 1 => Just(0i64), 1 => any::<i64>()],
             prop_oneof![any::<u64>(), Just(f64::NAN.to_bits()), Just((-0.0f64).to_bits()), (0u64..4)],
             prop_oneof![Just(192u8), any::<u8>()])
                .prop_map(|(t, v, q)| W(t, v, q)),
            1..400),
        drift in 0i64..3,
        lo in -100i64..2100, len in 0i64..3000,
    ) {
        let now = Instant::now();
        let mut b = Buffers::default();
        let mut model = BTreeMap::new();
        let mut clock = 0i64;
        for (i, W(t, v, q)) in writes.into_iter().enumerate() {
            // Mostly increasing: a drifting clock plus the generated offset.
            clock += drift;
            let ts = if i % 5 == 0 { t } else { clock.wrapping_add(t / 64) };
            let smp = Sample { ts, value: f64::from_bits(v), quality: q };
            b.insert(1, smp, 1, now);
            model.insert(ts, (v, q));
        }
        let every: Vec<(i64, u64, u8)> = model.iter().map(|(&t, &(v, q))| (t, v, q)).collect();
        // Ranges are half open: i64::MAX itself is only seen through `last`.
        let want: Vec<_> = every.iter().copied().filter(|w| w.0 < i64::MAX).collect();
        let key = |v: &[Sample]| v.iter().map(|s| (s.ts, s.value.to_bits(), s.quality)).collect::<Vec<_>>();
        let buf = b.get_mut(1).unwrap();
        prop_assert_eq!(key(&all(buf)), want.clone());
        let mut part = Vec::new();
        buf.range(1, lo, lo + len, &mut part);
        let part: Vec<_> = part.iter().map(|p| (p.ts, p.value.to_bits(), p.quality)).collect();
        let want_part: Vec<_> = want.iter().copied().filter(|w| w.0 >= lo && w.0 < lo + len).collect();
        prop_assert_eq!(part, want_part);
        let last = buf.last().map(|s| (s.ts, s.value.to_bits(), s.quality));
        prop_assert_eq!(last, every.last().copied());
        let bytes = b.bytes();
        let buf = b.take(1).unwrap();
        prop_assert_eq!(buf.bytes(), bytes);
        prop_assert_eq!(b.bytes(), 0);
        let mut got = Vec::new();
        for seg in buf.freeze() {
            let mut payload = vec![0u8; seg.payload_len()];
            seg.write_payload(&mut payload);
            crate::storage::codec::decode_payload(&payload, seg.count, i64::MIN, i64::MAX, |t, v, q| got.push((t, v, q))).unwrap();
            if seg.last.ts == i64::MAX {
                got.push((seg.last.ts, seg.last.value.to_bits(), seg.last.quality));
            }
        }
        prop_assert_eq!(got, every);
    }
}

/// What a property test does to the buffers of a few tags.
#[derive(Clone, Debug)]
enum Op {
    /// Appends `n` points to a tag (sealing a segment now and then).
    Insert(u32, u16),
    /// A flush of everything of a tag.
    Take(u32),
    /// A flush of a tag's sealed segments only.
    TakeSealed(u32),
}

proptest! {
    #![proptest_config(crate::proptest_config::config(200))]

    /// The ordered view of the buffers (`min_seq`, `pinning_below`) always
    /// equals a scan of every buffer, and `scan_aged` visits each buffered
    /// tag exactly once per sweep.
    #[test]
    fn the_seq_order_matches_a_scan_of_every_buffer(
        ops in proptest::collection::vec(prop_oneof![
            (0u32..6, 1u16..3000).prop_map(|(t, n)| Op::Insert(t, n)),
            (0u32..6).prop_map(Op::Take),
            (0u32..6).prop_map(Op::TakeSealed),
        ], 1..60),
        probe in 0u64..80,
    ) {
        let now = Instant::now();
        let mut b = Buffers::default();
        let mut full = Vec::new();
        let mut ts = [0i64; 6];
        for (seq, op) in ops.into_iter().enumerate() {
            let seq = seq as u64;
            match op {
                Op::Insert(t, n) => {
                    let pts: Vec<Point> = (0..n)
                        .map(|_| {
                            ts[t as usize] += 1_000_000;
                            Point::new(t, ts[t as usize], (ts[t as usize] % 977) as f64 * 0.37, 192)
                        })
                        .collect();
                    b.insert_batch(&pts, seq, now, &mut full);
                }
                Op::Take(t) => {
                    b.take(t);
                }
                Op::TakeSealed(t) => {
                    b.take_sealed(t);
                }
            }
            let mut scan: Vec<(u64, u32)> = b.iter().map(|(t, buf)| (buf.min_seq, t)).collect();
            scan.sort_unstable();
            prop_assert_eq!(b.min_seq(), scan.first().map(|x| x.0));
            let below: Vec<_> = b.pinning_below(probe).collect();
            let want: Vec<_> = scan.iter().copied().filter(|x| x.0 < probe).collect();
            prop_assert_eq!(below, want);
            let mut seen = Vec::new();
            let slots = b.slots.len();
            b.scan_aged(slots, |t, _| seen.push(t));
            seen.sort_unstable();
            let mut tags: Vec<u32> = scan.iter().map(|x| x.1).collect();
            tags.sort_unstable();
            prop_assert_eq!(seen, tags);
        }
    }
}

/// The tag index answers like a map whatever the ids: dense ones, far ones
/// (kept in the hash map), far ones the dense table grows to cover later.
#[test]
fn tag_index_is_a_map_for_dense_and_sparse_ids() {
    let mut idx = TagIndex::default();
    let mut model = std::collections::BTreeMap::new();
    let far = [u32::MAX, 3_000_000_000, 1_000_000, 250_000, 150_000];
    let mut slot = 0u32;
    let mut add = |idx: &mut TagIndex, model: &mut std::collections::BTreeMap<u32, u32>, t| {
        idx.insert(t, slot);
        model.insert(t, slot);
        slot += 1;
    };
    for &t in &far {
        add(&mut idx, &mut model, t);
    }
    assert!(idx.dense.len() <= 4 * 6 + (1 << 16));
    for t in 0..140_000 {
        add(&mut idx, &mut model, t);
    }
    // 150,000 and 250,000 are inside the grown dense table now, 1,000,000
    // is not.
    assert!(idx.dense.len() > 250_000, "{}", idx.dense.len());
    assert_eq!(idx.sparse.len(), 3);
    for t in (0..140_000).step_by(3) {
        assert_eq!(idx.remove(t), model.remove(&t));
    }
    assert_eq!(idx.remove(250_000), model.remove(&250_000));
    assert_eq!(idx.remove(u32::MAX), model.remove(&u32::MAX));
    assert_eq!(idx.remove(u32::MAX), None);
    assert_eq!(idx.remove(140_000), None);
    assert_eq!(idx.len, model.len());
    for t in [
        0,
        1,
        2,
        3,
        139_999,
        150_000,
        250_000,
        1_000_000,
        3_000_000_000,
        u32::MAX,
        7,
    ] {
        assert_eq!(idx.get(t), model.get(&t).copied(), "tag {t}");
    }
    let mut all: Vec<(u32, u32)> = idx.iter().collect();
    all.sort_unstable();
    assert_eq!(all, model.into_iter().collect::<Vec<_>>());
}
