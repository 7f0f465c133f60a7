//! Single-shard benchmarks (targets, not tests). Run:
//!
//! ```text
//! cargo bench --bench shard -- all            # every figure below
//! cargo bench --bench shard -- ingest --batch 10000
//! ```
//!
//! - `ingest`: in-process writes with sync `always`, several concurrent
//!   writers (group commit), 100,000 tags; points/s acknowledged.
//! - `query`: `range` over 100 blocks read from disk (O_DIRECT, no page
//!   cache) after a reopen; latency percentiles.
//! - `replay`: WAL replay speed at open after a crash (GB/s of WAL).
//! - `memory`: RSS growth per buffered point.
//!
//! The executor is pinned to `--cpu` (default 1). Data lives in a temporary
//! directory under `--dir` (default the system temp dir).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use glommio::{LocalExecutorBuilder, Placement};
use hdrhistogram::Histogram;
use xtdb::storage::{Shard, ShardConfig};
use xtdb::Point;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    what: What,
    /// CPU to pin the shard's executor to.
    #[arg(long, default_value_t = 1, global = true)]
    cpu: usize,
    /// Parent directory for the temporary data directory.
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    /// Ignored (cargo bench passes it).
    #[arg(long, global = true, hide = true)]
    bench: bool,
}

#[derive(Subcommand)]
enum What {
    /// Ingest throughput.
    Ingest {
        #[arg(long, default_value_t = 10_000)]
        batch: usize,
        #[arg(long, default_value_t = 4)]
        writers: usize,
        #[arg(long, default_value_t = 30_000_000)]
        points: u64,
        #[arg(long, default_value_t = 100_000)]
        tags: u32,
    },
    /// 100-block range queries from disk.
    Query {
        #[arg(long, default_value_t = 100)]
        blocks: usize,
        #[arg(long, default_value_t = 300)]
        queries: usize,
        /// Points per block written for the queried tag; 0 = as many as
        /// fit a compressed block (960 reproduces the raw-block query).
        #[arg(long, default_value_t = 0)]
        per_block: u64,
        /// Tags interleaved with the queried one.
        #[arg(long, default_value_t = 100)]
        tags: u32,
    },
    /// WAL replay speed.
    Replay {
        #[arg(long, default_value_t = 24_000_000)]
        points: u64,
    },
    /// RSS per buffered point.
    Memory {
        #[arg(long, default_value_t = 10_000_000)]
        points: u64,
    },
    /// All of the above with defaults.
    All,
}

fn main() {
    let args = Args::parse();
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let cpu = args.cpu;
    let run = |what: What| {
        let dir = tempfile::tempdir_in(&parent).expect("temp dir");
        let path = dir.path().to_path_buf();
        LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .spawn(move || async move {
                match what {
                    What::Ingest {
                        batch,
                        writers,
                        points,
                        tags,
                    } => ingest(path, batch, writers, points, tags).await,
                    What::Query {
                        blocks,
                        queries,
                        per_block,
                        tags,
                    } => query(path, blocks, queries, per_block, tags).await,
                    What::Replay { points } => replay(path, points).await,
                    What::Memory { points } => memory(path, points).await,
                    What::All => unreachable!(),
                }
            })
            .expect("executor")
            .join()
            .expect("bench thread");
    };
    match args.what {
        What::All => {
            for batch in [1_000, 5_000, 10_000] {
                run(What::Ingest {
                    batch,
                    writers: 4,
                    points: 30_000_000,
                    tags: 100_000,
                });
            }
            run(What::Query {
                blocks: 100,
                queries: 300,
                per_block: 0,
                tags: 100,
            });
            run(What::Replay { points: 24_000_000 });
            run(What::Memory { points: 10_000_000 });
        }
        w => run(w),
    }
}

fn value(tag: u32, ts: i64) -> f64 {
    ((tag as i64 * 31 + ts) % 10_000) as f64 * 0.01
}

/// Batch `n` of a round-robin over `tags` tags, one point per tag per tick.
fn make_batch(start: u64, size: usize, tags: u32) -> Vec<Point> {
    (0..size as u64)
        .map(|i| {
            let k = start + i;
            let tag = (k % tags as u64) as u32;
            let ts = 1_700_000_000_000_000 + (k / tags as u64) as i64 * 1_000_000;
            Point::new(tag, ts, value(tag, ts), 192)
        })
        .collect()
}

async fn ingest(dir: PathBuf, batch: usize, writers: usize, points: u64, tags: u32) {
    let shard = Shard::open(ShardConfig::new(&dir)).await.unwrap();
    let next = std::rc::Rc::new(std::cell::Cell::new(0u64));
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (shard, next) = (shard.clone(), next.clone());
            glommio::spawn_local(async move {
                loop {
                    let start = next.get();
                    if start >= points {
                        break;
                    }
                    next.set(start + batch as u64);
                    let b = make_batch(start, batch, tags);
                    shard.write(&b).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await;
    }
    let secs = started.elapsed().as_secs_f64();
    let s = shard.stats();
    println!(
        "ingest: batch {batch}, {writers} writers, {tags} tags, sync always: {:.2} M points/s ({} points in {secs:.2} s; {} WAL syncs, {:.1} records/sync, {} flushes, {} blocks, max flush {:.0} ms, {} backpressure waits)",
        s.points_written as f64 / secs / 1e6,
        s.points_written,
        s.wal_syncs,
        s.wal_synced_records as f64 / s.wal_syncs.max(1) as f64,
        s.flushes,
        s.blocks_written,
        s.flush_max_micros as f64 / 1e3,
        s.backpressure_waits,
    );
    shard.close().await.unwrap();
}

/// Points of tag 0's series (`value(0, ts)`, ts = 0, 1, ..) that fill one
/// compressed block, by the buffers' sealing rule.
fn points_per_compressed_block() -> u64 {
    use xtdb::storage::block::PAYLOAD_CAPACITY;
    use xtdb::storage::codec::{Encoder, MAX_POINT_BYTES};
    let mut e = Encoder::default();
    let mut ts = 0;
    while e.payload_len() + MAX_POINT_BYTES <= PAYLOAD_CAPACITY {
        e.push(ts, value(0, ts).to_bits(), 192);
        ts += 1;
    }
    e.count() as u64
}

async fn query(dir: PathBuf, blocks: usize, queries: usize, per_block: u64, tags: u32) {
    let cfg = ShardConfig::new(&dir);
    let per_block = match per_block {
        0 => points_per_compressed_block(),
        n => n,
    };
    {
        let shard = Shard::open(cfg.clone()).await.unwrap();
        // Tag 0 gets `blocks` blocks' worth; other tags interleave so its
        // blocks are spread across the chunk like a real plant's.
        let mut ts = 0i64;
        for _ in 0..blocks {
            let mut b = Vec::with_capacity(per_block as usize * tags as usize);
            for tag in 0..tags {
                for i in 0..per_block as i64 {
                    b.push(Point::new(tag, ts + i, value(tag, ts + i), 192));
                }
            }
            ts += per_block as i64;
            shard.write(&b).await.unwrap();
        }
        shard.flush().await.unwrap();
        shard.close().await.unwrap();
    }
    let shard = Shard::open(cfg).await.unwrap();
    let mut h = Histogram::<u64>::new(3).unwrap();
    let mut n = 0;
    for _ in 0..queries {
        let t = Instant::now();
        let pts = shard.range(0, 0, ts_end(blocks, per_block)).await.unwrap();
        h.record(t.elapsed().as_micros() as u64).unwrap();
        n = pts.len();
    }
    let s = shard.stats();
    let p50 = h.value_at_quantile(0.5) as f64 / 1e3;
    println!(
        "query: range over {blocks} blocks' worth ({per_block} points each, {n} points, {:.1} blocks read per query) from disk, O_DIRECT: p50 {p50:.2} ms ({:.1} M points/s), p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} queries, {} blocks read)",
        s.blocks_read as f64 / queries as f64,
        n as f64 / p50 / 1e3,
        h.value_at_quantile(0.9) as f64 / 1e3,
        h.value_at_quantile(0.99) as f64 / 1e3,
        h.max() as f64 / 1e3,
        queries,
        s.blocks_read
    );
    shard.close().await.unwrap();
}

fn ts_end(blocks: usize, per_block: u64) -> i64 {
    (blocks as u64 * per_block) as i64
}

/// A config that never flushes on its own: everything stays in the WAL.
fn no_flush(dir: &std::path::Path) -> ShardConfig {
    let mut cfg = ShardConfig::new(dir);
    cfg.memory_budget = 16 << 30;
    cfg.wal_budget = 64 << 30;
    cfg.flush_age = Duration::from_secs(86_400);
    cfg
}

async fn replay(dir: PathBuf, points: u64) {
    // 100,000 tags with fewer points each than a block: nothing flushes.
    let tags = 100_000u32;
    {
        let shard = Shard::open(no_flush(&dir)).await.unwrap();
        let mut start = 0;
        while start < points {
            let b = make_batch(start, 10_000, tags);
            shard.write(&b).await.unwrap();
            start += 10_000;
        }
        // Crash: no close, everything must be replayed.
    }
    let t = Instant::now();
    let shard = Shard::open(no_flush(&dir)).await.unwrap();
    let secs = t.elapsed().as_secs_f64();
    let r = shard.recovery();
    println!(
        "replay: {} WAL bytes, {} records, {} points in {:.3} s: {:.2} GB/s, {:.1} M points/s (open total {:.3} s)",
        r.wal_bytes_replayed,
        r.wal_records_replayed,
        r.wal_points_replayed,
        r.duration.as_secs_f64(),
        r.wal_bytes_replayed as f64 / r.duration.as_secs_f64() / 1e9,
        r.wal_points_replayed as f64 / r.duration.as_secs_f64() / 1e6,
        secs
    );
}

fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

async fn memory(dir: PathBuf, points: u64) {
    let tags = 100_000u32;
    let shard = Shard::open(no_flush(&dir)).await.unwrap();
    let before = rss_bytes();
    let mut start = 0;
    while start < points {
        let b = make_batch(start, 10_000, tags);
        shard.write(&b).await.unwrap();
        start += 10_000;
    }
    let after = rss_bytes();
    let s = shard.stats();
    println!(
        "memory: {} points buffered over {tags} tags: RSS +{:.1} MiB = {:.1} bytes/point (accounted {:.1} bytes/point)",
        s.points_buffered,
        (after - before) as f64 / (1 << 20) as f64,
        (after - before) as f64 / s.points_buffered as f64,
        s.buffered_bytes as f64 / s.points_buffered as f64
    );
}
