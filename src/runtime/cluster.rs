//! The seam between [`dispatch`](crate::runtime::dispatch) and a cluster
//! (`xtdb serve --cluster`): what dispatch asks of the cluster layer,
//! [`ClusterRoute`] — publish a write to the replicated log, say where a
//! tag's partition is owned now, run a command on another node, and give
//! new series keys ids in the cluster's shared catalog. The
//! cluster layer (`crate::cluster`, above the edges) implements it and
//! hands each shard's [`Router`](crate::runtime::router::Router) one; a
//! single-node server has none and dispatch behaves as it always did.
//! Owns the vocabulary only; never talks to NATS or to sockets.

use std::future::Future;
use std::pin::Pin;

use crate::runtime::command::{Command, Reply};
use crate::Point;

/// A future a [`ClusterRoute`] answers with (polled on the asking shard).
pub type RouteFuture = Pin<Box<dyn Future<Output = Reply>>>;

/// Where a tag's partition is owned, as this node knows now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Place {
    /// By this node: its shards answer.
    Here,
    /// By another node (its index in the cluster's node table).
    Node(u32),
    /// By nobody (no lease is held): a query for it is refused.
    Nobody(u32),
    /// By this node, which took it over and is still applying the log
    /// written before: a query for it is refused until it has caught up
    /// (its answer could miss acknowledged points).
    Replaying(u32),
}

/// What dispatch needs from a cluster.
pub trait ClusterRoute {
    /// Stores a checked write in the replicated log; answers `Written(n)`
    /// once every partition's piece is stored on a quorum, and with
    /// `applied` only once every piece's owner has also applied it
    /// (read-your-writes).
    fn publish(&self, points: Vec<Point>, applied: bool) -> RouteFuture;
    /// Where `tag`'s partition is owned now.
    fn place(&self, tag: u32) -> Place;
    /// How long a query keeps retrying while a partition it reads has no
    /// owner or its owner cannot be reached (a takeover takes up to about
    /// two leases).
    fn patience(&self) -> std::time::Duration;
    /// Runs a query command on `node`'s shards (its `--cluster-listen`).
    fn call(&self, node: u32, cmd: Command) -> RouteFuture;
    /// Gives new series keys ids in the cluster's catalog; answers once
    /// this node's catalog (shard 0's store) knows them.
    fn propose(&self, keys: Vec<String>) -> RouteFuture;
}

/// Names of the cluster counters and gauges a node's shard 0 reports (in
/// its [`Counters`](crate::runtime::report::Counters), copied from the
/// NATS thread once a second), with their `/metrics` help text.
pub mod counter {
    /// Counters (they only grow).
    pub const COUNTERS: [(&str, &str); 7] = [
        (
            "cluster_query_retries",
            "queries asked again while a partition had no reachable owner",
        ),
        (
            "cluster_applied_points",
            "log points applied to this node's shards",
        ),
        (
            "cluster_apply_failures",
            "log batches whose apply failed (retried from the checkpoint)",
        ),
        (
            "cluster_takeovers",
            "partitions this node took (lease created or reclaimed)",
        ),
        ("cluster_releases", "partitions this node handed back"),
        (
            "cluster_leases_lost",
            "leases this node lost (renewal refused or too late)",
        ),
        (
            "cluster_bad_messages",
            "log messages skipped as undecodable",
        ),
    ];
    /// Gauges (levels now).
    pub const GAUGES: [(&str, &str); 4] = [
        (
            "cluster_lag_messages",
            "messages behind the owned partitions' stream ends",
        ),
        (
            "cluster_lag_ms",
            "age of the oldest message not yet applied, over owned partitions, ms",
        ),
        ("cluster_owned_partitions", "partitions this node owns now"),
        (
            "cluster_catalog_keys",
            "series keys of the cluster's catalog applied here",
        ),
    ];
}
