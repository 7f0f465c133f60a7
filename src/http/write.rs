//! The write endpoints (`/write`, `/api/v2/write`): line protocol in,
//! catalog ids resolved (created durably for new series), one runtime write
//! command out, `204` once every point is durable.

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
use crate::runtime::dispatch::execute;
use crate::Point;

/// Handles one write request.
pub async fn write(state: &Rc<HttpState>, req: Request<Incoming>, precision: Precision) -> Resp {
    let started = Instant::now();
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
    let body = match read_body(state, req).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let mut samples = Vec::new();
    if let Err(e) = line::parse_batch(
        &body,
        precision,
        now_us(),
        &state.router.local().window,
        &mut samples,
    ) {
        return json_resp(
            StatusCode::BAD_REQUEST,
            &json!({"error": format!("line {}: {}", e.line, e.message), "line": e.line}),
        );
    }
    if samples.is_empty() {
        return no_content();
    }
    let keys: Vec<&str> = samples.iter().map(|s| s.key.as_str()).collect();
    let ids = match state.catalog.resolve(&keys, true).await {
        Ok(ids) => ids,
        Err(f) => return failure_resp(&f),
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
    match execute(&state.router, Command::Write(points)).await {
        Ok(Answer::Written(_)) => {
            state.router.local().record_ack(started);
            state.count(counter::WRITES_OK, 1);
            state.count(counter::POINTS_OK, n);
            no_content()
        }
        Ok(other) => failure_resp(&Failure::unexpected("write", &other)),
        Err(f) => failure_resp(&f),
    }
}
