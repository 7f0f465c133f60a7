//! The cluster's one series catalog, on the NATS thread: the stream
//! `XTDB_CATALOG` (kept forever) holds every series key ever proposed, in
//! order. A node that meets new keys publishes them ([`CatalogCopy::propose`])
//! and waits until its own copy has applied the stream up to them. Every
//! node applies the whole stream, in order, into its shard 0 catalog store
//! ([`CatalogCopy::run`]), which gives each new key the next id; so every
//! node gives every key the same id, without a lock or a leader. A node
//! whose store already held other keys (it served alone before) would give
//! other ids: [`check_ids`] compares each id with the stream's count of
//! distinct keys, and the copy stops, refusing new keys with a reason, at
//! the first difference. Owns the copy's progress; talks to the shards
//! only through the apply channel.

use std::cell::RefCell;
use std::time::Duration;

use async_nats::jetstream::{self, consumer};
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot, watch};

use crate::cluster::js::{fetch, nats_err, pull_consumer};
use crate::cluster::{wire, Apply, ApplyKeys, Shared};
use crate::runtime::command::{Answer, Failure, Reply};
use crate::storage::catalog::{FIRST_ID, MAX_KEY_LEN};

/// The catalog's stream.
pub const CATALOG_STREAM: &str = "XTDB_CATALOG";
/// The catalog stream's subject.
pub const CATALOG_SUBJECT: &str = "xtdb.catalog";
/// How long a proposal of new series keys may wait to be applied here.
pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// This node's copy of the catalog: how far it has applied the stream,
/// and why it stopped if it did.
pub struct CatalogCopy {
    applied: watch::Sender<u64>,
    error: RefCell<Option<String>>,
}

impl Default for CatalogCopy {
    fn default() -> Self {
        CatalogCopy {
            applied: watch::channel(0).0,
            error: RefCell::new(None),
        }
    }
}

impl CatalogCopy {
    /// Publishes new series keys on the catalog stream and waits until
    /// this copy has applied them, all within [`PROPOSE_TIMEOUT`]
    /// (`Written(0)`, or `Unavailable`).
    pub async fn propose(&self, js: &jetstream::Context, keys: Vec<String>) -> Reply {
        let work = async {
            let mut last = 0u64;
            for m in wire::encode_keys(&keys) {
                let ack = js
                    .publish(CATALOG_SUBJECT, m.into())
                    .await
                    .map_err(unavailable)?
                    .await
                    .map_err(unavailable)?;
                last = last.max(ack.sequence);
            }
            let mut rx = self.applied.subscribe();
            loop {
                if let Some(e) = self.error.borrow().clone() {
                    return Err(Failure::Unavailable { reason: e });
                }
                if *rx.borrow_and_update() >= last {
                    return Ok(Answer::Written(0));
                }
                if rx.changed().await.is_err() {
                    return Err(unavailable("the catalog applier stopped"));
                }
            }
        };
        match tokio::time::timeout(PROPOSE_TIMEOUT, work).await {
            Ok(r) => r,
            Err(_) => Err(unavailable(format!(
                "new series keys were not applied within {} s",
                PROPOSE_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Applies the catalog stream from its first message, in order, into
    /// shard 0's store (through `apply`), for as long as the thread runs;
    /// marks `shared` catalog-ready once the stream's end as of now is
    /// applied; stops for good at the first id that differs from the
    /// stream's order.
    pub async fn run(&self, js: &jetstream::Context, apply: &mpsc::Sender<Apply>, shared: &Shared) {
        // The stream's end at start: applied up to it, the node is ready.
        let target = loop {
            match js.get_stream(CATALOG_STREAM).await {
                Ok(mut s) => match s.info().await {
                    Ok(i) => break i.state.last_sequence,
                    Err(e) => log::warn!("cluster: catalog stream info: {e}; retrying"),
                },
                Err(e) => log::warn!("cluster: open the catalog stream: {e}; retrying"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let mut at = Progress {
            target,
            ..Progress::default()
        };
        if target == 0 {
            shared.set_catalog_ready();
        }
        loop {
            let cfg = consumer::pull::Config {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: at.applied + 1,
                },
                ack_policy: consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(60),
                ..Default::default()
            };
            let Some(c) = pull_consumer(js, CATALOG_STREAM, cfg, "catalog").await else {
                continue;
            };
            match self.apply_from(&c, apply, shared, &mut at).await {
                Ok(()) => return,
                Err(Stop::Retry(e)) => {
                    log::warn!(
                        "cluster: catalog: {e}; resuming after message {}",
                        at.applied
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(Stop::Diverged(e)) => {
                    log::error!("cluster: {e}");
                    *self.error.borrow_mut() = Some(e);
                    self.applied.send_modify(|_| {});
                    // Ready as far as it goes: it serves, refusing new series.
                    shared.set_catalog_ready();
                    return;
                }
            }
        }
    }

    async fn apply_from(
        &self,
        c: &consumer::Consumer<consumer::pull::Config>,
        apply: &mpsc::Sender<Apply>,
        shared: &Shared,
        at: &mut Progress,
    ) -> Result<(), Stop> {
        let retry = |what: &str, e: &dyn std::fmt::Display| Stop::Retry(nats_err(what, e));
        loop {
            let mut batch = fetch(c).await.map_err(Stop::Retry)?;
            let mut keys = Vec::new();
            let mut last = 0u64;
            while let Some(m) = batch.next().await {
                let m = m.map_err(|e| retry("fetch", &e))?;
                let seq = m
                    .info()
                    .map_err(|e| retry("message info", &e))?
                    .stream_sequence;
                last = seq;
                if let Err(e) = wire::decode_keys(&m.payload, &mut keys) {
                    // Every node skips the same message: ids stay the same.
                    shared.skipped("catalog", seq, &e);
                }
            }
            if last == 0 {
                continue;
            }
            // Keys the store refuses by length are skipped by every node alike.
            keys.retain(|k| k.len() <= MAX_KEY_LEN);
            if !keys.is_empty() {
                let (tx, rx) = oneshot::channel();
                apply
                    .send(Apply::Keys(ApplyKeys { keys, reply: tx }))
                    .await
                    .map_err(|_| Stop::Retry("the shards are gone".into()))?;
                let ids = match rx.await {
                    Ok(Ok(Answer::Ids(ids))) => ids,
                    Ok(Ok(other)) => {
                        return Err(Stop::Retry(
                            Failure::unexpected("catalog apply", &other).to_string(),
                        ))
                    }
                    Ok(Err(f)) => return Err(Stop::Retry(format!("apply: {f}"))),
                    Err(_) => return Err(Stop::Retry("the shards dropped a batch".into())),
                };
                check_ids(&mut at.distinct, &ids).map_err(Stop::Diverged)?;
            }
            at.applied = last;
            shared
                .counters
                .catalog_keys
                .store(at.distinct, std::sync::atomic::Ordering::Relaxed);
            self.applied.send_replace(last);
            if last >= at.target {
                shared.set_catalog_ready();
            }
        }
    }
}

/// How far the copy has come.
#[derive(Default)]
struct Progress {
    /// The stream's last message applied.
    applied: u64,
    /// Distinct keys among the messages applied.
    distinct: u64,
    /// The stream's last sequence when the copy started.
    target: u64,
}

enum Stop {
    Retry(String),
    Diverged(String),
}

fn unavailable(e: impl std::fmt::Display) -> Failure {
    Failure::Unavailable {
        reason: format!("the cluster's series catalog: {e}"),
    }
}

/// Checks the ids the store gave a run of the catalog stream: the stream's
/// n-th distinct key must have id `FIRST_ID + n`. `distinct` counts the
/// distinct keys of the stream so far.
pub fn check_ids(distinct: &mut u64, ids: &[Option<u32>]) -> Result<(), String> {
    let first = u64::from(FIRST_ID);
    for id in ids {
        let Some(id) = id.map(u64::from) else {
            return Err("the catalog store gave no id to a key of the cluster's catalog".into());
        };
        if id == first + *distinct {
            *distinct += 1;
        } else if id > first + *distinct || id < first {
            return Err(format!(
                "this node's series catalog differs from the cluster's (id {id} where the \
                 cluster's catalog gives {}): its data directory held series before it \
                 joined; new series are refused here. Start the node on an empty data \
                 directory (or restore a backup of a cluster node's) to join",
                first + *distinct
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_in_stream_order_pass_and_a_foreign_catalog_is_caught() {
        let mut d = 0;
        let f = FIRST_ID;
        // Two runs: new keys, repeats, a new key after repeats.
        check_ids(&mut d, &[Some(f), Some(f + 1), Some(f)]).unwrap();
        check_ids(&mut d, &[Some(f + 1), Some(f + 2), Some(f + 2)]).unwrap();
        assert_eq!(d, 3);
        // A store that held 5 keys before gives the stream's 4th key id 5.
        let e = check_ids(&mut d, &[Some(f + 5)]).unwrap_err();
        assert!(e.contains("differs from the cluster's"), "{e}");
        assert!(check_ids(&mut 0, &[None]).is_err());
        assert!(check_ids(&mut 0, &[Some(7)]).is_err());
    }
}
