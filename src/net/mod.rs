//! The network edge: the native wire protocol ([`protocol`]), the per-shard
//! connection handler ([`server`]) and the [`Client`]. Owns sockets and
//! framing; never touches storage directly (requests go through the
//! [`crate::runtime::router`], which sends them to the owning shard).

pub mod accept;
pub mod client;
pub mod limits;
pub mod protocol;
pub mod server;

pub use client::Client;
