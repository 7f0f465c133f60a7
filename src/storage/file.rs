//! The shard's only door to the disk: O_DIRECT files on io_uring (glommio
//! `DmaFile`). Every read, write and sync of WAL segments and chunk files goes
//! through [`DataFile`], so errors carry the path, and fault injection can be
//! added in one place. Never blocks the executor.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;
use std::time::Instant;

use glommio::io::{DmaBuffer, DmaFile, OpenOptions, ReadResult};

use crate::storage::error::{glommio_io, Error, Result};
use crate::storage::fault::FaultPlan;
use crate::storage::slice::Slice;

/// Alignment of every O_DIRECT write offset and length.
pub const PAGE: usize = 4096;

/// Largest single read or write request. The device here takes at most
/// 4 MiB per request (`max_sectors_kb`), and glommio 0.9 can hang forever
/// on a larger one (glommio #633), so bigger transfers are split into
/// pieces of this size, issued concurrently.
pub const MAX_IO: usize = 1 << 20;
/// Pieces of one [`DataFile::read_into`] in flight.
pub const READS_AHEAD: usize = 8;

/// Rounds `n` up to a multiple of [`PAGE`].
pub fn page_up(n: usize) -> usize {
    n.div_ceil(PAGE) * PAGE
}

/// One disk operation started and not yet finished (or abandoned).
struct OpInfo {
    kind: &'static str,
    path: Rc<Path>,
    pos: u64,
    len: usize,
    start: Instant,
}

/// The disk operations in flight on this thread (one shard per executor
/// thread), for stall reports: an operation here whose future is still
/// awaited was handed to glommio and never completed.
#[derive(Default)]
struct InFlight {
    next: u64,
    finished: u64,
    ops: BTreeMap<u64, OpInfo>,
    /// The last few finished operations, newest last, with when they ended.
    recent: std::collections::VecDeque<(OpInfo, Instant)>,
}

/// Finished operations kept for stall reports.
const RECENT: usize = 6;

thread_local! {
    static IN_FLIGHT: RefCell<InFlight> = RefCell::new(InFlight::default());
}

/// Removes its operation from the in-flight table when dropped (finished,
/// failed or abandoned).
struct OpGuard(u64);

impl OpGuard {
    fn start(kind: &'static str, path: &Rc<Path>, pos: u64, len: usize) -> OpGuard {
        IN_FLIGHT.with(|t| {
            let mut t = t.borrow_mut();
            let id = t.next;
            t.next += 1;
            t.ops.insert(
                id,
                OpInfo {
                    kind,
                    path: Rc::clone(path),
                    pos,
                    len,
                    start: Instant::now(),
                },
            );
            OpGuard(id)
        })
    }
}

impl Drop for OpGuard {
    fn drop(&mut self) {
        IN_FLIGHT.with(|t| {
            let mut t = t.borrow_mut();
            t.finished += 1;
            if let Some(op) = t.ops.remove(&self.0) {
                if t.recent.len() == RECENT {
                    t.recent.pop_front();
                }
                t.recent.push_back((op, Instant::now()));
            }
        });
    }
}

/// The disk operations of this thread in flight now, oldest first, with
/// their age; for stall reports (the format is not stable).
pub fn in_flight_report() -> String {
    IN_FLIGHT.with(|t| {
        let t = t.borrow();
        let now = Instant::now();
        let show = |o: &OpInfo| format!("{} {} @{}+{}", o.kind, o.path.display(), o.pos, o.len);
        let ops: Vec<String> = t
            .ops
            .values()
            .map(|o| {
                format!(
                    "{} for {:.3}s",
                    show(o),
                    now.duration_since(o.start).as_secs_f64()
                )
            })
            .collect();
        let recent: Vec<String> = t
            .recent
            .iter()
            .map(|(o, end)| {
                format!(
                    "{} took {:.3}s, ended {:.3}s ago",
                    show(o),
                    end.duration_since(o.start).as_secs_f64(),
                    now.duration_since(*end).as_secs_f64()
                )
            })
            .collect();
        format!(
            "disk ops started {} finished {}; in flight {}: [{}]; last finished: [{}]",
            t.next,
            t.finished,
            ops.len(),
            ops.join("; "),
            recent.join("; ")
        )
    })
}

/// The `op` of every error from [`DataFile::preallocate`]: a failure there
/// wrote nothing (see [`Error::is_alloc_no_space`]).
pub const FALLOCATE: &str = "fallocate";

/// One DMA file with its path.
pub struct DataFile {
    file: DmaFile,
    /// Shared with the in-flight table, so recording an operation copies no path.
    path: Rc<Path>,
    /// Fault injection (tests only; `None` in production).
    faults: Option<FaultPlan>,
}

impl DataFile {
    /// Opens `path` for reading and writing, creating it if missing.
    pub async fn open(path: &Path) -> Result<DataFile> {
        let path: Rc<Path> = Rc::from(path);
        let faults = FaultPlan::current();
        if let Some(f) = &faults {
            // Fault injection only (tests): a stat to tell a creation.
            if !path.exists() {
                f.on_create(&path);
            }
        }
        let _op = OpGuard::start("open", &path, 0, 0);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .dma_open(&*path)
            .await
            .map_err(|e| wrap("open", &path, e))?;
        Ok(DataFile { file, path, faults })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A zeroed, aligned buffer of `len` bytes (a multiple of [`PAGE`]).
    pub fn buffer(&self, len: usize) -> DmaBuffer {
        debug_assert_eq!(len % PAGE, 0);
        let mut b = self.file.alloc_dma_buffer(len);
        b.as_bytes_mut().fill(0);
        b
    }

    /// Writes all of `buf` at `pos` (both page aligned). A short write is an error.
    pub async fn write_at(&self, buf: DmaBuffer, pos: u64) -> Result<()> {
        let len = buf.len();
        debug_assert!(len <= MAX_IO, "write of {len} bytes: use write_bytes_at");
        if let Some(f) = &self.faults {
            let io = |e| Error::io(format!("write at offset {pos}"), &*self.path, e);
            if f.before_write(&self.path, pos, len).map_err(io)? {
                let old = self.read_at(pos, len).await?;
                let mut old = old.to_vec();
                old.resize(len, 0);
                f.record_undo(&self.path, pos, old);
            }
        }
        let _op = OpGuard::start("write", &self.path, pos, len);
        let n = self
            .file
            .write_at(buf, pos)
            .await
            .map_err(|e| wrap("write", &self.path, e))?;
        if n != len {
            return Err(Error::io(
                format!("short write at offset {pos} ({n} of {len} bytes)"),
                &*self.path,
                std::io::Error::from(std::io::ErrorKind::WriteZero),
            ));
        }
        Ok(())
    }

    /// Reads up to `len` bytes at `pos` (any size: split into
    /// [`MAX_IO`] pieces read concurrently); shorter only at end of file.
    pub async fn read_vec(&self, pos: u64, len: usize) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.read_into(pos, len, &mut out).await?;
        Ok(out)
    }

    /// [`Self::read_vec`] into `out` (cleared first; its capacity is
    /// reused), with at most [`READS_AHEAD`] pieces in flight. A caller
    /// reading many large extents (WAL replay: 64 MiB segments) passes the
    /// same vector each time, so neither it nor the DMA buffers are fresh
    /// pages the kernel must zero (that was a quarter of a replay's CPU).
    pub async fn read_into(&self, pos: u64, len: usize, out: &mut Vec<u8>) -> Result<()> {
        use futures_util::stream::{self, StreamExt};
        out.clear();
        out.reserve(len);
        let mut pieces = stream::iter((0..len).step_by(MAX_IO))
            .map(|off| self.read_at(pos + off as u64, MAX_IO.min(len - off)))
            .buffered(READS_AHEAD);
        while let Some(r) = pieces.next().await {
            let r = r?;
            out.extend_from_slice(&r);
            if r.len() < MAX_IO {
                break; // end of file
            }
        }
        Ok(())
    }

    /// Writes `bytes` at `pos` (page aligned), padded with zeros to whole
    /// pages, copied into DMA buffers of at most [`MAX_IO`] bytes written
    /// concurrently.
    pub async fn write_bytes_at(&self, bytes: &[u8], pos: u64) -> Result<()> {
        // Copying a large directory into DMA buffers takes milliseconds:
        // a slice's worth at a time.
        let mut slice = Slice::new();
        let mut writes = Vec::with_capacity(bytes.len().div_ceil(MAX_IO));
        for (i, piece) in bytes.chunks(MAX_IO).enumerate() {
            if i > 0 {
                slice.tick().await;
            }
            let mut buf = self.file.alloc_dma_buffer(page_up(piece.len()));
            let b = buf.as_bytes_mut();
            b[..piece.len()].copy_from_slice(piece);
            b[piece.len()..].fill(0);
            writes.push(self.write_at(buf, pos + (i * MAX_IO) as u64));
        }
        for r in futures_util::future::join_all(writes).await {
            r?;
        }
        Ok(())
    }

    /// Reads up to `len` bytes (at most [`MAX_IO`]) at `pos`; shorter only at
    /// end of file.
    pub async fn read_at(&self, pos: u64, len: usize) -> Result<ReadResult> {
        debug_assert!(len <= MAX_IO, "read of {len} bytes: use read_vec");
        let _op = OpGuard::start("read", &self.path, pos, len);
        self.file
            .read_at(pos, len)
            .await
            .map_err(|e| wrap("read", &self.path, e))
    }

    /// `fdatasync`.
    pub async fn sync(&self) -> Result<()> {
        if let Some(f) = &self.faults {
            f.before_sync(&self.path)
                .map_err(|e| Error::io("fdatasync", &*self.path, e))?;
        }
        let _op = OpGuard::start("fdatasync", &self.path, 0, 0);
        self.file
            .fdatasync()
            .await
            .map_err(|e| wrap("fdatasync", &self.path, e))?;
        if let Some(f) = &self.faults {
            f.after_sync(&self.path);
        }
        Ok(())
    }

    /// Reserves `size` bytes on disk (fallocate) so later syncs don't update
    /// the file size.
    pub async fn preallocate(&self, size: u64) -> Result<()> {
        if let Some(f) = &self.faults {
            f.before_preallocate(&self.path, Some(size))
                .map_err(|e| Error::io(FALLOCATE, &*self.path, e))?;
        }
        let _op = OpGuard::start(FALLOCATE, &self.path, 0, size as usize);
        self.file
            .pre_allocate(size, false)
            .await
            .map_err(|e| wrap(FALLOCATE, &self.path, e))
    }

    /// Cuts the file to `size` bytes (a torn tail found at open). Treated
    /// as immediately durable by fault injection: it only ever removes bytes
    /// that recovery has already refused.
    pub async fn truncate(&self, size: u64) -> Result<()> {
        if let Some(f) = &self.faults {
            f.before_preallocate(&self.path, None)
                .map_err(|e| Error::io("truncate", &*self.path, e))?;
        }
        let _op = OpGuard::start("truncate", &self.path, size, 0);
        self.file
            .truncate(size)
            .await
            .map_err(|e| wrap("truncate", &self.path, e))
    }

    /// The file's current size.
    pub async fn size(&self) -> Result<u64> {
        let _op = OpGuard::start("stat", &self.path, 0, 0);
        self.file
            .file_size()
            .await
            .map_err(|e| wrap("stat", &self.path, e))
    }

    /// Closes the file.
    pub async fn close(self) -> Result<()> {
        let path = self.path;
        let _op = OpGuard::start("close", &path, 0, 0);
        self.file.close().await.map_err(|e| wrap("close", &path, e))
    }
}

fn wrap(op: &str, path: &Path, e: glommio::GlommioError<()>) -> Error {
    Error::io(op, path, glommio_io(e))
}

/// Bytes an unprivileged process may still allocate on the filesystem
/// holding `path` (`statvfs`), or `None` if it cannot be asked. For
/// messages and gauges only: the answer is stale as soon as it is read.
#[allow(unsafe_code)]
pub fn free_space(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid out-pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

/// Makes the names in `dir` durable (fsync of the directory).
pub async fn sync_dir(dir: &Path) -> Result<()> {
    let rc: Rc<Path> = Rc::from(dir);
    let op = OpGuard::start("open dir", &rc, 0, 0);
    let d = glommio::io::Directory::open(dir)
        .await
        .map_err(|e| wrap("open dir", dir, e))?;
    drop(op);
    let op = OpGuard::start("fsync dir", &rc, 0, 0);
    d.sync().await.map_err(|e| wrap("fsync dir", dir, e))?;
    drop(op);
    if let Some(f) = FaultPlan::current() {
        f.after_sync_dir(dir);
    }
    let _op = OpGuard::start("close dir", &rc, 0, 0);
    d.close().await.map_err(|e| wrap("close dir", dir, e))
}

/// Removes the file at `path` (glommio's blocking-thread pool).
pub async fn remove_file(path: &Path) -> Result<()> {
    if let Some(f) = FaultPlan::current() {
        // Fault injection only (tests): keep the bytes in case the removal
        // is undone by a power loss.
        let p = path.to_path_buf();
        let bytes = blocking(move || std::fs::read(&p))
            .await
            .unwrap_or_default();
        f.on_remove(path, bytes)
            .map_err(|e| Error::io("remove", path, e))?;
    }
    let _op = OpGuard::start("remove", &Rc::from(path), 0, 0);
    glommio::io::remove(path)
        .await
        .map_err(|e| wrap("remove", path, e))
}

/// Runs blocking file-system calls (directory creation, listing, small
/// buffered files) on glommio's blocking-thread pool, so the executor keeps
/// running its other tasks meanwhile.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    glommio::executor().spawn_blocking(f).await
}

/// Creates `dir` (and parents) if missing, making the new name durable.
pub async fn ensure_dir(dir: &Path) -> Result<()> {
    let d = dir.to_path_buf();
    let created = blocking(move || {
        if d.is_dir() {
            return Ok(false);
        }
        std::fs::create_dir_all(&d).map(|()| true)
    })
    .await
    .map_err(|e| Error::io("create dir", dir, e))?;
    if created {
        if let Some(parent) = dir.parent() {
            sync_dir(parent).await?;
        }
    }
    Ok(())
}

/// The names in `dir` (files and directories), unsorted.
pub async fn list_dir(dir: &Path) -> Result<Vec<(String, std::path::PathBuf)>> {
    let d = dir.to_path_buf();
    blocking(
        move || -> std::io::Result<Vec<(String, std::path::PathBuf)>> {
            let mut v = Vec::new();
            for entry in std::fs::read_dir(&d)? {
                let entry = entry?;
                if let Some(name) = entry.file_name().to_str() {
                    v.push((name.to_string(), entry.path()));
                }
            }
            Ok(v)
        },
    )
    .await
    .map_err(|e| Error::io("list dir", dir, e))
}

/// Contents of a shard's `FORMAT` file.
const FORMAT_TEXT: &str = "xtdb shard\nformat 3\n";
/// What formats 1 and 2 wrote; still opened, and upgraded.
const FORMAT_OLD: [&str; 2] = ["xtdb shard\nformat 1\n", "xtdb shard\nformat 2\n"];

/// Checks (or writes, for a new shard) the shard's `FORMAT` file and opens it
/// as the first DMA file of this thread. A format 1 or 2 shard (chunks of
/// format version 1 or 2, which this build still reads and compaction
/// rewrites) is marked format 3 from now on: new chunks are version 3
/// (compacted ones carry rollups), which an older build cannot read, so it
/// must refuse the directory.
///
/// Why first: glommio 0.9 decides once per thread and device whether reads
/// may use the io_uring poll ring, by reading block 0 of the first DMA file
/// opened. If that block was never written (a fresh or preallocated file),
/// the read never reaches the device, the probe wrongly succeeds, and every
/// later read of real data fails with EOPNOTSUPP on devices without poll
/// queues (virtio here). `FORMAT` is written through the page cache and
/// synced, so its block 0 is real data and the probe answers correctly.
pub async fn check_format(dir: &Path) -> Result<()> {
    let path = dir.join("FORMAT");
    let p = path.clone();
    let read = blocking(move || std::fs::read(&p)).await;
    let write = match read {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            if let Some(old) = FORMAT_OLD.iter().find(|f| text.starts_with(**f)) {
                let v = old.trim_end().rsplit(' ').next().unwrap_or("?");
                log::info!("{}: format {v}, upgraded to format 3", dir.display());
                true
            } else if !text.starts_with(FORMAT_TEXT) {
                let first = text.lines().take(2).collect::<Vec<_>>().join(" / ");
                return Err(Error::corrupt(
                    &path,
                    0,
                    format!(
                        "unsupported shard format '{first}' (this build reads '{}', '{}' and '{}')",
                        FORMAT_TEXT.replace('\n', " / "),
                        FORMAT_OLD[1].replace('\n', " / "),
                        FORMAT_OLD[0].replace('\n', " / ")
                    ),
                ));
            } else {
                false
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(Error::io("read FORMAT", path, e)),
    };
    if write {
        let mut content = FORMAT_TEXT.as_bytes().to_vec();
        content.resize(PAGE, b'\n');
        let (p, tmp) = (path.clone(), dir.join("FORMAT.tmp"));
        blocking(move || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            std::io::Write::write_all(&mut f, &content)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &p)
        })
        .await
        .map_err(|e| Error::io("write FORMAT", &path, e))?;
        sync_dir(dir).await?;
    }
    DataFile::open(&path).await?.close().await
}
