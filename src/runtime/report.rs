//! What a shard reports about itself: its storage counters, write-ack
//! latency, uptime and the counters its network edges keep ([`Counters`],
//! named by the edge that owns them, so the runtime knows no protocol), and
//! the one naming of it all as `shardN.*` / `total.*` counters that the
//! native `stats` frame and `xtdb stats` use. Owns the types and the
//! naming; never does I/O.

use std::time::Duration;

use hdrhistogram::Histogram;

use crate::storage::ShardStats;

/// Counters an edge (HTTP, auth, …) keeps per shard, by static name. A
/// handful of entries: a linear search is as fast as a map.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters(Vec<(&'static str, u64)>);

impl Counters {
    /// Adds `n` to counter `name` (created at 0).
    pub fn add(&mut self, name: &'static str, n: u64) {
        *self.entry(name) += n;
    }

    /// Sets `name` to `v` (a level, not a count).
    pub fn set(&mut self, name: &'static str, v: u64) {
        *self.entry(name) = v;
    }

    /// Counter `name`'s value, created at 0.
    fn entry(&mut self, name: &'static str) -> &mut u64 {
        let i = match self.0.iter().position(|(k, _)| *k == name) {
            Some(i) => i,
            None => {
                self.0.push((name, 0));
                self.0.len() - 1
            }
        };
        &mut self.0[i].1
    }

    /// The value of `name` (0 if never added to).
    pub fn get(&self, name: &str) -> u64 {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map_or(0, |(_, v)| *v)
    }

    /// Every counter, in first-use order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.0.iter().copied()
    }
}

/// One shard's counters as reported to `stats` and `/metrics`.
#[derive(Debug, Clone)]
pub struct ShardReport {
    /// Shard index.
    pub shard: usize,
    /// CPU the shard is pinned to.
    pub cpu: usize,
    /// Storage counters.
    pub stats: ShardStats,
    /// Write-ack latency (µs) of client batches read by this shard.
    pub ack_us: Histogram<u64>,
    /// Time since the shard started.
    pub uptime: Duration,
    /// Counters of this shard's edges.
    pub counters: Counters,
    /// Where the shard's acknowledgements spent their time, one latency
    /// histogram (µs) per stage (see [`crate::storage::ack`]).
    pub ack_stages: Vec<(&'static str, Histogram<u64>)>,
}

/// A histogram for latencies in µs (the storage's, so both count alike).
pub fn new_histogram() -> Histogram<u64> {
    crate::storage::ack::new_histogram()
}

/// Names every shard's counters: `shards` (count), then for `shardN` and
/// `total`: every [`ShardStats`] field, `wal_group_avg` (records per sync),
/// `points_per_sec` (average since start), `ack_count`,
/// `ack_p50_us` / `ack_p99_us` / `ack_p999_us` / `ack_max_us`,
/// `ack_stage_<stage>_{count,p50_us,p99_us,p999_us,max_us}` for every
/// acknowledgement stage, `cpu` (per shard) and `uptime_ms`.
pub fn named_counters(reports: &[ShardReport]) -> Vec<(String, u64)> {
    let mut out = vec![("shards".to_string(), reports.len() as u64)];
    let mut total = ShardStats::default();
    let mut hist = new_histogram();
    let mut stages: Vec<(&'static str, Histogram<u64>)> = Vec::new();
    let mut total_rate = 0;
    for r in reports {
        let p = format!("shard{}", r.shard);
        out.push((format!("{p}.cpu"), r.cpu as u64));
        total_rate += named(&mut out, &p, &r.stats, &r.ack_us, r.uptime);
        named_stages(&mut out, &p, &r.ack_stages);
        total.merge(&r.stats);
        let _ = hist.add(&r.ack_us);
        for (name, h) in &r.ack_stages {
            match stages.iter_mut().find(|(n, _)| n == name) {
                Some((_, t)) => {
                    let _ = t.add(h);
                }
                None => stages.push((name, h.clone())),
            }
        }
        out.push((format!("{p}.uptime_ms"), r.uptime.as_millis() as u64));
    }
    let uptime = reports.iter().map(|r| r.uptime).max().unwrap_or_default();
    named(&mut out, "total", &total, &hist, uptime);
    named_stages(&mut out, "total", &stages);
    out.push(("total.uptime_ms".to_string(), uptime.as_millis() as u64));
    // The total rate is the sum of the shards' rates.
    if let Some(e) = out.iter_mut().find(|(n, _)| n == "total.points_per_sec") {
        e.1 = total_rate;
    }
    out
}

/// Pushes `prefix.ack_stage_<stage>_*` counters.
fn named_stages(out: &mut Vec<(String, u64)>, prefix: &str, stages: &[(&str, Histogram<u64>)]) {
    for (stage, h) in stages {
        latency(out, &format!("{prefix}.ack_stage_{stage}"), h);
    }
}

/// Pushes `prefix.*` counters; returns the average points/s since start.
fn named(
    out: &mut Vec<(String, u64)>,
    prefix: &str,
    s: &ShardStats,
    h: &Histogram<u64>,
    uptime: Duration,
) -> u64 {
    for (name, v) in s.fields() {
        out.push((format!("{prefix}.{name}"), v));
    }
    let group = s.wal_synced_records.checked_div(s.wal_syncs).unwrap_or(0);
    out.push((format!("{prefix}.wal_group_avg"), group));
    let ms = uptime.as_millis().max(1) as u64;
    let rate = s.points_written.saturating_mul(1000) / ms;
    out.push((format!("{prefix}.points_per_sec"), rate));
    latency(out, &format!("{prefix}.ack"), h);
    rate
}

/// Pushes `{base}_count`, `{base}_p50_us` / `_p99_us` / `_p999_us` and
/// `{base}_max_us` of one latency histogram.
fn latency(out: &mut Vec<(String, u64)>, base: &str, h: &Histogram<u64>) {
    out.push((format!("{base}_count"), h.len()));
    for (name, q) in [("p50", 0.5), ("p99", 0.99), ("p999", 0.999)] {
        out.push((format!("{base}_{name}_us"), h.value_at_quantile(q)));
    }
    out.push((format!("{base}_max_us"), h.max()));
}
