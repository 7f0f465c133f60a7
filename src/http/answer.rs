//! Building HTTP answers: the response type, JSON and error bodies, and
//! the one mapping of a runtime [`Failure`] to a status. Owns no state.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use crate::runtime::command::Failure;

/// The response type.
pub type Resp = Response<Full<Bytes>>;

/// An answer with a body of content type `ctype`.
pub fn respond(status: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

/// A JSON answer.
pub fn json_resp(status: StatusCode, v: &Value) -> Resp {
    respond(status, "application/json", v.to_string())
}

/// A JSON `{"error": msg}` answer.
pub fn error(status: StatusCode, msg: impl Into<String>) -> Resp {
    json_resp(status, &json!({ "error": msg.into() }))
}

/// `204 No Content`.
pub fn no_content() -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

/// The one mapping of a runtime [`Failure`] to an HTTP answer: a status
/// per kind, and a JSON body `{"error": message, "kind": kind}` so clients
/// can tell the cases apart (fenced and shutting down are both 503, but
/// only shutting down says `Retry-After`).
pub fn failure_resp(f: &Failure) -> Resp {
    let status = match f {
        Failure::InvalidInput { .. } | Failure::OutOfWindow { .. } | Failure::OverLimit { .. } => {
            StatusCode::BAD_REQUEST
        }
        Failure::Fenced { .. } | Failure::Closed { .. } | Failure::ShuttingDown => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        Failure::Io { no_space: true, .. } => StatusCode::INSUFFICIENT_STORAGE,
        Failure::Corrupt { .. } | Failure::Io { .. } | Failure::Internal { .. } => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    let mut r = json_resp(status, &json!({"error": f.to_string(), "kind": f.kind()}));
    if matches!(f, Failure::Closed { .. } | Failure::ShuttingDown) {
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// A JSON number, or `null` for NaN and infinities (JSON has neither).
pub fn json_f64(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}
