//! The `/query` answer as InfluxDB 1.x writes it, written straight into
//! bytes: `{"results":[{"series":[{"columns",...,"name","tags","values"}],
//! "statement_id":0}]}` with the keys in the order Go's (and
//! `serde_json`'s) maps give them, times as RFC 3339 (`time.RFC3339Nano`)
//! or `epoch` integers, whole numbers as integers. An answer of a day of
//! minute windows is 1,440 rows: building a `serde_json::Value` tree of
//! them cost more than the query (a map per series, a string per time, a
//! value per cell, all freed again). Owns only the writing; `pretty=true`
//! re-reads the compact text and indents it. Never fails, never panics.

use std::io::Write as _;

use super::exec::{self, SeriesOut, Val};
use crate::influxql::civil_from_days;

/// How times are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epoch {
    /// RFC 3339 strings (the default).
    Rfc3339,
    /// Integers, ns divided by this.
    Div(i64),
}

/// The `epoch` parameter.
pub fn epoch(p: Option<&str>) -> Epoch {
    match p {
        Some("ns" | "n") => Epoch::Div(1),
        Some("u" | "µ" | "us") => Epoch::Div(1_000),
        Some("ms") => Epoch::Div(1_000_000),
        Some("s") => Epoch::Div(1_000_000_000),
        Some("m") => Epoch::Div(60_000_000_000),
        Some("h") => Epoch::Div(3_600_000_000_000),
        _ => Epoch::Rfc3339,
    }
}

/// One statement's outcome.
pub type Outcome = (usize, Result<Vec<SeriesOut>, String>);

/// The whole answer: one `{"results":[...]}`, or with `chunked` one such
/// object per line, one per series (a statement without series, or a
/// failed one, is one line). `pretty` indents (and is not fast).
#[cfg(test)]
pub fn answer(results: &[Outcome], ep: Epoch, chunked: bool, pretty: bool) -> String {
    // serde_json and this module write UTF-8 only.
    String::from_utf8(answer_bytes(results, ep, chunked, pretty)).unwrap_or_default()
}

/// [`answer`]'s UTF-8 bytes, for the response body as they are.
pub fn answer_bytes(results: &[Outcome], ep: Epoch, chunked: bool, pretty: bool) -> Vec<u8> {
    // About what the rows will take (a time and a number are some 30
    // bytes), so a long answer is not copied as its buffer grows.
    let cells: usize = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok())
        .flatten()
        .map(|s| s.values.len().saturating_mul(s.columns.len().max(1)))
        .fold(0usize, usize::saturating_add);
    let mut out = Vec::with_capacity(cells.saturating_mul(16).saturating_add(256).min(1 << 26));
    write_answer(&mut out, results, ep, chunked, pretty);
    out
}

fn write_answer(out: &mut Vec<u8>, results: &[Outcome], ep: Epoch, chunked: bool, pretty: bool) {
    if chunked {
        for (i, r) in results {
            match r {
                Ok(series) if !series.is_empty() => {
                    for s in series {
                        let at = out.len();
                        out.extend_from_slice(b"{\"results\":[{\"series\":[");
                        write_series(out, s, ep);
                        let _ = write!(out, "],\"statement_id\":{i}}}]}}");
                        finish_line(out, at, pretty);
                    }
                }
                _ => {
                    let at = out.len();
                    out.extend_from_slice(b"{\"results\":[");
                    write_statement(out, *i, r, ep);
                    out.extend_from_slice(b"]}");
                    finish_line(out, at, pretty);
                }
            }
        }
        return;
    }
    out.extend_from_slice(b"{\"results\":[");
    for (k, (i, r)) in results.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        write_statement(out, *i, r, ep);
    }
    out.extend_from_slice(b"]}");
    if pretty {
        let text = indent(&out[..]);
        *out = text.into_bytes();
    }
}

/// Ends the chunked line that began at `at` (indenting it if asked).
fn finish_line(out: &mut Vec<u8>, at: usize, pretty: bool) {
    if pretty {
        let line = indent(&out[at..]);
        out.truncate(at);
        out.extend_from_slice(line.as_bytes());
    }
    out.push(b'\n');
}

/// `text` (this module's compact JSON) indented as `serde_json`'s pretty
/// writer does (two spaces, `": "`, empty `[]` and `{}` kept), by walking
/// the text: numbers are copied as written, never re-parsed.
fn indent(text: &[u8]) -> String {
    let mut out = Vec::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let mut in_str = false;
    let mut escaped = false;
    let newline = |out: &mut Vec<u8>, depth: usize| {
        out.push(b'\n');
        out.resize(out.len() + 2 * depth, b' ');
    };
    for (i, &c) in text.iter().enumerate() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_str = false;
            }
            continue;
        }
        match c {
            b'"' => {
                in_str = true;
                out.push(c);
            }
            b'{' | b'[' => {
                out.push(c);
                let close = if c == b'{' { b'}' } else { b']' };
                if text.get(i + 1) != Some(&close) {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            b'}' | b']' => {
                let open = if c == b'}' { b'{' } else { b'[' };
                if i > 0 && text[i - 1] != open {
                    depth = depth.saturating_sub(1);
                    newline(&mut out, depth);
                }
                out.push(c);
            }
            b',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            b':' => out.extend_from_slice(b": "),
            _ => out.push(c),
        }
    }
    String::from_utf8(out).unwrap_or_default()
}

fn write_statement(out: &mut Vec<u8>, i: usize, r: &Result<Vec<SeriesOut>, String>, ep: Epoch) {
    match r {
        Err(e) => {
            out.extend_from_slice(b"{\"error\":");
            json_str(out, e);
        }
        Ok(series) if series.is_empty() => out.push(b'{'),
        Ok(series) => {
            out.extend_from_slice(b"{\"series\":[");
            for (k, s) in series.iter().enumerate() {
                if k > 0 {
                    out.push(b',');
                }
                write_series(out, s, ep);
            }
            out.extend_from_slice(b"],");
        }
    }
    if r.is_err() {
        out.push(b',');
    }
    let _ = write!(out, "\"statement_id\":{i}}}");
}

/// One series: `{"columns":[..],"name":..,"tags":{..},"values":[[..],..]}`
/// (keys sorted, as a map writes them; `name` and `tags` only when set).
fn write_series(out: &mut Vec<u8>, s: &SeriesOut, ep: Epoch) {
    out.extend_from_slice(b"{\"columns\":[");
    for (k, c) in s.columns.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        json_str(out, c);
    }
    out.push(b']');
    if let Some(n) = &s.name {
        out.extend_from_slice(b",\"name\":");
        json_str(out, n);
    }
    if !s.tags.is_empty() {
        // A map: keys sorted, the last of equal keys kept.
        let mut tags: Vec<&(String, String)> = s.tags.iter().collect();
        tags.sort_by(|a, b| a.0.cmp(&b.0));
        tags.reverse();
        tags.dedup_by(|a, b| a.0 == b.0);
        tags.reverse();
        out.extend_from_slice(b",\"tags\":{");
        for (k, (key, v)) in tags.into_iter().enumerate() {
            if k > 0 {
                out.push(b',');
            }
            json_str(out, key);
            out.push(b':');
            json_str(out, v);
        }
        out.push(b'}');
    }
    out.extend_from_slice(b",\"values\":[");
    for (k, row) in s.values.iter().enumerate() {
        if k > 0 {
            out.push(b',');
        }
        out.push(b'[');
        for (j, v) in row.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            write_val(out, v, ep, s.tz);
        }
        out.push(b']');
    }
    out.extend_from_slice(b"]}");
}

fn write_val(out: &mut Vec<u8>, v: &Val, ep: Epoch, tz: Option<chrono_tz::Tz>) {
    match v {
        Val::Time(ns) => match ep {
            Epoch::Rfc3339 => {
                let offset = tz.map_or(0, |tz| exec::zone_offset_s(tz, *ns));
                out.push(b'"');
                write_rfc3339(out, *ns, offset);
                out.push(b'"');
            }
            Epoch::Div(d) => int(out, ns.div_euclid(d)),
        },
        Val::F(f) => write_number(out, *f),
        Val::I(i) => int(out, *i),
        Val::S(s) => json_str(out, s),
        Val::B(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Val::Null => out.extend_from_slice(b"null"),
    }
}

/// A float as Go's JSON writes it: whole values as integers; NaN and
/// infinities (which JSON lacks) as null.
fn write_number(out: &mut Vec<u8>, f: f64) {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 {
        int(out, f as i64);
    } else if f.is_finite() {
        let _ = serde_json::to_writer(&mut *out, &f);
    } else {
        out.extend_from_slice(b"null");
    }
}

/// `i` in decimal, as `{}` writes it (without the formatting machinery:
/// an answer of many rows writes a time per row).
fn int(out: &mut Vec<u8>, i: i64) {
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
        2021222324252627282930313233343536373839\
        4041424344454647484950515253545556575859\
        6061626364656667686970717273747576777879\
        8081828384858687888990919293949596979899";
    let mut buf = [0u8; 20];
    let mut n = i.unsigned_abs();
    let mut at = buf.len();
    while n >= 100 {
        let d = (n % 100) as usize * 2;
        n /= 100;
        at -= 2;
        buf[at..at + 2].copy_from_slice(&PAIRS[d..d + 2]);
    }
    if n >= 10 {
        let d = n as usize * 2;
        at -= 2;
        buf[at..at + 2].copy_from_slice(&PAIRS[d..d + 2]);
    } else {
        at -= 1;
        buf[at] = b'0' + n as u8;
    }
    if i < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&buf[at..]);
}

/// A JSON string, escaped as `serde_json` escapes it.
fn json_str(out: &mut Vec<u8>, s: &str) {
    let _ = serde_json::to_writer(&mut *out, s);
}

/// Appends `ns` since the epoch as RFC 3339 in local time `offset_s` east
/// of UTC, the fraction's trailing zeros dropped and the offset written
/// (`+01:00`; `Z` for 0): Go's `time.RFC3339Nano`.
fn write_rfc3339(out: &mut Vec<u8>, ns: i64, offset_s: i32) {
    let secs = ns
        .div_euclid(1_000_000_000)
        .saturating_add(i64::from(offset_s));
    let frac = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if (0..=9999).contains(&y) {
        digits(out, y as u64, 4);
    } else {
        let _ = write!(out, "{y:04}");
    }
    out.push(b'-');
    digits(out, m as u64, 2);
    out.push(b'-');
    digits(out, d as u64, 2);
    out.push(b'T');
    digits(out, (tod / 3600) as u64, 2);
    out.push(b':');
    digits(out, (tod / 60 % 60) as u64, 2);
    out.push(b':');
    digits(out, (tod % 60) as u64, 2);
    if frac != 0 {
        out.push(b'.');
        let mut f = frac as u64;
        let mut width = 9;
        while f.is_multiple_of(10) {
            f /= 10;
            width -= 1;
        }
        digits(out, f, width);
    }
    if offset_s == 0 {
        out.push(b'Z');
    } else {
        let a = offset_s.unsigned_abs();
        out.push(if offset_s < 0 { b'-' } else { b'+' });
        digits(out, u64::from(a / 3600), 2);
        out.push(b':');
        digits(out, u64::from(a / 60 % 60), 2);
    }
}

/// `n` in decimal, zero-padded to `width` digits (`n < 10^width`).
fn digits(out: &mut Vec<u8>, n: u64, width: u32) {
    let mut buf = [b'0'; 20];
    let width = width.min(20) as usize;
    let mut n = n;
    for slot in buf[..width].iter_mut().rev() {
        *slot = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out.extend_from_slice(&buf[..width]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Map, Value};

    /// ns since the epoch as RFC 3339 in UTC with the fraction's trailing
    /// zeros dropped (Go's `time.RFC3339Nano`).
    fn rfc3339(ns: i64) -> String {
        rfc3339_at(ns, 0)
    }

    /// [`rfc3339`] in local time `offset_s` east of UTC, with that offset
    /// (`+01:00`; `Z` for 0, as Go writes it).
    fn rfc3339_at(ns: i64, offset_s: i32) -> String {
        let mut s = Vec::with_capacity(32);
        write_rfc3339(&mut s, ns, offset_s);
        // Only ASCII was written.
        String::from_utf8(s).unwrap_or_default()
    }

    #[test]
    fn integers_as_display_writes_them() {
        let mut cases = vec![
            0,
            1,
            -1,
            9,
            10,
            -10,
            99,
            100,
            i64::MAX,
            i64::MIN,
            i64::MIN + 1,
        ];
        let mut x: i64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            cases.push(x >> (x as u64 % 64));
        }
        for i in cases {
            let mut out = Vec::new();
            int(&mut out, i);
            assert_eq!(String::from_utf8(out).unwrap_or_default(), i.to_string());
        }
    }

    #[test]
    fn times_as_go_writes_them() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_500_000_000), "2023-11-14T22:13:20.5Z");
        assert_eq!(
            rfc3339(1_700_000_000_000_001_000),
            "2023-11-14T22:13:20.000001Z"
        );
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00Z");
        assert_eq!(
            rfc3339_at(1_700_000_000_500_000_000, 3600),
            "2023-11-14T23:13:20.5+01:00"
        );
        assert_eq!(rfc3339_at(0, -19_800), "1969-12-31T18:30:00-05:30");
        // Years outside 0..=9999 as `{:04}` writes them.
        assert_eq!(rfc3339(i64::MIN), "1677-09-21T00:12:43.145224192Z");
        assert_eq!(rfc3339(i64::MAX), "2262-04-11T23:47:16.854775807Z");
    }

    #[test]
    fn numbers_as_go_writes_them() {
        let n = |f: f64| {
            let mut s = Vec::new();
            write_number(&mut s, f);
            String::from_utf8(s).unwrap()
        };
        assert_eq!(n(3.0), "3");
        assert_eq!(n(-0.5), "-0.5");
        assert_eq!(n(f64::NAN), "null");
        assert_eq!(n(f64::INFINITY), "null");
        // Go writes 1e+300 too.
        assert_eq!(n(1e300), "1e+300");
        assert_eq!(n(0.1), "0.1");
    }

    /// The answer as a `serde_json::Value` tree writes it (what this
    /// module replaced): the reference for the writer.
    fn reference(results: &[Outcome], ep: Epoch) -> Value {
        let val = |v: &Val, tz: Option<chrono_tz::Tz>| match v {
            Val::Time(ns) => match ep {
                Epoch::Rfc3339 => Value::String(rfc3339_at(
                    *ns,
                    tz.map_or(0, |tz| exec::zone_offset_s(tz, *ns)),
                )),
                Epoch::Div(d) => json!(ns.div_euclid(d)),
            },
            Val::F(f)
                if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 =>
            {
                json!(*f as i64)
            }
            Val::F(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Val::I(i) => json!(i),
            Val::S(s) => Value::String(s.clone()),
            Val::B(b) => Value::Bool(*b),
            Val::Null => Value::Null,
        };
        let series = |s: &SeriesOut| {
            let mut o = Map::new();
            if let Some(n) = &s.name {
                o.insert("name".into(), Value::String(n.clone()));
            }
            if !s.tags.is_empty() {
                let tags: Map<String, Value> = s
                    .tags
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                o.insert("tags".into(), Value::Object(tags));
            }
            o.insert("columns".into(), json!(s.columns));
            let rows: Vec<Value> = s
                .values
                .iter()
                .map(|r| Value::Array(r.iter().map(|v| val(v, s.tz)).collect()))
                .collect();
            o.insert("values".into(), Value::Array(rows));
            Value::Object(o)
        };
        let list: Vec<Value> = results
            .iter()
            .map(|(i, r)| match r {
                Err(e) => json!({"statement_id": i, "error": e}),
                Ok(s) if s.is_empty() => json!({"statement_id": i}),
                Ok(s) => {
                    json!({"statement_id": i, "series": s.iter().map(series).collect::<Vec<_>>()})
                }
            })
            .collect();
        json!({ "results": list })
    }

    fn sample(seed: u64) -> Vec<Outcome> {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let strs = [
            "",
            "a",
            "q\"uote",
            "back\\slash",
            "tab\tnl\n",
            "é ✓",
            "\u{1}",
        ];
        let mut out = Vec::new();
        for i in 0..(next() % 4) as usize {
            if next() % 5 == 0 {
                out.push((i, Err(strs[(next() % 7) as usize].to_string())));
                continue;
            }
            let mut series = Vec::new();
            for _ in 0..next() % 3 {
                let mut tags = Vec::new();
                for _ in 0..next() % 3 {
                    let k = ["host", "a", "zz", "host"][(next() % 4) as usize].to_string();
                    tags.push((k, strs[(next() % 7) as usize].to_string()));
                }
                let values = (0..next() % 5)
                    .map(|_| {
                        let ns = (next() as i64) >> (next() % 64);
                        let f = match next() % 6 {
                            0 => f64::NAN,
                            1 => (next() % 1000) as f64,
                            2 => f64::from_bits(next()),
                            3 => 1e300,
                            _ => (next() as i64 as f64) / 1e6,
                        };
                        vec![
                            Val::Time(ns),
                            Val::F(f),
                            Val::I(next() as i64),
                            Val::S(strs[(next() % 7) as usize].into()),
                            Val::B(next() % 2 == 0),
                            Val::Null,
                        ]
                    })
                    .collect();
                series.push(SeriesOut {
                    name: (next() % 4 != 0).then(|| strs[(next() % 7) as usize].to_string()),
                    tags,
                    columns: vec!["time".into(), "mean".into(), "n".into()],
                    values,
                    tz: (next() % 3 == 0).then_some(chrono_tz::Tz::Asia__Kolkata),
                });
            }
            out.push((i, Ok(series)));
        }
        out
    }

    #[test]
    fn the_writer_writes_what_a_value_tree_writes() {
        for seed in 0..3000 {
            let results = sample(seed);
            for ep in [Epoch::Rfc3339, Epoch::Div(1), Epoch::Div(1_000_000)] {
                let want = reference(&results, ep);
                let got = answer(&results, ep, false, false);
                assert_eq!(got, want.to_string(), "seed {seed}");
                assert_eq!(
                    answer(&results, ep, false, true),
                    serde_json::to_string_pretty(&want).unwrap()
                );
                // Chunked: one line per series, each a results object.
                let chunked = answer(&results, ep, true, false);
                let lines: Vec<&str> = chunked.lines().collect();
                let mut want_lines = Vec::new();
                for (i, st) in want["results"].as_array().unwrap().iter().enumerate() {
                    match st.get("series") {
                        Some(Value::Array(ss)) => {
                            for s in ss {
                                want_lines.push(json!({"results": [{"statement_id": results[i].0, "series": [s]}]}).to_string());
                            }
                        }
                        _ => want_lines.push(json!({"results": [st]}).to_string()),
                    }
                }
                assert_eq!(lines, want_lines, "seed {seed}");
            }
        }
    }
}
