//! What one shard has made durable in chunk files: the index of committed
//! segments and the registry of chunk files, the active flush chunk with
//! the entries its directory will list when sealed, the next chunk id, the
//! checkpoint (every WAL record below it is in durable blocks), and the
//! signal that wakes compaction when there is new input. Owns the
//! bookkeeping only; the I/O is done by flushing, compaction, retention
//! and recovery through [`crate::storage::file`].

use std::cell::{Cell, RefCell};

use event_listener::Event;

use crate::storage::chunk::{Chunk, Entries};
use crate::storage::index::Index;

/// The shard's durable blocks.
#[derive(Default)]
pub(crate) struct Disk {
    /// Segments by tag, and the chunk files to read them from.
    pub index: RefCell<Index>,
    /// The flush chunk new blocks go to; taken by a flush round while it
    /// runs.
    pub active: RefCell<Option<Chunk>>,
    /// The committed segments of the active chunk, for its directory.
    pub active_entries: RefCell<Entries>,
    /// Id of the next chunk to create.
    pub next_chunk_id: Cell<u64>,
    /// Every WAL record below this sequence is in durable blocks.
    pub checkpoint: Cell<u64>,
    /// Fired when a flush chunk is sealed (new compaction input).
    pub sealed: Event,
}

impl Disk {
    /// A fresh chunk id (ids are never reused: a compacted chunk names the
    /// ids it supersedes).
    pub fn new_chunk_id(&self) -> u64 {
        let id = self.next_chunk_id.get();
        self.next_chunk_id.set(id + 1);
        id
    }

    /// Notes that a flush chunk was sealed.
    pub fn note_sealed(&self) {
        self.sealed.notify(usize::MAX);
    }
}
