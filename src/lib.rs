//! xtdb: a thread-per-core time-series store for industrial tag data.
//!
//! Layout:
//! - [`point`]: the data model, `(tag, timestamp µs, value, quality)`.
//! - [`aggregate`]: pure aggregation kernels of the read side (per-segment
//!   summaries, windowed aggregates, fill, interpolation, plot values,
//!   InfluxQL transforms); no I/O, below storage.
//! - [`storage`]: everything one shard owns (WAL, tag buffers, blocks, chunk
//!   files, recovery). Runs inside one glommio executor; never shared.
//! - [`runtime`]: one pinned executor per CPU, tag ownership and routing
//!   between shards over glommio's channel mesh.
//! - [`net`]: the native wire protocol, the per-shard connection handler and
//!   the [`net::Client`].
//! - [`http`]: the HTTP edge: InfluxDB line-protocol writes, the tag
//!   catalog, a JSON query API and Prometheus `/metrics`.
//! - [`server`]: the entry point `xtdb serve` and the tests share.
//! - [`error`]: the crate's error type; errors name the file, offset or input
//!   they are about.
#![deny(missing_docs)]

pub mod aggregate;
pub mod error;
pub mod http;
pub mod load;
pub mod net;
pub mod point;
pub mod runtime;
pub mod server;
pub mod storage;

pub use error::{Error, Result};
pub use point::Point;
