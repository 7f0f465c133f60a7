//! A range read in bounded pieces: [`RangeScan`] walks the points of one
//! series over `[start, end)` as a sequence of `Command::Range` calls on
//! consecutive time chunks whose width adapts so each answer stays near
//! [`CHUNK_POINTS`] points. Every consumer of long raw ranges (the HTTP
//! range stream, InfluxQL) reads through it, so no single answer, and no
//! single stall of the owning shard, grows with the range. Owns no state
//! beyond its cursor; never holds more than one chunk.

use std::rc::Rc;

use crate::runtime::admission::now_us;
use crate::runtime::command::{Answer, Command, Failure};
use crate::runtime::dispatch::execute;
use crate::runtime::router::Router;
use crate::Point;

/// Points one chunk aims at.
pub const CHUNK_POINTS: usize = 32_768;
/// A chunk counted above this is narrowed before it is read.
const MAX_CHUNK_POINTS: u64 = 4 * CHUNK_POINTS as u64;
/// Width of the first chunk, µs (one hour).
const FIRST_CHUNK_US: i64 = 3_600_000_000;

/// The points of one series, chunk by chunk, in time order.
pub struct RangeScan {
    router: Rc<Router>,
    tag: u32,
    lo: i64,
    end: i64,
    width: i64,
    /// The whole scan was counted at most [`MAX_CHUNK_POINTS`]: no chunk
    /// needs counting.
    few: bool,
}

impl RangeScan {
    /// A scan of `tag` over `[start, end)` (µs), first clipped to the
    /// timestamps the server accepts (no point can lie outside them).
    pub fn new(router: &Rc<Router>, tag: u32, start: i64, end: i64) -> RangeScan {
        let window = &router.local().window;
        RangeScan {
            tag,
            lo: start.max(window.min_ts),
            end: end.min(window.max_ts(now_us()).saturating_add(1)),
            width: FIRST_CHUNK_US,
            few: false,
            router: Rc::clone(router),
        }
    }

    /// Narrows the scan to `[min_ts, max_ts]`, where (an upper bound of)
    /// `points` points lie, and sizes the first chunk for about
    /// [`CHUNK_POINTS`] of them instead of starting at an hour: a dense
    /// range's first answer stays small.
    pub fn expect(&mut self, points: u64, min_ts: i64, max_ts: i64) {
        if min_ts > max_ts {
            self.end = self.lo;
            return;
        }
        self.lo = self.lo.max(min_ts);
        self.end = self.end.min(max_ts.saturating_add(1));
        self.few = points <= MAX_CHUNK_POINTS;
        if points > CHUNK_POINTS as u64 {
            let span = i128::from(self.end) - i128::from(self.lo);
            let w = span * CHUNK_POINTS as i128 / i128::from(points);
            self.width = i64::try_from(w).unwrap_or(i64::MAX).max(1);
        }
    }

    /// The count bound of `[lo, hi)` ([`Command::CountBound`]).
    async fn count(&self, lo: i64, hi: i64) -> Result<(u64, i64, i64), Failure> {
        let cmd = Command::CountBound {
            tag: self.tag,
            start: lo,
            end: hi,
        };
        match execute(&self.router, cmd).await? {
            Answer::Count {
                points,
                min_ts,
                max_ts,
            } => Ok((points, min_ts, max_ts)),
            other => Err(Failure::unexpected("range count", &other)),
        }
    }

    /// The clipped `[start, end)` still to read.
    pub fn remaining(&self) -> (i64, i64) {
        (self.lo, self.end)
    }

    /// The next chunk's points (possibly empty), or `None` when the range
    /// is done. Yields to the executor after each chunk, so the shard's
    /// writes and small reads run between a long scan's chunks.
    pub async fn next(&mut self) -> Result<Option<Vec<Point>>, Failure> {
        if self.lo >= self.end {
            return Ok(None);
        }
        let mut hi = self.lo.saturating_add(self.width).min(self.end);
        // The width grows while the data is sparse and follows the last
        // chunk's density: before a chunk can be more than a few times its
        // aim (a dense stretch after a sparse one, every point of it in one
        // answer), narrow it from the owner's count bound (the index, and
        // the memory buffers in range; no block read).
        while !self.few {
            let span = i128::from(hi) - i128::from(self.lo);
            if span <= 1 {
                break;
            }
            let (n, _, _) = self.count(self.lo, hi).await?;
            if n <= MAX_CHUNK_POINTS {
                break;
            }
            // At most half the span each time, so this ends.
            let w = span * CHUNK_POINTS as i128 / i128::from(n);
            let half = i64::try_from(span / 2).unwrap_or(i64::MAX);
            self.width = i64::try_from(w).unwrap_or(i64::MAX).min(half).max(1);
            hi = self.lo.saturating_add(self.width).min(self.end);
        }
        let cmd = Command::Range {
            tag: self.tag,
            start: self.lo,
            end: hi,
        };
        let pts = match execute(&self.router, cmd).await? {
            Answer::Points(p) => p,
            other => return Err(Failure::unexpected("range", &other)),
        };
        glommio::executor().yield_if_needed().await;
        if pts.len() < CHUNK_POINTS / 2 {
            self.width = self.width.saturating_mul(2);
        } else if pts.len() > CHUNK_POINTS * 2 {
            self.width = (self.width / 2).max(1);
        }
        self.lo = hi;
        Ok(Some(pts))
    }
}
