//! Everything one shard owns: its WAL segments, per-tag buffers, chunk files
//! of 16 KiB blocks with their directories, recovery, and (on shard 0) the
//! durable tag catalog; the access-token store ([`tokens`]). A shard lives
//! inside one glommio executor; it is never shared across threads and never
//! blocks the executor.
//!
//! Inside, the layers run one way: the pure formats (`codec`, `block`,
//! `rollup`, `wal::format`, `le`) below the file door (`file`, `fault`),
//! the parts of a shard (`memory`, `disk`, `control`, `index`, `wal`)
//! above them, the work on those parts (`flush`, `query`, `aggregate`,
//! `recovery` with `regroup`, `backup`; long steps of it yield through
//! `slice`; what a chunk gathers until it is sealed and the tag buffers grow in `paged`), and [`Shard`], the
//! handle that ties them together, on top.

pub mod ack;
mod aggregate;
pub mod backup;
pub mod block;
pub mod buffer;
pub mod catalog;
pub mod chunk;
pub mod codec;
mod compact;
mod config;
mod control;
mod disk;
pub mod error;
pub mod fault;
pub mod file;
mod flush;
pub mod index;
pub mod keepalive;
mod le;
mod memory;
pub mod paged;
mod query;
pub mod records;
mod recovery;
mod regroup;
pub mod rollup;
mod shard;
mod slice;
pub mod snapshot;
mod stats;
pub mod tokens;
pub mod wal;

pub use config::{ShardConfig, SyncMode};
pub use error::{Error, Result};
pub use query::{Piece, Pieces, RangeAnswer};
pub use shard::{RecoveryReport, Shard};
pub use stats::ShardStats;
