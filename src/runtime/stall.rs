//! Stall reports: a shard's task that ran longer than the preempt timer
//! plus a threshold without giving way is logged at `warn` with its task
//! queue, how long it overran and the stack where it was caught (glommio's
//! stall detector: a timer thread signals the shard's thread, which
//! captures its own stack). Off unless `xtdb serve --stall-report-ms N`
//! asks for it (a diagnosis tool: the report resolves symbols on the
//! shard's thread, which costs milliseconds each). Owns no state; must
//! never report a stall that is not one.

use std::time::Duration;

use glommio::{StallDetectionHandler, TaskQueueHandle};

/// Reports tasks that overran the preempt timer by more than `over`.
#[derive(Debug, Clone, Copy)]
pub struct StallReport {
    /// How far past the preempt timer a task must run to be reported.
    pub over: Duration,
}

impl StallDetectionHandler for StallReport {
    fn threshold(&self, _q: TaskQueueHandle, _expected: Duration) -> Option<Duration> {
        Some(self.over)
    }
    // `stall` is glommio's: one `log::warn!` line with the stack.
}

/// The executor builder's handler factory for `over` (`None`: no reports).
#[allow(clippy::type_complexity)]
pub fn handlers(over: Option<Duration>) -> Option<Box<dyn Fn() -> Box<dyn StallDetectionHandler>>> {
    over.map(|over| {
        Box::new(move || Box::new(StallReport { over }) as Box<dyn StallDetectionHandler>)
            as Box<dyn Fn() -> Box<dyn StallDetectionHandler>>
    })
}
