//! Authentication on the HTTP edge (`--auth on`): every endpoint without
//! credentials, with a wrong, a revoked, a read-only, a write-only and an
//! admin-only token gets its status (401 with `WWW-Authenticate`, 403, or
//! the endpoint's own answer); InfluxDB 1.x credentials (Basic, `u`/`p`)
//! work; nothing of a refused write is stored or enters the catalog;
//! `--metrics-open` opens `/metrics` only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod net_common;

use std::net::SocketAddr;

use net_common::http::{req, Answer};
use net_common::*;
use xtdb::runtime::auth::Slowdown;
use xtdb::server::AuthSetting;
use xtdb::storage::tokens::Perms;

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

struct Server {
    h: xtdb::server::ServerHandle,
    http: SocketAddr,
    rw: String,
    ro: String,
    wo: String,
    admin: String,
    old: String,
}

fn setup(dir: &std::path::Path, metrics_open: bool) -> Server {
    let t = make_tokens(
        dir,
        &[
            ("rw", Perms::READ.with(Perms::WRITE)),
            ("grafana", Perms::READ),
            ("plc", Perms::WRITE),
            ("ops", Perms::ADMIN),
            ("old", Perms::READ.with(Perms::WRITE)),
        ],
    );
    revoke_token(dir, "old");
    let h = server_with(dir, &[0, 1], |c| {
        c.auth = AuthSetting::On;
        c.http = Some("127.0.0.1:0".into());
        c.http_config.metrics_open = metrics_open;
        c.auth_slowdown = Slowdown {
            free: 1e9,
            ..Slowdown::default()
        };
    })
    .unwrap();
    let http = h.http_addr().unwrap();
    let [rw, ro, wo, admin, old] = <[String; 5]>::try_from(t).unwrap();
    Server {
        h,
        http,
        rw,
        ro,
        wo,
        admin,
        old,
    }
}

fn call(a: SocketAddr, method: &str, path: &str, auth: Option<&str>, body: &str) -> Answer {
    let headers: Vec<(&str, &str)> = auth.iter().map(|v| ("Authorization", *v)).collect();
    req(a, method, path, &headers, body.as_bytes())
}

const LINE: &str = "boiler,unit=never temp=1.5 1700000000000000000\n";

/// (method, path, body, what it needs).
fn endpoints() -> Vec<(&'static str, &'static str, &'static str, Option<Perms>)> {
    vec![
        ("POST", "/write?db=plant", LINE, Some(Perms::WRITE)),
        (
            "POST",
            "/api/v2/write?bucket=b&org=o",
            LINE,
            Some(Perms::WRITE),
        ),
        ("GET", "/api/v1/range?id=5", "", Some(Perms::READ)),
        ("GET", "/api/v1/latest?id=5", "", Some(Perms::READ)),
        ("GET", "/api/v1/tags", "", Some(Perms::READ)),
        (
            "GET",
            "/query?db=plant&q=SHOW%20MEASUREMENTS",
            "",
            Some(Perms::READ),
        ),
        (
            "POST",
            "/query?db=plant&q=SHOW%20DATABASES",
            "",
            Some(Perms::READ),
        ),
        ("GET", "/metrics", "", Some(Perms::READ)),
        ("GET", "/api/v1/tokens", "", Some(Perms::ADMIN)),
        ("GET", "/ping", "", None),
        ("GET", "/health", "", None),
        ("GET", "/no/such/path", "", Some(Perms::NONE)),
    ]
}

fn assert_401(r: &Answer, what: &str, want: &str) {
    assert_eq!(r.status, 401, "{what}: {}", r.text());
    let h = r.headers.to_ascii_lowercase();
    assert!(
        h.contains("www-authenticate: basic realm=\"xtdb\""),
        "{what}: {h}"
    );
    assert!(
        h.contains("www-authenticate: bearer realm=\"xtdb\""),
        "{what}: {h}"
    );
    let j = r.json();
    assert_eq!(j["kind"], "unauthorized", "{what}: {j}");
    assert!(j["error"].as_str().unwrap().contains(want), "{what}: {j}");
}

#[test]
fn every_endpoint_with_every_kind_of_credential() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), false);
    let a = s.http;
    let tok = |t: &str| format!("Token {t}");
    for (method, path, body, need) in endpoints() {
        let what = format!("{method} {path}");
        let open = need.is_none();
        let ok = |r: &Answer| {
            let want = match path {
                p if p.starts_with("/write") || p.starts_with("/api/v2/write") => 204,
                "/ping" => 204,
                "/no/such/path" => 404,
                _ => 200,
            };
            assert_eq!(r.status, want, "{what}: {}", r.text());
        };
        // No credentials, a wrong token, a revoked token.
        for (auth, why) in [
            (None, "no token"),
            (Some(tok("xtdb_0123")), "invalid token"),
            (Some(format!("Bearer {}", s.old)), "revoked"),
        ] {
            let r = call(a, method, path, auth.as_deref(), body);
            if open {
                ok(&r);
            } else {
                assert_401(&r, &format!("{what} ({why})"), why);
            }
        }
        // Each token: its own answer where it has the permission, else 403.
        for (name, token, perms) in [
            ("rw", &s.rw, Perms::READ.with(Perms::WRITE)),
            ("grafana", &s.ro, Perms::READ),
            ("plc", &s.wo, Perms::WRITE),
            ("ops", &s.admin, Perms::ADMIN),
        ] {
            let r = call(a, method, path, Some(&tok(token)), body);
            if need.is_none_or(|n| perms.allows(n)) {
                ok(&r);
            } else {
                assert_eq!(r.status, 403, "{what} as {name}: {}", r.text());
                let j = r.json();
                assert_eq!(j["kind"], "forbidden", "{j}");
                assert!(j["error"].as_str().unwrap().contains(name), "{j}");
            }
        }
    }
    // Known paths with the wrong method need a token before the 405.
    assert_401(
        &call(a, "DELETE", "/write", None, ""),
        "DELETE /write",
        "no token",
    );
    assert_eq!(
        call(a, "DELETE", "/write", Some(&tok(&s.rw)), "").status,
        405
    );

    // The admin listing shows names and permissions, never hashes.
    let r = call(a, "GET", "/api/v1/tokens", Some(&tok(&s.admin)), "");
    let j = r.json();
    let rows = j.as_array().unwrap();
    assert_eq!(rows.len(), 5);
    assert_eq!(rows[1]["name"], "grafana");
    assert_eq!(rows[1]["permissions"], serde_json::json!(["read"]));
    assert!(rows[4]["revoked_us"].is_i64());
    assert!(!r.text().contains("hash"));
    s.h.stop().unwrap();
}

#[test]
fn refused_writes_store_nothing_and_create_no_series() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), false);
    let a = s.http;
    let body = "refused,unit=a v=1 1700000000000000000\nrefused,unit=b v=2 1700000000000000000\n";
    for auth in [
        None,
        Some("Token xtdb_wrong".to_string()),
        Some(format!("Token {}", s.old)),
        Some(format!("Token {}", s.ro)),
        Some(format!("Token {}", s.admin)),
        Some("Digest abc".to_string()),
    ] {
        for path in ["/write?db=x", "/api/v2/write?bucket=b"] {
            let r = call(a, "POST", path, auth.as_deref(), body);
            assert!(matches!(r.status, 401 | 403), "{path}: {}", r.text());
        }
    }
    let tags = call(
        a,
        "GET",
        "/api/v1/tags",
        Some(&format!("Token {}", s.ro)),
        "",
    );
    assert_eq!(
        tags.json(),
        serde_json::json!([]),
        "the catalog took refused series"
    );
    let m = call(a, "GET", "/metrics", Some(&format!("Token {}", s.ro)), "").text();
    let sum = |name: &str| -> u64 {
        m.lines()
            .filter(|l| l.starts_with(&format!("{name}{{")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    assert_eq!(sum("xtdb_points_written_total"), 0, "{m}");
    assert_eq!(sum("xtdb_auth_failures_total"), 8, "{m}");
    assert_eq!(sum("xtdb_auth_forbidden_total"), 4, "{m}");
    // The same write with the right token is stored.
    let r = call(
        a,
        "POST",
        "/write?db=x",
        Some(&format!("Token {}", s.wo)),
        body,
    );
    assert_eq!(r.status, 204, "{}", r.text());
    let tags = call(
        a,
        "GET",
        "/api/v1/tags",
        Some(&format!("Token {}", s.ro)),
        "",
    );
    assert_eq!(tags.json().as_array().unwrap().len(), 2);
    s.h.stop().unwrap();
}

#[test]
fn influxdb_1x_credentials_basic_and_query_parameters() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), false);
    let a = s.http;
    let basic =
        |user: &str, pass: &str| format!("Basic {}", b64(format!("{user}:{pass}").as_bytes()));
    let w = |auth: Option<&str>, q: &str| {
        call(
            a,
            "POST",
            &format!("/write?db=x{q}"),
            auth,
            "m v=1 1700000000000000000\n",
        )
        .status
    };
    assert_eq!(w(Some(&basic("plc", &s.wo)), ""), 204);
    assert_eq!(
        w(Some(&basic("", &s.wo)), ""),
        204,
        "no user name: the token decides"
    );
    assert_eq!(
        w(Some(&basic("grafana", &s.wo)), ""),
        401,
        "another token's name"
    );
    assert_eq!(w(Some(&basic("plc", "xtdb_wrong")), ""), 401);
    assert_eq!(
        w(Some(&basic("plc", &s.ro)), ""),
        401,
        "user does not match the token"
    );
    assert_eq!(w(Some(&basic("grafana", &s.ro)), ""), 403);
    assert_eq!(w(None, &format!("&u=plc&p={}", s.wo)), 204);
    assert_eq!(w(None, &format!("&p={}", s.wo)), 204);
    assert_eq!(w(None, &format!("&u=rw&p={}", s.wo)), 401);
    assert_eq!(w(None, "&u=plc"), 401, "a user without a password");
    let r = call(
        a,
        "POST",
        "/write?db=x",
        Some(&basic("plc", &s.ro)),
        "m v=1\n",
    );
    assert!(
        r.json()["error"].as_str().unwrap().contains("user"),
        "{}",
        r.text()
    );
    s.h.stop().unwrap();
}

#[test]
fn metrics_open_opens_metrics_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path(), true);
    let a = s.http;
    let m = call(a, "GET", "/metrics", None, "");
    assert_eq!(m.status, 200);
    assert!(m.text().contains("xtdb_auth_failures_total"));
    assert_eq!(call(a, "GET", "/api/v1/tags", None, "").status, 401);
    assert_eq!(call(a, "POST", "/write", None, LINE).status, 401);
    s.h.stop().unwrap();
}
