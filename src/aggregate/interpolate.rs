//! Point-in-time functions: the value at or before a time (PI
//! `AtOrBefore`) and values interpolated at a fixed interval (PI
//! InterpolatedValues, TDengine `INTERP ... EVERY ... FILL(PREV|LINEAR)`).

use super::func::Interp;
use super::summary::Summary;
use super::{lerp, AggError, Sample, GOOD};

/// PI `AtOrBefore`: the last visible point at or before `time`. Points may
/// come in any order (newest segment first is fine).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AtOrBefore {
    time: i64,
    good_only: bool,
    found: Option<Sample>,
}

impl AtOrBefore {
    /// Looks for the point in force at `time`.
    pub fn new(time: i64, good_only: bool) -> Self {
        AtOrBefore {
            time,
            good_only,
            found: None,
        }
    }

    /// Offers one point.
    #[inline]
    pub fn push(&mut self, ts: i64, value: f64, quality: u8) {
        if value.is_nan() || (self.good_only && quality < GOOD) || ts > self.time {
            return;
        }
        if self.found.is_none_or(|f| ts > f.ts) {
            self.found = Some(Sample::new(ts, value));
        }
    }

    /// Offers a run's summary; `false` means "decode it and push its points"
    /// (the run straddles `time`, or it has bad points in a good-only
    /// request and ends at or before `time`).
    pub fn push_summary(&mut self, s: &Summary) -> bool {
        if s.count == 0 || s.first_ts > self.time {
            return true;
        }
        if s.last_ts > self.time || !s.usable_for(self.good_only) {
            return false;
        }
        self.push(s.last_ts, s.last, GOOD);
        true
    }

    /// The latest visible point at or before `time` offered so far.
    pub fn result(&self) -> Option<Sample> {
        self.found
    }
}

/// Values at `start, start + every, …` up to and including `end`, from
/// points fed in time order (feed from the point before `start` through the
/// point after `end`: points outside are used as neighbours).
///
/// At a sample time `t`: a point exactly at `t` gives its value; otherwise
/// Step gives the last visible point before `t`, Linear interpolates between
/// the last visible point before `t` and the first after it. Before the
/// first visible point: null. After the last visible point: Step holds its
/// value, Linear gives null (no extrapolation).
#[derive(Clone, Debug)]
pub struct Interpolator {
    interp: Interp,
    good_only: bool,
    every: i64,
    /// Next sample time, `None` once past `end`.
    next: Option<i64>,
    end: i64,
    prev: Option<Sample>,
    order_ts: Option<i64>,
    out: Vec<(i64, Option<f64>)>,
    error: Option<AggError>,
}

impl Interpolator {
    /// Samples every `every` µs (> 0) over `[start, end]` (`start <= end`),
    /// at most `max_samples` of them.
    pub fn new(
        start: i64,
        end: i64,
        every: i64,
        interp: Interp,
        good_only: bool,
        max_samples: usize,
    ) -> Result<Self, AggError> {
        if every <= 0 {
            return Err(AggError::BadEvery(every));
        }
        if start > end {
            return Err(AggError::BadRange { start, end });
        }
        let needed = (i128::from(end) - i128::from(start)) / i128::from(every) + 1;
        if needed > max_samples as i128 {
            return Err(AggError::TooMany {
                what: "samples",
                needed: needed as u128,
                max: max_samples,
            });
        }
        Ok(Interpolator {
            interp,
            good_only,
            every,
            next: Some(start),
            end,
            prev: None,
            order_ts: None,
            // Grows with the output; only a small head start up front.
            out: Vec::with_capacity((needed as usize).min(4096)),
            error: None,
        })
    }

    fn advance(&mut self, t: i64) {
        self.next = t.checked_add(self.every).filter(|&n| n <= self.end);
    }

    /// Offers one point (visible points in strictly increasing order; an
    /// out-of-order point is dropped and reported by `finish`).
    pub fn push(&mut self, ts: i64, value: f64, quality: u8) {
        if value.is_nan() || (self.good_only && quality < GOOD) || self.error.is_some() {
            return;
        }
        if let Some(prev) = self.order_ts.filter(|&o| ts <= o) {
            self.error = Some(AggError::OutOfOrder { ts, prev });
            return;
        }
        self.order_ts = Some(ts);
        let q = Sample::new(ts, value);
        while let Some(t) = self.next.filter(|&t| t <= ts) {
            let v = if t == ts {
                Some(value)
            } else {
                match (self.interp, self.prev) {
                    (_, None) => None,
                    (Interp::Step, Some(p)) => Some(p.value),
                    (Interp::Linear, Some(p)) => Some(lerp(p, q, t)),
                }
            };
            self.out.push((t, v));
            self.advance(t);
        }
        self.prev = Some(q);
    }

    /// The samples `(time, value)`, `None` meaning null.
    pub fn finish(mut self) -> Result<Vec<(i64, Option<f64>)>, AggError> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        while let Some(t) = self.next {
            let v = match (self.interp, self.prev) {
                (Interp::Step, Some(p)) => Some(p.value),
                _ => None,
            };
            self.out.push((t, v));
            self.advance(t);
        }
        Ok(self.out)
    }
}
