//! `query`: range queries spanning a given number of blocks, and latest-value
//! queries, at a concurrency; reports latency percentiles and points scanned
//! per second. With `--mode aggregate|interpolated|plot` it instead asks
//! for aggregates computed on the server over `--span` of data (windows of
//! `--every` with `--func`, samples every `--every`, or `--pixels` plot
//! intervals) of `--query-tags` tags per request, and reports their latency
//! percentiles and rows per request; `--prepare` then writes `--span` of
//! 1 Hz data on each query tag.
//!
//! Query data lives on its own tags (`--tag-base`, default 1,000,000) at fixed
//! timestamps: tick `k` is `QUERY_T0 + k` seconds (QUERY_T0 = 2026-01-01
//! 00:00:00 UTC), seed [`QUERY_SEED`]. `--prepare` writes
//! `max(blocks) * points_per_block` points on each query tag (idempotent: the
//! same points every time). The client has no flush call, so prepare relies
//! on the server flushing a tag once its buffer holds a block's worth
//! (~960-1,000 records); all but the last partial block of each tag end up on
//! disk.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::load::conn::Conn;
use crate::load::gen;
use crate::load::report::{self, fmt_count, Latency};
use crate::load::write::{self, WriteConfig, WriteReport};
use crate::storage::keepalive::awake;

/// Timestamp of tick 0 of the query data: 2026-01-01T00:00:00Z in µs.
pub const QUERY_T0: i64 = 1_767_225_600_000_000;
/// µs between points of the query data.
pub const QUERY_PERIOD_US: i64 = 1_000_000;
/// Seed of the query data.
pub const QUERY_SEED: u64 = 0x0051_5545_5259;

/// Query benchmark settings.
#[derive(Clone, Debug)]
pub struct QueryConfig {
    /// Server address.
    pub addr: String,
    /// Token and TLS.
    pub client: crate::net::ClientOptions,
    /// Range sizes, in blocks.
    pub blocks: Vec<u32>,
    /// Points per block (the server's block holds ~960).
    pub points_per_block: u32,
    /// Number of query tags.
    pub tags: u32,
    /// First query tag.
    pub tag_base: u32,
    /// Queries per range size.
    pub iterations: u32,
    /// Queries in flight (one connection each).
    pub concurrency: u32,
    /// Latest-value queries to run (0 = none).
    pub latest_iterations: u32,
    /// Tags per latest-value query.
    pub latest_tags: u32,
    /// Write the query data first.
    pub prepare: bool,
    /// CPU to pin to.
    pub cpu: usize,
    /// Print progress.
    pub progress: bool,
    /// Progress to stderr.
    pub json: bool,
    /// What the queries ask for.
    pub mode: QueryMode,
    /// Aggregate modes: the queried span from tick 0 (µs).
    pub span_us: i64,
    /// Aggregate modes: window width or sample interval (µs).
    pub every_us: i64,
    /// Aggregate mode: the function.
    pub func: crate::aggregate::Func,
    /// Plot mode: intervals.
    pub pixels: usize,
    /// Aggregate modes: tags per request.
    pub query_tags: u32,
}

/// What `xtdb-load query` measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryMode {
    /// Raw ranges of `--blocks` blocks (and latest-value queries).
    Range,
    /// A function per window.
    Aggregate,
    /// Interpolated values (linear).
    Interpolated,
    /// Plot values.
    Plot,
}

impl QueryMode {
    /// From `--mode`.
    pub fn parse(s: &str) -> std::result::Result<QueryMode, String> {
        match s {
            "range" => Ok(QueryMode::Range),
            "aggregate" => Ok(QueryMode::Aggregate),
            "interpolated" => Ok(QueryMode::Interpolated),
            "plot" => Ok(QueryMode::Plot),
            _ => Err(format!(
                "unknown mode {s:?} (range, aggregate, interpolated, plot)"
            )),
        }
    }

    /// The name.
    pub fn name(self) -> &'static str {
        match self {
            QueryMode::Range => "range",
            QueryMode::Aggregate => "aggregate",
            QueryMode::Interpolated => "interpolated",
            QueryMode::Plot => "plot",
        }
    }
}

impl QueryConfig {
    /// Defaults for everything but the address.
    pub fn new(addr: &str) -> Self {
        QueryConfig {
            addr: addr.into(),
            client: crate::net::ClientOptions::default(),
            blocks: vec![10, 50, 100, 500],
            points_per_block: 960,
            tags: 2,
            tag_base: 1_000_000,
            iterations: 20,
            concurrency: 1,
            latest_iterations: 200,
            latest_tags: 100,
            prepare: false,
            cpu: 0,
            progress: true,
            json: false,
            mode: QueryMode::Range,
            span_us: 30 * 86_400_000_000,
            every_us: 3_600_000_000,
            func: crate::aggregate::Func::Mean,
            pixels: 1000,
            query_tags: 1,
        }
    }

    fn ticks(&self) -> u64 {
        if self.mode != QueryMode::Range {
            return (self.span_us.max(0) / QUERY_PERIOD_US) as u64;
        }
        u64::from(self.blocks.iter().copied().max().unwrap_or(0)) * u64::from(self.points_per_block)
    }

    /// The request of the aggregate modes.
    fn agg_query(&self) -> crate::runtime::command::AggQuery {
        use crate::runtime::command::AggQuery;
        let (start, end) = (QUERY_T0, QUERY_T0 + self.span_us);
        match self.mode {
            QueryMode::Interpolated => AggQuery::Interpolated {
                start,
                end: end - 1,
                every: self.every_us,
                interp: crate::aggregate::Interp::Linear,
            },
            QueryMode::Plot => AggQuery::Plot {
                start,
                end,
                pixels: self.pixels,
            },
            _ => AggQuery::Windows {
                start,
                end,
                every: self.every_us,
                offset: 0,
                func: self.func,
                fill: crate::aggregate::Fill::None,
            },
        }
    }
}

/// Results for one range size.
#[derive(Clone, Debug)]
pub struct SizeResult {
    /// Blocks spanned.
    pub blocks: u32,
    /// Points each query should return.
    pub expected_points: u64,
    /// Smallest number of points a query returned.
    pub min_points: u64,
    /// Latency per query.
    pub latency: Latency,
    /// Points returned per second of wall time.
    pub points_per_sec: f64,
    /// Queries that failed.
    pub errors: u64,
}

/// Results of the aggregate modes.
#[derive(Clone, Debug)]
pub struct AggResult {
    /// Mode.
    pub mode: QueryMode,
    /// The request, as Debug text.
    pub request: String,
    /// Tags per request.
    pub tags_per_request: u32,
    /// Rows the server could answer per request (windows, samples, at most
    /// 4 × pixels).
    pub max_rows: u64,
    /// Fewest and most rows one request answered.
    pub min_rows: u64,
    /// Most rows one request answered.
    pub rows: u64,
    /// Latency per request.
    pub latency: Latency,
    /// Requests that failed.
    pub errors: u64,
    /// The first failure's text.
    pub first_error: Option<String>,
}

/// The outcome of a query run.
#[derive(Clone, Debug)]
pub struct QueryReport {
    /// The prepare write, if any.
    pub prepare: Option<WriteReport>,
    /// The aggregate modes' results.
    pub agg: Option<AggResult>,
    /// One entry per range size.
    pub sizes: Vec<SizeResult>,
    /// Latest-value query latency, if run.
    pub latest: Option<Latency>,
    /// Failed latest-value queries.
    pub latest_errors: u64,
    /// Tags per latest-value query.
    pub latest_tags: u32,
}

impl QueryReport {
    /// The `--json` object.
    pub fn json(&self) -> Value {
        json!({
            "prepare": self.prepare.as_ref().map(|p| p.json()),
            "range": self.sizes.iter().map(|s| json!({
                "blocks": s.blocks,
                "expected_points": s.expected_points,
                "min_points": s.min_points,
                "complete": s.min_points >= s.expected_points,
                "latency_us": s.latency.json(),
                "points_per_sec": s.points_per_sec.round(),
                "errors": s.errors,
            })).collect::<Vec<_>>(),
            "latest": self.latest.map(|l| json!({
                "tags_per_query": self.latest_tags,
                "latency_us": l.json(),
                "errors": self.latest_errors,
            })),
            "aggregate": self.agg.as_ref().map(|a| json!({
                "mode": a.mode.name(),
                "request": a.request,
                "tags_per_request": a.tags_per_request,
                "max_rows": a.max_rows,
                "min_rows": a.min_rows,
                "rows": a.rows,
                "latency_us": a.latency.json(),
                "errors": a.errors,
                "first_error": a.first_error,
            })),
        })
    }

    /// The human-readable report.
    pub fn text(&self) -> String {
        let mut s = String::new();
        if let Some(p) = &self.prepare {
            s += &format!(
                "  prepared {} points in {:.2} s ({} points/s)\n",
                fmt_count(p.points_acked),
                p.elapsed_s,
                fmt_count(p.points_per_sec.round() as u64)
            );
        }
        if let Some(a) = &self.agg {
            s += &format!(
                "  {} of {} tag(s), {}\n  rows/request {}..{} (of at most {})  {}  errors {}{}\n",
                a.mode.name(),
                a.tags_per_request,
                a.request,
                fmt_count(a.min_rows),
                fmt_count(a.rows),
                fmt_count(a.max_rows),
                a.latency.line(),
                a.errors,
                a.first_error
                    .as_ref()
                    .map_or(String::new(), |e| format!(" (first: {e})"))
            );
            return s;
        }
        s += &String::from(
            "  | blocks | points/query | p50 | p90 | p99 | max | points/s scanned | errors |\n  |---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for r in &self.sizes {
            let short = if r.min_points < r.expected_points {
                format!(
                    " (expected {}: data incomplete, run with --prepare)",
                    fmt_count(r.expected_points)
                )
            } else {
                String::new()
            };
            s += &format!(
                "  | {} | {}{short} | {} | {} | {} | {} | {} | {} |\n",
                r.blocks,
                fmt_count(r.min_points),
                report::fmt_us(r.latency.p50),
                report::fmt_us(r.latency.p90),
                report::fmt_us(r.latency.p99),
                report::fmt_us(r.latency.max),
                fmt_count(r.points_per_sec.round() as u64),
                r.errors
            );
        }
        if let Some(l) = &self.latest {
            s += &format!(
                "  latest value of {} tags: {}  (errors {})\n",
                self.latest_tags,
                l.line(),
                self.latest_errors
            );
        }
        s
    }
}

/// Runs the query benchmark (preparing data first if asked).
pub fn run<C: Conn>(cfg: &QueryConfig) -> Result<QueryReport> {
    if cfg.blocks.is_empty() || cfg.tags == 0 || cfg.points_per_block == 0 {
        return Err(Error::Config(
            "--blocks, --tags and --points-per-block must be non-empty / positive".into(),
        ));
    }
    let prepare = if cfg.prepare {
        let mut w = WriteConfig::new(&cfg.addr);
        w.client = cfg.client.clone();
        w.tags = cfg.tags;
        w.tag_base = cfg.tag_base;
        w.rate = 0;
        w.batch = 10_000;
        w.conns = cfg.tags.min(4);
        w.duration = Duration::from_secs(3600);
        w.max_ticks = Some(cfg.ticks());
        w.cpus = vec![cfg.cpu];
        w.seed = QUERY_SEED;
        w.t0 = Some(QUERY_T0);
        w.period_us = Some(QUERY_PERIOD_US);
        w.progress = cfg.progress;
        w.json = cfg.json;
        let r = write::run::<C>(&w)?;
        if r.error_count() > 0 {
            return Err(Error::Config(format!(
                "preparing query data failed: {} errors ({:?})",
                r.error_count(),
                r.errors
            )));
        }
        Some(r)
    } else {
        None
    };
    let c2 = cfg.clone();
    if cfg.mode != QueryMode::Range {
        let h = LocalExecutorBuilder::new(Placement::Fixed(cfg.cpu))
            .name("xtdb-query")
            .io_memory(2 << 20)
            .spawn(move || async move { awake(agg_async::<C>(&c2)).await })
            .map_err(Error::from)?;
        let agg = h.join().map_err(Error::from)??;
        return Ok(QueryReport {
            prepare,
            agg: Some(agg),
            sizes: Vec::new(),
            latest: None,
            latest_errors: 0,
            latest_tags: 0,
        });
    }
    let h = LocalExecutorBuilder::new(Placement::Fixed(cfg.cpu))
        .name("xtdb-query")
        .io_memory(2 << 20)
        .spawn(move || async move { awake(query_async::<C>(&c2)).await })
        .map_err(Error::from)?;
    let (sizes, latest, latest_errors) = h.join().map_err(Error::from)??;
    Ok(QueryReport {
        prepare,
        agg: None,
        sizes,
        latest,
        latest_errors,
        latest_tags: cfg.latest_tags,
    })
}

type QueryOut = (Vec<SizeResult>, Option<Latency>, u64);

/// The aggregate modes: `iterations` requests over `concurrency`
/// connections, each for `query_tags` tags (rotating over the query tags).
async fn agg_async<C: Conn>(cfg: &QueryConfig) -> Result<AggResult> {
    if cfg.span_us <= 0 || cfg.every_us <= 0 || cfg.pixels == 0 || cfg.query_tags == 0 {
        return Err(Error::Config(
            "--span, --every, --pixels and --query-tags must be positive".into(),
        ));
    }
    let query = cfg.agg_query();
    let max_rows = query
        .rows_per_tag()
        .map_err(|e| Error::Config(format!("{}: {e}", query.mode())))? as u64
        * u64::from(cfg.query_tags);
    let mut conns = Vec::new();
    for _ in 0..cfg.concurrency.max(1) {
        conns.push(C::connect(&cfg.addr, &cfg.client).await?);
    }
    let next = Rc::new(RefCell::new(0u32));
    let mut tasks = Vec::new();
    for mut c in conns {
        let next = next.clone();
        let cfg = cfg.clone();
        let query = query.clone();
        tasks.push(glommio::spawn_local(async move {
            let mut h = report::new_hist();
            let (mut min_rows, mut rows, mut errors, mut first) = (u64::MAX, 0u64, 0u64, None);
            loop {
                let i = {
                    let mut n = next.borrow_mut();
                    *n += 1;
                    *n - 1
                };
                if i >= cfg.iterations {
                    break;
                }
                let tags: Vec<u32> = (0..cfg.query_tags)
                    .map(|k| cfg.tag_base + (i.wrapping_mul(cfg.query_tags) + k) % cfg.tags)
                    .collect();
                let t = Instant::now();
                match c.aggregate(&tags, &query, false).await {
                    Ok(r) => {
                        report::record(&mut h, t.elapsed().as_micros() as u64);
                        let n: u64 = r.iter().map(|v| v.len() as u64).sum();
                        min_rows = min_rows.min(n);
                        rows = rows.max(n);
                    }
                    Err(e) => {
                        errors += 1;
                        first.get_or_insert(e.to_string());
                    }
                }
            }
            (h, min_rows, rows, errors, first)
        }));
    }
    let mut h = report::new_hist();
    let (mut min_rows, mut rows, mut errors, mut first_error) = (u64::MAX, 0, 0, None);
    for t in tasks {
        let (th, mn, mx, e, f) = t.await;
        let _ = h.add(&th);
        min_rows = min_rows.min(mn);
        rows = rows.max(mx);
        errors += e;
        if first_error.is_none() {
            first_error = f;
        }
    }
    let latency = Latency::of(&h);
    if cfg.progress {
        let line = format!(
            "{}: p50 {}  p99 {}  {} rows/request",
            cfg.mode.name(),
            report::fmt_us(latency.p50),
            report::fmt_us(latency.p99),
            fmt_count(rows)
        );
        if cfg.json {
            eprintln!("{line}");
        } else {
            println!("{line}");
        }
    }
    Ok(AggResult {
        mode: cfg.mode,
        request: format!("{query:?}"),
        tags_per_request: cfg.query_tags,
        max_rows,
        min_rows: if min_rows == u64::MAX { 0 } else { min_rows },
        rows,
        latency,
        errors,
        first_error,
    })
}

async fn query_async<C: Conn>(cfg: &QueryConfig) -> Result<QueryOut> {
    let mut conns = Vec::new();
    for _ in 0..cfg.concurrency.max(1) {
        conns.push(C::connect(&cfg.addr, &cfg.client).await?);
    }
    let total_ticks = cfg.ticks();
    let mut sizes = Vec::new();
    for &b in &cfg.blocks {
        let want = u64::from(b) * u64::from(cfg.points_per_block);
        let next = Rc::new(RefCell::new(0u32));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for (ci, mut c) in std::mem::take(&mut conns).into_iter().enumerate() {
            let next = next.clone();
            let cfg = cfg.clone();
            tasks.push(glommio::spawn_local(async move {
                let mut h = report::new_hist();
                let (mut points, mut min_points, mut errors) = (0u64, u64::MAX, 0u64);
                loop {
                    let i = {
                        let mut n = next.borrow_mut();
                        *n += 1;
                        *n - 1
                    };
                    if i >= cfg.iterations {
                        break;
                    }
                    let r = gen::mix64(u64::from(b) << 32 | u64::from(i) ^ (ci as u64) << 48);
                    let tag = cfg.tag_base + (r % u64::from(cfg.tags)) as u32;
                    let room = total_ticks.saturating_sub(want);
                    let k0 = if room == 0 { 0 } else { (r >> 16) % (room + 1) };
                    let s = QUERY_T0 + k0 as i64 * QUERY_PERIOD_US;
                    let e = s + want as i64 * QUERY_PERIOD_US;
                    let t = Instant::now();
                    let res = c.range(tag, s, e).await;
                    match res {
                        Ok(p) => {
                            report::record(&mut h, t.elapsed().as_micros() as u64);
                            points += p.len() as u64;
                            min_points = min_points.min(p.len() as u64);
                        }
                        Err(_) => errors += 1,
                    }
                }
                (c, h, points, min_points, errors)
            }));
        }
        let mut h = report::new_hist();
        let (mut points, mut min_points, mut errors) = (0, u64::MAX, 0);
        for t in tasks {
            let (c, th, p, m, e) = t.await;
            conns.push(c);
            let _ = h.add(&th);
            points += p;
            min_points = min_points.min(m);
            errors += e;
        }
        let el = start.elapsed().as_secs_f64();
        let lat = Latency::of(&h);
        if cfg.progress {
            let line = format!(
                "range {b:>4} blocks: p50 {}  p99 {}  {} points/query",
                report::fmt_us(lat.p50),
                report::fmt_us(lat.p99),
                fmt_count(if min_points == u64::MAX {
                    0
                } else {
                    min_points
                })
            );
            if cfg.json {
                eprintln!("{line}");
            } else {
                println!("{line}");
            }
        }
        sizes.push(SizeResult {
            blocks: b,
            expected_points: want,
            min_points: if min_points == u64::MAX {
                0
            } else {
                min_points
            },
            latency: lat,
            points_per_sec: if el > 0.0 { points as f64 / el } else { 0.0 },
            errors,
        });
    }
    let mut latest = None;
    let mut latest_errors = 0;
    if cfg.latest_iterations > 0 {
        let tags: Vec<u32> = (0..cfg.latest_tags.max(1)).collect();
        let mut h = report::new_hist();
        if let Some(c) = conns.first_mut() {
            for _ in 0..cfg.latest_iterations {
                let t = Instant::now();
                let res = c.latest(&tags).await;
                match res {
                    Ok(_) => report::record(&mut h, t.elapsed().as_micros() as u64),
                    Err(_) => latest_errors += 1,
                }
            }
        }
        latest = Some(Latency::of(&h));
    }
    Ok((sizes, latest, latest_errors))
}
