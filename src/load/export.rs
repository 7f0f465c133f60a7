//! `xtdb export`: a running server's points as Parquet files, partitioned
//! by day, for DuckDB, DataFusion, Spark and Trino.
//!
//! A client of the server, like `xtdb-load`: it owns the listing of the
//! series to export, the time-chunked reads and the Parquet files; it never
//! reaches into the server's insides (only [`crate::net::Client`], the
//! HTTP tags listing and pure types).
//!
//! **How it reads.** The native protocol has no catalog listing, so the
//! series come from the HTTP edge's `GET /api/v1/tags?match=SUBSTR` (one
//! request, `--http URL`); the points come over the native protocol
//! (`--addr`), one `range` per series and time chunk (`--chunk`, default
//! 1 h): binary and bit-exact (no decimal round trip), and at most one
//! chunk of one series in flight. A chunk the server refuses as too many
//! points (over its per-answer limit) is split in half and retried.
//!
//! **What it writes.** `DIR/date=YYYY-MM-DD/part-0.parquet` for every UTC
//! day in `[start, end)` that has points, written as the hidden
//! `.part-0.parquet.tmp` beside it and renamed when complete (hidden, so
//! that engines reading the directory meanwhile, or after an export cut
//! short, skip it: see [`tmp_path`]). Schema (see [`SCHEMA`]): `series` (the series key),
//! `measurement`, `field`, `tags` (a MAP of the key's tags, unescaped, in
//! key order; empty without tags), `time` (TIMESTAMP µs UTC), `value`
//! (DOUBLE), `quality` (INT32 annotated UINT_8). Rows are sorted by series key, then
//! time; row groups hold `row_group_rows` rows (default 1 Mi); pages are
//! snappy compressed, with the crate's default dictionary encoding and
//! statistics (min/max per page and row group, so engines prune).
//!
//! **Memory** is bounded by one row group of rows (32 bytes each) plus one
//! range answer, whatever the time span or the series count (the listing
//! itself is at most the catalog's 1,000,000 names). Must never: write a
//! partial file under its final name, or overwrite an existing partition.
//! Every file is `fsync`ed before its rename, and its directory after.
//!
//! **Periodic export** (`--every`, [`run_every`], one [`round`] each
//! time): a cold tier that grows by appending. The directory holds
//! [`STATE_FILE`], written before the first round and rewritten after each
//! (temporary name, `fsync`, rename, directory `fsync`): the `--match`, the
//! start, the end of what has been exported and the rounds done. Round `K`
//! exports `[end, cut)`, `cut` = now minus `--lag`, into
//! `date=YYYY-MM-DD/part-K.parquet` of every day it touches (round 0 writes
//! the same `part-0` files as a one-shot export), then records `end = cut,
//! rounds = K + 1`. A round killed midway leaves files numbered `K` or
//! more (or `.tmp` files), which the state does not count: the next round
//! removes them first and exports `[end, cut)` again, so a restart neither
//! duplicates nor skips a row. One exporter per directory ([`LOCK_FILE`],
//! an `flock` held for the job's life). Points written with a timestamp
//! before a round's cut after that round ran are not exported: `--lag`
//! must cover how late points arrive.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int32Type, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::net::protocol::code;
use crate::net::{Client, ClientError, ClientOptions};
use crate::storage::catalog::key::split_series_key;
use crate::Point;

/// The Parquet schema of every exported file.
pub const SCHEMA: &str = "message xtdb_export {
  REQUIRED BYTE_ARRAY series (STRING);
  REQUIRED BYTE_ARRAY measurement (STRING);
  REQUIRED BYTE_ARRAY field (STRING);
  REQUIRED GROUP tags (MAP) {
    REPEATED GROUP key_value {
      REQUIRED BYTE_ARRAY key (STRING);
      REQUIRED BYTE_ARRAY value (STRING);
    }
  }
  REQUIRED INT64 time (TIMESTAMP(MICROS,true));
  REQUIRED DOUBLE value;
  REQUIRED INT32 quality (INTEGER(8,false));
}";

/// A periodic export's state, in its directory (Spark and Trino skip
/// files whose name starts with `_`; DuckDB's `**/*.parquet` glob does too).
pub const STATE_FILE: &str = "_xtdb_export";

/// The lock file of a periodic export's directory (one job at a time).
pub const LOCK_FILE: &str = "_xtdb_export.lock";

/// First line of [`STATE_FILE`].
const STATE_MAGIC: &str = "xtdb export state 1";

/// Microseconds per day.
pub const DAY_US: i64 = 86_400_000_000;

/// The most names the tags listing returns (the server's own clamp).
const LIST_LIMIT: usize = 1_000_000;

/// Rows per `write_batch` call (bounds the per-column scratch vectors).
const BATCH: usize = 65_536;

/// What to export and where.
#[derive(Clone, Debug)]
pub struct ExportConfig {
    /// Native-protocol address (`--addr`), for the ranges.
    pub addr: String,
    /// HTTP edge (`--http`, `http://host:port`), for the series listing.
    pub http: String,
    /// Token and TLS of the native connection; the token also goes to the
    /// HTTP listing.
    pub opts: ClientOptions,
    /// Output directory (created if missing).
    pub to: PathBuf,
    /// Start, µs since the epoch, inclusive (a periodic export: of its
    /// first round).
    pub start: i64,
    /// End, µs since the epoch, exclusive (a one-shot export; a round of a
    /// periodic export ends at its cut instead).
    pub end: i64,
    /// Substring the series keys must contain (`""`: all).
    pub pattern: String,
    /// Time span of one range request, µs.
    pub chunk_us: i64,
    /// Rows per row group.
    pub row_group_rows: usize,
    /// Progress lines on stderr.
    pub progress: bool,
}

/// One written partition file.
#[derive(Clone, Debug)]
pub struct PartFile {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    /// The file.
    pub path: PathBuf,
    /// Rows in it.
    pub rows: u64,
    /// Row groups in it.
    pub row_groups: usize,
    /// Its size.
    pub bytes: u64,
}

/// What an export did.
#[derive(Clone, Debug, Default)]
pub struct ExportSummary {
    /// Series listed (matching the pattern).
    pub series: usize,
    /// Rows written.
    pub rows: u64,
    /// Range requests sent.
    pub requests: u64,
    /// Files written, by date.
    pub files: Vec<PartFile>,
    /// Wall time, seconds.
    pub seconds: f64,
}

impl ExportSummary {
    /// Bytes of all files.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }

    /// One JSON object (`--json`).
    pub fn json(&self) -> Value {
        serde_json::json!({
            "series": self.series, "rows": self.rows, "requests": self.requests,
            "bytes": self.bytes(), "seconds": self.seconds,
            "rows_per_sec": self.rows as f64 / self.seconds.max(1e-9),
            "bytes_per_row": self.bytes() as f64 / (self.rows.max(1)) as f64,
            "files": self.files.iter().map(|f| serde_json::json!({
                "date": f.date, "path": f.path.display().to_string(), "rows": f.rows,
                "row_groups": f.row_groups, "bytes": f.bytes,
            })).collect::<Vec<_>>(),
        })
    }

    /// The human summary.
    pub fn text(&self) -> String {
        format!(
            "export complete: {} series, {} rows in {} files ({} days), {:.1} MiB, {:.2} bytes/row, {:.2} s, {:.0} rows/s",
            self.series,
            self.rows,
            self.files.len(),
            self.files.len(),
            self.bytes() as f64 / 1048576.0,
            self.bytes() as f64 / (self.rows.max(1)) as f64,
            self.seconds,
            self.rows as f64 / self.seconds.max(1e-9)
        )
    }
}

/// A listed series and its column values.
struct Series {
    id: u32,
    key: ByteArray,
    measurement: ByteArray,
    field: ByteArray,
    /// The tags' keys and values, unescaped, in key order.
    tag_keys: Vec<ByteArray>,
    tag_values: Vec<ByteArray>,
}

impl Series {
    fn new(id: u32, key: String) -> Series {
        // A name that is not a line-protocol series key (it cannot come
        // from the HTTP edge, but the catalog does not forbid it) exports
        // whole as its measurement.
        let (m, f, tags) = match split_series_key(&key) {
            Some((m, tags, f)) => (m, f, tags),
            None => (key.clone(), String::new(), Vec::new()),
        };
        let bytes = |s: String| ByteArray::from(s.into_bytes());
        let (tag_keys, tag_values) = tags.into_iter().map(|(k, v)| (bytes(k), bytes(v))).unzip();
        Series {
            id,
            key: bytes(key),
            measurement: bytes(m),
            field: bytes(f),
            tag_keys,
            tag_values,
        }
    }
}

/// Parses `--start`/`--end`: microseconds since the epoch, or a date or
/// time InfluxQL accepts (`YYYY-MM-DD`, RFC 3339).
pub fn parse_time_us(s: &str) -> Result<i64> {
    if let Ok(us) = s.parse::<i64>() {
        return Ok(us);
    }
    crate::influxql::parse_time(s)
        .map(|ns| ns.div_euclid(1000))
        .ok_or_else(|| {
            Error::Config(format!(
                "time {s:?}: expected µs since the epoch, YYYY-MM-DD or RFC 3339"
            ))
        })
}

/// `YYYY-MM-DD` of a day count since 1970-01-01 (proleptic Gregorian).
pub fn date_of_day(z: i64) -> String {
    let (y, m, d) = crate::influxql::civil_from_days(z);
    format!("{y:04}-{m:02}-{d:02}")
}

fn http_io(op: &str, e: std::io::Error) -> Error {
    Error::io(op, None, e)
}

/// Lists the series whose key contains `pattern` over the HTTP edge
/// (`GET /api/v1/tags`), sorted by key. Blocking (std socket).
pub fn list_series(http: &str, token: Option<&str>, pattern: &str) -> Result<Vec<(u32, String)>> {
    let host = http.strip_prefix("http://").unwrap_or(http);
    if host.starts_with("https://") {
        return Err(Error::Config(format!(
            "--http {http}: the listing speaks plain HTTP only; give the edge's http:// address"
        )));
    }
    let host = host.trim_end_matches('/');
    if host.is_empty() || host.contains('/') {
        return Err(Error::Config(format!(
            "--http {http}: expected http://HOST:PORT"
        )));
    }
    let mut s = TcpStream::connect(host).map_err(|e| http_io(&format!("connect {host}"), e))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(|e| http_io("set timeout", e))?;
    let enc = url_encode(pattern);
    let auth = token.map_or(String::new(), |t| format!("Authorization: Token {t}\r\n"));
    let head = format!(
        "GET /api/v1/tags?match={enc}&limit={LIST_LIMIT} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n"
    );
    s.write_all(head.as_bytes())
        .map_err(|e| http_io("send the tags request", e))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| http_io("read the tags answer", e))?;
    let bad = |why: &str| Error::Config(format!("GET {host}/api/v1/tags: {why}"));
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no HTTP header in the answer"))?;
    let headers = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let status: u16 = headers
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let mut body = raw[split + 4..].to_vec();
    if headers.contains("transfer-encoding: chunked") {
        body = crate::load::hostile::dechunk(&body).ok_or_else(|| bad("broken chunked body"))?;
    }
    if status != 200 {
        return Err(bad(&format!(
            "status {status}: {}",
            String::from_utf8_lossy(&body)
        )));
    }
    let v: Value =
        serde_json::from_slice(&body).map_err(|e| bad(&format!("answer is not JSON: {e}")))?;
    let rows = v.as_array().ok_or_else(|| bad("answer is not an array"))?;
    if rows.len() >= LIST_LIMIT {
        return Err(Error::Config(format!(
            "more than {LIST_LIMIT} series match {pattern:?}; narrow --match"
        )));
    }
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let id = r["id"].as_u64().and_then(|i| u32::try_from(i).ok());
        let tag = r["tag"].as_str();
        match (id, tag) {
            (Some(id), Some(tag)) => out.push((id, tag.to_string())),
            _ => return Err(bad(&format!("row without id and tag: {r}"))),
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

fn check_sizes(cfg: &ExportConfig) -> Result<()> {
    if cfg.chunk_us <= 0 || cfg.row_group_rows == 0 {
        return Err(Error::Config(
            "--chunk and --row-group-rows must be positive".into(),
        ));
    }
    Ok(())
}

/// Lists, then exports `[start, end)` on a glommio executor made on this
/// thread (a one-shot export).
pub fn run(cfg: &ExportConfig) -> Result<ExportSummary> {
    if cfg.end <= cfg.start {
        return Err(Error::Config(format!(
            "--end ({}) must be after --start ({})",
            cfg.end, cfg.start
        )));
    }
    check_sizes(cfg)?;
    if cfg.to.join(STATE_FILE).exists() {
        return Err(Error::Config(format!(
            "{} is a periodic export's directory (it holds {STATE_FILE}); continue it with \
             --every, or export once into another directory",
            cfg.to.display()
        )));
    }
    let started = Instant::now();
    let listed = list_series(&cfg.http, cfg.opts.token.as_deref(), &cfg.pattern)?;
    let first = cfg.start.div_euclid(DAY_US);
    let last = (cfg.end - 1).div_euclid(DAY_US);
    for day in first..=last {
        let p = part_path(&cfg.to, day, 0);
        if p.exists() {
            return Err(Error::Config(format!(
                "{} exists; export into an empty directory (or remove that partition)",
                p.display()
            )));
        }
    }
    export_on_executor(cfg, listed, (cfg.start, cfg.end), 0, started)
}

fn export_on_executor(
    cfg: &ExportConfig,
    listed: Vec<(u32, String)>,
    span: (i64, i64),
    part: u64,
    started: Instant,
) -> Result<ExportSummary> {
    let ex = glommio::LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .make()
        .map_err(|e| Error::Startup(format!("start an executor: {e}")))?;
    let mut summary = ex.run(crate::storage::keepalive::awake(export(
        cfg, listed, span, part, started,
    )))?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

fn part_path(to: &Path, day: i64, part: u64) -> PathBuf {
    to.join(format!("date={}", date_of_day(day)))
        .join(format!("part-{part}.parquet"))
}

/// The name a partition file is written under until it is complete:
/// `.part-N.parquet.tmp` in the same directory. The leading dot hides it
/// from Spark (and Hadoop's other readers: Hive, Trino), which skip files
/// starting with `.` or `_` but read every other file of a partition
/// directory as Parquet; the `.tmp` keeps it out of DuckDB's
/// `**/*.parquet` glob and DataFusion's `.parquet` extension. So a
/// directory being exported into, or left by an export cut short, reads
/// as its complete files in all of them.
fn tmp_path(path: &Path) -> PathBuf {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    path.with_file_name(format!(".{name}.tmp"))
}

/// A periodic export's progress, as [`STATE_FILE`] records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct State {
    /// The `--match` of every round.
    pub pattern: String,
    /// Start of the first round, µs.
    pub start: i64,
    /// Everything in `[start, end)` is exported, µs.
    pub end: i64,
    /// Rounds done; the next one writes `part-{rounds}.parquet` files.
    pub rounds: u64,
}

impl State {
    /// The file's text: a line per field, then the CRC32 of the lines.
    pub fn encode(&self) -> String {
        let body = format!(
            "{STATE_MAGIC}\nmatch {}\nstart_us {}\nend_us {}\nrounds {}\n",
            Value::String(self.pattern.clone()),
            self.start,
            self.end,
            self.rounds
        );
        crate::storage::backup::with_crc_line(body)
    }

    /// Parses [`State::encode`]'s text; `Err` says what is wrong.
    pub fn parse(text: &str) -> std::result::Result<State, String> {
        let body = crate::storage::backup::crc_checked_body(text, "export state")?;
        let mut l = body.lines();
        if l.next() != Some(STATE_MAGIC) {
            return Err(format!("first line is not {STATE_MAGIC:?}"));
        }
        let mut field = |key: &str| {
            l.next()
                .and_then(|v| v.strip_prefix(key))
                .map(str::to_string)
                .ok_or(format!("missing {key:?} line"))
        };
        let pattern = match serde_json::from_str(&field("match ")?) {
            Ok(Value::String(p)) => p,
            _ => return Err("malformed match line".into()),
        };
        let num = |v: String, key: &str| v.parse::<i64>().map_err(|_| format!("malformed {key}"));
        let start = num(field("start_us ")?, "start_us")?;
        let end = num(field("end_us ")?, "end_us")?;
        let rounds = field("rounds ")?
            .parse::<u64>()
            .map_err(|_| "malformed rounds".to_string())?;
        if end < start {
            return Err(format!("end_us {end} before start_us {start}"));
        }
        Ok(State {
            pattern,
            start,
            end,
            rounds,
        })
    }
}

/// The state of the periodic export in `dir`, if it is one.
pub fn read_state(dir: &Path) -> Result<Option<State>> {
    let path = dir.join(STATE_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) => State::parse(&t).map(Some).map_err(|why| {
            Error::Config(format!(
                "{}: not a valid export state ({why}); the directory's partitions cannot be \
                 continued safely",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io("read", Some(path), e)),
    }
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("fsync dir", Some(dir.to_path_buf()), e))
}

/// Writes `st` as `dir`'s state: temporary name, `fsync`, rename,
/// directory `fsync`.
fn write_state(dir: &Path, st: &State) -> Result<()> {
    let path = dir.join(STATE_FILE);
    let tmp = dir.join(format!("{STATE_FILE}.tmp"));
    let io = |op: &str, e| Error::io(op.to_string(), Some(tmp.clone()), e);
    let mut f = File::create(&tmp).map_err(|e| io("create", e))?;
    f.write_all(st.encode().as_bytes())
        .map_err(|e| io("write", e))?;
    f.sync_all().map_err(|e| io("fsync", e))?;
    std::fs::rename(&tmp, &path).map_err(|e| io("rename", e))?;
    fsync_dir(dir)
}

/// One periodic export job's hold on its directory ([`LOCK_FILE`]); the
/// kernel releases it when the process dies.
#[derive(Debug)]
pub struct JobLock {
    _file: File,
}

/// Takes `dir`'s job lock (creating `dir`), or refuses: another periodic
/// export runs into it.
pub fn lock_dir(dir: &Path) -> Result<JobLock> {
    use std::fs::{OpenOptions, TryLockError};
    std::fs::create_dir_all(dir)
        .map_err(|e| Error::io("create the export dir", Some(dir.to_path_buf()), e))?;
    let path = dir.join(LOCK_FILE);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| Error::io("open the export lock", Some(path.clone()), e))?;
    match f.try_lock() {
        Ok(()) => Ok(JobLock { _file: f }),
        Err(TryLockError::WouldBlock) => Err(Error::Config(format!(
            "{} is in use: another periodic export into it is running (it holds the lock on {})",
            dir.display(),
            path.display()
        ))),
        Err(TryLockError::Error(e)) => Err(Error::io("lock", Some(path), e)),
    }
}

/// What one round of a periodic export did.
#[derive(Clone, Debug)]
pub struct Round {
    /// The round's number (its files are `part-{round}.parquet`); `None`
    /// when there was nothing new to export (the cut was not after the
    /// exported end).
    pub round: Option<u64>,
    /// The exported span, `[from, upto)`, µs.
    pub from: i64,
    /// End of the exported span (the cut), µs.
    pub upto: i64,
    /// Leftover files of a round cut short, removed first.
    pub removed: usize,
    /// The export itself.
    pub summary: ExportSummary,
}

impl Round {
    /// One JSON object: the export's summary plus the round's fields.
    pub fn json(&self) -> Value {
        let mut v = self.summary.json();
        if let Value::Object(m) = &mut v {
            m.insert("round".into(), serde_json::json!(self.round));
            m.insert("from_us".into(), self.from.into());
            m.insert("upto_us".into(), self.upto.into());
            m.insert("removed".into(), self.removed.into());
        }
        v
    }

    /// The human summary.
    pub fn text(&self) -> String {
        match self.round {
            None => format!(
                "export round: nothing new (exported up to {} µs, the cut is {} µs)",
                self.from, self.upto
            ),
            Some(k) => format!(
                "export round {k}: [{}, {}) µs{}; {}",
                self.from,
                self.upto,
                if self.removed > 0 {
                    format!(
                        ", {} leftover files of a round cut short removed",
                        self.removed
                    )
                } else {
                    String::new()
                },
                self.summary.text()
            ),
        }
    }
}

/// Removes what a round cut short left in `dir`: the state's temporary
/// file, partition files numbered `rounds` or more (the state does not
/// count them) and temporary partition files ([`tmp_path`]'s, and the
/// visible `part-N.parquet.tmp` earlier versions wrote); nothing else.
/// Returns the files removed.
fn remove_leftovers(dir: &Path, rounds: u64) -> Result<usize> {
    let list =
        |d: &Path| std::fs::read_dir(d).map_err(|e| Error::io("list", Some(d.to_path_buf()), e));
    let mut removed = 0;
    for e in list(dir)? {
        let e = e.map_err(|e| Error::io("list", Some(dir.to_path_buf()), e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        let path = e.path();
        if name == format!("{STATE_FILE}.tmp") {
            std::fs::remove_file(&path).map_err(|e| Error::io("remove", Some(path.clone()), e))?;
            removed += 1;
            continue;
        }
        if !name.starts_with("date=") || !path.is_dir() {
            continue;
        }
        let mut here = 0;
        for f in list(&path)? {
            let f = f.map_err(|e| Error::io("list", Some(path.clone()), e))?;
            let n = f.file_name().to_string_lossy().into_owned();
            let uncounted = n
                .strip_prefix(".part-")
                .or_else(|| n.strip_prefix("part-"))
                .is_some_and(|r| r.ends_with(".parquet.tmp"))
                || n.strip_prefix("part-").is_some_and(|r| {
                    r.strip_suffix(".parquet")
                        .and_then(|k| k.parse::<u64>().ok())
                        .is_some_and(|k| k >= rounds)
                });
            if uncounted {
                let fp = f.path();
                std::fs::remove_file(&fp).map_err(|e| Error::io("remove", Some(fp.clone()), e))?;
                here += 1;
            }
        }
        if here > 0 {
            fsync_dir(&path)?;
            removed += here;
        }
    }
    if removed > 0 {
        fsync_dir(dir)?;
    }
    Ok(removed)
}

/// One round of the periodic export into `cfg.to`: exports what lies
/// between the state's end (`cfg.start` for the first round) and `upto`,
/// then records it (see the module doc). `cfg.end` is not used. Refuses a
/// directory that holds partitions but no state (a one-shot export's), and
/// a `--match` or `--start` other than the state's.
pub fn round(cfg: &ExportConfig, upto: i64) -> Result<Round> {
    check_sizes(cfg)?;
    let to = &cfg.to;
    std::fs::create_dir_all(to)
        .map_err(|e| Error::io("create the export dir", Some(to.clone()), e))?;
    let st = match read_state(to)? {
        Some(st) => {
            if st.pattern != cfg.pattern {
                return Err(Error::Config(format!(
                    "{} holds a periodic export of --match {:?}, not {:?}; use the same --match \
                     or another directory",
                    to.display(),
                    st.pattern,
                    cfg.pattern
                )));
            }
            if st.start != cfg.start {
                return Err(Error::Config(format!(
                    "{} holds a periodic export that started at {} µs, not {} µs; give the same \
                     --start (or none) or another directory",
                    to.display(),
                    st.start,
                    cfg.start
                )));
            }
            st
        }
        None => {
            let has_parts = std::fs::read_dir(to)
                .map_err(|e| Error::io("list", Some(to.clone()), e))?
                .filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().starts_with("date="));
            if has_parts {
                return Err(Error::Config(format!(
                    "{} holds partitions but no {STATE_FILE}: not a periodic export's directory \
                     (a one-shot export's?); a periodic export needs its own",
                    to.display()
                )));
            }
            let st = State {
                pattern: cfg.pattern.clone(),
                start: cfg.start,
                end: cfg.start,
                rounds: 0,
            };
            write_state(to, &st)?;
            st
        }
    };
    let removed = remove_leftovers(to, st.rounds)?;
    let started = Instant::now();
    if upto <= st.end {
        return Ok(Round {
            round: None,
            from: st.end,
            upto,
            removed,
            summary: ExportSummary::default(),
        });
    }
    let listed = list_series(&cfg.http, cfg.opts.token.as_deref(), &cfg.pattern)?;
    let summary = export_on_executor(cfg, listed, (st.end, upto), st.rounds, started)?;
    fsync_dir(to)?;
    write_state(
        to,
        &State {
            end: upto,
            rounds: st.rounds + 1,
            ..st.clone()
        },
    )?;
    Ok(Round {
        round: Some(st.rounds),
        from: st.end,
        upto,
        removed,
        summary,
    })
}

/// The periodic export (`--every`): holds the directory's job lock and runs
/// a [`round`] up to now minus `lag_us` every `every`, telling `report`
/// each round's outcome. An error in the first round (a refused directory,
/// a server that is not there) ends the job with it; a later round's error
/// is reported and the next round retries. Runs until the process ends (any
/// time is safe: the next start resumes).
pub fn run_every(
    cfg: &ExportConfig,
    every: Duration,
    lag_us: i64,
    mut report: impl FnMut(&Result<Round>),
) -> Result<()> {
    if every.is_zero() || lag_us < 0 {
        return Err(Error::Config(
            "--every must be positive and --lag not negative".into(),
        ));
    }
    let _lock = lock_dir(&cfg.to)?;
    let mut first = true;
    loop {
        let began = Instant::now();
        let r = round(
            cfg,
            crate::runtime::admission::now_us().saturating_sub(lag_us),
        );
        match r {
            Err(e) if first => return Err(e),
            r => report(&r),
        }
        first = false;
        std::thread::sleep(every.saturating_sub(began.elapsed()));
    }
}

/// Reads `[s, e)` of one series, splitting a window the server refuses as
/// too many points.
async fn read_window(
    c: &mut Client,
    cfg: &ExportConfig,
    tag: u32,
    s: i64,
    e: i64,
    requests: &mut u64,
    out: &mut Vec<Point>,
) -> Result<()> {
    let mut stack = vec![(s, e)];
    while let Some((s, e)) = stack.pop() {
        *requests += 1;
        match c.range(tag, s, e).await {
            Ok(mut pts) => {
                if !pts.is_sorted_by_key(|p| p.ts) {
                    pts.sort_by_key(|p| p.ts);
                }
                out.extend_from_slice(&pts);
            }
            Err(ClientError::Remote { code: k, .. }) if k == code::TOO_MANY && e - s > 1 => {
                if code::closes_connection(k) {
                    *c = Client::connect_with(&cfg.addr, &cfg.opts).await?;
                }
                let mid = s + (e - s) / 2;
                // Later half first on the stack: the earlier half is read first.
                stack.push((mid, e));
                stack.push((s, mid));
            }
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

/// The rows of one row group: index into the series list, time, value,
/// quality.
type Rows = Vec<(u32, i64, f64, u8)>;

/// Exports `span` of the listed series into `part-{part}.parquet` files.
async fn export(
    cfg: &ExportConfig,
    listed: Vec<(u32, String)>,
    span: (i64, i64),
    part: u64,
    started: Instant,
) -> Result<ExportSummary> {
    let (start, end) = span;
    let series: Vec<Series> = listed
        .into_iter()
        .map(|(id, k)| Series::new(id, k))
        .collect();
    let schema = Arc::new(
        parse_message_type(SCHEMA).map_err(|e| Error::Config(format!("parquet schema: {e}")))?,
    );
    let props = Arc::new(
        WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_created_by(format!("xtdb {}", env!("CARGO_PKG_VERSION")))
            .build(),
    );
    let mut c = Client::connect_with(&cfg.addr, &cfg.opts).await?;
    let mut summary = ExportSummary {
        series: series.len(),
        ..Default::default()
    };
    let mut last_note = Instant::now();
    let mut pts = Vec::new();
    let first = start.div_euclid(DAY_US);
    let last = (end - 1).div_euclid(DAY_US);
    for day in first..=last {
        let (ds, de) = (start.max(day * DAY_US), end.min((day + 1) * DAY_US));
        let path = part_path(&cfg.to, day, part);
        let tmp = tmp_path(&path);
        let mut writer: Option<SerializedFileWriter<File>> = None;
        let mut rows: Rows = Vec::new();
        let mut day_rows = 0u64;
        for (si, s) in series.iter().enumerate() {
            let mut t = ds;
            while t < de {
                let e = de.min(t.saturating_add(cfg.chunk_us));
                pts.clear();
                read_window(&mut c, cfg, s.id, t, e, &mut summary.requests, &mut pts).await?;
                for p in &pts {
                    rows.push((si as u32, p.ts, p.value, p.quality));
                    if rows.len() >= cfg.row_group_rows {
                        let w = open(&mut writer, &tmp, &schema, &props)?;
                        write_group(w, &series, &rows, &tmp)?;
                        day_rows += rows.len() as u64;
                        summary.rows += rows.len() as u64;
                        rows.clear();
                    }
                }
                t = e;
            }
            if cfg.progress && last_note.elapsed() >= Duration::from_secs(2) {
                last_note = Instant::now();
                let done = summary.rows + rows.len() as u64;
                eprintln!(
                    "export: {} series {}/{}, {done} rows, {:.0} rows/s",
                    date_of_day(day),
                    si + 1,
                    series.len(),
                    done as f64 / started.elapsed().as_secs_f64().max(1e-9)
                );
            }
        }
        if !rows.is_empty() {
            let w = open(&mut writer, &tmp, &schema, &props)?;
            write_group(w, &series, &rows, &tmp)?;
            day_rows += rows.len() as u64;
            summary.rows += rows.len() as u64;
        }
        if let Some(w) = writer {
            let meta = w.close().map_err(|e| pq_err("close", &tmp, e))?;
            File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::io("fsync", Some(tmp.clone()), e))?;
            std::fs::rename(&tmp, &path)
                .map_err(|e| Error::io("rename the partition file", Some(path.clone()), e))?;
            if let Some(dir) = path.parent() {
                fsync_dir(dir)?;
            }
            let bytes = std::fs::metadata(&path)
                .map_err(|e| Error::io("stat", Some(path.clone()), e))?
                .len();
            summary.files.push(PartFile {
                date: date_of_day(day),
                path,
                rows: day_rows,
                row_groups: meta.num_row_groups(),
                bytes,
            });
        }
    }
    Ok(summary)
}

fn pq_err(op: &str, path: &Path, e: parquet::errors::ParquetError) -> Error {
    Error::io(
        format!("parquet {op}"),
        Some(path.to_path_buf()),
        std::io::Error::other(e.to_string()),
    )
}

/// The day's writer, created (with its directory) on the first row.
fn open<'a>(
    w: &'a mut Option<SerializedFileWriter<File>>,
    tmp: &Path,
    schema: &parquet::schema::types::TypePtr,
    props: &parquet::file::properties::WriterPropertiesPtr,
) -> Result<&'a mut SerializedFileWriter<File>> {
    if w.is_none() {
        if let Some(dir) = tmp.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::io("create the partition dir", Some(dir.to_path_buf()), e))?;
        }
        let f = File::create(tmp).map_err(|e| Error::io("create", Some(tmp.to_path_buf()), e))?;
        *w = Some(
            SerializedFileWriter::new(f, schema.clone(), props.clone())
                .map_err(|e| pq_err("open", tmp, e))?,
        );
    }
    match w {
        Some(w) => Ok(w),
        None => Err(Error::Config("parquet writer missing".into())),
    }
}

/// Writes one row group, each column in batches of about [`BATCH`] rows
/// (the leaf columns in schema order: series, measurement, field, the
/// tags' keys, the tags' values, time, value, quality).
fn write_group(
    w: &mut SerializedFileWriter<File>,
    series: &[Series],
    rows: &Rows,
    path: &Path,
) -> Result<()> {
    let err = |e| pq_err("write", path, e);
    let mut rg = w.next_row_group().map_err(err)?;
    let mut col_ix = 0;
    while let Some(mut col) = rg.next_column().map_err(err)? {
        if matches!(col_ix, 3 | 4) {
            write_tags(&mut col, series, rows, col_ix == 3).map_err(err)?;
        }
        for b in rows.chunks(BATCH) {
            match col_ix {
                0..=2 => {
                    let v: Vec<ByteArray> = b
                        .iter()
                        .map(|r| {
                            let s = &series[r.0 as usize];
                            match col_ix {
                                0 => s.key.clone(),
                                1 => s.measurement.clone(),
                                _ => s.field.clone(),
                            }
                        })
                        .collect();
                    col.typed::<ByteArrayType>()
                        .write_batch(&v, None, None)
                        .map_err(err)?;
                }
                3 | 4 => {}
                5 => {
                    let v: Vec<i64> = b.iter().map(|r| r.1).collect();
                    col.typed::<Int64Type>()
                        .write_batch(&v, None, None)
                        .map_err(err)?;
                }
                6 => {
                    let v: Vec<f64> = b.iter().map(|r| r.2).collect();
                    col.typed::<DoubleType>()
                        .write_batch(&v, None, None)
                        .map_err(err)?;
                }
                _ => {
                    let v: Vec<i32> = b.iter().map(|r| i32::from(r.3)).collect();
                    col.typed::<Int32Type>()
                        .write_batch(&v, None, None)
                        .map_err(err)?;
                }
            }
        }
        col.close().map_err(err)?;
        col_ix += 1;
    }
    rg.close().map_err(err)?;
    Ok(())
}

/// Writes the `tags` map's key (`keys`) or value column: per row one
/// entry per tag (definition level 1; repetition level 0 for a row's first,
/// 1 for the others), or for a row without tags one empty entry (both
/// levels 0). Batches end on a row's end once they hold [`BATCH`] levels.
fn write_tags(
    col: &mut parquet::file::writer::SerializedColumnWriter<'_>,
    series: &[Series],
    rows: &Rows,
    keys: bool,
) -> parquet::errors::Result<()> {
    let (mut v, mut def, mut rep) = (Vec::new(), Vec::new(), Vec::new());
    let w = col.typed::<ByteArrayType>();
    for r in rows {
        let s = &series[r.0 as usize];
        let t = if keys { &s.tag_keys } else { &s.tag_values };
        if t.is_empty() {
            def.push(0);
            rep.push(0);
        }
        for (i, x) in t.iter().enumerate() {
            v.push(x.clone());
            def.push(1);
            rep.push(i16::from(i > 0));
        }
        if def.len() >= BATCH {
            w.write_batch(&v, Some(&def), Some(&rep))?;
            v.clear();
            def.clear();
            rep.clear();
        }
    }
    if !def.is_empty() {
        w.write_batch(&v, Some(&def), Some(&rep))?;
    }
    Ok(())
}

/// `s` percent-encoded for a URL's query (only `A-Za-z0-9-_.` kept).
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_tags_section() {
        assert_eq!(date_of_day(0), "1970-01-01");
        assert_eq!(date_of_day(-1), "1969-12-31");
        assert_eq!(date_of_day(19_723), "2024-01-01");
        assert_eq!(date_of_day(19_782), "2024-02-29");
        let s = Series::new(1, "m\\,x,a=1,b\\=c=2\\ 3 f\\ 1".into());
        assert_eq!(s.measurement.as_utf8().ok(), Some("m,x"));
        let utf8 = |v: &[ByteArray]| -> Vec<String> {
            v.iter()
                .map(|b| b.as_utf8().unwrap_or("?").to_string())
                .collect()
        };
        assert_eq!(utf8(&s.tag_keys), ["a", "b=c"]);
        assert_eq!(utf8(&s.tag_values), ["1", "2 3"]);
        assert_eq!(s.field.as_utf8().ok(), Some("f 1"));
        let s = Series::new(2, "cpu usage".into());
        assert!(s.tag_keys.is_empty() && s.tag_values.is_empty());
        assert_eq!(s.field.as_utf8().ok(), Some("usage"));
        assert!(parse_time_us("2024-01-01").is_ok_and(|t| t == 19_723 * DAY_US));
        assert!(parse_time_us("yesterday").is_err());
    }

    #[test]
    fn partition_files_are_written_under_a_hidden_name() {
        let path = part_path(Path::new("/x"), 19_723, 3);
        assert_eq!(path, Path::new("/x/date=2024-01-01/part-3.parquet"));
        // Hidden from Spark/Hadoop (leading '.'), not `*.parquet`.
        assert_eq!(
            tmp_path(&path),
            Path::new("/x/date=2024-01-01/.part-3.parquet.tmp")
        );
    }

    #[test]
    fn state_round_trips_and_damage_is_refused() {
        let st = State {
            pattern: "a \"b\"\nc".into(),
            start: -5,
            end: 1_704_067_200_000_000,
            rounds: 3,
        };
        let text = st.encode();
        assert_eq!(State::parse(&text), Ok(st.clone()));
        // Every byte flipped, and every cut, is refused (but the final
        // newline's).
        for i in 0..text.len() - 1 {
            let mut b = text.clone().into_bytes();
            b[i] ^= 0x01;
            if let Ok(t) = String::from_utf8(b) {
                assert!(State::parse(&t).is_err(), "flip at {i}: {t:?}");
            }
            assert!(State::parse(&text[..i]).is_err(), "cut at {i}");
        }
        let back = State { end: -6, ..st };
        assert!(State::parse(&back.encode()).is_err_and(|e| e.contains("before")));
    }
}
