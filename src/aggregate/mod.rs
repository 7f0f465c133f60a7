//! Aggregation kernels of the read side: pure, I/O-free types and algorithms
//! that turn one tag's points, in time order, into per-interval aggregates
//! (InfluxQL `GROUP BY time`, PI Summaries), values at a time (PI
//! `AtOrBefore`), interpolated samples (PI InterpolatedValues, TDengine
//! `INTERP`), plot values (PI PlotValues) and InfluxQL transforms
//! (`derivative`, `difference`).
//!
//! Owns: [`Summary`] (the per-segment statistics the storage format stores,
//! and its byte layout), window arithmetic ([`WindowSpec`]), the per-function
//! accumulators ([`Accumulator`]) and the driver that feeds them window by
//! window ([`Windowed`]), the cross-series partial ([`Partial`]), fill modes
//! ([`fill()`]), interpolation ([`Interpolator`], [`AtOrBefore`]), plot values
//! ([`Plotter`]) and transforms ([`derivative`], [`difference`]).
//!
//! Must never: do I/O; allocate, or dispatch dynamically, per point on the
//! common paths (allocation is per window or per output row, bounded by
//! limits the caller passes); panic on any input; depend on any part of the
//! crate other than [`crate::point`] (it sits below storage, which calls it
//! while decoding segments).
//!
//! # Which points count (decided)
//! - A point whose value is NaN is invisible to every function here: it is
//!   not counted, never first/last/min/max, never "the point before" or "the
//!   point after", and it does not end the hold of the previous value in step
//!   integrals and time-weighted averages. Out-of-order NaN points are not
//!   even checked.
//! - ±inf are ordinary values and follow IEEE arithmetic (a window holding
//!   +inf and -inf has a NaN sum and spread). `stddev` is NaN when any value
//!   in the window is infinite (the mean is infinite, deviations undefined).
//! - With `good_only`, points whose quality is below [`GOOD`] (192, OPC DA
//!   good) are invisible in the same way. A [`Summary`] stands in for its
//!   points in a good-only request only when `good == count`
//!   ([`Summary::usable_for`]).
//!
//! # Feeding (what the storage engine does)
//! Build a [`WindowSpec`], then either call [`aggregate()`] with something
//! implementing [`PointSource`] (the match over [`Func`] happens once, the
//! per-point loop is monomorphic), or drive a [`Windowed`] yourself:
//! 1. optionally push points before `start` (or [`Windowed::set_before`]):
//!    the last visible one is "the value in force" at `start`;
//! 2. for each segment in time order: if [`Windowed::accepts`] its summary,
//!    [`Windowed::push_summary`], else decode and [`Windowed::push_all`] the
//!    decoder's points (or [`Windowed::push`] each; `push_all` keeps the hot
//!    state in registers and is about twice as fast). Points outside
//!    `[start, end)` are fine: they become the before/after neighbours;
//! 3. optionally push the first point at or after `end` (or
//!    [`Windowed::set_after`]); time-weighted averages with linear
//!    interpolation use it for the last window;
//! 4. [`Windowed::finish`]: one output per window, in window order; then
//!    [`fill()`] for the empty ones.

mod fill;
mod func;
mod interpolate;
mod plot;
mod summary;
mod transform;
mod window;
mod windowed;

#[cfg(test)]
mod tests;

pub use fill::{fill, fill_with, Fill};
pub use func::{
    Accumulator, CountAcc, FirstAcc, Func, IntegralAcc, IntegralMode, Interp, LastAcc, MaxAcc,
    MeanAcc, MinAcc, Partial, PartialAcc, PercentGoodAcc, Quantile, Slot, SpreadAcc, StddevAcc,
    SumAcc, SummaryAcc, TwaAcc, ValuesAcc, WindowCtx, MAX_WINDOW_VALUES,
};
pub use interpolate::{AtOrBefore, Interpolator};
pub use plot::Plotter;
pub use summary::{fields, Summary, SUMMARY_LEN};
pub use transform::{cumulative_sum, derivative, difference, elapsed, moving_average};
pub use window::{Window, WindowSpec};
pub use windowed::{aggregate, aggregate_partials, PointSource, Windowed};

use std::fmt;

/// OPC DA quality at and above which a point is good.
pub const GOOD: u8 = 192;

/// One visible point: timestamp (µs since the Unix epoch) and value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Timestamp, µs since the Unix epoch.
    pub ts: i64,
    /// Value (never NaN for samples produced here).
    pub value: f64,
}

impl Sample {
    /// Builds a sample.
    pub fn new(ts: i64, value: f64) -> Self {
        Sample { ts, value }
    }
}

/// What an aggregation request got wrong. Every variant names the offending
/// input.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum AggError {
    /// A window width or sample interval that is not > 0.
    BadEvery(i64),
    /// A time range whose start is after its end (or too wide for i64).
    BadRange {
        /// Range start (µs).
        start: i64,
        /// Range end (µs).
        end: i64,
    },
    /// The request would produce more windows, samples or intervals than the
    /// caller allows.
    TooMany {
        /// What was counted ("windows", "samples", "intervals").
        what: &'static str,
        /// How many the request needs.
        needed: u128,
        /// The caller's limit.
        max: usize,
    },
    /// Points or summaries not in strictly increasing time order.
    OutOfOrder {
        /// The offending timestamp.
        ts: i64,
        /// The timestamp seen before it.
        prev: i64,
    },
    /// A summary that cannot stand in for its points; the caller decodes
    /// them instead.
    SummaryRejected {
        /// First timestamp of the summary.
        first_ts: i64,
        /// Last timestamp of the summary.
        last_ts: i64,
        /// Why.
        reason: &'static str,
    },
    /// A function parameter out of its domain.
    BadParam {
        /// Parameter name.
        name: &'static str,
        /// Its value.
        value: f64,
    },
    /// Encoded summary bytes that fail validation.
    Decode {
        /// Byte offset of the offending field (or the length).
        offset: usize,
        /// What was wrong.
        what: &'static str,
    },
    /// A function that has no mergeable cross-series partial.
    NotMergeable(&'static str),
    /// A [`Summary`] would count more than `u32::MAX` points.
    CountOverflow,
}

impl fmt::Display for AggError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AggError::BadEvery(e) => write!(f, "interval must be > 0 µs, got {e}"),
            AggError::BadRange { start, end } => {
                write!(f, "bad time range: start {start} µs, end {end} µs")
            }
            AggError::TooMany { what, needed, max } => {
                write!(
                    f,
                    "request needs {needed} {what}, more than the limit {max}"
                )
            }
            AggError::OutOfOrder { ts, prev } => {
                write!(f, "timestamp {ts} µs not after the previous one, {prev} µs")
            }
            AggError::SummaryRejected {
                first_ts,
                last_ts,
                reason,
            } => write!(
                f,
                "summary of [{first_ts}, {last_ts}] µs rejected: {reason}"
            ),
            AggError::BadParam { name, value } => write!(f, "bad {name}: {value}"),
            AggError::Decode { offset, what } => {
                write!(f, "bad encoded summary at byte {offset}: {what}")
            }
            AggError::NotMergeable(func) => {
                write!(f, "{func} has no mergeable cross-series partial")
            }
            AggError::CountOverflow => write!(f, "summary would count more than 2^32-1 points"),
        }
    }
}

impl std::error::Error for AggError {}

/// `b - a` in µs, as f64, without i64 overflow.
#[inline]
pub(crate) fn micros(a: i64, b: i64) -> f64 {
    match b.checked_sub(a) {
        Some(d) => d as f64,
        // i128 → f64 is a software routine: only when i64 overflows.
        None => (i128::from(b) - i128::from(a)) as f64,
    }
}

/// `b - a` in seconds, as f64, without i64 overflow.
#[inline]
pub(crate) fn seconds(a: i64, b: i64) -> f64 {
    micros(a, b) / 1e6
}

/// Value at `t` on the line through `p` and `q` (`p.ts < q.ts`); exactly
/// `p.value` at `p.ts` and `q.value` at `q.ts`.
#[inline]
pub(crate) fn lerp(p: Sample, q: Sample, t: i64) -> f64 {
    if t == p.ts {
        return p.value;
    }
    if t == q.ts {
        return q.value;
    }
    let m = (q.value - p.value) / micros(p.ts, q.ts);
    m * micros(p.ts, t) + p.value
}
