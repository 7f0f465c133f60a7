//! WAL records from untrusted bytes (a torn or corrupted log): the record
//! decoder never panics, and a record it accepts has the sequence and
//! segment asked for and exactly its declared number of points. The first
//! byte chooses whether the CRC and segment id are fixed up.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xtdb::storage::wal::format::{self, Decoded, RECORD_HEADER};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let mut buf = data.to_vec();
    let (seq, segment) = (7u64, 3u64);
    if mode & 1 == 0 && buf.len() >= RECORD_HEADER {
        buf[8..16].copy_from_slice(&seq.to_le_bytes());
        let plen = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if RECORD_HEADER + plen <= buf.len() {
            format::seal_record(&mut buf, segment);
        }
    }
    if let Decoded::Record {
        seq: s, payload, ..
    } = format::decode_record(&buf, seq, segment)
    {
        assert_eq!(s, seq);
        assert_eq!(payload.len() % format::POINT_BYTES, 0);
        let _ = format::points(payload).count();
    }
});
