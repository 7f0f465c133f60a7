//! Line-protocol parsing: a table of inputs and the exact points or error
//! each must give (see `src/http/line.rs` for the rules).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use xtdb::http::line::{parse_batch, series_key, LineError, Precision, Sample};
use xtdb::net::limits::TimeWindow;

const NOW: i64 = 1_700_000_000_000_000;

/// The outcome of parsing one body.
type Parsed = Result<Vec<Sample>, LineError>;

fn s(key: &str, ts: i64, value: f64, quality: u8) -> Sample {
    Sample {
        key: key.into(),
        ts,
        value,
        quality,
    }
}

fn parse(body: &[u8], p: Precision) -> Parsed {
    let mut out = Vec::new();
    parse_batch(body, p, NOW, &TimeWindow::unbounded(), &mut out).map(|()| out)
}

fn err(line: usize, message: &str) -> Parsed {
    Err(LineError {
        line,
        message: message.into(),
    })
}

#[test]
fn accepted_inputs() {
    use Precision::*;
    let cases: Vec<(&[u8], Precision, Vec<Sample>)> = vec![
        (b"m v=1 1000", Ns, vec![s("m v", 1, 1.0, 192)]),
        (b"m v=1", Ns, vec![s("m v", NOW, 1.0, 192)]),
        (b"m v=-1.5e3 7", Us, vec![s("m v", 7, -1500.0, 192)]),
        (b"m v=1 7", Ms, vec![s("m v", 7000, 1.0, 192)]),
        (b"m v=1 7", S, vec![s("m v", 7_000_000, 1.0, 192)]),
        (
            b"m v=1 1",
            Precision::M,
            vec![s("m v", 60_000_000, 1.0, 192)],
        ),
        (b"m v=1 1", H, vec![s("m v", 3_600_000_000, 1.0, 192)]),
        // Nanoseconds are floored to microseconds, also below zero.
        (b"m v=1 -1", Ns, vec![s("m v", -1, 1.0, 192)]),
        // Tags sorted in the key; several fields give several series.
        (
            b"plant,z=1,a=2 v=1,w=2i 5",
            Us,
            vec![
                s("plant,a=2,z=1 v", 5, 1.0, 192),
                s("plant,a=2,z=1 w", 5, 2.0, 192),
            ],
        ),
        // Quality from `q` or `quality`, integer or integral float.
        (b"m v=1,q=0i 5", Us, vec![s("m v", 5, 1.0, 0)]),
        (b"m quality=12,v=3u 5", Us, vec![s("m v", 5, 3.0, 12)]),
        // Booleans.
        (
            b"m a=t,b=FALSE,c=True 5",
            Us,
            vec![
                s("m a", 5, 1.0, 192),
                s("m b", 5, 0.0, 192),
                s("m c", 5, 1.0, 192),
            ],
        ),
        // Escapes are kept in the canonical key.
        (
            b"my\\ meas\\,x,t\\=k=v\\ 1 f\\,x=1 5",
            Us,
            vec![s("my\\ meas\\,x,t\\=k=v\\ 1 f\\,x", 5, 1.0, 192)],
        ),
        // CRLF, comments, blank lines, leading spaces, trailing spaces.
        (
            b"# comment\r\n\r\n  m v=1 5  \r\nm v=2 6\n",
            Us,
            vec![s("m v", 5, 1.0, 192), s("m v", 6, 2.0, 192)],
        ),
        // UTF-8 names.
        (
            "mé,ort=Zürich v=1 5".as_bytes(),
            Us,
            vec![s("mé,ort=Zürich v", 5, 1.0, 192)],
        ),
        // i64::MAX ns is in range.
        (
            b"m v=1 9223372036854775807",
            Ns,
            vec![s("m v", 9_223_372_036_854_775, 1.0, 192)],
        ),
        (b"", Ns, vec![]),
    ];
    for (input, p, want) in cases {
        let got = parse(input, p);
        assert_eq!(got, Ok(want), "input {:?}", String::from_utf8_lossy(input));
    }
}

#[test]
fn rejected_inputs() {
    use Precision::*;
    let nan = "field \"v\": invalid number \"NaN\" (NaN and infinity are not accepted)";
    let cases: Vec<(&[u8], Precision, Parsed)> = vec![
        (b"m v=NaN 1", Ns, err(1, nan)),
        (
            b"m v=1\nm v=1e400 1",
            Ns,
            err(
                2,
                "field \"v\": \"1e400\" is not a finite f64 (NaN and infinity are not accepted)",
            ),
        ),
        (
            b"m v=inf",
            Ns,
            err(
                1,
                "field \"v\": invalid number \"inf\" (NaN and infinity are not accepted)",
            ),
        ),
        (b"m,a=1,a=2 v=1", Ns, err(1, "duplicate tag key \"a\"")),
        (b"m v=1,v=2", Ns, err(1, "duplicate field key \"v\"")),
        (
            b"m v=1 99999999999999999999",
            Ns,
            err(1, "timestamp 99999999999999999999 is out of range"),
        ),
        (
            b"m v=1 -9223372036854775808",
            Us,
            err(
                1,
                "timestamp -9223372036854775808 (Us) is out of range \
                 (1677-09-21T00:12:43Z .. 2262-04-11T23:47:16Z)",
            ),
        ),
        (
            b"m v=1 9223372036854775807",
            S,
            err(
                1,
                "timestamp 9223372036854775807 (S) is out of range \
                 (1677-09-21T00:12:43Z .. 2262-04-11T23:47:16Z)",
            ),
        ),
        (b"m v=1 12x", Ns, err(1, "invalid timestamp \"12x\"")),
        (
            b"m v=1 1 2",
            Ns,
            err(1, "unexpected text after the timestamp: \"1 2\""),
        ),
        (b"m\nok v=1\n\xff v=1", Ns, err(1, "missing fields")),
        (b"ok v=1\n\xffm v=1", Ns, err(2, "invalid UTF-8 at byte 0")),
        (
            b"m s=\"text\"",
            Ns,
            err(
                1,
                "field \"s\": string values are not supported (xtdb stores numbers)",
            ),
        ),
        (b"m,t= v=1", Ns, err(1, "tag \"t\" has an empty value")),
        (b"m,=x v=1", Ns, err(1, "empty tag key")),
        (b"m,t v=1", Ns, err(1, "tag \"t\" has no '=value'")),
        (b",t=1 v=1", Ns, err(1, "missing measurement")),
        (b"m v=", Ns, err(1, "field \"v\" has no value")),
        (
            b"m v=1i2",
            Ns,
            err(
                1,
                "field \"v\": invalid number \"1i2\" (NaN and infinity are not accepted)",
            ),
        ),
        (
            b"m v=9223372036854775808i",
            Ns,
            err(1, "field \"v\": invalid integer \"9223372036854775808i\""),
        ),
        (
            b"m v=-1u",
            Ns,
            err(1, "field \"v\": invalid unsigned integer \"-1u\""),
        ),
        (
            b"m q=192i",
            Ns,
            err(1, "no value field (only a quality field)"),
        ),
        (
            b"m v=1,q=256i",
            Ns,
            err(1, "field \"q\": quality must be an integer 0..=255"),
        ),
        (
            b"m v=1,q=1.5",
            Ns,
            err(1, "field \"q\": quality must be an integer 0..=255"),
        ),
        (b"m  ", Ns, err(1, "missing field key")),
    ];
    for (input, p, want) in cases {
        assert_eq!(
            parse(input, p),
            want,
            "input {:?}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn precisions() {
    assert_eq!(Precision::parse_v1(Some("u")), Some(Precision::Us));
    assert_eq!(Precision::parse_v1(Some("n")), Some(Precision::Ns));
    assert_eq!(Precision::parse_v1(Some("xx")), None);
    assert_eq!(Precision::parse_v2("us"), Some(Precision::Us));
    assert_eq!(Precision::parse_v2("m"), None);
    assert_eq!(Precision::parse_v2("h"), None);
    assert_eq!(Precision::parse_v2(""), None);
}

#[test]
fn series_keys_escape() {
    assert_eq!(
        series_key("a b,c", &[("k=1".into(), "v 2".into())], "f,x"),
        "a\\ b\\,c,k\\=1=v\\ 2 f\\,x"
    );
}

#[test]
fn never_panics_on_arbitrary_bytes() {
    use proptest::prelude::*;
    let mut runner = proptest::test_runner::TestRunner::default();
    runner
        .run(
            &proptest::collection::vec(
                prop_oneof![
                    Just(b','),
                    Just(b' '),
                    Just(b'='),
                    Just(b'\\'),
                    Just(b'"'),
                    Just(b'\n'),
                    Just(b'1'),
                    Just(b'i'),
                    any::<u8>()
                ],
                0..64,
            ),
            |bytes| {
                let mut out = Vec::new();
                let _ = parse_batch(&bytes, Precision::Ns, NOW, &TimeWindow::default(), &mut out);
                Ok(())
            },
        )
        .unwrap();
}
