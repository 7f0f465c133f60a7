//! Every shard's handle on the tag catalog: a cache of the series keys it
//! has seen, and requests to the store on shard 0 (through the router,
//! once per batch with all the unknown keys) for the rest. Owns the cache;
//! the durable store is [`crate::storage::catalog::Store`].

use std::cell::RefCell;
use std::rc::Rc;

use crate::runtime::command::{Answer, Command, Failure};
use crate::runtime::dispatch::execute;
use crate::runtime::router::Router;
use crate::storage::catalog::index::{CatalogAnswer, CatalogQuery};

/// One shard's catalog client.
pub struct Catalog {
    router: Rc<Router>,
    cache: RefCell<ahash::AHashMap<String, u32>>,
}

impl Catalog {
    /// A client for this shard.
    pub fn new(router: Rc<Router>) -> Rc<Catalog> {
        Rc::new(Catalog {
            router,
            cache: RefCell::default(),
        })
    }

    /// Ids of `keys` (in order); `create` assigns ids to unknown keys,
    /// durably, before returning.
    pub async fn resolve(&self, keys: &[&str], create: bool) -> Result<Vec<Option<u32>>, Failure> {
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
        let n = missing.len();
        let cmd = Command::Resolve {
            keys: missing.clone(),
            create,
        };
        let ids = match execute(&self.router, cmd).await? {
            Answer::Ids(ids) if ids.len() == n => ids,
            other => return Err(Failure::unexpected("catalog resolve", &other)),
        };
        // Ids never change once assigned, so they can be cached for good.
        {
            let mut cache = self.cache.borrow_mut();
            for (k, id) in missing.into_iter().zip(&ids) {
                if let Some(id) = id {
                    cache.insert(k, *id);
                }
            }
        }
        let mut ids = ids.into_iter();
        let mut by_key: ahash::AHashMap<&str, Option<u32>> = ahash::AHashMap::new();
        for (k, slot) in keys.iter().zip(out.iter_mut()) {
            if slot.is_none() {
                let id = *by_key.entry(k).or_insert_with(|| ids.next().flatten());
                *slot = id;
            }
        }
        Ok(out)
    }

    /// The index's answer to an InfluxQL metadata question (asked on
    /// shard 0; nothing is cached, the index changes as series are created).
    pub async fn query(&self, q: CatalogQuery) -> Result<CatalogAnswer, Failure> {
        match execute(&self.router, Command::Catalog(q)).await? {
            Answer::Catalog(a) => Ok(a),
            other => Err(Failure::unexpected("catalog query", &other)),
        }
    }

    /// Series whose key contains `pat`, by id, at most `limit`.
    pub async fn list(&self, pat: &str, limit: usize) -> Result<Vec<(u32, String)>, Failure> {
        let cmd = Command::ListTags {
            pattern: pat.to_string(),
            limit,
        };
        match execute(&self.router, cmd).await? {
            Answer::Tags(t) => Ok(t),
            other => Err(Failure::unexpected("catalog list", &other)),
        }
    }
}
