//! Per-client limits of the HTTP edge that outlive one request: the
//! new-series rate per client address ([`SeriesRate`], a token bucket per
//! address holding one second's worth). Owns only counters; never blocks,
//! never grows past [`MAX_CLIENTS`] addresses.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Client addresses tracked at once; past it the bucket idle longest is
/// dropped (a dropped client starts again with a full bucket, which a
/// flood of addresses cannot turn into more than one second's worth each).
pub const MAX_CLIENTS: usize = 4096;

/// New series each client address may create per second.
pub struct SeriesRate {
    per_second: u64,
    buckets: RefCell<HashMap<Option<IpAddr>, Bucket>>,
}

#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl SeriesRate {
    /// A limit of `per_second` new series per client address.
    pub fn new(per_second: u64) -> SeriesRate {
        SeriesRate {
            per_second,
            buckets: RefCell::new(HashMap::new()),
        }
    }

    /// Takes `n` new series for `peer`, or says how many whole seconds to
    /// wait before the bucket holds them (`n` larger than one second's
    /// worth waits for a full bucket and then takes it all).
    pub fn take(&self, peer: Option<IpAddr>, n: u64) -> Result<(), u64> {
        self.take_at(peer, n, Instant::now())
    }

    fn take_at(&self, peer: Option<IpAddr>, n: u64, now: Instant) -> Result<(), u64> {
        let cap = self.per_second as f64;
        let mut buckets = self.buckets.borrow_mut();
        if !buckets.contains_key(&peer) && buckets.len() >= MAX_CLIENTS {
            if let Some(oldest) = buckets.iter().min_by_key(|(_, b)| b.at).map(|(k, _)| *k) {
                buckets.remove(&oldest);
            }
        }
        let b = buckets.entry(peer).or_insert(Bucket {
            tokens: cap,
            at: now,
        });
        let dt = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + dt * cap).min(cap);
        b.at = now;
        let want = (n as f64).min(cap);
        if b.tokens >= want && cap > 0.0 {
            b.tokens -= n as f64;
            return Ok(());
        }
        if cap <= 0.0 {
            return Err(1);
        }
        Err(((want - b.tokens) / cap).ceil().max(1.0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_refills_at_the_rate_and_holds_one_second() {
        let r = SeriesRate::new(100);
        let t0 = Instant::now();
        let a = Some(IpAddr::from([10, 0, 0, 1]));
        let b = Some(IpAddr::from([10, 0, 0, 2]));
        assert_eq!(r.take_at(a, 100, t0), Ok(()));
        assert_eq!(r.take_at(a, 1, t0), Err(1));
        // Another client has its own bucket.
        assert_eq!(r.take_at(b, 60, t0), Ok(()));
        // Half a second refills half.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(r.take_at(a, 50, t1), Ok(()));
        assert_eq!(r.take_at(a, 10, t1), Err(1));
        // Never more than one second's worth, however long idle.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!(r.take_at(a, 100, t2), Ok(()));
        assert_eq!(r.take_at(a, 1, t2), Err(1));
        // A request bigger than the bucket waits for a full one, then
        // drives it negative so the client pays for it afterwards.
        let t3 = t2 + Duration::from_secs(1);
        assert_eq!(r.take_at(a, 250, t3), Ok(()));
        // -150 tokens: after a second still -50, after two 50.
        assert_eq!(r.take_at(a, 1, t3 + Duration::from_secs(1)), Err(1));
        assert_eq!(r.take_at(a, 100, t3 + Duration::from_secs(1)), Err(2));
        assert_eq!(r.take_at(a, 50, t3 + Duration::from_secs(2)), Ok(()));
    }

    #[test]
    fn addresses_past_the_bound_evict_the_idle_longest() {
        let r = SeriesRate::new(1);
        let t0 = Instant::now();
        for i in 0..(MAX_CLIENTS as u32 + 10) {
            let ip = Some(IpAddr::from(i.to_be_bytes()));
            let _ = r.take_at(ip, 1, t0 + Duration::from_micros(u64::from(i)));
        }
        assert_eq!(r.buckets.borrow().len(), MAX_CLIENTS);
    }
}
