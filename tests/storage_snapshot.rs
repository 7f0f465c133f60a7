//! The buffer snapshot a clean close writes (`xtdb::storage::snapshot`):
//! the next open puts the buffers back from it instead of replaying the
//! WAL, with exactly the answers a replay gives, and never uses one that
//! does not match: a stale snapshot (the WAL went on after it), a damaged
//! one, or one whose checkpoint the chunks no longer have are ignored and
//! the WAL is replayed. Every answer is checked against a model of
//! later-write-wins.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/rng.rs"]
mod rng;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::life;
use rng::Rng;
use xtdb::storage::{snapshot, Shard, ShardConfig};
use xtdb::Point;

type Model = BTreeMap<(u32, i64), Point>;

fn config(dir: &Path) -> ShardConfig {
    let mut c = ShardConfig::new(dir);
    c.wal_segment_size = 64 << 10;
    c.wal_budget = 4 << 20;
    c.blocks_per_chunk = 8;
    c.memory_budget = 8 << 20;
    c.flush_age = Duration::from_secs(3600);
    common::manual_compaction(&mut c);
    c
}

/// Random batches over 40 tags: mostly in order, some out of order, some
/// rewrites of earlier timestamps with new values.
fn batches(rng: &mut Rng, life: u64, n: usize, model: &mut Model) -> Vec<Vec<Point>> {
    let mut out = Vec::new();
    for b in 0..n {
        let mut batch = Vec::new();
        for i in 0..30u64 {
            let tag = (rng.next() % 40) as u32;
            let ts = match rng.next() % 10 {
                0 => (rng.next() % 2_000) as i64,
                1 => (rng.next() % 200) as i64 * 10,
                _ => (life * 100_000 + b as u64 * 40 + i) as i64,
            };
            let p = Point::new(
                tag,
                ts,
                (life * 1_000_000 + b as u64 * 100 + i) as f64 + 0.5,
                192,
            );
            model.insert((tag, ts), p);
            batch.push(p);
        }
        out.push(batch);
    }
    out
}

async fn check(shard: &Shard, model: &Model, when: &str) {
    for tag in 0..40u32 {
        let want: Vec<Point> = model
            .range((tag, i64::MIN)..(tag + 1, i64::MIN))
            .map(|(_, p)| *p)
            .collect();
        let got = shard.range(tag, i64::MIN, i64::MAX).await.unwrap();
        assert_eq!(got, want, "tag {tag} {when}: {}", shard.recovery());
    }
}

/// One life: open, check, write `n` batches (flushing if asked), check, close.
fn run_life(
    dir: &Path,
    seed: u64,
    n: usize,
    flush: bool,
    model: Model,
) -> (Model, xtdb::storage::RecoveryReport) {
    let cfg = config(dir);
    life(move || async move {
        let mut model = model;
        let shard = Shard::open(cfg).await.unwrap();
        let report = shard.recovery();
        check(&shard, &model, "after open").await;
        let mut rng = Rng::seeded(seed);
        for (i, b) in batches(&mut rng, seed, n, &mut model)
            .into_iter()
            .enumerate()
        {
            shard.write(&b).await.unwrap();
            if flush && i % 7 == 3 {
                shard.flush().await.unwrap();
            }
        }
        check(&shard, &model, "before close").await;
        shard.close().await.unwrap();
        (model, report)
    })
}

fn snap_path(dir: &Path) -> std::path::PathBuf {
    dir.join(snapshot::FILE_NAME)
}

#[test]
fn a_clean_close_saves_the_replay_and_answers_stay_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let (mut model, _) = run_life(dir.path(), 1, 60, false, Model::new());
    assert!(snap_path(dir.path()).exists());
    for seed in 2..6 {
        let (m, report) = run_life(dir.path(), seed, 40, seed % 2 == 0, model);
        model = m;
        assert!(report.snapshot_points > 0, "life {seed}: {report}");
        assert_eq!(report.wal_points_replayed, 0, "life {seed}: {report}");
    }
    // And once more, compacted in between.
    let cfg = config(dir.path());
    let m2 = model.clone();
    life(move || async move {
        let shard = Shard::open(cfg).await.unwrap();
        check(&shard, &m2, "reopened").await;
        shard.compact().await.unwrap();
        check(&shard, &m2, "compacted").await;
        shard.close().await.unwrap();
    });
    run_life(dir.path(), 9, 10, false, model);
}

#[test]
fn a_stale_damaged_or_mismatched_snapshot_is_ignored() {
    for case in ["stale", "stale after a flush", "damaged", "cut short"] {
        let dir = tempfile::tempdir().unwrap();
        let (model, _) = run_life(dir.path(), 11, 50, false, Model::new());
        let old = std::fs::read(snap_path(dir.path())).unwrap();
        let flush = case == "stale after a flush";
        let (model, report) = run_life(dir.path(), 12, 30, flush, model);
        assert!(report.snapshot_points > 0, "{case}: {report}");
        match case {
            "damaged" => {
                let mut b = std::fs::read(snap_path(dir.path())).unwrap();
                let i = b.len() / 3;
                b[i] ^= 0x10;
                std::fs::write(snap_path(dir.path()), b).unwrap();
            }
            "cut short" => {
                let b = std::fs::read(snap_path(dir.path())).unwrap();
                std::fs::write(snap_path(dir.path()), &b[..b.len() / 2]).unwrap();
            }
            // The snapshot of the first life, though the WAL went on.
            _ => std::fs::write(snap_path(dir.path()), &old).unwrap(),
        }
        let (_, report) = run_life(dir.path(), 13, 5, false, model);
        assert_eq!(report.snapshot_points, 0, "{case}: {report}");
        assert!(report.wal_points_replayed > 0, "{case}: {report}");
    }
}
