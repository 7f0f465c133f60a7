//! `/metrics`: every shard's storage counters (the ones the native `stats`
//! frame reports), write-ack latency summaries and the HTTP, auth and TLS
//! counters (and in cluster mode the node's cluster counters and lag
//! gauges), in the Prometheus text exposition format (version 0.0.4),
//! labelled `shard="N"`.

use std::fmt::Write as _;
use std::rc::Rc;

use super::answer::{failure_resp, Resp};
use super::{counter, HttpState};
use crate::runtime::dispatch;
use crate::runtime::report::ShardReport;

/// Counters that are levels or maxima, not monotonic counts.
const GAUGES: &[&str] = &[
    "wal_max_group",
    "flush_max_micros",
    "points_buffered",
    "buffered_bytes",
    "wal_live_bytes",
    "wal_free_bytes",
    "disk_flush_bytes",
    "disk_compacted_bytes",
    "disk_rollup_bytes",
    "disk_v1_bytes",
    "compaction_backlog_bytes",
    "chunks",
    "segments_indexed",
    "points_on_disk",
    "chunk_write_amp_x1000",
    "disk_full",
    "compaction_swap_max_micros",
    "compaction_dir_max_micros",
];

/// Renders every shard's counters.
pub async fn render(state: &Rc<HttpState>) -> Resp {
    let reports = match dispatch::reports(&state.router).await {
        Ok(r) => r,
        Err(f) => return failure_resp(&f),
    };
    let text = format_metrics(&reports);
    let mut resp = hyper::Response::new(super::answer::Body::full(text));
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    resp
}

/// The exposition text for these reports (storage and HTTP counters).
pub fn format_metrics(reports: &[ShardReport]) -> String {
    let mut out = String::new();
    let Some(first) = reports.first() else {
        return out;
    };
    for (i, (name, _)) in first.stats.fields().into_iter().enumerate() {
        let gauge = GAUGES.contains(&name);
        let metric = if gauge {
            format!("xtdb_{name}")
        } else {
            format!("xtdb_{name}_total")
        };
        let help = format!("shard storage counter {name}");
        header(
            &mut out,
            &metric,
            &help,
            if gauge { "gauge" } else { "counter" },
        );
        for r in reports {
            let v = r.stats.fields().get(i).map_or(0, |f| f.1);
            let _ = writeln!(out, "{metric}{{shard=\"{}\"}} {v}", r.shard);
        }
    }
    let m = "xtdb_write_ack_latency_microseconds";
    header(
        &mut out,
        m,
        "client write batch latency until durable (native and HTTP)",
        "summary",
    );
    for r in reports {
        summary(&mut out, m, &format!("shard=\"{}\"", r.shard), &r.ack_us);
    }
    let m = "xtdb_ack_stage_latency_microseconds";
    header(
        &mut out,
        m,
        "where a write's acknowledgement spends its time in its shard, by stage",
        "summary",
    );
    for r in reports {
        for (stage, h) in &r.ack_stages {
            let labels = format!("shard=\"{}\",stage=\"{stage}\"", r.shard);
            summary(&mut out, m, &labels, h);
        }
    }
    let m = "xtdb_uptime_seconds";
    header(&mut out, m, "time since the shard started", "gauge");
    for r in reports {
        let _ = writeln!(
            out,
            "{m}{{shard=\"{}\"}} {}",
            r.shard,
            r.uptime.as_secs_f64()
        );
    }
    let edge = counter::ALL
        .iter()
        .chain(&crate::runtime::auth::counter::ALL)
        .chain(&crate::net::tls::counter::ALL);
    for &(name, help) in edge {
        let m = format!("xtdb_{name}_total");
        header(&mut out, &m, help, "counter");
        for r in reports {
            let _ = writeln!(out, "{m}{{shard=\"{}\"}} {}", r.shard, r.counters.get(name));
        }
    }
    // Cluster mode: shard 0 carries the node's cluster counters.
    if reports
        .iter()
        .any(|r| r.counters.iter().any(|(n, _)| n.starts_with("cluster_")))
    {
        use crate::runtime::cluster::counter::{COUNTERS, GAUGES};
        for (list, gauge) in [(&COUNTERS[..], false), (&GAUGES[..], true)] {
            for &(name, help) in list {
                let m = if gauge {
                    format!("xtdb_{name}")
                } else {
                    format!("xtdb_{name}_total")
                };
                let kind = if gauge { "gauge" } else { "counter" };
                header(&mut out, &m, help, kind);
                for r in reports {
                    let _ = writeln!(out, "{m}{{shard=\"{}\"}} {}", r.shard, r.counters.get(name));
                }
            }
        }
    }
    out
}

/// One summary's quantile, sum and count lines for `labels`.
fn summary(out: &mut String, m: &str, labels: &str, h: &hdrhistogram::Histogram<u64>) {
    for q in [0.5, 0.9, 0.99, 0.999] {
        let _ = writeln!(
            out,
            "{m}{{{labels},quantile=\"{q}\"}} {}",
            h.value_at_quantile(q)
        );
    }
    let sum = h.mean() * h.len() as f64;
    let _ = writeln!(out, "{m}_sum{{{labels}}} {sum}");
    let _ = writeln!(out, "{m}_count{{{labels}}} {}", h.len());
}

/// A metric's `# HELP` and `# TYPE` lines.
fn header(out: &mut String, m: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {m} {help}");
    let _ = writeln!(out, "# TYPE {m} {kind}");
}
