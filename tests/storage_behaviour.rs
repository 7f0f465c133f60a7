//! What users rely on from one shard: answers merged across memory and disk,
//! out-of-order and duplicate timestamps, and identical state after a clean
//! close or a crash (drop without close).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::{life, series, small};
use xtdb::storage::Shard;
use xtdb::Point;

#[test]
fn range_merges_buffer_and_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small(dir.path());
    life(move || async move {
        let shard = Shard::open(cfg).await.unwrap();
        let old = series(1, 0, 10, 3000, 0);
        shard.write(&old).await.unwrap();
        shard.flush().await.unwrap();
        let new = series(1, 30_000, 10, 500, 0);
        shard.write(&new).await.unwrap();
        shard.write(&series(2, 0, 10, 100, 0)).await.unwrap();

        let all = shard.range(1, i64::MIN, i64::MAX).await.unwrap();
        let mut want = old.clone();
        want.extend(new.iter().copied());
        assert_eq!(all, want);
        let part = shard.range(1, 29_000, 30_050).await.unwrap();
        assert_eq!(part, want[2900..3005].to_vec());
        assert_eq!(shard.latest(1).await.unwrap(), new.last().copied());
        assert_eq!(shard.latest(3).await.unwrap(), None);
        assert!(shard.range(1, 10, 10).await.unwrap().is_empty());

        let s = shard.stats();
        // 3000 points: 4 raw blocks before issue 7, one compressed block now
        // (exact decimals 0.01 apart cost ~11 bits a point).
        assert!(s.blocks_written >= 1, "{s:?}");
        assert!(
            s.points_from_disk >= 3000 && s.points_from_memory >= 500,
            "{s:?}"
        );
        assert!(s.wal_syncs > 0 && s.flushes > 0, "{s:?}");
        shard.close().await.unwrap();
    });
}

#[test]
fn out_of_order_and_duplicates_later_write_wins_in_memory_and_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small(dir.path());
    life(move || async move {
        let shard = Shard::open(cfg).await.unwrap();
        // In memory: out of order with a duplicate inside one batch.
        shard
            .write(&[
                Point::new(7, 50, 1.0, 192),
                Point::new(7, 10, 2.0, 192),
                Point::new(7, 50, 3.0, 0),
            ])
            .await
            .unwrap();
        assert_eq!(
            shard.range(7, 0, 100).await.unwrap(),
            vec![Point::new(7, 10, 2.0, 192), Point::new(7, 50, 3.0, 0)]
        );
        shard.flush().await.unwrap();
        // Overwrite a point that is on disk, and insert an older one.
        shard
            .write(&[Point::new(7, 10, 4.0, 192), Point::new(7, 5, 5.0, 192)])
            .await
            .unwrap();
        let want = vec![
            Point::new(7, 5, 5.0, 192),
            Point::new(7, 10, 4.0, 192),
            Point::new(7, 50, 3.0, 0),
        ];
        assert_eq!(shard.range(7, 0, 100).await.unwrap(), want);
        // Same answer once everything is on disk in two overlapping blocks.
        shard.flush().await.unwrap();
        assert_eq!(shard.range(7, 0, 100).await.unwrap(), want);
        // Latest: an on-disk overwrite of the newest timestamp wins over the older block.
        shard.write(&[Point::new(7, 50, 6.0, 192)]).await.unwrap();
        shard.flush().await.unwrap();
        assert_eq!(
            shard.latest(7).await.unwrap(),
            Some(Point::new(7, 50, 6.0, 192))
        );
        // NaN and -0.0 come back bit for bit.
        shard
            .write(&[Point::new(8, 1, f64::NAN, 0), Point::new(8, 2, -0.0, 192)])
            .await
            .unwrap();
        let got = shard.range(8, 0, 10).await.unwrap();
        assert!(got[0].value.is_nan() && got[1].value.to_bits() == (-0.0f64).to_bits());
        shard.close().await.unwrap();
    });
}

/// Writes a mix that crosses WAL segments, chunk seals and recycling; returns the model.
async fn churn(shard: &Shard, rounds: u32) -> BTreeMap<(u32, i64), Point> {
    let mut model = BTreeMap::new();
    for r in 0..rounds {
        let mut batch = Vec::new();
        for tag in 0..40u32 {
            for p in series(tag, (r as i64) * 100, 7, 30, r) {
                batch.push(p);
            }
        }
        // Rewrite some earlier points (later write wins).
        batch.extend(series(3, 0, 7, 10, 1000 + r));
        shard.write(&batch).await.unwrap();
        for p in batch {
            model.insert((p.tag, p.ts), p);
        }
        if r % 5 == 4 {
            shard.flush().await.unwrap();
        }
    }
    model
}

async fn check(shard: &Shard, model: &BTreeMap<(u32, i64), Point>) {
    for tag in 0..41u32 {
        let want: Vec<Point> = model
            .range((tag, i64::MIN)..=(tag, i64::MAX))
            .map(|(_, p)| *p)
            .collect();
        assert_eq!(
            shard.range(tag, i64::MIN, i64::MAX).await.unwrap(),
            want,
            "tag {tag}"
        );
        assert_eq!(
            shard.latest(tag).await.unwrap(),
            want.last().copied(),
            "latest of tag {tag}"
        );
    }
}

#[test]
fn reopen_after_clean_close_and_after_crash() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small(dir.path());
    let (c1, c2, c3) = (cfg.clone(), cfg.clone(), cfg.clone());
    let model = life(move || async move {
        let shard = Shard::open(c1).await.unwrap();
        let model = churn(&shard, 23).await;
        check(&shard, &model).await;
        let s = shard.stats();
        assert!(
            s.chunks_sealed > 0 && s.wal_segments_recycled > 0,
            "boundaries not crossed: {s:?}"
        );
        shard.close().await.unwrap();
        model
    });
    // Clean close: the buffers were not written into blocks (the WAL holds
    // them; the close's snapshot saves the replay), and the reopen answers
    // the same.
    let model = life(move || async move {
        let shard = Shard::open(c2).await.unwrap();
        check(&shard, &model).await;
        // More writes, then crash: drop without close while data sits in buffers.
        let extra = series(40, 0, 1, 500, 0);
        shard.write(&extra).await.unwrap();
        let mut model = model;
        for p in extra {
            model.insert((p.tag, p.ts), p);
        }
        drop(shard);
        model
    });
    life(move || async move {
        let shard = Shard::open(c3).await.unwrap();
        assert!(shard.recovery().wal_points_replayed >= 500);
        check(&shard, &model).await;
        shard.close().await.unwrap();
    });
}

#[test]
fn memory_budget_flushes_and_applies_backpressure() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small(dir.path());
    // 10,000 points over 200 tags: ~1.2 MiB raw but ~59 KiB compressed
    // (issue 7), so the budget is below that for flushes to happen.
    cfg.memory_budget = 32 * 1024;
    cfg.blocks_per_chunk = 64;
    life(move || async move {
        let shard = Shard::open(cfg).await.unwrap();
        for r in 0..50 {
            let batch: Vec<Point> = (0..200u32)
                .map(|t| Point::new(t, r, r as f64, 192))
                .collect();
            shard.write(&batch).await.unwrap();
            assert!(
                shard.stats().buffered_bytes <= 3 * 64 * 1024,
                "{:?}",
                shard.stats()
            );
        }
        let s = shard.stats();
        assert!(s.flushes > 0, "{s:?}");
        for t in [0u32, 99, 199] {
            assert_eq!(shard.range(t, 0, 100).await.unwrap().len(), 50);
        }
        shard.close().await.unwrap();
    });
}

#[test]
fn age_flush_moves_idle_tags_to_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small(dir.path());
    cfg.flush_age = std::time::Duration::from_millis(50);
    life(move || async move {
        let shard = Shard::open(cfg).await.unwrap();
        shard.write(&series(1, 0, 1, 10, 0)).await.unwrap();
        glommio::timer::sleep(std::time::Duration::from_millis(400)).await;
        let s = shard.stats();
        assert_eq!(s.points_buffered, 0, "{s:?}");
        assert!(s.blocks_written >= 1);
        assert_eq!(
            shard.range(1, 0, 100).await.unwrap(),
            series(1, 0, 1, 10, 0)
        );
        shard.close().await.unwrap();
    });
}

#[test]
fn group_commit_shares_syncs_between_concurrent_writers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small(dir.path());
    life(move || async move {
        let shard = Shard::open(cfg).await.unwrap();
        let tasks: Vec<_> = (0..32u32)
            .map(|w| {
                let s = shard.clone();
                glommio::spawn_local(async move {
                    for i in 0..20 {
                        s.write(&[Point::new(w, i, 1.0, 192)]).await.unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await;
        }
        let s = shard.stats();
        assert_eq!(s.points_written, 640);
        assert!(s.wal_syncs < 640, "no group commit: {s:?}");
        assert!(s.wal_max_group > 1, "{s:?}");
        shard.close().await.unwrap();
    });
}

#[test]
fn group_commit_window_lets_a_write_arriving_soon_after_share_the_sync() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small(dir.path());
    // Long enough that the second write surely arrives inside it.
    cfg.wal_group_window = std::time::Duration::from_millis(100);
    life(move || async move {
        let shard = Shard::open(cfg).await.unwrap();
        let before = shard.stats().wal_syncs;
        let first = {
            let s = shard.clone();
            glommio::spawn_local(async move { s.write(&[Point::new(1, 1, 1.0, 192)]).await })
        };
        let second = {
            let s = shard.clone();
            glommio::spawn_local(async move {
                glommio::timer::sleep(std::time::Duration::from_millis(5)).await;
                s.write(&[Point::new(2, 1, 2.0, 192)]).await
            })
        };
        first.await.unwrap();
        second.await.unwrap();
        let s = shard.stats();
        assert_eq!(s.wal_syncs - before, 1, "one sync for both: {s:?}");
        assert_eq!(s.wal_max_group, 2, "{s:?}");
        // Every write shows in the stage histograms.
        let stages = shard.ack_stages();
        let stage = |name: &str| &stages.iter().find(|(n, _)| *n == name).unwrap().1;
        assert_eq!(stage("shard").len(), 2);
        assert_eq!(stage("insert").len(), 2);
        assert_eq!(stage("wal_sync").len(), s.wal_syncs);
        // The first record waited out the window.
        assert!(stage("wal_queue").max() >= 90_000);
        shard.close().await.unwrap();
    });
}
