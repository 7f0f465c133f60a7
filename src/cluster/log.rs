//! The node's NATS thread: one OS thread running a current-thread tokio
//! runtime with the async NATS client, beside the glommio shards. It
//! publishes the writes the shards hand it (one message per partition
//! piece, acknowledged once JetStream has stored every piece on a
//! quorum), holds and balances the partition leases, applies the owned
//! partitions' streams by handing batches to shard 0 (one batch in flight
//! per partition, in log order), and checkpoints the applied sequences in
//! `DATA/cluster/applied`. Talks to the shards only by channel messages;
//! never touches storage itself.
//!
//! The series catalog's copy ([`crate::cluster::catalog`]) runs here too.
//!
//! Safety of the leases: an owner renews every lease/5 by compare-and-set
//! on the key's revision and stops applying a partition the moment a
//! renewal is refused or none has succeeded for lease/2, while the key
//! only expires a full lease after its last renewal; so two nodes never
//! apply one partition at the same time.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer, kv, stream};
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

use crate::cluster::catalog::{CatalogCopy, CATALOG_STREAM, CATALOG_SUBJECT};
use crate::cluster::js::{fetch, nats_err, pull_consumer, FETCH_MESSAGES};
use crate::cluster::{
    partition, wire, Apply, ApplyBatch, ClusterConfig, NodeInfo, OwnerMap, Shared, ToLog,
};
use crate::runtime::command::{Answer, Failure, Reply};
use crate::Point;

/// How long a publish may wait for JetStream's acknowledgements.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a clean stop tries to hand its leases back.
const HAND_BACK_WAIT: Duration = Duration::from_secs(3);
/// KV bucket of the cluster's fixed settings.
pub const CONFIG_BUCKET: &str = "xtdb_cluster";
/// KV bucket of the partition leases (`p<N>` → node id).
pub const LEASE_BUCKET: &str = "xtdb_leases";
/// KV bucket of the nodes' heartbeats (node id → address and applied
/// sequences).
pub const NODE_BUCKET: &str = "xtdb_nodes";

/// The stream of partition `p`.
pub fn stream_name(p: u32) -> String {
    format!("XTDB_P{p}")
}

/// The subject of partition `p`.
pub fn subject(p: u32) -> String {
    format!("xtdb.p.{p}")
}

/// The lease key of partition `p`.
pub fn lease_key(p: u32) -> String {
    format!("p{p}")
}

/// The running NATS thread.
pub struct LogThread {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LogThread {
    /// Starts the thread: it connects, creates the cluster's streams and
    /// buckets if missing (and refuses a cluster made with other
    /// partitions), and reports back before this returns. `to_log` is the
    /// shards' sending end's receiver; `apply` goes to shard 0.
    pub fn start(
        cfg: ClusterConfig,
        shared: Arc<Shared>,
        to_log: mpsc::UnboundedReceiver<ToLog>,
        apply: mpsc::Sender<Apply>,
    ) -> Result<LogThread, String> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("xtdb-nats".into())
            .spawn(move || thread_main(cfg, shared, to_log, apply, ready_tx, stop_rx))
            .map_err(|e| format!("start the NATS thread: {e}"))?;
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => Ok(LogThread {
                stop: Some(stop_tx),
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => Err("the NATS thread did not get ready within 30 s".into()),
        }
    }

    /// Hands the node's partitions back (stops applying, checkpoints,
    /// deletes its leases and heartbeat) and ends the thread.
    pub fn stop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for LogThread {
    fn drop(&mut self) {
        self.stop();
    }
}

fn thread_main(
    cfg: ClusterConfig,
    shared: Arc<Shared>,
    to_log: mpsc::UnboundedReceiver<ToLog>,
    apply: mpsc::Sender<Apply>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
    stop: oneshot::Receiver<()>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(format!("start the NATS thread's runtime: {e}")));
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let node = match Node::connect(cfg, shared, apply).await {
            Ok(n) => Rc::new(n),
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        tokio::task::spawn_local(publisher(Rc::clone(&node), to_log));
        let n = Rc::clone(&node);
        tokio::task::spawn_local(async move { n.catalog.run(&n.js, &n.apply, &n.shared).await });
        tokio::task::spawn_local(checkpointer(Rc::clone(&node)));
        node.run_leases(stop).await;
        node.hand_back().await;
    });
}

/// A partition applied here ahead of owning it (a node below its share
/// warms the partitions a node above it will hand over).
struct Shadow {
    stop: Rc<Cell<bool>>,
    task: tokio::task::JoinHandle<()>,
}

/// Which live nodes have caught up on which partitions they do not own.
type Warm = BTreeMap<u32, Vec<String>>;

/// One owned partition.
struct Owned {
    revision: u64,
    last_ok: Instant,
    stop: Rc<Cell<bool>>,
    task: tokio::task::JoinHandle<()>,
}

struct Node {
    cfg: ClusterConfig,
    shared: Arc<Shared>,
    client: async_nats::Client,
    js: jetstream::Context,
    leases: kv::Store,
    nodes: kv::Store,
    apply: mpsc::Sender<Apply>,
    applied: RefCell<Vec<u64>>,
    pending: RefCell<Vec<u64>>,
    /// Per partition: how old (ms) the last applied message was when
    /// applied, while messages were still pending after it (else 0).
    lag_ms: RefCell<Vec<u64>>,
    dirty: Cell<bool>,
    owned: RefCell<BTreeMap<u32, Owned>>,
    /// Partitions applied ahead of owning them, and those caught up.
    warming: RefCell<BTreeMap<u32, Shadow>>,
    warm: RefCell<std::collections::BTreeSet<u32>>,
    /// Partitions seen without an owner, since when.
    free_since: RefCell<BTreeMap<u32, Instant>>,
    apply_log: Option<RefCell<std::fs::File>>,
    /// This node's copy of the series catalog.
    catalog: CatalogCopy,
}

impl Node {
    async fn connect(
        cfg: ClusterConfig,
        shared: Arc<Shared>,
        apply: mpsc::Sender<Apply>,
    ) -> Result<Node, String> {
        let mut addrs = Vec::new();
        for u in &cfg.urls {
            addrs.push(
                u.parse::<async_nats::ServerAddr>()
                    .map_err(|e| format!("--cluster {u:?}: {e}"))?,
            );
        }
        // NATS that is just starting may not listen yet, and a JetStream
        // cluster has no meta leader for its first seconds: retry both for
        // up to SETUP_WAIT.
        let deadline = Instant::now() + SETUP_WAIT;
        let client = loop {
            let c = async_nats::ConnectOptions::new()
                .name(format!("xtdb {}", cfg.node_id))
                .connection_timeout(Duration::from_secs(5))
                .connect(addrs.as_slice())
                .await;
            match c {
                Ok(c) => break c,
                Err(e) if Instant::now() >= deadline => {
                    return Err(nats_err(
                        &format!("connect to NATS at {}", cfg.urls.join(",")),
                        e,
                    ))
                }
                Err(e) => {
                    log::info!("cluster: NATS not reachable yet ({e}); retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        };
        let js = jetstream::new(client.clone());
        let (leases, nodes) = loop {
            match setup(&js, &cfg).await {
                Ok(v) => break v,
                Err(Setup::Refused(e)) => return Err(e),
                Err(Setup::Retry(e)) if Instant::now() >= deadline => return Err(e),
                Err(Setup::Retry(e)) => {
                    log::info!("cluster: set-up not done yet ({e}); retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        };
        let applied = read_checkpoint(&cfg.dir, cfg.partitions);
        let apply_log = match std::env::var_os("XTDB_CLUSTER_APPLY_LOG") {
            Some(path) => Some(RefCell::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| format!("open XTDB_CLUSTER_APPLY_LOG {path:?}: {e}"))?,
            )),
            None => None,
        };
        let n = cfg.partitions as usize;
        Ok(Node {
            cfg,
            shared,
            client,
            js,
            leases,
            nodes,
            apply,
            applied: RefCell::new(applied),
            pending: RefCell::new(vec![0; n]),
            lag_ms: RefCell::new(vec![0; n]),
            dirty: Cell::new(false),
            owned: RefCell::new(BTreeMap::new()),
            warming: RefCell::new(BTreeMap::new()),
            warm: RefCell::new(std::collections::BTreeSet::new()),
            free_since: RefCell::new(BTreeMap::new()),
            apply_log,
            catalog: CatalogCopy::default(),
        })
    }

    /// Splits a write by partition, publishes every piece and waits for
    /// all of JetStream's acknowledgements; with `applied`, then also
    /// until every piece's partition owner has applied it (each within
    /// [`PUBLISH_TIMEOUT`]).
    async fn publish(&self, points: Vec<Point>, applied: bool) -> Reply {
        let n = points.len() as u64;
        let seqs = match tokio::time::timeout(PUBLISH_TIMEOUT, self.publish_all(points)).await {
            Ok(r) => r?,
            Err(_) => {
                return Err(Failure::Unavailable {
                    reason: format!(
                        "the replicated log did not acknowledge the write within {} s",
                        PUBLISH_TIMEOUT.as_secs()
                    ),
                })
            }
        };
        if applied {
            match tokio::time::timeout(PUBLISH_TIMEOUT, self.wait_applied(&seqs)).await {
                Ok(r) => r?,
                Err(_) => {
                    return Err(Failure::Unavailable {
                        reason: format!(
                            "the write is in the replicated log but its partitions' owners \
                             did not apply it within {} s (consistency=all)",
                            PUBLISH_TIMEOUT.as_secs()
                        ),
                    })
                }
            }
        }
        Ok(Answer::Written(n))
    }

    /// Waits until each partition's owner has applied up to its sequence
    /// in `seqs`: this node's own applied sequence, another owner's from
    /// its consumer's acknowledgement floor (an owner acknowledges a
    /// batch once it is durable in its shards). Polls every 5-50 ms.
    async fn wait_applied(&self, seqs: &[(u32, u64)]) -> Result<(), Failure> {
        let mut wait = Duration::from_millis(5);
        let mut left: Vec<(u32, u64)> = seqs.to_vec();
        while !left.is_empty() {
            let map = self.shared.map();
            let mut still = Vec::new();
            for &(p, seq) in &left {
                let owner = map
                    .owner
                    .get(p as usize)
                    .copied()
                    .flatten()
                    .and_then(|i| map.nodes.get(i as usize));
                let done = match owner {
                    Some(o) if o.id == self.cfg.node_id => self.applied.borrow()[p as usize] >= seq,
                    Some(o) => match self.js.get_stream(stream_name(p)).await {
                        Ok(s) => s
                            .consumer_info(format!("{}-p{p}", o.id))
                            .await
                            .is_ok_and(|i| i.ack_floor.stream_sequence >= seq),
                        Err(_) => false,
                    },
                    None => false,
                };
                if !done {
                    still.push((p, seq));
                }
            }
            left = still;
            if !left.is_empty() {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_millis(50));
            }
        }
        Ok(())
    }

    /// Publishes the write's pieces; answers each partition's last
    /// sequence.
    async fn publish_all(&self, points: Vec<Point>) -> Result<Vec<(u32, u64)>, Failure> {
        let parts = self.cfg.partitions;
        let mut by_part: Vec<Vec<Point>> = vec![Vec::new(); parts as usize];
        for p in points {
            by_part[partition(p.tag, parts) as usize].push(p);
        }
        let mut acks = Vec::new();
        for (p, pts) in by_part.iter().enumerate() {
            for chunk in pts.chunks(wire::MAX_POINTS) {
                let fut = self
                    .js
                    .publish(subject(p as u32), wire::encode(chunk).into())
                    .await
                    .map_err(|e| unavailable(p as u32, e))?;
                acks.push((p as u32, fut));
            }
        }
        let all = futures_util::future::join_all(acks.into_iter().map(|(p, f)| async move {
            f.await
                .map(|a| (p, a.sequence))
                .map_err(|e| unavailable(p, e))
        }))
        .await;
        let mut last: BTreeMap<u32, u64> = BTreeMap::new();
        for r in all {
            let (p, seq) = r?;
            let e = last.entry(p).or_default();
            *e = (*e).max(seq);
        }
        Ok(last.into_iter().collect())
    }

    /// Renews, heartbeats, reads the owners and balances every lease/5
    /// until `stop`.
    async fn run_leases(self: &Rc<Self>, mut stop: oneshot::Receiver<()>) {
        let tick = self.cfg.lease / 5;
        loop {
            self.round().await;
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = &mut stop => return,
            }
        }
    }

    async fn round(self: &Rc<Self>) {
        let budget = self.cfg.lease / 5;
        // Renew.
        let keys: Vec<(u32, u64)> = self
            .owned
            .borrow()
            .iter()
            .map(|(&p, o)| (p, o.revision))
            .collect();
        for (p, rev) in keys {
            let me = self.cfg.node_id.clone();
            let r = tokio::time::timeout(budget, self.leases.update(lease_key(p), me.into(), rev))
                .await;
            match r {
                Ok(Ok(new)) => {
                    if let Some(o) = self.owned.borrow_mut().get_mut(&p) {
                        o.revision = new;
                        o.last_ok = Instant::now();
                    }
                }
                Ok(Err(e)) if e.to_string().contains("wrong last") => {
                    log::warn!(
                        "cluster: lease of partition {p} was taken over ({e}); stop applying it"
                    );
                    self.lose(p);
                }
                Ok(Err(e)) => log::warn!("cluster: renew the lease of partition {p}: {e}"),
                Err(_) => log::warn!("cluster: renewing the lease of partition {p} timed out"),
            }
        }
        let late: Vec<u32> = self
            .owned
            .borrow()
            .iter()
            .filter(|(_, o)| o.last_ok.elapsed() > self.cfg.lease / 2)
            .map(|(&p, _)| p)
            .collect();
        for p in late {
            log::warn!(
                "cluster: no renewal of partition {p}'s lease for {} ms; stop applying it",
                (self.cfg.lease / 2).as_millis()
            );
            self.lose(p);
        }
        // Heartbeat: address and applied sequences.
        if let Some(addr) = self.shared.addr() {
            let applied = self.applied.borrow().clone();
            let warm: Vec<u32> = self.warm.borrow().iter().copied().collect();
            let beat =
                serde_json::json!({"addr": addr, "applied": applied, "warm": warm}).to_string();
            let r =
                tokio::time::timeout(budget, self.nodes.put(&self.cfg.node_id, beat.into())).await;
            if !matches!(r, Ok(Ok(_))) {
                log::warn!("cluster: heartbeat not stored");
            }
        }
        let (lag, lag_ms) = {
            let (pending, ages) = (self.pending.borrow(), self.lag_ms.borrow());
            let owned = self.owned.borrow();
            let lag: u64 = owned.keys().map(|&p| pending[p as usize]).sum();
            let age = owned.keys().map(|&p| ages[p as usize]).max();
            (lag, age.unwrap_or(0))
        };
        let c = &self.shared.counters;
        c.lag_messages
            .store(lag, std::sync::atomic::Ordering::Relaxed);
        c.lag_ms.store(lag_ms, std::sync::atomic::Ordering::Relaxed);
        // Read the view, balance, publish the map.
        let Ok(Ok((live, mut owners, warm))) = tokio::time::timeout(budget * 2, self.view()).await
        else {
            log::warn!("cluster: could not read the leases; keeping the last owner map");
            return;
        };
        if tokio::time::timeout(budget * 2, self.balance(&live, &mut owners, &warm))
            .await
            .is_err()
        {
            log::warn!("cluster: balancing the partitions timed out");
        }
        c.owned.store(
            self.owned.borrow().len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.publish_map(&live, &owners);
    }

    /// Live nodes (id → address) and each partition's lease (owner id,
    /// revision).
    #[allow(clippy::type_complexity)]
    async fn view(
        &self,
    ) -> Result<(BTreeMap<String, String>, Vec<Option<(String, u64)>>, Warm), String> {
        let mut live = BTreeMap::new();
        let mut warm = Warm::new();
        let mut keys = self
            .nodes
            .keys()
            .await
            .map_err(|e| nats_err("list nodes", e))?;
        let mut ids = Vec::new();
        while let Some(k) = keys.next().await {
            ids.push(k.map_err(|e| nats_err("list nodes", e))?);
        }
        for id in ids {
            if let Ok(Some(v)) = self.nodes.get(&id).await {
                let j = serde_json::from_slice::<serde_json::Value>(&v).unwrap_or_default();
                let addr = j["addr"].as_str().map(String::from).unwrap_or_default();
                for p in j["warm"].as_array().into_iter().flatten() {
                    if let Some(p) = p.as_u64().and_then(|p| u32::try_from(p).ok()) {
                        warm.entry(p).or_default().push(id.clone());
                    }
                }
                live.insert(id, addr);
            }
        }
        let mut owners = Vec::with_capacity(self.cfg.partitions as usize);
        for p in 0..self.cfg.partitions {
            let e = self
                .leases
                .entry(lease_key(p))
                .await
                .map_err(|e| nats_err("read a lease", e))?;
            owners.push(e.and_then(|e| {
                (e.operation == kv::Operation::Put && !e.value.is_empty())
                    .then(|| (String::from_utf8_lossy(&e.value).into_owned(), e.revision))
            }));
        }
        Ok((live, owners, warm))
    }

    /// Gives up partitions above this node's share, takes free ones below
    /// it (and reclaims leases a previous run of this node still holds).
    /// A partition left without an owner for two rounds (its owner died
    /// and the nodes at their share did not take it) is taken even above
    /// the share; the next rounds even the shares out again.
    ///
    /// A hand-over between live nodes is warm: a node below its share
    /// applies the partitions the nodes above theirs will give up (their
    /// highest) ahead of owning them, says so in its heartbeat once caught
    /// up, and a node gives a partition up only when a live node is warm
    /// for it; so the new owner answers within a round of the release,
    /// not after replaying the partition's whole log.
    async fn balance(
        self: &Rc<Self>,
        live: &BTreeMap<String, String>,
        owners: &mut [Option<(String, u64)>],
        warm: &Warm,
    ) {
        let parts = self.cfg.partitions;
        let nodes = live.len().max(1) as u32;
        let share = parts.div_ceil(nodes) as usize;
        let me = self.cfg.node_id.as_str();
        if !live.contains_key(me) {
            // Not heartbeating yet (no listener address): take nothing.
            return;
        }
        let now = Instant::now();
        {
            let mut f = self.free_since.borrow_mut();
            for (p, o) in owners.iter().enumerate() {
                if o.is_none() {
                    f.entry(p as u32).or_insert(now);
                } else {
                    f.remove(&(p as u32));
                }
            }
        }
        let stale = |p: u32| {
            self.free_since
                .borrow()
                .get(&p)
                .is_some_and(|t| now.duration_since(*t) >= self.cfg.lease * 2 / 5)
        };
        let have = self.owned.borrow().len();
        let orphans = (0..parts).any(|p| owners[p as usize].is_none() && stale(p));
        let warm_elsewhere = |p: u32| {
            warm.get(&p)
                .is_some_and(|v| v.iter().any(|n| n != me && live.contains_key(n)))
        };
        if have > share && !orphans {
            let give: Vec<u32> = self
                .owned
                .borrow()
                .keys()
                .rev()
                .take(have - share)
                .copied()
                .collect();
            for p in give {
                if warm_elsewhere(p) {
                    self.release(p).await;
                    owners[p as usize] = None;
                }
            }
            self.warm_up(&[]);
            return;
        }
        // Start at a node-specific offset so nodes starting together
        // mostly try different partitions.
        let start = crate::runtime::router::tag_hash(
            me.bytes()
                .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b))),
        ) % parts;
        for i in 0..parts {
            let p = (start + i) % parts;
            if self.owned.borrow().len() >= share && !(owners[p as usize].is_none() && stale(p)) {
                continue;
            }
            if self.owned.borrow().contains_key(&p) {
                continue;
            }
            // A free partition another node is warm for is left to it.
            if owners[p as usize].is_none()
                && !stale(p)
                && warm_elsewhere(p)
                && !self.warm.borrow().contains(&p)
            {
                continue;
            }
            let got = match &owners[p as usize] {
                None => self
                    .leases
                    .create(lease_key(p), me.to_string().into())
                    .await
                    .ok(),
                Some((o, rev)) if o == me => self
                    .leases
                    .update(lease_key(p), me.to_string().into(), *rev)
                    .await
                    .ok(),
                Some(_) => None,
            };
            if let Some(rev) = got {
                owners[p as usize] = Some((me.to_string(), rev));
                self.own(p, rev);
            }
        }
        // Below the share with nothing free: warm what the nodes above
        // theirs will give up (each gives its highest partitions).
        let have = self.owned.borrow().len();
        let mut want = Vec::new();
        if have < share {
            let mut by_owner: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
            for (p, o) in owners.iter().enumerate() {
                if let Some((id, _)) = o {
                    if id != me && live.contains_key(id) {
                        by_owner.entry(id).or_default().push(p as u32);
                    }
                }
            }
            for ps in by_owner.values() {
                want.extend(ps.iter().rev().take(ps.len().saturating_sub(share)));
            }
            want.truncate(share - have);
        }
        self.warm_up(&want);
    }

    /// Applies exactly the partitions `want` ahead of owning them: starts
    /// the missing ones, stops the others.
    fn warm_up(self: &Rc<Self>, want: &[u32]) {
        let stale: Vec<u32> = self
            .warming
            .borrow()
            .keys()
            .filter(|p| !want.contains(p))
            .copied()
            .collect();
        for p in stale {
            self.stop_warming(p);
        }
        for &p in want {
            if self.warming.borrow().contains_key(&p) || self.owned.borrow().contains_key(&p) {
                continue;
            }
            let stop = Rc::new(Cell::new(false));
            let task =
                tokio::task::spawn_local(apply_partition(Rc::clone(self), p, 0, Rc::clone(&stop)));
            self.warming.borrow_mut().insert(p, Shadow { stop, task });
            log::info!("cluster: warming partition {p} ahead of its hand-over");
        }
    }

    fn stop_warming(&self, p: u32) {
        if let Some(w) = self.warming.borrow_mut().remove(&p) {
            w.stop.set(true);
            w.task.abort();
        }
        self.warm.borrow_mut().remove(&p);
    }

    fn own(self: &Rc<Self>, p: u32, revision: u64) {
        self.stop_warming(p);
        self.shared.set_caught_up(p, false);
        let stop = Rc::new(Cell::new(false));
        let task = tokio::task::spawn_local(apply_partition(
            Rc::clone(self),
            p,
            revision,
            Rc::clone(&stop),
        ));
        self.owned.borrow_mut().insert(
            p,
            Owned {
                revision,
                last_ok: Instant::now(),
                stop,
                task,
            },
        );
        self.shared
            .counters
            .takeovers
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        log::info!("cluster: took partition {p} (lease revision {revision})");
    }

    /// Stops applying `p` at once (its lease is gone or going).
    fn lose(&self, p: u32) {
        if let Some(o) = self.owned.borrow_mut().remove(&p) {
            // The data applied so far stays answerable here until the
            // next owner map (this node's view of NATS may be what
            // failed): seconds stale rather than refused.
            o.stop.set(true);
            o.task.abort();
            self.shared
                .counters
                .leases_lost
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Stops applying `p`, then deletes its lease so another node can
    /// take it at once.
    async fn release(&self, p: u32) {
        let Some(o) = self.owned.borrow_mut().remove(&p) else {
            return;
        };
        self.shared.set_caught_up(p, false);
        o.stop.set(true);
        o.task.abort();
        let _ = o.task.await;
        if let Err(e) = self.leases.delete(lease_key(p)).await {
            log::warn!("cluster: release partition {p}: {e} (it expires instead)");
        }
        self.shared
            .counters
            .releases
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        log::info!("cluster: released partition {p}");
    }

    fn publish_map(&self, live: &BTreeMap<String, String>, owners: &[Option<(String, u64)>]) {
        let mut nodes: Vec<NodeInfo> = live
            .iter()
            .map(|(id, addr)| NodeInfo {
                id: id.clone(),
                addr: addr.clone(),
            })
            .collect();
        for (o, _) in owners.iter().flatten() {
            if !nodes.iter().any(|n| &n.id == o) {
                nodes.push(NodeInfo {
                    id: o.clone(),
                    addr: String::new(),
                });
            }
        }
        let index = |id: &str| nodes.iter().position(|n| n.id == id).map(|i| i as u32);
        let me = index(&self.cfg.node_id).unwrap_or(u32::MAX);
        let owner = owners
            .iter()
            .enumerate()
            .map(|(p, o)| {
                // This node's own partitions are the ones it applies.
                if self.owned.borrow().contains_key(&(p as u32)) {
                    return Some(me);
                }
                match o {
                    Some((id, _)) if id != &self.cfg.node_id => index(id),
                    _ => None,
                }
            })
            .collect();
        self.shared.set_map(OwnerMap { me, owner, nodes });
    }

    /// At a clean stop: stop applying, checkpoint, delete the leases and
    /// the heartbeat so the other nodes take the partitions at once.
    /// The network half is bounded by [`HAND_BACK_WAIT`]: with NATS
    /// unreachable the leases simply expire.
    async fn hand_back(self: &Rc<Self>) {
        let parts: Vec<u32> = self.owned.borrow().keys().copied().collect();
        let stopped: Vec<(u32, Owned)> = parts
            .iter()
            .filter_map(|p| self.owned.borrow_mut().remove(p).map(|o| (*p, o)))
            .collect();
        let warming: Vec<u32> = self.warming.borrow().keys().copied().collect();
        for p in warming {
            self.stop_warming(p);
        }
        for (p, o) in &stopped {
            self.shared.set_caught_up(*p, false);
            o.stop.set(true);
            o.task.abort();
        }
        self.shared.set_map(OwnerMap::default());
        write_checkpoint(&self.cfg.dir, &self.applied.borrow());
        let network = async {
            for (p, _) in &stopped {
                if self.leases.delete(lease_key(*p)).await.is_ok() {
                    self.shared
                        .counters
                        .releases
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
            let _ = self.nodes.delete(&self.cfg.node_id).await;
            let _ = self.client.flush().await;
        };
        if tokio::time::timeout(HAND_BACK_WAIT, network).await.is_err() {
            log::warn!(
                "cluster: NATS did not take the hand-back within {} s; the leases expire instead",
                HAND_BACK_WAIT.as_secs()
            );
        }
    }

    /// Partition `p` is applied to its stream's end: answerable here if
    /// owned (`revision` > 0), warm for a hand-over if warming (0).
    fn mark_caught_up(&self, p: u32, revision: u64) {
        if revision == 0 {
            self.warm.borrow_mut().insert(p);
        } else {
            self.shared.set_caught_up(p, true);
        }
    }

    fn log_apply(&self, p: u32, first: u64, last: u64, rev: u64, t0: u64, t1: u64) {
        if rev == 0 {
            // Warming: this node does not own p (it answers nothing for it).
            return;
        }
        if let Some(f) = &self.apply_log {
            // One write a line: nodes may share the file (O_APPEND).
            let line = format!("{} {p} {first} {last} {rev} {t0} {t1}\n", self.cfg.node_id);
            let _ = f.borrow_mut().write_all(line.as_bytes());
        }
    }
}

fn unavailable(p: u32, e: impl std::fmt::Display) -> Failure {
    Failure::Unavailable {
        reason: format!("partition {p}: the replicated log refused the write: {e}"),
    }
}

/// Applies partition `p` from this node's applied sequence + 1 until
/// `stop`: fetch, hand to shard 0, wait until durable, advance.
async fn apply_partition(node: Rc<Node>, p: u32, revision: u64, stop: Rc<Cell<bool>>) {
    let name = format!("{}-p{p}", node.cfg.node_id);
    while !stop.get() {
        let from = node.applied.borrow()[p as usize] + 1;
        let cfg = consumer::pull::Config {
            durable_name: Some(name.clone()),
            deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                start_sequence: from,
            },
            // The last message of each batch is acknowledged once the
            // batch is durable here: the acknowledgement floor is the
            // applied sequence other nodes read for consistency=all.
            // (The checkpoint stays the position this node resumes
            // from; a redelivery is skipped by sequence.)
            ack_policy: consumer::AckPolicy::All,
            ack_wait: Duration::from_secs(3600),
            max_ack_pending: -1,
            inactive_threshold: Duration::from_secs(3600),
            ..Default::default()
        };
        let what = format!("partition {p}");
        let Some(c) = pull_consumer(&node.js, &stream_name(p), cfg, &what).await else {
            continue;
        };
        // Every write acknowledged before now is at or below the stream's
        // last sequence now: applied up to there, the partition is whole.
        let target = match node.js.get_stream(stream_name(p)).await {
            Ok(mut s) => s.info().await.map_or(u64::MAX, |i| i.state.last_sequence),
            Err(_) => u64::MAX,
        };
        if let Err(e) = apply_from(&node, p, revision, &stop, &c, target).await {
            log::warn!("cluster: partition {p}: {e}; resuming from the checkpoint");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn apply_from(
    node: &Rc<Node>,
    p: u32,
    revision: u64,
    stop: &Cell<bool>,
    c: &consumer::Consumer<consumer::pull::Config>,
    target: u64,
) -> Result<(), String> {
    while !stop.get() {
        let mut batch = fetch(c).await?;
        let mut points = Vec::new();
        let (mut first, mut last) = (0u64, 0u64);
        let mut behind = 0u64;
        let mut tail = None;
        let done = node.applied.borrow()[p as usize];
        while let Some(m) = batch.next().await {
            let m = m.map_err(|e| nats_err("fetch", e))?;
            let info = m.info().map_err(|e| nats_err("message info", e))?;
            let seq = info.stream_sequence;
            if seq <= done {
                continue;
            }
            behind = info.pending;
            node.pending.borrow_mut()[p as usize] = info.pending;
            node.lag_ms.borrow_mut()[p as usize] = if info.pending == 0 {
                0
            } else {
                let now = crate::runtime::admission::now_us() as i128 * 1000;
                ((now - info.published.unix_timestamp_nanos()) / 1_000_000).max(0) as u64
            };
            if first == 0 {
                first = seq;
            }
            last = seq;
            if let Err(e) = wire::decode(&m.payload, &mut points) {
                node.shared.skipped(&format!("partition {p}"), seq, &e);
            }
            tail = Some(m);
        }
        if last == 0 {
            // A fetch that waited and found nothing: at the stream's end.
            if !stop.get() {
                node.mark_caught_up(p, revision);
            }
            continue;
        }
        if stop.get() {
            return Ok(());
        }
        let t0 = crate::runtime::admission::now_us() as u64;
        if !points.is_empty() {
            let (tx, rx) = oneshot::channel();
            let b = ApplyBatch {
                partition: p,
                points,
                reply: tx,
            };
            node.apply
                .send(Apply::Points(b))
                .await
                .map_err(|_| "the shards are gone".to_string())?;
            match rx.await {
                Ok(Ok(_)) => {}
                Ok(Err(f)) => return Err(format!("apply messages {first}..={last}: {f}")),
                Err(_) => return Err("the shards dropped a batch".into()),
            }
        }
        let t1 = crate::runtime::admission::now_us() as u64;
        node.applied.borrow_mut()[p as usize] = last;
        node.dirty.set(true);
        if let Some(m) = tail {
            if let Err(e) = m.ack().await {
                log::warn!("cluster: partition {p}: acknowledge message {last}: {e}");
            }
        }
        // Caught up: an owner once it reached the stream's end as of its
        // start (or nothing is pending), so no acknowledged write before
        // that is missing; a warming node within one fetch of the end.
        let near = if revision == 0 {
            behind <= FETCH_MESSAGES as u64
        } else {
            last >= target || behind == 0
        };
        if near && !stop.get() {
            node.mark_caught_up(p, revision);
        }
        node.log_apply(p, first, last, revision, t0, t1);
    }
    Ok(())
}

/// Hands every publish request to its own task, so writes pipeline.
async fn publisher(node: Rc<Node>, mut rx: mpsc::UnboundedReceiver<ToLog>) {
    while let Some(m) = rx.recv().await {
        let n = Rc::clone(&node);
        match m {
            ToLog::Publish {
                points,
                applied,
                reply,
            } => {
                tokio::task::spawn_local(async move {
                    let _ = reply.send(n.publish(points, applied).await);
                });
            }
            ToLog::Propose { keys, reply } => {
                tokio::task::spawn_local(async move {
                    let _ = reply.send(n.catalog.propose(&n.js, keys).await);
                });
            }
        }
    }
}

/// Writes the applied sequences at most once a second.
async fn checkpointer(node: Rc<Node>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if node.dirty.replace(false) {
            write_checkpoint(&node.cfg.dir, &node.applied.borrow());
        }
    }
}

const CHECKPOINT: &str = "applied";
const CHECKPOINT_MAGIC: &str = "xtdb-cluster-applied 1";

/// The applied sequence per partition; a missing or unreadable file is
/// all zeros (the log is applied again from its start: slower, never
/// wrong, since applying a suffix of the log again in order changes
/// nothing).
pub fn read_checkpoint(dir: &Path, partitions: u32) -> Vec<u64> {
    let mut out = vec![0u64; partitions as usize];
    let path = dir.join(CHECKPOINT);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return out;
    };
    let mut lines = text.lines();
    if lines.next() != Some(CHECKPOINT_MAGIC) {
        log::warn!(
            "cluster: {} is not a checkpoint; applying the log from its start",
            path.display()
        );
        return out;
    }
    for l in lines {
        let mut it = l.split(' ');
        if let (Some(Ok(p)), Some(Ok(s))) = (
            it.next().map(str::parse::<usize>),
            it.next().map(str::parse::<u64>),
        ) {
            if let Some(slot) = out.get_mut(p) {
                *slot = s;
            }
        }
    }
    out
}

/// Writes the checkpoint: a temporary file, synced, renamed over the old
/// one, directory synced.
pub fn write_checkpoint(dir: &Path, applied: &[u64]) {
    let res = (|| -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let tmp: PathBuf = dir.join(format!("{CHECKPOINT}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        let mut s = String::from(CHECKPOINT_MAGIC);
        s.push('\n');
        for (p, a) in applied.iter().enumerate() {
            s.push_str(&format!("{p} {a}\n"));
        }
        f.write_all(s.as_bytes())?;
        f.sync_data()?;
        std::fs::rename(&tmp, dir.join(CHECKPOINT))?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if let Err(e) = res {
        log::error!("cluster: write the checkpoint in {}: {e}", dir.display());
    }
}

/// How long a starting node retries creating the streams and buckets.
const SETUP_WAIT: Duration = Duration::from_secs(30);

enum Setup {
    /// This node must not join (another partition count).
    Refused(String),
    /// NATS is not ready (no JetStream leader yet): try again.
    Retry(String),
}

/// Creates what is missing (config, buckets, streams) and opens the
/// buckets.
async fn setup(
    js: &jetstream::Context,
    cfg: &ClusterConfig,
) -> Result<(kv::Store, kv::Store), Setup> {
    check_config(js, cfg).await?;
    let leases = bucket(js, LEASE_BUCKET, cfg.lease, cfg.replicas)
        .await
        .map_err(Setup::Retry)?;
    let nodes = bucket(js, NODE_BUCKET, cfg.lease, cfg.replicas)
        .await
        .map_err(Setup::Retry)?;
    js.get_or_create_stream(stream::Config {
        name: CATALOG_STREAM.into(),
        subjects: vec![CATALOG_SUBJECT.into()],
        num_replicas: cfg.replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| Setup::Retry(nats_err("create the catalog stream", e)))?;
    for p in 0..cfg.partitions {
        js.get_or_create_stream(stream::Config {
            name: stream_name(p),
            subjects: vec![subject(p)],
            num_replicas: cfg.replicas,
            max_age: cfg.log_retention,
            storage: stream::StorageType::File,
            discard: stream::DiscardPolicy::Old,
            ..Default::default()
        })
        .await
        .map_err(|e| Setup::Retry(nats_err(&format!("create stream {}", stream_name(p)), e)))?;
    }
    Ok((leases, nodes))
}

/// Opens (creating if missing) a KV bucket whose entries live `ttl`: the
/// stream is created by hand, since async-nats's bucket creation reads an
/// account-info answer that nats-server 2.9 words differently.
async fn bucket(
    js: &jetstream::Context,
    name: &str,
    ttl: Duration,
    replicas: usize,
) -> Result<kv::Store, String> {
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age: ttl,
        allow_rollup: true,
        deny_delete: true,
        // Reads go to the stream's leader: a direct get from a replica
        // that is restarting answered "no stream found" in cluster.sh.
        allow_direct: false,
        discard: stream::DiscardPolicy::New,
        num_replicas: replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| nats_err(&format!("create KV bucket {name}"), e))?;
    js.get_key_value(name)
        .await
        .map_err(|e| nats_err(&format!("open KV bucket {name}"), e))
}

/// Records the cluster's partition count and replicas the first time, and
/// refuses a node configured otherwise.
async fn check_config(js: &jetstream::Context, cfg: &ClusterConfig) -> Result<(), Setup> {
    js.get_or_create_stream(stream::Config {
        name: format!("KV_{CONFIG_BUCKET}"),
        subjects: vec![format!("$KV.{CONFIG_BUCKET}.>")],
        max_messages_per_subject: 1,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: cfg.replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .map_err(|e| Setup::Retry(nats_err("create the cluster's config bucket", e)))?;
    let kv = js
        .get_key_value(CONFIG_BUCKET)
        .await
        .map_err(|e| Setup::Retry(nats_err("open the cluster's config bucket", e)))?;
    let want = format!("partitions={}", cfg.partitions);
    let _ = kv.create("config", want.clone().into()).await;
    let got = kv
        .get("config")
        .await
        .map_err(|e| Setup::Retry(nats_err("read the cluster's config", e)))?
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    if got != want {
        return Err(Setup::Refused(format!(
            "the cluster was created with {got}, this node has --cluster-partitions {}",
            cfg.partitions
        )));
    }
    Ok(())
}
