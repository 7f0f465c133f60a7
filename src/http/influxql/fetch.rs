//! The one door from the InfluxQL executor to the data: raw points of a
//! series ([`fetch_points`]) and per-window aggregates of a group of
//! series merged into one ([`fetch_windows`]). The mergeable functions
//! (count, sum, mean, min, max, first, last, spread, stddev) are computed
//! by the engine next to the data: one `Command::Aggregate` asking for
//! every series' per-window partials, fanned out by [`execute`] to the
//! owning shards (whole segments answered from their summaries), merged
//! here; so is `time_weighted_mean` of one series (its windows asked of
//! the owning shard). The rest read through `Command::Range` in bounded time chunks
//! ([`RangeScan`]: the chunk width adapts so each answer stays near
//! [`crate::runtime::scan::CHUNK_POINTS`] points) and feed the pure kernels of [`crate::aggregate`]. Every point
//! read or counted is charged to the statement's [`Budget`], so one query
//! cannot read without bound. Never holds more than one chunk of one
//! series' points at a time, except where the answer is the points (raw
//! `SELECT`) or where InfluxQL merges raw points across series (median,
//! percentile, integral and `time_weighted_mean` over several series),
//! both bounded by the budget.

use std::rc::Rc;

use ahash::AHashMap;

use crate::aggregate::{
    Accumulator, Fill, Func, IntegralAcc, Partial, PartialAcc, Quantile, Slot, TwaAcc, ValuesAcc,
    WindowSpec, Windowed,
};
use crate::runtime::command::{AggQuery, Answer, Command, Failure};
use crate::runtime::dispatch::execute;
use crate::runtime::router::Router;
use crate::runtime::scan::RangeScan;
use crate::Point;

/// Points a statement may still read, and hold in memory at once where
/// the answer or the merge needs them all (raw answers, points merged
/// across series).
#[derive(Debug)]
pub struct Budget {
    left: u64,
    max: u64,
    held: usize,
    max_held: usize,
}

impl Budget {
    /// A budget of `max` points read and `max_held` held.
    pub fn new(max: u64, max_held: usize) -> Budget {
        Budget {
            left: max,
            max,
            held: 0,
            max_held,
        }
    }

    fn hold(&mut self, n: usize) -> Result<(), String> {
        self.held = self.held.saturating_add(n);
        if self.held > self.max_held {
            return Err(format!(
                "query holds more than {} points at once (the server's --query-max-rows): narrow the time range, GROUP BY a tag or aggregate",
                self.max_held
            ));
        }
        Ok(())
    }

    fn charge(&mut self, n: usize) -> Result<(), String> {
        match self.left.checked_sub(n as u64) {
            Some(l) => {
                self.left = l;
                Ok(())
            }
            None => Err(format!(
                "query reads more than {} points (the server's --query-max-points): narrow the time range or the series",
                self.max
            )),
        }
    }
}

fn failed(f: Failure) -> String {
    f.to_string()
}

/// Calls `f` with the points of `id` in `[start, end)` (µs), chunk by
/// chunk ([`RangeScan`]), in time order, charging each chunk to `budget`.
async fn for_each_chunk(
    router: &Rc<Router>,
    id: u32,
    start: i64,
    end: i64,
    budget: &mut Budget,
    hold: bool,
    mut f: impl FnMut(&[Point]),
) -> Result<(), String> {
    let mut scan = RangeScan::new(router, id, start, end);
    while let Some(pts) = scan.next().await.map_err(failed)? {
        budget.charge(pts.len())?;
        if hold {
            budget.hold(pts.len())?;
        }
        f(&pts);
    }
    Ok(())
}

/// The points of `id` in `[start, end)` (µs), in time order.
pub async fn fetch_points(
    router: &Rc<Router>,
    id: u32,
    start: i64,
    end: i64,
    budget: &mut Budget,
) -> Result<Vec<Point>, String> {
    let mut out = Vec::new();
    for_each_chunk(router, id, start, end, budget, true, |p| {
        out.extend_from_slice(p)
    })
    .await?;
    Ok(out)
}

/// One function over one series' points, window by window.
async fn drive<A: Accumulator>(
    router: &Rc<Router>,
    id: u32,
    spec: &WindowSpec,
    acc: A,
    good_only: bool,
    before: Option<Point>,
    budget: &mut Budget,
) -> Result<Vec<A::Output>, String> {
    let mut w = Windowed::new(spec.clone(), acc, good_only);
    if let Some(b) = before {
        w.set_before(b.ts, b.value, b.quality)
            .map_err(|e| e.to_string())?;
    }
    for_each_chunk(router, id, spec.start(), spec.end(), budget, false, |pts| {
        w.push_all(pts.iter().map(|p| (p.ts, p.value, p.quality)))
    })
    .await?;
    w.finish().map_err(|e| e.to_string())
}

/// Per window: the function's value, and for the selectors (`first`,
/// `last`, `min`, `max`) the time of the point selected.
#[derive(Debug, Default)]
pub struct Windows {
    /// One slot per window of the spec.
    pub slots: Vec<Slot>,
    /// For selectors, the selected point's time (µs) per window.
    pub times: Vec<Option<i64>>,
}

/// Where min and max were first reached (InfluxDB: the earliest point of
/// equal values).
#[derive(Clone, Copy, Default)]
struct Extremes {
    min: Option<(f64, i64)>,
    max: Option<(f64, i64)>,
}

impl Extremes {
    fn push(&mut self, ts: i64, v: f64) {
        if v.is_nan() {
            return;
        }
        match self.min {
            Some((m, t)) if v > m || (v == m && t <= ts) => {}
            _ => self.min = Some((v, ts)),
        }
        match self.max {
            Some((m, t)) if v < m || (v == m && t <= ts) => {}
            _ => self.max = Some((v, ts)),
        }
    }
}

/// `func` per window of `spec` over the series `ids` merged into one
/// (InfluxQL without `GROUP BY` tag merges every series of a measurement):
/// mergeable functions merge per-series [`Partial`]s; median and
/// percentile take the union of the values; integral and
/// `time_weighted_mean` of several series run over the time-ordered merge
/// of the points (equal times: the later series' point replaces the
/// earlier). `time_weighted_mean` of one series is the engine's
/// ([`engine_windows`]): the value in force at the start (the last point
/// before it) counts, and linear interpolates towards the first point at
/// or after the end, as `/api/v1/aggregate` answers.
pub async fn fetch_windows(
    router: &Rc<Router>,
    ids: &[u32],
    spec: &WindowSpec,
    func: Func,
    good_only: bool,
    budget: &mut Budget,
    cache: &mut PartialCache,
) -> Result<Windows, String> {
    func.validate().map_err(|e| e.to_string())?;
    let n = spec.len();
    let mut out = Windows {
        slots: vec![Slot::Empty; n],
        times: vec![None; n],
    };
    if n == 0 || ids.is_empty() {
        return Ok(out);
    }
    if func.mergeable() {
        let mut merged: Vec<Option<Partial>> = vec![None; n];
        let mut ext = vec![Extremes::default(); if n == 1 { 1 } else { 0 }];
        // One window of min or max: also find where the extreme was
        // reached (InfluxDB labels the row with that time), so read the
        // points; everything else is the engine's per-window partials.
        let extremes = n == 1 && matches!(func, Func::Min | Func::Max);
        let mut pushed = if extremes {
            Vec::new()
        } else {
            let m2 = func == Func::Stddev;
            cache.get(router, ids, spec, good_only, m2, budget).await?
        }
        .into_iter();
        for &id in ids {
            let parts = if extremes {
                let mut w = Windowed::new(spec.clone(), PartialAcc::default(), good_only);
                let e = &mut ext[0];
                for_each_chunk(router, id, spec.start(), spec.end(), budget, false, |pts| {
                    for p in pts {
                        if !good_only || p.quality >= crate::aggregate::GOOD {
                            e.push(p.ts, p.value);
                        }
                    }
                    w.push_all(pts.iter().map(|p| (p.ts, p.value, p.quality)))
                })
                .await?;
                w.finish().map_err(|e| e.to_string())?
            } else {
                pushed.next().unwrap_or_default()
            };
            for (m, p) in merged.iter_mut().zip(parts) {
                match (m.as_mut(), p) {
                    (Some(m), Some(p)) => m.merge(&p),
                    (None, Some(p)) => *m = Some(p),
                    _ => {}
                }
            }
        }
        for (i, m) in merged.iter().enumerate() {
            let Some(p) = m else { continue };
            out.slots[i] = p.eval(func).map_err(|e| e.to_string())?;
            out.times[i] = match func {
                Func::First => Some(p.first.ts),
                Func::Last => Some(p.last.ts),
                Func::Min => ext.first().and_then(|e| e.min).map(|m| m.1),
                Func::Max => ext.first().and_then(|e| e.max).map(|m| m.1),
                _ => None,
            };
        }
        return Ok(out);
    }
    match func {
        Func::Median | Func::Percentile(_) => {
            let q = match func {
                Func::Percentile(p) => Quantile::Percentile(p),
                _ => Quantile::Median,
            };
            if let (Func::Percentile(p), 1) = (func, n) {
                // One window: percentile is a selector, labelled with the
                // chosen point's time (InfluxDB sorts the points by value;
                // equal values here by time).
                let mut pts: Vec<(f64, i64)> = Vec::new();
                for &id in ids {
                    for_each_chunk(router, id, spec.start(), spec.end(), budget, true, |c| {
                        pts.extend(
                            c.iter()
                                .filter(|p| {
                                    !p.value.is_nan()
                                        && (!good_only || p.quality >= crate::aggregate::GOOD)
                                })
                                .map(|p| (p.value, p.ts)),
                        )
                    })
                    .await?;
                }
                let len = pts.len();
                let i = (len as f64 * p / 100.0 + 0.5).floor() - 1.0;
                if len > 0 && (0.0..len as f64).contains(&i) {
                    pts.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
                    let (v, t) = pts[i as usize];
                    out.slots[0] = Slot::Value(v);
                    out.times[0] = Some(t);
                }
                return Ok(out);
            }
            if ids.len() == 1 {
                out.slots = drive(
                    router,
                    ids[0],
                    spec,
                    ValuesAcc::new(q),
                    good_only,
                    None,
                    budget,
                )
                .await?;
                return Ok(out);
            }
            let mut accs = vec![ValuesAcc::new(q); n];
            for &id in ids {
                for_each_chunk(router, id, spec.start(), spec.end(), budget, true, |pts| {
                    for p in pts {
                        if p.value.is_nan() || (good_only && p.quality < crate::aggregate::GOOD) {
                            continue;
                        }
                        if let Some(i) = spec.index_of(p.ts) {
                            accs[i].push(p.ts, p.value, true);
                        }
                    }
                })
                .await?;
            }
            out.slots = accs.iter_mut().map(ValuesAcc::quantile).collect();
            Ok(out)
        }
        Func::Integral { unit, mode } => {
            let acc = IntegralAcc::new(unit, mode).map_err(|e| e.to_string())?;
            out.slots = merged_stream(router, ids, spec, acc, good_only, None, budget).await?;
            Ok(out)
        }
        Func::TimeWeighted(_) if ids.len() == 1 => {
            out.slots = engine_windows(router, ids[0], spec, func, good_only, budget).await?;
            Ok(out)
        }
        Func::TimeWeighted(interp) => {
            let acc = TwaAcc::new(interp);
            out.slots = merged_stream(router, ids, spec, acc, good_only, None, budget).await?;
            Ok(out)
        }
        other => Err(format!("{} cannot be computed here", other.name())),
    }
}

/// `func` per window of `spec` over one series, computed by the owning
/// shard (`Command::Aggregate` with [`AggQuery::Windows`], `Fill::None`:
/// the caller fills), so no point crosses to this layer. The engine looks
/// up the value in force at the start and, for linear interpolation, the
/// first point at or after the end, as the kernels say. The budget is
/// charged beforehand with the engine's upper bound of the points in the
/// range (`Command::CountBound`, from the index: no block read).
async fn engine_windows(
    router: &Rc<Router>,
    id: u32,
    spec: &WindowSpec,
    func: Func,
    good_only: bool,
    budget: &mut Budget,
) -> Result<Vec<Slot>, String> {
    let bound = Command::CountBound {
        tag: id,
        start: spec.start(),
        end: spec.end(),
    };
    match execute(router, bound).await.map_err(failed)? {
        Answer::Count { points, .. } => {
            budget.charge(usize::try_from(points).unwrap_or(usize::MAX))?
        }
        other => return Err(failed(Failure::unexpected("influxql count", &other))),
    }
    let cmd = Command::Aggregate {
        tags: vec![id],
        query: AggQuery::Windows {
            start: spec.start(),
            end: spec.end(),
            every: spec.every(),
            offset: spec.offset(),
            func,
            fill: Fill::None,
        },
        good_only,
    };
    let rows = match execute(router, cmd).await.map_err(failed)? {
        Answer::Rows(mut r) if r.len() == 1 => r.pop().unwrap_or_default(),
        other => return Err(failed(Failure::unexpected("influxql aggregate", &other))),
    };
    let mut slots = vec![Slot::Empty; spec.len()];
    for (t, v) in rows {
        let Some(i) = spec.index_of(t.max(spec.start())) else {
            return Err(format!(
                "the engine answered a window at {t} outside the query"
            ));
        };
        slots[i] = v.map_or(Slot::Null, Slot::Value);
    }
    Ok(slots)
}

/// Per series (in `ids` order), per window, its partial.
type SeriesPartials = Vec<Vec<Option<Partial>>>;

/// The engine's per-window partials of the series a statement asked for,
/// so the mergeable aggregates of one `SELECT` (`first, last, min, max`
/// of a plot) share one engine pass and one charge to the budget, and the
/// groups of a `GROUP BY "tag"` are fetched together
/// ([`PartialCache::expect`]) instead of one engine request per group.
/// Entries are for one window spec and quality choice (another drops
/// them). Partials fetched without `m2` (answerable from rollups) do not
/// serve `stddev`.
#[derive(Default)]
pub struct PartialCache {
    key: Option<(i64, i64, i64, i64, bool)>,
    /// Per series: whether its partials carry `m2`, and the partials.
    by_id: AHashMap<u32, (bool, Vec<Option<Partial>>)>,
    /// Series the statement's later groups will ask for.
    expected: Vec<u32>,
}

/// Most per-window partials (about 90 bytes each) a cache fetches ahead
/// for a statement's later groups; past it, groups are fetched one at a
/// time and only the current one's are kept.
const PREFETCH_PARTIALS: usize = 1 << 20;

impl PartialCache {
    /// The series the statement's groups will ask for: the first request
    /// that misses fetches them all (in batches of
    /// [`SERIES_PER_AGGREGATE`]), when they fit [`PREFETCH_PARTIALS`].
    pub fn expect(&mut self, ids: Vec<u32>) {
        self.expected = ids;
    }

    async fn get(
        &mut self,
        router: &Rc<Router>,
        ids: &[u32],
        spec: &WindowSpec,
        good_only: bool,
        m2: bool,
        budget: &mut Budget,
    ) -> Result<SeriesPartials, String> {
        let key = (
            spec.start(),
            spec.end(),
            spec.every(),
            spec.offset(),
            good_only,
        );
        if self.key != Some(key) {
            self.by_id.clear();
            self.key = Some(key);
        }
        let by_id = &self.by_id;
        let fresh = |id: &u32| by_id.get(id).is_some_and(|(has, _)| *has || !m2);
        let mut want: Vec<u32> = ids.iter().copied().filter(|id| !fresh(id)).collect();
        if !want.is_empty() {
            let ahead = self.expected.len().saturating_mul(spec.len()) <= PREFETCH_PARTIALS;
            if ahead {
                want.extend(self.expected.iter().copied().filter(|id| !fresh(id)));
                want.sort_unstable();
                want.dedup();
            } else {
                let asked: std::collections::HashSet<u32> = ids.iter().copied().collect();
                self.by_id.retain(|id, _| asked.contains(id));
            }
            let got = engine_partials(router, &want, spec, good_only, m2, budget).await?;
            for (id, p) in want.into_iter().zip(got) {
                self.by_id.insert(id, (m2, p));
            }
        }
        Ok(ids
            .iter()
            .map(|id| {
                self.by_id
                    .get(id)
                    .map(|(_, p)| p.clone())
                    .unwrap_or_default()
            })
            .collect())
    }
}

/// Series per `Command::Aggregate` of [`engine_partials`]: the budget is
/// checked between batches, so a statement over more points than its
/// budget stops after at most one batch too many.
const SERIES_PER_AGGREGATE: usize = 64;

/// Every series' per-window [`Partial`]s, computed by the owning shards
/// (one `Command::Aggregate` per [`SERIES_PER_AGGREGATE`] series), in `ids`
/// order. The points they counted are charged to `budget` after each
/// batch.
async fn engine_partials(
    router: &Rc<Router>,
    ids: &[u32],
    spec: &WindowSpec,
    good_only: bool,
    m2: bool,
    budget: &mut Budget,
) -> Result<Vec<Vec<Option<Partial>>>, String> {
    let mut all = Vec::with_capacity(ids.len());
    for batch in ids.chunks(SERIES_PER_AGGREGATE) {
        let cmd = Command::Aggregate {
            tags: batch.to_vec(),
            query: AggQuery::Partials {
                start: spec.start(),
                end: spec.end(),
                every: spec.every(),
                offset: spec.offset(),
                m2,
            },
            good_only,
        };
        let parts = match execute(router, cmd).await.map_err(failed)? {
            Answer::Partials(p) => p,
            other => return Err(failed(Failure::unexpected("influxql aggregate", &other))),
        };
        if parts.len() != batch.len() || parts.iter().any(|p| p.len() != spec.len()) {
            return Err(format!(
                "the engine answered {} series of windows for {} series of {} windows",
                parts.len(),
                batch.len(),
                spec.len()
            ));
        }
        let counted: u64 = parts.iter().flatten().flatten().map(|p| p.count).sum();
        budget.charge(usize::try_from(counted).unwrap_or(usize::MAX))?;
        all.extend(parts);
    }
    Ok(all)
}

/// `acc` over the time-ordered merge of the series' points (one series:
/// streamed chunk by chunk; several: merged in memory, within the budget).
async fn merged_stream<A: Accumulator<Output = Slot>>(
    router: &Rc<Router>,
    ids: &[u32],
    spec: &WindowSpec,
    acc: A,
    good_only: bool,
    before: Option<Point>,
    budget: &mut Budget,
) -> Result<Vec<Slot>, String> {
    if ids.len() == 1 {
        return drive(router, ids[0], spec, acc, good_only, before, budget).await;
    }
    let mut all: Vec<(i64, usize, Point)> = Vec::new();
    for (k, &id) in ids.iter().enumerate() {
        for_each_chunk(router, id, spec.start(), spec.end(), budget, true, |pts| {
            all.extend(pts.iter().map(|p| (p.ts, k, *p)))
        })
        .await?;
    }
    all.sort_by_key(|&(ts, k, _)| (ts, k));
    // Equal times: the later series' point wins.
    let mut merged: Vec<Point> = Vec::with_capacity(all.len());
    for (_, _, p) in all {
        match merged.last_mut() {
            Some(l) if l.ts == p.ts => *l = p,
            _ => merged.push(p),
        }
    }
    let mut w = Windowed::new(spec.clone(), acc, good_only);
    w.push_all(merged.iter().map(|p| (p.ts, p.value, p.quality)));
    w.finish().map_err(|e| e.to_string())
}
