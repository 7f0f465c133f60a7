//! The tag catalog's durable store: series key (see the line protocol's
//! canonical key) → stable u32 tag id. It lives on shard 0, in
//! `DATA/catalog.xtcat`, a [`RecordFile`] whose records are `id u32` +
//! series key (UTF-8). Ids are assigned in order from [`FIRST_ID`] (2^31),
//! so they never collide with the small ids native-protocol clients choose
//! themselves; recovery checks that they run consecutively.
//!
//! An id is durable (`fdatasync`) before [`Store::resolve`] returns it, so
//! no acknowledged write can name an id that a crash forgets. Creation is
//! serialised by the record file; keys already known are answered from
//! memory without waiting. A failed write or sync fences the store: new
//! keys are refused until restart; a disk too full to grow the file
//! refuses them only until space is freed. Owns the store and its in-memory [`index`]
//! (measurements, tags, fields; rebuilt from the keys at open, extended as
//! keys are created); other shards reach both through the runtime.

pub mod index;
pub mod key;

use std::cell::RefCell;
use std::path::Path;

use crate::storage::error::{Error, Result};
use crate::storage::records::{OpenReport, RecordFile};
use index::{CatalogAnswer, CatalogQuery, Index};

/// First id the catalog assigns.
pub const FIRST_ID: u32 = 1 << 31;
/// File name inside the data directory.
pub const FILE_NAME: &str = "catalog.xtcat";
/// File magic.
pub const MAGIC: &[u8; 8] = b"XTCAT001";
/// Longest series key accepted, bytes.
pub const MAX_KEY_LEN: usize = 4096;
/// New keys made known between two yields to the executor.
const INSERT_BATCH: usize = 1024;

/// Shard 0's durable catalog.
pub struct Store {
    file: RecordFile,
    ids: RefCell<ahash::AHashMap<String, u32>>,
    keys: RefCell<Vec<String>>,
    index: RefCell<Index>,
    report: OpenReport,
    /// Held while new ids are assigned and appended.
    lock: glommio::sync::Semaphore,
}

impl Store {
    /// The byte after the last record of the store's file (what a backup
    /// copies).
    pub fn file_len(&self) -> u64 {
        self.file.len()
    }

    /// Opens (creating if missing) `DATA/catalog.xtcat` and reads it.
    pub async fn open(data_dir: &Path) -> Result<Store> {
        let path = data_dir.join(FILE_NAME);
        let mut ids = ahash::AHashMap::new();
        let mut keys: Vec<String> = Vec::new();
        let mut index = Index::new();
        let (file, report) = RecordFile::open(&path, MAGIC, MAX_KEY_LEN + 4, |_, p| {
            let (id, key) = decode(p)?;
            let expect = FIRST_ID.wrapping_add(keys.len() as u32);
            if id != expect {
                return Err(format!("id {id}, expected {expect}"));
            }
            ids.insert(key.to_string(), id);
            index.insert(key, id);
            keys.push(key.to_string());
            Ok(())
        })
        .await?;
        Ok(Store {
            file,
            ids: RefCell::new(ids),
            keys: RefCell::new(keys),
            index: RefCell::new(index),
            report,
            lock: glommio::sync::Semaphore::new(1),
        })
    }

    /// What open found (records, torn bytes dropped).
    pub fn open_report(&self) -> OpenReport {
        self.report
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.borrow().len()
    }

    /// Whether the catalog is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key of `id`, if it exists.
    pub fn key(&self, id: u32) -> Option<String> {
        let i = id.checked_sub(FIRST_ID)? as usize;
        self.keys.borrow().get(i).cloned()
    }

    fn known(&self, keys: &[String]) -> Vec<Option<u32>> {
        let ids = self.ids.borrow();
        keys.iter().map(|k| ids.get(k).copied()).collect()
    }

    /// Ids of `keys`; with `create`, missing keys get new ids, durable
    /// before this returns. Nothing is created when any new key is refused
    /// (too long, or the id space is full).
    pub async fn resolve(&self, keys: &[String], create: bool) -> Result<Vec<Option<u32>>> {
        let got = self.known(keys);
        if !create || got.iter().all(Option::is_some) {
            return Ok(got);
        }
        let mut new: Vec<&String> = Vec::new();
        let mut seen = ahash::AHashSet::new();
        for (k, id) in keys.iter().zip(&got) {
            if id.is_none() && seen.insert(k.as_str()) {
                if k.len() > MAX_KEY_LEN {
                    return Err(Error::Limit {
                        what: "series key length",
                        detail: format!("{} bytes (at most {MAX_KEY_LEN})", k.len()),
                    });
                }
                new.push(k);
            }
        }
        // Ids are assigned in append order: hold the lock from choosing
        // them until they are durable and known.
        let Ok(_permit) = self.lock.acquire_permit(1).await else {
            return Err(Error::Closed);
        };
        new.retain(|k| !self.ids.borrow().contains_key(k.as_str()));
        let first = FIRST_ID as u64 + self.len() as u64;
        if first + new.len() as u64 > u32::MAX as u64 + 1 {
            return Err(Error::Limit {
                what: "catalog id space",
                detail: format!("{} series keys", self.len()),
            });
        }
        let payloads: Vec<Vec<u8>> = new
            .iter()
            .enumerate()
            .map(|(i, k)| encode((first + i as u64) as u32, k))
            .collect();
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        self.file.append(&refs).await?;
        // In batches, yielding between them: creating many series at once
        // must not stall the shard's other clients.
        for batch in new.chunks(INSERT_BATCH) {
            {
                let mut ids = self.ids.borrow_mut();
                let mut names = self.keys.borrow_mut();
                let mut index = self.index.borrow_mut();
                for k in batch {
                    let id = FIRST_ID + names.len() as u32;
                    ids.insert((*k).clone(), id);
                    index.insert(k, id);
                    names.push((*k).clone());
                }
            }
            glommio::executor().yield_if_needed().await;
        }
        Ok(self.known(keys))
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

    /// Answers an InfluxQL metadata question from the index (an `Err`
    /// names a bad regex).
    pub fn query(&self, q: &CatalogQuery) -> std::result::Result<CatalogAnswer, String> {
        self.index.borrow().query(q)
    }

    /// Closes the file.
    pub async fn close(self) -> Result<()> {
        self.file.close().await
    }
}

/// One record's payload: `id u32` + key.
pub fn encode(id: u32, key: &str) -> Vec<u8> {
    let mut p = Vec::with_capacity(4 + key.len());
    p.extend_from_slice(&id.to_le_bytes());
    p.extend_from_slice(key.as_bytes());
    p
}

/// Splits a record's payload into id and key.
pub fn decode(p: &[u8]) -> std::result::Result<(u32, &str), String> {
    if p.len() < 4 {
        return Err("record shorter than its id".into());
    }
    let id = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
    let key = std::str::from_utf8(&p[4..]).map_err(|_| "key is not UTF-8".to_string())?;
    Ok((id, key))
}
