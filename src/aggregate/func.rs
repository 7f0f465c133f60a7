//! The aggregate functions: one small accumulator per function (O(1) state
//! and O(1) work per point, except median/percentile which collect values),
//! the [`Func`] names the query languages map to, and the cross-series
//! [`Partial`].
//!
//! # Semantics of each function over one window `[lo, hi)`
//! "Points" are the visible points inside the window (module doc).
//! - `count`, `sum`, `mean`, `min`, `max`, `first`, `last`,
//!   `spread` (max − min): as InfluxQL. Empty window → [`Slot::Empty`].
//! - `stddev`: sample standard deviation (n − 1), InfluxQL; one point →
//!   [`Slot::Null`] (InfluxDB emits a row with a null value, which fill does
//!   not replace); NaN if any value is infinite.
//! - `median`: the middle value, or `lo + (hi − lo)/2` of the two middle
//!   ones (InfluxDB's formula). Needs points.
//! - `percentile(p)`: InfluxDB's nearest rank: sorted values,
//!   `i = floor(n·p/100 + 0.5) − 1`; `i` outside `0..n` → [`Slot::Empty`]
//!   (InfluxDB emits no row, so fill applies). Needs points.
//! - `integral(unit)`, [`IntegralMode::Inside`]: trapezoids between the points
//!   inside the window only, in value·unit; one point → 0. This is InfluxDB
//!   1.x without `GROUP BY time`.
//! - `integral(unit)`, [`IntegralMode::InfluxQl`]: what InfluxDB 1.x
//!   (query/functions.go, since #8194) does with `GROUP BY time`: the area
//!   from the last point of a window to the window's aligned end is added
//!   using the line to the next point in the query range; the next non-empty
//!   window starts its area at the previous non-empty window's end (so the
//!   area over empty windows in between lands in the next non-empty one); the
//!   first window gets no area before its first point (influxdb#13164); the
//!   last non-empty window is dropped when its only point is at its aligned
//!   start. Points outside the query range are never used. InfluxDB ignores
//!   `fill()` for integral: use [`super::Fill::None`].
//! - `percent_good`: good points / points × 100 (points-based; 100 in a
//!   good-only request).
//! - `twa` (time-weighted average, PI `TimeWeighted`), with [`Interp::Step`]
//!   (previous value holds) or [`Interp::Linear`] (straight lines between
//!   points): ∫ f(t) dt / |D| over `D = [max(lo, t0), hi)`, where `t0` is the
//!   time of the first known point:
//!   - the value in force at `lo` is the last visible point before the
//!     window (from earlier windows or the point before the query start the
//!     caller supplies); with it, `D` starts at `lo` (Step: its value holds
//!     from `lo`; Linear: the value at `lo` is interpolated between it and the
//!     next point);
//!   - without it, `D` starts at the first point in the window (the average
//!     is over the covered span only);
//!   - at the end, Step holds the last value to `hi`; Linear interpolates
//!     towards the first visible point at or after `hi` when there is one
//!     (the next window's first point, or the point after the query end the
//!     caller supplies), and holds the last value flat otherwise (no
//!     extrapolation);
//!   - `hi` is the window end clipped to the query end: a value never holds
//!     past the request end (PI TimeWeighted). Callers that must not hold
//!     past "now" pass `end = min(request end, now)`;
//!   - a window with no point but a value in force gets that value (Step) or
//!     the mean of the line over the window (Linear); a window with no
//!     value in force at all is [`Slot::Empty`].

use super::summary::Summary;
use super::window::Window;
use super::{lerp, micros, seconds, AggError, Sample};

/// The outcome of one function over one window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Slot {
    /// No row: nothing to aggregate (or the function emits no row, like
    /// InfluxDB's `percentile` with a rank out of range). Fill modes replace
    /// these.
    Empty,
    /// A row whose value is null (InfluxDB: `stddev` of one point). Fill
    /// modes leave it alone.
    Null,
    /// A value.
    Value(f64),
}

impl Slot {
    /// The value, if any.
    pub fn value(self) -> Option<f64> {
        match self {
            Slot::Value(v) => Some(v),
            _ => None,
        }
    }
}

/// Everything a window's accumulator may need besides its own state, handed
/// to [`Accumulator::finish`] / [`Accumulator::finish_empty`] by the driver.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WindowCtx {
    /// The window (aligned and clipped bounds).
    pub window: Window,
    /// Query start (µs, inclusive).
    pub query_start: i64,
    /// Query end (µs, exclusive).
    pub query_end: i64,
    /// First visible point in the window (`None` for an empty window).
    pub first: Option<Sample>,
    /// Last visible point in the window (`None` for an empty window).
    pub last: Option<Sample>,
    /// Last visible point before `window.lo`: from an earlier window, or the
    /// point before the query start the caller supplied.
    pub before: Option<Sample>,
    /// Aligned end of the window holding `before`, when `before` is inside
    /// the query range.
    pub before_window_end: Option<i64>,
    /// First visible point at or after `window.hi`: the next window's first
    /// point, or the point at/after the query end the caller supplied.
    pub after: Option<Sample>,
}

/// Per-window state of one function. Implementations are small `Clone`
/// structs; the driver resets one per window and calls `push` per point.
///
/// Contract for callers (the [`super::Windowed`] driver keeps it): points
/// and summaries come in strictly increasing time order, values are never
/// NaN, summaries are non-empty, lie inside the window and are only given
/// when [`Accumulator::needs_points`] is false.
pub trait Accumulator: Clone {
    /// What one window produces.
    type Output;
    /// Whether summaries cannot stand in for points (median, percentile):
    /// the engine must decode.
    fn needs_points(&self) -> bool {
        false
    }
    /// Whether the per-interval rollups of [`crate::storage::rollup`] can
    /// stand in for points: the function reads only `count`, `good`,
    /// `min`, `max`, `sum` and the first and last points of a summary (a
    /// rollup keeps no `m2`, integrals or times of the extremes).
    fn takes_rollups(&self) -> bool {
        false
    }
    /// Which value fields ([`super::fields`]) of a rollup's summaries the
    /// function reads (the rollup decodes only those; the others are NaN).
    /// Counts, `good` and the timestamps are always there.
    fn rollup_fields(&self) -> u8 {
        super::fields::ALL
    }
    /// Back to the empty state, keeping configuration (and allocations).
    fn reset(&mut self);
    /// Adds one visible point; `good` is `quality >= GOOD`.
    fn push(&mut self, ts: i64, value: f64, good: bool);
    /// Adds the summary of a run of points that follows everything pushed.
    fn push_summary(&mut self, s: &Summary);
    /// Result of a window that had points.
    fn finish(&mut self, cx: &WindowCtx) -> Self::Output;
    /// Result of a window without points; depends only on configuration and
    /// `cx` (not on pushed state).
    fn finish_empty(&self, cx: &WindowCtx) -> Self::Output;
    /// Why the window just finished cannot be answered (it needed more
    /// memory than allowed); the driver reports it as the query's error.
    fn refused(&self) -> Option<AggError> {
        None
    }
}

/// Number of points.
#[derive(Clone, Debug, Default)]
pub struct CountAcc {
    n: u64,
}

impl Accumulator for CountAcc {
    type Output = Slot;
    fn rollup_fields(&self) -> u8 {
        0
    }
    fn takes_rollups(&self) -> bool {
        true
    }
    fn reset(&mut self) {
        self.n = 0;
    }
    #[inline]
    fn push(&mut self, _ts: i64, _value: f64, _good: bool) {
        self.n += 1;
    }
    fn push_summary(&mut self, s: &Summary) {
        self.n += u64::from(s.count);
    }
    fn finish(&mut self, _cx: &WindowCtx) -> Slot {
        Slot::Value(self.n as f64)
    }
    fn finish_empty(&self, _cx: &WindowCtx) -> Slot {
        Slot::Empty
    }
}

/// Sum of the values.
#[derive(Clone, Debug, Default)]
pub struct SumAcc {
    sum: f64,
}

impl Accumulator for SumAcc {
    type Output = Slot;
    fn rollup_fields(&self) -> u8 {
        super::fields::SUM
    }
    fn takes_rollups(&self) -> bool {
        true
    }
    fn reset(&mut self) {
        self.sum = 0.0;
    }
    #[inline]
    fn push(&mut self, _ts: i64, value: f64, _good: bool) {
        self.sum += value;
    }
    fn push_summary(&mut self, s: &Summary) {
        self.sum += s.sum;
    }
    fn finish(&mut self, _cx: &WindowCtx) -> Slot {
        Slot::Value(self.sum)
    }
    fn finish_empty(&self, _cx: &WindowCtx) -> Slot {
        Slot::Empty
    }
}

/// Arithmetic mean.
#[derive(Clone, Debug, Default)]
pub struct MeanAcc {
    sum: f64,
    n: u64,
}

impl Accumulator for MeanAcc {
    type Output = Slot;
    fn rollup_fields(&self) -> u8 {
        super::fields::SUM
    }
    fn takes_rollups(&self) -> bool {
        true
    }
    fn reset(&mut self) {
        *self = MeanAcc::default();
    }
    #[inline]
    fn push(&mut self, _ts: i64, value: f64, _good: bool) {
        self.sum += value;
        self.n += 1;
    }
    fn push_summary(&mut self, s: &Summary) {
        self.sum += s.sum;
        self.n += u64::from(s.count);
    }
    fn finish(&mut self, _cx: &WindowCtx) -> Slot {
        Slot::Value(self.sum / self.n as f64)
    }
    fn finish_empty(&self, _cx: &WindowCtx) -> Slot {
        Slot::Empty
    }
}

/// Smallest value.
#[derive(Clone, Debug)]
pub struct MinAcc {
    min: f64,
}

impl Default for MinAcc {
    fn default() -> Self {
        MinAcc { min: f64::INFINITY }
    }
}

impl Accumulator for MinAcc {
    type Output = Slot;
    fn rollup_fields(&self) -> u8 {
        super::fields::MIN
    }
    fn takes_rollups(&self) -> bool {
        true
    }
    fn reset(&mut self) {
        self.min = f64::INFINITY;
    }
    #[inline]
    fn push(&mut self, _ts: i64, value: f64, _good: bool) {
        if value < self.min {
            self.min = value;
        }
    }
    fn push_summary(&mut self, s: &Summary) {
        if s.min < self.min {
            self.min = s.min;
        }
    }
    fn finish(&mut self, _cx: &WindowCtx) -> Slot {
        Slot::Value(self.min)
    }
    fn finish_empty(&self, _cx: &WindowCtx) -> Slot {
        Slot::Empty
    }
}

/// Largest value.
#[derive(Clone, Debug)]
pub struct MaxAcc {
    max: f64,
}

impl Default for MaxAcc {
    fn default() -> Self {
        MaxAcc {
            max: f64::NEG_INFINITY,
        }
    }
}

impl Accumulator for MaxAcc {
    type Output = Slot;
    fn rollup_fields(&self) -> u8 {
        super::fields::MAX
    }
    fn takes_rollups(&self) -> bool {
        true
    }
    fn reset(&mut self) {
        self.max = f64::NEG_INFINITY;
    }
    #[inline]
    fn push(&mut self, _ts: i64, value: f64, _good: bool) {
        if value > self.max {
            self.max = value;
        }
    }
    fn push_summary(&mut self, s: &Summary) {
        if s.max > self.max {
            self.max = s.max;
        }
    }
    fn finish(&mut self, _cx: &WindowCtx) -> Slot {
        Slot::Value(self.max)
    }
    fn finish_empty(&self, _cx: &WindowCtx) -> Slot {
        Slot::Empty
    }
}

/// `max − min`.
#[derive(Clone, Debug)]
pub struct SpreadAcc {
    min: f64,
    max: f64,
}

impl Default for SpreadAcc {
    fn default() -> Self {
        SpreadAcc {
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }
}

impl Accumulator for SpreadAcc {
    type Output = Slot;
    fn rollup_fields(&self) -> u8 {
        super::fields::MIN | super::fields::MAX
    }
    fn takes_rollups(&self) -> bool {
        true
    }
    fn reset(&mut self) {
        *self = SpreadAcc::default();
    }
    #[inline]
    fn push(&mut self, _ts: i64, value: f64, _good: bool) {
        if value < self.min {
            self.min = value;
        }
        if value > self.max {
            self.max = value;
        }
    }
    fn push_summary(&mut self, s: &Summary) {
        if s.min < self.min {
            self.min = s.min;
        }
        if s.max > self.max {
            self.max = s.max;
        }
    }
    fn finish(&mut self, _cx: &WindowCtx) -> Slot {
        Slot::Value(self.max - self.min)
    }
    fn finish_empty(&self, _cx: &WindowCtx) -> Slot {
        Slot::Empty
    }
}

/// Value of the first point (the driver tracks it; no state).
#[derive(Clone, Debug, Default)]
pub struct FirstAcc;

impl Accumulator for FirstAcc {
    type Output = Slot;
    fn rollup_fields(&self) -> u8 {
        super::fields::FIRST
    }
    fn takes_rollups(&self) -> bool {
        true
    }
    fn reset(&mut self) {}
    #[inline]
    fn push(&mut self, _ts: i64, _value: f64, _good: bool) {}
    fn push_summary(&mut self, _s: &Summary) {}
    fn finish(&mut self, cx: &WindowCtx) -> Slot {
        cx.first.map_or(Slot::Empty, |p| Slot::Value(p.value))
    }
    fn finish_empty(&self, _cx: &WindowCtx) -> Slot {
        Slot::Empty
    }
}

/// Value of the last point (the driver tracks it; no state).
#[derive(Clone, Debug, Default)]
pub struct LastAcc;

impl Accumulator for LastAcc {
    type Output = Slot;
    fn rollup_fields(&self) -> u8 {
        super::fields::LAST
    }
    fn takes_rollups(&self) -> bool {
        true
    }
    fn reset(&mut self) {}
    #[inline]
    fn push(&mut self, _ts: i64, _value: f64, _good: bool) {}
    fn push_summary(&mut self, _s: &Summary) {}
    fn finish(&mut self, cx: &WindowCtx) -> Slot {
        cx.last.map_or(Slot::Empty, |p| Slot::Value(p.value))
    }
    fn finish_empty(&self, _cx: &WindowCtx) -> Slot {
        Slot::Empty
    }
}

/// Youngs–Cramer update of `(n, sum, m2)` with one value.
#[inline]
fn yc_push(n: &mut u64, sum: &mut f64, m2: &mut f64, value: f64) {
    if *n == 0 {
        *n = 1;
        *sum = value;
        *m2 = 0.0;
        return;
    }
    *n += 1;
    let nf = *n as f64;
    let t = (nf - 1.0) * value - *sum;
    *m2 += t * t / (nf * (nf - 1.0));
    *sum += value;
}

/// Chan et al.'s merge of `(n, sum, m2)` with another run's.
#[inline]
fn chan_merge(n: &mut u64, sum: &mut f64, m2: &mut f64, nb: u64, sb: f64, m2b: f64) {
    if nb == 0 {
        return;
    }
    if *n == 0 {
        (*n, *sum, *m2) = (nb, sb, m2b);
        return;
    }
    let (na, nbf) = (*n as f64, nb as f64);
    let delta = sb / nbf - *sum / na;
    *m2 += m2b + delta * delta * (na * nbf / (na + nbf));
    *sum += sb;
    // Saturating: partials also arrive decoded from other nodes, whose
    // counts are not checked against each other.
    *n = n.saturating_add(nb);
}

/// The stddev slot from `(n, m2)`.
fn stddev_slot(n: u64, m2: f64, any_inf: bool) -> Slot {
    if n < 2 {
        return Slot::Null;
    }
    if any_inf {
        return Slot::Value(f64::NAN);
    }
    Slot::Value((m2 / (n - 1) as f64).sqrt())
}

/// Sample standard deviation (n − 1).
#[derive(Clone, Debug, Default)]
pub struct StddevAcc {
    n: u64,
    sum: f64,
    m2: f64,
    any_inf: bool,
}

impl Accumulator for StddevAcc {
    type Output = Slot;
    fn reset(&mut self) {
        *self = StddevAcc::default();
    }
    #[inline]
    fn push(&mut self, _ts: i64, value: f64, _good: bool) {
        self.any_inf |= value.is_infinite();
        yc_push(&mut self.n, &mut self.sum, &mut self.m2, value);
    }
    fn push_summary(&mut self, s: &Summary) {
        self.any_inf |= s.min.is_infinite() || s.max.is_infinite();
        chan_merge(
            &mut self.n,
            &mut self.sum,
            &mut self.m2,
            u64::from(s.count),
            s.sum,
            s.m2,
        );
    }
    fn finish(&mut self, _cx: &WindowCtx) -> Slot {
        stddev_slot(self.n, self.m2, self.any_inf)
    }
    fn finish_empty(&self, _cx: &WindowCtx) -> Slot {
        Slot::Empty
    }
}

/// Which order statistic [`ValuesAcc`] computes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Quantile {
    /// InfluxQL `median`.
    Median,
    /// InfluxQL `percentile(p)`, nearest rank, `p` finite.
    Percentile(f64),
}

/// Most values the engine's median/percentile holds for one window
/// (128 MiB of f64, [`ValuesAcc::capped`]): a window with more is refused
/// ([`AggError::TooMany`]) instead of memory growing with the data.
pub const MAX_WINDOW_VALUES: usize = 1 << 24;

/// Median or percentile: collects the window's values (the only
/// accumulator that allocates, once per window as it grows; needs points).
#[derive(Clone, Debug)]
pub struct ValuesAcc {
    q: Quantile,
    values: Vec<f64>,
    /// Most values kept per window.
    cap: usize,
    /// Values of the window past `cap`, not kept (the window is refused).
    dropped: u64,
}

impl ValuesAcc {
    /// An accumulator for `q`, unbounded (the caller bounds the points).
    pub fn new(q: Quantile) -> Self {
        ValuesAcc::capped(q, usize::MAX)
    }

    /// An accumulator for `q` that holds at most `cap` values per window;
    /// a window with more is [`Accumulator::refused`].
    pub fn capped(q: Quantile, cap: usize) -> Self {
        ValuesAcc {
            q,
            values: Vec::new(),
            cap,
            dropped: 0,
        }
    }

    /// Appends another series' values for the same window (the cross-series
    /// "partial" of median/percentile is the values themselves).
    pub fn merge(&mut self, other: &ValuesAcc) {
        self.values.extend_from_slice(&other.values);
    }

    /// The order statistic over the values collected (in any order).
    pub fn quantile(&mut self) -> Slot {
        let n = self.values.len();
        if n == 0 {
            return Slot::Empty;
        }
        let cmp = |a: &f64, b: &f64| a.total_cmp(b);
        match self.q {
            Quantile::Median => {
                let (below, mid, _) = self.values.select_nth_unstable_by(n / 2, cmp);
                let hi = *mid;
                if n % 2 == 1 {
                    return Slot::Value(hi);
                }
                let lo = below.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                Slot::Value(lo + (hi - lo) / 2.0)
            }
            Quantile::Percentile(p) => {
                let i = (n as f64 * p / 100.0 + 0.5).floor() - 1.0;
                if !(0.0..n as f64).contains(&i) {
                    return Slot::Empty;
                }
                let (_, v, _) = self.values.select_nth_unstable_by(i as usize, cmp);
                Slot::Value(*v)
            }
        }
    }
}

impl Accumulator for ValuesAcc {
    type Output = Slot;
    fn needs_points(&self) -> bool {
        true
    }
    fn reset(&mut self) {
        self.values.clear();
        self.dropped = 0;
    }
    #[inline]
    fn push(&mut self, _ts: i64, value: f64, _good: bool) {
        if self.values.len() < self.cap {
            self.values.push(value);
        } else {
            self.dropped += 1;
        }
    }
    /// Not allowed (needs points); ignored.
    fn push_summary(&mut self, _s: &Summary) {}
    fn finish(&mut self, _cx: &WindowCtx) -> Slot {
        if self.dropped > 0 {
            return Slot::Empty;
        }
        self.quantile()
    }
    fn finish_empty(&self, _cx: &WindowCtx) -> Slot {
        Slot::Empty
    }
    fn refused(&self) -> Option<AggError> {
        (self.dropped > 0).then(|| AggError::TooMany {
            what: "values in one median/percentile window",
            needed: self.values.len() as u128 + u128::from(self.dropped),
            max: self.cap,
        })
    }
}

/// How `integral` treats window boundaries (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IntegralMode {
    /// Trapezoids between the points inside the window only.
    Inside,
    /// InfluxDB 1.x's `GROUP BY time` behaviour, boundary pieces included.
    InfluxQl,
}

/// `integral(unit)`: area under the linearly interpolated points, in
/// value·unit.
#[derive(Clone, Debug)]
pub struct IntegralAcc {
    unit: i64,
    mode: IntegralMode,
    /// Area between the window's points, value·seconds.
    area: f64,
    last: Sample,
    has: bool,
}

impl IntegralAcc {
    /// `unit` in µs (> 0; InfluxQL's default is 1 s = 1_000_000).
    pub fn new(unit: i64, mode: IntegralMode) -> Result<Self, AggError> {
        if unit <= 0 {
            return Err(AggError::BadParam {
                name: "integral unit (µs)",
                value: unit as f64,
            });
        }
        Ok(IntegralAcc {
            unit,
            mode,
            area: 0.0,
            last: Sample::new(0, 0.0),
            has: false,
        })
    }
}

/// InfluxDB's `linearFloat`: `m·x + b` on the line through `p` and `q`,
/// evaluated at `t` (no special cases, for bit-compatibility).
fn influx_linear(t: i64, p: Sample, q: Sample) -> f64 {
    let m = (q.value - p.value) / micros(p.ts, q.ts);
    m * micros(p.ts, t) + p.value
}

impl Accumulator for IntegralAcc {
    type Output = Slot;
    fn reset(&mut self) {
        self.area = 0.0;
        self.has = false;
    }
    #[inline]
    fn push(&mut self, ts: i64, value: f64, _good: bool) {
        if self.has {
            self.area += 0.5 * (self.last.value + value) * seconds(self.last.ts, ts);
        }
        self.last = Sample::new(ts, value);
        self.has = true;
    }
    fn push_summary(&mut self, s: &Summary) {
        if self.has {
            self.area += 0.5 * (self.last.value + s.first) * seconds(self.last.ts, s.first_ts);
        }
        self.area += s.integral_linear;
        self.last = Sample::new(s.last_ts, s.last);
        self.has = true;
    }
    fn finish(&mut self, cx: &WindowCtx) -> Slot {
        let (Some(first), Some(last)) = (cx.first, cx.last) else {
            return Slot::Empty;
        };
        let unit = self.unit as f64;
        let mut sum = self.area * 1e6 / unit;
        if self.mode == IntegralMode::Inside {
            return Slot::Value(sum);
        }
        if let (Some(b), Some(end)) = (cx.before, cx.before_window_end) {
            let v = influx_linear(end, b, first);
            sum += 0.5 * (first.value + v) * (micros(end, first.ts) / unit);
        }
        match cx.after.filter(|a| a.ts < cx.query_end) {
            Some(a) => {
                let end = cx.window.end;
                let v = influx_linear(end, last, a);
                sum += 0.5 * (v + last.value) * (micros(last.ts, end) / unit);
            }
            None if last.ts == cx.window.start => return Slot::Empty,
            None => {}
        }
        Slot::Value(sum)
    }
    fn finish_empty(&self, _cx: &WindowCtx) -> Slot {
        Slot::Empty
    }
}

/// Good points / points × 100.
#[derive(Clone, Debug, Default)]
pub struct PercentGoodAcc {
    n: u64,
    good: u64,
}

impl Accumulator for PercentGoodAcc {
    type Output = Slot;
    fn rollup_fields(&self) -> u8 {
        0
    }
    fn takes_rollups(&self) -> bool {
        true
    }
    fn reset(&mut self) {
        *self = PercentGoodAcc::default();
    }
    #[inline]
    fn push(&mut self, _ts: i64, _value: f64, good: bool) {
        self.n += 1;
        self.good += u64::from(good);
    }
    fn push_summary(&mut self, s: &Summary) {
        self.n += u64::from(s.count);
        self.good += u64::from(s.good);
    }
    fn finish(&mut self, _cx: &WindowCtx) -> Slot {
        Slot::Value(self.good as f64 / self.n as f64 * 100.0)
    }
    fn finish_empty(&self, _cx: &WindowCtx) -> Slot {
        Slot::Empty
    }
}

/// Interpolation between points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Interp {
    /// The previous value holds until the next point.
    Step,
    /// Straight line between consecutive points.
    Linear,
}

/// Time-weighted average (see the module doc for the boundary rules).
#[derive(Clone, Debug)]
pub struct TwaAcc {
    interp: Interp,
    /// Area between the window's first and last points, value·seconds.
    area: f64,
    last: Sample,
    has: bool,
}

impl TwaAcc {
    /// A time-weighted average with `interp`.
    pub fn new(interp: Interp) -> Self {
        TwaAcc {
            interp,
            area: 0.0,
            last: Sample::new(0, 0.0),
            has: false,
        }
    }

    /// Area of the piece from `p` to `q` (`p.ts <= q.ts`); zero-length pieces
    /// add nothing (not even `inf × 0`).
    #[inline]
    fn piece(&self, p: Sample, q: Sample) -> f64 {
        if q.ts == p.ts {
            return 0.0;
        }
        let dt = seconds(p.ts, q.ts);
        match self.interp {
            Interp::Step => p.value * dt,
            Interp::Linear => 0.5 * (p.value + q.value) * dt,
        }
    }
}

impl Accumulator for TwaAcc {
    type Output = Slot;
    fn reset(&mut self) {
        self.area = 0.0;
        self.has = false;
    }
    #[inline]
    fn push(&mut self, ts: i64, value: f64, _good: bool) {
        let p = Sample::new(ts, value);
        if self.has {
            self.area += self.piece(self.last, p);
        }
        self.last = p;
        self.has = true;
    }
    fn push_summary(&mut self, s: &Summary) {
        if self.has {
            self.area += self.piece(self.last, Sample::new(s.first_ts, s.first));
        }
        self.area += match self.interp {
            Interp::Step => s.integral_step,
            Interp::Linear => s.integral_linear,
        };
        self.last = Sample::new(s.last_ts, s.last);
        self.has = true;
    }
    fn finish(&mut self, cx: &WindowCtx) -> Slot {
        let (Some(first), Some(last)) = (cx.first, cx.last) else {
            return self.finish_empty(cx);
        };
        let (lo, hi) = (cx.window.lo, cx.window.hi);
        let mut area = self.area;
        let from = match cx.before {
            Some(b) => {
                let at_lo = match self.interp {
                    Interp::Step => b.value,
                    Interp::Linear => lerp(b, first, lo),
                };
                area += self.piece(Sample::new(lo, at_lo), first);
                lo
            }
            None => first.ts,
        };
        let at_hi = match (self.interp, cx.after) {
            (Interp::Linear, Some(a)) => lerp(last, a, hi),
            _ => last.value,
        };
        area += self.piece(last, Sample::new(hi, at_hi));
        Slot::Value(area / seconds(from, hi))
    }
    fn finish_empty(&self, cx: &WindowCtx) -> Slot {
        let Some(b) = cx.before else {
            return Slot::Empty;
        };
        match (self.interp, cx.after) {
            (Interp::Linear, Some(a)) => {
                let (lo, hi) = (cx.window.lo, cx.window.hi);
                Slot::Value(0.5 * (lerp(b, a, lo) + lerp(b, a, hi)))
            }
            _ => Slot::Value(b.value),
        }
    }
}

/// A function the query languages can ask for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Func {
    /// `count`.
    Count,
    /// `sum`.
    Sum,
    /// `mean`.
    Mean,
    /// `min`.
    Min,
    /// `max`.
    Max,
    /// `first`.
    First,
    /// `last`.
    Last,
    /// `spread` (max − min).
    Spread,
    /// `stddev` (sample, n − 1).
    Stddev,
    /// `median` (needs points).
    Median,
    /// `percentile(p)` (nearest rank; needs points).
    Percentile(f64),
    /// `integral(unit)`, unit in µs.
    Integral {
        /// Unit in µs (InfluxQL default 1 s).
        unit: i64,
        /// Boundary treatment.
        mode: IntegralMode,
    },
    /// PI `PercentGood`, points-based.
    PercentGood,
    /// Time-weighted average (PI `TimeWeighted`, TDengine `TWA`).
    TimeWeighted(Interp),
}

impl Func {
    /// The function without parameters named `name` (its [`Func::name`]:
    /// count, sum, mean, min, max, first, last, spread, stddev, median,
    /// percent_good); `None` for any other name, including those that take
    /// parameters (percentile, integral, time-weighted average).
    pub fn plain(name: &str) -> Option<Func> {
        Some(match name {
            "count" => Func::Count,
            "sum" => Func::Sum,
            "mean" => Func::Mean,
            "min" => Func::Min,
            "max" => Func::Max,
            "first" => Func::First,
            "last" => Func::Last,
            "spread" => Func::Spread,
            "stddev" => Func::Stddev,
            "median" => Func::Median,
            "percent_good" => Func::PercentGood,
            _ => return None,
        })
    }

    /// The name used in errors.
    pub fn name(&self) -> &'static str {
        match self {
            Func::Count => "count",
            Func::Sum => "sum",
            Func::Mean => "mean",
            Func::Min => "min",
            Func::Max => "max",
            Func::First => "first",
            Func::Last => "last",
            Func::Spread => "spread",
            Func::Stddev => "stddev",
            Func::Median => "median",
            Func::Percentile(_) => "percentile",
            Func::Integral { .. } => "integral",
            Func::PercentGood => "percent_good",
            Func::TimeWeighted(_) => "time_weighted_average",
        }
    }

    /// Whether summaries cannot stand in for points.
    pub fn needs_points(&self) -> bool {
        matches!(self, Func::Median | Func::Percentile(_))
    }

    /// Whether a [`Partial`] per series merges into the answer over several
    /// series (InfluxQL without `GROUP BY` tag). For the others, InfluxDB
    /// merges the raw points of all series into one time-ordered stream and
    /// applies the function to it: median and percentile over the union of
    /// values ([`ValuesAcc::merge`]); integral over the interleaved stream
    /// (equal timestamps: the later series' point replaces the earlier),
    /// which no per-series state can reproduce; time-weighted average is not
    /// an InfluxQL function and has no cross-series meaning here.
    pub fn mergeable(&self) -> bool {
        matches!(
            self,
            Func::Count
                | Func::Sum
                | Func::Mean
                | Func::Min
                | Func::Max
                | Func::First
                | Func::Last
                | Func::Spread
                | Func::Stddev
                | Func::PercentGood
        )
    }

    /// Checks the parameters: percentile finite, integral unit > 0.
    pub fn validate(&self) -> Result<(), AggError> {
        match *self {
            Func::Percentile(p) if !p.is_finite() => Err(AggError::BadParam {
                name: "percentile",
                value: p,
            }),
            Func::Integral { unit, .. } if unit <= 0 => Err(AggError::BadParam {
                name: "integral unit (µs)",
                value: unit as f64,
            }),
            _ => Ok(()),
        }
    }
}

/// Mergeable per-series, per-window state for the functions where merging
/// across series is well defined ([`Func::mergeable`]): count, sum, mean,
/// min, max, first, last, spread, stddev (Chan's merge), percent_good.
/// Merges in any order (series overlap in time).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Partial {
    /// Points.
    pub count: u64,
    /// Good points.
    pub good: u64,
    /// Sum of values.
    pub sum: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Earliest point (ties across series: the larger value, as InfluxDB).
    pub first: Sample,
    /// Latest point (ties across series: the larger value, as InfluxDB).
    pub last: Sample,
}

impl Partial {
    /// The partial of one point.
    pub fn of_point(ts: i64, value: f64, good: bool) -> Partial {
        let p = Sample::new(ts, value);
        Partial {
            count: 1,
            good: u64::from(good),
            sum: value,
            m2: 0.0,
            min: value,
            max: value,
            first: p,
            last: p,
        }
    }

    /// The partial of a summary's points, `None` if it is empty.
    pub fn from_summary(s: &Summary) -> Option<Partial> {
        (s.count > 0).then(|| Partial {
            count: u64::from(s.count),
            good: u64::from(s.good),
            sum: s.sum,
            m2: s.m2,
            min: s.min,
            max: s.max,
            first: Sample::new(s.first_ts, s.first),
            last: Sample::new(s.last_ts, s.last),
        })
    }

    /// Adds the points of `o` (same window, another series or a later run).
    pub fn merge(&mut self, o: &Partial) {
        chan_merge(
            &mut self.count,
            &mut self.sum,
            &mut self.m2,
            o.count,
            o.sum,
            o.m2,
        );
        self.good = self.good.saturating_add(o.good);
        if o.min < self.min {
            self.min = o.min;
        }
        if o.max > self.max {
            self.max = o.max;
        }
        if o.first.ts < self.first.ts
            || (o.first.ts == self.first.ts && o.first.value > self.first.value)
        {
            self.first = o.first;
        }
        if o.last.ts > self.last.ts || (o.last.ts == self.last.ts && o.last.value > self.last.value)
        {
            self.last = o.last;
        }
    }

    /// Adds one point later than everything in (one series, in time order).
    #[inline]
    pub fn push(&mut self, ts: i64, value: f64, good: bool) {
        yc_push(&mut self.count, &mut self.sum, &mut self.m2, value);
        self.good += u64::from(good);
        if value < self.min {
            self.min = value;
        }
        if value > self.max {
            self.max = value;
        }
        self.last = Sample::new(ts, value);
    }

    /// The value of `f` over the merged points;
    /// [`AggError::NotMergeable`] for the functions without a partial.
    pub fn eval(&self, f: Func) -> Result<Slot, AggError> {
        let n = self.count as f64;
        Ok(match f {
            Func::Count => Slot::Value(n),
            Func::Sum => Slot::Value(self.sum),
            Func::Mean => Slot::Value(self.sum / n),
            Func::Min => Slot::Value(self.min),
            Func::Max => Slot::Value(self.max),
            Func::First => Slot::Value(self.first.value),
            Func::Last => Slot::Value(self.last.value),
            Func::Spread => Slot::Value(self.max - self.min),
            Func::Stddev => stddev_slot(
                self.count,
                self.m2,
                self.min.is_infinite() || self.max.is_infinite(),
            ),
            Func::PercentGood => Slot::Value(self.good as f64 / n * 100.0),
            other => return Err(AggError::NotMergeable(other.name())),
        })
    }
}

/// Produces a [`Partial`] per window (`None` for empty windows), for
/// cross-series merging.
#[derive(Clone, Debug)]
pub struct PartialAcc {
    p: Option<Partial>,
    m2: bool,
}

impl Default for PartialAcc {
    fn default() -> Self {
        PartialAcc::new(true)
    }
}

impl PartialAcc {
    /// Partials that carry `m2` (for `stddev`) when `m2`; otherwise they
    /// may be built from rollups, whose `m2` is NaN.
    pub fn new(m2: bool) -> Self {
        PartialAcc { p: None, m2 }
    }
}

impl Accumulator for PartialAcc {
    type Output = Option<Partial>;
    fn takes_rollups(&self) -> bool {
        !self.m2
    }
    fn reset(&mut self) {
        self.p = None;
    }
    #[inline]
    fn push(&mut self, ts: i64, value: f64, good: bool) {
        match &mut self.p {
            Some(p) => p.push(ts, value, good),
            None => self.p = Some(Partial::of_point(ts, value, good)),
        }
    }
    fn push_summary(&mut self, s: &Summary) {
        let Some(o) = Partial::from_summary(s) else {
            return;
        };
        match &mut self.p {
            Some(p) => p.merge(&o),
            None => self.p = Some(o),
        }
    }
    fn finish(&mut self, _cx: &WindowCtx) -> Option<Partial> {
        self.p
    }
    fn finish_empty(&self, _cx: &WindowCtx) -> Option<Partial> {
        None
    }
}

/// Produces the [`Summary`] of each window's points (`None` for empty
/// windows): rollups, or several summary-able functions from one pass. A
/// window of more than `u32::MAX` points stops counting there (its summary
/// covers the first `u32::MAX`).
#[derive(Clone, Debug, Default)]
pub struct SummaryAcc {
    s: Summary,
}

impl Accumulator for SummaryAcc {
    type Output = Option<Summary>;
    fn reset(&mut self) {
        self.s = Summary::EMPTY;
    }
    #[inline]
    fn push(&mut self, ts: i64, value: f64, good: bool) {
        // The driver guarantees order; only the u32 count can refuse.
        let _ = self.s.push(ts, value, if good { 192 } else { 0 });
    }
    fn push_summary(&mut self, s: &Summary) {
        let _ = self.s.merge(s);
    }
    fn finish(&mut self, _cx: &WindowCtx) -> Option<Summary> {
        (self.s.count > 0).then_some(self.s)
    }
    fn finish_empty(&self, _cx: &WindowCtx) -> Option<Summary> {
        None
    }
}
