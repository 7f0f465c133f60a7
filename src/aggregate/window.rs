//! Window arithmetic: `GROUP BY time(every, offset)` over `[start, end)`.

use super::AggError;

/// Windows of width `every` µs over `[start, end)`, aligned to the Unix
/// epoch plus `offset` (InfluxDB `GROUP BY time(every, offset)`): window `k`
/// covers `[k·every + offset, (k+1)·every + offset)`. The first window is
/// the one containing `start`, clipped to `start`; the last is the one
/// containing `end - 1`, clipped to `end`. Works the same before 1970
/// (floor division, not truncation). `offset` is normalised into
/// `[0, every)`, which names the same windows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowSpec {
    start: i64,
    end: i64,
    every: i64,
    offset: i64,
    /// Window number `k` of the first window.
    k0: i128,
    n: usize,
}

/// One window of a [`WindowSpec`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Position in the spec, 0-based.
    pub index: usize,
    /// Aligned start `k·every + offset` (InfluxDB labels the row with it,
    /// even when it is before the query start). Saturates at `i64::MIN`.
    pub start: i64,
    /// Aligned end `(k+1)·every + offset`. Saturates at `i64::MAX`.
    pub end: i64,
    /// Start clipped to the query: `max(start, query start)`.
    pub lo: i64,
    /// End clipped to the query: `min(end, query end)`; `lo < hi`.
    pub hi: i64,
}

impl WindowSpec {
    /// Windows of `every` µs (> 0) over `[start, end)` (`start <= end`;
    /// equal gives no windows), at most `max_windows` of them (more is
    /// [`AggError::TooMany`], checked before anything is allocated).
    pub fn new(
        start: i64,
        end: i64,
        every: i64,
        offset: i64,
        max_windows: usize,
    ) -> Result<Self, AggError> {
        if every <= 0 {
            return Err(AggError::BadEvery(every));
        }
        if start > end {
            return Err(AggError::BadRange { start, end });
        }
        let offset = offset.rem_euclid(every);
        let k0 = k_of(start, every, offset);
        let n: u128 = if start == end {
            0
        } else {
            // end > start >= i64::MIN, so end - 1 does not overflow.
            (k_of(end - 1, every, offset) - k0 + 1) as u128
        };
        if n > max_windows as u128 {
            return Err(AggError::TooMany {
                what: "windows",
                needed: n,
                max: max_windows,
            });
        }
        Ok(WindowSpec {
            start,
            end,
            every,
            offset,
            k0,
            n: n as usize,
        })
    }

    /// One window that is exactly `[start, end)` (InfluxQL without
    /// `GROUP BY time`); no windows when `start == end`.
    pub fn whole(start: i64, end: i64) -> Result<Self, AggError> {
        if start > end {
            return Err(AggError::BadRange { start, end });
        }
        if start == end {
            return WindowSpec::new(start, end, 1, 0, 0);
        }
        let every = end
            .checked_sub(start)
            .ok_or(AggError::BadRange { start, end })?;
        WindowSpec::new(start, end, every, start, 1)
    }

    /// Number of windows.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether there are no windows (`start == end`).
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Query start (µs, inclusive).
    pub fn start(&self) -> i64 {
        self.start
    }

    /// Query end (µs, exclusive).
    pub fn end(&self) -> i64 {
        self.end
    }

    /// Window width (µs).
    pub fn every(&self) -> i64 {
        self.every
    }

    /// Offset, normalised into `[0, every)`.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// Index of the window holding `ts`, `None` outside `[start, end)`.
    #[inline]
    pub fn index_of(&self, ts: i64) -> Option<usize> {
        if ts < self.start || ts >= self.end {
            return None;
        }
        Some((k_of(ts, self.every, self.offset) - self.k0) as usize)
    }

    /// Window `index`, `None` past the last.
    pub fn window(&self, index: usize) -> Option<Window> {
        (index < self.n).then(|| self.window_at(index))
    }

    /// Aligned start of window `index` (`window(index)`'s `start`), `None`
    /// past the last.
    #[inline]
    pub fn start_of(&self, index: usize) -> Option<i64> {
        if index >= self.n {
            return None;
        }
        Some(self.window_at(index).start)
    }

    /// All windows in time order.
    pub fn windows(&self) -> impl Iterator<Item = Window> + '_ {
        (0..self.n).map(|i| self.window_at(i))
    }

    /// Window `index` (callers pass `index < n`; never panics either way).
    #[inline]
    pub(crate) fn window_at(&self, index: usize) -> Window {
        // In i64 where the bounds fit (always but near the ends of the
        // time range): the i128 products and clamps cost several times
        // more, once per window.
        let fast = i64::try_from(self.k0 + index as i128)
            .ok()
            .and_then(|k| k.checked_mul(self.every))
            .and_then(|s| s.checked_add(self.offset))
            .and_then(|s| Some((s, s.checked_add(self.every)?)));
        match fast {
            Some((start, end)) => Window {
                index,
                start,
                end,
                lo: start.max(self.start),
                hi: end.min(self.end),
            },
            None => self.window_at_wide(index),
        }
    }

    #[cold]
    fn window_at_wide(&self, index: usize) -> Window {
        let k = self.k0 + index as i128;
        let every = i128::from(self.every);
        let start = k * every + i128::from(self.offset);
        let end = start + every;
        let clamp = |v: i128| v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        let (start, end) = (clamp(start), clamp(end));
        Window {
            index,
            start,
            end,
            lo: start.max(self.start),
            hi: end.min(self.end),
        }
    }
}

/// Window number of `t`: `floor((t - offset) / every)`.
#[inline]
fn k_of(t: i64, every: i64, offset: i64) -> i128 {
    // One i64 division where the difference fits (always, but for
    // offsets near the ends of the range): the i128 one is a library call
    // several times slower, and this runs per point and per summary.
    match t.checked_sub(offset) {
        Some(d) => i128::from(d.div_euclid(every)),
        None => (i128::from(t) - i128::from(offset)).div_euclid(i128::from(every)),
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn before_1970_with_offset() {
        // every 10, offset 3: windows [-7, 3), [3, 13); query [-5, 5).
        let s = WindowSpec::new(-5, 5, 10, 3, 10).unwrap();
        let w: Vec<_> = s.windows().collect();
        assert_eq!(w.len(), 2);
        assert_eq!((w[0].start, w[0].end, w[0].lo, w[0].hi), (-7, 3, -5, 3));
        assert_eq!((w[1].start, w[1].end, w[1].lo, w[1].hi), (3, 13, 3, 5));
        assert_eq!(s.index_of(2), Some(0));
        assert_eq!(s.index_of(3), Some(1));
        assert_eq!(s.index_of(5), None);
        assert_eq!(s.index_of(-6), None);
        assert_eq!(
            (s.start_of(0), s.start_of(1), s.start_of(2)),
            (Some(-7), Some(3), None)
        );
        // A negative offset names the same windows.
        assert_eq!(WindowSpec::new(-5, 5, 10, -7, 10).unwrap(), s);
    }

    #[test]
    fn limits() {
        assert_eq!(
            WindowSpec::new(0, 100, 1, 0, 99),
            Err(AggError::TooMany {
                what: "windows",
                needed: 100,
                max: 99
            })
        );
        assert!(WindowSpec::new(0, 1, 0, 0, 9).is_err());
        assert!(WindowSpec::new(1, 0, 1, 0, 9).is_err());
        assert!(WindowSpec::new(3, 3, 1, 0, 0).unwrap().is_empty());
        let all = WindowSpec::new(i64::MIN, i64::MAX, i64::MAX, 0, 9).unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all.window_at(0).lo, i64::MIN);
        assert_eq!(all.window_at(2).hi, i64::MAX);
        for i in 0..3 {
            assert_eq!(all.start_of(i), Some(all.window_at(i).start));
            assert_eq!(all.window_at(i), all.window_at_wide(i));
        }
        for spec in [
            WindowSpec::new(-5, 5, 10, 3, 10).unwrap(),
            WindowSpec::new(i64::MAX - 25, i64::MAX, 10, 0, 10).unwrap(),
            WindowSpec::new(i64::MIN, i64::MIN + 25, 10, 7, 10).unwrap(),
        ] {
            for i in 0..spec.len() {
                assert_eq!(spec.window_at(i), spec.window_at_wide(i), "{spec:?} {i}");
            }
        }
        let w = WindowSpec::whole(i64::MIN, i64::MAX);
        assert!(w.is_err(), "width does not fit in i64");
        let w = WindowSpec::whole(-10, 7).unwrap();
        assert_eq!(w.len(), 1);
        assert_eq!(
            w.window_at(0),
            Window {
                index: 0,
                start: -10,
                end: 7,
                lo: -10,
                hi: 7
            }
        );
    }
}
