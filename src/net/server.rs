//! The per-shard side of the native protocol: accepts connections on this
//! shard's `SO_REUSEPORT` listener, reads frames, runs each request through
//! the [`Router`] and writes the answer. Owns connection state only; never
//! panics on input (a bad frame gets an error frame; if the stream can no
//! longer be framed the connection is closed after it).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Gate;

use crate::net::protocol::{self, code, FrameError, Request, Response, HEADER_LEN};
use crate::runtime::router::{owner, Router, ShardRequest, ShardResponse};
use crate::Point;

/// A one-way "closing" signal shared by this shard's tasks. Waiters that
/// are dropped unregister, so long-lived connections do not accumulate
/// wakers.
#[derive(Clone, Default)]
pub struct Closing {
    inner: Rc<ClosingInner>,
}

#[derive(Default)]
struct ClosingInner {
    closed: Cell<bool>,
    next: Cell<u64>,
    wakers: RefCell<HashMap<u64, Waker>>,
}

impl Closing {
    /// Signals every waiter.
    pub fn close(&self) {
        self.inner.closed.set(true);
        let wakers: Vec<Waker> = self
            .inner
            .wakers
            .borrow_mut()
            .drain()
            .map(|(_, w)| w)
            .collect();
        for w in wakers {
            w.wake();
        }
    }

    /// Whether [`Closing::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.get()
    }

    /// Resolves once closed.
    pub fn wait(&self) -> ClosingWait {
        let key = self.inner.next.get();
        self.inner.next.set(key + 1);
        ClosingWait {
            inner: Rc::clone(&self.inner),
            key,
        }
    }
}

/// Future returned by [`Closing::wait`].
pub struct ClosingWait {
    inner: Rc<ClosingInner>,
    key: u64,
}

impl Future for ClosingWait {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.inner.closed.get() {
            return Poll::Ready(());
        }
        self.inner
            .wakers
            .borrow_mut()
            .insert(self.key, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for ClosingWait {
    fn drop(&mut self) {
        self.inner.wakers.borrow_mut().remove(&self.key);
    }
}

/// Accepts connections until `closing`, then waits for every connection to
/// finish its in-flight request.
pub async fn accept_loop(listener: TcpListener, router: Rc<Router>, closing: Closing) {
    let gate = Gate::new();
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            closing.wait().await;
            None
        })
        .await;
        match accepted {
            None => break,
            Some(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                let (r, c) = (Rc::clone(&router), closing.clone());
                if gate.spawn(serve(stream, r, c)).map(|t| t.detach()).is_err() {
                    break;
                }
            }
            Some(Err(e)) => {
                // EMFILE and friends: report, back off, keep serving.
                eprintln!("shard {}: accept failed: {e}", router.local().index);
                glommio::timer::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
    drop(listener);
    let _ = gate.close().await;
}

/// How long an answer may still take to write once shutdown has begun.
pub const WRITE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

enum Next {
    Frame([u8; HEADER_LEN]),
    Eof,
    Closing,
    Failed(FrameError),
}

/// Reads a header: clean EOF before its first byte is `Eof`, EOF inside it
/// is a truncation.
async fn read_header(stream: &mut TcpStream) -> Next {
    let mut raw = [0u8; HEADER_LEN];
    let mut got = 0;
    while got < HEADER_LEN {
        match stream.read(&mut raw[got..]).await {
            Ok(0) if got == 0 => return Next::Eof,
            Ok(0) => return Next::Failed(truncated(got, HEADER_LEN, "header")),
            Ok(n) => got += n,
            Err(_) => return Next::Eof,
        }
    }
    Next::Frame(raw)
}

fn truncated(got: usize, want: usize, what: &str) -> FrameError {
    FrameError {
        code: code::TRUNCATED,
        message: format!("connection closed after {got} of {want} {what} bytes"),
        id: 0,
    }
}

/// Serves one connection until EOF, an unframeable error or shutdown.
pub async fn serve(mut stream: TcpStream, router: Rc<Router>, closing: Closing) {
    let mut payload = Vec::new();
    let mut out = Vec::new();
    loop {
        let next = futures_lite::future::or(read_header(&mut stream), async {
            closing.wait().await;
            Next::Closing
        })
        .await;
        let raw = match next {
            Next::Frame(raw) => raw,
            Next::Eof | Next::Closing => return,
            Next::Failed(e) => return answer_and_close(&mut stream, &mut out, &e).await,
        };
        let started = Instant::now();
        let h = match protocol::decode_header(&raw) {
            Ok(h) => h,
            Err(e) => return answer_and_close(&mut stream, &mut out, &e).await,
        };
        payload.clear();
        payload.resize(h.len as usize, 0);
        // A request whose payload has not fully arrived is not in flight
        // yet: shutdown does not wait for a client that stalls inside one.
        let got = futures_lite::future::or(
            async { Some(stream.read_exact(&mut payload).await.is_ok()) },
            async {
                closing.wait().await;
                None
            },
        )
        .await;
        if got.is_none() {
            return;
        }
        if got == Some(false) {
            let mut e = truncated(0, h.len as usize, "payload");
            e.message = format!("connection closed inside a {}-byte payload", h.len);
            e.id = h.id;
            return answer_and_close(&mut stream, &mut out, &e).await;
        }
        let resp = match protocol::decode_request(&raw, &h, &payload) {
            Ok(req) => {
                let is_write = matches!(req, Request::Write(_));
                let resp = execute(&router, req).await;
                if is_write && matches!(resp, Response::Ack(_)) {
                    let us = started.elapsed().as_micros() as u64;
                    router
                        .local()
                        .ack_us
                        .borrow_mut()
                        .saturating_record(us.max(1));
                }
                resp
            }
            Err(e) => {
                if !e.recoverable() {
                    return answer_and_close(&mut stream, &mut out, &e).await;
                }
                if answer_error(&mut stream, &mut out, &e).await.is_err() {
                    return;
                }
                continue;
            }
        };
        out.clear();
        protocol::encode_response(&mut out, h.id, &resp);
        // A client that stops reading cannot hold up shutdown for more than
        // WRITE_GRACE once it has begun.
        let written =
            futures_lite::future::or(async { stream.write_all(&out).await.is_ok() }, async {
                closing.wait().await;
                glommio::timer::sleep(WRITE_GRACE).await;
                false
            })
            .await;
        if !written {
            return;
        }
    }
}

/// Answers with an error frame, then closes gracefully: FIN first, then a
/// short, bounded drain of what the peer already sent, so the close is not a
/// reset that would destroy the error frame before the peer reads it.
async fn answer_and_close(stream: &mut TcpStream, out: &mut Vec<u8>, e: &FrameError) {
    if answer_error(stream, out, e).await.is_err() {
        return;
    }
    let _ = stream.shutdown(std::net::Shutdown::Write).await;
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_millis(100)));
    let mut sink = [0u8; 4096];
    let mut drained = 0usize;
    while drained < (1 << 20) {
        match stream.read(&mut sink).await {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

async fn answer_error(
    stream: &mut TcpStream,
    out: &mut Vec<u8>,
    e: &FrameError,
) -> std::io::Result<()> {
    out.clear();
    protocol::encode_response(
        out,
        e.id,
        &Response::Error {
            code: e.code,
            message: e.message.clone(),
        },
    );
    stream.write_all(out).await
}

/// Runs one client request across the shards and builds its answer.
pub async fn execute(router: &Rc<Router>, req: Request) -> Response {
    match req {
        Request::Write(points) => write(router, points).await,
        Request::Range { tag, start, end } => {
            let dest = owner(tag, router.shards());
            match Rc::clone(router)
                .call(dest, ShardRequest::Range { tag, start, end })
                .await
            {
                ShardResponse::Points(p) => Response::Points(p),
                other => failure(other),
            }
        }
        Request::Latest(tags) => latest(router, tags).await,
        Request::Stats => stats(router).await,
    }
}

fn failure(r: ShardResponse) -> Response {
    match r {
        ShardResponse::Failed(code, message) => Response::Error { code, message },
        other => Response::Error {
            code: code::INTERNAL,
            message: format!("unexpected shard answer {other:?}"),
        },
    }
}

/// Splits a batch by owner, sends one sub-batch per shard concurrently and
/// acknowledges once every sub-batch is durable.
async fn write(router: &Rc<Router>, points: Vec<Point>) -> Response {
    let n = points.len() as u64;
    if points.is_empty() {
        return Response::Ack(0);
    }
    let shards = router.shards();
    let mut parts: Vec<Vec<Point>> = vec![Vec::new(); shards];
    let first = owner(points[0].tag, shards);
    if points.iter().all(|p| owner(p.tag, shards) == first) {
        parts[first] = points;
    } else {
        for p in &points {
            parts[owner(p.tag, shards)].push(*p);
        }
    }
    let tasks: Vec<_> = parts
        .into_iter()
        .enumerate()
        .filter(|(_, v)| !v.is_empty())
        .map(|(dest, v)| router.spawn_call(dest, ShardRequest::Write(v)))
        .collect();
    let mut err = None;
    for t in tasks {
        match t.await {
            ShardResponse::Written => {}
            other => {
                if err.is_none() {
                    err = Some(failure(other));
                }
            }
        }
    }
    err.unwrap_or(Response::Ack(n))
}

/// Groups tags by owner, asks every owner concurrently and puts the answers
/// back in request order.
async fn latest(router: &Rc<Router>, tags: Vec<u32>) -> Response {
    let shards = router.shards();
    let mut groups: Vec<(Vec<usize>, Vec<u32>)> = vec![(Vec::new(), Vec::new()); shards];
    for (i, &t) in tags.iter().enumerate() {
        let g = &mut groups[owner(t, shards)];
        g.0.push(i);
        g.1.push(t);
    }
    let tasks: Vec<_> = groups
        .into_iter()
        .enumerate()
        .filter(|(_, g)| !g.1.is_empty())
        .map(|(dest, (pos, t))| (pos, router.spawn_call(dest, ShardRequest::Latest(t))))
        .collect();
    let mut out = vec![None; tags.len()];
    let mut err = None;
    for (pos, t) in tasks {
        match t.await {
            ShardResponse::Latest(v) if v.len() == pos.len() => {
                for (i, p) in pos.into_iter().zip(v) {
                    out[i] = p;
                }
            }
            other => {
                if err.is_none() {
                    err = Some(failure(other));
                }
            }
        }
    }
    err.unwrap_or(Response::Latest(out))
}

/// Gathers every shard's report and names the counters: `shardN.*` and
/// `total.*`.
async fn stats(router: &Rc<Router>) -> Response {
    let tasks: Vec<_> = (0..router.shards())
        .map(|d| router.spawn_call(d, ShardRequest::Stats))
        .collect();
    let mut reports = Vec::new();
    for t in tasks {
        match t.await {
            ShardResponse::Stats(r) => reports.push(*r),
            other => return failure(other),
        }
    }
    let mut out = vec![("shards".to_string(), reports.len() as u64)];
    let mut total = crate::storage::ShardStats::default();
    let mut hist = crate::runtime::router::new_histogram();
    let mut total_rate = 0;
    for r in &reports {
        let p = format!("shard{}", r.shard);
        out.push((format!("{p}.cpu"), r.cpu as u64));
        let rate = named(&mut out, &p, &r.stats, &r.ack_us, r.uptime);
        total_rate += rate;
        total.merge(&r.stats);
        let _ = hist.add(&r.ack_us);
        out.push((format!("{p}.uptime_ms"), r.uptime.as_millis() as u64));
    }
    let uptime = reports.iter().map(|r| r.uptime).max().unwrap_or_default();
    named(&mut out, "total", &total, &hist, uptime);
    out.push(("total.uptime_ms".to_string(), uptime.as_millis() as u64));
    // The total rate is the sum of the shards' rates.
    if let Some(e) = out.iter_mut().find(|(n, _)| n == "total.points_per_sec") {
        e.1 = total_rate;
    }
    Response::Stats(out)
}

/// Pushes `prefix.*` counters; returns the average points/s since start.
fn named(
    out: &mut Vec<(String, u64)>,
    prefix: &str,
    s: &crate::storage::ShardStats,
    h: &hdrhistogram::Histogram<u64>,
    uptime: std::time::Duration,
) -> u64 {
    for (name, v) in s.fields() {
        out.push((format!("{prefix}.{name}"), v));
    }
    let group = s.wal_synced_records.checked_div(s.wal_syncs).unwrap_or(0);
    out.push((format!("{prefix}.wal_group_avg"), group));
    let ms = uptime.as_millis().max(1) as u64;
    let rate = s.points_written.saturating_mul(1000) / ms;
    out.push((format!("{prefix}.points_per_sec"), rate));
    out.push((format!("{prefix}.ack_count"), h.len()));
    for (name, q) in [("p50", 0.5), ("p99", 0.99), ("p999", 0.999)] {
        out.push((format!("{prefix}.ack_{name}_us"), h.value_at_quantile(q)));
    }
    out.push((format!("{prefix}.ack_max_us"), h.max()));
    rate
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closing_waiters_unregister_and_wake() {
        glommio::LocalExecutorBuilder::default()
            .io_memory(1 << 20)
            .make()
            .unwrap()
            .run(async {
                let c = Closing::default();
                for _ in 0..100 {
                    // A wait that loses its race is dropped and unregisters.
                    futures_lite::future::or(c.wait(), futures_lite::future::ready(())).await;
                    let mut w = Box::pin(c.wait());
                    assert!(futures_lite::future::poll_once(&mut w).await.is_none());
                }
                assert!(c.inner.wakers.borrow().is_empty());
                let waiter = glommio::spawn_local({
                    let c = c.clone();
                    async move { c.wait().await }
                });
                glommio::executor().yield_task_queue_now().await;
                assert_eq!(c.inner.wakers.borrow().len(), 1);
                c.close();
                waiter.await;
                assert!(c.is_closed());
            });
    }
}
