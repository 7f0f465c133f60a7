//! Codec benchmarks (targets, not tests): bytes per point on disk and in
//! memory, encode and decode speed, for signal shapes seen in plants. Run:
//!
//! ```text
//! cargo bench --bench codec
//! cargo bench --bench codec -- --points 2000000 --rounds 7
//! ```
//!
//! - disk: payload bytes / point, and 16 KiB blocks × 16384 / point (what a
//!   chunk really spends, padding included).
//! - memory: `Buffers::bytes()` / point with 1,000 tags × points/1,000 each
//!   (the shard's accounting: stream capacity, segments, per-tag overhead).
//! - encode: `Encoder::push` ns/point, sealing a segment per block.
//! - decode: block payload → `Vec<Point>` ns/point (`decode_payload_into`,
//!   the query path), median
//!   of `--rounds`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

use clap::Parser;
use xtdb::storage::block::PAYLOAD_CAPACITY;
use xtdb::storage::buffer::Buffers;
use xtdb::storage::codec::{decode_payload_into, Encoder, Segment, MAX_POINT_BYTES};
use xtdb::Point;

#[derive(Parser)]
struct Args {
    /// Points per signal.
    #[arg(long, default_value_t = 1_000_000)]
    points: usize,
    /// Decode rounds (median reported).
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Ignored (cargo bench passes it).
    #[arg(long, hide = true)]
    bench: bool,
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Roughly normal (Irwin–Hall, 12 uniforms).
    fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.unit()).sum::<f64>() - 6.0
    }
}

const T0: i64 = 1_700_000_000_000_000;
const SEC: i64 = 1_000_000;

fn ts(i: usize, jitter: i64, r: &mut Rng) -> i64 {
    let j = if jitter > 0 {
        (r.next() % (2 * jitter as u64 + 1)) as i64 - jitter
    } else {
        0
    };
    T0 + i as i64 * SEC + j
}

/// `(ts, value, quality)`.
type Pt = (i64, f64, u8);

/// `(name, points)` for every signal shape.
fn signals(n: usize) -> Vec<(&'static str, Vec<Pt>)> {
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    let analog = |r: &mut Rng, i: usize| {
        let x = 20.0 + 5.0 * (i as f64 * std::f64::consts::TAU / 3600.0).sin() + 0.05 * r.normal();
        (x * 100.0).round() / 100.0
    };
    let mut out = Vec::new();
    out.push((
        "analog, 1 s, 0.01 resolution, exact timestamps",
        (0..n)
            .map(|i| (ts(i, 0, &mut r), analog(&mut r, i), 192))
            .collect(),
    ));
    out.push((
        "analog, 1 s, 0.01 resolution, ±2 ms jitter",
        (0..n)
            .map(|i| (ts(i, 2000, &mut r), analog(&mut r, i), 192))
            .collect(),
    ));
    out.push((
        "analog, 1 s, full-precision float noise",
        (0..n)
            .map(|i| {
                let x = 20.0
                    + 5.0 * (i as f64 * std::f64::consts::TAU / 3600.0).sin()
                    + 0.05 * r.normal();
                (ts(i, 0, &mut r), x, 192)
            })
            .collect(),
    ));
    let mut state = 0.0;
    out.push((
        "step/boolean, 1 s, ~1 change per 1000",
        (0..n)
            .map(|i| {
                if r.next().is_multiple_of(1000) {
                    state = 1.0 - state;
                }
                (ts(i, 0, &mut r), state, 192)
            })
            .collect(),
    ));
    let mut c = 0.0;
    out.push((
        "counter, 1 s, +0..9 per sample",
        (0..n)
            .map(|i| {
                c += (r.next() % 10) as f64;
                (ts(i, 0, &mut r), c, 192)
            })
            .collect(),
    ));
    out.push((
        "random f64 bits (worst case), 1 s",
        (0..n)
            .map(|i| (ts(i, 0, &mut r), f64::from_bits(r.next()), 192))
            .collect(),
    ));
    out
}

/// Encodes into block-sized segments with the buffers' sealing rule.
fn encode(pts: &[(i64, f64, u8)]) -> Vec<Segment> {
    let mut segs = Vec::new();
    let mut e = Encoder::default();
    for &(t, v, q) in pts {
        if e.payload_len() + MAX_POINT_BYTES > PAYLOAD_CAPACITY {
            segs.push(std::mem::take(&mut e).finish());
        }
        e.push(t, v.to_bits(), q);
    }
    segs.push(e.finish());
    segs
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args = Args::parse();
    let n = args.points;
    println!(
        "codec: {n} points per signal; decode median of {} rounds",
        args.rounds
    );
    for (name, pts) in signals(n) {
        let mut enc_ns = Vec::new();
        let mut segs = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            segs = black_box(encode(&pts));
            enc_ns.push(t.elapsed().as_nanos() as f64 / n as f64);
        }
        let payloads: Vec<(Vec<u8>, u32)> = segs
            .iter()
            .map(|s| {
                let mut p = vec![0u8; s.payload_len()];
                s.write_payload(&mut p);
                (p, s.count)
            })
            .collect();
        let payload_bytes: usize = payloads.iter().map(|p| p.0.len()).sum();
        let blocks = payloads.len();
        let mut out: Vec<Point> = Vec::with_capacity(n);
        let mut dec_ns = Vec::new();
        for _ in 0..args.rounds {
            out.clear();
            let t = Instant::now();
            for (p, count) in &payloads {
                decode_payload_into(p, *count, 7, i64::MIN, i64::MAX, &mut out).expect("decode");
            }
            dec_ns.push(t.elapsed().as_nanos() as f64 / n as f64);
            black_box(&out);
        }
        assert_eq!(out.len(), n);
        assert!(out
            .iter()
            .zip(&pts)
            .all(|(a, b)| a.ts == b.0 && a.value.to_bits() == b.1.to_bits()));

        // Memory: 1,000 tags interleaved, as the shard buffers them.
        let tags = 1000usize;
        let mut bufs = Buffers::default();
        let mut full = Vec::new();
        let batch: Vec<Point> = (0..n)
            .map(|k| {
                let (tag, i) = (k % tags, k / tags);
                let p = pts[(tag * (n / tags) + i) % n];
                Point::new(tag as u32, p.0, p.1, p.2)
            })
            .collect();
        for b in batch.chunks(10_000) {
            bufs.insert_batch(b, 1, Instant::now(), &mut full);
        }
        let (enc, dec) = (median(enc_ns), median(dec_ns));
        println!(
            "{name}: disk {:.2} bytes/point payload, {:.2} bytes/point in 16 KiB blocks ({blocks} blocks, {:.0} points/block); memory {:.2} bytes/point; encode {enc:.1} ns/point ({:.0} M points/s); decode {dec:.2} ns/point ({:.0} M points/s)",
            payload_bytes as f64 / n as f64,
            (blocks * 16384) as f64 / n as f64,
            n as f64 / blocks as f64,
            bufs.bytes() as f64 / bufs.points() as f64,
            1e3 / enc,
            1e3 / dec,
        );
    }
}
