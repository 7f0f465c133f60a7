//! The HTTP edge against clumsy and hostile clients (issue: robust
//! against hostile use): slow-drip bodies, header slowloris, huge range
//! answers and series floods. Each test failed on the code before the fix
//! (503s for everyone, connection slots held, a whole range built in
//! memory, unbounded series creation).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use xtdb::server::{start, ServerConfig, ServerHandle, Shutdown};

mod net_common;
use net_common::http::req;

fn server_with(dir: &Path, f: impl FnOnce(&mut ServerConfig)) -> ServerHandle {
    let mut c = ServerConfig::new(dir).unwrap();
    c.cpus = vec![0];
    c.listen = "127.0.0.1:0".into();
    c.http = Some("127.0.0.1:0".into());
    c.memory_budget = 64 << 20;
    c.io_memory = 1 << 20;
    f(&mut c);
    start(c, Shutdown::new()).expect("server starts")
}

/// Opens a `POST /write` that declares `len` body bytes and sends `sent`.
fn drip(a: SocketAddr, len: usize, sent: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(a).unwrap();
    let head = format!("POST /write HTTP/1.1\r\nHost: x\r\nContent-Length: {len}\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(sent).unwrap();
    s
}

fn read_all(s: &mut TcpStream) -> String {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn slow_drip_bodies_hold_no_write_slot_and_are_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let h = server_with(dir.path(), |c| {
        c.http_config.max_inflight_writes = 4;
        c.http_config.body_grace = Duration::from_secs(2);
        c.http_config.body_min_rate = 1000;
    });
    let a = h.http_addr().unwrap();
    // Sixteen drips: four times the write slots.
    let mut drips: Vec<TcpStream> = (0..16).map(|_| drip(a, 1_000_000, b"m")).collect();
    std::thread::sleep(Duration::from_millis(300));
    for i in 0..20 {
        let line = format!("m,i={i} v={i} {}\n", 1_700_000_000_000_000_000i64 + i);
        let r = req(a, "POST", "/write", &[], line.as_bytes());
        assert_eq!(r.status, 204, "write {i} while bodies drip: {}", r.text());
    }
    // A byte a second is far below the minimum rate: 408 after the grace.
    let t = Instant::now();
    for s in drips.iter_mut() {
        let _ = s.write_all(b",");
    }
    let answer = read_all(&mut drips[0]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request body too slow"), "{answer}");
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    let m = req(a, "GET", "/metrics", &[], b"").text();
    assert!(
        m.lines()
            .any(|l| l.starts_with("xtdb_http_too_slow_total") && !l.ends_with(" 0")),
        "{m}"
    );
    h.stop().unwrap();
}

#[test]
fn header_slowloris_is_closed_and_evicted_for_new_clients() {
    let dir = tempfile::tempdir().unwrap();
    let h = server_with(dir.path(), |c| {
        c.limits.max_connections = 8;
        c.http_config.header_timeout = Duration::from_secs(2);
    });
    let a = h.http_addr().unwrap();
    // Twelve connections that never finish their headers: more than the
    // eight slots.
    let mut lorises: Vec<TcpStream> = (0..12)
        .map(|_| {
            let mut s = TcpStream::connect(a).unwrap();
            s.write_all(b"GET /api/v1/tags HTTP/1.1\r\nHost: x\r\nX-a: ")
                .unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // New clients are served at once: the oldest unfinished ones make room.
    for _ in 0..10 {
        let r = req(a, "GET", "/health", &[], b"");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // Every loris is closed within the header timeout (or evicted), even
    // one that keeps dripping header bytes; none is ever served. One that
    // arrived while the others were still silent and fresh (safe from
    // eviction for a second, so a new client can send its request) was
    // refused at once with the connection-limit 503 instead.
    let t = Instant::now();
    let _ = lorises[11].write_all(b"b");
    for s in lorises.iter_mut() {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        let text = String::from_utf8_lossy(&got);
        assert!(
            got.is_empty()
                || (text.starts_with("HTTP/1.1 503") && text.contains("connection limit")),
            "{text:?}"
        );
    }
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
    let m = req(a, "GET", "/metrics", &[], b"").text();
    assert!(
        m.lines()
            .any(|l| l.starts_with("xtdb_http_evicted_total") && !l.ends_with(" 0")),
        "{m}"
    );
    h.stop().unwrap();
}

fn write_points(a: SocketAddr, key_line: &str, n: usize, t0_us: i64) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(50_000) {
        let mut body = String::new();
        for &i in chunk {
            body.push_str(&format!("{key_line} v={}.25 {}\n", i, t0_us + i as i64));
        }
        let r = req(a, "POST", "/write?precision=u", &[], body.as_bytes());
        assert_eq!(r.status, 204, "{}", r.text());
    }
}

#[test]
fn range_answers_are_counted_limited_and_streamed() {
    let dir = tempfile::tempdir().unwrap();
    let h = server_with(dir.path(), |c| {
        c.http_config.max_points_per_query = 150_000;
    });
    let a = h.http_addr().unwrap();
    let t0 = 1_700_000_000_000_000i64;
    let n = 200_000;
    write_points(a, "big,k=a", n, t0);
    let key = "big%2Ck%3Da%20v";
    // Over the limit: 400 naming it and the count, nothing streamed.
    let r = req(a, "GET", &format!("/api/v1/range?tag={key}"), &[], b"");
    assert_eq!(r.status, 400, "{}", r.text());
    let e = r.json()["error"].as_str().unwrap().to_string();
    assert!(e.contains("200000 points") && e.contains("150000"), "{e}");
    // Under it: a chunked answer equal to the points written.
    let end = t0 + 120_000;
    let r = req(
        a,
        "GET",
        &format!("/api/v1/range?tag={key}&start={t0}&end={end}"),
        &[],
        b"",
    );
    assert_eq!(r.status, 200);
    assert!(
        r.headers
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{}",
        r.headers
    );
    let j: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(j["tag"], "big,k=a v");
    let pts = j["points"].as_array().unwrap();
    assert_eq!(pts.len(), 120_000);
    for (i, p) in pts.iter().enumerate() {
        assert_eq!(p["ts"].as_i64(), Some(t0 + i as i64));
        assert_eq!(p["value"].as_f64(), Some(i as f64 + 0.25));
    }
    // An empty range is a complete, empty answer.
    let r = req(
        a,
        "GET",
        &format!("/api/v1/range?tag={key}&start=5&end=6"),
        &[],
        b"",
    );
    let j: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(j["points"].as_array().map(Vec::len), Some(0), "{j}");
    h.stop().unwrap();
}

fn tags(a: SocketAddr) -> usize {
    req(a, "GET", "/api/v1/tags", &[], b"")
        .json()
        .as_array()
        .unwrap()
        .len()
}

fn series_body(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("flood,s={prefix}{i} v=1 1700000000000000000\n"))
        .collect()
}

#[test]
fn new_series_are_limited_per_request_and_per_second() {
    let dir = tempfile::tempdir().unwrap();
    let h = server_with(dir.path(), |c| {
        c.http_config.max_new_series_per_request = 100;
        c.http_config.max_new_series_per_second = 100;
    });
    let a = h.http_addr().unwrap();
    // One request over the per-request limit: 400, nothing created.
    let r = req(a, "POST", "/write", &[], series_body("a", 101).as_bytes());
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("--max-new-series-per-request"),
        "{}",
        r.text()
    );
    assert_eq!(tags(a), 0);
    // Existing series never count: a request may repeat them freely.
    let r = req(a, "POST", "/write", &[], series_body("b", 100).as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
    for _ in 0..5 {
        let r = req(a, "POST", "/write", &[], series_body("b", 100).as_bytes());
        assert_eq!(r.status, 204, "{}", r.text());
    }
    // Past the per-second rate (the bucket is empty after "b"): 429 with
    // Retry-After, nothing created.
    let r = req(a, "POST", "/write", &[], series_body("d", 100).as_bytes());
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(
        r.headers.to_ascii_lowercase().contains("retry-after: 1"),
        "{}",
        r.headers
    );
    assert_eq!(tags(a), 100);
    // The bucket refills.
    std::thread::sleep(Duration::from_millis(1100));
    let r = req(a, "POST", "/write", &[], series_body("d", 100).as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
    assert_eq!(tags(a), 200);
    h.stop().unwrap();
}

/// The seeded mix: a well-behaved writer and reader, alone and then
/// beside hostile clients (slow drips, slowloris, huge reads dropped
/// midway, pathological lines, series floods, connection churn). Nothing
/// acknowledged is lost, no well-behaved request fails (a `503` with
/// `Retry-After`, the server's answer when churn fills the listener, is
/// asked again once after it, as real clients do; the report counts
/// those), and none waits
/// long (the bound here is loose, for a debug build on a shared machine;
/// `xtdb-load scenario hostile` measures the p99 against the 50 ms
/// target on a release build: see the README's "Hostile input" table).
#[test]
fn well_behaved_clients_keep_working_beside_hostile_ones() {
    let dir = tempfile::tempdir().unwrap();
    let h = server_with(dir.path(), |c| {
        c.http_config.header_timeout = Duration::from_secs(2);
        c.http_config.body_grace = Duration::from_secs(2);
        c.http_config.max_new_series_per_request = 5_000;
        c.limits.max_connections = 64;
    });
    let cfg = xtdb::load::hostile::HostileConfig {
        http: h.http_addr().unwrap(),
        phase: Duration::from_secs(4),
        seed: 42,
        attackers: 6,
        big_points: 200_000,
        only: None,
    };
    let r = xtdb::load::hostile::run(&cfg).unwrap();
    println!("{}", r.text());
    assert!(r.acked_points > 0);
    assert_eq!(r.lost_points, 0, "{}", r.text());
    for l in r.write.iter().chain(&r.read) {
        assert_eq!(l.failed, 0, "{}", r.text());
        assert!(l.ok > 10, "{}", r.text());
        assert!(l.max_us < 2_000_000, "{}", r.text());
    }
    assert!(r.attacks.len() >= 4, "{}", r.text());
    h.stop().unwrap();
}

/// The sizes, in points, of a chunked range answer's chunks.
fn chunk_points(a: SocketAddr, path: &str) -> Vec<usize> {
    let mut s = TcpStream::connect(a).unwrap();
    let head = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let headers = String::from_utf8_lossy(&raw[..at]).to_ascii_lowercase();
    assert!(headers.contains("transfer-encoding: chunked"), "{headers}");
    let mut b = &raw[at..];
    let mut sizes = Vec::new();
    loop {
        let nl = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let len = usize::from_str_radix(std::str::from_utf8(&b[..nl]).unwrap().trim(), 16).unwrap();
        if len == 0 {
            break;
        }
        let chunk = &b[nl + 2..nl + 2 + len];
        sizes.push(chunk.windows(5).filter(|w| w == b"\"ts\":").count());
        b = &b[nl + 2 + len + 2..];
    }
    sizes
}

/// A dense stretch after a long sparse one: the range scan's chunk width
/// grows (doubling) over the sparse part, and every point of the dense
/// stretch came back in one chunk, however many (memory grew with it).
/// Each chunk is now narrowed from the count bound before it is read.
#[test]
fn a_dense_stretch_after_a_sparse_one_is_still_read_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let h = server_with(dir.path(), |_| {});
    let a = h.http_addr().unwrap();
    let t0 = 1_600_000_000_000_000i64;
    // Two years, a point every six hours; then 200,000 points 1 µs apart.
    let six_h = 6 * 3_600_000_000i64;
    let sparse = 2 * 365 * 4;
    let mut body = String::new();
    for i in 0..sparse {
        body.push_str(&format!("s v={i} {}\n", t0 + i * six_h));
    }
    let r = req(a, "POST", "/write?precision=u", &[], body.as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());
    let dense_t0 = t0 + sparse * six_h;
    write_points(a, "s", 200_000, dense_t0);
    let sizes = chunk_points(a, "/api/v1/range?tag=s%20v");
    assert_eq!(sizes.iter().sum::<usize>(), sparse as usize + 200_000);
    let most = *sizes.iter().max().unwrap();
    assert!(most <= 4 * 32_768, "a chunk of {most} points: {sizes:?}");
    h.stop().unwrap();
}
