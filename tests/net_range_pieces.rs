//! Ranges asked as pieces (request `0x09`) against a real two-shard
//! server answer exactly what plain ranges (`0x02`) answer, for tags whose
//! points are partly in blocks, partly in memory and rewritten in places;
//! against a server that does not know the request (error 6, as an older
//! server answers), the client asks once, then plain ranges only.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod net_common;
use net_common as common;

use std::io::{Read, Write};

use common::series;
use xtdb::net::protocol::{self, kind, Response, HEADER_LEN};
use xtdb::net::Client;
use xtdb::Point;

/// [`series`] quantised like a plant signal (so a block holds many
/// points), with some bad-quality points.
fn plant(tag: u32, t0: i64, n: i64) -> Vec<Point> {
    series(tag, t0, n)
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            Point::new(
                tag,
                p.ts,
                (p.value * 50.0).round() / 4.0,
                if i % 97 == 0 { 0 } else { 192 },
            )
        })
        .collect()
}

#[test]
fn ranges_as_pieces_equal_plain_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::server(dir.path());
    let addr = server.local_addr().to_string();

    common::client(move || async move {
        let mut cl = Client::connect(&addr).await.unwrap();
        let t0 = 1_700_000_000_000_000i64;
        let points: Vec<Point> = [1u32, 2]
            .iter()
            .flat_map(|&t| plant(t, t0, 60_000))
            .collect();
        common::write_until_flushed(&mut cl, &points, 5_000, 4, 30).await;
        let s = 1_000_000i64;
        let ranges = [
            (i64::MIN, i64::MAX),
            (t0, t0 + 60_000 * s),
            (t0 + 123 * s, t0 + 4_567 * s),
            (t0 + 8_999 * s + 1, t0 + 40_001 * s),
            (t0 + 59_990 * s, t0 + 90_000 * s),
            (t0 - 10 * s, t0 + 1),
            (t0 + 500 * s, t0 + 500 * s + 1),
            (t0 + 500 * s + 1, t0 + 501 * s),
            (5, 5),
            (9, 3),
        ];
        let check = |what: &'static str| {
            let addr = addr.clone();
            async move {
                let mut cl = Client::connect(&addr).await.unwrap();
                for tag in [1u32, 2, 3] {
                    for (start, end) in ranges {
                        let pieces = cl.range(tag, start, end).await.unwrap();
                        let points = cl.range_points(tag, start, end).await.unwrap();
                        assert!(
                            pieces == points,
                            "{what}: tag {tag} {start}..{end}: {} points as pieces, {} plain",
                            pieces.len(),
                            points.len()
                        );
                    }
                }
                let full = cl.range(1, i64::MIN, i64::MAX).await.unwrap();
                assert_eq!(full.len(), 60_000, "{what}");
            }
        };
        check("flushed and buffered").await;
        let st = cl.stats().await.unwrap();
        assert!(
            common::stat(&st, "total.segments_shipped_encoded") >= 4,
            "{st:?}"
        );
        let merged = common::stat(&st, "total.pieces_ranges_merged");
        // Rewrites inside flushed blocks: the owner must merge (later
        // write wins) instead of shipping overlapping pieces.
        let again: Vec<Point> = plant(1, t0, 60_000)[9_000..10_000]
            .iter()
            .map(|p| Point::new(p.tag, p.ts, -p.value, 0))
            .collect();
        assert_eq!(cl.write(&again).await.unwrap(), 1_000);
        check("after rewrites").await;
        let st = cl.stats().await.unwrap();
        assert!(
            common::stat(&st, "total.pieces_ranges_merged") > merged,
            "{st:?}"
        );
        let got = cl.range(1, t0 + 9_000 * s, t0 + 10_000 * s).await.unwrap();
        assert!(got.iter().zip(&again).all(|(a, b)| a == b), "rewrites win");
    });
}

/// Reads one frame (header and payload) or `None` at the end of the stream.
fn read_frame(s: &mut std::net::TcpStream) -> Option<([u8; HEADER_LEN], Vec<u8>)> {
    let mut h = [0u8; HEADER_LEN];
    s.read_exact(&mut h).ok()?;
    let len = u32::from_le_bytes(h[16..20].try_into().unwrap()) as usize;
    let mut p = vec![0; len];
    s.read_exact(&mut p).ok()?;
    Some((h, p))
}

#[test]
fn a_server_without_pieces_is_asked_for_points() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let old = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut kinds = Vec::new();
        while let Some((h, payload)) = read_frame(&mut s) {
            let id = u64::from_le_bytes(h[8..16].try_into().unwrap());
            kinds.push(h[5]);
            let resp = if h[5] == kind::RANGE {
                let tag = u32::from_le_bytes(payload[0..4].try_into().unwrap());
                Response::Points(vec![Point::new(tag, 7, 1.5, 192)])
            } else {
                Response::Error {
                    code: protocol::code::UNKNOWN_TYPE,
                    message: format!("unknown frame type {:#04x}", h[5]),
                }
            };
            let mut out = Vec::new();
            protocol::encode_response(&mut out, id, &resp);
            s.write_all(&out).unwrap();
        }
        kinds
    });
    common::client(move || async move {
        let mut cl = Client::connect(&addr).await.unwrap();
        for tag in [4u32, 5, 6] {
            let got = cl.range(tag, 0, 100).await.unwrap();
            assert_eq!(got, vec![Point::new(tag, 7, 1.5, 192)]);
        }
    });
    let kinds = old.join().unwrap();
    assert_eq!(
        kinds,
        [kind::RANGE_PIECES, kind::RANGE, kind::RANGE, kind::RANGE],
        "asked for pieces once, then plain ranges"
    );
}
