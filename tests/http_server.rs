//! The HTTP edge against a real two-shard server: writes read back through
//! the query API, gzip, errors with line numbers, limits, Prometheus text,
//! and tag ids that survive a restart.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;

use xtdb::server::{start, ServerConfig, ServerHandle, Shutdown};

mod net_common;
use net_common::http::req;

fn server(dir: &Path, max_body: usize) -> ServerHandle {
    server_with(dir, |c| c.http_config.max_body = max_body)
}

fn server_with(dir: &Path, f: impl FnOnce(&mut ServerConfig)) -> ServerHandle {
    let mut c = ServerConfig::new(dir).unwrap();
    c.cpus = vec![0, 1];
    c.listen = "127.0.0.1:0".into();
    c.http = Some("127.0.0.1:0".into());
    c.memory_budget = 64 << 20;
    c.io_memory = 1 << 20;
    // These tests (and xtdb-load) send the quality as a field `q`.
    c.http_config.line.quality_field = Some("q".into());
    f(&mut c);
    start(c, Shutdown::new()).expect("server starts")
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[test]
fn write_then_read_back_gzip_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let h = server(dir.path(), 1 << 20);
    let a = h.http_addr().expect("http on");

    assert_eq!(req(a, "GET", "/ping", &[], b"").status, 204);
    assert_eq!(req(a, "GET", "/health", &[], b"").status, 200);

    // 200 tags so both shards own some; two fields per line.
    let mut body = String::new();
    for t in 0..200 {
        body.push_str(&format!(
            "plant,tag=t{t} v={t}.5,w={t}i,q=100i 1700000000000000000\n"
        ));
    }
    let r = req(a, "POST", "/write?db=x&precision=ns", &[], body.as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());

    // gzip, 2.x endpoint, seconds.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"plant,tag=t7 v=99 1700000001\n").unwrap();
    let r = req(
        a,
        "POST",
        "/api/v2/write?bucket=b&org=o&precision=s",
        &[("Content-Encoding", "gzip")],
        &gz.finish().unwrap(),
    );
    assert_eq!(r.status, 204, "{}", r.text());

    let r = req(
        a,
        "GET",
        &format!("/api/v1/range?tag={}", enc("plant,tag=t7 v")),
        &[],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["tag"], "plant,tag=t7 v");
    let pts = j["points"].as_array().unwrap();
    assert_eq!(pts.len(), 2, "{j}");
    assert_eq!(pts[0]["ts"], 1_700_000_000_000_000i64);
    assert_eq!(pts[0]["value"], 7.5);
    assert_eq!(pts[0]["quality"], 100);
    assert_eq!(pts[1]["ts"], 1_700_000_001_000_000i64);
    assert_eq!(pts[1]["value"], 99.0);
    assert_eq!(pts[1]["quality"], 192);

    // Every series of the batch is listed and readable by id.
    let r = req(a, "GET", "/api/v1/tags?match=plant", &[], b"");
    let tags = r.json();
    assert_eq!(tags.as_array().unwrap().len(), 400);
    let mut q = String::from("/api/v1/latest?precision=ms");
    for t in tags.as_array().unwrap() {
        q.push_str(&format!("&id={}", t["id"]));
    }
    let latest = req(a, "GET", &q, &[], b"").json();
    let latest = latest.as_array().unwrap();
    assert_eq!(latest.len(), 400);
    assert!(latest
        .iter()
        .all(|p| p["ts"].as_i64().unwrap() >= 1_700_000_000_000));
    let r = req(a, "GET", "/api/v1/tags?match=tag%3Dt19%20w", &[], b"");
    assert_eq!(r.json().as_array().unwrap().len(), 1, "{}", r.text());

    // Range with bounds and precision.
    let r = req(
        a,
        "GET",
        &format!(
            "/api/v1/range?tag={}&start=1700000001&end=1700000002&precision=s",
            enc("plant,tag=t7 v")
        ),
        &[],
        b"",
    );
    assert_eq!(
        r.json()["points"].as_array().unwrap().len(),
        1,
        "{}",
        r.text()
    );

    // The whole batch is rejected (2.x), naming the first bad line.
    let r = req(
        a,
        "POST",
        "/api/v2/write",
        &[],
        b"plant,tag=new v=1\nplant,tag=new v=1e400\nbad\n",
    );
    assert_eq!(r.status, 400);
    let j = r.json();
    assert_eq!(j["line"], 2, "{j}");
    assert!(j["error"].as_str().unwrap().contains("not a finite"), "{j}");
    let r = req(a, "GET", "/api/v1/tags?match=new", &[], b"");
    assert_eq!(
        r.json().as_array().unwrap().len(),
        0,
        "nothing of a rejected batch is stored"
    );

    // Unknown precision, bad gzip, unknown tag, too large.
    let r = req(a, "POST", "/write?precision=xx", &[], b"m v=1");
    assert_eq!(r.status, 400);
    assert!(r.text().contains("unknown precision"), "{}", r.text());
    assert_eq!(
        req(a, "POST", "/api/v2/write?precision=u2", &[], b"m v=1").status,
        400
    );
    let r = req(
        a,
        "POST",
        "/write",
        &[("Content-Encoding", "gzip")],
        b"not gzip",
    );
    assert_eq!(r.status, 400);
    assert!(r.text().contains("gzip"), "{}", r.text());
    assert_eq!(
        req(a, "GET", "/api/v1/range?tag=nope", &[], b"").status,
        404
    );
    assert_eq!(req(a, "GET", "/api/v1/range", &[], b"").status, 400);
    let big = vec![b'#'; (1 << 20) + 1];
    assert_eq!(req(a, "POST", "/write", &[], &big).status, 413);
    // A gzip bomb: small compressed, over the limit decompressed.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![b'#'; 4 << 20]).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 1 << 20);
    let r = req(a, "POST", "/write", &[("Content-Encoding", "gzip")], &bomb);
    assert_eq!(r.status, 413, "{}", r.text());
    // A gzip body over 64 KiB is inflated on the blocking pool: same answers.
    let lines: String = (0..3000)
        .map(|i| format!("big,tag=b{} v={}.25 {}\n", i % 3, i, 1_700_000_000 + i))
        .collect();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
    gz.write_all(lines.as_bytes()).unwrap();
    let stored = gz.finish().unwrap();
    assert!(stored.len() > 64 << 10, "{}", stored.len());
    let gzip = [("Content-Encoding", "gzip")];
    let r = req(
        a,
        "POST",
        "/write?precision=s",
        &gzip,
        &stored[..stored.len() - 9],
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("invalid gzip body"), "{}", r.text());
    let r = req(a, "POST", "/write?precision=s", &gzip, &stored);
    assert_eq!(r.status, 204, "{}", r.text());
    let r = req(
        a,
        "GET",
        &format!("/api/v1/range?tag={}", enc("big,tag=b1 v")),
        &[],
        b"",
    );
    assert_eq!(r.json()["points"].as_array().map(|p| p.len()), Some(1000));
    assert_eq!(req(a, "GET", "/nope", &[], b"").status, 404);
    assert_eq!(req(a, "DELETE", "/write", &[], b"").status, 405);

    // Keep-alive: several requests on one connection.
    let mut s = TcpStream::connect(a).unwrap();
    for _ in 0..3 {
        s.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 204"));
    }
    drop(s);

    let m = req(a, "GET", "/metrics", &[], b"");
    assert_eq!(m.status, 200);
    assert!(m
        .headers
        .to_ascii_lowercase()
        .contains("text/plain; version=0.0.4"));
    check_prometheus(&m.text());
    assert!(m.text().contains("xtdb_http_writes_ok_total{shard="));
    assert!(m
        .text()
        .contains("xtdb_write_ack_latency_microseconds{shard=\"0\",quantile=\"0.99\"}"));
    h.stop().unwrap();
}

/// A strict check of the text exposition format: every sample line is
/// `name{labels} value`, names are valid, each sample's family was declared
/// by a `# TYPE` line before it, and families are not split.
fn check_prometheus(text: &str) {
    use std::collections::HashSet;
    let mut typed: HashSet<String> = HashSet::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current = String::new();
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let name = it.next().unwrap();
            let ty = it.next().unwrap();
            assert!(valid_name(name), "{line}");
            assert!(["counter", "gauge", "summary", "histogram", "untyped"].contains(&ty));
            assert!(typed.insert(name.to_string()), "family typed twice: {line}");
            if !current.is_empty() {
                finished.insert(std::mem::take(&mut current));
            }
            current = name.to_string();
            continue;
        }
        if line.starts_with('#') {
            assert!(line.starts_with("# HELP "), "{line}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        assert!(value.parse::<f64>().is_ok(), "bad value: {line}");
        let name = series.split('{').next().unwrap();
        assert!(valid_name(name), "{line}");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                for l in labels[1..labels.len() - 1].split(',') {
                    let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("{line}"));
                    assert!(valid_name(k), "{line}");
                    assert!(v.starts_with('"') && v.ends_with('"'), "{line}");
                }
            }
        }
        let family = ["_sum", "_count", "_bucket"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains(*f)))
            .unwrap_or(name);
        assert_eq!(family, current, "sample outside its family: {line}");
        assert!(!finished.contains(family));
    }
    assert!(typed.len() > 10, "{text}");
}

#[test]
fn tag_ids_are_stable_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let h = server(dir.path(), 1 << 20);
        let a = h.http_addr().unwrap();
        let mut body = String::new();
        for t in 0..50 {
            body.push_str(&format!("m,tag=t{t} v={t} {}\n", 1_000 + t));
        }
        assert_eq!(
            req(a, "POST", "/write?precision=us", &[], body.as_bytes()).status,
            204
        );
        let tags = req(a, "GET", "/api/v1/tags", &[], b"").json();
        h.stop().unwrap();
        tags
    };
    assert_eq!(first.as_array().unwrap().len(), 50);
    let h = server(dir.path(), 1 << 20);
    let a = h.http_addr().unwrap();
    assert_eq!(req(a, "GET", "/api/v1/tags", &[], b"").json(), first);
    // Old keys keep their ids; a new key gets the next one.
    let body = "m,tag=t3 v=3.5 2000\nm,tag=new v=1 2000\n";
    assert_eq!(
        req(a, "POST", "/write?precision=us", &[], body.as_bytes()).status,
        204
    );
    let tags = req(a, "GET", "/api/v1/tags", &[], b"").json();
    let tags = tags.as_array().unwrap();
    assert_eq!(tags.len(), 51);
    assert_eq!(tags[..50], first.as_array().unwrap()[..]);
    assert_eq!(tags[50]["tag"], "m,tag=new v");
    assert_eq!(tags[50]["id"], first[49]["id"].as_u64().unwrap() + 1);
    let r = req(
        a,
        "GET",
        &format!("/api/v1/range?tag={}", enc("m,tag=t3 v")),
        &[],
        b"",
    )
    .json();
    let pts = r["points"].as_array().unwrap();
    assert_eq!(pts.len(), 2, "{r}");
    assert_eq!(pts[0]["ts"], 1003);
    assert_eq!(pts[1]["value"], 3.5);
    h.stop().unwrap();
}

#[test]
fn load_generator_writes_over_influx_http() {
    use xtdb::load::influx::InfluxHttpConn;
    use xtdb::load::write;
    let dir = tempfile::tempdir().unwrap();
    let h = server(dir.path(), 1 << 20);
    let a = h.http_addr().unwrap();
    let mut w = write::WriteConfig::new(&format!("http://{a}/api/v2/write?bucket=b&precision=ns"));
    w.tags = 300;
    w.batch = 100;
    w.conns = 2;
    w.max_ticks = Some(3);
    w.duration = std::time::Duration::from_secs(60);
    w.progress = false;
    let r = write::run::<InfluxHttpConn>(&w).unwrap();
    assert_eq!(r.points_acked, 900);
    let tags = req(a, "GET", "/api/v1/tags?match=plant", &[], b"").json();
    assert_eq!(tags.as_array().unwrap().len(), 300);
    let r = req(
        a,
        "GET",
        &format!("/api/v1/range?tag={}", enc("plant,tag=t5 v")),
        &[],
        b"",
    )
    .json();
    assert_eq!(r["points"].as_array().unwrap().len(), 3, "{r}");
    h.stop().unwrap();
}

#[test]
fn overload_answers_503_with_retry_after_and_idle_connections_close() {
    let dir = tempfile::tempdir().unwrap();
    let h = server_with(dir.path(), |c| {
        c.http_config.max_inflight_writes = 0;
        c.http_config.idle_timeout = std::time::Duration::from_millis(300);
    });
    let a = h.http_addr().unwrap();
    let r = req(a, "POST", "/write", &[], b"m v=1");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.headers.to_ascii_lowercase().contains("retry-after: 1"),
        "{}",
        r.headers
    );
    // Queries are not limited.
    assert_eq!(req(a, "GET", "/api/v1/tags", &[], b"").status, 200);
    // An idle keep-alive connection is closed after the idle timeout.
    let mut s = TcpStream::connect(a).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let t = std::time::Instant::now();
    let mut buf = [0u8; 64];
    assert_eq!(s.read(&mut buf).unwrap_or(0), 0);
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    h.stop().unwrap();
}

#[test]
fn connections_over_the_limit_get_503_and_timestamps_outside_the_window_400() {
    let dir = tempfile::tempdir().unwrap();
    let h = server_with(dir.path(), |c| {
        c.cpus = vec![0];
        c.limits.max_connections = 1;
    });
    let a = h.http_addr().unwrap();
    // An idle keep-alive connection gives its slot to a new client.
    let mut idle = TcpStream::connect(a).unwrap();
    idle.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 256];
    let n = idle.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 204"), "{:?}", &buf[..n]);
    assert_eq!(req(a, "GET", "/ping", &[], b"").status, 204);
    assert_eq!(
        idle.read(&mut buf).unwrap_or(0),
        0,
        "the idle one was closed"
    );
    // A connection with a request in flight (its body still arriving)
    // holds the only slot.
    let mut held = TcpStream::connect(a).unwrap();
    held.write_all(b"POST /write HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nm v=1")
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    let r = req(a, "GET", "/ping", &[], b"");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("connection limit"), "{}", r.text());
    assert!(r.headers.to_ascii_lowercase().contains("retry-after: 1"));
    drop(held);
    let t = std::time::Instant::now();
    while req(a, "GET", "/ping", &[], b"").status != 204 {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "slot never freed"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // A timestamp before the epoch (the default window's start) on line 2:
    // 400 naming the line, and nothing of the (2.x) batch is stored.
    let body = b"w,id=1 v=1 1000\nw,id=2 v=2 -5000\n";
    let r = req(a, "POST", "/api/v2/write?precision=us", &[], body);
    assert_eq!(r.status, 400, "{}", r.text());
    let j = r.json();
    assert_eq!(j["line"], 2, "{j}");
    assert!(
        j["error"]
            .as_str()
            .unwrap()
            .contains("before the accepted window"),
        "{j}"
    );
    let r = req(a, "GET", "/api/v1/tags", &[], b"");
    assert_eq!(
        r.json().as_array().map(|v| v.len()),
        Some(0),
        "{}",
        r.text()
    );
    h.stop().unwrap();
}
