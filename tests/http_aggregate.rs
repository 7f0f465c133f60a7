//! The aggregate endpoints (HTTP JSON and native frames) against a real
//! two-shard server: many series
//! across both shards answered in request order, every endpoint's rows
//! checked against values computed here, bad parameters answered 400
//! naming the parameter, the row limit refused naming the limit, and the
//! summary/decode counters on /metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use serde_json::Value;
use xtdb::server::{start, ServerConfig, ServerHandle, Shutdown};

mod net_common;
use net_common::http::req;

const BASE_S: i64 = 1_700_000_000;
const N: i64 = 600;
const TAGS: i64 = 12;

fn server(dir: &Path) -> ServerHandle {
    let mut c = ServerConfig::new(dir).unwrap();
    c.cpus = vec![0, 1];
    c.listen = "127.0.0.1:0".into();
    c.http = Some("127.0.0.1:0".into());
    c.memory_budget = 64 << 20;
    c.io_memory = 1 << 20;
    c.max_query_rows = 5000;
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

fn key(t: i64) -> String {
    enc(&format!("plant,tag=t{t} v"))
}

fn value(t: i64, i: i64) -> f64 {
    (t * 1000 + i) as f64
}

fn rows(j: &Value, k: usize) -> Vec<(i64, Option<f64>)> {
    j[k]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_i64().unwrap(), r[1].as_f64()))
        .collect()
}

#[test]
fn aggregate_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let h = server(dir.path());
    let a = h.http_addr().expect("http on");
    let mut body = String::new();
    for t in 0..TAGS {
        for i in 0..N {
            let ns = (BASE_S + i) as i128 * 1_000_000_000;
            body.push_str(&format!("plant,tag=t{t} v={} {ns}\n", value(t, i)));
        }
    }
    let r = req(a, "POST", "/write?db=x&precision=ns", &[], body.as_bytes());
    assert_eq!(r.status, 204, "{}", r.text());

    // Minute means of tags in a mixed order (both shards), seconds.
    let order = [5i64, 0, 11, 3, 5];
    let tags: String = order.iter().map(|&t| format!("&tag={}", key(t))).collect();
    let q = format!(
        "/api/v1/aggregate?precision=s&start={BASE_S}&end={}&every=1m&func=mean{tags}",
        BASE_S + N
    );
    let r = req(a, "GET", &q, &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j.as_array().unwrap().len(), order.len());
    for (k, &t) in order.iter().enumerate() {
        let got = rows(&j, k);
        // Windows aligned to the epoch: BASE_S is 20 s into a minute, so
        // 600 s touch 11 windows, labelled with their aligned starts.
        assert_eq!(got.len(), 11, "tag {t}");
        for (w, (ts, v)) in got.into_iter().enumerate() {
            let lo = (BASE_S / 60) * 60 + w as i64 * 60;
            assert_eq!(ts, lo);
            let first = (lo - BASE_S).max(0);
            let last = (lo + 60 - BASE_S).min(N) - 1;
            let want = (first..=last).map(|i| value(t, i)).sum::<f64>() / (last - first + 1) as f64;
            assert_eq!(v, Some(want), "tag {t} window {w} at {ts}");
        }
    }

    // Count over the whole range (no every: one window), by id too.
    let r = req(
        a,
        "GET",
        &format!("/api/v1/tags?match={}", enc("t3 v")),
        &[],
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let id = r.json()[0]["id"].as_u64().unwrap();
    let q = format!(
        "/api/v1/aggregate?precision=s&start={BASE_S}&end={}&func=count&id={id}",
        BASE_S + N
    );
    let r = req(a, "GET", &q, &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(rows(&r.json(), 0), vec![(BASE_S, Some(N as f64))]);

    // Fill previous before the data: the value in force is looked up.
    let q = format!(
        "/api/v1/aggregate?precision=s&start={}&end={}&every=10s&func=max&fill=previous&tag={}",
        BASE_S + N + 5,
        BASE_S + N + 25,
        key(2)
    );
    let r = req(a, "GET", &q, &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let got = rows(&r.json(), 0);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got.iter().all(|r| r.1 == Some(value(2, N - 1))), "{got:?}");

    // Time-weighted average, step: one window over [10, 20) s.
    let q = format!(
        "/api/v1/aggregate?precision=s&start={}&end={}&func=twa&tag={}",
        BASE_S + 10,
        BASE_S + 20,
        key(1)
    );
    let r = req(a, "GET", &q, &[], b"");
    let want = (10..20).map(|i| value(1, i)).sum::<f64>() / 10.0;
    assert_eq!(rows(&r.json(), 0), vec![(BASE_S + 10, Some(want))]);

    // Interpolated, linear, at half seconds (ms precision).
    let s_ms = (BASE_S + 100) * 1000 + 500;
    let q = format!(
        "/api/v1/interpolated?precision=ms&start={s_ms}&end={}&every=1000&interp=linear&tag={}",
        s_ms + 2000,
        key(4)
    );
    let r = req(a, "GET", &q, &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let got = rows(&r.json(), 0);
    let want: Vec<_> = (0..3)
        .map(|k| (s_ms + k * 1000, Some(value(4, 100 + k) + 0.5)))
        .collect();
    assert_eq!(got, want);

    // Plot: 3 pixels over 30 s of a rising line: first and last per pixel.
    let q = format!(
        "/api/v1/plot?precision=s&start={BASE_S}&end={}&pixels=3&tag={}",
        BASE_S + 30,
        key(0)
    );
    let r = req(a, "GET", &q, &[], b"");
    assert_eq!(r.status, 200, "{}", r.text());
    let got: Vec<i64> = rows(&r.json(), 0).iter().map(|r| r.0 - BASE_S).collect();
    assert_eq!(got, vec![0, 9, 10, 19, 20, 29]);

    // At or before.
    let q = format!(
        "/api/v1/at_or_before?precision=s&time={}&tag={}",
        BASE_S + N + 1000,
        key(7)
    );
    let r = req(a, "GET", &q, &[], b"");
    assert_eq!(
        rows(&r.json(), 0),
        vec![(BASE_S + N - 1, Some(value(7, N - 1)))]
    );

    // Bad parameters name themselves.
    let t0 = key(0);
    for (q, name) in [
        (format!("/api/v1/aggregate?end=5&tag={t0}"), "start"),
        (
            format!("/api/v1/aggregate?start=0&end=5&func=avg&tag={t0}"),
            "func",
        ),
        (
            format!("/api/v1/aggregate?start=0&end=5&fill=maybe&tag={t0}"),
            "fill",
        ),
        (
            format!("/api/v1/aggregate?start=0&end=5&every=-1&tag={t0}"),
            "every",
        ),
        (
            format!("/api/v1/aggregate?start=0&end=5&every=1x&tag={t0}"),
            "every",
        ),
        (
            format!("/api/v1/aggregate?start=0&end=5&func=percentile&tag={t0}"),
            "p",
        ),
        (
            format!("/api/v1/aggregate?start=0&end=5&good_only=perhaps&tag={t0}"),
            "good_only",
        ),
        (
            format!("/api/v1/interpolated?start=0&end=5&tag={t0}"),
            "every",
        ),
        (
            format!("/api/v1/interpolated?start=0&end=5&every=1&interp=cubic&tag={t0}"),
            "interp",
        ),
        (
            format!("/api/v1/plot?start=0&end=5&pixels=0&tag={t0}"),
            "pixels",
        ),
        (format!("/api/v1/at_or_before?tag={t0}"), "time"),
        ("/api/v1/aggregate?start=0&end=5".to_string(), "tag=NAME"),
    ] {
        let r = req(a, "GET", &q, &[], b"");
        assert_eq!(r.status, 400, "{q}: {}", r.text());
        let e = r.json()["error"].as_str().unwrap().to_string();
        assert!(e.contains(name), "{q}: {e}");
    }
    let r = req(
        a,
        "GET",
        "/api/v1/aggregate?start=0&end=5&tag=nope",
        &[],
        b"",
    );
    assert_eq!(r.status, 404, "{}", r.text());

    // The row limit (5000): 2 tags × 3000 windows is refused, naming it.
    let q = format!(
        "/api/v1/aggregate?start=0&end=3000&every=1&tag={}&tag={}",
        key(0),
        key(1)
    );
    let r = req(a, "GET", &q, &[], b"");
    assert_eq!(r.status, 400, "{}", r.text());
    let e = r.json()["error"].as_str().unwrap().to_string();
    assert!(e.contains("max_query_rows") && e.contains("5000"), "{e}");

    let r = req(a, "GET", "/metrics", &[], b"");
    let text = r.text();
    assert!(text.contains("agg_segments_decoded"), "{text}");
    assert!(text.contains("agg_segments_from_summary"), "{text}");
    h.stop().unwrap();
}

/// The native frames through the Client: rows and partials for tags on
/// both shards in request order, the row limit as error 8 naming it, a
/// bad parameter as error 11.
#[test]
fn native_aggregate_frames() {
    use xtdb::aggregate::{Fill, Func};
    use xtdb::net::client::Client;
    use xtdb::net::error::ClientError;
    use xtdb::runtime::command::AggQuery;
    use xtdb::Point;

    let dir = tempfile::tempdir().unwrap();
    let h = server(dir.path());
    let addr = h.local_addr().to_string();
    net_common::client(move || async move {
        let mut c = Client::connect(&addr).await.unwrap();
        let tags: Vec<u32> = (0..8).collect();
        let mut pts = Vec::new();
        for &t in &tags {
            for i in 0..100i64 {
                pts.push(Point::new(
                    t,
                    1_000_000 + i * 10,
                    (t as i64 * 100 + i) as f64,
                    192,
                ));
            }
        }
        c.write(&pts).await.unwrap();
        let order = vec![7u32, 2, 5, 0, 7];
        let q = AggQuery::Windows {
            start: 1_000_000,
            end: 1_001_000,
            every: 500,
            offset: 0,
            func: Func::Sum,
            fill: Fill::Null,
        };
        let got = c.aggregate(&order, &q, false).await.unwrap();
        assert_eq!(got.len(), order.len());
        for (k, &t) in order.iter().enumerate() {
            let s = |a: i64, b: i64| (a..b).map(|i| (t as i64 * 100 + i) as f64).sum::<f64>();
            assert_eq!(
                got[k],
                vec![(1_000_000, Some(s(0, 50))), (1_000_500, Some(s(50, 100)))],
                "tag {t}"
            );
        }
        let p = AggQuery::Partials {
            start: 1_000_000,
            end: 1_001_000,
            every: 1000,
            offset: 0,
            m2: true,
        };
        let parts = c.aggregate_partials(&order, &p, true).await.unwrap();
        for (k, &t) in order.iter().enumerate() {
            let w = parts[k][0].unwrap();
            assert_eq!((w.count, w.min), (100, (t as i64 * 100) as f64));
        }
        let many = AggQuery::Windows {
            start: 0,
            end: 10_000,
            every: 1,
            offset: 0,
            func: Func::Mean,
            fill: Fill::None,
        };
        match c.aggregate(&[1], &many, false).await {
            Err(ClientError::Remote { code, message }) => {
                assert_eq!(code, 8, "{message}");
                assert!(message.contains("max_query_rows"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        let bad = AggQuery::Interpolated {
            start: 0,
            end: 10,
            every: 0,
            interp: xtdb::aggregate::Interp::Step,
        };
        match c.aggregate(&[1], &bad, false).await {
            Err(ClientError::Remote { code, message }) => {
                assert_eq!(code, 11, "{message}");
                assert!(message.contains("interval"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    });
    h.stop().unwrap();
}
