//! `verify`: reads back every point the ack log says was acknowledged and
//! compares it bit for bit with the recomputed point.
//!
//! The expected set is built per tag as `(timestamp, group)` pairs (16 bytes
//! per acknowledged point; if two groups wrote the same tag and timestamp, the
//! one declared later in the log wins, as the later write would on the
//! server). Each tag is then read with range queries of at most
//! `chunk` expected points, by `conns` connections in parallel, and walked in
//! timestamp order: an expected timestamp that is absent is *missing*, one
//! whose point differs is *mismatched*. Points the server returns that the
//! log does not mention are counted as *unlogged* but are not an error (a
//! batch can be durable on the server yet its ack lost when the generator or
//! server was killed).

use std::cell::Cell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::load::acklog::AckLog;
use crate::load::conn::{error_kind, Conn};
use crate::load::gen::{self, Group};
use crate::load::report::fmt_count;
use crate::net::ClientOptions;
use crate::Point;

/// What to verify, against which server.
#[derive(Clone, Debug)]
pub struct VerifyConfig {
    /// Server address.
    pub addr: String,
    /// Token and TLS.
    pub client: ClientOptions,
    /// The ack log written by `write`.
    pub ack_log: PathBuf,
    /// Parallel connections.
    pub conns: u32,
    /// Largest number of expected points per range query.
    pub chunk: usize,
    /// CPU to pin the verifier to.
    pub cpu: usize,
}

/// The outcome of a verification.
#[derive(Clone, Debug, Default)]
pub struct VerifyReport {
    /// Acknowledged points looked for.
    pub points_checked: u64,
    /// Acknowledged points the server did not return.
    pub missing: u64,
    /// Acknowledged points returned with a different value or quality.
    pub mismatched: u64,
    /// Points returned inside the checked ranges that the log does not list.
    pub unlogged: u64,
    /// Tags checked.
    pub tags: u64,
    /// Range queries issued.
    pub queries: u64,
    /// Range queries that failed (their points count as unchecked).
    pub query_errors: u64,
    /// Points left unchecked because their query failed.
    pub unchecked: u64,
    /// Ack-log lines skipped as corrupt.
    pub bad_lines: usize,
    /// Whether the log ended in a torn line (ignored).
    pub torn_tail: bool,
    /// Up to 20 examples of problems.
    pub examples: Vec<String>,
    /// Seconds taken by the read-back.
    pub elapsed_s: f64,
}

impl VerifyReport {
    /// True when every acknowledged point was read back unchanged.
    pub fn ok(&self) -> bool {
        self.missing == 0 && self.mismatched == 0 && self.query_errors == 0 && self.unchecked == 0
    }

    /// The `--json` object.
    pub fn json(&self) -> Value {
        json!({
            "ok": self.ok(),
            "points_checked": self.points_checked,
            "missing": self.missing,
            "mismatched": self.mismatched,
            "unlogged": self.unlogged,
            "tags": self.tags,
            "queries": self.queries,
            "query_errors": self.query_errors,
            "unchecked": self.unchecked,
            "acklog_bad_lines": self.bad_lines,
            "acklog_torn_tail": self.torn_tail,
            "examples": self.examples,
            "elapsed_s": (self.elapsed_s * 1000.0).round() / 1000.0,
        })
    }

    /// The human-readable report.
    pub fn text(&self) -> String {
        let mut s = format!(
            "  points checked  {} on {} tags ({} range queries, {:.2} s)\n  missing         {}\n  mismatched      {}\n  unlogged        {} (present on the server, not in the ack log: not an error)\n",
            fmt_count(self.points_checked),
            fmt_count(self.tags),
            fmt_count(self.queries),
            self.elapsed_s,
            fmt_count(self.missing),
            fmt_count(self.mismatched),
            fmt_count(self.unlogged),
        );
        if self.query_errors > 0 {
            s += &format!(
                "  query errors    {} ({} points unchecked)\n",
                self.query_errors,
                fmt_count(self.unchecked)
            );
        }
        if self.bad_lines > 0 || self.torn_tail {
            s += &format!(
                "  ack log         {} corrupt line(s) skipped, torn last line: {}\n",
                self.bad_lines,
                if self.torn_tail {
                    "yes (ignored)"
                } else {
                    "no"
                }
            );
        }
        for e in &self.examples {
            s += &format!("    {e}\n");
        }
        s += if self.ok() {
            "  result          OK: every acknowledged point is present and unchanged\n"
        } else {
            "  result          FAILED\n"
        };
        s
    }
}

/// A run of consecutive ticks `k0..=k1` of one tag, written by one group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// Index into [`AckLog::groups`].
    pub group: u32,
    /// First tick.
    pub k0: u64,
    /// Last tick (inclusive).
    pub k1: u64,
}

/// The acknowledged ticks of every tag as runs, merged as they are read
/// (a steady writer leaves one run per tag however long it ran), so even a
/// log of hundreds of millions of points takes little memory.
pub fn expected_spans(log: &AckLog) -> HashMap<u32, Vec<Span>> {
    let mut m: HashMap<u32, Vec<Span>> = HashMap::new();
    for b in &log.batches {
        let Some(g) = log.groups.get(b.group) else {
            continue;
        };
        let n = u64::from(g.n_tags);
        let touched = b.count.min(n);
        for k in 0..touched {
            let off = ((b.first % n) + k) % n;
            let tag = g.tag_lo + off as u32;
            let Some((k0, k1)) = g.ticks_of_tag(tag, b.first, b.count) else {
                continue;
            };
            let v = m.entry(tag).or_default();
            let group = b.group as u32;
            match v.last_mut() {
                Some(last) if last.group == group && last.k1.checked_add(1) == Some(k0) => {
                    last.k1 = k1
                }
                _ => v.push(Span { group, k0, k1 }),
            }
        }
    }
    m
}

/// Expands `spans` into `(timestamp, group)` pairs sorted by timestamp, one
/// per timestamp: when several groups wrote the same timestamp, the group
/// declared later in the log wins.
pub fn expand(spans: &[Span], groups: &[Group]) -> Vec<(i64, u32)> {
    let mut v = Vec::with_capacity(spans.iter().map(|s| (s.k1 - s.k0 + 1) as usize).sum());
    for s in spans {
        let Some(g) = groups.get(s.group as usize) else {
            continue;
        };
        for k in s.k0..=s.k1 {
            if let Some(ts) = g.ts_of_tick(k) {
                v.push((ts, s.group));
            }
        }
    }
    v.sort_unstable();
    let mut out: Vec<(i64, u32)> = Vec::with_capacity(v.len());
    for (ts, g) in v {
        match out.last_mut() {
            Some(last) if last.0 == ts => last.1 = g,
            _ => out.push((ts, g)),
        }
    }
    out
}

/// Expected `(timestamp, group index)` pairs per tag, sorted by timestamp,
/// one entry per timestamp (the later group wins).
pub fn expected_by_tag(log: &AckLog) -> HashMap<u32, Vec<(i64, u32)>> {
    expected_spans(log)
        .into_iter()
        .map(|(t, s)| (t, expand(&s, &log.groups)))
        .collect()
}

/// Every point the log says was acknowledged, recomputed (for tests and
/// small logs; `verify` streams instead).
pub fn expected_points(log: &AckLog) -> Vec<Point> {
    let mut tags: Vec<_> = expected_by_tag(log).into_iter().collect();
    tags.sort_unstable_by_key(|t| t.0);
    let mut out = Vec::new();
    for (tag, v) in tags {
        for (ts, g) in v {
            out.push(gen::point(log.groups[g as usize].seed, tag, ts));
        }
    }
    out
}

/// Compares the server's sorted `got` with `want` (sorted by timestamp).
fn compare(tag: u32, want: &[(i64, u32)], groups: &[Group], got: &[Point], r: &mut VerifyReport) {
    let mut gi = 0;
    for &(ts, g) in want {
        while gi < got.len() && got[gi].ts < ts {
            r.unlogged += 1;
            gi += 1;
        }
        let exp = gen::point(groups[g as usize].seed, tag, ts);
        r.points_checked += 1;
        if gi < got.len() && got[gi].ts == ts {
            if got[gi] != exp {
                r.mismatched += 1;
                if r.examples.len() < 20 {
                    r.examples.push(format!(
                        "changed: tag {tag} ts {ts}: expected value {:?} quality {}, got tag {} value {:?} quality {}",
                        exp.value, exp.quality, got[gi].tag, got[gi].value, got[gi].quality
                    ));
                }
            }
            gi += 1;
        } else {
            r.missing += 1;
            if r.examples.len() < 20 {
                r.examples.push(format!("missing: tag {tag} ts {ts}"));
            }
        }
    }
    r.unlogged += (got.len() - gi.min(got.len())) as u64;
}

/// Runs `verify` with connection type `C` in one executor pinned to `cfg.cpu`.
pub fn run<C: Conn>(cfg: &VerifyConfig) -> Result<VerifyReport> {
    let log = AckLog::read(&cfg.ack_log)?;
    run_log::<C>(cfg, log)
}

/// Verifies an already parsed log.
pub fn run_log<C: Conn>(cfg: &VerifyConfig, log: AckLog) -> Result<VerifyReport> {
    let cfg = cfg.clone();
    let h = LocalExecutorBuilder::new(Placement::Fixed(cfg.cpu))
        .name("xtdb-verify")
        .io_memory(2 << 20)
        .spawn(move || async move {
            crate::storage::keepalive::awake(verify_async::<C>(&cfg, &log)).await
        })
        .map_err(Error::from)?;
    h.join().map_err(Error::from)?
}

async fn verify_async<C: Conn>(cfg: &VerifyConfig, log: &AckLog) -> Result<VerifyReport> {
    let start = Instant::now();
    // Fail fast when the server is not there at all: everything unchecked.
    let (first, connect_err) = match C::connect(&cfg.addr, &cfg.client).await {
        Ok(c) => (Some(c), None),
        Err(e) => (None, Some(format!("cannot connect to {}: {e}", cfg.addr))),
    };
    let mut work: Vec<(u32, Vec<Span>)> = expected_spans(log).into_iter().collect();
    work.sort_unstable_by_key(|w| w.0);
    let tags = work.len() as u64;
    let work = Rc::new(work);
    let next = Rc::new(Cell::new(0usize));
    let abort = Rc::new(Cell::new(connect_err.is_some()));
    let groups = Rc::new(log.groups.clone());
    let mut first = first;
    let mut tasks = Vec::new();
    for _ in 0..cfg.conns.max(1) {
        let (work, next, abort, groups) =
            (work.clone(), next.clone(), abort.clone(), groups.clone());
        let addr = cfg.addr.clone();
        let client = cfg.client.clone();
        let chunk = cfg.chunk.max(1);
        let mut conn: Option<C> = first.take();
        tasks.push(glommio::spawn_local(async move {
            let mut r = VerifyReport::default();
            while !abort.get() {
                let i = next.get();
                next.set(i + 1);
                let Some((tag, spans)) = work.get(i) else {
                    break;
                };
                let want_all = expand(spans, &groups);
                for want in want_all.chunks(chunk) {
                    if abort.get() {
                        r.unchecked += want.len() as u64;
                        continue;
                    }
                    let (lo, hi) = (want[0].0, want[want.len() - 1].0.saturating_add(1));
                    let mut got = None;
                    let mut last_err = String::new();
                    let mut connected = false;
                    for attempt in 0..3 {
                        if conn.is_none() {
                            match C::connect(&addr, &client).await {
                                Ok(c) => conn = Some(c),
                                Err(e) => {
                                    last_err = format!("connect: {e}");
                                    glommio::timer::sleep(Duration::from_millis(100 << attempt))
                                        .await;
                                    continue;
                                }
                            }
                        }
                        connected = true;
                        let Some(c) = conn.as_mut() else { continue };
                        r.queries += 1;
                        match c.range(*tag, lo, hi).await {
                            Ok(p) => {
                                got = Some(p);
                                break;
                            }
                            Err(e) => {
                                last_err = format!("{} ({e})", error_kind(&e));
                                conn = None;
                            }
                        }
                    }
                    match got {
                        Some(mut p) => {
                            // The contract says sorted; do not trust it blindly.
                            if p.windows(2).any(|w| w[0].ts > w[1].ts) {
                                p.sort_by_key(|x| x.ts);
                            }
                            compare(*tag, want, &groups, &p, &mut r)
                        }
                        None => {
                            r.query_errors += 1;
                            r.unchecked += want.len() as u64;
                            if r.examples.len() < 20 {
                                r.examples.push(format!(
                                    "query failed: tag {tag} [{lo}, {hi}): {last_err}"
                                ));
                            }
                            if !connected {
                                // The server went away: stop instead of
                                // retrying every remaining tag.
                                abort.set(true);
                            }
                        }
                    }
                }
            }
            r
        }));
    }
    let mut total = VerifyReport {
        tags,
        bad_lines: log.bad_lines.len(),
        torn_tail: log.torn_tail,
        ..Default::default()
    };
    for t in tasks {
        let r = t.await;
        total.points_checked += r.points_checked;
        total.missing += r.missing;
        total.mismatched += r.mismatched;
        total.unlogged += r.unlogged;
        total.queries += r.queries;
        total.query_errors += r.query_errors;
        total.unchecked += r.unchecked;
        for e in r.examples {
            if total.examples.len() < 20 {
                total.examples.push(e);
            }
        }
    }
    // Tags never reached because the run was aborted.
    for (_, spans) in work.iter().skip(next.get().min(work.len())) {
        total.unchecked += expand(spans, &groups).len() as u64;
    }
    if let Some(e) = connect_err {
        total.examples.push(e);
        total.query_errors += 1;
    } else if abort.get() {
        total.examples.push(format!(
            "aborted: lost the connection to {}; {} points unchecked",
            cfg.addr, total.unchecked
        ));
    }
    total.elapsed_s = start.elapsed().as_secs_f64();
    Ok(total)
}
