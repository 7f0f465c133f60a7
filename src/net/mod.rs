//! The network edge: the native wire protocol ([`protocol`]: frames, codes,
//! and how commands, answers and failures travel), the per-shard
//! connection handler ([`server`]) with its authentication ([`auth`]), the
//! accept loop shared with HTTP ([`accept`]), connection limits
//! ([`limits`]), TLS for both listeners and the clients ([`tls`]) and the
//! [`Client`] with its error type. Owns sockets and framing; never touches storage directly
//! (every request becomes a runtime command).

pub mod accept;
pub mod auth;
pub mod client;
pub mod error;
pub mod limits;
pub mod protocol;
pub mod server;
pub mod tls;

pub use client::{Client, ClientOptions};
pub use error::{ClientError, ClientResult};
