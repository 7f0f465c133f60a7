//! The tag catalog: series key (see [`super::line`]) → stable u32 tag id.
//!
//! Design: the catalog lives on shard 0, in one append-only file
//! `DATA/catalog.xtcat`. Every shard keeps a cache of the ids it has seen;
//! a shard that meets unknown keys asks shard 0 once per HTTP batch, with
//! all of them, over a channel mesh of its own ([`CatMsg`]). Shard 0
//! appends the new records, `fdatasync`s, and only then answers, so an id
//! is durable before any write that uses it is acknowledged. Creation is
//! serialised on shard 0 (one append + sync at a time); keys that are
//! already known are answered from memory without waiting.
//!
//! Ids are assigned in order from [`FIRST_ID`] (2^31), so they never
//! collide with the small ids native-protocol clients choose themselves.
//!
//! File format (little endian):
//! - header, 8 bytes: magic `XTCAT001`;
//! - records: `len u32` (bytes of payload), `crc u32` (CRC32 of payload),
//!   payload = `id u32` + series key (UTF-8, `len - 4` bytes).
//!
//! Recovery reads every record; ids must run consecutively from
//! [`FIRST_ID`]. A torn last record (short, or failing its CRC with nothing
//! after it) is truncated away and reported; damage before the tail makes
//! open fail with the file and offset (nothing is guessed). A failed write
//! or sync fences the catalog: new keys are refused until restart.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::channels::channel_mesh::{MeshBuilder, Receivers, Senders};
use glommio::channels::local_channel::{self, LocalSender};
use glommio::io::{BufferedFile, OpenOptions};
use glommio::sync::Semaphore;

use crate::{Error, Result};

/// First id the catalog assigns.
pub const FIRST_ID: u32 = 1 << 31;
/// File name inside the data directory.
pub const FILE_NAME: &str = "catalog.xtcat";
const MAGIC: &[u8; 8] = b"XTCAT001";
/// Longest series key accepted, bytes.
pub const MAX_KEY_LEN: usize = 4096;
/// Requests in flight from one shard to shard 0.
const CREDITS: usize = 16;
/// Capacity of each catalog mesh channel.
pub const CHANNEL_CAPACITY: usize = 2 * CREDITS;

/// A catalog request.
#[derive(Debug)]
pub enum CatReq {
    /// Ids of these keys; create the missing ones if `create`.
    Resolve(Vec<String>, bool),
    /// Tags whose key contains the substring, at most `limit`, by id.
    List(String, usize),
}

/// A catalog answer.
#[derive(Debug)]
pub enum CatResp {
    /// One entry per requested key.
    Ids(Vec<Option<u32>>),
    /// `(id, key)` pairs.
    Tags(Vec<(u32, String)>),
    /// Failure.
    Failed(String),
}

/// A message on the catalog mesh.
#[derive(Debug)]
pub enum CatMsg {
    /// Request with an id to answer.
    Req(u64, CatReq),
    /// Answer to a request of the receiving shard.
    Resp(u64, CatResp),
}

/// The catalog mesh builder type.
pub type CatMesh = MeshBuilder<CatMsg, glommio::channels::channel_mesh::Full>;

/// Shard 0's durable store.
pub struct Store {
    path: PathBuf,
    file: BufferedFile,
    ids: RefCell<ahash::AHashMap<String, u32>>,
    keys: RefCell<Vec<String>>,
    end: Cell<u64>,
    lock: Semaphore,
    fenced: RefCell<Option<String>>,
}

fn corrupt(path: &Path, off: u64, what: impl Into<String>) -> Error {
    Error::corrupt(path, off, what.into())
}

impl Store {
    /// Opens (creating if missing) `DATA/catalog.xtcat` and reads it.
    pub async fn open(data_dir: &Path) -> Result<Store> {
        let path = data_dir.join(FILE_NAME);
        let gio = |what: &str, e: glommio::GlommioError<()>| {
            Error::io(what.to_string(), Some(path.clone()), to_io(e))
        };
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .buffered_open(&path)
            .await
            .map_err(|e| gio("open catalog", e))?;
        let size = file.file_size().await.map_err(|e| gio("stat catalog", e))?;
        let store = Store {
            path: path.clone(),
            file,
            ids: RefCell::new(ahash::AHashMap::new()),
            keys: RefCell::new(Vec::new()),
            end: Cell::new(MAGIC.len() as u64),
            lock: Semaphore::new(1),
            fenced: RefCell::new(None),
        };
        if size < MAGIC.len() as u64 {
            // New (or torn before its header was durable): write the header.
            store
                .file
                .write_at(MAGIC.to_vec(), 0)
                .await
                .map_err(|e| gio("write catalog header", e))?;
            store.file.truncate(MAGIC.len() as u64).await.ok();
            store
                .file
                .fdatasync()
                .await
                .map_err(|e| gio("sync catalog", e))?;
            if !existed {
                if let Ok(d) = glommio::io::Directory::open(data_dir).await {
                    d.sync().await.map_err(|e| gio("sync data dir", e))?;
                }
            }
            return Ok(store);
        }
        let data = store
            .file
            .read_at(0, size as usize)
            .await
            .map_err(|e| gio("read catalog", e))?;
        let data: &[u8] = &data;
        if data.len() < MAGIC.len() || &data[..MAGIC.len()] != MAGIC {
            return Err(corrupt(&path, 0, "bad catalog magic"));
        }
        let valid = parse_records(&path, data, |id, key| {
            let expect = FIRST_ID.wrapping_add(store.keys.borrow().len() as u32);
            if id != expect {
                return Err(format!("id {id}, expected {expect}"));
            }
            store.ids.borrow_mut().insert(key.to_string(), id);
            store.keys.borrow_mut().push(key.to_string());
            Ok(())
        })?;
        if valid < data.len() {
            eprintln!(
                "xtdb: catalog {}: torn tail at offset {valid}: {} bytes dropped",
                path.display(),
                data.len() - valid
            );
            store
                .file
                .truncate(valid as u64)
                .await
                .map_err(|e| gio("truncate catalog", e))?;
            store
                .file
                .fdatasync()
                .await
                .map_err(|e| gio("sync catalog", e))?;
        }
        store.end.set(valid as u64);
        Ok(store)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.borrow().len()
    }

    /// Whether the catalog is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ids of `keys`; with `create`, missing keys get new ids, durable
    /// before this returns.
    pub async fn resolve(&self, keys: &[String], create: bool) -> CatResp {
        let known = |keys: &[String]| -> Vec<Option<u32>> {
            let ids = self.ids.borrow();
            keys.iter().map(|k| ids.get(k).copied()).collect()
        };
        let got = known(keys);
        if !create || got.iter().all(Option::is_some) {
            return CatResp::Ids(got);
        }
        let Ok(_permit) = self.lock.acquire_permit(1).await else {
            return CatResp::Failed("catalog closed".into());
        };
        if let Some(f) = self.fenced.borrow().as_ref() {
            return CatResp::Failed(format!("catalog fenced after an I/O error: {f}"));
        }
        let got = known(keys);
        let mut buf = Vec::new();
        let mut new: Vec<String> = Vec::new();
        let mut seen = ahash::AHashSet::new();
        let mut next = FIRST_ID as u64 + self.len() as u64;
        for (k, id) in keys.iter().zip(&got) {
            if id.is_some() || !seen.insert(k.as_str()) {
                continue;
            }
            if k.len() > MAX_KEY_LEN {
                return CatResp::Failed(format!("series key longer than {MAX_KEY_LEN} bytes"));
            }
            if next > u32::MAX as u64 {
                return CatResp::Failed("catalog full".into());
            }
            encode_record(&mut buf, next as u32, k);
            new.push(k.clone());
            next += 1;
        }
        let off = self.end.get();
        let len = buf.len() as u64;
        let written = async {
            let mut pos = 0usize;
            while pos < buf.len() {
                let n = self
                    .file
                    .write_at(buf[pos..].to_vec(), off + pos as u64)
                    .await?;
                if n == 0 {
                    return Err(glommio::GlommioError::IoError(std::io::Error::other(
                        "short write",
                    )));
                }
                pos += n;
            }
            self.file.fdatasync().await
        }
        .await;
        if let Err(e) = written {
            let msg = format!("{}: {e}", self.path.display());
            *self.fenced.borrow_mut() = Some(msg.clone());
            return CatResp::Failed(format!("catalog write failed: {msg}"));
        }
        self.end.set(off + len);
        {
            let mut ids = self.ids.borrow_mut();
            let mut names = self.keys.borrow_mut();
            for k in new {
                ids.insert(k.clone(), FIRST_ID + names.len() as u32);
                names.push(k);
            }
        }
        CatResp::Ids(known(keys))
    }

    /// Tags whose key contains `pat`, by id, at most `limit`.
    pub fn list(&self, pat: &str, limit: usize) -> Vec<(u32, String)> {
        self.keys
            .borrow()
            .iter()
            .enumerate()
            .filter(|(_, k)| k.contains(pat))
            .take(limit)
            .map(|(i, k)| (FIRST_ID + i as u32, k.clone()))
            .collect()
    }
}

/// Appends one record.
pub fn encode_record(buf: &mut Vec<u8>, id: u32, key: &str) {
    let len = 4 + key.len() as u32;
    let mut payload = Vec::with_capacity(len as usize);
    payload.extend_from_slice(&id.to_le_bytes());
    payload.extend_from_slice(key.as_bytes());
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    buf.extend_from_slice(&payload);
}

/// Calls `f` for every valid record after the header; returns the end of
/// the valid prefix. A bad record that is not the last thing in the file is
/// corruption (an error naming the offset).
pub fn parse_records(
    path: &Path,
    data: &[u8],
    mut f: impl FnMut(u32, &str) -> std::result::Result<(), String>,
) -> Result<usize> {
    let mut off = MAGIC.len();
    while off < data.len() {
        let rest = &data[off..];
        if rest.len() < 8 {
            return Ok(off);
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if !(4..=MAX_KEY_LEN + 4).contains(&len) {
            if rest.iter().all(|&b| b == 0) {
                return Ok(off);
            }
            return Err(corrupt(
                path,
                off as u64,
                format!("bad record length {len}"),
            ));
        }
        if rest.len() < 8 + len {
            return Ok(off);
        }
        let payload = &rest[8..8 + len];
        if crc32fast::hash(payload) != crc {
            if rest.len() == 8 + len {
                return Ok(off);
            }
            return Err(corrupt(path, off as u64, "record CRC mismatch"));
        }
        let id = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]);
        let key = std::str::from_utf8(&payload[4..])
            .map_err(|_| corrupt(path, off as u64, "key is not UTF-8"))?;
        f(id, key).map_err(|m| corrupt(path, off as u64, m))?;
        off += 8 + len;
    }
    Ok(off)
}

fn to_io(e: glommio::GlommioError<()>) -> std::io::Error {
    match e {
        glommio::GlommioError::IoError(e) => e,
        glommio::GlommioError::EnhancedIoError { source, .. } => source,
        other => std::io::Error::other(other.to_string()),
    }
}

/// One shard's handle on the catalog: the store on shard 0, a cache and
/// a mesh client elsewhere.
pub struct Catalog {
    index: usize,
    store: Option<Rc<Store>>,
    senders: Senders<CatMsg>,
    credits: Semaphore,
    pending: RefCell<HashMap<u64, LocalSender<CatResp>>>,
    next: Cell<u64>,
    cache: RefCell<ahash::AHashMap<String, u32>>,
}

impl Catalog {
    /// Joins the catalog mesh (every shard, once, at start-up, before
    /// anything can fail, like the router's mesh).
    pub async fn join_mesh(mesh: CatMesh) -> Result<(Senders<CatMsg>, Receivers<CatMsg>)> {
        mesh.join().await.map_err(Error::from)
    }

    /// Builds this shard's handle and spawns the dispatcher. Shard 0 passes
    /// its store.
    pub fn start(
        senders: Senders<CatMsg>,
        mut receivers: Receivers<CatMsg>,
        store: Option<Store>,
    ) -> Rc<Catalog> {
        let cat = Rc::new(Catalog {
            index: senders.peer_id(),
            store: store.map(Rc::new),
            senders,
            credits: Semaphore::new(CREDITS as u64),
            pending: RefCell::new(HashMap::new()),
            next: Cell::new(1),
            cache: RefCell::new(ahash::AHashMap::new()),
        });
        for (peer, rx) in receivers.streams() {
            let c = Rc::clone(&cat);
            glommio::spawn_local(async move {
                // Dispatch only; never await a send here (glommio #555).
                while let Some(msg) = rx.recv().await {
                    match msg {
                        CatMsg::Req(id, req) => {
                            let c = Rc::clone(&c);
                            glommio::spawn_local(async move {
                                let resp = c.local(req).await;
                                let _ = c.senders.send_to(peer, CatMsg::Resp(id, resp)).await;
                            })
                            .detach();
                        }
                        CatMsg::Resp(id, resp) => {
                            if let Some(tx) = c.pending.borrow_mut().remove(&id) {
                                let _ = tx.try_send(resp);
                            }
                        }
                    }
                }
            })
            .detach();
        }
        cat
    }

    async fn local(&self, req: CatReq) -> CatResp {
        let Some(store) = &self.store else {
            return CatResp::Failed(format!("shard {} holds no catalog", self.index));
        };
        match req {
            CatReq::Resolve(keys, create) => store.resolve(&keys, create).await,
            CatReq::List(pat, limit) => CatResp::Tags(store.list(&pat, limit)),
        }
    }

    async fn call(&self, req: CatReq) -> CatResp {
        if self.store.is_some() {
            return self.local(req).await;
        }
        let Ok(_permit) = self.credits.acquire_permit(1).await else {
            return CatResp::Failed("catalog client closed".into());
        };
        let id = self.next.get();
        self.next.set(id + 1);
        let (tx, rx) = local_channel::new_bounded(1);
        self.pending.borrow_mut().insert(id, tx);
        if let Err(e) = self.senders.send_to(0, CatMsg::Req(id, req)).await {
            self.pending.borrow_mut().remove(&id);
            return CatResp::Failed(format!("send to shard 0 failed: {e}"));
        }
        rx.recv()
            .await
            .unwrap_or_else(|| CatResp::Failed("catalog answer lost".into()))
    }

    /// Ids of `keys` (in order); `create` assigns ids to unknown keys,
    /// durably, before returning.
    pub async fn resolve(
        &self,
        keys: &[&str],
        create: bool,
    ) -> std::result::Result<Vec<Option<u32>>, String> {
        let mut out: Vec<Option<u32>> = {
            let cache = self.cache.borrow();
            keys.iter().map(|k| cache.get(*k).copied()).collect()
        };
        let mut missing: Vec<String> = Vec::new();
        {
            let mut seen = ahash::AHashSet::new();
            for (k, id) in keys.iter().zip(&out) {
                if id.is_none() && seen.insert(*k) {
                    missing.push((*k).to_string());
                }
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        let ids = match self.call(CatReq::Resolve(missing.clone(), create)).await {
            CatResp::Ids(ids) if ids.len() == missing.len() => ids,
            CatResp::Failed(e) => return Err(e),
            other => return Err(format!("unexpected catalog answer {other:?}")),
        };
        {
            let mut cache = self.cache.borrow_mut();
            for (k, id) in missing.into_iter().zip(ids) {
                if let Some(id) = id {
                    cache.insert(k, id);
                }
            }
            for (k, slot) in keys.iter().zip(out.iter_mut()) {
                if slot.is_none() {
                    *slot = cache.get(*k).copied();
                }
            }
        }
        Ok(out)
    }

    /// Tags whose key contains `pat`, by id.
    pub async fn list(
        &self,
        pat: &str,
        limit: usize,
    ) -> std::result::Result<Vec<(u32, String)>, String> {
        match self.call(CatReq::List(pat.to_string(), limit)).await {
            CatResp::Tags(t) => Ok(t),
            CatResp::Failed(e) => Err(e),
            other => Err(format!("unexpected catalog answer {other:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(n: u32) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        for i in 0..n {
            encode_record(&mut b, FIRST_ID + i, &format!("m,tag=t{i} v"));
        }
        b
    }

    fn read(data: &[u8]) -> Result<(Vec<(u32, String)>, usize)> {
        let mut got = Vec::new();
        let end = parse_records(Path::new("cat"), data, |id, k| {
            got.push((id, k.to_string()));
            Ok(())
        })?;
        Ok((got, end))
    }

    #[test]
    fn records_round_trip() {
        let f = file(3);
        let (got, end) = read(&f).unwrap();
        assert_eq!(end, f.len());
        assert_eq!(got[2], (FIRST_ID + 2, "m,tag=t2 v".to_string()));
    }

    #[test]
    fn torn_tail_is_cut_at_every_byte() {
        let full = file(3);
        let two = file(2).len();
        for cut in two..full.len() {
            let (got, end) = read(&full[..cut]).unwrap();
            assert_eq!((got.len(), end), (2, two), "cut at {cut}");
        }
        // A flipped bit in the last record: torn tail, not corruption.
        let mut f = full.clone();
        *f.last_mut().unwrap() ^= 1;
        assert_eq!(read(&f).unwrap().1, two);
        // Zeroed preallocation after the records is the end too.
        let mut f = full.clone();
        f.extend_from_slice(&[0; 64]);
        assert_eq!(read(&f).unwrap().1, full.len());
    }

    #[test]
    fn damage_before_the_tail_is_refused() {
        let mut f = file(3);
        f[MAGIC.len() + 9] ^= 1; // payload of record 0
        let e = read(&f).unwrap_err().to_string();
        assert!(e.contains("CRC") && e.contains("offset 8"), "{e}");
    }
}
