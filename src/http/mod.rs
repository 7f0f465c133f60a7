//! The HTTP edge (`xtdb serve --http ADDR`): InfluxDB-compatible writes, a
//! JSON query API, Prometheus `/metrics`. One `SO_REUSEPORT` listener per
//! shard; each connection is served by hyper 1.x (HTTP/1.1, keep-alive) on
//! the shard that accepted it, through [`GlommioIo`], and every request
//! becomes a runtime [`Command`](crate::runtime::command::Command) run by
//! the same [`dispatch`](crate::runtime::dispatch) as the native protocol.
//! A [`Failure`](crate::runtime::command::Failure) becomes a status in one
//! place ([`api::failure_resp`]). Never panics on input.
//!
//! Slow and idle clients (see [`conn`]): a request's headers must arrive
//! within [`HttpConfig::header_timeout`] of its first byte, its body at
//! [`HttpConfig::body_min_rate`] after [`HttpConfig::body_grace`] (`408`
//! otherwise), and a write takes its in-flight slot only once its body is
//! complete. An idle keep-alive connection is closed after
//! [`HttpConfig::idle_timeout`], or earlier when the listener is full and a
//! new client needs its slot.
//!
//! | method, path | what |
//! |---|---|
//! | `POST /write?db=&precision=n\|ns\|u\|us\|ms\|s\|m\|h` | InfluxDB 1.x write |
//! | `POST /api/v2/write?bucket=&org=&precision=ns\|us\|ms\|s` | InfluxDB 2.x write |
//! | `GET /ping` | 204, `X-Influxdb-Version: 1.8.10-xtdb` |
//! | `GET /health` | 200 `{"status":"ok"}` |
//! | `GET /api/v1/range?tag=KEY\|id=N&start=&end=&precision=` | points of one series |
//! | `GET /api/v1/latest?tag=KEY&tag=..&id=N&precision=` | latest point per series |
//! | `GET /api/v1/tags?match=SUBSTR&limit=N` | catalog listing |
//! | `GET /api/v1/aggregate?tag=..&start=&end=&every=&offset=&func=&fill=&good_only=` | a function per window (see [`aggregate`]) |
//! | `GET /api/v1/interpolated?tag=..&start=&end=&every=&interp=step\|linear` | values at an interval |
//! | `GET /api/v1/plot?tag=..&start=&end=&pixels=` | plot values (first, last, min, max per pixel) |
//! | `GET /api/v1/at_or_before?tag=..&time=` | the value in force at a time |
//! | `GET /api/v1/tokens` | the server's view of the token file (admin) |
//! | `POST /api/v1/backup?to=DIR&rate=MiB/s&link=true\|false` | an online backup into `DIR` on the server's machine (admin; see [`backup`]) |
//! | `GET/POST /query?q=&db=&epoch=&pretty=&chunked=&params=` | InfluxQL (InfluxDB 1.x), see [`influxql`] |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /`, `/ui/app.js`, `/ui/app.css`, `/favicon.ico` | the trend page, see [`ui`] |
//!
//! Authentication (`xtdb serve --auth on`, see [`auth`]) is checked per
//! request before its handler: writes need `write`; range, latest, tags, the
//! aggregate endpoints, `/query` and `/metrics` need `read` (`/metrics`
//! none with `--metrics-open`); tokens
//! and backup need `admin`; `/ping` and `/health` are open. With `--tls-cert` the
//! listener speaks HTTPS only.
//!
//! Writes (see [`line`] for the accepted syntax): `204` once every point
//! is durable (WAL fdatasync under `--sync always`, like native writes).
//! Bad lines (syntax, a per-line limit, a timestamp outside the window):
//! - `/write` (InfluxDB 1.x): the good lines are stored and durable, then
//!   the answer is `400 {"error": "partial write: line 3: ...; line 9: ...
//!   dropped=2", "line": 3, "lines": [3, 9], "dropped": 2}` (the first
//!   five reasons in `error`, the first 100 line numbers in `lines`); if
//!   no line was good, `error` starts with `unable to parse:` instead.
//!   Nothing of a bad line is stored or enters the catalog.
//! - `/api/v2/write` (InfluxDB 2.x, whose OSS server refuses a batch with
//!   a malformed line as a whole), and `/write` with
//!   [`HttpConfig::atomic_writes`]: nothing of the batch is stored; `400`
//!   with the same fields plus 2.x's `code: "invalid"` and `message`.
//!
//! String fields are dropped (xtdb stores numbers): the answer (204 or
//! 400) then carries `X-Xtdb-Dropped-Fields: N`.
//! Other answers: `400` for an unknown `precision` or a bad gzip body;
//! `413` when the body or its decompressed form exceeds
//! [`HttpConfig::max_body`]; `503` with `Retry-After: 1` when the shard
//! already has [`HttpConfig::max_inflight_writes`] writes in flight; `500`
//! for a storage or catalog failure. `db`, `bucket`, `org` and `rp` are
//! accepted and ignored: xtdb has one namespace. `Content-Encoding: gzip`
//! is supported.
//!
//! Queries: timestamps are in `precision` (default `us`); `start`
//! (inclusive, default the earliest) and `end` (exclusive, default the
//! latest). `range` answers `{"tag": KEY|null, "id": N, "points":
//! [{"ts": T, "value": V, "quality": Q}, ...]}`; `latest` answers
//! `[{"tag": KEY|null, "id": N, "ts": T|null, "value": V|null,
//! "quality": Q|null}, ...]` in request order; `tags` answers
//! `[{"id": N, "tag": KEY}, ...]` by id. An unknown tag name is a 404.

pub mod aggregate;
pub mod answer;
pub mod api;
pub mod auth;
pub mod backup;
pub mod conn;
pub mod influxql;
pub mod limits;
pub mod line;
pub mod metrics;
pub mod query;
pub mod request;
pub mod ui;
pub mod write;

use std::rc::Rc;
use std::time::Duration;

use glommio::net::{TcpListener, TcpStream};

use crate::net::tls::{ServerTls, Stream};
use crate::runtime::admission::{Closing, Slots};
use crate::runtime::auth::Guard;
use crate::runtime::catalog::Catalog;
use crate::runtime::router::Router;

/// HTTP settings.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Largest request body, bytes, before and after gzip decompression.
    pub max_body: usize,
    /// Socket read/write timeout: idle keep-alive connections and stalled
    /// requests are closed after it.
    pub idle_timeout: Duration,
    /// Writes in flight per shard before new ones get 503.
    pub max_inflight_writes: usize,
    /// Line-protocol limits and quality mapping.
    pub line: line::LineConfig,
    /// `/write` refuses the whole batch when a line is bad, as
    /// `/api/v2/write` always does (default: off, InfluxDB 1.x partial
    /// writes).
    pub atomic_writes: bool,
    /// `/metrics` without credentials even when auth is on.
    pub metrics_open: bool,
    /// Bounds on one InfluxQL statement at `/query`.
    pub influxql: influxql::Limits,
    /// A request's headers must arrive within this of its first byte; a
    /// connection that takes longer is closed (slowloris).
    pub header_timeout: Duration,
    /// A request body may take this long, plus one second per
    /// [`HttpConfig::body_min_rate`] bytes received; a slower one is
    /// answered `408` and the connection closed (slow drip).
    pub body_grace: Duration,
    /// Bytes per second a body must keep up after [`HttpConfig::body_grace`].
    pub body_min_rate: u64,
    /// Request body bytes a shard buffers at once, over all its
    /// connections; a body that would pass it is answered `503`.
    pub max_buffered_bodies: usize,
    /// Most points one `/api/v1/range` answer may hold; more is `400`
    /// naming the limit (use `/api/v1/plot` or `/api/v1/aggregate`).
    pub max_points_per_query: u64,
    /// Most new series (not yet in the catalog) one write request may
    /// create; a request with more is refused `400`, nothing stored.
    pub max_new_series_per_request: usize,
    /// New series one client address may create per second on one shard
    /// (a token bucket holding one second's worth); past it, `429` with
    /// `Retry-After`, nothing stored.
    pub max_new_series_per_second: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            max_body: 32 << 20,
            idle_timeout: Duration::from_secs(60),
            max_inflight_writes: 64,
            line: line::LineConfig::default(),
            atomic_writes: false,
            metrics_open: false,
            influxql: influxql::Limits::default(),
            header_timeout: Duration::from_secs(10),
            body_grace: Duration::from_secs(10),
            body_min_rate: 32 << 10,
            max_buffered_bodies: 256 << 20,
            max_points_per_query: 1_000_000,
            max_new_series_per_request: 100_000,
            max_new_series_per_second: 10_000,
        }
    }
}

/// Names of the counters the HTTP edge keeps per shard (in the shard's
/// [`Local`](crate::runtime::local::Local), reported over the mesh with its
/// storage counters, so nothing is shared between shards), with their
/// `/metrics` help text.
pub mod counter {
    /// Requests answered.
    pub const REQUESTS: &str = "http_requests";
    /// Write requests acknowledged (204).
    pub const WRITES_OK: &str = "http_writes_ok";
    /// Points (one per value field of a line) acknowledged.
    pub const POINTS_OK: &str = "http_points_ok";
    /// 4xx answers.
    pub const CLIENT_ERRORS: &str = "http_client_errors";
    /// 5xx answers (503 included).
    pub const SERVER_ERRORS: &str = "http_server_errors";
    /// 503 overload answers (connection limit included).
    pub const OVERLOADED: &str = "http_overloaded";
    /// Connections accepted.
    pub const CONNECTIONS: &str = "http_connections";
    /// Lines refused (not stored) by the line-protocol parser.
    pub const BAD_LINES: &str = "http_bad_lines";
    /// String fields dropped from stored lines (xtdb stores numbers).
    pub const DROPPED_STRING_FIELDS: &str = "http_dropped_string_fields";
    /// New series refused by the per-request or per-second limit.
    pub const SERIES_REFUSED: &str = "http_series_refused";
    /// Requests cut off for slow headers or bodies (slowloris, slow drip).
    pub const TOO_SLOW: &str = "http_too_slow";
    /// Connections closed to make room for a new one when all slots were
    /// taken (idle or unfinished ones, oldest first).
    pub const EVICTED: &str = "http_evicted";

    /// Every HTTP counter with its help text, in `/metrics` order.
    pub const ALL: [(&str, &str); 12] = [
        (REQUESTS, "HTTP requests answered"),
        (WRITES_OK, "HTTP write batches acknowledged"),
        (POINTS_OK, "points acknowledged over HTTP"),
        (CLIENT_ERRORS, "HTTP 4xx answers"),
        (SERVER_ERRORS, "HTTP 5xx answers"),
        (OVERLOADED, "HTTP 503 overload answers"),
        (CONNECTIONS, "HTTP connections accepted"),
        (BAD_LINES, "line-protocol lines refused"),
        (
            DROPPED_STRING_FIELDS,
            "string fields dropped from stored lines",
        ),
        (
            SERIES_REFUSED,
            "new series refused by the new-series limits",
        ),
        (TOO_SLOW, "requests cut off for slow headers or bodies"),
        (
            EVICTED,
            "idle or unfinished connections closed to make room",
        ),
    ];
}

/// What a shard's HTTP handlers share.
pub struct HttpState {
    /// The shard's router.
    pub router: Rc<Router>,
    /// The shard's catalog client.
    pub catalog: Rc<Catalog>,
    /// Settings.
    pub config: HttpConfig,
    /// Writes in flight on this shard ([`HttpConfig::max_inflight_writes`]),
    /// each taken once its body has arrived.
    pub writes: Slots,
    /// Request body bytes buffered on this shard now
    /// ([`HttpConfig::max_buffered_bodies`]).
    pub buffered: Rc<std::cell::Cell<usize>>,
    /// New series per client address ([`HttpConfig::max_new_series_per_second`]).
    pub new_series: limits::SeriesRate,
    /// The shard's authentication state.
    pub guard: Rc<Guard>,
    /// TLS, when the listener is an HTTPS port.
    pub tls: Option<Rc<ServerTls>>,
}

impl HttpState {
    /// The state of one shard's HTTP edge.
    pub fn new(
        router: Rc<Router>,
        config: HttpConfig,
        guard: Rc<Guard>,
        tls: Option<Rc<ServerTls>>,
    ) -> HttpState {
        HttpState {
            catalog: Catalog::new(Rc::clone(&router)),
            writes: Slots::new(config.max_inflight_writes),
            buffered: Rc::default(),
            new_series: limits::SeriesRate::new(config.max_new_series_per_second),
            router,
            config,
            guard,
            tls,
        }
    }

    /// Adds `n` to this shard's HTTP counter `name`.
    pub fn count(&self, name: &'static str, n: u64) {
        self.router.local().count(name, n);
    }
}

/// Accepts HTTP connections until `closing` (at most `max_connections` at
/// once; when all are taken, the connection idle or unfinished longest is
/// closed to make room (see [`conn`]); if every one is busy with a
/// request, the new one is answered `503` and closed — on an HTTPS port
/// closed without an answer, so a flood costs no handshakes), then lets every
/// connection finish its in-flight request (keep-alive is switched off) and
/// returns.
pub async fn accept_loop(
    listener: TcpListener,
    state: Rc<HttpState>,
    closing: Closing,
    max_connections: usize,
) {
    let what = format!("shard {} (http)", state.router.local().index);
    let conns = Rc::new(conn::Conns::default());
    let serve = |stream: TcpStream| {
        state.count(counter::CONNECTIONS, 1);
        conn::serve(
            stream,
            Rc::clone(&state),
            closing.clone(),
            Rc::clone(&conns),
        )
    };
    let evict = || {
        let evicted = conns.evict_one();
        if evicted {
            state.count(counter::EVICTED, 1);
        }
        evicted
    };
    let plain = state.tls.is_none();
    let refuse = |stream: TcpStream| {
        state.count(counter::SERVER_ERRORS, 1);
        state.count(counter::OVERLOADED, 1);
        async move {
            if !plain {
                return;
            }
            let mut stream = Stream::Plain(stream);
            let body = format!(
                "{{\"error\":\"connection limit reached: this shard already serves {max_connections} connections\"}}"
            );
            let answer = format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
                 retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            crate::net::accept::answer_and_close(&mut stream, answer.as_bytes()).await;
        }
    };
    crate::net::accept::accept_loop(
        listener,
        closing.clone(),
        max_connections,
        &what,
        serve,
        refuse,
        evict,
    )
    .await;
}
