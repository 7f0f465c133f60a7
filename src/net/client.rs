//! The native-protocol client used by `xtdb-load`, `xtdb stats` and the
//! tests. One connection, one request outstanding at a time; optionally
//! over TLS and authenticated with a token ([`ClientOptions`]). Must run
//! inside a glommio executor (it uses glommio's `TcpStream`).

use std::path::Path;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::aggregate::Partial;
use crate::net::error::{ClientError, ClientResult as Result};
use crate::net::protocol::{self, Header, PointsStream, Response, HEADER_LEN};
use crate::net::tls::{Stream, TlsClient};
use crate::runtime::command::{AggQuery, BackupSummary, Row};
use crate::storage::error::glommio_io;
use crate::storage::tokens::Perms;
use crate::Point;

/// How a client reaches a server: the token it authenticates with (an
/// AUTH frame right after connecting) and TLS. `Debug` does not show the
/// token.
#[derive(Clone, Default)]
pub struct ClientOptions {
    /// Token (`--token`, `XTDB_TOKEN`); none: no AUTH frame.
    pub token: Option<String>,
    /// TLS (`--tls-ca`); none: plain TCP.
    pub tls: Option<TlsClient>,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("tls", &self.tls)
            .finish()
    }
}

impl ClientOptions {
    /// From command-line values: a token (an empty one counts as none),
    /// a CA file for TLS and the name to expect in the server's certificate
    /// (default: the address's host). The error names the CA file.
    pub fn from_args(
        token: Option<String>,
        tls_ca: Option<&Path>,
        tls_server_name: Option<String>,
    ) -> std::result::Result<ClientOptions, String> {
        let tls = match tls_ca {
            None => None,
            Some(ca) => {
                let mut t = TlsClient::from_ca_file(ca)?;
                t.server_name = tls_server_name;
                Some(t)
            }
        };
        Ok(ClientOptions {
            token: token.filter(|t| !t.is_empty()),
            tls,
        })
    }
}

/// What the server said to an AUTH frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthInfo {
    /// The token's permissions (every one when the server runs with auth off).
    pub perms: Perms,
    /// The token's name (empty when the server runs with auth off).
    pub name: String,
}

/// A connection to an xtdb server.
pub struct Client {
    stream: Stream,
    next_id: u64,
    /// Requests being sent.
    buf: Vec<u8>,
    /// Answers' payloads. Its length only grows (up to
    /// [`KEEP_RX`]), so a large answer is read into bytes that were
    /// zeroed once, not on every call.
    rx: Vec<u8>,
    addr: String,
    /// The server answered a range-pieces request with "unknown type"
    /// (an older server): ranges are asked as points from then on.
    no_pieces: bool,
}

/// An answer buffer above this is released after the answer is decoded.
const KEEP_RX: usize = 8 << 20;

impl Client {
    /// Connects to `addr` (`host:port`) over plain TCP, without a token,
    /// and sets `TCP_NODELAY`.
    pub async fn connect(addr: &str) -> Result<Client> {
        Self::connect_with(addr, &ClientOptions::default()).await
    }

    /// Connects to `addr` (`host:port`), sets `TCP_NODELAY`, completes the
    /// TLS handshake (with `opts.tls`) and authenticates (with
    /// `opts.token`).
    pub async fn connect_with(addr: &str, opts: &ClientOptions) -> Result<Client> {
        let io = |op: &str, e| ClientError::Io {
            op: op.to_string(),
            addr: addr.to_string(),
            source: glommio_io(e),
        };
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| io("connect to", e))?;
        tcp.set_nodelay(true)
            .map_err(|e| io("set TCP_NODELAY on", e))?;
        let stream = match &opts.tls {
            None => Stream::Plain(tcp),
            Some(t) => t
                .connect(tcp, addr)
                .await
                .map_err(|source| ClientError::Io {
                    op: "TLS handshake (is the server's port TLS, and its certificate \
                         signed by --tls-ca?) with"
                        .into(),
                    addr: addr.to_string(),
                    source,
                })?,
        };
        let mut c = Client {
            stream,
            next_id: 1,
            buf: Vec::new(),
            rx: Vec::new(),
            addr: addr.to_string(),
            no_pieces: false,
        };
        if let Some(t) = &opts.token {
            c.authenticate(t).await?;
        }
        Ok(c)
    }

    /// Sends an AUTH frame with `token`. An unknown or revoked token is
    /// `Err(ClientError::Remote { code: 21, .. })`, and the server closes
    /// the connection.
    pub async fn authenticate(&mut self, token: &str) -> Result<AuthInfo> {
        let id = self.id();
        self.buf.clear();
        protocol::encode_auth(&mut self.buf, id, token);
        match self.call(id).await? {
            Response::AuthOk { perms, name } => Ok(AuthInfo {
                perms: Perms::from_bits(perms).ok_or_else(|| {
                    self.protocol(format!("auth ok with permission bits {perms:#x}"))
                })?,
                name,
            }),
            other => Err(unexpected("auth", &other)),
        }
    }

    /// Writes a batch; returns the number of points acknowledged (durable in
    /// their owners' WALs). `Err(ClientError::Remote{..})` on an error frame.
    pub async fn write(&mut self, points: &[Point]) -> Result<u64> {
        let id = self.id();
        self.buf.clear();
        protocol::encode_write(&mut self.buf, id, points);
        match self.call(id).await? {
            Response::Ack(n) => Ok(n),
            other => Err(unexpected("write", &other)),
        }
    }

    /// Points of `tag` with `start <= ts < end`, sorted by timestamp.
    /// Asked as a range-pieces request: the server may ship its disk
    /// segments encoded and this client decodes them
    /// ([`protocol::pieces_points`], every piece checked); a server that
    /// does not know the request is asked for points from then on.
    pub async fn range(&mut self, tag: u32, start: i64, end: i64) -> Result<Vec<Point>> {
        if !self.no_pieces {
            let id = self.id();
            self.buf.clear();
            protocol::encode_range_pieces(&mut self.buf, id, tag, start, end);
            match self.call(id).await {
                Ok(Response::Points(p)) => return Ok(p),
                Ok(Response::Pieces(p)) => {
                    return protocol::pieces_points(&p, tag, start, end)
                        .map_err(|e| self.protocol(format!("range pieces: {e}")))
                }
                Ok(other) => return Err(unexpected("range", &other)),
                Err(ClientError::Remote { code, .. }) if code == protocol::code::UNKNOWN_TYPE => {
                    self.no_pieces = true
                }
                Err(e) => return Err(e),
            }
        }
        self.range_points(tag, start, end).await
    }

    /// [`Client::range`] asked as a plain range request: the server
    /// decodes and ships 17-byte points.
    pub async fn range_points(&mut self, tag: u32, start: i64, end: i64) -> Result<Vec<Point>> {
        let id = self.id();
        self.buf.clear();
        protocol::encode_range(&mut self.buf, id, tag, start, end);
        match self.call(id).await? {
            Response::Points(p) => Ok(p),
            other => Err(unexpected("range", &other)),
        }
    }

    /// An upper bound of the points [`Client::range`] would return for the
    /// same arguments, from the owner's index and memory (no block read):
    /// `(points, min_ts, max_ts)`, every such point within `[min_ts,
    /// max_ts]` (no points: `min_ts > max_ts`). Needs `read`.
    pub async fn count_bound(&mut self, tag: u32, start: i64, end: i64) -> Result<(u64, i64, i64)> {
        let id = self.id();
        self.buf.clear();
        protocol::encode_count_bound(&mut self.buf, id, tag, start, end);
        match self.call(id).await? {
            Response::Count {
                points,
                min_ts,
                max_ts,
            } => Ok((points, min_ts, max_ts)),
            other => Err(unexpected("count bound", &other)),
        }
    }

    /// Latest point of each tag, in the order of `tags`.
    pub async fn latest(&mut self, tags: &[u32]) -> Result<Vec<Option<Point>>> {
        let id = self.id();
        self.buf.clear();
        protocol::encode_latest(&mut self.buf, id, tags);
        match self.call(id).await? {
            Response::Latest(v) if v.len() == tags.len() => Ok(v),
            Response::Latest(v) => Err(self.protocol(format!(
                "latest: asked for {} tags, server answered {}",
                tags.len(),
                v.len()
            ))),
            other => Err(unexpected("latest", &other)),
        }
    }

    /// Aggregates of `tags` (see [`AggQuery`] for every mode but
    /// partials): one row list per tag, in the order of `tags`.
    pub async fn aggregate(
        &mut self,
        tags: &[u32],
        query: &AggQuery,
        good_only: bool,
    ) -> Result<Vec<Vec<Row>>> {
        let id = self.id();
        self.buf.clear();
        protocol::encode_aggregate(&mut self.buf, id, tags, query, good_only);
        match self.call(id).await? {
            Response::Rows(v) if v.len() == tags.len() => Ok(v),
            Response::Rows(v) => Err(self.protocol(format!(
                "aggregate: asked for {} tags, server answered {}",
                tags.len(),
                v.len()
            ))),
            other => Err(unexpected("aggregate", &other)),
        }
    }

    /// Per-window partials of `tags` ([`AggQuery::Partials`]), in the order
    /// of `tags`.
    pub async fn aggregate_partials(
        &mut self,
        tags: &[u32],
        query: &AggQuery,
        good_only: bool,
    ) -> Result<Vec<Vec<Option<Partial>>>> {
        let id = self.id();
        self.buf.clear();
        protocol::encode_aggregate(&mut self.buf, id, tags, query, good_only);
        match self.call(id).await? {
            Response::Partials(v) if v.len() == tags.len() => Ok(v),
            Response::Partials(v) => Err(self.protocol(format!(
                "partials: asked for {} tags, server answered {}",
                tags.len(),
                v.len()
            ))),
            other => Err(unexpected("partials", &other)),
        }
    }

    /// Server counters, total and per shard (`total.points_written`,
    /// `shard0.wal_syncs`, `total.ack_p99_us`, ...).
    pub async fn stats(&mut self) -> Result<Vec<(String, u64)>> {
        let id = self.id();
        self.buf.clear();
        protocol::encode_stats(&mut self.buf, id);
        match self.call(id).await? {
            Response::Stats(v) => Ok(v),
            other => Err(unexpected("stats", &other)),
        }
    }

    /// An online backup of the server's data directory into `to`, a path on
    /// the server's machine (see [`crate::storage::backup`]); `link`
    /// hard-links sealed chunks when `to` is on the data's filesystem.
    /// `rate` paces each shard's reads and writes (bytes per second, 0:
    /// unpaced). Resolves once the backup's manifest is written. Needs
    /// `admin`.
    pub async fn backup(&mut self, to: &str, link: bool, rate: u64) -> Result<BackupSummary> {
        let id = self.id();
        self.buf.clear();
        protocol::encode_backup(&mut self.buf, id, to, link, rate);
        match self.call(id).await? {
            Response::BackupDone(s) => Ok(s),
            other => Err(unexpected("backup", &other)),
        }
    }

    /// Sends raw bytes and reads one answer frame. For protocol tests that
    /// need to send malformed frames.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> Result<(u64, Response)> {
        self.buf.clear();
        self.buf.extend_from_slice(bytes);
        self.send_buf().await?;
        self.read_response().await
    }

    fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn protocol(&self, reason: String) -> ClientError {
        ClientError::Protocol {
            addr: self.addr.clone(),
            reason,
        }
    }

    fn io(&self, op: &str, source: std::io::Error) -> ClientError {
        ClientError::Io {
            op: op.to_string(),
            addr: self.addr.clone(),
            source,
        }
    }

    async fn send_buf(&mut self) -> Result<()> {
        let r = self.stream.write_all(&self.buf).await;
        r.map_err(|e| self.io("send to", e))
    }

    async fn call(&mut self, id: u64) -> Result<Response> {
        self.send_buf().await?;
        let (got, resp) = self.read_response().await?;
        if let Response::Error { code, message } = resp {
            return Err(ClientError::Remote { code, message });
        }
        if got != id {
            return Err(self.protocol(format!("answer for request {got} while waiting for {id}")));
        }
        Ok(resp)
    }

    async fn read_response(&mut self) -> Result<(u64, Response)> {
        let mut raw = [0u8; HEADER_LEN];
        let r = self.stream.read_exact(&mut raw).await;
        r.map_err(|e| self.io("read answer header from", e))?;
        let h: Header = protocol::decode_header(&raw).map_err(|e| self.protocol(e.message))?;
        let len = h.len as usize;
        if self.rx.len() < len {
            self.rx.resize(len, 0);
        }
        // A range answer is decoded as it arrives (see `PointsStream`).
        let mut points = PointsStream::start(&raw, &h);
        let mut got = 0;
        while got < len {
            let r = self.stream.read(&mut self.rx[got..len]).await;
            match r {
                Ok(0) => {
                    let e = std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("connection closed after {got} of {len} payload bytes"),
                    );
                    return Err(self.io("read answer payload from", e));
                }
                Ok(n) => got += n,
                Err(e) => return Err(self.io("read answer payload from", e)),
            }
            if let Some(p) = &mut points {
                p.advance(&self.rx[..got]);
            }
        }
        let payload = &self.rx[..len];
        let resp = match points {
            Some(p) => p.finish(&raw, &h, payload),
            None => protocol::decode_response(&raw, &h, payload),
        };
        if self.rx.len() > KEEP_RX {
            self.rx = Vec::new();
        }
        let resp = resp.map_err(|e| self.protocol(e.message))?;
        Ok((h.id, resp))
    }
}

fn unexpected(what: &str, r: &Response) -> ClientError {
    let kind = match r {
        Response::Ack(_) => "ack",
        Response::Points(_) => "points",
        Response::Pieces(_) => "pieces",
        Response::Count { .. } => "count",
        Response::Latest(_) => "latest result",
        Response::Stats(_) => "stats result",
        Response::AuthOk { .. } => "auth ok",
        Response::Rows(_) => "rows",
        Response::Partials(_) => "partials",
        Response::BackupDone(_) => "backup done",
        Response::Error { .. } => "error",
    };
    ClientError::Protocol {
        addr: String::new(),
        reason: format!("{what}: unexpected {kind} answer"),
    }
}

/// Connects to `addr` (with `opts`), fetches the server's counters and
/// disconnects, on a throw-away glommio executor on the calling thread.
/// For command-line use.
pub fn fetch_stats_blocking(addr: &str, opts: &ClientOptions) -> Result<Vec<(String, u64)>> {
    let addr = addr.to_string();
    let opts = opts.clone();
    let ex = glommio::LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .make()
        .map_err(|e| ClientError::Io {
            op: "start an executor to reach".into(),
            addr: addr.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
    ex.run(crate::storage::keepalive::awake(async move {
        Client::connect_with(&addr, &opts).await?.stats().await
    }))
}

/// Lays out `scope.metric` counters as a table: one row per metric, one
/// column per scope (`total`, `shard0`, `shard1`, ...). Names without a
/// scope are listed first.
pub fn stats_table(stats: &[(String, u64)]) -> String {
    let mut scopes: Vec<&str> = vec!["total"];
    let mut metrics: Vec<&str> = Vec::new();
    let mut plain = Vec::new();
    for (name, v) in stats {
        match name.split_once('.') {
            Some((scope, metric)) => {
                if !scopes.contains(&scope) {
                    scopes.push(scope);
                }
                if !metrics.contains(&metric) {
                    metrics.push(metric);
                }
            }
            None => plain.push((name.as_str(), *v)),
        }
    }
    let get = |scope: &str, metric: &str| {
        stats
            .iter()
            .find(|(n, _)| n.split_once('.') == Some((scope, metric)))
            .map(|(_, v)| v.to_string())
            .unwrap_or_else(|| "-".into())
    };
    let mut out = String::new();
    for (n, v) in plain {
        out.push_str(&format!("{n}: {v}\n"));
    }
    let w0 = metrics.iter().map(|m| m.len()).max().unwrap_or(6).max(6);
    let cells: Vec<Vec<String>> = metrics
        .iter()
        .map(|m| scopes.iter().map(|s| get(s, m)).collect())
        .collect();
    let widths: Vec<usize> = scopes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            cells
                .iter()
                .map(|r| r[i].len())
                .max()
                .unwrap_or(0)
                .max(s.len())
        })
        .collect();
    out.push_str(&format!("{:<w0$}", "metric"));
    for (s, w) in scopes.iter().zip(&widths) {
        out.push_str(&format!("  {s:>w$}"));
    }
    out.push('\n');
    for (m, row) in metrics.iter().zip(&cells) {
        out.push_str(&format!("{m:<w0$}"));
        for (c, w) in row.iter().zip(&widths) {
            out.push_str(&format!("  {c:>w$}"));
        }
        out.push('\n');
    }
    out
}

/// Adds instantaneous rates to a second stats sample: for every
/// `scope.points_written`, `scope.write_batches`, `scope.wal_syncs` and
/// `scope.flushes` present in both samples, `scope.<name>_per_sec_now` =
/// the difference divided by `secs`.
pub fn with_rates(
    before: &[(String, u64)],
    after: &[(String, u64)],
    secs: f64,
) -> Vec<(String, u64)> {
    let mut out = after.to_vec();
    for (name, v) in after {
        let Some((scope, metric)) = name.split_once('.') else {
            continue;
        };
        if !matches!(
            metric,
            "points_written" | "write_batches" | "wal_syncs" | "flushes"
        ) {
            continue;
        }
        if let Some((_, b)) = before.iter().find(|(n, _)| n == name) {
            let rate = v.saturating_sub(*b) as f64 / secs.max(1e-9);
            out.push((format!("{scope}.{metric}_per_sec_now"), rate.round() as u64));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_table_pivots_scopes() {
        let s: Vec<(String, u64)> = [
            ("shards", 2),
            ("shard0.points_written", 10),
            ("shard1.points_written", 5),
            ("total.points_written", 15),
            ("total.ack_p99_us", 7),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), *v))
        .collect();
        let t = stats_table(&s);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "shards: 2");
        assert!(lines[1]
            .split_whitespace()
            .eq(["metric", "total", "shard0", "shard1"]));
        assert!(lines[2]
            .split_whitespace()
            .eq(["points_written", "15", "10", "5"]));
        assert!(lines[3]
            .split_whitespace()
            .eq(["ack_p99_us", "7", "-", "-"]));

        let later: Vec<(String, u64)> = s
            .iter()
            .map(|(n, v)| {
                (
                    n.clone(),
                    if n.ends_with("points_written") {
                        v + 20
                    } else {
                        *v
                    },
                )
            })
            .collect();
        let r = with_rates(&s, &later, 2.0);
        assert!(r.contains(&("total.points_written_per_sec_now".to_string(), 10)));
    }
}
