//! InfluxQL at `/query` (InfluxDB 1.x's query endpoint, what Grafana's
//! InfluxDB data source and the `influxdb` clients call): the executor
//! above the runtime. [`crate::influxql`] parses; [`exec`] runs each
//! statement (the metadata ones against the catalog's index), `select.rs`
//! plans and runs `SELECT`; [`fetch`] is the one door to the data; this file owns the HTTP side: parameters (GET
//! query string or POST form body: `q`, `db`, `epoch`, `pretty`,
//! `chunked`, `params`), the answer in InfluxDB 1.x's exact JSON shape, and
//! the bounds ([`Limits`]). Never panics on a query; every statement's
//! failure is its own `error`, and statements after a failed one are not
//! run (as InfluxDB).
//!
//! Answers: `200 {"results": [{"statement_id": 0, "series": [{"name",
//! "tags", "columns", "values"}]}, ...]}`; a statement without rows has no
//! `series`; a failed one has `error`. `400 {"error": "missing required
//! parameter \"q\""}` for a blank query, `400 {"error": "error parsing
//! query: <message> at line L, char C"}` for one that does not parse.
//! Times are RFC 3339 (UTC, trailing zeros dropped) unless `epoch=ns|u|µ|
//! ms|s|m|h` asks for integers. `chunked=true` answers one JSON object per
//! line, one per series. Numbers that are whole are written as integers
//! (Go's JSON does the same with InfluxDB's float64 values).

pub mod exec;
pub mod fetch;
mod json;
mod select;

use std::rc::Rc;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, StatusCode};
use serde_json::{Map, Value};

use exec::Ctx;
pub use exec::Limits;

use super::answer::{error, respond, Resp};
use super::request::{parse_query, read_body};
use super::HttpState;
use crate::runtime::admission::now_us;

/// Handles `GET/POST /query`; `params` are the URL's.
pub async fn query(
    state: &Rc<HttpState>,
    req: Request<Incoming>,
    mut params: Vec<(String, String)>,
) -> Resp {
    if req.method() == hyper::Method::POST {
        let form = req
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
        // The body stays counted against the shard's buffered-body budget
        // while it is used.
        let (body, _held) = match read_body(state, req).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        if form {
            params.extend(parse_query(&String::from_utf8_lossy(&body)));
        }
    }
    let get = |k: &str| {
        params
            .iter()
            .rev()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
    };
    let q = get("q").unwrap_or("");
    if q.trim().is_empty() {
        return error(StatusCode::BAD_REQUEST, "missing required parameter \"q\"");
    }
    let stmts = match crate::influxql::parse(q) {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("error parsing query: {e}")),
    };
    let bound = match get("params") {
        None | Some("") => Map::new(),
        Some(p) => match serde_json::from_str::<Value>(p) {
            Ok(Value::Object(m)) => m,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "error parsing query parameters: params must be a JSON object",
                )
            }
        },
    };
    let ep = json::epoch(get("epoch"));
    let pretty = get("pretty") == Some("true");
    let chunked = get("chunked") == Some("true");
    let points_read = std::cell::Cell::new(0u64);
    let ctx = Ctx {
        router: &state.router,
        catalog: &state.catalog,
        db: get("db"),
        now_ns: now_us().saturating_mul(1000),
        params: &bound,
        limits: &state.config.influxql,
        points_read: &points_read,
    };
    // Rows held for the answer, every statement's: the rows bound holds
    // for the request, as the points bound does (`points_read`).
    let mut rows = 0usize;
    let mut results: Vec<json::Outcome> = Vec::new();
    for (i, stmt) in stmts.iter().enumerate() {
        let mut r = exec::run(&ctx, stmt).await;
        if let Ok(series) = &r {
            rows = rows.saturating_add(series.iter().map(|s| s.values.len().max(1)).sum());
            if rows > ctx.limits.max_rows {
                r = Err(format!(
                    "the request's statements together answer more than {} rows (the server's --query-max-rows): send fewer statements or narrow them",
                    ctx.limits.max_rows
                ));
            }
        }
        let failed = r.is_err();
        results.push((i, r));
        if failed {
            break;
        }
    }
    let body = json::answer_bytes(&results, ep, chunked, pretty);
    let mut r = respond(StatusCode::OK, "application/json", body);
    r.headers_mut().insert(
        "X-Influxdb-Version",
        HeaderValue::from_static("1.8.10-xtdb"),
    );
    r
}
