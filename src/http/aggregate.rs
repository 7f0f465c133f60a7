//! The JSON aggregate endpoints: `aggregate` (a function per window),
//! `interpolated` (values at an interval), `plot` (plot values for a pixel
//! width) and `at_or_before` (the value in force at a time), for one or
//! more series named by key (`tag=`) or id (`id=`), answered in request
//! order. Each request becomes one
//! [`Command::Aggregate`](crate::runtime::command::Command::Aggregate) run
//! by dispatch; parameters are parsed here and a bad one is a 400 naming
//! it.

// Helpers return the finished error answer as their `Err` (see query.rs).
#![allow(clippy::result_large_err)]

use std::rc::Rc;

use hyper::StatusCode;
use serde_json::{json, Value};

use super::answer::{error, failure_resp, json_f64, json_resp, Resp};
use super::line::Precision;
use super::query::series;
use super::request::{param_i64, query_precision, us_from, us_to};
use super::HttpState;
use crate::aggregate::{Fill, Func, IntegralMode, Interp};
use crate::runtime::command::{AggQuery, Answer, Command, Failure, Row};
use crate::runtime::dispatch::execute;

fn bad(name: &str, v: &str, what: &str) -> Resp {
    error(
        StatusCode::BAD_REQUEST,
        format!("{name} must be {what}, got {v:?}"),
    )
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim())
}

fn required(params: &[(String, String)], name: &str, p: Precision) -> Result<i64, Resp> {
    match param_i64(params, name)? {
        Some(t) => Ok(us_from(p, t)),
        None => Err(error(
            StatusCode::BAD_REQUEST,
            format!("{name} is required (an integer timestamp in the request's precision)"),
        )),
    }
}

/// A duration: an integer in the request's precision, or a number with a
/// unit suffix (`ns`, `us`/`u`/`µs`, `ms`, `s`, `m`, `h`, `d`, `w`).
fn duration(params: &[(String, String)], name: &str, p: Precision) -> Result<Option<i64>, Resp> {
    let Some(v) = param(params, name) else {
        return Ok(None);
    };
    if let Ok(n) = v.parse::<i64>() {
        return Ok(Some(us_from(p, n)));
    }
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let what = "an integer, or a number with a unit (ns, us, ms, s, m, h, d, w)";
    let n: i64 = num.parse().map_err(|_| bad(name, v, what))?;
    let us: i128 = match unit {
        "ns" => i128::from(n) / 1000,
        "us" | "u" | "µs" => i128::from(n),
        "ms" => i128::from(n) * 1_000,
        "s" => i128::from(n) * 1_000_000,
        "m" => i128::from(n) * 60_000_000,
        "h" => i128::from(n) * 3_600_000_000,
        "d" => i128::from(n) * 86_400_000_000,
        "w" => i128::from(n) * 604_800_000_000,
        _ => return Err(bad(name, v, what)),
    };
    i64::try_from(us).map(Some).map_err(|_| bad(name, v, what))
}

fn boolean(params: &[(String, String)], name: &str) -> Result<bool, Resp> {
    match param(params, name) {
        None => Ok(false),
        Some("true" | "1" | "yes") => Ok(true),
        Some("false" | "0" | "no") => Ok(false),
        Some(v) => Err(bad(name, v, "true or false")),
    }
}

fn interp(params: &[(String, String)]) -> Result<Interp, Resp> {
    match param(params, "interp") {
        None | Some("step") => Ok(Interp::Step),
        Some("linear") => Ok(Interp::Linear),
        Some(v) => Err(bad("interp", v, "step or linear")),
    }
}

/// `func=` (with `p=` for percentile, `unit=` and `integral=` for integral,
/// `interp=` for twa).
fn func(params: &[(String, String)], prec: Precision) -> Result<Func, Resp> {
    let name = param(params, "func").unwrap_or("mean");
    if let Some(f) = Func::plain(name) {
        return Ok(f);
    }
    Ok(match name {
        "percentile" => {
            let v = param(params, "p").ok_or_else(|| {
                error(
                    StatusCode::BAD_REQUEST,
                    "func=percentile needs p (0 to 100)",
                )
            })?;
            match v.parse::<f64>() {
                Ok(x) if x.is_finite() => Func::Percentile(x),
                _ => return Err(bad("p", v, "a finite number")),
            }
        }
        "integral" => {
            let unit = duration(params, "unit", prec)?.unwrap_or(1_000_000);
            if unit <= 0 {
                return Err(bad("unit", &unit.to_string(), "a positive duration"));
            }
            let mode = match param(params, "integral") {
                None | Some("inside") => IntegralMode::Inside,
                Some("influxql") => IntegralMode::InfluxQl,
                Some(v) => return Err(bad("integral", v, "inside or influxql")),
            };
            Func::Integral { unit, mode }
        }
        "twa" | "time_weighted" | "time_weighted_average" => Func::TimeWeighted(interp(params)?),
        other => {
            return Err(bad(
                "func",
                other,
                "one of count, sum, mean, min, max, first, last, spread, stddev, median, \
                 percentile, integral, percent_good, twa",
            ))
        }
    })
}

fn fill(params: &[(String, String)]) -> Result<Fill, Resp> {
    Ok(match param(params, "fill") {
        None | Some("none") => Fill::None,
        Some("null") => Fill::Null,
        Some("previous") => Fill::Previous { before: None },
        Some("linear") => Fill::Linear,
        Some(v) => match v.parse::<f64>() {
            Ok(x) if x.is_finite() => Fill::Value(x),
            _ => {
                return Err(bad(
                    "fill",
                    v,
                    "none, null, previous, linear or a finite number",
                ))
            }
        },
    })
}

/// Runs the command and renders `[{"tag", "id", "rows": [[ts, value]...]}]`.
async fn run(
    state: &Rc<HttpState>,
    params: &[(String, String)],
    what: &str,
    build: impl FnOnce(Precision) -> Result<AggQuery, Resp>,
) -> Resp {
    let go = async {
        let p = query_precision(params)?;
        let query = build(p)?;
        let good_only = boolean(params, "good_only")?;
        let s = series(state, params).await?;
        if s.is_empty() {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("{what} needs at least one tag=NAME or id=N"),
            ));
        }
        let cmd = Command::Aggregate {
            tags: s.iter().map(|(_, id)| *id).collect(),
            query,
            good_only,
        };
        let rows: Vec<Vec<Row>> = match execute(&state.router, cmd).await {
            Ok(Answer::Rows(r)) => r,
            Ok(other) => return Err(failure_resp(&Failure::unexpected(what, &other))),
            Err(f) => return Err(failure_resp(&f)),
        };
        let out: Vec<Value> = s
            .into_iter()
            .zip(rows)
            .map(|((name, id), rows)| {
                let rows: Vec<Value> = rows
                    .into_iter()
                    .map(|(t, v)| json!([us_to(p, t), v.map_or(Value::Null, json_f64)]))
                    .collect();
                json!({"tag": name, "id": id, "rows": rows})
            })
            .collect();
        Ok(json_resp(StatusCode::OK, &Value::Array(out)))
    };
    go.await.unwrap_or_else(|r| r)
}

/// `GET /api/v1/aggregate`.
pub async fn aggregate(state: &Rc<HttpState>, params: &[(String, String)]) -> Resp {
    run(state, params, "aggregate", |p| {
        let start = required(params, "start", p)?;
        let end = required(params, "end", p)?;
        let f = func(params, p)?;
        let fill = fill(params)?;
        let (every, offset) = match duration(params, "every", p)? {
            Some(e) if e <= 0 => return Err(bad("every", &e.to_string(), "a positive duration")),
            Some(e) => (e, duration(params, "offset", p)?.unwrap_or(0)),
            // One window over the whole range.
            None => match end.checked_sub(start) {
                Some(w) if w > 0 => (w, start),
                _ => {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        format!("end ({end} µs) must be after start ({start} µs)"),
                    ))
                }
            },
        };
        if start > end {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("start ({start} µs) is after end ({end} µs)"),
            ));
        }
        Ok(AggQuery::Windows {
            start,
            end,
            every,
            offset,
            func: f,
            fill,
        })
    })
    .await
}

/// `GET /api/v1/interpolated`.
pub async fn interpolated(state: &Rc<HttpState>, params: &[(String, String)]) -> Resp {
    run(state, params, "interpolated", |p| {
        let start = required(params, "start", p)?;
        let end = required(params, "end", p)?;
        let every = duration(params, "every", p)?
            .ok_or_else(|| error(StatusCode::BAD_REQUEST, "every is required (a duration)"))?;
        if every <= 0 {
            return Err(bad("every", &every.to_string(), "a positive duration"));
        }
        if start > end {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("start ({start} µs) is after end ({end} µs)"),
            ));
        }
        Ok(AggQuery::Interpolated {
            start,
            end,
            every,
            interp: interp(params)?,
        })
    })
    .await
}

/// `GET /api/v1/plot`.
pub async fn plot(state: &Rc<HttpState>, params: &[(String, String)]) -> Resp {
    run(state, params, "plot", |p| {
        let start = required(params, "start", p)?;
        let end = required(params, "end", p)?;
        let v = param(params, "pixels").unwrap_or("");
        let pixels = match v.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => return Err(bad("pixels", v, "a positive integer")),
        };
        if start > end {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("start ({start} µs) is after end ({end} µs)"),
            ));
        }
        Ok(AggQuery::Plot { start, end, pixels })
    })
    .await
}

/// `GET /api/v1/at_or_before`.
pub async fn at_or_before(state: &Rc<HttpState>, params: &[(String, String)]) -> Resp {
    run(state, params, "at_or_before", |p| {
        Ok(AggQuery::AtOrBefore {
            time: required(params, "time", p)?,
        })
    })
    .await
}
