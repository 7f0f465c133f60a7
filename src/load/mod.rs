//! `xtdb-load`: the bundled load generator and verifier. It sizes a machine
//! ("can this box take 100K tags at 1 Hz?") and proves speed and durability.
//!
//! - [`gen`]: deterministic points from `(seed, tag, timestamp)`.
//! - [`acklog`]: the append-only record of acknowledged batches.
//! - [`report`]: histograms, progress lines, JSON.
//! - [`conn`]: the client calls used, as a trait over `xtdb::net::Client`.
//! - [`influx`]: the same writes as InfluxDB line protocol over HTTP.
//! - [`write`], [`verify`], [`query`]: the commands.
//! - [`scenario`]: the original design's figures; [`demo`]: the one-command run.
//! - [`hostile`]: well-behaved HTTP clients beside hostile ones.
//! - [`server`]: starting and stopping an `xtdb serve` process.
//! - [`export`]: `xtdb export`, a server's points as day-partitioned Parquet.
//!
//! Everything that talks to the server runs inside pinned glommio executors;
//! the binary `bin/xtdb-load.rs` only parses arguments. The commands print
//! their reports and progress lines (their output: the `--json` contract is
//! that the last line of stdout is one JSON object); diagnostics go through
//! `log`. A client of the server: it imports the native client and never
//! the server's insides.

pub mod acklog;
pub mod conn;
pub mod demo;
pub mod export;
pub mod gen;
pub mod hostile;
pub mod influx;
pub mod query;
pub mod report;
pub mod scenario;
pub mod server;
pub mod steady;
pub mod summary;
pub mod verify;
pub mod write;
