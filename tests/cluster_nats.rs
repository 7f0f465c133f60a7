//! Cluster mode on a real NATS JetStream cluster: three `nats-server`
//! (Debian package `nats-server`; `.ci/run` installs it; outside CI the
//! test is skipped with a message when it is missing) and two xtdb nodes.
//! - Writes through node A are acknowledged from the replicated log, and
//!   once applied read back exactly, through A and through B (each node
//!   answers for partitions it does not own by asking their owner).
//! - Node A's clean stop hands its partitions back; B takes them, replays
//!   them from the log, and every acknowledged point reads back the same.
//! - With NATS gone, a write is refused (`unavailable`), not acknowledged.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod net_common;
use net_common as common;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use xtdb::cluster::status;
use xtdb::cluster::ClusterConfig;
use xtdb::net::Client;
use xtdb::Point;

const PARTITIONS: u32 = 4;
const TAGS: u32 = 64;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Nats {
    children: Vec<Child>,
    urls: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Nats {
    /// Three nats-server in one JetStream cluster, or `None` (outside CI)
    /// when nats-server is not installed.
    fn start() -> Option<Nats> {
        if Command::new("nats-server")
            .arg("--version")
            .output()
            .is_err()
        {
            assert!(
                std::env::var_os("CI").is_none(),
                "nats-server is not installed (.ci/run installs it)"
            );
            println!("skipped: nats-server not installed (apt-get install nats-server)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let client: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let route: Vec<u16> = (0..3).map(|_| free_port()).collect();
        let routes = route
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut children = Vec::new();
        for i in 0..3 {
            let conf = dir.path().join(format!("n{i}.conf"));
            let store = dir.path().join(format!("n{i}"));
            std::fs::write(
                &conf,
                format!(
                    "server_name: n{i}\nlisten: 127.0.0.1:{}\njetstream {{ store_dir: \"{}\", max_memory_store: 32MB, max_file_store: 1GB }}\ncluster {{ name: t, listen: 127.0.0.1:{}, routes: [{routes}] }}\n",
                    client[i],
                    store.display(),
                    route[i]
                ),
            )
            .unwrap();
            children.push(
                Command::new("nats-server")
                    .arg("-c")
                    .arg(&conf)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            );
        }
        Some(Nats {
            children,
            urls: client
                .iter()
                .map(|p| format!("nats://127.0.0.1:{p}"))
                .collect(),
            _dir: dir,
        })
    }

    fn kill(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

fn node(
    dir: &std::path::Path,
    cpu: usize,
    id: &str,
    urls: &[String],
) -> xtdb::server::ServerHandle {
    common::server_with(dir, &[cpu], |c| {
        let mut cc = ClusterConfig::new(
            urls.to_vec(),
            id.into(),
            "127.0.0.1:0".into(),
            dir.join("cluster"),
        );
        cc.partitions = PARTITIONS;
        cc.lease = Duration::from_secs(2);
        c.cluster = Some(cc);
    })
    .expect("node starts")
}

/// Waits until every partition is owned by one of `owners`, each owner
/// holds one, and no partition lags; returns the status.
fn settle(urls: &[String], owners: &[&str]) -> status::Status {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let st = status::read(urls, PARTITIONS).unwrap_or_default();
        let ok = st.partitions.len() == PARTITIONS as usize
            && st.partitions.iter().all(|p| {
                p.lag_messages == 0 && p.owner.as_deref().is_some_and(|o| owners.contains(&o))
            })
            && owners
                .iter()
                .all(|o| st.partitions.iter().any(|p| p.owner.as_deref() == Some(o)));
        if ok {
            return st;
        }
        assert!(Instant::now() < until, "cluster did not settle: {st:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn points() -> Vec<Point> {
    (0..4000u32)
        .map(|i| {
            Point::new(
                i % TAGS,
                1_000_000 + i64::from(i / TAGS) * 1000,
                f64::from(i) * 0.5,
                192,
            )
        })
        .collect()
}

fn read_all(addr: String) -> Vec<Vec<Point>> {
    common::client(move || async move {
        let mut c = Client::connect(&addr).await.unwrap();
        let mut out = Vec::new();
        for t in 0..TAGS {
            out.push(c.range(t, 0, i64::MAX).await.unwrap());
        }
        out
    })
}

fn expected() -> Vec<Vec<Point>> {
    let mut by: Vec<Vec<Point>> = vec![Vec::new(); TAGS as usize];
    for p in points() {
        by[p.tag as usize].push(p);
    }
    by
}

#[test]
fn two_nodes_share_partitions_and_hand_them_over() {
    let Some(mut nats) = Nats::start() else {
        return;
    };
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = node(da.path(), 0, "a", &nats.urls);
    let b = node(db.path(), 1, "b", &nats.urls);
    settle(&nats.urls, &["a", "b"]);

    let addr_a = a.local_addr().to_string();
    let acked = common::client(move || async move {
        let mut c = Client::connect(&addr_a).await.unwrap();
        let mut n = 0;
        for chunk in points().chunks(500) {
            n += c.write(chunk).await.unwrap();
        }
        n
    });
    assert_eq!(acked, 4000);
    settle(&nats.urls, &["a", "b"]);
    let want = expected();
    assert_eq!(read_all(a.local_addr().to_string()), want, "through a");
    assert_eq!(read_all(b.local_addr().to_string()), want, "through b");

    // A clean stop hands a's partitions to b, which replays them from the log.
    a.stop().unwrap();
    settle(&nats.urls, &["b"]);
    assert_eq!(
        read_all(b.local_addr().to_string()),
        want,
        "through b alone"
    );

    // No log, no acknowledgement.
    nats.kill();
    let addr_b = b.local_addr().to_string();
    let refused = common::client(move || async move {
        let mut c = Client::connect(&addr_b).await.unwrap();
        c.write(&[Point::new(1, 5, 1.0, 192)]).await
    });
    match refused {
        Err(xtdb::net::ClientError::Remote { code, message }) => {
            assert_eq!(code, xtdb::net::protocol::code::UNAVAILABLE, "{message}");
        }
        other => panic!("a write without NATS was not refused: {other:?}"),
    }
    b.stop().unwrap();
}
