//! Authentication on the HTTP edge, checked per request before its
//! handler runs (so a refused request reads no body, stores nothing and
//! creates no catalog entry). Credentials, in this order:
//!
//! | where | form | clients |
//! |---|---|---|
//! | `Authorization: Token T` or `Bearer T` | the token | InfluxDB 2.x clients, Grafana, curl |
//! | `Authorization: Basic base64(user:password)` | password = the token, user = its name (or empty) | InfluxDB 1.x clients, Telegraf |
//! | `?u=user&p=password` | same | InfluxDB 1.x clients |
//!
//! Missing or wrong credentials: `401` with `{"error", "kind":
//! "unauthorized"}` and `WWW-Authenticate` (Basic and Bearer); a token
//! without the permission: `403` with `"kind": "forbidden"`. What each path
//! needs is [`super::api::ROUTES`]; a path not listed there needs a valid
//! token of any permission (it gets its 404 only then), so a handler added
//! without an entry is never open. Owns the mapping of credentials and
//! refusals to HTTP; the decisions are the shard's
//! [`Guard`](crate::runtime::auth::Guard).

use std::net::IpAddr;

use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use hyper::StatusCode;
use serde_json::{json, Value};

use super::answer::{json_resp, Resp};
use super::HttpState;
use crate::runtime::auth::{Denied, Presented};
use crate::storage::tokens::Perms;

/// What a path needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Nothing (`/ping`, `/health`).
    Open,
    /// These permissions.
    Needs(Perms),
    /// `read`, unless the server runs with `--metrics-open`.
    Metrics,
}

/// Credentials as presented: user (if any) and token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// User name (Basic auth, `u=`).
    pub user: Option<String>,
    /// The token (`Token`/`Bearer`, the Basic password, `p=`).
    pub secret: String,
}

/// The credentials of a request: from `Authorization`, else from `u`/`p`.
/// `Ok(None)` when there are none; an unreadable header is an error.
pub fn credentials(
    headers: &HeaderMap,
    params: &[(String, String)],
) -> Result<Option<Credentials>, Denied> {
    if let Some(v) = headers.get(AUTHORIZATION) {
        let v = v
            .to_str()
            .map_err(|_| Denied::Malformed("Authorization header is not ASCII".into()))?
            .trim();
        let (scheme, rest) = v.split_once(' ').unwrap_or((v, ""));
        let rest = rest.trim();
        return match scheme.to_ascii_lowercase().as_str() {
            "token" | "bearer" => Ok(Some(Credentials {
                user: None,
                secret: rest.to_string(),
            })),
            "basic" => {
                let raw = base64_decode(rest)
                    .ok_or_else(|| Denied::Malformed("Basic credentials are not base64".into()))?;
                let text = String::from_utf8(raw)
                    .map_err(|_| Denied::Malformed("Basic credentials are not UTF-8".into()))?;
                let (user, pass) = text.split_once(':').ok_or_else(|| {
                    Denied::Malformed(
                        "Basic credentials have no ':' between user and password".into(),
                    )
                })?;
                Ok(Some(Credentials {
                    user: Some(user.to_string()),
                    secret: pass.to_string(),
                }))
            }
            other => Err(Denied::Malformed(format!(
                "unsupported Authorization scheme {other:?} (use Token, Bearer or Basic)"
            ))),
        };
    }
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    Ok(get("p").map(|secret| Credentials {
        user: get("u"),
        secret,
    }))
}

/// Admits a request to `path` from `peer`, or answers it: `401`, `403`
/// (after the delay its peer's failures earned, see
/// [`crate::runtime::auth::Failures`]).
pub async fn admit(
    state: &HttpState,
    peer: Option<IpAddr>,
    path: &str,
    headers: &HeaderMap,
    params: &[(String, String)],
) -> Result<(), Resp> {
    let guard = &state.guard;
    if !guard.enabled() {
        return Ok(());
    }
    let need = match super::api::access(path) {
        Access::Open => return Ok(()),
        Access::Metrics if state.config.metrics_open => return Ok(()),
        Access::Metrics => Perms::READ,
        Access::Needs(p) => p,
    };
    let decided = credentials(headers, params).and_then(|c| {
        let id = guard.authenticate(c.as_ref().map(|c| Presented {
            user: c.user.as_deref(),
            secret: &c.secret,
        }))?;
        guard.authorize(&id, need)
    });
    match decided {
        Ok(()) => Ok(()),
        Err(why) => {
            guard.refuse(peer, "http", &why).await;
            Err(refusal(&why))
        }
    }
}

/// The answer to a refusal: `401` (with `WWW-Authenticate`) or `403`.
pub fn refusal(why: &Denied) -> Resp {
    if why.is_authentication() {
        let mut r = json_resp(
            StatusCode::UNAUTHORIZED,
            &json!({"error": why.to_string(), "kind": "unauthorized"}),
        );
        let h = r.headers_mut();
        h.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"xtdb\", charset=\"UTF-8\""),
        );
        h.append(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"xtdb\""),
        );
        r
    } else {
        json_resp(
            StatusCode::FORBIDDEN,
            &json!({"error": why.to_string(), "kind": "forbidden"}),
        )
    }
}

/// `GET /api/v1/tokens` (admin): this shard's view of the token file, no
/// hashes: `[{"name", "permissions": [..], "created_us", "revoked_us"}]`.
pub fn tokens(state: &HttpState) -> Resp {
    let set = state.guard.tokens();
    let rows: Vec<Value> = set
        .all()
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "permissions": t.perms.names(),
                "created_us": t.created_us,
                "revoked_us": t.revoked_us,
            })
        })
        .collect();
    json_resp(StatusCode::OK, &Value::Array(rows))
}

/// Standard base64 (RFC 4648, padding optional); `None` if it is not.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero padding of the last byte (2 or 4 bits).
    (bits < 6 && acc == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(data: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut s = String::new();
        for ch in data.chunks(3) {
            let n = ch.iter().fold(0u32, |a, &b| a << 8 | u32::from(b)) << (8 * (3 - ch.len()));
            for i in 0..=ch.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
            s.push_str(&"=".repeat(3 - ch.len()));
        }
        s
    }

    proptest::proptest! {
        #![proptest_config(crate::proptest_config::config(256))]
        #[test]
        fn base64_round_trips(data in proptest::collection::vec(proptest::num::u8::ANY, 0..100)) {
            let enc = b64(&data);
            proptest::prop_assert_eq!(base64_decode(&enc), Some(data.clone()));
            proptest::prop_assert_eq!(base64_decode(enc.trim_end_matches('=')), Some(data));
        }

        #[test]
        fn base64_never_panics(s in "\\PC{0,40}") {
            let _ = base64_decode(&s);
        }
    }

    #[test]
    fn credentials_from_every_place() {
        let mut h = HeaderMap::new();
        let none: Vec<(String, String)> = Vec::new();
        assert_eq!(credentials(&h, &none), Ok(None));
        h.insert(AUTHORIZATION, HeaderValue::from_static("Token xtdb_ab"));
        let c = credentials(&h, &none).unwrap().unwrap();
        assert_eq!((c.user, c.secret.as_str()), (None, "xtdb_ab"));
        h.insert(AUTHORIZATION, HeaderValue::from_static("bearer  xtdb_cd "));
        assert_eq!(credentials(&h, &none).unwrap().unwrap().secret, "xtdb_cd");
        let basic = format!("Basic {}", b64(b"plc-1:xtdb_ef:g"));
        h.insert(AUTHORIZATION, HeaderValue::from_str(&basic).unwrap());
        let c = credentials(&h, &none).unwrap().unwrap();
        assert_eq!(
            (c.user.as_deref(), c.secret.as_str()),
            (Some("plc-1"), "xtdb_ef:g")
        );
        for bad in ["Basic !!!", "Digest x", "Basic eHl6"] {
            h.insert(AUTHORIZATION, HeaderValue::from_static(bad));
            assert!(
                matches!(credentials(&h, &none), Err(Denied::Malformed(_))),
                "{bad}"
            );
        }
        let q = vec![
            ("u".to_string(), "n".to_string()),
            ("p".to_string(), "t".to_string()),
        ];
        let c = credentials(&HeaderMap::new(), &q).unwrap().unwrap();
        assert_eq!((c.user.as_deref(), c.secret.as_str()), (Some("n"), "t"));
        assert_eq!(credentials(&HeaderMap::new(), &q[..1]), Ok(None));
    }
}
