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
pub struct Slice {
    started: Instant,
    longest: Duration,
}

impl Slice {
    /// Starts a slice now.
    pub fn new() -> Self {
        Slice {
            started: Instant::now(),
            longest: Duration::ZERO,
        }
    }

    /// Between two steps: yields the task queue when the slice is spent
    /// (and starts a new one), or when the executor wants to preempt.
    pub async fn tick(&mut self) {
        let ran = self.started.elapsed();
        if ran >= SLICE {
            self.longest = self.longest.max(ran);
            glommio::executor().yield_task_queue_now().await;
            self.started = Instant::now();
        } else {
            glommio::executor().yield_if_needed().await;
        }
    }

    /// The longest the owner ran between two yields of the task queue so
    /// far (the current stretch included); a step longer than [`SLICE`]
    /// shows here.
    pub fn longest(&self) -> Duration {
        self.longest.max(self.started.elapsed())
    }
}

impl Default for Slice {
    fn default() -> Self {
        Self::new()
    }
}
