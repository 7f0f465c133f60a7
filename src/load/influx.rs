//! `xtdb-load write --protocol influx-http --target URL`: the same
//! deterministic workload as the native writer, sent as InfluxDB line
//! protocol over HTTP/1.1 keep-alive to xtdb's `--http` edge or to any
//! Influx-compatible server (InfluxDB 1.x, VictoriaMetrics, ...).
//!
//! One line per point: `plant,tag=t<TAG> v=<value>,q=<quality>i <ts ns>`
//! (nanosecond timestamps, the default precision everywhere). On xtdb
//! started with `--quality-field q`, `q` becomes the point's quality;
//! otherwise (and on other servers) it is a second field. A batch is
//! acknowledged on 204 (or 200); any other status is an error carrying the
//! status and the body, and the writer re-sends the batch.
//!
//! The target is `http[s]://host:port[/path?query]`; the path defaults to
//! `/write?db=xtdb`. With a token (`--token`) every request carries
//! `Authorization: Token T`; `https://` needs `--tls-ca`. The client is hand-written (a request, then a
//! response with `Content-Length`, chunked or no body) so it runs inside a
//! glommio executor like the native one.

use std::fmt::Write as _;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;

use crate::error::{Error, Result};
use crate::load::conn::Conn;
use crate::net::tls::Stream;
use crate::net::{ClientError, ClientOptions};
use crate::storage::error::glommio_io;
use crate::Point;

/// A keep-alive HTTP connection that writes line protocol.
pub struct InfluxHttpConn {
    stream: Stream,
    host: String,
    auth: Option<String>,
    path: String,
    req: Vec<u8>,
    body: String,
    rbuf: Vec<u8>,
}

/// Splits `http[s]://host:port/path?q` into `(host:port, /path?q)`.
pub fn split_target(target: &str) -> Result<(String, String)> {
    let rest = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
        .unwrap_or(target);
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if host.is_empty() {
        return Err(Error::Config(format!("no host in target {target:?}")));
    }
    let path = if path.is_empty() || path == "/" {
        "/write?db=xtdb".to_string()
    } else {
        path.to_string()
    };
    Ok((host.to_string(), path))
}

/// Appends the line-protocol form of `p`.
pub fn line(out: &mut String, p: &Point) {
    let _ = writeln!(
        out,
        "plant,tag=t{} v={:?},q={}i {}",
        p.tag,
        p.value,
        p.quality,
        p.ts.saturating_mul(1000)
    );
}

fn proto(msg: impl Into<String>) -> Error {
    Error::Client(ClientError::Protocol {
        addr: String::new(),
        reason: msg.into(),
    })
}

impl InfluxHttpConn {
    async fn read_more(&mut self) -> Result<()> {
        let mut tmp = [0u8; 16 << 10];
        let n = self
            .stream
            .read(&mut tmp)
            .await
            .map_err(|e| Error::io("http read", None, e))?;
        if n == 0 {
            return Err(Error::Client(ClientError::Io {
                op: "read an HTTP answer from".into(),
                addr: self.host.clone(),
                source: std::io::ErrorKind::UnexpectedEof.into(),
            }));
        }
        self.rbuf.extend_from_slice(&tmp[..n]);
        Ok(())
    }

    /// Reads one response; returns status and body.
    async fn response(&mut self) -> Result<(u16, Vec<u8>)> {
        let head_end = loop {
            if let Some(i) = self.rbuf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            if self.rbuf.len() > 64 << 10 {
                return Err(proto("HTTP response header over 64 KiB"));
            }
            self.read_more().await?;
        };
        let head = String::from_utf8_lossy(&self.rbuf[..head_end]).into_owned();
        self.rbuf.drain(..head_end + 4);
        let status: u16 = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| proto(format!("bad status line in {head:?}")))?;
        let mut len = None;
        let mut chunked = false;
        for l in head.lines().skip(1) {
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "content-length" {
                len = v.parse::<usize>().ok();
            } else if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            }
        }
        let body = if chunked {
            let mut body = Vec::new();
            loop {
                let Some(i) = self.rbuf.windows(2).position(|w| w == b"\r\n") else {
                    self.read_more().await?;
                    continue;
                };
                let size_txt = String::from_utf8_lossy(&self.rbuf[..i]).into_owned();
                let size =
                    usize::from_str_radix(size_txt.split(';').next().unwrap_or("").trim(), 16)
                        .map_err(|_| proto(format!("bad chunk size {size_txt:?}")))?;
                while self.rbuf.len() < i + 2 + size + 2 {
                    self.read_more().await?;
                }
                body.extend_from_slice(&self.rbuf[i + 2..i + 2 + size]);
                self.rbuf.drain(..i + 2 + size + 2);
                if size == 0 {
                    break body;
                }
            }
        } else if let Some(n) = len {
            while self.rbuf.len() < n {
                self.read_more().await?;
            }
            self.rbuf.drain(..n).collect()
        } else if status == 204 || status == 304 || (100..200).contains(&status) {
            Vec::new()
        } else {
            // Body until close.
            while self.read_more().await.is_ok() {}
            std::mem::take(&mut self.rbuf)
        };
        Ok((status, body))
    }
}

impl Conn for InfluxHttpConn {
    async fn connect(target: &str, opts: &ClientOptions) -> Result<Self> {
        let (host, path) = split_target(target)?;
        let tcp = TcpStream::connect(host.as_str())
            .await
            .map_err(|e| Error::io(format!("connect to {host}"), None, glommio_io(e)))?;
        let _ = tcp.set_nodelay(true);
        let _ = tcp.set_read_timeout(Some(Duration::from_secs(60)));
        let stream = if target.starts_with("https://") {
            let Some(tls) = &opts.tls else {
                return Err(Error::Config(format!(
                    "https target {target} needs --tls-ca (the CA that signed the server's certificate)"
                )));
            };
            tls.with_alpn(&[b"http/1.1"])
                .connect(tcp, &host)
                .await
                .map_err(|e| Error::io(format!("TLS handshake with {host}"), None, e))?
        } else {
            Stream::Plain(tcp)
        };
        Ok(InfluxHttpConn {
            stream,
            auth: opts
                .token
                .as_ref()
                .map(|t| format!("Authorization: Token {t}\r\n")),
            host,
            path,
            req: Vec::new(),
            body: String::new(),
            rbuf: Vec::new(),
        })
    }

    async fn write(&mut self, points: &[Point]) -> Result<u64> {
        self.body.clear();
        for p in points {
            line(&mut self.body, p);
        }
        self.req.clear();
        self.req.extend_from_slice(
            format!(
                "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain; charset=utf-8\r\n\
                 {}Content-Length: {}\r\n\r\n",
                self.path,
                self.host,
                self.auth.as_deref().unwrap_or(""),
                self.body.len()
            )
            .as_bytes(),
        );
        self.req.extend_from_slice(self.body.as_bytes());
        self.stream
            .write_all(&self.req)
            .await
            .map_err(|e| Error::io("http write", None, e))?;
        let (status, body) = self.response().await?;
        match status {
            200 | 204 => Ok(points.len() as u64),
            _ => Err(Error::Client(ClientError::Remote {
                code: status,
                message: String::from_utf8_lossy(&body).chars().take(300).collect(),
            })),
        }
    }

    async fn range(&mut self, _tag: u32, _start: i64, _end: i64) -> Result<Vec<Point>> {
        Err(Error::Config(
            "range is not available over influx-http".into(),
        ))
    }

    async fn latest(&mut self, _tags: &[u32]) -> Result<Vec<Option<Point>>> {
        Err(Error::Config(
            "latest is not available over influx-http".into(),
        ))
    }

    async fn stats(&mut self) -> Result<Vec<(String, u64)>> {
        Err(Error::Config(
            "stats are not available over influx-http".into(),
        ))
    }

    async fn aggregate(
        &mut self,
        _tags: &[u32],
        _query: &crate::runtime::command::AggQuery,
        _good_only: bool,
    ) -> Result<Vec<Vec<crate::runtime::command::Row>>> {
        Err(Error::Config(
            "aggregates are not available over influx-http".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_and_lines() {
        assert_eq!(
            split_target("http://127.0.0.1:8086").unwrap(),
            ("127.0.0.1:8086".into(), "/write?db=xtdb".into())
        );
        assert_eq!(
            split_target("http://h:1/api/v2/write?bucket=b").unwrap(),
            ("h:1".into(), "/api/v2/write?bucket=b".into())
        );
        assert_eq!(
            split_target("https://h:1").unwrap(),
            ("h:1".into(), "/write?db=xtdb".into())
        );
        let mut s = String::new();
        line(&mut s, &Point::new(7, 1_000, 1.0, 192));
        assert_eq!(s, "plant,tag=t7 v=1.0,q=192i 1000000\n");
    }
}
