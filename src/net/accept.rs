//! The accept loop every listener of a shard runs (native protocol and
//! HTTP): accepts until the shard is [`Closing`], keeps at most
//! [`WireLimits::max_connections`](crate::net::limits::WireLimits) connections
//! open, answers one over the limit with the listener's own refusal, and on
//! shutdown waits for every connection to finish. Owns connection counting
//! and the graceful close shared by refusals and fatal frame errors.

use std::cell::Cell;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Gate;

use crate::net::tls::Stream;
use crate::runtime::admission::Closing;

/// Refusals being written at once; past this, excess connections are
/// dropped without an answer (a flood must not cost more than accepting).
const MAX_REFUSING: usize = 64;

/// Connections accepted past the limit because `evict` closed another one
/// for each, whose close has not finished yet.
const MAX_EVICTING: usize = 64;

/// Accepts connections on `listener` until `closing`, serving each with
/// `serve` while fewer than `max` are open; when `max` are open, `evict`
/// may close one of them to make room (it returns whether it did), and
/// the rest are answered with `refuse`; then waits for the connections
/// to end. `what` names the listener in log lines.
pub async fn accept_loop<S, SF, R, RF>(
    listener: TcpListener,
    closing: Closing,
    max: usize,
    what: &str,
    serve: S,
    refuse: R,
    evict: impl Fn() -> bool,
) where
    S: Fn(TcpStream) -> SF,
    SF: Future<Output = ()> + 'static,
    R: Fn(TcpStream) -> RF,
    RF: Future<Output = ()> + 'static,
{
    let gate = Gate::new();
    let open = Rc::new(Cell::new(0usize));
    let refusing = Rc::new(Cell::new(0usize));
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            closing.wait().await;
            None
        })
        .await;
        let stream = match accepted {
            None => break,
            Some(Ok(stream)) => stream,
            Some(Err(e)) => {
                // EMFILE and friends: report, back off, keep serving.
                log::warn!("{what}: accept failed: {e}");
                glommio::timer::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let room = open.get() < max || (open.get() < max + MAX_EVICTING && evict());
        let (counter, task) = if room {
            (
                Rc::clone(&open),
                Box::pin(serve(stream)) as std::pin::Pin<Box<dyn Future<Output = ()>>>,
            )
        } else if refusing.get() < MAX_REFUSING {
            (Rc::clone(&refusing), Box::pin(refuse(stream)) as _)
        } else {
            continue;
        };
        counter.set(counter.get() + 1);
        let counted = async move {
            let _g = Counted(counter);
            task.await
        };
        if gate.spawn(counted).map(|t| t.detach()).is_err() {
            break;
        }
    }
    drop(listener);
    let _ = gate.close().await;
}

/// Decrements a connection count when dropped.
struct Counted(Rc<Cell<usize>>);

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// Writes `answer`, then closes gracefully: FIN first (after TLS's
/// close_notify on a TLS stream), then a short, bounded drain of what the
/// peer already sent, so the close is not a reset that would destroy the
/// answer before the peer reads it.
pub async fn answer_and_close(stream: &mut Stream, answer: &[u8]) {
    stream.set_write_timeout(Some(Duration::from_secs(1)));
    if stream.write_all(answer).await.is_err() {
        return;
    }
    let _ = stream.close().await;
    stream.set_read_timeout(Some(Duration::from_millis(100)));
    let mut sink = [0u8; 4096];
    let mut drained = 0usize;
    while drained < (1 << 20) {
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}
