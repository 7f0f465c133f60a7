//! Helpers shared by the server tests: start a two-shard server on CPUs 0
//! and 1 with small io memory, run client code on a glommio executor.
#![allow(dead_code)]

use std::future::Future;
use std::path::Path;

use xtdb::server::{start, ServerConfig, ServerHandle, Shutdown};
use xtdb::storage::SyncMode;

/// Starts a server on `cpus` over `dir`, listening on a free port.
pub fn server_on(dir: &Path, cpus: &[usize]) -> xtdb::Result<ServerHandle> {
    let mut c = ServerConfig::new(dir)?;
    c.cpus = cpus.to_vec();
    c.listen = "127.0.0.1:0".into();
    c.sync = SyncMode::Always;
    c.memory_budget = 64 << 20;
    c.io_memory = 1 << 20;
    start(c, Shutdown::new())
}

/// Two shards on CPUs 0 and 1.
pub fn server(dir: &Path) -> ServerHandle {
    server_on(dir, &[0, 1]).expect("server starts")
}

/// Runs `f` on a fresh glommio executor on its own thread.
pub fn client<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
    T: Send + 'static,
{
    std::thread::spawn(move || {
        glommio::LocalExecutorBuilder::default()
            .io_memory(1 << 20)
            .make()
            .expect("client executor")
            .run(f())
    })
    .join()
    .expect("client thread")
}
