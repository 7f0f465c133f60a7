//! The HTTP edge's router: one function per method and path (the API is
//! documented in [`super`]), counting every answer by class. The handlers
//! live in [`super::write`] and [`super::query`]; answers are built with
//! [`super::answer`]. Nothing panics on request data.

use std::convert::Infallible;
use std::rc::Rc;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, StatusCode};
use serde_json::json;

use super::answer::{error, json_resp, no_content, Resp};
use super::line::Precision;
use super::query::{latest, range, tags};
use super::request::{bad_precision, parse_query};
use super::write::write;
use super::{counter, HttpState};

pub use super::answer::failure_resp;

/// Handles one request.
pub async fn handle(state: Rc<HttpState>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let resp = route(&state, req).await;
    let status = resp.status();
    state.count(counter::REQUESTS, 1);
    if status.is_client_error() {
        state.count(counter::CLIENT_ERRORS, 1);
    }
    if status.is_server_error() {
        state.count(counter::SERVER_ERRORS, 1);
    }
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
            // Clients parse this as a version number.
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
