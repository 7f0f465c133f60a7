//! Online backup of a data directory into a target directory, and the
//! offline check of a backup. Owns the backup's layout (a data directory
//! plus `MANIFEST`), the cut each shard takes, and the manifest format.
//! Never holds a shard's flush lock longer than it takes to copy the
//! mutable state, never writes into a file that may be a hard link to a
//! live one (every file is written under a temporary name and renamed),
//! and never deletes anything in a directory that is not already a backup.
//!
//! ## The cut (per shard, [`Shard::backup`])
//!
//! 1. Take the compaction lock for the whole backup: compaction and
//!    retention, the only deleters of chunk files, wait, so every chunk
//!    file the cut names stays on disk until it is linked or copied.
//! 2. Take the flush lock: no flush round runs, so the active flush chunk's
//!    committed blocks, its header (the checkpoint) and the WAL's live
//!    segments (recycled only after a flush round) stand still. Under it,
//!    note the sealed chunks and copy the mutable state: the active chunk
//!    up to its last committed block, the live WAL segments whole and the
//!    active segment up to the end of its written records. Every point
//!    acknowledged before the backup started is in those records (an
//!    acknowledgement means its record was written and synced). Release the
//!    flush lock; writes were never blocked (they append to the WAL past the
//!    cut), only flushing waited.
//! 3. Hard-link each sealed chunk (immutable) into the target; if the target
//!    is on another filesystem (`EXDEV`), or linking is turned off, copy it.
//!
//! Then shard 0 copies the catalog up to its logical end and the valid
//! prefix of the token file, after every shard's cut, so every id a backed
//! up point names is in the backed up catalog (ids are durable before any
//! write uses them).
//!
//! Copies go through [`DataFile`] in 1 MiB steps that yield to the
//! executor, so acknowledgements keep flowing during a long copy.
//!
//! ## The target directory
//!
//! A backup is a data directory (`xtdb serve --data-dir DIR` opens it) plus
//! `MANIFEST`, written last: a line per file with its size, CRC32 and
//! whether it is immutable, then a CRC32 of the manifest itself; written to
//! `MANIFEST.tmp`, `fsync`ed, renamed, directory `fsync`ed. While a backup
//! runs, the previous manifest is kept as `BACKUP.incomplete`, so a backup
//! cut short leaves a directory without `MANIFEST` ([`verify`] refuses it)
//! and the next run still knows which immutable files are already there.
//! Incremental: a sealed chunk already in the target with the same size
//! (the same inode when linked, or listed as immutable with that size by
//! the previous manifest: chunk ids are never reused and sealed chunks
//! never change) is not copied again; the mutable state is copied each time.
//! Files of the target that are not part of the new backup (chunks
//! compaction has since replaced, recycled WAL segments, leftovers of an
//! interrupted run) are deleted before the manifest is written.
//!
//! One backup into a target at a time: [`begin`] takes an exclusive
//! `flock` on [`TARGET_LOCK`] in the target (before it touches anything
//! else there) and hands it back as a [`TargetLock`], which the caller
//! holds until [`finish`] has returned or the backup has failed. A second
//! backup into the same target meanwhile, from this server or another
//! process, is refused naming the target and the holder; the kernel
//! releases the lock when its holder dies, so a killed backup never leaves
//! a stale one. The lock file stays (removing a lock file races a waiter
//! that has it open); [`verify`] and [`finish`] leave it alone.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use crate::storage::catalog::{self, Store};
use crate::storage::chunk::{self, block_offset, Kind, HEADER_BYTES};
use crate::storage::error::{Error, Result};
use crate::storage::file::{blocking, ensure_dir, page_up, sync_dir, DataFile, MAX_IO, PAGE};
use crate::storage::shard::Shard;
use crate::storage::wal::format::{self as walfmt, Decoded, SegmentHeader, SEGMENT_HEADER};
use crate::storage::{block, records, tokens};

/// The manifest's file name in a backup.
pub const MANIFEST: &str = "MANIFEST";
/// The previous manifest while a backup runs (a marker that it has not
/// finished).
pub const INCOMPLETE: &str = "BACKUP.incomplete";
/// First line of a manifest.
const MANIFEST_MAGIC: &str = "xtdb backup manifest 1";
/// First line of the marker of a first backup that has not finished.
const INCOMPLETE_MAGIC: &str = "xtdb backup incomplete";
/// The lock file of a backup target, `flock`ed by the backup running into
/// it (see the module doc).
pub const TARGET_LOCK: &str = "BACKUP.lock";
/// Small files of the data directory copied as they are.
const SHARD_COUNT_FILE: &str = "shard-count";

/// One file of a backup, as the manifest lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Path relative to the backup directory, `/`-separated.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// CRC32 (`crc32fast`) of the whole file.
    pub crc: u32,
    /// Immutable (a sealed chunk): reused by the next backup if unchanged.
    pub sealed: bool,
}

/// How the files of a backup got there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Files hard-linked.
    pub files_linked: u64,
    /// Their bytes.
    pub bytes_linked: u64,
    /// Files copied.
    pub files_copied: u64,
    /// Their bytes.
    pub bytes_copied: u64,
    /// Files already in the target from an earlier backup.
    pub files_unchanged: u64,
    /// Their bytes.
    pub bytes_unchanged: u64,
}

impl Tally {
    /// Adds `o` into this one.
    pub fn add(&mut self, o: &Tally) {
        self.files_linked += o.files_linked;
        self.bytes_linked += o.bytes_linked;
        self.files_copied += o.files_copied;
        self.bytes_copied += o.bytes_copied;
        self.files_unchanged += o.files_unchanged;
        self.bytes_unchanged += o.bytes_unchanged;
    }

    /// Files in the backup.
    pub fn files(&self) -> u64 {
        self.files_linked + self.files_copied + self.files_unchanged
    }

    /// Bytes in the backup.
    pub fn bytes(&self) -> u64 {
        self.bytes_linked + self.bytes_copied + self.bytes_unchanged
    }
}

/// What one shard (or the catalog step) put into the backup.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Part {
    /// The files.
    pub entries: Vec<Entry>,
    /// How they got there.
    pub tally: Tally,
}

fn err_io<'a>(op: &'a str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |e| Error::io(op, path, e)
}

fn refuse(reason: String) -> Error {
    Error::Query { reason }
}

/// Renders a manifest of `entries` for a data directory of `shards` shards.
pub fn encode_manifest(shards: usize, created_us: i64, entries: &[Entry]) -> String {
    let mut s = format!("{MANIFEST_MAGIC}\nshards {shards}\ncreated_us {created_us}\n");
    for e in entries {
        let kind = if e.sealed { "sealed" } else { "mutable" };
        s.push_str(&format!(
            "file {} {:08x} {kind} {}\n",
            e.size, e.crc, e.path
        ));
    }
    with_crc_line(s)
}

/// `body` followed by its closing `crc XXXXXXXX` line (CRC32 of the body),
/// the shape of the manifest and of the export's state file.
pub fn with_crc_line(mut body: String) -> String {
    let crc = crc32fast::hash(body.as_bytes());
    body.push_str(&format!("crc {crc:08x}\n"));
    body
}

/// The body of a text written by [`with_crc_line`], once its CRC holds;
/// `Err` says what is wrong (`what` names the file kind).
pub fn crc_checked_body<'a>(text: &'a str, what: &str) -> std::result::Result<&'a str, String> {
    let Some(body_end) = text.rfind("crc ") else {
        return Err(format!("{what}: no closing crc line (cut short?)"));
    };
    let (body, tail) = text.split_at(body_end);
    let want = tail
        .trim_end()
        .strip_prefix("crc ")
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or(format!("{what}: malformed crc line"))?;
    if crc32fast::hash(body.as_bytes()) != want {
        return Err(format!("{what} checksum mismatch"));
    }
    Ok(body)
}

/// A parsed manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// Shards of the data directory.
    pub shards: usize,
    /// When the backup finished, µs since the epoch.
    pub created_us: i64,
    /// The files.
    pub entries: Vec<Entry>,
}

/// Parses a manifest; `Err` names the line that is wrong.
pub fn parse_manifest(text: &str) -> std::result::Result<Manifest, String> {
    let body = crc_checked_body(text, "manifest")?;
    let mut lines = body.lines();
    if lines.next() != Some(MANIFEST_MAGIC) {
        return Err(format!("first line is not {MANIFEST_MAGIC:?}"));
    }
    let num = |l: Option<&str>, key: &str| -> std::result::Result<i64, String> {
        l.and_then(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse().ok())
            .ok_or(format!("missing or malformed {key:?} line"))
    };
    let shards = num(lines.next(), "shards ")? as usize;
    let created_us = num(lines.next(), "created_us ")?;
    let mut entries = Vec::new();
    for (i, l) in lines.enumerate() {
        let bad = || format!("line {}: malformed file entry {l:?}", i + 4);
        let mut f = l.splitn(5, ' ');
        if f.next() != Some("file") {
            return Err(bad());
        }
        let size = f.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
        let crc = f
            .next()
            .and_then(|v| u32::from_str_radix(v, 16).ok())
            .ok_or_else(bad)?;
        let sealed = match f.next() {
            Some("sealed") => true,
            Some("mutable") => false,
            _ => return Err(bad()),
        };
        let path = f.next().ok_or_else(bad)?.to_string();
        if path.is_empty()
            || path.starts_with('/')
            || path.split('/').any(|c| c == ".." || c.is_empty())
        {
            return Err(format!("line {}: path {path:?} leaves the backup", i + 4));
        }
        entries.push(Entry {
            path,
            size,
            crc,
            sealed,
        });
    }
    Ok(Manifest {
        shards,
        created_us,
        entries,
    })
}

/// The exclusive lock of a backup target ([`TARGET_LOCK`]), held by the
/// backup running into it until dropped. The kernel releases it when the
/// process dies.
#[derive(Debug)]
pub struct TargetLock {
    _file: std::fs::File,
}

/// Takes the exclusive lock of the target `to` (an existing directory), or
/// refuses naming the target and the backup that holds it.
fn lock_target(to: &Path) -> Result<TargetLock> {
    use std::fs::{OpenOptions, TryLockError};
    use std::io::{Read, Seek, Write};
    let path = to.join(TARGET_LOCK);
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(err_io("open the backup lock", &path))?;
    match f.try_lock() {
        Ok(()) => {
            // For the refusal's message only: the lock is the flock.
            let since = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let holder = format!(
                "pid {}, started at {since} s since the epoch\n",
                std::process::id()
            );
            f.set_len(0)
                .map_err(err_io("truncate the backup lock", &path))?;
            f.rewind()
                .map_err(err_io("rewind the backup lock", &path))?;
            f.write_all(holder.as_bytes())
                .map_err(err_io("write the backup lock", &path))?;
            Ok(TargetLock { _file: f })
        }
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            let holder = holder.trim();
            Err(refuse(format!(
                "backup target {} is in use: another backup into it is running{} (it holds \
                 the lock on {}); two backups into one target would interleave their files \
                 and manifests: wait for it to finish, or back up into another directory",
                to.display(),
                if holder.is_empty() {
                    String::new()
                } else {
                    format!(" ({holder})")
                },
                path.display()
            )))
        }
        Err(TryLockError::Error(e)) => Err(Error::io("lock", &path, e)),
    }
}

/// Starts a backup into `to` for the server whose data directory is
/// `data_dir`: creates `to` if missing, refuses a directory that is neither
/// empty nor a backup (or that is inside the data directory or holds it),
/// takes the target's lock (refused while another backup into `to` runs)
/// and moves the previous manifest aside as [`INCOMPLETE`]. Returns the
/// lock, to hold until the backup has finished or failed, and the previous
/// backup's files (empty for a first backup).
pub async fn begin(to: &Path, data_dir: &Path) -> Result<(TargetLock, Vec<Entry>)> {
    let (to, data) = (to.to_path_buf(), data_dir.to_path_buf());
    blocking(move || begin_blocking(&to, &data)).await
}

/// Whether `to` holds nothing but (perhaps) the target lock file.
fn is_empty_target(to: &Path) -> Result<bool> {
    for e in std::fs::read_dir(to).map_err(err_io("list", to))? {
        let e = e.map_err(err_io("list", to))?;
        if e.file_name() != TARGET_LOCK {
            return Ok(false);
        }
    }
    Ok(true)
}

fn begin_blocking(to: &Path, data_dir: &Path) -> Result<(TargetLock, Vec<Entry>)> {
    if !to.is_absolute() {
        return Err(refuse(format!(
            "backup target {} is not an absolute path (it is a path on the server's machine)",
            to.display()
        )));
    }
    // Resolved before anything is created: the deepest existing ancestor,
    // canonical, then the rest of the path.
    let mut existing = to.to_path_buf();
    let mut rest = Vec::new();
    while !existing.exists() {
        match (existing.file_name(), existing.parent()) {
            (Some(n), Some(p)) => {
                rest.push(n.to_os_string());
                existing = p.to_path_buf();
            }
            _ => break,
        }
    }
    let mut canon = std::fs::canonicalize(&existing).map_err(err_io("resolve backup dir", to))?;
    canon.extend(rest.iter().rev());
    let data = std::fs::canonicalize(data_dir).map_err(err_io("resolve data dir", data_dir))?;
    if canon.starts_with(&data) || data.starts_with(&canon) {
        return Err(refuse(format!(
            "backup target {} overlaps the data directory {}",
            canon.display(),
            data.display()
        )));
    }
    if to.join("LOCK").exists() {
        return Err(refuse(format!(
            "backup target {} holds a LOCK: it has been served as a data dir since; back up into a fresh directory",
            to.display()
        )));
    }
    std::fs::create_dir_all(to).map_err(err_io("create backup dir", to))?;
    let manifest = to.join(MANIFEST);
    let marker = to.join(INCOMPLETE);
    let not_backup = || {
        refuse(format!(
            "backup target {} is neither empty nor an xtdb backup (no {MANIFEST} or {INCOMPLETE})",
            to.display()
        ))
    };
    // Checked before the lock file is created, so a directory that is not
    // a backup is left untouched; checked again under the lock.
    if !manifest.exists() && !marker.exists() && !is_empty_target(to)? {
        return Err(not_backup());
    }
    let lock = lock_target(to)?;
    if manifest.exists() {
        std::fs::rename(&manifest, &marker).map_err(err_io("rename", &manifest))?;
    } else if !marker.exists() {
        if !is_empty_target(to)? {
            return Err(not_backup());
        }
        write_small(&marker, format!("{INCOMPLETE_MAGIC}\n").as_bytes())?;
    }
    fsync_dir_blocking(to)?;
    let text = std::fs::read_to_string(&marker).map_err(err_io("read", &marker))?;
    // The marker of a first backup, or a previous manifest: only a valid
    // manifest says which immutable files are already there.
    let prev = parse_manifest(&text).map(|m| m.entries).unwrap_or_default();
    Ok((lock, prev))
}

/// Finishes a backup into `to` (its caller holding the [`TargetLock`]
/// from [`begin`]): deletes every file of `to` that `entries` does not
/// list (but the lock file), then writes the manifest (temporary name, `fsync`,
/// rename, directory `fsync`) and removes [`INCOMPLETE`].
pub async fn finish(to: &Path, shards: usize, created_us: i64, entries: Vec<Entry>) -> Result<()> {
    let to = to.to_path_buf();
    blocking(move || finish_blocking(&to, shards, created_us, &entries)).await
}

fn finish_blocking(to: &Path, shards: usize, created_us: i64, entries: &[Entry]) -> Result<()> {
    let keep: std::collections::HashSet<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    let mut dirs = vec![(to.to_path_buf(), String::new())];
    while let Some((dir, rel)) = dirs.pop() {
        let mut removed = false;
        for e in std::fs::read_dir(&dir).map_err(err_io("list", &dir))? {
            let e = e.map_err(err_io("list", &dir))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            let r = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            if e.file_type().map_err(err_io("stat", &path))?.is_dir() {
                dirs.push((path, r));
            } else if !keep.contains(r.as_str())
                && r != INCOMPLETE
                && r != MANIFEST
                && r != TARGET_LOCK
            {
                std::fs::remove_file(&path).map_err(err_io("remove", &path))?;
                removed = true;
            }
        }
        if removed {
            fsync_dir_blocking(&dir)?;
        }
    }
    let text = encode_manifest(shards, created_us, entries);
    let tmp = to.join("MANIFEST.tmp");
    write_small(&tmp, text.as_bytes())?;
    let manifest = to.join(MANIFEST);
    std::fs::rename(&tmp, &manifest).map_err(err_io("rename", &tmp))?;
    fsync_dir_blocking(to)?;
    let marker = to.join(INCOMPLETE);
    if marker.exists() {
        std::fs::remove_file(&marker).map_err(err_io("remove", &marker))?;
        fsync_dir_blocking(to)?;
    }
    Ok(())
}

/// Writes `bytes` to `path` (created or replaced) and `fsync`s it.
fn write_small(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(err_io("create", path))?;
    f.write_all(bytes).map_err(err_io("write", path))?;
    f.sync_all().map_err(err_io("fsync", path))
}

fn fsync_dir_blocking(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err_io("fsync dir", dir))
}

/// Writes `bytes` as the file `rel` of the backup `to` (temporary name,
/// `fsync`, rename) and returns its entry.
async fn put_small(to: &Path, rel: &str, bytes: Vec<u8>) -> Result<Entry> {
    let dest = to.join(rel);
    let tmp = tmp_of(&dest);
    let entry = Entry {
        path: rel.to_string(),
        size: bytes.len() as u64,
        crc: crc32fast::hash(&bytes),
        sealed: false,
    };
    blocking(move || {
        write_small(&tmp, &bytes)?;
        std::fs::rename(&tmp, &dest).map_err(err_io("rename", &tmp))
    })
    .await?;
    Ok(entry)
}

/// The bytes of a small file, read on the blocking pool.
async fn read_small(path: &Path) -> Result<Vec<u8>> {
    let p = path.to_path_buf();
    blocking(move || std::fs::read(&p))
        .await
        .map_err(err_io("read", path))
}

fn tmp_of(dest: &Path) -> PathBuf {
    let mut s = dest.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// Keeps a backup's reads and writes under a byte rate (0: unpaced), so
/// the WAL's syncs do not queue behind a long copy on the same disk.
pub struct Pace {
    rate: u64,
    started: std::time::Instant,
    done: std::cell::Cell<u64>,
}

impl Pace {
    /// A pace of `rate` bytes per second (0: as fast as the disk goes).
    pub fn new(rate: u64) -> Pace {
        Pace {
            rate,
            started: std::time::Instant::now(),
            done: std::cell::Cell::new(0),
        }
    }

    /// Counts `n` bytes and sleeps until the rate allows them.
    async fn step(&self, n: u64) {
        self.done.set(self.done.get() + n);
        if self.rate == 0 {
            return;
        }
        let due = std::time::Duration::from_secs_f64(self.done.get() as f64 / self.rate as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            glommio::timer::sleep(wait).await;
        }
    }
}

/// Copies the first `len` bytes of `src` to `dest` (through a temporary
/// name, then `fsync` and rename; the caller syncs the directory) in
/// [`MAX_IO`] steps that yield to the executor. Returns the CRC32 of the
/// bytes. `on_step` is told the bytes of each step (progress).
async fn copy_prefix(
    src: &DataFile,
    len: u64,
    dest: &Path,
    on_step: &dyn Fn(u64),
    pace: &Pace,
) -> Result<u32> {
    let tmp = tmp_of(dest);
    let out = DataFile::open(&tmp).await?;
    out.truncate(0).await?;
    let mut crc = crc32fast::Hasher::new();
    let mut off = 0u64;
    while off < len {
        let want = MAX_IO.min((len - off) as usize);
        let got = src.read_at(off, want).await?;
        if got.len() < want {
            return Err(Error::corrupt(
                src.path(),
                off + got.len() as u64,
                format!("file ends before the {len} bytes the backup cut names"),
            ));
        }
        crc.update(&got[..want]);
        let mut buf = out.buffer(page_up(want));
        buf.as_bytes_mut()[..want].copy_from_slice(&got[..want]);
        out.write_at(buf, off).await?;
        off += want as u64;
        on_step(want as u64);
        pace.step(want as u64).await;
        glommio::yield_if_needed().await;
    }
    if !len.is_multiple_of(PAGE as u64) {
        out.truncate(len).await?;
    }
    out.sync().await?;
    out.close().await?;
    let (t, d) = (tmp.clone(), dest.to_path_buf());
    blocking(move || std::fs::rename(&t, &d))
        .await
        .map_err(err_io("rename", &tmp))?;
    Ok(crc.finalize())
}

/// CRC32 of the first `len` bytes of the file at `path` (yielding between
/// steps).
async fn crc_of(path: &Path, len: u64, pace: &Pace) -> Result<u32> {
    let f = DataFile::open(path).await?;
    let mut crc = crc32fast::Hasher::new();
    let mut off = 0u64;
    while off < len {
        let want = MAX_IO.min((len - off) as usize);
        let got = f.read_at(off, want).await?;
        if got.len() < want {
            return Err(Error::corrupt(path, off, "file shorter than its size"));
        }
        crc.update(&got[..want]);
        off += want as u64;
        pace.step(want as u64).await;
        glommio::yield_if_needed().await;
    }
    f.close().await?;
    Ok(crc.finalize())
}

/// How `dest` relates to the immutable `src`, read on the blocking pool:
/// `(src size, dest exists with that size, same inode)`.
async fn stat_pair(src: &Path, dest: &Path) -> Result<(u64, bool, bool)> {
    use std::os::unix::fs::MetadataExt;
    let (s, d) = (src.to_path_buf(), dest.to_path_buf());
    let (sm, dm) = blocking(move || (std::fs::metadata(&s), std::fs::metadata(&d))).await;
    let sm = sm.map_err(err_io("stat", src))?;
    Ok(match dm {
        Ok(dm) => (
            sm.len(),
            dm.len() == sm.len(),
            dm.dev() == sm.dev() && dm.ino() == sm.ino(),
        ),
        Err(_) => (sm.len(), false, false),
    })
}

/// Hard-links `src` to `dest` (through a temporary name). `Ok(false)` when
/// they are on different filesystems.
async fn link(src: &Path, dest: &Path) -> Result<bool> {
    let tmp = tmp_of(dest);
    let (s, t, d) = (src.to_path_buf(), tmp.clone(), dest.to_path_buf());
    let r = blocking(move || -> std::io::Result<bool> {
        let _ = std::fs::remove_file(&t);
        match std::fs::hard_link(&s, &t) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc_exdev()) => return Ok(false),
            Err(e) => return Err(e),
        }
        std::fs::rename(&t, &d)?;
        Ok(true)
    })
    .await;
    r.map_err(err_io("hard link", src))
}

/// `EXDEV` on Linux.
const fn libc_exdev() -> i32 {
    18
}

impl Shard {
    /// Backs this shard up into `to` (the backup's directory for this
    /// shard, `DIR/shard-N`), at one cut (see the module doc). `rel` is
    /// that directory relative to the backup (`shard-N`), `prev` the
    /// previous backup's files, `link` whether sealed chunks may be
    /// hard-linked, `rate` the bytes per second its reads and writes are
    /// paced at (0: unpaced).
    pub async fn backup(
        &self,
        to: &Path,
        rel: &str,
        prev: &[Entry],
        link_ok: bool,
        rate: u64,
    ) -> Result<Part> {
        let pace = Pace::new(rate);
        let inner = &self.inner;
        inner.check_fenced()?;
        let prev: HashMap<&str, &Entry> = prev.iter().map(|e| (e.path.as_str(), e)).collect();
        let stats = inner.stats.clone();
        let progress = move |bytes: u64| stats.borrow_mut().backup_bytes += bytes;
        let file_done = || inner.stats.borrow_mut().backup_files += 1;
        let (wal_dir, chunk_dir) = (to.join("wal"), to.join("chunks"));
        ensure_dir(&wal_dir).await?;
        ensure_dir(&chunk_dir).await?;
        let mut part = Part::default();

        let _compact = inner.ctl.compact_lock.acquire_permit(1).await;
        inner.check_fenced()?;
        let mut sealed = Vec::new();
        {
            let _flush = inner.ctl.flush_lock.acquire_permit(1).await;
            inner.check_fenced()?;
            let wal = inner.wal()?.clone();
            let segments = wal.backup_cut();
            let active = inner.disk.active.borrow().as_ref().map(|c| {
                (
                    c.header.id,
                    c.file.clone(),
                    block_offset(c.header.committed),
                )
            });
            let chunks: Vec<(u64, Rc<DataFile>, bool)> = inner
                .disk
                .index
                .borrow()
                .chunks()
                .map(|(id, c)| (id, c.file.clone(), c.sealed))
                .collect();
            let mut mutable: Vec<(Rc<DataFile>, u64, String)> = Vec::new();
            for (id, file, is_sealed) in chunks {
                let name = chunk::chunk_file_name(id);
                if active.as_ref().is_some_and(|a| a.0 == id) {
                    continue;
                }
                if is_sealed {
                    sealed.push((file, name));
                } else {
                    // An unsealed chunk other than the active one (a format
                    // 1 chunk): copied whole, under the lock.
                    let size = file.size().await?;
                    mutable.push((file, size, format!("chunks/{name}")));
                }
            }
            if let Some((id, file, len)) = active {
                mutable.push((file, len, format!("chunks/{}", chunk::chunk_file_name(id))));
            }
            for (file, len) in segments {
                let name = file
                    .path()
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                mutable.push((file, len, format!("wal/{name}")));
            }
            for (file, len, r) in mutable {
                let crc = copy_prefix(&file, len, &to.join(&r), &progress, &pace).await?;
                file_done();
                part.tally.files_copied += 1;
                part.tally.bytes_copied += len;
                part.entries.push(Entry {
                    path: format!("{rel}/{r}"),
                    size: len,
                    crc,
                    sealed: false,
                });
            }
            sync_dir(&wal_dir).await?;
        }

        let mut link_ok = link_ok;
        for (file, name) in sealed {
            let r = format!("{rel}/chunks/{name}");
            let dest = chunk_dir.join(&name);
            let (size, same_size, same_inode) = stat_pair(file.path(), &dest).await?;
            let known = prev
                .get(r.as_str())
                .filter(|e| e.sealed && e.size == size)
                .map(|e| e.crc);
            let crc = if same_inode || (same_size && known.is_some()) {
                part.tally.files_unchanged += 1;
                part.tally.bytes_unchanged += size;
                progress(size);
                match known {
                    Some(c) => c,
                    None => crc_of(&dest, size, &pace).await?,
                }
            } else if link_ok && link(file.path(), &dest).await? {
                part.tally.files_linked += 1;
                part.tally.bytes_linked += size;
                progress(size);
                crc_of(&dest, size, &pace).await?
            } else {
                link_ok = false;
                let crc = copy_prefix(&file, size, &dest, &progress, &pace).await?;
                part.tally.files_copied += 1;
                part.tally.bytes_copied += size;
                crc
            };
            file_done();
            part.entries.push(Entry {
                path: r,
                size,
                crc,
                sealed: true,
            });
        }
        sync_dir(&chunk_dir).await?;
        let format = read_small(&inner.cfg.dir.join("FORMAT")).await?;
        part.tally.bytes_copied += format.len() as u64;
        part.entries
            .push(put_small(to.parent().unwrap_or(to), &format!("{rel}/FORMAT"), format).await?);
        part.tally.files_copied += 1;
        sync_dir(to).await?;
        Ok(part)
    }

    /// This shard's directory (`DATA/shard-N`).
    pub fn dir(&self) -> &Path {
        &self.inner.cfg.dir
    }
}

/// Copies the data directory's own files into the backup `to`: the
/// catalog (`store`, up to its logical end), the valid prefix of the token
/// file and the shard count. Run on shard 0 after every shard's cut.
pub async fn backup_catalog(
    data_dir: &Path,
    to: &Path,
    store: Option<&Store>,
    rate: u64,
) -> Result<Part> {
    let pace = Pace::new(rate);
    let mut part = Part::default();
    if let Some(store) = store {
        let path = data_dir.join(catalog::FILE_NAME);
        let len = store.file_len();
        let src = DataFile::open(&path).await?;
        let crc = copy_prefix(&src, len, &to.join(catalog::FILE_NAME), &|_| {}, &pace).await?;
        src.close().await?;
        part.tally.files_copied += 1;
        part.tally.bytes_copied += len;
        part.entries.push(Entry {
            path: catalog::FILE_NAME.into(),
            size: len,
            crc,
            sealed: false,
        });
    }
    let token_path = tokens::path_in(data_dir);
    if let Some(snap) = tokens::read(&token_path).await? {
        let bytes = read_small(&token_path).await?;
        let end = (snap.end as usize).min(bytes.len());
        let rel = token_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        part.entries
            .push(put_small(to, &rel, bytes[..end].to_vec()).await?);
        part.tally.files_copied += 1;
        part.tally.bytes_copied += end as u64;
    }
    let count = data_dir.join(SHARD_COUNT_FILE);
    let c = count.clone();
    if blocking(move || c.exists()).await {
        let bytes = read_small(&count).await?;
        part.tally.files_copied += 1;
        part.tally.bytes_copied += bytes.len() as u64;
        part.entries
            .push(put_small(to, SHARD_COUNT_FILE, bytes).await?);
    }
    sync_dir(to).await?;
    Ok(part)
}

/// What [`verify`] checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verified {
    /// Shards in the backup.
    pub shards: usize,
    /// Files checked against the manifest.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Chunk blocks whose own CRC was checked.
    pub blocks: u64,
    /// WAL records whose own CRC was checked.
    pub wal_records: u64,
    /// Catalog and token records checked.
    pub records: u64,
}

/// Checks the backup in `dir` without opening it: the manifest (present,
/// its own CRC), every file it lists (size, CRC32), no file it does not
/// list, and inside the files every checksum of their formats: chunk
/// header slots and every committed block (and a sealed chunk's
/// directory), every WAL record up to the end of each segment's log, the
/// catalog's and the token file's records. Blocking: call it from a plain
/// thread. `Err` names the file and what is wrong.
pub fn verify(dir: &Path) -> Result<Verified> {
    let manifest = dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&manifest) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let why = if dir.join(INCOMPLETE).exists() {
                format!(
                    "{} has no {MANIFEST}: a backup into it did not finish ({INCOMPLETE} is there); run the backup again to complete it",
                    dir.display()
                )
            } else {
                format!("{} has no {MANIFEST}: not an xtdb backup", dir.display())
            };
            return Err(refuse(why));
        }
        Err(e) => return Err(Error::io("read", &manifest, e)),
    };
    let m = parse_manifest(&text).map_err(|why| Error::corrupt(&manifest, 0, why))?;
    let mut v = Verified {
        shards: m.shards,
        ..Verified::default()
    };
    let listed: std::collections::HashSet<&str> =
        m.entries.iter().map(|e| e.path.as_str()).collect();
    // No file the manifest does not name (serve would load it).
    let mut dirs = vec![(dir.to_path_buf(), String::new())];
    while let Some((d, rel)) = dirs.pop() {
        for e in std::fs::read_dir(&d).map_err(err_io("list", &d))? {
            let e = e.map_err(err_io("list", &d))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if e.file_type().map_err(err_io("stat", &e.path()))?.is_dir() {
                dirs.push((e.path(), r));
            } else if !listed.contains(r.as_str())
                && r != MANIFEST
                && r != INCOMPLETE
                && r != TARGET_LOCK
                && r != "LOCK"
            {
                return Err(refuse(format!(
                    "{}: file {r} is not in the manifest",
                    dir.display()
                )));
            }
        }
    }
    for e in &m.entries {
        let path = dir.join(&e.path);
        let data = std::fs::read(&path).map_err(|err| {
            if err.kind() == std::io::ErrorKind::NotFound {
                refuse(format!(
                    "{}: listed in the manifest, missing",
                    path.display()
                ))
            } else {
                Error::io("read", &path, err)
            }
        })?;
        if data.len() as u64 != e.size {
            return Err(Error::corrupt(
                &path,
                data.len() as u64,
                format!("{} bytes, the manifest says {}", data.len(), e.size),
            ));
        }
        let crc = crc32fast::hash(&data);
        if crc != e.crc {
            return Err(Error::corrupt(
                &path,
                0,
                format!("CRC32 {crc:08x}, the manifest says {:08x}", e.crc),
            ));
        }
        v.files += 1;
        v.bytes += e.size;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if e.path.contains("/chunks/") {
            v.blocks += verify_chunk(&path, &data)?;
        } else if e.path.contains("/wal/") {
            v.wal_records += verify_wal(&path, &data)?;
        } else if name == catalog::FILE_NAME {
            records::parse(
                &path,
                &data,
                catalog::MAGIC,
                catalog::MAX_KEY_LEN + 4,
                |_, p| catalog::decode(p).map(|_| ()),
            )?;
            v.records += 1;
        } else if name == tokens::FILE_NAME {
            tokens::parse(&path, &data)?;
            v.records += 1;
        }
    }
    Ok(v)
}

/// Checks a chunk file's header slots, committed blocks and (sealed)
/// directory; returns the blocks checked. Format 1 chunks are checked by
/// the manifest's CRC only.
fn verify_chunk(path: &Path, data: &[u8]) -> Result<u64> {
    if data.len() < HEADER_BYTES as usize || data[8..12] != chunk::VERSION.to_le_bytes() {
        return Ok(0);
    }
    let mut best: Option<chunk::Header> = None;
    for slot in [0, PAGE] {
        let page = &data[slot..slot + PAGE];
        if page[0..8].iter().all(|&b| b == 0) {
            continue;
        }
        if &page[0..8] != chunk::MAGIC {
            return Err(Error::corrupt(path, slot as u64, "bad chunk magic"));
        }
        match chunk::Header::decode(page) {
            Err(e) => return Err(Error::corrupt(path, slot as u64, e)),
            Ok(Some(h)) if best.is_none_or(|b| h.generation > b.generation) => best = Some(h),
            Ok(_) => {}
        }
    }
    let Some(h) = best else {
        return Ok(0);
    };
    if h.kind == Kind::V1 {
        return Ok(0);
    }
    for s in 0..h.committed {
        let at = block_offset(s) as usize;
        let b = data
            .get(at..at + block::BLOCK_SIZE)
            .ok_or_else(|| Error::corrupt(path, at as u64, "committed block missing"))?;
        block::verify(b).map_err(|e| Error::corrupt(path, at as u64, e))?;
    }
    if h.sealed {
        let at = h.dir_offset as usize;
        let d = data
            .get(at..at + h.dir_len as usize)
            .ok_or_else(|| Error::corrupt(path, at as u64, "directory missing"))?;
        if crc32fast::hash(d) != h.dir_crc {
            return Err(Error::corrupt(
                path,
                at as u64,
                "directory checksum mismatch",
            ));
        }
    }
    Ok(u64::from(h.committed))
}

/// Checks a WAL segment's header and every record of its log (up to the
/// first zeroed or invalid header: the end); returns the records.
fn verify_wal(path: &Path, data: &[u8]) -> Result<u64> {
    let Some(page) = data.get(..SEGMENT_HEADER) else {
        return Err(Error::corrupt(path, 0, "segment header truncated"));
    };
    let Some(h) = SegmentHeader::decode(page).map_err(|e| Error::corrupt(path, 0, e))? else {
        return Ok(0);
    };
    let (mut pos, mut seq, mut n) = (SEGMENT_HEADER, h.first_seq, 0);
    while let Decoded::Record { len, .. } = walfmt::decode_record(&data[pos..], seq, h.id) {
        pos += len;
        seq += 1;
        n += 1;
    }
    Ok(n)
}
