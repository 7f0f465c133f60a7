//! Opening a shard: load chunk directories, rebuild the active chunk's
//! directory from its blocks, replay the WAL from the checkpoint, start the
//! WAL writer and the flusher.
//!
//! Policy (documented in the README): a torn WAL tail is truncated and
//! reported; damage before the tail, a damaged chunk header, or a committed
//! block of the active chunk that fails its checksum makes `open` fail with
//! an error naming file and offset. A damaged directory page is rebuilt from
//! the self-describing blocks and reported. Blocks of sealed chunks are
//! verified when read, so a damaged one fails the query that reads it.

use std::rc::Rc;
use std::time::Instant;

use glommio::{Latency, Shares};

use crate::storage::chunk::{list_chunks, open_chunk, ActiveChunk, Layout};
use crate::storage::config::ShardConfig;
use crate::storage::error::{Error, Result};
use crate::storage::file::{check_format, ensure_dir, remove_file};
use crate::storage::flush::{flush_everything, run_flusher};
use crate::storage::index::BlockRef;
use crate::storage::keepalive::{self, KeepAliveStop};
use crate::storage::shard::{Inner, Shard};
use crate::storage::wal::replay::WalRecovery;
use crate::storage::wal::{format, Wal};

impl Shard {
    /// Opens (creating or recovering) the shard in `config.dir`. Must run
    /// inside a glommio executor. The executor is kept awake (see
    /// [`keepalive`]) from the first I/O of recovery until the shard is
    /// closed.
    pub async fn open(config: ShardConfig) -> Result<Shard> {
        let keepalive = KeepAliveStop::default();
        glommio::spawn_local(keepalive::run(keepalive.clone())).detach();
        let opened = open_inner(config, keepalive.clone()).await;
        if opened.is_err() {
            keepalive.stop();
        }
        opened
    }
}

async fn open_inner(cfg: ShardConfig, keepalive: KeepAliveStop) -> Result<Shard> {
    let started = Instant::now();
    validate(&cfg)?;
    let wal_dir = cfg.dir.join("wal");
    let chunk_dir = cfg.dir.join("chunks");
    ensure_dir(&cfg.dir).await?;
    check_format(&cfg.dir).await?;
    ensure_dir(&wal_dir).await?;
    ensure_dir(&chunk_dir).await?;
    let inner = Rc::new(Inner::new(cfg.clone(), keepalive));
    let mut report = inner.recovery.borrow().clone();

    // Chunks: every directory into the index; the newest unsealed chunk is active.
    let chunks = list_chunks(&chunk_dir).await?;
    let mut checkpoint = 0u64;
    for (i, (id, path)) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len();
        let Some(c) = open_chunk(path, last).await? else {
            if !last {
                return Err(Error::corrupt(
                    path,
                    0,
                    "chunk header never written, but later chunks exist",
                ));
            }
            // Creation was interrupted before its header was durable: nothing in it.
            remove_file(path).await?;
            continue;
        };
        if c.header.id != *id {
            return Err(Error::corrupt(
                path,
                0,
                format!("header names chunk {}", c.header.id),
            ));
        }
        let layout = Layout {
            blocks: c.header.blocks,
        };
        {
            let mut index = inner.disk.index.borrow_mut();
            index.set_file(*id as u32, c.file.clone(), layout);
            for e in &c.entries {
                index.add(
                    e.tag,
                    BlockRef {
                        chunk: *id as u32,
                        slot: e.slot,
                        count: e.count,
                        min_ts: e.min_ts,
                        max_ts: e.max_ts,
                    },
                );
            }
        }
        report.chunks_loaded += 1;
        report.blocks_indexed += c.entries.len() as u64;
        report.directories_rebuilt += c.rebuilt as u64;
        checkpoint = checkpoint.max(c.header.checkpoint);
        inner.disk.next_chunk_id.set(id + 1);
        if last && !c.header.sealed {
            *inner.disk.active.borrow_mut() = Some(ActiveChunk {
                file: c.file,
                layout,
                header: c.header,
                entries: c.entries,
            });
        }
    }
    inner.disk.checkpoint.set(checkpoint);
    report.checkpoint = checkpoint;
    report.chunks_duration = started.elapsed();

    // WAL: replay records at or after the checkpoint into the buffers,
    // flushing between segments if they outgrow the memory budget.
    let mut rec = WalRecovery::open(&wal_dir, cfg.wal_segment_size, checkpoint).await?;
    let now = Instant::now();
    let mut decoded = Vec::new();
    while let Some(seg) = rec.next_segment().await? {
        for (seq, payload) in seg.iter() {
            decoded.clear();
            decoded.extend(format::points(payload));
            report.wal_points_replayed += decoded.len() as u64;
            inner.mem.insert(&decoded, seq, now, cfg.memory_budget);
        }
        if inner.mem.active_bytes() > cfg.memory_budget {
            let next = seg.records.last().map_or(checkpoint, |r| r.0 + 1);
            flush_everything(&inner.flusher(), next).await?;
        }
    }
    report.replay_duration = started.elapsed() - report.chunks_duration;
    report.wal_records_replayed = rec.records;
    report.wal_bytes_replayed = rec.bytes;
    report.torn_bytes_dropped = rec.torn_bytes;
    let recovered = rec.finish().await?;
    let wal = Rc::new(Wal::new(wal_dir, cfg.wal_segment_size, cfg.sync, recovered));
    wal.start().await?;
    wal.release(inner.disk.checkpoint.get()).await?;
    let _ = inner.wal.set(wal.clone());

    // Tasks: the WAL writer at high priority, the flusher below ingest.
    // Both queues are `Latency::NotImportant`; a latency-sensitive WAL queue
    // bought no measurable tail latency (net bench p99 36-45 ms either way).
    let ex = glommio::executor();
    let wal_q = ex.create_task_queue(Shares::Static(1000), Latency::NotImportant, "xtdb-wal");
    let flush_q = ex.create_task_queue(Shares::Static(100), Latency::NotImportant, "xtdb-flush");
    let spawn_err = |e: glommio::GlommioError<()>| {
        Error::io(
            "spawn shard task",
            &cfg.dir,
            std::io::Error::other(e.to_string()),
        )
    };
    let writer = glommio::spawn_local_into(wal.clone().run_writer(), wal_q)
        .map_err(spawn_err)?
        .detach();
    let flusher = glommio::spawn_local_into(run_flusher(inner.flusher()), flush_q)
        .map_err(spawn_err)?
        .detach();
    inner.tasks.borrow_mut().extend([writer, flusher]);
    if !inner.mem.full.borrow().is_empty() {
        inner.ctl.flush_wanted.notify(1);
    }

    report.duration = started.elapsed();
    log::info!("shard {}: {report}", cfg.dir.display());
    *inner.recovery.borrow_mut() = report;
    Ok(Shard { inner })
}

fn validate(cfg: &ShardConfig) -> Result<()> {
    let min_seg = (format::SEGMENT_HEADER + format::record_len(1)) as u64;
    if !cfg.wal_segment_size.is_multiple_of(4096)
        || cfg.wal_segment_size < min_seg.next_multiple_of(4096)
    {
        return Err(Error::InvalidConfig {
            setting: "wal segment size",
            reason: format!(
                "{} must be a multiple of 4096 and at least 8192",
                cfg.wal_segment_size
            ),
        });
    }
    if cfg.blocks_per_chunk == 0 {
        return Err(Error::InvalidConfig {
            setting: "blocks per chunk",
            reason: "must be at least 1".into(),
        });
    }
    Ok(())
}
