//! The JSON query endpoints: `range` (points of one series), `latest`
//! (current value of many series, in request order) and `tags` (catalog
//! listing). Series are named by key (`tag=`) or id (`id=`).

// Helpers return the finished error answer as their `Err`: it is built once
// per failed request, so its size does not matter.
#![allow(clippy::result_large_err)]

use std::rc::Rc;

use std::fmt::Write as _;

use bytes::Bytes;
use hyper::StatusCode;
use serde_json::{json, Value};

use super::answer::{error, failure_resp, json_f64, json_resp, Body, Resp};
use super::line::Precision;
use super::request::{param_i64, query_precision, us_from, us_to};
use super::HttpState;
use crate::runtime::command::{Answer, Command, Failure};
use crate::runtime::dispatch::execute;
use crate::runtime::scan::RangeScan;

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

/// `GET /api/v1/range`: counted first (an upper bound from the block
/// index and memory, [`Command::CountBound`]), refused `400` past
/// [`HttpConfig::max_points_per_query`](super::HttpConfig), then streamed
/// chunk by chunk ([`RangeScan`]) as a chunked body: memory stays at one
/// chunk however long the range, and the owning shard serves other
/// clients between chunks.
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
        let mut scan = RangeScan::new(&state.router, id, start, end);
        let max = state.config.max_points_per_query;
        let (n, min_ts, max_ts) = count(state, id, scan.remaining()).await?;
        if n > max {
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!(
                    "range may hold up to {n} points (counted from the block index, duplicates included), more than the server's --max-points-per-query of {max}: narrow the range, or ask /api/v1/plot or /api/v1/aggregate"
                ),
            ));
        }
        scan.expect(n, min_ts, max_ts);
        let head = format!(
            "{{\"tag\":{},\"id\":{id},\"points\":[",
            serde_json::Value::from(name)
        );
        Ok(stream_json(head, scan, p, n <= SMALL_RANGE).await)
    };
    run.await.unwrap_or_else(|r| r)
}

/// An upper bound of the points of `id` in `[start, end)`, from the
/// index and memory (no block decoded, so refusing a huge range costs
/// next to nothing).
async fn count(
    state: &HttpState,
    id: u32,
    (start, end): (i64, i64),
) -> Result<(u64, i64, i64), Resp> {
    let cmd = Command::CountBound {
        tag: id,
        start,
        end,
    };
    match execute(&state.router, cmd).await {
        Ok(Answer::Count {
            points,
            min_ts,
            max_ts,
        }) => Ok((points, min_ts, max_ts)),
        Ok(other) => Err(failure_resp(&Failure::unexpected("range count", &other))),
        Err(f) => Err(failure_resp(&f)),
    }
}

/// Ranges of at most this many points are answered in one piece (with a
/// `Content-Length`); longer ones are streamed.
const SMALL_RANGE: u64 = crate::runtime::scan::CHUNK_POINTS as u64;

/// The range answer: `head`, the points chunk by chunk, then `]}`; in one
/// piece when `whole`, else as a chunked body. A failure midway ends a
/// chunked body with an error (the client sees a truncated answer, never
/// a complete-looking one).
async fn stream_json(head: String, mut scan: RangeScan, p: Precision, whole: bool) -> Resp {
    let mut r = if whole {
        let mut all = head;
        let mut any = false;
        loop {
            match scan.next().await {
                Ok(Some(pts)) => push_points(&mut all, &pts, &mut any, p),
                Ok(None) => break,
                Err(f) => return failure_resp(&f),
            }
        }
        all.push_str("]}");
        hyper::Response::new(Body::full(all))
    } else {
        enum State {
            Head(String, RangeScan),
            Points(RangeScan, bool),
            Done,
        }
        let body = futures_util::stream::unfold(State::Head(head, scan), move |st| async move {
            match st {
                State::Head(h, scan) => Some((Ok(Bytes::from(h)), State::Points(scan, false))),
                State::Points(mut scan, mut any) => loop {
                    match scan.next().await {
                        Ok(Some(pts)) if pts.is_empty() => continue,
                        Ok(Some(pts)) => {
                            let mut out = String::with_capacity(pts.len() * 48);
                            push_points(&mut out, &pts, &mut any, p);
                            break Some((Ok(Bytes::from(out)), State::Points(scan, any)));
                        }
                        Ok(None) => break Some((Ok(Bytes::from_static(b"]}")), State::Done)),
                        Err(f) => break Some((Err(f.to_string()), State::Done)),
                    }
                },
                State::Done => None,
            }
        });
        hyper::Response::new(Body::Stream(Box::pin(body)))
    };
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// Appends `pts` as JSON objects, comma-separated (`any`: one came before).
fn push_points(out: &mut String, pts: &[crate::Point], any: &mut bool, p: Precision) {
    for q in pts {
        if *any {
            out.push(',');
        }
        *any = true;
        let _ = write!(
            out,
            "{{\"ts\":{},\"value\":{},\"quality\":{}}}",
            us_to(p, q.ts),
            json_f64(q.value),
            q.quality
        );
    }
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
