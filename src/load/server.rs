//! Starting and stopping an `xtdb serve` process for `demo`, `recovery` and
//! tests: spawn it (optionally pinned to one CPU), wait for the line
//! containing `ready` on stdout or stderr, copy its output to a log file,
//! stop it with SIGTERM (then SIGKILL after a grace period) or kill it with
//! SIGKILL. Blocking code: call it from plain threads, never from inside an
//! executor.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// How to start a server.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    /// The `xtdb` binary.
    pub bin: PathBuf,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// `host:port` to listen on.
    pub listen: String,
    /// `--sync always|none`.
    pub sync: String,
    /// Pin the process to this CPU: passed as `--cpus N` (one shard, on
    /// CPU N) and set with sched_setaffinity before exec; `None` = `--cpus 0`
    /// without an affinity mask.
    pub pin_cpu: Option<usize>,
    /// Where its stdout/stderr are copied.
    pub log: PathBuf,
    /// More `xtdb serve` arguments (e.g. `--auth on`).
    pub args: Vec<String>,
}

/// A running server.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// Time from spawn to the `ready` line.
    pub ready_after: Duration,
}

/// The `xtdb` binary next to the current executable.
pub fn sibling_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().map_err(|e| Error::io("current_exe", None, e))?;
    Ok(exe.with_file_name("xtdb"))
}

/// When running under `cargo run`, (re)builds the `xtdb` binary with the same
/// profile as this executable, so `cargo run --release --bin xtdb-load -- demo`
/// works from a fresh clone. Outside cargo, only checks that it exists.
pub fn ensure_server_binary() -> Result<PathBuf> {
    let bin = sibling_binary()?;
    if let (Ok(cargo), Ok(dir)) = (std::env::var("CARGO"), std::env::var("CARGO_MANIFEST_DIR")) {
        let release = bin
            .parent()
            .and_then(|p| p.file_name())
            .is_some_and(|n| n == "release");
        let mut cmd = Command::new(cargo);
        cmd.current_dir(dir).args(["build", "--bin", "xtdb"]);
        if release {
            cmd.arg("--release");
        }
        log::info!(
            "building the xtdb server binary ({}) ...",
            if release { "release" } else { "debug" }
        );
        let st = cmd
            .status()
            .map_err(|e| Error::io("run cargo build --bin xtdb", None, e))?;
        if !st.success() {
            return Err(Error::Config(format!(
                "cargo build --bin xtdb failed: {st}"
            )));
        }
    }
    if !bin.exists() {
        return Err(Error::Config(format!(
            "server binary {} not found: run `cargo build --release` first",
            bin.display()
        )));
    }
    Ok(bin)
}

/// Creates a token with `perms` (`--read`, `--write`, `--admin` flags)
/// named `name` in `data_dir` with `xtdb token create`; returns it (the
/// command's last line of stdout).
pub fn create_token(bin: &Path, data_dir: &Path, name: &str, perms: &[&str]) -> Result<String> {
    let out = Command::new(bin)
        .args(["token", "create", "--name", name])
        .arg("--data-dir")
        .arg(data_dir)
        .args(perms)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Error::io("run xtdb token create", Some(bin.to_path_buf()), e))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.lines().last() {
        Some(t) if out.status.success() && !t.trim().is_empty() => Ok(t.trim().to_string()),
        _ => Err(Error::Config(format!(
            "xtdb token create failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; racy but fine locally).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::io("bind 127.0.0.1:0", None, e))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::io("local_addr", None, e))
}

/// A fresh directory under the system temp dir; the caller removes it.
pub fn temp_dir(prefix: &str) -> Result<PathBuf> {
    let d = std::env::temp_dir().join(format!(
        "{prefix}-{}-{:x}",
        std::process::id(),
        crate::load::gen::now_us_rounded(1)
    ));
    std::fs::create_dir_all(&d).map_err(|e| Error::io("create temp dir", Some(d.clone()), e))?;
    Ok(d)
}

impl ServerProcess {
    /// Starts the server and waits up to `timeout` for its `ready` line.
    pub fn start(spec: &ServerSpec, timeout: Duration) -> Result<Self> {
        let mut cmd = Command::new(&spec.bin);
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(&spec.data_dir)
            .args([
                "--cpus",
                "1",
                "--listen",
                &spec.listen,
                "--sync",
                &spec.sync,
            ])
            .args(&spec.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(cpu) = spec.pin_cpu {
            use std::os::unix::process::CommandExt;
            // SAFETY: pre_exec runs in the forked child before exec; it only
            // calls the async-signal-safe sched_setaffinity on a local set.
            #[allow(unsafe_code)]
            unsafe {
                cmd.pre_exec(move || {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(cpu, &mut set);
                    libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
                    Ok(())
                });
            }
        }
        let t = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| Error::io("spawn xtdb serve", Some(spec.bin.clone()), e))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)
            .map_err(|e| Error::io("open server log", Some(spec.log.clone()), e))?;
        let (tx, rx) = mpsc::channel::<()>();
        let out = child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
        let err = child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
        for stream in [out, err].into_iter().flatten() {
            let tx = tx.clone();
            let mut log = log
                .try_clone()
                .map_err(|e| Error::io("dup server log", None, e))?;
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let _ = writeln!(log, "{line}");
                    if is_ready_line(&line) {
                        let _ = tx.send(());
                    }
                }
            });
        }
        drop(tx);
        let deadline = t + timeout;
        loop {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(()) => {
                    return Ok(ServerProcess {
                        child,
                        ready_after: t.elapsed(),
                    })
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            if let Ok(Some(st)) = child.try_wait() {
                return Err(Error::Config(format!(
                    "xtdb serve exited before it was ready ({st}); see {}",
                    spec.log.display()
                )));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::Config(format!(
                    "xtdb serve not ready after {timeout:?}; see {}",
                    spec.log.display()
                )));
            }
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then SIGKILL if it has not exited after `grace`. Returns
    /// whether it exited by itself and how long that took.
    pub fn stop(mut self, grace: Duration) -> (bool, Duration) {
        let t = Instant::now();
        // SAFETY: kill(2) on our own child's pid.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        while t.elapsed() < grace {
            if let Ok(Some(_)) = self.child.try_wait() {
                return (true, t.elapsed());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        (false, t.elapsed())
    }

    /// SIGKILL, and reap.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `line` announces readiness: the word `ready` on its own (so
/// "address already in use" does not count).
pub fn is_ready_line(line: &str) -> bool {
    let b = line.as_bytes();
    line.match_indices("ready").any(|(i, _)| {
        let before = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        let after = b.get(i + 5).is_none_or(|c| !c.is_ascii_alphanumeric());
        before && after
    })
}

/// Removes a directory made by [`temp_dir`], ignoring errors.
pub fn remove_dir(p: &Path) {
    let _ = std::fs::remove_dir_all(p);
}

#[cfg(test)]
mod tests {
    #[test]
    fn ready_line_is_the_word_ready() {
        assert!(super::is_ready_line(
            "xtdb ready: listening on 127.0.0.1:7070"
        ));
        assert!(super::is_ready_line("ready"));
        assert!(!super::is_ready_line(
            "xtdb: listen on 127.0.0.1:1 (is another server running on it?): Address already in use"
        ));
        assert!(!super::is_ready_line("readying shard 0"));
    }
}
