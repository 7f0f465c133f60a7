//! Request handlers of the HTTP edge (the API is documented in
//! [`super`]). Every answer is built here; nothing panics on request data.

// Helpers return the finished error answer as their `Err`: it is built once
// per failed request, so its size does not matter.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::io::Read;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::line::{self, Precision};
use super::HttpState;
use crate::net::limits::now_us;
use crate::net::protocol::{Request as NativeRequest, Response as NativeResponse};
use crate::net::server::execute;
use crate::runtime::router::owner;
use crate::Point;

/// The response type.
pub type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

fn json_resp(status: StatusCode, v: &Value) -> Resp {
    respond(status, "application/json", v.to_string())
}

/// A JSON `{"error": msg}` answer.
pub fn error_resp(status: StatusCode, msg: impl Into<String>) -> Resp {
    error(status, msg)
}

fn error(status: StatusCode, msg: impl Into<String>) -> Resp {
    json_resp(status, &json!({ "error": msg.into() }))
}

fn no_content() -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

/// Handles one request.
pub async fn handle(state: Rc<HttpState>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let resp = route(&state, req).await;
    let status = resp.status();
    state.count(|c| {
        c.requests += 1;
        c.client_errors += u64::from(status.is_client_error());
        c.server_errors += u64::from(status.is_server_error());
    });
    Ok(resp)
}

async fn route(state: &Rc<HttpState>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    let params = parse_query(req.uri().query().unwrap_or(""));
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    let post = req.method() == Method::POST;
    match path.as_str() {
        "/ping" if get || post => {
            let mut r = no_content();
            r.headers_mut().insert(
                "X-Influxdb-Version",
                HeaderValue::from_static("1.8.10-xtdb"),
            );
            r
        }
        "/health" if get => json_resp(StatusCode::OK, &json!({"status": "ok"})),
        "/write" if post => {
            let p = params
                .iter()
                .find(|(k, _)| k == "precision")
                .map(|(_, v)| v);
            match Precision::parse_v1(p.map(String::as_str).or(Some("ns"))) {
                Some(pr) => write(state, req, pr, state.config.atomic_writes).await,
                None => bad_precision(p),
            }
        }
        "/api/v2/write" if post => {
            let p = params
                .iter()
                .find(|(k, _)| k == "precision")
                .map(|(_, v)| v);
            match Precision::parse_v2(p.map(String::as_str).unwrap_or("ns")) {
                Some(pr) => write(state, req, pr, true).await,
                None => bad_precision(p),
            }
        }
        "/api/v1/range" if get => range(state, &params).await,
        "/api/v1/latest" if get => latest(state, &params).await,
        "/api/v1/tags" if get => tags(state, &params).await,
        "/metrics" if get => super::metrics::render(state).await,
        "/ping" | "/health" | "/write" | "/api/v2/write" | "/api/v1/range" | "/api/v1/latest"
        | "/api/v1/tags" | "/metrics" => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => error(StatusCode::NOT_FOUND, format!("no such endpoint {path}")),
    }
}

fn bad_precision(p: Option<&String>) -> Resp {
    error(
        StatusCode::BAD_REQUEST,
        format!(
            "unknown precision {:?} (use ns, us, ms or s)",
            p.map(String::as_str).unwrap_or("")
        ),
    )
}

/// Decodes `a=b&c=d` with percent-escapes and `+` as space.
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|s| !s.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (hex(b[i + 1]), hex(b[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads the body (bounded), gunzips it if asked (bounded too).
async fn read_body(state: &HttpState, req: Request<Incoming>) -> Result<Bytes, Resp> {
    let max = state.config.max_body;
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {max} bytes"),
        )
    };
    if let Some(len) = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if len > max as u64 {
            return Err(too_large());
        }
    }
    let gzip = match req
        .headers()
        .get(CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("?").trim().to_ascii_lowercase())
    {
        None => false,
        Some(e) if e == "identity" || e.is_empty() => false,
        Some(e) if e == "gzip" => true,
        Some(e) => {
            return Err(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported Content-Encoding {e:?} (use gzip or none)"),
            ))
        }
    };
    let body = match Limited::new(req.into_body(), max).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            if e.is::<http_body_util::LengthLimitError>() {
                return Err(too_large());
            }
            return Err(error(
                StatusCode::BAD_REQUEST,
                format!("reading body failed: {e}"),
            ));
        }
    };
    if !gzip {
        return Ok(body);
    }
    // Small bodies inflate in microseconds; large ones go to the blocking
    // pool so the shard's other tasks keep running meanwhile.
    let inflated = if body.len() <= INLINE_GUNZIP {
        gunzip(&body, max)
    } else {
        glommio::executor()
            .spawn_blocking(move || gunzip(&body, max))
            .await
    };
    match inflated {
        Ok(out) => Ok(Bytes::from(out)),
        Err(GunzipError::Invalid(e)) => Err(error(
            StatusCode::BAD_REQUEST,
            format!("invalid gzip body: {e}"),
        )),
        Err(GunzipError::TooLarge) => Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("decompressed body larger than {max} bytes"),
        )),
    }
}

/// Gzip bodies up to this size are inflated on the shard's executor.
const INLINE_GUNZIP: usize = 64 << 10;

enum GunzipError {
    Invalid(std::io::Error),
    TooLarge,
}

/// Inflates `body`, refusing to produce more than `max` bytes.
fn gunzip(body: &[u8], max: usize) -> Result<Vec<u8>, GunzipError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(max));
    let mut dec = flate2::read::GzDecoder::new(body).take(max as u64 + 1);
    dec.read_to_end(&mut out).map_err(GunzipError::Invalid)?;
    if out.len() > max {
        return Err(GunzipError::TooLarge);
    }
    Ok(out)
}

/// Decrements the in-flight count when dropped.
struct InFlight<'a>(&'a HttpState);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.inflight.set(self.0.inflight.get().saturating_sub(1));
    }
}

/// A write: the good lines are stored (durable before the answer), bad
/// lines are answered 400 naming them; with `atomic`, any bad line refuses
/// the whole batch and nothing is stored.
async fn write(
    state: &Rc<HttpState>,
    req: Request<Incoming>,
    precision: Precision,
    atomic: bool,
) -> Resp {
    let started = Instant::now();
    if state.inflight.get() >= state.config.max_inflight_writes {
        state.count(|c| c.overloaded += 1);
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many writes in flight on this shard; retry",
        );
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    }
    state.inflight.set(state.inflight.get() + 1);
    let _guard = InFlight(state);
    let body = match read_body(state, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut samples = Vec::new();
    let report = line::parse_batch(
        &body,
        precision,
        now_us(),
        &state.router.local().window,
        &state.config.line,
        &mut samples,
    );
    if atomic && !report.is_clean() {
        return bad_lines(&report, true);
    }
    if !samples.is_empty() {
        let keys: Vec<&str> = samples.iter().map(|s| s.key.as_str()).collect();
        let ids = match state.catalog.resolve(&keys, true).await {
            Ok(ids) => ids,
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("catalog: {e}")),
        };
        let mut points = Vec::with_capacity(samples.len());
        for (s, id) in samples.iter().zip(ids) {
            let Some(id) = id else {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("catalog gave no id for {:?}", s.key),
                );
            };
            points.push(Point::new(id, s.ts, s.value, s.quality));
        }
        let n = points.len() as u64;
        match execute(&state.router, NativeRequest::Write(points)).await {
            NativeResponse::Ack(_) => {
                let us = started.elapsed().as_micros() as u64;
                state
                    .router
                    .local()
                    .ack_us
                    .borrow_mut()
                    .saturating_record(us.max(1));
                state.count(|c| {
                    c.writes_ok += u64::from(report.is_clean());
                    c.points_ok += n;
                });
            }
            NativeResponse::Error { message, .. } => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("storage: {message}"),
                )
            }
            other => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("unexpected answer {other:?}"),
                )
            }
        }
    }
    let mut r = if report.is_clean() {
        no_content()
    } else {
        bad_lines(&report, false)
    };
    if report.dropped_string_fields > 0 {
        r.headers_mut().insert(
            "X-Xtdb-Dropped-Fields",
            HeaderValue::from(report.dropped_string_fields),
        );
    }
    r
}

/// Bad lines shown with their reason in a 400 answer.
const REASONS_SHOWN: usize = 5;

/// The 400 answer for a batch with bad lines: `error` (InfluxDB-style,
/// `partial write: ...` when other lines were stored, else `unable to
/// parse: ...`; both phrases make Telegraf and the InfluxDB clients drop
/// the batch instead of retrying it), `line` (the first bad line),
/// `lines` (the first bad lines) and `dropped` (lines not stored); when
/// `atomic`, also InfluxDB 2.x's `code` and `message`.
fn bad_lines(report: &line::ParseReport, atomic: bool) -> Resp {
    let first = report.bad.first().map_or(0, |e| e.line);
    let reasons = report.summary(REASONS_SHOWN);
    let (msg, dropped) = if atomic {
        (
            format!(
                "unable to parse: {reasons} (the whole batch of {} lines is refused, nothing was stored) dropped={}",
                report.lines, report.lines
            ),
            report.lines,
        )
    } else if report.good_lines() == 0 {
        (
            format!("unable to parse: {reasons} dropped={}", report.bad_lines),
            report.bad_lines,
        )
    } else {
        (
            format!("partial write: {reasons} dropped={}", report.bad_lines),
            report.bad_lines,
        )
    };
    let mut body = json!({"error": msg, "line": first, "lines": report.bad_line_numbers(), "dropped": dropped});
    if atomic {
        // InfluxDB 2.x error shape, read by its client libraries.
        body["code"] = json!("invalid");
        body["message"] = body["error"].clone();
    }
    json_resp(StatusCode::BAD_REQUEST, &body)
}

/// Unit of query timestamps: factor from µs.
fn query_precision(params: &[(String, String)]) -> Result<Precision, Resp> {
    match params.iter().find(|(k, _)| k == "precision") {
        None => Ok(Precision::Us),
        Some((_, v)) => Precision::parse_v2(v).ok_or_else(|| bad_precision(Some(v))),
    }
}

fn us_from(p: Precision, t: i64) -> i64 {
    match p {
        Precision::Ns => t.div_euclid(1000),
        Precision::Us => t,
        Precision::Ms => t.saturating_mul(1_000),
        Precision::S => t.saturating_mul(1_000_000),
        Precision::M => t.saturating_mul(60_000_000),
        Precision::H => t.saturating_mul(3_600_000_000),
    }
}

fn us_to(p: Precision, us: i64) -> i64 {
    match p {
        Precision::Ns => us.saturating_mul(1000),
        Precision::Us => us,
        Precision::Ms => us.div_euclid(1_000),
        Precision::S => us.div_euclid(1_000_000),
        Precision::M => us.div_euclid(60_000_000),
        Precision::H => us.div_euclid(3_600_000_000),
    }
}

fn param_i64(params: &[(String, String)], name: &str) -> Result<Option<i64>, Resp> {
    match params.iter().find(|(k, _)| k == name) {
        None => Ok(None),
        Some((_, v)) => v.trim().parse::<i64>().map(Some).map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                format!("{name} must be an integer, got {v:?}"),
            )
        }),
    }
}

/// Resolves `tag=`/`id=` parameters, in order, to `(name, id)`.
async fn series(
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
            .map_err(|e| error(StatusCode::INTERNAL_SERVER_ERROR, format!("catalog: {e}")))?
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

async fn range(state: &Rc<HttpState>, params: &[(String, String)]) -> Resp {
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
        let dest = owner(id, state.router.shards());
        let resp = Rc::clone(&state.router)
            .call(
                dest,
                crate::runtime::router::ShardRequest::Range {
                    tag: id,
                    start,
                    end,
                },
            )
            .await;
        let pts = match resp {
            crate::runtime::router::ShardResponse::Points(p) => p,
            crate::runtime::router::ShardResponse::Failed(_, m) => {
                return Err(error(StatusCode::INTERNAL_SERVER_ERROR, m))
            }
            other => {
                return Err(error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("unexpected answer {other:?}"),
                ))
            }
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

fn json_f64(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

async fn latest(state: &Rc<HttpState>, params: &[(String, String)]) -> Resp {
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
        let got = match execute(&state.router, NativeRequest::Latest(ids)).await {
            NativeResponse::Latest(v) => v,
            NativeResponse::Error { message, .. } => {
                return Err(error(StatusCode::INTERNAL_SERVER_ERROR, message))
            }
            other => {
                return Err(error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("unexpected answer {other:?}"),
                ))
            }
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

async fn tags(state: &Rc<HttpState>, params: &[(String, String)]) -> Resp {
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
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("catalog: {e}")),
    }
}
