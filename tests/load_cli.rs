//! The xtdb-load binary: `--json` prints one JSON object as the last line of
//! stdout carrying the documented keys, and failures give a non-zero exit.
//! These run without a server (nothing listens on the address), so they pin
//! the output contract, not performance.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use serde_json::Value;

const DEAD_ADDR: &str = "127.0.0.1:9"; // discard port: nothing listens here

fn run(args: &[&str]) -> (Option<i32>, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_xtdb-load"))
        .args(args)
        .output()
        .expect("run xtdb-load");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let last = stdout.lines().last().unwrap_or("").to_string();
    let v: Value = serde_json::from_str(&last)
        .unwrap_or_else(|e| panic!("last stdout line is not JSON ({e}): {stdout:?} / {stderr}"));
    (out.status.code(), v, stderr)
}

#[test]
fn write_json_has_the_documented_keys() {
    let (code, v, _) = run(&[
        "write",
        "--addr",
        DEAD_ADDR,
        "--tags",
        "10",
        "--rate",
        "100",
        "--duration",
        "1s",
        "--json",
    ]);
    for k in ["points_acked", "points_per_sec", "latency_us", "errors"] {
        assert!(v.get(k).is_some(), "missing key {k} in {v}");
    }
    for k in ["p50", "p90", "p99", "p999", "max"] {
        assert!(
            v["latency_us"].get(k).is_some(),
            "missing latency_us.{k} in {v}"
        );
    }
    assert_eq!(v["points_acked"], 0);
    assert!(v["error_count"].as_u64().unwrap_or(0) > 0, "{v}");
    assert_eq!(code, Some(1), "no point acknowledged must fail");
}

#[test]
fn verify_json_has_the_documented_keys_and_fails_when_unchecked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("acks.log");
    {
        let mut w = xtdb::load::acklog::AckLogWriter::open(&log).expect("open");
        let g = xtdb::load::gen::Group {
            seed: 1,
            tag_lo: 0,
            n_tags: 2,
            t0: 1_000_000,
            period_us: 1_000,
            signal: xtdb::load::gen::Signal::Noise,
        };
        w.group("t.0", &g).expect("group");
        w.batch("t.0", 0, 4).expect("batch");
    }
    let (code, v, _) = run(&[
        "verify",
        "--addr",
        DEAD_ADDR,
        "--ack-log",
        log.to_str().expect("utf8 path"),
        "--json",
    ]);
    for k in ["points_checked", "missing", "mismatched"] {
        assert!(v.get(k).is_some(), "missing key {k} in {v}");
    }
    assert_eq!(v["ok"], false);
    assert_ne!(code, Some(0));
}

#[test]
fn unknown_scenario_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_xtdb-load"))
        .args(["scenario", "nope", "--addr", DEAD_ADDR])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown scenario") && err.contains("tags-100k"),
        "{err}"
    );
}

#[test]
fn summarize_prints_rows_and_na_for_missing_fields() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("tags.json");
    std::fs::write(
        &f,
        "progress line\n{\"scenario\":\"tags-100k\",\"points_per_sec\":100000.0,\"rate_kept\":true,\"latency_us\":{\"p50\":900,\"p99\":2500,\"max\":4000},\"error_count\":0,\"ok\":true}\n",
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_xtdb-load"))
        .arg("summarize")
        .arg(&f)
        .output()
        .expect("run");
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("| tags-100k: points/s acknowledged | 100,000 |"),
        "{s}"
    );
    assert!(s.contains("| tags-100k: target rate kept | yes |"), "{s}");
    assert!(s.contains("| tags-100k: server RSS | n/a |"), "{s}");
}
