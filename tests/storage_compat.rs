//! Data written by the previous format still opens and is rewritten by
//! compaction. `tests/fixtures/v1-shard` is a shard directory written by
//! format 1 (as commit ab77aab wrote it): a sealed chunk and an active
//! one of one-tag blocks (compressed, plus one raw block from before
//! compression), rewrites of earlier points, and unflushed writes left in
//! the WAL by a crash. `expected.txt` lists every point it must answer
//! (`tag ts value-bits quality`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{life, small};
use xtdb::storage::{Shard, ShardConfig};
use xtdb::Point;

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
    let dir = tempfile::tempdir().unwrap();
    copy_dir(fixture(), dir.path());
    let (c1, c2, c3) = (config(dir.path()), config(dir.path()), config(dir.path()));
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
    assert!(text.starts_with("xtdb shard\nformat 2\n"), "{text:?}");
    // No file of format 1 is left; the data is all in compacted chunks.
    for e in std::fs::read_dir(dir.path().join("chunks")).unwrap() {
        let b = std::fs::read(e.unwrap().path()).unwrap();
        assert_eq!(u32::from_le_bytes([b[8], b[9], b[10], b[11]]), 2);
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
