//! `verify` against a real server (`xtdb serve`, started as a process from
//! the binary cargo built for this test): a clean write verifies, and a
//! deliberately missing and a deliberately changed point are both caught.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use xtdb::load::acklog::{AckLog, AckLogWriter};
use xtdb::load::conn::NetConn;
use xtdb::load::gen::Group;
use xtdb::load::server::{self, ServerProcess, ServerSpec};
use xtdb::load::verify::{self, VerifyConfig};
use xtdb::load::write::{self, WriteConfig};

fn start(dir: &Path) -> (ServerProcess, String) {
    let port = server::free_port().expect("free port");
    let addr = format!("127.0.0.1:{port}");
    let spec = ServerSpec {
        bin: env!("CARGO_BIN_EXE_xtdb").into(),
        data_dir: dir.join("data"),
        listen: addr.clone(),
        sync: "none".into(),
        pin_cpu: None,
        log: dir.join("server.log"),
        args: Vec::new(),
    };
    let srv = ServerProcess::start(&spec, Duration::from_secs(60)).expect("server starts");
    (srv, addr)
}

fn verify_log(addr: &str, log: &Path) -> verify::VerifyReport {
    verify::run::<NetConn>(&VerifyConfig {
        client: Default::default(),
        addr: addr.into(),
        ack_log: log.into(),
        conns: 2,
        chunk: 1000,
        cpu: 0,
    })
    .expect("verify runs")
}

#[test]
fn verify_detects_missing_and_changed_points() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (srv, addr) = start(dir.path());
    let log = dir.path().join("acks.log");
    let mut w = WriteConfig::new(&addr);
    w.tags = 20;
    w.batch = 50;
    w.conns = 2;
    w.max_ticks = Some(100);
    w.duration = Duration::from_secs(60);
    w.ack_log = Some(log.clone());
    w.progress = false;
    let r = write::run::<NetConn>(&w).expect("write runs");
    assert_eq!(r.points_acked, 2_000, "{:?}", r.errors);

    let clean = verify_log(&addr, &log);
    assert!(clean.ok(), "{}", clean.text());
    assert_eq!(clean.points_checked, 2_000);

    // Take the first group from the log, then claim (a) one more point far
    // past what was written: missing; (b) the first point under another seed:
    // its stored value no longer matches.
    let parsed = AckLog::read(&log).expect("parse");
    let g = parsed.groups[0];
    let mut lw = AckLogWriter::open(&log).expect("append");
    let ghost = Group {
        t0: g.t0 + 1_000_000_000_000,
        n_tags: 1,
        ..g
    };
    lw.group("test.missing", &ghost).expect("group");
    lw.batch("test.missing", 0, 1).expect("batch");
    let changed = Group {
        seed: g.seed + 1,
        n_tags: 1,
        ..g
    };
    lw.group("test.changed", &changed).expect("group");
    lw.batch("test.changed", 0, 1).expect("batch");
    drop(lw);

    let bad = verify_log(&addr, &log);
    assert_eq!(bad.missing, 1, "{}", bad.text());
    assert_eq!(bad.mismatched, 1, "{}", bad.text());
    assert_eq!(bad.points_checked, 2_001);
    assert!(!bad.ok());

    // The binary says so with its exit status.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xtdb-load"))
        .args(["verify", "--addr", &addr, "--ack-log"])
        .arg(&log)
        .arg("--json")
        .output()
        .expect("run xtdb-load verify");
    assert_eq!(out.status.code(), Some(1));
    let last = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or("")
        .to_string();
    let v: serde_json::Value = serde_json::from_str(&last).expect("json");
    assert_eq!(v["missing"], 1);
    assert_eq!(v["mismatched"], 1);

    let (clean_exit, _) = srv.stop(Duration::from_secs(30));
    assert!(clean_exit, "server did not exit on SIGTERM");
}

fn run_json(args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_xtdb-load"))
        .args(args)
        .output()
        .expect("run xtdb-load");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let last = stdout.lines().last().unwrap_or("").to_string();
    let v = serde_json::from_str(&last).unwrap_or_else(|e| {
        panic!(
            "last line not JSON ({e}): {stdout:?} / {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), v)
}

#[test]
fn write_and_query_json_against_a_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (srv, addr) = start(dir.path());
    let (code, v) = run_json(&[
        "write", "--addr", &addr, "--tags", "50", "--ticks", "20", "--batch", "100", "--json",
    ]);
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["points_acked"], 1000, "{v}");
    assert!(v["points_per_sec"].as_f64().unwrap_or(0.0) > 0.0, "{v}");
    for k in ["p50", "p90", "p99", "p999", "max"] {
        assert!(
            v["latency_us"][k].as_u64().is_some(),
            "latency_us.{k} in {v}"
        );
    }
    assert_eq!(v["errors"], serde_json::json!({}));

    let (code, v) = run_json(&[
        "query",
        "--addr",
        &addr,
        "--prepare",
        "--blocks",
        "1,3",
        "--tags",
        "1",
        "--iterations",
        "3",
        "--latest-iterations",
        "3",
        "--json",
    ]);
    assert_eq!(code, Some(0), "{v}");
    let ranges = v["range"].as_array().expect("range array");
    assert_eq!(ranges.len(), 2);
    for r in ranges {
        assert_eq!(r["complete"], true, "{r}");
        assert!(r["latency_us"]["p99"].as_u64().is_some(), "{r}");
    }
    assert_eq!(ranges[1]["expected_points"], 3 * 960);
    assert!(v["latest"]["latency_us"]["p50"].as_u64().is_some(), "{v}");

    // Aggregate modes over 2 h of 1 Hz data on 2 tags: 1-min means (120
    // windows per tag, 2 tags per request), interpolated every 10 min,
    // 50 plot pixels.
    for (mode, extra, rows) in [
        (
            "aggregate",
            vec!["--every", "1m", "--query-tags", "2"],
            240u64,
        ),
        ("interpolated", vec!["--every", "10m"], 12),
        ("plot", vec!["--pixels", "50"], 100),
    ] {
        let mut args = vec![
            "query",
            "--addr",
            &addr,
            "--mode",
            mode,
            "--span",
            "2h",
            "--tags",
            "2",
            "--tag-base",
            "2000000",
            "--iterations",
            "4",
            "--json",
        ];
        if mode == "aggregate" {
            args.push("--prepare");
        }
        args.extend(extra);
        let (code, v) = run_json(&args);
        assert_eq!(code, Some(0), "{mode}: {v}");
        let a = &v["aggregate"];
        assert_eq!(a["mode"], mode, "{v}");
        assert_eq!(a["errors"], 0, "{v}");
        assert!(a["latency_us"]["p50"].as_u64().is_some(), "{v}");
        if mode == "plot" {
            // Rising and falling data: at least first and last per pixel.
            assert!(a["min_rows"].as_u64().unwrap() >= rows, "{mode}: {v}");
        } else {
            assert_eq!(a["min_rows"], rows, "{mode}: {v}");
            assert_eq!(a["rows"], rows, "{mode}: {v}");
        }
    }
    srv.stop(Duration::from_secs(30));
}
