//! What one shard has made durable in chunk files: the index of committed
//! blocks, the active chunk new blocks go to, the next chunk id and the
//! checkpoint (every WAL record below it is in durable blocks). Owns the
//! bookkeeping only; the I/O is done by flushing and recovery through
//! [`crate::storage::file`].

use std::cell::{Cell, RefCell};

use crate::storage::chunk::ActiveChunk;
use crate::storage::index::Index;

/// The shard's durable blocks.
#[derive(Default)]
pub(crate) struct Disk {
    /// Blocks by tag, and the chunk files to read them from.
    pub index: RefCell<Index>,
    /// Taken by the flusher for the duration of a round.
    pub active: RefCell<Option<ActiveChunk>>,
    /// Id of the next chunk to create.
    pub next_chunk_id: Cell<u64>,
    /// Every WAL record below this sequence is in durable blocks.
    pub checkpoint: Cell<u64>,
}
