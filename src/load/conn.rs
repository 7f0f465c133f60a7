//! The one seam between the load generator and the network: the calls of
//! `xtdb::net::Client` that xtdb-load uses, as a trait, so every command is
//! written once against them. The only implementation is the real client;
//! there is no fake server.
//!
//! Futures here are `!Send`: connections live inside one glommio executor.

use crate::error::Result;
use crate::net::ClientOptions;
use crate::runtime::command::{AggQuery, Row};
use crate::Point;

/// A connection to an xtdb server, one request outstanding at a time.
#[allow(async_fn_in_trait)]
pub trait Conn: Sized + 'static {
    /// Connects to `addr` (`host:port`) with `opts` (token, TLS).
    async fn connect(addr: &str, opts: &ClientOptions) -> Result<Self>;
    /// Writes `points`; returns how many the server acknowledged as durable.
    async fn write(&mut self, points: &[Point]) -> Result<u64>;
    /// Points of `tag` with `start <= ts < end`, sorted by timestamp.
    async fn range(&mut self, tag: u32, start: i64, end: i64) -> Result<Vec<Point>>;
    /// The latest point of each tag.
    async fn latest(&mut self, tags: &[u32]) -> Result<Vec<Option<Point>>>;
    /// The server's counters, e.g. `("total.points_written", n)`.
    async fn stats(&mut self) -> Result<Vec<(String, u64)>>;
    /// Aggregate rows of `tags` (one list per tag, in order).
    async fn aggregate(
        &mut self,
        tags: &[u32],
        query: &AggQuery,
        good_only: bool,
    ) -> Result<Vec<Vec<Row>>>;
}

impl Conn for crate::net::Client {
    async fn connect(addr: &str, opts: &ClientOptions) -> Result<Self> {
        Ok(crate::net::Client::connect_with(addr, opts).await?)
    }
    async fn write(&mut self, points: &[Point]) -> Result<u64> {
        Ok(crate::net::Client::write(self, points).await?)
    }
    async fn range(&mut self, tag: u32, start: i64, end: i64) -> Result<Vec<Point>> {
        Ok(crate::net::Client::range(self, tag, start, end).await?)
    }
    async fn latest(&mut self, tags: &[u32]) -> Result<Vec<Option<Point>>> {
        Ok(crate::net::Client::latest(self, tags).await?)
    }
    async fn stats(&mut self) -> Result<Vec<(String, u64)>> {
        Ok(crate::net::Client::stats(self).await?)
    }
    async fn aggregate(
        &mut self,
        tags: &[u32],
        query: &AggQuery,
        good_only: bool,
    ) -> Result<Vec<Vec<Row>>> {
        Ok(crate::net::Client::aggregate(self, tags, query, good_only).await?)
    }
}

/// The connection type the commands use.
pub type NetConn = crate::net::Client;

/// A short name for the kind of an error, for "errors by kind" tables.
pub fn error_kind(e: &crate::error::Error) -> String {
    use crate::error::Error;
    match e {
        Error::Client(c) => c.kind(),
        Error::Io { source, .. } => format!("io:{:?}", source.kind()),
        Error::Storage(_) => "storage".into(),
        Error::Config(_) => "invalid_input".into(),
        _ => "other".into(),
    }
}

/// Whether the connection must be dropped and re-opened after `e`: anything
/// but an error frame after which the server keeps the connection (the
/// protocol's one rule, [`crate::net::protocol::code::closes_connection`]),
/// or a request this connection cannot make.
pub fn is_connection_error(e: &crate::error::Error) -> bool {
    match e {
        crate::error::Error::Client(c) => c.closes_connection(),
        crate::error::Error::Config(_) => false,
        _ => true,
    }
}
