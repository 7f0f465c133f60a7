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
//! both bounded by the budget. `top`, `bottom`, `distinct`, `mode` and
//! `count(distinct)` ([`fetch_point_sets`]) keep per window only what
//! their answer needs (at most `n` points, each value once), charged to
//! the budget's held points. A condition on field values ([`PointFilter`])
//! filters every chunk before it is used (the condition's other fields
//! read over the chunk's span); with one, the mergeable functions are
//! computed here from the points that pass, never from the engine's
//! partials.

use std::rc::Rc;

use ahash::AHashMap;

use crate::aggregate::{
    Accumulator, Fill, Func, IntegralAcc, Partial, PartialAcc, Quantile, Slot, TwaAcc, ValuesAcc,
    WindowSpec, Windowed,
};
use crate::influxql::BinaryOp;
use crate::runtime::command::{AggQuery, Answer, Command, Failure};
use crate::runtime::dispatch::execute;
use crate::runtime::router::Router;
use crate::runtime::scan::RangeScan;
use crate::storage::catalog::index::SeriesInfo;
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
        Budget::after(max, 0, max_held)
    }

    /// A budget of `max` points read of which `spent` are already read
    /// (by the request's earlier statements), and `max_held` held.
    pub fn after(max: u64, spent: u64, max_held: usize) -> Budget {
        Budget {
            left: max.saturating_sub(spent),
            max,
            held: 0,
            max_held,
        }
    }

    /// Points read from this budget so far (of every budget, since `after`).
    pub fn read(&self) -> u64 {
        self.max - self.left
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

    fn release(&mut self, n: usize) {
        self.held = self.held.saturating_sub(n);
    }

    fn charge(&mut self, n: usize) -> Result<(), String> {
        match self.left.checked_sub(n as u64) {
            Some(l) => {
                self.left = l;
                Ok(())
            }
            None => Err(format!(
                "query reads more than {} points (the server's --query-max-points, for a request's statements together): narrow the time range or the series",
                self.max
            )),
        }
    }
}

fn failed(f: Failure) -> String {
    f.to_string()
}

/// A condition on field values (`WHERE value > 10`, `usage <> 0`, `a + b
/// < 5`, under `AND`/`OR`), true or false per point of a series: a
/// comparison whose field has no point at that time is false, as in
/// InfluxDB.
#[derive(Clone, Debug, PartialEq)]
pub enum FieldCond {
    /// Every one holds.
    And(Vec<FieldCond>),
    /// One holds.
    Or(Vec<FieldCond>),
    /// `lhs op rhs` (`=`, `!=`, `<`, `<=`, `>`, `>=`).
    Cmp(BinaryOp, Operand, Operand),
    /// `true` / `false`.
    Const(bool),
}

/// A side of a [`FieldCond`] comparison.
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    /// A number.
    Num(f64),
    /// The value of the condition's `i`-th field at the point's time.
    Field(usize),
    /// Arithmetic (`+ - * / %`; division by zero is 0, as InfluxDB).
    Bin(BinaryOp, Box<Operand>, Box<Operand>),
}

impl Operand {
    fn eval(&self, vals: &[Option<f64>]) -> Option<f64> {
        Some(match self {
            Operand::Num(n) => *n,
            Operand::Field(i) => vals.get(*i).copied().flatten()?,
            Operand::Bin(op, l, r) => {
                let (a, b) = (l.eval(vals)?, r.eval(vals)?);
                match op {
                    BinaryOp::Add => a + b,
                    BinaryOp::Sub => a - b,
                    BinaryOp::Mul => a * b,
                    BinaryOp::Div if b == 0.0 => 0.0,
                    BinaryOp::Div => a / b,
                    BinaryOp::Mod => a % b,
                    _ => return None,
                }
            }
        })
    }
}

impl FieldCond {
    /// Whether the condition holds for the fields' values at one time.
    pub fn holds(&self, vals: &[Option<f64>]) -> bool {
        match self {
            FieldCond::And(v) => v.iter().all(|c| c.holds(vals)),
            FieldCond::Or(v) => v.iter().any(|c| c.holds(vals)),
            FieldCond::Const(b) => *b,
            FieldCond::Cmp(op, l, r) => {
                let (Some(a), Some(b)) = (l.eval(vals), r.eval(vals)) else {
                    return false;
                };
                match op {
                    BinaryOp::Eq => a == b,
                    BinaryOp::Neq => a != b,
                    BinaryOp::Lt => a < b,
                    BinaryOp::Lte => a <= b,
                    BinaryOp::Gt => a > b,
                    BinaryOp::Gte => a >= b,
                    _ => false,
                }
            }
        }
    }
}

/// A statement's [`FieldCond`] and, per series field id, the ids of the
/// condition's fields in the same series: every point read is kept only
/// where the condition holds at its time. The condition's other fields
/// are read over each chunk's time span (charged to the budget, held only
/// while that chunk is filtered). Points so filtered are never answered
/// from the engine's partials or summaries: the functions are computed
/// here, from the points.
#[derive(Debug)]
pub struct PointFilter {
    cond: FieldCond,
    /// Series field id → the condition's fields in its series.
    by_id: AHashMap<u32, Vec<Option<u32>>>,
    /// How many fields the condition names.
    n: usize,
}

impl PointFilter {
    /// `cond` over `fields` (its [`Operand::Field`] indexes), for the
    /// series `series`.
    pub fn new(cond: FieldCond, fields: &[String], series: &[SeriesInfo]) -> PointFilter {
        let mut by_id = AHashMap::new();
        for si in series {
            let ids: Vec<Option<u32>> = fields
                .iter()
                .map(|f| si.fields.iter().find(|(n, _)| n == f).map(|(_, id)| *id))
                .collect();
            for (_, id) in &si.fields {
                by_id.insert(*id, ids.clone());
            }
        }
        PointFilter {
            cond,
            by_id,
            n: fields.len(),
        }
    }

    /// The points of `pts` (of the series field `id`, in time order) where
    /// the condition holds.
    async fn keep(
        &self,
        router: &Rc<Router>,
        id: u32,
        pts: Vec<Point>,
        budget: &mut Budget,
    ) -> Result<Vec<Point>, String> {
        let (Some(first), Some(last)) = (pts.first(), pts.last()) else {
            return Ok(pts);
        };
        let (lo, hi) = (first.ts, last.ts.saturating_add(1));
        let none = vec![None; self.n];
        let others = self.by_id.get(&id).unwrap_or(&none);
        // Per condition field: its points over the chunk's span (`None`:
        // the field is this one, or absent from the series).
        let mut cols: Vec<Option<Vec<Point>>> = Vec::with_capacity(others.len());
        let mut held = 0usize;
        for o in others {
            match o {
                Some(oid) if *oid != id => {
                    let mut v = Vec::new();
                    let mut scan = RangeScan::new(router, *oid, lo, hi);
                    while let Some(c) = scan.next().await.map_err(failed)? {
                        budget.charge(c.len())?;
                        budget.hold(c.len())?;
                        held += c.len();
                        v.extend_from_slice(&c);
                    }
                    cols.push(Some(v));
                }
                _ => cols.push(None),
            }
        }
        let mut vals = vec![None; others.len()];
        let kept = pts
            .into_iter()
            .filter(|p| {
                for (k, (o, col)) in others.iter().zip(&cols).enumerate() {
                    vals[k] = match (o, col) {
                        (_, Some(c)) => c
                            .binary_search_by_key(&p.ts, |q| q.ts)
                            .ok()
                            .map(|i| c[i].value),
                        (Some(_), None) => Some(p.value),
                        (None, None) => None,
                    }
                    .filter(|v| !v.is_nan());
                }
                self.cond.holds(&vals)
            })
            .collect();
        budget.release(held);
        Ok(kept)
    }
}

/// Calls `f` with the points of `id` in `[start, end)` (µs), chunk by
/// chunk ([`RangeScan`]), in time order, charging each chunk to `budget`.
#[allow(clippy::too_many_arguments)]
async fn for_each_chunk(
    router: &Rc<Router>,
    id: u32,
    start: i64,
    end: i64,
    budget: &mut Budget,
    hold: bool,
    filter: Option<&PointFilter>,
    mut f: impl FnMut(&[Point]),
) -> Result<(), String> {
    for_each_chunk_holding(router, id, start, end, budget, filter, |pts| {
        f(pts);
        if hold {
            pts.len()
        } else {
            0
        }
    })
    .await
}

/// [`for_each_chunk`] where `f` answers how many points it now holds
/// beyond what it held (charged to the budget's held points).
async fn for_each_chunk_holding(
    router: &Rc<Router>,
    id: u32,
    start: i64,
    end: i64,
    budget: &mut Budget,
    filter: Option<&PointFilter>,
    mut f: impl FnMut(&[Point]) -> usize,
) -> Result<(), String> {
    let mut scan = RangeScan::new(router, id, start, end);
    while let Some(pts) = scan.next().await.map_err(failed)? {
        budget.charge(pts.len())?;
        let pts = match filter {
            Some(flt) => flt.keep(router, id, pts, budget).await?,
            None => pts,
        };
        let n = f(&pts);
        budget.hold(n)?;
    }
    Ok(())
}

/// The functions over a window's points that keep some of them (within
/// the budget's held points): `top(f, n)` and `bottom(f, n)` (the `n`
/// best points, a heap of at most `n` per window), `distinct` (each value
/// once) and `mode` (every value, as median).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PointsFn {
    /// `top(f, n)`.
    Top(u64),
    /// `bottom(f, n)`.
    Bottom(u64),
    /// `distinct(f)`.
    Distinct,
    /// `mode(f)`.
    Mode,
    /// `count(distinct(f))`.
    CountDistinct,
}

impl PointsFn {
    /// The name used in errors.
    pub fn name(self) -> &'static str {
        match self {
            PointsFn::Top(_) => "top",
            PointsFn::Bottom(_) => "bottom",
            PointsFn::Distinct => "distinct",
            PointsFn::Mode => "mode",
            PointsFn::CountDistinct => "count",
        }
    }

    /// Whether it answers one value per window (an aggregate), not rows.
    pub fn one_value(self) -> bool {
        matches!(self, PointsFn::Mode | PointsFn::CountDistinct)
    }
}

/// A candidate of top/bottom, ordered by how good it is: the larger value
/// (top) or the smaller (bottom), equal values the earlier point (as
/// InfluxDB 1.x's `FloatTopReducer`/`FloatBottomReducer` order them).
#[derive(Clone, Copy, Debug)]
struct Cand {
    v: f64,
    t: i64,
    top: bool,
}

impl Ord for Cand {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        let by_v = if self.top {
            self.v.total_cmp(&o.v)
        } else {
            o.v.total_cmp(&self.v)
        };
        by_v.then(o.t.cmp(&self.t))
    }
}

impl PartialOrd for Cand {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl PartialEq for Cand {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o).is_eq()
    }
}

impl Eq for Cand {}

/// One window's state of a [`PointsFn`].
enum Coll {
    /// The best `n` so far, the worst on top.
    Best {
        n: u64,
        top: bool,
        heap: std::collections::BinaryHeap<std::cmp::Reverse<Cand>>,
    },
    /// `top(f, tag, n)`: the best point of each tag value (its index).
    BestBy {
        n: u64,
        top: bool,
        by: AHashMap<usize, Cand>,
    },
    /// Value (bits, -0 as 0) → (value, first time, last time); `desc`:
    /// ORDER BY time DESC, where InfluxDB meets the points newest first.
    Distinct {
        m: AHashMap<u64, (f64, i64, i64)>,
        desc: bool,
    },
    /// Every (value, time), in arrival order; `desc` as for `Distinct`.
    Mode { pts: Vec<(f64, i64)>, desc: bool },
}

impl Coll {
    fn new(f: PointsFn, by_key: bool, desc: bool) -> Coll {
        match f {
            PointsFn::Top(n) | PointsFn::Bottom(n) if by_key => Coll::BestBy {
                n,
                top: matches!(f, PointsFn::Top(_)),
                by: AHashMap::new(),
            },
            PointsFn::Top(n) => Coll::Best {
                n,
                top: true,
                heap: Default::default(),
            },
            PointsFn::Bottom(n) => Coll::Best {
                n,
                top: false,
                heap: Default::default(),
            },
            PointsFn::Distinct | PointsFn::CountDistinct => Coll::Distinct {
                m: AHashMap::new(),
                desc,
            },
            PointsFn::Mode => Coll::Mode {
                pts: Vec::new(),
                desc,
            },
        }
    }

    /// Takes a point (of the tag values `key`); answers whether it is now
    /// held.
    fn push(&mut self, t: i64, v: f64, key: usize) -> bool {
        match self {
            Coll::BestBy { top, by, .. } => {
                let c = Cand { v, t, top: *top };
                match by.entry(key) {
                    std::collections::hash_map::Entry::Occupied(mut e) => {
                        if c > *e.get() {
                            e.insert(c);
                        }
                        false
                    }
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(c);
                        true
                    }
                }
            }
            Coll::Best { n, top, heap } => {
                let c = Cand { v, t, top: *top };
                if (heap.len() as u64) < *n {
                    heap.push(std::cmp::Reverse(c));
                    return true;
                }
                if let Some(mut worst) = heap.peek_mut() {
                    if c > worst.0 {
                        worst.0 = c;
                    }
                }
                false
            }
            Coll::Distinct { m, .. } => {
                let v = v + 0.0;
                match m.entry(v.to_bits()) {
                    std::collections::hash_map::Entry::Occupied(mut e) => {
                        let x = e.get_mut();
                        x.1 = x.1.min(t);
                        x.2 = x.2.max(t);
                        false
                    }
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert((v, t, t));
                        true
                    }
                }
            }
            Coll::Mode { pts, .. } => {
                pts.push((v, t));
                true
            }
        }
    }

    /// The window's answer as (time, value): top/bottom the points in time
    /// order (equal times: the better first), distinct the values in order
    /// of their first time (then value), mode one value (time 0: the
    /// caller labels it) — the most frequent, the smallest of equally
    /// frequent ones, as InfluxDB.
    fn finish(self) -> Vec<(i64, f64, usize)> {
        match self {
            Coll::Best { heap, .. } => {
                let mut v: Vec<Cand> = heap.into_iter().map(|r| r.0).collect();
                v.sort_by(|a, b| b.cmp(a));
                v.sort_by_key(|c| c.t);
                v.into_iter().map(|c| (c.t, c.v, 0)).collect()
            }
            Coll::BestBy { n, by, .. } => {
                let mut v: Vec<(Cand, usize)> = by.into_iter().map(|(k, c)| (c, k)).collect();
                v.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
                v.truncate(usize::try_from(n).unwrap_or(usize::MAX));
                v.sort_by_key(|c| c.0.t);
                v.into_iter().map(|(c, k)| (c.t, c.v, k)).collect()
            }
            Coll::Distinct { m, desc } => {
                // Newest first (DESC), the first met is the last in time.
                let mut v: Vec<(i64, f64, usize)> = m
                    .into_values()
                    .map(|(v, first, last)| (if desc { last } else { first }, v, 0))
                    .collect();
                v.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
                v
            }
            Coll::Mode { mut pts, desc } => {
                // InfluxDB 1.x's FloatModeReduceSlice, over the points
                // sorted by value, equal values in time order (InfluxDB
                // merges the series by time; its sort.Sort may shuffle
                // equal values beyond 12 points): a run of equal values takes the lead when it
                // outnumbers the leader, or equals it and its first point
                // is not later than the leader's last counted one.
                if pts.len() == 1 {
                    return vec![(0, pts[0].0, 0)];
                }
                pts.sort_by(|a, b| {
                    let by_t = if desc { b.1.cmp(&a.1) } else { a.1.cmp(&b.1) };
                    a.0.total_cmp(&b.0).then(by_t)
                });
                let Some(&(v0, t0)) = pts.first() else {
                    return Vec::new();
                };
                let (mut most_freq, mut curr_freq) = (0usize, 0usize);
                let (mut curr_mode, mut most_mode) = (v0, v0);
                let (mut most_time, mut curr_time) = (t0, t0);
                for &(v, t) in &pts {
                    if v != curr_mode {
                        curr_freq = 1;
                        curr_mode = v;
                        curr_time = t;
                        continue;
                    }
                    curr_freq += 1;
                    if most_freq > curr_freq || (most_freq == curr_freq && curr_time > most_time) {
                        continue;
                    }
                    most_freq = curr_freq;
                    most_mode = v;
                    most_time = t;
                }
                vec![(0, most_mode, 0)]
            }
        }
    }
}

/// The answer of `f` from a window's collection.
fn finish(c: Coll, f: PointsFn) -> Vec<(i64, f64, usize)> {
    let rows = c.finish();
    match f {
        PointsFn::CountDistinct => vec![(0, rows.len() as f64, 0)],
        _ => rows,
    }
}

/// `f` per window of `spec` over the points of the series `ids` merged
/// (InfluxQL without `GROUP BY` tag), NaN points skipped: per window the
/// rows `Coll::finish` answers (with `keys`, one per id: the index of
/// the series' tag values for `top(f, tag, n)`). The points kept are charged to the
/// budget's held points, so one window of `top(f, 1000000000)` or
/// `distinct` over many values stays within `--query-max-rows`.
#[allow(clippy::too_many_arguments)]
pub async fn fetch_point_sets(
    router: &Rc<Router>,
    ids: &[u32],
    keys: &[usize],
    spec: &WindowSpec,
    f: PointsFn,
    desc: bool,
    budget: &mut Budget,
    filter: Option<&PointFilter>,
) -> Result<Vec<Vec<(i64, f64, usize)>>, String> {
    let mut colls: Vec<Option<Coll>> = (0..spec.len()).map(|_| None).collect();
    let by_key = !keys.is_empty();
    for (k, &id) in ids.iter().enumerate() {
        let key = keys.get(k).copied().unwrap_or(0);
        for_each_chunk_holding(
            router,
            id,
            spec.start(),
            spec.end(),
            budget,
            filter,
            |pts| {
                let mut held = 0;
                for p in pts {
                    if p.value.is_nan() {
                        continue;
                    }
                    let Some(i) = spec.index_of(p.ts) else {
                        continue;
                    };
                    let Some(c) = colls.get_mut(i) else { continue };
                    if c.get_or_insert_with(|| Coll::new(f, by_key, desc))
                        .push(p.ts, p.value, key)
                    {
                        held += 1;
                    }
                }
                held
            },
        )
        .await?;
    }
    Ok(colls
        .into_iter()
        .map(|c| c.map(|c| finish(c, f)).unwrap_or_default())
        .collect())
}

/// The points of `id` in `[start, end)` (µs), in time order.
pub async fn fetch_points(
    router: &Rc<Router>,
    id: u32,
    start: i64,
    end: i64,
    budget: &mut Budget,
    filter: Option<&PointFilter>,
) -> Result<Vec<Point>, String> {
    let mut out = Vec::new();
    for_each_chunk(router, id, start, end, budget, true, filter, |p| {
        out.extend_from_slice(p)
    })
    .await?;
    Ok(out)
}

/// One function over one series' points, window by window.
#[allow(clippy::too_many_arguments)]
async fn drive<A: Accumulator>(
    router: &Rc<Router>,
    id: u32,
    spec: &WindowSpec,
    acc: A,
    good_only: bool,
    before: Option<Point>,
    budget: &mut Budget,
    filter: Option<&PointFilter>,
) -> Result<Vec<A::Output>, String> {
    let mut w = Windowed::new(spec.clone(), acc, good_only);
    if let Some(b) = before {
        w.set_before(b.ts, b.value, b.quality)
            .map_err(|e| e.to_string())?;
    }
    for_each_chunk(
        router,
        id,
        spec.start(),
        spec.end(),
        budget,
        false,
        filter,
        |pts| w.push_all(pts.iter().map(|p| (p.ts, p.value, p.quality))),
    )
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
#[allow(clippy::too_many_arguments)]
pub async fn fetch_windows(
    router: &Rc<Router>,
    ids: &[u32],
    spec: &WindowSpec,
    func: Func,
    good_only: bool,
    budget: &mut Budget,
    cache: &mut PartialCache,
    filter: Option<&PointFilter>,
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
        // A field condition: the partials of the points that pass it,
        // computed here.
        let local = extremes || filter.is_some();
        let mut pushed = if local {
            Vec::new()
        } else {
            let m2 = func == Func::Stddev;
            cache.get(router, ids, spec, good_only, m2, budget).await?
        }
        .into_iter();
        for &id in ids {
            let parts = if local {
                let mut w = Windowed::new(spec.clone(), PartialAcc::default(), good_only);
                let mut e = ext.first_mut();
                let (start, end) = (spec.start(), spec.end());
                for_each_chunk(router, id, start, end, budget, false, filter, |pts| {
                    if let Some(e) = e.as_deref_mut() {
                        for p in pts {
                            if !good_only || p.quality >= crate::aggregate::GOOD {
                                e.push(p.ts, p.value);
                            }
                        }
                    }
                    w.push_all(pts.iter().map(|p| (p.ts, p.value, p.quality)))
                })
                .await?;
                Rc::new(w.finish().map_err(|e| e.to_string())?)
            } else {
                pushed.next().unwrap_or_default()
            };
            for (m, p) in merged.iter_mut().zip(parts.iter()) {
                match (m.as_mut(), p) {
                    (Some(m), Some(p)) => m.merge(p),
                    (None, Some(p)) => *m = Some(*p),
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
                    let (start, end) = (spec.start(), spec.end());
                    for_each_chunk(router, id, start, end, budget, true, filter, |c| {
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
                    filter,
                )
                .await?;
                return Ok(out);
            }
            let mut accs = vec![ValuesAcc::new(q); n];
            for &id in ids {
                let (start, end) = (spec.start(), spec.end());
                for_each_chunk(router, id, start, end, budget, true, filter, |pts| {
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
            out.slots = merged_stream(router, ids, spec, acc, good_only, budget, filter).await?;
            Ok(out)
        }
        Func::TimeWeighted(_) if ids.len() == 1 && filter.is_none() => {
            out.slots = engine_windows(router, ids[0], spec, func, good_only, budget).await?;
            Ok(out)
        }
        Func::TimeWeighted(interp) => {
            let acc = TwaAcc::new(interp);
            out.slots = merged_stream(router, ids, spec, acc, good_only, budget, filter).await?;
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
type SeriesPartials = Vec<Shared>;
/// One series' per-window partials, shared by the cache and its readers.
type Shared = Rc<Vec<Option<Partial>>>;

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
    by_id: AHashMap<u32, (bool, Shared)>,
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
                self.by_id.insert(id, (m2, Rc::new(p)));
            }
        }
        Ok(ids
            .iter()
            .map(|id| {
                self.by_id
                    .get(id)
                    .map(|(_, p)| Rc::clone(p))
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
    budget: &mut Budget,
    filter: Option<&PointFilter>,
) -> Result<Vec<Slot>, String> {
    if ids.len() == 1 {
        return drive(router, ids[0], spec, acc, good_only, None, budget, filter).await;
    }
    let mut all: Vec<(i64, usize, Point)> = Vec::new();
    for (k, &id) in ids.iter().enumerate() {
        let (start, end) = (spec.start(), spec.end());
        for_each_chunk(router, id, start, end, budget, true, filter, |pts| {
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
