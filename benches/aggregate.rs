//! Aggregation kernel benchmarks (targets, not tests): ns per point pushed
//! through the `Windowed` driver, as a decoder would produce them
//! (timestamps 1 s apart computed on the fly, values from a cache-resident
//! 64 Ki random-walk table, so memory bandwidth is not measured; decoding
//! itself is not included), 60 points per window, NaN-free, all good. Reports the median
//! over rounds of both the thread's CPU time (what the kernel costs; robust
//! to other processes on the machine) and wall time. Run:
//!
//! ```text
//! cargo bench --bench aggregate
//! cargo bench --bench aggregate -- --points 10000000 --rounds 5
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

use clap::Parser;
use xtdb::aggregate::{
    Accumulator, Interp, MaxAcc, MeanAcc, MinAcc, PartialAcc, StddevAcc, Summary, TwaAcc,
    WindowSpec, Windowed,
};

#[derive(Parser)]
struct Args {
    /// Points per run.
    #[arg(long, default_value_t = 10_000_000)]
    points: usize,
    /// Rounds (median reported).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Ignored (cargo bench passes it).
    #[arg(long, hide = true)]
    bench: bool,
}

const T0: i64 = 1_700_000_000_000_000;
const SEC: i64 = 1_000_000;

/// Values in the table (a power of two).
const TABLE: usize = 1 << 16;

/// A random walk (xorshift64*).
fn table() -> Vec<f64> {
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut v = 20.0;
    (0..TABLE)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            let r = (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
            v += r - 0.5;
            v
        })
        .collect()
}

/// Point `i`: 1 s apart, value from the table.
#[inline]
fn point(vals: &[f64], i: usize) -> (i64, f64) {
    (T0 + i as i64 * SEC, vals[i & (TABLE - 1)])
}

/// This thread's CPU time in ns.
fn cpu_ns() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    // SAFETY: clock_gettime writes one timespec into `t`, which we own.
    #[allow(unsafe_code)]
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t)
    };
    t.tv_sec as f64 * 1e9 + t.tv_nsec as f64
}

/// Median CPU and wall ns per point of `rounds` runs of `f` over `n` points.
fn measure(n: usize, rounds: usize, mut f: impl FnMut()) -> (f64, f64) {
    let (mut cpu, mut wall) = (Vec::new(), Vec::new());
    for _ in 0..rounds.max(1) {
        let (c, t) = (cpu_ns(), Instant::now());
        f();
        cpu.push((cpu_ns() - c) / n as f64);
        wall.push(t.elapsed().as_nanos() as f64 / n as f64);
    }
    (median(cpu), median(wall))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn bench<A: Accumulator>(name: &str, acc: A, n: usize, vals: &[f64], rounds: usize) {
    let spec =
        WindowSpec::new(T0, T0 + n as i64 * SEC, 60 * SEC, 0, n / 60 + 2).expect("window spec");
    let (cpu, wall) = measure(n, rounds, || {
        let mut w = Windowed::new(spec.clone(), acc.clone(), false);
        for i in 0..n {
            let (t, v) = point(vals, i);
            w.push(t, v, 192);
        }
        black_box(w.finish().expect("in order"));
    });
    println!("| {name}, push | {n} | {cpu:.2} | {wall:.2} |");
    let (cpu, wall) = measure(n, rounds, || {
        let mut w = Windowed::new(spec.clone(), acc.clone(), false);
        w.push_all((0..n).map(|i| {
            let (t, v) = point(vals, i);
            (t, v, 192)
        }));
        black_box(w.finish().expect("in order"));
    });
    println!("| {name}, push_all | {n} | {cpu:.2} | {wall:.2} |");
}

fn main() {
    let a = Args::parse();
    let (n, vals) = (a.points, table());
    println!("| accumulator | points | CPU ns/point | wall ns/point |");
    println!("|---|---|---|---|");
    bench("mean", MeanAcc::default(), n, &vals, a.rounds);
    bench("min", MinAcc::default(), n, &vals, a.rounds);
    bench("max", MaxAcc::default(), n, &vals, a.rounds);
    bench("twa step", TwaAcc::new(Interp::Step), n, &vals, a.rounds);
    bench(
        "twa linear",
        TwaAcc::new(Interp::Linear),
        n,
        &vals,
        a.rounds,
    );
    bench("stddev", StddevAcc::default(), n, &vals, a.rounds);
    bench(
        "partial (all mergeable)",
        PartialAcc::default(),
        n,
        &vals,
        a.rounds,
    );
    let (cpu, wall) = measure(n, a.rounds, || {
        let mut s = Summary::EMPTY;
        for i in 0..n {
            let (t, v) = point(&vals, i);
            s.push(t, v, 192).expect("in order");
        }
        black_box(s);
    });
    println!("| Summary::push (no driver) | {n} | {cpu:.2} | {wall:.2} |");
}
