//! What a shard allows its network clients, native protocol and HTTP
//! alike: how many connections, how long a connection may sit idle or take
//! to deliver a started frame, and the window of timestamps a write may
//! carry. Owns the settings and the timestamp check; the accept loop
//! ([`crate::net::accept`]) and the connection handlers apply them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::Point;

/// Per-shard network limits.
#[derive(Clone, Debug)]
pub struct WireLimits {
    /// Connections served at once per shard and listener (native and HTTP
    /// are counted apart). One over it is answered with an error (native:
    /// error frame [`crate::net::protocol::code::BUSY`]; HTTP: 503) and
    /// closed. `SO_REUSEPORT` spreads connections over the shards by a hash
    /// of the client's address, so the server-wide limit is about this
    /// times the shard count.
    pub max_connections: usize,
    /// Native protocol: a connection with no request started for this long
    /// is closed (without an error frame: there is no request to answer).
    pub idle_timeout: Duration,
    /// Native protocol: once a frame's first byte has arrived, the whole
    /// frame must arrive within this; and an answer must be taken by the
    /// client within it. Otherwise the connection gets error frame
    /// [`crate::net::protocol::code::TIMEOUT`] (when it can still be
    /// written) and is closed. This bounds slow-drip ("slowloris") clients.
    pub frame_timeout: Duration,
    /// Native protocol: payload bytes a shard holds for requests being
    /// read or run at once. A frame that would exceed it waits (its bytes
    /// stay in the kernel's socket buffer, so the client is slowed by TCP
    /// flow control) until earlier requests finish; its frame timeout
    /// starts again once it may proceed. Bounds memory under many
    /// connections sending large frames at once.
    pub max_inflight_bytes: usize,
    /// Timestamps a write may carry.
    pub window: TimeWindow,
}

impl Default for WireLimits {
    fn default() -> Self {
        WireLimits {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(600),
            frame_timeout: Duration::from_secs(30),
            max_inflight_bytes: 256 << 20,
            window: TimeWindow::default(),
        }
    }
}

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
}
