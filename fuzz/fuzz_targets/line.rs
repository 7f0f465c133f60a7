//! InfluxDB line protocol bodies from untrusted bytes: the parser never
//! panics, and whatever it accepts is finite and inside the timestamp
//! window. The first byte picks the precision.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xtdb::http::line::{parse_batch, Precision};
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
    ][p as usize % 6];
    let window = TimeWindow::default();
    let mut out = Vec::new();
    if parse_batch(body, precision, NOW, &window, &mut out).is_ok() {
        for s in &out {
            assert!(s.value.is_finite(), "non-finite value accepted: {s:?}");
            assert!(
                window.check_ts(s.ts, NOW).is_ok(),
                "out-of-window ts: {s:?}"
            );
            assert!(!s.key.is_empty());
        }
    }
});
