//! Backup of a running server, end to end: `xtdb-load write` (with its ack
//! log) runs while `xtdb backup` (the binary) backs the server up; the
//! backup passes `xtdb backup verify`, opens with `xtdb serve`'s code as a
//! data dir, and `xtdb-load verify` finds every point acknowledged before
//! the backup began (0 missing, 0 changed). A backup needs the admin
//! permission.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod net_common;

use std::process::Command;
use std::time::{Duration, Instant};

use net_common as common;
use xtdb::load::acklog::AckLog;
use xtdb::load::conn::NetConn;
use xtdb::load::verify::{self, VerifyConfig};
use xtdb::load::write::{self, WriteConfig};
use xtdb::net::{Client, ClientError, ClientOptions};
use xtdb::server::AuthSetting;
use xtdb::storage::tokens::Perms;

fn verify_against(addr: &str, log: AckLog) -> verify::VerifyReport {
    let cfg = VerifyConfig {
        client: Default::default(),
        addr: addr.into(),
        ack_log: "unused".into(),
        conns: 2,
        chunk: 5_000,
        cpu: 0,
    };
    verify::run_log::<NetConn>(&cfg, log).expect("verify runs")
}

fn xtdb(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_xtdb"))
        .args(args)
        .output()
        .expect("run xtdb")
}

/// Writes 500 tags × 1,000 points as fast as acknowledged (enough WAL that
/// a backup paced at 1 MiB/s per shard runs for seconds), with `client`'s
/// credentials and an optional ack log.
fn write_500k(addr: &str, client: ClientOptions, ack_log: Option<std::path::PathBuf>) {
    let mut w = WriteConfig::new(addr);
    w.client = client;
    w.tags = 500;
    w.batch = 5_000;
    w.conns = 2;
    w.rate = 0;
    w.max_ticks = Some(1_000);
    w.duration = Duration::from_secs(60);
    w.progress = false;
    w.ack_log = ack_log;
    assert_eq!(
        write::run::<NetConn>(&w).expect("write runs").points_acked,
        500_000
    );
}

/// Waits until a backup holds the lock of target `to` (it names its pid
/// there).
fn wait_for_target_lock(to: &std::path::Path) {
    let lock = to.join(xtdb::storage::backup::TARGET_LOCK);
    let t0 = Instant::now();
    while !std::fs::read_to_string(&lock).is_ok_and(|s| s.contains("pid")) {
        assert!(t0.elapsed() < Duration::from_secs(30), "no backup began");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn backup_under_load_restores_every_point_acknowledged_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let to = tmp.path().join("backup");
    let server = common::server(&data);
    let addr = server.local_addr().to_string();
    let log = tmp.path().join("acks.log");

    let mut w = WriteConfig::new(&addr);
    w.tags = 200;
    w.batch = 200;
    w.conns = 2;
    w.rate = 40_000;
    w.duration = Duration::from_secs(3);
    w.ack_log = Some(log.clone());
    w.progress = false;
    let writer = std::thread::spawn(move || write::run::<NetConn>(&w).expect("write runs"));

    // Wait for acknowledgements, then keep what the ack log holds at the
    // moment the backup starts: every point acknowledged before it.
    let t0 = Instant::now();
    while AckLog::read(&log).map_or(0, |l| l.points()) < 10_000 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no acknowledgements"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = std::fs::read(&log).unwrap();
    let out = xtdb(&[
        "backup",
        "--addr",
        &addr,
        "--to",
        to.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json summary");
    assert!(summary["files"].as_u64().unwrap() >= 4, "{summary}");
    let report = writer.join().unwrap();
    assert!(report.points_acked > 0);
    server.stop().unwrap();

    let out = xtdb(&["backup", "verify", to.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("is complete"));

    let restored = common::server(&to);
    let log = AckLog::parse(&before);
    let n = log.points();
    let r = verify_against(&restored.local_addr().to_string(), log);
    assert!(r.ok(), "{}", r.text());
    assert_eq!((r.missing, r.mismatched), (0, 0));
    assert_eq!(r.points_checked, n);
    restored.stop().unwrap();
}

#[test]
fn a_backup_needs_admin_and_a_bad_target_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let tokens = common::make_tokens(
        &data,
        &[
            ("reader", Perms::READ),
            ("boss", Perms::READ.with(Perms::ADMIN)),
        ],
    );
    let server = common::server_with(&data, &[0, 1], |c| c.auth = AuthSetting::On).unwrap();
    let addr = server.local_addr().to_string();
    let to = tmp.path().join("b").to_string_lossy().into_owned();
    let (a, t) = (addr.clone(), tokens.clone());
    let (denied, relative, ok) = common::client(move || async move {
        let reader = ClientOptions {
            token: Some(t[0].clone()),
            ..Default::default()
        };
        let mut c = Client::connect_with(&a, &reader).await.unwrap();
        let denied = c.backup(&to, true, 0).await.unwrap_err();
        let boss = ClientOptions {
            token: Some(t[1].clone()),
            ..Default::default()
        };
        let mut c = Client::connect_with(&a, &boss).await.unwrap();
        let relative = c.backup("relative/dir", true, 0).await.unwrap_err();
        let ok = c.backup(&to, true, 0).await.unwrap();
        (denied, relative, ok)
    });
    assert!(
        matches!(denied, ClientError::Remote { code: 22, .. }),
        "{denied}"
    );
    assert!(
        matches!(&relative, ClientError::Remote { code: 11, message, .. } if message.contains("not an absolute path")),
        "{relative}"
    );
    // The token file went into the backup.
    assert!(ok.tally.files() >= 5, "{ok:?}");
    server.stop().unwrap();
    xtdb::storage::backup::verify(&tmp.path().join("b")).unwrap();
    assert!(tmp.path().join("b").join("tokens.xtauth").exists());

    // A directory with a partial backup is refused by the CLI, by name.
    std::fs::remove_file(tmp.path().join("b").join("MANIFEST")).unwrap();
    let out = xtdb(&["backup", "verify", &tmp.path().join("b").to_string_lossy()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not an xtdb backup"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two `xtdb backup` runs into one target at once: the second is refused
/// at once naming the target (the first holds its lock), the first
/// completes and passes `xtdb backup verify`.
#[test]
fn a_second_concurrent_backup_into_one_target_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let to = tmp.path().join("backup");
    let server = common::server(&data);
    let addr = server.local_addr().to_string();
    write_500k(&addr, ClientOptions::default(), None);

    let spawn = |rate: &str| {
        Command::new(env!("CARGO_BIN_EXE_xtdb"))
            .args(["backup", "--addr", &addr, "--to", to.to_str().unwrap()])
            .args(["--rate", rate, "--json"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run xtdb backup")
    };
    let first = spawn("1");
    wait_for_target_lock(&to);
    let second = spawn("0").wait_with_output().unwrap();
    let first = first.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "the second backup ran: {err}");
    assert!(
        err.contains(&format!("backup target {} is in use", to.display()))
            && err.contains("another backup into it is running"),
        "{err}"
    );
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&first.stdout).trim()).unwrap();
    assert!(
        summary["seconds"].as_f64().unwrap() > 1.0,
        "the first backup was still running when the second came: {summary}"
    );
    server.stop().unwrap();
    let out = xtdb(&["backup", "verify", to.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `POST /api/v1/backup` runs the native frame's backup: it needs `admin`
/// (401 without credentials, 403 with a read-only token), refuses bad
/// parameters with 400, is refused (400, by name) while `xtdb backup`
/// runs into the same target, and then updates that backup, answering the
/// JSON summary; the result passes `verify`.
#[test]
fn http_backup_needs_admin_shares_the_target_lock_and_answers_json() {
    use net_common::http::req;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let t = common::make_tokens(
        &data,
        &[
            ("reader", Perms::READ),
            ("boss", Perms::READ.with(Perms::WRITE).with(Perms::ADMIN)),
            ("ops", Perms::ADMIN),
        ],
    );
    let server = common::server_with(&data, &[0, 1], |c| {
        c.auth = AuthSetting::On;
        c.http = Some("127.0.0.1:0".into());
    })
    .unwrap();
    let addr = server.local_addr().to_string();
    let http = server.http_addr().unwrap();
    let client = ClientOptions {
        token: Some(t[1].clone()),
        ..Default::default()
    };
    write_500k(&addr, client, None);

    let to = tmp.path().join("backup");
    let to_s = to.to_str().unwrap().to_string();
    let post = |query: &str, token: Option<&str>| {
        let auth = token.map(|t| format!("Token {t}"));
        let headers: Vec<(&str, &str)> =
            auth.iter().map(|a| ("Authorization", a.as_str())).collect();
        req(
            http,
            "POST",
            &format!("/api/v1/backup?{query}"),
            &headers,
            b"",
        )
    };
    let q = format!("to={to_s}");
    assert_eq!(post(&q, None).status, 401);
    assert_eq!(post(&q, Some(&t[0])).status, 403);
    let ops = Some(t[2].as_str());
    for (query, want) in [
        ("rate=1", "to=DIR is required"),
        ("to=relative/dir", "not an absolute path"),
        (&format!("{q}&rate=-1") as &str, "rate must be"),
        (&format!("{q}&link=maybe"), "link must be true or false"),
    ] {
        let r = post(query, ops);
        assert_eq!(r.status, 400, "{query}: {}", r.text());
        assert!(r.text().contains(want), "{query}: {}", r.text());
    }
    assert!(!to.exists(), "a refused request creates nothing");
    let get = req(
        http,
        "GET",
        &format!("/api/v1/backup?{q}"),
        &[("Authorization", &format!("Token {}", t[2]))],
        b"",
    );
    assert_eq!(get.status, 405, "{}", get.text());

    // While `xtdb backup` (paced at 1 MiB/s per shard) runs into the target.
    let cli = Command::new(env!("CARGO_BIN_EXE_xtdb"))
        .args(["backup", "--addr", &addr, "--to", &to_s, "--rate", "1"])
        .args(["--token", &t[1], "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_target_lock(&to);
    let busy = post(&q, ops);
    let cli = cli.wait_with_output().unwrap();
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert_eq!(busy.status, 400, "{}", busy.text());
    assert!(
        busy.json()["error"]
            .as_str()
            .unwrap()
            .contains(&format!("backup target {to_s} is in use")),
        "{}",
        busy.text()
    );

    // Then over HTTP: an update of that backup, unpaced, with copies.
    let r = post(&format!("{q}&rate=0&link=false"), ops);
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["to"], to_s.as_str(), "{j}");
    assert!(j["files"].as_u64().unwrap() >= 5, "{j}");
    assert_eq!(j["files_linked"], 0, "{j}");
    assert_eq!(
        j["bytes"].as_u64().unwrap(),
        ["bytes_linked", "bytes_copied", "bytes_unchanged"]
            .iter()
            .map(|k| j[k].as_u64().unwrap())
            .sum::<u64>(),
        "{j}"
    );
    assert!(j["seconds"].as_f64().unwrap() > 0.0, "{j}");
    server.stop().unwrap();
    let v = xtdb::storage::backup::verify(&to).unwrap();
    assert_eq!(v.files, j["files"].as_u64().unwrap());
}

/// kill -9 of the server in the middle of a backup (the process that
/// writes the backup): the target is left without a manifest, which
/// `xtdb backup verify` refuses by name; the next backup into it, after a
/// restart, completes it, and it then verifies and restores every point
/// acknowledged before either backup began.
#[test]
fn a_backup_cut_short_by_kill_9_is_refused_then_completed_by_the_next() {
    use xtdb::load::server::{self, ServerProcess, ServerSpec};
    let tmp = tempfile::tempdir().unwrap();
    let to = tmp.path().join("backup");
    let log = tmp.path().join("acks.log");
    let spec = ServerSpec {
        bin: env!("CARGO_BIN_EXE_xtdb").into(),
        data_dir: tmp.path().join("data"),
        listen: format!("127.0.0.1:{}", server::free_port().unwrap()),
        sync: "always".into(),
        pin_cpu: None,
        log: tmp.path().join("server.log"),
        args: Vec::new(),
    };
    let srv = ServerProcess::start(&spec, Duration::from_secs(60)).expect("server starts");
    write_500k(&spec.listen, ClientOptions::default(), Some(log.clone()));

    // Paced at 1 MiB/s per shard, the backup runs for seconds: kill the
    // server once it holds the target's lock and has copied something.
    let mut backup = Command::new(env!("CARGO_BIN_EXE_xtdb"))
        .args([
            "backup",
            "--addr",
            &spec.listen,
            "--to",
            to.to_str().unwrap(),
        ])
        .args(["--rate", "1", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run xtdb backup");
    wait_for_target_lock(&to);
    std::thread::sleep(Duration::from_millis(700));
    srv.kill9();
    let cut = backup.wait().unwrap();
    assert!(!cut.success(), "the backup finished before the kill");
    let out = xtdb(&["backup", "verify", to.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a cut-short backup verified");
    assert!(err.contains("did not finish"), "{err}");

    // Restart, back up again into the same target: complete.
    let srv = ServerProcess::start(&spec, Duration::from_secs(60)).expect("server restarts");
    let out = xtdb(&[
        "backup",
        "--addr",
        &spec.listen,
        "--to",
        to.to_str().unwrap(),
        "--rate",
        "0",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (clean, _) = srv.stop(Duration::from_secs(30));
    assert!(clean);
    let out = xtdb(&["backup", "verify", to.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let back = ServerSpec {
        data_dir: to.clone(),
        listen: format!("127.0.0.1:{}", server::free_port().unwrap()),
        log: tmp.path().join("restored.log"),
        ..spec
    };
    let restored = ServerProcess::start(&back, Duration::from_secs(60)).expect("backup opens");
    let log = AckLog::read(&log).unwrap();
    let n = log.points();
    let r = verify_against(&back.listen, log);
    assert!(r.ok(), "{}", r.text());
    assert_eq!((r.missing, r.mismatched, r.points_checked), (0, 0, n));
    restored.stop(Duration::from_secs(30));
}
