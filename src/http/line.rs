//! InfluxDB line protocol → xtdb samples: a linear-time, bounded parser
//! with InfluxDB 1.x semantics. Owns the syntax, the per-line limits and
//! the canonical *series key*; it never touches the catalog or storage, and
//! never panics on input.
//!
//! `measurement[,tk=tv...] fk=fv[,fk=fv...] [timestamp]`, one point per
//! line. Every numeric field of a line becomes its own series, named by its
//! series key `measurement[,tk=tv...] field` (see "Series keys" below); the
//! catalog maps that key to a stable tag id.
//!
//! # Batches and bad lines
//! [`parse_batch`] parses a whole body line by line. A bad line (any rule
//! below broken, a limit exceeded, or a timestamp outside the server's
//! [`TimeWindow`]) contributes nothing to the output and is reported in
//! [`ParseReport::bad`] with its 1-based line number; the other lines are
//! parsed regardless. Whether the good lines are then stored (InfluxDB 1.x
//! "partial write") or the whole batch is refused (InfluxDB 2.x) is the
//! caller's choice.
//!
//! # Rules
//! - Lines end with `\n`; a `\r` before it is dropped (CRLF accepted;
//!   InfluxDB 1.x refuses it). A raw newline inside a quoted string field
//!   value belongs to the value (as in InfluxDB); line numbers count
//!   physical lines, so the line after such a value gets the right number.
//!   A string value that is not properly closed (by a quote followed by
//!   `,`, a space or the line end) does not extend its line past its first
//!   newline: the malformed line is bad, the lines after it are not
//!   (InfluxDB 1.6.7 lets it swallow the following lines).
//! - Empty lines and lines whose first non-blank byte is `#` are skipped.
//! - Each line must be valid UTF-8.
//! - Escapes (those of InfluxDB 1.x `models/points.go` and `pkg/escape`,
//!   checked against InfluxDB 1.6.7): a backslash before one of these bytes
//!   is removed, before anything else it is a literal backslash (`\\` is
//!   two backslashes):
//!   - measurement: `,` and space end it; `\,` `\ ` `\=` `\"` unescape
//!     (`w05\=equals` is the measurement `w05=equals`);
//!   - tag keys and values: `,` `=` space end them; `\,` `\=` `\ `
//!     unescape (`\"` stays `\"`, as in InfluxDB);
//!   - field keys: `,` `=` space end them; `\,` `\=` `\ ` `\"` unescape;
//!   - string field values: `\"` and `\\`.
//! - Tag keys, tag values and field keys are non-empty. A tag key may
//!   appear once per line (InfluxDB: "duplicate tags"); so may a field key
//!   (InfluxDB 1.x keeps the last of duplicate fields; xtdb refuses the
//!   line, a duplicate field is a client bug).
//! - Field values: float (`1`, `-1.5e3`, `1.`, `.5`; no leading `+`, as in
//!   InfluxDB), integer `1i`, unsigned `1u`, booleans (`t`/`true`/`True`/
//!   `TRUE`, `f`/...) as 1.0 / 0.0. NaN, `inf` and floats that overflow to
//!   infinity (`1e400`) are refused: a historian marks bad samples with a
//!   quality code, not with NaN. Integers beyond 2^53 lose precision as
//!   f64.
//! - String values (`"..."`) are not stored (xtdb stores numbers): they are
//!   dropped and counted ([`ParseReport::dropped_string_fields`]); the
//!   line's numeric fields are kept. A line whose only fields are strings
//!   stores nothing and is not an error.
//! - Quality: with [`LineConfig::quality_field`] set (`xtdb serve
//!   --quality-field NAME`), the field of that name is not a series: its
//!   value (an integer 0..=255, `192i`, `192u` or `192`) is the quality of
//!   the line's other fields; any other value makes the line bad. A line
//!   needs at least one other field. Without it every field, `q` and
//!   `quality` included, is a value series. Default quality 192 (OPC
//!   "good").
//! - The timestamp is an integer in the request's precision, converted to
//!   microseconds (nanoseconds are floored); it must lie in the range a
//!   nanosecond i64 can hold (1677-09-21 .. 2262-04-11), as in InfluxDB,
//!   and in the server's window. A line without a timestamp gets the
//!   server's clock at arrival.
//! - Limits ([`LineLimits`]): bytes per line, tags per line, fields per
//!   line, bytes per series key (at most the catalog's
//!   [`MAX_KEY_LEN`]). Each is checked as soon as it is exceeded, so an
//!   oversized line costs no more than reading it.
//!
//! Cost: every line is read a bounded number of times, duplicate keys are
//! found by sorting (O(n log n) in tags/fields per line), so a batch costs
//! O(bytes · log) at worst.
//!
//! # Series keys
//! `measurement[,tk=tv...] field` with the tags sorted by key (byte order
//! of the unescaped keys). Each name is stored unescaped and then
//! re-escaped the one canonical way: `,` and space in the measurement, `,`
//! `=` and space in tag keys, tag values and the field key, each get a
//! backslash; nothing else does (a `"` or a backslash is written as is).
//! [`split_series_key`] reads a key back. The key is unambiguous because no
//! name the parser produces ends with a backslash (the byte after it would
//! have been escaped instead), so a backslash in a key escapes the next
//! byte exactly when that byte is one of the listed ones.

use std::borrow::Cow;
use std::fmt;

use smallvec::SmallVec;

use crate::runtime::admission::TimeWindow;
use crate::storage::catalog::key::token;
use crate::storage::catalog::MAX_KEY_LEN;

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

/// Quality when a line carries none (OPC DA "good").
pub const DEFAULT_QUALITY: u8 = 192;

/// Bad lines whose error is kept in [`ParseReport::bad`]; later ones are
/// only counted.
pub const MAX_REPORTED: usize = 100;

/// Longest quoted excerpt of the input in an error message, bytes.
const EXCERPT: usize = 64;

/// Per-line limits. A line over any of them is a bad line whose error
/// names the limit and the server option that sets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineLimits {
    /// Bytes per line (`--max-line-bytes`), the line end excluded.
    pub max_line_bytes: usize,
    /// Tags per line (`--max-tags-per-line`).
    pub max_tags: usize,
    /// Fields per line, string and quality fields included
    /// (`--max-fields-per-line`).
    pub max_fields: usize,
    /// Bytes per series key; values above the catalog's [`MAX_KEY_LEN`]
    /// act as [`MAX_KEY_LEN`].
    pub max_series_key: usize,
}

impl Default for LineLimits {
    /// 64 KiB per line, 256 tags, 256 fields, 4096-byte series keys.
    fn default() -> Self {
        LineLimits {
            max_line_bytes: 64 << 10,
            max_tags: 256,
            max_fields: 256,
            max_series_key: MAX_KEY_LEN,
        }
    }
}

/// How lines are read: limits and the quality mapping.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LineConfig {
    /// Per-line limits.
    pub limits: LineLimits,
    /// The field that carries a line's quality (`--quality-field`); `None`
    /// (the default): no field does, every field is a value series.
    pub quality_field: Option<String>,
}

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

/// A bad line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineError {
    /// 1-based line number (physical lines of the body).
    pub line: usize,
    /// Why it was refused.
    pub message: String,
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// What [`parse_batch`] found besides the samples.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParseReport {
    /// Lines read (blank and comment lines not counted), good and bad.
    pub lines: u64,
    /// Bad lines: nothing of them is in the output.
    pub bad_lines: u64,
    /// The first [`MAX_REPORTED`] bad lines, in order.
    pub bad: Vec<LineError>,
    /// String fields dropped from good lines.
    pub dropped_string_fields: u64,
    /// Good lines that stored nothing because all their fields were
    /// strings.
    pub string_only_lines: u64,
}

impl ParseReport {
    /// True when no line was bad.
    pub fn is_clean(&self) -> bool {
        self.bad_lines == 0
    }

    /// Good lines (bad ones excluded).
    pub fn good_lines(&self) -> u64 {
        self.lines - self.bad_lines
    }

    /// The line numbers of the reported bad lines.
    pub fn bad_line_numbers(&self) -> Vec<usize> {
        self.bad.iter().map(|e| e.line).collect()
    }

    /// `line 3: why; line 9: why` for the first `reasons` bad lines, then
    /// `; and N more` if there were more.
    pub fn summary(&self, reasons: usize) -> String {
        let mut s = String::new();
        for (i, e) in self.bad.iter().take(reasons).enumerate() {
            if i > 0 {
                s.push_str("; ");
            }
            s.push_str(&e.to_string());
        }
        let shown = self.bad.len().min(reasons) as u64;
        if self.bad_lines > shown {
            s.push_str(&format!("; and {} more", self.bad_lines - shown));
        }
        s
    }

    fn push_bad(&mut self, line: usize, message: String) {
        self.bad_lines += 1;
        if self.bad.len() < MAX_REPORTED {
            self.bad.push(LineError { line, message });
        }
    }
}

/// Parses a whole body. Samples of the good lines are appended to `out`
/// (in line order); bad lines add nothing to it and are reported.
pub fn parse_batch(
    body: &[u8],
    precision: Precision,
    now_us: i64,
    window: &TimeWindow,
    config: &LineConfig,
    out: &mut Vec<Sample>,
) -> ParseReport {
    let mut report = ParseReport::default();
    parse_slice(
        body,
        Resume::START,
        usize::MAX,
        precision,
        now_us,
        window,
        config,
        out,
        &mut report,
    );
    report
}

/// Where [`parse_slice`] stopped: the byte offset and physical line number
/// of the next line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resume {
    pos: usize,
    line: usize,
}

impl Resume {
    /// The start of a body.
    pub const START: Resume = Resume { pos: 0, line: 1 };
}

/// Parses a body a part at a time, so a caller can yield to its executor
/// between parts: from `from`, whole lines until at least `max_bytes`
/// were read (or the body ends), adding to `out` and `report` exactly what
/// [`parse_batch`] would for those lines. Returns where to go on, or
/// `None` at the end of the body.
#[allow(clippy::too_many_arguments)]
pub fn parse_slice(
    body: &[u8],
    from: Resume,
    max_bytes: usize,
    precision: Precision,
    now_us: i64,
    window: &TimeWindow,
    config: &LineConfig,
    out: &mut Vec<Sample>,
    report: &mut ParseReport,
) -> Option<Resume> {
    let ctx = Ctx {
        precision,
        now_us,
        window,
        limits: &config.limits,
        max_key: config.limits.max_series_key.min(MAX_KEY_LEN),
        quality_field: config.quality_field.as_deref(),
    };
    let mut lines = Lines {
        body,
        pos: from.pos,
        line: from.line,
    };
    while let Some((no, raw)) = lines.next_line() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let before = out.len();
        match parse_raw(raw, &ctx, out) {
            Ok(Parsed::Skipped) => {}
            Ok(Parsed::Line { strings, stored }) => {
                report.lines += 1;
                report.dropped_string_fields += strings;
                report.string_only_lines += u64::from(stored == 0);
            }
            Err(message) => {
                out.truncate(before);
                report.lines += 1;
                report.push_bad(no, message);
            }
        }
        if lines.pos.saturating_sub(from.pos) >= max_bytes && lines.pos < body.len() {
            return Some(Resume {
                pos: lines.pos,
                line: lines.line,
            });
        }
    }
    None
}

/// Splits a body into logical lines.
struct Lines<'a> {
    body: &'a [u8],
    pos: usize,
    /// Physical line number of `pos`.
    line: usize,
}

impl<'a> Lines<'a> {
    /// The next line and its number, without its `\n`.
    fn next_line(&mut self) -> Option<(usize, &'a [u8])> {
        let b = self.body;
        let start = self.pos;
        if start >= b.len() {
            return None;
        }
        let no = self.line;
        // Fast path: no `"` before the newline, so no string can hold one.
        let end = match memchr::memchr2(b'\n', b'"', &b[start..]) {
            None => b.len(),
            Some(k) if b[start + k] == b'\n' => start + k,
            Some(_) => {
                let end = self.quoted_end(start);
                // Newlines inside string values.
                self.line += b[start..end].iter().filter(|&&c| c == b'\n').count();
                end
            }
        };
        self.line += 1;
        self.pos = end + 1;
        Some((no, &b[start..end]))
    }

    /// End of a line that holds a `"`: the first newline outside a string
    /// field value. A string value opens with a `"` right after an
    /// unescaped `=` in the field section (after the first unescaped space
    /// past the measurement) and closes at the next `"` not escaped by `\`
    /// (`\"` and `\\` are escapes inside it). A newline inside belongs to
    /// the value only if that closing quote is followed by `,`, a space or
    /// the end of the line, as a real one is; otherwise (a string never
    /// closed, whose "closing" quote is really the opening quote of a string
    /// on a later line) the line ends at its first newline, so a malformed
    /// line spoils only itself. Linear: the scan from an opening quote stops
    /// at the next quote not escaped, at or before the next line's opening
    /// quote, so the scans cover disjoint stretches of the body.
    fn quoted_end(&self, start: usize) -> usize {
        let b = self.body;
        let first_newline = || memchr::memchr(b'\n', &b[start..]).map_or(b.len(), |k| start + k);
        let mut i = start;
        while i < b.len() && matches!(b[i], b' ' | b'\t') {
            i += 1;
        }
        if i < b.len() && b[i] == b'#' {
            return first_newline();
        }
        // `i` is at the first non-blank byte; the field section starts at
        // the first unescaped space.
        let mut fields = false;
        let mut prev = 0u8; // previous byte outside strings
        let mut prev_escaped = false; // whether `prev` was escaped
        while i < b.len() {
            let c = b[i];
            if c == b'\n' {
                return i;
            }
            // As in the name tokens: a byte is escaped when the byte before
            // it is a backslash.
            let escaped = prev == b'\\';
            if !fields {
                fields = c == b' ' && !escaped;
            } else if c == b'"' && prev == b'=' && !prev_escaped {
                // A string value: find its closing quote.
                let mut j = i + 1;
                loop {
                    if j >= b.len() {
                        return first_newline();
                    }
                    match b[j] {
                        b'\\' if j + 1 < b.len() && matches!(b[j + 1], b'"' | b'\\') => j += 2,
                        b'"' => break,
                        _ => j += 1,
                    }
                }
                if j + 1 < b.len() && !matches!(b[j + 1], b',' | b' ' | b'\n' | b'\r') {
                    return first_newline();
                }
                i = j + 1;
                prev = b'"';
                prev_escaped = false;
                continue;
            }
            prev_escaped = escaped;
            prev = c;
            i += 1;
        }
        b.len()
    }
}

/// Per-batch settings, borrowed.
struct Ctx<'a> {
    precision: Precision,
    now_us: i64,
    window: &'a TimeWindow,
    limits: &'a LineLimits,
    max_key: usize,
    quality_field: Option<&'a str>,
}

enum Parsed {
    /// Blank or comment.
    Skipped,
    /// A good line: string fields dropped, samples stored.
    Line { strings: u64, stored: usize },
}

fn parse_raw(raw: &[u8], ctx: &Ctx<'_>, out: &mut Vec<Sample>) -> Result<Parsed, String> {
    if raw.len() > ctx.limits.max_line_bytes {
        // Blank and comment lines are skipped whatever their length.
        match raw.iter().find(|&&c| !matches!(c, b' ' | b'\t')) {
            None | Some(b'#') => return Ok(Parsed::Skipped),
            Some(_) => {}
        }
        return Err(format!(
            "line is {} bytes long, more than the limit of {} \
             (server option --max-line-bytes)",
            raw.len(),
            ctx.limits.max_line_bytes
        ));
    }
    let line = std::str::from_utf8(raw)
        .map_err(|e| format!("invalid UTF-8 at byte {}", e.valid_up_to()))?;
    parse_line(line, ctx, out)
}

/// `s` quoted for a message, at most [`EXCERPT`] bytes of it.
fn quote(s: &str) -> String {
    if s.len() <= EXCERPT {
        return format!("{s:?}");
    }
    let mut end = EXCERPT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}... ({} bytes)", &s[..end], s.len())
}

/// Bytes that end a measurement (and are escaped in its key form).
fn measurement_stop(b: u8) -> bool {
    matches!(b, b',' | b' ')
}

/// Bytes whose escape is removed in a measurement.
fn measurement_unescape(b: u8) -> bool {
    matches!(b, b',' | b' ' | b'=' | b'"')
}

/// Bytes that end (and may be escaped in) a tag key, tag value or field
/// key, and are escaped in their key form.
fn key_special(b: u8) -> bool {
    matches!(b, b',' | b'=' | b' ')
}

/// Bytes whose escape is removed in a field key.
fn field_unescape(b: u8) -> bool {
    matches!(b, b',' | b'=' | b' ' | b'"')
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

/// The canonical series key of `measurement`, `tags` (sorted by key) and
/// `field`, all unescaped names (see the module docs).
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

pub use crate::storage::catalog::key::{split_series_key, SeriesParts};

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
    push_token(k, measurement, measurement_stop);
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

#[derive(Clone, Copy)]
enum Value {
    Float(f64),
    Int(i128),
    /// Stored as 1.0 / 0.0; never a quality.
    Bool(bool),
    /// A string value: dropped.
    Str,
}

fn parse_value(v: &str, field: &str) -> Result<Value, String> {
    if v.is_empty() {
        return Err(format!("field {} has no value", quote(field)));
    }
    match v {
        "t" | "T" | "true" | "True" | "TRUE" => return Ok(Value::Bool(true)),
        "f" | "F" | "false" | "False" | "FALSE" => return Ok(Value::Bool(false)),
        _ => {}
    }
    if v.starts_with('+') {
        return Err(format!(
            "field {}: invalid number {} (no leading '+')",
            quote(field),
            quote(v)
        ));
    }
    if let Some(d) = v.strip_suffix('i') {
        return d
            .parse::<i64>()
            .map(|x| Value::Int(x as i128))
            .map_err(|_| format!("field {}: invalid integer {}", quote(field), quote(v)));
    }
    if let Some(d) = v.strip_suffix('u') {
        return d
            .parse::<u64>()
            .map(|x| Value::Int(x as i128))
            .map_err(|_| {
                format!(
                    "field {}: invalid unsigned integer {}",
                    quote(field),
                    quote(v)
                )
            });
    }
    // Rust's parser also takes "inf", "NaN", "infinity": allow only the
    // number grammar.
    if !v
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
    {
        return Err(format!(
            "field {}: invalid number {} (NaN and infinity are not accepted)",
            quote(field),
            quote(v)
        ));
    }
    let x: f64 = v
        .parse()
        .map_err(|_| format!("field {}: invalid number {}", quote(field), quote(v)))?;
    if !x.is_finite() {
        return Err(format!(
            "field {}: {} is not a finite f64 (NaN and infinity are not accepted)",
            quote(field),
            quote(v)
        ));
    }
    Ok(Value::Float(x))
}

/// Position just past the closing quote of the string value opening at
/// `start` (a `"`), or `None` if it does not close.
fn string_end(s: &[u8], start: usize) -> Option<usize> {
    let mut j = start + 1;
    while j < s.len() {
        match s[j] {
            b'\\' if j + 1 < s.len() && matches!(s[j + 1], b'"' | b'\\') => j += 2,
            b'"' => return Some(j + 1),
            _ => j += 1,
        }
    }
    None
}

/// A field key that occurs twice: a quadratic scan for the usual handful,
/// sorting (O(n log n)) beyond.
fn duplicate<'k>(fields: &'k [(Cow<'_, str>, Value)]) -> Option<&'k str> {
    if fields.len() <= 8 {
        return (1..fields.len())
            .find(|&i| fields[..i].iter().any(|(k, _)| *k == fields[i].0))
            .map(|i| fields[i].0.as_ref());
    }
    let mut v: SmallVec<[&str; 16]> = fields.iter().map(|(k, _)| k.as_ref()).collect();
    v.sort_unstable();
    v.windows(2).find(|w| w[0] == w[1]).map(|w| w[0])
}

fn parse_line(line: &str, ctx: &Ctx<'_>, out: &mut Vec<Sample>) -> Result<Parsed, String> {
    let line = line.trim_start_matches([' ', '\t']);
    if line.is_empty() || line.starts_with('#') {
        return Ok(Parsed::Skipped);
    }
    let limits = ctx.limits;
    let s = line.as_bytes();
    let (measurement, mut i) = token(line, 0, measurement_stop, measurement_unescape);
    if measurement.is_empty() {
        return Err("missing measurement".into());
    }
    let mut tags: SmallVec<[(Cow<str>, Cow<str>); 8]> = SmallVec::new();
    while i < s.len() && s[i] == b',' {
        if tags.len() >= limits.max_tags {
            return Err(format!(
                "more than {} tags (server option --max-tags-per-line)",
                limits.max_tags
            ));
        }
        let (k, j) = token(line, i + 1, key_special, key_special);
        if k.is_empty() {
            return Err("empty tag key".into());
        }
        if j >= s.len() || s[j] != b'=' {
            return Err(format!("tag {} has no '=value'", quote(&k)));
        }
        let (v, j) = token(line, j + 1, key_special, key_special);
        if v.is_empty() {
            return Err(format!("tag {} has an empty value", quote(&k)));
        }
        if j < s.len() && s[j] == b'=' {
            return Err(format!("tag {}: unescaped '=' in value", quote(&k)));
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
    tags.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if let Some(w) = tags.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(format!("duplicate tag key {}", quote(&w[0].0)));
    }
    let mut prefix = String::with_capacity(i + 8);
    series_prefix(
        &mut prefix,
        token_of(&measurement),
        tags.iter().map(|(a, b)| (token_of(a), token_of(b))),
    );
    // The field key adds at least a space and a byte.
    if prefix.len() + 2 > ctx.max_key {
        return Err(too_long(&prefix, prefix.len() + 2, true, ctx.max_key));
    }
    // Fields.
    let mut fields: SmallVec<[(Cow<str>, Value); 4]> = SmallVec::new();
    loop {
        if fields.len() >= limits.max_fields {
            return Err(format!(
                "more than {} fields (server option --max-fields-per-line)",
                limits.max_fields
            ));
        }
        let (k, j) = token(line, i, key_special, field_unescape);
        if k.is_empty() {
            return Err("missing field key".into());
        }
        if j >= s.len() || s[j] != b'=' {
            return Err(format!("field {} has no '=value'", quote(&k)));
        }
        let start = j + 1;
        let (v, j) = if start < s.len() && s[start] == b'"' {
            let Some(end) = string_end(s, start) else {
                return Err(format!(
                    "field {}: unbalanced quotes (the string value is not closed)",
                    quote(&k)
                ));
            };
            if end < s.len() && s[end] != b',' && s[end] != b' ' {
                return Err(format!(
                    "field {}: unexpected text after the closing quote",
                    quote(&k)
                ));
            }
            (Value::Str, end)
        } else {
            let mut j = start;
            while j < s.len() && s[j] != b',' && s[j] != b' ' {
                j += 1;
            }
            (parse_value(&line[start..j], &k)?, j)
        };
        fields.push((k, v));
        i = j;
        if i < s.len() && s[i] == b',' {
            i += 1;
            continue;
        }
        break;
    }
    if let Some(k) = duplicate(&fields) {
        return Err(format!("duplicate field key {}", quote(k)));
    }
    while i < s.len() && s[i] == b' ' {
        i += 1;
    }
    let ts = if i < s.len() {
        let rest = line[i..].trim_end_matches([' ', '\t']);
        if rest.contains(' ') {
            return Err(format!(
                "unexpected text after the timestamp: {}",
                quote(rest)
            ));
        }
        let t: i64 = rest.parse().map_err(|_| {
            if !rest.is_empty()
                && rest
                    .trim_start_matches('-')
                    .bytes()
                    .all(|b| b.is_ascii_digit())
            {
                format!("timestamp {} is out of range", quote(rest))
            } else {
                format!("invalid timestamp {}", quote(rest))
            }
        })?;
        let precision = ctx.precision;
        precision.to_us(t).ok_or_else(|| {
            format!(
                "timestamp {t} ({precision:?}) is out of range \
                 (1677-09-21T00:12:43Z .. 2262-04-11T23:47:16Z)"
            )
        })?
    } else {
        ctx.now_us
    };
    ctx.window.check_ts(ts, ctx.now_us)?;
    let mut quality = DEFAULT_QUALITY;
    let mut numbers = 0usize;
    let mut strings = 0u64;
    let mut has_quality = false;
    for (k, v) in &fields {
        if ctx.quality_field == Some(k.as_ref()) {
            has_quality = true;
            quality = match *v {
                Value::Int(x) if (0..=255).contains(&x) => x as u8,
                Value::Float(x) if x.fract() == 0.0 && (0.0..=255.0).contains(&x) => x as u8,
                _ => {
                    return Err(format!(
                        "field {}: quality must be an integer 0..=255 \
                         (server option --quality-field)",
                        quote(k)
                    ))
                }
            };
        } else if matches!(v, Value::Str) {
            strings += 1;
        } else {
            numbers += 1;
        }
    }
    if numbers == 0 && strings == 0 && has_quality {
        return Err(format!(
            "no value field (only the quality field {})",
            quote(ctx.quality_field.unwrap_or_default())
        ));
    }
    for (k, v) in &fields {
        let value = match *v {
            Value::Float(x) => x,
            Value::Int(x) => x as f64,
            Value::Bool(b) => f64::from(u8::from(b)),
            Value::Str => continue,
        };
        if ctx.quality_field == Some(k.as_ref()) {
            continue;
        }
        let mut key = String::with_capacity(prefix.len() + 1 + k.len());
        key.push_str(&prefix);
        key.push(' ');
        push_token(&mut key, token_of(k), key_special);
        if key.len() > ctx.max_key {
            return Err(too_long(&key, key.len(), false, ctx.max_key));
        }
        out.push(Sample {
            key,
            ts,
            value,
            quality,
        });
    }
    Ok(Parsed::Line {
        strings,
        stored: numbers,
    })
}

fn too_long(key: &str, len: usize, at_least: bool, max: usize) -> String {
    format!(
        "series key {} is {}{len} bytes, more than the limit of {max} (the catalog's)",
        quote(key),
        if at_least { "at least " } else { "" }
    )
}
