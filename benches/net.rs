//! Network write path throughput: a server on CPUs 0 and 1 (two shards),
//! `CONNS` connections each writing batches of `BATCH` points over 100,000
//! tags for `SECS` seconds, one request outstanding per connection. Prints
//! acknowledged points/s and the server's ack-latency percentiles.
//!
//! `cargo bench --bench net` (env: CONNS, BATCH, SECS; SERVER_CPUS, a CPU
//! list, default `0,1`; CLIENT_CPU, pins the client, default unpinned;
//! AUTH=1: the server runs with `--auth on` and every connection sends an
//! AUTH frame with a read+write token first; TLS=1: both sides speak TLS,
//! with a CA and certificate made at start with rcgen). With
//! `SERVER_CPUS=1 CLIENT_CPU=0` the server has one shard on CPU 1 and the
//! client has CPU 0 to itself. With the default the client shares the cores
//! with the server: read that figure as a floor.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use xtdb::net::tls::{TlsClient, TlsFiles};
use xtdb::net::{Client, ClientOptions};
use xtdb::server::{start, AuthSetting, ServerConfig, Shutdown};
use xtdb::storage::tokens::{Perms, TokenStore};
use xtdb::Point;

/// CPU time (ns) the server's shard threads (`xtdb-shard*`) have used, from
/// `/proc/self/task/*/schedstat`: steadier than throughput on a shared
/// machine, where other jobs take turns on the cores.
fn shard_cpu_ns() -> u64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|c| c.starts_with("xtdb-shard"))
        })
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// A token made in `dir` on a throw-away executor.
fn make_token(dir: &std::path::Path) -> String {
    let d = dir.to_path_buf();
    glommio::LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .make()
        .expect("token executor")
        .run(async move {
            let mut s = TokenStore::open(&d).await.expect("token store");
            let t = s
                .create("bench", Perms::READ.with(Perms::WRITE), 0)
                .await
                .expect("create token");
            s.close().await.expect("close token store");
            t
        })
}

/// A CA and a server certificate for 127.0.0.1 in `dir`: (ca, cert, key).
fn make_pki(dir: &std::path::Path) -> (std::path::PathBuf, TlsFiles) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let files = TlsFiles {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(&files.cert, cert.pem()).unwrap();
    std::fs::write(&files.key, key.serialize_pem()).unwrap();
    (dir.join("ca.pem"), files)
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> xtdb::error::Result<()> {
    let conns = env("CONNS", 4);
    let batch = env("BATCH", 5000) as u32;
    let secs = env("SECS", 5);
    let dir = std::env::temp_dir().join(format!("xtdb-bench-net-{}", std::process::id()));
    let mut cfg = ServerConfig::new(&dir)?;
    let cpus = std::env::var("SERVER_CPUS").unwrap_or_else(|_| "0,1".into());
    cfg.cpus = xtdb::runtime::placement::parse_cpus(&cpus)?;
    let client_cpu = std::env::var("CLIENT_CPU")
        .ok()
        .and_then(|v| v.parse::<usize>().ok());
    cfg.listen = "127.0.0.1:0".into();
    cfg.io_memory = 2 << 20;
    let auth = env("AUTH", 0) == 1;
    let tls = env("TLS", 0) == 1;
    let mut opts = ClientOptions::default();
    if auth {
        cfg.auth = AuthSetting::On;
        opts.token = Some(make_token(&dir));
    }
    if tls {
        let (ca, files) = make_pki(&dir.join("pki"));
        cfg.tls = Some(files);
        opts.tls = Some(TlsClient::from_ca_file(&ca).map_err(xtdb::error::Error::Config)?);
    }
    let server = start(cfg, Shutdown::new())?;
    let addr = server.local_addr().to_string();
    let cpu0 = shard_cpu_ns();
    let (points, elapsed, stats) = std::thread::spawn(move || {
        let placement = match client_cpu {
            Some(cpu) => glommio::Placement::Fixed(cpu),
            None => glommio::Placement::Unbound,
        };
        glommio::LocalExecutorBuilder::new(placement)
            .io_memory(1 << 20)
            .make()
            .expect("client executor")
            .run(async move {
                let deadline = Instant::now() + Duration::from_secs(secs);
                let t0 = Instant::now();
                let tasks: Vec<_> = (0..conns)
                    .map(|c| {
                        let (addr, opts) = (addr.clone(), opts.clone());
                        glommio::spawn_local(async move {
                            let mut cl = Client::connect_with(&addr, &opts).await?;
                            let mut acked = 0u64;
                            let mut ts = 0i64;
                            while Instant::now() < deadline {
                                let pts: Vec<Point> = (0..batch)
                                    .map(|i| {
                                        let tag = (c as u32 * 7919 + i * 13 + ts as u32) % 100_000;
                                        Point::new(tag, ts + i as i64, i as f64, 192)
                                    })
                                    .collect();
                                ts += batch as i64;
                                acked += cl.write(&pts).await?;
                            }
                            xtdb::error::Result::Ok(acked)
                        })
                    })
                    .collect();
                let mut total = 0;
                for t in tasks {
                    total += t.await?;
                }
                let elapsed = t0.elapsed();
                let stats = Client::connect_with(&addr, &opts).await?.stats().await?;
                xtdb::error::Result::Ok((total, elapsed, stats))
            })
    })
    .join()
    .expect("client thread")?;
    let cpu = shard_cpu_ns().saturating_sub(cpu0);
    server.stop()?;
    let _ = std::fs::remove_dir_all(&dir);
    let get = |n: &str| stats.iter().find(|(k, _)| k == n).map_or(0, |(_, v)| *v);
    println!(
        "net write (auth {}, tls {}): {conns} conns x {batch} points/batch, {:.1} s: {:.0} points/s acknowledged; \
         server ack latency p50 {} us, p99 {} us, p999 {} us, max {} us; shard0/shard1 points {}/{}; \
         server CPU {:.1} ns/point",
        if auth { "on" } else { "off" },
        if tls { "on" } else { "off" },
        elapsed.as_secs_f64(),
        points as f64 / elapsed.as_secs_f64(),
        get("total.ack_p50_us"),
        get("total.ack_p99_us"),
        get("total.ack_p999_us"),
        get("total.ack_max_us"),
        get("shard0.points_written"),
        get("shard1.points_written"),
        cpu as f64 / get("total.points_written").max(1) as f64,
    );
    Ok(())
}
