//! Deterministic points: every value the load generator writes is a pure
//! function of `(seed, tag, timestamp)`, so `verify` can recompute any point
//! from the ack log instead of storing it.
//!
//! Timestamps are never read from the clock per point. A *group* of `n_tags`
//! consecutive tags starting at `tag_lo` writes one point per tag per *tick*;
//! tick `k` has timestamp `t0 + k * period_us`, where `t0` is fixed when a run
//! starts (the wall clock rounded down to a whole second). Points are numbered
//! in write order: point index `i` is tag `tag_lo + i % n_tags` at tick
//! `i / n_tags`. A batch is a contiguous range of indices, which is what the
//! ack log records.
//!
//! This module never does I/O and never panics on any input.

use crate::Point;

/// Quality code for a good sample (OPC DA).
pub const QUALITY_GOOD: u8 = 192;
/// Quality code for an uncertain sample (OPC DA), about 1 in 500 points.
pub const QUALITY_UNCERTAIN: u8 = 64;
/// Quality code for a bad sample (OPC DA), about 1 in 5,000 points.
pub const QUALITY_BAD: u8 = 0;

/// SplitMix64 finaliser: a cheap, well-mixed 64-bit hash step.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A hash in `[0, 1)` from 53 bits of `h`.
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// The point for `tag` at `ts` under `seed`.
///
/// The value looks like a process measurement: a per-tag base level
/// (0..1000), a slow sine (period 10 min .. 3 h, amplitude up to 10 % of the
/// base) and small noise (±0.5 %). Quality is mostly 192 (good).
pub fn point(seed: u64, tag: u32, ts: i64) -> Point {
    let tag_h = mix64(seed ^ mix64(u64::from(tag)));
    let base = 1.0 + unit(tag_h) * 999.0;
    let amp = base * 0.1 * unit(mix64(tag_h ^ 1));
    let period_s = 600.0 + unit(mix64(tag_h ^ 2)) * 10_200.0;
    let phase = unit(mix64(tag_h ^ 3)) * std::f64::consts::TAU;
    let t_s = ts as f64 / 1e6;
    let wave = (t_s / period_s * std::f64::consts::TAU + phase).sin();
    let pt_h = mix64(tag_h ^ mix64(ts as u64));
    let noise = (unit(pt_h) - 0.5) * base * 0.01;
    let value = base + amp * wave + noise;
    let q = pt_h % 5000;
    let quality = if q == 0 {
        QUALITY_BAD
    } else if q < 10 {
        QUALITY_UNCERTAIN
    } else {
        QUALITY_GOOD
    };
    Point::new(tag, ts, value, quality)
}

/// What the values of a run look like.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Signal {
    /// [`point`]: analog values with full-precision noise (about 7 bytes a
    /// point compressed: close to the codec's worst realistic case).
    #[default]
    Noise,
    /// [`plant_point`]: a plant's mix, by tag: quantised analog
    /// measurements, setpoint steps, booleans and counters.
    Plant,
}

impl Signal {
    /// The name used on the command line and in ack logs.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Noise => "noise",
            Signal::Plant => "plant",
        }
    }
}

impl std::str::FromStr for Signal {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "noise" => Ok(Signal::Noise),
            "plant" => Ok(Signal::Plant),
            o => Err(format!("unknown signal {o:?} (expected noise or plant)")),
        }
    }
}

/// The point for `tag` at `ts` under `seed` with plant-like values. Each
/// tag is one kind of signal (chosen by its hash), in these shares:
/// - 50 % quantised analog: level, slow sine and ±0.2 % noise, rounded to
///   0.01, 0.1 or 1 (a transmitter's resolution);
/// - 20 % steps: a setpoint that moves among five levels every 5 to 60 min;
/// - 15 % booleans (valve open, pump running) that flip every 1 to 30 min;
/// - 15 % counters: a totaliser growing at 0.1 to 10 units a second.
///
/// Quality as in [`point`].
pub fn plant_point(seed: u64, tag: u32, ts: i64) -> Point {
    let tag_h = mix64(seed ^ mix64(u64::from(tag)) ^ 0x0050_4C41_4E54);
    let t_s = ts as f64 / 1e6;
    let held = |min_s: f64, max_s: f64| {
        let hold_us = ((min_s + unit(mix64(tag_h ^ 7)) * (max_s - min_s)) * 1e6) as i64;
        mix64(tag_h ^ mix64(ts.div_euclid(hold_us.max(1)) as u64))
    };
    let class = tag_h % 100;
    let value = if class < 50 {
        let base = 1.0 + unit(tag_h) * 999.0;
        let amp = base * 0.1 * unit(mix64(tag_h ^ 1));
        let period_s = 600.0 + unit(mix64(tag_h ^ 2)) * 10_200.0;
        let phase = unit(mix64(tag_h ^ 3)) * std::f64::consts::TAU;
        let wave = (t_s / period_s * std::f64::consts::TAU + phase).sin();
        let noise = (unit(mix64(tag_h ^ mix64(ts as u64))) - 0.5) * base * 0.004;
        let step = [0.01, 0.1, 1.0][(mix64(tag_h ^ 4) % 3) as usize];
        ((base + amp * wave + noise) / step).round() * step
    } else if class < 70 {
        let base = (unit(tag_h) * 200.0).round();
        base + 5.0 * (held(300.0, 3600.0) % 5) as f64
    } else if class < 85 {
        (held(60.0, 1800.0) & 1) as f64
    } else {
        let rate = 0.1 + unit(mix64(tag_h ^ 5)) * 9.9;
        (t_s * rate).floor()
    };
    let q = mix64(tag_h ^ mix64(ts as u64) ^ 9) % 5000;
    let quality = if q == 0 {
        QUALITY_BAD
    } else if q < 10 {
        QUALITY_UNCERTAIN
    } else {
        QUALITY_GOOD
    };
    Point::new(tag, ts, value, quality)
}

/// A group of consecutive tags written tick by tick (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Group {
    /// Seed of the value function.
    pub seed: u64,
    /// First tag of the group.
    pub tag_lo: u32,
    /// Number of tags (at least 1).
    pub n_tags: u32,
    /// Timestamp of tick 0, µs since the Unix epoch.
    pub t0: i64,
    /// Microseconds between ticks (at least 1).
    pub period_us: i64,
    /// What the values look like.
    pub signal: Signal,
}

impl Group {
    /// Tag and timestamp of point index `i`, or `None` if it overflows.
    pub fn locate(&self, i: u64) -> Option<(u32, i64)> {
        let n = u64::from(self.n_tags.max(1));
        let tag = self.tag_lo.checked_add((i % n) as u32)?;
        let tick = i64::try_from(i / n).ok()?;
        let ts = tick.checked_mul(self.period_us)?.checked_add(self.t0)?;
        Some((tag, ts))
    }

    /// The point with index `i`, or `None` if its tag or timestamp overflows.
    pub fn point_at(&self, i: u64) -> Option<Point> {
        let (tag, ts) = self.locate(i)?;
        Some(match self.signal {
            Signal::Noise => point(self.seed, tag, ts),
            Signal::Plant => plant_point(self.seed, tag, ts),
        })
    }

    /// Appends points `first .. first + count` to `out`; stops at the first
    /// index that overflows and returns how many it appended.
    pub fn fill(&self, first: u64, count: u64, out: &mut Vec<Point>) -> u64 {
        let mut n = 0;
        for i in first..first.saturating_add(count) {
            match self.point_at(i) {
                Some(p) => out.push(p),
                None => break,
            }
            n += 1;
        }
        n
    }

    /// The ticks of `tag` covered by the batch `first .. first + count`, as
    /// an inclusive range, or `None` if the batch holds no point of `tag`.
    pub fn ticks_of_tag(&self, tag: u32, first: u64, count: u64) -> Option<(u64, u64)> {
        if count == 0 || tag < self.tag_lo || tag - self.tag_lo >= self.n_tags {
            return None;
        }
        let n = u64::from(self.n_tags);
        let o = u64::from(tag - self.tag_lo);
        let last = first.checked_add(count - 1)?;
        // smallest k with k*n + o >= first; largest k with k*n + o <= last
        let k0 = if first <= o {
            0
        } else {
            (first - o).div_ceil(n)
        };
        if last < o {
            return None;
        }
        let k1 = (last - o) / n;
        (k0 <= k1).then_some((k0, k1))
    }

    /// Timestamp of tick `k`, or `None` on overflow.
    pub fn ts_of_tick(&self, k: u64) -> Option<i64> {
        i64::try_from(k)
            .ok()?
            .checked_mul(self.period_us)?
            .checked_add(self.t0)
    }
}

/// The current wall clock in µs since the Unix epoch, rounded down to `round_us`.
pub fn now_us_rounded(round_us: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0);
    let r = round_us.max(1);
    now - now.rem_euclid(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_of_tag_matches_enumeration() {
        let g = Group {
            seed: 7,
            tag_lo: 10,
            n_tags: 7,
            t0: 0,
            period_us: 1000,
            signal: Signal::Noise,
        };
        for first in 0..30u64 {
            for count in 0..25u64 {
                for tag in 8..20u32 {
                    let ticks: Vec<u64> = (first..first + count)
                        .filter(|&i| g.locate(i).map(|l| l.0) == Some(tag))
                        .map(|i| i / 7)
                        .collect();
                    let want = ticks.first().map(|&a| (a, *ticks.last().unwrap_or(&a)));
                    assert_eq!(
                        g.ticks_of_tag(tag, first, count),
                        want,
                        "{first} {count} {tag}"
                    );
                }
            }
        }
    }
}
