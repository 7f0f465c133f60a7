//! A full disk (the hostile-use issue's case 8), simulated the way ext4
//! shows it to files that are preallocated ahead: creating or growing a
//! file fails with ENOSPC, writes into space already allocated succeed.
//! The shard must keep serving reads, take writes as far as the room left
//! allows, refuse the rest with a no-space error that says what it needs
//! (never fence itself: nothing was written when the space ran out), and
//! take writes again by itself once space is freed, without a restart.
//! Nothing acknowledged may be lost, and nothing refused may be stored.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::life;
use xtdb::storage::fault::FaultPlan;
use xtdb::storage::{Error, Shard, ShardConfig};
use xtdb::Point;

fn config(dir: &std::path::Path) -> ShardConfig {
    let mut c = ShardConfig::new(dir);
    c.wal_segment_size = 8192;
    c.wal_budget = 32 * 1024;
    c.blocks_per_chunk = 4;
    c.memory_budget = 2048;
    c.flush_age = Duration::from_secs(3600);
    common::manual_compaction(&mut c);
    c
}

/// Batch `n`: 20 points over 7 tags, unique timestamps.
fn batch(n: u64) -> Vec<Point> {
    (0..20u64)
        .map(|i| {
            let tag = (i % 7) as u32;
            let ts = (n * 100 + i) as i64;
            Point::new(tag, ts, tag as f64 * 1e6 + ts as f64 + 0.5, 192)
        })
        .collect()
}

fn stat(shard: &Shard, name: &str) -> u64 {
    shard
        .stats()
        .fields()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
        .unwrap()
}

async fn check_present(shard: &Shard, points: &[Point]) {
    for p in points {
        assert_eq!(
            shard.range(p.tag, p.ts, p.ts + 1).await.unwrap(),
            vec![*p],
            "acknowledged point {p:?}"
        );
    }
}

async fn check_absent(shard: &Shard, points: &[Point]) {
    for p in points {
        assert!(
            shard.range(p.tag, p.ts, p.ts + 1).await.unwrap().is_empty(),
            "refused point {p:?} was stored"
        );
    }
}

/// Writes batches from `n` on until one is refused; returns the refusal.
async fn write_until_refused(
    shard: &Shard,
    n: &mut u64,
    acked: &mut Vec<Point>,
) -> (Error, Vec<Point>) {
    loop {
        let b = batch(*n);
        *n += 1;
        match shard.write(&b).await {
            Ok(()) => acked.extend(b),
            Err(e) => return (e, b),
        }
        assert!(*n < 20_000, "the full disk never stopped a write");
    }
}

#[test]
fn a_full_disk_refuses_writes_serves_reads_and_resumes_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let c2 = cfg.clone();
    let (acked, refused) = life(move || async move {
        let plan = FaultPlan::new();
        plan.install();
        let shard = Shard::open(cfg).await.unwrap();
        let (mut acked, mut refused) = (Vec::new(), Vec::new());
        let mut n = 0;
        for _ in 0..30 {
            let b = batch(n);
            n += 1;
            shard.write(&b).await.unwrap();
            acked.extend(b);
        }
        plan.set_enospc_on_allocate(true);
        for round in 0..3 {
            let (err, b) = write_until_refused(&shard, &mut n, &mut acked).await;
            assert!(
                !matches!(err, Error::Fenced { .. }) && err.is_no_space(),
                "round {round}: {err}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains("disk full") && msg.contains("MiB") && msg.contains("resumes"),
                "{msg}"
            );
            refused.extend(b);
            // Still refused while full, and reads are served meanwhile.
            let b = batch(n);
            n += 1;
            let again = shard.write(&b).await.unwrap_err();
            assert!(again.is_no_space(), "{again}");
            refused.extend(b);
            assert_eq!(stat(&shard, "disk_full"), 1);
            assert!(stat(&shard, "disk_full_refusals") >= 2);
            check_present(&shard, &acked).await;
            check_absent(&shard, &refused).await;

            // Space comes back: the shard notices within a few seconds,
            // without a restart, and every write is taken from then on.
            plan.set_enospc_on_allocate(false);
            let freed = Instant::now();
            while stat(&shard, "disk_full") == 1 {
                assert!(
                    freed.elapsed() < Duration::from_secs(10),
                    "the shard did not notice the freed space: {}",
                    shard.debug_state()
                );
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
            for _ in 0..50 {
                let b = batch(n);
                n += 1;
                shard.write(&b).await.unwrap();
                acked.extend(b);
            }
            shard.flush().await.unwrap();
            assert_eq!(stat(&shard, "disk_full"), 0);
            check_present(&shard, &acked).await;
            check_absent(&shard, &refused).await;
            plan.set_enospc_on_allocate(true);
        }
        plan.set_enospc_on_allocate(false);
        shard.close().await.unwrap();
        FaultPlan::uninstall();
        (acked, refused)
    });
    life(move || async move {
        let shard = Shard::open(c2).await.unwrap();
        check_present(&shard, &acked).await;
        check_absent(&shard, &refused).await;
        shard.close().await.unwrap();
    });
}

#[test]
fn a_shard_opens_on_a_full_disk_serves_reads_and_takes_writes_once_space_returns() {
    for existing in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let (c2, c3) = (cfg.clone(), cfg.clone());
        let acked = if existing {
            life(move || async move {
                let shard = Shard::open(cfg).await.unwrap();
                let mut acked = Vec::new();
                for n in 0..40 {
                    let b = batch(n);
                    shard.write(&b).await.unwrap();
                    acked.extend(b);
                }
                shard.close().await.unwrap();
                acked
            })
        } else {
            Vec::new()
        };
        let acked = life(move || async move {
            let plan = FaultPlan::new();
            plan.install();
            plan.set_enospc_on_allocate(true);
            let shard = Shard::open(c2).await.unwrap();
            check_present(&shard, &acked).await;
            let mut acked = acked;
            let mut n = 1000;
            let (err, refused) = write_until_refused(&shard, &mut n, &mut acked).await;
            assert!(
                !matches!(err, Error::Fenced { .. }) && err.is_no_space(),
                "existing {existing}: {err}"
            );
            check_present(&shard, &acked).await;
            check_absent(&shard, &refused).await;
            plan.set_enospc_on_allocate(false);
            let freed = Instant::now();
            while stat(&shard, "disk_full") == 1 {
                assert!(freed.elapsed() < Duration::from_secs(10), "no resume");
                glommio::timer::sleep(Duration::from_millis(50)).await;
            }
            for _ in 0..40 {
                let b = batch(n);
                n += 1;
                shard.write(&b).await.unwrap();
                acked.extend(b);
            }
            shard.close().await.unwrap();
            FaultPlan::uninstall();
            acked
        });
        life(move || async move {
            let shard = Shard::open(c3).await.unwrap();
            check_present(&shard, &acked).await;
            shard.close().await.unwrap();
        });
    }
}
