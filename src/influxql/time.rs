//! Durations, time literals and the time range of a `WHERE` clause.
//!
//! Owns InfluxQL's time arithmetic: duration text (`1h30m`, `10µs`), time
//! strings (`'2026-01-01T00:00:00Z'`, `'2026-01-01 00:00:00'`,
//! `'2026-01-01'`), and [`time_range`], which splits a condition into the
//! `[start, end)` it puts on `time` and the rest. Pure functions on
//! nanoseconds: no clock (the caller passes `now`), no time zone database.
//!
//! InfluxDB 1.x semantics kept (checked against InfluxDB 1.6.7):
//! - `time > x` starts at `x + 1`, `time <= x` ends (exclusive) at `x + 1`,
//!   `time = x` is `[x, x + 1)`; bounds from several terms intersect;
//! - the time side may be an integer (ns), a float (truncated), a duration
//!   (ns since the epoch), a time string, `now()`, and `+`/`-` of those;
//!   `x < time` is `time > x`;
//! - `!=` or a regex on `time` is an error ("invalid time comparison
//!   operator: !="), as are operands that are not times ("invalid
//!   operation: time and *influxql.VarRef are not compatible");
//! - a bare non-boolean condition (`WHERE host`) is "invalid condition
//!   expression: host".
//!
//! One deliberate difference: InfluxDB 1.x silently intersects time bounds
//! found under `OR` (`host = 'a' OR time > now() - 1h` returns only rows of
//! the last hour, and `time = 1s OR time = 3s` returns nothing); that gives
//! wrong answers, so here any `time` comparison under an `OR` is the error
//! "cannot use OR with time conditions". Time strings without a zone are
//! read as UTC (InfluxDB reads them in the `tz()` zone; the executor must
//! refuse or handle `tz()` with such strings).

use std::fmt;

use super::ast::{Binary, BinaryOp, Expr, Span};

const NS_PER_US: i64 = 1_000;
const NS_PER_MS: i64 = 1_000_000;
const NS_PER_S: i64 = 1_000_000_000;
const NS_PER_M: i64 = 60 * NS_PER_S;
const NS_PER_H: i64 = 60 * NS_PER_M;
const NS_PER_D: i64 = 24 * NS_PER_H;
const NS_PER_W: i64 = 7 * NS_PER_D;

/// The smallest time InfluxDB represents (1677-09-21T00:12:43.145224194Z);
/// the two below are sentinels.
pub const MIN_TIME: i64 = i64::MIN + 2;
/// The largest time InfluxDB represents (2262-04-11T23:47:16.854775806Z).
pub const MAX_TIME: i64 = i64::MAX - 1;

/// Parses InfluxQL duration text (`10s`, `1h30m`, `15µs`, `-5m`) into ns.
///
/// Units: `ns`, `u`/`µ` (µs), `ms`, `s`, `m`, `h`, `d`, `w`. Errors are
/// InfluxDB's texts: "invalid duration", or "overflowed duration ..." when
/// the total does not fit in an i64 of nanoseconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let invalid = || "invalid duration".to_string();
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if s.chars().count() < 2 || body.is_empty() {
        return Err(invalid());
    }
    let mut total: i64 = 0;
    let mut rest = body;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 || digits == rest.len() {
            return Err(invalid());
        }
        let n: i64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ns") {
            (1, 2)
        } else if rest.starts_with("ms") {
            (NS_PER_MS, 2)
        } else if rest.starts_with('µ') {
            (NS_PER_US, 'µ'.len_utf8())
        } else {
            match rest.as_bytes()[0] {
                b'u' => (NS_PER_US, 1),
                b's' => (NS_PER_S, 1),
                b'm' => (NS_PER_M, 1),
                b'h' => (NS_PER_H, 1),
                b'd' => (NS_PER_D, 1),
                b'w' => (NS_PER_W, 1),
                _ => return Err(invalid()),
            }
        };
        let unit_text = &rest[..len];
        rest = &rest[len..];
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| {
                format!("overflowed duration {n}{unit_text}: choose a smaller duration or INF")
            })?;
    }
    Ok(if neg { -total } else { total })
}

/// Writes ns as the shortest exact InfluxQL duration (`90m` is `90m`,
/// `7d` is `1w`, `0` is `0s`); reads back with [`parse_duration`].
pub fn format_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".to_string();
    }
    for (unit, name) in [
        (NS_PER_W, "w"),
        (NS_PER_D, "d"),
        (NS_PER_H, "h"),
        (NS_PER_M, "m"),
        (NS_PER_S, "s"),
        (NS_PER_MS, "ms"),
        (NS_PER_US, "u"),
    ] {
        if ns % unit == 0 {
            return format!("{}{name}", ns / unit);
        }
    }
    format!("{ns}ns")
}

/// True when InfluxDB would try to read the string as a time
/// (`^\d{4}-\d{2}-\d{2}` and then anything, or exactly a date).
pub fn looks_like_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit)
}

/// Parses a time string as InfluxDB does into ns since the epoch:
/// `YYYY-MM-DD`, `YYYY-MM-DD HH:MM:SS[.fraction]` (UTC), or RFC 3339
/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`. `None` when it is not one
/// ("invalid timestamp string") or is outside what an i64 of ns holds.
pub fn parse_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if !looks_like_time(s) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = b.get(r)?;
        if !t.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(t).ok()?.parse().ok()
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    if b.len() == 10 {
        return (days as i128 * NS_PER_D as i128).try_into().ok();
    }
    let sep = b[10];
    if (sep != b' ' && sep != b'T') || b.len() < 19 || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let mut i = 19;
    let mut frac: i64 = 0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &s[start..i];
        if digits.is_empty() || digits.len() > 9 {
            return None;
        }
        frac = digits.parse::<i64>().ok()? * 10_i64.pow(9 - digits.len() as u32);
    }
    let mut offset_s: i64 = 0;
    let tail = &s[i..];
    if sep == b'T' {
        match tail {
            "Z" => {}
            _ => {
                let t = tail.as_bytes();
                if t.len() != 6 || (t[0] != b'+' && t[0] != b'-') || t[3] != b':' {
                    return None;
                }
                let oh = num(i + 1..i + 3)?;
                let om = num(i + 4..i + 6)?;
                if oh > 23 || om > 59 {
                    return None;
                }
                offset_s = (oh * 3600 + om * 60) * if t[0] == b'-' { -1 } else { 1 };
            }
        }
    } else if !tail.is_empty() {
        return None;
    }
    let secs = days as i128 * 86_400 + (h * 3600 + mi * 60 + sec - offset_s) as i128;
    (secs * NS_PER_S as i128 + frac as i128).try_into().ok()
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Year, month, day of a day count since 1970-01-01 (proleptic
/// Gregorian; H. Hinnant's algorithm; the inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// An error in the time part of a condition: InfluxDB's message and the
/// part of the query it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeError {
    /// The message (InfluxDB's text where InfluxDB has one).
    pub message: String,
    /// The comparison or expression concerned (bytes of the query; empty
    /// for trees built by hand).
    pub span: Span,
}

impl fmt::Display for TimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TimeError {}

/// A condition split into its time bounds and the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeCondition {
    /// First ns included; `None`: unbounded.
    pub start: Option<i64>,
    /// First ns excluded; `None`: unbounded. `start >= end` means no time
    /// can match.
    pub end: Option<i64>,
    /// The condition without its time comparisons; `None` when nothing is
    /// left.
    pub rest: Option<Expr>,
}

impl TimeCondition {
    /// True when no timestamp can satisfy the bounds.
    pub fn is_empty(&self) -> bool {
        matches!((self.start, self.end), (Some(s), Some(e)) if s >= e)
    }
}

/// Splits `cond` into the `[start, end)` range it imposes on `time` and the
/// remaining condition, with `now()` = `now_ns`. See the module doc for the
/// rules and the one deliberate difference from InfluxDB (`OR`).
pub fn time_range(cond: &Expr, now_ns: i64) -> Result<TimeCondition, TimeError> {
    let mut b = Bounds {
        lo: i128::MIN,
        hi: i128::MAX,
    };
    let rest = split(cond, now_ns, &mut b)?;
    let clamp = |v: i128| v.clamp(i64::MIN as i128, i64::MAX as i128) as i64;
    let empty = b.lo >= b.hi || b.lo > i64::MAX as i128 || b.hi <= i64::MIN as i128;
    let (start, end) = if empty {
        // Empty: keep it visibly empty even where a bound is out of range.
        (Some(clamp(b.lo)), Some(clamp(b.lo)))
    } else {
        let start = (b.lo != i128::MIN).then(|| clamp(b.lo));
        // An end beyond i64::MAX excludes no timestamp.
        let end = (b.hi <= i64::MAX as i128).then(|| clamp(b.hi));
        (start, end)
    };
    Ok(TimeCondition { start, end, rest })
}

struct Bounds {
    lo: i128,
    hi: i128,
}

fn err(message: impl Into<String>, span: Span) -> TimeError {
    TimeError {
        message: message.into(),
        span,
    }
}

/// Removes time comparisons from `e`, narrowing `b`; returns what is left.
fn split(e: &Expr, now: i64, b: &mut Bounds) -> Result<Option<Expr>, TimeError> {
    match e {
        Expr::And(terms) => {
            let mut left = Vec::new();
            for t in terms {
                if let Some(r) = split(t, now, b)? {
                    left.push(r);
                }
            }
            Ok(match left.len() {
                0 => None,
                1 => left.pop(),
                _ => Some(Expr::And(left)),
            })
        }
        Expr::Or(terms) => {
            for t in terms {
                if let Some(span) = find_time_comparison(t) {
                    return Err(err("cannot use OR with time conditions", span));
                }
                check_condition(t)?;
            }
            Ok(Some(e.clone()))
        }
        Expr::Paren(inner) => Ok(split(inner, now, b)?.map(|r| match r {
            r @ (Expr::Binary(_) | Expr::And(_) | Expr::Or(_)) => Expr::Paren(Box::new(r)),
            r => r,
        })),
        Expr::Binary(bin) if bin.lhs.is_time_ref() => {
            time_bound(bin.op, &bin.rhs, bin, now, b)?;
            Ok(None)
        }
        Expr::Binary(bin) if bin.rhs.is_time_ref() => {
            let op = match bin.op {
                BinaryOp::Gt => BinaryOp::Lt,
                BinaryOp::Lt => BinaryOp::Gt,
                BinaryOp::Gte => BinaryOp::Lte,
                BinaryOp::Lte => BinaryOp::Gte,
                op => op,
            };
            time_bound(op, &bin.lhs, bin, now, b)?;
            Ok(None)
        }
        Expr::Binary(_) | Expr::Bool(_) => Ok(Some(e.clone())),
        other => Err(err(
            format!("invalid condition expression: {other}"),
            Span::default(),
        )),
    }
}

/// The logical shapes InfluxDB accepts as a condition.
fn check_condition(e: &Expr) -> Result<(), TimeError> {
    match e {
        Expr::And(v) | Expr::Or(v) => v.iter().try_for_each(check_condition),
        Expr::Paren(p) => check_condition(p),
        Expr::Binary(_) | Expr::Bool(_) => Ok(()),
        other => Err(err(
            format!("invalid condition expression: {other}"),
            Span::default(),
        )),
    }
}

/// The span of a `time` comparison inside a logical expression, if any.
fn find_time_comparison(e: &Expr) -> Option<Span> {
    match e {
        Expr::And(v) | Expr::Or(v) => v.iter().find_map(find_time_comparison),
        Expr::Paren(p) => find_time_comparison(p),
        Expr::Binary(b) if b.lhs.is_time_ref() || b.rhs.is_time_ref() => Some(b.span),
        _ => None,
    }
}

/// A value on the time side of a comparison, as InfluxDB's `Reduce` types it.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Time(i128),
    Duration(i128),
    Integer(i128),
    Number(f64),
    Str(String),
    /// Not reducible: the Go type name InfluxDB's message uses.
    Other(&'static str),
}

fn go_type(e: &Expr) -> &'static str {
    match e {
        Expr::VarRef(_) => "*influxql.VarRef",
        Expr::Call(_) => "*influxql.Call",
        Expr::Distinct(_) => "*influxql.Distinct",
        Expr::Binary(_) | Expr::And(_) | Expr::Or(_) => "*influxql.BinaryExpr",
        Expr::Paren(_) => "*influxql.ParenExpr",
        Expr::Integer(_) => "*influxql.IntegerLiteral",
        Expr::Unsigned(_) => "*influxql.UnsignedLiteral",
        Expr::Number(_) => "*influxql.NumberLiteral",
        Expr::String(_) => "*influxql.StringLiteral",
        Expr::Bool(_) => "*influxql.BooleanLiteral",
        Expr::Duration(_) => "*influxql.DurationLiteral",
        Expr::Regex(_) => "*influxql.RegexLiteral",
        Expr::Wildcard(_) => "*influxql.Wildcard",
        Expr::BoundParam(_) => "*influxql.BoundParameter",
    }
}

fn eval(e: &Expr, now: i64) -> Val {
    match e {
        Expr::Integer(n) => Val::Integer(*n as i128),
        Expr::Number(x) => Val::Number(*x),
        Expr::Duration(d) => Val::Duration(*d as i128),
        Expr::String(s) => Val::Str(s.clone()),
        Expr::Call(c) if c.name == "now" && c.args.is_empty() => Val::Time(now as i128),
        Expr::Paren(inner) => match eval(inner, now) {
            Val::Other(_) if matches!(**inner, Expr::Binary(_)) => {
                Val::Other("*influxql.ParenExpr")
            }
            v => v,
        },
        Expr::Binary(b) => {
            let (l, r) = (eval(&b.lhs, now), eval(&b.rhs, now));
            arith(b.op, l, r).unwrap_or(Val::Other("*influxql.BinaryExpr"))
        }
        other => Val::Other(go_type(other)),
    }
}

fn as_time(s: &str) -> Option<i128> {
    parse_time(s).map(i128::from)
}

/// InfluxDB's constant folding of `+ - * /` on times, durations and
/// numbers. Integer results saturate to the i64 range (InfluxDB wraps), so
/// the i128 arithmetic here never overflows.
fn arith(op: BinaryOp, l: Val, r: Val) -> Option<Val> {
    let sat = |v: i128| v.clamp(i64::MIN as i128, i64::MAX as i128);
    Some(match fold(op, l, r)? {
        Val::Time(t) => Val::Time(sat(t)),
        Val::Duration(d) => Val::Duration(sat(d)),
        Val::Integer(n) => Val::Integer(sat(n)),
        v => v,
    })
}

fn fold(op: BinaryOp, l: Val, r: Val) -> Option<Val> {
    use BinaryOp::*;
    use Val::*;
    Some(match (l, r) {
        (Duration(a), Duration(b)) => match op {
            Add => Duration(a + b),
            Sub => Duration(a - b),
            _ => return None,
        },
        (Duration(a), Integer(b)) => match op {
            Mul => Duration(a * b),
            Div if b == 0 => Duration(0),
            Div => Duration(a / b),
            _ => return None,
        },
        (Duration(a), Number(b)) => match op {
            Mul => Duration(a * (b as i64) as i128),
            Div if b as i64 == 0 => Duration(0),
            Div => Duration(a / (b as i64) as i128),
            _ => return None,
        },
        (Duration(a), Time(t)) if op == Add => Time(t + a),
        (Duration(a), Str(s)) if op == Add => Time(as_time(&s)? + a),
        (Integer(a), Integer(b)) => match op {
            Add => Integer(a + b),
            Sub => Integer(a - b),
            Mul => Integer(a * b),
            Div if b == 0 => Number(0.0),
            Div => Number(a as f64 / b as f64),
            _ => return None,
        },
        (Integer(a), Number(b)) => number_arith(op, a as f64, b)?,
        (Number(a), Integer(b)) => number_arith(op, a, b as f64)?,
        (Number(a), Number(b)) => number_arith(op, a, b)?,
        (Integer(a), Duration(d)) => match op {
            Add => Time(a + d),
            Sub => Time(a - d),
            _ => return None,
        },
        (Integer(a), Time(t)) if op == Add => Time(t + a),
        (Integer(a), Str(s)) if op == Add => Time(as_time(&s)? + a),
        (Str(a), Str(b)) => match op {
            Add => Str(a + &b),
            Sub => Duration(as_time(&a)? - as_time(&b)?),
            _ => return None,
        },
        (Str(s), r @ (Duration(_) | Integer(_) | Time(_))) => fold(op, Time(as_time(&s)?), r)?,
        (Time(t), Duration(d) | Integer(d)) => match op {
            Add => Time(t + d),
            Sub => Time(t - d),
            _ => return None,
        },
        (Time(a), Time(b)) if op == Sub => Duration(a - b),
        (Time(a), Str(s)) if op == Sub => Duration(a - as_time(&s)?),
        _ => return None,
    })
}

fn number_arith(op: BinaryOp, a: f64, b: f64) -> Option<Val> {
    Some(Val::Number(match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div if b == 0.0 => 0.0,
        BinaryOp::Div => a / b,
        _ => return None,
    }))
}

/// Narrows `b` by `time op value`.
fn time_bound(
    op: BinaryOp,
    value: &Expr,
    bin: &Binary,
    now: i64,
    b: &mut Bounds,
) -> Result<(), TimeError> {
    let span = bin.span;
    let v = match (value, eval(value, now)) {
        // A string straight after the operator is read as a time when it
        // looks like one (InfluxDB does not do this for strings in
        // arithmetic, which folding above already handled).
        (_, Val::Str(s)) if looks_like_time(&s) => match parse_time(&s) {
            Some(t) => Val::Time(t as i128),
            None => return Err(err("invalid timestamp string", span)),
        },
        (_, v) => v,
    };
    let t: i128 = match v {
        Val::Time(t) => {
            if t > MAX_TIME as i128 {
                return Err(err(format!("time {t} overflows time literal"), span));
            }
            if t < MIN_TIME as i128 + 1 {
                return Err(err(format!("time {t} underflows time literal"), span));
            }
            t
        }
        Val::Duration(d) | Val::Integer(d) => d.clamp(i64::MIN as i128, i64::MAX as i128),
        Val::Number(x) => x as i64 as i128,
        Val::Str(_) => {
            return Err(err(
                "invalid operation: time and *influxql.StringLiteral are not compatible",
                span,
            ))
        }
        Val::Other(ty) => {
            return Err(err(
                format!("invalid operation: time and {ty} are not compatible"),
                span,
            ))
        }
    };
    match op {
        BinaryOp::Gt => b.lo = b.lo.max(t + 1),
        BinaryOp::Gte => b.lo = b.lo.max(t),
        BinaryOp::Lt => b.hi = b.hi.min(t),
        BinaryOp::Lte => b.hi = b.hi.min(t + 1),
        BinaryOp::Eq => {
            b.lo = b.lo.max(t);
            b.hi = b.hi.min(t + 1);
        }
        other => {
            return Err(err(
                format!("invalid time comparison operator: {}", other.as_str()),
                span,
            ))
        }
    }
    Ok(())
}
