//! 16 KiB storage blocks from untrusted bytes (what a damaged disk could
//! hand back): verification and decoding never panic, and a block that
//! verifies decodes to at most its declared count of strictly increasing
//! timestamps inside each segment's declared range (the query planner skips blocks by
//! that range, so a point outside it would be served by some queries and
//! not others). The first byte chooses whether
//! magic, version and CRC are fixed up so the fuzzer reaches the codec.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xtdb::storage::block::{self, BLOCK_SIZE, HEADER};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let mut b = vec![0u8; BLOCK_SIZE];
    let n = data.len().min(BLOCK_SIZE);
    b[..n].copy_from_slice(&data[..n]);
    if mode & 1 == 0 {
        b[0..4].copy_from_slice(block::MAGIC);
        b[4..6].copy_from_slice(&block::VERSION.to_le_bytes());
        let encoding = u16::from(mode >> 1 & 1);
        b[6..8].copy_from_slice(&encoding.to_le_bytes());
        let plen =
            (u32::from_le_bytes([b[52], b[53], b[54], b[55]]) as usize).min(BLOCK_SIZE - HEADER);
        b[52..56].copy_from_slice(&(plen as u32).to_le_bytes());
        let mut h = crc32fast::Hasher::new();
        h.update(&b[0..60]);
        h.update(&b[HEADER..HEADER + plen]);
        b[60..64].copy_from_slice(&h.finalize().to_le_bytes());
    }
    let Ok(blk) = block::verify(&b) else {
        return;
    };
    for seg in &blk.segments {
        let mut out = Vec::new();
        if block::decode_into(&b, &blk, seg, i64::MIN, i64::MAX, &mut out).is_ok() {
            assert!(out.len() <= seg.count as usize);
            for w in out.windows(2) {
                assert!(w[0].ts < w[1].ts, "timestamps not increasing");
            }
            for p in &out {
                assert!(
                    seg.min_ts <= p.ts && p.ts <= seg.max_ts,
                    "ts outside the segment's declared range"
                );
            }
        }
    }
});
