//! Property test: any sequence of writes, flushes, compactions, clean
//! reopens and crashes (drop without close, in a fresh executor per life)
//! answers `range` (also as pieces over the wire) and `latest` exactly like a simple in-memory model (a
//! `BTreeMap` where the later write of a `(tag, ts)` wins). Tiny segments,
//! chunks, partitions and budgets make every run cross WAL rotation and
//! recycling, chunk sealing, memory-budget flushes, backpressure, packed
//! and compacted segments over several time partitions, and rewrites of
//! points that compaction has already merged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::life;
use proptest::prelude::*;
use xtdb::net::protocol;
use xtdb::storage::{RangeAnswer, Shard, ShardConfig};
use xtdb::Point;

#[derive(Clone, Debug)]
enum Op {
    Write(Vec<(u32, i64, f64, u8)>),
    Flush,
    Compact,
    Reopen,
    Crash,
}

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        8 => (-1000i32..1000).prop_map(|v| v as f64 / 8.0),
        1 => Just(f64::NAN),
        1 => Just(-0.0),
        1 => Just(f64::INFINITY),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => prop::collection::vec((0u32..6, 0i64..400, value(), prop_oneof![Just(192u8), Just(0u8)]), 1..60)
            .prop_map(Op::Write),
        2 => Just(Op::Flush),
        2 => Just(Op::Compact),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
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
    // Compaction's aligned segment cuts, not dividing the partitions.
    c.segment_align = Duration::from_micros(30);
    common::manual_compaction(&mut c);
    c
}

type Model = BTreeMap<(u32, i64), Point>;

async fn check(shard: &Shard, model: &Model, when: &str) {
    for tag in 0..6u32 {
        let want: Vec<Point> = model
            .range((tag, i64::MIN)..=(tag, i64::MAX))
            .map(|(_, p)| *p)
            .collect();
        let got = shard.range(tag, i64::MIN, i64::MAX).await.unwrap();
        assert_eq!(got, want, "range of tag {tag} {when}");
        let part: Vec<Point> = want
            .iter()
            .filter(|p| (100..250).contains(&p.ts))
            .copied()
            .collect();
        assert_eq!(
            shard.range(tag, 100, 250).await.unwrap(),
            part,
            "sub-range of tag {tag} {when}"
        );
        // The same ranges as pieces, through the wire encoding and the
        // client's decoder.
        for (s, e, what) in [(i64::MIN, i64::MAX, "range"), (100, 250, "sub-range")] {
            let got = match shard
                .range_pieces_at_most(tag, s, e, u64::MAX)
                .await
                .unwrap()
            {
                RangeAnswer::Points(p) => p,
                RangeAnswer::Pieces(p) => {
                    let mut b = Vec::new();
                    protocol::encode_response(&mut b, 1, &protocol::Response::Pieces(p));
                    match protocol::decode_response_frame(&b).unwrap() {
                        Some((_, protocol::Response::Pieces(p), _)) => {
                            protocol::pieces_points(&p, tag, s, e).unwrap()
                        }
                        other => panic!("{other:?}"),
                    }
                }
            };
            let want: Vec<Point> = want
                .iter()
                .filter(|p| p.ts >= s && p.ts < e)
                .copied()
                .collect();
            assert_eq!(got, want, "{what} of tag {tag} as pieces {when}");
        }
        assert_eq!(
            shard.latest(tag).await.unwrap(),
            want.last().copied(),
            "latest of tag {tag} {when}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn shard_matches_model(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut model = Model::new();
        let mut lives: Vec<Vec<Op>> = vec![Vec::new()];
        for op in ops {
            let end = matches!(op, Op::Reopen | Op::Crash);
            lives.last_mut().unwrap().push(op);
            if end {
                lives.push(Vec::new());
            }
        }
        for (n, ops) in lives.into_iter().enumerate() {
            let cfg = config(dir.path());
            model = life(move || async move {
                let shard = Shard::open(cfg).await.unwrap();
                check(&shard, &model, &format!("after opening life {n}")).await;
                for op in ops {
                    match op {
                        Op::Write(points) => {
                            let points: Vec<Point> =
                                points.into_iter().map(|(t, ts, v, q)| Point::new(t, ts, v, q)).collect();
                            shard.write(&points).await.unwrap();
                            for p in points {
                                model.insert((p.tag, p.ts), p);
                            }
                        }
                        Op::Flush => shard.flush().await.unwrap(),
                        Op::Compact => {
                            shard.compact().await.unwrap();
                            check(&shard, &model, &format!("after compacting in life {n}")).await;
                        }
                        Op::Reopen => {
                            check(&shard, &model, &format!("before closing life {n}")).await;
                            shard.close().await.unwrap();
                            return model;
                        }
                        Op::Crash => {
                            drop(shard);
                            return model;
                        }
                    }
                }
                check(&shard, &model, &format!("at the end of life {n}")).await;
                model
            });
        }
    }
}
