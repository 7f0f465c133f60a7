//! `xtdb`: the server (`xtdb serve`) and its operator commands
//! (`xtdb stats`, `xtdb token`, `xtdb backup`, `xtdb export`). Thin: parsing and printing only; the logic
//! is in the library (`xtdb::server`, `xtdb::net`, `xtdb::storage::tokens`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use xtdb::net::limits::{TimeWindow, WireLimits};
use xtdb::net::tls::TlsFiles;
use xtdb::net::ClientOptions;

/// mimalloc: tag buffers grow by small reallocations millions of times a
/// second (WAL replay, ingest); glibc's realloc and free lists were ~15 %
/// of a replay's CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use xtdb::server::{AuthSetting, ServerConfig, Shutdown};
use xtdb::storage::tokens::{Perms, TokenStore};
use xtdb::storage::SyncMode;

mod logger;

#[derive(Parser)]
#[command(
    name = "xtdb",
    version,
    about = "Thread-per-core time-series store for industrial tag data"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server: one shard per listed CPU, native protocol on --listen,
    /// HTTP on --http.
    Serve(Box<ServeArgs>),
    /// Print a running server's counters (total and per shard) as a table.
    Stats {
        /// Server address.
        #[arg(long, env = "XTDB_ADDR", default_value = "127.0.0.1:7070")]
        addr: String,
        /// Sample twice, this many seconds apart, and add current rates
        /// (`*_per_sec_now`) to the averages since start.
        #[arg(long)]
        interval: Option<f64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Manage access tokens in a data dir (no server needed; a running
    /// server picks changes up within a second, or at once on SIGHUP).
    #[command(subcommand)]
    Token(TokenCmd),
    /// Take an online backup of a running server into a directory on the
    /// server's machine (`xtdb backup --to DIR`), or check one without a
    /// server (`xtdb backup verify DIR`).
    Backup(BackupArgs),
    /// Export a running server's points as Parquet, one file per UTC day
    /// (`DIR/date=YYYY-MM-DD/part-0.parquet`), for DuckDB, DataFusion, Spark;
    /// with `--every`, a periodic job that appends new partitions.
    Export(ExportArgs),
    /// Cluster mode: the partitions' owners and lag, read from NATS.
    #[command(subcommand)]
    Cluster(ClusterCmd),
}

#[derive(Subcommand)]
enum ClusterCmd {
    /// Partitions, owners, lag per partition in messages and seconds.
    Status {
        /// NATS servers, `nats://HOST:PORT[,…]`.
        #[arg(long, env = "XTDB_CLUSTER", value_delimiter = ',', required = true)]
        cluster: Vec<String>,
        /// The cluster's partition count.
        #[arg(long, env = "XTDB_CLUSTER_PARTITIONS", default_value_t = 16)]
        partitions: u32,
        /// One JSON object instead of the table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct ExportArgs {
    /// Native-protocol address (the points are read here).
    #[arg(long, env = "XTDB_ADDR", default_value = "127.0.0.1:7070")]
    addr: String,
    /// The server's HTTP edge, http://HOST:PORT (the series are listed
    /// here: the native protocol has no catalog listing).
    #[arg(long, env = "XTDB_HTTP")]
    http: String,
    /// Output directory on this machine (created if missing; an existing
    /// partition file is never overwritten).
    #[arg(long)]
    to: PathBuf,
    /// Start, inclusive: YYYY-MM-DD, RFC 3339, or µs since the epoch.
    /// With --every: of the first round (later starts may omit it; the
    /// directory records it).
    #[arg(long)]
    start: Option<String>,
    /// End, exclusive: YYYY-MM-DD, RFC 3339, or µs since the epoch (not
    /// with --every: each round ends at now minus --lag).
    #[arg(long, required_unless_present = "every", conflicts_with = "every")]
    end: Option<String>,
    /// Run as a periodic job: every this long (InfluxQL duration: 10m, 1h)
    /// export what is new since the last round into new
    /// `part-ROUND.parquet` files; the directory records where it got to,
    /// so a restart resumes without duplicating or skipping rows.
    #[arg(long)]
    every: Option<String>,
    /// With --every: each round exports up to now minus this (InfluxQL
    /// duration); points written later than this behind real time are
    /// not exported.
    #[arg(long, default_value = "5m", requires = "every")]
    lag: String,
    /// Export only series whose key contains this substring.
    #[arg(long = "match", default_value = "")]
    pattern: String,
    /// Time span of one range request (InfluxQL duration: 10m, 1h).
    #[arg(long, default_value = "1h")]
    chunk: String,
    /// Rows per Parquet row group.
    #[arg(long, default_value_t = 1 << 20)]
    row_group_rows: usize,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct BackupArgs {
    #[command(subcommand)]
    cmd: Option<BackupCmd>,
    /// Server address.
    #[arg(long, env = "XTDB_ADDR", default_value = "127.0.0.1:7070")]
    addr: String,
    /// Target directory: an absolute path on the server's machine (created
    /// if missing; empty, or an earlier backup, which is updated
    /// incrementally).
    #[arg(long)]
    to: Option<String>,
    /// Copy sealed chunks even when the target is on the same filesystem
    /// (default: hard-link them).
    #[arg(long)]
    no_link: bool,
    /// Pace each shard's backup reads and writes at this many MiB/s (0:
    /// as fast as the disk goes), so the WAL's syncs do not queue behind
    /// the copy.
    #[arg(long, default_value_t = 32)]
    rate: u64,
    /// Print the summary as one JSON object.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Subcommand)]
enum BackupCmd {
    /// Check a backup: its manifest, every file's size and CRC32, and every
    /// checksum inside the chunk, WAL, catalog and token files.
    Verify {
        /// The backup directory.
        dir: PathBuf,
        /// Print the result as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct ClientArgs {
    /// Token to authenticate with (needs the read permission).
    #[arg(long, env = "XTDB_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Connect with TLS, trusting the CA certificate(s) in this PEM file.
    #[arg(long, env = "XTDB_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Name to expect in the server's certificate (default: the host of --addr).
    #[arg(long, env = "XTDB_TLS_SERVER_NAME")]
    tls_server_name: Option<String>,
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Create a token and print it as the last line of stdout (it is shown
    /// only once: only its SHA-256 is stored).
    Create {
        /// Data directory (created if missing).
        #[arg(long, env = "XTDB_DATA_DIR")]
        data_dir: PathBuf,
        /// Unique name (letters, digits, '.', '_', '-'); the InfluxDB 1.x user name.
        #[arg(long)]
        name: String,
        /// May query (range, latest, tags, stats, /metrics).
        #[arg(long)]
        read: bool,
        /// May write (and so create series in the catalog).
        #[arg(long)]
        write: bool,
        /// May manage tokens and take backups.
        #[arg(long)]
        admin: bool,
    },
    /// List the tokens: name, permissions, created, status.
    List {
        /// Data directory.
        #[arg(long, env = "XTDB_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Revoke a token by name.
    Revoke {
        /// The token's name.
        name: String,
        /// Data directory.
        #[arg(long, env = "XTDB_DATA_DIR")]
        data_dir: PathBuf,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Data directory (shard N lives in DATA/shard-N).
    #[arg(long, env = "XTDB_DATA_DIR")]
    data_dir: PathBuf,
    /// CPUs to run shards on, one shard each, e.g. `1`, `0,1`, `0-3`
    /// [default: all online CPUs]. The shard count is fixed by the first start.
    #[arg(long, env = "XTDB_CPUS")]
    cpus: Option<String>,
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, env = "XTDB_LISTEN", default_value = "127.0.0.1:7070")]
    listen: String,
    /// When writes are acknowledged: `always` (after WAL fdatasync) or `none`.
    #[arg(long, env = "XTDB_SYNC", default_value = "always")]
    sync: SyncMode,
    /// Memory budget for buffered points, bytes in total (split across shards).
    #[arg(long, env = "XTDB_MEMORY_BUDGET", default_value_t = 1 << 30)]
    memory_budget: usize,
    /// glommio registered-buffer memory per shard, bytes.
    #[arg(long, env = "XTDB_IO_MEMORY", default_value_t = 4 << 20)]
    io_memory: usize,
    /// WAL bytes per shard: above half of it the tags holding the oldest
    /// segment are flushed (what a restart replays at most).
    #[arg(long, env = "XTDB_WAL_BUDGET", default_value_t = 512 << 20)]
    wal_budget: u64,
    /// Keep points for this long (`30d`, `52w`, `10y`, `12h`); older points
    /// are never served and their chunk files are deleted [default: forever].
    #[arg(long, env = "XTDB_RETENTION", value_parser = parse_retention)]
    retention: Option<Duration>,
    /// Bytes per second compaction may read and write, per shard.
    #[arg(long, env = "XTDB_COMPACT_RATE", default_value_t = 128 << 20)]
    compact_rate: u64,
    /// Bytes of sealed flush chunks, per shard, that start a compaction job
    /// while writes go on (once writes stop, the shard compacts anyway).
    #[arg(long, env = "XTDB_COMPACT_BACKLOG", default_value_t = 1 << 30)]
    compact_backlog: u64,
    /// Compaction cuts each tag's segments at every multiple of this since
    /// the epoch (`1h`, `10m`; `0` or `off`: only where blocks fill), so an
    /// aggregate window that is a multiple of it is answered from stored
    /// summaries without reading blocks. Finer costs disk: ~250 bytes per cut.
    #[arg(long, env = "XTDB_SEGMENT_ALIGN", default_value = "1h", value_parser = parse_align)]
    segment_align: Duration,
    /// Compaction stores each compacted segment's count, sum, min, max,
    /// first and last per interval of this width (`1m`, `10s`; `0` or
    /// `off`: none), so aggregate windows that are multiples of it (a day
    /// of 1-minute means) are answered without decoding the points. Costs
    /// about 10 bytes per interval of a tag with data.
    #[arg(long, env = "XTDB_ROLLUP", default_value = "1m", value_parser = parse_align)]
    rollup: Duration,
    /// Most rows one aggregate, interpolated or plot request may answer
    /// (tags × windows, samples or 4 × pixels); more is refused.
    #[arg(long, env = "XTDB_MAX_QUERY_ROWS", default_value_t = 1_000_000)]
    max_query_rows: usize,
    /// Milliseconds a shard's task runs before a long one (a big read, a
    /// compaction step) gives way to small requests.
    #[arg(long, env = "XTDB_PREEMPT_MS", default_value_t = 5)]
    preempt_ms: u64,
    /// Log every shard task that runs this many milliseconds past the
    /// preempt interval without giving way, with its stack (a diagnosis
    /// aid; 0: off).
    #[arg(long, env = "XTDB_STALL_REPORT_MS", default_value_t = 0)]
    stall_report_ms: u64,
    /// HTTP address (InfluxDB-compatible writes, JSON queries, /metrics);
    /// off when not given.
    #[arg(long, env = "XTDB_HTTP")]
    http: Option<String>,
    /// Largest HTTP request body, bytes, before and after gzip decompression.
    #[arg(long, env = "XTDB_HTTP_MAX_BODY", default_value_t = 32 << 20)]
    http_max_body: usize,
    /// HTTP writes in flight per shard before new ones are answered 503.
    #[arg(long, env = "XTDB_HTTP_MAX_INFLIGHT", default_value_t = 64)]
    http_max_inflight: usize,
    /// HTTP idle / read / write timeout, seconds.
    #[arg(long, env = "XTDB_HTTP_TIMEOUT", default_value_t = 60)]
    http_timeout: u64,
    /// HTTP: a request's headers must arrive within this many seconds of
    /// its first byte, else the connection is closed.
    #[arg(long, env = "XTDB_HTTP_HEADER_TIMEOUT", default_value_t = 10)]
    http_header_timeout: u64,
    /// HTTP: a request body may take this many seconds plus one second per
    /// --http-body-min-rate bytes; a slower one is answered 408.
    #[arg(long, env = "XTDB_HTTP_BODY_GRACE", default_value_t = 10)]
    http_body_grace: u64,
    /// HTTP: bytes per second a request body must keep up after its grace.
    #[arg(long, env = "XTDB_HTTP_BODY_MIN_RATE", default_value_t = 32 << 10)]
    http_body_min_rate: u64,
    /// HTTP: request body bytes one shard buffers at once over all its
    /// connections; a body that would pass it is answered 503.
    #[arg(long, env = "XTDB_HTTP_MAX_BUFFERED", default_value_t = 256 << 20)]
    http_max_buffered: usize,
    /// Most points one /api/v1/range answer may hold; more is answered 400
    /// naming the limit.
    #[arg(long, env = "XTDB_MAX_POINTS_PER_QUERY", default_value_t = 1_000_000)]
    max_points_per_query: u64,
    /// Most new series one HTTP write request may create; more is answered
    /// 400 and nothing is stored.
    #[arg(
        long,
        env = "XTDB_MAX_NEW_SERIES_PER_REQUEST",
        default_value_t = 100_000
    )]
    max_new_series_per_request: usize,
    /// New series one client address may create per second and shard over
    /// HTTP; past it, 429 with Retry-After and nothing is stored.
    #[arg(long, env = "XTDB_MAX_NEW_SERIES_PER_SECOND", default_value_t = 10_000)]
    max_new_series_per_second: u64,
    /// Line protocol: longest line, bytes; a longer one is a bad line.
    #[arg(long, env = "XTDB_MAX_LINE_BYTES", default_value_t = 64 << 10)]
    max_line_bytes: usize,
    /// Line protocol: most tags on one line; more make it a bad line.
    #[arg(long, env = "XTDB_MAX_TAGS_PER_LINE", default_value_t = 256)]
    max_tags_per_line: usize,
    /// Line protocol: most fields on one line; more make it a bad line.
    #[arg(long, env = "XTDB_MAX_FIELDS_PER_LINE", default_value_t = 256)]
    max_fields_per_line: usize,
    /// Line protocol: the field that carries a line's quality (an integer
    /// 0..=255) instead of being a series, e.g. `q` [default: none, every
    /// field is a series].
    #[arg(long, env = "XTDB_QUALITY_FIELD")]
    quality_field: Option<String>,
    /// `/write` refuses the whole batch when any line is bad (as
    /// `/api/v2/write` always does) instead of storing the good lines.
    #[arg(long, env = "XTDB_ATOMIC_WRITES")]
    atomic_writes: bool,
    /// Connections served at once per shard and listener (native and HTTP
    /// apart); one more is answered with an error and closed.
    #[arg(long, env = "XTDB_MAX_CONNECTIONS", default_value_t = 1024)]
    max_connections: usize,
    /// Native protocol: close a connection with no request for this long, seconds.
    #[arg(long, env = "XTDB_IDLE_TIMEOUT", default_value_t = 600)]
    idle_timeout: u64,
    /// Native protocol: a started frame must fully arrive (and an answer be
    /// read) within this, seconds.
    #[arg(long, env = "XTDB_FRAME_TIMEOUT", default_value_t = 30)]
    frame_timeout: u64,
    /// Native protocol: request payload bytes a shard takes in at once;
    /// further frames wait for earlier ones to finish.
    #[arg(long, env = "XTDB_MAX_INFLIGHT_BYTES", default_value_t = 256 << 20)]
    max_inflight_bytes: usize,
    /// Earliest timestamp a write may carry, µs since the Unix epoch.
    #[arg(
        long,
        env = "XTDB_MIN_TIMESTAMP_US",
        default_value_t = 0,
        allow_hyphen_values = true
    )]
    min_timestamp_us: i64,
    /// How far past the server's clock a timestamp may be, seconds, or `off`.
    #[arg(long, env = "XTDB_MAX_FUTURE_SECS", default_value = "86400", value_parser = parse_future)]
    max_future_secs: MaxFuture,
    /// Require a token (`xtdb token create`) from every client: `on` or
    /// `off` [default: on when --listen or --http is not a loopback
    /// address, off otherwise].
    #[arg(long, env = "XTDB_AUTH", value_parser = parse_auth)]
    auth: Option<AuthSetting>,
    /// Allow `--auth off` on a non-loopback address (anyone who can reach
    /// the port may write, read and fill the disk).
    #[arg(long, env = "XTDB_INSECURE")]
    insecure: bool,
    /// Serve /metrics without a token even when auth is on.
    #[arg(long, env = "XTDB_METRICS_OPEN")]
    metrics_open: bool,
    /// InfluxQL `/query`: most series (and SHOW names) one statement touches.
    #[arg(long, env = "XTDB_QUERY_MAX_SERIES", default_value_t = 100_000)]
    query_max_series: usize,
    /// InfluxQL `/query`: most points one statement reads.
    #[arg(long, env = "XTDB_QUERY_MAX_POINTS", default_value_t = 50_000_000)]
    query_max_points: u64,
    /// InfluxQL `/query`: most rows one statement answers.
    #[arg(long, env = "XTDB_QUERY_MAX_ROWS", default_value_t = 1_000_000)]
    query_max_rows: usize,
    /// TLS on both listeners: certificate chain, PEM (reloaded on SIGHUP).
    #[arg(long, env = "XTDB_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// TLS private key, PEM (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "XTDB_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Cluster mode: NATS JetStream servers, `nats://HOST:PORT[,…]`. Writes
    /// are acknowledged once stored in the partitions' replicated streams;
    /// this node applies the partitions its leases give it.
    #[arg(long, env = "XTDB_CLUSTER", value_delimiter = ',', requires_all = ["node_id", "cluster_listen"])]
    cluster: Vec<String>,
    /// Cluster mode: this node's unique name (A-Z, a-z, 0-9, '-', '_').
    #[arg(long, env = "XTDB_NODE_ID")]
    node_id: Option<String>,
    /// Cluster mode: where other nodes ask this node's shards (native
    /// protocol; advertised to them as bound, so give a routable address).
    #[arg(long, env = "XTDB_CLUSTER_LISTEN")]
    cluster_listen: Option<String>,
    /// Cluster mode: partitions of the tag space, fixed by the cluster's
    /// first node (a multiple of the shard count keeps each on one shard).
    #[arg(long, env = "XTDB_CLUSTER_PARTITIONS", default_value_t = 16)]
    cluster_partitions: u32,
    /// Cluster mode: replicas of every stream and bucket (JetStream's R).
    #[arg(long, env = "XTDB_CLUSTER_REPLICAS", default_value_t = 3)]
    cluster_replicas: usize,
    /// Cluster mode: lease time, ms (an owner renews every fifth of it and
    /// stops applying after half of it without a renewal).
    #[arg(long, env = "XTDB_CLUSTER_LEASE_MS", default_value_t = 5000)]
    cluster_lease_ms: u64,
    /// Cluster mode: how long the log keeps messages (a node taking a
    /// partition over replays it from there).
    #[arg(long, env = "XTDB_CLUSTER_LOG_RETENTION", default_value = "7d", value_parser = parse_retention)]
    cluster_log_retention: Duration,
    /// Cluster mode: the token this node presents to the others' cluster
    /// listeners when their auth is on.
    #[arg(long, env = "XTDB_CLUSTER_TOKEN", hide_env_values = true)]
    cluster_token: Option<String>,
}

fn parse_auth(s: &str) -> Result<AuthSetting, String> {
    match s {
        "on" => Ok(AuthSetting::On),
        "off" => Ok(AuthSetting::Off),
        _ => Err(format!("expected `on` or `off`, got {s:?}")),
    }
}

/// `--max-future-secs`: seconds, or `off` (no limit).
#[derive(Clone, Copy)]
struct MaxFuture(Option<u64>);

fn parse_future(s: &str) -> Result<MaxFuture, String> {
    if s == "off" {
        return Ok(MaxFuture(None));
    }
    s.parse()
        .map(|v| MaxFuture(Some(v)))
        .map_err(|_| format!("expected seconds or `off`, got {s:?}"))
}

/// `--retention`: a number with a unit (`s`, `m`, `h`, `d`, `w`, `y`).
fn parse_retention(s: &str) -> Result<Duration, String> {
    let d = parse_span(s)?;
    if d.is_zero() {
        return Err("retention must be longer than 0".into());
    }
    Ok(d)
}

/// `--segment-align`: a span, or `0`/`off` for no aligned cuts.
fn parse_align(s: &str) -> Result<Duration, String> {
    if s == "0" || s == "off" {
        return Ok(Duration::ZERO);
    }
    parse_span(s)
}

/// A whole number and a unit: `90s`, `5m`, `12h`, `30d`, `52w`, `10y`.
fn parse_span(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("expected a number and a unit (30d, 12h, 10y), got {s:?}"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "y" => 365 * 86_400,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} in {s:?} (use s, m, h, d, w or y)"
            ))
        }
    };
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

fn serve(a: ServeArgs) -> xtdb::error::Result<()> {
    let mut config = ServerConfig::new(a.data_dir)?;
    if let Some(c) = a.cpus {
        config.cpus = xtdb::runtime::placement::parse_cpus(&c)?;
    }
    config.listen = a.listen;
    config.sync = a.sync;
    config.memory_budget = a.memory_budget;
    config.io_memory = a.io_memory;
    config.wal_budget = a.wal_budget.max(1 << 20);
    config.retention = a.retention;
    config.compact_rate = a.compact_rate;
    config.compact_backlog = a.compact_backlog.max(1 << 20);
    config.segment_align = a.segment_align;
    config.rollup = a.rollup;
    config.max_query_rows = a.max_query_rows;
    config.preempt = Duration::from_millis(a.preempt_ms.max(1));
    config.stall_report = (a.stall_report_ms > 0).then(|| Duration::from_millis(a.stall_report_ms));
    config.http = a.http;
    config.http_config.max_body = a.http_max_body;
    config.http_config.max_inflight_writes = a.http_max_inflight.max(1);
    config.http_config.idle_timeout = Duration::from_secs(a.http_timeout.max(1));
    config.http_config.header_timeout = Duration::from_secs(a.http_header_timeout.max(1));
    config.http_config.body_grace = Duration::from_secs(a.http_body_grace);
    config.http_config.body_min_rate = a.http_body_min_rate.max(1);
    config.http_config.max_buffered_bodies = a.http_max_buffered;
    config.http_config.max_points_per_query = a.max_points_per_query;
    config.http_config.max_new_series_per_request = a.max_new_series_per_request;
    config.http_config.max_new_series_per_second = a.max_new_series_per_second;
    config.http_config.metrics_open = a.metrics_open;
    config.http_config.influxql = xtdb::http::influxql::Limits {
        max_series: a.query_max_series,
        max_points: a.query_max_points,
        max_rows: a.query_max_rows,
    };
    config.auth = a.auth.unwrap_or_default();
    config.insecure = a.insecure;
    config.tls = a
        .tls_cert
        .zip(a.tls_key)
        .map(|(cert, key)| TlsFiles { cert, key });
    let line = &mut config.http_config.line;
    line.limits.max_line_bytes = a.max_line_bytes;
    line.limits.max_tags = a.max_tags_per_line;
    line.limits.max_fields = a.max_fields_per_line;
    line.quality_field = a.quality_field.filter(|f| !f.is_empty());
    config.http_config.atomic_writes = a.atomic_writes;
    config.limits = WireLimits {
        max_connections: a.max_connections.max(1),
        idle_timeout: Duration::from_secs(a.idle_timeout.max(1)),
        frame_timeout: Duration::from_secs(a.frame_timeout.max(1)),
        max_inflight_bytes: a.max_inflight_bytes.max(1),
        window: TimeWindow {
            min_ts: a.min_timestamp_us,
            max_future: a.max_future_secs.0.map(Duration::from_secs),
        },
    };
    if !a.cluster.is_empty() {
        let mut c = xtdb::cluster::ClusterConfig::new(
            a.cluster,
            a.node_id.unwrap_or_default(),
            a.cluster_listen.unwrap_or_default(),
            config.data_dir.join("cluster"),
        );
        c.partitions = a.cluster_partitions;
        c.replicas = a.cluster_replicas;
        c.lease = Duration::from_millis(a.cluster_lease_ms);
        c.log_retention = a.cluster_log_retention;
        c.token = a.cluster_token.filter(|t| !t.is_empty());
        config.cluster = Some(c);
    }
    run(config, Shutdown::on_signals()?)
}

/// `xtdb cluster status`.
fn cluster(c: ClusterCmd) -> xtdb::error::Result<()> {
    match c {
        ClusterCmd::Status {
            cluster,
            partitions,
            json,
        } => {
            let st = xtdb::cluster::status::read(&cluster, partitions)
                .map_err(|e| xtdb::error::Error::Startup(format!("cluster status: {e}")))?;
            if json {
                let parts: Vec<_> = st
                    .partitions
                    .iter()
                    .map(|p| {
                        serde_json::json!({"partition": p.partition, "owner": p.owner,
                            "last_seq": p.last_seq, "applied": p.applied,
                            "lag_messages": p.lag_messages, "lag_seconds": p.lag_seconds,
                            "warm": p.warm})
                    })
                    .collect();
                println!(
                    "{}",
                    serde_json::json!({"nodes": st.nodes, "partitions": parts})
                );
            } else {
                print!("{}", xtdb::cluster::status::table(&st));
            }
            Ok(())
        }
    }
}

/// Starts the server, prints its configuration and a `ready` line, blocks
/// until `shutdown` is triggered (SIGINT/SIGTERM), then stops in order.
/// SIGHUP re-reads the token file and the TLS certificate and key.
fn run(config: ServerConfig, shutdown: Shutdown) -> xtdb::error::Result<()> {
    println!("xtdb serve\n{config}");
    let hup = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, std::sync::Arc::clone(&hup))
        .map_err(|e| xtdb::error::Error::io("install the SIGHUP handler", None, e))?;
    let tls = config.tls.is_some();
    let handle = xtdb::server::start(config, shutdown.clone())?;
    println!(
        "auth:          {}; tls {}",
        if handle.auth_enabled() {
            "on: every client needs a token"
        } else {
            "off: anyone who can reach the ports may write and read"
        },
        if tls { "on" } else { "off" }
    );
    match handle.http_addr() {
        Some(h) => println!(
            "xtdb ready: listening on {} (http on {h})",
            handle.local_addr()
        ),
        None => println!("xtdb ready: listening on {}", handle.local_addr()),
    }
    while !shutdown.is_triggered() {
        std::thread::sleep(Duration::from_millis(50));
        if hup.swap(false, std::sync::atomic::Ordering::SeqCst) {
            println!("xtdb: SIGHUP: re-reading the token file and TLS certificate");
            handle.reload();
        }
    }
    println!("xtdb: shutting down (draining in-flight batches, syncing WALs)");
    handle.stop()?;
    println!("xtdb: stopped");
    Ok(())
}

fn client_options(c: ClientArgs) -> xtdb::error::Result<ClientOptions> {
    ClientOptions::from_args(c.token, c.tls_ca.as_deref(), c.tls_server_name)
        .map_err(xtdb::error::Error::Config)
}

fn stats(addr: &str, interval: Option<f64>, client: ClientArgs) -> xtdb::error::Result<()> {
    use xtdb::net::client::{fetch_stats_blocking, stats_table, with_rates};
    let opts = client_options(client)?;
    let mut s = fetch_stats_blocking(addr, &opts)?;
    if let Some(secs) = interval.filter(|s| s.is_finite() && *s > 0.0) {
        std::thread::sleep(std::time::Duration::from_secs_f64(secs));
        s = with_rates(&s, &fetch_stats_blocking(addr, &opts)?, secs);
    }
    print!("{}", stats_table(&s));
    Ok(())
}

/// Runs a token command on a throw-away executor on this thread.
fn token(cmd: TokenCmd) -> xtdb::error::Result<()> {
    let ex = glommio::LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .make()
        .map_err(|e| xtdb::error::Error::Startup(format!("start an executor: {e}")))?;
    ex.run(async move {
        let dir = match &cmd {
            TokenCmd::Create { data_dir, .. }
            | TokenCmd::List { data_dir }
            | TokenCmd::Revoke { data_dir, .. } => data_dir.clone(),
        };
        let mut store = TokenStore::open(&dir).await?;
        if store.torn_bytes() > 0 {
            eprintln!(
                "xtdb: {}: cut a torn tail of {} bytes (an interrupted token command)",
                store.path().display(),
                store.torn_bytes()
            );
        }
        let now = xtdb::runtime::admission::now_us();
        match cmd {
            TokenCmd::Create {
                name,
                read,
                write,
                admin,
                ..
            } => {
                let mut perms = Perms::NONE;
                for (on, p) in [
                    (read, Perms::READ),
                    (write, Perms::WRITE),
                    (admin, Perms::ADMIN),
                ] {
                    if on {
                        perms = perms.with(p);
                    }
                }
                let t = store.create(&name, perms, now).await?;
                println!(
                    "created token {name:?} ({perms}) in {}; a running server accepts it within \
                     a second. It is shown only this once:",
                    store.path().display()
                );
                println!("{t}");
            }
            TokenCmd::List { .. } => print!("{}", store.tokens().table()),
            TokenCmd::Revoke { name, .. } => {
                store.revoke(&name, now).await?;
                println!(
                    "revoked token {name:?} in {}; a running server refuses it within a second \
                     (at once after SIGHUP)",
                    store.path().display()
                );
            }
        }
        store.close().await?;
        Ok(())
    })
}

/// `xtdb backup`: the backup on one connection, progress from the
/// server's `backup_*` counters on a second one.
fn backup(a: BackupArgs) -> xtdb::error::Result<()> {
    use std::io::IsTerminal;
    use xtdb::net::Client;
    if let Some(BackupCmd::Verify { dir, json }) = a.cmd {
        let v = xtdb::storage::backup::verify(&dir)?;
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "dir": dir.display().to_string(), "ok": true, "shards": v.shards,
                    "files": v.files, "bytes": v.bytes, "blocks": v.blocks,
                    "wal_records": v.wal_records,
                })
            );
        } else {
            println!(
                "backup {} is complete: {} shards, {} files, {} bytes match the manifest; {} chunk blocks and {} WAL records checked",
                dir.display(),
                v.shards,
                v.files,
                v.bytes,
                v.blocks,
                v.wal_records
            );
        }
        return Ok(());
    }
    let Some(to) = a.to else {
        return Err(xtdb::error::Error::Config(
            "xtdb backup needs --to DIR (or `xtdb backup verify DIR`)".into(),
        ));
    };
    let opts = client_options(a.client)?;
    let (addr, link, json, rate) = (a.addr, !a.no_link, a.json, a.rate << 20);
    let ex = glommio::LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .make()
        .map_err(|e| xtdb::error::Error::Startup(format!("start an executor: {e}")))?;
    let started = std::time::Instant::now();
    let summary = ex.run(async {
        let mut c = Client::connect_with(&addr, &opts).await?;
        let mut watch = Client::connect_with(&addr, &opts).await?;
        let counters = |s: &[(String, u64)]| {
            let get = |n: &str| s.iter().find(|(k, _)| k == n).map_or(0, |(_, v)| *v);
            (get("total.backup_bytes"), get("total.backup_files"))
        };
        // Progress needs the read permission too; without it, none is shown.
        let base = watch.stats().await.ok().map(|s| counters(&s));
        let term = std::io::stderr().is_terminal();
        let progress = async {
            let mut n = 0u64;
            loop {
                glommio::timer::sleep(Duration::from_millis(500)).await;
                n += 1;
                let (Some(base), Ok(s)) = (base, watch.stats().await) else {
                    // Never finishes: the backup's answer ends the race.
                    return futures_lite::future::pending().await;
                };
                let (b, f) = counters(&s);
                let (b, f) = (b.saturating_sub(base.0), f.saturating_sub(base.1));
                let secs = started.elapsed().as_secs_f64();
                let line = format!(
                    "backup: {f} files, {:.1} MiB, {:.1} MiB/s, {secs:.0} s",
                    b as f64 / 1048576.0,
                    b as f64 / 1048576.0 / secs
                );
                if term {
                    eprint!("\r{line}   ");
                } else if n.is_multiple_of(10) {
                    eprintln!("{line}");
                }
            }
        };
        let done = futures_lite::future::or(c.backup(&to, link, rate), progress).await;
        if term {
            eprintln!();
        }
        done.map_err(xtdb::error::Error::Client)
    })?;
    let t = summary.tally;
    let secs = summary.micros as f64 / 1e6;
    let mib = |b: u64| b as f64 / 1048576.0;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "to": to, "files": t.files(), "bytes": t.bytes(),
                "files_linked": t.files_linked, "bytes_linked": t.bytes_linked,
                "files_copied": t.files_copied, "bytes_copied": t.bytes_copied,
                "files_unchanged": t.files_unchanged, "bytes_unchanged": t.bytes_unchanged,
                "seconds": secs, "mib_per_sec": mib(t.bytes()) / secs.max(1e-9),
            })
        );
    } else {
        println!(
            "backup into {to} complete: {} files, {:.1} MiB (linked {} / {:.1} MiB, copied {} / {:.1} MiB, unchanged {} / {:.1} MiB) in {secs:.2} s, {:.1} MiB/s",
            t.files(),
            mib(t.bytes()),
            t.files_linked,
            mib(t.bytes_linked),
            t.files_copied,
            mib(t.bytes_copied),
            t.files_unchanged,
            mib(t.bytes_unchanged),
            mib(t.bytes()) / secs.max(1e-9)
        );
    }
    Ok(())
}

/// `xtdb export`: the logic is `xtdb::load::export`.
fn export(a: ExportArgs) -> xtdb::error::Result<()> {
    use xtdb::error::Error;
    use xtdb::load::export::{parse_time_us, read_state, run, run_every, ExportConfig};
    let duration_us = |flag: &str, v: &str| {
        xtdb::influxql::parse_duration(v)
            .map(|ns| ns / 1000)
            .map_err(|e| Error::Config(format!("{flag} {v:?}: {e}")))
    };
    let start = match (&a.start, &a.every) {
        (Some(s), _) => parse_time_us(s)?,
        (None, Some(_)) => match read_state(&a.to)? {
            Some(st) => st.start,
            None => {
                return Err(Error::Config(format!(
                    "{} holds no periodic export yet: its first round needs --start",
                    a.to.display()
                )))
            }
        },
        (None, None) => return Err(Error::Config("xtdb export needs --start".into())),
    };
    let mut cfg = ExportConfig {
        addr: a.addr,
        http: a.http,
        opts: client_options(a.client)?,
        to: a.to,
        start,
        end: i64::MAX,
        pattern: a.pattern,
        chunk_us: duration_us("--chunk", &a.chunk)?,
        row_group_rows: a.row_group_rows,
        progress: true,
    };
    if let Some(every) = &a.every {
        let every_us = duration_us("--every", every)?;
        let lag_us = duration_us("--lag", &a.lag)?;
        let every = Duration::from_micros(u64::try_from(every_us).unwrap_or(0));
        return run_every(&cfg, every, lag_us, |r| match r {
            Ok(r) if a.json => println!("{}", r.json()),
            Ok(r) => println!("{}", r.text()),
            Err(e) => eprintln!("xtdb export: round failed: {e}"),
        });
    }
    if let Some(end) = &a.end {
        cfg.end = parse_time_us(end)?;
    }
    let s = run(&cfg)?;
    if a.json {
        println!("{}", s.json());
    } else {
        println!("{}", s.text());
    }
    Ok(())
}

fn main() -> ExitCode {
    logger::init();
    let result = match Cli::parse().cmd {
        Cmd::Serve(a) => serve(*a),
        Cmd::Stats {
            addr,
            interval,
            client,
        } => stats(&addr, interval, client),
        Cmd::Token(t) => token(t),
        Cmd::Backup(a) => backup(a),
        Cmd::Export(a) => export(a),
        Cmd::Cluster(c) => cluster(c),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtdb: {e}");
            ExitCode::FAILURE
        }
    }
}
