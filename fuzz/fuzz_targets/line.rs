//! InfluxDB line protocol bodies from untrusted bytes: the parser never
//! panics; every sample it gives is finite, inside the timestamp window,
//! has a series key within the catalog's limit that splits back into the
//! same key; the report is consistent (bad lines counted, numbered in
//! order, within the body). The first byte picks the precision and whether
//! a quality field is set.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xtdb::http::line::{parse_batch, series_key, split_series_key, LineConfig, Precision};
use xtdb::net::limits::TimeWindow;

const NOW: i64 = 1_767_225_600_000_000;

fuzz_target!(|data: &[u8]| {
    let Some((&p, body)) = data.split_first() else {
        return;
    };
    let precision = [
        Precision::Ns,
        Precision::Us,
        Precision::Ms,
        Precision::S,
        Precision::M,
        Precision::H,
    ][(p & 7) as usize % 6];
    let mut config = LineConfig::default();
    if p & 8 != 0 {
        config.quality_field = Some("q".into());
    }
    if p & 16 != 0 {
        // Small limits, so the fuzzer reaches them.
        config.limits.max_line_bytes = 64;
        config.limits.max_tags = 2;
        config.limits.max_fields = 2;
        config.limits.max_series_key = 32;
    }
    let window = TimeWindow::default();
    let mut out = Vec::new();
    let r = parse_batch(body, precision, NOW, &window, &config, &mut out);
    let lines = body.iter().filter(|&&b| b == b'\n').count() + 1;
    assert!(r.bad.len() as u64 <= r.bad_lines && r.bad_lines <= r.lines);
    assert!(r.bad.windows(2).all(|w| w[0].line < w[1].line));
    assert!(r.bad.iter().all(|e| (1..=lines).contains(&e.line)));
    assert!(out.len() as u64 <= r.good_lines() * config.limits.max_fields as u64);
    for s in &out {
        assert!(s.value.is_finite(), "non-finite value accepted: {s:?}");
        assert!(
            window.check_ts(s.ts, NOW).is_ok(),
            "out-of-window ts: {s:?}"
        );
        assert!(s.key.len() <= config.limits.max_series_key.min(4096), "{s:?}");
        let (m, tags, f) = split_series_key(&s.key).expect("a key splits back");
        assert_eq!(series_key(&m, &tags, &f), s.key);
    }
});
