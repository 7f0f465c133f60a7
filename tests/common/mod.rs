//! Helpers shared by the storage tests: each "life" of a shard runs in a
//! fresh glommio executor on its own thread, so a shard dropped without
//! `close` dies with its tasks, like a process killed with -9 (the page cache
//! survives, as it does for kill -9).
//!
//! Measured: glommio 0.9 keeps one fd per finished executor, and a shard
//! dropped without `close` keeps its files open (glommio does not drop
//! pending tasks when an executor exits). A server has one executor per core
//! for its lifetime, so this only bounds how many lives one test process can
//! run (~1,000 with the default `ulimit -n`).
#![allow(dead_code)]

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};
use xtdb::storage::ShardConfig;
use xtdb::Point;

/// Runs `f` to completion in a fresh executor and returns its output.
pub fn life<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(1 << 20)
        .spawn(f)
        .expect("spawn executor")
        .join()
        .expect("executor thread")
}

/// A shard config with tiny segments and chunks so tests cross every
/// boundary (rotation, recycling, sealing) with little data. Compaction
/// runs only when a test asks (`Shard::compact`): the tests' timestamps are
/// in 1970, whose partitions are long closed, so it would otherwise start
/// at once and at a moment no test chose.
pub fn small(dir: &Path) -> ShardConfig {
    let mut c = ShardConfig::new(dir);
    c.wal_segment_size = 64 * 1024;
    c.wal_budget = 256 * 1024;
    c.blocks_per_chunk = 8;
    c.memory_budget = 64 << 20;
    c.flush_age = Duration::from_secs(3600);
    manual_compaction(&mut c);
    c
}

/// Switches off the compaction the shard would start by itself.
pub fn manual_compaction(c: &mut ShardConfig) {
    c.close_grace = Duration::from_secs(1 << 40);
    c.settle_after = Duration::from_secs(1 << 40);
    c.compact_backlog = u64::MAX;
}

/// A deterministic value for `(tag, ts, version)`.
pub fn value(tag: u32, ts: i64, version: u32) -> f64 {
    (tag as f64) * 1000.0 + ts as f64 * 0.001 + version as f64 * 0.5
}

/// `n` points of `tag` at timestamps `start, start+step, ...`.
pub fn series(tag: u32, start: i64, step: i64, n: usize, version: u32) -> Vec<Point> {
    (0..n as i64)
        .map(|i| {
            let ts = start + i * step;
            Point::new(tag, ts, value(tag, ts, version), 192)
        })
        .collect()
}
