//! `summarize`: turns the `--json` objects of `scenario` runs into one
//! markdown table (used by `scripts/bench.sh`). Reads JSON, prints text;
//! a missing field shows as `n/a`, never as a made-up number.

use serde_json::Value;

use crate::load::report::{fmt_count, fmt_us};

fn us(v: &Value) -> String {
    v.as_u64().map_or("n/a".into(), fmt_us)
}

fn count(v: &Value) -> String {
    v.as_f64()
        .map_or("n/a".into(), |f| fmt_count(f.max(0.0).round() as u64))
}

fn rows(v: &Value) -> Vec<[String; 3]> {
    let mut r = Vec::new();
    let name = v["scenario"].as_str().unwrap_or("?").to_string();
    let mut row = |metric: &str, value: String, design: &str| {
        r.push([format!("{name}: {metric}"), value, design.to_string()]);
    };
    match name.as_str() {
        "tags-100k" => {
            row(
                "points/s acknowledged",
                count(&v["points_per_sec"]),
                "100K/s sustained",
            );
            row(
                "target rate kept",
                v["rate_kept"]
                    .as_bool()
                    .map_or("n/a".into(), |b| if b { "yes" } else { "NO" }.into()),
                "without client timeouts",
            );
            row(
                "ack p50 / p99 / max",
                format!(
                    "{} / {} / {}",
                    us(&v["latency_us"]["p50"]),
                    us(&v["latency_us"]["p99"]),
                    us(&v["latency_us"]["max"])
                ),
                "",
            );
            row(
                "server RSS",
                v["server_rss_bytes"]
                    .as_u64()
                    .map_or("n/a".into(), |b| format!("{:.0} MiB", b as f64 / 1048576.0)),
                "",
            );
            row("errors", count(&v["error_count"]), "");
        }
        "max-write" => {
            row(
                "points/s acknowledged",
                count(&v["points_per_sec"]),
                "20K/s → 1-3 M/s claimed",
            );
            row(
                "ack p50 / p99",
                format!(
                    "{} / {}",
                    us(&v["latency_us"]["p50"]),
                    us(&v["latency_us"]["p99"])
                ),
                "",
            );
            row("errors", count(&v["error_count"]), "");
        }
        "query-blocks" => {
            let design = |b: u64| match b {
                10 => "10 ms → 1.5 ms",
                100 => "100 ms → 13 ms (8 threads)",
                500 => "500 ms → 65 ms",
                _ => "",
            };
            for s in v["range"].as_array().into_iter().flatten() {
                let b = s["blocks"].as_u64().unwrap_or(0);
                let complete = if s["complete"].as_bool() == Some(false) {
                    " (data incomplete)"
                } else {
                    ""
                };
                row(
                    &format!("{b} blocks p50 / p99"),
                    format!(
                        "{} / {}{complete}",
                        us(&s["latency_us"]["p50"]),
                        us(&s["latency_us"]["p99"])
                    ),
                    design(b),
                );
                row(
                    &format!("{b} blocks points/s scanned"),
                    count(&s["points_per_sec"]),
                    "",
                );
            }
            if v["latest"].is_object() {
                row(
                    "latest-value p50 / p99",
                    format!(
                        "{} / {}",
                        us(&v["latest"]["latency_us"]["p50"]),
                        us(&v["latest"]["latency_us"]["p99"])
                    ),
                    "",
                );
            }
        }
        "flush-storm" => {
            row(
                "fill",
                format!(
                    "{} tags × {} points at {} points/s",
                    count(&v["tags"]),
                    count(&v["points_per_tag"]),
                    count(&v["fill"]["points_per_sec"])
                ),
                "100K tags × 1,000: flush 3.2 s sequential",
            );
            row(
                "probe write p99 alone / under fill / while flushing / after",
                format!(
                    "{} / {} / {} / {}",
                    us(&v["probe_alone_latency_us"]["p99"]),
                    us(&v["probe_steady_latency_us"]["p99"]),
                    us(&v["probe_storm_latency_us"]["p99"]),
                    us(&v["probe_after_fill_latency_us"]["p99"])
                ) + &format!(
                    " ({} probe batches while flushing)",
                    count(&v["probe_storm_latency_us"]["count"])
                ),
                "writes stall for seconds",
            );
            row(
                "probe write max while flushing",
                us(&v["probe_storm_latency_us"]["max"]),
                "",
            );
            row(
                "server flush rounds / flush time during run",
                format!(
                    "{} / {}",
                    count(&v["server_flushes"]),
                    us(&v["server_flush_micros"])
                ),
                "0.2 s with 16 threads → 0.05 s projected",
            );
        }
        "recovery" => {
            row(
                "points acknowledged before kill -9",
                count(&v["write"]["points_acked"]),
                "",
            );
            row(
                "data dir at kill",
                v["data_dir_bytes"]
                    .as_u64()
                    .map_or("n/a".into(), |b| format!("{:.0} MiB", b as f64 / 1048576.0)),
                "",
            );
            row(
                "restart to ready",
                v["restart_ready_ms"]
                    .as_f64()
                    .map_or("n/a".into(), |m| format!("{m:.0} ms")),
                "",
            );
            row(
                "restart note",
                v["restart_note"].as_str().unwrap_or("none").to_string(),
                "",
            );
            row(
                "verify: checked / missing / changed",
                format!(
                    "{} / {} / {}",
                    count(&v["verify"]["points_checked"]),
                    count(&v["verify"]["missing"]),
                    count(&v["verify"]["mismatched"])
                ),
                "no acknowledged point lost",
            );
        }
        _ => {}
    }
    r
}

/// A markdown table of the scenario results in `objects`.
pub fn markdown(objects: &[Value]) -> String {
    let mut s = String::from("| scenario: metric | measured | original design |\n|---|---:|---|\n");
    for v in objects {
        for [a, b, c] in rows(v) {
            s += &format!("| {a} | {b} | {c} |\n");
        }
        if v["ok"].as_bool() == Some(false) {
            s += &format!(
                "| {}: **check failed** | see its report | |\n",
                v["scenario"].as_str().unwrap_or("?")
            );
        }
    }
    s
}
