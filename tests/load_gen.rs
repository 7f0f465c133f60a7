//! The load generator's points are a pure function of `(seed, tag, ts)`, and
//! an ack log written then parsed gives back exactly the acknowledged points.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;

use xtdb::load::acklog::{AckLog, AckLogWriter};
use xtdb::load::gen::{self, Group};
use xtdb::load::verify::expected_points;
use xtdb::Point;

fn group(seed: u64, tag_lo: u32, n_tags: u32) -> Group {
    Group {
        seed,
        tag_lo,
        n_tags,
        t0: 1_767_225_600_000_000,
        period_us: 1_000_000,
        signal: xtdb::load::gen::Signal::Noise,
    }
}

#[test]
fn same_inputs_give_the_same_point() {
    for tag in [0u32, 1, 99_999, u32::MAX] {
        for ts in [0i64, 1, 1_767_225_600_000_000, -5, i64::MAX] {
            let a = gen::point(42, tag, ts);
            let b = gen::point(42, tag, ts);
            assert_eq!(a, b);
            assert_eq!(a.value.to_bits(), b.value.to_bits());
            assert_eq!((a.tag, a.ts), (tag, ts));
            assert!(a.value.is_finite());
        }
    }
}

#[test]
fn seed_tag_and_time_all_change_the_value() {
    let p = gen::point(1, 7, 1_000_000);
    assert_ne!(p.value, gen::point(2, 7, 1_000_000).value);
    assert_ne!(p.value, gen::point(1, 8, 1_000_000).value);
    assert_ne!(p.value, gen::point(1, 7, 2_000_000).value);
}

#[test]
fn quality_is_mostly_good() {
    let good = (0..10_000)
        .filter(|&i| gen::point(3, i % 100, i64::from(i) * 1_000_000).quality == gen::QUALITY_GOOD)
        .count();
    assert!(good > 9_900, "{good} of 10000 good");
}

#[test]
fn group_fill_is_tag_major_by_tick() {
    let g = group(5, 100, 3);
    let mut v = Vec::new();
    assert_eq!(g.fill(0, 7, &mut v), 7);
    let got: Vec<(u32, i64)> = v.iter().map(|p| (p.tag, p.ts)).collect();
    let t0 = g.t0;
    let s = 1_000_000;
    assert_eq!(
        got,
        vec![
            (100, t0),
            (101, t0),
            (102, t0),
            (100, t0 + s),
            (101, t0 + s),
            (102, t0 + s),
            (100, t0 + 2 * s)
        ]
    );
}

fn written_points(batches: &[(Group, u64, u64)]) -> Vec<Point> {
    let mut v = Vec::new();
    for (g, first, count) in batches {
        g.fill(*first, *count, &mut v);
    }
    v.sort_by_key(|p| (p.tag, p.ts));
    v
}

#[test]
fn ack_log_round_trips_to_the_same_points() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("acks.log");
    let a = group(11, 0, 7);
    let b = group(12, 1_000, 3);
    let batches = [
        (a, 0, 5),
        (b, 0, 10),
        (a, 5, 9), // crosses a tick boundary
        (b, 10, 2),
        (a, 14, 30), // several whole ticks
    ];
    {
        let mut w = AckLogWriter::open(&path).expect("open");
        w.group("r.0", &a).expect("group");
        w.group("r.1", &b).expect("group");
        for (g, first, count) in &batches {
            let id = if g.seed == 11 { "r.0" } else { "r.1" };
            w.batch(id, *first, *count).expect("batch");
        }
    }
    let log = AckLog::read(&path).expect("read");
    assert!(log.bad_lines.is_empty());
    assert!(!log.torn_tail);
    assert_eq!(log.points(), 5 + 10 + 9 + 2 + 30);
    assert_eq!(expected_points(&log), written_points(&batches));
}

#[test]
fn torn_last_line_is_ignored_and_corrupt_lines_are_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("acks.log");
    let a = group(1, 0, 4);
    {
        let mut w = AckLogWriter::open(&path).expect("open");
        w.group("x.0", &a).expect("group");
        w.batch("x.0", 0, 4).expect("batch");
        w.batch("x.0", 4, 4).expect("batch");
    }
    // Flip a digit of the second batch's count: its CRC no longer matches.
    let text = std::fs::read_to_string(&path).expect("read");
    let damaged = text.replacen("B x.0 4 4", "B x.0 4 5", 1);
    assert_ne!(text, damaged);
    std::fs::write(&path, damaged).expect("write");
    // A generator killed mid-line leaves a torn tail.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open");
    f.write_all(b"B x.0 8 4 1234").expect("append");
    drop(f);
    let log = AckLog::read(&path).expect("read");
    assert!(log.torn_tail);
    assert_eq!(log.bad_lines, vec![3]);
    assert_eq!(expected_points(&log), written_points(&[(a, 0, 4)]));
}

#[test]
fn later_group_wins_on_the_same_tag_and_timestamp() {
    let a = group(1, 0, 2);
    let b = group(2, 0, 2);
    let mut bytes = Vec::new();
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("acks.log");
        let mut w = AckLogWriter::open(&path).expect("open");
        w.group("a", &a).expect("group");
        w.batch("a", 0, 4).expect("batch");
        w.group("b", &b).expect("group");
        w.batch("b", 2, 2).expect("batch");
        bytes.extend(std::fs::read(&path).expect("read"));
    }
    let pts = expected_points(&AckLog::parse(&bytes));
    assert_eq!(pts.len(), 4);
    let t1 = a.t0 + a.period_us;
    for p in pts {
        let seed = if p.ts == t1 { 2 } else { 1 };
        assert_eq!(p, gen::point(seed, p.tag, p.ts));
    }
}
