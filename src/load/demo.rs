//! `demo`: the one-command tour. Starts `xtdb serve` itself (the binary next
//! to this executable, rebuilt first when run under `cargo run`) on a fresh
//! temporary data dir, one shard pinned to CPU 1 (`--cpus 1`) while the
//! generator is pinned to CPU 0 (on a one-CPU machine both share CPU 0), waits for
//! `ready`, runs a short `tags-100k` and `query-blocks`, prints the reports
//! and stops the server with SIGTERM. The data dir is removed afterwards.
//! The server runs with `--auth on`: the demo creates a read+write token
//! with `xtdb token create` first and its clients authenticate with it.

use std::time::Duration;

use serde_json::json;

use crate::error::{Error, Result};
use crate::load::conn::Conn;
use crate::load::scenario::{self, Outcome, ScenarioConfig};
use crate::load::server::{self, ServerProcess, ServerSpec};

/// Demo settings.
#[derive(Clone, Debug)]
pub struct DemoConfig {
    /// Length of the tags-100k part.
    pub duration: Duration,
    /// Emit one JSON object at the end.
    pub json: bool,
}

/// The demo's results.
#[derive(Debug)]
pub struct DemoReport {
    /// One outcome per scenario run.
    pub outcomes: Vec<Outcome>,
    /// Time from spawn to the server's `ready` line.
    pub ready_after: Duration,
    /// Whether the server exited by itself after SIGTERM.
    pub clean_shutdown: bool,
}

impl DemoReport {
    /// The `--json` object.
    pub fn json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for o in &self.outcomes {
            m.insert(o.name.clone(), o.json.clone());
        }
        json!({
            "server_ready_ms": self.ready_after.as_secs_f64() * 1e3,
            "clean_shutdown": self.clean_shutdown,
            "scenarios": m,
            "ok": self.outcomes.iter().all(|o| o.ok) && self.clean_shutdown,
        })
    }
}

/// Runs the demo.
pub fn run<C: Conn>(cfg: &DemoConfig) -> Result<DemoReport> {
    let bin = server::ensure_server_binary()?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (server_cpu, gen_cpu) = if cpus > 1 { (Some(1), 0) } else { (None, 0) };
    let dir = server::temp_dir("xtdb-demo")?;
    let port = server::free_port()?;
    let addr = format!("127.0.0.1:{port}");
    let data_dir = dir.join("data");
    let token = server::create_token(&bin, &data_dir, "demo", &["--read", "--write"])?;
    let spec = ServerSpec {
        bin,
        data_dir,
        listen: addr.clone(),
        sync: "always".into(),
        pin_cpu: server_cpu,
        log: dir.join("server.log"),
        args: vec!["--auth".into(), "on".into()],
    };
    let say = |s: &str| {
        if cfg.json {
            eprintln!("{s}");
        } else {
            println!("{s}");
        }
    };
    say(&format!(
        "created token \"demo\" (read, write); starting {} serve --cpus {} --listen {addr} \
         --sync always --auth on (data in {}){}",
        spec.bin.display(),
        server_cpu.unwrap_or(0),
        spec.data_dir.display(),
        server_cpu.map_or(String::new(), |c| format!(
            ", pinned to CPU {c}; generator on CPU {gen_cpu}"
        ))
    ));
    let srv = ServerProcess::start(&spec, Duration::from_secs(60))?;
    let ready_after = srv.ready_after;
    say(&format!(
        "server ready after {:.0} ms (pid {})",
        ready_after.as_secs_f64() * 1e3,
        srv.pid()
    ));
    let mut sc = ScenarioConfig::new(&addr);
    sc.client.token = Some(token);
    sc.cpus = vec![gen_cpu];
    sc.server_pid = Some(srv.pid());
    sc.json = cfg.json;
    sc.duration = Some(cfg.duration);
    sc.query_tags = 1;
    let mut outcomes = Vec::new();
    let mut failure: Option<Error> = None;
    for name in ["tags-100k", "query-blocks"] {
        say(&format!("\n== {name} =="));
        match scenario::run::<C>(name, &sc) {
            Ok(o) => {
                say(&o.text);
                outcomes.push(o);
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let (clean, took) = srv.stop(Duration::from_secs(30));
    say(&format!(
        "server stopped with SIGTERM in {:.0} ms{}",
        took.as_secs_f64() * 1e3,
        if clean {
            ""
        } else {
            " (did not exit by itself: killed)"
        }
    ));
    match failure {
        Some(e) => {
            log::error!("demo failed; server log kept in {}", spec.log.display());
            Err(e)
        }
        None => {
            server::remove_dir(&dir);
            Ok(DemoReport {
                outcomes,
                ready_after,
                clean_shutdown: clean,
            })
        }
    }
}
