//! CPU slices for a shard's long work (an aggregate walk, a flush round's
//! block encoding, a compaction job): [`Slice::tick`] between steps yields
//! the task queue once the work has run for [`SLICE`], so writes, their
//! acknowledgements and small reads on the same shard wait at most about
//! that long behind it.
//!
//! Owns only the timing of yields; never sleeps or bounds bytes (that is
//! compaction's byte-rate pace), and never yields inside a step.
//!
//! Why not only `yield_if_needed`: it yields when the executor's preempt
//! timer (`--preempt-ms`, 5 ms) has fired, and an acknowledgement passes
//! several scheduling points (the request's parse, the WAL writer, the
//! sync's completion, the answer), each of which can wait that long behind
//! a long task.

use std::time::{Duration, Instant};

/// Longest a long task runs between yields of its task queue.
pub const SLICE: Duration = Duration::from_micros(500);

/// Yields the task queue once its owner has run for [`SLICE`].
pub struct Slice(Instant);

impl Slice {
    /// Starts a slice now.
    pub fn new() -> Self {
        Slice(Instant::now())
    }

    /// Between two steps: yields the task queue when the slice is spent
    /// (and starts a new one), or when the executor wants to preempt.
    pub async fn tick(&mut self) {
        if self.0.elapsed() >= SLICE {
            glommio::executor().yield_task_queue_now().await;
            self.0 = Instant::now();
        } else {
            glommio::executor().yield_if_needed().await;
        }
    }
}

impl Default for Slice {
    fn default() -> Self {
        Self::new()
    }
}
