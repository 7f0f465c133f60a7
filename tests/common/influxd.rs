//! A real InfluxDB 1.x (`influxd`, Debian package `influxdb`) for
//! differential tests: started on a temporary directory with free loopback
//! ports, every listener but HTTP off, no usage reporting; killed and its
//! directory removed on drop.
//!
//! ```ignore
//! #[path = "common/influxd.rs"]
//! mod influxd;
//! let Some(db) = influxd::Influxd::start() else { return }; // prints why
//! db.query(Some("mydb"), "CREATE DATABASE mydb", None);
//! let r = db.query(Some("mydb"), "SHOW MEASUREMENTS", None);
//! assert_eq!(r.status, 200);
//! ```
//!
//! `start` returns `None` (printing "skipped: influxd not installed") when
//! there is no `influxd` on `PATH`; `.ci/run` installs it. The HTTP client
//! here is a minimal HTTP/1.1 one (one request per connection, chunked or
//! sized bodies), enough for `/ping`, `/query` and `/write`.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `influxd`.
pub struct Influxd {
    child: Child,
    dir: tempfile::TempDir,
    /// Its HTTP address.
    pub addr: SocketAddr,
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Body (de-chunked).
    pub body: String,
}

/// `influxd` on `PATH`, if any.
pub fn binary() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("influxd"))
        .find(|p| p.is_file())
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Influxd {
    /// Starts `influxd` and waits until `/ping` answers (up to 30 s).
    /// `None`, with the reason printed, when it is not installed or does
    /// not come up.
    pub fn start() -> Option<Influxd> {
        let Some(bin) = binary() else {
            println!("skipped: influxd not installed (apt-get install influxdb)");
            return None;
        };
        let mut last = String::new();
        // Ports are picked free and then handed over; retry if another
        // process took one in between.
        for _ in 0..3 {
            match Self::try_start(&bin) {
                Ok(d) => return Some(d),
                Err(e) => last = e,
            }
        }
        println!("skipped: influxd did not start: {last}");
        None
    }

    fn try_start(bin: &PathBuf) -> Result<Influxd, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let (http, rpc) = (
            free_port().map_err(|e| e.to_string())?,
            free_port().map_err(|e| e.to_string())?,
        );
        let d = dir.path().display();
        // `reporting-enabled` is Debian's key, `reporting-disabled` upstream's;
        // unknown keys are ignored.
        let config = format!(
            r#"reporting-enabled = false
reporting-disabled = true
bind-address = "127.0.0.1:{rpc}"
[meta]
  dir = "{d}/meta"
  logging-enabled = false
[data]
  dir = "{d}/data"
  wal-dir = "{d}/wal"
  query-log-enabled = false
  wal-fsync-delay = "0s"
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:{http}"
  log-enabled = false
  pprof-enabled = false
[logging]
  level = "warn"
  suppress-logo = true
[continuous_queries]
  enabled = false
[subscriber]
  enabled = false
[retention]
  enabled = false
[shard-precreation]
  enabled = false
"#
        );
        let cfg = dir.path().join("influxdb.conf");
        std::fs::write(&cfg, config).map_err(|e| format!("write config: {e}"))?;
        let log = std::fs::File::create(dir.path().join("influxd.log"))
            .map_err(|e| format!("log file: {e}"))?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(bin)
            .arg("-config")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        let mut me = Influxd {
            child,
            dir,
            addr: SocketAddr::from(([127, 0, 0, 1], http)),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = me.child.try_wait() {
                return Err(format!("exited with {status}: {}", me.log()));
            }
            if let Ok(r) = me.request("GET", "/ping", "") {
                if r.status == 204 {
                    return Ok(me);
                }
            }
            if Instant::now() > deadline {
                return Err(format!("no /ping answer in 30 s: {}", me.log()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("influxd.log")).unwrap_or_default()
    }

    /// The base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `POST /query` with `q`, and `db` / `params` (a JSON object) if given.
    pub fn query(&self, db: Option<&str>, q: &str, params: Option<&str>) -> Response {
        let mut form = vec![("q", q)];
        if let Some(db) = db {
            form.push(("db", db));
        }
        if let Some(p) = params {
            form.push(("params", p));
        }
        self.query_form(&form)
    }

    /// `POST /query` with these form fields (`q`, `db`, `epoch`, `params`...).
    pub fn query_form(&self, form: &[(&str, &str)]) -> Response {
        let body: Vec<String> = form
            .iter()
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        self.request("POST", "/query", &body.join("&"))
            .unwrap_or_else(|e| panic!("influxd /query: {e}\n{}", self.log()))
    }

    /// `POST /write?db=` of line protocol (ns precision).
    pub fn write(&self, db: &str, lines: &str) -> Response {
        let path = format!("/write?db={}", encode(db));
        self.request("POST", &path, lines)
            .unwrap_or_else(|e| panic!("influxd /write: {e}\n{}", self.log()))
    }

    /// One HTTP/1.1 request on a fresh connection.
    pub fn request(&self, method: &str, path: &str, body: &str) -> Result<Response, String> {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))
            .map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let ctype = if path.starts_with("/query") {
            "application/x-www-form-urlencoded"
        } else {
            "text/plain"
        };
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.addr,
            body.len()
        );
        s.write_all(head.as_bytes())
            .and_then(|_| s.write_all(body.as_bytes()))
            .map_err(|e| format!("send: {e}"))?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
        parse_response(&raw)
    }
}

impl Drop for Influxd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Percent-encodes everything but unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {head}"))?;
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body)?;
    }
    Ok(Response {
        status,
        body: String::from_utf8_lossy(&body).to_string(),
    })
}

fn dechunk(mut b: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunk header")?;
        let size_text = String::from_utf8_lossy(&b[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("bad chunk size {size_text:?}: {e}"))?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if b.len() < size + 2 {
            return Err("short chunk".into());
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size + 2..];
    }
}
