//! Background compaction and retention: the task that decides when flush
//! chunks (level 0, many tags' small segments packed together) are merged
//! into compacted chunks (one time partition each, every tag's points in as
//! few dense segments as possible, with per-segment summaries), and when
//! expired chunks are deleted. It runs on a low-priority task queue with a
//! byte-rate bound, so ingest keeps its CPU and most of the disk.
//!
//! When a job runs (checked every second, and when a flush chunk is
//! sealed):
//! - **settle**: no write for `settle_after` (10 s): buffers are flushed,
//!   the active flush chunk is sealed, and every partition with level-0
//!   data or more than one run is merged into one run;
//! - **backlog**: sealed flush chunks hold `compact_backlog` (1 GiB) or
//!   more: they are compacted; closed partitions they touch are merged with
//!   their runs, open ones get a new run;
//! - **closed partition**: a partition ended `close_grace` ago and has more
//!   than one run, or flush chunks that may hold its points: they are all
//!   merged into one run. Late points for a partition that already has a
//!   run (a backfill after an outage, a collector replaying its buffer) are
//!   merged only once the flush chunks that may hold them are at least as
//!   large as the run ([`LATE_MERGE_RATIO`]); merging at every sealed
//!   chunk would rewrite the whole partition again and again, quadratic in
//!   the backfill. Each merge's cost (inputs plus run) is then at most
//!   twice the level-0 bytes it consumes, so compaction work stays linear.
//!
//! Correctness does not depend on the policy. Every job's inputs are whole
//! chunks; each of a tag's segments keeps its write order, and an output
//! segment carries the highest order of what it merged, so later writes
//! win exactly as before. Inputs are chosen so that no excluded segment's
//! order falls between an output's inputs' (all sealed flush chunks, or
//! every flush chunk whose time range overlaps the partition, with all the
//! partition's runs). The job's outputs become live atomically at open (a
//! job counts only when all its outputs are sealed; see
//! [`crate::storage::chunk`]) and in memory (the index swap, one tag at a
//! time so writes need not wait behind it: [`swap_in`]), and the inputs are
//! deleted only after that. Retention is in [`retention`].

mod job;
pub mod retention;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::storage::block::BLOCK_SIZE;
use crate::storage::chunk::{DirEntry, Entries, Kind, Partition};
use crate::storage::config::ShardConfig;
use crate::storage::control::Control;
use crate::storage::disk::Disk;
use crate::storage::error::Result;
use crate::storage::flush::{self, Flusher};
use crate::storage::index::ChunkInfo;
use crate::storage::memory::Memory;
use crate::storage::slice::Slice;
use crate::storage::stats::ShardStats;

pub(crate) use job::run_job;

/// The parts of a shard compaction works on.
#[derive(Clone)]
pub(crate) struct Compactor {
    pub cfg: Rc<ShardConfig>,
    pub mem: Rc<Memory>,
    pub disk: Rc<Disk>,
    pub ctl: Rc<Control>,
    pub stats: Rc<RefCell<ShardStats>>,
    /// For flushing and sealing before a settle.
    pub flusher: Flusher,
}

/// Why a job runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reason {
    /// The shard is quiet: merge everything into one run per partition.
    Settle,
    /// Sealed flush chunks reached the backlog bound.
    Backlog,
    /// A closed partition needs merging.
    Closed,
    /// Asked for (`Shard::compact`).
    Asked,
}

/// The server's clock, µs since the Unix epoch.
pub(crate) fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Late data for a closed partition is merged into its run once the flush
/// chunks that may hold it reach this fraction of the run's size.
pub(crate) const LATE_MERGE_RATIO: f64 = 1.0;

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// What the disk holds that compaction cares about.
struct Picture {
    /// Sealed flush chunks and version 1 chunks (level 0).
    level0: Vec<u64>,
    level0_bytes: u64,
    /// Their time ranges and the bytes of their committed blocks.
    level0_ranges: Vec<(u64, i64, i64, u64)>,
    /// Compacted chunks by partition, with their job ids.
    runs: BTreeMap<Partition, Vec<(u64, u64)>>,
    /// Bytes of each partition's compacted chunks.
    run_bytes: BTreeMap<Partition, u64>,
    /// Whether the active flush chunk holds any block.
    active_used: bool,
    /// The active chunk's time range.
    active_range: Option<(i64, i64)>,
    /// Bytes of the active chunk's committed blocks.
    active_bytes: u64,
}

fn picture(c: &Compactor) -> Picture {
    let index = c.disk.index.borrow();
    let mut p = Picture {
        level0: Vec::new(),
        level0_bytes: 0,
        level0_ranges: Vec::new(),
        runs: BTreeMap::new(),
        run_bytes: BTreeMap::new(),
        active_used: false,
        active_range: None,
        active_bytes: 0,
    };
    for (id, info) in index.chunks() {
        let used = u64::from(info.blocks) * BLOCK_SIZE as u64;
        match info.kind {
            Kind::Flush if !info.sealed => {
                if info.points > 0 {
                    p.active_used = true;
                    p.active_range = Some((info.min_ts, info.max_ts));
                    p.active_bytes = used;
                }
            }
            Kind::Flush | Kind::V1 => {
                p.level0.push(id);
                p.level0_bytes += info.bytes;
                if info.points > 0 {
                    p.level0_ranges.push((id, info.min_ts, info.max_ts, used));
                }
            }
            Kind::Compacted => {
                if let Some(part) = info.partition {
                    p.runs.entry(part).or_default().push((id, info.job));
                    *p.run_bytes.entry(part).or_default() += used;
                }
            }
        }
    }
    p.level0.sort_unstable();
    p
}

/// Partitions (of width `w`) a time range touches, at most `max` of them
/// (a range wider than that is reported as touching none: it is sparse
/// late data, and its partitions are merged when they close).
/// Counted by partition number, not by start: `hi - lo` overflows i64
/// for a chunk holding points near both ends of the time range (a server
/// with `--min-timestamp-us` and `--max-future-secs` off), and the
/// starts saturate at `i64::MIN`.
fn partitions_of(lo: i64, hi: i64, w: i64, max: usize) -> Vec<Partition> {
    let w = w.max(1);
    let (first, last) = (lo.div_euclid(w), hi.div_euclid(w));
    let n = i128::from(last) - i128::from(first) + 1;
    if n > max as i128 {
        return vec![Partition::of(lo, w), Partition::of(hi, w)];
    }
    (first..=last)
        .map(|k| Partition {
            start: k.saturating_mul(w),
            width: w,
        })
        .collect()
}

/// The inputs of the next job, if one is due (the active chunk is sealed
/// first when a job needs what it holds).
async fn plan(c: &Compactor, reason: Option<Reason>) -> Result<Option<(Reason, Vec<u64>)>> {
    let w = micros(c.cfg.partition).max(1);
    let now = now_us();
    let quiet = c.ctl.last_write.get().elapsed() >= c.cfg.settle_after;
    let p = picture(c);
    let jobs_of = |runs: &[(u64, u64)]| runs.iter().map(|r| r.1).collect::<BTreeSet<_>>().len();
    let needs_merge = |part: &Partition| p.runs.get(part).is_some_and(|r| jobs_of(r) > 1);
    let buffered = c.mem.totals().0 > 0;
    let settle = reason == Some(Reason::Asked)
        || (quiet
            && (buffered
                || p.active_used
                || !p.level0.is_empty()
                || p.runs.keys().any(needs_merge)));
    if settle {
        c.ctl.compact_stage.set("settle: flush");
        flush::flush_all(&c.flusher).await?;
        seal_active(c).await?;
        let p = picture(c);
        let mut inputs: Vec<u64> = p.level0.clone();
        let mut touched: BTreeSet<Partition> = BTreeSet::new();
        for &(_, lo, hi, _) in &p.level0_ranges {
            touched.extend(partitions_of(lo, hi, w, 366));
        }
        for (part, runs) in &p.runs {
            if touched.contains(part) || jobs_of(runs) > 1 {
                inputs.extend(runs.iter().map(|r| r.0));
            }
        }
        inputs.sort_unstable();
        inputs.dedup();
        let r = reason.unwrap_or(Reason::Settle);
        let trivial = inputs.len() == 1 && p.level0.is_empty();
        return Ok((!inputs.is_empty() && !trivial).then_some((r, inputs)));
    }
    let closed = |part: &Partition| part.end().saturating_add(micros(c.cfg.close_grace)) < now;
    if p.level0_bytes >= c.cfg.compact_backlog && !p.level0.is_empty() {
        let mut inputs = p.level0.clone();
        let mut touched: BTreeSet<Partition> = BTreeSet::new();
        for &(_, lo, hi, _) in &p.level0_ranges {
            touched.extend(partitions_of(lo, hi, w, 366));
        }
        for (part, runs) in &p.runs {
            if touched.contains(part) && closed(part) {
                inputs.extend(runs.iter().map(|r| r.0));
            }
        }
        inputs.sort_unstable();
        inputs.dedup();
        return Ok(Some((Reason::Backlog, inputs)));
    }
    // A closed partition with several runs, or level-0 data that may be its.
    let mut candidates: Vec<Partition> = p.runs.keys().filter(|x| closed(x)).copied().collect();
    for &(_, lo, hi, _) in &p.level0_ranges {
        candidates.extend(partitions_of(lo, hi, w, 366).into_iter().filter(closed));
    }
    if let Some((lo, hi)) = p.active_range {
        candidates.extend(partitions_of(lo, hi, w, 366).into_iter().filter(closed));
    }
    candidates.sort_unstable();
    candidates.dedup();
    for part in candidates {
        let overlaps = |lo: i64, hi: i64| lo < part.end() && hi >= part.start;
        let level0: Vec<u64> = p
            .level0_ranges
            .iter()
            .filter(|r| overlaps(r.1, r.2))
            .map(|r| r.0)
            .collect();
        let level0_bytes: u64 = p
            .level0_ranges
            .iter()
            .filter(|r| overlaps(r.1, r.2))
            .map(|r| r.3)
            .sum();
        let active = p.active_range.is_some_and(|(lo, hi)| overlaps(lo, hi));
        if level0.is_empty() && !active && !needs_merge(&part) {
            continue;
        }
        // Late data for a partition with one run: wait until it is worth
        // rewriting the run (see the module doc).
        let run = p.run_bytes.get(&part).copied().unwrap_or(0) as f64;
        let late = (level0_bytes + if active { p.active_bytes } else { 0 }) as f64;
        if !needs_merge(&part) && run > 0.0 && late < run * LATE_MERGE_RATIO {
            continue;
        }
        if active {
            // Late points for a closed partition sit in the active chunk:
            // seal it so they can be merged too, then plan again.
            seal_active(c).await?;
            return Ok(None);
        }
        let mut inputs = level0;
        // Version 1 chunks are not time-partitioned: they go together.
        if inputs.iter().any(|id| is_v1(c, *id)) {
            inputs.extend(p.level0.iter().filter(|id| is_v1(c, **id)));
        }
        if let Some(runs) = p.runs.get(&part) {
            inputs.extend(runs.iter().map(|r| r.0));
        }
        inputs.sort_unstable();
        inputs.dedup();
        return Ok(Some((Reason::Closed, inputs)));
    }
    Ok(None)
}

fn is_v1(c: &Compactor, id: u64) -> bool {
    c.disk
        .index
        .borrow()
        .chunk(id)
        .is_some_and(|i| i.kind == Kind::V1)
}

/// Seals the active flush chunk if it holds any block (takes the flush
/// lock), so its segments can be compacted.
pub(crate) async fn seal_active(c: &Compactor) -> Result<()> {
    let _permit = c.ctl.flush_lock.acquire_permit(1).await;
    let taken = c.disk.active.borrow_mut().take();
    let Some(mut chunk) = taken else {
        return Ok(());
    };
    if chunk.header.committed == 0 {
        *c.disk.active.borrow_mut() = Some(chunk);
        return Ok(());
    }
    let checkpoint = c.disk.checkpoint.get();
    let sealed = flush::seal(&c.flusher, &mut chunk, checkpoint).await;
    if sealed.is_err() {
        *c.disk.active.borrow_mut() = Some(chunk);
    }
    sealed
}

/// Runs one job now if any is due (`Shard::compact` asks for a settle).
pub(crate) async fn compact_once(c: &Compactor, reason: Option<Reason>) -> Result<bool> {
    let Some((why, inputs)) = plan(c, reason).await? else {
        return Ok(false);
    };
    c.ctl.compact_stage.set("job");
    let r = run_job(c, &inputs).await;
    c.ctl.compact_stage.set("idle");
    match r {
        Ok(()) => {
            log::debug!("compaction ({why:?}) of {} chunks done", inputs.len());
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

/// The compaction task: runs jobs as they come due, and retention, until
/// the shard closes or is fenced. A failed job is logged and retried later
/// (its output is discarded; its inputs were never touched).
pub(crate) async fn run_compactor(c: Compactor) {
    // None: retention has not run yet (an `Instant` an hour back would
    // panic on a machine up for less than an hour).
    let mut last_retention: Option<Instant> = None;
    let mut backoff = Duration::from_secs(1);
    loop {
        if c.ctl.closing.get() || c.ctl.fenced.borrow().is_some() {
            return;
        }
        let listener = c.ctl.compact_wanted.listen();
        let sealed = c.disk.sealed.listen();
        let _permit = c.ctl.compact_lock.acquire_permit(1).await;
        let retention_due = last_retention.is_none_or(|at| at.elapsed() >= Duration::from_secs(5));
        if c.cfg.retention.is_some() && retention_due {
            last_retention = Some(Instant::now());
            if let Err(e) = retention::apply(&c, now_us()).await {
                log::error!("retention in {} failed: {e}", c.cfg.dir.display());
            }
        }
        match compact_once(&c, None).await {
            Ok(true) => {
                backoff = Duration::from_secs(1);
                continue;
            }
            Ok(false) => {}
            Err(e) => {
                if c.ctl.closing.get() {
                    return;
                }
                log::error!(
                    "compaction in {} failed (retrying in {backoff:?}): {e}",
                    c.cfg.dir.display()
                );
                drop(_permit);
                // Close wakes the wait (it fires `compact_wanted`).
                let wake = c.ctl.compact_wanted.listen();
                if !c.ctl.closing.get() {
                    futures_lite::future::or(wake, glommio::timer::sleep(backoff)).await;
                }
                backoff = (backoff * 2).min(Duration::from_secs(60));
                continue;
            }
        }
        drop(_permit);
        let tick = glommio::timer::sleep(Duration::from_secs(1));
        futures_lite::future::or(futures_lite::future::or(listener, sealed), tick).await;
    }
}

/// Swaps chunks `old` out of the index and the segments of `new` (chunk
/// id, its info, its directory entries) in, one tag at a time, yielding the
/// task queue whenever a [`crate::storage::slice::SLICE`] is spent: with 100,000 tags a swap is
/// hundreds of thousands of index operations, tens to hundreds of ms that
/// writes would otherwise wait behind. Each tag's swap is one step, so a
/// query sees each tag's points exactly once (before or after), whatever
/// it reads meanwhile; flushes meanwhile only append newer segments. While
/// it runs, both `old` and `new` are registered (the chunk gauges count
/// both). The caller holds the compaction lock and has made `new` durable
/// and superseding `old` (so a crash meanwhile loses nothing). Returns the
/// files of `old`, and records the swap's time and longest stretch in the
/// stats.
pub(crate) async fn swap_in(
    c: &Compactor,
    old: &[u64],
    new: Vec<(u64, ChunkInfo, &Entries)>,
) -> Vec<(u64, ChunkInfo)> {
    let started = Instant::now();
    let mut slice = Slice::new();
    let old_set = id_set(old);
    // Each output's entries by tag (already so: a job writes tags in
    // order; the sort is stable and linear on sorted input).
    let mut by_tag: Vec<(u64, Vec<&DirEntry>)> = Vec::with_capacity(new.len());
    let tags = {
        let mut index = c.disk.index.borrow_mut();
        for (id, info, entries) in new {
            index.add_chunk(id, info);
            let mut v: Vec<&DirEntry> = entries.iter().collect();
            v.sort_by_key(|e| e.tag);
            by_tag.push((id, v));
        }
        let mut tags = index.tags_of(old);
        for (_, v) in &by_tag {
            tags.extend(v.iter().map(|e| e.tag));
        }
        tags.sort_unstable();
        tags.dedup();
        tags
    };
    let mut at = vec![0usize; by_tag.len()];
    let mut adds: Vec<(u64, &DirEntry)> = Vec::new();
    for tag in tags {
        adds.clear();
        for ((id, v), i) in by_tag.iter().zip(at.iter_mut()) {
            while *i < v.len() && v[*i].tag < tag {
                *i += 1;
            }
            while *i < v.len() && v[*i].tag == tag {
                adds.push((*id, v[*i]));
                *i += 1;
            }
        }
        c.disk.index.borrow_mut().swap_tag(tag, &old_set, &adds);
        slice.tick().await;
    }
    let removed = {
        let mut index = c.disk.index.borrow_mut();
        for (id, _) in &by_tag {
            index.finish_chunk(*id);
        }
        index.drop_chunks(old)
    };
    let longest = slice.longest();
    let mut s = c.stats.borrow_mut();
    s.compaction_swap_micros += micros(started.elapsed()) as u64;
    s.compaction_swap_max_micros = s.compaction_swap_max_micros.max(micros(longest) as u64);
    removed
}

/// Chunk ids of a job's inputs, as a set.
pub(crate) fn id_set(ids: &[u64]) -> HashSet<u64> {
    ids.iter().copied().collect()
}

#[cfg(test)]
mod partition_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_range_over_the_whole_time_line_does_not_overflow() {
        let day = 86_400_000_000;
        // Overflowed (`hi - lo`) in debug builds; in release one wrong
        // partition.
        let p = partitions_of(i64::MIN, i64::MAX, day, 366);
        assert_eq!(
            p,
            vec![Partition::of(i64::MIN, day), Partition::of(i64::MAX, day)]
        );
        let p = partitions_of(i64::MIN, i64::MIN + 2 * day, day, 366);
        assert_eq!(p.len(), 3);
        assert_eq!(p[1], Partition::of(i64::MIN + day, day));
        assert_eq!(partitions_of(-1, 0, 1, 366).len(), 2);
    }

    proptest::proptest! {
        #![proptest_config(crate::proptest_config::config(256))]
        #[test]
        fn partitions_are_those_of_the_range(
            a in proptest::num::i64::ANY,
            b in proptest::num::i64::ANY,
            w in proptest::prop_oneof![1i64..1000, proptest::num::i64::ANY],
            max in 0usize..400,
        ) {
            let (lo, hi) = (a.min(b), a.max(b));
            let p = partitions_of(lo, hi, w, max);
            let w = w.max(1);
            let n = i128::from(hi.div_euclid(w)) - i128::from(lo.div_euclid(w)) + 1;
            if n > max as i128 {
                proptest::prop_assert_eq!(p, vec![Partition::of(lo, w), Partition::of(hi, w)]);
            } else {
                proptest::prop_assert_eq!(p.len() as i128, n);
                proptest::prop_assert_eq!(p[0], Partition::of(lo, w));
                proptest::prop_assert_eq!(*p.last().unwrap(), Partition::of(hi, w));
                for q in p.windows(2) {
                    proptest::prop_assert!(q[0].start < q[1].start);
                    proptest::prop_assert_eq!(Partition::of(q[1].start, w), q[1]);
                }
            }
        }
    }
}
