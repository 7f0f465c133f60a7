//! `xtdb-load`: load generator and verifier for xtdb. A thin clap front end
//! over `xtdb::load`; run `xtdb-load --help`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use xtdb::load::conn::NetConn as C;
use xtdb::load::report::print_json;
use xtdb::load::{demo, query, scenario, summary, verify, write};

#[derive(Parser)]
#[command(
    name = "xtdb-load",
    version,
    about = "Load generator and verifier for xtdb"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write deterministic points open-loop at a fixed rate (or as fast as acknowledged);
    /// exit 1 if nothing was acknowledged or the target rate was not kept.
    Write(WriteArgs),
    /// Read back every point an ack log lists; exit 1 if any is missing or changed.
    Verify(VerifyArgs),
    /// Range queries over N blocks and latest-value queries.
    Query(QueryArgs),
    /// One of the original design's scenarios: tags-100k, max-write, query-blocks, flush-storm, recovery, steady, hostile.
    Scenario(ScenarioArgs),
    /// Start a server on a temporary dir, run a short tags-100k and query-blocks, stop it.
    Demo(DemoArgs),
    /// Print a markdown table from files holding `scenario --json` output.
    Summarize {
        /// Files whose last line is a scenario's JSON object.
        files: Vec<PathBuf>,
    },
}

#[derive(Args)]
struct Common {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:7070", env = "XTDB_ADDR")]
    addr: String,
    /// Print one JSON object as the last line of stdout (progress goes to stderr).
    #[arg(long)]
    json: bool,
    /// No per-second progress.
    #[arg(long, short)]
    quiet: bool,
    /// Token to authenticate with (`xtdb token create`); native: an AUTH
    /// frame per connection; influx-http: `Authorization: Token ...`.
    #[arg(long, env = "XTDB_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Connect with TLS, trusting the CA certificate(s) in this PEM file
    /// (influx-http: needed for https:// targets).
    #[arg(long, env = "XTDB_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// Name to expect in the server's certificate (default: the host of
    /// the address).
    #[arg(long, env = "XTDB_TLS_SERVER_NAME")]
    tls_server_name: Option<String>,
}

impl Common {
    fn client(&self) -> xtdb::error::Result<xtdb::net::ClientOptions> {
        xtdb::net::ClientOptions::from_args(
            self.token.clone(),
            self.tls_ca.as_deref(),
            self.tls_server_name.clone(),
        )
        .map_err(xtdb::error::Error::Config)
    }
}

#[derive(Args)]
struct WriteArgs {
    #[command(flatten)]
    common: Common,
    /// Number of tags; each tick writes one point per tag.
    #[arg(long, default_value_t = 1000)]
    tags: u32,
    /// First tag id.
    #[arg(long, default_value_t = 0)]
    tag_base: u32,
    /// Target points per second over all connections; 0 = as fast as acknowledged.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Points per write request.
    #[arg(long, default_value_t = 1000)]
    batch: u32,
    /// Connections (tags are split between them).
    #[arg(long, default_value_t = 1)]
    conns: u32,
    /// How long to write: 30, 30s, 500ms, 2m.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Stop after this many ticks (points per tag) instead.
    #[arg(long)]
    ticks: Option<u64>,
    /// CPUs to pin the generator to, one executor each: 0 or 0,1.
    #[arg(long, default_value = "0", value_delimiter = ',')]
    cpus: Vec<usize>,
    /// Seed of the value function.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// What the values look like: `noise` (analog with full-precision
    /// noise) or `plant` (quantised analog, steps, booleans, counters).
    #[arg(long, default_value = "noise")]
    signal: xtdb::load::gen::Signal,
    /// µs between ticks (default tags*1e6/rate, or 1000 at rate 0).
    #[arg(long)]
    period_us: Option<i64>,
    /// Timestamp of tick 0 in µs (default: now, rounded down to a second).
    #[arg(long)]
    t0: Option<i64>,
    /// Append every acknowledged batch to this file (for `verify`).
    #[arg(long)]
    ack_log: Option<PathBuf>,
    /// `native` (xtdb's binary protocol to --addr) or `influx-http` (line
    /// protocol over HTTP to --target, xtdb --http or any Influx-compatible server).
    #[arg(long, default_value = "native")]
    protocol: String,
    /// influx-http: `http[s]://host:port[/path?query]` (path default `/write?db=xtdb`).
    #[arg(long)]
    target: Option<String>,
}

#[derive(Args)]
struct VerifyArgs {
    #[command(flatten)]
    common: Common,
    /// The ack log written by `write --ack-log`.
    #[arg(long)]
    ack_log: PathBuf,
    /// Parallel connections.
    #[arg(long, default_value_t = 4)]
    conns: u32,
    /// Largest number of expected points per range query.
    #[arg(long, default_value_t = 50_000)]
    chunk: usize,
    /// CPU to pin the verifier to.
    #[arg(long, default_value_t = 0)]
    cpu: usize,
}

#[derive(Args)]
struct QueryArgs {
    #[command(flatten)]
    common: Common,
    /// Range sizes in blocks.
    #[arg(long, default_value = "10,50,100,500", value_delimiter = ',')]
    blocks: Vec<u32>,
    /// Points per block.
    #[arg(long, default_value_t = 960)]
    points_per_block: u32,
    /// Query tags.
    #[arg(long, default_value_t = 2)]
    tags: u32,
    /// First query tag.
    #[arg(long, default_value_t = 1_000_000)]
    tag_base: u32,
    /// Queries per range size.
    #[arg(long, default_value_t = 20)]
    iterations: u32,
    /// Queries in flight.
    #[arg(long, default_value_t = 1)]
    concurrency: u32,
    /// Latest-value queries (0 = none).
    #[arg(long, default_value_t = 200)]
    latest_iterations: u32,
    /// Tags per latest-value query.
    #[arg(long, default_value_t = 100)]
    latest_tags: u32,
    /// Write max(blocks) × points-per-block points on each query tag first
    /// (aggregate modes: --span of 1 Hz points).
    #[arg(long)]
    prepare: bool,
    /// CPU to pin to.
    #[arg(long, default_value_t = 0)]
    cpu: usize,
    /// range | aggregate | interpolated | plot.
    #[arg(long, default_value = "range", value_parser = query::QueryMode::parse)]
    mode: query::QueryMode,
    /// Aggregate modes: span queried from the data's start (and prepared).
    #[arg(long, default_value = "30d", value_parser = parse_duration)]
    span: Duration,
    /// Aggregate: window width; interpolated: sample interval.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    every: Duration,
    /// Aggregate: count, sum, mean, min, max, first, last, spread, stddev,
    /// median, twa, percent_good.
    #[arg(long, default_value = "mean", value_parser = parse_func)]
    func: xtdb::aggregate::Func,
    /// Plot: intervals (pixels).
    #[arg(long, default_value_t = 1000)]
    pixels: usize,
    /// Aggregate modes: tags per request.
    #[arg(long, default_value_t = 1)]
    query_tags: u32,
}

fn parse_func(s: &str) -> Result<xtdb::aggregate::Func, String> {
    use xtdb::aggregate::{Func, Interp};
    if let Some(f) = Func::plain(s) {
        return Ok(f);
    }
    Ok(match s {
        "twa" => Func::TimeWeighted(Interp::Step),
        "twa-linear" => Func::TimeWeighted(Interp::Linear),
        _ => return Err(format!("unknown function {s:?}")),
    })
}

#[derive(Args)]
struct ScenarioArgs {
    /// tags-100k | max-write | query-blocks | flush-storm | recovery | steady | hostile
    name: String,
    #[command(flatten)]
    common: Common,
    /// Override the scenario's duration.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Override the number of tags (tags-100k, max-write, flush-storm, recovery).
    #[arg(long)]
    tags: Option<u32>,
    /// flush-storm: points per tag.
    #[arg(long, default_value_t = 1000)]
    points_per_tag: u32,
    /// CPUs for the generator.
    #[arg(long, default_value = "0", value_delimiter = ',')]
    cpus: Vec<usize>,
    /// Server pid, to read its RSS from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// query-blocks: do not write the query data first.
    #[arg(long)]
    no_prepare: bool,
    /// query-blocks: range sizes in blocks.
    #[arg(long, default_value = "10,50,100,500", value_delimiter = ',')]
    blocks: Vec<u32>,
    /// recovery: the xtdb binary (default: next to xtdb-load).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// recovery: data dir (default: a temporary one).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// recovery, steady: pin the server to this CPU.
    #[arg(long)]
    server_cpu: Option<usize>,
    /// Values: `noise` or `plant` (default: plant for steady, noise otherwise).
    #[arg(long)]
    signal: Option<xtdb::load::gen::Signal>,
    /// steady: simulated minutes at 1 Hz.
    #[arg(long, default_value_t = 60)]
    minutes: u32,
    /// steady: points per second offered (0: as fast as acknowledged).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// recovery: stop the first server with SIGTERM (timed) instead of kill -9.
    #[arg(long)]
    sigterm: bool,
    /// hostile: the server's HTTP address.
    #[arg(long)]
    http: Option<String>,
}

#[derive(Args)]
struct DemoArgs {
    /// Length of the tags-100k run.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Print one JSON object as the last line of stdout.
    #[arg(long)]
    json: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, mul) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3600.0)
    } else if let Some(n) = s.strip_suffix('d') {
        (n, 86400.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("bad duration {s:?} (try 30, 30s, 500ms, 2m, 1h, 30d)"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("bad duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(v * mul))
}

mod logger;

fn main() -> ExitCode {
    logger::init();
    match run(Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("xtdb-load: {e}");
            ExitCode::from(2)
        }
    }
}

/// Prints a report as text or JSON; returns whether the command succeeded.
fn emit(json: bool, v: &serde_json::Value, text: &str, ok: bool) -> bool {
    if json {
        print_json(v);
    } else {
        print!("{text}");
    }
    ok
}

fn run(cli: Cli) -> xtdb::error::Result<bool> {
    match cli.cmd {
        Cmd::Write(a) => {
            let mut w = write::WriteConfig::new(&a.common.addr);
            w.client = a.common.client()?;
            w.tags = a.tags;
            w.tag_base = a.tag_base;
            w.rate = a.rate;
            w.batch = a.batch;
            w.conns = a.conns;
            w.duration = if a.ticks.is_some() && a.duration == Duration::from_secs(10) {
                Duration::from_secs(365 * 24 * 3600)
            } else {
                a.duration
            };
            w.max_ticks = a.ticks;
            w.cpus = a.cpus;
            w.seed = a.seed;
            w.signal = a.signal;
            w.period_us = a.period_us;
            w.t0 = a.t0;
            w.ack_log = a.ack_log;
            w.progress = !a.common.quiet;
            w.json = a.common.json;
            let r = match a.protocol.as_str() {
                "native" => write::run::<C>(&w)?,
                "influx-http" => {
                    let Some(t) = a.target else {
                        return Err(xtdb::error::Error::Config(
                            "--protocol influx-http needs --target http://host:port".into(),
                        ));
                    };
                    w.addr = t;
                    write::run::<xtdb::load::influx::InfluxHttpConn>(&w)?
                }
                other => {
                    return Err(xtdb::error::Error::Config(format!(
                        "unknown --protocol {other:?} (native or influx-http)"
                    )))
                }
            };
            let ok = r.points_acked > 0 && r.rate_kept != Some(false);
            let text = format!("xtdb-load write to {}\n{}", w.addr, r.text());
            Ok(emit(a.common.json, &r.json(), &text, ok))
        }
        Cmd::Verify(a) => {
            let r = verify::run::<C>(&verify::VerifyConfig {
                addr: a.common.addr.clone(),
                client: a.common.client()?,
                ack_log: a.ack_log,
                conns: a.conns,
                chunk: a.chunk,
                cpu: a.cpu,
            })?;
            let text = format!("xtdb-load verify against {}\n{}", a.common.addr, r.text());
            Ok(emit(a.common.json, &r.json(), &text, r.ok()))
        }
        Cmd::Query(a) => {
            let mut q = query::QueryConfig::new(&a.common.addr);
            q.client = a.common.client()?;
            q.blocks = a.blocks;
            q.points_per_block = a.points_per_block;
            q.tags = a.tags;
            q.tag_base = a.tag_base;
            q.iterations = a.iterations;
            q.concurrency = a.concurrency;
            q.latest_iterations = a.latest_iterations;
            q.latest_tags = a.latest_tags;
            q.prepare = a.prepare;
            q.cpu = a.cpu;
            q.progress = !a.common.quiet;
            q.json = a.common.json;
            q.mode = a.mode;
            q.span_us = a.span.as_micros().min(i64::MAX as u128) as i64;
            q.every_us = a.every.as_micros().min(i64::MAX as u128) as i64;
            q.func = a.func;
            q.pixels = a.pixels;
            q.query_tags = a.query_tags;
            let r = query::run::<C>(&q)?;
            let ok = r.sizes.iter().all(|s| s.errors == 0)
                && r.latest_errors == 0
                && r.agg.as_ref().is_none_or(|a| a.errors == 0);
            let text = format!("xtdb-load query against {}\n{}", q.addr, r.text());
            Ok(emit(a.common.json, &r.json(), &text, ok))
        }
        Cmd::Scenario(a) => {
            let mut s = scenario::ScenarioConfig::new(&a.common.addr);
            s.client = a.common.client()?;
            s.duration = a.duration;
            s.tags = a.tags;
            s.points_per_tag = a.points_per_tag;
            s.cpus = a.cpus;
            s.server_pid = a.server_pid;
            s.no_prepare = a.no_prepare;
            s.blocks = a.blocks;
            s.server_bin = a.server_bin;
            s.data_dir = a.data_dir;
            s.server_cpu = a.server_cpu;
            s.minutes = a.minutes;
            s.rate = a.rate;
            s.sigterm = a.sigterm;
            s.http = a.http;
            s.signal = a.signal.unwrap_or(if a.name == "steady" {
                xtdb::load::gen::Signal::Plant
            } else {
                xtdb::load::gen::Signal::Noise
            });
            s.progress = !a.common.quiet;
            s.json = a.common.json;
            let o = scenario::run::<C>(&a.name, &s)?;
            Ok(emit(a.common.json, &o.json, &o.text, o.ok))
        }
        Cmd::Summarize { files } => {
            let mut objs = Vec::new();
            for f in files {
                let text = std::fs::read_to_string(&f).map_err(|e| {
                    xtdb::error::Error::io("read scenario output", Some(f.clone()), e)
                })?;
                let last = text.lines().rev().find(|l| l.trim_start().starts_with('{'));
                match last.and_then(|l| serde_json::from_str(l).ok()) {
                    Some(v) => objs.push(v),
                    None => eprintln!("xtdb-load: no JSON object in {}", f.display()),
                }
            }
            print!("{}", summary::markdown(&objs));
            Ok(true)
        }
        Cmd::Demo(a) => {
            let r = demo::run::<C>(&demo::DemoConfig {
                duration: a.duration,
                json: a.json,
            })?;
            let ok = r.json()["ok"].as_bool().unwrap_or(false);
            if a.json {
                print_json(&r.json());
            }
            Ok(ok)
        }
    }
}
