//! Authentication on the native protocol (`--auth on`): every frame type
//! without credentials, with a wrong, a revoked, a read-only and a
//! write-only token gets the right error code, the connection is closed
//! or kept as the protocol says, and nothing of a refused write is stored.
//! Revocation reaches open connections; a failing peer is slowed down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod net_common;

use std::io::Write;
use std::time::{Duration, Instant};

use net_common::*;
use xtdb::net::protocol::{self, code};
use xtdb::net::{Client, ClientError, ClientOptions};
use xtdb::runtime::auth::Slowdown;
use xtdb::server::{AuthSetting, ServerHandle};
use xtdb::storage::tokens::Perms;
use xtdb::Point;

struct Tokens {
    rw: String,
    ro: String,
    wo: String,
    old: String,
}

/// A two-shard server with auth on and four tokens ("old" revoked).
fn setup(dir: &std::path::Path) -> (ServerHandle, Tokens) {
    let t = make_tokens(
        dir,
        &[
            ("rw", Perms::READ.with(Perms::WRITE)),
            ("grafana", Perms::READ),
            ("plc", Perms::WRITE),
            ("old", Perms::READ.with(Perms::WRITE)),
        ],
    );
    revoke_token(dir, "old");
    let h = server_with(dir, &[0, 1], |c| {
        c.auth = AuthSetting::On;
        c.auth_slowdown = Slowdown {
            free: 1e9,
            ..Slowdown::default()
        };
    })
    .unwrap();
    let [rw, ro, wo, old] = <[String; 4]>::try_from(t).unwrap();
    (h, Tokens { rw, ro, wo, old })
}

fn opts(token: &str) -> ClientOptions {
    ClientOptions {
        token: Some(token.to_string()),
        tls: None,
    }
}

fn pts(tag: u32) -> Vec<Point> {
    (0..10)
        .map(|i| Point::new(tag + i, 1_000 + i as i64, i as f64, 192))
        .collect()
}

fn remote_code(r: Result<impl std::fmt::Debug, ClientError>) -> (u16, String) {
    match r {
        Err(ClientError::Remote { code, message }) => (code, message),
        other => panic!("expected an error frame, got {other:?}"),
    }
}

/// Every request frame type, as raw bytes.
fn frames() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let mut b = Vec::new();
    protocol::encode_write(&mut b, 1, &pts(10));
    out.push(("write", b));
    let mut b = Vec::new();
    protocol::encode_range(&mut b, 2, 10, i64::MIN, i64::MAX);
    out.push(("range", b));
    let mut b = Vec::new();
    protocol::encode_range_pieces(&mut b, 7, 10, i64::MIN, i64::MAX);
    out.push(("range pieces", b));
    let mut b = Vec::new();
    protocol::encode_count_bound(&mut b, 6, 10, i64::MIN, i64::MAX);
    out.push(("count bound", b));
    let mut b = Vec::new();
    protocol::encode_latest(&mut b, 3, &[10, 11]);
    out.push(("latest", b));
    let mut b = Vec::new();
    protocol::encode_stats(&mut b, 4);
    out.push(("stats", b));
    let mut b = Vec::new();
    protocol::encode_stats(&mut b, 5);
    b[5] = 0x55;
    out.push(("unknown type", b));
    out
}

#[test]
fn every_frame_without_a_valid_token_is_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let (h, t) = setup(dir.path());
    let addr = h.local_addr().to_string();
    // No AUTH first: error 20, closed, payload never looked at.
    for (what, bytes) in frames() {
        let mut s = connect(&addr);
        s.write_all(&bytes).unwrap();
        let (c, m) = error_code(answer(&mut s));
        assert_eq!(c, code::AUTH_REQUIRED, "{what}: {m}");
        assert!(m.contains("AUTH"), "{what}: {m}");
        assert_closed(&mut s);
    }
    // A wrong, a revoked and an empty-looking token: error 21, closed, and
    // the frames after it are never run.
    for (what, token, want) in [
        ("wrong", "xtdb_0000", "invalid token"),
        ("revoked", t.old.as_str(), "revoked"),
        ("other case", &t.rw.to_uppercase(), "invalid token"),
    ] {
        let mut s = connect(&addr);
        let mut b = Vec::new();
        protocol::encode_auth(&mut b, 7, token);
        protocol::encode_write(&mut b, 8, &pts(10));
        s.write_all(&b).unwrap();
        let (c, m) = error_code(answer(&mut s));
        assert_eq!(c, code::AUTH_FAILED, "{what}: {m}");
        assert!(m.contains(want), "{what}: {m}");
        assert_closed(&mut s);
    }
    // An AUTH frame whose CRC is wrong, and one claiming a huge payload
    // that never comes (answered on the header alone).
    let mut s = connect(&addr);
    let mut b = Vec::new();
    protocol::encode_auth(&mut b, 9, &t.rw);
    *b.last_mut().unwrap() ^= 1;
    s.write_all(&b).unwrap();
    assert_eq!(error_code(answer(&mut s)).0, code::AUTH_FAILED);
    assert_closed(&mut s);
    let mut s = connect(&addr);
    let mut b = Vec::new();
    protocol::encode_auth(&mut b, 9, "x");
    b[16..20].copy_from_slice(&(1u32 << 20).to_le_bytes());
    s.write_all(&b[..protocol::HEADER_LEN]).unwrap();
    let (c, m) = error_code(answer(&mut s));
    assert_eq!(c, code::AUTH_FAILED, "{m}");
    assert!(m.contains("1048576"), "{m}");
    assert_closed(&mut s);
    // The client sees the same.
    let e = client({
        let (a, o) = (addr.clone(), opts(&t.old));
        move || async move { Client::connect_with(&a, &o).await.err() }
    });
    let e = e.expect("a revoked token connects");
    assert!(e.closes_connection(), "{e}");
    assert!(matches!(e, ClientError::Remote { code: 21, .. }), "{e}");

    // Nothing of any of it was stored.
    let (got, stats) = client({
        let (a, o) = (addr.clone(), opts(&t.rw));
        move || async move {
            let mut c = Client::connect_with(&a, &o).await.unwrap();
            let got = c.range(10, i64::MIN, i64::MAX).await.unwrap();
            (got, c.stats().await.unwrap())
        }
    });
    assert!(got.is_empty(), "{got:?}");
    assert_eq!(stat(&stats, "total.points_written"), 0);
    h.stop().unwrap();
}

#[test]
fn permissions_are_checked_per_request_and_keep_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (h, t) = setup(dir.path());
    let addr = h.local_addr().to_string();
    client(move || async move {
        // Read-only: writing is refused (22, connection kept), reading works.
        let mut ro = Client::connect_with(&addr, &opts(&t.ro)).await.unwrap();
        let (c, m) = remote_code(ro.write(&pts(100)).await);
        assert_eq!(c, code::FORBIDDEN, "{m}");
        assert!(m.contains("grafana") && m.contains("write"), "{m}");
        assert!(!ClientError::Remote {
            code: c,
            message: m
        }
        .closes_connection());
        assert!(ro.range(100, i64::MIN, i64::MAX).await.unwrap().is_empty());
        assert_eq!(ro.count_bound(100, i64::MIN, i64::MAX).await.unwrap().0, 0);
        assert_eq!(ro.latest(&[100]).await.unwrap(), vec![None]);
        assert_eq!(stat(&ro.stats().await.unwrap(), "total.points_written"), 0);

        // Write-only: every read is refused, writing works.
        let mut wo = Client::connect_with(&addr, &opts(&t.wo)).await.unwrap();
        assert_eq!(remote_code(wo.range(100, 0, 10).await).0, code::FORBIDDEN);
        assert_eq!(
            remote_code(wo.range_points(100, 0, 10).await).0,
            code::FORBIDDEN
        );
        assert_eq!(
            remote_code(wo.count_bound(100, 0, 10).await).0,
            code::FORBIDDEN
        );
        assert_eq!(remote_code(wo.latest(&[100]).await).0, code::FORBIDDEN);
        assert_eq!(remote_code(wo.stats().await).0, code::FORBIDDEN);
        assert_eq!(wo.write(&pts(100)).await.unwrap(), 10);

        // What the writer wrote is what the reader sees.
        let got = ro.range(105, i64::MIN, i64::MAX).await.unwrap();
        assert_eq!(got, vec![Point::new(105, 1_005, 5.0, 192)]);

        // The server says who a connection is.
        let mut c = Client::connect(&addr).await.unwrap();
        let who = c.authenticate(&t.rw).await.unwrap();
        assert_eq!(
            (who.name.as_str(), who.perms),
            ("rw", Perms::READ.with(Perms::WRITE))
        );
        assert_eq!(c.write(&pts(200)).await.unwrap(), 10);
    });
    h.stop().unwrap();
}

/// Each shard re-reads the token file on its own: waits until new
/// connections with `token` are refused on every shard (8 in a row, which
/// `SO_REUSEPORT` spreads over both).
async fn eventually_refused(addr: &str, token: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut refused = 0;
    while refused < 8 {
        match Client::connect_with(addr, &opts(token)).await {
            Ok(_) => refused = 0,
            Err(e) => {
                assert!(matches!(e, ClientError::Remote { code: 21, .. }), "{e}");
                refused += 1;
            }
        }
        assert!(Instant::now() < deadline, "token still accepted after 10 s");
    }
}

#[test]
fn a_revoked_token_stops_working_on_open_connections() {
    let dir = tempfile::tempdir().unwrap();
    let (h, t) = setup(dir.path());
    let addr = h.local_addr().to_string();
    let late = make_tokens(dir.path(), &[("late", Perms::WRITE), ("hup", Perms::WRITE)]);
    let d = dir.path().to_path_buf();
    let (d2, rw_token) = (d.clone(), t.rw.clone());
    let a = addr.clone();
    let h = std::sync::Arc::new(h);
    let h2 = std::sync::Arc::clone(&h);
    let took = client(move || async move {
        // Tokens created while the server runs are accepted once it has
        // re-read the file (it checks every 500 ms).
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut c = loop {
            match Client::connect_with(&a, &opts(&late[0])).await {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    assert!(matches!(e, ClientError::Remote { code: 21, .. }), "{e}");
                    glommio::timer::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("a new token was not picked up in 10 s: {e}"),
            }
        };
        assert_eq!(c.write(&pts(300)).await.unwrap(), 10);
        // Revoked in the file while the connection is open: its next
        // request gets 21 and the connection is closed.
        std::thread::spawn({
            let d = d.clone();
            move || revoke_token(&d, "late")
        })
        .join()
        .unwrap();
        let revoked_at = Instant::now();
        let took = loop {
            match c.write(&pts(300)).await {
                Ok(_) if Instant::now() < revoked_at + Duration::from_secs(10) => {
                    glommio::timer::sleep(Duration::from_millis(20)).await;
                }
                Ok(_) => panic!("revocation not seen in 10 s"),
                Err(e) => {
                    assert!(matches!(e, ClientError::Remote { code: 21, .. }), "{e}");
                    assert!(e.to_string().contains("late"), "{e}");
                    break revoked_at.elapsed();
                }
            }
        };
        eventually_refused(&a, &late[0]).await;
        // SIGHUP (ServerHandle::reload) re-reads at once.
        let mut c = Client::connect_with(&a, &opts(&late[1])).await.unwrap();
        std::thread::spawn(move || revoke_token(&d, "hup"))
            .join()
            .unwrap();
        h2.reload();
        let deadline = Instant::now() + Duration::from_secs(10);
        while c.write(&pts(300)).await.is_ok() {
            assert!(Instant::now() < deadline, "reload did not revoke");
            glommio::timer::sleep(Duration::from_millis(5)).await;
        }
        // A token file that disappears leaves no token valid.
        let mut rw = Client::connect_with(&a, &opts(&rw_token)).await.unwrap();
        std::fs::remove_file(xtdb::storage::tokens::path_in(&d2)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while rw.stats().await.is_ok() {
            assert!(
                Instant::now() < deadline,
                "a removed token file kept tokens valid"
            );
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
        eventually_refused(&a, &rw_token).await;
        took
    });
    // Reported, not asserted (timing assertions are not allowed in tests).
    eprintln!("revocation reached an open connection after {took:?}");
    std::sync::Arc::try_unwrap(h).ok().unwrap().stop().unwrap();
}

#[test]
fn with_auth_off_an_auth_frame_gets_every_permission() {
    let dir = tempfile::tempdir().unwrap();
    let h = server(dir.path());
    let addr = h.local_addr().to_string();
    let who = client(move || async move {
        let mut c = Client::connect(&addr).await.unwrap();
        let who = c.authenticate("anything").await.unwrap();
        assert_eq!(c.write(&pts(1)).await.unwrap(), 10);
        who
    });
    assert_eq!((who.name.as_str(), who.perms), ("", Perms::ALL));
    h.stop().unwrap();
}

#[test]
fn a_peer_that_keeps_failing_is_answered_late_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let t = make_tokens(dir.path(), &[("reader", Perms::READ)]);
    let h = server_with(dir.path(), &[0], |c| {
        c.auth = AuthSetting::On;
        c.http = Some("127.0.0.1:0".into());
        c.auth_slowdown = Slowdown {
            free: 2.0,
            per_sec: 0.001,
            step: Duration::from_millis(20),
            max: Duration::from_millis(100),
        };
    })
    .unwrap();
    let addr = h.local_addr().to_string();
    client(move || async move {
        for _ in 0..6 {
            let e = Client::connect_with(&addr, &opts("xtdb_wrong"))
                .await
                .err()
                .unwrap();
            assert!(matches!(e, ClientError::Remote { code: 21, .. }), "{e}");
        }
        // A good token from the same address is not slowed or counted.
        Client::connect_with(&addr, &opts(&t[0]))
            .await
            .unwrap()
            .stats()
            .await
            .unwrap();
    });
    // HTTP failures count towards the same peer's score.
    let m = net_common::http::req(
        h.http_addr().unwrap(),
        "GET",
        "/metrics",
        &[("Authorization", "Bearer xtdb_wrong")],
        b"",
    );
    assert_eq!(m.status, 401);
    let t2 = make_tokens(dir.path(), &[("metrics", Perms::READ)]);
    h.reload();
    let deadline = Instant::now() + Duration::from_secs(10);
    // Until the reload has happened the new token is refused too: count it.
    let mut early = 0;
    let text = loop {
        let m = net_common::http::req(
            h.http_addr().unwrap(),
            "GET",
            "/metrics",
            &[("Authorization", &format!("Token {}", t2[0]))],
            b"",
        );
        if m.status == 200 {
            break m.text();
        }
        early += 1;
        assert!(Instant::now() < deadline, "{}", m.text());
        std::thread::sleep(Duration::from_millis(20));
    };
    let value = |name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}{{")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} not in\n{text}"))
    };
    assert_eq!(value("xtdb_auth_failures_total"), 7 + early, "{text}");
    assert_eq!(value("xtdb_auth_delayed_total"), 5 + early, "{text}");
    assert!(value("xtdb_auth_token_reloads_total") >= 1);
    h.stop().unwrap();
}
