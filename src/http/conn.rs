//! One HTTP connection: hyper 1.x (HTTP/1.1, keep-alive) over a glommio
//! stream ([`GlommioIo`]), with a watchdog that closes it when a request's
//! headers take longer than [`HttpConfig::header_timeout`] (slowloris) or
//! when the listener needs its slot ([`Conns::evict_one`]: the connection
//! idle or unfinished longest, never one with a request being handled or
//! answered). glommio timers are `!Send` and hyper's `rt::Timer` wants
//! `Send` sleeps, so hyper's own header timer stays off and this watchdog
//! does its job. Owns the connection's socket; never reads request data
//! itself.
//!
//! [`HttpConfig::header_timeout`]: super::HttpConfig::header_timeout

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use hyper::body::{Frame, SizeHint};

use super::answer::{Body, StreamError};
use super::{api, counter, HttpState};
use crate::net::tls::{Listener, Stream};
use crate::runtime::admission::Closing;

/// What a connection's watchdog and the listener's eviction know of it.
struct Watch {
    /// When the first byte of a request whose headers are not complete
    /// arrived.
    headers_since: Cell<Option<Instant>>,
    /// Requests being handled or answered (their answer body not yet sent).
    busy: Cell<usize>,
    /// Last read, or the end of the last answer.
    last: Cell<Instant>,
    /// Closed to evict the connection.
    evict: Closing,
    /// Until then a connection that has sent nothing is not evicted: a
    /// client that just connected gets the chance to send its request.
    fresh_until: Instant,
    /// It has had a request.
    served: Cell<bool>,
}

/// How long a new, silent connection is safe from eviction.
const FRESH: std::time::Duration = std::time::Duration::from_secs(1);

impl Watch {
    fn new() -> Watch {
        let now = Instant::now();
        Watch {
            headers_since: Cell::new(None),
            busy: Cell::new(0),
            last: Cell::new(now),
            evict: Closing::default(),
            fresh_until: now + FRESH,
            served: Cell::new(false),
        }
    }

    fn read(&self, n: usize) {
        if n > 0 {
            let now = Instant::now();
            self.last.set(now);
            if self.busy.get() == 0 && self.headers_since.get().is_none() {
                self.headers_since.set(Some(now));
            }
        }
    }
}

/// The open connections of one shard's HTTP listener.
#[derive(Default)]
pub struct Conns {
    next: Cell<u64>,
    open: RefCell<HashMap<u64, Rc<Watch>>>,
}

impl Conns {
    fn add(&self, w: &Rc<Watch>) -> u64 {
        let id = self.next.get();
        self.next.set(id + 1);
        self.open.borrow_mut().insert(id, Rc::clone(w));
        id
    }

    /// Closes the connection idle (or stuck in its headers) longest that
    /// has no request being handled or answered and is not a silent one
    /// younger than [`FRESH`]; whether there was one.
    pub fn evict_one(&self) -> bool {
        let open = self.open.borrow();
        let now = Instant::now();
        let victim = open
            .values()
            .filter(|w| w.busy.get() == 0 && !w.evict.is_closed())
            .filter(|w| w.served.get() || w.headers_since.get().is_some() || now >= w.fresh_until)
            // An unfinished request counts from its first byte (however
            // it drips since), an idle connection from its last answer.
            .min_by_key(|w| w.headers_since.get().unwrap_or(w.last.get()));
        match victim {
            Some(w) => {
                w.evict.close();
                true
            }
            None => false,
        }
    }
}

/// Read buffer of a connection, bytes.
const SCRATCH: usize = 16 << 10;

/// hyper's I/O traits over any futures `AsyncRead + AsyncWrite` stream (a
/// glommio `TcpStream`, or TLS over one). Reads go through a small scratch
/// buffer so no uninitialised memory is ever exposed (one copy, cheap next
/// to parsing), and are reported to the connection's watchdog.
pub struct GlommioIo<S = TcpStream> {
    stream: S,
    scratch: Vec<u8>,
    watch: Option<Rc<Watch>>,
}

impl<S> GlommioIo<S> {
    /// Wraps a stream.
    pub fn new(stream: S) -> Self {
        GlommioIo {
            stream,
            // Allocated on the first read: a connection that sends nothing
            // costs no buffer.
            scratch: Vec::new(),
            watch: None,
        }
    }
}

impl<S: AsyncRead + Unpin> hyper::rt::Read for GlommioIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.scratch.is_empty() {
            this.scratch = vec![0; SCRATCH];
        }
        let want = buf.remaining().min(this.scratch.len());
        if want == 0 {
            return Poll::Ready(Ok(()));
        }
        match Pin::new(&mut this.stream).poll_read(cx, &mut this.scratch[..want]) {
            Poll::Ready(Ok(n)) => {
                if let Some(w) = &this.watch {
                    w.read(n);
                }
                buf.put_slice(&this.scratch[..n]);
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> hyper::rt::Write for GlommioIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_close(cx)
    }
}

/// Marks a request busy from its complete headers until its answer body
/// has been sent (or dropped).
struct Busy(Rc<Watch>);

impl Busy {
    fn new(w: &Rc<Watch>) -> Busy {
        w.headers_since.set(None);
        w.served.set(true);
        w.busy.set(w.busy.get() + 1);
        Busy(Rc::clone(w))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.set(self.0.busy.get().saturating_sub(1));
        self.0.last.set(Instant::now());
    }
}

/// An answer body that keeps its request [`Busy`] while it is sent.
pub struct Watched {
    body: Body,
    _busy: Busy,
}

impl hyper::body::Body for Watched {
    type Data = Bytes;
    type Error = StreamError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StreamError>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Serves one accepted connection until the client closes it, it idles
/// out, its watchdog fires, or the shard closes (then the request in
/// flight, if any, is finished first). The connection is registered in
/// `conns` at once, before the returned future first runs, so the
/// connections accepted in one burst can evict each other.
pub fn serve(
    tcp: TcpStream,
    state: Rc<HttpState>,
    closing: Closing,
    conns: Rc<Conns>,
) -> impl std::future::Future<Output = ()> {
    let watch = Rc::new(Watch::new());
    let id = conns.add(&watch);
    let registered = Registered(conns, id);
    serve_registered(tcp, state, closing, watch, registered)
}

async fn serve_registered(
    tcp: TcpStream,
    state: Rc<HttpState>,
    closing: Closing,
    watch: Rc<Watch>,
    _registered: Registered,
) {
    let _ = tcp.set_nodelay(true);
    let t = Some(state.config.idle_timeout);
    let _ = tcp.set_read_timeout(t);
    let _ = tcp.set_write_timeout(t);
    let peer = tcp.peer_addr().ok().map(|a| a.ip());
    let stream = match &state.tls {
        None => Stream::Plain(tcp),
        Some(tls) => {
            let timeout = state.config.idle_timeout;
            match tls.accept(tcp, Listener::Http, timeout, &closing).await {
                Some(s) => s,
                None => return,
            }
        }
    };
    let svc = {
        let state = Rc::clone(&state);
        let watch = Rc::clone(&watch);
        hyper::service::service_fn(move |req| {
            let busy = Busy::new(&watch);
            let state = Rc::clone(&state);
            async move {
                let resp = api::handle(state, peer, req).await?;
                Ok::<_, std::convert::Infallible>(resp.map(|body| Watched { body, _busy: busy }))
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .keep_alive(true)
        .header_read_timeout(None)
        .max_buf_size(1 << 20);
    let mut io = GlommioIo::new(stream);
    io.watch = Some(Rc::clone(&watch));
    let conn = builder.serve_connection(io, svc);
    let mut conn = std::pin::pin!(conn);
    let watchdog = async {
        let limit = state.config.header_timeout;
        loop {
            // One reading of the clock: two could straddle the limit, and
            // `limit - elapsed` would then underflow (a panic in the shard).
            let wait = match watch.headers_since.get().map(|t| t.elapsed()) {
                Some(elapsed) if elapsed >= limit => {
                    state.count(counter::TOO_SLOW, 1);
                    return;
                }
                Some(elapsed) => limit - elapsed,
                None => limit,
            };
            let evicted = futures_lite::future::or(
                async {
                    glommio::timer::sleep(wait).await;
                    false
                },
                async {
                    watch.evict.wait().await;
                    true
                },
            )
            .await;
            if evicted {
                return;
            }
        }
    };
    enum End {
        Done,
        Closing,
        Watchdog,
    }
    let first = futures_lite::future::or(
        async {
            let _ = conn.as_mut().await;
            End::Done
        },
        futures_lite::future::or(
            async {
                closing.wait().await;
                End::Closing
            },
            async {
                watchdog.await;
                End::Watchdog
            },
        ),
    )
    .await;
    if let End::Closing = first {
        // Shutdown: finish the request in flight (if any), then close.
        conn.as_mut().graceful_shutdown();
        let _ = futures_lite::future::or(
            async {
                let _ = conn.as_mut().await;
            },
            async {
                glommio::timer::sleep(crate::net::server::WRITE_GRACE * 5).await;
            },
        )
        .await;
    }
}

/// Removes a connection from [`Conns`] when it ends.
struct Registered(Rc<Conns>, u64);

impl Drop for Registered {
    fn drop(&mut self) {
        self.0.open.borrow_mut().remove(&self.1);
    }
}
