//! Reading HTTP requests: query parameters (percent-decoded), bodies
//! bounded in size, time and shard-wide buffered bytes, optionally
//! gzip-compressed, timestamps in a request's precision.
//! Never panics on request data; every refusal is a finished answer.

// Helpers return the finished error answer as their `Err`: it is built once
// per failed request, so its size does not matter.
#![allow(clippy::result_large_err)]

use std::cell::Cell;
use std::io::Read;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, CONTENT_ENCODING, CONTENT_LENGTH, RETRY_AFTER};
use hyper::{Request, StatusCode};

use super::answer::{error, Resp};
use super::line::Precision;
use super::HttpState;

/// `400` for an unknown precision.
pub fn bad_precision(p: Option<&String>) -> Resp {
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

/// Request body bytes held by one request, given back to the shard's
/// [`HttpState::buffered`] count when dropped.
pub struct Held {
    count: Rc<Cell<usize>>,
    n: usize,
}

impl Held {
    fn take(&mut self, n: usize, max: usize) -> bool {
        let now = self.count.get();
        if now.saturating_add(n) > max {
            return false;
        }
        self.count.set(now + n);
        self.n += n;
        true
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.count.set(self.count.get().saturating_sub(self.n));
    }
}

/// Reads the body (bounded in size, in time, and in the bytes the shard
/// buffers for all its requests at once), gunzips it if asked (bounded
/// too). The body must arrive within [`HttpConfig::body_grace`] plus one
/// second per [`HttpConfig::body_min_rate`] bytes: a slower one is `408`.
///
/// [`HttpConfig::body_grace`]: super::HttpConfig::body_grace
/// [`HttpConfig::body_min_rate`]: super::HttpConfig::body_min_rate
pub async fn read_body(state: &HttpState, req: Request<Incoming>) -> Result<(Bytes, Held), Resp> {
    let max = state.config.max_body;
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {max} bytes"),
        )
    };
    let mut held = Held {
        count: Rc::clone(&state.buffered),
        n: 0,
    };
    let budget = state.config.max_buffered_bodies;
    let busy = || {
        let mut r = error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("this shard already buffers {budget} bytes of request bodies; retry"),
        );
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
        r
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
    let started = Instant::now();
    let grace = state.config.body_grace;
    let rate = state.config.body_min_rate.max(1);
    let mut incoming = req.into_body();
    // Bytes are counted as they arrive, never as declared: a client that
    // declares a large body and sends nothing holds nothing.
    let mut buf = Vec::new();
    loop {
        let allowed = grace + Duration::from_secs_f64(buf.len() as f64 / rate as f64);
        let left = allowed.saturating_sub(started.elapsed());
        let frame = if left.is_zero() {
            None
        } else {
            futures_lite::future::or(async { Some(incoming.frame().await) }, async {
                glommio::timer::sleep(left).await;
                None
            })
            .await
        };
        let frame = match frame {
            None if started.elapsed() >= allowed => {
                state.count(super::counter::TOO_SLOW, 1);
                let mut r = error(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "request body too slow: {} bytes in {:.1} s (the server allows {} s plus 1 s per {rate} bytes)",
                        buf.len(),
                        started.elapsed().as_secs_f64(),
                        grace.as_secs()
                    ),
                );
                r.headers_mut()
                    .insert(CONNECTION, HeaderValue::from_static("close"));
                return Err(r);
            }
            None => continue,
            Some(None) => break,
            Some(Some(Err(e))) => {
                return Err(error(
                    StatusCode::BAD_REQUEST,
                    format!("reading body failed: {e}"),
                ))
            }
            Some(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if buf.len() + data.len() > max {
            return Err(too_large());
        }
        let extra = (buf.len() + data.len()).saturating_sub(held.n);
        if extra > 0 && !held.take(extra, budget) {
            return Err(busy());
        }
        buf.extend_from_slice(&data);
    }
    let body = Bytes::from(buf);
    if !gzip {
        return Ok((body, held));
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
        Ok(out) => Ok((Bytes::from(out), held)),
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

/// Unit of query timestamps: factor from µs.
pub fn query_precision(params: &[(String, String)]) -> Result<Precision, Resp> {
    match params.iter().find(|(k, _)| k == "precision") {
        None => Ok(Precision::Us),
        Some((_, v)) => Precision::parse_v2(v).ok_or_else(|| bad_precision(Some(v))),
    }
}

/// `t` in precision `p` as µs (saturating).
pub fn us_from(p: Precision, t: i64) -> i64 {
    match p {
        Precision::Ns => t.div_euclid(1000),
        Precision::Us => t,
        Precision::Ms => t.saturating_mul(1_000),
        Precision::S => t.saturating_mul(1_000_000),
        Precision::M => t.saturating_mul(60_000_000),
        Precision::H => t.saturating_mul(3_600_000_000),
    }
}

/// `us` in precision `p` (floored).
pub fn us_to(p: Precision, us: i64) -> i64 {
    match p {
        Precision::Ns => us.saturating_mul(1000),
        Precision::Us => us,
        Precision::Ms => us.div_euclid(1_000),
        Precision::S => us.div_euclid(1_000_000),
        Precision::M => us.div_euclid(60_000_000),
        Precision::H => us.div_euclid(3_600_000_000),
    }
}

/// An integer parameter `name`, if given.
pub fn param_i64(params: &[(String, String)], name: &str) -> Result<Option<i64>, Resp> {
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
