//! Fault injection under the shard's files, for crash and error tests.
//!
//! A test installs a [`FaultPlan`] on the current thread (each shard runs
//! on its own executor thread) before opening a shard; every [`DataFile`]
//! opened afterwards on that thread reports its writes and syncs here.
//! Without a plan the cost is one `Option` check per I/O call.
//!
//! What it models:
//! - **Power loss**: at a chosen I/O operation the "power fails": that and
//!   every later write or sync fails. Writes not yet covered by a successful
//!   `fdatasync` of their file are remembered with the bytes they
//!   overwrote, and [`FaultPlan::apply_power_loss`] then drops them all,
//!   keeps a prefix of them, or tears the last 4 KiB page of the last one,
//!   on the real files, before the next life opens the shard.
//! - **EIO on `fdatasync`** at the n-th sync (the pages stay unsynced, as on
//!   Linux, so a later power loss may still drop them).
//! - **ENOSPC** on writes and preallocation while switched on, or (a full
//!   disk as ext4 shows it to files preallocated ahead) on preallocation
//!   only.
//! - **Directory entries**: a file created, or removed, is durable only
//!   once its directory is synced. At the power loss, creations and
//!   removals not yet covered by a directory sync are undone (all of them,
//!   a prefix of them per directory, or none, following the loss mode).
//!
//! [`DataFile`]: super::file::DataFile

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// What survives of unsynced writes at a simulated power loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossMode {
    /// Every unsynced write is lost.
    DropAll,
    /// Per file, the first `k` unsynced writes survive (k chosen from the seed).
    KeepPrefix,
    /// Every unsynced write survives except the last 4 KiB page of the last
    /// write of each file, which is torn: its second half is lost.
    TearLastPage,
}

struct Undo {
    offset: u64,
    old: Vec<u8>,
}

enum DirOp {
    Created(PathBuf),
    Removed(PathBuf, Vec<u8>),
}

impl DirOp {
    fn dir(&self) -> Option<&Path> {
        match self {
            DirOp::Created(p) | DirOp::Removed(p, _) => p.parent(),
        }
    }
}

#[derive(Default)]
struct State {
    ops: u64,
    power_fail_at: Option<u64>,
    failed: bool,
    syncs: u64,
    eio_at_sync: Option<u64>,
    enospc: bool,
    enospc_allocate: bool,
    /// Unsynced writes per file, oldest first.
    unsynced: HashMap<PathBuf, Vec<Undo>>,
    /// Creations and removals not yet covered by a sync of their directory,
    /// oldest first.
    dir_ops: Vec<DirOp>,
    injected: Vec<String>,
}

/// A fault plan shared by the files of one thread.
#[derive(Clone, Default)]
pub struct FaultPlan {
    st: Rc<RefCell<State>>,
}

thread_local! {
    static CURRENT: RefCell<Option<FaultPlan>> = const { RefCell::new(None) };
}

impl FaultPlan {
    /// A plan that injects nothing until told to.
    pub fn new() -> FaultPlan {
        FaultPlan::default()
    }

    /// Makes this plan apply to files opened from now on, on this thread.
    pub fn install(&self) {
        CURRENT.with(|c| *c.borrow_mut() = Some(self.clone()));
    }

    /// Stops injecting for files opened from now on, on this thread.
    pub fn uninstall() {
        CURRENT.with(|c| *c.borrow_mut() = None);
    }

    pub(crate) fn current() -> Option<FaultPlan> {
        CURRENT.with(|c| c.borrow().clone())
    }

    /// The power fails at the `n`-th write or sync from now (1 = the next).
    pub fn power_fail_after(&self, n: u64) {
        let mut st = self.st.borrow_mut();
        st.power_fail_at = Some(st.ops + n);
    }

    /// The `n`-th `fdatasync` from now fails with EIO.
    pub fn eio_on_sync(&self, n: u64) {
        let mut st = self.st.borrow_mut();
        st.eio_at_sync = Some(st.syncs + n);
    }

    /// While on, writes and preallocations fail with ENOSPC.
    pub fn set_enospc(&self, on: bool) {
        self.st.borrow_mut().enospc = on;
    }

    /// While on, preallocations (new or growing files) fail with ENOSPC;
    /// writes into space already allocated succeed.
    pub fn set_enospc_on_allocate(&self, on: bool) {
        self.st.borrow_mut().enospc_allocate = on;
    }

    /// True once the simulated power loss has happened.
    pub fn power_failed(&self) -> bool {
        self.st.borrow().failed
    }

    /// Writes and syncs seen so far.
    pub fn ops(&self) -> u64 {
        self.st.borrow().ops
    }

    /// What was injected, for failure messages.
    pub fn injected(&self) -> Vec<String> {
        self.st.borrow().injected.clone()
    }

    /// Applies the loss of unsynced writes to the real files (call after the
    /// shard's executor has stopped). `seed` picks prefixes.
    pub fn apply_power_loss(&self, mode: LossMode, seed: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let unsynced = std::mem::take(&mut self.st.borrow_mut().unsynced);
        let dir_ops = std::mem::take(&mut self.st.borrow_mut().dir_ops);
        let mut rng = seed | 1;
        // Directory entries first: a removal that is undone brings the file
        // back as it was when removed; a creation that is undone takes it away.
        let mut dirs: Vec<PathBuf> = dir_ops
            .iter()
            .filter_map(|o| o.dir().map(Path::to_path_buf))
            .collect();
        dirs.sort();
        dirs.dedup();
        let mut gone: Vec<PathBuf> = Vec::new();
        for dir in dirs {
            let ops: Vec<&DirOp> = dir_ops
                .iter()
                .filter(|o| o.dir() == Some(dir.as_path()))
                .collect();
            let keep = match mode {
                LossMode::DropAll => 0,
                LossMode::KeepPrefix => {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    (rng % (ops.len() as u64 + 1)) as usize
                }
                LossMode::TearLastPage => ops.len(),
            };
            for op in ops[keep..].iter().rev() {
                match op {
                    DirOp::Created(p) => {
                        if p.exists() {
                            std::fs::remove_file(p)?;
                        }
                        gone.push(p.clone());
                    }
                    DirOp::Removed(p, bytes) => {
                        std::fs::write(p, bytes)?;
                        gone.retain(|g| g != p);
                    }
                }
            }
        }
        let mut paths: Vec<_> = unsynced.keys().cloned().collect();
        paths.sort();
        for path in paths {
            if gone.contains(&path) || !path.exists() {
                continue;
            }
            let writes = &unsynced[&path];
            let f = std::fs::OpenOptions::new().write(true).open(&path)?;
            let revert_from = match mode {
                LossMode::DropAll => 0,
                LossMode::KeepPrefix => {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    (rng % (writes.len() as u64 + 1)) as usize
                }
                LossMode::TearLastPage => writes.len(),
            };
            for u in writes[revert_from..].iter().rev() {
                f.write_all_at(&u.old, u.offset)?;
            }
            if mode == LossMode::TearLastPage {
                if let Some(u) = writes.last() {
                    let page = u.old.len().saturating_sub(1) / 4096 * 4096;
                    let half = (page + 2048).min(u.old.len());
                    f.write_all_at(&u.old[half..], u.offset + half as u64)?;
                }
            }
            f.sync_all()?;
        }
        Ok(())
    }

    /// Called before a write of `len` bytes at `offset` of `path`. `Err` to
    /// fail it; `Ok(true)` if the caller must record the old bytes with
    /// [`FaultPlan::record_undo`].
    pub(crate) fn before_write(&self, path: &Path, offset: u64, len: usize) -> io::Result<bool> {
        let mut st = self.st.borrow_mut();
        st.ops += 1;
        if st.failed || st.power_fail_at.is_some_and(|n| st.ops >= n) {
            if !st.failed {
                st.injected.push(format!(
                    "power loss at write of {len} bytes at {offset} in {}",
                    path.display()
                ));
            }
            st.failed = true;
            return Err(io::Error::other("simulated power loss"));
        }
        if st.enospc {
            st.injected
                .push(format!("ENOSPC on write at {offset} in {}", path.display()));
            return Err(io::Error::from_raw_os_error(28));
        }
        Ok(true)
    }

    /// Remembers the bytes a write is about to overwrite.
    pub(crate) fn record_undo(&self, path: &Path, offset: u64, old: Vec<u8>) {
        self.st
            .borrow_mut()
            .unsynced
            .entry(path.to_path_buf())
            .or_default()
            .push(Undo { offset, old });
    }

    /// Called before an `fdatasync` of `path`.
    pub(crate) fn before_sync(&self, path: &Path) -> io::Result<()> {
        let mut st = self.st.borrow_mut();
        st.ops += 1;
        st.syncs += 1;
        if st.failed || st.power_fail_at.is_some_and(|n| st.ops >= n) {
            if !st.failed {
                st.injected
                    .push(format!("power loss at fdatasync of {}", path.display()));
            }
            st.failed = true;
            return Err(io::Error::other("simulated power loss"));
        }
        if st.eio_at_sync == Some(st.syncs) {
            st.injected
                .push(format!("EIO on fdatasync of {}", path.display()));
            return Err(io::Error::from_raw_os_error(5));
        }
        Ok(())
    }

    /// Called before `path` is created (it does not exist yet).
    pub(crate) fn on_create(&self, path: &Path) {
        self.st
            .borrow_mut()
            .dir_ops
            .push(DirOp::Created(path.to_path_buf()));
    }

    /// Called before `path` is removed; `bytes` is what it holds.
    pub(crate) fn on_remove(&self, path: &Path, bytes: Vec<u8>) -> io::Result<()> {
        let mut st = self.st.borrow_mut();
        if st.failed {
            return Err(io::Error::other("simulated power loss"));
        }
        st.unsynced.remove(path);
        st.dir_ops.push(DirOp::Removed(path.to_path_buf(), bytes));
        Ok(())
    }

    /// Called after a successful sync of directory `dir`.
    pub(crate) fn after_sync_dir(&self, dir: &Path) {
        self.st
            .borrow_mut()
            .dir_ops
            .retain(|o| o.dir() != Some(dir));
    }

    /// Called after a successful `fdatasync` of `path`.
    pub(crate) fn after_sync(&self, path: &Path) {
        self.st.borrow_mut().unsynced.remove(path);
    }

    /// Called before preallocating the file to `size` bytes (`None`: a
    /// truncation). On preallocation only, a file already that large needs
    /// no new space and passes.
    pub(crate) fn before_preallocate(&self, path: &Path, size: Option<u64>) -> io::Result<()> {
        let mut st = self.st.borrow_mut();
        if st.failed {
            return Err(io::Error::other("simulated power loss"));
        }
        let grows = size.is_some_and(|s| std::fs::metadata(path).map_or(true, |m| m.len() < s));
        if st.enospc || (st.enospc_allocate && grows) {
            st.injected
                .push(format!("ENOSPC on fallocate of {}", path.display()));
            return Err(io::Error::from_raw_os_error(28));
        }
        Ok(())
    }
}
