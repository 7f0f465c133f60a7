//! The shards' side of cluster mode: [`Route`] is each shard's
//! [`ClusterRoute`] (writes handed to the NATS thread, the owner map kept
//! as a per-shard copy refreshed when its generation moves, queries for
//! other nodes sent over the native protocol on kept connections), and
//! [`run_apply`] runs on shard 0, writing the NATS thread's batches of the
//! log through dispatch's local write path. Never blocks: every exchange
//! with the NATS thread is a channel message.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::cluster::{partition, OwnerMap, Shared};
use crate::cluster::{Apply, ToLog};
use crate::net::client::{Client, ClientOptions};
use crate::net::error::ClientError;
use crate::net::protocol::code;
use crate::runtime::cluster::{ClusterRoute, Place, RouteFuture};
use crate::runtime::command::{AggQuery, Answer, Command, Failure};
use crate::runtime::dispatch;
use crate::runtime::router::Router;
use crate::Point;

/// Idle connections kept per other node and shard.
const POOL: usize = 4;

/// One shard's view of the cluster.
pub struct Route {
    shared: Arc<Shared>,
    to_log: mpsc::UnboundedSender<ToLog>,
    partitions: u32,
    map: RefCell<(u64, Arc<OwnerMap>)>,
    pool: Rc<RefCell<HashMap<String, Vec<Client>>>>,
    opts: ClientOptions,
    patience: std::time::Duration,
}

impl Route {
    /// A shard's route.
    pub fn new(
        shared: Arc<Shared>,
        to_log: mpsc::UnboundedSender<ToLog>,
        partitions: u32,
        token: Option<String>,
        patience: std::time::Duration,
    ) -> Route {
        let map = (shared.generation(), shared.map());
        Route {
            shared,
            to_log,
            partitions,
            map: RefCell::new(map),
            pool: Rc::default(),
            opts: ClientOptions { token, tls: None },
            patience,
        }
    }

    fn current(&self) -> Arc<OwnerMap> {
        let g = self.shared.generation();
        let mut m = self.map.borrow_mut();
        if m.0 != g {
            *m = (g, self.shared.map());
        }
        Arc::clone(&m.1)
    }
}

impl ClusterRoute for Route {
    fn publish(&self, points: Vec<Point>, applied: bool) -> RouteFuture {
        let (tx, rx) = oneshot::channel();
        let sent = self.to_log.send(ToLog::Publish {
            points,
            applied,
            reply: tx,
        });
        to_log_answer(sent.is_ok(), rx, "write")
    }

    fn propose(&self, keys: Vec<String>) -> RouteFuture {
        let (tx, rx) = oneshot::channel();
        let sent = self.to_log.send(ToLog::Propose { keys, reply: tx });
        to_log_answer(sent.is_ok(), rx, "new series keys")
    }

    fn patience(&self) -> std::time::Duration {
        self.patience
    }

    fn place(&self, tag: u32) -> Place {
        let p = partition(tag, self.partitions);
        let m = self.current();
        match m.owner.get(p as usize).copied().flatten() {
            Some(n) if n == m.me && self.shared.caught_up(p) => Place::Here,
            Some(n) if n == m.me => Place::Replaying(p),
            Some(n) => Place::Node(n),
            None => Place::Nobody(p),
        }
    }

    fn call(&self, node: u32, cmd: Command) -> RouteFuture {
        let m = self.current();
        let info = m.nodes.get(node as usize).cloned();
        let pool = Rc::clone(&self.pool);
        let opts = self.opts.clone();
        let patience = self.patience;
        Box::pin(async move {
            let Some(info) = info.filter(|i| !i.addr.is_empty()) else {
                return Err(Failure::Unavailable {
                    reason: format!("node {node} has no known address (no heartbeat)"),
                });
            };
            let idle = pool.borrow_mut().get_mut(&info.addr).and_then(Vec::pop);
            let mut client = match idle {
                Some(c) => c,
                None => Client::connect_with(&info.addr, &opts)
                    .await
                    .map_err(|e| remote_failure(&info.id, e))?,
            };
            // A node that stopped answering (stopped, or cut off without a
            // reset) must not hold the query for ever.
            // (The connection is dropped then: an answer may still come.)
            let answer =
                futures_lite::future::or(async { Some(ask(&mut client, cmd).await) }, async {
                    glommio::timer::sleep(patience).await;
                    None
                })
                .await;
            let Some(answer) = answer else {
                return Err(Failure::Unavailable {
                    reason: format!(
                        "node {}: no answer within {} ms",
                        info.id,
                        patience.as_millis()
                    ),
                });
            };
            match answer {
                Ok(a) => {
                    let mut p = pool.borrow_mut();
                    let v = p.entry(info.addr.clone()).or_default();
                    if v.len() < POOL {
                        v.push(client);
                    }
                    Ok(a)
                }
                Err(e) => {
                    let keep = !e.closes_connection();
                    if keep {
                        let mut p = pool.borrow_mut();
                        let v = p.entry(info.addr.clone()).or_default();
                        if v.len() < POOL {
                            v.push(client);
                        }
                    }
                    Err(remote_failure(&info.id, e))
                }
            }
        })
    }
}

/// The NATS thread's answer to a request `sent` to it.
fn to_log_answer(
    sent: bool,
    rx: oneshot::Receiver<crate::runtime::command::Reply>,
    what: &'static str,
) -> RouteFuture {
    Box::pin(async move {
        if !sent {
            return Err(Failure::Unavailable {
                reason: "the node's NATS thread has stopped".into(),
            });
        }
        rx.await.unwrap_or_else(|_| {
            Err(Failure::Unavailable {
                reason: format!("the node's NATS thread dropped the {what}"),
            })
        })
    })
}

/// Runs one query command on another node over `client`.
async fn ask(client: &mut Client, cmd: Command) -> Result<Answer, ClientError> {
    match cmd {
        // The client asks the owner for pieces and decodes them.
        Command::Range { tag, start, end } | Command::RangePieces { tag, start, end } => {
            client.range(tag, start, end).await.map(Answer::Points)
        }
        Command::CountBound { tag, start, end } => {
            client
                .count_bound(tag, start, end)
                .await
                .map(|(points, min_ts, max_ts)| Answer::Count {
                    points,
                    min_ts,
                    max_ts,
                })
        }
        Command::Latest(tags) => client.latest(&tags).await.map(Answer::Latest),
        Command::Aggregate {
            tags,
            query: q @ AggQuery::Partials { .. },
            good_only,
        } => client
            .aggregate_partials(&tags, &q, good_only)
            .await
            .map(Answer::Partials),
        Command::Aggregate {
            tags,
            query,
            good_only,
        } => client
            .aggregate(&tags, &query, good_only)
            .await
            .map(Answer::Rows),
        other => Err(ClientError::Remote {
            code: code::UNAVAILABLE,
            message: format!("{} is not answered across nodes yet", command_name(&other)),
        }),
    }
}

fn command_name(c: &Command) -> &'static str {
    match c {
        Command::Stats => "stats",
        _ => "this command",
    }
}

/// The failure a client error of another node becomes.
fn remote_failure(node: &str, e: ClientError) -> Failure {
    match e {
        ClientError::Remote { code: c, message } => match c {
            code::INVALID_INPUT | code::TOO_MANY | code::OUT_OF_WINDOW => {
                Failure::InvalidInput { reason: message }
            }
            _ => Failure::Unavailable {
                reason: format!("node {node}: {message}"),
            },
        },
        other => Failure::Unavailable {
            reason: format!("node {node}: {other}"),
        },
    }
}

/// Shard 0's task: applies the NATS thread's batches (each in its own
/// task, so partitions proceed side by side; one partition has one batch
/// in flight at a time) and counts them; catalog runs go to the catalog
/// store here (the NATS thread sends the next only after this one's
/// answer, so ids follow the stream's order).
pub async fn run_apply(router: Rc<Router>, mut rx: mpsc::Receiver<Apply>) {
    while let Some(a) = rx.recv().await {
        let r = Rc::clone(&router);
        let b = match a {
            Apply::Points(b) => b,
            Apply::Keys(k) => {
                glommio::spawn_local(async move {
                    let cmd = Command::Resolve {
                        keys: k.keys,
                        create: true,
                    };
                    let _ = k.reply.send(dispatch::execute_here(&r, cmd).await);
                })
                .detach();
                continue;
            }
        };
        glommio::spawn_local(async move {
            let n = b.points.len() as u64;
            let res = dispatch::apply(&r, b.points).await;
            if res.is_ok() {
                r.local().count("cluster_applied_points", n);
            } else {
                r.local().count("cluster_apply_failures", 1);
            }
            let _ = b.reply.send(res);
        })
        .detach();
    }
}

/// Shard 0's task: copies the NATS thread's counters and gauges into its
/// report once a second (names in [`crate::runtime::cluster::counter`]).
pub async fn run_counters(
    router: Rc<Router>,
    shared: Arc<Shared>,
    closing: crate::runtime::admission::Closing,
) {
    use std::sync::atomic::Ordering::Relaxed;
    let c = &shared.counters;
    let mut seen = [0u64; 4];
    while !closing.is_closed() {
        glommio::timer::sleep(std::time::Duration::from_secs(1)).await;
        let now = [
            c.takeovers.load(Relaxed),
            c.releases.load(Relaxed),
            c.leases_lost.load(Relaxed),
            c.bad_messages.load(Relaxed),
        ];
        let names = [
            "cluster_takeovers",
            "cluster_releases",
            "cluster_leases_lost",
            "cluster_bad_messages",
        ];
        let local = router.local();
        for i in 0..4 {
            if now[i] > seen[i] {
                local.count(names[i], now[i] - seen[i]);
            }
        }
        seen = now;
        local.set_gauge("cluster_lag_messages", c.lag_messages.load(Relaxed));
        local.set_gauge("cluster_lag_ms", c.lag_ms.load(Relaxed));
        local.set_gauge("cluster_owned_partitions", c.owned.load(Relaxed));
        local.set_gauge("cluster_catalog_keys", c.catalog_keys.load(Relaxed));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::NodeInfo;

    #[test]
    fn an_owned_partition_is_answered_here_only_once_caught_up() {
        let shared = Arc::new(Shared::default());
        let node = |id: &str| NodeInfo {
            id: id.into(),
            addr: format!("{id}:1"),
        };
        shared.set_map(OwnerMap {
            me: 0,
            owner: vec![Some(0), Some(1), None, Some(0)],
            nodes: vec![node("a"), node("b")],
        });
        let (tx, _rx) = mpsc::unbounded_channel();
        let r = Route::new(
            Arc::clone(&shared),
            tx,
            4,
            None,
            std::time::Duration::from_secs(1),
        );
        let tag_of = |p: u32| (0..10_000u32).find(|&t| partition(t, 4) == p).unwrap();
        assert_eq!(r.place(tag_of(0)), Place::Replaying(0));
        assert_eq!(r.place(tag_of(1)), Place::Node(1));
        assert_eq!(r.place(tag_of(2)), Place::Nobody(2));
        shared.set_caught_up(0, true);
        assert_eq!(r.place(tag_of(0)), Place::Here);
        assert_eq!(r.place(tag_of(3)), Place::Replaying(3));
        shared.set_caught_up(0, false);
        assert_eq!(r.place(tag_of(0)), Place::Replaying(0));
        // Bits of high partitions are their own.
        shared.set_caught_up(1000, true);
        assert!(shared.caught_up(1000) && !shared.caught_up(999) && !shared.caught_up(0));
    }
}
