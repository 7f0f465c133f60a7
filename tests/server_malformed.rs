//! Malformed frames get error frames (and a close when the stream can no
//! longer be framed) while a well-behaved client on another connection
//! keeps working and nothing acknowledged changes.

mod net_common;
use net_common as common;
use net_common::{answer, assert_closed, connect, error_code};

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use xtdb::net::protocol::{self, code, kind, Response, HEADER_LEN, MAX_POINTS};
use xtdb::net::Client;
use xtdb::{Error, Point};

/// A stats request works on this connection (it is still framed).
fn still_serves(s: &mut TcpStream) {
    let mut f = Vec::new();
    protocol::encode_stats(&mut f, 99);
    s.write_all(&f).unwrap();
    match answer(s) {
        Some((99, Response::Stats(v))) => assert!(!v.is_empty()),
        other => panic!("expected stats, got {other:?}"),
    }
}

fn write_frame() -> Vec<u8> {
    let mut f = Vec::new();
    protocol::encode_write(&mut f, 7, &[Point::new(5, 10, 1.0, 192)]);
    f
}

#[test]
fn malformed_frames_get_error_frames_and_others_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::server(dir.path());
    let addr = server.local_addr().to_string();

    // A well-behaved client writes before, during and after the abuse.
    let good = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            common::client(move || async move {
                let mut c = Client::connect(&addr).await.unwrap();
                let mut written = Vec::new();
                for round in 0..50i64 {
                    let pts: Vec<Point> = (0..100u32)
                        .map(|t| Point::new(t, round, t as f64, 192))
                        .collect();
                    assert_eq!(c.write(&pts).await.unwrap(), 100);
                    written.extend(pts);
                    glommio::timer::sleep(Duration::from_millis(2)).await;
                }
                for t in 0..100u32 {
                    let want: Vec<Point> = written.iter().filter(|p| p.tag == t).copied().collect();
                    assert_eq!(c.range(t, i64::MIN, i64::MAX).await.unwrap(), want);
                }
            })
        })
    };

    // Bad CRC: error frame naming the CRC, connection still usable.
    let mut s = connect(&addr);
    let mut f = write_frame();
    *f.last_mut().unwrap() ^= 0xFF;
    s.write_all(&f).unwrap();
    let (c, m) = error_code(answer(&mut s));
    assert_eq!(c, code::BAD_CRC, "{m}");
    assert!(m.contains("CRC"), "{m}");
    still_serves(&mut s);

    // Unknown type: error, still usable.
    let mut f = write_frame();
    f[5] = 0x42;
    s.write_all(&f).unwrap();
    assert_eq!(error_code(answer(&mut s)).0, code::UNKNOWN_TYPE);
    still_serves(&mut s);

    // Payload inconsistent with its count: error, still usable.
    let mut f = Vec::new();
    protocol::encode_latest(&mut f, 3, &[1, 2, 3]);
    f[HEADER_LEN] = 200; // count byte now says 200 tags
    let crc = crc32fast::hash(&f[HEADER_LEN..]);
    f[20..24].copy_from_slice(&crc.to_le_bytes());
    s.write_all(&f).unwrap();
    let (c, m) = error_code(answer(&mut s));
    assert_eq!(c, code::MALFORMED, "{m}");
    still_serves(&mut s);

    // Too many points: error naming the limit, still usable.
    let mut f = write_frame();
    f[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&(MAX_POINTS as u32 + 1).to_le_bytes());
    let crc = crc32fast::hash(&f[HEADER_LEN..]);
    f[20..24].copy_from_slice(&crc.to_le_bytes());
    s.write_all(&f).unwrap();
    let (c, m) = error_code(answer(&mut s));
    assert_eq!(c, code::TOO_MANY);
    assert!(m.contains(&MAX_POINTS.to_string()), "{m}");
    still_serves(&mut s);

    // Bogus (oversized) length: error naming the limit, then closed.
    let mut f = write_frame();
    f[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
    s.write_all(&f).unwrap();
    let (c, m) = error_code(answer(&mut s));
    assert_eq!(c, code::TOO_LARGE);
    assert!(m.contains(&protocol::MAX_PAYLOAD.to_string()), "{m}");
    assert_closed(&mut s);

    // Bad magic: error, closed.
    let mut s = connect(&addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(error_code(answer(&mut s)).0, code::BAD_MAGIC);
    assert_closed(&mut s);

    // Bad version: error, closed.
    let mut s = connect(&addr);
    let mut f = write_frame();
    f[4] = 77;
    s.write_all(&f).unwrap();
    assert_eq!(error_code(answer(&mut s)).0, code::BAD_VERSION);
    assert_closed(&mut s);

    // Truncated payload: error, closed.
    let mut s = connect(&addr);
    let f = write_frame();
    s.write_all(&f[..f.len() - 5]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(error_code(answer(&mut s)).0, code::TRUNCATED);
    assert_closed(&mut s);

    // Truncated header: error, closed.
    let mut s = connect(&addr);
    s.write_all(&f[..10]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    assert_eq!(error_code(answer(&mut s)).0, code::TRUNCATED);
    assert_closed(&mut s);

    // Random garbage on many connections never takes the server down.
    for i in 0..20u32 {
        let mut s = connect(&addr);
        let junk: Vec<u8> = (0..(i * 37 % 200)).map(|j| (j * 31 + i) as u8).collect();
        let _ = s.write_all(&junk);
        let _ = s.shutdown(Shutdown::Write);
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }

    good.join().unwrap();

    // Error frames reach the client as Error::Remote.
    let addr2 = addr.clone();
    let err = common::client(move || async move {
        let mut c = Client::connect(&addr2).await.unwrap();
        let mut f = Vec::new();
        protocol::encode_stats(&mut f, 1);
        f[5] = kind::ACK; // a response type sent as a request
        let (_, r) = c.send_raw(&f).await.unwrap();
        let after = c.latest(&[5, 1_000_000]).await;
        (r, after.map_err(|e| e.to_string()))
    });
    assert!(matches!(
        err.0,
        Response::Error {
            code: code::UNKNOWN_TYPE,
            ..
        }
    ));
    assert_eq!(err.1.unwrap()[1], None);
    let _ = Error::Closed;

    server.stop().unwrap();
}
