//! Routing between shards: which shard owns a tag ([`owner`]), the messages
//! shards exchange over glommio's channel mesh, and the [`Router`] each shard
//! uses to run a request on the owning shard and get its answer back.
//!
//! Design (glommio issue #555: a shard that awaits a full channel while it
//! is the one that should drain the peer's channel deadlocks the pair):
//! - one receiver task per peer only *dispatches*: requests are spawned as
//!   their own tasks, answers complete a local slot; it never awaits a send;
//! - every request to a peer first takes a credit from that peer's
//!   [`Semaphore`] ([`CREDITS`] per destination) and gives it back when the
//!   answer arrives, so at most `CREDITS` requests and `CREDITS` answers are
//!   ever queued between two shards; the channels hold `2 * CREDITS`
//!   messages, so sends never wait on a peer that is itself waiting;
//! - work is batched per destination: one message per sub-batch, never per
//!   point.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use glommio::channels::channel_mesh::{MeshBuilder, Receivers, Senders};
use glommio::sync::Semaphore;
use hdrhistogram::Histogram;

use crate::net::protocol::code;
use crate::storage::{Shard, ShardStats};
use crate::Point;
use futures_util::StreamExt;

/// Requests in flight from one shard to one peer.
pub const CREDITS: usize = 64;
/// Capacity of each mesh channel: room for every request and every answer.
pub const CHANNEL_CAPACITY: usize = 2 * CREDITS;

/// Seed of the routing hash. Changing it (or [`owner`]) moves tags between
/// shards and orphans existing data: never do that.
const ROUTING_SEED: u32 = 0x9E37_79B9;

/// The shard that owns `tag` among `shards` shards: a fixed-seed murmur3
/// finalizer of the tag, mod the shard count. Stable across restarts,
/// builds and versions.
pub fn owner(tag: u32, shards: usize) -> usize {
    (tag_hash(tag) as usize) % shards.max(1)
}

/// The routing hash of a tag (murmur3's 32-bit finalizer over
/// `tag ^ ROUTING_SEED`).
pub fn tag_hash(tag: u32) -> u32 {
    let mut h = tag ^ ROUTING_SEED;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85EB_CA6B);
    h ^= h >> 13;
    h = h.wrapping_mul(0xC2B2_AE35);
    h ^= h >> 16;
    h
}

/// A request one shard runs for another: the client's request, restricted
/// to tags the destination owns (one enum for the wire and the mesh).
pub type ShardRequest = crate::net::protocol::Request;

/// The answer to a [`ShardRequest`].
#[derive(Debug)]
pub enum ShardResponse {
    /// Write is durable.
    Written,
    /// Range result.
    Points(Vec<Point>),
    /// Latest result, in request order.
    Latest(Vec<Option<Point>>),
    /// Counters.
    Stats(Box<ShardReport>),
    /// Failure: protocol error code and message.
    Failed(u16, String),
}

/// One shard's counters as reported to `stats`.
#[derive(Debug, Clone)]
pub struct ShardReport {
    /// Shard index.
    pub shard: usize,
    /// CPU the shard is pinned to.
    pub cpu: usize,
    /// Storage counters.
    pub stats: ShardStats,
    /// Write-ack latency (µs) of client batches read by this shard.
    pub ack_us: Histogram<u64>,
    /// Time since the shard started.
    pub uptime: Duration,
    /// HTTP counters of connections this shard accepted.
    pub http: crate::http::HttpCounters,
}

/// A message on the mesh.
#[derive(Debug)]
pub enum Msg {
    /// A request; answer to the sender with the same id.
    Request(u64, ShardRequest),
    /// The answer to request `id` of the receiving shard.
    Response(u64, ShardResponse),
}

/// What the local shard owns besides its storage: identity and the
/// ack-latency histogram.
pub struct Local {
    /// Shard index (= mesh peer id).
    pub index: usize,
    /// CPU.
    pub cpu: usize,
    /// Storage.
    pub shard: Shard,
    /// Write-ack latency, µs.
    pub ack_us: RefCell<Histogram<u64>>,
    /// Start time.
    pub started: Instant,
    /// Timestamps a client write may carry (checked where the write enters).
    pub window: crate::net::limits::TimeWindow,
    /// HTTP counters of connections this shard accepted.
    pub http: RefCell<crate::http::HttpCounters>,
}

impl Local {
    /// Wraps an opened shard.
    pub fn new(index: usize, cpu: usize, shard: Shard) -> Self {
        Local {
            index,
            cpu,
            shard,
            ack_us: RefCell::new(new_histogram()),
            started: Instant::now(),
            window: crate::net::limits::TimeWindow::default(),
            http: RefCell::default(),
        }
    }

    /// Runs a request on this shard's storage.
    pub async fn handle(&self, req: ShardRequest) -> ShardResponse {
        let failed = |e: crate::Error| ShardResponse::Failed(code::STORAGE, e.to_string());
        match req {
            ShardRequest::Write(p) => match self.shard.write(&p).await {
                Ok(()) => ShardResponse::Written,
                Err(e) => failed(e),
            },
            ShardRequest::Range { tag, start, end } => {
                match self.shard.range(tag, start, end).await {
                    Ok(p) => ShardResponse::Points(p),
                    Err(e) => failed(e),
                }
            }
            ShardRequest::Latest(tags) => {
                // Tags whose latest point is on disk each need a block read:
                // keep up to LATEST_IN_FLIGHT of them in flight, answers in
                // request order.
                let answers: Vec<_> = futures_util::stream::iter(tags)
                    .map(|t| self.shard.latest(t))
                    .buffered(LATEST_IN_FLIGHT)
                    .collect()
                    .await;
                let mut out = Vec::with_capacity(answers.len());
                for a in answers {
                    match a {
                        Ok(p) => out.push(p),
                        Err(e) => return failed(e),
                    }
                }
                ShardResponse::Latest(out)
            }
            ShardRequest::Stats => ShardResponse::Stats(Box::new(ShardReport {
                shard: self.index,
                cpu: self.cpu,
                stats: self.shard.stats(),
                ack_us: self.ack_us.borrow().clone(),
                uptime: self.started.elapsed(),
                http: *self.http.borrow(),
            })),
        }
    }
}

/// Latest-value lookups of one request run concurrently up to this many
/// (each may read a block).
const LATEST_IN_FLIGHT: usize = 64;

/// A histogram for latencies in µs, 1 µs to 1 h, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds are valid")
}

/// A one-shot slot an answer is delivered into.
#[derive(Default)]
struct Slot {
    value: RefCell<Option<ShardResponse>>,
    waker: RefCell<Option<Waker>>,
}

struct SlotFuture(Rc<Slot>);

impl Future for SlotFuture {
    type Output = ShardResponse;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ShardResponse> {
        if let Some(v) = self.0.value.borrow_mut().take() {
            return Poll::Ready(v);
        }
        *self.0.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// One shard's view of the cluster: its own storage, senders to every peer,
/// per-peer credits and the answers it is waiting for.
pub struct Router {
    local: Rc<Local>,
    shards: usize,
    senders: Senders<Msg>,
    credits: Vec<Rc<Semaphore>>,
    pending: RefCell<HashMap<u64, Rc<Slot>>>,
    next_id: Cell<u64>,
}

impl Router {
    /// Joins the mesh (every shard must call this once, at start-up) and
    /// returns the router plus the receivers to hand to [`Router::start`].
    /// The shard index is the mesh peer id.
    pub async fn join(
        mesh: MeshBuilder<Msg, glommio::channels::channel_mesh::Full>,
    ) -> crate::Result<(usize, Senders<Msg>, Receivers<Msg>)> {
        let (s, r) = mesh.join().await.map_err(crate::Error::from)?;
        Ok((s.peer_id(), s, r))
    }

    /// Builds the router for `local` and spawns one dispatcher task per
    /// peer.
    pub fn start(
        local: Rc<Local>,
        senders: Senders<Msg>,
        mut receivers: Receivers<Msg>,
    ) -> Rc<Router> {
        let shards = senders.nr_consumers();
        let router = Rc::new(Router {
            local,
            shards,
            senders,
            credits: (0..shards)
                .map(|_| Rc::new(Semaphore::new(CREDITS as u64)))
                .collect(),
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(1),
        });
        for (peer, rx) in receivers.streams() {
            let r = Rc::clone(&router);
            glommio::spawn_local(async move {
                // Dispatch only: never await a send here (glommio #555).
                while let Some(msg) = rx.recv().await {
                    match msg {
                        Msg::Request(id, req) => {
                            let r = Rc::clone(&r);
                            glommio::spawn_local(async move {
                                let resp = r.local.handle(req).await;
                                // The peer holds a credit for this request, so
                                // there is room; a closed channel means the
                                // peer is gone and nobody waits for the answer.
                                let _ = r.senders.send_to(peer, Msg::Response(id, resp)).await;
                            })
                            .detach();
                        }
                        Msg::Response(id, resp) => r.complete(id, resp),
                    }
                }
            })
            .detach();
        }
        router
    }

    fn complete(&self, id: u64, resp: ShardResponse) {
        if let Some(slot) = self.pending.borrow_mut().remove(&id) {
            *slot.value.borrow_mut() = Some(resp);
            if let Some(w) = slot.waker.borrow_mut().take() {
                w.wake();
            }
        }
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards
    }

    /// This shard.
    pub fn local(&self) -> &Rc<Local> {
        &self.local
    }

    /// Runs `req` on shard `dest` (locally if it is this shard) and returns
    /// its answer.
    pub async fn call(self: Rc<Self>, dest: usize, req: ShardRequest) -> ShardResponse {
        if dest == self.local.index {
            return self.local.handle(req).await;
        }
        let Some(sem) = self.credits.get(dest) else {
            return ShardResponse::Failed(code::INTERNAL, format!("no shard {dest}"));
        };
        let _permit = match sem.acquire_static_permit(1).await {
            Ok(p) => p,
            Err(e) => return ShardResponse::Failed(code::INTERNAL, format!("credits: {e}")),
        };
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let slot = Rc::new(Slot::default());
        self.pending.borrow_mut().insert(id, Rc::clone(&slot));
        if let Err(e) = self.senders.send_to(dest, Msg::Request(id, req)).await {
            self.pending.borrow_mut().remove(&id);
            return ShardResponse::Failed(
                code::INTERNAL,
                format!("send to shard {dest} failed: {e}"),
            );
        }
        SlotFuture(slot).await
    }

    /// Runs `req` on `dest` in its own task, so several destinations proceed
    /// concurrently.
    pub fn spawn_call(
        self: &Rc<Self>,
        dest: usize,
        req: ShardRequest,
    ) -> glommio::Task<ShardResponse> {
        glommio::spawn_local(Rc::clone(self).call(dest, req))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pins the routing function: if this test fails, existing data dirs
    /// would be read from the wrong shards.
    #[test]
    fn owner_is_fixed() {
        let got: Vec<usize> = (0..8).map(|t| owner(t, 2)).collect();
        let got4: Vec<usize> = [0u32, 1, 2, 3, 1000, 123_456, u32::MAX]
            .iter()
            .map(|&t| owner(t, 4))
            .collect();
        let got7 = owner(42, 7);
        assert_eq!(
            (got, got4, got7),
            (vec![0, 1, 1, 1, 0, 1, 0, 1], vec![2, 3, 3, 3, 2, 3, 2], 3)
        );
        let hashes: Vec<u32> = [0u32, 1, 42, u32::MAX]
            .iter()
            .map(|&t| tag_hash(t))
            .collect();
        assert_eq!(hashes, vec![2462723854, 920564995, 3856264912, 996586154]);
    }

    #[test]
    fn owner_spreads_tags() {
        let mut counts = [0usize; 4];
        for t in 0..100_000u32 {
            counts[owner(t, 4)] += 1;
        }
        for c in counts {
            assert!((23_000..27_000).contains(&c), "{counts:?}");
        }
        assert!((0..1000).all(|t| owner(t, 1) == 0));
    }
}
