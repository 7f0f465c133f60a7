//! xtdb: a thread-per-core time-series store for industrial tag data.
//!
//! Layers, each importing only from those below it:
//! - [`point`]: the data model, `(tag, timestamp µs, value, quality)`.
//! - [`aggregate`]: pure aggregation kernels of the read side (per-segment
//!   summaries, windowed aggregates, fill, interpolation, plot values,
//!   InfluxQL transforms); no I/O, below storage.
//! - [`storage`]: everything one shard owns (WAL, tag buffers, blocks, chunk
//!   files, recovery, the catalog store). Runs inside one glommio executor;
//!   never shared.
//! - [`runtime`]: one pinned executor per CPU; the shard's vocabulary
//!   (commands, answers, typed failures); routing and the one mesh RPC
//!   between shards; the fan-out of a client's command; admission.
//! - [`net`] and [`http`]: the edges. The native wire protocol with its
//!   connection handler and [`net::Client`]; the HTTP edge (InfluxDB
//!   line-protocol writes, JSON queries, Prometheus `/metrics`).
//! - [`influxql`]: the InfluxQL front end (syntax tree, errors with
//!   positions, time ranges of `WHERE` clauses); pure, no execution. Edge
//!   level: the HTTP `/query` endpoint executes it.
//! - [`cluster`]: cluster mode on NATS JetStream (the replicated log,
//!   partition leases, applying the log, asking other nodes); above the
//!   edges, since it reaches other nodes with [`net::Client`].
//! - [`server`]: wires the layers into a running server (`xtdb serve` and
//!   the tests).
//! - [`load`]: `xtdb-load`, the load generator and verifier (a client).
//! - [`error`]: the application-level error wrapping the layers' own.
#![deny(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod aggregate;
pub mod cluster;
pub mod error;
pub mod http;
pub mod influxql;
pub mod load;
pub mod net;
pub mod point;
#[cfg(test)]
mod proptest_config;
pub mod runtime;
pub mod server;
pub mod storage;

pub use point::Point;
