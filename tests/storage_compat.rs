//! Data written by the previous format still opens and is rewritten by
//! compaction. `tests/fixtures/v1-shard` is a shard directory written by
//! format 1 (as commit ab77aab wrote it): a sealed chunk and an active
//! one of one-tag blocks (compressed, plus one raw block from before
//! compression), rewrites of earlier points, and unflushed writes left in
//! the WAL by a crash. `expected.txt` lists every point it must answer
//! (`tag ts value-bits quality`).
//!
//! `tests/fixtures/v2-shard` was written by format 2 (commit 439c273, the
//! last before rollups) from [`v2_writes`]: a sealed compacted chunk of
//! version 2 (summaries, no rollups), the active flush chunk, and a WAL
//! tail left by a crash; the expected points are [`v2_writes`]'s, the later
//! write winning. It was made by a test in that checkout that opened
//! `small(dir)` with 4 blocks per chunk, wrote batch 0, flushed and
//! compacted, wrote batch 1 and flushed, wrote batch 2 and dropped the
//! shard.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{life, small};
use xtdb::aggregate::{Func, Slot, WindowSpec};
use xtdb::storage::{Shard, ShardConfig};
use xtdb::Point;

/// The writes of the format 2 fixture, in order: `(batch, points)`;
/// batch 0 was flushed and compacted, batch 1 flushed (a sealed flush
/// chunk and the active one), batch 2 left in the WAL by a crash. Later
/// batches rewrite some earlier timestamps.
fn v2_writes() -> Vec<(u32, Vec<Point>)> {
    let t0 = 1_764_000_000_000_000i64; // on a minute boundary
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut out = Vec::new();
    for (batch, (from, to)) in [(0i64, 1500i64), (1200, 2100), (2000, 2400)]
        .into_iter()
        .enumerate()
    {
        let mut pts = Vec::new();
        for tag in 1..=4u32 {
            for i in from..to {
                let r = next();
                let v = ((r >> 20) % 5000) as f64 / 10.0 + f64::from(tag) * 1000.0;
                let q = if r.is_multiple_of(11) { 0 } else { 192 };
                pts.push(Point::new(tag, t0 + i * 1_000_000, v, q));
            }
        }
        out.push((batch as u32, pts));
    }
    out
}

/// The visible points of [`v2_writes`] per tag.
fn v2_expected() -> BTreeMap<u32, Vec<Point>> {
    let mut by: BTreeMap<(u32, i64), Point> = BTreeMap::new();
    for (_, pts) in v2_writes() {
        for p in pts {
            by.insert((p.tag, p.ts), p);
        }
    }
    let mut m: BTreeMap<u32, Vec<Point>> = BTreeMap::new();
    for ((tag, _), p) in by {
        m.entry(tag).or_default().push(p);
    }
    m
}

fn fixture_v2() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/v2-shard"
    ))
}

fn fixture() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/v1-shard"
    ))
}

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), to).unwrap();
        }
    }
}

fn expected() -> BTreeMap<u32, Vec<Point>> {
    let text = std::fs::read_to_string(fixture().join("expected.txt")).unwrap();
    let mut m: BTreeMap<u32, Vec<Point>> = BTreeMap::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let p = Point::new(
            f[0].parse().unwrap(),
            f[1].parse().unwrap(),
            f64::from_bits(u64::from_str_radix(f[2], 16).unwrap()),
            f[3].parse().unwrap(),
        );
        m.entry(p.tag).or_default().push(p);
    }
    m
}

/// A copy of fixture `src` in a new temporary directory, with three
/// configurations of it (one per life).
fn copied(src: &Path) -> (tempfile::TempDir, [ShardConfig; 3]) {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(src, dir.path());
    let c = [config(dir.path()), config(dir.path()), config(dir.path())];
    (dir, c)
}

fn config(dir: &Path) -> ShardConfig {
    let mut c = small(dir);
    c.blocks_per_chunk = 4;
    c
}

async fn check(shard: &Shard, want: &BTreeMap<u32, Vec<Point>>, when: &str) {
    for (tag, pts) in want {
        let got = shard.range(*tag, i64::MIN, i64::MAX).await.unwrap();
        assert_eq!(&got, pts, "tag {tag} {when}");
        assert_eq!(
            shard.latest(*tag).await.unwrap(),
            pts.last().copied(),
            "latest of tag {tag} {when}"
        );
        let mid = pts[pts.len() / 2].ts;
        let part: Vec<Point> = pts.iter().filter(|p| p.ts >= mid).copied().collect();
        assert_eq!(
            shard.range(*tag, mid, i64::MAX).await.unwrap(),
            part,
            "tag {tag} from {mid} {when}"
        );
    }
}

#[test]
fn a_format_1_shard_opens_and_compaction_rewrites_it() {
    let want = expected();
    assert!(want.len() >= 6 && want.values().map(Vec::len).sum::<usize>() > 2000);
    let (dir, [c1, c2, c3]) = copied(fixture());
    let w = want.clone();
    life(move || async move {
        let shard = Shard::open(c1).await.unwrap();
        let r = shard.recovery();
        assert!(r.chunks_loaded == 2 && r.wal_points_replayed > 0, "{r}");
        check(&shard, &w, "after opening format 1").await;
        let s = shard.stats();
        assert!(s.disk_v1_bytes > 0, "{s:?}");
        assert!(shard.compact().await.unwrap());
        let s = shard.stats();
        assert_eq!(s.disk_v1_bytes, 0, "version 1 chunks remain: {s:?}");
        assert!(s.disk_compacted_bytes > 0 && s.compactions >= 1, "{s:?}");
        check(&shard, &w, "after compaction").await;
        shard.close().await.unwrap();
    });
    let text = std::fs::read_to_string(dir.path().join("FORMAT")).unwrap();
    assert!(text.starts_with("xtdb shard\nformat 3\n"), "{text:?}");
    // No file of format 1 is left; the data is all in compacted chunks.
    for e in std::fs::read_dir(dir.path().join("chunks")).unwrap() {
        let b = std::fs::read(e.unwrap().path()).unwrap();
        assert_eq!(u32::from_le_bytes([b[8], b[9], b[10], b[11]]), 3);
    }
    let w = want.clone();
    life(move || async move {
        let shard = Shard::open(c2).await.unwrap();
        check(&shard, &w, "after reopening").await;
        drop(shard); // crash
    });
    life(move || async move {
        let shard = Shard::open(c3).await.unwrap();
        check(&shard, &want, "after a crash").await;
        shard.close().await.unwrap();
    });
}

/// 1-minute means of `pts` over `[start, start + n minutes)`, brute force.
fn minute_means(pts: &[Point], start: i64, n: usize) -> Vec<Slot> {
    let mut acc = vec![(0.0f64, 0u32); n];
    for p in pts {
        let k = (p.ts - start).div_euclid(60_000_000);
        if (0..n as i64).contains(&k) && !p.value.is_nan() {
            acc[k as usize].0 += p.value;
            acc[k as usize].1 += 1;
        }
    }
    acc.into_iter()
        .map(|(s, c)| {
            if c == 0 {
                Slot::Empty
            } else {
                Slot::Value(s / f64::from(c))
            }
        })
        .collect()
}

async fn check_means(shard: &Shard, want: &BTreeMap<u32, Vec<Point>>, when: &str) -> u64 {
    let start = 1_764_000_000_000_000i64;
    let n = 42;
    let spec = WindowSpec::new(start, start + n as i64 * 60_000_000, 60_000_000, 0, 1000).unwrap();
    let r0 = shard.stats().agg_segments_from_rollup;
    for (tag, pts) in want {
        let (got, _) = shard
            .aggregate(*tag, &spec, Func::Mean, false, false)
            .await
            .unwrap();
        let exp = minute_means(pts, start, n);
        for (k, (g, w)) in got.iter().zip(&exp).enumerate() {
            match (g, w) {
                (Slot::Value(a), Slot::Value(b)) => assert!(
                    (a - b).abs() <= 1e-9 * b.abs().max(1.0),
                    "tag {tag} minute {k} {when}: {a} vs {b}"
                ),
                _ => assert_eq!(g, w, "tag {tag} minute {k} {when}"),
            }
        }
    }
    shard.stats().agg_segments_from_rollup - r0
}

#[test]
fn a_format_2_shard_opens_and_compaction_gives_it_rollups() {
    let want = v2_expected();
    assert_eq!(want.len(), 4);
    let (dir, [c1, c2, c3]) = copied(fixture_v2());
    let w = want.clone();
    life(move || async move {
        let shard = Shard::open(c1).await.unwrap();
        let r = shard.recovery();
        assert!(r.chunks_loaded == 2 && r.wal_points_replayed > 0, "{r}");
        check(&shard, &w, "after opening format 2").await;
        // Version 2 summaries still answer; there are no rollups yet.
        assert_eq!(check_means(&shard, &w, "after opening format 2").await, 0);
        assert_eq!(shard.stats().disk_rollup_bytes, 0);
        shard.flush().await.unwrap();
        assert!(shard.compact().await.unwrap());
        let s = shard.stats();
        assert!(
            s.compaction_rollup_bytes > 0 && s.disk_rollup_bytes > 0,
            "{s:?}"
        );
        check(&shard, &w, "after compaction").await;
        assert!(check_means(&shard, &w, "after compaction").await > 0);
        shard.close().await.unwrap();
    });
    let text = std::fs::read_to_string(dir.path().join("FORMAT")).unwrap();
    assert!(text.starts_with("xtdb shard\nformat 3\n"), "{text:?}");
    // Every compacted chunk is version 3 now (and the data is in them).
    let mut compacted = 0;
    for e in std::fs::read_dir(dir.path().join("chunks")).unwrap() {
        let b = std::fs::read(e.unwrap().path()).unwrap();
        let kind = u32::from_le_bytes([b[12], b[13], b[14], b[15]]);
        if kind == 1 {
            compacted += 1;
            assert_eq!(u32::from_le_bytes([b[8], b[9], b[10], b[11]]), 3);
        }
    }
    assert!(compacted > 0);
    let w = want.clone();
    life(move || async move {
        let shard = Shard::open(c2).await.unwrap();
        check(&shard, &w, "after reopening").await;
        assert!(check_means(&shard, &w, "after reopening").await > 0);
        drop(shard); // crash
    });
    life(move || async move {
        let shard = Shard::open(c3).await.unwrap();
        check(&shard, &want, "after a crash").await;
        shard.close().await.unwrap();
    });
}
