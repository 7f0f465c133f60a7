//! The binaries' logger: every `log` record of the library goes to stderr
//! as one line, `xtdb[shard N] LEVEL message` (the shard part only on a
//! shard's thread), at the level `XTDB_LOG` sets (`error`, `warn`, `info`,
//! the default, `debug`, `trace`, or `off`).

use std::io::Write;

struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &log::Record<'_>) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let shard = xtdb::runtime::local::log_shard()
            .map(|i| format!("[shard {i}]"))
            .unwrap_or_default();
        let line = format!("xtdb{shard} {}: {}\n", r.level(), r.args());
        // One write per line, so lines of different threads do not mix.
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// Installs the logger (once per process).
pub fn init() {
    let level = std::env::var("XTDB_LOG")
        .ok()
        .and_then(|v| v.parse::<log::LevelFilter>().ok())
        .unwrap_or(log::LevelFilter::Info);
    if log::set_logger(&Stderr).is_ok() {
        log::set_max_level(level);
    }
}
