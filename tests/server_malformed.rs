//! Malformed frames get error frames (and a close when the stream can no
//! longer be framed) while a well-behaved client on another connection
//! keeps working and nothing acknowledged changes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod net_common;
#[path = "common/rng.rs"]
mod rng;
use net_common as common;
use net_common::{answer, assert_closed, connect, error_code};
use rng::Rng;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use xtdb::net::protocol::{self, code, kind, Response, HEADER_LEN, MAX_POINTS};
use xtdb::net::Client;
use xtdb::Point;

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

    // Error frames reach the client as ClientError::Remote.
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

    server.stop().unwrap();
}

/// A few valid request frames (tags ≥ 1,000,000, apart from the checked
/// client's), then mutated: bytes flipped, cut, spliced, duplicated or
/// length fields rewritten. `XTDB_STREAM_SEED` replays one stream.
fn mutated_stream(rng: &mut Rng) -> Vec<u8> {
    let mut s = Vec::new();
    for i in 0..1 + rng.below(4) {
        let id = rng.next();
        match rng.below(4) {
            0 => {
                let pts: Vec<Point> = (0..rng.below(50) as u32)
                    .map(|j| Point::new(1_000_000 + j, (i * 100 + j as usize) as i64, 1.5, 192))
                    .collect();
                protocol::encode_write(&mut s, id, &pts)
            }
            1 => protocol::encode_range(&mut s, id, 1_000_000, 0, 1_000),
            2 => protocol::encode_latest(&mut s, id, &[1_000_000, 5, 9]),
            _ => protocol::encode_stats(&mut s, id),
        }
    }
    for _ in 0..1 + rng.below(6) {
        if s.is_empty() {
            break;
        }
        let at = rng.below(s.len());
        match rng.below(6) {
            0 => s[at] ^= 1 << rng.below(8),
            1 => s[at] = rng.next() as u8,
            2 => s.truncate(at),
            3 => {
                let end = (at + rng.below(64)).min(s.len());
                let piece = s[at..end].to_vec();
                let to = rng.below(s.len());
                s.splice(to..to, piece);
            }
            4 => {
                // Rewrite a length-like u32 (a header's, or a count).
                let at = at.min(s.len().saturating_sub(4));
                let v = [0u32, 1, 24, u32::MAX, 1 << 25, rng.next() as u32][rng.below(6)];
                let end = (at + 4).min(s.len());
                s[at..end].copy_from_slice(&v.to_le_bytes()[..end - at]);
            }
            _ => s.extend((0..rng.below(40)).map(|_| rng.next() as u8)),
        }
    }
    s
}

#[test]
fn mutated_request_streams_get_well_formed_answers_and_break_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::server(dir.path());
    let addr = server.local_addr().to_string();
    let written: Vec<Point> = (0..200u32)
        .map(|t| Point::new(t, 7, t as f64, 192))
        .collect();
    {
        let (addr, w) = (addr.clone(), written.clone());
        common::client(move || async move {
            let mut c = Client::connect(&addr).await.unwrap();
            assert_eq!(c.write(&w).await.unwrap(), 200);
        });
    }
    let seeds: Vec<u64> = match std::env::var("XTDB_STREAM_SEED") {
        Ok(s) => vec![s.parse().unwrap()],
        Err(_) => (1..=300).collect(),
    };
    let (mut answers, mut errors) = (0, 0);
    for seed in seeds {
        let mut rng = Rng::seeded(seed);
        let stream = mutated_stream(&mut rng);
        let mut s = connect(&addr);
        let _ = s.write_all(&stream);
        let _ = s.shutdown(Shutdown::Write);
        // Every answer until the close must be a well-formed frame.
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let mut at = 0;
        while at < raw.len() {
            let ctx = || format!("seed {seed}: answer at byte {at} of {}", raw.len());
            let head: [u8; HEADER_LEN] = raw
                .get(at..at + HEADER_LEN)
                .unwrap_or_else(|| panic!("{}: torn header", ctx()))
                .try_into()
                .unwrap();
            let h = protocol::decode_header(&head).unwrap_or_else(|e| panic!("{}: {e}", ctx()));
            let end = at + HEADER_LEN + h.len as usize;
            let payload = raw
                .get(at + HEADER_LEN..end)
                .unwrap_or_else(|| panic!("{}: torn payload", ctx()));
            match protocol::decode_response(&head, &h, payload) {
                Ok(Response::Error { message, .. }) => {
                    assert!(!message.is_empty(), "{}: empty error message", ctx());
                    errors += 1;
                }
                Ok(_) => answers += 1,
                Err(e) => panic!("{}: {e}", ctx()),
            }
            at = end;
        }
    }
    // The server still serves, and the checked client's points are intact.
    common::client(move || async move {
        let mut c = Client::connect(&addr).await.unwrap();
        for p in &written {
            assert_eq!(c.range(p.tag, i64::MIN, i64::MAX).await.unwrap(), vec![*p]);
        }
    });
    eprintln!("300 mutated streams: {answers} answers, {errors} error frames");
    assert!(
        answers > 0 && errors > 0,
        "mutations too weak or too strong"
    );
    server.stop().unwrap();
}
