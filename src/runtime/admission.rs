//! Admission: what the runtime lets in, for every edge alike. The
//! [`TimeWindow`] of timestamps a write may carry (checked once, where a
//! write enters the runtime), the [`Closing`] signal that stops accepting
//! and drains connections at shutdown, and [`Slots`], a per-shard count of
//! requests in flight that refuses (rather than queues) one over its
//! bound. Owns the rules and the counters; never does I/O and never blocks.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::Point;

/// The timestamps (µs since the Unix epoch) a write may carry:
/// `min_ts <= ts <= now + max_future`. A batch with any point outside is
/// refused as a whole, naming the first offender; nothing of it is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeWindow {
    /// Earliest accepted timestamp, µs.
    pub min_ts: i64,
    /// How far past the server's clock a timestamp may be; `None`: no limit.
    pub max_future: Option<Duration>,
}

impl Default for TimeWindow {
    /// From the epoch (1970-01-01) to one day past the server's clock.
    fn default() -> Self {
        TimeWindow {
            min_ts: 0,
            max_future: Some(Duration::from_secs(86_400)),
        }
    }
}

impl TimeWindow {
    /// Accepts every timestamp.
    pub fn unbounded() -> Self {
        TimeWindow {
            min_ts: i64::MIN,
            max_future: None,
        }
    }

    /// The latest accepted timestamp when the clock reads `now_us`.
    pub fn max_ts(&self, now_us: i64) -> i64 {
        match self.max_future {
            None => i64::MAX,
            Some(d) => now_us.saturating_add(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        }
    }

    /// Checks one timestamp against the window at `now_us`.
    pub fn check_ts(&self, ts: i64, now_us: i64) -> Result<(), String> {
        let max = self.max_ts(now_us);
        if ts < self.min_ts {
            return Err(format!(
                "timestamp {ts} µs is before the accepted window, which starts at {} µs \
                 (server option --min-timestamp-us)",
                self.min_ts
            ));
        }
        if ts > max {
            return Err(format!(
                "timestamp {ts} µs is more than {} s past the server's clock ({now_us} µs) \
                 (server option --max-future-secs)",
                self.max_future.map_or(0, |d| d.as_secs())
            ));
        }
        Ok(())
    }

    /// Checks every point; the error gives the index and tag of the first
    /// one outside, and why.
    pub fn check_point(&self, points: &[Point], now_us: i64) -> Result<(), (usize, u32, String)> {
        let max = self.max_ts(now_us);
        match points.iter().position(|p| p.ts < self.min_ts || p.ts > max) {
            None => Ok(()),
            Some(i) => {
                let p = &points[i];
                let why = self.check_ts(p.ts, now_us).err().unwrap_or_default();
                Err((i, p.tag, format!("point {i} (tag {}): {why}", p.tag)))
            }
        }
    }

    /// Checks every point; the error names the first one outside.
    pub fn check(&self, points: &[Point], now_us: i64) -> Result<(), String> {
        let max = self.max_ts(now_us);
        match points.iter().position(|p| p.ts < self.min_ts || p.ts > max) {
            None => Ok(()),
            Some(i) => {
                let p = &points[i];
                let why = self.check_ts(p.ts, now_us).err().unwrap_or_default();
                Err(format!("point {i} (tag {}): {why}", p.tag))
            }
        }
    }
}

/// The server's clock, µs since the Unix epoch.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A one-way "closing" signal shared by this shard's tasks. Waiters that
/// are dropped unregister, so long-lived connections do not accumulate
/// wakers.
#[derive(Clone, Default)]
pub struct Closing {
    inner: Rc<ClosingInner>,
}

#[derive(Default)]
struct ClosingInner {
    closed: Cell<bool>,
    next: Cell<u64>,
    wakers: RefCell<HashMap<u64, Waker>>,
}

impl Closing {
    /// Signals every waiter.
    pub fn close(&self) {
        self.inner.closed.set(true);
        let wakers: Vec<Waker> = self
            .inner
            .wakers
            .borrow_mut()
            .drain()
            .map(|(_, w)| w)
            .collect();
        for w in wakers {
            w.wake();
        }
    }

    /// Whether [`Closing::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.get()
    }

    /// Resolves once closed.
    pub fn wait(&self) -> ClosingWait {
        let key = self.inner.next.get();
        self.inner.next.set(key + 1);
        ClosingWait {
            inner: Rc::clone(&self.inner),
            key,
        }
    }
}

/// Future returned by [`Closing::wait`].
pub struct ClosingWait {
    inner: Rc<ClosingInner>,
    key: u64,
}

impl Future for ClosingWait {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.inner.closed.get() {
            return Poll::Ready(());
        }
        self.inner
            .wakers
            .borrow_mut()
            .insert(self.key, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for ClosingWait {
    fn drop(&mut self) {
        self.inner.wakers.borrow_mut().remove(&self.key);
    }
}

/// A bound on requests in flight on one shard: [`Slots::try_take`] gives a
/// guard while fewer than the bound are taken, `None` (refuse, answer
/// "busy") otherwise.
#[derive(Clone)]
pub struct Slots {
    max: usize,
    taken: Rc<Cell<usize>>,
}

/// One taken slot; given back when dropped.
pub struct Slot(Rc<Cell<usize>>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

impl Slots {
    /// At most `max` at once (0 refuses everything).
    pub fn new(max: usize) -> Slots {
        Slots {
            max,
            taken: Rc::new(Cell::new(0)),
        }
    }

    /// A slot, or `None` when all are taken.
    pub fn try_take(&self) -> Option<Slot> {
        if self.taken.get() >= self.max {
            return None;
        }
        self.taken.set(self.taken.get() + 1);
        Some(Slot(Rc::clone(&self.taken)))
    }

    /// Slots taken now.
    pub fn taken(&self) -> usize {
        self.taken.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_bounds_are_inclusive_and_name_the_point() {
        let w = TimeWindow {
            min_ts: 100,
            max_future: Some(Duration::from_secs(1)),
        };
        let now = 5_000_000;
        let ok = [Point::new(1, 100, 0.0, 0), Point::new(2, 6_000_000, 0.0, 0)];
        assert_eq!(w.check(&ok, now), Ok(()));
        let early = [Point::new(1, 100, 0.0, 0), Point::new(7, 99, 0.0, 0)];
        let e = w.check(&early, now).unwrap_err();
        assert!(
            e.starts_with("point 1 (tag 7): timestamp 99 µs is before"),
            "{e}"
        );
        let late = [Point::new(3, 6_000_001, 0.0, 0)];
        let e = w.check(&late, now).unwrap_err();
        assert!(e.contains("more than 1 s past"), "{e}");
    }

    #[test]
    fn unbounded_accepts_everything_and_max_never_overflows() {
        let w = TimeWindow::unbounded();
        let p = [
            Point::new(1, i64::MIN, 0.0, 0),
            Point::new(1, i64::MAX, 0.0, 0),
        ];
        assert_eq!(w.check(&p, now_us()), Ok(()));
        let far = TimeWindow {
            min_ts: 0,
            max_future: Some(Duration::from_secs(u64::MAX)),
        };
        assert_eq!(far.max_ts(i64::MAX - 1), i64::MAX);
    }

    #[test]
    fn closing_waiters_unregister_and_wake() {
        glommio::LocalExecutorBuilder::default()
            .io_memory(1 << 20)
            .make()
            .unwrap()
            .run(async {
                let c = Closing::default();
                for _ in 0..100 {
                    // A wait that loses its race is dropped and unregisters.
                    futures_lite::future::or(c.wait(), futures_lite::future::ready(())).await;
                    let mut w = Box::pin(c.wait());
                    assert!(futures_lite::future::poll_once(&mut w).await.is_none());
                }
                assert!(c.inner.wakers.borrow().is_empty());
                let waiter = glommio::spawn_local({
                    let c = c.clone();
                    async move { c.wait().await }
                });
                glommio::executor().yield_task_queue_now().await;
                assert_eq!(c.inner.wakers.borrow().len(), 1);
                c.close();
                waiter.await;
                assert!(c.is_closed());
            });
    }
}
