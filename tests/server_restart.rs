//! Acknowledged points survive a clean stop and restart on the same data
//! directory, and a restart with a different shard count is refused.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod net_common;
use net_common as common;

use xtdb::net::Client;
use xtdb::Point;

fn points() -> Vec<Point> {
    (0..2_000u32)
        .map(|i| Point::new(i % 37, 1_000 + i as i64, i as f64 * 0.5, 192))
        .collect()
}

#[test]
fn acknowledged_points_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::server(dir.path());
    let addr = server.local_addr().to_string();
    let n = common::client(move || async move {
        let mut c = Client::connect(&addr).await.unwrap();
        c.write(&points()).await.unwrap()
    });
    assert_eq!(n, 2_000);
    server.stop().unwrap();

    let server = common::server(dir.path());
    let addr = server.local_addr().to_string();
    let (ranges, latest) = common::client(move || async move {
        let mut c = Client::connect(&addr).await.unwrap();
        let mut ranges = Vec::new();
        for tag in 0..37 {
            ranges.push(c.range(tag, i64::MIN, i64::MAX).await.unwrap());
        }
        // Reversed: answers must come back in request order, not in the
        // order the (concurrent) block reads finish.
        let tags: Vec<u32> = (0..38).rev().collect();
        let mut latest = c.latest(&tags).await.unwrap();
        latest.reverse();
        (ranges, latest)
    });
    let all = points();
    for (tag, got) in ranges.iter().enumerate() {
        let want: Vec<Point> = all
            .iter()
            .filter(|p| p.tag == tag as u32)
            .copied()
            .collect();
        assert_eq!(got, &want, "tag {tag}");
        assert_eq!(latest[tag], want.last().copied());
    }
    assert_eq!(latest[37], None);
    server.stop().unwrap();
}

#[test]
fn restart_with_another_shard_count_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    common::server(dir.path()).stop().unwrap();
    let err = match common::server_on(dir.path(), &[1]) {
        Ok(_) => panic!("a 2-shard data dir was served with 1 shard"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("holds 2 shard(s) but 1 CPU(s)"), "{err}");
    // The original count still works.
    common::server(dir.path()).stop().unwrap();
}

#[test]
fn stop_with_idle_connections_closes_them_and_returns() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let server = common::server(dir.path());
    let addr = server.local_addr();
    let mut idle: Vec<std::net::TcpStream> = (0..4)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    // A client that stalls inside a frame's payload does not hold up the stop.
    {
        use std::io::Write;
        let mut f = Vec::new();
        xtdb::net::protocol::encode_write(&mut f, 1, &points());
        idle[0].write_all(&f[..100]).unwrap();
    }
    // A write acknowledged just before the stop.
    let a = addr.to_string();
    let n = common::client(move || async move {
        let mut c = Client::connect(&a).await.unwrap();
        c.write(&points()).await.unwrap()
    });
    assert_eq!(n, 2_000);
    server.stop().unwrap();
    for s in &mut idle {
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).unwrap(), 0);
    }
}

#[test]
fn a_second_server_on_a_busy_port_is_refused() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut c = xtdb::server::ServerConfig::new(d1.path()).unwrap();
    c.cpus = vec![0, 1];
    c.listen = listen.clone();
    c.io_memory = 1 << 20;
    let first = xtdb::server::start(c.clone(), xtdb::server::Shutdown::new()).unwrap();
    assert_eq!(first.local_addr().port(), port);
    c.data_dir = d2.path().into();
    let err = match xtdb::server::start(c, xtdb::server::Shutdown::new()) {
        Ok(_) => panic!("second server bound a busy port"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("another server"), "{err}");
    first.stop().unwrap();
}

#[test]
fn an_unusable_listen_address_fails_start_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = xtdb::server::ServerConfig::new(dir.path()).unwrap();
    c.cpus = vec![0, 1];
    c.listen = "192.0.2.1:0".into(); // TEST-NET-1: not a local address
    c.io_memory = 1 << 20;
    // Not loopback: auth would be on by default and refuse first (no token).
    c.auth = xtdb::server::AuthSetting::Off;
    c.insecure = true;
    let err = match xtdb::server::start(c, xtdb::server::Shutdown::new()) {
        Ok(_) => panic!("bound a non-local address"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("listen on 192.0.2.1:0"), "{err}");
}
