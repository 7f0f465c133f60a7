//! Cluster mode on a real NATS JetStream cluster: three `nats-server`
//! (Debian package `nats-server`; `.ci/run` installs it; outside CI the
//! test is skipped with a message when it is missing) and two xtdb nodes.
//! - Writes through node A are acknowledged from the replicated log, and
//!   once applied read back exactly, through A and through B (each node
//!   answers for partitions it does not own by asking their owner), also
//!   over HTTP's raw range (the count bound is asked of the owner too).
//! - Node A's clean stop hands its partitions back; B takes them, replays
//!   them from the log, and every acknowledged point reads back the same,
//!   also when asked at once (queries wait for the takeover and replay).
//! - Line protocol through either node creates series in the cluster's
//!   one catalog: both nodes give them the same ids, and InfluxQL through
//!   either answers the same (also after the hand-over).
//! - A third node joining takes its share warm: it applied the partitions
//!   ahead of owning them (none is replayed from its start as owner), and
//!   answers the same.
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
        c.http = Some("127.0.0.1:0".into());
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

const HOSTS: usize = 20;
const PER_HOST: usize = 10;

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Writes `PER_HOST` points of `cpu,host=hJ value=…` for every host, the
/// even points through `a` and the odd ones through `b` (so both nodes
/// meet every series key at about the same time, b in reverse order); returns the
/// expected mean per host.
fn write_lines(a: std::net::SocketAddr, b: std::net::SocketAddr, t0: i64) -> Vec<f64> {
    let mut means = Vec::new();
    let mut bodies = [String::new(), String::new()];
    for h in 0..HOSTS {
        let mut sum = 0.0;
        for i in 0..PER_HOST {
            let v = (h * 100 + i) as f64 * 0.25;
            sum += v;
            bodies[i % 2].push_str(&format!("cpu,host=h{h:02} value={v} {}\n", t0 + i as i64));
        }
        means.push(sum / PER_HOST as f64);
    }
    // b meets the keys in the reverse order: ids given per node would
    // differ between the nodes.
    let [ba, bb] = bodies;
    let bb: String = bb.lines().rev().map(|l| format!("{l}\n")).collect();
    let ta = std::thread::spawn(move || {
        common::http::req(a, "POST", "/write?db=x&precision=s", &[], ba.as_bytes())
    });
    let tb = std::thread::spawn(move || {
        common::http::req(b, "POST", "/write?db=x&precision=s", &[], bb.as_bytes())
    });
    for (n, t) in [ta, tb].into_iter().enumerate() {
        let r = t.join().unwrap();
        assert_eq!(
            r.status,
            204,
            "line protocol through node {n}: {}",
            r.text()
        );
    }
    means
}

fn influxql(addr: std::net::SocketAddr, q: &str) -> serde_json::Value {
    let enc = xtdb::load::export::url_encode(q);
    let r = common::http::req(addr, "GET", &format!("/query?db=x&q={enc}"), &[], b"");
    assert_eq!(r.status, 200, "{q}: {}", r.text());
    r.json()
}

/// `mean(value)` per host through `addr`.
fn means_through(addr: std::net::SocketAddr, t0: i64) -> Vec<f64> {
    let j = influxql(
        addr,
        &format!(
            "SELECT mean(value) FROM cpu WHERE time >= {}s AND time < {}s GROUP BY host",
            t0,
            t0 + PER_HOST as i64
        ),
    );
    let series = j["results"][0]["series"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    series
        .iter()
        .map(|s| s["values"][0][1].as_f64().unwrap_or(f64::NAN))
        .collect()
}

/// 20 times: one new point for each of 20 series of measurement `ryw`
/// through `w` (with `params`), then at once their count through `r`;
/// answers how many reads missed a point.
fn read_after_write(
    w: std::net::SocketAddr,
    r: std::net::SocketAddr,
    t0: i64,
    params: &str,
) -> usize {
    let m = if params.is_empty() { "ryw" } else { "ryw_all" };
    let mut missed = 0;
    for k in 0..20i64 {
        let body: String = (0..20)
            .map(|h| format!("{m},host=h{h:02} value={k} {}\n", t0 + k))
            .collect();
        let a = common::http::req(
            w,
            "POST",
            &format!("/write?db=x&precision=s{params}"),
            &[],
            body.as_bytes(),
        );
        assert_eq!(a.status, 204, "{}", a.text());
        let j = influxql(
            r,
            &format!(
                "SELECT count(value) FROM {m} WHERE time >= {t0}s AND time < {}s",
                t0 + 100
            ),
        );
        let n = j["results"][0]["series"][0]["values"][0][1]
            .as_i64()
            .unwrap_or(0);
        if n != 20 * (k + 1) {
            missed += 1;
        }
    }
    missed
}

/// Waits (up to 10 s: shard 0 copies the cluster's figures once a
/// second) until `/metrics` has every line of `want`.
fn metrics_show(addr: std::net::SocketAddr, want: &[&str]) {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let text = common::http::req(addr, "GET", "/metrics", &[], b"").text();
        if want.iter().all(|w| text.lines().any(|l| l == *w)) {
            return;
        }
        assert!(Instant::now() < until, "/metrics lacks {want:?}:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn two_nodes_share_partitions_and_hand_them_over() {
    let Some(mut nats) = Nats::start() else {
        return;
    };
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Every node of this process logs its applied batches here.
    let apply_log = da.path().join("apply.log");
    std::env::set_var("XTDB_CLUSTER_APPLY_LOG", &apply_log);
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
    // The HTTP raw range of every tag through a: half of them live on b
    // (their count bound and points are asked of b).
    let ha = a.http_addr().unwrap();
    for (t, pts) in want.iter().enumerate() {
        let r = common::http::req(
            ha,
            "GET",
            &format!("/api/v1/range?id={t}&precision=u"),
            &[],
            b"",
        );
        assert_eq!(r.status, 200, "range of tag {t} through a: {}", r.text());
        let got: Vec<(i64, f64)> = r.json()["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["ts"].as_i64().unwrap(), p["value"].as_f64().unwrap()))
            .collect();
        let exp: Vec<(i64, f64)> = pts.iter().map(|p| (p.ts, p.value)).collect();
        assert_eq!(got, exp, "HTTP range of tag {t} through a");
    }

    // One catalog: series created through both nodes at once.
    let hb = b.http_addr().unwrap();
    let t0 = now_s() - 3600;
    let means = write_lines(ha, hb, t0);
    settle(&nats.urls, &["a", "b"]);
    let show = |addr| influxql(addr, "SHOW SERIES FROM cpu");
    assert_eq!(show(ha), show(hb), "the same series through a and b");
    let keys = show(ha)["results"][0]["series"][0]["values"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(keys, HOSTS, "{}", show(ha));
    assert_eq!(means_through(ha, t0), means, "InfluxQL through a");
    assert_eq!(means_through(hb, t0), means, "InfluxQL through b");
    // Read-your-writes: with consistency=all the write answers once the
    // owners applied it, so a read through the other node sees it at once.
    let (stale, stale_all) = (
        read_after_write(ha, hb, t0, ""),
        read_after_write(ha, hb, t0 + 100, "&consistency=all"),
    );
    assert_eq!(
        stale_all, 0,
        "reads missed points written with consistency=all"
    );
    println!(
        "immediate reads that missed points: {stale} of 20 without consistency=all, 0 with it"
    );
    let r = common::http::req(ha, "POST", "/write?db=x&consistency=most", &[], b"m v=1");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("consistency"), "{}", r.text());
    metrics_show(ha, &["xtdb_cluster_catalog_keys{shard=\"0\"} 60"]);
    metrics_show(hb, &["xtdb_cluster_owned_partitions{shard=\"0\"} 2"]);

    // A clean stop hands a's partitions to b, which replays them from the log.
    // Queries through b during the takeover wait for it (b answers a
    // partition only once it has applied its log): the answer is whole.
    a.stop().unwrap();
    assert_eq!(
        read_all(b.local_addr().to_string()),
        want,
        "through b during the takeover"
    );
    settle(&nats.urls, &["b"]);
    assert_eq!(
        read_all(b.local_addr().to_string()),
        want,
        "through b alone"
    );
    assert_eq!(means_through(hb, t0), means, "InfluxQL through b alone");

    // A new node joins: it applies the partitions b will hand it ahead of
    // owning them, so once it owns them it has nothing left to replay
    // (no batch it applies as owner starts at a stream's first message).
    let dc = tempfile::tempdir().unwrap();
    let c = node(dc.path(), 0, "c", &nats.urls);
    // Ready means its catalog copy holds every series the cluster had.
    let series = influxql(c.http_addr().unwrap(), "SHOW SERIES FROM cpu");
    let n = series["results"][0]["series"][0]["values"]
        .as_array()
        .map_or(0, Vec::len);
    assert_eq!(n, HOSTS, "series known to c once ready: {series}");
    settle(&nats.urls, &["b", "c"]);
    assert_eq!(read_all(c.local_addr().to_string()), want, "through c");
    assert_eq!(
        means_through(c.http_addr().unwrap(), t0),
        means,
        "InfluxQL through c"
    );
    let log = std::fs::read_to_string(&apply_log).unwrap_or_default();
    let cold: Vec<&str> = log
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            f.len() == 7 && f[0] == "c" && f[2] == "1"
        })
        .collect();
    assert!(cold.is_empty(), "c replayed partitions as owner: {cold:?}");
    c.stop().unwrap();

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
