//! Plot values (PI PlotValues): per pixel-wide interval the first, last,
//! smallest and largest points, so a chart of millions of points drawn from
//! a few thousand looks the same.

use super::{AggError, Sample, GOOD};

/// Divides `[start, end)` into `intervals` intervals (interval `i` is
/// `[start + ⌊i·D/n⌋, start + ⌊(i+1)·D/n⌋)`, `D = end − start`; some are
/// empty when `D < n`) and keeps, per interval, its first, last, min and max
/// points (min and max: the earliest of equal values), de-duplicated, in
/// time order: at most 4 actual points per interval. Points outside the
/// range are ignored.
#[derive(Clone, Debug)]
pub struct Plotter {
    start: i64,
    end: i64,
    n: u64,
    good_only: bool,
    /// Open interval: index and clipped end (`i64::MIN` when none).
    cur: u64,
    cur_hi: i64,
    open: bool,
    first: Sample,
    last: Sample,
    min: Sample,
    max: Sample,
    order_ts: Option<i64>,
    out: Vec<Sample>,
    error: Option<AggError>,
}

impl Plotter {
    /// `intervals` > 0 intervals over `[start, end)`; at most
    /// `max_intervals` and at most 2^32 (output is at most 4 points per
    /// interval).
    pub fn new(
        start: i64,
        end: i64,
        intervals: usize,
        good_only: bool,
        max_intervals: usize,
    ) -> Result<Self, AggError> {
        if start > end {
            return Err(AggError::BadRange { start, end });
        }
        if intervals == 0 {
            return Err(AggError::BadEvery(0));
        }
        if intervals > max_intervals || intervals as u64 > 1 << 32 {
            return Err(AggError::TooMany {
                what: "intervals",
                needed: intervals as u128,
                max: max_intervals,
            });
        }
        let z = Sample::new(0, 0.0);
        Ok(Plotter {
            start,
            end,
            n: intervals as u64,
            good_only,
            cur: 0,
            cur_hi: i64::MIN,
            open: false,
            first: z,
            last: z,
            min: z,
            max: z,
            order_ts: None,
            out: Vec::new(),
            error: None,
        })
    }

    /// Start of interval `i` (`i <= n`).
    fn bound(&self, i: u64) -> i64 {
        let d = i128::from(self.end) - i128::from(self.start);
        (i128::from(self.start) + i128::from(i) * d / i128::from(self.n)) as i64
    }

    /// Whether the plotter is good-only.
    pub fn good_only(&self) -> bool {
        self.good_only
    }

    /// The interval holding `ts`, `None` outside `[start, end)`. A run of
    /// points inside one interval may be offered as just its first, last,
    /// min and max points (the earliest of equal extremes), in time order:
    /// the output is the same.
    pub fn interval_of(&self, ts: i64) -> Option<u64> {
        if ts < self.start || ts >= self.end {
            return None;
        }
        let off = i128::from(ts) - i128::from(self.start);
        let d = i128::from(self.end) - i128::from(self.start);
        Some((((off + 1) * i128::from(self.n) - 1) / d) as u64)
    }

    /// Offers one point (visible points in strictly increasing order).
    #[inline]
    pub fn push(&mut self, ts: i64, value: f64, quality: u8) {
        if value.is_nan() || (self.good_only && quality < GOOD) {
            return;
        }
        let order_ok = self.order_ts.is_none_or(|o| ts > o);
        if ts < self.cur_hi && order_ok {
            self.order_ts = Some(ts);
            let p = Sample::new(ts, value);
            if value < self.min.value {
                self.min = p;
            }
            if value > self.max.value {
                self.max = p;
            }
            self.last = p;
            return;
        }
        self.push_slow(ts, value, order_ok);
    }

    #[cold]
    fn push_slow(&mut self, ts: i64, value: f64, order_ok: bool) {
        if self.error.is_some() {
            return;
        }
        if !order_ok {
            self.error = Some(AggError::OutOfOrder {
                ts,
                prev: self.order_ts.unwrap_or(i64::MIN),
            });
            return;
        }
        self.order_ts = Some(ts);
        if ts < self.start || ts >= self.end {
            return;
        }
        // Largest i with bound(i) <= ts: ((ts − start + 1)·n − 1) / D.
        let off = i128::from(ts) - i128::from(self.start);
        let d = i128::from(self.end) - i128::from(self.start);
        let i = (((off + 1) * i128::from(self.n) - 1) / d) as u64;
        self.close();
        let p = Sample::new(ts, value);
        self.cur = i;
        self.cur_hi = self.bound(i + 1);
        self.open = true;
        (self.first, self.last, self.min, self.max) = (p, p, p, p);
    }

    fn close(&mut self) {
        if !self.open {
            return;
        }
        let mut pts = [self.first, self.min, self.max, self.last];
        pts.sort_unstable_by_key(|p| p.ts);
        let mut prev = None;
        for p in pts {
            if prev != Some(p.ts) {
                self.out.push(p);
                prev = Some(p.ts);
            }
        }
        self.open = false;
        self.cur_hi = i64::MIN;
    }

    /// The plot points in time order.
    pub fn finish(mut self) -> Result<Vec<Sample>, AggError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        self.close();
        Ok(self.out)
    }
}
