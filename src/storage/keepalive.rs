//! A workaround for a lost wake-up in glommio 0.9's executor loop.
//!
//! `LocalExecutor::run_task_queues` (glommio-0.9.0 `src/executor/mod.rs`,
//! lines 1323-1337) returns `false` both when no task queue is runnable and
//! when the preemption check (`need_preempt()`: an unconsumed completion on
//! the latency ring, such as an expired preemption timer) fires before it
//! ran anything. The run loop (lines 1489-1503) parks on `false` either way,
//! and the reactor's sleep decision (`sys/uring.rs`, `Reactor::wait`) only
//! looks at the rings, not at runnable task queues. So a task that is
//! runnable at that moment waits until something else wakes the executor:
//! a disk completion, or the nearest registered timer, which the reactor
//! arms before it sleeps. When nothing of the shard's is in flight (its
//! next step is the runnable task's own), that can be never. The power-loss
//! test hit it about once in 1,000-3,000 cases, and the wait lasted until
//! the test's 20 s watchdog timer fired. (Fixed upstream in the glommio fork,
//! glommio/glommio#53, "do not park the executor while a task queue is still
//! runnable".)
//!
//! The workaround keeps a timer registered with the shard's executor at all
//! times while the shard is open, so such a park ends within [`PERIOD`] (at
//! most twice that) and the runnable task then runs. Two overlapping timers
//! are kept registered, so that one is still pending while this task itself
//! is runnable after the other fired. This changes no ordering and
//! acknowledges nothing: it only wakes the executor. Cost: one timer
//! wake-up per [`PERIOD`] while the executor is otherwise idle.
//!
//! Client executors (the load generator's writers, verifier and queries,
//! the tests' clients) run their work inside [`awake`] for the same
//! reason: once, under a fully loaded machine, a load generator stopped
//! sending while its server stayed healthy, and a test client hung.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use event_listener::Event;
use glommio::timer::Timer;

/// How often the executor is woken at least while a shard is open.
pub const PERIOD: Duration = Duration::from_millis(50);

/// Stops the keep-alive task of a shard.
#[derive(Clone, Default)]
pub(crate) struct KeepAliveStop {
    stop: Rc<Cell<bool>>,
    wake: Rc<Event>,
}

impl KeepAliveStop {
    /// Makes the keep-alive task return (it stops at its next poll).
    pub(crate) fn stop(&self) {
        self.stop.set(true);
        self.wake.notify(usize::MAX);
    }
}

/// Runs `fut` on the current glommio executor with the keep-alive task
/// beside it, for executors that are not a shard's (the load generator's
/// and test clients'): the lost wake-up can park any glommio executor,
/// and a client with every task runnable and nothing in flight then waits
/// for ever.
pub async fn awake<F: Future>(fut: F) -> F::Output {
    let stop = KeepAliveStop::default();
    glommio::spawn_local(run(stop.clone())).detach();
    let out = fut.await;
    stop.stop();
    out
}

/// The keep-alive task: keeps timers registered until `stop`.
pub(crate) async fn run(stop: KeepAliveStop) {
    let mut due: Pin<Box<Timer>> = Box::pin(Timer::new(PERIOD));
    let mut backup: Pin<Box<Timer>> = Box::pin(Timer::new(2 * PERIOD));
    while !stop.stop.get() {
        let listener = stop.wake.listen();
        if stop.stop.get() {
            return;
        }
        let mut listener = std::pin::pin!(listener);
        std::future::poll_fn(|cx| {
            if listener.as_mut().poll(cx).is_ready() {
                return Poll::Ready(());
            }
            // Both polled, so both are registered with the reactor; the
            // result of `backup` is only looked at once it becomes `due`.
            let _ = backup.as_mut().poll(cx);
            due.as_mut().poll(cx).map(|_| ())
        })
        .await;
        due = std::mem::replace(&mut backup, Box::pin(Timer::new(2 * PERIOD)));
    }
}
