//! The limits a server puts on hostile or careless clients: a connection
//! limit, an idle timeout, a whole-frame timeout against slow-drip clients,
//! a timestamp window; and values stored bit-exact, NaN and ±inf included.
//! Each abuse gets a clear error frame (or a close) while a well-behaved
//! client keeps being served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod net_common;
use net_common as common;
use net_common::{answer, assert_closed, connect, error_code};

use std::io::Write;
use std::time::{Duration, Instant};

use xtdb::net::limits::{now_us, TimeWindow};
use xtdb::net::protocol::{self, code, Response, HEADER_LEN};
use xtdb::net::{Client, ClientError};
use xtdb::server::ServerHandle;
use xtdb::Point;

/// One shard, so every connection lands on the same accept loop.
fn server(
    dir: &std::path::Path,
    tweak: impl FnOnce(&mut xtdb::server::ServerConfig),
) -> ServerHandle {
    common::server_with(dir, &[0], tweak).expect("server starts")
}

/// A stats request answers on this connection.
fn serves(s: &mut std::net::TcpStream) {
    let mut f = Vec::new();
    protocol::encode_stats(&mut f, 5);
    s.write_all(&f).unwrap();
    assert!(matches!(answer(s), Some((5, Response::Stats(_)))));
}

/// A fresh client connection writes and reads back one point.
fn good_client_works(addr: &str, tag: u32) {
    let addr = addr.to_string();
    common::client(move || async move {
        let mut c = Client::connect(&addr).await.unwrap();
        let p = Point::new(tag, 1_000, 2.5, 192);
        assert_eq!(c.write(&[p]).await.unwrap(), 1);
        assert_eq!(c.range(tag, 0, 2_000).await.unwrap(), vec![p]);
    })
}

#[test]
fn connections_over_the_limit_get_busy_and_a_freed_slot_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path(), |c| c.limits.max_connections = 2);
    let addr = srv.local_addr().to_string();
    let mut a = connect(&addr);
    let mut b = connect(&addr);
    serves(&mut a);
    serves(&mut b);
    for _ in 0..3 {
        let mut c = connect(&addr);
        let (code, message) = error_code(answer(&mut c));
        assert_eq!(code, code::BUSY, "{message}");
        assert!(message.contains("connection limit"), "{message}");
        assert_closed(&mut c);
    }
    serves(&mut a);
    drop(b);
    // The slot is freed once the server has seen the close.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut c = connect(&addr);
        let mut f = Vec::new();
        protocol::encode_stats(&mut f, 6);
        c.write_all(&f).unwrap();
        match answer(&mut c) {
            Some((6, Response::Stats(_))) => break,
            Some((_, Response::Error { code, .. })) if code == code::BUSY => {}
            other => panic!("unexpected {other:?}"),
        }
        assert!(Instant::now() < deadline, "slot never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
    srv.stop().unwrap();
}

#[test]
fn idle_connections_are_closed_and_others_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path(), |c| {
        c.limits.idle_timeout = Duration::from_millis(500);
    });
    let addr = srv.local_addr().to_string();
    let mut idle = connect(&addr);
    serves(&mut idle);
    let t = Instant::now();
    assert_closed(&mut idle);
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    good_client_works(&addr, 1);
    srv.stop().unwrap();
}

#[test]
fn a_frame_that_does_not_arrive_in_time_is_refused_and_closed() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path(), |c| {
        c.limits.frame_timeout = Duration::from_millis(700);
    });
    let addr = srv.local_addr().to_string();

    // Half a header, then nothing.
    let mut f = Vec::new();
    protocol::encode_write(&mut f, 9, &[Point::new(1, 1, 1.0, 0)]);
    let mut s = connect(&addr);
    s.write_all(&f[..10]).unwrap();
    let (c, m) = error_code(answer(&mut s));
    assert_eq!(c, code::TIMEOUT, "{m}");
    assert!(m.contains("got 10 of 24 header bytes"), "{m}");
    assert_closed(&mut s);

    // A header claiming 32 MiB, then a few bytes: no memory is reserved for
    // the claim, and the timeout names what arrived.
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(&f[..HEADER_LEN]);
    h[16..20].copy_from_slice(&(32u32 << 20).to_le_bytes());
    let mut s = connect(&addr);
    s.write_all(&h).unwrap();
    s.write_all(&[0u8; 10]).unwrap();
    let (c, m) = error_code(answer(&mut s));
    assert_eq!(c, code::TIMEOUT, "{m}");
    assert!(m.contains("got 10 of 33554432 payload bytes"), "{m}");
    assert_closed(&mut s);

    // Slow drip: every read makes progress, but the frame as a whole is
    // late, so the deadline still fires.
    let mut s = connect(&addr);
    let t = Instant::now();
    let mut sent = 0;
    let mut closed = false;
    while sent < f.len() {
        if s.write_all(&f[sent..sent + 1]).is_err() {
            closed = true;
            break;
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(100));
        if t.elapsed() > Duration::from_secs(1) {
            break;
        }
    }
    if !closed {
        let (c, m) = error_code(answer(&mut s));
        assert_eq!(c, code::TIMEOUT, "{m}");
    }
    assert!(
        sent < f.len(),
        "the whole frame went through at one byte per 100 ms"
    );
    good_client_works(&addr, 2);
    srv.stop().unwrap();
}

#[test]
fn timestamps_outside_the_window_refuse_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path(), |_| {});
    let addr = srv.local_addr().to_string();
    common::client(move || async move {
        let mut c = Client::connect(&addr).await.unwrap();
        let now = now_us();
        let day = 86_400_000_000i64;
        for bad in [-1, i64::MIN, now + day + 60_000_000, i64::MAX] {
            let batch = [Point::new(7, 1_000, 1.0, 192), Point::new(8, bad, 2.0, 192)];
            match c.write(&batch).await {
                Err(ClientError::Remote { code, message }) => {
                    assert_eq!(code, code::OUT_OF_WINDOW, "{message}");
                    assert!(
                        message.starts_with("point 1 (tag 8): timestamp"),
                        "{message}"
                    );
                }
                other => panic!("ts {bad}: expected a window error, got {other:?}"),
            }
        }
        // Nothing of the refused batches was stored; the connection still works.
        assert!(c.range(7, i64::MIN, i64::MAX).await.unwrap().is_empty());
        assert!(c.range(8, i64::MIN, i64::MAX).await.unwrap().is_empty());
        let ok = [
            Point::new(7, 0, 1.0, 192),
            Point::new(8, now + day - 60_000_000, 2.0, 192),
        ];
        assert_eq!(c.write(&ok).await.unwrap(), 2);
        assert_eq!(c.range(8, 0, i64::MAX).await.unwrap(), vec![ok[1]]);
    });
    srv.stop().unwrap();
}

#[test]
fn an_unbounded_window_takes_any_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path(), |c| c.limits.window = TimeWindow::unbounded());
    let addr = srv.local_addr().to_string();
    common::client(move || async move {
        let mut c = Client::connect(&addr).await.unwrap();
        let pts = [Point::new(3, i64::MIN, 1.0, 0), Point::new(3, -5, 2.0, 0)];
        assert_eq!(c.write(&pts).await.unwrap(), 2);
        assert_eq!(c.range(3, i64::MIN, 0).await.unwrap(), pts.to_vec());
    });
    srv.stop().unwrap();
}

#[test]
fn nan_and_infinities_are_stored_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path(), |_| {});
    let addr = srv.local_addr().to_string();
    let values = [
        f64::NAN,
        -f64::NAN,
        f64::from_bits(0x7FF0_0000_0000_0001), // signalling NaN with a payload
        f64::from_bits(0x7FF8_DEAD_BEEF_0042), // quiet NaN with a payload
        f64::INFINITY,
        f64::NEG_INFINITY,
        -0.0,
        f64::MIN_POSITIVE / 2.0, // subnormal
    ];
    let pts: Vec<Point> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| Point::new(11, 10 + i as i64, v, 0))
        .collect();
    let want = pts.clone();
    common::client(move || async move {
        let mut c = Client::connect(&addr).await.unwrap();
        assert_eq!(c.write(&pts).await.unwrap(), pts.len() as u64);
    });
    // After a restart too (read back from the WAL or blocks).
    srv.stop().unwrap();
    let srv = server(dir.path(), |_| {});
    let addr = srv.local_addr().to_string();
    common::client(move || async move {
        let mut c = Client::connect(&addr).await.unwrap();
        let got = c.range(11, 0, 100).await.unwrap();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            assert_eq!((g.tag, g.ts, g.quality), (w.tag, w.ts, w.quality));
            assert_eq!(g.value.to_bits(), w.value.to_bits(), "ts {}", g.ts);
        }
    });
    srv.stop().unwrap();
}

#[test]
fn frames_wait_for_the_inflight_byte_budget_instead_of_growing_memory() {
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path(), |c| {
        c.limits.max_inflight_bytes = 100;
        c.limits.frame_timeout = Duration::from_millis(800);
    });
    let addr = srv.local_addr().to_string();
    // A claims 90 payload bytes and sends none: it holds 90 of the 100.
    let mut f = Vec::new();
    protocol::encode_write(&mut f, 1, &[Point::new(1, 1, 1.0, 0)]);
    let mut a = connect(&addr);
    let mut h = f[..HEADER_LEN].to_vec();
    h[16..20].copy_from_slice(&90u32.to_le_bytes());
    a.write_all(&h).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    // B's 25-byte write must wait until A gives its share back (A times out).
    let mut b = connect(&addr);
    let t = Instant::now();
    b.write_all(&f).unwrap();
    assert!(matches!(answer(&mut b), Some((1, Response::Ack(1)))));
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(error_code(answer(&mut a)).0, code::TIMEOUT);
    // A frame larger than the whole budget still goes through alone.
    let big: Vec<Point> = (0..20).map(|i| Point::new(2, i, 0.5, 0)).collect();
    let mut f = Vec::new();
    protocol::encode_write(&mut f, 2, &big);
    b.write_all(&f).unwrap();
    assert!(matches!(answer(&mut b), Some((2, Response::Ack(20)))));
    srv.stop().unwrap();
}

/// A timeout past what a deadline (`Instant::now() + timeout`) can hold
/// is refused at start, naming it: `--idle-timeout 18446744073709551615`
/// ("never") started, and the first connection's read deadline panicked
/// its shard ("overflow when adding duration to instant").
#[test]
fn timeouts_past_the_clock_are_refused_at_start() {
    let huge = Duration::from_secs(u64::MAX);
    type Set = fn(&mut xtdb::server::ServerConfig, Duration);
    let cases: [(&str, Set); 4] = [
        ("idle timeout", |c, d| c.limits.idle_timeout = d),
        ("frame timeout", |c, d| c.limits.frame_timeout = d),
        ("HTTP header timeout", |c, d| {
            c.http_config.header_timeout = d
        }),
        ("HTTP body grace", |c, d| c.http_config.body_grace = d),
    ];
    for (name, set) in cases {
        let dir = tempfile::tempdir().unwrap();
        match common::server_with(dir.path(), &[0], |c| set(c, huge)) {
            Ok(h) => {
                h.stop().unwrap();
                panic!("{name} of u64::MAX s accepted");
            }
            Err(e) => assert!(e.to_string().contains(name), "{name}: {e}"),
        }
    }
    // Ten years is fine, and the server serves.
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path(), |c| {
        c.limits.idle_timeout = xtdb::server::MAX_TIMEOUT
    });
    good_client_works(&srv.local_addr().to_string(), 3);
    srv.stop().unwrap();
}

/// A range whose count bound is past what one answer frame holds is
/// refused (too many, connection kept) from the index, before any point is
/// read: the shard used to build the whole answer in memory (24 bytes a
/// point, however long the range) and only then find it too large.
#[test]
fn a_range_past_the_frame_limit_is_refused_before_reading() {
    use xtdb::net::server::RANGE_REFUSE_POINTS;
    let dir = tempfile::tempdir().unwrap();
    let srv = server(dir.path(), |_| {});
    let addr = srv.local_addr().to_string();
    common::client(move || async move {
        let mut c = Client::connect(&addr).await.unwrap();
        let n = RANGE_REFUSE_POINTS as i64 + 1;
        let batch = protocol::MAX_POINTS as i64;
        let mut at = 0;
        while at < n {
            let pts: Vec<Point> = (at..n.min(at + batch))
                .map(|i| Point::new(9, 1_000_000 + i, i as f64, 192))
                .collect();
            c.write(&pts).await.unwrap();
            at += batch;
        }
        let before = c.stats().await.unwrap();
        let t = Instant::now();
        match c.range(9, 0, i64::MAX).await {
            Err(ClientError::Remote { code, message }) => {
                assert_eq!(code, code::TOO_MANY, "{message}");
                assert!(message.contains("narrower range"), "{message}");
            }
            other => panic!("{:?}", other.map(|p| p.len())),
        }
        let after = c.stats().await.unwrap();
        for s in ["total.points_from_disk", "total.points_from_memory"] {
            assert_eq!(
                common::stat(&after, s),
                common::stat(&before, s),
                "{s}: points were read for a refused range"
            );
        }
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
        // The connection is kept, and a range that fits is answered.
        let got = c.range(9, 1_000_000, 1_000_010).await.unwrap();
        assert_eq!(got.len(), 10);
    });
    srv.stop().unwrap();
}
