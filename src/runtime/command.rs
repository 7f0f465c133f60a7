//! The shard's vocabulary: the [`Command`]s a shard runs (for a client, or
//! for another shard over the mesh), their [`Answer`]s, and the typed
//! [`Failure`] that both protocols decode into and encode from. The native
//! protocol and HTTP each map a `Failure` to their own error code or status
//! in one place, so clients can tell fenced from shutting down from
//! corrupt. Owns the types only; never does I/O.

use std::fmt;
use std::path::PathBuf;

use crate::aggregate::{Fill, Func, Interp, Partial};
use crate::runtime::report::ShardReport;
use crate::storage;
use crate::storage::backup;
use crate::storage::catalog::index::{CatalogAnswer, CatalogQuery};
use crate::Point;

/// What an aggregate-family request computes for each of its tags. Times
/// are µs since the Unix epoch; every mode answers one [`Row`] list per
/// tag (see [`Answer::Rows`]), except [`AggQuery::Partials`]
/// ([`Answer::Partials`]).
///
/// Which points count: a NaN value is invisible to every mode, and with
/// `good_only` so is a point of quality below [`crate::aggregate::GOOD`]
/// (192). Duplicates of a `(tag, ts)` resolve exactly as in `range` (the
/// later write wins) before anything is computed. Points older than the
/// retention window are never seen.
#[derive(Clone, Debug, PartialEq)]
pub enum AggQuery {
    /// `func` per window of width `every` over `[start, end)`, windows
    /// aligned to the epoch plus `offset` (InfluxQL `GROUP BY time(every,
    /// offset)`, see [`crate::aggregate::WindowSpec`]), then `fill` for the
    /// empty windows. One row per window kept, labelled with the window's
    /// aligned start (which may be before `start`); `None` is null.
    ///
    /// The value in force at `start` (the last visible point before it) and
    /// the first visible point at or after `end` are looked up by the
    /// engine: time-weighted averages and integrals use them as the
    /// kernels say, and `Fill::Previous { before: None }` is filled before
    /// the first non-empty window with the value in force at `start` (what
    /// InfluxDB cannot, influxdb#6878); `before: Some(v)` uses `v`. An edge
    /// that must reproduce InfluxDB exactly asks for `Fill::None` and fills
    /// with [`crate::aggregate::fill`] itself.
    Windows {
        /// Inclusive start.
        start: i64,
        /// Exclusive end.
        end: i64,
        /// Window width (> 0).
        every: i64,
        /// Window offset (any value; normalised into `[0, every)`).
        offset: i64,
        /// The function.
        func: Func,
        /// Fill for empty windows.
        fill: Fill,
    },
    /// The [`Partial`] of each window (`None` when empty), for merging
    /// across series at the edge (InfluxQL without `GROUP BY` a tag);
    /// windows as in [`AggQuery::Windows`].
    Partials {
        /// Inclusive start.
        start: i64,
        /// Exclusive end.
        end: i64,
        /// Window width (> 0).
        every: i64,
        /// Window offset.
        offset: i64,
        /// The partials must carry `m2` (for `stddev`); without it, the
        /// shard may answer from per-interval rollups, which keep none.
        m2: bool,
    },
    /// Values at `start, start + every, …` up to and including `end` (PI
    /// InterpolatedValues, TDengine `INTERP`), see
    /// [`crate::aggregate::Interpolator`]: one row per sample time, `None`
    /// before the first point (and, linear, after the last).
    Interpolated {
        /// First sample time.
        start: i64,
        /// Last possible sample time (inclusive).
        end: i64,
        /// Sample interval (> 0).
        every: i64,
        /// Step (previous value holds) or linear.
        interp: Interp,
    },
    /// PI PlotValues over `[start, end)` for `pixels` intervals (see
    /// [`crate::aggregate::Plotter`]): per interval its first, last, min
    /// and max points, in time order (at most `4 × pixels` rows).
    Plot {
        /// Inclusive start.
        start: i64,
        /// Exclusive end.
        end: i64,
        /// Intervals (> 0).
        pixels: usize,
    },
    /// PI AtOrBefore: the last visible point at or before `time` (zero or
    /// one row, labelled with the point's own timestamp).
    AtOrBefore {
        /// The time.
        time: i64,
    },
}

impl AggQuery {
    /// The name of the mode, for errors and metrics.
    pub fn mode(&self) -> &'static str {
        match self {
            AggQuery::Windows { .. } => "aggregate",
            AggQuery::Partials { .. } => "partials",
            AggQuery::Interpolated { .. } => "interpolated",
            AggQuery::Plot { .. } => "plot",
            AggQuery::AtOrBefore { .. } => "at_or_before",
        }
    }
}

impl AggQuery {
    /// Rows the answer for one tag can hold at most (windows, samples, 4 ×
    /// pixels, or 1), or why the query is malformed. Pure arithmetic: no
    /// allocation, whatever the input.
    pub fn rows_per_tag(&self) -> Result<u128, crate::aggregate::AggError> {
        use crate::aggregate::{AggError, WindowSpec};
        match *self {
            AggQuery::Windows {
                start,
                end,
                every,
                offset,
                ..
            }
            | AggQuery::Partials {
                start,
                end,
                every,
                offset,
                ..
            } => WindowSpec::new(start, end, every, offset, usize::MAX).map(|s| s.len() as u128),
            AggQuery::Interpolated {
                start, end, every, ..
            } => {
                if every <= 0 {
                    return Err(AggError::BadEvery(every));
                }
                if start > end {
                    return Err(AggError::BadRange { start, end });
                }
                Ok(((i128::from(end) - i128::from(start)) / i128::from(every) + 1) as u128)
            }
            AggQuery::Plot { start, end, pixels } => {
                if start > end {
                    return Err(AggError::BadRange { start, end });
                }
                if pixels == 0 {
                    return Err(AggError::BadParam {
                        name: "pixels",
                        value: 0.0,
                    });
                }
                Ok(4 * pixels as u128)
            }
            AggQuery::AtOrBefore { .. } => Ok(1),
        }
    }
}

/// One output row: a time (µs) and a value (`None`: null).
pub type Row = (i64, Option<f64>);

/// The most points one [`Command::Range`] answers, counted before reading:
/// above the 1.6 M points one native answer frame holds (the count bound
/// includes duplicates and the whole of the edge segments, so an answer that
/// fits is not refused for that slack), and bounded, so one request never
/// decodes a whole series' history into memory. Longer ranges are read in
/// chunks (the HTTP range stream and InfluxQL do).
pub const RANGE_MAX_POINTS: u64 = 3_000_000;

/// What a shard is asked to do. A client's command is split by owner and
/// each part runs on the shard that owns its tags (see
/// [`crate::runtime::dispatch`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Write these points (acknowledged once durable in their owners' WALs).
    Write(Vec<Point>),
    /// Points of `tag` with `start <= ts < end`, sorted by timestamp; a
    /// range counted (from the index and memory, before any block is read)
    /// past [`RANGE_MAX_POINTS`] is refused ([`Failure::OverLimit`]).
    Range {
        /// Tag.
        tag: u32,
        /// Inclusive start, µs.
        start: i64,
        /// Exclusive end, µs.
        end: i64,
    },
    /// [`Command::Range`], answered as [`Answer::Pieces`] (the disk
    /// segments' encoded payloads, for the asker to decode) when the
    /// range's runs follow one another in time, else as
    /// [`Answer::Points`]. Same refusal past [`RANGE_MAX_POINTS`].
    RangePieces {
        /// Tag.
        tag: u32,
        /// Inclusive start, µs.
        start: i64,
        /// Exclusive end, µs.
        end: i64,
    },
    /// An upper bound of the points of `tag` with `start <= ts < end`
    /// ([`Answer::Count`]): the whole counts of the overlapping segments
    /// (from the index, no block read) plus the points in memory, so a
    /// range can be refused before any of it is decoded.
    CountBound {
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
    /// Aggregates computed next to the data (see [`AggQuery`]) for each of
    /// `tags`, answered in request order ([`Answer::Rows`] or
    /// [`Answer::Partials`]). Dispatch sends one message per owning shard
    /// with that shard's tags, and refuses a request whose answer could
    /// exceed the server's row limit (tags × windows, samples or 4 ×
    /// pixels) with [`Failure::OverLimit`] naming the limit.
    Aggregate {
        /// Tags (duplicates allowed; each gets its own answer).
        tags: Vec<u32>,
        /// What to compute.
        query: AggQuery,
        /// Count only points of good quality (>= 192).
        good_only: bool,
    },
    /// An online backup of the whole data directory into `to` (a path on
    /// the server's machine), see [`crate::storage::backup`]. Dispatch runs
    /// it as [`BackupStep`]s: begin, every shard's cut, the catalog, finish.
    Backup {
        /// Target directory (absolute).
        to: PathBuf,
        /// Hard-link sealed chunks when the target is on the same
        /// filesystem (otherwise always copy).
        link: bool,
        /// Bytes per second each shard's backup reads and writes are paced
        /// at (0: unpaced).
        rate: u64,
    },
    /// One step of a backup (sent by dispatch, not by clients).
    BackupStep {
        /// Target directory.
        to: PathBuf,
        /// The step.
        step: BackupStep,
    },
}

/// The steps of a [`Command::Backup`].
#[derive(Clone, Debug, PartialEq)]
pub enum BackupStep {
    /// Prepare and lock the target; answers its lock and the previous
    /// backup's files ([`Answer::BackupFiles`]).
    Begin,
    /// Take this shard's cut ([`Answer::BackupPart`]).
    Shard {
        /// Hard links allowed.
        link: bool,
        /// Pace, bytes per second (0: unpaced).
        rate: u64,
        /// The previous backup's files.
        prev: Vec<backup::Entry>,
    },
    /// Copy the catalog, token file and shard count (shard 0, after every
    /// shard's cut; [`Answer::BackupPart`]).
    Catalog {
        /// Pace, bytes per second (0: unpaced).
        rate: u64,
    },
    /// Delete what the backup does not list and write the manifest
    /// ([`Answer::BackupDone`]).
    Finish {
        /// Shards.
        shards: usize,
        /// Every file of the backup.
        entries: Vec<backup::Entry>,
        /// How they got there.
        tally: backup::Tally,
        /// When the backup started (µs since the epoch).
        started_us: i64,
    },
}

/// What a finished backup holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BackupSummary {
    /// How its files got there.
    pub tally: backup::Tally,
    /// Wall time from start to the manifest, µs.
    pub micros: u64,
}

/// A successful answer.
#[derive(Debug)]
pub enum Answer {
    /// The write's points are durable.
    Written(u64),
    /// Range result.
    Points(Vec<Point>),
    /// [`Command::RangePieces`]' answer when its runs do not overlap.
    Pieces(crate::storage::Pieces),
    /// [`Command::CountBound`]'s answer: at most `points` points, all
    /// within `[min_ts, max_ts]` (no points: `min_ts > max_ts`).
    Count {
        /// Upper bound of the points.
        points: u64,
        /// No point is earlier.
        min_ts: i64,
        /// No point is later.
        max_ts: i64,
    },
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
    /// Aggregate rows, one list per requested tag, in request order.
    Rows(Vec<Vec<Row>>),
    /// Per-window partials, one list per requested tag, in request order.
    Partials(Vec<Vec<Option<Partial>>>),
    /// The target's lock, held by dispatch until the backup has ended, and
    /// the previous backup's files (a backup's first step).
    BackupFiles(backup::TargetLock, Vec<backup::Entry>),
    /// What one shard (or the catalog step) put into a backup.
    BackupPart(backup::Part),
    /// A finished backup.
    BackupDone(BackupSummary),
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
    /// Cluster mode: the replicated log or a partition's owner cannot be
    /// reached now (no quorum, no owner, the owner moved); nothing of a
    /// failed write was acknowledged and retrying is safe.
    Unavailable {
        /// Which partition or node, and what failed.
        reason: String,
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
            E::Query { reason } => Failure::InvalidInput { reason },
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
            Answer::Pieces(_) => "pieces",
            Answer::Count { .. } => "count",
            Answer::Latest(_) => "latest",
            Answer::Reports(_) => "reports",
            Answer::Ids(_) => "ids",
            Answer::Tags(_) => "tags",
            Answer::Catalog(_) => "catalog",
            Answer::Rows(_) => "rows",
            Answer::Partials(_) => "partials",
            Answer::BackupFiles(..) | Answer::BackupPart(_) => "backup step",
            Answer::BackupDone(_) => "backup",
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
            Failure::Unavailable { .. } => "unavailable",
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
            Failure::Unavailable { reason } => write!(f, "unavailable: {reason}"),
            Failure::Internal { reason } => write!(f, "internal error: {reason}"),
        }
    }
}

/// What a shard answers.
pub type Reply = Result<Answer, Failure>;
