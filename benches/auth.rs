//! What checking credentials costs, in process: an HTTP request's check
//! (read `Authorization`, SHA-256 of the token, compare it with every live
//! token in constant time, check the permission) and the native
//! protocol's per-request check once a connection has authenticated
//! (generation compare and permission bits). Prints ns per check, to set
//! against the CPU a batch costs (`cargo bench --bench net`, HTTP runs of
//! `scripts/auth_bench.sh`).
//!
//! `cargo bench --bench auth` (env: TOKENS, live tokens in the set,
//! default 10; N, checks per measurement, default 1,000,000).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Instant;

use hyper::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use xtdb::http::auth::credentials;
use xtdb::storage::tokens::{self, Perms, TokenSet};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let n = env("N", 1_000_000);
    let count = env("TOKENS", 10) as usize;
    let mut file = tokens::MAGIC.to_vec();
    let mut secrets = Vec::new();
    for i in 0..count {
        let t = tokens::new_token().unwrap();
        let p = tokens::encode_create(&format!("t{i}"), Perms::ALL, 0, &tokens::hash_token(&t));
        xtdb::storage::records::encode(&mut file, &p);
        secrets.push(t);
    }
    let (set, _) = tokens::parse(std::path::Path::new("bench"), &file).unwrap();
    let set: TokenSet = set;
    let last = secrets.last().unwrap().clone();
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Token {last}")).unwrap(),
    );
    let params: Vec<(String, String)> = Vec::new();
    for round in 0..3 {
        let t = Instant::now();
        let mut ok = 0u64;
        for _ in 0..n {
            let c = credentials(black_box(&headers), &params).unwrap().unwrap();
            if let Some(tok) = set.verify(black_box(&c.secret)) {
                ok += u64::from(tok.perms.allows(Perms::WRITE));
            }
        }
        let http = t.elapsed().as_nanos() as f64 / n as f64;
        assert_eq!(ok, n);
        let t = Instant::now();
        let gen = std::cell::Cell::new(7u64);
        let mut ok = 0u64;
        for _ in 0..n {
            let g = black_box(&gen).get();
            ok += u64::from(black_box(7u64) == g && black_box(Perms::ALL).allows(Perms::WRITE));
        }
        let native = t.elapsed().as_nanos() as f64 / n as f64;
        assert_eq!(ok, n);
        println!(
            "auth check round {round}: HTTP request (header, SHA-256, {count} live tokens compared, \
             permission) {http:.0} ns; native request on an authenticated connection {native:.2} ns"
        );
    }
}
