//! [`Summary`]: the statistics of one tag's points over a run (one segment of
//! a block, or any run in time order), mergeable in time order, with a fixed
//! byte layout the storage format stores per segment.

use super::{seconds, AggError, GOOD};
use crate::point::Point;

/// Bytes in [`Summary::encode`].
pub const SUMMARY_LEN: usize = 104;

/// Value fields of a [`Summary`], as a bit set: what a consumer of
/// per-interval rollups reads, so the rollup decodes only those columns
/// (the others come back NaN).
pub mod fields {
    /// `first`.
    pub const FIRST: u8 = 1;
    /// `last`.
    pub const LAST: u8 = 2;
    /// `min`.
    pub const MIN: u8 = 4;
    /// `max`.
    pub const MAX: u8 = 8;
    /// `sum`.
    pub const SUM: u8 = 16;
    /// All of them.
    pub const ALL: u8 = 31;
}

/// Summary of one tag's visible points in time order (one segment of a
/// block, or any run).
///
/// Visible means "value not NaN" (see the module doc): NaN points are not
/// counted and do not end the hold of the previous value in the integrals.
/// Quality is not a filter here; `good` counts the good ones, and a summary
/// can serve a good-only request only when `good == count`
/// ([`Summary::usable_for`]).
///
/// An empty summary (`count == 0`) is [`Summary::EMPTY`]; its other fields
/// mean nothing.
///
/// `count` is a u32: a summary of more than `u32::MAX` points is refused
/// ([`AggError::CountOverflow`]); segments hold far fewer.
///
/// # Byte layout ([`Summary::encode`], all little-endian, 104 bytes)
/// | offset | size | field |
/// |---:|---:|---|
/// | 0 | 4 | `count` u32 |
/// | 4 | 4 | `good` u32 |
/// | 8 | 8 | `min` f64 |
/// | 16 | 8 | `max` f64 |
/// | 24 | 8 | `sum` f64 |
/// | 32 | 8 | `m2` f64 |
/// | 40 | 8 | `first_ts` i64 |
/// | 48 | 8 | `first` f64 |
/// | 56 | 8 | `last_ts` i64 |
/// | 64 | 8 | `last` f64 |
/// | 72 | 8 | `integral_step` f64 |
/// | 80 | 8 | `integral_linear` f64 |
/// | 88 | 8 | `min_ts` i64 |
/// | 96 | 8 | `max_ts` i64 |
///
/// f64 fields are stored as their IEEE-754 bits, so a round trip is
/// bit-exact. [`Summary::decode`] checks the structure (length, `good <=
/// count`, no NaN min/max/first/last, `min <= first, last <= max`,
/// `first_ts + count - 1 <= last_ts`, `m2 >= 0` or NaN, the canonical empty
/// form when `count == 0`) and never panics.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    /// Points counted (NaN values are not).
    pub count: u32,
    /// Of which quality >= 192 (OPC good).
    pub good: u32,
    /// Smallest value.
    pub min: f64,
    /// Largest value.
    pub max: f64,
    /// Sum of the values.
    pub sum: f64,
    /// Sum of squared deviations from the mean (Youngs–Cramer per point,
    /// Chan et al. on merge), for the standard deviation.
    pub m2: f64,
    /// Timestamp of the first point (µs).
    pub first_ts: i64,
    /// Value of the first point.
    pub first: f64,
    /// Timestamp of the last point (µs).
    pub last_ts: i64,
    /// Value of the last point.
    pub last: f64,
    /// ∫ value dt from `first_ts` to `last_ts`, previous value holds (step),
    /// in value·seconds.
    pub integral_step: f64,
    /// Same with linear interpolation between points (trapezoids), in
    /// value·seconds.
    pub integral_linear: f64,
    /// Timestamp of the (first) point holding `min`, so a `min()` selector
    /// answered from summaries can report when it happened.
    pub min_ts: i64,
    /// Timestamp of the (first) point holding `max`.
    pub max_ts: i64,
}

impl Default for Summary {
    fn default() -> Self {
        Summary::EMPTY
    }
}

impl Summary {
    /// The summary of no points.
    pub const EMPTY: Summary = Summary {
        count: 0,
        good: 0,
        min: f64::INFINITY,
        max: f64::NEG_INFINITY,
        sum: 0.0,
        m2: 0.0,
        first_ts: 0,
        first: 0.0,
        last_ts: 0,
        last: 0.0,
        integral_step: 0.0,
        integral_linear: 0.0,
        min_ts: 0,
        max_ts: 0,
    };

    /// Summary of `points` (one tag, strictly increasing timestamps; the tag
    /// field is not looked at).
    pub fn of(points: &[Point]) -> Result<Summary, AggError> {
        let mut s = Summary::EMPTY;
        for p in points {
            s.push(p.ts, p.value, p.quality)?;
        }
        Ok(s)
    }

    /// Adds one point after all the points already in. A NaN value is
    /// ignored. Errors (and changes nothing) if `ts` is not after `last_ts`
    /// or the count would overflow.
    #[inline]
    pub fn push(&mut self, ts: i64, value: f64, quality: u8) -> Result<(), AggError> {
        if value.is_nan() {
            return Ok(());
        }
        let good = u32::from(quality >= GOOD);
        if self.count == 0 {
            *self = Summary {
                count: 1,
                good,
                min: value,
                max: value,
                sum: value,
                m2: 0.0,
                first_ts: ts,
                first: value,
                last_ts: ts,
                last: value,
                integral_step: 0.0,
                integral_linear: 0.0,
                min_ts: ts,
                max_ts: ts,
            };
            return Ok(());
        }
        if ts <= self.last_ts {
            return Err(AggError::OutOfOrder {
                ts,
                prev: self.last_ts,
            });
        }
        let Some(count) = self.count.checked_add(1) else {
            return Err(AggError::CountOverflow);
        };
        let dt = seconds(self.last_ts, ts);
        self.integral_step += self.last * dt;
        self.integral_linear += 0.5 * (self.last + value) * dt;
        // Youngs–Cramer: m2 += ((n-1)·x − S)² / (n(n−1)), S the sum before x.
        let n = f64::from(count);
        let t = (n - 1.0) * value - self.sum;
        self.m2 += t * t / (n * (n - 1.0));
        self.sum += value;
        self.count = count;
        self.good += good;
        if value < self.min {
            self.min = value;
            self.min_ts = ts;
        }
        if value > self.max {
            self.max = value;
            self.max_ts = ts;
        }
        self.last_ts = ts;
        self.last = value;
        Ok(())
    }

    /// Appends the summary of the run that follows this one in time
    /// (`self.last_ts < later.first_ts`). The integrals include the gap
    /// between `self.last` and `later.first` (step: `self.last` × gap;
    /// linear: the trapezoid). Errors (and changes nothing) if the runs
    /// overlap or the count would overflow. Empty summaries are identities.
    pub fn merge(&mut self, later: &Summary) -> Result<(), AggError> {
        if later.count == 0 {
            return Ok(());
        }
        if self.count == 0 {
            *self = *later;
            return Ok(());
        }
        if later.first_ts <= self.last_ts {
            return Err(AggError::OutOfOrder {
                ts: later.first_ts,
                prev: self.last_ts,
            });
        }
        let Some(count) = self.count.checked_add(later.count) else {
            return Err(AggError::CountOverflow);
        };
        let gap = seconds(self.last_ts, later.first_ts);
        self.integral_step += self.last * gap + later.integral_step;
        self.integral_linear += 0.5 * (self.last + later.first) * gap + later.integral_linear;
        let (na, nb) = (f64::from(self.count), f64::from(later.count));
        let delta = later.sum / nb - self.sum / na;
        self.m2 += later.m2 + delta * delta * (na * nb / (na + nb));
        self.sum += later.sum;
        self.count = count;
        self.good += later.good;
        if later.min < self.min {
            self.min = later.min;
            self.min_ts = later.min_ts;
        }
        if later.max > self.max {
            self.max = later.max;
            self.max_ts = later.max_ts;
        }
        self.last_ts = later.last_ts;
        self.last = later.last;
        Ok(())
    }

    /// Whether this summary can stand in for its points in a request:
    /// always, unless the request is good-only and some point is not good.
    pub fn usable_for(&self, good_only: bool) -> bool {
        !good_only || self.good == self.count
    }

    /// Mean of the values, `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / f64::from(self.count))
    }

    /// The fixed little-endian layout documented on [`Summary`].
    pub fn encode(&self) -> [u8; SUMMARY_LEN] {
        let mut b = [0u8; SUMMARY_LEN];
        b[0..4].copy_from_slice(&self.count.to_le_bytes());
        b[4..8].copy_from_slice(&self.good.to_le_bytes());
        let words: [u64; 12] = [
            self.min.to_bits(),
            self.max.to_bits(),
            self.sum.to_bits(),
            self.m2.to_bits(),
            self.first_ts as u64,
            self.first.to_bits(),
            self.last_ts as u64,
            self.last.to_bits(),
            self.integral_step.to_bits(),
            self.integral_linear.to_bits(),
            self.min_ts as u64,
            self.max_ts as u64,
        ];
        for (chunk, w) in b[8..].chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    /// Decodes [`Summary::encode`]'s layout; `bytes` must be exactly
    /// [`SUMMARY_LEN`] long. Validates the structure (see [`Summary`]) and
    /// names the offending byte offset; never panics.
    pub fn decode(bytes: &[u8]) -> Result<Summary, AggError> {
        if bytes.len() != SUMMARY_LEN {
            return Err(AggError::Decode {
                offset: bytes.len(),
                what: "length is not 104 bytes",
            });
        }
        let u32_at = |o: usize| -> Result<u32, AggError> {
            bytes
                .get(o..o + 4)
                .and_then(|s| <[u8; 4]>::try_from(s).ok())
                .map(u32::from_le_bytes)
                .ok_or(AggError::Decode {
                    offset: o,
                    what: "short field",
                })
        };
        let u64_at = |o: usize| -> Result<u64, AggError> {
            bytes
                .get(o..o + 8)
                .and_then(|s| <[u8; 8]>::try_from(s).ok())
                .map(u64::from_le_bytes)
                .ok_or(AggError::Decode {
                    offset: o,
                    what: "short field",
                })
        };
        let f64_at = |o: usize| u64_at(o).map(f64::from_bits);
        let s = Summary {
            count: u32_at(0)?,
            good: u32_at(4)?,
            min: f64_at(8)?,
            max: f64_at(16)?,
            sum: f64_at(24)?,
            m2: f64_at(32)?,
            first_ts: u64_at(40)? as i64,
            first: f64_at(48)?,
            last_ts: u64_at(56)? as i64,
            last: f64_at(64)?,
            integral_step: f64_at(72)?,
            integral_linear: f64_at(80)?,
            min_ts: u64_at(88)? as i64,
            max_ts: u64_at(96)? as i64,
        };
        let bad = |offset, what| Err(AggError::Decode { offset, what });
        if s.count == 0 {
            if bytes[..] != Summary::EMPTY.encode()[..] {
                return bad(0, "empty summary not in canonical form");
            }
            return Ok(Summary::EMPTY);
        }
        if s.good > s.count {
            return bad(4, "good > count");
        }
        for (offset, v) in [(8, s.min), (16, s.max), (48, s.first), (64, s.last)] {
            if v.is_nan() {
                return bad(offset, "NaN where a point value belongs");
            }
        }
        if s.min > s.max {
            return bad(8, "min > max");
        }
        if s.first < s.min || s.first > s.max {
            return bad(48, "first outside [min, max]");
        }
        if s.last < s.min || s.last > s.max {
            return bad(64, "last outside [min, max]");
        }
        if i128::from(s.last_ts) - i128::from(s.first_ts) < i128::from(s.count) - 1 {
            return bad(56, "last_ts too close to first_ts for count");
        }
        if s.m2 < 0.0 {
            return bad(32, "negative m2");
        }
        for (offset, t) in [(88, s.min_ts), (96, s.max_ts)] {
            if t < s.first_ts || t > s.last_ts {
                return bad(offset, "min/max time outside [first_ts, last_ts]");
            }
        }
        Ok(s)
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn small_example_by_hand() {
        // 1 s apart: 1, 3, NaN, 2 (the NaN holds nothing).
        let pts = [
            Point::new(0, 0, 1.0, 192),
            Point::new(0, 1_000_000, 3.0, 0),
            Point::new(0, 1_500_000, f64::NAN, 192),
            Point::new(0, 2_000_000, 2.0, 192),
        ];
        let s = Summary::of(&pts).unwrap();
        assert_eq!((s.count, s.good), (3, 2));
        assert_eq!((s.min, s.max, s.sum), (1.0, 3.0, 6.0));
        assert!((s.m2 - 2.0).abs() < 1e-12);
        assert_eq!(
            (s.first_ts, s.first, s.last_ts, s.last),
            (0, 1.0, 2_000_000, 2.0)
        );
        assert_eq!((s.min_ts, s.max_ts), (0, 1_000_000));
        assert_eq!(s.integral_step, 4.0);
        assert_eq!(s.integral_linear, 4.5);
        assert!(!s.usable_for(true));
        assert!(s.usable_for(false));
    }

    #[test]
    fn out_of_order_is_refused_without_change() {
        let mut s = Summary::EMPTY;
        s.push(10, 1.0, 192).unwrap();
        let before = s;
        assert_eq!(
            s.push(10, 2.0, 192),
            Err(AggError::OutOfOrder { ts: 10, prev: 10 })
        );
        assert_eq!(s, before);
        let mut later = Summary::EMPTY;
        later.push(5, 1.0, 192).unwrap();
        assert!(s.merge(&later).is_err());
        assert_eq!(s, before);
    }

    #[test]
    fn decode_refuses_each_broken_invariant() {
        let pts = [
            Point::new(0, 10, 1.0, 192),
            Point::new(0, 20, 3.0, 0),
            Point::new(0, 30, 2.0, 192),
        ];
        let ok = Summary::of(&pts).unwrap();
        assert_eq!(Summary::decode(&ok.encode()), Ok(ok));
        type Break = fn(&mut Summary);
        let broken: [(usize, Break); 11] = [
            (4, |s| s.good = 4),
            (8, |s| s.min = f64::NAN),
            (8, |s| s.min = 5.0),
            (48, |s| s.first = 0.5),
            (64, |s| s.last = 3.5),
            (56, |s| s.last_ts = 11),
            (56, |s| s.last_ts = i64::MIN),
            (32, |s| s.m2 = -1.0),
            (88, |s| s.min_ts = 5),
            (96, |s| s.max_ts = 31),
            (0, |s| {
                *s = Summary::EMPTY;
                s.sum = 1.0;
            }),
        ];
        for (offset, f) in broken {
            let mut s = ok;
            f(&mut s);
            match Summary::decode(&s.encode()) {
                Err(AggError::Decode { offset: o, .. }) => assert_eq!(o, offset, "{s:?}"),
                other => panic!("{s:?} decoded as {other:?}"),
            }
        }
        let mut nan_m2 = ok;
        nan_m2.m2 = f64::NAN;
        assert!(
            Summary::decode(&nan_m2.encode()).is_ok(),
            "NaN m2 comes from ±inf"
        );
    }

    #[test]
    fn empty_round_trip_and_canonical_form() {
        assert_eq!(
            Summary::decode(&Summary::EMPTY.encode()),
            Ok(Summary::EMPTY)
        );
        let mut b = Summary::EMPTY.encode();
        b[20] ^= 1;
        assert!(Summary::decode(&b).is_err());
        assert!(Summary::decode(&b[..103]).is_err());
    }
}
