//! Two shards, concurrent clients writing overlapping tag sets: every
//! acknowledged point is readable exactly once, from the shard that owns
//! its tag; multi-tag latest merges the owners' answers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod net_common;
use net_common as common;

use std::collections::BTreeMap;

use xtdb::net::Client;
use xtdb::runtime::router::owner;
use xtdb::Point;

const CLIENTS: u32 = 4;
const BATCHES: u32 = 10;
const PER_BATCH: u32 = 500;
const TAGS: u32 = 64;

/// The points client `c` writes in batch `b`: tags overlap across clients,
/// timestamps are unique per client so every point is distinct.
fn batch(c: u32, b: u32) -> Vec<Point> {
    (0..PER_BATCH)
        .map(|i| {
            let tag = (i * 7 + c * 13 + b) % TAGS;
            let ts = ((c as i64) << 32) | ((b as i64) << 16) | i as i64;
            Point::new(tag, ts, (c * 1_000_000 + b * 1000 + i) as f64, 192)
        })
        .collect()
}

#[test]
fn concurrent_writes_are_readable_exactly_once_on_the_owner() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::server(dir.path());
    let addr = server.local_addr().to_string();

    let (acked, ranges, latest, stats) = common::client(move || async move {
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let addr = addr.clone();
                glommio::spawn_local(async move {
                    let mut cl = Client::connect(&addr).await.unwrap();
                    let mut acked = Vec::new();
                    for b in 0..BATCHES {
                        let pts = batch(c, b);
                        let n = cl.write(&pts).await.unwrap();
                        assert_eq!(n, pts.len() as u64);
                        acked.extend(pts);
                    }
                    acked
                })
            })
            .collect();
        let mut acked = Vec::new();
        for t in tasks {
            acked.extend(t.await);
        }
        let mut cl = Client::connect(&addr).await.unwrap();
        let mut ranges = BTreeMap::new();
        for tag in 0..TAGS + 1 {
            ranges.insert(tag, cl.range(tag, i64::MIN, i64::MAX).await.unwrap());
        }
        let tags: Vec<u32> = (0..TAGS + 1).rev().collect();
        let latest = (tags.clone(), cl.latest(&tags).await.unwrap());
        assert_eq!(cl.write(&[]).await.unwrap(), 0);
        let stats = cl.stats().await.unwrap();
        (acked, ranges, latest, stats)
    });

    // Expected: every acknowledged point, per tag, sorted by timestamp.
    let mut expected: BTreeMap<u32, Vec<Point>> = BTreeMap::new();
    for p in &acked {
        expected.entry(p.tag).or_default().push(*p);
    }
    for v in expected.values_mut() {
        v.sort_by_key(|p| p.ts);
    }
    assert_eq!(acked.len() as u32, CLIENTS * BATCHES * PER_BATCH);
    for tag in 0..TAGS + 1 {
        let want = expected.get(&tag).cloned().unwrap_or_default();
        assert_eq!(ranges[&tag], want, "tag {tag}");
    }

    let (tags, got) = latest;
    for (tag, got) in tags.iter().zip(got) {
        assert_eq!(
            got,
            expected.get(tag).and_then(|v| v.last().copied()),
            "tag {tag}"
        );
    }

    // Each shard stored exactly the points it owns.
    let stat = |name: &str| {
        stats
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no stat {name}"))
    };
    for shard in 0..2 {
        let owned = acked.iter().filter(|p| owner(p.tag, 2) == shard).count() as u64;
        assert!(owned > 0);
        assert_eq!(stat(&format!("shard{shard}.points_written")), owned);
    }
    assert_eq!(stat("total.points_written"), acked.len() as u64);
    assert_eq!(stat("shards"), 2);
    // Every write batch, plus the empty one.
    assert_eq!(stat("total.ack_count"), (CLIENTS * BATCHES) as u64 + 1);
    assert!(stat("total.ack_p99_us") > 0);
    assert!(stat("total.ack_max_us") >= stat("total.ack_p50_us"));

    server.stop().unwrap();
}
