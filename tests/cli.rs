//! The `xtdb` binary's contract with scripts and the load generator:
//! `--help` shows defaults and env vars, `serve` prints its configuration
//! and a `ready` line with the bound address, `stats` prints a table, and
//! SIGTERM stops the server cleanly with exit status 0.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_xtdb");

#[test]
fn serve_help_shows_defaults_and_env_vars() {
    let out = Command::new(BIN)
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for want in [
        "XTDB_DATA_DIR",
        "XTDB_CPUS",
        "127.0.0.1:7070",
        "always",
        "XTDB_MEMORY_BUDGET",
        "XTDB_MAX_CONNECTIONS",
        "XTDB_FRAME_TIMEOUT",
        "XTDB_MAX_FUTURE_SECS",
    ] {
        assert!(help.contains(want), "help lacks {want}:\n{help}");
    }
}

#[test]
fn serve_prints_ready_answers_stats_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--cpus",
            "0,1",
            "--listen",
            "127.0.0.1:0",
            "--sync",
            "none",
            "--max-future-secs",
            "off",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .env("XTDB_IO_MEMORY", "1048576")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    let addr = loop {
        let line = lines.next().expect("server exited before ready").unwrap();
        printed.push(line.clone());
        if line.contains("ready") {
            break line.rsplit(' ').next().unwrap().to_string();
        }
    };
    let printed = printed.join("\n");
    assert!(
        printed.contains("shards:        2 on cpus [0, 1]"),
        "{printed}"
    );
    assert!(printed.contains("sync:          none"), "{printed}");
    assert!(printed.contains("no future limit"), "{printed}");

    let out = Command::new(BIN)
        .args(["stats", "--addr", &addr])
        .output()
        .unwrap();
    assert!(out.status.success());
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("shards: 2"), "{table}");
    assert!(table.contains("ack_p99_us"), "{table}");
    assert!(table.lines().nth(1).unwrap().contains("shard1"), "{table}");

    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(status.success(), "exit {status:?}; output {rest:?}");
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:?}");
}

#[test]
fn serve_refuses_a_changed_shard_count_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("shard-count"), "2\n").unwrap();
    let err = serve_fails(&["--cpus", "1", "--listen", "127.0.0.1:0"], dir.path());
    assert!(err.contains("holds 2 shard(s) but 1 CPU(s)"), "{err}");
}

#[test]
fn serve_rejects_a_bad_timestamp_window_option() {
    let dir = tempfile::tempdir().unwrap();
    let err = serve_fails(&["--cpus", "1", "--max-future-secs", "soon"], dir.path());
    assert!(err.contains("expected seconds or `off`"), "{err}");
}

/// Starts `xtdb serve --cpus 1 --listen 127.0.0.1:0 --data-dir DIR` in
/// `cwd`; returns the child and its native address once it is ready.
fn serve_ready(dir: &std::path::Path, cwd: &std::path::Path) -> (std::process::Child, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--cpus", "1", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(dir)
        .current_dir(cwd)
        .env("XTDB_IO_MEMORY", "1048576")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("server exited before ready").unwrap();
        if line.contains("ready") {
            break line.rsplit(' ').next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || lines.for_each(drop));
    (child, addr)
}

fn sigterm(child: &mut std::process::Child) {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_second_server_on_the_same_data_dir_is_refused_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, _) = serve_ready(dir.path(), dir.path());
    let err = serve_fails(&["--cpus", "1", "--listen", "127.0.0.1:0"], dir.path());
    assert!(err.contains("in use by another xtdb server"), "{err}");
    assert!(err.contains(&format!("pid {}", first.id())), "{err}");
    sigterm(&mut first);
    // The lock went with the process: the next start takes it.
    let (mut again, _) = serve_ready(dir.path(), dir.path());
    sigterm(&mut again);
}

#[test]
fn a_relative_data_dir_is_served_written_and_reopened() {
    let cwd = tempfile::tempdir().unwrap();
    let rel = std::path::Path::new("data/rel");
    for _ in 0..2 {
        let (mut child, addr) = serve_ready(rel, cwd.path());
        let out = Command::new(env!("CARGO_BIN_EXE_xtdb-load"))
            .args(["write", "--addr", &addr, "--tags", "100", "--batch", "100"])
            .args(["--conns", "1", "--duration", "300ms", "--cpus", "0", "-q"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        sigterm(&mut child);
    }
    assert!(cwd.path().join("data/rel/shard-0/wal").is_dir());
}

/// Runs `xtdb serve ARGS --data-dir DIR`, expects it to fail, returns stderr.
fn serve_fails(args: &[&str], dir: &std::path::Path) -> String {
    let out = Command::new(BIN)
        .arg("serve")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap();
    assert!(!out.status.success(), "serve {args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}
