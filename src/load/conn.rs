//! The one seam between the load generator and the network: the calls of
//! `xtdb::net::Client` that xtdb-load uses, as a trait, so every command is
//! written once against them. The only implementation is the real client;
//! there is no fake server.
//!
//! Futures here are `!Send`: connections live inside one glommio executor.

use crate::{Point, Result};

/// A connection to an xtdb server, one request outstanding at a time.
#[allow(async_fn_in_trait)]
pub trait Conn: Sized + 'static {
    /// Connects to `addr` (`host:port`).
    async fn connect(addr: &str) -> Result<Self>;
    /// Writes `points`; returns how many the server acknowledged as durable.
    async fn write(&mut self, points: &[Point]) -> Result<u64>;
    /// Points of `tag` with `start <= ts < end`, sorted by timestamp.
    async fn range(&mut self, tag: u32, start: i64, end: i64) -> Result<Vec<Point>>;
    /// The latest point of each tag.
    async fn latest(&mut self, tags: &[u32]) -> Result<Vec<Option<Point>>>;
    /// The server's counters, e.g. `("total.points_written", n)`.
    async fn stats(&mut self) -> Result<Vec<(String, u64)>>;
}

impl Conn for crate::net::Client {
    async fn connect(addr: &str) -> Result<Self> {
        crate::net::Client::connect(addr).await
    }
    async fn write(&mut self, points: &[Point]) -> Result<u64> {
        crate::net::Client::write(self, points).await
    }
    async fn range(&mut self, tag: u32, start: i64, end: i64) -> Result<Vec<Point>> {
        crate::net::Client::range(self, tag, start, end).await
    }
    async fn latest(&mut self, tags: &[u32]) -> Result<Vec<Option<Point>>> {
        crate::net::Client::latest(self, tags).await
    }
    async fn stats(&mut self) -> Result<Vec<(String, u64)>> {
        crate::net::Client::stats(self).await
    }
}

/// The connection type the commands use.
pub type NetConn = crate::net::Client;

/// A short name for the kind of an error, for "errors by kind" tables.
pub fn error_kind(e: &crate::Error) -> String {
    use crate::Error;
    match e {
        Error::Io { source, .. } => format!("io:{:?}", source.kind()),
        Error::Corrupt { .. } => "corrupt".into(),
        Error::InvalidInput(_) => "invalid_input".into(),
        Error::Fenced(_) => "fenced".into(),
        Error::Closed => "closed".into(),
        Error::Protocol(_) => "protocol".into(),
        Error::Remote { code, .. } => format!("remote:{code}"),
        #[allow(unreachable_patterns)]
        _ => "other".into(),
    }
}

/// Whether the connection must be dropped and re-opened after `e`: anything
/// but an error frame after which the server keeps the connection (see the
/// error-code table in `crate::net::protocol`: codes 1-4 and 101 close it).
pub fn is_connection_error(e: &crate::Error) -> bool {
    match e {
        crate::Error::Remote { code, .. } => matches!(code, 1..=4 | 101),
        crate::Error::InvalidInput(_) => false,
        _ => true,
    }
}
