//! Rollups: the statistics of one compacted segment's points per aligned
//! interval of `span` (one minute by default, `xtdb serve --rollup`), so a
//! window that is a whole number of spans is answered without decoding the
//! segment (a day of 1-minute means of a 1 Hz tag reads 1,440 small entries
//! instead of 86,400 points). Pure encode and decode of the byte layout
//! ([`Builder`], [`decode`]); no I/O. Where the bytes live (after the
//! blocks of a compacted chunk, one run per segment, located and checked by
//! its directory entry) is [`crate::storage::chunk`]'s.
//!
//! An entry is a [`Summary`] of the interval's visible points that keeps
//! `count`, `good`, `min`, `max`, `sum`, `first` and `last` (with their
//! timestamps). It does **not** keep `m2`, the integrals or the timestamps
//! of the extremes: [`decode`] gives them as NaN / `first_ts`, and only the
//! functions that need none of them take rollups
//! ([`crate::aggregate::Accumulator::takes_rollups`]).
//!
//! # Byte layout (little endian)
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 1 | version (1) |
//! | 1 | 1 | flags: bit 0 every point is good (no `good` codes follow) |
//! | 2 | 2 | entries `n` (≥ 1) |
//! | 4 | 8 | span, µs (> 0) |
//! | 12 | 8 | interval index of the first entry (its start is index × span) |
//! | 20 | 8 | the first entry's `first` value, raw bits |
//! | 28 | 20 | byte lengths (u32) of the timing, `first`, `last`, `min` and `max` streams |
//! | 48 | … | the six streams: timing, `first`, `last`, `min`, `max`, `sum` (to the end) |
//!
//! Each stream is a bit stream ([`crate::storage::codec::bits`]) with one
//! code per entry. Timing, per entry: the interval index step minus one,
//! the count's change, `count − good` (unless flag bit 0), the change of
//! `first_ts`'s offset into its interval, the change of `last_ts −
//! first_ts` (each a delta of delta code of
//! [`crate::storage::codec::timestamps`], so a regular signal costs one bit
//! each). A value stream holds its field against the previous entry's with
//! the value code of [`crate::storage::codec::values`] (decimal deltas for
//! plant signals), all five starting from the raw value at offset 20.
//! Columns, so a reader decodes only the fields its function reads (a mean
//! reads the timing and `sum`).
//!
//! [`decode`] checks the structure (version, stream lengths, counts, every
//! timestamp inside its interval and ordered, `min ≤ first, last ≤ max`
//! where those were read, no NaN, no stream overrun) and never panics; a rollup that fails is not used (the
//! caller decodes the segment instead).

use crate::aggregate::{fields, Summary, GOOD};
use crate::storage::codec::bits::BitReader;
use crate::storage::codec::timestamps::{put_dod, read_dod};
use crate::storage::codec::values::ValueState;

/// Layout version written now.
pub const VERSION: u8 = 1;
/// Bytes before the bit stream.
pub const HEADER: usize = 48;
/// Entries one rollup holds at most.
pub const MAX_ENTRIES: usize = u16::MAX as usize;

const ALL_GOOD: u8 = 1;

/// Collects one segment's points (in time order) into per-interval
/// summaries.
///
/// Sums of decimal values (what plant signals are: `12.3`, `0.05`) are
/// added as integers at their scale and stored as that exact decimal,
/// which is at least as close to the true sum as adding the f64s and
/// costs a decimal delta in the stream instead of ~50 XOR bits.
pub struct Builder {
    span: i64,
    min_points: u32,
    entries: Vec<(i64, Summary)>,
    cur: Option<Interval>,
    /// A point came out of order: no rollup for this segment.
    broken: bool,
}

/// One interval's statistics while its points come in: only what a
/// rollup keeps (compaction runs this per point).
#[derive(Clone, Copy)]
struct Interval {
    k: i64,
    count: u32,
    good: u32,
    min: f64,
    max: f64,
    sum: f64,
    first_ts: i64,
    first: f64,
    last_ts: i64,
    last: f64,
    dsum: DecimalSum,
}

impl Interval {
    fn new(k: i64, ts: i64, v: f64, q: u8) -> Interval {
        let mut dsum = DecimalSum::ZERO;
        dsum.add(v);
        Interval {
            k,
            count: 1,
            good: u32::from(q >= GOOD),
            min: v,
            max: v,
            sum: v,
            first_ts: ts,
            first: v,
            last_ts: ts,
            last: v,
            dsum,
        }
    }

    /// Adds a later point; false if it is not later or the count is full.
    #[inline]
    fn push(&mut self, ts: i64, v: f64, q: u8) -> bool {
        if ts <= self.last_ts || self.count == u32::MAX {
            return false;
        }
        self.count += 1;
        self.good += u32::from(q >= GOOD);
        if v < self.min {
            self.min = v;
        }
        if v > self.max {
            self.max = v;
        }
        self.sum += v;
        self.last_ts = ts;
        self.last = v;
        self.dsum.add(v);
        true
    }

    fn summary(&self) -> Summary {
        Summary {
            count: self.count,
            good: self.good,
            min: self.min,
            max: self.max,
            sum: self.dsum.value().unwrap_or(self.sum),
            m2: f64::NAN,
            first_ts: self.first_ts,
            first: self.first,
            last_ts: self.last_ts,
            last: self.last,
            integral_step: f64::NAN,
            integral_linear: f64::NAN,
            min_ts: self.first_ts,
            max_ts: self.first_ts,
        }
    }
}

/// Decimal places tried for an exact sum.
const MAX_DIGITS: u32 = 6;

/// An exact sum of decimals: `int / 10^digits`, or `None` once a value was
/// not a decimal of at most [`MAX_DIGITS`] places.
#[derive(Clone, Copy)]
struct DecimalSum(Option<(i128, u32)>);

impl DecimalSum {
    const ZERO: DecimalSum = DecimalSum(Some((0, 0)));

    #[inline]
    fn add(&mut self, v: f64) {
        let Some((int, digits)) = self.0 else {
            return;
        };
        // Most values have the scale of the ones before: one try.
        let p = POW10[digits as usize];
        let i = (v * p).round();
        if i.abs() < 9.0e15 && i / p == v {
            self.0 = Some((int + i as i128, digits));
            return;
        }
        self.0 = decimal(v).map(|(i, d)| {
            let to = d.max(digits);
            (
                int * 10i128.pow(to - digits) + i128::from(i) * 10i128.pow(to - d),
                to,
            )
        });
    }

    /// The sum as the f64 the value codec's decimal form reconstructs.
    fn value(&self) -> Option<f64> {
        let (int, d) = self.0?;
        (int.abs() < 1 << 53).then(|| int as f64 / POW10[d as usize])
    }
}

/// Powers of ten up to [`MAX_DIGITS`] (exact in f64).
const POW10: [f64; MAX_DIGITS as usize + 1] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6];

/// `v` as `i / 10^d` with the fewest places `d` (at most [`MAX_DIGITS`]).
fn decimal(v: f64) -> Option<(i64, u32)> {
    (0..=MAX_DIGITS).find_map(|d| {
        let p = POW10[d as usize];
        let i = (v * p).round();
        (i.abs() < 9.0e15 && i / p == v).then_some((i as i64, d))
    })
}

impl Builder {
    /// A builder for intervals of `span` µs (> 0) that stores a rollup
    /// only when its entries average at least `min_points` points.
    pub fn new(span: i64, min_points: u32) -> Builder {
        Builder {
            span: span.max(1),
            min_points,
            entries: Vec::new(),
            cur: None,
            broken: false,
        }
    }

    /// Adds one point after all the points already in (NaN values count
    /// nowhere, as in [`Summary`]).
    #[inline]
    pub fn push(&mut self, ts: i64, value: f64, quality: u8) {
        if value.is_nan() {
            return;
        }
        let k = ts.div_euclid(self.span);
        match &mut self.cur {
            Some(c) if c.k == k => {
                if !c.push(ts, value, quality) {
                    self.broken = true;
                }
            }
            Some(c) if c.k > k => self.broken = true,
            _ => {
                self.close();
                self.cur = Some(Interval::new(k, ts, value, quality));
            }
        }
    }

    fn close(&mut self) {
        if let Some(c) = self.cur.take() {
            self.entries.push((c.k, c.summary()));
        }
    }

    /// The encoded rollup of everything pushed, or `None` when it is not
    /// worth storing (one interval, too few points per interval, too many
    /// intervals) or the points were not in order. Resets the builder.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        self.close();
        let entries = std::mem::take(&mut self.entries);
        if std::mem::take(&mut self.broken) {
            return None;
        }
        let points: u64 = entries.iter().map(|(_, s)| u64::from(s.count)).sum();
        if entries.len() < 2
            || entries.len() > MAX_ENTRIES
            || points < u64::from(self.min_points) * entries.len() as u64
        {
            return None;
        }
        let out = encode(self.span, &entries);
        // Never store what would not read back.
        (decode(&out, fields::ALL).ok()?.1.len() == entries.len()).then_some(out)
    }
}

fn encode(span: i64, entries: &[(i64, Summary)]) -> Vec<u8> {
    let all_good = entries.iter().all(|(_, s)| s.good == s.count);
    let (k0, s0) = entries[0];
    let start = s0.first.to_bits();
    // The timing stream, then one stream per value column.
    let mut streams: [Vec<u8>; 6] = Default::default();
    let mut frees = [0u8; 6];
    let mut cols = [ValueState::new(start); 5];
    let (mut pk, mut pcount, mut poff, mut plen) = (k0.wrapping_sub(1), 0i64, 0i64, 0i64);
    for &(k, s) in entries {
        let off = s.first_ts.wrapping_sub(k.wrapping_mul(span));
        let len = s.last_ts.wrapping_sub(s.first_ts);
        let count = i64::from(s.count);
        let (t, f) = (&mut streams[0], &mut frees[0]);
        put_dod(t, f, k.wrapping_sub(pk).wrapping_sub(1));
        put_dod(t, f, count - pcount);
        if !all_good {
            put_dod(t, f, i64::from(s.count - s.good));
        }
        put_dod(t, f, off.wrapping_sub(poff));
        put_dod(t, f, len.wrapping_sub(plen));
        let values = [s.first, s.last, s.min, s.max, s.sum];
        for (i, (c, v)) in cols.iter_mut().zip(values).enumerate() {
            c.put(&mut streams[i + 1], &mut frees[i + 1], v.to_bits());
        }
        (pk, pcount, poff, plen) = (k, count, off, len);
    }
    let body: usize = streams.iter().map(Vec::len).sum();
    let mut out = Vec::with_capacity(HEADER + body);
    out.push(VERSION);
    out.push(if all_good { ALL_GOOD } else { 0 });
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&span.to_le_bytes());
    out.extend_from_slice(&k0.to_le_bytes());
    out.extend_from_slice(&start.to_le_bytes());
    for st in &streams[..5] {
        out.extend_from_slice(&(st.len() as u32).to_le_bytes());
    }
    for st in &streams {
        out.extend_from_slice(st);
    }
    out
}

/// Why a rollup was not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollupError(pub &'static str);

impl std::fmt::Display for RollupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

fn le8(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The span and the per-interval summaries of an encoded rollup, in time
/// order, with the value columns of `need` ([`fields`]; the others NaN;
/// see the module doc for what the summaries leave out).
pub fn decode(b: &[u8], need: u8) -> Result<(i64, Vec<Summary>), RollupError> {
    let bad = RollupError;
    if b.len() < HEADER {
        return Err(bad("rollup shorter than its header"));
    }
    if b[0] != VERSION {
        return Err(bad("unknown rollup version"));
    }
    let all_good = b[1] & ALL_GOOD != 0;
    let n = u16::from_le_bytes([b[2], b[3]]) as usize;
    let span = le8(b, 4) as i64;
    let k0 = le8(b, 12) as i64;
    let start = le8(b, 20);
    if n == 0 || span <= 0 {
        return Err(bad("rollup without entries or span"));
    }
    // Stream boundaries: timing, first, last, min, max, then sum to the end.
    let mut at = [HEADER; 7];
    for i in 0..5 {
        let len = u32::from_le_bytes([b[28 + 4 * i], b[29 + 4 * i], b[30 + 4 * i], b[31 + 4 * i]]);
        at[i + 1] = at[i]
            .checked_add(len as usize)
            .filter(|&e| e <= b.len())
            .ok_or(bad("rollup stream lengths exceed it"))?;
    }
    at[6] = b.len();
    let mut out = Vec::with_capacity(n);
    let mut t = BitReader::new(&b[at[0]..at[1]]);
    let (mut pk, mut pcount, mut poff, mut plen) = (k0.wrapping_sub(1), 0i64, 0i64, 0i64);
    // Codes per entry in the timing stream; all of them 0 (one bit each)
    // when an interval follows the previous one with the same count,
    // offset and length: a regular signal's common case.
    let codes = if all_good { 4 } else { 5 };
    for i in 0..n {
        if i > 0 && t.peek() >> (64 - codes) == 0 {
            // Every delta zero: the next interval; count, offset and
            // length are the previous entry's, which passed the checks,
            // and no point is bad. Only the times move.
            t.skip(codes);
            let prev = out.last().copied().unwrap_or(Summary::EMPTY);
            let k = pk
                .checked_add(1)
                .ok_or(bad("rollup interval out of range"))?;
            let first_ts = k
                .checked_mul(span)
                .ok_or(bad("rollup interval out of range"))?
                .checked_add(poff)
                .ok_or(bad("rollup time out of range"))?;
            let last_ts = first_ts
                .checked_add(plen)
                .ok_or(bad("rollup time out of range"))?;
            out.push(Summary {
                good: prev.count,
                first_ts,
                last_ts,
                min_ts: first_ts,
                max_ts: first_ts,
                ..prev
            });
            pk = k;
            continue;
        }
        let k = pk
            .checked_add(read_dod(&mut t))
            .and_then(|k| k.checked_add(1))
            .ok_or(bad("rollup interval out of range"))?;
        if i > 0 && k <= pk {
            return Err(bad("rollup intervals out of order"));
        }
        let count = pcount
            .checked_add(read_dod(&mut t))
            .ok_or(bad("rollup count out of range"))?;
        let bad_points = if all_good { 0 } else { read_dod(&mut t) };
        let off = poff.wrapping_add(read_dod(&mut t));
        let len = plen.wrapping_add(read_dod(&mut t));
        let lo = k
            .checked_mul(span)
            .ok_or(bad("rollup interval out of range"))?;
        let first_ts = lo.checked_add(off).ok_or(bad("rollup time out of range"))?;
        let last_ts = first_ts
            .checked_add(len)
            .ok_or(bad("rollup time out of range"))?;
        let count32 = u32::try_from(count).map_err(|_| bad("rollup count out of range"))?;
        if count32 == 0
            || !(0..=count).contains(&bad_points)
            || off < 0
            || off >= span
            || len < 0
            || len >= span - off
            || i128::from(count) - 1 > i128::from(len)
        {
            return Err(bad("rollup entry fails its checks"));
        }
        out.push(Summary {
            count: count32,
            good: count32 - bad_points as u32,
            min: f64::NAN,
            max: f64::NAN,
            sum: f64::NAN,
            m2: f64::NAN,
            first_ts,
            first: f64::NAN,
            last_ts,
            last: f64::NAN,
            integral_step: f64::NAN,
            integral_linear: f64::NAN,
            min_ts: first_ts,
            max_ts: first_ts,
        });
        (pk, pcount, poff, plen) = (k, count, off, len);
    }
    if t.overran() {
        return Err(bad("rollup timing stream ends early"));
    }
    let columns = [
        fields::FIRST,
        fields::LAST,
        fields::MIN,
        fields::MAX,
        fields::SUM,
    ];
    for (c, &field) in columns.iter().enumerate() {
        if need & field == 0 {
            continue;
        }
        let mut r = BitReader::new(&b[at[c + 1]..at[c + 2]]);
        let mut st = ValueState::new(start);
        for s in out.iter_mut() {
            let v = f64::from_bits(st.read(&mut r).ok_or(bad("rollup value code damaged"))?);
            if v.is_nan() {
                return Err(bad("rollup value is NaN"));
            }
            match field {
                fields::FIRST => s.first = v,
                fields::LAST => s.last = v,
                fields::MIN => s.min = v,
                fields::MAX => s.max = v,
                _ => s.sum = v,
            }
        }
        if r.overran() {
            return Err(bad("rollup value stream ends early"));
        }
    }
    // The order of the extremes, where both sides were read.
    for s in &out {
        let (lo, hi) = (s.first.min(s.last), s.first.max(s.last));
        if (need & fields::MIN != 0 && need & (fields::FIRST | fields::LAST) != 0 && s.min > lo)
            || (need & fields::MAX != 0 && need & (fields::FIRST | fields::LAST) != 0 && s.max < hi)
            || (need & fields::MIN != 0 && need & fields::MAX != 0 && s.min > s.max)
        {
            return Err(bad("rollup extremes out of order"));
        }
    }
    Ok((span, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn build(span: i64, pts: &[(i64, f64, u8)]) -> Option<Vec<u8>> {
        let mut b = Builder::new(span, 8);
        for &(ts, v, q) in pts {
            b.push(ts, v, q);
        }
        b.finish()
    }

    /// The brute force: a Summary per interval over the visible points.
    fn expected(span: i64, pts: &[(i64, f64, u8)]) -> Vec<Summary> {
        let mut out: Vec<(i64, Summary)> = Vec::new();
        for &(ts, v, q) in pts.iter().filter(|p| !p.1.is_nan()) {
            let k = ts.div_euclid(span);
            match out.last_mut() {
                Some((lk, s)) if *lk == k => s.push(ts, v, q).unwrap(),
                _ => {
                    let mut s = Summary::EMPTY;
                    s.push(ts, v, q).unwrap();
                    out.push((k, s));
                }
            }
        }
        out.into_iter().map(|(_, s)| s).collect()
    }

    fn same(a: &Summary, b: &Summary) -> bool {
        a.count == b.count
            && a.good == b.good
            && a.min.to_bits() == b.min.to_bits()
            && a.max.to_bits() == b.max.to_bits()
            && (a.sum - b.sum).abs() <= 1e-9 * a.sum.abs().max(1.0)
            && (a.first_ts, a.last_ts) == (b.first_ts, b.last_ts)
            && a.first.to_bits() == b.first.to_bits()
            && a.last.to_bits() == b.last.to_bits()
    }

    #[test]
    fn an_hour_of_plant_data_costs_a_few_bytes_a_minute() {
        let pts: Vec<(i64, f64, u8)> = (0..3600)
            .map(|i| {
                let v = ((i as f64 / 300.0).sin() * 500.0).round() / 10.0;
                (1_699_999_980_000_000 + i * 1_000_000, v, 192)
            })
            .collect();
        let b = build(60_000_000, &pts).expect("rollup");
        let (span, got) = decode(&b, fields::ALL).unwrap();
        assert_eq!(span, 60_000_000);
        let want = expected(60_000_000, &pts);
        assert_eq!(got.len(), 60);
        assert!(got.iter().zip(&want).all(|(a, b)| same(a, b)));
        assert!(b.len() < 60 * 12, "{} bytes for 60 minutes", b.len());
    }

    /// Regular minutes take the decoder's all-deltas-zero path; a bad
    /// point, a gap and a shorter minute take the other, in both
    /// layouts (with and without `good` codes).
    #[test]
    fn regular_minutes_gaps_and_bad_points_decode_exactly() {
        let t0 = 1_699_999_980_000_000i64;
        for with_bad in [false, true] {
            let pts: Vec<(i64, f64, u8)> = (0..7200i64)
                .filter(|i| !(3000..3180).contains(i) && *i != 4205)
                .map(|i| {
                    let q = if with_bad && (i == 1810 || i == 6001) {
                        0
                    } else {
                        192
                    };
                    (t0 + i * 1_000_000, (i % 97) as f64 * 0.5, q)
                })
                .collect();
            let b = build(60_000_000, &pts).expect("rollup");
            assert_eq!(b[1] & ALL_GOOD == 0, with_bad);
            let want = expected(60_000_000, &pts);
            for need in [fields::ALL, fields::SUM, 0] {
                let (_, got) = decode(&b, need).unwrap();
                assert_eq!(got.len(), want.len());
                for (a, w) in got.iter().zip(&want) {
                    assert_eq!(
                        (a.count, a.good, a.first_ts, a.last_ts),
                        (w.count, w.good, w.first_ts, w.last_ts)
                    );
                    if need == fields::ALL {
                        assert!(same(a, w), "{a:?} != {w:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn sparse_or_single_interval_segments_get_none() {
        let one: Vec<_> = (0..50).map(|i| (i * 1_000_000, 1.0, 192)).collect();
        assert!(build(60_000_000, &one).is_none());
        let sparse: Vec<_> = (0..50).map(|i| (i * 30_000_000, 1.0, 192)).collect();
        assert!(build(60_000_000, &sparse).is_none());
    }

    proptest! {
        #![proptest_config(crate::proptest_config::config(256))]
        #[test]
        fn round_trips_and_damage_never_panics(
            start in -1_000_000_000_000i64..1_000_000_000_000,
            steps in proptest::collection::vec((1i64..20_000_000, -3i32..4, 0u8..3), 20..600),
            span in prop_oneof![Just(1_000_000i64), Just(60_000_000), 1i64..100_000_000],
            flip in any::<(usize, u8)>(),
        ) {
            let mut ts = start;
            let mut v = 10.0;
            let mut pts = Vec::new();
            for (dt, dv, q) in steps {
                ts += dt;
                v += f64::from(dv) * 0.1;
                let value = if dv == -3 { f64::NAN } else { (v * 10.0f64).round() / 10.0 };
                pts.push((ts, value, if q == 0 { 0 } else { 192 }));
            }
            let want = expected(span, &pts);
            match build(span, &pts) {
                Some(b) => {
                    let (s, got) = decode(&b, fields::ALL).unwrap();
                    // A mean's columns alone: the same counts and sums.
                    let (_, sums) = decode(&b, fields::SUM).unwrap();
                    for (a, w) in sums.iter().zip(&got) {
                        prop_assert!(a.count == w.count && a.sum == w.sum && a.first.is_nan());
                    }
                    prop_assert_eq!(s, span);
                    prop_assert_eq!(got.len(), want.len());
                    for (a, w) in got.iter().zip(&want) {
                        prop_assert!(same(a, w), "{:?} != {:?}", a, w);
                    }
                    let mut d = b.clone();
                    let i = flip.0 % d.len();
                    d[i] ^= flip.1 | 1;
                    for need in [fields::ALL, fields::SUM, 0] {
                        let _ = decode(&d, need);
                        let _ = decode(&d[..i], need);
                    }
                }
                None => {
                    let points: usize = want.iter().map(|s| s.count as usize).sum();
                    prop_assert!(
                        want.len() < 2 || points < 8 * want.len()
                    );
                }
            }
        }
    }
}
