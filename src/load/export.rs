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
//! day in `[start, end)` that has points, written under `.tmp` and renamed
//! when complete. Schema (see [`SCHEMA`]): `series` (the series key),
//! `measurement`, `field`, `tags` (the key's tag section, `k=v,k=v` with
//! the key's own escapes), `time` (TIMESTAMP µs UTC), `value` (DOUBLE),
//! `quality` (INT32 annotated UINT_8). Rows are sorted by series key, then
//! time; row groups hold `row_group_rows` rows (default 1 Mi); pages are
//! snappy compressed, with the crate's default dictionary encoding and
//! statistics (min/max per page and row group, so engines prune).
//!
//! **Memory** is bounded by one row group of rows (32 bytes each) plus one
//! range answer, whatever the time span or the series count (the listing
//! itself is at most the catalog's 1,000,000 names). Must never: write a
//! partial file under its final name, or overwrite an existing partition.

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
use crate::storage::catalog::key::split_key;
use crate::Point;

/// The Parquet schema of every exported file.
pub const SCHEMA: &str = "message xtdb_export {
  REQUIRED BYTE_ARRAY series (STRING);
  REQUIRED BYTE_ARRAY measurement (STRING);
  REQUIRED BYTE_ARRAY field (STRING);
  REQUIRED BYTE_ARRAY tags (STRING);
  REQUIRED INT64 time (TIMESTAMP(MICROS,true));
  REQUIRED DOUBLE value;
  REQUIRED INT32 quality (INTEGER(8,false));
}";

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
    /// Start, µs since the epoch, inclusive.
    pub start: i64,
    /// End, µs since the epoch, exclusive.
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
    tags: ByteArray,
}

impl Series {
    fn new(id: u32, key: String) -> Series {
        // A name that is not a line-protocol series key (it cannot come
        // from the HTTP edge, but the catalog does not forbid it) exports
        // whole as its measurement.
        let (m, f, t) = match split_key(&key) {
            Some(((m, tags, f), prefix)) => {
                // The escaped `k=v,...` between the measurement and the field.
                let me = measurement_end(&key);
                let t = if tags.is_empty() || me >= prefix {
                    String::new()
                } else {
                    key[me + 1..prefix].to_string()
                };
                (m, f, t)
            }
            None => (key.clone(), String::new(), String::new()),
        };
        Series {
            id,
            key: ByteArray::from(key.into_bytes()),
            measurement: ByteArray::from(m.into_bytes()),
            field: ByteArray::from(f.into_bytes()),
            tags: ByteArray::from(t.into_bytes()),
        }
    }
}

/// Where a series key's escaped measurement ends: its first `,` or space
/// not after a backslash.
fn measurement_end(key: &str) -> usize {
    let b = key.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' if matches!(b.get(i + 1), Some(b',' | b' ')) => i += 2,
            b',' | b' ' => return i,
            _ => i += 1,
        }
    }
    b.len()
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
    let enc: String = pattern
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
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

/// Lists, then exports on a glommio executor made on this thread.
pub fn run(cfg: &ExportConfig) -> Result<ExportSummary> {
    if cfg.end <= cfg.start {
        return Err(Error::Config(format!(
            "--end ({}) must be after --start ({})",
            cfg.end, cfg.start
        )));
    }
    if cfg.chunk_us <= 0 || cfg.row_group_rows == 0 {
        return Err(Error::Config(
            "--chunk and --row-group-rows must be positive".into(),
        ));
    }
    let started = Instant::now();
    let listed = list_series(&cfg.http, cfg.opts.token.as_deref(), &cfg.pattern)?;
    let first = cfg.start.div_euclid(DAY_US);
    let last = (cfg.end - 1).div_euclid(DAY_US);
    for day in first..=last {
        let p = part_path(&cfg.to, day);
        if p.exists() {
            return Err(Error::Config(format!(
                "{} exists; export into an empty directory (or remove that partition)",
                p.display()
            )));
        }
    }
    let ex = glommio::LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .make()
        .map_err(|e| Error::Startup(format!("start an executor: {e}")))?;
    let mut summary = ex.run(export(cfg, listed, started))?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

fn part_path(to: &Path, day: i64) -> PathBuf {
    to.join(format!("date={}", date_of_day(day)))
        .join("part-0.parquet")
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

async fn export(
    cfg: &ExportConfig,
    listed: Vec<(u32, String)>,
    started: Instant,
) -> Result<ExportSummary> {
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
    let first = cfg.start.div_euclid(DAY_US);
    let last = (cfg.end - 1).div_euclid(DAY_US);
    for day in first..=last {
        let (ds, de) = (cfg.start.max(day * DAY_US), cfg.end.min((day + 1) * DAY_US));
        let path = part_path(&cfg.to, day);
        let tmp = path.with_extension("parquet.tmp");
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
            std::fs::rename(&tmp, &path)
                .map_err(|e| Error::io("rename the partition file", Some(path.clone()), e))?;
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

/// Writes one row group, each column in batches of [`BATCH`] rows.
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
        for b in rows.chunks(BATCH) {
            match col_ix {
                0..=3 => {
                    let v: Vec<ByteArray> = b
                        .iter()
                        .map(|r| {
                            let s = &series[r.0 as usize];
                            match col_ix {
                                0 => s.key.clone(),
                                1 => s.measurement.clone(),
                                2 => s.field.clone(),
                                _ => s.tags.clone(),
                            }
                        })
                        .collect();
                    col.typed::<ByteArrayType>()
                        .write_batch(&v, None, None)
                        .map_err(err)?;
                }
                4 => {
                    let v: Vec<i64> = b.iter().map(|r| r.1).collect();
                    col.typed::<Int64Type>()
                        .write_batch(&v, None, None)
                        .map_err(err)?;
                }
                5 => {
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
        assert_eq!(s.tags.as_utf8().ok(), Some("a=1,b\\=c=2\\ 3"));
        assert_eq!(s.field.as_utf8().ok(), Some("f 1"));
        let s = Series::new(2, "cpu usage".into());
        assert_eq!(s.tags.as_utf8().ok(), Some(""));
        assert_eq!(s.field.as_utf8().ok(), Some("usage"));
        assert!(parse_time_us("2024-01-01").is_ok_and(|t| t == 19_723 * DAY_US));
        assert!(parse_time_us("yesterday").is_err());
    }
}
