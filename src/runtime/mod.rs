//! The runtime: pins one glommio executor per listed CPU ([`placement`]) and
//! routes work between the shards they run ([`router`]): which shard owns a
//! tag, the channel mesh between shards, and the credits that bound
//! cross-shard work. Never blocks an executor; never awaits a mesh send in
//! the loop that drains the shard's own receivers.

pub mod placement;
pub mod router;
