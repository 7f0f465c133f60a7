//! The built-in trend page (`GET /`): a small single-page app whose static
//! files (`src/http/ui/`) are embedded in the binary with `include_str!`,
//! so there is no build step and nothing is fetched from the network at
//! run time. It talks to the server only through the public JSON API
//! (`/api/v1/tags`, `/api/v1/plot`, `/api/v1/latest`, `/metrics`), with the
//! token the user typed (kept in the browser's `sessionStorage`).
//!
//! Owns the asset table and how an asset is answered: content type,
//! `ETag` (a hash of the bytes, computed at compile time) with
//! `Cache-Control: no-cache` so a browser revalidates and gets `304 Not
//! Modified` while the binary is unchanged, and headers that keep the page
//! to itself (`Content-Security-Policy: default-src 'self'`, no framing, no
//! sniffing). The assets hold no data, so they are open even with auth on
//! (listed in [`super::api::ROUTES`]); every API call the page makes is
//! checked as usual. Never reads a body, never touches storage.

use hyper::header::{
    HeaderMap, HeaderValue, CACHE_CONTROL, CONTENT_SECURITY_POLICY, ETAG, IF_NONE_MATCH,
};
use hyper::StatusCode;

use super::answer::{respond, Resp};

/// The page.
pub const INDEX: &str = "/";
/// The script.
pub const APP_JS: &str = "/ui/app.js";
/// The style sheet.
pub const APP_CSS: &str = "/ui/app.css";
/// The icon browsers ask for.
pub const FAVICON: &str = "/favicon.ico";

/// One embedded file.
struct Asset {
    path: &'static str,
    ctype: &'static str,
    body: &'static str,
    etag: &'static str,
}

/// FNV-1a, 64 bits: a stable fingerprint of an asset for its `ETag`.
const fn fnv1a(b: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < b.len() {
        h ^= b[i] as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    h
}

/// `"` + 16 hex digits + `"`, at compile time.
const fn etag_bytes(b: &[u8]) -> [u8; 18] {
    let h = fnv1a(b);
    let hex = b"0123456789abcdef";
    let mut out = [b'"'; 18];
    let mut i = 0;
    while i < 16 {
        out[1 + i] = hex[((h >> (60 - 4 * i)) & 0xf) as usize];
        i += 1;
    }
    out
}

macro_rules! asset {
    ($path:expr, $ctype:expr, $file:literal) => {{
        const BODY: &str = include_str!($file);
        const TAG: [u8; 18] = etag_bytes(BODY.as_bytes());
        Asset {
            path: $path,
            ctype: $ctype,
            body: BODY,
            etag: match std::str::from_utf8(&TAG) {
                Ok(s) => s,
                Err(_) => "\"0\"",
            },
        }
    }};
}

const ASSETS: [Asset; 4] = [
    asset!(INDEX, "text/html; charset=utf-8", "ui/index.html"),
    asset!(APP_JS, "text/javascript; charset=utf-8", "ui/app.js"),
    asset!(APP_CSS, "text/css; charset=utf-8", "ui/app.css"),
    asset!(FAVICON, "image/svg+xml", "ui/favicon.svg"),
];

/// Every path this module serves.
pub fn paths() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|a| a.path)
}

/// Whether `path` is one of the page's files.
pub fn serves(path: &str) -> bool {
    ASSETS.iter().any(|a| a.path == path)
}

/// The answer for `path` (`404` if it is not an asset), `304` when the
/// request's `If-None-Match` names the current version.
pub fn serve(path: &str, headers: &HeaderMap) -> Resp {
    let Some(a) = ASSETS.iter().find(|a| a.path == path) else {
        return super::answer::error(StatusCode::NOT_FOUND, format!("no such file {path}"));
    };
    let fresh = headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            let t = t.trim();
            t == "*" || t.trim_start_matches("W/") == a.etag
        });
    let mut r = if fresh {
        respond(StatusCode::NOT_MODIFIED, a.ctype, "")
    } else {
        respond(StatusCode::OK, a.ctype, a.body)
    };
    let h = r.headers_mut();
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(ETAG, HeaderValue::from_static(a.etag));
    h.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    h.insert(
        "X-Content-Type-Options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("X-Frame-Options", HeaderValue::from_static("DENY"));
    h.insert("Referrer-Policy", HeaderValue::from_static("no-referrer"));
    r
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::http::api::access;
    use crate::http::auth::Access;

    #[test]
    fn every_asset_is_open_and_typed() {
        for p in paths() {
            assert_eq!(access(p), Access::Open, "{p} must be open (no data in it)");
            let r = serve(p, &HeaderMap::new());
            assert_eq!(r.status(), StatusCode::OK, "{p}");
            assert!(r.headers().get("content-type").is_some(), "{p}");
            assert_eq!(r.headers()["cache-control"], "no-cache");
        }
        assert_eq!(
            serve(APP_JS, &HeaderMap::new()).headers()["content-type"],
            "text/javascript; charset=utf-8"
        );
        assert_eq!(serve("/ui/nope.js", &HeaderMap::new()).status(), 404);
        assert!(!serves("/ui/nope.js"));
        // Anything else under /ui/ is not open: it needs a token first.
        assert_ne!(access("/ui/nope.js"), Access::Open);
    }

    #[test]
    fn etag_revalidates() {
        let r = serve(INDEX, &HeaderMap::new());
        let tag = r.headers()["etag"].to_str().unwrap().to_string();
        assert_eq!(tag.len(), 18);
        assert_ne!(tag, serve(APP_JS, &HeaderMap::new()).headers()["etag"]);
        let mut h = HeaderMap::new();
        h.insert(IF_NONE_MATCH, HeaderValue::from_str(&tag).unwrap());
        assert_eq!(serve(INDEX, &h).status(), StatusCode::NOT_MODIFIED);
        h.insert(
            IF_NONE_MATCH,
            HeaderValue::from_str(&format!("\"x\", W/{tag}")).unwrap(),
        );
        assert_eq!(serve(INDEX, &h).status(), StatusCode::NOT_MODIFIED);
        h.insert(IF_NONE_MATCH, HeaderValue::from_static("\"0000\""));
        assert_eq!(serve(INDEX, &h).status(), StatusCode::OK);
    }

    #[test]
    fn the_page_references_only_its_own_assets() {
        let html = ASSETS[0].body;
        assert!(html.contains(APP_JS) && html.contains(APP_CSS));
        for a in &ASSETS {
            let body = a.body.replace("http://www.w3.org/2000/svg", "");
            assert!(
                !body.contains("http://") && !body.contains("https://"),
                "{} must not load anything from the network",
                a.path
            );
        }
    }
}
