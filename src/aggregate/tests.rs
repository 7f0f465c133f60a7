//! Every kernel against a brute-force model written from the definitions
//! (plain loops over a Vec, no shared code with the streaming side), on
//! random points (NaN, ±inf, bad qualities, points before and after the
//! range), random windows (offsets, negative times, edges) and random
//! splits of the input into summaries.

use proptest::prelude::*;
use proptest::strategy::ValueTree;

use super::*;

const INF: f64 = f64::INFINITY;

#[derive(Clone, Copy, Debug)]
struct P {
    ts: i64,
    v: f64,
    q: u8,
}

fn vis(p: &P, good_only: bool) -> bool {
    !p.v.is_nan() && (!good_only || p.q >= 192)
}

fn value(with_inf: bool) -> BoxedStrategy<f64> {
    let ints = (-100i32..100).prop_map(f64::from);
    let floats = -1e6f64..1e6;
    if with_inf {
        prop_oneof![
            12 => ints,
            8 => floats,
            3 => Just(f64::NAN),
            1 => Just(INF),
            1 => Just(-INF),
        ]
        .boxed()
    } else {
        prop_oneof![
            12 => ints,
            8 => floats,
            3 => Just(f64::NAN),
            1 => Just(-0.0),
        ]
        .boxed()
    }
}

fn quality() -> impl Strategy<Value = u8> {
    prop_oneof![8 => Just(192u8), 1 => Just(0u8), 1 => Just(64u8), 1 => Just(255u8), 1 => 193u8..255]
}

fn base() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(0i64),
        Just(-1_000i64),
        Just(-86_400_000_000_007i64),
        Just(1_700_000_000_000_000i64),
        any::<i32>().prop_map(i64::from),
    ]
}

/// Base time and sorted points with distinct timestamps in
/// `[base, base + 400)`.
fn points(with_inf: bool, max: usize) -> impl Strategy<Value = (i64, Vec<P>)> {
    (
        base(),
        prop::collection::vec((0i64..400, value(with_inf), quality()), 0..max),
    )
        .prop_map(|(base, raw)| {
            let mut pts: Vec<P> = raw
                .into_iter()
                .map(|(o, v, q)| P { ts: base + o, v, q })
                .collect();
            pts.sort_by_key(|p| p.ts);
            pts.dedup_by_key(|p| p.ts);
            (base, pts)
        })
}

#[derive(Clone, Debug)]
struct Case {
    pts: Vec<P>,
    start: i64,
    end: i64,
    every: i64,
    offset: i64,
    good_only: bool,
    runs: Vec<usize>,
}

fn case() -> impl Strategy<Value = Case> {
    prop_oneof![4 => Just(false), 1 => Just(true)]
        .prop_flat_map(|with_inf| {
            (
                points(with_inf, 80),
                -60i64..460,
                prop_oneof![1 => 0i64..40, 4 => 0i64..500],
                prop_oneof![4 => 1i64..20, 2 => 20i64..120, 1 => 120i64..600],
                -700i64..700,
                any::<bool>(),
                prop::collection::vec(1usize..9, 0..60),
            )
        })
        .prop_map(
            |((base, pts), s, len, every, offset, good_only, runs)| Case {
                pts,
                start: base + s,
                end: base + s + len,
                every,
                offset,
                good_only,
                runs,
            },
        )
}

fn summary_of(run: &[P]) -> Summary {
    let mut s = Summary::EMPTY;
    for p in run {
        s.push(p.ts, p.v, p.q).unwrap();
    }
    s
}

/// Feeds `pts` to `w`: in runs of `runs[i]` points, each run as a summary
/// when `summaries` and the driver accepts it, else point by point.
/// Returns how many summaries were taken.
fn feed<A: Accumulator>(w: &mut Windowed<A>, pts: &[P], runs: &[usize], summaries: bool) -> usize {
    let (mut i, mut r, mut taken) = (0, 0, 0);
    while i < pts.len() {
        let len = runs.get(r).copied().unwrap_or(1).clamp(1, pts.len() - i);
        r += 1;
        let run = &pts[i..i + len];
        i += len;
        if summaries {
            let s = summary_of(run);
            if w.accepts(&s) {
                w.push_summary(&s).unwrap();
                taken += 1;
                continue;
            }
        }
        if r % 2 == 0 {
            w.push_all(run.iter().map(|p| (p.ts, p.v, p.q)));
        } else {
            for p in run {
                w.push(p.ts, p.v, p.q);
            }
        }
    }
    taken
}

struct Src<'a> {
    pts: &'a [P],
    runs: &'a [usize],
    summaries: bool,
}

impl PointSource for Src<'_> {
    type Error = AggError;
    fn feed<A: Accumulator>(&mut self, w: &mut Windowed<A>) -> Result<(), AggError> {
        feed(w, self.pts, self.runs, self.summaries);
        Ok(())
    }
}

// ---------------------------------------------------------------- brute force

#[derive(Clone, Copy, Debug)]
struct BWin {
    start: i64,
    end: i64,
    lo: i64,
    hi: i64,
}

/// Windows by walking from the aligned start at or before `start` (at most
/// 100_001 of them).
fn brute_windows(start: i64, end: i64, every: i64, offset: i64) -> Vec<BWin> {
    let mut out = Vec::new();
    if start >= end {
        return out;
    }
    let (s, e, every, off) = (start as i128, end as i128, every as i128, offset as i128);
    // The largest k·every + off <= s.
    let mut ws = s - ((s - off) % every + every) % every;
    while ws < e && out.len() <= 100_000 {
        let we = ws + every;
        let c = |v: i128| v.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
        out.push(BWin {
            start: c(ws),
            end: c(we),
            lo: c(ws.max(s)),
            hi: c(we.min(e)),
        });
        ws = we;
    }
    out
}

fn sorted(v: &[f64]) -> Vec<f64> {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    s
}

fn is_stddev(f: Func) -> bool {
    matches!(f, Func::Stddev)
}

/// Brute force of `f` over every window: (slot, tolerance scale).
fn brute(f: Func, c: &Case) -> Vec<(Slot, f64)> {
    let wins = brute_windows(c.start, c.end, c.every, c.offset);
    let all: Vec<(i64, f64, bool)> = c
        .pts
        .iter()
        .filter(|p| vis(p, c.good_only))
        .map(|p| (p.ts, p.v, p.q >= 192))
        .collect();
    let finite_abs = |v: f64| if v.is_finite() { v.abs() } else { 0.0 };
    let span = (c.end - c.start + c.every) as f64;
    if let Func::Integral {
        unit,
        mode: IntegralMode::InfluxQl,
    } = f
    {
        let in_range: Vec<(i64, f64)> = all
            .iter()
            .filter(|p| p.0 >= c.start && p.0 < c.end)
            .map(|p| (p.0, p.1))
            .collect();
        let scale = in_range.iter().map(|p| finite_abs(p.1)).sum::<f64>() * span / unit as f64;
        return influx_integral(&in_range, &wins, unit)
            .into_iter()
            .map(|s| (s, scale))
            .collect();
    }
    let mut out = Vec::new();
    for w in &wins {
        let inside: Vec<(i64, f64, bool)> = all
            .iter()
            .copied()
            .filter(|p| p.0 >= w.lo && p.0 < w.hi)
            .collect();
        let vals: Vec<f64> = inside.iter().map(|p| p.1).collect();
        let n = vals.len();
        let max_abs = vals.iter().copied().map(finite_abs).fold(0.0, f64::max);
        let sum_abs: f64 = vals.iter().copied().map(finite_abs).sum();
        let empty = n == 0;
        let value = |v: f64| if empty { Slot::Empty } else { Slot::Value(v) };
        let slot = match f {
            Func::Count => value(n as f64),
            Func::Sum => value(vals.iter().sum()),
            Func::Mean => value(vals.iter().sum::<f64>() / n as f64),
            Func::Min => {
                let mut m = INF;
                for &v in &vals {
                    if v < m {
                        m = v;
                    }
                }
                value(m)
            }
            Func::Max => {
                let mut m = -INF;
                for &v in &vals {
                    if v > m {
                        m = v;
                    }
                }
                value(m)
            }
            Func::First => vals.first().map_or(Slot::Empty, |&v| Slot::Value(v)),
            Func::Last => vals.last().map_or(Slot::Empty, |&v| Slot::Value(v)),
            Func::Spread => {
                let s = sorted(&vals);
                value(s.last().copied().unwrap_or(0.0) - s.first().copied().unwrap_or(0.0))
            }
            Func::Stddev => match n {
                0 => Slot::Empty,
                1 => Slot::Null,
                _ if vals.iter().any(|v| v.is_infinite()) => Slot::Value(f64::NAN),
                _ => {
                    let mean = vals.iter().sum::<f64>() / n as f64;
                    let var =
                        vals.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1) as f64;
                    Slot::Value(var.sqrt())
                }
            },
            Func::Median => {
                let s = sorted(&vals);
                match n {
                    0 => Slot::Empty,
                    _ if n % 2 == 1 => Slot::Value(s[n / 2]),
                    _ => {
                        let (lo, hi) = (s[n / 2 - 1], s[n / 2]);
                        Slot::Value(lo + (hi - lo) / 2.0)
                    }
                }
            }
            Func::Percentile(p) => {
                let s = sorted(&vals);
                let i = (n as f64 * p / 100.0 + 0.5).floor() as i64 - 1;
                if i < 0 || i >= n as i64 {
                    Slot::Empty
                } else {
                    Slot::Value(s[i as usize])
                }
            }
            Func::Integral { unit, .. } => {
                let mut area = 0.0;
                for pair in inside.windows(2) {
                    let dt = (pair[1].0 - pair[0].0) as f64 / unit as f64;
                    area += 0.5 * (pair[0].1 + pair[1].1) * dt;
                }
                value(area)
            }
            Func::PercentGood => {
                let good = inside.iter().filter(|p| p.2).count();
                value(good as f64 / n as f64 * 100.0)
            }
            Func::TimeWeighted(interp) => {
                let pts: Vec<(i64, f64)> = all.iter().map(|p| (p.0, p.1)).collect();
                brute_twa(&pts, w.lo, w.hi, interp)
            }
        };
        let near: f64 = {
            // |before|, |after| matter for the time-weighted average.
            let b = all
                .iter()
                .rev()
                .find(|p| p.0 < w.lo)
                .map_or(0.0, |p| finite_abs(p.1));
            let a = all
                .iter()
                .find(|p| p.0 >= w.hi)
                .map_or(0.0, |p| finite_abs(p.1));
            b.max(a)
        };
        let scale = match f {
            Func::Sum => sum_abs,
            Func::Stddev => max_abs * max_abs,
            Func::Integral { unit, .. } => sum_abs * span / unit as f64,
            Func::TimeWeighted(_) => max_abs.max(near),
            Func::Spread => 2.0 * max_abs,
            _ => max_abs,
        };
        out.push((slot, scale));
    }
    out
}

/// Time-weighted average of the function f(t) built from all visible points,
/// integrated piecewise over D = [max(lo, first point), hi).
fn brute_twa(all: &[(i64, f64)], lo: i64, hi: i64, interp: Interp) -> Slot {
    let Some(first) = all.first() else {
        return Slot::Empty;
    };
    if first.0 >= hi {
        return Slot::Empty;
    }
    let d0 = lo.max(first.0);
    let f = |t: i64| -> f64 {
        if let Some(p) = all.iter().find(|p| p.0 == t) {
            return p.1;
        }
        let p = all.iter().rev().find(|p| p.0 < t).unwrap();
        match interp {
            Interp::Step => p.1,
            Interp::Linear => match all.iter().find(|q| q.0 > t) {
                Some(q) => p.1 + (q.1 - p.1) * ((t - p.0) as f64 / (q.0 - p.0) as f64),
                None => p.1,
            },
        }
    };
    let mut bps = vec![d0, hi];
    bps.extend(all.iter().map(|p| p.0).filter(|&t| t > d0 && t < hi));
    bps.sort_unstable();
    bps.dedup();
    let mut area = 0.0;
    for w in bps.windows(2) {
        let (a, b) = (w[0], w[1]);
        let dt = (b - a) as f64;
        area += match interp {
            Interp::Step => f(a) * dt,
            Interp::Linear => 0.5 * (f(a) + f(b)) * dt,
        };
    }
    Slot::Value(area / (hi - d0) as f64)
}

/// InfluxDB 1.x's FloatIntegralReducer with GROUP BY time, transliterated
/// (query/functions.go), over the visible points inside the query range.
fn influx_integral(pts: &[(i64, f64)], wins: &[BWin], unit: i64) -> Vec<Slot> {
    let mut out = vec![Slot::Empty; wins.len()];
    let window_of = |t: i64| wins.iter().position(|w| w.lo <= t && t < w.hi).unwrap();
    let linear = |wt: i64, pt: i64, nt: i64, pv: f64, nv: f64| {
        let m = (nv - pv) / (nt - pt) as f64;
        let x = (wt - pt) as f64;
        m * x + pv
    };
    let interval = unit as f64;
    let mut prev: Option<(i64, f64)> = None;
    let mut wi = 0;
    let mut sum = 0.0;
    for &(t, v) in pts {
        let Some(mut pr) = prev else {
            prev = Some((t, v));
            wi = window_of(t);
            continue;
        };
        if t >= wins[wi].end {
            let end = wins[wi].end;
            if pr.0 != end {
                let value = linear(end, pr.0, t, pr.1, v);
                let elapsed = (end - pr.0) as f64 / interval;
                sum += 0.5 * (value + pr.1) * elapsed;
                pr = (end, value);
            }
            out[wi] = Slot::Value(sum);
            wi = window_of(t);
            sum = 0.0;
        }
        let elapsed = (t - pr.0) as f64 / interval;
        sum += 0.5 * (v + pr.1) * elapsed;
        prev = Some((t, v));
    }
    if let Some(pr) = prev {
        if pr.0 != wins[wi].start {
            out[wi] = Slot::Value(sum);
        }
    }
    out
}

fn close(x: f64, y: f64, scale: f64) -> bool {
    if x.is_nan() || y.is_nan() {
        return x.is_nan() && y.is_nan();
    }
    if x.is_infinite() || y.is_infinite() {
        return x == y;
    }
    (x - y).abs() <= 1e-9 * x.abs().max(y.abs()).max(scale)
}

fn same(got: Slot, want: Slot, scale: f64, stddev: bool) -> bool {
    match (got, want) {
        (Slot::Empty, Slot::Empty) | (Slot::Null, Slot::Null) => true,
        (Slot::Value(x), Slot::Value(y)) if stddev => close(x * x, y * y, scale),
        (Slot::Value(x), Slot::Value(y)) => close(x, y, scale),
        _ => false,
    }
}

fn all_funcs() -> Vec<Func> {
    let mut f = vec![
        Func::Count,
        Func::Sum,
        Func::Mean,
        Func::Min,
        Func::Max,
        Func::First,
        Func::Last,
        Func::Spread,
        Func::Stddev,
        Func::Median,
        Func::PercentGood,
        Func::TimeWeighted(Interp::Step),
        Func::TimeWeighted(Interp::Linear),
    ];
    for p in [0.0, 1.0, 25.0, 50.0, 66.6, 99.9, 100.0, 130.0] {
        f.push(Func::Percentile(p));
    }
    for unit in [1, 7, 1_000_000] {
        f.push(Func::Integral {
            unit,
            mode: IntegralMode::Inside,
        });
        f.push(Func::Integral {
            unit,
            mode: IntegralMode::InfluxQl,
        });
    }
    f
}

fn spec_of(c: &Case) -> WindowSpec {
    WindowSpec::new(c.start, c.end, c.every, c.offset, 100_000).unwrap()
}

fn check_windowed(c: &Case) -> Result<(), TestCaseError> {
    let spec = spec_of(c);
    for f in all_funcs() {
        let want = brute(f, c);
        for summaries in [false, true] {
            let mut src = Src {
                pts: &c.pts,
                runs: &c.runs,
                summaries,
            };
            let got = aggregate(f, &spec, c.good_only, &mut src).unwrap();
            prop_assert_eq!(got.len(), want.len(), "{:?} window count", f);
            for (i, (g, (w, scale))) in got.iter().zip(&want).enumerate() {
                prop_assert!(
                    same(*g, *w, *scale, is_stddev(f)),
                    "{:?} summaries={} window {} ({:?}): got {:?}, want {:?}",
                    f,
                    summaries,
                    i,
                    spec.window(i),
                    g,
                    w
                );
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(crate::proptest_config::config(512))]

    /// Every function, fed point by point and by random summaries, equals the
    /// brute force in every window.
    #[test]
    fn windowed_matches_brute_force(c in case()) {
        check_windowed(&c)?;
    }

    /// Per-series partials, merged in any order, equal the brute force over
    /// the union of the series' points.
    #[test]
    fn partials_merge_across_series(
        c in case(),
        assign in prop::collection::vec(0usize..3, 80),
        summaries in any::<bool>(),
    ) {
        let spec = spec_of(&c);
        let mut merged: Vec<Option<Partial>> = vec![None; spec.len()];
        for series in (0..3).rev() {
            let pts: Vec<P> = c.pts.iter().zip(&assign).filter(|(_, &a)| a == series)
                .map(|(p, _)| *p).collect();
            let mut src = Src { pts: &pts, runs: &c.runs, summaries };
            let parts = aggregate_partials(&spec, c.good_only, &mut src).unwrap();
            for (m, p) in merged.iter_mut().zip(parts) {
                match (m.as_mut(), p) {
                    (Some(m), Some(p)) => m.merge(&p),
                    (None, Some(p)) => *m = Some(p),
                    _ => {}
                }
            }
        }
        for f in all_funcs() {
            let want = brute(f, &c);
            for (i, (m, (w, scale))) in merged.iter().zip(&want).enumerate() {
                let got = match m {
                    None => Slot::Empty,
                    Some(p) => match p.eval(f) {
                        Ok(s) => s,
                        Err(AggError::NotMergeable(_)) => {
                            prop_assert!(!f.mergeable());
                            continue;
                        }
                        Err(e) => return Err(TestCaseError::fail(e.to_string())),
                    },
                };
                prop_assert!(f.mergeable() || got == Slot::Empty);
                if f.mergeable() {
                    prop_assert!(same(got, *w, *scale, is_stddev(f)),
                        "{:?} window {}: got {:?}, want {:?}", f, i, got, w);
                }
            }
        }
    }

    /// The window arithmetic partitions [start, end) into aligned windows,
    /// before 1970 too, and index_of agrees with a linear scan.
    #[test]
    fn windows_partition_the_range(
        start in prop_oneof![any::<i64>(), -10_000i64..10_000],
        len in prop_oneof![0i64..5_000, 0i64..i64::MAX],
        every in prop_oneof![1i64..100, 1i64..i64::MAX],
        offset in any::<i64>(),
        probes in prop::collection::vec(any::<u64>(), 0..20),
    ) {
        let end = start.saturating_add(len);
        let want = brute_windows(start, end, every, offset);
        match WindowSpec::new(start, end, every, offset, 100_000) {
            Err(AggError::TooMany { needed, .. }) => prop_assert!(needed > 100_000 && want.len() > 100_000),
            Err(e) => return Err(TestCaseError::fail(e.to_string())),
            Ok(spec) => {
                let got: Vec<Window> = spec.windows().collect();
                prop_assert_eq!(got.len(), want.len());
                let mut lo = start;
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    prop_assert_eq!((g.index, g.start, g.end, g.lo, g.hi), (i, w.start, w.end, w.lo, w.hi));
                    prop_assert_eq!(g.lo, lo);
                    prop_assert!(g.lo < g.hi);
                    lo = g.hi;
                    if g.start > i64::MIN {
                        prop_assert_eq!((g.start as i128 - offset as i128).rem_euclid(every as i128), 0);
                    }
                }
                if !got.is_empty() {
                    prop_assert_eq!(lo, end);
                }
                for p in probes {
                    let ts = if len == 0 { start } else { start.wrapping_add((p % len as u64) as i64) };
                    let scan = got.iter().position(|w| w.lo <= ts && ts < w.hi);
                    prop_assert_eq!(spec.index_of(ts), scan);
                }
                prop_assert_eq!(spec.index_of(end), None);
                if start > i64::MIN {
                    prop_assert_eq!(spec.index_of(start - 1), None);
                }
            }
        }
    }
}

// ------------------------------------------------------------------ summary

fn summary_close(a: &Summary, b: &Summary, scale_v: f64, span_s: f64) -> bool {
    let n = f64::from(a.count.max(1));
    a.count == b.count
        && a.good == b.good
        && a.first_ts == b.first_ts
        && a.last_ts == b.last_ts
        && a.first.to_bits() == b.first.to_bits()
        && a.last.to_bits() == b.last.to_bits()
        && a.min == b.min
        && a.max == b.max
        && a.min_ts == b.min_ts
        && a.max_ts == b.max_ts
        && close(a.sum, b.sum, scale_v * n)
        && close(a.m2, b.m2, scale_v * scale_v * n)
        && close(a.integral_step, b.integral_step, scale_v * span_s)
        && close(a.integral_linear, b.integral_linear, scale_v * span_s)
}

fn max_abs(pts: &[P]) -> f64 {
    pts.iter()
        .filter(|p| p.v.is_finite())
        .map(|p| p.v.abs())
        .fold(0.0, f64::max)
}

fn split(pts: &[P], cuts: &[usize]) -> Vec<Vec<P>> {
    let mut out = Vec::new();
    let mut i = 0;
    for &c in cuts {
        let j = (i + c).min(pts.len());
        out.push(pts[i..j].to_vec());
        i = j;
    }
    out.push(pts[i..].to_vec());
    out
}

proptest! {
    #![proptest_config(crate::proptest_config::config(256))]

    /// Summary::of equals its definition computed directly.
    #[test]
    fn summary_matches_definition((_, pts) in points(true, 60)) {
        let s = summary_of(&pts);
        let v: Vec<&P> = pts.iter().filter(|p| !p.v.is_nan()).collect();
        prop_assert_eq!(s.count as usize, v.len());
        if v.is_empty() {
            prop_assert_eq!(s, Summary::EMPTY);
            return Ok(());
        }
        let n = v.len() as f64;
        let sum: f64 = v.iter().map(|p| p.v).sum();
        let mean = sum / n;
        let m2: f64 = v.iter().map(|p| (p.v - mean) * (p.v - mean)).sum();
        let (mut step, mut lin) = (0.0, 0.0);
        for w in v.windows(2) {
            let dt = (w[1].ts - w[0].ts) as f64 / 1e6;
            step += w[0].v * dt;
            lin += (w[0].v + w[1].v) / 2.0 * dt;
        }
        let want = Summary {
            count: v.len() as u32,
            good: v.iter().filter(|p| p.q >= 192).count() as u32,
            min: v.iter().map(|p| p.v).fold(INF, f64::min),
            max: v.iter().map(|p| p.v).fold(-INF, f64::max),
            sum,
            m2,
            first_ts: v[0].ts,
            first: v[0].v,
            last_ts: v[v.len() - 1].ts,
            last: v[v.len() - 1].v,
            integral_step: step,
            integral_linear: lin,
            // The first point holding the extreme (ties: the earliest).
            min_ts: v.iter().find(|p| p.v == v.iter().map(|p| p.v).fold(INF, f64::min)).map_or(0, |p| p.ts),
            max_ts: v.iter().find(|p| p.v == v.iter().map(|p| p.v).fold(-INF, f64::max)).map_or(0, |p| p.ts),
        };
        let any_inf = v.iter().any(|p| p.v.is_infinite());
        let span = (want.last_ts - want.first_ts) as f64 / 1e6;
        let mut s2 = s;
        if any_inf {
            // m2 is meaningless with infinities (stddev reports NaN).
            s2.m2 = want.m2;
        }
        prop_assert!(summary_close(&s2, &want, max_abs(&pts), span), "{:?} vs {:?}", s, want);
    }

    /// Merging the summaries of consecutive runs equals the summary of the
    /// whole, and merging is associative.
    #[test]
    fn summary_merge_is_concatenation(
        (_, pts) in points(false, 60),
        cuts in prop::collection::vec(0usize..12, 0..8),
        c1 in 0usize..60,
        c2 in 0usize..60,
    ) {
        let whole = summary_of(&pts);
        let mut folded = Summary::EMPTY;
        for run in split(&pts, &cuts) {
            folded.merge(&summary_of(&run)).unwrap();
        }
        let span = pts.last().map_or(0.0, |l| (l.ts - pts[0].ts) as f64 / 1e6);
        let scale = max_abs(&pts);
        prop_assert!(summary_close(&folded, &whole, scale, span), "{:?} vs {:?}", folded, whole);

        let (c1, c2) = (c1.min(pts.len()), c2.min(pts.len()));
        let (c1, c2) = (c1.min(c2), c1.max(c2));
        let (a, b, c) = (summary_of(&pts[..c1]), summary_of(&pts[c1..c2]), summary_of(&pts[c2..]));
        let mut left = a;
        left.merge(&b).unwrap();
        left.merge(&c).unwrap();
        let mut bc = b;
        bc.merge(&c).unwrap();
        let mut right = a;
        right.merge(&bc).unwrap();
        prop_assert!(summary_close(&left, &right, scale, span), "{:?} vs {:?}", left, right);
        prop_assert!(summary_close(&left, &whole, scale, span));
    }

    /// encode/decode is a bit-exact round trip.
    #[test]
    fn summary_round_trip((_, pts) in points(true, 60)) {
        let s = summary_of(&pts);
        let d = Summary::decode(&s.encode()).unwrap();
        prop_assert_eq!(d.encode(), s.encode());
    }

    /// Decoding arbitrary bytes, or a valid encoding with one byte changed,
    /// returns an error or a value, never panics; what decodes re-encodes to
    /// the same bytes.
    #[test]
    fn summary_decode_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..100),
        (_, pts) in points(true, 20),
        at in 0usize..SUMMARY_LEN,
        x in 1u8..=255,
    ) {
        if let Ok(s) = Summary::decode(&bytes) {
            prop_assert_eq!(&s.encode()[..], &bytes[..]);
        }
        let mut b = summary_of(&pts).encode();
        b[at] ^= x;
        if let Ok(s) = Summary::decode(&b) {
            prop_assert_eq!(s.encode(), b);
        }
    }
}

// ------------------------------------------------ fill, interpolation, plot

fn slot() -> impl Strategy<Value = Slot> {
    prop_oneof![
        5 => Just(Slot::Empty),
        1 => Just(Slot::Null),
        4 => (-1000i32..1000).prop_map(|v| Slot::Value(f64::from(v) / 4.0)),
    ]
}

fn brute_fill(slots: &[Slot], f: Fill) -> Vec<(usize, Option<f64>)> {
    let mut out = Vec::new();
    for i in 0..slots.len() {
        let v = match slots[i] {
            Slot::Value(v) => Some(v),
            Slot::Null => None,
            Slot::Empty => {
                let left = (0..i).rev().find(|&j| slots[j] != Slot::Empty);
                let right = (i + 1..slots.len()).find(|&j| slots[j] != Slot::Empty);
                match f {
                    Fill::None => continue,
                    Fill::Null => None,
                    Fill::Value(x) => Some(x),
                    Fill::Previous { before } => match left {
                        Some(j) => slots[j].value(),
                        None => before,
                    },
                    Fill::Linear => {
                        match (left.map(|j| (j, slots[j])), right.map(|j| (j, slots[j]))) {
                            (Some((a, Slot::Value(va))), Some((b, Slot::Value(vb)))) => {
                                Some(va + (vb - va) * ((i - a) as f64 / (b - a) as f64))
                            }
                            _ => None,
                        }
                    }
                }
            }
        };
        out.push((i, v));
    }
    out
}

fn brute_interp(pts: &[(i64, f64)], t: i64, interp: Interp) -> Option<f64> {
    if let Some(p) = pts.iter().find(|p| p.0 == t) {
        return Some(p.1);
    }
    let before = pts.iter().rev().find(|p| p.0 < t);
    let after = pts.iter().find(|p| p.0 > t);
    match (interp, before, after) {
        (_, None, _) => None,
        (Interp::Step, Some(p), _) => Some(p.1),
        (Interp::Linear, Some(p), Some(q)) => {
            Some(p.1 + (q.1 - p.1) * ((t - p.0) as f64 / (q.0 - p.0) as f64))
        }
        (Interp::Linear, Some(_), None) => None,
    }
}

proptest! {
    #![proptest_config(crate::proptest_config::config(256))]

    /// Every fill mode equals its definition.
    #[test]
    fn fill_matches_definition(
        slots in prop::collection::vec(slot(), 0..40),
        mode in 0usize..6,
        x in -100.0f64..100.0,
    ) {
        let f = [
            Fill::None,
            Fill::Null,
            Fill::Value(x),
            Fill::Previous { before: None },
            Fill::Previous { before: Some(x) },
            Fill::Linear,
        ][mode];
        let got = fill(&slots, f);
        let want = brute_fill(&slots, f);
        prop_assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            prop_assert_eq!(g.0, w.0);
            match (g.1, w.1) {
                (None, None) => {}
                (Some(a), Some(b)) => prop_assert!(close(a, b, 1000.0), "{:?} {:?}", g, w),
                _ => prop_assert!(false, "{:?} vs {:?}", g, w),
            }
        }
    }

    /// Interpolated values at every sample time equal the definition.
    #[test]
    fn interpolated_values_match_definition(
        (base, pts) in points(false, 50),
        s in -60i64..460,
        len in 0i64..500,
        every in 1i64..50,
        linear in any::<bool>(),
        good_only in any::<bool>(),
    ) {
        let interp = if linear { Interp::Linear } else { Interp::Step };
        let (start, end) = (base + s, base + s + len);
        let mut ip = Interpolator::new(start, end, every, interp, good_only, 10_000).unwrap();
        for p in &pts {
            ip.push(p.ts, p.v, p.q);
        }
        let got = ip.finish().unwrap();
        let v: Vec<(i64, f64)> = pts.iter().filter(|p| vis(p, good_only)).map(|p| (p.ts, p.v)).collect();
        let times: Vec<i64> = (0..).map(|i| start + i * every).take_while(|&t| t <= end).collect();
        prop_assert_eq!(got.len(), times.len());
        let scale = v.iter().map(|p| p.1.abs()).fold(0.0, f64::max);
        for (g, &t) in got.iter().zip(&times) {
            prop_assert_eq!(g.0, t);
            match (g.1, brute_interp(&v, t, interp)) {
                (None, None) => {}
                (Some(a), Some(b)) => prop_assert!(close(a, b, scale), "t={} {} vs {}", t, a, b),
                (a, b) => prop_assert!(false, "t={}: {:?} vs {:?}", t, a, b),
            }
        }
    }

    /// Plot values: per interval the first, last, min and max actual points,
    /// de-duplicated, in time order.
    #[test]
    fn plot_values_match_definition(
        (base, pts) in points(true, 60),
        s in -60i64..460,
        len in 0i64..500,
        intervals in 1usize..40,
        good_only in any::<bool>(),
    ) {
        let (start, end) = (base + s, base + s + len);
        let mut pl = Plotter::new(start, end, intervals, good_only, 1000).unwrap();
        for p in &pts {
            pl.push(p.ts, p.v, p.q);
        }
        let got = pl.finish().unwrap();
        let mut want = Vec::new();
        let d = (end - start) as i128;
        for i in 0..intervals as i128 {
            let lo = (start as i128 + i * d / intervals as i128) as i64;
            let hi = (start as i128 + (i + 1) * d / intervals as i128) as i64;
            let inside: Vec<&P> = pts.iter().filter(|p| vis(p, good_only) && p.ts >= lo && p.ts < hi).collect();
            if inside.is_empty() {
                continue;
            }
            let (mut mn, mut mx) = (inside[0], inside[0]);
            for p in &inside {
                if p.v < mn.v { mn = p; }
                if p.v > mx.v { mx = p; }
            }
            let mut sel = vec![inside[0], inside[inside.len() - 1], mn, mx];
            sel.sort_by_key(|p| p.ts);
            sel.dedup_by_key(|p| p.ts);
            prop_assert!(sel.len() <= 4);
            want.extend(sel.iter().map(|p| Sample::new(p.ts, p.v)));
        }
        prop_assert_eq!(got, want);
    }

    /// derivative/difference equal the definition: nulls dropped, the first
    /// of equal times kept, then pairwise.
    #[test]
    fn transforms_match_definition(
        raw in prop::collection::vec((0i64..6, prop::option::weighted(0.8, -1000i32..1000)), 0..40),
        unit in 1i64..3_000_000,
        non_negative in any::<bool>(),
    ) {
        let mut t = -50;
        let rows: Vec<(i64, Option<f64>)> = raw.iter().map(|&(dt, v)| {
            t += dt;
            (t, v.map(|v| f64::from(v) / 2.0))
        }).collect();
        let mut kept: Vec<(i64, f64)> = Vec::new();
        for &(t, v) in &rows {
            if let Some(v) = v {
                if kept.last().is_none_or(|l| l.0 != t) {
                    kept.push((t, v));
                }
            }
        }
        let diffs: Vec<(i64, f64, f64)> = kept.windows(2)
            .map(|w| (w[1].0, w[1].1 - w[0].1, (w[1].0 - w[0].0) as f64))
            .collect();
        let want_diff: Vec<(i64, f64)> = diffs.iter()
            .filter(|d| !non_negative || d.1 >= 0.0)
            .map(|d| (d.0, d.1)).collect();
        let want_der: Vec<(i64, f64)> = diffs.iter()
            .filter(|d| !non_negative || d.1 >= 0.0)
            .map(|d| (d.0, d.1 / (d.2 / unit as f64))).collect();
        prop_assert_eq!(difference(&rows, non_negative).unwrap(), want_diff);
        let got = derivative(&rows, unit, non_negative).unwrap();
        prop_assert_eq!(got.len(), want_der.len());
        for (g, w) in got.iter().zip(&want_der) {
            prop_assert_eq!(g.0, w.0);
            prop_assert!(close(g.1, w.1, 0.0), "{:?} {:?}", g, w);
        }
    }

    /// cumulative_sum, moving_average and elapsed equal their definitions:
    /// nulls dropped (equal times kept), then the running sum, the mean of
    /// the last n values, the whole units since the previous row.
    #[test]
    fn more_transforms_match_definition(
        raw in prop::collection::vec((0i64..6, prop::option::weighted(0.8, -1000i32..1000)), 0..40),
        n in 2u64..8,
        unit_ns in 1i64..5_000_000,
    ) {
        let mut t = -50;
        let rows: Vec<(i64, Option<f64>)> = raw.iter().map(|&(dt, v)| {
            t += dt;
            (t, v.map(|v| f64::from(v) / 4.0))
        }).collect();
        let kept: Vec<(i64, f64)> = rows.iter().filter_map(|&(t, v)| Some((t, v?))).collect();
        let mut sum = 0.0;
        let want_sum: Vec<(i64, f64)> = kept.iter().map(|&(t, v)| { sum += v; (t, sum) }).collect();
        prop_assert_eq!(cumulative_sum(&rows), want_sum);
        let got = moving_average(&rows, n).unwrap();
        let want: Vec<(i64, f64)> = kept.windows(n as usize)
            .map(|w| (w[w.len() - 1].0, w.iter().map(|p| p.1).sum::<f64>() / n as f64))
            .collect();
        prop_assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            prop_assert_eq!(g.0, w.0);
            prop_assert!((g.1 - w.1).abs() <= 1e-9 * w.1.abs().max(1.0), "{:?} {:?}", g, w);
        }
        let want_el: Vec<(i64, f64)> = kept.windows(2)
            .map(|w| (w[1].0, ((w[1].0 - w[0].0) * 1000 / unit_ns) as f64))
            .collect();
        prop_assert_eq!(elapsed(&rows, unit_ns).unwrap(), want_el);
    }

    /// AtOrBefore over points in any order, and with summaries, equals the
    /// last visible point at or before the time.
    #[test]
    fn at_or_before_matches_definition(
        (base, pts) in points(false, 50),
        at in -50i64..450,
        good_only in any::<bool>(),
        cuts in prop::collection::vec(0usize..10, 0..8),
    ) {
        let time = base + at;
        let want = pts.iter().rev().find(|p| vis(p, good_only) && p.ts <= time).map(|p| Sample::new(p.ts, p.v));
        let mut a = AtOrBefore::new(time, good_only);
        for p in pts.iter().rev() {
            a.push(p.ts, p.v, p.q);
        }
        prop_assert_eq!(a.result(), want);
        let mut b = AtOrBefore::new(time, good_only);
        for run in split(&pts, &cuts).iter().rev() {
            if !b.push_summary(&summary_of(run)) {
                for p in run {
                    b.push(p.ts, p.v, p.q);
                }
            }
        }
        prop_assert_eq!(b.result(), want);
    }
}

// ------------------------------------------------------ pinned behaviours

fn run_points(f: Func, spec: &WindowSpec, pts: &[(i64, f64)]) -> Vec<Slot> {
    let p: Vec<P> = pts.iter().map(|&(ts, v)| P { ts, v, q: 192 }).collect();
    let mut src = Src {
        pts: &p,
        runs: &[],
        summaries: false,
    };
    aggregate(f, spec, false, &mut src).unwrap()
}

#[test]
fn influxql_integral_matches_influxdb_issue_13164() {
    // Points of value 1 every second at .5 s; `WHERE time > 2s GROUP BY
    // time(2s)`: InfluxDB answers 1.5, 2, 1.5 (no area before the first
    // point of the first window; boundary pieces between windows).
    const S: i64 = 1_000_000;
    let pts: Vec<(i64, f64)> = (0..8).map(|i| (i * S + S / 2, 1.0)).collect();
    let spec = WindowSpec::new(2 * S + 1, 8 * S, 2 * S, 0, 10).unwrap();
    let f = Func::Integral {
        unit: S,
        mode: IntegralMode::InfluxQl,
    };
    assert_eq!(
        run_points(f, &spec, &pts),
        vec![Slot::Value(1.5), Slot::Value(2.0), Slot::Value(1.5)]
    );
    let inside = Func::Integral {
        unit: S,
        mode: IntegralMode::Inside,
    };
    assert_eq!(
        run_points(inside, &spec, &pts),
        vec![Slot::Value(1.0), Slot::Value(1.0), Slot::Value(1.0)]
    );
}

fn assert_values(got: &[Slot], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
    for (g, &w) in got.iter().zip(want) {
        assert!(close(g.value().unwrap(), w, w.abs()), "{got:?} vs {want:?}");
    }
}

#[test]
fn time_weighted_average_boundaries() {
    // Windows of 10 over [0, 30); points at -5 (before), 4, 6, 35 (after).
    let spec = WindowSpec::new(0, 30, 10, 0, 10).unwrap();
    let pts = [(-5, 10.0), (4, 20.0), (6, 0.0), (35, 50.0)];
    let step = run_points(Func::TimeWeighted(Interp::Step), &spec, &pts);
    // [0,4) holds 10, [4,6) 20, [6,10) 0 → (40 + 40) / 10; then 0 holds.
    assert_values(&step, &[8.0, 0.0, 0.0]);
    let lin = run_points(Func::TimeWeighted(Interp::Linear), &spec, &pts);
    // f(0) = 10 + 10·5/9; [0,4): trapezoid; [4,6): 20→0; [6,10): 0 → 50·4/29.
    let f0 = 10.0 + 10.0 * 5.0 / 9.0;
    let f10 = 50.0 * 4.0 / 29.0;
    let w0 = ((f0 + 20.0) / 2.0 * 4.0 + 20.0 + f10 / 2.0 * 4.0) / 10.0;
    let f20 = 50.0 * 14.0 / 29.0;
    let f30 = 50.0 * 24.0 / 29.0;
    let want = [w0, (f10 + f20) / 2.0, (f20 + f30) / 2.0];
    for (g, w) in lin.iter().zip(want) {
        assert!(close(g.value().unwrap(), w, 50.0), "{g:?} vs {w}");
    }
    // No point before: the average covers [4, 10) only; the empty last window
    // holds the last value (step).
    let pts = [(4, 20.0), (6, 0.0)];
    let step = run_points(Func::TimeWeighted(Interp::Step), &spec, &pts);
    assert_values(&step, &[40.0 / 6.0, 0.0, 0.0]);
    // No point at all in force: empty.
    let spec = WindowSpec::new(0, 30, 10, 0, 10).unwrap();
    let pts = [(15, 3.0)];
    assert_eq!(
        run_points(Func::TimeWeighted(Interp::Linear), &spec, &pts),
        vec![Slot::Empty, Slot::Value(3.0), Slot::Value(3.0)]
    );
}

#[test]
fn stddev_and_percentile_slots_follow_influxdb() {
    let spec = WindowSpec::new(0, 20, 10, 0, 10).unwrap();
    let pts = [(1, 5.0), (11, 1.0), (12, 3.0)];
    assert_eq!(
        run_points(Func::Stddev, &spec, &pts),
        vec![Slot::Null, Slot::Value(2f64.sqrt())]
    );
    // percentile(10) of one point: rank floor(0.1 + 0.5) - 1 = -1: no row.
    assert_eq!(
        run_points(Func::Percentile(10.0), &spec, &pts),
        vec![Slot::Empty, Slot::Empty]
    );
    assert_eq!(
        run_points(Func::Median, &spec, &pts),
        vec![Slot::Value(5.0), Slot::Value(2.0)]
    );
}

#[test]
fn summaries_are_taken_where_allowed_and_refused_otherwise() {
    let spec = WindowSpec::new(0, 100, 10, 0, 10).unwrap();
    let mut w = Windowed::new(spec.clone(), MeanAcc::default(), true);
    let good = summary_of(&[
        P {
            ts: 1,
            v: 1.0,
            q: 192,
        },
        P {
            ts: 5,
            v: 3.0,
            q: 192,
        },
    ]);
    let bad = summary_of(&[
        P {
            ts: 11,
            v: 1.0,
            q: 0,
        },
        P {
            ts: 15,
            v: 3.0,
            q: 192,
        },
    ]);
    let straddling = summary_of(&[
        P {
            ts: 21,
            v: 1.0,
            q: 192,
        },
        P {
            ts: 35,
            v: 3.0,
            q: 192,
        },
    ]);
    assert!(w.accepts(&good));
    w.push_summary(&good).unwrap();
    assert!(!w.accepts(&bad), "good-only and a bad point");
    assert!(!w.accepts(&straddling));
    assert!(matches!(
        w.push_summary(&straddling),
        Err(AggError::SummaryRejected { .. })
    ));
    assert!(!w.accepts(&good), "not after what was pushed");
    let r = w.finish().unwrap();
    assert_eq!(r[0], Slot::Value(2.0));
    let median = Windowed::new(spec, ValuesAcc::new(Quantile::Median), false);
    assert!(!median.accepts(&good), "median needs points");
}

#[test]
fn summary_path_is_exercised_by_the_random_cases() {
    // The property test feeds summaries only where accepted; make sure the
    // generator produces accepted ones at all (else it tests nothing new).
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut taken = 0;
    for _ in 0..64 {
        let c = case().new_tree(&mut runner).unwrap().current();
        let mut w = Windowed::new(spec_of(&c), MeanAcc::default(), c.good_only);
        taken += feed(&mut w, &c.pts, &c.runs, true);
    }
    assert!(taken > 50, "only {taken} summaries taken");
}

#[test]
fn out_of_order_is_reported_once_and_sticky() {
    let spec = WindowSpec::new(0, 100, 10, 0, 10).unwrap();
    let mut w = Windowed::new(spec, CountAcc::default(), false);
    w.push(5, 1.0, 192);
    w.push(5, 1.0, 192);
    w.push(7, 1.0, 192);
    assert_eq!(w.finish(), Err(AggError::OutOfOrder { ts: 5, prev: 5 }));
}

#[test]
fn fill_previous_looks_before_the_range() {
    // influxdb#6878: the first windows are empty; the last point before the
    // range supplies their value.
    let spec = WindowSpec::new(0, 40, 10, 0, 10).unwrap();
    let slots = run_points(Func::Last, &spec, &[(-3, 7.0), (25, 1.0)]);
    assert_eq!(
        slots,
        vec![Slot::Empty, Slot::Empty, Slot::Value(1.0), Slot::Empty]
    );
    assert_eq!(
        fill(&slots, Fill::Previous { before: Some(7.0) }),
        vec![
            (0, Some(7.0)),
            (1, Some(7.0)),
            (2, Some(1.0)),
            (3, Some(1.0))
        ]
    );
    assert_eq!(
        fill(&slots, Fill::Previous { before: None }),
        vec![(0, None), (1, None), (2, Some(1.0)), (3, Some(1.0))]
    );
}

#[test]
fn bad_parameters_are_errors() {
    let spec = WindowSpec::new(0, 10, 10, 0, 10).unwrap();
    let mut src = Src {
        pts: &[],
        runs: &[],
        summaries: false,
    };
    assert!(aggregate(Func::Percentile(f64::NAN), &spec, false, &mut src).is_err());
    let f = Func::Integral {
        unit: 0,
        mode: IntegralMode::Inside,
    };
    assert!(aggregate(f, &spec, false, &mut src).is_err());
    assert!(derivative(&[], 0, false).is_err());
    assert!(moving_average(&[], 1).is_err());
    assert!(elapsed(&[], 0).is_err());
    // A window far beyond the rows allocates nothing and answers nothing.
    assert_eq!(moving_average(&[(1, Some(1.0))], u64::MAX), Ok(Vec::new()));
    let far = [(i64::MIN, Some(1.0)), (i64::MAX, Some(2.0))];
    assert_eq!(elapsed(&far, 1).unwrap().len(), 1);
    assert!(derivative(&[(2, Some(1.0)), (1, Some(1.0))], 1, false).is_err());
    assert!(Interpolator::new(0, 10_000, 1, Interp::Step, false, 100).is_err());
    assert!(Plotter::new(0, 10, 0, false, 10).is_err());
    assert!(Plotter::new(0, 10, 11, false, 10).is_err());
}

// ------------------------------------------- the ends of the time line

/// A time at or next to an end of the i64 range, or near zero.
fn edge_time() -> impl Strategy<Value = i64> {
    prop_oneof![
        (0i64..500).prop_map(|d| i64::MIN + d),
        (0i64..500).prop_map(|d| i64::MAX - d),
        -500i64..500,
        any::<i64>(),
    ]
}

/// Interval parameters from 1 to `i64::MAX`, small ones most.
fn edge_every() -> impl Strategy<Value = i64> {
    prop_oneof![
        1i64..50,
        Just(i64::MAX),
        (0i64..50).prop_map(|d| i64::MAX - d),
        Just(1i64 << 62),
        1i64..i64::MAX,
    ]
}

proptest! {
    #![proptest_config(crate::proptest_config::config(256))]

    /// Points, ranges, intervals and offsets at the ends of the i64 time
    /// line: every kernel answers (a result or an error), never panics
    /// (debug builds check every `+ - *` for overflow).
    #[test]
    fn kernels_never_panic_at_the_ends_of_time(
        raw in prop::collection::vec((edge_time(), -1e6f64..1e6, quality()), 0..20),
        near in prop::collection::vec((-100i64..2100, -1e6f64..1e6, quality()), 0..40),
        a in edge_time(),
        len in prop_oneof![0i64..2000, 0i64..i64::MAX],
        every in edge_every(),
        offset in any::<i64>(),
        runs in prop::collection::vec(1usize..6, 0..20),
        pixels in 1usize..50,
        good_only in any::<bool>(),
    ) {
        let (start, end) = (a, a.saturating_add(len));
        let mut pts: Vec<P> = raw.into_iter().map(|(ts, v, q)| P { ts, v, q }).collect();
        pts.extend(near.into_iter().map(|(d, v, q)| P { ts: a.saturating_add(d), v, q }));
        pts.sort_by_key(|p| p.ts);
        pts.dedup_by_key(|p| p.ts);
        for summaries in [false, true] {
            let mut src = Src { pts: &pts, runs: &runs, summaries };
            let specs = [
                WindowSpec::new(start, end, every, offset, 1_000),
                WindowSpec::whole(start, end),
            ];
            for spec in specs.iter().flatten() {
                for f in all_funcs() {
                    if let Ok(slots) = aggregate(f, spec, good_only, &mut src) {
                        for fl in [Fill::Null, Fill::Linear, Fill::Previous { before: Some(1.0) }] {
                            let _ = fill(&slots, fl);
                        }
                    }
                }
                let _ = aggregate_partials(spec, good_only, &mut src);
            }
        }
        for interp in [Interp::Step, Interp::Linear] {
            if let Ok(mut ip) = Interpolator::new(start, end, every, interp, good_only, 1_000) {
                for p in &pts {
                    ip.push(p.ts, p.v, p.q);
                }
                let _ = ip.finish();
            }
        }
        let mut pl = Plotter::new(start, end, pixels, good_only, 1_000).unwrap();
        for p in &pts {
            pl.push(p.ts, p.v, p.q);
        }
        let _ = pl.finish();
        let mut at = AtOrBefore::new(end, good_only);
        for p in &pts {
            at.push(p.ts, p.v, p.q);
        }
        let rows: Vec<(i64, Option<f64>)> = pts.iter().map(|p| (p.ts, Some(p.v))).collect();
        let _ = derivative(&rows, every, false);
        let _ = difference(&rows, true);
        let mut s = Summary::EMPTY;
        for p in &pts {
            let _ = s.push(p.ts, p.v, p.q);
        }
        let _ = Summary::decode(&s.encode());
    }
}

/// Partials decoded from another node carry whatever counts it sent:
/// merging them saturates (it overflowed, a panic in debug builds).
#[test]
fn partials_with_huge_counts_merge_without_overflow() {
    let mut a = Partial::of_point(5, 1.0, true);
    let mut b = Partial::of_point(7, 2.0, true);
    b.count = u64::MAX;
    b.good = u64::MAX;
    a.merge(&b);
    assert_eq!((a.count, a.good), (u64::MAX, u64::MAX));
    assert_eq!((a.first.ts, a.last.ts), (5, 7));
}

/// The engine's median/percentile holds at most its cap of values per
/// window: a window with more is the query's error (it grew with the
/// data, one request's median over a long series could take all the
/// memory), whichever window it is; windows within the cap answer.
#[test]
fn median_windows_past_the_value_cap_are_refused() {
    let spec = WindowSpec::new(0, 30, 10, 0, 10).unwrap();
    let feed = |pts: &[i64]| {
        let mut w = Windowed::new(spec.clone(), ValuesAcc::capped(Quantile::Median, 3), false);
        for &t in pts {
            w.push(t, t as f64, 192);
        }
        w.finish()
    };
    let got = feed(&[0, 1, 2, 10, 11, 20]).unwrap();
    assert_eq!(
        got,
        vec![Slot::Value(1.0), Slot::Value(10.5), Slot::Value(20.0)]
    );
    for pts in [
        &[0, 1, 2, 3, 10][..],
        &[0, 10, 11, 12, 13, 20],
        &[0, 20, 21, 22, 23],
    ] {
        match feed(pts) {
            Err(AggError::TooMany {
                needed: 4, max: 3, ..
            }) => {}
            other => panic!("{pts:?}: {other:?}"),
        }
    }
    // Unbounded for callers that bound the points themselves.
    let mut acc = ValuesAcc::new(Quantile::Median);
    for i in 0..10 {
        acc.push(i, i as f64, true);
    }
    assert_eq!(acc.quantile(), Slot::Value(4.5));
}
