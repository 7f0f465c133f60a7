//! Every `/api/v1/*` query endpoint (and `/query`'s time bounds) against
//! extreme parameters: timestamps at and next to `i64::MIN`/`i64::MAX`,
//! intervals of 0, 1, negative and `i64::MAX` (plain and with units),
//! offsets of either sign, pixels 0 and huge, every precision, over a
//! series holding points at both ends of the time range. Each answer
//! must be a success or a 4xx (never a 5xx, never a dropped connection:
//! a panic in a shard takes the whole core's clients down), and the
//! server must still write and read afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;

use xtdb::aggregate::{Fill, Func, IntegralMode, Interp};
use xtdb::net::{Client, ClientError};
use xtdb::runtime::admission::TimeWindow;
use xtdb::runtime::command::AggQuery;
use xtdb::server::{start, ServerConfig, ServerHandle, Shutdown};
use xtdb::Point;

mod net_common;
use net_common::http::req;

#[path = "common/rng.rs"]
mod rng;

fn server(dir: &Path) -> ServerHandle {
    let mut c = ServerConfig::new(dir).unwrap();
    c.cpus = vec![0];
    c.listen = "127.0.0.1:0".into();
    c.http = Some("127.0.0.1:0".into());
    c.memory_budget = 64 << 20;
    c.io_memory = 1 << 20;
    // Every timestamp is storable: the series below holds both ends.
    c.limits.window = TimeWindow::unbounded();
    start(c, Shutdown::new()).expect("server starts")
}

const TIMES: &[&str] = &[
    "-9223372036854775808",
    "-9223372036854775807",
    "-9223372036854775000",
    "-1",
    "0",
    "1",
    "1700000000000000",
    "9223372036854775000",
    "9223372036854775806",
    "9223372036854775807",
    "9223372036854775808",
    "x",
    "",
];

const NATIVE_TIMES: &[i64] = &[
    i64::MIN,
    i64::MIN + 1,
    i64::MIN + 1000,
    -1,
    0,
    1,
    2,
    1_000,
    1_700_000_000_000_000,
    1 << 62,
    i64::MAX - 1000,
    i64::MAX - 1,
    i64::MAX,
];

const DURATIONS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "1000",
    "9223372036854775807",
    "-9223372036854775808",
    "4611686018427387904",
    "1ns",
    "999ns",
    "1s",
    "-1s",
    "1h",
    "15250w",
    "9223372036854775807w",
    "-9223372036854775808d",
    "1µs",
    "-",
    "s",
    "",
];

const PIXELS: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "1000",
    "1000000000",
    "18446744073709551615",
    "18446744073709551616",
    "-1",
    "",
];

const PRECISIONS: &[&str] = &["ns", "us", "ms", "s", "m", "h", "n", "x"];

const FUNCS: &[&str] = &[
    "count",
    "sum",
    "mean",
    "min",
    "max",
    "first",
    "last",
    "spread",
    "stddev",
    "median",
    "percentile&p=50",
    "percentile&p=0",
    "percentile&p=100",
    "percentile&p=1e308",
    "percentile&p=-1e308",
    "integral",
    "integral&unit=1",
    "integral&unit=9223372036854775807",
    "integral&unit=1ns&integral=influxql",
    "percent_good",
    "twa",
    "twa&interp=linear",
];

const FILLS: &[&str] = &["none", "null", "previous", "linear", "0", "1e308"];

fn pick<'a>(r: &mut rng::Rng, from: &[&'a str]) -> &'a str {
    from[r.below(from.len())]
}

fn enc(v: &str) -> String {
    v.replace('%', "%25")
        .replace('&', "%26")
        .replace('+', "%2B")
        .replace(' ', "%20")
        .replace('=', "%3D")
        .replace('#', "%23")
        .replace('µ', "%C2%B5")
}

/// The query of one request to `endpoint`, parameters drawn from the lists.
fn query(r: &mut rng::Rng, key: &str, endpoint: &str) -> String {
    let mut q = format!("tag={}&precision={}", enc(key), pick(r, PRECISIONS));
    let add = |q: &mut String, k: &str, v: &str| {
        q.push('&');
        q.push_str(k);
        q.push('=');
        q.push_str(&enc(v));
    };
    match endpoint {
        "range" => {
            add(&mut q, "start", pick(r, TIMES));
            add(&mut q, "end", pick(r, TIMES));
        }
        "latest" => {}
        "tags" => add(&mut q, "limit", pick(r, TIMES)),
        "aggregate" => {
            add(&mut q, "start", pick(r, TIMES));
            add(&mut q, "end", pick(r, TIMES));
            if r.below(4) != 0 {
                add(&mut q, "every", pick(r, DURATIONS));
            }
            if r.below(2) == 0 {
                add(&mut q, "offset", pick(r, DURATIONS));
            }
            q.push_str("&func=");
            q.push_str(pick(r, FUNCS));
            add(&mut q, "fill", pick(r, FILLS));
        }
        "interpolated" => {
            add(&mut q, "start", pick(r, TIMES));
            add(&mut q, "end", pick(r, TIMES));
            add(&mut q, "every", pick(r, DURATIONS));
            if r.below(2) == 0 {
                add(&mut q, "interp", "linear");
            }
        }
        "plot" => {
            add(&mut q, "start", pick(r, TIMES));
            add(&mut q, "end", pick(r, TIMES));
            add(&mut q, "pixels", pick(r, PIXELS));
        }
        "at_or_before" => add(&mut q, "time", pick(r, TIMES)),
        _ => unreachable!(),
    }
    if r.below(3) == 0 {
        add(&mut q, "good_only", "true");
    }
    q
}

fn alive(a: SocketAddr, after: &str) {
    let h = req(a, "GET", "/health", &[], b"");
    assert_eq!(h.status, 200, "server stopped answering after {after}");
}

#[test]
fn extreme_query_parameters_get_answers_or_400s_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let h = server(dir.path());
    let a = h.http_addr().unwrap();
    // Points at the ends of what line protocol takes (InfluxDB's ns
    // range, in µs), next to them and in between.
    let lp = 9_223_372_036_854_775i64;
    let mut body = String::new();
    for (i, ts) in [
        -lp + 1,
        -lp + 2,
        -1,
        0,
        1,
        1_700_000_000_000_000,
        lp - 1,
        lp,
    ]
    .into_iter()
    .enumerate()
    {
        body.push_str(&format!("x v={i} {ts}\n"));
    }
    let w = req(a, "POST", "/write?precision=us", &[], body.as_bytes());
    assert_eq!(w.status, 204, "{}", w.text());
    let tags = req(a, "GET", "/api/v1/tags", &[], b"").json();
    let id = tags[0]["id"].as_u64().unwrap() as u32;
    let key = tags[0]["tag"].as_str().unwrap().to_string();
    assert!(key.starts_with('x'), "{key}");
    // And at the ends of i64 itself, over the native protocol.
    let native = h.local_addr().to_string();
    let ends: Vec<Point> = [
        i64::MIN,
        i64::MIN + 1,
        i64::MIN + 1000,
        i64::MAX - 1000,
        i64::MAX - 1,
        i64::MAX,
    ]
    .into_iter()
    .map(|ts| Point::new(id, ts, 1.5, 192))
    .collect();
    let n = net_common::client(move || async move {
        let mut c = Client::connect(&native).await.unwrap();
        c.write(&ends).await.unwrap()
    });
    assert_eq!(n, 6);

    let mut r = rng::Rng::seeded(20261204);
    let endpoints = [
        "range",
        "latest",
        "tags",
        "aggregate",
        "interpolated",
        "plot",
        "at_or_before",
    ];
    let mut ok = 0;
    for i in 0..2800 {
        let e = endpoints[i % endpoints.len()];
        let path = format!("/api/v1/{e}?{}", query(&mut r, &key, e));
        let got = req(a, "GET", &path, &[], b"");
        assert!(got.status < 500, "{path}: {} {}", got.status, got.text());
        if got.status == 200 {
            ok += 1;
        }
        if i % 50 == 0 {
            alive(a, &path);
        }
    }
    assert!(ok > 100, "only {ok} requests answered 200");

    // InfluxQL time bounds at the ends of the range.
    for t in ["-9223372036854775808", "9223372036854775807", "0"] {
        for (op1, op2) in [(">=", "<"), (">", "<="), ("<", ">")] {
            let q = format!(
                "SELECT mean(v) FROM x WHERE time {op1} {t} AND time {op2} {t} GROUP BY time(1u)"
            );
            let path = format!("/query?db=d&epoch=u&q={}", enc(&q));
            let got = req(a, "GET", &path, &[], b"");
            assert!(got.status < 500, "{q}: {} {}", got.status, got.text());
        }
    }
    alive(a, "the InfluxQL queries");

    // The native protocol's queries, same extremes.
    let native = h.local_addr().to_string();
    let errors = net_common::client(move || async move {
        let mut r = rng::Rng::seeded(7);
        let t = |r: &mut rng::Rng| NATIVE_TIMES[r.below(NATIVE_TIMES.len())];
        let mut c = Client::connect(&native).await.unwrap();
        let mut errors = 0;
        for i in 0..600 {
            let (start, end) = (t(&mut r), t(&mut r));
            let every = t(&mut r);
            let funcs = [
                Func::Count,
                Func::Mean,
                Func::Stddev,
                Func::Median,
                Func::Percentile(99.0),
                Func::Integral {
                    unit: 1,
                    mode: IntegralMode::InfluxQl,
                },
                Func::Integral {
                    unit: 1_000_000,
                    mode: IntegralMode::Inside,
                },
                Func::TimeWeighted(Interp::Linear),
                Func::PercentGood,
            ];
            let got = match i % 7 {
                0 => c.range(id, start, end).await.map(|_| ()),
                1 => c.count_bound(id, start, end).await.map(|_| ()),
                2 => {
                    let q = AggQuery::Windows {
                        start,
                        end,
                        every,
                        offset: t(&mut r),
                        func: funcs[r.below(funcs.len())],
                        fill: [
                            Fill::None,
                            Fill::Null,
                            Fill::Linear,
                            Fill::Previous { before: None },
                        ][r.below(4)],
                    };
                    c.aggregate(&[id], &q, r.below(2) == 0).await.map(|_| ())
                }
                3 => {
                    let q = AggQuery::Partials {
                        start,
                        end,
                        every,
                        offset: t(&mut r),
                        m2: true,
                    };
                    c.aggregate_partials(&[id], &q, false).await.map(|_| ())
                }
                4 => {
                    let interp = if r.below(2) == 0 {
                        Interp::Step
                    } else {
                        Interp::Linear
                    };
                    let q = AggQuery::Interpolated {
                        start,
                        end,
                        every,
                        interp,
                    };
                    c.aggregate(&[id], &q, false).await.map(|_| ())
                }
                5 => {
                    let pixels = [0, 1, 2, 1000, usize::MAX][r.below(5)];
                    let q = AggQuery::Plot { start, end, pixels };
                    c.aggregate(&[id], &q, false).await.map(|_| ())
                }
                _ => c
                    .aggregate(&[id], &AggQuery::AtOrBefore { time: start }, false)
                    .await
                    .map(|_| ()),
            };
            match got {
                Ok(()) => {}
                Err(ClientError::Remote { code, message }) => {
                    assert!(code < 100, "request {i}: error {code}: {message}");
                    errors += 1;
                    // Invalid requests may end the connection.
                    c = Client::connect(&native).await.unwrap();
                }
                Err(e) => panic!("request {i}: {e}"),
            }
        }
        errors
    });
    assert!(errors < 600, "every native query refused");
    alive(a, "the native queries");

    // Still writing and reading.
    let w = req(a, "POST", "/write?precision=us", &[], b"y v=1 5\n");
    assert_eq!(w.status, 204, "{}", w.text());
    let y = key.replacen('x', "y", 1);
    let got = req(
        a,
        "GET",
        &format!("/api/v1/range?tag={}&start=0&end=10", enc(&y)),
        &[],
        b"",
    );
    assert_eq!(got.status, 200, "{}", got.text());
    assert_eq!(got.json()["points"].as_array().unwrap().len(), 1);
    h.stop().unwrap();
}
