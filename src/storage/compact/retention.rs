//! Retention: with `retention` set, points older than now minus it are
//! never served (queries clamp their start to the cutoff), compaction drops
//! them when it rewrites, and chunk files whose every point is older are
//! deleted whole. Never deletes the active flush chunk, a chunk a job is
//! reading, or the chunk that holds the newest checkpoint (the WAL replays
//! from it); a deletion that does not reach the disk before a crash is
//! simply done again, because an expired chunk is expired at every open.

use super::{micros, swap_in, Compactor};
use crate::storage::chunk::Kind;
use crate::storage::error::Result;
use crate::storage::file::{remove_file, sync_dir};

/// The first µs still inside the retention window at `now_us`, or
/// `i64::MIN` without retention.
pub(crate) fn cutoff(retention: Option<std::time::Duration>, now_us: i64) -> i64 {
    retention.map_or(i64::MIN, |r| now_us.saturating_sub(micros(r)))
}

/// Deletes the chunks whose points are all older than the cutoff at
/// `now_us`. The caller holds the compaction lock.
pub(crate) async fn apply(c: &Compactor, now_us: i64) -> Result<u64> {
    let cut = cutoff(c.cfg.retention, now_us);
    if cut == i64::MIN {
        return Ok(0);
    }
    let expired: Vec<u64> = {
        let index = c.disk.index.borrow();
        let newest = index.chunks().map(|(_, i)| i.checkpoint).max().unwrap_or(0);
        let mut keep_checkpoint = false;
        let mut v = Vec::new();
        let mut chunks: Vec<_> = index.chunks().collect();
        chunks.sort_by_key(|(id, _)| std::cmp::Reverse(*id));
        for (id, info) in chunks {
            let active = info.kind == Kind::Flush && !info.sealed;
            if !keep_checkpoint && info.checkpoint == newest {
                // The newest chunk with the newest checkpoint stays.
                keep_checkpoint = true;
                continue;
            }
            if active || info.points == 0 || info.max_ts >= cut {
                continue;
            }
            v.push(id);
        }
        v
    };
    if expired.is_empty() {
        return Ok(0);
    }
    // A tag at a time (see `swap_in`); the chunks stay on disk until then.
    let removed = swap_in(c, &expired, Vec::new()).await;
    let mut bytes = 0;
    for (_, info) in &removed {
        bytes += info.bytes;
        remove_file(info.file.path()).await?;
    }
    sync_dir(&c.cfg.dir.join("chunks")).await?;
    let mut s = c.stats.borrow_mut();
    s.retention_chunks_deleted += removed.len() as u64;
    s.retention_bytes_reclaimed += bytes;
    log::info!(
        "retention: {} chunks ({bytes} bytes) older than {cut} µs deleted in {}",
        removed.len(),
        c.cfg.dir.display()
    );
    Ok(removed.len() as u64)
}
