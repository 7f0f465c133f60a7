//! The per-shard side of the native protocol: accepts connections on this
//! shard's `SO_REUSEPORT` listener, reads frames, decodes each request into
//! a [`Command`], runs it through the runtime's
//! [`dispatch`](crate::runtime::dispatch) and writes the answer. Owns
//! connection state only; never panics on input (a bad frame gets an error
//! frame; if the stream can no longer be framed, or the server is going
//! away, the connection is closed after it). With TLS on, a connection
//! first completes its handshake ([`crate::net::tls`]); with auth on, its
//! first frame must be AUTH ([`crate::net::auth`]).

use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Semaphore;

use crate::net::accept;
use crate::net::auth::ConnAuth;
use crate::net::limits::WireLimits;
use crate::net::protocol::{self, code, kind, FrameError, Response, HEADER_LEN};
use crate::net::tls::{Listener, ServerTls, Stream};
use crate::runtime::admission::Closing;
use crate::runtime::auth::Guard;
use crate::runtime::command::{Command, Failure, RANGE_MAX_POINTS};
use crate::runtime::dispatch;
use crate::runtime::router::Router;

/// What a shard's native listener shares with its connections besides the
/// router: shutdown, limits, auth and TLS.
pub struct Edge {
    /// The shard's shutdown signal.
    pub closing: Closing,
    /// Limits and timeouts.
    pub limits: Rc<WireLimits>,
    /// The shard's authentication state.
    pub guard: Rc<Guard>,
    /// TLS, when the listener is a TLS port.
    pub tls: Option<Rc<ServerTls>>,
    /// The cluster listener: other nodes' queries, answered by this node's
    /// shards only for partitions it owns ([`dispatch::execute_owned`]).
    pub owned_only: bool,
}

/// Accepts native-protocol connections until `closing` (at most
/// `limits.max_connections` at once; one more gets error frame
/// [`code::BUSY`] — on a TLS port it is closed without an answer, so a
/// flood costs no handshakes), then waits for every connection to finish
/// its in-flight request.
pub async fn accept_loop(listener: TcpListener, router: Rc<Router>, edge: Edge) {
    let Edge {
        closing,
        limits,
        guard,
        tls,
        owned_only,
    } = edge;
    let what = format!("shard {}", router.local().index);
    let max = limits.max_connections;
    let budget = Rc::new(Semaphore::new(limits.max_inflight_bytes.max(1) as u64));
    let plain = tls.is_none();
    let serve_one = |stream: TcpStream| {
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            router: Rc::clone(&router),
            closing: closing.clone(),
            limits: Rc::clone(&limits),
            budget: Rc::clone(&budget),
            guard: Rc::clone(&guard),
            tls: tls.clone(),
            owned_only,
        };
        serve(stream, conn)
    };
    let refuse = move |stream: TcpStream| async move {
        if !plain {
            return;
        }
        let mut stream = Stream::Plain(stream);
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
    accept::accept_loop(
        listener,
        closing.clone(),
        max,
        &what,
        serve_one,
        refuse,
        || false,
    )
    .await;
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

/// Reads a header. Waiting for its first byte may last `idle` (then
/// `Idle`); from that byte on, the whole frame has `frame_timeout`, and the
/// deadline is returned with the header. Clean EOF before the first byte is
/// `Eof`, EOF inside the header is a truncation.
async fn read_header(stream: &mut Stream, limits: &WireLimits, idle: Duration) -> Next {
    let mut raw = [0u8; HEADER_LEN];
    let idle_end = Instant::now() + idle;
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
/// merely claims a large payload costs no memory. One deadline timer and
/// one shutdown wait cover the whole payload, however many reads it takes
/// (a TLS connection reads it a record at a time).
async fn read_payload(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    len: usize,
    deadline: Instant,
    closing: &Closing,
) -> Payload {
    buf.clear();
    let got = std::cell::Cell::new(0usize);
    let read_all = async {
        let mut g = 0;
        while g < len {
            if buf.len() == g {
                buf.resize(g + (len - g).min(1 << 20), 0);
            }
            match stream.read(&mut buf[g..]).await {
                Ok(0) | Err(_) => return Payload::Eof(g),
                Ok(n) => {
                    g += n;
                    got.set(g);
                }
            }
        }
        Payload::Read
    };
    let stop = async {
        futures_lite::future::or(
            async {
                glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
                Payload::TimedOut(0)
            },
            async {
                // A request whose payload has not fully arrived is not in
                // flight yet: shutdown does not wait for a client that
                // stalls inside one.
                closing.wait().await;
                Payload::Closing
            },
        )
        .await
    };
    match futures_lite::future::or(read_all, stop).await {
        Payload::Read => {
            buf.truncate(len);
            Payload::Read
        }
        Payload::TimedOut(_) => Payload::TimedOut(got.get()),
        other => other,
    }
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
    /// The shard's authentication state.
    pub guard: Rc<Guard>,
    /// TLS, on a TLS port.
    pub tls: Option<Rc<ServerTls>>,
    /// See [`Edge::owned_only`].
    pub owned_only: bool,
}

/// Serves one connection until EOF, an unframeable error, a timeout or
/// shutdown. On a TLS port the handshake comes first (within the frame
/// timeout). Until a connection has authenticated (auth on), it may wait
/// for its first frame only the frame timeout, not the idle timeout.
pub async fn serve(tcp: TcpStream, conn: Conn) {
    let Conn {
        router,
        closing,
        limits,
        budget,
        guard,
        tls,
        owned_only,
    } = conn;
    let peer = tcp.peer_addr().ok().map(|a| a.ip());
    let mut stream = match &tls {
        None => Stream::Plain(tcp),
        Some(t) => match t
            .accept(tcp, Listener::Native, limits.frame_timeout, &closing)
            .await
        {
            Some(s) => s,
            None => return,
        },
    };
    let mut auth = ConnAuth::new(guard, peer);
    let mut payload = Vec::new();
    let mut out = Vec::new();
    loop {
        if payload.capacity() > KEEP_BUFFER {
            payload = Vec::new();
        }
        if out.capacity() > KEEP_BUFFER {
            out = Vec::new();
        }
        let idle = if auth.authenticated() {
            limits.idle_timeout
        } else {
            limits.idle_timeout.min(limits.frame_timeout)
        };
        let next = futures_lite::future::or(read_header(&mut stream, &limits, idle), async {
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
        if let Err(e) = auth.before_payload(&h).await {
            return fatal(&mut stream, &mut out, &e).await;
        }
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
        if h.kind == kind::AUTH {
            match auth.auth_frame(&raw, &h, &payload).await {
                Ok(resp) => {
                    out.clear();
                    protocol::encode_response(&mut out, h.id, &resp);
                    if !write_answer(&mut stream, &out, &closing, &limits).await {
                        return;
                    }
                    continue;
                }
                Err(e) => return fatal(&mut stream, &mut out, &e).await,
            }
        }
        let decoded = match auth.permit(&h).await {
            Some(forbidden) => Ok(Err(forbidden)),
            None => protocol::decode_request(&raw, &h, &payload).map(Ok),
        };
        let resp = match decoded {
            Ok(Err(forbidden)) => forbidden,
            Ok(Ok(req)) => {
                let Some(cmd) = req.into_command() else {
                    let f = Failure::Internal {
                        reason: "AUTH frame reached the command path".into(),
                    };
                    return fatal(
                        &mut stream,
                        &mut out,
                        &FrameError {
                            code: protocol::failure_code(&f),
                            message: f.to_string(),
                            id: h.id,
                        },
                    )
                    .await;
                };
                let is_write = matches!(cmd, Command::Write(_));
                let reply = if owned_only {
                    dispatch::execute_owned(&router, cmd).await
                } else {
                    dispatch::execute(&router, cmd).await
                };
                if is_write && reply.is_ok() {
                    router.local().record_ack(started);
                }
                protocol::reply_response(reply)
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
        if let Response::Error { code, message } = &resp {
            if code::closes_connection(*code) {
                let e = FrameError {
                    code: *code,
                    message: message.clone(),
                    id: h.id,
                };
                return fatal(&mut stream, &mut out, &e).await;
            }
        }
        out.clear();
        protocol::encode_response(&mut out, h.id, &resp);
        if !write_answer(&mut stream, &out, &closing, &limits).await {
            return;
        }
    }
}

/// Ranges counted (from the index, duplicates and whole edge segments
/// included) above this are refused by the owning shard before a block is
/// read ([`RANGE_MAX_POINTS`]): more than one answer frame holds, so a range
/// whose answer fits is never refused for its count's slack.
pub const RANGE_REFUSE_POINTS: u64 = RANGE_MAX_POINTS;
const _: () = assert!(RANGE_MAX_POINTS >= (protocol::MAX_PAYLOAD / protocol::POINT_LEN) as u64);

/// Writes an answer; `false` (close the connection) if the client has not
/// taken it within the frame timeout, or within [`WRITE_GRACE`] once
/// shutdown has begun.
async fn write_answer(
    stream: &mut Stream,
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
async fn fatal(stream: &mut Stream, out: &mut Vec<u8>, e: &FrameError) {
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
