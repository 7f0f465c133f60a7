//! Shutdown under load: writers busy on both shards, shutdown requested;
//! the server drains, closes its shards and returns, and every writer ends
//! with an error instead of hanging.

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
