//! The storage lifecycle: flushes pack many tags' segments into shared
//! blocks, compaction merges them into dense per-tag segments per time
//! partition (a day of a 1 Hz tag in a handful of blocks), the shard
//! settles by itself when writes stop, retention deletes whole expired
//! chunks and hides expired points, and a close writes no chunk (the WAL
//! holds the buffers; the close's buffer snapshot saves the replay).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::{life, manual_compaction, small};
use xtdb::storage::{Shard, ShardConfig};
use xtdb::Point;

const DAY_US: i64 = 86_400_000_000;

/// A 1 Hz signal quantised to 0.1, as a transmitter reports it.
fn plant(tag: u32, t0: i64, n: i64) -> Vec<Point> {
    (0..n)
        .map(|i| {
            let v = ((i as f64 / 600.0).sin() * 50.0 + 200.0 + ((i * 7919) % 13) as f64 * 0.1)
                .round()
                / 10.0
                * 10.0;
            Point::new(tag, t0 + i * 1_000_000, (v * 10.0).round() / 10.0, 192)
        })
        .collect()
}

fn config(dir: &std::path::Path) -> ShardConfig {
    let mut c = ShardConfig::new(dir);
    c.wal_segment_size = 1 << 20;
    c.wal_budget = 8 << 20;
    c.blocks_per_chunk = 64;
    manual_compaction(&mut c);
    c
}

#[test]
fn a_compacted_day_of_a_1_hz_tag_reads_a_handful_of_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    life(move || async move {
        let shard = Shard::open(cfg).await.unwrap();
        let t0 = 20_000 * DAY_US; // a UTC midnight
        let day = plant(1, t0, 86_400);
        // Small flushes, as a plant's continuous flushing makes them, with
        // 50 other tags sharing the blocks.
        for (i, part) in day.chunks(2_000).enumerate() {
            shard.write(part).await.unwrap();
            for t in 0..50 {
                shard
                    .write(&plant(100 + t, t0 + i as i64 * 2_000_000_000, 20))
                    .await
                    .unwrap();
            }
            shard.flush().await.unwrap();
        }
        let before = shard.stats();
        let got = shard.range(1, t0, t0 + DAY_US).await.unwrap();
        assert_eq!(got, day);
        let packed_reads = shard.stats().blocks_read - before.blocks_read;
        assert!(packed_reads >= 40, "{packed_reads} reads before compaction");
        assert!(shard.compact().await.unwrap());
        let s = shard.stats();
        assert_eq!(
            (s.disk_flush_bytes, s.compaction_backlog_bytes),
            (0, 0),
            "{s:?}"
        );
        let before = shard.stats();
        assert_eq!(shard.range(1, t0, t0 + DAY_US).await.unwrap(), day);
        let reads = shard.stats().blocks_read - before.blocks_read;
        // 86,400 points of ~1.5 bytes in 16 KiB blocks: about 8.
        assert!(
            (4..=12).contains(&reads),
            "{reads} blocks read for one compacted day"
        );
        for t in 0..50 {
            assert_eq!(
                shard
                    .range(100 + t, i64::MIN, i64::MAX)
                    .await
                    .unwrap()
                    .len(),
                44 * 20
            );
        }
        shard.close().await.unwrap();
    });
}

/// Regression: a job whose tags have more segments than compaction's block
/// cache holds (it read a batch's blocks, then evicted some before use).
#[test]
fn tags_with_hundreds_of_segments_compact() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.blocks_per_chunk = 4096;
    let c2 = cfg.clone();
    let want = life(move || async move {
        let shard = Shard::open(cfg).await.unwrap();
        let mut want = Vec::new();
        for round in 0..700i64 {
            for tag in 0..3u32 {
                let p = plant(tag, round * 10_000_000, 5);
                shard.write(&p).await.unwrap();
                want.extend(p);
            }
            shard.flush().await.unwrap();
        }
        assert!(shard.stats().segments_indexed >= 2_100);
        assert!(shard.compact().await.unwrap());
        assert!(shard.stats().segments_indexed <= 6, "{:?}", shard.stats());
        shard.close().await.unwrap();
        want
    });
    life(move || async move {
        let shard = Shard::open(c2).await.unwrap();
        for tag in 0..3u32 {
            let mut w: Vec<Point> = want.iter().filter(|p| p.tag == tag).copied().collect();
            w.sort_by_key(|p| p.ts);
            assert_eq!(shard.range(tag, i64::MIN, i64::MAX).await.unwrap(), w);
        }
        shard.close().await.unwrap();
    });
}

#[test]
fn the_shard_settles_by_itself_when_writes_stop() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.settle_after = Duration::from_millis(300);
    life(move || async move {
        let shard = Shard::open(cfg).await.unwrap();
        let now = 1_764_000_000_000_000;
        for tag in 0..20 {
            shard.write(&plant(tag, now, 500)).await.unwrap();
        }
        // No flush, no compact asked for: buffers flushed, compacted.
        let mut waited = 0;
        loop {
            let s = shard.stats();
            if s.compactions > 0 && s.points_buffered == 0 && s.disk_flush_bytes == 0 {
                break;
            }
            waited += 1;
            assert!(waited < 300, "never settled: {s:?}");
            glommio::timer::sleep(Duration::from_millis(50)).await;
        }
        for tag in 0..20 {
            assert_eq!(
                shard.range(tag, i64::MIN, i64::MAX).await.unwrap(),
                plant(tag, now, 500)
            );
        }
        shard.close().await.unwrap();
    });
}

#[test]
fn retention_deletes_expired_chunks_and_never_serves_expired_points() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.retention = Some(Duration::from_secs(30 * 86_400));
    let now = xtdb::runtime::admission::now_us();
    let old = now - 90 * DAY_US;
    // An hour into yesterday: its 1,000 points stay inside yesterday's
    // partition whatever the time of day.
    let recent = (now / DAY_US - 1) * DAY_US + 3_600_000_000;
    let c2 = cfg.clone();
    life(move || async move {
        let shard = Shard::open(cfg).await.unwrap();
        shard.write(&plant(1, old, 1000)).await.unwrap();
        shard.write(&plant(1, recent, 1000)).await.unwrap();
        shard.write(&plant(2, old, 1000)).await.unwrap();
        shard.flush().await.unwrap();
        // Expired points are never served, wherever they still are.
        assert_eq!(
            shard.range(1, i64::MIN, i64::MAX).await.unwrap(),
            plant(1, recent, 1000)
        );
        assert!(shard.range(2, i64::MIN, i64::MAX).await.unwrap().is_empty());
        assert_eq!(shard.latest(2).await.unwrap(), None);
        // Compaction drops them and splits by partition; the old day's
        // chunk has nothing left to hold.
        shard.compact().await.unwrap();
        let s = shard.stats();
        assert!(s.retention_points_dropped >= 2000, "{s:?}");
        // Recent data is never removed, even by a clock far ahead.
        let before = shard.stats().chunks;
        shard
            .apply_retention_at(recent + 29 * DAY_US)
            .await
            .unwrap();
        assert_eq!(shard.stats().chunks, before);
        assert_eq!(
            shard.range(1, i64::MIN, i64::MAX).await.unwrap(),
            plant(1, recent, 1000)
        );
        // Once the window has passed it, the chunk goes.
        shard.write(&plant(3, now, 10)).await.unwrap();
        shard.flush().await.unwrap();
        shard.compact().await.unwrap();
        let deleted = shard
            .apply_retention_at(recent + 31 * DAY_US)
            .await
            .unwrap();
        assert!(deleted >= 1, "{:?}", shard.stats());
        assert!(shard.stats().retention_bytes_reclaimed > 0);
        // (Deleted for good: the real clock no longer finds them either.)
        assert!(shard.range(1, i64::MIN, i64::MAX).await.unwrap().is_empty());
        shard.close().await.unwrap();
    });
    life(move || async move {
        let shard = Shard::open(c2).await.unwrap();
        assert!(shard.range(1, i64::MIN, i64::MAX).await.unwrap().is_empty());
        assert!(shard.range(2, i64::MIN, i64::MAX).await.unwrap().is_empty());
        assert_eq!(
            shard.range(3, i64::MIN, i64::MAX).await.unwrap(),
            plant(3, now, 10)
        );
        shard.close().await.unwrap();
    });
}

#[test]
fn close_writes_no_chunk_and_the_reopen_reads_the_buffer_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small(dir.path());
    // A WAL budget these writes stay well inside: nothing asks for a flush.
    cfg.wal_segment_size = 1 << 20;
    cfg.wal_budget = 64 << 20;
    let c2 = cfg.clone();
    let c3 = cfg.dir.clone();
    life(move || async move {
        let shard = Shard::open(cfg).await.unwrap();
        for tag in 0..2_000 {
            shard.write(&plant(tag, 0, 3)).await.unwrap();
        }
        assert_eq!(shard.stats().blocks_written, 0);
        shard.close().await.unwrap();
    });
    assert!(
        std::fs::read_dir(dir.path().join("chunks"))
            .unwrap()
            .next()
            .is_none(),
        "close wrote a chunk"
    );
    assert!(
        dir_has_snapshot(dir.path()),
        "close wrote no buffer snapshot"
    );
    life(move || async move {
        let shard = Shard::open(c2).await.unwrap();
        // The buffers came back from the close's snapshot; the WAL's
        // 2,000 records were read (to check they end where it does), not
        // replayed.
        let r = shard.recovery();
        assert_eq!(r.snapshot_points, 6_000, "{r}");
        assert_eq!(r.wal_points_replayed, 0, "{r}");
        assert_eq!(r.wal_records_skipped, 2_000, "{r}");
        assert!(!dir_has_snapshot(&c3), "the snapshot is consumed at open");
        for tag in (0..2_000).step_by(97) {
            assert_eq!(
                shard.range(tag, i64::MIN, i64::MAX).await.unwrap(),
                plant(tag, 0, 3)
            );
        }
        shard.close().await.unwrap();
    });
}

fn dir_has_snapshot(dir: &std::path::Path) -> bool {
    dir.join(xtdb::storage::snapshot::FILE_NAME).exists()
}
