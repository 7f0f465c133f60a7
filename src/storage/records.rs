//! A small durable file of CRC-protected records, appended in place: what
//! the tag catalog (and any other small store of the shard) is built on.
//! Every read, write and sync goes through [`DataFile`], so fault
//! injection covers it like the WAL and the chunks.
//!
//! Layout (little endian): an 8-byte magic, then records
//! `len u32 | crc u32 (CRC32 of the payload) | payload (len bytes)`, one
//! after the other, then zeros to the end of the file. O_DIRECT writes are
//! whole 4 KiB pages, so an append rewrites the last partial page with the
//! new records after the old ones; the file is preallocated in steps of
//! [`GROW`] so that most appends do not change its size (an `fdatasync`
//! that has to persist a new size costs ~4 ms here).
//!
//! Recovery: a zeroed record header is the end. A bad record (length out
//! of range, cut short, CRC mismatch) is a torn tail when nothing but zeros
//! follows it: it is cut away (logged, and reported by [`RecordFile::open`]).
//! A bad record followed by other data is corruption: open fails naming the
//! file and offset; nothing is guessed. Growing the file's allocation for
//! an append fails cleanly (nothing was written: a full disk refuses that
//! append and the next may succeed); a failed write or sync fences the file
//! for good (no retry-then-acknowledge after a failed `fdatasync`).
//!
//! Never blocks the executor; appends are serialised by the file.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};

use crate::storage::error::{Error, Result};
use crate::storage::file::{blocking, page_up, sync_dir, DataFile, PAGE};

/// Bytes of the record header (`len`, `crc`).
pub const RECORD_HEADER: usize = 8;
/// The file grows (fallocate) by this much at a time.
pub const GROW: u64 = 1 << 20;

/// An open record file.
pub struct RecordFile {
    file: DataFile,
    path: PathBuf,
    magic: [u8; 8],
    max_payload: usize,
    /// Logical end: the byte after the last record.
    end: Cell<u64>,
    /// Bytes from the start of the last partial page to `end`.
    tail: RefCell<Vec<u8>>,
    /// Bytes allocated on disk.
    allocated: Cell<u64>,
    fenced: RefCell<Option<String>>,
    lock: glommio::sync::Semaphore,
}

/// What open found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Records read.
    pub records: u64,
    /// Bytes of a torn tail that were cut away.
    pub torn_bytes: u64,
}

/// Parses the records of `data` (the whole file), calling `each(offset,
/// payload)` for every valid one. Returns the end of the valid prefix.
/// `max_payload` bounds a record's length.
pub fn parse(
    path: &Path,
    data: &[u8],
    magic: &[u8; 8],
    max_payload: usize,
    mut each: impl FnMut(u64, &[u8]) -> std::result::Result<(), String>,
) -> Result<usize> {
    if data.len() < magic.len() || &data[..magic.len()] != magic {
        return Err(Error::corrupt(path, 0, "bad magic"));
    }
    let mut off = magic.len();
    while off < data.len() {
        match record_at(data, off, max_payload) {
            Ok(Some(len)) => {
                let payload = &data[off + RECORD_HEADER..off + RECORD_HEADER + len];
                each(off as u64, payload).map_err(|m| Error::corrupt(path, off as u64, m))?;
                off += RECORD_HEADER + len;
            }
            Ok(None) => {
                // A zeroed header is the end; anything after it is damage.
                if data[off..].iter().all(|&b| b == 0) {
                    return Ok(off);
                }
                return Err(Error::corrupt(
                    path,
                    off as u64,
                    "data after the end of the records",
                ));
            }
            Err(why) => {
                // A torn append damages only its last page: the bad record is
                // the tail if no valid record starts after it (within what one
                // record and a page can span) and only zeros lie beyond.
                let window = (off + RECORD_HEADER + max_payload + PAGE).min(data.len());
                let later = (off + 1..window)
                    .any(|j| matches!(record_at(data, j, max_payload), Ok(Some(_))));
                if later || data[window..].iter().any(|&b| b != 0) {
                    return Err(Error::corrupt(path, off as u64, why));
                }
                return Ok(off);
            }
        }
    }
    Ok(off)
}

/// The payload length of a valid record at `off`, `None` for a zeroed
/// header, or why the record there is bad.
fn record_at(
    data: &[u8],
    off: usize,
    max_payload: usize,
) -> std::result::Result<Option<usize>, String> {
    let Some(h) = data.get(off..off + RECORD_HEADER) else {
        return Err("record header cut short".into());
    };
    let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
    if len == 0 && crc == 0 {
        return Ok(None);
    }
    if len == 0 || len > max_payload {
        return Err(format!("bad record length {len}"));
    }
    let Some(payload) = data.get(off + RECORD_HEADER..off + RECORD_HEADER + len) else {
        return Err("record cut short".into());
    };
    if crc32fast::hash(payload) != crc {
        return Err("record CRC mismatch".into());
    }
    Ok(Some(len))
}

/// Writes a header page (the magic, then zeros) and syncs it if `path` is
/// missing, shorter than the magic or all zeros. Returns whether it did.
fn create_if_new(path: &Path, magic: &[u8; 8]) -> std::io::Result<bool> {
    use std::io::{Read, Write};
    let mut head = Vec::new();
    match std::fs::File::open(path) {
        Ok(f) => {
            f.take(PAGE as u64).read_to_end(&mut head)?;
            if head.len() >= magic.len() && head.iter().any(|&b| b != 0) {
                return Ok(false);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut page = magic.to_vec();
    page.resize(PAGE, 0);
    let mut f = std::fs::File::create(path)?;
    f.write_all(&page)?;
    f.sync_all()?;
    Ok(true)
}

/// Appends one record framing `payload` to `buf`.
pub fn encode(buf: &mut Vec<u8>, payload: &[u8]) {
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    buf.extend_from_slice(payload);
}

impl RecordFile {
    /// Opens (creating if missing) the record file at `path`, calling
    /// `each(offset, payload)` for every record in order. A torn tail is
    /// cut away; damage before it fails with the file and offset.
    pub async fn open(
        path: &Path,
        magic: &[u8; 8],
        max_payload: usize,
        mut each: impl FnMut(u64, &[u8]) -> std::result::Result<(), String>,
    ) -> Result<(RecordFile, OpenReport)> {
        // A new file (or one torn before its header was durable) is written
        // through the page cache first, like the shard's FORMAT file: glommio
        // 0.9 probes its read path on the first block of the first DMA file a
        // thread opens, and a never-written block misleads that probe.
        let (p, m) = (path.to_path_buf(), *magic);
        let created = blocking(move || create_if_new(&p, &m))
            .await
            .map_err(|e| Error::io("create", path, e))?;
        if created {
            if let Some(dir) = path.parent() {
                sync_dir(dir).await?;
            }
        }
        let file = DataFile::open(path).await?;
        let size = file.size().await?;
        let rf = RecordFile {
            file,
            path: path.to_path_buf(),
            magic: *magic,
            max_payload,
            end: Cell::new(0),
            tail: RefCell::new(Vec::new()),
            allocated: Cell::new(size),
            fenced: RefCell::new(None),
            lock: glommio::sync::Semaphore::new(1),
        };
        let mut report = OpenReport::default();
        let data = rf.file.read_vec(0, size as usize).await?;
        let valid = parse(path, &data, magic, max_payload, |off, p| {
            report.records += 1;
            each(off, p)
        })?;
        rf.end.set(valid as u64);
        *rf.tail.borrow_mut() = data[valid / PAGE * PAGE..valid].to_vec();
        if let Some(last) = data[valid..].iter().rposition(|&b| b != 0) {
            report.torn_bytes = last as u64 + 1;
            log::warn!(
                "{}: torn tail at offset {valid}: {} bytes dropped",
                path.display(),
                report.torn_bytes
            );
            // Zero the rest of the last page and cut the file after it, so
            // the torn bytes can never be mistaken for records.
            rf.write_tail(&[]).await?;
            let keep = page_up(valid) as u64;
            rf.file.truncate(keep).await?;
            rf.file.sync().await?;
            rf.allocated.set(keep);
        }
        Ok((rf, report))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Logical size: the byte after the last record.
    pub fn len(&self) -> u64 {
        self.end.get()
    }

    /// Whether the file holds no record.
    pub fn is_empty(&self) -> bool {
        self.end.get() <= self.magic.len() as u64
    }

    /// Why appends are refused, if a failed append fenced the file.
    pub fn fenced(&self) -> Option<String> {
        self.fenced.borrow().clone()
    }

    /// Appends `payloads` as records and makes them durable (`fdatasync`)
    /// before returning. A failed write or sync fences the file: this and
    /// every later append fail. A failure to grow the allocation first
    /// (ENOSPC) fails only this append.
    pub async fn append(&self, payloads: &[&[u8]]) -> Result<()> {
        let Ok(_permit) = self.lock.acquire_permit(1).await else {
            return Err(Error::Closed);
        };
        if let Some(why) = self.fenced() {
            return Err(Error::fenced(why));
        }
        let mut buf = Vec::new();
        for p in payloads {
            if p.is_empty() || p.len() > self.max_payload {
                return Err(Error::Limit {
                    what: "record length",
                    detail: format!("{} bytes (at most {})", p.len(), self.max_payload),
                });
            }
            encode(&mut buf, p);
        }
        if buf.is_empty() {
            return Ok(());
        }
        self.reserve(buf.len()).await?;
        let written = async {
            self.write_tail(&buf).await?;
            self.file.sync().await
        }
        .await;
        match written {
            Ok(()) => Ok(()),
            Err(e) => {
                let why = e.to_string();
                log::error!("{}: append failed, fenced: {why}", self.path.display());
                *self.fenced.borrow_mut() = Some(why);
                Err(e)
            }
        }
    }

    /// Grows the allocation so `len` more bytes after the last record fit.
    /// Nothing is written.
    async fn reserve(&self, len: usize) -> Result<()> {
        let page_start = self.end.get() / PAGE as u64 * PAGE as u64;
        let data = self.tail.borrow().len() + len;
        let need = page_start + page_up(data).max(PAGE) as u64;
        if need > self.allocated.get() {
            let to = need.div_ceil(GROW) * GROW;
            self.file.preallocate(to).await?;
            self.allocated.set(to);
        }
        Ok(())
    }

    /// Writes `bytes` after the last record, rewriting the partial page
    /// before them so every write is page aligned (growing the allocation
    /// first if needed, see [`RecordFile::reserve`]), and advances the
    /// logical end. Not durable until the next sync.
    async fn write_tail(&self, bytes: &[u8]) -> Result<()> {
        self.reserve(bytes.len()).await?;
        let end = self.end.get();
        let page_start = end / PAGE as u64 * PAGE as u64;
        let mut data = self.tail.borrow().clone();
        data.extend_from_slice(bytes);
        let new_end = page_start + data.len() as u64;
        let keep_from = (new_end / PAGE as u64 * PAGE as u64 - page_start) as usize;
        let new_tail = data[keep_from..].to_vec();
        data.resize(page_up(data.len()).max(PAGE), 0);
        self.file.write_bytes_at(&data, page_start).await?;
        self.end.set(new_end);
        *self.tail.borrow_mut() = new_tail;
        Ok(())
    }

    /// Closes the file.
    pub async fn close(self) -> Result<()> {
        self.file.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAGIC: &[u8; 8] = b"XTTEST01";

    fn file(n: u32) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        for i in 0..n {
            encode(&mut b, format!("record {i}").as_bytes());
        }
        b
    }

    fn read(data: &[u8]) -> Result<(Vec<Vec<u8>>, usize)> {
        let mut got = Vec::new();
        let end = parse(Path::new("f"), data, MAGIC, 4096, |_, p| {
            got.push(p.to_vec());
            Ok(())
        })?;
        Ok((got, end))
    }

    #[test]
    fn torn_tail_is_cut_at_every_byte_and_page_padding_is_the_end() {
        let full = file(3);
        let two = file(2).len();
        for cut in two..full.len() {
            let (got, end) = read(&full[..cut]).unwrap();
            assert_eq!((got.len(), end), (2, two), "cut at {cut}");
            // The same cut inside a zero-padded page (what O_DIRECT leaves).
            let mut padded = full[..cut].to_vec();
            padded.resize(PAGE, 0);
            let (got, end) = read(&padded).unwrap();
            assert_eq!((got.len(), end), (2, two), "padded cut at {cut}");
        }
        let mut f = full.clone();
        *f.last_mut().unwrap() ^= 1;
        assert_eq!(read(&f).unwrap().1, two);
        f.resize(3 * PAGE, 0);
        assert_eq!(read(&f).unwrap().1, two);
    }

    #[test]
    fn damage_before_valid_records_is_refused_with_its_offset() {
        let mut f = file(3);
        f[MAGIC.len() + 9] ^= 1; // payload of record 0
        let e = read(&f).unwrap_err().to_string();
        assert!(e.contains("CRC") && e.contains("offset 8"), "{e}");
        let mut f = file(3);
        f[MAGIC.len()] = 0xff; // length of record 0
        assert!(read(&f).is_err());
        let mut f = file(1);
        f.extend_from_slice(&[0; 8]);
        f.extend_from_slice(&file(1)[8..]);
        let e = read(&f).unwrap_err().to_string();
        assert!(e.contains("after the end"), "{e}");
        assert!(read(b"XTOTHER1").is_err());
    }

    proptest::proptest! {
        #![proptest_config(crate::proptest_config::config(256))]
        #[test]
        fn parse_never_panics(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let mut f = MAGIC.to_vec();
            f.extend_from_slice(&tail);
            let _ = read(&f);
        }
    }
}
