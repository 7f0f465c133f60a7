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
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Semaphore;

use crate::net::accept;
use crate::net::limits::{now_us, WireLimits};
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

/// Accepts native-protocol connections until `closing` (at most
/// `limits.max_connections` at once; one more gets error frame
/// [`code::BUSY`]), then waits for every connection to finish its in-flight
/// request.
pub async fn accept_loop(
    listener: TcpListener,
    router: Rc<Router>,
    closing: Closing,
    limits: Rc<WireLimits>,
) {
    let what = format!("shard {}", router.local().index);
    let max = limits.max_connections;
    let budget = Rc::new(Semaphore::new(limits.max_inflight_bytes.max(1) as u64));
    let serve_one = |stream: TcpStream| {
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            router: Rc::clone(&router),
            closing: closing.clone(),
            limits: Rc::clone(&limits),
            budget: Rc::clone(&budget),
        };
        serve(stream, conn)
    };
    let refuse = move |mut stream: TcpStream| async move {
        let mut out = Vec::new();
        let e = FrameError {
            code: code::BUSY,
            message: format!(
                "connection limit reached: this shard already serves {max} connections"
            ),
            id: 0,
        };
        encode_error(&mut out, &e);
        accept::answer_and_close(&mut stream, &out).await;
    };
    accept::accept_loop(listener, closing.clone(), max, &what, serve_one, refuse).await;
}

/// How long an answer may still take to write once shutdown has begun.
pub const WRITE_GRACE: Duration = Duration::from_secs(1);

enum Next {
    Frame([u8; HEADER_LEN], Instant),
    Eof,
    Idle,
    Closing,
    Failed(FrameError),
}

/// `fut`'s output, or `None` if `deadline` passes first.
async fn within<T>(deadline: Instant, fut: impl Future<Output = T>) -> Option<T> {
    futures_lite::future::or(async { Some(fut.await) }, async {
        glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
        None
    })
    .await
}

/// Reads a header. Waiting for its first byte may last `idle_timeout`
/// (then `Idle`); from that byte on, the whole frame has `frame_timeout`,
/// and the deadline is returned with the header. Clean EOF before the
/// first byte is `Eof`, EOF inside the header is a truncation.
async fn read_header(stream: &mut TcpStream, limits: &WireLimits) -> Next {
    let mut raw = [0u8; HEADER_LEN];
    let idle_end = Instant::now() + limits.idle_timeout;
    let mut got = match within(idle_end, stream.read(&mut raw)).await {
        None => return Next::Idle,
        Some(Ok(0)) | Some(Err(_)) => return Next::Eof,
        Some(Ok(n)) => n,
    };
    let deadline = Instant::now() + limits.frame_timeout;
    while got < HEADER_LEN {
        match within(deadline, stream.read(&mut raw[got..])).await {
            None => return Next::Failed(timed_out(got, HEADER_LEN, "header", limits, 0)),
            Some(Ok(0)) => return Next::Failed(truncated(got, HEADER_LEN, "header")),
            Some(Ok(n)) => got += n,
            Some(Err(_)) => return Next::Eof,
        }
    }
    Next::Frame(raw, deadline)
}

fn truncated(got: usize, want: usize, what: &str) -> FrameError {
    FrameError {
        code: code::TRUNCATED,
        message: format!("connection closed after {got} of {want} {what} bytes"),
        id: 0,
    }
}

fn timed_out(got: usize, want: usize, what: &str, limits: &WireLimits, id: u64) -> FrameError {
    FrameError {
        code: code::TIMEOUT,
        message: format!(
            "frame not complete after {} s: got {got} of {want} {what} bytes",
            limits.frame_timeout.as_secs_f64()
        ),
        id,
    }
}

enum Payload {
    Read,
    Eof(usize),
    TimedOut(usize),
    Closing,
}

/// Reads `len` payload bytes into `buf` by `deadline`. The buffer grows
/// with what has arrived (at most 1 MiB ahead of it), so a header that
/// merely claims a large payload costs no memory.
async fn read_payload(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    len: usize,
    deadline: Instant,
    closing: &Closing,
) -> Payload {
    buf.clear();
    let mut got = 0;
    while got < len {
        if buf.len() == got {
            buf.resize(got + (len - got).min(1 << 20), 0);
        }
        let read = futures_lite::future::or(
            async { Some(within(deadline, stream.read(&mut buf[got..])).await) },
            async {
                closing.wait().await;
                None
            },
        )
        .await;
        match read {
            // A request whose payload has not fully arrived is not in
            // flight yet: shutdown does not wait for a client that stalls
            // inside one.
            None => return Payload::Closing,
            Some(None) => return Payload::TimedOut(got),
            Some(Some(Ok(0))) | Some(Some(Err(_))) => return Payload::Eof(got),
            Some(Some(Ok(n))) => got += n,
        }
    }
    buf.truncate(len);
    Payload::Read
}

/// Per-connection buffers above this are released after each request, so
/// an idle connection does not keep a large frame's memory.
const KEEP_BUFFER: usize = 4 << 20;

/// What a native connection shares with the rest of its shard.
pub struct Conn {
    /// The shard's router.
    pub router: Rc<Router>,
    /// The shard's shutdown signal.
    pub closing: Closing,
    /// Limits and timeouts.
    pub limits: Rc<WireLimits>,
    /// Payload bytes the shard may still take in
    /// ([`WireLimits::max_inflight_bytes`]).
    pub budget: Rc<Semaphore>,
}

/// Serves one connection until EOF, an unframeable error, a timeout or
/// shutdown.
pub async fn serve(mut stream: TcpStream, conn: Conn) {
    let Conn {
        router,
        closing,
        limits,
        budget,
    } = conn;
    let mut payload = Vec::new();
    let mut out = Vec::new();
    loop {
        if payload.capacity() > KEEP_BUFFER {
            payload = Vec::new();
        }
        if out.capacity() > KEEP_BUFFER {
            out = Vec::new();
        }
        let next = futures_lite::future::or(read_header(&mut stream, &limits), async {
            closing.wait().await;
            Next::Closing
        })
        .await;
        let (raw, deadline) = match next {
            Next::Frame(raw, deadline) => (raw, deadline),
            Next::Eof | Next::Closing | Next::Idle => return,
            Next::Failed(e) => return fatal(&mut stream, &mut out, &e).await,
        };
        let started = Instant::now();
        let h = match protocol::decode_header(&raw) {
            Ok(h) => h,
            Err(e) => return fatal(&mut stream, &mut out, &e).await,
        };
        let len = h.len as usize;
        // Hold budget for the payload until its answer is written.
        let units = (len as u64).min(limits.max_inflight_bytes.max(1) as u64);
        let (_permit, deadline) = match budget.try_acquire_permit(units) {
            Ok(p) => (p, deadline),
            Err(_) => {
                let p = futures_lite::future::or(
                    async { budget.acquire_permit(units).await.ok() },
                    async {
                        closing.wait().await;
                        None
                    },
                )
                .await;
                match p {
                    Some(p) => (p, Instant::now() + limits.frame_timeout),
                    None => return,
                }
            }
        };
        match read_payload(&mut stream, &mut payload, len, deadline, &closing).await {
            Payload::Read => {}
            Payload::Closing => return,
            Payload::Eof(got) => {
                let mut e = truncated(got, len, "payload");
                e.message = format!("connection closed after {got} bytes of a {len}-byte payload");
                e.id = h.id;
                return fatal(&mut stream, &mut out, &e).await;
            }
            Payload::TimedOut(got) => {
                let e = timed_out(got, len, "payload", &limits, h.id);
                return fatal(&mut stream, &mut out, &e).await;
            }
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
                    return fatal(&mut stream, &mut out, &e).await;
                }
                out.clear();
                encode_error(&mut out, &e);
                if !write_answer(&mut stream, &out, &closing, &limits).await {
                    return;
                }
                continue;
            }
        };
        out.clear();
        protocol::encode_response(&mut out, h.id, &resp);
        if !write_answer(&mut stream, &out, &closing, &limits).await {
            return;
        }
    }
}

/// Writes an answer; `false` (close the connection) if the client has not
/// taken it within the frame timeout, or within [`WRITE_GRACE`] once
/// shutdown has begun.
async fn write_answer(
    stream: &mut TcpStream,
    out: &[u8],
    closing: &Closing,
    limits: &WireLimits,
) -> bool {
    let deadline = Instant::now() + limits.frame_timeout;
    futures_lite::future::or(
        async { matches!(within(deadline, stream.write_all(out)).await, Some(Ok(()))) },
        async {
            closing.wait().await;
            glommio::timer::sleep(WRITE_GRACE).await;
            false
        },
    )
    .await
}

/// Answers an error after which the stream cannot be framed, and closes.
async fn fatal(stream: &mut TcpStream, out: &mut Vec<u8>, e: &FrameError) {
    out.clear();
    encode_error(out, e);
    accept::answer_and_close(stream, out).await;
}

fn encode_error(out: &mut Vec<u8>, e: &FrameError) {
    protocol::encode_response(
        out,
        e.id,
        &Response::Error {
            code: e.code,
            message: e.message.clone(),
        },
    );
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

/// Checks the batch against the shard's [`TimeWindow`](crate::net::limits::TimeWindow),
/// splits it by owner, sends one sub-batch per shard concurrently and
/// acknowledges once every sub-batch is durable.
async fn write(router: &Rc<Router>, points: Vec<Point>) -> Response {
    let n = points.len() as u64;
    if points.is_empty() {
        return Response::Ack(0);
    }
    if let Err(message) = router.local().window.check(&points, now_us()) {
        return Response::Error {
            code: code::OUT_OF_WINDOW,
            message,
        };
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
