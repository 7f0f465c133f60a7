//! Helpers shared by the server tests: start a two-shard server on CPUs 0
//! and 1 with small io memory, run client code on a glommio executor.
#![allow(dead_code)]

pub mod http;
pub mod pki;

use std::future::Future;
use std::io::Read;
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use xtdb::net::protocol::{self, Response, HEADER_LEN};

use xtdb::server::{start, ServerConfig, ServerHandle, Shutdown};
use xtdb::storage::SyncMode;
use xtdb::Point;

/// Starts a server on `cpus` over `dir`, listening on a free port.
pub fn server_on(dir: &Path, cpus: &[usize]) -> xtdb::error::Result<ServerHandle> {
    server_with(dir, cpus, |_| {})
}

/// Like [`server_on`], with `tweak` applied to the config before start.
pub fn server_with(
    dir: &Path,
    cpus: &[usize],
    tweak: impl FnOnce(&mut ServerConfig),
) -> xtdb::error::Result<ServerHandle> {
    let mut c = ServerConfig::new(dir)?;
    c.cpus = cpus.to_vec();
    c.listen = "127.0.0.1:0".into();
    c.sync = SyncMode::Always;
    c.memory_budget = 64 << 20;
    c.io_memory = 1 << 20;
    tweak(&mut c);
    start(c, Shutdown::new())
}

/// Two shards on CPUs 0 and 1.
pub fn server(dir: &Path) -> ServerHandle {
    server_on(dir, &[0, 1]).expect("server starts")
}

/// Runs `f` on a fresh glommio executor on its own thread.
pub fn client<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    std::thread::spawn(move || {
        glommio::LocalExecutorBuilder::default()
            .io_memory(1 << 20)
            .make()
            .expect("client executor")
            .run(xtdb::storage::keepalive::awake(f()))
    })
    .join()
    .expect("client thread")
}

pub fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Reads one answer frame: `None` on EOF.
pub fn answer(s: &mut TcpStream) -> Option<(u64, Response)> {
    let mut raw = [0u8; HEADER_LEN];
    s.read_exact(&mut raw).ok()?;
    let h = protocol::decode_header(&raw).unwrap();
    let mut p = vec![0u8; h.len as usize];
    s.read_exact(&mut p).unwrap();
    Some((h.id, protocol::decode_response(&raw, &h, &p).unwrap()))
}

pub fn error_code(r: Option<(u64, Response)>) -> (u16, String) {
    match r {
        Some((_, Response::Error { code, message })) => (code, message),
        other => panic!("expected an error frame, got {other:?}"),
    }
}

/// The server closed the connection: EOF, or a reset when it closed with
/// our unread bytes still in its receive buffer.
pub fn assert_closed(s: &mut TcpStream) {
    let mut b = [0u8; 1];
    match s.read(&mut b) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("connection should be closed, got {other:?}"),
    }
}

/// Creates tokens in the data dir `dir` (as `xtdb token create` does) and
/// returns them, in order.
pub fn make_tokens(dir: &Path, specs: &[(&str, xtdb::storage::tokens::Perms)]) -> Vec<String> {
    let (dir, specs): (std::path::PathBuf, Vec<(String, _)>) = (
        dir.to_path_buf(),
        specs.iter().map(|(n, p)| (n.to_string(), *p)).collect(),
    );
    client(move || async move {
        let mut s = xtdb::storage::tokens::TokenStore::open(&dir).await.unwrap();
        let mut out = Vec::new();
        for (n, p) in specs {
            out.push(s.create(&n, p, 1_700_000_000_000_000).await.unwrap());
        }
        s.close().await.unwrap();
        out
    })
}

/// Revokes the token named `name` in the data dir `dir`.
pub fn revoke_token(dir: &Path, name: &str) {
    let (dir, name) = (dir.to_path_buf(), name.to_string());
    client(move || async move {
        let mut s = xtdb::storage::tokens::TokenStore::open(&dir).await.unwrap();
        s.revoke(&name, 1_700_000_000_000_001).await.unwrap();
        s.close().await.unwrap();
    })
}

/// A stats counter's value.
pub fn stat(stats: &[(String, u64)], name: &str) -> u64 {
    stats.iter().find(|(n, _)| n == name).map_or(0, |(_, v)| *v)
}

/// Points of `tag`: `n` at 1 s steps from `t0`, values noisy enough that a
/// few thousand fill a block (so the tag's buffer is flushed while it is
/// written and the later points stay in memory).
pub fn series(tag: u32, t0: i64, n: i64) -> Vec<Point> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(tag);
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = (x >> 11) as f64 / (1u64 << 53) as f64;
            Point::new(tag, t0 + i * 1_000_000, v, 192)
        })
        .collect()
}

/// Writes `points` through `cl` in batches of `batch`, each acknowledged
/// in full, then waits (at most `secs`) until the server has written at
/// least `blocks` blocks, so a test sees points both in blocks and in
/// memory.
pub async fn write_until_flushed(
    cl: &mut xtdb::net::Client,
    points: &[Point],
    batch: usize,
    blocks: u64,
    secs: u64,
) {
    for b in points.chunks(batch) {
        assert_eq!(cl.write(b).await.unwrap(), b.len() as u64);
    }
    let until = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let s = cl.stats().await.unwrap();
        if stat(&s, "total.blocks_written") >= blocks {
            break;
        }
        assert!(
            std::time::Instant::now() < until,
            "fewer than {blocks} blocks flushed within {secs} s"
        );
        glommio::timer::sleep(Duration::from_millis(50)).await;
    }
}
