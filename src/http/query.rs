//! The JSON query endpoints: `range` (points of one series), `latest`
//! (current value of many series, in request order) and `tags` (catalog
//! listing). Series are named by key (`tag=`) or id (`id=`).

// Helpers return the finished error answer as their `Err`: it is built once
// per failed request, so its size does not matter.
#![allow(clippy::result_large_err)]

use std::rc::Rc;

use hyper::StatusCode;
use serde_json::{json, Value};

use super::answer::{error, failure_resp, json_f64, json_resp, Resp};
use super::request::{param_i64, query_precision, us_from, us_to};
use super::HttpState;
use crate::runtime::command::{Answer, Command, Failure};
use crate::runtime::dispatch::execute;

/// Resolves `tag=`/`id=` parameters, in order, to `(name, id)`.
pub(super) async fn series(
    state: &HttpState,
    params: &[(String, String)],
) -> Result<Vec<(Option<String>, u32)>, Resp> {
    let mut out: Vec<(Option<String>, Option<u32>)> = Vec::new();
    for (k, v) in params {
        match k.as_str() {
            "tag" => out.push((Some(v.clone()), None)),
            "id" => match v.trim().parse::<u32>() {
                Ok(id) => out.push((None, Some(id))),
                Err(_) => {
                    return Err(error(
                        StatusCode::BAD_REQUEST,
                        format!("id must be a u32, got {v:?}"),
                    ))
                }
            },
            _ => {}
        }
    }
    let names: Vec<&str> = out
        .iter()
        .filter_map(|(n, id)| if id.is_none() { n.as_deref() } else { None })
        .collect();
    let ids = if names.is_empty() {
        Vec::new()
    } else {
        state
            .catalog
            .resolve(&names, false)
            .await
            .map_err(|f| failure_resp(&f))?
    };
    let mut ids = ids.into_iter();
    let mut res = Vec::with_capacity(out.len());
    for (n, id) in out {
        match id {
            Some(id) => res.push((None, id)),
            None => match ids.next().flatten() {
                Some(id) => res.push((n, id)),
                None => {
                    return Err(error(
                        StatusCode::NOT_FOUND,
                        format!("unknown tag {:?}", n.unwrap_or_default()),
                    ))
                }
            },
        }
    }
    Ok(res)
}

/// `GET /api/v1/range`.
pub async fn range(state: &Rc<HttpState>, params: &[(String, String)]) -> Resp {
    let run = async {
        let p = query_precision(params)?;
        let start = param_i64(params, "start")?.map_or(i64::MIN, |t| us_from(p, t));
        let end = param_i64(params, "end")?.map_or(i64::MAX, |t| us_from(p, t));
        let s = series(state, params).await?;
        let [(name, id)] = <[_; 1]>::try_from(s).map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                "range needs exactly one tag=NAME or id=N",
            )
        })?;
        let cmd = Command::Range {
            tag: id,
            start,
            end,
        };
        let pts = match execute(&state.router, cmd).await {
            Ok(Answer::Points(p)) => p,
            Ok(other) => return Err(failure_resp(&Failure::unexpected("range", &other))),
            Err(f) => return Err(failure_resp(&f)),
        };
        let points: Vec<Value> = pts
            .iter()
            .map(
                |q| json!({"ts": us_to(p, q.ts), "value": json_f64(q.value), "quality": q.quality}),
            )
            .collect();
        Ok(json_resp(
            StatusCode::OK,
            &json!({"tag": name, "id": id, "points": points}),
        ))
    };
    run.await.unwrap_or_else(|r| r)
}

/// `GET /api/v1/latest`.
pub async fn latest(state: &Rc<HttpState>, params: &[(String, String)]) -> Resp {
    let run = async {
        let p = query_precision(params)?;
        let s = series(state, params).await?;
        if s.is_empty() {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "latest needs at least one tag=NAME or id=N",
            ));
        }
        let ids: Vec<u32> = s.iter().map(|(_, id)| *id).collect();
        let got = match execute(&state.router, Command::Latest(ids)).await {
            Ok(Answer::Latest(v)) => v,
            Ok(other) => return Err(failure_resp(&Failure::unexpected("latest", &other))),
            Err(f) => return Err(failure_resp(&f)),
        };
        let rows: Vec<Value> = s
            .into_iter()
            .zip(got)
            .map(|((name, id), pt)| match pt {
                Some(q) => json!({"tag": name, "id": id, "ts": us_to(p, q.ts),
                                  "value": json_f64(q.value), "quality": q.quality}),
                None => json!({"tag": name, "id": id, "ts": null, "value": null, "quality": null}),
            })
            .collect();
        Ok(json_resp(StatusCode::OK, &Value::Array(rows)))
    };
    run.await.unwrap_or_else(|r| r)
}

/// `GET /api/v1/tags`.
pub async fn tags(state: &Rc<HttpState>, params: &[(String, String)]) -> Resp {
    let pat = params
        .iter()
        .find(|(k, _)| k == "match")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let limit = match param_i64(params, "limit") {
        Ok(l) => l.map_or(10_000, |l| l.clamp(0, 1_000_000) as usize),
        Err(r) => return r,
    };
    match state.catalog.list(pat, limit).await {
        Ok(t) => {
            let rows: Vec<Value> = t
                .into_iter()
                .map(|(id, k)| json!({"id": id, "tag": k}))
                .collect();
            json_resp(StatusCode::OK, &Value::Array(rows))
        }
        Err(f) => failure_resp(&f),
    }
}
