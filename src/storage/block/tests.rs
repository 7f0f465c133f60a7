use super::*;
use crate::storage::codec::Encoder;

fn seg_of(samples: &[Sample]) -> Segment {
    let mut e = Encoder::default();
    for s in samples {
        e.push(s.ts, s.value.to_bits(), s.quality);
    }
    e.finish()
}

fn series(n: i64, t0: i64, f: impl Fn(i64) -> f64) -> Vec<Sample> {
    (0..n)
        .map(|i| Sample {
            ts: t0 + i * 1_000_000 + (i * 7919) % 300,
            value: f(i),
            quality: if i % 97 == 0 { 0 } else { 192 },
        })
        .collect()
}

fn points(tag: u32, s: &[Sample]) -> Vec<Point> {
    s.iter()
        .map(|s| Point::new(tag, s.ts, s.value, s.quality))
        .collect()
}

fn flips_detected(b: &[u8], upto: usize) {
    for byte in (0..upto).step_by(7) {
        let mut c = b.to_vec();
        c[byte] ^= 0x10;
        assert!(verify(&c).is_err(), "flip at byte {byte} went unnoticed");
    }
}

#[test]
fn packed_block_round_trips_every_segment_and_every_flip_is_detected() {
    let a = series(300, 1_700_000_000_000_000, |i| (i as f64 / 7.0).sin());
    let b = series(40, 1_600_000_000_000_000, |i| i as f64 * 0.5);
    let c = series(1, -5, |_| -0.0);
    let (sa, sb, sc) = (seg_of(&a), seg_of(&b), seg_of(&c));
    let parts = [
        Part {
            tag: 7,
            seg: &sa,
            order: 90,
        },
        Part {
            tag: 3,
            seg: &sb,
            order: 5,
        },
        Part {
            tag: u32::MAX,
            seg: &sc,
            order: u64::MAX,
        },
    ];
    let mut out = vec![0u8; BLOCK_SIZE];
    let (entries, crc) = encode(&mut out, &parts, 11, 12);
    let blk = verify(&out).unwrap();
    assert_eq!(
        (blk.version, blk.encoding, blk.chunk_id, blk.slot, blk.crc),
        (2, SEGMENTS, 11, 12, crc)
    );
    assert_eq!(blk.segments, entries);
    for (e, (tag, want)) in blk.segments.iter().zip([(7, &a), (3, &b), (u32::MAX, &c)]) {
        assert_eq!(e.tag, tag);
        let mut got = Vec::new();
        decode_all(&out, &blk, e, &mut got).unwrap();
        assert_eq!(got, points(tag, want));
        // A sub-range.
        let (lo, hi) = (want[want.len() / 3].ts, want[2 * want.len() / 3].ts);
        let mut part = Vec::new();
        decode_into(&out, &blk, e, lo, hi, &mut part).unwrap();
        let want_part: Vec<Point> = points(tag, want)
            .into_iter()
            .filter(|p| p.ts >= lo && p.ts < hi)
            .collect();
        assert_eq!(part, want_part);
    }
    let used = u32_at(&out, 52) as usize;
    flips_detected(&out, HEADER + used);
}

#[test]
fn a_full_segment_fits_a_block_of_its_own() {
    let mut e = Encoder::default();
    let mut i = 0i64;
    while e.payload_len() + codec::MAX_POINT_BYTES <= PAYLOAD_CAPACITY {
        e.push(i * 1000, ((i * 2654435761) as f64).to_bits(), 192);
        i += 1;
    }
    let seg = e.finish();
    assert!(footprint(&seg) <= BODY);
    let mut out = vec![0u8; BLOCK_SIZE];
    encode(
        &mut out,
        &[Part {
            tag: 1,
            seg: &seg,
            order: 1,
        }],
        0,
        0,
    );
    let blk = verify(&out).unwrap();
    let mut got = Vec::new();
    decode_all(&out, &blk, &blk.segments[0], &mut got).unwrap();
    assert_eq!(got.len(), i as usize);
}

#[test]
fn version_1_blocks_still_read_as_one_segment() {
    let pts = series(POINTS_PER_BLOCK as i64, 0, |i| (i as f64).sin());
    let mut out = vec![0u8; BLOCK_SIZE];
    let crc = encode_raw(&mut out, 9, &pts, 77, 3, 12);
    let blk = verify(&out).unwrap();
    assert_eq!(
        (blk.version, blk.encoding, blk.crc, blk.chunk_id, blk.slot),
        (1, RAW, crc, 3, 12)
    );
    let e = blk.segments[0];
    assert_eq!((e.tag, e.count, e.order), (9, POINTS_PER_BLOCK as u32, 77));
    let mut got = Vec::new();
    decode_all(&out, &blk, &e, &mut got).unwrap();
    assert_eq!(got, points(9, &pts));
    flips_detected(&out, HEADER + 17 * POINTS_PER_BLOCK);

    let pts = series(3000, 1_700_000_000_000_000, |i| {
        ((i as f64) / 50.0).sin().round()
    });
    let mut out = vec![0u8; BLOCK_SIZE];
    encode_v1(&mut out, 4, &seg_of(&pts), 5, 6, 7);
    let blk = verify(&out).unwrap();
    assert_eq!((blk.version, blk.encoding), (1, COMPRESSED));
    let mut got = Vec::new();
    decode_all(&out, &blk, &blk.segments[0], &mut got).unwrap();
    assert_eq!(got, points(4, &pts));
}

/// Re-seals `b`'s CRC after an edit, so only the edit is wrong.
fn reseal(b: &mut [u8]) {
    let used = (u32_at(b, 52) as usize).min(BODY);
    let crc = checksum(b, used);
    b[60..64].copy_from_slice(&crc.to_le_bytes());
}

/// Found by `scripts/fuzz.sh` (target `block`): blocks whose checksum is
/// right but whose timestamps are out of order, or outside the declared
/// range, are refused instead of served.
#[test]
fn consistent_checksums_do_not_excuse_bad_timestamps() {
    let pts = series(10, 100, |i| i as f64);
    let mut b = vec![0u8; BLOCK_SIZE];
    encode_raw(&mut b, 9, &pts, 1, 1, 0);
    let (x, y) = (u64_at(&b, HEADER), u64_at(&b, HEADER + 8));
    b[HEADER..HEADER + 8].copy_from_slice(&y.to_le_bytes());
    b[HEADER + 8..HEADER + 16].copy_from_slice(&x.to_le_bytes());
    reseal(&mut b);
    let blk = verify(&b).unwrap();
    let mut out = Vec::new();
    let e = decode_all(&b, &blk, &blk.segments[0], &mut out).unwrap_err();
    assert!(e.contains("out of order"), "{e}");
    assert!(out.is_empty());

    // A v2 segment whose table narrows its range below its points'.
    let pts = series(100, 1000, |i| i as f64);
    let seg = seg_of(&pts);
    let mut b = vec![0u8; BLOCK_SIZE];
    encode(
        &mut b,
        &[Part {
            tag: 2,
            seg: &seg,
            order: 1,
        }],
        0,
        0,
    );
    let max = u64_at(&b, HEADER + 16) as i64;
    b[HEADER + 16..HEADER + 24].copy_from_slice(&((max - 1) as u64).to_le_bytes());
    b[24..32].copy_from_slice(&((max - 1) as u64).to_le_bytes());
    reseal(&mut b);
    let blk = verify(&b).unwrap();
    let e = decode_all(&b, &blk, &blk.segments[0], &mut out).unwrap_err();
    assert!(e.contains("outside"), "{e}");
    assert!(out.is_empty());
}

#[test]
fn inconsistent_tables_and_counts_are_refused() {
    let a = seg_of(&series(100, 0, |i| i as f64));
    let b2 = seg_of(&series(50, 0, |i| -(i as f64)));
    let mut b = vec![0u8; BLOCK_SIZE];
    encode(
        &mut b,
        &[
            Part {
                tag: 1,
                seg: &a,
                order: 1,
            },
            Part {
                tag: 2,
                seg: &b2,
                order: 2,
            },
        ],
        0,
        0,
    );
    type Edit = fn(&mut [u8]);
    let edits: [(&str, Edit); 7] = [
        ("segment count 0", |b| {
            b[8..10].copy_from_slice(&0u16.to_le_bytes())
        }),
        ("segment count 3", |b| {
            b[8..10].copy_from_slice(&3u16.to_le_bytes())
        }),
        ("points", |b| b[12..16].copy_from_slice(&7u32.to_le_bytes())),
        ("block min", |b| {
            b[16..24].copy_from_slice(&(-9i64).to_le_bytes())
        }),
        ("segment count", |b| {
            b[HEADER + 4..HEADER + 8].copy_from_slice(&101u32.to_le_bytes())
        }),
        ("segment length", |b| {
            b[HEADER + 32..HEADER + 34].copy_from_slice(&9000u16.to_le_bytes())
        }),
        ("used", |b| {
            b[52..56].copy_from_slice(&(BODY as u32 + 1).to_le_bytes())
        }),
    ];
    for (what, f) in edits {
        let mut c = b.clone();
        f(&mut c);
        reseal(&mut c);
        assert!(verify(&c).is_err(), "{what} accepted");
    }
    let mut c = b.clone();
    c[6] = 1; // a v2 table read as v1 encoding
    reseal(&mut c);
    assert!(verify(&c).is_err());
}

proptest::proptest! {
    #![proptest_config(crate::proptest_config::config(256))]
    #[test]
    fn random_blocks_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600), v2 in proptest::bool::ANY) {
        let mut b = vec![0u8; BLOCK_SIZE];
        b[..bytes.len()].copy_from_slice(&bytes);
        b[0..4].copy_from_slice(MAGIC);
        b[4..6].copy_from_slice(&(if v2 { VERSION } else { VERSION_1 }).to_le_bytes());
        b[6..8].copy_from_slice(&(if v2 { SEGMENTS } else { COMPRESSED }).to_le_bytes());
        let used = (u32_at(&b, 52) as usize).min(BODY);
        b[52..56].copy_from_slice(&(used as u32).to_le_bytes());
        reseal(&mut b);
        if let Ok(blk) = verify(&b) {
            for e in &blk.segments {
                let mut out = Vec::new();
                if decode_all(&b, &blk, e, &mut out).is_ok() {
                    proptest::prop_assert!(out.len() <= e.count as usize);
                    proptest::prop_assert!(out.windows(2).all(|w| w[0].ts < w[1].ts));
                    proptest::prop_assert!(out.iter().all(|p| e.min_ts <= p.ts && p.ts <= e.max_ts));
                }
            }
        }
    }
}
