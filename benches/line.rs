//! Line-protocol parse benchmark (a target, not a test): how fast
//! `parse_batch` turns InfluxDB line protocol into samples, for the lines
//! `xtdb-load --protocol influx-http` and `scripts/compare.sh` send
//! (`plant,tag=tN v=F,q=Ii TS`) and for a wider industrial shape (three
//! tags, two value fields), with `--quality-field q` as those lines
//! expect (one sample per value field). Reports the median of `--rounds` over
//! `--lines` lines in batches of `--batch`. Then the pathological line: one
//! line of `--patho-tags` tags (default 100,000, 1.4 MB), parsed with the
//! default limits (refused for its length), with the line limit lifted
//! (refused at the tag limit) and with every limit lifted but the
//! catalog's key length (all tags read and sorted, then refused for the
//! key length): wall time of each, median of `--rounds`.
//!
//! ```text
//! cargo bench --bench line
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

use clap::Parser;
use xtdb::http::line::{parse_batch, LineConfig, Precision};
use xtdb::net::limits::TimeWindow;

#[derive(Parser)]
struct Args {
    /// Lines per shape.
    #[arg(long, default_value_t = 1_000_000)]
    lines: usize,
    /// Lines per batch (one HTTP body).
    #[arg(long, default_value_t = 5_000)]
    batch: usize,
    /// Rounds (median reported).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Tags on the pathological line (0: skip it).
    #[arg(long, default_value_t = 100_000)]
    patho_tags: usize,
    /// Ignored (cargo bench passes it).
    #[arg(long, hide = true)]
    bench: bool,
}

const NOW_US: i64 = 1_767_225_600_000_000;

fn bodies(a: &Args, shape: &str) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut body = String::new();
    for i in 0..a.lines {
        let tag = i % 100_000;
        let ts_ns = (NOW_US - 3_600_000_000 + (i / 100_000) as i64 * 1_000_000) * 1000;
        let v = (i as f64 * 0.37).sin() * 100.0;
        match shape {
            "xtdb-load" => body.push_str(&format!("plant,tag=t{tag} v={v:?},q=192i {ts_ns}\n")),
            _ => body.push_str(&format!(
                "boiler,site=north,unit=u{},sensor=s{tag} temp={v:.3},pressure={:.2},q=192i {ts_ns}\n",
                tag % 40,
                v * 0.5 + 3.0
            )),
        }
        if (i + 1) % a.batch == 0 || i + 1 == a.lines {
            out.push(std::mem::take(&mut body).into_bytes());
        }
    }
    out
}

fn main() {
    let a = Args::parse();
    let window = TimeWindow::default();
    let config = LineConfig {
        quality_field: Some("q".into()),
        ..LineConfig::default()
    };
    println!("| shape | lines | bytes/line | samples/line | median ns/line | lines/s |");
    println!("|---|---|---|---|---|---|");
    for shape in ["xtdb-load", "3 tags, 2 fields"] {
        let bodies = bodies(&a, shape);
        let bytes: usize = bodies.iter().map(Vec::len).sum();
        let mut samples = 0;
        let mut times = Vec::new();
        let mut out = Vec::with_capacity(a.batch * 2);
        for _ in 0..a.rounds.max(1) {
            samples = 0;
            let t = Instant::now();
            for b in &bodies {
                out.clear();
                let r = parse_batch(b, Precision::Ns, NOW_US, &window, &config, &mut out);
                assert!(r.is_clean(), "{:?}", r.bad.first());
                samples += out.len();
                black_box(&out);
            }
            times.push(t.elapsed().as_nanos() as f64 / a.lines as f64);
        }
        times.sort_by(f64::total_cmp);
        let ns = times[times.len() / 2];
        println!(
            "| {shape} | {} | {:.1} | {:.1} | {ns:.0} | {:.0} |",
            a.lines,
            bytes as f64 / a.lines as f64,
            samples as f64 / a.lines as f64,
            1e9 / ns
        );
    }
    if a.patho_tags > 0 {
        pathological(&a, &window);
    }
}

fn pathological(a: &Args, window: &TimeWindow) {
    let mut line = String::from("m");
    for i in 0..a.patho_tags {
        line.push_str(&format!(",k{i}=v{i}"));
    }
    line.push_str(" v=1 1767225600000000000\n");
    let mut lifted = LineConfig::default();
    lifted.limits.max_line_bytes = usize::MAX;
    let mut all = lifted.clone();
    all.limits.max_tags = usize::MAX;
    println!();
    println!(
        "| one line of {} tags, {} bytes | median ms | answer |",
        a.patho_tags,
        line.len()
    );
    println!("|---|---|---|");
    for (what, config) in [
        ("default limits", LineConfig::default()),
        ("--max-line-bytes lifted", lifted),
        ("line and tag limits lifted", all),
    ] {
        let mut times = Vec::new();
        let mut answer = String::new();
        for _ in 0..a.rounds.max(1) {
            let mut out = Vec::new();
            let t = Instant::now();
            let r = parse_batch(
                line.as_bytes(),
                Precision::Ns,
                NOW_US,
                window,
                &config,
                &mut out,
            );
            times.push(t.elapsed().as_secs_f64() * 1e3);
            black_box(&out);
            answer = r.bad.first().map_or("accepted".into(), |e| {
                format!("{}...", e.message.chars().take(48).collect::<String>())
            });
        }
        times.sort_by(f64::total_cmp);
        println!("| {what} | {:.3} | {answer} |", times[times.len() / 2]);
    }
}
