//! Aggregates pushed down to the shard that owns a tag: windowed functions
//! ([`windows`], [`partials`]), interpolated values ([`interpolated`]),
//! plot values ([`plot`]) and the value at or before a time
//! ([`at_or_before`]), computed by the kernels of [`crate::aggregate`]
//! while the tag's segments are walked in time order.
//!
//! How one request walks a tag (everything planned at one instant, from one
//! snapshot of the index and the memory buffers):
//! - the segments overlapping the range are grouped into clusters of
//!   segments whose time spans overlap; memory points (active and frozen
//!   buffers) join the cluster whose span holds them;
//! - a cluster of one segment with a stored [`Summary`] and no memory point
//!   in its span cannot hold a duplicate, so when the kernel accepts the
//!   summary (windows: it lies inside one window, the function needs no
//!   points; plot: inside one interval, offered as its first, min, max and
//!   last points; interpolation: it holds no sample time after its first
//!   point, offered as its first and last points; good-only: it holds only
//!   good points) its block is not even read;
//! - a single-segment cluster with no memory point in its span whose
//!   segment has a rollup ([`crate::storage::rollup`]) is offered to a
//!   kernel that takes rollups (windows of count, sum, mean, min, max,
//!   spread, first, last, percent_good) as its per-interval summaries: when
//!   every interval lies inside the range and one window, and the rollup's
//!   checksum and checks pass, its blocks are not read (a rollup decoded
//!   recently is taken from the shard thread's cache of decoded rollups,
//!   at most [`CACHED_ROLLUP_ENTRIES`] summaries, neither read nor decoded
//!   again);
//! - any other cluster is decoded (its blocks read concurrently, adjacent
//!   blocks of one file in one read, a bounded batch at a time) and merged with the same precedence as `range` (the
//!   later write wins), then pushed point by point;
//! - the value in force at the start (the last visible point before it)
//!   and the first visible point at or after the end are looked up by
//!   probing backwards/forwards one segment start/end at a time (NaN and,
//!   good-only, bad points are skipped, as the kernels do).
//!
//! Owns the walk; never materialises the range's points beyond one batch
//! of blocks (256 segments' blocks) and one decoded cluster (and the tag's memory buffers, which the memory
//! budget bounds); yields its task queue between steps once it has run for
//! 500 µs, so a long request does not stall writes or `latest` on the
//! shard.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

use futures_util::stream::{self, StreamExt};

use crate::aggregate::{
    Accumulator, AggError, AtOrBefore, CountAcc, FirstAcc, Func, IntegralAcc, Interp, Interpolator,
    LastAcc, MaxAcc, MeanAcc, MinAcc, Partial, PartialAcc, PercentGoodAcc, Plotter, Quantile,
    Sample, Slot, SpreadAcc, StddevAcc, SumAcc, Summary, TwaAcc, ValuesAcc, WindowSpec, Windowed,
    GOOD, MAX_WINDOW_VALUES,
};
use crate::storage::block::BLOCK_SIZE;
use crate::storage::chunk::RollupRef;
use crate::storage::disk::Disk;
use crate::storage::error::{Error, Result};
use crate::storage::file::{DataFile, MAX_IO};
use crate::storage::index::SegRef;
use crate::storage::memory::Memory;
use crate::storage::query::{decode_segment, merge, range};
use crate::storage::rollup;
use crate::storage::slice::Slice;
use crate::storage::stats::ShardStats;
use crate::Point;

/// Reads in flight for one request (each of one block, or of adjacent
/// blocks up to [`MAX_IO`]).
const READS_IN_FLIGHT: usize = 32;
/// Segments decoded per batch (their blocks held at once, 16 KiB each).
const DECODE_BATCH: usize = 256;

/// One tag of one request: where its points live and which count.
pub(crate) struct Scope<'a> {
    /// Memory buffers.
    pub mem: &'a Memory,
    /// Durable segments.
    pub disk: &'a Disk,
    /// Counters.
    pub stats: &'a RefCell<ShardStats>,
    /// The tag.
    pub tag: u32,
    /// Points older than this are past retention and never seen.
    pub cutoff: i64,
    /// Only points of good quality count.
    pub good_only: bool,
}

impl Scope<'_> {
    fn visible(&self, p: &Point) -> bool {
        !p.value.is_nan() && (!self.good_only || p.quality >= GOOD)
    }
}

/// A kernel the walk feeds: it takes points in time order and, where it
/// can, a segment's summary instead of the segment's points.
trait Sink {
    /// Whether `s` can stand in for its segment's points (decided when the
    /// walk is planned; the walk only asks about segments that follow
    /// everything pushed so far and overlap nothing else).
    fn takes(&self, s: &Summary) -> bool;
    /// Adds a summary [`Sink::takes`] accepted.
    fn take(&mut self, s: &Summary) -> std::result::Result<(), AggError>;
    /// Adds points, in strictly increasing time order.
    fn push_points(&mut self, pts: &[Point]);
    /// Whether per-interval rollups may be offered.
    fn takes_rollups(&self) -> bool {
        false
    }
    /// Whether the summaries of one rollup (intervals of `span`, in time
    /// order, after everything pushed) can all stand in for its segment.
    fn takes_grid(&self, _span: i64, _entries: &[Summary]) -> bool {
        false
    }
    /// Adds a rollup's summaries [`Sink::takes_grid`] accepted.
    fn take_grid(&mut self, _entries: &[Summary]) {}
    /// The value fields of rollup summaries it reads.
    fn rollup_fields(&self) -> u8 {
        crate::aggregate::fields::ALL
    }
}

impl<A: Accumulator> Sink for Windowed<A> {
    fn takes(&self, s: &Summary) -> bool {
        self.accepts(s)
    }
    fn take(&mut self, s: &Summary) -> std::result::Result<(), AggError> {
        self.push_summary(s)
    }
    fn push_points(&mut self, pts: &[Point]) {
        self.push_all(pts.iter().map(|p| (p.ts, p.value, p.quality)));
    }
    fn takes_rollups(&self) -> bool {
        self.takes_rollups()
    }
    fn takes_grid(&self, span: i64, entries: &[Summary]) -> bool {
        self.accepts_grid(span, entries)
    }
    fn take_grid(&mut self, entries: &[Summary]) {
        self.push_grid(entries)
    }
    fn rollup_fields(&self) -> u8 {
        self.rollup_fields()
    }
}

impl Sink for Plotter {
    fn takes(&self, s: &Summary) -> bool {
        s.count > 0
            && s.usable_for(self.good_only())
            && self.interval_of(s.first_ts).is_some()
            && self.interval_of(s.first_ts) == self.interval_of(s.last_ts)
    }
    fn take(&mut self, s: &Summary) -> std::result::Result<(), AggError> {
        // The interval's first, last, min and max over these four points
        // are those over all of the segment's points (min_ts and max_ts
        // are the first points holding the extremes, as the plotter keeps).
        let mut pts = [
            Sample::new(s.first_ts, s.first),
            Sample::new(s.min_ts, s.min),
            Sample::new(s.max_ts, s.max),
            Sample::new(s.last_ts, s.last),
        ];
        pts.sort_by_key(|p| p.ts);
        let mut prev = None;
        for p in pts {
            if prev != Some(p.ts) {
                self.push(p.ts, p.value, GOOD);
                prev = Some(p.ts);
            }
        }
        Ok(())
    }
    fn push_points(&mut self, pts: &[Point]) {
        for p in pts {
            self.push(p.ts, p.value, p.quality);
        }
    }
}

/// An [`Interpolator`] with what it samples, so a segment holding no
/// sample time after its first point can be offered as just its first and
/// last points (the samples around it only see those two).
struct InterpSink {
    ip: Interpolator,
    start: i64,
    end: i64,
    every: i64,
    good_only: bool,
}

impl Sink for InterpSink {
    fn takes(&self, s: &Summary) -> bool {
        if s.count == 0 || !s.usable_for(self.good_only) || s.first_ts > s.last_ts {
            return false;
        }
        // The first sample time after first_ts. A sample exactly at
        // first_ts sees the segment's first point itself, which the
        // summary offers, so only samples after it need the segment's
        // other points (an aligned segment starts on a sample time).
        let (start, every) = (i128::from(self.start), i128::from(self.every));
        let off = i128::from(s.first_ts) - start;
        let t = if off < 0 {
            start
        } else {
            start + (off / every + 1) * every
        };
        t > i128::from(s.last_ts) || t > i128::from(self.end)
    }
    fn take(&mut self, s: &Summary) -> std::result::Result<(), AggError> {
        self.ip.push(s.first_ts, s.first, GOOD);
        if s.last_ts != s.first_ts {
            self.ip.push(s.last_ts, s.last, GOOD);
        }
        Ok(())
    }
    fn push_points(&mut self, pts: &[Point]) {
        for p in pts {
            self.ip.push(p.ts, p.value, p.quality);
        }
    }
}

fn query_err(e: AggError) -> Error {
    Error::Query {
        reason: e.to_string(),
    }
}

/// The last visible point of the tag before `t` (not older than the
/// cutoff): probes `[lo, t)` where `lo` is the latest segment start below
/// `t` (or the earliest memory point when no segment starts below `t`),
/// merged as `range` merges, and steps back while nothing there is
/// visible.
pub(crate) async fn last_before(sc: &Scope<'_>, t: i64) -> Result<Option<Point>> {
    let mut hi = t;
    while hi > sc.cutoff {
        let seg_lo = sc
            .disk
            .index
            .borrow()
            .segments_of(sc.tag)
            .iter()
            .filter(|r| r.min_ts < hi)
            .map(|r| r.min_ts)
            .max();
        let lo = match seg_lo {
            Some(lo) => lo,
            None => match memory_points(sc, sc.cutoff, hi).first() {
                Some(p) => p.ts,
                None => return Ok(None),
            },
        };
        let lo = lo.max(sc.cutoff);
        let pts = range(sc.mem, sc.disk, sc.stats, sc.tag, lo, hi, u64::MAX).await?;
        if let Some(p) = pts.iter().rev().find(|p| sc.visible(p)) {
            return Ok(Some(*p));
        }
        hi = lo;
        glommio::executor().yield_if_needed().await;
    }
    Ok(None)
}

/// The first visible point of the tag at or after `t` (the mirror of
/// [`last_before`]).
pub(crate) async fn first_from(sc: &Scope<'_>, t: i64) -> Result<Option<Point>> {
    let mut lo = t.max(sc.cutoff);
    loop {
        let seg_hi = sc
            .disk
            .index
            .borrow()
            .segments_of(sc.tag)
            .iter()
            .filter(|r| r.max_ts >= lo)
            .map(|r| r.max_ts)
            .min();
        let last = match seg_hi {
            Some(h) => h,
            None => match memory_points(sc, lo, i64::MAX).last() {
                Some(p) => p.ts,
                None => return Ok(None),
            },
        };
        let hi = last.saturating_add(1);
        if hi <= lo {
            return Ok(None);
        }
        let pts = range(sc.mem, sc.disk, sc.stats, sc.tag, lo, hi, u64::MAX).await?;
        if let Some(p) = pts.iter().find(|p| sc.visible(p)) {
            return Ok(Some(*p));
        }
        lo = hi;
        glommio::executor().yield_if_needed().await;
    }
}

/// The tag's memory points in `[lo, hi)`, sorted, the active buffer
/// winning over the frozen one.
fn memory_points(sc: &Scope<'_>, lo: i64, hi: i64) -> Vec<Point> {
    if lo >= hi {
        return Vec::new();
    }
    let mut runs = Vec::new();
    if let Some(b) = sc.mem.frozen.borrow().get(&sc.tag) {
        let mut run = Vec::new();
        b.range(sc.tag, lo, hi, &mut run);
        runs.push(run);
    }
    if let Some(b) = sc.mem.bufs.borrow_mut().get_mut(sc.tag) {
        let mut run = Vec::new();
        b.range(sc.tag, lo, hi, &mut run);
        runs.push(run);
    }
    merge(runs)
}

/// One step of a planned walk.
enum Step {
    /// Memory points `mem[a..b]`, overlapping no segment.
    Mem(usize, usize),
    /// A segment answered by its summary.
    Summary(Summary),
    /// Segments `segs` (indices into the plan's list, oldest write first)
    /// and memory points `mem[a..b]`, decoded and merged over `[lo, hi)`;
    /// `rollup`: the one segment's rollup, to try first.
    Decode {
        segs: Vec<usize>,
        lo: i64,
        hi: i64,
        mem: (usize, usize),
        rollup: Option<RollupRef>,
    },
}

/// Feeds the tag's points in `[lo, hi)` to `sink`, in time order.
async fn walk<S: Sink>(sc: &Scope<'_>, sink: &mut S, lo: i64, hi: i64) -> Result<()> {
    let lo = lo.max(sc.cutoff);
    if lo >= hi {
        return Ok(());
    }
    // Plan at one instant: the index, the summaries and memory together.
    let (segs, sums, rolls) = {
        let index = sc.disk.index.borrow();
        let segs = index.overlapping(sc.tag, lo, hi);
        let sums: Vec<Option<Summary>> =
            segs.iter().map(|s| index.summary(&s.0).copied()).collect();
        let rolls: Vec<Option<RollupRef>> = if sink.takes_rollups() {
            segs.iter().map(|s| index.rollup(&s.0)).collect()
        } else {
            Vec::new()
        };
        (segs, sums, rolls)
    };
    let mem = memory_points(sc, lo, hi);
    let steps = plan(&segs, &sums, &rolls, &mem, lo, hi, sink);

    let (mut from_summary, mut decoded, mut disk_points) = (0u64, 0u64, 0u64);
    let (mut from_rollup, mut rollup_entries, mut damaged, mut cached) = (0u64, 0u64, 0u64, 0u64);
    let mut i = 0;
    while i < steps.len() {
        // A batch: steps up to DECODE_BATCH segments to decode or try
        // rollups for.
        let mut j = i;
        let mut n = 0;
        while j < steps.len() {
            if let Step::Decode { segs: s, .. } = &steps[j] {
                if n > 0 && n + s.len() > DECODE_BATCH {
                    break;
                }
                n += s.len();
            }
            j += 1;
        }
        // Rollups first: the steps they answer need no block.
        // The rollups to try: (step, segment, where).
        let steps_tried: Vec<usize> = (i..j)
            .filter(|&k| {
                matches!(
                    &steps[k],
                    Step::Decode {
                        rollup: Some(_),
                        ..
                    }
                )
            })
            .collect();
        let tries: Vec<(usize, RollupRef)> = steps_tried
            .iter()
            .filter_map(|&k| match &steps[k] {
                Step::Decode {
                    segs: s,
                    rollup: Some(r),
                    ..
                } => Some((s[0], *r)),
                _ => None,
            })
            .collect();
        let rolled = read_rollups(&segs, &tries, sink.rollup_fields(), &mut cached).await?;
        // Per step of the batch: the summaries its rollup answers it with.
        let mut answered: Vec<Option<Grid>> = vec![None; j - i];
        for (&k, got) in steps_tried.iter().zip(rolled) {
            answered[k - i] = match got {
                Some(Ok(r)) => {
                    let (span, entries) = (r.0, &r.1);
                    let inside = match (entries.first(), entries.last()) {
                        (Some(a), Some(b)) => a.first_ts >= lo && b.last_ts < hi,
                        _ => false,
                    };
                    (inside && sink.takes_grid(span, entries)).then_some(r)
                }
                Some(Err(())) => {
                    damaged += 1;
                    None
                }
                None => None,
            };
        }
        let mut want: Vec<usize> = Vec::new();
        for (step, answer) in steps[i..j].iter().zip(&answered) {
            if let (Step::Decode { segs: s, .. }, None) = (step, answer) {
                want.extend_from_slice(s);
            }
        }
        let blocks = read_blocks(&segs, &want).await?;
        let mut slice = Slice::new();
        for (step, answer) in steps[i..j].iter().zip(answered.iter_mut()) {
            match step {
                Step::Mem(a, b) => sink.push_points(&mem[*a..*b]),
                Step::Summary(s) => {
                    sink.take(s).map_err(query_err)?;
                    from_summary += 1;
                }
                Step::Decode {
                    segs: members,
                    lo,
                    hi,
                    mem: (a, b),
                    ..
                } => {
                    if let Some(r) = answer.take() {
                        sink.take_grid(&r.1);
                        from_rollup += 1;
                        rollup_entries += r.1.len() as u64;
                        slice.tick().await;
                        continue;
                    }
                    let mut runs = Vec::with_capacity(members.len() + 1);
                    for &k in members {
                        let (r, file, off) = &segs[k];
                        let data = blocks
                            .iter()
                            .find(|b| b.0 == k)
                            .and_then(|b| b.1.get(b.2..b.2 + BLOCK_SIZE));
                        let Some(data) = data else {
                            // A short read: the file ends inside the block.
                            return Err(Error::corrupt(
                                file.path(),
                                *off,
                                "chunk file ends inside a block the index lists",
                            ));
                        };
                        let mut out = Vec::new();
                        decode_segment(data, r, sc.tag, file.path(), *off, *lo, *hi, &mut out)?;
                        disk_points += out.len() as u64;
                        runs.push(out);
                    }
                    runs.push(mem[*a..*b].to_vec());
                    decoded += members.len() as u64;
                    sink.push_points(&merge(runs));
                }
            }
            slice.tick().await;
        }
        i = j;
    }
    let mut s = sc.stats.borrow_mut();
    s.agg_segments_from_summary += from_summary;
    s.agg_segments_decoded += decoded;
    s.agg_segments_from_rollup += from_rollup;
    s.agg_rollup_entries += rollup_entries;
    s.agg_rollups_damaged += damaged;
    s.agg_rollups_cached += cached;
    s.rollup_cache_summaries = ROLLUPS.with(|c| c.borrow().held as u64);
    s.blocks_read += decoded;
    s.points_from_disk += disk_points;
    s.points_from_memory += mem.len() as u64;
    Ok(())
}

/// Groups the segments into clusters of overlapping spans (clipped to
/// `[lo, hi)`), puts memory points in the cluster that holds them or
/// between clusters, and decides which single-segment clusters the sink
/// answers from their summary.
fn plan<S: Sink>(
    segs: &[(SegRef, Rc<DataFile>, u64)],
    sums: &[Option<Summary>],
    rolls: &[Option<RollupRef>],
    mem: &[Point],
    lo: i64,
    hi: i64,
    sink: &S,
) -> Vec<Step> {
    let mut by_start: Vec<usize> = (0..segs.len()).collect();
    by_start.sort_by_key(|&k| segs[k].0.min_ts);
    let mut steps = Vec::new();
    let mut m = 0usize;
    let mut k = 0usize;
    while k < by_start.len() {
        let first = &segs[by_start[k]].0;
        let c_lo = first.min_ts.max(lo);
        let mut c_hi = first.max_ts;
        let mut members = vec![by_start[k]];
        k += 1;
        while k < by_start.len() && segs[by_start[k]].0.min_ts <= c_hi {
            c_hi = c_hi.max(segs[by_start[k]].0.max_ts);
            members.push(by_start[k]);
            k += 1;
        }
        // Memory points before the cluster.
        let a = m;
        while m < mem.len() && mem[m].ts < c_lo {
            m += 1;
        }
        if m > a {
            steps.push(Step::Mem(a, m));
        }
        let a = m;
        while m < mem.len() && mem[m].ts <= c_hi {
            m += 1;
        }
        let whole = first.min_ts >= lo && c_hi < hi;
        let summary = (members.len() == 1 && m == a && whole)
            .then(|| sums[members[0]])
            .flatten()
            .filter(|s| sink.takes(s));
        match summary {
            Some(s) => steps.push(Step::Summary(s)),
            None => {
                let rollup = (members.len() == 1 && m == a)
                    .then(|| rolls.get(members[0]).copied().flatten())
                    .flatten()
                    .filter(|r| r.len as usize <= MAX_IO);
                // Keep write order (oldest first) for the merge.
                members.sort_unstable();
                steps.push(Step::Decode {
                    segs: members,
                    lo: c_lo,
                    hi: c_hi.saturating_add(1).min(hi),
                    mem: (a, m),
                    rollup,
                });
            }
        }
    }
    if m < mem.len() {
        steps.push(Step::Mem(m, mem.len()));
    }
    steps
}

/// What [`read_rollups`] found for one segment: its per-interval
/// summaries, `Err` for a rollup that failed its checksum or checks.
type Rolled = Option<Decoded>;
/// A rollup's span and summaries, or `Err` when it failed its checksum or
/// checks.
type Decoded = std::result::Result<Grid, ()>;
/// A decoded rollup: its span and per-interval summaries, shared with the
/// cache.
type Grid = Rc<(i64, Vec<Summary>)>;

/// Summaries the decoded-rollup cache of one shard thread holds at most
/// (about 112 bytes each: 28 MiB, a day of minute rollups of 180 tags).
const CACHED_ROLLUP_ENTRIES: usize = 1 << 18;

/// A rollup in the cache: the file (as a pointer), its offset, length,
/// checksum, and the value fields decoded.
type RollupKey = (usize, u64, u32, u32, u8);

/// Rollups decoded recently, so a repeated query over the same segments
/// (a dashboard's refresh, many tags' minute windows) neither reads them
/// again (chunk files are O_DIRECT: no page cache) nor decodes them. A
/// rollup is immutable where it lies (a compacted chunk file is never
/// rewritten; a damaged or rewritten one changes the checksum the index
/// names); an entry keeps a `Weak` to its file, so no other file can
/// take its address while the entry lives, and an entry of a closed file
/// is never matched. Only rollups that passed their checksum and checks
/// are kept; the oldest go first past [`CACHED_ROLLUP_ENTRIES`].
#[derive(Default)]
struct RollupCache {
    map: ahash::AHashMap<RollupKey, (Weak<DataFile>, Grid)>,
    order: VecDeque<RollupKey>,
    held: usize,
}

thread_local! {
    static ROLLUPS: RefCell<RollupCache> = RefCell::new(RollupCache::default());
}

fn rollup_key(file: &Rc<DataFile>, r: RollupRef, need: u8) -> RollupKey {
    (Rc::as_ptr(file) as usize, r.offset, r.len, r.crc, need)
}

fn cached_rollup(file: &Rc<DataFile>, r: RollupRef, need: u8) -> Option<Grid> {
    ROLLUPS.with(|c| {
        let c = c.borrow();
        let (w, got) = c.map.get(&rollup_key(file, r, need))?;
        (w.strong_count() > 0 && std::ptr::eq(w.as_ptr(), Rc::as_ptr(file))).then(|| got.clone())
    })
}

fn cache_rollup(file: &Rc<DataFile>, r: RollupRef, need: u8, got: &Grid) {
    let n = got.1.len();
    if n > CACHED_ROLLUP_ENTRIES {
        return;
    }
    ROLLUPS.with(|c| {
        let mut c = c.borrow_mut();
        let key = rollup_key(file, r, need);
        if let Some((_, old)) = c.map.insert(key, (Rc::downgrade(file), got.clone())) {
            c.held -= old.1.len();
        } else {
            c.order.push_back(key);
        }
        c.held += n;
        while c.held > CACHED_ROLLUP_ENTRIES {
            let Some(k) = c.order.pop_front() else { break };
            if let Some((_, old)) = c.map.remove(&k) {
                c.held -= old.1.len();
            }
        }
    });
}

/// Reads and decodes (the value fields `need` of) the rollups `tries`
/// (segment index, where), adjacent
/// ones of one file in one read (a tag's compacted segments' rollups are
/// consecutive), the reads concurrently; in the order of `tries`.
async fn read_rollups(
    segs: &[(SegRef, Rc<DataFile>, u64)],
    tries: &[(usize, RollupRef)],
    need: u8,
    cached: &mut u64,
) -> Result<Vec<Rolled>> {
    let mut out: Vec<Rolled> = vec![None; tries.len()];
    let mut order: Vec<usize> = Vec::with_capacity(tries.len());
    for (t, &(k, r)) in tries.iter().enumerate() {
        match cached_rollup(&segs[k].1, r, need) {
            Some(got) => {
                out[t] = Some(Ok(got));
                *cached += 1;
            }
            None => order.push(t),
        }
    }
    order.sort_by_key(|&t| (Rc::as_ptr(&segs[tries[t].0].1) as usize, tries[t].1.offset));
    // Runs of (file, offset, length, members).
    let mut runs: Vec<(Rc<DataFile>, u64, u64, Vec<usize>)> = Vec::new();
    for t in order {
        let (file, r) = (&segs[tries[t].0].1, tries[t].1);
        let end = r.offset + u64::from(r.len);
        if let Some(run) = runs.last_mut() {
            let run_end = run.1 + run.2;
            if Rc::ptr_eq(&run.0, file)
                && r.offset >= run.1
                && r.offset <= run_end + 4096
                && end - run.1 <= MAX_IO as u64
            {
                run.2 = run.2.max(end - run.1);
                run.3.push(t);
                continue;
            }
        }
        runs.push((file.clone(), r.offset, u64::from(r.len), vec![t]));
    }
    let reads = runs
        .into_iter()
        .map(|(file, off, len, members)| async move {
            let data = file.read_at(off, len as usize).await?;
            Ok(members
                .into_iter()
                .map(|t| {
                    let r = tries[t].1;
                    let at = (r.offset - off) as usize;
                    let got = data
                        .get(at..at + r.len as usize)
                        .filter(|b| crc32fast::hash(b) == r.crc)
                        .and_then(|b| rollup::decode(b, need).ok())
                        .map(Rc::new)
                        .ok_or(());
                    if let Ok(got) = &got {
                        cache_rollup(&segs[tries[t].0].1, r, need, got);
                    }
                    (t, got)
                })
                .collect::<Vec<_>>())
        });
    let got: Vec<Result<Vec<(usize, Decoded)>>> = stream::iter(reads)
        .buffered(READS_IN_FLIGHT)
        .collect()
        .await;
    for g in got {
        for (t, r) in g? {
            out[t] = Some(r);
        }
    }
    Ok(out)
}

/// Blocks of one batch: per wanted segment, the read holding its block and
/// the block's offset in it.
type Blocks = Vec<(usize, Rc<glommio::io::ReadResult>, usize)>;

/// Reads the blocks of segments `want`: blocks adjacent in one file (a
/// compacted tag's segments are in consecutive slots) are read together,
/// up to [`MAX_IO`] per read, the reads concurrently.
async fn read_blocks(segs: &[(SegRef, Rc<DataFile>, u64)], want: &[usize]) -> Result<Blocks> {
    let mut order: Vec<usize> = want.to_vec();
    order.sort_by_key(|&k| (Rc::as_ptr(&segs[k].1) as usize, segs[k].2));
    // Runs of (file, first offset, length, the segments in it).
    let mut runs: Vec<(Rc<DataFile>, u64, usize, Vec<usize>)> = Vec::new();
    for k in order {
        let (file, off) = (&segs[k].1, segs[k].2);
        if let Some(r) = runs.last_mut() {
            let end = r.1 + r.2 as u64;
            if Rc::ptr_eq(&r.0, file) && off >= r.1 && off < end {
                r.3.push(k);
                continue;
            }
            if Rc::ptr_eq(&r.0, file) && off == end && r.2 + BLOCK_SIZE <= MAX_IO {
                r.2 += BLOCK_SIZE;
                r.3.push(k);
                continue;
            }
        }
        runs.push((file.clone(), off, BLOCK_SIZE, vec![k]));
    }
    let reads = runs
        .into_iter()
        .map(|(file, off, len, members)| async move {
            let data = Rc::new(file.read_at(off, len).await?);
            Ok(members
                .into_iter()
                .map(|k| (k, data.clone(), (segs[k].2 - off) as usize))
                .collect::<Vec<_>>())
        });
    let got: Vec<Result<Blocks>> = stream::iter(reads)
        .buffered(READS_IN_FLIGHT)
        .collect()
        .await;
    let mut out = Vec::with_capacity(want.len());
    for g in got {
        out.extend(g?);
    }
    Ok(out)
}

/// Runs one accumulator over the windows of `spec`.
async fn run<A: Accumulator>(
    sc: &Scope<'_>,
    spec: &WindowSpec,
    acc: A,
    before: Option<Point>,
    after: bool,
) -> Result<Vec<A::Output>> {
    let mut w = Windowed::new(spec.clone(), acc, sc.good_only);
    if let Some(p) = before {
        w.push(p.ts, p.value, p.quality);
    }
    walk(sc, &mut w, spec.start(), spec.end()).await?;
    if after {
        if let Some(p) = first_from(sc, spec.end()).await? {
            w.push(p.ts, p.value, p.quality);
        }
    }
    w.finish().map_err(query_err)
}

/// `func` per window of `spec` over the tag. With `want_before` (or for a
/// time-weighted average, which needs it) the value in force at the start
/// is looked up and returned too (for fill previous).
pub(crate) async fn windows(
    sc: &Scope<'_>,
    spec: &WindowSpec,
    func: Func,
    want_before: bool,
) -> Result<(Vec<Slot>, Option<Sample>)> {
    func.validate().map_err(query_err)?;
    let twa = matches!(func, Func::TimeWeighted(_));
    let before = if twa || want_before {
        last_before(sc, spec.start()).await?
    } else {
        None
    };
    let slots = match func {
        Func::Count => run(sc, spec, CountAcc::default(), before, false).await?,
        Func::Sum => run(sc, spec, SumAcc::default(), before, false).await?,
        Func::Mean => run(sc, spec, MeanAcc::default(), before, false).await?,
        Func::Min => run(sc, spec, MinAcc::default(), before, false).await?,
        Func::Max => run(sc, spec, MaxAcc::default(), before, false).await?,
        Func::First => run(sc, spec, FirstAcc, before, false).await?,
        Func::Last => run(sc, spec, LastAcc, before, false).await?,
        Func::Spread => run(sc, spec, SpreadAcc::default(), before, false).await?,
        Func::Stddev => run(sc, spec, StddevAcc::default(), before, false).await?,
        Func::Median => {
            let acc = ValuesAcc::capped(Quantile::Median, MAX_WINDOW_VALUES);
            run(sc, spec, acc, before, false).await?
        }
        Func::Percentile(p) => {
            let acc = ValuesAcc::capped(Quantile::Percentile(p), MAX_WINDOW_VALUES);
            run(sc, spec, acc, before, false).await?
        }
        Func::Integral { unit, mode } => {
            let acc = IntegralAcc::new(unit, mode).map_err(query_err)?;
            run(sc, spec, acc, before, false).await?
        }
        Func::PercentGood => run(sc, spec, PercentGoodAcc::default(), before, false).await?,
        Func::TimeWeighted(interp) => {
            let after = interp == Interp::Linear;
            run(sc, spec, TwaAcc::new(interp), before, after).await?
        }
    };
    Ok((slots, before.map(|p| Sample::new(p.ts, p.value))))
}

/// The [`Partial`] of each window of `spec` over the tag; with `m2`
/// false their `m2` may be NaN (answered from rollups), so they serve
/// every mergeable function but `stddev`.
pub(crate) async fn partials(
    sc: &Scope<'_>,
    spec: &WindowSpec,
    m2: bool,
) -> Result<Vec<Option<Partial>>> {
    run(sc, spec, PartialAcc::new(m2), None, false).await
}

/// Values of the tag at `start, start + every, …, ≤ end`.
pub(crate) async fn interpolated(
    sc: &Scope<'_>,
    start: i64,
    end: i64,
    every: i64,
    interp: Interp,
    max_samples: usize,
) -> Result<Vec<(i64, Option<f64>)>> {
    let ip = Interpolator::new(start, end, every, interp, sc.good_only, max_samples)
        .map_err(query_err)?;
    let mut sink = InterpSink {
        ip,
        start,
        end,
        every,
        good_only: sc.good_only,
    };
    if let Some(p) = last_before(sc, start).await? {
        sink.ip.push(p.ts, p.value, p.quality);
    }
    let past_end = end.saturating_add(1);
    walk(sc, &mut sink, start, past_end).await?;
    if past_end > end {
        if let Some(p) = first_from(sc, past_end).await? {
            sink.ip.push(p.ts, p.value, p.quality);
        }
    }
    sink.ip.finish().map_err(query_err)
}

/// Plot values of the tag over `[start, end)` for `pixels` intervals.
pub(crate) async fn plot(
    sc: &Scope<'_>,
    start: i64,
    end: i64,
    pixels: usize,
    max_pixels: usize,
) -> Result<Vec<Sample>> {
    let mut p = Plotter::new(start, end, pixels, sc.good_only, max_pixels).map_err(query_err)?;
    walk(sc, &mut p, start, end).await?;
    p.finish().map_err(query_err)
}

/// The last visible point of the tag at or before `time`.
pub(crate) async fn at_or_before(sc: &Scope<'_>, time: i64) -> Result<Option<Sample>> {
    let mut a = AtOrBefore::new(time, sc.good_only);
    let found = if time == i64::MAX {
        // `last_before(MAX + 1)`: also look at a point at i64::MAX.
        let p = first_from(sc, i64::MAX).await?;
        match p {
            Some(p) => Some(p),
            None => last_before(sc, i64::MAX).await?,
        }
    } else {
        last_before(sc, time + 1).await?
    };
    if let Some(p) = found {
        a.push(p.ts, p.value, p.quality);
    }
    Ok(a.result())
}
