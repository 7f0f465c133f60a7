//! The server's library entry point, shared by `xtdb serve` and the tests:
//! [`ServerConfig`] and [`start`] (runs the shards on their own pinned
//! threads and returns a [`ServerHandle`] that knows the bound addresses;
//! [`ServerHandle::stop`] stops in order). Wires the layers together and
//! owns nothing else; it prints nothing (it logs through `log`).
//!
//! Start-up per shard: join the channel mesh (the mesh peer id is the shard
//! index), open the shard's storage in `DATA/shard-N` (and on shard 0 the
//! tag catalog, `DATA/catalog.xtcat`), start the router, bind the
//! `SO_REUSEPORT` listener (shard 0 first, so `:0` resolves to one port
//! that every shard then binds). With `http` set, also bind the HTTP
//! listener the same way (see [`crate::http`]).
//!
//! Admission by credentials is decided before the shards start: auth is on
//! when asked for, or by default when a listener is not a loopback address
//! ([`AuthSetting`]); then `DATA/tokens.xtauth` must hold a live token and
//! parse cleanly (a torn or damaged token file stops the start, naming the
//! file: the server never starts open by accident). `--auth off` on a
//! non-loopback address needs `insecure`. Each shard then keeps its own copy
//! of the token set, re-read when the file grows (checked every
//! [`TOKEN_POLL`]) and on [`ServerHandle::reload`] (SIGHUP in `xtdb
//! serve`), which also re-reads the TLS certificate and key.
//!
//! Shutdown, in order: stop accepting, let every connection finish its
//! in-flight request (answers included), wait until *every* shard has done
//! so (a shard may still be writing sub-batches for another shard's
//! clients), then `Shard::close` (sync WALs, close files) and return.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use glommio::net::TcpListener;
use glommio::{LocalExecutorPoolBuilder, PoolThreadHandles};

use crate::cluster::log::LogThread;
use crate::cluster::route::{run_apply, run_counters, Route};
use crate::cluster::ClusterConfig;
use crate::cluster::{Apply, ToLog};
use crate::error::{Error, Result};
use crate::http::{HttpConfig, HttpState};
use crate::net::limits::WireLimits;
use crate::net::server::{accept_loop, Edge};
use crate::net::tls::{load_server_configs, ServerConfigs, ServerTls, TlsFiles};
use crate::runtime::admission::Closing;
use crate::runtime::auth::{Guard, Mode, Slowdown};
use crate::runtime::local::Local;
use crate::runtime::placement::{
    canonical_data_dir, check_shard_count, lock_data_dir, placement, shard_dir, DataDirLock,
};
use crate::runtime::router::{mesh_builder, MeshBuilder, Router, RouterMsg};
use crate::storage::catalog::Store;
use crate::storage::error::glommio_io;
use crate::storage::tokens;
use crate::storage::{Shard, ShardConfig, SyncMode};

/// How long a task runs before `yield_if_needed` gives way, by default
/// ([`ServerConfig::preempt`]).
pub const PREEMPT_AFTER: std::time::Duration = std::time::Duration::from_millis(5);
/// Everything `xtdb serve` needs.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Data directory; shard `i` lives in `DATA/shard-i`.
    pub data_dir: PathBuf,
    /// CPUs, one shard each, in shard order.
    pub cpus: Vec<usize>,
    /// Listen address (`host:port`; port 0 picks a free port).
    pub listen: String,
    /// WAL sync policy.
    pub sync: SyncMode,
    /// Memory budget for buffered points, bytes, split evenly across shards.
    pub memory_budget: usize,
    /// glommio `io_memory` (registered buffers) per executor, bytes.
    pub io_memory: usize,
    /// WAL bytes per shard before its oldest segment is flushed away.
    pub wal_budget: u64,
    /// Drop points older than this (`None`: keep forever).
    pub retention: Option<Duration>,
    /// Bytes per second compaction may read and write, per shard.
    pub compact_rate: u64,
    /// Bytes of sealed flush chunks that start a compaction job, per shard.
    pub compact_backlog: u64,
    /// Compaction's aligned segment cuts (zero: none); see
    /// [`ShardConfig::segment_align`].
    pub segment_align: Duration,
    /// Compaction's per-interval rollups (zero: none); see
    /// [`ShardConfig::rollup`].
    pub rollup: Duration,
    /// Most rows one aggregate request may answer (tags × windows, samples
    /// or plot points); more is refused naming the limit.
    pub max_query_rows: usize,
    /// How long a shard's task runs before `yield_if_needed` gives way to
    /// the shard's other tasks (the executor's preempt timer).
    pub preempt: std::time::Duration,
    /// Log a task that runs this long past [`ServerConfig::preempt`]
    /// without giving way, with its stack ([`crate::runtime::stall`]);
    /// `None`: no reports.
    pub stall_report: Option<std::time::Duration>,
    /// HTTP listen address (`host:port`); `None`: no HTTP.
    pub http: Option<String>,
    /// HTTP limits and timeouts.
    pub http_config: HttpConfig,
    /// Connection limit, timeouts and timestamp window (both protocols).
    pub limits: WireLimits,
    /// Called on each shard's thread (with the shard index) before its
    /// storage opens. For tests that inject faults into a running server.
    pub shard_hook: Option<ShardHook>,
    /// Whether clients need a token (`--auth`).
    pub auth: AuthSetting,
    /// Allows auth off on a non-loopback address (`--insecure`).
    pub insecure: bool,
    /// TLS on both listeners (`--tls-cert`, `--tls-key`); `None`: plain.
    pub tls: Option<TlsFiles>,
    /// How refusals of a peer that fails authentication often are delayed.
    pub auth_slowdown: Slowdown,
    /// Cluster mode (`--cluster`); `None`: a single node.
    pub cluster: Option<ClusterConfig>,
}

/// `--auth on|off`, or the default: on whenever a listener (native or
/// HTTP) is not a loopback address, off otherwise.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthSetting {
    /// On unless every listener is a loopback address.
    #[default]
    Auto,
    /// Always on.
    On,
    /// Off (on a non-loopback address only with `insecure`).
    Off,
}

impl fmt::Display for AuthSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthSetting::Auto => "auto",
            AuthSetting::On => "on",
            AuthSetting::Off => "off",
        })
    }
}

/// How often each shard checks the token file for new records.
pub const TOKEN_POLL: Duration = Duration::from_millis(500);

/// A function run on each shard's thread before its storage opens.
#[derive(Clone)]
pub struct ShardHook(pub Arc<dyn Fn(usize) + Send + Sync>);

impl fmt::Debug for ShardHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ShardHook")
    }
}

impl ServerConfig {
    /// Defaults: every online CPU, `127.0.0.1:7070`, sync always, 1 GiB.
    pub fn new(data_dir: impl Into<PathBuf>) -> Result<Self> {
        Ok(ServerConfig {
            data_dir: data_dir.into(),
            cpus: crate::runtime::placement::online_cpus()?,
            listen: "127.0.0.1:7070".into(),
            sync: SyncMode::Always,
            memory_budget: 1 << 30,
            io_memory: 4 << 20,
            wal_budget: ShardConfig::new("").wal_budget,
            retention: None,
            compact_rate: ShardConfig::new("").compact_rate,
            compact_backlog: ShardConfig::new("").compact_backlog,
            segment_align: ShardConfig::new("").segment_align,
            rollup: ShardConfig::new("").rollup,
            max_query_rows: crate::runtime::local::DEFAULT_MAX_QUERY_ROWS,
            preempt: PREEMPT_AFTER,
            stall_report: None,
            http: None,
            http_config: HttpConfig::default(),
            limits: WireLimits::default(),
            shard_hook: None,
            auth: AuthSetting::Auto,
            insecure: false,
            tls: None,
            auth_slowdown: Slowdown::default(),
            cluster: None,
        })
    }
}

impl fmt::Display for ServerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.cpus.len().max(1);
        writeln!(f, "data dir:      {}", self.data_dir.display())?;
        writeln!(
            f,
            "shards:        {} on cpus {:?}",
            self.cpus.len(),
            self.cpus
        )?;
        writeln!(f, "listen:        {}", self.listen)?;
        if let Some(h) = &self.http {
            writeln!(f, "http:          {h}")?;
        }
        if let Some(c) = &self.cluster {
            writeln!(
                f,
                "cluster:       node {} on {} (listening on {}); {} partitions, {} replicas, lease {} ms, log kept {} s",
                c.node_id,
                c.urls.join(","),
                c.listen,
                c.partitions,
                c.replicas,
                c.lease.as_millis(),
                c.log_retention.as_secs()
            )?;
        }
        writeln!(f, "sync:          {}", self.sync)?;
        writeln!(
            f,
            "memory budget: {} bytes ({} per shard)",
            self.memory_budget,
            self.memory_budget / n
        )?;
        writeln!(f, "io memory:     {} bytes per shard", self.io_memory)?;
        if let Some(d) = self.stall_report {
            writeln!(
                f,
                "stall reports: tasks running {} ms past the {} ms preempt interval",
                d.as_millis(),
                self.preempt.as_millis()
            )?;
        }
        writeln!(
            f,
            "storage:       WAL budget {} bytes per shard; compaction at most {} bytes/s, from a backlog of {} bytes, segments cut every {} s, rollups every {} s; retention {}",
            self.wal_budget,
            self.compact_rate,
            self.compact_backlog,
            self.segment_align.as_secs(),
            self.rollup.as_secs(),
            self.retention
                .map_or("forever".to_string(), |r| format!("{} s", r.as_secs()))
        )?;
        match self.auth {
            AuthSetting::Auto => writeln!(
                f,
                "auth:          auto (on unless every listener is a loopback address)"
            )?,
            a => writeln!(f, "auth:          {a}")?,
        }
        match &self.tls {
            Some(t) => writeln!(
                f,
                "tls:           cert {}, key {} (both listeners)",
                t.cert.display(),
                t.key.display()
            )?,
            None => writeln!(f, "tls:           off")?,
        }
        let l = &self.limits;
        writeln!(
            f,
            "connections:   at most {} per shard and listener; idle timeout {} s, frame timeout {} s, \
             {} request bytes in flight per shard",
            l.max_connections,
            l.idle_timeout.as_secs_f64(),
            l.frame_timeout.as_secs_f64(),
            l.max_inflight_bytes
        )?;
        match l.window.max_future {
            Some(d) => write!(
                f,
                "timestamps:    from {} µs to {} s past the server's clock",
                l.window.min_ts,
                d.as_secs()
            ),
            None => write!(
                f,
                "timestamps:    from {} µs, no future limit",
                l.window.min_ts
            ),
        }
    }
}

/// A shutdown request, settable from any thread or a signal handler.
#[derive(Clone, Debug, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    /// Not triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Triggered by SIGINT or SIGTERM.
    pub fn on_signals() -> Result<Self> {
        let s = Self::new();
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, Arc::clone(&s.0)).map_err(|e| Error::Io {
                op: format!("install handler for signal {sig}"),
                path: None,
                source: e,
            })?;
        }
        Ok(s)
    }

    /// Requests shutdown.
    pub fn trigger(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether shutdown was requested.
    pub fn is_triggered(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A running server.
pub struct ServerHandle {
    addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    shutdown: Shutdown,
    threads: Option<PoolThreadHandles<Result<()>>>,
    reload: Arc<AtomicU64>,
    auth: Mode,
    /// Cluster mode: the NATS thread, stopped (partitions handed back)
    /// before the shards.
    cluster: Option<LogThread>,
    /// Held until the shards have exited (fields drop after `Drop::drop`).
    _lock: DataDirLock,
}

impl ServerHandle {
    /// The address every shard listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address every shard's HTTP listener binds, if HTTP is on.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Whether clients need a token.
    pub fn auth_enabled(&self) -> bool {
        self.auth == Mode::On
    }

    /// Asks every shard to re-read the token file and the TLS certificate
    /// and key now (what SIGHUP does in `xtdb serve`). Returns at once; the
    /// shards act within about 20 ms.
    pub fn reload(&self) {
        self.reload.fetch_add(1, Ordering::SeqCst);
    }

    /// Requests shutdown without waiting.
    pub fn shutdown(&self) {
        self.shutdown.trigger();
    }

    /// Requests shutdown and waits until every shard has closed its storage.
    /// In cluster mode the node first hands its partitions back (stops
    /// applying, checkpoints, deletes its leases), while its shards still
    /// serve.
    pub fn stop(mut self) -> Result<()> {
        if let Some(mut c) = self.cluster.take() {
            c.stop();
        }
        self.shutdown.trigger();
        self.join()
    }

    /// Waits for the shards to exit (after a shutdown request).
    pub fn join(&mut self) -> Result<()> {
        if let Some(mut c) = self.cluster.take() {
            c.stop();
        }
        let Some(t) = self.threads.take() else {
            return Ok(());
        };
        let mut first = Ok(());
        for r in t.join_all() {
            let r = match r {
                Ok(inner) => inner,
                Err(e) => Err(Error::Startup(format!("shard thread: {e}"))),
            };
            if first.is_ok() {
                first = r;
            }
        }
        first
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.shutdown.trigger();
        let _ = self.join();
    }
}

/// State shared by the shard threads during start-up and shutdown.
struct Shared {
    /// The address shard 0 bound (or why it could not).
    addr: Mutex<Option<std::result::Result<SocketAddr, String>>>,
    /// The HTTP address shard 0 bound (or why it could not).
    http_addr: Mutex<Option<std::result::Result<SocketAddr, String>>>,
    /// Shards that have stopped serving (drained or failed).
    drained: AtomicUsize,
    /// Bumped by [`ServerHandle::reload`].
    reload: Arc<AtomicU64>,
    /// Auth as decided at start.
    auth: Mode,
    /// The token file as read at start (auth on).
    tokens: Option<tokens::Snapshot>,
    /// TLS configurations built at start.
    tls: Option<ServerConfigs>,
    /// Cluster mode: what the shards share with the NATS thread.
    cluster: Option<ClusterLink>,
    /// The cluster listener's address shard 0 bound (or why it could not).
    cluster_addr: Mutex<Option<std::result::Result<SocketAddr, String>>>,
}

/// What every shard needs to route through the cluster.
struct ClusterLink {
    shared: Arc<crate::cluster::Shared>,
    to_log: tokio::sync::mpsc::UnboundedSender<ToLog>,
    /// Taken by shard 0, which applies the log.
    apply: Mutex<Option<tokio::sync::mpsc::Receiver<Apply>>>,
    partitions: u32,
    token: Option<String>,
    listen: String,
    /// How long a query waits out a partition without a reachable owner.
    patience: std::time::Duration,
}

/// Whether every address `listen` resolves to is a loopback address.
pub fn is_loopback(listen: &str) -> bool {
    match std::net::ToSocketAddrs::to_socket_addrs(listen) {
        Ok(addrs) => {
            let v: Vec<SocketAddr> = addrs.collect();
            !v.is_empty() && v.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

/// Decides auth from the setting and the listen addresses, and reads the
/// token file when auth is on (it must parse and hold a live token).
fn decide_auth(config: &ServerConfig) -> Result<(Mode, Option<tokens::Snapshot>)> {
    let exposed: Vec<&str> = std::iter::once(config.listen.as_str())
        .chain(config.http.as_deref())
        .chain(config.cluster.as_ref().map(|c| c.listen.as_str()))
        .filter(|a| !is_loopback(a))
        .collect();
    let mode = match config.auth {
        AuthSetting::On => Mode::On,
        AuthSetting::Auto if exposed.is_empty() => Mode::Off,
        AuthSetting::Auto => Mode::On,
        AuthSetting::Off if exposed.is_empty() => Mode::Off,
        AuthSetting::Off if config.insecure => {
            log::warn!(
                "auth is off on {}, which is not a loopback address: anyone who can reach it \
                 may write, read and fill the disk (--insecure)",
                exposed.join(" and ")
            );
            Mode::Off
        }
        AuthSetting::Off => {
            return Err(Error::Config(format!(
                "--auth off on {}, which is not a loopback address, would let anyone who can \
                 reach it write, read and fill the disk; add --insecure to run so anyway, or \
                 keep auth on and create a token with `xtdb token create --data-dir {} --name \
                 NAME --read --write`",
                exposed.join(" and "),
                config.data_dir.display()
            )))
        }
    };
    if mode == Mode::Off {
        return Ok((mode, None));
    }
    let path = tokens::path_in(&config.data_dir);
    let snap = tokens::read_blocking(&path)?;
    let live = snap.as_ref().map_or(0, |s| s.set.live_count());
    if live == 0 {
        return Err(Error::Config(format!(
            "auth is on{} and {} holds no active token, so no client could connect; create \
             one with `xtdb token create --data-dir {} --name NAME --read --write` (it prints \
             the token), or run on a loopback address with --auth off",
            if config.auth == AuthSetting::On {
                String::new()
            } else {
                format!(
                    " (by default, as {} is not a loopback address)",
                    exposed.join(" and ")
                )
            },
            path.display(),
            config.data_dir.display()
        )));
    }
    if config.tls.is_none() && !exposed.is_empty() {
        log::warn!(
            "auth is on but TLS is off: tokens cross the network to {} in clear text \
             (--tls-cert, --tls-key)",
            exposed.join(" and ")
        );
    }
    log::info!("auth on: {live} active tokens in {}", path.display());
    Ok((mode, snap))
}

/// The longest timeout the server takes (ten years). Deadlines are
/// `Instant::now() + timeout`, which panics past the clock's range: a
/// timeout of `u64::MAX` seconds ("never") took down the shard of the
/// first connection.
pub const MAX_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10 * 365 * 86_400);

/// Refuses a timeout over [`MAX_TIMEOUT`], naming it.
fn check_timeouts(config: &ServerConfig) -> Result<()> {
    let h = &config.http_config;
    for (name, d) in [
        ("idle timeout", config.limits.idle_timeout),
        ("frame timeout", config.limits.frame_timeout),
        ("HTTP idle timeout", h.idle_timeout),
        ("HTTP header timeout", h.header_timeout),
        ("HTTP body grace", h.body_grace),
        ("preempt interval", config.preempt),
    ] {
        if d > MAX_TIMEOUT {
            return Err(Error::Config(format!(
                "{name} of {} s is more than the {} s the server takes",
                d.as_secs(),
                MAX_TIMEOUT.as_secs()
            )));
        }
    }
    Ok(())
}

/// Starts the shards on their pinned threads; returns once every shard
/// listens (or the first start-up error, after stopping the others).
pub fn start(mut config: ServerConfig, shutdown: Shutdown) -> Result<ServerHandle> {
    let n = config.cpus.len();
    if n == 0 {
        return Err(Error::Config("no CPU listed".into()));
    }
    check_timeouts(&config)?;
    config.data_dir = canonical_data_dir(&config.data_dir)?;
    let lock = lock_data_dir(&config.data_dir)?;
    probe_listen(&config.listen)?;
    if let Some(h) = &config.http {
        probe_listen(h)?;
    }
    let (auth, tokens) = decide_auth(&config)?;
    let tls = match &config.tls {
        Some(files) => Some(load_server_configs(files).map_err(Error::Config)?),
        None => None,
    };
    check_shard_count(&config.data_dir, n)?;
    let mut log_thread = None;
    let mut cluster_shared = None;
    let link = match &mut config.cluster {
        None => None,
        Some(c) => {
            c.check().map_err(Error::Config)?;
            probe_listen(&c.listen)?;
            c.dir = config.data_dir.join("cluster");
            let shared = Arc::new(crate::cluster::Shared::default());
            cluster_shared = Some(Arc::clone(&shared));
            let (to_log, from_shards) = tokio::sync::mpsc::unbounded_channel();
            let (apply_tx, apply_rx) = tokio::sync::mpsc::channel(64);
            log_thread = Some(
                LogThread::start(c.clone(), Arc::clone(&shared), from_shards, apply_tx)
                    .map_err(|e| Error::Startup(format!("cluster: {e}")))?,
            );
            Some(ClusterLink {
                shared,
                to_log,
                apply: Mutex::new(Some(apply_rx)),
                partitions: c.partitions,
                token: c.token.clone(),
                listen: c.listen.clone(),
                patience: c.lease * 2,
            })
        }
    };
    let placement = placement(&config.cpus)?;
    let mesh = mesh_builder(n);
    let reload = Arc::new(AtomicU64::new(0));
    let shared = Arc::new(Shared {
        addr: Mutex::new(None),
        http_addr: Mutex::new(None),
        drained: AtomicUsize::new(0),
        reload: Arc::clone(&reload),
        auth,
        tokens,
        tls,
        cluster: link,
        cluster_addr: Mutex::new(None),
    });
    let (ready_tx, ready_rx) = mpsc::channel::<Result<Addrs>>();
    let cfg = config.clone();
    let sd = shutdown.clone();
    let threads =
        LocalExecutorPoolBuilder::new(placement)
            .name("xtdb-shard")
            .io_memory(config.io_memory)
            // A long task (a big read, a compaction step, a catalog insert)
            // gives way at its next `yield_if_needed` after this long, so the
            // shard's small requests wait at most about this behind it
            // (glommio's default is 100 ms).
            .preempt_timer(config.preempt)
            .detect_stalls(crate::runtime::stall::handlers(config.stall_report))
            .on_all_shards(move || {
                let (cfg, sd, shared, tx, mesh) = (cfg, sd, shared, ready_tx, mesh);
                // Awake from the first step: joining the mesh and opening the
                // storage come before the shard's own keep-alive (see
                // `storage::keepalive`); a start once parked there for good.
                async move {
                    crate::storage::keepalive::awake(shard_main(cfg, sd, shared, tx, mesh)).await
                }
            })
            .map_err(|e| Error::Startup(format!("start the shard executors: {e}")))?;
    let mut handle = ServerHandle {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        http_addr: None,
        shutdown,
        threads: Some(threads),
        reload,
        auth,
        cluster: log_thread,
        _lock: lock,
    };
    for _ in 0..n {
        match ready_rx.recv() {
            Ok(Ok((addr, http))) => {
                handle.addr = addr;
                handle.http_addr = http;
            }
            Ok(Err(e)) => {
                handle.shutdown.trigger();
                let _ = handle.join();
                return Err(e);
            }
            Err(_) => {
                handle.shutdown.trigger();
                handle.join()?;
                return Err(Error::Startup("a shard exited during start-up".into()));
            }
        }
    }
    // A cluster node is ready once its catalog copy holds every series
    // key the cluster had when it started (else a query by name could
    // find nothing for a series that exists).
    if let Some(s) = cluster_shared {
        let until = std::time::Instant::now() + CATALOG_READY_WAIT;
        while !s.catalog_ready() && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !s.catalog_ready() {
            log::warn!(
                "cluster: the series catalog is not applied after {} s; serving while it catches up",
                CATALOG_READY_WAIT.as_secs()
            );
        }
    }
    Ok(handle)
}

/// How long a starting cluster node waits for its catalog copy.
const CATALOG_READY_WAIT: Duration = Duration::from_secs(60);

/// The native address and the HTTP address (if any) a shard listens on.
type Addrs = (SocketAddr, Option<SocketAddr>);

async fn shard_main(
    cfg: ServerConfig,
    shutdown: Shutdown,
    shared: Arc<Shared>,
    ready: mpsc::Sender<Result<Addrs>>,
    mesh: MeshBuilder,
) -> Result<()> {
    let n = cfg.cpus.len();
    let (index, senders, receivers) = Router::join(mesh)
        .await
        .map_err(|e| Error::Startup(format!("join the shard mesh: {e}")))?;
    crate::runtime::local::set_log_shard(index);
    let served = serve_shard(
        index,
        &cfg,
        &shutdown,
        &shared,
        &ready,
        (senders, receivers),
    )
    .await;
    if let Err(e) = &served {
        // Tell the other shards (waiting for the address) and `start`
        // (waiting for every shard) right away, before the barrier.
        for slot in [&shared.addr, &shared.http_addr, &shared.cluster_addr] {
            let mut a = slot.lock().unwrap_or_else(|p| p.into_inner());
            if a.is_none() {
                *a = Some(Err(format!("shard {index}: {e}")));
            }
        }
        let _ = ready.send(Err(Error::Startup(format!(
            "shard {index} failed to start: {e}"
        ))));
    }
    // Barrier: no shard closes its storage while another may still route
    // sub-batches to it.
    shared.drained.fetch_add(1, Ordering::SeqCst);
    while shared.drained.load(Ordering::SeqCst) < n {
        glommio::timer::sleep(Duration::from_millis(5)).await;
    }
    match served {
        Ok(shard) => Ok(shard.close().await?),
        Err(e) => Err(e),
    }
}

async fn serve_shard(
    index: usize,
    cfg: &ServerConfig,
    shutdown: &Shutdown,
    shared: &Shared,
    ready: &mpsc::Sender<Result<Addrs>>,
    (senders, receivers): (
        glommio::channels::channel_mesh::Senders<RouterMsg>,
        glommio::channels::channel_mesh::Receivers<RouterMsg>,
    ),
) -> Result<Shard> {
    let n = cfg.cpus.len();
    let cpu = cfg.cpus.get(index).copied().unwrap_or(usize::MAX);
    if let Some(hook) = &cfg.shard_hook {
        (hook.0)(index);
    }
    let mut sc = ShardConfig::new(shard_dir(&cfg.data_dir, index));
    sc.sync = cfg.sync;
    sc.memory_budget = cfg.memory_budget / n;
    sc.wal_budget = cfg.wal_budget;
    sc.retention = cfg.retention;
    sc.compact_rate = cfg.compact_rate;
    sc.compact_backlog = cfg.compact_backlog;
    sc.segment_align = cfg.segment_align;
    sc.rollup = cfg.rollup;
    let shard = Shard::open(sc).await?;
    let rec = shard.recovery();
    log::info!(
        "shard {index} (cpu {cpu}): opened {} in {:?} ({} WAL records, {} points replayed)",
        shard_dir(&cfg.data_dir, index).display(),
        rec.duration,
        rec.wal_records_replayed,
        rec.wal_points_replayed
    );
    let mut local = Local::new(index, cpu, shard.clone());
    local.window = cfg.limits.window;
    local.max_query_rows = cfg.max_query_rows;
    if index == 0 {
        let store = Store::open(&cfg.data_dir).await?;
        log::info!("catalog: {} series keys", store.len());
        local.catalog = Some(Rc::new(store));
    }
    let router = Router::start(Rc::new(local), senders, receivers);
    if let Some(c) = &shared.cluster {
        router.set_cluster(Rc::new(Route::new(
            Arc::clone(&c.shared),
            c.to_log.clone(),
            c.partitions,
            c.token.clone(),
            c.patience,
        )));
    }
    let limits = Rc::new(cfg.limits.clone());
    let guard = Rc::new(Guard::new(
        shared.auth,
        tokens::path_in(&cfg.data_dir),
        shared.tokens.clone(),
        cfg.auth_slowdown,
        Rc::clone(router.local()),
    ));
    let tls = match (&cfg.tls, &shared.tls) {
        (Some(files), Some(configs)) => Some(Rc::new(ServerTls::new(
            files.clone(),
            configs.clone(),
            Rc::clone(router.local()),
        ))),
        _ => None,
    };

    let listener = bind_shared(index, &cfg.listen, &shared.addr).await?;
    let addr = listener.local_addr().map_err(|e| Error::Io {
        op: "listener address".into(),
        path: None,
        source: glommio_io(e),
    })?;
    let http = match &cfg.http {
        Some(h) => {
            let l = bind_shared(index, h, &shared.http_addr).await?;
            let a = l.local_addr().map_err(|e| Error::Io {
                op: "http listener address".into(),
                path: None,
                source: glommio_io(e),
            })?;
            let state = Rc::new(HttpState::new(
                Rc::clone(&router),
                cfg.http_config.clone(),
                Rc::clone(&guard),
                tls.clone(),
            ));
            Some((l, a, state))
        }
        None => None,
    };
    let http_addr = http.as_ref().map(|h| h.1);
    let cluster_listener = match &shared.cluster {
        Some(c) => {
            let l = bind_shared(index, &c.listen, &shared.cluster_addr).await?;
            if index == 0 {
                let a = l.local_addr().map_err(|e| Error::Io {
                    op: "cluster listener address".into(),
                    path: None,
                    source: glommio_io(e),
                })?;
                c.shared.set_addr(a.to_string());
            }
            Some(l)
        }
        None => None,
    };
    let _ = ready.send(Ok((addr, http_addr)));

    let closing = Closing::default();
    let watcher = {
        let (closing, shutdown) = (closing.clone(), shutdown.clone());
        let (guard, tls, reload) = (Rc::clone(&guard), tls.clone(), Arc::clone(&shared.reload));
        glommio::spawn_local(async move {
            let mut seen = reload.load(Ordering::SeqCst);
            let mut next_poll = std::time::Instant::now() + TOKEN_POLL;
            while !shutdown.is_triggered() {
                glommio::timer::sleep(Duration::from_millis(20)).await;
                let now = reload.load(Ordering::SeqCst);
                if now != seen {
                    seen = now;
                    guard.poll(true).await;
                    if let Some(t) = &tls {
                        t.reload().await;
                    }
                } else if std::time::Instant::now() >= next_poll {
                    guard.poll(false).await;
                    next_poll = std::time::Instant::now() + TOKEN_POLL;
                }
            }
            closing.close();
        })
    };
    let cluster_edge = Edge {
        closing: closing.clone(),
        limits: Rc::clone(&limits),
        guard: Rc::clone(&guard),
        tls: tls.clone(),
        owned_only: true,
    };
    let edge = Edge {
        closing: closing.clone(),
        limits: Rc::clone(&limits),
        guard,
        tls,
        owned_only: false,
    };
    let cluster_side = {
        let router = Rc::clone(&router);
        let closing = closing.clone();
        async move {
            let Some(l) = cluster_listener else {
                return;
            };
            let c = shared.cluster.as_ref();
            let rx = match c {
                Some(c) if index == 0 => c.apply.lock().ok().and_then(|mut a| a.take()),
                _ => None,
            };
            let applying = rx.map(|rx| glommio::spawn_local(run_apply(Rc::clone(&router), rx)));
            let counting = match c {
                Some(c) if index == 0 => Some(glommio::spawn_local(run_counters(
                    Rc::clone(&router),
                    Arc::clone(&c.shared),
                    closing.clone(),
                ))),
                _ => None,
            };
            accept_loop(l, router, cluster_edge).await;
            drop(applying);
            if let Some(t) = counting {
                t.await;
            }
        }
    };
    let main_side = async move {
        match http {
            Some((l, _, state)) => {
                let max = limits.max_connections;
                futures_lite::future::zip(
                    accept_loop(listener, Rc::clone(&router), edge),
                    crate::http::accept_loop(l, state, closing, max),
                )
                .await;
            }
            None => accept_loop(listener, Rc::clone(&router), edge).await,
        }
    };
    futures_lite::future::zip(main_side, cluster_side).await;
    watcher.await;
    Ok(shard)
}

/// Binds `listen` on shard 0 and publishes the bound address in `slot`;
/// the other shards wait for it and bind the same address (`SO_REUSEPORT`),
/// so port 0 resolves to one port for all.
async fn bind_shared(
    index: usize,
    listen: &str,
    slot: &Mutex<Option<std::result::Result<SocketAddr, String>>>,
) -> Result<TcpListener> {
    if index == 0 {
        let bound = TcpListener::bind(listen)
            .and_then(|l| l.local_addr().map(|a| (l, a)))
            .map_err(|e| Error::Io {
                op: format!("listen on {listen}"),
                path: None,
                source: glommio_io(e),
            });
        let mut a = slot.lock().unwrap_or_else(|p| p.into_inner());
        return match bound {
            Ok((l, addr)) => {
                *a = Some(Ok(addr));
                Ok(l)
            }
            Err(e) => {
                *a = Some(Err(e.to_string()));
                Err(e)
            }
        };
    }
    let addr = loop {
        let got = slot.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match got {
            Some(Ok(a)) => break a,
            Some(Err(e)) => return Err(Error::Startup(format!("shard 0 failed: {e}"))),
            None => glommio::timer::sleep(Duration::from_millis(1)).await,
        }
    };
    TcpListener::bind(addr).map_err(|e| Error::Io {
        op: format!("listen on {addr}"),
        path: None,
        source: glommio_io(e),
    })
}

/// glommio's listeners set `SO_REUSEPORT`, so binding a port that another
/// server (of the same user) listens on would silently succeed and split the
/// connections between the two. A plain bind first refuses that.
///
/// Two kinds of false alarm are waited out:
/// - after a kill -9, the dead server's connections sit in TIME-WAIT and a
///   plain bind fails although nothing listens: only a listener that
///   accepts a connection is a conflict;
/// - a killed io_uring process's listener stays open (and completes TCP
///   handshakes) until the kernel has torn its ring down, which can take
///   seconds on a busy machine. Binding beside it would hand it part of the
///   new connections, so the probe waits for it to go, up to
///   [`LISTENER_GONE_WAIT`].
fn probe_listen(listen: &str) -> Result<()> {
    let addrs: Vec<SocketAddr> = std::net::ToSocketAddrs::to_socket_addrs(listen)
        .map_err(|e| Error::Io {
            op: format!("resolve listen address {listen}"),
            path: None,
            source: e,
        })?
        .collect();
    let until = std::time::Instant::now() + LISTENER_GONE_WAIT;
    for addr in addrs.iter().filter(|a| a.port() != 0) {
        loop {
            let e = match std::net::TcpListener::bind(addr) {
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => e,
                Err(e) => {
                    return Err(Error::Io {
                        op: format!("listen on {addr}"),
                        path: None,
                        source: e,
                    })
                }
            };
            let live = std::net::TcpStream::connect_timeout(addr, Duration::from_millis(300));
            if live.is_err() {
                break;
            }
            if std::time::Instant::now() >= until {
                return Err(Error::Io {
                    op: format!(
                        "listen on {addr}: another server is running on it (still accepting \
                         after {} s)",
                        LISTENER_GONE_WAIT.as_secs()
                    ),
                    path: None,
                    source: e,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// How long [`probe_listen`] waits for a listener that accepts to go away.
pub const LISTENER_GONE_WAIT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(
        dir: &std::path::Path,
        listen: &str,
        http: Option<&str>,
        auth: AuthSetting,
    ) -> ServerConfig {
        let mut c = ServerConfig::new(dir).unwrap();
        c.listen = listen.into();
        c.http = http.map(String::from);
        c.auth = auth;
        c
    }

    #[test]
    fn auth_follows_the_listen_addresses_and_needs_a_token() {
        assert!(is_loopback("127.0.0.1:7070"));
        assert!(is_loopback("[::1]:0"));
        assert!(is_loopback("localhost:0"));
        assert!(!is_loopback("0.0.0.0:7070"));
        assert!(!is_loopback("[::]:7070"));
        assert!(!is_loopback("no-such-host.invalid:1"));
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let off = |c: &ServerConfig| decide_auth(c).map(|(m, _)| m).map_err(|e| e.to_string());
        assert_eq!(
            off(&cfg(d, "127.0.0.1:0", Some("[::1]:0"), AuthSetting::Auto)),
            Ok(Mode::Off)
        );
        assert_eq!(
            off(&cfg(d, "127.0.0.1:0", None, AuthSetting::Off)),
            Ok(Mode::Off)
        );
        // Auto on a non-loopback address (native or HTTP) is on, and with no
        // token file the start is refused with how to make one.
        for c in [
            cfg(d, "0.0.0.0:0", None, AuthSetting::Auto),
            cfg(d, "127.0.0.1:0", Some("0.0.0.0:0"), AuthSetting::Auto),
            cfg(d, "127.0.0.1:0", None, AuthSetting::On),
        ] {
            let e = off(&c).unwrap_err();
            assert!(
                e.contains("xtdb token create") && e.contains("tokens.xtauth"),
                "{e}"
            );
        }
        // Off on a non-loopback address needs --insecure.
        let mut c = cfg(d, "0.0.0.0:0", None, AuthSetting::Off);
        let e = off(&c).unwrap_err();
        assert!(e.contains("--insecure"), "{e}");
        c.insecure = true;
        assert_eq!(off(&c), Ok(Mode::Off));
    }
}
