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
mod select;

use std::rc::Rc;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Request, StatusCode};
use serde_json::{json, Map, Value};

pub use exec::Limits;
use exec::{Ctx, SeriesOut, Val};

use super::answer::{error, respond, Resp};
use super::request::{parse_query, read_body};
use super::HttpState;
use crate::influxql::civil_from_days;
use crate::runtime::admission::now_us;

/// How times are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Epoch {
    Rfc3339,
    /// Integers, ns divided by this.
    Div(i64),
}

fn epoch(p: Option<&str>) -> Epoch {
    match p {
        Some("ns" | "n") => Epoch::Div(1),
        Some("u" | "µ" | "us") => Epoch::Div(1_000),
        Some("ms") => Epoch::Div(1_000_000),
        Some("s") => Epoch::Div(1_000_000_000),
        Some("m") => Epoch::Div(60_000_000_000),
        Some("h") => Epoch::Div(3_600_000_000_000),
        _ => Epoch::Rfc3339,
    }
}

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
    let ep = epoch(get("epoch"));
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
    let mut results: Vec<(usize, Result<Vec<SeriesOut>, String>)> = Vec::new();
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
    let body = if chunked {
        let mut out = String::new();
        for (i, r) in results {
            let objs: Vec<Value> = match r {
                Err(e) => vec![json!({"statement_id": i, "error": e})],
                Ok(series) if series.is_empty() => vec![json!({"statement_id": i})],
                Ok(series) => series
                    .iter()
                    .map(|s| json!({"statement_id": i, "series": [series_json(s, ep)]}))
                    .collect(),
            };
            for o in objs {
                out.push_str(&render(&json!({ "results": [o] }), pretty));
                out.push('\n');
            }
        }
        out
    } else {
        let list: Vec<Value> = results
            .into_iter()
            .map(|(i, r)| match r {
                Err(e) => json!({"statement_id": i, "error": e}),
                Ok(series) if series.is_empty() => json!({"statement_id": i}),
                Ok(series) => json!({
                    "statement_id": i,
                    "series": series.iter().map(|s| series_json(s, ep)).collect::<Vec<_>>(),
                }),
            })
            .collect();
        render(&json!({ "results": list }), pretty)
    };
    let mut r = respond(StatusCode::OK, "application/json", body);
    r.headers_mut().insert(
        "X-Influxdb-Version",
        HeaderValue::from_static("1.8.10-xtdb"),
    );
    r
}

fn render(v: &Value, pretty: bool) -> String {
    if pretty {
        serde_json::to_string_pretty(v).unwrap_or_default()
    } else {
        v.to_string()
    }
}

fn series_json(s: &SeriesOut, ep: Epoch) -> Value {
    let mut o = Map::new();
    if let Some(n) = &s.name {
        o.insert("name".into(), Value::String(n.clone()));
    }
    if !s.tags.is_empty() {
        let tags: Map<String, Value> = s
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        o.insert("tags".into(), Value::Object(tags));
    }
    o.insert("columns".into(), json!(s.columns));
    let values: Vec<Value> = s
        .values
        .iter()
        .map(|row| Value::Array(row.iter().map(|v| val_json(v, ep, s.tz)).collect()))
        .collect();
    o.insert("values".into(), Value::Array(values));
    Value::Object(o)
}

fn val_json(v: &Val, ep: Epoch, tz: Option<chrono_tz::Tz>) -> Value {
    match v {
        Val::Time(ns) => match (ep, tz) {
            (Epoch::Rfc3339, None) => Value::String(rfc3339(*ns)),
            (Epoch::Rfc3339, Some(tz)) => {
                Value::String(rfc3339_at(*ns, exec::zone_offset_s(tz, *ns)))
            }
            (Epoch::Div(d), _) => json!(ns.div_euclid(d)),
        },
        Val::F(f) => number(*f),
        Val::I(i) => json!(i),
        Val::S(s) => Value::String(s.clone()),
        Val::B(b) => Value::Bool(*b),
        Val::Null => Value::Null,
    }
}

/// A float as Go's JSON writes it: whole values as integers; NaN and
/// infinities (which JSON lacks) as null.
fn number(f: f64) -> Value {
    if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 {
        return json!(f as i64);
    }
    super::answer::json_f64(f)
}

/// ns since the epoch as RFC 3339 in UTC with the fraction's trailing
/// zeros dropped (Go's `time.RFC3339Nano`).
pub fn rfc3339(ns: i64) -> String {
    rfc3339_at(ns, 0)
}

/// [`rfc3339`] in local time `offset_s` east of UTC, with that offset
/// (`+01:00`; `Z` for 0, as Go writes it).
pub fn rfc3339_at(ns: i64, offset_s: i32) -> String {
    let secs = ns
        .div_euclid(1_000_000_000)
        .saturating_add(i64::from(offset_s));
    let frac = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        tod / 3600,
        tod / 60 % 60,
        tod % 60
    );
    if frac != 0 {
        let f = format!("{frac:09}");
        s.push('.');
        s.push_str(f.trim_end_matches('0'));
    }
    if offset_s == 0 {
        s.push('Z');
    } else {
        let a = offset_s.unsigned_abs();
        let sign = if offset_s < 0 { '-' } else { '+' };
        s.push_str(&format!("{sign}{:02}:{:02}", a / 3600, a / 60 % 60));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_as_go_writes_them() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000_500_000_000), "2023-11-14T22:13:20.5Z");
        assert_eq!(
            rfc3339(1_700_000_000_000_001_000),
            "2023-11-14T22:13:20.000001Z"
        );
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(rfc3339(951_782_400_000_000_000), "2000-02-29T00:00:00Z");
        assert_eq!(
            rfc3339_at(1_700_000_000_500_000_000, 3600),
            "2023-11-14T23:13:20.5+01:00"
        );
        assert_eq!(rfc3339_at(0, -19_800), "1969-12-31T18:30:00-05:30");
    }

    #[test]
    fn numbers_as_go_writes_them() {
        assert_eq!(number(3.0).to_string(), "3");
        assert_eq!(number(-0.5).to_string(), "-0.5");
        assert_eq!(number(f64::NAN), Value::Null);
        // Go writes 1e+300 too.
        assert_eq!(number(1e300).to_string(), "1e+300");
    }
}
