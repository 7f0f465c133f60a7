//! Compressed buffers inside a shard: a tag that fills blocks is flushed a
//! block at a time while its newest points stay buffered (no block for the
//! few points that arrived since), and after a crash those points come back
//! from the WAL: the checkpoint never passes them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{life, small};
use xtdb::net::protocol;
use xtdb::storage::{Piece, RangeAnswer, Shard};
use xtdb::Point;

/// Awkward bits (NaN payloads and all), so a block holds ~1,900 points.
fn bits(i: u64) -> f64 {
    f64::from_bits(i.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17))
}

fn check(got: &[Point], model: &BTreeMap<i64, Point>) {
    let want: Vec<Point> = model.values().copied().collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want.as_slice(), "range differs from the model");
}

#[test]
fn full_blocks_flush_while_the_head_stays_buffered_and_survives_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small(dir.path());
    let c = cfg.clone();
    let model = life(move || async move {
        let shard = Shard::open(c).await.unwrap();
        let mut model = BTreeMap::new();
        let mut i = 0u64;
        // Write until three blocks are sealed and flushed, plus some more.
        while shard.stats().blocks_written < 3 || !i.is_multiple_of(1000) {
            let batch: Vec<Point> = (i..i + 100)
                .map(|k| Point::new(5, 1_000_000 * k as i64, bits(k), (k % 3) as u8))
                .collect();
            shard.write(&batch).await.unwrap();
            for p in batch {
                model.insert(p.ts, p);
            }
            i += 100;
            glommio::timer::sleep(Duration::from_millis(1)).await;
            assert!(i < 20_000, "{:?}", shard.stats());
        }
        let s = shard.stats();
        assert_eq!(s.blocks_written, 3, "only whole blocks are written: {s:?}");
        assert!(s.points_buffered > 0 && s.points_buffered < 2000, "{s:?}");
        check(&shard.range(5, i64::MIN, i64::MAX).await.unwrap(), &model);
        // As pieces: the three blocks' payloads as they are on disk, then
        // the buffered head as points.
        match shard
            .range_pieces_at_most(5, i64::MIN, i64::MAX, u64::MAX)
            .await
            .unwrap()
        {
            RangeAnswer::Pieces(p) => {
                let kinds: Vec<bool> = p
                    .pieces
                    .iter()
                    .map(|x| matches!(x, Piece::Encoded { .. }))
                    .collect();
                assert_eq!(kinds, [true, true, true, false]);
                let got = protocol::pieces_points(&p, 5, i64::MIN, i64::MAX).unwrap();
                check(&got, &model);
            }
            RangeAnswer::Points(_) => panic!("runs that follow one another come as pieces"),
        }

        // A late rewrite of a flushed timestamp wins over the block.
        let late = Point::new(5, 1_000_000 * 10, -0.0, 7);
        shard.write(&[late]).await.unwrap();
        model.insert(late.ts, late);
        check(&shard.range(5, i64::MIN, i64::MAX).await.unwrap(), &model);
        // Overlapping runs are merged by the shard, not shipped.
        match shard
            .range_pieces_at_most(5, i64::MIN, i64::MAX, u64::MAX)
            .await
            .unwrap()
        {
            RangeAnswer::Points(p) => check(&p, &model),
            RangeAnswer::Pieces(_) => panic!("overlapping runs must be merged by the shard"),
        }
        assert_eq!(
            shard.latest(5).await.unwrap(),
            model.values().last().copied()
        );
        drop(shard); // crash
        model
    });
    life(move || async move {
        let shard = Shard::open(cfg).await.unwrap();
        check(&shard.range(5, i64::MIN, i64::MAX).await.unwrap(), &model);
        assert_eq!(
            shard.latest(5).await.unwrap(),
            model.values().last().copied()
        );
        let part = shard.range(5, 9_000_000, 12_000_000).await.unwrap();
        assert_eq!(
            part.iter().map(|p| p.ts / 1_000_000).collect::<Vec<_>>(),
            [9, 10, 11]
        );
        assert_eq!(part[1], Point::new(5, 10_000_000, -0.0, 7));
        shard.close().await.unwrap();
    });
}
