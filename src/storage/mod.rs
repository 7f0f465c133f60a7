//! Everything one shard owns: its WAL segments, per-tag buffers, chunk files
//! of 16 KiB blocks with their directories, and recovery. A shard lives inside
//! one glommio executor; it is never shared across threads and never blocks
//! the executor.

pub mod block;
pub mod buffer;
pub mod chunk;
pub mod codec;
mod config;
pub mod fault;
pub mod file;
mod flush;
pub mod index;
pub mod keepalive;
mod le;
mod query;
mod recovery;
mod shard;
mod stats;
pub mod wal;

pub use config::{ShardConfig, SyncMode};
pub use shard::{RecoveryReport, Shard};
pub use stats::ShardStats;
