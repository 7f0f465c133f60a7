//! Reporting: latency histograms (µs, HdrHistogram), the per-second progress
//! line, human-readable numbers and the `--json` objects. Pure formatting: it
//! never talks to the server.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// A latency histogram in microseconds, 1 µs .. 1 h, 3 significant digits.
pub fn new_hist() -> Histogram<u64> {
    // Bounds are constants that hdrhistogram accepts; the fallback only
    // exists to avoid a panic path.
    Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

/// Records `us` (clamped into the histogram's range).
pub fn record(h: &mut Histogram<u64>, us: u64) {
    let _ = h.record(us.clamp(1, 3_600_000_000));
}

/// Latency percentiles in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Latency {
    /// Number of samples.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest sample.
    pub max: u64,
    /// Mean.
    pub mean: f64,
}

impl Latency {
    /// Summarises `h` (all zeros when empty).
    pub fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }

    /// `{"p50":..,"p90":..,"p99":..,"p999":..,"max":..,"mean":..,"count":..}` in µs.
    pub fn json(&self) -> Value {
        json!({
            "p50": self.p50, "p90": self.p90, "p99": self.p99,
            "p999": self.p999, "max": self.max,
            "mean": (self.mean * 10.0).round() / 10.0, "count": self.count,
        })
    }

    /// `p50 1.2 ms  p90 ..  p99 ..  p99.9 ..  max ..`
    pub fn line(&self) -> String {
        format!(
            "p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            fmt_us(self.p50),
            fmt_us(self.p90),
            fmt_us(self.p99),
            fmt_us(self.p999),
            fmt_us(self.max)
        )
    }
}

/// `1234567` → `1,234,567`.
pub fn fmt_count(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Microseconds as `850 µs`, `12.3 ms` or `4.56 s`.
pub fn fmt_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us} µs")
    } else if us < 1_000_000 {
        format!("{:.2} ms", us as f64 / 1e3)
    } else {
        format!("{:.2} s", us as f64 / 1e6)
    }
}

/// Per-second progress: a self-overwriting line on a terminal, plain lines
/// otherwise (or on stderr when stdout carries `--json`).
#[derive(Debug)]
pub struct Progress {
    tty: bool,
    to_stderr: bool,
    quiet: bool,
    start: Instant,
    wrote: bool,
}

impl Progress {
    /// Progress to stdout, or to stderr when `json` (stdout then only carries
    /// the JSON object); nothing when `quiet`.
    pub fn new(json: bool, quiet: bool) -> Self {
        let tty = if json {
            std::io::stderr().is_terminal()
        } else {
            std::io::stdout().is_terminal()
        };
        Progress {
            tty,
            to_stderr: json,
            quiet,
            start: Instant::now(),
            wrote: false,
        }
    }

    /// Prints one progress line (prefixed with the elapsed seconds).
    pub fn line(&mut self, text: &str) {
        if self.quiet {
            return;
        }
        let s = format!("[{:>5.0}s] {text}", self.start.elapsed().as_secs_f64());
        let out: &mut dyn Write = if self.to_stderr {
            &mut std::io::stderr()
        } else {
            &mut std::io::stdout()
        };
        if self.tty {
            let _ = write!(out, "\r\x1b[2K{s}");
            self.wrote = true;
        } else {
            let _ = writeln!(out, "{s}");
        }
        let _ = out.flush();
    }

    /// Ends a self-overwriting line so the report starts on a fresh line.
    pub fn finish(&mut self) {
        if self.tty && self.wrote && !self.quiet {
            if self.to_stderr {
                eprintln!();
            } else {
                println!();
            }
            self.wrote = false;
        }
    }
}

/// Prints `v` as one line on stdout (the `--json` contract: the last line of
/// stdout is one JSON object).
pub fn print_json(v: &Value) {
    println!("{v}");
}

/// `VmRSS` of process `pid` in bytes, from `/proc/PID/status`.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
