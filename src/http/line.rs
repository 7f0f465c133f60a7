//! InfluxDB line protocol → xtdb points, strict.
//!
//! `measurement[,tk=tv...] fk=fv[,fk=fv...] [timestamp]`, one point per line.
//! Every field of a line becomes its own series, named by its canonical
//! *series key* `measurement[,tk=tv...] field` (tags sorted by key, the
//! line-protocol escapes kept, so the key parses back unambiguously); the
//! catalog maps that key to a stable tag id.
//!
//! Rules (each violation names its 1-based line number; the whole batch is
//! rejected, as InfluxDB 2.x does):
//! - lines end with `\n`; a `\r` before it is dropped (CRLF accepted);
//!   empty lines and lines starting with `#` are skipped;
//! - each line must be valid UTF-8;
//! - escapes: `\,` and `\ ` in measurements; `\,` `\=` `\ ` in tag keys,
//!   tag values and field keys; a backslash before anything else is literal;
//! - tag keys and values and field keys are non-empty; a tag key or field
//!   key may appear only once per line;
//! - field values: float (`1`, `-1.5e3`), integer `1i`, unsigned `1u`,
//!   booleans (`t`/`true`/`True`/`TRUE`, `f`/...) as 1.0 / 0.0. NaN, `inf`
//!   and floats that overflow to infinity (`1e400`) are rejected: a
//!   historian marks bad samples with a quality code, not with NaN. String
//!   values are rejected (xtdb stores numbers only). Integers beyond 2^53
//!   lose precision as f64;
//! - a field named `quality` or `q` is not a series: its value (an integer
//!   0..=255, `192i` or `192`) is the quality of the line's other fields,
//!   default 192 (OPC "good"). A line needs at least one other field;
//! - the timestamp is an integer in the request's precision, converted to
//!   microseconds (nanoseconds are floored); it must lie in the range a
//!   nanosecond i64 can hold (1677-09-21 .. 2262-04-11), as in InfluxDB. A
//!   line without a timestamp gets the server's clock at arrival.

use std::borrow::Cow;
use std::fmt;

use smallvec::SmallVec;

use crate::runtime::admission::TimeWindow;

/// Timestamp precision of a write request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precision {
    /// Nanoseconds (the default).
    Ns,
    /// Microseconds.
    Us,
    /// Milliseconds.
    Ms,
    /// Seconds.
    S,
    /// Minutes (InfluxDB 1.x only).
    M,
    /// Hours (InfluxDB 1.x only).
    H,
}

impl Precision {
    /// `precision=` of InfluxDB 1.x `/write`: `n ns u us ms s m h`
    /// (missing = ns). `None` for anything else.
    pub fn parse_v1(s: Option<&str>) -> Option<Precision> {
        Some(match s? {
            "n" | "ns" => Precision::Ns,
            "u" | "us" | "µ" => Precision::Us,
            "ms" => Precision::Ms,
            "s" => Precision::S,
            "m" => Precision::M,
            "h" => Precision::H,
            _ => return None,
        })
    }

    /// `precision=` of InfluxDB 2.x `/api/v2/write`: `ns us ms s` (also
    /// `n`, `u`). `None` for anything else.
    pub fn parse_v2(s: &str) -> Option<Precision> {
        Some(match s {
            "n" | "ns" => Precision::Ns,
            "u" | "us" => Precision::Us,
            "ms" => Precision::Ms,
            "s" => Precision::S,
            _ => return None,
        })
    }

    /// `t` in this precision, in microseconds, if representable.
    pub fn to_us(self, t: i64) -> Option<i64> {
        let us = match self {
            Precision::Ns => t.div_euclid(1000),
            Precision::Us => t,
            Precision::Ms => t.checked_mul(1_000)?,
            Precision::S => t.checked_mul(1_000_000)?,
            Precision::M => t.checked_mul(60_000_000)?,
            Precision::H => t.checked_mul(3_600_000_000)?,
        };
        (MIN_US..=MAX_US).contains(&us).then_some(us)
    }
}

/// Earliest accepted timestamp, µs (what a nanosecond i64 can hold).
pub const MIN_US: i64 = i64::MIN / 1000 + 1;
/// Latest accepted timestamp, µs.
pub const MAX_US: i64 = i64::MAX / 1000;

/// Quality when a line has no `quality`/`q` field (OPC DA "good").
pub const DEFAULT_QUALITY: u8 = 192;

/// One parsed sample, before its series key is resolved to a tag id.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Canonical series key (`measurement[,tk=tv...] field`).
    pub key: String,
    /// Timestamp, µs.
    pub ts: i64,
    /// Value.
    pub value: f64,
    /// Quality.
    pub quality: u8,
}

/// The first bad line of a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number.
    pub line: usize,
    /// Why it was rejected.
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Parses a whole body; on the first bad line (a timestamp outside
/// `window` included) returns its error and `out` must be discarded.
pub fn parse_batch(
    body: &[u8],
    precision: Precision,
    now_us: i64,
    window: &TimeWindow,
    out: &mut Vec<Sample>,
) -> Result<(), LineError> {
    for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
        let before = out.len();
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = std::str::from_utf8(raw).map_err(|e| LineError {
            line: i + 1,
            message: format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        })?;
        parse_line(line, precision, now_us, out).map_err(|message| LineError {
            line: i + 1,
            message,
        })?;
        for s in &out[before..] {
            window.check_ts(s.ts, now_us).map_err(|message| LineError {
                line: i + 1,
                message,
            })?;
        }
    }
    Ok(())
}

/// Bytes that end (and may be escaped in) a measurement.
fn measurement_special(b: u8) -> bool {
    matches!(b, b',' | b' ')
}

/// Bytes that end (and may be escaped in) a tag key, tag value or field key.
fn key_special(b: u8) -> bool {
    matches!(b, b',' | b'=' | b' ')
}

/// Reads an escaped token up to an unescaped byte of `stops`; returns the
/// unescaped text and the position of the stop byte (or the end). Borrows
/// from `s` unless the token holds an escape. `s` is valid UTF-8 and every
/// stop and escape is ASCII, so each copied segment is whole characters.
fn token(s: &str, start: usize, special: impl Fn(u8) -> bool) -> (Cow<'_, str>, usize) {
    let b = s.as_bytes();
    let mut i = start;
    let mut owned: Option<String> = None;
    let mut seg = i;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' && i + 1 < b.len() && special(b[i + 1]) {
            let o = owned.get_or_insert_with(String::new);
            o.push_str(&s[seg..i]);
            o.push(b[i + 1] as char);
            i += 2;
            seg = i;
            continue;
        }
        if special(c) {
            break;
        }
        i += 1;
    }
    match owned {
        None => (Cow::Borrowed(&s[start..i]), i),
        Some(mut o) => {
            o.push_str(&s[seg..i]);
            (Cow::Owned(o), i)
        }
    }
}

fn escape_into(out: &mut String, s: &str, special: impl Fn(u8) -> bool + Copy) {
    if !s.bytes().any(special) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        if c.is_ascii() && special(c as u8) {
            out.push('\\');
        }
        out.push(c);
    }
}

/// The canonical series key of `measurement`, sorted `tags` and `field`.
pub fn series_key(measurement: &str, tags: &[(String, String)], field: &str) -> String {
    let mut k = String::with_capacity(64);
    series_prefix(
        &mut k,
        (measurement, true),
        tags.iter()
            .map(|(a, b)| ((a.as_str(), true), (b.as_str(), true))),
    );
    k.push(' ');
    escape_into(&mut k, field, key_special);
    k
}

/// A token and whether it may hold a byte that needs escaping. A token the
/// parser borrowed from the line had no escapes, so it holds none.
type Token<'a> = (&'a str, bool);

/// A parsed token as a [`Token`]. Takes the `Cow` itself (not `&str`):
/// whether it is borrowed is the point.
#[allow(clippy::ptr_arg)]
fn token_of<'a>(t: &'a Cow<'_, str>) -> Token<'a> {
    (t.as_ref(), matches!(t, Cow::Owned(_)))
}

/// Appends the measurement and sorted tags of a series key.
fn series_prefix<'a>(
    k: &mut String,
    measurement: Token<'_>,
    tags: impl Iterator<Item = (Token<'a>, Token<'a>)>,
) {
    push_token(k, measurement, measurement_special);
    for (tk, tv) in tags {
        k.push(',');
        push_token(k, tk, key_special);
        k.push('=');
        push_token(k, tv, key_special);
    }
}

/// Appends a token, escaped when it may need it.
fn push_token(out: &mut String, (s, may_escape): Token<'_>, special: impl Fn(u8) -> bool + Copy) {
    if may_escape {
        escape_into(out, s, special);
    } else {
        out.push_str(s);
    }
}

enum Value {
    Float(f64),
    Int(i128),
}

fn parse_value(v: &str, field: &str) -> Result<Value, String> {
    if v.is_empty() {
        return Err(format!("field {field:?} has no value"));
    }
    if v.starts_with('"') {
        return Err(format!(
            "field {field:?}: string values are not supported (xtdb stores numbers)"
        ));
    }
    match v {
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(Value::Float(1.0)),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(Value::Float(0.0)),
        _ => {}
    }
    if let Some(d) = v.strip_suffix('i') {
        return d
            .parse::<i64>()
            .map(|x| Value::Int(x as i128))
            .map_err(|_| format!("field {field:?}: invalid integer {v:?}"));
    }
    if let Some(d) = v.strip_suffix('u') {
        return d
            .parse::<u64>()
            .map(|x| Value::Int(x as i128))
            .map_err(|_| format!("field {field:?}: invalid unsigned integer {v:?}"));
    }
    // Rust's parser also takes "inf", "NaN", "infinity": allow only the
    // number grammar.
    if !v
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
    {
        return Err(format!(
            "field {field:?}: invalid number {v:?} (NaN and infinity are not accepted)"
        ));
    }
    let x: f64 = v
        .parse()
        .map_err(|_| format!("field {field:?}: invalid number {v:?}"))?;
    if !x.is_finite() {
        return Err(format!(
            "field {field:?}: {v:?} is not a finite f64 (NaN and infinity are not accepted)"
        ));
    }
    Ok(Value::Float(x))
}

fn parse_line(
    line: &str,
    precision: Precision,
    now_us: i64,
    out: &mut Vec<Sample>,
) -> Result<(), String> {
    let line = line.trim_start_matches([' ', '\t']);
    if line.is_empty() || line.starts_with('#') {
        return Ok(());
    }
    let s = line.as_bytes();
    let (measurement, mut i) = token(line, 0, measurement_special);
    if measurement.is_empty() {
        return Err("missing measurement".into());
    }
    let mut tags: SmallVec<[(Cow<str>, Cow<str>); 8]> = SmallVec::new();
    while i < s.len() && s[i] == b',' {
        let (k, j) = token(line, i + 1, key_special);
        if k.is_empty() {
            return Err("empty tag key".into());
        }
        if j >= s.len() || s[j] != b'=' {
            return Err(format!("tag {k:?} has no '=value'"));
        }
        let (v, j) = token(line, j + 1, key_special);
        if v.is_empty() {
            return Err(format!("tag {k:?} has an empty value"));
        }
        if j < s.len() && s[j] == b'=' {
            return Err(format!("tag {k:?}: unescaped '=' in value"));
        }
        if tags.iter().any(|(tk, _)| *tk == k) {
            return Err(format!("duplicate tag key {k:?}"));
        }
        tags.push((k, v));
        i = j;
    }
    if i >= s.len() || s[i] != b' ' {
        return Err("missing fields".into());
    }
    while i < s.len() && s[i] == b' ' {
        i += 1;
    }
    tags.sort();
    // Fields.
    let mut fields: SmallVec<[(Cow<str>, Value); 4]> = SmallVec::new();
    loop {
        let (k, j) = token(line, i, key_special);
        if k.is_empty() {
            return Err("missing field key".into());
        }
        if j >= s.len() || s[j] != b'=' {
            return Err(format!("field {k:?} has no '=value'"));
        }
        let start = j + 1;
        let mut j = start;
        if j < s.len() && s[j] == b'"' {
            return Err(format!(
                "field {k:?}: string values are not supported (xtdb stores numbers)"
            ));
        }
        while j < s.len() && s[j] != b',' && s[j] != b' ' {
            j += 1;
        }
        let v = parse_value(&line[start..j], &k)?;
        if fields.iter().any(|(fk, _)| *fk == k) {
            return Err(format!("duplicate field key {k:?}"));
        }
        fields.push((k, v));
        i = j;
        if i < s.len() && s[i] == b',' {
            i += 1;
            continue;
        }
        break;
    }
    while i < s.len() && s[i] == b' ' {
        i += 1;
    }
    let ts = if i < s.len() {
        let rest = line[i..].trim_end_matches([' ', '\t']);
        if rest.contains(' ') {
            return Err(format!("unexpected text after the timestamp: {rest:?}"));
        }
        let t: i64 = rest.parse().map_err(|_| {
            if !rest.is_empty()
                && rest
                    .trim_start_matches('-')
                    .bytes()
                    .all(|b| b.is_ascii_digit())
            {
                format!("timestamp {rest} is out of range")
            } else {
                format!("invalid timestamp {rest:?}")
            }
        })?;
        precision.to_us(t).ok_or_else(|| {
            format!(
                "timestamp {t} ({precision:?}) is out of range \
                 (1677-09-21T00:12:43Z .. 2262-04-11T23:47:16Z)"
            )
        })?
    } else {
        now_us
    };
    let mut quality = DEFAULT_QUALITY;
    let mut values = 0;
    for (k, v) in &fields {
        if k == "quality" || k == "q" {
            quality = match *v {
                Value::Int(x) if (0..=255).contains(&x) => x as u8,
                Value::Float(x) if x.fract() == 0.0 && (0.0..=255.0).contains(&x) => x as u8,
                _ => return Err(format!("field {k:?}: quality must be an integer 0..=255")),
            };
        } else {
            values += 1;
        }
    }
    if values == 0 {
        return Err("no value field (only a quality field)".into());
    }
    let mut prefix = String::with_capacity(line.len());
    series_prefix(
        &mut prefix,
        token_of(&measurement),
        tags.iter().map(|(a, b)| (token_of(a), token_of(b))),
    );
    for (k, v) in fields {
        if k == "quality" || k == "q" {
            continue;
        }
        let value = match v {
            Value::Float(x) => x,
            Value::Int(x) => x as f64,
        };
        let mut key = String::with_capacity(prefix.len() + 1 + k.len());
        key.push_str(&prefix);
        key.push(' ');
        push_token(&mut key, token_of(&k), key_special);
        out.push(Sample {
            key,
            ts,
            value,
            quality,
        });
    }
    Ok(())
}
