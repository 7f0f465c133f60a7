//! Shutdown under load: writers busy on both shards, shutdown requested;
//! the server drains, closes its shards and returns, and every writer ends
//! with an error instead of hanging.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod net_common;
use net_common as common;

use std::time::Duration;

use xtdb::net::Client;
use xtdb::Point;

#[test]
fn shutdown_under_load_drains_and_returns() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = common::server(dir.path());
    let addr = server.local_addr().to_string();
    let writers = std::thread::spawn(move || {
        common::client(move || async move {
            let tasks: Vec<_> = (0..3u32)
                .map(|c| {
                    let addr = addr.clone();
                    glommio::spawn_local(async move {
                        let mut cl = Client::connect(&addr).await.unwrap();
                        let mut acked = 0u64;
                        for b in 0u32.. {
                            let pts: Vec<Point> = (0..1000u32)
                                .map(|i| Point::new(i % 97, (b * 1000 + i) as i64, c as f64, 192))
                                .collect();
                            match cl.write(&pts).await {
                                Ok(n) => acked += n,
                                Err(_) => break,
                            }
                        }
                        acked
                    })
                })
                .collect();
            let mut acked = Vec::new();
            for t in tasks {
                acked.push(t.await);
            }
            acked
        })
    });
    std::thread::sleep(Duration::from_millis(300));
    server.shutdown();
    server.join().unwrap();
    let acked = writers.join().unwrap();
    assert!(acked.iter().all(|&n| n > 0 && n % 1000 == 0), "{acked:?}");
}

#[test]
fn a_client_that_stops_reading_does_not_hold_up_shutdown() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut server = common::server(dir.path());
    let addr = server.local_addr().to_string();
    let a = addr.clone();
    common::client(move || async move {
        let mut c = Client::connect(&a).await.unwrap();
        let pts: Vec<Point> = (0..100_000).map(|i| Point::new(3, i, 1.0, 192)).collect();
        c.write(&pts).await.unwrap();
    });
    // Pipeline range queries of ~2 MB answers and never read them: the
    // server's writes block once the socket buffers fill.
    let mut s = std::net::TcpStream::connect(&addr).unwrap();
    let mut f = Vec::new();
    for id in 0..64 {
        xtdb::net::protocol::encode_range(&mut f, id, 3, 0, i64::MAX);
    }
    s.write_all(&f).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let t = std::time::Instant::now();
    server.shutdown();
    server.join().unwrap();
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    drop(s);
}
