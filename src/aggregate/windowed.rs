//! [`Windowed`]: feeds one tag's points and summaries, in time order, to one
//! accumulator per window, tracking what each window's context needs (its
//! first and last points, the point before it and the point after it).

use super::func::{
    Accumulator, CountAcc, FirstAcc, Func, IntegralAcc, LastAcc, MaxAcc, MeanAcc, MinAcc, Partial,
    PartialAcc, PercentGoodAcc, Quantile, Slot, SpreadAcc, StddevAcc, SumAcc, TwaAcc, ValuesAcc,
    WindowCtx,
};
use super::summary::Summary;
use super::window::{Window, WindowSpec};
use super::{AggError, Sample, GOOD};

/// Where a summary goes.
enum Placement {
    /// Empty summary: nothing to do.
    Nothing,
    /// Entirely before the query start: its last point is a "before"
    /// candidate.
    Before,
    /// Entirely at or after the query end: its first point is an "after"
    /// candidate.
    After,
    /// Entirely inside window `k`.
    Window(usize),
}

/// The driver: one accumulator state per window, produced in window order.
///
/// Cost per point on the common path (inside the open window): a NaN test,
/// the quality test when good-only, two compares, the accumulator's `push`
/// and two stores. Allocation: the output vector, one entry per window
/// (bounded by the spec's window limit).
///
/// Errors (out-of-order input) are sticky: the offending point is dropped
/// and [`Windowed::finish`] reports the first error.
#[derive(Clone, Debug)]
pub struct Windowed<A: Accumulator> {
    spec: WindowSpec,
    good_only: bool,
    acc: A,
    out: Vec<A::Output>,
    /// Whether a window is open (`cur`, with clipped end `cur_hi`).
    open: bool,
    cur: usize,
    /// `i64::MIN` when no window is open, so the fast path never matches.
    cur_hi: i64,
    /// Window `cur` (computed once, when it was entered).
    cur_win: Window,
    cur_first: Sample,
    cur_before: Option<Sample>,
    /// Aligned end of the window holding `cur_before`, when it is inside
    /// the range.
    cur_before_end: Option<i64>,
    /// Last visible point before the query end.
    last: Sample,
    has_last: bool,
    /// Largest visible timestamp seen (ordering check).
    order_ts: i64,
    seen: bool,
    after: Option<Sample>,
    error: Option<AggError>,
}

impl<A: Accumulator> Windowed<A> {
    /// A driver over `spec`'s windows; `template` is the accumulator in its
    /// empty state (reset per window). With `good_only`, points of quality
    /// below [`GOOD`] are invisible.
    pub fn new(spec: WindowSpec, template: A, good_only: bool) -> Self {
        // One output per window: allocated once (the spec's window count
        // is bounded by its limit, checked when it was made).
        let out = Vec::with_capacity(spec.len());
        Windowed {
            spec,
            good_only,
            acc: template,
            out,
            open: false,
            cur: 0,
            cur_hi: i64::MIN,
            cur_win: Window {
                index: 0,
                start: 0,
                end: 0,
                lo: 0,
                hi: 0,
            },
            cur_first: Sample::new(0, 0.0),
            cur_before: None,
            cur_before_end: None,
            last: Sample::new(0, 0.0),
            has_last: false,
            order_ts: i64::MIN,
            seen: false,
            after: None,
            error: None,
        }
    }

    /// The windows.
    pub fn spec(&self) -> &WindowSpec {
        &self.spec
    }

    /// Whether the request is good-only.
    pub fn good_only(&self) -> bool {
        self.good_only
    }

    /// Adds one point. Any time is fine as long as visible points come in
    /// strictly increasing order: before `start` it becomes the value in
    /// force at `start`; at or after `end` the first one is the point after
    /// the range; NaN (and, good-only, bad-quality) points are ignored.
    #[inline]
    pub fn push(&mut self, ts: i64, value: f64, quality: u8) {
        if value.is_nan() || (self.good_only && quality < GOOD) {
            return;
        }
        if ts < self.cur_hi && ts > self.order_ts {
            self.acc.push(ts, value, quality >= GOOD);
            self.order_ts = ts;
            self.last = Sample::new(ts, value);
            return;
        }
        self.push_slow(ts, value, quality);
    }

    /// Pushes many points, same as [`Windowed::push`] on each, but the run
    /// of points inside the open window is a tight loop with the hot state
    /// in registers (for a decoder that is an iterator). Prefer this on hot
    /// paths.
    pub fn push_all<I: IntoIterator<Item = (i64, f64, u8)>>(&mut self, points: I) {
        let mut it = points.into_iter();
        loop {
            if !self.open {
                match it.next() {
                    Some((ts, value, quality)) => self.push(ts, value, quality),
                    None => return,
                }
                continue;
            }
            let (hi, good_only) = (self.cur_hi, self.good_only);
            let (mut order, mut last) = (self.order_ts, self.last);
            let acc = &mut self.acc;
            let mut pending = None;
            for (ts, value, quality) in it.by_ref() {
                if value.is_nan() || (good_only && quality < GOOD) {
                    continue;
                }
                if ts < hi && ts > order {
                    acc.push(ts, value, quality >= GOOD);
                    order = ts;
                    last = Sample::new(ts, value);
                } else {
                    pending = Some((ts, value, quality));
                    break;
                }
            }
            self.order_ts = order;
            self.last = last;
            match pending {
                Some((ts, value, quality)) => self.push_slow(ts, value, quality),
                None => return,
            }
        }
    }

    /// Supplies the last point before the query start (same as pushing it).
    pub fn set_before(&mut self, ts: i64, value: f64, quality: u8) -> Result<(), AggError> {
        if ts >= self.spec.start() {
            return Err(AggError::BadRange {
                start: ts,
                end: self.spec.start(),
            });
        }
        self.push(ts, value, quality);
        self.error.clone().map_or(Ok(()), Err)
    }

    /// Supplies the first point at or after the query end (same as pushing
    /// it).
    pub fn set_after(&mut self, ts: i64, value: f64, quality: u8) -> Result<(), AggError> {
        if ts < self.spec.end() {
            return Err(AggError::BadRange {
                start: self.spec.end(),
                end: ts,
            });
        }
        self.push(ts, value, quality);
        self.error.clone().map_or(Ok(()), Err)
    }

    #[cold]
    fn push_slow(&mut self, ts: i64, value: f64, quality: u8) {
        if self.error.is_some() {
            return;
        }
        if self.seen && ts <= self.order_ts {
            self.error = Some(AggError::OutOfOrder {
                ts,
                prev: self.order_ts,
            });
            return;
        }
        self.seen = true;
        self.order_ts = ts;
        let p = Sample::new(ts, value);
        if ts < self.spec.start() {
            self.last = p;
            self.has_last = true;
            return;
        }
        let Some(k) = self.spec.index_of(ts) else {
            if self.after.is_none() {
                self.after = Some(p);
            }
            return;
        };
        self.enter(k, p);
        self.acc.push(ts, value, quality >= GOOD);
        self.last = p;
        self.has_last = true;
    }

    /// Makes window `k` the open one, closing the open window and producing
    /// the empty windows in between; `p` is the window's first point.
    fn enter(&mut self, k: usize, p: Sample) {
        if self.open && self.cur == k {
            return;
        }
        self.close(Some(p));
        self.empty_until(k, Some(p));
        self.acc.reset();
        self.cur_before = self.has_last.then_some(self.last);
        self.cur_before_end = self.last_window_end();
        self.open = true;
        self.cur = k;
        self.cur_win = self.spec.window_at(k);
        self.cur_hi = self.cur_win.hi;
        self.cur_first = p;
    }

    /// The aligned end of the window holding `last` when it is inside the
    /// range: that is the window entered last (a visible point inside the
    /// range enters its window before it becomes `last`; one before the
    /// start, or a summary placed before it, is outside). Saves the window
    /// arithmetic per window that looking `last` up would cost.
    #[inline]
    fn last_window_end(&self) -> Option<i64> {
        let end = (self.has_last && self.last.ts >= self.spec.start()).then_some(self.cur_win.end);
        debug_assert_eq!(
            end,
            self.has_last
                .then_some(self.last)
                .and_then(|b| self.spec.index_of(b.ts))
                .map(|i| self.spec.window_at(i).end)
        );
        end
    }

    /// Finishes the open window, with `after` its next point.
    fn close(&mut self, after: Option<Sample>) {
        if !self.open {
            return;
        }
        debug_assert_eq!(self.cur_win, self.spec.window_at(self.cur));
        let cx = WindowCtx {
            window: self.cur_win,
            query_start: self.spec.start(),
            query_end: self.spec.end(),
            first: Some(self.cur_first),
            last: Some(self.last),
            before: self.cur_before,
            before_window_end: self.cur_before_end,
            after,
        };
        let o = self.acc.finish(&cx);
        if self.error.is_none() {
            self.error = self.acc.refused();
        }
        self.out.push(o);
        self.open = false;
        self.cur_hi = i64::MIN;
    }

    /// Produces the empty windows up to (not including) `k`.
    fn empty_until(&mut self, k: usize, after: Option<Sample>) {
        if self.out.len() >= k {
            return;
        }
        let before = self.has_last.then_some(self.last);
        let before_window_end = self.last_window_end();
        while self.out.len() < k {
            let cx = WindowCtx {
                window: self.spec.window_at(self.out.len()),
                query_start: self.spec.start(),
                query_end: self.spec.end(),
                first: None,
                last: None,
                before,
                before_window_end,
                after,
            };
            let o = self.acc.finish_empty(&cx);
            self.out.push(o);
        }
    }

    /// Where `s` would go, or why it cannot be taken.
    fn place(&self, s: &Summary) -> Result<Placement, AggError> {
        if s.count == 0 {
            return Ok(Placement::Nothing);
        }
        let reject = |reason| AggError::SummaryRejected {
            first_ts: s.first_ts,
            last_ts: s.last_ts,
            reason,
        };
        if s.first_ts > s.last_ts {
            return Err(reject("first_ts after last_ts"));
        }
        if !s.usable_for(self.good_only) {
            return Err(reject(
                "it holds bad-quality points and the request is good-only",
            ));
        }
        if self.seen && s.first_ts <= self.order_ts {
            return Err(AggError::OutOfOrder {
                ts: s.first_ts,
                prev: self.order_ts,
            });
        }
        if s.last_ts < self.spec.start() {
            return Ok(Placement::Before);
        }
        if s.first_ts >= self.spec.end() {
            return Ok(Placement::After);
        }
        match (
            self.spec.index_of(s.first_ts),
            self.spec.index_of(s.last_ts),
        ) {
            (Some(a), Some(b)) if a == b => {
                if self.acc.needs_points() {
                    Err(reject("the function needs points"))
                } else {
                    Ok(Placement::Window(a))
                }
            }
            _ => Err(reject("it spans a window or range boundary")),
        }
    }

    /// Whether the function can be given per-interval rollups as summaries
    /// ([`Accumulator::takes_rollups`]).
    pub fn takes_rollups(&self) -> bool {
        self.acc.takes_rollups()
    }

    /// The value fields of rollup summaries the function reads
    /// ([`Accumulator::rollup_fields`]); the driver itself only keeps the
    /// first and last points' values for the function's context.
    pub fn rollup_fields(&self) -> u8 {
        self.acc.rollup_fields()
    }

    /// Whether [`Windowed::push_grid`] can take `entries`: summaries of
    /// runs each inside one interval `[k·span, (k+1)·span)` of a grid,
    /// in time order, following everything pushed. Yes when the function
    /// takes rollups, every window edge lies on the grid (so no interval
    /// straddles one), every run lies inside the range and each is usable
    /// for the quality choice. One check for the whole list, instead of
    /// placing each summary.
    pub fn accepts_grid(&self, span: i64, entries: &[Summary]) -> bool {
        if self.error.is_some() || !self.acc.takes_rollups() || span <= 0 {
            return false;
        }
        if self.spec.every() % span != 0 || self.spec.offset().rem_euclid(span) != 0 {
            return false;
        }
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return true;
        };
        if self.seen && first.first_ts <= self.order_ts {
            return false;
        }
        first.first_ts >= self.spec.start()
            && last.last_ts < self.spec.end()
            && entries
                .iter()
                .all(|s| s.count > 0 && s.first_ts <= s.last_ts && s.usable_for(self.good_only))
    }

    /// Adds summaries [`Windowed::accepts_grid`] accepted, each into the
    /// window holding it.
    pub fn push_grid(&mut self, entries: &[Summary]) {
        for s in entries {
            let Some(k) = self.window_after_open(s.first_ts) else {
                continue;
            };
            self.enter(k, Sample::new(s.first_ts, s.first));
            self.acc.push_summary(s);
            self.last = Sample::new(s.last_ts, s.last);
            self.has_last = true;
            self.seen = true;
            self.order_ts = s.last_ts;
        }
    }

    /// [`WindowSpec::index_of`] for a time at or after the open window's
    /// start, without a division when it is in the open window or the one
    /// after it (consecutive rollup intervals are).
    #[inline]
    fn window_after_open(&self, ts: i64) -> Option<usize> {
        let w = &self.cur_win;
        let k = if !self.open || ts < w.lo || ts >= self.spec.end() {
            self.spec.index_of(ts)
        } else if ts < w.hi {
            Some(self.cur)
        } else if ts.checked_sub(w.end).is_some_and(|d| d < self.spec.every()) {
            Some(self.cur + 1)
        } else {
            self.spec.index_of(ts)
        };
        debug_assert_eq!(k, self.spec.index_of(ts));
        k
    }

    /// Whether [`Windowed::push_summary`] would take `s` (otherwise decode
    /// its points and push them).
    pub fn accepts(&self, s: &Summary) -> bool {
        self.error.is_none() && self.place(s).is_ok()
    }

    /// Adds the summary of a run of points instead of the points: a run
    /// entirely before the start (its last point becomes the value in
    /// force), entirely at/after the end (its first point becomes the point
    /// after), or entirely inside one window (if the function allows
    /// summaries). Anything else is refused with the reason, and nothing
    /// changes.
    pub fn push_summary(&mut self, s: &Summary) -> Result<(), AggError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let placement = self.place(s)?;
        let first = Sample::new(s.first_ts, s.first);
        let last = Sample::new(s.last_ts, s.last);
        match placement {
            Placement::Nothing => return Ok(()),
            Placement::Before => {
                self.last = last;
                self.has_last = true;
            }
            Placement::After => {
                if self.after.is_none() {
                    self.after = Some(first);
                }
            }
            Placement::Window(k) => {
                self.enter(k, first);
                self.acc.push_summary(s);
                self.last = last;
                self.has_last = true;
            }
        }
        self.seen = true;
        self.order_ts = s.last_ts;
        Ok(())
    }

    /// One output per window, in window order (empty windows included), or
    /// the first error.
    pub fn finish(mut self) -> Result<Vec<A::Output>, AggError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let after = self.after;
        self.close(after);
        // The last window may be refused as it closes.
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.empty_until(self.spec.len(), after);
        Ok(self.out)
    }
}

/// Something that can feed one tag's points and summaries to a
/// [`Windowed`] driver: the storage engine's segment iterator implements
/// this once, generically, and [`aggregate()`] monomorphises the loop per
/// function.
pub trait PointSource {
    /// The source's error type (it must be able to carry an [`AggError`]).
    type Error: From<AggError>;
    /// Pushes everything (points before/inside/after the range, summaries
    /// where [`Windowed::accepts`] says so), in time order.
    fn feed<A: Accumulator>(&mut self, w: &mut Windowed<A>) -> Result<(), Self::Error>;
}

/// Runs one accumulator over `src`.
fn run<A: Accumulator, S: PointSource + ?Sized>(
    acc: A,
    spec: &WindowSpec,
    good_only: bool,
    src: &mut S,
) -> Result<Vec<A::Output>, S::Error> {
    let mut w = Windowed::new(spec.clone(), acc, good_only);
    src.feed(&mut w)?;
    Ok(w.finish()?)
}

/// `func` per window of `spec` over the points `src` feeds.
pub fn aggregate<S: PointSource + ?Sized>(
    func: Func,
    spec: &WindowSpec,
    good_only: bool,
    src: &mut S,
) -> Result<Vec<Slot>, S::Error> {
    func.validate()?;
    match func {
        Func::Count => run(CountAcc::default(), spec, good_only, src),
        Func::Sum => run(SumAcc::default(), spec, good_only, src),
        Func::Mean => run(MeanAcc::default(), spec, good_only, src),
        Func::Min => run(MinAcc::default(), spec, good_only, src),
        Func::Max => run(MaxAcc::default(), spec, good_only, src),
        Func::First => run(FirstAcc, spec, good_only, src),
        Func::Last => run(LastAcc, spec, good_only, src),
        Func::Spread => run(SpreadAcc::default(), spec, good_only, src),
        Func::Stddev => run(StddevAcc::default(), spec, good_only, src),
        Func::Median => run(ValuesAcc::new(Quantile::Median), spec, good_only, src),
        Func::Percentile(p) => run(
            ValuesAcc::new(Quantile::Percentile(p)),
            spec,
            good_only,
            src,
        ),
        Func::Integral { unit, mode } => run(IntegralAcc::new(unit, mode)?, spec, good_only, src),
        Func::PercentGood => run(PercentGoodAcc::default(), spec, good_only, src),
        Func::TimeWeighted(interp) => run(TwaAcc::new(interp), spec, good_only, src),
    }
}

/// The [`Partial`] of each window of `spec` (for merging across series, then
/// [`Partial::eval`]).
pub fn aggregate_partials<S: PointSource + ?Sized>(
    spec: &WindowSpec,
    good_only: bool,
    src: &mut S,
) -> Result<Vec<Option<Partial>>, S::Error> {
    run(PartialAcc::default(), spec, good_only, src)
}
