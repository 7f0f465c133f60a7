//! Building HTTP answers: the response type (a whole body, or one
//! streamed in pieces), JSON and error bodies, and the one mapping of a
//! runtime [`Failure`] to a status. Owns no state.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_lite::Stream;
use hyper::body::{Frame, SizeHint};
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use crate::runtime::command::Failure;

/// The response type.
pub type Resp = Response<Body>;

/// A response body: whole, or streamed piece by piece (sent chunked) by a
/// producer that computes the next piece only when hyper asks for it, so a
/// big answer is never held in memory at once. A streamed body's producer
/// ends with `Err` if it fails midway; hyper then closes the connection
/// without the final chunk, so the client sees a truncated answer, never
/// a complete-looking wrong one.
pub enum Body {
    /// A body in one piece (`None` once sent).
    Full(Option<Bytes>),
    /// A body produced piece by piece.
    Stream(Pin<Box<dyn Stream<Item = Result<Bytes, String>>>>),
}

impl Body {
    /// A body in one piece.
    pub fn full(b: impl Into<Bytes>) -> Body {
        let b = b.into();
        Body::Full((!b.is_empty()).then_some(b))
    }
}

/// Why a streamed answer stopped early.
#[derive(Debug)]
pub struct StreamError(pub String);

impl std::fmt::Display for StreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StreamError {}

impl hyper::body::Body for Body {
    type Data = Bytes;
    type Error = StreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        match self.get_mut() {
            Body::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Body::Stream(s) => match s.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(StreamError(e)))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Body::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Stream(_) => SizeHint::default(),
        }
    }
}

/// An answer with a body of content type `ctype`.
pub fn respond(status: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Body::full(body));
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
    let mut r = Response::new(Body::full(Bytes::new()));
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
        Failure::Fenced { .. }
        | Failure::Closed { .. }
        | Failure::ShuttingDown
        | Failure::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
        Failure::Io { no_space: true, .. } => StatusCode::INSUFFICIENT_STORAGE,
        Failure::Corrupt { .. } | Failure::Io { .. } | Failure::Internal { .. } => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    };
    let mut r = json_resp(status, &json!({"error": f.to_string(), "kind": f.kind()}));
    if matches!(
        f,
        Failure::Closed { .. } | Failure::ShuttingDown | Failure::Unavailable { .. }
    ) {
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// A JSON number, or `null` for NaN and infinities (JSON has neither).
pub fn json_f64(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}
