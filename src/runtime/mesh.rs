//! The one RPC over glommio's channel mesh: a shard sends a request to a
//! peer and awaits its answer. Generic over the request and answer types;
//! the router uses it for every [`crate::runtime::command::Command`].
//!
//! Design (glommio issue #555: a shard that awaits a full channel while it
//! is the one that should drain the peer's channel deadlocks the pair):
//! - one receiver task per peer only *dispatches*: requests are spawned as
//!   their own tasks, answers complete a local slot; it never awaits a send;
//! - every request to a peer first takes a credit from that peer's
//!   [`Semaphore`] ([`CREDITS`] per destination) and gives it back when the
//!   answer arrives, so at most `CREDITS` requests and `CREDITS` answers are
//!   ever queued between two shards; the channels hold
//!   [`CHANNEL_CAPACITY`] = `2 * CREDITS` messages, so sends never wait on
//!   a peer that is itself waiting;
//! - callers batch per destination: one message per sub-batch, never per
//!   point.
//!
//! Owns message ids, credits and pending answers; never runs requests
//! itself (the handler given to [`Mesh::start`] does).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers, Senders};
use glommio::sync::Semaphore;

/// Requests in flight from one shard to one peer.
pub const CREDITS: usize = 64;
/// Capacity of each mesh channel: room for every request and every answer.
pub const CHANNEL_CAPACITY: usize = 2 * CREDITS;

/// A message on the mesh.
#[derive(Debug)]
pub enum Msg<Q, A> {
    /// A request; answer to the sender with the same id.
    Request(u64, Q),
    /// The answer to request `id` of the receiving shard.
    Response(u64, A),
}

/// The mesh builder for requests `Q` and answers `A`.
pub type Builder<Q, A> = MeshBuilder<Msg<Q, A>, Full>;

/// Builds the mesh for `shards` shards (once, before the executors start).
pub fn builder<Q: Send + 'static, A: Send + 'static>(shards: usize) -> Builder<Q, A> {
    MeshBuilder::full(shards, CHANNEL_CAPACITY)
}

/// Runs a request on this shard and produces its answer.
pub type Handler<Q, A> = Rc<dyn Fn(Q) -> Pin<Box<dyn Future<Output = A>>>>;

/// A one-shot slot an answer is delivered into.
struct Slot<A> {
    value: RefCell<Option<A>>,
    waker: RefCell<Option<Waker>>,
}

struct SlotFuture<A>(Rc<Slot<A>>);

impl<A> Future for SlotFuture<A> {
    type Output = A;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<A> {
        if let Some(v) = self.0.value.borrow_mut().take() {
            return Poll::Ready(v);
        }
        *self.0.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

/// One shard's end of the mesh.
pub struct Mesh<Q: Send, A: Send> {
    me: usize,
    peers: usize,
    senders: Senders<Msg<Q, A>>,
    credits: Vec<Rc<Semaphore>>,
    pending: RefCell<HashMap<u64, Rc<Slot<A>>>>,
    next_id: Cell<u64>,
}

impl<Q: Send + 'static, A: Send + 'static> Mesh<Q, A> {
    /// Joins the mesh (every shard must call this once, at start-up) and
    /// returns this shard's peer id (its index) and both ends.
    pub async fn join(
        builder: Builder<Q, A>,
    ) -> Result<(usize, Senders<Msg<Q, A>>, Receivers<Msg<Q, A>>), String> {
        let (s, r) = builder.join().await.map_err(|e| e.to_string())?;
        Ok((s.peer_id(), s, r))
    }

    /// Starts serving requests from peers with `handler` (one dispatcher
    /// task per peer) and returns the handle used to call peers.
    pub fn start(
        senders: Senders<Msg<Q, A>>,
        mut receivers: Receivers<Msg<Q, A>>,
        handler: Handler<Q, A>,
    ) -> Rc<Mesh<Q, A>> {
        let peers = senders.nr_consumers();
        let mesh = Rc::new(Mesh {
            me: senders.peer_id(),
            peers,
            senders,
            credits: (0..peers)
                .map(|_| Rc::new(Semaphore::new(CREDITS as u64)))
                .collect(),
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(1),
        });
        for (peer, rx) in receivers.streams() {
            let m = Rc::clone(&mesh);
            let handler = Rc::clone(&handler);
            glommio::spawn_local(async move {
                // Dispatch only: never await a send here (glommio #555).
                while let Some(msg) = rx.recv().await {
                    match msg {
                        Msg::Request(id, req) => {
                            let m = Rc::clone(&m);
                            let answer = handler(req);
                            glommio::spawn_local(async move {
                                let resp = answer.await;
                                // The peer holds a credit for this request, so
                                // there is room; a closed channel means the
                                // peer is gone and nobody waits for the answer.
                                let _ = m.senders.send_to(peer, Msg::Response(id, resp)).await;
                            })
                            .detach();
                        }
                        Msg::Response(id, resp) => m.complete(id, resp),
                    }
                }
            })
            .detach();
        }
        mesh
    }

    fn complete(&self, id: u64, resp: A) {
        if let Some(slot) = self.pending.borrow_mut().remove(&id) {
            *slot.value.borrow_mut() = Some(resp);
            if let Some(w) = slot.waker.borrow_mut().take() {
                w.wake();
            }
        }
    }

    /// This shard's index.
    pub fn me(&self) -> usize {
        self.me
    }

    /// Number of shards.
    pub fn peers(&self) -> usize {
        self.peers
    }

    /// Sends `req` to peer `dest` (not this shard) and awaits its answer.
    /// `Err` names why the mesh could not carry it.
    pub async fn call(&self, dest: usize, req: Q) -> Result<A, String> {
        let Some(sem) = self.credits.get(dest) else {
            return Err(format!("no shard {dest}"));
        };
        let _permit = sem
            .acquire_static_permit(1)
            .await
            .map_err(|e| format!("credits for shard {dest}: {e}"))?;
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let slot = Rc::new(Slot {
            value: RefCell::new(None),
            waker: RefCell::new(None),
        });
        self.pending.borrow_mut().insert(id, Rc::clone(&slot));
        if let Err(e) = self.senders.send_to(dest, Msg::Request(id, req)).await {
            self.pending.borrow_mut().remove(&id);
            return Err(format!("send to shard {dest} failed: {e}"));
        }
        Ok(SlotFuture(slot).await)
    }
}
