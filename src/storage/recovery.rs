//! Opening a shard: load chunk directories, rebuild the active chunk's
//! directory from its blocks, put the buffers back from the snapshot a
//! clean close left (if it matches the WAL; see [`snapshot`]) or else
//! replay the WAL from the checkpoint into them, start the WAL writer and
//! the flusher.
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

use std::collections::HashSet;
use std::path::Path;

use crate::storage::chunk::{
    self, list_chunks, open_chunk, v1, Chunk, Entries, Found, Kind, Opened,
};
use crate::storage::compact::run_compactor;
use crate::storage::config::ShardConfig;
use crate::storage::error::{Error, Result};
use crate::storage::file::{check_format, ensure_dir, remove_file, sync_dir};
use crate::storage::flush::{flush_everything, run_flusher};
use crate::storage::index::ChunkInfo;
use crate::storage::keepalive::{self, KeepAliveStop};
use crate::storage::regroup::Regroup;
use crate::storage::shard::{Inner, RecoveryReport, Shard};
use crate::storage::snapshot::{self, Snapshot};
use crate::storage::wal::replay::WalRecovery;
use crate::storage::wal::Recovered;
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

    // Chunks: every directory into the index; unfinished compaction
    // outputs and the inputs of finished jobs are deleted; the newest
    // unsealed flush chunk is active.
    let checkpoint = load_chunks(&inner, &chunk_dir, &mut report).await?;
    inner.disk.checkpoint.set(checkpoint);
    report.checkpoint = checkpoint;
    report.chunks_duration = started.elapsed();

    // The buffers a clean close wrote: used if the WAL ends exactly where
    // they do (nothing is inserted or flushed before that is known).
    let snap = match snapshot::take(&cfg.dir).await? {
        Some(s) if s.checkpoint == checkpoint => Some(s),
        Some(s) => {
            log::warn!(
                "{}: buffer snapshot ignored: its checkpoint {} is not the chunks' {checkpoint}",
                cfg.dir.display(),
                s.checkpoint
            );
            None
        }
        None => None,
    };
    let mut from_snapshot = None;
    if let Some(s) = snap {
        match check_snapshot(&wal_dir, &cfg, checkpoint, &s, &mut report).await? {
            Some(recovered) => {
                let now = Instant::now();
                report.snapshot_points = s.points();
                let mut bufs = inner.mem.bufs.borrow_mut();
                for t in s.tags {
                    bufs.restore(t.tag, t.segs, t.min_seq, t.max_seq, now);
                }
                from_snapshot = Some(recovered);
            }
            None => log::warn!(
                "{}: buffer snapshot ignored: the WAL does not end where it does (wal_end {}); replaying the WAL",
                cfg.dir.display(),
                s.wal_end
            ),
        }
    }
    let recovered = match from_snapshot {
        Some(r) => r,
        None => replay(&inner, &wal_dir, &cfg, checkpoint, &mut report).await?,
    };
    report.replay_duration = started.elapsed() - report.chunks_duration;
    let mut wal = Wal::new(wal_dir, cfg.wal_segment_size, cfg.sync, recovered);
    wal.set_group_window(cfg.wal_group_window);
    let wal = Rc::new(wal);
    wal.start().await?;
    wal.release(inner.disk.checkpoint.get()).await?;
    let _ = inner.wal.set(wal.clone());

    // Tasks: the WAL writer at high priority, the flusher below ingest.
    // Both queues are `Latency::NotImportant`; a latency-sensitive WAL queue
    // bought no measurable tail latency (net bench p99 36-45 ms either way).
    let ex = glommio::executor();
    let wal_q = ex.create_task_queue(Shares::Static(1000), Latency::NotImportant, "xtdb-wal");
    let flush_q = ex.create_task_queue(Shares::Static(100), Latency::NotImportant, "xtdb-flush");
    let compact_q = ex.create_task_queue(Shares::Static(25), Latency::NotImportant, "xtdb-compact");
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
    let spares = glommio::spawn_local_into(wal.clone().run_spares(), flush_q)
        .map_err(spawn_err)?
        .detach();
    let flusher = glommio::spawn_local_into(run_flusher(inner.flusher()), flush_q)
        .map_err(spawn_err)?
        .detach();
    let compactor = glommio::spawn_local_into(run_compactor(inner.compactor()), compact_q)
        .map_err(spawn_err)?
        .detach();
    inner
        .tasks
        .borrow_mut()
        .extend([writer, spares, flusher, compactor]);
    if !inner.mem.full.borrow().is_empty() {
        inner.ctl.flush_wanted.notify(1);
    }

    report.duration = started.elapsed();
    log::info!("shard {}: {report}", cfg.dir.display());
    *inner.recovery.borrow_mut() = report;
    Ok(Shard { inner })
}

/// Replays WAL records at or after the checkpoint into the buffers, a
/// segment at a time grouped by tag (see [`Regroup`]), flushing between
/// segments if they outgrow the memory budget. Returns
/// where the log continues.
async fn replay(
    inner: &Rc<Inner>,
    wal_dir: &Path,
    cfg: &ShardConfig,
    checkpoint: u64,
    report: &mut RecoveryReport,
) -> Result<Recovered> {
    let mut rec = WalRecovery::open(wal_dir, cfg.wal_segment_size, checkpoint).await?;
    let now = Instant::now();
    let mut decoded = Vec::new();
    let mut regroup = Regroup::default();
    while let Some(seg) = rec.next_segment().await? {
        if Regroup::fits(seg.data.len()) {
            let mut bufs = inner.mem.bufs.borrow_mut();
            let mut full = inner.mem.full.borrow_mut();
            let n = regroup.insert(&mut bufs, &seg.data, &seg.records, now, &mut full);
            report.wal_points_replayed += n as u64;
        } else {
            for (seq, payload) in seg.iter() {
                decoded.clear();
                decoded.extend(format::points(payload));
                report.wal_points_replayed += decoded.len() as u64;
                inner.mem.insert(&decoded, seq, now, cfg.memory_budget);
            }
        }
        if inner.mem.active_bytes() > cfg.memory_budget {
            let next = seg.records.last().map_or(checkpoint, |r| r.0 + 1);
            match flush_everything(&inner.flusher(), next).await {
                Ok(()) => {}
                // A disk too full for a chunk file stopped the round (not
                // fenced: its rest waits as the stalled round): replay on
                // past the memory budget (bounded by the WAL's size); the
                // flusher writes the rest once there is space.
                Err(e) if inner.stalled.is_pending() && inner.check_fenced().is_ok() => {
                    log::warn!("replaying the WAL beyond the memory budget: {e}")
                }
                Err(e) => return Err(e),
            }
        }
        rec.recycle(seg);
    }
    report.wal_records_replayed = rec.records;
    report.wal_bytes_replayed = rec.bytes;
    report.torn_bytes_dropped = rec.torn_bytes;
    rec.finish().await
}

/// Reads the WAL from the checkpoint without inserting anything. If its
/// records end exactly at the snapshot's `wal_end` (so every record below
/// it is in the snapshot and none after it exists), records what was read
/// in `report` and returns where the log continues; else `None`.
async fn check_snapshot(
    wal_dir: &Path,
    cfg: &ShardConfig,
    checkpoint: u64,
    s: &Snapshot,
    report: &mut RecoveryReport,
) -> Result<Option<Recovered>> {
    let mut rec = WalRecovery::open(wal_dir, cfg.wal_segment_size, checkpoint).await?;
    while let Some(seg) = rec.next_segment().await? {
        if seg.records.last().is_some_and(|r| r.0 >= s.wal_end) {
            return Ok(None);
        }
        rec.recycle(seg);
    }
    let (records, bytes, torn) = (rec.records, rec.bytes, rec.torn_bytes);
    let recovered = rec.finish().await?;
    if recovered.next_seq != s.wal_end.max(checkpoint) {
        return Ok(None);
    }
    report.wal_records_skipped = records;
    report.wal_bytes_replayed = bytes;
    report.torn_bytes_dropped = torn;
    Ok(Some(recovered))
}

/// Opens every chunk file into the index and returns the checkpoint (the
/// highest any chunk records: compaction outputs carry their inputs').
async fn load_chunks(
    inner: &Inner,
    chunk_dir: &Path,
    report: &mut crate::storage::RecoveryReport,
) -> Result<u64> {
    let files = list_chunks(chunk_dir).await?;
    let last_v1 = files.len().checked_sub(1);
    let mut opened: Vec<Opened> = Vec::new();
    let mut removed = false;
    let mut max_id = None;
    for (i, (id, path)) in files.iter().enumerate() {
        max_id = max_id.max(Some(*id));
        match open_chunk(path, Some(i) == last_v1).await? {
            Found::Chunk(c) => {
                if c.header.id != *id {
                    return Err(Error::corrupt(
                        path,
                        0,
                        format!("header names chunk {}", c.header.id),
                    ));
                }
                opened.push(c);
            }
            Found::Empty => {
                // Creation was interrupted before its header was durable.
                remove_file(path).await?;
                removed = true;
            }
            Found::Unfinished(h) => {
                log::warn!(
                    "chunk {}: output {} of compaction job {} never finished; deleted (its inputs are intact)",
                    path.display(),
                    h.job_index,
                    h.job
                );
                remove_file(path).await?;
                removed = true;
                report.compactions_rolled_back += 1;
            }
        }
    }
    if let Some(id) = max_id {
        inner.disk.next_chunk_id.set(id + 1);
    }
    // A job counts only if each of its outputs is here, or was itself
    // superseded by a later job that counts; then the chunks it names are
    // superseded. Later jobs first, since only they can supersede outputs.
    let present: HashSet<u64> = opened.iter().map(|c| c.header.id).collect();
    /// A job's outputs (as each lists them), the inputs it names, the
    /// outputs found.
    type Job = (Vec<u64>, Vec<u64>, Vec<u64>);
    let mut jobs: std::collections::BTreeMap<u64, Job> = std::collections::BTreeMap::new();
    for c in opened.iter().filter(|c| c.header.kind == Kind::Compacted) {
        let j = jobs.entry(c.header.job).or_default();
        j.0 = c.siblings.clone();
        j.1.extend(c.claims.iter().copied());
        j.2.push(c.header.id);
    }
    let mut superseded: HashSet<u64> = HashSet::new();
    let mut unfinished: HashSet<u64> = HashSet::new();
    for (_, (siblings, claims, outputs)) in jobs.iter().rev() {
        let complete = !siblings.is_empty()
            && siblings
                .iter()
                .all(|s| present.contains(s) || superseded.contains(s));
        if complete {
            superseded.extend(claims.iter().copied());
        } else {
            unfinished.extend(outputs.iter().copied());
        }
    }
    let checkpoint = opened
        .iter()
        .map(|c| c.header.checkpoint)
        .max()
        .unwrap_or(0);
    let mut active: Vec<Opened> = Vec::new();
    for c in opened {
        let id = c.header.id;
        if superseded.contains(&id) || unfinished.contains(&id) {
            if unfinished.contains(&id) {
                report.compactions_rolled_back += 1;
            } else {
                report.superseded_deleted += 1;
            }
            let path = c.file.path().to_path_buf();
            drop(c);
            remove_file(&path).await?;
            removed = true;
            continue;
        }
        report.chunks_loaded += 1;
        report.blocks_indexed += c.entries.len() as u64;
        report.directories_rebuilt += c.rebuilt as u64;
        let data_offset = match c.header.kind {
            Kind::V1 => v1::Layout {
                blocks: c.header.capacity,
            }
            .data_offset(),
            _ => chunk::HEADER_BYTES,
        };
        let bytes = c.file.size().await?;
        {
            let mut index = inner.disk.index.borrow_mut();
            index.add_chunk(
                id,
                ChunkInfo {
                    file: c.file.clone(),
                    kind: c.header.kind,
                    sealed: c.header.sealed,
                    partition: c.header.partition,
                    data_offset,
                    blocks: c.header.committed,
                    bytes,
                    min_ts: i64::MAX,
                    max_ts: i64::MIN,
                    checkpoint: c.header.checkpoint,
                    tags: Vec::new(),
                    points: 0,
                    job: c.header.job,
                    rollup_bytes: c
                        .entries
                        .iter()
                        .filter_map(|e| e.rollup)
                        .map(|r| u64::from(r.len))
                        .sum(),
                },
            );
            for e in &c.entries {
                index.add(id, e);
            }
            index.finish_chunk(id);
        }
        if c.header.kind == Kind::Flush && !c.header.sealed {
            active.push(c);
        }
    }
    if removed {
        sync_dir(chunk_dir).await?;
    }
    // The newest unsealed flush chunk goes on taking blocks; an older one
    // (a crash between sealing and creating the next) is sealed now.
    active.sort_by_key(|c| c.header.id);
    let newest = active.pop();
    for c in active {
        let mut chunk = Chunk::from_opened(&c);
        let mut entries = Entries::from(c.entries.as_slice());
        chunk.seal_flush(&mut entries, checkpoint).await?;
        if let Some(info) = inner.disk.index.borrow_mut().chunk_mut(c.header.id) {
            info.sealed = true;
        }
    }
    if let Some(c) = newest {
        *inner.disk.active_entries.borrow_mut() = Entries::from(c.entries.as_slice());
        *inner.disk.active.borrow_mut() = Some(Chunk::from_opened(&c));
    }
    Ok(checkpoint)
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
