//! CPU placement and the on-disk shard layout: parses `--cpus`, builds a
//! deterministic one-executor-per-CPU [`PoolPlacement`], names each shard's
//! directory and guards the data directory: one server at a time
//! ([`lock_data_dir`]: two servers writing one WAL and one set of chunks
//! would corrupt both), an absolute path (glommio opens directories relative
//! to nothing, so a relative path fails at the first flush), and the shard
//! count recorded in it (tags are routed by `hash(tag) mod shards`, so a data
//! directory written with one shard count cannot be served with another).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use glommio::{CpuSet, PoolPlacement};

use crate::storage::error::{glommio_io, Error, Result};

/// Name of the file in the data directory that records the shard count.
pub const SHARD_COUNT_FILE: &str = "shard-count";

/// Name of the lock file in the data directory.
pub const LOCK_FILE: &str = "LOCK";

/// The data directory's exclusive lock (an `flock` on [`LOCK_FILE`]), held
/// until dropped; the kernel releases it when the process dies, so a
/// kill -9 never leaves a stale lock.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// Creates `data_dir` if missing and returns its absolute, canonical path
/// (so every later open is independent of the working directory).
pub fn canonical_data_dir(data_dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(data_dir).map_err(|e| Error::io("create data dir", data_dir, e))?;
    std::fs::canonicalize(data_dir).map_err(|e| Error::io("resolve data dir", data_dir, e))
}

/// Takes the data directory's exclusive lock, or explains who holds it.
/// The holder's pid is written into the file (for the message only: the
/// lock itself is the `flock`).
pub fn lock_data_dir(data_dir: &Path) -> Result<DataDirLock> {
    let path = data_dir.join(LOCK_FILE);
    let io = |what: &str, e| Error::io(what.to_string(), &path, e);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io("open lock file", e))?;
    match f.try_lock() {
        Ok(()) => {
            f.set_len(0).map_err(|e| io("truncate lock file", e))?;
            f.rewind().map_err(|e| io("rewind lock file", e))?;
            writeln!(f, "{}", std::process::id()).map_err(|e| io("write lock file", e))?;
            Ok(DataDirLock { _file: f })
        }
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            let holder = holder.trim();
            Err(Error::InvalidConfig {
                setting: "--data-dir",
                reason: format!(
                    "data dir {} is in use by another xtdb server{} (it holds the lock on {}); \
                     two servers on one data dir would corrupt it: stop the other one or use \
                     another --data-dir",
                    data_dir.display(),
                    if holder.is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {holder})")
                    },
                    path.display()
                ),
            })
        }
        Err(TryLockError::Error(e)) => Err(io("lock", e)),
    }
}

/// CPUs that are online, ascending.
pub fn online_cpus() -> Result<Vec<usize>> {
    let set = CpuSet::online().map_err(online_err)?;
    let mut v: Vec<usize> = set.iter().map(|l| l.cpu).collect();
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

fn online_err(e: glommio::GlommioError<()>) -> Error {
    Error::io(
        "read online CPUs",
        "/sys/devices/system/cpu/online",
        glommio_io(e),
    )
}

/// Parses a CPU list such as `1`, `0,1` or `0-3,6`. Refuses duplicates and
/// empty lists. Order is kept: shard `i` runs on the `i`-th listed CPU.
pub fn parse_cpus(s: &str) -> Result<Vec<usize>> {
    let bad = |why: String| Error::InvalidConfig {
        setting: "--cpus",
        reason: format!("'{s}': {why}"),
    };
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |x: &str| {
            x.trim()
                .parse::<usize>()
                .map_err(|_| bad(format!("'{x}' is not a CPU number")))
        };
        if let Some((a, b)) = part.split_once('-') {
            let (a, b) = (num(a)?, num(b)?);
            if a > b {
                return Err(bad(format!("range {a}-{b} is reversed")));
            }
            out.extend(a..=b);
        } else {
            out.push(num(part)?);
        }
    }
    if out.is_empty() {
        return Err(bad("no CPU listed".into()));
    }
    let mut sorted = out.clone();
    sorted.sort_unstable();
    if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
        return Err(bad(format!("CPU {} listed twice", w[0])));
    }
    Ok(out)
}

/// One executor per CPU in `cpus`, pinned one-to-one in that order.
pub fn placement(cpus: &[usize]) -> Result<PoolPlacement> {
    let online = online_cpus()?;
    let mut sets = Vec::with_capacity(cpus.len());
    for &cpu in cpus {
        if !online.contains(&cpu) {
            return Err(Error::InvalidConfig {
                setting: "--cpus",
                reason: format!("CPU {cpu} is not online (online: {online:?})"),
            });
        }
        sets.push(
            CpuSet::online()
                .map_err(online_err)?
                .filter(|l| l.cpu == cpu),
        );
    }
    Ok(PoolPlacement::Custom(sets))
}

/// The directory of shard `i`: `DATA/shard-i`.
pub fn shard_dir(data_dir: &Path, i: usize) -> PathBuf {
    data_dir.join(format!("shard-{i}"))
}

/// Creates `data_dir` if needed and checks (or, on first start, records) the
/// shard count. A different count is refused: data would be routed to shards
/// that do not hold it.
pub fn check_shard_count(data_dir: &Path, shards: usize) -> Result<()> {
    std::fs::create_dir_all(data_dir).map_err(|e| Error::io("create data dir", data_dir, e))?;
    let path = data_dir.join(SHARD_COUNT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let recorded: usize = s.trim().parse().map_err(|_| {
                Error::corrupt(&path, 0, format!("expected a shard count, found {s:?}"))
            })?;
            if recorded != shards {
                return Err(Error::InvalidConfig {
                    setting: "--cpus",
                    reason: format!(
                        "data dir {} holds {recorded} shard(s) but {shards} CPU(s) were listed; \
                         tags are routed by hash mod shard count, so the shard count cannot \
                         change: start with {recorded} CPU(s) in --cpus",
                        data_dir.display()
                    ),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let tmp = data_dir.join(format!("{SHARD_COUNT_FILE}.tmp"));
            let io = |what: &str, p: &Path, e| Error::io(what.to_string(), p, e);
            let mut f = std::fs::File::create(&tmp).map_err(|e| io("create", &tmp, e))?;
            writeln!(f, "{shards}").map_err(|e| io("write", &tmp, e))?;
            f.sync_all().map_err(|e| io("fsync", &tmp, e))?;
            std::fs::rename(&tmp, &path).map_err(|e| io("rename", &path, e))?;
            std::fs::File::open(data_dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io("fsync data dir", data_dir, e))?;
            Ok(())
        }
        Err(e) => Err(Error::io("read shard count", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cpu_lists() {
        assert_eq!(parse_cpus("1").unwrap(), vec![1]);
        assert_eq!(parse_cpus("0,1").unwrap(), vec![0, 1]);
        assert_eq!(parse_cpus("2-4,0").unwrap(), vec![2, 3, 4, 0]);
        assert!(parse_cpus("").is_err());
        assert!(parse_cpus("1,1").is_err());
        assert!(parse_cpus("x").is_err());
        assert!(parse_cpus("3-1").is_err());
    }

    #[test]
    fn shard_count_is_recorded_and_guarded() {
        let d = tempfile::tempdir().unwrap();
        check_shard_count(d.path(), 2).unwrap();
        check_shard_count(d.path(), 2).unwrap();
        let e = check_shard_count(d.path(), 1).unwrap_err().to_string();
        assert!(e.contains("holds 2 shard(s)"), "{e}");
    }

    #[test]
    fn one_lock_per_data_dir_released_on_drop() {
        let d = tempfile::tempdir().unwrap();
        let first = lock_data_dir(d.path()).unwrap();
        let e = lock_data_dir(d.path()).unwrap_err().to_string();
        let pid = std::process::id().to_string();
        assert!(e.contains("in use by another xtdb server"), "{e}");
        assert!(e.contains(&format!("pid {pid}")), "{e}");
        drop(first);
        let _again = lock_data_dir(d.path()).unwrap();
    }

    #[test]
    fn data_dir_is_made_absolute() {
        let d = tempfile::tempdir().unwrap();
        let nested = d.path().join("a").join("..").join("b");
        let c = canonical_data_dir(&nested).unwrap();
        assert!(c.is_absolute());
        assert_eq!(c, std::fs::canonicalize(d.path()).unwrap().join("b"));
    }
}
