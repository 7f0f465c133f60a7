//! Property test: the shard's aggregates (every function and fill mode,
//! partials, interpolated values, plot values, at-or-before, good-only or
//! not) equal a brute-force computation over the raw points: the whole
//! history of the tag from `range`, fed point by point to the kernels (no
//! summaries, no probing), on random out-of-order writes with duplicates,
//! NaN values and mixed qualities, random windows and offsets; checked
//! with the points in memory, after a flush (packed blocks), after
//! compaction (summaries) and across a restart. Deterministic tests also
//! check that summaries really answer whole segments, and that aligned
//! segment cuts let hour windows over compacted days read no block.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::life;
use proptest::prelude::*;
use xtdb::aggregate::{
    aggregate, fill, Accumulator, AtOrBefore, Fill, Func, IntegralMode, Interp, Interpolator,
    PartialAcc, Plotter, PointSource, Slot, WindowSpec, Windowed, GOOD,
};
use xtdb::storage::{Shard, ShardConfig};
use xtdb::Point;

const TAGS: u32 = 3;
const MAX: usize = 100_000;

#[derive(Clone, Debug)]
enum Op {
    Write(Vec<(u32, i64, f64, u8)>),
    Flush,
    Compact,
    Reopen,
}

#[derive(Clone, Debug)]
enum Q {
    Windows {
        start: i64,
        len: i64,
        every: i64,
        offset: i64,
        func: Func,
        fill: Fill,
    },
    Partials {
        start: i64,
        len: i64,
        every: i64,
        /// Whether `m2` is asked for (without it, rollups may answer).
        m2: bool,
    },
    Interpolated {
        start: i64,
        len: i64,
        every: i64,
        interp: Interp,
    },
    Plot {
        start: i64,
        len: i64,
        pixels: usize,
    },
    AtOrBefore(i64),
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => (-1000i32..1000).prop_map(|v| v as f64 / 8.0),
        1 => Just(f64::NAN),
    ]
}

fn quality() -> impl Strategy<Value = u8> {
    prop_oneof![3 => Just(192u8), 1 => Just(0u8), 1 => Just(64u8)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => prop::collection::vec((0u32..TAGS, 0i64..400, value(), quality()), 1..80)
            .prop_map(Op::Write),
        2 => Just(Op::Flush),
        2 => Just(Op::Compact),
        1 => Just(Op::Reopen),
    ]
}

fn func() -> impl Strategy<Value = Func> {
    prop_oneof![
        Just(Func::Count),
        Just(Func::Sum),
        Just(Func::Mean),
        Just(Func::Min),
        Just(Func::Max),
        Just(Func::First),
        Just(Func::Last),
        Just(Func::Spread),
        Just(Func::Stddev),
        Just(Func::Median),
        (0.0f64..100.0).prop_map(Func::Percentile),
        (1i64..50, any::<bool>()).prop_map(|(unit, inside)| Func::Integral {
            unit,
            mode: if inside {
                IntegralMode::Inside
            } else {
                IntegralMode::InfluxQl
            }
        }),
        Just(Func::PercentGood),
        Just(Func::TimeWeighted(Interp::Step)),
        Just(Func::TimeWeighted(Interp::Linear)),
    ]
}

fn fill_mode() -> impl Strategy<Value = Fill> {
    prop_oneof![
        Just(Fill::None),
        Just(Fill::Null),
        Just(Fill::Value(-7.5)),
        Just(Fill::Previous { before: None }),
        Just(Fill::Linear),
    ]
}

fn interp() -> impl Strategy<Value = Interp> {
    prop_oneof![Just(Interp::Step), Just(Interp::Linear)]
}

fn query() -> impl Strategy<Value = Q> {
    prop_oneof![
        6 => (-20i64..420, 0i64..450, 1i64..200, -300i64..300, func(), fill_mode()).prop_map(
            |(start, len, every, offset, func, fill)| Q::Windows { start, len, every, offset, func, fill }
        ),
        // Windows on the 5 µs rollup grid.
        3 => (-4i64..84, 0i64..90, 1i64..40, -60i64..60, func(), fill_mode()).prop_map(
            |(start, len, every, offset, func, fill)| Q::Windows {
                start: start * 5, len: len * 5, every: every * 5, offset: offset * 5, func, fill
            }
        ),
        1 => (-20i64..420, 0i64..450, 1i64..200).prop_map(|(start, len, every)| Q::Partials { start, len, every, m2: true }),
        1 => (-4i64..84, 0i64..90, 1i64..40).prop_map(|(start, len, every)| Q::Partials {
            start: start * 5, len: len * 5, every: every * 5, m2: false
        }),
        1 => (-20i64..420, 0i64..450, 1i64..100, interp())
            .prop_map(|(start, len, every, interp)| Q::Interpolated { start, len, every, interp }),
        1 => (-20i64..420, 0i64..450, 1usize..60).prop_map(|(start, len, pixels)| Q::Plot { start, len, pixels }),
        1 => (-20i64..450).prop_map(Q::AtOrBefore),
    ]
}

fn config(dir: &std::path::Path) -> ShardConfig {
    let mut c = ShardConfig::new(dir);
    c.wal_segment_size = 8192;
    c.wal_budget = 32 * 1024;
    c.blocks_per_chunk = 4;
    c.memory_budget = 4096;
    c.flush_age = Duration::from_secs(3600);
    c.partition = Duration::from_micros(100);
    // Aligned cuts that do not divide the partitions, so segments end at
    // both (and where blocks fill).
    c.segment_align = Duration::from_micros(30);
    // Rollups of 5 µs intervals, stored however few points they hold, so
    // the multiple-of-5 windows below are answered from them.
    c.rollup = Duration::from_micros(5);
    c.rollup_min_points = 1;
    common::manual_compaction(&mut c);
    c
}

/// Window answers equal, values within [`close`].
fn same_slots(got: &[Slot], want: &[Slot], ctx: &str) {
    assert_eq!(got.len(), want.len(), "{ctx}");
    for (g, w) in got.iter().zip(want) {
        match (g, w) {
            (Slot::Value(a), Slot::Value(b)) => assert!(close(*a, *b), "{ctx}: {a} vs {b}"),
            _ => assert_eq!(g, w, "{ctx}"),
        }
    }
}

/// Floats equal, NaN equal to NaN, within 1e-9 relative (summaries add in
/// a different order than points).
fn close(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

fn close_opt(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => close(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// Every point of the tag, fed point by point.
struct AllPoints<'a>(&'a [Point]);

impl PointSource for AllPoints<'_> {
    type Error = xtdb::aggregate::AggError;
    fn feed<A: Accumulator>(&mut self, w: &mut Windowed<A>) -> Result<(), Self::Error> {
        for p in self.0 {
            w.push(p.ts, p.value, p.quality);
        }
        Ok(())
    }
}

fn visible(p: &Point, good_only: bool) -> bool {
    !p.value.is_nan() && (!good_only || p.quality >= GOOD)
}

async fn check_query(shard: &Shard, tag: u32, all: &[Point], q: &Q, good_only: bool, when: &str) {
    let ctx = format!("tag {tag}, {q:?}, good_only {good_only}, {when}");
    match *q {
        Q::Windows {
            start,
            len,
            every,
            offset,
            func,
            fill: f,
        } => {
            let spec = WindowSpec::new(start, start + len, every, offset, MAX).unwrap();
            let want_before = matches!(f, Fill::Previous { before: None });
            let (slots, before) = shard
                .aggregate(tag, &spec, func, good_only, want_before)
                .await
                .unwrap();
            let want = aggregate(func, &spec, good_only, &mut AllPoints(all)).unwrap();
            assert_eq!(slots.len(), want.len(), "{ctx}");
            for (i, (g, w)) in slots.iter().zip(&want).enumerate() {
                let ok = match (g, w) {
                    (Slot::Value(a), Slot::Value(b)) => close(*a, *b),
                    _ => g == w,
                };
                assert!(ok, "window {i}: engine {g:?}, brute force {w:?}; {ctx}");
            }
            let want_b = all
                .iter()
                .rev()
                .find(|p| p.ts < start && visible(p, good_only));
            if want_before || matches!(func, Func::TimeWeighted(_)) {
                assert_eq!(
                    before.map(|s| (s.ts, s.value.to_bits())),
                    want_b.map(|p| (p.ts, p.value.to_bits())),
                    "value in force; {ctx}"
                );
            }
            // The fill the runtime applies, with the engine's `before`.
            let fb = Fill::Previous {
                before: want_b.map(|p| p.value),
            };
            let fgot = fill(
                &slots,
                if want_before {
                    Fill::Previous {
                        before: before.map(|s| s.value),
                    }
                } else {
                    f
                },
            );
            let fwant = fill(&want, if want_before { fb } else { f });
            assert_eq!(fgot.len(), fwant.len(), "fill; {ctx}");
            for (g, w) in fgot.iter().zip(&fwant) {
                assert!(
                    g.0 == w.0 && close_opt(g.1, w.1),
                    "fill {g:?} vs {w:?}; {ctx}"
                );
            }
        }
        Q::Partials {
            start,
            len,
            every,
            m2,
        } => {
            let spec = WindowSpec::new(start, start + len, every, 0, MAX).unwrap();
            let got = shard
                .aggregate_partials(tag, &spec, good_only, m2)
                .await
                .unwrap();
            let mut w = Windowed::new(spec.clone(), PartialAcc::default(), good_only);
            for p in all {
                w.push(p.ts, p.value, p.quality);
            }
            let want = w.finish().unwrap();
            assert_eq!(got.len(), want.len(), "{ctx}");
            for (g, w) in got.iter().zip(&want) {
                match (g, w) {
                    (Some(g), Some(w)) => {
                        assert!(
                            g.count == w.count
                                && g.good == w.good
                                && close(g.sum, w.sum)
                                && (!m2 || close(g.m2, w.m2))
                                && g.min == w.min
                                && g.max == w.max
                                && g.first == w.first
                                && g.last == w.last,
                            "partial {g:?} vs {w:?}; {ctx}"
                        );
                    }
                    (None, None) => {}
                    _ => panic!("partial {g:?} vs {w:?}; {ctx}"),
                }
            }
        }
        Q::Interpolated {
            start,
            len,
            every,
            interp,
        } => {
            let got = shard
                .interpolated(tag, start, start + len, every, interp, good_only, MAX)
                .await
                .unwrap();
            let mut ip =
                Interpolator::new(start, start + len, every, interp, good_only, MAX).unwrap();
            for p in all {
                ip.push(p.ts, p.value, p.quality);
            }
            let want = ip.finish().unwrap();
            assert_eq!(got.len(), want.len(), "{ctx}");
            for (g, w) in got.iter().zip(&want) {
                assert!(g.0 == w.0 && close_opt(g.1, w.1), "{g:?} vs {w:?}; {ctx}");
            }
        }
        Q::Plot { start, len, pixels } => {
            let got = shard
                .plot(tag, start, start + len, pixels, good_only, MAX)
                .await
                .unwrap();
            let mut pl = Plotter::new(start, start + len, pixels, good_only, MAX).unwrap();
            for p in all {
                pl.push(p.ts, p.value, p.quality);
            }
            assert_eq!(got, pl.finish().unwrap(), "{ctx}");
        }
        Q::AtOrBefore(t) => {
            let got = shard.at_or_before(tag, t, good_only).await.unwrap();
            let mut a = AtOrBefore::new(t, good_only);
            for p in all {
                a.push(p.ts, p.value, p.quality);
            }
            assert_eq!(got, a.result(), "{ctx}");
        }
    }
}

async fn check(shard: &Shard, queries: &[(Q, bool)], when: &str) {
    for tag in 0..TAGS {
        let all = shard.range(tag, i64::MIN, i64::MAX).await.unwrap();
        for (q, good_only) in queries {
            check_query(shard, tag, &all, q, *good_only, when).await;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn aggregates_match_brute_force(
        ops in prop::collection::vec(op(), 1..25),
        queries in prop::collection::vec((query(), any::<bool>()), 1..8),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut lives: Vec<Vec<Op>> = vec![Vec::new()];
        for op in ops {
            let end = matches!(op, Op::Reopen);
            lives.last_mut().unwrap().push(op);
            if end {
                lives.push(Vec::new());
            }
        }
        for (n, ops) in lives.into_iter().enumerate() {
            let cfg = config(dir.path());
            let queries = queries.clone();
            life(move || async move {
                let shard = Shard::open(cfg).await.unwrap();
                check(&shard, &queries, &format!("after opening life {n}")).await;
                for op in ops {
                    match op {
                        Op::Write(points) => {
                            let points: Vec<Point> = points
                                .into_iter()
                                .map(|(t, ts, v, q)| Point::new(t, ts, v, q))
                                .collect();
                            shard.write(&points).await.unwrap();
                            check(&shard, &queries, &format!("in memory, life {n}")).await;
                        }
                        Op::Flush => {
                            shard.flush().await.unwrap();
                            check(&shard, &queries, &format!("after a flush, life {n}")).await;
                        }
                        Op::Compact => {
                            shard.compact().await.unwrap();
                            check(&shard, &queries, &format!("after compaction, life {n}")).await;
                        }
                        Op::Reopen => {
                            shard.close().await.unwrap();
                            return;
                        }
                    }
                }
                shard.close().await.unwrap();
            });
        }
    }
}

/// A compacted tag asked for windows wider than its segments answers them
/// from summaries (blocks unread) and still equals the brute force; a
/// rewrite of one point inside a segment makes that segment decode again
/// (the memory point overlaps it) and the answer follows the rewrite.
#[test]
fn summaries_answer_whole_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ShardConfig::new(dir.path());
    common::manual_compaction(&mut cfg);
    life(move || async move {
        let shard = Shard::open(cfg).await.unwrap();
        let pts: Vec<Point> = (0..20_000i64)
            .map(|i| Point::new(7, i * 1000, (i % 97) as f64 * 0.5, 192))
            .collect();
        for c in pts.chunks(1000) {
            shard.write(c).await.unwrap();
        }
        shard.compact().await.unwrap();
        let before = shard.stats();
        // Windows of 10 s over 20 s of data at 1 kHz.
        let spec = WindowSpec::new(0, 20_000_000, 10_000_000, 0, MAX).unwrap();
        let all = shard.range(7, i64::MIN, i64::MAX).await.unwrap();
        for func in [Func::Mean, Func::Count, Func::Max, Func::Stddev] {
            let (got, _) = shard.aggregate(7, &spec, func, false, false).await.unwrap();
            let want = aggregate(func, &spec, false, &mut AllPoints(&all)).unwrap();
            for (g, w) in got.iter().zip(&want) {
                match (g, w) {
                    (Slot::Value(a), Slot::Value(b)) => assert!(close(*a, *b), "{func:?}"),
                    _ => assert_eq!(g, w),
                }
            }
        }
        let after = shard.stats();
        assert!(
            after.agg_segments_from_summary > before.agg_segments_from_summary,
            "no segment answered from its summary: {after:?}"
        );
        // Interpolated samples 10 s apart and 2 plot pixels: segments
        // holding no sample time, or inside one pixel, are not decoded.
        let s0 = shard.stats().agg_segments_from_summary;
        let got = shard
            .interpolated(7, 0, 20_000_000, 10_000_000, Interp::Linear, false, MAX)
            .await
            .unwrap();
        let mut ip =
            Interpolator::new(0, 20_000_000, 10_000_000, Interp::Linear, false, MAX).unwrap();
        let mut pl = Plotter::new(0, 20_000_000, 2, false, MAX).unwrap();
        for p in &all {
            ip.push(p.ts, p.value, p.quality);
            pl.push(p.ts, p.value, p.quality);
        }
        assert_eq!(got, ip.finish().unwrap());
        let s1 = shard.stats().agg_segments_from_summary;
        assert!(s1 > s0, "interpolation decoded every segment");
        let got = shard.plot(7, 0, 20_000_000, 2, false, MAX).await.unwrap();
        assert_eq!(got, pl.finish().unwrap());
        assert!(
            shard.stats().agg_segments_from_summary > s1,
            "plot decoded every segment"
        );
        let after = shard.stats();
        // Median needs points: every segment decodes.
        let d0 = after.agg_segments_decoded;
        let (_, _) = shard
            .aggregate(7, &spec, Func::Median, false, false)
            .await
            .unwrap();
        assert!(shard.stats().agg_segments_decoded > d0);
        // A rewrite inside a summarised segment wins.
        shard
            .write(&[Point::new(7, 5_000_000, 1e6, 192)])
            .await
            .unwrap();
        let (got, _) = shard
            .aggregate(7, &spec, Func::Max, false, false)
            .await
            .unwrap();
        assert_eq!(got[0], Slot::Value(1e6));
        shard.close().await.unwrap();
    });
}

/// Three days of a 1 Hz tag of poorly compressible values (segments of
/// well under an hour's points would still straddle hour boundaries),
/// compacted: with the default aligned cuts every 1-h, 2-h and 1-day
/// window, and hourly interpolated samples on the segments' first points,
/// are answered from summaries alone (no segment decoded) and equal the
/// brute force; with the cuts off, the same hour means decode.
#[test]
fn aligned_cuts_answer_hour_windows_from_summaries() {
    for align in [Duration::from_secs(3600), Duration::ZERO] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = ShardConfig::new(dir.path());
        common::manual_compaction(&mut cfg);
        cfg.segment_align = align;
        // Summaries alone (rollups would answer the hours too).
        cfg.rollup = Duration::ZERO;
        life(move || async move {
            let shard = Shard::open(cfg).await.unwrap();
            let day = 86_400_000_000i64;
            let t0 = 20_000 * day + 1_234_567; // not on an hour boundary
            let mut x = 0x2545_f491_4f6c_dd1du64;
            let pts: Vec<Point> = (0..3 * 86_400i64)
                .map(|i| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    Point::new(3, t0 + i * 1_000_000, (x >> 11) as f64 * 1e-9, 192)
                })
                .collect();
            for c in pts.chunks(10_000) {
                shard.write(c).await.unwrap();
            }
            shard.compact().await.unwrap();
            let all = shard.range(3, i64::MIN, i64::MAX).await.unwrap();
            assert_eq!(all.len(), pts.len());
            let start = t0 - t0.rem_euclid(day);
            for (every, funcs) in [
                (
                    3_600_000_000i64,
                    vec![Func::Mean, Func::Count, Func::Min, Func::Max, Func::Sum],
                ),
                (7_200_000_000, vec![Func::First, Func::Last, Func::Spread]),
                (day, vec![Func::Mean, Func::TimeWeighted(Interp::Step)]),
            ] {
                let spec = WindowSpec::new(start, start + 4 * day, every, 0, MAX).unwrap();
                for func in funcs {
                    let d0 = shard.stats().agg_segments_decoded;
                    let (got, _) = shard.aggregate(3, &spec, func, false, false).await.unwrap();
                    let decoded = shard.stats().agg_segments_decoded - d0;
                    let want = aggregate(func, &spec, false, &mut AllPoints(&all)).unwrap();
                    same_slots(&got, &want, &format!("{func:?} every {every}"));
                    if align.is_zero() {
                        if every == 3_600_000_000 && func == Func::Mean {
                            assert!(decoded > 0, "uncut segments straddle no hour?");
                        }
                    } else {
                        assert_eq!(
                            decoded, 0,
                            "{func:?} every {every} decoded {decoded} segments"
                        );
                    }
                }
            }
            // Hourly samples exactly on each aligned segment's first point
            // (hh:00:00.234567): the summaries answer them too.
            let (from, to, every) = (start + 234_567, start + 3 * day, 3_600_000_000i64);
            for interp in [Interp::Step, Interp::Linear] {
                let d0 = shard.stats().agg_segments_decoded;
                let got = shard
                    .interpolated(3, from, to, every, interp, false, MAX)
                    .await
                    .unwrap();
                let decoded = shard.stats().agg_segments_decoded - d0;
                let mut ip = Interpolator::new(from, to, every, interp, false, MAX).unwrap();
                for p in &all {
                    ip.push(p.ts, p.value, p.quality);
                }
                assert_eq!(got, ip.finish().unwrap(), "{interp:?}");
                if !align.is_zero() {
                    assert_eq!(decoded, 0, "{interp:?} decoded {decoded} segments");
                }
            }
            shard.close().await.unwrap();
        });
    }
}

/// Per-minute rollups answer minute-multiple windows of compacted days
/// without decoding a segment (count, sum, mean, min, max, first, last,
/// spread, percent good; good-only too), equal to the brute force; the
/// functions that need more (stddev, time-weighted average, median) still
/// decode and are right. The rollups survive a restart, and damaged ones
/// are not used: the segments are decoded instead, with the same answers.
/// With rollups off the minute windows decode, so the test can fail.
#[test]
fn rollups_answer_minute_windows() {
    for rollup in [Duration::from_secs(60), Duration::ZERO] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let mut cfg = ShardConfig::new(dir.path());
        common::manual_compaction(&mut cfg);
        cfg.rollup = rollup;
        let day = 86_400_000_000i64;
        let t0 = 20_000 * day + 1_234_567;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let pts: Vec<Point> = (0..86_400i64 + 7_200)
            .filter(|i| !(40_000..41_000).contains(i)) // a gap of ~17 minutes
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let v = if x.is_multiple_of(97) {
                    f64::NAN
                } else {
                    ((x >> 40) % 2000) as f64 / 10.0
                };
                let q = if x.is_multiple_of(13) { 0 } else { 192 };
                Point::new(3, t0 + i * 1_000_000, v, q)
            })
            .collect();
        let start = t0 - t0.rem_euclid(day);
        let check = move |shard: Shard, all: Vec<Point>, fresh: bool| async move {
            let windows = [
                (60_000_000i64, 0i64),
                (300_000_000, 0),
                (600_000_000, 120_000_000),
            ];
            let rolled = [
                Func::Mean,
                Func::Count,
                Func::Min,
                Func::Max,
                Func::Sum,
                Func::First,
                Func::Last,
                Func::Spread,
                Func::PercentGood,
            ];
            for (every, offset) in windows {
                let spec = WindowSpec::new(start, start + 2 * day, every, offset, MAX).unwrap();
                let slow = [
                    Func::Stddev,
                    Func::TimeWeighted(Interp::Linear),
                    Func::Median,
                ];
                for (func, good_only) in rolled
                    .iter()
                    .map(|f| (*f, false))
                    .chain([(Func::Mean, true), (Func::Max, true)])
                    .chain(slow.iter().map(|f| (*f, false)))
                {
                    let s0 = shard.stats();
                    let (got, _) = shard
                        .aggregate(3, &spec, func, good_only, false)
                        .await
                        .unwrap();
                    let s1 = shard.stats();
                    let decoded = s1.agg_segments_decoded - s0.agg_segments_decoded;
                    let rolled_up = s1.agg_segments_from_rollup - s0.agg_segments_from_rollup;
                    let want = aggregate(func, &spec, good_only, &mut AllPoints(&all)).unwrap();
                    same_slots(&got, &want, &format!("{func:?} every {every}"));
                    let takes = rolled.contains(&func) && !good_only;
                    if rollup.is_zero() || slow.contains(&func) {
                        assert_eq!(rolled_up, 0, "{func:?} every {every}");
                        assert!(decoded > 0, "{func:?} every {every}: nothing decoded?");
                    } else if takes && fresh {
                        // The segments straddling the range's ends decode;
                        // every other one is answered by its rollup.
                        assert!(decoded <= 2, "{func:?} every {every} decoded {decoded}");
                        assert!(
                            rolled_up >= 20,
                            "{func:?} every {every}: {rolled_up} rollups"
                        );
                    } else if takes {
                        assert_eq!(rolled_up, 0, "damaged rollups used");
                    }
                }
            }
            if fresh && !rollup.is_zero() {
                // The same rollups asked again come from the shard's cache.
                let s = shard.stats();
                assert!(
                    s.agg_rollups_cached > 0 && s.rollup_cache_summaries > 0,
                    "{s:?}"
                );
            }
            shard
        };
        let all = {
            let pts = pts.clone();
            let cfg = cfg.clone();
            life(move || async move {
                let shard = Shard::open(cfg).await.unwrap();
                for c in pts.chunks(10_000) {
                    shard.write(c).await.unwrap();
                }
                shard.compact().await.unwrap();
                let all = shard.range(3, i64::MIN, i64::MAX).await.unwrap();
                assert_eq!(all.len(), pts.len());
                let shard = check(shard, all.clone(), true).await;
                if !rollup.is_zero() {
                    assert!(shard.stats().compaction_rollup_bytes > 0);
                }
                shard.close().await.unwrap();
                all
            })
        };
        // Across a restart, from the directory.
        {
            let (cfg, all) = (cfg.clone(), all.clone());
            life(move || async move {
                let shard = Shard::open(cfg).await.unwrap();
                let shard = check(shard, all, true).await;
                shard.close().await.unwrap();
            });
        }
        if rollup.is_zero() {
            continue;
        }
        // Damage one byte in the middle of every rollup: the checksums
        // catch it and the segments are decoded.
        let damaged = life(move || async move {
            let mut n = 0;
            for f in std::fs::read_dir(path.join("chunks")).unwrap() {
                let f = f.unwrap().path();
                let found = xtdb::storage::chunk::open_chunk(&f, false).await.unwrap();
                let xtdb::storage::chunk::Found::Chunk(c) = found else {
                    continue;
                };
                let mut bytes = std::fs::read(&f).unwrap();
                for e in &c.entries {
                    if let Some(r) = e.rollup {
                        bytes[(r.offset + u64::from(r.len) / 2) as usize] ^= 0x10;
                        n += 1;
                    }
                }
                drop(c);
                std::fs::write(&f, bytes).unwrap();
            }
            n
        });
        assert!(damaged >= 24, "{damaged} rollups found");
        life(move || async move {
            let shard = Shard::open(cfg).await.unwrap();
            let shard = check(shard, all, false).await;
            assert!(shard.stats().agg_rollups_damaged > 0);
            shard.close().await.unwrap();
        });
    }
}

/// A tag whose compacted points span less than two aligned intervals is
/// not cut (a cut would cost more than decoding its two straddling
/// segments saves); one spanning more is cut at every interval.
#[test]
fn short_runs_are_not_cut() {
    for (minutes, want) in [(90i64, 1u64), (330, 6)] {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = ShardConfig::new(dir.path());
        common::manual_compaction(&mut cfg);
        life(move || async move {
            let shard = Shard::open(cfg).await.unwrap();
            let hour = 3_600_000_000i64;
            let t0 = 490_000 * hour + hour / 2; // crosses an hour after 30 min
            let pts: Vec<Point> = (0..minutes * 60)
                .map(|i| Point::new(5, t0 + i * 1_000_000, (i / 600) as f64, 192))
                .collect();
            for c in pts.chunks(5_000) {
                shard.write(c).await.unwrap();
            }
            shard.compact().await.unwrap();
            let s = shard.stats();
            assert_eq!(s.points_on_disk, pts.len() as u64);
            assert_eq!(
                s.segments_indexed, want,
                "{minutes} min of a step signal from hh:30"
            );
            shard.close().await.unwrap();
        });
    }
}
