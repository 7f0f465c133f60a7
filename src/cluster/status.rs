//! `xtdb cluster status`: reads the cluster's state from NATS alone (the
//! leases, the nodes' heartbeats with their applied sequences, and each
//! partition stream's end) and prints per partition its owner, its lag in
//! messages and in seconds (the age of the oldest message its owner has
//! not applied). Runs its own tokio runtime on the calling thread; never
//! talks to an xtdb node.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures_util::StreamExt;

use crate::cluster::log::{lease_key, stream_name, LEASE_BUCKET, NODE_BUCKET};

/// One partition's line.
#[derive(Clone, Debug, PartialEq)]
pub struct PartitionStatus {
    /// The partition.
    pub partition: u32,
    /// Its owner's node id (`None`: no lease).
    pub owner: Option<String>,
    /// The stream's last sequence.
    pub last_seq: u64,
    /// The owner's applied sequence (from its heartbeat).
    pub applied: u64,
    /// `last_seq − applied`.
    pub lag_messages: u64,
    /// Age of the oldest unapplied message, seconds (0 when none).
    pub lag_seconds: f64,
    /// Nodes that applied it ahead of a hand-over and are caught up.
    pub warm: Vec<String>,
}

/// The cluster's state.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// Live nodes (id → cluster address).
    pub nodes: BTreeMap<String, String>,
    /// Every partition.
    pub partitions: Vec<PartitionStatus>,
}

/// Reads the status through any of `urls`.
pub fn read(urls: &[String], partitions: u32) -> Result<Status, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(20), read_async(urls, partitions))
            .await
            .map_err(|_| "NATS did not answer within 20 s".to_string())?
    })
}

async fn read_async(urls: &[String], partitions: u32) -> Result<Status, String> {
    let mut addrs = Vec::new();
    for u in urls {
        addrs.push(
            u.parse::<async_nats::ServerAddr>()
                .map_err(|e| format!("--cluster {u:?}: {e}"))?,
        );
    }
    let client = async_nats::ConnectOptions::new()
        .name("xtdb cluster status")
        .connection_timeout(Duration::from_secs(5))
        .connect(addrs.as_slice())
        .await
        .map_err(|e| format!("connect to NATS at {}: {e}", urls.join(",")))?;
    let js = jetstream::new(client);
    let e = |w: &'static str| move |err: kv::EntryError| format!("{w}: {err}");
    let leases = js
        .get_key_value(LEASE_BUCKET)
        .await
        .map_err(|err| format!("no cluster here (bucket {LEASE_BUCKET}: {err})"))?;
    let nodes = js
        .get_key_value(NODE_BUCKET)
        .await
        .map_err(|err| format!("bucket {NODE_BUCKET}: {err}"))?;
    let mut st = Status::default();
    let mut applied: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut warm: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut keys = nodes
        .keys()
        .await
        .map_err(|err| format!("list nodes: {err}"))?;
    let mut ids = Vec::new();
    while let Some(k) = keys.next().await {
        ids.push(k.map_err(|err| format!("list nodes: {err}"))?);
    }
    for id in ids {
        if let Some(v) = nodes.get(&id).await.map_err(e("read a heartbeat"))? {
            let j: serde_json::Value = serde_json::from_slice(&v).unwrap_or_default();
            st.nodes
                .insert(id.clone(), j["addr"].as_str().unwrap_or("").to_string());
            let a = j["applied"]
                .as_array()
                .map(|a| a.iter().map(|x| x.as_u64().unwrap_or(0)).collect())
                .unwrap_or_default();
            for p in j["warm"].as_array().into_iter().flatten() {
                if let Some(p) = p.as_u64().and_then(|p| u32::try_from(p).ok()) {
                    warm.entry(p).or_default().push(id.clone());
                }
            }
            applied.insert(id, a);
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    for p in 0..partitions {
        let owner = leases
            .get(lease_key(p))
            .await
            .map_err(e("read a lease"))?
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .filter(|s| !s.is_empty());
        let mut s = js
            .get_stream(stream_name(p))
            .await
            .map_err(|err| format!("stream {}: {err}", stream_name(p)))?;
        let info = s
            .info()
            .await
            .map_err(|err| format!("stream info: {err}"))?;
        let last_seq = info.state.last_sequence;
        let done = owner
            .as_ref()
            .and_then(|o| applied.get(o))
            .and_then(|a| a.get(p as usize).copied())
            .unwrap_or(0);
        let lag = last_seq.saturating_sub(done);
        let mut lag_seconds = 0.0;
        if lag > 0 {
            let first = (done + 1).max(info.state.first_sequence);
            if let Ok(m) = s.get_raw_message(first).await {
                lag_seconds = ((now - m.time.unix_timestamp_nanos()) as f64 / 1e9).max(0.0);
            }
        }
        st.partitions.push(PartitionStatus {
            partition: p,
            owner,
            last_seq,
            applied: done,
            lag_messages: lag,
            lag_seconds,
            warm: warm.remove(&p).unwrap_or_default(),
        });
    }
    Ok(st)
}

/// The status as the table `xtdb cluster status` prints.
pub fn table(st: &Status) -> String {
    let mut out = String::new();
    out.push_str(&format!("nodes: {}\n", st.nodes.len()));
    for (id, addr) in &st.nodes {
        let owns = st
            .partitions
            .iter()
            .filter(|p| p.owner.as_deref() == Some(id))
            .count();
        out.push_str(&format!("  {id:<20} {addr:<24} {owns} partitions\n"));
    }
    out.push_str(
        "partition  owner                 last seq    applied   lag msgs    lag s  warm\n",
    );
    for p in &st.partitions {
        out.push_str(&format!(
            "{:>9}  {:<20} {:>9} {:>10} {:>10}  {:>7.3}  {}\n",
            p.partition,
            p.owner.as_deref().unwrap_or("-"),
            p.last_seq,
            p.applied,
            p.lag_messages,
            p.lag_seconds,
            if p.warm.is_empty() {
                "-".to_string()
            } else {
                p.warm.join(",")
            }
        ));
    }
    let unowned = st.partitions.iter().filter(|p| p.owner.is_none()).count();
    let lag: u64 = st.partitions.iter().map(|p| p.lag_messages).sum();
    out.push_str(&format!(
        "unowned partitions: {unowned}; total lag: {lag} messages\n"
    ));
    out
}
