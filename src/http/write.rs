//! The write endpoints (`/write`, `/api/v2/write`): line protocol in,
//! catalog ids resolved (created durably for new series, within the
//! new-series limits), one runtime write
//! command out, `204` once every point is durable.

use std::net::IpAddr;
use std::rc::Rc;
use std::time::Instant;

use hyper::body::Incoming;
use hyper::header::{HeaderValue, RETRY_AFTER};
use hyper::{Request, StatusCode};
use serde_json::json;

use super::answer::{error, failure_resp, json_resp, no_content, Resp};
use super::line::{self, Precision};
use super::request::read_body;
use super::{counter, HttpState};
use crate::runtime::admission::now_us;
use crate::runtime::command::{Answer, Command, Failure};
use crate::runtime::dispatch::{execute, execute_write_visible};
use crate::Point;

/// Handles one write request. With `atomic` (InfluxDB 2.x's
/// `/api/v2/write`, or `--atomic-writes`), one bad line refuses the whole
/// batch; otherwise (InfluxDB 1.x's `/write`) the good lines are stored and
/// durable before the answer names the bad ones. With `visible`
/// (`consistency=all`) the answer waits until the points are visible to
/// queries through any node (see [`execute_write_visible`]).
pub async fn write(
    state: &Rc<HttpState>,
    peer: Option<IpAddr>,
    req: Request<Incoming>,
    precision: Precision,
    atomic: bool,
    visible: bool,
) -> Resp {
    let started = Instant::now();
    // The body first: a slow client holds a connection, never a write slot.
    let (body, _held) = match read_body(state, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some(_slot) = state.writes.try_take() else {
        state.count(counter::OVERLOADED, 1);
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many writes in flight on this shard; retry",
        );
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };
    let mut samples = Vec::new();
    let mut report = line::ParseReport::default();
    let mut at = Some(line::Resume::START);
    let now = now_us();
    while let Some(from) = at {
        at = line::parse_slice(
            &body,
            from,
            PARSE_SLICE,
            precision,
            now,
            &state.router.local().window,
            &state.config.line,
            &mut samples,
            &mut report,
        );
        // A big body is parsed a slice at a time, giving way to the
        // shard's other requests between slices.
        if at.is_some() {
            glommio::executor().yield_if_needed().await;
        }
    }
    state.count(counter::BAD_LINES, report.bad_lines);
    state.count(counter::DROPPED_STRING_FIELDS, report.dropped_string_fields);
    if atomic && !report.is_clean() {
        return bad_lines(&report, true);
    }
    if !samples.is_empty() {
        let keys: Vec<&str> = samples.iter().map(|s| s.key.as_str()).collect();
        let ids = match resolve(state, peer, &keys).await {
            Ok(ids) => ids,
            Err(r) => return r,
        };
        let mut points = Vec::with_capacity(samples.len());
        for (s, id) in samples.iter().zip(ids) {
            let Some(id) = id else {
                return failure_resp(&Failure::Internal {
                    reason: format!("catalog gave no id for {:?}", s.key),
                });
            };
            points.push(Point::new(id, s.ts, s.value, s.quality));
        }
        let n = points.len() as u64;
        let done = if visible {
            execute_write_visible(&state.router, points).await
        } else {
            execute(&state.router, Command::Write(points)).await
        };
        match done {
            Ok(Answer::Written(_)) => {
                state.router.local().record_ack(started);
                if report.is_clean() {
                    state.count(counter::WRITES_OK, 1);
                }
                state.count(counter::POINTS_OK, n);
            }
            Ok(other) => return failure_resp(&Failure::unexpected("write", &other)),
            Err(f) => return failure_resp(&f),
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

/// Catalog ids of `keys`, creating the missing ones within the new-series
/// limits: at most [`HttpConfig::max_new_series_per_request`] per request
/// (else `400`) and [`HttpConfig::max_new_series_per_second`] per client
/// address (else `429`); a refused request creates nothing.
///
/// [`HttpConfig::max_new_series_per_request`]: super::HttpConfig::max_new_series_per_request
/// [`HttpConfig::max_new_series_per_second`]: super::HttpConfig::max_new_series_per_second
async fn resolve(
    state: &HttpState,
    peer: Option<IpAddr>,
    keys: &[&str],
) -> Result<Vec<Option<u32>>, Resp> {
    let mut ids = state
        .catalog
        .resolve(keys, false)
        .await
        .map_err(|f| failure_resp(&f))?;
    // Missing keys in order of first appearance (ids are assigned in
    // request order).
    let mut seen = ahash::AHashSet::new();
    let missing: Vec<&str> = keys
        .iter()
        .zip(&ids)
        .filter(|(k, id)| id.is_none() && seen.insert(**k))
        .map(|(k, _)| *k)
        .collect();
    if missing.is_empty() {
        return Ok(ids);
    }
    let n = missing.len();
    let max = state.config.max_new_series_per_request;
    if n > max {
        state.count(counter::SERIES_REFUSED, n as u64);
        return Err(error(
            StatusCode::BAD_REQUEST,
            format!(
                "the request would create {n} new series, more than the server's --max-new-series-per-request of {max}; nothing was stored"
            ),
        ));
    }
    if let Err(wait) = state.new_series.take(peer, n as u64) {
        state.count(counter::SERIES_REFUSED, n as u64);
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "this client creates new series faster than the server's --max-new-series-per-second of {}; nothing was stored, retry in {} s",
                state.config.max_new_series_per_second, wait
            ),
        );
        r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(wait));
        return Err(r);
    }
    let created = state
        .catalog
        .resolve(&missing, true)
        .await
        .map_err(|f| failure_resp(&f))?;
    let created: ahash::AHashMap<&str, Option<u32>> = missing.into_iter().zip(created).collect();
    for (k, id) in keys.iter().zip(ids.iter_mut()) {
        if id.is_none() {
            *id = created.get(k).copied().flatten();
        }
    }
    Ok(ids)
}

/// Body bytes parsed between two chances to yield.
const PARSE_SLICE: usize = 64 << 10;

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
