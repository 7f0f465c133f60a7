//! Routing between shards: which shard owns a tag ([`owner`]), and the
//! [`Router`] each shard uses to run a [`Command`] on a given shard
//! (locally, or over the [`Mesh`]) and get its [`Reply`]. Owns the routing
//! function and the local-or-remote choice; the fan-out of a client's
//! command over many shards is [`crate::runtime::dispatch`].

use std::cell::RefCell;
use std::rc::Rc;

use crate::runtime::cluster::ClusterRoute;
use crate::runtime::command::{Command, Failure, Reply};
use crate::runtime::local::Local;
use crate::runtime::mesh::{self, Mesh, Msg};

pub use crate::runtime::mesh::{CHANNEL_CAPACITY, CREDITS};

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

/// The mesh of the router: commands and their replies.
pub type MeshBuilder = mesh::Builder<Command, Reply>;
/// A message between routers.
pub type RouterMsg = Msg<Command, Reply>;

/// Builds the router mesh for `shards` shards (once, before they start).
pub fn mesh_builder(shards: usize) -> MeshBuilder {
    mesh::builder(shards)
}

/// One shard's view of all shards: its own [`Local`] and the mesh to the
/// others.
pub struct Router {
    local: Rc<Local>,
    mesh: Rc<Mesh<Command, Reply>>,
    /// Cluster mode: where partitions live and how to reach them.
    cluster: RefCell<Option<Rc<dyn ClusterRoute>>>,
}

impl Router {
    /// Joins the mesh (every shard must call this once, at start-up) and
    /// returns the shard index (the mesh peer id) and both ends.
    pub async fn join(
        builder: MeshBuilder,
    ) -> Result<
        (
            usize,
            glommio::channels::channel_mesh::Senders<RouterMsg>,
            glommio::channels::channel_mesh::Receivers<RouterMsg>,
        ),
        String,
    > {
        Mesh::join(builder).await
    }

    /// Builds the router for `local` and starts serving the peers'
    /// commands on it.
    pub fn start(
        local: Rc<Local>,
        senders: glommio::channels::channel_mesh::Senders<RouterMsg>,
        receivers: glommio::channels::channel_mesh::Receivers<RouterMsg>,
    ) -> Rc<Router> {
        let handler_local = Rc::clone(&local);
        let handler: mesh::Handler<Command, Reply> = Rc::new(move |cmd| {
            let l = Rc::clone(&handler_local);
            Box::pin(async move { l.handle(cmd).await })
        });
        let mesh = Mesh::start(senders, receivers, handler);
        Rc::new(Router {
            local,
            mesh,
            cluster: RefCell::new(None),
        })
    }

    /// Puts this shard in cluster mode (once, before it serves clients).
    pub fn set_cluster(&self, route: Rc<dyn ClusterRoute>) {
        *self.cluster.borrow_mut() = Some(route);
    }

    /// The cluster this shard routes through, in cluster mode.
    pub fn cluster(&self) -> Option<Rc<dyn ClusterRoute>> {
        self.cluster.borrow().clone()
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.mesh.peers()
    }

    /// This shard.
    pub fn local(&self) -> &Rc<Local> {
        &self.local
    }

    /// Runs `cmd` on shard `dest` (locally if it is this shard) and returns
    /// its reply.
    pub async fn call(&self, dest: usize, cmd: Command) -> Reply {
        if dest == self.local.index {
            return self.local.handle(cmd).await;
        }
        match self.mesh.call(dest, cmd).await {
            Ok(reply) => reply,
            Err(reason) => Err(Failure::Internal { reason }),
        }
    }

    /// Runs `cmd` on `dest` in its own task, so several destinations
    /// proceed concurrently.
    pub fn spawn_call(self: &Rc<Self>, dest: usize, cmd: Command) -> glommio::Task<Reply> {
        let r = Rc::clone(self);
        glommio::spawn_local(async move { r.call(dest, cmd).await })
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
