//! The native wire protocol: framing, encoding and decoding of every message.
//!
//! Owns the byte layout and its validation. It never panics on input: every
//! length is checked before it is used, and every failure is a
//! [`FrameError`] that names what was wrong and whether the stream can still
//! be framed.
//!
//! ## Wire protocol
//!
//! A connection carries frames in both directions. The client sends one
//! request and waits for its answer (the server answers requests of one
//! connection in order). All integers are little-endian.
//!
//! ### Frame header (24 bytes)
//!
//! | offset | size | field | value |
//! | --- | --- | --- | --- |
//! | 0 | 4 | magic | `b"XTDB"` |
//! | 4 | 1 | version | `1` |
//! | 5 | 1 | type | see below |
//! | 6 | 2 | flags | `0` (reserved; must be zero) |
//! | 8 | 8 | request id | chosen by the client, echoed in the answer |
//! | 16 | 4 | payload length | bytes after the header, at most [`MAX_PAYLOAD`] (32 MiB: a batch of [`MAX_POINTS`] fits) |
//! | 20 | 4 | CRC32 | `crc32fast` (CRC-32/ISO-HDLC) of the payload |
//!
//! ### Frame types and payloads
//!
//! A point is 21 bytes: tag `u32`, timestamp µs `i64`, value `f64` (IEEE bits
//! as `u64`), quality `u8`.
//!
//! | type | name | direction | payload |
//! | --- | --- | --- | --- |
//! | `0x01` | write | request | `u32` n, then n points (n ≤ [`MAX_POINTS`]) |
//! | `0x02` | range | request | tag `u32`, start `i64`, end `i64` (start ≤ ts < end) |
//! | `0x03` | latest | request | `u32` n, then n tags `u32` (n ≤ [`MAX_TAGS`]) |
//! | `0x04` | stats | request | empty |
//! | `0x05` | auth | request | the token, UTF-8, 1 to 1,024 bytes (see "Authentication") |
//! | `0x06` | aggregate | request | `u8` mode, `u8` flags (bit 0 good-only; others zero), the mode's fields (see "Aggregates"), then `u32` n and n tags `u32` (n ≤ [`MAX_TAGS`]) |
//! | `0x07` | backup | request | `u8` flags (bit 0: copy sealed chunks, never hard-link; others zero), `u64` pace in bytes per second per shard (0: unpaced), then the target directory, an absolute path on the server's machine, UTF-8, 1 to 4,096 bytes (see "Backup") |
//! | `0x08` | count bound | request | tag `u32`, start `i64`, end `i64` (start ≤ ts < end; see "Count bound") |
//! | `0x09` | range pieces | request | tag `u32`, start `i64`, end `i64`: a range whose answer may come as pieces (see "Range pieces") |
//! | `0x81` | ack | answer to write | `u64` points acknowledged (durable in their owner's WAL) |
//! | `0x82` | points | answer to range | `u32` n, then n points, sorted by timestamp |
//! | `0x83` | latest result | answer to latest | `u32` n, then per requested tag in order: `u8` 0 (absent) or 1 followed by a point |
//! | `0x84` | stats result | answer to stats | `u32` n, then n × (`u16` name length, UTF-8 name, `u64` value) |
//! | `0x85` | auth ok | answer to auth | `u8` permissions (bit 0 read, 1 write, 2 admin), then the token's name, UTF-8 (empty when the server runs with auth off) |
//! | `0x86` | rows | answer to aggregate (modes 1, 3, 4, 5) | `u32` n, then per requested tag in order: `u32` m and m rows of ts `i64`, `u8` 0 (null) or 1, value `f64` (17 bytes; the value is 0 when null) |
//! | `0x87` | partials | answer to aggregate (mode 2) | `u32` n, then per tag: `u32` m and m windows of `u8` 0 (empty) or 1 followed by count `u64`, good `u64`, sum, m2, min, max `f64`, first ts `i64`, first `f64`, last ts `i64`, last `f64` (80 bytes) |
//! | `0x88` | backup done | answer to backup | `u64` × 7: files linked, bytes linked, files copied, bytes copied, files unchanged (already in the target), bytes unchanged, wall time µs |
//! | `0x89` | count | answer to count bound | points `u64` (an upper bound), min ts `i64`, max ts `i64` (no point is outside `[min, max]`; no points: min > max) |
//! | `0x8A` | pieces | answer to range pieces | tag `u32`, start `i64`, end `i64` (the range answered), `u32` n, then n pieces in time order (see "Range pieces") |
//! | `0xFF` | error | answer to anything | `u16` code, then a UTF-8 message (rest of the payload) |
//!
//! ### Aggregates
//!
//! The request's mode and its fields (all times µs; the semantics are
//! [`crate::runtime::command::AggQuery`]'s):
//!
//! | mode | name | fields after the flags |
//! | --- | --- | --- |
//! | 1 | windows | start `i64`, end `i64`, every `i64`, offset `i64`, func (18 bytes, below), fill `u8` (0 none, 1 null, 2 value, 3 previous, 4 linear), fill value `f64` (0 unless fill is 2) |
//! | 2 | partials | start `i64`, end `i64`, every `i64`, offset `i64` |
//! | 3 | interpolated | start `i64`, end `i64` (inclusive), every `i64`, interp `u8` (0 step, 1 linear) |
//! | 4 | plot | start `i64`, end `i64`, pixels `u32` |
//! | 5 | at or before | time `i64` |
//!
//! func: `u8` code (1 count, 2 sum, 3 mean, 4 min, 5 max, 6 first, 7 last,
//! 8 spread, 9 stddev, 10 median, 11 percentile, 12 integral, 13
//! percent_good, 14 time-weighted average), `f64` p (percentile; else 0),
//! `i64` unit (integral, µs; else 0), `u8` variant (integral: 0 inside, 1
//! InfluxQL; time-weighted: 0 step, 1 linear; else 0). Fields a function
//! does not use must be zero, so every request has one encoding. An answer
//! over the server's row limit (`--max-query-rows`, tags × windows, samples
//! or 4 × pixels) is error 8 naming the limit; bad parameters are error 11.
//!
//! ### Count bound
//!
//! What a range of the same `tag`, `start` and `end` would return at
//! most, answered from the shard's index and memory without reading a
//! block: the whole count of every on-disk segment overlapping the range
//! (points of edge segments outside it and duplicates across segments
//! included) plus the points in memory inside it. `min` and `max` bound
//! the timestamps of the points a range would return. So a client can
//! size or split a large range before asking for it. `start >= end`
//! answers 0 points (min > max).
//!
//! ### Range pieces
//!
//! A range asked with type `0x09` is answered with `0x82` points (exactly
//! what `0x02` answers) when the range's runs overlap in time (later
//! writes must win), and otherwise with `0x8A` pieces: the shard's on-disk
//! segments overlapping the range, each its verified compressed payload as
//! it is on disk (the crate's codec, [`crate::storage::codec`]), and its
//! memory runs as points, in time order. No piece's points overlap the
//! next's. A piece is `u8` 0 and points: `u32` m, then m × (ts `i64`,
//! value `f64`, quality `u8`; 17 bytes, the frame's tag), sorted, already
//! inside the range; or `u8` 1 and a codec segment: `u32` count, min ts
//! `i64`, max ts `i64`, `u32` length, then the payload (quality runs and
//! bit stream, [`crate::storage::codec::split_payload`]), whose points all
//! lie in `[min, max]` and are clipped by the receiver. The answer is the
//! pieces' points with start ≤ ts < end (the frame's range: the start may
//! be raised to the retention cutoff), in order; [`pieces_points`] decodes
//! it, and any inconsistency (a payload that does not decode to its count,
//! points outside their piece's span, pieces out of order, a count the
//! bytes cannot hold) is an error, never points. An older server answers
//! `0x09` with error 6; a client then asks `0x02`.
//!
//! ### Backup
//!
//! A backup needs the `admin` permission and answers once the manifest is
//! written (it may take minutes: the client waits without a timeout). A
//! bad target (relative, overlapping the data directory, not empty and not
//! a backup, or in use by another backup running into it) is error 11; an
//! I/O failure is error 100 and leaves the target
//! without a manifest. Progress: the `backup_bytes` and `backup_files`
//! counters of STATS grow while it runs. See
//! [`crate::storage::backup`] for what is copied and how.
//!
//! ### Error codes
//!
//! | code | meaning | connection after it |
//! | --- | --- | --- |
//! | 1 | bad magic | closed (the stream cannot be framed) |
//! | 2 | unsupported version | closed |
//! | 3 | payload length over the 32 MiB limit | closed |
//! | 4 | truncated frame (EOF inside a frame) | closed |
//! | 5 | CRC mismatch | kept |
//! | 6 | unknown frame type or non-zero flags | kept |
//! | 7 | malformed payload (lengths inconsistent) | kept |
//! | 8 | too many points / tags in one request, or an answer that would exceed the frame limit (query a narrower range) | kept |
//! | 9 | timeout: a started frame did not fully arrive within the frame timeout | closed |
//! | 10 | a point's timestamp is outside the server's accepted window (the whole write is refused) | kept |
//! | 11 | the request was refused as invalid (nothing of it applied) | kept |
//! | 20 | authentication required: the server runs with auth on and the connection's first frame was not AUTH | closed |
//! | 21 | authentication failed: unknown or revoked token, a malformed AUTH frame, or the connection's token was revoked since | closed |
//! | 22 | permission denied: the connection's token lacks the permission the request needs (nothing of it applied) | kept |
//! | 100 | storage failed the request (an I/O error, ENOSPC included); nothing of it was acknowledged | kept |
//! | 101 | server is shutting down (or the shard's storage is closed) | closed |
//! | 102 | internal error (routing between shards failed) | kept |
//! | 103 | connection limit reached (sent instead of serving a new connection) | closed |
//! | 104 | a shard is fenced after a failed durable write: it acknowledges no write until the server is restarted | kept |
//! | 105 | data on disk failed validation (the message names file and offset); it is never served | kept |
//!
//! Which codes close the connection is [`code::closes_connection`], the one
//! place both the server and the clients read it from. How a
//! [`Failure`] becomes a code is [`failure_code`].
//!
//! ### Authentication
//!
//! With `xtdb serve --auth on`, the first frame of a connection must be
//! AUTH with a token (`xtdb token create`). Anything else first is answered
//! with error 20 and the connection is closed, without reading its payload;
//! an AUTH with a token that is not live gets error 21 and the close. The
//! token is checked once per connection; a connection whose token is
//! revoked later gets error 21 at its next request (the server re-reads the
//! token file within a second, or on SIGHUP). Writes need the `write`
//! permission; range, count bound, latest, aggregate and stats need `read`; a request without it
//! gets error 22 and the connection stays open. A peer failing often has
//! its refusals delayed (up to 2 s). With auth off an AUTH frame is
//! answered "auth ok" with every permission, whatever the token.
//!
//! On a TLS port (`--tls-cert`), all of this runs inside TLS; a plain
//! connection there fails its handshake and is closed.
//!
//! ### Limits (see [`crate::net::limits::WireLimits`])
//!
//! A connection with no request started for the idle timeout (default
//! 600 s) is closed without an answer. Once a frame's first byte has
//! arrived, the rest of it must arrive within the frame timeout (default
//! 30 s), and an answer must be read by the client within it too.
//!
//! ### Values
//!
//! Values are stored bit-exact, NaN (with its payload) and ±infinity
//! included: a historian records what the device reported, and the quality
//! byte says whether it is good. (The HTTP line protocol has no syntax for
//! them and refuses them.)
//!
//! ### Stats names
//!
//! `shards` (count), then for each scope `shardN` and `total`: every
//! [`crate::storage::ShardStats`] field (`points_written`, `wal_syncs`,
//! `wal_synced_records`, `wal_max_group`, `flushes`, `flush_micros`,
//! `points_buffered`, ...), plus `wal_group_avg` (records per sync),
//! `points_per_sec` (average since start), `ack_count` and
//! `ack_p50_us` / `ack_p99_us` / `ack_p999_us` / `ack_max_us`: the write-ack
//! latency of client batches *read* by that shard, from the moment their
//! header was read to the moment every sub-batch was durable. `shardN.cpu`
//! and `shardN.uptime_ms` / `total.uptime_ms` complete the set.
//!
//! A write is acknowledged only after every point of it is durable in the WAL
//! of the shard that owns its tag. An error answer to a write means the
//! write as a whole was not acknowledged: some of its sub-batches may have
//! reached their owners (retrying is safe: a later write of the same
//! `(tag, ts)` replaces the earlier one).

use crate::aggregate::{Fill, Func, IntegralMode, Interp, Partial, Sample};
use crate::runtime::command::{
    AggQuery, Answer, BackupSummary, Command, Failure, Reply, Row, RANGE_MAX_POINTS,
};
use crate::runtime::report::named_counters;
use crate::storage::backup::Tally;
use crate::storage::{Piece, Pieces};
use crate::Point;

/// Frame magic, `b"XTDB"`.
pub const MAGIC: [u8; 4] = *b"XTDB";
/// Protocol version spoken by this build.
pub const VERSION: u8 = 1;
/// Header size in bytes.
pub const HEADER_LEN: usize = 24;
/// Largest payload accepted, in either direction (32 MiB, so that a batch
/// of [`MAX_POINTS`] points, 21 MB, fits in one frame).
pub const MAX_PAYLOAD: usize = 32 << 20;
/// Most points accepted in one write request.
pub const MAX_POINTS: usize = 1_000_000;
/// Most tags accepted in one latest request.
pub const MAX_TAGS: usize = 1_000_000;
/// Encoded size of one point.
pub const POINT_LEN: usize = 21;
/// Encoded size of one aggregate row.
pub const ROW_LEN: usize = 17;

/// Frame type codes.
pub mod kind {
    /// Write batch request.
    pub const WRITE: u8 = 0x01;
    /// Range query request.
    pub const RANGE: u8 = 0x02;
    /// Latest query request.
    pub const LATEST: u8 = 0x03;
    /// Stats request.
    pub const STATS: u8 = 0x04;
    /// Authentication request.
    pub const AUTH: u8 = 0x05;
    /// Aggregate request (windows, partials, interpolated, plot, at or
    /// before).
    pub const AGGREGATE: u8 = 0x06;
    /// Online backup request.
    pub const BACKUP: u8 = 0x07;
    /// Count-bound request (an upper bound of a range's points).
    pub const COUNT_BOUND: u8 = 0x08;
    /// Range request whose answer may be pieces ([`PIECES`]) or points.
    pub const RANGE_PIECES: u8 = 0x09;
    /// Write acknowledgement.
    pub const ACK: u8 = 0x81;
    /// Range answer.
    pub const POINTS: u8 = 0x82;
    /// Latest answer.
    pub const LATEST_RESULT: u8 = 0x83;
    /// Stats answer.
    pub const STATS_RESULT: u8 = 0x84;
    /// Authentication answer.
    pub const AUTH_OK: u8 = 0x85;
    /// Aggregate rows answer.
    pub const ROWS: u8 = 0x86;
    /// Aggregate partials answer.
    pub const PARTIALS: u8 = 0x87;
    /// Backup answer.
    pub const BACKUP_DONE: u8 = 0x88;
    /// Count-bound answer.
    pub const COUNT: u8 = 0x89;
    /// Range-pieces answer: encoded segments and points.
    pub const PIECES: u8 = 0x8A;
    /// Error answer.
    pub const ERROR: u8 = 0xFF;
}

/// Error codes carried by error frames.
pub mod code {
    /// Bad magic.
    pub const BAD_MAGIC: u16 = 1;
    /// Unsupported version.
    pub const BAD_VERSION: u16 = 2;
    /// Payload length over the limit.
    pub const TOO_LARGE: u16 = 3;
    /// EOF inside a frame.
    pub const TRUNCATED: u16 = 4;
    /// CRC mismatch.
    pub const BAD_CRC: u16 = 5;
    /// Unknown frame type or flags.
    pub const UNKNOWN_TYPE: u16 = 6;
    /// Payload lengths inconsistent.
    pub const MALFORMED: u16 = 7;
    /// Too many points or tags.
    pub const TOO_MANY: u16 = 8;
    /// A started frame did not arrive within the frame timeout.
    pub const TIMEOUT: u16 = 9;
    /// A timestamp outside the accepted window.
    pub const OUT_OF_WINDOW: u16 = 10;
    /// The request was refused as invalid.
    pub const INVALID_INPUT: u16 = 11;
    /// Authentication required: the first frame was not AUTH.
    pub const AUTH_REQUIRED: u16 = 20;
    /// Authentication failed (unknown or revoked token, malformed AUTH).
    pub const AUTH_FAILED: u16 = 21;
    /// The token lacks the permission the request needs.
    pub const FORBIDDEN: u16 = 22;
    /// Storage refused or failed.
    pub const STORAGE: u16 = 100;
    /// Server shutting down.
    pub const SHUTTING_DOWN: u16 = 101;
    /// Internal routing failure.
    pub const INTERNAL: u16 = 102;
    /// Connection limit reached.
    pub const BUSY: u16 = 103;
    /// A shard is fenced after a failed durable write.
    pub const FENCED: u16 = 104;
    /// Data on disk failed validation.
    pub const CORRUPT: u16 = 105;
    /// Cluster mode: the replicated log or a partition's owner cannot be
    /// reached now; retrying is safe.
    pub const UNAVAILABLE: u16 = 106;

    /// Whether the server closes the connection after an error frame with
    /// this code (the stream can no longer be framed, or the server is
    /// going away).
    pub fn closes_connection(code: u16) -> bool {
        matches!(
            code,
            BAD_MAGIC
                | BAD_VERSION
                | TOO_LARGE
                | TRUNCATED
                | TIMEOUT
                | SHUTTING_DOWN
                | BUSY
                | AUTH_REQUIRED
                | AUTH_FAILED
        )
    }
}

/// The error code a [`Failure`] is answered with.
pub fn failure_code(f: &Failure) -> u16 {
    match f {
        Failure::InvalidInput { .. } => code::INVALID_INPUT,
        Failure::OutOfWindow { .. } => code::OUT_OF_WINDOW,
        Failure::OverLimit { .. } => code::TOO_MANY,
        Failure::Fenced { .. } => code::FENCED,
        Failure::Closed { .. } | Failure::ShuttingDown => code::SHUTTING_DOWN,
        Failure::Corrupt { .. } => code::CORRUPT,
        Failure::Io { .. } => code::STORAGE,
        Failure::Unavailable { .. } => code::UNAVAILABLE,
        Failure::Internal { .. } => code::INTERNAL,
    }
}

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Frame type.
    pub kind: u8,
    /// Request id.
    pub id: u64,
    /// Payload length.
    pub len: u32,
    /// CRC32 of the payload.
    pub crc: u32,
}

/// Why a frame was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameError {
    /// Error code for the error frame.
    pub code: u16,
    /// Human-readable reason.
    pub message: String,
    /// Request id, when the header could be read.
    pub id: u64,
}

impl FrameError {
    fn new(code: u16, id: u64, message: impl Into<String>) -> Self {
        FrameError {
            code,
            message: message.into(),
            id,
        }
    }

    /// Whether the stream can still be framed after this error (the
    /// connection may go on); otherwise the server answers and closes.
    pub fn recoverable(&self) -> bool {
        !code::closes_connection(self.code)
    }
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "frame error {}: {}", self.code, self.message)
    }
}

/// Longest backup target path a BACKUP frame may carry, bytes.
pub const MAX_PATH_LEN: usize = 4096;

/// Longest token an AUTH frame may carry, bytes.
pub const MAX_AUTH_LEN: usize = 1024;

/// A token on the wire; its `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes)", self.0.len())
    }
}

/// A request from a client.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// Write these points.
    Write(Vec<Point>),
    /// Points of `tag` with `start <= ts < end`.
    Range {
        /// Tag.
        tag: u32,
        /// Inclusive start, µs.
        start: i64,
        /// Exclusive end, µs.
        end: i64,
    },
    /// Points of `tag` with `start <= ts < end`, answered as pieces
    /// when they do not overlap ([`Command::RangePieces`]).
    RangePieces {
        /// Tag.
        tag: u32,
        /// Inclusive start, µs.
        start: i64,
        /// Exclusive end, µs.
        end: i64,
    },
    /// An upper bound of the points of `tag` with `start <= ts < end`
    /// ([`Command::CountBound`]).
    CountBound {
        /// Tag.
        tag: u32,
        /// Inclusive start, µs.
        start: i64,
        /// Exclusive end, µs.
        end: i64,
    },
    /// Latest point of each tag.
    Latest(Vec<u32>),
    /// Server counters.
    Stats,
    /// Authenticate this connection with a token.
    Auth(Secret),
    /// Aggregates of many tags ([`Command::Aggregate`]).
    Aggregate {
        /// Tags, answered in this order.
        tags: Vec<u32>,
        /// What to compute.
        query: AggQuery,
        /// Good-quality points only.
        good_only: bool,
    },
    /// An online backup into `to` ([`Command::Backup`]).
    Backup {
        /// Target directory on the server's machine.
        to: String,
        /// Hard-link sealed chunks when possible.
        link: bool,
        /// Pace, bytes per second per shard (0: unpaced).
        rate: u64,
    },
}

impl Request {
    /// The runtime command this request asks for; `None` for AUTH, which
    /// the connection handles itself.
    pub fn into_command(self) -> Option<Command> {
        Some(match self {
            Request::Write(p) => Command::Write(p),
            Request::Range { tag, start, end } => Command::Range { tag, start, end },
            Request::RangePieces { tag, start, end } => Command::RangePieces { tag, start, end },
            Request::CountBound { tag, start, end } => Command::CountBound { tag, start, end },
            Request::Latest(t) => Command::Latest(t),
            Request::Stats => Command::Stats,
            Request::Auth(_) => return None,
            Request::Aggregate {
                tags,
                query,
                good_only,
            } => Command::Aggregate {
                tags,
                query,
                good_only,
            },
            Request::Backup { to, link, rate } => Command::Backup {
                to: to.into(),
                link,
                rate,
            },
        })
    }
}

/// An answer from the server.
#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    /// Points acknowledged.
    Ack(u64),
    /// Range result.
    Points(Vec<Point>),
    /// Range-pieces result, for [`pieces_points`] to decode.
    Pieces(Pieces),
    /// Count-bound result ([`Answer::Count`]).
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
    /// Named counters.
    Stats(Vec<(String, u64)>),
    /// Authenticated.
    AuthOk {
        /// Permission bits (see [`crate::storage::tokens::Perms`]).
        perms: u8,
        /// The token's name (empty with auth off).
        name: String,
    },
    /// Aggregate rows, one list per requested tag.
    Rows(Vec<Vec<Row>>),
    /// Aggregate partials, one list per requested tag.
    Partials(Vec<Vec<Option<Partial>>>),
    /// A finished backup.
    BackupDone(BackupSummary),
    /// Error frame.
    Error {
        /// Code.
        code: u16,
        /// Message.
        message: String,
    },
}

/// Parses a frame header. Checks magic, version, flags and the length limit;
/// not the type (so an unknown type can be skipped after reading its payload).
pub fn decode_header(b: &[u8; HEADER_LEN]) -> Result<Header, FrameError> {
    let id = u64::from_le_bytes(arr(&b[8..16]));
    if b[0..4] != MAGIC {
        return Err(FrameError::new(
            code::BAD_MAGIC,
            0,
            format!("bad magic {:02x?} (expected \"XTDB\")", &b[0..4]),
        ));
    }
    if b[4] != VERSION {
        return Err(FrameError::new(
            code::BAD_VERSION,
            id,
            format!(
                "unsupported protocol version {} (this server speaks {VERSION})",
                b[4]
            ),
        ));
    }
    let len = u32::from_le_bytes(arr(&b[16..20]));
    if len as usize > MAX_PAYLOAD {
        return Err(FrameError::new(
            code::TOO_LARGE,
            id,
            format!("payload length {len} exceeds the frame limit of {MAX_PAYLOAD} bytes"),
        ));
    }
    Ok(Header {
        kind: b[5],
        id,
        len,
        crc: u32::from_le_bytes(arr(&b[20..24])),
    })
}

fn arr<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&s[..N]);
    a
}

/// Checks flags, type and CRC of a frame whose payload has been read.
fn check_body(h: &Header, flags: u16, payload: &[u8]) -> Result<(), FrameError> {
    let crc = crc32fast::hash(payload);
    if crc != h.crc {
        return Err(FrameError::new(
            code::BAD_CRC,
            h.id,
            format!(
                "payload CRC mismatch: header says {:08x}, payload has {crc:08x}",
                h.crc
            ),
        ));
    }
    if flags != 0 {
        return Err(FrameError::new(
            code::UNKNOWN_TYPE,
            h.id,
            format!("unknown flags {flags:#06x}"),
        ));
    }
    Ok(())
}

/// A bounds-checked little-endian reader over an untrusted payload.
struct Reader<'a> {
    b: &'a [u8],
    id: u64,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], FrameError> {
        if self.b.len() < n {
            return Err(FrameError::new(
                code::MALFORMED,
                self.id,
                format!("payload too short for {what}"),
            ));
        }
        let (a, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(a)
    }
    fn u8(&mut self, what: &str) -> Result<u8, FrameError> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> Result<u16, FrameError> {
        Ok(u16::from_le_bytes(arr(self.take(2, what)?)))
    }
    fn u32(&mut self, what: &str) -> Result<u32, FrameError> {
        Ok(u32::from_le_bytes(arr(self.take(4, what)?)))
    }
    fn u64(&mut self, what: &str) -> Result<u64, FrameError> {
        Ok(u64::from_le_bytes(arr(self.take(8, what)?)))
    }
    fn i64(&mut self, what: &str) -> Result<i64, FrameError> {
        Ok(self.u64(what)? as i64)
    }
    fn f64(&mut self, what: &str) -> Result<f64, FrameError> {
        Ok(f64::from_bits(self.u64(what)?))
    }
    fn bad(&self, what: String) -> FrameError {
        FrameError::new(code::MALFORMED, self.id, what)
    }
    /// A list count whose items take at least `min_item` bytes each, so the
    /// count can never make a decoder allocate more than the payload holds.
    fn list(&mut self, min_item: usize, what: &str) -> Result<usize, FrameError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(min_item) > self.b.len() {
            return Err(self.bad(format!(
                "{n} {what} cannot fit in the {} bytes left",
                self.b.len()
            )));
        }
        Ok(n)
    }
    fn point(&mut self) -> Result<Point, FrameError> {
        let b = self.take(POINT_LEN, "point")?;
        Ok(point_at(b))
    }
    /// `n` points in one pass over fixed-size records (the per-point
    /// bounds checks of [`Self::point`] were most of a large answer's
    /// decode time).
    fn points(&mut self, n: usize) -> Result<Vec<Point>, FrameError> {
        let len = n.saturating_mul(POINT_LEN);
        let b = self.take(len, "points")?;
        Ok(b.chunks_exact(POINT_LEN).map(point_at).collect())
    }
    /// A count followed by `count * item` bytes: checks the limit and that
    /// the payload holds exactly that many items.
    fn count(&mut self, item: usize, limit: usize, what: &str) -> Result<usize, FrameError> {
        let n = self.u32("count")? as usize;
        if n > limit {
            return Err(FrameError::new(
                code::TOO_MANY,
                self.id,
                format!("{n} {what} in one request exceeds the limit of {limit}"),
            ));
        }
        if n.checked_mul(item) != Some(self.b.len()) {
            return Err(FrameError::new(
                code::MALFORMED,
                self.id,
                format!(
                    "count says {n} {what} ({item} bytes each) but {} bytes follow",
                    self.b.len()
                ),
            ));
        }
        Ok(n)
    }
    fn end(&self) -> Result<(), FrameError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(FrameError::new(
                code::MALFORMED,
                self.id,
                format!("{} unexpected trailing bytes", self.b.len()),
            ))
        }
    }
}

/// Decodes a request payload after its header (flags are in the header
/// bytes: pass the raw header).
pub fn decode_request(
    raw: &[u8; HEADER_LEN],
    h: &Header,
    payload: &[u8],
) -> Result<Request, FrameError> {
    check_body(h, u16::from_le_bytes([raw[6], raw[7]]), payload)?;
    let mut r = Reader {
        b: payload,
        id: h.id,
    };
    let req = match h.kind {
        kind::WRITE => {
            let n = r.count(POINT_LEN, MAX_POINTS, "points")?;
            Request::Write(r.points(n)?)
        }
        kind::RANGE => {
            let tag = r.u32("tag")?;
            let start = r.u64("start")? as i64;
            let end = r.u64("end")? as i64;
            Request::Range { tag, start, end }
        }
        kind::RANGE_PIECES => {
            let tag = r.u32("range pieces tag")?;
            let start = r.i64("range pieces start")?;
            let end = r.i64("range pieces end")?;
            Request::RangePieces { tag, start, end }
        }
        kind::COUNT_BOUND => {
            let tag = r.u32("count bound tag")?;
            let start = r.i64("count bound start")?;
            let end = r.i64("count bound end")?;
            Request::CountBound { tag, start, end }
        }
        kind::LATEST => {
            let n = r.count(4, MAX_TAGS, "tags")?;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                v.push(r.u32("tag")?);
            }
            Request::Latest(v)
        }
        kind::STATS => Request::Stats,
        kind::BACKUP => {
            let flags = r.u8("backup flags")?;
            if flags > 1 {
                return Err(r.bad(format!("backup flags {flags:#04x} (only bit 0 is defined)")));
            }
            let rate = r.u64("backup pace")?;
            let b = std::mem::take(&mut r.b);
            if b.is_empty() || b.len() > MAX_PATH_LEN {
                return Err(r.bad(format!(
                    "backup target of {} bytes (1 to {MAX_PATH_LEN} expected)",
                    b.len()
                )));
            }
            let to = std::str::from_utf8(b).map_err(|_| {
                FrameError::new(code::MALFORMED, h.id, "backup target is not UTF-8")
            })?;
            Request::Backup {
                to: to.to_string(),
                link: flags & 1 == 0,
                rate,
            }
        }
        kind::AGGREGATE => decode_aggregate(&mut r)?,
        kind::AUTH => {
            let b = std::mem::take(&mut r.b);
            if b.is_empty() || b.len() > MAX_AUTH_LEN {
                return Err(FrameError::new(
                    code::MALFORMED,
                    h.id,
                    format!(
                        "AUTH token of {} bytes (1 to {MAX_AUTH_LEN} expected)",
                        b.len()
                    ),
                ));
            }
            let t = std::str::from_utf8(b)
                .map_err(|_| FrameError::new(code::MALFORMED, h.id, "AUTH token is not UTF-8"))?;
            Request::Auth(Secret(t.to_string()))
        }
        k => {
            return Err(FrameError::new(
                code::UNKNOWN_TYPE,
                h.id,
                format!("unknown request type {k:#04x}"),
            ))
        }
    };
    r.end()?;
    Ok(req)
}

/// Decodes a response payload after its header.
pub fn decode_response(
    raw: &[u8; HEADER_LEN],
    h: &Header,
    payload: &[u8],
) -> Result<Response, FrameError> {
    check_body(h, u16::from_le_bytes([raw[6], raw[7]]), payload)?;
    let mut r = Reader {
        b: payload,
        id: h.id,
    };
    let resp = match h.kind {
        kind::ACK => Response::Ack(r.u64("count")?),
        kind::POINTS => {
            let n = r.count(POINT_LEN, usize::MAX, "points")?;
            Response::Points(r.points(n)?)
        }
        kind::PIECES => Response::Pieces(decode_pieces(&mut r)?),
        kind::COUNT => {
            let points = r.u64("count points")?;
            let min_ts = r.i64("count min ts")?;
            let max_ts = r.i64("count max ts")?;
            if (points > 0) != (min_ts <= max_ts) {
                return Err(r.bad(format!(
                    "count answer of {points} points with min ts {min_ts} and max ts {max_ts} \
                     (points need min <= max, none need min > max)"
                )));
            }
            Response::Count {
                points,
                min_ts,
                max_ts,
            }
        }
        kind::LATEST_RESULT => {
            let n = r.u32("count")? as usize;
            let mut v = Vec::with_capacity(n.min(r.b.len()));
            for _ in 0..n {
                v.push(match r.u8("presence")? {
                    0 => None,
                    1 => Some(r.point()?),
                    x => {
                        return Err(FrameError::new(
                            code::MALFORMED,
                            h.id,
                            format!("presence byte {x} (expected 0 or 1)"),
                        ))
                    }
                });
            }
            Response::Latest(v)
        }
        kind::STATS_RESULT => {
            let n = r.u32("count")? as usize;
            let mut v = Vec::with_capacity(n.min(r.b.len()));
            for _ in 0..n {
                let len = r.u16("name length")? as usize;
                let name = String::from_utf8_lossy(r.take(len, "name")?).into_owned();
                v.push((name, r.u64("value")?));
            }
            Response::Stats(v)
        }
        kind::ROWS => {
            let n = r.list(4, "series")?;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                let m = r.list(ROW_LEN, "rows")?;
                let mut rows = Vec::with_capacity(m);
                for _ in 0..m {
                    let ts = r.i64("row time")?;
                    let present = r.u8("row presence")?;
                    let x = r.f64("row value")?;
                    rows.push((
                        ts,
                        match present {
                            0 if x.to_bits() == 0 => None,
                            1 => Some(x),
                            _ => {
                                return Err(r.bad(format!(
                                    "row presence {present} with value bits {:#x}",
                                    x.to_bits()
                                )))
                            }
                        },
                    ));
                }
                v.push(rows);
            }
            Response::Rows(v)
        }
        kind::PARTIALS => {
            let n = r.list(4, "series")?;
            let mut v = Vec::with_capacity(n);
            for _ in 0..n {
                let m = r.list(1, "windows")?;
                let mut ws = Vec::with_capacity(m);
                for _ in 0..m {
                    ws.push(match r.u8("window presence")? {
                        0 => None,
                        1 => Some(Partial {
                            count: r.u64("count")?,
                            good: r.u64("good")?,
                            sum: r.f64("sum")?,
                            m2: r.f64("m2")?,
                            min: r.f64("min")?,
                            max: r.f64("max")?,
                            first: Sample::new(r.i64("first ts")?, r.f64("first")?),
                            last: Sample::new(r.i64("last ts")?, r.f64("last")?),
                        }),
                        x => return Err(r.bad(format!("window presence {x} (expected 0 or 1)"))),
                    });
                }
                v.push(ws);
            }
            Response::Partials(v)
        }
        kind::BACKUP_DONE => {
            let mut v = [0u64; 7];
            for (x, what) in v.iter_mut().zip([
                "files linked",
                "bytes linked",
                "files copied",
                "bytes copied",
                "files unchanged",
                "bytes unchanged",
                "micros",
            ]) {
                *x = r.u64(what)?;
            }
            Response::BackupDone(BackupSummary {
                tally: Tally {
                    files_linked: v[0],
                    bytes_linked: v[1],
                    files_copied: v[2],
                    bytes_copied: v[3],
                    files_unchanged: v[4],
                    bytes_unchanged: v[5],
                },
                micros: v[6],
            })
        }
        kind::AUTH_OK => {
            let perms = r.u8("permissions")?;
            let name = String::from_utf8_lossy(r.b).into_owned();
            r.b = &[];
            Response::AuthOk { perms, name }
        }
        kind::ERROR => {
            let code = r.u16("code")?;
            let message = String::from_utf8_lossy(r.b).into_owned();
            r.b = &[];
            Response::Error { code, message }
        }
        k => {
            return Err(FrameError::new(
                code::UNKNOWN_TYPE,
                h.id,
                format!("unknown response type {k:#04x}"),
            ))
        }
    };
    r.end()?;
    Ok(resp)
}

/// Bytes of a point inside a points piece (the frame carries the tag).
pub const SAMPLE_LEN: usize = 17;

/// The structure of a `PIECES` payload: lengths checked against the bytes
/// there are, payloads not decoded yet ([`pieces_points`] does).
fn decode_pieces(r: &mut Reader<'_>) -> Result<Pieces, FrameError> {
    let tag = r.u32("pieces tag")?;
    let start = r.i64("pieces start")?;
    let end = r.i64("pieces end")?;
    // The smallest piece: kind and an empty points list.
    let n = r.list(5, "pieces")?;
    let mut pieces = Vec::with_capacity(n);
    // Points the pieces hold: no more than a server answers in one range
    // (so a hostile answer cannot make the decoder reserve gigabytes).
    let mut total = 0u64;
    for _ in 0..n {
        match r.u8("piece kind")? {
            0 => {
                let m = r.list(SAMPLE_LEN, "piece points")?;
                let b = r.take(m * SAMPLE_LEN, "piece points")?;
                pieces.push(Piece::Points(
                    b.chunks_exact(SAMPLE_LEN)
                        .map(|b| Point {
                            tag,
                            ts: i64::from_le_bytes(arr(&b[0..8])),
                            value: f64::from_bits(u64::from_le_bytes(arr(&b[8..16]))),
                            quality: b[16],
                        })
                        .collect(),
                ));
            }
            1 => {
                let count = r.u32("segment count")?;
                let min_ts = r.i64("segment min ts")?;
                let max_ts = r.i64("segment max ts")?;
                let len = r.u32("segment length")? as usize;
                let payload = r.take(len, "segment payload")?;
                // Every point after the first takes at least two bits
                // after a 16-byte first point: a count the bytes cannot
                // hold would only make the decoder reserve for nothing.
                if count == 0 || count as usize > 4 * len || min_ts > max_ts {
                    return Err(r.bad(format!(
                        "segment piece of {count} points in {len} bytes spanning {min_ts}..={max_ts}"
                    )));
                }
                total += u64::from(count);
                pieces.push(Piece::Encoded {
                    count,
                    min_ts,
                    max_ts,
                    payload: payload.to_vec(),
                });
            }
            k => return Err(r.bad(format!("piece kind {k} (expected 0 or 1)"))),
        }
        if let Some(Piece::Points(v)) = pieces.last() {
            total += v.len() as u64;
        }
        if total > RANGE_MAX_POINTS {
            return Err(r.bad(format!(
                "pieces holding over {total} points, past the {RANGE_MAX_POINTS} a range answers"
            )));
        }
    }
    Ok(Pieces {
        tag,
        start,
        end,
        pieces,
    })
}

fn put_pieces(out: &mut Vec<u8>, p: &Pieces) {
    out.extend_from_slice(&p.tag.to_le_bytes());
    out.extend_from_slice(&p.start.to_le_bytes());
    out.extend_from_slice(&p.end.to_le_bytes());
    out.extend_from_slice(&(p.pieces.len() as u32).to_le_bytes());
    for piece in &p.pieces {
        match piece {
            Piece::Points(v) => {
                out.push(0);
                out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                let at = out.len();
                out.resize(at + v.len() * SAMPLE_LEN, 0);
                for (b, p) in out[at..].chunks_exact_mut(SAMPLE_LEN).zip(v) {
                    b[0..8].copy_from_slice(&p.ts.to_le_bytes());
                    b[8..16].copy_from_slice(&p.value.to_bits().to_le_bytes());
                    b[16] = p.quality;
                }
            }
            Piece::Encoded {
                count,
                min_ts,
                max_ts,
                payload,
            } => {
                out.push(1);
                out.extend_from_slice(&count.to_le_bytes());
                out.extend_from_slice(&min_ts.to_le_bytes());
                out.extend_from_slice(&max_ts.to_le_bytes());
                out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
                out.extend_from_slice(payload);
            }
        }
    }
}

/// The points a `PIECES` answer stands for, for a range `[start, end)` of
/// `tag`: each encoded piece decoded with the codec, everything clipped
/// to the request's range and the frame's, in piece order. `Err` names
/// any inconsistency: a tag other than `tag`, a payload that does not
/// decode to its count, a point outside its piece's span, points or
/// pieces out of time order. Allocates at most the pieces' counts (each
/// bounded by its bytes).
pub fn pieces_points(p: &Pieces, tag: u32, start: i64, end: i64) -> Result<Vec<Point>, String> {
    if p.tag != tag {
        return Err(format!(
            "pieces of tag {} answering a range of tag {tag}",
            p.tag
        ));
    }
    let (lo, hi) = (start.max(p.start), end.min(p.end));
    let total: usize = p
        .pieces
        .iter()
        .map(|x| match x {
            Piece::Points(v) => v.len(),
            Piece::Encoded { count, .. } => *count as usize,
        })
        .sum();
    let mut out: Vec<Point> = Vec::with_capacity(if lo < hi { total } else { 0 });
    // The greatest timestamp any piece so far may hold.
    let mut prev: Option<i64> = None;
    for (i, piece) in p.pieces.iter().enumerate() {
        let (first, last) = match piece {
            Piece::Points(v) => match (v.first(), v.last()) {
                (Some(a), Some(b)) => (a.ts, b.ts),
                _ => return Err(format!("piece {i} holds no point")),
            },
            Piece::Encoded { min_ts, max_ts, .. } => (*min_ts, *max_ts),
        };
        if first > last || prev.is_some_and(|q| first <= q) {
            return Err(format!(
                "piece {i} ({first}..={last}) does not follow the one before it in time"
            ));
        }
        prev = Some(last);
        match piece {
            Piece::Points(v) => {
                if v.windows(2).any(|w| w[0].ts >= w[1].ts) {
                    return Err(format!("piece {i}'s points are not in time order"));
                }
                if v.iter().any(|q| q.ts < p.start || q.ts >= p.end) {
                    return Err(format!("piece {i} holds points outside the answered range"));
                }
                out.extend(v.iter().filter(|q| q.ts >= lo && q.ts < hi).copied());
            }
            Piece::Encoded {
                count,
                min_ts,
                max_ts,
                payload,
            } => {
                if *max_ts < lo || *min_ts >= hi {
                    continue;
                }
                let at = out.len();
                crate::storage::codec::decode_payload_into(payload, *count, tag, lo, hi, &mut out)
                    .map_err(|e| format!("piece {i}: bad compressed payload: {e}"))?;
                if out[at..].iter().any(|q| q.ts < *min_ts || q.ts > *max_ts) {
                    return Err(format!(
                        "piece {i} decodes to a point outside its span {min_ts}..={max_ts}"
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// Decodes one whole request frame from the front of `buf`. `Ok(None)` when
/// `buf` holds less than a whole frame. Returns the request id, the request
/// and the frame's length. Used by tests and fuzzing; the server reads the
/// header and the payload separately with the same functions.
pub fn decode_request_frame(buf: &[u8]) -> Result<Option<(u64, Request, usize)>, FrameError> {
    whole_frame(buf, decode_request)
}

/// Decodes one whole answer frame from the front of `buf`, as
/// [`decode_request_frame`] does requests. Used by tests and fuzzing.
pub fn decode_response_frame(buf: &[u8]) -> Result<Option<(u64, Response, usize)>, FrameError> {
    whole_frame(buf, decode_response)
}

/// One whole frame from the front of `buf`, its payload decoded by `decode`.
#[allow(clippy::type_complexity)]
fn whole_frame<T>(
    buf: &[u8],
    decode: fn(&[u8; HEADER_LEN], &Header, &[u8]) -> Result<T, FrameError>,
) -> Result<Option<(u64, T, usize)>, FrameError> {
    let Some(head) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let raw: [u8; HEADER_LEN] = arr(head);
    let h = decode_header(&raw)?;
    let total = HEADER_LEN + h.len as usize;
    let Some(payload) = buf.get(HEADER_LEN..total) else {
        return Ok(None);
    };
    Ok(Some((h.id, decode(&raw, &h, payload)?, total)))
}

/// Appends a frame with `kind`, `id` and a payload written by `body`.
fn frame(out: &mut Vec<u8>, kind: u8, id: u64, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind);
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&[0u8; 8]);
    let p = out.len();
    body(out);
    let len = (out.len() - p) as u32;
    let crc = crc32fast::hash(&out[p..]);
    out[start + 16..start + 20].copy_from_slice(&len.to_le_bytes());
    out[start + 20..start + 24].copy_from_slice(&crc.to_le_bytes());
}

/// The point of one [`POINT_LEN`]-byte record (`b` is at least that long).
#[inline(always)]
fn point_at(b: &[u8]) -> Point {
    Point {
        tag: u32::from_le_bytes(arr(&b[0..4])),
        ts: i64::from_le_bytes(arr(&b[4..12])),
        value: f64::from_bits(u64::from_le_bytes(arr(&b[12..20]))),
        quality: b[20],
    }
}

fn put_point(out: &mut Vec<u8>, p: &Point) {
    out.extend_from_slice(&p.tag.to_le_bytes());
    out.extend_from_slice(&p.ts.to_le_bytes());
    out.extend_from_slice(&p.value.to_bits().to_le_bytes());
    out.push(p.quality);
}

/// A point list: count, then the records. Tried and dropped (2026-12-04,
/// branch wire-range): laying records out 64 or 256 at a time on the stack
/// and hashing each batch as it was appended, to skip the zero-fill and
/// the CRC's second pass. In a profile of 400 100-block ranges the batches'
/// copies cost what the zero-fill saved, and `crc32fast` over 1–5 KiB
/// pieces took 144 samples against 95 for one pass over the payload; the
/// latencies did not tell the two apart on the noisy machine.
fn put_points(out: &mut Vec<u8>, pts: &[Point]) {
    out.extend_from_slice(&(pts.len() as u32).to_le_bytes());
    // Grow once and fill fixed-size records: `extend_from_slice` per field
    // checked the capacity four times a point (18 % of a 96K-point range
    // answer's server time).
    let at = out.len();
    out.resize(at + pts.len() * POINT_LEN, 0);
    for (b, p) in out[at..].chunks_exact_mut(POINT_LEN).zip(pts) {
        b[0..4].copy_from_slice(&p.tag.to_le_bytes());
        b[4..12].copy_from_slice(&p.ts.to_le_bytes());
        b[12..20].copy_from_slice(&p.value.to_bits().to_le_bytes());
        b[20] = p.quality;
    }
}

/// A range answer (`POINTS`) decoded while its payload arrives: a client
/// that reads the payload in pieces hands each longer prefix to
/// [`PointsStream::advance`], which hashes and decodes the records that
/// are whole so far, so decoding overlaps the transfer instead of
/// following it. The answer stands only once the whole payload's CRC and
/// count check out ([`PointsStream::finish`]); on any doubt the frame is
/// decoded whole by [`decode_response`], so the outcome (points or the
/// error naming what is wrong) is exactly that of decoding it whole.
pub struct PointsStream {
    crc: crc32fast::Hasher,
    points: Vec<Point>,
    /// Payload bytes hashed and decoded so far (0 until the count is in).
    at: usize,
    len: usize,
    ok: bool,
}

impl PointsStream {
    /// For the header of a `POINTS` answer with zero flags; `None` for
    /// every other frame (decode those whole).
    pub fn start(raw: &[u8; HEADER_LEN], h: &Header) -> Option<PointsStream> {
        (h.kind == kind::POINTS && raw[6] == 0 && raw[7] == 0).then(|| PointsStream {
            crc: crc32fast::Hasher::new(),
            points: Vec::new(),
            at: 0,
            len: h.len as usize,
            ok: true,
        })
    }

    /// `got`: the payload's first bytes, as many as have arrived.
    pub fn advance(&mut self, got: &[u8]) {
        if !self.ok || got.len() > self.len {
            self.ok = false;
            return;
        }
        if self.at == 0 {
            let Some(head) = got.get(..4) else {
                return;
            };
            let n = u32::from_le_bytes(arr(head)) as usize;
            if n.checked_mul(POINT_LEN) != self.len.checked_sub(4) {
                // Decoding it whole names the problem.
                self.ok = false;
                return;
            }
            self.points.reserve_exact(n);
            self.crc.update(head);
            self.at = 4;
        }
        let whole = self.at + (got.len() - self.at) / POINT_LEN * POINT_LEN;
        let b = &got[self.at..whole];
        self.crc.update(b);
        self.points.extend(b.chunks_exact(POINT_LEN).map(point_at));
        self.at = whole;
    }

    /// The answer, once the whole `payload` of the frame `raw`/`h` has
    /// arrived.
    pub fn finish(
        mut self,
        raw: &[u8; HEADER_LEN],
        h: &Header,
        payload: &[u8],
    ) -> Result<Response, FrameError> {
        self.advance(payload);
        // `at` is 0 until the count was read and checked (an empty payload
        // has none).
        if self.ok && self.at >= 4 && self.at == payload.len() && self.crc.finalize() == h.crc {
            return Ok(Response::Points(self.points));
        }
        decode_response(raw, h, payload)
    }
}

/// Appends a write request frame.
pub fn encode_write(out: &mut Vec<u8>, id: u64, points: &[Point]) {
    frame(out, kind::WRITE, id, |o| put_points(o, points));
}

/// Appends a range request frame.
pub fn encode_range(out: &mut Vec<u8>, id: u64, tag: u32, start: i64, end: i64) {
    frame(out, kind::RANGE, id, |o| {
        o.extend_from_slice(&tag.to_le_bytes());
        o.extend_from_slice(&start.to_le_bytes());
        o.extend_from_slice(&end.to_le_bytes());
    });
}

/// Appends a range-pieces request frame.
pub fn encode_range_pieces(out: &mut Vec<u8>, id: u64, tag: u32, start: i64, end: i64) {
    frame(out, kind::RANGE_PIECES, id, |o| {
        o.extend_from_slice(&tag.to_le_bytes());
        o.extend_from_slice(&start.to_le_bytes());
        o.extend_from_slice(&end.to_le_bytes());
    });
}

/// Appends a count-bound request frame.
pub fn encode_count_bound(out: &mut Vec<u8>, id: u64, tag: u32, start: i64, end: i64) {
    frame(out, kind::COUNT_BOUND, id, |o| {
        o.extend_from_slice(&tag.to_le_bytes());
        o.extend_from_slice(&start.to_le_bytes());
        o.extend_from_slice(&end.to_le_bytes());
    });
}

/// Appends a latest request frame.
pub fn encode_latest(out: &mut Vec<u8>, id: u64, tags: &[u32]) {
    frame(out, kind::LATEST, id, |o| {
        o.extend_from_slice(&(tags.len() as u32).to_le_bytes());
        for t in tags {
            o.extend_from_slice(&t.to_le_bytes());
        }
    });
}

/// Appends a stats request frame.
pub fn encode_stats(out: &mut Vec<u8>, id: u64) {
    frame(out, kind::STATS, id, |_| {});
}

/// Appends an AUTH request frame carrying `token`.
pub fn encode_auth(out: &mut Vec<u8>, id: u64, token: &str) {
    frame(out, kind::AUTH, id, |o| {
        o.extend_from_slice(token.as_bytes())
    });
}

/// Appends an aggregate request frame (layout in the module doc).
pub fn encode_aggregate(
    out: &mut Vec<u8>,
    id: u64,
    tags: &[u32],
    query: &AggQuery,
    good_only: bool,
) {
    frame(out, kind::AGGREGATE, id, |o| {
        let put = |o: &mut Vec<u8>, x: i64| o.extend_from_slice(&x.to_le_bytes());
        let mode = match query {
            AggQuery::Windows { .. } => 1,
            AggQuery::Partials { .. } => 2,
            AggQuery::Interpolated { .. } => 3,
            AggQuery::Plot { .. } => 4,
            AggQuery::AtOrBefore { .. } => 5,
        };
        o.push(mode);
        o.push(u8::from(good_only));
        match *query {
            AggQuery::Windows {
                start,
                end,
                every,
                offset,
                func,
                fill,
            } => {
                for x in [start, end, every, offset] {
                    put(o, x);
                }
                let (code, p, unit, variant) = func_wire(func);
                o.push(code);
                o.extend_from_slice(&p.to_bits().to_le_bytes());
                put(o, unit);
                o.push(variant);
                let (f, v) = match fill {
                    Fill::None => (0u8, 0.0f64),
                    Fill::Null => (1, 0.0),
                    Fill::Value(v) => (2, v),
                    Fill::Previous { .. } => (3, 0.0),
                    Fill::Linear => (4, 0.0),
                };
                o.push(f);
                o.extend_from_slice(&v.to_bits().to_le_bytes());
            }
            AggQuery::Partials {
                start,
                end,
                every,
                offset,
                m2,
            } => {
                for x in [start, end, every, offset] {
                    put(o, x);
                }
                o.push(u8::from(m2));
            }
            AggQuery::Interpolated {
                start,
                end,
                every,
                interp,
            } => {
                for x in [start, end, every] {
                    put(o, x);
                }
                o.push(u8::from(interp == Interp::Linear));
            }
            AggQuery::Plot { start, end, pixels } => {
                put(o, start);
                put(o, end);
                o.extend_from_slice(&(pixels.min(u32::MAX as usize) as u32).to_le_bytes());
            }
            AggQuery::AtOrBefore { time } => put(o, time),
        }
        o.extend_from_slice(&(tags.len() as u32).to_le_bytes());
        for t in tags {
            o.extend_from_slice(&t.to_le_bytes());
        }
    });
}

/// A function's wire fields: code, p, unit, variant.
fn func_wire(f: Func) -> (u8, f64, i64, u8) {
    match f {
        Func::Count => (1, 0.0, 0, 0),
        Func::Sum => (2, 0.0, 0, 0),
        Func::Mean => (3, 0.0, 0, 0),
        Func::Min => (4, 0.0, 0, 0),
        Func::Max => (5, 0.0, 0, 0),
        Func::First => (6, 0.0, 0, 0),
        Func::Last => (7, 0.0, 0, 0),
        Func::Spread => (8, 0.0, 0, 0),
        Func::Stddev => (9, 0.0, 0, 0),
        Func::Median => (10, 0.0, 0, 0),
        Func::Percentile(p) => (11, p, 0, 0),
        Func::Integral { unit, mode } => (12, 0.0, unit, u8::from(mode == IntegralMode::InfluxQl)),
        Func::PercentGood => (13, 0.0, 0, 0),
        Func::TimeWeighted(i) => (14, 0.0, 0, u8::from(i == Interp::Linear)),
    }
}

/// Decodes an aggregate request payload (strictly: one encoding per
/// request).
fn decode_aggregate(r: &mut Reader<'_>) -> Result<Request, FrameError> {
    let mode = r.u8("mode")?;
    let flags = r.u8("flags")?;
    if flags > 1 {
        return Err(r.bad(format!(
            "aggregate flags {flags:#04x} (only bit 0, good-only)"
        )));
    }
    let interp = |r: &Reader<'_>, x: u8, what: &str| match x {
        0 => Ok(Interp::Step),
        1 => Ok(Interp::Linear),
        _ => Err(r.bad(format!("{what} {x} (0 step, 1 linear)"))),
    };
    let query = match mode {
        1 | 2 => {
            let start = r.i64("start")?;
            let end = r.i64("end")?;
            let every = r.i64("every")?;
            let offset = r.i64("offset")?;
            if mode == 2 {
                let m2 = match r.u8("m2")? {
                    0 => false,
                    1 => true,
                    x => return Err(r.bad(format!("m2 {x} (0 or 1)"))),
                };
                AggQuery::Partials {
                    start,
                    end,
                    every,
                    offset,
                    m2,
                }
            } else {
                let code = r.u8("func")?;
                let p = r.f64("percentile")?;
                let unit = r.i64("integral unit")?;
                let variant = r.u8("func variant")?;
                let func = match code {
                    1 => Func::Count,
                    2 => Func::Sum,
                    3 => Func::Mean,
                    4 => Func::Min,
                    5 => Func::Max,
                    6 => Func::First,
                    7 => Func::Last,
                    8 => Func::Spread,
                    9 => Func::Stddev,
                    10 => Func::Median,
                    11 => Func::Percentile(p),
                    12 => Func::Integral {
                        unit,
                        mode: match variant {
                            0 => IntegralMode::Inside,
                            1 => IntegralMode::InfluxQl,
                            x => {
                                return Err(
                                    r.bad(format!("integral variant {x} (0 inside, 1 InfluxQL)"))
                                )
                            }
                        },
                    },
                    13 => Func::PercentGood,
                    14 => Func::TimeWeighted(interp(r, variant, "time-weighted variant")?),
                    x => return Err(r.bad(format!("unknown aggregate function {x}"))),
                };
                if func_wire(func) != (code, p, unit, variant)
                    || p.to_bits() != func_wire(func).1.to_bits()
                {
                    return Err(r.bad(format!("{} with fields it does not use set", func.name())));
                }
                let f = r.u8("fill")?;
                let v = r.f64("fill value")?;
                let fill = match f {
                    0 => Fill::None,
                    1 => Fill::Null,
                    2 => Fill::Value(v),
                    3 => Fill::Previous { before: None },
                    4 => Fill::Linear,
                    x => return Err(r.bad(format!("unknown fill {x}"))),
                };
                if f != 2 && v.to_bits() != 0 {
                    return Err(r.bad("fill value set for a fill that takes none".into()));
                }
                AggQuery::Windows {
                    start,
                    end,
                    every,
                    offset,
                    func,
                    fill,
                }
            }
        }
        3 => {
            let start = r.i64("start")?;
            let end = r.i64("end")?;
            let every = r.i64("every")?;
            let x = r.u8("interp")?;
            AggQuery::Interpolated {
                start,
                end,
                every,
                interp: interp(r, x, "interp")?,
            }
        }
        4 => AggQuery::Plot {
            start: r.i64("start")?,
            end: r.i64("end")?,
            pixels: r.u32("pixels")? as usize,
        },
        5 => AggQuery::AtOrBefore {
            time: r.i64("time")?,
        },
        x => return Err(r.bad(format!("unknown aggregate mode {x} (1 to 5)"))),
    };
    let n = r.count(4, MAX_TAGS, "tags")?;
    let mut tags = Vec::with_capacity(n);
    for _ in 0..n {
        tags.push(r.u32("tag")?);
    }
    Ok(Request::Aggregate {
        tags,
        query,
        good_only: flags == 1,
    })
}

/// Appends a backup request frame (`link`: hard-link sealed chunks when
/// the target is on the same filesystem).
pub fn encode_backup(out: &mut Vec<u8>, id: u64, to: &str, link: bool, rate: u64) {
    frame(out, kind::BACKUP, id, |o| {
        o.push(u8::from(!link));
        o.extend_from_slice(&rate.to_le_bytes());
        o.extend_from_slice(to.as_bytes());
    })
}

/// Appends a request frame.
pub fn encode_request(out: &mut Vec<u8>, id: u64, req: &Request) {
    match req {
        Request::Write(p) => encode_write(out, id, p),
        Request::Range { tag, start, end } => encode_range(out, id, *tag, *start, *end),
        Request::RangePieces { tag, start, end } => {
            encode_range_pieces(out, id, *tag, *start, *end)
        }
        Request::CountBound { tag, start, end } => encode_count_bound(out, id, *tag, *start, *end),
        Request::Latest(t) => encode_latest(out, id, t),
        Request::Stats => encode_stats(out, id),
        Request::Auth(t) => encode_auth(out, id, &t.0),
        Request::Aggregate {
            tags,
            query,
            good_only,
        } => encode_aggregate(out, id, tags, query, *good_only),
        Request::Backup { to, link, rate } => encode_backup(out, id, to, *link, *rate),
    }
}

/// The wire answer to a command's reply: answers as their frames, a
/// [`Failure`] as an error frame with [`failure_code`].
pub fn reply_response(reply: Reply) -> Response {
    match reply {
        Ok(Answer::Written(n)) => Response::Ack(n),
        Ok(Answer::Points(p)) => Response::Points(p),
        Ok(Answer::Pieces(p)) => Response::Pieces(p),
        Ok(Answer::Count {
            points,
            min_ts,
            max_ts,
        }) => Response::Count {
            points,
            min_ts,
            max_ts,
        },
        Ok(Answer::Latest(v)) => Response::Latest(v),
        Ok(Answer::Reports(r)) => Response::Stats(named_counters(&r)),
        Ok(Answer::Rows(r)) => Response::Rows(r),
        Ok(Answer::Partials(p)) => Response::Partials(p),
        Ok(Answer::BackupDone(b)) => Response::BackupDone(b),
        Ok(other) => {
            let f = Failure::unexpected("native request", &other);
            Response::Error {
                code: failure_code(&f),
                message: f.to_string(),
            }
        }
        Err(f) => Response::Error {
            code: failure_code(&f),
            message: f.to_string(),
        },
    }
}

/// Appends a response frame; an answer whose payload would exceed
/// [`MAX_PAYLOAD`] is replaced by an error frame saying so.
pub fn encode_response(out: &mut Vec<u8>, id: u64, resp: &Response) {
    let start = out.len();
    encode_response_unchecked(out, id, resp);
    let payload = out.len() - start - HEADER_LEN;
    if payload > MAX_PAYLOAD {
        out.truncate(start);
        let items = match resp {
            Response::Points(p) => format!("{} points", p.len()),
            Response::Pieces(p) => format!("{} pieces", p.pieces.len()),
            Response::Latest(v) => format!("{} tags", v.len()),
            Response::Stats(v) => format!("{} counters", v.len()),
            Response::Rows(v) => format!("{} rows", v.iter().map(Vec::len).sum::<usize>()),
            _ => "answer".into(),
        };
        encode_response_unchecked(
            out,
            id,
            &Response::Error {
                code: code::TOO_MANY,
                message: format!(
                    "answer of {items} ({payload} bytes) exceeds the frame limit of \
                     {MAX_PAYLOAD} bytes; query a narrower range or fewer tags"
                ),
            },
        );
    }
}

fn encode_response_unchecked(out: &mut Vec<u8>, id: u64, resp: &Response) {
    match resp {
        Response::Ack(n) => frame(out, kind::ACK, id, |o| {
            o.extend_from_slice(&n.to_le_bytes())
        }),
        Response::Points(p) => frame(out, kind::POINTS, id, |o| put_points(o, p)),
        Response::Pieces(p) => frame(out, kind::PIECES, id, |o| put_pieces(o, p)),
        Response::Count {
            points,
            min_ts,
            max_ts,
        } => frame(out, kind::COUNT, id, |o| {
            o.extend_from_slice(&points.to_le_bytes());
            o.extend_from_slice(&min_ts.to_le_bytes());
            o.extend_from_slice(&max_ts.to_le_bytes());
        }),
        Response::Latest(v) => frame(out, kind::LATEST_RESULT, id, |o| {
            o.extend_from_slice(&(v.len() as u32).to_le_bytes());
            for p in v {
                match p {
                    None => o.push(0),
                    Some(p) => {
                        o.push(1);
                        put_point(o, p);
                    }
                }
            }
        }),
        Response::Stats(v) => frame(out, kind::STATS_RESULT, id, |o| {
            o.extend_from_slice(&(v.len() as u32).to_le_bytes());
            for (name, val) in v {
                let name = &name.as_bytes()[..name.len().min(u16::MAX as usize)];
                o.extend_from_slice(&(name.len() as u16).to_le_bytes());
                o.extend_from_slice(name);
                o.extend_from_slice(&val.to_le_bytes());
            }
        }),
        Response::Rows(v) => frame(out, kind::ROWS, id, |o| {
            o.extend_from_slice(&(v.len() as u32).to_le_bytes());
            for rows in v {
                o.reserve(4 + rows.len() * ROW_LEN);
                o.extend_from_slice(&(rows.len() as u32).to_le_bytes());
                for (ts, x) in rows {
                    // One fixed-size copy per row (an answer can hold a
                    // million of them).
                    let mut row = [0u8; ROW_LEN];
                    row[..8].copy_from_slice(&ts.to_le_bytes());
                    row[8] = u8::from(x.is_some());
                    row[9..].copy_from_slice(&x.unwrap_or(0.0).to_bits().to_le_bytes());
                    o.extend_from_slice(&row);
                }
            }
        }),
        Response::Partials(v) => frame(out, kind::PARTIALS, id, |o| {
            o.extend_from_slice(&(v.len() as u32).to_le_bytes());
            for ws in v {
                o.extend_from_slice(&(ws.len() as u32).to_le_bytes());
                for w in ws {
                    match w {
                        None => o.push(0),
                        Some(p) => {
                            o.push(1);
                            o.extend_from_slice(&p.count.to_le_bytes());
                            o.extend_from_slice(&p.good.to_le_bytes());
                            for x in [p.sum, p.m2, p.min, p.max] {
                                o.extend_from_slice(&x.to_bits().to_le_bytes());
                            }
                            for s in [p.first, p.last] {
                                o.extend_from_slice(&s.ts.to_le_bytes());
                                o.extend_from_slice(&s.value.to_bits().to_le_bytes());
                            }
                        }
                    }
                }
            }
        }),
        Response::BackupDone(b) => frame(out, kind::BACKUP_DONE, id, |o| {
            let t = &b.tally;
            for x in [
                t.files_linked,
                t.bytes_linked,
                t.files_copied,
                t.bytes_copied,
                t.files_unchanged,
                t.bytes_unchanged,
                b.micros,
            ] {
                o.extend_from_slice(&x.to_le_bytes());
            }
        }),
        Response::AuthOk { perms, name } => frame(out, kind::AUTH_OK, id, |o| {
            o.push(*perms);
            o.extend_from_slice(name.as_bytes());
        }),
        Response::Error { code, message } => frame(out, kind::ERROR, id, |o| {
            o.extend_from_slice(&code.to_le_bytes());
            o.extend_from_slice(message.as_bytes());
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts() -> Vec<Point> {
        vec![
            Point::new(1, -5, 1.5, 192),
            Point::new(u32::MAX, i64::MAX, f64::NAN, 0),
        ]
    }

    #[test]
    fn requests_roundtrip() {
        for req in [
            Request::Write(pts()),
            Request::Write(vec![]),
            Request::Range {
                tag: 7,
                start: i64::MIN,
                end: 3,
            },
            Request::CountBound {
                tag: u32::MAX,
                start: -1,
                end: i64::MAX,
            },
            Request::CountBound {
                tag: 0,
                start: 5,
                end: 5,
            },
            Request::Latest(vec![1, 2, 3]),
            Request::Stats,
            Request::Auth(Secret("xtdb_00ff".into())),
            Request::Backup {
                to: "/srv/backup/xtdb".into(),
                link: true,
                rate: 0,
            },
            Request::Backup {
                to: "/mnt/other fs/b".into(),
                link: false,
                rate: 64 << 20,
            },
        ]
        .into_iter()
        .chain(aggregate_requests())
        {
            let mut b = Vec::new();
            encode_request(&mut b, 42, &req);
            let (id, got, n) = decode_request_frame(&b).unwrap().unwrap();
            assert_eq!((id, n), (42, b.len()));
            assert_eq!(got, req);
            // Any prefix is "incomplete", never an error or a panic.
            for cut in 0..b.len() {
                assert_eq!(decode_request_frame(&b[..cut]), Ok(None));
            }
        }
    }

    #[test]
    fn backup_frames_are_bounded_and_need_admin() {
        let mut b = Vec::new();
        encode_backup(&mut b, 1, "", true, 0);
        let e = decode_request_frame(&b).unwrap_err();
        assert!(
            e.message.contains("backup target of 0 bytes"),
            "{}",
            e.message
        );
        b.clear();
        encode_backup(&mut b, 1, &"x".repeat(MAX_PATH_LEN + 1), true, 0);
        assert!(decode_request_frame(&b).is_err());
        b.clear();
        frame(&mut b, kind::BACKUP, 1, |o| {
            o.push(2);
            o.extend_from_slice(b"/x");
        });
        let e = decode_request_frame(&b).unwrap_err();
        assert!(e.message.contains("backup flags"), "{}", e.message);
        assert_eq!(
            crate::net::auth::needs(kind::BACKUP),
            crate::storage::tokens::Perms::ADMIN
        );
    }

    #[test]
    fn responses_roundtrip() {
        for resp in [
            Response::Ack(9),
            Response::BackupDone(BackupSummary {
                tally: Tally {
                    files_linked: 1,
                    bytes_linked: 2,
                    files_copied: 3,
                    bytes_copied: 4,
                    files_unchanged: 5,
                    bytes_unchanged: 6,
                },
                micros: 7,
            }),
            Response::Points(pts()),
            Response::Count {
                points: 96_000,
                min_ts: -7,
                max_ts: i64::MAX,
            },
            Response::Count {
                points: 0,
                min_ts: i64::MAX,
                max_ts: i64::MIN,
            },
            Response::Latest(vec![None, Some(pts()[0])]),
            Response::Stats(vec![("total.x".into(), 5)]),
            Response::AuthOk {
                perms: 3,
                name: "plc-1".into(),
            },
            Response::AuthOk {
                perms: 7,
                name: String::new(),
            },
            Response::Error {
                code: 7,
                message: "nope".into(),
            },
            Response::Rows(vec![
                vec![(1, Some(2.5)), (-3, None)],
                vec![],
                vec![(0, Some(-0.0))],
            ]),
            Response::Partials(vec![
                vec![None, Some(Partial::of_point(5, 1.5, true))],
                vec![],
            ]),
        ] {
            let mut b = Vec::new();
            encode_response(&mut b, 1, &resp);
            let raw: [u8; HEADER_LEN] = b[..HEADER_LEN].try_into().unwrap();
            let h = decode_header(&raw).unwrap();
            let got = decode_response(&raw, &h, &b[HEADER_LEN..]).unwrap();
            match (&got, &resp) {
                (Response::Points(a), Response::Points(b)) => assert_eq!(a, b),
                _ => assert_eq!(got, resp),
            }
        }
    }

    fn aggregate_requests() -> Vec<Request> {
        let funcs = [
            Func::Count,
            Func::Sum,
            Func::Mean,
            Func::Min,
            Func::Max,
            Func::First,
            Func::Last,
            Func::Spread,
            Func::Stddev,
            Func::Median,
            Func::Percentile(99.5),
            Func::Integral {
                unit: 1_000_000,
                mode: IntegralMode::InfluxQl,
            },
            Func::Integral {
                unit: 7,
                mode: IntegralMode::Inside,
            },
            Func::PercentGood,
            Func::TimeWeighted(Interp::Step),
            Func::TimeWeighted(Interp::Linear),
        ];
        let fills = [
            Fill::None,
            Fill::Null,
            Fill::Value(-1.25),
            Fill::Previous { before: None },
            Fill::Linear,
        ];
        let mut v = Vec::new();
        for (i, func) in funcs.into_iter().enumerate() {
            v.push(Request::Aggregate {
                tags: vec![1, 2, u32::MAX, 1],
                query: AggQuery::Windows {
                    start: i64::MIN,
                    end: 3600,
                    every: 60,
                    offset: -7,
                    func,
                    fill: fills[i % fills.len()],
                },
                good_only: i % 2 == 0,
            });
        }
        for query in [
            AggQuery::Partials {
                start: 0,
                end: 10,
                every: 1,
                offset: 0,
                m2: true,
            },
            AggQuery::Partials {
                start: 0,
                end: 10,
                every: 1,
                offset: 0,
                m2: false,
            },
            AggQuery::Interpolated {
                start: -5,
                end: i64::MAX,
                every: 3,
                interp: Interp::Linear,
            },
            AggQuery::Plot {
                start: 0,
                end: 1 << 40,
                pixels: 1000,
            },
            AggQuery::AtOrBefore { time: 42 },
        ] {
            v.push(Request::Aggregate {
                tags: vec![],
                query,
                good_only: true,
            });
        }
        v
    }

    /// What a client reading a points answer `cut` bytes at a time makes of
    /// `payload` (with header `raw`).
    fn streamed(
        raw: &[u8; HEADER_LEN],
        payload: &[u8],
        cut: usize,
    ) -> Result<Response, FrameError> {
        let h = decode_header(raw).unwrap();
        let Some(mut s) = PointsStream::start(raw, &h) else {
            return decode_response(raw, &h, payload);
        };
        let mut got = 0;
        while got < payload.len() {
            got = (got + cut).min(payload.len());
            s.advance(&payload[..got]);
        }
        s.finish(raw, &h, payload)
    }

    #[test]
    fn points_decoded_while_arriving_match_decoding_whole() {
        let many: Vec<Point> = (0..1000)
            .map(|i| Point::new(7, i * 1_000_000 - 5, i as f64 * 0.25, (i % 3) as u8))
            .collect();
        for pts in [vec![], pts(), many] {
            let mut b = Vec::new();
            encode_response(&mut b, 9, &Response::Points(pts.clone()));
            let raw: [u8; HEADER_LEN] = b[..HEADER_LEN].try_into().unwrap();
            for cut in [1, 3, 4, 20, 21, 22, 4096, usize::MAX / 2] {
                assert_eq!(
                    streamed(&raw, &b[HEADER_LEN..], cut),
                    Ok(Response::Points(pts.clone())),
                    "{} points, {cut} bytes a read",
                    pts.len()
                );
            }
            // A flipped bit anywhere, a count that disagrees, non-zero
            // flags: the same answer as decoding the frame whole.
            let whole = |raw: &[u8; HEADER_LEN], p: &[u8]| {
                decode_response(raw, &decode_header(raw).unwrap(), p)
            };
            for at in [HEADER_LEN, HEADER_LEN + 3, b.len() - 1] {
                if at >= b.len() {
                    continue;
                }
                let mut bad = b.clone();
                bad[at] ^= 0x10;
                let e = streamed(&raw, &bad[HEADER_LEN..], 7);
                assert_eq!(e, whole(&raw, &bad[HEADER_LEN..]));
                assert!(e.is_err());
                // With the CRC fixed up: a wrong count or changed point.
                let crc = crc32fast::hash(&bad[HEADER_LEN..]);
                let mut raw2 = raw;
                raw2[20..24].copy_from_slice(&crc.to_le_bytes());
                assert_eq!(
                    streamed(&raw2, &bad[HEADER_LEN..], 5),
                    whole(&raw2, &bad[HEADER_LEN..])
                );
            }
            let mut raw2 = raw;
            raw2[6] = 1;
            assert_eq!(
                streamed(&raw2, &b[HEADER_LEN..], 5),
                whole(&raw2, &b[HEADER_LEN..])
            );
        }
    }

    #[test]
    fn count_bound_frames_are_checked_and_need_read() {
        // A request of the wrong length names the field that is missing,
        // or the bytes left over.
        for (len, what) in [
            (0, "count bound tag"),
            (4, "count bound start"),
            (19, "count bound end"),
            (21, "trailing"),
        ] {
            let mut b = Vec::new();
            frame(&mut b, kind::COUNT_BOUND, 3, |o| {
                o.extend_from_slice(&vec![0; len])
            });
            let e = decode_request_frame(&b).unwrap_err();
            assert_eq!((e.code, e.id), (code::MALFORMED, 3), "{len}");
            assert!(e.message.contains(what), "{len}: {}", e.message);
            assert!(e.recoverable());
        }
        // An answer that contradicts itself is refused, naming both bounds.
        for (points, lo, hi) in [(1u64, 5i64, 4i64), (0, 4, 4), (0, i64::MIN, i64::MAX)] {
            let mut b = Vec::new();
            encode_response(
                &mut b,
                1,
                &Response::Count {
                    points,
                    min_ts: lo,
                    max_ts: hi,
                },
            );
            let raw: [u8; HEADER_LEN] = b[..HEADER_LEN].try_into().unwrap();
            let h = decode_header(&raw).unwrap();
            let e = decode_response(&raw, &h, &b[HEADER_LEN..]).unwrap_err();
            assert_eq!(e.code, code::MALFORMED);
            assert!(
                e.message
                    .contains(&format!("{points} points with min ts {lo}")),
                "{}",
                e.message
            );
        }
        let mut b = Vec::new();
        frame(&mut b, kind::COUNT, 1, |o| o.extend_from_slice(&[0; 23]));
        let raw: [u8; HEADER_LEN] = b[..HEADER_LEN].try_into().unwrap();
        let h = decode_header(&raw).unwrap();
        let e = decode_response(&raw, &h, &b[HEADER_LEN..]).unwrap_err();
        assert!(e.message.contains("count max ts"), "{}", e.message);
        // The command it maps to, and its answer's frame.
        let req = Request::CountBound {
            tag: 9,
            start: 1,
            end: 2,
        };
        assert!(matches!(
            req.into_command(),
            Some(Command::CountBound {
                tag: 9,
                start: 1,
                end: 2
            })
        ));
        assert_eq!(
            reply_response(Ok(Answer::Count {
                points: 3,
                min_ts: 1,
                max_ts: 1
            })),
            Response::Count {
                points: 3,
                min_ts: 1,
                max_ts: 1
            }
        );
        assert_eq!(
            crate::net::auth::needs(kind::COUNT_BOUND),
            crate::storage::tokens::Perms::READ
        );
    }

    #[test]
    fn aggregate_requests_have_one_encoding() {
        let mut b = Vec::new();
        encode_request(&mut b, 1, &aggregate_requests()[0]);
        // Payload: mode, flags, 4 × i64, func code at 34, p at 35..43.
        let p = HEADER_LEN;
        let refit = |b: &mut Vec<u8>| {
            let crc = crc32fast::hash(&b[HEADER_LEN..]);
            b[20..24].copy_from_slice(&crc.to_le_bytes());
        };
        for (at, x, what) in [
            (p, 9u8, "mode"),
            (p + 1, 2, "flags"),
            (p + 34, 99, "function"),
            (p + 35, 1, "does not use"),
            (p + 52, 9, "fill"),
        ] {
            let mut bad = b.clone();
            bad[at] = x;
            refit(&mut bad);
            let e = decode_request_frame(&bad).unwrap_err();
            assert_eq!(e.code, code::MALFORMED, "{what}");
            assert!(e.message.contains(what), "{what}: {}", e.message);
        }
    }

    #[test]
    fn oversized_answers_become_error_frames() {
        let n = MAX_PAYLOAD / POINT_LEN + 1;
        let mut b = Vec::new();
        encode_response(
            &mut b,
            5,
            &Response::Points(vec![Point::new(1, 2, 3.0, 4); n]),
        );
        let raw: [u8; HEADER_LEN] = b[..HEADER_LEN].try_into().unwrap();
        let h = decode_header(&raw).unwrap();
        match decode_response(&raw, &h, &b[HEADER_LEN..]).unwrap() {
            Response::Error { code, message } => {
                assert_eq!(code, code::TOO_MANY);
                assert!(message.contains(&format!("{n} points")), "{message}");
            }
            other => panic!("{other:?}"),
        }
        // The largest write batch fits in a frame.
        let mut b = Vec::new();
        encode_write(&mut b, 1, &vec![Point::new(1, 2, 3.0, 4); MAX_POINTS]);
        assert!(matches!(decode_request_frame(&b), Ok(Some(_))));
    }

    #[test]
    fn refusals_name_the_problem() {
        let mut b = Vec::new();
        encode_write(&mut b, 3, &pts());
        let mut bad = b.clone();
        *bad.last_mut().unwrap() ^= 1;
        let e = decode_request_frame(&bad).unwrap_err();
        assert_eq!(e.code, code::BAD_CRC);
        assert!(e.recoverable());

        let mut bad = b.clone();
        bad[5] = 0x55;
        assert_eq!(
            decode_request_frame(&bad).unwrap_err().code,
            code::UNKNOWN_TYPE
        );

        let mut bad = b.clone();
        bad[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        let e = decode_request_frame(&bad).unwrap_err();
        assert_eq!(e.code, code::TOO_LARGE);
        assert!(e.message.contains("33554432"));
        assert!(!e.recoverable());

        let mut bad = b.clone();
        bad[0] = b'Y';
        assert_eq!(
            decode_request_frame(&bad).unwrap_err().code,
            code::BAD_MAGIC
        );
        let mut bad = b.clone();
        bad[4] = 9;
        assert_eq!(
            decode_request_frame(&bad).unwrap_err().code,
            code::BAD_VERSION
        );

        // A count that disagrees with the payload length.
        let mut p = Vec::new();
        p.extend_from_slice(&5u32.to_le_bytes());
        let mut bad = Vec::new();
        frame(&mut bad, kind::WRITE, 1, |o| o.extend_from_slice(&p));
        assert_eq!(
            decode_request_frame(&bad).unwrap_err().code,
            code::MALFORMED
        );

        // Over the point limit.
        let mut bad = Vec::new();
        frame(&mut bad, kind::WRITE, 1, |o| {
            o.extend_from_slice(&(MAX_POINTS as u32 + 1).to_le_bytes())
        });
        let e = decode_request_frame(&bad).unwrap_err();
        assert_eq!(e.code, code::TOO_MANY);
        assert!(e.message.contains("1000000"));
    }

    #[test]
    fn auth_frames_are_bounded_and_auth_codes_close() {
        for bad in [Vec::new(), vec![b'x'; MAX_AUTH_LEN + 1], vec![0xff, 0xfe]] {
            let mut b = Vec::new();
            frame(&mut b, kind::AUTH, 4, |o| o.extend_from_slice(&bad));
            let e = decode_request_frame(&b).unwrap_err();
            assert_eq!((e.code, e.id), (code::MALFORMED, 4), "{bad:?}");
        }
        let mut b = Vec::new();
        encode_auth(&mut b, 1, &"x".repeat(MAX_AUTH_LEN));
        assert!(matches!(
            decode_request_frame(&b),
            Ok(Some((1, Request::Auth(_), _)))
        ));
        assert!(code::closes_connection(code::AUTH_REQUIRED));
        assert!(code::closes_connection(code::AUTH_FAILED));
        assert!(!code::closes_connection(code::FORBIDDEN));
        // The token never shows in a request's Debug.
        let r = Request::Auth(Secret("xtdb_secret".into()));
        assert!(!format!("{r:?}").contains("secret"));
    }

    proptest::proptest! {
        #![proptest_config(crate::proptest_config::config(256))]
        #[test]
        fn random_bytes_never_panic(b in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let _ = decode_request_frame(&b);
            if b.len() >= HEADER_LEN {
                let raw: [u8; HEADER_LEN] = b[..HEADER_LEN].try_into().unwrap();
                if let Ok(h) = decode_header(&raw) {
                    let _ = decode_request(&raw, &h, &b[HEADER_LEN..]);
                    let _ = decode_response(&raw, &h, &b[HEADER_LEN..]);
                }
            }
        }

        #[test]
        fn aggregate_payloads_reencode_exactly(
            mode in 1u8..6,
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
        ) {
            // What the fuzz target `frame` asserts, on aggregate payloads.
            let mut payload = vec![mode, body.first().map_or(0, |b| b & 1)];
            payload.extend_from_slice(&body);
            let mut b = Vec::new();
            frame(&mut b, kind::AGGREGATE, 1, |o| o.extend_from_slice(&payload));
            if let Ok(Some((_, req, _))) = decode_request_frame(&b) {
                let mut again = Vec::new();
                encode_request(&mut again, 1, &req);
                proptest::prop_assert_eq!(&again[HEADER_LEN..], &payload[..]);
            }
        }

        #[test]
        fn fixed_size_requests_decode_only_at_their_size_and_reencode_exactly(
            kind in proptest::sample::select(vec![kind::RANGE, kind::RANGE_PIECES, kind::COUNT_BOUND]),
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..48),
        ) {
            let mut b = Vec::new();
            frame(&mut b, kind, 1, |o| o.extend_from_slice(&payload));
            match decode_request_frame(&b) {
                Ok(Some((_, req, _))) => {
                    proptest::prop_assert_eq!(payload.len(), 20);
                    let mut again = Vec::new();
                    encode_request(&mut again, 1, &req);
                    proptest::prop_assert_eq!(&again[..], &b[..]);
                }
                Ok(None) => proptest::prop_assert!(false, "a whole frame is never incomplete"),
                Err(e) => {
                    proptest::prop_assert_ne!(payload.len(), 20);
                    proptest::prop_assert_eq!(e.code, code::MALFORMED);
                }
            }
        }

        #[test]
        fn count_answers_roundtrip_or_are_refused(
            points in proptest::num::u64::ANY,
            min_ts in proptest::num::i64::ANY,
            max_ts in proptest::num::i64::ANY,
        ) {
            let resp = Response::Count { points, min_ts, max_ts };
            let mut b = Vec::new();
            encode_response(&mut b, 1, &resp);
            let raw: [u8; HEADER_LEN] = b[..HEADER_LEN].try_into().unwrap();
            let h = decode_header(&raw).unwrap();
            match decode_response(&raw, &h, &b[HEADER_LEN..]) {
                Ok(got) => {
                    proptest::prop_assert_eq!(got, resp);
                    proptest::prop_assert_eq!(points > 0, min_ts <= max_ts);
                }
                Err(e) => {
                    proptest::prop_assert_eq!(e.code, code::MALFORMED);
                    proptest::prop_assert_ne!(points > 0, min_ts <= max_ts);
                }
            }
        }

        #[test]
        fn streamed_points_answers_decode_as_whole_ones(
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..120),
            count in proptest::option::of(0u32..8),
            cut in 1usize..30,
            fix_crc in proptest::bool::ANY,
        ) {
            let mut payload = payload;
            if let Some(n) = count {
                // Often a consistent count, so records get decoded.
                payload.truncate(4 + n as usize * POINT_LEN);
                payload.resize(4 + n as usize * POINT_LEN, 0xA5);
                payload[..4].copy_from_slice(&n.to_le_bytes());
            }
            let mut b = Vec::new();
            frame(&mut b, kind::POINTS, 1, |o| o.extend_from_slice(&payload));
            let mut raw: [u8; HEADER_LEN] = b[..HEADER_LEN].try_into().unwrap();
            if !fix_crc {
                raw[20] ^= 1;
            }
            let h = decode_header(&raw).unwrap();
            proptest::prop_assert_eq!(
                streamed(&raw, &payload, cut),
                decode_response(&raw, &h, &payload)
            );
        }

        #[test]
        fn valid_header_random_payload_never_panics(
            kind in proptest::num::u8::ANY,
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
        ) {
            let mut b = Vec::new();
            frame(&mut b, kind, 1, |o| o.extend_from_slice(&payload));
            let _ = decode_request_frame(&b);
            let raw: [u8; HEADER_LEN] = b[..HEADER_LEN].try_into().unwrap();
            let h = decode_header(&raw).unwrap();
            let _ = decode_response(&raw, &h, &b[HEADER_LEN..]);
        }
    }

    /// `points` (sorted, unique timestamps) cut into consecutive pieces at
    /// `cuts`, each encoded with the codec when `encode` says so.
    fn pieces_of(tag: u32, points: &[Point], cuts: &[usize], encode: &[bool]) -> Pieces {
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (points.len() + 1)).collect();
        bounds.extend([0, points.len()]);
        bounds.sort_unstable();
        bounds.dedup();
        let mut pieces = Vec::new();
        for (i, w) in bounds.windows(2).enumerate() {
            let run = &points[w[0]..w[1]];
            if encode.get(i).copied().unwrap_or(false) {
                let mut e = crate::storage::codec::Encoder::default();
                for p in run {
                    e.push(p.ts, p.value.to_bits(), p.quality);
                }
                let seg = e.finish();
                let mut payload = vec![0; seg.payload_len()];
                seg.write_payload(&mut payload);
                pieces.push(Piece::Encoded {
                    count: seg.count,
                    min_ts: run[0].ts,
                    max_ts: run[run.len() - 1].ts,
                    payload,
                });
            } else {
                pieces.push(Piece::Points(run.to_vec()));
            }
        }
        Pieces {
            tag,
            start: i64::MIN,
            end: i64::MAX,
            pieces,
        }
    }

    fn wire(p: &Pieces) -> Vec<u8> {
        let mut b = Vec::new();
        encode_response(&mut b, 4, &Response::Pieces(p.clone()));
        b
    }

    fn decoded(b: &[u8]) -> Result<Pieces, FrameError> {
        match decode_response_frame(b)? {
            Some((_, Response::Pieces(p), _)) => Ok(p),
            other => panic!("not pieces: {other:?}"),
        }
    }

    proptest::proptest! {
        #![proptest_config(crate::proptest_config::config(256))]

        /// Pieces sent over the wire decode to exactly the points they were
        /// cut from, clipped to any range.
        #[test]
        fn pieces_decode_to_their_points(
            raw in proptest::collection::btree_map(
                -1000i64..1000,
                (proptest::prelude::any::<u64>(), proptest::prelude::any::<u8>()),
                1..300,
            ),
            cuts in proptest::collection::vec(0usize..400, 0..6),
            encode in proptest::collection::vec(proptest::prelude::any::<bool>(), 0..8),
            start in -1100i64..1100,
            len in 0i64..2500,
        ) {
            let points: Vec<Point> = raw
                .iter()
                .map(|(&ts, &(v, q))| Point::new(9, ts, f64::from_bits(v), q))
                .collect();
            let p = pieces_of(9, &points, &cuts, &encode);
            let back = decoded(&wire(&p)).unwrap();
            proptest::prop_assert_eq!(&back, &p);
            let end = start.saturating_add(len);
            let want: Vec<u64> = points
                .iter()
                .filter(|q| q.ts >= start && q.ts < end)
                .map(|q| q.value.to_bits() ^ q.ts as u64 ^ u64::from(q.quality) << 56)
                .collect();
            let got: Vec<u64> = pieces_points(&back, 9, start, end)
                .unwrap()
                .iter()
                .map(|q| q.value.to_bits() ^ q.ts as u64 ^ u64::from(q.quality) << 56)
                .collect();
            proptest::prop_assert_eq!(got, want);
        }

        /// Damaged pieces answers (any byte changed, the CRC fixed up so
        /// the damage reaches the decoders) are refused or decode to
        /// points in order inside the range; never a panic.
        #[test]
        fn damaged_pieces_are_refused_or_sane(
            raw in proptest::collection::btree_map(0i64..500, proptest::prelude::any::<u64>(), 1..100),
            cuts in proptest::collection::vec(0usize..120, 0..4),
            flips in proptest::collection::vec((proptest::prelude::any::<usize>(), 1u8..=255), 1..4),
        ) {
            let points: Vec<Point> =
                raw.iter().map(|(&ts, &v)| Point::new(2, ts, f64::from_bits(v), 192)).collect();
            let mut b = wire(&pieces_of(2, &points, &cuts, &[true, false, true, true]));
            for (at, x) in flips {
                let at = HEADER_LEN + at % (b.len() - HEADER_LEN);
                b[at] ^= x;
            }
            let crc = crc32fast::hash(&b[HEADER_LEN..]);
            b[20..24].copy_from_slice(&crc.to_le_bytes());
            if let Ok(p) = decoded(&b) {
                if let Ok(got) = pieces_points(&p, 2, 10, 400) {
                    proptest::prop_assert!(got.windows(2).all(|w| w[0].ts < w[1].ts));
                    proptest::prop_assert!(got.iter().all(|q| (10..400).contains(&q.ts) && q.tag == 2));
                }
            }
        }
    }

    #[test]
    fn inconsistent_pieces_are_named() {
        let points: Vec<Point> = (0..50)
            .map(|i| Point::new(3, i * 10, i as f64, 192))
            .collect();
        let good = pieces_of(3, &points, &[20], &[true, true]);
        assert_eq!(pieces_points(&good, 3, 0, 1000).unwrap(), points);
        // Another tag's pieces.
        assert!(pieces_points(&good, 4, 0, 1000)
            .unwrap_err()
            .contains("tag 3"));
        // Pieces out of time order.
        let mut swapped = good.clone();
        swapped.pieces.swap(0, 1);
        let e = pieces_points(&swapped, 3, 0, 1000).unwrap_err();
        assert!(e.contains("does not follow"), "{e}");
        // A span that does not hold the piece's points.
        let mut narrow = good.clone();
        if let Piece::Encoded { max_ts, .. } = &mut narrow.pieces[0] {
            *max_ts -= 10;
        }
        let e = pieces_points(&narrow, 3, 0, 1000).unwrap_err();
        assert!(e.contains("outside its span"), "{e}");
        // A count the payload does not hold.
        let mut short = good.clone();
        if let Piece::Encoded { count, .. } = &mut short.pieces[1] {
            *count += 1;
        }
        let e = pieces_points(&short, 3, 0, 1000).unwrap_err();
        assert!(e.contains("bad compressed payload"), "{e}");
        // More points than a range answers: refused while decoding the frame.
        let mut huge = good.clone();
        for _ in 0..3 {
            huge.pieces.push(Piece::Encoded {
                count: 1_200_000,
                min_ts: 0,
                max_ts: 0,
                payload: vec![0; 300_000],
            });
        }
        let e = decoded(&wire(&huge)).unwrap_err();
        assert!(e.message.contains("past the"), "{}", e.message);
        // A request frame for pieces names its fields.
        let mut b = Vec::new();
        frame(&mut b, kind::RANGE_PIECES, 3, |o| {
            o.extend_from_slice(&[0; 7])
        });
        let e = decode_request_frame(&b).unwrap_err();
        assert!(e.message.contains("range pieces start"), "{}", e.message);
    }
}
