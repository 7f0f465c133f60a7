//! A shard's life cycle and the signals between its tasks: the fence (a
//! failed durable write stops all acknowledgements for good), closing, the
//! flush lock and the events that wake the flusher and the writers waiting
//! for memory, whether the disk is too full for the next chunk file, and
//! what the flusher and `close` are doing (for stall reports). Owns no data
//! and does no I/O.

use std::cell::{Cell, RefCell};

use event_listener::Event;

use crate::storage::error::{Error, Result};
use crate::storage::wal::Wal;

/// Life cycle and wake-ups of one shard.
pub(crate) struct Control {
    /// Set when a flush failed: the shard stops acknowledging writes.
    pub fenced: RefCell<Option<String>>,
    /// Set while the flusher cannot create its next chunk file (ENOSPC):
    /// why. Writers that would wait for memory are refused with it instead;
    /// cleared by the next round that writes.
    pub no_room: RefCell<Option<String>>,
    /// Set by `close`.
    pub closing: Cell<bool>,
    /// Serialises flush rounds.
    pub flush_lock: glommio::sync::Semaphore,
    /// Serialises compaction jobs and retention passes.
    pub compact_lock: glommio::sync::Semaphore,
    /// Wakes the flusher.
    pub flush_wanted: Event,
    /// Fired after each flush round (writers waiting for memory).
    pub flushed: Event,
    /// What the flusher (or a caller's flush round) is doing now.
    pub flush_stage: Cell<&'static str>,
    /// How far `close` got.
    pub close_stage: Cell<&'static str>,
    /// When the last write arrived (compaction settles after a quiet spell).
    pub last_write: Cell<std::time::Instant>,
    /// What compaction is doing now.
    pub compact_stage: Cell<&'static str>,
    /// Fired when the compactor should look for work now.
    pub compact_wanted: Event,
}

impl Default for Control {
    fn default() -> Self {
        Control {
            fenced: RefCell::new(None),
            no_room: RefCell::new(None),
            closing: Cell::new(false),
            flush_lock: glommio::sync::Semaphore::new(1),
            compact_lock: glommio::sync::Semaphore::new(1),
            flush_wanted: Event::new(),
            flushed: Event::new(),
            flush_stage: Cell::new("idle"),
            close_stage: Cell::new("open"),
            last_write: Cell::new(std::time::Instant::now()),
            compact_stage: Cell::new("idle"),
            compact_wanted: Event::new(),
        }
    }
}

impl Control {
    /// `Err` if a failed WAL write or sync, or a failed flush, fenced the
    /// shard (one fence for the whole shard), or if it is closing.
    pub fn check(&self, wal: Option<&Wal>) -> Result<()> {
        if let Some(why) = self.fenced.borrow().as_ref() {
            return Err(Error::fenced(why.clone()));
        }
        if let Some(why) = wal.and_then(|w| w.fenced()) {
            return Err(Error::fenced(why));
        }
        if self.closing.get() {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// Fences the shard for `why` and wakes everyone waiting on a flush.
    pub fn fence(&self, why: String) {
        *self.fenced.borrow_mut() = Some(why);
        self.flushed.notify(usize::MAX);
    }
}
