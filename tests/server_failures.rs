//! What a client is told when storage fails: a fenced shard (a failed
//! `fdatasync`), a damaged block and a closing shard each reach a native
//! client with their own error code and an HTTP client with their own
//! status and `kind`, so a client can tell "restart the server" from "try
//! again in a second" from "this data is damaged".
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod net_common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use net_common::http::req;
use xtdb::http::api::failure_resp;
use xtdb::net::protocol::{code, failure_code};
use xtdb::net::{Client, ClientError};
use xtdb::runtime::command::Failure;
use xtdb::server::{ServerConfig, ServerHandle, ShardHook};
use xtdb::storage::fault::FaultPlan;
use xtdb::Point;

fn server(dir: &Path, tweak: impl FnOnce(&mut ServerConfig)) -> ServerHandle {
    net_common::server_with(dir, &[0], |c| {
        c.http = Some("127.0.0.1:0".into());
        tweak(c);
    })
    .expect("server starts")
}

#[test]
fn a_fenced_shard_is_told_apart_on_both_protocols() {
    let dir = tempfile::tempdir().unwrap();
    let arm = Arc::new(AtomicBool::new(false));
    let armed = Arc::clone(&arm);
    // On the shard's thread: a fault plan under its files, and a task that
    // makes the next fdatasync fail with EIO once the test says so.
    let hook = ShardHook(Arc::new(move |_shard| {
        let plan = FaultPlan::new();
        plan.install();
        let armed = Arc::clone(&armed);
        glommio::spawn_local(async move {
            while !armed.load(Ordering::SeqCst) {
                glommio::timer::sleep(Duration::from_millis(5)).await;
            }
            plan.eio_on_sync(1);
        })
        .detach();
    }));
    let srv = server(dir.path(), |c| c.shard_hook = Some(hook));
    let addr = srv.local_addr().to_string();
    let http = srv.http_addr().unwrap();
    let a = addr.clone();
    net_common::client(move || async move {
        let mut c = Client::connect(&a).await.unwrap();
        assert_eq!(c.write(&[Point::new(1, 10, 1.0, 192)]).await.unwrap(), 1);
        // The WAL's spare segment is ready, so the failing sync is the
        // WAL's own and not the spare's (whose failure is only a warning).
        for _ in 0..1000 {
            let s = c.stats().await.unwrap();
            if s.iter().any(|(k, v)| k == "total.wal_free_bytes" && *v > 0) {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
    });
    arm.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(50));
    let a = addr.clone();
    let err = net_common::client(move || async move {
        let mut c = Client::connect(&a).await.unwrap();
        let first = c.write(&[Point::new(1, 20, 2.0, 192)]).await.unwrap_err();
        // Never retried-then-acknowledged: the next write is refused too,
        // and the connection stays usable (104 does not close it).
        let second = c.write(&[Point::new(1, 30, 3.0, 192)]).await.unwrap_err();
        (first, second)
    });
    for e in [err.0, err.1] {
        match e {
            ClientError::Remote { code: c, message } => {
                assert_eq!(c, code::FENCED, "{message}");
                assert!(message.contains("fenced"), "{message}");
            }
            other => panic!("expected a fenced error frame, got {other}"),
        }
    }
    let r = req(http, "POST", "/write", &[], b"m v=1 1000");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["kind"], "fenced", "{}", r.text());
    assert!(
        !r.headers.to_ascii_lowercase().contains("retry-after"),
        "a fenced shard needs a restart, not a retry: {}",
        r.headers
    );
    drop(srv);
}

/// Flips a byte inside every block of every chunk file under `dir`.
fn damage_blocks(dir: &Path) -> usize {
    let mut n = 0;
    for shard in std::fs::read_dir(dir).unwrap().flatten() {
        let chunks = shard.path().join("chunks");
        let Ok(files) = std::fs::read_dir(&chunks) else {
            continue;
        };
        for f in files.flatten() {
            let mut bytes = std::fs::read(f.path()).unwrap();
            let mut at = 0;
            while at + 4096 <= bytes.len() {
                if &bytes[at..at + 4] == b"XBLK" {
                    bytes[at + 200] ^= 0x5a;
                    n += 1;
                }
                at += 4096;
            }
            std::fs::write(f.path(), &bytes).unwrap();
        }
    }
    n
}

#[test]
fn a_damaged_block_is_told_apart_on_both_protocols() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path(), |_| {});
    let addr = srv.local_addr().to_string();
    let http = srv.http_addr().unwrap();
    // Noisy values fill blocks quickly; full blocks are flushed.
    let a = addr.clone();
    net_common::client(move || async move {
        let mut c = Client::connect(&a).await.unwrap();
        let pts: Vec<Point> = (0..20_000i64)
            .map(|i| Point::new(7, 1_000_000 + i * 1000, (i as f64 * 0.37).sin() * 1e3, 192))
            .collect();
        for b in pts.chunks(5000) {
            c.write(b).await.unwrap();
        }
        for _ in 0..500 {
            let s = c.stats().await.unwrap();
            let written = s
                .iter()
                .find(|(k, _)| k == "total.blocks_written")
                .map(|x| x.1);
            if written.unwrap_or(0) > 0 {
                return;
            }
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
        panic!("no block was flushed");
    });
    assert!(damage_blocks(dir.path()) > 0);
    let a = addr.clone();
    let err = net_common::client(move || async move {
        let mut c = Client::connect(&a).await.unwrap();
        c.range(7, 0, i64::MAX).await.unwrap_err()
    });
    match err {
        ClientError::Remote { code: c, message } => {
            assert_eq!(c, code::CORRUPT, "{message}");
            assert!(
                message.contains("chunk-") && message.contains("offset"),
                "{message}"
            );
        }
        other => panic!("expected a corruption error frame, got {other}"),
    }
    let r = req(http, "GET", "/api/v1/range?id=7", &[], b"");
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(r.json()["kind"], "corrupt", "{}", r.text());
    drop(srv);
}

#[test]
fn every_failure_kind_has_its_own_code_status_and_name() {
    let kinds = [
        Failure::InvalidInput { reason: "x".into() },
        Failure::OutOfWindow {
            index: 0,
            tag: 1,
            reason: "x".into(),
        },
        Failure::OverLimit { reason: "x".into() },
        Failure::Fenced {
            shard: 0,
            reason: "x".into(),
        },
        Failure::Closed { shard: 0 },
        Failure::ShuttingDown,
        Failure::Corrupt {
            path: "chunk".into(),
            offset: 1,
            reason: "x".into(),
        },
        Failure::Io {
            shard: 0,
            reason: "x".into(),
            no_space: false,
        },
        Failure::Io {
            shard: 0,
            reason: "x".into(),
            no_space: true,
        },
        Failure::Internal { reason: "x".into() },
    ];
    let mut names: Vec<&str> = kinds.iter().map(Failure::kind).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), kinds.len(), "{names:?}");
    let native = |f: &Failure| failure_code(f);
    assert_eq!(native(&kinds[3]), code::FENCED);
    assert_eq!(native(&kinds[4]), code::SHUTTING_DOWN);
    assert_eq!(native(&kinds[5]), code::SHUTTING_DOWN);
    assert_eq!(native(&kinds[6]), code::CORRUPT);
    assert_eq!(native(&kinds[7]), code::STORAGE);
    assert!(code::closes_connection(code::SHUTTING_DOWN));
    assert!(!code::closes_connection(code::FENCED) && !code::closes_connection(code::CORRUPT));
    let status = |f: &Failure| failure_resp(f).status().as_u16();
    assert_eq!(
        kinds.iter().map(status).collect::<Vec<_>>(),
        [400, 400, 400, 503, 503, 503, 500, 500, 507, 500]
    );
    // Closing asks for a retry; fenced does not.
    let retry = |f: &Failure| failure_resp(f).headers().contains_key("retry-after");
    assert!(retry(&kinds[4]) && retry(&kinds[5]) && !retry(&kinds[3]));
}
