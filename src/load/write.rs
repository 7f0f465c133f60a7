//! `write`: the open-loop writer. Each connection owns a disjoint slice of the
//! tags and writes them tick by tick (see [`crate::load::gen`]); batches leave
//! on a fixed schedule when a rate is set, back to back when it is 0.
//!
//! Latency is measured from the batch's *intended* send time on the schedule,
//! not from when it actually left: when the server stalls, the batches that
//! should have gone out meanwhile are charged the time they waited (the
//! coordinated-omission correction of wrk2; it is what
//! `Histogram::record_correct` approximates for a closed loop, but exact here
//! because the writer catches up on its schedule instead of skipping). The
//! plain service time (send → ack) is reported too.
//!
//! Executors are pinned one per CPU of `--cpus` (glommio pool,
//! `PoolPlacement::Custom`); connections are spread over them round-robin.
//! Every acknowledged batch is appended to the ack log before the next one is
//! sent on that connection. Never panics on a server answer: errors are
//! counted by kind, a broken connection is re-opened and the unacknowledged
//! batch re-sent (rewriting identical points is harmless).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use glommio::{CpuSet, LocalExecutorPoolBuilder, PoolPlacement};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::load::acklog::AckLogWriter;
use crate::load::conn::{error_kind, is_connection_error, Conn};
use crate::load::gen::{self, Group};
use crate::load::report::{self, fmt_count, fmt_us, Latency, Progress};
use crate::net::ClientOptions;
use crate::storage::keepalive::awake;
use crate::Point;

/// What to write, how fast, and where.
#[derive(Clone, Debug)]
pub struct WriteConfig {
    /// Server address, `host:port`.
    pub addr: String,
    /// Token and TLS.
    pub client: ClientOptions,
    /// Number of tags.
    pub tags: u32,
    /// First tag id.
    pub tag_base: u32,
    /// Target points per second over all connections; 0 = as fast as acked.
    pub rate: u64,
    /// Points per batch (one write request).
    pub batch: u32,
    /// Connections.
    pub conns: u32,
    /// How long to write.
    pub duration: Duration,
    /// Stop each connection after this many ticks (one point per tag each).
    pub max_ticks: Option<u64>,
    /// CPUs to pin the generator's executors to, one executor per CPU.
    pub cpus: Vec<usize>,
    /// Seed of the value function.
    pub seed: u64,
    /// What the values look like.
    pub signal: crate::load::gen::Signal,
    /// Timestamp of tick 0 (default: now, rounded down to a second).
    pub t0: Option<i64>,
    /// µs between ticks (default: `tags * 1e6 / rate`, or 1,000 at rate 0).
    pub period_us: Option<i64>,
    /// Append every acknowledged batch here.
    pub ack_log: Option<PathBuf>,
    /// Print per-second progress.
    pub progress: bool,
    /// Progress goes to stderr (stdout carries JSON).
    pub json: bool,
}

impl WriteConfig {
    /// A config with defaults for everything but the address.
    pub fn new(addr: &str) -> Self {
        WriteConfig {
            addr: addr.to_string(),
            client: ClientOptions::default(),
            tags: 1000,
            tag_base: 0,
            rate: 0,
            batch: 1000,
            conns: 1,
            duration: Duration::from_secs(10),
            max_ticks: None,
            cpus: vec![0],
            seed: 1,
            signal: crate::load::gen::Signal::Noise,
            t0: None,
            period_us: None,
            ack_log: None,
            progress: true,
            json: false,
        }
    }

    /// The tick period this config writes with.
    pub fn effective_period_us(&self) -> i64 {
        self.period_us.unwrap_or_else(|| {
            (u64::from(self.tags) * 1_000_000)
                .checked_div(self.rate)
                .map_or(1_000, |p| p.max(1) as i64)
        })
    }
}

/// State shared between the executors and the progress thread.
#[derive(Debug)]
pub struct Live {
    /// Points acknowledged so far.
    pub acked: AtomicU64,
    /// Errors so far.
    pub errors: AtomicU64,
    /// Set to stop every connection after its current batch.
    pub stop: AtomicBool,
    /// Index of the phase histogram acknowledgements are recorded into.
    pub phase: AtomicUsize,
    /// Keep every `(ack time, latency µs)` sample in `samples` (for runs of
    /// a few samples per second that are classified afterwards).
    pub keep_samples: AtomicBool,
    /// The samples kept when `keep_samples` is set.
    pub samples: Mutex<Vec<(Instant, u64)>>,
    hists: Mutex<LiveHists>,
}

#[derive(Debug)]
struct LiveHists {
    interval: Histogram<u64>,
    phases: Vec<Histogram<u64>>,
}

impl Live {
    /// Fresh shared state with `phases` phase histograms (at least 1).
    pub fn new(phases: usize) -> Arc<Self> {
        Arc::new(Live {
            acked: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            phase: AtomicUsize::new(0),
            keep_samples: AtomicBool::new(false),
            samples: Mutex::new(Vec::new()),
            hists: Mutex::new(LiveHists {
                interval: report::new_hist(),
                phases: (0..phases.max(1)).map(|_| report::new_hist()).collect(),
            }),
        })
    }

    fn record(&self, us: u64) {
        if self.keep_samples.load(Ordering::Relaxed) {
            if let Ok(mut v) = self.samples.lock() {
                v.push((Instant::now(), us));
            }
        }
        if let Ok(mut h) = self.hists.lock() {
            report::record(&mut h.interval, us);
            let p = self.phase.load(Ordering::Relaxed).min(h.phases.len() - 1);
            report::record(&mut h.phases[p], us);
        }
    }

    /// Takes the histogram of the latencies recorded since the last call.
    pub fn take_interval(&self) -> Histogram<u64> {
        match self.hists.lock() {
            Ok(mut h) => std::mem::replace(&mut h.interval, report::new_hist()),
            Err(_) => report::new_hist(),
        }
    }

    /// Summaries of the phase histograms.
    pub fn phase_latencies(&self) -> Vec<Latency> {
        match self.hists.lock() {
            Ok(h) => h.phases.iter().map(Latency::of).collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// One second of progress.
#[derive(Clone, Copy, Debug)]
pub struct Second {
    /// Seconds since start.
    pub t: f64,
    /// Points acknowledged in this second.
    pub points: u64,
    /// p99 ack latency in this second, µs.
    pub p99: u64,
}

/// The outcome of a write run.
#[derive(Clone, Debug)]
pub struct WriteReport {
    /// Target rate (0 = unlimited).
    pub target_rate: u64,
    /// Points acknowledged.
    pub points_acked: u64,
    /// Batches acknowledged.
    pub batches_acked: u64,
    /// Wall time of the run, seconds.
    pub elapsed_s: f64,
    /// Acknowledged points per second.
    pub points_per_sec: f64,
    /// Ack latency from the intended send time (coordinated-omission corrected).
    pub latency: Latency,
    /// Ack latency from the actual send time.
    pub service: Latency,
    /// Errors by kind.
    pub errors: BTreeMap<String, u64>,
    /// How far behind its schedule the slowest connection ended, µs.
    pub final_lag_us: u64,
    /// Whether the target rate was kept (None at rate 0).
    pub rate_kept: Option<bool>,
    /// Per-second progress.
    pub timeline: Vec<Second>,
}

impl WriteReport {
    /// Total errors.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The `--json` object.
    pub fn json(&self) -> Value {
        json!({
            "target_rate": self.target_rate,
            "points_acked": self.points_acked,
            "batches_acked": self.batches_acked,
            "elapsed_s": (self.elapsed_s * 1000.0).round() / 1000.0,
            "points_per_sec": self.points_per_sec.round(),
            "latency_us": self.latency.json(),
            "service_time_us": self.service.json(),
            "errors": self.errors,
            "error_count": self.error_count(),
            "final_lag_us": self.final_lag_us,
            "rate_kept": self.rate_kept,
        })
    }

    /// The human-readable report.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let target = if self.target_rate == 0 {
            "unlimited".to_string()
        } else {
            format!("{} points/s", fmt_count(self.target_rate))
        };
        s += &format!(
            "  points acknowledged  {} in {} batches over {:.2} s\n",
            fmt_count(self.points_acked),
            fmt_count(self.batches_acked),
            self.elapsed_s
        );
        s += &format!(
            "  throughput           {} points/s (target {target})\n",
            fmt_count(self.points_per_sec.round() as u64)
        );
        s += &format!("  ack latency          {}\n", self.latency.line());
        s += &format!("  (service time        {})\n", self.service.line());
        if self.errors.is_empty() {
            s += "  errors               none\n";
        } else {
            let list: Vec<String> = self
                .errors
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect();
            s += &format!("  errors               {}\n", list.join(", "));
        }
        if let Some(kept) = self.rate_kept {
            s += &format!(
                "  target rate kept     {} (ended {} behind schedule)\n",
                if kept { "yes" } else { "NO" },
                fmt_us(self.final_lag_us)
            );
        }
        s
    }
}

#[derive(Debug)]
struct ConnResult {
    hist: Histogram<u64>,
    service: Histogram<u64>,
    errors: BTreeMap<String, u64>,
    acked: u64,
    batches: u64,
    lag_us: u64,
}

/// Runs a write with connection type `C`, printing progress if configured.
pub fn run<C: Conn>(cfg: &WriteConfig) -> Result<WriteReport> {
    run_with::<C>(cfg, Live::new(1))
}

/// Like [`run`], with caller-provided shared state (to stop it or read it
/// from another thread).
pub fn run_with<C: Conn>(cfg: &WriteConfig, live: Arc<Live>) -> Result<WriteReport> {
    validate(cfg)?;
    let mut sets = Vec::new();
    let online = CpuSet::online().map_err(Error::from)?;
    for &c in &cfg.cpus {
        let set = online.clone().filter(|l| l.cpu == c);
        if set.is_empty() {
            return Err(Error::Config(format!("CPU {c} is not online")));
        }
        sets.push(set);
    }
    let n_exec = sets.len();
    let period = cfg.effective_period_us();
    let t0 = cfg.t0.unwrap_or_else(|| gen::now_us_rounded(1_000_000));
    let nonce = format!(
        "{:08x}",
        gen::mix64(u64::from(std::process::id()) ^ gen::now_us_rounded(1) as u64) as u32
    );
    let start = Instant::now();
    let deadline = start + cfg.duration;
    let done = Arc::new(AtomicBool::new(false));
    let progress = {
        let live = live.clone();
        let done = done.clone();
        let (show, json) = (cfg.progress, cfg.json);
        std::thread::spawn(move || progress_loop(&live, &done, show, json))
    };
    let shard_counter = Arc::new(AtomicUsize::new(0));
    let cfg2 = Arc::new(cfg.clone());
    let live2 = live.clone();
    let nonce2 = nonce.clone();
    let handles = LocalExecutorPoolBuilder::new(PoolPlacement::Custom(sets))
        .name("xtdb-load")
        .io_memory(2 << 20)
        .on_all_shards(move || {
            let cfg = cfg2.clone();
            let live = live2.clone();
            let nonce = nonce2.clone();
            let shard = shard_counter.fetch_add(1, Ordering::SeqCst);
            async move {
                awake(run_shard::<C>(
                    &cfg, &live, shard, n_exec, t0, period, &nonce, start, deadline,
                ))
                .await
            }
        });
    let results = match handles {
        Ok(h) => h.join_all(),
        Err(e) => {
            done.store(true, Ordering::SeqCst);
            let _ = progress.join();
            return Err(Error::from(e));
        }
    };
    let mut elapsed = start.elapsed().as_secs_f64();
    if cfg.rate > 0 && cfg.max_ticks.is_none() && !live.stop.load(Ordering::Relaxed) {
        // A paced run is scheduled over the whole duration even though its
        // last batch leaves before the deadline: rate = points / duration.
        elapsed = elapsed.max(cfg.duration.as_secs_f64());
    }
    done.store(true, Ordering::SeqCst);
    let timeline = progress.join().unwrap_or_default();

    let mut hist = report::new_hist();
    let mut service = report::new_hist();
    let mut errors = BTreeMap::new();
    let (mut acked, mut batches, mut lag) = (0, 0, 0);
    for r in results {
        let conns = match r {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(Error::from(e)),
        };
        for c in conns {
            let _ = hist.add(&c.hist);
            let _ = service.add(&c.service);
            for (k, v) in c.errors {
                *errors.entry(k).or_insert(0) += v;
            }
            acked += c.acked;
            batches += c.batches;
            lag = lag.max(c.lag_us);
        }
    }
    let pps = if elapsed > 0.0 {
        acked as f64 / elapsed
    } else {
        0.0
    };
    let rate_kept = (cfg.rate > 0).then(|| {
        let lag_ok = lag <= 1_000_000;
        let rate_ok = cfg.max_ticks.is_some() || pps >= cfg.rate as f64 * 0.99;
        lag_ok && rate_ok
    });
    Ok(WriteReport {
        target_rate: cfg.rate,
        points_acked: acked,
        batches_acked: batches,
        elapsed_s: elapsed,
        points_per_sec: pps,
        latency: Latency::of(&hist),
        service: Latency::of(&service),
        errors,
        final_lag_us: lag,
        rate_kept,
        timeline,
    })
}

fn validate(cfg: &WriteConfig) -> Result<()> {
    let bad = |m: &str| Err(Error::Config(m.to_string()));
    if cfg.tags == 0 {
        return bad("--tags must be at least 1");
    }
    if cfg.conns == 0 || cfg.conns > cfg.tags {
        return bad("--conns must be between 1 and --tags");
    }
    if cfg.batch == 0 {
        return bad("--batch must be at least 1");
    }
    if cfg.cpus.is_empty() {
        return bad("--cpus must name at least one CPU");
    }
    if cfg.tag_base.checked_add(cfg.tags - 1).is_none() {
        return bad("--tag-base + --tags overflows u32");
    }
    if cfg.period_us.is_some_and(|p| p <= 0) {
        return bad("--period-us must be positive");
    }
    Ok(())
}

fn progress_loop(live: &Live, done: &AtomicBool, show: bool, json: bool) -> Vec<Second> {
    let mut p = Progress::new(json, !show);
    let start = Instant::now();
    let mut last = 0u64;
    let mut timeline = Vec::new();
    let mut next = start + Duration::from_secs(1);
    while !done.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep((next - now).min(Duration::from_millis(50)));
            continue;
        }
        next += Duration::from_secs(1);
        let acked = live.acked.load(Ordering::Relaxed);
        let h = live.take_interval();
        let l = Latency::of(&h);
        timeline.push(Second {
            t: start.elapsed().as_secs_f64(),
            points: acked - last,
            p99: l.p99,
        });
        p.line(&format!(
            "{:>12} points/s  p99 {:>9}  max {:>9}  acked {}  errors {}",
            fmt_count(acked - last),
            fmt_us(l.p99),
            fmt_us(l.max),
            fmt_count(acked),
            live.errors.load(Ordering::Relaxed)
        ));
        last = acked;
    }
    p.finish();
    timeline
}

#[allow(clippy::too_many_arguments)]
async fn run_shard<C: Conn>(
    cfg: &WriteConfig,
    live: &Arc<Live>,
    shard: usize,
    n_exec: usize,
    t0: i64,
    period: i64,
    nonce: &str,
    start: Instant,
    deadline: Instant,
) -> Result<Vec<ConnResult>> {
    let log = match &cfg.ack_log {
        Some(p) => Some(Rc::new(RefCell::new(AckLogWriter::open(p)?))),
        None => None,
    };
    let mut tasks = Vec::new();
    for c in (0..cfg.conns).filter(|c| *c as usize % n_exec == shard) {
        let lo = (u64::from(c) * u64::from(cfg.tags) / u64::from(cfg.conns)) as u32;
        let hi = (u64::from(c + 1) * u64::from(cfg.tags) / u64::from(cfg.conns)) as u32;
        let group = Group {
            seed: cfg.seed,
            tag_lo: cfg.tag_base + lo,
            n_tags: hi - lo,
            t0,
            period_us: period,
            signal: cfg.signal,
        };
        let rate = if cfg.rate == 0 {
            0.0
        } else {
            cfg.rate as f64 * f64::from(hi - lo) / f64::from(cfg.tags)
        };
        let id = format!("{nonce}.{c}");
        let cfg = cfg.clone();
        let live = live.clone();
        let log = log.clone();
        tasks.push(glommio::spawn_local(async move {
            conn_loop::<C>(&cfg, &live, group, rate, id, log, start, deadline).await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await?);
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
async fn conn_loop<C: Conn>(
    cfg: &WriteConfig,
    live: &Live,
    group: Group,
    rate: f64,
    id: String,
    log: Option<Rc<RefCell<AckLogWriter>>>,
    start: Instant,
    deadline: Instant,
) -> Result<ConnResult> {
    let mut r = ConnResult {
        hist: report::new_hist(),
        service: report::new_hist(),
        errors: BTreeMap::new(),
        acked: 0,
        batches: 0,
        lag_us: 0,
    };
    let err = |r: &mut ConnResult, kind: String| {
        live.errors.fetch_add(1, Ordering::Relaxed);
        *r.errors.entry(kind).or_insert(0) += 1;
    };
    if let Some(l) = &log {
        l.borrow_mut().group(&id, &group)?;
    }
    let limit = cfg
        .max_ticks
        .map(|t| t.saturating_mul(u64::from(group.n_tags)));
    let batch_interval = (rate > 0.0).then(|| Duration::from_secs_f64(f64::from(cfg.batch) / rate));
    let mut conn: Option<C> = None;
    let mut points: Vec<Point> = Vec::with_capacity(cfg.batch as usize);
    let mut idx = 0u64;
    let mut j = 0u32;
    let mut intended;
    loop {
        if live.stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
            break;
        }
        if limit.is_some_and(|l| idx >= l) {
            break;
        }
        if conn.is_none() {
            match C::connect(&cfg.addr, &cfg.client).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    err(&mut r, format!("connect:{}", error_kind(&e)));
                    glommio::timer::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
        }
        let count = limit.map_or(u64::from(cfg.batch), |l| {
            (l - idx).min(u64::from(cfg.batch))
        });
        if let Some(bi) = batch_interval {
            intended = start + bi * j;
            let now = Instant::now();
            if intended > now {
                if intended >= deadline {
                    break;
                }
                glommio::timer::sleep(intended - now).await;
            }
        } else {
            intended = Instant::now();
        }
        points.clear();
        if group.fill(idx, count, &mut points) < count {
            err(&mut r, "timestamp_overflow".into());
            break;
        }
        let Some(c) = conn.as_mut() else { continue };
        let sent = Instant::now();
        let res = c.write(&points).await;
        let ack = Instant::now();
        match res {
            Ok(n) if n == count => {
                if let Some(l) = &log {
                    if let Err(e) = l.borrow_mut().batch(&id, idx, count) {
                        err(&mut r, "ack_log".into());
                        live.stop.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
                let lat = (ack - intended).as_micros() as u64;
                report::record(&mut r.hist, lat);
                report::record(&mut r.service, (ack - sent).as_micros() as u64);
                live.record(lat);
                live.acked.fetch_add(count, Ordering::Relaxed);
                r.acked += count;
                r.batches += 1;
                idx += count;
                j += 1;
            }
            Ok(_) => {
                // Some points of the batch were not acknowledged and we do not
                // know which: do not log it, move on.
                err(&mut r, "short_ack".into());
                idx += count;
                j += 1;
            }
            Err(e) => {
                err(&mut r, error_kind(&e));
                if is_connection_error(&e) {
                    // Re-send the same batch on a new connection.
                    conn = None;
                    glommio::timer::sleep(Duration::from_millis(50)).await;
                } else {
                    idx += count;
                    j += 1;
                }
            }
        }
    }
    if let Some(bi) = batch_interval {
        // How far past its scheduled time the next (unsent) batch is.
        let next_due = start + bi * j;
        r.lag_us = Instant::now()
            .min(deadline)
            .saturating_duration_since(next_due)
            .as_micros() as u64;
    }
    Ok(r)
}
