//! `xtdb token create|list|revoke` and the token file: the token is the last
//! line of stdout and is never stored in clear; names are unique among live
//! tokens; concurrent commands do not corrupt the file; `xtdb serve`
//! refuses to start with auth on and no token (saying how to make one),
//! with auth off on a non-loopback address without `--insecure`, and on a
//! torn or damaged token file (naming it): it never starts open.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use xtdb::storage::tokens;

const BIN: &str = env!("CARGO_BIN_EXE_xtdb");

fn xtdb(args: &[&str], dir: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .env("XTDB_IO_MEMORY", "1048576")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn create(dir: &Path, name: &str, perms: &[&str]) -> String {
    let mut args = vec!["token", "create", "--name", name];
    args.extend_from_slice(perms);
    let o = xtdb(&args, dir);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    out.lines().last().unwrap().to_string()
}

/// `xtdb serve` with `args` on `dir`: must exit by itself (refusing).
fn serve_refuses(dir: &Path, args: &[&str]) -> String {
    let mut all = vec!["serve", "--cpus", "0", "--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let o = xtdb(&all, dir);
    assert!(!o.status.success(), "started: {}", text(&o));
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("ready"),
        "{}",
        text(&o)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn create_list_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let t = create(&d, "grafana", &["--read"]);
    assert!(t.starts_with("xtdb_") && t.len() == 69, "{t}");
    let t2 = create(&d, "plc-1", &["--write", "--read"]);
    assert_ne!(t, t2);
    let raw = std::fs::read(tokens::path_in(&d)).unwrap();
    let hex = t.trim_start_matches("xtdb_");
    assert!(
        !raw.windows(hex.len()).any(|w| w == hex.as_bytes()),
        "the token is stored in clear"
    );
    // Names are unique among live tokens; a token needs a permission.
    let o = xtdb(&["token", "create", "--name", "grafana", "--read"], &d);
    assert!(
        !o.status.success() && text(&o).contains("already named"),
        "{}",
        text(&o)
    );
    let o = xtdb(&["token", "create", "--name", "nothing"], &d);
    assert!(
        !o.status.success() && text(&o).contains("--read"),
        "{}",
        text(&o)
    );
    let o = xtdb(&["token", "create", "--name", "a:b", "--read"], &d);
    assert!(
        !o.status.success() && text(&o).contains("token name"),
        "{}",
        text(&o)
    );

    let o = xtdb(&["token", "list"], &d);
    let list = String::from_utf8_lossy(&o.stdout).into_owned();
    let rows: Vec<Vec<&str>> = list
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["name", "permissions", "created", "(UTC)", "status"]
    );
    assert_eq!(rows[1][..2], ["grafana", "read"]);
    assert_eq!(rows[2][..2], ["plc-1", "read,write"]);
    assert_eq!(rows[1][3], "active");

    let o = xtdb(&["token", "revoke", "grafana"], &d);
    assert!(o.status.success(), "{}", text(&o));
    let o = xtdb(&["token", "revoke", "grafana"], &d);
    assert!(
        !o.status.success() && text(&o).contains("no live token"),
        "{}",
        text(&o)
    );
    let o = xtdb(&["token", "list"], &d);
    let list = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        list.lines().nth(1).unwrap().contains("revoked 20"),
        "{list}"
    );
    // The name can be given to a new token once the old one is revoked.
    let t3 = create(&d, "grafana", &["--read", "--admin"]);
    let snap = tokens::read_blocking(&tokens::path_in(&d))
        .unwrap()
        .unwrap();
    assert_eq!(snap.set.live_count(), 2);
    assert!(snap.set.verify(&t).is_none());
    assert_eq!(
        snap.set.verify(&t3).unwrap().perms.to_string(),
        "read,admin"
    );
    assert_eq!(snap.set.verify(&t2).unwrap().name, "plc-1");
}

#[test]
fn concurrent_commands_keep_the_file_whole() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    create(&d, "first", &["--read"]);
    let children: Vec<_> = (0..6)
        .map(|i| {
            Command::new(BIN)
                .args(["token", "create", "--read", "--name", &format!("t{i}")])
                .arg("--data-dir")
                .arg(&d)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut made = Vec::new();
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        made.push(
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .last()
                .unwrap()
                .to_string(),
        );
    }
    let snap = tokens::read_blocking(&tokens::path_in(&d))
        .unwrap()
        .unwrap();
    assert_eq!(snap.set.live_count(), 7);
    for t in &made {
        assert!(snap.set.verify(t).is_some());
    }
}

#[test]
fn serve_refuses_to_start_open_by_accident() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    // Auth on, no token: how to make one.
    let e = serve_refuses(&d, &["--auth", "on"]);
    assert!(
        e.contains("xtdb token create") && e.contains("tokens.xtauth"),
        "{e}"
    );
    // Not loopback: auth is on by default (the check comes before binding).
    let e = serve_refuses(&d, &["--http", "0.0.0.0:0"]);
    assert!(e.contains("by default") && e.contains("0.0.0.0:0"), "{e}");
    // Auth off there needs --insecure.
    let e = serve_refuses(&d, &["--http", "0.0.0.0:0", "--auth", "off"]);
    assert!(e.contains("--insecure"), "{e}");
}

#[test]
fn a_torn_or_damaged_token_file_stops_the_server_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    create(&d, "a", &["--read"]);
    create(&d, "b", &["--write"]);
    let path = tokens::path_in(&d);
    let good = std::fs::read(&path).unwrap();
    let end = tokens::read_blocking(&path).unwrap().unwrap().end as usize;

    // Torn: half a record after the last one.
    let mut torn = good.clone();
    torn[end..end + 6].copy_from_slice(&[40, 0, 0, 0, 0xab, 0xcd]);
    std::fs::write(&path, &torn).unwrap();
    let e = serve_refuses(&d, &["--auth", "on"]);
    assert!(e.contains("tokens.xtauth") && e.contains("torn"), "{e}");
    assert!(e.contains(&format!("offset {end}")), "{e}");
    // The library refuses the same way.
    let mut c = xtdb::server::ServerConfig::new(&d).unwrap();
    c.cpus = vec![0];
    c.listen = "127.0.0.1:0".into();
    c.auth = xtdb::server::AuthSetting::On;
    let e = match xtdb::server::start(c, xtdb::server::Shutdown::new()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("started on a torn token file"),
    };
    assert!(e.contains("tokens.xtauth"), "{e}");
    // A token command cuts the torn tail (its command never reported
    // success); the tokens before it survive.
    let o = xtdb(&["token", "revoke", "b"], &d);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("torn tail"), "{}", text(&o));
    let snap = tokens::read_blocking(&path).unwrap().unwrap();
    assert_eq!(snap.set.live_count(), 1);

    // Damaged before the last record (a bit flip in the first): refused,
    // naming the file and the record's offset; so is a bad magic.
    let mut flipped = good.clone();
    flipped[8 + 8 + 12] ^= 0x10;
    std::fs::write(&path, &flipped).unwrap();
    let e = serve_refuses(&d, &["--auth", "on"]);
    assert!(e.contains("tokens.xtauth") && e.contains("offset 8"), "{e}");
    let mut magic = good.clone();
    magic[0] = b'Y';
    std::fs::write(&path, &magic).unwrap();
    let e = serve_refuses(&d, &["--auth", "on"]);
    assert!(e.contains("tokens.xtauth") && e.contains("magic"), "{e}");
    // The token commands refuse damage too: nothing is guessed.
    let o = xtdb(&["token", "list"], &d);
    assert!(
        !o.status.success() && text(&o).contains("tokens.xtauth"),
        "{}",
        text(&o)
    );
}

#[test]
fn stats_and_load_authenticate_and_sighup_reloads() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let rw = create(&d, "ops", &["--read", "--write"]);
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--cpus",
            "0",
            "--listen",
            "127.0.0.1:0",
            "--auth",
            "on",
        ])
        .arg("--data-dir")
        .arg(&d)
        .env("XTDB_IO_MEMORY", "1048576")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
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
    assert!(
        printed.iter().any(|l| l.starts_with("auth:          on")),
        "{printed:?}"
    );
    let stats = |token: Option<&str>| {
        let mut c = Command::new(BIN);
        c.args(["stats", "--addr", &addr]).env_remove("XTDB_TOKEN");
        if let Some(t) = token {
            c.env("XTDB_TOKEN", t);
        }
        c.output().unwrap()
    };
    let o = stats(None);
    assert!(
        !o.status.success() && text(&o).contains("server error 20"),
        "{}",
        text(&o)
    );
    let o = stats(Some("xtdb_nope"));
    assert!(
        !o.status.success() && text(&o).contains("server error 21"),
        "{}",
        text(&o)
    );
    let o = stats(Some(&rw));
    assert!(
        o.status.success() && text(&o).contains("shards: 1"),
        "{}",
        text(&o)
    );

    let load = env!("CARGO_BIN_EXE_xtdb-load");
    let o = Command::new(load)
        .args([
            "write", "--addr", &addr, "--tags", "10", "--batch", "10", "--ticks", "3",
        ])
        .args(["--quiet", "--json", "--token", &rw])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let o = Command::new(load)
        .args([
            "query",
            "--addr",
            &addr,
            "--prepare",
            "--blocks",
            "1",
            "--iterations",
            "2",
        ])
        .args(["--tags", "1", "--latest-iterations", "2", "--quiet"])
        .env("XTDB_TOKEN", &rw)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let o = Command::new(load)
        .args([
            "query",
            "--addr",
            &addr,
            "--blocks",
            "1",
            "--iterations",
            "1",
            "--quiet",
        ])
        .env_remove("XTDB_TOKEN")
        .output()
        .unwrap();
    assert!(!o.status.success(), "query without a token: {}", text(&o));

    // SIGHUP re-reads the token file: a token revoked by the command is
    // refused right after.
    let o = xtdb(&["token", "revoke", "ops"], &d);
    assert!(o.status.success(), "{}", text(&o));
    // SAFETY: kill(2) on our own child's pid.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGHUP);
    }
    loop {
        let line = lines.next().expect("server exited").unwrap();
        if line.contains("SIGHUP") {
            break;
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while stats(Some(&rw)).status.success() {
        assert!(
            std::time::Instant::now() < deadline,
            "revoked token still accepted"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // SAFETY: as above.
    #[allow(unsafe_code)]
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    assert!(child.wait().unwrap().success());
}
