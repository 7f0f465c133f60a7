//! `scenario NAME`: the original design's measured scenarios, each a
//! self-contained run against a server (`recovery` starts its own):
//!
//! - `tags-100k`: 100,000 tags at 1 point/s each (100K points/s), sustained;
//!   rate kept?, ack p99, server RSS.
//! - `max-write`: highest acknowledged points/s (rate 0, 4 connections,
//!   batches of 10,000, 100,000 tags).
//! - `query-blocks`: range-query latency at 10/50/100/500 blocks.
//! - `flush-storm`: N tags × P points written as fast as possible, so every
//!   tag crosses the flush threshold at about the same time, while a probe
//!   writer keeps 1,000 tags at 1 Hz: probe latency alone, under the fill,
//!   while the server was flushing (from its `flush_micros` counter), and
//!   after (until no flush round finished for 3 s).
//! - `recovery`: start a server, write at full speed, `kill -9` it mid-write
//!   (or, with `sigterm`, SIGTERM it with every tag's buffer full and time
//!   its exit), restart, time to `ready`, verify every acknowledged point.
//! - `steady`: the storage lifecycle (see [`crate::load::steady`]): disk
//!   bytes per point after settling, write amplification, ack p99 while
//!   flushing and compacting.
//!
//! Every scenario returns a JSON object and a text report; figures come only
//! from what was measured in the run.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::load::conn::Conn;
use crate::load::gen;
use crate::load::query::{self, QueryConfig};
use crate::load::report::{self, fmt_count, fmt_us, Latency};
use crate::load::server::{self, ServerProcess, ServerSpec};
use crate::load::verify::{self, VerifyConfig};
use crate::load::write::{self, Live, WriteConfig};
use crate::net::ClientOptions;
use crate::storage::keepalive::awake;

/// Names accepted by `scenario`.
pub const NAMES: &[&str] = &[
    "tags-100k",
    "max-write",
    "query-blocks",
    "flush-storm",
    "recovery",
    "steady",
    "hostile",
];

/// Settings shared by the scenarios (each uses what applies to it).
#[derive(Clone, Debug)]
pub struct ScenarioConfig {
    /// Server address (for `recovery`: where the started server listens).
    pub addr: String,
    /// Token and TLS (`recovery` starts its own plain server without auth,
    /// and uses neither).
    pub client: ClientOptions,
    /// Override of the scenario's duration.
    pub duration: Option<Duration>,
    /// Override of the number of tags (tags-100k, max-write, flush-storm).
    pub tags: Option<u32>,
    /// flush-storm: points per tag written by the fill.
    pub points_per_tag: u32,
    /// CPUs for the generator.
    pub cpus: Vec<usize>,
    /// Server process id, for RSS.
    pub server_pid: Option<u32>,
    /// query-blocks: skip writing the query data.
    pub no_prepare: bool,
    /// query-blocks: range sizes.
    pub blocks: Vec<u32>,
    /// query-blocks: number of query tags.
    pub query_tags: u32,
    /// recovery: the `xtdb` binary (default: next to this executable).
    pub server_bin: Option<PathBuf>,
    /// recovery: data directory (default: a fresh temporary one, removed after).
    pub data_dir: Option<PathBuf>,
    /// recovery: pin the server to this CPU.
    pub server_cpu: Option<usize>,
    /// Seed of generated values.
    pub seed: u64,
    /// What the values look like (steady: plant by default).
    pub signal: crate::load::gen::Signal,
    /// steady: simulated minutes at 1 Hz.
    pub minutes: u32,
    /// steady: points per second offered (0: as fast as acknowledged).
    pub rate: u64,
    /// recovery: stop the first server with SIGTERM (timed) instead of
    /// kill -9.
    pub sigterm: bool,
    /// hostile: the server's HTTP address.
    pub http: Option<String>,
    /// Print progress.
    pub progress: bool,
    /// Progress to stderr (stdout carries JSON).
    pub json: bool,
}

impl ScenarioConfig {
    /// Defaults for everything but the address.
    pub fn new(addr: &str) -> Self {
        ScenarioConfig {
            addr: addr.into(),
            client: ClientOptions::default(),
            duration: None,
            tags: None,
            points_per_tag: 1000,
            cpus: vec![0],
            server_pid: None,
            no_prepare: false,
            blocks: vec![10, 50, 100, 500],
            query_tags: 2,
            server_bin: None,
            data_dir: None,
            server_cpu: None,
            seed: 1,
            signal: crate::load::gen::Signal::Noise,
            minutes: 60,
            rate: 0,
            sigterm: false,
            http: None,
            progress: true,
            json: false,
        }
    }

    fn write_cfg(&self) -> WriteConfig {
        let mut w = WriteConfig::new(&self.addr);
        w.client = self.client.clone();
        w.cpus = self.cpus.clone();
        w.seed = self.seed;
        w.signal = self.signal;
        w.progress = self.progress;
        w.json = self.json;
        w
    }
}

/// A scenario's result.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Scenario name.
    pub name: String,
    /// The `--json` object.
    pub json: Value,
    /// The text report.
    pub text: String,
    /// False when the scenario's check failed (rate not kept, data lost, errors).
    pub ok: bool,
}

/// Runs scenario `name`.
pub fn run<C: Conn>(name: &str, cfg: &ScenarioConfig) -> Result<Outcome> {
    match name {
        "tags-100k" => tags_100k::<C>(cfg),
        "max-write" => max_write::<C>(cfg),
        "query-blocks" => query_blocks::<C>(cfg),
        "flush-storm" => flush_storm::<C>(cfg),
        "recovery" => recovery::<C>(cfg),
        "steady" => crate::load::steady::run::<C>(cfg),
        "hostile" => hostile(cfg),
        other => Err(Error::Config(format!(
            "unknown scenario {other:?}; known: {}",
            NAMES.join(", ")
        ))),
    }
}

/// The server's counters, fetched on a short-lived executor.
pub fn fetch_stats<C: Conn>(
    addr: &str,
    opts: &ClientOptions,
    cpu: usize,
) -> Result<Vec<(String, u64)>> {
    let (addr, opts) = (addr.to_string(), opts.clone());
    LocalExecutorBuilder::new(Placement::Fixed(cpu))
        .io_memory(1 << 20)
        .spawn(move || async move {
            awake(async { C::connect(&addr, &opts).await?.stats().await }).await
        })
        .map_err(Error::from)?
        .join()
        .map_err(Error::from)?
}

/// The server's `total.*` counters as a JSON object (`null` if unavailable).
fn total_stats<C: Conn>(cfg: &ScenarioConfig) -> Value {
    match fetch_stats::<C>(&cfg.addr, &cfg.client, cfg.cpus[0]) {
        Ok(stats) => {
            let m: serde_json::Map<String, Value> = stats
                .into_iter()
                .filter_map(|(k, v)| k.strip_prefix("total.").map(|k| (k.to_string(), json!(v))))
                .collect();
            Value::Object(m)
        }
        Err(_) => Value::Null,
    }
}

/// One line naming a few server counters, or "n/a".
fn stats_line(v: &Value, keys: &[&str]) -> String {
    if !v.is_object() {
        return "n/a (stats call failed)".into();
    }
    keys.iter()
        .map(|k| {
            format!(
                "{k} {}",
                v.get(*k)
                    .and_then(Value::as_u64)
                    .map_or("n/a".into(), fmt_count)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Server RSS in bytes: `/proc/PID/status` when the pid is known, else a
/// stats counter whose name mentions rss.
fn server_rss<C: Conn>(cfg: &ScenarioConfig) -> (Option<u64>, &'static str) {
    if let Some(pid) = cfg.server_pid {
        if let Some(b) = report::rss_bytes(pid) {
            return (Some(b), "/proc/PID/status VmRSS");
        }
    }
    if let Ok(stats) = fetch_stats::<C>(&cfg.addr, &cfg.client, cfg.cpus[0]) {
        if let Some((_, v)) = stats
            .iter()
            .find(|(k, _)| k.to_ascii_lowercase().contains("rss"))
        {
            return (Some(*v), "server stats counter");
        }
    }
    (None, "n/a")
}

fn fmt_rss(r: Option<u64>) -> String {
    r.map_or("n/a".into(), |b| {
        format!("{:.1} MiB", b as f64 / (1 << 20) as f64)
    })
}

fn tags_100k<C: Conn>(cfg: &ScenarioConfig) -> Result<Outcome> {
    let mut w = cfg.write_cfg();
    w.tags = cfg.tags.unwrap_or(100_000);
    w.rate = u64::from(w.tags); // 1 point per tag per second
    w.batch = 5_000;
    w.conns = 4.min(w.tags);
    w.duration = cfg.duration.unwrap_or(Duration::from_secs(60));
    let r = write::run::<C>(&w)?;
    let (rss, rss_src) = server_rss::<C>(cfg);
    let stats = total_stats::<C>(cfg);
    let ok = r.rate_kept == Some(true) && r.error_count() == 0;
    let text = format!(
        "scenario tags-100k: {} tags at 1 point/s each for {:.0} s\n{}  server RSS           {} ({rss_src})\n  server counters      {}\n  verdict              {}\n",
        fmt_count(u64::from(w.tags)),
        w.duration.as_secs_f64(),
        r.text(),
        fmt_rss(rss),
        stats_line(&stats, &["points_buffered", "flushes", "backpressure_waits", "ack_p99_us"]),
        if ok { "PASS: rate kept, no errors" } else { "FAIL: rate not kept or errors" }
    );
    let mut j = r.json();
    j["scenario"] = json!("tags-100k");
    j["tags"] = json!(w.tags);
    j["server_rss_bytes"] = json!(rss);
    j["server_rss_source"] = json!(rss_src);
    j["server_stats"] = stats;
    j["ok"] = json!(ok);
    Ok(Outcome {
        name: "tags-100k".into(),
        json: j,
        text,
        ok,
    })
}

fn max_write<C: Conn>(cfg: &ScenarioConfig) -> Result<Outcome> {
    let mut w = cfg.write_cfg();
    w.client = ClientOptions::default();
    w.tags = cfg.tags.unwrap_or(100_000);
    w.rate = 0;
    w.batch = 10_000;
    w.conns = 4.min(w.tags);
    w.duration = cfg.duration.unwrap_or(Duration::from_secs(15));
    let r = write::run::<C>(&w)?;
    let (rss, rss_src) = server_rss::<C>(cfg);
    let stats = total_stats::<C>(cfg);
    let ok = r.error_count() == 0 && r.points_acked > 0;
    let text = format!(
        "scenario max-write: {} tags, {} connections, batches of {}, as fast as acknowledged\n{}  server RSS           {} ({rss_src})\n  server counters      {}\n",
        fmt_count(u64::from(w.tags)),
        w.conns,
        fmt_count(u64::from(w.batch)),
        r.text(),
        fmt_rss(rss),
        stats_line(&stats, &["wal_syncs", "wal_group_avg", "flushes", "backpressure_waits"])
    );
    let mut j = r.json();
    j["scenario"] = json!("max-write");
    j["tags"] = json!(w.tags);
    j["conns"] = json!(w.conns);
    j["batch"] = json!(w.batch);
    j["server_rss_bytes"] = json!(rss);
    j["ok"] = json!(ok);
    Ok(Outcome {
        name: "max-write".into(),
        json: j,
        text,
        ok,
    })
}

fn query_blocks<C: Conn>(cfg: &ScenarioConfig) -> Result<Outcome> {
    let mut q = QueryConfig::new(&cfg.addr);
    q.client = cfg.client.clone();
    q.blocks = cfg.blocks.clone();
    q.tags = cfg.query_tags;
    q.prepare = !cfg.no_prepare;
    q.cpu = cfg.cpus[0];
    q.progress = cfg.progress;
    q.json = cfg.json;
    let r = query::run::<C>(&q)?;
    let ok = r
        .sizes
        .iter()
        .all(|s| s.errors == 0 && s.min_points >= s.expected_points);
    let text = format!(
        "scenario query-blocks: range queries over {} tag(s), {} blocks of {} points (original design: 100 blocks in 13 ms on 8 threads)\n{}",
        q.tags,
        q.blocks.iter().map(|b| b.to_string()).collect::<Vec<_>>().join("/"),
        q.points_per_block,
        r.text()
    );
    let mut j = r.json();
    j["scenario"] = json!("query-blocks");
    j["ok"] = json!(ok);
    Ok(Outcome {
        name: "query-blocks".into(),
        json: j,
        text,
        ok,
    })
}

fn flush_storm<C: Conn>(cfg: &ScenarioConfig) -> Result<Outcome> {
    let tags = cfg.tags.unwrap_or(100_000);
    let ppt = cfg.points_per_tag.max(1);
    let total = u64::from(tags) * u64::from(ppt);
    // The probe: 1,000 tags at 1 Hz on its own tags. Every probe ack is kept
    // with its time and classified afterwards (see `FlushMonitor`): alone
    // (3 s before the fill), under the fill, while the server was flushing,
    // after the fill.
    let mut probe = cfg.write_cfg();
    probe.tags = 1_000;
    probe.tag_base = 3_000_000;
    probe.rate = 1_000;
    probe.batch = 100;
    probe.conns = 1;
    probe.duration = Duration::from_secs(24 * 3600);
    probe.progress = false;
    let before = total_stats::<C>(cfg);
    let probe_live = Live::new(1);
    probe_live.keep_samples.store(true, Ordering::Relaxed);
    let mon = Arc::new(FlushMonitor::default());
    let monitor = {
        let (m, addr, cpu) = (mon.clone(), cfg.addr.clone(), cfg.cpus[0]);
        let opts = cfg.client.clone();
        LocalExecutorBuilder::new(Placement::Fixed(cpu))
            .name("xtdb-flush-monitor")
            .io_memory(1 << 20)
            .spawn(move || async move { awake(m.run::<C>(&addr, &opts)).await })
            .map_err(Error::from)?
    };
    let probe_thread = {
        let (p, l) = (probe.clone(), probe_live.clone());
        std::thread::spawn(move || write::run_with::<C>(&p, l))
    };
    std::thread::sleep(Duration::from_secs(3));
    let mut fill = cfg.write_cfg();
    fill.tags = tags;
    fill.tag_base = 2_000_000;
    fill.rate = 0;
    fill.batch = 10_000;
    fill.conns = 4.min(tags);
    fill.max_ticks = Some(u64::from(ppt));
    fill.duration = cfg.duration.unwrap_or(Duration::from_secs(3600));
    fill.period_us = Some(1_000_000);
    fill.t0 = Some(gen::now_us_rounded(1_000_000) - i64::from(ppt) * 1_000_000);
    let fill_start = Instant::now();
    let fill_res = write::run_with::<C>(&fill, Live::new(1));
    let fill_end = Instant::now();
    let fill_s = (fill_end - fill_start).as_secs_f64();
    // Writes continue (the probe) until the server has finished no flush
    // round for 3 s, at most 120 s.
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let since_fill = fill_end.elapsed();
        let quiet = mon
            .since_last_flush()
            .is_none_or(|d| d >= Duration::from_secs(3));
        if (quiet && since_fill >= Duration::from_secs(3)) || since_fill >= Duration::from_secs(120)
        {
            break;
        }
    }
    let tail_s = fill_end.elapsed().as_secs_f64();
    probe_live.stop.store(true, Ordering::Relaxed);
    mon.stop.store(true, Ordering::Relaxed);
    let probe_res = probe_thread
        .join()
        .map_err(|_| Error::Config("probe writer thread panicked".into()))?;
    let _ = monitor.join();
    let fill_r = fill_res?;
    let probe_r = probe_res?;
    let after = total_stats::<C>(cfg);
    let delta = |k: &str| -> Option<u64> {
        Some(
            after
                .get(k)?
                .as_u64()?
                .saturating_sub(before.get(k)?.as_u64()?),
        )
    };
    let (flushes, flush_us, bp) = (
        delta("flushes"),
        delta("flush_micros"),
        delta("backpressure_waits"),
    );
    // Classify the probe's samples: a sample covers [ack - latency, ack].
    let intervals = mon.intervals.lock().map(|v| v.clone()).unwrap_or_default();
    let samples = probe_live
        .samples
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default();
    let mut hists: Vec<_> = (0..4).map(|_| report::new_hist()).collect();
    for (ack, us) in samples {
        let sent = ack.checked_sub(Duration::from_micros(us)).unwrap_or(ack);
        let class = if intervals.iter().any(|&(a, b)| sent <= b && ack >= a) {
            2
        } else if ack < fill_start {
            0
        } else if sent <= fill_end {
            1
        } else {
            3
        };
        report::record(&mut hists[class], us);
    }
    let [idle, steady, storm, after_fill] = [0, 1, 2, 3].map(|i| Latency::of(&hists[i]));
    let seen = mon.counter_seen.load(Ordering::Relaxed);
    let flush_window_s: f64 = intervals.iter().map(|(a, b)| (*b - *a).as_secs_f64()).sum();
    let worst_fill_second = fill_r.timeline.iter().map(|s| s.p99).max().unwrap_or(0);
    let ok = fill_r.error_count() == 0 && probe_r.error_count() == 0;
    let text = format!(
        "scenario flush-storm: fill {} tags × {} points ({} points) as fast as acknowledged, probe 1,000 tags at 1 Hz\n  fill                 {} points in {:.1} s = {} points/s, ack {}\n  fill worst 1-s p99   {}\n  probe alone          {}\n  probe under fill     {}\n  probe while flushing {}\n  probe after fill     {} ({:.1} s until no flush for 3 s)\n  probe errors         {}  fill errors {}\n  server during run    flush rounds {}, flush time {} ({} rounds seen, {:.1} s), backpressure waits {}\n  (original design: writes stall for seconds during a flush storm)\n",
        fmt_count(u64::from(tags)),
        fmt_count(u64::from(ppt)),
        fmt_count(total),
        fmt_count(fill_r.points_acked),
        fill_s,
        fmt_count(fill_r.points_per_sec.round() as u64),
        fill_r.latency.line(),
        fmt_us(worst_fill_second),
        idle.line(),
        steady.line(),
        if seen {
            storm.line()
        } else {
            "n/a (server exposes no flush_micros counter)".into()
        },
        after_fill.line(),
        tail_s,
        probe_r.error_count(),
        fill_r.error_count(),
        flushes.map_or("n/a".into(), fmt_count),
        flush_us.map_or("n/a".into(), fmt_us),
        intervals.len(),
        flush_window_s,
        bp.map_or("n/a".into(), fmt_count)
    );
    let j = json!({
        "scenario": "flush-storm",
        "tags": tags,
        "points_per_tag": ppt,
        "fill": fill_r.json(),
        "fill_worst_second_p99_us": worst_fill_second,
        "probe": probe_r.json(),
        "probe_alone_latency_us": idle.json(),
        "probe_steady_latency_us": steady.json(),
        "probe_storm_latency_us": storm.json(),
        "probe_after_fill_latency_us": after_fill.json(),
        "flush_detected_by_counter": seen,
        "flush_window_s": flush_window_s,
        "tail_s": tail_s,
        "server_flushes": flushes,
        "server_flush_micros": flush_us,
        "server_backpressure_waits": bp,
        "ok": ok,
    });
    Ok(Outcome {
        name: "flush-storm".into(),
        json: j,
        text,
        ok,
    })
}

/// Reconstructs when the server was flushing: polls `total.flush_micros`
/// every 200 ms on its own connection; when it grew by `d` since the last
/// poll, a flush ran for `d` ending at most at this poll, so `[now - d, now]`
/// is recorded (a round that ended before the poll makes the window slightly
/// late, by at most one poll interval).
#[derive(Debug, Default)]
struct FlushMonitor {
    stop: AtomicBool,
    counter_seen: AtomicBool,
    intervals: Mutex<Vec<(Instant, Instant)>>,
}

impl FlushMonitor {
    fn since_last_flush(&self) -> Option<Duration> {
        let v = self.intervals.lock().ok()?;
        v.last().map(|(_, b)| b.elapsed())
    }

    async fn run<C: Conn>(&self, addr: &str, opts: &ClientOptions) {
        let mut conn: Option<C> = None;
        let mut prev: Option<u64> = None;
        while !self.stop.load(Ordering::Relaxed) {
            if conn.is_none() {
                conn = C::connect(addr, opts).await.ok();
            }
            if let Some(c) = conn.as_mut() {
                match c.stats().await {
                    Ok(stats) => {
                        let now = Instant::now();
                        let micros = stats
                            .iter()
                            .find(|(k, _)| k == "total.flush_micros")
                            .map(|(_, v)| *v);
                        if let Some(m) = micros {
                            self.counter_seen.store(true, Ordering::Relaxed);
                            if let Some(p) = prev.filter(|p| m > *p) {
                                let d = Duration::from_micros(m - p);
                                let a = now.checked_sub(d).unwrap_or(now);
                                if let Ok(mut v) = self.intervals.lock() {
                                    v.push((a, now));
                                }
                            }
                            prev = Some(m);
                        }
                    }
                    Err(_) => conn = None,
                }
            }
            glommio::timer::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn recovery<C: Conn>(cfg: &ScenarioConfig) -> Result<Outcome> {
    let bin = match &cfg.server_bin {
        Some(b) => b.clone(),
        None => server::ensure_server_binary()?,
    };
    let tmp = server::temp_dir("xtdb-recovery")?;
    let data_dir = cfg.data_dir.clone().unwrap_or_else(|| tmp.join("data"));
    let ack_log = tmp.join("acks.log");
    let spec = ServerSpec {
        bin,
        data_dir,
        listen: cfg.addr.clone(),
        sync: "always".into(),
        pin_cpu: cfg.server_cpu,
        log: tmp.join("server.log"),
        args: Vec::new(),
    };
    let res = recovery_inner::<C>(cfg, &spec, &ack_log);
    if res.as_ref().is_ok_and(|o| o.ok) && cfg.data_dir.is_none() {
        server::remove_dir(&tmp);
    } else {
        log::info!("recovery: keeping {} for inspection", tmp.display());
    }
    res
}

fn recovery_inner<C: Conn>(
    cfg: &ScenarioConfig,
    spec: &ServerSpec,
    ack_log: &std::path::Path,
) -> Result<Outcome> {
    let first = ServerProcess::start(spec, Duration::from_secs(60))?;
    let write_s = cfg.duration.unwrap_or(Duration::from_secs(20));
    let mut w = cfg.write_cfg();
    w.client = ClientOptions::default();
    w.tags = cfg.tags.unwrap_or(100_000);
    w.rate = 0;
    w.batch = 10_000;
    w.conns = 4.min(w.tags);
    w.duration = write_s + Duration::from_secs(2);
    w.ack_log = Some(ack_log.to_path_buf());
    let live = Live::new(1);
    let writer = {
        let (w, l) = (w.clone(), live.clone());
        std::thread::spawn(move || write::run_with::<C>(&w, l))
    };
    std::thread::sleep(write_s);
    let acked_at_kill = live.acked.load(Ordering::Relaxed);
    // With SIGTERM: what the shards hold in buffers (the WAL has it; a
    // clean stop must not rewrite it into blocks), then the timed exit.
    let term = if cfg.sigterm {
        let buffered = fetch_stats::<C>(&cfg.addr, &ClientOptions::default(), cfg.cpus[0])
            .ok()
            .map(|s| {
                let get = |k: &str| s.iter().find(|(n, _)| n == k).map_or(0, |(_, v)| *v);
                (get("total.points_buffered"), get("total.buffered_bytes"))
            });
        let (clean, took) = first.stop(Duration::from_secs(30));
        Some((buffered, clean, took))
    } else {
        first.kill9();
        None
    };
    let writer_res = writer
        .join()
        .map_err(|_| Error::Config("writer thread panicked".into()))?;
    let wr = writer_res?;
    let wal_bytes = dir_size(&spec.data_dir);
    // Restart on the same address. If the server refuses it because the
    // port is still taken (sockets of the killed process in TIME_WAIT),
    // say so and restart on a fresh port: recovery time is what we measure.
    let (second, port_note) = match ServerProcess::start(spec, Duration::from_secs(600)) {
        Ok(p) => (p, None),
        Err(e) => {
            let log = std::fs::read_to_string(&spec.log).unwrap_or_default();
            if !log.contains("Address already in use") {
                return Err(e);
            }
            let mut s2 = spec.clone();
            s2.listen = format!("127.0.0.1:{}", server::free_port()?);
            let note = format!(
                "restart on {} refused (address already in use right after kill -9); restarted on {}",
                spec.listen, s2.listen
            );
            log::warn!("recovery: {note}");
            (
                ServerProcess::start(&s2, Duration::from_secs(600))?,
                Some((note, s2.listen)),
            )
        }
    };
    let addr2 = port_note.as_ref().map_or(cfg.addr.clone(), |n| n.1.clone());
    let ready = second.ready_after;
    let vr = verify::run::<C>(&VerifyConfig {
        addr: addr2,
        client: ClientOptions::default(),
        ack_log: ack_log.to_path_buf(),
        conns: 4,
        chunk: 50_000,
        cpu: cfg.cpus[0],
    });
    let (clean, stop_t) = second.stop(Duration::from_secs(30));
    let vr = vr?;
    let ok = vr.ok() && vr.points_checked > 0 && term.as_ref().is_none_or(|t| t.1);
    let term_text = match &term {
        None => String::new(),
        Some((buffered, clean, took)) => format!(
            "  SIGTERM to exit      {}{} ({})\n",
            fmt_us(took.as_micros() as u64),
            if *clean {
                ""
            } else {
                " (did not exit: killed)"
            },
            buffered.map_or("buffers unknown".into(), |(p, t)| format!(
                "{} points buffered ({:.1} MiB) at SIGTERM",
                fmt_count(p),
                t as f64 / (1 << 20) as f64
            ))
        ),
    };
    let text = format!(
        "scenario recovery: write {} tags at full speed, {} after {:.0} s, restart, verify\n  acknowledged         {} points ({} when stopped), {} points/s\n{}  data dir after stop  {}\n  restart to ready     {}{}\n{}  clean shutdown       {} ({})\n",
        fmt_count(u64::from(w.tags)),
        if term.is_some() { "SIGTERM" } else { "kill -9" },
        write_s.as_secs_f64(),
        fmt_count(wr.points_acked),
        fmt_count(acked_at_kill),
        fmt_count(wr.points_per_sec.round() as u64),
        term_text,
        wal_bytes.map_or("n/a".into(), |b| format!("{:.1} MiB", b as f64 / (1 << 20) as f64)),
        fmt_us(ready.as_micros() as u64),
        port_note.as_ref().map_or(String::new(), |n| format!(" (note: {})", n.0)),
        vr.text(),
        if clean { "yes" } else { "NO (SIGKILL after 30 s)" },
        fmt_us(stop_t.as_micros() as u64)
    );
    let j = json!({
        "scenario": "recovery",
        "write": wr.json(),
        "points_acked_at_kill": acked_at_kill,
        "sigterm": term.as_ref().map(|(b, clean, took)| json!({
            "exit_s": took.as_secs_f64(),
            "clean": clean,
            "points_buffered": b.map(|x| x.0),
            "buffered_bytes": b.map(|x| x.1),
        })),
        "data_dir_bytes": wal_bytes,
        "restart_ready_ms": ready.as_secs_f64() * 1e3,
        "restart_note": port_note.map(|n| n.0),
        "verify": vr.json(),
        "clean_shutdown": clean,
        "ok": ok,
    });
    Ok(Outcome {
        name: "recovery".into(),
        json: j,
        text,
        ok,
    })
}

fn dir_size(p: &std::path::Path) -> Option<u64> {
    let mut total = 0;
    for e in std::fs::read_dir(p).ok()? {
        let e = e.ok()?;
        let m = e.metadata().ok()?;
        total += if m.is_dir() {
            dir_size(&e.path()).unwrap_or(0)
        } else {
            m.len()
        };
    }
    Some(total)
}

/// Well-behaved HTTP clients alone, then beside hostile ones
/// ([`crate::load::hostile`]). Passes when nothing acknowledged is lost,
/// no well-behaved request failed, and their p99 under attack is under
/// 50 ms.
fn hostile(cfg: &ScenarioConfig) -> Result<Outcome> {
    use std::net::ToSocketAddrs;
    let http = cfg
        .http
        .as_deref()
        .ok_or_else(|| Error::Config("scenario hostile needs --http ADDR".into()))?;
    let addr = http
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| Error::Config(format!("cannot resolve --http {http:?}")))?;
    let hc = crate::load::hostile::HostileConfig {
        http: addr,
        phase: cfg.duration.unwrap_or(Duration::from_secs(20)),
        seed: cfg.seed,
        attackers: 8,
        big_points: 2_000_000,
        // One kind of attack alone, to tell which one costs what.
        only: std::env::var("XTDB_HOSTILE_ONLY")
            .ok()
            .and_then(|v| v.parse().ok()),
    };
    let r = crate::load::hostile::run(&hc).map_err(Error::Config)?;
    let ok = r.lost_points == 0
        && r.write.iter().chain(&r.read).all(|l| l.failed == 0)
        && r.write[1].p99_us < 50_000
        && r.read[1].p99_us < 50_000;
    Ok(Outcome {
        name: "hostile".into(),
        json: r.json(),
        text: format!("scenario hostile against http://{addr}\n{}", r.text()),
        ok,
    })
}
