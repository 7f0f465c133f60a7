//! The native COUNT BOUND request against a real two-shard server: for
//! tags whose points are partly flushed to blocks and partly in memory,
//! rewritten in places, the answer is never below what a range of the
//! same arguments returns, and its min/max bracket those points; an empty
//! or inverted range answers no points.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod net_common;
use net_common as common;

use common::series;
use xtdb::net::Client;
use xtdb::Point;

#[test]
fn count_bound_is_an_upper_bound_and_brackets_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::server(dir.path());
    let addr = server.local_addr().to_string();

    common::client(move || async move {
        let mut cl = Client::connect(&addr).await.unwrap();
        let t0 = 1_700_000_000_000_000i64;
        // Two tags (on either shard or both): 20,000 points each, written
        // in batches, then the middle 1,000 of tag 1 written again (later
        // write wins, so the range still holds each timestamp once).
        let points: Vec<Point> = [1u32, 2]
            .iter()
            .flat_map(|&t| series(t, t0, 20_000))
            .collect();
        // Some of it in blocks, so both the index and the buffers are
        // counted.
        common::write_until_flushed(&mut cl, &points, 2_500, 1, 20).await;
        let again: Vec<Point> = series(1, t0, 20_000)[9_000..10_000]
            .iter()
            .map(|p| Point::new(p.tag, p.ts, -p.value, 0))
            .collect();
        assert_eq!(cl.write(&again).await.unwrap(), 1_000);

        let s = 1_000_000i64;
        for tag in [1u32, 2, 3] {
            for (start, end) in [
                (i64::MIN, i64::MAX),
                (t0, t0 + 20_000 * s),
                (t0 + 123 * s, t0 + 4_567 * s),
                (t0 + 8_999 * s + 1, t0 + 10_001 * s),
                (t0 + 19_990 * s, t0 + 40_000 * s),
                (t0 - 10 * s, t0 + 1),
                (t0 + 500 * s, t0 + 500 * s + 1),
                (t0 + 500 * s + 1, t0 + 501 * s),
            ] {
                let got = cl.range(tag, start, end).await.unwrap();
                let (n, lo, hi) = cl.count_bound(tag, start, end).await.unwrap();
                let what = format!("tag {tag} [{start}, {end}): {} points", got.len());
                assert!(n >= got.len() as u64, "{what}: bound {n}");
                if got.is_empty() {
                    if n == 0 {
                        assert!(lo > hi, "{what}: no points but [{lo}, {hi}]");
                    }
                } else {
                    assert!(lo <= got[0].ts, "{what}: min {lo}");
                    assert!(hi >= got[got.len() - 1].ts, "{what}: max {hi}");
                    assert!(lo >= start && hi < end, "{what}: [{lo}, {hi}] outside");
                }
                if tag == 3 {
                    assert_eq!(n, 0, "{what}: tag 3 was never written");
                }
            }
            // Inverted and empty ranges: no points.
            for (start, end) in [(t0 + 5 * s, t0), (t0, t0)] {
                let (n, lo, hi) = cl.count_bound(tag, start, end).await.unwrap();
                assert_eq!(n, 0, "tag {tag} [{start}, {end})");
                assert!(lo > hi);
            }
        }
        // Over everything, the bounds are the first and last points
        // themselves (segments' own min and max, the buffers' points).
        for tag in [1u32, 2] {
            let (n, lo, hi) = cl.count_bound(tag, i64::MIN, i64::MAX).await.unwrap();
            assert!(n >= 20_000, "tag {tag}: {n}");
            assert_eq!((lo, hi), (t0, t0 + 19_999 * s), "tag {tag}");
        }
    });
    server.stop().unwrap();
}
