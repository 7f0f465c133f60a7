//! What a shard allows its network clients, native protocol and HTTP
//! alike: how many connections, how long a connection may sit idle or take
//! to deliver a started frame, how many request bytes may be in flight.
//! Owns the settings; the accept loop ([`crate::net::accept`]) and the
//! connection handlers apply them. The timestamp window writes must fall
//! in is the runtime's ([`TimeWindow`]), carried here so one value
//! configures both edges.

use std::time::Duration;

pub use crate::runtime::admission::{now_us, TimeWindow};

/// Per-shard network limits.
#[derive(Clone, Debug)]
pub struct WireLimits {
    /// Connections served at once per shard and listener (native and HTTP
    /// are counted apart). One over it is answered with an error (native:
    /// error frame [`crate::net::protocol::code::BUSY`]; HTTP: 503) and
    /// closed. `SO_REUSEPORT` spreads connections over the shards by a hash
    /// of the client's address, so the server-wide limit is about this
    /// times the shard count.
    pub max_connections: usize,
    /// Native protocol: a connection with no request started for this long
    /// is closed (without an error frame: there is no request to answer).
    pub idle_timeout: Duration,
    /// Native protocol: once a frame's first byte has arrived, the whole
    /// frame must arrive within this; and an answer must be taken by the
    /// client within it. Otherwise the connection gets error frame
    /// [`crate::net::protocol::code::TIMEOUT`] (when it can still be
    /// written) and is closed. This bounds slow-drip ("slowloris") clients.
    pub frame_timeout: Duration,
    /// Native protocol: payload bytes a shard holds for requests being
    /// read or run at once. A frame that would exceed it waits (its bytes
    /// stay in the kernel's socket buffer, so the client is slowed by TCP
    /// flow control) until earlier requests finish; its frame timeout
    /// starts again once it may proceed. Bounds memory under many
    /// connections sending large frames at once.
    pub max_inflight_bytes: usize,
    /// Timestamps a write may carry.
    pub window: TimeWindow,
}

impl Default for WireLimits {
    fn default() -> Self {
        WireLimits {
            max_connections: 1024,
            idle_timeout: Duration::from_secs(600),
            frame_timeout: Duration::from_secs(30),
            max_inflight_bytes: 256 << 20,
            window: TimeWindow::default(),
        }
    }
}
