//! TLS on both listeners (`--tls-cert`, `--tls-key`) with a CA made at test
//! time: the native client over TLS with a token, `xtdb-load` over HTTPS
//! and native TLS, curl with the test CA; plain clients on a TLS port and
//! TLS clients on a plain port fail cleanly; certificates reload on SIGHUP
//! (`ServerHandle::reload`), and a broken file on reload keeps the old one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod net_common;

use std::process::Command;
use std::time::{Duration, Instant};

use net_common::pki;
use net_common::*;
use xtdb::load::{influx::InfluxHttpConn, write};
use xtdb::net::tls::{TlsClient, TlsFiles};
use xtdb::net::{Client, ClientOptions};
use xtdb::server::{AuthSetting, ServerHandle};
use xtdb::storage::tokens::Perms;
use xtdb::Point;

fn tls_server(dir: &std::path::Path, p: &pki::Pki) -> (ServerHandle, String) {
    let t = make_tokens(dir, &[("rw", Perms::READ.with(Perms::WRITE))]);
    let h = server_with(dir, &[0, 1], |c| {
        c.auth = AuthSetting::On;
        c.http = Some("127.0.0.1:0".into());
        c.tls = Some(TlsFiles {
            cert: p.cert.clone(),
            key: p.key.clone(),
        });
    })
    .unwrap();
    (h, t.into_iter().next().unwrap())
}

fn opts(ca: &std::path::Path, token: &str) -> ClientOptions {
    ClientOptions {
        token: Some(token.to_string()),
        tls: Some(TlsClient::from_ca_file(ca).unwrap()),
    }
}

#[test]
fn native_client_over_tls_with_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki::make(dir.path(), "one");
    let other = pki::make(dir.path(), "other");
    let (h, token) = tls_server(&dir.path().join("data"), &p);
    let addr = h.local_addr().to_string();
    let (ok, other_ca, ca) = (opts(&p.ca, &token), opts(&other.ca, &token), p.ca.clone());
    client(move || async move {
        let mut c = Client::connect_with(&addr, &ok).await.unwrap();
        let pts: Vec<Point> = (0..100)
            .map(|i| Point::new(i, 1_000, i as f64, 192))
            .collect();
        assert_eq!(c.write(&pts).await.unwrap(), 100);
        assert_eq!(c.range(7, 0, i64::MAX).await.unwrap(), vec![pts[7]]);
        // "localhost" is in the certificate too.
        let mut named = ok.clone();
        named.tls.as_mut().unwrap().server_name = Some("localhost".into());
        Client::connect_with(&addr, &named).await.unwrap();
        // A name the certificate does not have, a CA that did not sign it,
        // and a plain client: refused.
        named.tls.as_mut().unwrap().server_name = Some("historian.plant".into());
        let e = Client::connect_with(&addr, &named).await.err().unwrap();
        assert!(e.to_string().contains("TLS handshake"), "{e}");
        let e = Client::connect_with(&addr, &other_ca).await.err().unwrap();
        assert!(e.to_string().contains("TLS handshake"), "{e}");
        let mut plain = Client::connect(&addr).await.unwrap();
        assert!(plain.authenticate(&token).await.is_err());
        // TLS towards a plain port fails too.
        let plain_dir = tempfile::tempdir().unwrap();
        let tp = xtdb::server::start(
            {
                let mut c = xtdb::server::ServerConfig::new(plain_dir.path()).unwrap();
                c.cpus = vec![1];
                c.listen = "127.0.0.1:0".into();
                c.io_memory = 1 << 20;
                c
            },
            xtdb::server::Shutdown::new(),
        )
        .unwrap();
        let e = Client::connect_with(&tp.local_addr().to_string(), &opts(&ca, "x"))
            .await
            .err()
            .unwrap();
        assert!(e.to_string().contains("TLS handshake"), "{e}");
        std::thread::spawn(move || tp.stop().unwrap())
            .join()
            .unwrap();
    });
    h.stop().unwrap();
}

#[test]
fn xtdb_load_over_https_and_native_tls() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki::make(dir.path(), "one");
    let (h, token) = tls_server(&dir.path().join("data"), &p);
    let http = h.http_addr().unwrap();
    let mut w = write::WriteConfig::new(&format!(
        "https://{http}/api/v2/write?bucket=b&precision=ns"
    ));
    w.client = opts(&p.ca, &token);
    w.tags = 100;
    w.batch = 100;
    w.max_ticks = Some(5);
    w.duration = Duration::from_secs(60);
    w.progress = false;
    let r = write::run::<InfluxHttpConn>(&w).unwrap();
    assert_eq!(r.points_acked, 500, "{}", r.text());
    let mut w2 = w.clone();
    w2.addr = h.local_addr().to_string();
    let r = write::run::<Client>(&w2).unwrap();
    assert_eq!(r.points_acked, 500, "{}", r.text());
    // Without the token: every batch refused, nothing acknowledged.
    let mut w3 = w.clone();
    w3.client.token = None;
    w3.duration = Duration::from_millis(500);
    let r = write::run::<InfluxHttpConn>(&w3).unwrap();
    assert_eq!(r.points_acked, 0);
    // The binary takes the same flags.
    let o = Command::new(env!("CARGO_BIN_EXE_xtdb-load"))
        .args(["write", "--protocol", "influx-http", "--target"])
        .arg(format!("https://{http}/api/v2/write?bucket=b"))
        .args([
            "--tags", "10", "--batch", "10", "--ticks", "3", "--quiet", "--json",
        ])
        .arg("--tls-ca")
        .arg(&p.ca)
        .env("XTDB_TOKEN", &token)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let j: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(j["points_acked"], 30, "{j}");
    h.stop().unwrap();
}

#[test]
fn curl_over_tls_with_the_test_ca() {
    if Command::new("curl").arg("--version").output().is_err() {
        eprintln!("SKIPPED: curl is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let p = pki::make(dir.path(), "one");
    let (h, token) = tls_server(&dir.path().join("data"), &p);
    let http = h.http_addr().unwrap();
    let curl = |args: &[&str]| {
        let o = Command::new("curl")
            .args(["-sS", "--max-time", "20", "--cacert"])
            .arg(&p.ca)
            .args(args)
            .output()
            .unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let base = format!("https://127.0.0.1:{}", http.port());
    let auth = format!("Authorization: Token {token}");
    let (st, out, err) = curl(&[
        "-w",
        "%{http_code}",
        "-H",
        &auth,
        "--data-binary",
        "boiler,unit=b1 temp=81.5 1700000000000000000",
        &format!("{base}/api/v2/write?bucket=b"),
    ]);
    assert_eq!((st, out.as_str()), (Some(0), "204"), "{err}");
    let (st, out, err) = curl(&[
        "-H",
        &auth,
        &format!("{base}/api/v1/range?tag=boiler%2Cunit%3Db1%20temp&precision=s"),
    ]);
    assert_eq!(st, Some(0), "{err}");
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(j["points"][0]["ts"], 1_700_000_000, "{j}");
    assert_eq!(j["points"][0]["value"], 81.5, "{j}");
    // "localhost" works as well; without a token: 401 over TLS.
    let local = format!("https://localhost:{}/api/v1/tags", http.port());
    let (st, out, err) = curl(&["-w", "%{http_code}", "-o", "/dev/null", &local]);
    assert_eq!((st, out.as_str()), (Some(0), "401"), "{err}");
    // Plain HTTP to the TLS port, and TLS without the CA: refused.
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .arg(format!("http://127.0.0.1:{}/ping", http.port()))
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .arg(format!("{base}/ping"))
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(60),
        "expected an untrusted-certificate error"
    );
    // The failed handshakes are counted.
    let (_, m, _) = curl(&["-H", &auth, &format!("{base}/metrics")]);
    let failed: u64 = m
        .lines()
        .filter(|l| l.starts_with("xtdb_tls_handshake_failures_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(failed >= 2, "{m}");
    h.stop().unwrap();
}

#[test]
fn certificates_reload_on_sighup_and_a_broken_file_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let one = pki::make(dir.path(), "one");
    let two = pki::make(dir.path(), "two");
    // The server reads the files named "live-*".
    let live = pki::Pki {
        ca: one.ca.clone(),
        cert: dir.path().join("live-cert.pem"),
        key: dir.path().join("live-key.pem"),
    };
    std::fs::copy(&one.cert, &live.cert).unwrap();
    std::fs::copy(&one.key, &live.key).unwrap();
    let (h, token) = tls_server(&dir.path().join("data"), &live);
    let addr = h.local_addr().to_string();
    let (o1, o2) = (opts(&one.ca, &token), opts(&two.ca, &token));
    let h = std::sync::Arc::new(h);
    let h2 = std::sync::Arc::clone(&h);
    let (live_cert, live_key, two_cert, two_key) = (
        live.cert.clone(),
        live.key.clone(),
        two.cert.clone(),
        two.key.clone(),
    );
    client(move || async move {
        let mut before = Client::connect_with(&addr, &o1).await.unwrap();
        assert!(Client::connect_with(&addr, &o2).await.is_err());
        std::fs::copy(&two_cert, &live_cert).unwrap();
        std::fs::copy(&two_key, &live_key).unwrap();
        h2.reload();
        // Every shard reloads on its own (within ~20 ms): wait for 8
        // handshakes in a row, which SO_REUSEPORT spreads over both.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut ok = 0;
        while ok < 8 {
            match Client::connect_with(&addr, &o2).await {
                Ok(_) => ok += 1,
                Err(_) => ok = 0,
            }
            assert!(
                Instant::now() < deadline,
                "new certificate not served after reload"
            );
        }
        // Open connections keep working; new ones need the new CA.
        before.stats().await.unwrap();
        for _ in 0..4 {
            assert!(Client::connect_with(&addr, &o1).await.is_err());
        }
        // A broken file on reload: the certificate in use stays.
        std::fs::write(&live_cert, "garbage").unwrap();
        h2.reload();
        glommio::timer::sleep(Duration::from_millis(200)).await;
        for _ in 0..4 {
            Client::connect_with(&addr, &o2).await.unwrap();
        }
    });
    std::sync::Arc::try_unwrap(h).ok().unwrap().stop().unwrap();
}
