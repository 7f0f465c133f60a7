//! The shard's vocabulary: the [`Command`]s a shard runs (for a client, or
//! for another shard over the mesh), their [`Answer`]s, and the typed
//! [`Failure`] that both protocols decode into and encode from. The native
//! protocol and HTTP each map a `Failure` to their own error code or status
//! in one place, so clients can tell fenced from shutting down from
//! corrupt. Owns the types only; never does I/O.

use std::fmt;
use std::path::PathBuf;

use crate::runtime::report::ShardReport;
use crate::storage;
use crate::storage::catalog::index::{CatalogAnswer, CatalogQuery};
use crate::Point;

/// What a shard is asked to do. A client's command is split by owner and
/// each part runs on the shard that owns its tags (see
/// [`crate::runtime::dispatch`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Write these points (acknowledged once durable in their owners' WALs).
    Write(Vec<Point>),
    /// Points of `tag` with `start <= ts < end`, sorted by timestamp.
    Range {
        /// Tag.
        tag: u32,
        /// Inclusive start, µs.
        start: i64,
        /// Exclusive end, µs.
        end: i64,
    },
    /// Latest point of each tag, in request order.
    Latest(Vec<u32>),
    /// Every shard's counters.
    Stats,
    /// Catalog: ids of these series keys; `create` assigns ids (durably)
    /// to the unknown ones. Runs on shard 0.
    Resolve {
        /// Series keys.
        keys: Vec<String>,
        /// Create missing keys.
        create: bool,
    },
    /// Catalog: series whose key contains `pattern`, by id, at most
    /// `limit`. Runs on shard 0.
    ListTags {
        /// Substring.
        pattern: String,
        /// Most answers.
        limit: usize,
    },
    /// Catalog: an InfluxQL metadata question (measurements, tag keys and
    /// values, field keys, series) for the index. Runs on shard 0.
    Catalog(CatalogQuery),
}

/// A successful answer.
#[derive(Debug)]
pub enum Answer {
    /// The write's points are durable.
    Written(u64),
    /// Range result.
    Points(Vec<Point>),
    /// Latest result, one entry per requested tag.
    Latest(Vec<Option<Point>>),
    /// One shard's counters (from a shard) or every shard's (from dispatch).
    Reports(Vec<ShardReport>),
    /// Catalog ids, one per requested key.
    Ids(Vec<Option<u32>>),
    /// Catalog entries `(id, key)`.
    Tags(Vec<(u32, String)>),
    /// The index's answer to a [`Command::Catalog`].
    Catalog(CatalogAnswer),
}

/// Why a command was not done. Nothing of a failed write was acknowledged
/// (some of its sub-batches may have reached their owners; retrying is safe
/// because a later write of the same `(tag, ts)` replaces the earlier one).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Failure {
    /// The input was refused as a whole; nothing was applied.
    InvalidInput {
        /// What was wrong.
        reason: String,
    },
    /// A point's timestamp is outside the server's accepted window; the
    /// whole write was refused.
    OutOfWindow {
        /// Index of the first offending point in the request.
        index: usize,
        /// Its tag.
        tag: u32,
        /// The window and the offending timestamp.
        reason: String,
    },
    /// A limit was reached (catalog id space, key length, …).
    OverLimit {
        /// Which limit, and by how much.
        reason: String,
    },
    /// An earlier failed durable write fenced this shard: it no longer
    /// acknowledges writes until the server is restarted.
    Fenced {
        /// The shard.
        shard: usize,
        /// The failure that fenced it.
        reason: String,
    },
    /// The shard's storage is closed or closing.
    Closed {
        /// The shard.
        shard: usize,
    },
    /// The server is shutting down and takes no new requests.
    ShuttingDown,
    /// Data on disk failed validation; it is never served.
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Offset of the damaged structure.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// An I/O call failed (ENOSPC included).
    Io {
        /// The shard.
        shard: usize,
        /// The failed call, its file and the OS error.
        reason: String,
        /// Whether it was a full disk.
        no_space: bool,
    },
    /// Routing between shards failed (a shard is gone) or an answer did
    /// not fit the request: a bug, never the client's fault.
    Internal {
        /// What happened.
        reason: String,
    },
}

impl Failure {
    /// A storage error of `shard`, typed.
    pub fn from_storage(shard: usize, e: storage::Error) -> Failure {
        use storage::Error as E;
        match e {
            E::Corrupt {
                path,
                offset,
                reason,
            } => Failure::Corrupt {
                path,
                offset,
                reason,
            },
            E::Fenced { reason } => Failure::Fenced { shard, reason },
            E::Closed => Failure::Closed { shard },
            E::Limit { what, detail } => Failure::OverLimit {
                reason: format!("{what}: {detail}"),
            },
            E::InvalidConfig { .. } => Failure::Internal {
                reason: e.to_string(),
            },
            ref io @ E::Io { .. } => Failure::Io {
                shard,
                reason: io.to_string(),
                no_space: io.is_no_space(),
            },
        }
    }

    /// An unexpected answer kind for `what` (a routing bug).
    pub fn unexpected(what: &str, a: &Answer) -> Failure {
        let kind = match a {
            Answer::Written(_) => "written",
            Answer::Points(_) => "points",
            Answer::Latest(_) => "latest",
            Answer::Reports(_) => "reports",
            Answer::Ids(_) => "ids",
            Answer::Tags(_) => "tags",
            Answer::Catalog(_) => "catalog",
        };
        Failure::Internal {
            reason: format!("{what}: unexpected {kind} answer"),
        }
    }

    /// A short stable name of the kind, for clients and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::InvalidInput { .. } => "invalid_input",
            Failure::OutOfWindow { .. } => "out_of_window",
            Failure::OverLimit { .. } => "over_limit",
            Failure::Fenced { .. } => "fenced",
            Failure::Closed { .. } => "closed",
            Failure::ShuttingDown => "shutting_down",
            Failure::Corrupt { .. } => "corrupt",
            Failure::Io { no_space: true, .. } => "no_space",
            Failure::Io { .. } => "io",
            Failure::Internal { .. } => "internal",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::InvalidInput { reason } => write!(f, "invalid input: {reason}"),
            Failure::OutOfWindow { reason, .. } => f.write_str(reason),
            Failure::OverLimit { reason } => write!(f, "over limit: {reason}"),
            Failure::Fenced { shard, reason } => write!(
                f,
                "shard {shard} fenced after a failed durable write (restart the server): {reason}"
            ),
            Failure::Closed { shard } => write!(f, "shard {shard} is closed"),
            Failure::ShuttingDown => f.write_str("server is shutting down"),
            Failure::Corrupt {
                path,
                offset,
                reason,
            } => write!(
                f,
                "corruption in {} at offset {offset}: {reason}",
                path.display()
            ),
            Failure::Io { shard, reason, .. } => write!(f, "shard {shard}: {reason}"),
            Failure::Internal { reason } => write!(f, "internal error: {reason}"),
        }
    }
}

/// What a shard answers.
pub type Reply = Result<Answer, Failure>;
