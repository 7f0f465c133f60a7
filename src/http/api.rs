//! The HTTP edge's router: one function per method and path (the API is
//! documented in [`super`]), counting every answer by class. Every path
//! and what it needs is [`ROUTES`]; authentication ([`super::auth`]) is
//! checked before any handler runs. The handlers live in [`super::write`]
//! and [`super::query`]; answers are built with [`super::answer`]. Nothing
//! panics on request data.

use std::convert::Infallible;
use std::net::IpAddr;
use std::rc::Rc;

use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Method, Request, StatusCode};
use serde_json::json;

use super::answer::{error, json_resp, no_content, Resp};
use super::auth::Access;
use super::line::Precision;
use super::query::{latest, range, tags};
use super::request::{bad_precision, parse_query};
use super::write::write;
use super::{counter, HttpState};
use crate::storage::tokens::Perms;

pub use super::answer::failure_resp;

/// Every path the router serves, with what it needs when auth is on. A
/// path not listed needs a valid token of any permission.
pub const ROUTES: &[(&str, Access)] = &[
    ("/ping", Access::Open),
    ("/health", Access::Open),
    ("/write", Access::Needs(Perms::WRITE)),
    ("/api/v2/write", Access::Needs(Perms::WRITE)),
    ("/api/v1/range", Access::Needs(Perms::READ)),
    ("/api/v1/latest", Access::Needs(Perms::READ)),
    ("/api/v1/tags", Access::Needs(Perms::READ)),
    ("/query", Access::Needs(Perms::READ)),
    ("/api/v1/aggregate", Access::Needs(Perms::READ)),
    ("/api/v1/interpolated", Access::Needs(Perms::READ)),
    ("/api/v1/plot", Access::Needs(Perms::READ)),
    ("/api/v1/at_or_before", Access::Needs(Perms::READ)),
    ("/api/v1/tokens", Access::Needs(Perms::ADMIN)),
    ("/api/v1/backup", Access::Needs(Perms::ADMIN)),
    ("/metrics", Access::Metrics),
    // The trend page's static files ([`super::ui`]): no data in them.
    (super::ui::INDEX, Access::Open),
    (super::ui::APP_JS, Access::Open),
    (super::ui::APP_CSS, Access::Open),
    (super::ui::FAVICON, Access::Open),
];

/// What `path` needs ([`ROUTES`]; a valid token of any permission if it
/// is not listed).
pub fn access(path: &str) -> Access {
    ROUTES
        .iter()
        .find(|(p, _)| *p == path)
        .map_or(Access::Needs(Perms::NONE), |(_, a)| *a)
}

/// Handles one request from `peer`.
pub async fn handle(
    state: Rc<HttpState>,
    peer: Option<IpAddr>,
    req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    let resp = route(&state, peer, req).await;
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

async fn route(state: &Rc<HttpState>, peer: Option<IpAddr>, req: Request<Incoming>) -> Resp {
    let path = req.uri().path().to_string();
    let params = parse_query(req.uri().query().unwrap_or(""));
    if let Err(refused) = super::auth::admit(state, peer, &path, req.headers(), &params).await {
        return refused;
    }
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
            let visible = match consistency(&params) {
                Ok(v) => v,
                Err(e) => return error(StatusCode::BAD_REQUEST, e),
            };
            match Precision::parse_v1(p.map(String::as_str).or(Some("ns"))) {
                Some(pr) => write(state, peer, req, pr, state.config.atomic_writes, visible).await,
                None => bad_precision(p),
            }
        }
        "/api/v2/write" if post => {
            let p = params
                .iter()
                .find(|(k, _)| k == "precision")
                .map(|(_, v)| v);
            let visible = match consistency(&params) {
                Ok(v) => v,
                Err(e) => return error(StatusCode::BAD_REQUEST, e),
            };
            match Precision::parse_v2(p.map(String::as_str).unwrap_or("ns")) {
                Some(pr) => write(state, peer, req, pr, true, visible).await,
                None => bad_precision(p),
            }
        }
        "/api/v1/range" if get => range(state, &params).await,
        "/api/v1/latest" if get => latest(state, &params).await,
        "/api/v1/tags" if get => tags(state, &params).await,
        "/api/v1/aggregate" if get => super::aggregate::aggregate(state, &params).await,
        "/api/v1/interpolated" if get => super::aggregate::interpolated(state, &params).await,
        "/api/v1/plot" if get => super::aggregate::plot(state, &params).await,
        "/api/v1/at_or_before" if get => super::aggregate::at_or_before(state, &params).await,
        "/api/v1/tokens" if get => super::auth::tokens(state),
        "/api/v1/backup" if post => super::backup::backup(state, &params).await,
        "/query" if get || post => super::influxql::query(state, req, params).await,
        "/metrics" if get => super::metrics::render(state).await,
        p if get && super::ui::serves(p) => super::ui::serve(p, req.headers()),
        p if ROUTES.iter().any(|(r, _)| *r == p) => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => error(StatusCode::NOT_FOUND, format!("no such endpoint {path}")),
    }
}

/// A write's `consistency` (InfluxDB 1.x's parameter): `all` answers only
/// once the write is visible to queries through every node (in cluster
/// mode: applied by its partitions' owners); `any`, `one`, `quorum` or
/// none answer once it is durable (in cluster mode: stored on a quorum of
/// the replicated log). Anything else is refused `400`.
fn consistency(params: &[(String, String)]) -> Result<bool, String> {
    match params
        .iter()
        .find(|(k, _)| k == "consistency")
        .map(|(_, v)| v.as_str())
    {
        None | Some("any" | "one" | "quorum") => Ok(false),
        Some("all") => Ok(true),
        Some(v) => Err(format!(
            "unknown consistency {v:?} (use any, one, quorum or all)"
        )),
    }
}
