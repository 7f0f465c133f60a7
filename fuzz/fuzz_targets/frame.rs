//! Native protocol frames from untrusted bytes: header, request and answer
//! decoders never panic, and a request that decodes re-encodes to exactly
//! the payload it came from (so nothing is silently reinterpreted).
//! The first input byte chooses whether the header CRC is fixed up to match
//! the payload (so the fuzzer reaches the payload decoders) or left as is.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xtdb::net::protocol::{self, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    if data.len() < HEADER_LEN {
        return;
    }
    let mut raw = [0u8; HEADER_LEN];
    raw.copy_from_slice(&data[..HEADER_LEN]);
    let payload = &data[HEADER_LEN..];
    if mode & 1 == 0 {
        raw[0..4].copy_from_slice(&protocol::MAGIC);
        raw[4] = protocol::VERSION;
        raw[16..20].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        raw[20..24].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    }
    let Ok(h) = protocol::decode_header(&raw) else {
        return;
    };
    if h.len as usize != payload.len() {
        return;
    }
    if let Ok(protocol::Response::Pieces(p)) = protocol::decode_response(&raw, &h, payload) {
        // A pieces answer decodes to points or is refused, never a panic.
        let _ = protocol::pieces_points(&p, p.tag, i64::MIN, i64::MAX);
    }
    if let Ok(req) = protocol::decode_request(&raw, &h, payload) {
        let mut again = Vec::new();
        protocol::encode_request(&mut again, h.id, &req);
        assert_eq!(
            &again[HEADER_LEN..],
            payload,
            "request re-encodes differently"
        );
        assert_eq!(again[5], raw[5], "request type changed");
    }
});
