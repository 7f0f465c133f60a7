//! `xtdb`: the server (`xtdb serve`) and its operator commands
//! (`xtdb stats`). Thin: parsing and printing only; the logic is in the
//! library (`xtdb::server`, `xtdb::net`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use xtdb::server::{ServerConfig, Shutdown};
use xtdb::storage::SyncMode;

#[derive(Parser)]
#[command(
    name = "xtdb",
    version,
    about = "Thread-per-core time-series store for industrial tag data"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server: one shard per listed CPU, native protocol on --listen.
    Serve(ServeArgs),
    /// Print a running server's counters (total and per shard) as a table.
    Stats {
        /// Server address.
        #[arg(long, env = "XTDB_ADDR", default_value = "127.0.0.1:7070")]
        addr: String,
    },
}

#[derive(Args)]
struct ServeArgs {
    /// Data directory (shard N lives in DATA/shard-N).
    #[arg(long, env = "XTDB_DATA_DIR")]
    data_dir: PathBuf,
    /// CPUs to run shards on, one shard each, e.g. `1`, `0,1`, `0-3`
    /// [default: all online CPUs]. The shard count is fixed by the first start.
    #[arg(long, env = "XTDB_CPUS")]
    cpus: Option<String>,
    /// Address to listen on (port 0 picks a free port; the bound address is printed).
    #[arg(long, env = "XTDB_LISTEN", default_value = "127.0.0.1:7070")]
    listen: String,
    /// When writes are acknowledged: `always` (after WAL fdatasync) or `none`.
    #[arg(long, env = "XTDB_SYNC", default_value = "always")]
    sync: SyncMode,
    /// Memory budget for buffered points, bytes in total (split across shards).
    #[arg(long, env = "XTDB_MEMORY_BUDGET", default_value_t = 1 << 30)]
    memory_budget: usize,
    /// glommio registered-buffer memory per shard, bytes.
    #[arg(long, env = "XTDB_IO_MEMORY", default_value_t = 4 << 20)]
    io_memory: usize,
}

fn serve(a: ServeArgs) -> xtdb::Result<()> {
    let mut config = ServerConfig::new(a.data_dir)?;
    if let Some(c) = a.cpus {
        config.cpus = xtdb::runtime::placement::parse_cpus(&c)?;
    }
    config.listen = a.listen;
    config.sync = a.sync;
    config.memory_budget = a.memory_budget;
    config.io_memory = a.io_memory;
    xtdb::server::run(config, Shutdown::on_signals()?)
}

fn main() -> ExitCode {
    let result = match Cli::parse().cmd {
        Cmd::Serve(a) => serve(a),
        Cmd::Stats { addr } => xtdb::net::client::fetch_stats_blocking(&addr)
            .map(|s| print!("{}", xtdb::net::client::stats_table(&s))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtdb: {e}");
            ExitCode::FAILURE
        }
    }
}
