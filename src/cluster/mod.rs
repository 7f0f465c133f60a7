//! Cluster mode (`xtdb serve --cluster`): xtdb nodes on a NATS JetStream
//! cluster, which is the replicated, partitioned ingest log (see the
//! README's "Cluster mode"). A node publishes the writes it takes to the
//! partitions' streams and acknowledges once JetStream has stored them on
//! a quorum; it applies the partitions its leases give it through its own
//! shards, and answers queries by asking each partition's owner.
//!
//! - [`wire`]: the byte layout of one log message (pure);
//! - [`js`]: JetStream plumbing (consumers, fetches, error wording);
//! - [`catalog`]: the cluster's one series catalog, a stream every node
//!   applies in order into its own catalog store;
//! - [`log`]: the node's NATS thread (tokio, one thread beside the glommio
//!   shards): publishing, leases and balancing, applying, checkpoints;
//! - [`route`]: the shards' side, [`ClusterRoute`] for dispatch: hands
//!   writes to the NATS thread, keeps the owner map, asks other nodes over
//!   the native protocol, and runs the NATS thread's apply batches;
//! - [`status`]: `xtdb cluster status`.
//!
//! Owns the cluster's state and its talk with NATS; never touches storage
//! but through dispatch, and never blocks a shard (every exchange with the
//! NATS thread is a channel message).
//!
//! [`ClusterRoute`]: crate::runtime::cluster::ClusterRoute

pub mod catalog;
pub mod js;
pub mod log;
pub mod route;
pub mod status;
pub mod wire;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::runtime::command::Reply;
use crate::runtime::router::tag_hash;
use crate::Point;

/// Everything a cluster node needs beyond the single-node server.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// NATS servers (`nats://host:port`), any of the cluster's.
    pub urls: Vec<String>,
    /// This node's name: unique, `[A-Za-z0-9_-]`, at most 64 bytes.
    pub node_id: String,
    /// The native-protocol address other nodes ask this node's shards on.
    pub listen: String,
    /// Partitions of the tag space (fixed when the cluster is created).
    pub partitions: u32,
    /// Replicas of every stream and bucket (JetStream's R).
    pub replicas: usize,
    /// How long a lease lives without renewal.
    pub lease: Duration,
    /// How long the log keeps messages.
    pub log_retention: Duration,
    /// Token this node presents to the others (their auth on).
    pub token: Option<String>,
    /// Where the applied sequences are checkpointed (`DATA/cluster`).
    pub dir: PathBuf,
}

impl ClusterConfig {
    /// Defaults for `urls` and `node_id`: 16 partitions, 3 replicas, 5 s
    /// leases, 7 days of log.
    pub fn new(urls: Vec<String>, node_id: String, listen: String, dir: PathBuf) -> Self {
        ClusterConfig {
            urls,
            node_id,
            listen,
            partitions: 16,
            replicas: 3,
            lease: Duration::from_secs(5),
            log_retention: Duration::from_secs(7 * 86_400),
            token: None,
            dir,
        }
    }

    /// Refuses a configuration that cannot work, naming the flag.
    pub fn check(&self) -> Result<(), String> {
        if self.urls.is_empty() {
            return Err("--cluster needs at least one nats:// URL".into());
        }
        let id_ok = !self.node_id.is_empty()
            && self.node_id.len() <= 64
            && self
                .node_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !id_ok {
            return Err(format!(
                "--node-id {:?}: 1 to 64 characters of A-Z, a-z, 0-9, '-' and '_'",
                self.node_id
            ));
        }
        if !(1..=1024).contains(&self.partitions) {
            return Err(format!(
                "--cluster-partitions {}: 1 to 1024",
                self.partitions
            ));
        }
        if !(1..=5).contains(&self.replicas) {
            return Err(format!(
                "--cluster-replicas {}: 1 to 5 (JetStream's limit)",
                self.replicas
            ));
        }
        if self.lease < Duration::from_secs(1) {
            return Err("--cluster-lease: at least 1 s".into());
        }
        Ok(())
    }
}

/// The partition of `tag` among `partitions`: the routing hash that also
/// picks a shard inside a node, so when `partitions` is a multiple of the
/// shard count a partition lives on one shard of its owner. Fixed forever.
pub fn partition(tag: u32, partitions: u32) -> u32 {
    tag_hash(tag) % partitions.max(1)
}

/// One node as the others know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// Its `--node-id`.
    pub id: String,
    /// Its `--cluster-listen` address.
    pub addr: String,
}

/// Who owns each partition, as this node last read the leases.
#[derive(Clone, Debug, Default)]
pub struct OwnerMap {
    /// This node's index in `nodes`.
    pub me: u32,
    /// Per partition, the owner's index in `nodes` (`None`: no lease).
    pub owner: Vec<Option<u32>>,
    /// The nodes named by a lease or a heartbeat.
    pub nodes: Vec<NodeInfo>,
}

/// Counters of the NATS thread, read by shard 0 into its report.
#[derive(Debug, Default)]
pub struct Counters {
    /// Partitions this node took (a lease created or reclaimed).
    pub takeovers: AtomicU64,
    /// Partitions it gave up (share or shutdown).
    pub releases: AtomicU64,
    /// Leases it lost (a renewal refused or too late).
    pub leases_lost: AtomicU64,
    /// Log messages it could not decode (skipped).
    pub bad_messages: AtomicU64,
    /// Messages behind the streams' ends, summed over owned partitions.
    pub lag_messages: AtomicU64,
    /// The oldest pending message's age over owned partitions, ms (0 when
    /// caught up).
    pub lag_ms: AtomicU64,
    /// Partitions owned now.
    pub owned: AtomicU64,
    /// Distinct series keys of the cluster's catalog applied here.
    pub catalog_keys: AtomicU64,
}

/// What the shards ask of the NATS thread.
pub enum ToLog {
    /// Store a checked write in the log; answered `Written(n)` or
    /// `Unavailable`.
    Publish {
        /// The write's points.
        points: Vec<Point>,
        /// Answer only once the owners have applied it (read-your-writes).
        applied: bool,
        /// Where the answer goes.
        reply: oneshot::Sender<Reply>,
    },
    /// Give these series keys ids: publish them on the catalog stream
    /// and answer once this node's catalog has applied them
    /// (`Written(0)`), or `Unavailable`.
    Propose {
        /// The new keys.
        keys: Vec<String>,
        /// Where the answer goes.
        reply: oneshot::Sender<Reply>,
    },
}

/// What the NATS thread hands shard 0.
pub enum Apply {
    /// A partition's points.
    Points(ApplyBatch),
    /// Catalog keys, in stream order, for the store to give ids (create).
    Keys(ApplyKeys),
}

/// A run of the catalog stream for shard 0's catalog store.
pub struct ApplyKeys {
    /// Series keys in stream order (repeats included).
    pub keys: Vec<String>,
    /// Answered with `Ids` (one per key) once they are durable.
    pub reply: oneshot::Sender<Reply>,
}

/// A batch of one partition's log for shard 0 to apply.
pub struct ApplyBatch {
    /// The partition.
    pub partition: u32,
    /// Its points, in log order.
    pub points: Vec<Point>,
    /// Answered once the points are durable in this node's shards.
    pub reply: oneshot::Sender<Reply>,
}

/// State shared between the NATS thread and the shards.
#[derive(Debug, Default)]
pub struct Shared {
    gen: AtomicU64,
    map: Mutex<Arc<OwnerMap>>,
    addr: Mutex<Option<String>>,
    /// One bit per partition (up to 1,024): owned here and applied up to
    /// the stream's end at least once since it was taken.
    caught_up: [AtomicU64; 16],
    /// The catalog copy holds every key the stream had when it started.
    catalog_ready: std::sync::atomic::AtomicBool,
    /// The NATS thread's counters.
    pub counters: Counters,
}

impl Shared {
    /// Publishes a new owner map.
    pub fn set_map(&self, m: OwnerMap) {
        *self.map.lock().unwrap_or_else(|p| p.into_inner()) = Arc::new(m);
        self.gen.fetch_add(1, Ordering::Release);
    }

    /// The map's generation (bumped by every [`Shared::set_map`]).
    pub fn generation(&self) -> u64 {
        self.gen.load(Ordering::Acquire)
    }

    /// The current owner map.
    pub fn map(&self) -> Arc<OwnerMap> {
        Arc::clone(&self.map.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Counts and logs a log message that does not decode (skipped).
    pub fn skipped(&self, stream: &str, seq: u64, e: &str) {
        self.counters.bad_messages.fetch_add(1, Ordering::Relaxed);
        ::log::error!("cluster: {stream} message {seq} skipped: {e}");
    }

    /// Marks the catalog copy caught up with the stream as of start.
    pub fn set_catalog_ready(&self) {
        self.catalog_ready.store(true, Ordering::Release);
    }

    /// Whether the catalog copy has caught up (see
    /// [`Shared::set_catalog_ready`]).
    pub fn catalog_ready(&self) -> bool {
        self.catalog_ready.load(Ordering::Acquire)
    }

    /// Marks partition `p` caught up (or not).
    pub fn set_caught_up(&self, p: u32, yes: bool) {
        let (w, bit) = ((p / 64) as usize % 16, 1u64 << (p % 64));
        if yes {
            self.caught_up[w].fetch_or(bit, Ordering::Release);
        } else {
            self.caught_up[w].fetch_and(!bit, Ordering::Release);
        }
    }

    /// Whether partition `p` is owned here and caught up.
    pub fn caught_up(&self, p: u32) -> bool {
        let (w, bit) = ((p / 64) as usize % 16, 1u64 << (p % 64));
        self.caught_up[w].load(Ordering::Acquire) & bit != 0
    }

    /// Records the cluster listener's bound address (shard 0, at start).
    pub fn set_addr(&self, a: String) {
        *self.addr.lock().unwrap_or_else(|p| p.into_inner()) = Some(a);
    }

    /// The cluster listener's address, once bound.
    pub fn addr(&self) -> Option<String> {
        self.addr.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_fixed_and_follow_shards() {
        let got: Vec<u32> = [0u32, 1, 42, u32::MAX]
            .iter()
            .map(|&t| partition(t, 16))
            .collect();
        assert_eq!(
            got,
            vec![
                2462723854 % 16,
                920564995 % 16,
                3856264912 % 16,
                996586154 % 16
            ]
        );
        // With 16 partitions and 2 shards, a partition's tags are all on one shard.
        for t in 0..10_000u32 {
            assert_eq!(
                partition(t, 16) as usize % 2,
                crate::runtime::router::owner(t, 2)
            );
        }
    }

    #[test]
    fn bad_config_names_the_flag() {
        let mut c = ClusterConfig::new(
            vec!["nats://x:1".into()],
            "a b".into(),
            "x:1".into(),
            "/tmp".into(),
        );
        assert!(c.check().unwrap_err().contains("--node-id"));
        c.node_id = "hist-a".into();
        c.check().unwrap();
        c.replicas = 7;
        assert!(c.check().unwrap_err().contains("--cluster-replicas"));
    }
}
