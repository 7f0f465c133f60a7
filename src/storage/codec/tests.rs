//! Codec round trips on random and adversarial input, and decoding of
//! arbitrary bytes.

use proptest::prelude::*;

use super::*;

fn value() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => (-1000i32..1000).prop_map(|v| (v as f64 / 8.0).to_bits()),
        4 => (-100_000i64..100_000, 0usize..4).prop_map(|(v, d)| (v as f64 / [1.0, 10.0, 100.0, 1000.0][d]).to_bits()),
        1 => any::<i64>().prop_map(|v| (v as f64).to_bits()),
        2 => (-100_000i64..100_000, 0usize..8).prop_map(|(v, d)| (v as f64 * [1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7][d]).to_bits()),
        2 => any::<u64>(),
        1 => Just(f64::NAN.to_bits()),
        1 => (0u64..1 << 51).prop_map(|p| 0x7ff8_0000_0000_0000 | p),
        1 => Just((-0.0f64).to_bits()),
        1 => Just(0.0f64.to_bits()),
        1 => Just(f64::INFINITY.to_bits()),
        1 => Just(f64::NEG_INFINITY.to_bits()),
        1 => (1u64..1 << 52).prop_map(|m| m | (1 << 63)),
        1 => 1u64..1 << 52,
    ]
}

/// Strictly increasing timestamps: regular with jitter, gaps, or anywhere
/// in i64 (extremes included).
fn timestamps() -> impl Strategy<Value = Vec<i64>> {
    let step = prop_oneof![
        6 => Just(1_000_000i64),
        3 => 999_000i64..1_001_000,
        2 => 1i64..10,
        1 => 1i64..i64::MAX / 4,
    ];
    prop_oneof![
        3 => (any::<i64>(), prop::collection::vec(step, 0..600)).prop_map(|(start, steps)| {
            let mut ts = start / 2;
            let mut v = vec![ts];
            for s in steps {
                match ts.checked_add(s) {
                    Some(n) => ts = n,
                    None => break,
                }
                v.push(ts);
            }
            v
        }),
        1 => prop::collection::vec(
            prop_oneof![any::<i64>(), Just(i64::MIN), Just(i64::MAX), Just(0i64)],
            1..100
        ).prop_map(|mut v| {
            v.sort_unstable();
            v.dedup();
            v
        }),
    ]
}

fn points() -> impl Strategy<Value = Vec<(i64, u64, u8)>> {
    timestamps().prop_flat_map(|ts| {
        let n = ts.len();
        (
            Just(ts),
            prop::collection::vec(value(), n),
            prop::collection::vec(
                prop_oneof![8 => Just(192u8), 1 => Just(0u8), 1 => any::<u8>()],
                n,
            ),
        )
            .prop_map(|(ts, vs, qs)| {
                ts.into_iter()
                    .zip(vs)
                    .zip(qs)
                    .map(|((t, v), q)| (t, v, q))
                    .collect()
            })
    })
}

fn encode(pts: &[(i64, u64, u8)]) -> Encoder {
    let mut e = Encoder::default();
    for &(t, v, q) in pts {
        e.push(t, v, q);
    }
    e
}

fn collect(f: impl FnOnce(&mut dyn FnMut(i64, u64, u8))) -> Vec<(i64, u64, u8)> {
    let mut out = Vec::new();
    f(&mut |t, v, q| out.push((t, v, q)));
    out
}

proptest! {
    #![proptest_config(crate::proptest_config::config(512))]

    #[test]
    fn round_trip_through_head_segment_and_payload(pts in points(), a in any::<i64>(), b in any::<i64>()) {
        let e = encode(&pts);
        // Ranges are half open: i64::MAX itself is only seen through `last`.
        let full: Vec<_> = pts.iter().copied().filter(|p| p.0 < i64::MAX).collect();
        let got = collect(|f| e.decode(i64::MIN, i64::MAX, f).unwrap());
        prop_assert_eq!(&got, &full);
        let last = e.last().unwrap();
        prop_assert_eq!((last.ts, last.value.to_bits(), last.quality), *pts.last().unwrap());
        let seg = e.finish();
        let mut payload = vec![0u8; seg.payload_len()];
        seg.write_payload(&mut payload);
        let got = collect(|f| decode_payload(&payload, seg.count, i64::MIN, i64::MAX, f).unwrap());
        prop_assert_eq!(&got, &full);
        let (lo, hi) = (a.min(b), a.max(b));
        let want: Vec<_> = pts.iter().copied().filter(|p| p.0 >= lo && p.0 < hi).collect();
        let got = collect(|f| seg.decode(lo, hi, f).unwrap());
        prop_assert_eq!(&got, &want);
        let got = collect(|f| decode_payload(&payload, seg.count, lo, hi, f).unwrap());
        prop_assert_eq!(got, want);
    }

    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        count in prop_oneof![0u32..2000, any::<u32>()],
        lo in any::<i64>(),
    ) {
        let mut n = 0u64;
        let _ = decode_payload(&bytes, count, lo, i64::MAX, |_, _, _| n += 1);
        prop_assert!(n <= count as u64);
        // The stream alone, with a run claiming every point.
        let _ = decode(&bytes, [QRun { quality: 1, len: count }], count, i64::MIN, i64::MAX, |_, _, _| ());
    }

    #[test]
    fn damaged_payloads_never_panic(pts in points(), flips in prop::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..4), count_delta in -3i64..3) {
        let seg = encode(&pts).finish();
        let mut payload = vec![0u8; seg.payload_len()];
        seg.write_payload(&mut payload);
        for (i, bit) in flips {
            let i = i.index(payload.len());
            payload[i] ^= 1 << bit;
        }
        let count = (seg.count as i64 + count_delta).max(0) as u32;
        let mut prev = None;
        let r = decode_payload(&payload, count, i64::MIN, i64::MAX, |t, _, _| {
            assert!(prev.is_none_or(|p| t > p), "decoder emitted non-increasing timestamps");
            prev = Some(t);
        });
        let _ = r;
    }
}

#[test]
fn constant_signal_costs_two_bits_per_point() {
    let pts: Vec<(i64, u64, u8)> = (0..10_000)
        .map(|i| {
            (
                1_700_000_000_000_000 + i * 1_000_000,
                21.5f64.to_bits(),
                192,
            )
        })
        .collect();
    let seg = encode(&pts).finish();
    assert!(
        seg.payload_len() <= 2 + 5 + 16 + 5 + 10_000 / 4,
        "{}",
        seg.payload_len()
    );
}

#[test]
fn truncated_stream_is_an_error() {
    let pts: Vec<(i64, u64, u8)> = (0..100)
        .map(|i| (i * 1000 + (i * i) % 7, (i as f64).sqrt().to_bits(), 192))
        .collect();
    let seg = encode(&pts).finish();
    let mut payload = vec![0u8; seg.payload_len()];
    seg.write_payload(&mut payload);
    let cut = &payload[..payload.len() - 20];
    assert!(decode_payload(cut, 100, i64::MIN, i64::MAX, |_, _, _| ()).is_err());
    assert!(decode_payload(&payload, 101, i64::MIN, i64::MAX, |_, _, _| ()).is_err());
}

/// A stream grows by a share of its length, not by a few bytes a push:
/// noisy values (the widest realistic ones) reallocate rarely.
#[test]
fn stream_grows_in_few_steps() {
    let mut e = Encoder::default();
    let (mut grows, mut cap) = (0, 0);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for i in 0..2_000i64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let v = 50.0 + (x >> 11) as f64 / (1u64 << 53) as f64;
        e.push(i * 1_000_000, v.to_bits(), 192);
        if e.heap_bytes() != cap {
            grows += 1;
            cap = e.heap_bytes();
        }
    }
    let len = e.payload_len();
    // From 0 to `len` bytes by steps of max(len / 8, 64): about
    // 8 + ln(len / 512) / ln(1.125) steps (~36 here); twice that passes,
    // a growth every few pushes (hundreds) does not.
    let bound = 2 * (8 + ((len as f64 / 512.0).ln() / 1.125f64.ln()).ceil() as usize);
    assert!(
        grows <= bound,
        "{grows} growths for {len} bytes (bound {bound})"
    );
    assert!(cap >= len, "capacity {cap} below length {len}");
}
